//! What a stranger can make the DS do for free. `create_group` (wire-format.md §4.2, §8): the
//! requester's `ClientSignature` is checked against its leaf in the raw tree before the tree is
//! imported, and an authenticated attempt that fails validation consumes the reservation.
//! `external_join` (§4.4.4): the policy and the GroupInfo's framing are checked before the
//! group is read and loaded.

use mimi_ds::testing::{assert_rejected, TestClient, TestDs};
use mimi_ds::wire::{
    decode_exact, encode, CreateGroupRequest, DsAuthData, DsRequest, DsRequestBody, DsSenderId,
    ErrorCode, GroupInfoOption, GroupUpdate, GroupUpdateRequest, MlsMessageBytes,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{DsConfig, ExternalJoinPolicy, InvalidGroupInfo, RejectReason, Status};

/// Alice's freshly created group, with its reserved ID, not yet registered.
fn reserved() -> (TestDs, TestClient, Vec<u8>) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    (ds, alice, group_id)
}

/// Alice's `create_group` body with one bit of the GroupInfo signature flipped: it still
/// decodes, but `PublicGroup::from_external` refuses it after checking the whole tree.
fn body_with_broken_group_info(alice: &TestClient, now_ms: u64) -> DsRequestBody {
    let request: DsRequest = decode_exact(&alice.create_group_request(now_ms)).unwrap();
    let DsRequestBody::CreateGroup(body) = request.body else {
        panic!("not create_group")
    };
    let mut group_info = body.group_info.as_bytes().to_vec();
    *group_info.last_mut().unwrap() ^= 0x01;
    DsRequestBody::CreateGroup(CreateGroupRequest {
        group_info: MlsMessageBytes::from_bytes(group_info).unwrap(),
        ..body
    })
}

#[test]
fn a_bad_client_signature_is_refused_before_the_tree_is_imported() {
    let (mut ds, alice, group_id) = reserved();
    let mallory = TestClient::new("mallory", "mallory-1", "m.example");
    // Mallory signs for Alice's leaf. Were the tree imported first, the broken GroupInfo would
    // be reported (invalid_group_info); the signature is checked first, against the raw leaf.
    let request = mallory.signed_as(
        body_with_broken_group_info(&alice, ds.now_ms),
        &group_id,
        ds.now_ms,
        DsSenderId::LeafIndex(0),
    );
    // An unauthenticated attempt writes nothing.
    ds.reject(&request, ErrorCode::AuthenticationFailed);

    // So it does not cost Alice her reservation.
    let out = ds.process(&alice.create_group_request(ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
}

#[test]
fn a_sender_leaf_outside_the_tree_is_not_a_member() {
    let (mut ds, alice, group_id) = reserved();
    // A one-leaf tree; the GroupInfo check for the signer comes first, so the sender must name
    // leaf 0 there. Here the raw tree is cut to nothing but an empty vector.
    let request: DsRequest = decode_exact(&alice.create_group_request(ds.now_ms)).unwrap();
    let DsRequestBody::CreateGroup(body) = request.body else {
        panic!("not create_group")
    };
    let body = DsRequestBody::CreateGroup(CreateGroupRequest {
        ratchet_tree: mimi_ds::wire::RatchetTreeBytes::from_bytes(vec![0]).unwrap(),
        ..body
    });
    let request = alice.signed_as(body, &group_id, ds.now_ms, DsSenderId::LeafIndex(0));
    ds.reject(&request, ErrorCode::AuthenticationFailed);
}

#[test]
fn an_authenticated_attempt_that_fails_validation_consumes_the_reservation() {
    let (mut ds, alice, group_id) = reserved();
    let request = alice.signed_as(
        body_with_broken_group_info(&alice, ds.now_ms),
        &group_id,
        ds.now_ms,
        DsSenderId::LeafIndex(0),
    );
    // Exactly one change: the reservation is deleted under the version the request read.
    let refusal = ds.reject_consuming_reservation(&request, ErrorCode::InvalidGroupInfo);
    assert!(
        matches!(
            refusal.reason,
            RejectReason::InvalidGroupInfo(InvalidGroupInfo::DoesNotValidate { .. })
        ),
        "{:?}",
        refusal.reason
    );

    // The valid request now needs a new group ID.
    ds.advance(1);
    let out = ds.process(&alice.create_group_request(ds.now_ms));
    assert_rejected(&out, ErrorCode::InvalidGroupId);
}

// ---------------------------------------------------------------------------------------------
// external_join: cheap checks before the group is read and loaded (wire-format.md §4.4.4)
// ---------------------------------------------------------------------------------------------

/// Alice alone in a registered group.
fn solo(config: DsConfig) -> (TestDs, TestClient) {
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
    (ds, alice)
}

fn unauthenticated(body: DsRequestBody) -> Vec<u8> {
    encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap()
}

fn group_update_of(request: &[u8]) -> GroupUpdate {
    match decode_exact::<DsRequest>(request).unwrap().body {
        DsRequestBody::Commits(c) => c.group_update,
        DsRequestBody::ExternalJoin(c) => c.group_update,
        other => panic!("not a commit: {other:?}"),
    }
}

#[test]
fn a_ds_without_external_joins_refuses_before_decoding_the_commit() {
    let mut config = DsConfig::new("hub.example");
    config.external_joins = ExternalJoinPolicy::Disabled;
    let (mut ds, mut alice) = solo(config);
    // Not even an external commit: the policy answers before the commit is looked at.
    let group_update = group_update_of(&alice.update_request(ds.now_ms));
    let request = unauthenticated(DsRequestBody::ExternalJoin(GroupUpdateRequest {
        group_update,
    }));
    ds.reject(&request, ErrorCode::NotAllowed);
}

#[test]
fn an_external_join_with_a_group_info_for_another_epoch_is_refused_before_the_group_is_loaded() {
    let (mut ds, alice) = solo(DsConfig::new("hub.example"));
    let info = ds.group_info(&alice, &alice.group_id());
    let mut laptop = TestClient::new("alice", "alice-2", "a.example");
    let mut update = group_update_of(&laptop.external_join_request(&info));
    // The GroupInfo of the current epoch instead of the new one, and a commit whose signature
    // is broken: only processing the commit against the loaded group would find the latter,
    // so the answer shows which check ran first. The commit ends with its signature (64 bytes
    // of Ed25519) and confirmation tag (a one-byte length and 32 bytes of HMAC-SHA256).
    update.group_info = GroupInfoOption::Full(info.group_info_message().expect("GroupInfo"));
    let mut commit = update.commit.as_bytes().to_vec();
    let signature_end = commit.len() - 33;
    commit[signature_end - 1] ^= 0x01;
    update.commit = MlsMessageBytes::from_bytes(commit).unwrap();
    let request = unauthenticated(DsRequestBody::ExternalJoin(GroupUpdateRequest {
        group_update: update,
    }));
    assert_eq!(
        ds.reject(&request, ErrorCode::InvalidGroupInfo),
        InvalidGroupInfo::NotForCommitEpoch.into()
    );
}
