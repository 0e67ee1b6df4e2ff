//! Privacy mode (wire-format.md §17) with real openmls clients: a privacy-mode group's whole
//! life through keyed requests, its records sealed at rest, the key rotating with every
//! commit, and the sealed answer of a retry (§17.7).

use mimi_ds::privacy::{StateKeyScheme, StateKeys};
use mimi_ds::storage::{InMemoryStorage, RecordKind};
use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{DsResponseBody, ErrorCode};
use mimi_ds::Status;

#[path = "support/privacy.rs"]
mod privacy_support;
use privacy_support::private_pair;

/// Every record the storage holds for `group_id`, as stored.
fn stored_records(storage: &InMemoryStorage, group_id: &[u8]) -> Vec<(RecordKind, Vec<u8>)> {
    let kinds: Vec<RecordKind> = RecordKind::ALL.to_vec();
    use mimi_ds::storage::DsStorage as _;
    storage
        .read(group_id, &kinds)
        .expect("in-memory")
        .map(|snapshot| snapshot.records)
        .unwrap_or_default()
}

#[test]
fn a_privacy_mode_group_is_created_sealed_and_served_only_with_its_key() {
    let (mut ds, mut alice, mut bob) = private_pair();
    let group_id = alice.group_id();
    let records = stored_records(&ds.storage, &group_id);
    assert!(
        records
            .iter()
            .any(|(kind, _)| *kind == RecordKind::Manifest),
        "§17.6: the manifest marks the group"
    );
    // Messages both ways, keyed with each sender's key of epoch 1.
    exchange(&mut ds, &mut alice, &mut bob, b"hi bob");
    exchange(&mut ds, &mut bob, &mut alice, b"hi alice");
}

/// A keyed message from `sender`, accepted and read by `receiver`.
fn exchange(ds: &mut TestDs, sender: &mut TestClient, receiver: &mut TestClient, text: &[u8]) {
    let request = sender.message_request(text, ds.now_ms);
    let request = sender.keyed_by_member(&request, false, ds.now_ms);
    let out = ds.accept(&request);
    TestDs::route(&out, &mut [receiver]);
    assert_eq!(
        receiver.process_inbox(),
        vec![Received::Application(text.to_vec())]
    );
}

#[test]
fn the_key_rotates_with_every_commit_across_epochs() {
    let (mut ds, mut alice, mut bob) = private_pair();
    for round in 0..3 {
        let (committer, other) = if round % 2 == 0 {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        let old_keys = committer.state_keys(false);
        let request = committer.update_request(ds.now_ms);
        let request = committer.keyed_by_member(&request, true, ds.now_ms);
        let out = ds.accept(&request);
        committer.confirm_commit();
        TestDs::route(&out, &mut [other]);
        other.process_inbox();
        assert_eq!(committer.epoch(), other.epoch());
        // §17.3: the old key opens nothing any more.
        let message = other.message_request(b"late", ds.now_ms);
        let stale = other.keyed_request(&message, old_keys, ds.now_ms);
        ds.reject(&stale, ErrorCode::StateKeyStale);
        let text = format!("epoch {}", other.epoch()).into_bytes();
        let request = other.message_request(&text, ds.now_ms);
        let request = other.keyed_by_member(&request, false, ds.now_ms);
        let out = ds.accept(&request);
        TestDs::route(&out, &mut [committer]);
        assert_eq!(committer.process_inbox(), vec![Received::Application(text)]);
    }
    assert_eq!(alice.epoch(), 4);
}

#[test]
fn a_byte_identical_retry_after_a_later_commit_gets_the_stored_answer() {
    let (mut ds, mut alice, mut bob) = private_pair();
    let message = alice.message_request(b"once", ds.now_ms);
    let message = alice.keyed_by_member(&message, false, ds.now_ms);
    let first = ds.accept(&message);
    let request = bob.update_request(ds.now_ms);
    let request = bob.keyed_by_member(&request, true, ds.now_ms);
    let _ = ds.accept(&request);
    bob.confirm_commit();
    // §17.7: the stored answer opens with the retry's own (now old) key.
    let retry = ds
        .ds
        .process(mimi_ds::UnixTimeMs(ds.now_ms), &message, &mut ds.storage);
    let retry = retry.expect("processed");
    assert_eq!(retry.status, Status::Duplicate);
    assert_eq!(retry.response, first.response);
}

#[test]
fn a_welcome_joiner_needs_no_welcome_info_and_an_external_joiner_gets_the_key_from_a_member() {
    let (mut ds, mut alice, mut bob) = private_pair();
    // Alice's second device joins externally with the key alice-1 hands it (§17.3, the
    // default `ExistingUsers` policy): alice-1 reads the group_info for it, then the external
    // commit carries the handed-over key and the joiner's own next key.
    let mut carol = TestClient::new("alice", "alice-2", "a.example");
    let group_id = alice.group_id();
    let info_request =
        TestClient::signed_group_info_request(&alice, &group_id, None, ds.now_ms - 1);
    let info_request = alice.keyed_request(&info_request, alice.state_keys(false), ds.now_ms - 1);
    let DsResponseBody::ExternalCommitInfo(info) =
        decode_response(&ds.accept(&info_request).response).body
    else {
        panic!("external commit info")
    };
    let handed_over = alice.state_keys(false).current().clone();
    let join = carol.external_join_request_with(
        &info,
        mimi_ds::testing::ExternalJoinOptions {
            capabilities: Some(TestClient::privacy_capabilities()),
            ..Default::default()
        },
    );
    let next = mimi_ds::testing::privacy::state_key_of(
        carol.group(),
        openmls_traits::OpenMlsProvider::crypto(&carol.provider),
    )
    .expect("exporter");
    let keys = StateKeys::new(StateKeyScheme::ExporterEpochKey, handed_over, Some(next))
        .expect("next epoch");
    let join = carol.keyed_request(&join, keys, ds.now_ms);
    let out = ds.accept(&join);
    carol.put_tree_in_welcomes();
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    alice.process_inbox();
    bob.process_inbox();
    assert_eq!((alice.epoch(), bob.epoch(), carol.epoch()), (2, 2, 2));
    let request = carol.message_request(b"joined", ds.now_ms);
    let request = carol.keyed_by_member(&request, false, ds.now_ms);
    let out = ds.accept(&request);
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Application(b"joined".to_vec())]
    );
}
