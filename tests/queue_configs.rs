//! No client can take another member's queue configuration (wire-format.md §6.1), and the
//! fanout of an external commit leaves out exactly the leaves the commit removes, never a queue
//! (§6.4).
//!
//! The attack these tests keep out: a joiner copies a victim member's published
//! `ClientQueueConfig` into its own leaf. If the DS accepted it, the victim's queue would get
//! the joiner's traffic, and (before the fix) the fanout of the joiner's external commit, which
//! left out the joiner's queue, left out the victim: the victim fell out of sync. Every path
//! that sets a queue configuration is covered: an Add in a commit, an external join, two Adds in
//! one commit, `update_client` with a new configuration, `update_queue_info`, and the initial
//! tree of `create_group`. A client that resyncs with its own old configuration while the same
//! commit removes its old leaf keeps working (also tests/joins.rs).

use mimi_ds::testing::{assert_accepted, Received, TestClient, TestDs};
use mimi_ds::wire::{ClientQueueConfig, DsRequestBody, ErrorCode, UpdateClientRequest};
use mimi_ds::{DsConfig, ExternalJoinPolicy, RejectReason};

/// Processes a request that must be refused with `not_allowed` because of a shared queue
/// configuration: the shared refusal check (exact code, no fanout, storage byte-identical) and
/// the reason.
fn refused_as_shared(ds: &mut TestDs, request: &[u8]) {
    let reason = ds.reject(request, ErrorCode::NotAllowed);
    assert!(
        matches!(reason, RejectReason::SharedQueueConfig { .. }),
        "refused for another reason: {reason:?}"
    );
}

/// Alice and Bob in a group at epoch 1, both joined; the DS accepts external joins by anyone.
fn alice_and_bob() -> (TestDs, TestClient, TestClient) {
    let mut config = DsConfig::new("hub.example");
    config.external_joins = ExternalJoinPolicy::Anyone;
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

/// Eve, whose leaves will publish `victim`'s queue configuration.
fn impostor_of(victim: &TestClient) -> TestClient {
    let mut eve = TestClient::new("eve", "eve-phone", "e.example");
    eve.queue = victim.queue.clone();
    eve
}

#[test]
fn an_external_joiner_cannot_take_a_members_queue_configuration() {
    let (mut ds, mut alice, mut bob) = alice_and_bob();
    let mut eve = impostor_of(&alice);
    let info = ds.group_info(&alice, &alice.group_id());
    refused_as_shared(&mut ds, &eve.external_join_request(&info));

    // The group goes on, and Alice still gets every commit.
    let out = ds.process(&bob.update_request(ds.now_ms));
    assert_accepted(&out);
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
}

#[test]
fn an_add_cannot_bring_in_a_members_queue_configuration() {
    let (mut ds, mut alice, bob) = alice_and_bob();
    let eve = impostor_of(&bob);
    let request = alice.add_request(vec![eve.key_package()], ds.now_ms);
    refused_as_shared(&mut ds, &request);
    alice.discard_commit();
}

#[test]
fn two_adds_in_one_commit_cannot_share_a_queue_configuration() {
    let (mut ds, mut alice, _bob) = alice_and_bob();
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    let mut dave = TestClient::new("dave", "dave-phone", "d.example");
    dave.queue = carol.queue.clone();
    let request = alice.add_request(vec![carol.key_package(), dave.key_package()], ds.now_ms);
    refused_as_shared(&mut ds, &request);
    alice.discard_commit();
}

#[test]
fn update_queue_info_cannot_move_to_a_members_queue() {
    let (mut ds, mut alice, mut bob) = alice_and_bob();
    let request = bob.update_queue_request(alice.queue.clone(), ds.now_ms);
    refused_as_shared(&mut ds, &request);

    // Its own configuration again, or a fresh one, is fine.
    ds.advance(1);
    let own = ClientQueueConfig {
        provider_domain: b"b.example".to_vec().into(),
        queue: b"bob-phone-2".to_vec().into(),
    };
    assert_accepted(&ds.process(&bob.update_queue_request(own, ds.now_ms)));
    let out = ds.process(&alice.message_request(b"to the new queue", ds.now_ms));
    assert_accepted(&out);
    assert_eq!(TestDs::route(&out, &mut [&mut bob]), 1);
}

#[test]
fn update_client_cannot_move_to_a_members_queue() {
    let (mut ds, alice, mut bob) = alice_and_bob();
    let (update, _) = bob.stage_commit(|b| b.force_self_update(true));
    let request = bob.signed(
        DsRequestBody::UpdateClient(UpdateClientRequest {
            group_update: update,
            queue_config: Some(alice.queue.clone()),
        }),
        ds.now_ms,
    );
    refused_as_shared(&mut ds, &request);
    bob.discard_commit();
}

#[test]
fn create_group_refuses_a_tree_whose_leaves_share_a_queue_configuration() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    // Alice adds Eve locally before registering the group, so the tree of the GroupInfo the DS
    // sees (epoch 1) has two leaves with Alice's queue.
    let eve = impostor_of(&alice);
    let _ = alice.stage_commit(|b| b.propose_adds(vec![eve.key_package()]));
    alice.confirm_commit();
    assert_eq!(alice.group().members().count(), 2);
    let request = alice.create_group_request(ds.now_ms);
    // An authenticated create_group refusal consumes the reservation and writes nothing else
    // (wire-format.md §4.2).
    ds.reject_consuming_reservation(&request, ErrorCode::NotAllowed);
}

#[test]
fn a_member_commit_may_re_add_a_removed_clients_queue() {
    // Removing a client and adding its replacement with the same queue in one commit leaves one
    // member with that queue: allowed (the rule compares the members after the commit).
    let (mut ds, mut alice, mut bob) = alice_and_bob();
    let mut bob_again = TestClient::new("bob", "bob-phone-restored", "b.example");
    bob_again.queue = bob.queue.clone();
    let bob_leaf = openmls::prelude::LeafNodeIndex::new(bob.leaf());
    let key_package = bob_again.key_package();
    let (update, welcome) = alice.stage_commit(|b| {
        b.propose_removals([bob_leaf])
            .propose_adds(vec![key_package])
    });
    let request = alice.signed(
        DsRequestBody::Commits(mimi_ds::wire::MembershipCommitRequest {
            group_update: update,
            welcome_messages: welcome.into_iter().collect(),
        }),
        ds.now_ms,
    );
    let out = ds.process(&request);
    assert_accepted(&out);
    alice.confirm_commit();
    // The queue gets the removing commit (for the old leaf) and the Welcome (for the new one).
    assert_eq!(TestDs::route(&out, &mut [&mut bob]), 2);
}

#[test]
fn a_resync_with_a_new_queue_does_not_send_the_commit_to_the_old_leaf() {
    // The joiner's old leaf is left out because the commit removes it, whatever its queue: a
    // client restored on a device with a new queue does not get its own commit at the old one.
    let (mut ds, mut alice, mut bob) = alice_and_bob();
    let old_queue = bob.queue.clone();
    bob.lose_state();
    bob.queue = ClientQueueConfig {
        provider_domain: b"b.example".to_vec().into(),
        queue: b"bob-phone-restored".to_vec().into(),
    };
    let info = ds.group_info(&alice, &alice.group_id());
    let out = ds.process(&bob.external_join_request(&info));
    assert_accepted(&out);
    bob.confirm_commit();
    let reached: Vec<&[u8]> = out
        .fanout
        .iter()
        .flat_map(|f| f.request.recipients.iter().map(|q| q.as_slice()))
        .collect();
    assert_eq!(reached, vec![alice.queue.queue.as_slice()]);
    assert!(!reached.contains(&old_queue.queue.as_slice()));
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
}
