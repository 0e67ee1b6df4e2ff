//! Where the hub applies a room policy (wire-format.md §15.3, §15.4): each proposal is
//! authorized against its sender's role under the policy before the commit; the group after
//! the commit is checked against the policy it then has.

use std::collections::{BTreeMap, BTreeSet};

use openmls::prelude::{
    Extensions, GroupContext, LeafNode, LeafNodeIndex, Proposal, PublicGroup, QueuedProposal,
    Sender, StagedCommit,
};

use super::capability::*;
use super::{defect, PolicyDefect, PolicyViolation, Room};
use crate::error::{NotAllowed, RejectReason};
use crate::state::{LeafChecks, Roster};

fn violation(rule: PolicyViolation) -> RejectReason {
    RejectReason::NotAllowed(NotAllowed::RoomPolicy(rule))
}

fn require(
    room: &Room,
    user: &[u8],
    capability: u16,
    rule: PolicyViolation,
) -> Result<(), RejectReason> {
    if room.can(user, capability) {
        Ok(())
    } else {
        Err(violation(rule))
    }
}

/// Authorizes every proposal of a member's commit against its sender's role under the policy
/// the group has before the commit (`group`, not yet merged), and the commit itself
/// (`delete_group`). Proposals by reference are authorized against the member that sent them;
/// the hub's own proposals are not restricted. `committer` is the committer's leaf and
/// `deletes_room` says whether the commit is a `delete_group`. A room without a policy allows everything
/// (wire-format.md §15.2).
pub(crate) fn authorize_commit(
    group: &PublicGroup,
    staged: &StagedCommit,
    roster: &Roster,
    committer: u32,
    deletes_room: bool,
    checks: &dyn LeafChecks,
) -> Result<(), RejectReason> {
    let Some(room) = Room::read(group.group_context().extensions())? else {
        return Ok(());
    };
    let committer = user_at(roster, committer);
    if deletes_room {
        // Rule R-POL-8.
        require(
            &room,
            committer,
            CAN_DESTROY_ROOM,
            PolicyViolation::DestroyRoom,
        )?;
    }
    let current = group.group_context().extensions();
    for queued in staged.queued_proposals() {
        authorize(&room, current, queued, roster, checks)?;
    }
    Ok(())
}

/// Authorizes a standalone proposal (`proposals`, `self_remove_client`) against its sender's
/// role (wire-format.md §15.3).
pub(crate) fn authorize_proposal(
    group: &PublicGroup,
    queued: &QueuedProposal,
    roster: &Roster,
    checks: &dyn LeafChecks,
) -> Result<(), RejectReason> {
    match Room::read(group.group_context().extensions())? {
        Some(room) => authorize(
            &room,
            group.group_context().extensions(),
            queued,
            roster,
            checks,
        ),
        None => Ok(()),
    }
}

/// An external commit in a policed room: the room allows external commits, and the joiner's
/// user is a participant whose role has `canAddOwnClient` (draft-ietf-mimi-protocol-06 hub
/// rule 7; wire-format.md §15.4).
pub(crate) fn authorize_external_join(
    group: &PublicGroup,
    joiner_user: &[u8],
) -> Result<(), RejectReason> {
    let Some(room) = Room::read(group.group_context().extensions())? else {
        return Ok(());
    };
    if room
        .operational()
        .is_some_and(|o| !o.external_commit_allowed.0)
    {
        // Rule R-POL-13.
        return Err(violation(PolicyViolation::ExternalCommit));
    }
    // Rule R-POL-14.
    if !room.is_participant(joiner_user) || !room.can(joiner_user, CAN_ADD_OWN_CLIENT) {
        return Err(violation(PolicyViolation::ExternalJoiner));
    }
    Ok(())
}

/// The AppDataUpdate proposals an external commit carries by value are the joiner's: its user
/// needs `canUpdateAppData` like a member's would (rule R-POL-33, wire-format.md §15.7). Those
/// it covers by reference were authorized against their senders when they became pending.
#[cfg(feature = "app-data-update")]
pub(crate) fn authorize_joiner_app_data(
    group: &PublicGroup,
    staged: &StagedCommit,
    joiner_user: &[u8],
) -> Result<(), RejectReason> {
    let Some(room) = Room::read(group.group_context().extensions())? else {
        return Ok(());
    };
    let by_value = staged.queued_proposals().any(|queued| {
        matches!(queued.proposal(), Proposal::AppDataUpdate(_))
            && queued.proposal_or_ref_type() == openmls::prelude::ProposalOrRefType::Proposal
    });
    if by_value {
        // Rule R-POL-33.
        require(
            &room,
            joiner_user,
            CAN_UPDATE_APP_DATA,
            PolicyViolation::UpdateAppData,
        )?;
    }
    Ok(())
}

fn user_at(roster: &Roster, leaf: u32) -> &[u8] {
    roster
        .member(leaf)
        .map(|m| m.user.as_slice())
        .unwrap_or_default()
}

/// `current` is the GroupContext's extensions before the proposal.
#[cfg_attr(not(feature = "app-data-update"), allow(unused_variables))]
fn authorize(
    room: &Room,
    current: &Extensions<GroupContext>,
    queued: &QueuedProposal,
    roster: &Roster,
    checks: &dyn LeafChecks,
) -> Result<(), RejectReason> {
    let proposal_type = u16::from(queued.proposal().proposal_type());
    if room
        .operational()
        .is_some_and(|o| o.forbidden_capabilities.proposals.contains(&proposal_type))
    {
        // Rule R-POL-18.
        return Err(violation(PolicyViolation::ForbiddenCapability));
    }
    // The hub's own proposals (DS removals) are not the room's to restrict; a member's are.
    let Sender::Member(leaf) = queued.sender() else {
        return Ok(());
    };
    let sender = user_at(roster, leaf.u32());
    match queued.proposal() {
        Proposal::Add(add) => {
            let key_package = add.key_package();
            let added = checks.identify(key_package.leaf_node())?;
            if added == sender {
                // Rule R-POL-2.
                require(
                    room,
                    sender,
                    CAN_ADD_OWN_CLIENT,
                    PolicyViolation::AddOwnClient,
                )?;
            } else {
                // Rule R-POL-1.
                require(
                    room,
                    sender,
                    CAN_ADD_PARTICIPANT,
                    PolicyViolation::AddParticipant,
                )?;
            }
            let max = room.operational().map_or(0, |o| o.max_kp_lifetime);
            let lifetime = key_package.life_time();
            // Rule R-POL-19. 0 sets no maximum.
            if max != 0 && lifetime.not_after().saturating_sub(lifetime.not_before()) > max {
                return Err(violation(PolicyViolation::KeyPackageLifetime));
            }
        }
        Proposal::Remove(remove) => {
            authorize_removal(room, sender, user_at(roster, remove.removed().u32()))?
        }
        Proposal::GroupContextExtensions(gce) => {
            authorize_policy_change(room, sender, gce.extensions())?;
            // A GroupContextExtensions proposal may set the dictionary directly where the
            // group does not require AppDataUpdate (draft-ietf-mls-extensions §4.7): no way
            // around the capability.
            #[cfg(feature = "app-data-update")]
            if gce.extensions().app_data_dictionary() != current.app_data_dictionary() {
                // Rule R-POL-33.
                require(
                    room,
                    sender,
                    CAN_UPDATE_APP_DATA,
                    PolicyViolation::UpdateAppData,
                )?;
            }
        }
        Proposal::ReInit(_) => {
            // Rule R-POL-9.
            require(
                room,
                sender,
                CAN_SEND_MLS_REINIT_PROPOSAL,
                PolicyViolation::ReInit,
            )?;
        }
        #[cfg(feature = "app-data-update")]
        Proposal::AppDataUpdate(_) => {
            // Rule R-POL-33.
            require(
                room,
                sender,
                CAN_UPDATE_APP_DATA,
                PolicyViolation::UpdateAppData,
            )?;
        }
        _ => {}
    }
    Ok(())
}

fn authorize_removal(room: &Room, sender: &[u8], removed: &[u8]) -> Result<(), RejectReason> {
    if removed == sender {
        // Rule R-POL-4.
        require(room, sender, CAN_REMOVE_SELF, PolicyViolation::RemoveSelf)
    } else {
        // Rule R-POL-3.
        require(
            room,
            sender,
            CAN_REMOVE_PARTICIPANT,
            PolicyViolation::RemoveParticipant,
        )
    }
}

/// A GroupContextExtensions proposal: the new policy must be well formed (checked before
/// anything else, so a malformed one is `invalid_group_info`), and each change in it must be
/// one the sender's role may make.
fn authorize_policy_change(
    room: &Room,
    sender: &[u8],
    extensions: &Extensions<GroupContext>,
) -> Result<(), RejectReason> {
    let new = Room::read(extensions)?;
    let old = &room.policy;
    let policy_changed = match &new {
        None => true,
        Some(new) => {
            new.policy.roles != old.roles
                || new.policy.operational != old.operational
                || new.policy.base != old.base
        }
    };
    if policy_changed {
        // Rule R-POL-7.
        require(
            room,
            sender,
            CAN_CHANGE_ROOM_POLICY,
            PolicyViolation::ChangePolicy,
        )?;
    }
    let empty = BTreeMap::new();
    let after = new.as_ref().map_or(&empty, |n| n.participants());
    let before = room.participants();
    let users: BTreeSet<&Vec<u8>> = before.keys().chain(after.keys()).collect();
    let mut participants_changed = false;
    for user in users {
        let (from, to) = (before.get(user).copied(), after.get(user).copied());
        if from == to {
            continue;
        }
        participants_changed = true;
        match (from, to) {
            // Rule R-POL-1.
            (None, Some(_)) => {
                require(
                    room,
                    sender,
                    CAN_ADD_PARTICIPANT,
                    PolicyViolation::AddParticipant,
                )?;
                super::room_flags::check_membership_change(room)?;
            }
            (Some(_), None) => {
                authorize_removal(room, sender, user)?;
                super::room_flags::check_membership_change(room)?;
            }
            (Some(from), Some(to)) => authorize_role_change(room, sender, user, from, to)?,
            (None, None) => {}
        }
    }
    // Rule R-POL-12.
    if participants_changed && new.as_ref().is_some_and(|n| n.policy.roles != old.roles) {
        return Err(violation(PolicyViolation::RolesWithParticipantChange));
    }
    Ok(())
}

fn authorize_role_change(
    room: &Room,
    sender: &[u8],
    user: &[u8],
    from: u32,
    to: u32,
) -> Result<(), RejectReason> {
    let own = user == sender;
    let (capability, rule) = if own {
        (CAN_CHANGE_OWN_ROLE, PolicyViolation::ChangeOwnRole)
    } else {
        (CAN_CHANGE_USER_ROLE, PolicyViolation::ChangeUserRole)
    };
    let listed = room.roles().get(&room.role_of(sender)).is_some_and(|role| {
        let changes = if own {
            &role.self_role_changes
        } else {
            &role.authorized_role_changes
        };
        changes
            .iter()
            .any(|c| c.from_role_index == from && c.target_role_indexes.contains(&to))
    });
    // Rules R-POL-5, R-POL-6.
    if room.can(sender, capability) && listed {
        Ok(())
    } else {
        Err(violation(rule))
    }
}

/// Checks the group after a commit (or as created) against the policy it has then
/// (wire-format.md §15.3, §15.4): the policy is well formed, every user with a client is a
/// participant, role counts are within their constraints, the room's client and user limits
/// hold, and every leaf has the mandatory capabilities and uses nothing forbidden. `roster` is
/// the roster of that group.
pub(crate) fn check_room(group: &PublicGroup, roster: &Roster) -> Result<(), RejectReason> {
    let Some(room) = Room::read(group.group_context().extensions())? else {
        return Ok(());
    };
    let mut clients = 0usize;
    let mut users: BTreeSet<&[u8]> = BTreeSet::new();
    for (_, member) in roster.iter() {
        clients += 1;
        users.insert(member.user.as_slice());
    }
    // Rule R-POL-10.
    if users.iter().any(|user| !room.is_participant(user)) {
        return Err(violation(PolicyViolation::ClientOfNonParticipant));
    }
    for (index, role) in room.roles() {
        let holders: Vec<&Vec<u8>> = room
            .participants()
            .iter()
            .filter(|(_, r)| *r == index)
            .map(|(user, _)| user)
            .collect();
        let active = holders
            .iter()
            .filter(|user| users.contains(user.as_slice()))
            .count() as u64;
        let within = |count: u64, min: u32, max: Option<u32>| {
            count >= u64::from(min) && max.is_none_or(|max| count <= u64::from(max))
        };
        // Rule R-POL-11. Role 0 ("not a participant") has no holders to count.
        if *index != 0
            && (!within(
                holders.len() as u64,
                role.minimum_participants_constraint,
                role.maximum_participants_constraint,
            ) || !within(
                active,
                role.minimum_active_participants_constraint,
                role.maximum_active_participants_constraint,
            ))
        {
            return Err(violation(PolicyViolation::RoleCountOutOfBounds));
        }
    }
    if let Some(base) = &room.policy.base {
        // Rule R-POL-15.
        if base
            .max_clients
            .is_some_and(|max| clients as u64 > u64::from(max))
        {
            return Err(violation(PolicyViolation::TooManyClients));
        }
        // Rule R-POL-16.
        if base
            .max_users
            .is_some_and(|max| users.len() as u64 > u64::from(max))
        {
            return Err(violation(PolicyViolation::TooManyUsers));
        }
    }
    super::room_flags::check_group(&room, group, roster)?;
    if let Some(operational) = room.operational() {
        check_capabilities(group, operational)?;
    }
    Ok(())
}

fn check_capabilities(
    group: &PublicGroup,
    operational: &super::OperationalParameters,
) -> Result<(), RejectReason> {
    let forbidden = &operational.forbidden_capabilities;
    // Rule R-POL-25.
    if forbidden
        .cipher_suites
        .contains(&u16::from(group.ciphersuite()))
    {
        return Err(defect(PolicyDefect::Contradictory));
    }
    let context_types = group
        .group_context()
        .extensions()
        .iter()
        .map(|e| u16::from(e.extension_type()));
    let mut used = context_types.collect::<Vec<_>>();
    let leaves: Vec<&LeafNode> = group
        .members()
        .filter_map(|m| group.leaf(LeafNodeIndex::new(m.index.u32())))
        .collect();
    for leaf in &leaves {
        used.extend(
            leaf.extensions()
                .iter()
                .map(|e| u16::from(e.extension_type())),
        );
        let credential = u16::from(leaf.credential().credential_type());
        // Rule R-POL-18.
        if forbidden.credentials.contains(&credential) {
            return Err(violation(PolicyViolation::ForbiddenCapability));
        }
    }
    if used.iter().any(|t| forbidden.extensions.contains(t)) {
        // Rule R-POL-18.
        return Err(violation(PolicyViolation::ForbiddenCapability));
    }
    let mandatory = &operational.mandatory_capabilities;
    for leaf in &leaves {
        let caps = leaf.capabilities();
        let versions: Vec<u16> = caps
            .versions()
            .iter()
            .map(|v| match v {
                openmls::prelude::ProtocolVersion::Mls10 => 1,
                openmls::prelude::ProtocolVersion::Other(other) => *other,
            })
            .collect();
        let suites: Vec<u16> = caps.ciphersuites().iter().map(|c| c.value()).collect();
        let extensions: Vec<u16> = caps.extensions().iter().map(|e| u16::from(*e)).collect();
        let proposals: Vec<u16> = caps.proposals().iter().map(|p| u16::from(*p)).collect();
        let credentials: Vec<u16> = caps.credentials().iter().map(|c| u16::from(*c)).collect();
        let has_all = |need: &[u16], have: &[u16]| need.iter().all(|n| have.contains(n));
        // RFC 9420 §7.2: the default extensions and proposals need not be listed.
        let extensions_ok = mandatory
            .extensions
            .iter()
            .all(|e| (1..=5).contains(e) || extensions.contains(e));
        let proposals_ok = mandatory
            .proposals
            .iter()
            .all(|p| (1..=7).contains(p) || proposals.contains(p));
        // Rule R-POL-17.
        if !has_all(&mandatory.versions, &versions)
            || !has_all(&mandatory.cipher_suites, &suites)
            || !extensions_ok
            || !proposals_ok
            || !has_all(&mandatory.credentials, &credentials)
        {
            return Err(violation(PolicyViolation::MissingMandatoryCapability));
        }
    }
    Ok(())
}

/// The pending-proposal policy for the DS's own proposals in a commit to `group`: the room's
/// `pending_proposal_policy` where it sets one, else the hub's `hub` (wire-format.md §15.4).
/// `immediate_commit` is [`crate::PendingProposalPolicy::Strict`]; `random_delay` lets
/// commits leave them out for `maximum_delay_ms`; `unspecified` and `extension` keep the hub's.
pub(crate) fn pending_proposal_policy(
    group: &PublicGroup,
    hub: crate::PendingProposalPolicy,
) -> Result<crate::PendingProposalPolicy, RejectReason> {
    let Some(room) = Room::read(group.group_context().extensions())? else {
        return Ok(hub);
    };
    Ok(room.operational().map_or(hub, |o| {
        super::parameters::effective_pending_proposals(o.pending_proposal_policy, hub)
    }))
}
