//! SQLite storage for [mimi-ds](mimi_ds): the Delivery Service's
//! [`DsStorage`](mimi_ds::storage::DsStorage) with its durable outbox
//! ([`DsOutbox`](mimi_ds::storage::DsOutbox)), and the Queueing Service's
//! [`QsStorage`](mimi_ds::qs::QsStorage), on [rusqlite] 0.37.
//!
//! The storage takes **your connection** (anything that is a
//! [`Borrow<Connection>`](std::borrow::Borrow): an owned [`Connection`], a `&Connection`, an
//! `Rc`/`Arc`), so mimi-ds's tables can live in your database next to your own.
//!
//! ```no_run
//! use mimi_ds_sqlite::{enable_wal, SqliteDsStorage};
//! # fn main() -> Result<(), mimi_ds_sqlite::Error> {
//! let connection = rusqlite::Connection::open("hub.sqlite3")?;
//! enable_wal(&connection)?;
//! // Creates or upgrades the tables (plain SQL migrations, recorded in `mimi_ds_sqlite_schema`).
//! let mut storage = SqliteDsStorage::new(connection)?;
//! // ds.process(now, &request_bytes, &mut storage)?; then deliver `outcome.fanout`, or let a
//! // relay drain `storage.pending(..)` (see mimi_ds::storage::outbox).
//! # let _ = &mut storage; Ok(()) }
//! ```
//!
//! # How it holds the storage contract
//!
//! * **Batches.** [`SqliteDsStorage::in_transaction`] (and the QS's) runs several writes in
//!   one transaction with one commit; each write inside is a savepoint that fails alone.
//! * **Writers queue in the process** when the storages share a [`WriterQueue`]: a write
//!   waits for its turn and is woken when the writer before it committed, instead of polling
//!   in SQLite's busy handler.
//! * **One transaction per write set.** Every write runs under `BEGIN IMMEDIATE`: the write
//!   lock is taken at the start, so two writers queue on SQLite's busy handler (rusqlite sets a
//!   5 s busy timeout) instead of failing with `SQLITE_BUSY` when a deferred read transaction
//!   tries to upgrade. If your connection is already inside a transaction, the write runs in a
//!   `SAVEPOINT` instead and commits with your transaction, so your own rows and mimi-ds's
//!   commit together.
//! * **The guard** is the group row's version: `UPDATE … SET version = version + 1 WHERE
//!   group_id = ? AND version = ?` (or an `INSERT … ON CONFLICT DO NOTHING` for a new group);
//!   no row changed means [`Conflict`](mimi_ds::storage::WriteOutcome::Conflict), and the
//!   transaction is rolled back. A replay mark is an upsert that replaces only an expired mark
//!   (`ON CONFLICT … DO UPDATE … WHERE expires_at_ms < now`); no row changed is a conflict.
//! * **Expiry in the write.** Expired replay marks, reservation-only groups and QS delivery
//!   marks are deleted by the write transaction, through indexes on their expiry. No background
//!   thread is needed.
//! * **The outbox** gets one row per fanout in the same transaction. `pending` leaves out an
//!   entry while an older entry of its destination is put off, one `NOT EXISTS` probe per
//!   candidate through the index on `(destination, next_attempt_at_ms)` (schema version 2).
//! * **Reads** are single statements, so each sees one snapshot.
//! * **Faults.** A database error is an [`Error::Sqlite`] and the transaction is rolled back:
//!   nothing partial is ever committed. A stored row that does not decode is an
//!   [`Error::CorruptGroup`] (or [`Error::CorruptQueue`], [`Error::CorruptOutbox`]) naming it;
//!   the group is never reset. A value larger than the connection's `SQLITE_LIMIT_LENGTH`
//!   (1 GB by default) is an [`Error::TooLarge`] before anything is written.
//!
//! # WAL
//!
//! Use WAL journal mode for a file database ([`enable_wal`]): readers then never block the
//! writer nor each other, and a commit is one append to the log. With the default rollback
//! journal, a read waits while a write commits.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod connection;
mod directory;
mod ds;
mod qs;
mod schema;
mod writers;

use rusqlite::Connection;

pub use connection::SqliteConnectionStore;
pub use directory::SqliteDirectoryStorage;
pub use ds::SqliteDsStorage;
pub use qs::SqliteQsStorage;
pub use schema::{migrate, SCHEMA_VERSION};
pub use writers::{WriterQueue, WriterTurn};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite failed; the write, if any, was rolled back.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row of this group does not decode into mimi-ds types (a damaged or hand-edited
    /// database). The group is left as it is.
    #[error("corrupt stored data of group {group}: {detail}")]
    CorruptGroup {
        /// The group ID in hex (the first 32 bytes).
        group: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored row of this queue does not decode.
    #[error("corrupt stored data of queue {queue}: {detail}")]
    CorruptQueue {
        /// The queue ID in hex (the first 32 bytes).
        queue: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored KeyPackage directory account does not decode.
    #[error("corrupt KeyPackage directory account {index}: {detail}")]
    CorruptDirectory {
        /// The account's index in hex (the first 32 bytes).
        index: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored connection request or inbox row does not decode.
    #[error("corrupt connection inbox {inbox}: {detail}")]
    CorruptConnection {
        /// The inbox ID in hex (the first 32 bytes).
        inbox: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored outbox row does not decode.
    #[error("corrupt outbox entry {id}: {detail}")]
    CorruptOutbox {
        /// The entry's ID.
        id: i64,
        /// What does not decode.
        detail: String,
    },
    /// A value is larger than the connection allows (`SQLITE_LIMIT_LENGTH`); nothing was
    /// written.
    #[error("{what} of {len} bytes for {owner} is over the database's limit of {limit} bytes per value (SQLITE_LIMIT_LENGTH)")]
    TooLarge {
        /// Which value.
        what: &'static str,
        /// The group or queue it belongs to, in hex.
        owner: String,
        /// Its length.
        len: usize,
        /// The connection's limit.
        limit: usize,
    },
    /// The database was migrated by a newer mimi-ds-sqlite.
    #[error("the database's mimi-ds-sqlite schema is version {found}, newer than the {supported} this version knows")]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
    /// A Queueing Service change added to mimi-ds after this version of the crate; nothing
    /// was written.
    #[error("queue change {0} is not known to this version of mimi-ds-sqlite")]
    UnsupportedChange(String),
}

/// Switches a file database to WAL journal mode (it stays so for every later connection).
/// Returns the journal mode now in effect: `"wal"`, or `"memory"` for an in-memory database,
/// which has no WAL.
pub fn enable_wal(connection: &Connection) -> Result<String, Error> {
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    Ok(mode.to_ascii_lowercase())
}

/// Refuses a value that would make its row longer than SQLite's length limit (`limit`): the
/// row also holds its owner's ID (`owner` is "group" or "queue", `id` the ID).
pub(crate) fn check_size(
    limit: usize,
    what: &'static str,
    owner: &str,
    id: &[u8],
    len: usize,
) -> Result<(), Error> {
    if len.saturating_add(id.len()) > limit {
        return Err(Error::TooLarge {
            what,
            owner: format!("{owner} {}", hex(id)),
            len,
            limit,
        });
    }
    Ok(())
}

pub(crate) use mimi_ds::storage::id_hex as hex;

/// A time or count as SQLite's signed 64-bit integer. Times past year 292 million saturate;
/// they are "never" either way.
pub(crate) fn sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The connection's limit on one value's length.
pub(crate) fn length_limit(connection: &Connection) -> Result<usize, Error> {
    let limit = connection.limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH)?;
    Ok(usize::try_from(limit).unwrap_or(0))
}

/// A write transaction: `BEGIN IMMEDIATE` (after the turn of `writers`, if given), or a
/// savepoint inside the caller's transaction. Dropped without [`WriteTx::commit`], it rolls
/// back, then passes the turn on.
pub(crate) struct WriteTx<'c> {
    connection: &'c Connection,
    savepoint: bool,
    open: bool,
    // Dropped after `Drop::drop` ended the transaction.
    _turn: Option<WriterTurn<'c>>,
}

impl<'c> WriteTx<'c> {
    pub(crate) fn begin(
        connection: &'c Connection,
        writers: Option<&'c WriterQueue>,
    ) -> Result<Self, Error> {
        let savepoint = !connection.is_autocommit();
        // Inside the caller's transaction, the caller holds the write lock (and its turn).
        let turn = if savepoint {
            None
        } else {
            writers.map(WriterQueue::enter)
        };
        connection.execute_batch(if savepoint {
            "SAVEPOINT mimi_ds_write"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        Ok(Self {
            connection,
            savepoint,
            open: true,
            _turn: turn,
        })
    }

    pub(crate) fn commit(mut self) -> Result<(), Error> {
        self.connection.execute_batch(if self.savepoint {
            "RELEASE mimi_ds_write"
        } else {
            "COMMIT"
        })?;
        self.open = false;
        Ok(())
    }

    fn roll_back(&mut self) -> Result<(), Error> {
        self.open = false;
        self.connection.execute_batch(if self.savepoint {
            "ROLLBACK TO mimi_ds_write; RELEASE mimi_ds_write"
        } else {
            "ROLLBACK"
        })?;
        Ok(())
    }

    pub(crate) fn rollback(mut self) -> Result<(), Error> {
        self.roll_back()
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // The error that got us here is what the caller sees; a failed rollback leaves
            // SQLite to roll back when the connection closes.
            let _ = self.roll_back();
        }
    }
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction on `connection` (after the turn of
/// `writers`), committed when `f` returns: the storage's writes inside `f` are savepoints of
/// it. `f`'s result is returned whatever it is (a write inside that failed was rolled back
/// alone); `Err` means the commit failed and none of `f`'s writes stand.
pub(crate) fn in_transaction<S, R>(
    storage: &mut S,
    connection: impl Fn(&S) -> &Connection,
    writers: Option<std::sync::Arc<WriterQueue>>,
    f: impl FnOnce(&mut S) -> R,
) -> Result<R, Error> {
    if !connection(storage).is_autocommit() {
        // Already inside the caller's transaction: its commit is the one.
        return Ok(f(storage));
    }
    let _turn = writers.as_deref().map(WriterQueue::enter);
    connection(storage).execute_batch("BEGIN IMMEDIATE")?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(storage)));
    let result = match result {
        Ok(result) => result,
        Err(panic) => {
            // Never leave the connection inside a transaction.
            let _ = connection(storage).execute_batch("ROLLBACK");
            std::panic::resume_unwind(panic);
        }
    };
    match connection(storage).execute_batch("COMMIT") {
        Ok(()) => Ok(result),
        Err(error) => {
            if !connection(storage).is_autocommit() {
                let _ = connection(storage).execute_batch("ROLLBACK");
            }
            Err(error.into())
        }
    }
}
