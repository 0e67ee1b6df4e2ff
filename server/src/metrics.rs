//! Prometheus metrics, in the text exposition format (version 0.0.4), written by hand: it is a
//! few lines per metric, and a client library would be the largest dependency of the server.
//!
//! Served at `GET /metrics` on a separate plain-HTTP listener (`--metrics-listen`), never on
//! the providers' HTTPS port: request counts by operation are operational data for the
//! operator, not for peers, and a scraper needs no client certificate.
//!
//! Labels are bounded sets: the operation is the endpoint (or `unknown`), never the raw path;
//! the outcome is the HTTP status. Every answer is counted, the tower layers' own included
//! (413 body too large, 408 timeout), because the counting layer sits outside them; failures
//! hyper answers before any request exists (malformed HTTP, a header read timeout) and TLS
//! handshakes that fail are counted per connection. Behind the endpoints, each DS and QS call
//! is counted by its operation (the request type: `send_message`, `commits`, `fetch`, ...) and
//! outcome (`accepted`, `duplicate` or the error code's name), with its latency, read rounds
//! and conflict retries, from [`mimi_ds::OutcomeStats`] and [`mimi_ds::qs::QsStats`]. The
//! relay's counters are labelled by destination provider, a domain of the configured peer
//! directory (a destination outside it is refused before it is counted there). No group IDs,
//! queue IDs or client identities appear.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use mimi_ds::transport::{CallStats, Endpoint};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::relay::RelayStats;
use crate::store::Backend;
use crate::Shared;

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The media type of the text exposition format.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS`] (not cumulative here).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    /// The `_bucket`, `_sum` and `_count` lines of metric `name` with `labels` (`a="b",...`).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n\
             {name}_sum{{{labels}}} {}\n\
             {name}_count{{{labels}}} {}",
            self.count, self.sum_seconds, self.count
        );
    }
}

/// A DS or QS call's labels: service, operation, outcome.
type CallKey = (&'static str, &'static str, &'static str);

/// What the DS and QS calls cost, by service and operation.
#[derive(Default)]
struct CallCounters {
    calls: BTreeMap<CallKey, u64>,
    latency: BTreeMap<(&'static str, &'static str), Histogram>,
    read_rounds: BTreeMap<(&'static str, &'static str), u64>,
    conflict_retries: BTreeMap<(&'static str, &'static str), u64>,
}

/// What the request handler counted since the server started.
#[derive(Default)]
pub(crate) struct RequestMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    calls: Mutex<CallCounters>,
    connections: Mutex<BTreeMap<&'static str, u64>>,
}

/// How a connection ended before or around its requests, for
/// `mimi_ds_server_connection_failures_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConnectionFailure {
    /// Closed when accepted: over the connection limit.
    OverLimit,
    /// The TLS handshake failed or timed out.
    Handshake,
    /// HTTP that hyper could not parse (it answers 400 itself).
    Malformed,
    /// The header section did not arrive in time, or another read timed out.
    Timeout,
    /// Any other connection error (reset, I/O, HTTP/2 protocol error).
    Other,
}

impl ConnectionFailure {
    fn label(self) -> &'static str {
        match self {
            Self::OverLimit => "over_limit",
            Self::Handshake => "tls_handshake",
            Self::Malformed => "malformed",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }
}

/// The operation label of a request: its endpoint's name, or `unknown` (a bounded set, so
/// that a peer cannot grow the metrics by inventing paths).
pub(crate) fn operation(path: &str) -> &'static str {
    Endpoint::from_path(path).map_or("unknown", |endpoint| {
        let path = endpoint.path();
        path.rsplit('/').next().unwrap_or(path)
    })
}

impl RequestMetrics {
    /// Counts one answered request.
    pub(crate) fn observe(&self, operation: &'static str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((operation, status)).or_default() += 1;
        lock(&self.latency)
            .entry(operation)
            .or_default()
            .observe(elapsed);
    }

    /// Counts one DS or QS call (a request's, the relay's delivery to this provider's own
    /// QS, or a hub event), which took `elapsed` including its storage I/O.
    pub(crate) fn observe_call(&self, call: &CallStats, elapsed: Duration) {
        let (service, operation) = (call.service(), call.operation());
        let mut calls = lock(&self.calls);
        *calls
            .calls
            .entry((service, operation, call.outcome()))
            .or_default() += 1;
        calls
            .latency
            .entry((service, operation))
            .or_default()
            .observe(elapsed);
        *calls.read_rounds.entry((service, operation)).or_default() +=
            u64::from(call.read_rounds());
        *calls
            .conflict_retries
            .entry((service, operation))
            .or_default() += u64::from(call.conflict_retries());
    }

    /// Counts a connection that failed outside any request.
    pub(crate) fn connection_failed(&self, failure: ConnectionFailure) {
        *lock(&self.connections).entry(failure.label()).or_default() += 1;
    }

    /// The exposition text: these counters, the relay's, and the outbox depth if it could be
    /// read.
    pub(crate) fn render(&self, relay: &RelayStats, outbox_depth: Option<u64>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP mimi_ds_server_requests_total Requests answered, by operation (endpoint) and HTTP status.\n\
             # TYPE mimi_ds_server_requests_total counter\n",
        );
        for ((operation, status), count) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "mimi_ds_server_requests_total{{operation=\"{operation}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP mimi_ds_server_request_duration_seconds Time from the request's head to its answer (the layers' own answers included), by operation.\n\
             # TYPE mimi_ds_server_request_duration_seconds histogram\n",
        );
        for (operation, histogram) in lock(&self.latency).iter() {
            histogram.render(
                &mut out,
                "mimi_ds_server_request_duration_seconds",
                &format!("operation=\"{operation}\""),
            );
        }
        self.render_calls(&mut out);
        out.push_str(
            "# HELP mimi_ds_server_connection_failures_total Connections that failed outside any request: over the connection limit, TLS handshake, malformed HTTP, header timeout, other.\n\
             # TYPE mimi_ds_server_connection_failures_total counter\n",
        );
        for (reason, count) in lock(&self.connections).iter() {
            let _ = writeln!(
                out,
                "mimi_ds_server_connection_failures_total{{reason=\"{reason}\"}} {count}"
            );
        }
        if let Some(depth) = outbox_depth {
            let _ = writeln!(
                out,
                "# HELP mimi_ds_server_outbox_entries Fanout entries in the durable outbox, not yet delivered.\n\
                 # TYPE mimi_ds_server_outbox_entries gauge\n\
                 mimi_ds_server_outbox_entries {depth}"
            );
        }
        let counters = [
            (
                "mimi_ds_server_relay_delivered_total",
                "Fanouts a Queueing Service accepted.",
                relay.delivered(),
            ),
            (
                "mimi_ds_server_relay_failed_attempts_total",
                "Failed delivery attempts, each retried after a backoff.",
                relay.failed_attempts(),
            ),
            (
                "mimi_ds_server_relay_rejected_queues_total",
                "Queues reported to the hub as rejected.",
                relay.rejected_queues(),
            ),
            (
                "mimi_ds_server_relay_refused_destinations_total",
                "Fanouts whose destination is not in the peer directory.",
                relay.refused_destinations(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let by_destination = [
            (
                "mimi_ds_server_relay_destination_delivered_total",
                "Fanouts a Queueing Service accepted, by destination provider.",
                relay.delivered_by_destination(),
            ),
            (
                "mimi_ds_server_relay_destination_failed_attempts_total",
                "Failed delivery attempts, each retried after a backoff, by destination provider.",
                relay.failed_attempts_by_destination(),
            ),
        ];
        for (name, help, values) in by_destination {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (destination, value) in values {
                let _ = writeln!(out, "{name}{{destination=\"{destination}\"}} {value}");
            }
        }
        out
    }

    /// The DS and QS calls' counters and histograms.
    fn render_calls(&self, out: &mut String) {
        let calls = lock(&self.calls);
        out.push_str(
            "# HELP mimi_ds_server_calls_total DS and QS calls, by service, operation (request type) and outcome (accepted, duplicate, or the error code).\n\
             # TYPE mimi_ds_server_calls_total counter\n",
        );
        for ((service, operation, outcome), count) in &calls.calls {
            let _ = writeln!(
                out,
                "mimi_ds_server_calls_total{{service=\"{service}\",operation=\"{operation}\",outcome=\"{outcome}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP mimi_ds_server_call_duration_seconds Time of a DS or QS call, storage I/O included, by service and operation.\n\
             # TYPE mimi_ds_server_call_duration_seconds histogram\n",
        );
        for ((service, operation), histogram) in &calls.latency {
            histogram.render(
                out,
                "mimi_ds_server_call_duration_seconds",
                &format!("service=\"{service}\",operation=\"{operation}\""),
            );
        }
        let totals = [
            (
                "mimi_ds_server_read_rounds_total",
                "Read rounds of DS and QS calls (each one batch of storage reads), by service and operation.",
                &calls.read_rounds,
            ),
            (
                "mimi_ds_server_conflict_retries_total",
                "Writes storage refused with a conflict, each followed by a fresh attempt, by service and operation.",
                &calls.conflict_retries,
            ),
        ];
        for (name, help, values) in totals {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((service, operation), value) in values {
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{service}\",operation=\"{operation}\"}} {value}"
                );
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until cancelled.
pub(crate) async fn serve<B: Backend>(
    shared: Arc<Shared<B>>,
    listener: TcpListener,
    cancel: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(answer(&shared, &request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                () = cancel.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

async fn answer<B: Backend, Body>(
    shared: &Arc<Shared<B>>,
    request: &Request<Body>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" || request.method() != http::Method::GET {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    let outbox_depth = match B::outbox_depth(shared).await {
        Ok(depth) => Some(depth),
        Err(error) => {
            tracing::warn!(%error, "metrics: reading the outbox depth failed");
            None
        }
    };
    let text = shared
        .request_metrics
        .render(&shared.relay_stats, outbox_depth);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE_TEXT),
    );
    response
}
