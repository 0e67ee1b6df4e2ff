//! The responder's provider (wire-format.md §14.3.2, §14.3.3): it keeps its users'
//! connection-establishment keys, serves them without authentication, and takes sealed
//! connection requests into the users' connection inboxes.

use openmls::prelude::Ciphersuite;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::types::HpkePrivateKey;
use openmls_traits::types::{HashType, HpkeAeadType, HpkeConfig, HpkeKdfType, HpkeKemType};

use super::crypto::{open_with_label, seal_with_label};
use super::store::{ConnectionChange, ConnectionKeyRecord, ConnectionStore, InboxRecord};
use super::wire::{
    ConnectionInboxAddress, ConnectionKeyBundle, ConnectionRequestDelivery,
    StoredConnectionRequest, CONNECTION_INBOX_LABEL,
};
use super::ConnectionRefusal;
use crate::error::QsRejectReason;
use crate::qs::{QsOutcome, QsStats, QsStatus};
use crate::time::UnixTimeMs;
use crate::wire::{
    decode_exact, encode, DsResponse, DsResponseBody, QueueingServiceResponse,
    PROTOCOL_VERSION_MIMI_DS10,
};
use crate::ProcessError;

/// The HPKE suite of sealed inbox addresses: the provider seals them to itself, so the suite
/// is its own choice; the one of sealed queue information (wire-format.md §10.1).
const INBOX_HPKE: HpkeConfig = HpkeConfig(
    HpkeKemType::DhKem25519,
    HpkeKdfType::HkdfSha256,
    HpkeAeadType::AesGcm128,
);

/// The shortest AEAD ciphertext: the tag of every AEAD of RFC 9420 §17.1 is 16 bytes.
const MIN_SEALED_LEN: usize = 16;

/// Connection-provider settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// The provider's domain: deliveries must name it as `recipient_domain`, and inbox
    /// addresses are sealed with it as context.
    pub domain: String,
    /// Deliveries larger than this are refused before decoding. Default 64 KiB: a request is
    /// a credential, a few keys and a room ID.
    pub max_request_bytes: usize,
    /// The most unacknowledged requests an inbox holds. Default 100.
    pub max_inbox_requests: u64,
    /// How long a delivered request is remembered to refuse a replay. Default 30 days.
    pub replay_window_ms: u64,
    /// The most requests one inbox read returns. Default 100.
    pub max_page: usize,
    /// How often a delivery is re-run when storage reports a concurrent write. Default 3.
    pub max_conflict_retries: u32,
    /// How far a `/connection_operation` request's timestamp may be from `now`. Default 5
    /// minutes, as the QS's (wire-format.md §10.3).
    pub auth_window_ms: u64,
}

impl ConnectionConfig {
    /// The defaults for a provider at `domain`.
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            max_request_bytes: 64 * 1024,
            max_inbox_requests: 100,
            replay_window_ms: 30 * 24 * 60 * 60 * 1000,
            max_page: 100,
            max_conflict_retries: 3,
            auth_window_ms: 5 * 60 * 1000,
        }
    }
}

/// Why a connection-provider call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionFailure<E: std::error::Error + 'static> {
    /// The caller's fault; nothing changed.
    #[error("refused: {0}")]
    Refused(QsRejectReason),
    /// The store failed; nothing changed.
    #[error("storage: {0}")]
    Storage(#[source] E),
    /// A bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl<E: std::error::Error + 'static> From<ConnectionRefusal> for ConnectionFailure<E> {
    fn from(refusal: ConnectionRefusal) -> Self {
        Self::Refused(refusal.into())
    }
}

/// The provider side of connection establishment. It holds configuration, the provider's
/// inbox key and a crypto provider (also its randomness, for inbox IDs and sealing); keys and
/// inboxes live in the [`ConnectionStore`] passed to each call.
pub struct ConnectionProvider<C = RustCrypto> {
    config: ConnectionConfig,
    inbox_public: Vec<u8>,
    inbox_private: HpkePrivateKey,
    pub(super) crypto: C,
}

impl<C> std::fmt::Debug for ConnectionProvider<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: OpenMlsCrypto + OpenMlsRand> ConnectionProvider<C> {
    /// A provider with its settings, the seed of its inbox key (at least 32 secret bytes the
    /// server keeps; RFC 9180 `DeriveKeyPair`) and a crypto provider. `None` if the seed is
    /// too short.
    pub fn new(config: ConnectionConfig, inbox_key_seed: &[u8], crypto: C) -> Option<Self> {
        if inbox_key_seed.len() < 32 {
            return None;
        }
        let pair = crypto
            .derive_hpke_keypair(INBOX_HPKE, inbox_key_seed)
            .ok()?;
        Some(Self {
            config,
            inbox_public: pair.public,
            inbox_private: pair.private,
            crypto,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Publishes (or replaces) the connection-establishment key of `user`, the provider's
    /// local name of one of its users. The embedding server MUST have authenticated the user
    /// (its account login): this is the user's own client publishing. The user keeps one
    /// inbox across replacements.
    pub fn publish<S: ConnectionStore>(
        &self,
        now: UnixTimeMs,
        store: &mut S,
        user: &[u8],
        ciphersuite: u16,
        connection_establishment_key: &[u8],
    ) -> Result<(), ConnectionFailure<S::Error>> {
        self.check_key(ciphersuite, connection_establishment_key)?;
        let existing = store.key_record(user).map_err(ConnectionFailure::Storage)?;
        // The embedding server's own publication is newer than any stored one, even one
        // signed with a clock ahead of the server's (rule R-CONN-9 orders publications).
        let published_at_ms = server_publication_time(now, existing.as_ref());
        let change = self.publish_change(
            user,
            existing,
            ciphersuite,
            connection_establishment_key,
            Vec::new(),
            published_at_ms,
        )?;
        if !store
            .apply(now.0, change)
            .map_err(ConnectionFailure::Storage)?
        {
            // Rule R-CONN-9: a newer publication got in between.
            return Err(ConnectionRefusal::StalePublication.into());
        }
        Ok(())
    }

    /// The unauthenticated fetch (MM-01 flow A step 2): `user`'s key and its inbox address,
    /// sealed afresh, so that two fetches' answers share nothing but the public key. `None` if
    /// the user published no key. Nothing is written: the provider does not learn more than
    /// that someone asked.
    pub fn fetch<S: ConnectionStore>(
        &self,
        store: &S,
        user: &[u8],
    ) -> Result<Option<ConnectionKeyBundle>, ConnectionFailure<S::Error>> {
        let record = store.key_record(user).map_err(ConnectionFailure::Storage)?;
        record.map(|record| self.bundle(&record)).transpose()
    }

    /// Handles `POST /connection_request` (wire-format.md §14.3.3): a
    /// `ConnectionRequestDelivery` from the provider the transport authenticated
    /// (`authenticated_sender`, mutual TLS; `None` believes the claimed sender). Answers a
    /// `QueueingServiceResponse` `ok`, or a `DSResponse` error; a refusal changes nothing.
    pub fn deliver<S: ConnectionStore>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        authenticated_sender: Option<&str>,
        store: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let result = self.try_deliver(now, request, authenticated_sender, store);
        delivery_outcome(result, request.len())
    }

    fn try_deliver<S: ConnectionStore>(
        &self,
        now: UnixTimeMs,
        bytes: &[u8],
        authenticated_sender: Option<&str>,
        store: &mut S,
    ) -> Result<Vec<u8>, ConnectionFailure<S::Error>> {
        let storage = ConnectionFailure::Storage;
        let opened = self.open_delivery(bytes, authenticated_sender)?;
        let inbox = store.inbox(&opened.inbox_id).map_err(storage)?;
        let user = inbox.ok_or(ConnectionRefusal::UnknownInbox)?.user;
        let key = store.key_record(&user).map_err(storage)?;
        let mark = self.replay_mark(&opened, key)?;
        let mut attempts = 0;
        loop {
            let marked = store
                .has_mark(&opened.inbox_id, &mark, now.0)
                .map_err(storage)?;
            let inbox = store.inbox(&opened.inbox_id).map_err(storage)?;
            let change = self.plan_enqueue(now, &opened, &mark, marked, inbox)?;
            if store.apply(now.0, change).map_err(storage)? {
                return Ok(opened.inbox_id);
            }
            attempts += 1;
            self.check_attempts(attempts)?;
        }
    }

    /// Up to `max` (at most `max_page`) requests of `user`'s inbox from `from_sequence` on.
    /// The embedding server MUST have authenticated the user, as for [`Self::publish`].
    pub fn inbox<S: ConnectionStore>(
        &self,
        store: &S,
        user: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, ConnectionFailure<S::Error>> {
        let record = store.key_record(user).map_err(ConnectionFailure::Storage)?;
        let inbox_id = known_user(record)?.inbox_id;
        store
            .requests(&inbox_id, from_sequence, max.min(self.config.max_page))
            .map_err(ConnectionFailure::Storage)
    }

    /// Drops every request of `user`'s inbox below `up_to_sequence` (authenticated as for
    /// [`Self::publish`]).
    pub fn acknowledge<S: ConnectionStore>(
        &self,
        now: UnixTimeMs,
        store: &mut S,
        user: &[u8],
        up_to_sequence: u64,
    ) -> Result<(), ConnectionFailure<S::Error>> {
        let storage = ConnectionFailure::Storage;
        let record = known_user(store.key_record(user).map_err(storage)?)?;
        let inbox = store.inbox(&record.inbox_id).map_err(storage)?;
        let change = acknowledge_change(record, inbox, up_to_sequence)?;
        store.apply(now.0, change).map_err(storage)?;
        Ok(())
    }

    // The steps shared by the sync methods above and the async ones (provider_async.rs):
    // each takes what was read and decides, so both run one set of rules.

    /// Rule R-CONN-5: `key` is a public key of `ciphersuite`'s HPKE KEM.
    pub(super) fn check_key(&self, ciphersuite: u16, key: &[u8]) -> Result<(), ConnectionRefusal> {
        let suite = Ciphersuite::try_from(ciphersuite)
            .map_err(|_| ConnectionRefusal::InvalidConnectionKey)?;
        self.crypto
            .hpke_seal(suite.hpke_config(), key, &[], &[], &[])
            .map_err(|_| ConnectionRefusal::InvalidConnectionKey)?;
        Ok(())
    }

    /// The change that publishes `key` for `user`, keeping the inbox of `existing`.
    pub(super) fn publish_change<E: std::error::Error + 'static>(
        &self,
        user: &[u8],
        existing: Option<ConnectionKeyRecord>,
        ciphersuite: u16,
        key: &[u8],
        owner_key: Vec<u8>,
        published_at_ms: u64,
    ) -> Result<ConnectionChange, ConnectionFailure<E>> {
        let inbox_id = match existing {
            Some(existing) => existing.inbox_id,
            None => self
                .crypto
                .random_vec(16)
                .map_err(|e| ConnectionFailure::Internal(format!("{e:?}")))?,
        };
        Ok(ConnectionChange::Publish {
            user: user.to_vec(),
            record: ConnectionKeyRecord {
                ciphersuite,
                connection_establishment_key: key.to_vec(),
                inbox_id,
                owner_key,
                published_at_ms,
            },
        })
    }

    /// The bundle served for `record`, its inbox address sealed afresh.
    pub(super) fn bundle<E: std::error::Error + 'static>(
        &self,
        record: &ConnectionKeyRecord,
    ) -> Result<ConnectionKeyBundle, ConnectionFailure<E>> {
        let address = encode(&ConnectionInboxAddress {
            inbox_id: record.inbox_id.clone().into(),
        })
        .map_err(|e| ConnectionFailure::Internal(e.to_string()))?;
        let inbox = seal_with_label(
            &self.crypto,
            INBOX_HPKE,
            &self.inbox_public,
            CONNECTION_INBOX_LABEL,
            self.config.domain.as_bytes(),
            &address,
        )
        .ok_or_else(|| ConnectionFailure::Internal("sealing the inbox address".into()))?;
        Ok(ConnectionKeyBundle {
            ciphersuite: record.ciphersuite,
            connection_establishment_key: record.connection_establishment_key.clone().into(),
            provider_domain: self.config.domain.as_bytes().to_vec().into(),
            inbox,
        })
    }

    /// Steps 1-6 of wire-format.md §14.3.3 that need no storage: size, version, decoding,
    /// recipient, sender, and opening the inbox address.
    pub(super) fn open_delivery<E: std::error::Error + 'static>(
        &self,
        bytes: &[u8],
        authenticated_sender: Option<&str>,
    ) -> Result<OpenedDelivery, ConnectionFailure<E>> {
        let refuse = |reason: QsRejectReason| ConnectionFailure::Refused(reason);
        self.check_size_and_version(bytes)?;
        let delivery: ConnectionRequestDelivery =
            decode_exact(bytes).map_err(|e| refuse(QsRejectReason::Malformed(e)))?;
        if delivery.recipient_domain.as_slice() != self.config.domain.as_bytes() {
            // Rule R-QS-4.
            return Err(refuse(QsRejectReason::WrongRecipient));
        }
        if let Some(peer) = authenticated_sender {
            if delivery.sender_domain.as_slice() != peer.as_bytes() {
                // Rule R-QS-5.
                return Err(refuse(QsRejectReason::SenderMismatch));
            }
        }
        // Rule R-CONN-1: only this provider opens the address, and only an address it sealed
        // names an inbox.
        let address = open_with_label(
            &self.crypto,
            INBOX_HPKE,
            self.inbox_private.as_ref(),
            CONNECTION_INBOX_LABEL,
            self.config.domain.as_bytes(),
            &delivery.inbox,
        )
        .and_then(|plaintext| decode_exact::<ConnectionInboxAddress>(&plaintext).ok())
        .ok_or(ConnectionRefusal::UnknownInbox)?;
        Ok(OpenedDelivery {
            inbox_id: address.inbox_id.as_slice().to_vec(),
            delivery,
        })
    }

    /// Step 6's rest and step 7 (R-CONN-1, R-CONN-2) against the inbox owner's `key`, and the
    /// replay mark: the SHA-256 of the encoded sealed request.
    pub(super) fn replay_mark<E: std::error::Error + 'static>(
        &self,
        opened: &OpenedDelivery,
        key: Option<ConnectionKeyRecord>,
    ) -> Result<Vec<u8>, ConnectionFailure<E>> {
        let key = key.ok_or(ConnectionRefusal::UnknownInbox)?;
        // Rule R-CONN-2.
        let sealed = &opened.delivery.sealed_request;
        if sealed.kem_output.as_slice().len() != key.connection_establishment_key.len()
            || sealed.ciphertext.as_slice().len() < MIN_SEALED_LEN
        {
            return Err(ConnectionRefusal::MalformedSealedRequest.into());
        }
        self.crypto
            .hash(
                HashType::Sha2_256,
                &encode(sealed).map_err(|e| ConnectionFailure::Internal(e.to_string()))?,
            )
            .map_err(|e| ConnectionFailure::Internal(format!("{e:?}")))
    }

    /// Steps 8 and 9 on what one attempt read (`marked`: the mark is live in the inbox), and
    /// the one guarded write that stores the request.
    pub(super) fn plan_enqueue<E: std::error::Error + 'static>(
        &self,
        now: UnixTimeMs,
        opened: &OpenedDelivery,
        mark: &[u8],
        marked: bool,
        inbox: Option<InboxRecord>,
    ) -> Result<ConnectionChange, ConnectionFailure<E>> {
        // Rule R-CONN-3: a replay, by the initiator's provider or by anyone who saw the
        // delivery, is refused; the first copy is in the inbox.
        if marked {
            return Err(ConnectionRefusal::Replayed.into());
        }
        let inbox = inbox.ok_or(ConnectionRefusal::UnknownInbox)?;
        // Rule R-CONN-4.
        if inbox.len >= self.config.max_inbox_requests {
            return Err(ConnectionRefusal::InboxFull.into());
        }
        Ok(ConnectionChange::Enqueue {
            inbox_id: opened.inbox_id.clone(),
            request: StoredConnectionRequest {
                sequence_number: inbox.next_sequence,
                received_ms: now.0,
                sender_domain: opened.delivery.sender_domain.clone(),
                sealed_request: opened.delivery.sealed_request.clone(),
            },
            mark: mark.to_vec(),
            mark_expires_at_ms: now.0.saturating_add(self.config.replay_window_ms),
        })
    }

    /// Steps 1 and 2 of every connection endpoint: at most `max_request_bytes`, and a first
    /// two bytes that are version `mimi_ds10`.
    pub(super) fn check_size_and_version<E: std::error::Error + 'static>(
        &self,
        bytes: &[u8],
    ) -> Result<(), ConnectionFailure<E>> {
        let limit = self.config.max_request_bytes;
        if bytes.len() > limit {
            return Err(ConnectionFailure::Refused(QsRejectReason::TooLarge {
                size: bytes.len(),
                limit,
            }));
        }
        if let [hi, lo, ..] = bytes {
            let version = u16::from_be_bytes([*hi, *lo]);
            if version != PROTOCOL_VERSION_MIMI_DS10 {
                return Err(ConnectionFailure::Refused(
                    QsRejectReason::UnsupportedVersion(version),
                ));
            }
        }
        Ok(())
    }

    /// After a write that conflicted: `conflict` once `max_conflict_retries` are spent.
    pub(super) fn check_attempts<E: std::error::Error + 'static>(
        &self,
        attempts: u32,
    ) -> Result<(), ConnectionFailure<E>> {
        if attempts > self.config.max_conflict_retries {
            return Err(ConnectionFailure::Refused(QsRejectReason::Conflict));
        }
        Ok(())
    }
}

/// A delivery that passed the checks needing no storage, and the inbox its address names.
pub(super) struct OpenedDelivery {
    pub(super) inbox_id: Vec<u8>,
    pub(super) delivery: ConnectionRequestDelivery,
}

/// Rule R-CONN-6: the user published a key, so it has an inbox.
pub(super) fn known_user(
    record: Option<ConnectionKeyRecord>,
) -> Result<ConnectionKeyRecord, ConnectionRefusal> {
    record.ok_or(ConnectionRefusal::UnknownUser)
}

/// The change that acknowledges `up_to_sequence` in `record`'s `inbox`.
pub(super) fn acknowledge_change(
    record: ConnectionKeyRecord,
    inbox: Option<InboxRecord>,
    up_to_sequence: u64,
) -> Result<ConnectionChange, ConnectionRefusal> {
    let inbox = inbox.ok_or(ConnectionRefusal::UnknownUser)?;
    if up_to_sequence > inbox.next_sequence {
        // Rule R-CONN-7.
        return Err(ConnectionRefusal::AcknowledgeBeyondEnd);
    }
    Ok(ConnectionChange::Acknowledge {
        inbox_id: record.inbox_id,
        up_to_sequence,
    })
}

/// The outcome of a delivery of `request_len` bytes: `ok`, or the refusal as a `DSResponse`.
pub(super) fn delivery_outcome<E: std::error::Error + 'static>(
    result: Result<Vec<u8>, ConnectionFailure<E>>,
    request_len: usize,
) -> Result<QsOutcome, ProcessError<E>> {
    let mut outcome = match result {
        Ok(inbox_id) => {
            let response = encode(&QueueingServiceResponse::Ok)
                .map_err(|e| ProcessError::Internal(e.to_string()))?;
            QsOutcome {
                response,
                status: QsStatus::Accepted,
                enqueued: vec![inbox_id],
                invalid_recipients: Vec::new(),
                full_recipients: Vec::new(),
                refusal: None,
                stats: QsStats::default(),
            }
        }
        Err(ConnectionFailure::Refused(reason)) => rejection(&reason),
        Err(ConnectionFailure::Storage(e)) => return Err(ProcessError::Storage(e)),
        Err(ConnectionFailure::Internal(e)) => return Err(ProcessError::Internal(e)),
    };
    outcome.stats = QsStats {
        operation: "connection_request",
        request_bytes: request_len,
        response_bytes: outcome.response.len(),
        recipients: 1,
        enqueued: outcome.enqueued.len(),
        ..QsStats::default()
    };
    Ok(outcome)
}

/// A refused delivery: a `DSResponse` with the error, as for QS deliveries (§10.2). Every
/// reason's `DSError` encodes (`every_qs_reject_reason_encodes`); the empty fallback only
/// keeps a bug from panicking.
fn rejection(reason: &QsRejectReason) -> QsOutcome {
    let response = encode(&DsResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsResponseBody::Error(reason.to_wire()),
    })
    .unwrap_or_default();
    QsOutcome {
        response,
        status: QsStatus::Rejected(reason.code()),
        enqueued: Vec::new(),
        invalid_recipients: Vec::new(),
        full_recipients: Vec::new(),
        refusal: Some(reason.clone()),
        stats: QsStats::default(),
    }
}

/// The time the embedding server's own publication (after its login) is stored with: now, or
/// just after the stored publication if that one is dated later (rule R-CONN-9).
pub(super) fn server_publication_time(
    now: UnixTimeMs,
    existing: Option<&ConnectionKeyRecord>,
) -> u64 {
    existing.map_or(now.0, |record| {
        now.0.max(record.published_at_ms.saturating_add(1))
    })
}
