//! `create_group` of a 300-leaf tree: a request whose `ClientSignature` does not verify against
//! the creator's leaf, next to a valid one, in one benchmark group (wire-format.md §4.2). The
//! bad request is refused after one signature check on the raw tree, before the import that
//! verifies two signatures per leaf; it should cost well under 0.2× the valid one.
//!
//! Storage clones are outside the measured closures. Run:
//! `cargo bench --bench create_group_auth`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::{decode_response, TestClient, TestDs};
use mimi_ds::wire::{decode_exact, DsRequest, DsSenderId, ErrorCode};
use mimi_ds::{Status, UnixTimeMs};

const LEAVES: usize = 300;

/// A DS holding a fresh reservation, and the two requests for it.
struct Setup {
    ds: TestDs,
    reserved: InMemoryStorage,
    valid: Vec<u8>,
    bad_signature: Vec<u8>,
}

fn setup() -> Setup {
    let mut ds = TestDs::new("hub.example");
    let group_id = ds.request_group_id();
    let reserved = ds.storage.clone();
    let mut creator = TestClient::new("gina", "gina-1", "g.example");
    creator.create_group(&group_id, &ds.external_sender);
    let key_packages = (1..LEAVES)
        .map(|i| {
            TestClient::new(&format!("user{i}"), &format!("client{i}"), "h.example").key_package()
        })
        .collect::<Vec<_>>();
    let _ = creator.stage_commit(|b| b.propose_adds(key_packages));
    creator.confirm_commit();
    assert_eq!(creator.group().members().count(), LEAVES);

    let valid = creator.create_group_request(ds.now_ms);
    // The same body, signed for the creator's leaf by someone else's key.
    let mallory = TestClient::new("mallory", "mallory-1", "m.example");
    let body = decode_exact::<DsRequest>(&valid).expect("request").body;
    let bad_signature = mallory.signed_as(body, &group_id, ds.now_ms, DsSenderId::LeafIndex(0));
    Setup {
        ds,
        reserved,
        valid,
        bad_signature,
    }
}

fn create_group(c: &mut Criterion) {
    let setup = setup();
    let mut group = c.benchmark_group(format!("create_group_{LEAVES}_leaves"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, request, expected) in [
        ("valid", &setup.valid, Status::Accepted),
        (
            "bad_signature",
            &setup.bad_signature,
            Status::Rejected(ErrorCode::AuthenticationFailed),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || setup.reserved.clone(),
                |mut storage| {
                    let out = setup
                        .ds
                        .ds
                        .process(UnixTimeMs(setup.ds.now_ms), request, &mut storage)
                        .expect("infallible");
                    assert_eq!(
                        out.status,
                        expected,
                        "{name}: {:?}",
                        decode_response(&out.response)
                    );
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, create_group);
criterion_main!(benches);
