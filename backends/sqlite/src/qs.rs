//! [`SqliteQsStorage`]: the Queueing Service's storage.

use std::borrow::Borrow;
use std::path::Path;
use std::sync::Arc;

use mimi_ds::qs::{queued_size, QsChange, QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord};
use mimi_ds::wire::{decode_exact, encode, QueuedMessage};
use rusqlite::{params, Connection, OptionalExtension as _, Row};

use crate::{
    check_size, enable_wal, hex, length_limit, migrate, sql_u64, Error, WriteTx, WriterQueue,
};

/// The Queueing Service's [`QsStorage`] on a SQLite connection you own. Each write set runs
/// in one `BEGIN IMMEDIATE` transaction; its changes are applied in order, each guard checked
/// against the state the earlier changes left, and the first guard that fails rolls the whole
/// set back ([`QsWriteOutcome::Conflict`]).
#[derive(Debug)]
pub struct SqliteQsStorage<C: Borrow<Connection> = Connection> {
    connection: C,
    writers: Option<Arc<WriterQueue>>,
}

impl SqliteQsStorage<Connection> {
    /// Opens (or creates) a database file in WAL mode and migrates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let connection = Connection::open(path)?;
        enable_wal(&connection)?;
        Self::new(connection)
    }
}

fn corrupt(queue_id: &[u8], detail: String) -> Error {
    Error::CorruptQueue {
        queue: hex(queue_id),
        detail,
    }
}

fn get_u64(queue_id: &[u8], row: &Row<'_>, index: usize, name: &str) -> Result<u64, Error> {
    let value: i64 = row
        .get(index)
        .map_err(|e| corrupt(queue_id, format!("{name}: {e}")))?;
    u64::try_from(value).map_err(|_| corrupt(queue_id, format!("{name} {value}")))
}

fn get_bytes(queue_id: &[u8], row: &Row<'_>, index: usize, name: &str) -> Result<Vec<u8>, Error> {
    row.get(index)
        .map_err(|e| corrupt(queue_id, format!("{name}: {e}")))
}

impl<C: Borrow<Connection>> SqliteQsStorage<C> {
    /// Uses `connection`, creating or upgrading mimi-ds's tables first ([`crate::migrate`]).
    pub fn new(connection: C) -> Result<Self, Error> {
        migrate(connection.borrow())?;
        Ok(Self {
            connection,
            writers: None,
        })
    }

    /// Takes a turn of `writers` before each write transaction of its own (and each outbox
    /// change outside a transaction): share one [`WriterQueue`] between every storage of
    /// this process on the same file, so that its writers wait for each other in order
    /// instead of in SQLite's busy handler.
    #[must_use]
    pub fn with_writer_queue(mut self, writers: Arc<WriterQueue>) -> Self {
        self.writers = Some(writers);
        self
    }

    /// Runs `f` with this storage inside one write transaction (`BEGIN IMMEDIATE`, after a
    /// turn of the writer queue), committed when `f` returns: several write sets in one
    /// commit. Each write of `f` is then a savepoint: one that fails or conflicts is rolled
    /// back alone, and the others commit. `f`'s result is returned whatever it is; `Err` means
    /// the commit failed and none of `f`'s writes stand. Inside a transaction of your own,
    /// `f` runs in it and your commit is the one.
    pub fn in_transaction<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> Result<R, Error> {
        let writers = self.writers.clone();
        crate::in_transaction(self, Self::connection, writers, f)
    }

    /// The connection, for your own statements.
    pub fn connection(&self) -> &Connection {
        self.connection.borrow()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.connection
    }

    /// The number of delivery marks held, expired ones not yet dropped included.
    pub fn mark_count(&self) -> Result<u64, Error> {
        let count: i64 =
            self.connection()
                .query_row("SELECT count(*) FROM mimi_qs_mark", [], |row| row.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Applies one change if its guard holds: `Ok(false)` is a conflict.
fn apply(connection: &Connection, change: &QsChange, now_ms: u64) -> Result<bool, Error> {
    match change {
        QsChange::CreateQueue { queue_id, record } => {
            let taken: bool = connection
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM mimi_qs_queue WHERE queue_id = ?1 OR owner_key = ?2)",
                )?
                .query_row(params![queue_id, record.owner_key], |row| row.get(0))?;
            if taken {
                return Ok(false);
            }
            connection
                .prepare_cached(
                    "INSERT INTO mimi_qs_queue (queue_id, owner_key, fanout_auth_token,
                         next_sequence, first_unacknowledged, queued_bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    queue_id,
                    record.owner_key,
                    record.fanout_auth_token,
                    sql_u64(record.next_sequence),
                    sql_u64(record.first_unacknowledged),
                    sql_u64(record.queued_bytes),
                ])?;
            Ok(true)
        }
        QsChange::DeleteQueue { queue_id } => {
            let deleted = connection
                .prepare_cached("DELETE FROM mimi_qs_queue WHERE queue_id = ?1")?
                .execute([queue_id])?;
            if deleted == 0 {
                return Ok(false);
            }
            for sql in [
                "DELETE FROM mimi_qs_message WHERE queue_id = ?1",
                "DELETE FROM mimi_qs_mark WHERE queue_id = ?1",
            ] {
                connection.prepare_cached(sql)?.execute([queue_id])?;
            }
            Ok(true)
        }
        QsChange::Enqueue {
            queue_id,
            message,
            mark,
        } => {
            let bytes = encode(message).map_err(|e| corrupt(queue_id, format!("message: {e}")))?;
            let size = queued_size(message);
            let advanced = connection
                .prepare_cached(
                    "UPDATE mimi_qs_queue
                     SET next_sequence = next_sequence + 1, queued_bytes = queued_bytes + ?3
                     WHERE queue_id = ?1 AND next_sequence = ?2",
                )?
                .execute(params![
                    queue_id,
                    sql_u64(message.sequence_number),
                    sql_u64(size)
                ])?;
            if advanced == 0 {
                return Ok(false);
            }
            // A live mark with the same hash is a conflict; an expired one is replaced.
            let marked = connection
                .prepare_cached(
                    "INSERT INTO mimi_qs_mark (queue_id, hash, expires_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (queue_id, hash) DO UPDATE SET expires_at_ms = excluded.expires_at_ms
                     WHERE mimi_qs_mark.expires_at_ms < ?4",
                )?
                .execute(params![
                    queue_id,
                    mark.hash,
                    sql_u64(mark.expires_at_ms),
                    sql_u64(now_ms)
                ])?;
            if marked == 0 {
                return Ok(false);
            }
            connection
                .prepare_cached(
                    "INSERT INTO mimi_qs_message (queue_id, sequence, message, size)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    queue_id,
                    sql_u64(message.sequence_number),
                    bytes,
                    sql_u64(size)
                ])?;
            Ok(true)
        }
        QsChange::Acknowledge {
            queue_id,
            up_to_sequence,
        } => {
            let up_to = sql_u64(*up_to_sequence);
            let next: Option<i64> = connection
                .prepare_cached("SELECT next_sequence FROM mimi_qs_queue WHERE queue_id = ?1")?
                .query_row([queue_id], |row| row.get(0))
                .optional()?;
            if next.is_none_or(|next| up_to > next) {
                return Ok(false);
            }
            let dropped: i64 = connection
                .prepare_cached(
                    "SELECT coalesce(sum(size), 0) FROM mimi_qs_message
                     WHERE queue_id = ?1 AND sequence < ?2",
                )?
                .query_row(params![queue_id, up_to], |row| row.get(0))?;
            connection
                .prepare_cached(
                    "DELETE FROM mimi_qs_message WHERE queue_id = ?1 AND sequence < ?2",
                )?
                .execute(params![queue_id, up_to])?;
            connection
                .prepare_cached(
                    "UPDATE mimi_qs_queue
                     SET queued_bytes = max(queued_bytes - ?3, 0),
                         first_unacknowledged = max(first_unacknowledged, ?2)
                     WHERE queue_id = ?1",
                )?
                .execute(params![queue_id, up_to, dropped])?;
            Ok(true)
        }
        // A change added to mimi-ds after this crate: refuse to guess what it means.
        other => Err(Error::UnsupportedChange(format!("{other:?}"))),
    }
}

fn check_sizes(connection: &Connection, writes: &QsWriteSet) -> Result<(), Error> {
    let limit = length_limit(connection)?;
    for change in &writes.changes {
        match change {
            QsChange::CreateQueue { queue_id, record } => {
                let len = record.owner_key.len() + record.fanout_auth_token.len();
                check_size(limit, "queue record", "queue", queue_id, len)?;
            }
            QsChange::Enqueue {
                queue_id, message, ..
            } => {
                let len = usize::try_from(queued_size(message)).unwrap_or(usize::MAX);
                check_size(limit, "message", "queue", queue_id, len)?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl<C: Borrow<Connection>> QsStorage for SqliteQsStorage<C> {
    type Error = Error;

    fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, Error> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT owner_key, fanout_auth_token, next_sequence, first_unacknowledged,
                    queued_bytes
             FROM mimi_qs_queue WHERE queue_id = ?1",
        )?;
        let mut rows = statement.query([queue_id])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        Ok(Some(QueueRecord {
            owner_key: get_bytes(queue_id, row, 0, "owner_key")?,
            fanout_auth_token: get_bytes(queue_id, row, 1, "fanout_auth_token")?,
            next_sequence: get_u64(queue_id, row, 2, "next_sequence")?,
            first_unacknowledged: get_u64(queue_id, row, 3, "first_unacknowledged")?,
            queued_bytes: get_u64(queue_id, row, 4, "queued_bytes")?,
        }))
    }

    fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .connection()
            .prepare_cached("SELECT queue_id FROM mimi_qs_queue WHERE owner_key = ?1")?
            .query_row([owner_key], |row| row.get(0))
            .optional()?)
    }

    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, Error> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT message, size FROM mimi_qs_message
             WHERE queue_id = ?1 AND sequence >= ?2 ORDER BY sequence LIMIT ?3",
        )?;
        let mut rows = statement.query(params![
            queue_id,
            sql_u64(from_sequence),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ])?;
        let mut page = Vec::new();
        let mut bytes = 0u64;
        while let Some(row) = rows.next()? {
            bytes = bytes.saturating_add(get_u64(queue_id, row, 1, "size")?);
            if !page.is_empty() && bytes > max_bytes as u64 {
                break;
            }
            let encoded = get_bytes(queue_id, row, 0, "message")?;
            let message = decode_exact::<QueuedMessage>(&encoded)
                .map_err(|e| corrupt(queue_id, format!("message: {e}")))?;
            page.push(message);
        }
        Ok(page)
    }

    fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, Error> {
        Ok(self
            .connection()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM mimi_qs_mark
                 WHERE queue_id = ?1 AND hash = ?2 AND expires_at_ms >= ?3)",
            )?
            .query_row(params![queue_id, hash, sql_u64(now_ms)], |row| row.get(0))?)
    }

    fn write(&mut self, writes: &QsWriteSet) -> Result<QsWriteOutcome, Error> {
        let connection = self.connection.borrow();
        check_sizes(connection, writes)?;
        let tx = WriteTx::begin(connection, self.writers.as_deref())?;
        for change in &writes.changes {
            if !apply(connection, change, writes.now_ms)? {
                tx.rollback()?;
                return Ok(QsWriteOutcome::Conflict);
            }
        }
        // Marks are valid up to and including their expiry.
        connection
            .prepare_cached("DELETE FROM mimi_qs_mark WHERE expires_at_ms < ?1")?
            .execute([sql_u64(writes.now_ms)])?;
        tx.commit()?;
        Ok(QsWriteOutcome::Applied)
    }
}
