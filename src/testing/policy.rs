//! Room-policy helpers (docs/wire-format.md §15): clients whose leaves support the policy's
//! GroupContext extensions, groups created with a policy, commits that change it, and a
//! small admin/member policy to start from. Every message is built by the client's real
//! `MlsGroup`.

use crate::testing::ExternalJoinOptions;
use openmls::prelude::*;

use super::{mls_bytes, TestClient, TestDs, CIPHERSUITE};
use crate::policy::capability::*;
use crate::policy::{
    ParticipantListData, Role, RoleChangeTargets, RoleData, RoomPolicy, UserRolePair,
    ROOM_POLICY_EXTENSION_TYPES,
};
use crate::wire::{DsRequestBody, ExternalCommitInfo, MembershipCommitRequest};

/// Role index of `banned` (RP-03: role 1 named "banned").
pub const BANNED: u32 = 1;
/// Role index of an ordinary member in [`admin_policy`].
pub const MEMBER: u32 = 2;
/// Role index of an admin in [`admin_policy`].
pub const ADMIN: u32 = 3;

/// A leaf's capabilities: [`TestClient::capabilities`] plus the four room-policy extension
/// types (RFC 9420 §7.2: a GroupContext extension must be supported by every member).
pub fn policy_capabilities() -> Capabilities {
    let base = TestClient::capabilities();
    let mut extensions = base.extensions().to_vec();
    extensions.extend(ROOM_POLICY_EXTENSION_TYPES.map(ExtensionType::Unknown));
    Capabilities::new(None, Some(&[CIPHERSUITE]), Some(&extensions), None, None)
}

/// The user URI the hub names `client`'s user by (`mimi://<domain>/u/<user>`).
pub fn user_uri(client: &TestClient) -> Vec<u8> {
    let domain = String::from_utf8_lossy(client.queue.provider_domain.as_slice()).into_owned();
    format!("mimi://{domain}/u/{}", client.user).into_bytes()
}

/// A role with `capabilities` and no count constraints or role changes.
pub fn role(index: u32, name: &str, capabilities: &[u16]) -> Role {
    Role {
        role_index: index,
        role_name: name.as_bytes().to_vec().into(),
        role_description: Vec::new().into(),
        role_capabilities: capabilities.to_vec(),
        minimum_participants_constraint: 0,
        maximum_participants_constraint: None,
        minimum_active_participants_constraint: 0,
        maximum_active_participants_constraint: None,
        authorized_role_changes: Vec::new(),
        self_role_changes: Vec::new(),
    }
}

/// Roles 1 `banned`, 2 `member` (adds and removes its own clients) and 3 `admin` (everything,
/// and may move members between `member` and `banned` or make them admins); `admins` and
/// `members` are the participants.
pub fn admin_policy(admins: &[&TestClient], members: &[&TestClient]) -> RoomPolicy {
    let mut admin = role(
        ADMIN,
        "admin",
        &[
            CAN_ADD_PARTICIPANT,
            CAN_REMOVE_PARTICIPANT,
            CAN_ADD_OWN_CLIENT,
            CAN_REMOVE_SELF,
            CAN_CHANGE_USER_ROLE,
            CAN_CHANGE_OWN_ROLE,
            CAN_CHANGE_ROOM_POLICY,
            CAN_DESTROY_ROOM,
            CAN_SEND_MLS_REINIT_PROPOSAL,
        ],
    );
    admin.authorized_role_changes = vec![
        RoleChangeTargets {
            from_role_index: MEMBER,
            target_role_indexes: vec![BANNED, ADMIN],
        },
        RoleChangeTargets {
            from_role_index: BANNED,
            target_role_indexes: vec![MEMBER],
        },
    ];
    admin.self_role_changes = vec![RoleChangeTargets {
        from_role_index: ADMIN,
        target_role_indexes: vec![MEMBER],
    }];
    let pairs = |clients: &[&TestClient], role_index: u32| {
        clients
            .iter()
            .map(|c| UserRolePair {
                user: user_uri(c).into(),
                role_index,
            })
            .collect::<Vec<_>>()
    };
    let mut participants = pairs(admins, ADMIN);
    participants.extend(pairs(members, MEMBER));
    RoomPolicy {
        roles: RoleData {
            roles: vec![
                role(BANNED, "banned", &[]),
                role(MEMBER, "member", &[CAN_ADD_OWN_CLIENT, CAN_REMOVE_SELF]),
                admin,
            ],
        },
        participants: ParticipantListData { participants },
        operational: None,
        base: None,
    }
}

/// `policy` with `client`'s user listed in `role_index` (replacing its entry if it has one).
pub fn with_participant(policy: &RoomPolicy, client: &TestClient, role_index: u32) -> RoomPolicy {
    let mut policy = policy.clone();
    let user = user_uri(client);
    policy
        .participants
        .participants
        .retain(|p| p.user.as_slice() != user.as_slice());
    policy.participants.participants.push(UserRolePair {
        user: user.into(),
        role_index,
    });
    policy
}

/// `policy` without `client`'s user.
pub fn without_participant(policy: &RoomPolicy, client: &TestClient) -> RoomPolicy {
    let mut policy = policy.clone();
    let user = user_uri(client);
    policy
        .participants
        .participants
        .retain(|p| p.user.as_slice() != user.as_slice());
    policy
}

/// The GroupContext extensions of `client`'s group with the room-policy extensions replaced by
/// `raw` (type, data) pairs; the required capabilities name the four policy types.
pub fn context_with(client: &TestClient, raw: &[(u16, Vec<u8>)]) -> Extensions<GroupContext> {
    let mut extensions: Vec<Extension> = client
        .group()
        .extensions()
        .iter()
        .filter(|e| {
            !matches!(e.extension_type(), ExtensionType::Unknown(t) if ROOM_POLICY_EXTENSION_TYPES.contains(&t))
                && e.extension_type() != ExtensionType::RequiredCapabilities
        })
        .cloned()
        .collect();
    extensions.push(required_policy_capabilities());
    extensions.extend(
        raw.iter()
            .map(|(t, data)| Extension::Unknown(*t, UnknownExtension(data.clone()))),
    );
    Extensions::from_vec(extensions).expect("valid GroupContext extensions")
}

/// The policy as (type, data) pairs for [`context_with`].
pub fn raw(policy: &RoomPolicy) -> Vec<(u16, Vec<u8>)> {
    policy
        .extensions()
        .expect("encode")
        .into_iter()
        .map(|e| match e {
            Extension::Unknown(t, UnknownExtension(data)) => (t, data),
            other => panic!("not a policy extension: {other:?}"),
        })
        .collect()
}

fn required_policy_capabilities() -> Extension {
    Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
        &ROOM_POLICY_EXTENSION_TYPES.map(ExtensionType::Unknown),
        &[],
        &[],
    ))
}

impl TestClient {
    /// A KeyPackage whose leaf supports the room-policy extensions.
    pub fn policy_key_package(&self) -> KeyPackage {
        self.policy_key_package_with_lifetime(self.fixed_lifetime.unwrap_or_else(Self::lifetime))
    }

    /// [`Self::policy_key_package`] with `lifetime`.
    pub fn policy_key_package_with_lifetime(&self, lifetime: Lifetime) -> KeyPackage {
        self.key_package_with_capabilities(lifetime, policy_capabilities())
    }

    /// Creates the MLS group locally with the room-policy extensions given as raw
    /// (type, data) pairs (so that malformed ones can be sent too).
    pub fn create_group_with_raw_policy(
        &mut self,
        group_id: &[u8],
        ds: &ExternalSender,
        raw: &[(u16, Vec<u8>)],
    ) {
        let mut extensions = vec![
            Extension::ExternalSenders(vec![ds.clone()]),
            required_policy_capabilities(),
        ];
        extensions.extend(
            raw.iter()
                .map(|(t, data)| Extension::Unknown(*t, UnknownExtension(data.clone()))),
        );
        self.create_group_with(group_id, policy_capabilities(), extensions);
    }

    /// `commits` with a GroupContextExtensions proposal setting the room-policy extensions to
    /// `raw`, plus whatever `more` adds (Adds, Removes).
    pub fn policy_commit_request(
        &mut self,
        raw: &[(u16, Vec<u8>)],
        more: impl FnOnce(
            CommitBuilder<'_, openmls::group::Initial>,
        ) -> CommitBuilder<'_, openmls::group::Initial>,
        now_ms: u64,
    ) -> Vec<u8> {
        let extensions = context_with(self, raw);
        let (update, welcome) = self.stage_commit(|b| {
            more(
                b.propose_group_context_extensions(extensions)
                    .expect("proposal"),
            )
        });
        self.signed(
            DsRequestBody::Commits(MembershipCommitRequest {
                group_update: update,
                welcome_messages: welcome.into_iter().collect(),
            }),
            now_ms,
        )
    }

    /// `proposals` with a standalone GroupContextExtensions proposal setting the room-policy
    /// extensions to `raw`.
    pub fn policy_proposal_request(&mut self, raw: &[(u16, Vec<u8>)], now_ms: u64) -> Vec<u8> {
        let extensions = context_with(self, raw);
        let provider = &self.provider;
        let group = self.group.as_mut().expect("client has a group");
        let (message, _) = group
            .propose_group_context_extensions(provider, extensions, &self.signer)
            .expect("proposal");
        self.signed(
            DsRequestBody::Proposals(crate::wire::ProposalsRequest {
                proposals: vec![mls_bytes(&message)],
            }),
            now_ms,
        )
    }

    /// `external_join` through an external commit whose leaf supports the room-policy
    /// extensions.
    pub fn policy_external_join_request(&mut self, info: &ExternalCommitInfo) -> Vec<u8> {
        self.external_join_request_with(
            info,
            ExternalJoinOptions {
                capabilities: Some(policy_capabilities()),
                ..ExternalJoinOptions::default()
            },
        )
    }
}

impl TestDs {
    /// Registers a room created by `creator` with `policy` (raw extensions) and adds `joiners`
    /// (whose KeyPackages support the policy) in one commit; each joins from its Welcome.
    /// Panics if the DS refuses any step.
    pub fn create_policy_room(
        &mut self,
        creator: &mut TestClient,
        joiners: &mut [&mut TestClient],
        policy: &RoomPolicy,
    ) -> Vec<u8> {
        let group_id = self.request_group_id();
        creator.create_group_with_raw_policy(&group_id, &self.external_sender, &raw(policy));
        let _ = self.accept(&creator.create_group_request(self.now_ms));
        if joiners.is_empty() {
            return group_id;
        }
        let key_packages = joiners.iter().map(|j| j.policy_key_package()).collect();
        let out = self.accept(&creator.add_request(key_packages, self.now_ms));
        creator.confirm_commit();
        Self::route(&out, joiners);
        for joiner in joiners.iter_mut() {
            let Some(super::Received::Welcome(welcome)) = joiner.process_inbox().pop() else {
                panic!("no Welcome for {}", joiner.name)
            };
            let (request, processed) = joiner.welcome_info_request(&welcome, self.now_ms);
            let crate::wire::DsResponseBody::WelcomeInfo(info) =
                super::decode_response(&self.process(&request).response).body
            else {
                panic!("welcome_info refused for {}", joiner.name)
            };
            joiner.join_with_tree(processed, &info.ratchet_tree);
        }
        group_id
    }
}

/// The encoded policy extension data of `value` (for golden vectors and malformed cases).
pub fn encoded<T: tls_codec::Serialize>(value: &T) -> Vec<u8> {
    value.tls_serialize_detached().expect("encode")
}
