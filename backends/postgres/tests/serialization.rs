//! Write conflicts the database itself reports (issue 13, docs/deploy.md §6): a transaction at
//! SERIALIZABLE isolation (CockroachDB's default; PostgreSQL's when a vendor asks for it) that
//! loses a race is aborted with SQLSTATE 40001 (`serialization_failure`), and one of two
//! transactions waiting on each other with 40P01 (`deadlock_detected`). Both changed nothing,
//! so the backend reports them as `Conflict`, exactly like its own version guard, and the step
//! API re-reads and re-validates. Each test provokes the real error on the real server: in
//! `write_in` (the vendor's transaction) and in the backend's own transaction, in a statement
//! and at `COMMIT`, for the DS and for the QS. (The same race through `process_async` is in
//! tests/real_clients.rs.)

mod support;

use std::time::Duration;

use mimi_ds::qs::{
    AsyncQsStorage, DeliveryMark, QsChange, QsWriteOutcome, QsWriteSet, QueueRecord,
};
use mimi_ds::storage::{
    AsyncDsStorage, RecordKind, RecordWrite, VersionGuard, WriteOutcome, WriteSet,
};
use mimi_ds::testing::conformance::{fanout, sample_message};
use mimi_ds::testing::START_MS;
use mimi_ds::wire::QueuedMessage;
use mimi_ds_postgres::{ds, qs, PostgresDsStorage, PostgresQsStorage};
use support::{block_on, TestDatabase};
use tokio_postgres::{Client, GenericClient, IsolationLevel, Transaction};

const NOW: u64 = START_MS;

fn create(group_id: &[u8]) -> WriteSet {
    WriteSet {
        group_id: group_id.to_vec(),
        guard: VersionGuard::Absent,
        records: vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
        replay_mark: None,
        now_ms: NOW,
        fanout: Vec::new(),
    }
}

/// The next state of a group at `version`, with a fanout (so an applied write leaves an
/// outbox row to count).
fn update(group_id: &[u8], version: u64, roster: u8) -> WriteSet {
    WriteSet {
        group_id: group_id.to_vec(),
        guard: VersionGuard::Exactly(version),
        records: vec![RecordWrite::Put(RecordKind::Roster, vec![roster])],
        replay_mark: None,
        now_ms: NOW,
        fanout: vec![fanout(
            group_id,
            "a.example",
            u64::from(roster),
            &sample_message(),
        )],
    }
}

fn create_queue(queue_id: &[u8]) -> QsWriteSet {
    QsWriteSet {
        changes: vec![QsChange::CreateQueue {
            queue_id: queue_id.to_vec(),
            record: QueueRecord {
                owner_key: [queue_id, b"-owner"].concat(),
                ..QueueRecord::default()
            },
        }],
        now_ms: NOW,
    }
}

/// A delivery of message `sequence_number` into the queue; `mark` tells deliveries apart.
fn enqueue(queue_id: &[u8], sequence_number: u64, mark: u8) -> QsWriteSet {
    QsWriteSet {
        changes: vec![QsChange::Enqueue {
            queue_id: queue_id.to_vec(),
            message: QueuedMessage {
                sequence_number,
                received_ms: NOW,
                sender_domain: b"hub.example".to_vec().into(),
                message: fanout(b"g", "q.example", u64::from(mark), &sample_message())
                    .request
                    .message,
            },
            mark: DeliveryMark {
                hash: vec![mark; 32],
                expires_at_ms: NOW + 1_000,
            },
        }],
        now_ms: NOW,
    }
}

/// A connection whose transactions run at SERIALIZABLE unless told otherwise, as on
/// CockroachDB: the backend's own write transactions then abort a lost race with 40001.
async fn serializable_connection(database: &TestDatabase) -> Client {
    let mut config = database.config().clone();
    let options = format!(
        "{} -c default_transaction_isolation=serializable",
        config.get_options().unwrap_or_default()
    );
    config.options(options);
    support::connect(&config).await
}

async fn serializable(client: &mut Client) -> Transaction<'_> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await
        .unwrap()
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits (at most 20 s) until the server session `pid` waits for a lock another transaction
/// holds.
async fn until_waiting_for_a_lock(monitor: &Client, pid: i32) {
    for _ in 0..2_000 {
        let row = monitor
            .query_one(
                "SELECT coalesce(wait_event_type, '') FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap();
        if row.get::<_, String>(0) == "Lock" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session {pid} never waited for the row lock");
}

async fn group_version<G: GenericClient + Sync>(client: &G, group_id: &[u8]) -> Option<u64> {
    ds::read(client, group_id, &[])
        .await
        .unwrap()
        .map(|g| g.version)
}

async fn roster(client: &Client, group_id: &[u8]) -> Vec<u8> {
    let snapshot = ds::read(client, group_id, &[RecordKind::Roster])
        .await
        .unwrap()
        .expect("the group exists");
    snapshot.records[0].1.clone()
}

async fn outbox_rows(client: &Client) -> usize {
    ds::pending(client, u64::MAX, usize::MAX)
        .await
        .unwrap()
        .len()
}

/// Two vendor transactions at SERIALIZABLE read the same group version, and both write the
/// next version through `ds::write_in`. The second's guard `UPDATE` finds the row changed by
/// a transaction that committed after its snapshot: PostgreSQL aborts the statement with
/// 40001. `write_in` reports `Conflict` (not `Error::Postgres`), rolls back its savepoint,
/// and the vendor's transaction stays usable; nothing of the loser's write is stored.
#[test]
fn a_serialization_failure_in_the_vendors_transaction_is_a_ds_conflict() {
    let database = TestDatabase::new();
    block_on(async {
        let mut setup = PostgresDsStorage::new(database.client().await);
        assert_eq!(
            setup.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        let (mut first, mut second) = (database.client().await, database.client().await);
        let mut winner = serializable(&mut first).await;
        let mut loser = serializable(&mut second).await;
        // Both snapshots see version 1.
        assert_eq!(group_version(&winner, b"g").await, Some(1));
        assert_eq!(group_version(&loser, b"g").await, Some(1));

        assert_eq!(
            ds::write_in(&mut winner, &update(b"g", 1, 2))
                .await
                .unwrap(),
            WriteOutcome::Applied
        );
        winner.commit().await.unwrap();
        let outcome = ds::write_in(&mut loser, &update(b"g", 1, 3)).await;
        assert!(
            matches!(outcome, Ok(WriteOutcome::Conflict)),
            "40001 is a conflict: {outcome:?}"
        );
        // The savepoint was rolled back: the vendor's transaction goes on.
        loser.batch_execute("SELECT 1").await.unwrap();
        loser.commit().await.unwrap();

        let reader = setup.client();
        assert_eq!(group_version(reader, b"g").await, Some(2));
        assert_eq!(
            roster(reader, b"g").await,
            vec![2],
            "only the winner's write"
        );
        assert_eq!(outbox_rows(reader).await, 1, "only the winner's fanout");
    });
}

/// The backend's own transaction (`PostgresDsStorage::write`) on a connection whose
/// transactions are SERIALIZABLE, as on CockroachDB: its guard `UPDATE` waits for the row
/// lock of a vendor transaction that wrote the same group; that one commits, and PostgreSQL
/// aborts the waiting `UPDATE` with 40001. The storage reports `Conflict`.
#[test]
fn a_serialization_failure_in_the_backends_transaction_is_a_ds_conflict() {
    let database = TestDatabase::new();
    block_on(async {
        let mut setup = PostgresDsStorage::new(database.client().await);
        assert_eq!(
            setup.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        let mut holder = database.client().await;
        let mut storage = PostgresDsStorage::new(serializable_connection(&database).await);
        let pid = backend_pid(storage.client()).await;

        let mut held = holder.transaction().await.unwrap();
        assert_eq!(
            ds::write_in(&mut held, &update(b"g", 1, 2)).await.unwrap(),
            WriteOutcome::Applied
        );
        let losing = update(b"g", 1, 3);
        let (outcome, ()) = tokio::join!(storage.write(&losing), async {
            until_waiting_for_a_lock(setup.client(), pid).await;
            held.commit().await.unwrap();
        });
        assert!(
            matches!(outcome, Ok(WriteOutcome::Conflict)),
            "40001 is a conflict: {outcome:?}"
        );
        let reader = setup.client();
        assert_eq!(group_version(reader, b"g").await, Some(2));
        assert_eq!(roster(reader, b"g").await, vec![2]);
        assert_eq!(outbox_rows(reader).await, 1);
        // The connection is usable: the retry the step API makes, on the new version, applies.
        assert_eq!(
            storage.write(&update(b"g", 2, 3)).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(roster(reader, b"g").await, vec![3]);
    });
}

/// Makes every transaction that inserts into `table` wait inside its `COMMIT` (a deferred
/// trigger, run before PostgreSQL's commit-time serialization check) until the advisory lock
/// returned is released; `client` holds it now.
async fn pause_commits_inserting_into(client: &Client, table: &str) -> i64 {
    // A key no other test takes: this schema's OID.
    let lock: i64 = client
        .query_one(
            "SELECT oid::bigint FROM pg_namespace WHERE nspname = current_schema()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "CREATE FUNCTION pause_at_commit() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM pg_advisory_xact_lock_shared({lock}); RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER pause_at_commit AFTER INSERT ON {table}
                 DEFERRABLE INITIALLY DEFERRED
                 FOR EACH ROW EXECUTE FUNCTION pause_at_commit();"
        ))
        .await
        .unwrap();
    client
        .query("SELECT pg_advisory_lock($1)", &[&lock])
        .await
        .unwrap();
    lock
}

/// A SERIALIZABLE backend transaction aborted at its `COMMIT` (SSI's "identification as a
/// pivot, during commit attempt", and how CockroachDB often reports a lost race): a vendor's
/// SERIALIZABLE transaction read the group and stored an (expired) replay mark; the backend's
/// write of the group then scans the expired marks, meeting that uncommitted row. Each
/// transaction missed the other's write: no serial order explains both. The backend's
/// transaction is held inside its `COMMIT` (a deferred trigger on the outbox waits on an
/// advisory lock) while the vendor's commits first; its `COMMIT` then fails with 40001, and
/// the storage reports `Conflict`.
#[test]
fn a_serialization_failure_at_commit_is_a_ds_conflict() {
    let database = TestDatabase::new();
    block_on(async {
        let mut setup = PostgresDsStorage::new(database.client().await);
        assert_eq!(
            setup.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        let lock = pause_commits_inserting_into(setup.client(), "mimi_ds_outbox").await;

        let mut vendor_connection = database.client().await;
        let vendor = serializable(&mut vendor_connection).await;
        assert_eq!(group_version(&vendor, b"g").await, Some(1));
        vendor
            .batch_execute(
                "INSERT INTO mimi_ds_replay (group_hash, key_hash, request_hash, expires_at_ms)
                 VALUES (sha256('other'), sha256('key'), '\\x00', 0)",
            )
            .await
            .unwrap();

        let mut storage = PostgresDsStorage::new(serializable_connection(&database).await);
        let pid = backend_pid(storage.client()).await;
        let losing = update(b"g", 1, 2);
        let (outcome, ()) = tokio::join!(storage.write(&losing), async {
            until_waiting_for_a_lock(setup.client(), pid).await;
            vendor.commit().await.unwrap();
            setup
                .client()
                .query("SELECT pg_advisory_unlock($1)", &[&lock])
                .await
                .unwrap();
        });
        assert!(
            matches!(outcome, Ok(WriteOutcome::Conflict)),
            "40001 at COMMIT is a conflict: {outcome:?}"
        );
        let reader = setup.client();
        assert_eq!(
            group_version(reader, b"g").await,
            Some(1),
            "nothing of it committed"
        );
        assert_eq!(outbox_rows(reader).await, 0);
    });
}

/// Writes through `write_in` and commits, or gives up the whole transaction on anything else
/// (as a vendor does before it retries the request).
async fn write_or_give_up(
    mut tx: Transaction<'_>,
    write_set: WriteSet,
) -> Result<WriteOutcome, mimi_ds_postgres::Error> {
    let outcome = ds::write_in(&mut tx, &write_set).await;
    match outcome {
        Ok(WriteOutcome::Applied) => tx.commit().await.unwrap(),
        _ => tx.rollback().await.unwrap(),
    }
    outcome
}

/// Two vendor transactions each hold one group's row and then write the other's: PostgreSQL
/// finds the deadlock (after `deadlock_timeout`, 1 s by default) and aborts one of the
/// waiting statements with 40P01. That `write_in` reports `Conflict`; its vendor rolls back,
/// and the other transaction's write then applies.
#[test]
fn a_deadlock_between_vendor_transactions_is_a_ds_conflict() {
    let database = TestDatabase::new();
    block_on(async {
        let mut setup = PostgresDsStorage::new(database.client().await);
        for group in [&b"g1"[..], b"g2"] {
            assert_eq!(
                setup.write(&create(group)).await.unwrap(),
                WriteOutcome::Applied
            );
        }
        let (mut first, mut second) = (database.client().await, database.client().await);
        let mut one = first.transaction().await.unwrap();
        let mut two = second.transaction().await.unwrap();
        assert_eq!(
            ds::write_in(&mut one, &update(b"g1", 1, 2)).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            ds::write_in(&mut two, &update(b"g2", 1, 2)).await.unwrap(),
            WriteOutcome::Applied
        );
        // Each now writes the group the other holds.
        let (one, two) = tokio::join!(
            write_or_give_up(one, update(b"g2", 1, 3)),
            write_or_give_up(two, update(b"g1", 1, 3))
        );
        let outcomes = [one, two];
        let conflicted = outcomes
            .iter()
            .position(|o| matches!(o, Ok(WriteOutcome::Conflict)))
            .unwrap_or_else(|| panic!("the deadlock victim's write is a conflict: {outcomes:?}"));
        let survivor = 1 - conflicted;
        assert!(
            matches!(outcomes[survivor], Ok(WriteOutcome::Applied)),
            "the other write applies once the victim rolled back: {outcomes:?}"
        );
        let reader = setup.client();
        // The survivor wrote both groups; the victim's first write went with its rollback.
        for group in [&b"g1"[..], b"g2"] {
            assert_eq!(group_version(reader, group).await, Some(2));
        }
        assert_eq!(outbox_rows(reader).await, 2);
    });
}

async fn next_sequence<G: GenericClient + Sync>(client: &G, queue_id: &[u8]) -> u64 {
    qs::queue(client, queue_id)
        .await
        .unwrap()
        .expect("the queue exists")
        .next_sequence
}

/// The QS the same way: two SERIALIZABLE vendor transactions deliver message 0 into one
/// queue through `qs::write_in`; the second's sequence guard finds the queue row changed
/// after its snapshot (40001) and reports `Conflict`, so the QS reads the queue again and
/// numbers the message 1. Only the winner's message and mark are stored.
#[test]
fn a_serialization_failure_in_the_vendors_transaction_is_a_qs_conflict() {
    let database = TestDatabase::new();
    block_on(async {
        let mut setup = PostgresQsStorage::new(database.client().await);
        assert_eq!(
            setup.write(&create_queue(b"q")).await.unwrap(),
            QsWriteOutcome::Applied
        );
        let (mut first, mut second) = (database.client().await, database.client().await);
        let mut winner = serializable(&mut first).await;
        let mut loser = serializable(&mut second).await;
        assert_eq!(next_sequence(&winner, b"q").await, 0);
        assert_eq!(next_sequence(&loser, b"q").await, 0);

        assert_eq!(
            qs::write_in(&mut winner, &enqueue(b"q", 0, 1))
                .await
                .unwrap(),
            QsWriteOutcome::Applied
        );
        winner.commit().await.unwrap();
        let outcome = qs::write_in(&mut loser, &enqueue(b"q", 0, 2)).await;
        assert!(
            matches!(outcome, Ok(QsWriteOutcome::Conflict)),
            "40001 is a conflict: {outcome:?}"
        );
        loser.batch_execute("SELECT 1").await.unwrap();
        loser.commit().await.unwrap();

        assert_eq!(next_sequence(setup.client(), b"q").await, 1);
        assert!(setup.has_mark(b"q", &[1; 32], NOW).await.unwrap());
        assert!(!setup.has_mark(b"q", &[2; 32], NOW).await.unwrap());
        assert_eq!(
            setup.messages(b"q", 0, 10, usize::MAX).await.unwrap().len(),
            1
        );
    });
}

/// The QS's own transaction on a SERIALIZABLE connection: its enqueue waits for the queue row
/// a vendor transaction holds, which then commits; 40001 is reported as `Conflict`, and the
/// retry with the next sequence number applies.
#[test]
fn a_serialization_failure_in_the_backends_transaction_is_a_qs_conflict() {
    let database = TestDatabase::new();
    block_on(async {
        let mut setup = PostgresQsStorage::new(database.client().await);
        assert_eq!(
            setup.write(&create_queue(b"q")).await.unwrap(),
            QsWriteOutcome::Applied
        );
        let mut holder = database.client().await;
        let mut storage = PostgresQsStorage::new(serializable_connection(&database).await);
        let pid = backend_pid(storage.client()).await;

        let mut held = holder.transaction().await.unwrap();
        assert_eq!(
            qs::write_in(&mut held, &enqueue(b"q", 0, 1)).await.unwrap(),
            QsWriteOutcome::Applied
        );
        let losing = enqueue(b"q", 0, 2);
        let (outcome, ()) = tokio::join!(storage.write(&losing), async {
            until_waiting_for_a_lock(setup.client(), pid).await;
            held.commit().await.unwrap();
        });
        assert!(
            matches!(outcome, Ok(QsWriteOutcome::Conflict)),
            "40001 is a conflict: {outcome:?}"
        );
        assert_eq!(next_sequence(setup.client(), b"q").await, 1);
        assert!(!setup.has_mark(b"q", &[2; 32], NOW).await.unwrap());
        assert_eq!(
            storage.write(&enqueue(b"q", 1, 2)).await.unwrap(),
            QsWriteOutcome::Applied
        );
        assert_eq!(
            setup.messages(b"q", 0, 10, usize::MAX).await.unwrap().len(),
            2
        );
    });
}

/// The QS the same way: a vendor's SERIALIZABLE transaction read queue `q` and stored an
/// expired delivery mark in another queue; the backend's enqueue into `q` then scans the
/// expired marks, meeting that uncommitted row. Held inside its `COMMIT` while the vendor's
/// commits, its `COMMIT` fails with 40001, reported as `Conflict`.
#[test]
fn a_serialization_failure_at_commit_is_a_qs_conflict() {
    let database = TestDatabase::new();
    block_on(async {
        let mut setup = PostgresQsStorage::new(database.client().await);
        for queue in [&b"q"[..], b"other"] {
            assert_eq!(
                setup.write(&create_queue(queue)).await.unwrap(),
                QsWriteOutcome::Applied
            );
        }
        let lock = pause_commits_inserting_into(setup.client(), "mimi_qs_message").await;

        let mut vendor_connection = database.client().await;
        let vendor = serializable(&mut vendor_connection).await;
        assert_eq!(next_sequence(&vendor, b"q").await, 0);
        vendor
            .batch_execute(
                "INSERT INTO mimi_qs_mark (queue_hash, mark_hash, expires_at_ms)
                 VALUES (sha256('other'), sha256('mark'), 0)",
            )
            .await
            .unwrap();

        let mut storage = PostgresQsStorage::new(serializable_connection(&database).await);
        let pid = backend_pid(storage.client()).await;
        let losing = enqueue(b"q", 0, 1);
        let (outcome, ()) = tokio::join!(storage.write(&losing), async {
            until_waiting_for_a_lock(setup.client(), pid).await;
            vendor.commit().await.unwrap();
            setup
                .client()
                .query("SELECT pg_advisory_unlock($1)", &[&lock])
                .await
                .unwrap();
        });
        assert!(
            matches!(outcome, Ok(QsWriteOutcome::Conflict)),
            "40001 at COMMIT is a conflict: {outcome:?}"
        );
        assert_eq!(
            next_sequence(setup.client(), b"q").await,
            0,
            "nothing of it committed"
        );
        assert!(!setup.has_mark(b"q", &[1; 32], NOW).await.unwrap());
    });
}
