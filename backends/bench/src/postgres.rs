//! PostgreSQL for the bench: a connection to the server `MIMI_DS_POSTGRES_URL` names, in a
//! fresh schema dropped at the end, on a current-thread tokio runtime; a blocking view of it as
//! a [`DsStorage`] (to hand groups over and observe write sets); the server's WAL position, to
//! count what one operation logged; and the floor of a durable write.

use std::str::FromStr as _;

use mimi_ds::storage::{
    AsyncDsStorage, DsStorage, GroupSnapshot, RecordKind, ReplayMark, WriteOutcome, WriteSet,
};
use mimi_ds_postgres::PostgresDsStorage;
use tokio::runtime::Runtime;
use tokio_postgres::{Client, Config, NoTls};

/// The environment variable naming the server (a role that may `CREATE SCHEMA`), as for
/// mimi-ds-postgres's tests.
pub const URL_VARIABLE: &str = "MIMI_DS_POSTGRES_URL";

/// The DS's storage on a PostgreSQL server over loopback, in a schema of its own.
pub struct Postgres {
    /// The runtime the connections' tasks run on; drive the storage's futures with
    /// [`Runtime::block_on`].
    pub runtime: Runtime,
    /// The storage, with its own connection.
    pub storage: PostgresDsStorage,
    /// A second connection, for the WAL position and the schema.
    admin: Client,
    schema: String,
}

impl Postgres {
    /// Connects to the server `MIMI_DS_POSTGRES_URL` names, creates a fresh schema and mimi-ds's
    /// tables in it. `None` when the variable is unset or empty.
    pub fn from_env() -> Option<Self> {
        let url = std::env::var(URL_VARIABLE)
            .ok()
            .filter(|url| !url.is_empty())?;
        Some(Self::connect(&url))
    }

    /// Connects to the server at `url`, creates a fresh schema and mimi-ds's tables in it.
    pub fn connect(url: &str) -> Self {
        let config = Config::from_str(url)
            .unwrap_or_else(|e| panic!("{url:?} is not a PostgreSQL URL: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let schema = format!("mimi_ds_bench_{}", std::process::id());
        let (admin, storage) = runtime.block_on(async {
            let admin = connect(&config).await;
            admin
                .batch_execute(&format!(
                    "CREATE SCHEMA {schema};
                     CREATE TABLE {schema}.bench_floor (id integer PRIMARY KEY, n bigint NOT NULL);
                     INSERT INTO {schema}.bench_floor VALUES (1, 0);"
                ))
                .await
                .expect("create the bench's schema");
            let mut in_schema = config.clone();
            in_schema.options(format!("-c search_path={schema}"));
            let mut client = connect(&in_schema).await;
            mimi_ds_postgres::migrate(&mut client)
                .await
                .expect("create mimi-ds's tables");
            (admin, PostgresDsStorage::new(client))
        });
        Self {
            runtime,
            storage,
            admin,
            schema,
        }
    }

    /// The floor of any durable write on this server: one transaction that changes one small
    /// row (a table of the bench's own), committed with the server's sync settings.
    pub fn one_row_commit(&self) {
        let update = format!(
            "UPDATE {}.bench_floor SET n = n + 1 WHERE id = 1",
            self.schema
        );
        let changed = self
            .runtime
            .block_on(self.admin.execute(&update, &[]))
            .expect("one-row commit");
        assert_eq!(changed, 1);
    }

    /// The server's version string.
    pub fn server_version(&self) -> String {
        self.setting("server_version")
    }

    /// A server setting (`SHOW name`).
    pub fn setting(&self, name: &str) -> String {
        self.runtime.block_on(async {
            self.admin
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .expect("SHOW")
                .get(0)
        })
    }

    /// The server's current WAL insert position, as text (`pg_current_wal_insert_lsn()`: what
    /// was logged, flushed or not, so a server with `synchronous_commit = off`, as `.ci/run`
    /// starts, still shows it; `pg_current_wal_lsn()` is the flushed position and may lag).
    pub fn wal_lsn(&self) -> String {
        self.runtime.block_on(async {
            self.admin
                .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .await
                .expect("pg_current_wal_insert_lsn")
                .get(0)
        })
    }

    /// WAL bytes between two positions (`pg_wal_lsn_diff`).
    pub fn wal_bytes_between(&self, before: &str, after: &str) -> u64 {
        let bytes: f64 = self.runtime.block_on(async {
            self.admin
                .query_one(
                    "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
                    &[&after, &before],
                )
                .await
                .expect("pg_wal_lsn_diff")
                .get(0)
        });
        bytes as u64
    }

    /// The storage as a blocking [`DsStorage`].
    pub fn blocking(&mut self) -> BlockingPostgres<'_> {
        BlockingPostgres {
            runtime: &self.runtime,
            storage: &mut self.storage,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        if let Err(e) = self
            .runtime
            .block_on(self.admin.batch_execute(&drop_schema))
        {
            eprintln!("could not drop the bench's schema {}: {e}", self.schema);
        }
    }
}

async fn connect(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {URL_VARIABLE} ({config:?}): {e}"));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("PostgreSQL connection: {e}");
        }
    });
    client
}

/// [`PostgresDsStorage`] as a [`DsStorage`]: each call waits for the async one on the runtime.
pub struct BlockingPostgres<'p> {
    runtime: &'p Runtime,
    storage: &'p mut PostgresDsStorage,
}

impl DsStorage for BlockingPostgres<'_> {
    type Error = mimi_ds_postgres::Error;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Self::Error> {
        self.runtime
            .block_on(AsyncDsStorage::read(&*self.storage, group_id, kinds))
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error> {
        self.runtime.block_on(AsyncDsStorage::replay_mark(
            &*self.storage,
            group_id,
            key,
            now_ms,
        ))
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error> {
        self.runtime
            .block_on(AsyncDsStorage::write(&mut *self.storage, write_set))
    }
}
