//! The mls-rs baseline of benches/process.rs: an `ExternalGroup` (mls-rs's server-side
//! observer, the closest thing to a delivery service a vendor could take off the shelf) that
//! loads its stored snapshot and processes the commit bytes openmls produced.
//!
//! Interop: the openmls clients use ciphersuite 1 (X25519, AES-128-GCM, SHA-256, Ed25519) and
//! basic credentials (RFC 9420 §5.3); mls-rs's `BasicIdentityProvider` accepts those, and its
//! RustCrypto provider implements suite 1 with the same family of crates as
//! openmls_rust_crypto.

use mls_rs::external_client::builder::{
    ExternalBaseConfig, WithCryptoProvider, WithIdentityProvider,
};
use mls_rs::external_client::ExternalSnapshot;
use mls_rs::external_client::{ExternalClient, ExternalGroup, ExternalReceivedMessage};
use mls_rs::group::ExportedTree;
use mls_rs::identity::basic::BasicIdentityProvider;
use mls_rs::MlsMessage;
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

/// The observer's mls-rs configuration.
pub(crate) type Config = WithIdentityProvider<
    BasicIdentityProvider,
    WithCryptoProvider<RustCryptoProvider, ExternalBaseConfig>,
>;

/// An mls-rs external client and the stored snapshot of one group it observes.
pub(crate) struct MlsRsObserver {
    client: ExternalClient<Config>,
    /// `ExternalSnapshot::to_bytes` of the group: what an mls-rs based service would store.
    snapshot: Vec<u8>,
}

impl MlsRsObserver {
    /// Starts observing the group from a TLS-encoded `MlsMessage` carrying its GroupInfo and
    /// its TLS-encoded ratchet tree, both exported by an openmls member.
    pub(crate) fn new(group_info_message: &[u8], ratchet_tree: &[u8]) -> Self {
        let client = ExternalClient::builder()
            .crypto_provider(RustCryptoProvider::default())
            .identity_provider(BasicIdentityProvider::new())
            .build();
        let group_info = MlsMessage::from_bytes(group_info_message).expect("an MLSMessage");
        let tree = ExportedTree::from_bytes(ratchet_tree).expect("a ratchet tree");
        let group = client
            .observe_group(group_info, Some(tree), None)
            .expect("mls-rs accepts the openmls group");
        let snapshot = group.snapshot().to_bytes().expect("snapshot");
        Self { client, snapshot }
    }

    /// Loads the stored snapshot and processes one commit, as an mls-rs based service would
    /// for each commit it receives; returns the updated group so the caller can drop it
    /// outside the measurement.
    pub(crate) fn load_and_process(&self, commit: &[u8]) -> ExternalGroup<Config> {
        let snapshot = ExternalSnapshot::from_bytes(&self.snapshot).expect("snapshot");
        let mut group = self.client.load_group(snapshot).expect("load");
        let message = MlsMessage::from_bytes(commit).expect("an MLSMessage");
        match group.process_incoming_message(message) {
            Ok(ExternalReceivedMessage::Commit(_)) => group,
            other => panic!("mls-rs refused the openmls commit: {other:?}"),
        }
    }

    /// Size of the stored snapshot, for the storage comparison.
    pub(crate) fn snapshot_len(&self) -> usize {
        self.snapshot.len()
    }
}
