//! The demo's two providers, each a real `mimi-ds-server` started in-process with
//! [`mimi_ds_server::start`] on 127.0.0.1: `alpha.example` runs the hub and a Queueing
//! Service, `beta.example` a Queueing Service. Their storage is a SQLite file each in the
//! demo's folder, or a schema each in a PostgreSQL database; alpha may run several instances
//! on its one storage and state folder (the way replicas share a database, docs/deploy.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mimi_ds::{ExternalJoinPolicy, GroupInfoAccess};
use mimi_ds_server::{PeerDirectory, RunningServer, ServerConfig, StorageChoice};
use openmls::prelude::ExternalSender;

use crate::net::Error;
use crate::pki::Pki;

/// The hub's provider.
pub const ALPHA: &str = "alpha.example";
/// The guest provider.
pub const BETA: &str = "beta.example";

/// What to run the demo on.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder for the state folders (keys) and, without `postgres`, the SQLite databases.
    pub dir: PathBuf,
    /// A PostgreSQL URL: each provider keeps its tables in a new schema of its own there,
    /// named for the provider and the run (`mimi_demo_alpha_<start ms>_<process id>`), so
    /// runs at the same time on one database do not meet. The schemas are kept after the run.
    pub postgres: Option<String>,
    /// How many server instances run alpha (hub and QS) on its one storage.
    pub hub_instances: usize,
    /// Whether alpha's hub lets anyone join a group by external commit and fetch its
    /// GroupInfo without being a member (`--external-joins anyone --group-info-access anyone`),
    /// as MIMIMI connection rooms need (docs/wire-format.md §14.3.4). False for the README
    /// demo: the server's defaults.
    pub open_joins: bool,
}

/// Where a provider keeps its state.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The provider's domain.
    pub domain: &'static str,
    /// Its storage.
    pub choice: StorageChoice,
    /// The PostgreSQL schema holding its tables, if it is PostgreSQL.
    pub schema: Option<String>,
    /// The PostgreSQL URL without the schema option, if it is PostgreSQL.
    pub database_url: Option<String>,
    /// Its state folder (hub signature key, queue key).
    pub state_dir: PathBuf,
}

impl Storage {
    /// The SQLite file of the hub (groups, outbox), if it is SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.choice {
            StorageChoice::Sqlite(path) => Some(path),
            _ => None,
        }
    }

    /// The SQLite file of the Queueing Service (queues), beside the hub's, if it is SQLite.
    pub fn qs_sqlite_path(&self) -> Option<PathBuf> {
        self.sqlite_path().map(StorageChoice::qs_sqlite_file)
    }

    /// The PostgreSQL URL, if it is one.
    pub fn postgres_url(&self) -> Option<&str> {
        match &self.choice {
            StorageChoice::Postgres(url) => Some(url),
            _ => None,
        }
    }
}

/// The running providers.
pub struct Providers {
    /// alpha's instances (hub + QS), all on one storage.
    pub alpha: Vec<RunningServer>,
    /// beta (QS).
    pub beta: RunningServer,
    /// alpha's and beta's storage.
    pub storage: [Storage; 2],
    /// The certificates.
    pub pki: Pki,
}

impl Providers {
    /// Starts beta, then alpha's instances one after another (the first creates the keys in
    /// the state folder and the tables, the others find them).
    pub async fn start(options: &Options) -> Result<Self, Error> {
        let pki = Pki::new(&[ALPHA, BETA])?;
        let run = run_name();
        let storage = [
            storage_for(options, ALPHA, &run).await?,
            storage_for(options, BETA, &run).await?,
        ];
        // beta takes deliveries only from a provider of its directory: alpha. Its address
        // there is not used (beta runs no hub, so its relay never calls anyone).
        let loopback: SocketAddr = "127.0.0.1:0".parse()?;
        let beta = mimi_ds_server::start(config(
            &pki,
            &storage[1],
            false,
            directory(&[(ALPHA, loopback)]),
        ))
        .await?;
        let mut alpha = Vec::new();
        for _ in 0..options.hub_instances.max(1) {
            let mut hub_config = config(
                &pki,
                &storage[0],
                true,
                directory(&[(BETA, beta.local_addr())]),
            );
            if options.open_joins {
                hub_config.external_joins = ExternalJoinPolicy::Anyone;
                hub_config.group_info_access = GroupInfoAccess::Anyone;
            }
            let instance = mimi_ds_server::start(hub_config).await?;
            alpha.push(instance);
        }
        Ok(Self {
            alpha,
            beta,
            storage,
            pki,
        })
    }

    /// Where the clients find each provider's servers.
    pub fn servers(&self) -> HashMap<String, Vec<SocketAddr>> {
        HashMap::from([
            (
                ALPHA.to_owned(),
                self.alpha.iter().map(RunningServer::local_addr).collect(),
            ),
            (BETA.to_owned(), vec![self.beta.local_addr()]),
        ])
    }

    /// The hub's external-sender entry, which clients put into the groups they create (the
    /// same for every instance: they share the state folder's key).
    pub fn hub(&self) -> &ExternalSender {
        self.alpha[0].external_sender().expect("alpha runs the hub")
    }

    /// Fanouts alpha's relays delivered (to beta over mutual TLS, and to alpha's own QS).
    pub fn delivered(&self) -> u64 {
        self.alpha.iter().map(|a| a.relay_stats().delivered()).sum()
    }

    /// Queues a QS reported invalid, fed back to the hub as `QueueRejected` events.
    pub fn rejected_queues(&self) -> u64 {
        self.alpha
            .iter()
            .map(|a| a.relay_stats().rejected_queues())
            .sum()
    }

    /// Failed delivery attempts (each retried after a backoff).
    pub fn failed_attempts(&self) -> u64 {
        self.alpha
            .iter()
            .map(|a| a.relay_stats().failed_attempts())
            .sum()
    }

    /// Stops every server, letting open requests finish.
    pub async fn shutdown(self) {
        for instance in self.alpha {
            instance.shutdown().await;
        }
        self.beta.shutdown().await;
    }
}

/// This run's name in schema names: its start time in ms and the process ID. Within one
/// process (the tests run two demos at once) a run started in the same millisecond as an
/// earlier one takes the next free millisecond.
fn run_name() -> String {
    static LAST_START_MS: AtomicU64 = AtomicU64::new(0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let previous = LAST_START_MS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now_ms.max(last.saturating_add(1)))
        })
        .unwrap_or(0);
    let start_ms = now_ms.max(previous.saturating_add(1));
    format!("{start_ms}_{}", std::process::id())
}

/// A provider's storage: a SQLite file in its folder, or a new schema of its own in
/// PostgreSQL, named for the provider and `run`.
async fn storage_for(options: &Options, domain: &'static str, run: &str) -> Result<Storage, Error> {
    let name = domain.split('.').next().unwrap_or(domain);
    let state_dir = options.dir.join(name);
    let Some(url) = &options.postgres else {
        return Ok(Storage {
            domain,
            choice: StorageChoice::Sqlite(state_dir.join("mimi-ds.sqlite3")),
            schema: None,
            database_url: None,
            state_dir,
        });
    };
    let schema = format!("mimi_demo_{name}_{run}");
    create_schema(url, &schema).await?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(Storage {
        domain,
        choice: StorageChoice::Postgres(format!(
            "{url}{separator}options=-c%20search_path%3D{schema}"
        )),
        schema: Some(schema),
        database_url: Some(url.clone()),
        state_dir,
    })
}

/// Creates `schema`, empty. It is new: an existing one (another run's) is an error, never
/// reused or dropped.
async fn create_schema(url: &str, schema: &str) -> Result<(), Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

fn config(pki: &Pki, storage: &Storage, hub: bool, peers: PeerDirectory) -> ServerConfig {
    ServerConfig::new(
        storage.domain,
        hub,
        "127.0.0.1:0".parse().expect("an address"),
        storage.choice.clone(),
        storage.state_dir.clone(),
        pki.material(storage.domain),
        peers,
    )
}

fn directory(entries: &[(&str, SocketAddr)]) -> PeerDirectory {
    let mut directory = PeerDirectory::new();
    for (domain, address) in entries {
        directory.insert(*domain, address.to_string());
    }
    directory
}

/// Rows per table of a provider's database, once the run is over.
pub async fn table_sizes(storage: &Storage) -> Result<Vec<(String, i64)>, Error> {
    if let (Some(ds_path), Some(qs_path)) = (storage.sqlite_path(), storage.qs_sqlite_path()) {
        // The hub's tables from its file, the QS's from its own (each file has both sets of
        // tables, the other's empty).
        let mut sizes = Vec::new();
        for (path, prefix) in [(ds_path, "mimi_ds_"), (qs_path.as_path(), "mimi_qs_")] {
            let connection = rusqlite::Connection::open(path)?;
            let tables: Vec<String> = connection
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, length(?1)) = ?1 ORDER BY name")?
                .query_map([prefix], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for table in tables {
                let rows = connection.query_row(
                    &format!("SELECT count(*) FROM \"{table}\""),
                    [],
                    |row| row.get(0),
                )?;
                sizes.push((table, rows));
            }
        }
        return Ok(sizes);
    }
    let Some(url) = storage.postgres_url() else {
        return Ok(Vec::new());
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name LIKE 'mimi_%' ORDER BY 1",
            &[],
        )
        .await?;
    let mut sizes = Vec::new();
    for row in tables {
        let table: String = row.get(0);
        let count = client
            .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
            .await?;
        sizes.push((table, count.get(0)));
    }
    drop(client);
    let _ = connection.await;
    Ok(sizes)
}

/// Fanout entries still in alpha's outbox.
pub async fn outbox_entries(storage: &Storage) -> Result<i64, Error> {
    Ok(table_sizes(storage)
        .await?
        .into_iter()
        .find(|(table, _)| table == "mimi_ds_outbox")
        .map_or(0, |(_, rows)| rows))
}
