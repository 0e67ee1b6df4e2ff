//! Test support: where the PostgreSQL server comes from, a fresh schema per test, and a
//! blocking adapter that runs the async storage on a tokio runtime so the (sync) conformance
//! suite of mimi-ds can drive it.
//!
//! The server: `MIMI_DS_POSTGRES_URL` if set (a role that may `CREATE SCHEMA`), otherwise one
//! throw-away cluster per test process, made with `initdb` and started with `postgres` in a
//! temporary folder, listening on 127.0.0.1 only, on a free port. A watchdog shell stops it
//! and removes the folder when the test process exits. As root (CI), the server binaries run
//! as the `postgres` user (`initdb` refuses root). No binaries and no URL is a test failure
//! that says how to fix it, never a silent skip.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use mimi_ds::qs::{AsyncQsStorage, QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord};
use mimi_ds::storage::{
    AsyncDsOutbox, AsyncDsStorage, DsOutbox, DsStorage, GroupSnapshot, OutboxEntry, RecordKind,
    ReplayMark, WriteOutcome, WriteSet,
};
use mimi_ds::wire::QueuedMessage;
use mimi_ds_postgres::{migrate, Error, PostgresDsStorage, PostgresQsStorage};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, Config, NoTls};

/// The environment variable naming an existing server.
pub const URL_VARIABLE: &str = "MIMI_DS_POSTGRES_URL";

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
    SERVER.get_or_init(|| match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => url
            .parse()
            .unwrap_or_else(|e| panic!("{URL_VARIABLE}={url:?} is not a PostgreSQL URL: {e}")),
        _ => start_cluster(),
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

/// The server binaries' folder: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/*/bin, else wherever `initdb` is on PATH.
fn server_binaries() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse().ok()?;
                Some((major, e.path().join("bin")))
            })
            .filter(|(_, dir)| has_server(dir))
            .collect();
        versions.sort();
        if let Some((_, dir)) = versions.pop() {
            return Some(dir);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_server(dir))
}

/// initdb, start `postgres` on 127.0.0.1:`port`, print `READY <folder>`, then wait for the
/// test process (`$3`) to end and stop the server and remove the folder. Nothing is written
/// to stdout or stderr after READY: the test process may be gone and its pipes closed.
const CLUSTER_SCRIPT: &str = r#"
set -u
bindir="$1"; port="$2"; testpid="$3"
dir=$(mktemp -d /tmp/mimi-ds-postgres.XXXXXX) || exit 1
if ! "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1
fi
"$bindir/postgres" -D "$dir/data" -h 127.0.0.1 -p "$port" -k "$dir" \
    -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200 \
    >"$dir/server.log" 2>&1 &
pid=$!
ready=no
for _ in $(seq 1 300); do
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then ready=yes; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ "$ready" != yes ]; then
    cat "$dir/server.log" >&2; kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$dir"; exit 1
fi
echo "READY $dir"
exec >/dev/null 2>&1
while [ -d "/proc/$testpid" ]; do sleep 0.5; done
kill -INT "$pid"; wait "$pid"; rm -rf "$dir"
"#;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Starts the throw-away cluster of this test process (see the module documentation).
fn start_cluster() -> Config {
    let Some(bindir) = server_binaries() else {
        panic!(
            "the PostgreSQL tests need a server: set {URL_VARIABLE} (e.g. \
             postgres://user:password@127.0.0.1:5432/db, a role that may CREATE SCHEMA), or \
             install the PostgreSQL server binaries (initdb, postgres; Debian/Ubuntu: \
             `apt-get install postgresql`) so the tests can start a throw-away cluster"
        );
    };
    let mut last_error = String::new();
    // A port found free may be taken before the server binds it: try a few.
    for _ in 0..3 {
        let port = free_port();
        let args = [
            bindir.to_string_lossy().into_owned(),
            port.to_string(),
            std::process::id().to_string(),
        ];
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", CLUSTER_SCRIPT, "sh"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", CLUSTER_SCRIPT, "sh"]);
            c
        };
        let mut child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the PostgreSQL test cluster from {bindir:?}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.starts_with("READY ") {
            // The script runs on as the watchdog; it is never waited for.
            std::mem::forget(child);
            let mut config = Config::new();
            config
                .host("127.0.0.1")
                .port(port)
                .user("postgres")
                .dbname("postgres");
            return config;
        }
        let output = child.wait_with_output().expect("the cluster script ends");
        last_error = String::from_utf8_lossy(&output.stderr).into_owned();
    }
    panic!("the PostgreSQL test cluster (binaries in {bindir:?}) did not start:\n{last_error}");
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
