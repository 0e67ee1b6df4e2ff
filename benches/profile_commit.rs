//! A callgrind harness for one update commit in a large group (issue 14, BENCHMARKS.md
//! "Issue 14: where a 4000-member commit's time goes"): the criterion World of
//! benches/process.rs takes over half an hour under valgrind, so the group is built once in a
//! normal run and only the measured call runs under valgrind.
//!
//! * `prepare N`: builds the N-member group with real openmls clients
//!   (benches/support/group.rs, the same group as benches/process.rs) and writes what `run`
//!   needs to `target/profile_commit/N.bin`: the hub's signature key, the group's stored
//!   records, Alice's update-commit request and its time, and the GroupInfo and ratchet tree
//!   of the epoch for the openmls baseline.
//! * `run N mimi_ds`: loads them and calls `DeliveryService::process` on the request once,
//!   inside [`contender_mimi_ds_process`].
//! * `run N openmls`: imports the group into an openmls `PublicGroup` from the GroupInfo and
//!   tree, then calls `process_message` on the same commit once, inside
//!   [`contender_openmls_process_message`].
//! * `run N mls_rs`: an mls-rs observer of the same group (joined from the GroupInfo and tree)
//!   loads its stored snapshot and processes the same commit bytes once, inside
//!   [`contender_mls_rs_load_and_process`] (the issue-14 baseline of benches/process.rs).
//! * `repeat N CONTENDER K`: `run` K times over (the hub on a fresh copy of its storage each
//!   time, openmls on the one imported group, which processing without merging leaves as it
//!   was), for a sampling profiler on the native build (`perf record`): callgrind runs without the
//!   CPU's SHA extensions, so it overweights hashing.
//! * `time N`: the hub and openmls natively, 10 times each on fresh copies, medians (a sanity
//!   check of the ratio, not a benchmark).
//!
//! Profile with `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*contender_mimi_ds_process*' <binary> run N mimi_ds` (BENCHMARKS.md has
//! the exact commands). Without these arguments (`cargo bench` runs every bench, passing its
//! filter) it only prints its usage.

// Shared with benches/process.rs, which uses the parts this harness does not.
#[allow(dead_code)]
#[path = "support/group.rs"]
mod group;
#[allow(dead_code)]
#[path = "support/mls_rs_observer.rs"]
mod mls_rs_observer;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mimi_ds::storage::{
    DsStorage, InMemoryStorage, RecordKind, RecordWrite, VersionGuard, WriteOutcome, WriteSet,
};
use mimi_ds::testing::{TestDs, CIPHERSUITE};
use mimi_ds::{Outcome, Status, UnixTimeMs};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use tls_codec::{Deserialize as _, Serialize as _};

use mls_rs_observer::MlsRsObserver;

use group::{
    bench_ds, build_group_with_ds_keys, commit_of, import_public_group, public_message_of,
};

/// Welcome trees are keyed by epoch; the prepared group is young, so these cover them all.
const WELCOME_EPOCHS: std::ops::Range<u64> = 0..16;

/// Everything `run` needs, as written by `prepare`.
struct Prepared {
    /// The hub's `SignatureKeyPair` (its serde encoding, JSON).
    ds_keys: Vec<u8>,
    now_ms: u64,
    group_id: Vec<u8>,
    /// `(kind, record)` of every record the group has.
    records: Vec<(RecordKind, Vec<u8>)>,
    update_request: Vec<u8>,
    group_info: Vec<u8>,
    ratchet_tree: Vec<u8>,
}

fn path(size: usize) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("profile_commit")
        .join(format!("{size}.bin"))
}

/// A record kind as one tag: its index in [`RecordKind::ALL`], or 255 and the epoch.
fn kind_tag(kind: RecordKind) -> Vec<u8> {
    match kind {
        RecordKind::WelcomeTree { epoch } => [&[255u8][..], &epoch.to_be_bytes()].concat(),
        other => vec![RecordKind::ALL
            .iter()
            .position(|k| *k == other)
            .expect("a listed kind") as u8],
    }
}

fn kind_of(tag: &[u8]) -> RecordKind {
    match tag {
        [255, epoch @ ..] => RecordKind::WelcomeTree {
            epoch: u64::from_be_bytes(epoch.try_into().expect("an epoch")),
        },
        [index] => RecordKind::ALL[*index as usize],
        _ => panic!("bad record tag"),
    }
}

/// Length-prefixed fields, in the order of [`Prepared`].
impl Prepared {
    fn encode(&self) -> Vec<u8> {
        let mut fields: Vec<Vec<u8>> = vec![
            self.ds_keys.clone(),
            self.now_ms.to_be_bytes().to_vec(),
            self.group_id.clone(),
            self.update_request.clone(),
            self.group_info.clone(),
            self.ratchet_tree.clone(),
        ];
        for (kind, record) in &self.records {
            fields.push(kind_tag(*kind));
            fields.push(record.clone());
        }
        let mut out = Vec::new();
        for field in fields {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(&field);
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> Self {
        let mut fields = Vec::new();
        while !bytes.is_empty() {
            let (len, rest) = bytes.split_at(8);
            let len = u64::from_be_bytes(len.try_into().expect("8 bytes")) as usize;
            let (field, rest) = rest.split_at(len);
            fields.push(field.to_vec());
            bytes = rest;
        }
        let mut fields = fields.into_iter();
        let mut next = || fields.next().expect("a prepared field");
        let ds_keys = next();
        let now_ms = u64::from_be_bytes(next().try_into().expect("8 bytes"));
        let group_id = next();
        let update_request = next();
        let group_info = next();
        let ratchet_tree = next();
        let mut records = Vec::new();
        while let Some(tag) = fields.next() {
            let record = fields.next().expect("a record after its kind");
            records.push((kind_of(&tag), record));
        }
        Self {
            ds_keys,
            now_ms,
            group_id,
            records,
            update_request,
            group_info,
            ratchet_tree,
        }
    }

    fn ds_keys(&self) -> SignatureKeyPair {
        serde_json::from_slice(&self.ds_keys).expect("the hub's keys")
    }

    /// A storage holding the group's records (at version 1: the version is not in any record).
    fn storage(&self) -> InMemoryStorage {
        let mut storage = InMemoryStorage::new();
        let outcome = storage
            .write(&WriteSet {
                group_id: self.group_id.clone(),
                guard: VersionGuard::Absent,
                records: self
                    .records
                    .iter()
                    .map(|(kind, record)| RecordWrite::Put(*kind, record.clone()))
                    .collect(),
                replay_mark: None,
                now_ms: self.now_ms,
                fanout: Vec::new(),
            })
            .expect("in-memory write");
        assert!(matches!(outcome, WriteOutcome::Applied), "records stored");
        storage
    }

    fn public_group(&self) -> (openmls_rust_crypto::OpenMlsRustCrypto, PublicGroup) {
        import_public_group(
            MlsMessageIn::tls_deserialize_exact(&self.group_info).expect("GroupInfo"),
            RatchetTreeIn::tls_deserialize_exact(&self.ratchet_tree).expect("tree"),
        )
    }
}

fn prepare(size: usize) {
    let started = Instant::now();
    let ds_keys = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("keys");
    let encoded_keys = serde_json::to_vec(&ds_keys).expect("encode the hub's keys");
    let built = build_group_with_ds_keys(size, ds_keys);
    let (ds, mut alice) = (built.ds, built.alice);
    let now_ms = ds.now_ms;
    let kinds: Vec<RecordKind> = RecordKind::ALL
        .into_iter()
        .chain(WELCOME_EPOCHS.map(|epoch| RecordKind::WelcomeTree { epoch }))
        .collect();
    let snapshot = ds
        .storage
        .read(&built.group_id, &kinds)
        .expect("in-memory read")
        .expect("the group exists");
    let group_info = alice
        .group()
        .export_group_info(alice.provider.crypto(), &alice.signer, false)
        .expect("group info")
        .tls_serialize_detached()
        .expect("encode");
    let ratchet_tree = alice
        .group()
        .export_ratchet_tree()
        .tls_serialize_detached()
        .expect("encode");
    let prepared = Prepared {
        ds_keys: encoded_keys,
        now_ms,
        group_id: built.group_id,
        records: snapshot.records,
        update_request: alice.update_request(now_ms),
        group_info,
        ratchet_tree,
    };
    let file = path(size);
    std::fs::create_dir_all(file.parent().expect("a directory")).expect("mkdir");
    std::fs::write(&file, prepared.encode()).expect("write");
    eprintln!(
        "prepared {size} members in {:.1?}: {} ({} records)",
        started.elapsed(),
        file.display(),
        prepared.records.len()
    );
    // The prepared request must be accepted by a hub rebuilt from the file alone.
    let loaded = Prepared::decode(&std::fs::read(&file).expect("read"));
    let outcome = process_once(&bench_ds(loaded.ds_keys()), &loaded);
    assert_eq!(outcome.status, Status::Accepted);
}

/// The hub's contender: one `process` of the update commit.
#[inline(never)]
fn contender_mimi_ds_process(
    ds: &mimi_ds::DeliveryService<RustCrypto>,
    now: UnixTimeMs,
    request: &[u8],
    storage: &mut InMemoryStorage,
) -> Outcome {
    ds.process(now, request, storage).expect("infallible")
}

/// The baseline: openmls validating the same commit, without load or merge.
#[inline(never)]
fn contender_openmls_process_message(
    provider: &openmls_rust_crypto::OpenMlsRustCrypto,
    public: &mut PublicGroup,
    message: PublicMessageIn,
) -> ProcessedMessage {
    public
        .process_message(provider.crypto(), message)
        .expect("valid commit")
}

/// The mls-rs baseline: load the stored snapshot and process the same commit.
#[inline(never)]
fn contender_mls_rs_load_and_process(
    observer: &MlsRsObserver,
    commit: &[u8],
) -> mls_rs::external_client::ExternalGroup<mls_rs_observer::Config> {
    observer.load_and_process(commit)
}

fn process_once(ds: &TestDs, prepared: &Prepared) -> Outcome {
    let mut storage = prepared.storage();
    let outcome = contender_mimi_ds_process(
        &ds.ds,
        UnixTimeMs(prepared.now_ms),
        &prepared.update_request,
        &mut storage,
    );
    assert_eq!(
        outcome.status,
        Status::Accepted,
        "the hub accepts the commit"
    );
    outcome
}

fn load(size: usize) -> Prepared {
    let file = path(size);
    let bytes = std::fs::read(&file)
        .unwrap_or_else(|e| panic!("{}: {e}; run `prepare {size}` first", file.display()));
    Prepared::decode(&bytes)
}

/// Runs one contender `times` times on the prepared commit.
fn run(prepared: &Prepared, contender: &str, times: usize) {
    match contender {
        "mimi_ds" => {
            let ds = bench_ds(prepared.ds_keys());
            for _ in 0..times {
                drop(process_once(&ds, prepared));
            }
        }
        "openmls" => {
            // Processing (without merging) leaves the imported group as it was, so one import
            // serves every repetition and the profile is not drowned in import costs.
            let (provider, mut public) = prepared.public_group();
            let commit = commit_of(&prepared.update_request);
            for _ in 0..times {
                let message = public_message_of(&commit);
                drop(contender_openmls_process_message(
                    &provider,
                    &mut public,
                    message,
                ));
            }
        }
        "mls_rs" => {
            let observer = MlsRsObserver::new(&prepared.group_info, &prepared.ratchet_tree);
            let commit = commit_of(&prepared.update_request).into_bytes();
            for _ in 0..times {
                drop(contender_mls_rs_load_and_process(&observer, &commit));
            }
        }
        other => panic!("profile_commit: unknown contender {other}: mimi_ds, openmls or mls_rs"),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(size: usize) {
    let prepared = load(size);
    let ds = bench_ds(prepared.ds_keys());
    let mut hub = Vec::new();
    let mut openmls = Vec::new();
    for _ in 0..10 {
        let mut storage = prepared.storage();
        let started = Instant::now();
        let outcome = contender_mimi_ds_process(
            &ds.ds,
            UnixTimeMs(prepared.now_ms),
            &prepared.update_request,
            &mut storage,
        );
        hub.push(started.elapsed());
        assert_eq!(outcome.status, Status::Accepted);
        let (provider, mut public) = prepared.public_group();
        let message = public_message_of(&commit_of(&prepared.update_request));
        let started = Instant::now();
        let processed = contender_openmls_process_message(&provider, &mut public, message);
        openmls.push(started.elapsed());
        drop(processed);
    }
    let (hub, openmls) = (median(hub), median(openmls));
    println!(
        "N={size}: mimi-ds process {hub:.2?}, openmls process_message {openmls:.2?}, ratio {:.2}",
        hub.as_secs_f64() / openmls.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; only the positional arguments matter here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let size = |s: &str| -> usize { s.parse().expect("a member count") };
    match args.as_slice() {
        ["prepare", n] => prepare(size(n)),
        ["run", n, contender] => run(&load(size(n)), contender, 1),
        ["repeat", n, contender, times] => {
            run(&load(size(n)), contender, times.parse().expect("a count"))
        }
        ["time", n] => time(size(n)),
        // Not a command of this harness: a criterion filter of `cargo bench -- FILTER`, or
        // nothing at all. Say how to use it and let the other benches run.
        _ => eprintln!(
            "profile_commit: `prepare N`, `run N mimi_ds|openmls|mls_rs`, \
             `repeat N mimi_ds|openmls|mls_rs K` or `time N` (see benches/profile_commit.rs)"
        ),
    }
}
