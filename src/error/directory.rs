//! [`DirectoryRejectReason`]: why a provider's KeyPackage directory refused an upload or a
//! claim (wire-format.md §14.4). Every variant leaves storage untouched.

use crate::wire::{DecodeError, DsError, DsErrorDetails, ErrorCode};

/// Why the KeyPackage directory ([`crate::directory::KeyPackageDirectory`]) refused a request.
/// [`DirectoryRejectReason::code`] is the one place these map onto wire codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryRejectReason {
    /// Rule R-DIR-1: the request bytes do not decode (wire-format.md §1.2).
    #[error("malformed request: {0}")]
    Malformed(#[from] DecodeError),
    /// Rule R-DIR-1: the request names a protocol version the directory does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// Rule R-DIR-1: a claim's request type is not `key_packages(12)` or
    /// `connection_key_packages(13)`, or its auth is not `unauthenticated`.
    #[error(
        "the directory serves only unauthenticated key_packages and connection_key_packages claims"
    )]
    NotAClaim,
    /// Rule R-DIR-2: the request is larger than the configured limit.
    #[error("request of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Request size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Rule R-DIR-2: an upload carries more KeyPackages than one request may.
    #[error("{count} KeyPackages in one upload exceed the limit of {limit}")]
    TooManyKeyPackages {
        /// KeyPackages in the upload.
        count: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Rule R-DIR-2: one KeyPackage is larger than the configured limit.
    #[error("a KeyPackage of {size} bytes exceeds the limit of {limit}")]
    KeyPackageTooLarge {
        /// The KeyPackage's size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Rule R-DIR-3: a connection token or upload secret is not 32 bytes, or a claim ID not
    /// 16 to 64 bytes.
    #[error("{field} has {length} bytes")]
    BadLength {
        /// The field.
        field: &'static str,
        /// Its length.
        length: usize,
    },
    /// Rule R-DIR-4: the upload secret does not derive the connection token, so the uploader
    /// is not the token's owner (uploads with someone else's token).
    #[error("the upload secret does not derive this connection token")]
    UploadSecretMismatch,
    /// Rule R-DIR-5: no KeyPackage was ever uploaded under this connection token.
    #[error("unknown connection token")]
    UnknownToken,
    /// Rule R-DIR-6: the token has no complete set of the kind claimed that is valid now, not
    /// even a last-resort one.
    #[error("no complete KeyPackage set left ({incomplete} incomplete, {expired} expired)")]
    Exhausted {
        /// Sets of the kind claimed still missing KeyPackages.
        incomplete: usize,
        /// Complete sets of the kind claimed outside their lifetime at `now`.
        expired: usize,
    },
    /// Rule R-DIR-7: a KeyPackage does not validate (RFC 9420 §10.1: signatures, protocol
    /// version, init key), or is not an `MLSMessage` carrying one.
    #[error("invalid KeyPackage: {0}")]
    InvalidKeyPackage(String),
    /// Rule R-DIR-8: a KeyPackage's ciphersuite is not one the directory accepts.
    #[error("ciphersuite {0:#06x} not accepted")]
    UnsupportedCiphersuite(u16),
    /// Rule R-DIR-9: a KeyPackage's leaf credential is not a well-formed pseudonymous
    /// credential (type 0xF1D7, wire-format.md §14.1) whose signature key is the leaf's.
    #[error("not a pseudonymous credential: {0}")]
    NotPseudonymous(&'static str),
    /// Rule R-DIR-10: a KeyPackage is outside its lifetime at `now` (RFC 9420 §7.2).
    #[error("KeyPackage lifetime {not_before}..={not_after} s does not include {now_ms} ms")]
    KeyPackageLifetime {
        /// `not_before`, seconds.
        not_before: u64,
        /// `not_after`, seconds.
        not_after: u64,
        /// The directory's `now`.
        now_ms: u64,
    },
    /// Rule R-DIR-11: the upload breaks a rule of KeyPackage sets.
    #[error("invalid KeyPackage set: {0}")]
    InvalidSet(#[from] SetRule),
    /// Storage kept reporting concurrent changes.
    #[error("concurrent modification; retry")]
    Conflict,
}

/// The rule of KeyPackage sets an upload broke (wire-format.md §14.4, code
/// `invalid_key_package_set`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetRule {
    /// `set_size` is 0 or above the configured maximum.
    #[error("set size {size} outside 1..={limit}")]
    SetSize {
        /// The size given.
        size: u8,
        /// Configured maximum.
        limit: u8,
    },
    /// `client_index` is not below `set_size`.
    #[error("client index {index} not below set size {size}")]
    ClientIndex {
        /// The index given.
        index: u8,
        /// The set's size.
        size: u8,
    },
    /// The set already holds a KeyPackage for this client index.
    #[error("client index {0} already filled")]
    SlotTaken(u8),
    /// The upload's kind, size, last-resort flag or ciphersuite disagrees with the set of the
    /// same user pseudonym.
    #[error("{0} disagrees with the set's")]
    Disagrees(&'static str),
    /// The user pseudonym belongs to another token's set, or to a set that was consumed:
    /// no two sets share one (MM-01 pseudonymous KeyPackage sets).
    #[error("user pseudonym already used by another set")]
    PseudonymTaken,
    /// Two KeyPackages of the set carry the same client pseudonym.
    #[error("client pseudonym repeated in the set")]
    ClientPseudonymRepeated,
    /// The token already holds as many sets as the directory keeps per token.
    #[error("the token holds {limit} sets already")]
    TooManySets {
        /// Configured maximum.
        limit: usize,
    },
}

impl DirectoryRejectReason {
    /// The wire code of this reason.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) | Self::NotAClaim | Self::BadLength { .. } => {
                ErrorCode::MalformedRequest
            }
            Self::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Self::TooLarge { .. }
            | Self::TooManyKeyPackages { .. }
            | Self::KeyPackageTooLarge { .. } => ErrorCode::RequestTooLarge,
            Self::UploadSecretMismatch => ErrorCode::AuthenticationFailed,
            Self::UnknownToken => ErrorCode::UnknownConnectionToken,
            Self::Exhausted { .. } => ErrorCode::KeyPackagesExhausted,
            Self::InvalidKeyPackage(_)
            | Self::UnsupportedCiphersuite(_)
            | Self::NotPseudonymous(_) => ErrorCode::InvalidLeafNodeOrKeyPackage,
            Self::KeyPackageLifetime { .. } => ErrorCode::KeyPackageLifetime,
            Self::InvalidSet(_) => ErrorCode::InvalidKeyPackageSet,
            Self::Conflict => ErrorCode::Conflict,
        }
    }

    /// The `DSError` sent to the peer.
    pub fn to_wire(&self) -> DsError {
        DsError {
            code: self.code(),
            description: self.to_string().into_bytes().into(),
            details: DsErrorDetails::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode;

    /// Every reason must produce a `DSError` that encodes, or a refusal could not be answered.
    #[test]
    fn every_directory_reject_reason_encodes() {
        let reasons = [
            DirectoryRejectReason::Malformed(DecodeError::TrailingBytes {
                type_name: "x",
                count: 1,
            }),
            DirectoryRejectReason::UnsupportedVersion(2),
            DirectoryRejectReason::NotAClaim,
            DirectoryRejectReason::TooLarge { size: 2, limit: 1 },
            DirectoryRejectReason::TooManyKeyPackages { count: 2, limit: 1 },
            DirectoryRejectReason::KeyPackageTooLarge { size: 2, limit: 1 },
            DirectoryRejectReason::BadLength {
                field: "claim_id",
                length: 1,
            },
            DirectoryRejectReason::UploadSecretMismatch,
            DirectoryRejectReason::UnknownToken,
            DirectoryRejectReason::Exhausted {
                incomplete: 1,
                expired: 0,
            },
            DirectoryRejectReason::InvalidKeyPackage("x".into()),
            DirectoryRejectReason::UnsupportedCiphersuite(2),
            DirectoryRejectReason::NotPseudonymous("x"),
            DirectoryRejectReason::KeyPackageLifetime {
                not_before: 1,
                not_after: 2,
                now_ms: 3,
            },
            DirectoryRejectReason::InvalidSet(SetRule::SetSize { size: 0, limit: 1 }),
            DirectoryRejectReason::InvalidSet(SetRule::ClientIndex { index: 1, size: 1 }),
            DirectoryRejectReason::InvalidSet(SetRule::SlotTaken(0)),
            DirectoryRejectReason::InvalidSet(SetRule::Disagrees("kind")),
            DirectoryRejectReason::InvalidSet(SetRule::PseudonymTaken),
            DirectoryRejectReason::InvalidSet(SetRule::ClientPseudonymRepeated),
            DirectoryRejectReason::InvalidSet(SetRule::TooManySets { limit: 1 }),
            DirectoryRejectReason::Conflict,
        ];
        for reason in reasons {
            encode(&reason.to_wire()).expect("encodes");
        }
    }
}
