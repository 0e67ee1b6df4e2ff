//! `group_info(17)` (DS-06 `ds_group_info`; the hub GroupInfo service of
//! draft-ietf-mimi-protocol-06 §"GroupInfo"): the current GroupInfo, ratchet tree and pending
//! proposals, for external joiners and for members resyncing after state loss.
//!
//! The answer holds the whole tree, every credential and sealed queue configuration and the
//! pending proposals, so the DS answers only authorized requesters (DS-06 "MUST verify that the
//! sender is authorized"; wire-format.md §4.11): by default a request signed by a member
//! (`leaf_index`) or by a user of the group with its registered key (`user_key_hash`, the new
//! devices and resyncing clients of users in the group). Unauthenticated requests are answered
//! only under [`GroupInfoAccess::Anyone`], a deployment's explicit choice. A signed request is
//! verified and replay-protected.

use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{Serialize as _, VLBytes};

use super::group_state::{ciphersuite, decode_record, open_mls_state};
use super::{Ctx, HandlerResult, Plan};
use crate::config::GroupInfoAccess;
use crate::error::{internal, RejectReason};
use crate::error::{AuthenticationFailed, InvalidGroupId};
use crate::state::{PendingProposals, Roster};
use crate::storage::GroupSnapshot;
use crate::storage::{DsStorage, RecordKind, VersionGuard};
use crate::wire::{
    encode, encrypt_context, DecodeError, DsAuthData, DsResponseBody, ExternalCommitInfo,
    GroupInfoBytes, GroupInfoRequest, HpkeCiphertext, MlsMessageBytes, PendingProposal,
    RatchetTreeBytes, RatchetTreeOption, GROUP_INFO_ENCRYPTION_LABEL, GROUP_INFO_MESSAGE_HEADER,
};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &GroupInfoRequest,
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let group_id = body.group_id.as_slice();
    let auth = match &ctx.request.auth {
        // Refused before anything is read: an anonymous request learns nothing, not even
        // whether the group exists.
        DsAuthData::Unauthenticated
            if ctx.env.config.group_info_access != GroupInfoAccess::Anyone =>
        {
            // Rule R-AUTH-8.
            return Err(RejectReason::AuthenticationFailed(
                AuthenticationFailed::GroupInfoNeedsSignature,
            )
            .into());
        }
        DsAuthData::Unauthenticated => None,
        _ => {
            let auth = ctx.client_auth()?;
            // Rule R-GID-1.
            if auth.group_id() != group_id {
                return Err(
                    RejectReason::InvalidGroupId(InvalidGroupId::SignedForAnotherGroup).into(),
                );
            }
            if let Some(plan) = ctx.replay_check(&auth, storage)? {
                return Ok(plan);
            }
            Some(auth)
        }
    };
    let snapshot = ctx.read_group(
        storage,
        group_id,
        &[
            RecordKind::Roster,
            RecordKind::GroupInfo,
            RecordKind::MlsState,
            RecordKind::PendingProposals,
        ],
    )?;
    if let Some(auth) = &auth {
        let roster: Roster = decode_record(&snapshot, RecordKind::Roster)?;
        ctx.authenticate_member(auth, &roster, true)?;
    }

    // A read: the group's tree is exported, nothing is processed or written back.
    let (_, group) = open_mls_state(&snapshot, group_id)?;
    let tree = group
        .export_ratchet_tree()
        .tls_serialize_detached()
        .map_err(internal)?;
    let pending: PendingProposals = decode_record(&snapshot, RecordKind::PendingProposals)?;
    // draft-ietf-mimi-protocol-06 `GroupInfoRatchetTreeTBE`: the bare GroupInfo (the stored
    // MLSMessage without its framing) and the tree as `RatchetTreeOption.full`.
    let stored = snapshot.record(RecordKind::GroupInfo).unwrap_or_default();
    let bare = stored
        .strip_prefix(GROUP_INFO_MESSAGE_HEADER.as_slice())
        .ok_or_else(|| internal("the stored GroupInfo is not an mls_group_info MLSMessage"))?;
    let info = ExternalCommitInfo {
        group_info: GroupInfoBytes::from_bytes(bare.to_vec()).map_err(internal)?,
        ratchet_tree_option: RatchetTreeOption::Full(
            RatchetTreeBytes::from_bytes(tree).map_err(internal)?,
        ),
        pending_proposals: pending
            .proposals
            .into_iter()
            .map(|p| {
                Ok(PendingProposal {
                    proposal: MlsMessageBytes::from_bytes(p.message.into()).map_err(internal)?,
                    hub_accepted_time: p.hub_accepted_time.as_millis(),
                })
            })
            .collect::<HandlerResult<_, S::Error>>()?,
    };
    let response = match &body.encryption_key {
        None => DsResponseBody::ExternalCommitInfo(info),
        Some(key) => {
            DsResponseBody::EncryptedExternalCommitInfo(seal(ctx, &snapshot, group_id, key, &info)?)
        }
    };
    match auth {
        None => Ok(Plan::Answer(response)),
        // A read changes no record; only the replay mark is stored.
        Some(auth) => ctx.write_plan(
            Some(&auth.guard),
            group_id,
            VersionGuard::ReplayMarkOnly,
            Vec::new(),
            Vec::new(),
            response,
        ),
    }
}

/// draft-ietf-mimi-protocol-06 §"GroupInfo": `EncryptWithLabel(groupInfoPublicKey, "GroupInfo
/// and ratchet_tree encryption", room_id, GroupInfoRatchetTreeTBE)` (RFC 9420 §5.1.3), with the
/// group's ciphersuite and the group ID as the room ID.
fn seal<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    ctx: &Ctx<'_, C>,
    snapshot: &GroupSnapshot,
    group_id: &[u8],
    key: &VLBytes,
    info: &ExternalCommitInfo,
) -> HandlerResult<HpkeCiphertext, E> {
    let roster: Roster = decode_record(snapshot, RecordKind::Roster)?;
    let suite = ciphersuite(roster.ciphersuite)?;
    let plaintext = encode(info).map_err(internal)?;
    let context = encrypt_context(GROUP_INFO_ENCRYPTION_LABEL, group_id).map_err(internal)?;
    let sealed = ctx
        .crypto()
        .hpke_seal(
            suite.hpke_config(),
            key.as_slice(),
            &context,
            &[],
            &plaintext,
        )
        .map_err(|e| {
            RejectReason::Malformed(DecodeError::Malformed {
                type_name: "HPKEPublicKey",
                reason: format!("not a public key of the group's ciphersuite: {e:?}"),
            })
        })?;
    Ok(HpkeCiphertext {
        kem_output: sealed.kem_output,
        ciphertext: sealed.ciphertext,
    })
}
