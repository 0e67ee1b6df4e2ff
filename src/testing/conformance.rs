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
//! - [`outbox_order_per_destination`]: `pending` holds an entry back while an older entry of
//!   its destination is put off (any group), so a destination's entries leave in ID order
//!   also after a failed delivery; held-back entries do not count against the limit;
//! - [`racing_handles`]: two handles on two threads write the same version, or the same replay
//!   key: exactly one `Applied`;
//! - [`racing_commits`]: real commits of two members in one epoch on two handles, interleaved
//!   through the step API and raced on two threads through `process`: exactly one is
//!   accepted, the loser is validated again and refused with `wrong_epoch`;
//! - [`attacker_sized_records`]: records of `max_request_bytes * 4`, long binary group IDs and
//!   replay keys are stored and read back byte for byte;
//! - [`end_to_end_with_real_clients`]: real openmls clients through a
//!   [`crate::DeliveryService`] on the backend; the outbox holds each request's fanout; a write
//!   that applied and then reported failure still delivers its commit from a new handle, and a
//!   `Duplicate` retry does not hide it.
//!
//! The QS checks are in [`qs`] ([`qs::run_qs_suite`]); the KeyPackage directory's in
//! [`directory`] ([`crate::directory_storage_conformance_tests!`]); the connection inboxes'
//! in [`connection`] ([`crate::connection_storage_conformance_tests!`]).

pub mod connection;
pub mod directory;
mod end_to_end;
mod guard;
mod outbox;
pub mod qs;
mod racing;
mod shared;

use std::fmt::Debug;

use openmls::prelude::MlsMessageOut;

pub use end_to_end::end_to_end_with_real_clients;
pub use guard::{
    guard_and_atomicity, keyed_records, replay_mark_only, replay_marks_and_expiry_boundary,
    reservation_expiry,
};
pub use outbox::{
    attacker_sized_records, outbox_entries, outbox_order_per_destination, racing_handles,
};
pub use racing::racing_commits;
pub use shared::SharedInMemoryStorage;

use super::{mls_bytes, TestClient, START_MS};
use crate::storage::{
    DsOutbox, DsStorage, GroupSnapshot, OutboxEntry, RecordKind, RecordWrite, ReplayMark,
    VersionGuard, WriteOutcome, WriteSet,
};
use crate::wire::{
    FanoutMessage, MlsMessageBytes, QueueingServiceRequest, PROTOCOL_VERSION_MIMI_DS10,
};
use crate::Fanout;

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
    outbox_order_per_destination(&new_database());
    racing_handles(&new_database());
    racing_commits(&new_database());
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
            reservation_expiry, keyed_records, outbox_entries, outbox_order_per_destination,
            racing_handles, racing_commits, attacker_sized_records,
            end_to_end_with_real_clients);
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

pub(crate) fn write_set(
    group_id: &[u8],
    guard: VersionGuard,
    records: Vec<RecordWrite>,
) -> WriteSet {
    WriteSet {
        group_id: group_id.to_vec(),
        guard,
        records,
        replay_mark: None,
        now_ms: NOW,
        fanout: Vec::new(),
    }
}

pub(crate) fn mark(
    key: &[u8],
    expires_at_ms: u64,
    response: &[u8],
) -> Option<(Vec<u8>, ReplayMark)> {
    Some((
        key.to_vec(),
        ReplayMark {
            request_hash: [key, b"-hash"].concat(),
            expires_at_ms,
            response: Some(response.to_vec()),
        },
    ))
}

pub(crate) fn expect<S: DsStorage>(
    storage: &mut S,
    ws: &WriteSet,
    expected: WriteOutcome,
    what: &str,
) {
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
            recipients: vec![b"queue".to_vec().into()].into(),
            message: FanoutMessage {
                group_id: group_id.to_vec().into(),
                sequence_number,
                accepted_time_ms: NOW,
                message: message.clone(),
                external_proposals: Vec::new(),
                frank: None,
            },
        },
    }
}

/// Everything a handle shows of some groups and replay keys, and the whole outbox: equal
/// before and after a write means the write changed nothing visible.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Visible {
    pub(crate) groups: Vec<Option<GroupSnapshot>>,
    pub(crate) marks: Vec<Option<ReplayMark>>,
    pub(crate) outbox: Vec<OutboxEntry>,
}

pub(crate) fn all_kinds() -> Vec<RecordKind> {
    let mut kinds = RecordKind::ALL.to_vec();
    kinds.extend((0..4).map(|epoch| RecordKind::WelcomeTree { epoch }));
    kinds
}

pub(crate) fn read_sorted<S: DsStorage>(
    storage: &S,
    group_id: &[u8],
    kinds: &[RecordKind],
) -> Option<GroupSnapshot> {
    ok(storage.read(group_id, kinds), "read").map(|mut snapshot| {
        snapshot.records.sort();
        snapshot
    })
}

pub(crate) fn visible<S: DsStorage + DsOutbox>(
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
