//! What the DS hands to Queueing Services (wire-format.md §6; DS-00 §6 `QueueingServiceRequest`,
//! batched per destination provider as DS-03 and draft-ietf-mimi-protocol-06 `/notify` do).

use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::raw::MlsMessageBytes;
use super::response::ErrorCode;

/// The private-use LeafNode extension type (RFC 9420 §17.3, 0xF000–0xFFFF) in which a client
/// publishes its [`ClientQueueConfig`], in KeyPackages and leaf nodes alike.
pub const QUEUE_CONFIG_EXTENSION_TYPE: u16 = 0xF1D5;

/// `ClientQueueConfig`: where the DS fans out a client's messages. The `queue` bytes are opaque
/// to the DS (an HPKE-sealed queue ID under MIMIMI, docs/decisions.md D18); only the provider
/// reads them.
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
    /// The hub's frank of a franked application message (draft-ietf-mimi-protocol-06
    /// `FanoutMessage` `optional<Frank>`; wire-format.md §15.5); `None` for everything else.
    pub frank: Option<super::Frank>,
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

/// `QueueingServiceResponse` (DS-00 §6): `ok(0)`, `invalid_client_queue_information(1)`, and
/// mimi-ds's `recipients_refused(2)` (wire-format.md §6.3).
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
    /// `recipients_refused(2)`: the recipients that did not get the message, each with why.
    /// A QS answers this only when a queue is full (`queue_full`, temporary: deliver again
    /// later); the other refusals in it are `unknown_queue`, the recipients
    /// `invalid_client_queue_information` would name.
    #[tls_codec(discriminant = 2)]
    RecipientsRefused(Vec<RecipientRefusal>),
}

/// One refused recipient of a delivery (wire-format.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct RecipientRefusal {
    /// Index into the request's `recipients`.
    pub recipient: u32,
    /// A `DSErrorCode`: `unknown_queue` (19), the queue information is no longer valid, or
    /// `queue_full` (23), the queue holds as much as its provider allows for now.
    pub code: u16,
}

impl QueueingServiceResponse {
    /// The recipients whose queue information is no longer valid: the hub removes their
    /// clients (wire-format.md §6.3).
    pub fn invalid_recipients(&self) -> Vec<u32> {
        match self {
            Self::Ok => Vec::new(),
            Self::InvalidClientQueueInformation(indices) => indices.clone(),
            Self::RecipientsRefused(refused) => refused
                .iter()
                .filter(|r| r.code == ErrorCode::UnknownQueue as u16)
                .map(|r| r.recipient)
                .collect(),
        }
    }

    /// The recipients whose queue was full: the message did not reach them, their clients
    /// stay; the hub's server may deliver the same message to them again later.
    pub fn full_recipients(&self) -> Vec<u32> {
        match self {
            Self::RecipientsRefused(refused) => refused
                .iter()
                .filter(|r| r.code == ErrorCode::QueueFull as u16)
                .map(|r| r.recipient)
                .collect(),
            _ => Vec::new(),
        }
    }
}
