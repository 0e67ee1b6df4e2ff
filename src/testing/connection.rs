//! Helpers for connection-establishment tests (`crate::connection`): a user's real identity
//! next to the pseudonymous clients it uses in connection rooms, reading a commit's
//! authenticated data, and searching stored bytes for secrets.

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::random::OpenMlsRand;

use super::{TestClient, CIPHERSUITE};
use crate::wire::FanoutMessage;

/// A user's real client identity (its credential and signature key) and the secrets of its
/// connections: what must never reach a provider or the hub in the clear.
pub struct RealIdentity {
    /// The real credential: a BasicCredential naming `mimi://<provider>/d/<user>/<client>`.
    pub credential: Credential,
    /// Its signature key.
    pub signer: SignatureKeyPair,
    /// The user's connection key (MM-01, the keys a user holds).
    pub connection_key: Vec<u8>,
    /// The user's connection token.
    pub connection_token: Vec<u8>,
}

impl RealIdentity {
    /// Client `client` of `user` at `provider_domain`, with fresh keys.
    pub fn new(user: &str, client: &str, provider_domain: &str) -> Self {
        let crypto = openmls_rust_crypto::RustCrypto::default();
        Self {
            credential: BasicCredential::new(
                format!("mimi://{provider_domain}/d/{user}/{client}").into_bytes(),
            )
            .into(),
            signer: SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
                .expect("key generation"),
            connection_key: crypto.random_vec(32).expect("randomness"),
            connection_token: crypto.random_vec(32).expect("randomness"),
        }
    }

    /// The credential's identity bytes.
    pub fn identity(&self) -> Vec<u8> {
        BasicCredential::try_from(self.credential.clone())
            .expect("a BasicCredential")
            .identity()
            .to_vec()
    }

    /// The public signature key.
    pub fn signature_key(&self) -> Vec<u8> {
        self.signer.to_public_vec()
    }
}

/// A client for a connection room whose credential names random pseudonyms at
/// `provider_domain` (`mimi://<provider>/d/<random>/<random>`), not the user.
pub fn pseudonymous_client(provider_domain: &str) -> TestClient {
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let user = hex(crypto.random_vec(16).expect("randomness"));
    let client = hex(crypto.random_vec(16).expect("randomness"));
    TestClient::new(&user, &client, provider_domain)
}

impl TestClient {
    /// Processes one delivered commit and returns the authenticated data it carried (where a
    /// connection response rides, `crate::connection`), after merging it.
    pub fn receive_commit_with_aad(&mut self, message: &FanoutMessage) -> Vec<u8> {
        let protocol = match message.message.parse().expect("an MLSMessage").extract() {
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            other => panic!("not a handshake message: {other:?}"),
        };
        let provider = &self.provider;
        let group = self.group.as_mut().expect("client has a group");
        let processed = group.process_message(provider, protocol).expect("process");
        let aad = processed.aad().to_vec();
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            panic!("not a commit");
        };
        group.merge_staged_commit(provider, *staged).expect("merge");
        aad
    }
}

/// Whether `needle` occurs in `dump`, the `{:?}` output of a store: as a run of a decimal
/// byte list (`Vec<u8>` prints `[109, 105, ...]`), as lowercase hex (`VLBytes` prints
/// `VLBytes { 0x6d69... }`), or as text (a `String`).
pub fn debug_dump_contains(dump: &str, needle: &[u8]) -> bool {
    assert!(!needle.is_empty(), "an empty needle is everywhere");
    let inner = needle
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let hex = needle
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let decimal = [
        format!("[{inner},"),
        format!("[{inner}]"),
        format!(" {inner},"),
        format!(" {inner}]"),
    ]
    .iter()
    .any(|pattern| dump.contains(pattern.as_str()));
    let text = std::str::from_utf8(needle).is_ok_and(|text| dump.contains(text));
    decimal || dump.contains(&hex) || text
}
