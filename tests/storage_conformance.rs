//! The storage conformance suite (`mimi_ds::testing::conformance`) on the in-memory backends:
//! [`InMemoryStorage`] through [`SharedInMemoryStorage`] handles (so two handles can race on two
//! threads, and a new handle can drain the outbox after the first was dropped), and
//! `InMemoryQsStorage`.

use mimi_ds::storage::{
    DsOutbox, DsStorage, InMemoryStorage, RecordKind, RecordWrite, VersionGuard, WriteOutcome,
    WriteSet,
};
use mimi_ds::testing::conformance::{self, SharedInMemoryStorage};

mimi_ds::ds_storage_conformance_tests!(|| {
    let database = SharedInMemoryStorage::new();
    move || database.clone()
});

mod qs {
    mimi_ds::qs_storage_conformance_tests!(mimi_ds::qs::InMemoryQsStorage::new);
}

mod directory {
    mimi_ds::directory_storage_conformance_tests!(
        mimi_ds::directory::InMemoryDirectoryStorage::new
    );

    /// Handles on one shared in-memory directory, for the racing check.
    #[derive(Clone)]
    struct Shared(std::sync::Arc<std::sync::Mutex<mimi_ds::directory::InMemoryDirectoryStorage>>);

    impl mimi_ds::directory::DirectoryStorage for Shared {
        type Error = mimi_ds::storage::Infallible;
        fn account(
            &self,
            index: &[u8],
        ) -> Result<Option<mimi_ds::directory::VersionedAccount>, Self::Error> {
            self.0.lock().unwrap().account(index)
        }
        fn pseudonym_registered(&self, hash: &[u8]) -> Result<bool, Self::Error> {
            self.0.lock().unwrap().pseudonym_registered(hash)
        }
        fn write(
            &mut self,
            writes: &mimi_ds::directory::DirectoryWriteSet,
        ) -> Result<mimi_ds::directory::DirectoryWriteOutcome, Self::Error> {
            self.0.lock().unwrap().write(writes)
        }
    }

    mimi_ds::directory_storage_racing_tests!(|| {
        let database = Shared(Default::default());
        move || database.clone()
    });
}

/// The outbox is part of the compared state: two stores that differ only in their outbox are
/// not equal, so the "storage unchanged" checks of refusals also cover the outbox.
#[test]
fn the_outbox_is_part_of_the_compared_state() {
    let mut storage = InMemoryStorage::with_outbox();
    let write = WriteSet {
        group_id: b"g".to_vec(),
        guard: VersionGuard::Absent,
        records: vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
        replay_mark: None,
        now_ms: 0,
        fanout: Vec::new(),
    };
    assert_eq!(storage.write(&write), Ok(WriteOutcome::Applied));
    let before = storage.clone();
    let message = conformance::sample_message();
    let sent = conformance::fanout(b"g", "a.example", 1, &message);
    let with_fanout = WriteSet {
        guard: VersionGuard::Exactly(1),
        records: Vec::new(),
        fanout: vec![sent],
        ..write
    };
    assert_eq!(storage.write(&with_fanout), Ok(WriteOutcome::Applied));
    let mut only_records = before.clone();
    assert_eq!(
        only_records.write(&WriteSet {
            fanout: Vec::new(),
            ..with_fanout
        }),
        Ok(WriteOutcome::Applied)
    );
    assert_ne!(storage, only_records, "same records, different outbox");
    let id = storage.pending(u64::MAX, 1).unwrap()[0].id;
    assert_eq!(storage.mark_delivered(id), Ok(true));
    assert_ne!(
        storage, only_records,
        "an ID was used: the next entry's ID differs"
    );
}

/// `InMemoryStorage::new` keeps no outbox: a process that delivers `Outcome::fanout` itself
/// and never drains an outbox must not keep every fanout in memory.
#[test]
fn a_store_without_outbox_keeps_no_fanout() {
    let message = conformance::sample_message();
    let write = WriteSet {
        group_id: b"g".to_vec(),
        guard: VersionGuard::Absent,
        records: vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
        replay_mark: None,
        now_ms: 0,
        fanout: vec![conformance::fanout(b"g", "a.example", 1, &message)],
    };
    let mut without = InMemoryStorage::new();
    assert_eq!(without.write(&write), Ok(WriteOutcome::Applied));
    assert_eq!(without.outbox_len(), 0);
    assert_eq!(without.pending(0, 10), Ok(Vec::new()));
    let mut with = InMemoryStorage::with_outbox();
    assert_eq!(with.write(&write), Ok(WriteOutcome::Applied));
    assert_eq!(with.outbox_len(), 1);
}

mod connection {
    use std::sync::{Arc, Mutex};

    use mimi_ds::connection::{
        ConnectionChange, ConnectionKeyRecord, ConnectionStore, InMemoryConnectionStore,
        InboxRecord, StoredConnectionRequest,
    };
    use mimi_ds::storage::Infallible;

    mimi_ds::connection_storage_conformance_tests!(InMemoryConnectionStore::new);

    /// Handles on one shared in-memory store: "opening another handle" is what a restart is
    /// for a durable store.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<InMemoryConnectionStore>>);

    impl ConnectionStore for Shared {
        type Error = Infallible;
        fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Infallible> {
            self.0.lock().unwrap().key_record(user)
        }
        fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Infallible> {
            self.0.lock().unwrap().inbox(inbox_id)
        }
        fn has_mark(&self, inbox_id: &[u8], mark: &[u8], now_ms: u64) -> Result<bool, Infallible> {
            self.0.lock().unwrap().has_mark(inbox_id, mark, now_ms)
        }
        fn requests(
            &self,
            inbox_id: &[u8],
            from_sequence: u64,
            max: usize,
        ) -> Result<Vec<StoredConnectionRequest>, Infallible> {
            self.0
                .lock()
                .unwrap()
                .requests(inbox_id, from_sequence, max)
        }
        fn apply(&mut self, now_ms: u64, change: ConnectionChange) -> Result<bool, Infallible> {
            self.0.lock().unwrap().apply(now_ms, change)
        }
    }

    mimi_ds::connection_storage_durable_tests!(|| {
        let database = Shared::default();
        move || database.clone()
    });
}
