//! Room-policy rules that `cargo mutants --file src/policy/enforce.rs` found untested
//! (docs/wire-format.md §15.3, §15.4): each test here kills mutants that survived
//! tests/room_policy.rs and tests/error_codes.rs. Every party is a real openmls client; each
//! refusal is checked end to end (code, named reason, no fanout, storage byte-identical).

use mimi_ds::policy::{
    BaseRoomPolicy, ExtendedCapabilities, Flag, OperationalParameters, PolicyViolation, RoomPolicy,
};
use mimi_ds::testing::policy::{admin_policy, raw, with_participant, MEMBER};
use mimi_ds::testing::{TestClient, TestDs};
use mimi_ds::wire::ErrorCode;
use mimi_ds::{NotAllowed, RejectReason};

fn violated(rule: PolicyViolation) -> RejectReason {
    RejectReason::NotAllowed(NotAllowed::RoomPolicy(rule))
}

/// Alice (admin) and Bob (member) in a room under `policy`.
struct Room {
    ds: TestDs,
    alice: TestClient,
    bob: TestClient,
    policy: RoomPolicy,
}

impl Room {
    fn new(policy: impl FnOnce(&TestClient, &TestClient) -> RoomPolicy) -> Self {
        let mut ds = TestDs::new("hub.example");
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let mut bob = TestClient::new("bob", "bob-1", "b.example");
        let policy = policy(&alice, &bob);
        ds.create_policy_room(&mut alice, &mut [&mut bob], &policy);
        Self {
            ds,
            alice,
            bob,
            policy,
        }
    }

    fn admin_and_member() -> Self {
        Self::new(|alice, bob| admin_policy(&[alice], &[bob]))
    }

    /// Alice commits `policy`; the hub must accept it, and Bob follows.
    fn alice_sets(&mut self, policy: &RoomPolicy) {
        let request = self
            .alice
            .policy_commit_request(&raw(policy), |b| b, self.ds.now_ms);
        let out = self.ds.accept(&request);
        self.alice.confirm_commit();
        TestDs::route(&out, &mut [&mut self.bob]);
        self.bob.process_inbox();
        self.policy = policy.clone();
    }

    /// Alice commits `policy`; the hub must refuse it with `not_allowed` and `rule`.
    fn alice_is_refused(&mut self, policy: &RoomPolicy, rule: PolicyViolation) {
        let request = self
            .alice
            .policy_commit_request(&raw(policy), |b| b, self.ds.now_ms);
        assert_eq!(
            self.ds.reject(&request, ErrorCode::NotAllowed),
            violated(rule)
        );
        self.alice.discard_commit();
    }

    /// Bob commits `policy`; the hub must refuse it with `not_allowed` and `rule`.
    fn bob_is_refused(&mut self, policy: &RoomPolicy, rule: PolicyViolation) {
        let request = self
            .bob
            .policy_commit_request(&raw(policy), |b| b, self.ds.now_ms);
        assert_eq!(
            self.ds.reject(&request, ErrorCode::NotAllowed),
            violated(rule)
        );
        self.bob.discard_commit();
    }

    /// The current policy with operational parameters making `mandatory` mandatory.
    fn mandating(&self, mandatory: ExtendedCapabilities) -> RoomPolicy {
        let mut policy = self.policy.clone();
        policy.operational = Some(OperationalParameters {
            mandatory_capabilities: mandatory,
            ..operational()
        });
        policy
    }
}

fn operational() -> OperationalParameters {
    OperationalParameters {
        handshake_formats: vec![1],
        external_proposal_allowed: Flag(false),
        external_commit_allowed: Flag(true),
        ..OperationalParameters::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Mandatory capabilities (rule R-POL-17, §15.4)
// ---------------------------------------------------------------------------------------------

/// An extension type no test client lists in its leaf capabilities.
const UNLISTED_EXTENSION: u16 = 0xF1F0;
/// A proposal type no test client lists in its leaf capabilities.
const UNLISTED_PROPOSAL: u16 = 0xF1F1;

#[test]
fn a_mandatory_extension_is_met_by_default_extensions_and_by_listed_ones_only() {
    let mut room = Room::admin_and_member();
    // application_id (1) is a default extension (RFC 9420 §7.2), never listed; the policy's
    // own roles list (0xF1E0) is listed by every leaf of the room.
    for met in [vec![1], vec![0xF1E0], vec![1, 0xF1E0]] {
        let policy = room.mandating(ExtendedCapabilities {
            extensions: met,
            ..ExtendedCapabilities::default()
        });
        room.alice_sets(&policy);
    }
    let policy = room.mandating(ExtendedCapabilities {
        extensions: vec![1, UNLISTED_EXTENSION],
        ..ExtendedCapabilities::default()
    });
    room.alice_is_refused(&policy, PolicyViolation::MissingMandatoryCapability);
}

#[test]
fn a_mandatory_proposal_type_is_met_by_default_types_only_unless_listed() {
    let mut room = Room::admin_and_member();
    // add (1) and group_context_extensions (7) are default proposal types: no leaf lists them.
    let policy = room.mandating(ExtendedCapabilities {
        proposals: vec![1, 7],
        ..ExtendedCapabilities::default()
    });
    room.alice_sets(&policy);
    let policy = room.mandating(ExtendedCapabilities {
        proposals: vec![UNLISTED_PROPOSAL],
        ..ExtendedCapabilities::default()
    });
    room.alice_is_refused(&policy, PolicyViolation::MissingMandatoryCapability);
}

#[test]
fn a_mandatory_credential_type_must_be_listed() {
    let mut room = Room::admin_and_member();
    // Every test client lists basic (1), none x509 (2).
    let policy = room.mandating(ExtendedCapabilities {
        credentials: vec![1],
        ..ExtendedCapabilities::default()
    });
    room.alice_sets(&policy);
    let policy = room.mandating(ExtendedCapabilities {
        credentials: vec![2],
        ..ExtendedCapabilities::default()
    });
    room.alice_is_refused(&policy, PolicyViolation::MissingMandatoryCapability);
}

#[test]
fn a_mandatory_protocol_version_must_be_listed() {
    let mut room = Room::admin_and_member();
    let policy = room.mandating(ExtendedCapabilities {
        versions: vec![1],
        ..ExtendedCapabilities::default()
    });
    room.alice_sets(&policy);
    let policy = room.mandating(ExtendedCapabilities {
        versions: vec![2],
        ..ExtendedCapabilities::default()
    });
    room.alice_is_refused(&policy, PolicyViolation::MissingMandatoryCapability);
}

// ---------------------------------------------------------------------------------------------
// Which policy changes need canChangeRoomPolicy (rule R-POL-7, §15.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_member_cannot_change_only_the_operational_parameters_or_only_the_base_policy() {
    let mut room = Room::admin_and_member();
    let mut policy = room.policy.clone();
    policy.operational = Some(operational());
    room.bob_is_refused(&policy, PolicyViolation::ChangePolicy);
    let mut policy = room.policy.clone();
    policy.base = Some(BaseRoomPolicy {
        max_users: Some(10),
        ..BaseRoomPolicy::default()
    });
    room.bob_is_refused(&policy, PolicyViolation::ChangePolicy);
    // The admin may do both.
    policy.operational = Some(operational());
    room.alice_sets(&policy);
}

// ---------------------------------------------------------------------------------------------
// Role counts over participants with a client (rule R-POL-11, §15.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn active_participant_maximums_count_users_with_a_client_not_listed_users() {
    let carol = TestClient::new("carol", "carol-1", "c.example");
    let mut room = Room::new(|alice, bob| {
        let mut policy = admin_policy(&[alice], &[bob]);
        policy.roles.roles[1].maximum_active_participants_constraint = Some(1);
        policy
    });
    // Carol listed as a member without a client: two members, one active.
    let policy = with_participant(&room.policy, &carol, MEMBER);
    room.alice_sets(&policy);
    // Her client would make two active members.
    let request = room
        .alice
        .add_request(vec![carol.policy_key_package()], room.ds.now_ms);
    assert_eq!(
        room.ds.reject(&request, ErrorCode::NotAllowed),
        violated(PolicyViolation::RoleCountOutOfBounds)
    );
}

#[test]
fn active_participant_minimums_hold_after_every_commit() {
    let mut room = Room::admin_and_member();
    let mut policy = room.policy.clone();
    policy.roles.roles[1].minimum_active_participants_constraint = 1;
    room.alice_sets(&policy);
    // Removing Bob's only client leaves the member role with no active participant, though
    // Bob is still listed.
    let request = room
        .alice
        .remove_request(&[room.bob.leaf()], room.ds.now_ms);
    assert_eq!(
        room.ds.reject(&request, ErrorCode::NotAllowed),
        violated(PolicyViolation::RoleCountOutOfBounds)
    );
}

// ---------------------------------------------------------------------------------------------
// The hand-written codecs: `Size` agrees with `Serialize` (§15.1)
// ---------------------------------------------------------------------------------------------

/// `tls_serialized_len` is what a length prefix around the value is computed from (a `Vec` of
/// it, a derived struct inside one), so it must be the length `tls_serialize` writes.
fn size_matches_encoding<T: tls_codec::Serialize + std::fmt::Debug>(value: &T) {
    let encoded = value.tls_serialize_detached().expect("encode");
    assert_eq!(value.tls_serialized_len(), encoded.len(), "{value:?}");
}

#[test]
fn the_hand_written_codecs_report_the_size_they_write() {
    use mimi_ds::policy::PendingProposalPolicy;
    for flag in [Flag(false), Flag(true)] {
        size_matches_encoding(&flag);
    }
    for pending in [
        PendingProposalPolicy::Unspecified,
        PendingProposalPolicy::ImmediateCommit,
        PendingProposalPolicy::RandomDelay {
            minimum_delay_ms: 1,
            maximum_delay_ms: 2,
        },
        PendingProposalPolicy::Extension {
            id_of_strategy_params: 3,
        },
    ] {
        size_matches_encoding(&pending);
    }
    // And so inside the derived structures that contain them.
    size_matches_encoding(&OperationalParameters {
        pending_proposal_policy: PendingProposalPolicy::RandomDelay {
            minimum_delay_ms: 1,
            maximum_delay_ms: 2,
        },
        ..operational()
    });
    size_matches_encoding(&BaseRoomPolicy::default());
}
