//! `DeliveryService::process` per operation and group size, with the floors in the same
//! benchmark groups so ratios can be read from one run:
//! * `send_message` against one bare Ed25519 verification (openmls_rust_crypto);
//! * an update-path commit against raw openmls `PublicGroup::process_message` +
//!   `merge_commit` on the same commit.
//!
//! Setup (group building, storage clones) is outside the measured closures.
//! Run: `cargo bench --bench process`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mimi_ds::testing::{TestClient, TestDs};
use mimi_ds::{Status, UnixTimeMs};
use openmls::prelude::*;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;

const SIZES: &[usize] = &[2, 10, 100];

/// A DS holding a group of `size` members created by `alice` (the others never join: their
/// leaves exist, which is all the DS and the benchmarks need).
fn group_of(size: usize) -> (TestDs, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
    if size > 1 {
        let kps = (1..size)
            .map(|i| {
                TestClient::new(&format!("user{i}"), &format!("client{i}"), "b.example")
                    .key_package()
            })
            .collect();
        let out = ds.process(&alice.add_request(kps, ds.now_ms));
        assert_eq!(out.status, Status::Accepted);
        alice.confirm_commit();
    }
    (ds, alice)
}

fn send_message(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_message");
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let keys =
        openmls_basic_credential::SignatureKeyPair::new(SignatureScheme::ED25519).expect("keys");
    let payload = vec![7u8; 200];
    let signature = keys.sign(&payload).expect("sign");
    group.bench_function("floor_ed25519_verify", |b| {
        b.iter(|| {
            crypto.verify_signature(
                SignatureScheme::ED25519,
                &payload,
                keys.public(),
                &signature,
            )
        })
    });
    for &size in SIZES {
        let (ds, mut alice) = group_of(size);
        let request = alice.message_request(b"benchmark message", ds.now_ms);
        group.bench_with_input(BenchmarkId::new("process", size), &request, |b, request| {
            b.iter_batched(
                || ds.storage.clone(),
                |mut storage| {
                    let out = ds
                        .ds
                        .process(UnixTimeMs(ds.now_ms), request, &mut storage)
                        .expect("infallible");
                    assert_eq!(out.status, Status::Accepted);
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn update_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_update_path");
    for &size in SIZES {
        let (ds, mut alice) = group_of(size);
        // The raw-openmls baseline tracks the same group from the same GroupInfo and tree.
        let group_info = alice
            .group()
            .export_group_info(alice.provider.crypto(), &alice.signer, false)
            .expect("group info");
        let tree: RatchetTreeIn = alice.group().export_ratchet_tree().into();
        let request = alice.update_request(ds.now_ms);
        let commit = alice.group().pending_commit().is_some();
        assert!(commit);
        let commit_bytes = {
            let req: mimi_ds::wire::DsRequest =
                mimi_ds::wire::decode_exact(&request).expect("request");
            match req.body {
                mimi_ds::wire::DsRequestBody::Commits(c) => c.group_update.commit,
                _ => unreachable!("update_request builds a commits request"),
            }
        };

        group.bench_with_input(BenchmarkId::new("process", size), &request, |b, request| {
            b.iter_batched(
                || ds.storage.clone(),
                |mut storage| {
                    let out = ds
                        .ds
                        .process(UnixTimeMs(ds.now_ms), request, &mut storage)
                        .expect("infallible");
                    assert_eq!(out.status, Status::Accepted);
                    out
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(BenchmarkId::new("openmls_process_and_merge", size), |b| {
            b.iter_batched(
                || {
                    let provider = OpenMlsRustCrypto::default();
                    let MlsMessageBodyIn::GroupInfo(vgi) =
                        MlsMessageIn::from(group_info.clone()).extract()
                    else {
                        unreachable!("exported a GroupInfo")
                    };
                    let (public, _) = PublicGroup::from_external(
                        provider.crypto(),
                        provider.storage(),
                        tree.clone(),
                        vgi,
                        ProposalStore::new(),
                    )
                    .expect("import");
                    let MlsMessageBodyIn::PublicMessage(message) =
                        commit_bytes.parse().expect("commit").extract()
                    else {
                        unreachable!("commits are PublicMessages")
                    };
                    (provider, public, message)
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
                    public
                        .merge_commit(provider.storage(), *staged)
                        .expect("merge");
                    public
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, send_message, update_commit);
criterion_main!(benches);
