//! The step API: [`DeliveryService::process`] cut where it does I/O, for servers whose storage
//! is async or remote.
//!
//! A request runs as a short sequence of [`DsStep`]s. Nothing in this module does I/O or
//! needs a runtime; the caller fetches what a step asks for, with whatever I/O it likes, and
//! hands the answers back (the shape of rustls's `Acceptor`/`Accepted` and raft's
//! `Ready`/`advance`):
//!
//! 1. [`DeliveryService::start`] decodes the request and returns the first step.
//! 2. [`DsStep::Read`]: fetch every [`DsRead`] of [`DsReads::reads`], in order, and pass the
//!    answers to [`DeliveryService::resume`]. Most requests need one round; a group's creation
//!    and a ReInit's successor read a reservation in a second one.
//! 3. [`DsStep::Write`]: apply [`DsWrite::write_set`] as one atomic, guarded write (the
//!    storage contract of [`crate::storage`]). If it applied, [`DsWrite::applied`] is the
//!    [`Outcome`]: its fanout reflects stored state, so deliver it now (or let a relay drain the
//!    durable outbox). If the guard did not hold, [`DeliveryService::retry`] reads again, so the
//!    request is re-validated against the state that won (the loser of a commit race gets
//!    `wrong_epoch`).
//! 4. [`DsStep::Done`]: the request ended without a write (answered, refused, or a retry of an
//!    accepted request).
//!
//! ```
//! # use mimi_ds::{DeliveryService, DsStep, ProcessError, UnixTimeMs, Outcome};
//! # use mimi_ds::storage::{DsStorage, InMemoryStorage, WriteOutcome};
//! # fn drive(ds: &DeliveryService, now: UnixTimeMs, request: &[u8],
//! #          storage: &mut InMemoryStorage)
//! #          -> Result<Outcome, ProcessError<mimi_ds::storage::Infallible>> {
//! let mut step = ds.start(now, request)?;
//! loop {
//!     step = match step {
//!         // Any I/O here: an async database, a remote store, a cache.
//!         DsStep::Read(reads) => {
//!             let answers = reads.fetch(storage).map_err(ProcessError::Storage)?;
//!             ds.resume(reads, answers)?
//!         }
//!         DsStep::Write(write) => match storage.write(write.write_set()).map_err(ProcessError::Storage)? {
//!             WriteOutcome::Applied => return Ok(write.applied()),
//!             WriteOutcome::Conflict => ds.retry(write)?,
//!         },
//!         DsStep::Done(outcome) => return Ok(outcome),
//!     }
//! }
//! # }
//! ```
//!
//! That loop is [`DeliveryService::process`]; [`DeliveryService::process_async`] is the same
//! loop over [`crate::storage::AsyncDsStorage`]. Both run the same handlers as every step does:
//! there is one code path.
//!
//! # Stats and the span of a request
//!
//! Every [`Outcome`] carries [`OutcomeStats`]: the steps count the read rounds and conflict
//! retries as the caller drives them, whichever driver it is. With the `tracing` feature, the
//! request's span is created by [`DeliveryService::start`], travels inside [`DsReads`] and
//! [`DsWrite`], and closes when the outcome is decided (the step that yields it is consumed),
//! with the stats recorded on it; it is entered only while mimi-ds runs the handler, not while
//! the caller does I/O. A request whose step is dropped closes its span as `abandoned`.
//!
//! The spans are `ds_request` and `qs_request` (target `mimi_ds`, level INFO). Their fields:
//! `operation`; `outcome` (`accepted`, `duplicate`, `rejected` with `code` the error code's
//! name, `internal_error`, `storage_error` from the built-in drivers, or `abandoned`);
//! `epoch`, `read_rounds`, `conflict_retries`, `request_bytes`, `response_bytes`,
//! `fanout_count`, `fanout_bytes` (DS); `recipients`, `enqueued`, `invalid_recipients`,
//! `full_recipients` (QS). Never a group ID, queue ID, credential, identity, key, or an
//! error's text (which may name a group): tests/tracing_spans.rs checks a whole group life.
//!
//! # How a step knows what to read
//!
//! [`DeliveryService::resume`] runs the request's handler against the answers. A read the
//! answers do not hold is noted and answered as absent, so the handler goes on and names the
//! other reads of the round; the result of such a run is discarded, and the step asks for
//! every read the run made. Only a run whose every read was answered decides, so a decision
//! always rests on answers fetched in one round. A run that misses costs what the handler does
//! before its reads (decoding and hashing the request), never a signature check or MLS
//! validation: those come after the reads (tests/cost_bounds.rs).

use crate::auth::RequestDigests;
use crate::error::{Failure, ProcessError, RejectReason, StepError};
use crate::handlers::{self, Ctx, Plan};
use crate::hub_event::HubEvent;
use crate::privacy::StateKeys;
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, ReplayMark, WriteSet};
use crate::time::UnixTimeMs;
use crate::trace::{Failed, RequestSpan};
use crate::wire::{decode_exact, DsRequest, DsResponse, DsResponseBody};
use crate::{DeliveryService, Outcome, OutcomeStats, Status};

use super::cache::{CacheAfterWrite, GroupCache};
use super::prefetched::Prefetched;
use super::privacy::{SealFailure, SealedStore};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use std::cell::RefCell;
use std::sync::Arc;

/// How many read rounds one attempt may take before the step API calls it a bug. Two are
/// needed (the reservation paths); each further round means a handler read something that
/// depends on what it read in the round before.
const MAX_READ_ROUNDS: u32 = 8;

/// Where a request stands. See the [module documentation](self).
#[derive(Debug)]
#[must_use]
pub enum DsStep<'r> {
    /// Fetch these reads, then [`DeliveryService::resume`].
    Read(DsReads<'r>),
    /// Apply this write, then [`DsWrite::applied`] or, on a conflict, [`DeliveryService::retry`].
    Write(DsWrite<'r>),
    /// The request is finished; nothing is left to write.
    Done(Outcome),
}

/// One read a step needs: a call of [`DsStorage::read`] or [`DsStorage::replay_mark`] (or their
/// async twins) with these arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsRead {
    /// [`DsStorage::read`]`(group_id, kinds)`.
    Group {
        /// The group.
        group_id: Vec<u8>,
        /// The records to read.
        kinds: Vec<RecordKind>,
    },
    /// [`DsStorage::replay_mark`]`(group_id, key, now_ms)`.
    ReplayMark {
        /// The group.
        group_id: Vec<u8>,
        /// The mark's key.
        key: Vec<u8>,
        /// The request's `now`.
        now_ms: u64,
    },
}

/// The answer to one [`DsRead`], of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsFetched {
    /// What [`DsStorage::read`] returned.
    Group(Option<GroupSnapshot>),
    /// What [`DsStorage::replay_mark`] returned.
    ReplayMark(Option<ReplayMark>),
}

impl DsRead {
    /// Performs this read on a sync storage.
    pub fn fetch<S: DsStorage + ?Sized>(&self, storage: &S) -> Result<DsFetched, S::Error> {
        Ok(match self {
            Self::Group { group_id, kinds } => DsFetched::Group(storage.read(group_id, kinds)?),
            Self::ReplayMark {
                group_id,
                key,
                now_ms,
            } => DsFetched::ReplayMark(storage.replay_mark(group_id, key, *now_ms)?),
        })
    }

    /// Performs this read on an async storage. It takes `&mut S` although reading needs only
    /// `&S`: a `&mut S` held across the await is `Send` when `S` is, so the future is `Send`
    /// for a storage that is not `Sync` (a connection without internal locking).
    pub async fn fetch_async<S: crate::storage::AsyncDsStorage + ?Sized>(
        &self,
        storage: &mut S,
    ) -> Result<DsFetched, S::Error> {
        Ok(match self {
            Self::Group { group_id, kinds } => {
                DsFetched::Group(storage.read(group_id, kinds).await?)
            }
            Self::ReplayMark {
                group_id,
                key,
                now_ms,
            } => DsFetched::ReplayMark(storage.replay_mark(group_id, key, *now_ms).await?),
        })
    }

    fn answered_by(&self, fetched: &DsFetched) -> bool {
        matches!(
            (self, fetched),
            (Self::Group { .. }, DsFetched::Group(_))
                | (Self::ReplayMark { .. }, DsFetched::ReplayMark(_))
        )
    }
}

/// A [`DsStep::Read`]: the reads to fetch before the request can go on.
#[derive(Debug)]
#[must_use]
pub struct DsReads<'r> {
    task: Task<'r>,
    reads: Vec<DsRead>,
}

impl DsReads<'_> {
    /// The reads, to be answered in this order. Fetch them from one snapshot if the backend can
    /// (one transaction); the write is guarded either way.
    pub fn reads(&self) -> &[DsRead] {
        &self.reads
    }

    /// Fetches every read from a sync storage.
    pub fn fetch<S: DsStorage + ?Sized>(&self, storage: &S) -> Result<Vec<DsFetched>, S::Error> {
        self.reads.iter().map(|read| read.fetch(storage)).collect()
    }

    /// Fetches every read from an async storage, one after the other (`&mut S`: see
    /// [`DsRead::fetch_async`]).
    pub async fn fetch_async<S: crate::storage::AsyncDsStorage + ?Sized>(
        &self,
        storage: &mut S,
    ) -> Result<Vec<DsFetched>, S::Error> {
        let mut answers = Vec::with_capacity(self.reads.len());
        for read in &self.reads {
            answers.push(read.fetch_async(storage).await?);
        }
        Ok(answers)
    }
}

/// A [`DsStep::Write`]: the one write of the request.
#[derive(Debug)]
#[must_use]
pub struct DsWrite<'r> {
    task: Task<'r>,
    /// The reads the deciding run made: what a retry reads again.
    reads: Vec<DsRead>,
    write_set: WriteSet,
    then: AfterWrite,
    /// The group state the write leaves, for the cache once it applied.
    cache_after: Option<Box<(Arc<GroupCache>, CacheAfterWrite)>>,
}

/// What the request answers once its write applied.
#[derive(Debug)]
enum AfterWrite {
    /// Accepted with this encoded response; the fanout is the write set's.
    Accept(Vec<u8>),
    /// The one refusal that writes (a `create_group` consuming its reservation).
    Refuse(Box<Outcome>),
}

impl DsWrite<'_> {
    /// The write to apply atomically, guarded as it says.
    pub fn write_set(&self) -> &WriteSet {
        &self.write_set
    }

    /// The request's outcome, once [`DsWrite::write_set`] applied. Its fanout is the write set's:
    /// stored state already reflects it.
    pub fn applied(self) -> Outcome {
        if let Some(after) = self.cache_after {
            let (cache, after) = *after;
            cache.insert(&after.group_id, after.version, after.state);
        }
        let outcome = match self.then {
            AfterWrite::Accept(response) => Outcome {
                response,
                fanout: self.write_set.fanout,
                status: Status::Accepted,
                refusal: None,
                stats: OutcomeStats::default(),
            },
            AfterWrite::Refuse(outcome) => *outcome,
        };
        self.task.finish(outcome)
    }

    /// The storage error that ended the request in a driver, noted on its span.
    pub(crate) fn storage_failed<E: std::error::Error + 'static>(
        mut self,
        error: E,
    ) -> ProcessError<E> {
        self.task.meter.failed(Failed::Storage);
        ProcessError::Storage(error)
    }
}

impl DsReads<'_> {
    /// The storage error that ended the request in a driver, noted on its span.
    pub(crate) fn storage_failed<E: std::error::Error + 'static>(
        mut self,
        error: E,
    ) -> ProcessError<E> {
        self.task.meter.failed(Failed::Storage);
        ProcessError::Storage(error)
    }
}

/// What a request is, and how far it got.
#[derive(Debug)]
struct Task<'r> {
    input: Input<'r>,
    now: UnixTimeMs,
    /// Conflicts so far.
    conflicts: u32,
    /// Read rounds of this attempt so far.
    rounds: u32,
    meter: Meter,
}

impl Task<'_> {
    /// The request's outcome, with its stats; closes its span.
    fn finish(self, outcome: Outcome) -> Outcome {
        self.meter.finish(self.conflicts, outcome)
    }
}

/// What a request is counted as, what it cost so far, and its span: the source of
/// [`OutcomeStats`].
#[derive(Debug)]
struct Meter {
    operation: &'static str,
    request_bytes: usize,
    /// Read rounds over every attempt.
    read_rounds: u32,
    span: RequestSpan,
}

impl Meter {
    fn new(operation: &'static str, request_bytes: usize) -> Self {
        let span = RequestSpan::ds(request_bytes);
        span.operation(operation);
        Self {
            operation,
            request_bytes,
            read_rounds: 0,
            span,
        }
    }

    fn set_operation(&mut self, operation: &'static str) {
        self.operation = operation;
        self.span.operation(operation);
    }

    /// Fills in `outcome`'s stats and records them on the span, which closes.
    fn finish(mut self, conflict_retries: u32, mut outcome: Outcome) -> Outcome {
        outcome.stats = OutcomeStats {
            operation: self.operation,
            read_rounds: self.read_rounds,
            conflict_retries,
            request_bytes: self.request_bytes,
            response_bytes: outcome.response.len(),
            fanout_count: outcome.fanout.len(),
            fanout_bytes: outcome
                .fanout
                .iter()
                .map(|fanout| tls_codec::Size::tls_serialized_len(&fanout.request))
                .sum(),
            epoch: match outcome.status {
                Status::Accepted | Status::Duplicate => accepted_epoch(&outcome.response),
                Status::Rejected(_) => None,
            },
        };
        self.span.ds_outcome(outcome.status, &outcome.stats);
        outcome
    }

    fn failed(&mut self, how: Failed) {
        self.span.failed(how);
    }
}

/// The epoch an `accepted` receipt names. Decoding the small receipt again is cheaper than
/// threading the epoch through every handler, and cannot disagree with what the peer reads.
fn accepted_epoch(response: &[u8]) -> Option<u64> {
    match decode_exact::<DsResponse>(response).ok()?.body {
        DsResponseBody::Accepted(receipt) => Some(receipt.epoch),
        _ => None,
    }
}

#[derive(Debug)]
enum Input<'r> {
    Request {
        bytes: &'r [u8],
        decoded: Box<DsRequest>,
        /// Kept across the runs of its handler (read rounds, conflict retries).
        digests: Box<RequestDigests>,
    },
    Event {
        group_id: &'r [u8],
        event: &'r HubEvent,
        /// The state keys of a privacy-mode group, from a member's request (wire-format.md
        /// §17.8).
        keys: Option<&'r StateKeys>,
    },
}

impl<C: OpenMlsCrypto + OpenMlsRand> DeliveryService<C> {
    /// Starts processing a request: decodes it and returns the first step. See the
    /// [module documentation](self) and [`DeliveryService::process`] for the contract.
    pub fn start<'r>(&self, now: UnixTimeMs, request: &'r [u8]) -> Result<DsStep<'r>, StepError> {
        let mut meter = Meter::new("undecodable", request.len());
        let decoded = match meter.span.in_scope(|| self.decode(request)) {
            Ok(decoded) => Box::new(decoded),
            Err(reason) => return Ok(DsStep::Done(meter.finish(0, self.reject(&reason)?))),
        };
        meter.set_operation(decoded.body.operation().request_type().name());
        self.run(
            Task {
                input: Input::Request {
                    bytes: request,
                    decoded,
                    digests: Box::default(),
                },
                now,
                conflicts: 0,
                rounds: 0,
                meter,
            },
            Vec::new(),
        )
    }

    /// Starts acting on a [`HubEvent`]; the steps of [`DeliveryService::handle_event`].
    pub fn start_event<'r>(
        &self,
        now: UnixTimeMs,
        group_id: &'r [u8],
        event: &'r HubEvent,
    ) -> Result<DsStep<'r>, StepError> {
        self.start_event_keyed(now, group_id, event, None)
    }

    /// Starts acting on a [`HubEvent`] of a privacy-mode group with the state keys of a
    /// member's request (wire-format.md §17.8); the steps of
    /// [`DeliveryService::handle_event_with_keys`].
    pub fn start_event_with_keys<'r>(
        &self,
        now: UnixTimeMs,
        group_id: &'r [u8],
        event: &'r HubEvent,
        keys: &'r StateKeys,
    ) -> Result<DsStep<'r>, StepError> {
        self.start_event_keyed(now, group_id, event, Some(keys))
    }

    fn start_event_keyed<'r>(
        &self,
        now: UnixTimeMs,
        group_id: &'r [u8],
        event: &'r HubEvent,
        keys: Option<&'r StateKeys>,
    ) -> Result<DsStep<'r>, StepError> {
        self.run(
            Task {
                input: Input::Event {
                    group_id,
                    event,
                    keys,
                },
                now,
                conflicts: 0,
                rounds: 0,
                meter: Meter::new(event.operation(), 0),
            },
            Vec::new(),
        )
    }

    /// Goes on with the answers to a [`DsStep::Read`], one per [`DsReads::reads`], in order.
    /// [`StepError::AnswersDoNotMatchReads`] if they are not.
    pub fn resume<'r>(
        &self,
        reads: DsReads<'r>,
        answers: Vec<DsFetched>,
    ) -> Result<DsStep<'r>, StepError> {
        let DsReads { mut task, reads } = reads;
        if answers.len() != reads.len() {
            task.meter.failed(Failed::Internal);
            return Err(StepError::AnswersDoNotMatchReads(format!(
                "{} reads, {} answers",
                reads.len(),
                answers.len()
            )));
        }
        if let Some(index) = reads
            .iter()
            .zip(&answers)
            .position(|(read, answer)| !read.answered_by(answer))
        {
            task.meter.failed(Failed::Internal);
            return Err(StepError::AnswersDoNotMatchReads(format!(
                "answer {index} is not of its read's kind"
            )));
        }
        task.rounds += 1;
        task.meter.read_rounds += 1;
        if task.rounds > MAX_READ_ROUNDS {
            task.meter.failed(Failed::Internal);
            return Err(StepError::Internal(format!(
                "the reads did not settle in {MAX_READ_ROUNDS} rounds"
            )));
        }
        self.run(task, reads.into_iter().zip(answers).collect())
    }

    /// Goes on after the write of a [`DsStep::Write`] did not apply because its guard did not
    /// hold: another request changed the group first. The request is read and validated again;
    /// after [`crate::DsConfig::max_conflict_retries`] conflicts it is refused with `conflict`.
    pub fn retry<'r>(&self, write: DsWrite<'r>) -> Result<DsStep<'r>, StepError> {
        let DsWrite {
            mut task, reads, ..
        } = write;
        task.conflicts += 1;
        task.rounds = 0;
        if task.conflicts > self.config.max_conflict_retries {
            let refusal = self.reject(&RejectReason::Conflict)?;
            return Ok(DsStep::Done(task.finish(refusal)));
        }
        if reads.is_empty() {
            return self.run(task, Vec::new());
        }
        Ok(DsStep::Read(DsReads { task, reads }))
    }

    /// Runs the request's handler against `answers` and turns what it decided into a step.
    /// The handler reads through the privacy-mode record layer ([`super::privacy`]), which
    /// opens a privacy-mode group's records with the request's keys and seals the write.
    fn run<'r>(
        &self,
        mut task: Task<'r>,
        answers: Vec<(DsRead, DsFetched)>,
    ) -> Result<DsStep<'r>, StepError> {
        let (keys, operation) = match &task.input {
            Input::Request { decoded, .. } => (
                decoded.body.state_keys(),
                decoded.body.operation().request_type(),
            ),
            // A hub event creates no epoch: it issues proposals. Without keys, a privacy-mode
            // group refuses it (§17.8).
            Input::Event { keys, .. } => (*keys, crate::wire::DsRequestType::Proposals),
        };
        let store = Prefetched::new(answers);
        let sealed_store = SealedStore::new(&store, &self.crypto, keys, operation);
        let (decided, cache_after) = task.meter.span.in_scope(|| match &task.input {
            Input::Request {
                bytes,
                decoded,
                digests,
            } => {
                let ctx = Ctx {
                    env: self.handler_env(keys.is_some()),
                    now: task.now,
                    request: decoded,
                    request_bytes: bytes,
                    digests,
                    cache_after: RefCell::new(None),
                };
                let decided = handlers::dispatch(&ctx, &sealed_store);
                (decided, ctx.cache_after.into_inner())
            }
            Input::Event {
                group_id, event, ..
            } => (
                handlers::hub_events::handle(
                    &self.handler_env(keys.is_some()),
                    task.now,
                    group_id,
                    event,
                    &sealed_store,
                ),
                None,
            ),
        });
        let sealer = sealed_store.finish();
        // §17.8: the group cache keeps nothing of a keyed request's group.
        let cache_after = cache_after
            .filter(|_| keys.is_none())
            .map(|after| (Arc::clone(&self.cache), after));
        let reads = store.into_reads();
        if reads.wrote {
            task.meter.failed(Failed::Internal);
            return Err(StepError::Internal("a handler wrote to storage".into()));
        }
        if reads.missed {
            return Ok(DsStep::Read(DsReads {
                task,
                reads: reads.asked,
            }));
        }
        let decided = match decided {
            Ok(Plan::Write {
                write_set,
                response,
            }) => sealer.seal(write_set).map(|write_set| Plan::Write {
                write_set,
                response,
            }),
            Ok(Plan::RefuseAfterWrite { write_set, reason }) => sealer
                .seal(write_set)
                .map(|write_set| Plan::RefuseAfterWrite { write_set, reason }),
            Ok(plan) => Ok(plan),
            Err(Failure::Reject(reason)) => Err(SealFailure::Refuse(reason)),
            Err(Failure::Process(ProcessError::Storage(failure))) => Err(failure),
            Err(Failure::Process(ProcessError::Internal(what))) => Err(SealFailure::Corrupt(what)),
        };
        Ok(match decided {
            Ok(Plan::Answer(body)) => DsStep::Done(task.finish(self.answer(body)?)),
            Ok(Plan::Duplicate(response)) => DsStep::Done(task.finish(Outcome {
                response,
                fanout: Vec::new(),
                status: Status::Duplicate,
                refusal: None,
                stats: OutcomeStats::default(),
            })),
            Ok(Plan::Write {
                write_set,
                response,
            }) => {
                // The state the write leaves carries the tag the write chained.
                let cache_after = cache_after.and_then(|(cache, mut after)| {
                    after.state.state_tag = handlers::state_tag::written(&write_set)?;
                    Some(Box::new((cache, after)))
                });
                DsStep::Write(DsWrite {
                    task,
                    reads: reads.asked,
                    write_set,
                    then: AfterWrite::Accept(response),
                    cache_after,
                })
            }
            Ok(Plan::RefuseAfterWrite { write_set, reason }) => DsStep::Write(DsWrite {
                task,
                reads: reads.asked,
                write_set,
                then: AfterWrite::Refuse(Box::new(self.reject(&reason)?)),
                cache_after: None,
            }),
            Err(SealFailure::Refuse(reason)) => DsStep::Done(task.finish(self.reject(&reason)?)),
            Err(SealFailure::Corrupt(what)) => {
                task.meter.failed(Failed::Internal);
                return Err(StepError::Internal(name_the_group(what, &reads.asked)));
            }
        })
    }
}

/// An internal error names the group it happened in, so that an operator can find a group whose
/// stored records do not decode (corrupt storage) without a debugger: the group of the run's
/// first group read.
fn name_the_group(what: String, asked: &[DsRead]) -> String {
    match asked.iter().find_map(|read| match read {
        DsRead::Group { group_id, .. } => Some(group_id),
        DsRead::ReplayMark { .. } => None,
    }) {
        Some(group_id) => format!("group {}: {what}", crate::storage::id_hex(group_id)),
        None => what,
    }
}

#[cfg(all(test, feature = "test-utils"))]
mod tests {
    use super::*;
    use crate::testing::{TestClient, TestDs};

    /// A caller that keeps answering reads the run does not make never lets a request settle:
    /// after [`MAX_READ_ROUNDS`] rounds the step API calls it a bug instead of looping.
    #[test]
    fn read_rounds_are_bounded() {
        let mut ds = TestDs::new("hub.example");
        let mut alice = TestClient::new("alice", "a1", "alice.example");
        ds.create_group_with(&mut alice, &mut []);
        let request = alice.message_request(b"hi", ds.now_ms);
        let DsStep::Read(mut reads) = ds.ds.start(UnixTimeMs(ds.now_ms), &request).unwrap() else {
            panic!("reads first")
        };
        for round in 1..=MAX_READ_ROUNDS + 1 {
            // Answer a read the handler never makes, instead of the ones it asked for.
            let unrelated = DsRead::ReplayMark {
                group_id: b"another group".to_vec(),
                key: vec![round as u8],
                now_ms: 0,
            };
            let bogus = DsReads {
                task: reads.task,
                reads: vec![unrelated],
            };
            match ds.ds.resume(bogus, vec![DsFetched::ReplayMark(None)]) {
                Ok(DsStep::Read(next)) if round <= MAX_READ_ROUNDS => reads = next,
                Err(StepError::Internal(_)) if round == MAX_READ_ROUNDS + 1 => return,
                other => panic!("round {round}: {other:?}"),
            }
        }
        panic!("the rounds were not bounded");
    }
}
