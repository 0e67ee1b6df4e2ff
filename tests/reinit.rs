//! The `re_initialize_group` rules (wire-format.md §4.4.3) and what the DS does with a group
//! after a ReInit, with real openmls clients and forged ReInit commits.
//!
//! openmls 0.9's CommitBuilder drops ReInit proposals, so no real openmls client can build a
//! ReInit commit: these tests forge them with the committer's real key
//! (tests/support/reinit_forge.rs). The DS validates them as it would a client's, but member
//! clients cannot process them, so the tests check the DS's verdict, fanout and state rather
//! than the members' epochs. `openmls_drops_reinit_proposals_from_commits` fails once openmls
//! builds them; the forge can then be replaced by `TestClient::stage_commit`.

// Only the group builders and the refusal check are used here.
#[path = "support/reinit_forge.rs"]
mod forge;
#[allow(dead_code)]
#[path = "support/groups.rs"]
mod groups;

use mimi_ds::storage::{
    DsStorage as _, RecordKind, RecordWrite, VersionGuard, WriteOutcome, WriteSet,
};
use mimi_ds::testing::{commit_body, decode_response, mls_bytes, TestClient, TestDs};
use mimi_ds::wire::{
    DsRequestBody, DsResponseBody, ErrorCode, GroupInfoOption, GroupUpdate, GroupUpdateRequest,
    MlsMessageBytes, ProposalsRequest, UpdateClientRequest,
};
use mimi_ds::{
    InvalidGroupId, InvalidGroupInfo, InvalidMlsMessage, NotAllowed, Outcome, RejectReason,
};
use openmls::prelude::{AddProposal, MlsMessageBodyIn, Proposal};
use openmls_traits::OpenMlsProvider as _;
use tls_codec::{Serialize as _, VLBytes};

use forge::reinit;
use groups::{group_of, is, membership, solo, RejectBecause as _};

fn re_initialize(update: GroupUpdate) -> DsRequestBody {
    DsRequestBody::ReInitializeGroup(GroupUpdateRequest {
        group_update: update,
    })
}

// ---------------------------------------------------------------------------------------------
// re_initialize_group (14)
// ---------------------------------------------------------------------------------------------

// openmls 0.9's CommitBuilder drops every ReInit proposal it is given (by value or from the
// proposal store: `ProposalQueue::filter_proposals` has `Proposal::ReInit(_) => { // TODO #751 }`),
// and `MlsGroup` has no way to propose one, so no real openmls client can build a ReInit commit.
// The tests below build them with [`forge`] (the committer's real key, validated by the DS's
// real openmls `PublicGroup`); `openmls_drops_reinit_proposals_from_commits` fails once openmls
// builds them, and the forge can then be replaced by `stage_commit`. What the DS does with a
// group after a ReInit is also tested on a roster marked re-initialized in storage.

fn carries_reinit(client: &TestClient) -> bool {
    let pending = client.group().pending_commit().expect("a staged commit");
    pending
        .queued_proposals()
        .any(|p| matches!(p.proposal(), Proposal::ReInit(_)))
}

/// An Add proposal of `client`'s fresh KeyPackage.
fn add(client: &TestClient) -> Proposal {
    Proposal::Add(Box::new(AddProposal::from(client.key_package())))
}

/// A ReInit-only commit by `member` to `successor`, forged.
fn forged_reinit(ds: &mut TestDs, member: &TestClient, successor: &[u8]) -> GroupUpdate {
    forge::commit(ds, member, &[reinit(successor)])
}

/// Alice and Bob, and an accepted ReInit commit by Alice to a freshly reserved ID. Returns the
/// ID and the DS's outcome. Nobody processes the forged commit (see [`forge`]): Alice and Bob
/// stay at the epoch before it.
fn reinitialized(
    ds: &mut TestDs,
    alice: &mut TestClient,
    bob: &mut TestClient,
) -> (Vec<u8>, Outcome) {
    group_of(ds, alice, &mut [&mut *bob]);
    let successor = ds.request_group_id();
    let update = forged_reinit(ds, alice, &successor);
    let out = ds.accept(&alice.signed(re_initialize(update), ds.now_ms));
    (successor, out)
}

/// Sets the stored roster's `successor` as an accepted ReInit commit would (the roster's last
/// field is `optional<opaque group_id<V>> successor`).
fn mark_reinitialized(ds: &mut TestDs, group_id: &[u8], successor: &[u8]) {
    let snapshot = ds
        .storage
        .read(group_id, &[RecordKind::Roster])
        .unwrap()
        .expect("group");
    let mut roster = snapshot
        .record(RecordKind::Roster)
        .expect("roster")
        .to_vec();
    assert_eq!(
        roster.pop(),
        Some(0),
        "the roster ends with an absent successor"
    );
    roster.push(1);
    roster.extend(
        VLBytes::from(successor.to_vec())
            .tls_serialize_detached()
            .unwrap(),
    );
    let write = WriteSet {
        group_id: group_id.to_vec(),
        guard: VersionGuard::Exactly(snapshot.version),
        records: vec![RecordWrite::Put(RecordKind::Roster, roster)],
        replay_mark: None,
        now_ms: ds.now_ms,
        fanout: Vec::new(),
    };
    assert_eq!(ds.storage.write(&write).unwrap(), WriteOutcome::Applied);
}

/// The canary: once it fails, openmls builds ReInit commits; replace [`forge`] with
/// `stage_commit(|b| b.add_proposal(reinit(..)))` and let members process them.
#[test]
fn openmls_drops_reinit_proposals_from_commits() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();
    let _ = alice.stage_commit(|b| b.add_proposal(reinit(&successor)));
    assert!(
        !carries_reinit(&alice),
        "openmls now builds ReInit commits: drop the forge and build them with stage_commit"
    );
    alice.discard_commit();
}

/// The DS's verdicts on forged commits are its own: it checks the forge's signatures and its
/// GroupInfo like any client's, so a tampered forgery is refused.
#[test]
fn forged_reinit_commits_are_verified_by_the_ds() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();
    let update = forged_reinit(&mut ds, &alice, &successor);
    let tampered = |bytes: &MlsMessageBytes, from_end: usize| {
        let mut bytes = bytes.as_bytes().to_vec();
        let at = bytes.len() - 1 - from_end;
        bytes[at] ^= 1;
        MlsMessageBytes::from_bytes(bytes).expect("still an MLSMessage")
    };
    let GroupInfoOption::Full(group_info) = &update.group_info else {
        unreachable!("the forge sends a full GroupInfo")
    };

    // The commit's signature (followed by the two 32-byte tags, each with a 1-byte length).
    let mut bad = update.clone();
    bad.commit = tampered(&update.commit, 2 * 33);
    ds.reject_because(
        &alice.signed(re_initialize(bad), ds.now_ms),
        ErrorCode::InvalidMlsMessage,
        |r| {
            matches!(
                r,
                RejectReason::InvalidMlsMessage(InvalidMlsMessage::Validation { .. })
            )
        },
    );
    // The GroupInfo's signature (its last bytes).
    let mut bad = update.clone();
    bad.group_info = GroupInfoOption::Full(tampered(group_info, 0));
    ds.reject_because(
        &alice.signed(re_initialize(bad), ds.now_ms),
        ErrorCode::InvalidGroupInfo,
        is(InvalidGroupInfo::SignatureDoesNotVerify),
    );
    // A GroupInfo that is not the post-commit one (Alice's real one, of the current epoch).
    let mut bad = update.clone();
    bad.group_info = GroupInfoOption::Full(mls_bytes(
        &alice
            .group()
            .export_group_info(alice.provider.crypto(), &alice.signer, false)
            .expect("group info"),
    ));
    ds.reject_because(
        &alice.signed(re_initialize(bad), ds.now_ms),
        ErrorCode::InvalidGroupInfo,
        is(InvalidGroupInfo::DoesNotMatchState),
    );
    // Bob cannot send Alice's commit.
    ds.reject_because(
        &bob.signed(re_initialize(update.clone()), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::MlsSenderNotRequester),
    );
    let _ = ds.accept(&alice.signed(re_initialize(update), ds.now_ms));
}

#[test]
fn re_initialize_group_to_a_reserved_id_then_refuses_commits() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let (successor, out) = reinitialized(&mut ds, &mut alice, &mut bob);
    let group_id = alice.group_id();

    // Accepted as a commit: the next epoch, fanned out to Bob (not to its committer), and the
    // new GroupInfo is served.
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!("accepted")
    };
    assert_eq!(receipt.epoch, alice.epoch() + 1);
    let delivered = TestDs::route(&out, &mut [&mut alice, &mut bob]);
    assert_eq!(delivered, 1);
    assert!(alice.inbox.is_empty());
    let served = ds.group_info(&alice, &group_id);
    let info = served.group_info.parse().unwrap();
    assert_eq!(info.epoch().as_u64(), receipt.epoch);
    // Bob's real MlsGroup refuses the forged commit: its membership tag is a dummy (see
    // `forge`), which only members can check.
    let fanned_out = bob.inbox.pop().expect("Bob got the commit");
    let MlsMessageBodyIn::PublicMessage(commit) = fanned_out.message.parse().unwrap().extract()
    else {
        panic!("a PublicMessage")
    };
    let refused = bob
        .group
        .as_mut()
        .unwrap()
        .process_message(&bob.provider, commit)
        .expect_err("members check the membership tag");
    assert!(
        format!("{refused:?}").contains("MembershipTag"),
        "{refused:?}"
    );

    // Commits in the old group, whatever the operation, are refused: those of Alice and Bob,
    // built by openmls at the epoch they are stuck in (the DS refuses a re-initialized group
    // before it looks at the epoch, §4.3.3 step 5 before step 8) ...
    ds.reject_because(
        &alice.update_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    alice.discard_commit();
    ds.reject_because(
        &bob.update_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    bob.discard_commit();
    // ... and forged ones at the DS's current epoch, which would otherwise be valid: another
    // ReInit, as re_initialize_group and as commits.
    let again = ds.request_group_id();
    let update = forge::commit_at_served_epoch(&mut ds, &alice, &[reinit(&again)]);
    ds.reject_because(
        &alice.signed(re_initialize(update.clone()), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    ds.reject_because(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    // And so are messages and proposals.
    ds.reject_because(
        &alice.message_request(b"anyone?", ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    ds.reject_because(
        &alice.propose_remove_request(bob.leaf(), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    let proposal = forge::proposal(&mut ds, &bob, &reinit(&again));
    ds.reject_because(
        &bob.signed(
            DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![proposal],
            }),
            ds.now_ms,
        ),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    // The successor can be created.
    let mut alice_next = TestClient::new("alice", "alice-1-next", "a.example");
    alice_next.create_group(&successor, &ds.external_sender);
    let _ = ds.accept(&alice_next.create_group_request(ds.now_ms));
}

#[test]
fn re_initialize_group_refuses_an_id_not_reserved() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    // Never issued; this very group's ID; reserved, then used by another group; a reservation
    // that expired.
    solo(&mut ds, &mut carol);
    let expired = ds.request_group_id();
    ds.advance(ds.ds.config().group_id_reservation_ms + 1);
    for target in [
        b"self-chosen@hub.example".to_vec(),
        alice.group_id(),
        carol.group_id(),
        expired,
    ] {
        let update = forged_reinit(&mut ds, &alice, &target);
        let request = alice.signed(re_initialize(update), ds.now_ms);
        ds.reject_because(
            &request,
            ErrorCode::InvalidGroupId,
            is(InvalidGroupId::ReInitTargetNotReserved),
        );
    }
    // The same commit to a live reservation is accepted.
    let successor = ds.request_group_id();
    let update = forged_reinit(&mut ds, &alice, &successor);
    let _ = ds.accept(&alice.signed(re_initialize(update), ds.now_ms));
}

#[test]
fn re_initialize_group_refuses_a_commit_without_reinit() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    ds.reject_because(
        &alice.signed(re_initialize(update), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::ReInitializeWithoutReInit),
    );
    alice.discard_commit();
}

/// A `commits` request may carry a ReInit (wire-format.md §4.3.4, §4.4.3): same effect as
/// `re_initialize_group`.
#[test]
fn commits_with_a_reinit_reinitializes_the_group() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let unreserved = b"self-chosen@hub.example".to_vec();
    let update = forged_reinit(&mut ds, &alice, &unreserved);
    ds.reject_because(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::ReInitTargetNotReserved),
    );
    let successor = ds.request_group_id();
    let update = forged_reinit(&mut ds, &alice, &successor);
    let _ = ds.accept(&alice.signed(commit_body(update), ds.now_ms));
    ds.reject_because(
        &bob.message_request(b"anyone?", ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
}

/// A ReInit proposed on its own (`proposals`) and committed by reference counts as the
/// commit's ReInit (wire-format.md §4.4.3), and is subject to the same rules.
#[test]
fn re_initialize_group_commits_a_pending_reinit_by_reference() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();
    let proposal = forge::proposal(&mut ds, &bob, &reinit(&successor));
    let _ = ds.accept(&bob.signed(
        DsRequestBody::Proposals(ProposalsRequest {
            proposals: vec![proposal],
        }),
        ds.now_ms,
    ));

    // Not alongside another proposal, even one the operation is for ...
    let update = forge::commit(&mut ds, &alice, &[add(&carol)]);
    let request = alice.signed(DsRequestBody::AddUsers(membership(update, None)), ds.now_ms);
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::ReInitNotAlone),
    );
    // ... nor in another operation ...
    let update = forge::commit(&mut ds, &alice, &[]);
    let request = alice.signed(
        DsRequestBody::DeleteGroup(GroupUpdateRequest {
            group_update: update.clone(),
        }),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::ReInitOutsideReInitialize),
    );
    // ... but alone, in re_initialize_group.
    let _ = ds.accept(&alice.signed(re_initialize(update), ds.now_ms));
    ds.reject_because(
        &alice.message_request(b"anyone?", ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    let mut alice_next = TestClient::new("alice", "alice-1-next", "a.example");
    alice_next.create_group(&successor, &ds.external_sender);
    let _ = ds.accept(&alice_next.create_group_request(ds.now_ms));
}

/// RFC 9420 §12.2 and wire-format.md §4.3.4: a ReInit belongs in `re_initialize_group` (or
/// `commits`); every other operation refuses it, even alone in its commit. (A delete_group that
/// removes nobody is otherwise accepted in a group of one.)
#[test]
fn reinit_inside_another_operation_is_refused() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();

    let group_update = forged_reinit(&mut ds, &alice, &successor);
    let commit = || membership(group_update.clone(), None);
    let removal = || GroupUpdateRequest {
        group_update: group_update.clone(),
    };
    for body in [
        DsRequestBody::AddUsers(commit()),
        DsRequestBody::AddClients(commit()),
        DsRequestBody::RemoveUsers(removal()),
        DsRequestBody::RemoveClients(removal()),
        DsRequestBody::DeleteGroup(removal()),
        DsRequestBody::UpdateClient(UpdateClientRequest {
            group_update: group_update.clone(),
            queue_config: None,
        }),
    ] {
        ds.reject_because(
            &alice.signed(body, ds.now_ms),
            ErrorCode::NotAllowed,
            is(NotAllowed::ReInitOutsideReInitialize),
        );
    }

    // In a group of one, delete_group with the ReInit removes every other member (none).
    let mut dave = TestClient::new("dave", "dave-1", "d.example");
    solo(&mut ds, &mut dave);
    let update = forged_reinit(&mut ds, &dave, &successor);
    ds.reject_because(
        &dave.signed(
            DsRequestBody::DeleteGroup(GroupUpdateRequest {
                group_update: update,
            }),
            ds.now_ms,
        ),
        ErrorCode::NotAllowed,
        is(NotAllowed::ReInitOutsideReInitialize),
    );
    // Alice's commit is accepted where it belongs.
    let _ = ds.accept(&alice.signed(re_initialize(group_update), ds.now_ms));
}

/// RFC 9420 §12.2: a commit with a ReInit proposal may contain no other proposal. (The other
/// proposal is an Add: a Remove or Update would need an update path, which the forge does not
/// build.)
#[test]
fn re_initialize_group_refuses_other_proposals_next_to_the_reinit() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();

    // Either order, as re_initialize_group and as commits (checked before the Welcomes, which
    // the forge does not build).
    for proposals in [
        [add(&carol), reinit(&successor)],
        [reinit(&successor), add(&carol)],
    ] {
        let update = forge::commit(&mut ds, &alice, &proposals);
        ds.reject_because(
            &alice.signed(re_initialize(update.clone()), ds.now_ms),
            ErrorCode::NotAllowed,
            is(NotAllowed::ReInitNotAlone),
        );
        ds.reject_because(
            &alice.signed(commit_body(update), ds.now_ms),
            ErrorCode::NotAllowed,
            is(NotAllowed::ReInitNotAlone),
        );
    }
}

#[test]
fn reinitialized_group_refuses_commits() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();
    mark_reinitialized(&mut ds, &alice.group_id(), &successor);

    ds.reject_because(
        &alice.update_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    alice.discard_commit();
    ds.reject_because(
        &bob.update_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    bob.discard_commit();
    let (update, welcome) = alice.stage_commit(|b| b.propose_adds(vec![carol.key_package()]));
    let request = alice.signed(
        DsRequestBody::AddUsers(membership(update, welcome)),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    alice.discard_commit();
    ds.reject_because(
        &alice.delete_group_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    alice.discard_commit();
}

#[test]
fn reinitialized_group_refuses_send_message() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();
    mark_reinitialized(&mut ds, &alice.group_id(), &successor);
    ds.reject_because(
        &alice.message_request(b"anyone?", ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
}

#[test]
fn reinitialized_group_refuses_proposals() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);
    let successor = ds.request_group_id();
    mark_reinitialized(&mut ds, &alice.group_id(), &successor);
    let request = alice.propose_remove_request(bob.leaf(), ds.now_ms);
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
}
