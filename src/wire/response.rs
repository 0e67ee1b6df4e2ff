//! `DSResponse`, its bodies and `DSError` (wire-format.md §5).

use tls_codec::{
    DeserializeBytes, Serialize, Size, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes,
};

use super::raw::{GroupInfoBytes, MlsMessageBytes, RatchetTreeBytes};

/// `DSResponse { DSProtocolVersion version; DSResponseBody body; }` (DS-03/04).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DsResponse {
    /// `DSProtocolVersion`.
    pub version: u16,
    /// The answer.
    pub body: DsResponseBody,
}

/// `DSResponseBody`, selected by a uint8 `DSResponseType`. Values 0–5 follow DS-03/04's
/// declaration order; 6 and 7 (`key_packages`, `connection_key_packages`) answer a claim at a
/// provider's KeyPackage directory (wire-format.md §14.4); 8 is mimi-ds's acceptance receipt.
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
    /// `key_packages(6)`: the group KeyPackage set a `key_packages(12)` claim got from a
    /// provider's directory.
    #[tls_codec(discriminant = 6)]
    KeyPackages(ClaimedKeyPackageSet),
    /// `connection_key_packages(7)`: the connection KeyPackage set a
    /// `connection_key_packages(13)` claim got.
    #[tls_codec(discriminant = 7)]
    ConnectionKeyPackages(ClaimedKeyPackageSet),
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
    /// For an application message carrying a franking tag, at a hub that franks: the hub's
    /// frank (draft-ietf-mimi-protocol-06 `SubmitMessageResponse.frank`; wire-format.md §15.5).
    /// `None` for everything else.
    pub frank: Option<super::Frank>,
}

/// `ClaimedKeyPackageSet` (wire-format.md §14.4): one KeyPackage per client of a user, all with
/// the same user pseudonym, for one group.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ClaimedKeyPackageSet {
    /// The user pseudonym every KeyPackage's credential carries.
    pub user_pseudonym: VLBytes,
    /// Whether this is a last-resort set: it stays in the directory and may be handed out
    /// again, so its pseudonym may show up in another group (wire-format.md §14.4).
    pub last_resort: LastResort,
    /// The KeyPackages, each an `MLSMessage` of wire format `mls_key_package`, in client-slot
    /// order.
    pub key_packages: Vec<MlsMessageBytes>,
}

/// `LastResort` (uint8): whether a KeyPackage set is a last-resort set (wire-format.md §14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
pub enum LastResort {
    /// `no(0)`: the set was consumed by the claim.
    No = 0,
    /// `yes(1)`: the set stays and may be handed out again.
    Yes = 1,
}

impl From<bool> for LastResort {
    fn from(last_resort: bool) -> Self {
        if last_resort {
            Self::Yes
        } else {
            Self::No
        }
    }
}

impl LastResort {
    /// Whether it is `yes(1)`.
    pub fn is_last_resort(self) -> bool {
        self == Self::Yes
    }
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

/// The `https_uri(2)` case of a [`RatchetTreeOption`]: `opaque ratchet_tree_url<V>; opaque
/// tree_signature<V>;`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct RatchetTreeUrl {
    /// Where the tree can be fetched.
    pub ratchet_tree_url: VLBytes,
    /// The signature over the tree.
    pub tree_signature: VLBytes,
}

/// `RatchetTreeOption` (draft-mahy-mls-ratchet-tree-options, a normative reference of
/// draft-ietf-mimi-protocol-06), selected by a uint8 `RatchetTreeRepresentation`. The hub always
/// answers `full(1)`; the other cases decode so that an answer from another hub is read
/// strictly (wire-format.md §5.4).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum RatchetTreeOption {
    /// `full(1)`: `Node ratchet_tree<V>`, the whole tree.
    #[tls_codec(discriminant = 1)]
    Full(RatchetTreeBytes),
    /// `https_uri(2)`: a URL to fetch the tree from, and its signature.
    #[tls_codec(discriminant = 2)]
    HttpsUri(RatchetTreeUrl),
    /// `out_of_band(3)`: `opaque tree_signature<V>`.
    #[tls_codec(discriminant = 3)]
    OutOfBand(VLBytes),
    /// `distribution_service(4)`: `struct {}`, the tree is the DS's to give.
    #[tls_codec(discriminant = 4)]
    DistributionService,
}

/// The answer to `group_info` (wire-format.md §5.4): draft-ietf-mimi-protocol-06
/// `GroupInfoRatchetTreeTBE`, exactly. The response type keeps its DS-03..06 name
/// `external_commit_info(4)`; its layout is the MP-06 one since mimi-ds 0.1 (the earlier
/// `{ MLSMessage group_info; optional<Node> ratchet_tree<V>; PendingProposal
/// pending_proposals<V>; }` is gone, not versioned).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ExternalCommitInfo {
    /// The current epoch's GroupInfo, bare (no `MLSMessage` framing), as the committer gave it
    /// (without a `ratchet_tree` extension, MP-06).
    pub group_info: GroupInfoBytes,
    /// The current ratchet tree; the hub always sends [`RatchetTreeOption::Full`].
    pub ratchet_tree_option: RatchetTreeOption,
    /// Proposals pending in the current epoch, with the hub's acceptance times.
    pub pending_proposals: Vec<PendingProposal>,
}

/// draft-ietf-mimi-protocol-06's name of [`ExternalCommitInfo`].
pub type GroupInfoRatchetTreeTbe = ExternalCommitInfo;

impl ExternalCommitInfo {
    /// The tree when it is carried in full (`full(1)`), as the hub sends it.
    pub fn ratchet_tree(&self) -> Option<&RatchetTreeBytes> {
        match &self.ratchet_tree_option {
            RatchetTreeOption::Full(tree) => Some(tree),
            _ => None,
        }
    }

    /// The GroupInfo as an `MLSMessage` (`mls10`, `mls_group_info`), the form openmls's
    /// external-commit builder and the `external_join` request take.
    pub fn group_info_message(&self) -> Result<MlsMessageBytes, super::DecodeError> {
        let mut message = GROUP_INFO_MESSAGE_HEADER.to_vec();
        message.extend_from_slice(self.group_info.as_bytes());
        MlsMessageBytes::from_bytes(message)
    }
}

/// The `MLSMessage` framing of a GroupInfo: `ProtocolVersion mls10(1)`, `WireFormat
/// mls_group_info(4)` (RFC 9420 §6, §17.2).
pub const GROUP_INFO_MESSAGE_HEADER: [u8; 4] = [0, 1, 0, 4];

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
    /// KeyPackage directory: no KeyPackage was ever uploaded under this connection token
    /// (wire-format.md §14.4).
    UnknownConnectionToken = 28 => "unknown_connection_token",
    /// KeyPackage directory: the token has no complete, valid set of the kind claimed left,
    /// not even a last-resort one (wire-format.md §14.4).
    KeyPackagesExhausted = 29 => "key_packages_exhausted",
    /// KeyPackage directory: an upload breaks the rules of KeyPackage sets (a slot taken, a
    /// pseudonym used by another set, sizes or kinds that disagree, too many sets; §14.4).
    InvalidKeyPackageSet = 30 => "invalid_key_package_set",
    /// Privacy mode: a request about a privacy-mode group carries no state keys, or a keyed
    /// request that creates an epoch has no `next_key` (wire-format.md §17.9).
    StateKeyMissing = 43 => "state_key_missing",
    /// Privacy mode: the state key has the group's epoch but is not the group's key
    /// (wire-format.md §17.9).
    StateKeyWrong = 44 => "state_key_wrong",
    /// Privacy mode: the state key is of another epoch than the group's (wire-format.md §17.9).
    StateKeyStale = 45 => "state_key_stale",
    /// Privacy mode: keys sent to a plain group, a `next_key` where no epoch is created, or a
    /// request that would move a group in or out of the mode (wire-format.md §17.2, §17.9).
    StateKeyUnexpected = 46 => "state_key_unexpected",
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
