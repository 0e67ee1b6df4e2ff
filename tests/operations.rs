//! The per-operation commit rules (`add_users`, `add_clients`, `remove_users`, `remove_clients`,
//! `update_client`, `delete_group`), the committer-credential rules and credential validation,
//! each with real openmls clients. The `re_initialize_group` rules, whose commits openmls
//! cannot build, are in tests/reinit.rs.
//!
//! Every rule has a positive test (accepted, and every client of the group ends in the same
//! epoch with the same epoch authenticator, joiners joining from their Welcome) and a negative
//! test (the exact code, no fanout, storage byte-identical) that would pass the request if the
//! rule were removed. Where a refusal could also come from another check with the same code
//! (e.g. a Welcome mismatch), the named reason (`Outcome::refusal`) tells them apart.
//!
//! One rule cannot be reached with real openmls 0.9 clients: a commit removing its committer
//! (openmls refuses to build one, and the DS's `PublicGroup` refuses to stage one before the DS
//! rule runs). See the test in that section.

use mimi_ds::storage::{InMemoryStorage, RecordKind};
use mimi_ds::testing::{
    commit_body, ds_identity, mls_bytes, Received, TestClient, TestDs, START_MS,
};
use mimi_ds::wire::{
    DsRequestBody, ErrorCode, GroupUpdateRequest, ProposalsRequest, UpdateClientRequest,
};
use mimi_ds::{
    AuthenticationFailed, DeliveryService, DsConfig, InvalidLeafNode, NotAllowed, RejectReason,
    Status,
};
use openmls::prelude::{
    BasicCredential, CreateCommitError, CredentialWithKey, LeafNodeIndex, LeafNodeParameters,
};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider as _;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

#[path = "support/groups.rs"]
mod groups;

use groups::{deliver, group_of, is, leaves, membership, queue, solo, RejectBecause as _};

/// `client`'s credential with another BasicCredential identity (same signature key).
fn renamed(client: &TestClient, identity: &str) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
        signature_key: client.credential.signature_key.clone(),
    }
}

/// Leaf node parameters replacing the committer's credential.
fn new_credential(credential: CredentialWithKey) -> LeafNodeParameters {
    LeafNodeParameters::builder()
        .with_credential_with_key(credential)
        .build()
}

// ---------------------------------------------------------------------------------------------
// add_users (3)
// ---------------------------------------------------------------------------------------------

#[test]
fn add_users_adds_two_clients_of_a_new_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-1", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-2", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut carol]);

    let (update, welcome) =
        alice.stage_commit(|b| b.propose_adds(vec![bob1.key_package(), bob2.key_package()]));
    let out = ds.accept(&alice.signed(
        DsRequestBody::AddUsers(membership(update, welcome)),
        ds.now_ms,
    ));
    deliver(
        &mut ds,
        &out,
        &mut alice,
        &mut [&mut carol],
        &mut [&mut bob1, &mut bob2],
    );
    assert_eq!(alice.group().members().count(), 4);
}

#[test]
fn add_users_refuses_a_client_of_a_user_already_in_the_group() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-1", "b.example");
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let alice2 = TestClient::new("alice", "alice-2", "a.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob1]);

    // Another client of a member's user, and another client of the sender's own user.
    for key_package in [bob2.key_package(), alice2.key_package()] {
        let (update, welcome) = alice.stage_commit(|b| b.propose_adds(vec![key_package]));
        let request = alice.signed(
            DsRequestBody::AddUsers(membership(update, welcome)),
            ds.now_ms,
        );
        ds.reject_because(
            &request,
            ErrorCode::NotAllowed,
            is(NotAllowed::AddUsersOfExistingUser),
        );
        alice.discard_commit();
    }
}

#[test]
fn add_users_refuses_a_remove_by_value() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    let bob_leaf = leaves(&[&bob]);
    let (update, welcome) = alice.stage_commit(|b| {
        b.propose_adds(vec![carol.key_package()])
            .propose_removals(bob_leaf)
    });
    let request = alice.signed(
        DsRequestBody::AddUsers(membership(update, welcome)),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::AddUsersNotOnlyAdds),
    );
    alice.discard_commit();
}

#[test]
fn add_users_refuses_a_commit_without_proposals() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    let (update, welcome) = alice.stage_commit(|b| b.force_self_update(true));
    assert!(welcome.is_none());
    let request = alice.signed(
        DsRequestBody::AddUsers(membership(update, welcome)),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::AddUsersNotOnlyAdds),
    );
    alice.discard_commit();
}

// ---------------------------------------------------------------------------------------------
// add_clients (5)
// ---------------------------------------------------------------------------------------------

#[test]
fn add_clients_adds_a_client_of_the_senders_own_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice1 = TestClient::new("alice", "alice-1", "a.example");
    let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice1, &mut [&mut bob]);

    let (update, welcome) = alice1.stage_commit(|b| b.propose_adds(vec![alice2.key_package()]));
    let out = ds.accept(&alice1.signed(
        DsRequestBody::AddClients(membership(update, welcome)),
        ds.now_ms,
    ));
    deliver(
        &mut ds,
        &out,
        &mut alice1,
        &mut [&mut bob],
        &mut [&mut alice2],
    );
    assert_eq!(alice2.group().members().count(), 3);
}

#[test]
fn add_clients_refuses_a_client_of_another_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-1", "b.example");
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    let alice2 = TestClient::new("alice", "alice-2", "a.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob1]);

    // A new user, a member's user, and one foreign client next to one of Alice's own.
    let cases = [
        vec![carol.key_package()],
        vec![bob2.key_package()],
        vec![alice2.key_package(), carol.key_package()],
    ];
    for key_packages in cases {
        let (update, welcome) = alice.stage_commit(|b| b.propose_adds(key_packages));
        let request = alice.signed(
            DsRequestBody::AddClients(membership(update, welcome)),
            ds.now_ms,
        );
        ds.reject_because(
            &request,
            ErrorCode::NotAllowed,
            is(NotAllowed::AddClientsOfAnotherUser),
        );
        alice.discard_commit();
    }
    // One of Alice's own clients with a Remove by value.
    let bob_leaf = leaves(&[&bob1]);
    let (update, welcome) = alice.stage_commit(|b| {
        b.propose_adds(vec![alice2.key_package()])
            .propose_removals(bob_leaf)
    });
    let request = alice.signed(
        DsRequestBody::AddClients(membership(update, welcome)),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::AddClientsNotOnlyAdds),
    );
    alice.discard_commit();
}

// ---------------------------------------------------------------------------------------------
// remove_users (4)
// ---------------------------------------------------------------------------------------------

#[test]
fn remove_users_removes_every_client_of_a_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-1", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-2", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob1, &mut bob2, &mut carol]);

    let removed = leaves(&[&bob1, &bob2]);
    let (update, _) = alice.stage_commit(|b| b.propose_removals(removed));
    let request = alice.signed(
        DsRequestBody::RemoveUsers(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    let out = ds.accept(&request);
    let received = deliver(
        &mut ds,
        &out,
        &mut alice,
        &mut [&mut bob1, &mut bob2, &mut carol],
        &mut [],
    );
    assert!(matches!(
        received[0][..],
        [Received::Commit { removed: true, .. }]
    ));
    assert!(matches!(
        received[1][..],
        [Received::Commit { removed: true, .. }]
    ));
    assert_eq!(alice.group().members().count(), 2);
    // The removed clients are no longer members of the DS's group.
    let request = bob1.update_queue_request(queue("b.example", "bob-1-moved"), ds.now_ms);
    ds.reject_because(
        &request,
        ErrorCode::AuthenticationFailed,
        is(AuthenticationFailed::NoMemberAtLeaf),
    );
}

#[test]
fn remove_users_refuses_removing_only_some_clients_of_a_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-1", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-2", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob1, &mut bob2, &mut carol]);

    // Bob's phone alone, and Carol with Bob's phone.
    for removed in [leaves(&[&bob1]), leaves(&[&carol, &bob1])] {
        let (update, _) = alice.stage_commit(|b| b.propose_removals(removed));
        let request = alice.signed(
            DsRequestBody::RemoveUsers(GroupUpdateRequest {
                group_update: update,
            }),
            ds.now_ms,
        );
        ds.reject_because(
            &request,
            ErrorCode::NotAllowed,
            is(NotAllowed::RemoveUsersPartially),
        );
        alice.discard_commit();
    }
}

#[test]
fn remove_users_refuses_an_add_by_value() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let dave = TestClient::new("dave", "dave-1", "d.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    let removed = leaves(&[&bob]);
    let (update, _) = alice.stage_commit(|b| {
        b.propose_removals(removed)
            .propose_adds(vec![dave.key_package()])
    });
    let request = alice.signed(
        DsRequestBody::RemoveUsers(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    // remove_users carries no Welcomes, so the Welcome check would refuse too: the reason must be
    // the operation rule.
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::RemoveUsersNotOnlyRemoves),
    );
    alice.discard_commit();
}

// ---------------------------------------------------------------------------------------------
// remove_clients (6)
// ---------------------------------------------------------------------------------------------

#[test]
fn remove_clients_removes_another_client_of_the_senders_own_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice1 = TestClient::new("alice", "alice-1", "a.example");
    let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice1, &mut [&mut alice2, &mut bob]);

    let removed = leaves(&[&alice2]);
    let (update, _) = alice1.stage_commit(|b| b.propose_removals(removed));
    let request = alice1.signed(
        DsRequestBody::RemoveClients(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    let out = ds.accept(&request);
    let received = deliver(
        &mut ds,
        &out,
        &mut alice1,
        &mut [&mut alice2, &mut bob],
        &mut [],
    );
    assert!(matches!(
        received[0][..],
        [Received::Commit { removed: true, .. }]
    ));
    assert_eq!(bob.group().members().count(), 2);
}

#[test]
fn remove_clients_refuses_a_client_of_another_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice1 = TestClient::new("alice", "alice-1", "a.example");
    let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice1, &mut [&mut alice2, &mut bob]);

    // Bob alone, and Bob next to Alice's other client.
    for removed in [leaves(&[&bob]), leaves(&[&alice2, &bob])] {
        let (update, _) = alice1.stage_commit(|b| b.propose_removals(removed));
        let request = alice1.signed(
            DsRequestBody::RemoveClients(GroupUpdateRequest {
                group_update: update,
            }),
            ds.now_ms,
        );
        ds.reject_because(
            &request,
            ErrorCode::NotAllowed,
            is(NotAllowed::RemoveClientsOfAnotherUser),
        );
        alice1.discard_commit();
    }
    // Alice's other client with an Add by value (remove_clients carries no Welcomes, so the
    // reason is pinned).
    let alice3 = TestClient::new("alice", "alice-3", "a.example");
    let removed = leaves(&[&alice2]);
    let (update, _) = alice1.stage_commit(|b| {
        b.propose_removals(removed)
            .propose_adds(vec![alice3.key_package()])
    });
    let request = alice1.signed(
        DsRequestBody::RemoveClients(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::RemoveClientsNotOnlyRemoves),
    );
    alice1.discard_commit();
}

/// DS-06 §"Commit": a committer cannot remove itself. RFC 9420 §12.2 forbids it too, and
/// openmls enforces that on both sides: a client cannot build such a commit (checked here), and
/// the DS's `PublicGroup` refuses to stage one (ValSem200) before the DS's own rule runs. So no
/// real client can produce the request that would reach the DS's `not_allowed` check.
#[test]
fn a_commit_removing_the_committer_cannot_be_built() {
    let mut ds = TestDs::new("hub.example");
    let mut alice1 = TestClient::new("alice", "alice-1", "a.example");
    let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
    group_of(&mut ds, &mut alice1, &mut [&mut alice2]);

    let own = LeafNodeIndex::new(alice1.leaf());
    let provider = &alice1.provider;
    let built = alice1
        .group
        .as_mut()
        .unwrap()
        .commit_builder()
        .propose_removals([own])
        .load_psks(provider.storage())
        .unwrap()
        .create_group_info(true)
        .build(provider.rand(), provider.crypto(), &alice1.signer, |_| true);
    assert!(
        matches!(built, Err(CreateCommitError::CannotRemoveSelf)),
        "{:?}",
        built.err()
    );

    // Nor through a stored proposal: once Alice's other client proposes her removal, openmls
    // refuses to build a commit of hers that includes it. (She may leave it out: a member's
    // proposal is never mandatory, wire-format.md §4.3.3.)
    let out = ds.accept(&alice2.propose_remove_request(alice1.leaf(), ds.now_ms));
    TestDs::route(&out, &mut [&mut alice1]);
    assert_eq!(alice1.process_inbox(), vec![Received::Proposal]);
    let provider = &alice1.provider;
    let built = alice1
        .group
        .as_mut()
        .unwrap()
        .commit_builder()
        .force_self_update(true)
        .load_psks(provider.storage())
        .unwrap()
        .create_group_info(true)
        .build(provider.rand(), provider.crypto(), &alice1.signer, |_| true);
    assert!(
        matches!(built, Err(CreateCommitError::CannotRemoveSelf)),
        "{:?}",
        built.err()
    );
}

// ---------------------------------------------------------------------------------------------
// update_client (8)
// ---------------------------------------------------------------------------------------------

#[test]
fn update_client_with_a_new_queue_moves_the_clients_fanout() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    let moved = queue("a2.example", "alice-1-new");
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let request = alice.signed(
        DsRequestBody::UpdateClient(UpdateClientRequest {
            group_update: update,
            queue_config: Some(moved.clone()),
        }),
        ds.now_ms,
    );
    let out = ds.accept(&request);
    deliver(&mut ds, &out, &mut alice, &mut [&mut bob], &mut []);

    // Bob's next message goes to Alice's new queue, and only there.
    let out = ds.accept(&bob.message_request(b"where are you?", ds.now_ms));
    let targets: Vec<(Vec<u8>, Vec<u8>)> = out
        .fanout
        .iter()
        .flat_map(|f| {
            f.request.recipients.iter().map(|q| {
                (
                    f.request.recipient_domain.as_slice().to_vec(),
                    q.as_slice().to_vec(),
                )
            })
        })
        .collect();
    assert_eq!(
        targets,
        vec![(
            moved.provider_domain.as_slice().to_vec(),
            moved.queue.as_slice().to_vec()
        )]
    );
    assert_eq!(
        TestDs::route(&out, &mut [&mut alice]),
        0,
        "nothing reaches the old queue"
    );
    alice.queue = moved;
    assert_eq!(TestDs::route(&out, &mut [&mut alice]), 1);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Application(b"where are you?".to_vec())]
    );
}

#[test]
fn update_client_includes_pending_proposals_by_reference() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob, &mut carol]);

    // Bob proposes Carol's removal; Alice's update commits it by reference.
    let out = ds.accept(&bob.propose_remove_request(carol.leaf(), ds.now_ms));
    TestDs::route(&out, &mut [&mut alice, &mut carol]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);
    assert_eq!(carol.process_inbox(), vec![Received::Proposal]);
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let request = alice.signed(
        DsRequestBody::UpdateClient(UpdateClientRequest {
            group_update: update,
            queue_config: None,
        }),
        ds.now_ms,
    );
    let out = ds.accept(&request);
    let received = deliver(
        &mut ds,
        &out,
        &mut alice,
        &mut [&mut bob, &mut carol],
        &mut [],
    );
    assert!(matches!(
        received[1][..],
        [Received::Commit { removed: true, .. }]
    ));
    assert_eq!(alice.group().members().count(), 2);
}

#[test]
fn update_client_refuses_a_commit_without_an_update_path() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    // Bob proposes adding Carol; Alice commits it by reference, which needs no update path.
    let (proposal, _) = bob
        .group
        .as_mut()
        .unwrap()
        .propose_add_member(&bob.provider, &bob.signer, &carol.key_package())
        .unwrap();
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![mls_bytes(&proposal)],
    });
    let out = ds.accept(&bob.signed(body, ds.now_ms));
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(alice.process_inbox(), vec![Received::Proposal]);
    let (update, _) = alice.stage_commit(|b| b);
    assert!(alice
        .group()
        .pending_commit()
        .unwrap()
        .update_path_leaf_node()
        .is_none());
    let request = alice.signed(
        DsRequestBody::UpdateClient(UpdateClientRequest {
            group_update: update,
            queue_config: None,
        }),
        ds.now_ms,
    );
    // update_client carries no Welcomes, so the Welcome check would refuse it too: the reason
    // is pinned.
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::UpdateClientNotAnUpdatePath),
    );
    alice.discard_commit();
}

#[test]
fn update_client_refuses_proposals_by_value() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    let bob_leaf = leaves(&[&bob]);
    // An Add (with its Welcome left out: update_client carries none) and a Remove, each next
    // to the update path.
    for add in [true, false] {
        let (update, _) = if add {
            alice.stage_commit(|b| {
                b.force_self_update(true)
                    .propose_adds(vec![carol.key_package()])
            })
        } else {
            alice.stage_commit(|b| b.force_self_update(true).propose_removals(bob_leaf.clone()))
        };
        let request = alice.signed(
            DsRequestBody::UpdateClient(UpdateClientRequest {
                group_update: update,
                queue_config: None,
            }),
            ds.now_ms,
        );
        ds.reject_because(
            &request,
            ErrorCode::NotAllowed,
            is(NotAllowed::UpdateClientNotAnUpdatePath),
        );
        alice.discard_commit();
    }
}

// ---------------------------------------------------------------------------------------------
// The committer's credential
// ---------------------------------------------------------------------------------------------

#[test]
fn membership_operations_may_not_change_the_committers_credential() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let alice2 = TestClient::new("alice", "alice-2", "a.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    // The new credential keeps Alice's user, so only the credential rule is in the way.
    let same_user = renamed(&alice, "mimi://a.example/d/alice/alice-1-renamed");
    let (update, welcome) = alice.stage_commit(|b| {
        b.leaf_node_parameters(new_credential(same_user.clone()))
            .propose_adds(vec![alice2.key_package()])
    });
    let request = alice.signed(
        DsRequestBody::AddClients(membership(update, welcome)),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::MembershipOperationChangesCredential),
    );
    alice.discard_commit();

    let (update, welcome) = alice.stage_commit(|b| {
        b.leaf_node_parameters(new_credential(same_user.clone()))
            .propose_adds(vec![carol.key_package()])
    });
    let request = alice.signed(
        DsRequestBody::AddUsers(membership(update, welcome)),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::MembershipOperationChangesCredential),
    );
    alice.discard_commit();

    let removed = leaves(&[&bob]);
    let (update, _) = alice.stage_commit(|b| {
        b.leaf_node_parameters(new_credential(same_user.clone()))
            .propose_removals(removed)
    });
    let request = alice.signed(
        DsRequestBody::RemoveUsers(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::MembershipOperationChangesCredential),
    );
    alice.discard_commit();
}

#[test]
fn commits_may_not_move_the_committer_to_another_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    for identity in [
        "mimi://a.example/d/mallory/alice-1",
        "mimi://b.example/d/bob/bob-9",
    ] {
        let other_user = renamed(&alice, identity);
        let (update, _) =
            alice.stage_commit(|b| b.leaf_node_parameters(new_credential(other_user)));
        ds.reject_because(
            &alice.signed(commit_body(update), ds.now_ms),
            ErrorCode::NotAllowed,
            is(NotAllowed::CredentialMovesClientToAnotherUser),
        );
        alice.discard_commit();
    }
    // An update path whose new credential the validator refuses.
    let refused = renamed(&alice, "not-a-uri");
    let (update, _) = alice.stage_commit(|b| b.leaf_node_parameters(new_credential(refused)));
    ds.reject_because(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
        |r| {
            matches!(
                r,
                RejectReason::InvalidLeafNode(InvalidLeafNode::CredentialRejected(_))
            )
        },
    );
    alice.discard_commit();
}

#[test]
fn commits_may_rename_the_committers_device_within_its_user() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob]);

    let renamed_alice = renamed(&alice, "mimi://a.example/d/alice/alice-1-renamed");
    let (update, _) =
        alice.stage_commit(|b| b.leaf_node_parameters(new_credential(renamed_alice.clone())));
    let out = ds.accept(&alice.signed(commit_body(update), ds.now_ms));
    deliver(&mut ds, &out, &mut alice, &mut [&mut bob], &mut []);
    let seen_by_bob = bob
        .group()
        .members()
        .find(|m| m.index.u32() == alice.leaf())
        .unwrap()
        .credential;
    assert_eq!(seen_by_bob, renamed_alice.credential);
    // Alice is still Alice for the DS: add_clients of another Alice client is hers to make.
    let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
    let (update, welcome) = alice.stage_commit(|b| b.propose_adds(vec![alice2.key_package()]));
    let out = ds.accept(&alice.signed(
        DsRequestBody::AddClients(membership(update, welcome)),
        ds.now_ms,
    ));
    deliver(
        &mut ds,
        &out,
        &mut alice,
        &mut [&mut bob],
        &mut [&mut alice2],
    );
}

// ---------------------------------------------------------------------------------------------
// Credential validation
// ---------------------------------------------------------------------------------------------

#[test]
fn key_package_whose_credential_is_not_a_client_uri_is_refused() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    solo(&mut ds, &mut alice);

    for identity in [
        "not-a-uri",
        "mimi://c.example/u/carol",
        "mimi://c.example/d/carol",
    ] {
        let mut carol = TestClient::new("carol", "carol-1", "c.example");
        carol.credential = renamed(&carol, identity);
        let request = alice.add_request(vec![carol.key_package()], ds.now_ms);
        ds.reject_because(&request, ErrorCode::InvalidLeafNodeOrKeyPackage, |r| {
            matches!(
                r,
                RejectReason::InvalidLeafNode(InvalidLeafNode::CredentialRejected(_))
            )
        });
        alice.discard_commit();
    }
    // The same client with a proper credential is accepted.
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    let out = ds.accept(&alice.add_request(vec![carol.key_package()], ds.now_ms));
    deliver(&mut ds, &out, &mut alice, &mut [], &mut [&mut carol]);
}

#[test]
fn default_validator_refuses_create_group() {
    let (identity, external_sender) = ds_identity("hub.example");
    let mut ds = TestDs {
        ds: DeliveryService::new(
            DsConfig::new("hub.example"),
            identity,
            RustCrypto::default(),
        ),
        storage: InMemoryStorage::new(),
        now_ms: START_MS,
        external_sender,
    };
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let reserved = ds.storage.record_bytes(&group_id, RecordKind::Reservation);
    let out = ds.process(&alice.create_group_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::InvalidLeafNodeOrKeyPackage)
    );
    // Refused after the creator's signature verified: the reservation is consumed
    // (wire-format.md §4.2).
    assert!(reserved > 0);
    assert_eq!(
        ds.storage.record_bytes(&group_id, RecordKind::Reservation),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// delete_group (2)
// ---------------------------------------------------------------------------------------------

#[test]
fn delete_group_removes_every_other_member() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-1", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-2", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob1, &mut bob2]);

    let out = ds.accept(&alice.delete_group_request(ds.now_ms));
    let received = deliver(
        &mut ds,
        &out,
        &mut alice,
        &mut [&mut bob1, &mut bob2],
        &mut [],
    );
    assert!(received
        .iter()
        .all(|got| matches!(got[..], [Received::Commit { removed: true, .. }])));
    ds.reject_because(
        &alice.message_request(b"anyone?", ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
}

#[test]
fn delete_group_refuses_a_commit_that_keeps_a_member() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-1", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-2", "b.example");
    group_of(&mut ds, &mut alice, &mut [&mut bob1, &mut bob2]);

    let kept_bob2 = leaves(&[&bob1]);
    let (update, _) = alice.stage_commit(|b| b.propose_removals(kept_bob2));
    let request = alice.signed(
        DsRequestBody::DeleteGroup(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    ds.reject_because(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::DeleteGroupKeepsMembers),
    );
    alice.discard_commit();
    // The group is intact: the same removal as a plain commit is accepted.
    let out = ds.accept(&alice.remove_request(&[bob1.leaf()], ds.now_ms));
    deliver(
        &mut ds,
        &out,
        &mut alice,
        &mut [&mut bob1, &mut bob2],
        &mut [],
    );
}
