//! The client-facing connection endpoints (wire-format.md §14.3.2), every request and answer
//! made by the real code path: a real `Router` in front of a real `ConnectionProvider` at
//! b.example answers real requests signed by carol's seeded Ed25519 owner key. Carol publishes
//! her key, anyone fetches it, alice's sealed request lands in carol's inbox, carol reads it
//! and acknowledges it, and a fetch of a name that published nothing is refused.

use mimi_ds::connection::{
    seal_connection_request, ConnectionClientRequest, ConnectionClientRequestBody,
    ConnectionConfig, ConnectionEstablishmentKey, ConnectionKeyFetch, ConnectionProvider,
    ConnectionServiceResponse, ConnectionServiceResponseBody, InMemoryConnectionStore,
    RequestContents,
};
use mimi_ds::qs::QsStatus;
use mimi_ds::testing::seeded::{seed, signature_key_pair, TestCrypto};
use mimi_ds::testing::{CIPHERSUITE, START_MS};
use mimi_ds::transport::{HttpRequest, Router, TransportConfig, OCTET_STREAM};
use mimi_ds::wire::{decode_exact, encode, PROTOCOL_VERSION_MIMI_DS10};
use mimi_ds::UnixTimeMs;
use openmls::prelude::{BasicCredential, Credential};
use openmls_basic_credential::SignatureKeyPair;

use super::Vectors;

const DOMAIN: &str = "b.example";

/// b.example's router, connection provider and storage.
struct Provider {
    router: Router<TestCrypto>,
    connections: ConnectionProvider<TestCrypto>,
    store: InMemoryConnectionStore,
}

impl Provider {
    /// POSTs `body` to `path` and returns the answer's bytes, checked to decode.
    fn post(&mut self, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let headers = [("Host", DOMAIN), ("Content-Type", OCTET_STREAM)];
        let request = HttpRequest {
            method: "POST",
            path,
            headers: &headers,
            body,
            authenticated_peer: None,
        };
        let routed = self
            .router
            .handle_connection_request(
                UnixTimeMs(START_MS),
                &request,
                &self.connections,
                &mut self.store,
            )
            .expect("in-memory");
        decode_exact::<ConnectionServiceResponse>(&routed.response.body)
            .expect("a ConnectionServiceResponse");
        (routed.response.status, routed.response.body)
    }
}

/// A `ConnectionClientRequest` for carol, signed by her owner key.
fn signed(body: ConnectionClientRequestBody, owner: &SignatureKeyPair) -> Vec<u8> {
    let request =
        ConnectionClientRequest::signed(body, b"carol", &owner.to_public_vec(), START_MS, owner)
            .expect("signed");
    encode(&request).expect("encode")
}

fn fetch(user: &[u8]) -> Vec<u8> {
    encode(&ConnectionKeyFetch {
        version: PROTOCOL_VERSION_MIMI_DS10,
        user: user.to_vec().into(),
    })
    .expect("encode")
}

fn body_of(response: &[u8]) -> ConnectionServiceResponseBody {
    decode_exact::<ConnectionServiceResponse>(response)
        .expect("decoded")
        .body
}

pub(super) fn run(v: &mut Vectors) {
    let mut b = Provider {
        router: Router::new(TransportConfig::new(DOMAIN, None)),
        connections: ConnectionProvider::new(
            ConnectionConfig::new(DOMAIN),
            &seed("golden endpoints b.example inbox key"),
            TestCrypto::seeded(seed("golden endpoints b.example")),
        )
        .expect("a 32-byte seed"),
        store: InMemoryConnectionStore::new(),
    };
    let carol_crypto = TestCrypto::seeded(seed("golden endpoints carol"));
    let owner = signature_key_pair(&carol_crypto);
    let carol_key = ConnectionEstablishmentKey::derive(
        &carol_crypto,
        CIPHERSUITE,
        &seed("golden endpoints carol establishment key"),
    )
    .expect("key");

    // Carol publishes her key.
    let publish = signed(
        ConnectionClientRequestBody::Publish {
            ciphersuite: u16::from(CIPHERSUITE),
            connection_establishment_key: carol_key.public_key().to_vec().into(),
        },
        &owner,
    );
    let (status, ok) = b.post("/connection_operation", &publish);
    assert_eq!(status, 200);
    assert_eq!(body_of(&ok), ConnectionServiceResponseBody::Ok);
    v.add(
        "connection_client_request_publish",
        "publish(0) to b.example's /connection_operation: carol's connection-establishment key, signed by her Ed25519 owner key",
        publish,
    );
    v.add(
        "connection_service_response_ok",
        "ok(0): b.example's answer to connection_client_request_publish",
        ok,
    );

    // Anyone fetches it.
    let fetch_carol = fetch(b"carol");
    let (status, bundle) = b.post("/connection_key", &fetch_carol);
    assert_eq!(status, 200);
    let ConnectionServiceResponseBody::KeyBundle(key_bundle) = body_of(&bundle) else {
        panic!("no key bundle")
    };
    assert_eq!(
        key_bundle.connection_establishment_key.as_slice(),
        carol_key.public_key()
    );
    v.add(
        "connection_key_fetch",
        "the unauthenticated body of b.example's /connection_key for carol",
        fetch_carol,
    );
    v.add(
        "connection_service_response_key_bundle",
        "key_bundle(2): b.example's answer to connection_key_fetch, carol's key and her sealed inbox address",
        bundle,
    );

    // Alice seals a request to the fetched bundle; a.example delivers it into carol's inbox.
    let alice_crypto = TestCrypto::seeded(seed("golden endpoints alice"));
    let alice_signer = signature_key_pair(&alice_crypto);
    let alice_key = alice_signer.to_public_vec();
    let alice_credential: Credential =
        BasicCredential::new(b"mimi://a.example/d/alice/alice-1".to_vec()).into();
    let (_pending, delivery) = seal_connection_request(
        &alice_crypto,
        &alice_crypto,
        &alice_signer,
        &RequestContents {
            credential: &alice_credential,
            signature_key: &alice_key,
            connection_room_id: &seed("golden endpoints alice room id"),
            identity_link_wrapper_key: &seed("golden endpoints wrapper key"),
            connection_key: &seed("golden endpoints alice connection key"),
            connection_token: &seed("golden endpoints alice connection token"),
        },
        &key_bundle,
        "a.example",
    )
    .expect("sealed");
    let delivered = b
        .connections
        .deliver(
            UnixTimeMs(START_MS),
            &encode(&delivery).expect("encode"),
            Some("a.example"),
            &mut b.store,
        )
        .expect("in-memory");
    assert_eq!(delivered.status, QsStatus::Accepted);

    // Carol reads her inbox and acknowledges what she read.
    let read = signed(
        ConnectionClientRequestBody::Read {
            from_sequence: 0,
            max_requests: 10,
        },
        &owner,
    );
    let (status, requests) = b.post("/connection_operation", &read);
    assert_eq!(status, 200);
    let ConnectionServiceResponseBody::Requests(stored) = body_of(&requests) else {
        panic!("no requests")
    };
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sealed_request, delivery.sealed_request);
    assert_eq!(stored[0].sender_domain.as_slice(), b"a.example");
    v.add(
        "connection_client_request_read",
        "read(1) to b.example's /connection_operation: up to 10 requests of carol's inbox from sequence 0, signed by her owner key",
        read,
    );
    v.add(
        "connection_service_response_requests",
        "requests(3): b.example's answer to connection_client_request_read, alice's sealed request at sequence 0",
        requests,
    );
    let acknowledge = signed(
        ConnectionClientRequestBody::Acknowledge { up_to_sequence: 1 },
        &owner,
    );
    let (status, ok) = b.post("/connection_operation", &acknowledge);
    assert_eq!(
        (status, body_of(&ok)),
        (200, ConnectionServiceResponseBody::Ok)
    );
    v.add(
        "connection_client_request_acknowledge",
        "acknowledge(2) to b.example's /connection_operation: carol drops every request below sequence 1, signed by her owner key",
        acknowledge,
    );

    // A name that published nothing has no key to fetch.
    let (status, error) = b.post("/connection_key", &fetch(b"nobody"));
    assert_eq!(status, 404);
    v.add(
        "connection_service_response_error",
        "error(1): unknown_queue (19), b.example's answer to a /connection_key fetch of a name that published no key",
        error,
    );
}
