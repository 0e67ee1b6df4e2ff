//! The relay under faults: a Queueing Service that is down gets its deliveries retried with
//! backoff while another provider's deliveries and new requests go through, and a server
//! restarted on the same SQLite file delivers what its outbox held.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use mimi_ds::testing::{Received, TestClient};
use mimi_ds_server::{RunningServer, StorageChoice};
use mimi_ds_sqlite::SqliteDsStorage;
use support::*;

/// Waits until `condition` holds, or panics after `within`.
async fn wait_for(what: &str, within: Duration, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn outbox_len(database: &Path) -> u64 {
    SqliteDsStorage::open(database)
        .expect("open")
        .outbox_len()
        .expect("outbox")
}

/// A QS-role server on SQLite at `address`, taking deliveries from the hub.
async fn qs(
    net: &Net,
    domain: &str,
    root: &Path,
    address: std::net::SocketAddr,
    hub: std::net::SocketAddr,
) -> RunningServer {
    let mut config = config(
        &net.pki,
        domain,
        false,
        StorageChoice::Sqlite(root.join(format!("{domain}.sqlite3"))),
        &state_dir(root, domain),
        directory(&[(ALPHA, hub)]),
    );
    config.listen = address;
    start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_delays_only_its_own_deliveries() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA, BETA, GAMMA]),
        };
        let hub_address = closed_address();
        let (beta_address, gamma_address) = (closed_address(), closed_address());
        let beta = qs(&net, BETA, root.path(), beta_address, hub_address).await;
        let gamma = qs(&net, GAMMA, root.path(), gamma_address, hub_address).await;
        let mut alice = TestClient::new("alice", "phone", ALPHA);
        let mut bob = TestClient::new("bob", "phone", BETA);
        let mut carol = TestClient::new("carol", "phone", GAMMA);
        net.create_queue(&mut bob, beta_address).await;
        net.create_queue(&mut carol, gamma_address).await;
        gamma.shutdown().await;
        // First gamma hangs: its address accepts connections and never answers, so every
        // delivery to it runs into the hub's delivery timeout (5 s here).
        let hole = tokio::net::TcpListener::bind(gamma_address)
            .await
            .expect("bind");
        let black_hole = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = hole.accept().await {
                held.push(socket);
            }
        });

        let database = root.path().join("hub.sqlite3");
        let mut hub_config = config(
            &net.pki,
            ALPHA,
            true,
            StorageChoice::Sqlite(database.clone()),
            &state_dir(root.path(), "alpha"),
            directory(&[(BETA, beta_address), (GAMMA, gamma_address)]),
        );
        hub_config.listen = hub_address;
        hub_config.delivery_timeout = Duration::from_secs(5);
        hub_config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
        let hub = start(hub_config).await;
        net.create_queue(&mut alice, hub_address).await;
        net.create_group(&mut alice, &hub).await;
        let add = alice.add_request(vec![bob.key_package(), carol.key_package()], now_ms());
        net.ds(hub_address, add).await;
        alice.confirm_commit();

        // beta gets its Welcome while gamma hangs (well before gamma's delivery times out),
        // and bob joins.
        let received = net
            .fetch_until(&mut bob, beta_address, Duration::from_secs(4), is_welcome)
            .await;
        net.join(&mut bob, hub_address, &welcome(&received)).await;
        // New requests are answered at once, and their fanout to beta goes through.
        let asked = Instant::now();
        net.ds(hub_address, alice.message_request(b"Hi Bob", now_ms()))
            .await;
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "the request path waited"
        );
        let received = net
            .fetch_until(&mut bob, beta_address, Duration::from_secs(4), |r| {
                matches!(r, Received::Application(_))
            })
            .await;
        assert!(received.contains(&Received::Application(b"Hi Bob".to_vec())));
        let stats = hub.relay_stats();
        wait_for(
            "gamma's delivery timed out",
            Duration::from_secs(10),
            || stats.failed_attempts_to(GAMMA) >= 1,
        )
        .await;

        // Then gamma refuses connections. Its deliveries are retried with backoff: with
        // delays of 50, 100, 200, 200… ms, at most one attempt per 50 ms.
        black_hole.abort();
        let _ = black_hole.await;
        let down_since = Instant::now();
        let timed_out = stats.failed_attempts_to(GAMMA);
        wait_for(
            "two more failed attempts to gamma",
            Duration::from_secs(10),
            || stats.failed_attempts_to(GAMMA) >= timed_out + 2,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let attempts = stats.failed_attempts_to(GAMMA) - timed_out;
        let bound = down_since.elapsed().as_millis() as u64 / 50 + 2;
        assert!(
            attempts <= bound,
            "{attempts} attempts in {:?}: no backoff",
            down_since.elapsed()
        );
        assert_eq!(stats.failed_attempts_to(BETA), 0);
        assert!(
            outbox_len(&database) >= 1,
            "gamma's deliveries wait in the outbox"
        );
        // The operator sees it in the metrics: gamma's retries, beta's deliveries, the
        // request path's answers, and what waits in the outbox.
        let (status, text) = plain_get(hub.metrics_addr().expect("metrics"), "/metrics").await;
        assert_eq!(status, 200);
        let relay = |what: &str, destination: &str| {
            sample(
                &text,
                &format!("mimi_ds_server_relay_destination_{what}_total{{destination=\"{destination}\"}}"),
            )
        };
        assert!(
            relay("failed_attempts", GAMMA).expect("gamma's retries") >= (timed_out + 2) as f64,
            "{text}"
        );
        assert_eq!(relay("failed_attempts", BETA), None, "{text}");
        assert_eq!(relay("delivered", BETA), Some(stats.delivered_to(BETA) as f64));
        assert!(stats.delivered_to(BETA) >= 2, "bob's Welcome and alice's message");
        assert_eq!(relay("delivered", GAMMA), None, "{text}");
        assert_eq!(
            sample(
                &text,
                "mimi_ds_server_calls_total{service=\"ds\",operation=\"send_message\",outcome=\"accepted\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert!(sample(&text, "mimi_ds_server_outbox_entries").unwrap() >= 1.0, "{text}");

        // gamma comes back (same file, same key): its Welcome and message arrive.
        let gamma = qs(&net, GAMMA, root.path(), gamma_address, hub_address).await;
        wait_for("the outbox drained", Duration::from_secs(20), || {
            outbox_len(&database) == 0
        })
        .await;
        let domain = provider_of(&carol);
        let (status, body) = net
            .post(
                &domain,
                gamma_address,
                "/queue_operation",
                carol.fetch_request(50, now_ms()),
            )
            .await;
        assert_eq!(status, 200);
        carol.take_page(&body);
        assert_eq!(carol.inbox.len(), 2, "carol's Welcome and alice's message");

        hub.shutdown().await;
        beta.shutdown().await;
        gamma.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_delivers_what_its_outbox_held() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA, BETA]),
        };
        let (hub_address, beta_address) = (closed_address(), closed_address());
        let beta = qs(&net, BETA, root.path(), beta_address, hub_address).await;
        let mut alice = TestClient::new("alice", "phone", ALPHA);
        let mut bob = TestClient::new("bob", "phone", BETA);
        net.create_queue(&mut bob, beta_address).await;
        beta.shutdown().await;

        let database = root.path().join("hub.sqlite3");
        let hub_config = || {
            let mut config = config(
                &net.pki,
                ALPHA,
                true,
                StorageChoice::Sqlite(database.clone()),
                &state_dir(root.path(), "alpha"),
                directory(&[(BETA, beta_address)]),
            );
            config.listen = hub_address;
            config
        };
        let hub = start(hub_config()).await;
        net.create_queue(&mut alice, hub_address).await;
        net.create_group(&mut alice, &hub).await;
        net.ds(
            hub_address,
            alice.add_request(vec![bob.key_package()], now_ms()),
        )
        .await;
        alice.confirm_commit();
        let stats = hub.relay_stats();
        wait_for("a failed attempt to beta", Duration::from_secs(10), || {
            stats.failed_attempts_to(BETA) >= 1
        })
        .await;
        hub.shutdown().await;
        assert!(
            outbox_len(&database) >= 1,
            "the Welcome waits in the outbox"
        );

        // Both come back; the new hub process (same file, same keys) delivers the Welcome,
        // and bob joins with the tree the restarted hub has.
        let beta = qs(&net, BETA, root.path(), beta_address, hub_address).await;
        let hub = start(hub_config()).await;
        let received = net
            .fetch_until(&mut bob, beta_address, Duration::from_secs(20), is_welcome)
            .await;
        net.join(&mut bob, hub_address, &welcome(&received)).await;
        net.ds(hub_address, alice.message_request(b"still here", now_ms()))
            .await;
        let received = net
            .fetch_until(&mut bob, beta_address, Duration::from_secs(20), |r| {
                matches!(r, Received::Application(_))
            })
            .await;
        assert!(received.contains(&Received::Application(b"still here".to_vec())));
        assert_eq!(hub.relay_stats().failed_attempts_to(BETA), 0);

        hub.shutdown().await;
        beta.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

/// A provider whose QS fails once receives a group's messages in the hub's order: the
/// message whose delivery failed waits for its retry, and the messages accepted meanwhile wait
/// behind it in the outbox (`DsOutbox::pending` keeps each destination's order), although the
/// provider is back long before the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_failed_once_gets_the_messages_in_the_hubs_order() {
    /// The first retry waits half the base delay (the tests' jitter is fixed at 0): long
    /// enough to restart beta and have the next messages accepted before it.
    const FIRST_RETRY: Duration = Duration::from_secs(3);
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA, BETA]),
        };
        let (hub_address, beta_address) = (closed_address(), closed_address());
        let beta = qs(&net, BETA, root.path(), beta_address, hub_address).await;
        let mut alice = TestClient::new("alice", "phone", ALPHA);
        let mut bob = TestClient::new("bob", "phone", BETA);
        net.create_queue(&mut bob, beta_address).await;

        let database = root.path().join("hub.sqlite3");
        let mut hub_config = config(
            &net.pki,
            ALPHA,
            true,
            StorageChoice::Sqlite(database.clone()),
            &state_dir(root.path(), "alpha"),
            directory(&[(BETA, beta_address)]),
        );
        hub_config.listen = hub_address;
        hub_config.retry.base_delay = FIRST_RETRY * 2;
        hub_config.retry.max_delay = FIRST_RETRY * 2;
        let hub = start(hub_config).await;
        net.create_queue(&mut alice, hub_address).await;
        net.create_group(&mut alice, &hub).await;
        net.ds(
            hub_address,
            alice.add_request(vec![bob.key_package()], now_ms()),
        )
        .await;
        alice.confirm_commit();
        let received = net
            .fetch_until(&mut bob, beta_address, Duration::from_secs(10), is_welcome)
            .await;
        net.join(&mut bob, hub_address, &welcome(&received)).await;

        // beta goes down; the delivery of the first message fails once.
        beta.shutdown().await;
        let stats = hub.relay_stats();
        let texts: Vec<Vec<u8>> = (1..=4).map(|i| format!("m{i}").into_bytes()).collect();
        let mut sequence_numbers = Vec::new();
        let mut accept = |body: mimi_ds::wire::DsResponseBody| match body {
            mimi_ds::wire::DsResponseBody::Accepted(accepted) => {
                sequence_numbers.push(accepted.sequence_number)
            }
            other => panic!("refused: {other:?}"),
        };
        accept(
            net.ds(hub_address, alice.message_request(&texts[0], now_ms()))
                .await,
        );
        wait_for("a failed delivery to beta", Duration::from_secs(10), || {
            stats.failed_attempts_to(BETA) >= 1
        })
        .await;
        let failed_at = Instant::now();

        // beta is back at once, and the next messages are accepted before the retry is due.
        let beta = qs(&net, BETA, root.path(), beta_address, hub_address).await;
        for text in &texts[1..] {
            accept(
                net.ds(hub_address, alice.message_request(text, now_ms()))
                    .await,
            );
        }
        assert!(
            failed_at.elapsed() < FIRST_RETRY,
            "the later messages were accepted only after the retry was due ({:?}): this run \
             tested nothing",
            failed_at.elapsed()
        );

        wait_for("the outbox drained", Duration::from_secs(20), || {
            outbox_len(&database) == 0
        })
        .await;
        let fetched = net
            .try_fetch_raw(&mut bob, beta_address)
            .await
            .expect("fetch");
        assert_eq!(
            fetched
                .iter()
                .map(|m| m.sequence_number)
                .collect::<Vec<_>>(),
            sequence_numbers,
            "bob's queue holds the messages in the hub's sequence order"
        );
        bob.inbox = fetched;
        let expected: Vec<Received> = texts.into_iter().map(Received::Application).collect();
        assert_eq!(bob.process_inbox(), expected);
        assert_eq!(
            stats.failed_attempts_to(BETA),
            1,
            "one failure; the held-back messages were not tried while beta was put off"
        );

        hub.shutdown().await;
        beta.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

/// One hub delivers each outbox entry once (regression: a relay round that read the outbox
/// while a destination's task was removing what it had delivered could, when that task ended
/// before the round looked at its destination, hand the same entries to a second task; the
/// QS deduplicated the messages, but a rejected queue was reported to the hub twice, as the
/// CI run of the README's demo on PostgreSQL saw). Messages are sent back to back so that
/// rounds overlap the delivery tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hub_delivers_each_entry_once() {
    const MESSAGES: usize = 150;
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA, BETA]),
        };
        let (hub_address, beta_address) = (closed_address(), closed_address());
        let beta = qs(&net, BETA, root.path(), beta_address, hub_address).await;
        let mut alice = TestClient::new("alice", "phone", ALPHA);
        let mut bob = TestClient::new("bob", "phone", BETA);
        net.create_queue(&mut bob, beta_address).await;
        let database = root.path().join("hub.sqlite3");
        let mut hub_config = config(
            &net.pki,
            ALPHA,
            true,
            StorageChoice::Sqlite(database.clone()),
            &state_dir(root.path(), "alpha"),
            directory(&[(BETA, beta_address)]),
        );
        hub_config.listen = hub_address;
        let hub = start(hub_config).await;
        net.create_queue(&mut alice, hub_address).await;
        net.create_group(&mut alice, &hub).await;
        net.ds(
            hub_address,
            alice.add_request(vec![bob.key_package()], now_ms()),
        )
        .await;
        alice.confirm_commit();
        let received = net
            .fetch_until(&mut bob, beta_address, Duration::from_secs(10), is_welcome)
            .await;
        net.join(&mut bob, hub_address, &welcome(&received)).await;

        for i in 0..MESSAGES {
            net.ds(
                hub_address,
                alice.message_request(format!("m{i}").as_bytes(), now_ms()),
            )
            .await;
        }
        wait_for("the outbox drained", Duration::from_secs(30), || {
            outbox_len(&database) == 0
        })
        .await;
        let stats = hub.relay_stats();
        assert_eq!(stats.failed_attempts(), 0, "no retry blurs the count");
        assert_eq!(
            stats.delivered_to(BETA),
            1 + MESSAGES as u64,
            "the Welcome and each message went to beta once"
        );
        let fetched = net
            .try_fetch_raw(&mut bob, beta_address)
            .await
            .expect("fetch");
        assert_eq!(fetched.len(), MESSAGES);

        hub.shutdown().await;
        beta.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
