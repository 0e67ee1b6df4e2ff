//! What the DS hands to Queueing Services (wire-format.md §6; DS-00 §6 `QueueingServiceRequest`,
//! batched per destination provider as DS-03 and draft-ietf-mimi-protocol-06 `/notify` do).

use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::raw::MlsMessageBytes;

/// The private-use LeafNode extension type (RFC 9420 §17.3, 0xF000–0xFFFF) in which a client
/// publishes its [`ClientQueueConfig`], in KeyPackages and leaf nodes alike.
pub const QUEUE_CONFIG_EXTENSION_TYPE: u16 = 0xF1D5;

/// `ClientQueueConfig`: where the DS fans out a client's messages. The `queue` bytes are opaque
/// to the DS (an HPKE-sealed queue ID under MIMIMI, digest §5.9); only the provider reads them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ClientQueueConfig {
    /// The client's provider, which runs its Queueing Service.
    pub provider_domain: VLBytes,
    /// Opaque queue information for that provider.
    pub queue: VLBytes,
}

/// `FanoutMessage`: one accepted message, with the order and time the hub gave it.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct FanoutMessage {
    /// The group the message belongs to.
    pub group_id: VLBytes,
    /// Per-group sequence number (see [`super::AcceptedMessage`]).
    pub sequence_number: u64,
    /// Hub acceptance time, ms since the UNIX epoch.
    pub accepted_time_ms: u64,
    /// The MLS message, exactly as the DS accepted it.
    pub message: MlsMessageBytes,
    /// Proposals the DS issued in the epoch a commit creates, stapled to that commit so that no
    /// member can commit without seeing them (draft-ietf-mimi-protocol-06 `FanoutMessage`
    /// `externalProposals`). Empty for everything but such commits.
    pub external_proposals: Vec<MlsMessageBytes>,
}

/// `QueueingServiceRequest`: one message for one or more clients of one provider.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueueingServiceRequest {
    /// `DSProtocolVersion`.
    pub version: u16,
    /// The DS's domain.
    pub sender_domain: VLBytes,
    /// The receiving provider; it must check this names itself (forwarding-attack rule,
    /// draft-kohbrok-mimi-transport-00 §"Security").
    pub recipient_domain: VLBytes,
    /// The queues of the recipient clients, all at `recipient_domain`.
    pub recipients: Vec<VLBytes>,
    /// The message.
    pub message: FanoutMessage,
}

/// `QueueingServiceResponse` (DS-00 §6): `ok(0)`, `invalid_client_queue_information(1)`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum QueueingServiceResponse {
    /// `ok(0)`.
    #[tls_codec(discriminant = 0)]
    Ok,
    /// `invalid_client_queue_information(1)`: these queues (by index into `recipients`) are no
    /// longer valid.
    #[tls_codec(discriminant = 1)]
    InvalidClientQueueInformation(Vec<u32>),
}
