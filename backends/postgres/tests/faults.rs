//! Faults and bad stored data on PostgreSQL (issue 12, "Bad input and faults"): a database
//! error is `Err` with nothing partial, an oversized value is a clear error, corrupt stored
//! data is an error naming the group (or queue, or outbox entry), never a panic or a reset.
//! Also the vendor's own transaction, the pool, and migrations.

mod support;

use std::sync::Arc;

use mimi_ds::qs::{
    AsyncQsStorage, DeliveryMark, QsChange, QsWriteOutcome, QsWriteSet, QueueRecord,
};
use mimi_ds::storage::{
    AsyncDsOutbox, AsyncDsStorage, DsOutbox, RecordKind, RecordWrite, ReplayMark, VersionGuard,
    WriteOutcome, WriteSet,
};
use mimi_ds::testing::conformance::{fanout, sample_message};
use mimi_ds::testing::{decode_response, ds_identity, TestClient, START_MS};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, QueuedMessage,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{
    BasicCredentialValidator, DeliveryService, DsConfig, ProcessError, Status, UnixTimeMs,
};
use mimi_ds_postgres::{
    ds, migrate, qs, Error, PostgresDsStorage, PostgresQsStorage, SCHEMA_VERSION,
};
use support::{block_on, TestDatabase};

const NOW: u64 = START_MS;

fn create(group_id: &[u8]) -> WriteSet {
    WriteSet {
        group_id: group_id.to_vec(),
        guard: VersionGuard::Absent,
        records: vec![RecordWrite::Put(RecordKind::Roster, vec![1, 2, 3])],
        replay_mark: None,
        now_ms: NOW,
        fanout: Vec::new(),
    }
}

/// A full write set on version 1: two records, a replay mark and a fanout.
fn update(group_id: &[u8]) -> WriteSet {
    WriteSet {
        group_id: group_id.to_vec(),
        guard: VersionGuard::Exactly(1),
        records: vec![
            RecordWrite::Put(RecordKind::Roster, vec![4]),
            RecordWrite::Put(RecordKind::Sequencer, vec![5]),
        ],
        replay_mark: Some((
            b"key".to_vec(),
            ReplayMark {
                request_hash: vec![7; 32],
                expires_at_ms: NOW + 1_000,
                response: None,
            },
        )),
        now_ms: NOW,
        fanout: vec![fanout(group_id, "a.example", 1, &sample_message())],
    }
}

async fn ds_storage(database: &TestDatabase) -> PostgresDsStorage {
    PostgresDsStorage::new(database.client().await)
}

async fn qs_storage(database: &TestDatabase) -> PostgresQsStorage {
    PostgresQsStorage::new(database.client().await)
}

/// Everything the DS side shows of one group.
async fn visible(storage: &PostgresDsStorage, group_id: &[u8]) -> impl PartialEq + std::fmt::Debug {
    (
        storage
            .read(group_id, &[RecordKind::Roster, RecordKind::Sequencer])
            .await
            .unwrap(),
        storage.replay_mark(group_id, b"key", NOW).await.unwrap(),
        storage.pending(u64::MAX, usize::MAX).await.unwrap(),
    )
}

/// Makes every insert into `table` fail, as a full disk or a dropped connection would.
async fn fail_inserts(storage: &PostgresDsStorage, table: &str) {
    storage
        .client()
        .batch_execute(&format!(
            "CREATE FUNCTION fail_{table}() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'injected failure on {table}'; END $$;
             CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}
                 FOR EACH ROW EXECUTE FUNCTION fail_{table}();"
        ))
        .await
        .unwrap();
}

async fn heal(storage: &PostgresDsStorage, table: &str) {
    storage
        .client()
        .batch_execute(&format!(
            "DROP TRIGGER fail_{table} ON {table}; DROP FUNCTION fail_{table}();"
        ))
        .await
        .unwrap();
}

fn expect_injected<T: std::fmt::Debug>(result: Result<T, Error>, table: &str) {
    match result {
        Err(e @ Error::Postgres(_)) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("injected failure on {table}")),
                "{text}"
            );
        }
        other => panic!("a database error is Err(Postgres): {other:?}"),
    }
}

/// A database error in the middle of a write (the record insert, then the outbox insert, the
/// last step) rolls the whole write back: no version bump, no record, no replay mark, no
/// outbox entry. The connection stays usable, and the same write applies once the fault is
/// gone.
#[test]
fn a_database_error_mid_write_leaves_nothing_behind() {
    let database = TestDatabase::new();
    block_on(async {
        let mut storage = ds_storage(&database).await;
        assert_eq!(
            storage.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        for table in ["mimi_ds_record", "mimi_ds_outbox"] {
            fail_inserts(&storage, table).await;
            let before = visible(&storage, b"g").await;
            expect_injected(storage.write(&update(b"g")).await, table);
            assert_eq!(
                visible(&storage, b"g").await,
                before,
                "nothing partial ({table})"
            );
            heal(&storage, table).await;
        }
        assert_eq!(
            storage.write(&update(b"g")).await.unwrap(),
            WriteOutcome::Applied,
            "the same write applies once the fault is gone"
        );
        assert_eq!(storage.outbox_len().await.unwrap(), 1);
    });
}

fn queued(sequence_number: u64) -> QueuedMessage {
    QueuedMessage {
        sequence_number,
        received_ms: NOW,
        sender_domain: b"hub.example".to_vec().into(),
        message: fanout(b"g", "q.example", sequence_number, &sample_message())
            .request
            .message,
    }
}

fn create_queue(queue_id: &[u8]) -> QsChange {
    QsChange::CreateQueue {
        queue_id: queue_id.to_vec(),
        record: QueueRecord {
            owner_key: [queue_id, b"-owner"].concat(),
            ..QueueRecord::default()
        },
    }
}

fn enqueue(queue_id: &[u8], sequence_number: u64) -> QsChange {
    QsChange::Enqueue {
        queue_id: queue_id.to_vec(),
        message: queued(sequence_number),
        mark: DeliveryMark {
            hash: vec![1; 32],
            expires_at_ms: NOW + 10,
        },
    }
}

fn writes(changes: Vec<QsChange>) -> QsWriteSet {
    QsWriteSet {
        changes,
        now_ms: NOW,
    }
}

/// The same for the QS: a failing message insert rolls back the sequence number and the mark.
#[test]
fn a_database_error_mid_queue_write_leaves_nothing_behind() {
    let database = TestDatabase::new();
    block_on(async {
        let mut storage = qs_storage(&database).await;
        assert_eq!(
            storage
                .write(&writes(vec![create_queue(b"q")]))
                .await
                .unwrap(),
            QsWriteOutcome::Applied
        );
        storage
            .client()
            .batch_execute(
                "CREATE FUNCTION fail_message() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'injected failure on mimi_qs_message'; END $$;
                 CREATE TRIGGER fail_message BEFORE INSERT ON mimi_qs_message
                     FOR EACH ROW EXECUTE FUNCTION fail_message();",
            )
            .await
            .unwrap();
        expect_injected(
            storage.write(&writes(vec![enqueue(b"q", 0)])).await,
            "mimi_qs_message",
        );
        assert_eq!(storage.queue(b"q").await.unwrap().unwrap().next_sequence, 0);
        assert!(!storage.has_mark(b"q", &[1; 32], NOW).await.unwrap());
        assert_eq!(storage.mark_count().await.unwrap(), 0);
    });
}

/// A value over the limit is a clear error before anything is written; so is a queued
/// message. The default limit is PostgreSQL's 1 GB per field, less room for the statement.
#[test]
fn an_oversized_value_is_a_clear_error_and_writes_nothing() {
    assert_eq!(
        mimi_ds_postgres::DEFAULT_MAX_VALUE_BYTES,
        (1 << 30) - (1 << 16)
    );
    let database = TestDatabase::new();
    block_on(async {
        let mut storage = ds_storage(&database).await.with_max_value_bytes(1 << 20);
        let mut oversized = create(b"g");
        oversized
            .records
            .push(RecordWrite::Put(RecordKind::MlsState, vec![0; 1 << 20]));
        match storage.write(&oversized).await {
            Err(e @ Error::TooLarge { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("record of 1048576 bytes for group 67")
                        && text.contains("limit of 1048576"),
                    "{text}"
                );
            }
            other => panic!("an oversized record is TooLarge: {other:?}"),
        }
        assert_eq!(
            storage.read(b"g", &[]).await.unwrap(),
            None,
            "nothing was written"
        );
        // One byte less (with the one-byte group ID beside it) fits.
        oversized.records[1] = RecordWrite::Put(RecordKind::MlsState, vec![0; (1 << 20) - 1]);
        assert_eq!(
            storage.write(&oversized).await.unwrap(),
            WriteOutcome::Applied
        );

        let mut queues = qs_storage(&database).await.with_max_value_bytes(64);
        match queues
            .write(&writes(vec![create_queue(b"q"), enqueue(b"q", 0)]))
            .await
        {
            Err(Error::TooLarge { what, owner, .. }) => {
                assert_eq!((what, owner.as_str()), ("message", "queue 71"));
            }
            other => panic!("an oversized message is TooLarge: {other:?}"),
        }
        assert_eq!(
            queues.queue(b"q").await.unwrap(),
            None,
            "not even the queue"
        );
    });
}

fn corrupt_group_error<T: std::fmt::Debug>(result: Result<T, Error>, group_hex: &str) {
    match result {
        Err(Error::CorruptGroup { group, detail }) => {
            assert_eq!(group, group_hex, "the error names the group ({detail})");
        }
        other => panic!("corrupt stored data is CorruptGroup: {other:?}"),
    }
}

/// Corrupt rows (a negative version, an unknown record kind, a value column that is no longer
/// bytes) are errors naming the group; the group is not reset, a guarded write does not
/// overwrite it, and the row is still there for inspection.
#[test]
fn corrupt_group_rows_are_errors_naming_the_group() {
    let database = TestDatabase::new();
    block_on(async {
        let mut storage = ds_storage(&database).await;
        assert_eq!(
            storage.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        // A second connection, as an operator's psql would be.
        let operator = database.client().await;
        let sql = |s: &'static str| {
            let operator = &operator;
            async move { operator.batch_execute(s).await.unwrap() }
        };
        sql("UPDATE mimi_ds_group SET version = -3").await;
        corrupt_group_error(storage.read(b"g", &[]).await, "67");
        assert_eq!(
            storage.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Conflict,
            "the group is not recreated over its corrupt row"
        );
        assert_eq!(
            storage.write(&update(b"g")).await.unwrap(),
            WriteOutcome::Conflict
        );

        sql("UPDATE mimi_ds_group SET version = 1").await;
        sql("ALTER TABLE mimi_ds_record ALTER COLUMN value TYPE text USING 'text'").await;
        corrupt_group_error(storage.read(b"g", &[RecordKind::Roster]).await, "67");
        let text: String = storage
            .client()
            .query_one("SELECT value FROM mimi_ds_record", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            text, "text",
            "the corrupt row is still there for inspection"
        );
    });
}

/// Through the DS with real clients: a roster of bytes that do not decode makes `process` fail
/// with an internal error naming the group; a roster that is not bytes, with a storage error
/// naming it. No panic, no answer built from a reset group, nothing written.
#[test]
fn a_corrupt_group_fails_the_request_with_an_error_and_writes_nothing() {
    let config = DsConfig::new("hub.example");
    let (identity, external_sender) = ds_identity(&config.domain);
    let ds = DeliveryService::new(config, identity, openmls_rust_crypto::RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    let database = TestDatabase::new();
    let mut storage = database.ds();
    let now = UnixTimeMs(NOW);
    let request = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap();
    let out = ds.process(now, &request, &mut storage).unwrap();
    let DsResponseBody::GroupId(group_id) = decode_response(&out.response).body else {
        panic!("no group ID");
    };
    let group_id = group_id.as_slice().to_vec();
    let mut alice = TestClient::new("alice", "a1", "alice.example");
    alice.create_group(&group_id, &external_sender);
    let out = ds
        .process(now, &alice.create_group_request(NOW), &mut storage)
        .unwrap();
    assert_eq!(out.status, Status::Accepted);
    let outbox_before = storage.pending(u64::MAX, usize::MAX).unwrap();
    let operator = block_on(database.client());
    let sql = |s: &str| block_on(operator.batch_execute(s)).unwrap();
    let version = || {
        block_on(operator.query_one("SELECT version FROM mimi_ds_group", &[]))
            .unwrap()
            .get::<_, i64>(0)
    };
    let version_before = version();

    let hex: String = group_id
        .iter()
        .take(32)
        .map(|b| format!("{b:02x}"))
        .collect();
    sql("UPDATE mimi_ds_record SET value = '\\x00ff'::bytea WHERE kind = 2");
    match ds.process(now, &alice.message_request(b"hi", NOW), &mut storage) {
        Err(ProcessError::Internal(detail)) => assert!(
            detail.contains("Roster") && detail.contains(&format!("group {}", &hex[..16])),
            "the internal error names the record and the group: {detail}"
        ),
        other => panic!("a roster that does not decode is an internal error: {other:?}"),
    }

    sql("ALTER TABLE mimi_ds_record ALTER COLUMN value TYPE text USING 'not bytes'");
    match ds.process(now, &alice.message_request(b"hi", NOW), &mut storage) {
        Err(ProcessError::Storage(Error::CorruptGroup { group, .. })) => {
            assert!(
                hex.starts_with(group.trim_end_matches('.')),
                "{group} names {hex}"
            );
        }
        other => panic!("a roster that is not bytes is a storage error: {other:?}"),
    }
    assert_eq!(
        storage.pending(u64::MAX, usize::MAX).unwrap(),
        outbox_before
    );
    assert_eq!(version(), version_before, "nothing written");
}

/// A corrupt outbox row: an undecodable request is an error naming the entry and its group;
/// a negative time makes `pending` fail naming the entry, which can still be removed.
#[test]
fn corrupt_outbox_rows_are_errors_naming_the_entry() {
    let database = TestDatabase::new();
    block_on(async {
        let mut storage = ds_storage(&database).await;
        assert_eq!(
            storage.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            storage.write(&update(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        let id = storage.pending(NOW, 1).await.unwrap()[0].id;
        // A second connection, as an operator's psql would be.
        let operator = database.client().await;
        let sql = |s: &'static str| {
            let operator = &operator;
            async move { operator.batch_execute(s).await.unwrap() }
        };
        sql("UPDATE mimi_ds_outbox SET request = '\\x0001'::bytea").await;
        let entry = &storage.pending(NOW, 1).await.unwrap()[0];
        let error = entry.fanout().expect_err("the request does not decode");
        assert_eq!((error.id, error.group_id.as_slice()), (id, &b"g"[..]));
        assert!(error
            .to_string()
            .contains(&format!("outbox entry {id} of group 67")));

        sql("UPDATE mimi_ds_outbox SET created_at_ms = -1").await;
        match storage.pending(NOW, 1).await {
            Err(Error::CorruptOutbox { id: named, .. }) => assert_eq!(named as u64, id),
            other => panic!("a negative time is CorruptOutbox: {other:?}"),
        }
        assert!(
            storage.mark_delivered(id).await.unwrap(),
            "a corrupt entry can still be removed"
        );
    });
}

/// A corrupt queued message is an error naming the queue.
#[test]
fn a_corrupt_queued_message_is_an_error_naming_the_queue() {
    let database = TestDatabase::new();
    block_on(async {
        let mut storage = qs_storage(&database).await;
        assert_eq!(
            storage
                .write(&writes(vec![create_queue(b"q"), enqueue(b"q", 0)]))
                .await
                .unwrap(),
            QsWriteOutcome::Applied
        );
        storage
            .client()
            .batch_execute("UPDATE mimi_qs_message SET message = '\\x00'::bytea")
            .await
            .unwrap();
        match storage.messages(b"q", 0, 10, usize::MAX).await {
            Err(Error::CorruptQueue { queue, .. }) => assert_eq!(queue, "71"),
            other => panic!("a corrupt message is CorruptQueue: {other:?}"),
        }
    });
}

async fn audit_notes(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM vendor_audit", &[])
        .await
        .unwrap()
        .get(0)
}

/// In the vendor's own transaction, `ds::write_in` is a savepoint: its rows commit or roll
/// back with the vendor's. A rolled-back vendor transaction leaves nothing of ours (no group,
/// no record, no replay mark, no outbox entry); a conflict or a database error rolls back only
/// the savepoint, and the vendor's transaction goes on.
#[test]
fn a_write_inside_the_vendors_transaction_commits_and_rolls_back_with_it() {
    let database = TestDatabase::new();
    block_on(async {
        let mut client = database.client().await;
        client
            .batch_execute("CREATE TABLE vendor_audit (note text)")
            .await
            .unwrap();
        let mut full = create(b"g");
        full.replay_mark = update(b"g").replay_mark;
        full.fanout = update(b"g").fanout;

        let mut tx = client.transaction().await.unwrap();
        tx.batch_execute("INSERT INTO vendor_audit VALUES ('created g')")
            .await
            .unwrap();
        assert_eq!(
            ds::write_in(&mut tx, &full).await.unwrap(),
            WriteOutcome::Applied
        );
        assert!(
            ds::read(&tx, b"g", &[RecordKind::Roster])
                .await
                .unwrap()
                .is_some(),
            "the transaction sees its own write"
        );
        tx.rollback().await.unwrap();
        assert_eq!(
            ds::read(&client, b"g", &[]).await.unwrap(),
            None,
            "rolled back with it"
        );
        assert_eq!(
            ds::replay_mark(&client, b"g", b"key", NOW).await.unwrap(),
            None
        );
        assert_eq!(
            ds::pending(&client, u64::MAX, usize::MAX).await.unwrap(),
            Vec::new()
        );
        assert_eq!(audit_notes(&client).await, 0);

        let mut tx = client.transaction().await.unwrap();
        assert_eq!(
            ds::write_in(&mut tx, &full).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            ds::write_in(&mut tx, &create(b"g")).await.unwrap(),
            WriteOutcome::Conflict,
            "a conflict rolls back only its own savepoint"
        );
        // A database error inside our write: the vendor's transaction is not aborted.
        tx.batch_execute(
            "CREATE FUNCTION fail_record() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'injected failure on mimi_ds_record'; END $$;
             CREATE TRIGGER fail_record BEFORE INSERT ON mimi_ds_record
                 FOR EACH ROW EXECUTE FUNCTION fail_record();",
        )
        .await
        .unwrap();
        let mut update_without_mark = update(b"g");
        update_without_mark.replay_mark = None;
        expect_injected(
            ds::write_in(&mut tx, &update_without_mark).await,
            "mimi_ds_record",
        );
        tx.batch_execute(
            "DROP TRIGGER fail_record ON mimi_ds_record;
             INSERT INTO vendor_audit VALUES ('created g')",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            ds::read(&client, b"g", &[])
                .await
                .unwrap()
                .map(|g| g.version),
            Some(1),
            "committed with the vendor's row; the failed update left nothing"
        );
        assert_eq!(
            ds::pending(&client, u64::MAX, usize::MAX)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(audit_notes(&client).await, 1);

        // The QS the same way.
        let mut tx = client.transaction().await.unwrap();
        let create_and_fill = writes(vec![create_queue(b"q"), enqueue(b"q", 0)]);
        assert_eq!(
            qs::write_in(&mut tx, &create_and_fill).await.unwrap(),
            QsWriteOutcome::Applied
        );
        assert!(qs::queue(&tx, b"q").await.unwrap().is_some());
        tx.rollback().await.unwrap();
        assert_eq!(qs::queue(&client, b"q").await.unwrap(), None);
        assert!(!qs::has_mark(&client, b"q", &[1; 32], NOW).await.unwrap());

        let mut tx = client.transaction().await.unwrap();
        assert_eq!(
            qs::write_in(&mut tx, &create_and_fill).await.unwrap(),
            QsWriteOutcome::Applied
        );
        assert_eq!(
            qs::write_in(&mut tx, &writes(vec![create_queue(b"q")]))
                .await
                .unwrap(),
            QsWriteOutcome::Conflict
        );
        tx.commit().await.unwrap();
        assert_eq!(
            qs::messages(&client, b"q", 0, 10, usize::MAX)
                .await
                .unwrap()
                .len(),
            1
        );

        // The storage also borrows the vendor's connection between transactions.
        let mut borrowed = PostgresDsStorage::new(&mut client);
        let mut next = update(b"g");
        next.replay_mark = None;
        assert_eq!(borrowed.write(&next).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(audit_notes(&client).await, 1);
    });
}

/// Migrations are recorded, idempotent, safe to run concurrently, and a schema migrated by a
/// newer version is refused.
#[test]
fn migrations_are_idempotent_concurrent_and_refuse_a_newer_schema() {
    let database = TestDatabase::empty();
    block_on(async {
        let clients: Vec<_> = connections(&database, 8).await;
        // All started before any is awaited.
        let runs: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                tokio::spawn(async move { migrate(&mut client).await.map(|()| client) })
            })
            .collect();
        let mut last = None;
        for run in runs {
            last = Some(run.await.unwrap().expect("a concurrent migration succeeds"));
        }
        let mut client = last.unwrap();
        let versions: i64 = client
            .query_one("SELECT count(*) FROM mimi_ds_postgres_schema", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions, SCHEMA_VERSION);
        client
            .execute(
                "INSERT INTO mimi_ds_postgres_schema (version) VALUES ($1)",
                &[&(SCHEMA_VERSION + 1)],
            )
            .await
            .unwrap();
        assert!(matches!(
            migrate(&mut client).await,
            Err(Error::SchemaTooNew { found, .. }) if found == SCHEMA_VERSION + 1
        ));
        // The refused migration ended its transaction (and released its lock): another one on a
        // second connection is not blocked, and is refused too.
        let mut second = database.client().await;
        let again = tokio::time::timeout(std::time::Duration::from_secs(20), migrate(&mut second));
        assert!(matches!(
            again.await.expect("not blocked by the refused migration"),
            Err(Error::SchemaTooNew { .. })
        ));
        assert!(
            client.simple_query("SELECT 1").await.is_ok(),
            "the connection is usable"
        );
    });
}

async fn connections(database: &Arc<TestDatabase>, count: usize) -> Vec<tokio_postgres::Client> {
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(database.client().await);
    }
    clients
}

/// With the feature `pool`: handles from a deadpool pool, one per request.
#[cfg(feature = "pool")]
#[test]
fn pooled_connections_are_storage_handles() {
    let database = TestDatabase::new();
    block_on(async {
        let manager =
            deadpool_postgres::Manager::new(database.config().clone(), tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(2)
            .build()
            .unwrap();
        let mut first = PostgresDsStorage::new(pool.get().await.unwrap());
        assert_eq!(
            first.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        drop(first);
        let second = PostgresDsStorage::new(pool.get().await.unwrap());
        assert_eq!(
            second.read(b"g", &[]).await.unwrap().map(|g| g.version),
            Some(1)
        );
    });
}

/// Expiry in the write is bounded: one write deletes at most `EXPIRE_PER_WRITE` expired replay
/// marks (and delivery marks), the next writes drain the rest, and live marks stay.
#[test]
fn expiry_per_write_is_bounded_and_drains_over_writes() {
    let per_write = i64::from(mimi_ds_postgres::EXPIRE_PER_WRITE);
    let database = TestDatabase::new();
    block_on(async {
        let mut storage = ds_storage(&database).await;
        let mut queues = qs_storage(&database).await;
        assert_eq!(
            queues
                .write(&writes(vec![create_queue(b"q")]))
                .await
                .unwrap(),
            QsWriteOutcome::Applied
        );
        // A backlog after downtime: expired marks, and one live mark of each kind.
        storage
            .client()
            .batch_execute(&format!(
                "INSERT INTO mimi_ds_replay (group_hash, key_hash, request_hash, expires_at_ms)
                     SELECT sha256('g'), sha256(int8send(n)), '\\x00', {expired}
                     FROM generate_series(1, {backlog}) AS n;
                 INSERT INTO mimi_ds_replay (group_hash, key_hash, request_hash, expires_at_ms)
                     VALUES (sha256('g'), sha256('live'), '\\x00', {live});
                 INSERT INTO mimi_qs_mark (queue_hash, mark_hash, expires_at_ms)
                     SELECT sha256('q'), sha256(int8send(n)), {expired}
                     FROM generate_series(1, {backlog}) AS n;
                 INSERT INTO mimi_qs_mark (queue_hash, mark_hash, expires_at_ms)
                     VALUES (sha256('q'), sha256('live'), {live});",
                expired = NOW - 1,
                live = NOW,
                backlog = per_write + 10,
            ))
            .await
            .unwrap();
        let operator = database.client().await;
        let count = |table: &'static str| {
            let operator = &operator;
            async move {
                operator
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };
        let backlog = per_write + 10;
        assert_eq!(count("mimi_ds_replay").await, backlog + 1);

        assert_eq!(
            storage.write(&create(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            count("mimi_ds_replay").await,
            11,
            "one write deleted EXPIRE_PER_WRITE expired marks"
        );
        assert_eq!(
            storage.write(&update(b"g")).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            count("mimi_ds_replay").await,
            2,
            "the next write drained the rest; the live mark and the write's own stay"
        );
        assert!(storage
            .replay_mark(b"g", b"live", NOW)
            .await
            .unwrap()
            .is_some());

        assert_eq!(
            queues.write(&writes(vec![enqueue(b"q", 0)])).await.unwrap(),
            QsWriteOutcome::Applied
        );
        assert_eq!(
            count("mimi_qs_mark").await,
            12,
            "bounded for delivery marks too"
        );
        assert_eq!(
            queues
                .write(&writes(vec![QsChange::Acknowledge {
                    queue_id: b"q".to_vec(),
                    up_to_sequence: 0,
                }]))
                .await
                .unwrap(),
            QsWriteOutcome::Applied
        );
        assert_eq!(
            count("mimi_qs_mark").await,
            2,
            "drained; the live marks stay"
        );
        assert!(queues.has_mark(b"q", b"live", NOW).await.unwrap());
    });
}
