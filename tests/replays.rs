//! Replayed application messages (wire-format.md §4.8) and the replay-mark expiry boundary
//! (wire-format.md §3.4; the storage contract in `mimi_ds::storage`), with real openmls clients.
//!
//! * An accepted application message resubmitted in a new request is `replayed_message`,
//!   whoever signs it; the DS remembers the last `app_message_replay_memory` messages of the
//!   epochs that still take application messages, so the record it reads stays bounded.
//! * Without that check a replay is fanned out again and the recipients' openmls refuses it
//!   (the generation's key is already used), which is what the check saves them from.
//! * A backend that treats a replay mark's `expires_at_ms` as exclusive still never lets the
//!   same request bytes through twice (`exclusive_expiry_backend_never_accepts_a_request_twice`).

use mimi_ds::storage::{
    DsStorage, GroupSnapshot, InMemoryStorage, RecordKind, ReplayMark, WriteOutcome, WriteSet,
};
use mimi_ds::testing::{assert_unchanged, decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{
    decode_exact, ClientQueueConfig, DsRequest, DsRequestBody, ErrorCode, MlsMessageBytes,
    SendMessageRequest,
};
use mimi_ds::{DsConfig, Status, UnixTimeMs};
use openmls::prelude::{MlsMessageBodyIn, ProtocolMessage};
use tls_codec::{DeserializeBytes as _, Serialize as _, VLBytes};

/// Alice (leaf 0) and Bob (leaf 1) in one group, all messages delivered.
fn pair(config: DsConfig) -> (TestDs, TestClient, TestClient) {
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

fn config() -> DsConfig {
    DsConfig::new("hub.example")
}

fn body_of(request: &[u8]) -> DsRequestBody {
    decode_exact::<DsRequest>(request).unwrap().body
}

fn sequencer_bytes(ds: &TestDs, client: &TestClient) -> usize {
    ds.storage
        .record_bytes(&client.group_id(), RecordKind::Sequencer)
}

/// The regression of the issue: Alice's message resubmitted by Bob (signed by himself) and by
/// Alice (fresh timestamp) is refused both times; Bob decrypts the original once.
#[test]
fn a_resubmitted_application_message_is_refused_whoever_signs_it() {
    let (mut ds, mut alice, mut bob) = pair(config());
    let original = alice.message_request(b"once", ds.now_ms);
    let out = ds.accept(&original);
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"once".to_vec())]
    );
    for _ in 0..3 {
        ds.advance(1_000);
        ds.reject(
            &bob.signed(body_of(&original), ds.now_ms),
            ErrorCode::ReplayedMessage,
        );
        ds.reject(
            &alice.signed(body_of(&original), ds.now_ms),
            ErrorCode::ReplayedMessage,
        );
    }
    // Later messages still flow.
    let next = alice.message_request(b"twice", ds.now_ms);
    let out = ds.accept(&next);
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"twice".to_vec())]
    );
}

/// What the check prevents: with it turned off, the replay gets a second sequence number and
/// fanout, and Bob's openmls refuses the second copy.
#[test]
fn without_the_check_recipients_fail_on_the_replay() {
    let mut config = config();
    config.app_message_replay_memory = 0;
    let (mut ds, mut alice, mut bob) = pair(config);
    let original = alice.message_request(b"once", ds.now_ms);
    let first = ds.accept(&original);
    ds.advance(1_000);
    let second = ds.accept(&bob.signed(body_of(&original), ds.now_ms));
    TestDs::route(&first, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"once".to_vec())]
    );
    let [fanout] = second.fanout.as_slice() else {
        panic!("one fanout to Alice")
    };
    // Alice is the recipient of Bob's replay; she sent the message, so feed it to Bob instead
    // (the same bytes reach every other member).
    let MlsMessageBodyIn::PrivateMessage(message) =
        fanout.request.message.message.parse().unwrap().extract()
    else {
        panic!("a PrivateMessage")
    };
    let provider = &bob.provider;
    let result = bob
        .group
        .as_mut()
        .unwrap()
        .process_message(provider, ProtocolMessage::from(message));
    assert!(result.is_err(), "openmls refuses a reused generation");
}

/// The framing around the ciphertext is not part of a message's identity: a resubmission with
/// another `encrypted_sender_data` around the accepted ciphertext is still a replay.
#[test]
fn changing_the_cleartext_framing_does_not_make_a_message_new() {
    let (mut ds, mut alice, bob) = pair(config());
    let original = alice.message_request(b"once", ds.now_ms);
    let _ = ds.accept(&original);
    let DsRequestBody::SendMessage(body) = body_of(&original) else {
        panic!("send_message")
    };
    let mut fields =
        PrivateMessageFields::tls_deserialize_exact_bytes(body.application_message.as_bytes())
            .expect("a PrivateMessage");
    let mut sender_data = fields.encrypted_sender_data.as_slice().to_vec();
    sender_data[0] ^= 0x01;
    fields.encrypted_sender_data = sender_data.into();
    let forged = MlsMessageBytes::from_bytes(fields.tls_serialize_detached().unwrap()).unwrap();
    assert_ne!(forged, body.application_message);
    ds.advance(1);
    ds.reject(
        &bob.signed(
            DsRequestBody::SendMessage(SendMessageRequest {
                application_message: forged,
            }),
            ds.now_ms,
        ),
        ErrorCode::ReplayedMessage,
    );
}

/// RFC 9420 §6.3 `MLSMessage` holding a `PrivateMessage`, field by field, to forge variants.
#[derive(tls_codec::TlsDeserializeBytes, tls_codec::TlsSerialize, tls_codec::TlsSize)]
struct PrivateMessageFields {
    version: u16,
    wire_format: u16,
    group_id: VLBytes,
    epoch: u64,
    content_type: u8,
    authenticated_data: VLBytes,
    encrypted_sender_data: VLBytes,
    ciphertext: VLBytes,
}

/// The bound (wire-format.md §4.8): the sequencer keeps at most `app_message_replay_memory`
/// digests, so its size stops growing; a message pushed out of the memory is accepted again
/// (the documented false negative: recipients' openmls refuses it then).
#[test]
fn the_memory_is_bounded_by_count() {
    let mut config = config();
    config.app_message_replay_memory = 3;
    let (mut ds, mut alice, _bob) = pair(config);
    let first = alice.message_request(b"0", ds.now_ms);
    let _ = ds.accept(&first);
    let mut sizes = Vec::new();
    for i in 1..6u8 {
        ds.advance(1);
        let _ = ds.accept(&alice.message_request(&[i], ds.now_ms));
        sizes.push(sequencer_bytes(&ds, &alice));
        if i < 3 {
            ds.advance(1);
            ds.reject(
                &alice.signed(body_of(&first), ds.now_ms),
                ErrorCode::ReplayedMessage,
            );
        }
    }
    assert!(
        sizes[2..].iter().all(|s| *s == sizes[1]),
        "the record stops growing at the bound: {sizes:?}"
    );
    ds.advance(1);
    let _ = ds.accept(&alice.signed(body_of(&first), ds.now_ms));
}

/// Messages of epochs that no longer take application messages are forgotten at the next commit
/// (they are `wrong_epoch` anyway); with an epoch tolerance they are kept and still refused.
#[test]
fn the_memory_follows_the_epoch_tolerance() {
    for tolerance in [0, 1] {
        let mut config = config();
        config.app_message_epoch_tolerance = tolerance;
        let (mut ds, mut alice, mut bob) = pair(config);
        let empty = sequencer_bytes(&ds, &alice);
        let message = alice.message_request(b"old", ds.now_ms);
        let _ = ds.accept(&message);
        assert!(sequencer_bytes(&ds, &alice) > empty);
        let commit = ds.accept(&alice.update_request(ds.now_ms));
        alice.confirm_commit();
        TestDs::route(&commit, &mut [&mut bob]);
        let _ = bob.process_inbox();
        ds.advance(1);
        let replay = bob.signed(body_of(&message), ds.now_ms);
        if tolerance == 0 {
            assert_eq!(
                sequencer_bytes(&ds, &alice),
                empty,
                "forgotten at the commit"
            );
            ds.reject(&replay, ErrorCode::WrongEpoch);
        } else {
            ds.reject(&replay, ErrorCode::ReplayedMessage);
        }
    }
}

/// A backend that gets the expiry boundary wrong: a mark is dropped one ms early, i.e. it is
/// live only while `now < expires_at_ms` (the contract says `now <= expires_at_ms`). Built on
/// [`InMemoryStorage`] by storing every mark one ms earlier and reporting it as written.
#[derive(Clone, PartialEq)]
struct ExclusiveExpiry(InMemoryStorage);

impl DsStorage for ExclusiveExpiry {
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
        Ok(self.0.replay_mark(group_id, key, now_ms)?.map(|mut mark| {
            mark.expires_at_ms += 1;
            mark
        }))
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error> {
        let mut early = write_set.clone();
        if let Some((_, mark)) = &mut early.replay_mark {
            mark.expires_at_ms -= 1;
        }
        self.0.write(&early)
    }
}

/// wire-format.md §3.4: whatever instant the same bytes come back at around the end of the
/// window, a backend with an exclusive expiry repeats the answer or refuses, and never accepts
/// the request a second time: a state change (`update_queue_info`, answered `Duplicate`) and a
/// signed read (`group_info`, `replayed_request`), until `stale_timestamp` takes over.
#[test]
fn exclusive_expiry_backend_never_accepts_a_request_twice() {
    let (ds, mut alice, _bob) = pair(config());
    let window = ds.ds.config().auth_window_ms;
    let signed_at = ds.now_ms;
    let requests = [
        alice.update_queue_request(
            ClientQueueConfig {
                provider_domain: b"a2.example".to_vec().into(),
                queue: b"q2".to_vec().into(),
            },
            signed_at,
        ),
        alice.signed(
            DsRequestBody::GroupInfo(mimi_ds::wire::GroupInfoRequest {
                group_id: alice.group_id().into(),
                encryption_key: None,
            }),
            signed_at,
        ),
    ];
    let mut storage = ExclusiveExpiry(ds.storage.clone());
    for request in &requests {
        let first = ds
            .ds
            .process(UnixTimeMs(signed_at), request, &mut storage)
            .unwrap();
        assert_eq!(first.status, Status::Accepted);
    }
    let last_fresh_instant = signed_at + window;
    for now in last_fresh_instant - 3..=last_fresh_instant + 3 {
        for request in &requests {
            // Nothing is written again.
            let again = assert_unchanged(&mut storage.clone(), |at_now| {
                ds.ds.process(UnixTimeMs(now), request, at_now).unwrap()
            });
            assert!(
                matches!(
                    again.status,
                    Status::Duplicate
                        | Status::Rejected(ErrorCode::ReplayedRequest)
                        | Status::Rejected(ErrorCode::StaleTimestamp)
                ),
                "at window end {:+} ms: {:?} {:?}",
                now as i64 - last_fresh_instant as i64,
                again.status,
                decode_response(&again.response).body
            );
            assert!(again.fanout.is_empty());
            if now > last_fresh_instant {
                assert_eq!(again.status, Status::Rejected(ErrorCode::StaleTimestamp));
            }
        }
    }
}
