//! Faults and bad stored data (issue 12, "Bad input and faults"): a database error is `Err`
//! with nothing partial, an oversized value is a clear error, corrupt stored bytes are an error
//! naming the group (or queue, or outbox entry), never a panic or a reset. Also the vendor's own
//! transaction, and WAL.

use mimi_ds::qs::{DeliveryMark, QsChange, QsStorage, QsWriteSet, QueueRecord};
use mimi_ds::storage::{
    DsOutbox, DsStorage, RecordKind, RecordWrite, ReplayMark, VersionGuard, WriteOutcome, WriteSet,
};
use mimi_ds::testing::conformance::{fanout, sample_message};
use mimi_ds::testing::{decode_response, ds_identity, TestClient, START_MS};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{
    BasicCredentialValidator, DeliveryService, DsConfig, ProcessError, Status, UnixTimeMs,
};
use mimi_ds_sqlite::{enable_wal, Error, SqliteDsStorage, SqliteQsStorage};
use rusqlite::limits::Limit;
use rusqlite::Connection;

const NOW: u64 = START_MS;

fn memory() -> SqliteDsStorage {
    SqliteDsStorage::new(Connection::open_in_memory().unwrap()).unwrap()
}

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

/// A full write set on version 1: a record, a replay mark and a fanout.
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

/// Everything the DS side shows of one group.
fn visible(storage: &SqliteDsStorage, group_id: &[u8]) -> impl PartialEq + std::fmt::Debug {
    (
        storage
            .read(group_id, &[RecordKind::Roster, RecordKind::Sequencer])
            .unwrap(),
        storage.replay_mark(group_id, b"key", NOW).unwrap(),
        storage.pending(u64::MAX, usize::MAX).unwrap(),
    )
}

/// A database error in the middle of a write (here: the outbox insert, the last step, fails)
/// rolls the whole write back: no version bump, no record, no replay mark.
#[test]
fn a_database_error_mid_write_leaves_nothing_behind() {
    let mut storage = memory();
    assert_eq!(storage.write(&create(b"g")).unwrap(), WriteOutcome::Applied);
    storage
        .connection()
        .execute_batch(
            "CREATE TRIGGER fail_outbox BEFORE INSERT ON mimi_ds_outbox
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .unwrap();
    let before = visible(&storage, b"g");
    match storage.write(&update(b"g")) {
        Err(Error::Sqlite(e)) => assert!(e.to_string().contains("injected failure"), "{e}"),
        other => panic!("a database error is Err: {other:?}"),
    }
    assert_eq!(visible(&storage, b"g"), before, "nothing partial");
    assert!(
        storage.connection().is_autocommit(),
        "no transaction left open"
    );

    storage
        .connection()
        .execute_batch("DROP TRIGGER fail_outbox")
        .unwrap();
    assert_eq!(
        storage.write(&update(b"g")).unwrap(),
        WriteOutcome::Applied,
        "the same write applies once the fault is gone"
    );
}

/// The same for the QS: a failing message insert rolls back the sequence number and the mark.
#[test]
fn a_database_error_mid_queue_write_leaves_nothing_behind() {
    let mut storage = SqliteQsStorage::new(Connection::open_in_memory().unwrap()).unwrap();
    let create = QsWriteSet {
        changes: vec![QsChange::CreateQueue {
            queue_id: b"q".to_vec(),
            record: QueueRecord {
                owner_key: b"owner".to_vec(),
                ..QueueRecord::default()
            },
        }],
        now_ms: NOW,
    };
    assert!(storage.write(&create).is_ok());
    storage
        .connection()
        .execute_batch(
            "CREATE TRIGGER fail_message BEFORE INSERT ON mimi_qs_message
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .unwrap();
    let message = mimi_ds::wire::QueuedMessage {
        sequence_number: 0,
        received_ms: NOW,
        sender_domain: b"hub.example".to_vec().into(),
        message: fanout(b"g", "q.example", 0, &sample_message())
            .request
            .message,
    };
    let enqueue = QsWriteSet {
        changes: vec![QsChange::Enqueue {
            queue_id: b"q".to_vec(),
            message,
            mark: DeliveryMark {
                hash: vec![1; 32],
                expires_at_ms: NOW + 10,
            },
        }],
        now_ms: NOW,
    };
    assert!(matches!(storage.write(&enqueue), Err(Error::Sqlite(_))));
    assert_eq!(storage.queue(b"q").unwrap().unwrap().next_sequence, 0);
    assert!(!storage.has_mark(b"q", &[1; 32], NOW).unwrap());
    assert!(storage.connection().is_autocommit());
}

/// A value over the connection's length limit is a clear error before anything is written.
#[test]
fn an_oversized_value_is_a_clear_error_and_writes_nothing() {
    let mut storage = memory();
    storage
        .connection()
        .set_limit(Limit::SQLITE_LIMIT_LENGTH, 1 << 20)
        .unwrap();
    let mut oversized = create(b"g");
    oversized
        .records
        .push(RecordWrite::Put(RecordKind::MlsState, vec![0; 1 << 20]));
    match storage.write(&oversized) {
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
        storage.read(b"g", &[]).unwrap(),
        None,
        "nothing was written"
    );
}

fn corrupt_group_error(result: Result<impl std::fmt::Debug, Error>, group_hex: &str) {
    match result {
        Err(Error::CorruptGroup { group, detail }) => {
            assert_eq!(group, group_hex, "the error names the group ({detail})");
        }
        other => panic!("corrupt stored data is CorruptGroup: {other:?}"),
    }
}

/// Corrupt rows (a version that is not a version, a record that is not bytes) are errors
/// naming the group; the group is not reset and a guarded write does not overwrite it.
#[test]
fn corrupt_group_rows_are_errors_naming_the_group() {
    let mut storage = memory();
    assert_eq!(storage.write(&create(b"g")).unwrap(), WriteOutcome::Applied);
    let sql = |storage: &SqliteDsStorage, s: &str| storage.connection().execute_batch(s).unwrap();
    sql(&storage, "UPDATE mimi_ds_group SET version = -3");
    corrupt_group_error(storage.read(b"g", &[]), "67");
    sql(&storage, "UPDATE mimi_ds_group SET version = 'one'");
    corrupt_group_error(storage.read(b"g", &[RecordKind::Roster]), "67");
    assert_eq!(
        storage.write(&create(b"g")).unwrap(),
        WriteOutcome::Conflict,
        "the group is not recreated over its corrupt row"
    );
    assert_eq!(
        storage.write(&update(b"g")).unwrap(),
        WriteOutcome::Conflict
    );
    sql(
        &storage,
        "UPDATE mimi_ds_group SET version = 1; UPDATE mimi_ds_record SET value = 'text'",
    );
    corrupt_group_error(storage.read(b"g", &[RecordKind::Roster]), "67");
    let text: String = storage
        .connection()
        .query_row("SELECT value FROM mimi_ds_record", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        text, "text",
        "the corrupt row is still there for inspection"
    );
}

/// Through the DS with real clients: a corrupt roster makes `process` fail with a storage
/// error naming the group; no panic, no answer built from a reset group.
#[test]
fn a_corrupt_group_fails_the_request_with_an_error_naming_it() {
    let config = DsConfig::new("hub.example");
    let (identity, external_sender) = ds_identity(&config.domain);
    let ds = DeliveryService::new(config, identity, openmls_rust_crypto::RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    let mut storage = memory();
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

    storage
        .connection()
        .execute_batch("UPDATE mimi_ds_record SET value = 'not bytes'")
        .unwrap();
    let hex: String = group_id
        .iter()
        .take(32)
        .map(|b| format!("{b:02x}"))
        .collect();
    match ds.process(now, &alice.message_request(b"hi", NOW), &mut storage) {
        Err(ProcessError::Storage(Error::CorruptGroup { group, .. })) => {
            assert!(
                hex.starts_with(group.trim_end_matches('.')),
                "{group} names {hex}"
            );
        }
        other => panic!("a corrupt group is a storage error: {other:?}"),
    }
    assert_eq!(storage.pending(u64::MAX, usize::MAX).unwrap(), Vec::new());
}

/// A corrupt outbox row: an undecodable request is an error naming the entry and its group;
/// a destination that is not text makes `pending` fail naming the entry.
#[test]
fn corrupt_outbox_rows_are_errors_naming_the_entry() {
    let mut storage = memory();
    assert_eq!(storage.write(&create(b"g")).unwrap(), WriteOutcome::Applied);
    assert_eq!(storage.write(&update(b"g")).unwrap(), WriteOutcome::Applied);
    let id = storage.pending(NOW, 1).unwrap()[0].id;
    storage
        .connection()
        .execute_batch("UPDATE mimi_ds_outbox SET request = x'0001'")
        .unwrap();
    let entry = &storage.pending(NOW, 1).unwrap()[0];
    let error = entry.fanout().expect_err("the request does not decode");
    assert_eq!((error.id, error.group_id.as_slice()), (id, &b"g"[..]));
    assert!(error
        .to_string()
        .contains(&format!("outbox entry {id} of group 67")));

    storage
        .connection()
        .execute_batch("UPDATE mimi_ds_outbox SET destination = x'ff'")
        .unwrap();
    match storage.pending(NOW, 1) {
        Err(Error::CorruptOutbox { id: named, .. }) => assert_eq!(named as u64, id),
        other => panic!("a destination that is not text is CorruptOutbox: {other:?}"),
    }
    assert!(
        storage.mark_delivered(id).unwrap(),
        "a corrupt entry can still be removed"
    );
}

/// A corrupt queued message is an error naming the queue.
#[test]
fn a_corrupt_queued_message_is_an_error_naming_the_queue() {
    let mut qs = TestQsOnSqlite::new();
    qs.enqueue_one();
    qs.storage
        .connection()
        .execute_batch("UPDATE mimi_qs_message SET message = x'00'")
        .unwrap();
    match qs.storage.messages(b"q", 0, 10, usize::MAX) {
        Err(Error::CorruptQueue { queue, .. }) => assert_eq!(queue, "71"),
        other => panic!("a corrupt message is CorruptQueue: {other:?}"),
    }
}

struct TestQsOnSqlite {
    storage: SqliteQsStorage,
}

impl TestQsOnSqlite {
    fn new() -> Self {
        Self {
            storage: SqliteQsStorage::new(Connection::open_in_memory().unwrap()).unwrap(),
        }
    }

    fn enqueue_one(&mut self) {
        let message = mimi_ds::wire::QueuedMessage {
            sequence_number: 0,
            received_ms: NOW,
            sender_domain: b"hub.example".to_vec().into(),
            message: fanout(b"g", "q.example", 0, &sample_message())
                .request
                .message,
        };
        let writes = QsWriteSet {
            changes: vec![
                QsChange::CreateQueue {
                    queue_id: b"q".to_vec(),
                    record: QueueRecord {
                        owner_key: b"owner".to_vec(),
                        ..QueueRecord::default()
                    },
                },
                QsChange::Enqueue {
                    queue_id: b"q".to_vec(),
                    message,
                    mark: DeliveryMark {
                        hash: vec![1; 32],
                        expires_at_ms: NOW + 10,
                    },
                },
            ],
            now_ms: NOW,
        };
        assert!(self.storage.write(&writes).is_ok());
    }
}

/// Inside the vendor's own transaction, a write is a savepoint: it commits or rolls back with
/// the vendor's rows.
#[test]
fn a_write_inside_the_vendors_transaction_commits_with_it() {
    let connection = Connection::open_in_memory().unwrap();
    connection
        .execute_batch("CREATE TABLE vendor_audit (note TEXT)")
        .unwrap();
    let mut storage = SqliteDsStorage::new(&connection).unwrap();

    connection.execute_batch("BEGIN").unwrap();
    connection
        .execute_batch("INSERT INTO vendor_audit VALUES ('created g')")
        .unwrap();
    assert_eq!(storage.write(&create(b"g")).unwrap(), WriteOutcome::Applied);
    assert!(
        !connection.is_autocommit(),
        "still the vendor's transaction"
    );
    connection.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        storage.read(b"g", &[]).unwrap(),
        None,
        "rolled back with it"
    );

    connection.execute_batch("BEGIN").unwrap();
    assert_eq!(storage.write(&create(b"g")).unwrap(), WriteOutcome::Applied);
    assert_eq!(
        storage.write(&create(b"g")).unwrap(),
        WriteOutcome::Conflict,
        "a conflict rolls back only its own savepoint"
    );
    connection
        .execute_batch("INSERT INTO vendor_audit VALUES ('created g'); COMMIT")
        .unwrap();
    assert_eq!(storage.read(b"g", &[]).unwrap().map(|g| g.version), Some(1));
    let notes: i64 = connection
        .query_row("SELECT count(*) FROM vendor_audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 1);
}

/// WAL on a file database; an in-memory database has none and says so.
#[test]
fn wal_is_enabled_on_files() {
    let folder = tempfile::tempdir().unwrap();
    let storage = SqliteDsStorage::open(folder.path().join("ds.sqlite3")).unwrap();
    let mode: String = storage
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        enable_wal(&Connection::open_in_memory().unwrap()).unwrap(),
        "memory"
    );
}
