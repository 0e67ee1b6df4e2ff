//! `welcome_info(18)` (DS-03..06 `WelcomeInfo`; docs/decisions.md D10, D15): a client added by
//! Welcome fetches the ratchet tree of the epoch it was added in, authenticated with the
//! `key_package_ref` sender kind (DS-00 §5.1) and the signature key of that KeyPackage.
//!
//! Each joiner can fetch once; the epoch's tree is dropped when every joiner has fetched it,
//! has been removed, or its retention has ended (see [`crate::state`]'s Welcome records). The
//! request reads the small index and the tree record of the requested epoch, and the state only
//! for a sender the index lists (the current epoch's tree, to which an earlier epoch's reverse
//! diff applies). It decodes the state only after the signature verified. A lost answer is
//! recovered by resending the identical request, which the replay mark answers with the stored
//! response.

use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::Serialize as _;

use super::group_state::{ciphersuite, decode_record, encode_record, open_mls_state};
use super::{Ctx, HandlerResult, Plan};
use crate::error::AuthenticationFailed;
use crate::error::{internal, Failure, ProcessError, RejectReason};
use crate::state::{StoredTree, TreeNodes, WelcomeSnapshots, WelcomeTree};
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, RecordWrite, VersionGuard};
use crate::wire::{DsResponseBody, DsSenderId, RatchetTreeBytes, WelcomeInfo, WelcomeInfoRequest};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &WelcomeInfoRequest,
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let auth = ctx.client_auth()?;
    // The sender kind before any read (wire-format.md §4.12).
    // Rule R-AUTH-9.
    let DsSenderId::KeyPackageRef(key_package_ref) = &auth.signature.sender_id else {
        return Err(RejectReason::AuthenticationFailed(
            AuthenticationFailed::KeyPackageRefSenderRequired,
        )
        .into());
    };
    if let Some(plan) = ctx.replay_check(&auth, storage)? {
        return Ok(plan);
    }
    let group_id = auth.group_id();
    // The index, and the tree of the requested epoch only (which may be missing: fetched,
    // dropped, never written, or shared with the current state). The index alone
    // authenticates the request: nothing of the group's size (roster, tree) is decoded before
    // the signature verifies.
    let tree_kind = RecordKind::WelcomeTree { epoch: body.epoch };
    let mut snapshot = read_snapshot(
        storage,
        group_id,
        &[RecordKind::WelcomeSnapshots, tree_kind],
    )?;
    // The snapshot of the current epoch stores no tree: it is the `MlsState` record's until
    // the next commit. An earlier epoch's is stored as its difference from that tree
    // (wire-format.md §4.12). Either way, if the index lists the sender for this epoch, read
    // again with the state, so that index, tree and state come from one version; a sender it
    // does not list costs no read of the state.
    let listed = |snapshot: &GroupSnapshot| -> HandlerResult<bool, S::Error> {
        let index: WelcomeSnapshots = decode_record(snapshot, RecordKind::WelcomeSnapshots)?;
        Ok(index.find(body.epoch, key_package_ref.as_slice()).is_some())
    };
    let needs_state = snapshot
        .record(tree_kind)
        .is_none_or(WelcomeTree::is_reverse_diff);
    if needs_state && listed(&snapshot)? {
        snapshot = read_snapshot(
            storage,
            group_id,
            &[
                RecordKind::WelcomeSnapshots,
                tree_kind,
                RecordKind::MlsState,
            ],
        )?;
    }
    let mut index: WelcomeSnapshots = decode_record(&snapshot, RecordKind::WelcomeSnapshots)?;
    let mut dropped = index.purge(ctx.now);

    // A backend may drop a tree whose expiry passed before mimi-ds purged its index entry
    // (storage contract): a missing tree counts as fetched.
    // Rule R-AUTH-10.
    let no_welcome = RejectReason::AuthenticationFailed(AuthenticationFailed::NoPendingWelcome);
    let (position, joiner) = index
        .find(body.epoch, key_package_ref.as_slice())
        .ok_or_else(|| no_welcome.clone())?;
    let tree_record = snapshot.record(tree_kind);
    if tree_record.is_none() && snapshot.record(RecordKind::MlsState).is_none() {
        return Err(no_welcome.into());
    }
    auth.verify(
        ctx.crypto(),
        ciphersuite(index.ciphersuite)?,
        index.snapshots[position].joiners[joiner]
            .signature_key
            .as_slice(),
    )?;
    let tree = match tree_record {
        Some(record) => match WelcomeTree::decode(record)
            .map_err(|e| internal(format!("WelcomeTree record: {e}")))?
            .tree
        {
            StoredTree::Whole(tree) => tree,
            StoredTree::ReverseDiff(diff) => {
                let (_, group) = open_mls_state(&snapshot, group_id)?;
                let current = TreeNodes::of(group.treesync()).map_err(internal)?;
                diff.apply(&current)
                    .map_err(internal)?
                    .encode()
                    .map_err(internal)?
            }
        },
        None => {
            let (_, group) = open_mls_state(&snapshot, group_id)?;
            // Only the current epoch's snapshot shares the state; a missing tree of an
            // earlier epoch was dropped by the backend after its expiry.
            if group.group_context().epoch().as_u64() != body.epoch {
                return Err(no_welcome.into());
            }
            group
                .export_ratchet_tree()
                .tls_serialize_detached()
                .map_err(internal)?
        }
    };
    let tree = RatchetTreeBytes::from_bytes(tree).map_err(internal)?;

    // Each joiner fetches once; the tree goes with the epoch's last joiner.
    index.snapshots[position].joiners.remove(joiner);
    dropped.extend(index.purge(ctx.now));
    let mut records = vec![encode_record(RecordKind::WelcomeSnapshots, &index)?];
    records.extend(
        dropped
            .into_iter()
            .map(|epoch| RecordWrite::Delete(RecordKind::WelcomeTree { epoch })),
    );
    ctx.write_plan(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        records,
        Vec::new(),
        DsResponseBody::WelcomeInfo(WelcomeInfo { ratchet_tree: tree }),
    )
}

/// One read of the group's Welcome records: `unknown_group` without an index.
fn read_snapshot<S: DsStorage>(
    storage: &S,
    group_id: &[u8],
    kinds: &[RecordKind],
) -> HandlerResult<GroupSnapshot, S::Error> {
    Ok(storage
        .read(group_id, kinds)
        .map_err(|e| Failure::Process(ProcessError::Storage(e)))?
        .filter(|s| s.record(RecordKind::WelcomeSnapshots).is_some())
        // Rule R-FRAME-5.
        .ok_or(RejectReason::UnknownGroup)?)
}
