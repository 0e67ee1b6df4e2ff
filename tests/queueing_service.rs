//! The Queueing Service with real openmls clients and a real DS: sealed queue IDs, delivery,
//! paging and acknowledgement, client authentication, duplicate deliveries, refused
//! deliveries (systematically: truncations and bit flips), racing writes, and the loop back to
//! the DS when a queue is gone (wire-format.md §6.3, §10).

use openmls_rust_crypto::RustCrypto;

use mimi_ds::qs::{seal_queue_info, QsStatus, QsStorage, QsWriteOutcome, QsWriteSet};
use mimi_ds::testing::{
    assert_unchanged, client_request_via_driver, decode_response, deliver_via_driver, Received,
    RecordingQsStorage, TestClient, TestDs, TestQs,
};
use mimi_ds::wire::{
    decode_exact, encode, ErrorCode, QsClientRequestBody, QsClientResponse, QsClientResponseBody,
    QueueingServiceResponse,
};
use mimi_ds::{Fanout, HubEvent, QsNotAllowed, QsRejectReason, Status, UnixTimeMs};

const HUB: &str = "hub.example";
const ALPHA: &str = "alpha.example";
const BETA: &str = "beta.example";

/// A hub, two providers, and a group of Alice (alpha) and Bob's two clients (beta), every
/// client with a real queue at its provider.
struct World {
    ds: TestDs,
    alpha: TestQs,
    beta: TestQs,
    alice: TestClient,
    bob: TestClient,
    bob2: TestClient,
    group_id: Vec<u8>,
}

fn world() -> World {
    let mut ds = TestDs::new(HUB);
    let mut alpha = TestQs::new(ALPHA);
    let mut beta = TestQs::new(BETA);
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    let mut bob2 = TestClient::new("bob", "laptop", BETA);
    alpha.connect(&mut alice, HUB);
    beta.connect(&mut bob, HUB);
    beta.connect(&mut bob2, HUB);
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob, &mut bob2]);
    World {
        ds,
        alpha,
        beta,
        alice,
        bob,
        bob2,
        group_id,
    }
}

fn qs_response(bytes: &[u8]) -> QsClientResponseBody {
    decode_exact::<QsClientResponse>(bytes)
        .expect("QS answers decode")
        .body
}

fn delivery_response(bytes: &[u8]) -> QueueingServiceResponse {
    decode_exact(bytes).expect("a served delivery answers a QueueingServiceResponse")
}

#[test]
fn messages_travel_from_the_hub_through_sealed_queues_to_clients() {
    let mut w = world();
    let out =
        w.ds.process(&w.alice.message_request(b"hello", w.ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
    // The hub only ever saw ciphertexts: no queue ID appears in what it fans out.
    let bob_queue = w.bob.qs_queue.clone().unwrap().queue_id;
    for fanout in &out.fanout {
        assert_eq!(fanout.destination, BETA);
        let bytes = fanout.to_bytes();
        assert!(!bytes
            .windows(bob_queue.as_slice().len())
            .any(|window| window == bob_queue.as_slice()));
        let delivered = w.beta.deliver(fanout);
        assert_eq!(delivered.status, QsStatus::Accepted);
        assert_eq!(
            delivery_response(&delivered.response),
            QueueingServiceResponse::Ok
        );
        assert_eq!(delivered.enqueued.len(), 2, "both of Bob's queues");
    }
    for client in [&mut w.bob, &mut w.bob2] {
        assert_eq!(w.beta.fetch_into(client), 1);
        assert_eq!(
            client.process_inbox(),
            vec![Received::Application(b"hello".to_vec())]
        );
    }
    // Acknowledged messages are gone.
    let bob_id = w.bob.qs_queue.clone().unwrap().queue_id;
    assert_eq!(w.beta.storage.queued(bob_id.as_slice()), 0);
}

#[test]
fn fetch_pages_in_order_and_acknowledge_drops_only_what_was_read() {
    let mut w = world();
    let mut sent = Vec::new();
    for i in 0..7u8 {
        let text = vec![b'm', i];
        let out = w.ds.process(&w.alice.message_request(&text, w.ds.now_ms));
        for fanout in &out.fanout {
            let _ = w.beta.deliver(fanout);
        }
        sent.push(Received::Application(text));
    }
    let now = w.beta.now_ms;
    // Pages of 3: 3 + 3 + 1, with `remaining` counting down.
    let mut pages = Vec::new();
    loop {
        let out = w.beta.client_request(&w.bob.fetch_request(3, now));
        let (count, remaining) = w.bob.take_page(&out.response);
        pages.push((count, remaining));
        if remaining == 0 {
            break;
        }
    }
    assert_eq!(pages, vec![(3, 4), (3, 1), (1, 0)]);
    assert_eq!(w.bob.process_inbox(), sent);

    // Fetching again without acknowledging returns the same messages.
    let again = w.beta.client_request(&w.bob.qs_request(
        QsClientRequestBody::Fetch {
            from_sequence: 0,
            max_messages: 100,
        },
        now,
    ));
    let QsClientResponseBody::Messages(page) = qs_response(&again.response) else {
        panic!("fetch refused")
    };
    let numbers: Vec<u64> = page.messages.iter().map(|m| m.sequence_number).collect();
    assert_eq!(numbers, (0..7).collect::<Vec<_>>());

    // Acknowledge the first 5; a fetch from 0 starts at 5.
    let _ = w.beta.accept_client(
        &w.bob
            .qs_request(QsClientRequestBody::Acknowledge { up_to_sequence: 5 }, now),
    );
    let after = w.beta.client_request(&w.bob.qs_request(
        QsClientRequestBody::Fetch {
            from_sequence: 0,
            max_messages: 100,
        },
        now,
    ));
    let QsClientResponseBody::Messages(page) = qs_response(&after.response) else {
        panic!("fetch refused")
    };
    assert_eq!(page.messages[0].sequence_number, 5);
    assert_eq!(page.messages.len(), 2);

    // Acknowledging less again changes nothing; beyond the queue's end is refused.
    let repeat = w.beta.assert_unchanged(|qs| {
        qs.client_request(
            &w.bob
                .qs_request(QsClientRequestBody::Acknowledge { up_to_sequence: 3 }, now),
        )
    });
    assert_eq!(repeat.status, QsStatus::Duplicate);
    assert_eq!(
        w.beta.reject_client(
            &w.bob
                .qs_request(QsClientRequestBody::Acknowledge { up_to_sequence: 8 }, now),
            ErrorCode::NotAllowed,
        ),
        QsNotAllowed::AcknowledgesUnqueued.into()
    );

    // Pages are capped by the QS's limit whatever the client asks for.
    let capped = w.beta.client_request(&w.bob.qs_request(
        QsClientRequestBody::Fetch {
            from_sequence: 0,
            max_messages: u32::MAX,
        },
        now,
    ));
    let QsClientResponseBody::Messages(page) = qs_response(&capped.response) else {
        panic!("fetch refused")
    };
    assert!(page.messages.len() <= w.beta.qs.config().max_page as usize);
}

#[test]
fn client_requests_are_authenticated_fresh_and_scoped_to_the_owner() {
    let mut w = world();
    let now = w.beta.now_ms;

    // Bob's laptop signs a request naming Bob's phone's queue.
    let mut impostor = TestClient::new("bob", "laptop", BETA);
    impostor.qs_queue = w.bob.qs_queue.clone();
    for body in [
        QsClientRequestBody::Fetch {
            from_sequence: 0,
            max_messages: 10,
        },
        QsClientRequestBody::Acknowledge { up_to_sequence: 0 },
        QsClientRequestBody::DeleteQueue,
    ] {
        assert_eq!(
            w.beta.reject_client(
                &impostor.qs_request(body, now),
                ErrorCode::AuthenticationFailed,
            ),
            QsRejectReason::SignatureDoesNotVerify
        );
    }
    // Stale and future timestamps.
    for skew in [-(5 * 60 * 1000 + 1), 5 * 60 * 1000 + 1] {
        let at = now.checked_add_signed(skew).unwrap();
        w.beta
            .reject_client(&w.bob.fetch_request(10, at), ErrorCode::StaleTimestamp);
    }
    // A queue that does not exist.
    let mut stranger = TestClient::new("eve", "phone", BETA);
    stranger.qs_queue = w.bob.qs_queue.clone().map(|mut q| {
        q.queue_id = vec![0u8; 16].into();
        q
    });
    w.beta
        .reject_client(&stranger.fetch_request(10, now), ErrorCode::UnknownQueue);
    // create_queue must prove possession of the owner key.
    let mut forged =
        decode_exact::<mimi_ds::wire::QsClientRequest>(&stranger.create_queue_request(now))
            .unwrap();
    forged.body = QsClientRequestBody::CreateQueue {
        owner_key: w.bob.signer.to_public_vec().into(),
        response_key: stranger.create_queue_key.public_key().to_vec().into(),
    };
    w.beta
        .reject_client(&encode(&forged).unwrap(), ErrorCode::AuthenticationFailed);
    // create_queue names no queue: the QS picks its ID.
    let mut named =
        decode_exact::<mimi_ds::wire::QsClientRequest>(&stranger.create_queue_request(now))
            .unwrap();
    named.queue_id = vec![1u8; 16].into();
    assert_eq!(
        w.beta
            .reject_client(&encode(&named).unwrap(), ErrorCode::NotAllowed),
        QsNotAllowed::CreateQueueNamesQueue.into()
    );

    // Creating again with the same key is the same queue, no new one.
    let again = w
        .beta
        .assert_unchanged(|qs| qs.client_request(&w.bob.create_queue_request(now)));
    assert_eq!(again.status, QsStatus::Duplicate);
    assert_eq!(
        Some(w.bob.open_queue_created(&again.response)),
        w.bob.qs_queue.clone()
    );

    // The owner deletes its queue; after that it is unknown.
    let _ = w
        .beta
        .accept_client(&w.bob.qs_request(QsClientRequestBody::DeleteQueue, now));
    w.beta
        .reject_client(&w.bob.fetch_request(10, now), ErrorCode::UnknownQueue);
}

#[test]
fn a_byte_identical_redelivery_is_accepted_and_stored_once() {
    let mut w = world();
    let out = w.ds.process(&w.alice.message_request(b"once", w.ds.now_ms));
    let fanout = &out.fanout[0];
    let first = w.beta.deliver(fanout);
    assert_eq!(first.status, QsStatus::Accepted);
    let after_first = w.beta.storage.clone();
    let second = w.beta.deliver(fanout);
    assert_eq!(second.status, QsStatus::Duplicate);
    assert_eq!(second.response, first.response, "same answer");
    assert!(second.enqueued.is_empty());
    assert_eq!(w.beta.storage, after_first, "stored once");

    // A failover that batches the same message differently (only Bob's laptop) is the same
    // delivery for that queue.
    let mut partial = fanout.clone();
    partial.request.recipients = (fanout.request.recipients.iter())
        .filter(|q| **q == w.bob2.queue.queue)
        .cloned()
        .collect();
    assert_eq!(partial.request.recipients.len(), 1);
    assert_eq!(w.beta.deliver(&partial).status, QsStatus::Duplicate);
    assert_eq!(w.beta.storage, after_first);

    // After the window it is a new delivery again.
    w.beta.now_ms += w.beta.qs.config().duplicate_window_ms + 1;
    assert_eq!(w.beta.deliver(fanout).status, QsStatus::Accepted);

    // The clients see the message once (and a second time only after the window).
    assert_eq!(w.beta.fetch_into(&mut w.bob), 2);
}

#[test]
fn recipients_that_cannot_be_served_are_named_and_the_rest_are_served() {
    let mut w = world();
    let out = w.ds.process(&w.alice.message_request(b"hi", w.ds.now_ms));
    let mut fanout = out.fanout[0].clone();
    let bob_queue = w.bob.qs_queue.clone().unwrap();
    let key = w.beta.qs.queue_encryption_key().to_vec();
    let sealed = |domain: &str, queue_id: &[u8], token: &[u8]| {
        seal_queue_info(&RustCrypto::default(), domain, HUB, &key, queue_id, token)
            .unwrap()
            .queue
    };
    let mut wrong_token = bob_queue.fanout_auth_token.as_slice().to_vec();
    wrong_token[0] ^= 1;
    let invalid = vec![
        b"not a ciphertext".to_vec().into(),
        // Sealed for another provider's domain: the HPKE context differs.
        sealed(
            ALPHA,
            bob_queue.queue_id.as_slice(),
            bob_queue.fanout_auth_token.as_slice(),
        ),
        // The right queue with a wrong token.
        sealed(BETA, bob_queue.queue_id.as_slice(), &wrong_token),
        // A queue that does not exist.
        sealed(BETA, &[7u8; 16], bob_queue.fanout_auth_token.as_slice()),
    ];
    let valid = fanout.request.recipients.len() as u32;
    let mut recipients = fanout.request.recipients.to_vec();
    recipients.extend(invalid);
    fanout.request.recipients = recipients.into();
    let delivered = w.beta.deliver(&fanout);
    let expected: Vec<u32> = (valid..valid + 4).collect();
    assert_eq!(
        delivery_response(&delivered.response),
        QueueingServiceResponse::InvalidClientQueueInformation(expected.clone())
    );
    assert_eq!(delivered.invalid_recipients, expected);
    assert_eq!(delivered.enqueued.len(), 2, "the valid recipients got it");
    assert_eq!(w.beta.fetch_into(&mut w.bob), 1);
    // A queue sealed to beta's key cannot be opened by alpha.
    let mut misrouted = out.fanout[0].clone();
    misrouted.request.recipient_domain = ALPHA.as_bytes().to_vec().into();
    let at_alpha = w.alpha.deliver(&misrouted);
    assert_eq!(
        delivery_response(&at_alpha.response),
        QueueingServiceResponse::InvalidClientQueueInformation(vec![0, 1])
    );
}

#[test]
fn deliveries_for_another_provider_or_from_an_unauthenticated_sender_are_refused() {
    let mut w = world();
    let out = w.ds.process(&w.alice.message_request(b"hi", w.ds.now_ms));
    let fanout = out.fanout[0].clone();
    let now = UnixTimeMs(w.beta.now_ms);

    // Forwarding attack: alpha replays a delivery it received to beta.
    let mut forwarded = fanout.clone();
    forwarded.request.recipient_domain = ALPHA.as_bytes().to_vec().into();
    assert_eq!(
        w.beta.reject_delivery(&forwarded, ErrorCode::NotAllowed),
        QsRejectReason::WrongRecipient
    );

    // mTLS authenticated alpha, but the delivery claims to come from the hub.
    let spoofed = assert_unchanged(&mut w.beta.storage, |storage| {
        deliver_via_driver(&w.beta.qs, now, &fanout.to_bytes(), Some(ALPHA), storage)
    });
    assert_eq!(
        spoofed.status,
        QsStatus::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(spoofed.refusal, Some(QsRejectReason::SenderMismatch));

    // Another protocol version.
    let mut bytes = fanout.to_bytes();
    bytes[1] = 2;
    let versioned = assert_unchanged(&mut w.beta.storage, |storage| {
        deliver_via_driver(&w.beta.qs, now, &bytes, None, storage)
    });
    assert_eq!(
        versioned.status,
        QsStatus::Rejected(ErrorCode::UnsupportedVersion)
    );

    // With the right peer it goes through.
    let ok = deliver_via_driver(
        &w.beta.qs,
        now,
        &fanout.to_bytes(),
        Some(HUB),
        &mut w.beta.storage,
    );
    assert_eq!(ok.status, QsStatus::Accepted);
}

#[test]
fn truncated_and_bit_flipped_requests_never_panic_and_change_nothing_when_refused() {
    let mut w = world();
    let out =
        w.ds.process(&w.alice.message_request(b"sweep", w.ds.now_ms));
    let delivery = out.fanout[0].to_bytes();
    let now = UnixTimeMs(w.beta.now_ms);
    let fetch = w.bob.fetch_request(10, now.0);
    let ack = w.bob.ack_request(now.0);
    let create = TestClient::new("dave", "phone", BETA).create_queue_request(now.0);

    let before = w.beta.storage.clone();
    let mut checked = 0;
    let mut check = |bytes: &[u8], is_delivery: bool| {
        let mut storage = before.clone();
        let outcome = if is_delivery {
            deliver_via_driver(&w.beta.qs, now, bytes, None, &mut storage)
        } else {
            client_request_via_driver(&w.beta.qs, now, bytes, &mut storage)
        };
        if let QsStatus::Rejected(_) = outcome.status {
            assert_eq!(storage, before, "a refused request changed storage");
        }
        checked += 1;
        outcome
    };
    for (bytes, is_delivery) in [
        (&delivery, true),
        (&fetch, false),
        (&ack, false),
        (&create, false),
    ] {
        for len in 0..bytes.len() {
            let outcome = check(&bytes[..len], is_delivery);
            assert!(
                matches!(outcome.status, QsStatus::Rejected(_)),
                "a truncated request was served"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let outcome = check(&flipped, is_delivery);
            // A flip in a signed client request must never be served.
            if !is_delivery {
                assert!(
                    matches!(outcome.status, QsStatus::Rejected(_)),
                    "bit {bit} flipped and still served"
                );
            }
        }
    }
    assert!(checked > 5_000, "{checked}");
}

#[test]
fn racing_deliveries_to_one_queue_both_land_with_distinct_numbers() {
    let mut w = world();
    let first = w.ds.process(&w.alice.message_request(b"one", w.ds.now_ms));
    let second = w.ds.process(&w.alice.message_request(b"two", w.ds.now_ms));
    let now = UnixTimeMs(w.beta.now_ms);

    // What a rival server writes for `first`, planned against the same snapshot.
    let rival_writes = capture_writes(&w, &first.fanout[0]);

    // A backend where another server enqueues into the same queue between this request's
    // read and its write, once.
    let mut racing =
        RecordingQsStorage::new(w.beta.storage.clone()).with_rival_before_first_write(|inner| {
            assert_eq!(inner.write(&rival_writes).unwrap(), QsWriteOutcome::Applied);
        });
    let outcome = w
        .beta
        .qs
        .deliver(now, &second.fanout[0].to_bytes(), None, &mut racing)
        .unwrap();
    assert_eq!(
        outcome.status,
        QsStatus::Accepted,
        "retried after the conflict"
    );
    w.beta.storage = racing.inner;
    assert_eq!(w.beta.fetch_into(&mut w.bob), 2);
    assert_eq!(
        w.bob.process_inbox(),
        vec![
            Received::Application(b"one".to_vec()),
            Received::Application(b"two".to_vec())
        ]
    );
}

/// The write set a delivery makes, recorded by a storage that applies it.
fn capture_writes(w: &World, fanout: &Fanout) -> QsWriteSet {
    let mut recorder = RecordingQsStorage::new(w.beta.storage.clone());
    let _ = w
        .beta
        .qs
        .deliver(
            UnixTimeMs(w.beta.now_ms),
            &fanout.to_bytes(),
            None,
            &mut recorder,
        )
        .unwrap();
    let (writes, _) = recorder.writes().last().expect("the delivery wrote");
    writes.clone()
}

#[test]
fn a_rejected_queue_makes_the_hub_propose_removing_its_client() {
    let mut w = world();
    // Bob's laptop is deleted at its provider: its queue goes.
    let now = w.beta.now_ms;
    let _ = w
        .beta
        .accept_client(&w.bob2.qs_request(QsClientRequestBody::DeleteQueue, now));

    let out =
        w.ds.process(&w.alice.message_request(b"anyone?", w.ds.now_ms));
    let fanout = &out.fanout[0];
    let answer = w.beta.deliver(fanout);
    let response = delivery_response(&answer.response);
    let rejected = fanout.rejected_queues(&response);
    assert_eq!(rejected, vec![w.bob2.queue.clone()]);

    // The hub's server reports it; the DS proposes the Remove, signed with its own key, to
    // every other member.
    let mut removals = Vec::new();
    for queue in rejected {
        let event = HubEvent::QueueRejected(queue);
        let outcome = w.ds.handle_event(fanout.group_id(), &event);
        assert_eq!(outcome.status, Status::Accepted);
        removals.extend(outcome.fanout);
    }
    assert!(!removals.is_empty());
    for fanout in &removals {
        let qs = if fanout.destination == ALPHA {
            &mut w.alpha
        } else {
            &mut w.beta
        };
        let answer = delivery_response(&qs.deliver(fanout).response);
        assert_eq!(
            answer,
            QueueingServiceResponse::Ok,
            "the removed client is not a recipient"
        );
    }
    assert_eq!(w.alpha.fetch_into(&mut w.alice), 1);
    assert_eq!(w.alice.process_inbox(), vec![Received::Proposal]);
    assert_eq!(w.beta.fetch_into(&mut w.bob), 2);
    assert_eq!(
        w.bob.process_inbox(),
        vec![
            Received::Application(b"anyone?".to_vec()),
            Received::Proposal
        ]
    );

    // Alice commits the Remove (tests/hub_events.rs covers what is refused until then).
    let commit = w.ds.process(&w.alice.update_request(w.ds.now_ms));
    assert_eq!(
        commit.status,
        Status::Accepted,
        "{:?}",
        decode_response(&commit.response)
    );
    w.alice.confirm_commit();
    for fanout in &commit.fanout {
        let _ = w.beta.deliver(fanout);
    }
    w.beta.fetch_into(&mut w.bob);
    let received = w.bob.process_inbox();
    assert!(matches!(
        received[..],
        [Received::Commit { removed: false, .. }]
    ));
    assert_eq!(w.bob.epoch(), w.alice.epoch());
    assert_eq!(w.alice.group().members().count(), 2);
}

#[test]
fn group_ids_are_opaque_to_the_queue_and_kept_as_sent() {
    let mut w = world();
    let out = w.ds.process(&w.alice.message_request(b"x", w.ds.now_ms));
    let _ = w.beta.deliver(&out.fanout[0]);
    let now = w.beta.now_ms;
    let page = w.beta.client_request(&w.bob.fetch_request(1, now));
    let QsClientResponseBody::Messages(page) = qs_response(&page.response) else {
        panic!()
    };
    let queued = &page.messages[0];
    assert_eq!(queued.sender_domain.as_slice(), HUB.as_bytes());
    assert_eq!(queued.message, out.fanout[0].request.message);
    assert_eq!(queued.message.group_id.as_slice(), &w.group_id[..]);
    assert_eq!(queued.received_ms, now);
}

/// `rejected_queues` maps a QS's indices back to the queues it was sent, once each, and
/// ignores indices it had no business naming.
#[test]
fn rejected_queues_maps_indices_once_and_ignores_strangers() {
    let mut w = world();
    let out = w.ds.process(&w.alice.message_request(b"x", w.ds.now_ms));
    let fanout = &out.fanout[0];
    assert_eq!(fanout.group_id(), &w.group_id[..]);
    let sent: Vec<_> = fanout.request.recipients.to_vec();
    assert_eq!(sent.len(), 2);
    let answer = QueueingServiceResponse::InvalidClientQueueInformation(vec![1, 0, 1, 7]);
    let rejected = fanout.rejected_queues(&answer);
    let queues: Vec<_> = rejected.iter().map(|c| c.queue.clone()).collect();
    assert_eq!(queues, vec![sent[1].clone(), sent[0].clone()]);
    assert!(rejected
        .iter()
        .all(|c| c.provider_domain.as_slice() == BETA.as_bytes()));
    assert!(fanout
        .rejected_queues(&QueueingServiceResponse::Ok)
        .is_empty());
}
