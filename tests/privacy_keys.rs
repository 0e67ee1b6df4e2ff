//! Privacy mode's state keys with real openmls members (wire-format.md §17.3): every member of
//! an epoch derives the same key, each epoch another; a committer's `next_key`, an external
//! and an external joiner's new key are the key the members derive once they merged the commit; and a record
//! one member seals opens with another member's key and with no key of another epoch.
//! The mode is not wired into the hub yet: these tests drive the hub as a plain group and
//! check the client-side derivation and the sealing core.

use mimi_ds::privacy::{open_record, seal_record, OpenError, RecordBinding, StateKey, SALT_BYTES};
use mimi_ds::storage::RecordKind;
use mimi_ds::testing::privacy::{next_state_key_of, state_key_of};
use mimi_ds::testing::{accepted_message, Received, TestClient, TestDs, CIPHERSUITE};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider as _;

fn key_of(client: &TestClient) -> StateKey {
    state_key_of(client.group(), client.provider.crypto()).expect("export")
}

fn next_key_of(client: &TestClient) -> StateKey {
    next_state_key_of(client.group(), client.provider.crypto())
        .expect("a pending commit")
        .expect("export")
}

/// Alice creates a group and adds Bob's phone; both are in epoch 1.
fn two_members() -> (TestDs, TestClient, TestClient, Vec<u8>) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    mimi_ds::testing::assert_accepted(&ds.process(&alice.create_group_request(ds.now_ms)));
    let request = alice.add_request(vec![bob.key_package()], ds.now_ms);
    let out = ds.process(&request);
    accepted_message(&out);
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    let info = ds.group_info(&alice, &group_id);
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("no Welcome");
    };
    bob.join_from_welcome(&welcome, info.ratchet_tree().expect("full tree"));
    (ds, alice, bob, group_id)
}

#[test]
fn members_of_an_epoch_derive_one_key_and_each_epoch_another() {
    let (mut ds, mut alice, mut bob, _) = two_members();
    assert_eq!((alice.epoch(), bob.epoch()), (1, 1));
    let epoch1 = key_of(&alice);
    assert_eq!(
        key_of(&bob),
        epoch1,
        "both members of epoch 1 derive the same key"
    );
    assert_eq!(epoch1.epoch(), 1);
    assert_eq!(epoch1.secret().len(), CIPHERSUITE.hash_length());

    // Bob commits an update: his next key is the key both derive in epoch 2.
    ds.advance(1000);
    let request = bob.update_request(ds.now_ms);
    let bobs_next = next_key_of(&bob);
    assert_eq!(
        key_of(&bob),
        epoch1,
        "the current key stays until the merge"
    );
    let out = ds.process(&request);
    accepted_message(&out);
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    alice.process_inbox();
    assert_eq!((alice.epoch(), bob.epoch()), (2, 2));
    let epoch2 = key_of(&alice);
    assert_eq!(key_of(&bob), epoch2);
    assert_eq!(
        bobs_next, epoch2,
        "the committer's next key is the new epoch's key"
    );
    assert_eq!(epoch2.epoch(), 2);
    assert_ne!(
        epoch2.secret(),
        epoch1.secret(),
        "the key rotates with the epoch"
    );
}

#[test]
fn a_record_sealed_by_one_member_opens_with_another_members_key_only() {
    let (_, alice, bob, group_id) = two_members();
    let crypto = RustCrypto::default();
    let binding = RecordBinding::for_record(&group_id, RecordKind::MlsState, 3).unwrap();
    let sealed = seal_record(
        &crypto,
        CIPHERSUITE,
        &key_of(&alice),
        &binding,
        [4; SALT_BYTES],
        b"ratchet tree",
    )
    .unwrap();
    assert_eq!(
        open_record(&crypto, CIPHERSUITE, &key_of(&bob), &binding, &sealed).unwrap(),
        b"ratchet tree"
    );
    // A non-member's key of the same epoch (its own group's) is refused before decryption.
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let ds = TestDs::new("hub.example");
    carol.create_group(b"carol's group", &ds.external_sender);
    let carols = key_of(&carol);
    let carols_epoch1 = StateKey::new(1, carols.secret().to_vec());
    assert_eq!(
        open_record(&crypto, CIPHERSUITE, &carols_epoch1, &binding, &sealed),
        Err(OpenError::WrongKey)
    );
}

#[test]
fn an_external_joiners_next_key_is_the_members_key() {
    let (mut ds, mut alice, mut bob, group_id) = two_members();
    // Bob's laptop joins by external commit (`ExistingUsers`: Bob is in the group).
    let mut laptop = TestClient::new("bob", "bob-laptop", "b.example");
    let info = ds.group_info(&bob, &group_id);
    let request = laptop.external_join_request(&info);
    // openmls hands the joiner its group already in the epoch its external commit creates, so
    // its `next_key` is that group's current key; it has no key of the epoch it joins from
    // (wire-format.md §17.3: it gets that one from a member).
    assert_eq!(laptop.epoch(), 2);
    assert!(next_state_key_of(laptop.group(), laptop.provider.crypto()).is_none());
    let joiners_next = key_of(&laptop);
    assert_eq!(joiners_next.epoch(), 2);
    assert_ne!(
        joiners_next,
        key_of(&alice),
        "not the key of the epoch it joins from"
    );
    let out = ds.process(&request);
    accepted_message(&out);
    TestDs::route(&out, &mut [&mut alice, &mut bob, &mut laptop]);
    alice.process_inbox();
    bob.process_inbox();
    assert_eq!((alice.epoch(), laptop.epoch()), (2, 2));
    assert_eq!(joiners_next, key_of(&alice));
    assert_eq!(key_of(&laptop), key_of(&bob));
}
