//! Connection establishment (MIMIMI MM-01 flow A; wire-format.md §14.3): two users on two
//! providers connect with real openmls clients, the responder's provider and the hub see only
//! ciphertext, and every bad input gets its specific answer and changes nothing.

use mimi_ds::connection::{
    seal_connection_request, seal_connection_response, AsyncConnectionStore, ConnectionChange,
    ConnectionConfig, ConnectionError, ConnectionEstablishmentKey, ConnectionFailure,
    ConnectionKeyBundle, ConnectionKeyRecord, ConnectionProvider, ConnectionRefusal,
    ConnectionRequestDelivery, ConnectionResponder, ConnectionStore, InMemoryConnectionStore,
    InboxRecord, PendingConnection, RequestContents, ResponseContents, SafeAad, SafeAadItem,
    StoredConnectionRequest,
};
use mimi_ds::qs::{InMemoryQsStorage, QsStatus};
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::connection::{debug_dump_contains, pseudonymous_client, RealIdentity};
use mimi_ds::testing::driver::block_on;
use mimi_ds::testing::{TestClient, TestDs, TestQs, CIPHERSUITE};
use mimi_ds::transport::{HttpRequest, Routed, Router, TransportConfig, OCTET_STREAM};
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    ErrorCode, FanoutMessage, QueueingServiceResponse, PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{DsConfig, ExternalJoinPolicy, GroupInfoAccess, QsRejectReason, UnixTimeMs};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::random::OpenMlsRand;

const ALPHA: &str = "alpha.example";
const HUB: &str = "hub.alpha.example";
const BETA: &str = "beta.example";

/// A provider behind its router: a QS, a connection provider, and (alpha) the hub.
struct Provider {
    domain: &'static str,
    router: Router,
    connections: ConnectionProvider,
    ds_storage: InMemoryStorage,
    qs_storage: InMemoryQsStorage,
    conn_store: InMemoryConnectionStore,
    now_ms: u64,
    external_sender: Option<openmls::prelude::ExternalSender>,
    /// Every body this provider's server relayed to another provider.
    relayed: Vec<Vec<u8>>,
}

fn random(n: usize) -> Vec<u8> {
    RustCrypto::default().random_vec(n).unwrap()
}

impl Provider {
    fn new(domain: &'static str, hub: Option<&str>) -> Self {
        let qs = TestQs::new(domain);
        let mut router =
            Router::new(TransportConfig::new(domain, hub.map(str::to_string))).with_qs(qs.qs);
        let mut external_sender = None;
        let mut ds_storage = InMemoryStorage::new();
        if let Some(hub) = hub {
            // A hub that hosts connection rooms: the responder, a stranger to the room, fetches
            // its GroupInfo and joins by external commit.
            let mut config = DsConfig::new(hub);
            config.external_joins = ExternalJoinPolicy::Anyone;
            config.group_info_access = GroupInfoAccess::Anyone;
            let ds = TestDs::with_config(config);
            external_sender = Some(ds.external_sender);
            ds_storage = ds.storage;
            router = router.with_ds(ds.ds);
        }
        Self {
            domain,
            router,
            connections: connection_provider(domain, ConnectionConfig::new(domain)),
            ds_storage,
            qs_storage: qs.storage,
            conn_store: InMemoryConnectionStore::new(),
            now_ms: qs.now_ms,
            external_sender,
            relayed: Vec::new(),
        }
    }

    fn now(&self) -> UnixTimeMs {
        UnixTimeMs(self.now_ms)
    }

    fn send(&mut self, request: &HttpRequest<'_>) -> Routed {
        self.router
            .handle(
                UnixTimeMs(self.now_ms),
                request,
                &mut self.ds_storage,
                &mut self.qs_storage,
            )
            .expect("in-memory storage does not fail")
    }

    fn post(&mut self, path: &str, body: &[u8]) -> Routed {
        let headers = headers(self.domain);
        self.send(&post(path, body, &headers, None))
    }

    /// `POST /connection_request` from `peer`, through the router.
    fn connection_request(&mut self, body: &[u8], peer: Option<&str>) -> Routed {
        let headers = headers(self.domain);
        let request = post("/connection_request", body, &headers, peer);
        self.router
            .handle_connection_request(
                UnixTimeMs(self.now_ms),
                &request,
                &self.connections,
                &mut self.conn_store,
            )
            .expect("in-memory storage does not fail")
    }

    fn connect(&mut self, client: &mut TestClient) {
        let routed = self.post(
            "/queue_operation",
            &client.create_queue_request(self.now_ms),
        );
        assert_eq!(routed.response.status, 200);
        client.use_queue(&routed.response.body, HUB);
    }

    /// Fetches and acknowledges a client's queue; returns the messages.
    fn fetch(&mut self, client: &mut TestClient) -> Vec<FanoutMessage> {
        let now = self.now_ms;
        let routed = self.post("/queue_operation", &client.fetch_request(100, now));
        assert_eq!(routed.response.status, 200);
        client.take_page(&routed.response.body);
        let routed = self.post("/queue_operation", &client.ack_request(now));
        assert_eq!(routed.response.status, 200);
        std::mem::take(&mut client.inbox)
    }

    /// Everything this provider stores, as `{:?}` text, plus what its server relayed.
    fn dump(&self) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}",
            self.ds_storage,
            self.qs_storage,
            self.conn_store,
            self.relayed
                .iter()
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                .collect::<Vec<_>>()
        )
    }
}

fn connection_provider(domain: &str, config: ConnectionConfig) -> ConnectionProvider {
    let seed = RustCrypto::default()
        .hash(openmls_traits::types::HashType::Sha2_256, domain.as_bytes())
        .unwrap();
    ConnectionProvider::new(config, &seed, RustCrypto::default()).expect("a 32-byte seed")
}

fn headers(domain: &'static str) -> [(&'static str, &'static str); 2] {
    [("Host", domain), ("Content-Type", OCTET_STREAM)]
}

fn post<'a>(
    path: &'a str,
    body: &'a [u8],
    headers: &'a [(&'a str, &'a str)],
    peer: Option<&'a str>,
) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path,
        headers,
        body,
        authenticated_peer: peer,
    }
}

fn ds_body(routed: &Routed) -> DsResponseBody {
    decode_exact::<DsResponse>(&routed.response.body)
        .expect("a DSResponse")
        .body
}

fn error_code(routed: &Routed) -> ErrorCode {
    match ds_body(routed) {
        DsResponseBody::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A connection-establishment key for `user` at `provider`, published there.
fn publish(provider: &mut Provider, user: &[u8]) -> ConnectionEstablishmentKey {
    let key = ConnectionEstablishmentKey::derive(&RustCrypto::default(), CIPHERSUITE, &random(32))
        .unwrap();
    let now = provider.now();
    provider
        .connections
        .publish(
            now,
            &mut provider.conn_store,
            user,
            u16::from(CIPHERSUITE),
            key.public_key(),
        )
        .unwrap();
    key
}

fn fetch(provider: &Provider, user: &[u8]) -> ConnectionKeyBundle {
    provider
        .connections
        .fetch(&provider.conn_store, user)
        .unwrap()
        .expect("a published key")
}

/// `requester` seals a request for the room `room_id` to `bundle`'s key.
fn seal(
    requester: &RealIdentity,
    room_id: &[u8],
    wrapper_key: &[u8],
    bundle: &ConnectionKeyBundle,
) -> (PendingConnection, ConnectionRequestDelivery) {
    let crypto = RustCrypto::default();
    let signature_key = requester.signature_key();
    seal_connection_request(
        &crypto,
        &crypto,
        &requester.signer,
        &RequestContents {
            credential: &requester.credential,
            signature_key: &signature_key,
            connection_room_id: room_id,
            identity_link_wrapper_key: wrapper_key,
            connection_key: &requester.connection_key,
            connection_token: &requester.connection_token,
        },
        bundle,
        ALPHA,
    )
    .unwrap()
}

/// Delivers the hub's fanout to each destination's QS, as the hub's server would.
fn deliver_fanout(routed: &Routed, alpha: &mut Provider, beta: &mut Provider) {
    for fanout in &routed.fanout {
        let bytes = fanout.to_bytes();
        let target = if fanout.destination == ALPHA {
            &mut *alpha
        } else {
            assert_eq!(fanout.destination, BETA);
            alpha.relayed.push(bytes.clone());
            &mut *beta
        };
        let headers = headers(target.domain);
        let answer = target.send(&post("/deliver_message", &bytes, &headers, Some(HUB)));
        assert_eq!(answer.response.status, 200);
        assert_eq!(
            decode_exact::<QueueingServiceResponse>(&answer.response.body).unwrap(),
            QueueingServiceResponse::Ok
        );
    }
}

#[test]
fn two_users_on_two_providers_connect_and_the_providers_see_only_ciphertext() {
    let mut alpha = Provider::new(ALPHA, Some(HUB));
    let mut beta = Provider::new(BETA, None);
    let alice = RealIdentity::new("alice", "phone", ALPHA);
    let bob = RealIdentity::new("bob", "phone", BETA);
    let crypto = RustCrypto::default();

    // 1. Bob's client publishes his connection-establishment key at beta.
    let bob_key = publish(&mut beta, b"bob");
    // 2. Anyone fetches it, unauthenticated. Two fetches share only the public key.
    let bundle = fetch(&beta, b"bob");
    let again = fetch(&beta, b"bob");
    assert_eq!(
        bundle.connection_establishment_key,
        again.connection_establishment_key
    );
    assert_ne!(
        bundle.inbox, again.inbox,
        "the inbox address is sealed afresh"
    );

    // 3. Alice creates the connection room at her provider's hub, with a pseudonymous client.
    let mut alice_room = pseudonymous_client(ALPHA);
    alpha.connect(&mut alice_room);
    let request_group_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap();
    let DsResponseBody::GroupId(room_id) =
        ds_body(&alpha.post("/group_operation", &request_group_id))
    else {
        panic!("no group ID")
    };
    let room_id = room_id.as_slice().to_vec();
    alice_room.create_group(&room_id, alpha.external_sender.as_ref().unwrap());
    let routed = alpha.post(
        "/group_operation",
        &alice_room.create_group_request(alpha.now_ms),
    );
    assert_eq!(routed.response.status, 200);

    // 4.-5. Alice seals her request to Bob's key; her provider relays it to beta.
    let wrapper_key = random(32);
    let (pending, delivery) = seal(&alice, &room_id, &wrapper_key, &bundle);
    let body = encode(&delivery).unwrap();
    alpha.relayed.push(body.clone());
    let routed = beta.connection_request(&body, Some(ALPHA));
    assert_eq!(routed.response.status, 200);
    assert_eq!(
        decode_exact::<QueueingServiceResponse>(&routed.response.body).unwrap(),
        QueueingServiceResponse::Ok
    );

    // 6. Bob's client takes it from his inbox, opens and checks it.
    let stored = beta
        .connections
        .inbox(&beta.conn_store, b"bob", 0, 10)
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sender_domain.as_slice(), ALPHA.as_bytes());
    let mut responder = ConnectionResponder::new(bob_key);
    let opened = responder.open(&crypto, BETA, &stored[0]).unwrap();
    let request = &opened.request;
    assert_eq!(request.requester_client_credential, alice.credential);
    assert_eq!(
        request.requester_signature_key.as_slice(),
        alice.signature_key()
    );
    assert_eq!(request.connection_room_id.as_slice(), room_id);
    assert_eq!(
        request.requester_connection_key.as_slice(),
        alice.connection_key
    );
    assert_eq!(
        request.requester_connection_token.as_slice(),
        alice.connection_token
    );
    let now = beta.now();
    beta.connections
        .acknowledge(
            now,
            &mut beta.conn_store,
            b"bob",
            stored[0].sequence_number + 1,
        )
        .unwrap();

    // 7. Bob accepts: his pseudonymous client external-commits into the room, the sealed
    //    response in the commit's authenticated data.
    let mut bob_room = pseudonymous_client(BETA);
    beta.connect(&mut bob_room);
    let info_request = TestClient::group_info_request(&room_id);
    let routed = alpha.post("/external_commit_information", &info_request);
    let DsResponseBody::ExternalCommitInfo(info) = ds_body(&routed) else {
        panic!("no ExternalCommitInfo: {:?}", ds_body(&routed))
    };
    let bob_signature_key = bob.signature_key();
    let aad = seal_connection_response(
        &crypto,
        &bob.signer,
        &opened,
        &ResponseContents {
            credential: &bob.credential,
            signature_key: &bob_signature_key,
            connection_key: &bob.connection_key,
            connection_token: &bob.connection_token,
        },
    )
    .unwrap();
    let join = bob_room.external_join_request_with_aad(&info, aad.clone());
    let routed = alpha.post("/group_operation", &join);
    assert_eq!(routed.response.status, 200, "{:?}", ds_body(&routed));
    bob_room.confirm_commit();
    deliver_fanout(&routed, &mut alpha, &mut beta);

    // 9. Alice opens the response from the commit's authenticated data.
    let messages = alpha.fetch(&mut alice_room);
    assert_eq!(messages.len(), 1);
    let received_aad = alice_room.receive_commit_with_aad(&messages[0]);
    assert_eq!(received_aad, aad);
    let response = pending.open_response(&crypto, &received_aad).unwrap();
    assert_eq!(response.responder_client_credential, bob.credential);
    assert_eq!(
        response.responder_signature_key.as_slice(),
        bob_signature_key
    );
    assert_eq!(
        response.responder_connection_key.as_slice(),
        bob.connection_key
    );
    assert_eq!(
        response.responder_connection_token.as_slice(),
        bob.connection_token
    );
    // Both hold each other's connection keys; the room works.
    assert_eq!(alice_room.epoch(), bob_room.epoch());
    let routed = alpha.post(
        "/group_operation",
        &bob_room.message_request(b"hi", alpha.now_ms),
    );
    assert_eq!(routed.response.status, 200);
    deliver_fanout(&routed, &mut alpha, &mut beta);
    let messages = alpha.fetch(&mut alice_room);
    assert_eq!(
        alice_room.receive(&messages[0]),
        mimi_ds::testing::Received::Application(b"hi".to_vec())
    );

    // The providers saw only ciphertext: neither user's real identity, signature key,
    // connection key or token, nor the room's wrapper key, is in anything beta stored, nor in
    // anything alpha (the hub and Alice's provider) stored or relayed.
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("alice's identity", alice.identity()),
        ("bob's identity", bob.identity()),
        ("alice's signature key", alice.signature_key()),
        ("bob's signature key", bob.signature_key()),
        ("alice's connection key", alice.connection_key.clone()),
        ("bob's connection key", bob.connection_key.clone()),
        ("alice's connection token", alice.connection_token.clone()),
        ("bob's connection token", bob.connection_token.clone()),
        ("the wrapper key", wrapper_key.clone()),
    ];
    for (party, dump) in [("beta", beta.dump()), ("alpha and its hub", alpha.dump())] {
        for (what, secret) in &secrets {
            assert!(!debug_dump_contains(&dump, secret), "{party} stored {what}");
        }
    }
    // The search does find what the providers legitimately hold: the pseudonyms in the room
    // (the hub), and Bob's public connection-establishment key (beta).
    let pseudonym = |client: &TestClient| {
        openmls::prelude::BasicCredential::try_from(client.credential.credential.clone())
            .unwrap()
            .identity()
            .to_vec()
    };
    assert!(debug_dump_contains(&alpha.dump(), &pseudonym(&alice_room)));
    assert!(debug_dump_contains(&alpha.dump(), &pseudonym(&bob_room)));
    assert!(debug_dump_contains(
        &beta.dump(),
        responder.key().public_key()
    ));
}

// ---------------------------------------------------------------------------------------------
// Bad input at the responder's provider: each refusal is specific and changes nothing.
// ---------------------------------------------------------------------------------------------

/// Beta with Bob's key published, Alice's identity and a valid delivery of her request.
struct Setup {
    beta: Provider,
    bob_key: Option<ConnectionEstablishmentKey>,
    alice: RealIdentity,
    bundle: ConnectionKeyBundle,
    delivery: ConnectionRequestDelivery,
}

fn setup() -> Setup {
    let mut beta = Provider::new(BETA, None);
    let bob_key = publish(&mut beta, b"bob");
    let bundle = fetch(&beta, b"bob");
    let alice = RealIdentity::new("alice", "phone", ALPHA);
    let (_, delivery) = seal(&alice, b"room@hub.alpha.example", &random(32), &bundle);
    Setup {
        beta,
        bob_key: Some(bob_key),
        alice,
        bundle,
        delivery,
    }
}

/// Delivers `body` directly and checks the refusal: its named reason, its code, the HTTP
/// status the router gives it, and an unchanged store.
fn refuse(beta: &mut Provider, body: &[u8], peer: Option<&str>, reason: QsRejectReason) {
    let before = beta.conn_store.clone();
    let now = beta.now();
    let outcome = beta
        .connections
        .deliver(now, body, peer, &mut beta.conn_store)
        .unwrap();
    assert_eq!(outcome.refusal, Some(reason.clone()));
    assert_eq!(outcome.status, QsStatus::Rejected(reason.code()));
    assert!(outcome.enqueued.is_empty());
    assert_eq!(beta.conn_store, before, "{reason:?} changed the store");
    let routed = beta.connection_request(body, peer.or(Some(ALPHA)));
    assert_eq!(error_code(&routed), reason.code());
    assert_eq!(
        routed.response.status,
        mimi_ds::transport::http_status(reason.code())
    );
    assert_eq!(beta.conn_store, before, "{reason:?} changed the store");
}

#[test]
fn an_inbox_address_that_does_not_open_here_is_unknown() {
    let mut s = setup();
    // Sealed by another provider (gamma) to itself: beta cannot open it.
    let mut gamma = Provider::new("gamma.example", None);
    publish(&mut gamma, b"carol");
    let mut elsewhere = s.delivery.clone();
    elsewhere.inbox = fetch(&gamma, b"carol").inbox;
    let reason = QsRejectReason::Connection(ConnectionRefusal::UnknownInbox);
    refuse(
        &mut s.beta,
        &encode(&elsewhere).unwrap(),
        Some(ALPHA),
        reason.clone(),
    );
    // Altered.
    let mut altered = s.delivery.clone();
    let mut ciphertext = altered.inbox.ciphertext.as_slice().to_vec();
    ciphertext[0] ^= 1;
    altered.inbox.ciphertext = ciphertext.into();
    refuse(&mut s.beta, &encode(&altered).unwrap(), Some(ALPHA), reason);
}

#[test]
fn a_sealed_request_of_the_wrong_shape_is_malformed() {
    let mut s = setup();
    let reason = QsRejectReason::Connection(ConnectionRefusal::MalformedSealedRequest);
    let mut short_kem = s.delivery.clone();
    short_kem.sealed_request.kem_output = vec![7; 31].into();
    refuse(
        &mut s.beta,
        &encode(&short_kem).unwrap(),
        Some(ALPHA),
        reason.clone(),
    );
    let mut no_tag = s.delivery.clone();
    no_tag.sealed_request.ciphertext = vec![7; 15].into();
    refuse(&mut s.beta, &encode(&no_tag).unwrap(), Some(ALPHA), reason);
}

#[test]
fn malformed_misaddressed_and_oversized_deliveries_are_refused() {
    let mut s = setup();
    let body = encode(&s.delivery).unwrap();
    // Truncated and with trailing bytes.
    for bad in [
        &body[..body.len() - 1],
        &[body.as_slice(), &[0]].concat()[..],
        &body[..2],
    ] {
        let before = s.beta.conn_store.clone();
        let now = s.beta.now();
        let outcome = s
            .beta
            .connections
            .deliver(now, bad, Some(ALPHA), &mut s.beta.conn_store)
            .unwrap();
        assert!(matches!(
            outcome.refusal,
            Some(QsRejectReason::Malformed(_))
        ));
        assert_eq!(
            outcome.status,
            QsStatus::Rejected(ErrorCode::MalformedRequest)
        );
        assert_eq!(s.beta.conn_store, before);
    }
    let mut other_version = body.clone();
    other_version[1] = 2;
    refuse(
        &mut s.beta,
        &other_version,
        Some(ALPHA),
        QsRejectReason::UnsupportedVersion(2),
    );
    // Addressed to another provider (forwarding-attack rule).
    let mut forwarded = s.delivery.clone();
    forwarded.recipient_domain = b"gamma.example".to_vec().into();
    refuse(
        &mut s.beta,
        &encode(&forwarded).unwrap(),
        Some(ALPHA),
        QsRejectReason::WrongRecipient,
    );
    // Claiming another sender than the one mutual TLS authenticated.
    refuse(
        &mut s.beta,
        &body,
        Some("gamma.example"),
        QsRejectReason::SenderMismatch,
    );
    // Oversized: more than `max_request_bytes` (64 KiB), refused before decoding.
    let mut huge = s.delivery.clone();
    huge.sealed_request.ciphertext = vec![0; 64 * 1024].into();
    let huge = encode(&huge).unwrap();
    refuse(
        &mut s.beta,
        &huge,
        Some(ALPHA),
        QsRejectReason::TooLarge {
            size: huge.len(),
            limit: 64 * 1024,
        },
    );
    // Without mutual TLS the router refuses before the provider runs.
    let before = s.beta.conn_store.clone();
    let routed = s.beta.connection_request(&body, None);
    assert_eq!(
        (routed.response.status, error_code(&routed)),
        (403, ErrorCode::AuthenticationFailed)
    );
    assert_eq!(s.beta.conn_store, before);
    // `Router::handle` does not serve connection requests (its QS delivery path would read the
    // body as a `QueueingServiceRequest`); it points to `handle_connection_request`.
    let headers = headers(BETA);
    let qs_before = s.beta.qs_storage.clone();
    let routed = s
        .beta
        .send(&post("/connection_request", &body, &headers, Some(ALPHA)));
    assert_eq!(
        (routed.response.status, error_code(&routed)),
        (501, ErrorCode::UnsupportedOperation)
    );
    assert_eq!(s.beta.qs_storage, qs_before);
}

#[test]
fn a_replayed_connection_request_is_refused_and_stored_once() {
    let mut s = setup();
    let body = encode(&s.delivery).unwrap();
    let routed = s.beta.connection_request(&body, Some(ALPHA));
    assert_eq!(routed.response.status, 200);
    let reason = QsRejectReason::Connection(ConnectionRefusal::Replayed);
    // Byte for byte, by the initiator's provider or anyone who saw it, from any provider.
    refuse(&mut s.beta, &body, Some(ALPHA), reason.clone());
    let mut from_gamma = s.delivery.clone();
    from_gamma.sender_domain = b"gamma.example".to_vec().into();
    refuse(
        &mut s.beta,
        &encode(&from_gamma).unwrap(),
        Some("gamma.example"),
        reason.clone(),
    );
    // The same sealed request under a freshly fetched inbox address is the same request.
    let mut refetched = s.delivery.clone();
    refetched.inbox = fetch(&s.beta, b"bob").inbox;
    assert_ne!(refetched.inbox, s.delivery.inbox);
    refuse(
        &mut s.beta,
        &encode(&refetched).unwrap(),
        Some(ALPHA),
        reason,
    );
    let stored = s
        .beta
        .connections
        .inbox(&s.beta.conn_store, b"bob", 0, 10)
        .unwrap();
    assert_eq!(stored.len(), 1, "stored once");

    // Past the provider's replay window the provider takes it again; the responder refuses
    // to open the same request twice, so it never joins twice.
    s.beta.now_ms += ConnectionConfig::new(BETA).replay_window_ms + 1;
    let routed = s.beta.connection_request(&body, Some(ALPHA));
    assert_eq!(routed.response.status, 200);
    let stored = s
        .beta
        .connections
        .inbox(&s.beta.conn_store, b"bob", 0, 10)
        .unwrap();
    assert_eq!(stored.len(), 2);
    let crypto = RustCrypto::default();
    let mut responder = ConnectionResponder::new(s.bob_key.take().unwrap());
    responder.open(&crypto, BETA, &stored[0]).unwrap();
    assert_eq!(
        responder.open(&crypto, BETA, &stored[1]),
        Err(ConnectionError::Replayed)
    );
}

/// Replay marks are dropped once past the replay window, at the next write, so the store's
/// memory stays bounded by the requests of one window.
#[test]
fn expired_replay_marks_are_dropped() {
    let mut s = setup();
    let second = seal(
        &s.alice,
        b"room-2@hub.alpha.example",
        &random(32),
        &s.bundle,
    )
    .1;
    for delivery in [&s.delivery, &second] {
        let routed = s
            .beta
            .connection_request(&encode(delivery).unwrap(), Some(ALPHA));
        assert_eq!(routed.response.status, 200);
    }
    assert_eq!(s.beta.conn_store.mark_count(), 2);
    s.beta.now_ms += ConnectionConfig::new(BETA).replay_window_ms + 1;
    let third = seal(
        &s.alice,
        b"room-3@hub.alpha.example",
        &random(32),
        &s.bundle,
    )
    .1;
    let routed = s
        .beta
        .connection_request(&encode(&third).unwrap(), Some(ALPHA));
    assert_eq!(routed.response.status, 200);
    assert_eq!(
        s.beta.conn_store.mark_count(),
        1,
        "the two expired marks dropped"
    );
}

#[test]
fn a_full_inbox_refuses_more_requests() {
    let mut config = ConnectionConfig::new(BETA);
    config.max_inbox_requests = 1;
    let mut s = setup();
    s.beta.connections = connection_provider(BETA, config);
    // The inbox key is derived from the same seed, so the fetched address still opens.
    let routed = s
        .beta
        .connection_request(&encode(&s.delivery).unwrap(), Some(ALPHA));
    assert_eq!(routed.response.status, 200);
    let (_, second) = seal(&s.alice, b"room2@hub.alpha.example", &random(32), &s.bundle);
    let second = encode(&second).unwrap();
    refuse(
        &mut s.beta,
        &second,
        Some(ALPHA),
        QsRejectReason::Connection(ConnectionRefusal::InboxFull),
    );
    // Acknowledged, the inbox takes it.
    let now = s.beta.now();
    s.beta
        .connections
        .acknowledge(now, &mut s.beta.conn_store, b"bob", 1)
        .unwrap();
    let routed = s.beta.connection_request(&second, Some(ALPHA));
    assert_eq!(routed.response.status, 200);
}

/// The shortest ciphertext a sealed request may have is one AEAD tag (16 bytes): it is
/// taken (the provider cannot open it, only the responder can), one byte less is malformed.
#[test]
fn a_sealed_request_of_exactly_one_tag_is_taken() {
    let mut s = setup();
    let mut one_tag = s.delivery.clone();
    one_tag.sealed_request.ciphertext = vec![7; 16].into();
    let routed = s
        .beta
        .connection_request(&encode(&one_tag).unwrap(), Some(ALPHA));
    assert_eq!(routed.response.status, 200);
}

/// A delivery exactly `max_request_bytes` long is decoded; one byte more is refused unread.
#[test]
fn the_request_size_limit_is_inclusive() {
    let mut s = setup();
    let body = encode(&s.delivery).unwrap();
    let mut config = ConnectionConfig::new(BETA);
    config.max_request_bytes = body.len();
    s.beta.connections = connection_provider(BETA, config.clone());
    let now = s.beta.now();
    let outcome = s
        .beta
        .connections
        .deliver(now, &body, Some(ALPHA), &mut s.beta.conn_store)
        .unwrap();
    assert_eq!(outcome.refusal, None);
    assert_eq!(outcome.status, QsStatus::Accepted);

    let mut s = setup();
    config.max_request_bytes = body.len() - 1;
    s.beta.connections = connection_provider(BETA, config);
    refuse(
        &mut s.beta,
        &body,
        Some(ALPHA),
        QsRejectReason::TooLarge {
            size: body.len(),
            limit: body.len() - 1,
        },
    );
}

/// An [`InMemoryConnectionStore`] whose next `conflicts` writes report a concurrent change,
/// as a durable backend's guard does when another instance wrote first.
struct Conflicting {
    inner: InMemoryConnectionStore,
    conflicts: u32,
}

impl ConnectionStore for Conflicting {
    type Error = mimi_ds::storage::Infallible;

    fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Self::Error> {
        ConnectionStore::key_record(&self.inner, user)
    }

    fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Self::Error> {
        ConnectionStore::inbox(&self.inner, inbox_id)
    }

    fn has_mark(&self, inbox_id: &[u8], mark: &[u8], now_ms: u64) -> Result<bool, Self::Error> {
        ConnectionStore::has_mark(&self.inner, inbox_id, mark, now_ms)
    }

    fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, Self::Error> {
        ConnectionStore::requests(&self.inner, inbox_id, from_sequence, max)
    }

    fn apply(&mut self, now_ms: u64, change: ConnectionChange) -> Result<bool, Self::Error> {
        if self.conflicts > 0 {
            self.conflicts -= 1;
            return Ok(false);
        }
        ConnectionStore::apply(&mut self.inner, now_ms, change)
    }
}

/// The async backends' (PostgreSQL's) view of the same store.
impl AsyncConnectionStore for Conflicting {
    type Error = mimi_ds::storage::Infallible;

    async fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Self::Error> {
        ConnectionStore::key_record(self, user)
    }

    async fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Self::Error> {
        ConnectionStore::inbox(self, inbox_id)
    }

    async fn has_mark(
        &self,
        inbox_id: &[u8],
        mark: &[u8],
        now_ms: u64,
    ) -> Result<bool, Self::Error> {
        ConnectionStore::has_mark(self, inbox_id, mark, now_ms)
    }

    async fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, Self::Error> {
        ConnectionStore::requests(self, inbox_id, from_sequence, max)
    }

    async fn apply(&mut self, now_ms: u64, change: ConnectionChange) -> Result<bool, Self::Error> {
        ConnectionStore::apply(self, now_ms, change)
    }
}

/// The async calls take the same steps as the sync ones: the same stores after publish,
/// deliver and acknowledge, the same answers to fetch and inbox, and the same refusals of a
/// publication overtaken by another and of deliveries that keep conflicting.
#[test]
fn the_async_calls_store_and_answer_as_the_sync_ones() {
    let s = setup();
    let provider = &s.beta.connections;
    let now = s.beta.now();
    let mut sync = s.beta.conn_store.clone();
    let mut asynchronous = Conflicting {
        inner: s.beta.conn_store.clone(),
        conflicts: 0,
    };

    // Publish.
    let carol =
        ConnectionEstablishmentKey::derive(&RustCrypto::default(), CIPHERSUITE, &random(32))
            .unwrap();
    let suite = u16::from(CIPHERSUITE);
    provider
        .publish(now, &mut sync, b"carol", suite, carol.public_key())
        .unwrap();
    block_on(provider.publish_async(now, &mut asynchronous, b"carol", suite, carol.public_key()))
        .unwrap();
    // The same record, but for the new inbox's random ID.
    let record = |store: &InMemoryConnectionStore| {
        let record = ConnectionStore::key_record(store, b"carol")
            .unwrap()
            .expect("carol's key is published");
        let inbox = ConnectionStore::inbox(store, &record.inbox_id).unwrap();
        assert_eq!(inbox.expect("carol has an inbox").user, b"carol");
        ConnectionKeyRecord {
            inbox_id: Vec::new(),
            ..record
        }
    };
    assert_eq!(record(&asynchronous.inner), record(&sync));
    sync = asynchronous.inner.clone();
    // Rule R-CONN-9: another publication got in between.
    asynchronous.conflicts = 1;
    let overtaken = block_on(provider.publish_async(
        now,
        &mut asynchronous,
        b"carol",
        suite,
        carol.public_key(),
    ));
    let stale = QsRejectReason::Connection(ConnectionRefusal::StalePublication);
    assert!(matches!(&overtaken, Err(ConnectionFailure::Refused(r)) if *r == stale));
    assert_eq!(
        asynchronous.inner, sync,
        "a refused publication stores nothing"
    );

    // Fetch: the same key; the inbox address is sealed afresh each time.
    let fetched = block_on(provider.fetch_async(&asynchronous, b"bob"))
        .unwrap()
        .expect("bob's key is published");
    assert_eq!(
        (
            fetched.ciphersuite,
            &fetched.connection_establishment_key,
            &fetched.provider_domain
        ),
        (
            s.bundle.ciphersuite,
            &s.bundle.connection_establishment_key,
            &s.bundle.provider_domain
        )
    );
    assert!(block_on(provider.fetch_async(&asynchronous, b"nobody"))
        .unwrap()
        .is_none());

    // Deliver, then the same bytes again.
    let body = encode(&s.delivery).unwrap();
    let taken = provider
        .deliver(now, &body, Some(ALPHA), &mut sync)
        .unwrap();
    let taken_async =
        block_on(provider.deliver_async(now, &body, Some(ALPHA), &mut asynchronous)).unwrap();
    assert_eq!(taken_async.status, QsStatus::Accepted);
    assert_eq!(
        (&taken_async.response, &taken_async.enqueued),
        (&taken.response, &taken.enqueued)
    );
    assert_eq!(asynchronous.inner, sync);
    let replayed =
        block_on(provider.deliver_async(now, &body, Some(ALPHA), &mut asynchronous)).unwrap();
    assert_eq!(
        replayed.refusal,
        Some(QsRejectReason::Connection(ConnectionRefusal::Replayed))
    );
    assert_eq!(asynchronous.inner, sync);

    // Read and acknowledge the inbox.
    let stored = provider.inbox(&sync, b"bob", 0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        block_on(provider.inbox_async(&asynchronous, b"bob", 0, 10)).unwrap(),
        stored
    );
    provider.acknowledge(now, &mut sync, b"bob", 1).unwrap();
    block_on(provider.acknowledge_async(now, &mut asynchronous, b"bob", 1)).unwrap();
    assert_eq!(asynchronous.inner, sync);
    assert!(block_on(provider.inbox_async(&asynchronous, b"bob", 0, 10))
        .unwrap()
        .is_empty());
}

/// As [`a_conflicting_delivery_is_retried_then_refused`], through the async call.
#[test]
fn a_conflicting_async_delivery_is_retried_then_refused() {
    let s = setup();
    let body = encode(&s.delivery).unwrap();
    let retries = ConnectionConfig::new(BETA).max_conflict_retries;
    for conflicts in 0..=retries + 1 {
        let mut store = Conflicting {
            inner: s.beta.conn_store.clone(),
            conflicts,
        };
        let outcome = block_on(s.beta.connections.deliver_async(
            s.beta.now(),
            &body,
            Some(ALPHA),
            &mut store,
        ))
        .unwrap();
        assert_eq!(store.conflicts, 0, "every retry was made");
        if conflicts <= retries {
            assert_eq!(outcome.status, QsStatus::Accepted, "{conflicts} conflicts");
            assert_ne!(store.inner, s.beta.conn_store);
        } else {
            assert_eq!(outcome.refusal, Some(QsRejectReason::Conflict));
            assert_eq!(store.inner, s.beta.conn_store, "nothing stored");
        }
    }
}

/// A delivery whose write conflicts is re-run: after `max_conflict_retries` (3) conflicts it
/// still lands, after one more it is refused with `conflict` and nothing is stored.
#[test]
fn a_conflicting_delivery_is_retried_then_refused() {
    let s = setup();
    let body = encode(&s.delivery).unwrap();
    let retries = ConnectionConfig::new(BETA).max_conflict_retries;
    assert_eq!(retries, 3);
    for conflicts in 0..=retries + 1 {
        let mut store = Conflicting {
            inner: s.beta.conn_store.clone(),
            conflicts,
        };
        let outcome = s
            .beta
            .connections
            .deliver(s.beta.now(), &body, Some(ALPHA), &mut store)
            .unwrap();
        if conflicts <= retries {
            assert_eq!(outcome.status, QsStatus::Accepted, "{conflicts} conflicts");
            // What the server's metrics see of a delivery (`QsStats`).
            assert_eq!(outcome.stats.operation, "connection_request");
            assert_eq!(outcome.stats.request_bytes, body.len());
            assert_eq!(outcome.stats.response_bytes, outcome.response.len());
            assert_eq!((outcome.stats.recipients, outcome.stats.enqueued), (1, 1));
            assert_eq!(store.conflicts, 0);
            assert_ne!(store.inner, s.beta.conn_store);
        } else {
            assert_eq!(
                outcome.refusal,
                Some(QsRejectReason::Conflict),
                "{conflicts} conflicts"
            );
            assert_eq!(store.conflicts, 0, "every retry was made");
            assert_eq!(store.inner, s.beta.conn_store, "nothing stored");
        }
    }
}

#[test]
fn publishing_a_key_that_is_not_an_hpke_key_is_refused() {
    let mut beta = Provider::new(BETA, None);
    let now = beta.now();
    let before = beta.conn_store.clone();
    let reason = QsRejectReason::Connection(ConnectionRefusal::InvalidConnectionKey);
    for (suite, key) in [
        (u16::from(CIPHERSUITE), vec![9; 31]),
        (u16::from(CIPHERSUITE), Vec::new()),
        (0xFFFE, vec![9; 32]),
    ] {
        let refused = beta
            .connections
            .publish(now, &mut beta.conn_store, b"bob", suite, &key);
        assert!(
            matches!(&refused, Err(ConnectionFailure::Refused(r)) if *r == reason),
            "{refused:?}"
        );
        assert_eq!(reason.code(), ErrorCode::MalformedRequest);
        assert_eq!(beta.conn_store, before);
    }
    assert!(beta
        .connections
        .fetch(&beta.conn_store, b"bob")
        .unwrap()
        .is_none());
}

#[test]
fn an_unpublished_user_has_no_inbox() {
    let mut beta = Provider::new(BETA, None);
    let now = beta.now();
    let before = beta.conn_store.clone();
    let reason = QsRejectReason::Connection(ConnectionRefusal::UnknownUser);
    let read = beta.connections.inbox(&beta.conn_store, b"nobody", 0, 10);
    assert!(matches!(&read, Err(ConnectionFailure::Refused(r)) if *r == reason));
    let ack = beta
        .connections
        .acknowledge(now, &mut beta.conn_store, b"nobody", 0);
    assert!(matches!(&ack, Err(ConnectionFailure::Refused(r)) if *r == reason));
    assert_eq!(reason.code(), ErrorCode::UnknownQueue);
    assert_eq!(beta.conn_store, before);
    // The unauthenticated fetch says only that there is nothing.
    assert!(beta
        .connections
        .fetch(&beta.conn_store, b"nobody")
        .unwrap()
        .is_none());
}

#[test]
fn acknowledging_beyond_the_inbox_is_refused() {
    let mut s = setup();
    let now = s.beta.now();
    let before = s.beta.conn_store.clone();
    let ack = s
        .beta
        .connections
        .acknowledge(now, &mut s.beta.conn_store, b"bob", 1);
    let reason = QsRejectReason::Connection(ConnectionRefusal::AcknowledgeBeyondEnd);
    assert!(matches!(&ack, Err(ConnectionFailure::Refused(r)) if *r == reason));
    assert_eq!(reason.code(), ErrorCode::NotAllowed);
    assert_eq!(s.beta.conn_store, before);
}

// ---------------------------------------------------------------------------------------------
// Bad input at the clients: wrongly sealed, forged, misdirected.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_responder_refuses_wrongly_sealed_and_forged_requests() {
    let crypto = RustCrypto::default();
    let mut s = setup();
    let bob_key = s.bob_key.take().unwrap();
    let bob_public = bob_key.public_key().to_vec();
    let mut responder = ConnectionResponder::new(bob_key);
    let stored = |delivery: &ConnectionRequestDelivery, beta: &mut Provider| {
        let routed = beta.connection_request(&encode(delivery).unwrap(), Some(ALPHA));
        assert_eq!(routed.response.status, 200, "{:?}", ds_body(&routed));
        beta.connections
            .inbox(&beta.conn_store, b"bob", 0, 100)
            .unwrap()
            .pop()
            .unwrap()
    };

    // Sealed to another key (right length, so the provider takes it): does not open.
    let other = ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &random(32)).unwrap();
    let mut to_other = s.bundle.clone();
    to_other.connection_establishment_key = other.public_key().to_vec().into();
    let (_, wrong_key) = seal(&s.alice, b"r1", &random(32), &to_other);
    let request = stored(&wrong_key, &mut s.beta);
    assert_eq!(
        responder.open(&crypto, BETA, &request),
        Err(ConnectionError::NotSealedToUs)
    );
    // Sealed with another provider's domain as context: does not open either.
    let mut other_context = s.bundle.clone();
    other_context.provider_domain = b"gamma.example".to_vec().into();
    let (_, mut misbound) = seal(&s.alice, b"r2", &random(32), &other_context);
    misbound.recipient_domain = BETA.as_bytes().to_vec().into();
    let request = stored(&misbound, &mut s.beta);
    assert_eq!(
        responder.open(&crypto, BETA, &request),
        Err(ConnectionError::NotSealedToUs)
    );

    // Mallory claims Alice's credential but signs with her own key, naming Alice's key.
    let mallory = RealIdentity::new("mallory", "phone", ALPHA);
    let forged = RealIdentity {
        credential: s.alice.credential.clone(),
        signer: mallory.signer,
        connection_key: mallory.connection_key,
        connection_token: mallory.connection_token,
    };
    let alice_key = s.alice.signature_key();
    let (_, forged_delivery) = {
        let crypto = RustCrypto::default();
        seal_connection_request(
            &crypto,
            &crypto,
            &forged.signer,
            &RequestContents {
                credential: &forged.credential,
                signature_key: &alice_key,
                connection_room_id: b"r3",
                identity_link_wrapper_key: &random(32),
                connection_key: &forged.connection_key,
                connection_token: &forged.connection_token,
            },
            &s.bundle,
            ALPHA,
        )
        .unwrap()
    };
    let request = stored(&forged_delivery, &mut s.beta);
    assert_eq!(
        responder.open(&crypto, BETA, &request),
        Err(ConnectionError::BadSignature)
    );

    // Alice's genuine request to Carol, re-sealed by Carol to Bob: the signature binds Carol's
    // key, so Bob refuses it.
    let carol_key = ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &random(32)).unwrap();
    let mut carol_bundle = s.bundle.clone();
    carol_bundle.connection_establishment_key = carol_key.public_key().to_vec().into();
    let (to_carol, _) = seal(&s.alice, b"r4", &random(32), &carol_bundle);
    let plaintext = encode(to_carol.request()).unwrap();
    let resealed = crypto
        .hpke_seal(
            CIPHERSUITE.hpke_config(),
            &bob_public,
            &mimi_ds::wire::encrypt_context(
                mimi_ds::connection::CONNECTION_REQUEST_LABEL,
                BETA.as_bytes(),
            )
            .unwrap(),
            &[],
            &plaintext,
        )
        .unwrap();
    let mut passed_on = s.delivery.clone();
    passed_on.sealed_request = mimi_ds::wire::HpkeCiphertext {
        kem_output: resealed.kem_output,
        ciphertext: resealed.ciphertext,
    };
    let request = stored(&passed_on, &mut s.beta);
    assert_eq!(
        responder.open(&crypto, BETA, &request),
        Err(ConnectionError::BadSignature)
    );

    // A plaintext that is not a ConnectionRequest, sealed properly.
    let garbage = crypto
        .hpke_seal(
            CIPHERSUITE.hpke_config(),
            &bob_public,
            &mimi_ds::wire::encrypt_context(
                mimi_ds::connection::CONNECTION_REQUEST_LABEL,
                BETA.as_bytes(),
            )
            .unwrap(),
            &[],
            b"not a request",
        )
        .unwrap();
    let mut garbled = s.delivery.clone();
    garbled.sealed_request = mimi_ds::wire::HpkeCiphertext {
        kem_output: garbage.kem_output,
        ciphertext: garbage.ciphertext,
    };
    let request = stored(&garbled, &mut s.beta);
    assert!(matches!(
        responder.open(&crypto, BETA, &request),
        Err(ConnectionError::Malformed(_))
    ));

    // None of the refusals counted as seen: the genuine request still opens.
    let request = stored(&s.delivery, &mut s.beta);
    responder.open(&crypto, BETA, &request).unwrap();
}

#[test]
fn the_initiator_refuses_missing_misdirected_and_forged_responses() {
    let crypto = RustCrypto::default();
    let mut s = setup();
    let bob = RealIdentity::new("bob", "phone", BETA);
    let (pending, delivery) = seal(&s.alice, b"room-a", &random(32), &s.bundle);
    let routed = s
        .beta
        .connection_request(&encode(&delivery).unwrap(), Some(ALPHA));
    assert_eq!(routed.response.status, 200);
    let stored = s
        .beta
        .connections
        .inbox(&s.beta.conn_store, b"bob", 0, 10)
        .unwrap();
    let mut responder = ConnectionResponder::new(s.bob_key.take().unwrap());
    let opened = responder.open(&crypto, BETA, &stored[0]).unwrap();
    let bob_key = bob.signature_key();
    let contents = ResponseContents {
        credential: &bob.credential,
        signature_key: &bob_key,
        connection_key: &bob.connection_key,
        connection_token: &bob.connection_token,
    };
    let aad = seal_connection_response(&crypto, &bob.signer, &opened, &contents).unwrap();
    assert!(pending.open_response(&crypto, &aad).is_ok());

    // No SafeAAD, or one without the connection item.
    assert_eq!(
        pending.open_response(&crypto, &[]),
        Err(ConnectionError::NoResponse)
    );
    let other_item = encode(&SafeAad {
        aad_items: vec![SafeAadItem {
            component_id: 0x8001,
            aad_item_data: vec![1, 2, 3].into(),
        }],
    })
    .unwrap();
    assert_eq!(
        pending.open_response(&crypto, &other_item),
        Err(ConnectionError::NoResponse)
    );
    // The response to another request (another room and response key) does not open.
    let (other_pending, _) = seal(&s.alice, b"room-b", &random(32), &s.bundle);
    assert_eq!(
        other_pending.open_response(&crypto, &aad),
        Err(ConnectionError::NotSealedToUs)
    );
    // A response signed by a key other than the one it names.
    let mallory = RealIdentity::new("mallory", "phone", BETA);
    let forged = seal_connection_response(&crypto, &mallory.signer, &opened, &contents).unwrap();
    assert_eq!(
        pending.open_response(&crypto, &forged),
        Err(ConnectionError::BadSignature)
    );
}

/// The secret-holding types print what identifies them and no secret field (`..` stands for
/// the private key and the pending connection's keys).
#[test]
fn secret_holding_types_print_without_their_secrets() {
    let s = setup();
    let key = format!("{:?}", s.bob_key.as_ref().unwrap());
    assert!(
        key.starts_with("ConnectionEstablishmentKey {") && key.contains("ciphersuite"),
        "{key}"
    );
    assert!(key.ends_with(".. }") && !key.contains("private"), "{key}");
    let (pending, _) = seal(&s.alice, b"room@hub.alpha.example", &random(32), &s.bundle);
    let pending = format!("{pending:?}");
    assert!(
        pending.starts_with("PendingConnection {") && pending.ends_with(".. }"),
        "{pending}"
    );
}
