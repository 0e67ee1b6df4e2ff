//! The DS as an MLS external sender (RFC 9420 §12.1.8.1; DS-03..06 "every group MUST carry an
//! `external_senders` extension containing the DS credential and signature key"): signing its
//! own proposals, recording them as pending, and issuing them again when a commit lets them
//! lapse (draft-ietf-mimi-protocol-06: the hub regenerates its proposals in the new epoch and
//! staples them to the commit's fanout).

use openmls::prelude::{
    Extension, Extensions, ExternalProposal, GroupContext, LeafNodeIndex, MlsMessageBodyIn,
    ProcessedMessageContent, ProtocolMessage, PublicGroup, SenderExtensionIndex,
};
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::Serialize as _;

use super::handshake::mls_reject;
use super::{HandlerEnv, HandlerResult};
use crate::config::{DsIdentity, DsSigner};
use crate::error::{internal, NotAllowed, RejectReason};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::{PendingProposalRecord, PendingProposals, ProposalOrigin};
use crate::time::UnixTimeMs;
use crate::wire::MlsMessageBytes;

/// Which of the DS's identities the group names as external sender, and at which index.
fn named_identity<'a, C>(
    env: &HandlerEnv<'a, C>,
    group: &PublicGroup,
) -> Option<(u32, &'a DsIdentity)> {
    let senders = group.group_context().extensions().external_senders()?;
    std::iter::once(env.identity)
        .chain(env.retired)
        .find_map(|identity| {
            let ours = identity.external_sender();
            senders
                .iter()
                .position(|s| *s == ours)
                .map(|i| (i as u32, identity))
        })
}

/// Runs a proposal the DS signed through the group, as any member's proposal would be, so the
/// DS's own state includes it (`process_message` + `add_proposal`, docs/openmls-notes.md O2).
fn enqueue<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    env: &HandlerEnv<'_, C>,
    group: &mut PublicGroup,
    buffer: &MlsStateBuffer,
    message: openmls::prelude::MlsMessageOut,
    now: UnixTimeMs,
    removal_target: Vec<u8>,
) -> HandlerResult<(MlsMessageBytes, PendingProposalRecord), E> {
    let bytes = MlsMessageBytes::from_bytes(message.tls_serialize_detached().map_err(internal)?)
        .map_err(internal)?;
    let MlsMessageBodyIn::PublicMessage(public) = bytes.parse().map_err(internal)?.extract() else {
        return Err(internal("an external proposal is a PublicMessage"));
    };
    let processed = group
        .process_message(env.crypto, ProtocolMessage::from(public))
        .map_err(mls_reject)?;
    let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
        return Err(internal("an external proposal processes as a proposal"));
    };
    let record = PendingProposalRecord {
        proposal_ref: queued.proposal_reference_ref().as_slice().to_vec().into(),
        hub_accepted_time: now,
        message: bytes.as_bytes().to_vec().into(),
        removal_target: removal_target.into(),
        origin: ProposalOrigin::Hub,
    };
    group.add_proposal(buffer, *queued).map_err(internal)?;
    Ok((bytes, record))
}

/// Issues a Remove proposal for `leaf`, signed by the DS identity the group names.
pub(crate) fn issue_removal<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    env: &HandlerEnv<'_, C>,
    group: &mut PublicGroup,
    buffer: &MlsStateBuffer,
    leaf: LeafNodeIndex,
    now: UnixTimeMs,
) -> HandlerResult<(MlsMessageBytes, PendingProposalRecord), E> {
    // Rule R-HUB-2.
    let (index, identity) = named_identity(env, group)
        .ok_or(RejectReason::NotAllowed(NotAllowed::DsNotExternalSender))?;
    let target = group
        .leaf(leaf)
        .ok_or_else(|| internal("removal target is not a member"))?
        .signature_key()
        .as_slice()
        .to_vec();
    let message = ExternalProposal::new_remove::<OpenMlsRustCrypto>(
        leaf,
        group.group_id().clone(),
        group.group_context().epoch(),
        &DsSigner(identity.signer.as_ref()),
        SenderExtensionIndex::new(index),
    )
    .map_err(internal)?;
    enqueue(env, group, buffer, message, now, target)
}

/// Issues a GroupContextExtensions proposal that replaces the retired DS identity the group
/// names with the current one (a signing-key rotation). `None` if the group already names the
/// current identity.
pub(crate) fn issue_rotation<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    env: &HandlerEnv<'_, C>,
    group: &mut PublicGroup,
    buffer: &MlsStateBuffer,
    now: UnixTimeMs,
) -> HandlerResult<Option<(MlsMessageBytes, PendingProposalRecord)>, E> {
    // Rule R-HUB-2.
    let (index, identity) = named_identity(env, group)
        .ok_or(RejectReason::NotAllowed(NotAllowed::DsNotExternalSender))?;
    if std::ptr::eq(identity, env.identity) {
        return Ok(None);
    }
    let mut senders = group
        .group_context()
        .extensions()
        .external_senders()
        .cloned()
        .unwrap_or_default();
    senders[index as usize] = env.identity.external_sender();
    let extensions: Vec<Extension> = group
        .group_context()
        .extensions()
        .iter()
        .map(|e| match e {
            Extension::ExternalSenders(_) => Extension::ExternalSenders(senders.clone()),
            other => other.clone(),
        })
        .collect();
    let extensions = Extensions::<GroupContext>::from_vec(extensions).map_err(internal)?;
    let message = ExternalProposal::new_group_context_extensions::<OpenMlsRustCrypto>(
        extensions,
        group.group_id().clone(),
        group.group_context().epoch(),
        &DsSigner(identity.signer.as_ref()),
        SenderExtensionIndex::new(index),
    )
    .map_err(internal)?;
    enqueue(env, group, buffer, message, now, Vec::new()).map(Some)
}

/// After a commit moved the group to a new epoch, issues again every Remove the DS had pending
/// whose target is still a member: `lapsed` are the previous epoch's proposals the commit did
/// not include; the DS's own removals and members' self-removals among them are issued again
/// as the DS's own Removes (a self-removal is the member's signed request to leave, so a commit
/// that leaves it out must not keep the member in the group). Returns the new proposals (to
/// staple to the commit) and their records.
pub(crate) fn reissue_removals<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    env: &HandlerEnv<'_, C>,
    group: &mut PublicGroup,
    buffer: &MlsStateBuffer,
    lapsed: &[PendingProposalRecord],
    now: UnixTimeMs,
) -> HandlerResult<(Vec<MlsMessageBytes>, PendingProposals), E> {
    let mut stapled = Vec::new();
    let mut pending = PendingProposals::default();
    for record in lapsed
        .iter()
        .filter(|r| !r.removal_target.as_slice().is_empty())
    {
        let still_member = group
            .members()
            .find(|m| m.signature_key == record.removal_target.as_slice())
            .map(|m| m.index);
        if let Some(leaf) = still_member {
            let (bytes, new_record) = issue_removal(env, group, buffer, leaf, now)?;
            stapled.push(bytes);
            pending.proposals.push(new_record);
        }
    }
    Ok((stapled, pending))
}
