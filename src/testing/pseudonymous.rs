//! Pseudonymous test clients (wire-format.md §14): a [`TestClient`] whose leaf holds a
//! [`PseudonymousCredential`] and a fresh signature key, with the real identity (a
//! BasicCredential `mimi://<domain>/d/<user>/<client>` and its own key) kept beside it, and
//! pseudonymous groups, whose required capabilities list the credential type.

use crate::testing::ExternalJoinOptions;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand;

use super::{mls_bytes, TestClient, CIPHERSUITE};
use crate::pseudonym::group_links::{
    add_aad_bytes, group_info_without_extension, unwrap_identity_link_key, wrap_identity_link_key,
    EncryptedIdentityLinkKey, IdentityLinkKeys, IdentityLinkWrapperKeyExtension,
    IDENTITY_LINK_WRAPPER_KEY_EXTENSION_TYPE,
};
use crate::pseudonym::link::{
    authenticate, authenticate_with_connection_key, from_mls_credential,
    new_pseudonymous_credential, to_mls_credential, CredentialInputs, IdentityLinkKey,
    RealIdentity,
};
use crate::pseudonym::{
    IdentifierUri, PseudonymKind, PseudonymousCredential, PseudonymousCredentialTbs,
    PSEUDONYMOUS_CREDENTIAL_TYPE,
};
use crate::wire::{
    encode, DsRequestBody, ExternalCommitInfo, GroupInfoOption, GroupUpdate,
    MembershipCommitRequest, MlsMessageBytes, QUEUE_CONFIG_EXTENSION_TYPE,
    USER_AUTH_KEY_EXTENSION_TYPE,
};

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
        self.client
            .create_group_with(group_id, pseudonymous_capabilities(), extensions);
    }
}

/// A fresh `identity_link_wrapper_key` for a room (`KDF.Nh` random bytes; MP-MMR: random,
/// chosen by the room's creator).
pub fn random_wrapper_key() -> Vec<u8> {
    random_connection_key()
}

/// The GroupInfo extension that gives Welcome joiners the room's wrapper key.
pub fn wrapper_key_extension(wrapper_key: &[u8]) -> Extension {
    Extension::Unknown(
        IDENTITY_LINK_WRAPPER_KEY_EXTENSION_TYPE,
        UnknownExtension(
            encode(&IdentityLinkWrapperKeyExtension {
                identity_link_wrapper_key: wrapper_key.to_vec().into(),
            })
            .expect("encode"),
        ),
    )
}

/// What a commit of identity links carries: the Adds' entries (and the committer's own).
pub struct LinkedAdd<'a> {
    /// The KeyPackages to add, each with its user's connection key (the adder is connected to
    /// each user; MIMIMI Flow C step 2).
    pub added: Vec<(KeyPackage, &'a [u8])>,
    /// Whether to carry the committer's own entry after the Adds' (its first commit).
    pub own: bool,
}

impl PseudonymousClient {
    /// This member's `identity_link_key` wrapped for the room.
    pub fn own_entry(&self, wrapper_key: &[u8], group_id: &[u8]) -> EncryptedIdentityLinkKey {
        wrap_identity_link_key(
            &RustCrypto::default(),
            CIPHERSUITE,
            wrapper_key,
            group_id,
            &self.pseudonymous.tbs(),
            &self.identity_link_key,
        )
        .expect("wrap")
    }

    /// The entry of an added KeyPackage: its credential authenticated with its user's
    /// connection key (MIMIMI Flow C step 2, panics if it does not authenticate), then its
    /// `identity_link_key` wrapped for the room (step 3).
    pub fn entry_for(
        key_package: &KeyPackage,
        connection_key: &[u8],
        wrapper_key: &[u8],
        group_id: &[u8],
    ) -> (RealIdentity, EncryptedIdentityLinkKey) {
        let credential =
            from_mls_credential(key_package.leaf_node().credential()).expect("pseudonymous");
        let (real, key) = authenticate_with_connection_key(
            &RustCrypto::default(),
            CIPHERSUITE,
            connection_key,
            &credential,
        )
        .expect("the added client authenticates with its user's connection key");
        let entry = wrap_identity_link_key(
            &RustCrypto::default(),
            CIPHERSUITE,
            wrapper_key,
            group_id,
            &credential.tbs(),
            &key,
        )
        .expect("wrap");
        (real, entry)
    }

    /// `commits` adding connected users' KeyPackages (MIMIMI Flow C): `aad` as the commit's
    /// `authenticated_data`, the wrapper key in the Welcome's GroupInfo, and the hub's GroupInfo
    /// re-signed without it. The commit is pending until confirmed or discarded.
    pub fn add_request_with_aad(
        &mut self,
        key_packages: Vec<KeyPackage>,
        aad: Vec<u8>,
        wrapper_key: &[u8],
        strip_wrapper_key: bool,
        now_ms: u64,
    ) -> Vec<u8> {
        let client = &mut self.client;
        let provider = &client.provider;
        let signer = &client.signer;
        let group = client.group.as_mut().expect("client has a group");
        group.set_aad(aad);
        let bundle = group
            .commit_builder()
            .propose_adds(key_packages)
            .load_psks(provider.storage())
            .expect("psks")
            .create_group_info_with_extensions([wrapper_key_extension(wrapper_key)])
            .expect("group info extensions")
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .expect("commit")
            .stage_commit(provider)
            .expect("stage commit");
        let (commit, welcome, group_info) = bundle.into_messages();
        let group_info = mls_bytes(&group_info.expect("group info requested"));
        let group_info = if strip_wrapper_key {
            MlsMessageBytes::from_bytes(
                group_info_without_extension(
                    group_info.as_bytes(),
                    IDENTITY_LINK_WRAPPER_KEY_EXTENSION_TYPE,
                    signer,
                )
                .expect("re-sign the GroupInfo"),
            )
            .expect("GroupInfo")
        } else {
            group_info
        };
        client.signed(
            DsRequestBody::Commits(MembershipCommitRequest {
                group_update: GroupUpdate {
                    commit: mls_bytes(&commit),
                    group_info: GroupInfoOption::Full(group_info),
                },
                welcome_messages: welcome.as_ref().map(mls_bytes).into_iter().collect(),
            }),
            now_ms,
        )
    }

    /// [`Self::add_request_with_aad`] with the AddAAD of `add` (MIMIMI Flow C steps 2-5).
    pub fn add_linked_request(
        &mut self,
        add: LinkedAdd<'_>,
        wrapper_key: &[u8],
        now_ms: u64,
    ) -> Vec<u8> {
        let group_id = self.client.group_id();
        let mut entries: Vec<EncryptedIdentityLinkKey> = add
            .added
            .iter()
            .map(|(kp, connection_key)| {
                Self::entry_for(kp, connection_key, wrapper_key, &group_id).1
            })
            .collect();
        if add.own {
            entries.push(self.own_entry(wrapper_key, &group_id));
        }
        let key_packages = add.added.into_iter().map(|(kp, _)| kp).collect();
        let aad = add_aad_bytes(entries).expect("AddAAD");
        self.add_request_with_aad(key_packages, aad, wrapper_key, true, now_ms)
    }

    /// `external_join` (MIMIMI Flow D) from the GroupInfo and tree a member handed over, with
    /// `aad` as the external commit's `authenticated_data` (normally the joiner's own entry,
    /// [`Self::own_entry`]). Pending until confirmed.
    pub fn external_join_request_with_aad(
        &mut self,
        info: &ExternalCommitInfo,
        aad: Vec<u8>,
    ) -> Vec<u8> {
        self.client.external_join_request_with(
            info,
            ExternalJoinOptions {
                aad,
                capabilities: Some(pseudonymous_capabilities()),
                ..ExternalJoinOptions::default()
            },
        )
    }

    /// `identity_link_keys(24)`, signed by this member.
    pub fn identity_link_keys_request(&self, now_ms: u64) -> Vec<u8> {
        self.client.signed(DsRequestBody::IdentityLinkKeys, now_ms)
    }
}

/// The room's wrapper key from the GroupInfo of a Welcome (MIMIMI Flow C step 5), as the
/// joiner reads it before joining.
pub fn wrapper_key_of(processed: &ProcessedWelcome) -> Option<Vec<u8>> {
    let data = processed
        .unverified_group_info()
        .extensions()
        .unknown(IDENTITY_LINK_WRAPPER_KEY_EXTENSION_TYPE)?;
    crate::wire::decode_exact::<IdentityLinkWrapperKeyExtension>(&data.0)
        .ok()
        .map(|e| e.identity_link_wrapper_key.as_slice().to_vec())
}

/// Authenticates every member of `group` but `own_leaf` (MIMIMI Flow C step 7): unwraps each
/// leaf's entry of `links` with the room's wrapper key, opens its identity link and verifies
/// the signature by its real key. Returns each leaf with its real identity, or why not.
pub fn authenticate_members(
    group: &MlsGroup,
    links: &IdentityLinkKeys,
    wrapper_key: &[u8],
) -> Vec<(u32, Result<RealIdentity, String>)> {
    let crypto = RustCrypto::default();
    let group_id = group.group_id().as_slice().to_vec();
    group
        .members()
        .filter(|m| m.index != group.own_leaf_index())
        .map(|member| {
            let leaf = member.index.u32();
            let result = (|| {
                let credential =
                    from_mls_credential(&member.credential).map_err(|e| e.to_string())?;
                let entry = links
                    .entries
                    .get(leaf as usize)
                    .cloned()
                    .flatten()
                    .ok_or("no entry at the hub")?;
                let key: IdentityLinkKey = unwrap_identity_link_key(
                    &crypto,
                    CIPHERSUITE,
                    wrapper_key,
                    &group_id,
                    &credential.tbs(),
                    &entry,
                )
                .map_err(|e| e.to_string())?;
                authenticate(&crypto, CIPHERSUITE, &key, &credential).map_err(|e| e.to_string())
            })();
            (leaf, result)
        })
        .collect()
}
