//! Plain-SQL migrations, embedded in the binary and recorded in `mimi_ds_postgres_schema`.
//!
//! No migration framework (refinery, sqlx-migrate): they pin driver versions a vendor may use
//! differently.

use tokio_postgres::Client;

use crate::Error;

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_outbox_order.sql"),
    include_str!("../migrations/0003_key_package_directory.sql"),
    include_str!("../migrations/0004_connections.sql"),
];

/// The schema version this crate creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Serialises concurrent migrations of one database (an arbitrary constant: "mimi-ds" in
/// ASCII). `CREATE TABLE IF NOT EXISTS` alone is not safe against a concurrent creator.
const MIGRATION_LOCK: i64 = 0x006d_696d_692d_6473;

/// Creates mimi-ds's tables in the connection's current schema, or upgrades them to
/// [`SCHEMA_VERSION`], in one transaction (idempotent; concurrent callers wait on an advisory
/// lock). Fails with [`Error::SchemaTooNew`] if a newer version of this crate migrated the
/// database. [`crate::PostgresDsStorage::connect`] and [`crate::PostgresQsStorage::connect`]
/// call it; with [`crate::PostgresDsStorage::new`], call it once at start-up.
pub async fn migrate(client: &mut Client) -> Result<(), Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mimi_ds_postgres_schema (version bigint NOT NULL PRIMARY KEY)",
    )
    .await?;
    let found: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM mimi_ds_postgres_schema",
            &[],
        )
        .await?
        .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO mimi_ds_postgres_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
