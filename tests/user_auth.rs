//! User-level authentication (DS-00 §5.1 `user_key_hash`; DS-03 user authentication keys): a
//! user registers a key with the group through its clients' leaves, and may then authorise
//! user-level operations with it, such as removing its own user from the group. A registration
//! proves possession of the key, and a key belongs to the user that registered it first
//! (wire-format.md §3.5).

use std::rc::Rc;

use mimi_ds::testing::{commit_body, decode_response, Received, TestClient, TestDs, CIPHERSUITE};
use mimi_ds::wire::{
    DsRequest, DsRequestBody, ErrorCode, GroupUpdateRequest, ProposalsRequest, UserAuthKeyExtension,
};
use mimi_ds::{AuthenticationFailed, InvalidLeafNode, NotAllowed, RejectReason, Status};
use openmls::prelude::LeafNodeParameters;
use openmls_basic_credential::SignatureKeyPair;

/// Alice's group with both of Bob's clients, which registered Bob's user key.
fn group_with_bob_registered() -> (TestDs, TestClient, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let user_key = Rc::new(SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap());
    let mut bob1 = TestClient::new("bob", "bob-phone", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-laptop", "b.example");
    bob1.user_key = Some(user_key.clone());
    bob2.user_key = Some(user_key);
    ds.create_group_with(&mut alice, &mut [&mut bob1, &mut bob2]);
    (ds, alice, bob1, bob2)
}

/// The proposals of a `proposals` request built by a client.
fn proposals_of(request: &[u8]) -> Vec<mimi_ds::wire::MlsMessageBytes> {
    let decoded: DsRequest = mimi_ds::wire::decode_exact(request).unwrap();
    let DsRequestBody::Proposals(ProposalsRequest { proposals }) = decoded.body else {
        panic!("not proposals")
    };
    proposals
}

#[test]
fn a_user_removes_itself_from_the_group_with_its_user_key() {
    let (mut ds, mut alice, mut bob1, mut bob2) = group_with_bob_registered();
    // Bob's phone proposes removing the laptop and itself; the user key authorises both.
    let laptop = bob2.leaf();
    let mut proposals = proposals_of(&bob1.propose_remove_request(laptop, ds.now_ms));
    let self_removal = bob1.self_remove_request(ds.now_ms);
    let decoded: DsRequest = mimi_ds::wire::decode_exact(&self_removal).unwrap();
    let DsRequestBody::SelfRemoveClient(own) = decoded.body else {
        panic!()
    };
    proposals.push(own.proposal);
    let out = ds.process(&bob1.signed_as_user(
        DsRequestBody::Proposals(ProposalsRequest { proposals }),
        ds.now_ms,
    ));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    TestDs::route(&out, &mut [&mut alice, &mut bob2]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Proposal, Received::Proposal]
    );

    // Alice's next commit carries them out: Bob's user is gone.
    let out = ds.process(&alice.update_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice.confirm_commit();
    assert_eq!(alice.group().members().count(), 1);
}

#[test]
fn a_user_key_authorises_only_the_users_own_clients() {
    let (mut ds, alice, mut bob1, _bob2) = group_with_bob_registered();
    // A user key is not a member key: messages and generic commits need a leaf_index sender.
    let message = bob1.message_request(b"hi", ds.now_ms);
    let decoded: DsRequest = mimi_ds::wire::decode_exact(&message).unwrap();
    let out = ds.process(&bob1.signed_as_user(decoded.body, ds.now_ms));
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::LeafIndexSenderRequired.into())
    );
    let commit = bob1.update_request(ds.now_ms);
    bob1.discard_commit();
    let decoded: DsRequest = mimi_ds::wire::decode_exact(&commit).unwrap();
    let out = ds.process(&bob1.signed_as_user(decoded.body, ds.now_ms));
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::LeafIndexSenderRequired.into())
    );
    // Removing Alice is not Bob's user's business.
    let proposals = proposals_of(&bob1.propose_remove_request(alice.leaf(), ds.now_ms));
    assert_eq!(
        ds.reject(
            &bob1.signed_as_user(
                DsRequestBody::Proposals(ProposalsRequest { proposals }),
                ds.now_ms,
            ),
            ErrorCode::NotAllowed,
        ),
        NotAllowed::UserKeyBeyondOwnRemovals.into()
    );
}

#[test]
fn remove_clients_can_be_authorised_with_the_user_key() {
    let (mut ds, mut alice, mut bob1, mut bob2) = group_with_bob_registered();
    let laptop = bob2.leaf();
    let (update, _) =
        bob1.stage_commit(|b| b.propose_removals([openmls::prelude::LeafNodeIndex::new(laptop)]));
    let out = ds.process(&bob1.signed_as_user(
        DsRequestBody::RemoveClients(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    ));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    bob1.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob2]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
    assert_eq!(
        bob2.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: true
        }]
    );
}

#[test]
fn an_unregistered_user_key_is_not_accepted() {
    let (mut ds, _alice, mut bob1, bob2) = group_with_bob_registered();
    // Another key, never registered through a leaf.
    bob1.user_key = Some(Rc::new(
        SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap(),
    ));
    let proposals = proposals_of(&bob1.propose_remove_request(bob2.leaf(), ds.now_ms));
    assert_eq!(
        ds.reject(
            &bob1.signed_as_user(
                DsRequestBody::Proposals(ProposalsRequest { proposals }),
                ds.now_ms,
            ),
            ErrorCode::AuthenticationFailed,
        ),
        AuthenticationFailed::UnknownUserKey.into()
    );
}

/// The extension data 0xF1D6 that `client`'s leaf publishes for `key` (wire-format.md §3.5).
fn registration(key: &SignatureKeyPair, leaf_owner: &TestClient) -> Vec<u8> {
    mimi_ds::wire::encode(
        &UserAuthKeyExtension::sign(
            key,
            &key.to_public_vec(),
            &leaf_owner.signer.to_public_vec(),
        )
        .unwrap(),
    )
    .unwrap()
}

/// Alice adds `joiner`; the DS must refuse with `code` and change nothing. Returns the named
/// reason (`Outcome::refusal`).
fn add_is_refused(
    ds: &mut TestDs,
    alice: &mut TestClient,
    joiner: &TestClient,
    code: ErrorCode,
) -> RejectReason {
    let reason = ds.reject(
        &alice.add_request(vec![joiner.key_package()], ds.now_ms),
        code,
    );
    alice.discard_commit();
    reason
}

/// Bob's user key still acts for Bob: it authorises removing Bob's laptop.
fn bobs_key_still_acts_for_bob(ds: &mut TestDs, bob1: &mut TestClient, bob2: &TestClient) {
    let proposals = proposals_of(&bob1.propose_remove_request(bob2.leaf(), ds.now_ms));
    let out = ds.process(&bob1.signed_as_user(
        DsRequestBody::Proposals(ProposalsRequest { proposals }),
        ds.now_ms,
    ));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
}

/// Regression (issue "Group safety" point 7): Mallory publishes Bob's registration (his key and
/// his proof) in her own leaf. Before proofs were checked the DS registered Bob's key for
/// Mallory too, the last match won, and Bob's user-key requests acted for Mallory.
#[test]
fn a_copied_registration_does_not_verify_for_another_leaf() {
    let (mut ds, mut alice, mut bob1, bob2) = group_with_bob_registered();
    let bobs_key = bob1.user_key.clone().unwrap();
    let mut mallory = TestClient::new("mallory", "mallory-1", "m.example");
    mallory.user_key_extension_data = Some(registration(&bobs_key, &bob1));
    let why = add_is_refused(
        &mut ds,
        &mut alice,
        &mallory,
        ErrorCode::InvalidLeafNodeOrKeyPackage,
    );
    assert_eq!(why, RejectReason::InvalidUserKeyProof);
    // The encoding before proofs existed (the bare key) does not decode any more.
    mallory.user_key_extension_data =
        Some(mimi_ds::wire::encode(&tls_codec::VLBytes::from(bobs_key.to_public_vec())).unwrap());
    let why = add_is_refused(
        &mut ds,
        &mut alice,
        &mallory,
        ErrorCode::InvalidLeafNodeOrKeyPackage,
    );
    assert!(
        matches!(
            why,
            RejectReason::InvalidLeafNode(InvalidLeafNode::UserKeyUndecodable(_))
        ),
        "{why:?}"
    );
    bobs_key_still_acts_for_bob(&mut ds, &mut bob1, &bob2);
}

/// A key registered by one user cannot be registered by another, even one that holds its
/// private key (a shared or leaked key): the first registration stands.
#[test]
fn a_user_key_stays_with_the_user_that_registered_it_first() {
    let (mut ds, mut alice, mut bob1, bob2) = group_with_bob_registered();
    let mut mallory = TestClient::new("mallory", "mallory-1", "m.example");
    mallory.user_key = bob1.user_key.clone();
    let why = add_is_refused(&mut ds, &mut alice, &mallory, ErrorCode::NotAllowed);
    assert_eq!(why, RejectReason::UserKeyOfAnotherUser);
    bobs_key_still_acts_for_bob(&mut ds, &mut bob1, &bob2);
}

/// A user replaces its key through one of its clients, with a proof by the new key; the old
/// key no longer authenticates.
#[test]
fn a_user_rotates_its_key_with_a_proof() {
    let (mut ds, mut alice, mut bob1, mut bob2) = group_with_bob_registered();
    let old_key = bob1.user_key.clone();
    bob1.user_key = Some(Rc::new(
        SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap(),
    ));
    // An update path whose new leaf publishes the new registration.
    let extensions = bob1.leaf_extensions();
    let (update, _) = bob1.stage_commit(|b| {
        b.force_self_update(true).leaf_node_parameters(
            LeafNodeParameters::builder()
                .with_extensions(extensions)
                .build(),
        )
    });
    let out = ds.process(&bob1.signed(commit_body(update), ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    bob1.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob2]);
    let _ = (alice.process_inbox(), bob2.process_inbox());
    // The old key (still in the laptop's leaf) is gone.
    bob2.user_key = old_key;
    let proposals = proposals_of(&bob2.propose_remove_request(bob1.leaf(), ds.now_ms));
    let out = ds.process(&bob2.signed_as_user(
        DsRequestBody::Proposals(ProposalsRequest { proposals }),
        ds.now_ms,
    ));
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::UnknownUserKey.into())
    );
    bobs_key_still_acts_for_bob(&mut ds, &mut bob1, &bob2);
}
