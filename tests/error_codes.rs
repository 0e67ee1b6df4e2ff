//! Every `DSErrorCode` is produced by at least one request, built with real openmls clients
//! wherever MLS is involved. Each rejection is checked end to end: the exact status, the error
//! response as it decodes on the wire (code and code-specific details), no fanout, and storage
//! byte-identical to what it was before the request. `every_error_code_is_covered` fails if a
//! code is added to `ErrorCode::ALL` without a test here.

use mimi_ds::testing::{
    assert_rejected, assert_unchanged, commit_body, decode_response, mls_bytes, Fault, Received,
    RecordingStorage, TestClient, TestDs, CIPHERSUITE,
};
use mimi_ds::wire::{
    decode_exact, encode, ConnectionKeyPackagesRequest, DsAuthData, DsError, DsErrorDetails,
    DsRequest, DsRequestBody, DsResponseBody, DsSenderId, ErrorCode, GroupInfoOption,
    GroupInfoRequest, GroupUpdate, GroupUpdateRequest, KeyPackagesRequest, MembershipCommitRequest,
    MlsMessageBytes, ProposalsRequest, SendMessageRequest, UserAuthKeyExtension,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{
    AuthenticationFailed, DsConfig, InvalidGroupId, InvalidGroupInfo, InvalidLeafNode,
    InvalidMessageType, InvalidMlsMessage, InvalidProposal, NotAllowed, ProposalConflict,
    RejectReason, Status, UnixTimeMs,
};
use openmls::prelude::{
    Extension, Extensions, GroupId, KeyPackage, LeafNodeIndex, MlsGroup, MlsMessageBodyIn,
    ProcessedMessageContent, ProtocolMessage, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::OpenMlsProvider as _;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Alice alone in a group registered with the DS (epoch 0, leaf 0).
fn solo() -> (TestDs, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let out = ds.process(&alice.create_group_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    (ds, alice)
}

/// Alice (leaf 0) and Bob (leaf 1) in one group at epoch 1, all messages delivered.
fn pair() -> (TestDs, TestClient, TestClient) {
    let (mut ds, mut alice) = solo();
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let out = ds.process(&alice.add_request(vec![bob.key_package()], ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    let tree = match decode_response(
        // A millisecond early: tests sign their own reads at `now`, which would be replays.
        &ds.process(&alice.signed_group_info_request(&alice.group_id(), None, ds.now_ms - 1))
            .response,
    )
    .body
    {
        DsResponseBody::ExternalCommitInfo(info) => info.ratchet_tree().expect("full tree").clone(),
        other => panic!("{other:?}"),
    };
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("no Welcome")
    };
    bob.join_from_welcome(&welcome, &tree);
    assert_eq!(
        (alice.epoch(), bob.epoch(), alice.leaf(), bob.leaf()),
        (1, 1, 0, 1)
    );
    (ds, alice, bob)
}

/// [`TestDs::reject`], for tests that read the error's details too: checked by the shared
/// checks (status, error body and details, no fanout, storage byte-identical), and the named
/// reason must be one `because` accepts. Returns the `DSError` the requester got.
trait CheckReason {
    fn reject_as(
        &mut self,
        request: &[u8],
        code: ErrorCode,
        because: impl Fn(&RejectReason) -> bool,
    ) -> DsError;
}

impl CheckReason for TestDs {
    fn reject_as(
        &mut self,
        request: &[u8],
        code: ErrorCode,
        because: impl Fn(&RejectReason) -> bool,
    ) -> DsError {
        let out = self.assert_unchanged(|ds| ds.process(request));
        let error = assert_rejected(&out, code);
        let reason = out.refusal.expect("a refusal names its reason");
        assert!(because(&reason), "refused for another reason: {reason:?}");
        error
    }
}

/// A check of [`CheckReason::reject_as`] that the refusal is exactly `expected`.
fn is(expected: impl Into<RejectReason>) -> impl Fn(&RejectReason) -> bool {
    let expected = expected.into();
    move |reason| *reason == expected
}

fn unauthenticated(body: DsRequestBody) -> Vec<u8> {
    encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap()
}

/// A signed `group_info` request by a member.
fn signed_group_info(client: &TestClient, now_ms: u64) -> Vec<u8> {
    client.signed(
        DsRequestBody::GroupInfo(GroupInfoRequest {
            group_id: client.group_id().into(),
            encryption_key: None,
        }),
        now_ms,
    )
}

/// The body of a request, as decoded.
fn body_of(request: &[u8]) -> DsRequestBody {
    decode_exact::<DsRequest>(request).unwrap().body
}

/// A request with one bit of its `ClientSignature.signature` flipped (the signature is the last
/// field of the request).
fn with_flipped_signature(request: &[u8]) -> Vec<u8> {
    let mut bytes = request.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    bytes
}

/// An MLS group for `client` built like `TestClient::create_group`, but with the given
/// group-context extensions and optionally without the queue-configuration leaf extension.
fn custom_group(
    client: &mut TestClient,
    group_id: &[u8],
    context: Option<Extensions<openmls::prelude::GroupContext>>,
    queue_ext: bool,
) {
    let mut builder = MlsGroup::builder()
        .with_group_id(GroupId::from_slice(group_id))
        .ciphersuite(CIPHERSUITE)
        .with_wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .lifetime(TestClient::lifetime())
        .with_capabilities(TestClient::capabilities());
    if queue_ext {
        builder = builder
            .with_leaf_node_extensions(TestClient::queue_extension(&client.queue))
            .unwrap();
    }
    if let Some(extensions) = context {
        builder = builder.with_group_context_extensions(extensions);
    }
    client.group = Some(
        builder
            .build(&client.provider, &client.signer, client.credential.clone())
            .unwrap(),
    );
}

// ---------------------------------------------------------------------------------------------
// invalid_group_id
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_group_id_not_issued_by_the_ds() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    alice.create_group(b"self-chosen@hub.example", &ds.external_sender);
    ds.reject_as(
        &alice.create_group_request(ds.now_ms),
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::NotIssued),
    );
}

#[test]
fn invalid_group_id_reservation_expired() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let reservation = ds.ds.config().group_id_reservation_ms;
    // Still valid at the last millisecond of the reservation...
    let mut at_expiry = ds.storage.clone();
    let out = ds
        .ds
        .process(
            UnixTimeMs(ds.now_ms + reservation),
            &alice.create_group_request(ds.now_ms + reservation),
            &mut at_expiry,
        )
        .unwrap();
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    // ...and refused one millisecond later.
    ds.advance(reservation + 1);
    ds.reject_as(
        &alice.create_group_request(ds.now_ms),
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::ReservationExpired),
    );
}

#[test]
fn invalid_group_id_already_created() {
    let (mut ds, alice) = solo();
    // A fresh request (new timestamp, so not a byte-identical retry) for the same group.
    ds.advance(1);
    ds.reject_as(
        &alice.create_group_request(ds.now_ms),
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::AlreadyInUse),
    );
}

#[test]
fn invalid_group_id_after_deletion() {
    let (mut ds, mut alice, _bob) = pair();
    let _ = ds.accept(&alice.delete_group_request(ds.now_ms));
    // The tombstone keeps the ID from being re-created.
    let mut again = TestClient::new("alice", "alice-2", "a.example");
    again.create_group(&alice.group_id(), &ds.external_sender);
    ds.reject_as(
        &again.create_group_request(ds.now_ms),
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::AlreadyInUse),
    );
}

#[test]
fn invalid_group_id_signature_for_another_group() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    let other_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let body = body_of(&alice.create_group_request(ds.now_ms));
    let request = alice.signed_as(body, &other_id, ds.now_ms, DsSenderId::LeafIndex(0));
    ds.reject_as(
        &request,
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::SignedForAnotherGroup),
    );
}

/// Rule R-GID-5: Alice, alone in two groups with the same key, sends a proposal of her second
/// group in a request signed for her first.
#[test]
fn invalid_group_id_mls_message_for_another_group() {
    let (mut ds, mut alice) = solo();
    let first = alice.group_id();
    let second = ds.request_group_id();
    alice.create_group(&second, &ds.external_sender);
    let _ = ds.accept(&alice.create_group_request(ds.now_ms));
    let (proposal, _) = alice
        .group
        .as_mut()
        .unwrap()
        .propose_self_update(
            &alice.provider,
            &alice.signer,
            openmls::prelude::LeafNodeParameters::default(),
        )
        .unwrap();
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![mls_bytes(&proposal)],
    });
    let request = alice.signed_as(body, &first, ds.now_ms, DsSenderId::LeafIndex(0));
    ds.reject_as(
        &request,
        ErrorCode::InvalidGroupId,
        is(InvalidGroupId::MessageForAnotherGroup),
    );
}

// ---------------------------------------------------------------------------------------------
// invalid_leaf_node_or_key_package
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_leaf_node_key_package_without_queue_config() {
    let (mut ds, mut alice) = solo();
    let bob = TestClient::new("bob", "bob-1", "b.example");
    let key_package: KeyPackage = KeyPackage::builder()
        .key_package_lifetime(TestClient::lifetime())
        .leaf_node_capabilities(TestClient::capabilities())
        .build(
            CIPHERSUITE,
            &bob.provider,
            &bob.signer,
            bob.credential.clone(),
        )
        .unwrap()
        .key_package()
        .clone();
    ds.reject_as(
        &alice.add_request(vec![key_package], ds.now_ms),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
        is(InvalidLeafNode::MissingQueueConfig),
    );
}

#[test]
fn invalid_leaf_node_creator_without_queue_config() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    let senders =
        Extensions::single(Extension::ExternalSenders(vec![ds.external_sender.clone()])).unwrap();
    custom_group(&mut alice, &group_id, Some(senders), false);
    let request = alice.create_group_request(ds.now_ms);
    assert_eq!(
        ds.reject_consuming_reservation(&request, ErrorCode::InvalidLeafNodeOrKeyPackage)
            .reason,
        InvalidLeafNode::MissingQueueConfig.into()
    );
}

/// wire-format.md §3.5: a user key registered without a proof by that key over the leaf's
/// signature key (here: Bob's user key with a proof made for another leaf).
#[test]
fn invalid_leaf_node_user_key_without_proof_of_possession() {
    let (mut ds, mut alice) = solo();
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let user_key = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
    let another_leaf = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
    let registration = UserAuthKeyExtension::sign(
        &user_key,
        &user_key.to_public_vec(),
        &another_leaf.to_public_vec(),
    )
    .unwrap();
    bob.user_key_extension_data = Some(encode(&registration).unwrap());
    ds.reject_as(
        &alice.add_request(vec![bob.key_package()], ds.now_ms),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
        is(RejectReason::InvalidUserKeyProof),
    );
}

// ---------------------------------------------------------------------------------------------
// invalid_group_info
// ---------------------------------------------------------------------------------------------

/// Rule R-GI-1: a `create_group` whose GroupInfo is for another group than the request.
#[test]
fn invalid_group_info_for_another_group_than_the_request() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    let other_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let DsRequestBody::CreateGroup(mut body) = body_of(&alice.create_group_request(ds.now_ms))
    else {
        panic!("a create_group request")
    };
    body.group_id = other_id.clone().into();
    let request = alice.signed_as(
        DsRequestBody::CreateGroup(body),
        &other_id,
        ds.now_ms,
        DsSenderId::LeafIndex(0),
    );
    ds.reject_as(
        &request,
        ErrorCode::InvalidGroupInfo,
        is(InvalidGroupInfo::ForAnotherGroup),
    );
}

/// Rule R-GI-2: a `create_group` signed as another leaf than the GroupInfo's signer.
#[test]
fn invalid_group_info_not_signed_by_the_requester() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let body = body_of(&alice.create_group_request(ds.now_ms));
    let request = alice.signed_as(body, &group_id, ds.now_ms, DsSenderId::LeafIndex(1));
    ds.reject_as(
        &request,
        ErrorCode::InvalidGroupInfo,
        is(InvalidGroupInfo::NotSignedByRequester),
    );
}

#[test]
fn invalid_group_info_group_without_external_senders() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    custom_group(&mut alice, &group_id, None, true);
    let request = alice.create_group_request(ds.now_ms);
    assert_eq!(
        ds.reject_consuming_reservation(&request, ErrorCode::InvalidGroupInfo)
            .reason,
        InvalidGroupInfo::DsNotExternalSender.into()
    );
}

#[test]
fn invalid_group_info_group_names_another_ds() {
    let mut ds = TestDs::new("hub.example");
    let (_, other_ds) = mimi_ds::testing::ds_identity("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &other_ds);
    let request = alice.create_group_request(ds.now_ms);
    assert_eq!(
        ds.reject_consuming_reservation(&request, ErrorCode::InvalidGroupInfo)
            .reason,
        InvalidGroupInfo::DsNotExternalSender.into()
    );
}

#[test]
fn invalid_group_info_commit_with_previous_epochs_group_info() {
    let (mut ds, mut alice, _bob) = pair();
    let stale = alice
        .group()
        .export_group_info(alice.provider.crypto(), &alice.signer, false)
        .unwrap();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    update.group_info = GroupInfoOption::Full(mls_bytes(&stale));
    ds.reject_as(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidGroupInfo,
        is(InvalidGroupInfo::DoesNotMatchState),
    );
}

// ---------------------------------------------------------------------------------------------
// wrong_epoch / future_epoch
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_epoch_losing_commit() {
    let (mut ds, mut alice, mut bob) = pair();
    let from_alice = alice.update_request(ds.now_ms);
    let from_bob = bob.update_request(ds.now_ms);
    let _ = ds.accept(&from_bob);
    let error = ds.reject_error(&from_alice, ErrorCode::WrongEpoch);
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(2));
}

#[test]
fn wrong_epoch_message_and_proposal_of_an_old_epoch() {
    let (mut ds, mut alice, mut bob) = pair();
    let message = alice.message_request(b"old", ds.now_ms);
    let proposal = alice.propose_remove_request(bob.leaf(), ds.now_ms);
    let out = ds.accept(&bob.update_request(ds.now_ms));
    bob.confirm_commit();
    let error = ds.reject_error(&message, ErrorCode::WrongEpoch);
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(2));
    let error = ds.reject_error(&proposal, ErrorCode::WrongEpoch);
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(2));
    // After catching up, Alice's next message is accepted.
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
    let _ = ds.accept(&alice.message_request(b"new", ds.now_ms));
}

#[test]
fn future_epoch_commit_after_an_unsent_commit() {
    let (mut ds, mut alice) = solo();
    // Alice merges a commit the DS never saw: she is at epoch 1, the DS at 0.
    let _never_sent = alice.update_request(ds.now_ms);
    alice.confirm_commit();
    assert_eq!(alice.epoch(), 1);
    let error = ds.reject_error(&alice.update_request(ds.now_ms), ErrorCode::FutureEpoch);
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(0));
    let error = ds.reject_error(
        &alice.message_request(b"ahead", ds.now_ms),
        ErrorCode::FutureEpoch,
    );
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(0));
}

// ---------------------------------------------------------------------------------------------
// not_allowed
// ---------------------------------------------------------------------------------------------

#[test]
fn not_allowed_commit_by_another_member() {
    let (mut ds, alice, mut bob) = pair();
    // Bob's commit, wrapped in a request Alice validly signs as herself.
    let (update, _) = bob.stage_commit(|b| b.force_self_update(true));
    ds.reject_as(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::MlsSenderNotRequester),
    );
}

/// wire-format.md §3.5: a user key already registered to another user of the group, even with
/// a valid proof (the key is shared between the two users).
#[test]
fn not_allowed_user_key_registered_to_another_user() {
    let (mut ds, mut alice) = solo();
    let shared =
        std::rc::Rc::new(SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap());
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut mallory = TestClient::new("mallory", "mallory-1", "m.example");
    bob.user_key = Some(shared.clone());
    mallory.user_key = Some(shared);
    let _ = ds.accept(&alice.add_request(vec![bob.key_package()], ds.now_ms));
    alice.confirm_commit();
    ds.reject_as(
        &alice.add_request(vec![mallory.key_package()], ds.now_ms),
        ErrorCode::NotAllowed,
        is(RejectReason::UserKeyOfAnotherUser),
    );
}

#[test]
fn not_allowed_proposal_by_another_member() {
    let (mut ds, alice, mut bob) = pair();
    let (proposal, _) = bob
        .group
        .as_mut()
        .unwrap()
        .propose_remove_member(&bob.provider, &bob.signer, LeafNodeIndex::new(0))
        .unwrap();
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![mls_bytes(&proposal)],
    });
    ds.reject_as(
        &alice.signed(body, ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::MlsSenderNotRequester),
    );
}

/// Rule R-COMMIT-1: a member submits the hub's own (external) proposal as one of its own.
#[test]
fn not_allowed_proposal_by_a_non_member_sender() {
    let (mut ds, alice, bob) = pair();
    let group_id = alice.group_id();
    let event = mimi_ds::HubEvent::ClientDeleted {
        signature_key: bob.signer.to_public_vec(),
    };
    let out = ds.handle_event(&group_id, &event);
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!("not accepted")
    };
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![receipt.external_proposals[0].clone()],
    });
    ds.reject_as(
        &alice.signed(body, ds.now_ms),
        ErrorCode::NotAllowed,
        is(NotAllowed::MlsSenderNotMember),
    );
}

#[test]
fn not_allowed_delete_group_that_keeps_members() {
    let (mut ds, mut alice, _bob) = pair();
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let request = alice.signed(
        DsRequestBody::DeleteGroup(GroupUpdateRequest {
            group_update: update,
        }),
        ds.now_ms,
    );
    ds.reject_as(
        &request,
        ErrorCode::NotAllowed,
        is(NotAllowed::DeleteGroupKeepsMembers),
    );
}

#[test]
fn not_allowed_welcomes_do_not_match_adds() {
    let (mut ds, mut alice) = solo();
    let bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example");
    // Without the Welcome.
    let (update, welcome) = alice.stage_commit(|b| b.propose_adds(vec![bob.key_package()]));
    let no_welcome = alice.signed(commit_body(update.clone()), ds.now_ms);
    ds.reject_as(
        &no_welcome,
        ErrorCode::NotAllowed,
        is(NotAllowed::WelcomesDoNotMatchAdds),
    );
    // With the Welcome twice.
    let welcome = welcome.unwrap();
    let twice = alice.signed(
        DsRequestBody::Commits(MembershipCommitRequest {
            group_update: update,
            welcome_messages: vec![welcome.clone(), welcome.clone()],
        }),
        ds.now_ms,
    );
    ds.reject_as(
        &twice,
        ErrorCode::NotAllowed,
        is(NotAllowed::WelcomesDoNotMatchAdds),
    );
    // With a Welcome for someone the commit does not add.
    alice.discard_commit();
    let (update, _) = alice.stage_commit(|b| b.propose_adds(vec![carol.key_package()]));
    let foreign = alice.signed(
        DsRequestBody::Commits(MembershipCommitRequest {
            group_update: update,
            welcome_messages: vec![welcome],
        }),
        ds.now_ms,
    );
    ds.reject_as(
        &foreign,
        ErrorCode::NotAllowed,
        is(NotAllowed::WelcomesDoNotMatchAdds),
    );
}

// ---------------------------------------------------------------------------------------------
// invalid_proposal
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_proposal_empty_list() {
    let (mut ds, alice, _bob) = pair();
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: Vec::new(),
    });
    let error = ds.reject_as(
        &alice.signed(body, ds.now_ms),
        ErrorCode::InvalidProposal,
        |r| {
            matches!(
                r,
                RejectReason::InvalidProposal {
                    reason: InvalidProposal::Empty,
                    ..
                }
            )
        },
    );
    assert_eq!(error.details, DsErrorDetails::ProposalRefs(Vec::new()));
}

#[test]
fn invalid_proposal_same_proposal_twice() {
    let (mut ds, mut alice, bob) = pair();
    let (proposal, proposal_ref) = alice
        .group
        .as_mut()
        .unwrap()
        .propose_remove_member(
            &alice.provider,
            &alice.signer,
            LeafNodeIndex::new(bob.leaf()),
        )
        .unwrap();
    let proposal = mls_bytes(&proposal);
    let expected = DsErrorDetails::ProposalRefs(vec![proposal_ref.as_slice().to_vec().into()]);

    // Twice in one request.
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![proposal.clone(), proposal.clone()],
    });
    let error = ds.reject_as(
        &alice.signed(body, ds.now_ms),
        ErrorCode::InvalidProposal,
        |r| {
            matches!(
                r,
                RejectReason::InvalidProposal {
                    reason: InvalidProposal::AlreadyPending,
                    ..
                }
            )
        },
    );
    assert_eq!(error.details, expected);

    // Once accepted, then again in a new request (new timestamp, so not a retry).
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![proposal],
    });
    let _ = ds.accept(&alice.signed(body.clone(), ds.now_ms));
    ds.advance(1);
    let error = ds.reject_as(
        &alice.signed(body, ds.now_ms),
        ErrorCode::InvalidProposal,
        |r| {
            matches!(
                r,
                RejectReason::InvalidProposal {
                    reason: InvalidProposal::AlreadyPending,
                    ..
                }
            )
        },
    );
    assert_eq!(error.details, expected);
}

/// RFC 9420 §12.2 (wire-format.md §4.10): Bob's Remove of the leaf Alice's pending Remove
/// already removes could never be committed next to it.
#[test]
fn invalid_proposal_conflicting_with_a_pending_remove() {
    let (mut ds, mut alice, mut bob) = pair();
    let (first, _) = alice
        .group
        .as_mut()
        .unwrap()
        .propose_self_update(
            &alice.provider,
            &alice.signer,
            openmls::prelude::LeafNodeParameters::default(),
        )
        .unwrap();
    let _ = ds.accept(&alice.signed(
        DsRequestBody::Proposals(ProposalsRequest {
            proposals: vec![mls_bytes(&first)],
        }),
        ds.now_ms,
    ));
    let leave = bob
        .group
        .as_mut()
        .unwrap()
        .leave_group(&bob.provider, &bob.signer)
        .unwrap();
    let _ = ds.accept(&bob.signed(
        DsRequestBody::Proposals(ProposalsRequest {
            proposals: vec![mls_bytes(&leave)],
        }),
        ds.now_ms,
    ));
    // Alice proposes removing Bob, whose own Remove is pending.
    let (second, second_ref) = alice
        .group
        .as_mut()
        .unwrap()
        .propose_remove_member(
            &alice.provider,
            &alice.signer,
            LeafNodeIndex::new(bob.leaf()),
        )
        .unwrap();
    let error = ds.reject_as(
        &alice.signed(
            DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![mls_bytes(&second)],
            }),
            ds.now_ms,
        ),
        ErrorCode::InvalidProposal,
        |r| {
            matches!(
                r,
                RejectReason::ProposalConflict {
                    conflict: ProposalConflict::DuplicateRemove,
                    ..
                }
            )
        },
    );
    assert_eq!(
        error.details,
        DsErrorDetails::ProposalRefs(vec![second_ref.as_slice().to_vec().into()])
    );
}

// ---------------------------------------------------------------------------------------------
// too_many_pending_proposals
// ---------------------------------------------------------------------------------------------

/// `DsConfig::max_pending_proposals` (wire-format.md §4.10): with a cap of one, a second
/// proposal in the epoch is refused; the first stays pending.
#[test]
fn too_many_pending_proposals_beyond_the_configured_cap() {
    let mut config = DsConfig::new("hub.example");
    config.max_pending_proposals = 1;
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let update = |client: &mut TestClient| {
        let (message, _) = client
            .group
            .as_mut()
            .unwrap()
            .propose_self_update(
                &client.provider,
                &client.signer,
                openmls::prelude::LeafNodeParameters::default(),
            )
            .unwrap();
        DsRequestBody::Proposals(ProposalsRequest {
            proposals: vec![mls_bytes(&message)],
        })
    };
    let first = update(&mut alice);
    let _ = ds.accept(&alice.signed(first, ds.now_ms));
    let second = update(&mut bob);
    let error = ds.reject_as(
        &bob.signed(second, ds.now_ms),
        ErrorCode::TooManyPendingProposals,
        |r| matches!(r, RejectReason::TooManyPendingProposals { .. }),
    );
    assert_eq!(error.details, DsErrorDetails::None);
}

// ---------------------------------------------------------------------------------------------
// unknown_group
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_group_never_created() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    alice.create_group(b"nowhere@hub.example", &ds.external_sender);
    ds.reject_as(
        &alice.message_request(b"hi", ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
    ds.reject_as(
        &alice.update_request(ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
    ds.reject_as(
        &alice.signed_group_info_request(b"nowhere@hub.example", None, ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
}

#[test]
fn unknown_group_only_reserved() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    ds.reject_as(
        &alice.message_request(b"hi", ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
    ds.reject_as(
        &alice.signed_group_info_request(&group_id, None, ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
}

#[test]
fn unknown_group_after_deletion() {
    let (mut ds, mut alice, mut bob) = pair();
    let _ = ds.accept(&alice.delete_group_request(ds.now_ms));
    alice.confirm_commit();
    ds.reject_as(
        &alice.message_request(b"anyone?", ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
    ds.reject_as(
        &bob.message_request(b"still here?", ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
    ds.reject_as(
        &alice.signed_group_info_request(&alice.group_id(), None, ds.now_ms),
        ErrorCode::UnknownGroup,
        is(RejectReason::UnknownGroup),
    );
}

// ---------------------------------------------------------------------------------------------
// authentication_failed
// ---------------------------------------------------------------------------------------------

#[test]
fn authentication_failed_wrong_key_for_the_claimed_leaf() {
    let (mut ds, mut alice, bob) = pair();
    let group_id = alice.group_id();
    let now = ds.now_ms;
    let message = body_of(&alice.message_request(b"hi", now));
    let commit = body_of(&alice.update_request(now));
    let info = DsRequestBody::GroupInfo(GroupInfoRequest {
        group_id: group_id.clone().into(),
        encryption_key: None,
    });
    for body in [message, commit, info] {
        let request = bob.signed_as(body, &group_id, now, DsSenderId::LeafIndex(alice.leaf()));
        ds.reject_as(
            &request,
            ErrorCode::AuthenticationFailed,
            is(AuthenticationFailed::SignatureDoesNotVerify),
        );
    }
}

#[test]
fn authentication_failed_unauthenticated_send_message() {
    let (mut ds, mut alice, _bob) = pair();
    let body = body_of(&alice.message_request(b"hi", ds.now_ms));
    ds.reject_as(
        &unauthenticated(body),
        ErrorCode::AuthenticationFailed,
        is(AuthenticationFailed::ClientSignatureRequired),
    );
}

#[test]
fn authentication_failed_leaf_without_member_or_not_a_leaf_sender() {
    let (mut ds, mut alice, _bob) = pair();
    let group_id = alice.group_id();
    let now = ds.now_ms;
    let body = body_of(&alice.message_request(b"hi", now));
    ds.reject_as(
        &alice.signed_as(body.clone(), &group_id, now, DsSenderId::LeafIndex(7)),
        ErrorCode::AuthenticationFailed,
        is(AuthenticationFailed::NoMemberAtLeaf),
    );
    ds.reject_as(
        &alice.signed_as(
            body.clone(),
            &group_id,
            now,
            DsSenderId::LeafIndex(u32::MAX),
        ),
        ErrorCode::AuthenticationFailed,
        is(AuthenticationFailed::NoMemberAtLeaf),
    );
    let kp_ref = DsSenderId::KeyPackageRef(vec![0u8; 32].into());
    ds.reject_as(
        &alice.signed_as(body, &group_id, now, kp_ref),
        ErrorCode::AuthenticationFailed,
        is(AuthenticationFailed::LeafIndexSenderRequired),
    );
}

// ---------------------------------------------------------------------------------------------
// invalid_message_type
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_message_type_private_message_as_commit() {
    let (mut ds, mut alice, _bob) = pair();
    let private = alice
        .group
        .as_mut()
        .unwrap()
        .create_message(&alice.provider, &alice.signer, b"x")
        .unwrap();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    update.commit = mls_bytes(&private);
    ds.reject_as(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::HandshakeNotPublic),
    );
}

/// Rule R-MSG-6: an encrypted handshake message (a proposal in a PrivateMessage) sent as an
/// application message.
#[test]
fn invalid_message_type_encrypted_proposal_as_application_message() {
    let (mut ds, mut alice, _bob) = pair();
    let group = alice.group.as_mut().unwrap();
    let encrypt_all = openmls::prelude::MlsGroupJoinConfig::builder()
        .wire_format_policy(openmls::prelude::PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build();
    group
        .set_configuration(alice.provider.storage(), &encrypt_all)
        .unwrap();
    let (proposal, _) = group
        .propose_self_update(
            &alice.provider,
            &alice.signer,
            openmls::prelude::LeafNodeParameters::default(),
        )
        .unwrap();
    let body = DsRequestBody::SendMessage(SendMessageRequest {
        application_message: mls_bytes(&proposal),
    });
    ds.reject_as(
        &alice.signed(body, ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ExpectedApplication),
    );
}

#[test]
fn invalid_message_type_commit_as_application_message_or_proposal_or_welcome() {
    let (mut ds, mut alice, _bob) = pair();
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let commit: MlsMessageBytes = update.commit.clone();
    let as_message = DsRequestBody::SendMessage(SendMessageRequest {
        application_message: commit.clone(),
    });
    ds.reject_as(
        &alice.signed(as_message, ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ApplicationNotPrivate),
    );
    let as_proposal = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![commit.clone()],
    });
    ds.reject_as(
        &alice.signed(as_proposal, ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ExpectedProposal),
    );
    let as_welcome = DsRequestBody::Commits(MembershipCommitRequest {
        group_update: update,
        welcome_messages: vec![commit],
    });
    ds.reject_as(
        &alice.signed(as_welcome, ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ExpectedWelcome),
    );
}

#[test]
fn invalid_message_type_group_info_as_commit() {
    let (mut ds, mut alice, _bob) = pair();
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let GroupInfoOption::Full(group_info) = &update.group_info else {
        panic!()
    };
    let swapped = GroupUpdate {
        commit: group_info.clone(),
        group_info: update.group_info.clone(),
    };
    ds.reject_as(
        &alice.signed(commit_body(swapped), ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ExpectedPublicMessage),
    );
}

/// Rule R-MSG-3: a proposal where the commit belongs.
#[test]
fn invalid_message_type_proposal_as_commit() {
    let (mut ds, mut alice, bob) = pair();
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    alice.discard_commit();
    let DsRequestBody::Proposals(ProposalsRequest { proposals }) =
        body_of(&alice.propose_remove_request(bob.leaf(), ds.now_ms))
    else {
        panic!("a proposals request")
    };
    let swapped = GroupUpdate {
        commit: proposals[0].clone(),
        group_info: update.group_info,
    };
    ds.reject_as(
        &alice.signed(commit_body(swapped), ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ExpectedCommit),
    );
}

/// Rule R-MSG-7: a member's commit sent as an external join.
#[test]
fn invalid_message_type_member_commit_as_external_join() {
    let (mut ds, mut alice, _bob) = pair();
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let request = unauthenticated(DsRequestBody::ExternalJoin(GroupUpdateRequest {
        group_update: update,
    }));
    ds.reject_as(
        &request,
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ExpectedNewMemberCommit),
    );
}

/// Rule R-MSG-9: a commit where the GroupInfo belongs.
#[test]
fn invalid_message_type_commit_as_group_info() {
    let (mut ds, mut alice, _bob) = pair();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    update.group_info = GroupInfoOption::Full(update.commit.clone());
    ds.reject_as(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidMessageType,
        is(InvalidMessageType::ExpectedGroupInfo),
    );
}

// ---------------------------------------------------------------------------------------------
// missing_pending_proposals
// ---------------------------------------------------------------------------------------------

/// Only the hub's own proposals are mandatory (wire-format.md §4.3.3, §7.4): Alice's commit
/// leaves out the hub's Remove of Bob (she has not received it yet).
#[test]
fn missing_pending_proposals_commit_leaving_out_the_hubs_removal() {
    let (mut ds, mut alice, mut bob) = pair();
    let group_id = alice.group_id();
    let event = mimi_ds::HubEvent::ClientDeleted {
        signature_key: bob.signer.to_public_vec(),
    };
    let out = ds.handle_event(&group_id, &event);
    assert_eq!(out.status, Status::Accepted);
    // The hub's proposal's ref, as a member computes it (Bob only reads it here).
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!("not accepted")
    };
    let MlsMessageBodyIn::PublicMessage(public) =
        receipt.external_proposals[0].parse().unwrap().extract()
    else {
        panic!("a PublicMessage")
    };
    let bob_group = bob.group.as_mut().unwrap();
    let ProcessedMessageContent::ProposalMessage(queued) = bob_group
        .process_message(&bob.provider, ProtocolMessage::from(public))
        .unwrap()
        .into_content()
    else {
        panic!("a proposal")
    };
    let error = ds.reject_as(
        &alice.update_request(ds.now_ms),
        ErrorCode::MissingPendingProposals,
        |r| matches!(r, RejectReason::MissingPendingProposals { .. }),
    );
    assert_eq!(
        error.details,
        DsErrorDetails::ProposalRefs(vec![queued
            .proposal_reference_ref()
            .as_slice()
            .to_vec()
            .into()])
    );
}

// ---------------------------------------------------------------------------------------------
// replayed_request, and byte-identical retries (Duplicate)
// ---------------------------------------------------------------------------------------------

#[test]
fn replayed_request_same_signed_content_with_another_signature_encoding() {
    let (mut ds, mut alice, _bob) = pair();
    // An accepted state-changing request...
    let message = alice.message_request(b"once", ds.now_ms);
    let _ = ds.accept(&message);
    // ...whose signed content arrives again with different signature bytes.
    ds.reject(
        &with_flipped_signature(&message),
        ErrorCode::ReplayedRequest,
    );
    // An accepted commit, likewise.
    let commit = alice.update_request(ds.now_ms);
    let _ = ds.accept(&commit);
    alice.confirm_commit();
    ds.reject(&with_flipped_signature(&commit), ErrorCode::ReplayedRequest);
}

#[test]
fn replayed_request_signed_read_only_group_info() {
    let (mut ds, alice, _bob) = pair();
    let request = signed_group_info(&alice, ds.now_ms);
    let out = ds.accept(&request);
    assert!(matches!(
        decode_response(&out.response).body,
        DsResponseBody::ExternalCommitInfo(_)
    ));
    assert!(out.fanout.is_empty());
    ds.reject(
        &with_flipped_signature(&request),
        ErrorCode::ReplayedRequest,
    );
    // The byte-identical request again: a read keeps no answer to repeat, so it is a replay;
    // nothing changes and nothing is fanned out.
    ds.reject(&request, ErrorCode::ReplayedRequest);
}

#[test]
fn signed_group_info_sent_twice_is_replayed_request() {
    let (mut ds, alice, _bob) = pair();
    let request = signed_group_info(&alice, ds.now_ms);
    let _ = ds.accept(&request);
    ds.reject(&request, ErrorCode::ReplayedRequest);
}

#[test]
fn replay_window_ends_with_the_auth_window() {
    let (mut ds, mut alice, _bob) = pair();
    let message = alice.message_request(b"once", ds.now_ms);
    let _ = ds.accept(&message);
    // Past the window, the same request is stale rather than a retry.
    ds.advance(ds.ds.config().auth_window_ms + 1);
    ds.reject(&message, ErrorCode::StaleTimestamp);
    ds.reject(&with_flipped_signature(&message), ErrorCode::StaleTimestamp);
}

#[test]
fn duplicate_byte_identical_retries_of_accepted_requests() {
    let (mut ds, mut alice, mut bob) = pair();
    let message = alice.message_request(b"hi", ds.now_ms);
    let commit = bob.update_request(ds.now_ms);
    let queue = alice.update_queue_request(
        mimi_ds::wire::ClientQueueConfig {
            provider_domain: b"a2.example".to_vec().into(),
            queue: b"q2".to_vec().into(),
        },
        ds.now_ms,
    );
    for request in [message, commit, queue] {
        let first = ds.accept(&request);
        let retry = ds.assert_unchanged(|ds| ds.process(&request));
        assert_eq!(retry.status, Status::Duplicate);
        assert_eq!(
            retry.response, first.response,
            "the earlier answer is repeated"
        );
        assert!(retry.fanout.is_empty(), "nothing is fanned out again");
    }
}

/// wire-format.md §4.8: an accepted application message resubmitted in a new request (another
/// member's signature, or the sender's own with a fresh timestamp) is not fanned out again.
#[test]
fn replayed_message_resubmitted_by_another_member_and_by_its_sender() {
    let (mut ds, mut alice, bob) = pair();
    let original = alice.message_request(b"once", ds.now_ms);
    let _ = ds.accept(&original);
    let body = body_of(&original);
    ds.advance(1);
    let by_bob = bob.signed(body.clone(), ds.now_ms);
    ds.reject(&by_bob, ErrorCode::ReplayedMessage);
    ds.advance(1);
    let by_alice = alice.signed(body, ds.now_ms);
    ds.reject(&by_alice, ErrorCode::ReplayedMessage);
}

// ---------------------------------------------------------------------------------------------
// stale_timestamp
// ---------------------------------------------------------------------------------------------

#[test]
fn stale_timestamp_past_and_future() {
    let (mut ds, mut alice, _bob) = pair();
    let now = ds.now_ms;
    let six_minutes = 6 * 60 * 1000;
    ds.reject(
        &alice.message_request(b"past", now - six_minutes),
        ErrorCode::StaleTimestamp,
    );
    ds.reject(
        &alice.message_request(b"future", now + six_minutes),
        ErrorCode::StaleTimestamp,
    );
    ds.reject(
        &alice.update_request(now - six_minutes),
        ErrorCode::StaleTimestamp,
    );
    alice.discard_commit();
    ds.reject(
        &signed_group_info(&alice, now + six_minutes),
        ErrorCode::StaleTimestamp,
    );
    // The window is inclusive: exactly 5 minutes either way is fresh, one ms more is stale.
    let window = ds.ds.config().auth_window_ms;
    ds.reject(
        &alice.message_request(b"edge", now - window - 1),
        ErrorCode::StaleTimestamp,
    );
    ds.reject(
        &alice.message_request(b"edge", now + window + 1),
        ErrorCode::StaleTimestamp,
    );
    let _ = ds.accept(&alice.message_request(b"edge", now - window));
    let _ = ds.accept(&alice.message_request(b"edge", now + window));
}

// ---------------------------------------------------------------------------------------------
// malformed_request / unsupported_version / request_too_large / unsupported_operation
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_request_garbage_and_trailing_bytes() {
    let (mut ds, mut alice, _bob) = pair();
    for garbage in [
        &[][..],
        &[0x00],
        &[0x00, 0x01],
        &[0x00, 0x01, 0xff],
        &[0x00, 0x01, 0x00],       // request_group_id without auth
        &[0x00, 0x01, 0x00, 0x02], // unknown DSAuthData
        &[0x00, 0x01, 0x14, 0x00], // unknown DSRequestType 20
        b"\x00\x01GET / HTTP/1.1\r\n\r\n",
    ] {
        ds.reject(garbage, ErrorCode::MalformedRequest);
    }
    let mut trailing = alice.message_request(b"hi", ds.now_ms);
    trailing.push(0);
    ds.reject(&trailing, ErrorCode::MalformedRequest);
    let mut trailing = unauthenticated(DsRequestBody::RequestGroupId);
    trailing.push(0);
    ds.reject(&trailing, ErrorCode::MalformedRequest);
}

#[test]
fn unsupported_version() {
    let (mut ds, mut alice, _bob) = pair();
    let message = alice.message_request(b"hi", ds.now_ms);
    for version in [0u16, 2, 0x0100, u16::MAX] {
        let mut request = message.clone();
        request[..2].copy_from_slice(&version.to_be_bytes());
        ds.reject(&request, ErrorCode::UnsupportedVersion);
        ds.reject(&version.to_be_bytes(), ErrorCode::UnsupportedVersion);
    }
}

#[test]
fn request_too_large() {
    let (ds, mut alice, _bob) = pair();
    let request = alice.message_request(&[0x42; 4096], ds.now_ms);
    let with_limit = |limit: usize| {
        let mut config = DsConfig::new("hub.example");
        config.max_request_bytes = limit;
        TestDs::with_config(config)
    };
    // Exactly at the limit is accepted (send_message does not involve the DS's own key, so a
    // second DS instance can serve the same storage)...
    let at_limit = with_limit(request.len());
    let mut storage = ds.storage.clone();
    let out = at_limit
        .ds
        .process(UnixTimeMs(ds.now_ms), &request, &mut storage)
        .unwrap();
    assert_eq!(out.status, Status::Accepted);
    // ...one byte under it is refused before decoding, whatever the bytes.
    let under = with_limit(request.len() - 1);
    let mut storage = ds.storage.clone();
    for request in [request.clone(), vec![0xff; request.len()]] {
        let out = assert_unchanged(&mut storage, |storage| {
            under.ds.process(UnixTimeMs(ds.now_ms), &request, storage)
        });
        assert_rejected(&out.unwrap(), ErrorCode::RequestTooLarge);
    }
}

#[test]
fn unsupported_operation() {
    let (mut ds, alice, _bob) = pair();
    let now = ds.now_ms;
    let bodies = [
        DsRequestBody::KeyPackages(KeyPackagesRequest {
            connection_token: vec![1; 32].into(),
            claim_id: vec![2; 16].into(),
        }),
        DsRequestBody::ConnectionKeyPackages(ConnectionKeyPackagesRequest {
            connection_token: vec![1; 32].into(),
            claim_id: vec![2; 16].into(),
        }),
    ];
    // KeyPackages are served by each provider's own directory (`KeyPackageDirectory`, at
    // `/group_key_packages` and `/connection_key_packages`), not by the hub.
    for body in bodies {
        ds.reject(
            &unauthenticated(body.clone()),
            ErrorCode::UnsupportedOperation,
        );
        ds.reject(&alice.signed(body, now), ErrorCode::UnsupportedOperation);
    }
}

// ---------------------------------------------------------------------------------------------
// invalid_mls_message
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_mls_message_commit_with_a_broken_signature() {
    let (mut ds, mut alice, _bob) = pair();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    // A member's commit PublicMessage ends with signature<V> (64 bytes of Ed25519),
    // confirmation_tag<V> and membership_tag<V> (32 bytes each, SHA-256 HMAC).
    let mut commit = update.commit.as_bytes().to_vec();
    let len = commit.len();
    assert_eq!(
        (commit[len - 33], commit[len - 66], commit[len - 131]),
        (0x20, 0x20, 0x40),
        "layout of the commit's tail"
    );
    commit[len - 100] ^= 0x01; // inside the signature
    update.commit = MlsMessageBytes::from_bytes(commit).unwrap();
    // Wrapped in a request Alice validly signs: only the MLS signature is wrong.
    ds.reject_as(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidMlsMessage,
        |r| {
            matches!(
                r,
                RejectReason::InvalidMlsMessage(InvalidMlsMessage::Validation { .. })
            )
        },
    );
}

#[test]
fn invalid_mls_message_proposal_with_a_broken_signature() {
    let (mut ds, mut alice, bob) = pair();
    let (proposal, _) = alice
        .group
        .as_mut()
        .unwrap()
        .propose_remove_member(
            &alice.provider,
            &alice.signer,
            LeafNodeIndex::new(bob.leaf()),
        )
        .unwrap();
    let mut bytes = mls_bytes(&proposal).into_bytes();
    // A member's proposal ends with signature<V> (64 bytes) and membership_tag<V> (32 bytes).
    let len = bytes.len();
    assert_eq!(
        (bytes[len - 33], bytes[len - 98]),
        (0x20, 0x40),
        "layout of the proposal's tail"
    );
    bytes[len - 60] ^= 0x80;
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![MlsMessageBytes::from_bytes(bytes).unwrap()],
    });
    ds.reject_as(
        &alice.signed(body, ds.now_ms),
        ErrorCode::InvalidMlsMessage,
        |r| {
            matches!(
                r,
                RejectReason::InvalidMlsMessage(InvalidMlsMessage::Validation { .. })
            )
        },
    );
}

// ---------------------------------------------------------------------------------------------
// conflict
// ---------------------------------------------------------------------------------------------

#[test]
fn conflict_when_every_write_conflicts() {
    let (ds, mut alice, _bob) = pair();
    let requests = [
        alice.message_request(b"hi", ds.now_ms),
        alice.update_request(ds.now_ms),
        unauthenticated(DsRequestBody::RequestGroupId),
    ];
    for request in requests {
        // Storage that reads from a copy of the DS's but reports every write as a conflict.
        let mut storage =
            RecordingStorage::new(ds.storage.clone()).with_fault(Fault::ConflictFrom(1));
        let out = ds
            .ds
            .process(UnixTimeMs(ds.now_ms), &request, &mut storage)
            .unwrap();
        assert_eq!(out.status, Status::Rejected(ErrorCode::Conflict));
        let DsResponseBody::Error(error) = decode_response(&out.response).body else {
            panic!()
        };
        assert_eq!(
            (error.code, error.details),
            (ErrorCode::Conflict, DsErrorDetails::None)
        );
        assert!(out.fanout.is_empty());
        assert_eq!(
            storage.writes().len(),
            ds.ds.config().max_conflict_retries as usize + 1
        );
        assert!(storage.inner == ds.storage, "nothing was written");
    }
}

// ---------------------------------------------------------------------------------------------
// key_package_lifetime
// ---------------------------------------------------------------------------------------------

/// An Add whose KeyPackage has expired at the DS's `now`, although the system clock openmls
/// reads still finds it valid (tests/key_package_lifetimes.rs has the other cases).
#[test]
fn key_package_lifetime_add_expired_at_now() {
    let (mut ds, mut alice, _bob) = pair();
    let carol = TestClient::new("carol", "carol-1", "c.example");
    let key_package = carol.key_package();
    ds.now_ms = TestClient::lifetime().not_after() * 1000 + 1;
    ds.reject(
        &alice.add_request(vec![key_package], ds.now_ms),
        ErrorCode::KeyPackageLifetime,
    );
}

// ---------------------------------------------------------------------------------------------
// KeyPackage directory (wire-format.md §14.4; tests/key_package_directory.rs has the rest)
// ---------------------------------------------------------------------------------------------

/// A claim under a token no KeyPackage was ever uploaded under.
#[test]
fn unknown_connection_token_claim_under_a_token_nobody_uploaded_under() {
    use mimi_ds::directory::SetPurpose;
    use mimi_ds::testing::directory::{DirectoryUser, TestDirectory};
    let mut directory = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "b.example");
    directory.reject_claim(
        &bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)"),
        ErrorCode::UnknownConnectionToken,
    );
}

/// The token's only set was claimed: the next claim finds nothing.
#[test]
fn key_packages_exhausted_after_the_only_set_was_claimed() {
    use mimi_ds::directory::SetPurpose;
    use mimi_ds::testing::directory::{DirectoryUser, TestDirectory};
    let mut directory = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "b.example");
    directory.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
    directory.accept_claim(&bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)"));
    directory.reject_claim(
        &bob.claim(SetPurpose::Group, b"claim for group 2 (16+ bytes)"),
        ErrorCode::KeyPackagesExhausted,
    );
}

/// A second KeyPackage for a slot of a set that already holds one.
#[test]
fn invalid_key_package_set_slot_already_filled() {
    use mimi_ds::directory::SetPurpose;
    use mimi_ds::testing::directory::{DirectoryUser, TestDirectory};
    let mut directory = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 2, "b.example");
    let pseudonym = bob.pseudonym(0, 'u');
    let first = bob.entry(SetPurpose::Group, 0, bob.key_package(0, &pseudonym, false));
    directory.accept_upload(&bob.upload(vec![first]));
    let again = bob.entry(SetPurpose::Group, 0, bob.key_package(0, &pseudonym, false));
    directory.reject_upload(&bob.upload(vec![again]), ErrorCode::InvalidKeyPackageSet);
}

// ---------------------------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------------------------

/// Each code with the tests above that produce it.
const COVERED: &[(ErrorCode, &[&str])] = &[
    (
        ErrorCode::InvalidGroupId,
        &[
            "invalid_group_id_not_issued_by_the_ds",
            "invalid_group_id_reservation_expired",
            "invalid_group_id_already_created",
            "invalid_group_id_after_deletion",
            "invalid_group_id_signature_for_another_group",
        ],
    ),
    (
        ErrorCode::InvalidLeafNodeOrKeyPackage,
        &[
            "invalid_leaf_node_key_package_without_queue_config",
            "invalid_leaf_node_creator_without_queue_config",
            "invalid_leaf_node_user_key_without_proof_of_possession",
        ],
    ),
    (
        ErrorCode::InvalidGroupInfo,
        &[
            "invalid_group_info_group_without_external_senders",
            "invalid_group_info_group_names_another_ds",
            "invalid_group_info_commit_with_previous_epochs_group_info",
        ],
    ),
    (
        ErrorCode::WrongEpoch,
        &[
            "wrong_epoch_losing_commit",
            "wrong_epoch_message_and_proposal_of_an_old_epoch",
        ],
    ),
    (
        ErrorCode::NotAllowed,
        &[
            "not_allowed_commit_by_another_member",
            "not_allowed_proposal_by_another_member",
            "not_allowed_delete_group_that_keeps_members",
            "not_allowed_welcomes_do_not_match_adds",
            "not_allowed_user_key_registered_to_another_user",
        ],
    ),
    (
        ErrorCode::InvalidProposal,
        &[
            "invalid_proposal_empty_list",
            "invalid_proposal_same_proposal_twice",
            "invalid_proposal_conflicting_with_a_pending_remove",
        ],
    ),
    (
        ErrorCode::UnknownGroup,
        &[
            "unknown_group_never_created",
            "unknown_group_only_reserved",
            "unknown_group_after_deletion",
        ],
    ),
    (
        ErrorCode::AuthenticationFailed,
        &[
            "authentication_failed_wrong_key_for_the_claimed_leaf",
            "authentication_failed_unauthenticated_send_message",
            "authentication_failed_leaf_without_member_or_not_a_leaf_sender",
        ],
    ),
    (
        ErrorCode::InvalidMessageType,
        &[
            "invalid_message_type_private_message_as_commit",
            "invalid_message_type_commit_as_application_message_or_proposal_or_welcome",
            "invalid_message_type_group_info_as_commit",
        ],
    ),
    (
        ErrorCode::MissingPendingProposals,
        &["missing_pending_proposals_commit_leaving_out_the_hubs_removal"],
    ),
    (
        ErrorCode::ReplayedRequest,
        &[
            "replayed_request_same_signed_content_with_another_signature_encoding",
            "replayed_request_signed_read_only_group_info",
        ],
    ),
    (
        ErrorCode::StaleTimestamp,
        &[
            "stale_timestamp_past_and_future",
            "replay_window_ends_with_the_auth_window",
        ],
    ),
    (
        ErrorCode::FutureEpoch,
        &["future_epoch_commit_after_an_unsent_commit"],
    ),
    (
        ErrorCode::MalformedRequest,
        &["malformed_request_garbage_and_trailing_bytes"],
    ),
    (ErrorCode::UnsupportedVersion, &["unsupported_version"]),
    (ErrorCode::RequestTooLarge, &["request_too_large"]),
    (ErrorCode::UnsupportedOperation, &["unsupported_operation"]),
    (
        ErrorCode::InvalidMlsMessage,
        &[
            "invalid_mls_message_commit_with_a_broken_signature",
            "invalid_mls_message_proposal_with_a_broken_signature",
        ],
    ),
    (
        ErrorCode::Conflict,
        &["conflict_when_every_write_conflicts"],
    ),
    (
        ErrorCode::UnknownQueue,
        &["unknown_queue_at_the_queueing_service"],
    ),
    (
        ErrorCode::TooManyPendingProposals,
        &["too_many_pending_proposals_beyond_the_configured_cap"],
    ),
    (
        ErrorCode::ReplayedMessage,
        &["replayed_message_resubmitted_by_another_member_and_by_its_sender"],
    ),
    (
        ErrorCode::KeyPackageLifetime,
        &["key_package_lifetime_add_expired_at_now"],
    ),
    (
        ErrorCode::QueueFull,
        &["queue_full_for_the_recipient_whose_queue_is_full"],
    ),
    (
        ErrorCode::UnknownConnectionToken,
        &["unknown_connection_token_claim_under_a_token_nobody_uploaded_under"],
    ),
    (
        ErrorCode::KeyPackagesExhausted,
        &["key_packages_exhausted_after_the_only_set_was_claimed"],
    ),
    (
        ErrorCode::InvalidKeyPackageSet,
        &["invalid_key_package_set_slot_already_filled"],
    ),
    (
        ErrorCode::StateKeyMissing,
        &["state_key_missing_unkeyed_request_or_commit_without_next_key"],
    ),
    (
        ErrorCode::StateKeyWrong,
        &["state_key_wrong_other_key_of_the_epoch_or_wrong_length"],
    ),
    (
        ErrorCode::StateKeyStale,
        &["state_key_stale_key_of_the_epoch_before_a_commit"],
    ),
    (
        ErrorCode::StateKeyUnexpected,
        &["state_key_unexpected_keys_for_a_plain_group_or_a_mode_change"],
    ),
];

/// The Queueing Service's own code (wire-format.md §10.3): a signed request for a queue that
/// was never created, or was deleted. (tests/queueing_service.rs covers the QS's other codes.)
#[test]
fn unknown_queue_at_the_queueing_service() {
    use mimi_ds::testing::TestQs;
    use mimi_ds::wire::QsClientRequestBody;

    let mut qs = TestQs::new("b.example");
    let mut bob = TestClient::new("bob", "phone", "b.example");
    qs.connect(&mut bob, "hub.example");
    let now = qs.now_ms;
    let _ = qs.accept_client(&bob.qs_request(QsClientRequestBody::DeleteQueue, now));
    for body in [
        QsClientRequestBody::Fetch {
            from_sequence: 0,
            max_messages: 1,
        },
        QsClientRequestBody::Acknowledge { up_to_sequence: 0 },
        QsClientRequestBody::DeleteQueue,
    ] {
        qs.reject_client(&bob.qs_request(body, now), ErrorCode::UnknownQueue);
    }
}

/// `queue_full` (wire-format.md §6.3, §10.2): per recipient, inside a served delivery, when
/// the recipient's queue holds `max_queue_messages`; storage unchanged when no queue takes
/// the message. (tests/qs_exposure.rs covers limits in bytes and the way back.)
#[test]
fn queue_full_for_the_recipient_whose_queue_is_full() {
    use mimi_ds::qs::{QsConfig, QsStatus};
    use mimi_ds::testing::TestQs;
    use mimi_ds::wire::{QueueingServiceResponse, RecipientRefusal};

    let mut ds = TestDs::new("hub.example");
    let mut config = QsConfig::new("b.example");
    config.max_queue_messages = Some(1);
    let mut qs = TestQs::with_config(config);
    let mut alice = TestClient::new("alice", "phone", "a.example");
    let mut bob = TestClient::new("bob", "phone", "b.example");
    qs.connect(&mut bob, "hub.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let first = ds.process(&alice.message_request(b"first", ds.now_ms));
    assert_eq!(qs.deliver(&first.fanout[0]).status, QsStatus::Accepted);
    let second = ds.process(&alice.message_request(b"second", ds.now_ms));
    let out = qs.assert_unchanged(|qs| qs.deliver(&second.fanout[0]));
    assert_eq!(out.status, QsStatus::Accepted, "the delivery is served");
    let answer: QueueingServiceResponse = mimi_ds::wire::decode_exact(&out.response).unwrap();
    assert_eq!(
        answer,
        QueueingServiceResponse::RecipientsRefused(vec![RecipientRefusal {
            recipient: 0,
            code: ErrorCode::QueueFull as u16,
        }])
    );
}

// ---------------------------------------------------------------------------------------------
// Privacy mode (wire-format.md §17.9)
// ---------------------------------------------------------------------------------------------

#[path = "support/privacy.rs"]
mod privacy_support;

/// A keyed request of `client` with `current` in place of its own current key.
fn keyed_with_current(
    client: &TestClient,
    request: &[u8],
    current: mimi_ds::privacy::StateKey,
    next: Option<mimi_ds::privacy::StateKey>,
    now_ms: u64,
) -> Vec<u8> {
    let keys = mimi_ds::privacy::StateKeys::new(
        mimi_ds::privacy::StateKeyScheme::ExporterEpochKey,
        current,
        next,
    )
    .expect("next epoch");
    client.keyed_request(request, keys, now_ms)
}

#[test]
fn state_key_missing_unkeyed_request_or_commit_without_next_key() {
    let (mut ds, mut alice, _bob) = privacy_support::private_pair();
    let message = alice.message_request(b"in the clear?", ds.now_ms);
    ds.reject_as(
        &message,
        ErrorCode::StateKeyMissing,
        is(RejectReason::StateKeyMissing),
    );
    let group_info = alice.signed_group_info_request(&alice.group_id(), None, ds.now_ms - 1);
    ds.reject_as(
        &group_info,
        ErrorCode::StateKeyMissing,
        is(RejectReason::StateKeyMissing),
    );
    let commit = alice.update_request(ds.now_ms);
    let without_next = alice.keyed_by_member(&commit, false, ds.now_ms);
    ds.reject_as(
        &without_next,
        ErrorCode::StateKeyMissing,
        is(RejectReason::NextStateKeyMissing),
    );
}

#[test]
fn state_key_wrong_other_key_of_the_epoch_or_wrong_length() {
    let (mut ds, mut alice, _bob) = privacy_support::private_pair();
    let message = alice.message_request(b"wrong key", ds.now_ms);
    let epoch = alice.epoch();
    for secret in [vec![7u8; 32], vec![7u8; 31], Vec::new()] {
        let wrong = mimi_ds::privacy::StateKey::new(epoch, secret);
        let request = keyed_with_current(&alice, &message, wrong, None, ds.now_ms);
        ds.reject_as(
            &request,
            ErrorCode::StateKeyWrong,
            is(RejectReason::StateKeyWrong),
        );
    }
}

#[test]
fn state_key_stale_key_of_the_epoch_before_a_commit() {
    let (mut ds, mut alice, mut bob) = privacy_support::private_pair();
    let old = bob.state_keys(false);
    let commit = alice.update_request(ds.now_ms);
    let out = ds.accept(&alice.keyed_by_member(&commit, true, ds.now_ms));
    alice.confirm_commit();
    let message = bob.message_request(b"behind", ds.now_ms);
    let stale = bob.keyed_request(&message, old, ds.now_ms);
    ds.reject_as(
        &stale,
        ErrorCode::StateKeyStale,
        is(RejectReason::StateKeyStale),
    );
    // A key of a later epoch than the group's (a rollback, §17.6) is stale too.
    TestDs::route(&out, &mut [&mut bob]);
    bob.process_inbox();
    let ahead = mimi_ds::privacy::StateKey::new(bob.epoch() + 1, vec![1; 32]);
    let request = keyed_with_current(&bob, &message, ahead, None, ds.now_ms);
    ds.reject_as(
        &request,
        ErrorCode::StateKeyStale,
        is(RejectReason::StateKeyStale),
    );
}

#[test]
fn state_key_unexpected_keys_for_a_plain_group_or_a_mode_change() {
    // Keys sent to a plain group.
    let (mut ds, mut alice) = solo();
    let message = alice.message_request(b"private?", ds.now_ms);
    let keyed = alice.keyed_by_member(&message, false, ds.now_ms);
    ds.reject_as(
        &keyed,
        ErrorCode::StateKeyUnexpected,
        is(RejectReason::KeysForPlainGroup),
    );

    // A create_group whose keys and extension 0xF1E6 disagree, either way.
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    let group_id = ds.request_group_id();
    carol.create_private_group(&group_id, &ds.external_sender);
    let unkeyed = carol.create_group_request(ds.now_ms);
    ds.reject_as(
        &unkeyed,
        ErrorCode::StateKeyUnexpected,
        is(RejectReason::PrivacyExtensionMismatch),
    );
    // ... or whose keys carry a next key: create_group creates no epoch (§17.3).
    let current = carol.state_keys(false).current().clone();
    let next = mimi_ds::privacy::StateKey::new(current.epoch() + 1, vec![4; 32]);
    let with_next = keyed_with_current(&carol, &unkeyed, current, Some(next), ds.now_ms);
    ds.reject_as(
        &with_next,
        ErrorCode::StateKeyUnexpected,
        is(RejectReason::NextStateKeyUnexpected),
    );
    let mut dave = TestClient::new("dave", "dave-1", "d.example");
    let group_id = ds.request_group_id();
    dave.create_group(&group_id, &ds.external_sender);
    let request = dave.create_group_request(ds.now_ms);
    let keyed = dave.keyed_by_member(&request, false, ds.now_ms);
    ds.reject_as(
        &keyed,
        ErrorCode::StateKeyUnexpected,
        is(RejectReason::PrivacyExtensionMismatch),
    );

    // A next_key on a request that creates no epoch.
    let (mut ds, mut alice, _bob) = privacy_support::private_pair();
    let message = alice.message_request(b"next?", ds.now_ms);
    let next = mimi_ds::privacy::StateKey::new(alice.epoch() + 1, vec![2; 32]);
    let request = keyed_with_current(
        &alice,
        &message,
        alice.state_keys(false).current().clone(),
        Some(next),
        ds.now_ms,
    );
    ds.reject_as(
        &request,
        ErrorCode::StateKeyUnexpected,
        is(RejectReason::NextStateKeyUnexpected),
    );

    // A commit whose GroupContextExtensions proposal drops 0xF1E6 (no silent exit, §17.2).
    let kept: Vec<Extension> = alice
        .group()
        .extensions()
        .iter()
        .filter(|e| !matches!(e, Extension::Unknown(0xF1E6, _)))
        .cloned()
        .collect();
    let (update, _) = alice.stage_commit(|b| {
        b.propose_group_context_extensions(Extensions::from_vec(kept).expect("extensions"))
            .expect("proposal")
    });
    let request = alice.signed(commit_body(update), ds.now_ms);
    let dropping = alice.keyed_by_member(&request, true, ds.now_ms);
    ds.reject_as(
        &dropping,
        ErrorCode::StateKeyUnexpected,
        is(RejectReason::PrivacyModeDropped),
    );
}

#[test]
fn every_error_code_is_covered() {
    let this_file = include_str!("error_codes.rs");
    let mut missing = Vec::new();
    for code in ErrorCode::ALL {
        match COVERED.iter().find(|(c, _)| c == code) {
            None => missing.push(code.name()),
            Some((_, tests)) => {
                assert!(!tests.is_empty(), "{} lists no test", code.name());
                for test in *tests {
                    assert!(
                        this_file.contains(&format!("#[test]\nfn {test}()")),
                        "{}: test {test} is listed but not defined",
                        code.name()
                    );
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "error codes without a test: {missing:?}"
    );
    for (i, (code, _)) in COVERED.iter().enumerate() {
        assert!(
            ErrorCode::ALL.contains(code),
            "{code:?} is not in ErrorCode::ALL"
        );
        assert!(
            !COVERED[..i].iter().any(|(c, _)| c == code),
            "{code:?} listed twice"
        );
    }
    assert_eq!(COVERED.len(), ErrorCode::ALL.len());
}
