//! Connection establishment (wire-format.md §14.3), every structure made by the real helpers
//! with seeded keys and randomness: Bob publishes his key at b.example, Alice fetches it and
//! seals a request for her room at a.example's hub, b.example takes it into Bob's inbox (and
//! refuses its replay), Bob opens it and joins the room by external commit with his sealed
//! response in the commit's authenticated data, and Alice opens the response.

use mimi_ds::connection::{
    seal_connection_request, seal_connection_response, ConnectionConfig,
    ConnectionEstablishmentKey, ConnectionInboxAddress, ConnectionProvider, ConnectionResponder,
    InMemoryConnectionStore, RequestContents, ResponseContents, SafeAad,
};
use mimi_ds::qs::QsStatus;
use mimi_ds::testing::seeded::{seed, signature_key_pair, TestCrypto};
use mimi_ds::testing::{decode_response, TestClient, TestDs, CIPHERSUITE, START_MS};
use mimi_ds::wire::{decode_exact, encode, DsResponseBody, ErrorCode};
use mimi_ds::{DsConfig, ExternalJoinPolicy, GroupInfoAccess, UnixTimeMs};
use openmls::prelude::{BasicCredential, Credential};

use super::{accepted, client, Vectors};

pub(super) fn establishment(v: &mut Vectors) {
    let now = UnixTimeMs(START_MS);
    let alice_crypto = TestCrypto::seeded(seed("golden connection alice"));
    let bob_crypto = TestCrypto::seeded(seed("golden connection bob"));
    let provider = ConnectionProvider::new(
        ConnectionConfig::new("b.example"),
        &seed("golden connection b.example inbox key"),
        TestCrypto::seeded(seed("golden connection b.example")),
    )
    .expect("a 32-byte seed");
    let mut store = InMemoryConnectionStore::new();

    // Bob's key, published and fetched.
    let bob_key = ConnectionEstablishmentKey::derive(
        &bob_crypto,
        CIPHERSUITE,
        &seed("golden connection bob establishment key"),
    )
    .expect("key");
    provider
        .publish(
            now,
            &mut store,
            b"bob",
            u16::from(CIPHERSUITE),
            bob_key.public_key(),
        )
        .expect("published");
    let bundle = provider
        .fetch(&store, b"bob")
        .expect("store")
        .expect("published");
    v.add(
        "connection_key_bundle",
        "what b.example serves for bob without authentication: his key and his inbox address, sealed to itself",
        encode(&bundle).expect("encode"),
    );

    // Alice's room at her hub, with a pseudonymous client.
    let mut config = DsConfig::new("hub.a.example");
    config.external_joins = ExternalJoinPolicy::Anyone;
    config.group_info_access = GroupInfoAccess::Anyone;
    let mut ds = TestDs::seeded(config, seed("golden connection hub.a.example"));
    let mut alice_room = client("p-3f9a", "conn-alice-room", "a.example");
    let room_id = ds.request_group_id();
    alice_room.create_group(&room_id, &ds.external_sender);
    accepted(&ds.process(&alice_room.create_group_request(ds.now_ms)));

    // Alice's request, sealed to Bob's key.
    let alice_signer = signature_key_pair(&alice_crypto);
    let alice_key = alice_signer.to_public_vec();
    let alice_credential: Credential =
        BasicCredential::new(b"mimi://a.example/d/alice/alice-1".to_vec()).into();
    let (pending, delivery) = seal_connection_request(
        &alice_crypto,
        &alice_crypto,
        &alice_signer,
        &RequestContents {
            credential: &alice_credential,
            signature_key: &alice_key,
            connection_room_id: &room_id,
            identity_link_wrapper_key: &seed("golden connection wrapper key"),
            connection_key: &seed("golden connection alice connection key"),
            connection_token: &seed("golden connection alice connection token"),
        },
        &bundle,
        "a.example",
    )
    .expect("sealed");
    v.add(
        "connection_request_plaintext",
        "alice's ConnectionRequest for her room at hub.a.example, signed with her real key, before sealing to bob's key",
        encode(pending.request()).expect("encode"),
    );
    let body = encode(&delivery).expect("encode");
    v.add(
        "connection_request_delivery",
        "the body a.example posts to b.example's /connection_request: bob's inbox address and alice's sealed request",
        body.clone(),
    );
    let out = provider
        .deliver(now, &body, Some("a.example"), &mut store)
        .expect("in-memory");
    assert_eq!(out.status, QsStatus::Accepted);
    let replay = provider
        .deliver(now, &body, Some("a.example"), &mut store)
        .expect("in-memory");
    assert_eq!(
        replay.status,
        QsStatus::Rejected(ErrorCode::ReplayedMessage)
    );
    assert!(matches!(
        decode_response(&replay.response).body,
        DsResponseBody::Error(_)
    ));
    v.add(
        "response_error_connection_request_replayed",
        "replayed_message (22): b.example refuses connection_request_delivery a second time",
        replay.response,
    );
    let stored = provider.inbox(&store, b"bob", 0, 10).expect("published");
    v.add(
        "connection_stored_request",
        "connection_request_delivery's request as bob fetches it from his inbox",
        encode(&stored[0]).expect("encode"),
    );
    // The inbox address inside the bundle: the first publication's random inbox ID.
    let address = ConnectionInboxAddress {
        inbox_id: inbox_id_of(&store),
    };
    v.add(
        "connection_inbox_address",
        "the ConnectionInboxAddress b.example seals into connection_key_bundle",
        encode(&address).expect("encode"),
    );

    // Bob opens it and accepts by external commit into the room.
    let mut responder = ConnectionResponder::new(bob_key);
    let opened = responder
        .open(&bob_crypto, "b.example", &stored[0])
        .expect("opens");
    let bob_signer = signature_key_pair(&bob_crypto);
    let bob_key = bob_signer.to_public_vec();
    let bob_credential: Credential =
        BasicCredential::new(b"mimi://b.example/d/bob/bob-1".to_vec()).into();
    let aad = seal_connection_response(
        &bob_crypto,
        &bob_signer,
        &opened,
        &ResponseContents {
            credential: &bob_credential,
            signature_key: &bob_key,
            connection_key: &seed("golden connection bob connection key"),
            connection_token: &seed("golden connection bob connection token"),
        },
    )
    .expect("sealed");
    v.add(
        "connection_response_aad",
        "bob's external commit's authenticated data: a SafeAAD whose item 0xF1DA is his response sealed to alice's connection_response_key",
        aad.clone(),
    );
    let response = pending.open_response(&alice_crypto, &aad).expect("opens");
    v.add(
        "connection_response_plaintext",
        "bob's ConnectionResponse inside connection_response_aad, signed with his real key",
        encode(&response).expect("encode"),
    );
    let safe: SafeAad = decode_exact(&aad).expect("SafeAAD");
    assert_eq!(safe.aad_items.len(), 1);

    let mut bob_room = client("p-77c1", "conn-bob-room", "b.example");
    let out = ds.process(&TestClient::group_info_request(&room_id));
    let DsResponseBody::ExternalCommitInfo(info) = decode_response(&out.response).body else {
        panic!("no ExternalCommitInfo")
    };
    let join = bob_room.external_join_request_with_aad(&info, aad);
    accepted(&ds.process(&join));
    v.add(
        "request_external_join_connection_acceptance",
        "external_join (9) by bob's pseudonymous client into alice's connection room, connection_response_aad as its authenticated data",
        join,
    );
}

/// The inbox ID b.example picked for bob at his first publication.
fn inbox_id_of(store: &InMemoryConnectionStore) -> tls_codec::VLBytes {
    use mimi_ds::connection::ConnectionStore as _;
    store
        .key_record(b"bob")
        .expect("in-memory")
        .expect("published")
        .inbox_id
        .into()
}
