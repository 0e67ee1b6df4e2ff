//! Ordering under contention (docs/decisions.md D20): of two commits for the same epoch
//! exactly one wins, also when the storage write races; the loser gets `wrong_epoch` with the
//! current epoch, nothing half-written and no fanout, and succeeds after processing the winner.

use mimi_ds::testing::{assert_rejected, Fault, Received, RecordingStorage, TestClient, TestDs};
use mimi_ds::wire::{DsErrorDetails, ErrorCode};
use mimi_ds::{Status, UnixTimeMs};

/// Alice and Bob in one group at epoch 1, all messages delivered.
fn two_member_group() -> (TestDs, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

fn assert_wrong_epoch(outcome: &mimi_ds::Outcome, current: u64) {
    let error = assert_rejected(outcome, ErrorCode::WrongEpoch);
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(current));
}

#[test]
fn sequential_commits_for_one_epoch_have_one_winner() {
    let (mut ds, mut alice, mut bob) = two_member_group();
    let from_alice = alice.update_request(ds.now_ms);
    let from_bob = bob.update_request(ds.now_ms);

    let won = ds.process(&from_bob);
    assert_eq!(won.status, Status::Accepted);
    bob.confirm_commit();
    // A lost race changes nothing.
    let error = ds.reject_error(&from_alice, ErrorCode::WrongEpoch);
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(2));

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

    // A backend whose first write loses a race: another request is processed (by another DS
    // instance sharing the storage) between this request's read phase and its write.
    let mut racing =
        RecordingStorage::new(ds.storage.clone()).with_rival_before_first_write(|inner| {
            let out = ds
                .ds
                .process(UnixTimeMs(ds.now_ms), &from_bob, inner)
                .expect("infallible");
            assert_eq!(
                out.status,
                Status::Accepted,
                "the interloper's commit goes through"
            );
        });
    let outcome = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), &from_alice, &mut racing)
        .expect("infallible");
    assert_eq!(racing.conflicts(), 1, "Alice's first write conflicted");
    // On the re-read, Alice's commit is for an epoch that is gone.
    assert_wrong_epoch(&outcome, 2);
    assert_eq!(
        racing.inner, bob_only,
        "exactly Bob's commit is stored, nothing of Alice's"
    );
}

#[test]
fn persistent_conflicts_end_in_a_conflict_answer_without_fanout() {
    let (ds, mut alice, _bob) = two_member_group();
    let request = alice.message_request(b"hello", ds.now_ms);
    // A backend that always reports a conflict: `process` gives up after the configured retries.
    let mut storage = RecordingStorage::new(ds.storage.clone()).with_fault(Fault::ConflictFrom(1));
    let outcome = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), &request, &mut storage)
        .expect("infallible");
    assert_eq!(outcome.status, Status::Rejected(ErrorCode::Conflict));
    assert!(outcome.fanout.is_empty());
    assert_eq!(
        storage.writes().len(),
        ds.ds.config().max_conflict_retries as usize + 1
    );
    assert_eq!(storage.inner, ds.storage);
}
