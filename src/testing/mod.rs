//! Real openmls clients and an in-process DS, for tests, the demo, benches and fuzzing
//! (feature `test-utils`).
//!
//! Everything here drives real `MlsGroup`s: commits, Welcomes and application messages are
//! produced by openmls, never hand-made. The helpers panic on unexpected errors, which is what
//! a test wants; do not use them in production code.
//!
//! - [`TestDs`] (`ds.rs`) and [`TestQs`] (`qs.rs`): the services with in-memory storage and a
//!   manual clock;
//! - [`TestClient`] (`client.rs`, its request builders in `requests.rs`): an openmls member with
//!   its own keys and queue;
//! - the shared checks every test uses (`checks.rs`): [`TestDs::accept`], [`TestDs::reject`],
//!   [`assert_unchanged`] and their QS counterparts;
//! - [`mimimi::MimimiProvider`] and [`mimimi::MimimiUser`] (`mimimi.rs`): a whole provider
//!   behind its router and a user's MIMIMI secrets, for examples/mimimi.rs and its test;
//! - [`RecordingStorage`] and [`RecordingQsStorage`] (`recording.rs`): storage wrappers that
//!   record what a request reads and writes, and can inject conflicts or let a rival writer win
//!   a race, for the concurrency and fault tests.

#[cfg(feature = "app-data-update")]
pub mod app_data;
mod checks;
mod client;
pub mod conformance;
pub mod connection;
pub mod directory;
pub mod driver;
mod ds;
pub mod franking;
pub mod mimimi;
pub mod policy;
pub mod privacy;
pub mod pseudonymous;
mod qs;
mod recording;
mod requests;
pub mod seeded;
pub mod self_remove;

pub use checks::{
    accepted_message, assert_accepted, assert_client_rejected, assert_rejected, assert_unchanged,
    error_description, proposal_refs, Refusal,
};
pub use client::{Received, TestClient};
pub use ds::{ds_identity, ds_identity_with_keys, TestDs, GROUP_CACHE_MODE_VAR};
pub use qs::{client_request_via_driver, deliver_via_driver, TestQs};
pub use recording::{Fault, RecordedRead, RecordingQsStorage, RecordingStorage};
pub use requests::ExternalJoinOptions;

use openmls::prelude::*;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::types::HpkeKeyPair;
use tls_codec::Serialize as _;

use crate::wire::{
    decode_exact, DsRequestBody, DsResponse, ExternalCommitInfo, GroupUpdate,
    MembershipCommitRequest, MlsMessageBytes,
};

/// The ciphersuite the test clients use.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// A fixed, plausible start time (2026-01-01T00:00:00Z) so runs are reproducible.
pub const START_MS: u64 = 1_767_225_600_000;

/// Decodes a `DSResponse` (panics if the DS produced an undecodable one).
pub fn decode_response(bytes: &[u8]) -> DsResponse {
    decode_exact::<DsResponse>(bytes).expect("the DS produced a decodable response")
}

/// A fresh HPKE key pair of the harness's ciphersuite, to have a `group_info` answer
/// encrypted to (wire-format.md §5.5).
pub fn group_info_encryption_keys() -> HpkeKeyPair {
    let crypto = RustCrypto::default();
    let ikm = openmls_traits::random::OpenMlsRand::random_vec(&crypto, 32).expect("randomness");
    openmls_traits::crypto::OpenMlsCrypto::derive_hpke_keypair(
        &crypto,
        CIPHERSUITE.hpke_config(),
        &ikm,
    )
    .expect("HPKE key pair")
}

/// Opens an `encrypted_external_commit_info` answer with the requester's HPKE private key.
pub fn open_external_commit_info(
    sealed: &crate::wire::HpkeCiphertext,
    group_id: &[u8],
    keys: &HpkeKeyPair,
) -> Result<ExternalCommitInfo, String> {
    let context = crate::wire::encrypt_context(crate::wire::GROUP_INFO_ENCRYPTION_LABEL, group_id)
        .map_err(|e| e.to_string())?;
    let plaintext = openmls_traits::crypto::OpenMlsCrypto::hpke_open(
        &RustCrypto::default(),
        CIPHERSUITE.hpke_config(),
        &openmls_traits::types::HpkeCiphertext {
            kem_output: sealed.kem_output.clone(),
            ciphertext: sealed.ciphertext.clone(),
        },
        keys.private.as_ref(),
        &context,
        &[],
    )
    .map_err(|e| format!("{e:?}"))?;
    decode_exact::<ExternalCommitInfo>(&plaintext).map_err(|e| e.to_string())
}

/// A `commits` body without Welcomes.
pub fn commit_body(update: GroupUpdate) -> DsRequestBody {
    DsRequestBody::Commits(MembershipCommitRequest {
        group_update: update,
        welcome_messages: Vec::new(),
    })
}

/// The bytes of an outgoing openmls message as a wire [`MlsMessageBytes`].
pub fn mls_bytes(message: &MlsMessageOut) -> MlsMessageBytes {
    MlsMessageBytes::from_bytes(message.tls_serialize_detached().expect("encode"))
        .expect("valid MLSMessage")
}
