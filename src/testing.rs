//! Real openmls clients and an in-process DS, for tests, the demo, benches and fuzzing
//! (feature `test-utils`).
//!
//! Everything here drives real `MlsGroup`s: commits, Welcomes and application messages are
//! produced by openmls, never hand-made. The helpers panic on unexpected errors, which is what
//! a test wants; do not use them in production code.

pub mod conformance;

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{OpenMlsRustCrypto, RustCrypto};
use openmls_traits::types::HpkeKeyPair;
use tls_codec::Serialize as _;

use crate::qs::{
    seal_queue_info, CreateQueueKey, InMemoryQsStorage, QsConfig, QsOutcome, QsStatus, QueueKey,
    QueueingService,
};
use crate::storage::InMemoryStorage;
use crate::wire::{
    decode_exact, encode, ClientQueueConfig, ClientSignature, CreateGroupRequest,
    DeleteGroupRequest, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    DsSenderId, ExternalCommitInfo, FanoutMessage, GroupInfoOption, GroupInfoRequest, GroupUpdate,
    MembershipCommitRequest, MlsMessageBytes, ProposalsRequest, QsClientRequest,
    QsClientRequestBody, QsClientResponse, QsClientResponseBody, QueueCreated, RatchetTreeBytes,
    SelfRemoveClientRequest, SendMessageRequest, UpdateQueueInfoRequest, WelcomeInfoRequest,
    PROTOCOL_VERSION_MIMI_DS10, QUEUE_CONFIG_EXTENSION_TYPE,
};
use crate::{
    BasicCredentialValidator, DeliveryService, DsConfig, DsIdentity, Fanout, Outcome, UnixTimeMs,
};
use openmls_traits::random::OpenMlsRand;

/// The ciphersuite the test clients use.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// A fixed, plausible start time (2026-01-01T00:00:00Z) so runs are reproducible.
pub const START_MS: u64 = 1_767_225_600_000;

/// A DS identity with a fresh Ed25519 key and a BasicCredential naming `domain`.
pub fn ds_identity(domain: &str) -> (DsIdentity, ExternalSender) {
    let keys = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key generation");
    let signature_key = SignaturePublicKey::from(keys.to_public_vec());
    let credential: Credential = BasicCredential::new(domain.as_bytes().to_vec()).into();
    let sender = ExternalSender::new(signature_key.clone(), credential.clone());
    (
        DsIdentity {
            signature_key,
            credential,
            signer: Box::new(keys),
        },
        sender,
    )
}

/// A DS with in-memory storage and a manual clock.
pub struct TestDs {
    /// The service.
    pub ds: DeliveryService<RustCrypto>,
    /// Its storage.
    pub storage: InMemoryStorage,
    /// The current time; advance it with [`TestDs::advance`].
    pub now_ms: u64,
    /// The DS as an MLS external sender, for clients creating groups.
    pub external_sender: ExternalSender,
}

impl TestDs {
    /// A DS for `domain` with default configuration.
    pub fn new(domain: &str) -> Self {
        Self::with_config(DsConfig::new(domain))
    }

    /// A DS with the given configuration.
    pub fn with_config(config: DsConfig) -> Self {
        let (identity, external_sender) = ds_identity(&config.domain);
        Self {
            // The harness's clients carry BasicCredentials naming MIMI client URIs.
            ds: DeliveryService::new(config, identity, RustCrypto::default())
                .with_credential_validator(BasicCredentialValidator::accept_basic_credentials()),
            storage: InMemoryStorage::new(),
            now_ms: START_MS,
            external_sender,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// Processes a request at the current time.
    pub fn process(&mut self, request: &[u8]) -> Outcome {
        self.ds
            .process(UnixTimeMs(self.now_ms), request, &mut self.storage)
            .expect("in-memory storage does not fail")
    }

    /// Reserves a fresh group ID.
    pub fn request_group_id(&mut self) -> Vec<u8> {
        let request = encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::RequestGroupId,
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode");
        match decode_response(&self.process(&request).response).body {
            DsResponseBody::GroupId(id) => id.as_slice().to_vec(),
            other => panic!("request_group_id failed: {other:?}"),
        }
    }

    /// The storage as it is after an authenticated `create_group` for `group_id` was refused:
    /// the reservation is consumed and nothing else changes (wire-format.md §4.2). Compare
    /// [`Self::storage`] with it after such a refusal.
    pub fn storage_with_reservation_consumed(&self, group_id: &[u8]) -> InMemoryStorage {
        use crate::storage::{DsStorage, RecordKind, RecordWrite, VersionGuard, WriteOutcome};
        let mut expected = self.storage.clone();
        let version = expected.version(group_id).expect("a reserved group ID");
        let consume = crate::storage::WriteSet {
            group_id: group_id.to_vec(),
            guard: VersionGuard::Exactly(version),
            records: vec![RecordWrite::Delete(RecordKind::Reservation)],
            replay_mark: None,
            now_ms: self.now_ms,
            fanout: Vec::new(),
        };
        assert_eq!(
            expected
                .write(&consume)
                .expect("in-memory storage does not fail"),
            WriteOutcome::Applied
        );
        expected
    }

    /// Registers a group created by `creator` and adds `joiners` in one commit; each joiner
    /// joins from its Welcome with the tree it fetches through `welcome_info`. Returns the
    /// group ID. Panics if the DS refuses any step.
    pub fn create_group_with(
        &mut self,
        creator: &mut TestClient,
        joiners: &mut [&mut TestClient],
    ) -> Vec<u8> {
        let group_id = self.request_group_id();
        creator.create_group(&group_id, &self.external_sender);
        let out = self.process(&creator.create_group_request(self.now_ms));
        assert_eq!(
            out.status,
            crate::Status::Accepted,
            "create_group: {:?}",
            decode_response(&out.response)
        );
        if joiners.is_empty() {
            return group_id;
        }
        let key_packages = joiners.iter().map(|j| j.key_package()).collect();
        let out = self.process(&creator.add_request(key_packages, self.now_ms));
        assert_eq!(
            out.status,
            crate::Status::Accepted,
            "add: {:?}",
            decode_response(&out.response)
        );
        creator.confirm_commit();
        Self::route(&out, joiners);
        for joiner in joiners.iter_mut() {
            let Some(Received::Welcome(welcome)) = joiner.process_inbox().pop() else {
                panic!("no Welcome for {}", joiner.name)
            };
            let (request, processed) = joiner.welcome_info_request(&welcome, self.now_ms);
            let DsResponseBody::WelcomeInfo(info) =
                decode_response(&self.process(&request).response).body
            else {
                panic!("welcome_info refused for {}", joiner.name)
            };
            joiner.join_with_tree(processed, &info.ratchet_tree);
        }
        group_id
    }

    /// The `group_info` answer for a group, fetched by `requester` with
    /// [`TestClient::signed_group_info_request`] (panics if refused). A signed read sent twice
    /// is a replay (wire-format.md §3.4), so a requester that already read at this
    /// millisecond signs an earlier one, as a client whose clock ticked would sign a later one.
    pub fn group_info(&mut self, requester: &TestClient, group_id: &[u8]) -> ExternalCommitInfo {
        for earlier in 0..1000 {
            let request =
                requester.signed_group_info_request(group_id, None, self.now_ms - earlier);
            match decode_response(&self.process(&request).response).body {
                DsResponseBody::ExternalCommitInfo(info) => return info,
                DsResponseBody::Error(e) if e.code == crate::wire::ErrorCode::ReplayedRequest => {}
                other => panic!("group_info refused: {other:?}"),
            }
        }
        panic!("group_info: a thousand reads in one millisecond")
    }

    /// Delivers every fanout instruction to the clients whose queues it names, as a Queueing
    /// Service would. Returns how many client deliveries were made.
    pub fn route(outcome: &Outcome, clients: &mut [&mut TestClient]) -> usize {
        let mut delivered = 0;
        for fanout in &outcome.fanout {
            for queue in &fanout.request.recipients {
                for client in clients.iter_mut() {
                    if client.queue.queue == *queue
                        && client.queue.provider_domain == fanout.request.recipient_domain
                    {
                        client.inbox.push(fanout.request.message.clone());
                        delivered += 1;
                    }
                }
            }
        }
        delivered
    }
}

/// A provider's Queueing Service with in-memory storage, sharing the clock convention of
/// [`TestDs`].
pub struct TestQs {
    /// The service.
    pub qs: QueueingService<RustCrypto>,
    /// Its storage.
    pub storage: InMemoryQsStorage,
    /// The current time.
    pub now_ms: u64,
}

impl TestQs {
    /// A QS for `domain` with a fresh queue key.
    pub fn new(domain: &str) -> Self {
        Self::with_config(QsConfig::new(domain))
    }

    /// A QS with this configuration and a fresh queue key.
    pub fn with_config(config: QsConfig) -> Self {
        let seed = RustCrypto::default().random_vec(32).expect("randomness");
        Self {
            qs: QueueingService::new(
                config,
                QueueKey::derive(&seed).expect("queue key"),
                RustCrypto::default(),
            ),
            storage: InMemoryQsStorage::new(),
            now_ms: START_MS,
        }
    }

    /// Delivers one fanout instruction as a DS's server would, without transport
    /// authentication.
    pub fn deliver(&mut self, fanout: &Fanout) -> QsOutcome {
        self.qs
            .deliver(
                UnixTimeMs(self.now_ms),
                &fanout.to_bytes(),
                None,
                &mut self.storage,
            )
            .expect("in-memory storage does not fail")
    }

    /// A client request.
    pub fn client_request(&mut self, request: &[u8]) -> QsOutcome {
        self.qs
            .client_request(UnixTimeMs(self.now_ms), request, &mut self.storage)
            .expect("in-memory storage does not fail")
    }

    /// Creates `client`'s queue here and makes the client publish it, sealed for deliveries
    /// from `hub_domain`.
    pub fn connect(&mut self, client: &mut TestClient, hub_domain: &str) {
        let outcome = self.client_request(&client.create_queue_request(self.now_ms));
        client.use_queue(&outcome.response, hub_domain);
    }

    /// Fetches everything queued for `client` into its inbox, page by page, and
    /// acknowledges it. Returns how many messages were fetched.
    pub fn fetch_into(&mut self, client: &mut TestClient) -> usize {
        let mut total = 0;
        loop {
            let outcome = self.client_request(&client.fetch_request(100, self.now_ms));
            let (count, remaining) = client.take_page(&outcome.response);
            total += count;
            if remaining == 0 {
                break;
            }
        }
        let outcome = self.client_request(&client.ack_request(self.now_ms));
        assert!(
            !matches!(outcome.status, QsStatus::Rejected(_)),
            "acknowledge refused"
        );
        total
    }
}

/// Decodes a `DSResponse` (panics if the DS produced an undecodable one).
pub fn decode_response(bytes: &[u8]) -> DsResponse {
    decode_exact::<DsResponse>(bytes).expect("the DS produced a decodable response")
}

/// What a client got out of one delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An application message's plaintext.
    Application(Vec<u8>),
    /// A commit was merged; the client is now at this epoch (or was removed).
    Commit {
        /// The new epoch.
        epoch: u64,
        /// Whether the commit removed this client.
        removed: bool,
    },
    /// A proposal was stored.
    Proposal,
    /// A Welcome arrived; join with [`TestClient::join_from_welcome`].
    Welcome(MlsMessageBytes),
}

/// A client: an openmls `MlsGroup` member with its own provider, key and queue.
pub struct TestClient {
    /// The user this client belongs to.
    pub user: String,
    /// The client's name (also its queue ID).
    pub name: String,
    /// The client's openmls provider (crypto + its own key store).
    pub provider: OpenMlsRustCrypto,
    /// Its signature key.
    pub signer: SignatureKeyPair,
    /// Its credential.
    pub credential: CredentialWithKey,
    /// Where the DS fans out to it.
    pub queue: ClientQueueConfig,
    /// Its group, once created or joined.
    pub group: Option<MlsGroup>,
    /// Messages delivered by its Queueing Service and not yet processed.
    pub inbox: Vec<FanoutMessage>,
    /// Its user's authentication key, registered through its leaf when set (shared by all
    /// clients of the user).
    pub user_key: Option<std::rc::Rc<SignatureKeyPair>>,
    /// Data of extension 0xF1D6 to publish instead of the registration built from `user_key`
    /// (to test forged registrations).
    pub user_key_extension_data: Option<Vec<u8>>,
    /// Its queue at its provider's Queueing Service, once created ([`TestQs::connect`]).
    pub qs_queue: Option<QueueCreated>,
    /// The key its provider's answer to `create_queue` is encrypted to.
    pub create_queue_key: CreateQueueKey,
    /// The next queue sequence number to fetch.
    pub next_fetch: u64,
}

impl TestClient {
    /// A client `client` of user `user` whose queue is at `provider_domain`.
    pub fn new(user: &str, client: &str, provider_domain: &str) -> Self {
        let provider = OpenMlsRustCrypto::default();
        let signer =
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key generation");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(
                format!("mimi://{provider_domain}/d/{user}/{client}").into_bytes(),
            )
            .into(),
            signature_key: signer.to_public_vec().into(),
        };
        let queue = ClientQueueConfig {
            provider_domain: provider_domain.as_bytes().to_vec().into(),
            queue: client.as_bytes().to_vec().into(),
        };
        Self {
            user: user.into(),
            name: client.into(),
            provider,
            signer,
            credential,
            queue,
            group: None,
            inbox: Vec::new(),
            user_key: None,
            user_key_extension_data: None,
            qs_queue: None,
            create_queue_key: CreateQueueKey::derive(
                &RustCrypto::default().random_vec(32).expect("randomness"),
            )
            .expect("key"),
            next_fetch: 0,
        }
    }

    /// A signed request to this client's queue (wire-format.md §10.3).
    pub fn qs_request(&self, body: QsClientRequestBody, now_ms: u64) -> Vec<u8> {
        let queue_id = match (&body, &self.qs_queue) {
            (QsClientRequestBody::CreateQueue { .. }, _) | (_, None) => Vec::new(),
            (_, Some(created)) => created.queue_id.as_slice().to_vec(),
        };
        let request = QsClientRequest::sign(
            &self.signer,
            PROTOCOL_VERSION_MIMI_DS10,
            body,
            &queue_id,
            now_ms,
        )
        .expect("sign");
        encode(&request).expect("encode")
    }

    /// `create_queue`, owned by this client's signature key.
    pub fn create_queue_request(&self, now_ms: u64) -> Vec<u8> {
        self.qs_request(
            QsClientRequestBody::CreateQueue {
                owner_key: self.signer.to_public_vec().into(),
                response_key: self.create_queue_key.public_key().to_vec().into(),
            },
            now_ms,
        )
    }

    /// Opens the answer to `create_queue`.
    pub fn open_queue_created(&self, response: &[u8]) -> QueueCreated {
        let response: QsClientResponse = decode_exact(response).expect("QS response");
        let QsClientResponseBody::EncryptedQueueCreated(sealed) = response.body else {
            panic!("create_queue refused: {:?}", response.body);
        };
        let domain =
            String::from_utf8(self.queue.provider_domain.as_slice().to_vec()).expect("domain");
        self.create_queue_key
            .open(&domain, &sealed)
            .expect("the answer opens with the client's key")
    }

    /// Takes the answer to `create_queue` and publishes the queue, sealed to the provider's
    /// key for deliveries from `hub_domain`, as this client's queue configuration.
    pub fn use_queue(&mut self, response: &[u8], hub_domain: &str) {
        let created = self.open_queue_created(response);
        let domain =
            String::from_utf8(self.queue.provider_domain.as_slice().to_vec()).expect("domain");
        self.queue = seal_queue_info(
            &domain,
            hub_domain,
            created.queue_encryption_key.as_slice(),
            created.queue_id.as_slice(),
            created.fanout_auth_token.as_slice(),
        )
        .expect("seal");
        self.qs_queue = Some(created);
    }

    /// `fetch` from where this client stopped.
    pub fn fetch_request(&self, max_messages: u32, now_ms: u64) -> Vec<u8> {
        self.qs_request(
            QsClientRequestBody::Fetch {
                from_sequence: self.next_fetch,
                max_messages,
            },
            now_ms,
        )
    }

    /// `acknowledge` everything fetched so far.
    pub fn ack_request(&self, now_ms: u64) -> Vec<u8> {
        self.qs_request(
            QsClientRequestBody::Acknowledge {
                up_to_sequence: self.next_fetch,
            },
            now_ms,
        )
    }

    /// Puts a fetched page into the inbox. Returns how many messages it held and how many
    /// are still queued.
    pub fn take_page(&mut self, response: &[u8]) -> (usize, u64) {
        let response: QsClientResponse = decode_exact(response).expect("QS response");
        let QsClientResponseBody::Messages(page) = response.body else {
            panic!("fetch refused: {:?}", response.body);
        };
        let count = page.messages.len();
        self.inbox
            .extend(page.messages.into_iter().map(|queued| queued.message));
        self.next_fetch = page.next_sequence;
        (count, page.remaining)
    }

    /// Leaf capabilities: the suite and the queue configuration extension (RFC 9420 §7.2
    /// requires a leaf to list the extension types it carries).
    pub fn capabilities() -> Capabilities {
        Capabilities::new(
            None,
            Some(&[CIPHERSUITE]),
            Some(&[
                ExtensionType::Unknown(QUEUE_CONFIG_EXTENSION_TYPE),
                ExtensionType::Unknown(crate::wire::USER_AUTH_KEY_EXTENSION_TYPE),
            ]),
            None,
            None,
        )
    }

    /// This client's leaf extensions: its queue configuration and, if set, its user's
    /// authentication key with the proof over this client's signature key (wire-format.md
    /// §3.5).
    pub fn leaf_extensions(&self) -> Extensions<LeafNode> {
        let mut extensions = vec![Extension::Unknown(
            QUEUE_CONFIG_EXTENSION_TYPE,
            UnknownExtension(encode(&self.queue).expect("encode")),
        )];
        let registration = self.user_key_extension_data.clone().or_else(|| {
            self.user_key.as_ref().map(|key| {
                let extension = crate::wire::UserAuthKeyExtension::sign(
                    key.as_ref(),
                    &key.to_public_vec(),
                    &self.signer.to_public_vec(),
                )
                .expect("signing");
                encode(&extension).expect("encode")
            })
        });
        if let Some(data) = registration {
            extensions.push(Extension::Unknown(
                crate::wire::USER_AUTH_KEY_EXTENSION_TYPE,
                UnknownExtension(data),
            ));
        }
        Extensions::from_vec(extensions).expect("valid leaf extensions")
    }

    /// Gives `clients` (of one user) one fresh user authentication key, which they register
    /// through their leaves (wire-format.md §3.5) and sign user-level requests with.
    pub fn share_user_key(clients: &mut [&mut Self]) {
        let key = std::rc::Rc::new(
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key generation"),
        );
        for client in clients.iter_mut() {
            client.user_key = Some(key.clone());
        }
    }

    /// Signs a request body with the user key (sender `user_key_hash`).
    pub fn signed_as_user(&self, body: DsRequestBody, now_ms: u64) -> Vec<u8> {
        self.signed_as_user_in(body, &self.group_id(), now_ms)
    }

    /// Signs a request body about `group_id` with the user key (sender `user_key_hash`), for
    /// a client that need not have the group's state.
    pub fn signed_as_user_in(&self, body: DsRequestBody, group_id: &[u8], now_ms: u64) -> Vec<u8> {
        let key = self.user_key.as_ref().expect("client has a user key");
        let hash = crate::wire::user_key_hash(
            &RustCrypto::default(),
            CIPHERSUITE.hash_algorithm(),
            &key.to_public_vec(),
        )
        .expect("hash");
        let auth = ClientSignature::sign(
            key.as_ref(),
            PROTOCOL_VERSION_MIMI_DS10,
            &body,
            group_id,
            now_ms,
            DsSenderId::UserKeyHash(hash.into()),
        )
        .expect("signing");
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body,
            auth: DsAuthData::ClientSignature(auth),
        })
        .expect("encode")
    }

    /// The leaf extensions publishing `config`.
    pub fn queue_extension(config: &ClientQueueConfig) -> Extensions<LeafNode> {
        Extensions::single(Extension::Unknown(
            QUEUE_CONFIG_EXTENSION_TYPE,
            UnknownExtension(encode(config).expect("encode")),
        ))
        .expect("a single unknown extension is valid")
    }

    /// The lifetime of the harness's KeyPackages and of a group creator's leaf. The DS checks
    /// lifetimes against its `now` (a [`TestDs`] starts at [`START_MS`]), openmls against the
    /// system clock (OPENMLS-NOTES), so this one covers both: from an hour before the earlier
    /// to openmls's default 84 days after the later.
    pub fn lifetime() -> Lifetime {
        let system_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let start_s = START_MS / 1000;
        Lifetime::init(
            system_s.min(start_s).saturating_sub(3600),
            system_s.max(start_s) + 84 * 24 * 3600,
        )
    }

    /// A fresh KeyPackage carrying this client's queue configuration, with [`Self::lifetime`].
    pub fn key_package(&self) -> KeyPackage {
        self.key_package_with_lifetime(Self::lifetime())
    }

    /// A fresh KeyPackage carrying this client's queue configuration, with `lifetime`.
    pub fn key_package_with_lifetime(&self, lifetime: Lifetime) -> KeyPackage {
        KeyPackage::builder()
            .key_package_lifetime(lifetime)
            .leaf_node_capabilities(Self::capabilities())
            .leaf_node_extensions(self.leaf_extensions())
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .expect("key package")
            .key_package()
            .clone()
    }

    /// The group (panics if the client has none).
    pub fn group(&self) -> &MlsGroup {
        self.group.as_ref().expect("client has a group")
    }

    fn group_mut(&mut self) -> &mut MlsGroup {
        self.group.as_mut().expect("client has a group")
    }

    /// The client's leaf index.
    pub fn leaf(&self) -> u32 {
        self.group().own_leaf_index().u32()
    }

    /// The group's ID.
    pub fn group_id(&self) -> Vec<u8> {
        self.group().group_id().as_slice().to_vec()
    }

    /// How many past epochs' secrets a client keeps, to read messages sent in an epoch it
    /// has already left (an application message the DS accepted before a commit it merged).
    pub const PAST_EPOCHS: usize = 4;

    fn join_config() -> MlsGroupJoinConfig {
        MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(Self::PAST_EPOCHS)
            .build()
    }

    /// Creates the MLS group locally, naming `ds` as external sender.
    pub fn create_group(&mut self, group_id: &[u8], ds: &ExternalSender) {
        let group = MlsGroup::builder()
            .with_group_id(GroupId::from_slice(group_id))
            .ciphersuite(CIPHERSUITE)
            .with_wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(Self::PAST_EPOCHS)
            .lifetime(Self::lifetime())
            .with_capabilities(Self::capabilities())
            .with_leaf_node_extensions(self.leaf_extensions())
            .expect("leaf extensions")
            .with_group_context_extensions(
                Extensions::single(Extension::ExternalSenders(vec![ds.clone()]))
                    .expect("extensions"),
            )
            .build(&self.provider, &self.signer, self.credential.clone())
            .expect("group creation");
        self.group = Some(group);
    }

    /// Signs a request body as the leaf of this client in its group.
    pub fn signed(&self, body: DsRequestBody, now_ms: u64) -> Vec<u8> {
        let group_id = self.group_id();
        self.signed_as(body, &group_id, now_ms, DsSenderId::LeafIndex(self.leaf()))
    }

    /// Signs a request body with an explicit group and sender.
    pub fn signed_as(
        &self,
        body: DsRequestBody,
        group_id: &[u8],
        now_ms: u64,
        sender: DsSenderId,
    ) -> Vec<u8> {
        let auth = ClientSignature::sign(
            &self.signer,
            PROTOCOL_VERSION_MIMI_DS10,
            &body,
            group_id,
            now_ms,
            sender,
        )
        .expect("signing");
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body,
            auth: DsAuthData::ClientSignature(auth),
        })
        .expect("encode")
    }

    /// `create_group` for the group this client just created.
    pub fn create_group_request(&self, now_ms: u64) -> Vec<u8> {
        let group = self.group();
        let group_info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .expect("group info");
        let tree = group.export_ratchet_tree();
        let body = DsRequestBody::CreateGroup(CreateGroupRequest {
            group_id: self.group_id().into(),
            group_info: mls_bytes(&group_info),
            ratchet_tree: RatchetTreeBytes::from_bytes(
                tree.tls_serialize_detached().expect("encode"),
            )
            .expect("tree"),
        });
        self.signed(body, now_ms)
    }

    /// Stages a commit built by `build` and returns its group update and Welcome. The commit is
    /// pending until [`TestClient::confirm_commit`] or [`TestClient::discard_commit`].
    pub fn stage_commit(
        &mut self,
        build: impl FnOnce(
            CommitBuilder<'_, openmls::group::Initial>,
        ) -> CommitBuilder<'_, openmls::group::Initial>,
    ) -> (GroupUpdate, Option<MlsMessageBytes>) {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let bundle = build(group.commit_builder())
            .load_psks(provider.storage())
            .expect("psks")
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .expect("commit")
            .stage_commit(provider)
            .expect("stage commit");
        let (commit, welcome, group_info) = bundle.into_messages();
        let update = GroupUpdate {
            commit: mls_bytes(&commit),
            group_info: GroupInfoOption::Full(mls_bytes(
                &group_info.expect("group info requested"),
            )),
        };
        (update, welcome.as_ref().map(mls_bytes))
    }

    /// `commits` adding the given KeyPackages, with the Welcome.
    pub fn add_request(&mut self, key_packages: Vec<KeyPackage>, now_ms: u64) -> Vec<u8> {
        let (update, welcome) = self.stage_commit(|b| b.propose_adds(key_packages));
        self.signed(
            DsRequestBody::Commits(MembershipCommitRequest {
                group_update: update,
                welcome_messages: welcome.into_iter().collect(),
            }),
            now_ms,
        )
    }

    /// `commits` with an update path and any pending proposals.
    pub fn update_request(&mut self, now_ms: u64) -> Vec<u8> {
        let (update, _) = self.stage_commit(|b| b.force_self_update(true));
        self.signed(commit_body(update), now_ms)
    }

    /// `commits` removing the given leaves.
    pub fn remove_request(&mut self, leaves: &[u32], now_ms: u64) -> Vec<u8> {
        let removed: Vec<LeafNodeIndex> = leaves.iter().copied().map(LeafNodeIndex::new).collect();
        let (update, _) = self.stage_commit(|b| b.propose_removals(removed));
        self.signed(commit_body(update), now_ms)
    }

    /// `delete_group`: a commit removing every other member.
    pub fn delete_group_request(&mut self, now_ms: u64) -> Vec<u8> {
        let own = self.group().own_leaf_index();
        let others: Vec<LeafNodeIndex> = self
            .group()
            .members()
            .map(|m| m.index)
            .filter(|i| *i != own)
            .collect();
        let (update, _) = self.stage_commit(|b| b.propose_removals(others));
        self.signed(
            DsRequestBody::DeleteGroup(DeleteGroupRequest {
                group_update: update,
            }),
            now_ms,
        )
    }

    /// `proposals` with a Remove proposal for `leaf`.
    pub fn propose_remove_request(&mut self, leaf: u32, now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let (message, _) = group
            .propose_remove_member(provider, signer, LeafNodeIndex::new(leaf))
            .expect("proposal");
        self.signed(
            DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![mls_bytes(&message)],
            }),
            now_ms,
        )
    }

    /// `self_remove_client`: a Remove proposal of this client's own leaf (openmls `leave_group`).
    pub fn self_remove_request(&mut self, now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let message = group.leave_group(provider, signer).expect("leave");
        self.signed(
            DsRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
                proposal: mls_bytes(&message),
            }),
            now_ms,
        )
    }

    /// `send_message` with an application message.
    pub fn message_request(&mut self, text: &[u8], now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let message = group
            .create_message(provider, signer, text)
            .expect("message");
        self.signed(
            DsRequestBody::SendMessage(SendMessageRequest {
                application_message: mls_bytes(&message),
            }),
            now_ms,
        )
    }

    /// `update_queue_info` moving this client's queue.
    pub fn update_queue_request(&mut self, queue: ClientQueueConfig, now_ms: u64) -> Vec<u8> {
        self.queue = queue.clone();
        self.signed(
            DsRequestBody::UpdateQueueInfo(UpdateQueueInfoRequest {
                queue_config: queue,
            }),
            now_ms,
        )
    }

    /// An unauthenticated `group_info` request: answered only by a DS configured with
    /// [`crate::GroupInfoAccess::Anyone`]; see [`TestClient::signed_group_info_request`].
    pub fn group_info_request(group_id: &[u8]) -> Vec<u8> {
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::GroupInfo(GroupInfoRequest {
                group_id: group_id.to_vec().into(),
                encryption_key: None,
            }),
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode")
    }

    /// A `group_info` request signed by this client (wire-format.md §4.11): with its leaf
    /// while it is a member of the group, otherwise with its user key (a new device of a user
    /// in the group, or a client that lost its state). `encryption_key`: see
    /// [`group_info_encryption_keys`]. Panics if the client has neither.
    pub fn signed_group_info_request(
        &self,
        group_id: &[u8],
        encryption_key: Option<&HpkeKeyPair>,
        now_ms: u64,
    ) -> Vec<u8> {
        let body = DsRequestBody::GroupInfo(GroupInfoRequest {
            group_id: group_id.to_vec().into(),
            encryption_key: encryption_key.map(|keys| keys.public.clone().into()),
        });
        match &self.group {
            Some(group) if group.is_active() && group.group_id().as_slice() == group_id => self
                .signed_as(
                    body,
                    group_id,
                    now_ms,
                    DsSenderId::LeafIndex(group.own_leaf_index().u32()),
                ),
            _ => self.signed_as_user_in(body, group_id, now_ms),
        }
    }

    /// An unauthenticated `group_info` request whose answer is encrypted to a fresh HPKE key
    /// of the harness's ciphersuite; open the answer with [`open_external_commit_info`].
    pub fn encrypted_group_info_request(group_id: &[u8]) -> (Vec<u8>, HpkeKeyPair) {
        let keys = group_info_encryption_keys();
        let request = encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::GroupInfo(GroupInfoRequest {
                group_id: group_id.to_vec().into(),
                encryption_key: Some(keys.public.clone().into()),
            }),
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode");
        (request, keys)
    }

    /// Decrypts a Welcome far enough to learn its group and epoch, and signs the
    /// `welcome_info` request for that epoch's tree with the KeyPackage the Welcome is for.
    /// Finish with [`TestClient::join_with_tree`]. (Processing the Welcome consumes the
    /// KeyPackage's private keys, so this works once per Welcome; re-sign the returned request
    /// with [`TestClient::signed_as`] to build another.)
    pub fn welcome_info_request(
        &self,
        welcome: &MlsMessageBytes,
        now_ms: u64,
    ) -> (Vec<u8>, ProcessedWelcome) {
        let MlsMessageBodyIn::Welcome(welcome) = welcome.parse().expect("welcome").extract() else {
            panic!("not a Welcome");
        };
        let storage = self.provider.storage();
        let key_package_ref = welcome
            .secrets()
            .iter()
            .map(|secret| secret.new_member())
            .find(|r| {
                openmls_traits::storage::StorageProvider::key_package::<_, KeyPackageBundle>(
                    storage, r,
                )
                .ok()
                .flatten()
                .is_some()
            })
            .expect("a Welcome for one of this client's KeyPackages");
        let processed =
            ProcessedWelcome::new_from_welcome(&self.provider, &Self::join_config(), welcome)
                .expect("welcome");
        let info = processed.unverified_group_info();
        let (group_id, epoch) = (info.group_id().as_slice().to_vec(), info.epoch().as_u64());
        let request = self.signed_as(
            DsRequestBody::WelcomeInfo(WelcomeInfoRequest { epoch }),
            &group_id,
            now_ms,
            DsSenderId::KeyPackageRef(key_package_ref.as_slice().to_vec().into()),
        );
        (request, processed)
    }

    /// Joins from a processed Welcome with the tree the DS returned for it.
    pub fn join_with_tree(&mut self, processed: ProcessedWelcome, tree: &RatchetTreeBytes) {
        let group = JoinBuilder::new(&self.provider, processed)
            .with_ratchet_tree(tree.parse().expect("tree"))
            .build()
            .expect("welcome")
            .into_group(&self.provider)
            .expect("join");
        self.group = Some(group);
    }

    /// `external_join` from the GroupInfo and tree the DS serves (`group_info`). The client's
    /// group is pending until [`TestClient::confirm_commit`]. A client that lost its state
    /// joins again the same way: openmls then also removes its old leaf (same identity).
    pub fn external_join_request(&mut self, info: &ExternalCommitInfo) -> Vec<u8> {
        let MlsMessageBodyIn::GroupInfo(group_info) =
            info.group_info.parse().expect("group info").extract()
        else {
            panic!("not a GroupInfo");
        };
        let provider = &self.provider;
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(info.ratchet_tree.parse().expect("tree"))
            .with_config(Self::join_config())
            .build_group(provider, group_info, self.credential.clone())
            .expect("external commit")
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(Self::capabilities())
                    .with_extensions(self.leaf_extensions())
                    .build(),
            )
            .load_psks(provider.storage())
            .expect("psks")
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), &self.signer, |_| true)
            .expect("external commit")
            .finalize(provider)
            .expect("external commit");
        self.group = Some(group);
        let (commit, _, group_info) = bundle.into_messages();
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::ExternalJoin(DeleteGroupRequest {
                group_update: GroupUpdate {
                    commit: mls_bytes(&commit),
                    group_info: GroupInfoOption::Full(mls_bytes(
                        &group_info.expect("external commits carry a GroupInfo"),
                    )),
                },
            }),
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode")
    }

    /// Forgets all group state and key material except the client's identity (signature key
    /// and credential), as a device restored without its MLS state would.
    pub fn lose_state(&mut self) {
        self.provider = OpenMlsRustCrypto::default();
        self.group = None;
        self.inbox.clear();
    }

    /// Merges the staged commit after the DS accepted it.
    pub fn confirm_commit(&mut self) {
        let provider = &self.provider;
        self.group
            .as_mut()
            .expect("client has a group")
            .merge_pending_commit(provider)
            .expect("merge");
    }

    /// Drops the staged commit after the DS refused it.
    pub fn discard_commit(&mut self) {
        let storage = self.provider.storage();
        self.group
            .as_mut()
            .expect("client has a group")
            .clear_pending_commit(storage)
            .expect("clear");
    }

    /// Joins from a Welcome, with the ratchet tree obtained from the DS.
    pub fn join_from_welcome(&mut self, welcome: &MlsMessageBytes, tree: &RatchetTreeBytes) {
        let MlsMessageBodyIn::Welcome(welcome) = welcome.parse().expect("welcome").extract() else {
            panic!("not a Welcome");
        };
        let group = StagedWelcome::new_from_welcome(
            &self.provider,
            &Self::join_config(),
            welcome,
            Some(tree.parse().expect("tree")),
        )
        .expect("welcome")
        .into_group(&self.provider)
        .expect("join");
        self.group = Some(group);
    }

    /// Processes every delivered message in order.
    pub fn process_inbox(&mut self) -> Vec<Received> {
        let inbox = std::mem::take(&mut self.inbox);
        inbox.iter().map(|m| self.receive(m)).collect()
    }

    /// Processes one delivered message.
    pub fn receive(&mut self, message: &FanoutMessage) -> Received {
        let parsed = message
            .message
            .parse()
            .expect("fanout carries an MLSMessage");
        let protocol = match parsed.extract() {
            MlsMessageBodyIn::Welcome(_) => return Received::Welcome(message.message.clone()),
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            other => panic!("unexpected fanout {other:?}"),
        };
        let provider = &self.provider;
        let group = self.group.as_mut().expect("client has a group");
        let processed = group.process_message(provider, protocol).expect("process");
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(m) => Received::Application(m.into_bytes()),
            ProcessedMessageContent::ProposalMessage(p) => {
                group
                    .store_pending_proposal(provider.storage(), *p)
                    .expect("store proposal");
                Received::Proposal
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let removed = staged.self_removed();
                group.merge_staged_commit(provider, *staged).expect("merge");
                Received::Commit {
                    epoch: group.epoch().as_u64(),
                    removed,
                }
            }
            other => panic!("unexpected content {other:?}"),
        }
    }

    /// The group's epoch.
    pub fn epoch(&self) -> u64 {
        self.group().epoch().as_u64()
    }

    /// Discards the group; `_ = group_mut` keeps the accessor used.
    pub fn leave_locally(&mut self) {
        let _ = self.group_mut();
        self.group = None;
    }
}

/// A fresh HPKE key pair of the harness's ciphersuite, to have a `group_info` answer
/// encrypted to (wire-format.md §5.5).
pub fn group_info_encryption_keys() -> HpkeKeyPair {
    let crypto = RustCrypto::default();
    let ikm = openmls_traits::random::OpenMlsRand::random_vec(&crypto, 32).expect("randomness");
    openmls_traits::crypto::OpenMlsCrypto::derive_hpke_keypair(
        &crypto,
        CIPHERSUITE.hpke_config(),
        &ikm,
    )
    .expect("HPKE key pair")
}

/// Opens an `encrypted_external_commit_info` answer with the requester's HPKE private key.
pub fn open_external_commit_info(
    sealed: &crate::wire::HpkeCiphertext,
    group_id: &[u8],
    keys: &HpkeKeyPair,
) -> Result<ExternalCommitInfo, String> {
    let context = crate::wire::encrypt_context(crate::wire::GROUP_INFO_ENCRYPTION_LABEL, group_id)
        .map_err(|e| e.to_string())?;
    let plaintext = openmls_traits::crypto::OpenMlsCrypto::hpke_open(
        &RustCrypto::default(),
        CIPHERSUITE.hpke_config(),
        &openmls_traits::types::HpkeCiphertext {
            kem_output: sealed.kem_output.clone(),
            ciphertext: sealed.ciphertext.clone(),
        },
        keys.private.as_ref(),
        &context,
        &[],
    )
    .map_err(|e| format!("{e:?}"))?;
    decode_exact::<ExternalCommitInfo>(&plaintext).map_err(|e| e.to_string())
}

/// A `commits` body without Welcomes.
pub fn commit_body(update: GroupUpdate) -> DsRequestBody {
    DsRequestBody::Commits(MembershipCommitRequest {
        group_update: update,
        welcome_messages: Vec::new(),
    })
}

/// The bytes of an outgoing openmls message as a wire [`MlsMessageBytes`].
pub fn mls_bytes(message: &MlsMessageOut) -> MlsMessageBytes {
    MlsMessageBytes::from_bytes(message.tls_serialize_detached().expect("encode"))
        .expect("valid MLSMessage")
}
