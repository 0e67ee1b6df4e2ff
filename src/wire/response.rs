//! `DSResponse`, its bodies and `DSError` (wire-format.md §5).

use tls_codec::{
    DeserializeBytes, Serialize, Size, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes,
};

use super::raw::{MlsMessageBytes, RatchetTreeBytes};

/// `DSResponse { DSProtocolVersion version; DSResponseBody body; }` (DS-03/04).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DsResponse {
    /// `DSProtocolVersion`.
    pub version: u16,
    /// The answer.
    pub body: DsResponseBody,
}

/// `DSResponseBody`, selected by a uint8 `DSResponseType`. Values 0–5 follow DS-03/04's
/// declaration order; 6 and 7 (`key_packages`, `connection_key_packages`) are reserved because
/// this crate does not serve KeyPackages; 8 is mimi-ds's acceptance receipt.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum DsResponseBody {
    /// `ok(0)`: `struct {}`, for requests that change state without producing a message.
    #[tls_codec(discriminant = 0)]
    Ok,
    /// `error(1)`.
    #[tls_codec(discriminant = 1)]
    Error(DsError),
    /// `group_id(2)`: a fresh group ID reserved for the requester.
    #[tls_codec(discriminant = 2)]
    GroupId(VLBytes),
    /// `welcome_info(3)`.
    #[tls_codec(discriminant = 3)]
    WelcomeInfo(WelcomeInfo),
    /// `external_commit_info(4)`.
    #[tls_codec(discriminant = 4)]
    ExternalCommitInfo(ExternalCommitInfo),
    /// `signature_public_key(5)`: the DS's external-sender signature public key.
    #[tls_codec(discriminant = 5)]
    SignaturePublicKey(VLBytes),
    /// `accepted(8)`: the DS accepted a message and ordered it.
    #[tls_codec(discriminant = 8)]
    Accepted(AcceptedMessage),
    /// `encrypted_external_commit_info(9)`: an [`ExternalCommitInfo`] encrypted to the
    /// requester's key (draft-ietf-mimi-protocol-06 `encrypted_groupinfo_and_tree`).
    #[tls_codec(discriminant = 9)]
    EncryptedExternalCommitInfo(HpkeCiphertext),
    /// `identity_link_keys(24)`: a pseudonymous group's wrapped identity link keys per leaf
    /// (wire-format.md §14.2).
    #[tls_codec(discriminant = 24)]
    IdentityLinkKeys(crate::pseudonym::IdentityLinkKeys),
}

/// The label of [`DsResponseBody::EncryptedExternalCommitInfo`]: `EncryptWithLabel(key,
/// "GroupInfo and ratchet_tree encryption", group_id, ExternalCommitInfo)` (RFC 9420 §5.1.3;
/// draft-ietf-mimi-protocol-06, with the group ID as the room ID).
pub const GROUP_INFO_ENCRYPTION_LABEL: &str = "GroupInfo and ratchet_tree encryption";

/// `HPKECiphertext { opaque kem_output<V>; opaque ciphertext<V>; }` (RFC 9420 §5.1.3).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct HpkeCiphertext {
    /// The HPKE encapsulated key.
    pub kem_output: VLBytes,
    /// The sealed `ExternalCommitInfo`.
    pub ciphertext: VLBytes,
}

/// RFC 9420 §5.1.3 `EncryptContext { opaque label<V> = "MLS 1.0 " + Label; opaque context<V>; }`,
/// the HPKE `info` of `EncryptWithLabel`.
pub fn encrypt_context(label: &str, context: &[u8]) -> Result<Vec<u8>, tls_codec::Error> {
    let mut full = b"MLS 1.0 ".to_vec();
    full.extend_from_slice(label.as_bytes());
    (VLBytes::from(full), VLBytes::from(context.to_vec())).tls_serialize_detached()
}

/// `AcceptedMessage`: the receipt for an accepted handshake or application message; the same
/// values are carried in its fanout ([`super::FanoutMessage`]).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct AcceptedMessage {
    /// Per-group sequence number, starting at 0 with the group's creation and increasing by
    /// one with every accepted message, so receivers can detect gaps.
    pub sequence_number: u64,
    /// The hub's acceptance time, ms since the UNIX epoch (draft-ietf-mimi-protocol
    /// `accepted_timestamp`).
    pub accepted_time_ms: u64,
    /// The group's epoch after the message was accepted.
    pub epoch: u64,
    /// For a commit: the proposals the DS issued in the new epoch (also stapled to the commit's
    /// fanout); the committer's next commit must include them.
    pub external_proposals: Vec<MlsMessageBytes>,
}

/// `WelcomeInfo { optional<Node> ratchet_tree<V>; }` (DS-03..06).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct WelcomeInfo {
    /// The ratchet tree of the epoch the joiner was added in.
    pub ratchet_tree: RatchetTreeBytes,
}

/// `PendingProposal` (draft-ietf-mimi-protocol-06 `GroupInfoRatchetTreeTBE`).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct PendingProposal {
    /// The proposal, as the DS accepted it.
    pub proposal: MlsMessageBytes,
    /// When the DS accepted it, ms since the UNIX epoch.
    pub hub_accepted_time: u64,
}

/// `ExternalCommitInfo` (DS-03..06, with the pending proposals of draft-ietf-mimi-protocol-06).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ExternalCommitInfo {
    /// The current epoch's GroupInfo.
    pub group_info: MlsMessageBytes,
    /// The current ratchet tree.
    pub ratchet_tree: RatchetTreeBytes,
    /// Proposals pending in the current epoch.
    pub pending_proposals: Vec<PendingProposal>,
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal => $wire:literal,)*) => {
        /// `DSErrorCode` (uint16): what was wrong with a request. The single table of codes;
        /// [`crate::RejectReason::code`] is the single place reasons map onto it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ErrorCode {
            /// All codes, in wire order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code's name as written in wire-format.md.
            pub fn name(self) -> &'static str {
                match self { $(ErrorCode::$name => $wire,)* }
            }

            /// The code for a uint16, if it is defined.
            pub fn from_u16(value: u16) -> Option<Self> {
                match value { $($value => Some(ErrorCode::$name),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// The group ID is empty, in use, or was not issued by this DS.
    InvalidGroupId = 0 => "invalid_group_id",
    /// A leaf node or KeyPackage failed validation (RFC 9420 §7.3, §10.1).
    InvalidLeafNodeOrKeyPackage = 1 => "invalid_leaf_node_or_key_package",
    /// The GroupInfo is missing, does not verify, or does not match the group's state.
    InvalidGroupInfo = 2 => "invalid_group_info",
    /// The message is for an epoch older than the current one; details carry the current epoch.
    WrongEpoch = 3 => "wrong_epoch",
    /// The operation is not permitted for this sender or in this group.
    NotAllowed = 4 => "not_allowed",
    /// Proposals were invalid; details carry their ProposalRefs.
    InvalidProposal = 5 => "invalid_proposal",
    /// No group with that ID exists here (or it was deleted).
    UnknownGroup = 6 => "unknown_group",
    /// The request's authentication did not verify.
    AuthenticationFailed = 7 => "authentication_failed",
    /// The MLS message has the wrong wire format or content type for the operation.
    InvalidMessageType = 8 => "invalid_message_type",
    /// A commit left out the DS's own pending proposals (wire-format.md §4.3.3), or an
    /// application message came while DS removals are pending; details carry the missing refs.
    MissingPendingProposals = 9 => "missing_pending_proposals",
    /// The request was already seen within the authentication window.
    ReplayedRequest = 10 => "replayed_request",
    /// The request's timestamp is outside the authentication window.
    StaleTimestamp = 11 => "stale_timestamp",
    /// The message is for an epoch newer than the current one; details carry the current epoch.
    FutureEpoch = 12 => "future_epoch",
    /// The request could not be decoded.
    MalformedRequest = 13 => "malformed_request",
    /// The request's `DSProtocolVersion` is not supported.
    UnsupportedVersion = 14 => "unsupported_version",
    /// The request exceeds a configured size limit.
    RequestTooLarge = 15 => "request_too_large",
    /// The operation is defined on the wire but not served by this DS.
    UnsupportedOperation = 16 => "unsupported_operation",
    /// An MLS message failed validation against the group state (RFC 9420 §6, §12.4.2).
    InvalidMlsMessage = 17 => "invalid_mls_message",
    /// Storage reported a concurrent change more often than the configured retries; retry.
    Conflict = 18 => "conflict",
    /// Queueing Service: no queue with this ID (wire-format.md §10.3).
    UnknownQueue = 19 => "unknown_queue",
    /// The group already has as many pending proposals as the DS keeps per epoch
    /// ([`crate::DsConfig::max_pending_proposals`]); commit, then propose again.
    TooManyPendingProposals = 20 => "too_many_pending_proposals",
    /// An added KeyPackage (or a KeyPackage-sourced leaf) is not valid at the DS's `now`
    /// (RFC 9420 §7.2 `Lifetime`).
    KeyPackageLifetime = 21 => "key_package_lifetime",
    /// An application message whose ciphertext the DS already accepted (wire-format.md §4.8).
    ReplayedMessage = 22 => "replayed_message",
    /// Queueing Service: the recipient's queue holds as many messages or bytes as its provider
    /// allows; temporary (wire-format.md §6.3, §10.2).
    QueueFull = 23 => "queue_full",
}

/// Code-specific details of a [`DsError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DsErrorDetails {
    /// No details.
    None,
    /// `wrong_epoch`, `future_epoch`: `uint64 current_epoch`.
    CurrentEpoch(u64),
    /// `invalid_proposal`, `missing_pending_proposals`: `ProposalRef proposal_refs<V>`.
    ProposalRefs(Vec<VLBytes>),
}

/// `DSError { uint16 code; opaque description<V>; select (code) details; }` (docs/decisions.md D6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsError {
    /// What went wrong.
    pub code: ErrorCode,
    /// Human-readable detail for logs; never parsed.
    pub description: VLBytes,
    /// Code-specific details; their shape is fixed by `code`.
    pub details: DsErrorDetails,
}

impl DsError {
    fn details_shape(code: ErrorCode) -> u8 {
        match code {
            ErrorCode::WrongEpoch | ErrorCode::FutureEpoch => 1,
            ErrorCode::InvalidProposal | ErrorCode::MissingPendingProposals => 2,
            _ => 0,
        }
    }
}

impl Size for DsError {
    fn tls_serialized_len(&self) -> usize {
        2 + self.description.tls_serialized_len()
            + match &self.details {
                DsErrorDetails::None => 0,
                DsErrorDetails::CurrentEpoch(_) => 8,
                DsErrorDetails::ProposalRefs(refs) => refs.tls_serialized_len(),
            }
    }
}

impl Serialize for DsError {
    fn tls_serialize<W: std::io::Write>(&self, w: &mut W) -> Result<usize, tls_codec::Error> {
        let shape_ok = matches!(
            (Self::details_shape(self.code), &self.details),
            (0, DsErrorDetails::None)
                | (1, DsErrorDetails::CurrentEpoch(_))
                | (2, DsErrorDetails::ProposalRefs(_))
        );
        if !shape_ok {
            return Err(tls_codec::Error::EncodingError(format!(
                "details do not match error code {}",
                self.code.name()
            )));
        }
        let mut n = (self.code as u16).tls_serialize(w)?;
        n += self.description.tls_serialize(w)?;
        n += match &self.details {
            DsErrorDetails::None => 0,
            DsErrorDetails::CurrentEpoch(epoch) => epoch.tls_serialize(w)?,
            DsErrorDetails::ProposalRefs(refs) => refs.tls_serialize(w)?,
        };
        Ok(n)
    }
}

impl DeserializeBytes for DsError {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (raw_code, rest) = u16::tls_deserialize_bytes(bytes)?;
        let code =
            ErrorCode::from_u16(raw_code).ok_or(tls_codec::Error::UnknownValue(raw_code.into()))?;
        let (description, rest) = VLBytes::tls_deserialize_bytes(rest)?;
        let (details, rest) = match Self::details_shape(code) {
            1 => {
                let (epoch, rest) = u64::tls_deserialize_bytes(rest)?;
                (DsErrorDetails::CurrentEpoch(epoch), rest)
            }
            2 => {
                let (refs, rest) = Vec::<VLBytes>::tls_deserialize_bytes(rest)?;
                (DsErrorDetails::ProposalRefs(refs), rest)
            }
            _ => (DsErrorDetails::None, rest),
        };
        Ok((
            Self {
                code,
                description,
                details,
            },
            rest,
        ))
    }
}
