//! Joining: by Welcome with the tree from `welcome_info` (snapshots kept per epoch until every
//! joiner fetched them or their KeyPackages expired), by external commit, and the resync of a
//! client that lost its state.

use mimi_ds::storage::RecordKind;
use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{DsResponseBody, ErrorCode, ExternalCommitInfo, RatchetTreeBytes};
use mimi_ds::{
    AuthenticationFailed, DsConfig, ExternalJoinPolicy, NotAllowed, RejectReason, Status,
};

fn group_with_alice(ds: &mut TestDs) -> TestClient {
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
    alice
}

/// Adds the clients in one commit and returns the Welcome each of them received.
fn add(
    ds: &mut TestDs,
    adder: &mut TestClient,
    joiners: &mut [&mut TestClient],
) -> Vec<mimi_ds::wire::MlsMessageBytes> {
    let key_packages = joiners.iter().map(|j| j.key_package()).collect();
    let out = ds.process(&adder.add_request(key_packages, ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    adder.confirm_commit();
    TestDs::route(&out, joiners);
    joiners
        .iter_mut()
        .map(|j| match j.process_inbox().pop() {
            Some(Received::Welcome(w)) => w,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn welcome_tree(ds: &mut TestDs, request: &[u8]) -> RatchetTreeBytes {
    let out = ds.process(request);
    match decode_response(&out.response).body {
        DsResponseBody::WelcomeInfo(info) => info.ratchet_tree,
        other => panic!("{other:?}"),
    }
}

/// The same request body and sender, signed by `signer` at `now_ms`.
fn resign(signer: &TestClient, request: &[u8], now_ms: u64) -> Vec<u8> {
    let decoded: mimi_ds::wire::DsRequest = mimi_ds::wire::decode_exact(request).unwrap();
    let mimi_ds::wire::DsAuthData::ClientSignature(sig) = decoded.auth else {
        panic!("unsigned")
    };
    signer.signed_as(decoded.body, sig.group_id.as_slice(), now_ms, sig.sender_id)
}

/// The GroupInfo as `member` fetches it (wire-format.md §4.11).
fn group_info(ds: &mut TestDs, member: &TestClient) -> ExternalCommitInfo {
    ds.group_info(member, &member.group_id())
}

#[test]
fn welcome_joiners_fetch_their_epochs_tree_once_and_then_it_is_dropped() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = group_with_alice(&mut ds);
    let mut bob1 = TestClient::new("bob", "bob-phone", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-laptop", "b.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob1, &mut bob2]);
    let group_id = alice.group_id();

    // Bob's phone joins at once.
    let (request, processed) = bob1.welcome_info_request(&welcomes[0], ds.now_ms);
    let tree = welcome_tree(&mut ds, &request);
    bob1.join_with_tree(processed, &tree);
    assert_eq!(bob1.epoch(), 1);
    // A lost answer is recovered by resending the identical request...
    assert_eq!(ds.process(&request).status, Status::Duplicate);
    // ...but the tree is not handed out again to a new request.
    ds.advance(1);
    let again = resign(&bob1, &request, ds.now_ms);
    let out = ds.process(&again);
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::NoPendingWelcome.into())
    );

    // The group moves on; the laptop still gets epoch 1's tree.
    let out = ds.process(&alice.update_request(ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob1, &mut bob2]);
    bob1.process_inbox();
    let (request, processed) = bob2.welcome_info_request(&welcomes[1], ds.now_ms);
    let tree = welcome_tree(&mut ds, &request);
    bob2.join_with_tree(processed, &tree);
    assert_eq!(bob2.epoch(), 1);
    assert_eq!(
        bob2.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );

    // Every joiner fetched: nothing of that epoch is kept (the empty index is the group's
    // ciphersuite, 2 bytes, and an empty snapshot list, 1 byte).
    let empty = ds
        .storage
        .record_bytes(&group_id, RecordKind::WelcomeSnapshots);
    assert!(empty <= 3, "snapshots left: {empty} bytes");
    assert_eq!(
        ds.storage
            .record_bytes(&group_id, RecordKind::WelcomeTree { epoch: 1 }),
        0
    );

    // The joined clients talk.
    let out = ds.process(&bob2.message_request(b"laptop here", ds.now_ms));
    TestDs::route(&out, &mut [&mut alice, &mut bob1]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Application(b"laptop here".to_vec())]
    );
}

#[test]
fn welcome_info_refuses_a_wrong_key_a_wrong_epoch_and_an_expired_key_package() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = group_with_alice(&mut ds);
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob]);

    // Signed by someone else claiming Bob's KeyPackageRef.
    let (request, _) = bob.welcome_info_request(&welcomes[0], ds.now_ms);
    let forged = resign(
        &TestClient::new("eve", "eve", "e.example"),
        &request,
        ds.now_ms,
    );
    assert_eq!(
        ds.reject(&forged, ErrorCode::AuthenticationFailed),
        AuthenticationFailed::SignatureDoesNotVerify.into()
    );

    // Bob's own key, but for an epoch he was not added in.
    let wrong_epoch = {
        let decoded: mimi_ds::wire::DsRequest = mimi_ds::wire::decode_exact(&request).unwrap();
        let mimi_ds::wire::DsAuthData::ClientSignature(sig) = decoded.auth else {
            panic!()
        };
        let body = mimi_ds::wire::DsRequestBody::WelcomeInfo(mimi_ds::wire::WelcomeInfoRequest {
            epoch: 0,
        });
        bob.signed_as(body, sig.group_id.as_slice(), ds.now_ms, sig.sender_id)
    };
    let out = ds.process(&wrong_epoch);
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::NoPendingWelcome.into())
    );

    // A leaf_index sender is not a joiner.
    let body =
        mimi_ds::wire::DsRequestBody::WelcomeInfo(mimi_ds::wire::WelcomeInfoRequest { epoch: 1 });
    let out = ds.process(&alice.signed(body, ds.now_ms));
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::KeyPackageRefSenderRequired.into())
    );

    // Past the KeyPackage's not_after the snapshot is gone (docs/decisions.md D15). openmls sets
    // lifetimes from the system clock, so jump well past any of them.
    ds.advance(1000 * 24 * 3600 * 1000);
    let late = resign(&bob, &request, ds.now_ms);
    let out = ds.process(&late);
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::NoPendingWelcome.into())
    );
}

#[test]
fn a_new_client_of_an_existing_user_joins_by_external_commit() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = group_with_alice(&mut ds);
    let mut alice_laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let info = group_info(&mut ds, &alice);

    let request = alice_laptop.external_join_request(&info);
    let out = ds.process(&request);
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice_laptop.confirm_commit();
    // The commit reaches the existing member, not the joiner.
    assert_eq!(TestDs::route(&out, &mut [&mut alice, &mut alice_laptop]), 1);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 1,
            removed: false
        }]
    );
    // A retry of the same bytes is answered as before.
    assert_eq!(ds.process(&request).status, Status::Duplicate);

    let out = ds.process(&alice_laptop.message_request(b"from the laptop", ds.now_ms));
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Application(b"from the laptop".to_vec())]
    );
}

#[test]
fn a_client_that_lost_its_state_resyncs_by_external_commit() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = group_with_alice(&mut ds);
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let welcomes = add(&mut ds, &mut alice, &mut [&mut bob]);
    let (request, processed) = bob.welcome_info_request(&welcomes[0], ds.now_ms);
    let tree = welcome_tree(&mut ds, &request);
    bob.join_with_tree(processed, &tree);
    let old_leaf = bob.leaf();

    // Bob's phone loses its group state (it keeps its identity key, as a device does).
    bob.lose_state();
    let info = group_info(&mut ds, &alice);
    let out = ds.process(&bob.external_join_request(&info));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    bob.confirm_commit();
    // The commit reaches Alice, not the resyncing phone: it removes the phone's old leaf.
    assert_eq!(TestDs::route(&out, &mut [&mut alice, &mut bob]), 1);
    assert!(
        bob.inbox.is_empty(),
        "the resynced client got its own commit back"
    );
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );
    assert_eq!(
        alice.group().members().count(),
        2,
        "the old leaf was replaced, not kept"
    );
    assert_eq!(
        bob.leaf(),
        old_leaf,
        "the resynced client takes the freed leaf"
    );

    let out = ds.process(&alice.message_request(b"welcome back", ds.now_ms));
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"welcome back".to_vec())]
    );
}

#[test]
fn external_joins_follow_the_policy() {
    for (policy, expected, because) in [
        (
            ExternalJoinPolicy::ExistingUsers,
            Status::Rejected(ErrorCode::NotAllowed),
            Some(NotAllowed::ExternalJoinOfNewUser),
        ),
        (
            ExternalJoinPolicy::Disabled,
            Status::Rejected(ErrorCode::NotAllowed),
            Some(NotAllowed::ExternalJoinsDisabled),
        ),
        (ExternalJoinPolicy::Anyone, Status::Accepted, None),
    ] {
        let mut config = DsConfig::new("hub.example");
        config.external_joins = policy;
        let mut ds = TestDs::with_config(config);
        let alice = group_with_alice(&mut ds);
        let mut carol = TestClient::new("carol", "carol-phone", "c.example");
        let info = group_info(&mut ds, &alice);
        let request = carol.external_join_request(&info);
        match (expected, because) {
            (Status::Rejected(code), Some(because)) => {
                assert_eq!(
                    ds.reject(&request, code),
                    RejectReason::from(because),
                    "{policy:?}"
                );
            }
            _ => assert_eq!(ds.process(&request).status, expected, "{policy:?}"),
        }
    }
}

#[test]
fn an_external_join_must_be_unauthenticated_and_for_the_current_epoch() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = group_with_alice(&mut ds);
    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let info = group_info(&mut ds, &alice);
    let request = laptop.external_join_request(&info);

    // The same external commit wrapped in Alice's ClientSignature.
    let decoded: mimi_ds::wire::DsRequest = mimi_ds::wire::decode_exact(&request).unwrap();
    let signed = alice.signed(decoded.body, ds.now_ms);
    let out = ds.process(&signed);
    assert_eq!(
        out.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    assert_eq!(
        out.refusal,
        Some(AuthenticationFailed::ExternalJoinSigned.into())
    );

    // After another commit, the external commit is stale.
    let out = ds.process(&alice.update_request(ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
    alice.confirm_commit();
    assert_eq!(
        ds.process(&request).status,
        Status::Rejected(ErrorCode::WrongEpoch)
    );
}

#[test]
fn an_external_joiner_can_have_the_group_info_encrypted_to_it() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = group_with_alice(&mut ds);
    let group_id = alice.group_id();
    let keys = mimi_ds::testing::group_info_encryption_keys();
    let request = alice.signed_group_info_request(&group_id, Some(&keys), ds.now_ms);
    let out = ds.process(&request);
    let DsResponseBody::EncryptedExternalCommitInfo(sealed) = decode_response(&out.response).body
    else {
        panic!("expected an encrypted answer")
    };
    // Only the key holder can read it, and only for this group (the group ID is the context).
    let other_keys = mimi_ds::testing::group_info_encryption_keys();
    assert!(mimi_ds::testing::open_external_commit_info(&sealed, &group_id, &other_keys).is_err());
    assert!(mimi_ds::testing::open_external_commit_info(&sealed, b"another group", &keys).is_err());
    let info = mimi_ds::testing::open_external_commit_info(&sealed, &group_id, &keys).unwrap();
    assert_eq!(
        info,
        {
            ds.advance(1);
            group_info(&mut ds, &alice)
        },
        "the same answer as in the clear"
    );

    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    let out = ds.process(&laptop.external_join_request(&info));
    assert_eq!(out.status, Status::Accepted);
    laptop.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 1,
            removed: false
        }]
    );
}

#[test]
fn a_group_info_encryption_key_that_is_not_a_key_is_malformed() {
    let mut ds = TestDs::new("hub.example");
    let alice = group_with_alice(&mut ds);
    let request = alice.signed(
        mimi_ds::wire::DsRequestBody::GroupInfo(mimi_ds::wire::GroupInfoRequest {
            group_id: alice.group_id().into(),
            encryption_key: Some(vec![1, 2, 3].into()),
        }),
        ds.now_ms,
    );
    assert_eq!(
        ds.process(&request).status,
        Status::Rejected(ErrorCode::MalformedRequest)
    );
}
