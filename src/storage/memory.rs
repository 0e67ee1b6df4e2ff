//! [`InMemoryStorage`]: the reference [`DsStorage`] backend, for tests, demos and as a model
//! for real backends.

use std::collections::{BTreeMap, HashMap};

use super::{
    DsStorage, GroupSnapshot, RecordKind, RecordWrite, ReplayMark, VersionGuard, WriteOutcome,
    WriteSet,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct GroupEntry {
    version: u64,
    records: BTreeMap<RecordKind, Vec<u8>>,
}

/// A [`DsStorage`] in process memory. `Clone` and `PartialEq` let tests snapshot it and assert
/// that a rejected request left it byte-identical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InMemoryStorage {
    groups: HashMap<Vec<u8>, GroupEntry>,
    replay_marks: HashMap<(Vec<u8>, Vec<u8>), ReplayMark>,
}

/// [`InMemoryStorage`] never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("in-memory storage cannot fail")]
pub enum Infallible {}

impl InMemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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

        self.replay_marks
            .retain(|_, m| m.expires_at_ms >= ws.now_ms);
        if let (Some(key), Some((_, mark))) = (mark_key, &ws.replay_mark) {
            self.replay_marks.insert(key, mark.clone());
        }
        if ws.guard != VersionGuard::ReplayMarkOnly {
            let entry = self.groups.entry(ws.group_id.clone()).or_default();
            entry.version += 1;
            for change in &ws.records {
                match change {
                    RecordWrite::Put(kind, bytes) => {
                        entry.records.insert(*kind, bytes.clone());
                    }
                    RecordWrite::Delete(kind) => {
                        entry.records.remove(kind);
                    }
                }
            }
        }
        Ok(WriteOutcome::Applied)
    }
}
