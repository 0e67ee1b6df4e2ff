//! Privacy mode (wire-format.md §17) against plain mode: `DeliveryService::process` of the
//! same operations on a plain group and on a privacy-mode group of the same size, in one
//! benchmark group per operation so the ratio can be read from one run (issue 17, item 5):
//! * `privacy_send_message`: a `send_message`, unkeyed in the plain group, keyed in the
//!   privacy-mode group (which opens the whole sealed state and seals the sequencer and the
//!   manifest, §17.5, §17.6);
//! * `privacy_commit_update`: an update commit (the privacy-mode one re-seals every record
//!   under the next epoch's key, §17.3); both commits' GroupInfos come without the tree;
//! * `privacy_group_info`: a member's signed `group_info` read.
//!
//! Contenders: `plain`, `plain-uncached` (the same plain group on a hub whose group cache is
//! off: the cache keeps no privacy-mode group, §17.8, so the difference between it and
//! `privacy` is what sealing itself costs) and `privacy`.
//!
//! Group sizes come from `MIMI_DS_BENCH_SIZES` as in `benches/process.rs` (same default).
//! Groups are built by real openmls clients once per size, outside the measurements; each
//! measurement runs on a fresh copy of the stored state. After the measurements the sizes of
//! the requests are printed, and the stored bytes of the plain and the privacy-mode group, in
//! all and per record kind. Run: `cargo bench --bench privacy`; a quick run:
//! `MIMI_DS_BENCH_SIZES=2,100 cargo bench --bench privacy`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

#[allow(dead_code)] // only the hub configuration and the sizes: this bench builds its own groups
#[path = "support/group.rs"]
mod group;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mimi_ds::storage::{InMemoryStorage, RecordKind};
use mimi_ds::testing::{decode_response, TestClient, TestDs};
use mimi_ds::Status;

/// One group of `size` members on its own hub, and the requests measured on it.
struct World {
    ds: TestDs,
    group_id: Vec<u8>,
    requests: Vec<(&'static str, Vec<u8>)>,
}

impl World {
    /// `cached`: whether the hub's group cache is on (it keeps no privacy-mode group, §17.8).
    fn new(size: usize, private: bool, cached: bool) -> Self {
        let mut config = group::bench_config();
        if !cached {
            config.group_cache_bytes = 0;
        }
        let mut ds = TestDs::with_config(config);
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let group_id = ds.request_group_id();
        let keyed = |client: &TestClient, request: Vec<u8>, next: bool, now: u64| {
            if private {
                client.keyed_by_member(&request, next, now)
            } else {
                request
            }
        };
        if private {
            alice.create_private_group(&group_id, &ds.external_sender);
        } else {
            alice.create_group(&group_id, &ds.external_sender);
        }
        let request = keyed(
            &alice,
            alice.create_group_request(ds.now_ms),
            false,
            ds.now_ms,
        );
        let out = ds.process(&request);
        assert_eq!(
            out.status,
            Status::Accepted,
            "{:?}",
            decode_response(&out.response)
        );
        if size > 1 {
            let key_packages = (0..size - 1)
                .map(|i| {
                    let member =
                        TestClient::new(&format!("user{i}"), &format!("client{i}"), "b.example");
                    if private {
                        member.privacy_key_package()
                    } else {
                        member.key_package()
                    }
                })
                .collect();
            let request = alice.add_request(key_packages, ds.now_ms);
            let request = keyed(&alice, request, true, ds.now_ms);
            let out = ds.process(&request);
            assert_eq!(
                out.status,
                Status::Accepted,
                "{:?}",
                decode_response(&out.response)
            );
            alice.confirm_commit();
        }
        let now = ds.now_ms;
        let message = alice.message_request(b"benchmark message", now);
        let mut requests = vec![("send_message", keyed(&alice, message, false, now))];
        if private {
            // The update adds nobody, so it needs no tree in its GroupInfo (§17.3); openmls
            // would otherwise put one there, as into the Add's (tests/privacy_mode.rs).
            alice.leave_tree_out_of_group_infos();
        }
        let update = alice.update_request(now);
        requests.push(("commit_update", keyed(&alice, update, true, now)));
        alice.discard_commit();
        let read = alice.signed_group_info_request(&group_id, None, now);
        requests.push(("group_info", keyed(&alice, read, false, now)));
        Self {
            ds,
            group_id,
            requests,
        }
    }

    fn bench(
        &self,
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        mode: &str,
        op: &str,
        size: usize,
    ) {
        let (_, request) = self
            .requests
            .iter()
            .find(|(name, _)| *name == op)
            .expect("a request of each operation");
        let storage: &InMemoryStorage = &self.ds.storage;
        group.bench_with_input(BenchmarkId::new(mode, size), request, |b, request| {
            group::bench_process(b, &self.ds, storage, request, op)
        });
    }
}

fn privacy_against_plain(c: &mut Criterion) {
    // Three contenders per size: a plain group, the same with the group cache off (the
    // cache keeps no privacy-mode group, so this separates the sealing from the lost cache),
    // and a privacy-mode group.
    let worlds: Vec<(usize, World, World, World)> = group::sizes()
        .into_iter()
        .map(|size| {
            (
                size,
                World::new(size, false, true),
                World::new(size, false, false),
                World::new(size, true, true),
            )
        })
        .collect();
    for op in ["send_message", "commit_update", "group_info"] {
        let mut group = c.benchmark_group(format!("privacy_{op}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (size, plain, uncached, private) in &worlds {
            plain.bench(&mut group, "plain", op, *size);
            uncached.bench(&mut group, "plain-uncached", op, *size);
            private.bench(&mut group, "privacy", op, *size);
        }
        group.finish();
    }
    println!("\nrequest bytes (size, operation, plain, privacy mode)");
    for (size, plain, _, private) in &worlds {
        for ((op, a), (_, b)) in plain.requests.iter().zip(&private.requests) {
            println!("size {size}: {op} {} B, {} B", a.len(), b.len());
        }
    }
    println!("\nstored bytes per group (size, plain, privacy mode), then per record kind");
    for (size, plain, _, private) in &worlds {
        println!(
            "size {size}: plain {} B, privacy mode {} B",
            plain.ds.storage.group_bytes(&plain.group_id),
            private.ds.storage.group_bytes(&private.group_id)
        );
        for kind in RecordKind::ALL {
            let bytes = |world: &World| world.ds.storage.record_bytes(&world.group_id, kind);
            if bytes(plain) + bytes(private) > 0 {
                println!("  {kind:?}: {} B, {} B", bytes(plain), bytes(private));
            }
        }
    }
}

criterion_group!(benches, privacy_against_plain);
criterion_main!(benches);
