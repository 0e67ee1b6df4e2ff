//! [`AsyncQsStorage`]: the Queueing Service's storage contract for async backends.
//!
//! The contract is [`QsStorage`]'s, method for method (see the [module documentation of the
//! QS storage](super::QsStorage)); only the calling convention differs, as for the DS's
//! [`AsyncDsStorage`](crate::storage::AsyncDsStorage).
//! [`QueueingService::deliver_async`](super::QueueingService::deliver_async) and
//! [`QueueingService::client_request_async`](super::QueueingService::client_request_async)
//! drive a request over it.

use std::future::{ready, Future};

use super::{InMemoryQsStorage, QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord};
use crate::storage::Infallible;
use crate::wire::QueuedMessage;

/// [`QsStorage`] for async backends: the same contract, with each method returning a future.
pub trait AsyncQsStorage: Send {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A queue's record. As [`QsStorage::queue`].
    fn queue(
        &self,
        queue_id: &[u8],
    ) -> impl Future<Output = Result<Option<QueueRecord>, Self::Error>> + Send;

    /// The queue owned by this key, if any. As [`QsStorage::queue_of_owner`].
    fn queue_of_owner(
        &self,
        owner_key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>> + Send;

    /// A page of a queue's messages. As [`QsStorage::messages`].
    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>, Self::Error>> + Send;

    /// Whether the queue holds an unexpired mark with this hash. As [`QsStorage::has_mark`].
    fn has_mark(
        &self,
        queue_id: &[u8],
        hash: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Applies the write set atomically if every guard holds. As [`QsStorage::write`].
    fn write(
        &mut self,
        writes: &QsWriteSet,
    ) -> impl Future<Output = Result<QsWriteOutcome, Self::Error>> + Send;
}

// Memory never waits: every future is ready when it is created.
impl AsyncQsStorage for InMemoryQsStorage {
    type Error = Infallible;

    fn queue(
        &self,
        queue_id: &[u8],
    ) -> impl Future<Output = Result<Option<QueueRecord>, Infallible>> + Send {
        ready(QsStorage::queue(self, queue_id))
    }

    fn queue_of_owner(
        &self,
        owner_key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Infallible>> + Send {
        ready(QsStorage::queue_of_owner(self, owner_key))
    }

    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>, Infallible>> + Send {
        ready(QsStorage::messages(
            self,
            queue_id,
            from_sequence,
            limit,
            max_bytes,
        ))
    }

    fn has_mark(
        &self,
        queue_id: &[u8],
        hash: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(QsStorage::has_mark(self, queue_id, hash, now_ms))
    }

    fn write(
        &mut self,
        writes: &QsWriteSet,
    ) -> impl Future<Output = Result<QsWriteOutcome, Infallible>> + Send {
        ready(QsStorage::write(self, writes))
    }
}
