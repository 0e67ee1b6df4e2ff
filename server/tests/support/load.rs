//! The load generator's core (issue 13, item 7), shared by `examples/load.rs` (the command)
//! and `tests/load.rs` (a tiny run in debug, so that the tool cannot rot unnoticed).
//!
//! One run measures the same workload twice, back to back, on the same storage kind:
//!
//! 1. **server**: a real [`mimi_ds_server`] (started in this process, with its fanout relay)
//!    on 127.0.0.1, called over HTTPS (TLS 1.3, hyper client over tokio-rustls) by
//!    `concurrency` workers, each with one kept-alive HTTP/1.1 connection, or all sharing one
//!    HTTP/2 connection;
//! 2. **direct**: the same kind of requests handed to [`Router::handle`] (SQLite, on blocking
//!    threads, one connection each) or [`Router::handle_async`] (PostgreSQL, one connection
//!    each) in this process: `DeliveryService::process` with the router's sub-microsecond
//!    dispatch, no HTTP, no TLS. A drain loop delivers the outbox to the in-process QS the way
//!    the server's relay does (pending → `QueueingService::deliver` → `mark_delivered`), so
//!    both runs do the same storage work.
//!
//! Setup is not timed: real openmls clients ([`TestClient`]) create their queues, the groups
//! and the members' adds through the target itself, and every application message of the
//! timed phase is encrypted and signed before it starts. The timed phase sends them, at most
//! `requests` of them and for at most `max_duration`; a request's latency runs from just
//! before it is written to the connection (or handed to the router) until its whole answer
//! is read. Fanout delivery is **not** inside that latency: the hub answers once the message
//! and its fanout are durable, and the relay delivers it afterwards, on the same cores and
//! the same database. How long it took until every accepted message was delivered is
//! reported beside it ("all delivered after", from the start of the timed phase).

// Each includer (the example, the test) uses part of it.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_ds::qs::{QsConfig, QueueKey, QueueingService};
use mimi_ds::storage::{AsyncDsOutbox, DsOutbox, OutboxEntry};
use mimi_ds::testing::{ds_identity, TestClient};
use mimi_ds::transport::{HttpRequest, Router, TransportConfig, OCTET_STREAM};
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    QueueingServiceResponse, PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{BasicCredentialValidator, DeliveryService, DsConfig, UnixTimeMs};
use mimi_ds_postgres::{PostgresDsStorage, PostgresQsStorage};
use mimi_ds_server::{PeerDirectory, ServerConfig, StorageChoice};
use mimi_ds_sqlite::{enable_wal, SqliteDsStorage, SqliteQsStorage};
use openmls::prelude::ExternalSender;
use openmls_rust_crypto::RustCrypto;
use rustls::pki_types::ServerName;

use crate::support::{now_ms, plain_get, sample, Pki, ALPHA};

/// The most requests one run sends.
pub const MAX_REQUESTS: usize = 100_000;
/// The longest a timed phase may last. Messages are signed before it starts, and the DS
/// accepts a `ClientSignature` for 5 minutes around its timestamp (`DsConfig::auth_window_ms`).
pub const MAX_DURATION: Duration = Duration::from_secs(240);
/// The most workers (requests in flight at once).
pub const MAX_CONCURRENCY: usize = 64;
/// The most clients a run creates (each with a queue), per target.
pub const MAX_CLIENTS: usize = 10_000;
/// The application message each request carries (before MLS encryption).
const PAYLOAD: &[u8] = &[b'x'; 100];
/// Requests in flight during setup.
const SETUP_CONCURRENCY: usize = 4;
/// How long setup may wait for the relay to drain the setup's fanout.
const SETUP_DRAIN: Duration = Duration::from_secs(120);

/// What the groups look like.
#[derive(Debug, Clone, Copy)]
pub enum Scenario {
    /// `groups` groups of `members` members each; messages go round-robin over the groups,
    /// each sent by the group's creator.
    SmallGroups {
        /// Groups.
        groups: usize,
        /// Members per group, the creator included.
        members: usize,
    },
    /// One group of `members` members; every message is sent by its creator.
    OneGroup {
        /// Members, the creator included.
        members: usize,
    },
}

impl Scenario {
    fn shape(self) -> (usize, usize) {
        match self {
            Self::SmallGroups { groups, members } => (groups, members),
            Self::OneGroup { members } => (1, members),
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SmallGroups { groups, members } => {
                write!(f, "{groups} groups of {members} members")
            }
            Self::OneGroup { members } => write!(f, "one group of {members} members"),
        }
    }
}

/// Where both targets keep their state.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A fresh SQLite file each, in this folder.
    Sqlite {
        /// The folder (it must exist).
        dir: PathBuf,
    },
    /// PostgreSQL: one empty schema each (see [`fresh_schema`]).
    Postgres {
        /// The server's.
        server_url: String,
        /// The direct baseline's.
        direct_url: String,
    },
}

impl Storage {
    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "SQLite",
            Self::Postgres { .. } => "PostgreSQL",
        }
    }
}

/// One run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The groups.
    pub scenario: Scenario,
    /// The storage kind.
    pub storage: Storage,
    /// Messages sent per target (at most [`MAX_REQUESTS`]).
    pub requests: usize,
    /// Each timed phase stops issuing requests after this long (at most [`MAX_DURATION`]).
    pub max_duration: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// One shared HTTP/2 connection instead of one HTTP/1.1 connection per worker.
    pub http2: bool,
    /// Wakes the direct run's drain loop at every accepted message, as the server wakes its
    /// relay, instead of letting it poll every 2 ms when the outbox is empty.
    pub eager_drain: bool,
}

impl Spec {
    /// Refuses unbounded or meaningless runs.
    pub fn check(&self) -> Result<(), String> {
        let (groups, members) = self.scenario.shape();
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            return Err(format!("requests must be 1..={MAX_REQUESTS}"));
        }
        if self.max_duration.is_zero() || self.max_duration > MAX_DURATION {
            return Err(format!(
                "the maximum duration must be more than 0 and at most {} s",
                MAX_DURATION.as_secs()
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!("concurrency must be 1..={MAX_CONCURRENCY}"));
        }
        if groups == 0 || members < 2 {
            return Err("at least one group of at least 2 members".into());
        }
        if groups.saturating_mul(members) > MAX_CLIENTS {
            return Err(format!("at most {MAX_CLIENTS} clients (groups × members)"));
        }
        Ok(())
    }
}

/// What one target did in its timed phase.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Requests sent (fewer than asked for if the maximum duration ran out).
    pub sent: usize,
    /// Answered 200 with a `DSResponse` that is not an error.
    pub accepted: usize,
    /// The first few refusals, described.
    pub refusals: Vec<String>,
    /// Requests resent because the DS answered `conflict` (another request to the same group
    /// won the race for its write more than `DsConfig::max_conflict_retries` times).
    pub resends: usize,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Every request's latency, sorted.
    pub latencies: Vec<Duration>,
    /// From the start of the timed phase until every accepted message's fanout was delivered
    /// to the QS; `None` if that did not happen within the maximum duration after the last
    /// answer.
    pub delivered_after: Option<Duration>,
    /// Server only: the mean time the server itself measured per request of the timed
    /// phase, from its body read to its answer (its metric
    /// `mimi_ds_server_request_duration_seconds`): the storage backend and the router, without
    /// TLS, HTTP and the client.
    pub handler_mean: Option<Duration>,
    /// Direct only: the mean time the drain loop took per delivered message of the timed
    /// phase (decoding the outbox entry, the QS's `deliver` with its write, `mark_delivered`):
    /// what the server's relay does per message besides its scheduling.
    pub delivery_mean: Option<Duration>,
    /// Deliveries the QS answered with a rejected queue (never expected here).
    pub rejected_deliveries: u64,
    /// Messages one recipient of the first group found in its queue afterwards, and how many
    /// it should have found (the Welcome and every message accepted for that group).
    pub probe: (usize, usize),
}

impl Figures {
    /// Accepted messages per second of the timed phase.
    pub fn per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Accepted messages per second until all of them were delivered.
    pub fn delivered_per_second(&self) -> Option<f64> {
        self.delivered_after
            .map(|d| self.accepted as f64 / d.as_secs_f64().max(1e-9))
    }

    /// The mean latency.
    pub fn mean(&self) -> Duration {
        let total: Duration = self.latencies.iter().sum();
        total / u32::try_from(self.latencies.len().max(1)).unwrap_or(u32::MAX)
    }

    /// The latency below which `percent` % of the requests were answered (nearest rank).
    pub fn percentile(&self, percent: usize) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (self.latencies.len() * percent).div_ceil(100).max(1);
        self.latencies[rank - 1]
    }
}

/// Both targets' figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// Over HTTPS to the server.
    pub server: Figures,
    /// Straight into the router.
    pub direct: Figures,
}

impl Report {
    /// Server latency over direct latency at the median.
    pub fn ratio_p50(&self) -> f64 {
        self.server.percentile(50).as_secs_f64() / self.direct.percentile(50).as_secs_f64()
    }

    /// The report as text: a header line, one line per target, the ratio.
    pub fn text(&self, spec: &Spec) -> String {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        let line = |name: &str, f: &Figures| {
            format!(
                "{name:<8} {:>6} {:>8} {:>7} {:>9.2} s {:>9.1} {:>10} {:>10} {:>15} {:>11}  probe {}/{}{}  mean {}{}{}\n",
                f.sent,
                f.accepted,
                f.resends,
                f.elapsed.as_secs_f64(),
                f.per_second(),
                ms(f.percentile(50)),
                ms(f.percentile(99)),
                f.delivered_after
                    .map_or("not within".into(), |d| format!("{:.2} s", d.as_secs_f64())),
                f.delivered_per_second()
                    .map_or("-".into(), |r| format!("{r:.1}")),
                f.probe.0,
                f.probe.1,
                f.delivery_mean
                    .map_or(String::new(), |d| format!("  delivery {}/message", ms(d))),
                ms(f.mean()),
                f.handler_mean
                    .map_or(String::new(), |d| format!(" (in the server's handler {})", ms(d))),
                if f.refusals.is_empty() {
                    String::new()
                } else {
                    format!("  refused e.g. {:?}", f.refusals)
                },
            )
        };
        format!(
            "{}, {}, {} requests, concurrency {}, {}, at most {} s\n\
             target     sent accepted resends     elapsed     msg/s        p50        p99   all delivered  delivered/s\n\
             {}{}server/direct at p50: {:.2}x\n",
            spec.scenario,
            spec.storage.name(),
            spec.requests,
            spec.concurrency,
            if spec.http2 { "HTTP/2 (one connection)" } else { "HTTP/1.1 keep-alive (a connection per worker)" },
            spec.max_duration.as_secs(),
            line("server", &self.server),
            line("direct", &self.direct),
            self.ratio_p50(),
        )
    }
}

/// Measures the server, then the direct baseline.
pub async fn run(spec: &Spec) -> Result<Report, String> {
    spec.check()?;
    let server = measure_server(spec).await?;
    let direct = measure_direct(spec).await?;
    Ok(Report { server, direct })
}

/// A URL for a new, empty schema on the PostgreSQL server at `base_url`.
pub async fn fresh_schema(base_url: &str, name: &str) -> Result<String, String> {
    let schema = format!("mimi_load_{}_{name}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(base_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to {base_url}: {e}"))?;
    let connection = tokio::spawn(connection);
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .map_err(|e| format!("create schema {schema}: {e}"))?;
    drop(admin);
    let _ = connection.await;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{base_url}{separator}options=-c%20search_path%3D{schema}"
    ))
}

// ---------------------------------------------------------------------------------------------
// Targets

/// Where requests go.
enum Target {
    Https(Https),
    Sqlite(Arc<DirectSqlite>),
    Postgres(Arc<DirectPostgres>),
}

impl Target {
    /// One request; the HTTP status and body.
    async fn call(&self, worker: usize, path: &'static str, body: Vec<u8>) -> (u16, Vec<u8>) {
        match self {
            Self::Https(https) => https.call(worker, path, body).await,
            // Setup only (the timed phase calls it from blocking threads).
            Self::Sqlite(direct) => {
                tokio::task::block_in_place(|| direct.call(worker, path, &body))
            }
            Self::Postgres(direct) => direct.call(worker, path, &body).await,
        }
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Kept-alive connections to the server, one per worker (HTTP/2: clones of one). A
/// connection the server closed (its idle timeout) is opened again, as a provider would.
struct Https {
    senders: Vec<tokio::sync::Mutex<Sender>>,
    tls: Arc<rustls::ClientConfig>,
    address: std::net::SocketAddr,
    h2: bool,
}

impl Https {
    async fn connect(
        pki: &Pki,
        address: std::net::SocketAddr,
        workers: usize,
        h2: bool,
    ) -> Result<Self, String> {
        let tls = pki.client(None, h2);
        let mut senders = Vec::with_capacity(workers);
        if h2 {
            let Sender::H2(shared) = open(&tls, address, true).await? else {
                unreachable!("asked for HTTP/2");
            };
            for _ in 0..workers {
                senders.push(tokio::sync::Mutex::new(Sender::H2(shared.clone())));
            }
        } else {
            for _ in 0..workers {
                senders.push(tokio::sync::Mutex::new(open(&tls, address, false).await?));
            }
        }
        Ok(Self {
            senders,
            tls,
            address,
            h2,
        })
    }

    /// One request on the worker's connection. A connection the server closed meanwhile is
    /// reopened, and a request that got no answer because its connection failed is sent once
    /// more on a new one (the server never saw it, or answers a byte-identical DS request
    /// with its first answer).
    async fn call(&self, worker: usize, path: &'static str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let mut sender = self.senders[worker % self.senders.len()].lock().await;
        let mut failure = String::new();
        for _ in 0..2 {
            let closed = match &*sender {
                Sender::H1(sender) => sender.is_closed(),
                Sender::H2(sender) => sender.is_closed(),
            };
            if closed || !failure.is_empty() {
                match open(&self.tls, self.address, self.h2).await {
                    Ok(reopened) => *sender = reopened,
                    Err(e) => return (0, e.into_bytes()),
                }
            }
            match send(&mut sender, path, body.clone()).await {
                Ok(answer) => return answer,
                Err(e) => failure = e,
            }
        }
        (0, failure.into_bytes())
    }
}

/// Sends one request; `Err` if no answer came (the connection failed).
async fn send(
    sender: &mut Sender,
    path: &'static str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let request = |uri: String| {
        http::Request::post(uri)
            .header("content-type", OCTET_STREAM)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())
    };
    let response = match sender {
        Sender::H1(sender) => {
            let mut request = request(path.to_owned())?;
            request
                .headers_mut()
                .insert("host", http::HeaderValue::from_static(ALPHA));
            sender.ready().await.map_err(|e| format!("HTTP: {e}"))?;
            sender.send_request(request).await
        }
        Sender::H2(sender) => {
            let request = request(format!("https://{ALPHA}{path}"))?;
            sender.ready().await.map_err(|e| format!("HTTP: {e}"))?;
            sender.send_request(request).await
        }
    }
    .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, body.to_bytes().to_vec()))
}

/// A TLS 1.3 connection to the server and the HTTP handshake over it.
async fn open(
    tls: &Arc<rustls::ClientConfig>,
    address: std::net::SocketAddr,
    h2: bool,
) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(ALPHA.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let io = TokioIo::new(tls);
    if h2 {
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("HTTP/2: {e}"))?;
        tokio::spawn(connection);
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP/1.1: {e}"))?;
        tokio::spawn(connection);
        Ok(Sender::H1(sender))
    }
}

/// A router with the hub and the QS, as the server builds it (same configuration).
fn router() -> (Router, ExternalSender) {
    let (identity, external_sender) = ds_identity(ALPHA);
    let ds = DeliveryService::new(DsConfig::new(ALPHA), identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    let key = QueueKey::derive(&[7; 32]).expect("queue key");
    let qs = QueueingService::new(QsConfig::new(ALPHA), key, RustCrypto::default());
    let mut transport = TransportConfig::new(ALPHA, Some(ALPHA.to_owned()));
    transport.max_body_bytes = mimi_ds_server::Limits::default().max_body_bytes;
    (
        Router::new(transport).with_ds(ds).with_qs(qs),
        external_sender,
    )
}

const HEADERS: [(&str, &str); 2] = [("host", ALPHA), ("content-type", OCTET_STREAM)];

fn request<'a>(path: &'a str, body: &'a [u8]) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path,
        headers: &HEADERS,
        body,
        authenticated_peer: None,
    }
}

type SqliteSlot = (SqliteDsStorage, SqliteQsStorage);

/// The router over SQLite, one connection pair per worker.
struct DirectSqlite {
    router: Router,
    slots: Vec<Mutex<SqliteSlot>>,
}

fn open_sqlite(path: &std::path::Path) -> Result<SqliteSlot, String> {
    let ds = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    enable_wal(&ds).map_err(|e| e.to_string())?;
    let qs = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    Ok((
        SqliteDsStorage::new(ds).map_err(|e| e.to_string())?,
        SqliteQsStorage::new(qs).map_err(|e| e.to_string())?,
    ))
}

impl DirectSqlite {
    fn call(&self, worker: usize, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut slot = self.slots[worker % self.slots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (ds, qs) = &mut *slot;
        match self
            .router
            .handle(UnixTimeMs(now_ms()), &request(path, body), ds, qs)
        {
            Ok(routed) => (routed.response.status, routed.response.body),
            Err(e) => (500, e.to_string().into_bytes()),
        }
    }
}

type PostgresSlot = (
    PostgresDsStorage<tokio_postgres::Client>,
    PostgresQsStorage<tokio_postgres::Client>,
);

/// The router over PostgreSQL (async path), one connection pair per worker.
struct DirectPostgres {
    router: Router,
    slots: Vec<tokio::sync::Mutex<PostgresSlot>>,
}

async fn open_postgres(url: &str) -> Result<PostgresSlot, String> {
    Ok((
        PostgresDsStorage::connect(url)
            .await
            .map_err(|e| e.to_string())?,
        PostgresQsStorage::connect(url)
            .await
            .map_err(|e| e.to_string())?,
    ))
}

impl DirectPostgres {
    async fn call(&self, worker: usize, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut slot = self.slots[worker % self.slots.len()].lock().await;
        let (ds, qs) = &mut *slot;
        match self
            .router
            .handle_async(UnixTimeMs(now_ms()), &request(path, body), ds, qs)
            .await
        {
            Ok(routed) => (routed.response.status, routed.response.body),
            Err(e) => (500, e.to_string().into_bytes()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The two measurements

async fn measure_server(spec: &Spec) -> Result<Figures, String> {
    let pki = Pki::new(&[ALPHA]);
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let storage = match &spec.storage {
        Storage::Sqlite { dir } => StorageChoice::Sqlite(dir.join("server.sqlite3")),
        Storage::Postgres { server_url, .. } => StorageChoice::Postgres(server_url.clone()),
    };
    let mut config = ServerConfig::new(
        ALPHA,
        true,
        "127.0.0.1:0".parse().expect("address"),
        storage,
        state.path().to_path_buf(),
        pki.material(ALPHA),
        PeerDirectory::new(),
    );
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    let hub = mimi_ds_server::start(config)
        .await
        .map_err(|e| format!("server: {e}"))?;
    let workers = spec.concurrency.max(SETUP_CONCURRENCY);
    let https = Https::connect(&pki, hub.local_addr(), workers, spec.http2).await?;
    let target = Arc::new(Target::Https(https));
    let external_sender = hub.external_sender().expect("a hub").clone();
    let metrics = hub.metrics_addr().expect("metrics");
    let outbox = || async move {
        let (_, text) = plain_get(metrics, "/metrics").await;
        sample(&text, "mimi_ds_server_outbox_entries").map(|v| v as u64)
    };
    let result = async {
        let setup = Instant::now();
        let mut prepared = prepare(&target, &external_sender, spec).await?;
        wait_until(SETUP_DRAIN, || async { outbox().await == Some(0) }).await?;
        eprintln!("server: setup took {:.1} s", setup.elapsed().as_secs_f64());
        let handled = || async move {
            let (_, text) = plain_get(metrics, "/metrics").await;
            let metric = |name: &str| {
                sample(
                    &text,
                    &format!("mimi_ds_server_request_duration_seconds_{name}{{operation=\"group_operation\"}}"),
                )
                .unwrap_or(0.0)
            };
            (metric("sum"), metric("count"))
        };
        let (sum_before, count_before) = handled().await;
        let base = hub.relay_stats().delivered();
        let delivered = || hub.relay_stats().delivered() - base;
        let mut figures = timed(&target, &prepared.requests, spec, None, delivered).await?;
        let (sum, count) = handled().await;
        figures.handler_mean = (count > count_before)
            .then(|| Duration::from_secs_f64((sum - sum_before) / (count - count_before)));
        figures.rejected_deliveries = hub.relay_stats().rejected_queues();
        figures.probe = (
            probe(&target, &mut prepared).await?,
            figures.sent.div_ceil(prepared.groups) + 1,
        );
        Ok::<_, String>(figures)
    }
    .await;
    hub.shutdown().await;
    result
}

async fn measure_direct(spec: &Spec) -> Result<Figures, String> {
    let (router, external_sender) = router();
    let workers = spec.concurrency.max(SETUP_CONCURRENCY);
    let delivered = Arc::new(AtomicU64::new(0));
    let delivering_ns = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Wake::default());
    match &spec.storage {
        Storage::Sqlite { dir } => {
            let path = dir.join("direct.sqlite3");
            let slots = (0..workers)
                .map(|_| open_sqlite(&path).map(Mutex::new))
                .collect::<Result<_, _>>()?;
            let direct = Arc::new(DirectSqlite { router, slots });
            let drain = {
                let direct = Arc::clone(&direct);
                let (mut ds, mut qs) = open_sqlite(&path)?;
                let wake = Arc::clone(&wake);
                let (delivered, rejected, stop, delivering_ns) = (
                    Arc::clone(&delivered),
                    Arc::clone(&rejected),
                    Arc::clone(&stop),
                    Arc::clone(&delivering_ns),
                );
                tokio::task::spawn_blocking(move || -> Result<(), String> {
                    let qs_service = direct.router.qs().expect("a QS");
                    while !stop.load(Ordering::Relaxed) {
                        let entries = ds.pending(now_ms(), 512).map_err(|e| e.to_string())?;
                        if entries.is_empty() {
                            wake.wait_blocking(DRAIN_POLL);
                        }
                        for entry in entries {
                            let busy = Instant::now();
                            let fanout = checked_fanout(&entry)?;
                            let outcome = qs_service
                                .deliver(
                                    UnixTimeMs(now_ms()),
                                    &fanout.to_bytes(),
                                    Some(ALPHA),
                                    &mut qs,
                                )
                                .map_err(|e| e.to_string())?;
                            count_answer(&fanout, &outcome.response, &rejected)?;
                            ds.mark_delivered(entry.id).map_err(|e| e.to_string())?;
                            delivering_ns.fetch_add(nanos(busy.elapsed()), Ordering::Relaxed);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            };
            let target = Arc::new(Target::Sqlite(Arc::clone(&direct)));
            let outbox_empty = || {
                let direct = Arc::clone(&direct);
                async move {
                    let slot = direct.slots[0].lock().unwrap_or_else(|e| e.into_inner());
                    slot.0.outbox_len().is_ok_and(|n| n == 0)
                }
            };
            let result = direct_phases(
                spec,
                &target,
                &external_sender,
                (&delivered, &delivering_ns, &wake),
                outbox_empty,
            )
            .await;
            stop.store(true, Ordering::Relaxed);
            drain.await.map_err(|e| e.to_string())??;
            result.map(|mut f| {
                f.rejected_deliveries = rejected.load(Ordering::Relaxed);
                f
            })
        }
        Storage::Postgres { direct_url, .. } => {
            let mut slots = Vec::with_capacity(workers);
            for _ in 0..workers {
                slots.push(tokio::sync::Mutex::new(open_postgres(direct_url).await?));
            }
            let direct = Arc::new(DirectPostgres { router, slots });
            let drain = {
                let direct = Arc::clone(&direct);
                let (mut ds, mut qs) = open_postgres(direct_url).await?;
                let wake = Arc::clone(&wake);
                let (delivered, rejected, stop, delivering_ns) = (
                    Arc::clone(&delivered),
                    Arc::clone(&rejected),
                    Arc::clone(&stop),
                    Arc::clone(&delivering_ns),
                );
                tokio::spawn(async move {
                    let qs_service = direct.router.qs().expect("a QS");
                    while !stop.load(Ordering::Relaxed) {
                        let entries = ds.pending(now_ms(), 512).await.map_err(|e| e.to_string())?;
                        if entries.is_empty() {
                            wake.wait(DRAIN_POLL).await;
                        }
                        for entry in entries {
                            let busy = Instant::now();
                            let fanout = checked_fanout(&entry)?;
                            let outcome = qs_service
                                .deliver_async(
                                    UnixTimeMs(now_ms()),
                                    &fanout.to_bytes(),
                                    Some(ALPHA),
                                    &mut qs,
                                )
                                .await
                                .map_err(|e| e.to_string())?;
                            count_answer(&fanout, &outcome.response, &rejected)?;
                            ds.mark_delivered(entry.id)
                                .await
                                .map_err(|e| e.to_string())?;
                            delivering_ns.fetch_add(nanos(busy.elapsed()), Ordering::Relaxed);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok::<(), String>(())
                })
            };
            let target = Arc::new(Target::Postgres(Arc::clone(&direct)));
            let outbox_empty = || {
                let direct = Arc::clone(&direct);
                async move {
                    let slot = direct.slots[0].lock().await;
                    slot.0.outbox_len().await.is_ok_and(|n| n == 0)
                }
            };
            let result = direct_phases(
                spec,
                &target,
                &external_sender,
                (&delivered, &delivering_ns, &wake),
                outbox_empty,
            )
            .await;
            stop.store(true, Ordering::Relaxed);
            drain.await.map_err(|e| e.to_string())??;
            result.map(|mut f| {
                f.rejected_deliveries = rejected.load(Ordering::Relaxed);
                f
            })
        }
    }
}

async fn direct_phases<F: std::future::Future<Output = bool>>(
    spec: &Spec,
    target: &Arc<Target>,
    external_sender: &ExternalSender,
    (delivered, delivering_ns, wake): (&AtomicU64, &AtomicU64, &Arc<Wake>),
    outbox_empty: impl Fn() -> F,
) -> Result<Figures, String> {
    let setup = Instant::now();
    let mut prepared = prepare(target, external_sender, spec).await?;
    wait_until(SETUP_DRAIN, &outbox_empty).await?;
    eprintln!("direct: setup took {:.1} s", setup.elapsed().as_secs_f64());
    let base = delivered.load(Ordering::Relaxed);
    let base_ns = delivering_ns.load(Ordering::Relaxed);
    let on_accepted = spec.eager_drain.then(|| Arc::clone(wake));
    let mut figures = timed(target, &prepared.requests, spec, on_accepted, || {
        delivered.load(Ordering::Relaxed) - base
    })
    .await?;
    let count = delivered.load(Ordering::Relaxed) - base;
    figures.delivery_mean = (count > 0)
        .then(|| Duration::from_nanos((delivering_ns.load(Ordering::Relaxed) - base_ns) / count));
    figures.probe = (
        probe(target, &mut prepared).await?,
        figures.sent.div_ceil(prepared.groups) + 1,
    );
    Ok(figures)
}

/// How long the direct run's drain loop waits when the outbox is empty.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// Wakes the direct run's drain loop (blocking or async) before its poll interval ends.
#[derive(Default)]
struct Wake {
    pending: Mutex<bool>,
    condvar: std::sync::Condvar,
    notify: tokio::sync::Notify,
}

impl Wake {
    fn signal(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.condvar.notify_one();
        self.notify.notify_one();
    }

    fn wait_blocking(&self, at_most: Duration) {
        let guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = self
            .condvar
            .wait_timeout_while(guard, at_most, |pending| !*pending)
            .unwrap_or_else(|e| e.into_inner());
        *guard = false;
    }

    async fn wait(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.notify.notified()).await;
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn checked_fanout(entry: &OutboxEntry) -> Result<mimi_ds::Fanout, String> {
    let fanout = entry.fanout().map_err(|e| e.to_string())?;
    if !fanout.destination.eq_ignore_ascii_case(ALPHA) {
        return Err(format!(
            "fanout to {}: every queue is at {ALPHA}",
            fanout.destination
        ));
    }
    Ok(fanout)
}

fn count_answer(
    fanout: &mimi_ds::Fanout,
    answer: &[u8],
    rejected: &AtomicU64,
) -> Result<(), String> {
    let answer: QueueingServiceResponse =
        decode_exact(answer).map_err(|e| format!("QS answer: {e}"))?;
    let queues = fanout.rejected_queues(&answer).len() as u64;
    rejected.fetch_add(queues, Ordering::Relaxed);
    Ok(())
}

/// Polls `done` every 5 ms for at most `within`.
async fn wait_until<F: std::future::Future<Output = bool>>(
    within: Duration,
    done: impl Fn() -> F,
) -> Result<(), String> {
    let started = Instant::now();
    while !done().await {
        if started.elapsed() > within {
            return Err(format!(
                "the setup's fanout was not delivered within {within:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Setup, timed phase, probe

/// The groups exist, every member has a queue; the messages are signed.
struct Prepared {
    requests: Vec<Vec<u8>>,
    /// A member (not the sender) of the first group, with its queue.
    probe: TestClient,
    /// Groups: the first one gets every `groups`-th message, from the first on.
    groups: usize,
}

/// Whether an answer is an accepted DS request.
fn accepted(status: u16, body: &[u8]) -> Result<DsResponseBody, String> {
    let response = decode_exact::<DsResponse>(body)
        .map_err(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(body)))?;
    match response.body {
        DsResponseBody::Error(error) => Err(format!(
            "HTTP {status}: {:?} {}",
            error.code,
            String::from_utf8_lossy(error.description.as_slice())
        )),
        _ if status != 200 => Err(format!("HTTP {status}")),
        body => Ok(body),
    }
}

/// Sends `bodies` to `path` with `SETUP_CONCURRENCY` in flight; the answers in order.
async fn batch(
    target: &Arc<Target>,
    path: &'static str,
    bodies: Vec<Vec<u8>>,
) -> Vec<(u16, Vec<u8>)> {
    let count = bodies.len();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..SETUP_CONCURRENCY {
        let (target, bodies, next) = (Arc::clone(target), Arc::clone(&bodies), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return answers;
                }
                answers.push((i, target.call(worker, path, bodies[i].clone()).await));
            }
        }));
    }
    let mut answers = vec![(0, Vec::new()); count];
    for task in tasks {
        for (i, answer) in task.await.expect("setup worker") {
            answers[i] = answer;
        }
    }
    answers
}

async fn prepare(
    target: &Arc<Target>,
    external_sender: &ExternalSender,
    spec: &Spec,
) -> Result<Prepared, String> {
    let (groups, members) = spec.scenario.shape();
    let mut clients: Vec<Vec<TestClient>> = (0..groups)
        .map(|g| {
            (0..members)
                .map(|m| TestClient::new(&format!("user{g}x{m}"), "phone", ALPHA))
                .collect()
        })
        .collect();
    // Every member's queue at the QS, sealed for the hub.
    let bodies = clients
        .iter()
        .flatten()
        .map(|c| c.create_queue_request(now_ms()))
        .collect();
    let answers = batch(target, "/queue_operation", bodies).await;
    for (client, (status, body)) in clients.iter_mut().flatten().zip(answers) {
        if status != 200 {
            return Err(format!("create_queue: HTTP {status}"));
        }
        client.use_queue(&body, ALPHA);
    }
    // Group IDs, the groups, everyone added by the creator in one commit.
    let request_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .map_err(|e| e.to_string())?;
    let answers = batch(target, "/group_operation", vec![request_id; groups]).await;
    for (group, (status, body)) in clients.iter_mut().zip(answers) {
        let DsResponseBody::GroupId(id) = accepted(status, &body)? else {
            return Err("request_group_id: no group ID".into());
        };
        group[0].create_group(id.as_slice(), external_sender);
    }
    let bodies = clients
        .iter()
        .map(|group| group[0].create_group_request(now_ms()))
        .collect();
    for (status, body) in batch(target, "/group_operation", bodies).await {
        accepted(status, &body).map_err(|e| format!("create_group: {e}"))?;
    }
    let bodies = clients
        .iter_mut()
        .map(|group| {
            let key_packages = group[1..].iter().map(TestClient::key_package).collect();
            group[0].add_request(key_packages, now_ms())
        })
        .collect();
    for (status, body) in batch(target, "/group_operation", bodies).await {
        accepted(status, &body).map_err(|e| format!("add: {e}"))?;
    }
    for group in &mut clients {
        group[0].confirm_commit();
    }
    // The timed phase's messages, round-robin over the groups.
    let mut requests = Vec::with_capacity(spec.requests);
    for i in 0..spec.requests {
        requests.push(clients[i % groups][0].message_request(PAYLOAD, now_ms()));
    }
    let probe = clients[0].swap_remove(1);
    Ok(Prepared {
        requests,
        probe,
        groups,
    })
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    accepted: usize,
    refusals: Vec<String>,
    resends: usize,
    on_accepted: Option<Arc<Wake>>,
}

/// How often a request answered `conflict` is resent unchanged, as wire-format.md §5.6 lets
/// a client do, before it counts as refused.
const MAX_RESENDS: usize = 20;

/// Whether an answer is `conflict`: the DS's optimistic write lost a race with another
/// request to the same group more than `max_conflict_retries` times, and changed nothing.
fn is_conflict(status: u16, body: &[u8]) -> bool {
    status == 409
        && matches!(
            decode_exact::<DsResponse>(body).map(|r| r.body),
            Ok(DsResponseBody::Error(e)) if e.code == mimi_ds::wire::ErrorCode::Conflict
        )
}

impl Tally {
    /// Sends one request through `call`, resending it on `conflict`; its latency runs from
    /// the first send to the last answer, as its client sees it.
    async fn send<F: std::future::Future<Output = (u16, Vec<u8>)>>(
        &mut self,
        call: impl Fn() -> F,
    ) {
        let sent = Instant::now();
        let mut answer = call().await;
        let mut resends = 0;
        while is_conflict(answer.0, &answer.1) && resends < MAX_RESENDS {
            resends += 1;
            answer = call().await;
        }
        self.record(sent.elapsed(), resends, answer);
    }

    /// [`Tally::send`] for a blocking call.
    fn send_blocking(&mut self, call: impl Fn() -> (u16, Vec<u8>)) {
        let sent = Instant::now();
        let mut answer = call();
        let mut resends = 0;
        while is_conflict(answer.0, &answer.1) && resends < MAX_RESENDS {
            resends += 1;
            answer = call();
        }
        self.record(sent.elapsed(), resends, answer);
    }

    fn record(&mut self, latency: Duration, resends: usize, (status, body): (u16, Vec<u8>)) {
        self.latencies.push(latency);
        self.resends += resends;
        match accepted(status, &body) {
            Ok(_) => {
                self.accepted += 1;
                if let Some(wake) = &self.on_accepted {
                    wake.signal();
                }
            }
            Err(refusal) if self.refusals.len() < 3 => self.refusals.push(refusal),
            Err(_) => {}
        }
    }
}

/// Sends the prepared messages with `concurrency` workers until all are sent or the maximum
/// duration ran out, then waits (as long again at most) until `delivered()` counts every
/// accepted one.
async fn timed(
    target: &Arc<Target>,
    requests: &[Vec<u8>],
    spec: &Spec,
    on_accepted: Option<Arc<Wake>>,
    delivered: impl Fn() -> u64,
) -> Result<Figures, String> {
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(requests.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + spec.max_duration;
    let mut workers = Vec::with_capacity(spec.concurrency);
    for worker in 0..spec.concurrency {
        let (requests, next) = (Arc::clone(&requests), Arc::clone(&next));
        let on_accepted = on_accepted.clone();
        let take = move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            (i < requests.len() && Instant::now() < deadline).then(|| requests[i].clone())
        };
        workers.push(match &**target {
            Target::Sqlite(direct) => {
                let direct = Arc::clone(direct);
                tokio::task::spawn_blocking(move || {
                    let mut tally = Tally {
                        on_accepted,
                        ..Tally::default()
                    };
                    while let Some(body) = take() {
                        tally.send_blocking(|| direct.call(worker, "/group_operation", &body));
                    }
                    tally
                })
            }
            _ => {
                let target = Arc::clone(target);
                tokio::spawn(async move {
                    let mut tally = Tally {
                        on_accepted,
                        ..Tally::default()
                    };
                    while let Some(body) = take() {
                        tally
                            .send(|| target.call(worker, "/group_operation", body.clone()))
                            .await;
                    }
                    tally
                })
            }
        });
    }
    let mut all = Tally::default();
    for worker in workers {
        let tally = worker.await.map_err(|e| format!("worker: {e}"))?;
        all.latencies.extend(tally.latencies);
        all.accepted += tally.accepted;
        all.refusals.extend(tally.refusals);
        all.resends += tally.resends;
    }
    let elapsed = started.elapsed();
    let wait_until = Instant::now() + spec.max_duration;
    let mut delivered_after = None;
    while Instant::now() < wait_until {
        if delivered() >= all.accepted as u64 {
            delivered_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    all.latencies.sort();
    all.refusals.truncate(3);
    Ok(Figures {
        sent: all.latencies.len(),
        accepted: all.accepted,
        refusals: all.refusals,
        resends: all.resends,
        elapsed,
        latencies: all.latencies,
        delivered_after,
        delivery_mean: None,
        handler_mean: None,
        rejected_deliveries: 0,
        probe: (0, 0),
    })
}

/// Fetches the probe member's whole queue (the Welcome plus every message of its group) and
/// returns how many messages it held.
async fn probe(target: &Arc<Target>, prepared: &mut Prepared) -> Result<usize, String> {
    let client = &mut prepared.probe;
    let mut received = 0;
    loop {
        let (status, body) = target
            .call(0, "/queue_operation", client.fetch_request(100, now_ms()))
            .await;
        if status != 200 {
            return Err(format!(
                "fetch: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let (count, remaining) = client.take_page(&body);
        received += count;
        if remaining == 0 || count == 0 {
            break;
        }
    }
    Ok(received)
}
