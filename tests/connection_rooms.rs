//! Pseudonymous connection rooms (wire-format.md §14.3.4 with §14.1-§14.2; MM-01 flow A steps
//! 7-9): the responder's external commit carries its own identity link key and the sealed
//! connection response in one SafeAAD, the hub accepts it and stores the link, and each side
//! checks from the room's identity links that the other member is the peer it meant to
//! connect to, so that a stranger in the room, or one presenting another identity, is caught.

use mimi_ds::connection::{
    seal_connection_request, seal_connection_response, seal_connection_response_with_identity_link,
    ConnectionConfig, ConnectionError, ConnectionEstablishmentKey, ConnectionProvider,
    InMemoryConnectionStore, OpenedConnectionRequest, PeerIdentityError, PendingConnection,
    RequestContents, ResponseContents, CONNECTION_RESPONSE_COMPONENT_ID,
};
use mimi_ds::pseudonym::group_links::{
    add_aad_bytes, add_aad_item, IDENTITY_LINK_KEYS_COMPONENT_ID,
};
use mimi_ds::pseudonym::link::{new_pseudonymous_credential, CredentialInputs};
use mimi_ds::pseudonym::{
    EncryptedIdentityLinkKey, IdentifierUri, IdentityLinkKeys, PseudonymKind,
};
use mimi_ds::safe_aad::{SafeAad, SafeAadError, SafeAadItem};
use mimi_ds::testing::pseudonymous::{
    random_connection_key, random_pseudonym, random_wrapper_key, PseudonymousClient,
};
use mimi_ds::testing::{decode_response, TestClient, TestDs, CIPHERSUITE};
use mimi_ds::wire::{encode, DsResponseBody, ExternalCommitInfo, FanoutMessage};
use mimi_ds::{DsConfig, ExternalJoinPolicy, GroupInfoAccess, UnixTimeMs};
use openmls::prelude::Member;
use openmls_rust_crypto::RustCrypto;

const ALPHA: &str = "alpha.example";
const BETA: &str = "beta.example";
const MALLORY_DOMAIN: &str = "mallory.example";

/// A user: its connection key and token, and its user pseudonym in the room.
struct User {
    name: &'static str,
    domain: &'static str,
    connection_key: Vec<u8>,
    connection_token: Vec<u8>,
    pseudonym: IdentifierUri,
}

impl User {
    fn new(name: &'static str, domain: &'static str) -> Self {
        Self {
            name,
            domain,
            connection_key: random_connection_key(),
            connection_token: random_connection_key(),
            pseudonym: random_pseudonym(PseudonymKind::User, domain),
        }
    }

    /// Its pseudonymous client for the connection room; the real identity travels inside.
    fn room_client(&self) -> PseudonymousClient {
        PseudonymousClient::new(
            self.name,
            "phone",
            self.domain,
            &self.pseudonym,
            &self.connection_key,
        )
    }
}

/// Alice's pseudonymous connection room at the hub, her request to Bob, and Bob's side.
struct Connecting {
    ds: TestDs,
    alice_room: PseudonymousClient,
    bob: User,
    bob_room: PseudonymousClient,
    wrapper_key: Vec<u8>,
    pending: PendingConnection,
    opened: OpenedConnectionRequest,
}

fn hub() -> TestDs {
    // A hub hosting connection rooms lets strangers fetch the GroupInfo and join (§14.3.4).
    let mut config = DsConfig::new("hub.alpha.example");
    config.external_joins = ExternalJoinPolicy::Anyone;
    config.group_info_access = GroupInfoAccess::Anyone;
    TestDs::with_config(config)
}

/// Steps 1-6 of flow A: Bob publishes his key at beta; Alice creates a pseudonymous room,
/// commits her own identity link key into it, seals her request; beta delivers it to Bob's
/// inbox, Bob opens it.
fn connecting() -> Connecting {
    let crypto = RustCrypto::default();
    let mut ds = hub();
    let alice = User::new("alice", ALPHA);
    let bob = User::new("bob", BETA);

    // Bob's key at his provider.
    let beta =
        ConnectionProvider::new(ConnectionConfig::new(BETA), &[7; 32], RustCrypto::default())
            .expect("a 32-byte seed");
    let mut beta_store = InMemoryConnectionStore::new();
    let bob_key =
        ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &random_connection_key())
            .expect("a key");
    let now = UnixTimeMs(ds.now_ms);
    beta.publish(
        now,
        &mut beta_store,
        b"bob",
        CIPHERSUITE.into(),
        bob_key.public_key(),
    )
    .expect("published");
    let bundle = beta.fetch(&beta_store, b"bob").unwrap().expect("published");

    // Alice's pseudonymous room, her own identity link key in her first commit (§14.2).
    let mut alice_room = alice.room_client();
    let room_id = ds.request_group_id();
    alice_room.create_group(&room_id, &ds.external_sender, true);
    let _ = ds.accept(&alice_room.client.create_group_request(ds.now_ms));
    let wrapper_key = random_wrapper_key();
    let own = alice_room.own_entry(&wrapper_key, &room_id);
    let request = alice_room.add_request_with_aad(
        Vec::new(),
        add_aad_bytes(vec![own]).unwrap(),
        &wrapper_key,
        true,
        ds.now_ms,
    );
    let _ = ds.accept(&request);
    alice_room.client.confirm_commit();

    // Her request, signed by her real key, sealed to Bob's.
    let alice_key = alice_room.real_signer.to_public_vec();
    let (pending, delivery) = seal_connection_request(
        &crypto,
        &crypto,
        &alice_room.real_signer,
        &RequestContents {
            credential: &alice_room.real_credential,
            signature_key: &alice_key,
            connection_room_id: &room_id,
            identity_link_wrapper_key: &wrapper_key,
            connection_key: &alice.connection_key,
            connection_token: &alice.connection_token,
        },
        &bundle,
        ALPHA,
    )
    .expect("sealed");
    let outcome = beta
        .deliver(
            now,
            &encode(&delivery).unwrap(),
            Some(ALPHA),
            &mut beta_store,
        )
        .unwrap();
    assert_eq!(outcome.status, mimi_ds::qs::QsStatus::Accepted);
    let stored = beta.inbox(&beta_store, b"bob", 0, 10).unwrap();
    let mut responder = mimi_ds::connection::ConnectionResponder::new(bob_key);
    let opened = responder.open(&crypto, BETA, &stored[0]).expect("opens");
    let bob_room = bob.room_client();
    Connecting {
        ds,
        alice_room,
        bob,
        bob_room,
        wrapper_key,
        pending,
        opened,
    }
}

/// The GroupInfo of the room, fetched without authentication as a stranger does.
fn room_info(ds: &mut TestDs, room_id: &[u8]) -> ExternalCommitInfo {
    match decode_response(
        &ds.process(&TestClient::group_info_request(room_id))
            .response,
    )
    .body
    {
        DsResponseBody::ExternalCommitInfo(info) => info,
        other => panic!("no GroupInfo: {other:?}"),
    }
}

/// Bob's response contents: his real credential and key, his connection key and token.
fn bob_contents<'a>(
    bob: &'a User,
    room: &'a PseudonymousClient,
    key: &'a [u8],
) -> ResponseContents<'a> {
    ResponseContents {
        credential: &room.real_credential,
        signature_key: key,
        connection_key: &bob.connection_key,
        connection_token: &bob.connection_token,
    }
}

/// The identity link keys the hub serves to `member`.
fn links(ds: &mut TestDs, member: &PseudonymousClient) -> IdentityLinkKeys {
    ds.advance(1);
    match decode_response(
        &ds.accept(&member.identity_link_keys_request(ds.now_ms))
            .response,
    )
    .body
    {
        DsResponseBody::IdentityLinkKeys(links) => links,
        other => panic!("{other:?}"),
    }
}

/// `joiner` external-commits into the room with `aad`; the commit reaches `alice`, who merges it
/// and returns its authenticated data and the member it added.
fn join_and_deliver(
    ds: &mut TestDs,
    joiner: &mut PseudonymousClient,
    alice: &mut PseudonymousClient,
    aad: Vec<u8>,
) -> (Vec<u8>, Member) {
    let room_id = alice.client.group_id();
    let info = room_info(ds, &room_id);
    let out = ds.accept(&joiner.external_join_request_with_aad(&info, aad));
    joiner.client.confirm_commit();
    TestDs::route(&out, &mut [&mut alice.client]);
    let before: Vec<u32> = alice
        .client
        .group()
        .members()
        .map(|m| m.index.u32())
        .collect();
    let message: FanoutMessage = alice.client.inbox.pop().expect("the commit reached Alice");
    let received = alice.client.receive_commit_with_aad(&message);
    let joined = alice
        .client
        .group()
        .members()
        .find(|m| !before.contains(&m.index.u32()))
        .expect("the commit added a member");
    (received, joined)
}

#[test]
fn a_pseudonymous_connection_room_carries_the_response_and_the_link_and_both_sides_check_them() {
    let crypto = RustCrypto::default();
    let Connecting {
        mut ds,
        mut alice_room,
        bob,
        mut bob_room,
        wrapper_key,
        pending,
        opened,
    } = connecting();
    let room_id = alice_room.client.group_id();

    // Step 7: one SafeAAD, the identity link key (0xF1D8) before the response (0xF1DA).
    let bob_key = bob_room.real_signer.to_public_vec();
    let own = bob_room.own_entry(&wrapper_key, &room_id);
    let aad = seal_connection_response_with_identity_link(
        &crypto,
        &bob_room.real_signer,
        &opened,
        &bob_contents(&bob, &bob_room, &bob_key),
        own.clone(),
    )
    .unwrap();
    let (safe_aad, rest) = SafeAad::parse_prefix(&aad).unwrap();
    assert!(rest.is_empty());
    let ids: Vec<u16> = safe_aad.aad_items.iter().map(|i| i.component_id).collect();
    assert_eq!(
        ids,
        [
            IDENTITY_LINK_KEYS_COMPONENT_ID,
            CONNECTION_RESPONSE_COMPONENT_ID
        ]
    );

    // The hub accepts the external commit and stores Bob's link at his leaf.
    let (received, joined) = join_and_deliver(&mut ds, &mut bob_room, &mut alice_room, aad.clone());
    assert_eq!(received, aad);
    let bob_leaf = bob_room.client.leaf();
    assert_eq!(joined.index.u32(), bob_leaf);
    let served = links(&mut ds, &bob_room);
    assert_eq!(served.entries.get(bob_leaf as usize), Some(&Some(own)));

    // Step 9: Alice opens the response and checks that the joiner is the Bob it names.
    let (response, real) = pending
        .open_pseudonymous_response(&crypto, &received, &joined)
        .unwrap();
    assert_eq!(
        response.responder_client_credential,
        bob_room.real_credential
    );
    assert_eq!(real.credential, bob_room.real_credential);
    assert_eq!(real.signature_key, bob_key);

    // Step 8: Bob checks, from the links the hub serves, that the room's other member is the
    // Alice who signed the request.
    let peers = opened
        .check_room(
            &crypto,
            bob_room.client.group().members(),
            bob_leaf,
            &served,
        )
        .unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].0, alice_room.client.leaf());
    assert_eq!(peers[0].1.credential, alice_room.real_credential);
    assert_eq!(
        peers[0].1.signature_key,
        alice_room.real_signer.to_public_vec()
    );
}

#[test]
fn an_acceptance_without_the_identity_link_key_is_refused_by_the_hub_and_the_initiator() {
    let crypto = RustCrypto::default();
    let mut c = connecting();
    let room_id = c.alice_room.client.group_id();
    let bob_key = c.bob_room.real_signer.to_public_vec();
    let contents = bob_contents(&c.bob, &c.bob_room, &bob_key);
    // The response alone: the hub refuses an external commit into a pseudonymous group
    // without its joiner's identity link key (R-LINK-3).
    let only_response =
        seal_connection_response(&crypto, &c.bob_room.real_signer, &c.opened, &contents).unwrap();
    let info = room_info(&mut c.ds, &room_id);
    let request = c
        .bob_room
        .external_join_request_with_aad(&info, only_response.clone());
    assert_eq!(
        c.ds.reject(&request, mimi_ds::wire::ErrorCode::InvalidMlsMessage),
        mimi_ds::RejectReason::from(mimi_ds::pseudonym::InvalidIdentityLinkKeys::Missing)
    );
    // And the initiator, handed such a commit, does not take the joiner for Bob.
    let stranger = c.alice_room.client.group().members().next().unwrap();
    assert_eq!(
        c.pending
            .open_pseudonymous_response(&crypto, &only_response, &stranger),
        Err(ConnectionError::PeerIdentity(
            PeerIdentityError::NoIdentityLinkKey {
                leaf: stranger.index.u32()
            }
        ))
    );
}

#[test]
fn unsorted_or_duplicated_safe_aad_items_are_refused_by_the_hub_and_the_initiator() {
    let crypto = RustCrypto::default();
    let mut c = connecting();
    let room_id = c.alice_room.client.group_id();
    let bob_key = c.bob_room.real_signer.to_public_vec();
    let own = c.bob_room.own_entry(&c.wrapper_key, &room_id);
    let good = seal_connection_response_with_identity_link(
        &crypto,
        &c.bob_room.real_signer,
        &c.opened,
        &bob_contents(&c.bob, &c.bob_room, &bob_key),
        own.clone(),
    )
    .unwrap();
    let (safe_aad, _) = SafeAad::parse_prefix(&good).unwrap();
    let response_item = safe_aad.aad_items[1].clone();
    let link_item = add_aad_item(vec![own]).unwrap();
    let unsorted = encode(&SafeAad {
        aad_items: vec![response_item.clone(), link_item.clone()],
    })
    .unwrap();
    let duplicated = encode(&SafeAad {
        aad_items: vec![link_item, response_item.clone(), response_item],
    })
    .unwrap();
    let info = room_info(&mut c.ds, &room_id);
    for (aad, why) in [
        (
            unsorted,
            SafeAadError::Unsorted {
                previous: CONNECTION_RESPONSE_COMPONENT_ID,
                next: IDENTITY_LINK_KEYS_COMPONENT_ID,
            },
        ),
        (
            duplicated,
            SafeAadError::Duplicate {
                component_id: CONNECTION_RESPONSE_COMPONENT_ID,
            },
        ),
    ] {
        assert_eq!(
            c.pending.open_response(&crypto, &aad),
            Err(ConnectionError::SafeAad(why.clone()))
        );
        let mut joiner = c.bob.room_client();
        let request = joiner.external_join_request_with_aad(&info, aad);
        assert_eq!(
            c.ds.reject(&request, mimi_ds::wire::ErrorCode::InvalidMlsMessage),
            mimi_ds::RejectReason::from(mimi_ds::pseudonym::InvalidIdentityLinkKeys::SafeAad(why))
        );
    }
}

/// Mallory's client in the room: a genuine pseudonymous credential whose identity link names
/// `named` (her own real credential, or someone else's) and is signed by her own real key.
fn mallory_client(named: Option<&openmls::prelude::Credential>) -> PseudonymousClient {
    let mallory = User::new("mallory", MALLORY_DOMAIN);
    let mut client = mallory.room_client();
    if let Some(credential) = named {
        let made = new_pseudonymous_credential(
            &RustCrypto::default(),
            CIPHERSUITE,
            CredentialInputs {
                connection_key: &mallory.connection_key,
                tbs: client.pseudonymous.tbs(),
                real_credential: credential,
                real_signer: &client.real_signer,
                real_signature_key: &client.real_signer.to_public_vec(),
            },
        )
        .unwrap();
        client.set_credential(&made.credential);
        client.pseudonymous = made.credential;
        client.identity_link_key = made.identity_link_key;
    }
    client
}

#[test]
fn the_responder_detects_a_member_that_is_not_the_requester() {
    let crypto = RustCrypto::default();
    for (what, named_as_alice, garbage_entry) in [
        ("Mallory as herself", false, false),
        (
            "Mallory naming Alice's credential, signed by her own key",
            true,
            false,
        ),
        ("Mallory with an entry that does not unwrap", false, true),
    ] {
        let mut c = connecting();
        let room_id = c.alice_room.client.group_id();
        // Mallory, who learned the room and its wrapper key, joins before Bob.
        let alice_credential = c.alice_room.real_credential.clone();
        let mut mallory = mallory_client(named_as_alice.then_some(&alice_credential));
        let entry = if garbage_entry {
            EncryptedIdentityLinkKey {
                ciphertext: vec![9; 48].into(),
            }
        } else {
            mallory.own_entry(&c.wrapper_key, &room_id)
        };
        let _ = join_and_deliver(
            &mut c.ds,
            &mut mallory,
            &mut c.alice_room,
            add_aad_bytes(vec![entry]).unwrap(),
        );
        // Bob accepts and joins; Mallory's client is not in his inbox list.
        let bob_key = c.bob_room.real_signer.to_public_vec();
        let own = c.bob_room.own_entry(&c.wrapper_key, &room_id);
        let aad = seal_connection_response_with_identity_link(
            &crypto,
            &c.bob_room.real_signer,
            &c.opened,
            &bob_contents(&c.bob, &c.bob_room, &bob_key),
            own,
        )
        .unwrap();
        let _ = join_and_deliver(&mut c.ds, &mut c.bob_room, &mut c.alice_room, aad);
        let served = links(&mut c.ds, &c.bob_room);
        let mallory_leaf = mallory.client.leaf();
        let refusal = c
            .opened
            .check_room(
                &crypto,
                c.bob_room.client.group().members(),
                c.bob_room.client.leaf(),
                &served,
            )
            .expect_err(what);
        match refusal {
            ConnectionError::PeerIdentity(PeerIdentityError::UnexpectedIdentity {
                leaf,
                found,
            }) if !garbage_entry => {
                assert_eq!(leaf, mallory_leaf, "{what}");
                assert_eq!(found.signature_key, mallory.real_signer.to_public_vec());
                let expected = if named_as_alice {
                    &alice_credential
                } else {
                    &mallory.real_credential
                };
                assert_eq!(&found.credential, expected, "{what}");
            }
            ConnectionError::PeerIdentity(PeerIdentityError::DoesNotAuthenticate {
                leaf, ..
            }) if garbage_entry => {
                assert_eq!(leaf, mallory_leaf, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn the_initiator_detects_a_joiner_presenting_the_responders_response_as_its_own() {
    let crypto = RustCrypto::default();
    let mut c = connecting();
    let room_id = c.alice_room.client.group_id();
    // Bob's genuine acceptance, seen in transit (the hub sees every commit's AAD) ...
    let bob_key = c.bob_room.real_signer.to_public_vec();
    let bobs = seal_connection_response_with_identity_link(
        &crypto,
        &c.bob_room.real_signer,
        &c.opened,
        &bob_contents(&c.bob, &c.bob_room, &bob_key),
        c.bob_room.own_entry(&c.wrapper_key, &room_id),
    )
    .unwrap();
    let (safe_aad, _) = SafeAad::parse_prefix(&bobs).unwrap();
    let bobs_response: SafeAadItem = safe_aad
        .aad_items
        .into_iter()
        .find(|i| i.component_id == CONNECTION_RESPONSE_COMPONENT_ID)
        .unwrap();
    // ... is replayed by Mallory, with her own identity link key, into the room first.
    let mut mallory = mallory_client(None);
    let aad = encode(
        &SafeAad::from_items(vec![
            bobs_response,
            add_aad_item(vec![mallory.own_entry(&c.wrapper_key, &room_id)]).unwrap(),
        ])
        .unwrap(),
    )
    .unwrap();
    let (received, joined) = join_and_deliver(&mut c.ds, &mut mallory, &mut c.alice_room, aad);
    // The response alone opens and verifies: it is Bob's.
    let response = c.pending.open_response(&crypto, &received).unwrap();
    assert_eq!(
        response.responder_client_credential,
        c.bob_room.real_credential
    );
    // The joiner's identity link shows it is not Bob.
    match c
        .pending
        .open_pseudonymous_response(&crypto, &received, &joined)
    {
        Err(ConnectionError::PeerIdentity(PeerIdentityError::UnexpectedIdentity {
            leaf,
            found,
        })) => {
            assert_eq!(leaf, joined.index.u32());
            assert_eq!(found.credential, mallory.real_credential);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_copied_credential_is_not_taken_for_its_owner() {
    // Mallory's leaf holding Alice's pseudonymous credential (identity link and all) under
    // her own signature key: the hub refuses it (R-PSEUDO-4), and the client check does not
    // rest on that.
    let crypto = RustCrypto::default();
    let c = connecting();
    let alice_member = c.alice_room.client.group().members().next().expect("Alice");
    let mallory = mallory_client(None);
    let copied = Member::new(
        alice_member.index,
        alice_member.encryption_key.clone(),
        mallory.client.signer.to_public_vec(),
        alice_member.credential.clone(),
    );
    let served = IdentityLinkKeys {
        epoch: 1,
        entries: vec![Some(
            c.alice_room
                .own_entry(&c.wrapper_key, &c.alice_room.client.group_id()),
        )],
    };
    // The genuine leaf passes; the copy does not.
    assert!(c
        .opened
        .check_room(&crypto, [alice_member.clone()], u32::MAX, &served)
        .is_ok());
    assert_eq!(
        c.opened.check_room(&crypto, [copied], u32::MAX, &served),
        Err(ConnectionError::PeerIdentity(
            PeerIdentityError::LeafKeyMismatch {
                leaf: alice_member.index.u32()
            }
        ))
    );
    // A room with nobody else in it shows no peer.
    assert_eq!(
        c.opened.check_room(
            &crypto,
            [alice_member.clone()],
            alice_member.index.u32(),
            &served
        ),
        Err(ConnectionError::PeerIdentity(PeerIdentityError::NoPeer))
    );
}
