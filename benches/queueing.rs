//! The Queueing Service and the transport router, with their floors in the same benchmark
//! groups so ratios can be read from one run:
//! * `qs_deliver/N`: one delivery naming N sealed queues, against N bare HPKE opens
//!   (hpke-rs, the same suite and key): the floor, since every recipient must be opened;
//! * `qs_fetch`: a signed fetch of a 100-message page, against one bare Ed25519 verification
//!   (the floor of an authenticated request);
//! * `router`: `send_message` in a 10-member group through `Router::handle`, against the same
//!   request to `DeliveryService::process` directly (the router's own cost).
//!
//! Storage clones are outside the measured closures. Run: `cargo bench --bench queueing`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use hpke_rs::hpke_types::{AeadAlgorithm, KdfAlgorithm, KemAlgorithm};
use hpke_rs::rustcrypto::HpkeRustCrypto;
use hpke_rs::{Hpke, Mode};
use mimi_ds::qs::{InMemoryQsStorage, QsConfig, QsStatus, QueueKey, QueueingService};
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::{TestClient, TestDs, TestQs};
use mimi_ds::transport::{HttpRequest, Router, TransportConfig, OCTET_STREAM};
use mimi_ds::wire::{decode_exact, encrypt_context, HpkeCiphertext, QUEUE_ID_LABEL};
use mimi_ds::{Fanout, Status, UnixTimeMs};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use openmls_traits::types::SignatureScheme;

const PROVIDER: &str = "b.example";
const SEED: [u8; 32] = [7; 32];

fn hpke() -> Hpke<HpkeRustCrypto> {
    Hpke::new(
        Mode::Base,
        KemAlgorithm::DhKem25519,
        KdfAlgorithm::HkdfSha256,
        AeadAlgorithm::Aes128Gcm,
    )
}

/// A QS with a known key, `recipients` connected clients, and one real fanout naming them all.
fn delivery_world(recipients: usize) -> (TestQs, Fanout) {
    let mut qs = TestQs::new(PROVIDER);
    qs.qs = QueueingService::new(
        QsConfig::new(PROVIDER),
        QueueKey::derive(&SEED).expect("key"),
        RustCrypto::default(),
    );
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "phone", "a.example");
    let mut bob = TestClient::new("bob", "phone", PROVIDER);
    qs.connect(&mut bob, "hub.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let out = ds.process(&alice.message_request(b"bench", ds.now_ms));
    let mut fanout = out.fanout[0].clone();
    fanout.request.recipients = (0..recipients)
        .map(|i| {
            let mut client = TestClient::new(&format!("user{i}"), "phone", PROVIDER);
            qs.connect(&mut client, "hub.example");
            client.queue.queue.clone()
        })
        .collect();
    (qs, fanout)
}

fn qs_deliver(c: &mut Criterion) {
    let mut group = c.benchmark_group("qs_deliver");
    group.measurement_time(Duration::from_secs(5));
    for &n in &[1usize, 10, 100] {
        let (qs, fanout) = delivery_world(n);
        let bytes = fanout.to_bytes();
        let now = UnixTimeMs(qs.now_ms);
        group.bench_with_input(BenchmarkId::new("qs", n), &n, |b, _| {
            b.iter_batched(
                || qs.storage.clone(),
                |mut storage: InMemoryQsStorage| {
                    let out = qs.qs.deliver(now, &bytes, None, &mut storage).unwrap();
                    assert_eq!(out.status, QsStatus::Accepted);
                    out
                },
                BatchSize::LargeInput,
            );
        });
        // The floor: open every recipient's sealed queue information.
        let private = hpke().derive_key_pair(&SEED).unwrap().into_keys().0;
        let info = encrypt_context(QUEUE_ID_LABEL, PROVIDER.as_bytes()).unwrap();
        let sealed: Vec<HpkeCiphertext> = fanout
            .request
            .recipients
            .iter()
            .map(|q| decode_exact(q.as_slice()).unwrap())
            .collect();
        group.bench_with_input(BenchmarkId::new("hpke_open_each", n), &n, |b, _| {
            let hpke = hpke();
            b.iter(|| {
                for ct in &sealed {
                    hpke.open(
                        ct.kem_output.as_slice(),
                        &private,
                        &info,
                        &[],
                        ct.ciphertext.as_slice(),
                        None,
                        None,
                        None,
                    )
                    .unwrap();
                }
            });
        });
    }
    group.finish();
}

fn qs_fetch(c: &mut Criterion) {
    let mut group = c.benchmark_group("qs_fetch");
    let (mut qs, fanout) = delivery_world(1);
    let mut bob = TestClient::new("bob", "laptop", PROVIDER);
    qs.connect(&mut bob, "hub.example");
    let mut message = fanout.clone();
    message.request.recipients = vec![bob.queue.queue.clone()].into();
    for i in 0..100u64 {
        message.request.message.sequence_number = 1000 + i;
        assert_eq!(qs.deliver(&message).status, QsStatus::Accepted);
    }
    let request = bob.fetch_request(100, qs.now_ms);
    let now = UnixTimeMs(qs.now_ms);
    // A fetch writes nothing, so one copy of the storage serves every iteration.
    let mut storage = qs.storage.clone();
    group.bench_function("qs_fetch_100", |b| {
        b.iter(|| {
            let out = qs.qs.client_request(now, &request, &mut storage).unwrap();
            assert_eq!(out.status, QsStatus::Accepted);
            out
        });
    });
    // The floor: the request's one signature verification.
    let crypto = RustCrypto::default();
    let public = bob.signer.to_public_vec();
    let signature = bob.signer.sign(b"floor").unwrap();
    group.bench_function("ed25519_verify", |b| {
        b.iter(|| {
            crypto
                .verify_signature(SignatureScheme::ED25519, b"floor", &public, &signature)
                .unwrap()
        });
    });
    group.finish();
}

fn router(c: &mut Criterion) {
    let mut group = c.benchmark_group("router");
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "phone", "a.example");
    let mut others: Vec<TestClient> = (0..9)
        .map(|i| TestClient::new(&format!("user{i}"), "phone", "c.example"))
        .collect();
    let mut refs: Vec<&mut TestClient> = others.iter_mut().collect();
    ds.create_group_with(&mut alice, &mut refs);
    let request = alice.message_request(b"bench", ds.now_ms);
    let now = UnixTimeMs(ds.now_ms);
    group.bench_function("ds_process_send_message_10", |b| {
        b.iter_batched(
            || ds.storage.clone(),
            |mut storage: InMemoryStorage| {
                let out = ds.ds.process(now, &request, &mut storage).unwrap();
                assert_eq!(out.status, Status::Accepted);
                out
            },
            BatchSize::LargeInput,
        );
    });
    let storage = ds.storage.clone();
    let router = Router::new(TransportConfig::new(
        "hub.example",
        Some("hub.example".into()),
    ))
    .with_ds(ds.ds);
    let headers = [("Host", "hub.example"), ("Content-Type", OCTET_STREAM)];
    let http = HttpRequest {
        method: "POST",
        path: "/group_operation",
        headers: &headers,
        body: &request,
        authenticated_peer: None,
    };
    group.bench_function("router_send_message_10", |b| {
        b.iter_batched(
            || (storage.clone(), InMemoryQsStorage::new()),
            |(mut ds_storage, mut qs_storage)| {
                let routed = router
                    .handle(now, &http, &mut ds_storage, &mut qs_storage)
                    .unwrap();
                assert_eq!(routed.response.status, 200);
                routed
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, qs_deliver, qs_fetch, router);
criterion_main!(benches);
