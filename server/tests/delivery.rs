//! A member's request through HTTPS is answered, and the relay delivers its fanout to another
//! provider's Queueing Service (a second server, in QS role) and to the hub's own; a queue the
//! QS reports invalid comes back to the hub as an event. Once with the hub on SQLite, once
//! with both servers on PostgreSQL (requests through `Router::handle_async`, the relay
//! draining the PostgreSQL outbox).

mod support;

use std::time::Duration;

use mimi_ds::testing::{Received, TestClient};
use mimi_ds::wire::QsClientRequestBody;
use mimi_ds_server::StorageChoice;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_fanout_reaches_the_other_providers_qs_through_the_relay() {
    let root = tempfile::tempdir().expect("tmp");
    let hub_storage = StorageChoice::Sqlite(root.path().join("hub.sqlite3"));
    tokio::time::timeout(
        TEST_DEADLINE,
        run(&root, hub_storage, StorageChoice::Memory),
    )
    .await
    .expect("within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_round_trip_on_postgresql() {
    let root = tempfile::tempdir().expect("tmp");
    let hub_url = support::postgres::fresh_database().await;
    let beta_url = support::postgres::fresh_database().await;
    tokio::time::timeout(
        TEST_DEADLINE,
        run(
            &root,
            StorageChoice::Postgres(hub_url.clone()),
            StorageChoice::Postgres(beta_url.clone()),
        ),
    )
    .await
    .expect("within the deadline");
    // The state is in PostgreSQL, and the relay drained the hub's outbox there.
    let count = |url: String, table: &'static str| async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count");
        row.get::<_, i64>(0)
    };
    assert_eq!(count(hub_url.clone(), "mimi_ds_group").await, 1);
    assert_eq!(count(hub_url.clone(), "mimi_ds_outbox").await, 0);
    assert_eq!(count(hub_url, "mimi_qs_queue").await, 1, "alice's queue");
    assert_eq!(
        count(beta_url, "mimi_qs_queue").await,
        1,
        "bob's phone's queue"
    );
}

async fn run(root: &tempfile::TempDir, hub_storage: StorageChoice, beta_storage: StorageChoice) {
    let net = Net {
        pki: Pki::new(&[ALPHA, BETA]),
    };
    // beta first: its directory names the hub, the only provider whose deliveries it takes.
    let hub_address = closed_address();
    let beta = start(config(
        &net.pki,
        BETA,
        false,
        beta_storage,
        &state_dir(root.path(), "beta"),
        directory(&[(ALPHA, hub_address)]),
    ))
    .await;
    let mut hub_config = config(
        &net.pki,
        ALPHA,
        true,
        hub_storage,
        &state_dir(root.path(), "alpha"),
        directory(&[(BETA, beta.local_addr())]),
    );
    hub_config.listen = hub_address;
    hub_config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    let hub = start(hub_config).await;
    let hub_at = hub.local_addr();

    // Discovery over HTTP/2.
    let (status, body) = net
        .send_with(
            ALPHA,
            hub_at,
            http::Request::get(format!("https://{ALPHA}/.well-known/mimi/ds-domain"))
                .body(Default::default())
                .expect("request"),
            None,
            true,
        )
        .await;
    assert_eq!((status, body.as_slice()), (200, ALPHA.as_bytes()));

    // beta runs no hub: a DS request sent there is refused with an error body.
    let (status, body) = net
        .post(
            BETA,
            beta.local_addr(),
            "/group_operation",
            b"\x00\x01".to_vec(),
        )
        .await;
    assert_eq!(status, 404);
    assert!(matches!(
        mimi_ds::wire::decode_exact::<mimi_ds::wire::DsResponse>(&body).map(|r| r.body),
        Ok(mimi_ds::wire::DsResponseBody::Error(_))
    ));

    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    let mut bob_laptop = TestClient::new("bob", "laptop", BETA);
    net.create_queue(&mut alice, hub_at).await;
    net.create_queue(&mut bob, beta.local_addr()).await;
    net.create_queue(&mut bob_laptop, beta.local_addr()).await;

    net.create_group(&mut alice, &hub).await;
    let add = alice.add_request(vec![bob.key_package(), bob_laptop.key_package()], now_ms());
    net.ds(hub_at, add).await;
    alice.confirm_commit();
    for client in [&mut bob, &mut bob_laptop] {
        let received = net
            .fetch_until(
                client,
                beta.local_addr(),
                Duration::from_secs(20),
                is_welcome,
            )
            .await;
        net.join(client, hub_at, &welcome(&received)).await;
    }

    net.ds(hub_at, alice.message_request(b"Hi Bob!", now_ms()))
        .await;
    let received = net
        .fetch_until(&mut bob, beta.local_addr(), Duration::from_secs(20), |r| {
            matches!(r, Received::Application(_))
        })
        .await;
    assert!(received.contains(&Received::Application(b"Hi Bob!".to_vec())));
    // And back: bob's message reaches alice's queue at the hub's own QS.
    net.ds(hub_at, bob.message_request(b"Hi Alice", now_ms()))
        .await;
    let received = net
        .fetch_until(&mut alice, hub_at, Duration::from_secs(20), |r| {
            matches!(r, Received::Application(_))
        })
        .await;
    assert!(received.contains(&Received::Application(b"Hi Alice".to_vec())));

    // Bob's laptop deletes its queue: beta answers invalid_client_queue_information for it,
    // and the relay feeds that back to the hub as an event.
    let delete = bob_laptop.qs_request(QsClientRequestBody::DeleteQueue, now_ms());
    let (status, _) = net
        .post(BETA, beta.local_addr(), "/queue_operation", delete)
        .await;
    assert_eq!(status, 200);
    net.ds(hub_at, alice.message_request(b"Anyone there?", now_ms()))
        .await;
    let started = std::time::Instant::now();
    while hub.relay_stats().rejected_queues() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no rejection reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.relay_stats().rejected_queues(), 1);
    assert_eq!(hub.relay_stats().failed_attempts(), 0);
    // The hub's event proposed removing the laptop; the proposal reaches bob.
    net.fetch_until(&mut bob, beta.local_addr(), Duration::from_secs(20), |r| {
        matches!(r, Received::Proposal)
    })
    .await;

    // The metrics read this backend's outbox depth and counted the requests.
    let (status, text) = plain_get(hub.metrics_addr().expect("metrics"), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        sample(&text, "mimi_ds_server_outbox_entries").is_some(),
        "{text}"
    );
    let commits = "mimi_ds_server_requests_total{operation=\"group_operation\",status=\"200\"}";
    assert!(sample(&text, commits).unwrap_or(0.0) >= 4.0, "{text}");

    hub.shutdown().await;
    beta.shutdown().await;
}
