//! `create_group(1)` (DS-04 §"Create group"; RFC 9420 §12.4.3 for the GroupInfo, §7.3 and
//! §7.9.2 for the tree, both checked by openmls `PublicGroup::from_external`).

use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::{LeafNodeIndex, ProposalStore, PublicGroup};
use openmls_traits::crypto::OpenMlsCrypto;

use super::group_info_check::{
    check_has_external_pub, check_names_ds_as_external_sender, signer_of, verifiable_group_info,
};
use super::group_state::{decode_record, encode_record};
use super::tree_leaf::leaf_signature_key;
use super::{Ctx, HandlerResult, Plan};
use crate::error::{internal, Failure, ProcessError, RejectReason};
use crate::error::{AuthenticationFailed, InvalidGroupId, InvalidGroupInfo};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::{Activity, PendingProposals, Reservation, Roster, Sequencer, WelcomeSnapshots};
use crate::storage::{DsStorage, RecordKind, RecordWrite, VersionGuard, WriteSet};
use crate::wire::{CreateGroupRequest, DsResponseBody};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &CreateGroupRequest,
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let auth = ctx.client_auth()?;
    let group_id = body.group_id.as_slice();
    // Rule R-GID-1.
    if auth.group_id() != group_id {
        return Err(RejectReason::InvalidGroupId(InvalidGroupId::SignedForAnotherGroup).into());
    }
    if let Some(plan) = ctx.replay_check(&auth, storage)? {
        return Ok(plan);
    }

    // Rules R-GID-2, R-GID-3, R-GID-4: only IDs this DS issued and that are still unused
    // (DS-03/04 "not in use").
    let snapshot = storage
        .read(group_id, &[RecordKind::Reservation])
        .map_err(|e| Failure::Process(ProcessError::Storage(e)))?
        .ok_or(RejectReason::InvalidGroupId(InvalidGroupId::NotIssued))?;
    if snapshot.record(RecordKind::Reservation).is_none() {
        return Err(RejectReason::InvalidGroupId(InvalidGroupId::AlreadyInUse).into());
    }
    let reservation: Reservation = decode_record(&snapshot, RecordKind::Reservation)?;
    if reservation.expires_at < ctx.now {
        return Err(RejectReason::InvalidGroupId(InvalidGroupId::ReservationExpired).into());
    }

    let vgi = verifiable_group_info(&body.group_info)?;
    // Rule R-GI-1.
    if vgi.group_id().as_slice() != group_id {
        return Err(RejectReason::InvalidGroupInfo(InvalidGroupInfo::ForAnotherGroup).into());
    }
    check_has_external_pub(vgi.extensions())?;
    let creator = auth.leaf_index()?;
    // Rule R-GI-2.
    if signer_of(&vgi)? != creator {
        return Err(RejectReason::InvalidGroupInfo(InvalidGroupInfo::NotSignedByRequester).into());
    }
    // Authenticate before the import, which verifies two signatures per leaf: the
    // ClientSignature must verify with the key of the creator's leaf as the raw tree states it
    // (wire-format.md §4.2). The import below checks that same leaf, so a forged leaf gets no
    // further than this one signature.
    let creator_key = leaf_signature_key(body.ratchet_tree.as_bytes(), creator)?;
    auth.verify(ctx.crypto(), vgi.ciphersuite(), &creator_key)?;

    // Authenticated, but anyone can sign for a leaf of their own tree: a failure from here on
    // consumes the reservation, so each full validation costs a fresh `request_group_id`.
    let (buffer, roster) = match import::<C, S::Error>(ctx, body, vgi, creator, &creator_key) {
        Ok(imported) => imported,
        Err(Failure::Reject(reason)) => {
            return Ok(Plan::RefuseAfterWrite {
                write_set: WriteSet {
                    group_id: group_id.to_vec(),
                    guard: VersionGuard::Exactly(snapshot.version),
                    records: vec![RecordWrite::Delete(RecordKind::Reservation)],
                    replay_mark: None,
                    now_ms: ctx.now.as_millis(),
                    fanout: Vec::new(),
                },
                reason,
            })
        }
        Err(failure) => return Err(failure),
    };

    let records = vec![
        RecordWrite::Delete(RecordKind::Reservation),
        encode_record(RecordKind::Roster, &roster)?,
        encode_record(RecordKind::Sequencer, &Sequencer::default())?,
        encode_record(
            RecordKind::Activity,
            &Activity {
                last_active: vec![ctx.now; roster.members.len()],
            },
        )?,
        encode_record(RecordKind::PendingProposals, &PendingProposals::default())?,
        encode_record(
            RecordKind::WelcomeSnapshots,
            &WelcomeSnapshots::new(roster.ciphersuite),
        )?,
        RecordWrite::Put(RecordKind::MlsState, buffer.to_record().map_err(internal)?),
        RecordWrite::Put(RecordKind::GroupInfo, body.group_info.as_bytes().to_vec()),
    ];
    ctx.write_plan(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        records,
        Vec::new(),
        DsResponseBody::Ok,
    )
}

/// RFC 9420 §12.4.3.1 via openmls `PublicGroup::from_external` (tree and GroupInfo signatures,
/// tree hash, parent hashes), the DS's own rules, and the creator's leaf as authenticated.
fn import<C, E>(
    ctx: &Ctx<'_, C>,
    body: &CreateGroupRequest,
    vgi: VerifiableGroupInfo,
    creator: u32,
    creator_key: &[u8],
) -> HandlerResult<(MlsStateBuffer, Roster), E>
where
    C: OpenMlsCrypto,
    E: std::error::Error + 'static,
{
    // Rule R-LINK-6 (wire-format.md §14.2): the hub stores and serves this GroupInfo.
    if crate::pseudonym::group_links::exposes_wrapper_key(body.group_info.as_bytes()) {
        return Err(RejectReason::from(
            crate::pseudonym::InvalidIdentityLinkKeys::WrapperKeyExposed,
        )
        .into());
    }
    let tree = body.ratchet_tree.parse()?;
    // RFC 9420 §7.2 at the DS's `now`, before openmls checks lifetimes with the system clock.
    super::key_package_lifetime::check_tree(&tree, ctx.now)?;
    let buffer = MlsStateBuffer::default();
    let (group, _) =
        PublicGroup::from_external(ctx.crypto(), &buffer, tree, vgi, ProposalStore::new())
            // Rule R-GI-3.
            .map_err(|e| {
                RejectReason::InvalidGroupInfo(InvalidGroupInfo::DoesNotValidate {
                    detail: e.to_string(),
                })
            })?;
    check_names_ds_as_external_sender(&group, ctx.env.identity)?;
    // The leaf the ClientSignature was checked against is the verified GroupInfo signer's.
    // Rules R-AUTH-4, R-AUTH-6.
    let leaf =
        group
            .leaf(LeafNodeIndex::new(creator))
            .ok_or(RejectReason::AuthenticationFailed(
                AuthenticationFailed::NoMemberAtLeaf,
            ))?;
    if leaf.signature_key().as_slice() != creator_key {
        return Err(
            RejectReason::AuthenticationFailed(AuthenticationFailed::CreatorLeafMismatch).into(),
        );
    }
    let mut roster = Roster::from_group(&group, ctx)?;
    // wire-format.md §15.1: a room policy must be well formed and hold from the start.
    crate::policy::check_room(&group, &roster)?;
    crate::policy::record_room_parameters(&group, &mut roster, None, &[], &[], ctx.now)?;
    Ok((buffer, roster))
}
