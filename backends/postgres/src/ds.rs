//! The Delivery Service's storage and outbox: [`PostgresDsStorage`] on a connection it holds,
//! and the same operations as functions on any [`GenericClient`] (a connection or a
//! transaction), with [`write_in`] for a write inside your own transaction.

use mimi_ds::storage::{
    AsyncDsOutbox, AsyncDsStorage, GroupSnapshot, OutboxEntry, RecordKind, RecordWrite, ReplayMark,
    VersionGuard, WriteOutcome, WriteSet,
};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, Row, Transaction};

use crate::{
    check_size, connect_plain, hex, is_lost_race, lost_to_concurrent_transaction, migrate, sql_u64,
    ClientHandle, Error, DEFAULT_MAX_VALUE_BYTES, EXPIRE_PER_WRITE,
};

/// The Delivery Service's [`AsyncDsStorage`] and [`AsyncDsOutbox`] on one PostgreSQL
/// connection. See the [crate documentation](crate) for how each write is guarded.
#[derive(Debug)]
pub struct PostgresDsStorage<C: ClientHandle = Client> {
    client: C,
    max_value_bytes: usize,
}

impl PostgresDsStorage<Client> {
    /// Connects without TLS (see [`tokio_postgres::Config`] for the `config` string), runs the
    /// connection on the current tokio runtime and migrates the tables ([`crate::migrate`]).
    pub async fn connect(config: &str) -> Result<Self, Error> {
        let mut client = connect_plain(config).await?;
        migrate(&mut client).await?;
        Ok(Self::new(client))
    }
}

impl<C: ClientHandle> PostgresDsStorage<C> {
    /// Uses `client`, whose database [`crate::migrate`] has already set up (nothing is sent
    /// now, so a handle per request from a pool costs nothing).
    pub fn new(client: C) -> Self {
        Self {
            client,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }

    /// Refuses values over `max_value_bytes` (with the group ID beside them) with
    /// [`Error::TooLarge`] instead of [`crate::DEFAULT_MAX_VALUE_BYTES`]. Values over
    /// PostgreSQL's own limit fail either way; a lower limit bounds what one write may store.
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

    /// Total bytes of all records of a group, for measurements.
    pub async fn group_bytes(&self, group_id: &[u8]) -> Result<u64, Error> {
        let row = self
            .client()
            .query_typed_one(
                "SELECT coalesce(sum(octet_length(value)), 0)::bigint FROM mimi_ds_record
                 WHERE group_hash = sha256($1)",
                &[(&group_id, Type::BYTEA)],
            )
            .await?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    /// The number of outbox entries not yet marked delivered, due or not.
    pub async fn outbox_len(&self) -> Result<u64, Error> {
        let row = self
            .client()
            .query_one("SELECT count(*) FROM mimi_ds_outbox", &[])
            .await?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }
}

/// The `(kind, key)` columns of a record kind: [`RecordKind::stored_code`], whose numbers never
/// change. The epoch's bits are stored as a signed integer: keys are only compared for equality.
fn kind_columns(kind: RecordKind) -> (i16, i64) {
    let (code, key) = kind.stored_code();
    // Codes are small (below 256), so they fit the SMALLINT column.
    (code as i16, key as i64)
}

/// The record kind of stored `(kind, key)` columns.
fn kind_of(group_id: &[u8], kind: i16, key: i64) -> Result<RecordKind, Error> {
    u16::try_from(kind)
        .ok()
        .and_then(|code| RecordKind::from_stored_code(code, key as u64))
        .ok_or_else(|| {
            corrupt(
                group_id,
                format!("unknown record kind {kind} with key {key}"),
            )
        })
}

fn corrupt(group_id: &[u8], detail: String) -> Error {
    Error::CorruptGroup {
        group: hex(group_id),
        detail,
    }
}

/// A column that does not have the stored type (a hand-altered table) is corruption of the
/// group, not a database failure.
fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    group_id: &[u8],
    row: &'r Row,
    index: usize,
    name: &str,
) -> Result<T, Error> {
    row.try_get(index)
        .map_err(|e| corrupt(group_id, format!("column {name}: {e}")))
}

fn non_negative(group_id: &[u8], value: i64, name: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| corrupt(group_id, format!("{name} {value}")))
}

/// Reads the group's version and those of `kinds` that exist, in one statement (one
/// snapshot); `Ok(None)` if the group does not exist. [`AsyncDsStorage::read`] on any
/// connection or transaction.
pub async fn read<G: GenericClient + Sync>(
    client: &G,
    group_id: &[u8],
    kinds: &[RecordKind],
) -> Result<Option<GroupSnapshot>, Error> {
    let mut numbers: Vec<i16> = Vec::with_capacity(kinds.len());
    let mut keys: Vec<i64> = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let (number, key) = kind_columns(*kind);
        // A kind asked for twice is read once.
        if !numbers.iter().zip(&keys).any(|p| p == (&number, &key)) {
            numbers.push(number);
            keys.push(key);
        }
    }
    let rows = client
        .query_typed(
            "SELECT g.version, r.kind, r.key, r.value
             FROM mimi_ds_group g
             LEFT JOIN (mimi_ds_record r
                        JOIN unnest($2::smallint[], $3::bigint[]) AS wanted (kind, key)
                        ON r.kind = wanted.kind AND r.key = wanted.key)
                 ON r.group_hash = g.group_hash
             WHERE g.group_hash = sha256($1) AND g.group_id = $1",
            &[
                (&group_id, Type::BYTEA),
                (&numbers, Type::INT2_ARRAY),
                (&keys, Type::INT8_ARRAY),
            ],
        )
        .await?;
    let mut snapshot: Option<GroupSnapshot> = None;
    for row in &rows {
        let version = non_negative(group_id, column(group_id, row, 0, "version")?, "version")?;
        let snapshot = snapshot.get_or_insert_with(|| GroupSnapshot {
            version,
            records: Vec::new(),
        });
        let kind: Option<i16> = column(group_id, row, 1, "kind")?;
        if let Some(kind) = kind {
            let key: i64 = column(group_id, row, 2, "key")?;
            let value: Vec<u8> = column(group_id, row, 3, "value")?;
            snapshot
                .records
                .push((kind_of(group_id, kind, key)?, value));
        }
    }
    Ok(snapshot)
}

/// The replay mark under `key` that is live at `now_ms` (`now_ms <= expires_at_ms`).
/// [`AsyncDsStorage::replay_mark`] on any connection or transaction.
pub async fn replay_mark<G: GenericClient + Sync>(
    client: &G,
    group_id: &[u8],
    key: &[u8],
    now_ms: u64,
) -> Result<Option<ReplayMark>, Error> {
    let row = client
        .query_typed_opt(
            "SELECT request_hash, response, expires_at_ms FROM mimi_ds_replay
             WHERE group_hash = sha256($1) AND key_hash = sha256($2) AND expires_at_ms >= $3",
            &[
                (&group_id, Type::BYTEA),
                (&key, Type::BYTEA),
                (&sql_u64(now_ms), Type::INT8),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let expires_at_ms: i64 = column(group_id, &row, 2, "expires_at_ms")?;
    Ok(Some(ReplayMark {
        request_hash: column(group_id, &row, 0, "request_hash")?,
        response: column(group_id, &row, 1, "response")?,
        expires_at_ms: non_negative(group_id, expires_at_ms, "replay mark expiry")?,
    }))
}

/// Applies a write set inside **your** transaction, under a savepoint: on
/// [`WriteOutcome::Applied`] its changes (records, replay mark, outbox entries) are part of
/// your transaction and commit or roll back with your own rows; on
/// [`WriteOutcome::Conflict`] or an error, the savepoint is rolled back and your transaction
/// is usable as before. Values are limited to [`DEFAULT_MAX_VALUE_BYTES`].
///
/// The guard is only as good as your transaction: the version check takes the group's row
/// lock, which your transaction then holds until it ends, so keep it short.
pub async fn write_in(
    transaction: &mut Transaction<'_>,
    write_set: &WriteSet,
) -> Result<WriteOutcome, Error> {
    let outbox = outbox_entries(write_set);
    check_sizes(DEFAULT_MAX_VALUE_BYTES, write_set, &outbox)?;
    let savepoint = transaction.savepoint("mimi_ds_write").await?;
    finish(savepoint, write_set, &outbox).await
}

/// The outbox entries of a write set (IDs are assigned by the database).
fn outbox_entries(ws: &WriteSet) -> Vec<OutboxEntry> {
    ws.fanout
        .iter()
        .map(|fanout| OutboxEntry::new(&ws.group_id, fanout, ws.now_ms))
        .collect()
}

/// Applies the write set in `tx` and commits it, or rolls it back on a conflict: the guard
/// or the replay mark changed no row, or the database aborted a statement or the commit with
/// SQLSTATE 40001 or 40P01 ([`crate::lost_to_concurrent_transaction`]). On any other error
/// `tx` is dropped, which rolls it back.
async fn finish(
    tx: Transaction<'_>,
    ws: &WriteSet,
    outbox: &[OutboxEntry],
) -> Result<WriteOutcome, Error> {
    let applied = match apply(&tx, ws, outbox).await {
        Ok(applied) => applied,
        Err(error) if is_lost_race(&error) => false,
        Err(error) => return Err(error),
    };
    if !applied {
        tx.rollback().await?;
        return Ok(WriteOutcome::Conflict);
    }
    match tx.commit().await {
        Ok(()) => Ok(WriteOutcome::Applied),
        // A failed COMMIT rolled the transaction back. (`write_in`'s commit is a RELEASE of
        // its savepoint; the vendor's own COMMIT is where its transaction may fail.)
        Err(error) if lost_to_concurrent_transaction(&error) => Ok(WriteOutcome::Conflict),
        Err(error) => Err(error.into()),
    }
}

/// Checks every size first, so an oversized write fails before it sends anything.
fn check_sizes(limit: usize, ws: &WriteSet, outbox: &[OutboxEntry]) -> Result<(), Error> {
    check_size(limit, "group ID", "group", &ws.group_id, 0)?;
    for change in &ws.records {
        if let RecordWrite::Put(_, value) = change {
            check_size(limit, "record", "group", &ws.group_id, value.len())?;
        }
    }
    if let Some((key, mark)) = &ws.replay_mark {
        let len = key.len() + mark.request_hash.len() + mark.response.as_ref().map_or(0, Vec::len);
        check_size(limit, "replay mark", "group", &ws.group_id, len)?;
    }
    for entry in outbox {
        let len = entry.request.len() + entry.destination.len();
        check_size(limit, "outbox entry", "group", &ws.group_id, len)?;
    }
    Ok(())
}

/// Every change of the write set; `Ok(false)` if the guard or the replay mark conflicts (the
/// caller rolls back).
async fn apply(tx: &Transaction<'_>, ws: &WriteSet, outbox: &[OutboxEntry]) -> Result<bool, Error> {
    let group_id = &ws.group_id[..];
    let guard_held = match ws.guard {
        VersionGuard::Absent => {
            tx.execute_typed(
                "INSERT INTO mimi_ds_group (group_hash, group_id, version)
                 VALUES (sha256($1), $1, 1) ON CONFLICT (group_hash) DO NOTHING",
                &[(&group_id, Type::BYTEA)],
            )
            .await?
                == 1
        }
        VersionGuard::Exactly(version) => {
            // A write that puts a record other than a reservation leaves no reservation-only
            // group: the guard's update clears the reservation expiry in the same round trip.
            tx.execute_typed(
                "UPDATE mimi_ds_group SET version = version + 1,
                     reserved_until_ms = CASE WHEN $3 THEN NULL ELSE reserved_until_ms END
                 WHERE group_hash = sha256($1) AND group_id = $1 AND version = $2",
                &[
                    (&group_id, Type::BYTEA),
                    (&sql_u64(version), Type::INT8),
                    (&puts_other_than_reservation(ws), Type::BOOL),
                ],
            )
            .await?
                == 1
        }
        VersionGuard::ReplayMarkOnly => true,
    };
    if !guard_held {
        return Ok(false);
    }
    if let Some((key, mark)) = &ws.replay_mark {
        // Replaces an expired mark under the same key; a live one changes no row: a conflict.
        let stored = tx
            .execute_typed(
                "INSERT INTO mimi_ds_replay
                     (group_hash, key_hash, request_hash, response, expires_at_ms)
                 VALUES (sha256($1), sha256($2), $3, $4, $5)
                 ON CONFLICT (group_hash, key_hash) DO UPDATE SET
                     request_hash = excluded.request_hash,
                     response = excluded.response,
                     expires_at_ms = excluded.expires_at_ms
                 WHERE mimi_ds_replay.expires_at_ms < $6",
                &[
                    (&group_id, Type::BYTEA),
                    (&&key[..], Type::BYTEA),
                    (&mark.request_hash, Type::BYTEA),
                    (&mark.response, Type::BYTEA),
                    (&sql_u64(mark.expires_at_ms), Type::INT8),
                    (&sql_u64(ws.now_ms), Type::INT8),
                ],
            )
            .await?;
        if stored != 1 {
            return Ok(false);
        }
    }
    if ws.guard != VersionGuard::ReplayMarkOnly && !ws.records.is_empty() {
        apply_records(tx, ws).await?;
    }
    apply_outbox(tx, group_id, outbox).await?;
    // After the changes, so a group this write turns from a reservation into a group stays.
    drop_expired(tx, ws.now_ms).await?;
    Ok(true)
}

async fn apply_records(tx: &Transaction<'_>, ws: &WriteSet) -> Result<(), Error> {
    let group_id = &ws.group_id[..];
    for change in &ws.records {
        match change {
            RecordWrite::Put(kind, value) => {
                let (kind, key) = kind_columns(*kind);
                tx.execute_typed(
                    "INSERT INTO mimi_ds_record (group_hash, kind, key, value)
                     VALUES (sha256($1), $2, $3, $4)
                     ON CONFLICT (group_hash, kind, key) DO UPDATE SET value = excluded.value",
                    &[
                        (&group_id, Type::BYTEA),
                        (&kind, Type::INT2),
                        (&key, Type::INT8),
                        (&&value[..], Type::BYTEA),
                    ],
                )
                .await?;
            }
            RecordWrite::Delete(kind) => {
                let (kind, key) = kind_columns(*kind);
                tx.execute_typed(
                    "DELETE FROM mimi_ds_record
                     WHERE group_hash = sha256($1) AND kind = $2 AND key = $3",
                    &[
                        (&group_id, Type::BYTEA),
                        (&kind, Type::INT2),
                        (&key, Type::INT8),
                    ],
                )
                .await?;
            }
        }
    }
    // Index the group's expiry while it holds only a reservation (storage contract: such a
    // group may be dropped once the reservation expired), and clear it otherwise. A write
    // that puts any other kind leaves no reservation-only group: the guard cleared the expiry
    // (or, for a new group, never set it), so there is nothing to look at.
    if puts_other_than_reservation(ws) {
        return Ok(());
    }
    let (reservation, _) = kind_columns(RecordKind::Reservation);
    let reserved_until = {
        let rows = tx
            .query_typed(
                "SELECT kind, key, substring(value FROM 1 FOR 8) FROM mimi_ds_record
                 WHERE group_hash = sha256($1) LIMIT 2",
                &[(&group_id, Type::BYTEA)],
            )
            .await?;
        match &rows[..] {
            [only] => {
                let kind: i16 = column(group_id, only, 0, "kind")?;
                let key: i64 = column(group_id, only, 1, "key")?;
                let prefix: Vec<u8> = column(group_id, only, 2, "value")?;
                if (kind, key) == (reservation, 0) {
                    mimi_ds::storage::record_expiry_ms(&prefix).map(sql_u64)
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    tx.execute_typed(
        "UPDATE mimi_ds_group SET reserved_until_ms = $2
         WHERE group_hash = sha256($1) AND reserved_until_ms IS DISTINCT FROM $2",
        &[(&group_id, Type::BYTEA), (&reserved_until, Type::INT8)],
    )
    .await?;
    Ok(())
}

/// Whether the write set puts a record of a kind other than [`RecordKind::Reservation`].
fn puts_other_than_reservation(ws: &WriteSet) -> bool {
    ws.records.iter().any(
        |change| matches!(change, RecordWrite::Put(kind, _) if *kind != RecordKind::Reservation),
    )
}

/// One row per entry, in order (the identity column numbers them in the order inserted),
/// in as few statements as the size limit allows.
async fn apply_outbox(
    tx: &Transaction<'_>,
    group_id: &[u8],
    outbox: &[OutboxEntry],
) -> Result<(), Error> {
    let mut rest = outbox;
    while !rest.is_empty() {
        // Each statement carries at most about one value's worth of bytes.
        let mut bytes = 0usize;
        let count = rest
            .iter()
            .take_while(|entry| {
                bytes = bytes.saturating_add(entry.request.len() + entry.destination.len());
                bytes <= DEFAULT_MAX_VALUE_BYTES / 2
            })
            .count()
            .max(1);
        let (batch, later) = rest.split_at(count);
        rest = later;
        let destinations: Vec<&str> = batch.iter().map(|e| e.destination.as_str()).collect();
        let requests: Vec<&[u8]> = batch.iter().map(|e| &e.request[..]).collect();
        let created_at = sql_u64(batch[0].created_at_ms);
        tx.execute_typed(
            "INSERT INTO mimi_ds_outbox
                 (group_id, destination, request, created_at_ms, attempts, next_attempt_at_ms)
             SELECT $1, f.destination, f.request, $4, 0, $4
             FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS f (destination, request, n)
             ORDER BY f.n",
            &[
                (&group_id, Type::BYTEA),
                (&destinations, Type::TEXT_ARRAY),
                (&requests, Type::BYTEA_ARRAY),
                (&created_at, Type::INT8),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Drops replay marks and reservation-only groups (with their records) that expired before
/// `now` (live while `now <= expires_at_ms`), through their expiry indexes: at most
/// [`EXPIRE_PER_WRITE`] of each, skipping rows another writer holds.
async fn drop_expired(tx: &Transaction<'_>, now_ms: u64) -> Result<(), Error> {
    tx.execute_typed(
        "WITH marks AS (
             DELETE FROM mimi_ds_replay WHERE (group_hash, key_hash) IN (
                 SELECT group_hash, key_hash FROM mimi_ds_replay WHERE expires_at_ms < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING 1
         ), reservations AS (
             DELETE FROM mimi_ds_group WHERE group_hash IN (
                 SELECT group_hash FROM mimi_ds_group WHERE reserved_until_ms < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM marks), (SELECT count(*) FROM reservations)",
        &[
            (&sql_u64(now_ms), Type::INT8),
            (&i64::from(EXPIRE_PER_WRITE), Type::INT8),
        ],
    )
    .await?;
    Ok(())
}

fn outbox_entry(row: &Row) -> Result<OutboxEntry, Error> {
    let id: i64 = row.try_get(0)?;
    let bad = |detail: String| Error::CorruptOutbox { id, detail };
    let get_u64 = |index: usize, name: &str| -> Result<u64, Error> {
        let value: i64 = row
            .try_get(index)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        u64::try_from(value).map_err(|_| bad(format!("{name} {value}")))
    };
    Ok(OutboxEntry {
        id: u64::try_from(id).map_err(|_| bad("negative id".into()))?,
        group_id: row.try_get(1).map_err(|e| bad(format!("group_id: {e}")))?,
        destination: row
            .try_get(2)
            .map_err(|e| bad(format!("destination: {e}")))?,
        request: row.try_get(3).map_err(|e| bad(format!("request: {e}")))?,
        created_at_ms: get_u64(4, "created_at_ms")?,
        attempts: u32::try_from(get_u64(5, "attempts")?).unwrap_or(u32::MAX),
        next_attempt_at_ms: get_u64(6, "next_attempt_at_ms")?,
    })
}

/// Up to `limit` outbox entries due at `now_ms`, oldest first, leaving out each entry that has
/// an older entry of its destination not yet due. [`AsyncDsOutbox::pending`] on any connection
/// or transaction.
pub async fn pending<G: GenericClient + Sync>(
    client: &G,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<OutboxEntry>, Error> {
    let rows = client
        .query_typed(
            // One statement, so one snapshot: an entry waits while an older entry of its
            // destination is put off (the DsOutbox contract), whichever replica put it off;
            // the probe reads mimi_ds_outbox_destination_due.
            "SELECT id, group_id, destination, request, created_at_ms, attempts,
                    next_attempt_at_ms
             FROM mimi_ds_outbox AS o
             WHERE next_attempt_at_ms <= $1
               AND NOT EXISTS (
                   SELECT 1 FROM mimi_ds_outbox AS older
                   WHERE older.destination = o.destination
                     AND older.next_attempt_at_ms > $1
                     AND older.id < o.id)
             ORDER BY id LIMIT $2",
            &[
                (&sql_u64(now_ms), Type::INT8),
                (&i64::try_from(limit).unwrap_or(i64::MAX), Type::INT8),
            ],
        )
        .await?;
    rows.iter().map(outbox_entry).collect()
}

/// Removes a delivered entry; `Ok(false)` if there was none. [`AsyncDsOutbox::mark_delivered`]
/// on any connection or transaction.
pub async fn mark_delivered<G: GenericClient + Sync>(client: &G, id: u64) -> Result<bool, Error> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(false);
    };
    let deleted = client
        .execute_typed(
            "DELETE FROM mimi_ds_outbox WHERE id = $1",
            &[(&id, Type::INT8)],
        )
        .await?;
    Ok(deleted == 1)
}

/// Counts a failed attempt and hides the entry until `next_attempt_at_ms`; `Ok(false)` if
/// there was none. [`AsyncDsOutbox::retry_later`] on any connection or transaction.
pub async fn retry_later<G: GenericClient + Sync>(
    client: &G,
    id: u64,
    next_attempt_at_ms: u64,
) -> Result<bool, Error> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(false);
    };
    let changed = client
        .execute_typed(
            "UPDATE mimi_ds_outbox
             SET attempts = least(attempts + 1, 4294967295), next_attempt_at_ms = $2
             WHERE id = $1",
            &[
                (&id, Type::INT8),
                (&sql_u64(next_attempt_at_ms), Type::INT8),
            ],
        )
        .await?;
    Ok(changed == 1)
}

impl<C: ClientHandle> AsyncDsStorage for PostgresDsStorage<C> {
    type Error = Error;

    async fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Error> {
        read(self.client(), group_id, kinds).await
    }

    async fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Error> {
        replay_mark(self.client(), group_id, key, now_ms).await
    }

    async fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Error> {
        let outbox = outbox_entries(write_set);
        check_sizes(self.max_value_bytes, write_set, &outbox)?;
        let tx = self.client.client_mut().transaction().await?;
        finish(tx, write_set, &outbox).await
    }
}

impl<C: ClientHandle> AsyncDsOutbox for PostgresDsStorage<C> {
    async fn pending(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        pending(self.client(), now_ms, limit).await
    }

    async fn mark_delivered(&mut self, id: u64) -> Result<bool, Error> {
        mark_delivered(self.client(), id).await
    }

    async fn retry_later(&mut self, id: u64, next_attempt_at_ms: u64) -> Result<bool, Error> {
        retry_later(self.client(), id, next_attempt_at_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind maps to its columns and back; stored numbers this version does not know, and
    /// a key on a kind without one, are corruption naming the group.
    #[test]
    fn record_kinds_round_trip_and_unknown_numbers_are_corruption() {
        let keyed = [0, 1, u64::MAX].map(|epoch| RecordKind::WelcomeTree { epoch });
        for kind in RecordKind::ALL.into_iter().chain(keyed) {
            let (number, key) = kind_columns(kind);
            assert_eq!(kind_of(b"g", number, key).unwrap(), kind);
        }
        for (number, key) in [(0, 0), (11, 0), (-1, 0), (2, 1)] {
            match kind_of(b"\x01\x02", number, key) {
                Err(Error::CorruptGroup { group, .. }) => assert_eq!(group, "0102"),
                other => panic!("({number}, {key}) is corrupt: {other:?}"),
            }
        }
    }
}
