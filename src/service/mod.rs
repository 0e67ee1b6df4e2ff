//! [`DeliveryService`]: decoding, and the drivers that run a request's steps ([`steps`]) over a
//! sync or an async storage.

pub(crate) mod cache;
mod prefetched;
mod privacy;
pub mod steps;

pub use cache::GroupCacheStats;
pub use steps::{DsFetched, DsRead, DsReads, DsStep, DsWrite};

use std::sync::Arc;

use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use crate::config::{DsConfig, DsIdentity};
use crate::error::{ProcessError, RejectReason, StepError};
use crate::fanout::Fanout;
use crate::handlers::HandlerEnv;
use crate::hub_event::HubEvent;
use crate::identity::{BasicCredentialValidator, CredentialValidator};
use crate::storage::{AsyncDsStorage, DsStorage, WriteOutcome};
use crate::time::UnixTimeMs;
use crate::wire::{
    decode_exact, encode_response, DsRequest, DsResponseBody, ErrorCode, PROTOCOL_VERSION_MIMI_DS10,
};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Accepted; the fanout must be delivered.
    Accepted,
    /// A byte-identical retry of a request accepted earlier: the earlier answer is repeated and
    /// nothing is fanned out again.
    Duplicate,
    /// Refused with this code; storage is unchanged and there is no fanout.
    Rejected(ErrorCode),
}

/// The result of [`DeliveryService::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct Outcome {
    /// The encoded `DSResponse` to return to the requester.
    pub response: Vec<u8>,
    /// Deliveries to Queueing Services, to make after returning the response or before: the
    /// state they reflect is already stored.
    pub fanout: Vec<Fanout>,
    /// How the request ended, for logs and metrics.
    pub status: Status,
    /// Why the request was refused, when [`Outcome::status`] is [`Status::Rejected`]: the
    /// named rule, for logs, metrics and tests. The peer only sees its wire code and text.
    pub refusal: Option<RejectReason>,
    /// What the request was and what it cost, for metrics: filled alike by the step API and
    /// the sync and async drivers.
    pub stats: OutcomeStats,
}

/// What one request was and what it cost ([`Outcome::stats`]): counts, sizes and names from a
/// bounded set, never an ID, so every field fits a metrics label or value. No durations:
/// mimi-ds reads no clock, so timing is the caller's (or, with the `tracing` feature, the
/// subscriber's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutcomeStats {
    /// The operation: the request type's name ([`crate::wire::DsRequestType::name`], such as
    /// `send_message` or `commits`), `hub_event.<kind>` for [`DeliveryService::handle_event`]
    /// (`hub_event.queue_rejected`, ...), or `undecodable` for bytes that are not a request.
    pub operation: &'static str,
    /// Read rounds the request took, over every attempt: each is one batch of reads the caller
    /// fetched ([`DsStep::Read`]). Most requests take one per attempt.
    pub read_rounds: u32,
    /// Writes storage refused with a conflict, each followed by a fresh attempt
    /// ([`DeliveryService::retry`]).
    pub conflict_retries: u32,
    /// The request's size in bytes (0 for a hub event).
    pub request_bytes: usize,
    /// The size of [`Outcome::response`].
    pub response_bytes: usize,
    /// Deliveries in [`Outcome::fanout`]: one per destination provider.
    pub fanout_count: usize,
    /// The encoded size of those deliveries, together.
    pub fanout_bytes: usize,
    /// The group's epoch after an accepted message, commit or proposal (from the `accepted`
    /// receipt); `None` where the answer names no epoch.
    pub epoch: Option<u64>,
}

/// The MIMI Delivery Service ("hub"), sans-IO.
///
/// It holds configuration and crypto only; all group state lives in the [`DsStorage`] passed
/// to each call, so one instance can serve any number of groups and threads.
pub struct DeliveryService<C = RustCrypto> {
    pub(crate) config: DsConfig,
    pub(crate) identity: DsIdentity,
    pub(crate) crypto: C,
    pub(crate) validator: Box<dyn CredentialValidator>,
    /// Earlier signing identities, still named by groups that have not committed a rotation.
    pub(crate) retired: Vec<DsIdentity>,
    /// The key of the server franks, if this hub franks messages (wire-format.md §15.5).
    pub(crate) franking_key: Option<crate::franking::FrankingKey>,
    /// Decoded group state, used only for the exact stored version it came from
    /// (wire-format.md §16.2).
    pub(crate) cache: Arc<cache::GroupCache>,
    /// The empty cache keyed requests run with: the group cache keeps no privacy-mode group
    /// (wire-format.md §17.8), so their handlers always read and open the records.
    pub(crate) uncached: cache::GroupCache,
}

impl<C> std::fmt::Debug for DeliveryService<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryService")
            .field("config", &self.config)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl<C: OpenMlsCrypto + OpenMlsRand> DeliveryService<C> {
    /// A DS with its configuration, its external-sender identity and a crypto provider (which
    /// is also its source of randomness, so tests can inject a deterministic one).
    ///
    /// It refuses every credential until a [`CredentialValidator`] is set with
    /// [`DeliveryService::with_credential_validator`]: which credentials a deployment trusts is
    /// its decision, not a default of this crate.
    pub fn new(config: DsConfig, identity: DsIdentity, crypto: C) -> Self {
        let cache = cache::GroupCache::new(config.group_cache_bytes, config.group_cache_force_miss);
        Self {
            cache: Arc::new(cache),
            uncached: cache::GroupCache::new(0, true),
            config,
            identity,
            crypto,
            validator: Box::new(BasicCredentialValidator::reject_all()),
            retired: Vec::new(),
            franking_key: None,
        }
    }

    /// Adds an identity the DS used before its current one. Groups that still name it keep
    /// working (the DS signs its proposals there with it) until
    /// [`HubEvent::RotateSigningKey`] moves them to the current identity.
    pub fn with_retired_identity(mut self, identity: DsIdentity) -> Self {
        self.retired.push(identity);
        self
    }

    /// Makes the hub frank application messages that carry a franking tag, with this key
    /// (wire-format.md §15.5), and verify reported franks
    /// ([`DeliveryService::verify_reported_message`]). Without it, messages are accepted
    /// unfranked.
    pub fn with_franking_key(mut self, key: crate::franking::FrankingKey) -> Self {
        self.franking_key = Some(key);
        self
    }

    /// Sets the validator that accepts credentials and names the user of each client.
    pub fn with_credential_validator(
        mut self,
        validator: impl CredentialValidator + 'static,
    ) -> Self {
        self.validator = Box::new(validator);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &DsConfig {
        &self.config
    }

    /// What the cache of decoded group state holds and how it was used (wire-format.md
    /// §16.2): its estimated bytes stay within [`DsConfig::group_cache_bytes`].
    pub fn group_cache_stats(&self) -> GroupCacheStats {
        self.cache.stats()
    }

    /// Empties the cache of decoded group state. Never needed for correctness while storage
    /// keeps its contract; call it after restoring storage from a backup, which may bring back
    /// a version number with other contents (wire-format.md §16.2).
    pub fn clear_group_cache(&self) {
        self.cache.clear();
    }

    /// Processes one request.
    ///
    /// Every request the peer got wrong is answered with an error `DSResponse` in
    /// [`Outcome::response`], leaves storage untouched, and fans out nothing. One exception:
    /// a `create_group` whose `ClientSignature` verifies but whose group does not validate
    /// consumes its group ID reservation (wire-format.md §4.2). `Err` is returned
    /// only when storage fails or mimi-ds hits a bug; then nothing was written either.
    ///
    /// This is the step API ([`DeliveryService::start`], [module `steps`](steps)) driven over
    /// a sync storage.
    pub fn process<S: DsStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        self.drive(self.start(now, request)?, storage)
    }

    /// [`DeliveryService::process`] over an async storage: the same steps, with each read and
    /// the write awaited. It needs no runtime; the future is `Send` when the storage is, so a
    /// tokio server can `spawn` it.
    pub async fn process_async<S: AsyncDsStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        self.drive_async(self.start(now, request)?, storage).await
    }

    /// Acts on something the embedding server learned about a group: the DS issues, signs and
    /// fans out proposals as the group's MLS external sender (DS-00 §6; DS-04/05
    /// "DS-initiated operations"). Same contract as [`DeliveryService::process`]; the
    /// response is informational (`accepted` with the first proposal's sequence number, `ok`
    /// when there was nothing to do, or an error such as `unknown_group`).
    pub fn handle_event<S: DsStorage>(
        &self,
        now: UnixTimeMs,
        group_id: &[u8],
        event: &HubEvent,
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        self.drive(self.start_event(now, group_id, event)?, storage)
    }

    /// [`DeliveryService::handle_event`] over an async storage, as
    /// [`DeliveryService::process_async`].
    pub async fn handle_event_async<S: AsyncDsStorage>(
        &self,
        now: UnixTimeMs,
        group_id: &[u8],
        event: &HubEvent,
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        self.drive_async(self.start_event(now, group_id, event)?, storage)
            .await
    }

    /// [`DeliveryService::handle_event`] for a privacy-mode group (wire-format.md §17.8).
    /// Between requests the hub holds no key, so it cannot act on such a group (plain
    /// `handle_event` answers `state_key_missing`); the embedding server keeps the event and
    /// runs it with the keys of the group's next keyed request, before that request
    /// ([`crate::wire::DsRequestBody::state_keys`] of the decoded request; the `next_key`, if
    /// any, is not used: the event issues proposals and creates no epoch). The keys open the
    /// group's state exactly as a request's would: a wrong or stale key is refused and changes
    /// nothing, and the hub keeps no key afterwards. The event's proposals are sealed in their
    /// own write; the request then runs against the state they left.
    pub fn handle_event_with_keys<S: DsStorage>(
        &self,
        now: UnixTimeMs,
        group_id: &[u8],
        event: &HubEvent,
        keys: &crate::privacy::StateKeys,
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        let current = current_key_only(keys);
        self.drive(
            self.start_event_with_keys(now, group_id, event, &current)?,
            storage,
        )
    }

    /// [`DeliveryService::handle_event_with_keys`] over an async storage.
    pub async fn handle_event_with_keys_async<S: AsyncDsStorage>(
        &self,
        now: UnixTimeMs,
        group_id: &[u8],
        event: &HubEvent,
        keys: &crate::privacy::StateKeys,
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        let current = current_key_only(keys);
        self.drive_async(
            self.start_event_with_keys(now, group_id, event, &current)?,
            storage,
        )
        .await
    }

    /// What handlers may use of this service, with the group cache or, for a keyed request
    /// (wire-format.md §17.8), without it.
    fn handler_env(&self, keyed: bool) -> HandlerEnv<'_, C> {
        HandlerEnv {
            config: &self.config,
            identity: &self.identity,
            retired: &self.retired,
            franking_key: self.franking_key.as_ref(),
            crypto: &self.crypto,
            validator: self.validator.as_ref(),
            cache: if keyed { &self.uncached } else { &self.cache },
        }
    }

    /// Drives steps over a sync storage until the request is done.
    fn drive<S: DsStorage>(
        &self,
        mut step: DsStep<'_>,
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        loop {
            step = match step {
                DsStep::Read(reads) => match reads.fetch(storage) {
                    Ok(answers) => self.resume(reads, answers)?,
                    Err(error) => return Err(reads.storage_failed(error)),
                },
                DsStep::Write(write) => match storage.write(write.write_set()) {
                    Ok(WriteOutcome::Applied) => return Ok(write.applied()),
                    Ok(WriteOutcome::Conflict) => self.retry(write)?,
                    Err(error) => return Err(write.storage_failed(error)),
                },
                DsStep::Done(outcome) => return Ok(outcome),
            }
        }
    }

    /// Drives steps over an async storage until the request is done: [`DeliveryService::drive`]
    /// with `.await`. Holds `&mut S` across its awaits, never `&S`, so the future is `Send`
    /// whenever the storage is (`S: Sync` is not needed).
    async fn drive_async<S: AsyncDsStorage>(
        &self,
        mut step: DsStep<'_>,
        storage: &mut S,
    ) -> Result<Outcome, ProcessError<S::Error>> {
        loop {
            step = match step {
                DsStep::Read(reads) => match reads.fetch_async(storage).await {
                    Ok(answers) => self.resume(reads, answers)?,
                    Err(error) => return Err(reads.storage_failed(error)),
                },
                DsStep::Write(write) => match storage.write(write.write_set()).await {
                    Ok(WriteOutcome::Applied) => return Ok(write.applied()),
                    Ok(WriteOutcome::Conflict) => self.retry(write)?,
                    Err(error) => return Err(write.storage_failed(error)),
                },
                DsStep::Done(outcome) => return Ok(outcome),
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<DsRequest, RejectReason> {
        if bytes.len() > self.config.max_request_bytes {
            // Rule R-FRAME-3.
            return Err(RejectReason::TooLarge {
                size: bytes.len(),
                limit: self.config.max_request_bytes,
            });
        }
        // The version comes first and decides how the rest is read (wire-format.md §2).
        if let [hi, lo, ..] = bytes {
            let version = u16::from_be_bytes([*hi, *lo]);
            if version != PROTOCOL_VERSION_MIMI_DS10 {
                // Rule R-FRAME-2.
                return Err(RejectReason::UnsupportedVersion(version));
            }
        }
        // Rule R-FRAME-1.
        Ok(decode_exact::<DsRequest>(bytes)?)
    }

    /// An accepted answer without a write.
    fn answer(&self, body: DsResponseBody) -> Result<Outcome, StepError> {
        let response = encode_response(body).map_err(|e| StepError::Internal(e.to_string()))?;
        Ok(Outcome {
            response,
            fanout: Vec::new(),
            status: Status::Accepted,
            refusal: None,
            stats: OutcomeStats::default(),
        })
    }

    /// A refusal: the error response, with the named rule for logs.
    fn reject(&self, reason: &RejectReason) -> Result<Outcome, StepError> {
        let response = encode_response(DsResponseBody::Error(reason.to_wire()))
            .map_err(|e| StepError::Internal(e.to_string()))?;
        Ok(Outcome {
            response,
            fanout: Vec::new(),
            status: Status::Rejected(reason.code()),
            refusal: Some(reason.clone()),
            stats: OutcomeStats::default(),
        })
    }
}

/// `keys` without their `next_key`: a hub event creates no epoch (wire-format.md §17.8).
fn current_key_only(keys: &crate::privacy::StateKeys) -> crate::privacy::StateKeys {
    crate::privacy::StateKeys::new(keys.scheme(), keys.current().clone(), None)
        .unwrap_or_else(|| keys.clone())
}
