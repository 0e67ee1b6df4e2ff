//! Fuzz bodies for connection establishment (`crate::connection`, wire-format.md §14.3).
//!
//! * [`decode_connection`]: every connection structure (the client-facing endpoints' too)
//!   decodes strictly and re-encodes to the same bytes.
//! * [`connection_bytes`]: a valid `ConnectionRequestDelivery` from a real initiator, mutated
//!   (or replaced by raw bytes), against a provider whose store holds a published key; no
//!   panic, the answer decodes, a refused delivery changes nothing, and an accepted mutation
//!   is one the responder then refuses to open (the provider cannot read the sealed request;
//!   the responder catches what it lets through). The same body feeds the client-facing
//!   endpoints (`/connection_key`, `/connection_operation`; `connection_endpoints.rs`).

use std::sync::OnceLock;

use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;

use crate::connection::{
    seal_connection_request, ConnectionConfig, ConnectionEstablishmentKey, ConnectionInboxAddress,
    ConnectionKeyBundle, ConnectionProvider, ConnectionRequest, ConnectionRequestDelivery,
    ConnectionResponder, ConnectionResponse, InMemoryConnectionStore, RequestContents, SafeAad,
    StoredConnectionRequest,
};
use crate::qs::QsStatus;
use crate::testing::CIPHERSUITE;
use crate::wire::{decode_exact, encode, DsResponse, QueueingServiceResponse};
use crate::UnixTimeMs;

use super::roundtrip;

const PROVIDER: &str = "b.example";
const SENDER: &str = "a.example";
const NOW_MS: u64 = crate::testing::START_MS;

/// Fuzz body: decoding of every connection structure.
pub fn decode_connection(data: &[u8]) {
    roundtrip::<ConnectionRequest>(data);
    roundtrip::<ConnectionResponse>(data);
    roundtrip::<ConnectionKeyBundle>(data);
    roundtrip::<ConnectionRequestDelivery>(data);
    roundtrip::<StoredConnectionRequest>(data);
    roundtrip::<ConnectionInboxAddress>(data);
    roundtrip::<SafeAad>(data);
    roundtrip::<crate::connection::ConnectionKeyFetch>(data);
    roundtrip::<crate::connection::ConnectionClientRequest>(data);
    roundtrip::<crate::connection::ConnectionServiceResponse>(data);
    safe_aad_invariants(data);
}

/// The one SafeAAD parser (`crate::safe_aad`) on any bytes: no panic; what it accepts has
/// strictly increasing component IDs, re-encodes to exactly the prefix it read, and builds
/// again from its items; what it refuses is refused for a reason that holds.
pub(super) fn safe_aad_invariants(data: &[u8]) {
    use crate::safe_aad::{SafeAad as Parsed, SafeAadError};
    match Parsed::parse_prefix(data) {
        Ok((aad, rest)) => {
            let ids: Vec<u16> = aad.aad_items.iter().map(|i| i.component_id).collect();
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
            let prefix = encode(&aad).expect("a parsed SafeAAD re-encodes");
            if data.is_empty() {
                assert!(aad.aad_items.is_empty());
            } else {
                assert_eq!(&data[..data.len() - rest.len()], prefix.as_slice());
            }
            assert_eq!(Parsed::from_items(aad.aad_items.clone()).as_ref(), Ok(&aad));
        }
        Err(SafeAadError::Unsorted { previous, next }) => assert!(next < previous),
        Err(SafeAadError::Duplicate { .. } | SafeAadError::Undecodable(_)) => {}
    }
}

/// A provider with Bob's key published, the responder's key, and one valid delivery.
struct Fixture {
    provider: ConnectionProvider,
    store: InMemoryConnectionStore,
    responder_seed: Vec<u8>,
    delivery: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let crypto = RustCrypto::default();
        let provider = ConnectionProvider::new(
            ConnectionConfig::new(PROVIDER),
            &[7; 32],
            RustCrypto::default(),
        )
        .expect("a 32-byte seed");
        let mut store = InMemoryConnectionStore::new();
        let responder_seed = vec![9; 32];
        let key = ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &responder_seed)
            .expect("a key");
        provider
            .publish(
                UnixTimeMs(NOW_MS),
                &mut store,
                b"bob",
                u16::from(CIPHERSUITE),
                key.public_key(),
            )
            .expect("published");
        let bundle = provider
            .fetch(&store, b"bob")
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
        Fixture {
            provider,
            store,
            responder_seed,
            delivery: encode(&delivery).expect("encodes"),
        }
    })
}

/// Fuzz body: `data[0]`'s top bit: use `data[1..]` raw instead of the valid request; the
/// rest are `(offset: u16, xor: u8)` mutations of it. `data[0]`'s low 7 bits modulo 5 pick
/// the request: 0 the delivery, 1-4 a fetch, publish, read or acknowledge at the client-facing
/// endpoints (`super::connection_endpoints`).
pub fn connection_bytes(data: &[u8]) {
    use super::connection_endpoints::{endpoint_bytes, EndpointRequest};
    let [selector, rest @ ..] = data else {
        return;
    };
    let raw = (selector & 0x80 != 0).then_some(rest);
    let endpoint = match (selector & 0x7f) % 5 {
        1 => Some(EndpointRequest::Fetch),
        2 => Some(EndpointRequest::Publish),
        3 => Some(EndpointRequest::Read),
        4 => Some(EndpointRequest::Acknowledge),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        return endpoint_bytes(endpoint, raw, rest);
    }
    let fixture = fixture();
    let bytes = if selector & 0x80 != 0 {
        rest.to_vec()
    } else {
        let mut bytes = fixture.delivery.clone();
        for m in rest.chunks_exact(3) {
            let offset = u16::from_be_bytes([m[0], m[1]]) as usize % bytes.len();
            bytes[offset] ^= m[2];
        }
        bytes
    };
    let mut store = fixture.store.clone();
    let outcome = fixture
        .provider
        .deliver(UnixTimeMs(NOW_MS), &bytes, Some(SENDER), &mut store)
        .expect("in-memory storage cannot fail");
    match outcome.status {
        QsStatus::Rejected(code) => {
            let response: DsResponse =
                decode_exact(&outcome.response).expect("a refusal is a DSResponse");
            assert!(
                matches!(response.body, crate::wire::DsResponseBody::Error(e) if e.code == code)
            );
            assert!(
                store == fixture.store,
                "a refused delivery changed the store"
            );
        }
        _ => {
            assert_eq!(
                decode_exact::<QueueingServiceResponse>(&outcome.response),
                Ok(QueueingServiceResponse::Ok)
            );
            // Exactly one request was added, and the responder opens it only if it is the
            // valid one.
            let stored = fixture
                .provider
                .inbox(&store, b"bob", 0, 10)
                .expect("published");
            assert_eq!(stored.len(), 1);
            let crypto = RustCrypto::default();
            let key =
                ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &fixture.responder_seed)
                    .expect("a key");
            let opened = ConnectionResponder::new(key).open(&crypto, PROVIDER, &stored[0]);
            let original: ConnectionRequestDelivery =
                decode_exact(&fixture.delivery).expect("valid");
            let same_request = stored[0].sealed_request == original.sealed_request;
            assert_eq!(opened.is_ok(), same_request, "{opened:?}");
        }
    }
}
