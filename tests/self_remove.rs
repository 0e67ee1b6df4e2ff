//! `self_remove_client` (DS-03..05): a member proposes its own removal; the proposal is stored
//! and fanned out, and takes effect when another member commits it, or, if a commit leaves it
//! out, when a commit includes the Remove the hub then issues itself.

use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{
    DsRequestBody, DsResponseBody, ErrorCode, ProposalsRequest, SelfRemoveClientRequest,
};
use mimi_ds::{NotAllowed, Status};
use openmls::prelude::{MlsMessageBodyIn, ProcessedMessageContent, Proposal, ProtocolMessage};
use openmls_traits::OpenMlsProvider as _;

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
    assert_eq!(
        ds.reject(&request, ErrorCode::NotAllowed),
        NotAllowed::SelfRemoveOfAnotherLeaf.into()
    );

    // A member proposing its own removal is accepted.
    let out = ds.process(&alice.self_remove_request(ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
}

/// A self-removal is a member's proposal, so a commit may leave it out (wire-format.md §4.3.3),
/// but the member asked to leave: the hub then issues the Remove itself in the new epoch,
/// stapled to the commit, and that one is mandatory.
#[test]
fn a_self_removal_a_commit_leaves_out_is_issued_again_by_the_hub() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob, &mut carol]);
    let bob_leaf = bob.leaf();
    let out = ds.process(&bob.self_remove_request(ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
    TestDs::route(&out, &mut [&mut carol]);
    assert_eq!(carol.process_inbox(), vec![Received::Proposal]);

    // Alice has not received it; her commit leaves it out and is accepted.
    let out = ds.process(&alice.update_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice.confirm_commit();
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!("not accepted")
    };
    assert_eq!(
        receipt.external_proposals.len(),
        1,
        "the hub's Remove of Bob"
    );
    let pending = ds.group_info(&alice, &group_id).pending_proposals;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].proposal, receipt.external_proposals[0]);

    // Carol takes the commit and the stapled Remove; her next commit removes Bob.
    let stapled = receipt.external_proposals[0].clone();
    carol
        .group
        .as_mut()
        .unwrap()
        .clear_pending_proposals(carol.provider.storage())
        .unwrap();
    TestDs::route(&out, &mut [&mut carol]);
    carol.process_inbox();
    let MlsMessageBodyIn::PublicMessage(public) = stapled.parse().unwrap().extract() else {
        panic!("a PublicMessage")
    };
    let group = carol.group.as_mut().unwrap();
    let ProcessedMessageContent::ProposalMessage(queued) = group
        .process_message(&carol.provider, ProtocolMessage::from(public))
        .unwrap()
        .into_content()
    else {
        panic!("a proposal")
    };
    assert!(matches!(queued.proposal(), Proposal::Remove(r) if r.removed().u32() == bob_leaf));
    group
        .store_pending_proposal(carol.provider.storage(), *queued)
        .unwrap();
    let out = ds.process(&carol.update_request(ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
    carol.confirm_commit();
    assert_eq!(carol.group().members().count(), 2);
}
