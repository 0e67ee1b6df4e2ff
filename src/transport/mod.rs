//! The transport mapping (wire-format.md §11; draft-kohbrok-mimi-transport, docs/decisions.md
//! D19): a transport-agnostic [`Router`] from `(method, path, headers, body)` to the
//! DS or the QS and back to `(status, content type, body)`.
//!
//! The router performs no I/O either. [`Router::handle`] drives the DS and QS over sync storage,
//! [`Router::handle_async`] over async storage (e.g. PostgreSQL); both make the same checks and
//! the same mapping, in one code path. `POST /connection_request` goes to
//! [`Router::handle_connection_request`] with a [`ConnectionProvider`] (MIMIMI connection
//! requests, wire-format.md §14.3.3), after the same checks. An HTTPS server (see `mimi-ds-server` in `server/`) parses HTTP,
//! terminates TLS 1.3, tells the router which provider the peer's client certificate
//! authenticated, and sends back what the router answers. Fanout the DS produced comes back
//! in [`Routed::fanout`] for the server to deliver (to its own QS, or by `POST
//! /deliver_message` to another provider).
//!
//! Checks, in order, each with its status and a `DSResponse` error body:
//!
//! | Check | Status |
//! |---|---|
//! | the path is an endpoint | 404 |
//! | the method is served there | 405, with `Allow` |
//! | exactly one `Host`, naming this provider or its DS (any port ignored; MP-06 §4.1; RFC 9112 §3.2) | 400 if absent or repeated, 421 if another |
//! | the body fits [`TransportConfig::max_body_bytes`] | 413 |
//! | `Content-Type` is `application/octet-stream` | 415 |
//! | the DS request type belongs at this endpoint (12 and 13 only at the KeyPackage endpoints) | 400 |
//! | an unauthenticated `group_info` passes the anonymous-access gate, if one is set ([`Router::with_anonymous_group_info_gate`]) | 403 |
//! | a provider-to-provider delivery comes from an authenticated provider, if required | 403 |
//! | the DS or QS accepts it ([`http_status`] maps its code) | 200 or the mapped status |

mod http;

pub use http::{http_status, Endpoint, HttpRequest, HttpResponse, OCTET_STREAM, TEXT_PLAIN};

use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use crate::connection::{AsyncConnectionStore, ConnectionProvider, ConnectionStore};
use crate::directory::{
    AsyncDirectoryStorage, DirectoryOutcome, DirectoryStorage, KeyPackageDirectory,
};
use crate::qs::{AsyncQsStorage, QsOutcome, QsStats, QsStatus, QsStorage, QueueingService};
use crate::storage::{AsyncDsStorage, DsStorage};
use crate::wire::{decode_exact, DsAuthData, DsRequest, DsRequestBody, DsRequestType, ErrorCode};
use crate::{DeliveryService, Fanout, Outcome, OutcomeStats, ProcessError, Status, UnixTimeMs};

/// Router settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportConfig {
    /// This provider's domain (the `Host` it answers to, and its QS's domain).
    pub provider_domain: String,
    /// The domain of the DS it runs, if any; `/.well-known/mimi/ds-domain` returns it, and
    /// `Host` may name it too.
    pub ds_domain: Option<String>,
    /// Bodies larger than this get 413 before anything decodes them. Default 4 MiB, the DS's
    /// and QS's own request limit.
    pub max_body_bytes: usize,
    /// Whether `/deliver_message` and `/connection_request` require a transport-authenticated
    /// peer (mutual TLS, TR-01). Default `true`; the QS then also checks that the peer is the
    /// delivery's `sender_domain`.
    pub require_authenticated_providers: bool,
}

impl TransportConfig {
    /// The defaults for `provider_domain`, with or without a DS.
    pub fn new(provider_domain: impl Into<String>, ds_domain: Option<String>) -> Self {
        Self {
            provider_domain: provider_domain.into(),
            ds_domain,
            max_body_bytes: 4 * 1024 * 1024,
            require_authenticated_providers: true,
        }
    }
}

/// What a request led to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Routed {
    /// The answer.
    pub response: HttpResponse,
    /// The endpoint, if the path named one.
    pub endpoint: Option<Endpoint>,
    /// Fanout the DS asks the server to deliver (only from DS endpoints).
    pub fanout: Vec<Fanout>,
    /// Queues that received a message (only from QS deliveries), to wake their clients.
    pub enqueued: Vec<Vec<u8>>,
    /// What the DS or QS reported of the call, for metrics; `None` when the router answered
    /// itself (no such endpoint, a failed HTTP check).
    pub call: Option<CallStats>,
}

/// How a DS or QS call behind a routed request ended and what it cost ([`Routed::call`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallStats {
    /// A DS request.
    Ds(Status, OutcomeStats),
    /// A QS request (a client's, or a delivery).
    Qs(QsStatus, QsStats),
    /// A KeyPackage directory request: its status, operation (`upload`, `key_packages`,
    /// `connection_key_packages`) and conflict retries.
    Directory(Status, &'static str, u32),
}

impl CallStats {
    /// `ds` or `qs`.
    pub fn service(&self) -> &'static str {
        match self {
            Self::Ds(..) => "ds",
            Self::Qs(..) => "qs",
            Self::Directory(..) => "directory",
        }
    }

    /// The operation ([`OutcomeStats::operation`], [`QsStats::operation`]).
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Ds(_, stats) => stats.operation,
            Self::Qs(_, stats) => stats.operation,
            Self::Directory(_, operation, _) => operation,
        }
    }

    /// `accepted`, `duplicate`, or the refusal's error code name (`wrong_epoch`, ...): a
    /// bounded set, fit for a metrics label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Ds(Status::Accepted, _)
            | Self::Qs(QsStatus::Accepted, _)
            | Self::Directory(Status::Accepted, ..) => "accepted",
            Self::Ds(Status::Duplicate, _)
            | Self::Qs(QsStatus::Duplicate, _)
            | Self::Directory(Status::Duplicate, ..) => "duplicate",
            Self::Ds(Status::Rejected(code), _)
            | Self::Qs(QsStatus::Rejected(code), _)
            | Self::Directory(Status::Rejected(code), ..) => code.name(),
        }
    }

    /// Read rounds over every attempt.
    pub fn read_rounds(&self) -> u32 {
        match self {
            Self::Ds(_, stats) => stats.read_rounds,
            Self::Qs(_, stats) => stats.read_rounds,
            Self::Directory(_, _, retries) => retries + 1,
        }
    }

    /// Writes retried after a conflict.
    pub fn conflict_retries(&self) -> u32 {
        match self {
            Self::Ds(_, stats) => stats.conflict_retries,
            Self::Qs(_, stats) => stats.conflict_retries,
            Self::Directory(_, _, retries) => *retries,
        }
    }
}

/// A storage failure or bug in the DS or QS. Nothing was written; answer 500 (see
/// [`RouteError::response`]) and let the peer retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError<SE: std::error::Error + 'static, QE: std::error::Error + 'static> {
    /// From the DS.
    #[error("delivery service: {0}")]
    Ds(#[source] ProcessError<SE>),
    /// From the QS.
    #[error("queueing service: {0}")]
    Qs(#[source] ProcessError<QE>),
}

impl<SE: std::error::Error + 'static, QE: std::error::Error + 'static> RouteError<SE, QE> {
    /// The 500 to answer with. The body says nothing about the cause, which is for the
    /// server's logs, not for peers.
    pub fn response(&self) -> HttpResponse {
        HttpResponse {
            status: 500,
            content_type: TEXT_PLAIN,
            headers: Vec::new(),
            body: b"internal error".to_vec(),
        }
    }
}

/// Decides whether an unauthenticated `group_info` request may be served: the HTTP request
/// (headers, authenticated peer) and the group ID it asks about. See
/// [`Router::with_anonymous_group_info_gate`].
pub type AnonymousGroupInfoGate = Box<dyn Fn(&HttpRequest<'_>, &[u8]) -> bool + Send + Sync>;

/// The router: a provider's DS (if it runs one) and QS behind the MIMI endpoints.
pub struct Router<C = RustCrypto> {
    config: TransportConfig,
    ds: Option<DeliveryService<C>>,
    qs: Option<QueueingService<C>>,
    directory: Option<KeyPackageDirectory<C>>,
    anonymous_group_info_gate: Option<AnonymousGroupInfoGate>,
}

impl<C> std::fmt::Debug for Router<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .field("ds", &self.ds.is_some())
            .field("qs", &self.qs.is_some())
            .field("directory", &self.directory.is_some())
            .field(
                "anonymous_group_info_gate",
                &self.anonymous_group_info_gate.is_some(),
            )
            .finish()
    }
}

impl<C: OpenMlsCrypto + OpenMlsRand> Router<C> {
    /// A router serving neither DS nor QS yet.
    pub fn new(config: TransportConfig) -> Self {
        Self {
            config,
            ds: None,
            qs: None,
            directory: None,
            anonymous_group_info_gate: None,
        }
    }

    /// Serves this DS at the DS endpoints.
    pub fn with_ds(mut self, ds: DeliveryService<C>) -> Self {
        self.ds = Some(ds);
        self
    }

    /// Serves this QS at the QS endpoints.
    pub fn with_qs(mut self, qs: QueueingService<C>) -> Self {
        self.qs = Some(qs);
        self
    }

    /// Serves this KeyPackage directory at `/key_package_upload`, `/group_key_packages` and
    /// `/connection_key_packages`; route those with [`Router::handle_directory`] (or
    /// [`Router::handle_directory_async`]), which takes the directory's storage.
    pub fn with_directory(mut self, directory: KeyPackageDirectory<C>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The KeyPackage directory, if one is served.
    pub fn directory(&self) -> Option<&KeyPackageDirectory<C>> {
        self.directory.as_ref()
    }

    /// Routes a request for a KeyPackage directory endpoint ([`Endpoint::is_directory`]) with
    /// the same HTTP checks as [`Router::handle`]; `/group_key_packages` takes only
    /// `key_packages(12)`, `/connection_key_packages` only `connection_key_packages(13)`.
    /// Other paths are answered as [`Router::handle`] answers a path it does not serve here
    /// (404, or 501 for a DS or QS endpoint).
    pub fn handle_directory<D: DirectoryStorage>(
        &self,
        now: UnixTimeMs,
        request: &HttpRequest<'_>,
        storage: &mut D,
    ) -> Result<Routed, ProcessError<D::Error>> {
        match self.dispatch_directory(request) {
            DirectoryDispatch::Answered(routed) => Ok(routed),
            DirectoryDispatch::Upload(endpoint, directory) => directory
                .upload(now, request.body, storage)
                .map(|outcome| directory_routed(endpoint, outcome)),
            DirectoryDispatch::Claim(endpoint, directory) => directory
                .claim(now, request.body, storage)
                .map(|outcome| directory_routed(endpoint, outcome)),
        }
    }

    /// [`Router::handle_directory`] over async storage.
    pub async fn handle_directory_async<D: AsyncDirectoryStorage>(
        &self,
        now: UnixTimeMs,
        request: &HttpRequest<'_>,
        storage: &mut D,
    ) -> Result<Routed, ProcessError<D::Error>> {
        match self.dispatch_directory(request) {
            DirectoryDispatch::Answered(routed) => Ok(routed),
            DirectoryDispatch::Upload(endpoint, directory) => directory
                .upload_async(now, request.body, storage)
                .await
                .map(|outcome| directory_routed(endpoint, outcome)),
            DirectoryDispatch::Claim(endpoint, directory) => directory
                .claim_async(now, request.body, storage)
                .await
                .map(|outcome| directory_routed(endpoint, outcome)),
        }
    }

    /// The checks of a directory request before the directory runs.
    fn dispatch_directory(&self, request: &HttpRequest<'_>) -> DirectoryDispatch<'_, C> {
        let endpoint = match Endpoint::from_path(request.path) {
            Some(endpoint) if endpoint.is_directory() => endpoint,
            Some(endpoint) => {
                return DirectoryDispatch::Answered(refused(
                    Some(endpoint),
                    ErrorCode::UnsupportedOperation,
                    501,
                    "not a KeyPackage directory endpoint",
                ))
            }
            None => {
                return DirectoryDispatch::Answered(refused(
                    None,
                    ErrorCode::UnsupportedOperation,
                    404,
                    "no such endpoint",
                ))
            }
        };
        if let Err(response) = self.check_http(endpoint, request) {
            return DirectoryDispatch::Answered(answered(Some(endpoint), response));
        }
        let Some(directory) = &self.directory else {
            return DirectoryDispatch::Answered(no_directory(endpoint));
        };
        if endpoint == Endpoint::KeyPackageUpload {
            return DirectoryDispatch::Upload(endpoint, directory);
        }
        if let Some(wrong) = misplaced_request_type(endpoint, request.body) {
            return DirectoryDispatch::Answered(refused(
                Some(endpoint),
                ErrorCode::UnsupportedOperation,
                400,
                wrong,
            ));
        }
        DirectoryDispatch::Claim(endpoint, directory)
    }

    /// Decides which unauthenticated `group_info` requests reach the DS (wire-format.md §11.2):
    /// those for which `gate` returns `true` (e.g. the request carries a join-link token for
    /// that group, or comes from a peer within its rate limit); the others get 403
    /// `authentication_failed`. Signed requests always reach the DS, which authenticates them.
    ///
    /// The gate narrows anonymous access; it does not grant it: the DS answers unauthenticated
    /// requests only under [`crate::GroupInfoAccess::Anyone`] (wire-format.md §4.11).
    pub fn with_anonymous_group_info_gate(
        mut self,
        gate: impl Fn(&HttpRequest<'_>, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.anonymous_group_info_gate = Some(Box::new(gate));
        self
    }

    /// The settings.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The DS, for server events ([`DeliveryService::handle_event`]).
    pub fn ds(&self) -> Option<&DeliveryService<C>> {
        self.ds.as_ref()
    }

    /// The QS, for deliveries from this provider's own DS.
    pub fn qs(&self) -> Option<&QueueingService<C>> {
        self.qs.as_ref()
    }

    /// Routes one request. `ds_storage` and `qs_storage` are touched only by the service the
    /// endpoint belongs to.
    pub fn handle<S: DsStorage, Q: QsStorage>(
        &self,
        now: UnixTimeMs,
        request: &HttpRequest<'_>,
        ds_storage: &mut S,
        qs_storage: &mut Q,
    ) -> Result<Routed, RouteError<S::Error, Q::Error>> {
        match self.dispatch(request) {
            Dispatch::Answered(routed) => Ok(routed),
            Dispatch::Ds { endpoint, ds, body } => ds
                .process(now, body, ds_storage)
                .map(|outcome| ds_routed(endpoint, outcome))
                .map_err(RouteError::Ds),
            Dispatch::QsClient { endpoint, qs, body } => qs
                .client_request(now, body, qs_storage)
                .map(|outcome| qs_routed(endpoint, outcome))
                .map_err(RouteError::Qs),
            Dispatch::QsDelivery {
                endpoint,
                qs,
                body,
                peer,
            } => qs
                .deliver(now, body, peer, qs_storage)
                .map(|outcome| qs_routed(endpoint, outcome))
                .map_err(RouteError::Qs),
        }
    }

    /// [`Router::handle`] over async storage ([`AsyncDsStorage`], [`AsyncQsStorage`]): the
    /// same checks and mapping, with the DS's or QS's reads and write awaited
    /// ([`DeliveryService::process_async`], [`QueueingService::deliver_async`],
    /// [`QueueingService::client_request_async`]). It needs no runtime of its own; the
    /// future is `Send` when the storages are, so a server can run it on its executor.
    pub async fn handle_async<S: AsyncDsStorage, Q: AsyncQsStorage>(
        &self,
        now: UnixTimeMs,
        request: &HttpRequest<'_>,
        ds_storage: &mut S,
        qs_storage: &mut Q,
    ) -> Result<Routed, RouteError<S::Error, Q::Error>> {
        match self.dispatch(request) {
            Dispatch::Answered(routed) => Ok(routed),
            Dispatch::Ds { endpoint, ds, body } => ds
                .process_async(now, body, ds_storage)
                .await
                .map(|outcome| ds_routed(endpoint, outcome))
                .map_err(RouteError::Ds),
            Dispatch::QsClient { endpoint, qs, body } => qs
                .client_request_async(now, body, qs_storage)
                .await
                .map(|outcome| qs_routed(endpoint, outcome))
                .map_err(RouteError::Qs),
            Dispatch::QsDelivery {
                endpoint,
                qs,
                body,
                peer,
            } => qs
                .deliver_async(now, body, peer, qs_storage)
                .await
                .map(|outcome| qs_routed(endpoint, outcome))
                .map_err(RouteError::Qs),
        }
    }

    /// Routes the connection endpoints ([`Endpoint::is_connection`]) to `connections`, a
    /// [`ConnectionProvider`] over `store`, after the same HTTP checks as [`Router::handle`]
    /// (method, `Host`, size, content type): `POST /connection_request` (wire-format.md
    /// §14.3.3, with the same mutual-TLS requirement as `/deliver_message`), and the
    /// client-facing `POST /connection_key` and `POST /connection_operation` (§14.3.2). Any
    /// other path is answered 404; [`Router::handle`] answers 501 at these paths, so a server
    /// serving connections sends them here.
    pub fn handle_connection_request<K: ConnectionStore>(
        &self,
        now: UnixTimeMs,
        request: &HttpRequest<'_>,
        connections: &ConnectionProvider<C>,
        store: &mut K,
    ) -> Result<Routed, ProcessError<K::Error>> {
        let body = request.body;
        let endpoint = match self.dispatch_connection(request) {
            Ok(endpoint) => endpoint,
            Err(routed) => return Ok(*routed),
        };
        let outcome = match endpoint {
            Endpoint::ConnectionKey => connections.fetch_request(body, store),
            Endpoint::ConnectionOperation => connections.client_request(now, body, store),
            _ => connections.deliver(now, body, request.authenticated_peer, store),
        };
        outcome.map(|outcome| qs_routed(endpoint, outcome))
    }

    /// [`Router::handle_connection_request`] over async storage (PostgreSQL).
    pub async fn handle_connection_request_async<K: AsyncConnectionStore>(
        &self,
        now: UnixTimeMs,
        request: &HttpRequest<'_>,
        connections: &ConnectionProvider<C>,
        store: &mut K,
    ) -> Result<Routed, ProcessError<K::Error>> {
        let body = request.body;
        let endpoint = match self.dispatch_connection(request) {
            Ok(endpoint) => endpoint,
            Err(routed) => return Ok(*routed),
        };
        let outcome = match endpoint {
            Endpoint::ConnectionKey => connections.fetch_request_async(body, store).await,
            Endpoint::ConnectionOperation => {
                connections.client_request_async(now, body, store).await
            }
            _ => {
                connections
                    .deliver_async(now, body, request.authenticated_peer, store)
                    .await
            }
        };
        outcome.map(|outcome| qs_routed(endpoint, outcome))
    }

    /// The checks of a connection request before the provider runs: the connection
    /// endpoint it is for, or the answer the router gives itself.
    fn dispatch_connection(&self, request: &HttpRequest<'_>) -> Result<Endpoint, Box<Routed>> {
        let endpoint = match Endpoint::from_path(request.path) {
            Some(endpoint) if endpoint.is_connection() => endpoint,
            other => {
                return Err(Box::new(refused(
                    other,
                    ErrorCode::UnsupportedOperation,
                    404,
                    "not a connection endpoint",
                )))
            }
        };
        if let Err(response) = self.check_http(endpoint, request) {
            return Err(Box::new(answered(Some(endpoint), response)));
        }
        if endpoint == Endpoint::ConnectionRequest
            && self.config.require_authenticated_providers
            && request.authenticated_peer.is_none()
        {
            return Err(Box::new(refused(
                Some(endpoint),
                ErrorCode::AuthenticationFailed,
                403,
                "deliveries need a provider authenticated by mutual TLS",
            )));
        }
        Ok(endpoint)
    }

    /// Everything [`Router::handle`] and [`Router::handle_async`] decide before the DS or QS
    /// runs: the endpoint, the HTTP-level checks, and which service call the request becomes.
    /// The one routing path both share; only the call itself differs between them.
    fn dispatch<'r>(&'r self, request: &HttpRequest<'r>) -> Dispatch<'r, C> {
        let Some(endpoint) = Endpoint::from_path(request.path) else {
            return Dispatch::Answered(refused(
                None,
                ErrorCode::UnsupportedOperation,
                404,
                "no such endpoint",
            ));
        };
        if let Err(response) = self.check_http(endpoint, request) {
            return Dispatch::Answered(answered(Some(endpoint), response));
        }
        match endpoint {
            Endpoint::DsDomain => Dispatch::Answered(self.ds_domain()),
            Endpoint::ConnectionKeyPackages
            | Endpoint::GroupKeyPackages
            | Endpoint::KeyPackageUpload => {
                // The directory has its own storage: `handle_directory` routes these.
                Dispatch::Answered(no_directory(endpoint))
            }
            Endpoint::ConnectionKey | Endpoint::ConnectionOperation => {
                // The connection inboxes have their own storage: `handle_connection_request`
                // routes these.
                Dispatch::Answered(refused(
                    Some(endpoint),
                    ErrorCode::UnsupportedOperation,
                    501,
                    "connection endpoints are served by Router::handle_connection_request",
                ))
            }
            Endpoint::GroupOperation
            | Endpoint::WelcomeInformation
            | Endpoint::ExternalCommitInformation
            | Endpoint::VerificationKey => self.dispatch_ds(endpoint, request),
            Endpoint::DeliverMessage | Endpoint::ConnectionRequest | Endpoint::QueueOperation => {
                self.dispatch_qs(endpoint, request)
            }
        }
    }

    /// Whether the anonymous-access gate lets `request` through: any request when no gate is
    /// set, and any request that is not an unauthenticated `group_info` (those the DS judges).
    fn anonymous_group_info_allowed(&self, request: &HttpRequest<'_>) -> bool {
        let Some(gate) = &self.anonymous_group_info_gate else {
            return true;
        };
        match decode_exact::<DsRequest>(request.body) {
            Ok(DsRequest {
                body: DsRequestBody::GroupInfo(body),
                auth: DsAuthData::Unauthenticated,
                ..
            }) => gate(request, body.group_id.as_slice()),
            _ => true,
        }
    }

    /// `GET /.well-known/mimi/ds-domain`: the DS's domain as text (docs/decisions.md D19).
    fn ds_domain(&self) -> Routed {
        let Some(domain) = &self.config.ds_domain else {
            return refused(
                Some(Endpoint::DsDomain),
                ErrorCode::UnsupportedOperation,
                404,
                "this provider runs no DS",
            );
        };
        Routed {
            response: HttpResponse {
                status: 200,
                content_type: TEXT_PLAIN,
                headers: Vec::new(),
                body: domain.as_bytes().to_vec(),
            },
            endpoint: Some(Endpoint::DsDomain),
            fanout: Vec::new(),
            enqueued: Vec::new(),
            call: None,
        }
    }

    /// A DS endpoint: the request type must belong there, then the DS answers.
    fn dispatch_ds<'r>(&'r self, endpoint: Endpoint, request: &HttpRequest<'r>) -> Dispatch<'r, C> {
        let body = request.body;
        let Some(ds) = &self.ds else {
            return Dispatch::Answered(refused(
                Some(endpoint),
                ErrorCode::UnsupportedOperation,
                404,
                "this provider runs no DS",
            ));
        };
        if let Some(wrong) = misplaced_request_type(endpoint, body) {
            return Dispatch::Answered(refused(
                Some(endpoint),
                ErrorCode::UnsupportedOperation,
                400,
                wrong,
            ));
        }
        if endpoint == Endpoint::ExternalCommitInformation
            && !self.anonymous_group_info_allowed(request)
        {
            return Dispatch::Answered(refused(
                Some(endpoint),
                ErrorCode::AuthenticationFailed,
                403,
                "not authorized to fetch this group's information",
            ));
        }
        Dispatch::Ds { endpoint, ds, body }
    }

    /// A QS endpoint: a client's queue request, or a provider's delivery (which must come over
    /// mutual TLS when so configured; the QS checks the peer against `sender_domain`).
    fn dispatch_qs<'r>(&'r self, endpoint: Endpoint, request: &HttpRequest<'r>) -> Dispatch<'r, C> {
        let Some(qs) = &self.qs else {
            return Dispatch::Answered(refused(
                Some(endpoint),
                ErrorCode::UnsupportedOperation,
                404,
                "this provider runs no QS",
            ));
        };
        if endpoint == Endpoint::QueueOperation {
            return Dispatch::QsClient {
                endpoint,
                qs,
                body: request.body,
            };
        }
        if self.config.require_authenticated_providers && request.authenticated_peer.is_none() {
            return Dispatch::Answered(refused(
                Some(endpoint),
                ErrorCode::AuthenticationFailed,
                403,
                "deliveries need a provider authenticated by mutual TLS",
            ));
        }
        if endpoint == Endpoint::ConnectionRequest {
            // Its body is a ConnectionRequestDelivery for the connection inboxes, not a QS
            // delivery (wire-format.md §14.3.3).
            return Dispatch::Answered(refused(
                Some(endpoint),
                ErrorCode::UnsupportedOperation,
                501,
                "connection requests are served by Router::handle_connection_request",
            ));
        }
        Dispatch::QsDelivery {
            endpoint,
            qs,
            body: request.body,
            peer: request.authenticated_peer,
        }
    }

    /// The HTTP-level checks: method, `Host`, body size, content type.
    fn check_http(
        &self,
        endpoint: Endpoint,
        request: &HttpRequest<'_>,
    ) -> Result<(), HttpResponse> {
        if !endpoint
            .methods()
            .iter()
            .any(|m| m.eq_ignore_ascii_case(request.method))
        {
            let mut response =
                HttpResponse::error(ErrorCode::UnsupportedOperation, 405, "method not allowed");
            response
                .headers
                .push(("Allow", endpoint.methods().join(", ")));
            return Err(response);
        }
        // MP-06 §4.1: `Host` names the target provider; a request for another authority must
        // not be answered by this one (RFC 9110 §15.5.20, 421 Misdirected Request).
        let Some(host) = request.header("host") else {
            return Err(HttpResponse::error(
                ErrorCode::MalformedRequest,
                400,
                "no Host header",
            ));
        };
        // RFC 9112 §3.2: a server MUST answer 400 to more than one Host field line. Checking
        // only the first would let a second name another authority for whatever reads it.
        let hosts = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"));
        if hosts.count() > 1 {
            return Err(HttpResponse::error(
                ErrorCode::MalformedRequest,
                400,
                "repeated Host header",
            ));
        }
        let name = host_name(host);
        let ours = name.eq_ignore_ascii_case(&self.config.provider_domain)
            || self
                .config
                .ds_domain
                .as_deref()
                .is_some_and(|ds| name.eq_ignore_ascii_case(ds));
        if !ours {
            return Err(HttpResponse::error(
                ErrorCode::NotAllowed,
                421,
                "Host names another provider",
            ));
        }
        if request.body.len() > self.config.max_body_bytes {
            return Err(HttpResponse::error(
                ErrorCode::RequestTooLarge,
                413,
                "body exceeds the size limit",
            ));
        }
        if endpoint != Endpoint::DsDomain {
            let content_type = request.header("content-type").unwrap_or("");
            let media_type = content_type.split(';').next().unwrap_or("").trim();
            if !media_type.eq_ignore_ascii_case(OCTET_STREAM) {
                return Err(HttpResponse::error(
                    ErrorCode::MalformedRequest,
                    415,
                    "bodies are application/octet-stream",
                ));
            }
        }
        Ok(())
    }
}

/// The host of a `Host` value, without a port (MP-06 §4.1: "any port component is ignored").
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: never one of our domain names, returned whole.
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Why a `DSRequest` does not belong at `endpoint`, judged from its type byte (after the
/// two-byte version). Bodies too short to have one are left to the DS to refuse.
fn misplaced_request_type(endpoint: Endpoint, body: &[u8]) -> Option<&'static str> {
    let &request_type = body.get(2)?;
    let expected = match endpoint {
        Endpoint::WelcomeInformation => Some(DsRequestType::WelcomeInfo as u8),
        Endpoint::ExternalCommitInformation => Some(DsRequestType::GroupInfo as u8),
        Endpoint::VerificationKey => Some(DsRequestType::SignaturePublicKey as u8),
        Endpoint::GroupKeyPackages => Some(DsRequestType::KeyPackages as u8),
        Endpoint::ConnectionKeyPackages => Some(DsRequestType::ConnectionKeyPackages as u8),
        _ => None,
    };
    match expected {
        Some(expected) if request_type != expected => {
            Some("this endpoint serves one request type; see wire-format.md §11")
        }
        None if [
            DsRequestType::WelcomeInfo as u8,
            DsRequestType::GroupInfo as u8,
            DsRequestType::SignaturePublicKey as u8,
            DsRequestType::KeyPackages as u8,
            DsRequestType::ConnectionKeyPackages as u8,
        ]
        .contains(&request_type) =>
        {
            Some("this request type has its own endpoint; see wire-format.md §11")
        }
        _ => None,
    }
}

/// What a request becomes once routed: an answer the router gave itself, or one call into the
/// DS or QS (made by [`Router::handle`] or [`Router::handle_async`]).
enum Dispatch<'r, C> {
    /// Answered without the DS or QS (an HTTP-level refusal, `ds-domain`, ...).
    Answered(Routed),
    /// `DeliveryService::process` on `body`.
    Ds {
        endpoint: Endpoint,
        ds: &'r DeliveryService<C>,
        body: &'r [u8],
    },
    /// `QueueingService::client_request` on `body`.
    QsClient {
        endpoint: Endpoint,
        qs: &'r QueueingService<C>,
        body: &'r [u8],
    },
    /// `QueueingService::deliver` on `body`, from `peer`.
    QsDelivery {
        endpoint: Endpoint,
        qs: &'r QueueingService<C>,
        body: &'r [u8],
        peer: Option<&'r str>,
    },
}

/// The answer to a request the DS processed.
fn ds_routed(endpoint: Endpoint, outcome: Outcome) -> Routed {
    let status = match outcome.status {
        Status::Accepted | Status::Duplicate => 200,
        Status::Rejected(code) => http_status(code),
    };
    Routed {
        response: HttpResponse::octets(status, outcome.response),
        endpoint: Some(endpoint),
        fanout: outcome.fanout,
        enqueued: Vec::new(),
        call: Some(CallStats::Ds(outcome.status, outcome.stats)),
    }
}

/// What a directory request becomes once routed.
enum DirectoryDispatch<'r, C> {
    /// Answered without the directory.
    Answered(Routed),
    /// `KeyPackageDirectory::upload`.
    Upload(Endpoint, &'r KeyPackageDirectory<C>),
    /// `KeyPackageDirectory::claim`.
    Claim(Endpoint, &'r KeyPackageDirectory<C>),
}

/// The answer at a directory endpoint when no directory storage reaches the router: this
/// provider runs no directory, or the server routed the request through `handle`.
fn no_directory(endpoint: Endpoint) -> Routed {
    refused(
        Some(endpoint),
        ErrorCode::UnsupportedOperation,
        501,
        "this provider serves no KeyPackage directory here",
    )
}

/// The answer to a request the directory processed.
fn directory_routed(endpoint: Endpoint, outcome: DirectoryOutcome) -> Routed {
    let status = match outcome.status {
        Status::Accepted | Status::Duplicate => 200,
        Status::Rejected(code) => http_status(code),
    };
    Routed {
        response: HttpResponse::octets(status, outcome.response),
        endpoint: Some(endpoint),
        fanout: Vec::new(),
        enqueued: Vec::new(),
        call: Some(CallStats::Directory(
            outcome.status,
            outcome.operation,
            outcome.conflict_retries,
        )),
    }
}

/// The answer to a request the QS processed.
fn qs_routed(endpoint: Endpoint, outcome: QsOutcome) -> Routed {
    let status = match outcome.status {
        QsStatus::Accepted | QsStatus::Duplicate => 200,
        QsStatus::Rejected(code) => http_status(code),
    };
    Routed {
        response: HttpResponse::octets(status, outcome.response),
        endpoint: Some(endpoint),
        fanout: Vec::new(),
        enqueued: outcome.enqueued,
        call: Some(CallStats::Qs(outcome.status, outcome.stats)),
    }
}

fn refused(endpoint: Option<Endpoint>, code: ErrorCode, status: u16, description: &str) -> Routed {
    answered(endpoint, HttpResponse::error(code, status, description))
}

/// An answer the router gives itself, before any service runs: no fanout, nothing enqueued,
/// no call.
fn answered(endpoint: Option<Endpoint>, response: HttpResponse) -> Routed {
    Routed {
        response,
        endpoint,
        fanout: Vec::new(),
        enqueued: Vec::new(),
        call: None,
    }
}
