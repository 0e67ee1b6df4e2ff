//! `group_info` answers in draft-ietf-mimi-protocol-06's `GroupInfoRatchetTreeTBE` layout
//! (wire-format.md §5.4, §5.5, §15.7): the bare GroupInfo, a `RatchetTreeOption`, and the
//! pending proposals with `hub_accepted_time`, in the clear or HPKE-encrypted.

use mimi_ds::testing::{decode_response, open_external_commit_info, TestClient, TestDs};
use mimi_ds::wire::{
    decode_exact, encode, DsResponseBody, ExternalCommitInfo, GroupInfoRatchetTreeTbe,
    RatchetTreeOption, RatchetTreeUrl, GROUP_INFO_MESSAGE_HEADER,
};
use mimi_ds::{DsConfig, GroupInfoAccess};
use openmls::messages::group_info::VerifiableGroupInfo;

/// Alice and Bob; Bob has proposed his own removal, which is pending.
fn group_with_a_pending_proposal() -> (TestDs, TestClient, TestClient, u64) {
    let mut config = DsConfig::new("hub.example");
    config.group_info_access = GroupInfoAccess::Anyone;
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    ds.advance(250);
    let accepted_at = ds.now_ms;
    let _ = ds.accept(&bob.self_remove_request(ds.now_ms));
    ds.advance(1);
    (ds, alice, bob, accepted_at)
}

#[test]
fn the_answer_is_the_bare_group_info_the_full_tree_and_the_timed_pending_proposals() {
    let (mut ds, alice, _bob, accepted_at) = group_with_a_pending_proposal();
    let info: GroupInfoRatchetTreeTbe = ds.group_info(&alice, &alice.group_id());

    // The GroupInfo is bare: it decodes as a GroupInfo, not as an MLSMessage, and framing
    // it gives the MLSMessage the committer sent.
    let group_info = decode_exact::<VerifiableGroupInfo>(info.group_info.as_bytes()).unwrap();
    assert_eq!(group_info.group_id().as_slice(), alice.group_id());
    assert!(!info
        .group_info
        .as_bytes()
        .starts_with(&GROUP_INFO_MESSAGE_HEADER));
    let message = info.group_info_message().unwrap();
    assert_eq!(&message.as_bytes()[..4], &GROUP_INFO_MESSAGE_HEADER);
    assert_eq!(&message.as_bytes()[4..], info.group_info.as_bytes());

    // The tree as RatchetTreeOption.full, the proposal with the hub's acceptance time.
    let RatchetTreeOption::Full(tree) = &info.ratchet_tree_option else {
        panic!("the hub sends the full tree")
    };
    assert_eq!(tree.parse().unwrap().leaves().count(), 2);
    assert_eq!(info.pending_proposals.len(), 1);
    assert_eq!(info.pending_proposals[0].hub_accepted_time, accepted_at);

    // On the wire: GroupInfo, then representation full(1), then the tree.
    let bytes = encode(&info).unwrap();
    let after_group_info = info.group_info.as_bytes().len();
    assert_eq!(&bytes[..after_group_info], info.group_info.as_bytes());
    assert_eq!(
        bytes[after_group_info], 1,
        "RatchetTreeRepresentation full(1)"
    );
}

#[test]
fn the_encrypted_answer_opens_to_the_same_structure() {
    let (mut ds, alice, _bob, _) = group_with_a_pending_proposal();
    let group_id = alice.group_id();
    let clear = ds.group_info(&alice, &group_id);
    let (request, keys) = TestClient::encrypted_group_info_request(&group_id);
    let DsResponseBody::EncryptedExternalCommitInfo(sealed) =
        decode_response(&ds.process(&request).response).body
    else {
        panic!("encrypted answer")
    };
    let opened = open_external_commit_info(&sealed, &group_id, &keys).unwrap();
    assert_eq!(opened, clear);
}

#[test]
fn every_ratchet_tree_representation_round_trips_and_unknown_ones_are_refused() {
    let (mut ds, alice, _bob, _) = group_with_a_pending_proposal();
    let info = ds.group_info(&alice, &alice.group_id());
    for option in [
        RatchetTreeOption::HttpsUri(RatchetTreeUrl {
            ratchet_tree_url: b"https://hub.example/tree".to_vec().into(),
            tree_signature: vec![1, 2, 3].into(),
        }),
        RatchetTreeOption::OutOfBand(vec![4, 5].into()),
        RatchetTreeOption::DistributionService,
    ] {
        let other = ExternalCommitInfo {
            ratchet_tree_option: option,
            ..info.clone()
        };
        let bytes = encode(&other).unwrap();
        assert_eq!(decode_exact::<ExternalCommitInfo>(&bytes).unwrap(), other);
        assert!(other.ratchet_tree().is_none());
    }
    // reserved(0) and values RTO does not define are refused (strict decoding, §1.2).
    let bytes = encode(&info).unwrap();
    let at = info.group_info.as_bytes().len();
    for representation in [0u8, 5, 255] {
        let mut damaged = bytes.clone();
        damaged[at] = representation;
        assert!(decode_exact::<ExternalCommitInfo>(&damaged).is_err());
    }
}
