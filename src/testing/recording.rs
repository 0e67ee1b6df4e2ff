//! Storage wrappers for the concurrency and fault tests: they pass every call to an inner
//! storage, record what a request read and each write set it applied or lost, and can make
//! writes lose a race (another writer first, or a reported conflict). The storage contracts
//! they exercise are in [`crate::storage`] and [`crate::qs`].

use std::cell::RefCell;

use crate::qs::{QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord};
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, ReplayMark, WriteOutcome, WriteSet};
use crate::wire::QueuedMessage;

/// Another writer that runs on the inner storage just before the first write.
type Rival<'rival, S> = Box<dyn FnOnce(&mut S) + 'rival>;

/// A fault a recording storage injects into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// From the n-th write on (counting from 1), every write reports a conflict without
    /// reaching the inner storage, as a backend whose guard keeps failing would.
    ConflictFrom(usize),
}

impl Fault {
    fn conflicts(self, write_number: usize) -> bool {
        match self {
            Self::ConflictFrom(n) => write_number >= n,
        }
    }
}

/// One read a request made through a [`RecordingStorage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedRead {
    /// [`DsStorage::read`] of these record kinds of a group.
    Records {
        /// The group.
        group_id: Vec<u8>,
        /// The kinds asked for.
        kinds: Vec<RecordKind>,
    },
    /// [`DsStorage::replay_mark`] of a group.
    ReplayMark {
        /// The group.
        group_id: Vec<u8>,
        /// The mark's key.
        key: Vec<u8>,
    },
}

/// A [`DsStorage`] that delegates to `inner` and records each read and each [`WriteSet`] with
/// its [`WriteOutcome`]. Optionally it runs a rival writer just before the first write (a
/// request of another DS instance racing this one) or injects a [`Fault`].
pub struct RecordingStorage<'rival, S> {
    /// The wrapped storage: reads go to it, applied writes land in it.
    pub inner: S,
    reads: RefCell<Vec<RecordedRead>>,
    writes: Vec<(WriteSet, WriteOutcome)>,
    fault: Option<Fault>,
    rival: Option<Rival<'rival, S>>,
}

impl<'rival, S: DsStorage> RecordingStorage<'rival, S> {
    /// Wraps `inner`, recording only.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            reads: RefCell::new(Vec::new()),
            writes: Vec::new(),
            fault: None,
            rival: None,
        }
    }

    /// Injects `fault` into the writes.
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Runs `rival` on the inner storage once, just before the first write: another writer
    /// wins the race between this request's reads and its write.
    pub fn with_rival_before_first_write(mut self, rival: impl FnOnce(&mut S) + 'rival) -> Self {
        self.rival = Some(Box::new(rival));
        self
    }

    /// The reads so far, in order.
    pub fn reads(&self) -> Vec<RecordedRead> {
        self.reads.borrow().clone()
    }

    /// The record kinds read so far, in order, over all groups.
    pub fn kinds_read(&self) -> Vec<RecordKind> {
        self.reads
            .borrow()
            .iter()
            .flat_map(|read| match read {
                RecordedRead::Records { kinds, .. } => kinds.clone(),
                RecordedRead::ReplayMark { .. } => Vec::new(),
            })
            .collect()
    }

    /// Each write set handed to [`DsStorage::write`] so far, with its outcome.
    pub fn writes(&self) -> &[(WriteSet, WriteOutcome)] {
        &self.writes
    }

    /// How many writes reported [`WriteOutcome::Conflict`].
    pub fn conflicts(&self) -> usize {
        self.writes
            .iter()
            .filter(|(_, outcome)| *outcome == WriteOutcome::Conflict)
            .count()
    }
}

impl<S: DsStorage> DsStorage for RecordingStorage<'_, S> {
    type Error = S::Error;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Self::Error> {
        self.reads.borrow_mut().push(RecordedRead::Records {
            group_id: group_id.to_vec(),
            kinds: kinds.to_vec(),
        });
        self.inner.read(group_id, kinds)
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error> {
        self.reads.borrow_mut().push(RecordedRead::ReplayMark {
            group_id: group_id.to_vec(),
            key: key.to_vec(),
        });
        self.inner.replay_mark(group_id, key, now_ms)
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error> {
        if let Some(rival) = self.rival.take() {
            rival(&mut self.inner);
        }
        let write_number = self.writes.len() + 1;
        let outcome = if self
            .fault
            .is_some_and(|fault| fault.conflicts(write_number))
        {
            WriteOutcome::Conflict
        } else {
            self.inner.write(write_set)?
        };
        self.writes.push((write_set.clone(), outcome));
        Ok(outcome)
    }
}

/// The Queueing Service's [`RecordingStorage`]: a [`QsStorage`] that delegates to `inner` and
/// records each [`QsWriteSet`] with its [`QsWriteOutcome`]; optionally a rival writer runs just
/// before the first write.
pub struct RecordingQsStorage<'rival, S> {
    /// The wrapped storage: reads go to it, applied writes land in it.
    pub inner: S,
    writes: Vec<(QsWriteSet, QsWriteOutcome)>,
    rival: Option<Rival<'rival, S>>,
}

impl<'rival, S: QsStorage> RecordingQsStorage<'rival, S> {
    /// Wraps `inner`, recording only.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            writes: Vec::new(),
            rival: None,
        }
    }

    /// Runs `rival` on the inner storage once, just before the first write: another server
    /// wins the race between this request's reads and its write.
    pub fn with_rival_before_first_write(mut self, rival: impl FnOnce(&mut S) + 'rival) -> Self {
        self.rival = Some(Box::new(rival));
        self
    }

    /// Each write set handed to [`QsStorage::write`] so far, with its outcome.
    pub fn writes(&self) -> &[(QsWriteSet, QsWriteOutcome)] {
        &self.writes
    }

    /// How many writes reported [`QsWriteOutcome::Conflict`].
    pub fn conflicts(&self) -> usize {
        self.writes
            .iter()
            .filter(|(_, outcome)| *outcome == QsWriteOutcome::Conflict)
            .count()
    }
}

impl<S: QsStorage> QsStorage for RecordingQsStorage<'_, S> {
    type Error = S::Error;

    fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, Self::Error> {
        self.inner.queue(queue_id)
    }

    fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        self.inner.queue_of_owner(owner_key)
    }

    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, Self::Error> {
        self.inner
            .messages(queue_id, from_sequence, limit, max_bytes)
    }

    fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, Self::Error> {
        self.inner.has_mark(queue_id, hash, now_ms)
    }

    fn write(&mut self, writes: &QsWriteSet) -> Result<QsWriteOutcome, Self::Error> {
        if let Some(rival) = self.rival.take() {
            rival(&mut self.inner);
        }
        let outcome = self.inner.write(writes)?;
        self.writes.push((writes.clone(), outcome));
        Ok(outcome)
    }
}
