//! Prometheus metrics at `GET /metrics` on the metrics listener: after a few requests (some
//! refused) and a delivery to a provider that is down, the scrape shows the requests by
//! operation and status, the latency histogram, each DS and QS call by operation and outcome
//! with its read rounds and conflict retries, the outbox depth and the relay's retries (per
//! destination). And the answers the tower layers give by themselves (413, 408), malformed
//! HTTP and failed TLS handshakes are counted too.

mod support;

use std::time::{Duration, Instant};

use mimi_ds::testing::TestClient;
use mimi_ds_server::StorageChoice;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_requests_latency_outbox_depth_and_retries() {
    tokio::time::timeout(TEST_DEADLINE, run())
        .await
        .expect("within the deadline");
}

async fn run() {
    let root = tempfile::tempdir().expect("tmp");
    let net = Net {
        pki: Pki::new(&[ALPHA, BETA]),
    };
    let beta = start(config(
        &net.pki,
        BETA,
        false,
        StorageChoice::Memory,
        &state_dir(root.path(), "beta"),
        directory(&[]),
    ))
    .await;
    let beta_at = beta.local_addr();
    let mut hub_config = config(
        &net.pki,
        ALPHA,
        true,
        StorageChoice::Memory,
        &state_dir(root.path(), "alpha"),
        directory(&[(BETA, beta_at)]),
    );
    hub_config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    let hub = start(hub_config).await;
    let metrics_at = hub.metrics_addr().expect("a metrics listener");

    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    net.create_queue(&mut alice, hub.local_addr()).await;
    net.create_queue(&mut bob, beta_at).await;
    // beta goes down: the hub's deliveries to it fail and are retried.
    beta.shutdown().await;

    net.create_group(&mut alice, &hub).await;
    net.ds(
        hub.local_addr(),
        alice.add_request(vec![bob.key_package()], now_ms()),
    )
    .await;
    alice.confirm_commit();
    let (status, _) = net
        .post(
            ALPHA,
            hub.local_addr(),
            "/group_operation",
            b"\x00\x01\x7f".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = net
        .post(ALPHA, hub.local_addr(), "/no_such_endpoint", Vec::new())
        .await;
    assert_eq!(status, 404);
    let started = std::time::Instant::now();
    while hub.relay_stats().failed_attempts() == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "no retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, text) = plain_get(metrics_at, "/metrics").await;
    assert_eq!(status, 200);
    let requests =
        |labels: &str| sample(&text, &format!("mimi_ds_server_requests_total{{{labels}}}"));
    // request_group_id, create_group, add.
    assert_eq!(
        requests("operation=\"group_operation\",status=\"200\""),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        requests("operation=\"group_operation\",status=\"400\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests("operation=\"queue_operation\",status=\"200\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests("operation=\"unknown\",status=\"404\""),
        Some(1.0),
        "{text}"
    );
    let latency = "mimi_ds_server_request_duration_seconds";
    assert_eq!(
        sample(
            &text,
            &format!("{latency}_count{{operation=\"group_operation\"}}")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("{latency}_bucket{{operation=\"group_operation\",le=\"+Inf\"}}")
        ),
        Some(4.0)
    );
    assert!(
        sample(
            &text,
            &format!("{latency}_sum{{operation=\"group_operation\"}}")
        )
        .unwrap()
            > 0.0
    );
    // The welcome for bob waits in the outbox while beta is down.
    assert!(
        sample(&text, "mimi_ds_server_outbox_entries").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "mimi_ds_server_relay_failed_attempts_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(text.contains("# TYPE mimi_ds_server_request_duration_seconds histogram"));

    // Behind the endpoints: each DS and QS call by request type and outcome.
    let calls = |labels: &str| sample(&text, &format!("mimi_ds_server_calls_total{{{labels}}}"));
    for operation in ["request_group_id", "create_group", "commits"] {
        assert_eq!(
            calls(&format!(
                "service=\"ds\",operation=\"{operation}\",outcome=\"accepted\""
            )),
            Some(1.0),
            "{operation}: {text}"
        );
    }
    assert_eq!(
        calls("service=\"qs\",operation=\"create_queue\",outcome=\"accepted\""),
        Some(1.0),
        "{text}"
    );
    let ds_commits = "service=\"ds\",operation=\"commits\"";
    assert_eq!(
        sample(
            &text,
            &format!("mimi_ds_server_read_rounds_total{{{ds_commits}}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("mimi_ds_server_conflict_retries_total{{{ds_commits}}}")
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("mimi_ds_server_call_duration_seconds_count{{{ds_commits}}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            &format!(
                "mimi_ds_server_relay_destination_failed_attempts_total{{destination=\"{BETA}\"}}"
            )
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );

    let (status, _) = plain_get(metrics_at, "/group_operation").await;
    assert_eq!(status, 404);
    hub.shutdown().await;
}

const MAX_BODY: usize = 16 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// The status of the first answer on `stream` (its status line is enough here).
async fn status_of(stream: &mut (impl AsyncReadExt + Unpin)) -> u16 {
    let mut data = Vec::new();
    let mut buffer = [0u8; 1024];
    while !data.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        data.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&data[9..12])
        .parse()
        .expect("a status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layers_answers_and_failed_connections_are_counted() {
    tokio::time::timeout(TEST_DEADLINE, layers_and_connections())
        .await
        .expect("within the deadline");
}

async fn layers_and_connections() {
    let root = tempfile::tempdir().expect("tmp");
    let pki = Pki::new(&[ALPHA]);
    let mut config = config(
        &pki,
        ALPHA,
        true,
        StorageChoice::Memory,
        &state_dir(root.path(), "alpha"),
        directory(&[]),
    );
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    config.limits.max_body_bytes = MAX_BODY;
    config.limits.request_timeout = REQUEST_TIMEOUT;
    let hub = start(config).await;
    let at = hub.local_addr();
    let metrics_at = hub.metrics_addr().expect("a metrics listener");

    // A declared length over the limit: the body-limit layer answers 413 without calling
    // the handler.
    let mut stream = raw_tls(&pki, ALPHA, at).await;
    let head = format!(
        "POST /group_operation HTTP/1.1\r\nHost: {ALPHA}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    assert_eq!(status_of(&mut stream).await, 413);

    // A chunked body that grows over the limit: the handler answers 413 while reading it.
    let mut stream = raw_tls(&pki, ALPHA, at).await;
    let head = format!(
        "POST /group_operation HTTP/1.1\r\nHost: {ALPHA}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut chunk = format!("{:x}\r\n", MAX_BODY + 1).into_bytes();
    chunk.extend(std::iter::repeat_n(b'a', MAX_BODY + 1));
    stream.write_all(&chunk).await.expect("write");
    assert_eq!(status_of(&mut stream).await, 413);

    // A body that never completes: the timeout layer answers 408 at the deadline.
    let mut stream = raw_tls(&pki, ALPHA, at).await;
    let head = format!(
        "POST /queue_operation HTTP/1.1\r\nHost: {ALPHA}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n\x00\x01"
    );
    let asked = Instant::now();
    stream.write_all(head.as_bytes()).await.expect("write");
    assert_eq!(status_of(&mut stream).await, 408);
    assert!(asked.elapsed() >= REQUEST_TIMEOUT);

    // Not HTTP: hyper answers 400 itself, before any request exists.
    let mut stream = raw_tls(&pki, ALPHA, at).await;
    stream
        .write_all(b"NOT HTTP AT ALL\x01\x02\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(status_of(&mut stream).await, 400);
    drop(stream);

    // Not TLS.
    let mut tcp = tokio::net::TcpStream::connect(at).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;

    // The connection-level counts land when the connection tasks end: wait for them.
    let started = Instant::now();
    let text = loop {
        let (status, text) = plain_get(metrics_at, "/metrics").await;
        assert_eq!(status, 200);
        let failures = |reason: &str| {
            sample(
                &text,
                &format!("mimi_ds_server_connection_failures_total{{reason=\"{reason}\"}}"),
            )
        };
        if failures("malformed").is_some() && failures("tls_handshake").is_some() {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let requests =
        |labels: &str| sample(&text, &format!("mimi_ds_server_requests_total{{{labels}}}"));
    assert_eq!(
        requests("operation=\"group_operation\",status=\"413\""),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        requests("operation=\"queue_operation\",status=\"408\""),
        Some(1.0),
        "{text}"
    );
    let latency = "mimi_ds_server_request_duration_seconds";
    assert_eq!(
        sample(
            &text,
            &format!("{latency}_count{{operation=\"group_operation\"}}")
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            &format!("{latency}_sum{{operation=\"queue_operation\"}}")
        )
        .unwrap()
            >= REQUEST_TIMEOUT.as_secs_f64(),
        "{text}"
    );
    // None of these reached the DS or the QS.
    assert!(!text.contains("mimi_ds_server_calls_total{"), "{text}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_counted() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let pki = Pki::new(&[ALPHA]);
        let mut config = config(
            &pki,
            ALPHA,
            false,
            StorageChoice::Memory,
            &state_dir(root.path(), "alpha"),
            directory(&[]),
        );
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
        config.limits.max_connections = 1;
        let server = start(config).await;
        let metrics_at = server.metrics_addr().expect("a metrics listener");
        // One connection takes the only slot; the next is closed as soon as it is accepted.
        let held = raw_tls(&pki, ALPHA, server.local_addr()).await;
        let mut refused = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut rest))
            .await
            .expect("closed within 5 s");
        assert!(read.is_err() || rest.is_empty(), "closed without an answer");
        let (status, text) = plain_get(metrics_at, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(
            sample(
                &text,
                "mimi_ds_server_connection_failures_total{reason=\"over_limit\"}"
            ),
            Some(1.0),
            "{text}"
        );
        drop(held);
        server.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
