//! The parts of a MIMIMI deployment the demo (examples/mimimi.rs) and its test
//! (tests/mimimi_demo.rs) share: [`MimimiProvider`], one provider behind its [`Router`] with
//! every store in memory (its Queueing Service, KeyPackage directory and connection keys, and
//! for the hub's provider the Delivery Service), and [`MimimiUser`], a user's real identity
//! and the secrets only the user and its connections hold (wire-format.md §14).

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use tls_codec::Serialize as _;

use super::connection::RealIdentity;
use super::pseudonymous::{random_connection_key, PseudonymousClient};
use super::{TestClient, TestDs, TestQs, CIPHERSUITE};
use crate::connection::{ConnectionConfig, ConnectionProvider, InMemoryConnectionStore};
use crate::directory::token::connection_token;
use crate::directory::{DirectoryConfig, InMemoryDirectoryStorage, KeyPackageDirectory};
use crate::pseudonym::link::{new_pseudonymous_credential, CredentialInputs};
use crate::pseudonym::{IdentifierUri, PseudonymKind, PseudonymousCredentialTbs};
use crate::qs::InMemoryQsStorage;
use crate::storage::InMemoryStorage;
use crate::transport::{Endpoint, HttpRequest, Routed, Router, TransportConfig, OCTET_STREAM};
use crate::wire::FanoutMessage;
use crate::{DsConfig, ExternalJoinPolicy, GroupInfoAccess, UnixTimeMs};

/// One provider: a router serving its Queueing Service and KeyPackage directory (and, for the
/// hub's provider, the Delivery Service), its connection provider, and every store in memory.
pub struct MimimiProvider {
    /// The provider's domain.
    pub domain: String,
    /// Its router.
    pub router: Router,
    /// Its connection provider (keys, inboxes, `/connection_request`).
    pub connections: ConnectionProvider,
    /// The hub's storage (empty unless this provider runs the hub).
    pub ds_storage: InMemoryStorage,
    /// Its Queueing Service's storage.
    pub qs_storage: InMemoryQsStorage,
    /// Its KeyPackage directory's storage.
    pub directory_storage: InMemoryDirectoryStorage,
    /// Its connection keys and inboxes.
    pub conn_store: InMemoryConnectionStore,
    /// The time every call gets.
    pub now_ms: u64,
    /// The hub's external sender, if this provider runs the hub.
    pub external_sender: Option<ExternalSender>,
    /// Every body this provider's server sent to another provider (fanout, connection
    /// requests): what the network between them carried.
    pub relayed: Vec<Vec<u8>>,
}

impl MimimiProvider {
    /// A provider at `domain`; with `hub`, it also runs the hub under that domain. The hub lets
    /// anyone fetch a room's GroupInfo and join by external commit, as one hosting connection
    /// rooms must (wire-format.md §14.3.4).
    pub fn new(domain: &str, hub: Option<&str>) -> Self {
        let qs = TestQs::new(domain);
        let directory = KeyPackageDirectory::new(DirectoryConfig::default(), RustCrypto::default());
        let mut router = Router::new(TransportConfig::new(domain, hub.map(str::to_string)))
            .with_qs(qs.qs)
            .with_directory(directory);
        let mut ds_storage = InMemoryStorage::new();
        let mut external_sender = None;
        if let Some(hub) = hub {
            let mut config = DsConfig::new(hub);
            config.external_joins = ExternalJoinPolicy::Anyone;
            config.group_info_access = GroupInfoAccess::Anyone;
            let ds = TestDs::with_config(config);
            external_sender = Some(ds.external_sender);
            ds_storage = ds.storage;
            router = router.with_ds(ds.ds);
        }
        let seed = RustCrypto::default().random_vec(32).expect("randomness");
        let connections =
            ConnectionProvider::new(ConnectionConfig::new(domain), &seed, RustCrypto::default())
                .expect("a 32-byte seed");
        Self {
            domain: domain.to_owned(),
            router,
            connections,
            ds_storage,
            qs_storage: qs.storage,
            directory_storage: InMemoryDirectoryStorage::new(),
            conn_store: InMemoryConnectionStore::new(),
            now_ms: qs.now_ms,
            external_sender,
            relayed: Vec::new(),
        }
    }

    /// The current time.
    pub fn now(&self) -> UnixTimeMs {
        UnixTimeMs(self.now_ms)
    }

    /// `POST path` with `body`, from `peer` (the provider mutual TLS authenticated, if any), to
    /// whichever part of the provider serves the path.
    pub fn post(&mut self, path: &str, body: &[u8], peer: Option<&str>) -> Routed {
        let headers = [
            ("Host", self.domain.as_str()),
            ("Content-Type", OCTET_STREAM),
        ];
        let request = HttpRequest {
            method: "POST",
            path,
            headers: &headers,
            body,
            authenticated_peer: peer,
        };
        let now = UnixTimeMs(self.now_ms);
        match Endpoint::from_path(path) {
            Some(
                Endpoint::KeyPackageUpload
                | Endpoint::GroupKeyPackages
                | Endpoint::ConnectionKeyPackages,
            ) => self
                .router
                .handle_directory(now, &request, &mut self.directory_storage)
                .expect("in-memory storage does not fail"),
            Some(Endpoint::ConnectionRequest) => self
                .router
                .handle_connection_request(now, &request, &self.connections, &mut self.conn_store)
                .expect("in-memory storage does not fail"),
            _ => self
                .router
                .handle(now, &request, &mut self.ds_storage, &mut self.qs_storage)
                .expect("in-memory storage does not fail"),
        }
    }

    /// Creates `client`'s queue here and makes it publish the queue sealed for deliveries from
    /// `hub_domain` (wire-format.md §10.1).
    pub fn create_queue(&mut self, client: &mut TestClient, hub_domain: &str) {
        let routed = self.post(
            "/queue_operation",
            &client.create_queue_request(self.now_ms),
            None,
        );
        assert_eq!(routed.response.status, 200, "create_queue refused");
        client.use_queue(&routed.response.body, hub_domain);
    }

    /// Fetches and acknowledges everything queued for `client`.
    pub fn fetch(&mut self, client: &mut TestClient) -> Vec<FanoutMessage> {
        let now = self.now_ms;
        let routed = self.post("/queue_operation", &client.fetch_request(100, now), None);
        assert_eq!(routed.response.status, 200, "fetch refused");
        client.take_page(&routed.response.body);
        let routed = self.post("/queue_operation", &client.ack_request(now), None);
        assert_eq!(routed.response.status, 200, "acknowledge refused");
        std::mem::take(&mut client.inbox)
    }

    /// Every store of this provider, by name, as its `{:?}` text: every record, mark and stored
    /// answer (search it with [`super::connection::debug_dump_contains`]).
    pub fn stores(&self) -> Vec<(&'static str, String)> {
        let relayed: Vec<String> = self
            .relayed
            .iter()
            .map(|body| body.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        vec![
            ("hub storage", format!("{:?}", self.ds_storage)),
            ("Queueing Service storage", format!("{:?}", self.qs_storage)),
            (
                "KeyPackage directory",
                format!("{:?}", self.directory_storage),
            ),
            ("connection store", format!("{:?}", self.conn_store)),
            ("bodies sent to other providers", format!("{relayed:?}")),
        ]
    }
}

/// Delivers the hub's fanout in `routed` to each destination's Queueing Service, as the hub's
/// server would (over mutual TLS, authenticated as `hub_domain`); `hub` is the provider that
/// runs the hub and records what it sent to the others. Returns each destination with the
/// size of what it got.
pub fn relay(
    routed: &Routed,
    hub_domain: &str,
    hub: &mut MimimiProvider,
    others: &mut [&mut MimimiProvider],
) -> Vec<(String, usize)> {
    let mut delivered = Vec::new();
    for fanout in &routed.fanout {
        let bytes = fanout.to_bytes();
        let target = if fanout.destination == hub.domain {
            &mut *hub
        } else {
            hub.relayed.push(bytes.clone());
            others
                .iter_mut()
                .find(|p| p.domain == fanout.destination)
                .expect("a known destination")
        };
        let answer = target.post("/deliver_message", &bytes, Some(hub_domain));
        assert_eq!(answer.response.status, 200, "delivery refused");
        delivered.push((fanout.destination.clone(), bytes.len()));
    }
    delivered
}

/// A user: its name at its provider, and the secrets it shares only with its own clients
/// (the upload secret) or with its connections (connection key and token; wire-format.md
/// §14.3, §14.4).
pub struct MimimiUser {
    /// The user's account name at its provider.
    pub name: String,
    /// The provider's domain.
    pub domain: String,
    /// The connection key, from which its credentials' identity-link keys derive (§14.1).
    pub connection_key: Vec<u8>,
    /// The secret its clients upload KeyPackages with (§14.4).
    pub upload_secret: Vec<u8>,
    /// `RefHash("MIMIMI ConnectionToken", upload_secret)`: what connections claim with.
    pub connection_token: Vec<u8>,
}

impl MimimiUser {
    /// User `name` at `domain`, with fresh secrets.
    pub fn new(name: &str, domain: &str) -> Self {
        let crypto = RustCrypto::default();
        let upload_secret = crypto.random_vec(32).expect("randomness");
        let connection_token = connection_token(&crypto, &upload_secret).expect("SHA-256");
        Self {
            name: name.to_owned(),
            domain: domain.to_owned(),
            connection_key: random_connection_key(),
            upload_secret,
            connection_token,
        }
    }

    /// The user's real ID, `mimi://<domain>/u/<name>`.
    pub fn user_id(&self) -> Vec<u8> {
        format!("mimi://{}/u/{}", self.domain, self.name).into_bytes()
    }

    /// The real identity of the user's client `client` (`mimi://<domain>/d/<name>/<client>`,
    /// a fresh signature key), with the user's connection key and token.
    pub fn real_client(&self, client: &str) -> RealIdentity {
        let mut real = RealIdentity::new(&self.name, client, &self.domain);
        real.connection_key = self.connection_key.clone();
        real.connection_token = self.connection_token.clone();
        real
    }

    /// A fresh user pseudonym at the user's provider (one per room, §14.1).
    pub fn pseudonym(&self) -> IdentifierUri {
        super::pseudonymous::random_pseudonym(PseudonymKind::User, &self.domain)
    }
}

/// A copy of a signature key pair (the crate's `Clone` is behind a feature the harness does
/// not turn on): a real client signs with one key in every room.
pub fn copy_signer(signer: &SignatureKeyPair) -> SignatureKeyPair {
    let bytes = signer.tls_serialize_detached().expect("encode");
    SignatureKeyPair::tls_deserialize_exact_bytes(&bytes).expect("decode")
}

impl PseudonymousClient {
    /// The client `real` uses in one room: a fresh leaf key and client pseudonym, the user
    /// pseudonym `user_pseudonym`, and an identity link signed by `real`'s key and encrypted
    /// under its user's connection key (wire-format.md §14.1), at provider `domain`. Its queue is not created yet
    /// ([`MimimiProvider::create_queue`]).
    pub fn with_real_identity(
        real: &RealIdentity,
        domain: &str,
        user_pseudonym: &IdentifierUri,
    ) -> Self {
        // The harness client's names are placeholders: its credential is replaced below, and
        // its queue ID by the provider's at `create_queue`.
        let mut client = TestClient::new("pseudonymous", "pseudonymous", domain);
        let tbs = PseudonymousCredentialTbs {
            client_pseudonym: super::pseudonymous::random_pseudonym(PseudonymKind::Client, domain),
            user_pseudonym: user_pseudonym.clone(),
            signature_public_key: client.signer.to_public_vec().into(),
        };
        let made = new_pseudonymous_credential(
            &RustCrypto::default(),
            CIPHERSUITE,
            CredentialInputs {
                connection_key: &real.connection_key,
                tbs,
                real_credential: &real.credential,
                real_signer: &real.signer,
                real_signature_key: &real.signature_key(),
            },
        )
        .expect("pseudonymous credential");
        client.queue.queue = Vec::new().into();
        let mut pseudonymous = Self {
            client,
            real_credential: real.credential.clone(),
            real_signer: copy_signer(&real.signer),
            pseudonymous: made.credential.clone(),
            identity_link_key: made.identity_link_key,
        };
        pseudonymous.set_credential(&made.credential);
        pseudonymous
    }
}

/// A claimed KeyPackage, validated as the adder's openmls does before adding it.
pub fn validated_key_package(bytes: &crate::wire::MlsMessageBytes) -> KeyPackage {
    let MlsMessageBodyIn::KeyPackage(key_package) = bytes.parse().expect("MLSMessage").extract()
    else {
        panic!("not a KeyPackage")
    };
    key_package
        .validate(&RustCrypto::default(), ProtocolVersion::Mls10)
        .expect("a valid KeyPackage")
}

/// Lowercase hex of the first `n` bytes, for transcripts.
pub fn short_hex(bytes: &[u8], n: usize) -> String {
    let shown: String = bytes.iter().take(n).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > n {
        format!("{shown}…")
    } else {
        shown
    }
}

/// The identity of a BasicCredential as text, for transcripts (a pseudonymous or other
/// credential says so).
pub fn credential_identity(credential: &Credential) -> String {
    BasicCredential::try_from(credential.clone())
        .map(|c| String::from_utf8_lossy(c.identity()).into_owned())
        .unwrap_or_else(|_| "(not a BasicCredential)".into())
}

/// An unauthenticated `request_group_id` for the hub's `/group_operation` (wire-format.md
/// §4.1).
pub fn group_id_request() -> Vec<u8> {
    crate::wire::encode(&crate::wire::DsRequest {
        version: crate::wire::PROTOCOL_VERSION_MIMI_DS10,
        body: crate::wire::DsRequestBody::RequestGroupId,
        auth: crate::wire::DsAuthData::Unauthenticated,
    })
    .expect("encode")
}

impl MimimiUser {
    /// A `/key_package_upload` of a one-KeyPackage group set of `member`'s, under this user's
    /// connection token and upload secret (wire-format.md §14.4).
    pub fn group_set_upload(&self, member: &PseudonymousClient) -> Vec<u8> {
        super::directory::upload_request(
            &self.connection_token,
            &self.upload_secret,
            vec![crate::directory::KeyPackageUpload {
                purpose: crate::directory::SetPurpose::Group,
                set_size: 1,
                client_index: 0,
                key_package: super::mls_bytes(&MlsMessageOut::from(member.key_package())),
            }],
        )
    }
}
