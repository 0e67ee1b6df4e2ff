//! Sealed queue IDs (MIMIMI flow F, digest §5.9; wire-format.md §10.1).
//!
//! A client seals its queue ID and the queue's fanout token to its provider's queue key and
//! publishes the ciphertext as `ClientQueueConfig.queue`. The hub carries it but cannot read
//! it, so it cannot tell that two groups reach the same queue; only the provider opens it.
//! `EncryptWithLabel(queue_key, "MIMIMI QueueId", provider_domain, QueueInfoPlaintext)`
//! (RFC 9420 §5.1.3), with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-128-GCM.

use hpke_rs::hpke_types::{AeadAlgorithm, KdfAlgorithm, KemAlgorithm};
use hpke_rs::rustcrypto::HpkeRustCrypto;
use hpke_rs::{Hpke, HpkePrivateKey, HpkePublicKey, Mode};
use tls_codec::VLBytes;

use crate::wire::{
    decode_exact, encode, encrypt_context, ClientQueueConfig, HpkeCiphertext, QueueInfoPlaintext,
    QUEUE_ID_LABEL,
};

fn hpke() -> Hpke<HpkeRustCrypto> {
    Hpke::new(
        Mode::Base,
        KemAlgorithm::DhKem25519,
        KdfAlgorithm::HkdfSha256,
        AeadAlgorithm::Aes128Gcm,
    )
}

/// A provider's HPKE key pair for queue information. Derive it from secret seed bytes the
/// embedding server keeps (randomness is an input: the QS never draws its own).
pub struct QueueKey {
    public: Vec<u8>,
    private: HpkePrivateKey,
}

impl std::fmt::Debug for QueueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("QueueKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Why queue information could not be sealed or a key derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The seed is too short (at least 32 bytes) or the key is not an X25519 public key.
    #[error("invalid HPKE key material")]
    InvalidKey,
    /// HPKE or encoding failed.
    #[error("sealing failed")]
    Sealing,
}

impl QueueKey {
    /// Derives the key pair from at least 32 secret bytes (RFC 9180 `DeriveKeyPair`).
    pub fn derive(seed: &[u8]) -> Result<Self, SealError> {
        if seed.len() < 32 {
            return Err(SealError::InvalidKey);
        }
        let pair = hpke()
            .derive_key_pair(seed)
            .map_err(|_| SealError::InvalidKey)?;
        let (private, public) = pair.into_keys();
        Ok(Self {
            public: public.as_slice().to_vec(),
            private,
        })
    }

    /// The public key clients seal to.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Opens sealed queue information addressed to `provider_domain`. `None` for anything that
    /// does not open: the caller treats that like an unknown queue.
    pub(crate) fn open(&self, provider_domain: &[u8], sealed: &[u8]) -> Option<QueueInfoPlaintext> {
        let ciphertext: HpkeCiphertext = decode_exact(sealed).ok()?;
        let info = encrypt_context(QUEUE_ID_LABEL, provider_domain).ok()?;
        let plaintext = hpke()
            .open(
                ciphertext.kem_output.as_slice(),
                &self.private,
                &info,
                &[],
                ciphertext.ciphertext.as_slice(),
                None,
                None,
                None,
            )
            .ok()?;
        decode_exact(&plaintext).ok()
    }
}

/// The client side: seals a queue ID and its token to the provider's queue key and returns the
/// `ClientQueueConfig` to publish in a KeyPackage or leaf (extension 0xF1D5). Seal afresh for
/// every KeyPackage and leaf: a ciphertext used in two groups links them for the hub.
pub fn seal_queue_info(
    provider_domain: &str,
    queue_encryption_key: &[u8],
    queue_id: &[u8],
    fanout_auth_token: &[u8],
) -> Result<ClientQueueConfig, SealError> {
    let plaintext = encode(&QueueInfoPlaintext {
        queue_id: queue_id.to_vec().into(),
        fanout_auth_token: fanout_auth_token.to_vec().into(),
    })
    .map_err(|_| SealError::Sealing)?;
    let info = encrypt_context(QUEUE_ID_LABEL, provider_domain.as_bytes())
        .map_err(|_| SealError::Sealing)?;
    let key = HpkePublicKey::from(queue_encryption_key.to_vec());
    let (kem_output, ciphertext) = hpke()
        .seal(&key, &info, &[], &plaintext, None, None, None)
        .map_err(|e| match e {
            hpke_rs::HpkeError::InvalidInput | hpke_rs::HpkeError::CryptoError(_) => {
                SealError::InvalidKey
            }
            _ => SealError::Sealing,
        })?;
    let sealed = encode(&HpkeCiphertext {
        kem_output: kem_output.into(),
        ciphertext: ciphertext.into(),
    })
    .map_err(|_| SealError::Sealing)?;
    Ok(ClientQueueConfig {
        provider_domain: VLBytes::from(provider_domain.as_bytes().to_vec()),
        queue: sealed.into(),
    })
}
