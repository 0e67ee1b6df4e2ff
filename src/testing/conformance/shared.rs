//! [`SharedInMemoryStorage`]: handles on one [`InMemoryStorage`], as connections on one
//! database.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::storage::{
    DsOutbox, DsStorage, GroupSnapshot, InMemoryStorage, Infallible, OutboxEntry, RecordKind,
    ReplayMark, WriteOutcome, WriteSet,
};

/// One [`InMemoryStorage`] behind a mutex; each clone is another handle on the same data, as
/// each connection to one database is. Every call holds the lock for its whole duration, so a
/// write is atomic to the other handles, as a transaction is. Lets the conformance suite race
/// two handles on two threads and "reopen" the store after dropping a handle.
#[derive(Debug, Clone)]
pub struct SharedInMemoryStorage(Arc<Mutex<InMemoryStorage>>);

impl SharedInMemoryStorage {
    /// A new, empty store that keeps an outbox ([`InMemoryStorage::with_outbox`]).
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(InMemoryStorage::with_outbox())))
    }

    /// A copy of the data as it is now.
    pub fn snapshot(&self) -> InMemoryStorage {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, InMemoryStorage> {
        // A panicking test thread cannot leave a write half done: writes check before changing.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for SharedInMemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl DsStorage for SharedInMemoryStorage {
    type Error = Infallible;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Infallible> {
        self.lock().read(group_id, kinds)
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Infallible> {
        self.lock().replay_mark(group_id, key, now_ms)
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Infallible> {
        self.lock().write(write_set)
    }
}

impl DsOutbox for SharedInMemoryStorage {
    fn pending(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, Infallible> {
        self.lock().pending(now_ms, limit)
    }

    fn mark_delivered(&mut self, id: u64) -> Result<bool, Infallible> {
        self.lock().mark_delivered(id)
    }

    fn retry_later(&mut self, id: u64, next_attempt_at_ms: u64) -> Result<bool, Infallible> {
        self.lock().retry_later(id, next_attempt_at_ms)
    }
}
