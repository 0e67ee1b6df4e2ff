//! [`TestDs`]: a Delivery Service with in-memory storage and a manual clock.

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use super::driver::{block_on, Driver};
use super::{decode_response, Received, TestClient, CIPHERSUITE, START_MS};
use crate::storage::InMemoryStorage;
use crate::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ExternalCommitInfo,
    PROTOCOL_VERSION_MIMI_DS10,
};
use crate::{
    BasicCredentialValidator, DeliveryService, DsConfig, DsIdentity, HubEvent, Outcome, UnixTimeMs,
};

/// A DS identity with a fresh Ed25519 key and a BasicCredential naming `domain`.
pub fn ds_identity(domain: &str) -> (DsIdentity, ExternalSender) {
    let keys = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("key generation");
    ds_identity_with_keys(domain, keys)
}

/// A DS identity with this signature key and a BasicCredential naming `domain`.
pub fn ds_identity_with_keys(domain: &str, keys: SignatureKeyPair) -> (DsIdentity, ExternalSender) {
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

/// A DS with in-memory storage and a manual clock. `C` is its crypto and randomness
/// ([`super::seeded::TestCrypto`] for deterministic runs).
pub struct TestDs<C = RustCrypto> {
    /// The service.
    pub ds: DeliveryService<C>,
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
        Self::with_crypto(config, identity, external_sender, RustCrypto::default())
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

impl<C: OpenMlsCrypto + OpenMlsRand> TestDs<C> {
    /// A DS with this identity, and `crypto` as its crypto and source of randomness.
    pub fn with_crypto(
        config: DsConfig,
        identity: DsIdentity,
        external_sender: ExternalSender,
        crypto: C,
    ) -> Self {
        let config = group_cache_mode_from_env(config);
        Self {
            // The harness's clients carry BasicCredentials naming MIMI client URIs.
            ds: DeliveryService::new(config, identity, crypto)
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

    /// Writes `records` into the stored group as something other than the hub would (a
    /// migration, an older version, a corrupting disk, a backend's own expiry): one write at
    /// the group's current version, which moves it on.
    ///
    /// # Panics
    /// If the group does not exist (a test's mistake).
    pub fn overwrite(&mut self, group_id: &[u8], records: Vec<crate::storage::RecordWrite>) {
        use crate::storage::{DsStorage as _, VersionGuard, WriteOutcome, WriteSet};
        let version = self.storage.version(group_id).expect("the group exists");
        let write = WriteSet {
            group_id: group_id.to_vec(),
            guard: VersionGuard::Exactly(version),
            records,
            replay_mark: None,
            now_ms: self.now_ms,
            fanout: Vec::new(),
        };
        let outcome = self
            .storage
            .write(&write)
            .expect("in-memory storage cannot fail");
        assert_eq!(outcome, WriteOutcome::Applied);
    }

    /// Processes a request at the current time.
    ///
    /// Through [`DeliveryService::process`], or [`DeliveryService::process_async`] when
    /// `MIMI_DS_TEST_DRIVER=async` ([`super::driver`]).
    pub fn process(&mut self, request: &[u8]) -> Outcome {
        let now = UnixTimeMs(self.now_ms);
        let outcome = match Driver::from_env() {
            Driver::Sync => self.ds.process(now, request, &mut self.storage),
            Driver::Async => block_on(self.ds.process_async(now, request, &mut self.storage)),
        };
        outcome.expect("in-memory storage does not fail")
    }

    /// Hands the DS a [`HubEvent`] about a group at the current time, through the driver
    /// [`TestDs::process`] uses.
    pub fn handle_event(&mut self, group_id: &[u8], event: &HubEvent) -> Outcome {
        let now = UnixTimeMs(self.now_ms);
        let outcome = match Driver::from_env() {
            Driver::Sync => self
                .ds
                .handle_event(now, group_id, event, &mut self.storage),
            Driver::Async => {
                block_on(
                    self.ds
                        .handle_event_async(now, group_id, event, &mut self.storage),
                )
            }
        };
        outcome.expect("in-memory storage does not fail")
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
        TestDs::route(&out, joiners);
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
}

/// The environment variable that runs every harness DS with its group cache `off`, forced to
/// `miss`, or `on` (the configuration's own setting, the default), so that the whole test suite
/// can be run in each mode: the cache must never change an answer (wire-format.md §16.2).
pub const GROUP_CACHE_MODE_VAR: &str = "MIMI_DS_TEST_GROUP_CACHE";

/// Applies [`GROUP_CACHE_MODE_VAR`] to `config`.
fn group_cache_mode_from_env(mut config: DsConfig) -> DsConfig {
    match std::env::var(GROUP_CACHE_MODE_VAR).as_deref() {
        Ok("off") => config.group_cache_bytes = 0,
        Ok("miss") => config.group_cache_force_miss = true,
        Ok("on") | Err(_) => {}
        Ok(other) => panic!("{GROUP_CACHE_MODE_VAR}={other}: expected off, miss or on"),
    }
    config
}
