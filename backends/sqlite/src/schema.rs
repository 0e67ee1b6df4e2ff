//! Plain-SQL migrations, embedded in the binary and recorded in `mimi_ds_sqlite_schema`.
//!
//! No migration framework: refinery pins rusqlite version ranges and has caused
//! `libsqlite3-sys` conflicts in vendors' builds (rusqlite#1605).

use rusqlite::Connection;

use crate::{Error, WriteTx};

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_outbox_order.sql"),
    include_str!("../migrations/0003_key_package_directory.sql"),
    include_str!("../migrations/0004_connections.sql"),
];

/// The schema version this crate creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates mimi-ds's tables, or upgrades them to [`SCHEMA_VERSION`], in one write
/// transaction (idempotent; concurrent callers queue on the write lock). Fails with
/// [`Error::SchemaTooNew`] if a newer version of this crate migrated the database.
/// [`crate::SqliteDsStorage::new`], [`crate::SqliteQsStorage::new`] and
/// [`crate::SqliteDirectoryStorage::new`] call it.
pub fn migrate(connection: &Connection) -> Result<(), Error> {
    let tx = WriteTx::begin(connection, None)?;
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS mimi_ds_sqlite_schema (version INTEGER NOT NULL PRIMARY KEY)",
    )?;
    let found: i64 = connection.query_row(
        "SELECT coalesce(max(version), 0) FROM mimi_ds_sqlite_schema",
        [],
        |row| row.get(0),
    )?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        connection.execute_batch(sql)?;
        connection.execute(
            "INSERT INTO mimi_ds_sqlite_schema (version) VALUES (?1)",
            [version],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_a_newer_schema_is_refused() {
        let connection = Connection::open_in_memory().unwrap();
        migrate(&connection).unwrap();
        migrate(&connection).unwrap();
        let versions: i64 = connection
            .query_row("SELECT count(*) FROM mimi_ds_sqlite_schema", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(versions, SCHEMA_VERSION);
        connection
            .execute(
                "INSERT INTO mimi_ds_sqlite_schema (version) VALUES (?1)",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
        assert!(matches!(
            migrate(&connection),
            Err(Error::SchemaTooNew { found, .. }) if found == SCHEMA_VERSION + 1
        ));
        // The failed migration left no transaction open.
        assert!(connection.is_autocommit());
    }

    /// A database made by schema version 1 gets version 2's outbox index, and keeps its rows.
    #[test]
    fn a_version_1_database_is_upgraded() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(MIGRATIONS[0]).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE mimi_ds_sqlite_schema (version INTEGER NOT NULL PRIMARY KEY);
                 INSERT INTO mimi_ds_sqlite_schema (version) VALUES (1);
                 INSERT INTO mimi_ds_outbox
                     (group_id, destination, request, created_at_ms, next_attempt_at_ms)
                     VALUES (x'01', 'a.example', x'02', 5, 5);",
            )
            .unwrap();
        migrate(&connection).unwrap();
        let indexes: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_master
                 WHERE type = 'index' AND name = 'mimi_ds_outbox_destination_due'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 1);
        let (version, rows): (i64, i64) = connection
            .query_row(
                "SELECT (SELECT max(version) FROM mimi_ds_sqlite_schema),
                        (SELECT count(*) FROM mimi_ds_outbox)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, rows), (SCHEMA_VERSION, 1));
    }

    /// A database made by schema version 3 (the KeyPackage directory) gets version 4's
    /// connection tables, and keeps its rows.
    #[test]
    fn a_version_3_database_is_upgraded() {
        let connection = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            connection.execute_batch(sql).unwrap();
        }
        connection
            .execute_batch(
                "CREATE TABLE mimi_ds_sqlite_schema (version INTEGER NOT NULL PRIMARY KEY);
                 INSERT INTO mimi_ds_sqlite_schema (version) VALUES (1), (2), (3);
                 INSERT INTO mimi_ds_directory_pseudonym (pseudonym_hash) VALUES (x'01');",
            )
            .unwrap();
        migrate(&connection).unwrap();
        let (version, rows, tables): (i64, i64, i64) = connection
            .query_row(
                "SELECT (SELECT max(version) FROM mimi_ds_sqlite_schema),
                        (SELECT count(*) FROM mimi_ds_directory_pseudonym),
                        (SELECT count(*) FROM sqlite_master
                         WHERE type = 'table' AND name LIKE 'mimi_ds_connection_%')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((version, rows, tables), (4, 1, 4));
    }
}
