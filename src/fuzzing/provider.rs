//! Fuzz bodies for the provider side: the Queueing Service and the transport router.
//!
//! * [`qs_bytes`]: a delivery or a client request from real clients, mutated (or replaced by
//!   raw bytes), against a QS holding real queues; no panic, the answer decodes, a refused
//!   request changes nothing, and the async driver decides as the sync one.
//! * [`route_bytes`]: arbitrary method, endpoint, headers and body through the router of a
//!   provider running both services; no panic, a known status, an error body that decodes,
//!   and nothing changed by a refusal.

use std::sync::OnceLock;

use crate::qs::{InMemoryQsStorage, QsConfig, QsStatus};
use crate::storage::InMemoryStorage;
use crate::testing::driver::block_on;
use crate::testing::{TestClient, TestDs, TestQs};
use crate::transport::{Endpoint, HttpRequest, Router, TransportConfig, OCTET_STREAM};
use crate::wire::{
    decode_exact, DsResponse, DsResponseBody, QsClientRequestBody, QsClientResponse,
    QueueingServiceResponse,
};
use crate::UnixTimeMs;

const HUB: &str = "hub.example";
const PROVIDER: &str = "b.example";

/// A QS with two real queues, limited to two messages each: Alice's holds one delivered
/// message, Bob's two (full), so a new delivery to both is enqueued for Alice and refused
/// `queue_full` for Bob. Valid requests against it: `(bytes, is_delivery)`.
struct QsFixture {
    qs: TestQs,
    requests: Vec<(Vec<u8>, bool)>,
}

fn qs_fixture() -> &'static QsFixture {
    static FIXTURE: OnceLock<QsFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut ds = TestDs::new(HUB);
        let mut config = QsConfig::new(PROVIDER);
        config.max_queue_messages = Some(2);
        let mut qs = TestQs::with_config(config);
        let mut alice = TestClient::new("alice", "phone", PROVIDER);
        let mut bob = TestClient::new("bob", "phone", PROVIDER);
        let mut carol = TestClient::new("carol", "phone", PROVIDER);
        qs.connect(&mut alice, HUB);
        qs.connect(&mut bob, HUB);
        ds.create_group_with(&mut carol, &mut [&mut alice, &mut bob]);
        let out = ds.process(&carol.message_request(b"fuzz", ds.now_ms));
        let delivery = out.fanout[0].clone();
        let _ = qs.deliver(&delivery);
        let out = ds.process(&carol.message_request(b"only bob", ds.now_ms));
        let mut to_bob = out.fanout[0].clone();
        to_bob.request.recipients = to_bob
            .request
            .recipients
            .iter()
            .filter(|q| **q == bob.queue.queue)
            .cloned()
            .collect();
        let _ = qs.deliver(&to_bob);
        let now = qs.now_ms;
        let requests = vec![
            (delivery.to_bytes(), true),
            (bob.fetch_request(10, now), false),
            (bob.ack_request(now), false),
            (
                bob.qs_request(QsClientRequestBody::Acknowledge { up_to_sequence: 1 }, now),
                false,
            ),
            (bob.qs_request(QsClientRequestBody::DeleteQueue, now), false),
            (
                TestClient::new("carol", "phone", PROVIDER).create_queue_request(now),
                false,
            ),
            // Signed, but with a response key the answer cannot be sealed to.
            (
                carol.qs_request(
                    QsClientRequestBody::CreateQueue {
                        owner_key: carol.signer.to_public_vec().into(),
                        response_key: vec![0x42; 3].into(),
                    },
                    now,
                ),
                false,
            ),
        ];
        QsFixture { qs, requests }
    })
}

/// Fuzz body: `data[0]` picks a valid request (its top bit: use `data[1..]` raw instead); the
/// rest are `(offset: u16, xor: u8)` mutations.
pub fn qs_bytes(data: &[u8]) {
    let fixture = qs_fixture();
    let [selector, rest @ ..] = data else {
        return;
    };
    let (original, is_delivery) = &fixture.requests[*selector as usize % fixture.requests.len()];
    let bytes = if selector & 0x80 != 0 {
        rest.to_vec()
    } else {
        let mut bytes = original.clone();
        for m in rest.chunks_exact(3) {
            let offset = u16::from_be_bytes([m[0], m[1]]) as usize % bytes.len();
            bytes[offset] ^= m[2];
        }
        bytes
    };
    let mut storage = fixture.qs.storage.clone();
    let now = UnixTimeMs(fixture.qs.now_ms);
    let qs = &fixture.qs.qs;
    let outcome = if *is_delivery {
        qs.deliver(now, &bytes, None, &mut storage)
    } else {
        qs.client_request(now, &bytes, &mut storage)
    }
    .expect("in-memory storage cannot fail");
    match (&outcome.status, is_delivery) {
        (QsStatus::Rejected(_), true) => {
            decode_exact::<DsResponse>(&outcome.response).expect("a refusal is a DSResponse");
        }
        (_, true) => {
            let answer = decode_exact::<QueueingServiceResponse>(&outcome.response)
                .expect("a served delivery answers a QueueingServiceResponse");
            // The answer names exactly the recipients the outcome reports; a full queue is
            // never an invalid one (the hub would remove its client).
            assert_eq!(answer.invalid_recipients(), outcome.invalid_recipients);
            assert_eq!(answer.full_recipients(), outcome.full_recipients);
            assert!(outcome
                .full_recipients
                .iter()
                .all(|i| !outcome.invalid_recipients.contains(i)));
        }
        (_, false) => {
            decode_exact::<QsClientResponse>(&outcome.response).expect("a QSClientResponse");
        }
    }
    if let QsStatus::Rejected(_) = outcome.status {
        assert!(
            storage == fixture.qs.storage,
            "a refused request changed storage"
        );
    }
    // The async driver runs the same steps: it decides the same. (A new queue's ID, token
    // and sealed answer are fresh randomness, so only deliveries are compared byte for byte.)
    let mut async_storage = fixture.qs.storage.clone();
    let asynced = if *is_delivery {
        block_on(qs.deliver_async(now, &bytes, None, &mut async_storage))
    } else {
        block_on(qs.client_request_async(now, &bytes, &mut async_storage))
    }
    .expect("in-memory storage cannot fail");
    assert_eq!(asynced.status, outcome.status);
    assert_eq!(asynced.refusal, outcome.refusal);
    if *is_delivery {
        assert_eq!(asynced, outcome);
        assert!(async_storage == storage, "the async driver wrote otherwise");
    }
}

/// A provider running a hub (with one reserved group ID) and a QS behind a router.
struct RouterFixture {
    router: Router,
    ds_storage: InMemoryStorage,
    qs_storage: InMemoryQsStorage,
    now_ms: u64,
}

fn router_fixture() -> &'static RouterFixture {
    static FIXTURE: OnceLock<RouterFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut ds = TestDs::new(HUB);
        let _ = ds.request_group_id();
        let qs = TestQs::new(PROVIDER);
        RouterFixture {
            router: Router::new(TransportConfig::new(PROVIDER, Some(HUB.into())))
                .with_ds(ds.ds)
                .with_qs(qs.qs),
            ds_storage: ds.storage,
            qs_storage: qs.storage,
            now_ms: ds.now_ms,
        }
    })
}

/// Fuzz body: `data[0]` picks the method, `data[1]` the path (an endpoint or a stranger),
/// `data[2]` the `Host`, `data[3]` the content type and whether the peer is authenticated;
/// the rest is the body.
pub fn route_bytes(data: &[u8]) {
    let fixture = router_fixture();
    let [method, path, host, kind, body @ ..] = data else {
        return;
    };
    let method = ["POST", "GET", "PUT", "post"][*method as usize % 4];
    let path = Endpoint::ALL
        .get(*path as usize % (Endpoint::ALL.len() + 1))
        .map_or("/group_operation/../x", |e| e.path());
    let host = [PROVIDER, HUB, "b.example:443", "evil.example"][*host as usize % 4];
    let content_type =
        [OCTET_STREAM, "text/plain", "APPLICATION/OCTET-STREAM; x=1"][(*kind & 0x7f) as usize % 3];
    let headers = [("Host", host), ("Content-Type", content_type)];
    let request = HttpRequest {
        method,
        path,
        headers: &headers,
        body,
        authenticated_peer: (kind & 0x80 != 0).then_some(HUB),
    };
    let mut ds_storage = fixture.ds_storage.clone();
    let mut qs_storage = fixture.qs_storage.clone();
    let routed = fixture
        .router
        .handle(
            UnixTimeMs(fixture.now_ms),
            &request,
            &mut ds_storage,
            &mut qs_storage,
        )
        .expect("in-memory storage cannot fail");
    let status = routed.response.status;
    assert!(
        [200, 400, 403, 404, 405, 409, 413, 415, 421, 501].contains(&status),
        "unexpected status {status}"
    );
    if status != 200 {
        let body = decode_exact::<DsResponse>(&routed.response.body)
            .expect("every refusal carries a DSResponse");
        assert!(matches!(body.body, DsResponseBody::Error(_)));
        assert!(routed.fanout.is_empty(), "a refusal fanned out");
        assert!(
            ds_storage == fixture.ds_storage && qs_storage == fixture.qs_storage,
            "a refusal changed storage"
        );
    }
}
