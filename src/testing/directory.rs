//! The KeyPackage directory in tests (wire-format.md §14.4): [`TestDirectory`], a directory
//! over in-memory storage with a manual clock, and [`DirectoryUser`], a user whose real
//! openmls clients make pseudonymous KeyPackages and upload them as sets.

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::random::OpenMlsRand;
use tls_codec::{Serialize as _, VLBytes};

use super::seeded::{signature_key_pair, TestCrypto};
use super::{mls_bytes, TestClient, CIPHERSUITE, START_MS};
use crate::directory::token::connection_token;
use crate::directory::{
    DirectoryConfig, DirectoryOutcome, InMemoryDirectoryStorage, KeyPackageDirectory,
    KeyPackageUpload, KeyPackageUploadRequest, KeyPackageUploadResponse,
    KeyPackageUploadResponseBody, SetPurpose, PSEUDONYMOUS_CREDENTIAL_TYPE,
};
use crate::wire::{
    decode_exact, encode, ClaimedKeyPackageSet, DsAuthData, DsError, DsRequest, DsRequestBody,
    DsResponseBody, ErrorCode, KeyPackageClaimRequest, MlsMessageBytes, PROTOCOL_VERSION_MIMI_DS10,
};
use crate::{DirectoryRejectReason, Status, UnixTimeMs};

/// A directory over in-memory storage, with a clock starting at [`START_MS`].
pub struct TestDirectory {
    /// The directory.
    pub directory: KeyPackageDirectory<TestCrypto>,
    /// Its storage.
    pub storage: InMemoryDirectoryStorage,
    /// The time passed to every call.
    pub now_ms: u64,
}

impl Default for TestDirectory {
    fn default() -> Self {
        Self::new(DirectoryConfig::default())
    }
}

impl TestDirectory {
    /// A directory with `config`.
    pub fn new(config: DirectoryConfig) -> Self {
        Self {
            directory: KeyPackageDirectory::new(config, TestCrypto::default()),
            storage: InMemoryDirectoryStorage::new(),
            now_ms: START_MS,
        }
    }

    /// Handles an upload.
    pub fn upload(&mut self, request: &[u8]) -> DirectoryOutcome {
        let outcome = self
            .directory
            .upload(UnixTimeMs(self.now_ms), request, &mut self.storage);
        match outcome {
            Ok(outcome) => outcome,
            Err(e) => panic!("memory storage cannot fail: {e}"),
        }
    }

    /// Handles a claim.
    pub fn claim(&mut self, request: &[u8]) -> DirectoryOutcome {
        let outcome = self
            .directory
            .claim(UnixTimeMs(self.now_ms), request, &mut self.storage);
        match outcome {
            Ok(outcome) => outcome,
            Err(e) => panic!("memory storage cannot fail: {e}"),
        }
    }

    /// An upload that must be accepted; the token's sets afterwards.
    pub fn accept_upload(&mut self, request: &[u8]) -> crate::directory::DirectoryStatus {
        let outcome = self.upload(request);
        assert_eq!(
            outcome.status,
            Status::Accepted,
            "upload refused: {:?}",
            outcome.refusal
        );
        match decode_exact::<KeyPackageUploadResponse>(&outcome.response)
            .expect("decodable")
            .body
        {
            KeyPackageUploadResponseBody::Status(status) => status,
            other => panic!("not a status: {other:?}"),
        }
    }

    /// A claim that must be served; the set it got.
    pub fn accept_claim(&mut self, request: &[u8]) -> ClaimedKeyPackageSet {
        let outcome = self.claim(request);
        assert!(
            matches!(outcome.status, Status::Accepted | Status::Duplicate),
            "claim refused: {:?}",
            outcome.refusal
        );
        claimed_set(&outcome.response)
    }

    /// An upload that must be refused with `code` and leave storage byte-identical.
    pub fn reject_upload(&mut self, request: &[u8], code: ErrorCode) -> DirectoryRejectReason {
        let before = self.storage.clone();
        let outcome = self.upload(request);
        assert!(self.storage == before, "storage is byte-identical");
        assert_eq!(
            outcome.status,
            Status::Rejected(code),
            "{:?}",
            outcome.refusal
        );
        let response =
            decode_exact::<KeyPackageUploadResponse>(&outcome.response).expect("decodes");
        let KeyPackageUploadResponseBody::Error(DsError { code: wire, .. }) = response.body else {
            panic!("not an error: {response:?}");
        };
        assert_eq!(wire, code);
        outcome.refusal.expect("a refusal names its reason")
    }

    /// A claim that must be refused with `code` and leave storage byte-identical.
    pub fn reject_claim(&mut self, request: &[u8], code: ErrorCode) -> DirectoryRejectReason {
        let before = self.storage.clone();
        let outcome = self.claim(request);
        assert!(self.storage == before, "storage is byte-identical");
        assert_eq!(
            outcome.status,
            Status::Rejected(code),
            "{:?}",
            outcome.refusal
        );
        let DsResponseBody::Error(error) = super::decode_response(&outcome.response).body else {
            panic!("not an error");
        };
        assert_eq!(error.code, code);
        assert!(
            !error.description.as_slice().is_empty(),
            "a description is given"
        );
        outcome.refusal.expect("a refusal names its reason")
    }
}

/// The set in a claim's `DSResponse` (panics on anything else).
pub fn claimed_set(response: &[u8]) -> ClaimedKeyPackageSet {
    match super::decode_response(response).body {
        DsResponseBody::KeyPackages(set) | DsResponseBody::ConnectionKeyPackages(set) => set,
        other => panic!("not a KeyPackage set: {other:?}"),
    }
}

/// The content of a pseudonymous credential in MM-01's field order (see
/// [`crate::directory::user_pseudonym`]).
pub fn pseudonymous_credential_content(
    client_pseudonym: &[u8],
    user_pseudonym: &[u8],
    signature_public_key: &[u8],
    identity_link_ciphertext: &[u8],
) -> Vec<u8> {
    let mut content = Vec::new();
    for field in [
        client_pseudonym,
        user_pseudonym,
        signature_public_key,
        identity_link_ciphertext,
    ] {
        VLBytes::from(field.to_vec())
            .tls_serialize(&mut content)
            .expect("encode");
    }
    content
}

/// A user with real openmls clients, its upload secret and its connection token.
pub struct DirectoryUser {
    /// The user's clients; client `i` fills slot `i` of every set.
    pub clients: Vec<TestClient>,
    /// The secret the user's clients share.
    pub upload_secret: Vec<u8>,
    /// The token connected users claim with.
    pub connection_token: Vec<u8>,
    /// The provider's domain, in the pseudonyms.
    pub provider_domain: String,
}

impl DirectoryUser {
    /// A user with `clients` fresh clients at `provider_domain`.
    pub fn new(user: &str, clients: usize, provider_domain: &str) -> Self {
        let clients = (0..clients)
            .map(|i| TestClient::new(user, &format!("{user}-{}", i + 1), provider_domain))
            .collect();
        Self::with_clients(clients, provider_domain)
    }

    /// A user with these clients; the secret comes from the first client's randomness (so a
    /// seeded client makes a seeded user).
    pub fn with_clients(clients: Vec<TestClient>, provider_domain: &str) -> Self {
        let upload_secret = clients[0]
            .provider
            .rand()
            .random_vec(32)
            .expect("randomness");
        let connection_token =
            connection_token(clients[0].provider.crypto(), &upload_secret).expect("SHA-256");
        Self {
            clients,
            upload_secret,
            connection_token,
            provider_domain: provider_domain.to_owned(),
        }
    }

    /// A fresh canonical pseudonym `mimi://<provider>/<kind>/<uuid>` (wire-format.md §14.1) from client `i`'s
    /// randomness.
    pub fn pseudonym(&self, client: usize, kind: char) -> Vec<u8> {
        let random: [u8; 16] = self.clients[client]
            .provider
            .rand()
            .random_array()
            .expect("randomness");
        let kind = match kind {
            'u' => crate::pseudonym::PseudonymKind::User,
            'd' => crate::pseudonym::PseudonymKind::Client,
            other => panic!("pseudonym kind {other:?}: 'u' or 'd'"),
        };
        crate::pseudonym::IdentifierUri::pseudonym(kind, &self.provider_domain, random)
            .uri
            .as_slice()
            .to_vec()
    }

    /// A KeyPackage of client `client` with a pseudonymous credential for `user_pseudonym`, a
    /// fresh client pseudonym and a fresh signature key.
    pub fn key_package(
        &self,
        client: usize,
        user_pseudonym: &[u8],
        last_resort: bool,
    ) -> MlsMessageBytes {
        self.key_package_with(client, user_pseudonym, last_resort, None)
    }

    /// [`Self::key_package`] with `lifetime` instead of the client's.
    pub fn key_package_with(
        &self,
        client: usize,
        user_pseudonym: &[u8],
        last_resort: bool,
        lifetime: Option<Lifetime>,
    ) -> MlsMessageBytes {
        let owner = &self.clients[client];
        let signer: SignatureKeyPair = signature_key_pair(owner.provider.crypto());
        let client_pseudonym = self.pseudonym(client, 'd');
        let credential = Credential::new(
            CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE),
            pseudonymous_credential_content(
                &client_pseudonym,
                user_pseudonym,
                &signer.to_public_vec(),
                b"identity link ciphertext (wire-format.md \xc2\xa714.1)",
            ),
        );
        self.key_package_for(client, credential, &signer, last_resort, lifetime)
    }

    /// A KeyPackage of client `client` with this credential and signer.
    pub fn key_package_for(
        &self,
        client: usize,
        credential: Credential,
        signer: &SignatureKeyPair,
        last_resort: bool,
        lifetime: Option<Lifetime>,
    ) -> MlsMessageBytes {
        let owner = &self.clients[client];
        let mut extensions = vec![
            ExtensionType::Unknown(crate::wire::QUEUE_CONFIG_EXTENSION_TYPE),
            ExtensionType::Unknown(crate::wire::USER_AUTH_KEY_EXTENSION_TYPE),
        ];
        if last_resort {
            extensions.push(ExtensionType::LastResort);
        }
        let capabilities = Capabilities::new(
            None,
            Some(&[CIPHERSUITE]),
            Some(&extensions),
            None,
            Some(&[
                CredentialType::Basic,
                CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE),
            ]),
        );
        let mut builder = KeyPackage::builder()
            .key_package_lifetime(
                lifetime
                    .unwrap_or_else(|| owner.fixed_lifetime.unwrap_or_else(TestClient::lifetime)),
            )
            .leaf_node_capabilities(capabilities)
            .leaf_node_extensions(owner.leaf_extensions());
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(
                CIPHERSUITE,
                &owner.provider,
                signer,
                CredentialWithKey {
                    credential,
                    signature_key: signer.to_public_vec().into(),
                },
            )
            .expect("key package");
        mls_bytes(&MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// One upload entry.
    pub fn entry(
        &self,
        purpose: SetPurpose,
        client: usize,
        key_package: MlsMessageBytes,
    ) -> KeyPackageUpload {
        KeyPackageUpload {
            purpose,
            set_size: u8::try_from(self.clients.len()).expect("at most 255 clients"),
            client_index: u8::try_from(client).expect("at most 255 clients"),
            key_package,
        }
    }

    /// A complete set: a fresh user pseudonym and one KeyPackage per client.
    pub fn set(&self, purpose: SetPurpose, last_resort: bool) -> (Vec<u8>, Vec<KeyPackageUpload>) {
        let user_pseudonym = self.pseudonym(0, 'u');
        let entries = (0..self.clients.len())
            .map(|i| {
                self.entry(
                    purpose,
                    i,
                    self.key_package(i, &user_pseudonym, last_resort),
                )
            })
            .collect();
        (user_pseudonym, entries)
    }

    /// An upload request with this user's token and secret.
    pub fn upload(&self, uploads: Vec<KeyPackageUpload>) -> Vec<u8> {
        upload_request(&self.connection_token, &self.upload_secret, uploads)
    }

    /// A claim with this user's token.
    pub fn claim(&self, purpose: SetPurpose, claim_id: &[u8]) -> Vec<u8> {
        claim_request(purpose, &self.connection_token, claim_id)
    }
}

/// An encoded `KeyPackageUploadRequest`.
pub fn upload_request(token: &[u8], secret: &[u8], uploads: Vec<KeyPackageUpload>) -> Vec<u8> {
    encode(&KeyPackageUploadRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        connection_token: token.to_vec().into(),
        upload_secret: secret.to_vec().into(),
        uploads,
    })
    .expect("encode")
}

/// An encoded claim: a `DSRequest` of type 12 (group) or 13 (connection), unauthenticated.
pub fn claim_request(purpose: SetPurpose, token: &[u8], claim_id: &[u8]) -> Vec<u8> {
    let body = KeyPackageClaimRequest {
        connection_token: token.to_vec().into(),
        claim_id: claim_id.to_vec().into(),
    };
    encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: match purpose {
            SetPurpose::Group => DsRequestBody::KeyPackages(body),
            SetPurpose::Connection => DsRequestBody::ConnectionKeyPackages(body),
        },
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode")
}
