//! The room-policy structures as they travel in GroupContext extensions (wire-format.md §15.1).
//!
//! The layouts follow draft-ietf-mimi-room-policy-03 (`RoleData`, `OperationalParameters`,
//! `BaseRoomPolicy`) and draft-ietf-mimi-protocol-06 (`ParticipantListData`); the decisions
//! where the drafts leave a gap (the `extension(254)` arm of `PendingProposalStrategy`, `bool`
//! as one octet 0 or 1, `unit64` read as `uint64`) are in wire-format.md §15.1.

use tls_codec::{
    DeserializeBytes, Serialize, Size, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes,
};

/// A TLS-presentation `bool`: one octet, 0 or 1 (RFC 8446 §3 has no bool; the drafts use it as
/// the usual one-octet boolean). Any other octet does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl Size for Flag {
    fn tls_serialized_len(&self) -> usize {
        1
    }
}

impl Serialize for Flag {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        u8::from(self.0).tls_serialize(writer)
    }
}

impl DeserializeBytes for Flag {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (value, rest) = u8::tls_deserialize_bytes(bytes)?;
        match value {
            0 => Ok((Self(false), rest)),
            1 => Ok((Self(true), rest)),
            other => Err(tls_codec::Error::DecodingError(format!(
                "a bool is 0 or 1, not {other}"
            ))),
        }
    }
}

/// RP-03 `SingleSourceRoleChangeTargets`: a holder of the role that lists it may move a
/// participant from `from_role_index` to any of `target_role_indexes`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct RoleChangeTargets {
    /// The role the participant has before the change.
    pub from_role_index: u32,
    /// The roles it may be given.
    pub target_role_indexes: Vec<u32>,
}

/// RP-03 `Role`: a named set of capabilities with participant-count constraints.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct Role {
    /// The role's index; 0 is "not a participant", 1 named `banned` is the ban role.
    pub role_index: u32,
    /// The role's name.
    pub role_name: VLBytes,
    /// A description for people.
    pub role_description: VLBytes,
    /// The capabilities (uint16 registry, wire-format.md §15.2) of participants in the role.
    pub role_capabilities: Vec<u16>,
    /// The fewest participants the role may have.
    pub minimum_participants_constraint: u32,
    /// The most participants the role may have, if limited.
    pub maximum_participants_constraint: Option<u32>,
    /// The fewest participants with a client in the group the role may have.
    pub minimum_active_participants_constraint: u32,
    /// The most participants with a client in the group the role may have, if limited.
    pub maximum_active_participants_constraint: Option<u32>,
    /// The role changes a holder of this role may make to other participants.
    pub authorized_role_changes: Vec<RoleChangeTargets>,
    /// The role changes a holder of this role may make to its own role.
    pub self_role_changes: Vec<RoleChangeTargets>,
}

/// RP-03 `RoleData` (component `roles_list`): the room's roles.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct RoleData {
    /// The roles, each index once.
    pub roles: Vec<Role>,
}

/// MP-06 `UserRolePair`: a participant (a user URI) and its role.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct UserRolePair {
    /// The user's `IdentifierUri` (`mimi://<domain>/u/<user>`), as the credential validator
    /// names the user of a client.
    pub user: VLBytes,
    /// The participant's role index.
    pub role_index: u32,
}

/// MP-06 `ParticipantListData` (component `participant_list`): the room's participants.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ParticipantListData {
    /// Each user once.
    pub participants: Vec<UserRolePair>,
}

/// RP-03 `ExtendedCapabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Default, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ExtendedCapabilities {
    /// MLS protocol versions.
    pub versions: Vec<u16>,
    /// MLS cipher suites.
    pub cipher_suites: Vec<u16>,
    /// MLS extension types.
    pub extensions: Vec<u16>,
    /// MLS proposal types.
    pub proposals: Vec<u16>,
    /// MLS credential types.
    pub credentials: Vec<u16>,
    /// MLS wire formats.
    pub wire_formats: Vec<u16>,
    /// MLS component IDs (uint32).
    pub component_ids: Vec<u32>,
    /// Safe AAD component IDs (uint32).
    pub safe_aad_types: Vec<u32>,
    /// Media types, as strings.
    pub media_types: Vec<VLBytes>,
    /// MIMI content types.
    pub content_types: Vec<u8>,
}

/// RP-03 `PendingProposalPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PendingProposalPolicy {
    /// `unspecified(0)`: the hub-wide setting applies.
    #[default]
    Unspecified,
    /// `immediate_commit(1)`: pending proposals must be committed by the next commit.
    ImmediateCommit,
    /// `random_delay(2)`: committers wait between the two bounds (milliseconds).
    RandomDelay {
        /// The shortest wait.
        minimum_delay_ms: u64,
        /// The longest wait.
        maximum_delay_ms: u64,
    },
    /// `extension(254)` (this crate's value for RP-03's value-less arm):
    /// the parameters are in the named component.
    Extension {
        /// The component holding the strategy's parameters.
        id_of_strategy_params: u32,
    },
}

impl PendingProposalPolicy {
    /// The wire value of `extension`, which RP-03 leaves without one.
    pub const EXTENSION: u8 = 254;

    fn strategy(&self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::ImmediateCommit => 1,
            Self::RandomDelay { .. } => 2,
            Self::Extension { .. } => Self::EXTENSION,
        }
    }
}

impl Size for PendingProposalPolicy {
    fn tls_serialized_len(&self) -> usize {
        1 + match self {
            Self::Unspecified | Self::ImmediateCommit => 0,
            Self::RandomDelay { .. } => 16,
            Self::Extension { .. } => 4,
        }
    }
}

impl Serialize for PendingProposalPolicy {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        let mut written = self.strategy().tls_serialize(writer)?;
        match self {
            Self::Unspecified | Self::ImmediateCommit => {}
            Self::RandomDelay {
                minimum_delay_ms,
                maximum_delay_ms,
            } => {
                written += minimum_delay_ms.tls_serialize(writer)?;
                written += maximum_delay_ms.tls_serialize(writer)?;
            }
            Self::Extension {
                id_of_strategy_params,
            } => written += id_of_strategy_params.tls_serialize(writer)?,
        }
        Ok(written)
    }
}

impl DeserializeBytes for PendingProposalPolicy {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (strategy, rest) = u8::tls_deserialize_bytes(bytes)?;
        match strategy {
            0 => Ok((Self::Unspecified, rest)),
            1 => Ok((Self::ImmediateCommit, rest)),
            2 => {
                let (minimum_delay_ms, rest) = u64::tls_deserialize_bytes(rest)?;
                let (maximum_delay_ms, rest) = u64::tls_deserialize_bytes(rest)?;
                Ok((
                    Self::RandomDelay {
                        minimum_delay_ms,
                        maximum_delay_ms,
                    },
                    rest,
                ))
            }
            Self::EXTENSION => {
                let (id_of_strategy_params, rest) = u32::tls_deserialize_bytes(rest)?;
                Ok((
                    Self::Extension {
                        id_of_strategy_params,
                    },
                    rest,
                ))
            }
            other => Err(tls_codec::Error::DecodingError(format!(
                "unknown PendingProposalStrategy {other}"
            ))),
        }
    }
}

/// RP-03 `MinDefaultMaxTime`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, TlsSerialize, TlsDeserializeBytes, TlsSize,
)]
pub struct MinDefaultMaxTime {
    /// The shortest time.
    pub minimum_time: u64,
    /// The time clients use unless told otherwise.
    pub default_time: u64,
    /// The longest time.
    pub maximum_time: u64,
}

/// RP-03 `AppMessagePolicy`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, TlsSerialize, TlsDeserializeBytes, TlsSize,
)]
pub struct AppMessagePolicy {
    /// How many epochs behind the current one an application message may be.
    pub epoch_tolerance: u8,
    /// The padding block size.
    pub pad_to_size: u16,
    /// How far ahead in a sender's ratchet a receiver derives keys.
    pub max_generations_skipahead: u32,
}

/// RP-03 `OperationalParameters` (component `mls_operational_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Default, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct OperationalParameters {
    /// What every client must support.
    pub mandatory_capabilities: ExtendedCapabilities,
    /// What clients support unless told otherwise.
    pub default_capabilities: ExtendedCapabilities,
    /// What no client may use.
    pub forbidden_capabilities: ExtendedCapabilities,
    /// The wire formats handshakes may use (RFC 9420 `WireFormat`, uint16).
    pub handshake_formats: Vec<u16>,
    /// Whether external senders other than the hub may propose.
    pub external_proposal_allowed: Flag,
    /// Whether clients may join by external commit.
    pub external_commit_allowed: Flag,
    /// How pending proposals are committed.
    pub pending_proposal_policy: PendingProposalPolicy,
    /// How often leaves must be updated (seconds).
    pub leaf_node_update_time: MinDefaultMaxTime,
    /// Application-message limits.
    pub app_message_policy: AppMessagePolicy,
    /// The longest KeyPackage lifetime (`not_after - not_before`, seconds; 0: no limit).
    pub max_kp_lifetime: u64,
    /// The longest credential lifetime (seconds; 0: no limit).
    pub max_credential_lifetime: u64,
    /// The longest resumption PSK lifetime (seconds).
    pub resumption_psk_lifetime: u64,
    /// Sender-nonce key pair lifetimes (seconds).
    pub sender_nonce_keypair_lifetime: MinDefaultMaxTime,
    /// The most key pairs a client keeps.
    pub max_keypairs: u32,
    /// How long clients buffer messages they cannot yet process (milliseconds).
    pub buffer_incoming_message_time: MinDefaultMaxTime,
    /// How many messages clients buffer.
    pub max_buffered_messages: u32,
}

/// RP-03 `BaseRoomPolicy` (component `base_room_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Default, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct BaseRoomPolicy {
    /// Whether the participant list is fixed at creation.
    pub fixed_membership: Flag,
    /// Whether membership depends on a parent room.
    pub parent_dependant: Flag,
    /// The parent room's URI, if any.
    pub parent_room: Option<VLBytes>,
    /// Whether a user may have several clients.
    pub multi_device: Flag,
    /// The most clients (leaves) the group may have.
    pub max_clients: Option<u32>,
    /// The most users with a client in the group.
    pub max_users: Option<u32>,
    /// Whether pseudonymous participants are allowed.
    pub pseudonyms_allowed: Flag,
    /// Whether the room outlives its last participant.
    pub persistent_room: Flag,
    /// Whether the room can be found by search.
    pub discoverable: Flag,
    /// The policy components the room uses.
    pub policy_component_ids: Vec<u32>,
}
