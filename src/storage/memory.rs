//! [`InMemoryStorage`]: the reference [`DsStorage`] backend, for tests, demos and as a model
//! for real backends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::fanout::Fanout;

use super::{
    DsOutbox, DsStorage, GroupSnapshot, OutboxEntry, RecordKind, RecordWrite, ReplayMark,
    VersionGuard, WriteOutcome, WriteSet,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct GroupEntry {
    version: u64,
    records: BTreeMap<RecordKind, Vec<u8>>,
}

/// A [`DsStorage`] in process memory. `Clone` and `PartialEq` let tests snapshot it and assert
/// that a rejected request left it byte-identical.
///
/// Expired replay marks and reservations are dropped while writing, through indexes ordered by
/// expiry: a write visits only the entries that expired (plus one live entry that stops the
/// sweep), never every mark, so its cost does not grow with the number of live marks.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStorage {
    groups: HashMap<Vec<u8>, GroupEntry>,
    replay_marks: HashMap<MarkKey, ReplayMark>,
    /// `(expires_at_ms, group, key)` of every entry of `replay_marks`, and nothing else.
    mark_expiries: BTreeSet<(u64, MarkKey)>,
    /// `(expires_at_ms, group)` of reservations written; an entry is stale (and skipped) once
    /// the group holds more than a reservation, or another one.
    reservation_expiries: BTreeSet<(u64, Vec<u8>)>,
    /// How many index entries the expiry sweeps examined, for tests of their cost.
    expiry_entries_examined: u64,
    /// The durable outbox ([`DsOutbox`]) by entry ID: one entry per fanout of every applied
    /// write set, until marked delivered.
    outbox: BTreeMap<u64, HeldEntry>,
    /// The ID the next outbox entry gets; IDs are never reused.
    next_outbox_id: u64,
    /// Whether applied writes add outbox entries ([`InMemoryStorage::with_outbox`]). Off by
    /// default: a process that delivers [`crate::Outcome::fanout`] itself and never drains the
    /// outbox would otherwise keep every fanout in memory for ever.
    keeps_outbox: bool,
}

/// A replay mark's key: the group and the replay key.
type MarkKey = (Vec<u8>, Vec<u8>);

/// An outbox entry as this store holds it: the [`Fanout`] itself, which shares its recipient
/// list and message with the write set, encoded only when [`DsOutbox::pending`] hands it out.
/// A write so costs the same whatever the number of recipients (wire-format.md §16.2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldEntry {
    id: u64,
    group_id: Vec<u8>,
    fanout: Fanout,
    created_at_ms: u64,
    attempts: u32,
    next_attempt_at_ms: u64,
}

impl HeldEntry {
    /// The entry as [`DsOutbox::pending`] returns it, with the encoded request.
    fn entry(&self) -> OutboxEntry {
        OutboxEntry {
            id: self.id,
            group_id: self.group_id.clone(),
            destination: self.fanout.destination.clone(),
            request: self.fanout.to_bytes(),
            created_at_ms: self.created_at_ms,
            attempts: self.attempts,
            next_attempt_at_ms: self.next_attempt_at_ms,
        }
    }
}

/// The stored data only (groups, replay marks and the outbox): the indexes mirror it and the
/// sweep counter is a measurement.
impl PartialEq for InMemoryStorage {
    fn eq(&self, other: &Self) -> bool {
        self.groups == other.groups
            && self.replay_marks == other.replay_marks
            && self.outbox == other.outbox
            && self.next_outbox_id == other.next_outbox_id
    }
}
impl Eq for InMemoryStorage {}

/// [`InMemoryStorage`] never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("in-memory storage cannot fail")]
pub enum Infallible {}

impl InMemoryStorage {
    /// An empty store without an outbox: the fanout of a write is only in the
    /// [`crate::Outcome`] (the process holding this memory is the only place it could be kept).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps a [`DsOutbox`]: every applied write adds one entry per fanout,
    /// until a relay marks it delivered. For tests of relays and for the conformance suite.
    pub fn with_outbox() -> Self {
        Self {
            keeps_outbox: true,
            ..Self::default()
        }
    }

    /// The number of groups (including reservations and tombstones).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Total bytes of all records of a group, for measurements.
    pub fn group_bytes(&self, group_id: &[u8]) -> usize {
        self.groups
            .get(group_id)
            .map_or(0, |g| g.records.values().map(Vec::len).sum())
    }

    /// Bytes of one record of a group, for measurements.
    pub fn record_bytes(&self, group_id: &[u8], kind: RecordKind) -> usize {
        self.groups
            .get(group_id)
            .and_then(|g| g.records.get(&kind))
            .map_or(0, Vec::len)
    }

    /// The version of a group, if it exists.
    pub fn version(&self, group_id: &[u8]) -> Option<u64> {
        self.groups.get(group_id).map(|g| g.version)
    }

    /// The number of replay marks held, expired ones not yet dropped included.
    pub fn replay_mark_count(&self) -> usize {
        self.replay_marks.len()
    }

    /// The number of outbox entries not yet marked delivered, due or not.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Drops the replay marks and reservation-only groups that expired before `now_ms` (the
    /// storage contract: live while `now_ms <= expires_at_ms`). Walks each index from its
    /// earliest expiry and stops at the first live entry.
    fn drop_expired(&mut self, now_ms: u64) {
        while let Some((expires_at_ms, _)) = self.mark_expiries.first() {
            self.expiry_entries_examined += 1;
            if *expires_at_ms >= now_ms {
                break;
            }
            if let Some((_, key)) = self.mark_expiries.pop_first() {
                self.replay_marks.remove(&key);
            }
        }
        while let Some((expires_at_ms, _)) = self.reservation_expiries.first() {
            self.expiry_entries_examined += 1;
            if *expires_at_ms >= now_ms {
                break;
            }
            let Some((expires_at_ms, group_id)) = self.reservation_expiries.pop_first() else {
                break;
            };
            let only_this_reservation = self.groups.get(&group_id).is_some_and(|g| {
                g.records.len() == 1
                    && g.records
                        .get(&RecordKind::Reservation)
                        .and_then(|r| super::record_expiry_ms(r.as_slice()))
                        == Some(expires_at_ms)
            });
            if only_this_reservation {
                self.groups.remove(&group_id);
            }
        }
    }
}

impl DsStorage for InMemoryStorage {
    type Error = Infallible;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Infallible> {
        Ok(self.groups.get(group_id).map(|g| GroupSnapshot {
            version: g.version,
            records: kinds
                .iter()
                .filter_map(|k| g.records.get(k).map(|v| (*k, v.clone())))
                .collect(),
        }))
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Infallible> {
        Ok(self
            .replay_marks
            .get(&(group_id.to_vec(), key.to_vec()))
            .filter(|m| m.expires_at_ms >= now_ms)
            .cloned())
    }

    fn write(&mut self, ws: &WriteSet) -> Result<WriteOutcome, Infallible> {
        // Check every condition before changing anything: the write is all or nothing.
        let current = self.groups.get(&ws.group_id).map(|g| g.version);
        let guard_holds = match ws.guard {
            VersionGuard::Absent => current.is_none(),
            VersionGuard::Exactly(v) => current == Some(v),
            VersionGuard::ReplayMarkOnly => true,
        };
        let mark_key = ws
            .replay_mark
            .as_ref()
            .map(|(k, _)| (ws.group_id.clone(), k.clone()));
        let mark_is_new = mark_key.as_ref().is_none_or(|k| {
            self.replay_marks
                .get(k)
                .is_none_or(|m| m.expires_at_ms < ws.now_ms)
        });
        if !guard_holds || !mark_is_new {
            return Ok(WriteOutcome::Conflict);
        }

        if let (Some(key), Some((_, mark))) = (mark_key, &ws.replay_mark) {
            // An expired mark with the same key may still be held: its index entry goes too.
            if let Some(old) = self.replay_marks.insert(key.clone(), mark.clone()) {
                self.mark_expiries.remove(&(old.expires_at_ms, key.clone()));
            }
            self.mark_expiries.insert((mark.expires_at_ms, key));
        }
        if ws.guard != VersionGuard::ReplayMarkOnly {
            let entry = self.groups.entry(ws.group_id.clone()).or_default();
            entry.version += 1;
            for change in &ws.records {
                match change {
                    RecordWrite::Put(kind, bytes) => {
                        if *kind == RecordKind::Reservation {
                            if let Some(expires_at_ms) = super::record_expiry_ms(bytes) {
                                self.reservation_expiries
                                    .insert((expires_at_ms, ws.group_id.clone()));
                            }
                        }
                        entry.records.insert(*kind, bytes.clone());
                    }
                    RecordWrite::Delete(kind) => {
                        entry.records.remove(kind);
                    }
                }
            }
        }
        for fanout in ws.fanout.iter().filter(|_| self.keeps_outbox) {
            self.next_outbox_id += 1;
            let entry = HeldEntry {
                id: self.next_outbox_id,
                group_id: ws.group_id.clone(),
                fanout: fanout.clone(),
                created_at_ms: ws.now_ms,
                attempts: 0,
                next_attempt_at_ms: ws.now_ms,
            };
            self.outbox.insert(entry.id, entry);
        }
        // After the changes, so a group this write turns from a reservation into a group stays.
        self.drop_expired(ws.now_ms);
        Ok(WriteOutcome::Applied)
    }
}

impl DsOutbox for InMemoryStorage {
    fn pending(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, Infallible> {
        // In ID order, a put-off entry holds back every later entry of its destination.
        let mut held_back: HashSet<&str> = HashSet::new();
        Ok(self
            .outbox
            .values()
            .filter(|entry| {
                let destination = entry.fanout.destination.as_str();
                if held_back.contains(destination) {
                    return false;
                }
                if entry.next_attempt_at_ms > now_ms {
                    held_back.insert(destination);
                    return false;
                }
                true
            })
            .take(limit)
            .map(HeldEntry::entry)
            .collect())
    }

    fn mark_delivered(&mut self, id: u64) -> Result<bool, Infallible> {
        Ok(self.outbox.remove(&id).is_some())
    }

    fn retry_later(&mut self, id: u64, next_attempt_at_ms: u64) -> Result<bool, Infallible> {
        Ok(self.outbox.get_mut(&id).is_some_and(|entry| {
            entry.attempts = entry.attempts.saturating_add(1);
            entry.next_attempt_at_ms = next_attempt_at_ms;
            true
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark_write(group: &[u8], key: &[u8], expires_at_ms: u64, now_ms: u64) -> WriteSet {
        WriteSet {
            group_id: group.to_vec(),
            guard: VersionGuard::ReplayMarkOnly,
            records: Vec::new(),
            replay_mark: Some((
                key.to_vec(),
                ReplayMark {
                    request_hash: key.to_vec(),
                    expires_at_ms,
                    response: None,
                },
            )),
            now_ms,
            fanout: Vec::new(),
        }
    }

    fn reservation_write(group: &[u8], expires_at_ms: u64, now_ms: u64) -> WriteSet {
        WriteSet {
            group_id: group.to_vec(),
            guard: VersionGuard::Absent,
            records: vec![RecordWrite::Put(
                RecordKind::Reservation,
                expires_at_ms.to_be_bytes().to_vec(),
            )],
            replay_mark: None,
            now_ms,
            fanout: Vec::new(),
        }
    }

    fn apply(store: &mut InMemoryStorage, ws: &WriteSet) {
        assert_eq!(store.write(ws), Ok(WriteOutcome::Applied));
    }

    fn live(store: &InMemoryStorage, key: &[u8], now_ms: u64) -> bool {
        store.replay_mark(b"g", key, now_ms).unwrap().is_some()
    }

    /// Storage contract: a mark is live while `now <= expires_at_ms`; a write at `now` drops
    /// exactly the marks and reservation-only groups that expired before `now`.
    #[test]
    fn a_write_drops_what_expired_and_keeps_what_is_live_around_the_boundary() {
        const E: u64 = 1_000;
        let mut store = InMemoryStorage::new();
        for (key, expires) in [(b"early", E - 1), (b"exact", E), (b"later", E + 1)] {
            apply(&mut store, &mark_write(b"g", key, expires, 0));
        }
        apply(&mut store, &reservation_write(b"reserved", E, 0));
        apply(&mut store, &reservation_write(b"created", E - 1, 0));
        // `created` becomes a group: its reservation is replaced by a roster.
        apply(
            &mut store,
            &WriteSet {
                group_id: b"created".to_vec(),
                guard: VersionGuard::Exactly(1),
                records: vec![
                    RecordWrite::Delete(RecordKind::Reservation),
                    RecordWrite::Put(RecordKind::Roster, vec![1]),
                ],
                replay_mark: None,
                now_ms: 0,
                fanout: Vec::new(),
            },
        );
        assert!(live(&store, b"exact", E), "live at exactly expires_at_ms");
        assert!(!live(&store, b"exact", E + 1));

        apply(&mut store, &mark_write(b"other", b"k1", E + 10, E));
        assert_eq!(store.replay_mark_count(), 3, "only `early` is dropped at E");
        assert!(live(&store, b"exact", E) && live(&store, b"later", E));
        assert!(
            store.version(b"reserved").is_some(),
            "a reservation is live at its expiry"
        );

        apply(&mut store, &mark_write(b"other", b"k2", E + 10, E + 1));
        assert_eq!(store.replay_mark_count(), 3, "`exact` is dropped at E + 1");
        assert!(!live(&store, b"exact", E) && live(&store, b"later", E + 1));
        assert_eq!(
            store.version(b"reserved"),
            None,
            "an expired reservation is dropped"
        );
        assert_eq!(
            store.version(b"created"),
            Some(2),
            "a created group is never dropped"
        );
        assert_eq!(store.mark_expiries.len(), store.replay_marks.len());
    }

    /// A mark written again under the same key after it expired replaces the old one, and the
    /// index keeps one entry for it.
    #[test]
    fn an_expired_key_written_again_has_one_index_entry() {
        let mut store = InMemoryStorage::new();
        apply(&mut store, &mark_write(b"g", b"k", 10, 0));
        // Another group's write does not reach `k` before 11.
        apply(&mut store, &mark_write(b"g", b"k", 50, 11));
        assert_eq!(store.mark_expiries.len(), 1);
        assert!(live(&store, b"k", 50));
    }

    /// The sweep's cost: with many live marks and a few expired ones, a write examines the
    /// expired entries and one live entry per index, not every mark.
    #[test]
    fn a_write_examines_only_expired_entries() {
        const LIVE: u32 = 2_000;
        let mut store = InMemoryStorage::new();
        for i in 0..LIVE {
            apply(
                &mut store,
                &mark_write(b"g", &i.to_be_bytes(), 1_000_000, 0),
            );
        }
        for key in [b"x1", b"x2", b"x3"] {
            apply(&mut store, &mark_write(b"g", key, 100, 0));
        }
        apply(&mut store, &reservation_write(b"r", 1_000_000, 0));
        let before = store.expiry_entries_examined;
        apply(&mut store, &mark_write(b"g", b"new", 1_000_000, 101));
        let examined = store.expiry_entries_examined - before;
        assert_eq!(store.replay_mark_count(), LIVE as usize + 1);
        // 3 expired marks + the first live mark + the first live reservation.
        assert_eq!(examined, 5, "examined {examined} index entries");
    }
}
