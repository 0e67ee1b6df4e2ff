//! [`SqliteDsStorage`]: the Delivery Service's storage and outbox.

use std::borrow::Borrow;
use std::path::Path;
use std::sync::Arc;

use mimi_ds::storage::{
    DsOutbox, DsStorage, GroupSnapshot, OutboxEntry, RecordKind, RecordWrite, ReplayMark,
    VersionGuard, WriteOutcome, WriteSet,
};
use rusqlite::{params, Connection, Row};

use crate::{
    check_size, enable_wal, hex, length_limit, migrate, sql_u64, Error, WriteTx, WriterQueue,
    WriterTurn,
};

/// The Delivery Service's [`DsStorage`] and [`DsOutbox`] on a SQLite connection you own. See
/// the [crate documentation](crate) for how each write is guarded.
#[derive(Debug)]
pub struct SqliteDsStorage<C: Borrow<Connection> = Connection> {
    connection: C,
    writers: Option<Arc<WriterQueue>>,
}

impl SqliteDsStorage<Connection> {
    /// Opens (or creates) a database file in WAL mode and migrates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let connection = Connection::open(path)?;
        enable_wal(&connection)?;
        Self::new(connection)
    }
}

impl<C: Borrow<Connection>> SqliteDsStorage<C> {
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

    /// A turn of the writer queue for a one-statement write, unless it runs inside a
    /// transaction (whose writer holds the turn).
    fn turn_outside_transaction(&self) -> Option<WriterTurn<'_>> {
        if self.connection().is_autocommit() {
            self.writers.as_deref().map(WriterQueue::enter)
        } else {
            None
        }
    }

    /// Total bytes of all records of a group, for measurements.
    pub fn group_bytes(&self, group_id: &[u8]) -> Result<u64, Error> {
        let bytes: i64 = self.connection().query_row(
            "SELECT coalesce(sum(length(value)), 0) FROM mimi_ds_record WHERE group_id = ?1",
            [group_id],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    /// The number of outbox entries not yet marked delivered, due or not.
    pub fn outbox_len(&self) -> Result<u64, Error> {
        let count: i64 =
            self.connection()
                .query_row("SELECT count(*) FROM mimi_ds_outbox", [], |row| row.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// The `(kind, key)` columns of a record kind: [`RecordKind::stored_code`], whose numbers never
/// change. The epoch's bits are stored as a signed integer: keys are only compared for equality.
fn kind_columns(kind: RecordKind) -> (i64, i64) {
    let (code, key) = kind.stored_code();
    (i64::from(code), key as i64)
}

/// The record kind of stored `(kind, key)` columns.
fn kind_of(group_id: &[u8], kind: i64, key: i64) -> Result<RecordKind, Error> {
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

/// A column that does not have the stored type is corruption of the group, not a database
/// failure.
fn column<T: rusqlite::types::FromSql>(
    group_id: &[u8],
    row: &Row<'_>,
    index: usize,
    name: &str,
) -> Result<T, Error> {
    row.get(index)
        .map_err(|e| corrupt(group_id, format!("column {name}: {e}")))
}

/// Checks every size first, so an oversized write fails before it changes anything.
fn check_sizes(
    connection: &Connection,
    ws: &WriteSet,
    outbox: &[OutboxEntry],
) -> Result<(), Error> {
    let limit = length_limit(connection)?;
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

/// The guard: `Ok(true)` if it holds (and the version moved), `Ok(false)` for a conflict.
fn apply_guard(connection: &Connection, ws: &WriteSet) -> Result<bool, Error> {
    let changed = match ws.guard {
        VersionGuard::Absent => connection
            .prepare_cached(
                "INSERT INTO mimi_ds_group (group_id, version) VALUES (?1, 1)
                 ON CONFLICT (group_id) DO NOTHING",
            )?
            .execute([&ws.group_id])?,
        VersionGuard::Exactly(version) => connection
            .prepare_cached(
                "UPDATE mimi_ds_group SET version = version + 1
                 WHERE group_id = ?1 AND version = ?2",
            )?
            .execute(params![ws.group_id, sql_u64(version)])?,
        VersionGuard::ReplayMarkOnly => 1,
    };
    Ok(changed == 1)
}

/// Inserts the replay mark unless a live one holds the key: `Ok(false)` is a conflict.
fn apply_replay_mark(connection: &Connection, ws: &WriteSet) -> Result<bool, Error> {
    let Some((key, mark)) = &ws.replay_mark else {
        return Ok(true);
    };
    let changed = connection
        .prepare_cached(
            "INSERT INTO mimi_ds_replay (group_id, key, request_hash, response, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (group_id, key) DO UPDATE SET
                 request_hash = excluded.request_hash,
                 response = excluded.response,
                 expires_at_ms = excluded.expires_at_ms
             WHERE mimi_ds_replay.expires_at_ms < ?6",
        )?
        .execute(params![
            ws.group_id,
            key,
            mark.request_hash,
            mark.response,
            sql_u64(mark.expires_at_ms),
            sql_u64(ws.now_ms),
        ])?;
    Ok(changed == 1)
}

fn apply_records(connection: &Connection, ws: &WriteSet) -> Result<(), Error> {
    for change in &ws.records {
        match change {
            RecordWrite::Put(kind, value) => {
                let (kind, key) = kind_columns(*kind);
                connection
                    .prepare_cached(
                        "INSERT INTO mimi_ds_record (group_id, kind, key, value)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (group_id, kind, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![ws.group_id, kind, key, value])?;
            }
            RecordWrite::Delete(kind) => {
                let (kind, key) = kind_columns(*kind);
                connection
                    .prepare_cached(
                        "DELETE FROM mimi_ds_record WHERE group_id = ?1 AND kind = ?2 AND key = ?3",
                    )?
                    .execute(params![ws.group_id, kind, key])?;
            }
        }
    }
    // Index the group's expiry while it holds only a reservation (storage contract: such a
    // group may be dropped once the reservation expired), and clear it otherwise.
    let mut rows = connection
        .prepare_cached(
            "SELECT kind, key, substr(value, 1, 8) FROM mimi_ds_record WHERE group_id = ?1 LIMIT 2",
        )?
        .query_map([&ws.group_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(&ws.group_id, format!("record: {e}")))?;
    let reserved_until = match rows.pop() {
        Some((1, 0, prefix)) if rows.is_empty() => {
            mimi_ds::storage::record_expiry_ms(&prefix).map(sql_u64)
        }
        _ => None,
    };
    connection
        .prepare_cached("UPDATE mimi_ds_group SET reserved_until_ms = ?2 WHERE group_id = ?1")?
        .execute(params![ws.group_id, reserved_until])?;
    Ok(())
}

fn apply_outbox(connection: &Connection, outbox: &[OutboxEntry]) -> Result<(), Error> {
    for entry in outbox {
        connection
            .prepare_cached(
                "INSERT INTO mimi_ds_outbox
                     (group_id, destination, request, created_at_ms, attempts, next_attempt_at_ms)
                 VALUES (?1, ?2, ?3, ?4, 0, ?4)",
            )?
            .execute(params![
                entry.group_id,
                entry.destination,
                entry.request,
                sql_u64(entry.created_at_ms),
            ])?;
    }
    Ok(())
}

/// Drops replay marks and reservation-only groups that expired before `now` (live while
/// `now <= expires_at_ms`), through their expiry indexes.
fn drop_expired(connection: &Connection, now_ms: u64) -> Result<(), Error> {
    let now = sql_u64(now_ms);
    connection
        .prepare_cached("DELETE FROM mimi_ds_replay WHERE expires_at_ms < ?1")?
        .execute([now])?;
    connection
        .prepare_cached(
            "DELETE FROM mimi_ds_record WHERE group_id IN
                 (SELECT group_id FROM mimi_ds_group WHERE reserved_until_ms < ?1)",
        )?
        .execute([now])?;
    connection
        .prepare_cached("DELETE FROM mimi_ds_group WHERE reserved_until_ms < ?1")?
        .execute([now])?;
    Ok(())
}

/// The SQL reading a group's version and `count` requested records in one statement (one
/// snapshot).
fn read_sql(count: usize) -> String {
    let mut sql = String::from(
        "SELECT g.version, r.kind, r.key, r.value FROM mimi_ds_group g
         LEFT JOIN mimi_ds_record r ON r.group_id = g.group_id AND (0",
    );
    for i in 0..count {
        sql.push_str(&format!(
            " OR (r.kind = ?{} AND r.key = ?{})",
            2 * i + 2,
            2 * i + 3
        ));
    }
    sql.push_str(") WHERE g.group_id = ?1");
    sql
}

impl<C: Borrow<Connection>> DsStorage for SqliteDsStorage<C> {
    type Error = Error;

    fn read(&self, group_id: &[u8], kinds: &[RecordKind]) -> Result<Option<GroupSnapshot>, Error> {
        let mut values: Vec<rusqlite::types::Value> = vec![group_id.to_vec().into()];
        for kind in kinds {
            let (kind, key) = kind_columns(*kind);
            values.push(kind.into());
            values.push(key.into());
        }
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&read_sql(kinds.len()))?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        let mut snapshot: Option<GroupSnapshot> = None;
        while let Some(row) = rows.next()? {
            let version: i64 = column(group_id, row, 0, "version")?;
            let version = u64::try_from(version)
                .map_err(|_| corrupt(group_id, format!("version {version}")))?;
            let snapshot = snapshot.get_or_insert_with(|| GroupSnapshot {
                version,
                records: Vec::new(),
            });
            let kind: Option<i64> = column(group_id, row, 1, "kind")?;
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

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Error> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT request_hash, response, expires_at_ms FROM mimi_ds_replay
             WHERE group_id = ?1 AND key = ?2 AND expires_at_ms >= ?3",
        )?;
        let mut rows = statement.query(params![group_id, key, sql_u64(now_ms)])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let expires_at_ms: i64 = column(group_id, row, 2, "expires_at_ms")?;
        Ok(Some(ReplayMark {
            request_hash: column(group_id, row, 0, "request_hash")?,
            response: column(group_id, row, 1, "response")?,
            expires_at_ms: u64::try_from(expires_at_ms)
                .map_err(|_| corrupt(group_id, format!("replay mark expiry {expires_at_ms}")))?,
        }))
    }

    fn write(&mut self, ws: &WriteSet) -> Result<WriteOutcome, Error> {
        let connection = self.connection.borrow();
        let outbox: Vec<OutboxEntry> = ws
            .fanout
            .iter()
            .map(|fanout| OutboxEntry::new(&ws.group_id, fanout, ws.now_ms))
            .collect();
        check_sizes(connection, ws, &outbox)?;
        let tx = WriteTx::begin(connection, self.writers.as_deref())?;
        if !apply_guard(connection, ws)? || !apply_replay_mark(connection, ws)? {
            tx.rollback()?;
            return Ok(WriteOutcome::Conflict);
        }
        if ws.guard != VersionGuard::ReplayMarkOnly {
            apply_records(connection, ws)?;
        }
        apply_outbox(connection, &outbox)?;
        // After the changes, so a group this write turns from a reservation into a group stays.
        drop_expired(connection, ws.now_ms)?;
        tx.commit()?;
        Ok(WriteOutcome::Applied)
    }
}

fn outbox_entry(row: &Row<'_>) -> Result<OutboxEntry, Error> {
    let id: i64 = row.get(0)?;
    let bad = |detail: String| Error::CorruptOutbox { id, detail };
    let get_u64 = |index: usize, name: &str| -> Result<u64, Error> {
        let value: i64 = row.get(index).map_err(|e| bad(format!("{name}: {e}")))?;
        u64::try_from(value).map_err(|_| bad(format!("{name} {value}")))
    };
    Ok(OutboxEntry {
        id: u64::try_from(id).map_err(|_| bad("negative id".into()))?,
        group_id: row.get(1).map_err(|e| bad(format!("group_id: {e}")))?,
        destination: row.get(2).map_err(|e| bad(format!("destination: {e}")))?,
        request: row.get(3).map_err(|e| bad(format!("request: {e}")))?,
        created_at_ms: get_u64(4, "created_at_ms")?,
        attempts: u32::try_from(get_u64(5, "attempts")?).unwrap_or(u32::MAX),
        next_attempt_at_ms: get_u64(6, "next_attempt_at_ms")?,
    })
}

impl<C: Borrow<Connection>> DsOutbox for SqliteDsStorage<C> {
    fn pending(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            // An entry waits while an older entry of its destination is put off (the
            // DsOutbox contract), found through mimi_ds_outbox_destination_due.
            "SELECT id, group_id, destination, request, created_at_ms, attempts,
                    next_attempt_at_ms
             FROM mimi_ds_outbox AS o
             WHERE next_attempt_at_ms <= ?1
               AND NOT EXISTS (
                   SELECT 1 FROM mimi_ds_outbox AS older
                   WHERE older.destination = o.destination
                     AND older.next_attempt_at_ms > ?1
                     AND older.id < o.id)
             ORDER BY id LIMIT ?2",
        )?;
        let mut rows = statement.query(params![
            sql_u64(now_ms),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ])?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next()? {
            entries.push(outbox_entry(row)?);
        }
        Ok(entries)
    }

    fn mark_delivered(&mut self, id: u64) -> Result<bool, Error> {
        let _turn = self.turn_outside_transaction();
        let changed = self
            .connection()
            .prepare_cached("DELETE FROM mimi_ds_outbox WHERE id = ?1")?
            .execute([sql_u64(id)])?;
        Ok(changed == 1)
    }

    fn retry_later(&mut self, id: u64, next_attempt_at_ms: u64) -> Result<bool, Error> {
        let _turn = self.turn_outside_transaction();
        let changed = self
            .connection()
            .prepare_cached(
                "UPDATE mimi_ds_outbox
                 SET attempts = min(attempts + 1, 4294967295), next_attempt_at_ms = ?2
                 WHERE id = ?1",
            )?
            .execute(params![sql_u64(id), sql_u64(next_attempt_at_ms)])?;
        Ok(changed == 1)
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
