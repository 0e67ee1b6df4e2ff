//! The GroupInfo that comes with every commit (DS-03..06 `MLSGroupUpdate`): both the full form
//! and the PartialGroupInfo the DS completes from its own post-commit state (RTO layout).

use mimi_ds::testing::{commit_body, decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{ErrorCode, GroupInfoOption, PartialGroupInfo, RatchetTreePresence};
use mimi_ds::Status;
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::{MlsMessageBodyIn, Verifiable};
use tls_codec::{DeserializeBytes, Serialize, VLBytes};

/// Alice alone in a group registered with the DS.
fn solo_group() -> (TestDs, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
    (ds, alice)
}

/// The content of a `<V>`-prefixed encoding.
fn vl_content(value: &impl Serialize) -> VLBytes {
    VLBytes::tls_deserialize_exact_bytes(&value.tls_serialize_detached().unwrap()).unwrap()
}

/// Turns the full GroupInfo of a commit into the PartialGroupInfo a client would send.
fn to_partial(full: &GroupInfoOption) -> (PartialGroupInfo, Vec<u8>) {
    let GroupInfoOption::Full(bytes) = full else {
        panic!("expected a full GroupInfo")
    };
    let MlsMessageBodyIn::GroupInfo(vgi) = bytes.parse().unwrap().extract() else {
        panic!()
    };
    let vgi: VerifiableGroupInfo = vgi;
    let partial = PartialGroupInfo {
        ratchet_tree_presence: RatchetTreePresence::NoRatchetTree,
        group_info_extensions: vl_content(vgi.extensions()),
        signature: vl_content(vgi.signature()),
    };
    (partial, bytes.as_bytes().to_vec())
}

fn served_group_info(ds: &mut TestDs, member: &TestClient) -> Vec<u8> {
    ds.group_info(member, &member.group_id())
        .group_info
        .as_bytes()
        .to_vec()
}

#[test]
fn partial_group_info_is_completed_to_the_exact_full_group_info() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (partial, full_bytes) = to_partial(&update.group_info);
    update.group_info = GroupInfoOption::Partial(partial);
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice.confirm_commit();
    // What the DS rebuilt is byte for byte what the committer would have sent in full.
    assert_eq!(served_group_info(&mut ds, &alice), full_bytes);
}

#[test]
fn partial_group_info_with_a_bad_signature_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (mut partial, _) = to_partial(&update.group_info);
    let mut signature = partial.signature.as_slice().to_vec();
    signature[0] ^= 1;
    partial.signature = signature.into();
    update.group_info = GroupInfoOption::Partial(partial);
    let before = ds.storage.clone();
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    assert_eq!(out.status, Status::Rejected(ErrorCode::InvalidGroupInfo));
    assert_eq!(ds.storage, before);
}

#[test]
fn partial_group_info_with_a_ratchet_tree_presence_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (mut partial, _) = to_partial(&update.group_info);
    partial.ratchet_tree_presence = RatchetTreePresence::Present;
    update.group_info = GroupInfoOption::Partial(partial);
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    assert_eq!(out.status, Status::Rejected(ErrorCode::InvalidGroupInfo));
}

#[test]
fn full_group_info_of_the_previous_epoch_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let stale = alice
        .group()
        .export_group_info(
            openmls_traits::OpenMlsProvider::crypto(&alice.provider),
            &alice.signer,
            false,
        )
        .unwrap();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    update.group_info = GroupInfoOption::Full(mimi_ds::testing::mls_bytes(&stale));
    let before = ds.storage.clone();
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    assert_eq!(out.status, Status::Rejected(ErrorCode::InvalidGroupInfo));
    assert_eq!(ds.storage, before);
}

#[test]
fn group_info_signed_by_another_member_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let out = ds.process(&alice.add_request(vec![bob.key_package()], ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    let tree = ds.group_info(&alice, &alice.group_id()).ratchet_tree;
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!()
    };
    bob.join_from_welcome(&welcome, &tree);

    // Bob commits, but attaches a GroupInfo Alice signed for her own (never sent) commit.
    let (alice_update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (mut bob_update, _) = bob.stage_commit(|b| b.force_self_update(true));
    bob_update.group_info = alice_update.group_info;
    let out = ds.process(&bob.signed(commit_body(bob_update), ds.now_ms));
    assert_eq!(out.status, Status::Rejected(ErrorCode::InvalidGroupInfo));
}
