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
use privacy_support::{private_group, private_pair};

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

/// Every byte string in the storage's `Debug` dump (records, versions' owners, replay marks
/// with their answers, reservations, tombstones): each `[n, n, ...]` list of byte values.
fn dumped_byte_strings(storage: &InMemoryStorage) -> Vec<Vec<u8>> {
    let dump = format!("{storage:?}");
    let mut strings = Vec::new();
    for (start, _) in dump.match_indices('[') {
        let rest = &dump[start + 1..];
        let Some(end) = rest.find(']') else { continue };
        let bytes: Option<Vec<u8>> = rest[..end]
            .split(", ")
            .map(|n| n.parse::<u8>().ok())
            .collect();
        if let Some(bytes) = bytes.filter(|b| b.len() >= 8) {
            strings.push(bytes);
        }
    }
    strings
}

/// What must never be at rest in the clear for a member (wire-format.md §17.8): its signature
/// key, its credential, its queue configuration and its leaf's HPKE key.
fn secrets_of(client: &TestClient) -> Vec<(String, Vec<u8>)> {
    let group = client.group();
    let leaf = group.own_leaf_node().expect("a member");
    vec![
        (
            format!("{} signature key", client.name),
            client.signer.to_public_vec(),
        ),
        (
            format!("{} credential", client.name),
            client.credential.credential.serialized_content().to_vec(),
        ),
        (
            format!("{} queue configuration", client.name),
            mimi_ds::wire::encode(&client.queue).expect("encode"),
        ),
        (
            format!("{} leaf HPKE key", client.name),
            // The key without its one-byte length prefix (an X25519 key, 32 bytes).
            tls_codec::Serialize::tls_serialize_detached(leaf.encryption_key()).expect("encode")
                [1..]
                .to_vec(),
        ),
    ]
}

#[test]
fn a_whole_group_life_leaves_no_member_data_in_the_clear() {
    let (mut ds, mut alice, mut bob) = private_pair();
    let group_id = alice.group_id();
    // Alice's second device by Welcome (the tree in the Welcome, §17.3).
    let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
    let request = alice.add_request(vec![alice2.privacy_key_package()], ds.now_ms);
    let out = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut alice2]);
    bob.process_inbox();
    let Some(Received::Welcome(welcome)) = alice2.process_inbox().pop() else {
        panic!("no Welcome")
    };
    // §17.3: the hub serves no welcome_info for the group.
    let (request, processed) = alice2.welcome_info_request(&welcome, ds.now_ms);
    ds.reject(&request, ErrorCode::StateKeyMissing);
    alice2.join_processed_with_its_tree(processed);
    exchange(&mut ds, &mut alice2, &mut bob, b"from my second device");

    // Alice's second device loses its state and resyncs by external commit, with the key
    // alice-1 hands it (§17.3).
    alice2.lose_state();
    let info_request = alice.signed_group_info_request(&group_id, None, ds.now_ms - 1);
    let info_request = alice.keyed_by_member(&info_request, false, ds.now_ms - 1);
    let DsResponseBody::ExternalCommitInfo(info) =
        decode_response(&ds.accept(&info_request).response).body
    else {
        panic!("external commit info")
    };
    let handed_over = alice.state_keys(false).current().clone();
    let join = alice2.external_join_request_with(
        &info,
        mimi_ds::testing::ExternalJoinOptions {
            capabilities: Some(TestClient::privacy_capabilities()),
            ..Default::default()
        },
    );
    let next = mimi_ds::testing::privacy::state_key_of(
        alice2.group(),
        openmls_traits::OpenMlsProvider::crypto(&alice2.provider),
    )
    .expect("exporter");
    let keys = StateKeys::new(StateKeyScheme::ExporterEpochKey, handed_over, Some(next))
        .expect("next epoch");
    let out = ds.accept(&alice2.keyed_request(&join, keys, ds.now_ms));
    alice2.put_tree_in_welcomes();
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    alice.process_inbox();
    bob.process_inbox();
    assert_eq!(
        alice.group().members().count(),
        3,
        "the resync replaced the old leaf"
    );
    exchange(&mut ds, &mut bob, &mut alice2, b"welcome back");

    // Bob removes Alice's second device; then Alice updates.
    let request = bob.remove_request(&[alice2.leaf()], ds.now_ms);
    let out = ds.accept(&bob.keyed_by_member(&request, true, ds.now_ms));
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    alice.process_inbox();
    let request = alice.update_request(ds.now_ms);
    let out = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    bob.process_inbox();
    exchange(&mut ds, &mut alice, &mut bob, b"still sealed");

    // Hub removals (§7) need the key the hub does not hold between requests (§17.8): a server
    // event without keys is refused and changes nothing (with keys: the next test).
    let event = mimi_ds::HubEvent::ClientDeleted {
        signature_key: bob.signer.to_public_vec(),
    };
    ds.reject_event(&group_id, &event, ErrorCode::StateKeyMissing);

    // Every stored byte: none of the members' credentials, keys, queues or tree.
    let mut needles = Vec::new();
    for client in [&alice, &bob] {
        needles.extend(secrets_of(client));
    }
    needles.extend(secrets_of(&alice2).into_iter().take(3));
    let tree = tls_codec::Serialize::tls_serialize_detached(&alice.group().export_ratchet_tree())
        .expect("encode");
    needles.push(("the ratchet tree".into(), tree));
    let stored = dumped_byte_strings(&ds.storage);
    assert!(stored.len() > 10, "the dump found the stored records");
    for (what, needle) in &needles {
        assert!(needle.len() >= 8, "{what} is long enough to search for");
        for bytes in &stored {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} is stored in the clear"
            );
        }
    }
}

/// The dump check can fail: a plain group's storage holds every one of those in the clear.
#[test]
fn the_dump_finds_member_data_of_a_plain_group() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let stored = dumped_byte_strings(&ds.storage);
    for (what, needle) in secrets_of(&alice).into_iter().chain(secrets_of(&bob)) {
        assert!(
            stored
                .iter()
                .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_slice())),
            "{what} is not found in a plain group's storage"
        );
    }
}

/// §17.4: a keyed body never wraps a keyed body (refused at its first level, so nesting cannot
/// recurse) nor an operation about no group's state.
#[test]
fn keyed_bodies_that_section_17_4_forbids_are_malformed() {
    use mimi_ds::testing::privacy::keyed_with;
    use mimi_ds::wire::{encode, DsAuthData, DsRequest, DsRequestBody, PROTOCOL_VERSION_MIMI_DS10};
    let (mut ds, mut alice, _bob) = private_pair();
    let message = alice.message_request(b"nested", ds.now_ms);
    let keyed = alice.keyed_by_member(&message, false, ds.now_ms);
    let keys = alice.state_keys(false);
    let body = mimi_ds::wire::decode_exact::<DsRequest>(&keyed)
        .expect("request")
        .body;
    let nested = alice.signed(keyed_with(keys.clone(), body), ds.now_ms);
    ds.reject(&nested, ErrorCode::MalformedRequest);
    for inner in [
        DsRequestBody::RequestGroupId,
        DsRequestBody::SignaturePublicKey,
    ] {
        let request = encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: keyed_with(keys.clone(), inner),
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode");
        ds.reject(&request, ErrorCode::MalformedRequest);
    }
}

#[path = "support/reinit_forge.rs"]
#[allow(dead_code)]
mod forge;

/// §17.2: the successor a ReInit names must be in privacy mode too; a ReInit whose successor's
/// extensions lack 0xF1E6 is refused, one that keeps it is accepted. (openmls drops ReInit
/// proposals from the commits it builds, so the commits are forged: tests/reinit.rs.)
#[test]
fn a_reinit_must_keep_privacy_mode_for_its_successor() {
    use mimi_ds::privacy::StateKey;
    use mimi_ds::wire::{DsRequestBody, GroupUpdateRequest};
    let (mut ds, alice, _bob) = private_pair();
    let info_request = alice.signed_group_info_request(&alice.group_id(), None, ds.now_ms - 1);
    let info_request = alice.keyed_by_member(&info_request, false, ds.now_ms - 1);
    let DsResponseBody::ExternalCommitInfo(info) =
        decode_response(&ds.accept(&info_request).response).body
    else {
        panic!("external commit info")
    };
    let successor = ds.request_group_id();
    let current = alice.state_keys(false).current().clone();
    // The hub cannot check a next key (§17.3); the forged commit's epoch gets any.
    let next = StateKey::new(current.epoch() + 1, vec![3; 32]);
    let keys =
        StateKeys::new(StateKeyScheme::ExporterEpochKey, current, Some(next)).expect("next epoch");
    let now = ds.now_ms;
    let reinit = |extensions: &[u8]| {
        let update = forge::commit_from(
            &info,
            &alice,
            &[forge::reinit_with_extensions(&successor, extensions)],
        );
        let request = alice.signed(
            DsRequestBody::ReInitializeGroup(GroupUpdateRequest {
                group_update: update,
            }),
            now,
        );
        alice.keyed_request(&request, keys.clone(), now)
    };
    let plain = reinit(&[]);
    let reason = ds.reject(&plain, ErrorCode::StateKeyUnexpected);
    assert_eq!(reason, mimi_ds::RejectReason::PlainSuccessor);
    // Extension 0xF1E6 with `exporter_epoch_key(1)`.
    let private = reinit(&[0xF1, 0xE6, 0x01, 0x01]);
    let _ = ds.accept(&private);
}

/// §17.8: the group cache keeps no privacy-mode group: keyed requests neither fill nor consult
/// it, while a plain group on the same hub is cached as usual.
#[test]
fn the_group_cache_keeps_no_privacy_mode_group() {
    let (mut ds, mut alice, mut bob) = private_pair();
    exchange(&mut ds, &mut alice, &mut bob, b"one");
    exchange(&mut ds, &mut bob, &mut alice, b"two");
    let stats = ds.ds.group_cache_stats();
    assert_eq!(
        (stats.entries, stats.hits, stats.misses),
        (0, 0, 0),
        "{stats:?}"
    );

    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    let mut dave = TestClient::new("dave", "dave-1", "d.example");
    ds.create_group_with(&mut carol, &mut [&mut dave]);
    let request = carol.message_request(b"plain", ds.now_ms);
    let _ = ds.accept(&request);
    // The control: a plain group is cached, unless the environment turned the cache off
    // (`.ci/run` runs the whole suite that way too).
    let cache_off = std::env::var(mimi_ds::testing::GROUP_CACHE_MODE_VAR).as_deref() == Ok("off");
    assert_eq!(
        ds.ds.group_cache_stats().entries > 0,
        !cache_off,
        "a plain group is cached exactly when the cache is on"
    );
}

/// §17.8: a server event of a privacy-mode group is refused without keys, and runs with the
/// keys of the group's next keyed request (`handle_event_with_keys`); its Remove proposal is
/// sealed, and the next commit carries it.
#[test]
fn a_hub_removal_runs_with_the_keys_of_the_next_keyed_request() {
    use mimi_ds::wire::{decode_exact, DsRequest};
    let (mut ds, mut alice, mut bob) = private_pair();
    let group_id = alice.group_id();
    let event = mimi_ds::HubEvent::ClientDeleted {
        signature_key: bob.signer.to_public_vec(),
    };
    ds.reject_event(&group_id, &event, ErrorCode::StateKeyMissing);

    // Alice's next request, a keyed commit: the embedding server runs the kept event first,
    // with the request's keys.
    let commit = alice.update_request(ds.now_ms);
    let keyed = alice.keyed_by_member(&commit, true, ds.now_ms);
    let keys = decode_exact::<DsRequest>(&keyed)
        .expect("request")
        .body
        .state_keys()
        .expect("keyed")
        .clone();
    let wrong = StateKeys::new(
        StateKeyScheme::ExporterEpochKey,
        mimi_ds::privacy::StateKey::new(keys.current().epoch(), vec![5; 32]),
        None,
    )
    .expect("keys");
    let now = mimi_ds::UnixTimeMs(ds.now_ms);
    let refused = ds.assert_unchanged(|ds| {
        ds.ds
            .handle_event_with_keys(now, &group_id, &event, &wrong, &mut ds.storage)
            .expect("in-memory")
    });
    assert_eq!(refused.status, Status::Rejected(ErrorCode::StateKeyWrong));
    let out = ds
        .ds
        .handle_event_with_keys(now, &group_id, &event, &keys, &mut ds.storage)
        .expect("in-memory");
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    TestDs::route(&out, &mut [&mut alice, &mut bob]);

    // The commit built before the hub's proposal leaves it out; rebuilt, it removes Bob.
    ds.reject(&keyed, ErrorCode::MissingPendingProposals);
    alice.discard_commit();
    alice.process_inbox();
    let commit = alice.update_request(ds.now_ms);
    let out = ds.accept(&alice.keyed_by_member(&commit, true, ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        alice.group().members().count(),
        1,
        "the hub's removal was committed"
    );
}

/// A keyed `create_group` for the ID of a privacy-mode group gets the handler's own answer
/// (R-GID-3: the ID is in use), not a key refusal from opening the existing group's state with
/// the new group's key.
#[test]
fn a_keyed_create_group_for_an_id_in_use_is_refused_as_in_use() {
    let (mut ds, alice) = privacy_support::private_group();
    let mut mallory = TestClient::new("mallory", "mallory-1", "m.example");
    mallory.create_private_group(&alice.group_id(), &ds.external_sender);
    let request = mallory.create_group_request(ds.now_ms);
    let request = mallory.keyed_by_member(&request, false, ds.now_ms);
    assert_eq!(
        ds.reject(&request, ErrorCode::InvalidGroupId),
        mimi_ds::RejectReason::InvalidGroupId(mimi_ds::InvalidGroupId::AlreadyInUse)
    );
}

/// A keyed `delete_group` deletes every sealed record and the manifest and leaves only the
/// tombstone, in the clear (§17.5: it holds no member data); the group is then deleted for
/// keyed and unkeyed requests alike.
#[test]
fn a_deleted_privacy_mode_group_keeps_only_its_tombstone_in_the_clear() {
    let (mut ds, mut alice, mut bob) = private_pair();
    let group_id = alice.group_id();
    let request = alice.delete_group_request(ds.now_ms);
    let _ = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
    let kinds: Vec<RecordKind> = stored_records(&ds.storage, &group_id)
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, vec![RecordKind::Tombstone]);
    ds.advance(1);
    let message = bob.message_request(b"still there?", ds.now_ms);
    let keyed = bob.keyed_by_member(&message, false, ds.now_ms);
    let _ = ds.reject(&keyed, ErrorCode::UnknownGroup);
    let _ = ds.reject(&message, ErrorCode::UnknownGroup);
}

/// §17.3: a privacy-mode group keeps no Welcome snapshot, so a commit that adds clients indexes
/// none of them: the sealed index is as long after three Adds as the empty one the creation
/// wrote (a plain group's grows by 74 bytes per joiner, tests/stored_bytes.rs).
#[test]
fn a_privacy_mode_commit_that_adds_clients_indexes_no_joiner() {
    let (mut ds, mut alice) = private_group();
    let group_id = alice.group_id();
    let index_bytes = |ds: &TestDs| {
        ds.storage
            .record_bytes(&group_id, RecordKind::WelcomeSnapshots)
    };
    let empty = index_bytes(&ds);
    assert!(empty > 0, "the creation writes the sealed index");
    let key_packages = ["bob", "carol", "dave"]
        .map(|name| TestClient::new(name, &format!("{name}-1"), "b.example").privacy_key_package())
        .to_vec();
    let request = alice.add_request(key_packages, ds.now_ms);
    let _ = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
    alice.confirm_commit();
    assert_eq!(alice.epoch(), 1);
    assert_eq!(index_bytes(&ds), empty);
}

/// The GroupInfo the hub stores is the committer's, as signed: with the tree in its Welcomes
/// (§17.3), an openmls committer's GroupInfo carries the tree too, a second copy at rest until a
/// commit whose GroupInfo leaves it out (`TestClient::leave_tree_out_of_group_infos`), which the
/// hub accepts like any other.
#[test]
fn a_commit_without_the_tree_in_its_group_info_stores_the_small_group_info() {
    let (mut ds, mut alice, mut bob) = private_pair();
    let group_id = alice.group_id();
    let group_info_bytes = |ds: &TestDs| ds.storage.record_bytes(&group_id, RecordKind::GroupInfo);
    let with_tree = group_info_bytes(&ds);
    let tree_bytes = {
        use tls_codec::Size as _;
        alice.group().export_ratchet_tree().tls_serialized_len()
    };
    alice.leave_tree_out_of_group_infos();
    let request = alice.update_request(ds.now_ms);
    let out = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    bob.process_inbox();
    assert_eq!(bob.epoch(), 2);
    let without_tree = group_info_bytes(&ds);
    assert!(
        without_tree + tree_bytes <= with_tree,
        "{without_tree} B + a {tree_bytes} B tree > {with_tree} B"
    );
    exchange(&mut ds, &mut bob, &mut alice, b"still keyed");
}
