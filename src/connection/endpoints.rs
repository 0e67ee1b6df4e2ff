//! The client-facing connection endpoints of a provider (wire-format.md §14.3.2):
//! `POST /connection_key`, the unauthenticated fetch of a user's `ConnectionKeyBundle`, and
//! `POST /connection_operation`, the user's own client publishing its key, reading its
//! connection inbox and acknowledging what it read, each request signed by the key that owns
//! the user's name.
//!
//! A user is named by a handle of its client's choosing (its name at the provider). The
//! provider stores it only as `RefHash("MIMIMI ConnectionUser", user)`, so its storage holds
//! no handle. The first publication binds the name to the signing `owner_key` (the embedding
//! server SHOULD have authenticated the user's account before passing that on, as for
//! `create_queue`, §10.3); every later operation on the name must be signed by that key.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::signatures::Signer;
use openmls_traits::types::SignatureScheme;
use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::crypto::{sign_with_label, verify_with_label};
use super::provider::{acknowledge_change, known_user};
use super::store::{AsyncConnectionStore, ConnectionChange, ConnectionKeyRecord, ConnectionStore};
use super::wire::{ConnectionKeyBundle, StoredConnectionRequest};
use super::{ConnectionFailure, ConnectionProvider, ConnectionRefusal};
use crate::directory::token::ref_hash;
use crate::error::QsRejectReason;
use crate::qs::{QsOutcome, QsStats, QsStatus};
use crate::time::UnixTimeMs;
use crate::wire::{decode_exact, encode, DsError, PROTOCOL_VERSION_MIMI_DS10};
use crate::ProcessError;

/// The `SignWithLabel` label of a [`ConnectionClientRequest`].
pub const CONNECTION_CLIENT_REQUEST_LABEL: &str = "MIMIMI ConnectionClientRequest";
/// The `RefHash` label under which a provider stores a user's name.
pub const CONNECTION_USER_LABEL: &[u8] = b"MIMIMI ConnectionUser";
/// The signature scheme of owner keys.
const OWNER_KEY_SCHEME: SignatureScheme = SignatureScheme::ED25519;

/// `ConnectionKeyFetch`: the body of `POST /connection_key`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionKeyFetch {
    /// `DSProtocolVersion`; only `mimi_ds10(1)`.
    pub version: u16,
    /// The user's name at the provider.
    pub user: VLBytes,
}

/// `ConnectionClientRequestType`-selected body of a [`ConnectionClientRequest`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum ConnectionClientRequestBody {
    /// `publish(0)`: publish or replace the user's connection-establishment key.
    #[tls_codec(discriminant = 0)]
    Publish {
        /// The MLS ciphersuite of the key.
        ciphersuite: u16,
        /// The HPKE public key.
        connection_establishment_key: VLBytes,
    },
    /// `read(1)`: up to `max_requests` requests of the inbox from `from_sequence` on.
    #[tls_codec(discriminant = 1)]
    Read {
        /// The first sequence number wanted.
        from_sequence: u64,
        /// At most this many (the provider may return fewer).
        max_requests: u32,
    },
    /// `acknowledge(2)`: drop every request below `up_to_sequence`.
    #[tls_codec(discriminant = 2)]
    Acknowledge {
        /// One past the last request the client processed.
        up_to_sequence: u64,
    },
}

/// `ConnectionClientRequest`: the body of `POST /connection_operation`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionClientRequest {
    /// `DSProtocolVersion`; only `mimi_ds10(1)`.
    pub version: u16,
    /// The operation.
    pub body: ConnectionClientRequestBody,
    /// The user's name at the provider.
    pub user: VLBytes,
    /// The Ed25519 public key that owns the name (bound by the first publication).
    pub owner_key: VLBytes,
    /// When the client made the request, ms since the UNIX epoch.
    pub timestamp_ms: u64,
    /// `SignWithLabel(owner_key, "MIMIMI ConnectionClientRequest", every field above)`.
    pub signature: VLBytes,
}

impl ConnectionClientRequest {
    /// `ConnectionClientRequestTBS`: every field but the signature, in order.
    pub fn tbs(&self) -> Result<Vec<u8>, tls_codec::Error> {
        let mut out = self.version.tls_serialize_detached()?;
        self.body.tls_serialize(&mut out)?;
        self.user.tls_serialize(&mut out)?;
        self.owner_key.tls_serialize(&mut out)?;
        self.timestamp_ms.tls_serialize(&mut out)?;
        Ok(out)
    }

    /// A request for `user` signed by `signer`, whose public key is `owner_key`; `None` if
    /// encoding or signing fails.
    pub fn signed(
        body: ConnectionClientRequestBody,
        user: &[u8],
        owner_key: &[u8],
        timestamp_ms: u64,
        signer: &impl Signer,
    ) -> Option<Self> {
        let mut request = Self {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body,
            user: user.to_vec().into(),
            owner_key: owner_key.to_vec().into(),
            timestamp_ms,
            signature: Vec::new().into(),
        };
        let tbs = request.tbs().ok()?;
        request.signature = sign_with_label(signer, CONNECTION_CLIENT_REQUEST_LABEL, &tbs)?.into();
        Some(request)
    }
}

/// `ConnectionServiceResponseType`-selected body of a [`ConnectionServiceResponse`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum ConnectionServiceResponseBody {
    /// `ok(0)`: published, or acknowledged.
    #[tls_codec(discriminant = 0)]
    Ok,
    /// `error(1)`: refused; nothing changed.
    #[tls_codec(discriminant = 1)]
    Error(DsError),
    /// `key_bundle(2)`: the answer to a fetch.
    #[tls_codec(discriminant = 2)]
    KeyBundle(ConnectionKeyBundle),
    /// `requests(3)`: the answer to a read, in order.
    #[tls_codec(discriminant = 3)]
    Requests(Vec<StoredConnectionRequest>),
}

/// `ConnectionServiceResponse`: the answer of both client-facing endpoints.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionServiceResponse {
    /// `DSProtocolVersion`.
    pub version: u16,
    /// The answer.
    pub body: ConnectionServiceResponseBody,
}

/// A client request that is well formed, fresh and signed by its `owner_key`.
pub(super) struct VerifiedClientRequest {
    request: ConnectionClientRequest,
    /// The stored name: `RefHash("MIMIMI ConnectionUser", user)`.
    name: Vec<u8>,
}

/// What an authorized client request does with storage.
enum ClientStep {
    /// Apply this change, answer `ok`.
    Write(ConnectionChange),
    /// Read the inbox.
    Read {
        inbox_id: Vec<u8>,
        from_sequence: u64,
        max: usize,
    },
    /// Acknowledge in this user's inbox (read first).
    Acknowledge(ConnectionKeyRecord, u64),
}

type Failure<E> = ConnectionFailure<E>;

impl<C: OpenMlsCrypto + OpenMlsRand> ConnectionProvider<C> {
    /// Handles `POST /connection_key` (wire-format.md §14.3.2): the user's
    /// `ConnectionKeyBundle`, without authentication; `unknown_queue` if the user published
    /// no key. Writes nothing.
    pub fn fetch_request<S: ConnectionStore>(
        &self,
        bytes: &[u8],
        store: &S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let result = (|| {
            let name = self.fetch_name(bytes)?;
            let record = store.key_record(&name).map_err(Failure::Storage)?;
            self.bundle(&known_user(record)?)
        })();
        answer(
            "connection_key",
            bytes.len(),
            result.map(ConnectionServiceResponseBody::KeyBundle),
        )
    }

    /// [`ConnectionProvider::fetch_request`] over async storage.
    pub async fn fetch_request_async<S: AsyncConnectionStore>(
        &self,
        bytes: &[u8],
        store: &S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let result = async {
            let name = self.fetch_name(bytes)?;
            let record = store.key_record(&name).await.map_err(Failure::Storage)?;
            self.bundle(&known_user(record)?)
        }
        .await;
        answer(
            "connection_key",
            bytes.len(),
            result.map(ConnectionServiceResponseBody::KeyBundle),
        )
    }

    /// Handles `POST /connection_operation` (wire-format.md §14.3.2): a signed publish, read
    /// or acknowledge of the user's own client. A refusal changes nothing.
    pub fn client_request<S: ConnectionStore>(
        &self,
        now: UnixTimeMs,
        bytes: &[u8],
        store: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let storage = Failure::Storage;
        let mut operation = "connection_operation";
        let result = (|| {
            let verified = self.verify_client_request(now, bytes)?;
            operation = client_operation(&verified.request.body);
            let record = store.key_record(&verified.name).map_err(storage)?;
            Ok(match self.authorize(verified, record)? {
                ClientStep::Write(change) => {
                    if !store.apply(now.0, change).map_err(storage)? {
                        // Rule R-CONN-9: a newer publication got in between.
                        return Err(ConnectionRefusal::StalePublication.into());
                    }
                    ConnectionServiceResponseBody::Ok
                }
                ClientStep::Read {
                    inbox_id,
                    from_sequence,
                    max,
                } => ConnectionServiceResponseBody::Requests(
                    store
                        .requests(&inbox_id, from_sequence, max)
                        .map_err(storage)?,
                ),
                ClientStep::Acknowledge(record, up_to) => {
                    let inbox = store.inbox(&record.inbox_id).map_err(storage)?;
                    let change = acknowledge_change(record, inbox, up_to)?;
                    store.apply(now.0, change).map_err(storage)?;
                    ConnectionServiceResponseBody::Ok
                }
            })
        })();
        answer(operation, bytes.len(), result)
    }

    /// [`ConnectionProvider::client_request`] over async storage.
    pub async fn client_request_async<S: AsyncConnectionStore>(
        &self,
        now: UnixTimeMs,
        bytes: &[u8],
        store: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let storage = Failure::Storage;
        let mut operation = "connection_operation";
        let result = async {
            let verified = self.verify_client_request(now, bytes)?;
            operation = client_operation(&verified.request.body);
            let record = store.key_record(&verified.name).await.map_err(storage)?;
            Ok(match self.authorize(verified, record)? {
                ClientStep::Write(change) => {
                    if !store.apply(now.0, change).await.map_err(storage)? {
                        // Rule R-CONN-9: a newer publication got in between.
                        return Err(ConnectionRefusal::StalePublication.into());
                    }
                    ConnectionServiceResponseBody::Ok
                }
                ClientStep::Read {
                    inbox_id,
                    from_sequence,
                    max,
                } => ConnectionServiceResponseBody::Requests(
                    store
                        .requests(&inbox_id, from_sequence, max)
                        .await
                        .map_err(storage)?,
                ),
                ClientStep::Acknowledge(record, up_to) => {
                    let inbox = store.inbox(&record.inbox_id).await.map_err(storage)?;
                    let change = acknowledge_change(record, inbox, up_to)?;
                    store.apply(now.0, change).await.map_err(storage)?;
                    ConnectionServiceResponseBody::Ok
                }
            })
        }
        .await;
        answer(operation, bytes.len(), result)
    }

    /// The stored name a provider keeps for `user`.
    pub fn user_name<E: std::error::Error + 'static>(
        &self,
        user: &[u8],
    ) -> Result<Vec<u8>, ConnectionFailure<E>> {
        ref_hash(&self.crypto, CONNECTION_USER_LABEL, user)
            .ok_or_else(|| ConnectionFailure::Internal("hashing the user name".into()))
    }

    /// Size, version and decoding of a fetch; the name it asks for.
    fn fetch_name<E: std::error::Error + 'static>(
        &self,
        bytes: &[u8],
    ) -> Result<Vec<u8>, Failure<E>> {
        self.check_size_and_version(bytes)?;
        let fetch: ConnectionKeyFetch =
            decode_exact(bytes).map_err(|e| Failure::Refused(QsRejectReason::Malformed(e)))?;
        self.user_name(fetch.user.as_slice())
    }

    /// The checks of a client request that need no storage: size, version, decoding,
    /// freshness and the signature by its own `owner_key` (rule R-CONN-8).
    fn verify_client_request<E: std::error::Error + 'static>(
        &self,
        now: UnixTimeMs,
        bytes: &[u8],
    ) -> Result<VerifiedClientRequest, Failure<E>> {
        self.check_size_and_version(bytes)?;
        let request: ConnectionClientRequest =
            decode_exact(bytes).map_err(|e| Failure::Refused(QsRejectReason::Malformed(e)))?;
        if request.timestamp_ms.abs_diff(now.0) > self.config().auth_window_ms {
            return Err(Failure::Refused(QsRejectReason::StaleTimestamp {
                timestamp_ms: request.timestamp_ms,
                now_ms: now.0,
            }));
        }
        let tbs = request
            .tbs()
            .map_err(|e| Failure::Internal(e.to_string()))?;
        if !verify_with_label(
            &self.crypto,
            OWNER_KEY_SCHEME,
            request.owner_key.as_slice(),
            CONNECTION_CLIENT_REQUEST_LABEL,
            &tbs,
            request.signature.as_slice(),
        ) {
            // Rule R-CONN-8.
            return Err(ConnectionRefusal::NotOwner.into());
        }
        let name = self.user_name(request.user.as_slice())?;
        Ok(VerifiedClientRequest { request, name })
    }

    /// The owner check against the stored `record`, then what the operation does.
    fn authorize<E: std::error::Error + 'static>(
        &self,
        verified: VerifiedClientRequest,
        record: Option<ConnectionKeyRecord>,
    ) -> Result<ClientStep, Failure<E>> {
        let VerifiedClientRequest { request, name } = verified;
        let owner_key = request.owner_key.as_slice();
        if let Some(record) = &record {
            // Rule R-CONN-8. An empty owner key: the embedding server publishes for this user itself.
            // The key is public: no need to compare in constant time.
            if record.owner_key.is_empty() || record.owner_key != owner_key {
                return Err(ConnectionRefusal::NotOwner.into());
            }
        }
        // Rule R-CONN-9: the freshness window alone would let an earlier signed publication be
        // replayed within it and bring back the key it replaced; publications must be newer
        // than the stored one (the store checks it again at the write, against races).
        if let (ConnectionClientRequestBody::Publish { .. }, Some(record)) =
            (&request.body, &record)
        {
            if request.timestamp_ms <= record.published_at_ms {
                return Err(ConnectionRefusal::StalePublication.into());
            }
        }
        match request.body {
            ConnectionClientRequestBody::Publish {
                ciphersuite,
                connection_establishment_key,
            } => {
                let key = connection_establishment_key.as_slice();
                self.check_key(ciphersuite, key)?;
                let change = self.publish_change(
                    &name,
                    record,
                    ciphersuite,
                    key,
                    owner_key.to_vec(),
                    request.timestamp_ms,
                )?;
                Ok(ClientStep::Write(change))
            }
            ConnectionClientRequestBody::Read {
                from_sequence,
                max_requests,
            } => Ok(ClientStep::Read {
                inbox_id: known_user(record)?.inbox_id,
                from_sequence,
                max: usize::try_from(max_requests)
                    .unwrap_or(usize::MAX)
                    .min(self.config().max_page),
            }),
            ConnectionClientRequestBody::Acknowledge { up_to_sequence } => {
                Ok(ClientStep::Acknowledge(known_user(record)?, up_to_sequence))
            }
        }
    }
}

/// The operation's name for [`QsStats::operation`].
fn client_operation(body: &ConnectionClientRequestBody) -> &'static str {
    match body {
        ConnectionClientRequestBody::Publish { .. } => "connection_publish",
        ConnectionClientRequestBody::Read { .. } => "connection_read",
        ConnectionClientRequestBody::Acknowledge { .. } => "connection_acknowledge",
    }
}

/// The `ConnectionServiceResponse` for `result`, as a [`QsOutcome`] for the router.
fn answer<E: std::error::Error + 'static>(
    operation: &'static str,
    request_bytes: usize,
    result: Result<ConnectionServiceResponseBody, ConnectionFailure<E>>,
) -> Result<QsOutcome, ProcessError<E>> {
    let (body, status, refusal) = match result {
        Ok(body) => (body, QsStatus::Accepted, None),
        Err(ConnectionFailure::Refused(reason)) => (
            ConnectionServiceResponseBody::Error(reason.to_wire()),
            QsStatus::Rejected(reason.code()),
            Some(reason),
        ),
        Err(ConnectionFailure::Storage(e)) => return Err(ProcessError::Storage(e)),
        Err(ConnectionFailure::Internal(e)) => return Err(ProcessError::Internal(e)),
    };
    let response = encode(&ConnectionServiceResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
    })
    .map_err(|e| ProcessError::Internal(e.to_string()))?;
    Ok(QsOutcome {
        stats: QsStats {
            operation,
            request_bytes,
            response_bytes: response.len(),
            ..QsStats::default()
        },
        response,
        status,
        enqueued: Vec::new(),
        invalid_recipients: Vec::new(),
        full_recipients: Vec::new(),
        refusal,
    })
}
