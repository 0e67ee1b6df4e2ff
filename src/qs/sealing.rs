//! Sealed queue IDs (MIMIMI, draft-kohbrok-mimi-metadata-minimalization-01; docs/decisions.md
//! D18; wire-format.md §10.1).
//!
//! A client seals its queue ID and the queue's fanout token to its provider's queue key and
//! publishes the ciphertext as `ClientQueueConfig.queue`. The hub carries it but cannot read
//! it, so it cannot tell that two groups reach the same queue; only the provider opens it.
//! `EncryptWithLabel(queue_key, "MIMIMI QueueId", QueueInfoContext, QueueInfoPlaintext)`
//! (RFC 9420 §5.1.3), with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-128-GCM. The
//! context names the provider and the one hub that may deliver with the ciphertext: everyone
//! who sees a leaf (members, the hub, whoever is served `group_info`) sees the ciphertext, and
//! without the binding any authenticated provider could replay it to deliver into the queue.
//!
//! The answer to `create_queue` is sealed the same way to a key the client sends in its
//! signed request ([`CreateQueueKey`]), so a replayed or observed request reveals nothing.

use hpke_rs::hpke_types::{AeadAlgorithm, KdfAlgorithm, KemAlgorithm};
use hpke_rs::rustcrypto::HpkeRustCrypto;
use hpke_rs::{Hpke, HpkePrivateKey, Mode};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{HpkeAeadType, HpkeConfig, HpkeKdfType, HpkeKemType};
use tls_codec::VLBytes;

use crate::wire::{
    decode_exact, encode, encrypt_context, ClientQueueConfig, HpkeCiphertext, QueueCreated,
    QueueInfoContext, QueueInfoPlaintext, QUEUE_CREATED_LABEL, QUEUE_ID_LABEL,
};

/// The HPKE suite of queue information and of `create_queue` answers (wire-format.md §10.1).
const QUEUE_HPKE: HpkeConfig = HpkeConfig(
    HpkeKemType::DhKem25519,
    HpkeKdfType::HkdfSha256,
    HpkeAeadType::AesGcm128,
);

/// hpke-rs for what needs no randomness (key derivation, opening); sealing draws an ephemeral
/// key, so it goes through the caller's [`OpenMlsCrypto`] ([`seal_with_label`]).
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

    /// Opens sealed queue information addressed to `provider_domain` for deliveries from
    /// `hub_domain`. `None` for anything that does not open: the caller treats that like an
    /// unknown queue.
    pub(crate) fn open(
        &self,
        provider_domain: &[u8],
        hub_domain: &[u8],
        sealed: &[u8],
    ) -> Option<QueueInfoPlaintext> {
        let context = queue_info_context(provider_domain, hub_domain).ok()?;
        open_with_label(&self.private, QUEUE_ID_LABEL, &context, sealed)
    }
}

/// The encoded [`QueueInfoContext`].
fn queue_info_context(
    provider_domain: &[u8],
    hub_domain: &[u8],
) -> Result<Vec<u8>, tls_codec::Error> {
    encode(&QueueInfoContext {
        provider_domain: provider_domain.to_vec().into(),
        hub_domain: hub_domain.to_vec().into(),
    })
}

/// RFC 9420 §5.1.3 `DecryptWithLabel` of an encoded `HPKECiphertext` into a `T`.
fn open_with_label<T: tls_codec::DeserializeBytes>(
    private: &HpkePrivateKey,
    label: &str,
    context: &[u8],
    sealed: &[u8],
) -> Option<T> {
    let ciphertext: HpkeCiphertext = decode_exact(sealed).ok()?;
    let info = encrypt_context(label, context).ok()?;
    let plaintext = hpke()
        .open(
            ciphertext.kem_output.as_slice(),
            private,
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

/// RFC 9420 §5.1.3 `EncryptWithLabel` of an encoded plaintext, as an `HPKECiphertext`. The
/// ephemeral key comes from `crypto`, the caller's source of randomness, never from a generator
/// of its own: randomness is an input, so a seeded provider makes the ciphertext reproducible.
pub(crate) fn seal_with_label(
    crypto: &impl OpenMlsCrypto,
    public_key: &[u8],
    label: &str,
    context: &[u8],
    plaintext: &[u8],
) -> Result<HpkeCiphertext, SealError> {
    let info = encrypt_context(label, context).map_err(|_| SealError::Sealing)?;
    // The plaintext and info are ours and well formed, so HPKE refuses only the key: one that
    // is not an X25519 public key (wrong length, or a point DH rejects).
    let sealed = crypto
        .hpke_seal(QUEUE_HPKE, public_key, &info, &[], plaintext)
        .map_err(|_| SealError::InvalidKey)?;
    Ok(HpkeCiphertext {
        kem_output: sealed.kem_output,
        ciphertext: sealed.ciphertext,
    })
}

/// A client's HPKE key pair for the answer to `create_queue` (wire-format.md §10.3): the
/// public key goes into the signed request as `response_key`, the QS seals its
/// [`QueueCreated`] to it, and only this key opens it. Derive it from fresh secret bytes for
/// each request.
pub struct CreateQueueKey {
    public: Vec<u8>,
    private: HpkePrivateKey,
}

impl std::fmt::Debug for CreateQueueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateQueueKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl CreateQueueKey {
    /// Derives the key pair from at least 32 secret bytes (RFC 9180 `DeriveKeyPair`).
    pub fn derive(seed: &[u8]) -> Result<Self, SealError> {
        let QueueKey { public, private } = QueueKey::derive(seed)?;
        Ok(Self { public, private })
    }

    /// The public key to send as `response_key`.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Opens the `encrypted_queue_created` answer of the QS at `provider_domain`. `None` if it
    /// was not sealed to this key by that provider.
    pub fn open(&self, provider_domain: &str, sealed: &HpkeCiphertext) -> Option<QueueCreated> {
        let bytes = encode(sealed).ok()?;
        open_with_label(
            &self.private,
            QUEUE_CREATED_LABEL,
            provider_domain.as_bytes(),
            &bytes,
        )
    }
}

/// The client side: seals a queue ID and its token to the provider's queue key, for
/// deliveries from `hub_domain` only, and returns the `ClientQueueConfig` to publish in a
/// KeyPackage or leaf (extension 0xF1D5). A client in groups on several hubs publishes a
/// different ciphertext in each (each group's leaf carries its own); seal afresh for every
/// KeyPackage and leaf anyway: a ciphertext used in two groups links them for the hub.
///
/// `crypto` supplies the HPKE ephemeral key (e.g. `openmls_rust_crypto::RustCrypto`, or the
/// client's openmls provider's crypto).
pub fn seal_queue_info(
    crypto: &impl OpenMlsCrypto,
    provider_domain: &str,
    hub_domain: &str,
    queue_encryption_key: &[u8],
    queue_id: &[u8],
    fanout_auth_token: &[u8],
) -> Result<ClientQueueConfig, SealError> {
    let plaintext = encode(&QueueInfoPlaintext {
        queue_id: queue_id.to_vec().into(),
        fanout_auth_token: fanout_auth_token.to_vec().into(),
    })
    .map_err(|_| SealError::Sealing)?;
    let context = queue_info_context(provider_domain.as_bytes(), hub_domain.as_bytes())
        .map_err(|_| SealError::Sealing)?;
    let ciphertext = seal_with_label(
        crypto,
        queue_encryption_key,
        QUEUE_ID_LABEL,
        &context,
        &plaintext,
    )?;
    let sealed = encode(&ciphertext).map_err(|_| SealError::Sealing)?;
    Ok(ClientQueueConfig {
        provider_domain: VLBytes::from(provider_domain.as_bytes().to_vec()),
        queue: sealed.into(),
    })
}
