//! Welcome snapshots are bounded (wire-format.md §4.12): retention is clamped whatever
//! `not_after` a KeyPackage names, a removed joiner's entry and tree go with its leaf, a group
//! keeps at most `max_welcome_snapshots` trees (evicting the oldest), and an earlier epoch's
//! tree is stored as its difference from the current one: a commit writes the tree of the
//! epoch it leaves, whose snapshot shared the current state until then, and carries every
//! earlier pending tree over to its new tree.

use mimi_ds::storage::{DsStorage as _, RecordKind, RecordWrite};
use mimi_ds::testing::{
    assert_accepted, decode_response, Received, RecordingStorage, TestClient, TestDs, CIPHERSUITE,
};
use mimi_ds::wire::{
    decode_exact, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ErrorCode, MlsMessageBytes,
    RatchetTreeBytes, WelcomeInfoRequest,
};
use mimi_ds::{AuthenticationFailed, DsConfig, HubEvent, Outcome, Status, UnixTimeMs};
use openmls::prelude::{KeyPackage, Lifetime};

const DOMAIN: &str = "hub.example";

fn group_with_alice(ds: &mut TestDs) -> TestClient {
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
    alice
}

/// Adds the KeyPackages in one commit by `adder` and returns the Welcome each joiner received.
fn add_key_packages(
    ds: &mut TestDs,
    adder: &mut TestClient,
    key_packages: Vec<KeyPackage>,
    joiners: &mut [&mut TestClient],
) -> Vec<MlsMessageBytes> {
    let out = ds.process(&adder.add_request(key_packages, ds.now_ms));
    assert_accepted(&out);
    adder.confirm_commit();
    TestDs::route(&out, joiners);
    joiners
        .iter_mut()
        .map(|j| match j.process_inbox().pop() {
            Some(Received::Welcome(w)) => w,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn add(
    ds: &mut TestDs,
    adder: &mut TestClient,
    joiners: &mut [&mut TestClient],
) -> Vec<MlsMessageBytes> {
    let key_packages = joiners.iter().map(|j| j.key_package()).collect();
    add_key_packages(ds, adder, key_packages, joiners)
}

/// A KeyPackage of `client` valid from an hour ago (system clock, which openmls checks) until
/// `not_after` (seconds).
fn key_package_until(client: &TestClient, not_after: u64) -> KeyPackage {
    // Valid from before the harness's start and the system clock alike (both are checked:
    // the DS at its `now`, openmls at the system clock).
    let not_before = TestClient::lifetime().not_before();
    KeyPackage::builder()
        .leaf_node_capabilities(TestClient::capabilities())
        .leaf_node_extensions(client.leaf_extensions())
        .key_package_lifetime(Lifetime::init(not_before, not_after))
        .build(
            CIPHERSUITE,
            &client.provider,
            &client.signer,
            client.credential.clone(),
        )
        .unwrap()
        .key_package()
        .clone()
}

/// The same request body and sender, signed again at `now_ms` (a new request, not a retry).
fn resign(signer: &TestClient, request: &[u8], now_ms: u64) -> Vec<u8> {
    let decoded: DsRequest = decode_exact(request).unwrap();
    let DsAuthData::ClientSignature(sig) = decoded.auth else {
        panic!("unsigned")
    };
    signer.signed_as(decoded.body, sig.group_id.as_slice(), now_ms, sig.sender_id)
}

fn welcome_tree(ds: &mut TestDs, request: &[u8]) -> RatchetTreeBytes {
    let out = ds.process(request);
    match decode_response(&out.response).body {
        DsResponseBody::WelcomeInfo(info) => info.ratchet_tree,
        other => panic!("{other:?}"),
    }
}

/// `welcome_info` is refused as for a joiner without a pending Welcome, and nothing changes.
fn refused(ds: &mut TestDs, request: &[u8]) {
    assert_eq!(
        ds.reject(request, ErrorCode::AuthenticationFailed),
        AuthenticationFailed::NoPendingWelcome.into()
    );
}

/// Bytes of the Welcome tree kept for `epoch` (0: none).
fn tree_bytes(ds: &TestDs, group_id: &[u8], epoch: u64) -> usize {
    ds.storage
        .record_bytes(group_id, RecordKind::WelcomeTree { epoch })
}

/// Bytes of the Welcome index; 1 when it lists no epoch.
/// The encoded size of an index with no pending snapshot: the group's ciphersuite (uint16)
/// and an empty snapshot list (one length byte).
const EMPTY_INDEX_BYTES: usize = 3;

fn index_bytes(ds: &TestDs, group_id: &[u8]) -> usize {
    ds.storage
        .record_bytes(group_id, RecordKind::WelcomeSnapshots)
}

/// The epoch-1 snapshot is gone: its tree record is deleted, the index is empty, and
/// `joiner`'s `welcome_info` request, signed afresh, is refused.
fn assert_welcome_gone(ds: &mut TestDs, group_id: &[u8], joiner: &TestClient, request: &[u8]) {
    assert_eq!(tree_bytes(ds, group_id, 1), 0);
    assert_eq!(index_bytes(ds, group_id), EMPTY_INDEX_BYTES);
    let again = resign(joiner, request, ds.now_ms);
    refused(ds, &again);
}

/// The leaf of `client` in `member`'s view of the group.
fn leaf_of(member: &TestClient, client: &TestClient) -> u32 {
    member
        .group()
        .members()
        .find(|m| m.signature_key == client.credential.signature_key.as_slice())
        .expect("a member")
        .index
        .u32()
}

fn commit_update(ds: &mut TestDs, committer: &mut TestClient) {
    let request = committer.update_request(ds.now_ms);
    assert_accepted(&ds.process(&request));
    committer.confirm_commit();
}

#[test]
fn a_key_package_that_never_expires_keeps_its_tree_only_until_the_retention_limit() {
    let mut ds = TestDs::new(DOMAIN);
    let retention = DsConfig::new(DOMAIN).welcome_retention_ms;
    assert_eq!(retention, 14 * 24 * 3600 * 1000, "documented default");
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let forever = key_package_until(&bob, u64::MAX);
    assert_eq!(forever.life_time().not_after(), u64::MAX);
    let added_at = ds.now_ms;
    let welcomes = add_key_packages(&mut ds, &mut alice, vec![forever], &mut [&mut bob]);
    // The current epoch's snapshot shares the state: no tree record of its own.
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);
    assert!(index_bytes(&ds, &group_id) > EMPTY_INDEX_BYTES);
    let (request, _) = bob.welcome_info_request(&welcomes[0], ds.now_ms);

    // At the limit the tree is still there...
    ds.now_ms = added_at + retention;
    let saved = ds.storage.clone();
    let again = resign(&bob, &request, ds.now_ms);
    welcome_tree(&mut ds, &again);
    ds.storage = saved;

    // ...past it, it is not handed out...
    ds.advance(1);
    let again = resign(&bob, &request, ds.now_ms);
    refused(&mut ds, &again);
    // ...and the group's next commit deletes it, whatever `not_after` said.
    commit_update(&mut ds, &mut alice);
    assert_welcome_gone(&mut ds, &group_id, &bob, &request);
}

#[test]
fn an_ordinary_key_package_lifetime_is_clamped_too() {
    // openmls gives KeyPackages about three months from the system clock, far beyond the
    // retention limit from the harness's start time.
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let key_package = bob.key_package();
    assert!(
        key_package.life_time().not_after() * 1000
            > ds.now_ms + DsConfig::new(DOMAIN).welcome_retention_ms + 1
    );
    let welcomes = add_key_packages(&mut ds, &mut alice, vec![key_package], &mut [&mut bob]);
    let (request, _) = bob.welcome_info_request(&welcomes[0], ds.now_ms);

    ds.advance(DsConfig::new(DOMAIN).welcome_retention_ms + 1);
    let again = resign(&bob, &request, ds.now_ms);
    refused(&mut ds, &again);
    commit_update(&mut ds, &mut alice);
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);
}

#[test]
fn a_joiner_removed_before_fetching_loses_its_entry_and_an_unneeded_tree_is_deleted() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let mut dave = TestClient::new("dave", "dave-phone", "d.example");
    // Epoch 1 adds Bob and Carol, epoch 2 adds Dave; none of them fetches yet.
    let welcomes_1 = add(&mut ds, &mut alice, &mut [&mut bob, &mut carol]);
    let welcome_2 = add(&mut ds, &mut alice, &mut [&mut dave]).remove(0);
    let (bob_request, _) = bob.welcome_info_request(&welcomes_1[0], ds.now_ms);
    let (carol_request, carol_welcome) = carol.welcome_info_request(&welcomes_1[1], ds.now_ms);
    let (dave_request, _) = dave.welcome_info_request(&welcome_2, ds.now_ms);
    // Epoch 2's commit wrote epoch 1's tree out; epoch 2's snapshot shares the state.
    assert!(tree_bytes(&ds, &group_id, 1) > 0 && tree_bytes(&ds, &group_id, 2) == 0);

    // Epoch 3 removes Bob and Dave.
    let leaves = [leaf_of(&alice, &bob), leaf_of(&alice, &dave)];
    let out = ds.process(&alice.remove_request(&leaves, ds.now_ms));
    assert_accepted(&out);
    alice.confirm_commit();

    // Dave was epoch 2's only joiner: its tree is gone. Epoch 1's stays for Carol.
    assert_eq!(tree_bytes(&ds, &group_id, 2), 0);
    assert!(tree_bytes(&ds, &group_id, 1) > 0);
    refused(&mut ds, &bob_request);
    refused(&mut ds, &dave_request);
    let tree = welcome_tree(&mut ds, &carol_request);
    carol.join_with_tree(carol_welcome, &tree);
    assert_eq!(carol.epoch(), 1);
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);
    assert_eq!(index_bytes(&ds, &group_id), EMPTY_INDEX_BYTES);
}

#[test]
fn a_hub_removal_of_a_joiner_drops_its_entry_once_committed() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob]);
    let (request, _) = bob.welcome_info_request(&welcomes[0], ds.now_ms);

    // The server deleted Bob's client before it joined: the DS proposes removing it.
    ds.advance(1000);
    let event = HubEvent::ClientDeleted {
        signature_key: bob.credential.signature_key.as_slice().to_vec(),
    };
    let out = ds.handle_event(&group_id, &event);
    assert_accepted(&out);
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);
    assert!(
        index_bytes(&ds, &group_id) > EMPTY_INDEX_BYTES,
        "kept until committed"
    );

    // Alice's commit includes the removal: Bob's entry and the tree go.
    ds.advance(1);
    commit_update(&mut ds, &mut alice);
    assert_eq!(alice.group().members().count(), 1);
    assert_welcome_gone(&mut ds, &group_id, &bob, &request);
}

#[test]
fn beyond_the_cap_the_oldest_snapshot_is_evicted_and_its_joiner_joins_by_external_commit() {
    let mut config = DsConfig::new(DOMAIN);
    assert_eq!(config.max_welcome_snapshots, 16, "documented default");
    config.max_welcome_snapshots = 2;
    let mut ds = TestDs::with_config(config);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let mut dave = TestClient::new("dave", "dave-phone", "d.example");
    let bob_welcome = add(&mut ds, &mut alice, &mut [&mut bob]).remove(0);
    let carol_welcome = add(&mut ds, &mut alice, &mut [&mut carol]).remove(0);
    let (bob_request, _) = bob.welcome_info_request(&bob_welcome, ds.now_ms);

    // A third epoch with Adds is accepted: no member can block Adds by leaving Welcomes
    // unfetched. The oldest snapshot makes room.
    let dave_welcome = add(&mut ds, &mut alice, &mut [&mut dave]).remove(0);
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);
    assert!(tree_bytes(&ds, &group_id, 2) > 0 && tree_bytes(&ds, &group_id, 3) == 0);
    refused(&mut ds, &bob_request);
    for (joiner, welcome) in [(&mut carol, &carol_welcome), (&mut dave, &dave_welcome)] {
        let (request, processed) = joiner.welcome_info_request(welcome, ds.now_ms);
        let tree = welcome_tree(&mut ds, &request);
        joiner.join_with_tree(processed, &tree);
    }
    assert_eq!(index_bytes(&ds, &group_id), EMPTY_INDEX_BYTES);

    // Bob, still a member by the tree, joins by external commit (his user has a client in the
    // group: his own unfetched leaf, which the external commit replaces).
    let members_before = alice.group().members().count();
    let info = ds.group_info(&alice, &group_id);
    let out = ds.process(&bob.external_join_request(&info));
    assert_accepted(&out);
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    alice.process_inbox();
    assert_eq!(alice.group().members().count(), members_before);
    assert_eq!(bob.epoch(), alice.epoch());
}

#[test]
fn a_joiner_that_joins_by_external_commit_instead_loses_its_entry() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob]);
    let (request, _) = bob.welcome_info_request(&welcomes[0], ds.now_ms);

    // Bob ignores his Welcome and joins by external commit, which replaces his unused leaf.
    let info = ds.group_info(&alice, &group_id);
    let out = ds.process(&bob.external_join_request(&info));
    assert_accepted(&out);
    bob.confirm_commit();
    assert_welcome_gone(&mut ds, &group_id, &bob, &request);
}

#[test]
fn delete_group_deletes_the_pending_trees() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    add(&mut ds, &mut alice, &mut [&mut bob]);
    add(&mut ds, &mut alice, &mut [&mut carol]);
    assert!(tree_bytes(&ds, &group_id, 1) > 0);
    let out = ds.process(&alice.delete_group_request(ds.now_ms));
    assert_accepted(&out);
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);
    assert_eq!(tree_bytes(&ds, &group_id, 2), 0);
    assert_eq!(index_bytes(&ds, &group_id), 0);
}

#[test]
fn a_tree_dropped_by_the_backend_counts_as_fetched() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob]);
    let (request, _) = bob.welcome_info_request(&welcomes[0], ds.now_ms);
    // A later commit writes epoch 1's tree out (until then it is the current state's).
    commit_update(&mut ds, &mut alice);
    assert!(tree_bytes(&ds, &group_id, 1) > 0);
    // A backend expiring tree records on its own clock, ahead of the DS's.
    ds.overwrite(
        &group_id,
        vec![RecordWrite::Delete(RecordKind::WelcomeTree { epoch: 1 })],
    );
    refused(&mut ds, &request);
}

/// Processes `request` on `ds`'s storage through a [`RecordingStorage`]: the record kinds it
/// read and the record changes it wrote.
fn recorded(ds: &mut TestDs, request: &[u8]) -> (Outcome, Vec<RecordKind>, Vec<RecordWrite>) {
    let mut storage = RecordingStorage::new(std::mem::take(&mut ds.storage));
    let out = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), request, &mut storage)
        .unwrap();
    let reads = storage.kinds_read();
    let writes = storage
        .writes()
        .iter()
        .flat_map(|(write_set, _)| write_set.records.iter().cloned())
        .collect();
    ds.storage = storage.inner;
    (out, reads, writes)
}

fn is_tree(kind: &RecordKind) -> bool {
    matches!(kind, RecordKind::WelcomeTree { .. })
}

fn written_kind(write: &RecordWrite) -> RecordKind {
    match write {
        RecordWrite::Put(kind, _) | RecordWrite::Delete(kind) => *kind,
    }
}

/// The Welcome trees among a request's reads and writes.
fn trees_read(reads: &[RecordKind]) -> Vec<RecordKind> {
    let mut trees: Vec<RecordKind> = reads.iter().copied().filter(is_tree).collect();
    // (The step driver answers a run's earlier reads again in the round that adds one.)
    trees.sort();
    trees.dedup();
    trees
}

fn trees_written(writes: &[RecordWrite]) -> Vec<RecordKind> {
    writes
        .iter()
        .filter(|w| matches!(w, RecordWrite::Put(..)))
        .map(written_kind)
        .filter(is_tree)
        .collect()
}

/// Alice's group with two pending Welcome snapshots: Bob added in epoch 1, Carol in epoch 2,
/// with each epoch's tree as Alice exported it.
struct TwoPending {
    ds: TestDs,
    alice: TestClient,
    group_id: Vec<u8>,
    bob: TestClient,
    carol: TestClient,
    bob_welcome: MlsMessageBytes,
    carol_welcome: MlsMessageBytes,
    epoch_1: Vec<u8>,
    epoch_2: Vec<u8>,
}

fn two_pending() -> TwoPending {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let bob_welcome = add(&mut ds, &mut alice, &mut [&mut bob]).remove(0);
    let epoch_1 = tree_of(&alice);
    let carol_welcome = add(&mut ds, &mut alice, &mut [&mut carol]).remove(0);
    let epoch_2 = tree_of(&alice);
    TwoPending {
        ds,
        alice,
        group_id,
        bob,
        carol,
        bob_welcome,
        carol_welcome,
        epoch_1,
        epoch_2,
    }
}

#[test]
fn a_commit_carries_every_pending_tree_as_a_diff_and_writes_the_one_of_the_epoch_it_leaves() {
    let TwoPending {
        mut ds,
        mut alice,
        group_id,
        mut bob,
        mut carol,
        bob_welcome,
        carol_welcome,
        epoch_1,
        epoch_2,
    } = two_pending();
    let mut dave = TestClient::new("dave", "dave-phone", "d.example");
    // Epoch 1's tree is stored as what the Add of epoch 2 changed: less than the tree.
    assert!(tree_bytes(&ds, &group_id, 1) > 0);
    assert!(
        tree_bytes(&ds, &group_id, 1) < epoch_1.len(),
        "{} B, the tree {} B",
        tree_bytes(&ds, &group_id, 1),
        epoch_1.len()
    );
    assert_eq!(tree_bytes(&ds, &group_id, 2), 0, "epoch 2 shares the state");

    // The commit that leaves epoch 2 writes its tree, and carries epoch 1's to the new tree:
    // it reads that one.
    let request = alice.update_request(ds.now_ms);
    let (out, reads, writes) = recorded(&mut ds, &request);
    assert_accepted(&out);
    alice.confirm_commit();
    assert_eq!(
        trees_read(&reads),
        vec![RecordKind::WelcomeTree { epoch: 1 }]
    );
    assert_eq!(
        trees_written(&writes),
        vec![
            RecordKind::WelcomeTree { epoch: 1 },
            RecordKind::WelcomeTree { epoch: 2 }
        ]
    );

    // A commit leaving an epoch without joiners carries both and writes no other.
    let request = alice.update_request(ds.now_ms);
    let (out, reads, writes) = recorded(&mut ds, &request);
    assert_accepted(&out);
    alice.confirm_commit();
    let both = vec![
        RecordKind::WelcomeTree { epoch: 1 },
        RecordKind::WelcomeTree { epoch: 2 },
    ];
    assert_eq!(trees_read(&reads), both);
    assert_eq!(trees_written(&writes), both);

    // A commit with Adds writes no tree for its own epoch: its snapshot shares the new state.
    let request = alice.add_request(vec![dave.key_package()], ds.now_ms);
    let (out, _, writes) = recorded(&mut ds, &request);
    assert_accepted(&out);
    alice.confirm_commit();
    assert_eq!(trees_written(&writes), both);

    // welcome_info of the current epoch, and of an earlier one, reads the index and the tree
    // record, then, in one read, the index, tree and state: nothing of the group's size
    // before the signature verified (the state is decoded only after it; wire-format.md
    // §4.12).
    TestDs::route(&out, &mut [&mut dave]);
    let Some(Received::Welcome(welcome)) = dave.process_inbox().pop() else {
        panic!("no Welcome")
    };
    for (joiner, welcome, epoch, expected) in [
        (&mut dave, &welcome, 5, None),
        (&mut bob, &bob_welcome, 1, Some(&epoch_1)),
    ] {
        let (request, processed) = joiner.welcome_info_request(welcome, ds.now_ms);
        let (out, reads, writes) = recorded(&mut ds, &request);
        let DsResponseBody::WelcomeInfo(info) = decode_response(&out.response).body else {
            panic!("{:?}", decode_response(&out.response))
        };
        if let Some(expected) = expected {
            assert_eq!(info.ratchet_tree.as_bytes(), expected.as_slice());
        }
        joiner.join_with_tree(processed, &info.ratchet_tree);
        assert_eq!(joiner.epoch(), epoch);
        let state_read = [
            RecordKind::WelcomeSnapshots,
            RecordKind::WelcomeTree { epoch },
            RecordKind::MlsState,
            // Every read asks for the privacy-mode marker, absent here (wire-format.md §17.6).
            RecordKind::Manifest,
        ];
        assert!(reads.ends_with(&state_read), "{reads:?}");
        assert!(reads.iter().all(|k| state_read.contains(k)), "{reads:?}");
        assert_eq!(reads[..2], state_read[..2], "the index before the state");
        // The fetch of an epoch's last joiner deletes its tree.
        let deleted: Vec<RecordKind> = writes
            .iter()
            .filter(|w| matches!(w, RecordWrite::Delete(_)))
            .map(written_kind)
            .filter(is_tree)
            .collect();
        assert_eq!(deleted, vec![RecordKind::WelcomeTree { epoch }]);
    }
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);

    // A sender the index does not list for the epoch it names (Carol, a joiner of epoch 2)
    // costs no read of the state.
    let (carol_request, carol_processed) = carol.welcome_info_request(&carol_welcome, ds.now_ms);
    let decoded: DsRequest = decode_exact(&carol_request).unwrap();
    let DsAuthData::ClientSignature(sig) = decoded.auth else {
        panic!("unsigned")
    };
    let wrong_epoch = carol.signed_as(
        DsRequestBody::WelcomeInfo(WelcomeInfoRequest { epoch: 5 }),
        sig.group_id.as_slice(),
        ds.now_ms,
        sig.sender_id,
    );
    let (out, reads, _) = recorded(&mut ds, &wrong_epoch);
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert!(!reads.contains(&RecordKind::MlsState), "{reads:?}");
    let tree = welcome_tree(&mut ds, &carol_request);
    assert_eq!(tree.as_bytes(), epoch_2.as_slice());
    carol.join_with_tree(carol_processed, &tree);

    // No snapshot pending: a commit reads and writes no tree.
    assert_eq!(index_bytes(&ds, &group_id), EMPTY_INDEX_BYTES);
    let request = alice.update_request(ds.now_ms);
    let (out, reads, writes) = recorded(&mut ds, &request);
    assert_accepted(&out);
    alice.confirm_commit();
    assert!(trees_read(&reads).is_empty(), "{reads:?}");
    assert!(trees_written(&writes).is_empty(), "{writes:?}");
}

/// The TLS encoding of `member`'s ratchet tree: what `welcome_info` must answer for the epoch
/// `member` is in (the tree a DS storing a full copy per epoch answered).
fn tree_of(member: &TestClient) -> Vec<u8> {
    use tls_codec::Serialize as _;
    member
        .group()
        .export_ratchet_tree()
        .tls_serialize_detached()
        .unwrap()
}

/// Fetches `joiner`'s tree, checks it is `expected` byte for byte and joins with it (openmls).
fn fetch_and_join(
    ds: &mut TestDs,
    joiner: &mut TestClient,
    welcome: &MlsMessageBytes,
    expected: &[u8],
    epoch: u64,
) {
    let (request, processed) = joiner.welcome_info_request(welcome, ds.now_ms);
    let tree = welcome_tree(ds, &request);
    assert_eq!(tree.as_bytes(), expected, "the tree of epoch {epoch}");
    joiner.join_with_tree(processed, &tree);
    assert_eq!(joiner.epoch(), epoch);
}

#[test]
fn welcome_info_answers_the_joiners_epoch_whether_shared_or_written_out_later() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let mut dave = TestClient::new("dave", "dave-phone", "d.example");
    let mut erin = TestClient::new("erin", "erin-phone", "e.example");
    let mut frank = TestClient::new("frank", "frank-phone", "f.example");
    let mut grace = TestClient::new("grace", "grace-phone", "g.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob, &mut carol, &mut dave]);
    let epoch_1 = tree_of(&alice);

    // Right after the add: the tree shared with the current state.
    fetch_and_join(&mut ds, &mut bob, &welcomes[0], &epoch_1, 1);
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);

    // After one update: the tree the update's commit wrote out.
    commit_update(&mut ds, &mut alice);
    assert!(tree_bytes(&ds, &group_id, 1) > 0);
    fetch_and_join(&mut ds, &mut carol, &welcomes[1], &epoch_1, 1);

    // After several commits (an add, a remove, an update): epoch 1's tree is unchanged, and
    // the add's epoch is answered from the state until the remove leaves it.
    let erin_welcome = add(&mut ds, &mut alice, &mut [&mut erin]).remove(0);
    let epoch_3 = tree_of(&alice);
    let frank_welcome = add(&mut ds, &mut alice, &mut [&mut frank]).remove(0);
    let epoch_4 = tree_of(&alice);
    let leaves = [leaf_of(&alice, &bob)];
    assert_accepted(&ds.process(&alice.remove_request(&leaves, ds.now_ms)));
    alice.confirm_commit();
    commit_update(&mut ds, &mut alice);
    let grace_welcome = add(&mut ds, &mut alice, &mut [&mut grace]).remove(0);
    let epoch_7 = tree_of(&alice);
    fetch_and_join(&mut ds, &mut dave, &welcomes[2], &epoch_1, 1);
    fetch_and_join(&mut ds, &mut erin, &erin_welcome, &epoch_3, 3);
    fetch_and_join(&mut ds, &mut frank, &frank_welcome, &epoch_4, 4);
    fetch_and_join(&mut ds, &mut grace, &grace_welcome, &epoch_7, 7);
    assert_eq!(index_bytes(&ds, &group_id), EMPTY_INDEX_BYTES);
    for epoch in 1..=7 {
        assert_eq!(tree_bytes(&ds, &group_id, epoch), 0, "epoch {epoch}");
    }
}

#[test]
fn a_shared_snapshot_is_not_handed_out_for_another_epoch() {
    // Only the snapshot of the current epoch shares the state: a joiner of an earlier epoch
    // whose tree the backend dropped is refused, not answered with the current tree.
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let bob_welcome = add(&mut ds, &mut alice, &mut [&mut bob]).remove(0);
    add(&mut ds, &mut alice, &mut [&mut carol]);
    let (request, _) = bob.welcome_info_request(&bob_welcome, ds.now_ms);
    ds.overwrite(
        &group_id,
        vec![RecordWrite::Delete(RecordKind::WelcomeTree { epoch: 1 })],
    );
    refused(&mut ds, &request);
}

/// Stores `tree` as `epoch`'s Welcome tree in the layout of earlier versions, the expiry (u64)
/// and then the whole tree as `opaque<V>`, and returns the record.
fn store_whole_tree(ds: &mut TestDs, group_id: &[u8], epoch: u64, tree: &[u8]) -> Vec<u8> {
    use tls_codec::Serialize as _;
    let mut record = u64::MAX.to_be_bytes().to_vec();
    record.extend(
        tls_codec::VLBytes::new(tree.to_vec())
            .tls_serialize_detached()
            .unwrap(),
    );
    ds.overwrite(
        group_id,
        vec![RecordWrite::Put(
            RecordKind::WelcomeTree { epoch },
            record.clone(),
        )],
    );
    record
}

#[test]
fn a_current_epoch_tree_stored_by_an_earlier_version_is_still_answered() {
    // Earlier versions stored every snapshot's tree, the current epoch's too. Such a record
    // is answered as it is (one read, no state) and deleted once fetched.
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let welcome = add(&mut ds, &mut alice, &mut [&mut bob]).remove(0);
    let expected = tree_of(&alice);
    store_whole_tree(&mut ds, &group_id, 1, &expected);

    let (request, processed) = bob.welcome_info_request(&welcome, ds.now_ms);
    let (out, reads, _) = recorded(&mut ds, &request);
    let DsResponseBody::WelcomeInfo(info) = decode_response(&out.response).body else {
        panic!("{:?}", decode_response(&out.response))
    };
    assert_eq!(info.ratchet_tree.as_bytes(), expected);
    assert_eq!(
        reads,
        vec![
            RecordKind::WelcomeSnapshots,
            RecordKind::WelcomeTree { epoch: 1 },
            RecordKind::Manifest
        ]
    );
    bob.join_with_tree(processed, &info.ratchet_tree);
    assert_eq!(tree_bytes(&ds, &group_id, 1), 0);
}

#[test]
fn the_tree_of_an_epoch_before_the_group_shrank_and_grew_again_is_answered_exactly() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let mut dave = TestClient::new("dave", "dave-phone", "d.example");
    let mut erin = TestClient::new("erin", "erin-phone", "e.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob, &mut carol, &mut dave]);
    let epoch_1 = tree_of(&alice);
    // Removing the two rightmost leaves truncates the tree (RFC 9420 §7.8): epoch 1's tree is
    // now longer than the current one.
    let leaves = [leaf_of(&alice, &carol), leaf_of(&alice, &dave)];
    assert_accepted(&ds.process(&alice.remove_request(&leaves, ds.now_ms)));
    alice.confirm_commit();
    assert!(tree_of(&alice).len() < epoch_1.len());
    add(&mut ds, &mut alice, &mut [&mut erin]);
    commit_update(&mut ds, &mut alice);
    assert!(tree_bytes(&ds, &group_id, 1) > 0);
    fetch_and_join(&mut ds, &mut bob, &welcomes[0], &epoch_1, 1);
}

#[test]
fn an_earlier_epochs_tree_stored_whole_by_an_earlier_version_is_kept_and_answered() {
    // Earlier versions stored each earlier epoch's whole tree. A commit leaves such a record as
    // it is (it depends on no other tree), and welcome_info answers it without the state.
    let TwoPending {
        mut ds,
        mut alice,
        group_id,
        mut bob,
        bob_welcome: welcome,
        epoch_1: expected,
        ..
    } = two_pending();
    let legacy = store_whole_tree(&mut ds, &group_id, 1, &expected);
    let request = alice.update_request(ds.now_ms);
    let (out, _, writes) = recorded(&mut ds, &request);
    assert_accepted(&out);
    alice.confirm_commit();
    assert_eq!(
        trees_written(&writes),
        vec![RecordKind::WelcomeTree { epoch: 2 }]
    );
    assert_eq!(tree_bytes(&ds, &group_id, 1), legacy.len());

    let (request, processed) = bob.welcome_info_request(&welcome, ds.now_ms);
    let (out, reads, _) = recorded(&mut ds, &request);
    let DsResponseBody::WelcomeInfo(info) = decode_response(&out.response).body else {
        panic!("{:?}", decode_response(&out.response))
    };
    assert_eq!(info.ratchet_tree.as_bytes(), expected);
    assert!(!reads.contains(&RecordKind::MlsState), "{reads:?}");
    bob.join_with_tree(processed, &info.ratchet_tree);
    assert_eq!(bob.epoch(), 1);
}

#[test]
fn a_welcome_tree_record_that_mimi_ds_did_not_write_is_an_internal_error_and_changes_nothing() {
    let TwoPending {
        mut ds,
        mut alice,
        group_id,
        bob,
        bob_welcome: welcome,
        ..
    } = two_pending();
    let kind = RecordKind::WelcomeTree { epoch: 1 };
    let stored = ds
        .storage
        .read(&group_id, &[kind])
        .unwrap()
        .unwrap()
        .record(kind)
        .unwrap()
        .to_vec();
    assert_eq!(stored[8], 2, "a reverse diff");
    let with_diff = |diff: &[u8]| [&stored[..9], diff].concat();
    let corrupt = [
        // Cut short, and garbage after the marker.
        stored[..stored.len() / 2].to_vec(),
        with_diff(&[0xff; 7]),
        // node_count 0; a node index beyond node_count; a count beyond the stored nodes.
        with_diff(&[0, 0, 0, 0, 0]),
        with_diff(&[0, 0, 0, 3, 6, 0, 0, 0, 3, 1, 0]),
        with_diff(&[0xff, 0xff, 0xff, 0xff, 6, 0, 0, 0, 0, 1, 0]),
    ];
    let (info_request, _) = bob.welcome_info_request(&welcome, ds.now_ms);
    let update = alice.update_request(ds.now_ms);
    alice.discard_commit();
    for bytes in corrupt {
        ds.overwrite(&group_id, vec![RecordWrite::Put(kind, bytes.clone())]);
        for request in [&update, &info_request] {
            let before = ds.storage.clone();
            let mut storage = ds.storage.clone();
            let result = ds.ds.process(UnixTimeMs(ds.now_ms), request, &mut storage);
            assert!(
                matches!(result, Err(mimi_ds::ProcessError::Internal(_))),
                "{bytes:?}: {result:?}"
            );
            assert!(storage == before, "{bytes:?}: nothing is written");
        }
    }
}

#[test]
fn an_external_commit_carries_the_pending_trees_too() {
    let TwoPending {
        mut ds,
        alice,
        group_id,
        mut bob,
        mut carol,
        bob_welcome,
        carol_welcome,
        epoch_1,
        epoch_2,
    } = two_pending();
    let mut alice_laptop = TestClient::new("alice", "alice-laptop", "a.example");
    // Alice's second device joins by external commit, leaving epoch 2 while both snapshots
    // are pending: it writes epoch 2's tree and carries epoch 1's.
    let info = ds.group_info(&alice, &group_id);
    let request = alice_laptop.external_join_request(&info);
    let (out, reads, writes) = recorded(&mut ds, &request);
    assert_accepted(&out);
    alice_laptop.confirm_commit();
    assert_eq!(
        trees_read(&reads),
        vec![RecordKind::WelcomeTree { epoch: 1 }]
    );
    assert_eq!(
        trees_written(&writes),
        vec![
            RecordKind::WelcomeTree { epoch: 1 },
            RecordKind::WelcomeTree { epoch: 2 }
        ]
    );
    fetch_and_join(&mut ds, &mut bob, &bob_welcome, &epoch_1, 1);
    fetch_and_join(&mut ds, &mut carol, &carol_welcome, &epoch_2, 2);
}
