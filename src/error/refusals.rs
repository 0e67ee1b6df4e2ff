//! The named rules behind the refusal codes that cover many rules: one variant per rule, as
//! rustls's `PeerMisbehaved` names each way a peer can misbehave.
//!
//! Each variant names the rule it enforces by its ID (`R-AUTH-1`, ...), which the table in
//! docs/wire-format.md §13 ("Rules") maps to the function that checks it and the test that
//! proves the refusal; the check site cites the same ID. IDs are grouped by the part of the
//! protocol they belong to: `R-AUTH` authentication (§3), `R-GID` group IDs (§4.2, §8), `R-GI`
//! GroupInfos (§4.3), `R-LEAF` leaf nodes and KeyPackages, `R-MSG` the kind of an embedded
//! MLS message, `R-MLS` MLS validation, `R-COMMIT` commits (§4.3.3), `R-OP` operation rules
//! (§4.3.4), `R-JOIN` external joins (§4.4.4), `R-PROP` standalone proposals (§4.10), `R-HUB`
//! server events (§7) and `R-QS` the Queueing Service (§10).
//!
//! Where the detail comes from elsewhere (an openmls validation error, a decode error, the
//! deployment's credential validator), the variant still names the rule or stage and carries
//! that detail as a field: the variant, not the text, is the reason.

use crate::identity::CredentialRejection;
use crate::policy::{PolicyDefect, PolicyViolation};
use crate::wire::DecodeError;

/// Why a request's authentication was refused (code `authentication_failed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthenticationFailed {
    /// Rule R-AUTH-1: the operation needs a `ClientSignature` and the request carries none
    /// (wire-format.md §3.6).
    #[error("a ClientSignature is required")]
    ClientSignatureRequired,
    /// Rule R-AUTH-2: the `ClientSignature` does not verify with the key of the sender it names
    /// (wire-format.md §3.2).
    #[error("the signature does not verify")]
    SignatureDoesNotVerify,
    /// Rule R-AUTH-3: the operation only accepts a `leaf_index` sender (wire-format.md §3.6).
    #[error("this operation needs a leaf_index sender")]
    LeafIndexSenderRequired,
    /// Rule R-AUTH-4: no member sits at the sender's `leaf_index` (wire-format.md §3.7).
    #[error("no member at the sender's leaf")]
    NoMemberAtLeaf,
    /// Rule R-AUTH-5: a `user_key_hash` sender names no single registered user key
    /// (wire-format.md §3.5).
    #[error("no single user key with that hash is registered")]
    UnknownUserKey,
    /// Rule R-AUTH-6: `create_group`: the creator's leaf in the validated tree is not the one
    /// whose key the `ClientSignature` was checked against (wire-format.md §4.2).
    #[error("the sender's leaf is not the one the signature was checked against")]
    CreatorLeafMismatch,
    /// Rule R-AUTH-7: `external_join` carries a `ClientSignature`; the external commit itself
    /// authenticates the joiner (wire-format.md §4.4.4 step 1).
    #[error("external joins are authenticated by the commit itself")]
    ExternalJoinSigned,
    /// Rule R-AUTH-8: an unauthenticated `group_info` request while
    /// `DsConfig::group_info_access` requires members or users (wire-format.md §4.11).
    #[error("group_info needs a request signed by a member or a user of the group")]
    GroupInfoNeedsSignature,
    /// Rule R-AUTH-9: `welcome_info` needs a `key_package_ref` sender (wire-format.md §4.12).
    #[error("welcome_info needs a key_package_ref sender")]
    KeyPackageRefSenderRequired,
    /// Rule R-AUTH-10: no Welcome is pending for the sender's KeyPackageRef at that epoch, so
    /// no key authenticates it (wire-format.md §4.12).
    #[error("no pending Welcome for this KeyPackageRef at that epoch")]
    NoPendingWelcome,
}

/// Why a group ID was refused (code `invalid_group_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidGroupId {
    /// Rule R-GID-1: the `ClientSignature` names another group than the request
    /// (wire-format.md §4.2 step 2, §4.11 step 2).
    #[error("the signature is for another group")]
    SignedForAnotherGroup,
    /// Rule R-GID-2: `create_group` for an ID this DS never issued (wire-format.md §4.2 step 4,
    /// §8).
    #[error("not issued by this DS")]
    NotIssued,
    /// Rule R-GID-3: `create_group` for an ID already used by a group (wire-format.md §4.2
    /// step 5).
    #[error("already in use")]
    AlreadyInUse,
    /// Rule R-GID-4: `create_group` after the ID's reservation expired (wire-format.md §4.2
    /// step 6, §8).
    #[error("reservation expired")]
    ReservationExpired,
    /// Rule R-GID-5: an embedded MLS message is for another group than the request
    /// (wire-format.md §4.3.3 step 7, §4.8 step 8, §4.10 step 9).
    #[error("the MLS message is for another group")]
    MessageForAnotherGroup,
    /// Rule R-GID-6: a ReInit names a group ID this DS has not reserved, so the successor could
    /// not be created here (wire-format.md §4.4.3; DS-03 §"Re-initialize group").
    #[error("the ReInit names a group ID this DS has not reserved")]
    ReInitTargetNotReserved,
}

/// Why a GroupInfo was refused (code `invalid_group_info`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidGroupInfo {
    /// Rule R-GI-1: `create_group`'s GroupInfo is for another group than the request
    /// (wire-format.md §4.2 step 8).
    #[error("the GroupInfo is for another group")]
    ForAnotherGroup,
    /// Rule R-GI-2: `create_group`'s GroupInfo is not signed by the requester's leaf
    /// (wire-format.md §4.2 step 10).
    #[error("the GroupInfo is not signed by the requester")]
    NotSignedByRequester,
    /// Rule R-GI-3: the GroupInfo and ratchet tree do not validate together (RFC 9420
    /// §12.4.3.1, checked by openmls `PublicGroup::from_external`; wire-format.md §4.2 step 13).
    #[error("the GroupInfo and tree do not validate: {detail}")]
    DoesNotValidate {
        /// openmls's error.
        detail: String,
    },
    /// Rule R-GI-4: the group's `external_senders` extension does not name this DS
    /// (RFC 9420 §12.1.8.1; wire-format.md §4.2 step 14).
    #[error("the group's external_senders extension does not name this DS")]
    DsNotExternalSender,
    /// Rule R-GI-5: a PartialGroupInfo whose `ratchet_tree_presence` is not
    /// `no_ratchet_tree(0)` (wire-format.md §4.3).
    #[error("PartialGroupInfo ratchet_tree_presence must be no_ratchet_tree(0)")]
    PartialWithRatchetTree,
    /// Rule R-GI-6: a PartialGroupInfo's extensions are not valid GroupInfo extensions
    /// (RFC 9420 §13.4; wire-format.md §4.3.1).
    #[error("the PartialGroupInfo extensions are invalid: {detail}")]
    PartialExtensions {
        /// The codec's error.
        detail: String,
    },
    /// Rule R-GI-7: the GroupInfo of a commit is not signed by the committer (or the joiner of
    /// an external commit) (wire-format.md §4.3.2).
    #[error("the GroupInfo is not signed by the committer")]
    NotSignedByCommitter,
    /// Rule R-GI-8: the GroupInfo's GroupContext or confirmation tag differ from the group's
    /// state after the commit (RFC 9420 §12.4.3; wire-format.md §4.3.2).
    #[error("the GroupInfo does not match the group state after the commit")]
    DoesNotMatchState,
    /// Rule R-GI-9: the GroupInfo's signer is not a member after the commit
    /// (wire-format.md §4.3.2).
    #[error("the GroupInfo signer is not a member")]
    SignerNotMember,
    /// Rule R-GI-10: the GroupInfo's signature does not verify with the signer's leaf key
    /// (RFC 9420 §12.4.3; wire-format.md §4.3.2).
    #[error("the GroupInfo signature does not verify")]
    SignatureDoesNotVerify,
    /// Rule R-GI-11: an external commit's full GroupInfo is not for the group and epoch the
    /// commit creates (RFC 9420 §12.4.3; wire-format.md §4.4.4 step 5).
    #[error("the GroupInfo is not for the group and epoch the commit creates")]
    NotForCommitEpoch,
    /// Rule R-GI-12: the GroupInfo does not encode again, so its signed content cannot be
    /// rebuilt (RFC 9420 §12.4.3 `GroupInfoTBS`; wire-format.md §4.3.2).
    #[error("the GroupInfo does not encode: {detail}")]
    Unencodable {
        /// The codec's error.
        detail: String,
    },
    /// Rule R-GI-13: the GroupInfo's signed content is too short to hold its `signer`
    /// (RFC 9420 §12.4.3 `GroupInfoTBS`).
    #[error("the GroupInfo is too short to name its signer")]
    TooShort,
    /// The room policy in the GroupContext is malformed or contradicts itself
    /// (wire-format.md §15.1; rules R-POL-20 to R-POL-26, one [`PolicyDefect`] each).
    #[error("room policy: {0}")]
    RoomPolicy(PolicyDefect),
}

/// Why a leaf node or KeyPackage was refused (code `invalid_leaf_node_or_key_package`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLeafNode {
    /// Rule R-LEAF-1: the deployment's [`crate::CredentialValidator`] refuses the leaf's
    /// credential (DS-04 §"Update client": "the DS MUST validate the new credential";
    /// wire-format.md §4.2 step 16, §4.3.3 steps 12, 19).
    #[error("{0}")]
    CredentialRejected(CredentialRejection),
    /// Rule R-LEAF-2: the leaf lacks the `ClientQueueConfig` extension (wire-format.md §6.1).
    #[error("the leaf lacks the client queue configuration extension")]
    MissingQueueConfig,
    /// Rule R-LEAF-3: the leaf's `ClientQueueConfig` extension does not decode
    /// (wire-format.md §6.1).
    #[error("the queue configuration does not decode: {0}")]
    QueueConfigUndecodable(DecodeError),
    /// Rule R-LEAF-4: the leaf's user authentication key extension does not decode
    /// (wire-format.md §3.5).
    #[error("the user authentication key does not decode: {0}")]
    UserKeyUndecodable(DecodeError),
    /// Rule R-LEAF-5: openmls lists a member whose leaf it cannot return; refused rather than
    /// stored (RFC 9420 §7.8: every member has a leaf).
    #[error("member without leaf")]
    MemberWithoutLeaf,
    /// Rules R-PSEUDO-1 to R-PSEUDO-9: a pseudonymous credential, or a leaf of a pseudonymous
    /// group, that the hub refuses (wire-format.md §14.1).
    #[error("{0}")]
    Pseudonymous(crate::pseudonym::InvalidPseudonymousCredential),
}

/// Why an embedded MLS message has the wrong kind for its field (code
/// `invalid_message_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMessageType {
    /// Rule R-MSG-1: a handshake message sent as a PrivateMessage, which the DS could not
    /// validate (RFC 9420 §6.2; wire-format.md §4.3.3 step 6, §4.10 step 8).
    #[error("handshake messages must be PublicMessages")]
    HandshakeNotPublic,
    /// Rule R-MSG-2: the field needs a PublicMessage and holds another wire format
    /// (RFC 9420 §6; wire-format.md §4.3.3 step 6).
    #[error("expected a PublicMessage")]
    ExpectedPublicMessage,
    /// Rule R-MSG-3: the field needs a commit (RFC 9420 §6 `content_type`;
    /// wire-format.md §4.3.3 step 6, §4.4.4 step 3).
    #[error("expected a commit")]
    ExpectedCommit,
    /// Rule R-MSG-4: the field needs a proposal (RFC 9420 §6 `content_type`;
    /// wire-format.md §4.10 step 8).
    #[error("expected a proposal")]
    ExpectedProposal,
    /// Rule R-MSG-5: an application message that is not a PrivateMessage (RFC 9420 §6.3;
    /// wire-format.md §4.8 step 6).
    #[error("application messages must be PrivateMessages")]
    ApplicationNotPrivate,
    /// Rule R-MSG-6: `send_message` carries a PrivateMessage whose content type is not
    /// application (wire-format.md §4.8 step 7).
    #[error("expected content type application")]
    ExpectedApplication,
    /// Rule R-MSG-7: `external_join` needs a commit by a `new_member_commit` sender
    /// (RFC 9420 §12.4.3.2; wire-format.md §4.4.4 step 4).
    #[error("external_join needs a new_member_commit")]
    ExpectedNewMemberCommit,
    /// Rule R-MSG-8: a `welcome_messages` entry that is not a Welcome (RFC 9420 §12.4.3.1;
    /// wire-format.md §4.3.3 step 16).
    #[error("expected a Welcome")]
    ExpectedWelcome,
    /// Rule R-MSG-9: a GroupInfo field holding an MLSMessage that is not a GroupInfo
    /// (RFC 9420 §6; wire-format.md §4.2 step 7, §4.3.2 a).
    #[error("expected an MLSMessage carrying a GroupInfo")]
    ExpectedGroupInfo,
}

/// Which MLS structure did not decode again (see [`InvalidMlsMessage::Undecodable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlsStructure {
    /// A `PublicMessage` (RFC 9420 §6.2).
    PublicMessage,
    /// A commit's proposal list (RFC 9420 §12.4).
    Commit,
    /// A proposal (RFC 9420 §12.1).
    Proposal,
    /// An Add proposal (RFC 9420 §12.1.1).
    AddProposal,
    /// A KeyPackage (RFC 9420 §10).
    KeyPackage,
    /// A leaf node (RFC 9420 §7.2).
    LeafNode,
    /// A proposal the DS stored as pending (wire-format.md §4.10).
    StoredProposal,
}

impl std::fmt::Display for MlsStructure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PublicMessage => "a PublicMessage",
            Self::Commit => "a commit",
            Self::Proposal => "a proposal",
            Self::AddProposal => "an Add proposal",
            Self::KeyPackage => "a KeyPackage",
            Self::LeafNode => "a leaf node",
            Self::StoredProposal => "a stored proposal",
        })
    }
}

/// Why an MLS handshake message does not validate (code `invalid_mls_message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMlsMessage {
    /// Rule R-MLS-1: openmls `PublicGroup::process_message` refuses the proposal or commit
    /// against the group's state (RFC 9420 §6, §12; wire-format.md §4.3.3 step 10, §4.4.4
    /// step 10, §4.10 step 12).
    #[error("{detail}")]
    Validation {
        /// openmls's error.
        detail: String,
    },
    /// Rule R-MLS-2: an external commit without an update path (RFC 9420 §12.4.3.2: "the
    /// commit MUST contain a path field"; wire-format.md §4.4.4 step 11).
    #[error("an external commit needs an update path")]
    ExternalCommitWithoutPath,
    /// Rules R-LINK-1 to R-LINK-5: the identity link keys a commit of a pseudonymous group
    /// carries in its `authenticated_data` (wire-format.md §14.2).
    #[error("{0}")]
    IdentityLinkKeys(crate::pseudonym::InvalidIdentityLinkKeys),
    /// Rule R-MLS-3: a structure that decoded once does not decode again where the DS reads
    /// its KeyPackage lifetimes (wire-format.md §4.3.5). A bug rather than the peer's fault,
    /// but refusing is the safe answer.
    #[error("{structure} does not decode: {detail}")]
    Undecodable {
        /// What did not decode.
        structure: MlsStructure,
        /// The codec's error.
        detail: String,
    },
}

/// Why a standalone proposal was refused (code `invalid_proposal`), besides a conflict with
/// the pending set ([`crate::ProposalConflict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidProposal {
    /// Rule R-PROP-1: a `proposals` request with no proposal (wire-format.md §4.10 step 5).
    #[error("no proposals")]
    Empty,
    /// Rule R-PROP-2: a proposal that is already pending (wire-format.md §4.10 step 14).
    #[error("already pending")]
    AlreadyPending,
    /// Rule R-PROP-7: an AppDataUpdate proposal, pending or in a commit, for a component the
    /// hub has no semantics for (`DsConfig::app_data_components`): draft-ietf-mls-extensions
    /// §4.7 defines an update's meaning per component, so the hub could not compute the
    /// GroupContext its members compute (wire-format.md §15.7). Only with the
    /// `app-data-update` feature.
    #[error("AppDataUpdate for component {component_id:#06x}, which the hub does not know")]
    AppDataComponentUnknown {
        /// The proposal's `component_id`.
        component_id: u16,
    },
    /// Rule R-PROP-8: an AppDataUpdate `remove` of a component that has no state in the
    /// group's `app_data_dictionary` ("invalid if [...] it specifies the removal of state for
    /// a component_id that has no state present", draft-ietf-mls-extensions §4.7;
    /// wire-format.md §15.7). Only with the `app-data-update` feature.
    #[error("AppDataUpdate removes component {component_id:#06x}, which has no state")]
    AppDataRemoveOfAbsentState {
        /// The proposal's `component_id`.
        component_id: u16,
    },
    /// Rule R-PROP-9: an AppDataUpdate `update` its component's registered semantics refuse
    /// (draft-ietf-mls-extensions §4.7: the component defines which updates are valid;
    /// wire-format.md §15.7). Only with the `app-data-update` feature.
    #[error("AppDataUpdate refused by component {component_id:#06x}")]
    AppDataUpdateRefused {
        /// The proposal's `component_id`.
        component_id: u16,
    },
}

/// Why the sender may not do what it asks (code `not_allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAllowed {
    /// Rule R-COMMIT-1: the MLS sender of a handshake message is not a member
    /// (wire-format.md §3.7, §4.3.3 step 9).
    #[error("the MLS sender must be a member")]
    MlsSenderNotMember,
    /// Rule R-COMMIT-2: the MLS sender is not the requester (nor, for a user key, one of the
    /// user's clients): a member cannot submit another's handshake as its own
    /// (wire-format.md §3.7, §4.3.3 step 9).
    #[error("the MLS sender is not the requester")]
    MlsSenderNotRequester,
    /// Rule R-COMMIT-3: a committer removes itself (draft-robert-mimi-delivery-service-06
    /// §"Commit"; RFC 9420 §12.2; wire-format.md §4.3.3 step 13).
    #[error("a committer cannot remove itself")]
    CommitterRemovesItself,
    /// Rule R-COMMIT-4: the Welcomes' KeyPackageRefs are not exactly those of the commit's
    /// Adds, each once (RFC 9420 §12.4.3.1; wire-format.md §4.3.3 step 17).
    #[error("the Welcomes' KeyPackageRefs do not match the commit's Adds")]
    WelcomesDoNotMatchAdds,
    /// Rule R-COMMIT-5: a changed credential names another user than the client's
    /// (draft-robert-mimi-delivery-service-04 §"Update client"; wire-format.md §4.3.3 step 19).
    #[error("a credential change may not move a client to another user")]
    CredentialMovesClientToAnotherUser,
    /// Rule R-COMMIT-6: the group was re-initialized and takes no more messages
    /// (RFC 9420 §12.1.5; wire-format.md §4.4.3).
    #[error("the group was re-initialized; use its successor")]
    GroupReInitialized,
    /// Rule R-OP-1: a membership operation (`add_users`, `add_clients`, `remove_users`,
    /// `remove_clients`) changes the committer's credential
    /// (draft-robert-mimi-delivery-service-04 §"Add users"; wire-format.md §4.3.4).
    #[error("this operation may not change the committer's credential")]
    MembershipOperationChangesCredential,
    /// Rule R-OP-2: a commit with a ReInit proposal carries another proposal (RFC 9420 §12.2:
    /// "a ReInit proposal together with any other proposal"; wire-format.md §4.4.3).
    #[error("a ReInit proposal must be the commit's only proposal")]
    ReInitNotAlone,
    /// Rule R-OP-3: a ReInit proposal in an operation other than `re_initialize_group` or
    /// `commits` (wire-format.md §4.3.4, §4.4.3).
    #[error("a ReInit proposal belongs in re_initialize_group")]
    ReInitOutsideReInitialize,
    /// Rule R-OP-4: `delete_group` does not remove every other member
    /// (draft-robert-mimi-delivery-service-06 §"Delete group"; wire-format.md §4.4.1).
    #[error("delete_group must remove every other member")]
    DeleteGroupKeepsMembers,
    /// Rule R-OP-5: `add_users` carries proposals by value other than Adds
    /// (draft-robert-mimi-delivery-service-04 §"Add users"; wire-format.md §4.3.4).
    #[error("add_users carries only Add proposals by value")]
    AddUsersNotOnlyAdds,
    /// Rule R-OP-6: `add_users` adds a client of a user already in the group: "Adds MUST NOT
    /// contain clients of existing members" (draft-robert-mimi-delivery-service-04
    /// §"Add users"; wire-format.md §4.3.4).
    #[error("add_users may not add clients of users already in the group; use add_clients")]
    AddUsersOfExistingUser,
    /// Rule R-OP-7: `add_clients` carries proposals by value other than Adds
    /// (draft-robert-mimi-delivery-service-04 §"Add clients"; wire-format.md §4.3.4).
    #[error("add_clients carries only Add proposals by value")]
    AddClientsNotOnlyAdds,
    /// Rule R-OP-8: `add_clients` adds a client of another user than the sender's
    /// (draft-robert-mimi-delivery-service-04 §"Add clients"; wire-format.md §4.3.4).
    #[error("add_clients may only add clients of the sender's own user")]
    AddClientsOfAnotherUser,
    /// Rule R-OP-9: `remove_users` carries proposals by value other than Removes
    /// (draft-robert-mimi-delivery-service-04 §"Remove users"; wire-format.md §4.4.2).
    #[error("remove_users carries only Remove proposals by value")]
    RemoveUsersNotOnlyRemoves,
    /// Rule R-OP-10: `remove_users` leaves a client of a removed user in the group
    /// (draft-robert-mimi-delivery-service-04 §"Remove users"; wire-format.md §4.4.2).
    #[error("remove_users must remove every client of each removed user")]
    RemoveUsersPartially,
    /// Rule R-OP-11: `remove_clients` carries proposals by value other than Removes
    /// (draft-robert-mimi-delivery-service-04 §"Remove clients"; wire-format.md §4.4.2).
    #[error("remove_clients carries only Remove proposals by value")]
    RemoveClientsNotOnlyRemoves,
    /// Rule R-OP-12: `remove_clients` removes a client of another user than the sender's
    /// (draft-robert-mimi-delivery-service-04 §"Remove clients"; wire-format.md §4.4.2).
    #[error("remove_clients may only remove clients of the sender's own user")]
    RemoveClientsOfAnotherUser,
    /// Rule R-OP-13: `update_client` is not an update path without proposals by value
    /// (draft-robert-mimi-delivery-service-04 §"Update client"; wire-format.md §4.7).
    #[error("update_client is an update path with no proposals by value")]
    UpdateClientNotAnUpdatePath,
    /// Rule R-OP-14: `re_initialize_group` without a ReInit proposal
    /// (draft-robert-mimi-delivery-service-04 §"Re-initialize group"; wire-format.md §4.4.3).
    #[error("re_initialize_group needs a ReInit proposal")]
    ReInitializeWithoutReInit,
    /// Rule R-JOIN-1: `DsConfig::external_joins` is `Disabled` (wire-format.md §4.4.4 step 2).
    #[error("this DS does not accept external joins")]
    ExternalJoinsDisabled,
    /// Rule R-JOIN-2: an external commit removes a client of another user than the joiner's
    /// (RFC 9420 §12.4.3.2 only lets it remove the joiner's old leaf; wire-format.md §4.4.4
    /// step 13).
    #[error("an external commit may only remove the joiner's own clients")]
    ExternalCommitRemovesOthers,
    /// Rule R-JOIN-3: under `ExternalJoinPolicy::ExistingUsers`, the joiner's user has no client
    /// in the group (draft-robert-mimi-delivery-service-04 §"Join group"; wire-format.md
    /// §4.4.4 step 14).
    #[error("only clients of users already in the group may join by external commit")]
    ExternalJoinOfNewUser,
    /// Rule R-PROP-3: a user key authorised a proposal other than a Remove of one of the
    /// user's own clients (wire-format.md §3.5, §4.10 step 11).
    #[error("a user key authorises only Removes of the user's own clients")]
    UserKeyBeyondOwnRemovals,
    /// Rule R-PROP-4: `self_remove_client` is not one Remove proposal of the sender's own leaf
    /// (draft-robert-mimi-delivery-service-04 §"Self remove client"; wire-format.md §4.6).
    #[error("self_remove_client is one Remove proposal of the sender's own leaf")]
    SelfRemoveOfAnotherLeaf,
    /// Rule R-HUB-1: an inactivity sweep while `DsConfig::inactivity_limit_ms` is unset
    /// (wire-format.md §7.2).
    #[error("no inactivity limit is configured")]
    NoInactivityLimit,
    /// Rule R-HUB-2: the group's `external_senders` does not name this DS (nor a retired
    /// identity of it), so it cannot issue proposals there (RFC 9420 §12.1.8.1;
    /// wire-format.md §7.3).
    #[error("the group does not name this DS as external sender")]
    DsNotExternalSender,
    /// The room policy does not allow the sender this operation (wire-format.md §15.3, §15.4;
    /// rules R-POL-1 to R-POL-19, one [`PolicyViolation`] each).
    #[error("room policy: {0}")]
    RoomPolicy(PolicyViolation),
}

/// Why the Queueing Service refuses a well-formed client request (code `not_allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QsNotAllowed {
    /// Rule R-QS-2: `acknowledge` up to a sequence number the queue never reached
    /// (wire-format.md §10.3).
    #[error("acknowledges messages that were never queued")]
    AcknowledgesUnqueued,
    /// Rule R-QS-3: `create_queue` names a queue ID; the QS picks it (wire-format.md §10.3).
    #[error("create_queue names no queue")]
    CreateQueueNamesQueue,
}

#[cfg(test)]
pub(crate) mod every;
