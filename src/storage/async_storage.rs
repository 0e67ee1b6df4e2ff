//! The storage contract for async servers: [`AsyncDsStorage`] and [`AsyncDsOutbox`] are
//! [`DsStorage`](super::DsStorage) and [`DsOutbox`](super::DsOutbox) with methods that return
//! futures, for backends whose I/O is async (`mimi-ds-postgres` over tokio-postgres).
//!
//! The contract is the sync one, method for method (see the [module documentation](super)):
//! the same atomic, guarded write, the same replay-mark boundary, the same outbox. Only the
//! calling convention differs. [`crate::DeliveryService::process_async`] drives a request over
//! these traits; it needs no runtime, and its future is `Send` when the storage is, so a tokio
//! server can `spawn` it.
//!
//! The futures are return-position `impl Future + Send` (no `async-trait` boxing). A backend
//! written with `async fn` satisfies them as long as what it holds across an `.await` is
//! `Send`.
//!
//! [`InMemoryStorage`](super::InMemoryStorage) implements both traits with futures that are
//! ready at once, which is right for memory and wrong for blocking I/O: a backend that blocks
//! (rusqlite) should implement the sync traits and run [`crate::DeliveryService::process`] on a
//! blocking thread instead.

use std::future::{ready, Future};

use super::{
    DsOutbox, DsStorage, GroupSnapshot, InMemoryStorage, Infallible, OutboxEntry, RecordKind,
    ReplayMark, WriteOutcome, WriteSet,
};

/// [`DsStorage`](super::DsStorage) for async backends: the same contract, with each method
/// returning a future.
pub trait AsyncDsStorage: Send {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads the group's version and those of `kinds` that exist, from one consistent
    /// snapshot. `Ok(None)` if the group does not exist. As [`DsStorage::read`].
    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> impl Future<Output = Result<Option<GroupSnapshot>, Self::Error>> + Send;

    /// Reads a replay mark that is live at `now_ms` (`now_ms <= expires_at_ms`). As
    /// [`DsStorage::replay_mark`].
    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<ReplayMark>, Self::Error>> + Send;

    /// Applies a write set atomically if its guard holds. As [`DsStorage::write`]: with an
    /// outbox ([`AsyncDsOutbox`]), the write set's fanout is stored in the same transaction.
    fn write(
        &mut self,
        write_set: &WriteSet,
    ) -> impl Future<Output = Result<WriteOutcome, Self::Error>> + Send;
}

/// [`DsOutbox`](super::DsOutbox) for async backends: the same contract, with each method
/// returning a future.
pub trait AsyncDsOutbox: AsyncDsStorage {
    /// Up to `limit` entries due at `now_ms`, oldest first, leaving out every entry that has
    /// an older entry of the same destination not yet due. As [`DsOutbox::pending`] (see
    /// [`DsOutbox`] on the order per destination).
    fn pending(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, Self::Error>> + Send;

    /// Removes a delivered entry; `Ok(false)` if there was none. As
    /// [`DsOutbox::mark_delivered`].
    fn mark_delivered(&mut self, id: u64)
        -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Counts a failed attempt and hides the entry, and the newer entries of its destination,
    /// until `next_attempt_at_ms`; `Ok(false)` if there was none. As
    /// [`DsOutbox::retry_later`].
    fn retry_later(
        &mut self,
        id: u64,
        next_attempt_at_ms: u64,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

// Memory never waits: every future is ready when it is created.

impl AsyncDsStorage for InMemoryStorage {
    type Error = Infallible;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> impl Future<Output = Result<Option<GroupSnapshot>, Infallible>> + Send {
        ready(DsStorage::read(self, group_id, kinds))
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<ReplayMark>, Infallible>> + Send {
        ready(DsStorage::replay_mark(self, group_id, key, now_ms))
    }

    fn write(
        &mut self,
        write_set: &WriteSet,
    ) -> impl Future<Output = Result<WriteOutcome, Infallible>> + Send {
        ready(DsStorage::write(self, write_set))
    }
}

impl AsyncDsOutbox for InMemoryStorage {
    fn pending(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, Infallible>> + Send {
        ready(DsOutbox::pending(self, now_ms, limit))
    }

    fn mark_delivered(&mut self, id: u64) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(DsOutbox::mark_delivered(self, id))
    }

    fn retry_later(
        &mut self,
        id: u64,
        next_attempt_at_ms: u64,
    ) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(DsOutbox::retry_later(self, id, next_attempt_at_ms))
    }
}
