//! The operational parameters and base-policy flags the hub enforces beyond roles
//! (docs/wire-format.md §15.4, rules R-POL-27 to R-POL-32): the room's pending-proposal policy
//! and epoch tolerance for application messages, `leaf_node_update_time`, and the
//! `multi_device` and `fixed_membership` flags. Every party is a real openmls client; each
//! refusal is checked end to end (code, named reason, storage byte-identical).

use mimi_ds::policy::{
    AppMessagePolicy, BaseRoomPolicy, Flag, MinDefaultMaxTime, OperationalParameters,
    PendingProposalPolicy, PolicyViolation, RoomPolicy,
};
use mimi_ds::testing::policy::{admin_policy, raw, with_participant, without_participant, MEMBER};
use mimi_ds::testing::{TestClient, TestDs};
use mimi_ds::wire::{decode_exact, DsRequest, DsRequestBody, ErrorCode};
use mimi_ds::{DsConfig, HubEvent, NotAllowed, RejectReason};
use openmls::prelude::LeafNodeIndex;

const DOMAIN: &str = "hub.example";

fn violated(rule: PolicyViolation) -> RejectReason {
    RejectReason::NotAllowed(NotAllowed::RoomPolicy(rule))
}

fn body_of(request: &[u8]) -> DsRequestBody {
    decode_exact::<DsRequest>(request).unwrap().body
}

/// Operational parameters that allow what the tests need and set nothing else.
fn operational() -> OperationalParameters {
    OperationalParameters {
        handshake_formats: vec![1],
        external_commit_allowed: Flag(true),
        ..OperationalParameters::default()
    }
}

/// Alice (admin, leaf 0), Bob and Carol (members) in a room under `policy` (built from the
/// admin policy listing all three), on a hub with `config`.
struct Room {
    ds: TestDs,
    alice: TestClient,
    bob: TestClient,
    carol: TestClient,
}

impl Room {
    fn new(config: DsConfig, policy: impl FnOnce(RoomPolicy) -> RoomPolicy) -> Self {
        let mut ds = TestDs::with_config(config);
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let mut bob = TestClient::new("bob", "bob-1", "b.example");
        let mut carol = TestClient::new("carol", "carol-1", "c.example");
        let policy = policy(admin_policy(&[&alice], &[&bob, &carol]));
        ds.create_policy_room(&mut alice, &mut [&mut bob, &mut carol], &policy);
        Self {
            ds,
            alice,
            bob,
            carol,
        }
    }

    fn with_operational(config: DsConfig, operational: OperationalParameters) -> Self {
        Self::new(config, |mut policy| {
            policy.operational = Some(operational);
            policy
        })
    }

    fn with_base(base: BaseRoomPolicy) -> Self {
        Self::new(DsConfig::new(DOMAIN), |mut policy| {
            policy.base = Some(base);
            policy
        })
    }

    fn refuse(&mut self, request: &[u8], code: ErrorCode, expected: RejectReason) {
        assert_eq!(self.ds.reject(request, code), expected);
    }

    /// The hub issues a Remove of Carol (her client was deleted at her provider).
    fn hub_removes_carol(&mut self) {
        let group_id = self.alice.group_id();
        let event = HubEvent::ClientDeleted {
            signature_key: self.carol.signer.to_public_vec(),
        };
        let _ = self.ds.handle_event(&group_id, &event);
    }

    /// Alice commits an Update; Bob and Carol do not process it.
    fn alice_advances_the_epoch(&mut self) {
        let _ = self.ds.accept(&self.alice.update_request(self.ds.now_ms));
        self.alice.confirm_commit();
    }
}

// ---------------------------------------------------------------------------------------------
// R-POL-27: the room's pending-proposal policy for application messages
// ---------------------------------------------------------------------------------------------

/// The hub is strict (messages refused while its removals are pending); the room's
/// `random_delay` lets them flow for `maximum_delay_ms`, then refuses them.
#[test]
fn a_rooms_random_delay_lets_messages_flow_while_the_hubs_removals_wait() {
    let mut room = Room::with_operational(
        DsConfig::new(DOMAIN),
        OperationalParameters {
            pending_proposal_policy: PendingProposalPolicy::RandomDelay {
                minimum_delay_ms: 0,
                maximum_delay_ms: 60_000,
            },
            ..operational()
        },
    );
    room.hub_removes_carol();
    let _ = room.ds.accept(
        &room
            .bob
            .message_request(b"within the delay", room.ds.now_ms),
    );
    room.ds.advance(60_000);
    let request = room.bob.message_request(b"after the delay", room.ds.now_ms);
    room.refuse(
        &request,
        ErrorCode::MissingPendingProposals,
        RejectReason::HubRemovalsPending,
    );
}

/// The hub has a grace window; the room's `immediate_commit` refuses messages at once.
#[test]
fn a_rooms_immediate_commit_refuses_messages_while_the_hubs_removals_wait() {
    let mut config = DsConfig::new(DOMAIN);
    config.pending_proposals = mimi_ds::PendingProposalPolicy::GraceWindow { ms: 3_600_000 };
    let mut room = Room::with_operational(
        config,
        OperationalParameters {
            pending_proposal_policy: PendingProposalPolicy::ImmediateCommit,
            ..operational()
        },
    );
    room.hub_removes_carol();
    let request = room.bob.message_request(b"hello", room.ds.now_ms);
    room.refuse(
        &request,
        ErrorCode::MissingPendingProposals,
        RejectReason::HubRemovalsPending,
    );
}

// ---------------------------------------------------------------------------------------------
// R-POL-28: the room's application-message epoch tolerance
// ---------------------------------------------------------------------------------------------

fn tolerance(epochs: u8) -> OperationalParameters {
    OperationalParameters {
        app_message_policy: AppMessagePolicy {
            epoch_tolerance: epochs,
            ..AppMessagePolicy::default()
        },
        ..operational()
    }
}

/// The hub takes only current-epoch messages; the room tolerates one epoch back, and its
/// replay memory keeps the older epoch's messages as long as they are accepted.
#[test]
fn a_rooms_epoch_tolerance_replaces_the_hubs() {
    let mut room = Room::with_operational(DsConfig::new(DOMAIN), tolerance(1));
    let sent = room.bob.message_request(b"sent before", room.ds.now_ms);
    let _ = room.ds.accept(&sent);
    let late = room.bob.message_request(b"arrives late", room.ds.now_ms);
    room.alice_advances_the_epoch();
    let _ = room.ds.accept(&late);
    // The commit kept the previous epoch's messages in the replay memory.
    room.ds.advance(1);
    let replay = room.carol.signed(body_of(&sent), room.ds.now_ms);
    room.refuse(
        &replay,
        ErrorCode::ReplayedMessage,
        RejectReason::ReplayedMessage,
    );
}

/// The hub tolerates an epoch back; the room tolerates none.
#[test]
fn a_rooms_zero_tolerance_replaces_a_tolerant_hubs() {
    let mut config = DsConfig::new(DOMAIN);
    config.app_message_epoch_tolerance = 1;
    let mut room = Room::with_operational(config, tolerance(0));
    let late = room.bob.message_request(b"arrives late", room.ds.now_ms);
    room.alice_advances_the_epoch();
    let current = room.alice.epoch();
    room.refuse(
        &late,
        ErrorCode::WrongEpoch,
        RejectReason::WrongEpoch {
            current,
            message_epoch: current - 1,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// R-POL-29: leaf_node_update_time
// ---------------------------------------------------------------------------------------------

/// A room whose `leaf_node_update_time` maximum is `max_s` seconds.
fn room_with_max_leaf_age(max_s: u64) -> Room {
    Room::with_operational(
        DsConfig::new(DOMAIN),
        OperationalParameters {
            leaf_node_update_time: MinDefaultMaxTime {
                minimum_time: 0,
                default_time: max_s,
                maximum_time: max_s,
            },
            ..operational()
        },
    )
}

/// A leaf whose node is older than the room's maximum may neither send messages nor commit
/// without an update path; a commit with one updates it, and it sends again.
#[test]
fn a_stale_leaf_must_update_before_it_sends() {
    let max_s = 60;
    let mut room = room_with_max_leaf_age(max_s);
    let _ = room
        .ds
        .accept(&room.bob.message_request(b"fresh", room.ds.now_ms));
    room.ds.advance(max_s * 1000 + 1);
    let stale = violated(PolicyViolation::StaleLeaf);
    let request = room.bob.message_request(b"stale", room.ds.now_ms);
    room.refuse(&request, ErrorCode::NotAllowed, stale.clone());
    // An Add-only commit has no update path (RFC 9420 §12.4).
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let request = room
        .bob
        .add_request(vec![bob2.policy_key_package()], room.ds.now_ms);
    room.refuse(&request, ErrorCode::NotAllowed, stale.clone());
    room.bob.discard_commit();

    let out = room.ds.accept(&room.bob.update_request(room.ds.now_ms));
    room.bob.confirm_commit();
    TestDs::route(&out, &mut [&mut room.alice, &mut room.carol]);
    let _ = room.alice.process_inbox();
    let _ = room
        .ds
        .accept(&room.bob.message_request(b"updated", room.ds.now_ms));
    // Alice's leaf was not updated by Bob's commit: still stale.
    let request = room.alice.message_request(b"stale", room.ds.now_ms);
    room.refuse(&request, ErrorCode::NotAllowed, stale.clone());
}

/// The maximum is inclusive: a leaf exactly `maximum_time` old still sends; one millisecond
/// later it is stale.
#[test]
fn a_leaf_exactly_at_the_maximum_age_still_sends() {
    let max_s = 60;
    let mut room = room_with_max_leaf_age(max_s);
    room.ds.advance(max_s * 1000);
    let _ = room
        .ds
        .accept(&room.bob.message_request(b"at the limit", room.ds.now_ms));
    room.ds.advance(1);
    let request = room.bob.message_request(b"past it", room.ds.now_ms);
    room.refuse(
        &request,
        ErrorCode::NotAllowed,
        violated(PolicyViolation::StaleLeaf),
    );
}

// ---------------------------------------------------------------------------------------------
// R-POL-30, R-POL-31: BaseRoomPolicy flags
// ---------------------------------------------------------------------------------------------

/// Without `multi_device` a user has one client: Bob's second is refused; with it, accepted.
#[test]
fn without_multi_device_a_user_has_one_client() {
    let mut room = Room::with_base(BaseRoomPolicy::default());
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let request = room
        .bob
        .add_request(vec![bob2.policy_key_package()], room.ds.now_ms);
    room.refuse(
        &request,
        ErrorCode::NotAllowed,
        violated(PolicyViolation::MultiDeviceNotAllowed),
    );

    let mut room = Room::with_base(BaseRoomPolicy {
        multi_device: Flag(true),
        ..BaseRoomPolicy::default()
    });
    let _ = room.ds.accept(
        &room
            .bob
            .add_request(vec![bob2.policy_key_package()], room.ds.now_ms),
    );
}

fn fixed() -> BaseRoomPolicy {
    BaseRoomPolicy {
        fixed_membership: Flag(true),
        ..BaseRoomPolicy::default()
    }
}

/// With `fixed_membership` the admin can neither add a user nor remove one, though its role
/// allows both; in a room without the flag the same commits are accepted.
#[test]
fn a_fixed_membership_room_keeps_its_users() {
    let dave = TestClient::new("dave", "dave-1", "d.example");
    for fixed_membership in [true, false] {
        let base = if fixed_membership {
            fixed()
        } else {
            BaseRoomPolicy::default()
        };
        let mut room = Room::with_base(base.clone());
        let mut policy = admin_policy(&[&room.alice], &[&room.bob, &room.carol]);
        policy.base = Some(base);
        let added = with_participant(&policy, &dave, MEMBER);
        let key_package = dave.policy_key_package();
        let now = room.ds.now_ms;
        let add =
            room.alice
                .policy_commit_request(&raw(&added), |b| b.propose_adds([key_package]), now);
        let removed = without_participant(&policy, &room.bob);
        let bob_leaf = LeafNodeIndex::new(room.bob.leaf());
        if fixed_membership {
            let rule = violated(PolicyViolation::FixedMembership);
            room.refuse(&add, ErrorCode::NotAllowed, rule.clone());
            room.alice.discard_commit();
            let remove = room.alice.policy_commit_request(
                &raw(&removed),
                |b| b.propose_removals([bob_leaf]),
                now,
            );
            room.refuse(&remove, ErrorCode::NotAllowed, rule);
        } else {
            let _ = room.ds.accept(&add);
            room.alice.confirm_commit();
            let remove = room.alice.policy_commit_request(
                &raw(&with_participant(&removed, &dave, MEMBER)),
                |b| b.propose_removals([bob_leaf]),
                now,
            );
            let _ = room.ds.accept(&remove);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// R-POL-32: pseudonyms_allowed
// ---------------------------------------------------------------------------------------------

/// A pseudonymous client creates a policed, pseudonymous room (every leaf must then hold a
/// pseudonymous credential, wire-format.md §14.1) whose base policy sets `pseudonyms_allowed`
/// as given. Returns the DS and the `create_group` request.
fn pseudonymous_room(pseudonyms_allowed: bool) -> (TestDs, Vec<u8>) {
    use mimi_ds::policy::{ParticipantListData, UserRolePair, ROOM_POLICY_EXTENSION_TYPES};
    use mimi_ds::pseudonym::{PseudonymKind, PSEUDONYMOUS_CREDENTIAL_TYPE};
    use mimi_ds::testing::policy::{policy_capabilities, ADMIN};
    use mimi_ds::testing::pseudonymous::{
        random_connection_key, random_pseudonym, PseudonymousClient,
    };
    use openmls::prelude::{
        Capabilities, CredentialType, Extension, ExtensionType, RequiredCapabilitiesExtension,
        UnknownExtension,
    };

    let mut ds = TestDs::new(DOMAIN);
    let user = random_pseudonym(PseudonymKind::User, "a.example");
    let mut alice = PseudonymousClient::new(
        "alice",
        "alice-1",
        "a.example",
        &user,
        &random_connection_key(),
    );
    let mut policy = admin_policy(&[], &[]);
    policy.participants = ParticipantListData {
        participants: vec![UserRolePair {
            user: user.uri.clone(),
            role_index: ADMIN,
        }],
    };
    policy.base = Some(BaseRoomPolicy {
        pseudonyms_allowed: Flag(pseudonyms_allowed),
        ..BaseRoomPolicy::default()
    });
    let pseudonymous = CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE);
    let base = policy_capabilities();
    let capabilities = Capabilities::new(
        None,
        Some(&[mimi_ds::testing::CIPHERSUITE]),
        Some(base.extensions()),
        None,
        Some(&[CredentialType::Basic, pseudonymous]),
    );
    let mut extensions = vec![
        Extension::ExternalSenders(vec![ds.external_sender.clone()]),
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
            &ROOM_POLICY_EXTENSION_TYPES.map(ExtensionType::Unknown),
            &[],
            &[pseudonymous],
        )),
    ];
    extensions.extend(
        raw(&policy)
            .into_iter()
            .map(|(t, data)| Extension::Unknown(t, UnknownExtension(data))),
    );
    let group_id = ds.request_group_id();
    alice
        .client
        .create_group_with(&group_id, capabilities, extensions);
    let request = alice.client.create_group_request(ds.now_ms);
    (ds, request)
}

/// Without `pseudonyms_allowed` no leaf may hold a pseudonymous credential; with it, the same
/// room is created.
#[test]
fn without_pseudonyms_allowed_pseudonymous_leaves_are_refused() {
    let (mut ds, request) = pseudonymous_room(false);
    let refusal = ds.reject_consuming_reservation(&request, ErrorCode::NotAllowed);
    assert_eq!(
        refusal.reason,
        violated(PolicyViolation::PseudonymsNotAllowed)
    );
    let (mut ds, request) = pseudonymous_room(true);
    let _ = ds.accept(&request);
}
