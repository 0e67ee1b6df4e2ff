//! Commits: `commits(16)` and `delete_group(2)` (DS-03..06 `MLSGroupUpdate`, DS-06 §"Commit").
//!
//! Order of checks: authentication, framing (PublicMessage commit for this group at the current
//! epoch, sent by the authenticated leaf), MLS validation by openmls `PublicGroup`, DS rules
//! (pending proposals, self-removal, Welcomes, operation rule), merge, then the new GroupInfo is
//! verified against the merged state. Nothing is written unless all of it holds.

use std::collections::BTreeSet;

use openmls::prelude::{
    ContentType, LeafNodeIndex, MlsMessageBodyIn, ProcessedMessageContent,
    ProposalOrRefType, Sender,
};
use openmls_traits::crypto::OpenMlsCrypto;

use super::group_info_check::verify_post_commit_group_info;
use super::{ciphersuite, decode_record, encode_record, Ctx, Plan, Result};
use crate::error::{internal, RejectReason};
use crate::fanout::{fan_out, Fanout};
use crate::handlers::check_epoch;
use crate::handlers::proposals::{load_group, mls_reject, public_handshake};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::{PendingProposals, Roster, Sequencer};
use crate::state::queue_config_of;
use crate::storage::{DsStorage, RecordKind, RecordWrite, VersionGuard};
use crate::wire::{AcceptedMessage, ClientQueueConfig, DsResponseBody, GroupUpdate, MlsMessageBytes};

/// The operation-specific rule a commit must also satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `commits(16)`: any valid commit.
    Any,
    /// `delete_group(2)`: DS-03..06 "Remove proposals for every member except the committer";
    /// the group is then deleted.
    DeleteGroup,
}

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    update: &GroupUpdate,
    welcomes: &[MlsMessageBytes],
    rule: Rule,
) -> Result<Plan, S>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let crypto = ctx.crypto();
    let auth = ctx.client_auth::<S>()?;
    if let Some(plan) = ctx.replay_check(&auth, storage)? {
        return Ok(plan);
    }
    let sender = auth.leaf_index()?;
    let group_id = auth.group_id();
    let snapshot = ctx.read_group(
        storage,
        group_id,
        &[RecordKind::Roster, RecordKind::Sequencer, RecordKind::MlsState, RecordKind::PendingProposals],
    )?;
    let roster: Roster = decode_record::<_, S>(&snapshot, RecordKind::Roster)?;
    let member = roster
        .member(sender)
        .ok_or(RejectReason::AuthenticationFailed("no member at the sender's leaf"))?;
    auth.verify(crypto, ciphersuite::<S>(roster.ciphersuite)?, member.signature_key.as_slice())?;

    let message = public_handshake(&update.commit, group_id, ContentType::Commit)?;
    check_epoch(roster.epoch, message.epoch(), 0)?;
    // The MLS sender must be the authenticated requester: a member cannot submit another
    // member's commit as its own.
    if *message.sender() != Sender::Member(LeafNodeIndex::new(sender)) {
        return Err(RejectReason::NotAllowed("the commit's MLS sender is not the requester".into()).into());
    }

    let buffer = MlsStateBuffer::from_record(snapshot.record(RecordKind::MlsState).unwrap_or_default())
        .map_err(internal)?;
    let mut group = load_group::<S>(&buffer, group_id)?;
    let processed = group.process_message(crypto, message).map_err(mls_reject)?;
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(RejectReason::InvalidMessageType("expected a commit").into());
    };

    // DS-04..06: a commit MUST include every stored proposal by reference.
    let pending: PendingProposals = decode_record::<_, S>(&snapshot, RecordKind::PendingProposals)?;
    let included: BTreeSet<&[u8]> = staged
        .queued_proposals()
        .filter(|p| p.proposal_or_ref_type() == ProposalOrRefType::Reference)
        .map(|p| p.proposal_reference_ref().as_slice())
        .collect();
    let missing: Vec<Vec<u8>> = pending
        .proposals
        .iter()
        .map(|p| p.proposal_ref.as_slice())
        .filter(|r| !included.contains(r))
        .map(<[u8]>::to_vec)
        .collect();
    if !missing.is_empty() {
        return Err(RejectReason::MissingPendingProposals { refs: missing }.into());
    }

    let removed: Vec<LeafNodeIndex> = staged.remove_proposals().map(|r| r.remove_proposal().removed()).collect();
    // DS-06 §"Commit": a member cannot commit its own removal.
    if removed.contains(&LeafNodeIndex::new(sender)) {
        return Err(RejectReason::NotAllowed("a committer cannot remove itself".into()).into());
    }
    if rule == Rule::DeleteGroup
        && !roster.iter().all(|(leaf, _)| leaf == sender || removed.contains(&LeafNodeIndex::new(leaf)))
    {
        return Err(RejectReason::NotAllowed("delete_group must remove every other member".into()).into());
    }

    // Welcomes go exactly to the clients the commit adds (draft-ietf-mimi-protocol-06 Welcome
    // routing): the KeyPackageRefs they name must be exactly those of the Adds.
    let mut added: Vec<(Vec<u8>, ClientQueueConfig)> = Vec::new();
    for add in staged.add_proposals() {
        let key_package = add.add_proposal().key_package();
        let kp_ref = key_package.hash_ref(crypto).map_err(internal)?;
        added.push((kp_ref.as_slice().to_vec(), queue_config_of(key_package.leaf_node())?));
    }
    let welcome_targets = welcome_targets(welcomes)?;
    let added_refs: BTreeSet<&[u8]> = added.iter().map(|(r, _)| r.as_slice()).collect();
    let named_refs: BTreeSet<&[u8]> = welcome_targets.iter().flat_map(|(_, refs)| refs.iter().map(Vec::as_slice)).collect();
    let named_count: usize = welcome_targets.iter().map(|(_, refs)| refs.len()).sum();
    if added_refs != named_refs || named_count != added.len() {
        return Err(RejectReason::NotAllowed(
            "the Welcomes' KeyPackageRefs do not match the commit's Adds".into(),
        )
        .into());
    }

    group.merge_commit(&buffer, *staged).map_err(internal)?;
    let group_info = verify_post_commit_group_info(crypto, &group, &update.group_info, LeafNodeIndex::new(sender))?;
    let new_roster = Roster::rebuild(&group, Some(&roster), &removed, &[], &|leaf| ctx.identify(leaf))?;

    let sequencer: Sequencer = decode_record::<_, S>(&snapshot, RecordKind::Sequencer)?;
    let accepted = AcceptedMessage {
        sequence_number: sequencer.next_sequence,
        accepted_time_ms: ctx.now_ms,
        epoch: new_roster.epoch,
    };
    // The commit reaches every member of the previous epoch but the sender, removed ones
    // included (draft-ietf-mimi-protocol-06 §"Fanout": removed clients SHOULD get it).
    let domain = &ctx.ds.config.domain;
    let mut fanout: Vec<Fanout> = fan_out(
        domain,
        group_id,
        accepted.sequence_number,
        ctx.now_ms,
        &update.commit,
        roster.iter().filter(|(leaf, _)| *leaf != sender).map(|(_, m)| &m.queue_config),
    );
    for (welcome, refs) in &welcome_targets {
        let recipients = added.iter().filter(|(r, _)| refs.contains(r)).map(|(_, config)| config);
        fanout.extend(fan_out(domain, group_id, accepted.sequence_number, ctx.now_ms, welcome, recipients));
    }

    let records = match rule {
        Rule::DeleteGroup => vec![
            RecordWrite::Put(RecordKind::Tombstone, ctx.now_ms.to_be_bytes().to_vec()),
            RecordWrite::Delete(RecordKind::Roster),
            RecordWrite::Delete(RecordKind::Sequencer),
            RecordWrite::Delete(RecordKind::MlsState),
            RecordWrite::Delete(RecordKind::GroupInfo),
            RecordWrite::Delete(RecordKind::PendingProposals),
        ],
        Rule::Any => vec![
            encode_record::<_, S>(RecordKind::Roster, &new_roster)?,
            encode_record::<_, S>(
                RecordKind::Sequencer,
                &Sequencer { next_sequence: sequencer.next_sequence + 1 },
            )?,
            encode_record::<_, S>(RecordKind::PendingProposals, &PendingProposals::default())?,
            RecordWrite::Put(RecordKind::MlsState, buffer.to_record().map_err(internal)?),
            RecordWrite::Put(RecordKind::GroupInfo, group_info),
        ],
    };
    ctx.write_plan::<S>(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        records,
        fanout,
        DsResponseBody::Accepted(accepted),
    )
}

/// A Welcome and the KeyPackageRefs it is encrypted to.
type WelcomeTargets<'a> = Vec<(&'a MlsMessageBytes, Vec<Vec<u8>>)>;

/// Each Welcome with the KeyPackageRefs it is encrypted to (RFC 9420 §12.4.3.1).
fn welcome_targets(welcomes: &[MlsMessageBytes]) -> std::result::Result<WelcomeTargets<'_>, RejectReason> {
    welcomes
        .iter()
        .map(|bytes| match bytes.parse()?.extract() {
            MlsMessageBodyIn::Welcome(welcome) => Ok((
                bytes,
                welcome.secrets().iter().map(|s| s.new_member().as_slice().to_vec()).collect(),
            )),
            _ => Err(RejectReason::InvalidMessageType("expected a Welcome")),
        })
        .collect()
}
