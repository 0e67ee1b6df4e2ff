//! The HTTP side of the mapping: request and response values, the endpoint table, and the one
//! place wire error codes become HTTP status codes (wire-format.md §11).

use crate::wire::{
    encode, DsError, DsErrorDetails, DsResponse, DsResponseBody, ErrorCode,
    PROTOCOL_VERSION_MIMI_DS10,
};

/// The body type of every DS and QS endpoint (draft-kohbrok-mimi-transport-00 §"Endpoints").
pub const OCTET_STREAM: &str = "application/octet-stream";
/// The body type of `/.well-known/mimi/ds-domain` (docs/decisions.md D19).
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// An HTTP request as the embedding server received it, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The request target's path; a query string is ignored (the payload names the
    /// operation and the group, never the URL: draft-kohbrok-mimi-transport-00).
    pub path: &'a str,
    /// Header fields as received (names are matched case-insensitively).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
    /// The provider domain the transport authenticated, if any (the peer's TLS client
    /// certificate, mutual TLS between providers: TR-01, docs/decisions.md D19).
    pub authenticated_peer: Option<&'a str>,
}

impl HttpRequest<'_> {
    /// The first value of a header field, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// The answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` of `body`.
    pub content_type: &'static str,
    /// Further header fields (e.g. `Allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with an octet-stream body.
    pub(crate) fn octets(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type: OCTET_STREAM,
            headers: Vec::new(),
            body,
        }
    }

    /// An error the router itself detects: the mapped status and a `DSResponse` carrying a
    /// `DSError`, so clients read every error the same way.
    pub(crate) fn error(code: ErrorCode, status: u16, description: &str) -> Self {
        let body = encode(&DsResponse {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsResponseBody::Error(DsError {
                code,
                description: description.as_bytes().to_vec().into(),
                details: DsErrorDetails::None,
            }),
        })
        .unwrap_or_default();
        Self::octets(status, body)
    }
}

/// The endpoints of TR-00/TR-01 (docs/decisions.md D19), plus mimi-ds's queue endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /group_operation`: every `DSRequest` but the three below.
    GroupOperation,
    /// `POST /welcome_information`: `welcome_info(18)`.
    WelcomeInformation,
    /// `POST /external_commit_information`: `group_info(17)`.
    ExternalCommitInformation,
    /// `POST /verification_key`: `signature_public_key(11)`, the hub's external-sender key.
    VerificationKey,
    /// `POST /connection_request`: a `ConnectionRequestDelivery` for a user's connection inbox
    /// (wire-format.md §14.3.3; [`super::Router::handle_connection_request`]).
    ConnectionRequest,
    /// `POST /deliver_message`: a `QueueingServiceRequest` for this provider's clients.
    DeliverMessage,
    /// `POST /connection_key_packages`: `connection_key_packages(13)`, a claim of a connection
    /// KeyPackage set at the provider's directory (wire-format.md §14.4).
    ConnectionKeyPackages,
    /// `POST /group_key_packages`: `key_packages(12)`, a claim of a group KeyPackage set.
    GroupKeyPackages,
    /// `GET /.well-known/mimi/ds-domain`: the DS's domain, as text.
    DsDomain,
    /// `POST /queue_operation`: a `QSClientRequest` from one of this provider's clients.
    QueueOperation,
    /// `POST /key_package_upload`: a `KeyPackageUploadRequest` to the provider's directory
    /// (wire-format.md §14.4).
    KeyPackageUpload,
    /// `POST /connection_key`: a `ConnectionKeyFetch`, the unauthenticated fetch of a user's
    /// connection-establishment key (wire-format.md §14.3.2).
    ConnectionKey,
    /// `POST /connection_operation`: a `ConnectionClientRequest` of a user's own client
    /// (wire-format.md §14.3.2).
    ConnectionOperation,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Self; 13] = [
        Self::GroupOperation,
        Self::WelcomeInformation,
        Self::ExternalCommitInformation,
        Self::VerificationKey,
        Self::ConnectionRequest,
        Self::DeliverMessage,
        Self::ConnectionKeyPackages,
        Self::GroupKeyPackages,
        Self::DsDomain,
        Self::QueueOperation,
        Self::KeyPackageUpload,
        Self::ConnectionKey,
        Self::ConnectionOperation,
    ];

    /// The path.
    pub fn path(self) -> &'static str {
        match self {
            Self::GroupOperation => "/group_operation",
            Self::WelcomeInformation => "/welcome_information",
            Self::ExternalCommitInformation => "/external_commit_information",
            Self::VerificationKey => "/verification_key",
            Self::ConnectionRequest => "/connection_request",
            Self::DeliverMessage => "/deliver_message",
            Self::ConnectionKeyPackages => "/connection_key_packages",
            Self::GroupKeyPackages => "/group_key_packages",
            Self::DsDomain => "/.well-known/mimi/ds-domain",
            Self::QueueOperation => "/queue_operation",
            Self::KeyPackageUpload => "/key_package_upload",
            Self::ConnectionKey => "/connection_key",
            Self::ConnectionOperation => "/connection_operation",
        }
    }

    /// The methods served. TR-00 has GET-with-body for the three DS reads; RFC 9110 gives a
    /// GET body no meaning, so POST is the method to use and GET is kept for TR-00 peers
    /// (docs/decisions.md D19).
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Self::DsDomain => &["GET"],
            Self::WelcomeInformation | Self::ExternalCommitInformation | Self::VerificationKey => {
                &["POST", "GET"]
            }
            _ => &["POST"],
        }
    }

    /// Whether the provider's KeyPackage directory serves it ([`super::Router::handle_directory`]).
    pub fn is_directory(self) -> bool {
        matches!(
            self,
            Self::ConnectionKeyPackages | Self::GroupKeyPackages | Self::KeyPackageUpload
        )
    }

    /// Whether the provider's connection inboxes serve it
    /// ([`super::Router::handle_connection_request`]).
    pub fn is_connection(self) -> bool {
        matches!(
            self,
            Self::ConnectionRequest | Self::ConnectionKey | Self::ConnectionOperation
        )
    }

    /// The endpoint at `path` (the query string ignored).
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.split('?').next().unwrap_or(path);
        Self::ALL.into_iter().find(|e| e.path() == path)
    }
}

/// The single mapping from wire error codes to HTTP status codes.
pub fn http_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::MalformedRequest
        | ErrorCode::UnsupportedVersion
        | ErrorCode::InvalidGroupId
        | ErrorCode::InvalidLeafNodeOrKeyPackage
        | ErrorCode::KeyPackageLifetime
        | ErrorCode::InvalidGroupInfo
        | ErrorCode::InvalidProposal
        | ErrorCode::InvalidMessageType
        | ErrorCode::InvalidMlsMessage
        | ErrorCode::StaleTimestamp
        | ErrorCode::InvalidKeyPackageSet
        // Privacy mode (wire-format.md §17.9): the client sent the wrong keys for the group's
        // mode or key; a stale key is an epoch race, like `wrong_epoch`.
        | ErrorCode::StateKeyMissing
        | ErrorCode::StateKeyWrong
        | ErrorCode::StateKeyUnexpected => 400,
        // 401 would oblige a WWW-Authenticate challenge (RFC 9110 §15.5.2); these requests
        // authenticate in their payload, so a failure is "forbidden".
        ErrorCode::AuthenticationFailed | ErrorCode::NotAllowed => 403,
        ErrorCode::UnknownGroup
        | ErrorCode::UnknownQueue
        | ErrorCode::UnknownConnectionToken
        | ErrorCode::KeyPackagesExhausted => 404,
        ErrorCode::WrongEpoch
        | ErrorCode::FutureEpoch
        | ErrorCode::MissingPendingProposals
        // Resolved by the group's next commit, like the epoch errors.
        | ErrorCode::TooManyPendingProposals
        | ErrorCode::ReplayedRequest
        | ErrorCode::ReplayedMessage
        | ErrorCode::StateKeyStale
        | ErrorCode::Conflict => 409,
        ErrorCode::RequestTooLarge => 413,
        ErrorCode::UnsupportedOperation => 501,
        // Temporary, like an overloaded server. A QS reports full queues per recipient inside
        // a served delivery (200, wire-format.md §6.3), never as a whole answer.
        ErrorCode::QueueFull => 503,
    }
}
