//! The client-facing connection endpoints (wire-format.md §14.3.2) under
//! [`super::connection_bytes`]: `POST /connection_key` and the signed `POST
//! /connection_operation` (publish, read, acknowledge), each a valid request built as a client
//! does, mutated (or replaced by raw bytes), against a provider whose store holds Carol's
//! self-published key and one request in her inbox. No panic; the answer is a
//! `ConnectionServiceResponse`; a refusal carries its status's code and changes nothing; an
//! acceptance is one the request's operation allows (rule R-CONN-8: only a request signed by
//! the name's owner key operates on it).

use std::sync::OnceLock;

use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::types::SignatureScheme;

use crate::connection::{
    seal_connection_request, ConnectionClientRequest, ConnectionClientRequestBody,
    ConnectionConfig, ConnectionEstablishmentKey, ConnectionKeyFetch, ConnectionProvider,
    ConnectionServiceResponse, ConnectionServiceResponseBody, ConnectionStore,
    InMemoryConnectionStore, RequestContents,
};
use crate::qs::{QsOutcome, QsStatus};
use crate::storage::Infallible;
use crate::testing::CIPHERSUITE;
use crate::wire::{decode_exact, encode, PROTOCOL_VERSION_MIMI_DS10};
use crate::UnixTimeMs;

const PROVIDER: &str = "c.example";
const SENDER: &str = "a.example";
const USER: &[u8] = b"carol@c.example";
const NOW_MS: u64 = crate::testing::START_MS;

/// Which endpoint request a fuzz input starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EndpointRequest {
    /// `POST /connection_key` for Carol.
    Fetch,
    /// Carol publishes a new key.
    Publish,
    /// Carol reads her inbox.
    Read,
    /// Carol acknowledges the request in her inbox.
    Acknowledge,
}

struct Fixture {
    provider: ConnectionProvider,
    /// Carol's published key (owner: her Ed25519 key) and one request in her inbox.
    store: InMemoryConnectionStore,
    fetch: Vec<u8>,
    publish: Vec<u8>,
    read: Vec<u8>,
    acknowledge: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let crypto = RustCrypto::default();
        let provider = ConnectionProvider::new(
            ConnectionConfig::new(PROVIDER),
            &[8; 32],
            RustCrypto::default(),
        )
        .expect("a 32-byte seed");
        let owner = SignatureKeyPair::new(SignatureScheme::ED25519).expect("a key");
        let signed = |body| {
            let request =
                ConnectionClientRequest::signed(body, USER, &owner.to_public_vec(), NOW_MS, &owner)
                    .expect("signed");
            encode(&request).expect("encodes")
        };
        let publish = |seed: u8| {
            let key = ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &[seed; 32])
                .expect("a key");
            signed(ConnectionClientRequestBody::Publish {
                ciphersuite: u16::from(CIPHERSUITE),
                connection_establishment_key: key.public_key().to_vec().into(),
            })
        };
        let mut store = InMemoryConnectionStore::new();
        let now = UnixTimeMs(NOW_MS);
        let published = provider
            .client_request(now, &publish(1), &mut store)
            .expect("in-memory");
        assert_eq!(published.status, QsStatus::Accepted);
        let name = provider.user_name::<Infallible>(USER).expect("hash");
        let bundle = provider
            .fetch(&store, &name)
            .expect("in-memory")
            .expect("published");
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
        let credential = openmls::prelude::BasicCredential::new(b"alice".to_vec()).into();
        let signature_key = signer.to_public_vec();
        let (_, delivery) = seal_connection_request(
            &crypto,
            &crypto,
            &signer,
            &RequestContents {
                credential: &credential,
                signature_key: &signature_key,
                connection_room_id: b"room",
                identity_link_wrapper_key: &[1; 32],
                connection_key: &[2; 32],
                connection_token: &[3; 32],
            },
            &bundle,
            SENDER,
        )
        .expect("sealed");
        let delivered = provider
            .deliver(
                now,
                &encode(&delivery).expect("encodes"),
                Some(SENDER),
                &mut store,
            )
            .expect("in-memory");
        assert_eq!(delivered.status, QsStatus::Accepted);
        Fixture {
            fetch: encode(&ConnectionKeyFetch {
                version: PROTOCOL_VERSION_MIMI_DS10,
                user: USER.to_vec().into(),
            })
            .expect("encodes"),
            publish: publish(2),
            read: signed(ConnectionClientRequestBody::Read {
                from_sequence: 0,
                max_requests: 10,
            }),
            acknowledge: signed(ConnectionClientRequestBody::Acknowledge { up_to_sequence: 1 }),
            provider,
            store,
        }
    })
}

/// `bytes` to the endpoint of `request` (raw), or that request mutated by `(offset: u16, xor:
/// u8)` triples; the invariants in the module docs.
pub(super) fn endpoint_bytes(request: EndpointRequest, raw: Option<&[u8]>, mutations: &[u8]) {
    let fixture = fixture();
    let bytes = match raw {
        Some(raw) => raw.to_vec(),
        None => {
            let mut bytes = match request {
                EndpointRequest::Fetch => &fixture.fetch,
                EndpointRequest::Publish => &fixture.publish,
                EndpointRequest::Read => &fixture.read,
                EndpointRequest::Acknowledge => &fixture.acknowledge,
            }
            .clone();
            for m in mutations.chunks_exact(3) {
                let offset = u16::from_be_bytes([m[0], m[1]]) as usize % bytes.len();
                bytes[offset] ^= m[2];
            }
            bytes
        }
    };
    let mut store = fixture.store.clone();
    let now = UnixTimeMs(NOW_MS);
    let provider = &fixture.provider;
    let outcome: QsOutcome = if request == EndpointRequest::Fetch {
        provider.fetch_request(&bytes, &store)
    } else {
        provider.client_request(now, &bytes, &mut store)
    }
    .expect("in-memory storage cannot fail");
    let response: ConnectionServiceResponse =
        decode_exact(&outcome.response).expect("a ConnectionServiceResponse");
    if let QsStatus::Rejected(code) = outcome.status {
        assert!(
            matches!(&response.body, ConnectionServiceResponseBody::Error(e) if e.code == code)
        );
        assert!(store == fixture.store, "a refusal changed the store");
        return;
    }
    assert_eq!(outcome.status, QsStatus::Accepted);
    if request == EndpointRequest::Fetch {
        // Anyone may fetch; only a published name has a bundle, and fetching writes nothing.
        let fetch: ConnectionKeyFetch = decode_exact(&bytes).expect("accepted, so it decodes");
        let name = provider
            .user_name::<Infallible>(fetch.user.as_slice())
            .expect("hash");
        let record = fixture
            .store
            .key_record(&name)
            .expect("in-memory")
            .expect("only a published name is served");
        let ConnectionServiceResponseBody::KeyBundle(bundle) = response.body else {
            panic!("a fetch is answered with a bundle: {:?}", response.body)
        };
        assert_eq!(
            bundle.connection_establishment_key.as_slice(),
            record.connection_establishment_key
        );
        assert!(store == fixture.store, "a fetch changed the store");
        return;
    }
    // A client request is accepted only for the owner of a name that exists (Carol's) or a
    // publication that binds a new name to the key that signed it (rule R-CONN-8).
    let accepted: ConnectionClientRequest = decode_exact(&bytes).expect("accepted, so it decodes");
    let name = provider
        .user_name::<Infallible>(accepted.user.as_slice())
        .expect("hash");
    let before = fixture.store.key_record(&name).expect("in-memory");
    if let Some(before) = &before {
        assert_eq!(
            before.owner_key,
            accepted.owner_key.as_slice(),
            "not the owner"
        );
        // Nobody but Carol can sign for her name: what is accepted for it is one of her
        // requests, unchanged.
        assert!(
            [&fixture.publish, &fixture.read, &fixture.acknowledge].contains(&&bytes),
            "a changed request for Carol's name was accepted"
        );
    }
    match accepted.body {
        ConnectionClientRequestBody::Publish {
            ciphersuite,
            connection_establishment_key,
        } => {
            assert_eq!(response.body, ConnectionServiceResponseBody::Ok);
            let after = store
                .key_record(&name)
                .expect("in-memory")
                .expect("published");
            assert_eq!(after.ciphersuite, ciphersuite);
            assert_eq!(
                after.connection_establishment_key,
                connection_establishment_key.as_slice()
            );
            assert_eq!(after.owner_key, accepted.owner_key.as_slice());
        }
        ConnectionClientRequestBody::Read {
            from_sequence,
            max_requests,
        } => {
            let ConnectionServiceResponseBody::Requests(requests) = response.body else {
                panic!("a read is answered with requests: {:?}", response.body)
            };
            assert!(before.is_some(), "read of an unknown name");
            assert!(requests.len() <= max_requests as usize);
            assert!(requests.len() <= provider.config().max_page);
            assert!(requests.iter().all(|r| r.sequence_number >= from_sequence));
            assert!(store == fixture.store, "a read changed the store");
        }
        ConnectionClientRequestBody::Acknowledge { up_to_sequence } => {
            assert_eq!(response.body, ConnectionServiceResponseBody::Ok);
            let record = before.expect("acknowledge of an unknown name");
            let left = store
                .requests(&record.inbox_id, 0, usize::MAX)
                .expect("in-memory");
            assert!(left.iter().all(|r| r.sequence_number >= up_to_sequence));
        }
    }
}
