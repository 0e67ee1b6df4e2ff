//! `welcome_info(18)` (DS-03..06 `WelcomeInfo`; digest §7 item 8 and 27): a client added by
//! Welcome fetches the ratchet tree of the epoch it was added in, authenticated with the
//! `key_package_ref` sender kind (DS-00 §5.1) and the signature key of that KeyPackage.
//!
//! Each joiner can fetch once; the epoch's snapshot is dropped when every joiner has fetched
//! it or its KeyPackage has expired. A lost answer is recovered by resending the identical
//! request, which the replay mark answers with the stored response.

use openmls_traits::crypto::OpenMlsCrypto;

use super::{ciphersuite, decode_record, encode_record, Ctx, Plan, Result};
use crate::error::{internal, RejectReason};
use crate::state::{Roster, WelcomeSnapshots};
use crate::storage::{DsStorage, RecordKind, VersionGuard};
use crate::wire::{DsResponseBody, DsSenderId, RatchetTreeBytes, WelcomeInfo, WelcomeInfoRequest};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &WelcomeInfoRequest,
) -> Result<Plan, S>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let auth = ctx.client_auth::<S>()?;
    // The sender kind before any read (wire-format.md §4.12).
    let DsSenderId::KeyPackageRef(key_package_ref) = &auth.signature.sender_id else {
        return Err(RejectReason::AuthenticationFailed(
            "welcome_info needs a key_package_ref sender",
        )
        .into());
    };
    if let Some(plan) = ctx.replay_check(&auth, storage)? {
        return Ok(plan);
    }
    let group_id = auth.group_id();
    let snapshot = ctx.read_group(
        storage,
        group_id,
        &[RecordKind::Roster, RecordKind::WelcomeSnapshots],
    )?;
    let roster: Roster = decode_record::<_, S>(&snapshot, RecordKind::Roster)?;
    let mut snapshots: WelcomeSnapshots =
        decode_record::<_, S>(&snapshot, RecordKind::WelcomeSnapshots)?;
    snapshots.purge(ctx.now_ms);

    let (index, joiner) = snapshots
        .snapshots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.epoch == body.epoch)
        .find_map(|(i, s)| {
            s.joiners
                .iter()
                .position(|j| j.key_package_ref == *key_package_ref)
                .map(|j| (i, j))
        })
        .ok_or(RejectReason::AuthenticationFailed(
            "no pending Welcome for this KeyPackageRef at that epoch",
        ))?;
    let entry = &snapshots.snapshots[index];
    auth.verify(
        ctx.crypto(),
        ciphersuite::<S>(roster.ciphersuite)?,
        entry.joiners[joiner].signature_key.as_slice(),
    )?;
    let tree =
        RatchetTreeBytes::from_bytes(entry.ratchet_tree.as_slice().to_vec()).map_err(internal)?;

    snapshots.snapshots[index].joiners.remove(joiner);
    snapshots.purge(ctx.now_ms);
    ctx.write_plan::<S>(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        vec![encode_record::<_, S>(
            RecordKind::WelcomeSnapshots,
            &snapshots,
        )?],
        Vec::new(),
        DsResponseBody::WelcomeInfo(WelcomeInfo { ratchet_tree: tree }),
    )
}
