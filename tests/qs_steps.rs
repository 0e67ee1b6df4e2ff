//! The Queueing Service's step API used by hand (`mimi_ds::qs::steps`): the reads a request
//! needs, answers that do not fit the reads, conflicts and their retries, two deliveries
//! racing for one queue, and the async drivers' futures being `Send`. Every delivery carries
//! a real MLS message from a real hub; every client request is signed by a real client.

use std::cell::Cell;
use std::future::{ready, Future};

use mimi_ds::qs::{
    AsyncQsStorage, InMemoryQsStorage, QsChange, QsConfig, QsFetched, QsOutcome, QsRead, QsReads,
    QsStatus, QsStep, QsStorage, QsWrite, QsWriteOutcome, QsWriteSet, QueueRecord, QueueingService,
};
use mimi_ds::storage::Infallible;
use mimi_ds::testing::driver::block_on;
use mimi_ds::testing::seeded::{seed, TestCrypto};
use mimi_ds::testing::{Received, TestClient, TestDs, TestQs};
use mimi_ds::wire::{decode_exact, DsResponse, DsResponseBody, ErrorCode, QueuedMessage};
use mimi_ds::{Fanout, QsRejectReason, StepError, UnixTimeMs};
use openmls_traits::random::OpenMlsRand;

const HUB: &str = "hub.example";
const ALPHA: &str = "alpha.example";
const BETA: &str = "beta.example";

/// A hub, Alice at alpha and Bob at beta (configured by `config`) in one group, each with a
/// queue sealed for the hub.
struct World {
    ds: TestDs,
    beta: TestQs,
    alice: TestClient,
    bob: TestClient,
}

fn world(config: QsConfig) -> World {
    let mut ds = TestDs::new(HUB);
    let mut alpha = TestQs::new(ALPHA);
    let mut beta = TestQs::with_config(config);
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    alpha.connect(&mut alice, HUB);
    beta.connect(&mut bob, HUB);
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    World {
        ds,
        beta,
        alice,
        bob,
    }
}

/// Alice sends `text`; the delivery to beta, as bytes.
fn send(w: &mut World, text: &[u8]) -> Vec<u8> {
    let out = w.ds.process(&w.alice.message_request(text, w.ds.now_ms));
    out.fanout
        .iter()
        .find(|f| f.destination == BETA)
        .map(Fanout::to_bytes)
        .expect("a fanout to beta")
}

fn bob_queue(w: &World) -> Vec<u8> {
    w.bob
        .qs_queue
        .as_ref()
        .expect("bob has a queue")
        .queue_id
        .as_slice()
        .to_vec()
}

fn now(w: &World) -> UnixTimeMs {
    UnixTimeMs(w.beta.now_ms)
}

fn expect_read(step: QsStep<'_>) -> QsReads<'_> {
    match step {
        QsStep::Read(reads) => reads,
        other => panic!("expected reads, got {other:?}"),
    }
}

fn expect_write(step: QsStep<'_>) -> QsWrite<'_> {
    match step {
        QsStep::Write(write) => write,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn expect_done(step: QsStep<'_>) -> QsOutcome {
    match step {
        QsStep::Done(outcome) => outcome,
        other => panic!("expected the outcome, got {other:?}"),
    }
}

/// The sequence numbers a write set enqueues.
fn enqueued_sequences(write: &QsWrite<'_>) -> Vec<u64> {
    write
        .write_set()
        .changes
        .iter()
        .filter_map(|change| match change {
            QsChange::Enqueue { message, .. } => Some(message.sequence_number),
            _ => None,
        })
        .collect()
}

#[test]
fn a_delivery_to_a_fresh_queue_needs_one_read_round_and_decides_as_the_sync_driver() {
    let mut w = world(QsConfig::new(BETA));
    let delivery = send(&mut w, b"hello");
    let queue = bob_queue(&w);
    let before = w.beta.storage.clone();

    // One round: the queue, and the delivery's mark on it, which the handler reads next.
    let reads = expect_read(w.beta.qs.start_delivery(now(&w), &delivery, None).unwrap());
    match reads.reads() {
        [QsRead::Queue { queue_id }, QsRead::HasMark {
            queue_id: marked,
            now_ms,
            ..
        }] => {
            assert_eq!((queue_id, marked), (&queue, &queue));
            assert_eq!(*now_ms, w.beta.now_ms);
        }
        other => panic!("expected the queue and its mark, got {other:?}"),
    }
    let fetched = reads.fetch(&w.beta.storage).unwrap();
    assert_eq!(
        fetched,
        vec![
            QsFetched::Queue(QsStorage::queue(&w.beta.storage, &queue).unwrap()),
            QsFetched::HasMark(false)
        ]
    );
    let write = expect_write(w.beta.qs.resume(reads, fetched).unwrap());
    assert_eq!(enqueued_sequences(&write), vec![0]);
    assert_eq!(w.beta.storage, before, "the steps read, the caller writes");
    assert_eq!(
        QsStorage::write(&mut w.beta.storage, write.write_set()).unwrap(),
        QsWriteOutcome::Applied
    );
    let by_hand = write.applied();
    assert_eq!(by_hand.status, QsStatus::Accepted);
    assert_eq!(by_hand.enqueued, vec![queue.clone()]);

    // The sync driver makes the same decision on the same state.
    let mut synced = before.clone();
    let sync = w
        .beta
        .qs
        .deliver(now(&w), &delivery, None, &mut synced)
        .unwrap();
    assert_eq!(sync, by_hand);
    assert_eq!(synced, w.beta.storage);

    // A redelivery: again one round, answered from the mark, nothing to write.
    let reads = expect_read(w.beta.qs.start_delivery(now(&w), &delivery, None).unwrap());
    let fetched = reads.fetch(&w.beta.storage).unwrap();
    assert_eq!(fetched[1], QsFetched::HasMark(true));
    let again = expect_done(w.beta.qs.resume(reads, fetched).unwrap());
    assert_eq!(again.status, QsStatus::Duplicate);

    assert_eq!(w.beta.fetch_into(&mut w.bob), 1);
    assert_eq!(
        w.bob.process_inbox(),
        vec![Received::Application(b"hello".to_vec())]
    );
}

#[test]
fn a_fetch_reads_the_queue_then_the_page() {
    let mut w = world(QsConfig::new(BETA));
    let delivery = send(&mut w, b"page");
    let _ = w.beta.deliver(&decode_fanout(&delivery));
    let queue = bob_queue(&w);
    let fetch = w.bob.fetch_request(10, w.beta.now_ms);

    // A client request's reads are a chain: the queue (to check the owner's signature), then
    // the page from the record's first unacknowledged message.
    let reads = expect_read(w.beta.qs.start_client_request(now(&w), &fetch).unwrap());
    assert_eq!(
        reads.reads(),
        [QsRead::Queue {
            queue_id: queue.clone()
        }]
    );
    let fetched = reads.fetch(&w.beta.storage).unwrap();
    let reads = expect_read(w.beta.qs.resume(reads, fetched).unwrap());
    let [QsRead::Messages {
        queue_id,
        from_sequence: 0,
        limit: 10,
        ..
    }] = reads.reads()
    else {
        panic!("expected the page, got {:?}", reads.reads());
    };
    assert_eq!(queue_id, &queue);
    let fetched = reads.fetch(&w.beta.storage).unwrap();
    let outcome = expect_done(w.beta.qs.resume(reads, fetched).unwrap());
    assert_eq!(outcome, w.beta.client_request(&fetch));
    let (count, remaining) = w.bob.take_page(&outcome.response);
    assert_eq!((count, remaining), (1, 0));
    assert_eq!(
        w.bob.process_inbox(),
        vec![Received::Application(b"page".to_vec())]
    );
}

fn decode_fanout(bytes: &[u8]) -> Fanout {
    Fanout {
        destination: BETA.to_string(),
        request: decode_exact(bytes).expect("a QueueingServiceRequest"),
    }
}

#[test]
fn answers_that_do_not_match_the_reads_are_refused_and_nothing_is_written() {
    let mut w = world(QsConfig::new(BETA));
    let delivery = send(&mut w, b"hello");
    let before = w.beta.storage.clone();
    let start = |w: &World| expect_read(w.beta.qs.start_delivery(now(w), &delivery, None).unwrap());
    let mismatch = |result: Result<QsStep<'_>, StepError>| match result {
        Err(StepError::AnswersDoNotMatchReads(why)) => why,
        other => panic!("expected AnswersDoNotMatchReads, got {other:?}"),
    };

    // Too few answers, and too many.
    let reads = start(&w);
    let mut fetched = reads.fetch(&w.beta.storage).unwrap();
    fetched.pop();
    let why = mismatch(w.beta.qs.resume(reads, fetched));
    assert!(why.contains("2 reads, 1 answers"), "{why}");
    let reads = start(&w);
    let mut fetched = reads.fetch(&w.beta.storage).unwrap();
    fetched.push(QsFetched::HasMark(false));
    mismatch(w.beta.qs.resume(reads, fetched));

    // The right number, in the wrong order: each answer is of another kind than its read.
    let reads = start(&w);
    let mut fetched = reads.fetch(&w.beta.storage).unwrap();
    fetched.reverse();
    let why = mismatch(w.beta.qs.resume(reads, fetched));
    assert!(why.contains("read 0 is a queue read"), "{why}");

    // An answer of a kind no read of the request has.
    let reads = start(&w);
    let fetched = vec![
        QsFetched::Messages(Vec::<QueuedMessage>::new()),
        QsFetched::HasMark(false),
    ];
    mismatch(w.beta.qs.resume(reads, fetched));

    assert_eq!(w.beta.storage, before, "nothing was written");
    // The request itself was fine: answered properly, it is served.
    let reads = start(&w);
    let fetched = reads.fetch(&w.beta.storage).unwrap();
    let write = expect_write(w.beta.qs.resume(reads, fetched).unwrap());
    assert_eq!(enqueued_sequences(&write), vec![0]);
}

#[test]
fn a_conflict_is_retried_with_fresh_reads_and_decides_as_the_sync_driver() {
    let mut w = world(QsConfig::new(BETA));
    let first = send(&mut w, b"one");
    let second = send(&mut w, b"two");
    let queue = bob_queue(&w);

    // `second` plans its enqueue on the queue as it is...
    let reads = expect_read(w.beta.qs.start_delivery(now(&w), &second, None).unwrap());
    let planned_reads = reads.reads().to_vec();
    let fetched = reads.fetch(&w.beta.storage).unwrap();
    let write = expect_write(w.beta.qs.resume(reads, fetched).unwrap());
    assert_eq!(enqueued_sequences(&write), vec![0]);

    // ...then another server enqueues `first` before `second`'s write lands.
    let _ = w.beta.deliver(&decode_fanout(&first));
    let after_rival = w.beta.storage.clone();
    assert_eq!(
        QsStorage::write(&mut w.beta.storage, write.write_set()).unwrap(),
        QsWriteOutcome::Conflict
    );
    assert_eq!(w.beta.storage, after_rival, "a conflict changes nothing");

    // The retry reads everything again, fresh, and plans the next sequence number.
    let reads = expect_read(w.beta.qs.retry(write).unwrap());
    assert_eq!(reads.reads(), planned_reads.as_slice());
    let fetched = reads.fetch(&w.beta.storage).unwrap();
    let QsFetched::Queue(Some(QueueRecord { next_sequence, .. })) = &fetched[0] else {
        panic!("expected bob's queue, got {:?}", fetched[0]);
    };
    assert_eq!(*next_sequence, 1, "the retry sees the rival's enqueue");
    let write = expect_write(w.beta.qs.resume(reads, fetched).unwrap());
    assert_eq!(enqueued_sequences(&write), vec![1]);
    assert_eq!(
        QsStorage::write(&mut w.beta.storage, write.write_set()).unwrap(),
        QsWriteOutcome::Applied
    );
    let by_hand = write.applied();

    // The sync driver, on the state the retry read, decides the same.
    let mut synced = after_rival;
    let sync = w
        .beta
        .qs
        .deliver(now(&w), &second, None, &mut synced)
        .unwrap();
    // The same decision; only the cost differs: the hand-driven request retried once.
    assert_eq!(
        (by_hand.stats.conflict_retries, by_hand.stats.read_rounds),
        (1, 2)
    );
    assert_eq!(
        (sync.stats.conflict_retries, sync.stats.read_rounds),
        (0, 1)
    );
    let mut by_hand_but_cost = by_hand.clone();
    by_hand_but_cost.stats = sync.stats;
    assert_eq!(sync, by_hand_but_cost);
    assert_eq!(synced, w.beta.storage);
    assert_eq!(by_hand.enqueued, vec![queue]);
}

/// A storage whose every write meets a concurrent change: reads as the inner store, refuses
/// every write set with a conflict, and counts them.
struct AlwaysConflicts {
    inner: InMemoryQsStorage,
    writes: u32,
}

impl QsStorage for AlwaysConflicts {
    type Error = Infallible;
    fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, Infallible> {
        QsStorage::queue(&self.inner, queue_id)
    }
    fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        QsStorage::queue_of_owner(&self.inner, owner_key)
    }
    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, Infallible> {
        QsStorage::messages(&self.inner, queue_id, from_sequence, limit, max_bytes)
    }
    fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, Infallible> {
        QsStorage::has_mark(&self.inner, queue_id, hash, now_ms)
    }
    fn write(&mut self, _writes: &QsWriteSet) -> Result<QsWriteOutcome, Infallible> {
        self.writes += 1;
        Ok(QsWriteOutcome::Conflict)
    }
}

impl AsyncQsStorage for AlwaysConflicts {
    type Error = Infallible;
    fn queue(
        &self,
        queue_id: &[u8],
    ) -> impl Future<Output = Result<Option<QueueRecord>, Infallible>> + Send {
        ready(QsStorage::queue(self, queue_id))
    }
    fn queue_of_owner(
        &self,
        owner_key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Infallible>> + Send {
        ready(QsStorage::queue_of_owner(self, owner_key))
    }
    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>, Infallible>> + Send {
        ready(QsStorage::messages(
            self,
            queue_id,
            from_sequence,
            limit,
            max_bytes,
        ))
    }
    fn has_mark(
        &self,
        queue_id: &[u8],
        hash: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(QsStorage::has_mark(self, queue_id, hash, now_ms))
    }
    fn write(
        &mut self,
        writes: &QsWriteSet,
    ) -> impl Future<Output = Result<QsWriteOutcome, Infallible>> + Send {
        ready(QsStorage::write(self, writes))
    }
}

fn assert_refused_for_conflict(outcome: &QsOutcome) {
    assert_eq!(outcome.status, QsStatus::Rejected(ErrorCode::Conflict));
    assert_eq!(outcome.refusal, Some(QsRejectReason::Conflict));
    assert!(outcome.enqueued.is_empty());
    let response: DsResponse = decode_exact(&outcome.response).expect("a DSResponse");
    assert!(
        matches!(response.body, DsResponseBody::Error(ref e) if e.code == ErrorCode::Conflict),
        "{response:?}"
    );
}

#[test]
fn after_max_conflict_retries_the_request_is_refused_with_conflict() {
    let mut config = QsConfig::new(BETA);
    config.max_conflict_retries = 2;
    let mut w = world(config);
    let delivery = send(&mut w, b"contended");
    let before = w.beta.storage.clone();

    // By hand: every write set meets a conflict; the first attempt and two retries plan a
    // write, the third retry gives up.
    let mut step = w.beta.qs.start_delivery(now(&w), &delivery, None).unwrap();
    let mut planned = 0;
    let outcome = loop {
        step = match step {
            QsStep::Read(reads) => {
                let fetched = reads.fetch(&w.beta.storage).unwrap();
                w.beta.qs.resume(reads, fetched).unwrap()
            }
            QsStep::Write(write) => {
                planned += 1;
                w.beta.qs.retry(write).unwrap()
            }
            QsStep::Done(outcome) => break outcome,
        };
    };
    assert_eq!(planned, 3);
    assert_refused_for_conflict(&outcome);

    // The sync and the async driver stop at the same point.
    let mut contended = AlwaysConflicts {
        inner: before.clone(),
        writes: 0,
    };
    let sync = w
        .beta
        .qs
        .deliver(now(&w), &delivery, None, &mut contended)
        .unwrap();
    assert_eq!(sync, outcome);
    assert_eq!(contended.writes, 3);
    let mut contended = AlwaysConflicts {
        inner: before.clone(),
        writes: 0,
    };
    let asynced = block_on(
        w.beta
            .qs
            .deliver_async(now(&w), &delivery, None, &mut contended),
    )
    .unwrap();
    assert_eq!(asynced, outcome);
    assert_eq!(contended.writes, 3);
    assert_eq!(contended.inner, before);
    assert_eq!(w.beta.storage, before);
}

#[test]
fn two_deliveries_racing_for_one_queue_through_the_steps_both_land_in_order() {
    let mut w = world(QsConfig::new(BETA));
    let first = send(&mut w, b"one");
    let second = send(&mut w, b"two");

    // Both servers read the queue as it is and plan sequence number 0.
    let (qs, now) = (&w.beta.qs, now(&w));
    let reads_a = expect_read(qs.start_delivery(now, &first, None).unwrap());
    let reads_b = expect_read(qs.start_delivery(now, &second, None).unwrap());
    let fetched_a = reads_a.fetch(&w.beta.storage).unwrap();
    let fetched_b = reads_b.fetch(&w.beta.storage).unwrap();
    let write_a = expect_write(qs.resume(reads_a, fetched_a).unwrap());
    let write_b = expect_write(qs.resume(reads_b, fetched_b).unwrap());
    assert_eq!(enqueued_sequences(&write_a), vec![0]);
    assert_eq!(enqueued_sequences(&write_b), vec![0]);

    // A lands; B's guard fails, B retries on fresh reads and takes the next number.
    assert_eq!(
        QsStorage::write(&mut w.beta.storage, write_a.write_set()).unwrap(),
        QsWriteOutcome::Applied
    );
    assert_eq!(write_a.applied().status, QsStatus::Accepted);
    assert_eq!(
        QsStorage::write(&mut w.beta.storage, write_b.write_set()).unwrap(),
        QsWriteOutcome::Conflict
    );
    let reads_b = expect_read(qs.retry(write_b).unwrap());
    let fetched_b = reads_b.fetch(&w.beta.storage).unwrap();
    let write_b = expect_write(qs.resume(reads_b, fetched_b).unwrap());
    assert_eq!(enqueued_sequences(&write_b), vec![1]);
    assert_eq!(
        QsStorage::write(&mut w.beta.storage, write_b.write_set()).unwrap(),
        QsWriteOutcome::Applied
    );
    assert_eq!(write_b.applied().status, QsStatus::Accepted);

    assert_eq!(w.beta.fetch_into(&mut w.bob), 2);
    assert_eq!(
        w.bob.process_inbox(),
        vec![
            Received::Application(b"one".to_vec()),
            Received::Application(b"two".to_vec())
        ]
    );
}

#[test]
fn two_create_queue_requests_racing_for_one_owner_key_end_with_one_queue() {
    let mut beta = TestQs::new(BETA);
    let carol = TestClient::new("carol", "phone", BETA);
    let create = carol.create_queue_request(beta.now_ms);
    let now = UnixTimeMs(beta.now_ms);

    // Both see no queue for the key and plan one each.
    let qs = &beta.qs;
    let reads_a = expect_read(qs.start_client_request(now, &create).unwrap());
    let reads_b = expect_read(qs.start_client_request(now, &create).unwrap());
    assert!(matches!(reads_a.reads(), [QsRead::QueueOfOwner { .. }]));
    let fetched_a = reads_a.fetch(&beta.storage).unwrap();
    let fetched_b = reads_b.fetch(&beta.storage).unwrap();
    let write_a = expect_write(qs.resume(reads_a, fetched_a).unwrap());
    let write_b = expect_write(qs.resume(reads_b, fetched_b).unwrap());
    assert_eq!(
        QsStorage::write(&mut beta.storage, write_a.write_set()).unwrap(),
        QsWriteOutcome::Applied
    );
    let created = carol.open_queue_created(&write_a.applied().response);
    assert_eq!(
        QsStorage::write(&mut beta.storage, write_b.write_set()).unwrap(),
        QsWriteOutcome::Conflict
    );

    // The loser reads again, finds the winner's queue and answers with it, as the sync driver
    // does for a second create_queue.
    let after_winner = beta.storage.clone();
    let reads_b = expect_read(qs.retry(write_b).unwrap());
    let fetched_b = reads_b.fetch(&beta.storage).unwrap();
    assert_eq!(
        fetched_b,
        vec![QsFetched::QueueOfOwner(Some(
            created.queue_id.as_slice().to_vec()
        ))]
    );
    let reads_b = expect_read(qs.resume(reads_b, fetched_b).unwrap());
    let fetched_b = reads_b.fetch(&beta.storage).unwrap();
    let loser = expect_done(qs.resume(reads_b, fetched_b).unwrap());
    assert_eq!(loser.status, QsStatus::Duplicate);
    assert_eq!(carol.open_queue_created(&loser.response), created);
    let sync = beta.client_request(&create);
    assert_eq!(sync.status, QsStatus::Duplicate);
    assert_eq!(carol.open_queue_created(&sync.response), created);
    assert_eq!(beta.storage, after_winner);
    assert_eq!(beta.storage.queue_count(), 1);
}

/// `create_queue` draws the queue ID and token only in the run that has every answer: a run
/// that went on past its read would draw randomness it then throws away, and the queue would
/// get later draws than the sync path gives it (and the golden vectors would change).
#[test]
fn create_queue_draws_its_randomness_once_after_its_reads() {
    let seed = seed("qs-steps");
    let mut beta = TestQs::seeded(QsConfig::new(BETA), seed);
    let carol = TestClient::new("carol", "phone", BETA);
    let create = carol.create_queue_request(beta.now_ms);

    // What the QS's RNG hands out: its queue key's seed, then the queue ID, then the token.
    let reference = TestCrypto::seeded(seed);
    let _key_seed = reference.random_vec(32).unwrap();
    let queue_id = reference.random_vec(16).unwrap();
    let token = reference.random_vec(32).unwrap();

    let now = UnixTimeMs(beta.now_ms);
    let reads = expect_read(beta.qs.start_client_request(now, &create).unwrap());
    let fetched = reads.fetch(&beta.storage).unwrap();
    let write = expect_write(beta.qs.resume(reads, fetched).unwrap());
    assert_eq!(
        QsStorage::write(&mut beta.storage, write.write_set()).unwrap(),
        QsWriteOutcome::Applied
    );
    let created = carol.open_queue_created(&write.applied().response);
    assert_eq!(created.queue_id.as_slice(), queue_id.as_slice());
    assert_eq!(created.fanout_auth_token.as_slice(), token.as_slice());
}

/// A storage that is `Send` but not `Sync` (a connection without internal locking).
#[derive(Default)]
struct SendOnly {
    inner: InMemoryQsStorage,
    calls: Cell<u32>,
}

impl AsyncQsStorage for SendOnly {
    type Error = Infallible;
    fn queue(
        &self,
        queue_id: &[u8],
    ) -> impl Future<Output = Result<Option<QueueRecord>, Infallible>> + Send {
        self.calls.set(self.calls.get() + 1);
        ready(QsStorage::queue(&self.inner, queue_id))
    }
    fn queue_of_owner(
        &self,
        owner_key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Infallible>> + Send {
        self.calls.set(self.calls.get() + 1);
        ready(QsStorage::queue_of_owner(&self.inner, owner_key))
    }
    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>, Infallible>> + Send {
        self.calls.set(self.calls.get() + 1);
        ready(QsStorage::messages(
            &self.inner,
            queue_id,
            from_sequence,
            limit,
            max_bytes,
        ))
    }
    fn has_mark(
        &self,
        queue_id: &[u8],
        hash: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Infallible>> + Send {
        self.calls.set(self.calls.get() + 1);
        ready(QsStorage::has_mark(&self.inner, queue_id, hash, now_ms))
    }
    fn write(
        &mut self,
        writes: &QsWriteSet,
    ) -> impl Future<Output = Result<QsWriteOutcome, Infallible>> + Send {
        ready(QsStorage::write(&mut self.inner, writes))
    }
}

fn assert_send<T: Send>(_: T) {}

/// Compile-time: the async drivers' futures can be spawned on a multi-threaded runtime when
/// the storage is `Send`, even if it is not `Sync`.
#[test]
fn the_async_drivers_futures_are_send() {
    let qs: QueueingService = TestQs::new(BETA).qs;
    let now = UnixTimeMs(0);
    let mut memory = InMemoryQsStorage::new();
    assert_send(qs.deliver_async(now, b"", None, &mut memory));
    assert_send(qs.client_request_async(now, b"", &mut memory));
    let mut send_only = SendOnly::default();
    assert_send(qs.deliver_async(now, b"", Some(HUB), &mut send_only));
    assert_send(qs.client_request_async(now, b"", &mut send_only));

    // And the futures run: a fetch of an unknown queue reads it once, then is refused.
    let bob = TestClient::new("bob", "phone", BETA);
    let fetch = bob.fetch_request(1, now.0);
    let outcome = block_on(qs.client_request_async(now, &fetch, &mut send_only)).unwrap();
    assert_eq!(outcome.status, QsStatus::Rejected(ErrorCode::UnknownQueue));
    assert_eq!(send_only.calls.get(), 1);
}
