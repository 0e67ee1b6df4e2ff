//! The bench's harness does what the bench relies on: a group handed to a backend and back is
//! the same group, each request is accepted where the group is, and the byte counts add up.

use mimi_ds::storage::{DsStorage, InMemoryStorage, RecordKind};
use mimi_ds::UnixTimeMs;
use mimi_ds_storage_bench::assert_accepted;
use mimi_ds_storage_bench::postgres::Postgres;
use mimi_ds_storage_bench::{
    observe_one, sqlite_wal_growth, Operation, SqliteFile, World, WriteSetBytes,
};

/// Every record of the group in `storage`, in the order of `kinds`.
fn records<S: DsStorage>(world: &World, storage: &S) -> Vec<(RecordKind, Vec<u8>)> {
    let kinds = world.record_kinds();
    let mut snapshot = storage
        .read(&world.group_id, &kinds)
        .expect("read")
        .expect("group")
        .records;
    snapshot.sort();
    snapshot
}

#[test]
fn a_group_goes_through_sqlite_and_back_advancing_as_alice_does() {
    let mut world = World::new(3);
    let before = records(&world, &world.ds.storage);
    // While the group is in the add's epoch, its joiners' snapshot shares the MlsState record
    // (wire-format.md §4.12): only the index is stored.
    let has_tree = |records: &[(RecordKind, Vec<u8>)]| {
        records
            .iter()
            .any(|(kind, _)| matches!(kind, RecordKind::WelcomeTree { .. }))
    };
    assert!(before
        .iter()
        .any(|(kind, _)| *kind == RecordKind::WelcomeSnapshots));
    assert!(!has_tree(&before));
    let mut sqlite = SqliteFile::new();
    world.hand_to(&mut sqlite.storage);
    assert_eq!(
        records(&world, &sqlite.storage),
        before,
        "copied byte for byte"
    );

    // Two commits in a row: the second is for the epoch the first created.
    let epoch = world.alice.epoch();
    for operation in [
        Operation::UpdateCommit,
        Operation::UpdateCommit,
        Operation::SendMessage,
    ] {
        let write_set = observe_one(&mut world, operation, &mut sqlite.storage);
        assert!(WriteSetBytes::of(&write_set).total() > 0);
    }
    world.take_back(&sqlite.storage);
    assert_eq!(world.alice.epoch(), epoch + 2);
    assert_eq!(
        records(&world, &world.ds.storage),
        records(&world, &sqlite.storage)
    );
    assert_ne!(records(&world, &world.ds.storage), before);
    // The first commit left the add's epoch with its joiner pending, so it wrote that epoch's
    // tree out: a keyed record, copied back with the others.
    assert!(
        has_tree(&records(&world, &world.ds.storage)),
        "the add's Welcome tree is among the records copied back"
    );

    // And on to another backend at the new epoch.
    let mut memory = InMemoryStorage::with_outbox();
    world.hand_to(&mut memory);
    let _ = observe_one(&mut world, Operation::UpdateCommit, &mut memory);
    assert_eq!(
        memory.outbox_len(),
        1,
        "the commit's fanout is in the outbox"
    );
}

#[test]
fn the_log_growth_of_one_write_counts_whole_pages() {
    let mut world = World::new(3);
    let mut sqlite = SqliteFile::new();
    world.hand_to(&mut sqlite.storage);
    let (write_set, wal) = sqlite_wal_growth(&mut sqlite, |file| {
        observe_one(&mut world, Operation::SendMessage, &mut file.storage)
    });
    // The members publish sealed queue IDs, as deployments do (not their names in clear).
    let recipients: Vec<usize> = write_set
        .fanout
        .iter()
        .flat_map(|f| f.request.recipients.iter().map(|q| q.as_slice().len()))
        .collect();
    assert_eq!(recipients.len(), 2, "the two other members");
    assert!(recipients.iter().all(|len| *len > 100), "{recipients:?}");
    let payload = WriteSetBytes::of(&write_set);
    assert!(payload.fanout > 0 && payload.replay_mark > 0, "{payload:?}");
    assert!(wal.frames >= 1, "{wal:?}");
    let page_size = sqlite.checkpoint();
    assert_eq!(wal.bytes, 32 + wal.frames * (page_size + 24), "{wal:?}");
    assert!(wal.bytes as usize >= payload.total(), "{wal:?} {payload:?}");
}

/// On the server `MIMI_DS_POSTGRES_URL` names (`.ci/run` starts one), or else on a throw-away
/// cluster of mimi-ds-postgres's `test_cluster` (which fails, saying how to fix it, when no
/// server binaries are installed): never skipped.
#[test]
fn a_group_goes_through_postgres_and_back_and_its_wal_is_counted() {
    let mut postgres = Postgres::connect(mimi_ds_postgres::test_cluster::server_url());
    let mut world = World::new(3);
    world.hand_to(&mut postgres.blocking());
    assert_eq!(
        records(&world, &postgres.blocking()),
        records(&world, &world.ds.storage)
    );
    let epoch = world.alice.epoch();
    // The async driver, as the bench times it.
    let request = world.next_request(Operation::UpdateCommit);
    let out = postgres
        .runtime
        .block_on(world.ds.ds.process_async(
            UnixTimeMs(world.ds.now_ms),
            &request,
            &mut postgres.storage,
        ))
        .expect("storage");
    assert_accepted("update commit", &out);
    let before = postgres.wal_lsn();
    let write_set = observe_one(&mut world, Operation::SendMessage, &mut postgres.blocking());
    let wal = postgres.wal_bytes_between(&before, &postgres.wal_lsn());
    assert!(wal > 0 && WriteSetBytes::of(&write_set).total() > 0);
    world.take_back(&postgres.blocking());
    assert_eq!(
        world.alice.epoch(),
        epoch + 1,
        "the accepted commit was merged"
    );
    assert_eq!(
        records(&world, &world.ds.storage),
        records(&world, &postgres.blocking())
    );
    postgres.one_row_commit();
}
