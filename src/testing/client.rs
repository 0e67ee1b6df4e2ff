//! [`TestClient`]: a real openmls group member with its own provider, keys and queue; its
//! group state and how it processes what it receives. The requests it builds for the DS are in
//! `requests.rs`, those for its Queueing Service in `qs.rs`.

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand;

use super::seeded::TestProvider;
use super::{CIPHERSUITE, START_MS};
use crate::qs::CreateQueueKey;
use crate::wire::{
    encode, ClientQueueConfig, ClientSignature, DsAuthData, DsRequest, DsRequestBody, DsSenderId,
    FanoutMessage, MlsMessageBytes, QueueCreated, RatchetTreeBytes, PROTOCOL_VERSION_MIMI_DS10,
    QUEUE_CONFIG_EXTENSION_TYPE,
};

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
    pub provider: TestProvider,
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
    /// Its queue at its provider's Queueing Service, once created ([`super::TestQs::connect`]).
    pub qs_queue: Option<QueueCreated>,
    /// The key its provider's answer to `create_queue` is encrypted to.
    pub create_queue_key: CreateQueueKey,
    /// The next queue sequence number to fetch.
    pub next_fetch: u64,
    /// The lifetime of its KeyPackages and of a group it creates; `None`: [`Self::lifetime`]
    /// at the time.
    pub fixed_lifetime: Option<Lifetime>,
}

impl TestClient {
    /// A client `client` of user `user` whose queue is at `provider_domain`.
    pub fn new(user: &str, client: &str, provider_domain: &str) -> Self {
        let signer =
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key generation");
        Self::with_keys(
            user,
            client,
            provider_domain,
            TestProvider::default(),
            signer,
        )
    }

    /// A client with this provider and signature key (see [`TestClient::new_seeded`]).
    pub fn with_keys(
        user: &str,
        client: &str,
        provider_domain: &str,
        provider: TestProvider,
        signer: SignatureKeyPair,
    ) -> Self {
        let create_queue_key =
            CreateQueueKey::derive(&provider.rand().random_vec(32).expect("randomness"))
                .expect("key");
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
            create_queue_key,
            next_fetch: 0,
            fixed_lifetime: None,
        }
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
        let hash = crate::user_key_hash(
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
    /// lifetimes against its `now` (a [`super::TestDs`] starts at [`START_MS`]), openmls against the
    /// system clock (docs/openmls-notes.md O5), so this one covers both: from an hour before the earlier
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

    /// A fresh KeyPackage carrying this client's queue configuration, with its fixed lifetime
    /// if it has one, else [`Self::lifetime`].
    pub fn key_package(&self) -> KeyPackage {
        self.key_package_with_lifetime(self.fixed_lifetime.unwrap_or_else(Self::lifetime))
    }

    /// A fresh KeyPackage carrying this client's queue configuration, with `lifetime`.
    pub fn key_package_with_lifetime(&self, lifetime: Lifetime) -> KeyPackage {
        self.key_package_with_capabilities(lifetime, Self::capabilities())
    }

    /// A fresh KeyPackage carrying this client's queue configuration, with `lifetime` and
    /// `capabilities` (for leaves that advertise non-default proposal types or extensions).
    pub fn key_package_with_capabilities(
        &self,
        lifetime: Lifetime,
        capabilities: Capabilities,
    ) -> KeyPackage {
        KeyPackage::builder()
            .key_package_lifetime(lifetime)
            .leaf_node_capabilities(capabilities)
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

    pub(super) fn join_config() -> MlsGroupJoinConfig {
        Self::join_config_with_tree(false)
    }

    /// [`Self::join_config`], with the ratchet tree in the GroupInfos of this member's commits
    /// (their Welcomes' and the exported one) if `tree`.
    pub(super) fn join_config_with_tree(tree: bool) -> MlsGroupJoinConfig {
        MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(Self::PAST_EPOCHS)
            .use_ratchet_tree_extension(tree)
            .build()
    }

    /// Creates the MLS group locally, naming `ds` as external sender.
    pub fn create_group(&mut self, group_id: &[u8], ds: &ExternalSender) {
        self.create_group_with(
            group_id,
            Self::capabilities(),
            vec![Extension::ExternalSenders(vec![ds.clone()])],
        );
    }

    /// Creates the MLS group locally with this leaf's `capabilities` and these GroupContext
    /// extensions (which name the DS as external sender, if it is to be one); the one place the
    /// harness builds a group.
    pub fn create_group_with(
        &mut self,
        group_id: &[u8],
        capabilities: Capabilities,
        context_extensions: Vec<Extension>,
    ) {
        let group = MlsGroup::builder()
            .with_group_id(GroupId::from_slice(group_id))
            .ciphersuite(CIPHERSUITE)
            .with_wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(Self::PAST_EPOCHS)
            .lifetime(self.fixed_lifetime.unwrap_or_else(Self::lifetime))
            .with_capabilities(capabilities)
            .with_leaf_node_extensions(self.leaf_extensions())
            .expect("leaf extensions")
            .with_group_context_extensions(
                Extensions::from_vec(context_extensions).expect("extensions"),
            )
            .build(&self.provider, &self.signer, self.credential.clone())
            .expect("group creation");
        self.group = Some(group);
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

    /// Forgets all group state and key material except the client's identity (signature key
    /// and credential), as a device restored without its MLS state would.
    pub fn lose_state(&mut self) {
        self.provider.forget_storage();
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
            #[cfg(feature = "app-data-update")]
            ProcessedMessageContent::UnresolvedAppDataCommit(unresolved) => {
                let staged = self.stage_app_data_commit(*unresolved);
                let provider = &self.provider;
                let group = self.group.as_mut().expect("client has a group");
                let removed = staged.self_removed();
                group.merge_staged_commit(provider, *staged).expect("merge");
                Received::Commit {
                    epoch: group.epoch().as_u64(),
                    removed,
                }
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
