//! Commits by members: `commits(16)`, `delete_group(2)`, `add_users(3)`, `remove_users(4)`,
//! `add_clients(5)`, `remove_clients(6)`, `update_client(8)`, `re_initialize_group(14)`
//! (DS-03..06 `MLSGroupUpdate`; the per-operation rules are in [`super::commit_rules`]).
//!
//! Order of checks: authentication, framing (PublicMessage commit for this group at the current
//! epoch, sent by the authenticated leaf), MLS validation by openmls `PublicGroup`, DS rules
//! (pending proposals, self-removal, operation rule, Welcomes), merge, then the new GroupInfo is
//! verified against the merged state. Nothing is written unless all of it holds.

use std::collections::BTreeSet;

use openmls::prelude::{
    ContentType, LeafNodeIndex, MlsMessageBodyIn, Proposal, ProposalOrRefType, PublicGroup, Sender,
    StagedCommit,
};
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{DeserializeBytes, Serialize as _, VLBytes};

use super::commit_rules::{self, Added, CommitSummary, Operation};
use super::group_info_check::verify_post_commit_group_info;
use super::group_state::{
    activity_writes, decode_record, encode_record, refuse_if_reinitialized, OpenGroup,
};
use super::handshake::{check_epoch, mls_reject, public_handshake};
use super::hub_proposals::reissue_removals;
use super::key_package_lifetime;
use super::welcome_trees;
use super::{Ctx, HandlerResult, MemberRequest, Plan, Started};
use crate::auth::ReplayGuard;
use crate::error::{
    internal, Failure, InvalidGroupId, InvalidMessageType, NotAllowed, ProcessError, RejectReason,
};
use crate::fanout::{fan_out, Fanout};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::{
    queue_config_of, Activity, Joiner, PendingProposalRecord, PendingProposals, Reservation,
    Roster, Sequencer, WelcomeSnapshot, WelcomeSnapshots,
};
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, RecordWrite, VersionGuard};
use crate::time::UnixTimeMs;
use crate::wire::{AcceptedMessage, DsResponseBody, GroupUpdate, MlsMessageBytes};

/// Records every commit handler reads.
pub(crate) const COMMIT_READS: [RecordKind; 7] = [
    RecordKind::Roster,
    RecordKind::Sequencer,
    RecordKind::MlsState,
    RecordKind::PendingProposals,
    RecordKind::WelcomeSnapshots,
    // Pseudonymous groups only (wire-format.md §14.2).
    RecordKind::IdentityLinks,
    // Absent in groups stored before it existed (wire-format.md §16.1).
    RecordKind::Activity,
];

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    op: Operation<'_>,
    update: &GroupUpdate,
    welcomes: &[MlsMessageBytes],
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let crypto = ctx.crypto();
    // User-level operations may be authorised with the user's key (DS-03 user authentication).
    let allow_user = matches!(op, Operation::AddClients | Operation::RemoveClients);
    let MemberRequest {
        auth,
        snapshot,
        roster,
        principal,
    } = match ctx.start_member_request_reading(
        storage,
        &COMMIT_READS,
        allow_user,
        |group_id, roster, snapshot| {
            welcome_trees::read_earlier_trees(storage, group_id, roster.epoch, snapshot)
        },
    )? {
        Started::Duplicate(plan) => return Ok(plan),
        Started::Fresh(request) => request,
    };
    let group_id = auth.group_id();
    refuse_if_reinitialized(&roster)?;

    let message = public_handshake(&update.commit, group_id, ContentType::Commit)?;
    check_epoch(roster.epoch, message.epoch(), 0)?;
    let sender = principal.sender_of(message.sender(), &roster)?;
    // RFC 9420 §10.1 at the DS's `now`, before openmls checks lifetimes with the system clock.
    key_package_lifetime::check_commit(
        &update.commit,
        &decode_record(&snapshot, RecordKind::PendingProposals)?,
        ctx.now,
    )?;

    let OpenGroup {
        buffer,
        mut group,
        pending,
        sequencer,
        activity,
    } = OpenGroup::open(&snapshot, group_id)?;
    let processed = group.process_message(crypto, message).map_err(mls_reject)?;
    let authenticated_data = processed.aad().to_vec();
    // An AppDataUpdate's data means what its component defines (wire-format.md §15.7).
    let staged = super::app_data_commit::staged_commit(
        crypto,
        ctx.env.config,
        &group,
        processed.into_content(),
    )?;

    let committer = LeafNodeIndex::new(sender);
    let summary = summarize(ctx, &group, &staged, Some(committer))?;
    let omitted = omitted_pending(
        ctx,
        &pending,
        &included_by_reference(&staged),
        &removed_keys(&group, &summary),
        sequencer.ds_removals_pending_since,
        crate::policy::pending_proposal_policy(&group, ctx.env.config.pending_proposals)?,
    )?;
    // Rule R-COMMIT-3. DS-06 §"Commit": a member cannot commit its own removal.
    if summary.removed.contains(&committer) {
        return Err(RejectReason::NotAllowed(NotAllowed::CommitterRemovesItself).into());
    }
    commit_rules::check(op, &summary, sender, &roster)?;
    // Rule R-POL-29: a stale leaf may commit only with an update path (wire-format.md §15.4).
    roster
        .room_parameters
        .check_leaf_age(sender, ctx.now, summary.changed.contains(&committer))?;
    // wire-format.md §15.3: each proposal against its sender's role in the room policy.
    let deletes_room = op == Operation::DeleteGroup;
    crate::policy::authorize_commit(&group, &staged, &roster, sender, deletes_room, ctx)?;
    if let Some(target) = &summary.reinit_group_id {
        require_reserved_successor(ctx, storage, target)?;
        // wire-format.md §17.2: a keyed request got here only for a privacy-mode group, whose
        // successor must be in privacy mode too.
        if ctx.request.body.state_keys().is_some() && !summary.reinit_keeps_privacy_mode {
            return Err(RejectReason::PlainSuccessor.into());
        }
    }
    let welcome_targets = match_welcomes(welcomes, &summary.added)?;

    let tree_before = welcome_trees::tree_before(&snapshot, &group)?;
    group.merge_commit(&buffer, *staged).map_err(internal)?;
    let tree_transition = welcome_trees::transition(tree_before, &group)?;
    let group_info = verify_post_commit_group_info(crypto, &group, &update.group_info, committer)?;
    commit_rules::check_changed_clients_keep_their_user(&group, &roster, &summary, ctx)?;
    let mut new_roster = Roster::rebuild(
        &group,
        Some(&roster),
        &summary.removed,
        &summary.changed,
        ctx,
    )?;
    crate::policy::check_room(&group, &new_roster)?;
    crate::policy::record_room_parameters(
        &group,
        &mut new_roster,
        Some(&roster),
        &summary.removed,
        &summary.changed,
        ctx.now,
    )?;
    if let Operation::UpdateClient(Some(config)) = op {
        // DS-04 `UpdateClientRequest`: the update may replace the client's queue information.
        if let Some(Some(entry)) = new_roster.members.get_mut(sender as usize) {
            entry.queue_config = config.clone();
        }
        new_roster.refuse_shared_queue_configs(|leaf| leaf == sender)?;
    }
    if let Some(target) = &summary.reinit_group_id {
        new_roster.successor = Some(target.clone().into());
    }
    let identity_links = crate::pseudonym::group_links::CommitLinks {
        group: &group,
        previous: snapshot.record(RecordKind::IdentityLinks),
        removed: &summary.removed,
        added_keys: summary
            .added
            .iter()
            .map(|a| a.signature_key.as_slice())
            .collect(),
        committer: sender,
        external: false,
        authenticated_data: &authenticated_data,
        group_info: &group_info,
    }
    .entries()?;
    let (stapled, pending_after) = if op == Operation::DeleteGroup {
        (Vec::new(), PendingProposals::default())
    } else {
        reissue_removals(&ctx.env, &mut group, &buffer, &omitted, ctx.now)?
    };

    let accepted = Accepting {
        group_id,
        snapshot: &snapshot,
        previous: &roster,
        committer: Some(sender),
        commit: &update.commit,
        welcomes: welcome_targets,
        stapled,
        pending_after,
        not_notified: Vec::new(),
        sequencer,
        activity,
        identity_links,
        tree_transition,
    };
    if op == Operation::DeleteGroup {
        let (plan_fanout, receipt) = accepted.fanout(ctx, &summary, new_roster.epoch)?;
        let mut records = vec![
            RecordWrite::Put(
                RecordKind::Tombstone,
                ctx.now.as_millis().to_be_bytes().to_vec(),
            ),
            RecordWrite::Delete(RecordKind::Roster),
            RecordWrite::Delete(RecordKind::Sequencer),
            RecordWrite::Delete(RecordKind::MlsState),
            RecordWrite::Delete(RecordKind::GroupInfo),
            RecordWrite::Delete(RecordKind::PendingProposals),
            RecordWrite::Delete(RecordKind::WelcomeSnapshots),
            RecordWrite::Delete(RecordKind::Activity),
        ];
        if snapshot.record(RecordKind::IdentityLinks).is_some() {
            records.push(RecordWrite::Delete(RecordKind::IdentityLinks));
        }
        records.extend(pending_welcome_trees(&snapshot)?);
        return ctx.write_plan(
            Some(&auth.guard),
            group_id,
            VersionGuard::Exactly(snapshot.version),
            records,
            plan_fanout,
            DsResponseBody::Accepted(receipt),
        );
    }
    accepted.plan(ctx, &auth.guard, &buffer, &summary, new_roster, group_info)
}

/// The pending proposals a commit leaves out (wire-format.md §4.3.3).
///
/// Only the DS's own proposals are mandatory (draft-robert-mimi-delivery-service §5.1,
/// docs/decisions.md D12): leaving one out is refused with `missing_pending_proposals` while the
/// pending-proposal policy is enforced (always, under the default strict policy); otherwise it
/// lapses with the epoch and the DS issues it again. A DS Remove also counts as included when
/// the commit removes its target by another Remove (`removed_keys`, the signature keys of the
/// leaves the commit removes): RFC 9420 §12.2 lets a commit carry only one Remove per leaf.
///
/// Members' proposals are never mandatory: the DS cannot check their `membership_tag` (it
/// holds no membership key), so members may refuse one the DS accepted, and a rule that every
/// commit must include it would let one member block every commit. A commit may leave them out
/// and they lapse with the epoch.
///
/// `policy` is the room's pending-proposal policy where it sets one, else the hub's
/// (wire-format.md §15.4).
///
/// The grace period of the DS's own removals runs from when they were first issued
/// (`hub_removals_since`), not from their latest re-issue, so committers cannot keep leaving
/// them out.
pub(crate) fn omitted_pending<C>(
    ctx: &Ctx<'_, C>,
    pending: &PendingProposals,
    included: &BTreeSet<Vec<u8>>,
    removed_keys: &BTreeSet<Vec<u8>>,
    hub_removals_since: Option<UnixTimeMs>,
    policy: crate::PendingProposalPolicy,
) -> Result<Vec<PendingProposalRecord>, RejectReason> {
    let omitted: Vec<PendingProposalRecord> = pending
        .proposals
        .iter()
        .filter(|p| !included.contains(p.proposal_ref.as_slice()))
        .cloned()
        .collect();
    let outstanding: Vec<&PendingProposalRecord> = omitted
        .iter()
        .filter(|p| p.is_mandatory() && !removed_keys.contains(p.removal_target.as_slice()))
        .collect();
    let oldest = outstanding
        .iter()
        .map(|p| match hub_removals_since {
            Some(since) if !p.removal_target.as_slice().is_empty() => {
                since.min(p.hub_accepted_time)
            }
            _ => p.hub_accepted_time,
        })
        .min();
    match oldest {
        Some(since) if policy.enforced(since, ctx.now) => {
            // Rule R-COMMIT-7.
            Err(RejectReason::MissingPendingProposals {
                refs: outstanding
                    .iter()
                    .map(|p| p.proposal_ref.as_slice().to_vec())
                    .collect(),
            })
        }
        _ => Ok(omitted),
    }
}

/// The signature keys of the leaves a commit removes, read from the group before the commit.
pub(crate) fn removed_keys(group: &PublicGroup, summary: &CommitSummary) -> BTreeSet<Vec<u8>> {
    summary
        .removed
        .iter()
        .filter_map(|leaf| group.leaf(*leaf))
        .map(|leaf| leaf.signature_key().as_slice().to_vec())
        .collect()
}

/// The ProposalRefs a staged commit includes by reference.
pub(crate) fn included_by_reference(staged: &StagedCommit) -> BTreeSet<Vec<u8>> {
    staged
        .queued_proposals()
        .filter(|p| p.proposal_or_ref_type() == ProposalOrRefType::Reference)
        .map(|p| p.proposal_reference_ref().as_slice().to_vec())
        .collect()
}

/// Describes a staged commit for the operation rules. `committer` is `None` for an external
/// commit (whose joiner has no leaf before the commit).
pub(crate) fn summarize<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    ctx: &Ctx<'_, C>,
    group: &PublicGroup,
    staged: &StagedCommit,
    committer: Option<LeafNodeIndex>,
) -> Result<CommitSummary, Failure<E>> {
    let mut summary = CommitSummary {
        by_value: Vec::new(),
        added: Vec::new(),
        removed: Vec::new(),
        removed_by_value: Vec::new(),
        changed: Vec::new(),
        has_path: staged.update_path_leaf_node().is_some(),
        committer_credential_changed: false,
        reinit_group_id: None,
        reinit_keeps_privacy_mode: false,
        proposal_count: staged.queued_proposals().count(),
    };
    for queued in staged.queued_proposals() {
        let by_value = queued.proposal_or_ref_type() == ProposalOrRefType::Proposal;
        if by_value {
            summary.by_value.push(queued.proposal().proposal_type());
        }
        match queued.proposal() {
            Proposal::Add(add) => {
                let key_package = add.key_package();
                let leaf = key_package.leaf_node();
                summary.added.push(Added {
                    key_package_ref: key_package
                        .hash_ref(ctx.crypto())
                        .map_err(internal)?
                        .as_slice()
                        .to_vec(),
                    queue_config: queue_config_of(leaf)?,
                    user: ctx.identify(leaf)?,
                    signature_key: leaf.signature_key().as_slice().to_vec(),
                    expires_at: UnixTimeMs(
                        key_package.life_time().not_after().saturating_mul(1000),
                    ),
                });
            }
            Proposal::Remove(remove) => {
                summary.removed.push(remove.removed());
                if by_value {
                    summary.removed_by_value.push(remove.removed());
                }
            }
            Proposal::Update(_) => {
                if let Sender::Member(leaf) = queued.sender() {
                    summary.changed.push(*leaf);
                }
            }
            Proposal::ReInit(reinit) => {
                // openmls keeps ReInitProposal's fields private; `group_id<V>` is its first field.
                let encoded = reinit.tls_serialize_detached().map_err(internal)?;
                let (target, rest) = VLBytes::tls_deserialize_bytes(&encoded).map_err(internal)?;
                summary.reinit_group_id = Some(target.as_slice().to_vec());
                summary.reinit_keeps_privacy_mode =
                    crate::privacy::reinit_keeps_privacy_mode(rest).map_err(internal)?;
            }
            _ => {}
        }
    }
    if let (Some(committer), Some(new_leaf)) = (committer, staged.update_path_leaf_node()) {
        summary.changed.push(committer);
        summary.committer_credential_changed = group
            .leaf(committer)
            .is_some_and(|old| old.credential() != new_leaf.credential());
    }
    Ok(summary)
}

/// DS-03/04 §"Re-initialize group": the new group ID must be one this DS issued and that is
/// still reserved, so the successor group can be created here.
fn require_reserved_successor<C, S: DsStorage>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    target: &[u8],
) -> HandlerResult<(), S::Error> {
    let snapshot = storage
        .read(target, &[RecordKind::Reservation])
        .map_err(|e| Failure::Process(ProcessError::Storage(e)))?;
    let reserved = match snapshot
        .as_ref()
        .and_then(|s| s.record(RecordKind::Reservation))
    {
        Some(bytes) => {
            crate::wire::decode_exact::<Reservation>(bytes)
                .map_err(internal)?
                .expires_at
                >= ctx.now
        }
        None => false,
    };
    // Rule R-GID-6.
    if reserved {
        Ok(())
    } else {
        Err(RejectReason::InvalidGroupId(InvalidGroupId::ReInitTargetNotReserved).into())
    }
}

/// Each Welcome with the KeyPackageRefs it is encrypted to.
pub(crate) type WelcomeTargets<'a> = Vec<(&'a MlsMessageBytes, Vec<Vec<u8>>)>;

/// Pairs each Welcome with the added clients it is for. Welcomes go exactly to the clients the
/// commit adds (draft-ietf-mimi-protocol-06 Welcome routing): the KeyPackageRefs they name
/// (RFC 9420 §12.4.3.1) must be exactly those of the Adds, each once.
fn match_welcomes<'a>(
    welcomes: &'a [MlsMessageBytes],
    added: &[Added],
) -> Result<WelcomeTargets<'a>, RejectReason> {
    let mut targets = Vec::with_capacity(welcomes.len());
    for bytes in welcomes {
        let MlsMessageBodyIn::Welcome(welcome) = bytes.parse()?.extract() else {
            // Rule R-MSG-8.
            return Err(RejectReason::InvalidMessageType(
                InvalidMessageType::ExpectedWelcome,
            ));
        };
        targets.push((
            bytes,
            welcome
                .secrets()
                .iter()
                .map(|s| s.new_member().as_slice().to_vec())
                .collect::<Vec<_>>(),
        ));
    }
    let added_refs: BTreeSet<&[u8]> = added.iter().map(|a| a.key_package_ref.as_slice()).collect();
    let named: Vec<&[u8]> = targets
        .iter()
        .flat_map(|(_, refs)| refs.iter().map(Vec::as_slice))
        .collect();
    let named_set: BTreeSet<&[u8]> = named.iter().copied().collect();
    // Rule R-COMMIT-4.
    if added_refs != named_set || named.len() != added.len() {
        return Err(RejectReason::NotAllowed(NotAllowed::WelcomesDoNotMatchAdds));
    }
    Ok(targets)
}

/// The write and fanout of an accepted commit.
pub(crate) struct Accepting<'a> {
    pub(crate) group_id: &'a [u8],
    pub(crate) snapshot: &'a GroupSnapshot,
    /// The roster of the epoch the commit ends.
    pub(crate) previous: &'a Roster,
    /// The committer's leaf, which does not get its own commit back (`None` for an external
    /// commit, whose joiner was not in the previous epoch).
    pub(crate) committer: Option<u32>,
    pub(crate) commit: &'a MlsMessageBytes,
    pub(crate) welcomes: WelcomeTargets<'a>,
    /// The DS's own proposals issued again in the new epoch, stapled to the commit.
    pub(crate) stapled: Vec<MlsMessageBytes>,
    /// Leaves of the previous epoch that do not get the commit: for an external commit, the
    /// leaves it removes, which belong to the joiner's user (in a resync, RFC 9420 §12.4.3.2,
    /// the joiner's own old leaf). Chosen by leaf, never by queue configuration, which any
    /// joiner can copy.
    pub(crate) not_notified: Vec<u32>,
    /// The proposals pending in the new epoch (the re-issued ones).
    pub(crate) pending_after: PendingProposals,
    /// The group's sequencer as read with `snapshot`.
    pub(crate) sequencer: Sequencer,
    /// The group's activity as read with `snapshot`.
    pub(crate) activity: Activity,
    /// A pseudonymous group's identity link keys after the commit (wire-format.md §14.2).
    pub(crate) identity_links: Option<crate::pseudonym::IdentityLinkKeys>,
    /// The tree before and after the commit, if the group had Welcome snapshots to carry
    /// (wire-format.md §4.12).
    pub(crate) tree_transition: Option<crate::state::Transition>,
}

impl Accepting<'_> {
    /// The receipt and the fanout: the commit reaches every member of the previous epoch but
    /// the committer, removed ones included (draft-ietf-mimi-protocol-06 §"Fanout"); each
    /// Welcome reaches the clients it names.
    pub(crate) fn fanout<C, E: std::error::Error + 'static>(
        &self,
        ctx: &Ctx<'_, C>,
        summary: &CommitSummary,
        new_epoch: u64,
    ) -> HandlerResult<(Vec<Fanout>, AcceptedMessage), E> {
        let sequencer = &self.sequencer;
        let receipt = AcceptedMessage {
            sequence_number: sequencer.next_sequence,
            accepted_time_ms: ctx.now.as_millis(),
            epoch: new_epoch,
            external_proposals: self.stapled.clone(),
            frank: None,
        };
        let domain = &ctx.env.config.domain;
        let mut fanout = fan_out(
            domain,
            self.group_id,
            receipt.sequence_number,
            ctx.now,
            self.commit,
            &self.stapled,
            self.previous
                .iter()
                .filter(|(leaf, _)| {
                    Some(*leaf) != self.committer && !self.not_notified.contains(leaf)
                })
                .map(|(_, m)| &m.queue_config),
        );
        for (welcome, refs) in &self.welcomes {
            let recipients = summary
                .added
                .iter()
                .filter(|a| refs.contains(&a.key_package_ref))
                .map(|a| &a.queue_config);
            fanout.extend(fan_out(
                domain,
                self.group_id,
                receipt.sequence_number,
                ctx.now,
                welcome,
                &[],
                recipients,
            ));
        }
        Ok((fanout, receipt))
    }

    /// The plan for a commit that keeps the group.
    #[allow(clippy::too_many_arguments)] // the pieces of one accepted commit
    pub(crate) fn plan<C: OpenMlsCrypto, E: std::error::Error + 'static>(
        &self,
        ctx: &Ctx<'_, C>,
        guard: &ReplayGuard,
        buffer: &MlsStateBuffer,
        summary: &CommitSummary,
        roster: Roster,
        group_info: Vec<u8>,
    ) -> HandlerResult<Plan, E> {
        let (fanout, receipt) = self.fanout(ctx, summary, roster.epoch)?;
        let welcome_writes = self.welcome_writes(ctx, summary, roster.epoch)?;
        let mut sequencer = self.sequencer.clone();
        sequencer.next_sequence = receipt.sequence_number + 1;
        // The grace period of re-issued DS removals runs from when they were first issued.
        sequencer.ds_removals_pending_since = if self.stapled.is_empty() {
            None
        } else {
            Some(sequencer.ds_removals_pending_since.unwrap_or(ctx.now))
        };
        let fresh = |leaf: u32| {
            self.previous.member(leaf).is_none()
                || summary.removed.contains(&LeafNodeIndex::new(leaf))
                || Some(leaf) == self.committer
        };
        let mut activity = self.activity.clone();
        activity.follow(&roster, fresh, ctx.now);
        // Messages of epochs that no longer take application messages cannot be replayed.
        sequencer.forget_messages_before(
            roster.epoch.saturating_sub(
                roster
                    .room_parameters
                    .epoch_tolerance(ctx.env.config.app_message_epoch_tolerance),
            ),
        );
        let [activity_record, activity_sequencer] = activity_writes(&activity, &sequencer)?;
        let records = vec![
            encode_record(RecordKind::Roster, &roster)?,
            activity_sequencer,
            activity_record,
            encode_record(RecordKind::PendingProposals, &self.pending_after)?,
            RecordWrite::Put(RecordKind::MlsState, buffer.to_record().map_err(internal)?),
            RecordWrite::Put(RecordKind::GroupInfo, group_info),
        ];
        let links = self
            .identity_links
            .as_ref()
            .map(|links| encode_record(RecordKind::IdentityLinks, links))
            .transpose()?;
        let records = records
            .into_iter()
            .chain(welcome_writes)
            .chain(links)
            .collect();
        ctx.write_plan(
            Some(guard),
            self.group_id,
            VersionGuard::Exactly(self.snapshot.version),
            records,
            fanout,
            DsResponseBody::Accepted(receipt),
        )
    }

    /// The Welcome snapshot writes of an accepted commit (wire-format.md §4.12). The index
    /// loses the joiners whose leaves the commit removes and those whose retention ended, and
    /// gains the joiners the commit adds, with their retention clamped to
    /// `DsConfig::welcome_retention_ms`; beyond `DsConfig::max_welcome_snapshots` the oldest
    /// snapshots are evicted; the trees of dropped epochs are deleted.
    ///
    /// The snapshot of the group's current epoch stores no tree: it shares the `MlsState`
    /// record, whose tree is that epoch's until the next commit. So the new epoch's snapshot is
    /// written without a tree; the tree of the epoch the commit leaves, if its snapshot is
    /// still pending, and those of earlier pending epochs are written as their differences
    /// from the new tree ([`welcome_trees::tree_writes`]).
    fn welcome_writes<C: OpenMlsCrypto, E: std::error::Error + 'static>(
        &self,
        ctx: &Ctx<'_, C>,
        summary: &CommitSummary,
        new_epoch: u64,
    ) -> HandlerResult<Vec<RecordWrite>, E> {
        let mut index: WelcomeSnapshots =
            decode_record(self.snapshot, RecordKind::WelcomeSnapshots)?;
        let removed_keys: Vec<&[u8]> = summary
            .removed
            .iter()
            .filter_map(|leaf| self.previous.member(leaf.u32()))
            .map(|member| member.signature_key.as_slice())
            .collect();
        let mut dropped = index.forget(&removed_keys);
        dropped.extend(index.purge(ctx.now));

        // A client picks its KeyPackage's `not_after` (up to u64::MAX): the DS keeps the tree
        // no longer than its own limit.
        let retention_end = ctx.now.saturating_add(ctx.env.config.welcome_retention_ms);
        // wire-format.md §17.3: a privacy-mode group (whose requests are the keyed ones) keeps
        // no Welcome snapshot, so it indexes no joiner: its joiners take the tree from their
        // Welcome, and an entry would be 74 sealed bytes per joiner that nothing reads.
        let privacy_mode = ctx.request.body.state_keys().is_some();
        let joiners: Vec<Joiner> = summary
            .added
            .iter()
            .filter(|_| !privacy_mode)
            .map(|a| Joiner {
                key_package_ref: a.key_package_ref.clone().into(),
                signature_key: a.signature_key.clone().into(),
                expires_at: a.expires_at.min(retention_end),
            })
            .filter(|j| j.expires_at >= ctx.now)
            .collect();
        if !joiners.is_empty() {
            let snapshot = WelcomeSnapshot {
                epoch: new_epoch,
                joiners,
            };
            let evicted = index.push(snapshot, ctx.env.config.max_welcome_snapshots);
            dropped.extend(evicted.into_iter().filter(|epoch| *epoch != new_epoch));
        }

        let mut writes = vec![encode_record(RecordKind::WelcomeSnapshots, &index)?];
        writes.extend(welcome_trees::tree_writes(
            &index,
            self.previous.epoch,
            self.tree_transition.as_ref(),
            self.snapshot,
        )?);
        writes.extend(
            dropped
                .into_iter()
                .map(|epoch| RecordWrite::Delete(RecordKind::WelcomeTree { epoch })),
        );
        Ok(writes)
    }
}

/// Deletes of every Welcome tree the group's index lists, for `delete_group`.
fn pending_welcome_trees<E: std::error::Error + 'static>(
    snapshot: &GroupSnapshot,
) -> HandlerResult<Vec<RecordWrite>, E> {
    let index: WelcomeSnapshots = decode_record(snapshot, RecordKind::WelcomeSnapshots)?;
    Ok(index
        .snapshots
        .iter()
        .map(|s| RecordWrite::Delete(RecordKind::WelcomeTree { epoch: s.epoch }))
        .collect())
}
