//! [`TestCrypto`]: `RustCrypto` with its randomness made an input (see the parent module).

use std::sync::{Arc, Mutex};

use hpke_rs::hpke_types::{AeadAlgorithm, KdfAlgorithm, KemAlgorithm};
use hpke_rs::rustcrypto::HpkeRustCrypto;
use hpke_rs::{Context, Hpke, Mode};
use hpke_rs_crypto::HpkeCrypto as _;
use openmls::prelude::SignatureScheme;
use openmls_rust_crypto::{RandError, RustCrypto};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::types::{
    AeadType, Ciphersuite, CryptoError, ExporterSecret, HashType, HpkeAeadType, HpkeCiphertext,
    HpkeConfig, HpkeKdfType, HpkeKemType, HpkeKeyPair, KemOutput,
};
use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use tls_codec::SecretVLBytes;

use super::Seed;

/// `RustCrypto`, or with a seed, `RustCrypto` whose randomness is a ChaCha20 RNG seeded by the
/// caller (see the [`seeded` module docs](super)).
pub struct TestCrypto {
    rust_crypto: RustCrypto,
    seeded_rng: Option<Mutex<ChaCha20Rng>>,
    /// The seed, for HPKE ephemeral keys (see [`TestCrypto::ephemeral_ikm`]).
    seed: Option<Seed>,
    /// With [`TestCrypto::recording_hashes`]: the output of every `hash` call, in order.
    hash_log: Option<HashLog>,
}

/// The digests a [`TestCrypto::recording_hashes`] computed, shared with the test that reads
/// them.
#[derive(Debug, Clone, Default)]
pub struct HashLog(Arc<Mutex<Vec<Vec<u8>>>>);

impl HashLog {
    fn digests(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many times `hash` was called on `data` with SHA-256 so far.
    pub fn times_hashed(&self, data: &[u8]) -> usize {
        let digest = RustCrypto::default()
            .hash(HashType::Sha2_256, data)
            .expect("SHA-256");
        self.digests()
            .iter()
            .filter(|logged| **logged == digest)
            .count()
    }
}

impl Default for TestCrypto {
    /// Exactly `RustCrypto::default()`: randomness from the operating system.
    fn default() -> Self {
        Self {
            rust_crypto: RustCrypto::default(),
            seeded_rng: None,
            seed: None,
            hash_log: None,
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
            seed: Some(seed),
            hash_log: None,
        }
    }

    /// Records every digest `hash` computes in the returned [`HashLog`], for tests of how often
    /// a service hashes an input.
    pub fn recording_hashes(mut self) -> (Self, HashLog) {
        let log = HashLog::default();
        self.hash_log = Some(log.clone());
        (self, log)
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

    /// The input keying material of an HPKE ephemeral key: HKDF of the seed and of everything
    /// the seal depends on (`parts`), not the next bytes of the RNG. openmls encrypts an
    /// UpdatePath's secrets to the copath nodes in parallel (rayon), so the order in which
    /// seals would draw from a shared RNG changes from run to run; a key derived from the
    /// seal's own inputs does not. Distinct inputs get distinct keys, so no two different
    /// plaintexts share an ephemeral key.
    fn ephemeral_ikm(&self, len: usize, parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
        let seed = self
            .seed
            .as_ref()
            .ok_or(CryptoError::InsufficientRandomness)?;
        let mut input = b"mimi-ds test HPKE ephemeral".to_vec();
        for part in parts {
            input.extend_from_slice(&(part.len() as u64).to_be_bytes());
            input.extend_from_slice(part);
        }
        let prk = self
            .rust_crypto
            .hkdf_extract(HashType::Sha2_256, seed, &input)?;
        Ok(self
            .rust_crypto
            .hkdf_expand(HashType::Sha2_256, prk.as_slice(), b"ikm", len)?
            .as_slice()
            .to_vec())
    }

    /// The sender side of RFC 9180 base mode with the ephemeral key derived from the seed and
    /// the seal's inputs (`pk_r`, `info`, and `binding`: the plaintext and AAD, or the
    /// exporter's context): returns `enc` and the sender's context. Only for DH-based KEMs
    /// (the MLS ciphersuites' and the Queueing Service's).
    fn hpke_sender(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        binding: &[&[u8]],
    ) -> Result<(Vec<u8>, Context<HpkeRustCrypto>), CryptoError> {
        let kem = kem_algorithm(config.0)?;
        let hpke = Hpke::<HpkeRustCrypto>::new(
            Mode::Base,
            kem,
            kdf_algorithm(config.1),
            aead_algorithm(config.2),
        );
        // §4.1 Encap: GenerateKeyPair() is DeriveKeyPair(random(Nsk)) (§7.1.3), as in hpke-rs.
        let mut parts = vec![pk_r, info];
        parts.extend_from_slice(binding);
        let ikm = self.ephemeral_ikm(kem.private_key_len(), &parts)?;
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
        let digest = self.rust_crypto.hash(hash_type, data)?;
        if let Some(log) = &self.hash_log {
            log.digests().push(digest.clone());
        }
        Ok(digest)
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
        let (kem_output, mut context) = self.hpke_sender(config, pk_r, info, &[aad, ptxt])?;
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
        let length = (exporter_length as u64).to_be_bytes();
        let (kem_output, context) =
            self.hpke_sender(config, pk_r, info, &[exporter_context, &length])?;
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
