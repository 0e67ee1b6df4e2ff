//! Two handles racing real commits on one group through a [`DeliveryService`]: exactly one
//! wins, and the loser is validated again against the winner's state and refused with
//! `wrong_epoch` (issue: "two connections racing commits on the same group").

use std::sync::Barrier;

use openmls_rust_crypto::RustCrypto;

use super::{ok, NOW};
use crate::storage::{DsOutbox, DsStorage, WriteOutcome};
use crate::testing::{decode_response, ds_identity, Received, TestClient, TestDs};
use crate::wire::PROTOCOL_VERSION_MIMI_DS10;
use crate::wire::{encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ErrorCode};
use crate::{
    BasicCredentialValidator, DeliveryService, DsConfig, DsStep, Outcome, RejectReason, Status,
    UnixTimeMs,
};

/// A DS that accepts basic credentials, and Alice and Bob in one group on `storage` (the
/// outbox drained).
fn alice_and_bob<S: DsStorage + DsOutbox>(
    storage: &mut S,
) -> (DeliveryService, TestClient, TestClient) {
    let config = DsConfig::new("hub.example");
    let (identity, external_sender) = ds_identity(&config.domain);
    let ds = DeliveryService::new(config, identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    let now = UnixTimeMs(NOW);
    let mut alice = TestClient::new("alice", "a1", "alice.example");
    let mut bob = TestClient::new("bob", "b1", "bob.example");
    let request_group_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode");
    let process = |storage: &mut S, request: &[u8]| -> Outcome {
        let outcome = ds.process(now, request, storage).expect("storage works");
        assert_eq!(outcome.status, Status::Accepted, "setup");
        outcome
    };
    let DsResponseBody::GroupId(group_id) =
        decode_response(&process(storage, &request_group_id).response).body
    else {
        panic!("no group ID")
    };
    alice.create_group(group_id.as_slice(), &external_sender);
    let _created = process(storage, &alice.create_group_request(NOW));
    let add = process(storage, &alice.add_request(vec![bob.key_package()], NOW));
    alice.confirm_commit();
    TestDs::route(&add, &mut [&mut bob]);
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("bob got no Welcome");
    };
    let (request, processed) = bob.welcome_info_request(&welcome, NOW);
    let DsResponseBody::WelcomeInfo(info) =
        decode_response(&process(storage, &request).response).body
    else {
        panic!("no welcome info");
    };
    bob.join_with_tree(processed, &info.ratchet_tree);
    for entry in ok(storage.pending(u64::MAX, usize::MAX), "pending") {
        assert!(ok(storage.mark_delivered(entry.id), "mark_delivered"));
    }
    (ds, alice, bob)
}

fn refused_with_wrong_epoch(outcome: &Outcome, what: &str) {
    assert_eq!(
        outcome.status,
        Status::Rejected(ErrorCode::WrongEpoch),
        "{what}: {:?}",
        decode_response(&outcome.response)
    );
    assert!(
        matches!(outcome.refusal, Some(RejectReason::WrongEpoch { .. })),
        "{what}: {:?}",
        outcome.refusal
    );
}

/// Alice and Bob commit in the same epoch, on two handles.
///
/// 1. Interleaved by hand through the step API, so the race is certain: both read on their
///    own handle before either writes; Alice's write applies, Bob's conflicts, and
///    [`DeliveryService::retry`] reads again on Bob's handle and refuses with `wrong_epoch`.
///    The outbox holds Alice's commit only.
/// 2. Through [`DeliveryService::process`] on two threads released together: exactly one
///    commit is accepted, the other is refused with `wrong_epoch`, whichever order the
///    database puts them in.
pub fn racing_commits<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let now = UnixTimeMs(NOW);
    let mut alice_handle = open();
    let (ds, mut alice, mut bob) = alice_and_bob(&mut alice_handle);
    let mut bob_handle = open();

    let alice_update = alice.update_request(NOW);
    let bob_update = bob.update_request(NOW);
    fn write_of<'r, S: DsStorage>(
        ds: &DeliveryService,
        step: DsStep<'r>,
        handle: &S,
    ) -> crate::DsWrite<'r> {
        let DsStep::Read(reads) = step else {
            panic!("a commit reads first")
        };
        let answers = ok(reads.fetch(handle), "fetch");
        match ds.resume(reads, answers).expect("resume") {
            DsStep::Write(write) => write,
            other => panic!("one read round, then the write: {other:?}"),
        }
    }
    let alice_write = write_of(
        &ds,
        ds.start(now, &alice_update).expect("start"),
        &alice_handle,
    );
    let bob_write = write_of(&ds, ds.start(now, &bob_update).expect("start"), &bob_handle);

    assert_eq!(
        ok(alice_handle.write(alice_write.write_set()), "alice's write"),
        WriteOutcome::Applied
    );
    let alice_outcome = alice_write.applied();
    assert_eq!(
        ok(bob_handle.write(bob_write.write_set()), "bob's write"),
        WriteOutcome::Conflict,
        "the guard holds on the second handle"
    );
    let DsStep::Read(again) = ds.retry(bob_write).expect("retry") else {
        panic!("a retry reads again")
    };
    let answers = ok(again.fetch(&bob_handle), "fetch again");
    let DsStep::Done(bob_outcome) = ds.resume(again, answers).expect("resume") else {
        panic!("the loser is refused without writing")
    };
    refused_with_wrong_epoch(&bob_outcome, "the loser, validated again");
    let pending = ok(bob_handle.pending(u64::MAX, usize::MAX), "pending");
    let stored: Vec<_> = pending
        .iter()
        .map(|entry| entry.fanout().expect("decodes"))
        .collect();
    assert_eq!(stored, alice_outcome.fanout, "only the winner's fanout");
    for entry in pending {
        assert!(ok(bob_handle.mark_delivered(entry.id), "mark_delivered"));
    }
    alice.confirm_commit();
    bob.discard_commit();
    TestDs::route(&alice_outcome, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: alice.epoch(),
            removed: false
        }]
    );

    // The same race through `process`, on two threads.
    let requests = [alice.update_request(NOW), bob.update_request(NOW)];
    let barrier = Barrier::new(2);
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let threads: Vec<_> = requests
            .iter()
            .map(|request| {
                let (ds, barrier) = (&ds, &barrier);
                scope.spawn(move || {
                    let mut handle = open();
                    barrier.wait();
                    ds.process(now, request, &mut handle)
                        .expect("storage works")
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect()
    });
    let accepted = outcomes
        .iter()
        .filter(|o| o.status == Status::Accepted)
        .count();
    assert_eq!(accepted, 1, "exactly one winner: {outcomes:?}");
    let loser = outcomes
        .iter()
        .find(|o| o.status != Status::Accepted)
        .expect("a loser");
    refused_with_wrong_epoch(loser, "the loser of the threaded race");
}
