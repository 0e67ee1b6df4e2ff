//! The storage backends behind the server, and how blocking storage is kept off the async
//! executor.
//!
//! SQLite (rusqlite) is synchronous. Every use of storage (a request through
//! `Router::handle`, a relay round, a hub event) runs inside `tokio::task::spawn_blocking`
//! and takes one connection from a small pool for the duration of that one call.
//!
//! Why a pool and not one connection behind a mutex: SQLite admits one writer at a time in
//! any case (the backend writes under `BEGIN IMMEDIATE` and waits on SQLite's busy timeout),
//! but in WAL mode readers proceed while a writer commits. Most refused requests and all
//! queue fetches are reads, and a write's decoding and signature checks happen before its
//! transaction: with a few connections these overlap instead of queueing behind one mutex.
//! The pool is small (the 2-core machines this runs on gain nothing from more), and the
//! number of blocking tasks is bounded by the request concurrency limit plus the relay's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use mimi_ds::qs::{InMemoryQsStorage, QsStorage};
use mimi_ds::storage::{DsOutbox, InMemoryStorage};
use mimi_ds_sqlite::{enable_wal, SqliteDsStorage, SqliteQsStorage};
use rusqlite::Connection;

/// A DS storage with an outbox and a QS storage, used from blocking threads only.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The DS's storage.
    type Ds: DsOutbox + Send;
    /// The QS's storage.
    type Qs: QsStorage + Send;

    /// Runs `f` with one DS and one QS storage. Blocks: call from `spawn_blocking` only.
    fn with<R>(&self, f: impl FnOnce(&mut Self::Ds, &mut Self::Qs) -> R) -> R;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves no half-applied write (each write is one
    // transaction), so the connection is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// In memory, one mutex: for tests.
pub(crate) struct MemoryBackend(Mutex<(InMemoryStorage, InMemoryQsStorage)>);

impl MemoryBackend {
    pub(crate) fn new() -> Self {
        Self(Mutex::new((
            InMemoryStorage::with_outbox(),
            InMemoryQsStorage::new(),
        )))
    }
}

impl Backend for MemoryBackend {
    type Ds = InMemoryStorage;
    type Qs = InMemoryQsStorage;

    fn with<R>(&self, f: impl FnOnce(&mut Self::Ds, &mut Self::Qs) -> R) -> R {
        let mut guard = lock(&self.0);
        let (ds, qs) = &mut *guard;
        f(ds, qs)
    }
}

type SqliteSlot = (SqliteDsStorage<Connection>, SqliteQsStorage<Connection>);

/// A SQLite file, WAL mode, a few connections (each slot holds the DS's and the QS's).
pub(crate) struct SqliteBackend {
    slots: Vec<Mutex<SqliteSlot>>,
    next: AtomicUsize,
}

impl SqliteBackend {
    /// Opens (creating and migrating if needed) `path` with `connections` slots.
    pub(crate) fn open(
        path: &std::path::Path,
        connections: usize,
    ) -> Result<Self, mimi_ds_sqlite::Error> {
        let mut slots = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let ds = Connection::open(path)?;
            enable_wal(&ds)?;
            let qs = Connection::open(path)?;
            slots.push(Mutex::new((
                SqliteDsStorage::new(ds)?,
                SqliteQsStorage::new(qs)?,
            )));
        }
        Ok(Self {
            slots,
            next: AtomicUsize::new(0),
        })
    }
}

impl Backend for SqliteBackend {
    type Ds = SqliteDsStorage<Connection>;
    type Qs = SqliteQsStorage<Connection>;

    fn with<R>(&self, f: impl FnOnce(&mut Self::Ds, &mut Self::Qs) -> R) -> R {
        // A free slot if there is one; otherwise wait for the next in turn.
        let mut guard = self
            .slots
            .iter()
            .find_map(|slot| slot.try_lock().ok())
            .unwrap_or_else(|| {
                let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                lock(&self.slots[turn])
            });
        let (ds, qs) = &mut *guard;
        f(ds, qs)
    }
}
