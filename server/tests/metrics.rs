//! Prometheus metrics at `GET /metrics` on the metrics listener: after a few requests (some
//! refused) and a delivery to a provider that is down, the scrape shows the requests by
//! operation and status, the latency histogram, the outbox depth and the relay's retries.

mod support;

use std::time::Duration;

use mimi_ds::testing::TestClient;
use mimi_ds_server::StorageChoice;
use support::*;

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

    let (status, _) = plain_get(metrics_at, "/group_operation").await;
    assert_eq!(status, 404);
    hub.shutdown().await;
}
