//! The room parameters the application-message path applies (wire-format.md §15.4), kept in
//! the group's roster.
//!
//! `send_message` reads only the roster and the sequencer, not the MLS state that holds the
//! GroupContext extensions, so that a message costs the same whatever the size of the tree.
//! Whenever the hub reads the room policy (at `create_group`, and after every commit and
//! external join, which rebuild the roster), it copies what the message path needs into the
//! roster's last field, [`RoomParameters`]: the room's pending-proposal policy and epoch
//! tolerance (rules R-POL-27, R-POL-28), and the `leaf_node_update_time` maximum with the time
//! each leaf last set its leaf node (rule R-POL-29). The roster is written with the MLS state
//! in one guarded write, so the copy is versioned with the policy it was read from.

use openmls::prelude::{LeafNodeIndex, PublicGroup};
use tls_codec::{DeserializeBytes, Serialize, Size};

use super::{PendingProposalPolicy, PolicyViolation, Room};
use crate::error::{NotAllowed, RejectReason};
use crate::state::Roster;
use crate::time::UnixTimeMs;

/// What the message path needs of the room policy. The default (a room without operational
/// parameters) is "the hub-wide settings apply, no leaf-age limit"; it is encoded as nothing,
/// so rosters of such rooms keep the bytes they had before this field existed, and rosters
/// stored before it decode to the default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RoomParameters {
    /// RP-03 `pending_proposal_policy`; `unspecified` (and `extension`) keep the hub's.
    pub(crate) pending_proposal_policy: PendingProposalPolicy,
    /// RP-03 `app_message_policy.epoch_tolerance`, when the room sets operational parameters.
    pub(crate) epoch_tolerance: Option<u8>,
    /// RP-03 `leaf_node_update_time.maximum_time`, seconds; 0 sets no maximum.
    pub(crate) max_leaf_age_s: u64,
    /// Indexed by leaf: when the hub last saw the leaf's node set (the leaf was added or
    /// joined, or updated by an update path or Update proposal). Kept only while
    /// `max_leaf_age_s` is set; a leaf without an entry counts from when the maximum was set.
    pub(crate) leaf_updated_at: Vec<UnixTimeMs>,
}

impl Size for RoomParameters {
    fn tls_serialized_len(&self) -> usize {
        if *self == Self::default() {
            return 0;
        }
        self.pending_proposal_policy.tls_serialized_len()
            + self.epoch_tolerance.tls_serialized_len()
            + self.max_leaf_age_s.tls_serialized_len()
            + self.leaf_updated_at.tls_serialized_len()
    }
}

impl Serialize for RoomParameters {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        if *self == Self::default() {
            return Ok(0);
        }
        Ok(self.pending_proposal_policy.tls_serialize(writer)?
            + self.epoch_tolerance.tls_serialize(writer)?
            + self.max_leaf_age_s.tls_serialize(writer)?
            + self.leaf_updated_at.tls_serialize(writer)?)
    }
}

impl DeserializeBytes for RoomParameters {
    /// The roster's last field: no bytes left is the default (a roster stored before the field
    /// existed, or of a room without operational parameters).
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        if bytes.is_empty() {
            return Ok((Self::default(), bytes));
        }
        let (pending_proposal_policy, rest) = PendingProposalPolicy::tls_deserialize_bytes(bytes)?;
        let (epoch_tolerance, rest) = Option::<u8>::tls_deserialize_bytes(rest)?;
        let (max_leaf_age_s, rest) = u64::tls_deserialize_bytes(rest)?;
        let (leaf_updated_at, rest) = Vec::<UnixTimeMs>::tls_deserialize_bytes(rest)?;
        let parameters = Self {
            pending_proposal_policy,
            epoch_tolerance,
            max_leaf_age_s,
            leaf_updated_at,
        };
        // One encoding per value: the default is written as nothing.
        if parameters == Self::default() {
            return Err(tls_codec::Error::DecodingError(
                "default room parameters are encoded as nothing".into(),
            ));
        }
        Ok((parameters, rest))
    }
}

impl RoomParameters {
    /// Rule R-POL-28: the epoch tolerance for application messages is the room's
    /// `epoch_tolerance`, else the hub's `DsConfig::app_message_epoch_tolerance`.
    pub(crate) fn epoch_tolerance(&self, hub: u64) -> u64 {
        self.epoch_tolerance.map_or(hub, u64::from)
    }

    /// Rule R-POL-27: while the hub's removals are pending, application messages follow the
    /// room's pending-proposal policy, else the hub's `DsConfig::pending_proposals`.
    pub(crate) fn pending_proposals(
        &self,
        hub: crate::PendingProposalPolicy,
    ) -> crate::PendingProposalPolicy {
        effective_pending_proposals(self.pending_proposal_policy, hub)
    }

    /// Rule R-POL-29: a message or commit from `leaf` at `now` is refused when the room sets a
    /// `leaf_node_update_time` maximum and the leaf's node is older than it, unless the request
    /// itself updates the leaf (`updates_leaf`: a commit with an update path).
    pub(crate) fn check_leaf_age(
        &self,
        leaf: u32,
        now: UnixTimeMs,
        updates_leaf: bool,
    ) -> Result<(), RejectReason> {
        if self.max_leaf_age_s == 0 || updates_leaf {
            return Ok(());
        }
        let Some(updated_at) = self.leaf_updated_at.get(leaf as usize) else {
            return Ok(());
        };
        if now.since(*updated_at) > self.max_leaf_age_s.saturating_mul(1000) {
            return Err(RejectReason::NotAllowed(NotAllowed::RoomPolicy(
                PolicyViolation::StaleLeaf,
            )));
        }
        Ok(())
    }
}

/// RP-03 `PendingProposalPolicy` as the hub applies it: `immediate_commit` is
/// [`crate::PendingProposalPolicy::Strict`]; `random_delay` lets the DS's proposals wait for
/// `maximum_delay_ms`; `unspecified` and `extension` keep the hub's `hub`.
pub(crate) fn effective_pending_proposals(
    room: PendingProposalPolicy,
    hub: crate::PendingProposalPolicy,
) -> crate::PendingProposalPolicy {
    match room {
        PendingProposalPolicy::ImmediateCommit => crate::PendingProposalPolicy::Strict,
        PendingProposalPolicy::RandomDelay {
            maximum_delay_ms, ..
        } => crate::PendingProposalPolicy::GraceWindow {
            ms: maximum_delay_ms,
        },
        PendingProposalPolicy::Unspecified | PendingProposalPolicy::Extension { .. } => hub,
    }
}

/// Stores in `roster` (just rebuilt from `group`) the parameters of `group`'s room policy that
/// the message path needs. `previous` is the roster before the commit (`None` at
/// `create_group`); `replaced` and `changed` are the leaves the commit re-filled and updated, as
/// for [`Roster::rebuild`]. Every new, re-filled or updated leaf counts as updated at `now`.
pub(crate) fn record_room_parameters(
    group: &PublicGroup,
    roster: &mut Roster,
    previous: Option<&Roster>,
    replaced: &[LeafNodeIndex],
    changed: &[LeafNodeIndex],
    now: UnixTimeMs,
) -> Result<(), RejectReason> {
    let room = Room::read(group.group_context().extensions())?;
    let Some(operational) = room.as_ref().and_then(Room::operational) else {
        roster.room_parameters = RoomParameters::default();
        return Ok(());
    };
    let max_leaf_age_s = operational.leaf_node_update_time.maximum_time;
    let mut leaf_updated_at = Vec::new();
    if max_leaf_age_s != 0 {
        let before = previous.map(|p| &p.room_parameters.leaf_updated_at);
        leaf_updated_at.resize(roster.members.len(), now);
        for (leaf, _) in roster.iter() {
            let index = LeafNodeIndex::new(leaf);
            let same_node = previous.is_some_and(|p| p.member(leaf).is_some())
                && !replaced.contains(&index)
                && !changed.contains(&index);
            if let (true, Some(at)) = (same_node, before.and_then(|b| b.get(leaf as usize))) {
                leaf_updated_at[leaf as usize] = *at;
            }
        }
    }
    roster.room_parameters = RoomParameters {
        pending_proposal_policy: operational.pending_proposal_policy,
        epoch_tolerance: Some(operational.app_message_policy.epoch_tolerance),
        max_leaf_age_s,
        leaf_updated_at,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_exact, encode};

    /// The default is encoded as nothing (rosters of rooms without operational parameters keep
    /// their bytes), and a set value round-trips.
    #[test]
    fn the_default_is_absent_and_values_round_trip() {
        assert!(encode(&RoomParameters::default()).unwrap().is_empty());
        assert_eq!(
            decode_exact::<RoomParameters>(&[]).unwrap(),
            RoomParameters::default()
        );
        let set = RoomParameters {
            pending_proposal_policy: PendingProposalPolicy::ImmediateCommit,
            epoch_tolerance: Some(2),
            max_leaf_age_s: 60,
            leaf_updated_at: vec![UnixTimeMs(5), UnixTimeMs(7)],
        };
        let bytes = encode(&set).unwrap();
        assert_eq!(bytes.len(), set.tls_serialized_len());
        assert_eq!(decode_exact::<RoomParameters>(&bytes).unwrap(), set);
        // The default written out field by field is not a second encoding of it.
        let explicit = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(decode_exact::<RoomParameters>(&explicit).is_err());
    }

    /// A roster stored before the field existed (its five earlier fields and nothing more)
    /// decodes with the default, i.e. the hub-wide settings; one with parameters keeps them.
    #[test]
    fn rosters_stored_before_the_field_decode_to_the_hub_wide_settings() {
        use tls_codec::VLBytes;
        let mut legacy = Vec::new();
        0x0001u16.tls_serialize(&mut legacy).unwrap();
        7u64.tls_serialize(&mut legacy).unwrap();
        // No members and no user keys: two empty vectors, each its zero length.
        Vec::<u8>::new().tls_serialize(&mut legacy).unwrap();
        Vec::<u8>::new().tls_serialize(&mut legacy).unwrap();
        Some(VLBytes::from(b"successor".to_vec()))
            .tls_serialize(&mut legacy)
            .unwrap();
        let roster = decode_exact::<Roster>(&legacy).unwrap();
        assert_eq!(roster.epoch, 7);
        assert_eq!(roster.room_parameters, RoomParameters::default());
        assert_eq!(roster.room_parameters.epoch_tolerance(3), 3);
        assert_eq!(encode(&roster).unwrap(), legacy, "re-encoded unchanged");

        let mut with = roster;
        with.room_parameters.epoch_tolerance = Some(0);
        let bytes = encode(&with).unwrap();
        assert!(bytes.len() > legacy.len());
        let decoded = decode_exact::<Roster>(&bytes).unwrap();
        assert_eq!(decoded.room_parameters.epoch_tolerance(3), 0);
    }
}
