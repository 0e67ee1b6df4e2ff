//! `DSRequest` and every request body (wire-format.md §4).
//!
//! Request types 0–14 are DS-03/04's `DSRequestType`; 15–19 are the DS-06 generic operations
//! and the requests DS-06 lacks a codepoint for, numbered as docs/decisions.md D1 says
//! (19 is `update_queue_info`, not DS-03's Reduced-Metadata `ds_fanout_cep`); 24 is MIMIMI's
//! `identity_link_keys` (wire-format.md §14.2); 25 is `with_state_keys`, a privacy-mode
//! request (wire-format.md §17.4).

use tls_codec::{Serialize as _, Size, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::auth::{sign_content, DsAuthData, DsSenderId, CLIENT_SIGNATURE_LABEL};
use super::queue::ClientQueueConfig;
use super::raw::{MlsMessageBytes, RatchetTreeBytes};

/// `DSRequest { DSProtocolVersion version; DSRequestBody body; DSAuthData auth; }` (DS-03/04
/// framing).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DsRequest {
    /// `DSProtocolVersion`; only `mimi_ds10(1)` is accepted.
    pub version: u16,
    /// The operation and its arguments.
    pub body: DsRequestBody,
    /// How the request is authenticated.
    pub auth: DsAuthData,
}

/// `DSRequestType`, the uint8 tag of [`DsRequestBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // each variant is the operation of the same name in DsRequestBody
pub enum DsRequestType {
    RequestGroupId = 0,
    CreateGroup = 1,
    DeleteGroup = 2,
    AddUsers = 3,
    RemoveUsers = 4,
    AddClients = 5,
    RemoveClients = 6,
    SelfRemoveClient = 7,
    UpdateClient = 8,
    ExternalJoin = 9,
    SendMessage = 10,
    SignaturePublicKey = 11,
    KeyPackages = 12,
    ConnectionKeyPackages = 13,
    ReInitializeGroup = 14,
    Proposals = 15,
    Commits = 16,
    GroupInfo = 17,
    WelcomeInfo = 18,
    UpdateQueueInfo = 19,
    IdentityLinkKeys = 24,
    WithStateKeys = 25,
}

impl DsRequestType {
    /// The type's name as the drafts and wire-format.md write it (`send_message`, `commits`,
    /// ...): a bounded set, fit for a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequestGroupId => "request_group_id",
            Self::CreateGroup => "create_group",
            Self::DeleteGroup => "delete_group",
            Self::AddUsers => "add_users",
            Self::RemoveUsers => "remove_users",
            Self::AddClients => "add_clients",
            Self::RemoveClients => "remove_clients",
            Self::SelfRemoveClient => "self_remove_client",
            Self::UpdateClient => "update_client",
            Self::ExternalJoin => "external_join",
            Self::SendMessage => "send_message",
            Self::SignaturePublicKey => "signature_public_key",
            Self::KeyPackages => "key_packages",
            Self::ConnectionKeyPackages => "connection_key_packages",
            Self::ReInitializeGroup => "re_initialize_group",
            Self::Proposals => "proposals",
            Self::Commits => "commits",
            Self::GroupInfo => "group_info",
            Self::WelcomeInfo => "welcome_info",
            Self::UpdateQueueInfo => "update_queue_info",
            Self::IdentityLinkKeys => "identity_link_keys",
            Self::WithStateKeys => "with_state_keys",
        }
    }
}

/// `DSRequestBody`: the operation, selected by a uint8 `DSRequestType`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum DsRequestBody {
    /// `request_group_id(0)`: `struct {}`. The DS answers with a fresh group ID it reserves.
    #[tls_codec(discriminant = 0)]
    RequestGroupId,
    /// `create_group(1)`.
    #[tls_codec(discriminant = 1)]
    CreateGroup(CreateGroupRequest),
    /// `delete_group(2)`: a commit removing every other member.
    #[tls_codec(discriminant = 2)]
    DeleteGroup(GroupUpdateRequest),
    /// `add_users(3)`: a commit of Adds for new users, with their Welcomes.
    #[tls_codec(discriminant = 3)]
    AddUsers(MembershipCommitRequest),
    /// `remove_users(4)`: a commit of Removes covering every client of some users.
    #[tls_codec(discriminant = 4)]
    RemoveUsers(GroupUpdateRequest),
    /// `add_clients(5)`: a commit of Adds for clients of the sender's own user.
    #[tls_codec(discriminant = 5)]
    AddClients(MembershipCommitRequest),
    /// `remove_clients(6)`: a commit of Removes of clients of the sender's own user.
    #[tls_codec(discriminant = 6)]
    RemoveClients(GroupUpdateRequest),
    /// `self_remove_client(7)`: a single Remove proposal of the sender's own leaf.
    #[tls_codec(discriminant = 7)]
    SelfRemoveClient(SelfRemoveClientRequest),
    /// `update_client(8)`: a commit with an update path and no proposals by value.
    #[tls_codec(discriminant = 8)]
    UpdateClient(UpdateClientRequest),
    /// `external_join(9)`: an external commit (sender `new_member_commit`).
    #[tls_codec(discriminant = 9)]
    ExternalJoin(GroupUpdateRequest),
    /// `send_message(10)`: an application message.
    #[tls_codec(discriminant = 10)]
    SendMessage(SendMessageRequest),
    /// `signature_public_key(11)`: `struct {}`; the DS's external-sender key.
    #[tls_codec(discriminant = 11)]
    SignaturePublicKey,
    /// `key_packages(12)`: a claim of a group KeyPackage set, served by a provider's
    /// [`crate::directory::KeyPackageDirectory`], not by the hub.
    #[tls_codec(discriminant = 12)]
    KeyPackages(KeyPackagesRequest),
    /// `connection_key_packages(13)`: a claim of a connection KeyPackage set, likewise served
    /// by the directory.
    #[tls_codec(discriminant = 13)]
    ConnectionKeyPackages(ConnectionKeyPackagesRequest),
    /// `re_initialize_group(14)`: a commit carrying a ReInit proposal.
    #[tls_codec(discriminant = 14)]
    ReInitializeGroup(GroupUpdateRequest),
    /// `proposals(15)`: standalone proposals (DS-06 `ds_proposals`).
    #[tls_codec(discriminant = 15)]
    Proposals(ProposalsRequest),
    /// `commits(16)`: any commit by a member (DS-06 `ds_commits`).
    #[tls_codec(discriminant = 16)]
    Commits(CommitRequest),
    /// `group_info(17)`: GroupInfo, tree and pending proposals for an external joiner.
    #[tls_codec(discriminant = 17)]
    GroupInfo(GroupInfoRequest),
    /// `welcome_info(18)`: the tree of the epoch a Welcome joiner was added in.
    #[tls_codec(discriminant = 18)]
    WelcomeInfo(WelcomeInfoRequest),
    /// `update_queue_info(19)`: replace the sender's client queue configuration.
    #[tls_codec(discriminant = 19)]
    UpdateQueueInfo(UpdateQueueInfoRequest),
    /// `identity_link_keys(24)`: `struct {}`; a pseudonymous group's wrapped identity link keys
    /// (wire-format.md §14.2), for members.
    #[tls_codec(discriminant = 24)]
    IdentityLinkKeys,
    /// `with_state_keys(25)`: a request of a privacy-mode group, its operation wrapped with
    /// the group's state keys (wire-format.md §17.4).
    #[tls_codec(discriminant = 25)]
    WithStateKeys(super::keyed::StateKeyedRequest),
}

impl DsRequestBody {
    /// The `DSRequestType` of this body.
    pub fn request_type(&self) -> DsRequestType {
        match self {
            Self::RequestGroupId => DsRequestType::RequestGroupId,
            Self::CreateGroup(_) => DsRequestType::CreateGroup,
            Self::DeleteGroup(_) => DsRequestType::DeleteGroup,
            Self::AddUsers(_) => DsRequestType::AddUsers,
            Self::RemoveUsers(_) => DsRequestType::RemoveUsers,
            Self::AddClients(_) => DsRequestType::AddClients,
            Self::RemoveClients(_) => DsRequestType::RemoveClients,
            Self::SelfRemoveClient(_) => DsRequestType::SelfRemoveClient,
            Self::UpdateClient(_) => DsRequestType::UpdateClient,
            Self::ExternalJoin(_) => DsRequestType::ExternalJoin,
            Self::SendMessage(_) => DsRequestType::SendMessage,
            Self::SignaturePublicKey => DsRequestType::SignaturePublicKey,
            Self::KeyPackages(_) => DsRequestType::KeyPackages,
            Self::ConnectionKeyPackages(_) => DsRequestType::ConnectionKeyPackages,
            Self::ReInitializeGroup(_) => DsRequestType::ReInitializeGroup,
            Self::Proposals(_) => DsRequestType::Proposals,
            Self::Commits(_) => DsRequestType::Commits,
            Self::GroupInfo(_) => DsRequestType::GroupInfo,
            Self::WelcomeInfo(_) => DsRequestType::WelcomeInfo,
            Self::UpdateQueueInfo(_) => DsRequestType::UpdateQueueInfo,
            Self::IdentityLinkKeys => DsRequestType::IdentityLinkKeys,
            Self::WithStateKeys(_) => DsRequestType::WithStateKeys,
        }
    }

    /// The operation: the body itself, or the inner body of a keyed request (wire-format.md
    /// §17.4), whose request type decides everything §3.6 and §4 decide.
    pub fn operation(&self) -> &Self {
        match self {
            Self::WithStateKeys(keyed) => &keyed.request,
            other => other,
        }
    }

    /// The state keys of a keyed request (wire-format.md §17.4), `None` for any other body.
    pub fn state_keys(&self) -> Option<&crate::privacy::StateKeys> {
        match self {
            Self::WithStateKeys(keyed) => Some(&keyed.keys),
            _ => None,
        }
    }
}

/// `CreateGroupRequest` (DS-04 §"Create group", with the tree carried explicitly).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct CreateGroupRequest {
    /// A group ID this DS reserved through `request_group_id`.
    pub group_id: VLBytes,
    /// The epoch's GroupInfo, signed by the creator; its GroupContext must carry an
    /// `external_senders` extension naming this DS.
    pub group_info: MlsMessageBytes,
    /// The full public ratchet tree of the group.
    pub ratchet_tree: RatchetTreeBytes,
}

/// `GroupInfoOption` (draft-ietf-mimi-protocol-06 `HandshakeBundle`): the GroupInfo that must
/// accompany every commit.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum GroupInfoOption {
    /// `full(1)`: a complete GroupInfo `MLSMessage` for the new epoch, without ratchet tree.
    #[tls_codec(discriminant = 1)]
    Full(MlsMessageBytes),
    /// `partial(2)`: the committer's signature and extensions; the DS fills in the rest.
    #[tls_codec(discriminant = 2)]
    Partial(PartialGroupInfo),
}

/// `RatchetTreePresence` (draft-mahy-mls-ratchet-tree-options): uint8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum RatchetTreePresence {
    /// `no_ratchet_tree(0)`: the GroupInfo has no `ratchet_tree` extension.
    NoRatchetTree = 0,
    /// `present(1)`.
    Present = 1,
    /// `removed(2)`.
    Removed = 2,
    /// `added(3)`.
    Added = 3,
}

/// `PartialGroupInfo` (draft-mahy-mls-ratchet-tree-options, the RTO layout).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct PartialGroupInfo {
    /// mimi-ds v1 accepts only `no_ratchet_tree(0)` (wire-format.md §4.3).
    pub ratchet_tree_presence: RatchetTreePresence,
    /// `Extension group_info_extensions<V>`, kept as its encoded contents.
    pub group_info_extensions: VLBytes,
    /// `SignWithLabel(., "GroupInfoTBS", GroupInfoTBS)` by the committer.
    pub signature: VLBytes,
}

/// `MLSGroupUpdate` (DS-03..06): a commit and the GroupInfo of the epoch it creates.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct GroupUpdate {
    /// A PublicMessage carrying a commit.
    pub commit: MlsMessageBytes,
    /// The GroupInfo of the new epoch.
    pub group_info: GroupInfoOption,
}

/// A request that is one group update and nothing else: the body of `delete_group(2)`,
/// `remove_users(4)`, `remove_clients(6)`, `external_join(9)` and `re_initialize_group(14)`.
/// The drafts name it per operation (DS-03..06 `GroupUpdateRequest`, DS-03/04
/// `RemoveUsersRequest` and `RemoveClientsRequest`, DS-04 `GroupUpdateRequest` and
/// `GroupUpdateRequest`); the layouts are identical, so one type serves all five.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct GroupUpdateRequest {
    /// The commit.
    pub group_update: GroupUpdate,
}

/// A commit with Welcomes: `add_users(3)`, `add_clients(5)`, `commits(16)` (DS-04
/// `AddUsersRequest`; DS-06 `CommitRequest` with a single update).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct MembershipCommitRequest {
    /// The commit.
    pub group_update: GroupUpdate,
    /// Welcome messages for the members the commit adds.
    pub welcome_messages: Vec<MlsMessageBytes>,
}

/// `commits(16)`, the DS-06 `CommitRequest`.
pub type CommitRequest = MembershipCommitRequest;

/// `SelfRemoveClientRequest` (DS-03..05).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SelfRemoveClientRequest {
    /// A PublicMessage Remove proposal of the sender's own leaf.
    pub proposal: MlsMessageBytes,
}

/// `UpdateClientRequest` (DS-04/05, with the client queue configuration in place of the
/// FanoutAuthToken).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct UpdateClientRequest {
    /// A commit with an update path.
    pub group_update: GroupUpdate,
    /// If present, replaces the sender's client queue configuration.
    pub queue_config: Option<ClientQueueConfig>,
}

/// `SendMessageRequest` (DS-03..05).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SendMessageRequest {
    /// A PrivateMessage with content type `application`.
    pub application_message: MlsMessageBytes,
}

/// `KeyPackageClaimRequest`: the body of `key_packages(12)` and `connection_key_packages(13)`
/// (wire-format.md §14.4). DS-04's bodies name clients and users by their identifiers, which a
/// MIMIMI directory must never learn; a claim names a connection token and one claim instead,
/// and is served by the provider's [`crate::directory::KeyPackageDirectory`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct KeyPackageClaimRequest {
    /// The connection token the user gave its connections (32 bytes).
    pub connection_token: VLBytes,
    /// The claimer's ID for this claim (16 to 64 random bytes, one per group): a retry with the
    /// same ID gets the same set instead of consuming another.
    pub claim_id: VLBytes,
}

/// The body of `key_packages(12)`: a claim of a group KeyPackage set.
pub type KeyPackagesRequest = KeyPackageClaimRequest;

/// The body of `connection_key_packages(13)`: a claim of a connection KeyPackage set.
pub type ConnectionKeyPackagesRequest = KeyPackageClaimRequest;

/// `ProposalRequest` (DS-06 `ds_proposals`, there misnamed `AddClientsRequest`).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ProposalsRequest {
    /// PublicMessages each carrying one proposal.
    pub proposals: Vec<MlsMessageBytes>,
}

/// `GroupInfoRequest` (DS-06 `ds_group_info`, with the group ID docs/decisions.md D10 adds and
/// draft-ietf-mimi-protocol-06's `groupInfoPublicKey`).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct GroupInfoRequest {
    /// The group.
    pub group_id: VLBytes,
    /// `optional<HPKEPublicKey>`: if present, the answer is encrypted to this key of the
    /// group's ciphersuite (`encrypted_external_commit_info`), so that whoever relays it (the
    /// joiner's provider) cannot read the GroupInfo and tree.
    pub encryption_key: Option<VLBytes>,
}

/// `WelcomeInfoRequest` (docs/decisions.md D10). The group and the joiner's KeyPackageRef are in
/// the `ClientSignature`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct WelcomeInfoRequest {
    /// The epoch the Welcome is for.
    pub epoch: u64,
}

/// `UpdateQueueInfoRequest` (DS-00 "Update queue information"; DS-02 `UpdateClientFanoutInfo`).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct UpdateQueueInfoRequest {
    /// The sender's new client queue configuration.
    pub queue_config: ClientQueueConfig,
}

/// `ClientSignatureTBS`: what a [`ClientSignature`](super::ClientSignature) signs.
#[derive(Debug, TlsSerialize, TlsSize)]
pub struct ClientSignatureTbs<'a> {
    /// `DSProtocolVersion` of the request.
    pub version: u16,
    /// The request body, encoded as on the wire.
    pub body: &'a DsRequestBody,
    /// As in [`ClientSignature`](super::ClientSignature).
    pub group_id: &'a VLBytes,
    /// As in [`ClientSignature`](super::ClientSignature).
    pub timestamp_ms: u64,
    /// As in [`ClientSignature`](super::ClientSignature).
    pub sender_id: &'a DsSenderId,
}

impl ClientSignatureTbs<'_> {
    /// The exact bytes handed to the signature algorithm: the TBS wrapped in `SignContent`.
    pub fn sign_content(&self) -> Result<Vec<u8>, tls_codec::Error> {
        let mut content = Vec::with_capacity(self.tls_serialized_len());
        self.tls_serialize(&mut content)?;
        sign_content(CLIENT_SIGNATURE_LABEL, content)
    }
}
