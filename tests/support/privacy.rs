//! Privacy-mode groups (wire-format.md §17) for the tests: created with a keyed
//! `create_group`, joined by Welcomes that carry the tree.

use mimi_ds::testing::{Received, TestClient, TestDs};

/// Alice alone in a privacy-mode group at epoch 0, created by a keyed `create_group`.
#[allow(dead_code)] // not every test file uses both
pub(crate) fn private_group() -> (TestDs, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_private_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(ds.now_ms);
    let _ = ds.accept(&alice.keyed_by_member(&request, false, ds.now_ms));
    (ds, alice)
}

/// Alice (leaf 0) and Bob (leaf 1) in a privacy-mode group at epoch 1: Bob joined from the
/// Welcome's own tree, with no `welcome_info` (§17.3).
#[allow(dead_code)] // not every test file uses both
pub(crate) fn private_pair() -> (TestDs, TestClient, TestClient) {
    let (mut ds, mut alice) = private_group();
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let request = alice.add_request(vec![bob.privacy_key_package()], ds.now_ms);
    let out = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("no Welcome")
    };
    bob.join_from_welcome_with_its_tree(&welcome);
    assert_eq!((alice.epoch(), bob.epoch()), (1, 1));
    (ds, alice, bob)
}
