//! Golden vectors of the MIMIMI structures (wire-format.md §14), checked in under
//! `tests/vectors/mimimi/` in the format of `tests/golden_vectors.rs` (`# <type>: <what>`, then
//! lowercase hex). They are made from fixed inputs with seeded keys: Ed25519 signatures and the
//! derived AEAD nonces are deterministic, so the same code makes the same bytes.
//!
//! Regenerate after a deliberate change, and review `git diff tests/vectors/mimimi`:
//!
//! ```text
//! cargo test --all-features --test pseudonymous_vectors -- --ignored regenerate
//! ```

use mimi_ds::pseudonym::group_links::{
    add_aad_bytes, add_aad_of, unwrap_identity_link_key, wrap_identity_link_key, SafeAad,
};
use mimi_ds::pseudonym::link::{
    authenticate, new_pseudonymous_credential, open_identity_link, to_mls_credential,
    CredentialInputs, IdentityLinkKey,
};
use mimi_ds::pseudonym::{
    EncryptedIdentityLinkKey, IdentifierUri, IdentityLinkKeys, IdentityLinkTbe,
    IdentityLinkWrapperKeyExtension, PseudonymKind, PseudonymousCredential,
    PseudonymousCredentialTbs,
};
use mimi_ds::testing::seeded::{seed, signature_key_pair, TestCrypto};
use mimi_ds::testing::CIPHERSUITE;
use mimi_ds::wire::encode;
use openmls::prelude::{BasicCredential, Credential};
use openmls_rust_crypto::RustCrypto;

#[path = "support/hex_vectors.rs"]
mod hex_vectors;
use hex_vectors::{Vector, VectorDir};

const DIR: VectorDir = VectorDir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimimi"));
const GROUP_ID: &[u8] = b"mimimi-vectors group";

fn uuid(label: &str) -> [u8; 16] {
    seed(label)[..16].try_into().unwrap()
}

/// The fixed inputs of the vectors, written into the comments of the ones derived from them.
fn generate() -> Vec<Vector> {
    let crypto = TestCrypto::seeded(seed("mimimi-vectors"));
    let real_signer = signature_key_pair(&crypto);
    let leaf_signer = signature_key_pair(&crypto);
    let connection_key = seed("mimimi-vectors connection_key").to_vec();
    let real_credential: Credential =
        BasicCredential::new(b"mimi://a.example/d/alice/phone".to_vec()).into();
    let tbs = PseudonymousCredentialTbs {
        client_pseudonym: IdentifierUri::pseudonym(
            PseudonymKind::Client,
            "a.example",
            uuid("mimimi-vectors client"),
        ),
        user_pseudonym: IdentifierUri::pseudonym(
            PseudonymKind::User,
            "a.example",
            uuid("mimimi-vectors user"),
        ),
        signature_public_key: leaf_signer.to_public_vec().into(),
    };
    let made = new_pseudonymous_credential(
        &RustCrypto::default(),
        CIPHERSUITE,
        CredentialInputs {
            connection_key: &connection_key,
            tbs: tbs.clone(),
            real_credential: &real_credential,
            real_signer: &real_signer,
            real_signature_key: &real_signer.to_public_vec(),
        },
    )
    .unwrap();
    let link = open_identity_link(
        &RustCrypto::default(),
        CIPHERSUITE,
        &made.identity_link_key,
        &tbs,
        made.credential.identity_link_ciphertext.as_slice(),
    )
    .unwrap();
    let suite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
    let wrapper_key = seed("mimimi-vectors wrapper_key").to_vec();
    let entry = wrap_identity_link_key(
        &RustCrypto::default(),
        CIPHERSUITE,
        &wrapper_key,
        GROUP_ID,
        &tbs,
        &made.identity_link_key,
    )
    .unwrap();
    vec![
        Vector {
            name: "identity_link_wrapper_key_extension",
            comment: "IdentityLinkWrapperKeyExtension: the room's wrapper key (GroupInfo extension 0xF1D9)".into(),
            bytes: encode(&IdentityLinkWrapperKeyExtension {
                identity_link_wrapper_key: wrapper_key.clone().into(),
            })
            .unwrap(),
        },
        Vector {
            name: "encrypted_identity_link_key",
            comment: format!(
                "EncryptedIdentityLinkKey: identity_link_key wrapped under the wrapper key for \
                 group ID \"mimimi-vectors group\" and pseudonymous_credential_tbs ({suite})"
            ),
            bytes: encode(&entry).unwrap(),
        },
        Vector {
            name: "safe_aad_add_aad",
            comment: "SafeAAD: one item, component 0xF1D8, an AddAAD holding encrypted_identity_link_key".into(),
            bytes: add_aad_bytes(vec![entry.clone()]).unwrap(),
        },
        Vector {
            name: "identity_link_keys",
            comment: "IdentityLinkKeys: epoch 3, leaf 0 holds encrypted_identity_link_key, leaf 1 none".into(),
            bytes: encode(&IdentityLinkKeys {
                epoch: 3,
                entries: vec![Some(entry.clone()), None],
            })
            .unwrap(),
        },
        Vector {
            name: "identifier_uri_user_pseudonym",
            comment: "IdentifierUri: a user pseudonym".into(),
            bytes: encode(&tbs.user_pseudonym).unwrap(),
        },
        Vector {
            name: "connection_key",
            comment: "bytes: the connection key the identity link key is derived from".into(),
            bytes: connection_key.clone(),
        },
        Vector {
            name: "pseudonymous_credential_tbs",
            comment: "PseudonymousCredentialTBS".into(),
            bytes: encode(&tbs).unwrap(),
        },
        Vector {
            name: "identity_link_key",
            comment: format!(
                "bytes: ExpandWithLabel(connection_key, \"IdentityLinkKey\", \
                 pseudonymous_credential_tbs, 32) under {suite}"
            ),
            bytes: made.identity_link_key.0.clone(),
        },
        Vector {
            name: "identity_link_tbe",
            comment: "IdentityLinkTBE: the plaintext of the credential's identity link".into(),
            bytes: encode(&link).unwrap(),
        },
        Vector {
            name: "pseudonymous_credential",
            comment: format!(
                "PseudonymousCredential: identity_link_tbe sealed with AES-128-GCM under the \
                 key and nonce derived from identity_link_key ({suite})"
            ),
            bytes: encode(&made.credential).unwrap(),
        },
        Vector {
            name: "credential_pseudonymous",
            comment: "Credential: type 0xF1D7 carrying pseudonymous_credential".into(),
            bytes: encode(&to_mls_credential(&made.credential).unwrap()).unwrap(),
        },
    ]
}

fn read(name: &str) -> Vec<u8> {
    DIR.read(name)
}

#[test]
#[ignore = "rewrites tests/vectors/mimimi; run with `-- --ignored regenerate`"]
fn regenerate_pseudonymous_vectors() {
    DIR.regenerate(&generate());
}

#[test]
fn checked_in_vectors_are_what_the_generator_makes() {
    DIR.check(&generate());
}

fn round_trip<T: tls_codec::DeserializeBytes + tls_codec::Serialize>(name: &str) -> T {
    DIR.round_trip(name)
}

/// The vectors agree with one another, read from the files only: the key opens the credential's
/// link to the checked-in plaintext, which names the real credential and whose signature
/// verifies.
#[test]
fn vectors_decode_and_agree() {
    let user: IdentifierUri = round_trip("identifier_uri_user_pseudonym");
    let tbs: PseudonymousCredentialTbs = round_trip("pseudonymous_credential_tbs");
    let link: IdentityLinkTbe = round_trip("identity_link_tbe");
    let credential: PseudonymousCredential = round_trip("pseudonymous_credential");
    let mls: Credential = round_trip("credential_pseudonymous");
    assert_eq!(tbs.user_pseudonym, user);
    assert_eq!(credential.tbs(), tbs);
    assert_eq!(mls.serialized_content(), encode(&credential).unwrap());
    let key = IdentityLinkKey(read("identity_link_key"));
    let crypto = RustCrypto::default();
    assert_eq!(
        mimi_ds::pseudonym::link::identity_link_key(
            &crypto,
            CIPHERSUITE,
            &read("connection_key"),
            &tbs
        )
        .unwrap(),
        key
    );
    assert_eq!(
        open_identity_link(
            &crypto,
            CIPHERSUITE,
            &key,
            &tbs,
            credential.identity_link_ciphertext.as_slice()
        )
        .unwrap(),
        link
    );
    let real = authenticate(&crypto, CIPHERSUITE, &key, &credential).unwrap();
    // §14.2: the wrapped key unwraps to the key, and the SafeAAD holds it.
    let wrapper: IdentityLinkWrapperKeyExtension =
        round_trip("identity_link_wrapper_key_extension");
    let entry: EncryptedIdentityLinkKey = round_trip("encrypted_identity_link_key");
    let _: SafeAad = round_trip("safe_aad_add_aad");
    let links: IdentityLinkKeys = round_trip("identity_link_keys");
    assert_eq!(links.entries, vec![Some(entry.clone()), None]);
    let aad = add_aad_of(&read("safe_aad_add_aad")).unwrap().unwrap();
    assert_eq!(aad.encrypted_identity_link_keys, vec![entry.clone()]);
    assert_eq!(
        unwrap_identity_link_key(
            &crypto,
            CIPHERSUITE,
            wrapper.identity_link_wrapper_key.as_slice(),
            GROUP_ID,
            &tbs,
            &entry
        )
        .unwrap(),
        key
    );
    assert_eq!(
        real.credential,
        BasicCredential::new(b"mimi://a.example/d/alice/phone".to_vec()).into()
    );
}
