//! Pseudonymous credentials (wire-format.md §14.1; MIMIMI §"Pseudonymous credentials"): the
//! client-side identity links, and the hub's validator for pseudonymous groups, with real
//! openmls clients. Every refusal is checked end to end (code, named reason, no fanout, storage
//! byte-identical).

use mimi_ds::pseudonym::group_links::add_aad_bytes;
use mimi_ds::pseudonym::link::{
    authenticate, authenticate_with_connection_key, identity_link_key,
    verify_pseudonymous_credential_signature, IdentityLinkError,
};
use mimi_ds::pseudonym::EncryptedIdentityLinkKey;
use mimi_ds::pseudonym::{
    IdentifierUri, InvalidPseudonymousCredential, PseudonymError, PseudonymKind,
    PseudonymousCredential,
};
use mimi_ds::testing::pseudonymous::{
    random_connection_key, random_pseudonym, random_wrapper_key, LinkedAdd, PseudonymousClient,
};
use mimi_ds::testing::{Received, TestClient, TestDs, CIPHERSUITE};
use mimi_ds::wire::{
    DsRequestBody, DsResponseBody, ErrorCode, GroupUpdateRequest, MembershipCommitRequest,
};
use mimi_ds::{InvalidLeafNode, NotAllowed, RejectReason};
use openmls::prelude::{BasicCredential, Credential, CredentialType, KeyPackage, LeafNodeIndex};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;

/// Alice (two devices, one user pseudonym) and Bob in a pseudonymous group at epoch 1.
struct Room {
    ds: TestDs,
    alice_phone: PseudonymousClient,
    alice_laptop: PseudonymousClient,
    bob: PseudonymousClient,
    alice_connection_key: Vec<u8>,
    alice_user: IdentifierUri,
}

fn room() -> Room {
    room_with(false)
}

/// [`room`]; with `user_keys`, Alice's two devices register one user authentication key and
/// Bob another (wire-format.md §3.5).
fn room_with(user_keys: bool) -> Room {
    let mut ds = TestDs::new("hub.example");
    let alice_connection_key = random_connection_key();
    let bob_connection_key = random_connection_key();
    let alice_user = random_pseudonym(PseudonymKind::User, "a.example");
    let bob_user = random_pseudonym(PseudonymKind::User, "b.example");
    let mut alice_phone = PseudonymousClient::new(
        "alice",
        "phone",
        "a.example",
        &alice_user,
        &alice_connection_key,
    );
    let mut alice_laptop = PseudonymousClient::new(
        "alice",
        "laptop",
        "a.example",
        &alice_user,
        &alice_connection_key,
    );
    let mut bob =
        PseudonymousClient::new("bob", "phone", "b.example", &bob_user, &bob_connection_key);
    if user_keys {
        TestClient::share_user_key(&mut [&mut alice_phone.client, &mut alice_laptop.client]);
        TestClient::share_user_key(&mut [&mut bob.client]);
    }
    let group_id = ds.request_group_id();
    alice_phone.create_group(&group_id, &ds.external_sender, true);
    let _ = ds.accept(&alice_phone.client.create_group_request(ds.now_ms));
    // The Adds carry the joiners' wrapped identity link keys (wire-format.md §14.2).
    let added = vec![
        (alice_laptop.key_package(), alice_connection_key.as_slice()),
        (bob.key_package(), bob_connection_key.as_slice()),
    ];
    let request = alice_phone.add_linked_request(
        LinkedAdd { added, own: true },
        &random_wrapper_key(),
        ds.now_ms,
    );
    let out = ds.accept(&request);
    alice_phone.client.confirm_commit();
    for joiner in [&mut alice_laptop, &mut bob] {
        TestDs::route(&out, &mut [&mut joiner.client]);
        join_from_inbox(&mut ds, joiner);
    }
    Room {
        ds,
        alice_phone,
        alice_laptop,
        bob,
        alice_connection_key,
        alice_user,
    }
}

fn join_from_inbox(ds: &mut TestDs, joiner: &mut PseudonymousClient) {
    let Some(Received::Welcome(welcome)) = joiner.client.process_inbox().pop() else {
        panic!("no Welcome")
    };
    let (request, processed) = joiner.client.welcome_info_request(&welcome, ds.now_ms);
    let DsResponseBody::WelcomeInfo(info) =
        mimi_ds::testing::decode_response(&ds.process(&request).response).body
    else {
        panic!("welcome_info refused")
    };
    joiner.client.join_with_tree(processed, &info.ratchet_tree);
}

fn remove_users_request(
    committer: &mut PseudonymousClient,
    leaves: &[u32],
    now_ms: u64,
) -> Vec<u8> {
    let removed: Vec<LeafNodeIndex> = leaves.iter().copied().map(LeafNodeIndex::new).collect();
    let (update, _) = committer
        .client
        .stage_commit(|b| b.propose_removals(removed));
    committer.client.signed(
        DsRequestBody::RemoveUsers(GroupUpdateRequest {
            group_update: update,
        }),
        now_ms,
    )
}

fn add_clients_request(
    committer: &mut PseudonymousClient,
    key_package: KeyPackage,
    now_ms: u64,
) -> Vec<u8> {
    // One entry for the Add (wire-format.md §14.2); the hub cannot check what it wraps.
    let entry = EncryptedIdentityLinkKey {
        ciphertext: vec![7; 48].into(),
    };
    committer
        .client
        .group
        .as_mut()
        .unwrap()
        .set_aad(add_aad_bytes(vec![entry]).unwrap());
    let (update, welcome) = committer
        .client
        .stage_commit(|b| b.propose_adds(vec![key_package]));
    committer.client.signed(
        DsRequestBody::AddClients(MembershipCommitRequest {
            group_update: update,
            welcome_messages: welcome.into_iter().collect(),
        }),
        now_ms,
    )
}

/// The pseudonymous refusal of a request, checked end to end.
fn refused(ds: &mut TestDs, request: &[u8]) -> InvalidPseudonymousCredential {
    match ds.reject(request, ErrorCode::InvalidLeafNodeOrKeyPackage) {
        RejectReason::InvalidLeafNode(InvalidLeafNode::Pseudonymous(reason)) => reason,
        other => panic!("not a pseudonymous-credential refusal: {other:?}"),
    }
}

/// Adds `newcomer`'s KeyPackage through Alice's phone; refused with the returned reason.
fn add_refused(room: &mut Room, key_package: KeyPackage) -> InvalidPseudonymousCredential {
    let request = room
        .alice_phone
        .client
        .add_request(vec![key_package], room.ds.now_ms);
    room.alice_phone.client.discard_commit();
    refused(&mut room.ds, &request)
}

fn newcomer(domain: &str) -> PseudonymousClient {
    PseudonymousClient::new(
        "carol",
        "phone",
        domain,
        &random_pseudonym(PseudonymKind::User, domain),
        &random_connection_key(),
    )
}

#[test]
fn leaves_are_grouped_into_users_by_user_pseudonym() {
    let mut room = room();
    let (phone, laptop, bob) = (
        room.alice_phone.client.leaf(),
        room.alice_laptop.client.leaf(),
        room.bob.client.leaf(),
    );
    // remove_users must cover every client of a user: Alice's two leaves are one user.
    let partial = remove_users_request(&mut room.bob, &[laptop], room.ds.now_ms);
    room.bob.client.discard_commit();
    assert_eq!(
        room.ds.reject(&partial, ErrorCode::NotAllowed),
        RejectReason::NotAllowed(NotAllowed::RemoveUsersPartially)
    );
    // add_clients adds only the sender's own user: a KeyPackage under Alice's user pseudonym
    // is Alice's, one under another pseudonym is not.
    let mut stranger = newcomer("a.example");
    let request = add_clients_request(
        &mut room.alice_phone,
        stranger.key_package(),
        room.ds.now_ms,
    );
    room.alice_phone.client.discard_commit();
    assert_eq!(
        room.ds.reject(&request, ErrorCode::NotAllowed),
        RejectReason::NotAllowed(NotAllowed::AddClientsOfAnotherUser)
    );
    stranger = PseudonymousClient::new(
        "alice",
        "tablet",
        "a.example",
        &room.alice_user,
        &room.alice_connection_key,
    );
    let request = add_clients_request(
        &mut room.alice_phone,
        stranger.key_package(),
        room.ds.now_ms,
    );
    let out = room.ds.accept(&request);
    room.alice_phone.client.confirm_commit();
    TestDs::route(
        &out,
        &mut [&mut room.bob.client, &mut room.alice_laptop.client],
    );
    room.bob.client.process_inbox();
    assert_eq!(room.bob.client.group().members().count(), 4);
    // Bob removes the user Alice: all three of her leaves, found by her user pseudonym.
    let alice_leaves: Vec<u32> = room
        .bob
        .client
        .group()
        .members()
        .map(|m| m.index.u32())
        .filter(|leaf| *leaf != bob)
        .collect();
    assert_eq!(alice_leaves.len(), 3);
    assert!(alice_leaves.contains(&phone) && alice_leaves.contains(&laptop));
    let request = remove_users_request(&mut room.bob, &alice_leaves, room.ds.now_ms);
    let _ = room.ds.accept(&request);
    room.bob.client.confirm_commit();
    assert_eq!(room.bob.client.group().members().count(), 1);
}

#[test]
fn user_keys_register_for_user_pseudonyms() {
    let mut room = room_with(true);
    let laptop = room.alice_laptop.client.leaf();
    // Bob's user key does not reach Alice's pseudonymous user.
    let (update, _) = room
        .bob
        .client
        .stage_commit(|b| b.propose_removals([LeafNodeIndex::new(laptop)]));
    room.bob.client.discard_commit();
    let body = DsRequestBody::RemoveClients(GroupUpdateRequest {
        group_update: update,
    });
    assert_eq!(
        room.ds.reject(
            &room.bob.client.signed_as_user(body, room.ds.now_ms),
            ErrorCode::NotAllowed
        ),
        RejectReason::NotAllowed(NotAllowed::RemoveClientsOfAnotherUser)
    );
    // Alice's does: her phone removes her laptop, authorised by the key of her user pseudonym.
    let (update, _) = room
        .alice_phone
        .client
        .stage_commit(|b| b.propose_removals([LeafNodeIndex::new(laptop)]));
    let body = DsRequestBody::RemoveClients(GroupUpdateRequest {
        group_update: update,
    });
    let _ = room
        .ds
        .accept(&room.alice_phone.client.signed_as_user(body, room.ds.now_ms));
    room.alice_phone.client.confirm_commit();
    assert_eq!(room.alice_phone.client.group().members().count(), 2);
}

#[test]
fn identity_links_open_only_with_the_users_connection_key() {
    let crypto = RustCrypto::default();
    let connection_key = random_connection_key();
    let user = random_pseudonym(PseudonymKind::User, "a.example");
    let alice = PseudonymousClient::new("alice", "phone", "a.example", &user, &connection_key);
    // A connected user derives the key and learns the real identity, signed by the real key.
    let (real, key) = authenticate_with_connection_key(
        &crypto,
        CIPHERSUITE,
        &connection_key,
        &alice.pseudonymous,
    )
    .unwrap();
    assert_eq!(real.credential, alice.real_credential);
    assert_eq!(real.signature_key, alice.real_signer.to_public_vec());
    assert_eq!(key, alice.identity_link_key);
    assert_eq!(
        authenticate(&crypto, CIPHERSUITE, &key, &alice.pseudonymous).unwrap(),
        real
    );
    // Anyone else does not.
    assert_eq!(
        authenticate_with_connection_key(
            &crypto,
            CIPHERSUITE,
            &random_connection_key(),
            &alice.pseudonymous
        ),
        Err(IdentityLinkError::DoesNotDecrypt)
    );
    // The key is bound to the credential: another pseudonym, or the ciphertext moved onto
    // another credential, does not open.
    let mut moved = alice.pseudonymous.clone();
    moved.client_pseudonym = random_pseudonym(PseudonymKind::Client, "a.example");
    assert_eq!(
        authenticate_with_connection_key(&crypto, CIPHERSUITE, &connection_key, &moved),
        Err(IdentityLinkError::DoesNotDecrypt)
    );
    assert_ne!(
        identity_link_key(&crypto, CIPHERSUITE, &connection_key, &moved.tbs()).unwrap(),
        key
    );
}

#[test]
fn a_pseudonymous_credential_signed_by_another_key_is_not_authenticated() {
    let crypto = RustCrypto::default();
    let connection_key = random_connection_key();
    let user = random_pseudonym(PseudonymKind::User, "a.example");
    let mut mallory =
        PseudonymousClient::new("mallory", "phone", "m.example", &user, &connection_key);
    // Mallory claims Alice's real credential but can only sign with her own key: she names
    // Alice's key in the link, and the signature does not verify with it.
    let alice_key = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
    let alice_credential: Credential =
        BasicCredential::new(b"mimi://a.example/d/alice/phone".to_vec()).into();
    mallory.real_credential = alice_credential.clone();
    let tbs = mallory.pseudonymous.tbs();
    let forged = mimi_ds::pseudonym::link::new_pseudonymous_credential(
        &crypto,
        CIPHERSUITE,
        mimi_ds::pseudonym::link::CredentialInputs {
            connection_key: &connection_key,
            tbs: tbs.clone(),
            real_credential: &alice_credential,
            real_signer: &mallory.real_signer,
            real_signature_key: &alice_key.to_public_vec(),
        },
    )
    .unwrap();
    assert_eq!(
        authenticate_with_connection_key(&crypto, CIPHERSUITE, &connection_key, &forged.credential),
        Err(IdentityLinkError::SignatureDoesNotVerify)
    );
    // The signature check itself, with the right and the wrong key.
    let signature =
        mimi_ds::pseudonym::link::sign_pseudonymous_credential(&alice_key, &tbs).unwrap();
    assert_eq!(
        verify_pseudonymous_credential_signature(
            &crypto,
            CIPHERSUITE,
            &alice_key.to_public_vec(),
            &tbs,
            &signature
        ),
        Ok(())
    );
    assert_eq!(
        verify_pseudonymous_credential_signature(
            &crypto,
            CIPHERSUITE,
            &mallory.real_signer.to_public_vec(),
            &tbs,
            &signature
        ),
        Err(IdentityLinkError::SignatureDoesNotVerify)
    );
}

#[test]
fn an_undecodable_pseudonymous_credential_is_refused() {
    let mut room = room();
    let mut carol = newcomer("c.example");
    let mut content = carol.pseudonymous.encode().unwrap();
    content.push(0);
    carol.set_mls_credential(Credential::new(CredentialType::Other(0xF1D7), content));
    assert!(matches!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::Undecodable(_)
    ));
}

#[test]
fn a_non_canonical_pseudonym_is_refused() {
    let mut room = room();
    let mut carol = newcomer("c.example");
    let mut credential = carol.pseudonymous.clone();
    let upper = String::from_utf8(credential.user_pseudonym.uri.as_slice().to_vec())
        .unwrap()
        .replace("/u/", "/U/");
    credential.user_pseudonym.uri = upper.into_bytes().into();
    carol.set_credential(&credential);
    assert_eq!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::MalformedPseudonym {
            field: "user_pseudonym",
            error: PseudonymError::NotPseudonymUri("u"),
        }
    );
}

#[test]
fn pseudonyms_of_two_providers_in_one_credential_are_refused() {
    let mut room = room();
    let mut carol = newcomer("c.example");
    let mut credential = carol.pseudonymous.clone();
    credential.client_pseudonym = random_pseudonym(PseudonymKind::Client, "d.example");
    carol.set_credential(&credential);
    assert_eq!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::PseudonymDomainsDiffer
    );
}

#[test]
fn a_credential_naming_another_signature_key_is_refused() {
    let mut room = room();
    let mut carol = newcomer("c.example");
    let mut credential = carol.pseudonymous.clone();
    credential.signature_public_key = room.bob.client.signer.to_public_vec().into();
    carol.set_credential(&credential);
    assert_eq!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::SignatureKeyMismatch
    );
}

#[test]
fn an_empty_identity_link_is_refused() {
    let mut room = room();
    let mut carol = newcomer("c.example");
    let mut credential = carol.pseudonymous.clone();
    credential.identity_link_ciphertext = Vec::new().into();
    carol.set_credential(&credential);
    assert_eq!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::EmptyIdentityLink
    );
}

#[test]
fn a_real_credential_in_a_pseudonymous_group_is_refused() {
    let mut room = room();
    let mut carol = newcomer("c.example");
    carol.set_mls_credential(
        BasicCredential::new(b"mimi://c.example/d/carol/phone".to_vec()).into(),
    );
    assert_eq!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::NotPseudonymous { leaf: 3 }
    );
}

#[test]
fn a_pseudonymous_credential_in_a_plain_group_is_refused() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = newcomer("a.example");
    alice.set_mls_credential(
        BasicCredential::new(b"mimi://a.example/d/alice/phone".to_vec()).into(),
    );
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender, false);
    let _ = ds.accept(&alice.client.create_group_request(ds.now_ms));
    let carol = newcomer("c.example");
    let request = alice
        .client
        .add_request(vec![carol.key_package()], ds.now_ms);
    alice.client.discard_commit();
    assert_eq!(
        refused(&mut ds, &request),
        InvalidPseudonymousCredential::InPlainGroup { leaf: 1 }
    );
}

#[test]
fn a_user_pseudonym_under_another_providers_domain_is_refused() {
    let mut room = room();
    // Carol at c.example claims the UUID of Alice's user pseudonym.
    let alice_user = String::from_utf8(room.alice_user.uri.as_slice().to_vec()).unwrap();
    let claimed = IdentifierUri {
        uri: alice_user
            .replace("a.example", "c.example")
            .into_bytes()
            .into(),
    };
    let carol = PseudonymousClient::new(
        "carol",
        "phone",
        "c.example",
        &claimed,
        &random_connection_key(),
    );
    assert_eq!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::UserPseudonymUnderTwoDomains { leaf: 3 }
    );
}

#[test]
fn a_client_pseudonym_used_twice_is_refused() {
    let mut room = room();
    let mut carol = newcomer("a.example");
    let mut credential = carol.pseudonymous.clone();
    credential.client_pseudonym = room.alice_laptop.pseudonymous.client_pseudonym.clone();
    carol.set_credential(&credential);
    assert_eq!(
        add_refused(&mut room, carol.key_package()),
        InvalidPseudonymousCredential::ClientPseudonymReused { leaf: 3 }
    );
}

#[test]
fn a_pseudonymous_group_with_a_malformed_creator_is_refused_at_creation() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = newcomer("a.example");
    let mut credential: PseudonymousCredential = alice.pseudonymous.clone();
    credential.identity_link_ciphertext = Vec::new().into();
    alice.set_credential(&credential);
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender, true);
    let refusal = ds.reject_consuming_reservation(
        &alice.client.create_group_request(ds.now_ms),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
    );
    assert_eq!(
        refusal.reason,
        RejectReason::InvalidLeafNode(InvalidLeafNode::Pseudonymous(
            InvalidPseudonymousCredential::EmptyIdentityLink
        ))
    );
}
