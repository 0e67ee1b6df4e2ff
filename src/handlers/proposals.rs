//! `proposals(15)` (DS-06 §"Proposals"): standalone proposals by a member, stored for the
//! epoch and fanned out. Unlike DS-04..06 ("the next commit must include them"), a commit may
//! leave a member's proposal out and it lapses with the epoch (wire-format.md §4.10): the DS
//! cannot check a proposal's `membership_tag`, so members may refuse one it accepted.

use openmls::prelude::{ContentType, LeafNodeIndex, ProcessedMessageContent, Proposal};
use openmls_traits::crypto::OpenMlsCrypto;

use super::group_state::{
    encode_record, refuse_if_reinitialized, sequencer_writes, OpenGroup, OPEN_GROUP_READS,
};
use super::handshake::{check_epoch, mls_reject, public_handshake};
use super::proposal_conflicts;
use super::{Ctx, HandlerResult, MemberRequest, Plan, Principal, Started};
use crate::error::{internal, InvalidMessageType, InvalidProposal, NotAllowed, RejectReason};
use crate::fanout::fan_out;
use crate::state::{PendingProposalRecord, ProposalOrigin};
use crate::storage::{DsStorage, RecordKind, RecordWrite, VersionGuard};
use crate::wire::{AcceptedMessage, DsResponseBody, MlsMessageBytes};

/// What a proposals request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProposalRule {
    /// `proposals(15)`: any proposals valid under RFC 9420 (DS-06 §"Proposals").
    Any,
    /// `self_remove_client(7)`: a single Remove proposal of the sender's own leaf (DS-03..05),
    /// stored until another member commits it; if a commit leaves it out, the DS issues the
    /// Remove itself in the new epoch.
    SelfRemove,
}

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    rule: ProposalRule,
    proposals: &[MlsMessageBytes],
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let crypto = ctx.crypto();
    // A user may propose removing its own clients with its user key (DS-03 user-level
    // authentication: "removing one's own user from a group").
    let MemberRequest {
        auth,
        snapshot,
        roster,
        principal,
    } = match ctx.start_member_request(storage, &OPEN_GROUP_READS, true)? {
        Started::Duplicate(plan) => return Ok(plan),
        Started::Fresh(request) => request,
    };
    let group_id = auth.group_id();
    // Rule R-PROP-1.
    if proposals.is_empty() {
        return Err(RejectReason::InvalidProposal {
            refs: Vec::new(),
            reason: InvalidProposal::Empty,
        }
        .into());
    }
    // RFC 9420 §12.1.5: once re-initialized, the group takes no more messages.
    refuse_if_reinitialized(&roster)?;

    let OpenGroup {
        buffer,
        mut group,
        mut pending,
        mut sequencer,
        mut activity,
    } = OpenGroup::open(&snapshot, group_id)?;

    let mut fanout = Vec::new();
    let mut touched = false;
    for (i, bytes) in proposals.iter().enumerate() {
        // wire-format.md §4.10: a bounded pending set (DsConfig::max_pending_proposals).
        let limit = ctx.env.config.max_pending_proposals;
        if pending.proposals.len() >= limit {
            // Rule R-PROP-6.
            return Err(RejectReason::TooManyPendingProposals { limit }.into());
        }
        let message = public_handshake(bytes, group_id, ContentType::Proposal)?;
        check_epoch(roster.epoch, message.epoch(), 0)?;
        let sender = principal.sender_of(message.sender(), &roster)?;
        // RFC 9420 §10.1 at the DS's `now`, before openmls checks it with the system clock.
        super::key_package_lifetime::check_proposal_message(bytes, ctx.now)?;
        let processed = group.process_message(crypto, message).map_err(mls_reject)?;
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            // Rule R-MSG-4.
            return Err(
                RejectReason::InvalidMessageType(InvalidMessageType::ExpectedProposal).into(),
            );
        };
        // With a user key, only the user's own clients may be proposed for removal.
        if let Principal::User(user) = &principal {
            let own_removal = matches!(
                queued.proposal(),
                Proposal::Remove(remove)
                    if roster.member(remove.removed().u32()).is_some_and(|m| m.user.as_slice() == user.as_slice())
            );
            // Rule R-PROP-3.
            if !own_removal {
                return Err(RejectReason::NotAllowed(NotAllowed::UserKeyBeyondOwnRemovals).into());
            }
        }
        if rule == ProposalRule::SelfRemove {
            // The sender's own removal: a Remove of its leaf (DS-03..05), or an MLS SelfRemove
            // (draft-ietf-mls-extensions; wire-format.md §15.7), whose sender is its target.
            let removes_sender = matches!(
                queued.proposal(),
                Proposal::Remove(remove) if remove.removed() == LeafNodeIndex::new(sender)
            ) || matches!(queued.proposal(), Proposal::SelfRemove);
            // Rule R-PROP-4.
            if proposals.len() != 1 || !removes_sender {
                return Err(RejectReason::NotAllowed(NotAllowed::SelfRemoveOfAnotherLeaf).into());
            }
        }
        // wire-format.md §15.3: the proposal against its sender's role in the room policy.
        crate::policy::authorize_proposal(&group, &queued, &roster, ctx)?;
        let proposal_ref = queued.proposal_reference_ref().as_slice().to_vec();
        // Rules R-PROP-7..9 (wire-format.md §15.7): against the dictionary of this epoch, which
        // is the one its commit will change.
        #[cfg(feature = "app-data-update")]
        if let Proposal::AppDataUpdate(update) = queued.proposal() {
            let current = group
                .group_context()
                .extensions()
                .app_data_dictionary()
                .and_then(|extension| extension.dictionary().get(&update.component_id()));
            ctx.env
                .config
                .app_data_components
                .apply(current, update)
                .map_err(|reason| RejectReason::InvalidProposal {
                    refs: vec![proposal_ref.clone()],
                    reason,
                })?;
        }
        if pending
            .proposals
            .iter()
            .any(|p| p.proposal_ref.as_slice() == proposal_ref)
        {
            // Rule R-PROP-2.
            return Err(RejectReason::InvalidProposal {
                refs: vec![proposal_ref],
                reason: InvalidProposal::AlreadyPending,
            }
            .into());
        }
        // RFC 9420 §12.2: nothing no commit could carry next to what is pending (the DS's own
        // proposals and those accepted earlier in this request included).
        let queued_now = group.queued_proposals(&buffer).map_err(internal)?;
        // Rule R-PROP-5.
        proposal_conflicts::check(queued_now.iter().map(|(_, q)| q), &queued).map_err(
            |conflict| RejectReason::ProposalConflict {
                conflict,
                refs: vec![proposal_ref.clone()],
            },
        )?;
        // A self-removal the next commit leaves out is issued again by the DS (§4.6).
        let (origin, removal_target) = match rule {
            ProposalRule::SelfRemove => (
                ProposalOrigin::SelfRemoval,
                roster
                    .member(sender)
                    .map(|m| m.signature_key.as_slice().to_vec())
                    .unwrap_or_default(),
            ),
            ProposalRule::Any => (ProposalOrigin::Member, Vec::new()),
        };
        // openmls does not store standalone proposals (docs/openmls-notes.md O1): without this, a
        // later commit referencing it would not resolve.
        group.add_proposal(&buffer, *queued).map_err(internal)?;
        pending.proposals.push(PendingProposalRecord {
            proposal_ref: proposal_ref.into(),
            hub_accepted_time: ctx.now,
            message: bytes.as_bytes().to_vec().into(),
            removal_target: removal_target.into(),
            origin,
        });
        fanout.extend(fan_out(
            &ctx.env.config.domain,
            group_id,
            sequencer.next_sequence + i as u64,
            ctx.now,
            bytes,
            &[],
            roster
                .iter()
                .filter(|(leaf, _)| *leaf != sender)
                .map(|(_, m)| &m.queue_config),
        ));
        touched |= activity.touch(
            sender,
            ctx.now,
            ctx.env.config.effective_activity_granularity_ms(),
        );
    }

    // The proposals occupy consecutive sequence numbers; the receipt names the first.
    let accepted = AcceptedMessage {
        sequence_number: sequencer.next_sequence,
        accepted_time_ms: ctx.now.as_millis(),
        epoch: roster.epoch,
        external_proposals: Vec::new(),
        frank: None,
    };
    sequencer.next_sequence += proposals.len() as u64;
    let mut records = sequencer_writes(
        &sequencer,
        &activity,
        touched,
        snapshot.record(RecordKind::Activity).is_some(),
    )?;
    records.extend([
        encode_record(RecordKind::PendingProposals, &pending)?,
        RecordWrite::Put(RecordKind::MlsState, buffer.to_record().map_err(internal)?),
    ]);
    ctx.write_plan(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        records,
        fanout,
        DsResponseBody::Accepted(accepted),
    )
}
