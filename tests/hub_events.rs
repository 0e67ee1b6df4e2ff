//! Events from the embedding server (`DeliveryService::handle_event`): the DS, as the groups'
//! MLS external sender, issues Remove proposals for rejected queues, deleted users and clients
//! and inactive clients, re-issues them when a commit lets them lapse (stapled to the commit),
//! and rotates its own signing key. Every proposal is checked by real openmls members.

use std::collections::BTreeSet;
use std::sync::Arc;

use mimi_ds::testing::{
    accepted_message, assert_rejected, decode_response, ds_identity, proposal_refs, Received,
    TestClient, TestDs,
};
use mimi_ds::wire::{DsResponseBody, ErrorCode, ExternalCommitInfo, MlsMessageBytes};
use mimi_ds::{
    BasicCredentialValidator, DeliveryService, DsConfig, DsIdentity, HubEvent, NotAllowed, Outcome,
    PendingProposalPolicy, RejectReason, Status,
};
use openmls::prelude::{
    BasicCredential, Credential, ExternalSender, MlsMessageBodyIn, ProcessedMessageContent,
    Proposal, ProtocolMessage, Sender, SenderExtensionIndex, SignaturePublicKey,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use openmls_traits::OpenMlsProvider;

const DOMAIN: &str = "hub.example";

// ---------------------------------------------------------------------------------------------
// Helpers

fn event(ds: &mut TestDs, group_id: &[u8], event: HubEvent) -> Outcome {
    ds.handle_event(group_id, &event)
}

/// Asserts the event had nothing to do: `ok`, no fanout.
fn nothing_to_do(out: &Outcome) {
    assert_eq!(out.status, Status::Accepted);
    assert_eq!(decode_response(&out.response).body, DsResponseBody::Ok);
    assert!(out.fanout.is_empty());
}

type Queue = (Vec<u8>, Vec<u8>);

fn queue_of(client: &TestClient) -> Queue {
    (
        client.queue.provider_domain.as_slice().to_vec(),
        client.queue.queue.as_slice().to_vec(),
    )
}

fn queues(clients: &[&TestClient]) -> BTreeSet<Queue> {
    clients.iter().map(|c| queue_of(c)).collect()
}

/// Every (provider, queue) the outcome fans out to.
fn recipients(out: &Outcome) -> BTreeSet<Queue> {
    out.fanout
        .iter()
        .flat_map(|f| {
            f.request.recipients.iter().map(|q| {
                (
                    f.request.recipient_domain.as_slice().to_vec(),
                    q.as_slice().to_vec(),
                )
            })
        })
        .collect()
}

/// The recipients of the fanout instructions carrying `message`.
fn recipients_of(out: &Outcome, message: &MlsMessageBytes) -> BTreeSet<Queue> {
    out.fanout
        .iter()
        .filter(|f| f.request.message.message == *message)
        .flat_map(|f| {
            f.request.recipients.iter().map(|q| {
                (
                    f.request.recipient_domain.as_slice().to_vec(),
                    q.as_slice().to_vec(),
                )
            })
        })
        .collect()
}

/// Creates a group of `creator`, adds `joiners` in one commit and lets them join through
/// `welcome_info`.
fn form_group(ds: &mut TestDs, creator: &mut TestClient, joiners: &mut [&mut TestClient]) {
    let group_id = ds.request_group_id();
    creator.create_group(&group_id, &ds.external_sender);
    let out = ds.process(&creator.create_group_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    if joiners.is_empty() {
        return;
    }
    let key_packages = joiners.iter().map(|j| j.key_package()).collect();
    let out = ds.process(&creator.add_request(key_packages, ds.now_ms));
    accepted_message(&out);
    creator.confirm_commit();
    TestDs::route(&out, joiners);
    for joiner in joiners.iter_mut() {
        let welcome = match joiner.process_inbox().pop() {
            Some(Received::Welcome(w)) => w,
            other => panic!("{other:?}"),
        };
        let (request, processed) = joiner.welcome_info_request(&welcome, ds.now_ms);
        let tree = match decode_response(&ds.process(&request).response).body {
            DsResponseBody::WelcomeInfo(info) => info.ratchet_tree,
            other => panic!("{other:?}"),
        };
        joiner.join_with_tree(processed, &tree);
        assert_eq!(joiner.epoch(), creator.epoch());
    }
}

/// Processes proposals the DS stapled to a commit (`external_proposals`), which
/// `TestClient::receive` does not look at, and stores them. Returns the proposals.
fn process_stapled(client: &mut TestClient, proposals: &[MlsMessageBytes]) -> Vec<Proposal> {
    let provider = &client.provider;
    let group = client.group.as_mut().expect("client has a group");
    proposals
        .iter()
        .map(|bytes| {
            let MlsMessageBodyIn::PublicMessage(public) =
                bytes.parse().expect("an MLSMessage").extract()
            else {
                panic!("a DS proposal is a PublicMessage");
            };
            let processed = group
                .process_message(provider, ProtocolMessage::from(public))
                .expect("members accept the DS's proposal");
            assert!(
                matches!(processed.sender(), Sender::External(_)),
                "the DS proposes as external sender"
            );
            let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
                panic!("not a proposal");
            };
            let proposal = queued.proposal().clone();
            group
                .store_pending_proposal(provider.storage(), *queued)
                .expect("store proposal");
            proposal
        })
        .collect()
}

/// Processes the client's inbox, including the proposals stapled to each message.
fn process_inbox_with_stapled(client: &mut TestClient) -> Vec<Received> {
    let inbox = std::mem::take(&mut client.inbox);
    let mut received = Vec::new();
    for message in &inbox {
        received.push(client.receive(message));
        for _ in process_stapled(client, &message.external_proposals) {
            received.push(Received::Proposal);
        }
    }
    received
}

/// The leaves of the Remove proposals pending in the client's group.
fn pending_removals(client: &TestClient) -> Vec<u32> {
    client
        .group()
        .pending_proposals()
        .filter_map(|p| match p.proposal() {
            Proposal::Remove(r) => Some(r.removed().u32()),
            _ => None,
        })
        .collect()
}

/// The ProposalRefs pending in the client's group.
fn pending_refs(client: &TestClient) -> Vec<Vec<u8>> {
    client
        .group()
        .pending_proposals()
        .map(|p| p.proposal_reference_ref().as_slice().to_vec())
        .collect()
}

fn removed_leaf(proposal: &Proposal) -> u32 {
    match proposal {
        Proposal::Remove(r) => r.removed().u32(),
        other => panic!("expected a Remove, got {other:?}"),
    }
}

fn group_info(ds: &mut TestDs, member: &TestClient) -> ExternalCommitInfo {
    ds.group_info(member, &member.group_id())
}

fn service(config: DsConfig, identity: DsIdentity) -> DeliveryService<RustCrypto> {
    DeliveryService::new(config, identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials())
}

/// One key pair behind two `DsIdentity` values (the type owns a boxed signer and is not
/// `Clone`): the identity the group was created under, and the same one retired.
struct SharedSigner(Arc<SignatureKeyPair>);

impl Signer for SharedSigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Signer::sign(self.0.as_ref(), payload)
    }
    fn signature_scheme(&self) -> SignatureScheme {
        Signer::signature_scheme(self.0.as_ref())
    }
}

fn shared_identity(domain: &str) -> (DsIdentity, DsIdentity, ExternalSender) {
    let keys = Arc::new(SignatureKeyPair::new(SignatureScheme::ED25519).expect("key generation"));
    let signature_key = SignaturePublicKey::from(keys.to_public_vec());
    let credential: Credential = BasicCredential::new(domain.as_bytes().to_vec()).into();
    let identity = || DsIdentity {
        signature_key: signature_key.clone(),
        credential: credential.clone(),
        signer: Box::new(SharedSigner(keys.clone())),
    };
    let sender = ExternalSender::new(signature_key.clone(), credential.clone());
    (identity(), identity(), sender)
}

// ---------------------------------------------------------------------------------------------
// 1. QueueRejected

#[test]
fn a_rejected_queue_makes_the_ds_propose_removing_its_client() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob]);
    let group_id = alice.group_id();
    let bob_leaf = bob.leaf();
    ds.advance(1000);

    let out = event(
        &mut ds,
        &group_id,
        HubEvent::QueueRejected(bob.queue.clone()),
    );
    let receipt = accepted_message(&out);
    assert_eq!(receipt.epoch, 1);
    assert_eq!(receipt.accepted_time_ms, ds.now_ms);
    assert_eq!(receipt.external_proposals.len(), 1);
    // The proposal goes to Alice only, not to Bob's rejected queue.
    assert_eq!(recipients(&out), queues(&[&alice]));
    assert!(out.fanout.iter().all(
        |f| f.request.message.message == receipt.external_proposals[0]
            && f.request.message.sequence_number == receipt.sequence_number
    ));
    assert_eq!(TestDs::route(&out, &mut [&mut alice, &mut bob]), 1);
    assert!(bob.inbox.is_empty());
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);
    assert_eq!(pending_removals(&alice), vec![bob_leaf]);
    assert!(alice
        .group()
        .pending_proposals()
        .all(|p| matches!(p.sender(), Sender::External(i) if *i == SenderExtensionIndex::new(0))));

    // The same event again while the removal is pending: nothing new to do.
    let out =
        ds.assert_unchanged(|ds| event(ds, &group_id, HubEvent::QueueRejected(bob.queue.clone())));
    nothing_to_do(&out);

    // While it is pending, application messages wait (strict default): see
    // `application_messages_wait_while_a_ds_removal_is_pending`.

    // Alice's next commit includes the stored proposal and removes Bob.
    ds.advance(1);
    let out = ds.process(&alice.update_request(ds.now_ms));
    let receipt = accepted_message(&out);
    assert_eq!(receipt.epoch, 2);
    assert!(receipt.external_proposals.is_empty());
    alice.confirm_commit();
    // The commit reaches the members of the ending epoch but the committer.
    assert_eq!(recipients(&out), queues(&[&bob]));
    assert!(out
        .fanout
        .iter()
        .all(|f| f.request.message.external_proposals.is_empty()));
    assert_eq!(alice.group().members().count(), 1);
    assert!(alice.group().pending_proposals().next().is_none());

    // Messages flow again.
    ds.advance(1);
    let out = ds.process(&alice.message_request(b"alone now", ds.now_ms));
    assert_eq!(accepted_message(&out).epoch, 2);
    assert!(out.fanout.is_empty(), "nobody else is left");
}

// ---------------------------------------------------------------------------------------------
// 2. UserDeleted and ClientDeleted

#[test]
fn a_deleted_user_loses_all_of_its_clients() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-phone", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-laptop", "b.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob1, &mut bob2]);
    let group_id = alice.group_id();
    let bob_leaves: BTreeSet<u32> = [bob1.leaf(), bob2.leaf()].into();

    // A user the group does not have: nothing to do.
    let out = ds.assert_unchanged(|ds| {
        event(
            ds,
            &group_id,
            HubEvent::UserDeleted {
                user: b"mimi://c.example/u/carol".to_vec(),
            },
        )
    });
    nothing_to_do(&out);

    let out = event(
        &mut ds,
        &group_id,
        HubEvent::UserDeleted {
            user: b"mimi://b.example/u/bob".to_vec(),
        },
    );
    let receipt = accepted_message(&out);
    assert_eq!(receipt.external_proposals.len(), 2);
    // Each proposal has its own sequence number and goes to Alice only.
    for (i, proposal) in receipt.external_proposals.iter().enumerate() {
        assert_eq!(recipients_of(&out, proposal), queues(&[&alice]));
        assert!(out
            .fanout
            .iter()
            .filter(|f| f.request.message.message == *proposal)
            .all(|f| f.request.message.sequence_number == receipt.sequence_number + i as u64));
    }
    assert_eq!(recipients(&out), queues(&[&alice]));
    assert_eq!(
        TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]),
        2
    );
    assert!(bob1.inbox.is_empty() && bob2.inbox.is_empty());
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Proposal, Received::Proposal]
    );
    assert_eq!(
        pending_removals(&alice)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        bob_leaves
    );

    // Again: both are pending already.
    let out = ds.assert_unchanged(|ds| {
        event(
            ds,
            &group_id,
            HubEvent::UserDeleted {
                user: b"mimi://b.example/u/bob".to_vec(),
            },
        )
    });
    nothing_to_do(&out);

    let out = ds.process(&alice.update_request(ds.now_ms));
    let receipt = accepted_message(&out);
    assert!(receipt.external_proposals.is_empty());
    alice.confirm_commit();
    assert_eq!(recipients(&out), queues(&[&bob1, &bob2]));
    assert_eq!(alice.group().members().count(), 1);

    let out = ds.process(&alice.message_request(b"bye bob", ds.now_ms));
    accepted_message(&out);
}

#[test]
fn a_deleted_client_is_removed_and_its_siblings_stay() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-phone", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-laptop", "b.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob1, &mut bob2]);
    let group_id = alice.group_id();
    let laptop_leaf = bob2.leaf();
    let laptop_key = bob2.credential.signature_key.as_slice().to_vec();

    // A key nobody in the group has: nothing to do.
    let out = ds.assert_unchanged(|ds| {
        event(
            ds,
            &group_id,
            HubEvent::ClientDeleted {
                signature_key: vec![7; 32],
            },
        )
    });
    nothing_to_do(&out);

    let out = event(
        &mut ds,
        &group_id,
        HubEvent::ClientDeleted {
            signature_key: laptop_key.clone(),
        },
    );
    let receipt = accepted_message(&out);
    assert_eq!(receipt.external_proposals.len(), 1);
    assert_eq!(recipients(&out), queues(&[&alice, &bob1]));
    assert_eq!(
        TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]),
        2
    );
    assert!(bob2.inbox.is_empty());
    for member in [&mut alice, &mut bob1] {
        assert_eq!(member.process_inbox(), vec![Received::Proposal]);
        assert_eq!(pending_removals(member), vec![laptop_leaf]);
    }

    let out = ds.assert_unchanged(|ds| {
        event(
            ds,
            &group_id,
            HubEvent::ClientDeleted {
                signature_key: laptop_key,
            },
        )
    });
    nothing_to_do(&out);

    // Bob's phone commits the removal of its sibling.
    let out = ds.process(&bob1.update_request(ds.now_ms));
    accepted_message(&out);
    bob1.confirm_commit();
    assert_eq!(recipients(&out), queues(&[&alice, &bob2]));
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
    assert_eq!(alice.group().members().count(), 2);
    assert_eq!(bob1.group().members().count(), 2);

    let out = ds.process(&alice.message_request(b"hi phone", ds.now_ms));
    accepted_message(&out);
    assert_eq!(recipients(&out), queues(&[&bob1]));
    TestDs::route(&out, &mut [&mut bob1]);
    assert_eq!(
        bob1.process_inbox(),
        vec![Received::Application(b"hi phone".to_vec())]
    );
}

// ---------------------------------------------------------------------------------------------
// 3. InactivitySweep

#[test]
fn an_inactivity_sweep_proposes_removing_only_inactive_clients() {
    let mut config = DsConfig::new(DOMAIN);
    config.inactivity_limit_ms = Some(60_000);
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob]);
    let group_id = alice.group_id();
    let bob_leaf = bob.leaf();

    // Nobody has been idle long enough yet.
    ds.advance(30_000);
    nothing_to_do(&ds.assert_unchanged(|ds| event(ds, &group_id, HubEvent::InactivitySweep)));

    // Two minutes in, Alice speaks; Bob has been silent since he joined.
    ds.advance(90_000);
    let out = ds.process(&alice.message_request(b"still here", ds.now_ms));
    accepted_message(&out);
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"still here".to_vec())]
    );

    ds.advance(1);
    let out = event(&mut ds, &group_id, HubEvent::InactivitySweep);
    let receipt = accepted_message(&out);
    assert_eq!(receipt.external_proposals.len(), 1);
    assert_eq!(recipients(&out), queues(&[&alice]));
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);
    assert_eq!(pending_removals(&alice), vec![bob_leaf]);

    // A second sweep: Bob is pending already, Alice is active.
    nothing_to_do(&ds.assert_unchanged(|ds| event(ds, &group_id, HubEvent::InactivitySweep)));

    let out = ds.process(&alice.update_request(ds.now_ms));
    accepted_message(&out);
    alice.confirm_commit();
    assert_eq!(alice.group().members().count(), 1);
}

#[test]
fn an_inactivity_sweep_without_a_configured_limit_is_not_allowed() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob]);
    let group_id = alice.group_id();

    ds.advance(365 * 24 * 3600 * 1000);
    let refusal = ds.reject_event(&group_id, &HubEvent::InactivitySweep, ErrorCode::NotAllowed);
    assert_eq!(refusal.reason, NotAllowed::NoInactivityLimit.into());
}

// ---------------------------------------------------------------------------------------------
// 4. Strict vs GraceWindow

/// A group of Alice, Bob and Carol in which the DS proposed removing Carol; only Bob got the
/// proposal, so Alice's commits leave it out.
fn carol_removal_pending_but_alice_missed_it(
    config: DsConfig,
) -> (TestDs, TestClient, TestClient, TestClient) {
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob, &mut carol]);
    let group_id = alice.group_id();
    ds.advance(1000);
    let out = event(
        &mut ds,
        &group_id,
        HubEvent::QueueRejected(carol.queue.clone()),
    );
    accepted_message(&out);
    assert_eq!(recipients(&out), queues(&[&alice, &bob]));
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(bob.process_inbox(), vec![Received::Proposal]);
    assert_eq!(pending_removals(&bob), vec![carol.leaf()]);
    assert!(alice.group().pending_proposals().next().is_none());
    (ds, alice, bob, carol)
}

#[test]
fn under_the_strict_policy_a_commit_omitting_a_ds_removal_is_refused() {
    let (mut ds, mut alice, mut bob, carol) =
        carol_removal_pending_but_alice_missed_it(DsConfig::new(DOMAIN));
    let missing = pending_refs(&bob);
    assert_eq!(missing.len(), 1);

    ds.advance(1);
    let error = ds.reject_error(
        &alice.update_request(ds.now_ms),
        ErrorCode::MissingPendingProposals,
    );
    assert_eq!(proposal_refs(&error), missing);
    alice.discard_commit();

    // Even much later: the strict rule has no grace.
    ds.advance(3600 * 1000);
    let error = ds.reject_error(
        &alice.update_request(ds.now_ms),
        ErrorCode::MissingPendingProposals,
    );
    assert_eq!(proposal_refs(&error), missing);
    alice.discard_commit();

    // Bob, who has it, commits it.
    let out = ds.process(&bob.update_request(ds.now_ms));
    accepted_message(&out);
    bob.confirm_commit();
    assert_eq!(recipients(&out), queues(&[&alice, &carol]));
    assert_eq!(bob.group().members().count(), 2);
}

#[test]
fn under_a_grace_window_omitted_ds_removals_are_reissued_and_stapled_until_the_window_ends() {
    let mut config = DsConfig::new(DOMAIN);
    config.pending_proposals = PendingProposalPolicy::GraceWindow { ms: 60_000 };
    let (mut ds, mut alice, mut bob, mut carol) = carol_removal_pending_but_alice_missed_it(config);
    let issued_at = ds.now_ms;
    let carol_leaf = carol.leaf();
    let original = pending_refs(&bob);

    // Inside the window application messages flow...
    ds.advance(1000);
    let out = ds.process(&alice.message_request(b"in the window", ds.now_ms));
    accepted_message(&out);
    assert_eq!(recipients(&out), queues(&[&bob, &carol]));
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    bob.process_inbox();
    carol.process_inbox();

    // ...and a commit leaving the removal out is accepted; the DS issues it again in the new
    // epoch and staples it to the commit.
    ds.advance(1000);
    let out = ds.process(&alice.update_request(ds.now_ms));
    let receipt = accepted_message(&out);
    assert_eq!(receipt.epoch, 2);
    assert_eq!(receipt.external_proposals.len(), 1);
    alice.confirm_commit();
    assert_eq!(recipients(&out), queues(&[&bob, &carol]));
    assert!(!out.fanout.is_empty());
    for fanout in &out.fanout {
        assert_eq!(
            fanout.request.message.external_proposals,
            receipt.external_proposals
        );
    }
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    assert_eq!(
        process_inbox_with_stapled(&mut bob),
        vec![
            Received::Commit {
                epoch: 2,
                removed: false
            },
            Received::Proposal
        ]
    );
    assert_eq!(pending_removals(&bob), vec![carol_leaf]);
    let reissued = pending_refs(&bob);
    assert_ne!(reissued, original, "a new proposal of the new epoch");
    // Carol, the target, also gets the commit with it.
    let stapled = carol.inbox[0].external_proposals.clone();
    assert_eq!(carol.process_inbox().len(), 1);
    let proposals = process_stapled(&mut carol, &stapled);
    assert_eq!(
        proposals.iter().map(removed_leaf).collect::<Vec<_>>(),
        vec![carol_leaf]
    );

    // Still inside the window: messages flow.
    ds.advance(1000);
    let out = ds.process(&alice.message_request(b"epoch two", ds.now_ms));
    accepted_message(&out);

    // After the window (measured from the first issue), messages wait and a commit leaving
    // the re-issued removal out is refused.
    ds.now_ms = issued_at + 61_000;
    // (That messages wait again: `after_the_grace_window_application_messages_wait`.)
    let error = ds.reject_error(
        &alice.update_request(ds.now_ms),
        ErrorCode::MissingPendingProposals,
    );
    assert_eq!(proposal_refs(&error), reissued);
    alice.discard_commit();

    // Alice takes the proposal stapled to her receipt and commits it.
    let proposals = process_stapled(&mut alice, &receipt.external_proposals);
    assert_eq!(
        proposals.iter().map(removed_leaf).collect::<Vec<_>>(),
        vec![carol_leaf]
    );
    ds.advance(1);
    let out = ds.process(&alice.update_request(ds.now_ms));
    let receipt = accepted_message(&out);
    assert!(receipt.external_proposals.is_empty());
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: 3,
            removed: false
        }]
    );
    assert_eq!(
        carol.process_inbox(),
        vec![Received::Commit {
            epoch: 3,
            removed: true
        }]
    );
    let out = ds.process(&alice.message_request(b"just us", ds.now_ms));
    accepted_message(&out);
    assert_eq!(recipients(&out), queues(&[&bob]));
}

// ---------------------------------------------------------------------------------------------
// 5. External commit

#[test]
fn an_external_commit_makes_the_ds_reissue_its_pending_removals() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob]);
    let group_id = alice.group_id();
    let bob_leaf = bob.leaf();

    ds.advance(1000);
    let issued_at = ds.now_ms;
    let out = event(
        &mut ds,
        &group_id,
        HubEvent::ClientDeleted {
            signature_key: bob.credential.signature_key.as_slice().to_vec(),
        },
    );
    let first = accepted_message(&out).external_proposals;
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);

    // Joiners see the pending removal.
    ds.advance(5000);
    let info = group_info(&mut ds, &alice);
    assert_eq!(info.pending_proposals.len(), 1);
    assert_eq!(info.pending_proposals[0].proposal, first[0]);
    assert_eq!(info.pending_proposals[0].hub_accepted_time, issued_at);

    // Alice's laptop joins by external commit, which cannot include the proposal.
    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let join_time = ds.now_ms;
    let out = ds.process(&laptop.external_join_request(&info));
    let receipt = accepted_message(&out);
    assert_eq!(receipt.epoch, 2);
    assert_eq!(receipt.external_proposals.len(), 1);
    assert_ne!(receipt.external_proposals, first);
    laptop.confirm_commit();
    let proposals = process_stapled(&mut laptop, &receipt.external_proposals);
    assert_eq!(
        proposals.iter().map(removed_leaf).collect::<Vec<_>>(),
        vec![bob_leaf]
    );
    assert_eq!(recipients(&out), queues(&[&alice, &bob]));
    for fanout in &out.fanout {
        assert_eq!(
            fanout.request.message.external_proposals,
            receipt.external_proposals
        );
    }
    TestDs::route(&out, &mut [&mut alice, &mut bob, &mut laptop]);
    assert!(laptop.inbox.is_empty());
    assert_eq!(
        process_inbox_with_stapled(&mut alice),
        vec![
            Received::Commit {
                epoch: 2,
                removed: false
            },
            Received::Proposal
        ]
    );
    assert_eq!(pending_removals(&alice), vec![bob_leaf]);
    assert_eq!(pending_refs(&alice), pending_refs(&laptop));

    // The GroupInfo service lists the re-issued proposal, accepted at the join.
    let info = group_info(&mut ds, &alice);
    assert_eq!(info.pending_proposals.len(), 1);
    assert_eq!(
        info.pending_proposals[0].proposal,
        receipt.external_proposals[0]
    );
    assert_eq!(info.pending_proposals[0].hub_accepted_time, join_time);

    // (That the re-issued removal still blocks messages:
    // `application_messages_wait_while_a_ds_removal_is_pending`.)

    // The next commit includes it and removes Bob.
    let out = ds.process(&alice.update_request(ds.now_ms));
    let receipt = accepted_message(&out);
    assert_eq!(receipt.epoch, 3);
    assert!(receipt.external_proposals.is_empty());
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut laptop]);
    assert_eq!(
        laptop.process_inbox(),
        vec![Received::Commit {
            epoch: 3,
            removed: false
        }]
    );
    assert_eq!(alice.group().members().count(), 2);
    assert!(group_info(&mut ds, &alice).pending_proposals.is_empty());

    let out = ds.process(&laptop.message_request(b"bob is gone", ds.now_ms));
    accepted_message(&out);
    assert_eq!(recipients(&out), queues(&[&alice]));
}

// ---------------------------------------------------------------------------------------------
// 6. RotateSigningKey

#[test]
fn rotating_the_signing_key_moves_the_group_to_the_new_identity() {
    let (old, old_retired, old_sender) = shared_identity(DOMAIN);
    let (new, new_sender) = ds_identity(DOMAIN);
    assert_ne!(old_sender, new_sender);

    // The group is created while the DS still signs with its old key.
    let mut ds = TestDs::new(DOMAIN);
    ds.ds = service(DsConfig::new(DOMAIN), old);
    ds.external_sender = old_sender.clone();
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob, &mut carol]);
    let group_id = alice.group_id();
    assert_eq!(
        alice.group().extensions().external_senders(),
        Some(&vec![old_sender.clone()])
    );

    // The DS rotates: the old identity is retired.
    ds.ds = service(DsConfig::new(DOMAIN), new).with_retired_identity(old_retired);
    ds.external_sender = new_sender.clone();
    ds.advance(1000);

    let out = event(&mut ds, &group_id, HubEvent::RotateSigningKey);
    let receipt = accepted_message(&out);
    assert_eq!(receipt.external_proposals.len(), 1);
    assert_eq!(recipients(&out), queues(&[&alice, &bob, &carol]));
    TestDs::route(&out, &mut [&mut alice, &mut bob, &mut carol]);
    for member in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(member.process_inbox(), vec![Received::Proposal]);
        let proposals: Vec<_> = member.group().pending_proposals().collect();
        assert_eq!(proposals.len(), 1);
        match proposals[0].proposal() {
            Proposal::GroupContextExtensions(gce) => assert_eq!(
                gce.extensions().external_senders(),
                Some(&vec![new_sender.clone()])
            ),
            other => panic!("expected GroupContextExtensions, got {other:?}"),
        }
    }

    // A member commit including it is accepted.
    ds.advance(1);
    let out = ds.process(&alice.update_request(ds.now_ms));
    let receipt = accepted_message(&out);
    assert!(receipt.external_proposals.is_empty());
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    for member in [&mut bob, &mut carol] {
        assert_eq!(
            member.process_inbox(),
            vec![Received::Commit {
                epoch: 2,
                removed: false
            }]
        );
    }
    for member in [&alice, &bob, &carol] {
        assert_eq!(
            member.group().extensions().external_senders(),
            Some(&vec![new_sender.clone()])
        );
    }

    // Nothing left to rotate.
    nothing_to_do(&ds.assert_unchanged(|ds| event(ds, &group_id, HubEvent::RotateSigningKey)));

    // A further removal is signed with the new key, which is now the only one members accept.
    let carol_leaf = carol.leaf();
    let out = event(
        &mut ds,
        &group_id,
        HubEvent::QueueRejected(carol.queue.clone()),
    );
    accepted_message(&out);
    assert_eq!(recipients(&out), queues(&[&alice, &bob]));
    TestDs::route(&out, &mut [&mut alice, &mut bob]);
    for member in [&mut alice, &mut bob] {
        assert_eq!(member.process_inbox(), vec![Received::Proposal]);
        assert_eq!(pending_removals(member), vec![carol_leaf]);
    }
    let out = ds.process(&bob.update_request(ds.now_ms));
    accepted_message(&out);
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 3,
            removed: false
        }]
    );
    assert_eq!(alice.group().members().count(), 2);
}

/// RFC 9420 §12.2: a commit carries at most one GroupContextExtensions proposal, and openmls
/// committers include every one they stored. So the hub issues its rotation only while no other
/// is pending (a member's is refused with invalid_proposal naming it; its own pending rotation
/// leaves nothing to do), and refuses a member's while its rotation is pending (wire-format.md
/// §7.6). Before, a second RotateSigningKey issued a second rotation and no commit was valid
/// again.
#[test]
fn a_rotation_is_never_pending_next_to_another_group_context_extensions_proposal() {
    let (old, old_retired, old_sender) = shared_identity(DOMAIN);
    let (new, new_sender) = ds_identity(DOMAIN);
    let mut ds = TestDs::new(DOMAIN);
    ds.ds = service(DsConfig::new(DOMAIN), old);
    ds.external_sender = old_sender.clone();
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob, &mut carol]);
    let group_id = alice.group_id();
    ds.ds = service(DsConfig::new(DOMAIN), new).with_retired_identity(old_retired);
    ds.external_sender = new_sender.clone();

    // Bob's GroupContextExtensions proposal is pending: the rotation waits.
    let group = bob.group.as_mut().unwrap();
    let extensions = group.extensions().clone();
    let (message, bob_ref) = group
        .propose_group_context_extensions(&bob.provider, extensions, &bob.signer)
        .unwrap();
    let out = ds.process(&bob.signed(
        mimi_ds::wire::DsRequestBody::Proposals(mimi_ds::wire::ProposalsRequest {
            proposals: vec![mimi_ds::testing::mls_bytes(&message)],
        }),
        ds.now_ms,
    ));
    accepted_message(&out);
    TestDs::route(&out, &mut [&mut alice, &mut carol]);
    alice.process_inbox();
    carol.process_inbox();
    let refusal = ds.reject_event(
        &group_id,
        &HubEvent::RotateSigningKey,
        ErrorCode::InvalidProposal,
    );
    assert_eq!(
        proposal_refs(&refusal.error),
        vec![bob_ref.as_slice().to_vec()]
    );

    // Alice commits it; now the rotation is issued, once.
    let out = ds.process(&alice.update_request(ds.now_ms));
    accepted_message(&out);
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob, &mut carol]);
    bob.process_inbox();
    carol.process_inbox();
    let out = event(&mut ds, &group_id, HubEvent::RotateSigningKey);
    assert_eq!(accepted_message(&out).external_proposals.len(), 1);
    TestDs::route(&out, &mut [&mut alice, &mut bob, &mut carol]);
    for member in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(member.process_inbox(), vec![Received::Proposal]);
    }
    nothing_to_do(&ds.assert_unchanged(|ds| event(ds, &group_id, HubEvent::RotateSigningKey)));

    // A member's GroupContextExtensions proposal next to the pending rotation is refused.
    let group = carol.group.as_mut().unwrap();
    let extensions = group.extensions().clone();
    let (message, carol_ref) = group
        .propose_group_context_extensions(&carol.provider, extensions, &carol.signer)
        .unwrap();
    let out = ds.process(&carol.signed(
        mimi_ds::wire::DsRequestBody::Proposals(mimi_ds::wire::ProposalsRequest {
            proposals: vec![mimi_ds::testing::mls_bytes(&message)],
        }),
        ds.now_ms,
    ));
    let error = assert_rejected(&out, ErrorCode::InvalidProposal);
    assert_eq!(proposal_refs(&error), vec![carol_ref.as_slice().to_vec()]);

    // Bob commits the rotation.
    let out = ds.process(&bob.update_request(ds.now_ms));
    accepted_message(&out);
    bob.confirm_commit();
    assert_eq!(
        bob.group().extensions().external_senders(),
        Some(&vec![new_sender.clone()])
    );
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 3,
            removed: false
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Application messages while DS removals are pending

// openmls refuses to encrypt application messages while its group has pending proposals, so
// the refused messages below are built before the sender stores the DS's proposal.

#[test]
fn application_messages_wait_while_a_ds_removal_is_pending() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    form_group(&mut ds, &mut alice, &mut [&mut bob]);
    let group_id = alice.group_id();

    ds.advance(1000);
    let early = alice.message_request(b"anyone?", ds.now_ms);
    let out = event(
        &mut ds,
        &group_id,
        HubEvent::QueueRejected(bob.queue.clone()),
    );
    accepted_message(&out);
    TestDs::route(&out, &mut [&mut alice]);

    // Strict default: refused while the removal is pending.
    assert_eq!(
        ds.reject(&early, ErrorCode::MissingPendingProposals),
        RejectReason::HubRemovalsPending
    );
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);

    // An external commit lets it lapse; the DS issues it again and messages still wait.
    ds.advance(1000);
    let info = group_info(&mut ds, &alice);
    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let out = ds.process(&laptop.external_join_request(&info));
    let receipt = accepted_message(&out);
    assert_eq!(receipt.external_proposals.len(), 1);
    laptop.confirm_commit();
    let late = laptop.message_request(b"hello", ds.now_ms);
    process_stapled(&mut laptop, &receipt.external_proposals);
    TestDs::route(&out, &mut [&mut alice]);
    process_inbox_with_stapled(&mut alice);
    ds.advance(1);
    ds.reject(&late, ErrorCode::MissingPendingProposals);

    // Once a commit includes it, messages flow.
    let out = ds.process(&alice.update_request(ds.now_ms));
    accepted_message(&out);
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut laptop]);
    laptop.process_inbox();
    let out = ds.process(&laptop.message_request(b"bob is gone", ds.now_ms));
    accepted_message(&out);
    assert_eq!(recipients(&out), queues(&[&alice]));
}

#[test]
fn after_the_grace_window_application_messages_wait() {
    let mut config = DsConfig::new(DOMAIN);
    config.pending_proposals = PendingProposalPolicy::GraceWindow { ms: 60_000 };
    let (mut ds, mut alice, _bob, _carol) = carol_removal_pending_but_alice_missed_it(config);
    let issued_at = ds.now_ms;

    ds.advance(59_000);
    let out = ds.process(&alice.message_request(b"in the window", ds.now_ms));
    accepted_message(&out);

    ds.now_ms = issued_at + 61_000;
    ds.reject(
        &alice.message_request(b"too late", ds.now_ms),
        ErrorCode::MissingPendingProposals,
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Unknown group

#[test]
fn an_event_for_an_unknown_group_is_refused() {
    let mut ds = TestDs::new(DOMAIN);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    form_group(&mut ds, &mut alice, &mut []);
    // A group ID never issued, and one reserved but never created.
    let reserved = ds.request_group_id();
    for group_id in [b"nope@hub.example".to_vec(), reserved] {
        for e in [
            HubEvent::QueueRejected(alice.queue.clone()),
            HubEvent::ClientDeleted {
                signature_key: alice.credential.signature_key.as_slice().to_vec(),
            },
            HubEvent::UserDeleted {
                user: b"mimi://a.example/u/alice".to_vec(),
            },
            HubEvent::InactivitySweep,
            HubEvent::RotateSigningKey,
        ] {
            ds.reject_event(&group_id, &e, ErrorCode::UnknownGroup);
        }
    }
}
