//! [`TestQs`]: a provider's Queueing Service with in-memory storage, and the requests a
//! [`TestClient`] sends to its queue.

use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::OpenMlsProvider as _;

use super::driver::{block_on, Driver};
use super::{TestClient, START_MS};
use crate::qs::{
    seal_queue_info, InMemoryQsStorage, QsConfig, QsOutcome, QsStatus, QueueKey, QueueingService,
};
use crate::wire::{
    decode_exact, encode, QsClientRequest, QsClientRequestBody, QsClientResponse,
    QsClientResponseBody, QueueCreated, PROTOCOL_VERSION_MIMI_DS10,
};
use crate::{Fanout, UnixTimeMs};

/// A provider's Queueing Service with in-memory storage, sharing the clock convention of
/// [`super::TestDs`]. `C` is its crypto and randomness ([`super::seeded::TestCrypto`] for
/// deterministic runs).
pub struct TestQs<C = RustCrypto> {
    /// The service.
    pub qs: QueueingService<C>,
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
        Self::with_crypto(config, RustCrypto::default())
    }
}

impl<C: OpenMlsCrypto + OpenMlsRand> TestQs<C> {
    /// A QS with this configuration whose queue key, queue IDs and tokens come from `crypto`.
    pub fn with_crypto(config: QsConfig, crypto: C) -> Self {
        let seed = crypto.random_vec(32).expect("randomness");
        Self {
            qs: QueueingService::new(config, QueueKey::derive(&seed).expect("queue key"), crypto),
            storage: InMemoryQsStorage::new(),
            now_ms: START_MS,
        }
    }

    /// Delivers one fanout instruction as a DS's server would, without transport
    /// authentication, through the driver [`Driver::from_env`] picks.
    pub fn deliver(&mut self, fanout: &Fanout) -> QsOutcome {
        deliver_via_driver(
            &self.qs,
            UnixTimeMs(self.now_ms),
            &fanout.to_bytes(),
            None,
            &mut self.storage,
        )
    }

    /// A client request, through the driver [`Driver::from_env`] picks.
    pub fn client_request(&mut self, request: &[u8]) -> QsOutcome {
        client_request_via_driver(
            &self.qs,
            UnixTimeMs(self.now_ms),
            request,
            &mut self.storage,
        )
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

/// [`QueueingService::deliver`] or [`QueueingService::deliver_async`], as the driver
/// [`Driver::from_env`] picks, for tests that call the QS on a storage of their own.
pub fn deliver_via_driver<C: OpenMlsCrypto + OpenMlsRand>(
    qs: &QueueingService<C>,
    now: UnixTimeMs,
    request: &[u8],
    authenticated_sender: Option<&str>,
    storage: &mut InMemoryQsStorage,
) -> QsOutcome {
    match Driver::from_env() {
        Driver::Sync => qs.deliver(now, request, authenticated_sender, storage),
        Driver::Async => block_on(qs.deliver_async(now, request, authenticated_sender, storage)),
    }
    .expect("in-memory storage does not fail")
}

/// [`QueueingService::client_request`] or [`QueueingService::client_request_async`], as the
/// driver [`Driver::from_env`] picks, for tests that call the QS on a storage of their own.
pub fn client_request_via_driver<C: OpenMlsCrypto + OpenMlsRand>(
    qs: &QueueingService<C>,
    now: UnixTimeMs,
    request: &[u8],
    storage: &mut InMemoryQsStorage,
) -> QsOutcome {
    match Driver::from_env() {
        Driver::Sync => qs.client_request(now, request, storage),
        Driver::Async => block_on(qs.client_request_async(now, request, storage)),
    }
    .expect("in-memory storage does not fail")
}

impl TestClient {
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
            self.provider.crypto(),
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
}
