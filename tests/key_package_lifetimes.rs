//! KeyPackage lifetimes are judged at the DS's `now`, not at the system clock openmls reads
//! (RFC 9420 §7.2, §10.1; wire-format.md §4.2 step 12, §4.3.3 step 10, §4.10 step 12).
//!
//! Each test gives a real openmls KeyPackage (or group creator's leaf) a lifetime that includes
//! the system clock, so openmls alone would accept it, but not the DS's `now`: the DS must
//! refuse with `key_package_lifetime` and leave storage byte-identical (for `create_group`, an
//! authenticated request, all but the consumed reservation). Before the check, the
//! hub accepted such an Add and then refused the joiner's `welcome_info`, leaving the group
//! with a member that could never join.

use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{DsRequestBody, ErrorCode, ProposalsRequest};
use mimi_ds::{Status, UnixTimeMs};
use openmls::prelude::Lifetime;

const DAY_S: u64 = 24 * 3600;

/// The system clock in seconds: what openmls checks lifetimes against.
fn system_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Alice and Bob in a group on a DS whose clock starts at `now_ms`.
fn alice_and_bob_at(now_ms: u64) -> (TestDs, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example");
    ds.now_ms = now_ms;
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

#[test]
fn an_add_whose_key_package_expired_at_now_is_refused() {
    let now_s = system_s();
    let (mut ds, mut alice, _bob) = alice_and_bob_at(now_s * 1000);
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    let lifetime = Lifetime::init(now_s - 3600, now_s + DAY_S);
    let key_package = carol.key_package_with_lifetime(lifetime);

    // The DS's clock has passed not_after; the system clock has not.
    ds.now_ms = (now_s + DAY_S) * 1000 + 1;
    let request = alice.add_request(vec![key_package.clone()], ds.now_ms);
    // At the last millisecond of the lifetime the same request is accepted.
    let mut at_end = ds.storage.clone();
    let out = ds
        .ds
        .process(UnixTimeMs((now_s + DAY_S) * 1000), &request, &mut at_end)
        .unwrap();
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    ds.reject(&request, ErrorCode::KeyPackageLifetime);
    alice.discard_commit();
}

#[test]
fn an_add_whose_key_package_is_not_yet_valid_at_now_is_refused() {
    let now_s = system_s();
    let (mut ds, mut alice, _bob) = alice_and_bob_at((now_s - 3600) * 1000);
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    // Valid from a minute ago by the system clock; the DS's clock is an hour behind.
    let key_package = carol.key_package_with_lifetime(Lifetime::init(now_s - 60, now_s + DAY_S));
    let request = alice.add_request(vec![key_package], ds.now_ms);
    ds.reject(&request, ErrorCode::KeyPackageLifetime);
    alice.discard_commit();
}

#[test]
fn a_proposed_add_whose_key_package_is_not_yet_valid_at_now_is_refused() {
    let now_s = system_s();
    let (mut ds, _alice, mut bob) = alice_and_bob_at((now_s - 3600) * 1000);
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    let key_package = carol.key_package_with_lifetime(Lifetime::init(now_s - 60, now_s + DAY_S));
    let provider = &bob.provider;
    let (message, _) = bob
        .group
        .as_mut()
        .unwrap()
        .propose_add_member(provider, &bob.signer, &key_package)
        .unwrap();
    let request = bob.signed(
        DsRequestBody::Proposals(ProposalsRequest {
            proposals: vec![mimi_ds::testing::mls_bytes(&message)],
        }),
        ds.now_ms,
    );
    ds.reject(&request, ErrorCode::KeyPackageLifetime);
}

#[test]
fn a_commit_including_a_pending_add_that_expired_since_is_refused() {
    let now_s = system_s();
    let (mut ds, mut alice, mut bob) = alice_and_bob_at(now_s * 1000);
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    let key_package = carol.key_package_with_lifetime(Lifetime::init(now_s - 3600, now_s + DAY_S));

    // Bob proposes adding Carol while her KeyPackage is valid; Alice stores the proposal.
    let provider = &bob.provider;
    let (message, _) = bob
        .group
        .as_mut()
        .unwrap()
        .propose_add_member(provider, &bob.signer, &key_package)
        .unwrap();
    let out = ds.process(&bob.signed(
        DsRequestBody::Proposals(ProposalsRequest {
            proposals: vec![mimi_ds::testing::mls_bytes(&message)],
        }),
        ds.now_ms,
    ));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);

    // A day later (by the DS's clock) Alice commits it by reference.
    ds.now_ms = (now_s + DAY_S) * 1000 + 1;
    let (update, welcome) = alice.stage_commit(|b| b.force_self_update(true));
    assert!(welcome.is_some(), "the commit adds Carol");
    let request = alice.signed(
        DsRequestBody::Commits(mimi_ds::wire::MembershipCommitRequest {
            group_update: update,
            welcome_messages: welcome.into_iter().collect(),
        }),
        ds.now_ms,
    );
    ds.reject(&request, ErrorCode::KeyPackageLifetime);
}

#[test]
fn create_group_refuses_a_creator_leaf_expired_at_now() {
    let mut ds = TestDs::new("hub.example");
    let lifetime = TestClient::lifetime();
    // The DS's clock is past the creator leaf's not_after (the harness lifetime ends 84 days
    // after the later of START_MS and the system clock).
    ds.now_ms = lifetime.not_after() * 1000 + 1;
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(ds.now_ms);
    // The request is authenticated, so its refusal consumes the reservation and writes
    // nothing else (wire-format.md §4.2).
    ds.reject_consuming_reservation(&request, ErrorCode::KeyPackageLifetime);
}
