//! The storage conformance suite of mimi-ds (`mimi_ds::testing::conformance`) on PostgreSQL:
//! every DS and QS check on a fresh schema of the test server (see `support`). Each handle is a
//! connection of its own, so `racing_handles` races two real connections from two threads.

mod support;

use mimi_ds_postgres::{PostgresDsStorage, PostgresQsStorage};
use support::{Blocking, TestDatabase};

/// A fresh schema; each call of the returned function opens one more connection to it.
fn new_database() -> impl Fn() -> Blocking<PostgresDsStorage> + Sync {
    let database = TestDatabase::new();
    move || database.ds()
}

mimi_ds::ds_storage_conformance_tests!(new_database);

mod qs {
    use super::*;

    fn new_storage() -> Blocking<PostgresQsStorage> {
        TestDatabase::new().qs()
    }

    mimi_ds::qs_storage_conformance_tests!(new_storage);
}

mod directory {
    use super::*;
    use mimi_ds_postgres::PostgresDirectoryStorage;

    fn new_storage() -> Blocking<PostgresDirectoryStorage> {
        TestDatabase::new().directory()
    }

    mimi_ds::directory_storage_conformance_tests!(new_storage);

    /// A fresh schema; each call of the returned function opens one more connection to it.
    fn new_database() -> impl Fn() -> Blocking<PostgresDirectoryStorage> + Sync {
        let database = TestDatabase::new();
        move || database.directory()
    }

    mimi_ds::directory_storage_racing_tests!(new_database);
}

mod connection {
    use super::*;
    use mimi_ds_postgres::PostgresConnectionStore;

    fn new_store() -> Blocking<PostgresConnectionStore> {
        TestDatabase::new().connections()
    }

    mimi_ds::connection_storage_conformance_tests!(new_store);

    /// A fresh schema; each call of the returned function opens one more connection to it (a
    /// restarted server's).
    fn new_database() -> impl Fn() -> Blocking<PostgresConnectionStore> + Sync {
        let database = TestDatabase::new();
        move || database.connections()
    }

    mimi_ds::connection_storage_durable_tests!(new_database);
}
