//! The storage conformance checks of a provider's connection keys and inboxes
//! ([`ConnectionStore`], wire-format.md §14.3.2-§14.3.3), run on
//! [`crate::connection::InMemoryConnectionStore`] (tests/storage_conformance.rs), on SQLite
//! and on PostgreSQL (the backends' tests), with
//! [`crate::connection_storage_conformance_tests!`]:
//!
//! - [`connection_keys_and_inboxes`]: a publication is read back byte for byte and creates
//!   its inbox; a later one replaces the key and keeps the inbox and its requests;
//! - [`connection_enqueue_guard`]: an `Enqueue` applies only with the inbox's next sequence
//!   number and to an inbox that exists; a refused one changes nothing; reads page in order;
//!   an acknowledgement drops what is below it, and only that;
//! - [`connection_marks_expire`]: a replay mark is live while `now <= expires_at_ms`, and a
//!   write after its expiry may drop it;
//! - [`connection_attacker_sized`]: long binary names and the largest sealed requests a
//!   provider takes are stored and read back byte for byte;
//!
//! and, given a database factory (each call opens one more handle on one database), with
//! [`crate::connection_storage_durable_tests!`]:
//!
//! - [`connection_replays_refused_across_handles`]: real openmls clients' sealed connection
//!   requests through a [`ConnectionProvider`]: a request delivered on one handle is refused
//!   as `replayed_message` on a handle opened afterwards, also inside a fresh inbox address,
//!   and the refusal changes nothing; after the replay window it is taken again;
//! - [`connection_racing_handles`]: two handles on two threads enqueue with the same sequence
//!   number, exactly one is applied.

use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::types::HashType;

use crate::connection::{
    seal_connection_request, ConnectionChange, ConnectionConfig, ConnectionEstablishmentKey,
    ConnectionKeyBundle, ConnectionKeyRecord, ConnectionProvider, ConnectionRefusal,
    ConnectionRequestDelivery, ConnectionStore, RequestContents, StoredConnectionRequest,
};
use crate::qs::QsStatus;
use crate::testing::connection::RealIdentity;
use crate::testing::{CIPHERSUITE, START_MS};
use crate::wire::{encode, ErrorCode, HpkeCiphertext};
use crate::{QsRejectReason, UnixTimeMs};

/// Generates one `#[test]` per connection-store check for a backend, given a function that
/// makes a fresh, empty store.
#[macro_export]
macro_rules! connection_storage_conformance_tests {
    ($new_store:expr) => {
        $crate::connection_storage_conformance_tests!(@tests $new_store;
            connection_keys_and_inboxes, connection_enqueue_guard, connection_marks_expire,
            connection_attacker_sized);
    };
    (@tests $new_store:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::conformance::connection::$check(&$new_store);
            }
        )*
    };
}

/// Generates the checks that need several handles on one database, given a **database
/// factory**: each call makes a fresh database and returns a function that opens one more
/// handle on it.
#[macro_export]
macro_rules! connection_storage_durable_tests {
    ($new_database:expr) => {
        #[test]
        fn connection_replays_refused_across_handles() {
            $crate::testing::conformance::connection::connection_replays_refused_across_handles(
                &$new_database,
            );
        }

        #[test]
        fn connection_racing_handles() {
            $crate::testing::conformance::connection::connection_racing_handles(&$new_database);
        }
    };
}

fn record(key: &[u8], inbox_id: &[u8], owner_key: &[u8]) -> ConnectionKeyRecord {
    record_at(key, inbox_id, owner_key, START_MS)
}

fn record_at(
    key: &[u8],
    inbox_id: &[u8],
    owner_key: &[u8],
    published_at_ms: u64,
) -> ConnectionKeyRecord {
    ConnectionKeyRecord {
        ciphersuite: 1,
        connection_establishment_key: key.to_vec(),
        inbox_id: inbox_id.to_vec(),
        owner_key: owner_key.to_vec(),
        published_at_ms,
    }
}

fn publish<S: ConnectionStore>(store: &mut S, user: &[u8], record: ConnectionKeyRecord) {
    let change = ConnectionChange::Publish {
        user: user.to_vec(),
        record,
    };
    assert!(store.apply(START_MS, change).expect("storage works"));
}

fn request(sequence_number: u64, sealed_bytes: usize, fill: u8) -> StoredConnectionRequest {
    StoredConnectionRequest {
        sequence_number,
        received_ms: START_MS + sequence_number,
        sender_domain: b"alpha.example".to_vec().into(),
        sealed_request: HpkeCiphertext {
            kem_output: vec![fill; 32].into(),
            ciphertext: vec![fill ^ 0xff; sealed_bytes].into(),
        },
    }
}

fn enqueue<S: ConnectionStore>(
    store: &mut S,
    now_ms: u64,
    inbox_id: &[u8],
    request: StoredConnectionRequest,
    mark: &[u8],
    expires_at_ms: u64,
) -> bool {
    store
        .apply(
            now_ms,
            ConnectionChange::Enqueue {
                inbox_id: inbox_id.to_vec(),
                request,
                mark: mark.to_vec(),
                mark_expires_at_ms: expires_at_ms,
            },
        )
        .expect("storage works")
}

/// Everything the checks can read of `users` and their inboxes, and of `marks`.
fn snapshot<S: ConnectionStore>(
    store: &S,
    users: &[&[u8]],
    marks: &[&[u8]],
    now_ms: u64,
) -> String {
    let mut out = String::new();
    for user in users {
        let record = store.key_record(user).expect("read");
        out += &format!("{record:?}\n");
        if let Some(record) = record {
            let inbox = store.inbox(&record.inbox_id).expect("read");
            let requests = store
                .requests(&record.inbox_id, 0, usize::MAX)
                .expect("read");
            let live: Vec<bool> = marks
                .iter()
                .map(|m| store.has_mark(&record.inbox_id, m, now_ms).expect("read"))
                .collect();
            out += &format!("{inbox:?}\n{requests:?}\n{live:?}\n");
        }
    }
    out
}

/// See the module documentation.
pub fn connection_keys_and_inboxes<S: ConnectionStore>(new_store: &impl Fn() -> S) {
    let mut store = new_store();
    assert_eq!(store.key_record(b"bob").unwrap(), None);
    assert_eq!(store.inbox(b"inbox-b").unwrap(), None);
    publish(&mut store, b"bob", record(&[1; 32], b"inbox-b", b"owner"));
    assert_eq!(
        store.key_record(b"bob").unwrap(),
        Some(record(&[1; 32], b"inbox-b", b"owner"))
    );
    let inbox = store.inbox(b"inbox-b").unwrap().expect("created");
    assert_eq!(
        (inbox.user.as_slice(), inbox.next_sequence, inbox.len),
        (&b"bob"[..], 0, 0)
    );
    assert!(enqueue(
        &mut store,
        START_MS,
        b"inbox-b",
        request(0, 20, 1),
        b"m0",
        START_MS + 10
    ));
    // A new key for the same user keeps the inbox, its requests and its marks.
    publish(
        &mut store,
        b"bob",
        record_at(&[2; 32], b"inbox-b", b"owner", START_MS + 1),
    );
    assert_eq!(
        store.key_record(b"bob").unwrap(),
        Some(record_at(&[2; 32], b"inbox-b", b"owner", START_MS + 1))
    );
    // Rule R-CONN-9: a publication no newer than the stored one (a replay of the first) is a
    // conflict and changes nothing.
    for published_at_ms in [START_MS, START_MS + 1] {
        let stale = ConnectionChange::Publish {
            user: b"bob".to_vec(),
            record: record_at(&[1; 32], b"inbox-b", b"owner", published_at_ms),
        };
        assert!(!store.apply(START_MS, stale).expect("storage works"));
    }
    assert_eq!(
        store.key_record(b"bob").unwrap(),
        Some(record_at(&[2; 32], b"inbox-b", b"owner", START_MS + 1))
    );
    let inbox = store.inbox(b"inbox-b").unwrap().expect("kept");
    assert_eq!((inbox.next_sequence, inbox.len), (1, 1));
    assert_eq!(
        store.requests(b"inbox-b", 0, 10).unwrap(),
        vec![request(0, 20, 1)]
    );
    assert!(store.has_mark(b"inbox-b", b"m0", START_MS).unwrap());
    // Another user is another inbox.
    publish(&mut store, b"carol", record(&[3; 32], b"inbox-c", b""));
    assert_eq!(store.requests(b"inbox-c", 0, 10).unwrap(), Vec::new());
    assert!(!store.has_mark(b"inbox-c", b"m0", START_MS).unwrap());
}

/// See the module documentation.
pub fn connection_enqueue_guard<S: ConnectionStore>(new_store: &impl Fn() -> S) {
    let mut store = new_store();
    publish(&mut store, b"bob", record(&[1; 32], b"inbox", b"owner"));
    let far = START_MS + 1_000_000;
    for sequence in 0..3 {
        let mark = [b'm', sequence as u8];
        assert!(enqueue(
            &mut store,
            START_MS,
            b"inbox",
            request(sequence, 30, sequence as u8),
            &mark,
            far
        ));
    }
    let users: [&[u8]; 1] = [b"bob"];
    let marks: [&[u8]; 3] = [b"m\x00", b"m\x03", b"other"];
    let before = snapshot(&store, &users, &marks, START_MS);
    // A stale sequence number, one from the future, an unknown inbox: nothing changes.
    for (inbox, sequence) in [
        (&b"inbox"[..], 2),
        (b"inbox", 0),
        (b"inbox", 4),
        (b"nowhere", 0),
    ] {
        assert!(
            !enqueue(
                &mut store,
                START_MS,
                inbox,
                request(sequence, 30, 9),
                b"m\x03",
                far
            ),
            "{inbox:?} {sequence}"
        );
        assert_eq!(snapshot(&store, &users, &marks, START_MS), before);
    }
    // Pages in order, from a sequence number, at most `max`.
    assert_eq!(
        store.requests(b"inbox", 1, 10).unwrap(),
        vec![request(1, 30, 1), request(2, 30, 2)]
    );
    assert_eq!(
        store.requests(b"inbox", 0, 1).unwrap(),
        vec![request(0, 30, 0)]
    );
    assert_eq!(store.requests(b"inbox", 3, 10).unwrap(), Vec::new());
    // Acknowledging drops what is below, keeps the numbering and the marks.
    let ack = |up_to_sequence| ConnectionChange::Acknowledge {
        inbox_id: b"inbox".to_vec(),
        up_to_sequence,
    };
    assert!(store.apply(START_MS, ack(2)).unwrap());
    assert_eq!(
        store.requests(b"inbox", 0, 10).unwrap(),
        vec![request(2, 30, 2)]
    );
    let inbox = store.inbox(b"inbox").unwrap().expect("kept");
    assert_eq!((inbox.next_sequence, inbox.len), (3, 1));
    assert!(store.has_mark(b"inbox", b"m\x00", START_MS).unwrap());
    // Acknowledging less again drops nothing more.
    assert!(store.apply(START_MS, ack(1)).unwrap());
    assert_eq!(store.inbox(b"inbox").unwrap().expect("kept").len, 1);
    assert!(enqueue(
        &mut store,
        START_MS,
        b"inbox",
        request(3, 30, 3),
        b"m\x03",
        far
    ));
    assert!(!store
        .apply(
            START_MS,
            ConnectionChange::Acknowledge {
                inbox_id: b"nowhere".to_vec(),
                up_to_sequence: 1,
            },
        )
        .unwrap());
}

/// See the module documentation.
pub fn connection_marks_expire<S: ConnectionStore>(new_store: &impl Fn() -> S) {
    let mut store = new_store();
    publish(&mut store, b"bob", record(&[1; 32], b"inbox", b"owner"));
    let expires = START_MS + 100;
    assert!(enqueue(
        &mut store,
        START_MS,
        b"inbox",
        request(0, 20, 0),
        b"mark",
        expires
    ));
    assert!(
        store.has_mark(b"inbox", b"mark", expires).unwrap(),
        "live at its expiry"
    );
    assert!(!store.has_mark(b"inbox", b"mark", expires + 1).unwrap());
    assert!(!store.has_mark(b"inbox", b"other", START_MS).unwrap());
    // A write after the expiry may drop it; the mark can be set again.
    assert!(enqueue(
        &mut store,
        expires + 1,
        b"inbox",
        request(1, 20, 1),
        b"mark",
        expires + 200
    ));
    assert!(store.has_mark(b"inbox", b"mark", expires + 150).unwrap());
    assert!(!store.has_mark(b"inbox", b"mark", expires + 201).unwrap());
}

/// See the module documentation.
pub fn connection_attacker_sized<S: ConnectionStore>(new_store: &impl Fn() -> S) {
    let mut store = new_store();
    let config = ConnectionConfig::new("beta.example");
    let user: Vec<u8> = (0..=255).chain(0..=255).collect();
    let inbox: Vec<u8> = vec![0, 0xff, 0, 0x27, 0x22, 0x5c];
    let key: Vec<u8> = (0..=255).rev().collect();
    publish(&mut store, &user, record(&key, &inbox, &[0; 64]));
    let big = request(0, config.max_request_bytes, 0);
    let mark: Vec<u8> = (0..=255).collect();
    assert!(enqueue(
        &mut store,
        START_MS,
        &inbox,
        big.clone(),
        &mark,
        u64::MAX
    ));
    assert_eq!(
        store.key_record(&user).unwrap(),
        Some(record(&key, &inbox, &[0; 64]))
    );
    assert_eq!(store.inbox(&inbox).unwrap().expect("stored").user, user);
    assert_eq!(store.requests(&inbox, 0, 10).unwrap(), vec![big]);
    assert!(store.has_mark(&inbox, &mark, u64::MAX).unwrap());
}

fn provider() -> ConnectionProvider {
    let seed = RustCrypto::default()
        .hash(HashType::Sha2_256, b"conformance inbox seed")
        .expect("hash");
    ConnectionProvider::new(
        ConnectionConfig::new("beta.example"),
        &seed,
        RustCrypto::default(),
    )
    .expect("a 32-byte seed")
}

/// See the module documentation.
pub fn connection_replays_refused_across_handles<S, O>(new_database: &impl Fn() -> O)
where
    S: ConnectionStore,
    O: Fn() -> S,
{
    let open = new_database();
    let provider = provider();
    let crypto = RustCrypto::default();
    let now = UnixTimeMs(START_MS);
    let bob_key =
        ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &[7; 32]).expect("a key");
    let alice = RealIdentity::new("alice", "phone", "alpha.example");
    let signature_key = alice.signature_key();
    let seal = |bundle: &ConnectionKeyBundle| -> ConnectionRequestDelivery {
        let contents = RequestContents {
            credential: &alice.credential,
            signature_key: &signature_key,
            connection_room_id: b"a connection room",
            identity_link_wrapper_key: &[5; 32],
            connection_key: &alice.connection_key,
            connection_token: &alice.connection_token,
        };
        seal_connection_request(
            &crypto,
            &crypto,
            &alice.signer,
            &contents,
            bundle,
            "alpha.example",
        )
        .expect("sealed")
        .1
    };
    let delivery = {
        let mut store = open();
        provider
            .publish(
                now,
                &mut store,
                b"bob",
                u16::from(CIPHERSUITE),
                bob_key.public_key(),
            )
            .expect("published");
        let bundle = provider
            .fetch(&store, b"bob")
            .expect("read")
            .expect("a bundle");
        let delivery = seal(&bundle);
        let outcome = provider
            .deliver(
                now,
                &encode(&delivery).unwrap(),
                Some("alpha.example"),
                &mut store,
            )
            .expect("storage works");
        assert_eq!(outcome.status, QsStatus::Accepted, "{:?}", outcome.refusal);
        delivery
    };
    // A handle opened afterwards (a restarted server) refuses the same bytes, and the same
    // sealed request inside a fresh inbox address.
    let mut store = open();
    let fresh_address = provider
        .fetch(&store, b"bob")
        .unwrap()
        .expect("a bundle")
        .inbox;
    let mut rewrapped = delivery.clone();
    rewrapped.inbox = fresh_address;
    let users: [&[u8]; 1] = [b"bob"];
    let before = snapshot(&store, &users, &[], START_MS);
    for replay in [&delivery, &rewrapped] {
        let outcome = provider
            .deliver(
                now,
                &encode(replay).unwrap(),
                Some("alpha.example"),
                &mut store,
            )
            .expect("storage works");
        assert_eq!(
            outcome.status,
            QsStatus::Rejected(ErrorCode::ReplayedMessage)
        );
        assert_eq!(
            outcome.refusal,
            Some(QsRejectReason::Connection(ConnectionRefusal::Replayed))
        );
        assert_eq!(
            snapshot(&store, &users, &[], START_MS),
            before,
            "a refusal changes nothing"
        );
    }
    let requests = provider.inbox(&store, b"bob", 0, 10).expect("read");
    assert_eq!(requests.len(), 1, "the first copy is in the inbox, once");
    assert_eq!(requests[0].sealed_request, delivery.sealed_request);
    // After the window, the mark is gone and the request is taken again (the responder's
    // client is the backstop then: wire-format.md §14.3.3).
    let later = UnixTimeMs(START_MS + provider.config().replay_window_ms + 1);
    let mut store = open();
    let outcome = provider
        .deliver(
            later,
            &encode(&delivery).unwrap(),
            Some("alpha.example"),
            &mut store,
        )
        .expect("storage works");
    assert_eq!(outcome.status, QsStatus::Accepted, "{:?}", outcome.refusal);
    // A different request is never a replay.
    let bundle = provider.fetch(&store, b"bob").unwrap().expect("a bundle");
    let outcome = provider
        .deliver(
            later,
            &encode(&seal(&bundle)).unwrap(),
            Some("alpha.example"),
            &mut store,
        )
        .expect("storage works");
    assert_eq!(outcome.status, QsStatus::Accepted, "{:?}", outcome.refusal);
    assert_eq!(provider.inbox(&store, b"bob", 0, 10).unwrap().len(), 3);
}

/// See the module documentation.
pub fn connection_racing_handles<S, O>(new_database: &impl Fn() -> O)
where
    S: ConnectionStore + Send,
    O: Fn() -> S + Sync,
{
    let open = new_database();
    let mut first = open();
    publish(&mut first, b"bob", record(&[1; 32], b"inbox", b"owner"));
    let barrier = std::sync::Barrier::new(2);
    let applied: Vec<bool> = std::thread::scope(|scope| {
        let racers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|fill| {
                let (open, barrier) = (&open, &barrier);
                scope.spawn(move || {
                    let mut handle = open();
                    let next = handle
                        .inbox(b"inbox")
                        .expect("read")
                        .expect("exists")
                        .next_sequence;
                    barrier.wait();
                    enqueue(
                        &mut handle,
                        START_MS,
                        b"inbox",
                        request(next, 30, fill),
                        &[fill],
                        u64::MAX,
                    )
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("no panic"))
            .collect()
    });
    assert_eq!(applied.iter().filter(|a| **a).count(), 1, "{applied:?}");
    let requests = first.requests(b"inbox", 0, 10).unwrap();
    assert_eq!(requests.len(), 1);
    let winner = requests[0].sealed_request.kem_output.as_slice()[0];
    assert!(first.has_mark(b"inbox", &[winner], START_MS).unwrap());
    assert!(
        !first.has_mark(b"inbox", &[3 - winner], START_MS).unwrap(),
        "the loser's mark was not kept"
    );
}
