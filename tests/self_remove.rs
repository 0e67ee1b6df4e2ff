//! `self_remove_client` (DS-03..05): a member proposes its own removal; the proposal is stored
//! and fanned out, and takes effect when another member commits it.

use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{DsRequestBody, ErrorCode, ProposalsRequest, SelfRemoveClientRequest};
use mimi_ds::Status;

/// Alice and Bob in a group, both joined.
fn pair() -> (TestDs, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

#[test]
fn a_self_removal_is_stored_fanned_out_and_committed_by_another_member() {
    let (mut ds, mut alice, mut bob) = pair();
    let out = ds.process(&bob.self_remove_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);

    // Alice's next commit includes it by reference and removes Bob.
    let out = ds.process(&alice.update_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: true
        }]
    );
    assert_eq!(alice.group().members().count(), 1);
}

#[test]
fn self_remove_client_refuses_anything_but_the_senders_own_removal() {
    let (mut ds, mut alice, mut bob) = pair();
    let alice_leaf = alice.leaf();
    // Bob proposes removing Alice but labels it self_remove_client.
    let remove_alice = bob.propose_remove_request(alice_leaf, ds.now_ms);
    let decoded: mimi_ds::wire::DsRequest = mimi_ds::wire::decode_exact(&remove_alice).unwrap();
    let DsRequestBody::Proposals(ProposalsRequest { proposals }) = decoded.body else {
        panic!()
    };
    let request = bob.signed(
        DsRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
            proposal: proposals[0].clone(),
        }),
        ds.now_ms,
    );
    let before = ds.storage.clone();
    let out = ds.process(&request);
    assert_eq!(out.status, Status::Rejected(ErrorCode::NotAllowed));
    assert!(out.fanout.is_empty());
    assert_eq!(ds.storage, before);

    // A member proposing its own removal is accepted.
    let out = ds.process(&alice.self_remove_request(ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
}
