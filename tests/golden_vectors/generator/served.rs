//! The operations the hub serves, in the life of one group on hub.example.

use mimi_ds::testing::franking::{mimi_content, test_franking_key};
use mimi_ds::testing::seeded::seed;
use mimi_ds::testing::{commit_body, decode_response, TestDs};
use mimi_ds::wire::{
    encode, DsErrorDetails, DsRequestBody, DsResponseBody, DsSenderId, ErrorCode, GroupInfoOption,
    ReportedMessage, ServerFrankingContext, WelcomeInfoRequest,
};
use openmls::prelude::{KeyPackage, Sender};
use openmls_traits::OpenMlsProvider as _;

use super::{
    accepted, client, encrypted_group_info_request, external_commit_info, fanout_to, join, queue,
    rejected, to_partial, unauthenticated, Hub, Vectors,
};

/// The operations the hub serves, in the life of one group, and the answers: returns the group
/// at epoch 2 (members alice-1, bob-1, alice-2) for the operations it does not serve.
pub(super) fn run(v: &mut Vectors) -> Hub {
    // The vectors include the unauthenticated reads, which a deployment may allow
    // (wire-format.md §4.11).
    let mut config = mimi_ds::DsConfig::new("hub.example");
    config.group_info_access = mimi_ds::GroupInfoAccess::Anyone;
    let mut ds =
        TestDs::seeded(config, seed("golden hub.example")).franking_with(test_franking_key(0x42));
    let mut alice = client("alice", "alice-1", "a.example");
    let mut alice2 = client("alice", "alice-2", "a.example");
    let mut bob = client("bob", "bob-1", "b.example");
    let mut carol = client("carol", "carol-1", "c.example");

    // request_group_id (0) and signature_public_key (11): unauthenticated, served.
    let request = unauthenticated(DsRequestBody::RequestGroupId);
    let out = ds.process(&request);
    let DsResponseBody::GroupId(group_id) = decode_response(&out.response).body else {
        panic!()
    };
    let group_id = group_id.as_slice().to_vec();
    v.add(
        "request_request_group_id",
        "request_group_id (0), unauthenticated",
        request,
    );
    v.add(
        "response_group_id",
        "group_id (2): the ID reserved for request_request_group_id",
        out.response,
    );

    let request = unauthenticated(DsRequestBody::SignaturePublicKey);
    let out = ds.process(&request);
    accepted(&out);
    v.add(
        "request_signature_public_key",
        "signature_public_key (11), unauthenticated",
        request,
    );
    v.add(
        "response_signature_public_key",
        "signature_public_key (5): the DS's Ed25519 external-sender key",
        out.response,
    );

    // create_group (1).
    alice.create_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(ds.now_ms);
    accepted(&ds.process(&request));
    v.add(
        "request_create_group",
        "create_group (1) by alice-1 (leaf 0): GroupInfo and ratchet tree at epoch 0",
        request,
    );

    // commits (16) with a full GroupInfo and one Welcome: alice adds bob-1, carol-1, alice-2.
    let bob_key_package: KeyPackage = bob.key_package();
    let bob_key_package_ref = bob_key_package
        .hash_ref(alice.provider.crypto())
        .expect("ref");
    let request = alice.add_request(
        vec![bob_key_package, carol.key_package(), alice2.key_package()],
        ds.now_ms,
    );
    let out = ds.process(&request);
    accepted(&out);
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!()
    };
    assert_eq!((receipt.sequence_number, receipt.epoch), (0, 1));
    alice.confirm_commit();
    v.add(
        "request_commits",
        "commits (16) by leaf 0 adding bob-1, carol-1, alice-2 (epoch 0 -> 1), full GroupInfo, one Welcome",
        request,
    );
    v.add(
        "response_accepted",
        "accepted (8): receipt for request_commits (sequence 0, epoch 1)",
        out.response.clone(),
    );
    v.add(
        "qs_request_welcome",
        "the DS's fanout of request_commits' Welcome to b.example (queue bob-1)",
        fanout_to(&out, "b.example"),
    );
    TestDs::route(&out, &mut [&mut bob, &mut carol, &mut alice2]);
    let (_, _, info) = external_commit_info(&mut ds, &group_id);
    for client in [&mut bob, &mut carol, &mut alice2] {
        join(client, info.ratchet_tree().expect("full tree"));
    }

    // welcome_info (18), signed as the KeyPackageRef of bob-1's KeyPackage.
    let request = bob.signed_as(
        DsRequestBody::WelcomeInfo(WelcomeInfoRequest { epoch: 1 }),
        &group_id,
        ds.now_ms,
        DsSenderId::KeyPackageRef(bob_key_package_ref.as_slice().to_vec().into()),
    );
    let out = ds.process(&request);
    accepted(&out);
    v.add(
        "request_welcome_info",
        "welcome_info (18) for epoch 1, signed by bob-1 as key_package_ref",
        request,
    );
    v.add(
        "response_welcome_info",
        "welcome_info (3): the epoch-1 ratchet tree, the answer to request_welcome_info",
        out.response,
    );

    // send_message (10).
    ds.advance(1000);
    let request = alice.message_request(b"hello, group", ds.now_ms);
    let out = ds.process(&request);
    accepted(&out);
    v.add(
        "request_send_message",
        "send_message (10) by leaf 0: a PrivateMessage at epoch 1",
        request,
    );
    v.add(
        "qs_request_application_message",
        "the DS's fanout of request_send_message to c.example (queue carol-1)",
        fanout_to(&out, "c.example"),
    );
    TestDs::route(&out, &mut [&mut bob, &mut carol, &mut alice2]);
    for client in [&mut bob, &mut carol, &mut alice2] {
        client.process_inbox();
    }

    // A franked send_message (wire-format.md §15.5) and carol's report of it (§15.7).
    let content = mimi_content([0x5e; 16], "franked hello");
    let request = bob.franked_message_request(&content, ds.now_ms);
    let out = ds.process(&request);
    accepted(&out);
    v.add(
        "request_send_message_franked",
        "send_message (10) by bob-1: a PrivateMessage whose authenticated data is a SafeAAD with a frank_aad item",
        request,
    );
    v.add(
        "response_accepted_franked",
        "accepted (8) with the hub's Frank, the answer to request_send_message_franked",
        out.response.clone(),
    );
    v.add(
        "qs_request_application_message_franked",
        "the DS's fanout of request_send_message_franked to c.example (queue carol-1), with the Frank",
        fanout_to(&out, "c.example"),
    );
    let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
        panic!()
    };
    let report = ReportedMessage {
        application_data: content.into(),
        context: ServerFrankingContext {
            sender_uri: b"mimi://b.example/u/bob".to_vec().into(),
            room_uri: group_id.clone().into(),
            accepted_timestamp: receipt.accepted_time_ms,
        },
        frank: receipt.frank.expect("franked"),
    };
    ds.ds
        .verify_reported_message(&report)
        .expect("the report verifies");
    v.add(
        "reported_message",
        "carol-1's report of request_send_message_franked, which the hub verifies",
        encode(&report).expect("encode"),
    );
    TestDs::route(&out, &mut [&mut alice, &mut carol, &mut alice2]);
    for client in [&mut alice, &mut carol, &mut alice2] {
        client.process_inbox();
    }

    // update_queue_info (19).
    let request = bob.update_queue_request(queue("b.example", "bob-1-new-queue"), ds.now_ms);
    let out = ds.process(&request);
    accepted(&out);
    v.add(
        "request_update_queue_info",
        "update_queue_info (19) by bob-1 (leaf 1)",
        request,
    );
    v.add(
        "response_ok",
        "ok (0): the answer to request_update_queue_info",
        out.response,
    );

    // proposals (15): bob-1 proposes removing carol-1; it stays pending.
    let carol_leaf = carol.leaf();
    let request = bob.propose_remove_request(carol_leaf, ds.now_ms);
    let proposal_out = ds.process(&request);
    accepted(&proposal_out);
    v.add(
        "request_proposals",
        "proposals (15) by leaf 1: a Remove of carol-1 (leaf 2)",
        request,
    );

    // group_info (17) while the proposal is pending.
    let (request, response, info) = external_commit_info(&mut ds, &group_id);
    assert_eq!(info.pending_proposals.len(), 1);
    v.add(
        "request_group_info",
        "group_info (17), unauthenticated",
        request,
    );
    v.add(
        "response_external_commit_info",
        "external_commit_info (4): epoch-1 GroupInfo, tree, and request_proposals' pending Remove",
        response,
    );
    // The same, encrypted to the requester's HPKE key.
    let (request, keys) = encrypted_group_info_request(&group_id);
    let out = ds.process(&request);
    accepted(&out);
    let DsResponseBody::EncryptedExternalCommitInfo(sealed) = decode_response(&out.response).body
    else {
        panic!("expected an encrypted answer")
    };
    assert_eq!(
        mimi_ds::testing::open_external_commit_info(&sealed, &group_id, &keys).unwrap(),
        info
    );
    v.add(
        "request_group_info_encrypted",
        "group_info (17), unauthenticated, with an HPKE encryption key",
        request,
    );
    v.add(
        "response_encrypted_external_commit_info",
        "encrypted_external_commit_info (9): request_group_info_encrypted's answer",
        out.response,
    );

    // missing_pending_proposals: the hub proposes removing carol-1 too (its own proposals
    // are the mandatory ones, wire-format.md §4.3.3); alice-1 has seen neither proposal and
    // commits without them.
    let hub_out = ds.handle_event(
        &group_id,
        &mimi_ds::HubEvent::ClientDeleted {
            signature_key: carol.signer.to_public_vec(),
        },
    );
    accepted(&hub_out);
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    rejected(&out, ErrorCode::MissingPendingProposals);
    alice.discard_commit();
    let DsResponseBody::Error(error) = decode_response(&out.response).body else {
        panic!()
    };
    v.add(
        "response_error_proposal_refs",
        "error (1) missing_pending_proposals with the ProposalRef of the hub's Remove of carol-1",
        out.response,
    );
    for out in [&proposal_out, &hub_out] {
        TestDs::route(out, &mut [&mut alice, &mut bob, &mut carol, &mut alice2]);
    }
    for client in [&mut alice, &mut bob, &mut carol, &mut alice2] {
        client.process_inbox();
    }
    // The comment above holds: the one ProposalRef is that of the hub's (external) proposal.
    let hub_proposal_ref = alice
        .group()
        .pending_proposals()
        .find(|p| matches!(p.sender(), Sender::External(_)))
        .expect("the hub's proposal is pending")
        .proposal_reference_ref()
        .clone();
    assert_eq!(
        error.details,
        DsErrorDetails::ProposalRefs(vec![hub_proposal_ref.as_slice().to_vec().into()])
    );

    // bob-1 stages a commit at epoch 1 that will arrive late.
    let (stale_update, _) = bob.stage_commit(|b| b.force_self_update(true));

    // commits (16) with a PartialGroupInfo: alice-1 commits the pending Remove.
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    update.group_info = GroupInfoOption::Partial(to_partial(&update.group_info));
    let request = alice.signed(commit_body(update), ds.now_ms);
    let commit_out = ds.process(&request);
    accepted(&commit_out);
    alice.confirm_commit();
    v.add(
        "request_commits_partial_group_info",
        "commits (16) by leaf 0 with a PartialGroupInfo: update path + the hub's pending Remove of carol-1 (epoch 1 -> 2)",
        request,
    );

    // wrong_epoch: bob-1's epoch-1 commit after the group moved to epoch 2.
    let out = ds.process(&bob.signed(commit_body(stale_update), ds.now_ms));
    rejected(&out, ErrorCode::WrongEpoch);
    let DsResponseBody::Error(error) = decode_response(&out.response).body else {
        panic!()
    };
    assert_eq!(error.details, DsErrorDetails::CurrentEpoch(2));
    bob.discard_commit();
    v.add(
        "response_error_current_epoch",
        "error (1) wrong_epoch with current_epoch 2",
        out.response,
    );
    TestDs::route(&commit_out, &mut [&mut bob, &mut alice2]);
    for client in [&mut bob, &mut alice2] {
        client.process_inbox();
    }
    assert_eq!((alice.epoch(), bob.epoch(), alice2.epoch()), (2, 2, 2));
    Hub {
        ds,
        group_id,
        alice,
        alice2,
        bob,
    }
}
