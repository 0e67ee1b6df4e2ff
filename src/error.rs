//! Errors, sorted by who is at fault, so that a peer's bad input becomes an error response and
//! `Err` is left for storage failures and bugs.
//!
//! * [`RejectReason`]: the peer sent something we refuse. It becomes an error `DSResponse`;
//!   [`RejectReason::code`] is the one place reasons map onto wire codes. Codes that cover
//!   several rules carry a sub-enum with one variant per rule ([`NotAllowed`],
//!   [`AuthenticationFailed`], ..., in `error/refusals.rs`), each naming its rule ID from
//!   docs/wire-format.md §13.
//! * [`QsRejectReason`]: the same for the Queueing Service, onto the same code table.
//! * [`ProcessError`]: the embedding server's storage failed, or mimi-ds has a bug. Only these
//!   are returned as `Err` from [`crate::DeliveryService::process`] and the
//!   [`crate::qs::QueueingService`] calls.

use tls_codec::VLBytes;

use crate::wire::{DecodeError, DsError, DsErrorDetails, DsRequestType, ErrorCode};

mod directory;
mod refusals;
mod step;

pub use directory::{DirectoryRejectReason, SetRule};

pub use refusals::{
    AuthenticationFailed, InvalidGroupId, InvalidGroupInfo, InvalidLeafNode, InvalidMessageType,
    InvalidMlsMessage, InvalidProposal, MlsStructure, NotAllowed, QsNotAllowed,
};
pub use step::StepError;

/// Why a request was refused. Every variant leaves storage untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Rule R-FRAME-1: the request bytes do not decode (wire-format.md §1.2).
    #[error("malformed request: {0}")]
    Malformed(#[from] DecodeError),
    /// Rule R-FRAME-2: the request names a `DSProtocolVersion` this DS does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// Rule R-FRAME-3: the request is larger than [`crate::DsConfig::max_request_bytes`]
    /// (wire-format.md §1.4).
    #[error("request of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Request size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Rule R-AUTH-11: the `ClientSignature` timestamp is outside the authentication window.
    #[error("timestamp {timestamp_ms} ms is outside the window around {now_ms} ms")]
    StaleTimestamp {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// The DS's `now`.
        now_ms: u64,
    },
    /// Rule R-AUTH-12: the same signed request was already seen inside the authentication
    /// window (wire-format.md §3.4).
    #[error("request replayed")]
    Replayed,
    /// Rule R-MSG-10: an application message whose ciphertext was already accepted in the group
    /// (RFC 9420 §6.3: a ciphertext decrypts once; wire-format.md §4.8).
    #[error("application message replayed")]
    ReplayedMessage,
    /// Rule R-FRANK-1: the application message's `authenticated_data` begins with a SafeAAD
    /// whose `frank_aad` item is not a 32-octet franking tag (draft-ietf-mimi-protocol-06
    /// `FrankAAD`; wire-format.md §15.5): the hub cannot frank it, and recipients could not
    /// check it.
    #[error("malformed franking tag: {0}")]
    MalformedFrankAad(crate::franking::FrankAadError),
    /// The request's authentication is missing, of the wrong kind, or does not verify.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(#[from] AuthenticationFailed),
    /// Rule R-FRAME-5: no (live) group with this ID (wire-format.md §3.7).
    #[error("unknown group")]
    UnknownGroup,
    /// The group ID is empty, already used, or not issued by this DS.
    #[error("invalid group id: {0}")]
    InvalidGroupId(#[from] InvalidGroupId),
    /// The GroupInfo does not verify or does not match the group's state.
    #[error("invalid group info: {0}")]
    InvalidGroupInfo(#[from] InvalidGroupInfo),
    /// Rule R-GI-14: the GroupInfo has no `external_pub` extension (RFC 9420 §12.4.3.2), so nobody
    /// could join or resync from it by external commit (wire-format.md §4.3.2).
    #[error("invalid group info: it has no external_pub extension, which external joins and resyncs need")]
    GroupInfoWithoutExternalPub,
    /// A leaf node or KeyPackage is invalid.
    #[error("invalid leaf node or key package: {0}")]
    InvalidLeafNode(#[from] InvalidLeafNode),
    /// Rule R-LEAF-6: a leaf registers a user authentication key without a valid proof of
    /// possession (wire-format.md §3.5).
    #[error("invalid leaf node: the user authentication key's proof does not verify")]
    InvalidUserKeyProof,
    /// Rule R-LEAF-7: a leaf registers a user authentication key that another user of the group
    /// holds (wire-format.md §3.5: a key belongs to the user that registered it first).
    #[error("not allowed: the user authentication key is registered to another user")]
    UserKeyOfAnotherUser,
    /// Rule R-LEAF-8: a KeyPackage (or a leaf whose source is a KeyPackage) is not valid at the
    /// DS's `now`: its `Lifetime` has not started or has ended (RFC 9420 §7.2, §10.1;
    /// wire-format.md §4.3.3 step 10).
    #[error(
        "KeyPackage lifetime {not_before}..={not_after} (s) does not include now ({now_ms} ms)"
    )]
    KeyPackageLifetime {
        /// The lifetime's `not_before`, in seconds.
        not_before: u64,
        /// The lifetime's `not_after`, in seconds.
        not_after: u64,
        /// The DS's `now`, in milliseconds.
        now_ms: u64,
    },
    /// Rule R-EPOCH-1: the message is for an older epoch (wire-format.md §4.3.3 step 8).
    #[error("message for epoch {message_epoch}, group is at epoch {current}")]
    WrongEpoch {
        /// The group's epoch.
        current: u64,
        /// The message's epoch.
        message_epoch: u64,
    },
    /// Rule R-EPOCH-2: the message is for a newer epoch than the group's (wire-format.md
    /// §4.3.3 step 8).
    #[error("message for future epoch {message_epoch}, group is at epoch {current}")]
    FutureEpoch {
        /// The group's epoch.
        current: u64,
        /// The message's epoch.
        message_epoch: u64,
    },
    /// The sender may not do this.
    #[error("not allowed: {0}")]
    NotAllowed(#[from] NotAllowed),
    /// Rule R-LEAF-9: a client would use another member's queue configuration, so the DS would
    /// deliver one client's traffic to the other's queue (wire-format.md §6.1).
    #[error("not allowed: the queue configuration of leaf {leaf} is another member's")]
    SharedQueueConfig {
        /// The leaf that would take the other member's queue configuration.
        leaf: u32,
    },
    /// Proposals are invalid.
    #[error("invalid proposal: {reason}")]
    InvalidProposal {
        /// The ProposalRefs at fault (may be empty when they cannot be computed).
        refs: Vec<Vec<u8>>,
        /// The rule the proposals break.
        reason: InvalidProposal,
    },
    /// Rule R-PROP-5: a standalone proposal that no commit could carry next to one already pending
    /// (RFC 9420 §12.2; wire-format.md §4.10). Accepting it would leave the group with a pending
    /// set no valid commit covers.
    #[error("proposal conflicts with the pending proposals: {conflict}")]
    ProposalConflict {
        /// Which rule it breaks.
        conflict: ProposalConflict,
        /// The refused proposal's ProposalRef.
        refs: Vec<Vec<u8>>,
    },
    /// Rule R-PROP-6: the group already has [`crate::DsConfig::max_pending_proposals`] pending
    /// proposals
    /// (wire-format.md §4.10).
    #[error("the group already has {limit} pending proposals; a commit must come first")]
    TooManyPendingProposals {
        /// The configured limit.
        limit: usize,
    },
    /// Rule R-COMMIT-7: a commit left out the DS's own pending proposals
    /// (draft-robert-mimi-delivery-service §5.1; wire-format.md §4.3.3).
    #[error("commit omits {} pending proposals", refs.len())]
    MissingPendingProposals {
        /// The ProposalRefs that were left out.
        refs: Vec<Vec<u8>>,
    },
    /// Rule R-MSG-11: Remove proposals the DS issued are pending: application messages wait until a
    /// commit includes them (DS-00 §6; the pending-proposal policy).
    #[error("the hub's Remove proposals are pending; a commit must include them before messages are accepted")]
    HubRemovalsPending,
    /// The MLS message has the wrong wire format or content type for this operation.
    #[error("invalid message type: {0}")]
    InvalidMessageType(#[from] InvalidMessageType),
    /// The MLS message does not validate against the group state.
    #[error("invalid MLS message: {0}")]
    InvalidMlsMessage(#[from] InvalidMlsMessage),
    /// Rule R-FRAME-4: the operation is defined on the wire but this DS does not serve it
    /// (wire-format.md §4.1).
    #[error("operation {0:?} is not served by this delivery service")]
    UnsupportedOperation(DsRequestType),
    /// Storage kept reporting concurrent changes.
    #[error("concurrent modification; retry")]
    Conflict,
    /// The group is in privacy mode and the request carries no state keys (wire-format.md
    /// §17.2, §17.9).
    #[error("the group is in privacy mode: the request must carry its state key")]
    StateKeyMissing,
    /// A keyed request that creates an epoch carries no `next_key` (wire-format.md §17.3).
    #[error("the request creates an epoch and must carry the next epoch's state key")]
    NextStateKeyMissing,
    /// The state key has the group's epoch but is not the group's key (wire-format.md §17.5
    /// step 4), or has the wrong length (step 2).
    #[error("the state key does not open the group's state")]
    StateKeyWrong,
    /// The state key is of another epoch than the group's (wire-format.md §17.5 step 3,
    /// §17.9).
    #[error("the state key is not for the group's current epoch")]
    StateKeyStale,
    /// State keys sent to a group that is not in privacy mode (wire-format.md §17.2).
    #[error("the group is not in privacy mode: the request must not carry state keys")]
    KeysForPlainGroup,
    /// A `next_key` on a request that creates no epoch (wire-format.md §17.3, §17.4).
    #[error("the request creates no epoch and must not carry a next state key")]
    NextStateKeyUnexpected,
    /// A `create_group` whose keys and GroupContext extension 0xF1E6 disagree: keys without
    /// the extension, or the extension without keys (wire-format.md §17.2).
    #[error("create_group: state keys and the privacy-mode extension 0xF1E6 disagree")]
    PrivacyExtensionMismatch,
    /// A commit whose new GroupContext drops or changes extension 0xF1E6 (wire-format.md
    /// §17.2, "no silent exit").
    #[error("a commit must not drop or change the privacy-mode extension 0xF1E6")]
    PrivacyModeDropped,
    /// A ReInit of a privacy-mode group whose successor's extensions lack 0xF1E6: leaving the
    /// mode takes a new group that every member knowingly joins (wire-format.md §17.2).
    #[error("the successor of a privacy-mode group must be in privacy mode too")]
    PlainSuccessor,
}

impl RejectReason {
    /// The wire code of this reason.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) | Self::MalformedFrankAad(_) => ErrorCode::MalformedRequest,
            Self::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Self::TooLarge { .. } => ErrorCode::RequestTooLarge,
            Self::StaleTimestamp { .. } => ErrorCode::StaleTimestamp,
            Self::Replayed => ErrorCode::ReplayedRequest,
            Self::ReplayedMessage => ErrorCode::ReplayedMessage,
            Self::AuthenticationFailed(_) => ErrorCode::AuthenticationFailed,
            Self::UnknownGroup => ErrorCode::UnknownGroup,
            Self::InvalidGroupId(_) => ErrorCode::InvalidGroupId,
            Self::InvalidGroupInfo(_) | Self::GroupInfoWithoutExternalPub => {
                ErrorCode::InvalidGroupInfo
            }
            Self::InvalidLeafNode(_) | Self::InvalidUserKeyProof => {
                ErrorCode::InvalidLeafNodeOrKeyPackage
            }
            Self::KeyPackageLifetime { .. } => ErrorCode::KeyPackageLifetime,
            Self::UserKeyOfAnotherUser => ErrorCode::NotAllowed,
            Self::WrongEpoch { .. } => ErrorCode::WrongEpoch,
            Self::FutureEpoch { .. } => ErrorCode::FutureEpoch,
            Self::NotAllowed(_) | Self::SharedQueueConfig { .. } => ErrorCode::NotAllowed,
            Self::InvalidProposal { .. } | Self::ProposalConflict { .. } => {
                ErrorCode::InvalidProposal
            }
            Self::TooManyPendingProposals { .. } => ErrorCode::TooManyPendingProposals,
            Self::MissingPendingProposals { .. } | Self::HubRemovalsPending => {
                ErrorCode::MissingPendingProposals
            }
            Self::InvalidMessageType(_) => ErrorCode::InvalidMessageType,
            Self::InvalidMlsMessage(_) => ErrorCode::InvalidMlsMessage,
            Self::UnsupportedOperation(_) => ErrorCode::UnsupportedOperation,
            Self::Conflict => ErrorCode::Conflict,
            Self::StateKeyMissing | Self::NextStateKeyMissing => ErrorCode::StateKeyMissing,
            Self::StateKeyWrong => ErrorCode::StateKeyWrong,
            Self::StateKeyStale => ErrorCode::StateKeyStale,
            Self::KeysForPlainGroup
            | Self::NextStateKeyUnexpected
            | Self::PrivacyExtensionMismatch
            | Self::PrivacyModeDropped
            | Self::PlainSuccessor => ErrorCode::StateKeyUnexpected,
        }
    }

    /// The `DSError` sent to the peer.
    pub fn to_wire(&self) -> DsError {
        let details = match self {
            Self::WrongEpoch { current, .. } | Self::FutureEpoch { current, .. } => {
                DsErrorDetails::CurrentEpoch(*current)
            }
            Self::InvalidProposal { refs, .. }
            | Self::ProposalConflict { refs, .. }
            | Self::MissingPendingProposals { refs } => {
                DsErrorDetails::ProposalRefs(refs.iter().cloned().map(VLBytes::from).collect())
            }
            // The code's details are a ref list; the hub's pending removals are listed by
            // `group_info`, so none are repeated here.
            Self::HubRemovalsPending => DsErrorDetails::ProposalRefs(Vec::new()),
            _ => DsErrorDetails::None,
        };
        DsError {
            code: self.code(),
            description: self.to_string().into_bytes().into(),
            details,
        }
    }
}

/// The rules of RFC 9420 §12.2 ("a commit MUST NOT contain ...") that a standalone proposal
/// can break against the proposals already pending in its epoch. The DS refuses such a
/// proposal ([`RejectReason::ProposalConflict`]) rather than store a set no commit can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalConflict {
    /// A Remove (or self-removal) of a leaf a pending proposal already removes: "multiple
    /// Update and/or Remove proposals that apply to the same leaf".
    #[error("a Remove of this leaf is already pending")]
    DuplicateRemove,
    /// An Update of a leaf a pending proposal removes (the same rule; the Remove wins).
    #[error("an Update of a leaf whose Remove is pending")]
    UpdateOfRemovedLeaf,
    /// A second GroupContextExtensions proposal: "multiple GroupContextExtensions proposals".
    #[error("a GroupContextExtensions proposal is already pending")]
    SecondGroupContextExtensions,
    /// A ReInit next to any other proposal: "a ReInit proposal together with any other
    /// proposal".
    #[error("a ReInit must be the only proposal of its commit")]
    ReInitNotAlone,
    /// An AppDataUpdate `remove` of a component another pending AppDataUpdate removes or
    /// updates, or any AppDataUpdate of a component whose `remove` is pending: "a proposal
    /// list is invalid if it includes multiple AppDataUpdate proposals that remove state for
    /// the same component_id, or proposals that both update and remove state for the same
    /// component_id" (draft-ietf-mls-extensions §4.7; wire-format.md §15.7). Only with the
    /// `app-data-update` feature.
    #[error("an AppDataUpdate remove conflicts with a pending AppDataUpdate of that component")]
    AppDataRemoveWithOther,
}

/// Why the Queueing Service refused a request (wire-format.md §10). Every variant leaves
/// storage untouched. The codes are the DS's, so one error body serves both services.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QsRejectReason {
    /// The request bytes do not decode.
    #[error("malformed request: {0}")]
    Malformed(#[from] DecodeError),
    /// The request names a protocol version this QS does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// The request is larger than [`crate::qs::QsConfig::max_request_bytes`].
    #[error("request of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Request size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The request's timestamp is outside the authentication window.
    #[error("timestamp {timestamp_ms} ms is outside the window around {now_ms} ms")]
    StaleTimestamp {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// The QS's `now`.
        now_ms: u64,
    },
    /// Rule R-QS-1: the request's signature does not verify with the queue owner's key
    /// (wire-format.md §10.3).
    #[error("authentication failed: the signature does not verify")]
    SignatureDoesNotVerify,
    /// No queue with this ID.
    #[error("unknown queue")]
    UnknownQueue,
    /// Rule R-QS-4: a delivery names another provider as recipient (forwarding-attack rule,
    /// draft-kohbrok-mimi-transport-00 §"Security considerations").
    #[error("delivery addressed to another provider")]
    WrongRecipient,
    /// Rule R-QS-5: the transport authenticated a different provider than the delivery names as
    /// sender.
    #[error("sender domain does not match the authenticated peer")]
    SenderMismatch,
    /// The request is well formed but not allowed in the queue's state.
    #[error("not allowed: {0}")]
    NotAllowed(#[from] QsNotAllowed),
    /// Storage kept reporting concurrent changes.
    #[error("concurrent modification; retry")]
    Conflict,
    /// A delivery's recipient whose queue holds `max_queue_messages` or `max_queue_bytes`
    /// (wire-format.md §10.2): refused for that recipient only, inside a served delivery.
    #[error("queue full")]
    QueueFull,
    /// A `create_queue` `response_key` that is not an X25519 public key, so the answer cannot
    /// be sealed to it (wire-format.md §10.3).
    #[error("response_key is not an X25519 public key")]
    InvalidResponseKey,
    /// A connection-establishment operation refused by the responder's provider
    /// (wire-format.md §14.3; rules R-CONN-*).
    #[error("connection: {0}")]
    Connection(#[from] crate::connection::ConnectionRefusal),
}

impl QsRejectReason {
    /// The wire code of this reason.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) | Self::InvalidResponseKey => ErrorCode::MalformedRequest,
            Self::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Self::TooLarge { .. } => ErrorCode::RequestTooLarge,
            Self::StaleTimestamp { .. } => ErrorCode::StaleTimestamp,
            Self::SignatureDoesNotVerify | Self::SenderMismatch => ErrorCode::AuthenticationFailed,
            Self::UnknownQueue => ErrorCode::UnknownQueue,
            Self::WrongRecipient | Self::NotAllowed(_) => ErrorCode::NotAllowed,
            Self::Conflict => ErrorCode::Conflict,
            Self::QueueFull => ErrorCode::QueueFull,
            Self::Connection(refusal) => refusal.code(),
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

/// A failure that is not the peer's fault: the only `Err` of
/// [`crate::DeliveryService::process`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError<E: std::error::Error + 'static> {
    /// The storage backend failed. Nothing was written by this request (writes are one atomic
    /// write set), so the request may be retried.
    #[error("storage: {0}")]
    Storage(#[source] E),
    /// mimi-ds or openmls hit a state that should be impossible; a bug worth reporting.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used by the handlers: a step fails either with a reject or with a process error.
#[derive(Debug)]
pub(crate) enum Failure<E: std::error::Error + 'static> {
    Reject(RejectReason),
    Process(ProcessError<E>),
}

impl<E: std::error::Error + 'static> From<RejectReason> for Failure<E> {
    fn from(reason: RejectReason) -> Self {
        Self::Reject(reason)
    }
}

impl<E: std::error::Error + 'static> From<DecodeError> for Failure<E> {
    fn from(e: DecodeError) -> Self {
        Self::Reject(RejectReason::Malformed(e))
    }
}

/// A bug: state that mimi-ds itself wrote or computed does not decode/encode.
pub(crate) fn internal<E: std::error::Error + 'static>(what: impl std::fmt::Display) -> Failure<E> {
    Failure::Process(ProcessError::Internal(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::refusals::every;
    use super::*;
    use crate::wire::encode;

    /// Every reason must produce a `DSError` whose details fit its code, or the error response
    /// could not be encoded and `process` would fail instead of answering.
    #[test]
    fn every_reject_reason_encodes() {
        let mut reasons = vec![
            RejectReason::Malformed(DecodeError::TrailingBytes {
                type_name: "x",
                count: 1,
            }),
            RejectReason::UnsupportedVersion(2),
            RejectReason::TooLarge { size: 2, limit: 1 },
            RejectReason::StaleTimestamp {
                timestamp_ms: 0,
                now_ms: 1,
            },
            RejectReason::Replayed,
            RejectReason::ReplayedMessage,
            RejectReason::MalformedFrankAad(crate::franking::FrankAadError::WrongTagLength(31)),
            RejectReason::UnknownGroup,
            RejectReason::GroupInfoWithoutExternalPub,
            RejectReason::InvalidUserKeyProof,
            RejectReason::UserKeyOfAnotherUser,
            RejectReason::KeyPackageLifetime {
                not_before: 2,
                not_after: 3,
                now_ms: 1,
            },
            RejectReason::WrongEpoch {
                current: 2,
                message_epoch: 1,
            },
            RejectReason::FutureEpoch {
                current: 1,
                message_epoch: 2,
            },
            RejectReason::SharedQueueConfig { leaf: 1 },
            RejectReason::TooManyPendingProposals { limit: 1 },
            RejectReason::MissingPendingProposals {
                refs: vec![vec![1]],
            },
            RejectReason::HubRemovalsPending,
            RejectReason::UnsupportedOperation(DsRequestType::KeyPackages),
            RejectReason::Conflict,
            RejectReason::StateKeyMissing,
            RejectReason::NextStateKeyMissing,
            RejectReason::StateKeyWrong,
            RejectReason::StateKeyStale,
            RejectReason::KeysForPlainGroup,
            RejectReason::NextStateKeyUnexpected,
            RejectReason::PrivacyExtensionMismatch,
            RejectReason::PrivacyModeDropped,
            RejectReason::PlainSuccessor,
        ];
        // Each sub-enum's variants, listed without wildcard in `refusals::every`.
        reasons.extend(every::authentication_failed().into_iter().map(Into::into));
        reasons.extend(every::invalid_group_id().into_iter().map(Into::into));
        reasons.extend(every::invalid_group_info().into_iter().map(Into::into));
        reasons.extend(every::invalid_leaf_node().into_iter().map(Into::into));
        reasons.extend(every::not_allowed().into_iter().map(Into::into));
        reasons.extend(every::invalid_message_type().into_iter().map(Into::into));
        reasons.extend(every::invalid_mls_message().into_iter().map(Into::into));
        reasons.extend(
            every::mls_structure()
                .into_iter()
                .map(|structure| InvalidMlsMessage::Undecodable {
                    structure,
                    detail: "x".into(),
                })
                .map(Into::into),
        );
        reasons.extend(every::invalid_proposal().into_iter().map(|reason| {
            RejectReason::InvalidProposal {
                refs: vec![vec![1]],
                reason,
            }
        }));
        reasons.extend(every::proposal_conflict().into_iter().map(|conflict| {
            RejectReason::ProposalConflict {
                conflict,
                refs: vec![vec![1]],
            }
        }));
        for reason in reasons {
            // A new variant must be added above: this match has no wildcard.
            match reason {
                RejectReason::Malformed(_)
                | RejectReason::UnsupportedVersion(_)
                | RejectReason::TooLarge { .. }
                | RejectReason::StaleTimestamp { .. }
                | RejectReason::Replayed
                | RejectReason::ReplayedMessage
                | RejectReason::MalformedFrankAad(_)
                | RejectReason::AuthenticationFailed(_)
                | RejectReason::UnknownGroup
                | RejectReason::InvalidGroupId(_)
                | RejectReason::InvalidGroupInfo(_)
                | RejectReason::GroupInfoWithoutExternalPub
                | RejectReason::InvalidLeafNode(_)
                | RejectReason::InvalidUserKeyProof
                | RejectReason::UserKeyOfAnotherUser
                | RejectReason::KeyPackageLifetime { .. }
                | RejectReason::WrongEpoch { .. }
                | RejectReason::FutureEpoch { .. }
                | RejectReason::NotAllowed(_)
                | RejectReason::SharedQueueConfig { .. }
                | RejectReason::InvalidProposal { .. }
                | RejectReason::ProposalConflict { .. }
                | RejectReason::TooManyPendingProposals { .. }
                | RejectReason::MissingPendingProposals { .. }
                | RejectReason::HubRemovalsPending
                | RejectReason::InvalidMessageType(_)
                | RejectReason::InvalidMlsMessage(_)
                | RejectReason::UnsupportedOperation(_)
                | RejectReason::Conflict
                | RejectReason::StateKeyMissing
                | RejectReason::NextStateKeyMissing
                | RejectReason::StateKeyWrong
                | RejectReason::StateKeyStale
                | RejectReason::KeysForPlainGroup
                | RejectReason::NextStateKeyUnexpected
                | RejectReason::PrivacyExtensionMismatch
                | RejectReason::PrivacyModeDropped
                | RejectReason::PlainSuccessor => {}
            }
            let error = reason.to_wire();
            assert_eq!(error.code, reason.code());
            assert!(encode(&error).is_ok(), "{reason:?} does not encode");
        }
    }

    /// The same for the Queueing Service, whose reasons share the code table.
    #[test]
    fn every_qs_reject_reason_encodes() {
        let reasons = [
            QsRejectReason::Malformed(DecodeError::TrailingBytes {
                type_name: "x",
                count: 1,
            }),
            QsRejectReason::UnsupportedVersion(2),
            QsRejectReason::TooLarge { size: 2, limit: 1 },
            QsRejectReason::StaleTimestamp {
                timestamp_ms: 0,
                now_ms: 1,
            },
            QsRejectReason::SignatureDoesNotVerify,
            QsRejectReason::UnknownQueue,
            QsRejectReason::WrongRecipient,
            QsRejectReason::SenderMismatch,
            QsRejectReason::Conflict,
            QsRejectReason::QueueFull,
            QsRejectReason::InvalidResponseKey,
        ]
        .into_iter()
        .chain(every::qs_not_allowed().into_iter().map(Into::into))
        .chain(crate::connection::ConnectionRefusal::all().map(Into::into))
        .collect::<Vec<_>>();
        for reason in &reasons {
            // A new variant must be added above: this match has no wildcard.
            match reason {
                QsRejectReason::Malformed(_)
                | QsRejectReason::UnsupportedVersion(_)
                | QsRejectReason::TooLarge { .. }
                | QsRejectReason::StaleTimestamp { .. }
                | QsRejectReason::SignatureDoesNotVerify
                | QsRejectReason::UnknownQueue
                | QsRejectReason::WrongRecipient
                | QsRejectReason::SenderMismatch
                | QsRejectReason::NotAllowed(_)
                | QsRejectReason::Conflict
                | QsRejectReason::QueueFull
                | QsRejectReason::InvalidResponseKey
                | QsRejectReason::Connection(_) => {}
            }
            let error = reason.to_wire();
            assert_eq!(error.code, reason.code());
            assert!(encode(&error).is_ok(), "{reason:?} does not encode");
        }
    }
}
