//! The storage contract between mimi-ds and the embedding server.
//!
//! mimi-ds keeps each group as a handful of **records** (opaque byte strings it encodes itself)
//! under one **version** number, plus short-lived **replay marks**. A request is answered in
//! two phases: one read phase ([`DsStorage::read`], [`DsStorage::replay_mark`]) and, if the
//! request changes anything, exactly one conditional write ([`DsStorage::write`]) of a
//! [`WriteSet`]. This maps onto a key-value store with compare-and-swap, or onto one SQL
//! transaction, and also onto async databases: both phases are single round trips.
//!
//! # Contract
//!
//! * `Ok(None)` means "not there"; `Err` means the backend failed and is passed up unchanged as
//!   [`crate::ProcessError::Storage`].
//! * [`DsStorage::write`] is **atomic**: either every change in the write set becomes visible
//!   together, or none does. It is **guarded**: it applies only if the group's version is
//!   still the one the request read ([`VersionGuard`]) and every replay mark in it is new;
//!   otherwise it changes nothing and returns [`WriteOutcome::Conflict`]. mimi-ds then reads
//!   again and re-validates, so of two conflicting requests exactly one wins.
//! * Records are read by kind, so a request decodes only what it needs: an application
//!   message reads the [`RecordKind::Roster`] and [`RecordKind::Sequencer`], never the ratchet
//!   tree in [`RecordKind::MlsState`]; a commit reads the small
//!   [`RecordKind::WelcomeSnapshots`] index, and the pending Welcome trees of earlier epochs
//!   (each as large as what changed since its epoch) only when the index lists some.
//! * **Keyed records.** [`RecordKind::WelcomeTree`] carries an epoch: each epoch is its own
//!   record, stored under the pair (kind, epoch), e.g. a `kind smallint, key bigint` primary
//!   key with key 0 for the other kinds. mimi-ds reads and writes keyed records only by exact
//!   key, never by range: the [`RecordKind::WelcomeSnapshots`] index says which exist.
//! * A [`RecordKind::WelcomeTree`] record may be dropped once `now` passes the expiry it
//!   starts with (a big-endian u64, ms since the UNIX epoch): by then no joiner is left that
//!   may fetch it, and mimi-ds treats a missing tree as fetched. mimi-ds deletes these records
//!   itself with the group's next commit or `welcome_info`; dropping them earlier reclaims
//!   space in idle groups.
//! * **Attacker-sized records.** Members choose how large a group grows and what its leaves
//!   carry, so these records grow with the group, each by at most about one request
//!   ([`crate::DsConfig::max_request_bytes`]) per accepted message: [`RecordKind::MlsState`]
//!   (about the ratchet tree), [`RecordKind::GroupInfo`], [`RecordKind::Roster`] (per leaf a
//!   signature key, queue configuration and user), [`RecordKind::PendingProposals`] (the
//!   pending proposals as received) and each [`RecordKind::WelcomeTree`] (at most about one
//!   ratchet tree: the nodes in which its epoch's tree differs from the current one).
//!   A group holds at most [`crate::DsConfig::max_welcome_snapshots`] Welcome trees, each for
//!   at most [`crate::DsConfig::welcome_retention_ms`]; the [`RecordKind::WelcomeSnapshots`]
//!   index holds, per kept tree, a KeyPackageRef, a signature key and an expiry per joiner (at
//!   most a few hundred bytes per client the adding commit added). [`RecordKind::Sequencer`]
//!   (in groups stored before [`RecordKind::Activity`] existed)
//!   and [`RecordKind::Activity`] grow with the number of leaves (8 bytes each); the other
//!   records are a few bytes.
//! * **Attacker-controlled data.** Group IDs and replay keys are chosen by (possibly
//!   malicious) clients: treat them as arbitrary bytes (no path or query construction without
//!   escaping) and bound their number with rate limits in front of the DS. Record contents are
//!   written by mimi-ds but embed client-supplied MLS data; backends should not parse them.
//! * Replay marks carry an expiry. A mark is **live at every `now <= expires_at_ms`**
//!   (inclusive): [`DsStorage::replay_mark`] returns it, and a write carrying the same key
//!   conflicts. A backend may drop it once `now > expires_at_ms`. mimi-ds does not rely on
//!   the boundary: it sets `expires_at_ms` 1 s after the last instant at which the request
//!   could be accepted again (wire-format.md §3.4), so a backend that treats the expiry as
//!   exclusive, or runs its own clock up to 1 s ahead, still never accepts the same request
//!   twice. Group entries that hold only a [`RecordKind::Reservation`] may be dropped once the reservation
//!   expired (its record starts with the expiry as a big-endian u64, ms since the UNIX epoch).
//! * A refused request writes nothing, with one exception: a `create_group` whose
//!   `ClientSignature` verifies against the tree it sent but whose group does not validate
//!   deletes the [`RecordKind::Reservation`] (and nothing else), so one reservation buys at
//!   most one full validation (wire-format.md §4.2).
//! * The write set also lists the fanout it causes ([`WriteSet::fanout`]), so a backend can
//!   persist it in the same transaction as a durable outbox and let the caller mark entries
//!   delivered afterwards.
//! * **The durable outbox ([`DsOutbox`]).** A backend that implements it stores one
//!   [`OutboxEntry`] per [`Fanout`] of an applied write set, in the order of
//!   [`WriteSet::fanout`], **in the same atomic write**: an applied write has all of them, a
//!   conflicted or failed write none. Entry IDs are unique, increase in the order one write stores
//!   its entries, and are never reused; across concurrent writes, an entry with a smaller ID may
//!   become visible later (a database sequence hands out IDs before commit), so a relay must not
//!   treat the highest ID it saw as a watermark. [`DsOutbox::pending`] lists due entries oldest first,
//!   [`DsOutbox::mark_delivered`] removes one, [`DsOutbox::retry_later`] counts an attempt and
//!   sets the next attempt time. Per destination the order holds across retries:
//!   `pending` leaves out every entry that has an older entry of its destination not yet due,
//!   so fanouts written after a failed delivery never overtake the entry waiting for its
//!   retry, whichever replica drains the outbox. So a write that applied and then reported failure, or a process
//!   that stopped before delivering, loses no fanout: a relay drains the outbox, also from a
//!   new process ([module `outbox`](outbox)). [`InMemoryStorage::with_outbox`] implements it (its
//!   outbox is part of the compared state; [`InMemoryStorage::new`] keeps none, since nothing
//!   would drain it); so do the `mimi-ds-sqlite` crate and `mimi-ds-postgres` (async).
//! * **Sizes.** The contract sets no upper bound on a record beyond the growth described above;
//!   a backend that cannot store a value (SQLite's default limit is 1 GB per value) returns
//!   `Err` naming the group, and writes nothing.
//! * **Async backends** implement [`AsyncDsStorage`] (and [`AsyncDsOutbox`]) instead: the same
//!   contract, method for method, with each method returning a `Send` future.
//!   [`crate::DeliveryService::process_async`] drives a request over them; a server with
//!   other I/O needs drives the step API itself ([`crate::DsStep`]): each
//!   [`crate::DsRead`] of a step is one call of [`DsStorage::read`] or
//!   [`DsStorage::replay_mark`], and each write is one [`DsStorage::write`].
//! * **Conformance.** `mimi_ds::testing::conformance` (feature `test-utils`) checks all of the
//!   above against any backend; run it in the backend's tests.

mod async_storage;
mod memory;
pub mod outbox;

pub use async_storage::{AsyncDsOutbox, AsyncDsStorage};
pub use memory::{InMemoryStorage, Infallible};
pub use outbox::{CorruptOutboxEntry, DsOutbox, OutboxEntry};

/// The expiry a [`RecordKind::Reservation`] or [`RecordKind::WelcomeTree`] record starts with
/// (ms since the UNIX epoch, a big-endian u64; see the module's contract), for backends that
/// drop expired records. `None` if the record is shorter than that.
pub fn record_expiry_ms(record: &[u8]) -> Option<u64> {
    record
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// How an error names a group, queue or other client-chosen ID: lower-case hex of at most its
/// first 32 bytes, then `...` (IDs are chosen by clients and may be long). For backends, so
/// every error names IDs alike.
pub fn id_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 * bytes.len().min(32) + 3);
    for byte in bytes.iter().take(32) {
        let _ = write!(out, "{byte:02x}");
    }
    if bytes.len() > 32 {
        out.push_str("...");
    }
    out
}

use crate::fanout::Fanout;

/// The kinds of record mimi-ds keeps per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// A group ID issued by `request_group_id` and not yet used.
    Reservation,
    /// Epoch, ciphersuite and per-leaf signature key and queue configuration: everything
    /// needed to authenticate a member and fan out to the group.
    Roster,
    /// The next sequence number; the only record an application message writes.
    Sequencer,
    /// The openmls public group state (ratchet tree, context, proposal queue).
    MlsState,
    /// The current epoch's verified GroupInfo.
    GroupInfo,
    /// Pending proposals of the current epoch with their acceptance times.
    PendingProposals,
    /// Marks a deleted group, so its ID can neither be reused nor sent to.
    Tombstone,
    /// The index of pending Welcome snapshots: per epoch in which clients were added, the
    /// joiners that have not fetched its tree yet. Small; read and written by commits.
    WelcomeSnapshots,
    /// The ratchet tree of one epoch listed in [`RecordKind::WelcomeSnapshots`], as its
    /// difference from the current tree: a **keyed** kind, one record per epoch. The current
    /// epoch has none (its tree is [`RecordKind::MlsState`]'s); written by the commit that
    /// moves the group on from an epoch whose joiners have not all fetched it, and rewritten by
    /// every later commit against its new tree; read by commits and `welcome_info`, deleted
    /// when no joiner needs it any more.
    WelcomeTree {
        /// The epoch the adding commit created.
        epoch: u64,
    },
    /// Pseudonymous groups only (wire-format.md §14.2): per leaf, the member's
    /// `identity_link_key` wrapped under the room's key, which the hub cannot open. Grows by at
    /// most one small entry per leaf; absent in every other group.
    IdentityLinks,
    /// When each leaf last sent something, for inactivity removals (DS-00 §6): 8 bytes per
    /// leaf. Written by commits, and by a message only when its sender's stored time is at
    /// least [`crate::DsConfig::activity_granularity_ms`] old; absent in groups stored before
    /// it existed, whose [`RecordKind::Sequencer`] holds the times instead
    /// (wire-format.md §16.1).
    Activity,
    /// Privacy-mode groups only (wire-format.md §17.6): the sealed list of the version each of
    /// the group's other sealed records was written at, with the group's ciphersuite in the
    /// clear. Its presence marks a group as a privacy-mode group; absent in every other group.
    Manifest,
}

impl RecordKind {
    /// Every kind without a key, for backends that iterate. Keyed kinds
    /// ([`RecordKind::WelcomeTree`]) are one kind per key and not listed.
    pub const ALL: [Self; 11] = [
        Self::Reservation,
        Self::Roster,
        Self::Sequencer,
        Self::MlsState,
        Self::GroupInfo,
        Self::PendingProposals,
        Self::Tombstone,
        Self::WelcomeSnapshots,
        Self::IdentityLinks,
        Self::Activity,
        Self::Manifest,
    ];

    /// The kind as two integers a backend stores, `(code, key)`: the key is a `WelcomeTree`'s
    /// epoch and 0 for every other kind. The numbers are stored by the SQLite and PostgreSQL
    /// backends and bound into privacy mode's seals as the `SealedKind` (wire-format.md
    /// §17.5), so they never change; a new kind takes a new number.
    pub fn stored_code(self) -> (u16, u64) {
        match self {
            Self::Reservation => (1, 0),
            Self::Roster => (2, 0),
            Self::Sequencer => (3, 0),
            Self::MlsState => (4, 0),
            Self::GroupInfo => (5, 0),
            Self::PendingProposals => (6, 0),
            Self::Tombstone => (7, 0),
            Self::WelcomeSnapshots => (8, 0),
            Self::WelcomeTree { epoch } => (9, epoch),
            Self::Activity => (10, 0),
            // Stored identifiers, not a sequence: MIMIMI kinds start at 24, privacy mode's
            // at 32.
            Self::IdentityLinks => (24, 0),
            Self::Manifest => (32, 0),
        }
    }

    /// The kind [`RecordKind::stored_code`] gave `(code, key)`; `None` for a code no kind has,
    /// or a key on a kind without one (a corrupt row).
    pub fn from_stored_code(code: u16, key: u64) -> Option<Self> {
        if code == 9 {
            return Some(Self::WelcomeTree { epoch: key });
        }
        let kind = Self::ALL
            .into_iter()
            .find(|kind| kind.stored_code().0 == code)?;
        (key == 0).then_some(kind)
    }
}

/// What a read returned: the group's version and the requested records that exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// The version all records were read at.
    pub version: u64,
    /// The requested records that exist, in any order.
    pub records: Vec<(RecordKind, Vec<u8>)>,
}

impl GroupSnapshot {
    /// The record of a kind, if it was requested and exists.
    pub fn record(&self, kind: RecordKind) -> Option<&[u8]> {
        self.records
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

/// The condition a [`WriteSet`] is applied under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionGuard {
    /// The group must not exist; it is created at version 1.
    Absent,
    /// The group must be at exactly this version; it moves to version + 1.
    Exactly(u64),
    /// Only the replay mark is written; the group and its version are untouched.
    ReplayMarkOnly,
}

/// A remembered request, used to reject replays and to answer retries identically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMark {
    /// Hash of the complete request bytes.
    pub request_hash: Vec<u8>,
    /// The mark is live up to and including this time, and may be dropped after it (ms since
    /// the UNIX epoch; see the module's contract).
    pub expires_at_ms: u64,
    /// For requests that changed state: the success response, returned again to a
    /// byte-identical retry.
    pub response: Option<Vec<u8>>,
}

/// One change to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Create or replace the record.
    Put(RecordKind, Vec<u8>),
    /// Remove the record if it exists.
    Delete(RecordKind),
}

/// Everything one request changes, applied atomically by [`DsStorage::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSet {
    /// The group.
    pub group_id: Vec<u8>,
    /// When to apply.
    pub guard: VersionGuard,
    /// Record changes (empty for [`VersionGuard::ReplayMarkOnly`]).
    pub records: Vec<RecordWrite>,
    /// A replay mark to insert, keyed by the hash of the signed content. The write conflicts if
    /// a mark with this key exists.
    pub replay_mark: Option<(Vec<u8>, ReplayMark)>,
    /// The request's `now`, so a backend can expire old marks and reservations while writing.
    pub now_ms: u64,
    /// The fanout this write causes, for backends that keep a durable outbox.
    pub fanout: Vec<Fanout>,
}

/// Whether a [`WriteSet`] was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum WriteOutcome {
    /// Every change is durable.
    Applied,
    /// The guard did not hold; nothing changed.
    Conflict,
}

/// Storage for the Delivery Service. See the [module documentation](self) for the contract.
pub trait DsStorage {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads the group's version and those of `kinds` that exist, from one consistent
    /// snapshot. `Ok(None)` if the group does not exist.
    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Self::Error>;

    /// Reads a replay mark that is live at `now_ms` (`now_ms <= expires_at_ms`).
    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error>;

    /// Applies a write set atomically if its guard holds.
    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::RecordKind;

    /// The numbers are in every SQLite and PostgreSQL database and in every privacy-mode seal:
    /// this list is what they were, and a change to it breaks stored groups.
    #[test]
    fn the_stored_codes_are_the_ones_databases_hold() {
        let codes: Vec<(u16, u64)> = RecordKind::ALL.iter().map(|k| k.stored_code()).collect();
        assert_eq!(
            codes,
            [1, 2, 3, 4, 5, 6, 7, 8, 24, 10, 32].map(|code| (code, 0))
        );
        assert_eq!(RecordKind::WelcomeTree { epoch: 77 }.stored_code(), (9, 77));
    }

    #[test]
    fn every_kind_comes_back_from_its_stored_code() {
        let keyed = [0, 1, u64::MAX].map(|epoch| RecordKind::WelcomeTree { epoch });
        for kind in RecordKind::ALL.into_iter().chain(keyed) {
            let (code, key) = kind.stored_code();
            assert_eq!(RecordKind::from_stored_code(code, key), Some(kind));
        }
    }

    #[test]
    fn unknown_codes_and_keys_on_unkeyed_kinds_are_refused() {
        for code in [0, 11, 23, 25, 31, 33, u16::MAX] {
            assert_eq!(RecordKind::from_stored_code(code, 0), None, "code {code}");
        }
        for kind in RecordKind::ALL {
            let (code, _) = kind.stored_code();
            assert_eq!(RecordKind::from_stored_code(code, 1), None, "{kind:?}");
        }
    }
}
