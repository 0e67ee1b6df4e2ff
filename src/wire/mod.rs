//! Wire codecs: every struct and codepoint mimi-ds puts on the wire, and nothing else.
//!
//! The normative description is `docs/wire-format.md`; each type here cites the section it
//! implements. All encodings are TLS presentation language with MLS variable-length vectors
//! (RFC 9420 §2.1.2), via `tls_codec`. Decoding is strict: unknown enum values are rejected by
//! the derived decoders and [`decode_exact`] rejects trailing bytes, so a value has exactly one
//! encoding and `encode(decode(b)) == b` for every accepted `b`.

mod auth;
mod franking;
mod keyed;
mod qs;
mod queue;
mod raw;
mod request;
mod response;

pub use auth::{
    ClientSignature, DsAuthData, DsSenderId, SignError, UserAuthKeyExtension,
    CLIENT_SIGNATURE_LABEL, USER_AUTH_KEY_EXTENSION_TYPE, USER_KEY_HASH_LABEL,
    USER_KEY_PROOF_LABEL,
};
pub use franking::{
    Frank, FrankingIntegrityTbs, IdentifierUri, ReportedMessage, SafeAad, SafeAadItem,
    ServerFrankingContext, FRANKING_INTEGRITY_LABEL, FRANK_AAD_COMPONENT_ID, FRANK_LEN,
};
pub use keyed::StateKeyedRequest;
pub use qs::{
    QsClientRequest, QsClientRequestBody, QsClientRequestTbs, QsClientResponse,
    QsClientResponseBody, QueueCreated, QueueInfoContext, QueueInfoPlaintext, QueuedMessage,
    QueuedMessages, QS_REQUEST_LABEL, QUEUE_CREATED_LABEL, QUEUE_ID_LABEL,
};
pub use queue::{
    ClientQueueConfig, FanoutMessage, QueueingServiceRequest, QueueingServiceResponse,
    RecipientRefusal, Recipients, RecipientsIter, QUEUE_CONFIG_EXTENSION_TYPE,
};
pub use raw::{GroupInfoBytes, MlsMessageBytes, RatchetTreeBytes};
pub use request::{
    ClientSignatureTbs, CommitRequest, ConnectionKeyPackagesRequest, CreateGroupRequest, DsRequest,
    DsRequestBody, DsRequestType, GroupInfoOption, GroupInfoRequest, GroupUpdate,
    GroupUpdateRequest, KeyPackageClaimRequest, KeyPackagesRequest, MembershipCommitRequest,
    PartialGroupInfo, ProposalsRequest, RatchetTreePresence, SelfRemoveClientRequest,
    SendMessageRequest, UpdateClientRequest, UpdateQueueInfoRequest, WelcomeInfoRequest,
};
pub use response::{
    encrypt_context, AcceptedMessage, ClaimedKeyPackageSet, DsError, DsErrorDetails, DsResponse,
    DsResponseBody, ErrorCode, ExternalCommitInfo, GroupInfoRatchetTreeTbe, HpkeCiphertext,
    LastResort, PendingProposal, RatchetTreeOption, RatchetTreeUrl, WelcomeInfo,
    GROUP_INFO_ENCRYPTION_LABEL, GROUP_INFO_MESSAGE_HEADER,
};

use tls_codec::DeserializeBytes;

/// `DSProtocolVersion` (wire-format.md §2): uint16, `mimi_ds10(1)` is the only value defined.
pub const PROTOCOL_VERSION_MIMI_DS10: u16 = 1;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not form a valid value of the expected type (truncated, unknown enum value,
    /// over-long length, or an embedded MLS structure that does not parse).
    #[error("malformed {type_name}: {reason}")]
    Malformed {
        /// The type that was being decoded.
        type_name: &'static str,
        /// What `tls_codec` reported.
        reason: String,
    },
    /// A complete value was decoded but bytes were left over.
    #[error("{count} trailing bytes after {type_name}")]
    TrailingBytes {
        /// The type that was being decoded.
        type_name: &'static str,
        /// How many bytes were left.
        count: usize,
    },
}

/// Decodes exactly one `T` from `bytes`, rejecting trailing bytes (as rustls
/// `Reader::all` does), so every accepted value has one encoding (wire-format.md §1.2).
pub fn decode_exact<T: DeserializeBytes>(bytes: &[u8]) -> Result<T, DecodeError> {
    let type_name = std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("value");
    let (value, rest) = T::tls_deserialize_bytes(bytes).map_err(|e| DecodeError::Malformed {
        type_name,
        reason: format!("{e:?}"),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            type_name,
            count: rest.len(),
        });
    }
    Ok(value)
}

/// Encodes a value. Encoding of the crate's own wire types only fails if a vector exceeds the
/// MLS varint limit (2^30 bytes), which the configured size limits rule out long before.
pub fn encode<T: tls_codec::Serialize>(value: &T) -> Result<Vec<u8>, tls_codec::Error> {
    value.tls_serialize_detached()
}

/// Encodes a response body as a `DSResponse` of the current version.
pub(crate) fn encode_response(body: DsResponseBody) -> Result<Vec<u8>, tls_codec::Error> {
    encode(&DsResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
    })
}
