//! Pseudonymous test clients (wire-format.md §14): a [`TestClient`] whose leaf holds a
//! [`PseudonymousCredential`] and a fresh signature key, with the real identity (a
//! BasicCredential `mimi://<domain>/d/<user>/<client>` and its own key) kept beside it, and
//! pseudonymous groups, whose required capabilities list the credential type.

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand;

use super::{TestClient, CIPHERSUITE};
use crate::pseudonym::link::{
    new_pseudonymous_credential, to_mls_credential, CredentialInputs, IdentityLinkKey,
};
use crate::pseudonym::{
    IdentifierUri, PseudonymKind, PseudonymousCredential, PseudonymousCredentialTbs,
    PSEUDONYMOUS_CREDENTIAL_TYPE,
};
use crate::wire::{QUEUE_CONFIG_EXTENSION_TYPE, USER_AUTH_KEY_EXTENSION_TYPE};

/// 16 random bytes, for UUIDs.
pub fn random_uuid() -> [u8; 16] {
    RustCrypto::default().random_array().expect("randomness")
}

/// A fresh random pseudonym of `kind` at `domain`.
pub fn random_pseudonym(kind: PseudonymKind, domain: &str) -> IdentifierUri {
    IdentifierUri::pseudonym(kind, domain, random_uuid())
}

/// A fresh connection key (`KDF.Nh` random bytes; MP-MMR: random at user creation).
pub fn random_connection_key() -> Vec<u8> {
    RustCrypto::default()
        .random_vec(CIPHERSUITE.hash_length())
        .expect("randomness")
}

/// Leaf capabilities of a pseudonymous client: [`TestClient::capabilities`] plus the
/// pseudonymous credential type (RFC 9420 §7.2: a leaf lists the credential types it supports,
/// including its own).
pub fn pseudonymous_capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[
            ExtensionType::Unknown(QUEUE_CONFIG_EXTENSION_TYPE),
            ExtensionType::Unknown(USER_AUTH_KEY_EXTENSION_TYPE),
        ]),
        None,
        Some(&[
            CredentialType::Basic,
            CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE),
        ]),
    )
}

/// A client with a pseudonymous credential in one room.
pub struct PseudonymousClient {
    /// The openmls client: its `signer` is the leaf's fresh key, its `credential` the
    /// pseudonymous one, its queue an opaque random value (in MIMIMI sealed to its provider).
    pub client: TestClient,
    /// The real credential.
    pub real_credential: Credential,
    /// The real credential's key pair.
    pub real_signer: SignatureKeyPair,
    /// The pseudonymous credential in the leaf.
    pub pseudonymous: PseudonymousCredential,
    /// Its `identity_link_key`.
    pub identity_link_key: IdentityLinkKey,
}

impl PseudonymousClient {
    /// Client `client` of user `user` at provider `domain`, with user pseudonym
    /// `user_pseudonym`, its identity link derived from `connection_key`.
    pub fn new(
        user: &str,
        client: &str,
        domain: &str,
        user_pseudonym: &IdentifierUri,
        connection_key: &[u8],
    ) -> Self {
        let real_signer =
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key generation");
        let real_credential: Credential =
            BasicCredential::new(format!("mimi://{domain}/d/{user}/{client}").into_bytes()).into();
        let mut test_client = TestClient::new(user, client, domain);
        test_client.queue.queue = RustCrypto::default()
            .random_vec(16)
            .expect("randomness")
            .into();
        let tbs = PseudonymousCredentialTbs {
            client_pseudonym: random_pseudonym(PseudonymKind::Client, domain),
            user_pseudonym: user_pseudonym.clone(),
            signature_public_key: test_client.signer.to_public_vec().into(),
        };
        let made = new_pseudonymous_credential(
            &RustCrypto::default(),
            CIPHERSUITE,
            CredentialInputs {
                connection_key,
                tbs,
                real_credential: &real_credential,
                real_signer: &real_signer,
                real_signature_key: &real_signer.to_public_vec(),
            },
        )
        .expect("pseudonymous credential");
        let mut pseudonymous = Self {
            client: test_client,
            real_credential,
            real_signer,
            pseudonymous: made.credential.clone(),
            identity_link_key: made.identity_link_key,
        };
        pseudonymous.set_credential(&made.credential);
        pseudonymous
    }

    /// Puts `credential` (well-formed or not) into the client's leaf from now on: its next
    /// KeyPackage, group or external commit carries it.
    pub fn set_credential(&mut self, credential: &PseudonymousCredential) {
        self.set_mls_credential(to_mls_credential(credential).expect("encode"));
    }

    /// Puts any MLS `Credential` into the client's leaf from now on.
    pub fn set_mls_credential(&mut self, credential: Credential) {
        self.client.credential = CredentialWithKey {
            credential,
            signature_key: self.client.signer.to_public_vec().into(),
        };
    }

    /// A KeyPackage with the pseudonymous capabilities and the client's credential.
    pub fn key_package(&self) -> KeyPackage {
        let client = &self.client;
        KeyPackage::builder()
            .key_package_lifetime(TestClient::lifetime())
            .leaf_node_capabilities(pseudonymous_capabilities())
            .leaf_node_extensions(client.leaf_extensions())
            .build(
                CIPHERSUITE,
                &client.provider,
                &client.signer,
                client.credential.clone(),
            )
            .expect("key package")
            .key_package()
            .clone()
    }

    /// Creates the MLS group locally, naming `ds` as external sender; `pseudonymous` decides
    /// whether its required capabilities list the pseudonymous credential type.
    pub fn create_group(&mut self, group_id: &[u8], ds: &ExternalSender, pseudonymous: bool) {
        let credentials: &[CredentialType] = if pseudonymous {
            &[CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE)]
        } else {
            &[]
        };
        let mut extensions = vec![Extension::ExternalSenders(vec![ds.clone()])];
        if pseudonymous {
            extensions.push(Extension::RequiredCapabilities(
                RequiredCapabilitiesExtension::new(&[], &[], credentials),
            ));
        }
        let client = &mut self.client;
        let group = MlsGroup::builder()
            .with_group_id(GroupId::from_slice(group_id))
            .ciphersuite(CIPHERSUITE)
            .with_wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(TestClient::PAST_EPOCHS)
            .lifetime(TestClient::lifetime())
            .with_capabilities(pseudonymous_capabilities())
            .with_leaf_node_extensions(client.leaf_extensions())
            .expect("leaf extensions")
            .with_group_context_extensions(Extensions::from_vec(extensions).expect("extensions"))
            .build(&client.provider, &client.signer, client.credential.clone())
            .expect("group creation");
        client.group = Some(group);
    }
}
