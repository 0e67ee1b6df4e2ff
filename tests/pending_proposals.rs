//! Pending proposals cannot wedge a group (wire-format.md §4.3.3, §4.10, §7.4).
//!
//! The first tests are the inputs that used to leave a group unable to commit ever again: the
//! hub accepted a member's proposal that members refuse (a corrupted `membership_tag`) or that
//! no valid commit can carry next to another pending one (RFC 9420 §12.2), and then made every
//! commit that left it out fail with `missing_pending_proposals`. Now the hub refuses
//! conflicting proposals up front, caps how many may be pending, and makes only its own
//! proposals mandatory; a member's proposal a commit leaves out lapses with the epoch. The last
//! test is the recovery path when members refuse a commit the hub accepted.

use mimi_ds::testing::{
    assert_rejected, decode_response, mls_bytes, proposal_refs, Received, TestClient, TestDs,
};
use mimi_ds::wire::{DsRequestBody, DsResponseBody, ErrorCode, MlsMessageBytes, ProposalsRequest};
use mimi_ds::{DsConfig, HubEvent, Outcome, ProposalConflict, RejectReason, Status};
use openmls::prelude::{LeafNodeIndex, LeafNodeParameters, MlsMessageBodyIn, ProtocolMessage};
use openmls_traits::OpenMlsProvider as _;

// Only its standalone-proposal forge and its ReInit proposal are used here.
#[allow(dead_code)]
#[path = "support/reinit_forge.rs"]
mod forge;

const DOMAIN: &str = "hub.example";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// [`TestDs::reject`] that also returns the ProposalRefs the `DSError` names (the shared
/// checks: code, error body, no fanout, storage byte-identical). A method, so it borrows like
/// `ds.process(..)`.
trait RejectWithRefs {
    fn reject_with_refs(&mut self, request: &[u8], code: ErrorCode)
        -> (Vec<Vec<u8>>, RejectReason);
}

impl RejectWithRefs for TestDs {
    fn reject_with_refs(
        &mut self,
        request: &[u8],
        code: ErrorCode,
    ) -> (Vec<Vec<u8>>, RejectReason) {
        let out = self.assert_unchanged(|ds| ds.process(request));
        let error = assert_rejected(&out, code);
        (
            proposal_refs(&error),
            out.refusal.expect("a refusal names its reason"),
        )
    }
}

/// Alice (leaf 0), Bob (leaf 1) and Carol (leaf 2) in a group at epoch 1.
fn trio(config: DsConfig) -> (TestDs, TestClient, TestClient, TestClient) {
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    ds.create_group_with(&mut alice, &mut [&mut bob, &mut carol]);
    assert_eq!((alice.leaf(), bob.leaf(), carol.leaf()), (0, 1, 2));
    (ds, alice, bob, carol)
}

fn proposals_request(member: &TestClient, proposals: Vec<MlsMessageBytes>, now_ms: u64) -> Vec<u8> {
    member.signed(
        DsRequestBody::Proposals(ProposalsRequest { proposals }),
        now_ms,
    )
}

/// A Remove of `leaf` proposed by `member` (kept in its own proposal store, as openmls does);
/// the message and its ProposalRef.
fn remove_proposal(member: &mut TestClient, leaf: u32) -> (MlsMessageBytes, Vec<u8>) {
    let group = member.group.as_mut().expect("group");
    let (message, proposal_ref) = group
        .propose_remove_member(&member.provider, &member.signer, LeafNodeIndex::new(leaf))
        .expect("proposal");
    (mls_bytes(&message), proposal_ref.as_slice().to_vec())
}

/// An Update proposal of `member`'s own leaf.
fn update_proposal(member: &mut TestClient) -> (MlsMessageBytes, Vec<u8>) {
    let group = member.group.as_mut().expect("group");
    let (message, proposal_ref) = group
        .propose_self_update(
            &member.provider,
            &member.signer,
            LeafNodeParameters::default(),
        )
        .expect("proposal");
    (mls_bytes(&message), proposal_ref.as_slice().to_vec())
}

/// A GroupContextExtensions proposal keeping the group's extensions as they are.
fn extensions_proposal(member: &mut TestClient) -> (MlsMessageBytes, Vec<u8>) {
    let group = member.group.as_mut().expect("group");
    let extensions = group.extensions().clone();
    let (message, proposal_ref) = group
        .propose_group_context_extensions(&member.provider, extensions, &member.signer)
        .expect("proposal");
    (mls_bytes(&message), proposal_ref.as_slice().to_vec())
}

/// Drops a proposal the hub refused from the proposer's own store.
fn withdraw(member: &mut TestClient, proposal_ref: &[u8]) {
    let group = member.group.as_mut().expect("group");
    let reference = group
        .pending_proposals()
        .find(|p| p.proposal_reference_ref().as_slice() == proposal_ref)
        .expect("the proposal is in the proposer's store")
        .proposal_reference_ref()
        .clone();
    group
        .remove_pending_proposal(member.provider.storage(), &reference)
        .expect("withdraw");
}

/// The same proposal with the last byte of its `membership_tag` flipped. A member's
/// PublicMessage ends with `MAC membership_tag` (RFC 9420 §6.2), which lies outside the signed
/// content: the signature still verifies, but members, who know the membership key, refuse it.
fn corrupt_membership_tag(message: &MlsMessageBytes) -> MlsMessageBytes {
    let mut bytes = message.as_bytes().to_vec();
    *bytes.last_mut().expect("non-empty") ^= 0x01;
    MlsMessageBytes::from_bytes(bytes).expect("still a well-formed MLSMessage")
}

/// Delivers everything in `member`'s inbox, expecting every message to be refused by openmls
/// (a corrupted tag). Returns how many were refused.
fn refuse_inbox(member: &mut TestClient) -> usize {
    let inbox = std::mem::take(&mut member.inbox);
    let group = member.group.as_mut().expect("group");
    inbox
        .iter()
        .map(|m| {
            let MlsMessageBodyIn::PublicMessage(public) = m.message.parse().unwrap().extract()
            else {
                panic!("expected a PublicMessage")
            };
            group
                .process_message(&member.provider, ProtocolMessage::from(public))
                .expect_err("members refuse this message")
        })
        .count()
}

/// Every client processes its inbox; the commit in `out` is expected to reach all of them.
fn commit_reaches(out: &Outcome, clients: &mut [&mut TestClient], epoch: u64) {
    TestDs::route(out, clients);
    for client in clients.iter_mut() {
        let received = client.process_inbox();
        assert!(
            received.contains(&Received::Commit {
                epoch,
                removed: false
            }),
            "{}: {received:?}",
            client.name
        );
    }
}

/// Alice's message reaches every other client of `others`.
fn messages_flow(ds: &mut TestDs, sender: &mut TestClient, others: &mut [&mut TestClient]) {
    let out = ds.accept(&sender.message_request(b"still here", ds.now_ms));
    TestDs::route(&out, others);
    for other in others.iter_mut() {
        assert_eq!(
            other.process_inbox(),
            vec![Received::Application(b"still here".to_vec())],
            "{}",
            other.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The three wedges found in review
// ---------------------------------------------------------------------------------------------

/// RFC 9420 §12.2: a commit may not carry two Removes of the same leaf, and openmls's committer
/// keeps only one of them. Before: both were accepted and mandatory, so every commit was
/// refused. Now the second is refused (invalid_proposal naming it) and the group goes on.
#[test]
fn a_second_remove_of_the_same_leaf_is_refused_and_commits_go_on() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
    let (first, _) = remove_proposal(&mut alice, carol.leaf());
    let out = ds.accept(&proposals_request(&alice, vec![first], ds.now_ms));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    assert_eq!(bob.process_inbox(), vec![Received::Proposal]);
    carol.process_inbox();

    let (second, second_ref) = remove_proposal(&mut bob, carol.leaf());
    let (refs, why) = ds.reject_with_refs(
        &proposals_request(&bob, vec![second], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    assert_eq!(refs, vec![second_ref.clone()]);
    assert!(
        matches!(
            why,
            RejectReason::ProposalConflict {
                conflict: ProposalConflict::DuplicateRemove,
                ..
            }
        ),
        "{why:?}"
    );
    withdraw(&mut bob, &second_ref);

    // Bob's commit carries Alice's Remove by reference and is accepted.
    let out = ds.accept(&bob.update_request(ds.now_ms));
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut carol]);
    assert_eq!(
        carol.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: true
        }]
    );
    alice.process_inbox();
    assert_eq!(alice.group().members().count(), 2);
    messages_flow(&mut ds, &mut alice, &mut [&mut bob]);
}

/// RFC 9420 §12.2: a commit may not carry an Update and a Remove of the same leaf; openmls's
/// committer drops the Update. Before: the Update was mandatory, so every commit was refused.
#[test]
fn an_update_of_a_leaf_with_a_pending_remove_is_refused() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
    let (remove, _) = remove_proposal(&mut alice, carol.leaf());
    let out = ds.accept(&proposals_request(&alice, vec![remove], ds.now_ms));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    bob.process_inbox();
    carol.process_inbox();

    let (update, update_ref) = update_proposal(&mut carol);
    let (refs, why) = ds.reject_with_refs(
        &proposals_request(&carol, vec![update], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    assert_eq!(refs, vec![update_ref]);
    assert!(
        matches!(
            why,
            RejectReason::ProposalConflict {
                conflict: ProposalConflict::UpdateOfRemovedLeaf,
                ..
            }
        ),
        "{why:?}"
    );

    let out = ds.accept(&bob.update_request(ds.now_ms));
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    alice.process_inbox();
    assert_eq!(alice.epoch(), 2);
    assert_eq!(alice.group().members().count(), 2);
}

/// The hub holds no membership key, so it cannot check a `membership_tag`: it accepts the
/// proposal, members refuse it. Before: it was mandatory, so every commit (none of which can
/// carry it) was refused. Now a commit leaves it out and it lapses with the epoch.
#[test]
fn a_proposal_with_a_corrupted_membership_tag_does_not_block_the_next_commit() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
    let (remove, _) = remove_proposal(&mut alice, carol.leaf());
    let corrupted = corrupt_membership_tag(&remove);
    let out = ds.accept(&proposals_request(&alice, vec![corrupted], ds.now_ms));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    assert_eq!(refuse_inbox(&mut bob), 1);
    assert_eq!(refuse_inbox(&mut carol), 1);
    assert_eq!(
        ds.group_info(&bob, &bob.group_id()).pending_proposals.len(),
        1
    );

    // Bob never stored it; his commit leaves it out and is accepted.
    let out = ds.accept(&bob.update_request(ds.now_ms));
    bob.confirm_commit();
    alice
        .group
        .as_mut()
        .unwrap()
        .clear_pending_proposals(alice.provider.storage())
        .unwrap();
    commit_reaches(&out, &mut [&mut alice, &mut carol], 2);
    // The proposal lapsed with its epoch.
    assert!(ds
        .group_info(&bob, &bob.group_id())
        .pending_proposals
        .is_empty());
    assert_eq!(bob.group().members().count(), 3);
    messages_flow(&mut ds, &mut carol, &mut [&mut alice, &mut bob]);
}

// ---------------------------------------------------------------------------------------------
// The other conflicts of RFC 9420 §12.2
// ---------------------------------------------------------------------------------------------

/// The hub's own Remove counts as pending: a member's Remove of the same leaf, or an Update by
/// that leaf, is refused, and the hub's proposal stays mandatory.
#[test]
fn proposals_conflicting_with_the_hubs_removal_are_refused() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
    let group_id = alice.group_id();
    let carol_key = carol.signer.to_public_vec();
    let out = ds.handle_event(
        &group_id,
        &HubEvent::ClientDeleted {
            signature_key: carol_key,
        },
    );
    assert_eq!(out.status, Status::Accepted);

    let (remove, remove_ref) = remove_proposal(&mut bob, carol.leaf());
    let error = ds.reject_error(
        &proposals_request(&bob, vec![remove], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    let refs = proposal_refs(&error);
    assert_eq!(refs, vec![remove_ref]);
    let (update, update_ref) = update_proposal(&mut carol);
    let error = ds.reject_error(
        &proposals_request(&carol, vec![update], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    let refs = proposal_refs(&error);
    assert_eq!(refs, vec![update_ref]);

    // Alice has not seen the hub's Remove: her commit leaves it out and is refused.
    let error = ds.reject_error(
        &alice.update_request(ds.now_ms),
        ErrorCode::MissingPendingProposals,
    );
    let missing = proposal_refs(&error);
    assert_eq!(missing.len(), 1);
    alice.discard_commit();
}

/// RFC 9420 §12.2: at most one GroupContextExtensions proposal per commit.
#[test]
fn a_second_group_context_extensions_proposal_is_refused() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
    let (first, _) = extensions_proposal(&mut alice);
    let out = ds.accept(&proposals_request(&alice, vec![first], ds.now_ms));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    bob.process_inbox();
    let (second, second_ref) = extensions_proposal(&mut bob);
    let (refs, why) = ds.reject_with_refs(
        &proposals_request(&bob, vec![second], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    assert_eq!(refs, vec![second_ref]);
    assert!(
        matches!(
            why,
            RejectReason::ProposalConflict {
                conflict: ProposalConflict::SecondGroupContextExtensions,
                ..
            }
        ),
        "{why:?}"
    );
}

/// One GroupContextExtensions proposal does not conflict with proposals of other types, in
/// either order (RFC 9420 §12.2 forbids only a second one): a Remove next to a pending GCE, and
/// a GCE next to a pending Remove, are both accepted.
#[test]
fn a_group_context_extensions_proposal_sits_next_to_other_proposals() {
    // Alice's proposal is pending and delivered to Bob; then Bob's is accepted next to it.
    fn accepted_after(
        first: fn(&mut TestClient, u32) -> (MlsMessageBytes, Vec<u8>),
        second: fn(&mut TestClient, u32) -> (MlsMessageBytes, Vec<u8>),
    ) {
        let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
        let (proposal, _) = first(&mut alice, carol.leaf());
        let out = ds.accept(&proposals_request(&alice, vec![proposal], ds.now_ms));
        TestDs::route(&out, &mut [&mut bob, &mut carol]);
        bob.process_inbox();
        let (proposal, _) = second(&mut bob, carol.leaf());
        let _ = ds.accept(&proposals_request(&bob, vec![proposal], ds.now_ms));
    }
    let extensions = |member: &mut TestClient, _: u32| extensions_proposal(member);
    accepted_after(extensions, remove_proposal);
    accepted_after(remove_proposal, extensions);
}

/// Two conflicting proposals in one request: the second conflicts with the first.
#[test]
fn conflicts_within_one_request_are_refused() {
    let (mut ds, mut alice, _bob, _carol) = trio(DsConfig::new(DOMAIN));
    let group = alice.group.as_mut().unwrap();
    let leave = mls_bytes(&group.leave_group(&alice.provider, &alice.signer).unwrap());
    let (update, update_ref) = update_proposal(&mut alice);
    let error = ds.reject_error(
        &proposals_request(&alice, vec![leave, update], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    let refs = proposal_refs(&error);
    assert_eq!(refs, vec![update_ref]);
}

/// RFC 9420 §12.2: a commit with a ReInit carries no other proposal. So a ReInit is refused
/// while anything is pending, and anything is refused while a ReInit is pending.
#[test]
fn a_reinit_next_to_any_other_pending_proposal_is_refused() {
    let (mut ds, mut alice, mut bob, carol) = trio(DsConfig::new(DOMAIN));
    let successor = ds.request_group_id();

    // A ReInit while a Remove is pending.
    let (remove, _) = remove_proposal(&mut alice, carol.leaf());
    let _ = ds.accept(&proposals_request(&alice, vec![remove], ds.now_ms));
    let proposal = forge::proposal(&mut ds, &bob, &forge::reinit(&successor));
    let why = ds.reject(
        &proposals_request(&bob, vec![proposal], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    assert!(
        matches!(
            why,
            RejectReason::ProposalConflict {
                conflict: ProposalConflict::ReInitNotAlone,
                ..
            }
        ),
        "{why:?}"
    );

    // A fresh epoch: nothing pending, the ReInit is accepted; then a Remove is refused.
    let out = ds.accept(&bob.update_request(ds.now_ms));
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    alice
        .group
        .as_mut()
        .unwrap()
        .clear_pending_proposals(alice.provider.storage())
        .unwrap();
    alice.process_inbox();
    let proposal = forge::proposal(&mut ds, &bob, &forge::reinit(&successor));
    let _ = ds.accept(&proposals_request(&bob, vec![proposal], ds.now_ms));
    let (remove, remove_ref) = remove_proposal(&mut alice, carol.leaf());
    let (refs, why) = ds.reject_with_refs(
        &proposals_request(&alice, vec![remove], ds.now_ms),
        ErrorCode::InvalidProposal,
    );
    assert_eq!(refs, vec![remove_ref]);
    assert!(
        matches!(
            why,
            RejectReason::ProposalConflict {
                conflict: ProposalConflict::ReInitNotAlone,
                ..
            }
        ),
        "{why:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The cap
// ---------------------------------------------------------------------------------------------

/// `DsConfig::max_pending_proposals` bounds the pending set; a commit empties it again.
#[test]
fn the_pending_set_is_capped_per_epoch() {
    let mut config = DsConfig::new(DOMAIN);
    config.max_pending_proposals = 2;
    let (mut ds, mut alice, mut bob, mut carol) = trio(config);
    for _ in 0..2 {
        let (update, _) = update_proposal(&mut alice);
        let _ = ds.accept(&proposals_request(&alice, vec![update], ds.now_ms));
    }
    let (update, _) = update_proposal(&mut bob);
    let error = ds.reject_error(
        &proposals_request(&bob, vec![update], ds.now_ms),
        ErrorCode::TooManyPendingProposals,
    );
    let refs = proposal_refs(&error);
    assert!(refs.is_empty());
    bob.group
        .as_mut()
        .unwrap()
        .clear_pending_proposals(bob.provider.storage())
        .unwrap();

    // Carol commits without them (she never saw them): accepted, and the next epoch has room.
    let out = ds.accept(&carol.update_request(ds.now_ms));
    carol.confirm_commit();
    for member in [&mut alice, &mut bob] {
        member
            .group
            .as_mut()
            .unwrap()
            .clear_pending_proposals(member.provider.storage())
            .unwrap();
    }
    commit_reaches(&out, &mut [&mut alice, &mut bob], 2);
    assert!(ds
        .group_info(&carol, &carol.group_id())
        .pending_proposals
        .is_empty());
    let (update, _) = update_proposal(&mut bob);
    let _ = ds.accept(&proposals_request(&bob, vec![update], ds.now_ms));
}

// ---------------------------------------------------------------------------------------------
// Which pending proposals a commit must include (wire-format.md §4.3.3)
// ---------------------------------------------------------------------------------------------

/// A member's proposal is not mandatory: Carol, who has not received Alice's proposal yet,
/// commits without it, and it lapses. (Before, this was `missing_pending_proposals`.)
#[test]
fn a_commit_by_a_member_that_missed_another_members_proposal_is_accepted() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
    let (remove, _) = remove_proposal(&mut alice, bob.leaf());
    let proposal_out = ds.accept(&proposals_request(&alice, vec![remove], ds.now_ms));
    let out = ds.accept(&carol.update_request(ds.now_ms));
    carol.confirm_commit();
    // Alice and Bob get the proposal first, then the commit that let it lapse.
    TestDs::route(&proposal_out, &mut [&mut bob]);
    bob.process_inbox();
    for member in [&mut alice, &mut bob] {
        member
            .group
            .as_mut()
            .unwrap()
            .clear_pending_proposals(member.provider.storage())
            .unwrap();
    }
    commit_reaches(&out, &mut [&mut alice, &mut bob], 2);
    assert_eq!(carol.group().members().count(), 3);
    assert!(ds
        .group_info(&carol, &carol.group_id())
        .pending_proposals
        .is_empty());
}

/// RFC 9420 §12.2 allows one Remove per leaf in a commit. When a member's Remove of Carol was
/// pending before the hub proposed removing her too, a commit carrying the member's Remove
/// removes Carol all the same: it counts as including the hub's.
#[test]
fn a_hubs_removal_is_covered_by_any_remove_of_its_target() {
    let (mut ds, mut alice, mut bob, carol) = trio(DsConfig::new(DOMAIN));
    let (remove, _) = remove_proposal(&mut bob, carol.leaf());
    let out = ds.accept(&proposals_request(&bob, vec![remove], ds.now_ms));
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);
    let group_id = alice.group_id();
    let hub = ds.handle_event(
        &group_id,
        &HubEvent::ClientDeleted {
            signature_key: carol.signer.to_public_vec(),
        },
    );
    assert_eq!(hub.status, Status::Accepted);
    assert_eq!(ds.group_info(&alice, &group_id).pending_proposals.len(), 2);

    // Alice has not received the hub's Remove yet: her commit carries Bob's.
    let out = ds.accept(&alice.update_request(ds.now_ms));
    alice.confirm_commit();
    assert_eq!(alice.group().members().count(), 2);
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!()
    };
    assert!(receipt.external_proposals.is_empty(), "nothing to re-issue");
    assert!(ds
        .group_info(&alice, &group_id)
        .pending_proposals
        .is_empty());
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
    messages_flow(&mut ds, &mut bob, &mut [&mut alice]);
}

// ---------------------------------------------------------------------------------------------
// Recovery from a commit members refuse (wire-format.md §4.3.3 "What the hub cannot check")
// ---------------------------------------------------------------------------------------------

/// Alice proposes (a GroupContextExtensions proposal keeping the extensions) with a corrupted
/// `membership_tag` and commits that proposal by reference (she has it in her own store). The hub cannot check the tag and accepts both; Bob and Carol
/// refused the proposal, so they cannot process the commit. They resync by external commit
/// (`lose_state`, `group_info`, `external_join`), and the group carries messages and commits
/// again.
#[test]
fn members_that_refuse_an_accepted_commit_resync_by_external_commit() {
    let (mut ds, mut alice, mut bob, mut carol) = trio(DsConfig::new(DOMAIN));
    let group_id = alice.group_id();
    let (proposal, _) = extensions_proposal(&mut alice);
    let corrupted = corrupt_membership_tag(&proposal);
    let out = ds.accept(&proposals_request(&alice, vec![corrupted], ds.now_ms));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    assert_eq!(refuse_inbox(&mut bob), 1);
    assert_eq!(refuse_inbox(&mut carol), 1);

    // Alice's commit includes it by reference: accepted by the hub, refused by members.
    let out = ds.accept(&alice.update_request(ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    assert_eq!(refuse_inbox(&mut bob), 1);
    assert_eq!(refuse_inbox(&mut carol), 1);
    assert_eq!((alice.epoch(), bob.epoch(), carol.epoch()), (2, 1, 1));

    // Bob, then Carol, resync.
    for resyncing in 0..2 {
        let info = ds.group_info(&alice, &group_id);
        let (joiner, others): (&mut TestClient, Vec<&mut TestClient>) = if resyncing == 0 {
            (&mut bob, vec![&mut alice, &mut carol])
        } else {
            (&mut carol, vec![&mut alice, &mut bob])
        };
        joiner.lose_state();
        let out = ds.accept(&joiner.external_join_request(&info));
        joiner.confirm_commit();
        let mut others = others;
        TestDs::route(&out, &mut others);
        for other in others {
            if other.group.is_some() && other.epoch() == joiner.epoch() - 1 {
                assert!(matches!(
                    other.process_inbox()[..],
                    [Received::Commit { removed: false, .. }]
                ));
            } else {
                other.inbox.clear();
            }
        }
    }
    assert_eq!((alice.epoch(), bob.epoch(), carol.epoch()), (4, 4, 4));
    assert_eq!(alice.group().members().count(), 3);

    messages_flow(&mut ds, &mut alice, &mut [&mut bob, &mut carol]);
    let out = ds.accept(&carol.update_request(ds.now_ms));
    carol.confirm_commit();
    commit_reaches(&out, &mut [&mut alice, &mut bob], 5);
    messages_flow(&mut ds, &mut bob, &mut [&mut alice, &mut carol]);
}
