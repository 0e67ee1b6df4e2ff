//! The storage conformance suite of mimi-ds (`mimi_ds::testing::conformance`) on SQLite: every
//! DS check on a fresh database file (handles are connections to it, so racing handles are two
//! connections on two threads), every QS check on a fresh in-memory database.

use mimi_ds_sqlite::{SqliteDsStorage, SqliteQsStorage};
use rusqlite::Connection;

/// A fresh database file in a temporary folder (removed when the last handle's opener is
/// dropped); each call of the returned function opens one more connection to it.
fn new_database() -> impl Fn() -> SqliteDsStorage + Sync {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("ds.sqlite3");
    move || {
        let _keep = &folder;
        SqliteDsStorage::open(&path).expect("open the database")
    }
}

mimi_ds::ds_storage_conformance_tests!(new_database);

mod qs {
    use super::*;

    fn new_storage() -> SqliteQsStorage {
        SqliteQsStorage::new(Connection::open_in_memory().expect("open")).expect("migrate")
    }

    mimi_ds::qs_storage_conformance_tests!(new_storage);
}

mod directory {
    use super::*;
    use mimi_ds_sqlite::SqliteDirectoryStorage;

    fn new_storage() -> SqliteDirectoryStorage {
        SqliteDirectoryStorage::new(Connection::open_in_memory().expect("open")).expect("migrate")
    }

    mimi_ds::directory_storage_conformance_tests!(new_storage);

    /// A fresh database file; each call of the returned function opens one more connection.
    fn new_database() -> impl Fn() -> SqliteDirectoryStorage + Sync {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let path = folder.path().join("directory.sqlite3");
        move || {
            let _keep = &folder;
            SqliteDirectoryStorage::open(&path).expect("open the database")
        }
    }

    mimi_ds::directory_storage_racing_tests!(new_database);
}

mod connection {
    use super::*;
    use mimi_ds_sqlite::SqliteConnectionStore;

    fn new_store() -> SqliteConnectionStore {
        SqliteConnectionStore::new(Connection::open_in_memory().expect("open")).expect("migrate")
    }

    mimi_ds::connection_storage_conformance_tests!(new_store);

    /// A fresh database file; each call of the returned function opens one more connection
    /// (a restarted server's).
    fn new_database() -> impl Fn() -> SqliteConnectionStore + Sync {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let path = folder.path().join("connections.sqlite3");
        move || {
            let _keep = &folder;
            SqliteConnectionStore::open(&path).expect("open the database")
        }
    }

    mimi_ds::connection_storage_durable_tests!(new_database);
}
