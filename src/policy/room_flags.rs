//! The `BaseRoomPolicy` flags the hub can see (draft-ietf-mimi-room-policy-03 `BaseRoomPolicy`;
//! wire-format.md §15.4): `multi_device` (clients per user), `fixed_membership` (the
//! participant list's users) and `pseudonyms_allowed` (the leaves' credential type). The other
//! flags are left to clients; §15.4 says why.

use std::collections::BTreeSet;

use openmls::prelude::{LeafNodeIndex, PublicGroup};

use super::{PolicyViolation, Room};
use crate::error::{NotAllowed, RejectReason};
use crate::state::Roster;

fn violation(rule: PolicyViolation) -> RejectReason {
    RejectReason::NotAllowed(NotAllowed::RoomPolicy(rule))
}

/// The group after a commit (or as created) against its base policy's flags: without
/// `multi_device`, no user has two clients (rule R-POL-30); without `pseudonyms_allowed`, no
/// leaf holds a pseudonymous credential (rule R-POL-32). A room without a base policy sets
/// neither limit.
pub(super) fn check_group(
    room: &Room,
    group: &PublicGroup,
    roster: &Roster,
) -> Result<(), RejectReason> {
    let Some(base) = &room.policy.base else {
        return Ok(());
    };
    if !base.multi_device.0 {
        let mut users = BTreeSet::new();
        // Rule R-POL-30.
        if roster
            .iter()
            .any(|(_, member)| !users.insert(member.user.as_slice()))
        {
            return Err(violation(PolicyViolation::MultiDeviceNotAllowed));
        }
    }
    if !base.pseudonyms_allowed.0 {
        let pseudonymous = roster.iter().any(|(leaf, _)| {
            group
                .leaf(LeafNodeIndex::new(leaf))
                .is_some_and(crate::pseudonym::hub::is_pseudonymous_leaf)
        });
        // Rule R-POL-32.
        if pseudonymous {
            return Err(violation(PolicyViolation::PseudonymsNotAllowed));
        }
    }
    Ok(())
}

/// Rule R-POL-31: with `fixed_membership`, the participant list's users are those it was
/// created with: an addition or a removal of a user is refused (a role change is not a
/// membership change). The policy before the commit decides, so a commit that clears the flag
/// cannot change the list at the same time.
pub(super) fn check_membership_change(room: &Room) -> Result<(), RejectReason> {
    if room
        .policy
        .base
        .as_ref()
        .is_some_and(|base| base.fixed_membership.0)
    {
        return Err(violation(PolicyViolation::FixedMembership));
    }
    Ok(())
}
