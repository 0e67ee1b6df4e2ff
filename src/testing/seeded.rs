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
//!   sender side of RFC 9180 itself: the ephemeral key is `DeriveKeyPair` (§7.1.3) of bytes
//!   derived from the seed and the seal's own inputs (not the next RNG bytes: openmls seals an
//!   UpdatePath's secrets in parallel, in an order that changes between runs), `Encap` is
//!   DHKEM's (§4.1), and hpke-rs's public key schedule and AEAD finish the job. Receivers open
//!   the result with the unchanged `RustCrypto`.
//!
//! Everything else (hashes, HKDF, AEAD, signatures, which are deterministic Ed25519) is
//! `RustCrypto` in both modes.
//!
//! The Queueing Service and clients seal queue information and `create_queue` answers through
//! the crypto they are given (`crate::qs::seal_queue_info`), so a seeded [`TestQs`] and seeded
//! clients make those ciphertexts reproducible too.

mod crypto;
pub use crypto::{HashLog, TestCrypto};

use openmls::prelude::Lifetime;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{MemoryStorage, RustCrypto};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::HashType;
use openmls_traits::OpenMlsProvider;

use super::{ds_identity_with_keys, TestClient, TestDs, TestQs, CIPHERSUITE, START_MS};
use crate::qs::QsConfig;
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

impl super::directory::DirectoryUser {
    /// A user of the KeyPackage directory whose `clients` seeded clients (named
    /// `<user>-1`, ... and seeded by `<label> <name>`) make its secret, pseudonyms, keys and
    /// KeyPackages: the same label gives the same bytes (golden vectors of wire-format.md
    /// §14.4).
    pub fn new_seeded(user: &str, clients: usize, provider_domain: &str, label: &str) -> Self {
        let clients = (1..=clients)
            .map(|i| {
                let name = format!("{user}-{i}");
                TestClient::new_seeded(
                    user,
                    &name,
                    provider_domain,
                    seed(&format!("{label} {name}")),
                )
            })
            .collect();
        Self::with_clients(clients, provider_domain)
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
    /// A QS whose queue key, queue IDs, tokens and sealed `create_queue` answers come from
    /// `seed`.
    pub fn seeded(config: QsConfig, seed: Seed) -> Self {
        Self::with_crypto(config, TestCrypto::seeded(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qs::QueueKey;
    use openmls::prelude::SignatureScheme;
    use openmls_traits::random::OpenMlsRand;
    use openmls_traits::types::{HpkeAeadType, HpkeConfig, HpkeKdfType, HpkeKemType, HpkeKeyPair};

    /// The HPKE suite queue information is sealed with (wire-format.md §10.1).
    const SUITE: HpkeConfig = HpkeConfig(
        HpkeKemType::DhKem25519,
        HpkeKdfType::HkdfSha256,
        HpkeAeadType::AesGcm128,
    );

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

    /// Queue information sealed with seeded crypto is reproducible and opens with the
    /// provider's queue key.
    #[test]
    fn seeded_queue_info_opens_at_the_provider() {
        let queue_key = QueueKey::derive(&[9; 32]).expect("key");
        let seal = || {
            crate::qs::seal_queue_info(
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
