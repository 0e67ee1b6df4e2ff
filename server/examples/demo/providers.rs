//! The demo's two providers, each a real `mimi-ds-server` started in-process with
//! [`mimi_ds_server::start`] on 127.0.0.1: `alpha.example` runs the hub and a Queueing
//! Service, `beta.example` a Queueing Service. Their storage is a SQLite file each in the
//! demo's folder, or a schema each in a PostgreSQL database; alpha may run several instances
//! on its one storage and state folder (the way replicas share a database, docs/deploy.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// A PostgreSQL URL: each provider keeps its tables in a schema of its own there
    /// (`mimi_demo_alpha`, `mimi_demo_beta`), dropped and created afresh at start.
    pub postgres: Option<String>,
    /// How many server instances run alpha (hub and QS) on its one storage.
    pub hub_instances: usize,
}

/// Where a provider keeps its state.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The provider's domain.
    pub domain: &'static str,
    /// Its storage.
    pub choice: StorageChoice,
    /// Its state folder (hub signature key, queue key).
    pub state_dir: PathBuf,
}

impl Storage {
    /// The SQLite file, if it is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.choice {
            StorageChoice::Sqlite(path) => Some(path),
            _ => None,
        }
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
        let storage = [
            storage_for(options, ALPHA).await?,
            storage_for(options, BETA).await?,
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
            let instance = mimi_ds_server::start(config(
                &pki,
                &storage[0],
                true,
                directory(&[(BETA, beta.local_addr())]),
            ))
            .await?;
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

/// A provider's storage: a SQLite file in its folder, or its own schema in PostgreSQL.
async fn storage_for(options: &Options, domain: &'static str) -> Result<Storage, Error> {
    let name = domain.split('.').next().unwrap_or(domain);
    let state_dir = options.dir.join(name);
    let choice = match &options.postgres {
        None => StorageChoice::Sqlite(state_dir.join("mimi-ds.sqlite3")),
        Some(url) => {
            let schema = format!("mimi_demo_{name}");
            fresh_schema(url, &schema).await?;
            let separator = if url.contains('?') { '&' } else { '?' };
            StorageChoice::Postgres(format!(
                "{url}{separator}options=-c%20search_path%3D{schema}"
            ))
        }
    };
    Ok(Storage {
        domain,
        choice,
        state_dir,
    })
}

/// Drops `schema` (the demo's own, from an earlier run) and creates it empty.
async fn fresh_schema(url: &str, schema: &str) -> Result<(), Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
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
    if let Some(path) = storage.sqlite_path() {
        let connection = rusqlite::Connection::open(path)?;
        let tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'mimi_%' ORDER BY name")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut sizes = Vec::new();
        for table in tables {
            let rows =
                connection.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |row| {
                    row.get(0)
                })?;
            sizes.push((table, rows));
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
