//! `DeliveryService::process` per operation and group size, with the baselines in the same
//! benchmark groups so ratios can be read from one run:
//! * `send_message` against one bare Ed25519 verification (openmls_rust_crypto), the floor of
//!   an authenticated message;
//! * every commit (update path, add one member, remove one member, external join) against raw
//!   openmls `PublicGroup::process_message` alone and followed by `merge_commit` on the same
//!   commit (the group imported outside the measurement), and against mls-rs's
//!   `ExternalGroup` loading its stored snapshot and processing the same commit bytes;
//! * the update commit also against the Ed25519 floor, so that its plot has all four lines.
//!
//! Group sizes come from `MIMI_DS_BENCH_SIZES` (comma-separated member counts; default
//! [`group::DEFAULT_SIZES`]); each group is built once per size by real openmls clients and shared by
//! every contender. Group building, request building and storage clones are outside the
//! measured closures. After the measurements, the stored bytes per group are printed against
//! the TLS-encoded ratchet tree plus GroupInfo. Run: `cargo bench --bench process`; a quick
//! run: `MIMI_DS_BENCH_SIZES=2,100 cargo bench --bench process -- 'commit_update|send_message'`.
//! `benches/plot.py` draws the recorded results (BENCHMARKS.md).
#![allow(missing_docs)] // criterion_group! generates undocumented functions

#[path = "support/group.rs"]
mod group;
#[path = "support/mls_rs_observer.rs"]
mod mls_rs_observer;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mimi_ds::storage::{InMemoryStorage, RecordKind};
use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::DsResponseBody;

use openmls::prelude::*;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use tls_codec::Serialize as _;

use group::{
    build_group, commit_of, import_public_group, key_packages, public_message_of, BuiltGroup,
};
use mls_rs_observer::MlsRsObserver;

/// One group of `size` members and a valid request of each kind against its stored state.
struct World {
    ds: TestDs,
    /// Stored state in which `create_group` is valid (a fresh reservation).
    before_create: InMemoryStorage,
    group_info: MlsMessageOut,
    tree: RatchetTreeIn,
    requests: Vec<(&'static str, Vec<u8>)>,
    /// The same group as observed by mls-rs, imported from the GroupInfo and tree above.
    mls_rs: MlsRsObserver,
}

impl World {
    fn new(size: usize) -> Self {
        let BuiltGroup {
            mut ds,
            mut alice,
            mut frank,
            group_id,
        } = build_group(size);
        let now = ds.now_ms;
        let mut requests = vec![(
            "send_message",
            alice.message_request(b"benchmark message", now),
        )];
        requests.push(("commit_update", alice.update_request(now)));
        alice.discard_commit();
        requests.push((
            "commit_add_one",
            alice.add_request(key_packages(1, "c.example"), now),
        ));
        alice.discard_commit();
        if size > 1 {
            requests.push(("commit_remove_one", alice.remove_request(&[1], now)));
            alice.discard_commit();
            let Some(Received::Welcome(welcome)) = frank.process_inbox().pop() else {
                panic!("no Welcome")
            };
            requests.push(("welcome_info", frank.welcome_info_request(&welcome, now).0));
        }
        // A member's signed read (wire-format.md §4.11); the one processed here is a
        // millisecond older, so the measured one is not its replay.
        let DsResponseBody::ExternalCommitInfo(info) = decode_response(
            &ds.process(&alice.signed_group_info_request(&group_id, None, now - 1))
                .response,
        )
        .body
        else {
            panic!("group_info refused")
        };
        requests.push((
            "group_info",
            alice.signed_group_info_request(&group_id, None, now),
        ));
        let mut laptop = TestClient::new("alice", "alice-2", "a.example");
        requests.push(("external_join", laptop.external_join_request(&info)));

        // create_group: a client builds a group of `size` locally and registers it.
        let reserved = ds.request_group_id();
        let before_create = ds.storage.clone();
        let mut creator = TestClient::new("gina", "gina-1", "g.example");
        creator.create_group(&reserved, &ds.external_sender);
        if size > 1 {
            let _ = creator.stage_commit(|b| b.propose_adds(key_packages(size - 1, "h.example")));
            creator.confirm_commit();
        }
        requests.push(("create_group", creator.create_group_request(now)));

        let group_info = alice
            .group()
            .export_group_info(alice.provider.crypto(), &alice.signer, false)
            .expect("group info");
        let tree = alice.group().export_ratchet_tree();
        let mls_rs = MlsRsObserver::new(
            &group_info.tls_serialize_detached().expect("encode"),
            &tree.tls_serialize_detached().expect("encode"),
        );
        Self {
            ds,
            before_create,
            group_info,
            tree: tree.into(),
            requests,
            mls_rs,
        }
    }

    /// Measures `process` of a request on a fresh copy of the stored state.
    fn bench_process(
        &self,
        c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        op: &str,
        size: usize,
    ) {
        let Some((_, request)) = self.requests.iter().find(|(name, _)| *name == op) else {
            return;
        };
        let storage = if op == "create_group" {
            &self.before_create
        } else {
            &self.ds.storage
        };
        c.bench_with_input(
            BenchmarkId::new("mimi_ds_process", size),
            request,
            |b, request| group::bench_process(b, &self.ds, storage, request, op),
        );
    }

    /// Measures raw openmls processing of the same commit, alone (`merge` false: the
    /// validation a hub cannot avoid) or followed by merging it.
    fn bench_openmls(
        &self,
        c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        op: &str,
        size: usize,
        merge: bool,
    ) {
        let Some((_, request)) = self.requests.iter().find(|(name, _)| *name == op) else {
            return;
        };
        let commit = commit_of(request);
        let name = if merge {
            "openmls_process_and_merge"
        } else {
            "openmls_process_only"
        };
        c.bench_function(BenchmarkId::new(name, size), |b| {
            b.iter_batched(
                || {
                    let (provider, public) = import_public_group(
                        MlsMessageIn::from(self.group_info.clone()),
                        self.tree.clone(),
                    );
                    (provider, public, public_message_of(&commit))
                },
                |(provider, mut public, message)| {
                    let processed = public
                        .process_message(provider.crypto(), message)
                        .expect("valid commit");
                    let ProcessedMessageContent::StagedCommitMessage(staged) =
                        processed.into_content()
                    else {
                        unreachable!("a commit")
                    };
                    if merge {
                        public
                            .merge_commit(provider.storage(), *staged)
                            .expect("merge");
                        (provider, public, None)
                    } else {
                        (provider, public, Some(staged))
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }

    /// Measures mls-rs loading its stored snapshot of the group and processing the same
    /// commit bytes.
    fn bench_mls_rs(
        &self,
        c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        op: &str,
        size: usize,
    ) {
        let Some((_, request)) = self.requests.iter().find(|(name, _)| *name == op) else {
            return;
        };
        let commit = commit_of(request).into_bytes();
        c.bench_function(BenchmarkId::new("mls_rs_load_and_process", size), |b| {
            b.iter_with_large_drop(|| self.mls_rs.load_and_process(&commit))
        });
    }
}

/// One bare Ed25519 verification of a 200-byte payload: the floor of any authenticated
/// message, whatever the group size.
fn bench_floor(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let keys =
        openmls_basic_credential::SignatureKeyPair::new(SignatureScheme::ED25519).expect("keys");
    let payload = vec![7u8; 200];
    let signature = keys.sign(&payload).expect("sign");
    c.bench_function("floor_ed25519_verify", |b| {
        b.iter(|| {
            crypto
                .verify_signature(
                    SignatureScheme::ED25519,
                    &payload,
                    keys.public(),
                    &signature,
                )
                .expect("valid signature")
        })
    });
}

fn configured<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn operations(c: &mut Criterion) {
    // Built once per size, before any measurement, and shared by every contender.
    let worlds: Vec<(usize, World)> = group::sizes()
        .into_iter()
        .map(|size| {
            let started = std::time::Instant::now();
            let world = World::new(size);
            eprintln!(
                "built the {size}-member group and its requests in {:.1?}",
                started.elapsed()
            );
            (size, world)
        })
        .collect();

    let mut group = configured(c, "send_message");
    bench_floor(&mut group);
    for (size, world) in &worlds {
        world.bench_process(&mut group, "send_message", *size);
    }
    group.finish();

    for op in [
        "commit_update",
        "commit_add_one",
        "commit_remove_one",
        "external_join",
    ] {
        let mut group = configured(c, op);
        if op == "commit_update" {
            bench_floor(&mut group);
        }
        for (size, world) in &worlds {
            world.bench_process(&mut group, op, *size);
            world.bench_openmls(&mut group, op, *size, false);
            world.bench_openmls(&mut group, op, *size, true);
            world.bench_mls_rs(&mut group, op, *size);
        }
        group.finish();
    }
    for op in ["group_info", "welcome_info", "create_group"] {
        let mut group = configured(c, op);
        for (size, world) in &worlds {
            world.bench_process(&mut group, op, *size);
        }
        group.finish();
    }

    // Stored bytes per group against the TLS-encoded ratchet tree plus GroupInfo.
    println!("\nstored bytes per group (size, stored, of which MlsState, tree+GroupInfo, ratio)");
    for (size, world) in &worlds {
        let group_id = world.group_info_group_id();
        let stored = world.ds.storage.group_bytes(&group_id);
        let mls_state = world
            .ds
            .storage
            .record_bytes(&group_id, RecordKind::MlsState);
        // The Welcome index and the per-epoch trees: everything but the other records.
        let snapshots = stored
            - RecordKind::ALL
                .iter()
                .filter(|kind| **kind != RecordKind::WelcomeSnapshots)
                .map(|kind| world.ds.storage.record_bytes(&group_id, *kind))
                .sum::<usize>();
        let reference = world.tree.tls_serialized_len() + world.group_info.tls_serialized_len();
        println!(
            "size {size}: stored {stored} B (MlsState {mls_state} B, pending Welcome snapshots {snapshots} B), tree+GroupInfo {reference} B, ratio {:.2} ({:.2} without snapshots); mls-rs ExternalSnapshot {} B ({:.2})",
            stored as f64 / reference as f64,
            (stored - snapshots) as f64 / reference as f64,
            world.mls_rs.snapshot_len(),
            world.mls_rs.snapshot_len() as f64 / reference as f64
        );
    }
}

impl World {
    fn group_info_group_id(&self) -> Vec<u8> {
        let MlsMessageBodyIn::GroupInfo(vgi) =
            MlsMessageIn::from(self.group_info.clone()).extract()
        else {
            unreachable!("exported a GroupInfo")
        };
        vgi.group_id().as_slice().to_vec()
    }
}

criterion_group!(benches, operations);
criterion_main!(benches);
