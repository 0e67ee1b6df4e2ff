//! The per-operation commit rules (`add_users`, `add_clients`, `remove_users`, `remove_clients`,
//! `update_client`, `re_initialize_group`, `delete_group`), the committer-credential rules and
//! credential validation, each with real openmls clients.
//!
//! Every rule has a positive test (accepted, and every client of the group ends in the same
//! epoch with the same epoch authenticator, joiners joining from their Welcome) and a negative
//! test (the exact code, no fanout, storage byte-identical) that would pass the request if the
//! rule were removed. Where a refusal could also come from another check with the same code
//! (e.g. a Welcome mismatch), the named reason (`Outcome::refusal`) tells them apart.
//!
//! One rule cannot be reached with real openmls 0.9 clients: a commit removing its committer
//! (openmls refuses to build one, and the DS's `PublicGroup` refuses to stage one before the DS
//! rule runs). ReInit commits cannot be built by openmls 0.9 either (its CommitBuilder drops
//! ReInit proposals), so the `re_initialize_group` tests forge them with the committer's real
//! key (`forge`); the DS validates them as it would a client's, but member clients cannot
//! process them, so those tests check the DS's verdict, fanout and state rather than the
//! members' epochs. See the tests in those sections.

use mimi_ds::storage::{
    DsStorage as _, InMemoryStorage, RecordKind, RecordWrite, VersionGuard, WriteOutcome, WriteSet,
};
use mimi_ds::testing::{
    commit_body, decode_response, ds_identity, mls_bytes, Received, TestClient, TestDs,
    CIPHERSUITE, START_MS,
};
use mimi_ds::wire::{
    ClientQueueConfig, DeleteGroupRequest, DsRequestBody, DsResponseBody, ErrorCode,
    GroupInfoOption, GroupUpdate, MembershipCommitRequest, MlsMessageBytes, ProposalsRequest,
    RatchetTreeBytes, UpdateClientRequest,
};
use mimi_ds::{
    AuthenticationFailed, DeliveryService, DsConfig, InvalidGroupId, InvalidGroupInfo,
    InvalidLeafNode, InvalidMlsMessage, NotAllowed, Outcome, RejectReason, Status,
};
use openmls::prelude::{
    AddProposal, BasicCredential, CreateCommitError, CredentialWithKey, LeafNodeIndex,
    LeafNodeParameters, MlsMessageBodyIn, Proposal, ReInitProposal,
};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider as _;
use tls_codec::{DeserializeBytes as _, Serialize as _, VLBytes};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Checked processing on a [`TestDs`] (methods, so `ds.reject(&client.request(ds.now_ms), ..)`
/// borrows like `ds.process(..)`).
trait Check {
    /// Processes a request that must be accepted.
    fn accept(&mut self, request: &[u8]) -> Outcome;
    /// Processes a request that must be refused with `code` for a reason `because` accepts
    /// ([`Outcome::refusal`]): exact status and error body, no fanout, storage byte-identical.
    fn reject(&mut self, request: &[u8], code: ErrorCode, because: impl Fn(&RejectReason) -> bool);
}

impl Check for TestDs {
    fn accept(&mut self, request: &[u8]) -> Outcome {
        let out = self.process(request);
        assert_eq!(
            out.status,
            Status::Accepted,
            "{:?}",
            decode_response(&out.response)
        );
        out
    }

    fn reject(&mut self, request: &[u8], code: ErrorCode, because: impl Fn(&RejectReason) -> bool) {
        let before = self.storage.clone();
        let out = self.process(request);
        let response = decode_response(&out.response);
        assert_eq!(out.status, Status::Rejected(code), "response: {response:?}");
        let DsResponseBody::Error(error) = response.body else {
            panic!("expected an error body, got {response:?}")
        };
        assert_eq!(error.code, code);
        assert!(
            out.refusal.as_ref().is_some_and(because),
            "refused for another reason: {:?}",
            out.refusal
        );
        assert!(out.fanout.is_empty(), "a rejected request fans out nothing");
        assert!(
            self.storage == before,
            "a rejected request leaves storage byte-identical"
        );
    }
}

/// A check of [`Check::reject`] that the refusal is exactly `expected`.
fn is(expected: impl Into<RejectReason>) -> impl Fn(&RejectReason) -> bool {
    let expected = expected.into();
    move |reason| *reason == expected
}

/// The group's current ratchet tree, as an external joiner gets it.
fn current_tree(ds: &mut TestDs, member: &TestClient) -> RatchetTreeBytes {
    ds.group_info(member, &member.group_id()).ratchet_tree
}

/// Delivers an accepted commit: the committer merges its staged commit, `members` process the
/// fanout, `joiners` get their Welcome and join with the tree of the new epoch. Every client
/// still in the group then shares the committer's epoch and epoch authenticator. Returns what
/// each of `members` received.
fn deliver(
    ds: &mut TestDs,
    out: &Outcome,
    committer: &mut TestClient,
    members: &mut [&mut TestClient],
    joiners: &mut [&mut TestClient],
) -> Vec<Vec<Received>> {
    committer.confirm_commit();
    {
        let mut everyone: Vec<&mut TestClient> = std::iter::once(&mut *committer)
            .chain(members.iter_mut().map(|c| &mut **c))
            .chain(joiners.iter_mut().map(|c| &mut **c))
            .collect();
        TestDs::route(out, &mut everyone);
    }
    assert!(
        committer.inbox.is_empty(),
        "the committer does not get its own commit"
    );
    let received: Vec<Vec<Received>> = members.iter_mut().map(|m| m.process_inbox()).collect();
    if !joiners.is_empty() {
        let tree = current_tree(ds, committer);
        for joiner in joiners.iter_mut() {
            let Some(Received::Welcome(welcome)) = joiner.process_inbox().pop() else {
                panic!("{} got no Welcome", joiner.name)
            };
            joiner.join_from_welcome(&welcome, &tree);
        }
    }
    let epoch = committer.epoch();
    let authenticator = committer.group().epoch_authenticator().as_slice().to_vec();
    let removed = |got: &[Received]| matches!(got, [Received::Commit { removed: true, .. }]);
    for (member, got) in members.iter().zip(&received) {
        if removed(got) {
            continue;
        }
        assert_eq!(
            got,
            &vec![Received::Commit {
                epoch,
                removed: false
            }],
            "{}",
            member.name
        );
    }
    let staying = members
        .iter()
        .zip(&received)
        .filter(|(_, got)| !removed(got))
        .map(|(m, _)| &**m);
    for client in staying.chain(joiners.iter().map(|j| &**j)) {
        assert_eq!(client.epoch(), epoch, "{} is in sync", client.name);
        assert_eq!(
            client.group().epoch_authenticator().as_slice(),
            authenticator,
            "{} is in sync",
            client.name
        );
    }
    received
}

/// A group created by `creator` alone (epoch 0).
fn solo(ds: &mut TestDs, creator: &mut TestClient) {
    let group_id = ds.request_group_id();
    creator.create_group(&group_id, &ds.external_sender);
    let request = creator.create_group_request(ds.now_ms);
    let _ = ds.accept(&request);
}

/// `creator` alone, then `others` added by one `commits` and joined.
fn group_of(ds: &mut TestDs, creator: &mut TestClient, others: &mut [&mut TestClient]) {
    solo(ds, creator);
    let key_packages = others.iter().map(|c| c.key_package()).collect();
    let out = ds.accept(&creator.add_request(key_packages, ds.now_ms));
    deliver(ds, &out, creator, &mut [], others);
}

/// A `MembershipCommitRequest` body from a staged commit.
fn membership(update: GroupUpdate, welcome: Option<MlsMessageBytes>) -> MembershipCommitRequest {
    MembershipCommitRequest {
        group_update: update,
        welcome_messages: welcome.into_iter().collect(),
    }
}

fn leaves(clients: &[&TestClient]) -> Vec<LeafNodeIndex> {
    clients
        .iter()
        .map(|c| LeafNodeIndex::new(c.leaf()))
        .collect()
}

fn queue(provider: &str, queue: &str) -> ClientQueueConfig {
    ClientQueueConfig {
        provider_domain: provider.as_bytes().to_vec().into(),
        queue: queue.as_bytes().to_vec().into(),
    }
}

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

/// A ReInit proposal to `group_id`, same version and suite, no extensions. openmls keeps
/// ReInitProposal's fields private, so it is decoded from its encoding:
/// `struct { opaque group_id<V>; ProtocolVersion version; CipherSuite cipher_suite;
/// Extension extensions<V>; }`.
fn reinit(group_id: &[u8]) -> Proposal {
    let mut bytes = VLBytes::from(group_id.to_vec())
        .tls_serialize_detached()
        .expect("encode");
    bytes.extend_from_slice(&1u16.to_be_bytes()); // mls10
    bytes.extend_from_slice(&(CIPHERSUITE as u16).to_be_bytes());
    bytes.push(0); // extensions<V>: empty
    Proposal::ReInit(Box::new(
        ReInitProposal::tls_deserialize_exact_bytes(&bytes).expect("ReInit"),
    ))
}

fn re_initialize(update: GroupUpdate) -> DsRequestBody {
    DsRequestBody::ReInitializeGroup(DeleteGroupRequest {
        group_update: update,
    })
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
        ds.reject(
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
    ds.reject(
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
    ds.reject(
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
        ds.reject(
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
    ds.reject(
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
        DsRequestBody::RemoveUsers(DeleteGroupRequest {
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
    ds.reject(
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
            DsRequestBody::RemoveUsers(DeleteGroupRequest {
                group_update: update,
            }),
            ds.now_ms,
        );
        ds.reject(
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
        DsRequestBody::RemoveUsers(DeleteGroupRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    // remove_users carries no Welcomes, so the Welcome check would refuse too: the reason must be
    // the operation rule.
    ds.reject(
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
        DsRequestBody::RemoveClients(DeleteGroupRequest {
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
            DsRequestBody::RemoveClients(DeleteGroupRequest {
                group_update: update,
            }),
            ds.now_ms,
        );
        ds.reject(
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
        DsRequestBody::RemoveClients(DeleteGroupRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    ds.reject(
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
    ds.reject(
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
        ds.reject(
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
    ds.reject(
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
    ds.reject(
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
        DsRequestBody::RemoveUsers(DeleteGroupRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    ds.reject(
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
        ds.reject(
            &alice.signed(commit_body(update), ds.now_ms),
            ErrorCode::NotAllowed,
            is(NotAllowed::CredentialMovesClientToAnotherUser),
        );
        alice.discard_commit();
    }
    // An update path whose new credential the validator refuses.
    let refused = renamed(&alice, "not-a-uri");
    let (update, _) = alice.stage_commit(|b| b.leaf_node_parameters(new_credential(refused)));
    ds.reject(
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
        ds.reject(&request, ErrorCode::InvalidLeafNodeOrKeyPackage, |r| {
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
// re_initialize_group (14)
// ---------------------------------------------------------------------------------------------

// openmls 0.9's CommitBuilder drops every ReInit proposal it is given (by value or from the
// proposal store: `ProposalQueue::filter_proposals` has `Proposal::ReInit(_) => { // TODO #751 }`),
// and `MlsGroup` has no way to propose one, so no real openmls client can build a ReInit commit.
// The tests below build them with [`forge`] (the committer's real key, validated by the DS's
// real openmls `PublicGroup`); `openmls_drops_reinit_proposals_from_commits` fails once openmls
// builds them, and the forge can then be replaced by `stage_commit`. What the DS does with a
// group after a ReInit is also tested on a roster marked re-initialized in storage.

#[path = "support/reinit_forge.rs"]
mod forge;

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
    ds.reject(
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
    ds.reject(
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
    ds.reject(
        &alice.signed(re_initialize(bad), ds.now_ms),
        ErrorCode::InvalidGroupInfo,
        is(InvalidGroupInfo::DoesNotMatchState),
    );
    // Bob cannot send Alice's commit.
    ds.reject(
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
    let MlsMessageBodyIn::GroupInfo(info) = served.group_info.parse().unwrap().extract() else {
        panic!("a GroupInfo")
    };
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
    ds.reject(
        &alice.update_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    alice.discard_commit();
    ds.reject(
        &bob.update_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    bob.discard_commit();
    // ... and forged ones at the DS's current epoch, which would otherwise be valid: another
    // ReInit, as re_initialize_group and as commits.
    let again = ds.request_group_id();
    let update = forge::commit_at_served_epoch(&mut ds, &alice, &[reinit(&again)]);
    ds.reject(
        &alice.signed(re_initialize(update.clone()), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    ds.reject(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    // And so are messages and proposals.
    ds.reject(
        &alice.message_request(b"anyone?", ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    ds.reject(
        &alice.propose_remove_request(bob.leaf(), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    let proposal = forge::proposal(&mut ds, &bob, &reinit(&again));
    ds.reject(
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
        ds.reject(
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
    ds.reject(
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
    ds.reject(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::ReInitTargetNotReserved),
    );
    let successor = ds.request_group_id();
    let update = forged_reinit(&mut ds, &alice, &successor);
    let _ = ds.accept(&alice.signed(commit_body(update), ds.now_ms));
    ds.reject(
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
    ds.reject(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::ReInitNotAlone),
    );
    // ... nor in another operation ...
    let update = forge::commit(&mut ds, &alice, &[]);
    let request = alice.signed(
        DsRequestBody::DeleteGroup(DeleteGroupRequest {
            group_update: update.clone(),
        }),
        ds.now_ms,
    );
    ds.reject(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::ReInitOutsideReInitialize),
    );
    // ... but alone, in re_initialize_group.
    let _ = ds.accept(&alice.signed(re_initialize(update), ds.now_ms));
    ds.reject(
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
    let removal = || DeleteGroupRequest {
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
        ds.reject(
            &alice.signed(body, ds.now_ms),
            ErrorCode::NotAllowed,
            is(NotAllowed::ReInitOutsideReInitialize),
        );
    }

    // In a group of one, delete_group with the ReInit removes every other member (none).
    let mut dave = TestClient::new("dave", "dave-1", "d.example");
    solo(&mut ds, &mut dave);
    let update = forged_reinit(&mut ds, &dave, &successor);
    ds.reject(
        &dave.signed(
            DsRequestBody::DeleteGroup(DeleteGroupRequest {
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
        ds.reject(
            &alice.signed(re_initialize(update.clone()), ds.now_ms),
            ErrorCode::NotAllowed,
            is(NotAllowed::ReInitNotAlone),
        );
        ds.reject(
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

    ds.reject(
        &alice.update_request(ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    alice.discard_commit();
    ds.reject(
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
    ds.reject(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
    );
    alice.discard_commit();
    ds.reject(
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
    ds.reject(
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
    ds.reject(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::GroupReInitialized),
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
    ds.reject(
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
        DsRequestBody::DeleteGroup(DeleteGroupRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    ds.reject(
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
