//! Room policy enforced by the hub (docs/wire-format.md §15): roles, the participant list and
//! the operational parameters of draft-ietf-mimi-room-policy-03 and
//! draft-ietf-mimi-protocol-06, carried in the group's GroupContext extensions.
//!
//! A room is *policed* when its GroupContext has a roles list (extension
//! [`ROLES_LIST_EXTENSION_TYPE`]). A room without one keeps the default of §15.2: every member
//! may do what the per-operation rules (§4.3.4) allow, as before room policy existed. The
//! policy lives in the MLS state the hub already keeps, so it needs no record of its own: the
//! hub reads it from the group before a commit (to authorize the commit's senders) and after
//! it (to check the new policy and membership), and nothing is written unless both hold.

mod enforce;
mod parameters;
mod refusals;
mod room_flags;
mod structs;

use std::collections::BTreeMap;

use openmls::prelude::{Extension, Extensions, GroupContext, UnknownExtension};

#[cfg(feature = "app-data-update")]
pub(crate) use enforce::authorize_joiner_app_data;
pub(crate) use enforce::{authorize_commit, authorize_external_join, authorize_proposal};
pub(crate) use enforce::{check_room, pending_proposal_policy};
pub(crate) use parameters::{record_room_parameters, RoomParameters};
#[cfg(test)]
pub(crate) use refusals::{every_defect, every_violation};
pub use refusals::{PolicyDefect, PolicyViolation};
pub use structs::{
    AppMessagePolicy, BaseRoomPolicy, ExtendedCapabilities, Flag, MinDefaultMaxTime,
    OperationalParameters, ParticipantListData, PendingProposalPolicy, Role, RoleChangeTargets,
    RoleData, UserRolePair,
};

use crate::error::{InvalidGroupInfo, RejectReason};

/// GroupContext extension carrying [`RoleData`] (RP-03 component `roles_list` 0x0025).
/// Private-use extension type (RFC 9420 §17.3): the drafts give component IDs for the
/// `app_data_dictionary`, which openmls 0.9 supports only behind its `extensions-draft`
/// feature, and no extension types.
pub const ROLES_LIST_EXTENSION_TYPE: u16 = 0xF1E0;
/// GroupContext extension carrying [`ParticipantListData`] (MP-06 component
/// `participant_list` 0x0022).
pub const PARTICIPANT_LIST_EXTENSION_TYPE: u16 = 0xF1E1;
/// GroupContext extension carrying [`OperationalParameters`] (RP-03 component
/// `mls_operational_policy` 0x0024).
pub const OPERATIONAL_PARAMETERS_EXTENSION_TYPE: u16 = 0xF1E2;
/// GroupContext extension carrying [`BaseRoomPolicy`] (RP-03 component `base_room_policy`
/// 0x0027).
pub const BASE_ROOM_POLICY_EXTENSION_TYPE: u16 = 0xF1E3;

/// The four room-policy extension types, in codepoint order.
pub const ROOM_POLICY_EXTENSION_TYPES: [u16; 4] = [
    ROLES_LIST_EXTENSION_TYPE,
    PARTICIPANT_LIST_EXTENSION_TYPE,
    OPERATIONAL_PARAMETERS_EXTENSION_TYPE,
    BASE_ROOM_POLICY_EXTENSION_TYPE,
];

/// The role capabilities the hub enforces (RP-03 capability registry, uint16). The digest of
/// the drafts fixes `canAddParticipant` (0x0000), `canChangeOwnRole` (0x0010) and
/// `canSendMLSReinitProposal` (0x0601); the others are this crate's values inside the
/// registry's ranges, listed in wire-format.md §15.2.
pub mod capability {
    /// Add another user (its clients, its participant-list entry).
    pub const CAN_ADD_PARTICIPANT: u16 = 0x0000;
    /// Remove another user (its clients, its participant-list entry).
    pub const CAN_REMOVE_PARTICIPANT: u16 = 0x0001;
    /// Add a client of one's own user (also by external commit).
    pub const CAN_ADD_OWN_CLIENT: u16 = 0x0002;
    /// Remove one's own other clients or one's own participant-list entry.
    pub const CAN_REMOVE_SELF: u16 = 0x0003;
    /// Change another participant's role (within `authorized_role_changes`).
    pub const CAN_CHANGE_USER_ROLE: u16 = 0x000F;
    /// Change one's own role (within `self_role_changes`).
    pub const CAN_CHANGE_OWN_ROLE: u16 = 0x0010;
    /// Change the roles list, operational parameters or base policy.
    pub const CAN_CHANGE_ROOM_POLICY: u16 = 0x0300;
    /// Send an AppDataUpdate proposal, changing the room's `app_data_dictionary`
    /// (draft-ietf-mls-extensions §4.7; feature `app-data-update`, wire-format.md §15.7).
    pub const CAN_UPDATE_APP_DATA: u16 = 0x0301;
    /// Delete the room (`delete_group`).
    pub const CAN_DESTROY_ROOM: u16 = 0x0500;
    /// Send a ReInit proposal.
    pub const CAN_SEND_MLS_REINIT_PROPOSAL: u16 = 0x0601;
}

/// A room policy as a creator or admin writes it into the GroupContext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// The roles; a policy without roles is no policy.
    pub roles: RoleData,
    /// The participants.
    pub participants: ParticipantListData,
    /// The operational parameters, if the room sets them.
    pub operational: Option<OperationalParameters>,
    /// The base policy, if the room sets one.
    pub base: Option<BaseRoomPolicy>,
}

impl RoomPolicy {
    /// The GroupContext extensions carrying this policy (unknown extensions of the four
    /// private-use types).
    pub fn extensions(&self) -> Result<Vec<Extension>, tls_codec::Error> {
        use tls_codec::Serialize as _;
        let unknown = |ty: u16, data: Vec<u8>| Extension::Unknown(ty, UnknownExtension(data));
        let mut out = vec![
            unknown(
                ROLES_LIST_EXTENSION_TYPE,
                self.roles.tls_serialize_detached()?,
            ),
            unknown(
                PARTICIPANT_LIST_EXTENSION_TYPE,
                self.participants.tls_serialize_detached()?,
            ),
        ];
        if let Some(operational) = &self.operational {
            out.push(unknown(
                OPERATIONAL_PARAMETERS_EXTENSION_TYPE,
                operational.tls_serialize_detached()?,
            ));
        }
        if let Some(base) = &self.base {
            out.push(unknown(
                BASE_ROOM_POLICY_EXTENSION_TYPE,
                base.tls_serialize_detached()?,
            ));
        }
        Ok(out)
    }

    /// Reads and checks the policy of a GroupContext: `Ok(None)` for a room without a roles
    /// list (the default of wire-format.md §15.2), an `invalid_group_info` refusal naming the
    /// [`PolicyDefect`] for a malformed or contradictory one.
    pub fn from_group_context(
        extensions: &Extensions<GroupContext>,
    ) -> Result<Option<Self>, RejectReason> {
        Room::read(extensions).map(|room| room.map(|r| r.policy))
    }
}

fn defect(defect: PolicyDefect) -> RejectReason {
    RejectReason::InvalidGroupInfo(InvalidGroupInfo::RoomPolicy(defect))
}

fn decode<T: tls_codec::DeserializeBytes>(
    extensions: &Extensions<GroupContext>,
    extension_type: u16,
) -> Result<Option<T>, RejectReason> {
    let Some(UnknownExtension(data)) = extensions.unknown(extension_type) else {
        return Ok(None);
    };
    // Rule R-POL-20.
    crate::wire::decode_exact(data).map(Some).map_err(|e| {
        defect(PolicyDefect::Malformed {
            extension_type,
            detail: e.to_string(),
        })
    })
}

/// A checked room policy with its lookups.
#[derive(Debug, Clone)]
pub(crate) struct Room {
    pub(crate) policy: RoomPolicy,
    roles: BTreeMap<u32, Role>,
    participants: BTreeMap<Vec<u8>, u32>,
}

impl Room {
    /// Reads the policy of a GroupContext and checks it is well formed and consistent
    /// (wire-format.md §15.1).
    pub(crate) fn read(
        extensions: &Extensions<GroupContext>,
    ) -> Result<Option<Self>, RejectReason> {
        let roles: Option<RoleData> = decode(extensions, ROLES_LIST_EXTENSION_TYPE)?;
        let participants: Option<ParticipantListData> =
            decode(extensions, PARTICIPANT_LIST_EXTENSION_TYPE)?;
        let operational: Option<OperationalParameters> =
            decode(extensions, OPERATIONAL_PARAMETERS_EXTENSION_TYPE)?;
        let base: Option<BaseRoomPolicy> = decode(extensions, BASE_ROOM_POLICY_EXTENSION_TYPE)?;
        let Some(roles) = roles else {
            let present = [
                (PARTICIPANT_LIST_EXTENSION_TYPE, participants.is_some()),
                (OPERATIONAL_PARAMETERS_EXTENSION_TYPE, operational.is_some()),
                (BASE_ROOM_POLICY_EXTENSION_TYPE, base.is_some()),
            ];
            if let Some((extension_type, _)) = present.iter().find(|(_, is)| *is) {
                // Rule R-POL-21.
                return Err(defect(PolicyDefect::WithoutRoles {
                    extension_type: *extension_type,
                }));
            }
            return Ok(None);
        };
        let policy = RoomPolicy {
            roles,
            participants: participants.unwrap_or(ParticipantListData {
                participants: Vec::new(),
            }),
            operational,
            base,
        };
        Self::check(policy).map(Some)
    }

    fn check(policy: RoomPolicy) -> Result<Self, RejectReason> {
        let mut roles = BTreeMap::new();
        for role in &policy.roles.roles {
            // Rule R-POL-22.
            if roles.insert(role.role_index, role.clone()).is_some() {
                return Err(defect(PolicyDefect::Duplicate));
            }
        }
        let known = |index: u32| -> Result<(), RejectReason> {
            if roles.contains_key(&index) {
                Ok(())
            } else {
                // Rule R-POL-23.
                Err(defect(PolicyDefect::UnknownRole { role_index: index }))
            }
        };
        for role in roles.values() {
            let bounds = [
                (
                    role.minimum_participants_constraint,
                    role.maximum_participants_constraint,
                ),
                (
                    role.minimum_active_participants_constraint,
                    role.maximum_active_participants_constraint,
                ),
            ];
            // Rule R-POL-24.
            if bounds
                .iter()
                .any(|(min, max)| max.is_some_and(|max| *min > max))
            {
                return Err(defect(PolicyDefect::MinAboveMax));
            }
            for change in role
                .authorized_role_changes
                .iter()
                .chain(&role.self_role_changes)
            {
                known(change.from_role_index)?;
                for target in &change.target_role_indexes {
                    known(*target)?;
                }
            }
        }
        let mut participants = BTreeMap::new();
        for pair in &policy.participants.participants {
            if pair.role_index == 0 {
                return Err(defect(PolicyDefect::UnknownRole { role_index: 0 }));
            }
            known(pair.role_index)?;
            if participants
                .insert(pair.user.as_slice().to_vec(), pair.role_index)
                .is_some()
            {
                return Err(defect(PolicyDefect::Duplicate));
            }
        }
        if let Some(operational) = &policy.operational {
            check_operational(operational)?;
        }
        Ok(Self {
            policy,
            roles,
            participants,
        })
    }

    /// The role of a user: its participant-list entry, else 0 ("not a participant").
    pub(crate) fn role_of(&self, user: &[u8]) -> u32 {
        self.participants.get(user).copied().unwrap_or(0)
    }

    /// Whether `user`'s role has `capability`.
    pub(crate) fn can(&self, user: &[u8], capability: u16) -> bool {
        self.roles
            .get(&self.role_of(user))
            .is_some_and(|role| role.role_capabilities.contains(&capability))
    }

    /// Whether `user` is a participant: listed, with a role other than 0 and the ban role (1
    /// named `banned`, RP-03).
    pub(crate) fn is_participant(&self, user: &[u8]) -> bool {
        match self.role_of(user) {
            0 => false,
            1 => self
                .roles
                .get(&1)
                .is_none_or(|role| role.role_name.as_slice() != b"banned"),
            _ => true,
        }
    }

    pub(crate) fn roles(&self) -> &BTreeMap<u32, Role> {
        &self.roles
    }

    pub(crate) fn participants(&self) -> &BTreeMap<Vec<u8>, u32> {
        &self.participants
    }

    pub(crate) fn operational(&self) -> Option<&OperationalParameters> {
        self.policy.operational.as_ref()
    }
}

/// Wire format `mls_public_message` (RFC 9420 §17.2).
const MLS_PUBLIC_MESSAGE: u16 = 1;

fn check_operational(operational: &OperationalParameters) -> Result<(), RejectReason> {
    if let PendingProposalPolicy::RandomDelay {
        minimum_delay_ms,
        maximum_delay_ms,
    } = operational.pending_proposal_policy
    {
        if minimum_delay_ms > maximum_delay_ms {
            // Rule R-POL-24.
            return Err(defect(PolicyDefect::MinAboveMax));
        }
    }
    let mandatory = &operational.mandatory_capabilities;
    let forbidden = &operational.forbidden_capabilities;
    let overlap = |a: &[u16], b: &[u16]| a.iter().any(|x| b.contains(x));
    // Rule R-POL-25.
    if overlap(&mandatory.versions, &forbidden.versions)
        || overlap(&mandatory.cipher_suites, &forbidden.cipher_suites)
        || overlap(&mandatory.extensions, &forbidden.extensions)
        || overlap(&mandatory.proposals, &forbidden.proposals)
        || overlap(&mandatory.credentials, &forbidden.credentials)
        || overlap(&mandatory.wire_formats, &forbidden.wire_formats)
    {
        return Err(defect(PolicyDefect::Contradictory));
    }
    // Rule R-POL-26. An empty list leaves the formats to the hub.
    if !operational.handshake_formats.is_empty()
        && !operational.handshake_formats.contains(&MLS_PUBLIC_MESSAGE)
    {
        return Err(defect(PolicyDefect::PublicMessageNotAllowed));
    }
    Ok(())
}
