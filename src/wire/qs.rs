//! The Queueing Service's own messages (wire-format.md §10): the sealed queue information a
//! client publishes, and the protocol between a client and the queue at its provider.
//!
//! No draft defines either. MIMIMI (MM-01; docs/decisions.md D18) says what the sealed queue ID
//! is; the client protocol is mimi-ds's, built the same way as `DSRequest` (a signed body,
//! SignWithLabel, a timestamp checked against `now`).

use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::auth::sign_content;
use super::queue::FanoutMessage;
use super::response::{DsError, HpkeCiphertext};

/// The `EncryptWithLabel` label of a sealed queue ID (docs/decisions.md D18: "MIMIMI QueueId").
pub const QUEUE_ID_LABEL: &str = "MIMIMI QueueId";

/// The `EncryptWithLabel` label of the answer to `create_queue` (wire-format.md §10.3).
pub const QUEUE_CREATED_LABEL: &str = "MIMI QS QueueCreated";

/// The `SignWithLabel` label of a [`QsClientRequest`].
pub const QS_REQUEST_LABEL: &str = "MIMI QS Request";

/// `QueueInfoPlaintext`: what a client seals to its provider's queue key and publishes as
/// `ClientQueueConfig.queue`. The token proves to the provider that whoever enqueues learned
/// it from the client (docs/decisions.md D17: a bearer token inside the sealed plaintext).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueueInfoPlaintext {
    /// The queue at the provider.
    pub queue_id: VLBytes,
    /// The queue's fanout authorisation token.
    pub fanout_auth_token: VLBytes,
}

/// `QueueInfoContext`: the `EncryptWithLabel` context of sealed queue information
/// (wire-format.md §10.1). It binds the ciphertext to the provider that opens it and to the one
/// hub that may deliver into the queue with it: a provider opens it only for a delivery whose
/// (mutual-TLS authenticated) `sender_domain` is `hub_domain`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueueInfoContext {
    /// The provider whose Queueing Service holds the queue.
    pub provider_domain: VLBytes,
    /// The hub (DS domain) allowed to deliver into the queue with this ciphertext.
    pub hub_domain: VLBytes,
}

/// `QSClientRequestType`-selected body of a [`QsClientRequest`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum QsClientRequestBody {
    /// `create_queue(0)`: a queue owned by `owner_key` (the key that signs this and every later
    /// request for the queue). Creating again with the same key returns the same queue. The
    /// answer is encrypted to `response_key`, so whoever replays or observes the request learns
    /// neither the queue ID nor its token.
    #[tls_codec(discriminant = 0)]
    CreateQueue {
        /// The owner's signature public key.
        owner_key: VLBytes,
        /// An X25519 HPKE public key of the client's: the [`QueueCreated`] answer is sealed to
        /// it (wire-format.md §10.3).
        response_key: VLBytes,
    },
    /// `delete_queue(1)`: deletes the queue and everything in it.
    #[tls_codec(discriminant = 1)]
    DeleteQueue,
    /// `fetch(2)`: up to `max_messages` messages, from `from_sequence` on.
    #[tls_codec(discriminant = 2)]
    Fetch {
        /// The first sequence number wanted.
        from_sequence: u64,
        /// At most this many (the QS may return fewer).
        max_messages: u32,
    },
    /// `acknowledge(3)`: deletes every message with a sequence number below `up_to_sequence`.
    #[tls_codec(discriminant = 3)]
    Acknowledge {
        /// One past the last message the client has safely processed.
        up_to_sequence: u64,
    },
}

/// `QSClientRequest`: a client's request to the queue at its provider.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QsClientRequest {
    /// `DSProtocolVersion`; only `mimi_ds10(1)`.
    pub version: u16,
    /// The operation.
    pub body: QsClientRequestBody,
    /// The queue; empty for `create_queue`.
    pub queue_id: VLBytes,
    /// Client time, ms since the UNIX epoch; checked against `now` like a `ClientSignature`.
    pub timestamp_ms: u64,
    /// `SignWithLabel(owner_key, "MIMI QS Request", QSClientRequestTBS)`.
    pub signature: VLBytes,
}

/// `QSClientRequestTBS`: every field of [`QsClientRequest`] but the signature.
#[derive(Debug, TlsSerialize, TlsSize)]
pub struct QsClientRequestTbs<'a> {
    /// As in [`QsClientRequest`].
    pub version: u16,
    /// As in [`QsClientRequest`].
    pub body: &'a QsClientRequestBody,
    /// As in [`QsClientRequest`].
    pub queue_id: &'a VLBytes,
    /// As in [`QsClientRequest`].
    pub timestamp_ms: u64,
}

impl QsClientRequestTbs<'_> {
    /// RFC 9420 §5.1.2 `SignContent` with the label "MLS 1.0 MIMI QS Request": the exact bytes
    /// signed.
    pub fn sign_content(&self) -> Result<Vec<u8>, tls_codec::Error> {
        sign_content(QS_REQUEST_LABEL, self.tls_serialize_detached()?)
    }
}

impl QsClientRequest {
    /// The to-be-signed part of this request.
    pub fn tbs(&self) -> QsClientRequestTbs<'_> {
        QsClientRequestTbs {
            version: self.version,
            body: &self.body,
            queue_id: &self.queue_id,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// `QueueCreated`: what a client needs to publish sealed queue information. It travels only
/// encrypted to the `create_queue` request's `response_key`
/// ([`QsClientResponseBody::EncryptedQueueCreated`]).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueueCreated {
    /// The new (or existing) queue.
    pub queue_id: VLBytes,
    /// Its fanout authorisation token, to be sealed with the queue ID.
    pub fanout_auth_token: VLBytes,
    /// The provider's HPKE public key that queue information is sealed to.
    pub queue_encryption_key: VLBytes,
}

/// `QueuedMessage`: one message in a queue.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueuedMessage {
    /// Position in the queue: consecutive, starting at 0.
    pub sequence_number: u64,
    /// When the QS enqueued it (its `now`), ms since the UNIX epoch.
    pub received_ms: u64,
    /// The DS that delivered it.
    pub sender_domain: VLBytes,
    /// The message as the DS fanned it out.
    pub message: FanoutMessage,
}

/// `QueuedMessages`: one page of a queue.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueuedMessages {
    /// The messages, in sequence order.
    pub messages: Vec<QueuedMessage>,
    /// Where the next fetch should start.
    pub next_sequence: u64,
    /// How many messages are still queued from `next_sequence` on.
    pub remaining: u64,
}

/// `QSClientResponseBody`, selected by a uint8 `QSClientResponseType`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum QsClientResponseBody {
    /// `ok(0)`: `delete_queue`, `acknowledge`.
    #[tls_codec(discriminant = 0)]
    Ok,
    /// `error(1)`: a `DSError` (the codes are shared with the DS).
    #[tls_codec(discriminant = 1)]
    Error(DsError),
    /// `encrypted_queue_created(2)`: `EncryptWithLabel(response_key, "MIMI QS QueueCreated",
    /// provider_domain, QueueCreated)` (wire-format.md §10.3).
    #[tls_codec(discriminant = 2)]
    EncryptedQueueCreated(HpkeCiphertext),
    /// `messages(3)`: `fetch`.
    #[tls_codec(discriminant = 3)]
    Messages(QueuedMessages),
}

/// `QSClientResponse { DSProtocolVersion version; QSClientResponseBody body; }`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QsClientResponse {
    /// `DSProtocolVersion`.
    pub version: u16,
    /// The answer.
    pub body: QsClientResponseBody,
}
