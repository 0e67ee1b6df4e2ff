//! Prometheus metrics, in the text exposition format (version 0.0.4), written by hand: it is a
//! few lines per metric, and a client library would be the largest dependency of the server.
//!
//! Served at `GET /metrics` on a separate plain-HTTP listener (`--metrics-listen`), never on
//! the providers' HTTPS port: request counts by operation are operational data for the
//! operator, not for peers, and a scraper needs no client certificate.
//!
//! Labels are bounded sets: the operation is the endpoint (or `unknown`), never the raw path;
//! the outcome is the HTTP status. No group IDs, queue IDs or peers appear.

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
use mimi_ds::transport::Endpoint;
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

/// What the request handler counted since the server started.
#[derive(Default)]
pub(crate) struct RequestMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
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
        let seconds = elapsed.as_secs_f64();
        let mut latency = lock(&self.latency);
        let histogram = latency.entry(operation).or_default();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            histogram.buckets[bucket] += 1;
        }
        histogram.count += 1;
        histogram.sum_seconds += seconds;
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
            "# HELP mimi_ds_server_request_duration_seconds Time from the request's body read to its answer, by operation.\n\
             # TYPE mimi_ds_server_request_duration_seconds histogram\n",
        );
        for (operation, histogram) in lock(&self.latency).iter() {
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "mimi_ds_server_request_duration_seconds_bucket{{operation=\"{operation}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "mimi_ds_server_request_duration_seconds_bucket{{operation=\"{operation}\",le=\"+Inf\"}} {}\n\
                 mimi_ds_server_request_duration_seconds_sum{{operation=\"{operation}\"}} {}\n\
                 mimi_ds_server_request_duration_seconds_count{{operation=\"{operation}\"}} {}",
                histogram.count, histogram.sum_seconds, histogram.count
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
        out
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
