//! The provider-side **Queueing Service** (QS), sans-IO like the DS (wire-format.md §10).
//!
//! A provider runs one QS for its clients. It takes two kinds of request:
//!
//! * **Deliveries** from a Delivery Service, local or remote ([`QueueingService::deliver`]): a
//!   `QueueingServiceRequest` naming the recipients by their sealed queue information. The QS
//!   checks that the delivery is addressed to it (the forwarding-attack rule) and comes from
//!   the provider the transport authenticated, opens each recipient's queue information with
//!   its [`QueueKey`] (only information sealed for deliveries from that hub opens), checks
//!   the queue's fanout token and the queue's limits, and enqueues the message. It answers
//!   `ok`, or names the recipients it could not serve: invalid ones, which the DS's server
//!   turns into [`crate::HubEvent::QueueRejected`] ([`crate::Fanout::rejected_queues`]), and
//!   full ones, which stay in the group. A byte-identical redelivery is answered the same way
//!   and stored once.
//! * **Client requests** ([`QueueingService::client_request`]): create and delete a queue,
//!   fetch its messages page by page, and acknowledge them, each signed by the queue owner.
//!
//! Every call reads, validates, and then writes at most one atomic [`QsWriteSet`]; bad input
//! gets an error response and changes nothing.
//!
//! Servers whose storage is async do the reads and the write themselves through the step API
//! (module [`steps`]), or in one call with [`QueueingService::deliver_async`] and
//! [`QueueingService::client_request_async`] over an [`AsyncQsStorage`]. The sync calls drive
//! the same steps.

mod async_storage;
mod client;
mod delivery;
mod prefetched;
mod sealing;
pub mod steps;
mod storage;

pub use async_storage::AsyncQsStorage;
pub use sealing::{seal_queue_info, CreateQueueKey, QueueKey, SealError};
pub use steps::{QsFetched, QsRead, QsReads, QsStep, QsWrite};
pub use storage::{
    queued_size, DeliveryMark, InMemoryQsStorage, QsChange, QsStorage, QsWriteOutcome, QsWriteSet,
    QueueRecord,
};

use openmls::prelude::SignatureScheme;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use crate::error::QsRejectReason;
use crate::time::UnixTimeMs;
use crate::wire::{
    encode, DsResponse, DsResponseBody, ErrorCode, QsClientResponse, QsClientResponseBody,
    PROTOCOL_VERSION_MIMI_DS10,
};
use crate::ProcessError;

/// Queueing Service settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QsConfig {
    /// The provider's domain: deliveries must name it as `recipient_domain`, and queue
    /// information is sealed with it as context.
    pub domain: String,
    /// Half-width of the window around `now` in which a client request's timestamp is
    /// accepted. Default 5 minutes, as the DS's.
    pub auth_window_ms: u64,
    /// Requests larger than this are refused before decoding. Default 4 MiB.
    pub max_request_bytes: usize,
    /// The most messages one `fetch` returns. Default 100.
    pub max_page: u32,
    /// The most bytes of messages (encoded `QueuedMessage`s) one `fetch` returns; a page
    /// always holds at least one message, so a message larger than this can still be fetched.
    /// Default 4 MiB.
    pub max_page_bytes: usize,
    /// The most unacknowledged messages a queue holds; a delivery to a full queue is refused
    /// for that recipient with `queue_full` (wire-format.md §10.2). `None` (the default): no
    /// limit.
    pub max_queue_messages: Option<u64>,
    /// The most bytes of unacknowledged messages (encoded `QueuedMessage`s) a queue holds;
    /// an empty queue always takes one message. `None` (the default): no limit.
    pub max_queue_bytes: Option<u64>,
    /// How long a delivered message is remembered to recognise a redelivery. Default 24 hours.
    pub duplicate_window_ms: u64,
    /// How often a request is re-run when storage reports a concurrent write. Default 3.
    pub max_conflict_retries: u32,
    /// The signature scheme of queue owners' keys. Default Ed25519.
    pub signature_scheme: SignatureScheme,
}

impl QsConfig {
    /// The defaults for a provider at `domain`.
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            auth_window_ms: 5 * 60 * 1000,
            max_request_bytes: 4 * 1024 * 1024,
            max_page: 100,
            max_page_bytes: 4 * 1024 * 1024,
            max_queue_messages: None,
            max_queue_bytes: None,
            duplicate_window_ms: 24 * 60 * 60 * 1000,
            max_conflict_retries: 3,
            signature_scheme: SignatureScheme::ED25519,
        }
    }
}

/// How a QS request ended, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QsStatus {
    /// Served (a delivery may still have named invalid recipients: see
    /// [`QsOutcome::invalid_recipients`]).
    Accepted,
    /// Served without a change: a redelivery, or a `create_queue` for a key that owns a queue.
    Duplicate,
    /// Refused; the response carries a `DSError` with this code.
    Rejected(ErrorCode),
}

/// The result of one QS call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct QsOutcome {
    /// The bytes to answer with: a `QueueingServiceResponse` for a served delivery, a
    /// `DSResponse` with the error for a refused one; a `QSClientResponse` for client requests.
    pub response: Vec<u8>,
    /// How it ended.
    pub status: QsStatus,
    /// Queues that received a new message (to wake their clients up, say).
    pub enqueued: Vec<Vec<u8>>,
    /// Recipients of a delivery whose queue information is invalid (indices into
    /// `recipients`).
    pub invalid_recipients: Vec<u32>,
    /// Recipients of a delivery whose queue was full (indices into `recipients`): they did
    /// not get the message this time.
    pub full_recipients: Vec<u32>,
    /// Why the request was refused, when [`QsOutcome::status`] is [`QsStatus::Rejected`]: the
    /// named rule, for logs, metrics and tests.
    pub refusal: Option<QsRejectReason>,
    /// What the request was and what it cost, for metrics: filled alike by the step API and
    /// the sync and async drivers.
    pub stats: QsStats,
}

/// What one QS request was and what it cost ([`QsOutcome::stats`]): counts, sizes and names
/// from a bounded set, never a queue ID, as [`crate::OutcomeStats`] for the DS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QsStats {
    /// `deliver` for a delivery; for a client request its type (`create_queue`,
    /// `delete_queue`, `fetch`, `acknowledge`), or `client_request` for one refused before it
    /// decoded and passed its freshness check.
    pub operation: &'static str,
    /// Read rounds over every attempt ([`QsStep::Read`]).
    pub read_rounds: u32,
    /// Writes storage refused with a conflict, each followed by a fresh attempt.
    pub conflict_retries: u32,
    /// The request's size in bytes.
    pub request_bytes: usize,
    /// The size of [`QsOutcome::response`].
    pub response_bytes: usize,
    /// A delivery's recipients (0 for client requests and deliveries refused as a whole
    /// before they decoded).
    pub recipients: usize,
    /// Queues that received the message ([`QsOutcome::enqueued`]).
    pub enqueued: usize,
    /// Recipients whose queue information was invalid ([`QsOutcome::invalid_recipients`]).
    pub invalid_recipients: usize,
    /// Recipients whose queue was full ([`QsOutcome::full_recipients`]).
    pub full_recipients: usize,
}

/// A handler's plan: an answer and, if anything changes, the one write set to apply first.
pub(crate) struct QsPlan {
    pub(crate) writes: Option<QsWriteSet>,
    pub(crate) outcome: QsOutcome,
}

/// The Queueing Service. It holds configuration, the provider's queue key and a crypto
/// provider (also its randomness, for queue IDs and tokens); queues live in the
/// [`QsStorage`] passed to each call.
pub struct QueueingService<C = RustCrypto> {
    pub(crate) config: QsConfig,
    pub(crate) key: QueueKey,
    pub(crate) crypto: C,
}

impl<C> std::fmt::Debug for QueueingService<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueingService")
            .field("config", &self.config)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<C: OpenMlsCrypto + OpenMlsRand> QueueingService<C> {
    /// A QS with its settings, its queue key and a crypto provider.
    pub fn new(config: QsConfig, key: QueueKey, crypto: C) -> Self {
        Self {
            config,
            key,
            crypto,
        }
    }

    /// The settings.
    pub fn config(&self) -> &QsConfig {
        &self.config
    }

    /// The public key clients seal their queue information to.
    pub fn queue_encryption_key(&self) -> &[u8] {
        self.key.public_key()
    }

    /// Handles a `QueueingServiceRequest` from a DS. `authenticated_sender` is the provider
    /// the transport authenticated (mutual TLS), if any: a delivery naming another
    /// `sender_domain` is refused. Recipients open only if they were sealed for that
    /// `sender_domain` (wire-format.md §10.1), so pass `None` only for deliveries whose sender
    /// you trust otherwise (the hub in the same process): with `None` the claimed
    /// `sender_domain` is believed.
    ///
    /// It drives the step API ([`steps`], from [`QueueingService::start_delivery`]) over
    /// `storage`.
    pub fn deliver<S: QsStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        authenticated_sender: Option<&str>,
        storage: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let step = self
            .start_delivery(now, request, authenticated_sender)
            .map_err(steps::process_error)?;
        self.drive(step, storage)
    }

    /// Handles a `QSClientRequest` from one of the provider's clients. It drives the step API
    /// ([`steps`], from [`QueueingService::start_client_request`]) over `storage`.
    pub fn client_request<S: QsStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let step = self
            .start_client_request(now, request)
            .map_err(steps::process_error)?;
        self.drive(step, storage)
    }

    /// The checks every QS request starts with: the size limit before anything is read, then
    /// the version, which comes first and decides how the rest is read (wire-format.md §2.1).
    fn check_size_and_version(&self, bytes: &[u8]) -> Result<(), QsRejectReason> {
        let limit = self.config.max_request_bytes;
        if bytes.len() > limit {
            return Err(QsRejectReason::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        if let [hi, lo, ..] = bytes {
            let version = u16::from_be_bytes([*hi, *lo]);
            if version != PROTOCOL_VERSION_MIMI_DS10 {
                return Err(QsRejectReason::UnsupportedVersion(version));
            }
        }
        Ok(())
    }
}

/// A QS handler step fails with a refusal or with a process error.
#[derive(Debug)]
pub(crate) enum QsFailure<E: std::error::Error + 'static> {
    Reject(QsRejectReason),
    Process(ProcessError<E>),
}

impl<E: std::error::Error + 'static> From<QsRejectReason> for QsFailure<E> {
    fn from(reason: QsRejectReason) -> Self {
        Self::Reject(reason)
    }
}

/// Wraps a storage error.
pub(crate) fn storage_error<E: std::error::Error + 'static>(e: E) -> QsFailure<E> {
    QsFailure::Process(ProcessError::Storage(e))
}

/// A bug: something the QS computed itself does not encode.
pub(crate) fn internal<E: std::error::Error + 'static>(
    what: impl std::fmt::Display,
) -> QsFailure<E> {
    QsFailure::Process(ProcessError::Internal(what.to_string()))
}

// The two rejections below cannot fail to encode: every reason's `DSError` encodes (unit test
// `every_qs_reject_reason_encodes`); the empty fallback only keeps a bug from panicking.

/// A refused delivery: a `DSResponse` carrying the error, since `QueueingServiceResponse`
/// has no error case.
pub(crate) fn delivery_rejection(reason: &QsRejectReason) -> QsOutcome {
    let response = encode(&DsResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsResponseBody::Error(reason.to_wire()),
    })
    .unwrap_or_default();
    rejected(response, reason)
}

/// A refused client request: a `QSClientResponse` carrying the error.
pub(crate) fn client_rejection(reason: &QsRejectReason) -> QsOutcome {
    let response = encode(&QsClientResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: QsClientResponseBody::Error(reason.to_wire()),
    })
    .unwrap_or_default();
    rejected(response, reason)
}

fn rejected(response: Vec<u8>, reason: &QsRejectReason) -> QsOutcome {
    QsOutcome {
        response,
        status: QsStatus::Rejected(reason.code()),
        enqueued: Vec::new(),
        invalid_recipients: Vec::new(),
        full_recipients: Vec::new(),
        refusal: Some(reason.clone()),
        stats: QsStats::default(),
    }
}
