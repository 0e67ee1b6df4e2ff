//! The `tracing` feature: one span per DS and QS request, with the operation, outcome, epoch,
//! retries and sizes, and no group ID, queue ID, identity or key in any field.
//!
//! A capturing subscriber (written here against `tracing`'s `Subscriber` trait, so the test
//! needs no other crate) records every span and field while a group lives through a real hub
//! and two real Queueing Services with real openmls clients: queues are created, the group is
//! created and grows, members send messages and commit (once after a conflict), a queue is
//! rejected, a request is garbage, a request is abandoned halfway, deliveries are made and
//! fetched. Then every recorded value is searched for the IDs, names and keys involved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mimi_ds::storage::{DsStorage, WriteOutcome};
use mimi_ds::testing::{TestClient, TestDs, TestQs};
use mimi_ds::{DsStep, HubEvent, Outcome, Status, UnixTimeMs};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

const HUB: &str = "hub.example";
const ALPHA: &str = "alpha.example";
const BETA: &str = "beta.example";

/// A span as the subscriber saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: &'static str,
    target: String,
    fields: Vec<(String, String)>,
    refs: usize,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Captured {
    next: u64,
    open: HashMap<u64, Seen>,
    closed: Vec<Seen>,
    /// Fields of events (none are expected from mimi-ds, but they are checked alike).
    events: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

struct Values<'a>(&'a mut Vec<(String, String)>);

impl Visit for Values<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut captured = self.0.lock().unwrap();
        captured.next += 1;
        let id = captured.next;
        let mut seen = Seen {
            name: span.metadata().name(),
            target: span.metadata().target().to_owned(),
            refs: 1,
            ..Seen::default()
        };
        span.record(&mut Values(&mut seen.fields));
        captured.open.insert(id, seen);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut captured = self.0.lock().unwrap();
        if let Some(seen) = captured.open.get_mut(&span.into_u64()) {
            values.record(&mut Values(&mut seen.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut captured = self.0.lock().unwrap();
        event.record(&mut Values(&mut captured.events));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(seen) = self.0.lock().unwrap().open.get_mut(&id.into_u64()) {
            seen.refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut captured = self.0.lock().unwrap();
        let key = id.into_u64();
        let Some(seen) = captured.open.get_mut(&key) else {
            return false;
        };
        seen.refs -= 1;
        if seen.refs > 0 {
            return false;
        }
        let seen = captured.open.remove(&key).expect("present");
        captured.closed.push(seen);
        true
    }
}

/// Drives `request` through the step API, storage reporting a conflict for the first write.
fn with_one_conflict(ds: &mut TestDs, request: &[u8]) -> Outcome {
    let mut conflicted = false;
    let mut step = ds.ds.start(UnixTimeMs(ds.now_ms), request).expect("start");
    loop {
        step = match step {
            DsStep::Read(reads) => {
                let answers = reads.fetch(&ds.storage).expect("memory");
                ds.ds.resume(reads, answers).expect("resume")
            }
            DsStep::Write(write) if !conflicted => {
                conflicted = true;
                ds.ds.retry(write).expect("retry")
            }
            DsStep::Write(write) => match ds.storage.write(write.write_set()).expect("memory") {
                WriteOutcome::Applied => return write.applied(),
                WriteOutcome::Conflict => panic!("no real conflict here"),
            },
            DsStep::Done(outcome) => return outcome,
        }
    }
}

/// Everything that must never appear in a field: what `bytes` look like in hex (either case)
/// and in `Debug`, whole and by their first eight bytes, and as text if they are UTF-8.
fn forms_of(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let head = &bytes[..bytes.len().min(8)];
    let mut forms = Vec::new();
    if let Ok(text) = std::str::from_utf8(bytes) {
        forms.push(text.to_owned());
    }
    let head_hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
    forms.extend([
        hex.clone(),
        hex.to_uppercase(),
        head_hex.clone(),
        head_hex.to_uppercase(),
        format!("{bytes:?}"),
        format!("{head:?}").trim_end_matches(']').to_owned(),
    ]);
    forms
}

/// A group's life through a hub and two QSs; returns what must not be traced.
fn group_life(ds_calls: &mut usize) -> Vec<String> {
    let mut ds = TestDs::new(HUB);
    let mut alpha = TestQs::new(ALPHA);
    let mut beta = TestQs::new(BETA);
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "tablet", BETA);
    let mut carol = TestClient::new("carol", "laptop", BETA);
    alpha.connect(&mut alice, HUB);
    beta.connect(&mut bob, HUB);
    beta.connect(&mut carol, HUB);
    // request_group_id, create_group, the add commit, bob's welcome_info.
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob]);
    *ds_calls += 4;

    let add = alice.add_request(vec![carol.key_package()], ds.now_ms);
    let out = ds.process(&add);
    *ds_calls += 1;
    assert_eq!(out.status, Status::Accepted);
    alice.confirm_commit();
    deliver_all(&out, &mut alpha, &mut beta);
    beta.fetch_into(&mut bob);
    bob.process_inbox();
    beta.fetch_into(&mut carol);

    for text in [&b"hello"[..], b"how are you"] {
        let out = ds.process(&alice.message_request(text, ds.now_ms));
        *ds_calls += 1;
        deliver_all(&out, &mut alpha, &mut beta);
    }
    beta.fetch_into(&mut bob);
    bob.process_inbox();

    let commit = bob.update_request(ds.now_ms);
    let out = with_one_conflict(&mut ds, &commit);
    *ds_calls += 1;
    assert_eq!(out.stats.conflict_retries, 1);
    bob.confirm_commit();
    deliver_all(&out, &mut alpha, &mut beta);

    // A refusal that reads the group: alice's stale commit (she has not seen bob's).
    let stale = alice.update_request(ds.now_ms);
    let out = ds.process(&stale);
    *ds_calls += 1;
    assert!(matches!(out.status, Status::Rejected(_)));

    // Garbage; and a request whose caller stops after the first step.
    let _ = ds.process(b"\x00\x01garbage");
    *ds_calls += 1;
    let message = bob.message_request(b"never sent", ds.now_ms);
    let first = ds.ds.start(UnixTimeMs(ds.now_ms), &message).expect("start");
    drop(first);
    *ds_calls += 1;

    let out = ds.handle_event(&group_id, &HubEvent::QueueRejected(carol.queue.clone()));
    *ds_calls += 1;
    assert_eq!(out.status, Status::Accepted);
    deliver_all(&out, &mut alpha, &mut beta);
    alpha.fetch_into(&mut alice);

    let mut forbidden = forms_of(&group_id);
    for client in [&alice, &bob, &carol] {
        let queue = client.qs_queue.as_ref().expect("a queue");
        forbidden.extend(forms_of(queue.queue_id.as_slice()));
        forbidden.extend(forms_of(client.queue.queue.as_slice()));
        forbidden.extend(forms_of(client.signer.public()));
        forbidden.extend(forms_of(client.credential.credential.serialized_content()));
        forbidden.push(client.user.clone());
        forbidden.push(client.name.clone());
    }
    forbidden.extend([ALPHA, BETA, HUB].map(str::to_owned));
    forbidden
}

fn deliver_all(out: &Outcome, alpha: &mut TestQs, beta: &mut TestQs) {
    for fanout in &out.fanout {
        let qs = if fanout.destination == ALPHA {
            &mut *alpha
        } else {
            &mut *beta
        };
        let _ = qs.deliver(fanout);
    }
}

#[test]
fn one_span_per_request_with_counts_and_names_and_no_ids_keys_or_identities() {
    let capture = Capture::default();
    let mut ds_calls = 0;
    let forbidden =
        tracing::subscriber::with_default(capture.clone(), || group_life(&mut ds_calls));
    let captured = capture.0.lock().unwrap();
    assert!(
        captured.open.is_empty(),
        "every span closed: {:?}",
        captured.open
    );
    let spans = &captured.closed;
    let ds_spans: Vec<&Seen> = spans.iter().filter(|s| s.name == "ds_request").collect();
    let qs_spans: Vec<&Seen> = spans.iter().filter(|s| s.name == "qs_request").collect();
    assert_eq!(
        ds_spans.len(),
        ds_calls,
        "one span per DS request, not per step"
    );
    assert!(
        qs_spans.len() >= 8,
        "queue creations, deliveries, fetches: {qs_spans:?}"
    );
    assert!(spans.iter().all(|s| s.target == "mimi_ds"));

    // Every span says what it was and how it ended.
    for span in ds_spans.iter().chain(&qs_spans) {
        assert!(span.field("operation").is_some(), "{span:?}");
        assert!(span.field("outcome").is_some(), "{span:?}");
        assert!(span.field("request_bytes").is_some(), "{span:?}");
    }
    let find = |operation: &str, outcome: &str| {
        ds_spans
            .iter()
            .chain(&qs_spans)
            .find(|s| {
                s.field("operation") == Some(operation) && s.field("outcome") == Some(outcome)
            })
            .unwrap_or_else(|| panic!("no {operation} span with outcome {outcome}: {spans:?}"))
    };
    let message = find("send_message", "accepted");
    assert_eq!(message.field("read_rounds"), Some("1"));
    assert_eq!(message.field("conflict_retries"), Some("0"));
    assert_eq!(message.field("fanout_count"), Some("1"));
    assert!(message.field("epoch").is_some());
    assert!(
        message
            .field("fanout_bytes")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        message
            .field("response_bytes")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let retried = find("commits", "accepted");
    let retried = ds_spans
        .iter()
        .find(|s| s.field("conflict_retries") == Some("1"))
        .unwrap_or(retried);
    assert_eq!(retried.field("operation"), Some("commits"));
    assert_eq!(retried.field("read_rounds"), Some("2"));
    let refused = find("commits", "rejected");
    assert_eq!(refused.field("code"), Some("wrong_epoch"));
    assert_eq!(
        find("undecodable", "rejected").field("read_rounds"),
        Some("0")
    );
    find("send_message", "abandoned");
    find("hub_event.queue_rejected", "accepted");
    find("request_group_id", "accepted");
    find("create_group", "accepted");
    find("welcome_info", "accepted");
    let delivery = find("deliver", "accepted");
    assert!(delivery.field("recipients").is_some());
    assert!(delivery.field("enqueued").is_some());
    find("create_queue", "accepted");
    find("fetch", "accepted");
    find("acknowledge", "accepted");

    // Nothing identifying anywhere.
    let values = spans
        .iter()
        .flat_map(|s| s.fields.iter())
        .chain(captured.events.iter());
    for (field, value) in values {
        for secret in &forbidden {
            assert!(
                !value.contains(secret.as_str()),
                "field {field} = {value:?} contains {secret:?}"
            );
        }
    }
}
