//! `external_join(9)`: joining by external commit, including the resync of a client that lost
//! its state (an external commit that also removes the client's old leaf; DS-02 "Resync
//! client", folded into external join by DS-03).
//!
//! The request is unauthenticated at the DS layer (docs/decisions.md D9): the joiner has no leaf
//! yet, and the external commit is signed by the leaf it creates, which openmls verifies. Who
//! may join is the deployment's [`ExternalJoinPolicy`]; DS-03/04 allowed only clients of users
//! already in the group, which is the default.

use openmls::prelude::{ContentType, Sender};
use openmls_traits::crypto::OpenMlsCrypto;

use super::commit::{summarize, Accepting, COMMIT_READS};
use super::group_info_check::{verifiable_group_info, verify_post_commit_group_info};
use super::group_state::{decode_record, refuse_if_reinitialized, OpenGroup};
use super::handshake::{check_epoch, mls_reject, public_handshake_in_any_group};
use super::hub_proposals::reissue_removals;
use super::{Ctx, HandlerResult, Plan};
use crate::auth::{ReplayCheck, ReplayGuard};
use crate::config::ExternalJoinPolicy;
use crate::error::{internal, RejectReason};
use crate::error::{
    AuthenticationFailed, InvalidGroupInfo, InvalidMessageType, InvalidMlsMessage, NotAllowed,
};
use crate::state::Roster;
use crate::storage::{DsStorage, RecordKind};
use crate::wire::{DsAuthData, GroupInfoOption, GroupUpdateRequest};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &GroupUpdateRequest,
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let crypto = ctx.crypto();
    // Rule R-AUTH-7.
    if ctx.request.auth != DsAuthData::Unauthenticated {
        return Err(
            RejectReason::AuthenticationFailed(AuthenticationFailed::ExternalJoinSigned).into(),
        );
    }
    // Cheap checks before anything is decoded or read (wire-format.md §4.4.4).
    // Rule R-JOIN-1.
    if ctx.env.config.external_joins == ExternalJoinPolicy::Disabled {
        return Err(RejectReason::NotAllowed(NotAllowed::ExternalJoinsDisabled).into());
    }
    let update = &body.group_update;
    let message = public_handshake_in_any_group(&update.commit, ContentType::Commit)?;
    // Rule R-MSG-7.
    if *message.sender() != Sender::NewMemberCommit {
        return Err(
            RejectReason::InvalidMessageType(InvalidMessageType::ExpectedNewMemberCommit).into(),
        );
    }
    let group_id = message.group_id().as_slice().to_vec();
    check_group_info_framing(&update.group_info, &group_id, message.epoch().as_u64())?;
    let guard = ReplayGuard::for_unsigned(
        crypto,
        ctx.request_bytes,
        ctx.digests,
        ctx.now,
        ctx.env.config.auth_window_ms,
    )?;
    if let ReplayCheck::Retry(response) = guard.check(storage, &group_id, ctx.now)? {
        return Ok(Plan::Duplicate(response));
    }
    let mut snapshot = ctx.read_group(storage, &group_id, &COMMIT_READS)?;
    let roster: Roster = decode_record(&snapshot, RecordKind::Roster)?;
    super::welcome_trees::read_earlier_trees(storage, &group_id, roster.epoch, &mut snapshot)?;
    refuse_if_reinitialized(&roster)?;
    check_epoch(roster.epoch, message.epoch(), 0)?;

    let OpenGroup {
        buffer,
        mut group,
        pending,
        sequencer,
        activity,
    } = OpenGroup::open(&snapshot, &group_id)?;
    let processed = group.process_message(crypto, message).map_err(mls_reject)?;
    let authenticated_data = processed.aad().to_vec();
    // An AppDataUpdate's data means what its component defines (wire-format.md §15.7).
    let staged = super::app_data_commit::staged_commit(
        crypto,
        ctx.env.config,
        &group,
        processed.into_content(),
    )?;
    let joiner = group.ext_commit_sender_index(&staged).map_err(internal)?;
    // Rule R-MLS-2.
    let joiner_leaf = staged
        .update_path_leaf_node()
        .ok_or(RejectReason::InvalidMlsMessage(
            InvalidMlsMessage::ExternalCommitWithoutPath,
        ))?;
    let joiner_user = ctx.identify(joiner_leaf)?;
    let summary = summarize(ctx, &group, &staged, None)?;

    // RFC 9420 §12.4.3.2 lets an external commit remove the joiner's own earlier leaf (resync);
    // it may not remove anyone else.
    let removes_others = summary.removed.iter().any(|leaf| {
        roster.member(leaf.u32()).map(|m| m.user.as_slice()) != Some(joiner_user.as_slice())
    });
    // Rule R-JOIN-2.
    if removes_others {
        return Err(RejectReason::NotAllowed(NotAllowed::ExternalCommitRemovesOthers).into());
    }
    if ctx.env.config.external_joins == ExternalJoinPolicy::ExistingUsers
        && roster.leaves_of(&joiner_user).next().is_none()
    {
        // Rule R-JOIN-3.
        return Err(RejectReason::NotAllowed(NotAllowed::ExternalJoinOfNewUser).into());
    }
    crate::policy::authorize_external_join(&group, &joiner_user)?;
    #[cfg(feature = "app-data-update")]
    crate::policy::authorize_joiner_app_data(&group, &staged, &joiner_user)?;
    // External commits cannot include proposals by reference (RFC 9420 §12.4.3.2), so the
    // epoch's pending proposals lapse with it; the DS issues its own again in the new epoch and
    // staples them to the commit (draft-ietf-mimi-protocol-06).
    let tree_before = super::welcome_trees::tree_before(&snapshot, &group)?;
    group.merge_commit(&buffer, *staged).map_err(internal)?;
    let tree_transition = super::welcome_trees::transition(tree_before, &group)?;
    let group_info = verify_post_commit_group_info(crypto, &group, &update.group_info, joiner)?;
    let mut new_roster = Roster::rebuild(&group, Some(&roster), &summary.removed, &[], ctx)?;
    crate::policy::check_room(&group, &new_roster)?;
    crate::policy::record_room_parameters(
        &group,
        &mut new_roster,
        Some(&roster),
        &summary.removed,
        &[],
        ctx.now,
    )?;
    // MIMIMI Flow D: the joiner supplies its own identity link key (wire-format.md §14.2).
    let identity_links = crate::pseudonym::group_links::CommitLinks {
        group: &group,
        previous: snapshot.record(RecordKind::IdentityLinks),
        removed: &summary.removed,
        added_keys: Vec::new(),
        committer: joiner.u32(),
        external: true,
        authenticated_data: &authenticated_data,
        group_info: &group_info,
    }
    .entries()?;
    let (stapled, pending_after) =
        reissue_removals(&ctx.env, &mut group, &buffer, &pending.proposals, ctx.now)?;
    let accepted = Accepting {
        group_id: &group_id,
        snapshot: &snapshot,
        previous: &roster,
        committer: None,
        commit: &update.commit,
        welcomes: Vec::new(),
        stapled,
        pending_after,
        // The leaves it removes belong to the joiner's user (checked above); a resyncing client
        // must not get its own commit back through its old leaf.
        not_notified: summary.removed.iter().map(|leaf| leaf.u32()).collect(),
        sequencer,
        activity,
        identity_links,
        tree_transition,
    };
    accepted.plan(ctx, &guard, &buffer, &summary, new_roster, group_info)
}

/// The GroupInfo's framing, before the group is loaded: a full GroupInfo must be for this group
/// and the epoch the commit starts (RFC 9420 §12.4.3). Everything else about it is checked
/// against the merged state by `verify_post_commit_group_info`.
fn check_group_info_framing(
    option: &GroupInfoOption,
    group_id: &[u8],
    commit_epoch: u64,
) -> Result<(), RejectReason> {
    let GroupInfoOption::Full(message) = option else {
        return Ok(());
    };
    let vgi = verifiable_group_info(message)?;
    if vgi.group_id().as_slice() != group_id
        || Some(vgi.epoch().as_u64()) != commit_epoch.checked_add(1)
    {
        // Rule R-GI-11.
        return Err(RejectReason::InvalidGroupInfo(
            InvalidGroupInfo::NotForCommitEpoch,
        ));
    }
    Ok(())
}
