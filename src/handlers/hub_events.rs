//! What the embedding server tells the DS about a group, and how the DS reacts: as the group's
//! MLS external sender it issues Remove proposals (DS-00 §6 "the DS can use the rejection to
//! issue Remove proposals"; DS-00..04: a user removed a client, a user was deleted, a client was
//! inactive for too long) or rotates its own signing key.
//!
//! The proposals are stored as pending and fanned out like a member's. Unlike a member's, they
//! are mandatory: the pending-proposal policy refuses commits that leave them out and, for
//! removals, application messages until a member commits them (wire-format.md §7.4).

use openmls::prelude::{LeafNodeIndex, Proposal, Sender};
use openmls_traits::crypto::OpenMlsCrypto;

use super::group_state::{
    decode_record, encode_record, optional_record, refuse_if_reinitialized, OpenGroup,
    OPEN_GROUP_READS,
};
use super::hub_proposals::{issue_removal, issue_rotation};
use super::HandlerEnv;
use super::{write_plan, HandlerResult, Plan};
use crate::error::{internal, Failure, ProcessError, ProposalConflict, RejectReason};
use crate::fanout::fan_out;
use crate::hub_event::HubEvent;
use crate::state::Roster;
use crate::storage::{DsStorage, RecordKind, RecordWrite, VersionGuard};
use crate::time::UnixTimeMs;
use crate::wire::{AcceptedMessage, DsResponseBody};

pub(crate) fn handle<C: OpenMlsCrypto, S: DsStorage>(
    env: &HandlerEnv<'_, C>,
    now: UnixTimeMs,
    group_id: &[u8],
    event: &HubEvent,
    storage: &S,
) -> HandlerResult<Plan, S::Error> {
    let snapshot = storage
        .read(group_id, &OPEN_GROUP_READS)
        .map_err(|e| Failure::Process(ProcessError::Storage(e)))?
        .filter(|s| {
            OPEN_GROUP_READS
                .iter()
                .all(|k| optional_record(*k) || s.record(*k).is_some())
        })
        // Rule R-FRAME-5.
        .ok_or(RejectReason::UnknownGroup)?;
    let roster: Roster = decode_record(&snapshot, RecordKind::Roster)?;
    refuse_if_reinitialized(&roster)?;
    let OpenGroup {
        buffer,
        mut group,
        mut pending,
        mut sequencer,
        activity,
    } = OpenGroup::open(&snapshot, group_id)?;

    let mut issued = Vec::new();
    let mut removed_leaves = Vec::new();
    if *event == HubEvent::RotateSigningKey {
        // RFC 9420 §12.2: one GroupContextExtensions per commit. The DS's own rotation already
        // pending leaves nothing to do; a member's must be committed or lapse first (otherwise
        // openmls committers include both, and no commit is valid).
        let queued = group.queued_proposals(&buffer).map_err(internal)?;
        let pending_extensions = queued
            .iter()
            .find(|(_, q)| matches!(q.proposal(), Proposal::GroupContextExtensions(_)));
        match pending_extensions {
            Some((_, q)) if matches!(q.sender(), Sender::External(_)) => {}
            Some((reference, _)) => {
                return Err(RejectReason::ProposalConflict {
                    conflict: ProposalConflict::SecondGroupContextExtensions,
                    refs: vec![reference.as_slice().to_vec()],
                }
                .into())
            }
            None => {
                if let Some(proposal) = issue_rotation(env, &mut group, &buffer, now)? {
                    issued.push(proposal);
                }
            }
        }
    } else {
        let already_pending: Vec<&[u8]> = pending
            .proposals
            .iter()
            .map(|p| p.removal_target.as_slice())
            .collect();
        let targets: Vec<u32> = match event {
            HubEvent::QueueRejected(queue) => roster
                .iter()
                .filter(|(_, m)| m.queue_config == *queue)
                .map(|(l, _)| l)
                .collect(),
            HubEvent::ClientDeleted { signature_key } => roster
                .iter()
                .filter(|(_, m)| m.signature_key.as_slice() == signature_key.as_slice())
                .map(|(l, _)| l)
                .collect(),
            HubEvent::UserDeleted { user } => roster.leaves_of(user).collect(),
            HubEvent::InactivitySweep => {
                // Rule R-HUB-1.
                let limit = env
                    .config
                    .inactivity_limit_ms
                    .ok_or(RejectReason::NotAllowed(
                        crate::error::NotAllowed::NoInactivityLimit,
                    ))?;
                roster
                    .iter()
                    .filter(|(leaf, _)| now.since(activity.last_active(*leaf)) > limit)
                    .map(|(l, _)| l)
                    .collect()
            }
            HubEvent::RotateSigningKey => Vec::new(),
        };
        for leaf in targets {
            let key = roster
                .member(leaf)
                .map(|m| m.signature_key.as_slice())
                .unwrap_or_default();
            if already_pending.contains(&key) {
                continue;
            }
            issued.push(issue_removal(
                env,
                &mut group,
                &buffer,
                LeafNodeIndex::new(leaf),
                now,
            )?);
            removed_leaves.push(leaf);
        }
        if !issued.is_empty() {
            sequencer.ds_removals_pending_since.get_or_insert(now);
        }
    }
    if issued.is_empty() {
        return Ok(Plan::Answer(DsResponseBody::Ok));
    }

    // Each proposal goes to every member but those it removes (whose queues are usually gone).
    let first = sequencer.next_sequence;
    let mut fanout = Vec::new();
    for (i, (message, record)) in issued.iter().enumerate() {
        fanout.extend(fan_out(
            &env.config.domain,
            group_id,
            first + i as u64,
            now,
            message,
            &[],
            roster
                .iter()
                .filter(|(leaf, _)| !removed_leaves.contains(leaf))
                .map(|(_, m)| &m.queue_config),
        ));
        pending.proposals.push(record.clone());
    }
    sequencer.next_sequence += issued.len() as u64;
    let receipt = AcceptedMessage {
        sequence_number: first,
        accepted_time_ms: now.as_millis(),
        epoch: roster.epoch,
        external_proposals: issued.into_iter().map(|(message, _)| message).collect(),
        frank: None,
    };
    write_plan(
        env.crypto,
        now,
        None,
        group_id,
        VersionGuard::Exactly(snapshot.version),
        vec![
            encode_record(RecordKind::Sequencer, &sequencer)?,
            encode_record(RecordKind::PendingProposals, &pending)?,
            RecordWrite::Put(RecordKind::MlsState, buffer.to_record().map_err(internal)?),
        ],
        fanout,
        DsResponseBody::Accepted(receipt),
    )
}
