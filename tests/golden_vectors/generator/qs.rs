//! The Queueing Service: its client protocol with a real `TestQs`, and its answers to fanout.

use mimi_ds::qs::{QsConfig, QsStatus};
use mimi_ds::testing::seeded::seed;
use mimi_ds::testing::{Received, TestDs, TestQs};
use mimi_ds::wire::{
    decode_exact, encode, DsErrorDetails, ErrorCode, QsClientRequestBody, QsClientResponseBody,
    QueueInfoPlaintext, QueueingServiceResponse, RecipientRefusal,
};
use mimi_ds::DsConfig;

use super::{accepted, client, qs_answer, Vectors};

/// The Queueing Service's client protocol (wire-format.md §10.3), every message made by a
/// real client and answered by a real `TestQs`: erin-1 creates its queue at q.example and
/// publishes it sealed, a hub group fans a real message out to it, erin-1 fetches and
/// acknowledges it, deletes the queue, and a later fetch finds no queue.
pub(super) fn client_protocol(v: &mut Vectors) {
    let mut ds = TestDs::seeded(DsConfig::new("hub.example"), seed("golden qs hub.example"));
    let mut qs = TestQs::seeded(QsConfig::new("q.example"), seed("golden q.example"));
    let mut frank = client("frank", "frank-1", "f.example");
    let mut erin = client("erin", "erin-1", "q.example");

    // create_queue (0) -> encrypted_queue_created (2); erin-1 opens it, seals the queue
    // for hub.example and publishes it.
    let request = erin.create_queue_request(qs.now_ms);
    let out = qs.client_request(&request);
    assert!(matches!(
        qs_answer(&out, QsStatus::Accepted),
        QsClientResponseBody::EncryptedQueueCreated(_)
    ));
    let created = erin.open_queue_created(&out.response);
    erin.use_queue(&out.response, "hub.example");
    v.add(
        "qs_client_request_create_queue",
        "create_queue (0) by erin-1, owned by its MLS signature key, answer sealed to its response_key",
        request,
    );
    v.add(
        "qs_client_response_encrypted_queue_created",
        "encrypted_queue_created (2): erin-1's queue at q.example, the answer to qs_client_request_create_queue",
        out.response,
    );
    v.add(
        "queue_created_plaintext",
        "the QueueCreated inside qs_client_response_encrypted_queue_created",
        encode(&created).expect("encode"),
    );
    v.add(
        "queue_info_plaintext",
        "what erin-1 seals into its ClientQueueConfig: queue_created_plaintext's queue ID and token",
        encode(&QueueInfoPlaintext {
            queue_id: created.queue_id.clone(),
            fanout_auth_token: created.fanout_auth_token.clone(),
        })
        .expect("encode"),
    );

    // A real delivery: frank-1's group with erin-1 (whose leaf carries the sealed queue),
    // and a message the hub fans out to q.example.
    ds.create_group_with(&mut frank, &mut [&mut erin]);
    ds.advance(1000);
    qs.now_ms = ds.now_ms;
    let out = ds.process(&frank.message_request(b"hello, erin", ds.now_ms));
    accepted(&out);
    let fanout = out
        .fanout
        .iter()
        .find(|f| f.destination == "q.example")
        .expect("fanout to q.example");
    let delivered = qs.deliver(fanout);
    assert_eq!(delivered.status, QsStatus::Accepted);
    assert_eq!(
        decode_exact::<QueueingServiceResponse>(&delivered.response).expect("decode"),
        QueueingServiceResponse::Ok
    );
    assert_eq!(
        delivered.enqueued,
        vec![created.queue_id.as_slice().to_vec()]
    );

    // fetch (2) -> messages (3) with that message.
    let request = erin.fetch_request(10, qs.now_ms);
    let out = qs.client_request(&request);
    let QsClientResponseBody::Messages(page) = qs_answer(&out, QsStatus::Accepted) else {
        panic!("expected messages")
    };
    assert_eq!(
        (page.messages.len(), page.next_sequence, page.remaining),
        (1, 1, 0)
    );
    assert_eq!(erin.take_page(&out.response), (1, 0));
    assert_eq!(
        erin.process_inbox(),
        vec![Received::Application(b"hello, erin".to_vec())]
    );
    v.add(
        "qs_client_request_fetch",
        "fetch (2) by erin-1 from sequence 0, at most 10 messages",
        request,
    );
    v.add(
        "qs_client_response_messages",
        "messages (3): hub.example's fanout of frank-1's PrivateMessage, the answer to qs_client_request_fetch",
        out.response,
    );

    // acknowledge (3) -> ok (0).
    let request = erin.ack_request(qs.now_ms);
    let out = qs.client_request(&request);
    assert_eq!(
        qs_answer(&out, QsStatus::Accepted),
        QsClientResponseBody::Ok
    );
    assert_eq!(qs.storage.queued(created.queue_id.as_slice()), 0);
    v.add(
        "qs_client_request_acknowledge",
        "acknowledge (3) by erin-1 up to sequence 1",
        request,
    );
    v.add(
        "qs_client_response_ok",
        "ok (0): the answer to qs_client_request_acknowledge",
        out.response,
    );

    // delete_queue (1); a fetch afterwards is answered unknown_queue.
    let request = erin.qs_request(QsClientRequestBody::DeleteQueue, qs.now_ms);
    let out = qs.client_request(&request);
    assert_eq!(
        qs_answer(&out, QsStatus::Accepted),
        QsClientResponseBody::Ok
    );
    v.add(
        "qs_client_request_delete_queue",
        "delete_queue (1) by erin-1",
        request,
    );
    let out = qs.client_request(&erin.fetch_request(10, qs.now_ms));
    let QsClientResponseBody::Error(error) =
        qs_answer(&out, QsStatus::Rejected(ErrorCode::UnknownQueue))
    else {
        panic!("expected an error")
    };
    assert_eq!(
        (error.code, error.details),
        (ErrorCode::UnknownQueue, DsErrorDetails::None)
    );
    v.add(
        "qs_client_response_error",
        "error (1) unknown_queue: erin-1's fetch after qs_client_request_delete_queue",
        out.response,
    );
}

/// The Queueing Service's answers to a DS's fanout (wire-format.md §10.2). A QS makes them
/// from nothing but the recipients' positions and codes, so they are encoded directly.
pub(super) fn fanout_responses(v: &mut Vectors) {
    v.add(
        "qs_response_ok",
        "ok (0)",
        encode(&QueueingServiceResponse::Ok).expect("encode"),
    );
    v.add(
        "qs_response_invalid_client_queue_information",
        "invalid_client_queue_information (1) for recipients 0 and 2",
        encode(&QueueingServiceResponse::InvalidClientQueueInformation(
            vec![0, 2],
        ))
        .expect("encode"),
    );
    v.add(
        "qs_response_recipients_refused",
        "recipients_refused (2): recipient 0 unknown_queue (19), recipient 2 queue_full (23)",
        encode(&QueueingServiceResponse::RecipientsRefused(vec![
            RecipientRefusal {
                recipient: 0,
                code: ErrorCode::UnknownQueue as u16,
            },
            RecipientRefusal {
                recipient: 2,
                code: ErrorCode::QueueFull as u16,
            },
        ]))
        .expect("encode"),
    );
}
