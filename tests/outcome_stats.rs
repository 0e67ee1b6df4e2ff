//! `Outcome::stats` and `QsOutcome::stats`: what a request was and what it cost, filled by the
//! steps whichever driver runs them. Checked for a real message, a real commit, a commit whose
//! write conflicts once (and one that conflicts until it is refused), a request that does not
//! decode, a hub event, and the QS's delivery and fetch of the message.

use mimi_ds::qs::QsStatus;
use mimi_ds::storage::{DsStorage, WriteOutcome};
use mimi_ds::testing::{accepted_message, Received, TestClient, TestDs, TestQs};
use mimi_ds::wire::ErrorCode;
use mimi_ds::{DsStep, HubEvent, Outcome, Status, UnixTimeMs};

const HUB: &str = "hub.example";
const ALPHA: &str = "alpha.example";
const BETA: &str = "beta.example";

/// Encoded size of every delivery of `out`, together.
fn fanout_bytes(out: &Outcome) -> usize {
    out.fanout.iter().map(|f| f.to_bytes().len()).sum()
}

/// Drives `request` through the step API, reporting a conflict for the first `conflicts`
/// writes.
fn drive_with_conflicts(ds: &mut TestDs, request: &[u8], conflicts: u32) -> Outcome {
    let mut left = conflicts;
    let mut step = ds.ds.start(UnixTimeMs(ds.now_ms), request).expect("start");
    loop {
        step = match step {
            DsStep::Read(reads) => {
                let answers = reads.fetch(&ds.storage).expect("memory");
                ds.ds.resume(reads, answers).expect("resume")
            }
            DsStep::Write(write) if left > 0 => {
                left -= 1;
                ds.ds.retry(write).expect("retry")
            }
            DsStep::Write(write) => match ds.storage.write(write.write_set()).expect("memory") {
                WriteOutcome::Applied => return write.applied(),
                WriteOutcome::Conflict => ds.ds.retry(write).expect("retry"),
            },
            DsStep::Done(outcome) => return outcome,
        }
    }
}

#[test]
fn a_message_and_its_delivery_report_operation_rounds_sizes_fanout_and_epoch() {
    let mut ds = TestDs::new(HUB);
    let mut alpha = TestQs::new(ALPHA);
    let mut beta = TestQs::new(BETA);
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    alpha.connect(&mut alice, HUB);
    beta.connect(&mut bob, HUB);
    ds.create_group_with(&mut alice, &mut [&mut bob]);

    let request = alice.message_request(b"hello", ds.now_ms);
    let out = ds.process(&request);
    let receipt = accepted_message(&out);
    let stats = out.stats;
    assert_eq!(stats.operation, "send_message");
    assert_eq!(
        stats.read_rounds, 1,
        "the replay mark and the group, in one round"
    );
    assert_eq!(stats.conflict_retries, 0);
    assert_eq!(stats.request_bytes, request.len());
    assert_eq!(stats.response_bytes, out.response.len());
    assert_eq!(
        stats.fanout_count, 1,
        "one delivery, to bob's beta; none to the sender"
    );
    assert_eq!(stats.fanout_count, out.fanout.len());
    assert_eq!(stats.fanout_bytes, fanout_bytes(&out));
    assert_eq!(stats.epoch, Some(receipt.epoch));
    assert_eq!(
        receipt.epoch, 1,
        "the group was created, then bob was added"
    );

    // A byte-identical retry repeats the answer: no fanout, the same epoch.
    let again = ds.process(&request);
    assert_eq!(again.status, Status::Duplicate);
    assert_eq!(again.stats.operation, "send_message");
    assert_eq!(again.stats.fanout_count, 0);
    assert_eq!(again.stats.fanout_bytes, 0);
    assert_eq!(again.stats.epoch, Some(1));

    // beta's QS takes the delivery for bob.
    let to_beta = out
        .fanout
        .iter()
        .find(|f| f.destination == BETA)
        .expect("a delivery to beta");
    let delivered = beta.deliver(to_beta);
    assert_eq!(delivered.status, QsStatus::Accepted);
    let stats = delivered.stats;
    assert_eq!(stats.operation, "deliver");
    assert_eq!(stats.recipients, to_beta.request.recipients.len());
    assert_eq!(stats.recipients, 1);
    assert_eq!(stats.enqueued, 1);
    assert_eq!((stats.invalid_recipients, stats.full_recipients), (0, 0));
    assert_eq!(
        stats.read_rounds, 1,
        "each queue with its mark, in one round"
    );
    assert_eq!(stats.conflict_retries, 0);
    assert_eq!(stats.request_bytes, to_beta.to_bytes().len());
    assert_eq!(stats.response_bytes, delivered.response.len());

    let fetch = bob.fetch_request(10, beta.now_ms);
    let page = beta.client_request(&fetch);
    assert_eq!(page.stats.operation, "fetch");
    assert_eq!(page.stats.read_rounds, 2, "the queue, then a page of it");
    assert_eq!(page.stats.request_bytes, fetch.len());
    assert_eq!(page.stats.response_bytes, page.response.len());
    assert_eq!(page.stats.recipients, 0);
    bob.take_page(&page.response);
    assert!(bob
        .process_inbox()
        .contains(&Received::Application(b"hello".to_vec())));
}

#[test]
fn a_commit_reports_the_new_epoch_and_a_conflict_its_retry() {
    let mut ds = TestDs::new(HUB);
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    ds.create_group_with(&mut alice, &mut [&mut bob]);

    let commit = alice.update_request(ds.now_ms);
    let out = ds.process(&commit);
    alice.confirm_commit();
    assert_eq!(out.status, Status::Accepted);
    assert_eq!(out.stats.operation, "commits");
    assert_eq!(out.stats.epoch, Some(2));
    assert_eq!(out.stats.read_rounds, 1);
    assert_eq!(out.stats.conflict_retries, 0);
    assert_eq!(out.stats.fanout_bytes, fanout_bytes(&out));
    TestDs::route(&out, &mut [&mut bob]);
    bob.process_inbox();

    // The next commit's first write conflicts: it reads again (a second round) and applies.
    let commit = bob.update_request(ds.now_ms);
    let out = drive_with_conflicts(&mut ds, &commit, 1);
    bob.confirm_commit();
    assert_eq!(out.status, Status::Accepted);
    assert_eq!(out.stats.conflict_retries, 1);
    assert_eq!(out.stats.read_rounds, 2, "one round per attempt");
    assert_eq!(out.stats.epoch, Some(3));
    assert_eq!(out.stats.request_bytes, commit.len());
    assert_eq!(out.stats.response_bytes, out.response.len());
    TestDs::route(&out, &mut [&mut alice]);
    alice.process_inbox();

    // One that conflicts every time is refused after the last retry, and says so.
    let retries = ds.ds.config().max_conflict_retries;
    let commit = alice.update_request(ds.now_ms);
    let out = drive_with_conflicts(&mut ds, &commit, u32::MAX);
    assert_eq!(out.status, Status::Rejected(ErrorCode::Conflict));
    assert_eq!(out.stats.operation, "commits");
    assert_eq!(out.stats.conflict_retries, retries + 1);
    assert_eq!(out.stats.read_rounds, retries + 1);
    assert_eq!(out.stats.epoch, None);
    assert_eq!((out.stats.fanout_count, out.stats.fanout_bytes), (0, 0));
}

#[test]
fn undecodable_bytes_and_hub_events_are_named_too() {
    let mut ds = TestDs::new(HUB);
    let garbage = b"\x00\x01\xff\xff".to_vec();
    let out = ds.process(&garbage);
    assert!(matches!(out.status, Status::Rejected(_)));
    assert_eq!(out.stats.operation, "undecodable");
    assert_eq!(out.stats.read_rounds, 0);
    assert_eq!(out.stats.request_bytes, garbage.len());
    assert_eq!(out.stats.response_bytes, out.response.len());

    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob]);
    let out = ds.handle_event(&group_id, &HubEvent::QueueRejected(bob.queue.clone()));
    assert_eq!(out.status, Status::Accepted);
    assert_eq!(out.stats.operation, "hub_event.queue_rejected");
    assert_eq!(out.stats.request_bytes, 0);
    assert!(out.stats.read_rounds >= 1);
    assert_eq!(out.stats.fanout_count, out.fanout.len());
    assert!(out.stats.fanout_count >= 1, "the remove proposal goes out");
}

#[test]
fn the_router_hands_the_calls_stats_on_and_none_for_its_own_answers() {
    use mimi_ds::transport::{CallStats, HttpRequest, Router, TransportConfig, OCTET_STREAM};

    let ds = TestDs::new(HUB);
    let qs = TestQs::new(HUB);
    let now = UnixTimeMs(ds.now_ms);
    let router = Router::new(TransportConfig::new(HUB, Some(HUB.to_owned())))
        .with_ds(ds.ds)
        .with_qs(qs.qs);
    let (mut ds_storage, mut qs_storage) = (ds.storage, qs.storage);
    let alice = TestClient::new("alice", "phone", HUB);
    let headers = [("host", HUB), ("content-type", OCTET_STREAM)];
    let mut route = |path: &str, body: &[u8]| {
        let request = HttpRequest {
            method: "POST",
            path,
            headers: &headers,
            body,
            authenticated_peer: None,
        };
        router
            .handle(now, &request, &mut ds_storage, &mut qs_storage)
            .expect("memory")
    };

    let garbage = b"\x00\x01\xff".to_vec();
    let routed = route("/group_operation", &garbage);
    let Some(CallStats::Ds(Status::Rejected(code), stats)) = routed.call.clone() else {
        panic!("a DS call: {routed:?}")
    };
    let call = routed.call.expect("a call");
    assert_eq!(call.service(), "ds");
    assert_eq!(call.outcome(), code.name());
    assert_eq!(stats.operation, "undecodable");
    assert_eq!(stats.request_bytes, garbage.len());

    let create = alice.create_queue_request(now.0);
    let call = route("/queue_operation", &create).call.expect("a QS call");
    assert!(matches!(call, CallStats::Qs(QsStatus::Accepted, _)));
    assert_eq!(
        (call.service(), call.operation(), call.outcome()),
        ("qs", "create_queue", "accepted")
    );
    assert_eq!(call.read_rounds(), 1);
    assert_eq!(call.conflict_retries(), 0);

    assert_eq!(route("/no_such_endpoint", b"").call, None);
}
