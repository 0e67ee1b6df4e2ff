//! The DS requests a [`TestClient`] builds: signed with its leaf or user key, carrying
//! commits, proposals and messages its real `MlsGroup` produced.

use openmls::prelude::*;
use openmls_traits::types::HpkeKeyPair;
use tls_codec::Serialize as _;

use super::{commit_body, group_info_encryption_keys, mls_bytes, TestClient};
use crate::wire::{
    encode, ClientQueueConfig, ClientSignature, CreateGroupRequest, DsAuthData, DsRequest,
    DsRequestBody, DsSenderId, ExternalCommitInfo, GroupInfoOption, GroupInfoRequest, GroupUpdate,
    GroupUpdateRequest, MembershipCommitRequest, MlsMessageBytes, ProposalsRequest,
    RatchetTreeBytes, SelfRemoveClientRequest, SendMessageRequest, UpdateQueueInfoRequest,
    WelcomeInfoRequest, PROTOCOL_VERSION_MIMI_DS10,
};

impl TestClient {
    /// Signs a request body as the leaf of this client in its group.
    pub fn signed(&self, body: DsRequestBody, now_ms: u64) -> Vec<u8> {
        let group_id = self.group_id();
        self.signed_as(body, &group_id, now_ms, DsSenderId::LeafIndex(self.leaf()))
    }

    /// Signs a request body with an explicit group and sender.
    pub fn signed_as(
        &self,
        body: DsRequestBody,
        group_id: &[u8],
        now_ms: u64,
        sender: DsSenderId,
    ) -> Vec<u8> {
        let auth = ClientSignature::sign(
            &self.signer,
            PROTOCOL_VERSION_MIMI_DS10,
            &body,
            group_id,
            now_ms,
            sender,
        )
        .expect("signing");
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body,
            auth: DsAuthData::ClientSignature(auth),
        })
        .expect("encode")
    }

    /// `create_group` for the group this client just created.
    pub fn create_group_request(&self, now_ms: u64) -> Vec<u8> {
        let group = self.group();
        let group_info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .expect("group info");
        let tree = group.export_ratchet_tree();
        let body = DsRequestBody::CreateGroup(CreateGroupRequest {
            group_id: self.group_id().into(),
            group_info: mls_bytes(&group_info),
            ratchet_tree: RatchetTreeBytes::from_bytes(
                tree.tls_serialize_detached().expect("encode"),
            )
            .expect("tree"),
        });
        self.signed(body, now_ms)
    }

    /// Stages a commit built by `build` and returns its group update and Welcome. The commit is
    /// pending until [`TestClient::confirm_commit`] or [`TestClient::discard_commit`].
    pub fn stage_commit(
        &mut self,
        build: impl FnOnce(
            CommitBuilder<'_, openmls::group::Initial>,
        ) -> CommitBuilder<'_, openmls::group::Initial>,
    ) -> (GroupUpdate, Option<MlsMessageBytes>) {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let bundle = build(group.commit_builder())
            .load_psks(provider.storage())
            .expect("psks")
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .expect("commit")
            .stage_commit(provider)
            .expect("stage commit");
        let (commit, welcome, group_info) = bundle.into_messages();
        let update = GroupUpdate {
            commit: mls_bytes(&commit),
            group_info: GroupInfoOption::Full(mls_bytes(
                &group_info.expect("group info requested"),
            )),
        };
        (update, welcome.as_ref().map(mls_bytes))
    }

    /// `commits` adding the given KeyPackages, with the Welcome.
    pub fn add_request(&mut self, key_packages: Vec<KeyPackage>, now_ms: u64) -> Vec<u8> {
        let (update, welcome) = self.stage_commit(|b| b.propose_adds(key_packages));
        self.signed(
            DsRequestBody::Commits(MembershipCommitRequest {
                group_update: update,
                welcome_messages: welcome.into_iter().collect(),
            }),
            now_ms,
        )
    }

    /// `commits` with an update path and any pending proposals.
    pub fn update_request(&mut self, now_ms: u64) -> Vec<u8> {
        let (update, _) = self.stage_commit(|b| b.force_self_update(true));
        self.signed(commit_body(update), now_ms)
    }

    /// `commits` removing the given leaves.
    pub fn remove_request(&mut self, leaves: &[u32], now_ms: u64) -> Vec<u8> {
        let removed: Vec<LeafNodeIndex> = leaves.iter().copied().map(LeafNodeIndex::new).collect();
        let (update, _) = self.stage_commit(|b| b.propose_removals(removed));
        self.signed(commit_body(update), now_ms)
    }

    /// `delete_group`: a commit removing every other member.
    pub fn delete_group_request(&mut self, now_ms: u64) -> Vec<u8> {
        let own = self.group().own_leaf_index();
        let others: Vec<LeafNodeIndex> = self
            .group()
            .members()
            .map(|m| m.index)
            .filter(|i| *i != own)
            .collect();
        let (update, _) = self.stage_commit(|b| b.propose_removals(others));
        self.signed(
            DsRequestBody::DeleteGroup(GroupUpdateRequest {
                group_update: update,
            }),
            now_ms,
        )
    }

    /// `proposals` with a Remove proposal for `leaf`.
    pub fn propose_remove_request(&mut self, leaf: u32, now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let (message, _) = group
            .propose_remove_member(provider, signer, LeafNodeIndex::new(leaf))
            .expect("proposal");
        self.signed(
            DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![mls_bytes(&message)],
            }),
            now_ms,
        )
    }

    /// `self_remove_client`: a Remove proposal of this client's own leaf (openmls `leave_group`).
    pub fn self_remove_request(&mut self, now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let message = group.leave_group(provider, signer).expect("leave");
        self.signed(
            DsRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
                proposal: mls_bytes(&message),
            }),
            now_ms,
        )
    }

    /// `send_message` with an application message.
    pub fn message_request(&mut self, text: &[u8], now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let message = group
            .create_message(provider, signer, text)
            .expect("message");
        self.signed(
            DsRequestBody::SendMessage(SendMessageRequest {
                application_message: mls_bytes(&message),
            }),
            now_ms,
        )
    }

    /// `update_queue_info` moving this client's queue.
    pub fn update_queue_request(&mut self, queue: ClientQueueConfig, now_ms: u64) -> Vec<u8> {
        self.queue = queue.clone();
        self.signed(
            DsRequestBody::UpdateQueueInfo(UpdateQueueInfoRequest {
                queue_config: queue,
            }),
            now_ms,
        )
    }

    /// An unauthenticated `group_info` request: answered only by a DS configured with
    /// [`crate::GroupInfoAccess::Anyone`]; see [`TestClient::signed_group_info_request`].
    pub fn group_info_request(group_id: &[u8]) -> Vec<u8> {
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::GroupInfo(GroupInfoRequest {
                group_id: group_id.to_vec().into(),
                encryption_key: None,
            }),
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode")
    }

    /// A `group_info` request signed by this client (wire-format.md §4.11): with its leaf
    /// while it is a member of the group, otherwise with its user key (a new device of a user
    /// in the group, or a client that lost its state). `encryption_key`: see
    /// [`group_info_encryption_keys`]. Panics if the client has neither.
    pub fn signed_group_info_request(
        &self,
        group_id: &[u8],
        encryption_key: Option<&HpkeKeyPair>,
        now_ms: u64,
    ) -> Vec<u8> {
        let body = DsRequestBody::GroupInfo(GroupInfoRequest {
            group_id: group_id.to_vec().into(),
            encryption_key: encryption_key.map(|keys| keys.public.clone().into()),
        });
        match &self.group {
            Some(group) if group.is_active() && group.group_id().as_slice() == group_id => self
                .signed_as(
                    body,
                    group_id,
                    now_ms,
                    DsSenderId::LeafIndex(group.own_leaf_index().u32()),
                ),
            _ => self.signed_as_user_in(body, group_id, now_ms),
        }
    }

    /// An unauthenticated `group_info` request whose answer is encrypted to a fresh HPKE key
    /// of the harness's ciphersuite; open the answer with [`super::open_external_commit_info`].
    pub fn encrypted_group_info_request(group_id: &[u8]) -> (Vec<u8>, HpkeKeyPair) {
        let keys = group_info_encryption_keys();
        let request = encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::GroupInfo(GroupInfoRequest {
                group_id: group_id.to_vec().into(),
                encryption_key: Some(keys.public.clone().into()),
            }),
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode");
        (request, keys)
    }

    /// Decrypts a Welcome far enough to learn its group and epoch, and signs the
    /// `welcome_info` request for that epoch's tree with the KeyPackage the Welcome is for.
    /// Finish with [`TestClient::join_with_tree`]. (Processing the Welcome consumes the
    /// KeyPackage's private keys, so this works once per Welcome; re-sign the returned request
    /// with [`TestClient::signed_as`] to build another.)
    pub fn welcome_info_request(
        &self,
        welcome: &MlsMessageBytes,
        now_ms: u64,
    ) -> (Vec<u8>, ProcessedWelcome) {
        let MlsMessageBodyIn::Welcome(welcome) = welcome.parse().expect("welcome").extract() else {
            panic!("not a Welcome");
        };
        let storage = self.provider.storage();
        let key_package_ref = welcome
            .secrets()
            .iter()
            .map(|secret| secret.new_member())
            .find(|r| {
                openmls_traits::storage::StorageProvider::key_package::<_, KeyPackageBundle>(
                    storage, r,
                )
                .ok()
                .flatten()
                .is_some()
            })
            .expect("a Welcome for one of this client's KeyPackages");
        let processed =
            ProcessedWelcome::new_from_welcome(&self.provider, &Self::join_config(), welcome)
                .expect("welcome");
        let info = processed.unverified_group_info();
        let (group_id, epoch) = (info.group_id().as_slice().to_vec(), info.epoch().as_u64());
        let request = self.signed_as(
            DsRequestBody::WelcomeInfo(WelcomeInfoRequest { epoch }),
            &group_id,
            now_ms,
            DsSenderId::KeyPackageRef(key_package_ref.as_slice().to_vec().into()),
        );
        (request, processed)
    }

    /// `external_join` from the GroupInfo and tree the DS serves (`group_info`). The client's
    /// group is pending until [`TestClient::confirm_commit`]. A client that lost its state
    /// joins again the same way: openmls then also removes its old leaf (same identity).
    pub fn external_join_request(&mut self, info: &ExternalCommitInfo) -> Vec<u8> {
        self.external_join_request_with_aad(info, Vec::new())
    }

    /// [`TestClient::external_join_request`] with `aad` as the commit's authenticated data
    /// (e.g. a connection response, `crate::connection`).
    pub fn external_join_request_with_aad(
        &mut self,
        info: &ExternalCommitInfo,
        aad: Vec<u8>,
    ) -> Vec<u8> {
        self.external_join_request_with(
            info,
            ExternalJoinOptions {
                aad,
                ..ExternalJoinOptions::default()
            },
        )
    }

    /// `external_join` with what the test varies ([`ExternalJoinOptions`]); the one place the
    /// harness builds an external commit.
    pub fn external_join_request_with(
        &mut self,
        info: &ExternalCommitInfo,
        options: ExternalJoinOptions,
    ) -> Vec<u8> {
        let group_info = info.group_info.parse().expect("group info");
        let provider = &self.provider;
        let builder = MlsGroup::external_commit_builder()
            .with_ratchet_tree(
                info.ratchet_tree()
                    .expect("the hub sends the full tree")
                    .parse()
                    .expect("tree"),
            )
            .with_proposals(options.proposals)
            .with_config(Self::join_config())
            .with_aad(options.aad)
            .build_group(provider, group_info, self.credential.clone())
            .expect("external commit")
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(options.capabilities.unwrap_or_else(Self::capabilities))
                    .with_extensions(self.leaf_extensions())
                    .build(),
            );
        #[cfg(feature = "app-data-update")]
        let builder = options
            .app_data
            .iter()
            .cloned()
            .fold(builder, |builder, proposal| {
                builder.add_app_data_update_proposal(proposal)
            });
        #[cfg_attr(not(feature = "app-data-update"), allow(unused_mut))]
        let mut builder = builder.load_psks(provider.storage()).expect("psks");
        #[cfg(feature = "app-data-update")]
        builder.with_app_data_dictionary_updates(super::app_data::replace_value_updates(
            &options.app_data,
        ));
        let (group, bundle) = builder
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), &self.signer, |_| true)
            .expect("external commit")
            .finalize(provider)
            .expect("external commit");
        self.group = Some(group);
        let (commit, _, group_info) = bundle.into_messages();
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::ExternalJoin(GroupUpdateRequest {
                group_update: GroupUpdate {
                    commit: mls_bytes(&commit),
                    group_info: GroupInfoOption::Full(mls_bytes(
                        &group_info.expect("external commits carry a GroupInfo"),
                    )),
                },
            }),
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode")
    }
}

/// What an external join of the test harness varies
/// ([`TestClient::external_join_request_with`]).
#[derive(Debug, Default)]
pub struct ExternalJoinOptions {
    /// The commit's `authenticated_data` (a connection response, identity links).
    pub aad: Vec<u8>,
    /// The joiner's leaf capabilities; [`TestClient::capabilities`] when `None`.
    pub capabilities: Option<Capabilities>,
    /// Pending proposals the commit covers by reference (RFC 9420 §12.4.3.2 allows only
    /// SelfRemove-like proposals there; openmls keeps SelfRemoves).
    pub proposals: Vec<PublicMessageIn>,
    /// AppDataUpdate proposals the joiner adds by value, with [`ReplaceValue`] semantics
    /// (wire-format.md §15.7).
    ///
    /// [`ReplaceValue`]: crate::app_data::ReplaceValue
    #[cfg(feature = "app-data-update")]
    pub app_data: Vec<AppDataUpdateProposal>,
}
