//! The harness of the `storage` bench (issue 12, "Measured"): one real group per size, built
//! by real openmls clients ([`mimi_ds::testing`]), copied into each storage backend through the
//! storage trait, and fresh valid requests against it; plus what one operation writes (the
//! [`WriteSet`] payload and the database's own log).
//!
//! Run the bench with `cargo bench -p mimi-ds-storage-bench --bench storage`; BENCHMARKS.md
//! ("Durable storage") has the figures and how they were taken.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod postgres;

use std::path::{Path, PathBuf};

use mimi_ds::qs::seal_queue_info;
use mimi_ds::storage::{
    DsStorage, GroupSnapshot, RecordKind, RecordWrite, ReplayMark, VersionGuard, WriteOutcome,
    WriteSet,
};
use mimi_ds::testing::{decode_response, group_info_encryption_keys, TestClient, TestDs};
use mimi_ds::{Outcome, Status, UnixTimeMs};
use mimi_ds_sqlite::SqliteDsStorage;
use openmls_rust_crypto::RustCrypto;

/// The group sizes of issue 12 point 6.
pub const SIZES: [usize; 3] = [10, 1000, 4000];

/// The sizes to measure: [`SIZES`], or the comma-separated list in `MIMI_DS_BENCH_SIZES` (for
/// a quick run, e.g. `MIMI_DS_BENCH_SIZES=10`).
pub fn sizes() -> Vec<usize> {
    match std::env::var("MIMI_DS_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|size| {
                size.trim()
                    .parse()
                    .expect("MIMI_DS_BENCH_SIZES: sizes like 10,1000")
            })
            .collect(),
        Err(_) => SIZES.to_vec(),
    }
}

/// The text of every benchmarked application message.
pub const MESSAGE: &[u8] = b"benchmark message";

/// One group of `size` members as the DS stores it, and its creator, Alice, who writes the
/// requests. The reference copy of the group is [`TestDs::storage`]; a backend gets the group
/// with [`transfer`] and hands it back the same way, so Alice's epoch always matches the copy
/// the next backend receives.
pub struct World {
    /// Members, Alice included.
    pub size: usize,
    /// The DS (with the reference storage and the clock; the clock never moves).
    pub ds: TestDs,
    /// The group's creator, the sender of every request.
    pub alice: TestClient,
    /// The group.
    pub group_id: Vec<u8>,
    /// The epoch the commit adding everyone created, which has a Welcome tree.
    pub welcome_epoch: u64,
}

impl World {
    /// Alice creates a group and adds `size - 1` members in one commit, through the DS. The
    /// members' leaves exist, which is all the DS needs; they never process anything.
    pub fn new(size: usize) -> Self {
        assert!(size >= 2, "a group to send to has at least two members");
        let mut ds = TestDs::new("hub.example");
        let queue_key = group_info_encryption_keys();
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        publish_sealed_queue(&mut alice, 0, &queue_key.public);
        let group_id = ds.request_group_id();
        alice.create_group(&group_id, &ds.external_sender);
        let created = ds.process(&alice.create_group_request(ds.now_ms));
        assert_accepted("create_group", &created);
        let key_packages = (1..size)
            .map(|i| {
                let mut member =
                    TestClient::new(&format!("user{i}"), &format!("client{i}"), "b.example");
                publish_sealed_queue(&mut member, i, &queue_key.public);
                member.key_package()
            })
            .collect::<Vec<_>>();
        let added = ds.process(&alice.add_request(key_packages, ds.now_ms));
        assert_accepted("add", &added);
        alice.confirm_commit();
        let welcome_epoch = alice.epoch();
        Self {
            size,
            ds,
            alice,
            group_id,
            welcome_epoch,
        }
    }

    /// A new request of `operation` from Alice for the group's current state.
    pub fn next_request(&mut self, operation: Operation) -> Vec<u8> {
        next_request(&mut self.alice, operation, self.ds.now_ms)
    }

    /// Merges Alice's staged commit, if any: every commit she stages is processed and accepted
    /// right after ([`accept`] panics otherwise), so the stored group is at the next epoch
    /// already. Call before handing the group to another backend.
    pub fn settle(&mut self) {
        settle(&mut self.alice);
    }

    /// Every record kind the group can hold: the plain kinds and the Welcome tree of the epoch
    /// the add created (the benchmarked operations add no one, so no other epoch has one).
    pub fn record_kinds(&self) -> Vec<RecordKind> {
        let mut kinds = RecordKind::ALL.to_vec();
        kinds.push(RecordKind::WelcomeTree {
            epoch: self.welcome_epoch,
        });
        kinds
    }

    /// Copies the group from `from` to the reference storage ([`TestDs::storage`]).
    pub fn take_back<S: DsStorage>(&mut self, from: &S) {
        self.settle();
        let kinds = self.record_kinds();
        transfer(
            from,
            &mut self.ds.storage,
            &self.group_id,
            &kinds,
            self.ds.now_ms,
        );
    }

    /// Copies the group from the reference storage into `to`.
    pub fn hand_to<S: DsStorage>(&mut self, to: &mut S) {
        self.settle();
        let kinds = self.record_kinds();
        transfer(&self.ds.storage, to, &self.group_id, &kinds, self.ds.now_ms);
    }
}

/// Makes `client` publish its queue as a deployment does: sealed to its provider's queue key
/// for this hub (wire-format.md §10.1), about 120 bytes per member in the roster, the tree and
/// every fanout, where the harness's default (the client's name in clear) takes about 10. One
/// key stands in for every provider's; each seal is fresh, so every member's ciphertext
/// differs (and does not compress).
fn publish_sealed_queue(client: &mut TestClient, index: usize, queue_key: &[u8]) {
    let provider =
        String::from_utf8(client.queue.provider_domain.as_slice().to_vec()).expect("a domain");
    let queue_id = format!("queue-{index:026}");
    client.queue = seal_queue_info(
        &RustCrypto::default(),
        &provider,
        "hub.example",
        queue_key,
        queue_id.as_bytes(),
        &[0x5a; 32],
    )
    .expect("seal the queue");
}

/// The benchmarked operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `send_message`: a new application message each time (never a replay).
    SendMessage,
    /// `commits` with an update path and nothing else, for the group's current epoch.
    UpdateCommit,
}

impl Operation {
    /// Both, in the order of the bench.
    pub const ALL: [Self; 2] = [Self::SendMessage, Self::UpdateCommit];

    /// The bench group's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SendMessage => "send_message",
            Self::UpdateCommit => "update_commit",
        }
    }
}

/// A new request of `operation` from `alice` at `now_ms`, for the epoch the stored group is in:
/// a commit she staged before was accepted (see [`accept`]), so she merges it first.
pub fn next_request(alice: &mut TestClient, operation: Operation, now_ms: u64) -> Vec<u8> {
    settle(alice);
    match operation {
        Operation::SendMessage => alice.message_request(MESSAGE, now_ms),
        Operation::UpdateCommit => alice.update_request(now_ms),
    }
}

/// Merges `alice`'s staged commit, if any (see [`World::settle`]).
pub fn settle(alice: &mut TestClient) {
    if alice.group().pending_commit().is_some() {
        alice.confirm_commit();
    }
}

/// Processes `request` with `ds`'s service at its time on `storage`; panics unless it is
/// accepted.
pub fn accept<S: DsStorage>(ds: &TestDs, request: &[u8], storage: &mut S) -> Outcome {
    let out = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), request, storage)
        .expect("storage failed");
    assert_accepted("request", &out);
    out
}

/// Panics with the decoded response unless `out` is accepted.
pub fn assert_accepted(what: &str, out: &Outcome) {
    assert_eq!(
        out.status,
        Status::Accepted,
        "{what}: {:?}",
        decode_response(&out.response)
    );
}

/// The write set that makes `to` hold exactly the records of `kinds` that `from` holds for the
/// group (and none of the others), guarded by `to`'s current version.
pub fn transfer_write_set<F: DsStorage, T: DsStorage>(
    from: &F,
    to: &T,
    group_id: &[u8],
    kinds: &[RecordKind],
    now_ms: u64,
) -> WriteSet {
    let source = from
        .read(group_id, kinds)
        .expect("read the source")
        .expect("the source holds the group");
    let guard = match to.read(group_id, &[]).expect("read the target") {
        Some(target) => VersionGuard::Exactly(target.version),
        None => VersionGuard::Absent,
    };
    let records = kinds
        .iter()
        .map(|kind| match source.record(*kind) {
            Some(value) => RecordWrite::Put(*kind, value.to_vec()),
            None => RecordWrite::Delete(*kind),
        })
        .collect();
    WriteSet {
        group_id: group_id.to_vec(),
        guard,
        records,
        replay_mark: None,
        now_ms,
        fanout: Vec::new(),
    }
}

/// Makes `to` hold the group's records as `from` holds them, through the storage trait (the
/// versions differ; no record holds its version).
pub fn transfer<F: DsStorage, T: DsStorage>(
    from: &F,
    to: &mut T,
    group_id: &[u8],
    kinds: &[RecordKind],
    now_ms: u64,
) {
    let write_set = transfer_write_set(from, to, group_id, kinds, now_ms);
    assert_eq!(
        to.write(&write_set).expect("write the target"),
        WriteOutcome::Applied
    );
}

/// A storage that passes every call to another and keeps a copy of each write set, to count
/// what an operation hands to storage.
pub struct Observed<'s, S> {
    /// The storage that does the work.
    pub inner: &'s mut S,
    /// Every write set written, applied or not.
    pub writes: Vec<WriteSet>,
}

impl<'s, S: DsStorage> Observed<'s, S> {
    /// Observes `inner`.
    pub fn new(inner: &'s mut S) -> Self {
        Self {
            inner,
            writes: Vec::new(),
        }
    }
}

impl<S: DsStorage> DsStorage for Observed<'_, S> {
    type Error = S::Error;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Self::Error> {
        self.inner.read(group_id, kinds)
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error> {
        self.inner.replay_mark(group_id, key, now_ms)
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error> {
        self.writes.push(write_set.clone());
        self.inner.write(write_set)
    }
}

/// Processes one new request of `operation` on `storage` and returns the one write set it
/// applied.
pub fn observe_one<S: DsStorage>(
    world: &mut World,
    operation: Operation,
    storage: &mut S,
) -> WriteSet {
    let request = world.next_request(operation);
    let mut observed = Observed::new(storage);
    let _accepted = accept(&world.ds, &request, &mut observed);
    assert_eq!(observed.writes.len(), 1, "one write per operation");
    observed.writes.remove(0)
}

/// What one applied [`WriteSet`] hands to storage, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSetBytes {
    /// Each record put (kind and length); deletions carry no payload.
    pub records: Vec<(RecordKind, usize)>,
    /// The replay mark: its key, request hash and stored response.
    pub replay_mark: usize,
    /// The fanout as the outbox stores it: destination and encoded request per entry.
    pub fanout: usize,
}

impl WriteSetBytes {
    /// Counts the payload of `write_set`.
    pub fn of(write_set: &WriteSet) -> Self {
        let records = write_set
            .records
            .iter()
            .filter_map(|change| match change {
                RecordWrite::Put(kind, value) => Some((*kind, value.len())),
                RecordWrite::Delete(_) => None,
            })
            .collect();
        let replay_mark = write_set.replay_mark.as_ref().map_or(0, |(key, mark)| {
            key.len() + mark.request_hash.len() + mark.response.as_ref().map_or(0, Vec::len)
        });
        let fanout = write_set
            .fanout
            .iter()
            .map(|f| f.destination.len() + f.to_bytes().len())
            .sum();
        Self {
            records,
            replay_mark,
            fanout,
        }
    }

    /// The sum of the record bytes.
    pub fn record_total(&self) -> usize {
        self.records.iter().map(|(_, len)| len).sum()
    }

    /// Records, replay mark and fanout.
    pub fn total(&self) -> usize {
        self.record_total() + self.replay_mark + self.fanout
    }
}

/// A SQLite database file in its own temporary folder (on the disk `TMPDIR` names), in WAL
/// mode with `synchronous = FULL`, so every commit fsyncs the log before it returns.
pub struct SqliteFile {
    /// The storage on the file.
    pub storage: SqliteDsStorage,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SqliteFile {
    /// Creates the database and its tables.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("ds.sqlite3");
        let connection = rusqlite::Connection::open(&path).expect("open");
        assert_eq!(mimi_ds_sqlite::enable_wal(&connection).expect("WAL"), "wal");
        // FULL: in WAL mode, each commit syncs the log (NORMAL would sync only at checkpoints
        // and could lose the last commits on power loss).
        connection
            .execute_batch("PRAGMA synchronous = FULL")
            .expect("synchronous");
        let storage = SqliteDsStorage::new(connection).expect("migrate");
        Self {
            storage,
            path,
            _dir: dir,
        }
    }

    /// The floor of any durable write on this file: one transaction that changes one small
    /// row (a table of the bench's own, created on first use), with the same log and sync.
    pub fn one_row_commit(&self) {
        let connection = self.storage.connection();
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
                 INSERT OR IGNORE INTO bench_floor VALUES (1, 0);",
            )
            .expect("floor table");
        let changed = connection
            .prepare_cached("UPDATE bench_floor SET n = n + 1 WHERE id = 1")
            .and_then(|mut statement| statement.execute([]))
            .expect("one-row commit");
        assert_eq!(changed, 1);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes in the write-ahead log file now.
    pub fn wal_len(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// Copies every log frame into the database and truncates the log to zero bytes, so the
    /// log's length afterwards is what the next writes appended. Returns the page size.
    pub fn checkpoint(&self) -> u64 {
        let connection = self.storage.connection();
        let (busy, _, _): (i64, i64, i64) = connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .expect("checkpoint");
        assert_eq!(busy, 0, "checkpoint blocked");
        assert_eq!(self.wal_len(), 0, "log not truncated");
        connection
            .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
            .expect("page size")
            .unsigned_abs()
    }
}

impl Default for SqliteFile {
    fn default() -> Self {
        Self::new()
    }
}

/// What one operation wrote to a SQLite file's log: bytes and frames (one frame per page
/// written, with a 24-byte header; the log starts with a 32-byte header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalGrowth {
    /// Bytes the log grew by.
    pub bytes: u64,
    /// Pages written.
    pub frames: u64,
}

/// Runs `operation` on the file after a truncating checkpoint and returns what it appended to
/// the log. Auto-checkpoints are off meanwhile, so no frame is copied back and dropped.
pub fn sqlite_wal_growth<T>(
    file: &mut SqliteFile,
    operation: impl FnOnce(&mut SqliteFile) -> T,
) -> (T, WalGrowth) {
    let connection = file.storage.connection();
    let previous: i64 = connection
        .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
        .expect("read wal_autocheckpoint");
    connection
        .execute_batch("PRAGMA wal_autocheckpoint = 0")
        .expect("autocheckpoint off");
    let page_size = file.checkpoint();
    let result = operation(file);
    let bytes = file.wal_len();
    file.storage
        .connection()
        .execute_batch(&format!("PRAGMA wal_autocheckpoint = {previous}"))
        .expect("autocheckpoint back");
    let frames = bytes.saturating_sub(32) / (page_size + 24);
    (result, WalGrowth { bytes, frames })
}
