//! Connection establishment over HTTPS (wire-format.md §14.3): real openmls clients on two
//! providers. Bob's client publishes his connection-establishment key at beta
//! (`/connection_operation`, signed by the key that then owns his name); anyone fetches it
//! from beta without authentication (`/connection_key`); Alice, whose connection room is at
//! alpha's hub, seals a signed request to it, and alpha posts it to beta's
//! `/connection_request` over mutual TLS; Bob's client reads it from his inbox, opens it and
//! verifies Alice's signature. A replay is refused with `replayed_message`, also after beta
//! restarts, and changes nothing; beta's storage holds neither user's real identity,
//! signature key, connection key or token. Once on SQLite, once on PostgreSQL
//! (`Router::handle_connection_request_async`).

mod support;

use std::path::PathBuf;

use mimi_ds::connection::{
    seal_connection_request, ConnectionClientRequest, ConnectionClientRequestBody,
    ConnectionEstablishmentKey, ConnectionKeyBundle, ConnectionKeyFetch, ConnectionResponder,
    ConnectionServiceResponse, ConnectionServiceResponseBody, RequestContents,
    StoredConnectionRequest,
};
use mimi_ds::testing::connection::{debug_dump_contains, pseudonymous_client, RealIdentity};
use mimi_ds::testing::CIPHERSUITE;
use mimi_ds::wire::{
    decode_exact, encode, DsResponse, DsResponseBody, ErrorCode, QueueingServiceResponse,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds_server::{RunningServer, StorageChoice};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand as _;
use openmls_traits::types::SignatureScheme;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_request_over_https_on_sqlite() {
    let root = tempfile::tempdir().expect("tmp");
    let database = root.path().join("beta.sqlite3");
    let storage = StorageChoice::Sqlite(database.clone());
    tokio::time::timeout(TEST_DEADLINE, run(&root, storage, Some(database)))
        .await
        .expect("within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_request_over_https_on_postgresql() {
    let root = tempfile::tempdir().expect("tmp");
    let url = support::postgres::fresh_database().await;
    tokio::time::timeout(
        TEST_DEADLINE,
        run(&root, StorageChoice::Postgres(url), None),
    )
    .await
    .expect("within the deadline");
}

/// A user's client at its provider's connection endpoints: its name there and the key that
/// owns it.
struct InboxClient {
    name: Vec<u8>,
    owner: SignatureKeyPair,
}

impl InboxClient {
    fn request(&self, body: ConnectionClientRequestBody) -> Vec<u8> {
        let request = ConnectionClientRequest::signed(
            body,
            &self.name,
            &self.owner.to_public_vec(),
            now_ms(),
            &self.owner,
        )
        .expect("signed");
        encode(&request).expect("encode")
    }
}

fn service_body(status: u16, body: &[u8]) -> (u16, ConnectionServiceResponseBody) {
    let response = decode_exact::<ConnectionServiceResponse>(body).expect("a response");
    (status, response.body)
}

fn error_code(body: &[u8]) -> ErrorCode {
    match decode_exact::<DsResponse>(body).expect("a DSResponse").body {
        DsResponseBody::Error(error) => error.code,
        other => panic!("not an error: {other:?}"),
    }
}

async fn start_beta(
    net: &Net,
    root: &tempfile::TempDir,
    storage: &StorageChoice,
    alpha: &RunningServer,
) -> RunningServer {
    start(config(
        &net.pki,
        BETA,
        false,
        storage.clone(),
        &state_dir(root.path(), "beta"),
        directory(&[(ALPHA, alpha.local_addr())]),
    ))
    .await
}

async fn run(root: &tempfile::TempDir, storage: StorageChoice, database: Option<PathBuf>) {
    let net = Net {
        pki: Pki::new(&[ALPHA, BETA]),
    };
    let alpha = start(config(
        &net.pki,
        ALPHA,
        true,
        StorageChoice::Sqlite(root.path().join("alpha.sqlite3")),
        &state_dir(root.path(), "alpha"),
        directory(&[]),
    ))
    .await;
    let beta = start_beta(&net, root, &storage, &alpha).await;
    let crypto = RustCrypto::default();
    let alice = RealIdentity::new("alice", "phone", ALPHA);
    let bob = InboxClient {
        name: b"bob@beta.example".to_vec(),
        owner: SignatureKeyPair::new(SignatureScheme::ED25519).expect("a key"),
    };
    let bob_key = ConnectionEstablishmentKey::derive(
        &crypto,
        CIPHERSUITE,
        &crypto.random_vec(32).expect("randomness"),
    )
    .expect("a key");

    // 1. Bob's client publishes his key; the signature binds his name to its owner key.
    let publish = bob.request(ConnectionClientRequestBody::Publish {
        ciphersuite: u16::from(CIPHERSUITE),
        connection_establishment_key: bob_key.public_key().to_vec().into(),
    });
    let (status, body) = net
        .post(BETA, beta.local_addr(), "/connection_operation", publish)
        .await;
    assert_eq!(
        service_body(status, &body),
        (200, ConnectionServiceResponseBody::Ok)
    );

    // 2. Anyone fetches it, without a certificate or a signature.
    let bundle = fetch(&net, &beta, &bob.name).await;
    assert_eq!(
        bundle.connection_establishment_key.as_slice(),
        bob_key.public_key()
    );
    let stranger = encode(&ConnectionKeyFetch {
        version: PROTOCOL_VERSION_MIMI_DS10,
        user: b"nobody@beta.example".to_vec().into(),
    })
    .expect("encode");
    let (status, body) = net
        .post(BETA, beta.local_addr(), "/connection_key", stranger)
        .await;
    let (404, ConnectionServiceResponseBody::Error(error)) = service_body(status, &body) else {
        panic!("an unknown user has a key: {status}");
    };
    assert_eq!(error.code, ErrorCode::UnknownQueue);

    // 3. Alice's pseudonymous client creates the connection room at alpha's hub.
    let mut alice_room = pseudonymous_client(ALPHA);
    net.create_queue(&mut alice_room, alpha.local_addr()).await;
    let room_id = net.create_group(&mut alice_room, &alpha).await;

    // 4.-5. Alice seals her signed request to Bob's key; alpha posts it to beta.
    let wrapper_key = crypto.random_vec(32).expect("randomness");
    let delivery = seal(&alice, &room_id, &wrapper_key, &bundle);
    let (status, body) = deliver(&net, &beta, delivery.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        decode_exact::<QueueingServiceResponse>(&body).expect("answer"),
        QueueingServiceResponse::Ok
    );

    // 6. Bob's client reads his inbox, opens the request and checks Alice's signature.
    let requests = read_inbox(&net, &beta, &bob).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].sender_domain.as_slice(), ALPHA.as_bytes());
    let mut responder = ConnectionResponder::new(bob_key);
    let opened = responder
        .open(&crypto, BETA, &requests[0])
        .expect("opens and verifies");
    assert_eq!(opened.request.requester_client_credential, alice.credential);
    assert_eq!(opened.request.connection_room_id.as_slice(), room_id);
    assert_eq!(
        opened.request.requester_connection_token.as_slice(),
        alice.connection_token
    );

    // Another key cannot read Bob's inbox, nor take his name.
    let mallory = InboxClient {
        name: bob.name.clone(),
        owner: SignatureKeyPair::new(SignatureScheme::ED25519).expect("a key"),
    };
    let read = mallory.request(ConnectionClientRequestBody::Read {
        from_sequence: 0,
        max_requests: 10,
    });
    let (status, body) = net
        .post(BETA, beta.local_addr(), "/connection_operation", read)
        .await;
    let (403, ConnectionServiceResponseBody::Error(error)) = service_body(status, &body) else {
        panic!("mallory read bob's inbox: {status}");
    };
    assert_eq!(error.code, ErrorCode::AuthenticationFailed);

    // A replay is refused with its code and changes nothing, also after beta restarts (the
    // replay mark is in its storage, the inbox key in its state folder).
    let before = database.as_deref().map(dump);
    let (status, body) = deliver(&net, &beta, delivery.clone()).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, ErrorCode::ReplayedMessage)
    );
    beta.shutdown().await;
    let beta = start_beta(&net, root, &storage, &alpha).await;
    let (status, body) = deliver(&net, &beta, delivery).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, ErrorCode::ReplayedMessage)
    );
    assert_eq!(
        database.as_deref().map(dump),
        before,
        "a replay changed storage"
    );
    assert_eq!(read_inbox(&net, &beta, &bob).await, requests, "still once");

    // Beta stored ciphertext only: none of Alice's secrets, nor Bob's name.
    if let Some(database) = &database {
        let stored = dump(database).join("\n");
        let secrets: [(&str, Vec<u8>); 6] = [
            ("alice's identity", alice.identity()),
            ("alice's signature key", alice.signature_key()),
            ("alice's connection key", alice.connection_key.clone()),
            ("alice's connection token", alice.connection_token.clone()),
            ("the room's wrapper key", wrapper_key.clone()),
            ("bob's name", bob.name.clone()),
        ];
        for (what, secret) in secrets {
            assert!(
                !debug_dump_contains(&stored, &secret),
                "beta's storage holds {what}"
            );
        }
        // The check does find what is stored in the clear: Bob's public key.
        assert!(debug_dump_contains(
            &stored,
            bundle.connection_establishment_key.as_slice()
        ));
    }
    beta.shutdown().await;
    alpha.shutdown().await;
}

/// The unauthenticated fetch of `user`'s bundle at beta.
async fn fetch(net: &Net, beta: &RunningServer, user: &[u8]) -> ConnectionKeyBundle {
    let request = encode(&ConnectionKeyFetch {
        version: PROTOCOL_VERSION_MIMI_DS10,
        user: user.to_vec().into(),
    })
    .expect("encode");
    let (status, body) = net
        .post(BETA, beta.local_addr(), "/connection_key", request)
        .await;
    let (200, ConnectionServiceResponseBody::KeyBundle(bundle)) = service_body(status, &body)
    else {
        panic!("no bundle: {status}");
    };
    bundle
}

/// Alice's request for `room_id`, sealed to `bundle`'s key.
fn seal(
    alice: &RealIdentity,
    room_id: &[u8],
    wrapper_key: &[u8],
    bundle: &ConnectionKeyBundle,
) -> Vec<u8> {
    let crypto = RustCrypto::default();
    let signature_key = alice.signature_key();
    let contents = RequestContents {
        credential: &alice.credential,
        signature_key: &signature_key,
        connection_room_id: room_id,
        identity_link_wrapper_key: wrapper_key,
        connection_key: &alice.connection_key,
        connection_token: &alice.connection_token,
    };
    let (_pending, delivery) =
        seal_connection_request(&crypto, &crypto, &alice.signer, &contents, bundle, ALPHA)
            .expect("sealed");
    encode(&delivery).expect("encode")
}

/// `POST /connection_request` at beta as provider alpha (its client certificate).
async fn deliver(net: &Net, beta: &RunningServer, body: Vec<u8>) -> (u16, Vec<u8>) {
    net.send(
        BETA,
        beta.local_addr(),
        post(BETA, "/connection_request", body),
        Some(ALPHA),
    )
    .await
}

/// Everything in `client`'s inbox at beta.
async fn read_inbox(
    net: &Net,
    beta: &RunningServer,
    client: &InboxClient,
) -> Vec<StoredConnectionRequest> {
    let read = client.request(ConnectionClientRequestBody::Read {
        from_sequence: 0,
        max_requests: 100,
    });
    let (status, body) = net
        .post(BETA, beta.local_addr(), "/connection_operation", read)
        .await;
    let (200, ConnectionServiceResponseBody::Requests(requests)) = service_body(status, &body)
    else {
        panic!("no inbox: {status}");
    };
    requests
}
