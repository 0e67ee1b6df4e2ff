//! Plain-SQL migrations, embedded in the binary and recorded in `mimi_ds_sqlite_schema`.
//!
//! No migration framework: refinery pins rusqlite version ranges and has caused
//! `libsqlite3-sys` conflicts in vendors' builds (rusqlite#1605).

use rusqlite::Connection;

use crate::{Error, WriteTx};

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_initial.sql")];

/// The schema version this crate creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates mimi-ds's tables, or upgrades them to [`SCHEMA_VERSION`], in one write
/// transaction (idempotent; concurrent callers queue on the write lock). Fails with
/// [`Error::SchemaTooNew`] if a newer version of this crate migrated the database.
/// [`crate::SqliteDsStorage::new`] and [`crate::SqliteQsStorage::new`] call it.
pub fn migrate(connection: &Connection) -> Result<(), Error> {
    let tx = WriteTx::begin(connection)?;
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
}
