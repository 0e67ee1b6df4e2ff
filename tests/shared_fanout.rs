//! An application message's fanout refers to the per-provider recipient lists the group cache
//! prepared once per roster version, and shares the message's bytes between its deliveries
//! (issue 14; wire-format.md §16.2): the work per message does not grow with the group.
//!
//! These tests look at sharing through the public API ([`Recipients::shares_queues_with`], the
//! address of the message bytes), so they fail if a message's fanout copies a list again.

use mimi_ds::storage::{DsOutbox, InMemoryStorage};
use mimi_ds::testing::{ds_identity_with_keys, TestClient, TestDs};
use mimi_ds::wire::Recipients;
use mimi_ds::{BasicCredentialValidator, DeliveryService, DsConfig, Fanout, Outcome, Status};
use openmls::prelude::SignatureScheme;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;

const DOMAIN: &str = "hub.example";

/// A harness DS whose group cache is on whatever `MIMI_DS_TEST_GROUP_CACHE` says (sharing is
/// what the cache provides; with it off every message prepares its lists anew), over `storage`.
fn ds_with_cache_on(storage: InMemoryStorage) -> TestDs {
    let keys = SignatureKeyPair::new(SignatureScheme::ED25519).expect("keys");
    let copy =
        serde_json::from_value(serde_json::to_value(&keys).expect("encodes")).expect("decodes");
    let (identity, sender) = ds_identity_with_keys(DOMAIN, keys);
    let mut ds = TestDs::with_crypto(
        DsConfig::new(DOMAIN),
        identity,
        sender,
        RustCrypto::default(),
    );
    let (identity, _) = ds_identity_with_keys(DOMAIN, copy);
    ds.ds = DeliveryService::new(DsConfig::new(DOMAIN), identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    ds.storage = storage;
    ds
}

fn accepted(out: &Outcome) {
    assert_eq!(out.status, Status::Accepted, "{:?}", out.refusal);
}

/// The recipients of the delivery to `provider`.
fn to<'a>(out: &'a Outcome, provider: &str) -> &'a Recipients {
    let fanout: Vec<&Fanout> = out
        .fanout
        .iter()
        .filter(|f| f.destination == provider)
        .collect();
    let [fanout] = fanout.as_slice() else {
        panic!("one delivery to {provider}: {:?}", out.fanout)
    };
    &fanout.request.recipients
}

fn queues(clients: &[&TestClient]) -> Recipients {
    clients.iter().map(|c| c.queue.queue.clone()).collect()
}

#[test]
fn consecutive_messages_share_the_prepared_recipient_lists() {
    let mut ds = ds_with_cache_on(InMemoryStorage::with_outbox());
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "b.example");
    let mut dave = TestClient::new("dave", "dave-1", "b.example");
    let mut erin = TestClient::new("erin", "erin-1", "e.example");
    ds.create_group_with(
        &mut alice,
        &mut [&mut bob, &mut carol, &mut dave, &mut erin],
    );
    let stats = ds.ds.group_cache_stats();

    // The first message decodes the group and prepares its lists; the next ones hit.
    let first = ds.process(&alice.message_request(b"one", ds.now_ms));
    accepted(&first);
    let second = ds.process(&alice.message_request(b"two", ds.now_ms));
    accepted(&second);
    // Carol is at b.example herself: her delivery there leaves her out of the same list.
    let from_carol = ds.process(&carol.message_request(b"three", ds.now_ms));
    accepted(&from_carol);
    assert!(
        ds.ds.group_cache_stats().hits >= stats.hits + 2,
        "the messages hit"
    );

    assert_eq!(*to(&first, "b.example"), queues(&[&bob, &carol, &dave]));
    assert_eq!(*to(&from_carol, "b.example"), queues(&[&bob, &dave]));
    assert_eq!(*to(&from_carol, "a.example"), queues(&[&alice]));
    for (provider, message) in [
        ("b.example", &second),
        ("e.example", &second),
        ("b.example", &from_carol),
        ("e.example", &from_carol),
    ] {
        assert!(
            to(message, provider).shares_queues_with(to(&first, provider)),
            "{provider}: the message's recipients are the list prepared for the roster"
        );
    }

    // One message's deliveries hold its bytes once.
    let bytes: Vec<*const u8> = (second.fanout.iter())
        .map(|f| f.request.message.message.as_bytes().as_ptr())
        .collect();
    assert_eq!(bytes.len(), 2);
    assert_eq!(bytes[0], bytes[1], "the message's bytes are shared");

    // The outbox holds the same deliveries, encoded as they always were.
    let pending = ds.storage.pending(ds.now_ms, 100).expect("memory");
    let stored: Vec<Fanout> = (pending.iter())
        .map(|entry| entry.fanout().expect("decodes"))
        .collect();
    let expected: Vec<Fanout> = [&first, &second, &from_carol]
        .into_iter()
        .flat_map(|out| out.fanout.iter().cloned())
        .collect();
    assert!(
        stored.ends_with(&expected),
        "the messages' outbox entries are their fanout"
    );
    for (entry, fanout) in pending.iter().rev().zip(expected.iter().rev()) {
        assert_eq!(entry.request, fanout.to_bytes());
    }
}

#[test]
fn a_new_roster_gets_new_lists() {
    let mut ds = ds_with_cache_on(InMemoryStorage::new());
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let before = ds.process(&alice.message_request(b"one", ds.now_ms));
    accepted(&before);

    let out = ds.process(&alice.add_request(vec![carol.key_package()], ds.now_ms));
    accepted(&out);
    alice.confirm_commit();

    let after = ds.process(&alice.message_request(b"two", ds.now_ms));
    accepted(&after);
    assert_eq!(*to(&after, "b.example"), queues(&[&bob, &carol]));
    assert!(
        !to(&after, "b.example").shares_queues_with(to(&before, "b.example")),
        "a roster change prepares its own list"
    );
    let again = ds.process(&alice.message_request(b"three", ds.now_ms));
    accepted(&again);
    assert!(to(&again, "b.example").shares_queues_with(to(&after, "b.example")));
}
