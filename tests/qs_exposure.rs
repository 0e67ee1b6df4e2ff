//! What a stranger can make a Queueing Service do, and how much a queue can hold
//! (wire-format.md §10.1–§10.3): sealed queue information opens only for deliveries from the
//! hub it was sealed for, a captured `create_queue` reveals neither queue ID nor token, pages
//! are bounded in bytes, queues in messages and bytes, and a full queue is reported per
//! recipient without making the hub remove its client.

use mimi_ds::qs::{queued_size, CreateQueueKey, QsConfig, QsOutcome, QsStatus, QsStorage};
use mimi_ds::testing::{
    assert_unchanged, deliver_via_driver, Received, TestClient, TestDs, TestQs,
};
use mimi_ds::wire::{
    decode_exact, encode, ErrorCode, QsClientRequest, QsClientRequestBody, QsClientResponse,
    QsClientResponseBody, QueueingServiceResponse, RecipientRefusal,
};
use mimi_ds::{Fanout, UnixTimeMs};

const HUB: &str = "hub.example";
const OTHER_HUB: &str = "other-hub.example";
const ALPHA: &str = "alpha.example";
const BETA: &str = "beta.example";

/// A hub, Alice at alpha, Bob's phone and laptop at beta (configured by `config`), in one
/// group; every queue sealed for the hub.
struct World {
    ds: TestDs,
    beta: TestQs,
    alice: TestClient,
    bob: TestClient,
    bob2: TestClient,
}

fn world(config: QsConfig) -> World {
    let mut ds = TestDs::new(HUB);
    let mut alpha = TestQs::new(ALPHA);
    let mut beta = TestQs::with_config(config);
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    let mut bob2 = TestClient::new("bob", "laptop", BETA);
    alpha.connect(&mut alice, HUB);
    beta.connect(&mut bob, HUB);
    beta.connect(&mut bob2, HUB);
    ds.create_group_with(&mut alice, &mut [&mut bob, &mut bob2]);
    World {
        ds,
        beta,
        alice,
        bob,
        bob2,
    }
}

/// Alice sends `text`; the fanout to beta.
fn send(w: &mut World, text: &[u8]) -> Fanout {
    let out = w.ds.process(&w.alice.message_request(text, w.ds.now_ms));
    out.fanout
        .into_iter()
        .find(|f| f.destination == BETA)
        .expect("a fanout to beta")
}

/// A delivery as the provider that mutual TLS authenticated as `peer` sends it.
fn deliver_as(w: &mut World, fanout: &Fanout, peer: &str) -> QsOutcome {
    deliver_via_driver(
        &w.beta.qs,
        UnixTimeMs(w.beta.now_ms),
        &fanout.to_bytes(),
        Some(peer),
        &mut w.beta.storage,
    )
}

fn answer(outcome: &QsOutcome) -> QueueingServiceResponse {
    decode_exact(&outcome.response).expect("a served delivery answers a QueueingServiceResponse")
}

fn client_answer(outcome: &QsOutcome) -> QsClientResponseBody {
    decode_exact::<QsClientResponse>(&outcome.response)
        .expect("QSClientResponse")
        .body
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Point 3 of the exposure issue: any member, the hub and whoever is served `group_info` sees
/// Bob's sealed queue information. Another provider, properly authenticated by mutual TLS as
/// itself, replays it in a delivery of its own: the QS does not open it (it was sealed for
/// the hub), so nothing lands in Bob's queue.
#[test]
fn sealed_queue_information_is_bound_to_the_hub_it_was_sealed_for() {
    let mut w = world(QsConfig::new(BETA));
    let genuine = send(&mut w, b"from the hub");

    // A stranger's own delivery, naming itself honestly, to the queues it saw in the group:
    // nothing enqueued, nothing marked.
    let mut replayed = genuine.clone();
    replayed.request.sender_domain = OTHER_HUB.as_bytes().to_vec().into();
    replayed.request.message.sequence_number += 1;
    let refused = assert_unchanged(&mut w.beta.storage, |storage| {
        deliver_via_driver(
            &w.beta.qs,
            UnixTimeMs(w.beta.now_ms),
            &replayed.to_bytes(),
            Some(OTHER_HUB),
            storage,
        )
    });
    assert_eq!(refused.status, QsStatus::Accepted);
    assert_eq!(
        answer(&refused),
        QueueingServiceResponse::InvalidClientQueueInformation(vec![0, 1])
    );
    assert!(refused.enqueued.is_empty());

    // The hub it was sealed for delivers.
    let served = deliver_as(&mut w, &genuine, HUB);
    assert_eq!(answer(&served), QueueingServiceResponse::Ok);
    assert_eq!(served.enqueued.len(), 2);
    assert_eq!(w.beta.fetch_into(&mut w.bob), 1);

    // A client in groups on several hubs seals once per hub: the same queue sealed for the
    // other hub opens for that hub's deliveries only.
    let created = w.bob.qs_queue.clone().expect("bob's queue");
    let for_other_hub = mimi_ds::qs::seal_queue_info(
        &openmls_rust_crypto::RustCrypto::default(),
        BETA,
        OTHER_HUB,
        w.beta.qs.queue_encryption_key(),
        created.queue_id.as_slice(),
        created.fanout_auth_token.as_slice(),
    )
    .expect("seal");
    let mut other_hub_delivery = replayed.clone();
    other_hub_delivery.request.recipients = vec![for_other_hub.queue.clone()].into();
    assert_eq!(
        answer(&deliver_as(&mut w, &other_hub_delivery, OTHER_HUB)),
        QueueingServiceResponse::Ok
    );
    let mut misused = genuine.clone();
    misused.request.message.sequence_number += 7;
    misused.request.recipients = vec![for_other_hub.queue].into();
    assert_eq!(
        answer(&deliver_as(&mut w, &misused, HUB)),
        QueueingServiceResponse::InvalidClientQueueInformation(vec![0])
    );
}

/// Point 3: a third party that captured Bob's signed `create_queue` replays it inside the
/// window. The QS answers as it answered Bob (idempotent, nothing changes), but the answer
/// is sealed to Bob's `response_key`: neither it nor the request carries the queue ID or the
/// token, and the third party cannot open it. Swapping in its own key breaks the signature.
#[test]
fn a_captured_create_queue_reveals_neither_queue_id_nor_token() {
    let mut w = world(QsConfig::new(BETA));
    let now = w.beta.now_ms;
    let created = w.bob.qs_queue.clone().expect("bob's queue");
    let captured = w.bob.create_queue_request(now);

    let replayed = w.beta.assert_unchanged(|qs| qs.client_request(&captured));
    assert_eq!(replayed.status, QsStatus::Duplicate);
    for secret in [
        created.queue_id.as_slice(),
        created.fanout_auth_token.as_slice(),
    ] {
        assert!(!contains(&captured, secret), "the request leaks a secret");
        assert!(
            !contains(&replayed.response, secret),
            "the answer leaks a secret"
        );
    }
    let QsClientResponseBody::EncryptedQueueCreated(sealed) = client_answer(&replayed) else {
        panic!("expected encrypted_queue_created")
    };
    let eve_key = CreateQueueKey::derive(&[9u8; 32]).expect("key");
    assert_eq!(eve_key.open(BETA, &sealed), None);
    // Bob opens it: the queue it already owns.
    assert_eq!(w.bob.open_queue_created(&replayed.response), created);

    // The third party swaps in its own response key: the signature no longer verifies.
    let mut swapped: QsClientRequest = decode_exact(&captured).expect("decode");
    let QsClientRequestBody::CreateQueue { owner_key, .. } = swapped.body.clone() else {
        unreachable!()
    };
    swapped.body = QsClientRequestBody::CreateQueue {
        owner_key,
        response_key: eve_key.public_key().to_vec().into(),
    };
    w.beta.reject_client(
        &encode(&swapped).expect("encode"),
        ErrorCode::AuthenticationFailed,
    );
}

/// A `response_key` HPKE cannot seal to is refused, and nothing is created.
#[test]
fn create_queue_with_a_response_key_that_is_not_x25519_is_refused() {
    let mut w = world(QsConfig::new(BETA));
    let now = w.beta.now_ms;
    let carol = TestClient::new("carol", "phone", BETA);
    let request = carol.qs_request(
        QsClientRequestBody::CreateQueue {
            owner_key: carol.signer.to_public_vec().into(),
            response_key: vec![1, 2, 3].into(),
        },
        now,
    );
    w.beta.reject_client(&request, ErrorCode::MalformedRequest);
}

/// Point 4: a page is bounded in bytes as well as in messages, and always holds one message,
/// however large.
#[test]
fn fetch_pages_are_bounded_in_bytes_and_hold_at_least_one_message() {
    let mut config = QsConfig::new(BETA);
    // Filled in below, once a message's size is known.
    config.max_page_bytes = 0;
    let mut w = world(config);
    for i in 0..5u8 {
        let fanout = send(&mut w, &[b'm', i]);
        let _ = w.beta.deliver(&fanout);
    }
    let bob_queue = w.bob.qs_queue.clone().expect("queue").queue_id;
    let sizes: Vec<u64> = w
        .beta
        .storage
        .messages(bob_queue.as_slice(), 0, 100, usize::MAX)
        .expect("read")
        .iter()
        .map(queued_size)
        .collect();
    assert_eq!(sizes.len(), 5);
    let now = w.beta.now_ms;
    let fetch = |w: &mut World| {
        let out = w.beta.client_request(&w.bob.fetch_request(100, now));
        let QsClientResponseBody::Messages(page) = client_answer(&out) else {
            panic!("fetch refused")
        };
        page
    };

    // A bound below one message: one message per page, never none.
    let page = fetch(&mut w);
    assert_eq!(page.messages.len(), 1);
    assert_eq!((page.next_sequence, page.remaining), (1, 4));

    // A bound of two messages and a byte less than three: two per page.
    let mut config = w.beta.qs.config().clone();
    config.max_page_bytes = (sizes[0] + sizes[1] + sizes[2] - 1) as usize;
    // Fetching needs no queue key: a QS with another key but this bound serves the same store.
    w.beta.qs = TestQs::with_config(config).qs;
    let page = fetch(&mut w);
    assert_eq!(page.messages.len(), 2);
    let total: u64 = page.messages.iter().map(queued_size).sum();
    assert!(total <= w.beta.qs.config().max_page_bytes as u64);
    assert_eq!(page.remaining, 3);
}

/// Point 4: a queue holding `max_queue_messages` refuses the next message for that recipient
/// with `queue_full`; the other recipients are served, the hub is told per recipient, the
/// full queue is not "rejected" (its client stays in the group), and the same delivery goes
/// through once the client has acknowledged.
#[test]
fn a_full_queue_refuses_for_that_recipient_only_and_is_not_a_rejection() {
    let mut config = QsConfig::new(BETA);
    config.max_queue_messages = Some(2);
    let mut w = world(config);
    for text in [b"one", b"two"] {
        let fanout = send(&mut w, text);
        assert_eq!(
            answer(&w.beta.deliver(&fanout)),
            QueueingServiceResponse::Ok
        );
    }
    // Bob's laptop reads and acknowledges; Bob's phone does not.
    assert_eq!(w.beta.fetch_into(&mut w.bob2), 2);
    let third = send(&mut w, b"three");
    let phone = third
        .request
        .recipients
        .iter()
        .position(|q| *q == w.bob.queue.queue)
        .expect("bob's phone is a recipient") as u32;
    let outcome = w.beta.deliver(&third);
    assert_eq!(outcome.status, QsStatus::Accepted);
    assert_eq!(outcome.full_recipients, vec![phone]);
    assert!(outcome.invalid_recipients.is_empty());
    assert_eq!(outcome.enqueued.len(), 1, "the laptop got it");
    let response = answer(&outcome);
    assert_eq!(
        response,
        QueueingServiceResponse::RecipientsRefused(vec![RecipientRefusal {
            recipient: phone,
            code: ErrorCode::QueueFull as u16,
        }])
    );
    assert_eq!(response.full_recipients(), vec![phone]);
    assert!(
        third.rejected_queues(&response).is_empty(),
        "a full queue must not make the hub remove its client"
    );
    // In a mixed answer the invalid queue is still a rejection, the full one is not.
    let laptop = 1 - phone;
    let mixed = QueueingServiceResponse::RecipientsRefused(vec![
        RecipientRefusal {
            recipient: phone,
            code: ErrorCode::QueueFull as u16,
        },
        RecipientRefusal {
            recipient: laptop,
            code: ErrorCode::UnknownQueue as u16,
        },
    ]);
    assert_eq!(third.rejected_queues(&mixed), vec![w.bob2.queue.clone()]);

    // A delivery where every queue is full changes nothing.
    let fourth = send(&mut w, b"four");
    let mut to_phone = fourth.clone();
    to_phone.request.recipients = vec![w.bob.queue.queue.clone()].into();
    let all_full = w.beta.assert_unchanged(|qs| qs.deliver(&to_phone));
    assert_eq!(all_full.full_recipients, vec![0]);

    // The phone catches up; the hub's server delivers "three" again and it lands, once.
    assert_eq!(w.beta.fetch_into(&mut w.bob), 2);
    let again = w.beta.deliver(&third);
    assert_eq!(answer(&again), QueueingServiceResponse::Ok);
    assert_eq!(again.enqueued.len(), 1, "the laptop already had it");
    assert_eq!(w.beta.fetch_into(&mut w.bob), 1);
    assert_eq!(
        w.bob.process_inbox(),
        vec![
            Received::Application(b"one".to_vec()),
            Received::Application(b"two".to_vec()),
            Received::Application(b"three".to_vec()),
        ]
    );
}

/// Point 4: `max_queue_bytes` counts the bytes queued, released by acknowledgement; an empty
/// queue takes one message whatever its size.
#[test]
fn a_queue_byte_limit_counts_queued_bytes_and_an_empty_queue_takes_one_message() {
    let mut config = QsConfig::new(BETA);
    config.max_queue_bytes = Some(1);
    let mut w = world(config);
    let first = send(&mut w, b"larger than the limit");
    let outcome = w.beta.deliver(&first);
    assert_eq!(answer(&outcome), QueueingServiceResponse::Ok);
    let bob_queue = w.bob.qs_queue.clone().expect("queue").queue_id;
    let record = w
        .beta
        .storage
        .queue(bob_queue.as_slice())
        .expect("read")
        .expect("queue");
    let held = w
        .beta
        .storage
        .messages(bob_queue.as_slice(), 0, 10, usize::MAX)
        .expect("read");
    assert_eq!(record.queued_bytes, queued_size(&held[0]));

    let second = send(&mut w, b"x");
    let outcome = w.beta.deliver(&second);
    assert_eq!(outcome.full_recipients, vec![0, 1]);
    assert_eq!(answer(&outcome).full_recipients(), vec![0, 1]);

    // Acknowledging releases the bytes.
    assert_eq!(w.beta.fetch_into(&mut w.bob), 1);
    let record = w
        .beta
        .storage
        .queue(bob_queue.as_slice())
        .expect("read")
        .expect("queue");
    assert_eq!(record.queued_bytes, 0);
    let outcome = w.beta.deliver(&second);
    assert_eq!(outcome.full_recipients, vec![1], "only the laptop is full");
}

/// Point 4: delivery marks expire by index, over every queue, on any write: a mark is kept
/// up to and including its expiry and dropped on the first write after it, even if its own
/// queue is never written again.
#[test]
fn expired_delivery_marks_are_dropped_on_the_first_write_after_their_expiry() {
    let mut w = world(QsConfig::new(BETA));
    let window = w.beta.qs.config().duplicate_window_ms;
    let start = w.beta.now_ms;
    let first = send(&mut w, b"marked");
    let _ = w.beta.deliver(&first);
    assert_eq!(w.beta.storage.mark_count(), 2, "one per queue");

    // A write at exactly the expiry: the marks are still valid and kept.
    w.beta.now_ms = start + window;
    let mut carol = TestClient::new("carol", "phone", BETA);
    w.beta.connect(&mut carol, HUB);
    assert_eq!(w.beta.storage.mark_count(), 2);
    assert_eq!(w.beta.deliver(&first).status, QsStatus::Duplicate);

    // The first write after it (to a queue that never held them) drops them.
    w.beta.now_ms = start + window + 1;
    let mut dave = TestClient::new("dave", "phone", BETA);
    w.beta.connect(&mut dave, HUB);
    assert_eq!(w.beta.storage.mark_count(), 0);
    assert_eq!(
        w.beta
            .storage
            .queued(w.bob.qs_queue.clone().unwrap().queue_id.as_slice()),
        1
    );

    // A mark renewed by a redelivery after the window replaces the old one.
    assert_eq!(w.beta.deliver(&first).status, QsStatus::Accepted);
    assert_eq!(w.beta.storage.mark_count(), 2);
}
