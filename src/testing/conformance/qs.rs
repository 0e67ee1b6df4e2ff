//! The conformance checks of the Queueing Service's storage ([`QsStorage`]). Each check takes
//! a factory of fresh, empty stores.
//!
//! - [`qs_queues_and_owners`]: a queue ID and an owner key are each used once;
//! - [`qs_enqueue_guard_and_atomicity`]: sequence numbers hand out once, queued bytes add up, a
//!   set whose last change conflicts changes nothing;
//! - [`qs_delivery_marks_and_expiry`]: a live mark refuses the same hash, live at
//!   `now <= expires_at_ms`; a write drops expired marks and an expired hash is reused;
//! - [`qs_pages`]: `messages` honours the start, the count and the byte budget, and always
//!   returns the first message;
//! - [`qs_acknowledge_and_delete`]: acknowledgement drops messages and bytes, deletion drops
//!   the queue with its messages and marks and frees the owner key;
//! - [`qs_attacker_sized`]: owner keys and messages of `max_request_bytes`;
//! - [`qs_end_to_end_with_real_clients`]: real clients, a real DS's fanout delivered twice,
//!   fetched once.

use std::fmt::Debug;

use super::{ok, sample_message, NOW};
use crate::qs::{
    queued_size, DeliveryMark, QsChange, QsConfig, QsStatus, QsStorage, QsWriteOutcome, QsWriteSet,
    QueueRecord,
};
use crate::testing::{Received, TestClient, TestDs, TestQs};
use crate::wire::{FanoutMessage, MlsMessageBytes, QueuedMessage};
use crate::UnixTimeMs;

/// Runs every QS check, each on a fresh store from `new_storage`.
pub fn run_qs_suite<Q: QsStorage>(new_storage: impl Fn() -> Q) {
    qs_queues_and_owners(&new_storage);
    qs_enqueue_guard_and_atomicity(&new_storage);
    qs_delivery_marks_and_expiry(&new_storage);
    qs_pages(&new_storage);
    qs_acknowledge_and_delete(&new_storage);
    qs_attacker_sized(&new_storage);
    qs_end_to_end_with_real_clients(&new_storage);
}

/// One `#[test]` per QS check of [`crate::testing::conformance::qs`], for a backend given by
/// an expression of type `impl Fn() -> impl QsStorage` making fresh stores.
#[macro_export]
macro_rules! qs_storage_conformance_tests {
    ($new_storage:expr) => {
        $crate::qs_storage_conformance_tests!(@tests $new_storage;
            qs_queues_and_owners, qs_enqueue_guard_and_atomicity, qs_delivery_marks_and_expiry,
            qs_pages, qs_acknowledge_and_delete, qs_attacker_sized,
            qs_end_to_end_with_real_clients);
    };
    (@tests $new_storage:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::conformance::qs::$check(&$new_storage);
            }
        )*
    };
}

fn record(owner: &[u8]) -> QueueRecord {
    QueueRecord {
        owner_key: owner.to_vec(),
        fanout_auth_token: [owner, b"-token"].concat(),
        next_sequence: 0,
        first_unacknowledged: 0,
        queued_bytes: 0,
    }
}

fn create(queue: &[u8], owner: &[u8]) -> QsChange {
    QsChange::CreateQueue {
        queue_id: queue.to_vec(),
        record: record(owner),
    }
}

fn queued(sequence_number: u64, message: &MlsMessageBytes) -> QueuedMessage {
    QueuedMessage {
        sequence_number,
        received_ms: NOW,
        sender_domain: b"hub.example".to_vec().into(),
        message: FanoutMessage {
            group_id: b"group".to_vec().into(),
            sequence_number,
            accepted_time_ms: NOW,
            message: message.clone(),
            external_proposals: Vec::new(),
            frank: None,
        },
    }
}

fn enqueue(queue: &[u8], message: QueuedMessage, hash: &[u8], expires_at_ms: u64) -> QsChange {
    QsChange::Enqueue {
        queue_id: queue.to_vec(),
        message,
        mark: DeliveryMark {
            hash: hash.to_vec(),
            expires_at_ms,
        },
    }
}

fn expect<Q: QsStorage>(
    storage: &mut Q,
    changes: Vec<QsChange>,
    now_ms: u64,
    expected: QsWriteOutcome,
    what: &str,
) {
    let outcome = ok(storage.write(&QsWriteSet { changes, now_ms }), what);
    assert_eq!(outcome, expected, "{what}");
}

/// Everything a store shows of some queues and hashes.
fn visible<Q: QsStorage>(
    storage: &Q,
    queues: &[&[u8]],
    hashes: &[&[u8]],
) -> impl PartialEq + Debug {
    queues
        .iter()
        .map(|q| {
            (
                ok(storage.queue(q), "queue"),
                ok(storage.messages(q, 0, usize::MAX, usize::MAX), "messages"),
                hashes
                    .iter()
                    .map(|h| ok(storage.has_mark(q, h, NOW), "has_mark"))
                    .collect::<Vec<_>>(),
            )
        })
        .collect::<Vec<_>>()
}

/// A queue ID and an owner key are each used by one queue.
pub fn qs_queues_and_owners<Q: QsStorage>(new_storage: &impl Fn() -> Q) {
    let mut storage = new_storage();
    assert_eq!(ok(storage.queue(b"q1"), "queue"), None);
    expect(
        &mut storage,
        vec![create(b"q1", b"owner-1")],
        NOW,
        QsWriteOutcome::Applied,
        "create",
    );
    assert_eq!(
        ok(storage.queue(b"q1"), "queue"),
        Some(record(b"owner-1")),
        "reads back"
    );
    assert_eq!(
        ok(storage.queue_of_owner(b"owner-1"), "queue_of_owner"),
        Some(b"q1".to_vec())
    );
    assert_eq!(
        ok(storage.queue_of_owner(b"owner-2"), "queue_of_owner"),
        None
    );
    let before = visible(&storage, &[b"q1", b"q2"], &[]);
    expect(
        &mut storage,
        vec![create(b"q1", b"owner-2")],
        NOW,
        QsWriteOutcome::Conflict,
        "a used queue ID",
    );
    expect(
        &mut storage,
        vec![create(b"q2", b"owner-1")],
        NOW,
        QsWriteOutcome::Conflict,
        "a used owner key",
    );
    expect(
        &mut storage,
        vec![create(b"q2", b"owner-2"), create(b"q2", b"owner-3")],
        NOW,
        QsWriteOutcome::Conflict,
        "one ID twice in one set",
    );
    assert_eq!(
        visible(&storage, &[b"q1", b"q2"], &[]),
        before,
        "conflicts change nothing"
    );
    assert_eq!(
        ok(storage.queue_of_owner(b"owner-2"), "queue_of_owner"),
        None
    );
}

/// Enqueue guards: the expected sequence number, one set all or nothing.
pub fn qs_enqueue_guard_and_atomicity<Q: QsStorage>(new_storage: &impl Fn() -> Q) {
    let mut storage = new_storage();
    let message = sample_message();
    expect(
        &mut storage,
        vec![create(b"q", b"owner")],
        NOW,
        QsWriteOutcome::Applied,
        "create",
    );
    expect(
        &mut storage,
        vec![
            enqueue(b"q", queued(0, &message), b"h0", NOW + 10),
            enqueue(b"q", queued(1, &message), b"h1", NOW + 10),
        ],
        NOW,
        QsWriteOutcome::Applied,
        "two messages in one set, numbered in order",
    );
    let queue = ok(storage.queue(b"q"), "queue").expect("exists");
    assert_eq!(queue.next_sequence, 2);
    assert_eq!(
        queue.queued_bytes,
        2 * queued_size(&queued(0, &message)),
        "queued bytes add up"
    );

    let before = visible(&storage, &[b"q"], &[b"h0", b"h1", b"h2", b"h3"]);
    expect(
        &mut storage,
        vec![enqueue(b"q", queued(1, &message), b"h2", NOW + 10)],
        NOW,
        QsWriteOutcome::Conflict,
        "a number handed out",
    );
    expect(
        &mut storage,
        vec![enqueue(b"missing", queued(0, &message), b"h2", NOW + 10)],
        NOW,
        QsWriteOutcome::Conflict,
        "no such queue",
    );
    expect(
        &mut storage,
        vec![
            enqueue(b"q", queued(2, &message), b"h2", NOW + 10),
            enqueue(b"q", queued(4, &message), b"h3", NOW + 10),
        ],
        NOW,
        QsWriteOutcome::Conflict,
        "the set's second change conflicts",
    );
    assert_eq!(
        visible(&storage, &[b"q"], &[b"h0", b"h1", b"h2", b"h3"]),
        before,
        "so its first change is not applied"
    );
}

/// Delivery marks at their expiry boundary.
pub fn qs_delivery_marks_and_expiry<Q: QsStorage>(new_storage: &impl Fn() -> Q) {
    const E: u64 = NOW + 1_000;
    let mut storage = new_storage();
    let message = sample_message();
    expect(
        &mut storage,
        vec![create(b"q", b"owner")],
        NOW,
        QsWriteOutcome::Applied,
        "create",
    );
    expect(
        &mut storage,
        vec![enqueue(b"q", queued(0, &message), b"h", E)],
        NOW,
        QsWriteOutcome::Applied,
        "enqueue",
    );
    expect(
        &mut storage,
        vec![enqueue(b"q", queued(1, &message), b"early", E - 1)],
        NOW,
        QsWriteOutcome::Applied,
        "enqueue",
    );
    let has = |s: &Q, hash: &[u8], now: u64| ok(s.has_mark(b"q", hash, now), "has_mark");
    assert!(has(&storage, b"h", E), "live at now == expires_at_ms");
    assert!(!has(&storage, b"h", E + 1), "gone at expires_at_ms + 1");
    assert!(
        !ok(storage.has_mark(b"other", b"h", NOW), "has_mark"),
        "marks are per queue"
    );
    expect(
        &mut storage,
        vec![enqueue(b"q", queued(2, &message), b"h", E + 50)],
        E,
        QsWriteOutcome::Conflict,
        "the same hash while live",
    );
    expect(
        &mut storage,
        vec![enqueue(b"q", queued(2, &message), b"x", E + 50)],
        E,
        QsWriteOutcome::Applied,
        "a write at E",
    );
    assert!(
        !has(&storage, b"early", NOW),
        "a write drops marks that expired before its now"
    );
    assert!(has(&storage, b"h", NOW), "and keeps a mark live at its now");
    expect(
        &mut storage,
        vec![enqueue(b"q", queued(3, &message), b"h", E + 50)],
        E + 1,
        QsWriteOutcome::Applied,
        "an expired hash is reused",
    );
    assert!(has(&storage, b"h", E + 50));
}

/// Pages: start, count, byte budget, and the first message whatever its size.
pub fn qs_pages<Q: QsStorage>(new_storage: &impl Fn() -> Q) {
    let mut storage = new_storage();
    let message = sample_message();
    expect(
        &mut storage,
        vec![create(b"q", b"owner")],
        NOW,
        QsWriteOutcome::Applied,
        "create",
    );
    let changes = (0..5)
        .map(|i| enqueue(b"q", queued(i, &message), &[b'h', i as u8], NOW + 10))
        .collect();
    expect(
        &mut storage,
        changes,
        NOW,
        QsWriteOutcome::Applied,
        "five messages",
    );
    let size = usize::try_from(queued_size(&queued(0, &message))).expect("small");
    let page = |from, limit, max_bytes| {
        ok(storage.messages(b"q", from, limit, max_bytes), "messages")
            .iter()
            .map(|m| m.sequence_number)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(0, 100, usize::MAX), [0, 1, 2, 3, 4]);
    assert_eq!(page(2, 2, usize::MAX), [2, 3], "from and limit");
    assert_eq!(page(1, 100, 2 * size), [1, 2], "the byte budget");
    assert_eq!(
        page(1, 100, 2 * size - 1),
        [1],
        "a message that does not fit is left for later"
    );
    assert_eq!(page(3, 100, 0), [3], "the first message whatever its size");
    assert_eq!(page(5, 100, usize::MAX), Vec::<u64>::new());
    assert_eq!(
        ok(storage.messages(b"q", 0, 1, usize::MAX), "messages"),
        vec![queued(0, &message)],
        "byte for byte"
    );
}

/// Acknowledgement and deletion.
pub fn qs_acknowledge_and_delete<Q: QsStorage>(new_storage: &impl Fn() -> Q) {
    let mut storage = new_storage();
    let message = sample_message();
    let size = queued_size(&queued(0, &message));
    expect(
        &mut storage,
        vec![create(b"q", b"owner")],
        NOW,
        QsWriteOutcome::Applied,
        "create",
    );
    let changes = (0..3)
        .map(|i| enqueue(b"q", queued(i, &message), &[b'h', i as u8], NOW + 10))
        .collect();
    expect(
        &mut storage,
        changes,
        NOW,
        QsWriteOutcome::Applied,
        "three messages",
    );
    let before = visible(&storage, &[b"q"], &[b"h\0"]);
    let ack = |up_to_sequence| QsChange::Acknowledge {
        queue_id: b"q".to_vec(),
        up_to_sequence,
    };
    expect(
        &mut storage,
        vec![ack(4)],
        NOW,
        QsWriteOutcome::Conflict,
        "past next_sequence",
    );
    assert_eq!(visible(&storage, &[b"q"], &[b"h\0"]), before);
    expect(
        &mut storage,
        vec![ack(2)],
        NOW,
        QsWriteOutcome::Applied,
        "acknowledge two",
    );
    let queue = ok(storage.queue(b"q"), "queue").expect("exists");
    assert_eq!((queue.first_unacknowledged, queue.queued_bytes), (2, size));
    assert_eq!(
        ok(storage.messages(b"q", 0, 10, usize::MAX), "messages").len(),
        1
    );
    expect(
        &mut storage,
        vec![ack(1)],
        NOW,
        QsWriteOutcome::Applied,
        "an older acknowledgement",
    );
    assert_eq!(
        ok(storage.queue(b"q"), "queue")
            .expect("exists")
            .first_unacknowledged,
        2,
        "never moves back"
    );

    let delete = QsChange::DeleteQueue {
        queue_id: b"q".to_vec(),
    };
    expect(
        &mut storage,
        vec![delete.clone()],
        NOW,
        QsWriteOutcome::Applied,
        "delete",
    );
    assert_eq!(ok(storage.queue(b"q"), "queue"), None);
    assert!(
        ok(storage.messages(b"q", 0, 10, usize::MAX), "messages").is_empty(),
        "its messages go"
    );
    assert!(
        !ok(storage.has_mark(b"q", b"h\x02", NOW), "has_mark"),
        "its marks go"
    );
    assert_eq!(
        ok(storage.queue_of_owner(b"owner"), "queue_of_owner"),
        None,
        "the owner key is free"
    );
    expect(
        &mut storage,
        vec![delete],
        NOW,
        QsWriteOutcome::Conflict,
        "deleting a missing queue",
    );
    expect(
        &mut storage,
        vec![create(b"q", b"owner")],
        NOW,
        QsWriteOutcome::Applied,
        "the ID and key are reusable",
    );
    assert!(
        ok(storage.messages(b"q", 0, 10, usize::MAX), "messages").is_empty(),
        "a new queue is empty"
    );
}

/// Owner keys and messages at `max_request_bytes`, IDs of every byte value.
pub fn qs_attacker_sized<Q: QsStorage>(new_storage: &impl Fn() -> Q) {
    let mut storage = new_storage();
    let limit = QsConfig::new("qs.example").max_request_bytes;
    let owner: Vec<u8> = (0..limit).map(|i| (i % 251) as u8).collect();
    let queue: Vec<u8> = (0..=255u8).collect();
    expect(
        &mut storage,
        vec![create(&queue, &owner)],
        NOW,
        QsWriteOutcome::Applied,
        "an owner key of max_request_bytes",
    );
    assert_eq!(
        ok(storage.queue_of_owner(&owner), "queue_of_owner"),
        Some(queue.clone())
    );
    // A message as large as one delivery may carry: a real MLSMessage padded by external
    // proposals (the wire type holds any number of them).
    let sample = sample_message();
    let mut big = queued(0, &sample);
    let count = limit / sample.as_bytes().len();
    big.message.external_proposals = vec![sample.clone(); count];
    expect(
        &mut storage,
        vec![enqueue(&queue, big.clone(), b"h", NOW + 10)],
        NOW,
        QsWriteOutcome::Applied,
        "a large message",
    );
    assert_eq!(
        ok(storage.messages(&queue, 0, 1, 0), "messages"),
        vec![big.clone()],
        "reads back"
    );
    assert_eq!(
        ok(storage.queue(&queue), "queue")
            .expect("exists")
            .queued_bytes,
        queued_size(&big)
    );
}

/// Real clients: a DS's fanout delivered to a Queueing Service on the backend twice, fetched
/// once, processed by the recipient, acknowledged.
pub fn qs_end_to_end_with_real_clients<Q: QsStorage>(new_storage: &impl Fn() -> Q) {
    let mut storage = new_storage();
    let mut hub = TestDs::new("hub.example");
    let provider = TestQs::new("bob.example");
    let now = UnixTimeMs(hub.now_ms);
    let mut alice = TestClient::new("alice", "a1", "alice.example");
    let mut bob = TestClient::new("bob", "b1", "bob.example");
    let out = ok(
        provider
            .qs
            .client_request(now, &bob.create_queue_request(now.0), &mut storage),
        "create_queue",
    );
    bob.use_queue(&out.response, "hub.example");
    hub.create_group_with(&mut alice, &mut [&mut bob]);

    let sent = hub.process(&alice.message_request(b"via the queue", now.0));
    let to_bob: Vec<_> = sent
        .fanout
        .iter()
        .filter(|f| f.destination == "bob.example")
        .collect();
    assert_eq!(to_bob.len(), 1, "one delivery to bob's provider");
    let first = ok(
        provider
            .qs
            .deliver(now, &to_bob[0].to_bytes(), None, &mut storage),
        "deliver",
    );
    assert_eq!(first.status, QsStatus::Accepted);
    let again = ok(
        provider
            .qs
            .deliver(now, &to_bob[0].to_bytes(), None, &mut storage),
        "redeliver",
    );
    assert_eq!(
        again.status,
        QsStatus::Duplicate,
        "a redelivery is recognised by its mark"
    );

    let out = ok(
        provider
            .qs
            .client_request(now, &bob.fetch_request(10, now.0), &mut storage),
        "fetch",
    );
    assert_eq!(bob.take_page(&out.response), (1, 0), "stored once");
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"via the queue".to_vec())]
    );
    let out = ok(
        provider
            .qs
            .client_request(now, &bob.ack_request(now.0), &mut storage),
        "acknowledge",
    );
    assert_eq!(out.status, QsStatus::Accepted);
    let out = ok(
        provider
            .qs
            .client_request(now, &bob.fetch_request(10, now.0), &mut storage),
        "fetch",
    );
    assert_eq!(
        bob.take_page(&out.response),
        (0, 0),
        "acknowledged messages are gone"
    );
}
