//! What each MIMI commit operation may contain (wire-format.md §4.3.4; DS-03/04 operation
//! sections, with the DS-04+ rule that operation proposals come by value and stored
//! proposals by reference, docs/decisions.md D12).

use openmls::prelude::{LeafNodeIndex, ProposalType, PublicGroup};

use crate::error::{NotAllowed, RejectReason};
use crate::state::{LeafChecks, Roster};
use crate::time::UnixTimeMs;
use crate::wire::ClientQueueConfig;

/// The operation a commit request claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation<'a> {
    /// `commits(16)`: any valid commit (DS-06 §"Commit").
    Commits,
    /// `delete_group(2)`: removes every other member (DS-03..06 §"Delete group").
    DeleteGroup,
    /// `add_users(3)`: Adds of clients of users not yet in the group (DS-03/04).
    AddUsers,
    /// `add_clients(5)`: Adds of clients of the sender's own user (DS-03/04).
    AddClients,
    /// `remove_users(4)`: Removes covering every client of the removed users (DS-03/04).
    RemoveUsers,
    /// `remove_clients(6)`: Removes of other clients of the sender's own user (DS-03/04).
    RemoveClients,
    /// `update_client(8)`: an update path and no proposals by value (DS-04).
    UpdateClient(Option<&'a ClientQueueConfig>),
    /// `re_initialize_group(14)`: a ReInit proposal (DS-03/04).
    ReInitialize,
}

/// A client a commit adds.
pub(crate) struct Added {
    pub(crate) key_package_ref: Vec<u8>,
    pub(crate) queue_config: ClientQueueConfig,
    pub(crate) user: Vec<u8>,
    pub(crate) signature_key: Vec<u8>,
    /// The KeyPackage's `not_after`.
    pub(crate) expires_at: UnixTimeMs,
}

/// What a staged commit does, in the terms the rules need.
pub(crate) struct CommitSummary {
    /// Types of the proposals carried by value.
    pub(crate) by_value: Vec<ProposalType>,
    pub(crate) added: Vec<Added>,
    /// Every removed leaf, by value or by reference.
    pub(crate) removed: Vec<LeafNodeIndex>,
    /// Leaves removed by proposals carried by value.
    pub(crate) removed_by_value: Vec<LeafNodeIndex>,
    /// Leaves whose leaf node the commit replaces (update path, Update proposals).
    pub(crate) changed: Vec<LeafNodeIndex>,
    pub(crate) has_path: bool,
    /// Whether the committer's credential differs after the commit.
    pub(crate) committer_credential_changed: bool,
    /// The group ID named by a ReInit proposal.
    pub(crate) reinit_group_id: Option<Vec<u8>>,
    /// Whether the ReInit proposal's extensions (the successor's GroupContext extensions)
    /// carry the privacy-mode extension 0xF1E6 with this group's data (wire-format.md §17.2).
    pub(crate) reinit_keeps_privacy_mode: bool,
    /// How many proposals the commit carries, by value or by reference.
    pub(crate) proposal_count: usize,
}

fn not_allowed(rule: NotAllowed) -> RejectReason {
    RejectReason::NotAllowed(rule)
}

/// Checks the operation's rule. `sender` is the committer's leaf; `roster` the group before the
/// commit.
pub(crate) fn check(
    op: Operation<'_>,
    summary: &CommitSummary,
    sender: u32,
    roster: &Roster,
) -> Result<(), RejectReason> {
    let only_by_value = |kind: ProposalType| {
        summary.by_value.iter().all(|t| *t == kind) && !summary.by_value.is_empty()
    };
    let sender_user = roster
        .member(sender)
        .map(|m| m.user.as_slice())
        .unwrap_or_default();
    let membership_op = matches!(
        op,
        Operation::AddUsers
            | Operation::AddClients
            | Operation::RemoveUsers
            | Operation::RemoveClients
    );
    // Rule R-OP-1. DS-03/04: membership operations MUST NOT change the committer's credential.
    if membership_op && summary.committer_credential_changed {
        return Err(not_allowed(
            NotAllowed::MembershipOperationChangesCredential,
        ));
    }
    // Rule R-OP-2. RFC 9420 §12.2: a commit with a ReInit proposal MUST NOT contain any other
    // proposal.
    if summary.reinit_group_id.is_some() && summary.proposal_count > 1 {
        return Err(not_allowed(NotAllowed::ReInitNotAlone));
    }
    // Rule R-OP-3.
    if summary.reinit_group_id.is_some()
        && !matches!(op, Operation::ReInitialize | Operation::Commits)
    {
        return Err(not_allowed(NotAllowed::ReInitOutsideReInitialize));
    }
    match op {
        Operation::Commits => Ok(()),
        Operation::DeleteGroup => {
            let all_others_removed = roster.iter().all(|(leaf, _)| {
                leaf == sender || summary.removed.contains(&LeafNodeIndex::new(leaf))
            });
            if all_others_removed {
                Ok(())
            } else {
                // Rule R-OP-4.
                Err(not_allowed(NotAllowed::DeleteGroupKeepsMembers))
            }
        }
        Operation::AddUsers => {
            // Rule R-OP-5.
            if !only_by_value(ProposalType::Add) {
                return Err(not_allowed(NotAllowed::AddUsersNotOnlyAdds));
            }
            // Rule R-OP-6. DS-03/04: "Adds MUST NOT contain clients of existing members".
            if summary
                .added
                .iter()
                .any(|a| roster.leaves_of(&a.user).next().is_some())
            {
                return Err(not_allowed(NotAllowed::AddUsersOfExistingUser));
            }
            Ok(())
        }
        Operation::AddClients => {
            // Rule R-OP-7.
            if !only_by_value(ProposalType::Add) {
                return Err(not_allowed(NotAllowed::AddClientsNotOnlyAdds));
            }
            // Rule R-OP-8.
            if summary.added.iter().any(|a| a.user != sender_user) {
                return Err(not_allowed(NotAllowed::AddClientsOfAnotherUser));
            }
            Ok(())
        }
        Operation::RemoveUsers => {
            // Rule R-OP-9.
            if !only_by_value(ProposalType::Remove) {
                return Err(not_allowed(NotAllowed::RemoveUsersNotOnlyRemoves));
            }
            // Rule R-OP-10. DS-03/04: the removes must cover all clients of each removed user.
            for removed in &summary.removed_by_value {
                let user = roster
                    .member(removed.u32())
                    .map(|m| m.user.as_slice())
                    .unwrap_or_default();
                if roster
                    .leaves_of(user)
                    .any(|leaf| !summary.removed.contains(&LeafNodeIndex::new(leaf)))
                {
                    return Err(not_allowed(NotAllowed::RemoveUsersPartially));
                }
            }
            Ok(())
        }
        Operation::RemoveClients => {
            // Rule R-OP-11.
            if !only_by_value(ProposalType::Remove) {
                return Err(not_allowed(NotAllowed::RemoveClientsNotOnlyRemoves));
            }
            let foreign = summary.removed_by_value.iter().any(|leaf| {
                roster.member(leaf.u32()).map(|m| m.user.as_slice()) != Some(sender_user)
            });
            // Rule R-OP-12.
            if foreign {
                return Err(not_allowed(NotAllowed::RemoveClientsOfAnotherUser));
            }
            Ok(())
        }
        Operation::UpdateClient(_) => {
            // Rule R-OP-13.
            if !summary.has_path || !summary.by_value.is_empty() {
                return Err(not_allowed(NotAllowed::UpdateClientNotAnUpdatePath));
            }
            Ok(())
        }
        Operation::ReInitialize => {
            // Rule R-OP-14.
            if summary.reinit_group_id.is_none() {
                return Err(not_allowed(NotAllowed::ReInitializeWithoutReInit));
            }
            Ok(())
        }
    }
}

/// DS-04 §"Update client": a client whose leaf node the commit replaces (`summary.changed`: an
/// update path or an Update proposal) stays a client of the same user. Its new credential is
/// validated again and must name the user the roster has for it; otherwise a member could take
/// over another user's place in the group. `group` is the group after the commit was merged
/// (it holds the new leaf nodes), `previous` the roster before it. A leaf the commit removes
/// and fills again holds a new client, which is validated like any new leaf when the roster is
/// rebuilt. Leaves are checked in leaf order.
pub(crate) fn check_changed_clients_keep_their_user(
    group: &PublicGroup,
    previous: &Roster,
    summary: &CommitSummary,
    checks: &dyn LeafChecks,
) -> Result<(), RejectReason> {
    for member in group.members() {
        if !summary.changed.contains(&member.index) || summary.removed.contains(&member.index) {
            continue;
        }
        let (Some(entry), Some(leaf)) = (
            previous.member(member.index.u32()),
            group.leaf(member.index),
        ) else {
            continue;
        };
        // Rule R-COMMIT-5.
        if checks.identify(leaf)? != entry.user.as_slice() {
            return Err(RejectReason::NotAllowed(
                NotAllowed::CredentialMovesClientToAnotherUser,
            ));
        }
    }
    Ok(())
}
