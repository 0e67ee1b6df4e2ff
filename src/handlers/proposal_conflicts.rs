//! Which standalone proposals may join the pending set (wire-format.md §4.10).
//!
//! RFC 9420 §12.2 lists the proposal combinations a commit MUST NOT contain. A pending set that
//! holds such a combination can never be committed whole, and openmls's committer silently
//! keeps one of the pair (`filter_proposals`). So the DS refuses a proposal that would create
//! one, whoever issued the pending proposal it conflicts with (a member or the DS itself).

use openmls::prelude::{LeafNodeIndex, Proposal, QueuedProposal, Sender};

use crate::error::ProposalConflict;

/// The leaf a proposal removes: a Remove's target, or the sender of a SelfRemove.
fn removed_leaf(queued: &QueuedProposal) -> Option<LeafNodeIndex> {
    match (queued.proposal(), queued.sender()) {
        (Proposal::Remove(remove), _) => Some(remove.removed()),
        (Proposal::SelfRemove, Sender::Member(leaf)) => Some(*leaf),
        _ => None,
    }
}

/// The leaf an Update proposal replaces (its sender's).
fn updated_leaf(queued: &QueuedProposal) -> Option<LeafNodeIndex> {
    match (queued.proposal(), queued.sender()) {
        (Proposal::Update(_), Sender::Member(leaf)) => Some(*leaf),
        _ => None,
    }
}

fn is_reinit(queued: &QueuedProposal) -> bool {
    matches!(queued.proposal(), Proposal::ReInit(_))
}

/// An AppDataUpdate's component, and whether it is a `remove`.
#[cfg(feature = "app-data-update")]
fn app_data_target(queued: &QueuedProposal) -> Option<(u16, bool)> {
    match queued.proposal() {
        Proposal::AppDataUpdate(update) => Some((
            update.component_id(),
            matches!(
                update.operation(),
                openmls::prelude::AppDataUpdateOperation::Remove
            ),
        )),
        _ => None,
    }
}

/// Two AppDataUpdates no commit may carry together: a `remove` of a component next to any
/// other AppDataUpdate of it (draft-ietf-mls-extensions §4.7).
#[cfg(feature = "app-data-update")]
fn app_data_conflict(a: &QueuedProposal, b: &QueuedProposal) -> bool {
    match (app_data_target(a), app_data_target(b)) {
        (Some((x, remove_a)), Some((y, remove_b))) => x == y && (remove_a || remove_b),
        _ => false,
    }
}

fn is_group_context_extensions(queued: &QueuedProposal) -> bool {
    matches!(queued.proposal(), Proposal::GroupContextExtensions(_))
}

/// Checks `candidate` against the proposals pending in its epoch (RFC 9420 §12.2):
///
/// * no ReInit next to any other proposal;
/// * no second Remove of a leaf, and no Update of a leaf whose Remove is pending (a Remove of
///   a leaf whose Update is pending is accepted: a committer prefers the Remove, RFC 9420
///   §12.2, and the Update lapses);
/// * no second GroupContextExtensions;
/// * (feature `app-data-update`) no AppDataUpdate `remove` of a component next to another
///   AppDataUpdate of it (draft-ietf-mls-extensions §4.7).
pub(crate) fn check<'a>(
    pending: impl IntoIterator<Item = &'a QueuedProposal>,
    candidate: &QueuedProposal,
) -> Result<(), ProposalConflict> {
    let mut pending = pending.into_iter().peekable();
    if is_reinit(candidate) && pending.peek().is_some() {
        return Err(ProposalConflict::ReInitNotAlone);
    }
    for other in pending {
        if is_reinit(other) {
            return Err(ProposalConflict::ReInitNotAlone);
        }
        let removed_by_other = removed_leaf(other);
        if removed_by_other.is_some() && removed_leaf(candidate) == removed_by_other {
            return Err(ProposalConflict::DuplicateRemove);
        }
        if removed_by_other.is_some() && updated_leaf(candidate) == removed_by_other {
            return Err(ProposalConflict::UpdateOfRemovedLeaf);
        }
        if is_group_context_extensions(candidate) && is_group_context_extensions(other) {
            return Err(ProposalConflict::SecondGroupContextExtensions);
        }
        #[cfg(feature = "app-data-update")]
        if app_data_conflict(candidate, other) {
            return Err(ProposalConflict::AppDataRemoveWithOther);
        }
    }
    Ok(())
}
