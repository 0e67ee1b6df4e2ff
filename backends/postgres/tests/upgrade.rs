//! Schema upgrades on PostgreSQL: a database made by an earlier version of this crate is
//! migrated to [`SCHEMA_VERSION`] and keeps its rows.

mod support;

use mimi_ds_postgres::{migrate, SCHEMA_VERSION};
use support::{block_on, TestDatabase};

/// A version 1 database (outbox without the per-destination index) gets version 2's
/// `mimi_ds_outbox_destination_due`, which `pending`'s order check reads, and keeps its outbox.
#[test]
fn a_version_1_database_gets_the_outbox_order_index() {
    let database = TestDatabase::empty();
    block_on(async {
        let mut client = database.client().await;
        client
            .batch_execute(include_str!("../migrations/0001_initial.sql"))
            .await
            .expect("version 1");
        client
            .batch_execute(
                "CREATE TABLE mimi_ds_postgres_schema (version bigint NOT NULL PRIMARY KEY);
                 INSERT INTO mimi_ds_postgres_schema (version) VALUES (1);
                 INSERT INTO mimi_ds_outbox
                     (group_id, destination, request, created_at_ms, next_attempt_at_ms)
                     VALUES ('\\x01', 'a.example', '\\x02', 5, 5);",
            )
            .await
            .expect("a version 1 outbox row");
        migrate(&mut client).await.expect("upgrade");
        let row = client
            .query_one(
                "SELECT (SELECT max(version) FROM mimi_ds_postgres_schema),
                        (SELECT count(*) FROM mimi_ds_outbox),
                        (SELECT count(*) FROM pg_indexes
                         WHERE schemaname = current_schema()
                           AND indexname = 'mimi_ds_outbox_destination_due')",
                &[],
            )
            .await
            .expect("read back");
        let found: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(found, (SCHEMA_VERSION, 1, 1));
    });
}

/// A version 3 database (the KeyPackage directory) gets version 4's connection tables and
/// keeps its rows.
#[test]
fn a_version_3_database_gets_the_connection_tables() {
    let database = TestDatabase::empty();
    block_on(async {
        let mut client = database.client().await;
        for sql in [
            include_str!("../migrations/0001_initial.sql"),
            include_str!("../migrations/0002_outbox_order.sql"),
            include_str!("../migrations/0003_key_package_directory.sql"),
        ] {
            client.batch_execute(sql).await.expect("versions 1-3");
        }
        client
            .batch_execute(
                "CREATE TABLE mimi_ds_postgres_schema (version bigint NOT NULL PRIMARY KEY);
                 INSERT INTO mimi_ds_postgres_schema (version) VALUES (1), (2), (3);
                 INSERT INTO mimi_ds_directory_pseudonym (pseudonym_hash) VALUES ('\\x01');",
            )
            .await
            .expect("a version 3 row");
        migrate(&mut client).await.expect("upgrade");
        let row = client
            .query_one(
                "SELECT (SELECT max(version) FROM mimi_ds_postgres_schema),
                        (SELECT count(*) FROM mimi_ds_directory_pseudonym),
                        (SELECT count(*) FROM pg_tables
                         WHERE schemaname = current_schema()
                           AND tablename LIKE 'mimi_ds_connection_%')",
                &[],
            )
            .await
            .expect("read back");
        let found: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(found, (4, 1, 4));
    });
}
