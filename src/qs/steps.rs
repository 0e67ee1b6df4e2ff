//! The Queueing Service's **step API**: a request as a sequence of steps that say which reads
//! to fetch and which write to apply, for servers whose storage is async (or remote) and which
//! do their own I/O. No runtime is needed; [`QueueingService::deliver_async`] and
//! [`QueueingService::client_request_async`] drive the steps over an [`AsyncQsStorage`] in one
//! call, and the sync [`QueueingService::deliver`] and [`QueueingService::client_request`]
//! drive the very same steps over a [`QsStorage`]. Its shape is the DS's
//! ([`crate::DsStep`]).
//!
//! # The protocol
//!
//! 1. [`QueueingService::start_delivery`] or [`QueueingService::start_client_request`] checks
//!    what needs no storage and returns the first [`QsStep`]. A request refused before any
//!    read (too large, malformed, misaddressed, stale) is [`QsStep::Done`] at once.
//! 2. [`QsStep::Read`]: fetch every read of [`QsReads::reads`], in that order, with any I/O
//!    you like ([`QsReads::fetch`] and [`QsReads::fetch_async`] do it over the storage
//!    traits), and pass the answers to [`QueueingService::resume`]. It returns the next step:
//!    more reads, or the decision.
//! 3. [`QsStep::Write`]: apply [`QsWrite::write_set`] atomically, as
//!    [`QsStorage::write`] does. If it applied, [`QsWrite::applied`] is the outcome to answer
//!    with. If a guard failed (a concurrent request changed the queue), pass the step to
//!    [`QueueingService::retry`]: it reads everything again, fresh, up to
//!    [`QsConfig::max_conflict_retries`](super::QsConfig::max_conflict_retries) times, and
//!    then refuses the request with `conflict`.
//! 4. [`QsStep::Done`]: the outcome, with nothing to write.
//!
//! A [`StepError`] means the answers did not fit the reads (a bug in the caller's loop) or
//! mimi-ds has a bug; nothing was written.
//!
//! # How it works
//!
//! [`QueueingService::resume`] re-runs the same request handlers as ever against a private
//! read-only store holding the answers fetched so far. A read without an answer is a *miss*;
//! the run is thrown away and its misses become the next [`QsStep::Read`]. The run with no
//! miss decides. Answers of different rounds need not come from one snapshot, just as the
//! sync path's reads do not: the write set's guards refuse it if a queue changed in between,
//! and the retry reads everything again. The checks that need no storage (decoding, the
//! addressing rules, opening each recipient's sealed queue information) run once, in
//! `start_*`, not in every run.
//!
//! * A **delivery** answers a miss speculatively as absent and goes on, so one run finds the
//!   queue of every recipient. Each queue read comes with the read of the delivery's mark on
//!   that queue, which the handler makes next when the queue exists: a delivery usually needs
//!   one read round. Deliveries draw no randomness.
//! * A **client request** stops at its first miss. Its reads form one chain (the queue, then
//!   a page from the record's first unacknowledged message; the owner's queue, then its
//!   record), so going on would find nothing more, and `create_queue` draws the new queue's
//!   ID, token and sealing randomness right after its read: a run that went on past a miss
//!   would draw randomness it then throws away, and every later draw would differ from the
//!   sync path's. Only the last run, which has every answer, draws.
//!
//! # Stats and the span of a request
//!
//! Every [`QsOutcome`] carries [`QsStats`], counted by the steps whichever driver runs them.
//! With the `tracing` feature the request's span lives in its steps and closes when the
//! outcome is decided, as the DS's does ([`crate::DsStep`]).
//!
//! # Example
//!
//! A driver loop over in-memory storage, as [`QueueingService::client_request`] runs it. A
//! `fetch` of a queue that does not exist reads the queue (one round), then is refused:
//!
//! ```
//! use mimi_ds::qs::{
//!     InMemoryQsStorage, QsConfig, QsOutcome, QsStatus, QsStep, QsStorage, QsWriteOutcome,
//!     QueueKey, QueueingService,
//! };
//! use mimi_ds::wire::{encode, ErrorCode, QsClientRequest, QsClientRequestBody};
//! use mimi_ds::UnixTimeMs;
//! use openmls_rust_crypto::RustCrypto;
//!
//! fn drive(
//!     qs: &QueueingService,
//!     now: UnixTimeMs,
//!     request: &[u8],
//!     storage: &mut InMemoryQsStorage,
//! ) -> Result<(QsOutcome, usize), Box<dyn std::error::Error>> {
//!     let mut rounds = 0;
//!     let mut step = qs.start_client_request(now, request)?;
//!     loop {
//!         step = match step {
//!             QsStep::Read(reads) => {
//!                 rounds += 1;
//!                 let fetched = reads.fetch(storage)?;
//!                 qs.resume(reads, fetched)?
//!             }
//!             QsStep::Write(write) => match storage.write(write.write_set())? {
//!                 QsWriteOutcome::Applied => return Ok((write.applied(), rounds)),
//!                 QsWriteOutcome::Conflict => qs.retry(write)?,
//!             },
//!             QsStep::Done(outcome) => return Ok((outcome, rounds)),
//!         };
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = QueueKey::derive(&[7; 32])?;
//! let qs = QueueingService::new(QsConfig::new("qs.example"), key, RustCrypto::default());
//! let now = UnixTimeMs(1_700_000_000_000);
//! let fetch = encode(&QsClientRequest {
//!     version: 1,
//!     body: QsClientRequestBody::Fetch { from_sequence: 0, max_messages: 10 },
//!     queue_id: vec![1; 16].into(),
//!     timestamp_ms: now.0,
//!     signature: Vec::new().into(),
//! })?;
//! let mut storage = InMemoryQsStorage::new();
//! let (outcome, rounds) = drive(&qs, now, &fetch, &mut storage)?;
//! assert_eq!(rounds, 1);
//! assert_eq!(outcome.status, QsStatus::Rejected(ErrorCode::UnknownQueue));
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::marker::PhantomData;

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use super::prefetched::{Answers, OnMiss, Prefetched, RunReads};
use super::{
    client, client_rejection, delivery, delivery_rejection, AsyncQsStorage, QsFailure, QsOutcome,
    QsPlan, QsStats, QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord, QueueingService,
};
use crate::error::{QsRejectReason, StepError};
use crate::storage::Infallible;
use crate::time::UnixTimeMs;
use crate::trace::{Failed, RequestSpan};
use crate::wire::QueuedMessage;
use crate::ProcessError;

/// How many read rounds one attempt may take before the step API calls it a bug. A delivery
/// needs one (each queue read comes with its mark read), a client request at most two (the
/// owner's queue, then its record; or the queue, then a page); each round answers reads the
/// round before could not, so a request that does not settle within this many is a handler
/// reading something that depends on what it read before, without end.
const MAX_READ_ROUNDS: u32 = 4;

/// What a QS request needs next.
#[derive(Debug)]
#[must_use]
pub enum QsStep<'r> {
    /// Fetch these reads and pass the answers to [`QueueingService::resume`].
    Read(QsReads<'r>),
    /// Apply this write set; then [`QsWrite::applied`], or [`QueueingService::retry`] after a
    /// conflict.
    Write(QsWrite<'r>),
    /// The request is answered; nothing (more) to write.
    Done(QsOutcome),
}

/// One read a step needs: a call of the [`QsStorage`] method of the same name with these
/// arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QsRead {
    /// [`QsStorage::queue`].
    Queue {
        /// The queue.
        queue_id: Vec<u8>,
    },
    /// [`QsStorage::queue_of_owner`].
    QueueOfOwner {
        /// The owner's signature public key.
        owner_key: Vec<u8>,
    },
    /// [`QsStorage::messages`].
    Messages {
        /// The queue.
        queue_id: Vec<u8>,
        /// The first sequence number wanted.
        from_sequence: u64,
        /// The most messages.
        limit: usize,
        /// The most bytes (beyond the first message).
        max_bytes: usize,
    },
    /// [`QsStorage::has_mark`].
    HasMark {
        /// The queue.
        queue_id: Vec<u8>,
        /// The delivery's hash.
        hash: Vec<u8>,
        /// The request's `now`: a mark expired before it does not count.
        now_ms: u64,
    },
}

/// The answer to one [`QsRead`], of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QsFetched {
    /// Answers [`QsRead::Queue`].
    Queue(Option<QueueRecord>),
    /// Answers [`QsRead::QueueOfOwner`].
    QueueOfOwner(Option<Vec<u8>>),
    /// Answers [`QsRead::Messages`].
    Messages(Vec<QueuedMessage>),
    /// Answers [`QsRead::HasMark`].
    HasMark(bool),
}

impl QsRead {
    /// Reads it from `storage`.
    pub fn fetch<S: QsStorage + ?Sized>(&self, storage: &S) -> Result<QsFetched, S::Error> {
        Ok(match self {
            Self::Queue { queue_id } => QsFetched::Queue(storage.queue(queue_id)?),
            Self::QueueOfOwner { owner_key } => {
                QsFetched::QueueOfOwner(storage.queue_of_owner(owner_key)?)
            }
            Self::Messages {
                queue_id,
                from_sequence,
                limit,
                max_bytes,
            } => QsFetched::Messages(storage.messages(
                queue_id,
                *from_sequence,
                *limit,
                *max_bytes,
            )?),
            Self::HasMark {
                queue_id,
                hash,
                now_ms,
            } => QsFetched::HasMark(storage.has_mark(queue_id, hash, *now_ms)?),
        })
    }

    /// Reads it from `storage`, asynchronously. It takes `&mut S` although reading needs only
    /// `&S`: a `&mut S` held across the await is `Send` when `S` is, so the future is `Send`
    /// for a storage that is not `Sync`.
    pub async fn fetch_async<S: AsyncQsStorage + ?Sized>(
        &self,
        storage: &mut S,
    ) -> Result<QsFetched, S::Error> {
        Ok(match self {
            Self::Queue { queue_id } => QsFetched::Queue(storage.queue(queue_id).await?),
            Self::QueueOfOwner { owner_key } => {
                QsFetched::QueueOfOwner(storage.queue_of_owner(owner_key).await?)
            }
            Self::Messages {
                queue_id,
                from_sequence,
                limit,
                max_bytes,
            } => QsFetched::Messages(
                storage
                    .messages(queue_id, *from_sequence, *limit, *max_bytes)
                    .await?,
            ),
            Self::HasMark {
                queue_id,
                hash,
                now_ms,
            } => QsFetched::HasMark(storage.has_mark(queue_id, hash, *now_ms).await?),
        })
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Queue { .. } => "queue",
            Self::QueueOfOwner { .. } => "queue_of_owner",
            Self::Messages { .. } => "messages",
            Self::HasMark { .. } => "has_mark",
        }
    }
}

impl QsFetched {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Queue(_) => "queue",
            Self::QueueOfOwner(_) => "queue_of_owner",
            Self::Messages(_) => "messages",
            Self::HasMark(_) => "has_mark",
        }
    }
}

/// A step waiting for reads: [`QsReads::reads`] to fetch, then [`QueueingService::resume`].
/// `'r` is the lifetime of the request the step was started from, as in the DS's steps.
#[must_use]
pub struct QsReads<'r> {
    pending: Pending,
    reads: Vec<QsRead>,
    request: PhantomData<&'r [u8]>,
}

impl std::fmt::Debug for QsReads<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QsReads")
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

impl QsReads<'_> {
    /// The reads, to be answered in this order.
    pub fn reads(&self) -> &[QsRead] {
        &self.reads
    }

    /// Fetches every read from `storage`, in order.
    pub fn fetch<S: QsStorage + ?Sized>(&self, storage: &S) -> Result<Vec<QsFetched>, S::Error> {
        self.reads.iter().map(|read| read.fetch(storage)).collect()
    }

    /// Fetches every read from `storage`, one after the other (`&mut S`: see
    /// [`QsRead::fetch_async`]).
    pub async fn fetch_async<S: AsyncQsStorage + ?Sized>(
        &self,
        storage: &mut S,
    ) -> Result<Vec<QsFetched>, S::Error> {
        let mut fetched = Vec::with_capacity(self.reads.len());
        for read in &self.reads {
            fetched.push(read.fetch_async(storage).await?);
        }
        Ok(fetched)
    }
}

/// A step with a write set to apply: [`QsWrite::applied`] once it applied, or
/// [`QueueingService::retry`] if storage reported a conflict.
#[must_use]
pub struct QsWrite<'r> {
    pending: Pending,
    writes: QsWriteSet,
    /// Boxed: it is large, and keeps [`QsStep`]'s variants near one size.
    outcome: Box<QsOutcome>,
    /// Every read of the run that planned the write, to read again after a conflict.
    made: Vec<QsRead>,
    request: PhantomData<&'r [u8]>,
}

impl std::fmt::Debug for QsWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QsWrite")
            .field("writes", &self.writes)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl QsWrite<'_> {
    /// The write set to apply atomically, every guard holding ([`QsStorage::write`]).
    pub fn write_set(&self) -> &QsWriteSet {
        &self.writes
    }

    /// The outcome, once the write set applied.
    pub fn applied(self) -> QsOutcome {
        self.pending.finish(*self.outcome)
    }

    /// The storage error that ended the request in a driver, noted on its span.
    fn storage_failed<E: std::error::Error + 'static>(mut self, error: E) -> ProcessError<E> {
        self.pending.meter.failed(Failed::Storage);
        ProcessError::Storage(error)
    }
}

impl QsReads<'_> {
    /// The storage error that ended the request in a driver, noted on its span.
    fn storage_failed<E: std::error::Error + 'static>(mut self, error: E) -> ProcessError<E> {
        self.pending.meter.failed(Failed::Storage);
        ProcessError::Storage(error)
    }
}

/// A request under way: what it is, and what was fetched for it in this attempt.
struct Pending {
    now_ms: u64,
    request: Request,
    answers: Answers,
    /// Write sets of this request that storage refused with a conflict.
    conflicts: u32,
    /// Read rounds of this attempt so far.
    rounds: u32,
    meter: Meter,
}

/// What a request is counted as, what it cost so far, and its span: the source of
/// [`QsStats`].
struct Meter {
    operation: &'static str,
    request_bytes: usize,
    recipients: usize,
    /// Read rounds over every attempt.
    read_rounds: u32,
    span: RequestSpan,
}

impl Meter {
    fn new(operation: &'static str, request_bytes: usize) -> Self {
        let span = RequestSpan::qs(request_bytes);
        span.operation(operation);
        Self {
            operation,
            request_bytes,
            recipients: 0,
            read_rounds: 0,
            span,
        }
    }

    fn set_operation(&mut self, operation: &'static str) {
        self.operation = operation;
        self.span.operation(operation);
    }

    /// Fills in `outcome`'s stats and records them on the span, which closes.
    fn finish(mut self, conflict_retries: u32, mut outcome: QsOutcome) -> QsOutcome {
        outcome.stats = QsStats {
            operation: self.operation,
            read_rounds: self.read_rounds,
            conflict_retries,
            request_bytes: self.request_bytes,
            response_bytes: outcome.response.len(),
            recipients: self.recipients,
            enqueued: outcome.enqueued.len(),
            invalid_recipients: outcome.invalid_recipients.len(),
            full_recipients: outcome.full_recipients.len(),
        };
        self.span.qs_outcome(&outcome.status, &outcome.stats);
        outcome
    }

    fn failed(&mut self, how: Failed) {
        self.span.failed(how);
    }
}

/// A request that passed the checks needing no storage.
enum Request {
    Delivery(delivery::Delivery),
    Client(client::ClientRequest),
}

impl Request {
    fn rejection(&self, reason: &QsRejectReason) -> QsOutcome {
        match self {
            Self::Delivery(_) => delivery_rejection(reason),
            Self::Client(_) => client_rejection(reason),
        }
    }
}

impl<C: OpenMlsCrypto + OpenMlsRand> QueueingService<C> {
    /// Starts a delivery (a `QueueingServiceRequest` from a DS; see
    /// [`QueueingService::deliver`] for `authenticated_sender`).
    pub fn start_delivery<'r>(
        &self,
        now: UnixTimeMs,
        request: &'r [u8],
        authenticated_sender: Option<&'r str>,
    ) -> Result<QsStep<'r>, StepError> {
        let mut meter = Meter::new("deliver", request.len());
        let decoded = meter
            .span
            .in_scope(|| delivery::decode::<C, Infallible>(self, request, authenticated_sender));
        match decoded {
            Ok(decoded) => {
                meter.recipients = decoded.recipients();
                self.run(Pending::new(now.0, Request::Delivery(decoded), meter))
            }
            Err(QsFailure::Reject(reason)) => {
                Ok(QsStep::Done(meter.finish(0, delivery_rejection(&reason))))
            }
            Err(QsFailure::Process(e)) => {
                meter.failed(Failed::Internal);
                Err(step_error(e))
            }
        }
    }

    /// Starts a client request (a `QSClientRequest` from one of the provider's clients).
    pub fn start_client_request<'r>(
        &self,
        now: UnixTimeMs,
        request: &'r [u8],
    ) -> Result<QsStep<'r>, StepError> {
        let mut meter = Meter::new("client_request", request.len());
        match meter
            .span
            .in_scope(|| client::decode::<C, Infallible>(self, now.0, request))
        {
            Ok(decoded) => {
                meter.set_operation(decoded.operation());
                self.run(Pending::new(now.0, Request::Client(decoded), meter))
            }
            Err(QsFailure::Reject(reason)) => {
                Ok(QsStep::Done(meter.finish(0, client_rejection(&reason))))
            }
            Err(QsFailure::Process(e)) => {
                meter.failed(Failed::Internal);
                Err(step_error(e))
            }
        }
    }

    /// Goes on with the answers to `reads`, one per read and in the same order.
    ///
    /// # Errors
    /// [`StepError::AnswersDoNotMatchReads`] if there are more or fewer answers than reads, or
    /// an answer is of another kind than its read; [`StepError::Internal`] on a bug (among
    /// them, reads that do not settle within a few rounds).
    pub fn resume<'r>(
        &self,
        reads: QsReads<'r>,
        fetched: Vec<QsFetched>,
    ) -> Result<QsStep<'r>, StepError> {
        let QsReads {
            mut pending, reads, ..
        } = reads;
        if fetched.len() != reads.len() {
            pending.meter.failed(Failed::Internal);
            return Err(StepError::AnswersDoNotMatchReads(format!(
                "{} reads, {} answers",
                reads.len(),
                fetched.len()
            )));
        }
        for (index, (read, answer)) in reads.into_iter().zip(fetched).enumerate() {
            if let Err((read, answer)) = pending.answers.insert(read, answer) {
                pending.meter.failed(Failed::Internal);
                return Err(StepError::AnswersDoNotMatchReads(format!(
                    "read {index} is a {read} read, its answer a {answer} answer"
                )));
            }
        }
        pending.rounds += 1;
        pending.meter.read_rounds += 1;
        if pending.rounds > MAX_READ_ROUNDS {
            pending.meter.failed(Failed::Internal);
            return Err(StepError::Internal(format!(
                "the reads did not settle in {MAX_READ_ROUNDS} rounds"
            )));
        }
        self.run(pending)
    }

    /// Goes on after storage refused the write set with a conflict: everything is read again,
    /// fresh. After [`QsConfig::max_conflict_retries`](super::QsConfig::max_conflict_retries)
    /// retries the request is refused with `conflict`.
    pub fn retry<'r>(&self, write: QsWrite<'r>) -> Result<QsStep<'r>, StepError> {
        let QsWrite {
            mut pending, made, ..
        } = write;
        pending.conflicts = pending.conflicts.saturating_add(1);
        if pending.conflicts > self.config.max_conflict_retries {
            let refusal = pending.request.rejection(&QsRejectReason::Conflict);
            return Ok(QsStep::Done(pending.finish(refusal)));
        }
        pending.answers = Answers::default();
        pending.rounds = 0;
        self.read_or_run(pending, made)
    }

    /// Runs the handler on what was fetched. Misses make the next read round; otherwise the
    /// handler's plan is the decision.
    fn run<'r>(&self, mut pending: Pending) -> Result<QsStep<'r>, StepError> {
        let on_miss = match pending.request {
            Request::Delivery(_) => OnMiss::Speculate,
            Request::Client(_) => OnMiss::Stop,
        };
        let store = Prefetched::new(std::mem::take(&mut pending.answers), on_miss);
        let planned = pending.meter.span.in_scope(|| match &pending.request {
            Request::Delivery(decoded) => delivery::plan(self, pending.now_ms, decoded, &store),
            Request::Client(decoded) => client::plan(self, decoded, &store),
        });
        let RunReads {
            answers,
            made,
            missed,
        } = store.finish();
        pending.answers = answers;
        if !missed.is_empty() {
            return self.read_or_run(pending, missed);
        }
        match planned {
            Ok(QsPlan {
                writes: None,
                outcome,
            }) => Ok(QsStep::Done(pending.finish(outcome))),
            Ok(QsPlan {
                writes: Some(writes),
                outcome,
            }) => Ok(QsStep::Write(QsWrite {
                pending,
                writes,
                outcome: Box::new(outcome),
                made,
                request: PhantomData,
            })),
            Err(QsFailure::Reject(reason)) => {
                let refusal = pending.request.rejection(&reason);
                Ok(QsStep::Done(pending.finish(refusal)))
            }
            Err(QsFailure::Process(e)) => {
                pending.meter.failed(Failed::Internal);
                Err(step_error(e))
            }
        }
    }

    /// The read round for `reads`, or the next run if there is nothing left to read.
    fn read_or_run<'r>(
        &self,
        pending: Pending,
        reads: Vec<QsRead>,
    ) -> Result<QsStep<'r>, StepError> {
        let reads = round(&pending, reads);
        if reads.is_empty() {
            return self.run(pending);
        }
        Ok(QsStep::Read(QsReads {
            pending,
            reads,
            request: PhantomData,
        }))
    }
}

impl Pending {
    fn new(now_ms: u64, request: Request, meter: Meter) -> Self {
        Self {
            now_ms,
            request,
            answers: Answers::default(),
            conflicts: 0,
            rounds: 0,
            meter,
        }
    }

    /// The request's outcome, with its stats; closes its span.
    fn finish(self, outcome: QsOutcome) -> QsOutcome {
        self.meter.finish(self.conflicts, outcome)
    }
}

/// The reads of one round: `reads` without those already answered, and for a delivery, with
/// each queue read followed by the read of the delivery's mark on that queue. The handler
/// reads the mark right after finding the queue, so fetching both at once saves a round trip
/// (at the price of one small read for a recipient whose queue turns out not to exist).
fn round(pending: &Pending, reads: Vec<QsRead>) -> Vec<QsRead> {
    let mut seen = HashSet::new();
    let mut round = Vec::with_capacity(reads.len());
    let mut add = |read: QsRead, round: &mut Vec<QsRead>| {
        if !pending.answers.answers(&read) && seen.insert(read.clone()) {
            round.push(read);
        }
    };
    for read in reads {
        let mark = match (&pending.request, &read) {
            (Request::Delivery(decoded), QsRead::Queue { queue_id }) => Some(QsRead::HasMark {
                queue_id: queue_id.clone(),
                hash: decoded.hash().to_vec(),
                now_ms: pending.now_ms,
            }),
            _ => None,
        };
        add(read, &mut round);
        if let Some(mark) = mark {
            add(mark, &mut round);
        }
    }
    round
}

/// A handler's process error inside a step. The step's store fails only on a miss, which
/// the run already turned into a read round, or when a handler writes, which is a bug.
fn step_error<E: std::error::Error + 'static>(error: ProcessError<E>) -> StepError {
    match error {
        ProcessError::Internal(what) => StepError::Internal(what),
        ProcessError::Storage(e) => StepError::Internal(format!("step store: {e}")),
    }
}

/// A [`StepError`] as the drivers report it: [`ProcessError::Internal`] with the same words.
pub(super) fn process_error<E: std::error::Error + 'static>(error: StepError) -> ProcessError<E> {
    match error {
        StepError::Internal(what) => ProcessError::Internal(what),
        other => other.into(),
    }
}

// The drivers: one loop over the steps, sync and async.
impl<C: OpenMlsCrypto + OpenMlsRand> QueueingService<C> {
    /// Runs `step` to its end over `storage`.
    pub(super) fn drive<S: QsStorage>(
        &self,
        mut step: QsStep<'_>,
        storage: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        loop {
            step = match step {
                QsStep::Read(reads) => match reads.fetch(storage) {
                    Ok(fetched) => self.resume(reads, fetched).map_err(process_error)?,
                    Err(error) => return Err(reads.storage_failed(error)),
                },
                QsStep::Write(write) => match storage.write(write.write_set()) {
                    Ok(QsWriteOutcome::Applied) => return Ok(write.applied()),
                    Ok(QsWriteOutcome::Conflict) => self.retry(write).map_err(process_error)?,
                    Err(error) => return Err(write.storage_failed(error)),
                },
                QsStep::Done(outcome) => return Ok(outcome),
            };
        }
    }

    /// Runs `step` to its end over `storage`, asynchronously. Holds `&mut S` across its
    /// awaits, never `&S`, so the future is `Send` whenever the storage is.
    async fn drive_async<S: AsyncQsStorage>(
        &self,
        mut step: QsStep<'_>,
        storage: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        loop {
            step = match step {
                QsStep::Read(reads) => match reads.fetch_async(storage).await {
                    Ok(fetched) => self.resume(reads, fetched).map_err(process_error)?,
                    Err(error) => return Err(reads.storage_failed(error)),
                },
                QsStep::Write(write) => match storage.write(write.write_set()).await {
                    Ok(QsWriteOutcome::Applied) => return Ok(write.applied()),
                    Ok(QsWriteOutcome::Conflict) => self.retry(write).map_err(process_error)?,
                    Err(error) => return Err(write.storage_failed(error)),
                },
                QsStep::Done(outcome) => return Ok(outcome),
            };
        }
    }

    /// [`QueueingService::deliver`] over an [`AsyncQsStorage`]: the same steps, the reads and
    /// the write awaited.
    pub async fn deliver_async<S: AsyncQsStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        authenticated_sender: Option<&str>,
        storage: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let step = self
            .start_delivery(now, request, authenticated_sender)
            .map_err(process_error)?;
        self.drive_async(step, storage).await
    }

    /// [`QueueingService::client_request`] over an [`AsyncQsStorage`]: the same steps, the
    /// reads and the write awaited.
    pub async fn client_request_async<S: AsyncQsStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let step = self
            .start_client_request(now, request)
            .map_err(process_error)?;
        self.drive_async(step, storage).await
    }
}

#[cfg(all(test, feature = "test-utils"))]
mod tests {
    use super::*;
    use crate::testing::{TestClient, TestQs};

    /// Rounds that never settle (answers to reads the handler does not make, which only a
    /// handler bug could cause: a caller answers the step's own reads) end in an internal
    /// error after [`MAX_READ_ROUNDS`] rounds instead of looping.
    #[test]
    fn read_rounds_are_bounded() {
        let qs = TestQs::new("beta.example");
        let bob = TestClient::new("bob", "phone", "beta.example");
        let fetch = bob.fetch_request(1, qs.now_ms);
        let now = UnixTimeMs(qs.now_ms);
        let Ok(QsStep::Read(mut reads)) = qs.qs.start_client_request(now, &fetch) else {
            panic!("reads first")
        };
        for round in 1..=MAX_READ_ROUNDS + 1 {
            let unrelated = QsReads {
                pending: reads.pending,
                reads: vec![QsRead::Queue {
                    queue_id: vec![round as u8],
                }],
                request: PhantomData,
            };
            match qs.qs.resume(unrelated, vec![QsFetched::Queue(None)]) {
                Ok(QsStep::Read(next)) if round <= MAX_READ_ROUNDS => reads = next,
                Err(StepError::Internal(why)) if round == MAX_READ_ROUNDS + 1 => {
                    assert!(why.contains("did not settle"), "{why}");
                    return;
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
        panic!("the rounds were not bounded");
    }
}
