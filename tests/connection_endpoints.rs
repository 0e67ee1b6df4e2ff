//! The client-facing connection endpoints (wire-format.md §14.3.2) through the router, on the
//! sync and the async path: `/connection_key` serves a published key to anyone, and
//! `/connection_operation` takes a publish, read or acknowledge only when it is signed by the
//! key that owns the user's name (rule R-CONN-8); every refusal changes nothing.

use mimi_ds::connection::{
    ConnectionClientRequest, ConnectionClientRequestBody, ConnectionConfig,
    ConnectionEstablishmentKey, ConnectionKeyFetch, ConnectionProvider, ConnectionServiceResponse,
    ConnectionServiceResponseBody, InMemoryConnectionStore,
};
use mimi_ds::testing::driver::block_on;
use mimi_ds::testing::{CIPHERSUITE, START_MS};
use mimi_ds::transport::{HttpRequest, Router, TransportConfig, OCTET_STREAM};
use mimi_ds::wire::{decode_exact, encode, ErrorCode, PROTOCOL_VERSION_MIMI_DS10};
use mimi_ds::UnixTimeMs;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::types::SignatureScheme;

const BETA: &str = "beta.example";

struct Beta {
    router: Router,
    connections: ConnectionProvider,
    store: InMemoryConnectionStore,
    /// Whether requests take the async path.
    asynchronous: bool,
}

impl Beta {
    fn new(asynchronous: bool) -> Self {
        Self {
            router: Router::new(TransportConfig::new(BETA, None)),
            connections: ConnectionProvider::new(
                ConnectionConfig::new(BETA),
                &[9; 32],
                RustCrypto::default(),
            )
            .expect("a seed"),
            store: InMemoryConnectionStore::new(),
            asynchronous,
        }
    }

    fn post(&mut self, path: &str, body: &[u8]) -> (u16, ConnectionServiceResponseBody) {
        let headers = [("Host", BETA), ("Content-Type", OCTET_STREAM)];
        let request = HttpRequest {
            method: "POST",
            path,
            headers: &headers,
            body,
            authenticated_peer: None,
        };
        let now = UnixTimeMs(START_MS);
        let routed = if self.asynchronous {
            block_on(self.router.handle_connection_request_async(
                now,
                &request,
                &self.connections,
                &mut self.store,
            ))
        } else {
            self.router
                .handle_connection_request(now, &request, &self.connections, &mut self.store)
        }
        .expect("memory does not fail");
        let response = decode_exact::<ConnectionServiceResponse>(&routed.response.body)
            .expect("a ConnectionServiceResponse");
        (routed.response.status, response.body)
    }

    /// A refused request: its status and code, and nothing changed.
    fn refused(&mut self, path: &str, body: &[u8]) -> (u16, ErrorCode) {
        let before = self.store.clone();
        let (status, answer) = self.post(path, body);
        assert_eq!(self.store, before, "a refusal changed storage");
        match answer {
            ConnectionServiceResponseBody::Error(error) => (status, error.code),
            other => panic!("not refused: {other:?}"),
        }
    }
}

fn signed(
    body: ConnectionClientRequestBody,
    user: &[u8],
    owner: &SignatureKeyPair,
    timestamp_ms: u64,
) -> Vec<u8> {
    let request =
        ConnectionClientRequest::signed(body, user, &owner.to_public_vec(), timestamp_ms, owner)
            .expect("signed");
    encode(&request).expect("encode")
}

fn publish(key: &ConnectionEstablishmentKey) -> ConnectionClientRequestBody {
    ConnectionClientRequestBody::Publish {
        ciphersuite: u16::from(CIPHERSUITE),
        connection_establishment_key: key.public_key().to_vec().into(),
    }
}

fn read() -> ConnectionClientRequestBody {
    ConnectionClientRequestBody::Read {
        from_sequence: 0,
        max_requests: 10,
    }
}

fn fetch(user: &[u8]) -> Vec<u8> {
    encode(&ConnectionKeyFetch {
        version: PROTOCOL_VERSION_MIMI_DS10,
        user: user.to_vec().into(),
    })
    .expect("encode")
}

fn key(seed: u8) -> ConnectionEstablishmentKey {
    ConnectionEstablishmentKey::derive(&RustCrypto::default(), CIPHERSUITE, &[seed; 32])
        .expect("a key")
}

fn ed25519() -> SignatureKeyPair {
    SignatureKeyPair::new(SignatureScheme::ED25519).expect("a key")
}

#[test]
fn only_the_owner_key_operates_on_a_name() {
    for asynchronous in [false, true] {
        let mut beta = Beta::new(asynchronous);
        let (bob, mallory) = (ed25519(), ed25519());
        let name = b"bob@beta.example";
        let body = signed(publish(&key(1)), name, &bob, START_MS);
        assert_eq!(
            beta.post("/connection_operation", &body),
            (200, ConnectionServiceResponseBody::Ok)
        );
        let (status, ConnectionServiceResponseBody::KeyBundle(bundle)) =
            beta.post("/connection_key", &fetch(name))
        else {
            panic!("no bundle")
        };
        assert_eq!(status, 200);
        assert_eq!(
            bundle.connection_establishment_key.as_slice(),
            key(1).public_key()
        );
        // Another key can neither replace Bob's key nor read or acknowledge his inbox.
        for body in [
            publish(&key(2)),
            read(),
            ConnectionClientRequestBody::Acknowledge { up_to_sequence: 0 },
        ] {
            let request = signed(body, name, &mallory, START_MS);
            assert_eq!(
                beta.refused("/connection_operation", &request),
                (403, ErrorCode::AuthenticationFailed)
            );
        }
        // A request whose signature is not its owner key's: Bob's signature, Mallory's key.
        let mut forged = ConnectionClientRequest::signed(
            publish(&key(2)),
            name,
            &bob.to_public_vec(),
            START_MS,
            &bob,
        )
        .expect("signed");
        forged.owner_key = mallory.to_public_vec().into();
        assert_eq!(
            beta.refused("/connection_operation", &encode(&forged).unwrap()),
            (403, ErrorCode::AuthenticationFailed)
        );
        // Bob's own requests still work; a stale one does not.
        let (status, ConnectionServiceResponseBody::Requests(requests)) = beta.post(
            "/connection_operation",
            &signed(read(), name, &bob, START_MS),
        ) else {
            panic!("no inbox")
        };
        assert_eq!((status, requests.len()), (200, 0));
        let stale = signed(read(), name, &bob, START_MS - 10 * 60 * 1000);
        assert_eq!(
            beta.refused("/connection_operation", &stale),
            (400, ErrorCode::StaleTimestamp)
        );
        // Unknown names: no key to fetch, no inbox to read.
        assert_eq!(
            beta.refused("/connection_key", &fetch(b"nobody")),
            (404, ErrorCode::UnknownQueue)
        );
        assert_eq!(
            beta.refused(
                "/connection_operation",
                &signed(read(), b"nobody", &bob, START_MS)
            ),
            (404, ErrorCode::UnknownQueue)
        );
    }
}

#[test]
fn a_name_the_server_published_takes_no_signed_request() {
    let mut beta = Beta::new(false);
    let crypto_key = key(3);
    // The embedding server logged the user in and published for it: the stored name is the
    // one the endpoints use.
    let name = beta
        .connections
        .user_name::<mimi_ds::storage::Infallible>(b"carol")
        .expect("hash");
    beta.connections
        .publish(
            UnixTimeMs(START_MS),
            &mut beta.store,
            &name,
            u16::from(CIPHERSUITE),
            crypto_key.public_key(),
        )
        .expect("published");
    let (status, _) = beta.post("/connection_key", &fetch(b"carol"));
    assert_eq!(status, 200);
    let request = signed(read(), b"carol", &ed25519(), START_MS);
    assert_eq!(
        beta.refused("/connection_operation", &request),
        (403, ErrorCode::AuthenticationFailed)
    );
}

/// Regression (rule R-CONN-9): a signed publication is valid for the whole freshness window,
/// so without an order on publications anyone who saw Bob's first one could replay it after
/// he replaced his key, and bring the replaced key back.
#[test]
fn a_replayed_earlier_publication_does_not_bring_back_the_replaced_key() {
    for asynchronous in [false, true] {
        let mut beta = Beta::new(asynchronous);
        let bob = ed25519();
        let name = b"bob@beta.example";
        let first = signed(publish(&key(1)), name, &bob, START_MS - 2000);
        let second = signed(publish(&key(2)), name, &bob, START_MS - 1000);
        for body in [&first, &second] {
            assert_eq!(
                beta.post("/connection_operation", body),
                (200, ConnectionServiceResponseBody::Ok)
            );
        }
        // The first again, and the second again: neither is newer than what is stored.
        for replayed in [&first, &second] {
            let (_, code) = beta.refused("/connection_operation", replayed);
            assert_eq!(code, ErrorCode::ReplayedMessage);
        }
        let (_, ConnectionServiceResponseBody::KeyBundle(bundle)) =
            beta.post("/connection_key", &fetch(name))
        else {
            panic!("no bundle")
        };
        assert_eq!(
            bundle.connection_establishment_key.as_slice(),
            key(2).public_key(),
            "the replaced key came back"
        );
        // A newer publication still replaces it.
        let third = signed(publish(&key(3)), name, &bob, START_MS);
        assert_eq!(
            beta.post("/connection_operation", &third),
            (200, ConnectionServiceResponseBody::Ok)
        );
    }
}

/// Each endpoint's outcome names its operation and sizes for the server's metrics
/// (`QsStats`), refused or not.
#[test]
fn outcomes_carry_the_operation_and_sizes() {
    let mut beta = Beta::new(false);
    let bob = ed25519();
    let now = UnixTimeMs(START_MS);
    let cases = [
        (
            signed(publish(&key(1)), b"bob", &bob, START_MS),
            "connection_publish",
        ),
        (signed(read(), b"bob", &bob, START_MS), "connection_read"),
        (
            signed(
                ConnectionClientRequestBody::Acknowledge { up_to_sequence: 0 },
                b"bob",
                &bob,
                START_MS,
            ),
            "connection_acknowledge",
        ),
    ];
    for (body, operation) in cases {
        let outcome = beta
            .connections
            .client_request(now, &body, &mut beta.store)
            .expect("memory does not fail");
        assert_eq!(outcome.stats.operation, operation);
        assert_eq!(outcome.stats.request_bytes, body.len());
        assert_eq!(outcome.stats.response_bytes, outcome.response.len());
        assert!(outcome.stats.response_bytes > 0);
    }
    let body = fetch(b"bob");
    let outcome = beta
        .connections
        .fetch_request(&body, &beta.store)
        .expect("memory does not fail");
    assert_eq!(outcome.stats.operation, "connection_key");
    assert_eq!(outcome.stats.request_bytes, body.len());
    assert_eq!(outcome.stats.response_bytes, outcome.response.len());
}

/// The freshness window is inclusive: a request exactly `auth_window_ms` old is taken, one
/// a millisecond older is `stale_timestamp`-refused, as are ones from the future.
#[test]
fn the_freshness_window_is_inclusive() {
    let window = ConnectionConfig::new(BETA).auth_window_ms;
    let mut beta = Beta::new(false);
    let bob = ed25519();
    for (seed, timestamp) in [(1, START_MS - window), (2, START_MS + window)] {
        let request = signed(publish(&key(seed)), b"bob", &bob, timestamp);
        assert_eq!(
            beta.post("/connection_operation", &request),
            (200, ConnectionServiceResponseBody::Ok),
            "{timestamp}"
        );
    }
    for timestamp in [START_MS - window - 1, START_MS + window + 1] {
        let request = signed(read(), b"bob", &bob, timestamp);
        let (_, code) = beta.refused("/connection_operation", &request);
        assert_eq!(code, ErrorCode::StaleTimestamp, "{timestamp}");
    }
}

/// `ConnectionClientRequestTBS` is every field but the signature, in order (wire-format.md
/// §14.3.2): a verifier that signed and checked other bytes would interoperate with nobody.
#[test]
fn the_signed_bytes_are_the_fields_in_order() {
    let bob = ed25519();
    let body = read();
    let request =
        ConnectionClientRequest::signed(body.clone(), b"bob", &bob.to_public_vec(), START_MS, &bob)
            .expect("signed");
    let mut expected = PROTOCOL_VERSION_MIMI_DS10.to_be_bytes().to_vec();
    expected.extend(encode(&body).expect("encode"));
    expected.extend([3]);
    expected.extend(b"bob");
    let owner = bob.to_public_vec();
    expected.extend([u8::try_from(owner.len()).expect("short")]);
    expected.extend(&owner);
    expected.extend(START_MS.to_be_bytes());
    assert_eq!(request.tbs().expect("tbs"), expected);
}

/// The server's own publication (after its login) is dated `now`, or just after a stored one
/// dated later (rule R-CONN-9), so that a replayed signed publication stays older.
#[test]
fn the_servers_publication_is_dated_now_or_just_after_the_stored_one() {
    use mimi_ds::connection::ConnectionStore as _;
    let mut beta = Beta::new(false);
    let name = beta
        .connections
        .user_name::<mimi_ds::storage::Infallible>(b"carol")
        .expect("hash");
    for (publication, expected) in [(1, START_MS), (2, START_MS + 1), (3, START_MS + 2)] {
        beta.connections
            .publish(
                UnixTimeMs(START_MS),
                &mut beta.store,
                &name,
                u16::from(CIPHERSUITE),
                key(publication).public_key(),
            )
            .expect("published");
        let record = beta.store.key_record(&name).unwrap().expect("stored");
        assert_eq!(
            record.published_at_ms, expected,
            "publication {publication}"
        );
    }
    let debug = format!("{:?}", beta.connections);
    assert!(
        debug.contains("ConnectionProvider") && debug.contains(BETA),
        "{debug}"
    );
}
