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
use mimi_ds_sqlite::{enable_wal, SqliteDsStorage, SqliteQsStorage, WriterQueue};
use openmls::prelude::ExternalSender;
use openmls_rust_crypto::RustCrypto;
use rustls::pki_types::ServerName;

use crate::support::{now_ms, plain_get, sample, Pki, ALPHA};

mod measure;
mod phases;
mod targets;

use measure::*;
use phases::*;
use targets::*;

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
