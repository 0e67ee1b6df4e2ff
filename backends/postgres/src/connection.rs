//! A provider's connection-establishment keys and connection inboxes (mimi-ds wire-format.md
//! §14.3.2-§14.3.3): [`PostgresConnectionStore`] on a connection it holds.

use mimi_ds::connection::{
    AsyncConnectionStore, ConnectionChange, ConnectionKeyRecord, InboxRecord,
    StoredConnectionRequest,
};
use mimi_ds::wire::{decode_exact, encode};
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::{
    check_size, connect_plain, hex, is_lost_race, lost_to_concurrent_transaction, migrate, sql_u64,
    ClientHandle, Error, DEFAULT_MAX_VALUE_BYTES,
};

/// The connection inboxes' [`AsyncConnectionStore`] on one PostgreSQL connection. Each change
/// runs in one transaction that first deletes expired replay marks: an `Enqueue` is the
/// inbox's `UPDATE … SET next_sequence = next_sequence + 1 WHERE next_sequence = $2` (the row
/// lock serialises racing writers; the loser sees no row and the transaction is rolled back),
/// the request's row and the mark's upsert. SQLSTATE 40001/40P01 is a lost race too (`false`).
#[derive(Debug)]
pub struct PostgresConnectionStore<C: ClientHandle = Client> {
    client: C,
    max_value_bytes: usize,
}

impl PostgresConnectionStore<Client> {
    /// Connects without TLS, runs the connection on the current tokio runtime and migrates
    /// the tables ([`crate::migrate`]).
    pub async fn connect(config: &str) -> Result<Self, Error> {
        let mut client = connect_plain(config).await?;
        migrate(&mut client).await?;
        Ok(Self::new(client))
    }
}

impl<C: ClientHandle> PostgresConnectionStore<C> {
    /// Uses `client`, whose database [`crate::migrate`] has already set up.
    pub fn new(client: C) -> Self {
        Self {
            client,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }

    /// The connection, for your own statements.
    pub fn client(&self) -> &Client {
        self.client.client()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.client
    }
}

fn corrupt(inbox: &[u8], detail: impl Into<String>) -> Error {
    Error::CorruptConnection {
        inbox: hex(inbox),
        detail: detail.into(),
    }
}

/// `user`'s published key, through any client.
pub async fn key_record<G: GenericClient + Sync>(
    client: &G,
    user: &[u8],
) -> Result<Option<ConnectionKeyRecord>, Error> {
    let Some(row) = client
        .query_opt(
            "SELECT ciphersuite, connection_establishment_key, inbox_id, owner_key,
                    published_at_ms
             FROM mimi_ds_connection_key WHERE user_name = $1",
            &[&user],
        )
        .await?
    else {
        return Ok(None);
    };
    let ciphersuite: i64 = row.try_get(0)?;
    let inbox_id: Vec<u8> = row.try_get(2)?;
    let ciphersuite = u16::try_from(ciphersuite)
        .map_err(|_| corrupt(&inbox_id, format!("ciphersuite {ciphersuite}")))?;
    let published_at_ms: i64 = row.try_get(4)?;
    let published_at_ms = u64::try_from(published_at_ms)
        .map_err(|_| corrupt(&inbox_id, format!("published_at_ms {published_at_ms}")))?;
    Ok(Some(ConnectionKeyRecord {
        ciphersuite,
        connection_establishment_key: row.try_get(1)?,
        inbox_id,
        owner_key: row.try_get(3)?,
        published_at_ms,
    }))
}

/// The inbox `inbox_id`, through any client.
pub async fn inbox<G: GenericClient + Sync>(
    client: &G,
    inbox_id: &[u8],
) -> Result<Option<InboxRecord>, Error> {
    let Some(row) = client
        .query_opt(
            "SELECT user_name, next_sequence,
                    (SELECT count(*) FROM mimi_ds_connection_request WHERE inbox_id = $1)
             FROM mimi_ds_connection_inbox WHERE inbox_id = $1",
            &[&inbox_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let next_sequence: i64 = row.try_get(1)?;
    let len: i64 = row.try_get(2)?;
    Ok(Some(InboxRecord {
        user: row.try_get(0)?,
        next_sequence: u64::try_from(next_sequence)
            .map_err(|_| corrupt(inbox_id, format!("next_sequence {next_sequence}")))?,
        len: u64::try_from(len).map_err(|_| corrupt(inbox_id, format!("count {len}")))?,
    }))
}

/// Every change; `Ok(false)` if its guard failed.
async fn change(
    tx: &Transaction<'_>,
    now_ms: u64,
    change: ConnectionChange,
) -> Result<bool, Error> {
    tx.execute(
        "DELETE FROM mimi_ds_connection_mark WHERE expires_at_ms < $1",
        &[&sql_u64(now_ms)],
    )
    .await?;
    match change {
        ConnectionChange::Publish { user, record } => {
            // Rule R-CONN-9: only a newer publication replaces the stored one; the guard
            // comes first, so a refused one writes nothing.
            let written = tx
                .execute(
                    "INSERT INTO mimi_ds_connection_key
                         (user_name, ciphersuite, connection_establishment_key, inbox_id,
                          owner_key, published_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (user_name) DO UPDATE SET
                         ciphersuite = excluded.ciphersuite,
                         connection_establishment_key = excluded.connection_establishment_key,
                         inbox_id = excluded.inbox_id,
                         owner_key = excluded.owner_key,
                         published_at_ms = excluded.published_at_ms
                     WHERE mimi_ds_connection_key.published_at_ms < excluded.published_at_ms",
                    &[
                        &user,
                        &i64::from(record.ciphersuite),
                        &record.connection_establishment_key,
                        &record.inbox_id,
                        &record.owner_key,
                        &sql_u64(record.published_at_ms),
                    ],
                )
                .await?;
            if written == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO mimi_ds_connection_inbox (inbox_id, user_name, next_sequence)
                 VALUES ($1, $2, 0) ON CONFLICT (inbox_id) DO NOTHING",
                &[&record.inbox_id, &user],
            )
            .await?;
            Ok(true)
        }
        ConnectionChange::Enqueue {
            inbox_id,
            request,
            mark,
            mark_expires_at_ms,
        } => {
            let bytes = encode(&request).map_err(|e| corrupt(&inbox_id, e.to_string()))?;
            let sequence = sql_u64(request.sequence_number);
            let advanced = tx
                .execute(
                    "UPDATE mimi_ds_connection_inbox SET next_sequence = next_sequence + 1
                     WHERE inbox_id = $1 AND next_sequence = $2",
                    &[&inbox_id, &sequence],
                )
                .await?;
            if advanced != 1 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO mimi_ds_connection_request (inbox_id, sequence_number, request)
                 VALUES ($1, $2, $3)",
                &[&inbox_id, &sequence, &bytes],
            )
            .await?;
            tx.execute(
                "INSERT INTO mimi_ds_connection_mark (inbox_id, mark, expires_at_ms)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (inbox_id, mark) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
                &[&inbox_id, &mark, &sql_u64(mark_expires_at_ms)],
            )
            .await?;
            Ok(true)
        }
        ConnectionChange::Acknowledge {
            inbox_id,
            up_to_sequence,
        } => {
            if inbox(tx, &inbox_id).await?.is_none() {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM mimi_ds_connection_request
                 WHERE inbox_id = $1 AND sequence_number < $2",
                &[&inbox_id, &sql_u64(up_to_sequence)],
            )
            .await?;
            Ok(true)
        }
        other => Err(Error::UnsupportedChange(format!("{other:?}"))),
    }
}

impl<C: ClientHandle> AsyncConnectionStore for PostgresConnectionStore<C> {
    type Error = Error;

    async fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Error> {
        key_record(self.client(), user).await
    }

    async fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Error> {
        inbox(self.client(), inbox_id).await
    }

    async fn has_mark(&self, inbox_id: &[u8], mark: &[u8], now_ms: u64) -> Result<bool, Error> {
        let row = self
            .client()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM mimi_ds_connection_mark
                                WHERE inbox_id = $1 AND mark = $2 AND expires_at_ms >= $3)",
                &[&inbox_id, &mark, &sql_u64(now_ms)],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, Error> {
        let rows = self
            .client()
            .query(
                "SELECT request FROM mimi_ds_connection_request
                 WHERE inbox_id = $1 AND sequence_number >= $2
                 ORDER BY sequence_number LIMIT $3",
                &[
                    &inbox_id,
                    &sql_u64(from_sequence),
                    &i64::try_from(max).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let bytes: Vec<u8> = row.try_get(0)?;
                decode_exact::<StoredConnectionRequest>(&bytes)
                    .map_err(|e| corrupt(inbox_id, e.to_string()))
            })
            .collect()
    }

    async fn apply(&mut self, now_ms: u64, change_: ConnectionChange) -> Result<bool, Error> {
        if let ConnectionChange::Enqueue {
            inbox_id, request, ..
        } = &change_
        {
            let len = request.sealed_request.ciphertext.as_slice().len()
                + request.sealed_request.kem_output.as_slice().len();
            check_size(
                self.max_value_bytes,
                "connection request",
                "inbox",
                inbox_id,
                len,
            )?;
        }
        let tx = self.client.client_mut().transaction().await?;
        let applied = match change(&tx, now_ms, change_).await {
            Ok(applied) => applied,
            Err(error) if is_lost_race(&error) => false,
            Err(error) => return Err(error),
        };
        if !applied {
            tx.rollback().await?;
            return Ok(false);
        }
        match tx.commit().await {
            Ok(()) => Ok(true),
            // A failed COMMIT rolled the transaction back.
            Err(error) if lost_to_concurrent_transaction(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
