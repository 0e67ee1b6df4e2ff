//! Connection establishment (MIMIMI MM-01 flow A; wire-format.md §14.3): two users on two
//! providers connect with real openmls clients, the responder's provider and the hub see only
//! ciphertext, and every bad input gets its specific answer and changes nothing.

use mimi_ds::connection::{
    seal_connection_request, seal_connection_response, ConnectionConfig, ConnectionError,
    ConnectionEstablishmentKey, ConnectionFailure, ConnectionKeyBundle, ConnectionProvider,
    ConnectionRefusal, ConnectionRequestDelivery, ConnectionResponder, InMemoryConnectionStore,
    PendingConnection, RequestContents, ResponseContents, SafeAad, SafeAadItem,
};
use mimi_ds::qs::{InMemoryQsStorage, QsStatus};
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::connection::{debug_dump_contains, pseudonymous_client, RealIdentity};
use mimi_ds::testing::{TestClient, TestDs, TestQs, CIPHERSUITE};
use mimi_ds::transport::{HttpRequest, Routed, Router, TransportConfig, OCTET_STREAM};
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    ErrorCode, FanoutMessage, QueueingServiceResponse, PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{DsConfig, ExternalJoinPolicy, GroupInfoAccess, QsRejectReason, UnixTimeMs};
use openmls_rust_crypto::RustCrypto;
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
        let mut router = Router::new(TransportConfig::new(domain, hub.map(str::to_string)))
            .with_qs(qs.qs);
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
        let routed = self.post("/queue_operation", &client.create_queue_request(self.now_ms));
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

use openmls_traits::crypto::OpenMlsCrypto as _;

fn headers(domain: &str) -> [(&'static str, String); 2] {
    [
        ("Host", domain.to_string()),
        ("Content-Type", OCTET_STREAM.to_string()),
    ]
}

fn post<'a>(
    path: &'a str,
    body: &'a [u8],
    headers: &'a [(&'static str, String); 2],
    peer: Option<&'a str>,
) -> HttpRequest<'a> {
    // `HttpRequest` borrows `(&str, &str)` pairs.
    let pairs: &'a [(&'a str, &'a str)] = Box::leak(
        headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    HttpRequest {
        method: "POST",
        path,
        headers: pairs,
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
    assert_ne!(bundle.inbox, again.inbox, "the inbox address is sealed afresh");

    // 3. Alice creates the connection room at her provider's hub, with a pseudonymous client.
    let mut alice_room = pseudonymous_client(ALPHA);
    alpha.connect(&mut alice_room);
    let request_group_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap();
    let DsResponseBody::GroupId(room_id) = ds_body(&alpha.post("/group_operation", &request_group_id))
    else {
        panic!("no group ID")
    };
    let room_id = room_id.as_slice().to_vec();
    alice_room.create_group(&room_id, alpha.external_sender.as_ref().unwrap());
    let routed = alpha.post("/group_operation", &alice_room.create_group_request(alpha.now_ms));
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
    assert_eq!(request.requester_signature_key.as_slice(), alice.signature_key());
    assert_eq!(request.connection_room_id.as_slice(), room_id);
    assert_eq!(request.requester_connection_key.as_slice(), alice.connection_key);
    assert_eq!(request.requester_connection_token.as_slice(), alice.connection_token);
    let now = beta.now();
    beta.connections
        .acknowledge(now, &mut beta.conn_store, b"bob", stored[0].sequence_number + 1)
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
    assert_eq!(response.responder_signature_key.as_slice(), bob_signature_key);
    assert_eq!(response.responder_connection_key.as_slice(), bob.connection_key);
    assert_eq!(response.responder_connection_token.as_slice(), bob.connection_token);
    // Both hold each other's connection keys; the room works.
    assert_eq!(alice_room.epoch(), bob_room.epoch());
    let routed = alpha.post("/group_operation", &bob_room.message_request(b"hi", alpha.now_ms));
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
