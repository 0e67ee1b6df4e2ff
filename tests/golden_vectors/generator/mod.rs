//! The golden-vector generator: every message is made by real openmls clients and answered by
//! a real `TestDs` and `TestQs`, and every one of them is seeded ([`mimi_ds::testing::seeded`]),
//! so a run makes the same bytes as the last one unless the code changed. `served.rs` walks one
//! group through the operations the hub serves, `unserved.rs` makes the requests it refuses,
//! `qs.rs` covers the Queueing Service, `connection.rs` connection establishment and
//! `connection_endpoints.rs` the client-facing connection endpoints.
//!
//! `regenerate_golden_vectors` (ignored) rewrites `tests/vectors/*.hex`:
//!
//! ```text
//! cargo test --test golden_vectors -- --ignored regenerate
//! ```
//!
//! With `GOLDEN_ONLY_MISSING=1` it writes only the files that do not exist yet and deletes
//! nothing. `generator_is_deterministic` and `checked_in_vectors_are_what_the_generator_makes`
//! run with the ordinary tests.
//!
//! Every vector is deterministic, HPKE ciphertexts included: clients, the hub and the Queueing
//! Service seal through their seeded crypto, so their ephemeral keys come from the seed.
//!
//! When extending the scenario: keep to one Remove or Update per member-changing commit.
//! openmls orders the Removes and Updates of a commit that concerns several members through a
//! `HashMap` (`ProposalQueue::filter_proposals`), whose order changes from run to run, so such
//! a commit would make every byte after it differ. Adds keep their order.

mod connection;
mod connection_endpoints;
mod directory;
mod qs;
mod served;
mod unserved;

use std::collections::BTreeSet;
use std::path::Path;

use mimi_ds::qs::{QsOutcome, QsStatus};
use mimi_ds::testing::seeded::{seed, TestCrypto};
use mimi_ds::testing::{decode_response, Received, TestClient, TestDs, CIPHERSUITE};
use mimi_ds::wire::{
    decode_exact, encode, ClientQueueConfig, DsAuthData, DsRequest, DsRequestBody, DsResponseBody,
    ErrorCode, ExternalCommitInfo, GroupInfoOption, GroupInfoRequest, PartialGroupInfo,
    QsClientResponse, QsClientResponseBody, PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{Outcome, Status};
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::{MlsMessageBodyIn, Proposal, ReInitProposal, Verifiable as _};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{HashType, HpkeKeyPair};
use tls_codec::{DeserializeBytes, Serialize, VLBytes};

use super::{
    decode_vector, hex_files, load_all, parse_vector_file, render_vector_file, type_name_for,
    vector_path, TABLE, VECTORS_DIR,
};

/// The environment variable that restricts [`regenerate_golden_vectors`] to missing files.
const ONLY_MISSING_VAR: &str = "GOLDEN_ONLY_MISSING";

/// The hub of the DS vectors, its clock and its randomness seeded.
type SeededDs = TestDs<TestCrypto>;

/// Rebuilds every vector, then rewrites `tests/vectors/*.hex` (stale `.hex` files are deleted).
/// With `GOLDEN_ONLY_MISSING=1` it writes only the files that do not exist yet and deletes
/// nothing, so that adding a message type leaves the existing vectors byte-identical.
#[test]
#[ignore = "rewrites tests/vectors; run with `-- --ignored regenerate`"]
fn regenerate_golden_vectors() {
    let only_missing = std::env::var(ONLY_MISSING_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    let generated = checked_generate();

    let dir = Path::new(VECTORS_DIR);
    std::fs::create_dir_all(dir).expect("create tests/vectors");
    if !only_missing {
        for stale in hex_files(dir) {
            std::fs::remove_file(vector_path(&stale)).expect("remove stale vector");
        }
    }
    for vector in &generated {
        if only_missing && vector_path(vector.name).exists() {
            continue;
        }
        if only_missing {
            println!("writing {}", vector_path(vector.name).display());
        }
        std::fs::write(
            vector_path(vector.name),
            render_vector_file(&vector.what, &vector.bytes),
        )
        .expect("write vector");
    }
    load_all();
}

/// Two runs make the same vectors, byte for byte.
#[test]
fn generator_is_deterministic() {
    let first = generate();
    let second = generate();
    assert_eq!(first.len(), second.len());
    for (a, b) in first.iter().zip(&second) {
        assert_eq!((a.name, &a.what), (b.name, &b.what));
        assert!(a.bytes == b.bytes, "{}: differs between two runs", a.name);
    }
}

/// The files in `tests/vectors/` are what the generator makes now: a change to the wire format, to an error text or to the
/// scenario shows up here and as a reviewable diff after regenerating.
#[test]
fn checked_in_vectors_are_what_the_generator_makes() {
    for vector in checked_generate() {
        let text = std::fs::read_to_string(vector_path(vector.name)).expect("read vector");
        let file = parse_vector_file(vector.name, &text);
        let same = file.bytes == vector.bytes;
        assert!(
            same && file.comment == vector.what,
            "tests/vectors/{}.hex is not what the generator makes now. If the change is \
             intended, regenerate (`cargo test --test golden_vectors -- --ignored \
             regenerate`) and review `git diff tests/vectors`.",
            vector.name
        );
    }
}

/// [`generate`], checked against the table: every vector once, with the right comment and
/// the variant the table names.
fn checked_generate() -> Vec<Vector> {
    let generated = generate();
    let names: BTreeSet<String> = generated.iter().map(|v| v.name.to_owned()).collect();
    let table: BTreeSet<String> = TABLE.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(names.len(), generated.len(), "a vector was generated twice");
    assert_eq!(names, table, "the generator and TABLE disagree");
    for vector in &generated {
        let type_name = type_name_for(vector.name);
        assert!(
            vector.what.starts_with(&format!("{type_name}: ")),
            "{}: comment",
            vector.name
        );
        let decoded = decode_vector(vector.name, &vector.bytes);
        let check = TABLE
            .iter()
            .find(|(n, _)| *n == vector.name)
            .expect("in table")
            .1;
        assert!(
            check(&decoded),
            "{}: generated the wrong variant: {decoded:?}",
            vector.name
        );
    }
    generated
}

/// Every vector, in a fixed order.
fn generate() -> Vec<Vector> {
    let mut v = Vectors::default();
    let hub = served::run(&mut v);
    unserved::run(&mut v, hub);
    qs::fanout_responses(&mut v);
    qs::client_protocol(&mut v);
    connection::establishment(&mut v);
    directory::run(&mut v);
    connection_endpoints::run(&mut v);
    v.0
}

/// The group `served` leaves for `unserved`: at epoch 2 with alice-1 (leaf 0), bob-1 and
/// alice-2.
struct Hub {
    ds: SeededDs,
    group_id: Vec<u8>,
    alice: TestClient,
    alice2: TestClient,
    bob: TestClient,
}

/// A seeded client; its name is its seed.
fn client(user: &str, name: &str, provider_domain: &str) -> TestClient {
    TestClient::new_seeded(user, name, provider_domain, seed(&format!("golden {name}")))
}

/// An unauthenticated `group_info` request whose answer is to be encrypted to a fixed HPKE key
/// of the harness's ciphersuite (the requester's).
fn encrypted_group_info_request(group_id: &[u8]) -> (Vec<u8>, HpkeKeyPair) {
    let keys = RustCrypto::default()
        .derive_hpke_keypair(
            CIPHERSUITE.hpke_config(),
            &seed("golden group_info requester"),
        )
        .expect("HPKE key pair");
    let request = unauthenticated(DsRequestBody::GroupInfo(GroupInfoRequest {
        group_id: group_id.to_vec().into(),
        encryption_key: Some(keys.public.clone().into()),
    }));
    (request, keys)
}

/// One generated vector.
pub(super) struct Vector {
    pub(super) name: &'static str,
    /// The comment line after `# `: `<type>: <what it is>`.
    pub(super) what: String,
    pub(super) bytes: Vec<u8>,
}

#[derive(Default)]
struct Vectors(Vec<Vector>);

impl Vectors {
    fn add(&mut self, name: &'static str, what: impl Into<String>, bytes: Vec<u8>) {
        let type_name = super::type_name_for(name);
        self.0.push(Vector {
            name,
            what: format!("{type_name}: {}", what.into()),
            bytes,
        });
    }
}

fn accepted(out: &Outcome) {
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
}

fn rejected(out: &Outcome, code: ErrorCode) {
    assert_eq!(
        out.status,
        Status::Rejected(code),
        "{:?}",
        decode_response(&out.response)
    );
}

/// The body of a QS answer to a client request, checking the status it came with.
fn qs_answer(out: &QsOutcome, status: QsStatus) -> QsClientResponseBody {
    let body = decode_exact::<QsClientResponse>(&out.response)
        .expect("the QS produced a decodable QSClientResponse")
        .body;
    assert_eq!(out.status, status, "{body:?}");
    body
}

fn unauthenticated(body: DsRequestBody) -> Vec<u8> {
    encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode")
}

/// The fanout to `provider` of an outcome, encoded.
fn fanout_to(out: &Outcome, provider: &str) -> Vec<u8> {
    out.fanout
        .iter()
        .find(|f| f.destination == provider)
        .expect("fanout to provider")
        .to_bytes()
}

fn external_commit_info(
    ds: &mut SeededDs,
    group_id: &[u8],
) -> (Vec<u8>, Vec<u8>, ExternalCommitInfo) {
    let request = TestClient::group_info_request(group_id);
    let out = ds.process(&request);
    match decode_response(&out.response).body {
        DsResponseBody::ExternalCommitInfo(info) => (request, out.response, info),
        other => panic!("{other:?}"),
    }
}

fn join(client: &mut TestClient, tree: &mimi_ds::wire::RatchetTreeBytes) {
    let Some(Received::Welcome(welcome)) = client.process_inbox().pop() else {
        panic!("no Welcome")
    };
    client.join_from_welcome(&welcome, tree);
}

/// The content of a `<V>`-prefixed encoding.
fn vl_content(value: &impl Serialize) -> VLBytes {
    VLBytes::tls_deserialize_exact_bytes(&value.tls_serialize_detached().expect("encode"))
        .expect("vl")
}

/// The PartialGroupInfo a committer sends instead of the full GroupInfo.
fn to_partial(full: &GroupInfoOption) -> PartialGroupInfo {
    let GroupInfoOption::Full(bytes) = full else {
        panic!("expected a full GroupInfo")
    };
    let MlsMessageBodyIn::GroupInfo(vgi) = bytes.parse().expect("GroupInfo").extract() else {
        panic!()
    };
    let vgi: VerifiableGroupInfo = vgi;
    PartialGroupInfo {
        ratchet_tree_presence: mimi_ds::wire::RatchetTreePresence::NoRatchetTree,
        group_info_extensions: vl_content(vgi.extensions()),
        signature: vl_content(vgi.signature()),
    }
}

/// `RefHash(label, value)` (RFC 9420 §5.2) with SHA-256.
fn ref_hash(label: &[u8], value: &[u8]) -> Vec<u8> {
    let mut input = VLBytes::from(label.to_vec())
        .tls_serialize_detached()
        .expect("encode");
    input.extend(
        VLBytes::from(value.to_vec())
            .tls_serialize_detached()
            .expect("encode"),
    );
    RustCrypto::default()
        .hash(HashType::Sha2_256, &input)
        .expect("hash")
}

/// A ReInit proposal to a fresh group ID, same version, suite and no extensions (openmls
/// keeps the fields private, so it is decoded from its encoding).
fn reinit_proposal(new_group_id: &[u8]) -> Proposal {
    let mut bytes = VLBytes::from(new_group_id.to_vec())
        .tls_serialize_detached()
        .expect("encode");
    bytes.extend_from_slice(&1u16.to_be_bytes()); // mls10
    bytes.extend_from_slice(&(CIPHERSUITE as u16).to_be_bytes());
    bytes.push(0); // extensions<V>: empty
    Proposal::ReInit(Box::new(
        ReInitProposal::tls_deserialize_exact_bytes(&bytes).expect("ReInit"),
    ))
}

fn queue(provider: &str, queue: &str) -> ClientQueueConfig {
    ClientQueueConfig {
        provider_domain: provider.as_bytes().to_vec().into(),
        queue: queue.as_bytes().to_vec().into(),
    }
}
