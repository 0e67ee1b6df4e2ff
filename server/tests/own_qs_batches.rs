//! The relay's deliveries to the provider's own Queueing Service on SQLite: the QS's queues
//! live in a file of their own beside the hub's, and the fanouts the relay finds due together
//! are delivered in one QS transaction and removed from the outbox in one DS transaction,
//! keeping the hub's order and at-least-once delivery when one of them fails.
//!
//! The failures are injected into the QS's file with a trigger that aborts an insert of a
//! queued message: the QS's write of that one delivery fails, as a full disk or an I/O error
//! would make it fail.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use mimi_ds::storage::DsOutbox;
use mimi_ds::testing::{Received, TestClient};
use mimi_ds_server::{RunningServer, StartError, StorageChoice};
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

/// Rows of `table` in the SQLite file `path`.
fn rows(path: &Path, table: &str) -> i64 {
    rusqlite::Connection::open(path)
        .expect("open")
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("count")
}

/// From now on, the QS's insert of a queued message fails if its stored bytes contain
/// `needle` (every insert, if `needle` is empty; none, if `needle` is `None`).
fn inject_failures(qs_file: &Path, needle: Option<&[u8]>) {
    let connection = rusqlite::Connection::open(qs_file).expect("open");
    connection
        .execute_batch("DROP TRIGGER IF EXISTS test_fault")
        .expect("no fault");
    let Some(needle) = needle else { return };
    let hex: String = needle.iter().map(|b| format!("{b:02x}")).collect();
    let condition = if needle.is_empty() {
        "1".to_owned()
    } else {
        format!("instr(NEW.message, X'{hex}') > 0")
    };
    connection
        .execute_batch(&format!(
            "CREATE TRIGGER test_fault BEFORE INSERT ON mimi_qs_message WHEN {condition} BEGIN
                 SELECT RAISE(ABORT, 'injected failure');
             END;"
        ))
        .expect("the fault");
}

/// The last 32 bytes of the MLS message of each outbox entry, oldest first: a needle for
/// [`inject_failures`] that matches that message only (its ciphertext's tail).
fn outbox_messages(database: &Path) -> Vec<Vec<u8>> {
    let entries = SqliteDsStorage::open(database)
        .expect("open")
        .pending(u64::MAX, 100)
        .expect("outbox");
    entries
        .iter()
        .map(|entry| {
            let fanout = entry.fanout().expect("fanout");
            let bytes = fanout.request.message.message.as_bytes();
            bytes[bytes.len() - 32..].to_vec()
        })
        .collect()
}

async fn hub(net: &Net, root: &Path, address: std::net::SocketAddr) -> RunningServer {
    let mut config = config(
        &net.pki,
        ALPHA,
        true,
        StorageChoice::Sqlite(root.join("hub.sqlite3")),
        &state_dir(root, "alpha"),
        directory(&[]),
    );
    config.listen = address;
    // A failed delivery is retried after 250 ms, then every 500 ms.
    config.retry.base_delay = Duration::from_millis(500);
    config.retry.max_delay = Duration::from_millis(500);
    start(config).await
}

/// Alice and Bob, both with their queues at the hub's own QS, in one group; Bob has joined.
async fn alice_and_bob(
    net: &Net,
    hub: &RunningServer,
    address: std::net::SocketAddr,
) -> (TestClient, TestClient) {
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", ALPHA);
    net.create_queue(&mut alice, address).await;
    net.create_queue(&mut bob, address).await;
    net.create_group(&mut alice, hub).await;
    net.ds(
        address,
        alice.add_request(vec![bob.key_package()], now_ms()),
    )
    .await;
    alice.confirm_commit();
    let received = net
        .fetch_until(&mut bob, address, Duration::from_secs(10), is_welcome)
        .await;
    net.join(&mut bob, address, &welcome(&received)).await;
    (alice, bob)
}

fn applications(received: Vec<Received>) -> Vec<Vec<u8>> {
    received
        .into_iter()
        .filter_map(|r| match r {
            Received::Application(text) => Some(text),
            _ => None,
        })
        .collect()
}

/// Five messages wait in the outbox behind a failed first delivery. When the QS works again
/// except for the third, the relay delivers them in one batch: the first two are committed to
/// the QS and leave the outbox together, the third is put off, and the last two wait behind
/// it (not delivered early, not lost). Then the last three go in one batch. Bob reads the five
/// in the hub's order, each once; nothing left the outbox before the QS had written it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_the_order_and_a_failing_delivery_holds_back_only_what_follows_it() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA]),
        };
        let address = closed_address();
        let hub = hub(&net, root.path(), address).await;
        let (mut alice, mut bob) = alice_and_bob(&net, &hub, address).await;
        let database = root.path().join("hub.sqlite3");
        let qs_file = StorageChoice::qs_sqlite_file(&database);
        wait_for("the setup delivered", Duration::from_secs(10), || {
            outbox_len(&database) == 0
        })
        .await;
        let queued_before = rows(&qs_file, "mimi_qs_message");
        let stats = hub.relay_stats();

        // The QS's writes fail: the first message's delivery fails, and the next four are
        // accepted behind it.
        inject_failures(&qs_file, Some(&[]));
        let texts: Vec<Vec<u8>> = (1..=5).map(|i| format!("m{i}").into_bytes()).collect();
        let failed = stats.failed_attempts();
        net.ds(address, alice.message_request(&texts[0], now_ms()))
            .await;
        wait_for("a failed delivery", Duration::from_secs(10), || {
            stats.failed_attempts() > failed
        })
        .await;
        for text in &texts[1..] {
            net.ds(address, alice.message_request(text, now_ms())).await;
        }
        wait_for("another failed attempt", Duration::from_secs(10), || {
            stats.failed_attempts() > failed + 1
        })
        .await;
        // Attempted, and failed in the QS: nothing left the outbox, nothing was queued.
        assert_eq!(outbox_len(&database), 5);
        assert_eq!(rows(&qs_file, "mimi_qs_message"), queued_before);

        // Now only the third message fails: one batch commits the first two, and only those
        // two leave the outbox; the two behind the third are not delivered early.
        let messages = outbox_messages(&database);
        assert_eq!(messages.len(), 5);
        let (delivered, batches) = (stats.delivered(), stats.own_qs_batches());
        inject_failures(&qs_file, Some(&messages[2]));
        wait_for("two delivered", Duration::from_secs(10), || {
            stats.delivered() >= delivered + 2
        })
        .await;
        let failed = stats.failed_attempts();
        wait_for("the third failed again", Duration::from_secs(10), || {
            stats.failed_attempts() > failed
        })
        .await;
        assert_eq!(stats.delivered(), delivered + 2, "the first two, no more");
        assert_eq!(stats.own_qs_batches(), batches + 1, "in one batch");
        assert_eq!(outbox_len(&database), 3, "the third and the two behind it");
        assert_eq!(rows(&qs_file, "mimi_qs_message"), queued_before + 2);
        let first = applications(net.fetch(&mut bob, address).await);
        assert_eq!(first, texts[..2].to_vec());

        // The QS works again: the last three arrive, in one batch, after the first two.
        let (delivered, batches) = (stats.delivered(), stats.own_qs_batches());
        inject_failures(&qs_file, None);
        wait_for("the outbox drained", Duration::from_secs(10), || {
            outbox_len(&database) == 0
        })
        .await;
        assert_eq!(stats.delivered(), delivered + 3);
        assert_eq!(stats.own_qs_batches(), batches + 1, "in one batch");
        let rest = applications(net.fetch(&mut bob, address).await);
        assert_eq!(rest, texts[2..].to_vec(), "in the hub's order, each once");

        hub.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

/// The hub's file holds the groups and the outbox, the QS's file beside it the queues; a
/// restarted server finds both (the group takes a message, the queues receive it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_and_the_groups_live_in_two_files_that_a_restart_finds() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA]),
        };
        let address = closed_address();
        let database = root.path().join("hub.sqlite3");
        let qs_file = root.path().join("hub-qs.sqlite3");
        assert_eq!(StorageChoice::qs_sqlite_file(&database), qs_file);
        let server = hub(&net, root.path(), address).await;
        let (mut alice, mut bob) = alice_and_bob(&net, &server, address).await;
        server.shutdown().await;

        assert_eq!(rows(&database, "mimi_ds_group"), 1);
        assert_eq!(
            rows(&database, "mimi_qs_queue"),
            0,
            "no queue in the hub's file"
        );
        assert_eq!(rows(&qs_file, "mimi_qs_queue"), 2, "alice's and bob's");
        assert_eq!(
            rows(&qs_file, "mimi_ds_group"),
            0,
            "no group in the QS's file"
        );

        let server = hub(&net, root.path(), address).await;
        net.ds(
            address,
            alice.message_request(b"after the restart", now_ms()),
        )
        .await;
        let received = net
            .fetch_until(&mut bob, address, Duration::from_secs(10), |r| {
                matches!(r, Received::Application(_))
            })
            .await;
        assert_eq!(applications(received), vec![b"after the restart".to_vec()]);
        server.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

/// A database made with both in one file (`qs_sqlite` set to the hub's file) keeps working
/// when started so again; started with the default layout, the server refuses rather than
/// hide the queues in the hub's file from their clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_in_the_hubs_file_are_not_hidden_by_a_new_qs_file() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA]),
        };
        let database = root.path().join("hub.sqlite3");
        let one_file = || {
            let mut config = config(
                &net.pki,
                ALPHA,
                true,
                StorageChoice::Sqlite(database.clone()),
                &state_dir(root.path(), "alpha"),
                directory(&[]),
            );
            config.qs_sqlite = Some(database.clone());
            config
        };
        let server = start(one_file()).await;
        let mut alice = TestClient::new("alice", "phone", ALPHA);
        net.create_queue(&mut alice, server.local_addr()).await;
        server.shutdown().await;
        assert_eq!(rows(&database, "mimi_qs_queue"), 1);
        assert!(!StorageChoice::qs_sqlite_file(&database).exists());

        let mut default_layout = one_file();
        default_layout.qs_sqlite = None;
        match mimi_ds_server::start(default_layout).await {
            Err(StartError::QueuesInHubFile { ds_file, qs_file }) => {
                assert_eq!(ds_file, database);
                assert_eq!(qs_file, StorageChoice::qs_sqlite_file(&database));
            }
            other => panic!("started over the hub file's queues: {other:?}"),
        }

        let server = start(one_file()).await;
        let (status, _) = net
            .post(
                ALPHA,
                server.local_addr(),
                "/queue_operation",
                alice.fetch_request(10, now_ms()),
            )
            .await;
        assert_eq!(status, 200, "alice's queue is still found");
        server.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
