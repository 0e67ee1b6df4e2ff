//! Fanout destinations are chosen by group members (the queue domain in their leaves), so the
//! relay checks each with `Fanout::check_destination` before anything is looked up: a name
//! outside the peer directory, or an IP address (even one an operator put in the directory),
//! is never called; its queues go back to the hub as `QueueRejected` events, and the hub
//! proposes removing the clients that use them. (Ported from the removed example server's
//! test `the_example_provider_never_calls_destinations_it_does_not_know`.)

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use mimi_ds::testing::{Received, TestClient};
use mimi_ds_server::StorageChoice;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_never_calls_destinations_outside_its_directory() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA]),
        };
        // Bait: a listener the directory resolves an IP-address "domain" to.
        let bait = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        bait.set_nonblocking(true).expect("nonblocking");
        let database = root.path().join("hub.sqlite3");
        let hub = start(config(
            &net.pki,
            ALPHA,
            true,
            StorageChoice::Sqlite(database.clone()),
            &state_dir(root.path(), "alpha"),
            directory(&[("127.0.0.1", bait.local_addr().expect("address"))]),
        ))
        .await;
        let at = hub.local_addr();

        // Alice's group; Eve and Mallory point their queues at destinations of their choosing.
        let mut alice = TestClient::new("alice", "phone", ALPHA);
        net.create_queue(&mut alice, at).await;
        let mut eve = TestClient::new("eve", "phone", ALPHA);
        eve.queue.provider_domain = b"evil.example".to_vec().into();
        let mut mallory = TestClient::new("mallory", "phone", ALPHA);
        mallory.queue.provider_domain = b"127.0.0.1".to_vec().into();
        net.create_group(&mut alice, &hub).await;
        let add = alice.add_request(vec![eve.key_package(), mallory.key_package()], now_ms());
        net.ds(at, add).await;
        alice.confirm_commit();

        // The Welcomes' destinations are refused, their queues reported, and the hub
        // proposes removing both clients: Alice gets the two proposals.
        let started = Instant::now();
        let mut proposals = 0;
        while proposals < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the hub's proposals did not arrive"
            );
            proposals += net
                .fetch(&mut alice, at)
                .await
                .iter()
                .filter(|r| matches!(r, Received::Proposal))
                .count();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stats = hub.relay_stats();
        assert!(stats.refused_destinations() >= 2, "both Welcomes refused");
        assert!(stats.rejected_queues() >= 2, "both queues reported");
        assert_eq!(stats.failed_attempts(), 0, "nothing was tried and failed");
        assert_eq!(
            bait.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "the bait was called"
        );
        hub.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
