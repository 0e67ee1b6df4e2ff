//! [`Prefetched`]: the [`QsStorage`] the step API runs the unchanged handlers against, answered
//! from what the caller fetched so far (see [`super::steps`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use super::steps::{QsFetched, QsRead};
use super::{QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord};
use crate::wire::QueuedMessage;

/// The answers a step has fetched, by read. Kept across the read rounds of one attempt.
#[derive(Debug, Default)]
pub(super) struct Answers {
    queues: HashMap<Vec<u8>, Option<QueueRecord>>,
    owners: HashMap<Vec<u8>, Option<Vec<u8>>>,
    pages: HashMap<PageKey, Vec<QueuedMessage>>,
    marks: HashMap<MarkKey, bool>,
}

/// `(queue_id, from_sequence, limit, max_bytes)`.
type PageKey = (Vec<u8>, u64, usize, usize);
/// `(queue_id, hash, now_ms)`.
type MarkKey = (Vec<u8>, Vec<u8>, u64);

impl Answers {
    /// Records the answer to `read`. Fails with the kinds of both if the answer is of another
    /// kind than the read.
    pub(super) fn insert(
        &mut self,
        read: QsRead,
        fetched: QsFetched,
    ) -> Result<(), (&'static str, &'static str)> {
        match (read, fetched) {
            (QsRead::Queue { queue_id }, QsFetched::Queue(record)) => {
                self.queues.insert(queue_id, record);
            }
            (QsRead::QueueOfOwner { owner_key }, QsFetched::QueueOfOwner(queue_id)) => {
                self.owners.insert(owner_key, queue_id);
            }
            (
                QsRead::Messages {
                    queue_id,
                    from_sequence,
                    limit,
                    max_bytes,
                },
                QsFetched::Messages(page),
            ) => {
                self.pages
                    .insert((queue_id, from_sequence, limit, max_bytes), page);
            }
            (
                QsRead::HasMark {
                    queue_id,
                    hash,
                    now_ms,
                },
                QsFetched::HasMark(marked),
            ) => {
                self.marks.insert((queue_id, hash, now_ms), marked);
            }
            (read, fetched) => return Err((read.kind(), fetched.kind())),
        }
        Ok(())
    }

    /// Whether `read` has an answer.
    pub(super) fn answers(&self, read: &QsRead) -> bool {
        match read {
            QsRead::Queue { queue_id } => self.queues.contains_key(queue_id),
            QsRead::QueueOfOwner { owner_key } => self.owners.contains_key(owner_key),
            QsRead::Messages {
                queue_id,
                from_sequence,
                limit,
                max_bytes,
            } => self
                .pages
                .contains_key(&(queue_id.clone(), *from_sequence, *limit, *max_bytes)),
            QsRead::HasMark {
                queue_id,
                hash,
                now_ms,
            } => self
                .marks
                .contains_key(&(queue_id.clone(), hash.clone(), *now_ms)),
        }
    }
}

/// What a run does with a read that has no answer yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnMiss {
    /// Answer it as absent (`None`, `false`, no messages) and go on, so the run finds the
    /// other reads of the same round. The run's result is thrown away.
    Speculate,
    /// End the run at once with [`PrefetchedError::Missed`].
    Stop,
}

/// Why a [`Prefetched`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum PrefetchedError {
    /// The read has no answer yet, and the run stops at a miss ([`OnMiss::Stop`]).
    #[error("a read the step has not fetched yet")]
    Missed,
    /// A handler tried to write: handlers only plan a write set, the driver applies it.
    #[error("a handler wrote to the step's read-only store")]
    Write,
}

/// Reads in the order they were first made, without repeats (a delivery may name thousands
/// of recipients, so repeats are found by hash, not by a scan).
#[derive(Debug, Default)]
pub(super) struct ReadLog {
    order: Vec<QsRead>,
    seen: HashSet<QsRead>,
}

impl ReadLog {
    pub(super) fn push(&mut self, read: QsRead) {
        if !self.seen.contains(&read) {
            self.seen.insert(read.clone());
            self.order.push(read);
        }
    }

    pub(super) fn into_reads(self) -> Vec<QsRead> {
        self.order
    }
}

/// The store of one run: answers what was fetched, records every read and every miss.
///
/// Records are small and a delivery reads a queue once for each recipient naming it, so they
/// are answered by copy; a page of messages (up to `max_page_bytes`) is read once, by the
/// run's last read, and is moved out instead: a second read of the same page is a miss.
#[derive(Debug)]
pub(super) struct Prefetched {
    answers: RefCell<Answers>,
    on_miss: OnMiss,
    made: RefCell<ReadLog>,
    missed: RefCell<ReadLog>,
}

/// What a run leaves behind: the answers (less the pages it moved out), every read it made,
/// and the reads that had no answer.
pub(super) struct RunReads {
    pub(super) answers: Answers,
    pub(super) made: Vec<QsRead>,
    pub(super) missed: Vec<QsRead>,
}

impl Prefetched {
    pub(super) fn new(answers: Answers, on_miss: OnMiss) -> Self {
        Self {
            answers: RefCell::new(answers),
            on_miss,
            made: RefCell::default(),
            missed: RefCell::default(),
        }
    }

    pub(super) fn finish(self) -> RunReads {
        RunReads {
            answers: self.answers.into_inner(),
            made: self.made.into_inner().into_reads(),
            missed: self.missed.into_inner().into_reads(),
        }
    }

    /// Logs `read` and answers it with `found`, or, on a miss, as `absent` or with an error
    /// as [`OnMiss`] says.
    fn answer<T>(&self, read: QsRead, found: Option<T>, absent: T) -> Result<T, PrefetchedError> {
        self.made.borrow_mut().push(read.clone());
        if let Some(found) = found {
            return Ok(found);
        }
        self.missed.borrow_mut().push(read);
        match self.on_miss {
            OnMiss::Speculate => Ok(absent),
            OnMiss::Stop => Err(PrefetchedError::Missed),
        }
    }
}

impl QsStorage for Prefetched {
    type Error = PrefetchedError;

    fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, PrefetchedError> {
        let found = self.answers.borrow().queues.get(queue_id).cloned();
        let read = QsRead::Queue {
            queue_id: queue_id.to_vec(),
        };
        self.answer(read, found, None)
    }

    fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, PrefetchedError> {
        let found = self.answers.borrow().owners.get(owner_key).cloned();
        let read = QsRead::QueueOfOwner {
            owner_key: owner_key.to_vec(),
        };
        self.answer(read, found, None)
    }

    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, PrefetchedError> {
        let key = (queue_id.to_vec(), from_sequence, limit, max_bytes);
        let found = self.answers.borrow_mut().pages.remove(&key);
        let read = QsRead::Messages {
            queue_id: key.0,
            from_sequence,
            limit,
            max_bytes,
        };
        self.answer(read, found, Vec::new())
    }

    fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, PrefetchedError> {
        let key = (queue_id.to_vec(), hash.to_vec(), now_ms);
        let found = self.answers.borrow().marks.get(&key).copied();
        let read = QsRead::HasMark {
            queue_id: key.0,
            hash: key.1,
            now_ms,
        };
        self.answer(read, found, false)
    }

    fn write(&mut self, _writes: &QsWriteSet) -> Result<QsWriteOutcome, PrefetchedError> {
        Err(PrefetchedError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> QueueRecord {
        QueueRecord {
            owner_key: vec![1; 32],
            fanout_auth_token: vec![2; 32],
            ..QueueRecord::default()
        }
    }

    fn answers(pairs: Vec<(QsRead, QsFetched)>) -> Answers {
        let mut answers = Answers::default();
        for (read, fetched) in pairs {
            answers.insert(read, fetched).expect("kinds match");
        }
        answers
    }

    fn queue(id: u8) -> QsRead {
        QsRead::Queue { queue_id: vec![id] }
    }

    #[test]
    fn a_speculative_run_answers_misses_as_absent_and_logs_each_once() {
        let store = Prefetched::new(
            answers(vec![(queue(1), QsFetched::Queue(Some(record())))]),
            OnMiss::Speculate,
        );
        assert_eq!(store.queue(&[1]), Ok(Some(record())));
        assert_eq!(store.queue(&[1]), Ok(Some(record())), "records are copied");
        assert_eq!(store.queue(&[2]), Ok(None));
        assert_eq!(store.queue(&[2]), Ok(None));
        assert_eq!(store.has_mark(&[2], b"h", 7), Ok(false));
        assert_eq!(store.messages(&[2], 0, 10, 100), Ok(Vec::new()));
        assert_eq!(store.queue_of_owner(b"k"), Ok(None));
        let reads = store.finish();
        let mark = QsRead::HasMark {
            queue_id: vec![2],
            hash: b"h".to_vec(),
            now_ms: 7,
        };
        let page = QsRead::Messages {
            queue_id: vec![2],
            from_sequence: 0,
            limit: 10,
            max_bytes: 100,
        };
        let owner = QsRead::QueueOfOwner {
            owner_key: b"k".to_vec(),
        };
        assert_eq!(
            reads.missed,
            vec![queue(2), mark.clone(), page.clone(), owner.clone()]
        );
        assert_eq!(reads.made, vec![queue(1), queue(2), mark, page, owner]);
        assert!(reads.answers.answers(&queue(1)));
    }

    #[test]
    fn a_stopping_run_fails_at_its_first_miss() {
        let store = Prefetched::new(Answers::default(), OnMiss::Stop);
        assert_eq!(store.queue_of_owner(b"k"), Err(PrefetchedError::Missed));
        assert_eq!(store.finish().missed.len(), 1);
    }

    #[test]
    fn a_page_is_moved_out_so_a_second_read_is_a_miss() {
        let page = QsRead::Messages {
            queue_id: vec![1],
            from_sequence: 3,
            limit: 10,
            max_bytes: 100,
        };
        let mut store = Prefetched::new(
            answers(vec![(page.clone(), QsFetched::Messages(Vec::new()))]),
            OnMiss::Speculate,
        );
        assert_eq!(store.messages(&[1], 3, 10, 100), Ok(Vec::new()));
        assert_eq!(store.messages(&[1], 3, 10, 100), Ok(Vec::new()));
        assert_eq!(
            store.write(&QsWriteSet::default()),
            Err(PrefetchedError::Write),
            "handlers plan, the driver writes"
        );
        let reads = store.finish();
        assert_eq!(reads.missed, vec![page.clone()]);
        assert!(!reads.answers.answers(&page));
    }

    #[test]
    fn an_answer_of_another_kind_is_refused() {
        let mut answers = Answers::default();
        assert_eq!(
            answers.insert(queue(1), QsFetched::HasMark(true)),
            Err(("queue", "has_mark"))
        );
        assert!(!answers.answers(&queue(1)));
    }
}
