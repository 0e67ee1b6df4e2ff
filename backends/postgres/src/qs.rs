//! The Queueing Service's storage: [`PostgresQsStorage`] on a connection it holds, and the
//! same operations as functions on any [`GenericClient`], with [`write_in`] for a write inside
//! your own transaction.

use mimi_ds::qs::{queued_size, AsyncQsStorage, QsChange, QsWriteOutcome, QsWriteSet, QueueRecord};
use mimi_ds::wire::{decode_exact, encode, QueuedMessage};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, Row, Transaction};

use crate::{
    check_size, connect_plain, hex, is_lost_race, lost_to_concurrent_transaction, migrate, sql_u64,
    ClientHandle, Error, DEFAULT_MAX_VALUE_BYTES, EXPIRE_PER_WRITE,
};

/// The Queueing Service's [`AsyncQsStorage`] on one PostgreSQL connection. Each write set runs
/// in one transaction; its changes are applied in order, each guard checked against the state
/// the earlier changes left, and the first guard that fails rolls the whole set back
/// ([`QsWriteOutcome::Conflict`]).
#[derive(Debug)]
pub struct PostgresQsStorage<C: ClientHandle = Client> {
    client: C,
    max_value_bytes: usize,
}

impl PostgresQsStorage<Client> {
    /// Connects without TLS, runs the connection on the current tokio runtime and migrates
    /// the tables ([`crate::migrate`]), as [`crate::PostgresDsStorage::connect`].
    pub async fn connect(config: &str) -> Result<Self, Error> {
        let mut client = connect_plain(config).await?;
        migrate(&mut client).await?;
        Ok(Self::new(client))
    }
}

impl<C: ClientHandle> PostgresQsStorage<C> {
    /// Uses `client`, whose database [`crate::migrate`] has already set up.
    pub fn new(client: C) -> Self {
        Self {
            client,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }

    /// Refuses values over `max_value_bytes` with [`Error::TooLarge`], as
    /// [`crate::PostgresDsStorage::with_max_value_bytes`].
    pub fn with_max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// The connection, for your own statements.
    pub fn client(&self) -> &Client {
        self.client.client()
    }

    /// The connection, for your own transactions.
    pub fn client_mut(&mut self) -> &mut Client {
        self.client.client_mut()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.client
    }

    /// The number of delivery marks held, expired ones not yet dropped included.
    pub async fn mark_count(&self) -> Result<u64, Error> {
        let row = self
            .client()
            .query_one("SELECT count(*) FROM mimi_qs_mark", &[])
            .await?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }
}

fn corrupt(queue_id: &[u8], detail: String) -> Error {
    Error::CorruptQueue {
        queue: hex(queue_id),
        detail,
    }
}

fn get_u64(queue_id: &[u8], row: &Row, index: usize, name: &str) -> Result<u64, Error> {
    let value: i64 = row
        .try_get(index)
        .map_err(|e| corrupt(queue_id, format!("{name}: {e}")))?;
    u64::try_from(value).map_err(|_| corrupt(queue_id, format!("{name} {value}")))
}

fn get_bytes(queue_id: &[u8], row: &Row, index: usize, name: &str) -> Result<Vec<u8>, Error> {
    row.try_get(index)
        .map_err(|e| corrupt(queue_id, format!("{name}: {e}")))
}

/// A queue's record. [`AsyncQsStorage::queue`] on any connection or transaction.
pub async fn queue<G: GenericClient + Sync>(
    client: &G,
    queue_id: &[u8],
) -> Result<Option<QueueRecord>, Error> {
    let row = client
        .query_typed_opt(
            "SELECT owner_key, fanout_auth_token, next_sequence, first_unacknowledged,
                    queued_bytes
             FROM mimi_qs_queue WHERE queue_hash = sha256($1) AND queue_id = $1",
            &[(&queue_id, Type::BYTEA)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(QueueRecord {
        owner_key: get_bytes(queue_id, &row, 0, "owner_key")?,
        fanout_auth_token: get_bytes(queue_id, &row, 1, "fanout_auth_token")?,
        next_sequence: get_u64(queue_id, &row, 2, "next_sequence")?,
        first_unacknowledged: get_u64(queue_id, &row, 3, "first_unacknowledged")?,
        queued_bytes: get_u64(queue_id, &row, 4, "queued_bytes")?,
    }))
}

/// The queue owned by this key, if any. [`AsyncQsStorage::queue_of_owner`] on any connection
/// or transaction.
pub async fn queue_of_owner<G: GenericClient + Sync>(
    client: &G,
    owner_key: &[u8],
) -> Result<Option<Vec<u8>>, Error> {
    let row = client
        .query_typed_opt(
            "SELECT queue_id FROM mimi_qs_queue
             WHERE owner_hash = sha256($1) AND owner_key = $1",
            &[(&owner_key, Type::BYTEA)],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Up to `limit` messages from `from_sequence` on, within `max_bytes` except that the first
/// is always returned. [`AsyncQsStorage::messages`] on any connection or transaction.
pub async fn messages<G: GenericClient + Sync>(
    client: &G,
    queue_id: &[u8],
    from_sequence: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<QueuedMessage>, Error> {
    // The running total is computed by the server, so messages past the byte budget are not
    // sent at all; the loop below applies the same rule again on what arrives.
    let rows = client
        .query_typed(
            "SELECT message, size FROM (
                 SELECT message, size, sequence,
                        sum(size) OVER (ORDER BY sequence) AS running,
                        row_number() OVER (ORDER BY sequence) AS position
                 FROM (SELECT message, size, sequence FROM mimi_qs_message
                       WHERE queue_hash = sha256($1) AND sequence >= $2
                       ORDER BY sequence LIMIT $3) AS page
             ) AS counted
             WHERE position = 1 OR running <= $4
             ORDER BY sequence",
            &[
                (&queue_id, Type::BYTEA),
                (&sql_u64(from_sequence), Type::INT8),
                (&i64::try_from(limit).unwrap_or(i64::MAX), Type::INT8),
                (&i64::try_from(max_bytes).unwrap_or(i64::MAX), Type::INT8),
            ],
        )
        .await?;
    let mut page = Vec::new();
    let mut bytes = 0u64;
    for row in &rows {
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

/// Whether the queue holds a mark with this hash that is live at `now_ms`.
/// [`AsyncQsStorage::has_mark`] on any connection or transaction.
pub async fn has_mark<G: GenericClient + Sync>(
    client: &G,
    queue_id: &[u8],
    hash: &[u8],
    now_ms: u64,
) -> Result<bool, Error> {
    let row = client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM mimi_qs_mark
             WHERE queue_hash = sha256($1) AND mark_hash = sha256($2) AND expires_at_ms >= $3)",
            &[
                (&queue_id, Type::BYTEA),
                (&hash, Type::BYTEA),
                (&sql_u64(now_ms), Type::INT8),
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Applies a write set inside **your** transaction, under a savepoint, as
/// [`crate::ds::write_in`]: applied changes commit or roll back with your rows; a conflict or
/// an error rolls back the savepoint only. Values are limited to [`DEFAULT_MAX_VALUE_BYTES`].
pub async fn write_in(
    transaction: &mut Transaction<'_>,
    writes: &QsWriteSet,
) -> Result<QsWriteOutcome, Error> {
    let encoded = encode_messages(DEFAULT_MAX_VALUE_BYTES, writes)?;
    let savepoint = transaction.savepoint("mimi_qs_write").await?;
    finish(savepoint, writes, &encoded).await
}

/// Applies the changes in `tx` and commits them, or rolls them back on a conflict: a guard
/// changed no row, or the database aborted a statement or the commit with SQLSTATE 40001 or
/// 40P01 ([`crate::lost_to_concurrent_transaction`]). On any other error `tx` is dropped,
/// which rolls it back.
async fn finish(
    tx: Transaction<'_>,
    writes: &QsWriteSet,
    encoded: &[Option<Vec<u8>>],
) -> Result<QsWriteOutcome, Error> {
    let applied = match apply_all(&tx, writes, encoded).await {
        Ok(applied) => applied,
        Err(error) if is_lost_race(&error) => false,
        Err(error) => return Err(error),
    };
    if !applied {
        tx.rollback().await?;
        return Ok(QsWriteOutcome::Conflict);
    }
    match tx.commit().await {
        Ok(()) => Ok(QsWriteOutcome::Applied),
        // A failed COMMIT rolled the transaction back.
        Err(error) if lost_to_concurrent_transaction(&error) => Ok(QsWriteOutcome::Conflict),
        Err(error) => Err(error.into()),
    }
}

/// Every change in order, then the expiry of delivery marks; `Ok(false)` at the first guard
/// that fails (the caller rolls back).
async fn apply_all(
    tx: &Transaction<'_>,
    writes: &QsWriteSet,
    encoded: &[Option<Vec<u8>>],
) -> Result<bool, Error> {
    for (change, encoded) in writes.changes.iter().zip(encoded) {
        if !apply(tx, change, encoded.as_deref(), writes.now_ms).await? {
            return Ok(false);
        }
    }
    // Marks are live up to and including their expiry.
    tx.execute_typed(
        "DELETE FROM mimi_qs_mark WHERE (queue_hash, mark_hash) IN (
             SELECT queue_hash, mark_hash FROM mimi_qs_mark WHERE expires_at_ms < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
        &[
            (&sql_u64(writes.now_ms), Type::INT8),
            (&i64::from(EXPIRE_PER_WRITE), Type::INT8),
        ],
    )
    .await?;
    Ok(true)
}

/// Checks every size and encodes every queued message before anything is sent: one encoded
/// message per `Enqueue`, `None` for the other changes.
fn encode_messages(limit: usize, writes: &QsWriteSet) -> Result<Vec<Option<Vec<u8>>>, Error> {
    writes
        .changes
        .iter()
        .map(|change| match change {
            QsChange::CreateQueue { queue_id, record } => {
                let len = record.owner_key.len() + record.fanout_auth_token.len();
                check_size(limit, "queue record", "queue", queue_id, len)?;
                Ok(None)
            }
            QsChange::Enqueue {
                queue_id, message, ..
            } => {
                let len = usize::try_from(queued_size(message)).unwrap_or(usize::MAX);
                check_size(limit, "message", "queue", queue_id, len)?;
                let bytes =
                    encode(message).map_err(|e| corrupt(queue_id, format!("message: {e}")))?;
                check_size(limit, "message", "queue", queue_id, bytes.len())?;
                Ok(Some(bytes))
            }
            QsChange::DeleteQueue { .. } | QsChange::Acknowledge { .. } => Ok(None),
            // A change added to mimi-ds after this crate: refuse to guess what it means.
            other => Err(Error::UnsupportedChange(format!("{other:?}"))),
        })
        .collect()
}

/// Applies one change if its guard holds: `Ok(false)` is a conflict.
async fn apply(
    tx: &Transaction<'_>,
    change: &QsChange,
    encoded: Option<&[u8]>,
    now_ms: u64,
) -> Result<bool, Error> {
    match change {
        QsChange::CreateQueue { queue_id, record } => {
            // Either unique key taken (the queue ID or the owner key) inserts nothing.
            let inserted = tx
                .execute_typed(
                    "INSERT INTO mimi_qs_queue (queue_hash, queue_id, owner_hash, owner_key,
                         fanout_auth_token, next_sequence, first_unacknowledged, queued_bytes)
                     VALUES (sha256($1), $1, sha256($2), $2, $3, $4, $5, $6)
                     ON CONFLICT DO NOTHING",
                    &[
                        (&&queue_id[..], Type::BYTEA),
                        (&record.owner_key, Type::BYTEA),
                        (&record.fanout_auth_token, Type::BYTEA),
                        (&sql_u64(record.next_sequence), Type::INT8),
                        (&sql_u64(record.first_unacknowledged), Type::INT8),
                        (&sql_u64(record.queued_bytes), Type::INT8),
                    ],
                )
                .await?;
            Ok(inserted == 1)
        }
        QsChange::DeleteQueue { queue_id } => {
            // Its messages and marks go with it (ON DELETE CASCADE).
            let deleted = tx
                .execute_typed(
                    "DELETE FROM mimi_qs_queue WHERE queue_hash = sha256($1) AND queue_id = $1",
                    &[(&&queue_id[..], Type::BYTEA)],
                )
                .await?;
            Ok(deleted == 1)
        }
        QsChange::Enqueue {
            queue_id,
            message,
            mark,
        } => {
            let queue_id = &queue_id[..];
            let size = sql_u64(queued_size(message));
            let sequence = sql_u64(message.sequence_number);
            let advanced = tx
                .execute_typed(
                    "UPDATE mimi_qs_queue
                     SET next_sequence = next_sequence + 1, queued_bytes = queued_bytes + $3
                     WHERE queue_hash = sha256($1) AND queue_id = $1 AND next_sequence = $2",
                    &[
                        (&queue_id, Type::BYTEA),
                        (&sequence, Type::INT8),
                        (&size, Type::INT8),
                    ],
                )
                .await?;
            if advanced != 1 {
                return Ok(false);
            }
            // A live mark with the same hash is a conflict; an expired one is replaced.
            let marked = tx
                .execute_typed(
                    "INSERT INTO mimi_qs_mark (queue_hash, mark_hash, expires_at_ms)
                     VALUES (sha256($1), sha256($2), $3)
                     ON CONFLICT (queue_hash, mark_hash)
                         DO UPDATE SET expires_at_ms = excluded.expires_at_ms
                     WHERE mimi_qs_mark.expires_at_ms < $4",
                    &[
                        (&queue_id, Type::BYTEA),
                        (&mark.hash, Type::BYTEA),
                        (&sql_u64(mark.expires_at_ms), Type::INT8),
                        (&sql_u64(now_ms), Type::INT8),
                    ],
                )
                .await?;
            if marked != 1 {
                return Ok(false);
            }
            let Some(bytes) = encoded else {
                return Err(corrupt(queue_id, "message not encoded".into()));
            };
            tx.execute_typed(
                "INSERT INTO mimi_qs_message (queue_hash, sequence, message, size)
                 VALUES (sha256($1), $2, $3, $4)",
                &[
                    (&queue_id, Type::BYTEA),
                    (&sequence, Type::INT8),
                    (&bytes, Type::BYTEA),
                    (&size, Type::INT8),
                ],
            )
            .await?;
            Ok(true)
        }
        QsChange::Acknowledge {
            queue_id,
            up_to_sequence,
        } => {
            // One statement: the guard (the queue exists, up_to <= next_sequence; its row
            // locked by the UPDATE), the deletion and the byte count. No row updated is a
            // conflict, and then the messages CTE deleted nothing either (it is joined to the
            // guard through `guard`).
            let updated = tx
                .execute_typed(
                    "WITH guard AS (
                         SELECT queue_hash FROM mimi_qs_queue
                         WHERE queue_hash = sha256($1) AND queue_id = $1 AND next_sequence >= $2
                         FOR UPDATE
                     ), dropped AS (
                         DELETE FROM mimi_qs_message
                         WHERE queue_hash IN (SELECT queue_hash FROM guard) AND sequence < $2
                         RETURNING size
                     )
                     UPDATE mimi_qs_queue
                     SET queued_bytes = greatest(
                             queued_bytes - (SELECT coalesce(sum(size), 0) FROM dropped), 0),
                         first_unacknowledged = greatest(first_unacknowledged, $2)
                     WHERE queue_hash IN (SELECT queue_hash FROM guard)",
                    &[
                        (&&queue_id[..], Type::BYTEA),
                        (&sql_u64(*up_to_sequence), Type::INT8),
                    ],
                )
                .await?;
            Ok(updated == 1)
        }
        other => Err(Error::UnsupportedChange(format!("{other:?}"))),
    }
}

impl<C: ClientHandle> AsyncQsStorage for PostgresQsStorage<C> {
    type Error = Error;

    async fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, Error> {
        queue(self.client(), queue_id).await
    }

    async fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        queue_of_owner(self.client(), owner_key).await
    }

    async fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, Error> {
        messages(self.client(), queue_id, from_sequence, limit, max_bytes).await
    }

    async fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, Error> {
        has_mark(self.client(), queue_id, hash, now_ms).await
    }

    async fn write(&mut self, writes: &QsWriteSet) -> Result<QsWriteOutcome, Error> {
        let encoded = encode_messages(self.max_value_bytes, writes)?;
        let tx = self.client.client_mut().transaction().await?;
        finish(tx, writes, &encoded).await
    }
}
