//! Why a provider refuses a connection-establishment operation (wire-format.md §14.3): the
//! rules `R-CONN-*` of §13, carried as [`crate::QsRejectReason::Connection`].

use crate::wire::ErrorCode;

/// A refused connection operation at the responder's provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionRefusal {
    /// Rule R-CONN-1: the delivery's inbox address does not open with this provider's inbox
    /// key, or names no inbox (wire-format.md §14.3.3).
    #[error("unknown connection inbox")]
    UnknownInbox,
    /// Rule R-CONN-2: the sealed request cannot be an `EncryptWithLabel` output to the inbox
    /// owner's key: its `kem_output` is not as long as the key (RFC 9180 §7.1: `Nenc = Npk`
    /// for every DHKEM), or its ciphertext is shorter than an AEAD tag (wire-format.md
    /// §14.3.3).
    #[error("the sealed connection request is not a ciphertext for the inbox's key")]
    MalformedSealedRequest,
    /// Rule R-CONN-3: the same sealed request was already delivered to this inbox within the
    /// replay window (wire-format.md §14.3.3).
    #[error("connection request already delivered")]
    Replayed,
    /// Rule R-CONN-4: the inbox holds `max_inbox_requests` requests the user has not
    /// acknowledged (wire-format.md §14.3.3).
    #[error("connection inbox full")]
    InboxFull,
    /// Rule R-CONN-5: a published connection-establishment key is not a public key of its
    /// ciphersuite's HPKE KEM, or the ciphersuite is unknown (wire-format.md §14.3.2).
    #[error("not an HPKE public key of the ciphersuite")]
    InvalidConnectionKey,
    /// Rule R-CONN-6: the user has published no connection key, so there is no inbox to read
    /// or acknowledge (wire-format.md §14.3.2).
    #[error("no connection key published for this user")]
    UnknownUser,
    /// Rule R-CONN-7: an acknowledgement beyond the inbox's next sequence number
    /// (wire-format.md §14.3.2).
    #[error("acknowledgement beyond the end of the inbox")]
    AcknowledgeBeyondEnd,
    /// Rule R-CONN-8: a `/connection_operation` request is not signed by its `owner_key`, or
    /// the user's name is owned by another key (or by the embedding server)
    /// (wire-format.md §14.3.2).
    #[error("not signed by the key that owns this user name")]
    NotOwner,
    /// Rule R-CONN-9: a signed publication no newer than the one stored (a replay of an
    /// earlier publication, which would bring back a replaced key, or one that lost a race to
    /// a newer one) (wire-format.md §14.3.2).
    #[error("a publication no newer than the stored one")]
    StalePublication,
}

impl ConnectionRefusal {
    /// The wire code (one of the existing `DSErrorCode`s, wire-format.md §5.6).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownInbox | Self::UnknownUser => ErrorCode::UnknownQueue,
            Self::MalformedSealedRequest | Self::InvalidConnectionKey => {
                ErrorCode::MalformedRequest
            }
            Self::Replayed => ErrorCode::ReplayedMessage,
            Self::InboxFull => ErrorCode::QueueFull,
            Self::AcknowledgeBeyondEnd => ErrorCode::NotAllowed,
            Self::NotOwner => ErrorCode::AuthenticationFailed,
            Self::StalePublication => ErrorCode::ReplayedMessage,
        }
    }

    /// Every variant, for tests that each one encodes.
    pub fn all() -> [Self; 9] {
        [
            Self::UnknownInbox,
            Self::MalformedSealedRequest,
            Self::Replayed,
            Self::InboxFull,
            Self::InvalidConnectionKey,
            Self::UnknownUser,
            Self::AcknowledgeBeyondEnd,
            Self::NotOwner,
            Self::StalePublication,
        ]
    }
}
