//! MLS AppDataUpdate proposals (draft-ietf-mls-extensions §4.7, proposal type 0x0008;
//! wire-format.md §15.7) at a hub built with the `app-data-update` feature: real openmls 0.9
//! clients (`extensions-draft`) propose and commit them; the hub accepts them only for the
//! components registered in `DsConfig::app_data_components`, applies them with the registered
//! semantics when it stages the commit, and refuses each broken rule with its named reason and
//! storage untouched.

use mimi_ds::app_data::{AppDataComponents, ReplaceValue};
use mimi_ds::policy::capability::*;
use mimi_ds::policy::PolicyViolation;
use mimi_ds::policy::RoomPolicy;
use mimi_ds::testing::app_data::{client_components, TEST_COMPONENT};
use mimi_ds::testing::mls_bytes;
use mimi_ds::testing::policy::{admin_policy, ADMIN};
use mimi_ds::testing::{decode_response, ExternalJoinOptions, Received, TestClient, TestDs};
use mimi_ds::wire::ProposalsRequest;
use mimi_ds::wire::{DsRequestBody, DsResponseBody, ErrorCode};
use mimi_ds::{DsConfig, InvalidProposal, NotAllowed, ProposalConflict, RejectReason};
use openmls::component::ComponentData;
use openmls::extensions::{AppDataDictionary, AppDataDictionaryExtension};
use openmls::group::AppDataDictionaryUpdater;
use openmls::prelude::{
    AppDataUpdateProposal, Extension, MlsMessageBodyIn, Proposal, PublicMessageIn,
};

/// A component the clients do not know and the hub does not register.
const UNKNOWN_COMPONENT: u16 = 0x8002;

/// A hub that knows the clients' components.
fn hub() -> TestDs {
    hub_with(client_components())
}

fn hub_with(components: AppDataComponents) -> TestDs {
    let mut config = DsConfig::new("hub.example");
    config.app_data_components = components;
    TestDs::with_config(config)
}

/// Alice, Bob and Carol in a group whose leaves all support AppDataUpdate, with `policy` if
/// given (Alice and Carol admins, Bob a member of [`policy_with_app_data`]).
fn trio(
    mut ds: TestDs,
    policy: Option<RoomPolicy>,
) -> (TestDs, TestClient, TestClient, TestClient) {
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let group_id = ds.request_group_id();
    let extensions = policy
        .map(|p| p.extensions().expect("policy"))
        .unwrap_or_default();
    alice.create_group_with_app_data(&group_id, &ds.external_sender, extensions);
    let _ = ds.accept(&alice.create_group_request(ds.now_ms));
    let key_packages = vec![
        bob.key_package_with_app_data(),
        carol.key_package_with_app_data(),
    ];
    let out = ds.accept(&alice.add_request(key_packages, ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    for joiner in [&mut bob, &mut carol] {
        let Some(Received::Welcome(welcome)) = joiner.process_inbox().pop() else {
            panic!("no Welcome")
        };
        let (request, processed) = joiner.welcome_info_request(&welcome, ds.now_ms);
        let DsResponseBody::WelcomeInfo(info) =
            decode_response(&ds.process(&request).response).body
        else {
            panic!("welcome_info refused")
        };
        joiner.join_with_tree(processed, &info.ratchet_tree);
    }
    ds.advance(1);
    (ds, alice, bob, carol)
}

/// [`admin_policy`] with Alice and Carol admins that may update the application data, and Bob
/// a member that may not.
fn policy_with_app_data(alice: &TestClient, bob: &TestClient, carol: &TestClient) -> RoomPolicy {
    let mut policy = admin_policy(&[alice, carol], &[bob]);
    for role in &mut policy.roles.roles {
        if role.role_index == ADMIN {
            role.role_capabilities.push(CAN_UPDATE_APP_DATA);
        }
    }
    policy
}

/// Drops the client's own refused proposals, so its next commit does not carry them.
fn forget_proposals(client: &mut TestClient) {
    let storage = openmls_traits::OpenMlsProvider::storage(&client.provider);
    client
        .group
        .as_mut()
        .expect("client has a group")
        .clear_pending_proposals(storage)
        .expect("clear");
}

fn invalid(reason: RejectReason) -> InvalidProposal {
    match reason {
        RejectReason::InvalidProposal { reason, .. } => reason,
        other => panic!("expected invalid_proposal, got {other:?}"),
    }
}

/// `proposer`'s update of [`TEST_COMPONENT`] to `value`, accepted and delivered to `others`.
fn propose_update(
    ds: &mut TestDs,
    proposer: &mut TestClient,
    others: &mut [&mut TestClient],
    value: &[u8],
) {
    let out = ds.accept(&proposer.propose_app_data_request(
        TEST_COMPONENT,
        Some(value.to_vec()),
        ds.now_ms,
    ));
    TestDs::route(&out, others);
    for other in others.iter_mut() {
        assert_eq!(other.process_inbox(), vec![Received::Proposal]);
    }
}

/// Alice's update of [`TEST_COMPONENT`] to `value`, accepted and delivered to Bob and Carol.
fn pending_update(
    ds: &mut TestDs,
    alice: &mut TestClient,
    bob: &mut TestClient,
    carol: &mut TestClient,
    value: &[u8],
) {
    propose_update(ds, alice, &mut [bob, carol], value);
}

/// `committer` commits what is pending; the others process it.
fn commit_pending(ds: &mut TestDs, committer: &mut TestClient, others: &mut [&mut TestClient]) {
    let out = ds.accept(&committer.commit_app_data_request(Vec::new(), None, ds.now_ms));
    committer.confirm_commit();
    TestDs::route(&out, others);
    for other in others.iter_mut() {
        assert!(matches!(
            other.process_inbox().as_slice(),
            [Received::Commit { removed: false, .. }]
        ));
    }
}

#[test]
fn a_pending_app_data_update_is_accepted_served_and_committed_by_reference() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(hub(), None);
    pending_update(&mut ds, &mut alice, &mut bob, &mut carol, b"blue");

    let info = ds.group_info(&carol, &carol.group_id());
    assert_eq!(info.pending_proposals.len(), 1);
    assert_eq!(info.pending_proposals[0].hub_accepted_time, ds.now_ms);

    // Bob commits it by reference. The hub stages the commit with its own registry and then
    // checks Bob's GroupInfo, which carries the new GroupContext, against its merged state: so
    // accepting it shows the hub computed the dictionary Bob computed.
    commit_pending(&mut ds, &mut bob, &mut [&mut alice, &mut carol]);
    for member in [&alice, &bob, &carol] {
        assert_eq!(member.app_data(TEST_COMPONENT), Some(b"blue".to_vec()));
    }
    assert!(ds
        .group_info(&carol, &carol.group_id())
        .pending_proposals
        .is_empty());

    // A remove of the state that now exists, by value in Carol's commit.
    let remove = AppDataUpdateProposal::remove(TEST_COMPONENT);
    let out = ds.accept(&carol.commit_app_data_request(vec![remove], None, ds.now_ms));
    carol.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    alice.process_inbox();
    bob.process_inbox();
    for member in [&alice, &bob, &carol] {
        assert_eq!(member.app_data(TEST_COMPONENT), None);
    }
}

#[test]
fn the_hub_applies_its_own_semantics_and_refuses_a_commit_whose_group_info_differs() {
    // The hub's semantics for the component append; the clients' replace. The committer's
    // GroupInfo then does not match the hub's state (rule R-GI-*, wire-format.md §4.3.2).
    struct Append;
    impl mimi_ds::app_data::AppDataComponent for Append {
        fn apply(
            &self,
            current: Option<&[u8]>,
            update: &[u8],
        ) -> Result<Vec<u8>, mimi_ds::app_data::UpdateRefused> {
            Ok([current.unwrap_or_default(), update].concat())
        }
    }
    let (mut ds, mut alice, mut bob, mut carol) = trio(
        hub_with(AppDataComponents::new().with(TEST_COMPONENT, Append)),
        None,
    );
    pending_update(&mut ds, &mut alice, &mut bob, &mut carol, b"blue");
    commit_pending(&mut ds, &mut bob, &mut [&mut alice, &mut carol]);
    pending_update(&mut ds, &mut alice, &mut bob, &mut carol, b"red");
    let request = bob.commit_app_data_request(Vec::new(), None, ds.now_ms);
    let reason = ds.reject(&request, ErrorCode::InvalidGroupInfo);
    assert!(
        matches!(reason, RejectReason::InvalidGroupInfo(_)),
        "{reason:?}"
    );
}

#[test]
fn an_app_data_update_for_an_unregistered_component_is_refused() {
    let (mut ds, mut alice, _bob, _carol) = trio(hub(), None);
    // Rule R-PROP-7, as a pending proposal...
    let request = alice.propose_app_data_request(UNKNOWN_COMPONENT, Some(b"x".to_vec()), ds.now_ms);
    assert_eq!(
        invalid(ds.reject(&request, ErrorCode::InvalidProposal)),
        InvalidProposal::AppDataComponentUnknown {
            component_id: UNKNOWN_COMPONENT
        }
    );
    forget_proposals(&mut alice);
    // ...and by value in a commit (the client's own semantics for it: replace).
    let mut updater = AppDataDictionaryUpdater::new(None);
    updater.set(ComponentData::from_parts(
        UNKNOWN_COMPONENT,
        b"x".to_vec().into(),
    ));
    let request = alice.commit_app_data_request(
        vec![AppDataUpdateProposal::update(
            UNKNOWN_COMPONENT,
            b"x".to_vec(),
        )],
        updater.changes(),
        ds.now_ms,
    );
    assert_eq!(
        invalid(ds.reject(&request, ErrorCode::InvalidProposal)),
        InvalidProposal::AppDataComponentUnknown {
            component_id: UNKNOWN_COMPONENT
        }
    );
}

#[test]
fn an_app_data_remove_of_absent_state_is_refused() {
    let (mut ds, mut alice, _bob, _carol) = trio(hub(), None);
    // Rule R-PROP-8: nothing is stored for the component yet.
    let request = alice.propose_app_data_request(TEST_COMPONENT, None, ds.now_ms);
    assert_eq!(
        invalid(ds.reject(&request, ErrorCode::InvalidProposal)),
        InvalidProposal::AppDataRemoveOfAbsentState {
            component_id: TEST_COMPONENT
        }
    );
    forget_proposals(&mut alice);
    let mut updater = AppDataDictionaryUpdater::new(None);
    updater.remove(&TEST_COMPONENT);
    let request = alice.commit_app_data_request(
        vec![AppDataUpdateProposal::remove(TEST_COMPONENT)],
        updater.changes(),
        ds.now_ms,
    );
    assert_eq!(
        invalid(ds.reject(&request, ErrorCode::InvalidProposal)),
        InvalidProposal::AppDataRemoveOfAbsentState {
            component_id: TEST_COMPONENT
        }
    );
}

#[test]
fn an_update_its_component_refuses_is_refused() {
    // The hub's semantics for the component take at most 4 bytes.
    let components = AppDataComponents::new().with(TEST_COMPONENT, ReplaceValue::new(4));
    let (mut ds, mut alice, _bob, _carol) = trio(hub_with(components), None);
    // Rule R-PROP-9.
    let request =
        alice.propose_app_data_request(TEST_COMPONENT, Some(b"too long".to_vec()), ds.now_ms);
    assert_eq!(
        invalid(ds.reject(&request, ErrorCode::InvalidProposal)),
        InvalidProposal::AppDataUpdateRefused {
            component_id: TEST_COMPONENT
        }
    );
    forget_proposals(&mut alice);
    let request = alice.commit_app_data_request(
        vec![AppDataUpdateProposal::update(
            TEST_COMPONENT,
            b"too long".to_vec(),
        )],
        None,
        ds.now_ms,
    );
    assert_eq!(
        invalid(ds.reject(&request, ErrorCode::InvalidProposal)),
        InvalidProposal::AppDataUpdateRefused {
            component_id: TEST_COMPONENT
        }
    );
    // Within the bound it is accepted.
    alice.discard_commit();
    let request = alice.propose_app_data_request(TEST_COMPONENT, Some(b"ok".to_vec()), ds.now_ms);
    let _ = ds.accept(&request);
}

#[test]
fn a_member_without_can_update_app_data_is_not_allowed() {
    let alice = TestClient::new("alice", "alice-phone", "a.example");
    let bob = TestClient::new("bob", "bob-phone", "b.example");
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    let policy = policy_with_app_data(&alice, &bob, &carol);
    let (mut ds, mut alice, mut bob, mut carol) = trio(hub(), Some(policy));
    let expected = RejectReason::NotAllowed(NotAllowed::RoomPolicy(PolicyViolation::UpdateAppData));
    // Rule R-POL-33: Bob's role (`member`) lacks canUpdateAppData, as a proposal...
    let request = bob.propose_app_data_request(TEST_COMPONENT, Some(b"x".to_vec()), ds.now_ms);
    assert_eq!(ds.reject(&request, ErrorCode::NotAllowed), expected);
    forget_proposals(&mut bob);
    // ...and by value in his commit.
    let request = bob.commit_app_data_request(
        vec![AppDataUpdateProposal::update(TEST_COMPONENT, b"x".to_vec())],
        None,
        ds.now_ms,
    );
    assert_eq!(ds.reject(&request, ErrorCode::NotAllowed), expected);
    bob.discard_commit();
    // An admin may; and Bob may commit the admin's proposal by reference (it is authorized
    // against its sender, wire-format.md §15.3).
    pending_update(&mut ds, &mut alice, &mut bob, &mut carol, b"topic");
    commit_pending(&mut ds, &mut bob, &mut [&mut alice, &mut carol]);
    assert_eq!(carol.app_data(TEST_COMPONENT), Some(b"topic".to_vec()));
}

/// The pending proposals the hub serves, as the joiner hands them to openmls.
fn served_pending(info: &mimi_ds::wire::ExternalCommitInfo) -> Vec<PublicMessageIn> {
    info.pending_proposals
        .iter()
        .filter_map(|p| match p.proposal.parse().expect("proposal").extract() {
            MlsMessageBodyIn::PublicMessage(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pending_app_data_update_lapses_with_an_external_commit_openmls_cannot_make_cover_it() {
    // openmls 0.9.2's ExternalCommitBuilder::with_proposals keeps only SelfRemoves
    // (commit_builder/external_commits.rs), so a joiner cannot cover a pending AppDataUpdate:
    // the hub accepts the external commit, and the proposal lapses with its epoch like any
    // member proposal a commit leaves out (wire-format.md §4.3.3, §15.7).
    let (mut ds, mut alice, mut bob, mut carol) = trio(hub(), None);
    pending_update(&mut ds, &mut alice, &mut bob, &mut carol, b"blue");
    let info = ds.group_info(&alice, &alice.group_id());
    assert_eq!(info.pending_proposals.len(), 1);
    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let request = laptop.external_join_request_with(
        &info,
        ExternalJoinOptions {
            capabilities: Some(TestClient::capabilities_with_app_data()),
            proposals: served_pending(&info),
            ..ExternalJoinOptions::default()
        },
    );
    let out = ds.accept(&request);
    TestDs::route(&out, &mut [&mut alice, &mut bob, &mut carol]);
    for member in [&mut alice, &mut bob, &mut carol] {
        assert!(matches!(
            member.process_inbox().as_slice(),
            [Received::Commit { removed: false, .. }]
        ));
        assert_eq!(member.app_data(TEST_COMPONENT), None);
        assert_eq!(member.group().pending_proposals().count(), 0);
    }
    assert_eq!(laptop.app_data(TEST_COMPONENT), None);
    assert!(ds
        .group_info(&alice, &alice.group_id())
        .pending_proposals
        .is_empty());
    // Proposed again in the new epoch, it is committed as usual.
    propose_update(
        &mut ds,
        &mut alice,
        &mut [&mut bob, &mut carol, &mut laptop],
        b"blue",
    );
    commit_pending(
        &mut ds,
        &mut bob,
        &mut [&mut alice, &mut carol, &mut laptop],
    );
    assert_eq!(laptop.app_data(TEST_COMPONENT), Some(b"blue".to_vec()));
    assert!(!alice
        .group()
        .pending_proposals()
        .any(|p| matches!(p.proposal(), Proposal::AppDataUpdate(_))));
}

#[test]
fn a_joiner_may_carry_an_app_data_update_by_value_in_its_external_commit() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(hub(), None);
    let info = ds.group_info(&alice, &alice.group_id());
    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let request = laptop.external_join_request_with(
        &info,
        ExternalJoinOptions {
            capabilities: Some(TestClient::capabilities_with_app_data()),
            app_data: vec![AppDataUpdateProposal::update(
                TEST_COMPONENT,
                b"hi".to_vec(),
            )],
            ..ExternalJoinOptions::default()
        },
    );
    let out = ds.accept(&request);
    TestDs::route(&out, &mut [&mut alice, &mut bob, &mut carol]);
    for member in [&mut alice, &mut bob, &mut carol] {
        member.process_inbox();
        assert_eq!(member.app_data(TEST_COMPONENT), Some(b"hi".to_vec()));
    }
    assert_eq!(laptop.app_data(TEST_COMPONENT), Some(b"hi".to_vec()));

    // One the hub does not know is refused (rule R-PROP-7), storage untouched.
    let info = ds.group_info(&alice, &alice.group_id());
    let mut tablet = TestClient::new("alice", "alice-tablet", "a.example");
    let request = tablet.external_join_request_with(
        &info,
        ExternalJoinOptions {
            capabilities: Some(TestClient::capabilities_with_app_data()),
            app_data: vec![AppDataUpdateProposal::update(
                UNKNOWN_COMPONENT,
                b"x".to_vec(),
            )],
            ..ExternalJoinOptions::default()
        },
    );
    assert_eq!(
        invalid(ds.reject(&request, ErrorCode::InvalidProposal)),
        InvalidProposal::AppDataComponentUnknown {
            component_id: UNKNOWN_COMPONENT
        }
    );
}

#[test]
fn a_joiner_without_can_update_app_data_is_not_allowed_to_carry_one() {
    let alice = TestClient::new("alice", "alice-phone", "a.example");
    let bob = TestClient::new("bob", "bob-phone", "b.example");
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    let policy = policy_with_app_data(&alice, &bob, &carol);
    let (mut ds, alice, _bob, _carol) = trio(hub(), Some(policy));
    // Bob's new laptop (Bob is a `member`: canAddOwnClient, not canUpdateAppData). Rule R-POL-33.
    let info = ds.group_info(&alice, &alice.group_id());
    let mut laptop = TestClient::new("bob", "bob-laptop", "b.example");
    let request = laptop.external_join_request_with(
        &info,
        ExternalJoinOptions {
            capabilities: Some(TestClient::capabilities_with_app_data()),
            app_data: vec![AppDataUpdateProposal::update(TEST_COMPONENT, b"x".to_vec())],
            ..ExternalJoinOptions::default()
        },
    );
    assert_eq!(
        ds.reject(&request, ErrorCode::NotAllowed),
        RejectReason::NotAllowed(NotAllowed::RoomPolicy(PolicyViolation::UpdateAppData))
    );
}

#[test]
fn a_remove_and_another_app_data_update_of_one_component_cannot_both_be_pending() {
    // draft-ietf-mls-extensions §4.7: no commit carries a remove of a component next to another
    // AppDataUpdate of it, so the hub does not let such a pair become pending (rule R-PROP-5,
    // wire-format.md §4.10, §15.7).
    let (mut ds, mut alice, mut bob, mut carol) = trio(hub(), None);
    pending_update(&mut ds, &mut alice, &mut bob, &mut carol, b"blue");
    commit_pending(&mut ds, &mut bob, &mut [&mut alice, &mut carol]);
    let out = ds.accept(&alice.propose_app_data_request(TEST_COMPONENT, None, ds.now_ms));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    bob.process_inbox();
    carol.process_inbox();
    let conflict = |reason: RejectReason| match reason {
        RejectReason::ProposalConflict { conflict, .. } => conflict,
        other => panic!("expected a conflict, got {other:?}"),
    };
    let update = bob.propose_app_data_request(TEST_COMPONENT, Some(b"red".to_vec()), ds.now_ms);
    assert_eq!(
        conflict(ds.reject(&update, ErrorCode::InvalidProposal)),
        ProposalConflict::AppDataRemoveWithOther
    );
    let remove = carol.propose_app_data_request(TEST_COMPONENT, None, ds.now_ms);
    assert_eq!(
        conflict(ds.reject(&remove, ErrorCode::InvalidProposal)),
        ProposalConflict::AppDataRemoveWithOther
    );
}

/// Every `step`-th prefix and every `step`-th single-bit flip of `request` is refused with
/// nothing stored and nothing fanned out (the malformed-input sweep of tests/malformed.rs,
/// for the AppDataUpdate requests).
fn assert_damage_refused(ds: &mut TestDs, request: &[u8], samples: usize) {
    let step = (request.len() / samples).max(1);
    let truncated = (0..request.len())
        .step_by(step)
        .map(|len| request[..len].to_vec());
    let flipped = (0..request.len()).step_by(step).map(|at| {
        let mut damaged = request.to_vec();
        damaged[at] ^= 1 << (at % 8);
        damaged
    });
    for damaged in truncated.chain(flipped) {
        let out = ds.assert_unchanged(|ds| ds.process(&damaged));
        assert!(out.refusal.is_some(), "a damaged request was accepted");
        assert!(out.fanout.is_empty());
    }
}

#[test]
fn damaged_app_data_update_proposals_and_commits_are_refused_and_change_nothing() {
    let (mut ds, mut alice, mut bob, _carol) = trio(hub(), None);
    let proposal =
        alice.propose_app_data_request(TEST_COMPONENT, Some(b"blue".to_vec()), ds.now_ms);
    let commit = bob.commit_app_data_request(
        vec![AppDataUpdateProposal::update(
            TEST_COMPONENT,
            b"red".to_vec(),
        )],
        None,
        ds.now_ms,
    );
    assert_damage_refused(&mut ds, &proposal, 200);
    assert_damage_refused(&mut ds, &commit, 200);
    // The undamaged requests are still accepted.
    let _ = ds.accept(&commit);
    bob.confirm_commit();
}

#[test]
fn a_group_context_extensions_change_of_the_dictionary_needs_can_update_app_data() {
    // A GroupContextExtensions proposal may set the app_data_dictionary directly unless the
    // group requires AppDataUpdate (draft-ietf-mls-extensions §4.7), so in a policed room it
    // needs the same capability as an AppDataUpdate (rule R-POL-33, wire-format.md §15.7).
    let alice = TestClient::new("alice", "alice-phone", "a.example");
    let bob = TestClient::new("bob", "bob-phone", "b.example");
    let carol = TestClient::new("carol", "carol-phone", "c.example");
    let policy = policy_with_app_data(&alice, &bob, &carol);
    let (mut ds, mut alice, mut bob, _carol) = trio(hub(), Some(policy));
    let with_dictionary = |client: &TestClient| {
        let mut extensions = client.group().extensions().clone();
        let mut dictionary = AppDataDictionary::new();
        dictionary.insert(TEST_COMPONENT, b"set directly".to_vec());
        extensions
            .add_or_replace(Extension::AppDataDictionary(
                AppDataDictionaryExtension::new(dictionary),
            ))
            .expect("dictionary");
        extensions
    };
    let propose = |client: &mut TestClient, ds: &TestDs| {
        let extensions = with_dictionary(client);
        let (message, _) = client
            .group
            .as_mut()
            .expect("client has a group")
            .propose_group_context_extensions(&client.provider, extensions, &client.signer)
            .expect("proposal");
        client.signed(
            DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![mls_bytes(&message)],
            }),
            ds.now_ms,
        )
    };
    let request = propose(&mut bob, &ds);
    assert_eq!(
        ds.reject(&request, ErrorCode::NotAllowed),
        RejectReason::NotAllowed(NotAllowed::RoomPolicy(PolicyViolation::UpdateAppData))
    );
    // An admin may.
    let request = propose(&mut alice, &ds);
    let _ = ds.accept(&request);
}
