//! One storage conformance suite for every backend: the storage contract of [`crate::storage`]
//! (with the durable outbox, [`DsOutbox`]) and of [`crate::qs::QsStorage`], written once and
//! run on [`crate::storage::InMemoryStorage`] (tests/storage_conformance.rs), on SQLite
//! (`mimi-ds-sqlite`'s tests) and on any backend you write.
//!
//! A backend is given as a **database factory**: `new_database()` makes a fresh, empty
//! database and returns an `open` function; each call of `open()` opens one more handle on that
//! database (a connection), and handles of one database see each other's writes. That is how
//! the suite races two connections on one group, and drops one handle after a write to drain
//! the outbox from a new one (crash recovery). [`SharedInMemoryStorage`] gives
//! [`crate::storage::InMemoryStorage`] such handles.
//!
//! ```ignore
//! // In a backend's tests: one #[test] per check.
//! mimi_ds::ds_storage_conformance_tests!(|| {
//!     let dir = tempfile::tempdir().unwrap();
//!     let path = dir.path().join("ds.sqlite3");
//!     move || { let _keep = &dir; SqliteDsStorage::open(&path).unwrap() }
//! });
//! ```
//!
//! The DS checks ([`run_ds_suite`] runs them all):
//! - [`guard_and_atomicity`]: `Absent` / `Exactly`, a conflicting write (stale version, live
//!   replay mark) changes nothing, records, marks and outbox included;
//! - [`replay_mark_only`]: a `ReplayMarkOnly` write stores the mark and leaves the group alone;
//! - [`replay_marks_and_expiry_boundary`]: live at `now <= expires_at_ms`, a live key conflicts,
//!   an expired key is reused, a write drops what expired before its `now` and nothing else;
//! - [`reservation_expiry`]: a write drops reservation-only groups that expired, never a group;
//! - [`keyed_records`]: `WelcomeTree { epoch }` records are one record per epoch;
//! - [`outbox_entries`]: one entry per fanout of an applied write, in order, none for a
//!   conflicted write; `pending` (due, oldest first, limit), `retry_later`, `mark_delivered`;
//!   unique, increasing IDs that are never reused;
//! - [`racing_handles`]: two handles on two threads write the same version, or the same replay
//!   key: exactly one `Applied`;
//! - [`attacker_sized_records`]: records of `max_request_bytes * 4`, long binary group IDs and
//!   replay keys are stored and read back byte for byte;
//! - [`end_to_end_with_real_clients`]: real openmls clients through a
//!   [`crate::DeliveryService`] on the backend; the outbox holds each request's fanout; a write
//!   that applied and then reported failure still delivers its commit from a new handle, and a
//!   `Duplicate` retry does not hide it.
//!
//! The QS checks are in [`qs`] ([`qs::run_qs_suite`]).

mod end_to_end;
pub mod qs;
mod shared;

use std::fmt::Debug;
use std::sync::Barrier;

use openmls::prelude::MlsMessageOut;

pub use end_to_end::end_to_end_with_real_clients;
pub use shared::SharedInMemoryStorage;

use super::{mls_bytes, TestClient, START_MS};
use crate::storage::{
    DsOutbox, DsStorage, GroupSnapshot, OutboxEntry, RecordKind, RecordWrite, ReplayMark,
    VersionGuard, WriteOutcome, WriteSet,
};
use crate::wire::{
    FanoutMessage, MlsMessageBytes, QueueingServiceRequest, PROTOCOL_VERSION_MIMI_DS10,
};
use crate::{DsConfig, Fanout};

/// Runs every DS check of this module, each on a fresh database from `new_database`.
pub fn run_ds_suite<D, S>(new_database: impl Fn() -> D)
where
    D: Fn() -> S + Sync,
    S: DsStorage + DsOutbox,
{
    guard_and_atomicity(&new_database());
    replay_mark_only(&new_database());
    replay_marks_and_expiry_boundary(&new_database());
    reservation_expiry(&new_database());
    keyed_records(&new_database());
    outbox_entries(&new_database());
    racing_handles(&new_database());
    attacker_sized_records(&new_database());
    end_to_end_with_real_clients(&new_database());
}

/// One `#[test]` per DS check of [`crate::testing::conformance`], for a backend given by a
/// database factory expression (see the module documentation).
#[macro_export]
macro_rules! ds_storage_conformance_tests {
    ($new_database:expr) => {
        $crate::ds_storage_conformance_tests!(@tests $new_database;
            guard_and_atomicity, replay_mark_only, replay_marks_and_expiry_boundary,
            reservation_expiry, keyed_records, outbox_entries, racing_handles,
            attacker_sized_records, end_to_end_with_real_clients);
    };
    (@tests $new_database:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::conformance::$check(&($new_database)());
            }
        )*
    };
}

/// The `now` the checks write at.
pub(crate) const NOW: u64 = START_MS;

/// A storage call that must not fail.
pub(crate) fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: the backend failed: {e:?}"))
}

fn write_set(group_id: &[u8], guard: VersionGuard, records: Vec<RecordWrite>) -> WriteSet {
    WriteSet {
        group_id: group_id.to_vec(),
        guard,
        records,
        replay_mark: None,
        now_ms: NOW,
        fanout: Vec::new(),
    }
}

fn mark(key: &[u8], expires_at_ms: u64, response: &[u8]) -> Option<(Vec<u8>, ReplayMark)> {
    Some((
        key.to_vec(),
        ReplayMark {
            request_hash: [key, b"-hash"].concat(),
            expires_at_ms,
            response: Some(response.to_vec()),
        },
    ))
}

fn expect<S: DsStorage>(storage: &mut S, ws: &WriteSet, expected: WriteOutcome, what: &str) {
    assert_eq!(ok(storage.write(ws), what), expected, "{what}");
}

/// A real MLSMessage (a KeyPackage) for fanouts: storage never parses it, but
/// [`OutboxEntry::fanout`] decodes it.
pub fn sample_message() -> MlsMessageBytes {
    let client = TestClient::new("sample", "s1", "sample.example");
    mls_bytes(&MlsMessageOut::from(client.key_package()))
}

/// A fanout of `message` for group `group_id` to one queue at `destination`.
pub fn fanout(
    group_id: &[u8],
    destination: &str,
    sequence_number: u64,
    message: &MlsMessageBytes,
) -> Fanout {
    Fanout {
        destination: destination.to_owned(),
        request: QueueingServiceRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            sender_domain: b"hub.example".to_vec().into(),
            recipient_domain: destination.as_bytes().to_vec().into(),
            recipients: vec![b"queue".to_vec().into()],
            message: FanoutMessage {
                group_id: group_id.to_vec().into(),
                sequence_number,
                accepted_time_ms: NOW,
                message: message.clone(),
                external_proposals: Vec::new(),
            },
        },
    }
}

/// Everything a handle shows of some groups and replay keys, and the whole outbox: equal
/// before and after a write means the write changed nothing visible.
#[derive(Debug, PartialEq, Eq)]
struct Visible {
    groups: Vec<Option<GroupSnapshot>>,
    marks: Vec<Option<ReplayMark>>,
    outbox: Vec<OutboxEntry>,
}

fn all_kinds() -> Vec<RecordKind> {
    let mut kinds = RecordKind::ALL.to_vec();
    kinds.extend((0..4).map(|epoch| RecordKind::WelcomeTree { epoch }));
    kinds
}

fn read_sorted<S: DsStorage>(
    storage: &S,
    group_id: &[u8],
    kinds: &[RecordKind],
) -> Option<GroupSnapshot> {
    ok(storage.read(group_id, kinds), "read").map(|mut snapshot| {
        snapshot.records.sort();
        snapshot
    })
}

fn visible<S: DsStorage + DsOutbox>(
    storage: &S,
    groups: &[&[u8]],
    marks: &[(&[u8], &[u8])],
) -> Visible {
    Visible {
        groups: groups
            .iter()
            .map(|g| read_sorted(storage, g, &all_kinds()))
            .collect(),
        marks: marks
            .iter()
            .map(|(g, k)| ok(storage.replay_mark(g, k, NOW), "replay_mark"))
            .collect(),
        outbox: ok(storage.pending(u64::MAX, usize::MAX), "pending"),
    }
}

/// The version guard and atomicity: a write applies completely or not at all.
pub fn guard_and_atomicity<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let message = sample_message();
    let (g, other): (&[u8], &[u8]) = (b"group", b"other");
    assert_eq!(
        ok(storage.read(g, &all_kinds()), "read"),
        None,
        "a new database is empty"
    );

    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![
            RecordWrite::Put(RecordKind::Roster, vec![1]),
            RecordWrite::Put(RecordKind::Sequencer, vec![2]),
        ],
    );
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "Absent creates the group",
    );
    let snapshot = read_sorted(&storage, g, &all_kinds()).expect("the group exists");
    assert_eq!(snapshot.version, 1, "a created group is at version 1");
    assert_eq!(
        snapshot.records,
        vec![
            (RecordKind::Roster, vec![1]),
            (RecordKind::Sequencer, vec![2])
        ]
    );
    let only_roster = ok(storage.read(g, &[RecordKind::Roster]), "read").expect("exists");
    assert_eq!(
        only_roster.records,
        vec![(RecordKind::Roster, vec![1])],
        "only what was asked"
    );
    let no_records = ok(storage.read(g, &[]), "read").expect("exists");
    assert_eq!((no_records.version, no_records.records.len()), (1, 0));

    let before = visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]);
    expect(
        &mut storage,
        &create,
        WriteOutcome::Conflict,
        "Absent on an existing group",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );

    let mut update = write_set(
        g,
        VersionGuard::Exactly(1),
        vec![
            RecordWrite::Put(RecordKind::Roster, vec![3]),
            RecordWrite::Delete(RecordKind::Sequencer),
            RecordWrite::Delete(RecordKind::GroupInfo),
        ],
    );
    update.replay_mark = mark(b"k1", NOW + 1_000, b"response-1");
    update.fanout = vec![fanout(g, "a.example", 1, &message)];
    expect(
        &mut storage,
        &update,
        WriteOutcome::Applied,
        "Exactly(current version)",
    );
    let snapshot = read_sorted(&storage, g, &all_kinds()).expect("exists");
    assert_eq!(snapshot.version, 2, "a write moves the version by one");
    assert_eq!(
        snapshot.records,
        vec![(RecordKind::Roster, vec![3])],
        "put and delete"
    );

    // A stale version: nothing of the write set may show, not its mark nor its fanout.
    let before = visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]);
    let mut stale = write_set(
        g,
        VersionGuard::Exactly(1),
        vec![RecordWrite::Put(RecordKind::Roster, vec![9])],
    );
    stale.replay_mark = mark(b"k2", NOW + 1_000, b"response-2");
    stale.fanout = vec![fanout(g, "b.example", 2, &message)];
    expect(
        &mut storage,
        &stale,
        WriteOutcome::Conflict,
        "Exactly(stale version)",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );

    // The guard holds but the replay mark is live: still nothing.
    let mut replayed = write_set(
        g,
        VersionGuard::Exactly(2),
        vec![RecordWrite::Put(RecordKind::Roster, vec![9])],
    );
    replayed.replay_mark = mark(b"k1", NOW + 2_000, b"response-3");
    replayed.fanout = vec![fanout(g, "c.example", 3, &message)];
    expect(
        &mut storage,
        &replayed,
        WriteOutcome::Conflict,
        "a live replay key",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );

    let missing = write_set(
        other,
        VersionGuard::Exactly(1),
        vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
    );
    expect(
        &mut storage,
        &missing,
        WriteOutcome::Conflict,
        "Exactly on a missing group",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );
}

/// A `ReplayMarkOnly` write stores its mark and leaves the group and its version alone.
pub fn replay_mark_only<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let (g, absent): (&[u8], &[u8]) = (b"group", b"absent");
    let mut only_mark = write_set(absent, VersionGuard::ReplayMarkOnly, Vec::new());
    only_mark.replay_mark = mark(b"k", NOW + 10, b"r");
    expect(
        &mut storage,
        &only_mark,
        WriteOutcome::Applied,
        "a mark for a group that does not exist",
    );
    assert_eq!(
        ok(storage.read(absent, &all_kinds()), "read"),
        None,
        "no group is created"
    );
    assert_eq!(
        ok(storage.replay_mark(absent, b"k", NOW), "replay_mark"),
        only_mark.replay_mark.clone().map(|(_, m)| m),
        "the mark reads back as written"
    );
    expect(
        &mut storage,
        &only_mark,
        WriteOutcome::Conflict,
        "the same live key again",
    );

    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
    );
    expect(&mut storage, &create, WriteOutcome::Applied, "create");
    let mut on_group = write_set(g, VersionGuard::ReplayMarkOnly, Vec::new());
    on_group.replay_mark = mark(b"k", NOW + 10, b"r");
    expect(
        &mut storage,
        &on_group,
        WriteOutcome::Applied,
        "marks are per group",
    );
    let snapshot = read_sorted(&storage, g, &all_kinds()).expect("exists");
    assert_eq!(
        snapshot.version, 1,
        "a ReplayMarkOnly write leaves the version alone"
    );
    assert_eq!(snapshot.records, vec![(RecordKind::Roster, vec![1])]);
}

/// Replay marks at their expiry boundary, and their expiry by a later write.
pub fn replay_marks_and_expiry_boundary<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    const E: u64 = NOW + 1_000;
    let mut storage = open();
    let g: &[u8] = b"group";
    let at = |key: &[u8], expires: u64, now: u64, response: &[u8]| {
        let mut ws = write_set(g, VersionGuard::ReplayMarkOnly, Vec::new());
        ws.replay_mark = mark(key, expires, response);
        ws.now_ms = now;
        ws
    };
    expect(
        &mut storage,
        &at(b"k", E, NOW, b"first"),
        WriteOutcome::Applied,
        "mark",
    );
    expect(
        &mut storage,
        &at(b"early", E - 1, NOW, b"e"),
        WriteOutcome::Applied,
        "mark",
    );
    let live = |s: &S, key: &[u8], now: u64| ok(s.replay_mark(g, key, now), "replay_mark");
    assert!(
        live(&storage, b"k", E).is_some(),
        "live at now == expires_at_ms"
    );
    assert!(
        live(&storage, b"k", E + 1).is_none(),
        "gone at expires_at_ms + 1"
    );

    expect(
        &mut storage,
        &at(b"k", E + 50, E, b"second"),
        WriteOutcome::Conflict,
        "the key is live at its expiry",
    );
    assert_eq!(
        live(&storage, b"k", NOW).and_then(|m| m.response),
        Some(b"first".to_vec())
    );
    // The write at E dropped `early` (expired at E - 1) and kept `k` (live at E).
    expect(
        &mut storage,
        &at(b"x", E + 50, E, b"x"),
        WriteOutcome::Applied,
        "a write at E",
    );
    assert!(
        live(&storage, b"early", NOW).is_none(),
        "a write drops the marks that expired before its now (issue 12: expiry in the write)"
    );
    assert!(
        live(&storage, b"k", NOW).is_some(),
        "a write keeps a mark live at its now"
    );

    expect(
        &mut storage,
        &at(b"k", E + 50, E + 1, b"third"),
        WriteOutcome::Applied,
        "an expired key is reused",
    );
    let reused = live(&storage, b"k", E + 1).expect("the new mark");
    assert_eq!(
        (reused.expires_at_ms, reused.response),
        (E + 50, Some(b"third".to_vec()))
    );
}

/// Reservation-only groups are dropped by a write once expired; groups never are.
pub fn reservation_expiry<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    const E: u64 = NOW + 1_000;
    let mut storage = open();
    let reserve = |group: &[u8], expires: u64| {
        // The contract: the record starts with the expiry; mimi-ds may append more.
        let record = [&expires.to_be_bytes()[..], b"rest"].concat();
        write_set(
            group,
            VersionGuard::Absent,
            vec![RecordWrite::Put(RecordKind::Reservation, record)],
        )
    };
    expect(
        &mut storage,
        &reserve(b"reserved", E),
        WriteOutcome::Applied,
        "reserve",
    );
    expect(
        &mut storage,
        &reserve(b"created", E - 1),
        WriteOutcome::Applied,
        "reserve",
    );
    let consume = write_set(
        b"created",
        VersionGuard::Exactly(1),
        vec![
            RecordWrite::Delete(RecordKind::Reservation),
            RecordWrite::Put(RecordKind::Roster, vec![1]),
        ],
    );
    expect(
        &mut storage,
        &consume,
        WriteOutcome::Applied,
        "create the reserved group",
    );
    let exists = |s: &S, group: &[u8]| ok(s.read(group, &[]), "read").map(|g| g.version);

    let mut tick = write_set(b"elsewhere", VersionGuard::ReplayMarkOnly, Vec::new());
    tick.replay_mark = mark(b"t1", E + 100, b"");
    tick.now_ms = E;
    expect(&mut storage, &tick, WriteOutcome::Applied, "a write at E");
    assert_eq!(
        exists(&storage, b"reserved"),
        Some(1),
        "a reservation is live at its expiry"
    );

    tick.replay_mark = mark(b"t2", E + 100, b"");
    tick.now_ms = E + 1;
    expect(
        &mut storage,
        &tick,
        WriteOutcome::Applied,
        "a write at E + 1",
    );
    assert_eq!(
        exists(&storage, b"reserved"),
        None,
        "an expired reservation is dropped by a write (issue 12: expiry in the write)"
    );
    assert_eq!(
        exists(&storage, b"created"),
        Some(2),
        "a group is never dropped"
    );
    expect(
        &mut storage,
        &reserve(b"reserved", E + 500),
        WriteOutcome::Applied,
        "the dropped ID is free",
    );
}

/// Keyed records: one `WelcomeTree` record per epoch, read and deleted by exact key.
pub fn keyed_records<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let g: &[u8] = b"group";
    let tree = |epoch| RecordKind::WelcomeTree { epoch };
    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![
            RecordWrite::Put(tree(1), vec![1]),
            RecordWrite::Put(tree(2), vec![2]),
            RecordWrite::Put(tree(u64::MAX), vec![3]),
            RecordWrite::Put(RecordKind::WelcomeSnapshots, vec![4]),
        ],
    );
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "create with keyed records",
    );
    let read = |s: &S, kinds: &[RecordKind]| ok(s.read(g, kinds), "read").expect("exists").records;
    assert_eq!(
        read(&storage, &[tree(1)]),
        vec![(tree(1), vec![1])],
        "one key"
    );
    assert_eq!(
        read(&storage, &[tree(u64::MAX)]),
        vec![(tree(u64::MAX), vec![3])],
        "the largest epoch"
    );
    assert_eq!(
        read(&storage, &[tree(3)]),
        Vec::new(),
        "a key never written"
    );
    assert_eq!(
        read(&storage, &[RecordKind::WelcomeSnapshots]),
        vec![(RecordKind::WelcomeSnapshots, vec![4])]
    );

    let update = write_set(
        g,
        VersionGuard::Exactly(1),
        vec![
            RecordWrite::Delete(tree(1)),
            RecordWrite::Put(tree(2), vec![5]),
        ],
    );
    expect(
        &mut storage,
        &update,
        WriteOutcome::Applied,
        "delete one key, replace another",
    );
    let mut both = read(&storage, &[tree(1), tree(2), tree(u64::MAX)]);
    both.sort();
    assert_eq!(both, vec![(tree(2), vec![5]), (tree(u64::MAX), vec![3])]);
}

/// The outbox: entries appear with applied writes only, and its bookkeeping.
pub fn outbox_entries<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let message = sample_message();
    let g: &[u8] = b"group";
    let pending = |s: &S, now: u64, limit: usize| ok(s.pending(now, limit), "pending");
    assert!(
        pending(&storage, u64::MAX, usize::MAX).is_empty(),
        "a new database has no outbox"
    );

    let fanouts: Vec<Fanout> = ["a.example", "b.example", "c.example"]
        .iter()
        .enumerate()
        .map(|(i, d)| fanout(g, d, i as u64, &message))
        .collect();
    let mut create = write_set(
        g,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
    );
    create.fanout = fanouts.clone();
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "a write with three fanouts",
    );
    let entries = pending(&storage, NOW, 10);
    assert_eq!(entries.len(), 3, "one entry per fanout");
    for (entry, fanout) in entries.iter().zip(&fanouts) {
        assert_eq!(entry.group_id, g);
        assert_eq!(entry.destination, fanout.destination);
        assert_eq!(
            entry.request,
            fanout.to_bytes(),
            "the encoded QueueingServiceRequest"
        );
        assert_eq!(
            (
                entry.created_at_ms,
                entry.attempts,
                entry.next_attempt_at_ms
            ),
            (NOW, 0, NOW)
        );
        assert_eq!(
            entry.fanout().as_ref(),
            Ok(fanout),
            "decodes to the fanout written"
        );
    }
    let ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids increase in the order stored: {ids:?}"
    );
    assert!(
        pending(&storage, NOW - 1, 10).is_empty(),
        "not due before it was stored"
    );
    assert_eq!(
        pending(&storage, NOW, 2),
        entries[..2].to_vec(),
        "limit keeps the oldest"
    );

    // The next write may conflict: it stores nothing.
    let mut conflicting = create.clone();
    conflicting.fanout = vec![fanout(g, "d.example", 9, &message)];
    expect(
        &mut storage,
        &conflicting,
        WriteOutcome::Conflict,
        "Absent again",
    );
    assert_eq!(
        pending(&storage, u64::MAX, usize::MAX),
        entries,
        "a conflicted write stores no entry"
    );

    assert!(
        ok(storage.retry_later(ids[0], NOW + 100), "retry_later"),
        "the entry exists"
    );
    assert_eq!(
        pending(&storage, NOW, 10)
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        ids[1..]
    );
    let retried = pending(&storage, NOW + 100, 10);
    assert_eq!(
        retried.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids,
        "oldest first, retried or not"
    );
    assert_eq!(
        (retried[0].attempts, retried[0].next_attempt_at_ms),
        (1, NOW + 100)
    );
    assert!(ok(storage.retry_later(ids[0], NOW + 200), "retry_later"));
    assert_eq!(
        pending(&storage, NOW + 200, 1)[0].attempts,
        2,
        "attempts count up"
    );

    assert!(ok(storage.mark_delivered(ids[1]), "mark_delivered"));
    assert!(
        !ok(storage.mark_delivered(ids[1]), "mark_delivered"),
        "already delivered"
    );
    assert!(
        !ok(storage.retry_later(ids[1], NOW), "retry_later"),
        "a delivered entry is gone"
    );
    assert!(
        ok(storage.mark_delivered(ids[2]), "mark_delivered"),
        "the newest entry"
    );
    assert_eq!(
        pending(&storage, u64::MAX, usize::MAX)
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [ids[0]]
    );

    let mut next = write_set(g, VersionGuard::Exactly(1), Vec::new());
    next.fanout = vec![fanout(g, "e.example", 4, &message)];
    expect(&mut storage, &next, WriteOutcome::Applied, "a later write");
    let newest = pending(&storage, NOW, 10);
    assert_eq!(newest.len(), 1);
    assert!(
        newest[0].id > ids[2],
        "an ID is never reused, also after its entry was delivered"
    );
    assert!(
        !ok(storage.mark_delivered(u64::MAX), "mark_delivered"),
        "an unknown ID"
    );
}

/// Two handles on two threads write the same version of one group, then the same replay key:
/// exactly one write applies each time.
pub fn racing_handles<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let message = sample_message();
    let g: &[u8] = b"group";
    let mut setup = open();
    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![0])],
    );
    expect(&mut setup, &create, WriteOutcome::Applied, "create");

    let barrier = Barrier::new(2);
    let race = |ws_for: &(dyn Fn(u8) -> WriteSet + Sync)| -> Vec<WriteOutcome> {
        std::thread::scope(|scope| {
            let threads: Vec<_> = [1u8, 2]
                .into_iter()
                .map(|i| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let mut handle = open();
                        let read =
                            ok(handle.read(g, &[RecordKind::Roster]), "read").expect("exists");
                        let mut ws = ws_for(i);
                        if let VersionGuard::Exactly(v) = &mut ws.guard {
                            *v = read.version;
                        }
                        // Both have read the same version before either writes.
                        barrier.wait();
                        ok(handle.write(&ws), "a racing write")
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("no panic"))
                .collect()
        })
    };

    let outcomes = race(&|i| {
        let mut ws = write_set(
            g,
            VersionGuard::Exactly(0),
            vec![RecordWrite::Put(RecordKind::Roster, vec![i])],
        );
        ws.fanout = vec![fanout(g, &format!("t{i}.example"), 1, &message)];
        ws
    });
    let winners: Vec<u8> = (1..=2)
        .filter(|i| outcomes[usize::from(*i) - 1] == WriteOutcome::Applied)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of two racing writes applies: {outcomes:?}"
    );
    let reader = open();
    let snapshot = ok(reader.read(g, &[RecordKind::Roster]), "read").expect("exists");
    assert_eq!(snapshot.version, 2, "the version moved once");
    assert_eq!(
        snapshot.records,
        vec![(RecordKind::Roster, vec![winners[0]])],
        "the winner's records"
    );
    let outbox = ok(reader.pending(u64::MAX, usize::MAX), "pending");
    assert_eq!(
        outbox
            .iter()
            .map(|e| e.destination.as_str())
            .collect::<Vec<_>>(),
        [format!("t{}.example", winners[0])],
        "only the winner's fanout is in the outbox"
    );

    let outcomes = race(&|i| {
        let mut ws = write_set(g, VersionGuard::ReplayMarkOnly, Vec::new());
        ws.replay_mark = mark(b"key", NOW + 1_000, &[i]);
        ws
    });
    let winners: Vec<u8> = (1..=2)
        .filter(|i| outcomes[usize::from(*i) - 1] == WriteOutcome::Applied)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of two racing replay marks applies: {outcomes:?}"
    );
    let stored = ok(reader.replay_mark(g, b"key", NOW), "replay_mark").expect("a mark");
    assert_eq!(stored.response, Some(vec![winners[0]]), "the winner's mark");
}

/// Records, group IDs and replay keys at attacker-chosen sizes and contents are stored and
/// read back byte for byte (storage contract: "Attacker-sized records").
pub fn attacker_sized_records<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let limit = DsConfig::new("hub.example").max_request_bytes;
    // Every byte value, NUL and quotes included, as an ID a client may choose.
    let group: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let big = |seed: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let state = big(1, limit * 4);
    let tree = big(2, limit);
    let create = write_set(
        &group,
        VersionGuard::Absent,
        vec![
            RecordWrite::Put(RecordKind::MlsState, state.clone()),
            RecordWrite::Put(RecordKind::WelcomeTree { epoch: 7 }, tree.clone()),
        ],
    );
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "records of max_request_bytes * 4",
    );
    let read = ok(
        storage.read(
            &group,
            &[RecordKind::MlsState, RecordKind::WelcomeTree { epoch: 7 }],
        ),
        "read",
    )
    .expect("exists");
    assert!(
        read.record(RecordKind::MlsState) == Some(&state[..]),
        "the large record reads back exactly"
    );
    assert!(
        read.record(RecordKind::WelcomeTree { epoch: 7 }) == Some(&tree[..]),
        "the keyed record reads back exactly"
    );

    let grown = big(3, limit * 4 + limit);
    let mut update = write_set(
        &group,
        VersionGuard::Exactly(1),
        vec![RecordWrite::Put(RecordKind::MlsState, grown.clone())],
    );
    let key = big(4, 4096);
    update.replay_mark = Some((
        key.clone(),
        ReplayMark {
            request_hash: big(5, 64),
            expires_at_ms: NOW + 1_000,
            response: Some(big(6, limit)),
        },
    ));
    expect(
        &mut storage,
        &update,
        WriteOutcome::Applied,
        "one request's growth on top",
    );
    let read = ok(storage.read(&group, &[RecordKind::MlsState]), "read").expect("exists");
    assert!(read.record(RecordKind::MlsState) == Some(&grown[..]));
    let stored = ok(storage.replay_mark(&group, &key, NOW), "replay_mark").expect("the mark");
    assert_eq!(
        stored.response.map(|r| r.len()),
        Some(limit),
        "a response of max_request_bytes"
    );
    assert_eq!(
        ok(storage.read(&group[..4095], &[]), "read"),
        None,
        "IDs are compared whole"
    );
}
