//! Who may fetch a group's GroupInfo, tree, credentials, sealed queue configurations and
//! pending proposals (`group_info`, wire-format.md §4.11; router gate §11.2). By default a
//! member or a user of the group with its registered user key; anonymous access only where the
//! deployment chose it.

use std::rc::Rc;

use mimi_ds::qs::InMemoryQsStorage;
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::{
    assert_unchanged, decode_response, group_info_encryption_keys, open_external_commit_info,
    Received, TestClient, TestDs, CIPHERSUITE,
};
use mimi_ds::transport::{HttpRequest, Router, TransportConfig, OCTET_STREAM};
use mimi_ds::wire::{
    decode_exact, DsRequestBody, DsResponse, DsResponseBody, DsSenderId, ErrorCode,
    GroupInfoRequest,
};
use mimi_ds::{AuthenticationFailed, DsConfig, GroupInfoAccess, Outcome, Status, UnixTimeMs};
use openmls_basic_credential::SignatureKeyPair;

/// A user key shared by a user's clients (wire-format.md §3.5).
fn user_key() -> Rc<SignatureKeyPair> {
    Rc::new(SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap())
}

/// Alice's phone alone in a group, registering Alice's user key.
fn alice_group(config: DsConfig) -> (TestDs, TestClient, Rc<SignatureKeyPair>) {
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let key = user_key();
    alice.user_key = Some(key.clone());
    ds.create_group_with(&mut alice, &mut []);
    (ds, alice, key)
}

fn served(out: &Outcome) -> mimi_ds::wire::ExternalCommitInfo {
    match decode_response(&out.response).body {
        DsResponseBody::ExternalCommitInfo(info) => info,
        other => panic!("group_info refused: {other:?}"),
    }
}

#[test]
fn an_anonymous_request_is_refused_by_default_without_telling_whether_the_group_exists() {
    let (mut ds, alice, _) = alice_group(DsConfig::new("hub.example"));
    assert_eq!(
        ds.ds.config().group_info_access,
        GroupInfoAccess::Members,
        "the default"
    );
    assert_eq!(
        ds.reject(
            &TestClient::group_info_request(&alice.group_id()),
            ErrorCode::AuthenticationFailed,
        ),
        AuthenticationFailed::GroupInfoNeedsSignature.into()
    );
    assert_eq!(
        ds.reject(
            &TestClient::encrypted_group_info_request(&alice.group_id()).0,
            ErrorCode::AuthenticationFailed,
        ),
        AuthenticationFailed::GroupInfoNeedsSignature.into()
    );
    // The same answer for a group that does not exist.
    assert_eq!(
        ds.reject(
            &TestClient::group_info_request(b"nowhere@hub.example"),
            ErrorCode::AuthenticationFailed,
        ),
        AuthenticationFailed::GroupInfoNeedsSignature.into()
    );
}

#[test]
fn a_members_signed_request_is_served() {
    let (mut ds, alice, _) = alice_group(DsConfig::new("hub.example"));
    let group_id = alice.group_id();
    let info = served(&ds.process(&alice.signed_group_info_request(&group_id, None, ds.now_ms)));
    assert_eq!(
        info.ratchet_tree()
            .unwrap()
            .parse()
            .unwrap()
            .leaves()
            .count(),
        1
    );

    // Encrypted to the member's key too.
    let keys = group_info_encryption_keys();
    let out = ds.process(&alice.signed_group_info_request(&group_id, Some(&keys), ds.now_ms + 1));
    let DsResponseBody::EncryptedExternalCommitInfo(sealed) = decode_response(&out.response).body
    else {
        panic!("expected an encrypted answer")
    };
    assert_eq!(
        open_external_commit_info(&sealed, &group_id, &keys).unwrap(),
        info
    );
}

#[test]
fn strangers_signatures_are_refused() {
    let (mut ds, alice, _) = alice_group(DsConfig::new("hub.example"));
    let group_id = alice.group_id();
    let now = ds.now_ms;
    let body = DsRequestBody::GroupInfo(GroupInfoRequest {
        group_id: group_id.clone().into(),
        encryption_key: None,
    });
    let mallory = TestClient::new("mallory", "mallory-1", "m.example");
    // Mallory claims Alice's leaf with her own key.
    assert_eq!(
        ds.reject(
            &mallory.signed_as(body.clone(), &group_id, now, DsSenderId::LeafIndex(0)),
            ErrorCode::AuthenticationFailed,
        ),
        AuthenticationFailed::SignatureDoesNotVerify.into()
    );
    // A user key that no client of the group registered.
    let mut stranger = TestClient::new("mallory", "mallory-2", "m.example");
    stranger.user_key = Some(user_key());
    assert_eq!(
        ds.reject(
            &stranger.signed_group_info_request(&group_id, None, now),
            ErrorCode::AuthenticationFailed,
        ),
        AuthenticationFailed::UnknownUserKey.into()
    );
    // A KeyPackageRef is for welcome_info only.
    assert_eq!(
        ds.reject(
            &mallory.signed_as(
                body,
                &group_id,
                now,
                DsSenderId::KeyPackageRef(vec![7; 32].into()),
            ),
            ErrorCode::AuthenticationFailed,
        ),
        AuthenticationFailed::LeafIndexSenderRequired.into()
    );
}

#[test]
fn a_new_device_fetches_with_its_users_key_and_joins_by_external_commit() {
    let (mut ds, mut alice, key) = alice_group(DsConfig::new("hub.example"));
    let mut laptop = TestClient::new("alice", "alice-laptop", "a.example");
    laptop.user_key = Some(key);
    let info =
        served(&ds.process(&laptop.signed_group_info_request(&alice.group_id(), None, ds.now_ms)));
    let out = ds.process(&laptop.external_join_request(&info));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
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
fn a_client_that_lost_its_state_fetches_with_its_users_key_and_resyncs() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    bob.user_key = Some(user_key());
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob]);

    bob.lose_state();
    let info = served(&ds.process(&bob.signed_group_info_request(&group_id, None, ds.now_ms)));
    let out = ds.process(&bob.external_join_request(&info));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(alice.group().members().count(), 2);
}

#[test]
fn a_deployment_that_chose_anonymous_access_serves_unauthenticated_requests() {
    let mut config = DsConfig::new("hub.example");
    config.group_info_access = GroupInfoAccess::Anyone;
    let (mut ds, alice, _) = alice_group(config);
    // An anonymous read writes nothing.
    let info = served(
        &ds.assert_unchanged(|ds| ds.process(&TestClient::group_info_request(&alice.group_id()))),
    );
    assert_eq!(
        info,
        served(&ds.process(&alice.signed_group_info_request(&alice.group_id(), None, ds.now_ms)))
    );
}

// ---------------------------------------------------------------------------------------------
// The router's gate (wire-format.md §11.2)
// ---------------------------------------------------------------------------------------------

const HUB: &str = "hub.example";

fn route(
    router: &Router,
    storage: &mut InMemoryStorage,
    now_ms: u64,
    body: &[u8],
    code: Option<&str>,
) -> (u16, DsResponse) {
    let mut headers = vec![("host", HUB), ("content-type", OCTET_STREAM)];
    if let Some(code) = code {
        headers.push(("x-join-code", code));
    }
    let request = HttpRequest {
        method: "POST",
        path: "/external_commit_information",
        headers: &headers,
        body,
        authenticated_peer: None,
    };
    let routed = router
        .handle(
            UnixTimeMs(now_ms),
            &request,
            storage,
            &mut InMemoryQsStorage::new(),
        )
        .unwrap();
    (
        routed.response.status,
        decode_exact(&routed.response.body).unwrap(),
    )
}

#[test]
fn the_router_gate_admits_only_the_anonymous_requests_the_server_authorized() {
    let mut config = DsConfig::new(HUB);
    config.group_info_access = GroupInfoAccess::Anyone;
    let (ds, alice, _) = alice_group(config);
    let group_id = alice.group_id();
    let gated_group = group_id.clone();
    let router = Router::new(TransportConfig::new(HUB, Some(HUB.to_string())))
        .with_ds(ds.ds)
        .with_anonymous_group_info_gate(move |request, group| {
            group == gated_group.as_slice() && request.header("x-join-code") == Some("letmein")
        });
    let mut storage = ds.storage;
    let anonymous = TestClient::group_info_request(&group_id);

    let (status, response) = assert_unchanged(&mut storage, |storage| {
        route(&router, storage, ds.now_ms, &anonymous, None)
    });
    assert_eq!(status, 403);
    assert!(
        matches!(response.body, DsResponseBody::Error(e) if e.code == ErrorCode::AuthenticationFailed)
    );
    let (status, _) = route(&router, &mut storage, ds.now_ms, &anonymous, Some("wrong"));
    assert_eq!(status, 403);

    let (status, response) = route(
        &router,
        &mut storage,
        ds.now_ms,
        &anonymous,
        Some("letmein"),
    );
    assert_eq!(status, 200);
    assert!(matches!(
        response.body,
        DsResponseBody::ExternalCommitInfo(_)
    ));

    // A member's signed request does not need the code: the DS authenticates it.
    let signed = alice.signed_group_info_request(&group_id, None, ds.now_ms);
    let (status, _) = route(&router, &mut storage, ds.now_ms, &signed, None);
    assert_eq!(status, 200);
}

#[test]
fn the_router_gate_does_not_grant_what_the_ds_refuses() {
    let (ds, alice, _) = alice_group(DsConfig::new(HUB));
    let router = Router::new(TransportConfig::new(HUB, Some(HUB.to_string())))
        .with_ds(ds.ds)
        .with_anonymous_group_info_gate(|_, _| true);
    let mut storage = ds.storage;
    let (status, response) = route(
        &router,
        &mut storage,
        ds.now_ms,
        &TestClient::group_info_request(&alice.group_id()),
        None,
    );
    assert_eq!(status, 403);
    assert!(
        matches!(response.body, DsResponseBody::Error(e) if e.code == ErrorCode::AuthenticationFailed)
    );
}
