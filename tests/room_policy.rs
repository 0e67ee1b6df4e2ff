//! Room policy enforced by the hub (docs/wire-format.md §15): roles, the participant list and
//! the operational parameters, carried in GroupContext extensions and checked on every commit,
//! proposal and external join. Every party is a real openmls client; each refusal is checked
//! end to end (code, named reason, no fanout, storage byte-identical).

#[allow(dead_code)]
#[path = "support/reinit_forge.rs"]
mod forge;

use mimi_ds::policy::capability::*;
use mimi_ds::policy::{
    BaseRoomPolicy, ExtendedCapabilities, Flag, OperationalParameters, PendingProposalPolicy,
    PolicyDefect, PolicyViolation, RoomPolicy, UserRolePair, PARTICIPANT_LIST_EXTENSION_TYPE,
    ROLES_LIST_EXTENSION_TYPE,
};
use mimi_ds::testing::policy::{
    admin_policy, raw, role, user_uri, with_participant, without_participant, ADMIN, BANNED, MEMBER,
};
use mimi_ds::testing::{commit_body, TestClient, TestDs};
use mimi_ds::wire::{DsRequestBody, ErrorCode, GroupUpdateRequest};
use mimi_ds::{InvalidGroupInfo, NotAllowed, RejectReason};
use openmls::prelude::LeafNodeIndex;

fn violated(rule: PolicyViolation) -> RejectReason {
    RejectReason::NotAllowed(NotAllowed::RoomPolicy(rule))
}

fn defective(defect: PolicyDefect) -> RejectReason {
    RejectReason::InvalidGroupInfo(InvalidGroupInfo::RoomPolicy(defect))
}

/// A room with Alice (admin, leaf 0) and Bob (member, leaf 1) under `policy`, which must list
/// both.
fn room_with(policy: impl FnOnce(&TestClient, &TestClient) -> RoomPolicy) -> Room {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let policy = policy(&alice, &bob);
    ds.create_policy_room(&mut alice, &mut [&mut bob], &policy);
    Room {
        ds,
        alice,
        bob,
        policy,
    }
}

/// [`room_with`] under [`admin_policy`].
fn room() -> Room {
    room_with(|alice, bob| admin_policy(&[alice], &[bob]))
}

struct Room {
    ds: TestDs,
    alice: TestClient,
    bob: TestClient,
    policy: RoomPolicy,
}

impl Room {
    fn refuse(&mut self, request: &[u8], expected: RejectReason) {
        let code = match expected {
            RejectReason::InvalidGroupInfo(_) => ErrorCode::InvalidGroupInfo,
            _ => ErrorCode::NotAllowed,
        };
        assert_eq!(self.ds.reject(request, code), expected);
    }

    /// Alice commits a policy change (plus `more`) that must be accepted; Bob follows.
    fn alice_sets(&mut self, policy: &RoomPolicy) {
        let now = self.ds.now_ms;
        let request = self.alice.policy_commit_request(&raw(policy), |b| b, now);
        let out = self.ds.accept(&request);
        self.alice.confirm_commit();
        TestDs::route(&out, &mut [&mut self.bob]);
        self.bob.process_inbox();
        self.policy = policy.clone();
    }
}

fn carol() -> TestClient {
    TestClient::new("carol", "carol-1", "c.example")
}

// ---------------------------------------------------------------------------------------------
// The default: rooms without a policy
// ---------------------------------------------------------------------------------------------

#[test]
fn a_room_without_policy_keeps_every_member_able_to_remove_anyone() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let _ = ds.accept(&bob.remove_request(&[alice.leaf()], ds.now_ms));
}

#[test]
fn a_member_may_install_a_policy_in_a_room_without_one() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group_with_raw_policy(&group_id, &ds.external_sender, &[]);
    let _ = ds.accept(&alice.create_group_request(ds.now_ms));
    let policy = admin_policy(&[&alice], &[]);
    let _ = ds.accept(&alice.policy_commit_request(&raw(&policy), |b| b, ds.now_ms));
}

// ---------------------------------------------------------------------------------------------
// Roles: who may do what (§15.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_member_cannot_remove_the_admin_through_plain_commits() {
    let mut room = room();
    let request = room
        .bob
        .remove_request(&[room.alice.leaf()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::RemoveParticipant));
}

#[test]
fn a_member_cannot_propose_removing_the_admin() {
    let mut room = room();
    let request = room
        .bob
        .propose_remove_request(room.alice.leaf(), room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::RemoveParticipant));
}

#[test]
fn the_admin_removes_a_member_with_the_participant_list_change() {
    let mut room = room();
    let policy = without_participant(&room.policy, &room.bob);
    let bob_leaf = LeafNodeIndex::new(room.bob.leaf());
    let now = room.ds.now_ms;
    let request =
        room.alice
            .policy_commit_request(&raw(&policy), |b| b.propose_removals([bob_leaf]), now);
    let _ = room.ds.accept(&request);
}

#[test]
fn a_member_cannot_add_another_user() {
    let mut room = room();
    let carol = carol();
    let request = room
        .bob
        .add_request(vec![carol.policy_key_package()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::AddParticipant));
}

#[test]
fn adding_a_client_of_the_own_user_needs_can_add_own_client() {
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let mut allowed = room();
    let _ = allowed.ds.accept(
        &allowed
            .bob
            .add_request(vec![bob2.policy_key_package()], allowed.ds.now_ms),
    );

    let mut room = room_with(|alice, bob| {
        let mut policy = admin_policy(&[alice], &[bob]);
        policy.roles.roles[1] = role(MEMBER, "member", &[CAN_REMOVE_SELF]);
        policy
    });
    let request = room
        .bob
        .add_request(vec![bob2.policy_key_package()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::AddOwnClient));
}

#[test]
fn removing_an_own_client_needs_can_remove_self() {
    let mut room = room_with(|alice, bob| {
        let mut policy = admin_policy(&[alice], &[bob]);
        policy.roles.roles[1] = role(MEMBER, "member", &[CAN_ADD_OWN_CLIENT]);
        policy
    });
    let mut bob2 = TestClient::new("bob", "bob-2", "b.example");
    let out = room.ds.accept(
        &room
            .bob
            .add_request(vec![bob2.policy_key_package()], room.ds.now_ms),
    );
    room.bob.confirm_commit();
    TestDs::route(&out, &mut [&mut bob2]);
    let request = room.bob.remove_request(&[2], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::RemoveSelf));
}

#[test]
fn a_member_cannot_change_another_participants_role() {
    let mut room = room();
    let policy = with_participant(&room.policy, &room.alice, MEMBER);
    let request = room
        .bob
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ChangeUserRole));
}

#[test]
fn the_admin_changes_roles_only_as_its_authorized_role_changes_say() {
    let mut room = room();
    // Not listed: member -> member is no change, banned -> admin is not authorized.
    let mut carol = carol();
    let banned_carol = with_participant(&room.policy, &carol, BANNED);
    room.alice_sets(&banned_carol);
    let policy = with_participant(&room.policy, &carol, ADMIN);
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ChangeUserRole));
    // Listed: member -> admin.
    let policy = with_participant(&room.policy, &room.bob, ADMIN);
    room.alice.discard_commit();
    room.alice_sets(&policy);
    let _ = &mut carol;
}

#[test]
fn a_member_cannot_raise_its_own_role() {
    let mut room = room();
    let policy = with_participant(&room.policy, &room.bob, ADMIN);
    let request = room
        .bob
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ChangeOwnRole));
}

#[test]
fn a_member_cannot_change_or_remove_the_policy() {
    let mut room = room();
    let mut policy = room.policy.clone();
    policy.roles.roles[1]
        .role_capabilities
        .push(CAN_REMOVE_PARTICIPANT);
    let request = room
        .bob
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ChangePolicy));
    room.bob.discard_commit();
    let request = room.bob.policy_commit_request(&[], |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ChangePolicy));
    // Standalone, the same proposal is refused before it is stored.
    room.bob.discard_commit();
    let request = room
        .bob
        .policy_proposal_request(&raw(&policy), room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ChangePolicy));
}

#[test]
fn the_admin_changes_the_policy_and_it_applies_from_the_next_commit() {
    let mut room = room();
    let mut policy = room.policy.clone();
    policy.roles.roles[1]
        .role_capabilities
        .push(CAN_REMOVE_PARTICIPANT);
    room.alice_sets(&policy);
    // Bob may now remove participants.
    let _ = room.ds.accept(
        &room
            .bob
            .remove_request(&[room.alice.leaf()], room.ds.now_ms),
    );
}

#[test]
fn a_member_cannot_delete_the_room() {
    let mut room = room();
    let request = room.bob.delete_group_request(room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::DestroyRoom));
    room.bob.discard_commit();
    // With the right to delete but not to remove others, the removals are still refused.
    let mut policy = room.policy.clone();
    policy.roles.roles[1]
        .role_capabilities
        .push(CAN_DESTROY_ROOM);
    room.alice_sets(&policy);
    let request = room.bob.delete_group_request(room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::RemoveParticipant));
    room.bob.discard_commit();
    let _ = room
        .ds
        .accept(&room.alice.delete_group_request(room.ds.now_ms));
}

#[test]
fn a_member_cannot_re_initialize_the_group() {
    let mut room = room();
    let successor = room.ds.request_group_id();
    let update = forge::commit(&mut room.ds, &room.bob, &[forge::reinit(&successor)]);
    let request = room.bob.signed(
        DsRequestBody::ReInitializeGroup(GroupUpdateRequest {
            group_update: update,
        }),
        room.ds.now_ms,
    );
    room.refuse(&request, violated(PolicyViolation::ReInit));
}

// ---------------------------------------------------------------------------------------------
// The participant list and the MLS membership agree (§15.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn an_add_needs_the_participant_list_entry_in_the_same_commit_or_before() {
    let mut room = room();
    let carol = carol();
    let request = room
        .alice
        .add_request(vec![carol.policy_key_package()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ClientOfNonParticipant));
    room.alice.discard_commit();
    let policy = with_participant(&room.policy, &carol, MEMBER);
    let kp = carol.policy_key_package();
    let now = room.ds.now_ms;
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b.propose_adds([kp]), now);
    let _ = room.ds.accept(&request);
}

#[test]
fn a_ban_removes_the_banned_users_clients_in_the_same_commit() {
    let mut room = room();
    let policy = with_participant(&room.policy, &room.bob, BANNED);
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ClientOfNonParticipant));
    room.alice.discard_commit();
    let bob_leaf = LeafNodeIndex::new(room.bob.leaf());
    let now = room.ds.now_ms;
    let request =
        room.alice
            .policy_commit_request(&raw(&policy), |b| b.propose_removals([bob_leaf]), now);
    let _ = room.ds.accept(&request);
}

#[test]
fn role_maximums_hold_after_every_commit() {
    let mut room = room_with(|alice, bob| {
        let mut policy = admin_policy(&[alice], &[bob]);
        policy.roles.roles[2].maximum_participants_constraint = Some(1);
        policy
    });
    let policy = with_participant(&room.policy, &room.bob, ADMIN);
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::RoleCountOutOfBounds));
}

#[test]
fn role_minimums_hold_after_every_commit() {
    let mut room = room_with(|alice, bob| {
        let mut policy = admin_policy(&[alice], &[bob]);
        policy.roles.roles[2].minimum_participants_constraint = 1;
        policy
    });
    // The only admin steps down to member (its own role change is allowed).
    let policy = with_participant(&room.policy, &room.alice, MEMBER);
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::RoleCountOutOfBounds));
}

#[test]
fn a_roles_change_cannot_share_a_commit_with_a_participant_change() {
    let mut room = room();
    let carol = carol();
    let mut policy = with_participant(&room.policy, &carol, MEMBER);
    policy.roles.roles[1].role_description = b"ordinary".to_vec().into();
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(
        &request,
        violated(PolicyViolation::RolesWithParticipantChange),
    );
}

// ---------------------------------------------------------------------------------------------
// Operational parameters (§15.4)
// ---------------------------------------------------------------------------------------------

fn operational() -> OperationalParameters {
    OperationalParameters {
        handshake_formats: vec![1],
        external_proposal_allowed: Flag(false),
        external_commit_allowed: Flag(true),
        ..OperationalParameters::default()
    }
}

fn join_bob2(room: &mut Room) -> Vec<u8> {
    let mut bob2 = TestClient::new("bob", "bob-2", "b.example");
    let group_id = room.alice.group_id();
    let info = room.ds.group_info(&room.bob, &group_id);
    bob2.policy_external_join_request(&info)
}

#[test]
fn external_commits_follow_external_commit_allowed() {
    let mut allowed = room();
    let mut policy = allowed.policy.clone();
    policy.operational = Some(operational());
    allowed.alice_sets(&policy);
    let request = join_bob2(&mut allowed);
    let _ = allowed.ds.accept(&request);

    let mut room = room();
    let mut policy = room.policy.clone();
    policy.operational = Some(OperationalParameters {
        external_commit_allowed: Flag(false),
        ..operational()
    });
    room.alice_sets(&policy);
    let request = join_bob2(&mut room);
    room.refuse(&request, violated(PolicyViolation::ExternalCommit));
}

#[test]
fn an_external_joiner_needs_can_add_own_client() {
    let mut room = room_with(|alice, bob| {
        let mut policy = admin_policy(&[alice], &[bob]);
        policy.roles.roles[1] = role(MEMBER, "member", &[CAN_REMOVE_SELF]);
        policy
    });
    let request = join_bob2(&mut room);
    room.refuse(&request, violated(PolicyViolation::ExternalJoiner));
}

#[test]
fn max_clients_bounds_the_leaves() {
    let mut room = room();
    let mut policy = room.policy.clone();
    policy.base = Some(BaseRoomPolicy {
        multi_device: Flag(true),
        max_clients: Some(2),
        ..BaseRoomPolicy::default()
    });
    room.alice_sets(&policy);
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let request = room
        .bob
        .add_request(vec![bob2.policy_key_package()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::TooManyClients));
    // By external commit too.
    room.bob.discard_commit();
    let request = join_bob2(&mut room);
    room.refuse(&request, violated(PolicyViolation::TooManyClients));
}

#[test]
fn max_users_bounds_the_users() {
    let mut room = room();
    let carol = carol();
    let mut policy = with_participant(&room.policy, &carol, MEMBER);
    policy.base = Some(BaseRoomPolicy {
        multi_device: Flag(true),
        max_users: Some(2),
        ..BaseRoomPolicy::default()
    });
    room.alice_sets(&policy);
    let request = room
        .alice
        .add_request(vec![carol.policy_key_package()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::TooManyUsers));
    // A second client of a user already in does not count.
    room.alice.discard_commit();
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let _ = room.ds.accept(
        &room
            .bob
            .add_request(vec![bob2.policy_key_package()], room.ds.now_ms),
    );
}

#[test]
fn leaves_must_list_the_mandatory_capabilities() {
    let mut room = room();
    let mut policy = room.policy.clone();
    policy.operational = Some(OperationalParameters {
        mandatory_capabilities: ExtendedCapabilities {
            // MLS_256_DHKEMP384_AES256GCM_SHA384_P384: no test client lists it.
            cipher_suites: vec![0x0005],
            ..ExtendedCapabilities::default()
        },
        ..operational()
    });
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(
        &request,
        violated(PolicyViolation::MissingMandatoryCapability),
    );
}

#[test]
fn forbidden_proposal_and_credential_types_are_refused() {
    let mut room = room();
    let mut policy = room.policy.clone();
    policy.operational = Some(OperationalParameters {
        forbidden_capabilities: ExtendedCapabilities {
            proposals: vec![3], // remove
            ..ExtendedCapabilities::default()
        },
        ..operational()
    });
    room.alice_sets(&policy);
    let request = room
        .alice
        .remove_request(&[room.bob.leaf()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ForbiddenCapability));

    room.alice.discard_commit();
    let mut policy = room.policy.clone();
    policy.operational = Some(OperationalParameters {
        forbidden_capabilities: ExtendedCapabilities {
            credentials: vec![1], // basic
            ..ExtendedCapabilities::default()
        },
        ..operational()
    });
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::ForbiddenCapability));
}

#[test]
fn key_package_lifetimes_are_bounded_by_max_kp_lifetime() {
    let mut room = room();
    let mut carol = carol();
    // The test clients' KeyPackages cover both the hub's and the system's clock, so their
    // lifetime is this long (fixed once: it grows with the system clock).
    let lifetime = TestClient::lifetime();
    carol.fixed_lifetime = Some(lifetime);
    let span = lifetime.not_after() - lifetime.not_before();
    let mut policy = with_participant(&room.policy, &carol, MEMBER);
    policy.operational = Some(OperationalParameters {
        max_kp_lifetime: span - 1,
        ..operational()
    });
    room.alice_sets(&policy);
    let request = room
        .alice
        .add_request(vec![carol.policy_key_package()], room.ds.now_ms);
    room.refuse(&request, violated(PolicyViolation::KeyPackageLifetime));
    room.alice.discard_commit();
    policy.operational = Some(OperationalParameters {
        max_kp_lifetime: span,
        ..operational()
    });
    room.alice_sets(&policy);
    let _ = room.ds.accept(
        &room
            .alice
            .add_request(vec![carol.policy_key_package()], room.ds.now_ms),
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed and contradictory policies (§15.1)
// ---------------------------------------------------------------------------------------------

/// Alice proposes `raw` by value in a commit, and as a standalone proposal: both refused with
/// `expected`.
fn refused_policy(raw_policy: Vec<(u16, Vec<u8>)>, expected: RejectReason) {
    let mut room = room();
    let request = room
        .alice
        .policy_commit_request(&raw_policy, |b| b, room.ds.now_ms);
    room.refuse(&request, expected.clone());
    room.alice.discard_commit();
    let request = room
        .alice
        .policy_proposal_request(&raw_policy, room.ds.now_ms);
    room.refuse(&request, expected);
}

#[test]
fn a_malformed_policy_is_refused_before_anything_is_stored() {
    let room = room();
    let mut raw_policy = raw(&room.policy);
    raw_policy[0].1.push(0);
    refused_policy(
        raw_policy,
        defective(PolicyDefect::Malformed {
            extension_type: ROLES_LIST_EXTENSION_TYPE,
            detail: "1 trailing bytes after RoleData".into(),
        }),
    );
}

#[test]
fn a_participant_list_without_roles_is_refused() {
    let room = room();
    let raw_policy = raw(&room.policy)
        .into_iter()
        .filter(|(t, _)| *t != ROLES_LIST_EXTENSION_TYPE)
        .collect();
    refused_policy(
        raw_policy,
        defective(PolicyDefect::WithoutRoles {
            extension_type: PARTICIPANT_LIST_EXTENSION_TYPE,
        }),
    );
}

#[test]
fn a_user_listed_twice_is_refused() {
    let room = room();
    let mut policy = room.policy.clone();
    policy.participants.participants.push(UserRolePair {
        user: user_uri(&room.bob).into(),
        role_index: MEMBER,
    });
    refused_policy(raw(&policy), defective(PolicyDefect::Duplicate));
}

#[test]
fn an_unknown_role_is_refused() {
    let room = room();
    let carol = carol();
    let policy = with_participant(&room.policy, &carol, 7);
    refused_policy(
        raw(&policy),
        defective(PolicyDefect::UnknownRole { role_index: 7 }),
    );
}

#[test]
fn a_minimum_above_its_maximum_is_refused() {
    let room = room();
    let mut policy = room.policy.clone();
    policy.roles.roles[2].minimum_participants_constraint = 3;
    policy.roles.roles[2].maximum_participants_constraint = Some(2);
    refused_policy(raw(&policy), defective(PolicyDefect::MinAboveMax));

    let mut policy = room.policy.clone();
    policy.operational = Some(OperationalParameters {
        pending_proposal_policy: PendingProposalPolicy::RandomDelay {
            minimum_delay_ms: 10,
            maximum_delay_ms: 5,
        },
        ..operational()
    });
    refused_policy(raw(&policy), defective(PolicyDefect::MinAboveMax));
}

#[test]
fn a_capability_both_mandatory_and_forbidden_is_refused() {
    let room = room();
    let mut policy = room.policy.clone();
    let both = ExtendedCapabilities {
        proposals: vec![0xF1E0],
        ..ExtendedCapabilities::default()
    };
    policy.operational = Some(OperationalParameters {
        mandatory_capabilities: both.clone(),
        forbidden_capabilities: both,
        ..operational()
    });
    refused_policy(raw(&policy), defective(PolicyDefect::Contradictory));
}

#[test]
fn handshake_formats_without_public_message_are_refused() {
    let room = room();
    let mut policy = room.policy.clone();
    policy.operational = Some(OperationalParameters {
        handshake_formats: vec![2],
        ..operational()
    });
    refused_policy(
        raw(&policy),
        defective(PolicyDefect::PublicMessageNotAllowed),
    );
}

#[test]
fn create_group_with_a_malformed_policy_consumes_only_the_reservation() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    let mut raw_policy = raw(&admin_policy(&[&alice], &[]));
    raw_policy[1].1 = vec![0xFF];
    alice.create_group_with_raw_policy(&group_id, &ds.external_sender, &raw_policy);
    let refusal = ds.reject_consuming_reservation(
        &alice.create_group_request(ds.now_ms),
        ErrorCode::InvalidGroupInfo,
    );
    assert!(matches!(
        refusal.reason,
        RejectReason::InvalidGroupInfo(InvalidGroupInfo::RoomPolicy(PolicyDefect::Malformed {
            extension_type: PARTICIPANT_LIST_EXTENSION_TYPE,
            ..
        }))
    ));
}

#[test]
fn create_group_whose_creator_is_not_a_participant_is_refused() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let bob = TestClient::new("bob", "bob-1", "b.example");
    let group_id = ds.request_group_id();
    let policy = admin_policy(&[&bob], &[]);
    alice.create_group_with_raw_policy(&group_id, &ds.external_sender, &raw(&policy));
    let refusal = ds.reject_consuming_reservation(
        &alice.create_group_request(ds.now_ms),
        ErrorCode::NotAllowed,
    );
    assert_eq!(
        refusal.reason,
        violated(PolicyViolation::ClientOfNonParticipant)
    );
}

#[test]
fn plain_commits_remain_commits() {
    // `commits` and the policy: an update path needs no capability.
    let mut room = room();
    let request = room.bob.update_request(room.ds.now_ms);
    let _ = room.ds.accept(&request);
    let _ = commit_body;
}

#[test]
fn the_rooms_pending_proposal_policy_replaces_the_hubs() {
    use mimi_ds::{DsConfig, HubEvent, PendingProposalPolicy as HubPolicy, Status};
    // The hub lets commits leave its own proposals out for an hour; Alice's commit leaves out
    // the hub's Remove of Bob (she has not seen it).
    let attempt = |room_policy: Option<PendingProposalPolicy>| {
        let mut config = DsConfig::new("hub.example");
        config.pending_proposals = HubPolicy::GraceWindow { ms: 3_600_000 };
        let mut ds = TestDs::with_config(config);
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let mut bob = TestClient::new("bob", "bob-1", "b.example");
        let mut policy = admin_policy(&[&alice], &[&bob]);
        policy.operational = room_policy.map(|pending| OperationalParameters {
            pending_proposal_policy: pending,
            ..operational()
        });
        ds.create_policy_room(&mut alice, &mut [&mut bob], &policy);
        let group_id = alice.group_id();
        let event = HubEvent::ClientDeleted {
            signature_key: bob.signer.to_public_vec(),
        };
        assert_eq!(ds.handle_event(&group_id, &event).status, Status::Accepted);
        let request = alice.update_request(ds.now_ms);
        (ds, request)
    };
    for lenient in [None, Some(PendingProposalPolicy::Unspecified)] {
        let (mut ds, request) = attempt(lenient);
        let _ = ds.accept(&request);
    }
    for strict in [
        PendingProposalPolicy::ImmediateCommit,
        PendingProposalPolicy::RandomDelay {
            minimum_delay_ms: 0,
            maximum_delay_ms: 0,
        },
    ] {
        let (mut ds, request) = attempt(Some(strict));
        let reason = ds.reject(&request, ErrorCode::MissingPendingProposals);
        assert!(
            matches!(reason, RejectReason::MissingPendingProposals { .. }),
            "{reason:?}"
        );
    }
}

#[test]
fn a_policy_forbidding_the_groups_cipher_suite_is_refused() {
    let mut room = room();
    let mut policy = room.policy.clone();
    policy.operational = Some(OperationalParameters {
        forbidden_capabilities: ExtendedCapabilities {
            cipher_suites: vec![u16::from(mimi_ds::testing::CIPHERSUITE)],
            ..ExtendedCapabilities::default()
        },
        ..operational()
    });
    let request = room
        .alice
        .policy_commit_request(&raw(&policy), |b| b, room.ds.now_ms);
    room.refuse(&request, defective(PolicyDefect::Contradictory));
}
