//! Deterministic keys and randomness for the harness: a run whose actors are seeded the same
//! way produces the same bytes. The golden vectors in `tests/vectors/` are made this way, so
//! regenerating them changes only what the code changed.
//!
//! [`TestCrypto`] is `openmls_rust_crypto`'s `RustCrypto` with its randomness made an input.
//! By default it *is* `RustCrypto` (randomness from the operating system), which is what the
//! harness's ordinary constructors use. [`TestCrypto::seeded`] instead draws every random byte
//! from a ChaCha20 RNG seeded by the caller. `RustCrypto` consumes randomness in three places,
//! and the seeded mode replaces each:
//!
//! - `OpenMlsRand` (`random_vec`, `random_array`: openmls's epoch and path secrets, HPKE key
//!   material, reuse guards, the DS's group IDs, the QS's queue IDs and tokens): from the RNG.
//! - `signature_key_gen`: an Ed25519 key whose 32 secret bytes come from the RNG.
//! - HPKE encryption (`hpke_seal`, `hpke_setup_sender_and_export`): hpke-rs draws the
//!   ephemeral key from an RNG of its own that no caller can seed, so the seeded mode runs the
//!   sender side of RFC 9180 itself: the ephemeral key is `DeriveKeyPair` (§7.1.3) of RNG
//!   bytes, `Encap` is DHKEM's (§4.1), and hpke-rs's public key schedule and AEAD finish the
//!   job. Receivers open the result with the unchanged `RustCrypto`.
//!
//! Everything else (hashes, HKDF, AEAD, signatures, which are deterministic Ed25519) is
//! `RustCrypto` in both modes.
//!
//! Not covered: a Queueing Service seals its `create_queue` answer with hpke-rs directly
//! (`crate::qs`), not through its injected crypto, so that one ciphertext still differs between
//! runs even with a seeded [`TestQs`].

use std::sync::Mutex;

use hpke_rs::hpke_types::{AeadAlgorithm, KdfAlgorithm, KemAlgorithm};
use hpke_rs::rustcrypto::HpkeRustCrypto;
use hpke_rs::{Context, Hpke, Mode};
use hpke_rs_crypto::HpkeCrypto as _;
use openmls::prelude::{Lifetime, SignatureScheme};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{MemoryStorage, RandError, RustCrypto};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::types::{
    AeadType, Ciphersuite, CryptoError, ExporterSecret, HashType, HpkeAeadType, HpkeCiphertext,
    HpkeConfig, HpkeKdfType, HpkeKemType, HpkeKeyPair, KemOutput,
};
use openmls_traits::OpenMlsProvider;
use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use tls_codec::SecretVLBytes;

use super::{ds_identity_with_keys, TestClient, TestDs, TestQs, CIPHERSUITE, START_MS};
use crate::qs::{QsConfig, SealError};
use crate::wire::{
    encode, encrypt_context, ClientQueueConfig, QueueInfoContext, QueueInfoPlaintext,
    QUEUE_ID_LABEL,
};
use crate::DsConfig;

/// The 32 bytes a ChaCha20 RNG is seeded with.
pub type Seed = [u8; 32];

/// The seed named by `label`: SHA-256 of it, so each actor of a scenario can have its own
/// seed by name (`seed("alice-1")`).
pub fn seed(label: &str) -> Seed {
    let digest = RustCrypto::default()
        .hash(HashType::Sha2_256, label.as_bytes())
        .expect("SHA-256");
    digest.try_into().expect("SHA-256 has 32 bytes")
}

/// The lifetime of a seeded client's KeyPackages and of the groups it creates: fixed, so the
/// bytes do not depend on the day they are made. It starts an hour before [`START_MS`] (the
/// DS's clock) and runs to 2100-01-01T00:00:00Z, so openmls, which checks lifetimes against
/// the system clock, accepts it for as long as anyone regenerates.
pub fn fixed_lifetime() -> Lifetime {
    const NOT_AFTER_S: u64 = 4_102_444_800;
    Lifetime::init(START_MS / 1000 - 3600, NOT_AFTER_S)
}

/// `RustCrypto`, or with a seed, `RustCrypto` whose randomness is a ChaCha20 RNG seeded by the
/// caller (see the [module docs](self)).
pub struct TestCrypto {
    rust_crypto: RustCrypto,
    seeded_rng: Option<Mutex<ChaCha20Rng>>,
}

impl Default for TestCrypto {
    /// Exactly `RustCrypto::default()`: randomness from the operating system.
    fn default() -> Self {
        Self {
            rust_crypto: RustCrypto::default(),
            seeded_rng: None,
        }
    }
}

impl std::fmt::Debug for TestCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The RNG state is a secret of the test; say only which mode this is.
        f.debug_struct("TestCrypto")
            .field("seeded", &self.is_seeded())
            .finish_non_exhaustive()
    }
}

impl TestCrypto {
    /// Crypto whose every random byte comes from a ChaCha20 RNG seeded with `seed`.
    pub fn seeded(seed: Seed) -> Self {
        Self {
            rust_crypto: RustCrypto::default(),
            seeded_rng: Some(Mutex::new(ChaCha20Rng::from_seed(seed))),
        }
    }

    /// Whether the randomness is seeded (deterministic).
    pub fn is_seeded(&self) -> bool {
        self.seeded_rng.is_some()
    }

    /// `len` bytes from the seeded RNG (`None` when not seeded).
    fn draw(&self, len: usize) -> Option<Result<Vec<u8>, RandError>> {
        let rng = self.seeded_rng.as_ref()?;
        Some(match rng.lock() {
            Ok(mut rng) => {
                let mut out = vec![0u8; len];
                rng.fill_bytes(&mut out);
                Ok(out)
            }
            Err(_) => Err(RandError::LockPoisoned),
        })
    }

    /// The sender side of RFC 9180 base mode with the ephemeral key from the seeded RNG:
    /// returns `enc` and the sender's context. Only for DH-based KEMs (the MLS ciphersuites'
    /// and the Queueing Service's).
    fn hpke_sender(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
    ) -> Result<(Vec<u8>, Context<HpkeRustCrypto>), CryptoError> {
        let kem = kem_algorithm(config.0)?;
        let hpke = Hpke::<HpkeRustCrypto>::new(
            Mode::Base,
            kem,
            kdf_algorithm(config.1),
            aead_algorithm(config.2),
        );
        // §4.1 Encap: GenerateKeyPair() is DeriveKeyPair(random(Nsk)) (§7.1.3), as in hpke-rs.
        let ikm = self
            .draw(kem.private_key_len())
            .expect("only called when seeded")
            .map_err(|_| CryptoError::InsufficientRandomness)?;
        let ephemeral = self.rust_crypto.derive_hpke_keypair(config, &ikm)?;
        let dh = HpkeRustCrypto::dh(kem, pk_r, &ephemeral.private)
            .map_err(|_| CryptoError::CryptoLibraryError)?;
        // SerializePublicKey is the identity on hpke-rs's encodings (X25519 bytes, uncompressed
        // NIST points), which are also what MLS carries.
        let enc = ephemeral.public;
        let kem_context = [enc.as_slice(), pk_r].concat();
        let suite_id = [b"KEM".as_slice(), &(kem as u16).to_be_bytes()].concat();
        let kdf = KdfAlgorithm::from(kem);
        // §4.1 ExtractAndExpand.
        let eae_prk = labeled_extract(kdf, &suite_id, "eae_prk", &dh)?;
        let shared_secret = labeled_expand(
            kdf,
            &eae_prk,
            &suite_id,
            "shared_secret",
            &kem_context,
            kem.shared_secret_len(),
        )?;
        let context = hpke
            .key_schedule(&shared_secret, info, &[], &[])
            .map_err(|_| CryptoError::SenderSetupError)?;
        Ok((enc, context))
    }
}

/// RFC 9180 §4 `LabeledExtract` with an empty salt.
fn labeled_extract(
    kdf: KdfAlgorithm,
    suite_id: &[u8],
    label: &str,
    ikm: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let labeled_ikm = [b"HPKE-v1".as_slice(), suite_id, label.as_bytes(), ikm].concat();
    HpkeRustCrypto::kdf_extract(kdf, &[], &labeled_ikm).map_err(|_| CryptoError::CryptoLibraryError)
}

/// RFC 9180 §4 `LabeledExpand`.
fn labeled_expand(
    kdf: KdfAlgorithm,
    prk: &[u8],
    suite_id: &[u8],
    label: &str,
    info: &[u8],
    len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let length = u16::try_from(len).map_err(|_| CryptoError::InvalidLength)?;
    let labeled_info = [
        length.to_be_bytes().as_slice(),
        b"HPKE-v1",
        suite_id,
        label.as_bytes(),
        info,
    ]
    .concat();
    HpkeRustCrypto::kdf_expand(kdf, prk, &labeled_info, len)
        .map_err(|_| CryptoError::CryptoLibraryError)
}

fn kem_algorithm(kem: HpkeKemType) -> Result<KemAlgorithm, CryptoError> {
    match kem {
        HpkeKemType::DhKemP256 => Ok(KemAlgorithm::DhKemP256),
        HpkeKemType::DhKemP384 => Ok(KemAlgorithm::DhKemP384),
        HpkeKemType::DhKemP521 => Ok(KemAlgorithm::DhKemP521),
        HpkeKemType::DhKem25519 => Ok(KemAlgorithm::DhKem25519),
        HpkeKemType::DhKem448 => Ok(KemAlgorithm::DhKem448),
        #[allow(unreachable_patterns)]
        _ => Err(CryptoError::UnsupportedKdf),
    }
}

fn kdf_algorithm(kdf: HpkeKdfType) -> KdfAlgorithm {
    match kdf {
        HpkeKdfType::HkdfSha256 => KdfAlgorithm::HkdfSha256,
        HpkeKdfType::HkdfSha384 => KdfAlgorithm::HkdfSha384,
        HpkeKdfType::HkdfSha512 => KdfAlgorithm::HkdfSha512,
    }
}

fn aead_algorithm(aead: HpkeAeadType) -> AeadAlgorithm {
    match aead {
        HpkeAeadType::AesGcm128 => AeadAlgorithm::Aes128Gcm,
        HpkeAeadType::AesGcm256 => AeadAlgorithm::Aes256Gcm,
        HpkeAeadType::ChaCha20Poly1305 => AeadAlgorithm::ChaCha20Poly1305,
        HpkeAeadType::Export => AeadAlgorithm::HpkeExport,
    }
}

impl OpenMlsRand for TestCrypto {
    type Error = RandError;

    fn random_array<const N: usize>(&self) -> Result<[u8; N], Self::Error> {
        match self.draw(N) {
            Some(bytes) => Ok(bytes?.try_into().expect("N bytes")),
            None => self.rust_crypto.random_array(),
        }
    }

    fn random_vec(&self, len: usize) -> Result<Vec<u8>, Self::Error> {
        match self.draw(len) {
            Some(bytes) => bytes,
            None => self.rust_crypto.random_vec(len),
        }
    }
}

impl OpenMlsCrypto for TestCrypto {
    fn supports(&self, ciphersuite: Ciphersuite) -> Result<(), CryptoError> {
        self.rust_crypto.supports(ciphersuite)
    }

    fn supported_ciphersuites(&self) -> Vec<Ciphersuite> {
        self.rust_crypto.supported_ciphersuites()
    }

    fn hkdf_extract(
        &self,
        hash_type: HashType,
        salt: &[u8],
        ikm: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        self.rust_crypto.hkdf_extract(hash_type, salt, ikm)
    }

    fn hmac(
        &self,
        hash_type: HashType,
        key: &[u8],
        message: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        self.rust_crypto.hmac(hash_type, key, message)
    }

    fn hkdf_expand(
        &self,
        hash_type: HashType,
        prk: &[u8],
        info: &[u8],
        okm_len: usize,
    ) -> Result<SecretVLBytes, CryptoError> {
        self.rust_crypto.hkdf_expand(hash_type, prk, info, okm_len)
    }

    fn hash(&self, hash_type: HashType, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.rust_crypto.hash(hash_type, data)
    }

    fn aead_encrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        data: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.rust_crypto.aead_encrypt(alg, key, data, nonce, aad)
    }

    fn aead_decrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        ct_tag: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.rust_crypto.aead_decrypt(alg, key, ct_tag, nonce, aad)
    }

    fn signature_key_gen(&self, alg: SignatureScheme) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let Some(secret) = self.draw(ed25519_dalek::SECRET_KEY_LENGTH) else {
            return self.rust_crypto.signature_key_gen(alg);
        };
        // Seeded keys are Ed25519 only (the harness's ciphersuite): ECDSA key generation in
        // RustCrypto takes its RNG internally.
        if alg != SignatureScheme::ED25519 {
            return Err(CryptoError::UnsupportedSignatureScheme);
        }
        let secret: [u8; ed25519_dalek::SECRET_KEY_LENGTH] = secret
            .map_err(|_| CryptoError::InsufficientRandomness)?
            .try_into()
            .expect("32 bytes");
        let key = ed25519_dalek::SigningKey::from_bytes(&secret);
        Ok((secret.to_vec(), key.verifying_key().to_bytes().to_vec()))
    }

    fn verify_signature(
        &self,
        alg: SignatureScheme,
        data: &[u8],
        pk: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.rust_crypto.verify_signature(alg, data, pk, signature)
    }

    fn sign(&self, alg: SignatureScheme, data: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.rust_crypto.sign(alg, data, key)
    }

    fn hpke_seal(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        aad: &[u8],
        ptxt: &[u8],
    ) -> Result<HpkeCiphertext, CryptoError> {
        if !self.is_seeded() {
            return self.rust_crypto.hpke_seal(config, pk_r, info, aad, ptxt);
        }
        let (kem_output, mut context) = self.hpke_sender(config, pk_r, info)?;
        let ciphertext = context
            .seal(aad, ptxt)
            .map_err(|_| CryptoError::HpkeEncryptionError)?;
        Ok(HpkeCiphertext {
            kem_output: kem_output.into(),
            ciphertext: ciphertext.into(),
        })
    }

    fn hpke_open(
        &self,
        config: HpkeConfig,
        input: &HpkeCiphertext,
        sk_r: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.rust_crypto.hpke_open(config, input, sk_r, info, aad)
    }

    fn hpke_setup_sender_and_export(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<(KemOutput, ExporterSecret), CryptoError> {
        if !self.is_seeded() {
            return self.rust_crypto.hpke_setup_sender_and_export(
                config,
                pk_r,
                info,
                exporter_context,
                exporter_length,
            );
        }
        let (kem_output, context) = self.hpke_sender(config, pk_r, info)?;
        let exported = context
            .export(exporter_context, exporter_length)
            .map_err(|_| CryptoError::ExporterError)?;
        Ok((kem_output, exported.into()))
    }

    fn hpke_setup_receiver_and_export(
        &self,
        config: HpkeConfig,
        enc: &[u8],
        sk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<ExporterSecret, CryptoError> {
        self.rust_crypto.hpke_setup_receiver_and_export(
            config,
            enc,
            sk_r,
            info,
            exporter_context,
            exporter_length,
        )
    }

    fn derive_hpke_keypair(
        &self,
        config: HpkeConfig,
        ikm: &[u8],
    ) -> Result<HpkeKeyPair, CryptoError> {
        self.rust_crypto.derive_hpke_keypair(config, ikm)
    }
}

/// A client's openmls provider: [`TestCrypto`] and its own in-memory key store. The default is
/// the same as `OpenMlsRustCrypto::default()`.
#[derive(Debug, Default)]
pub struct TestProvider {
    crypto: TestCrypto,
    storage: MemoryStorage,
}

impl TestProvider {
    /// A provider whose randomness is seeded with `seed` (see [`TestCrypto::seeded`]).
    pub fn seeded(seed: Seed) -> Self {
        Self {
            crypto: TestCrypto::seeded(seed),
            storage: MemoryStorage::default(),
        }
    }

    /// Empties the key store (group state, KeyPackage and leaf private keys); the randomness
    /// continues where it was.
    pub fn forget_storage(&mut self) {
        self.storage = MemoryStorage::default();
    }
}

impl OpenMlsProvider for TestProvider {
    type CryptoProvider = TestCrypto;
    type RandProvider = TestCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

/// An Ed25519 signature key pair from `crypto`'s randomness.
pub fn signature_key_pair(crypto: &TestCrypto) -> SignatureKeyPair {
    let scheme = CIPHERSUITE.signature_algorithm();
    let (private, public) = crypto.signature_key_gen(scheme).expect("key generation");
    SignatureKeyPair::from_raw(scheme, private, public)
}

/// The HPKE suite queue information is sealed with (wire-format.md §10.1).
const QUEUE_INFO_HPKE: HpkeConfig = HpkeConfig(
    HpkeKemType::DhKem25519,
    HpkeKdfType::HkdfSha256,
    HpkeAeadType::AesGcm128,
);

/// [`crate::qs::seal_queue_info`], with the HPKE ephemeral key from `crypto` when it is
/// seeded (then the same `EncryptWithLabel` construction, done through
/// [`OpenMlsCrypto::hpke_seal`]); with unseeded crypto it is `seal_queue_info` itself.
pub fn seal_queue_info(
    crypto: &TestCrypto,
    provider_domain: &str,
    hub_domain: &str,
    queue_encryption_key: &[u8],
    queue_id: &[u8],
    fanout_auth_token: &[u8],
) -> Result<ClientQueueConfig, SealError> {
    if !crypto.is_seeded() {
        return crate::qs::seal_queue_info(
            provider_domain,
            hub_domain,
            queue_encryption_key,
            queue_id,
            fanout_auth_token,
        );
    }
    let sealing = |_| SealError::Sealing;
    let plaintext = encode(&QueueInfoPlaintext {
        queue_id: queue_id.to_vec().into(),
        fanout_auth_token: fanout_auth_token.to_vec().into(),
    })
    .map_err(sealing)?;
    let context = encode(&QueueInfoContext {
        provider_domain: provider_domain.as_bytes().to_vec().into(),
        hub_domain: hub_domain.as_bytes().to_vec().into(),
    })
    .map_err(sealing)?;
    let info = encrypt_context(QUEUE_ID_LABEL, &context).map_err(sealing)?;
    let sealed = crypto
        .hpke_seal(
            QUEUE_INFO_HPKE,
            queue_encryption_key,
            &info,
            &[],
            &plaintext,
        )
        .map_err(|_| SealError::InvalidKey)?;
    let ciphertext = encode(&crate::wire::HpkeCiphertext {
        kem_output: sealed.kem_output,
        ciphertext: sealed.ciphertext,
    })
    .map_err(sealing)?;
    Ok(ClientQueueConfig {
        provider_domain: provider_domain.as_bytes().to_vec().into(),
        queue: ciphertext.into(),
    })
}

impl TestClient {
    /// A client like [`TestClient::new`] whose keys and randomness all come from `seed`, and
    /// whose KeyPackages and groups have the [`fixed_lifetime`]: the same seed gives the same
    /// bytes.
    pub fn new_seeded(user: &str, client: &str, provider_domain: &str, seed: Seed) -> Self {
        let provider = TestProvider::seeded(seed);
        let signer = signature_key_pair(provider.crypto());
        let mut client = Self::with_keys(user, client, provider_domain, provider, signer);
        client.fixed_lifetime = Some(fixed_lifetime());
        client
    }
}

impl TestDs<TestCrypto> {
    /// A DS whose identity key and randomness (group IDs, HPKE) come from `seed`.
    pub fn seeded(config: DsConfig, seed: Seed) -> Self {
        let crypto = TestCrypto::seeded(seed);
        let (identity, external_sender) =
            ds_identity_with_keys(&config.domain, signature_key_pair(&crypto));
        Self::with_crypto(config, identity, external_sender, crypto)
    }
}

impl TestQs<TestCrypto> {
    /// A QS whose queue key, queue IDs and tokens come from `seed` (its `create_queue`
    /// answers are still sealed with fresh randomness: see the [module docs](self)).
    pub fn seeded(config: QsConfig, seed: Seed) -> Self {
        Self::with_crypto(config, TestCrypto::seeded(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qs::QueueKey;

    const SUITE: HpkeConfig = QUEUE_INFO_HPKE;

    fn receiver() -> HpkeKeyPair {
        RustCrypto::default()
            .derive_hpke_keypair(SUITE, &[7; 32])
            .expect("key pair")
    }

    #[test]
    fn seeded_randomness_repeats_per_seed_and_differs_between_seeds() {
        let draw = |s: &str| TestCrypto::seeded(seed(s)).random_vec(64).expect("bytes");
        assert_eq!(draw("a"), draw("a"));
        assert_ne!(draw("a"), draw("b"));
        let unseeded = || TestCrypto::default().random_vec(64).expect("bytes");
        assert_ne!(unseeded(), unseeded());
    }

    /// The seeded sender side is RFC 9180: `RustCrypto` (hpke-rs) opens it, and the same seed
    /// gives the same ciphertext.
    #[test]
    fn seeded_hpke_seal_opens_with_rust_crypto_and_repeats() {
        let keys = receiver();
        let seal = |s: &str| {
            TestCrypto::seeded(seed(s))
                .hpke_seal(SUITE, &keys.public, b"info", b"aad", b"plaintext")
                .expect("seal")
        };
        let sealed = seal("sender");
        assert_eq!(sealed, seal("sender"));
        assert_ne!(sealed, seal("another sender"));
        let opened = RustCrypto::default()
            .hpke_open(SUITE, &sealed, &keys.private, b"info", b"aad")
            .expect("opens");
        assert_eq!(opened, b"plaintext");
        assert!(RustCrypto::default()
            .hpke_open(SUITE, &sealed, &keys.private, b"other info", b"aad")
            .is_err());
    }

    #[test]
    fn seeded_hpke_export_matches_the_receivers() {
        let keys = receiver();
        let (enc, secret) = TestCrypto::seeded(seed("sender"))
            .hpke_setup_sender_and_export(SUITE, &keys.public, b"info", b"context", 32)
            .expect("sender");
        let received = RustCrypto::default()
            .hpke_setup_receiver_and_export(SUITE, &enc, &keys.private, b"info", b"context", 32)
            .expect("receiver");
        assert_eq!(&*secret, &*received);
    }

    #[test]
    fn seeded_signature_keys_repeat_and_sign() {
        let crypto = || TestCrypto::seeded(seed("signer"));
        let (private, public) = crypto()
            .signature_key_gen(SignatureScheme::ED25519)
            .expect("key");
        assert_eq!(
            (private.clone(), public.clone()),
            crypto()
                .signature_key_gen(SignatureScheme::ED25519)
                .expect("key")
        );
        let rust_crypto = RustCrypto::default();
        let signature = rust_crypto
            .sign(SignatureScheme::ED25519, b"data", &private)
            .expect("sign");
        rust_crypto
            .verify_signature(SignatureScheme::ED25519, b"data", &public, &signature)
            .expect("the public key matches the private key");
    }

    /// The harness's seeded sealing of queue information opens with the provider's queue key,
    /// as `crate::qs::seal_queue_info`'s does.
    #[test]
    fn seeded_queue_info_opens_at_the_provider() {
        let queue_key = QueueKey::derive(&[9; 32]).expect("key");
        let seal = || {
            seal_queue_info(
                &TestCrypto::seeded(seed("client")),
                "q.example",
                "hub.example",
                queue_key.public_key(),
                b"queue",
                b"token",
            )
            .expect("seal")
        };
        let config = seal();
        assert_eq!(config, seal());
        let opened = queue_key
            .open(b"q.example", b"hub.example", config.queue.as_slice())
            .expect("opens");
        assert_eq!(
            (
                opened.queue_id.as_slice(),
                opened.fanout_auth_token.as_slice()
            ),
            (b"queue".as_slice(), b"token".as_slice())
        );
        assert!(queue_key
            .open(b"q.example", b"other-hub.example", config.queue.as_slice())
            .is_none());
    }
}
