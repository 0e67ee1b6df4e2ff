//! Test support: where the PostgreSQL server comes from, a fresh schema per test, and a
//! blocking adapter that runs the async storage on a tokio runtime so the (sync) conformance
//! suite of mimi-ds can drive it.
//!
//! The server: `MIMI_DS_POSTGRES_URL` if set (a role that may `CREATE SCHEMA`), otherwise one
//! throw-away cluster per test process ([`mimi_ds_postgres::test_cluster`], feature
//! `test-cluster`).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use mimi_ds::connection::{
    AsyncConnectionStore, ConnectionChange, ConnectionKeyRecord, ConnectionStore, InboxRecord,
    StoredConnectionRequest,
};
use mimi_ds::directory::{
    AsyncDirectoryStorage, DirectoryStorage, DirectoryWriteOutcome, DirectoryWriteSet,
    VersionedAccount,
};
use mimi_ds::qs::{AsyncQsStorage, QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord};
use mimi_ds::storage::{
    AsyncDsOutbox, AsyncDsStorage, DsOutbox, DsStorage, GroupSnapshot, OutboxEntry, RecordKind,
    ReplayMark, WriteOutcome, WriteSet,
};
use mimi_ds::wire::QueuedMessage;
use mimi_ds_postgres::{
    migrate, Error, PostgresConnectionStore, PostgresDirectoryStorage, PostgresDsStorage,
    PostgresQsStorage,
};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, Config, NoTls};

/// The environment variable naming an existing server.
pub use mimi_ds_postgres::test_cluster::URL_VARIABLE;

/// The runtime every test of this process runs its database work on: connections' tasks
/// live here, and the blocking adapter waits on it (from any thread, so two test threads
/// race two connections for real).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Runs a future to completion on [`runtime`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// The server's connection settings (without a schema).
fn server() -> &'static Config {
    static SERVER: OnceLock<Config> = OnceLock::new();
    SERVER.get_or_init(|| {
        let url = mimi_ds_postgres::test_cluster::server_url();
        url.parse()
            .unwrap_or_else(|e| panic!("{URL_VARIABLE}={url:?} is not a PostgreSQL URL: {e}"))
    })
}

/// Opens a connection whose task runs on [`runtime`].
pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server ({config:?}): {e}"));
    runtime().spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The connection that creates and drops the test schemas.
fn admin() -> &'static Client {
    static ADMIN: OnceLock<Client> = OnceLock::new();
    ADMIN.get_or_init(|| block_on(connect(server())))
}

/// A fresh, migrated schema of its own on the test server; dropped with the last handle.
#[derive(Debug)]
pub struct TestDatabase {
    schema: String,
    config: Config,
}

impl TestDatabase {
    /// Creates the schema and mimi-ds's tables in it.
    pub fn new() -> Arc<Self> {
        let database = Self::empty();
        block_on(async {
            let mut client = database.client().await;
            migrate(&mut client).await.expect("migrate");
        });
        database
    }

    /// Creates the schema, without tables.
    pub fn empty() -> Arc<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let schema = format!(
            "mimi_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut config = server().clone();
        config.options(format!("-c search_path={schema}"));
        let database = Arc::new(Self { schema, config });
        let admin = admin();
        block_on(async {
            admin
                .batch_execute(&format!("CREATE SCHEMA {}", database.schema))
                .await
                .expect("create the test schema");
        });
        database
    }

    /// A new connection whose tables are this schema's.
    pub async fn client(&self) -> Client {
        connect(&self.config).await
    }

    /// The connection settings of this schema.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The schema's name, for statements that name it.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A DS storage handle on a new connection.
    pub fn ds(self: &Arc<Self>) -> Blocking<PostgresDsStorage> {
        let client = block_on(self.client());
        Blocking::new(self, PostgresDsStorage::new(client))
    }

    /// A KeyPackage directory storage handle on a new connection.
    pub fn directory(self: &Arc<Self>) -> Blocking<PostgresDirectoryStorage> {
        let client = block_on(self.client());
        Blocking::new(self, PostgresDirectoryStorage::new(client))
    }

    /// A connection-inbox store handle on a new connection.
    pub fn connections(self: &Arc<Self>) -> Blocking<PostgresConnectionStore> {
        let client = block_on(self.client());
        Blocking::new(self, PostgresConnectionStore::new(client))
    }

    /// A QS storage handle on a new connection.
    pub fn qs(self: &Arc<Self>) -> Blocking<PostgresQsStorage> {
        let client = block_on(self.client());
        Blocking::new(self, PostgresQsStorage::new(client))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: a throw-away cluster goes away anyway; a server of MIMI_DS_POSTGRES_URL
        // keeps no test schemas.
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        let _ = block_on(admin().batch_execute(&drop));
    }
}

/// A storage handle driven from sync code: each call waits on [`runtime`] for the async
/// method. Keeps its test schema alive.
pub struct Blocking<S> {
    /// The async storage.
    pub inner: S,
    _database: Arc<TestDatabase>,
}

impl<S> Blocking<S> {
    pub fn new(database: &Arc<TestDatabase>, inner: S) -> Self {
        Self {
            inner,
            _database: Arc::clone(database),
        }
    }
}

impl DsStorage for Blocking<PostgresDsStorage> {
    type Error = Error;

    fn read(&self, group_id: &[u8], kinds: &[RecordKind]) -> Result<Option<GroupSnapshot>, Error> {
        block_on(AsyncDsStorage::read(&self.inner, group_id, kinds))
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Error> {
        block_on(AsyncDsStorage::replay_mark(
            &self.inner,
            group_id,
            key,
            now_ms,
        ))
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Error> {
        block_on(AsyncDsStorage::write(&mut self.inner, write_set))
    }
}

impl DsOutbox for Blocking<PostgresDsStorage> {
    fn pending(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        block_on(AsyncDsOutbox::pending(&self.inner, now_ms, limit))
    }

    fn mark_delivered(&mut self, id: u64) -> Result<bool, Error> {
        block_on(AsyncDsOutbox::mark_delivered(&mut self.inner, id))
    }

    fn retry_later(&mut self, id: u64, next_attempt_at_ms: u64) -> Result<bool, Error> {
        block_on(AsyncDsOutbox::retry_later(
            &mut self.inner,
            id,
            next_attempt_at_ms,
        ))
    }
}

impl DirectoryStorage for Blocking<PostgresDirectoryStorage> {
    type Error = Error;

    fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Error> {
        block_on(AsyncDirectoryStorage::account(&self.inner, index))
    }

    fn pseudonym_registered(&self, pseudonym_hash: &[u8]) -> Result<bool, Error> {
        block_on(AsyncDirectoryStorage::pseudonym_registered(
            &self.inner,
            pseudonym_hash,
        ))
    }

    fn write(&mut self, writes: &DirectoryWriteSet) -> Result<DirectoryWriteOutcome, Error> {
        block_on(AsyncDirectoryStorage::write(&mut self.inner, writes))
    }
}

impl ConnectionStore for Blocking<PostgresConnectionStore> {
    type Error = Error;

    fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Error> {
        block_on(AsyncConnectionStore::key_record(&self.inner, user))
    }

    fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Error> {
        block_on(AsyncConnectionStore::inbox(&self.inner, inbox_id))
    }

    fn has_mark(&self, inbox_id: &[u8], mark: &[u8], now_ms: u64) -> Result<bool, Error> {
        block_on(AsyncConnectionStore::has_mark(
            &self.inner,
            inbox_id,
            mark,
            now_ms,
        ))
    }

    fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, Error> {
        block_on(AsyncConnectionStore::requests(
            &self.inner,
            inbox_id,
            from_sequence,
            max,
        ))
    }

    fn apply(&mut self, now_ms: u64, change: ConnectionChange) -> Result<bool, Error> {
        block_on(AsyncConnectionStore::apply(&mut self.inner, now_ms, change))
    }
}

impl QsStorage for Blocking<PostgresQsStorage> {
    type Error = Error;

    fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, Error> {
        block_on(AsyncQsStorage::queue(&self.inner, queue_id))
    }

    fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        block_on(AsyncQsStorage::queue_of_owner(&self.inner, owner_key))
    }

    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, Error> {
        block_on(AsyncQsStorage::messages(
            &self.inner,
            queue_id,
            from_sequence,
            limit,
            max_bytes,
        ))
    }

    fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, Error> {
        block_on(AsyncQsStorage::has_mark(
            &self.inner,
            queue_id,
            hash,
            now_ms,
        ))
    }

    fn write(&mut self, writes: &QsWriteSet) -> Result<QsWriteOutcome, Error> {
        block_on(AsyncQsStorage::write(&mut self.inner, writes))
    }
}
