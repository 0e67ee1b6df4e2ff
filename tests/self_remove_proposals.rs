//! MLS SelfRemove proposals (draft-ietf-mls-extensions §"SelfRemove", proposal type 0x000a;
//! wire-format.md §15.7) at the hub: built by real openmls 0.9 clients (no `extensions-draft`
//! feature needed), accepted as pending proposals, served with their `hub_accepted_time` in
//! `GroupInfoRatchetTreeTBE`, and valid across an external commit that covers them by
//! reference, as the draft-ietf-mimi-protocol slides say.

use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::DsResponseBody;
use mimi_ds::wire::ErrorCode;
use mimi_ds::{ProposalConflict, RejectReason};
use openmls::prelude::Proposal;

/// Alice, Bob and Carol in a group whose leaves all support SelfRemove.
fn trio() -> (TestDs, TestClient, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let group_id = ds.request_group_id();
    alice.create_group_with_self_remove(&group_id, &ds.external_sender);
    let _ = ds.accept(&alice.create_group_request(ds.now_ms));
    let key_packages = vec![
        bob.key_package_with_self_remove(),
        carol.key_package_with_self_remove(),
    ];
    let out = ds.accept(&alice.add_request(key_packages, ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    for joiner in [&mut bob, &mut carol] {
        let Some(Received::Welcome(welcome)) = joiner.process_inbox().pop() else {
            panic!("no Welcome")
        };
        let (request, processed) = joiner.welcome_info_request(&welcome, ds.now_ms);
        let DsResponseBody::WelcomeInfo(info) =
            decode_response(&ds.process(&request).response).body
        else {
            panic!("welcome_info refused")
        };
        joiner.join_with_tree(processed, &info.ratchet_tree);
    }
    ds.advance(1);
    (ds, alice, bob, carol)
}

/// Whether `member` holds a pending SelfRemove (as it received it from the hub).
fn holds_self_remove(member: &TestClient) -> bool {
    member
        .group()
        .pending_proposals()
        .any(|p| matches!(p.proposal(), Proposal::SelfRemove))
}

#[test]
fn a_self_remove_proposal_is_accepted_served_and_committed_by_another_member() {
    let (mut ds, mut alice, mut bob, mut carol) = trio();
    let out = ds.accept(&bob.mls_self_remove_request(ds.now_ms));
    TestDs::route(&out, &mut [&mut alice, &mut carol]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);
    carol.process_inbox();

    let info = ds.group_info(&alice, &alice.group_id());
    assert_eq!(info.pending_proposals.len(), 1);
    assert_eq!(info.pending_proposals[0].hub_accepted_time, ds.now_ms);
    assert!(holds_self_remove(&alice));

    let out = ds.accept(&alice.update_request(ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: true
        }]
    );
    assert_eq!(alice.group().members().count(), 2);
}

#[test]
fn a_pending_self_remove_stays_valid_across_an_external_commit_that_covers_it() {
    let (mut ds, mut alice, mut bob, mut carol) = trio();
    let out = ds.accept(&bob.mls_self_remove_request(ds.now_ms));
    TestDs::route(&out, &mut [&mut alice, &mut carol]);
    alice.process_inbox();
    carol.process_inbox();

    // Alice's new laptop joins by external commit from what the hub serves, covering Bob's
    // pending SelfRemove by reference.
    let info = ds.group_info(&alice, &alice.group_id());
    assert_eq!(info.pending_proposals.len(), 1);
    assert!(holds_self_remove(&alice));
    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let out = ds.accept(&laptop.external_join_with_pending_request(&info));
    laptop.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob, &mut carol]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: true
        }]
    );
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
    assert_eq!(alice.group().members().count(), 3);
    // Bob is gone at the hub too: nothing pending, and the served tree has three leaves.
    let info = ds.group_info(&alice, &alice.group_id());
    assert!(info.pending_proposals.is_empty());
    let tree = info.ratchet_tree().unwrap().parse().unwrap();
    assert_eq!(tree.leaves().count(), 3);
}

#[test]
fn self_remove_client_takes_an_mls_self_remove_and_the_hub_reissues_it_if_left_out() {
    let (mut ds, mut alice, mut bob, mut carol) = trio();
    // DS-03..05 `self_remove_client`: the member's own removal, here as an MLS SelfRemove.
    let out = ds.accept(&bob.mls_self_remove_client_request(ds.now_ms));
    TestDs::route(&out, &mut [&mut alice, &mut carol]);
    alice.process_inbox();
    carol.process_inbox();
    // A commit that leaves it out (Carol forgets it): the hub issues a Remove of Bob's leaf in
    // the new epoch (wire-format.md §4.6, §7.5), stapled to the commit.
    let pending: Vec<_> = carol
        .group()
        .pending_proposals()
        .map(|p| p.proposal_reference_ref().clone())
        .collect();
    for reference in pending {
        let provider = &carol.provider;
        carol
            .group
            .as_mut()
            .unwrap()
            .remove_pending_proposal(
                openmls_traits::OpenMlsProvider::storage(provider),
                &reference,
            )
            .unwrap();
    }
    let out = ds.accept(&carol.update_request(ds.now_ms));
    carol.confirm_commit();
    let receipt = mimi_ds::testing::accepted_message(&out);
    assert_eq!(
        receipt.external_proposals.len(),
        1,
        "the hub re-issued Bob's removal"
    );
}

#[test]
fn a_remove_and_a_self_remove_of_the_same_leaf_cannot_both_be_pending() {
    // RFC 9420 §12.2: no two removals of one leaf in a commit (wire-format.md §4.10 step 15).
    let (mut ds, mut alice, mut bob, mut carol) = trio();
    let out = ds.accept(&bob.mls_self_remove_request(ds.now_ms));
    TestDs::route(&out, &mut [&mut alice, &mut carol]);
    alice.process_inbox();
    let bob_leaf = bob.leaf();
    let reason = ds.reject(
        &carol.propose_remove_request(bob_leaf, ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    assert!(matches!(
        reason,
        RejectReason::ProposalConflict {
            conflict: ProposalConflict::DuplicateRemove,
            ..
        }
    ));

    // The other way round: Alice's Remove of Bob is pending, then Bob's SelfRemove.
    let (mut ds, mut alice, mut bob, mut carol) = trio();
    let bob_leaf = bob.leaf();
    let out = ds.accept(&alice.propose_remove_request(bob_leaf, ds.now_ms));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    bob.process_inbox();
    let reason = ds.reject(
        &bob.mls_self_remove_request(ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    assert!(matches!(
        reason,
        RejectReason::ProposalConflict {
            conflict: ProposalConflict::DuplicateRemove,
            ..
        }
    ));
}
