//! Several write sets in one transaction (`in_transaction`), and the process's writers to one
//! file queued in order (`WriterQueue`) instead of failing or sleeping on SQLite's lock.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use mimi_ds::qs::{QsChange, QsStorage, QsWriteOutcome, QsWriteSet, QueueRecord};
use mimi_ds::storage::{DsStorage, RecordKind, RecordWrite, VersionGuard, WriteOutcome, WriteSet};
use mimi_ds::testing::START_MS;
use mimi_ds_sqlite::{enable_wal, SqliteDsStorage, SqliteQsStorage, WriterQueue};
use rusqlite::Connection;

fn create_queue(queue_id: &[u8], owner_key: &[u8]) -> QsWriteSet {
    QsWriteSet {
        changes: vec![QsChange::CreateQueue {
            queue_id: queue_id.to_vec(),
            record: QueueRecord {
                owner_key: owner_key.to_vec(),
                fanout_auth_token: vec![9; 16],
                next_sequence: 0,
                first_unacknowledged: 0,
                queued_bytes: 0,
            },
        }],
        now_ms: START_MS,
    }
}

fn create_group(group_id: &[u8]) -> WriteSet {
    WriteSet {
        group_id: group_id.to_vec(),
        guard: VersionGuard::Absent,
        records: vec![RecordWrite::Put(RecordKind::Roster, vec![1, 2, 3])],
        replay_mark: None,
        now_ms: START_MS,
        fanout: Vec::new(),
    }
}

fn count(path: &std::path::Path, table: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
}

/// Three write sets in one transaction: none is visible before the commit, the one whose
/// guard fails is rolled back alone, the other two commit together.
#[test]
fn write_sets_in_one_transaction_commit_together_and_a_conflict_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qs.sqlite3");
    let mut storage = SqliteQsStorage::open(&path).unwrap();
    let outcomes = storage
        .in_transaction(|storage| {
            let outcomes = [
                storage
                    .write(&create_queue(b"queue a", b"owner a"))
                    .unwrap(),
                // The same queue again: its guard fails.
                storage
                    .write(&create_queue(b"queue a", b"owner c"))
                    .unwrap(),
                storage
                    .write(&create_queue(b"queue b", b"owner b"))
                    .unwrap(),
            ];
            assert_eq!(count(&path, "mimi_qs_queue"), 0, "not committed yet");
            outcomes
        })
        .unwrap();
    assert_eq!(
        outcomes,
        [
            QsWriteOutcome::Applied,
            QsWriteOutcome::Conflict,
            QsWriteOutcome::Applied
        ]
    );
    assert_eq!(count(&path, "mimi_qs_queue"), 2);
    assert!(storage.queue(b"queue a").unwrap().is_some());
    assert!(storage.queue(b"queue b").unwrap().is_some());
    assert!(
        storage.connection().is_autocommit(),
        "the transaction ended"
    );
}

/// A writer whose connection would give up at once on a taken lock (busy timeout 0) waits
/// for its turn behind a transaction of the same process, then writes.
#[test]
fn a_writer_waits_for_its_turn_instead_of_finding_the_lock_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.sqlite3");
    let writers = Arc::new(WriterQueue::new());
    let open = || {
        let connection = Connection::open(&path).unwrap();
        enable_wal(&connection).unwrap();
        connection.busy_timeout(Duration::ZERO).unwrap();
        SqliteDsStorage::new(connection)
            .unwrap()
            .with_writer_queue(Arc::clone(&writers))
    };
    let (mut first, mut second) = (open(), open());
    let inside = Arc::new(Barrier::new(2));
    let holder = {
        let inside = Arc::clone(&inside);
        std::thread::spawn(move || {
            first
                .in_transaction(|storage| {
                    let outcome = storage.write(&create_group(b"group 1")).unwrap();
                    inside.wait();
                    // Hold the write lock while the other writer asks for it.
                    std::thread::sleep(Duration::from_millis(200));
                    outcome
                })
                .unwrap()
        })
    };
    inside.wait();
    let outcome = second.write(&create_group(b"group 2"));
    assert_eq!(holder.join().unwrap(), WriteOutcome::Applied);
    assert!(matches!(outcome, Ok(WriteOutcome::Applied)), "{outcome:?}");
    assert_eq!(count(&path, "mimi_ds_group"), 2);
}
