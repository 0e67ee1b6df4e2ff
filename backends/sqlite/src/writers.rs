//! [`WriterQueue`]: this process's writers to one SQLite file, served first come, first
//! served.
//!
//! SQLite admits one writer per file. A writer that finds the lock taken does not wait for it
//! to be released: SQLite's busy handler sleeps (1, 2, 5, 10, … ms) and tries again, so a
//! short transaction behind another short one often waits far longer than the other took,
//! and a writer that arrives later may win. When every writer of this process takes a turn
//! from one queue before `BEGIN IMMEDIATE`, it is woken as soon as the writer before it has
//! committed, in the order they came. Writers of other processes still meet the busy handler.

use std::sync::{Condvar, Mutex, MutexGuard};

/// A ticket queue for the writers to one SQLite file: share one (in an `Arc`) between every
/// connection of this process to that file, through
/// [`SqliteDsStorage::with_writer_queue`](crate::SqliteDsStorage::with_writer_queue) and
/// [`SqliteQsStorage::with_writer_queue`](crate::SqliteQsStorage::with_writer_queue).
#[derive(Debug, Default)]
pub struct WriterQueue {
    tickets: Mutex<Tickets>,
    turn_passed: Condvar,
}

#[derive(Debug, Default)]
struct Tickets {
    next: u64,
    serving: u64,
}

impl WriterQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for the caller's turn; the turn passes to the next writer when the returned
    /// [`WriterTurn`] is dropped (after the transaction ended).
    pub fn enter(&self) -> WriterTurn<'_> {
        let mut tickets = self.lock();
        let ticket = tickets.next;
        tickets.next = tickets.next.wrapping_add(1);
        while tickets.serving != ticket {
            tickets = self
                .turn_passed
                .wait(tickets)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        WriterTurn { queue: self }
    }

    fn lock(&self) -> MutexGuard<'_, Tickets> {
        // The counters are only ever incremented whole: a panic elsewhere leaves them valid.
        self.tickets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One writer's turn of a [`WriterQueue`]; dropping it lets the next writer in.
#[derive(Debug)]
#[must_use = "the turn ends when this is dropped"]
pub struct WriterTurn<'q> {
    queue: &'q WriterQueue,
}

impl Drop for WriterTurn<'_> {
    fn drop(&mut self) {
        let mut tickets = self.queue.lock();
        tickets.serving = tickets.serving.wrapping_add(1);
        drop(tickets);
        self.queue.turn_passed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Writers get their turns in the order they asked, each after the one before it ended.
    #[test]
    fn turns_are_taken_in_arrival_order() {
        let queue = Arc::new(WriterQueue::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = queue.enter();
        let mut waiting = Vec::new();
        for writer in 0..4 {
            let (shared, order) = (Arc::clone(&queue), Arc::clone(&order));
            waiting.push(std::thread::spawn(move || {
                let _turn = shared.enter();
                order.lock().expect("order").push(writer);
            }));
            // Let this writer take its ticket before the next one asks.
            while queue.lock().next != writer + 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            order.lock().expect("order").is_empty(),
            "nobody entered early"
        );
        drop(first);
        for writer in waiting {
            writer.join().expect("writer");
        }
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3]);
    }
}
