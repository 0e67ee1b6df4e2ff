//! [`Prefetched`]: the storage the handlers run against inside the step API. It answers from
//! what the caller fetched for the step, and notes every read it could not answer, so that the
//! next step asks for it.

use std::cell::{Cell, RefCell};

use super::steps::{DsFetched, DsRead};
use crate::storage::{
    DsStorage, GroupSnapshot, Infallible, RecordKind, ReplayMark, WriteOutcome, WriteSet,
};

/// Answers reads from the caller's answers, each answer at most once (moved out, not cloned:
/// records grow with the group, see the storage contract).
///
/// A read it cannot answer is a **miss**: it is noted and answered as absent, so that the
/// handler goes on and names the other reads of its round (the replay mark and the group are
/// independent). The run's result is then discarded and the step asks for every read the run
/// made; see [`crate::DsStep`].
pub(super) struct Prefetched {
    answers: RefCell<Vec<Option<(DsRead, DsFetched)>>>,
    asked: RefCell<Vec<DsRead>>,
    missed: Cell<bool>,
    wrote: Cell<bool>,
}

/// What one run against a [`Prefetched`] store read.
pub(super) struct Reads {
    /// Every read the run made, in order (the plan of the next round if it missed any).
    pub(super) asked: Vec<DsRead>,
    /// Whether some read was not among the answers.
    pub(super) missed: bool,
    /// Whether the run called `write`, which handlers never do (the driver writes).
    pub(super) wrote: bool,
}

impl Prefetched {
    pub(super) fn new(answers: Vec<(DsRead, DsFetched)>) -> Self {
        Self {
            answers: RefCell::new(answers.into_iter().map(Some).collect()),
            asked: RefCell::new(Vec::new()),
            missed: Cell::new(false),
            wrote: Cell::new(false),
        }
    }

    pub(super) fn into_reads(self) -> Reads {
        Reads {
            asked: self.asked.into_inner(),
            missed: self.missed.get(),
            wrote: self.wrote.get(),
        }
    }

    /// The answer to `read`, if the caller fetched it and no earlier read of this run took it.
    fn answer(&self, read: DsRead) -> Option<DsFetched> {
        let found = self
            .answers
            .borrow_mut()
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|(asked, _)| *asked == read))
            .and_then(Option::take)
            .map(|(_, fetched)| fetched);
        if found.is_none() {
            self.missed.set(true);
        }
        self.asked.borrow_mut().push(read);
        found
    }
}

impl DsStorage for Prefetched {
    type Error = Infallible;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Infallible> {
        let read = DsRead::Group {
            group_id: group_id.to_vec(),
            kinds: kinds.to_vec(),
        };
        Ok(match self.answer(read) {
            Some(DsFetched::Group(snapshot)) => snapshot,
            // `resume` pairs each answer with a read of its kind; a miss reads as absent.
            Some(DsFetched::ReplayMark(_)) | None => None,
        })
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Infallible> {
        let read = DsRead::ReplayMark {
            group_id: group_id.to_vec(),
            key: key.to_vec(),
            now_ms,
        };
        Ok(match self.answer(read) {
            Some(DsFetched::ReplayMark(mark)) => mark,
            Some(DsFetched::Group(_)) | None => None,
        })
    }

    fn write(&mut self, _: &WriteSet) -> Result<WriteOutcome, Infallible> {
        self.wrote.set(true);
        Ok(WriteOutcome::Conflict)
    }
}
