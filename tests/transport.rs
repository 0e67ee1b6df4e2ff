//! The transport router (wire-format.md §11): every endpoint (docs/decisions.md D19) reached
//! with real requests from real openmls clients, and every HTTP-level refusal with its status
//! and a `DSResponse` error body, leaving storage untouched.

use mimi_ds::qs::InMemoryQsStorage;
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::driver::{block_on, Driver};
use mimi_ds::testing::{Received, TestClient, TestDs, TestQs};
use mimi_ds::transport::{
    Endpoint, HttpRequest, HttpResponse, Routed, Router, TransportConfig, OCTET_STREAM,
};
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    ErrorCode, QueueingServiceResponse, PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::UnixTimeMs;

const HUB: &str = "hub.example";
const PROVIDER: &str = "alpha.example";

/// One provider that runs the hub and a QS, behind a router.
struct Provider {
    router: Router,
    ds_storage: InMemoryStorage,
    qs_storage: InMemoryQsStorage,
    now_ms: u64,
    external_sender: openmls::prelude::ExternalSender,
    /// `Router::handle` or `Router::handle_async`: every test here runs through both.
    driver: Driver,
}

impl Provider {
    fn new(driver: Driver) -> Self {
        let ds = TestDs::new(HUB);
        let qs = TestQs::new(PROVIDER);
        let config = TransportConfig::new(PROVIDER, Some(HUB.to_string()));
        Self {
            router: Router::new(config).with_ds(ds.ds).with_qs(qs.qs),
            ds_storage: ds.storage,
            qs_storage: qs.storage,
            now_ms: ds.now_ms,
            external_sender: ds.external_sender,
            driver,
        }
    }

    fn send(&mut self, request: &HttpRequest<'_>) -> Routed {
        route(
            &self.router,
            self.driver,
            UnixTimeMs(self.now_ms),
            request,
            &mut self.ds_storage,
            &mut self.qs_storage,
        )
    }

    fn post(&mut self, path: &str, body: &[u8]) -> Routed {
        self.send(&post(path, body, &HEADERS))
    }

    /// Delivers the DS's fanout to this provider's QS as its own server would: through the
    /// router, authenticated as the hub.
    fn deliver_locally(&mut self, routed: &Routed) {
        for fanout in &routed.fanout {
            assert_eq!(fanout.destination, PROVIDER);
            let bytes = fanout.to_bytes();
            let mut request = post("/deliver_message", &bytes, &HEADERS);
            request.authenticated_peer = Some(HUB);
            let answer = self.send(&request);
            assert_eq!(answer.response.status, 200);
            assert_eq!(
                decode_exact::<QueueingServiceResponse>(&answer.response.body).unwrap(),
                QueueingServiceResponse::Ok
            );
        }
    }

    /// Fetches a client's queue through `/queue_operation` into its inbox.
    fn fetch(&mut self, client: &mut TestClient) -> usize {
        let now = self.now_ms;
        let routed = self.post("/queue_operation", &client.fetch_request(100, now));
        assert_eq!(routed.response.status, 200);
        let (count, _) = client.take_page(&routed.response.body);
        let ack = self.post("/queue_operation", &client.ack_request(now));
        assert_eq!(ack.response.status, 200);
        count
    }

    fn connect(&mut self, client: &mut TestClient) {
        let routed = self.post(
            "/queue_operation",
            &client.create_queue_request(self.now_ms),
        );
        assert_eq!(routed.response.status, 200);
        client.use_queue(&routed.response.body, HUB);
    }
}

/// One request through `Router::handle` or, polled without a runtime, `Router::handle_async`.
fn route(
    router: &Router,
    driver: Driver,
    now: UnixTimeMs,
    request: &HttpRequest<'_>,
    ds_storage: &mut InMemoryStorage,
    qs_storage: &mut InMemoryQsStorage,
) -> Routed {
    match driver {
        Driver::Sync => router.handle(now, request, ds_storage, qs_storage),
        Driver::Async => block_on(router.handle_async(now, request, ds_storage, qs_storage)),
    }
    .expect("in-memory storage does not fail")
}

const DRIVERS: [Driver; 2] = [Driver::Sync, Driver::Async];

const HEADERS: [(&str, &str); 2] = [("Host", PROVIDER), ("Content-Type", OCTET_STREAM)];

fn post<'a>(path: &'a str, body: &'a [u8], headers: &'a [(&'a str, &'a str)]) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path,
        headers,
        body,
        authenticated_peer: None,
    }
}

fn ds_response(response: &HttpResponse) -> DsResponseBody {
    assert_eq!(response.content_type, OCTET_STREAM);
    decode_exact::<DsResponse>(&response.body)
        .expect("a DSResponse body")
        .body
}

fn error_code(response: &HttpResponse) -> ErrorCode {
    match ds_response(response) {
        DsResponseBody::Error(e) => e.code,
        other => panic!("expected an error body, got {other:?}"),
    }
}

fn unauthenticated(body: DsRequestBody) -> Vec<u8> {
    encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap()
}

#[test]
fn a_group_lives_entirely_through_the_router() {
    for driver in DRIVERS {
        a_group_lives_entirely_through_the_router_through(driver);
    }
}

fn a_group_lives_entirely_through_the_router_through(driver: Driver) {
    let mut p = Provider::new(driver);
    let mut alice = TestClient::new("alice", "phone", PROVIDER);
    let mut bob = TestClient::new("bob", "phone", PROVIDER);
    // Alice's laptop: external joins are open to users already in the group (the default).
    let mut carol = TestClient::new("alice", "laptop", PROVIDER);
    // Alice's user key, registered by her phone: with it the laptop fetches the GroupInfo
    // (wire-format.md §4.11).
    let user_key = std::rc::Rc::new(
        openmls_basic_credential::SignatureKeyPair::new(
            mimi_ds::testing::CIPHERSUITE.signature_algorithm(),
        )
        .unwrap(),
    );
    alice.user_key = Some(user_key.clone());
    carol.user_key = Some(user_key);
    p.connect(&mut alice);
    p.connect(&mut bob);
    p.connect(&mut carol);

    // request_group_id and create_group at /group_operation.
    let routed = p.post(
        "/group_operation",
        &unauthenticated(DsRequestBody::RequestGroupId),
    );
    let DsResponseBody::GroupId(group_id) = ds_response(&routed.response) else {
        panic!("no group id")
    };
    alice.create_group(group_id.as_slice(), &p.external_sender);
    let routed = p.post("/group_operation", &alice.create_group_request(p.now_ms));
    assert_eq!(routed.response.status, 200);

    // Bob by Welcome: the Welcome reaches his queue; the tree comes from /welcome_information.
    let routed = p.post(
        "/group_operation",
        &alice.add_request(vec![bob.key_package()], p.now_ms),
    );
    assert_eq!(
        routed.response.status,
        200,
        "{:?}",
        ds_response(&routed.response)
    );
    assert_eq!(routed.endpoint, Some(Endpoint::GroupOperation));
    alice.confirm_commit();
    p.deliver_locally(&routed);
    assert_eq!(p.fetch(&mut bob), 1);
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("no Welcome")
    };
    let (request, processed) = bob.welcome_info_request(&welcome, p.now_ms);
    let routed = p.post("/welcome_information", &request);
    let DsResponseBody::WelcomeInfo(info) = ds_response(&routed.response) else {
        panic!("no WelcomeInfo")
    };
    bob.join_with_tree(processed, &info.ratchet_tree);

    // Carol by external commit, from /external_commit_information.
    let routed = p.post(
        "/external_commit_information",
        &carol.signed_group_info_request(group_id.as_slice(), None, p.now_ms),
    );
    let DsResponseBody::ExternalCommitInfo(info) = ds_response(&routed.response) else {
        panic!("no ExternalCommitInfo")
    };
    let routed = p.post("/group_operation", &carol.external_join_request(&info));
    assert_eq!(
        routed.response.status,
        200,
        "{:?}",
        ds_response(&routed.response)
    );
    carol.confirm_commit();
    p.deliver_locally(&routed);

    // Bob takes the external commit from his queue; then his message reaches both others.
    assert_eq!(p.fetch(&mut bob), 1);
    assert!(matches!(bob.process_inbox()[..], [Received::Commit { .. }]));
    let routed = p.post(
        "/group_operation",
        &bob.message_request(b"via https", p.now_ms),
    );
    assert_eq!(routed.response.status, 200);
    p.deliver_locally(&routed);
    assert_eq!(p.fetch(&mut alice), 2);
    assert_eq!(
        alice.process_inbox().last(),
        Some(&Received::Application(b"via https".to_vec()))
    );
    assert_eq!(p.fetch(&mut carol), 1);
    assert_eq!(
        carol.process_inbox(),
        vec![Received::Application(b"via https".to_vec())]
    );

    // The hub's verification key, and its domain.
    let routed = p.post(
        "/verification_key",
        &unauthenticated(DsRequestBody::SignaturePublicKey),
    );
    assert!(matches!(
        ds_response(&routed.response),
        DsResponseBody::SignaturePublicKey(_)
    ));
    let routed = p.send(&HttpRequest {
        method: "GET",
        path: "/.well-known/mimi/ds-domain",
        headers: &[("Host", PROVIDER)],
        body: &[],
        authenticated_peer: None,
    });
    assert_eq!(routed.response.status, 200);
    assert!(routed.response.content_type.starts_with("text/plain"));
    assert_eq!(routed.response.body, HUB.as_bytes());
}

#[test]
fn http_level_refusals_have_their_status_and_an_error_body_and_change_nothing() {
    for driver in DRIVERS {
        http_level_refusals_have_their_status_and_an_error_body_and_change_nothing_through(driver);
    }
}

fn http_level_refusals_have_their_status_and_an_error_body_and_change_nothing_through(
    driver: Driver,
) {
    let mut p = Provider::new(driver);
    let body = unauthenticated(DsRequestBody::RequestGroupId);
    let welcome_info_type = unauthenticated(DsRequestBody::SignaturePublicKey);
    let too_large = vec![0u8; p.router.config().max_body_bytes + 1];
    let before = (p.ds_storage.clone(), p.qs_storage.clone());
    let cases: Vec<(HttpRequest<'_>, u16, ErrorCode)> = vec![
        (
            post("/no_such_thing", &body, &HEADERS),
            404,
            ErrorCode::UnsupportedOperation,
        ),
        (
            HttpRequest {
                method: "PUT",
                ..post("/group_operation", &body, &HEADERS)
            },
            405,
            ErrorCode::UnsupportedOperation,
        ),
        (
            post("/group_operation", &body, &[("Content-Type", OCTET_STREAM)]),
            400,
            ErrorCode::MalformedRequest,
        ),
        (
            post(
                "/group_operation",
                &body,
                &[("Host", "beta.example"), ("Content-Type", OCTET_STREAM)],
            ),
            421,
            ErrorCode::NotAllowed,
        ),
        // RFC 9112 §3.2: more than one Host is refused, even when the first is ours (an
        // intermediary might act on the other one).
        (
            post(
                "/group_operation",
                &body,
                &[
                    ("Host", PROVIDER),
                    ("host", "beta.example"),
                    ("Content-Type", OCTET_STREAM),
                ],
            ),
            400,
            ErrorCode::MalformedRequest,
        ),
        (
            post(
                "/group_operation",
                &body,
                &[
                    ("Host", PROVIDER),
                    ("HOST", PROVIDER),
                    ("Content-Type", OCTET_STREAM),
                ],
            ),
            400,
            ErrorCode::MalformedRequest,
        ),
        (
            post("/group_operation", &too_large, &HEADERS),
            413,
            ErrorCode::RequestTooLarge,
        ),
        (
            post(
                "/group_operation",
                &body,
                &[("Host", PROVIDER), ("Content-Type", "application/json")],
            ),
            415,
            ErrorCode::MalformedRequest,
        ),
        // A request type served at another endpoint.
        (
            post("/group_operation", &welcome_info_type, &HEADERS),
            400,
            ErrorCode::UnsupportedOperation,
        ),
        (
            post("/welcome_information", &body, &HEADERS),
            400,
            ErrorCode::UnsupportedOperation,
        ),
        // `handle` has no directory storage (and this router no directory): 501.
        (
            post("/group_key_packages", &body, &HEADERS),
            501,
            ErrorCode::UnsupportedOperation,
        ),
        (
            post("/connection_key_packages", &body, &HEADERS),
            501,
            ErrorCode::UnsupportedOperation,
        ),
        // Deliveries need mutual TLS by default.
        (
            post("/deliver_message", &body, &HEADERS),
            403,
            ErrorCode::AuthenticationFailed,
        ),
        (
            post("/connection_request", &body, &HEADERS),
            403,
            ErrorCode::AuthenticationFailed,
        ),
        // Refusals of the services themselves, mapped.
        (
            post("/group_operation", &body[..3], &HEADERS),
            400,
            ErrorCode::MalformedRequest,
        ),
        (
            post("/queue_operation", &body[..1], &HEADERS),
            400,
            ErrorCode::MalformedRequest,
        ),
    ];
    for (request, status, code) in cases {
        let routed = p.send(&request);
        assert_eq!(
            (routed.response.status, error_code(&routed.response)),
            (status, code),
            "{} {}",
            request.method,
            request.path
        );
        assert!(routed.fanout.is_empty());
        assert_eq!((p.ds_storage.clone(), p.qs_storage.clone()), before);
        if status == 405 {
            assert_eq!(routed.response.headers, vec![("Allow", "POST".to_string())]);
        }
    }
    // A port in Host is ignored, case too; a query string does not change the endpoint.
    for host in ["alpha.example:8443", "HUB.example", "hub.example:1"] {
        let headers = [("Host", host), ("Content-Type", OCTET_STREAM)];
        let routed = p.send(&post("/group_operation?group=ignored", &body, &headers));
        assert_eq!(routed.response.status, 200, "{host}");
    }
}

#[test]
fn service_refusals_map_to_http_statuses() {
    for driver in DRIVERS {
        service_refusals_map_to_http_statuses_through(driver);
    }
}

fn service_refusals_map_to_http_statuses_through(driver: Driver) {
    let mut p = Provider::new(driver);
    let mut alice = TestClient::new("alice", "phone", PROVIDER);
    let mut bob = TestClient::new("bob", "phone", PROVIDER);
    p.connect(&mut alice);
    p.connect(&mut bob);
    let routed = p.post(
        "/group_operation",
        &unauthenticated(DsRequestBody::RequestGroupId),
    );
    let DsResponseBody::GroupId(group_id) = ds_response(&routed.response) else {
        panic!()
    };
    alice.create_group(group_id.as_slice(), &p.external_sender);
    assert_eq!(
        p.post("/group_operation", &alice.create_group_request(p.now_ms))
            .response
            .status,
        200
    );

    // A stale timestamp: 400.
    let stale = alice.message_request(b"late", p.now_ms - 10 * 60 * 1000);
    let routed = p.post("/group_operation", &stale);
    assert_eq!(
        (routed.response.status, error_code(&routed.response)),
        (400, ErrorCode::StaleTimestamp)
    );

    // A byte-identical retry of an accepted request gets the original answer with 200.
    let update = alice.update_request(p.now_ms);
    let first = p.post("/group_operation", &update);
    assert_eq!(first.response.status, 200);
    alice.confirm_commit();
    let retry = p.post("/group_operation", &update);
    assert_eq!(retry.response, first.response);
    assert!(retry.fanout.is_empty());

    // An unknown group: 404.
    let routed = p.post(
        "/external_commit_information",
        &alice.signed_as(
            DsRequestBody::GroupInfo(mimi_ds::wire::GroupInfoRequest {
                group_id: b"0000@hub.example".to_vec().into(),
                encryption_key: None,
            }),
            b"0000@hub.example",
            p.now_ms,
            mimi_ds::wire::DsSenderId::LeafIndex(0),
        ),
    );
    assert_eq!(
        (routed.response.status, error_code(&routed.response)),
        (404, ErrorCode::UnknownGroup)
    );

    // A delivery for another provider (forwarding attack): 403, nothing enqueued.
    let out = p.post(
        "/group_operation",
        &alice.add_request(vec![bob.key_package()], p.now_ms),
    );
    assert_eq!(out.response.status, 200);
    alice.confirm_commit();
    let mut forwarded = out.fanout[0].clone();
    let bytes = forwarded.to_bytes();
    forwarded.request.recipient_domain = b"beta.example".to_vec().into();
    let forwarded = forwarded.to_bytes();
    let before = p.qs_storage.clone();
    let mut request = post("/deliver_message", &forwarded, &HEADERS);
    request.authenticated_peer = Some(HUB);
    let routed = p.send(&request);
    assert_eq!(
        (routed.response.status, error_code(&routed.response)),
        (403, ErrorCode::NotAllowed)
    );
    // The authenticated peer must be the DS that sends.
    let mut request = post("/deliver_message", &bytes, &HEADERS);
    request.authenticated_peer = Some("beta.example");
    let routed = p.send(&request);
    assert_eq!(
        (routed.response.status, error_code(&routed.response)),
        (403, ErrorCode::AuthenticationFailed)
    );
    assert_eq!(p.qs_storage, before);

    // An unknown queue: 404.
    let mut stranger = TestClient::new("eve", "phone", PROVIDER);
    stranger.qs_queue = alice.qs_queue.clone().map(|mut q| {
        q.queue_id = vec![1u8; 16].into();
        q
    });
    let routed = p.post("/queue_operation", &stranger.fetch_request(1, p.now_ms));
    assert_eq!(routed.response.status, 404);
    // Two commits for the same epoch: the second is 409 with the current epoch.
    let winner = alice.update_request(p.now_ms);
    alice.discard_commit();
    let loser = alice.update_request(p.now_ms);
    assert_eq!(p.post("/group_operation", &winner).response.status, 200);
    let routed = p.post("/group_operation", &loser);
    assert_eq!(
        (routed.response.status, error_code(&routed.response)),
        (409, ErrorCode::WrongEpoch)
    );
    alice.discard_commit();

    let _ = bob.process_inbox();
}

#[test]
fn a_provider_without_a_ds_says_so() {
    let qs = TestQs::new(PROVIDER);
    let router = Router::new(TransportConfig::new(PROVIDER, None)).with_qs(qs.qs);
    let mut ds_storage = InMemoryStorage::new();
    let mut qs_storage = InMemoryQsStorage::new();
    let body = unauthenticated(DsRequestBody::RequestGroupId);
    for driver in DRIVERS {
        for (method, path) in [
            ("POST", "/group_operation"),
            ("GET", "/.well-known/mimi/ds-domain"),
        ] {
            let request = HttpRequest {
                method,
                ..post(path, &body, &HEADERS)
            };
            let routed = route(
                &router,
                driver,
                UnixTimeMs(qs.now_ms),
                &request,
                &mut ds_storage,
                &mut qs_storage,
            );
            assert_eq!(routed.response.status, 404, "{path}");
            assert_eq!(
                error_code(&routed.response),
                ErrorCode::UnsupportedOperation
            );
        }
    }
}

/// A server runs `Router::handle_async` on a multi-threaded executor (`tokio::spawn`), which
/// needs the future to be `Send` whenever the storages are.
#[test]
fn the_async_router_future_is_send() {
    fn assert_send<F: std::future::Future + Send>(_: &F) {}
    let p = Provider::new(Driver::Async);
    let (mut ds_storage, mut qs_storage) = (p.ds_storage.clone(), p.qs_storage.clone());
    let request = post("/group_operation", b"", &HEADERS);
    let future = p.router.handle_async(
        UnixTimeMs(p.now_ms),
        &request,
        &mut ds_storage,
        &mut qs_storage,
    );
    assert_send(&future);
    let routed = block_on(future).unwrap();
    assert_eq!(routed.response.status, 400);
}
