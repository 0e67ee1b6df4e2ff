//! What a group stores, record by record, against the TLS-encoded ratchet tree plus GroupInfo
//! (issue 14's stored-bytes targets; BENCHMARKS.md "Issue 14: stored bytes after sharing the
//! Welcome snapshot"). The groups are built as `benches/process.rs` builds them: one commit
//! adds everyone but the creator, so all of them are pending joiners of that epoch.
//!
//! The table is a measurement, printed by an ignored test (bytes do not depend on the build or
//! the machine's load):
//!
//! ```sh
//! cargo test --all-features --test stored_bytes -- --ignored --nocapture
//! STORED_BYTES_SIZES=100,1000,4000 cargo test --all-features --test stored_bytes -- --ignored --nocapture
//! ```
//!
//! The test that always runs checks, on a small group, that a pending Welcome snapshot of the
//! current epoch costs only its index entries, not a second tree.

use mimi_ds::storage::RecordKind;
use mimi_ds::testing::{assert_accepted, TestClient, TestDs};
use mimi_ds::DsConfig;
use openmls::prelude::KeyPackage;
use openmls_traits::OpenMlsProvider as _;
use tls_codec::Size as _;

/// A group of `size` members, all but Alice added by one commit and still pending joiners.
struct World {
    ds: TestDs,
    alice: TestClient,
    group_id: Vec<u8>,
}

fn key_packages(count: usize, provider: &str) -> Vec<KeyPackage> {
    (0..count)
        .map(|i| {
            TestClient::new(&format!("user{i}"), &format!("client{i}"), provider).key_package()
        })
        .collect()
}

impl World {
    fn new(size: usize) -> Self {
        let mut config = DsConfig::new("hub.example");
        config.max_request_bytes = 64 << 20;
        let mut ds = TestDs::with_config(config);
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let group_id = ds.request_group_id();
        alice.create_group(&group_id, &ds.external_sender);
        assert_accepted(&ds.process(&alice.create_group_request(ds.now_ms)));
        if size > 1 {
            let out =
                ds.process(&alice.add_request(key_packages(size - 1, "b.example"), ds.now_ms));
            assert_accepted(&out);
            alice.confirm_commit();
        }
        Self {
            ds,
            alice,
            group_id,
        }
    }

    fn commit(&mut self, request: Vec<u8>) {
        assert_accepted(&self.ds.process(&request));
        self.alice.confirm_commit();
    }

    /// The TLS-encoded ratchet tree plus GroupInfo (without the tree extension), as the
    /// bench computes it.
    fn reference(&self) -> usize {
        let group_info = self
            .alice
            .group()
            .export_group_info(self.alice.provider.crypto(), &self.alice.signer, false)
            .expect("group info");
        self.alice
            .group()
            .export_ratchet_tree()
            .tls_serialized_len()
            + group_info.tls_serialized_len()
    }

    fn record(&self, kind: RecordKind) -> usize {
        self.ds.storage.record_bytes(&self.group_id, kind)
    }

    /// Bytes of all Welcome tree records (epochs up to the current one).
    fn welcome_trees(&self) -> usize {
        (0..=self.alice.epoch())
            .map(|epoch| self.record(RecordKind::WelcomeTree { epoch }))
            .sum()
    }

    fn row(&self, size: usize, state: &str) -> Row {
        let reference = self.reference();
        let stored = self.ds.storage.group_bytes(&self.group_id);
        let welcome = self.record(RecordKind::WelcomeSnapshots) + self.welcome_trees();
        let row = Row {
            stored,
            welcome,
            reference,
        };
        println!(
            "| {size} | {state} | {stored} | {} | {} | {} | {} | {} | {} | {} | {reference} | {:.2} | {:.2} |",
            self.record(RecordKind::MlsState),
            self.record(RecordKind::Roster),
            self.record(RecordKind::GroupInfo),
            self.record(RecordKind::Activity),
            self.record(RecordKind::Sequencer) + self.record(RecordKind::PendingProposals),
            self.record(RecordKind::WelcomeSnapshots),
            self.welcome_trees(),
            row.ratio(),
            row.steady_ratio(),
        );
        row
    }
}

/// One measured state: all stored bytes, those of the Welcome records, and the reference.
struct Row {
    stored: usize,
    welcome: usize,
    reference: usize,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.stored as f64 / self.reference as f64
    }

    /// Without the Welcome records (index and trees), as the bench's "steady state".
    fn steady_ratio(&self) -> f64 {
        (self.stored - self.welcome) as f64 / self.reference as f64
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("STORED_BYTES_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("a size"))
                .collect()
        })
        .unwrap_or_else(|| vec![2, 10, 100, 1000])
}

/// Prints the table of BENCHMARKS.md, one row per size and state:
/// * `all pending`: right after the commit that added everyone (the bench's state): the
///   epoch's snapshot shares the state, the index lists every joiner;
/// * `after 1 commit`: an update commit followed, so that epoch's tree is written out;
/// * `1 pending`: the joiners' retention ended and a commit purged them, then one member was
///   added (a typical add to a large group);
/// * `none pending`: an update after that added member fetched, so no Welcome is pending.
#[test]
#[ignore = "a measurement: prints the stored-bytes table (see the module docs)"]
fn print_stored_bytes_per_record() {
    println!(
        "| N | state | stored | MlsState | Roster | GroupInfo | Activity | Sequencer + PendingProposals | Welcome index | Welcome trees | tree + GroupInfo | ratio | ratio without Welcome records |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes() {
        let mut world = World::new(size);
        world.row(size, "all pending");
        let request = world.alice.update_request(world.ds.now_ms);
        world.commit(request);
        world.row(size, "after 1 commit");
        world
            .ds
            .advance(DsConfig::new("hub.example").welcome_retention_ms + 1);
        let request = world.alice.update_request(world.ds.now_ms);
        world.commit(request);
        let joiner = TestClient::new("zoe", "zoe-1", "z.example");
        let request = world
            .alice
            .add_request(vec![joiner.key_package()], world.ds.now_ms);
        world.commit(request);
        world.row(size + 1, "1 pending");
        world
            .ds
            .advance(DsConfig::new("hub.example").welcome_retention_ms + 1);
        let request = world.alice.update_request(world.ds.now_ms);
        world.commit(request);
        world.row(size + 1, "none pending");
    }
}

#[test]
fn a_pending_snapshot_of_the_current_epoch_costs_its_index_entries_only() {
    let mut world = World::new(20);
    let all_pending = world.row(20, "all pending");
    assert_eq!(world.welcome_trees(), 0, "no second tree");
    // The index: per joiner a KeyPackageRef, a signature key and an expiry.
    assert_eq!(
        all_pending.welcome,
        world.record(RecordKind::WelcomeSnapshots)
    );
    assert!(all_pending.welcome < 100 * 19, "{} B", all_pending.welcome);
    // Once the group moves on, that epoch's tree is stored (it is no longer the state's), as
    // the nodes the update changed: the committer's leaf and direct path, a fraction of the
    // tree.
    let request = world.alice.update_request(world.ds.now_ms);
    world.commit(request);
    let after = world.row(20, "after 1 commit");
    assert!(world.welcome_trees() > 0);
    assert!(
        world.welcome_trees() * 4 < after.reference,
        "{} B of {} B",
        world.welcome_trees(),
        after.reference
    );
}
