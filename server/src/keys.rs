//! The keys kept in the state folder: the hub's MLS signature key (its external-sender
//! identity, which every group it serves names), the QS's queue key (which opens the
//! sealed queue IDs clients publish) and the connection-inbox key (which opens the sealed
//! inbox addresses of connection requests). All are created on first start and must survive
//! restarts: a new key strands every existing group or queue.

use std::path::Path;

use mimi_ds::qs::QueueKey;
use mimi_ds::DsIdentity;
use openmls::prelude::{
    BasicCredential, Credential, ExternalSender, SignaturePublicKey, SignatureScheme,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand;
use tls_codec::{DeserializeBytes as _, Serialize as _};

use crate::StartError;

/// Reads `name` in `dir`, or creates it with `make()` (owner-readable only).
fn load_or_create(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> Result<Vec<u8>, StartError>,
) -> Result<Vec<u8>, StartError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make()?;
            // Written whole to a temporary name of this process, synced, then linked to the
            // real name: a crash never leaves a cut-short key that the next start would
            // refuse (or, worse, a new key beside a database made with the old one). The link
            // fails if the name exists, so of several instances started at once on one state
            // folder, the first to link creates the key and the others read it: one hub
            // identity, one queue key (a rename would let each keep its own).
            let temporary = dir.join(format!("{name}.{}.tmp", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            let linked = std::fs::hard_link(&temporary, &path);
            std::fs::remove_file(&temporary)?;
            match linked {
                Ok(()) => Ok(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Ok(std::fs::read(&path)?)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The QS's queue key, from a 32-byte seed.
pub(crate) fn queue_key(dir: &Path) -> Result<QueueKey, StartError> {
    let seed = load_or_create(dir, "qs-queue-key.seed", || {
        RustCrypto::default()
            .random_vec(32)
            .map_err(|e| StartError::Keys(e.to_string()))
    })?;
    QueueKey::derive(&seed).map_err(|e| StartError::Keys(e.to_string()))
}

/// The seed of the provider's connection-inbox key (`mimi_ds::connection::ConnectionProvider`:
/// it seals and opens the inbox addresses of served connection keys, wire-format.md §14.3.2),
/// 32 random bytes. A new seed makes every address served before unusable.
pub(crate) fn connection_inbox_seed(dir: &Path) -> Result<Vec<u8>, StartError> {
    load_or_create(dir, "connection-inbox-key.seed", || {
        RustCrypto::default()
            .random_vec(32)
            .map_err(|e| StartError::Keys(e.to_string()))
    })
}

/// The hub's identity: an Ed25519 key pair (TLS-encoded, as openmls stores it) and a
/// BasicCredential naming its domain.
pub(crate) fn hub_identity(
    dir: &Path,
    domain: &str,
) -> Result<(DsIdentity, ExternalSender), StartError> {
    let bytes = load_or_create(dir, "hub-signature.key", || {
        let keys = SignatureKeyPair::new(SignatureScheme::ED25519)
            .map_err(|e| StartError::Keys(e.to_string()))?;
        keys.tls_serialize_detached()
            .map_err(|e| StartError::Keys(e.to_string()))
    })?;
    let keys = SignatureKeyPair::tls_deserialize_exact_bytes(&bytes).map_err(|e| {
        StartError::Keys(format!("{}: {e}", dir.join("hub-signature.key").display()))
    })?;
    let signature_key = SignaturePublicKey::from(keys.to_public_vec());
    let credential: Credential = BasicCredential::new(domain.as_bytes().to_vec()).into();
    let sender = ExternalSender::new(signature_key.clone(), credential.clone());
    Ok((
        DsIdentity {
            signature_key,
            credential,
            signer: Box::new(keys),
        },
        sender,
    ))
}
