//! A runnable MIMI provider: the [mimi-ds](mimi_ds) hub (Delivery Service) and Queueing
//! Service behind HTTPS, with durable storage and a fanout relay.
//!
//! * **HTTP**: tokio, hyper 1 through hyper-util's `auto` builder (HTTP/1.1 and HTTP/2 on one
//!   port, ALPN), a header read timeout, and tower layers: tracing, a body size limit (413), a
//!   request timeout (408) and a concurrency limit. Errors the server answers itself carry a
//!   `DSResponse` error body, like the router's.
//! * **TLS**: tokio-rustls on ring, TLS 1.3 only. Client certificates are optional and verified
//!   against the configured CAs; the provider a verified certificate names (a domain of the
//!   peer directory) is the `authenticated_peer` the [`Router`] sees (mutual TLS, TR-01).
//! * **Storage** ([`StorageChoice`]): a SQLite file by default, PostgreSQL when a
//!   `postgres://` URL is given, or memory for tests. SQLite is synchronous, so every storage
//!   call runs on a blocking thread with one pooled connection (see `store.rs` for why a
//!   pool). PostgreSQL is async: requests run through `Router::handle_async` on the executor,
//!   over pooled connections, and the tables are created or upgraded at start.
//! * **Metrics**: Prometheus text format at `GET /metrics` on a separate plain-HTTP listener
//!   ([`ServerConfig::metrics_listen`]): every answer by endpoint and status (the tower
//!   layers' 413 and 408 included) with a latency histogram; each DS and QS call by operation
//!   and outcome with its latency, read rounds and conflict retries (from
//!   [`mimi_ds::OutcomeStats`]); connections that failed outside a request; the outbox depth;
//!   the relay's deliveries and retries per destination, and its rejections.
//! * **Tracing**: `tracing` spans from tower-http for each HTTP request, and inside them
//!   mimi-ds's own span per DS or QS call (its `tracing` feature): operation, outcome, epoch,
//!   retries and sizes, never an ID or a credential.
//! * **Fanout**: the DS stores the fanout of every applied write in its durable outbox in the
//!   same transaction; the [relay](RelayStats) delivers it to each provider's QS with retries,
//!   so a request is answered as soon as its write is durable, and a restart delivers what
//!   was left.
//! * **Load**: `cargo run --release -p mimi-ds-server --example load -- --help` is a bounded
//!   load generator: real openmls clients, kept-alive HTTPS to a server in the same process,
//!   and the same requests straight into the router for comparison (BENCHMARKS.md, "Server
//!   under load").
//!
//! ```no_run
//! # async fn run(config: mimi_ds_server::ServerConfig) -> Result<(), mimi_ds_server::StartError> {
//! let server = mimi_ds_server::start(config).await?;
//! println!("listening on {}", server.local_addr());
//! tokio::signal::ctrl_c().await.ok();
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod keys;
mod metrics;
mod relay;
mod service;
mod store;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mimi_ds::connection::{ConnectionConfig, ConnectionProvider};
use mimi_ds::directory::{DirectoryConfig, KeyPackageDirectory};
use mimi_ds::qs::{QsConfig, QueueingService};
use mimi_ds::transport::{Router, TransportConfig};
use mimi_ds::{BasicCredentialValidator, DeliveryService, DsConfig};
use openmls::prelude::ExternalSender;
use openmls_rust_crypto::RustCrypto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use config::{
    ConfigError, Jitter, Limits, PeerDirectory, RetryPolicy, ServerConfig, StorageChoice,
    TlsMaterial, USAGE,
};
pub use relay::RelayStats;
pub use tls::TlsError;

use metrics::ConnectionFailure;
use store::{Backend, MemoryBackend, PostgresBackend, SqliteBackend};

/// SQLite connections in the pool.
const SQLITE_CONNECTIONS: usize = 4;
/// PostgreSQL connections in each of the two pools (DS and QS; see `store.rs`).
const POSTGRES_CONNECTIONS: usize = 8;
/// How long shutdown waits for open connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The host clock in ms since the UNIX epoch: the server reads it and hands it to mimi-ds,
/// which never reads a clock itself.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The relay's settings, from [`ServerConfig`].
pub(crate) struct RelaySettings {
    pub(crate) retry: RetryPolicy,
    pub(crate) poll_interval: Duration,
    pub(crate) concurrency: usize,
    pub(crate) delivery_timeout: Duration,
}

/// What the request handlers and the relay share.
pub(crate) struct Shared<B> {
    pub(crate) domain: String,
    pub(crate) router: Router,
    /// The connection inboxes (wire-format.md §14.3), routed with
    /// `Router::handle_connection_request` on the backend's storage.
    pub(crate) connections: ConnectionProvider,
    pub(crate) backend: B,
    pub(crate) peers: PeerDirectory,
    pub(crate) limits: Limits,
    pub(crate) client_tls: Arc<rustls::ClientConfig>,
    pub(crate) relay: RelaySettings,
    pub(crate) relay_wake: Notify,
    pub(crate) relay_stats: Arc<RelayStats>,
    pub(crate) request_metrics: metrics::RequestMetrics,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Listening, or the state folder.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The certificates.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The SQLite database.
    #[error("sqlite: {0}")]
    Sqlite(#[from] mimi_ds_sqlite::Error),
    /// The PostgreSQL database: connecting, or creating the tables.
    #[error("postgres: {0}")]
    Postgres(String),
    /// The keys in the state folder.
    #[error("keys: {0}")]
    Keys(String),
    /// The hub's SQLite file holds QS queues (it was made with both in one file) but the QS
    /// was given a file of its own, which would hide those queues from their clients.
    #[error("{} holds Queueing Service queues, but the QS's file is {}: to keep one file, pass --qs-sqlite {}", ds_file.display(), qs_file.display(), ds_file.display())]
    QueuesInHubFile {
        /// The hub's file.
        ds_file: PathBuf,
        /// The QS's file the server was given.
        qs_file: PathBuf,
    },
}

/// A started server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    relay_stats: Arc<RelayStats>,
    external_sender: Option<ExternalSender>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served (plain HTTP), if [`ServerConfig::metrics_listen`] is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The hub's external-sender entry (its signature key and credential), which clients put
    /// into the groups they create; `None` if it runs no hub.
    pub fn external_sender(&self) -> Option<&ExternalSender> {
        self.external_sender.as_ref()
    }

    /// What the relay counted.
    pub fn relay_stats(&self) -> &RelayStats {
        &self.relay_stats
    }

    /// The token that stops it (cancelling it is what [`RunningServer::shutdown`] does first).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops accepting, lets open connections finish their requests (for a few seconds),
    /// stops the relay, and waits for all of it.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts a server: opens the storage, binds, and spawns the accept loop and the relay on the
/// current tokio runtime.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.state_dir)?;
    // One arm per backend.
    match config.storage.clone() {
        StorageChoice::Sqlite(path) => {
            let qs_path = config
                .qs_sqlite
                .clone()
                .unwrap_or_else(|| StorageChoice::qs_sqlite_file(&path));
            for file in [&path, &qs_path] {
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            let backend = tokio::task::spawn_blocking(move || {
                SqliteBackend::open(&path, &qs_path, SQLITE_CONNECTIONS)
            })
            .await
            .map_err(|e| StartError::Io(std::io::Error::other(e)))??;
            start_with(config, backend).await
        }
        StorageChoice::Memory => start_with(config, MemoryBackend::new()).await,
        StorageChoice::Postgres(url) => {
            let backend = PostgresBackend::connect(&url, POSTGRES_CONNECTIONS)
                .await
                .map_err(StartError::Postgres)?;
            start_with(config, backend).await
        }
    }
}

async fn start_with<B: Backend>(
    config: ServerConfig,
    backend: B,
) -> Result<RunningServer, StartError> {
    let server_tls = tls::server_config(&config.tls)?;
    let client_tls = tls::client_config(&config.tls)?;
    let queue_key = keys::queue_key(&config.state_dir)?;
    let qs = QueueingService::new(
        QsConfig::new(&config.domain),
        queue_key,
        RustCrypto::default(),
    );
    let ds_domain = config.runs_hub.then(|| config.domain.clone());
    let mut transport = TransportConfig::new(&config.domain, ds_domain);
    transport.max_body_bytes = config.limits.max_body_bytes;
    // Every provider serves its users' KeyPackage directory (wire-format.md §14.4).
    let directory = KeyPackageDirectory::new(DirectoryConfig::default(), RustCrypto::default());
    let mut router = Router::new(transport).with_qs(qs).with_directory(directory);
    // And its users' connection-establishment keys and inboxes (§14.3).
    let connections = ConnectionProvider::new(
        ConnectionConfig::new(&config.domain),
        &keys::connection_inbox_seed(&config.state_dir)?,
        RustCrypto::default(),
    )
    .ok_or_else(|| StartError::Keys("the connection-inbox seed is shorter than 32 bytes".into()))?;
    let mut external_sender = None;
    if config.runs_hub {
        let (identity, sender) = keys::hub_identity(&config.state_dir, &config.domain)?;
        // BasicCredentials naming `mimi://<domain>/d/<user>/<device>`; a deployment with its
        // own identity system plugs in its own `CredentialValidator`.
        let mut ds_config = DsConfig::new(&config.domain);
        ds_config.external_joins = config.external_joins;
        ds_config.group_info_access = config.group_info_access;
        let ds = DeliveryService::new(ds_config, identity, RustCrypto::default())
            .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
        router = router.with_ds(ds);
        external_sender = Some(sender);
    }
    let relay_stats = Arc::new(RelayStats::default());
    let shared = Arc::new(Shared {
        domain: config.domain.to_ascii_lowercase(),
        router,
        connections,
        backend,
        peers: config.peers,
        limits: config.limits.clone(),
        client_tls,
        relay: RelaySettings {
            retry: config.retry,
            poll_interval: config.relay_poll_interval,
            concurrency: config.relay_concurrency,
            delivery_timeout: config.delivery_timeout,
        },
        relay_wake: Notify::new(),
        relay_stats: Arc::clone(&relay_stats),
        request_metrics: metrics::RequestMetrics::default(),
    });
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(TcpListener::bind(address).await?),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let cancel = CancellationToken::new();
    let accept = tokio::spawn(accept_loop(
        Arc::clone(&shared),
        listener,
        tokio_rustls::TlsAcceptor::from(server_tls),
        cancel.clone(),
    ));
    let mut tasks = vec![accept];
    if let Some(metrics_listener) = metrics_listener {
        tasks.push(tokio::spawn(metrics::serve(
            Arc::clone(&shared),
            metrics_listener,
            cancel.clone(),
        )));
    }
    tasks.push(tokio::spawn(relay::run(shared, cancel.clone())));
    tracing::info!(%local_addr, domain = %config.domain, hub = config.runs_hub, "serving");
    Ok(RunningServer {
        local_addr,
        cancel,
        tasks,
        metrics_addr,
        relay_stats,
        external_sender,
    })
}

/// What a connection's error was, for the metrics: hyper answered malformed HTTP with 400
/// itself, and closes a connection whose header section did not arrive in time.
fn connection_failure(error: &(dyn std::error::Error + 'static)) -> ConnectionFailure {
    match error.downcast_ref::<hyper::Error>() {
        Some(error) if error.is_parse() || error.is_parse_too_large() => {
            ConnectionFailure::Malformed
        }
        Some(error) if error.is_timeout() => ConnectionFailure::Timeout,
        _ => ConnectionFailure::Other,
    }
}

/// Accepts connections until cancelled, then waits (a while) for open ones to finish.
async fn accept_loop<B: Backend>(
    shared: Arc<Shared<B>>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    cancel: CancellationToken,
) {
    let limits = shared.limits.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let service = service::make_service(Arc::clone(&shared));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, _) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Over the connection limit: closed at once.
            shared
                .request_metrics
                .connection_failed(ConnectionFailure::OverLimit);
            continue;
        };
        let acceptor = acceptor.clone();
        let builder = Arc::clone(&builder);
        let service = service.clone();
        let watcher = graceful.watcher();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let Ok(Ok(tls)) = handshake.await else {
                // Timed out, or not TLS 1.3 with an acceptable certificate.
                shared
                    .request_metrics
                    .connection_failed(ConnectionFailure::Handshake);
                return;
            };
            let peer = tls::authenticated_peer(
                tls.get_ref().1.peer_certificates(),
                &shared.domain,
                &shared.peers,
            );
            let peer = service::Peer(peer);
            let service =
                service.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer.clone());
                    request
                });
            let connection =
                builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%error, "connection ended");
                shared
                    .request_metrics
                    .connection_failed(connection_failure(&*error));
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open at shutdown were dropped");
    }
}
