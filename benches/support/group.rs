//! The group every benchmark of `process` starts from, built by real openmls clients: shared by
//! benches/process.rs (criterion) and benches/profile_commit.rs (the callgrind harness), so
//! both measure the same group; and the hub configuration and group sizes that
//! benches/privacy.rs measures too.

use mimi_ds::testing::{ds_identity_with_keys, TestClient, TestDs, CIPHERSUITE};
use mimi_ds::wire::{decode_exact, DsRequest, DsRequestBody, MlsMessageBytes};
use mimi_ds::{DsConfig, Status};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{OpenMlsRustCrypto, RustCrypto};

/// The hub's domain in every benchmark.
pub(crate) const DOMAIN: &str = "hub.example";

/// The hub's configuration in every benchmark. The one commit that adds everyone at 10,000
/// members (and the `create_group` request carrying such a tree) is larger than the default
/// 4 MiB request limit; the limit is a size check before decoding, so raising it changes
/// nothing that is measured.
pub(crate) fn bench_config() -> DsConfig {
    let mut config = DsConfig::new(DOMAIN);
    config.max_request_bytes = 64 << 20;
    config
}

/// Member counts measured unless `MIMI_DS_BENCH_SIZES` says otherwise.
pub(crate) const DEFAULT_SIZES: &[usize] = &[2, 10, 100, 1000, 4000, 10_000];

/// The group sizes of this run: `MIMI_DS_BENCH_SIZES` (e.g. `2,100,1000`) or the default.
pub(crate) fn sizes() -> Vec<usize> {
    match std::env::var("MIMI_DS_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|size| {
                let size = size
                    .trim()
                    .parse()
                    .expect("MIMI_DS_BENCH_SIZES: member counts");
                assert!(
                    size >= 1,
                    "MIMI_DS_BENCH_SIZES: a group has at least one member"
                );
                size
            })
            .collect(),
        Err(_) => DEFAULT_SIZES.to_vec(),
    }
}

/// A registered group of `size` members: Alice created it and added everyone else in one
/// commit; Frank is a real joiner of that commit (his Welcome is queued, not yet processed),
/// the others only have leaves (all the DS needs).
pub(crate) struct BuiltGroup {
    pub(crate) ds: TestDs,
    pub(crate) alice: TestClient,
    pub(crate) frank: TestClient,
    pub(crate) group_id: Vec<u8>,
}

/// Builds the group of `size` members (at least one) with [`bench_config`].
pub(crate) fn build_group(size: usize) -> BuiltGroup {
    build_group_with_ds_keys(
        size,
        SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key generation"),
    )
}

/// A hub with [`bench_config`] whose signature key is `ds_keys`, so that a harness can build
/// the same hub again in another process.
pub(crate) fn bench_ds(ds_keys: SignatureKeyPair) -> TestDs {
    let (identity, external_sender) = ds_identity_with_keys(DOMAIN, ds_keys);
    TestDs::with_crypto(
        bench_config(),
        identity,
        external_sender,
        RustCrypto::default(),
    )
}

/// [`build_group`] with a hub whose signature key is `ds_keys`.
pub(crate) fn build_group_with_ds_keys(size: usize, ds_keys: SignatureKeyPair) -> BuiltGroup {
    let mut ds = bench_ds(ds_keys);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut frank = TestClient::new("frank", "frank-1", "f.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
    if size > 1 {
        let mut kps = key_packages(size - 2, "b.example");
        kps.push(frank.key_package());
        let out = ds.process(&alice.add_request(kps, ds.now_ms));
        assert_eq!(out.status, Status::Accepted);
        alice.confirm_commit();
        TestDs::route(&out, &mut [&mut frank]);
    }
    BuiltGroup {
        ds,
        alice,
        frank,
        group_id,
    }
}

/// `count` fresh KeyPackages of distinct users at `provider`.
pub(crate) fn key_packages(count: usize, provider: &str) -> Vec<KeyPackage> {
    (0..count)
        .map(|i| {
            TestClient::new(&format!("user{i}"), &format!("client{i}"), provider).key_package()
        })
        .collect()
}

/// The commit inside a commit-carrying request.
pub(crate) fn commit_of(request: &[u8]) -> MlsMessageBytes {
    let request: DsRequest = decode_exact(request).expect("a request");
    match request.body {
        DsRequestBody::Commits(c) => c.group_update.commit,
        DsRequestBody::ExternalJoin(c) => c.group_update.commit,
        _ => unreachable!("a commit request"),
    }
}

/// An openmls `PublicGroup` imported from a GroupInfo message and the ratchet tree (the whole
/// tree validated), with the provider whose storage holds it: the openmls-only baseline.
pub(crate) fn import_public_group(
    group_info: MlsMessageIn,
    tree: RatchetTreeIn,
) -> (OpenMlsRustCrypto, PublicGroup) {
    let provider = OpenMlsRustCrypto::default();
    let MlsMessageBodyIn::GroupInfo(vgi) = group_info.extract() else {
        unreachable!("exported a GroupInfo")
    };
    let (public, _) = PublicGroup::from_external(
        provider.crypto(),
        provider.storage(),
        tree,
        vgi,
        ProposalStore::new(),
    )
    .expect("import");
    (provider, public)
}

/// The `PublicMessage` of a commit, as openmls processes it.
pub(crate) fn public_message_of(commit: &MlsMessageBytes) -> PublicMessageIn {
    let MlsMessageBodyIn::PublicMessage(message) = commit.parse().expect("commit").extract() else {
        unreachable!("commits are PublicMessages")
    };
    message
}

/// Measures `DeliveryService::process` of `request` (operation `op`) on a fresh copy of
/// `storage` per iteration and checks it is accepted; the storage and the outcome are dropped
/// outside the measurement, like the baselines' groups.
pub(crate) fn bench_process(
    b: &mut criterion::Bencher<'_>,
    ds: &TestDs,
    storage: &mimi_ds::storage::InMemoryStorage,
    request: &[u8],
    op: &str,
) {
    b.iter_batched(
        || storage.clone(),
        |mut storage| {
            let out = ds
                .ds
                .process(mimi_ds::UnixTimeMs(ds.now_ms), request, &mut storage)
                .expect("in-memory storage cannot fail");
            assert_eq!(
                out.status,
                Status::Accepted,
                "{op}: {:?}",
                mimi_ds::testing::decode_response(&out.response)
            );
            (storage, out)
        },
        criterion::BatchSize::LargeInput,
    )
}
