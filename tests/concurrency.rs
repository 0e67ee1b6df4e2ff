//! Ordering under contention (docs/decisions.md D20): of two commits for the same epoch
//! exactly one wins, also when the storage write races; the loser gets `wrong_epoch` with the
//! current epoch, nothing half-written and no fanout, and succeeds after processing the winner.

use mimi_ds::storage::{
    DsStorage, GroupSnapshot, InMemoryStorage, RecordKind, ReplayMark, WriteOutcome, WriteSet,
};
use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{DsErrorDetails, DsResponseBody, ErrorCode};
use mimi_ds::{DeliveryService, Status, UnixTimeMs};

/// Alice and Bob in one group at epoch 1, all messages delivered.
fn two_member_group() -> (TestDs, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

fn assert_wrong_epoch(outcome: &mimi_ds::Outcome, current: u64) {
    assert_eq!(outcome.status, Status::Rejected(ErrorCode::WrongEpoch));
    assert!(outcome.fanout.is_empty());
    match decode_response(&outcome.response).body {
        DsResponseBody::Error(e) => assert_eq!(e.details, DsErrorDetails::CurrentEpoch(current)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sequential_commits_for_one_epoch_have_one_winner() {
    let (mut ds, mut alice, mut bob) = two_member_group();
    let from_alice = alice.update_request(ds.now_ms);
    let from_bob = bob.update_request(ds.now_ms);

    let won = ds.process(&from_bob);
    assert_eq!(won.status, Status::Accepted);
    bob.confirm_commit();
    let before = ds.storage.clone();
    let lost = ds.process(&from_alice);
    assert_wrong_epoch(&lost, 2);
    assert_eq!(ds.storage, before, "a lost race changes nothing");

    // The loser processes the winner's commit, then commits again at the new epoch.
    alice.discard_commit();
    TestDs::route(&won, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
    let retry = ds.process(&alice.update_request(ds.now_ms));
    assert_eq!(retry.status, Status::Accepted);
    alice.confirm_commit();
    TestDs::route(&retry, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: 3,
            removed: false
        }]
    );
}

/// A backend whose first write loses a race: another request is processed (by another DS
/// instance sharing the storage) between this request's read phase and its write.
struct RacingStorage<'a> {
    inner: InMemoryStorage,
    interloper: Option<(&'a DeliveryService, u64, Vec<u8>)>,
    conflicts: usize,
}

impl DsStorage for RacingStorage<'_> {
    type Error = <InMemoryStorage as DsStorage>::Error;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Self::Error> {
        self.inner.read(group_id, kinds)
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error> {
        self.inner.replay_mark(group_id, key, now_ms)
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error> {
        if let Some((ds, now, request)) = self.interloper.take() {
            let out = ds
                .process(UnixTimeMs(now), &request, &mut self.inner)
                .expect("infallible");
            assert_eq!(
                out.status,
                Status::Accepted,
                "the interloper's commit goes through"
            );
        }
        let outcome = self.inner.write(write_set)?;
        if outcome == WriteOutcome::Conflict {
            self.conflicts += 1;
        }
        Ok(outcome)
    }
}

#[test]
fn a_write_that_loses_the_race_is_revalidated_and_refused() {
    let (ds, mut alice, mut bob) = two_member_group();
    let from_alice = alice.update_request(ds.now_ms);
    let from_bob = bob.update_request(ds.now_ms);

    // What storage looks like if only Bob's commit is applied.
    let mut bob_only = ds.storage.clone();
    let expected = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), &from_bob, &mut bob_only)
        .expect("infallible");
    assert_eq!(expected.status, Status::Accepted);

    let mut racing = RacingStorage {
        inner: ds.storage.clone(),
        interloper: Some((&ds.ds, ds.now_ms, from_bob.clone())),
        conflicts: 0,
    };
    let outcome = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), &from_alice, &mut racing)
        .expect("infallible");
    assert_eq!(racing.conflicts, 1, "Alice's first write conflicted");
    // On the re-read, Alice's commit is for an epoch that is gone.
    assert_wrong_epoch(&outcome, 2);
    assert_eq!(
        racing.inner, bob_only,
        "exactly Bob's commit is stored, nothing of Alice's"
    );
}

/// A backend that always reports a conflict: `process` gives up after the configured retries.
struct AlwaysConflicting(InMemoryStorage, usize);

impl DsStorage for AlwaysConflicting {
    type Error = <InMemoryStorage as DsStorage>::Error;
    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Self::Error> {
        self.0.read(group_id, kinds)
    }
    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error> {
        self.0.replay_mark(group_id, key, now_ms)
    }
    fn write(&mut self, _: &WriteSet) -> Result<WriteOutcome, Self::Error> {
        self.1 += 1;
        Ok(WriteOutcome::Conflict)
    }
}

#[test]
fn persistent_conflicts_end_in_a_conflict_answer_without_fanout() {
    let (ds, mut alice, _bob) = two_member_group();
    let request = alice.message_request(b"hello", ds.now_ms);
    let mut storage = AlwaysConflicting(ds.storage.clone(), 0);
    let outcome = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), &request, &mut storage)
        .expect("infallible");
    assert_eq!(outcome.status, Status::Rejected(ErrorCode::Conflict));
    assert!(outcome.fanout.is_empty());
    assert_eq!(storage.1, ds.ds.config().max_conflict_retries as usize + 1);
    assert_eq!(storage.0, ds.storage);
}
