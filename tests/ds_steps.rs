//! The step API of the DS (`DeliveryService::start/resume/retry`, `DsStep`) used by hand, as an
//! async server would: how many read rounds each request takes, answers that do not match the
//! reads, conflicts and the bound on retries, and that the async driver's future is `Send`.
//! The whole suite also runs through the async driver (`MIMI_DS_TEST_DRIVER=async`, `.ci/run`).

use mimi_ds::storage::{DsStorage, InMemoryStorage, RecordKind, WriteOutcome};
use mimi_ds::testing::seeded::TestCrypto;
use mimi_ds::testing::{decode_response, ds_identity, Received, TestClient, TestDs};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ErrorCode,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{
    DeliveryService, DsConfig, DsFetched, DsRead, DsStep, Outcome, RejectReason, Status, StepError,
    UnixTimeMs,
};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

/// Drives a request to its end on the DS's own storage, recording the reads of each round.
fn drive<C: OpenMlsCrypto + OpenMlsRand>(
    ds: &mut TestDs<C>,
    request: &[u8],
) -> (Outcome, Vec<Vec<DsRead>>) {
    let now = UnixTimeMs(ds.now_ms);
    let mut rounds = Vec::new();
    let mut step = ds.ds.start(now, request).expect("start");
    loop {
        step = match step {
            DsStep::Read(reads) => {
                rounds.push(reads.reads().to_vec());
                let answers = reads.fetch(&ds.storage).expect("memory");
                ds.ds.resume(reads, answers).expect("resume")
            }
            DsStep::Write(write) => match ds.storage.write(write.write_set()).expect("memory") {
                WriteOutcome::Applied => return (write.applied(), rounds),
                WriteOutcome::Conflict => ds.ds.retry(write).expect("retry"),
            },
            DsStep::Done(outcome) => return (outcome, rounds),
        }
    }
}

fn group_of_two() -> (TestDs, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "a1", "alice.example");
    let mut bob = TestClient::new("bob", "b1", "bob.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

fn kind_of(read: &DsRead) -> &'static str {
    match read {
        DsRead::Group { .. } => "group",
        DsRead::ReplayMark { .. } => "replay mark",
    }
}

/// A request's handler runs once per read round (and again after a conflict), but the
/// request's digests are computed once: its bytes are hashed once however many runs it takes
/// (src/auth.rs `RequestDigests`; hashing a large commit on every run cost a tenth of it).
#[test]
fn a_request_is_hashed_once_across_the_runs_of_its_handler() {
    let (identity, external_sender) = ds_identity("hub.example");
    let (crypto, hashes) = TestCrypto::default().recording_hashes();
    let mut ds = TestDs::with_crypto(
        DsConfig::new("hub.example"),
        identity,
        external_sender,
        crypto,
    );
    let mut alice = TestClient::new("alice", "a1", "alice.example");
    let mut bob = TestClient::new("bob", "b1", "bob.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let message = alice.message_request(b"hi", ds.now_ms);
    let update = alice.update_request(ds.now_ms);
    for request in [&message, &update] {
        let (out, rounds) = drive(&mut ds, request);
        assert_eq!(out.status, Status::Accepted);
        assert!(!rounds.is_empty(), "the handler ran more than once");
        assert_eq!(hashes.times_hashed(request), 1);
    }
}

#[test]
fn member_requests_need_one_read_round_and_name_exactly_what_they_read() {
    let (mut ds, mut alice, mut bob) = group_of_two();
    let group_id = alice.group_id();

    let request = alice.message_request(b"hi", ds.now_ms);
    let (out, rounds) = drive(&mut ds, &request);
    assert_eq!(out.status, Status::Accepted);
    assert_eq!(rounds.len(), 1, "one round trip: {rounds:?}");
    let [mark, group] = rounds[0].as_slice() else {
        panic!("a replay mark and the group: {rounds:?}")
    };
    assert!(matches!(mark, DsRead::ReplayMark { group_id: g, .. } if *g == group_id));
    assert_eq!(
        group,
        &DsRead::Group {
            group_id: group_id.clone(),
            kinds: vec![
                RecordKind::Roster,
                RecordKind::Sequencer,
                RecordKind::Activity,
                // The mark of a privacy-mode group (wire-format.md §17.6).
                RecordKind::Manifest
            ]
        },
        "an application message never reads the ratchet tree"
    );
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"hi".to_vec())]
    );

    let request = alice.update_request(ds.now_ms);
    let (out, rounds) = drive(&mut ds, &request);
    assert_eq!(out.status, Status::Accepted);
    alice.confirm_commit();
    assert_eq!(rounds.len(), 1, "a commit: one round trip: {rounds:?}");
    assert_eq!(
        rounds[0].iter().map(kind_of).collect::<Vec<_>>(),
        ["replay mark", "group"]
    );
}

#[test]
fn a_refusal_before_any_read_and_a_request_without_reads_take_no_round() {
    let mut ds = TestDs::new("hub.example");
    let (out, rounds) = drive(&mut ds, b"\x7f\x7f not a request");
    assert_eq!(out.status, Status::Rejected(ErrorCode::UnsupportedVersion));
    assert!(rounds.is_empty());

    // `request_group_id` reads nothing: `start` returns its write at once.
    let request = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode");
    let (out, rounds) = drive(&mut ds, &request);
    assert_eq!(out.status, Status::Accepted);
    assert!(rounds.is_empty(), "{rounds:?}");
    let DsResponseBody::GroupId(group_id) = decode_response(&out.response).body else {
        panic!("a group ID")
    };
    let group_id = group_id.as_slice().to_vec();

    let mut alice = TestClient::new("alice", "a1", "alice.example");
    alice.create_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(ds.now_ms);
    let (out, rounds) = drive(&mut ds, &request);
    assert_eq!(out.status, Status::Accepted);
    assert!(
        rounds.len() <= 2,
        "create_group reads the reservation, at most one more round: {rounds:?}"
    );
}

#[test]
fn answers_that_do_not_match_the_reads_are_a_step_error_and_write_nothing() {
    let (mut ds, mut alice, _bob) = group_of_two();
    let request = alice.message_request(b"hi", ds.now_ms);
    let before = ds.storage.clone();
    let now = UnixTimeMs(ds.now_ms);
    let read_step = || match ds.ds.start(now, &request).expect("start") {
        DsStep::Read(reads) => reads,
        other => panic!("reads first: {other:?}"),
    };

    let reads = read_step();
    let mut answers = reads.fetch(&ds.storage).expect("memory");
    answers.pop();
    assert!(matches!(
        ds.ds.resume(reads, answers),
        Err(StepError::AnswersDoNotMatchReads(_))
    ));

    let reads = read_step();
    let mut answers = reads.fetch(&ds.storage).expect("memory");
    answers.reverse();
    assert!(matches!(
        ds.ds.resume(reads, answers),
        Err(StepError::AnswersDoNotMatchReads(_))
    ));

    let reads = read_step();
    let answers = vec![DsFetched::ReplayMark(None); reads.reads().len()];
    assert!(matches!(
        ds.ds.resume(reads, answers),
        Err(StepError::AnswersDoNotMatchReads(_))
    ));
    assert!(ds.storage == before, "nothing was written");
    assert_eq!(ds.accept(&request).status, Status::Accepted);
}

#[test]
fn a_conflict_reads_again_and_retries_are_bounded() {
    let (mut ds, mut alice, _bob) = group_of_two();
    let retries = ds.ds.config().max_conflict_retries;
    let request = alice.update_request(ds.now_ms);
    let now = UnixTimeMs(ds.now_ms);
    let before = ds.storage.clone();
    let mut step = ds.ds.start(now, &request).expect("start");
    let mut conflicts = 0;
    let outcome = loop {
        step = match step {
            DsStep::Read(reads) => {
                let answers = reads.fetch(&ds.storage).expect("memory");
                ds.ds.resume(reads, answers).expect("resume")
            }
            // Storage reports a concurrent change every time.
            DsStep::Write(write) => {
                conflicts += 1;
                ds.ds.retry(write).expect("retry")
            }
            DsStep::Done(outcome) => break outcome,
        }
    };
    assert_eq!(conflicts, retries + 1, "the first try and every retry");
    assert_eq!(outcome.status, Status::Rejected(ErrorCode::Conflict));
    assert_eq!(outcome.refusal, Some(RejectReason::Conflict));
    assert!(ds.storage == before);
    // The request itself was fine.
    assert_eq!(ds.accept(&request).status, Status::Accepted);
}

#[test]
fn a_write_never_applied_changes_nothing() {
    let (ds, mut alice, _bob) = group_of_two();
    let request = alice.update_request(ds.now_ms);
    let before = ds.storage.clone();
    let DsStep::Read(reads) = ds.ds.start(UnixTimeMs(ds.now_ms), &request).expect("start") else {
        panic!("reads first")
    };
    let answers = reads.fetch(&ds.storage).expect("memory");
    let DsStep::Write(write) = ds.ds.resume(reads, answers).expect("resume") else {
        panic!("then the write")
    };
    // The server stops before applying: dropping the step is all there is to it.
    drop(write);
    assert!(ds.storage == before);
}

#[test]
fn the_async_drivers_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let config = DsConfig::new("hub.example");
    let (identity, _) = mimi_ds::testing::ds_identity(&config.domain);
    let ds = DeliveryService::new(config, identity, openmls_rust_crypto::RustCrypto::default());
    let mut storage = InMemoryStorage::new();
    let future = ds.process_async(UnixTimeMs(0), b"", &mut storage);
    assert_send(&future);
    let outcome = mimi_ds::testing::driver::block_on(future).expect("memory");
    assert_eq!(
        outcome.status,
        Status::Rejected(ErrorCode::MalformedRequest)
    );
    let event = mimi_ds::HubEvent::ClientDeleted {
        signature_key: vec![1; 32],
    };
    let future = ds.handle_event_async(UnixTimeMs(0), b"g", &event, &mut storage);
    assert_send(&future);
    let outcome = mimi_ds::testing::driver::block_on(future).expect("memory");
    assert_eq!(outcome.status, Status::Rejected(ErrorCode::UnknownGroup));
}

/// A storage that is `Send` but not `Sync` (a connection without internal locking).
#[derive(Default)]
struct SendOnly {
    inner: InMemoryStorage,
    reads: std::cell::Cell<u32>,
}

impl mimi_ds::storage::AsyncDsStorage for SendOnly {
    type Error = mimi_ds::storage::Infallible;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> impl std::future::Future<
        Output = Result<Option<mimi_ds::storage::GroupSnapshot>, Self::Error>,
    > + Send {
        self.reads.set(self.reads.get() + 1);
        std::future::ready(DsStorage::read(&self.inner, group_id, kinds))
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> impl std::future::Future<Output = Result<Option<mimi_ds::storage::ReplayMark>, Self::Error>>
           + Send {
        self.reads.set(self.reads.get() + 1);
        std::future::ready(DsStorage::replay_mark(&self.inner, group_id, key, now_ms))
    }

    fn write(
        &mut self,
        write_set: &mimi_ds::storage::WriteSet,
    ) -> impl std::future::Future<Output = Result<WriteOutcome, Self::Error>> + Send {
        std::future::ready(DsStorage::write(&mut self.inner, write_set))
    }
}

/// The async driver holds `&mut S`, never `&S`, across its awaits: its future is `Send` for a
/// storage that is `Send` but not `Sync`, and it reads through that storage.
#[test]
fn the_async_driver_needs_a_send_storage_only() {
    fn assert_send<T: Send>(_: &T) {}
    let (ds, mut alice, _bob) = group_of_two();
    let mut storage = SendOnly {
        inner: ds.storage.clone(),
        ..SendOnly::default()
    };
    let request = alice.message_request(b"hi", ds.now_ms);
    let future = ds
        .ds
        .process_async(UnixTimeMs(ds.now_ms), &request, &mut storage);
    assert_send(&future);
    let outcome = mimi_ds::testing::driver::block_on(future).expect("memory");
    assert_eq!(outcome.status, Status::Accepted);
    assert_eq!(storage.reads.get(), 2, "the replay mark and the group");
}
