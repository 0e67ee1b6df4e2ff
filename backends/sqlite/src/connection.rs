//! [`SqliteConnectionStore`]: a provider's connection-establishment keys and connection
//! inboxes (mimi-ds wire-format.md §14.3.2-§14.3.3).

use std::borrow::Borrow;
use std::path::Path;
use std::sync::Arc;

use mimi_ds::connection::{
    ConnectionChange, ConnectionKeyRecord, ConnectionStore, InboxRecord, StoredConnectionRequest,
};
use mimi_ds::wire::{decode_exact, encode};
use rusqlite::{params, Connection, OptionalExtension as _};

use crate::{
    check_size, enable_wal, hex, length_limit, migrate, sql_u64, Error, WriteTx, WriterQueue,
};

/// The connection inboxes' [`ConnectionStore`] on a SQLite connection you own. Each change
/// runs in one `BEGIN IMMEDIATE` transaction (or a savepoint in yours) that first deletes
/// expired replay marks: an `Enqueue` is the inbox's `UPDATE … SET next_sequence =
/// next_sequence + 1 WHERE next_sequence = ?` (no row changed: the guard failed, the
/// transaction is rolled back), the request's row and the mark's upsert. Marks survive a
/// restart like everything else, so a replay is refused after it too.
#[derive(Debug)]
pub struct SqliteConnectionStore<C: Borrow<Connection> = Connection> {
    connection: C,
    writers: Option<Arc<WriterQueue>>,
}

impl SqliteConnectionStore<Connection> {
    /// Opens (or creates) a database file in WAL mode and migrates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let connection = Connection::open(path)?;
        enable_wal(&connection)?;
        Self::new(connection)
    }
}

impl<C: Borrow<Connection>> SqliteConnectionStore<C> {
    /// Uses `connection`, creating or upgrading mimi-ds's tables first ([`crate::migrate`]).
    pub fn new(connection: C) -> Result<Self, Error> {
        migrate(connection.borrow())?;
        Ok(Self::from_migrated(connection))
    }

    /// Uses `connection` without migrating it, for a database [`crate::migrate`] already set
    /// up (e.g. a connection a [`crate::SqliteQsStorage`] holds, borrowed per request).
    pub fn from_migrated(connection: C) -> Self {
        Self {
            connection,
            writers: None,
        }
    }

    /// Takes a turn of `writers` before each write transaction of its own
    /// ([`crate::SqliteQsStorage::with_writer_queue`]).
    #[must_use]
    pub fn with_writer_queue(mut self, writers: Arc<WriterQueue>) -> Self {
        self.writers = Some(writers);
        self
    }

    /// The connection, for your own statements.
    pub fn connection(&self) -> &Connection {
        self.connection.borrow()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.connection
    }

    fn change(&self, now_ms: u64, change: ConnectionChange) -> Result<bool, Error> {
        let connection = self.connection();
        connection
            .prepare_cached("DELETE FROM mimi_ds_connection_mark WHERE expires_at_ms < ?1")?
            .execute([sql_u64(now_ms)])?;
        match change {
            ConnectionChange::Publish { user, record } => {
                // Rule R-CONN-9: only a newer publication replaces the stored one; the guard
                // comes first, so a refused one writes nothing.
                let written = connection
                    .prepare_cached(
                        "INSERT INTO mimi_ds_connection_key
                             (user_name, ciphersuite, connection_establishment_key, inbox_id,
                              owner_key, published_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (user_name) DO UPDATE SET
                             ciphersuite = excluded.ciphersuite,
                             connection_establishment_key = excluded.connection_establishment_key,
                             inbox_id = excluded.inbox_id,
                             owner_key = excluded.owner_key,
                             published_at_ms = excluded.published_at_ms
                         WHERE mimi_ds_connection_key.published_at_ms < excluded.published_at_ms",
                    )?
                    .execute(params![
                        user,
                        i64::from(record.ciphersuite),
                        record.connection_establishment_key,
                        record.inbox_id,
                        record.owner_key,
                        sql_u64(record.published_at_ms)
                    ])?;
                if written == 0 {
                    return Ok(false);
                }
                connection
                    .prepare_cached(
                        "INSERT INTO mimi_ds_connection_inbox (inbox_id, user_name, next_sequence)
                         VALUES (?1, ?2, 0) ON CONFLICT (inbox_id) DO NOTHING",
                    )?
                    .execute(params![record.inbox_id, user])?;
                Ok(true)
            }
            ConnectionChange::Enqueue {
                inbox_id,
                request,
                mark,
                mark_expires_at_ms,
            } => {
                let bytes = encode(&request).map_err(|e| Error::CorruptConnection {
                    inbox: hex(&inbox_id),
                    detail: e.to_string(),
                })?;
                check_size(
                    length_limit(connection)?,
                    "connection request",
                    "inbox",
                    &inbox_id,
                    bytes.len(),
                )?;
                let advanced = connection
                    .prepare_cached(
                        "UPDATE mimi_ds_connection_inbox SET next_sequence = next_sequence + 1
                         WHERE inbox_id = ?1 AND next_sequence = ?2",
                    )?
                    .execute(params![inbox_id, sql_u64(request.sequence_number)])?;
                if advanced == 0 {
                    return Ok(false);
                }
                connection
                    .prepare_cached(
                        "INSERT INTO mimi_ds_connection_request (inbox_id, sequence_number, request)
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![inbox_id, sql_u64(request.sequence_number), bytes])?;
                connection
                    .prepare_cached(
                        "INSERT INTO mimi_ds_connection_mark (inbox_id, mark, expires_at_ms)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (inbox_id, mark) DO UPDATE SET
                             expires_at_ms = excluded.expires_at_ms",
                    )?
                    .execute(params![inbox_id, mark, sql_u64(mark_expires_at_ms)])?;
                Ok(true)
            }
            ConnectionChange::Acknowledge {
                inbox_id,
                up_to_sequence,
            } => {
                if self.inbox(&inbox_id)?.is_none() {
                    return Ok(false);
                }
                connection
                    .prepare_cached(
                        "DELETE FROM mimi_ds_connection_request
                         WHERE inbox_id = ?1 AND sequence_number < ?2",
                    )?
                    .execute(params![inbox_id, sql_u64(up_to_sequence)])?;
                Ok(true)
            }
            other => Err(Error::UnsupportedChange(format!("{other:?}"))),
        }
    }
}

/// A key row: ciphersuite, key, inbox ID, owner key.
type KeyRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i64);

/// A stored integer that must not be negative.
fn unsigned(value: i64, what: &str, inbox: &[u8]) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::CorruptConnection {
        inbox: hex(inbox),
        detail: format!("{what} {value}"),
    })
}

impl<C: Borrow<Connection>> ConnectionStore for SqliteConnectionStore<C> {
    type Error = Error;

    fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Error> {
        let row: Option<KeyRow> = self
            .connection()
            .prepare_cached(
                "SELECT ciphersuite, connection_establishment_key, inbox_id, owner_key,
                        published_at_ms
                 FROM mimi_ds_connection_key WHERE user_name = ?1",
            )?
            .query_row([user], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .optional()?;
        let Some((ciphersuite, key, inbox_id, owner_key, published_at_ms)) = row else {
            return Ok(None);
        };
        let ciphersuite = u16::try_from(ciphersuite).map_err(|_| Error::CorruptConnection {
            inbox: hex(&inbox_id),
            detail: format!("ciphersuite {ciphersuite}"),
        })?;
        let published_at_ms = unsigned(published_at_ms, "published_at_ms", &inbox_id)?;
        Ok(Some(ConnectionKeyRecord {
            ciphersuite,
            connection_establishment_key: key,
            inbox_id,
            owner_key,
            published_at_ms,
        }))
    }

    fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Error> {
        let row: Option<(Vec<u8>, i64, i64)> = self
            .connection()
            .prepare_cached(
                "SELECT user_name, next_sequence,
                        (SELECT count(*) FROM mimi_ds_connection_request WHERE inbox_id = ?1)
                 FROM mimi_ds_connection_inbox WHERE inbox_id = ?1",
            )?
            .query_row([inbox_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        let Some((user, next_sequence, len)) = row else {
            return Ok(None);
        };
        Ok(Some(InboxRecord {
            user,
            next_sequence: unsigned(next_sequence, "next_sequence", inbox_id)?,
            len: unsigned(len, "count", inbox_id)?,
        }))
    }

    fn has_mark(&self, inbox_id: &[u8], mark: &[u8], now_ms: u64) -> Result<bool, Error> {
        Ok(self
            .connection()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM mimi_ds_connection_mark
                                WHERE inbox_id = ?1 AND mark = ?2 AND expires_at_ms >= ?3)",
            )?
            .query_row(params![inbox_id, mark, sql_u64(now_ms)], |row| row.get(0))?)
    }

    fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, Error> {
        let mut statement = self.connection().prepare_cached(
            "SELECT request FROM mimi_ds_connection_request
             WHERE inbox_id = ?1 AND sequence_number >= ?2
             ORDER BY sequence_number LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![
                inbox_id,
                sql_u64(from_sequence),
                i64::try_from(max).unwrap_or(i64::MAX)
            ],
            |row| row.get::<_, Vec<u8>>(0),
        )?;
        rows.map(|bytes| {
            decode_exact::<StoredConnectionRequest>(&bytes?).map_err(|e| Error::CorruptConnection {
                inbox: hex(inbox_id),
                detail: e.to_string(),
            })
        })
        .collect()
    }

    fn apply(&mut self, now_ms: u64, change: ConnectionChange) -> Result<bool, Error> {
        let tx = WriteTx::begin(self.connection(), self.writers.as_deref())?;
        if self.change(now_ms, change)? {
            tx.commit()?;
            Ok(true)
        } else {
            tx.rollback()?;
            Ok(false)
        }
    }
}
