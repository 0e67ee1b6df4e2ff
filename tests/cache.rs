//! The group cache and the activity record (issue 14; wire-format.md §16).
//!
//! * The cache is invisible: the same requests get the same answers, fanout and stored bytes
//!   with the cache on, off, and forced to miss.
//! * Two services sharing one storage: the one holding a stale entry never accepts against
//!   the stale state.
//! * More groups than the cache holds keep its bytes within the bound.
//! * Messages write the activity record only when the sender's stored time is older than the
//!   granularity; groups stored before the record existed keep working.

use mimi_ds::storage::{DsStorage, InMemoryStorage, RecordKind, RecordWrite, WriteOutcome};
use mimi_ds::testing::{decode_response, ds_identity_with_keys, Received, TestClient, TestDs};
use mimi_ds::wire::DsResponseBody;
use mimi_ds::{
    AuthenticationFailed, BasicCredentialValidator, DeliveryService, DsConfig, DsStep, HubEvent,
    Outcome, RejectReason, Status, UnixTimeMs,
};
use openmls::prelude::SignatureScheme;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;

const DOMAIN: &str = "hub.example";
const HOUR_MS: u64 = 60 * 60 * 1000;

/// The same key pair again (the DS identity holds its signer by value).
fn copy_keys(keys: &SignatureKeyPair) -> SignatureKeyPair {
    serde_json::from_value(serde_json::to_value(keys).expect("encodes")).expect("decodes")
}

/// A DS with this configuration and the identity of `keys`.
fn service(config: DsConfig, keys: &SignatureKeyPair) -> DeliveryService {
    let copy = copy_keys(keys);
    let (identity, _) = ds_identity_with_keys(DOMAIN, copy);
    DeliveryService::new(config, identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials())
}

fn config_in(mode: &str) -> DsConfig {
    let mut config = DsConfig::new(DOMAIN);
    config.inactivity_limit_ms = Some(3 * HOUR_MS);
    match mode {
        "on" => {}
        "off" => config.group_cache_bytes = 0,
        "miss" => config.group_cache_force_miss = true,
        other => unreachable!("{other}"),
    }
    config
}

/// The same requests, processed by a DS with the cache on (the primary, with the harness's
/// clients and routing), off, and forced to miss, each over its own copy of the stored state.
struct Lockstep {
    primary: TestDs,
    others: Vec<(&'static str, DeliveryService, InMemoryStorage)>,
}

impl Lockstep {
    fn new() -> Self {
        let keys = SignatureKeyPair::new(SignatureScheme::ED25519).expect("keys");
        let (identity, sender) = ds_identity_with_keys(DOMAIN, copy_keys(&keys));
        let mut primary =
            TestDs::with_crypto(config_in("on"), identity, sender, RustCrypto::default());
        // Whatever the environment says, the primary's cache is on.
        primary.ds = service(config_in("on"), &keys);
        let others = ["off", "miss"]
            .into_iter()
            .map(|mode| {
                (
                    mode,
                    service(config_in(mode), &keys),
                    InMemoryStorage::new(),
                )
            })
            .collect();
        Self { primary, others }
    }

    /// After the primary changed storage on its own (group creation): every DS starts from it.
    fn sync_storage(&mut self) {
        for (_, _, storage) in &mut self.others {
            *storage = self.primary.storage.clone();
        }
    }

    fn check(&self, expected: &Outcome, mode: &str, got: &Outcome, storage: &InMemoryStorage) {
        assert_eq!(got.response, expected.response, "{mode}: response");
        assert_eq!(got.fanout, expected.fanout, "{mode}: fanout");
        assert_eq!(got.status, expected.status, "{mode}: status");
        assert_eq!(got.refusal, expected.refusal, "{mode}: refusal");
        assert!(*storage == self.primary.storage, "{mode}: stored state");
    }

    fn process(&mut self, request: &[u8]) -> Outcome {
        let now = UnixTimeMs(self.primary.now_ms);
        let expected = self
            .primary
            .ds
            .process(now, request, &mut self.primary.storage)
            .expect("memory");
        let mut others = std::mem::take(&mut self.others);
        for (mode, ds, storage) in &mut others {
            let got = ds.process(now, request, storage).expect("memory");
            self.check(&expected, mode, &got, storage);
        }
        self.others = others;
        expected
    }

    fn event(&mut self, group_id: &[u8], event: &HubEvent) -> Outcome {
        let now = UnixTimeMs(self.primary.now_ms);
        let expected = self
            .primary
            .ds
            .handle_event(now, group_id, event, &mut self.primary.storage)
            .expect("memory");
        let mut others = std::mem::take(&mut self.others);
        for (mode, ds, storage) in &mut others {
            let got = ds
                .handle_event(now, group_id, event, storage)
                .expect("memory");
            self.check(&expected, mode, &got, storage);
        }
        self.others = others;
        expected
    }
}

fn accepted(out: &Outcome) {
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
}

/// Every member sends a message, and every other member reads it.
fn everyone_speaks(world: &mut Lockstep, members: &mut [&mut TestClient], text: &[u8]) {
    for i in 0..members.len() {
        let request = members[i].message_request(text, world.primary.now_ms);
        let out = world.process(&request);
        accepted(&out);
        let (before, rest) = members.split_at_mut(i);
        let (_, after) = rest.split_at_mut(1);
        let mut others: Vec<&mut TestClient> = before
            .iter_mut()
            .chain(after.iter_mut())
            .map(|c| &mut **c)
            .collect();
        TestDs::route(&out, &mut others);
        for other in others {
            assert_eq!(
                other.process_inbox(),
                vec![Received::Application(text.to_vec())]
            );
        }
    }
}

/// A committed change reaches every listed member.
fn commit_reaches(out: &Outcome, members: &mut [&mut TestClient]) {
    TestDs::route(out, members);
    for member in members.iter_mut() {
        let received = member.process_inbox();
        assert!(
            matches!(received.as_slice(), [Received::Commit { .. }]),
            "{received:?}"
        );
    }
}

#[test]
fn flows_answer_identically_with_the_cache_on_off_and_forced_to_miss() {
    let mut world = Lockstep::new();
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "b.example");
    let mut dave = TestClient::new("dave", "dave-1", "d.example");
    let group_id = world.primary.create_group_with(
        &mut alice,
        &mut [&mut alice2, &mut bob, &mut carol, &mut dave],
    );
    world.sync_storage();

    // Messages twice over: the second round hits the cache (mode "on").
    for text in [&b"one"[..], b"two"] {
        everyone_speaks(
            &mut world,
            &mut [&mut alice, &mut alice2, &mut bob, &mut carol, &mut dave],
            text,
        );
    }
    // A byte-identical retry is answered as before.
    let request = bob.message_request(b"retry", world.primary.now_ms);
    accepted(&world.process(&request));
    assert_eq!(world.process(&request).status, Status::Duplicate);
    for client in [&mut alice, &mut alice2, &mut carol, &mut dave] {
        client.process_inbox();
    }

    // A commit adds a member at a new provider: the next messages fan out to it too.
    let erin = TestClient::new("erin", "erin-1", "e.example");
    let out = world.process(&alice.add_request(vec![erin.key_package()], world.primary.now_ms));
    accepted(&out);
    alice.confirm_commit();
    commit_reaches(&out, &mut [&mut alice2, &mut bob, &mut carol, &mut dave]);
    let out = world.process(&carol.message_request(b"hello erin", world.primary.now_ms));
    accepted(&out);
    assert!(out.fanout.iter().any(|f| f.destination == "e.example"));
    TestDs::route(&out, &mut [&mut alice, &mut alice2, &mut bob, &mut dave]);
    for client in [&mut alice, &mut alice2, &mut bob, &mut dave] {
        client.process_inbox();
    }

    // A removal: the removed member's next message is refused alike.
    let dave_leaf = dave.leaf();
    let out = world.process(&alice.remove_request(&[dave_leaf], world.primary.now_ms));
    accepted(&out);
    alice.confirm_commit();
    commit_reaches(&out, &mut [&mut alice2, &mut bob, &mut carol]);
    // Dave has not seen his removal yet.
    let out = world.process(&dave.message_request(b"still here?", world.primary.now_ms));
    assert_eq!(
        out.refusal,
        Some(RejectReason::AuthenticationFailed(
            AuthenticationFailed::NoMemberAtLeaf
        )),
        "{out:?}"
    );

    // An update commit by another member, then messages at the new epoch.
    let out = world.process(&bob.update_request(world.primary.now_ms));
    accepted(&out);
    bob.confirm_commit();
    commit_reaches(&out, &mut [&mut alice, &mut alice2, &mut carol]);
    everyone_speaks(
        &mut world,
        &mut [&mut alice, &mut alice2, &mut bob, &mut carol],
        b"three",
    );

    // Two hours on, only Alice and Bob speak (their activity is written); four hours on the
    // sweep proposes removing the others, and messages are refused until a commit covers it.
    world.primary.now_ms += 2 * HOUR_MS;
    for client in [&mut alice, &mut bob] {
        let out = world.process(&client.message_request(b"awake", world.primary.now_ms));
        accepted(&out);
    }
    world.primary.now_ms += 2 * HOUR_MS;
    let out = world.event(&group_id, &HubEvent::InactivitySweep);
    accepted(&out);
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!("a receipt")
    };
    // Alice's second client and Carol were silent; Erin never joined. Alice and Bob were not.
    assert_eq!(receipt.external_proposals.len(), 3);
    let out = world.process(&alice.message_request(b"blocked", world.primary.now_ms));
    assert_eq!(
        out.refusal,
        Some(RejectReason::HubRemovalsPending),
        "{out:?}"
    );
}

/// Two services share one storage. A caches the group, B commits a removal, and A must not
/// accept the removed member's message against its cached roster; nor may A reuse a sequence
/// number B handed out.
#[test]
fn a_stale_cache_entry_never_accepts_against_stale_state() {
    let keys = SignatureKeyPair::new(SignatureScheme::ED25519).expect("keys");
    let (identity, sender) = ds_identity_with_keys(DOMAIN, copy_keys(&keys));
    let mut world = TestDs::with_crypto(
        DsConfig::new(DOMAIN),
        identity,
        sender,
        RustCrypto::default(),
    );
    let a = service(DsConfig::new(DOMAIN), &keys);
    let b = service(DsConfig::new(DOMAIN), &keys);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    world.create_group_with(&mut alice, &mut [&mut bob, &mut carol]);
    let now = UnixTimeMs(world.now_ms);
    let storage = &mut world.storage;

    // A serves Bob's messages and caches the group (and keeps it across its own writes).
    for text in [&b"one"[..], b"two"] {
        let out = a
            .process(now, &bob.message_request(text, now.0), storage)
            .unwrap();
        accepted(&out);
        TestDs::route(&out, &mut [&mut alice, &mut carol]);
    }
    assert!(
        a.group_cache_stats().hits >= 1,
        "{:?}",
        a.group_cache_stats()
    );
    alice.process_inbox();
    carol.process_inbox();

    // B accepts a message: A's entry is now one version behind. A's next message must take
    // the next sequence number, not the one its cache saw last.
    let out = b
        .process(now, &carol.message_request(b"via b", now.0), storage)
        .unwrap();
    accepted(&out);
    let seq_b = out.fanout[0].request.message.sequence_number;
    let out = a
        .process(now, &alice.message_request(b"via a", now.0), storage)
        .unwrap();
    accepted(&out);
    assert_eq!(out.fanout[0].request.message.sequence_number, seq_b + 1);

    // B commits Bob's removal. A still holds the roster with Bob in it.
    let bob_leaf = bob.leaf();
    let out = b
        .process(now, &alice.remove_request(&[bob_leaf], now.0), storage)
        .unwrap();
    accepted(&out);
    alice.confirm_commit();
    let before = a.group_cache_stats();
    let out = a
        .process(now, &bob.message_request(b"stale?", now.0), storage)
        .unwrap();
    assert_eq!(
        out.refusal,
        Some(RejectReason::AuthenticationFailed(
            AuthenticationFailed::NoMemberAtLeaf
        )),
        "{out:?}"
    );
    let after = a.group_cache_stats();
    assert_eq!(after.hits, before.hits, "the stale entry was not used");
    assert!(after.misses > before.misses);

    // The same through the step API: the read of the small sequencer shows a newer version,
    // so the step reads the roster again before deciding.
    TestDs::route(&out, &mut [&mut carol]);
    carol.process_inbox();
    let out = b
        .process(now, &alice.update_request(now.0), storage)
        .unwrap();
    accepted(&out);
    alice.confirm_commit();
    let request = bob.message_request(b"stale again?", now.0);
    let mut step = a.start(now, &request).unwrap();
    let mut rounds = 0;
    let outcome = loop {
        step = match step {
            DsStep::Read(reads) => {
                rounds += 1;
                let answers = reads.fetch(storage).unwrap();
                a.resume(reads, answers).unwrap()
            }
            DsStep::Write(_) => panic!("a removed member's message was accepted"),
            DsStep::Done(outcome) => break outcome,
        }
    };
    assert!(matches!(outcome.status, Status::Rejected(_)), "{outcome:?}");
    assert!(rounds <= 2, "{rounds} rounds");
}

/// A store that forked (a failover that lost the last write) holds one version number with two
/// contents. The version alone would let the entry of one fork answer for the other; the state
/// tag does not.
#[test]
fn a_forked_store_with_a_reused_version_is_not_answered_from_the_other_fork() {
    let mut ds = TestDs::with_config(DsConfig::new(DOMAIN));
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob, &mut carol]);
    let now = UnixTimeMs(ds.now_ms);
    let base = ds.storage.clone();

    // Fork 1: Bob's message is accepted (the service caches the group at the next version).
    let mut fork1 = base.clone();
    let out = ds
        .ds
        .process(now, &bob.message_request(b"one", now.0), &mut fork1)
        .unwrap();
    accepted(&out);
    // Fork 2: instead, Alice removes Bob, which takes the same version number.
    let mut fork2 = base;
    let out = ds
        .ds
        .process(now, &alice.remove_request(&[bob.leaf()], now.0), &mut fork2)
        .unwrap();
    accepted(&out);
    alice.confirm_commit();
    assert_eq!(fork1.version(&group_id), fork2.version(&group_id));

    // Bob (who has not seen the removal) sends again, to fork 2.
    let out = ds
        .ds
        .process(now, &bob.message_request(b"two", now.0), &mut fork2)
        .unwrap();
    assert_eq!(
        out.refusal,
        Some(RejectReason::AuthenticationFailed(
            AuthenticationFailed::NoMemberAtLeaf
        )),
        "{out:?}"
    );
}

/// More groups than the cache holds: its estimated bytes never exceed the bound, it evicts,
/// and evicted groups are decoded again and answered as before.
#[test]
fn memory_stays_bounded_with_more_groups_than_the_cache_holds() {
    let mut config = DsConfig::new(DOMAIN);
    config.group_cache_bytes = 48 * 1024;
    let bound = config.group_cache_bytes;
    let mut ds = TestDs::with_config(config);
    let mut groups = Vec::new();
    for g in 0..40 {
        let mut alice = TestClient::new("alice", &format!("alice-{g}"), "a.example");
        let mut others: Vec<TestClient> = (0..4)
            .map(|i| TestClient::new(&format!("user{i}"), &format!("u{i}-{g}"), "b.example"))
            .collect();
        let mut refs: Vec<&mut TestClient> = others.iter_mut().collect();
        ds.create_group_with(&mut alice, &mut refs);
        groups.push((alice, others));
    }
    let environment_off =
        std::env::var(mimi_ds::testing::GROUP_CACHE_MODE_VAR).as_deref() == Ok("off");
    for round in 0..3 {
        for (alice, _) in &mut groups {
            let out = ds.process(&alice.message_request(b"hi", ds.now_ms));
            accepted(&out);
            let stats = ds.ds.group_cache_stats();
            assert!(stats.bytes <= bound, "round {round}: {stats:?}");
        }
    }
    let stats = ds.ds.group_cache_stats();
    if !environment_off {
        assert!(stats.evictions > 0, "{stats:?}");
        assert!(
            stats.entries > 0 && stats.entries < groups.len(),
            "{stats:?}"
        );
    }
}

/// The message's write: the sequencer alone within the granularity, whatever the group's
/// size; the activity record too once the sender's stored time is older than it.
#[test]
fn a_message_writes_the_activity_only_when_the_senders_time_is_stale() {
    let mut sizes = Vec::new();
    for members in [2usize, 30] {
        let mut ds = TestDs::new(DOMAIN);
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let mut others: Vec<TestClient> = (1..members)
            .map(|i| TestClient::new(&format!("user{i}"), &format!("c{i}"), "b.example"))
            .collect();
        let mut refs: Vec<&mut TestClient> = others.iter_mut().collect();
        let group_id = ds.create_group_with(&mut alice, &mut refs);
        let activity = ds.storage.record_bytes(&group_id, RecordKind::Activity);
        // 8 bytes per leaf after a one- or two-byte length.
        assert!(
            (8 * members + 1..=8 * members + 2).contains(&activity),
            "{activity} bytes for {members} members"
        );

        let request = alice.message_request(b"hi", ds.now_ms);
        let DsStep::Read(reads) = ds.ds.start(UnixTimeMs(ds.now_ms), &request).unwrap() else {
            panic!("reads")
        };
        let answers = reads.fetch(&ds.storage).unwrap();
        let step = ds.ds.resume(reads, answers).unwrap();
        let DsStep::Write(write) = step else {
            panic!("a write: {step:?}")
        };
        let kinds: Vec<RecordKind> = write
            .write_set()
            .records
            .iter()
            .map(|r| match r {
                RecordWrite::Put(kind, _) | RecordWrite::Delete(kind) => *kind,
            })
            .collect();
        assert_eq!(kinds, vec![RecordKind::Sequencer], "{members} members");
        let sequencer: usize = write
            .write_set()
            .records
            .iter()
            .map(|r| match r {
                RecordWrite::Put(_, bytes) => bytes.len(),
                RecordWrite::Delete(_) => 0,
            })
            .sum();
        sizes.push(sequencer);
        assert_eq!(
            ds.storage.write(write.write_set()).unwrap(),
            WriteOutcome::Applied
        );

        // An hour later, the sender's time is stale: the activity record is written too.
        ds.advance(HOUR_MS);
        let out = ds.process(&alice.message_request(b"later", ds.now_ms));
        accepted(&out);
        let stored = ds.storage.record_bytes(&group_id, RecordKind::Activity);
        assert_eq!(stored, activity);
    }
    assert_eq!(
        sizes[0], sizes[1],
        "the message's write does not grow with the group"
    );
}

/// A group stored before the activity record existed keeps its times in the sequencer: it
/// takes messages and sweeps as before, and its first message moves the times to their own
/// record.
#[test]
fn a_group_stored_before_the_activity_record_is_migrated_on_read() {
    let mut config = DsConfig::new(DOMAIN);
    config.inactivity_limit_ms = Some(3 * HOUR_MS);
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob, &mut carol]);

    // The layout before: the sequencer's second field holds the times (a u64 sequence number,
    // then the vector), and there is no activity record.
    let snapshot = ds
        .storage
        .read(&group_id, &[RecordKind::Sequencer, RecordKind::Activity])
        .unwrap()
        .unwrap();
    let sequencer = snapshot.record(RecordKind::Sequencer).unwrap();
    let activity = snapshot.record(RecordKind::Activity).unwrap();
    assert_eq!(sequencer[8], 0, "an empty legacy vector");
    let mut legacy = sequencer[..8].to_vec();
    legacy.extend_from_slice(activity);
    // The state tag (the last 16 bytes) did not exist either.
    legacy.extend_from_slice(&sequencer[9..sequencer.len() - 16]);
    ds.overwrite(
        &group_id,
        vec![
            RecordWrite::Put(RecordKind::Sequencer, legacy.clone()),
            RecordWrite::Delete(RecordKind::Activity),
        ],
    );

    // Two hours on, Alice speaks: accepted, and the times move out of the sequencer.
    ds.advance(2 * HOUR_MS);
    let out = ds.process(&alice.message_request(b"hi", ds.now_ms));
    accepted(&out);
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    let snapshot = ds
        .storage
        .read(&group_id, &[RecordKind::Sequencer, RecordKind::Activity])
        .unwrap()
        .unwrap();
    assert_eq!(
        snapshot.record(RecordKind::Activity).map(<[u8]>::len),
        Some(1 + 8 * 3)
    );
    assert_eq!(
        snapshot.record(RecordKind::Sequencer).unwrap()[8],
        0,
        "the legacy times are gone from the sequencer"
    );

    // Back to the legacy layout to sweep from it: Bob and Carol (silent since they joined,
    // by the legacy times) are proposed for removal, Alice is not.
    let now_legacy = {
        let mut bytes = legacy.clone();
        // Alice's time (leaf 0) as she just spoke.
        bytes[9..17].copy_from_slice(&ds.now_ms.to_be_bytes());
        bytes
    };
    ds.overwrite(
        &group_id,
        vec![
            RecordWrite::Put(RecordKind::Sequencer, now_legacy),
            RecordWrite::Delete(RecordKind::Activity),
        ],
    );
    ds.advance(2 * HOUR_MS);
    let out = ds.handle_event(&group_id, &HubEvent::InactivitySweep);
    accepted(&out);
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!("a receipt")
    };
    assert_eq!(receipt.external_proposals.len(), 2);
    assert!(out.fanout.iter().all(|f| f.destination == "a.example"));
}
