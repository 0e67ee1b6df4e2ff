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
//!   tree in [`RecordKind::MlsState`].
//! * **Attacker-controlled data.** Group IDs and replay keys are chosen by (possibly
//!   malicious) clients: treat them as arbitrary bytes (no path or query construction without
//!   escaping) and bound their number with rate limits in front of the DS. Record contents are
//!   written by mimi-ds but embed client-supplied MLS data; backends should not parse them.
//! * Replay marks carry an expiry; a backend may drop a mark once `now` passes it. Group
//!   entries that hold only a [`RecordKind::Reservation`] may be dropped once the reservation
//!   expired (its record starts with the expiry as a big-endian u64, ms since the UNIX epoch).
//! * A refused request writes nothing, with one exception: a `create_group` whose
//!   `ClientSignature` verifies against the tree it sent but whose group does not validate
//!   deletes the [`RecordKind::Reservation`] (and nothing else), so one reservation buys at
//!   most one full validation (wire-format.md §4.2).
//! * The write set also lists the fanout it causes ([`WriteSet::fanout`]), so a backend can
//!   persist it in the same transaction as a durable outbox and let the caller mark entries
//!   delivered afterwards.

mod memory;

pub use memory::{InMemoryStorage, Infallible};

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
    /// Ratchet trees of epochs whose Welcome joiners have not fetched them yet.
    WelcomeSnapshots,
}

impl RecordKind {
    /// Every kind, for backends that iterate.
    pub const ALL: [Self; 8] = [
        Self::Reservation,
        Self::Roster,
        Self::Sequencer,
        Self::MlsState,
        Self::GroupInfo,
        Self::PendingProposals,
        Self::Tombstone,
        Self::WelcomeSnapshots,
    ];
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
    /// The mark may be dropped after this time (ms since the UNIX epoch).
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

    /// Reads a replay mark that has not expired at `now_ms`.
    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error>;

    /// Applies a write set atomically if its guard holds.
    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error>;
}
