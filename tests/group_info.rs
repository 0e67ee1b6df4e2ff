//! The GroupInfo that comes with every commit (DS-03..06 `MLSGroupUpdate`): both the full form
//! and the PartialGroupInfo the DS completes from its own post-commit state (RTO layout).

use mimi_ds::testing::{commit_body, decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{ErrorCode, GroupInfoOption, PartialGroupInfo, RatchetTreePresence};
use mimi_ds::{InvalidGroupInfo, RejectReason, Status};
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::{MlsMessageBodyIn, Verifiable};
use tls_codec::{DeserializeBytes, Serialize, VLBytes};

/// Alice alone in a group registered with the DS.
fn solo_group() -> (TestDs, TestClient) {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
    (ds, alice)
}

/// The content of a `<V>`-prefixed encoding.
fn vl_content(value: &impl Serialize) -> VLBytes {
    VLBytes::tls_deserialize_exact_bytes(&value.tls_serialize_detached().unwrap()).unwrap()
}

/// Turns the full GroupInfo of a commit into the PartialGroupInfo a client would send.
fn to_partial(full: &GroupInfoOption) -> (PartialGroupInfo, Vec<u8>) {
    let GroupInfoOption::Full(bytes) = full else {
        panic!("expected a full GroupInfo")
    };
    let MlsMessageBodyIn::GroupInfo(vgi) = bytes.parse().unwrap().extract() else {
        panic!()
    };
    let vgi: VerifiableGroupInfo = vgi;
    let partial = PartialGroupInfo {
        ratchet_tree_presence: RatchetTreePresence::NoRatchetTree,
        group_info_extensions: vl_content(vgi.extensions()),
        signature: vl_content(vgi.signature()),
    };
    (partial, bytes.as_bytes().to_vec())
}

/// The GroupInfo the DS serves, as the `MLSMessage` a committer sends (the served
/// `GroupInfoRatchetTreeTBE` carries it bare, wire-format.md §5.4).
fn served_group_info(ds: &mut TestDs, member: &TestClient) -> Vec<u8> {
    ds.group_info(member, &member.group_id())
        .group_info_message()
        .expect("a GroupInfo")
        .as_bytes()
        .to_vec()
}

#[test]
fn partial_group_info_is_completed_to_the_exact_full_group_info() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (partial, full_bytes) = to_partial(&update.group_info);
    update.group_info = GroupInfoOption::Partial(partial);
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice.confirm_commit();
    // What the DS rebuilt is byte for byte what the committer would have sent in full.
    assert_eq!(served_group_info(&mut ds, &alice), full_bytes);
}

#[test]
fn partial_group_info_with_a_bad_signature_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (mut partial, _) = to_partial(&update.group_info);
    let mut signature = partial.signature.as_slice().to_vec();
    signature[0] ^= 1;
    partial.signature = signature.into();
    update.group_info = GroupInfoOption::Partial(partial);
    assert_eq!(
        ds.reject(
            &alice.signed(commit_body(update), ds.now_ms),
            ErrorCode::InvalidGroupInfo,
        ),
        InvalidGroupInfo::SignatureDoesNotVerify.into()
    );
}

#[test]
fn partial_group_info_with_a_ratchet_tree_presence_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (mut partial, _) = to_partial(&update.group_info);
    partial.ratchet_tree_presence = RatchetTreePresence::Present;
    update.group_info = GroupInfoOption::Partial(partial);
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    assert_eq!(out.status, Status::Rejected(ErrorCode::InvalidGroupInfo));
    assert_eq!(
        out.refusal,
        Some(InvalidGroupInfo::PartialWithRatchetTree.into())
    );
}

/// Rule R-GI-6: `group_info_extensions` that do not decode as GroupInfo extensions.
#[test]
fn partial_group_info_with_undecodable_extensions_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (mut partial, _) = to_partial(&update.group_info);
    partial.group_info_extensions = vec![0xff].into();
    update.group_info = GroupInfoOption::Partial(partial);
    let why = ds.reject(
        &alice.signed(commit_body(update), ds.now_ms),
        ErrorCode::InvalidGroupInfo,
    );
    assert!(
        matches!(
            why,
            RejectReason::InvalidGroupInfo(InvalidGroupInfo::PartialExtensions { .. })
        ),
        "{why:?}"
    );
}

#[test]
fn full_group_info_of_the_previous_epoch_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let stale = alice
        .group()
        .export_group_info(
            openmls_traits::OpenMlsProvider::crypto(&alice.provider),
            &alice.signer,
            false,
        )
        .unwrap();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    update.group_info = GroupInfoOption::Full(mimi_ds::testing::mls_bytes(&stale));
    assert_eq!(
        ds.reject(
            &alice.signed(commit_body(update), ds.now_ms),
            ErrorCode::InvalidGroupInfo,
        ),
        InvalidGroupInfo::DoesNotMatchState.into()
    );
}

#[test]
fn group_info_signed_by_another_member_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let out = ds.process(&alice.add_request(vec![bob.key_package()], ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    let tree = ds
        .group_info(&alice, &alice.group_id())
        .ratchet_tree()
        .expect("full tree")
        .clone();
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!()
    };
    bob.join_from_welcome(&welcome, &tree);

    // Bob commits, but attaches a GroupInfo Alice signed for her own (never sent) commit.
    let (alice_update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let (mut bob_update, _) = bob.stage_commit(|b| b.force_self_update(true));
    bob_update.group_info = alice_update.group_info;
    let out = ds.process(&bob.signed(commit_body(bob_update), ds.now_ms));
    assert_eq!(out.status, Status::Rejected(ErrorCode::InvalidGroupInfo));
    assert_eq!(
        out.refusal,
        Some(InvalidGroupInfo::NotSignedByCommitter.into())
    );
}

// ---------------------------------------------------------------------------------------------
// external_pub (RFC 9420 §12.4.3.2; wire-format.md §4.3.2 f)
//
// openmls always puts `external_pub` into the GroupInfos it makes, so the GroupInfos without it
// (what an mls-rs client sends unless configured otherwise) are forged here: the GroupInfoTBS of
// RFC 9420 §12.4.3 is rebuilt field by field from the real one, with the extensions replaced,
// and signed with the signer's real key (`SignWithLabel(.., "GroupInfoTBS", ..)`, §5.1.2), so
// the only thing wrong with it is the missing extension.
// ---------------------------------------------------------------------------------------------

/// `opaque x<V>`.
fn vl(bytes: &[u8]) -> Vec<u8> {
    VLBytes::from(bytes.to_vec())
        .tls_serialize_detached()
        .unwrap()
}

/// The GroupInfo in `message`, without its `external_pub` extension and signed again by
/// `signer`: the GroupInfoTBS (`group_context`, `extensions<V>`, `confirmation_tag`, `signer`)
/// and the signature.
fn tbs_without_external_pub(
    message: &mimi_ds::wire::MlsMessageBytes,
    signer: &TestClient,
) -> (
    Vec<u8>,
    Vec<u8>,
    openmls::prelude::Extensions<openmls::messages::group_info::GroupInfo>,
) {
    use openmls::prelude::{Extension, ExtensionType, Extensions};
    use openmls_traits::signatures::Signer as _;
    let MlsMessageBodyIn::GroupInfo(vgi) = message.parse().unwrap().extract() else {
        panic!("not a GroupInfo")
    };
    assert!(
        vgi.extensions().external_pub().is_some(),
        "openmls added external_pub"
    );
    let context = vgi.group_context().tls_serialize_detached().unwrap();
    let old_extensions = vgi.extensions().tls_serialize_detached().unwrap();
    let payload = vgi.unsigned_payload().unwrap();
    assert!(payload.starts_with(&[context.as_slice(), &old_extensions].concat()));
    // What follows the extensions: `MAC confirmation_tag; uint32 signer;`.
    let tag_and_signer = &payload[context.len() + old_extensions.len()..];
    let kept: Vec<Extension> = vgi
        .extensions()
        .iter()
        .filter(|e| e.extension_type() != ExtensionType::ExternalPub)
        .cloned()
        .collect();
    let extensions: Extensions<openmls::messages::group_info::GroupInfo> =
        Extensions::from_vec(kept).unwrap();
    let tbs = [
        context.as_slice(),
        &extensions.tls_serialize_detached().unwrap(),
        tag_and_signer,
    ]
    .concat();
    let sign_content = [vl(b"MLS 1.0 GroupInfoTBS"), vl(&tbs)].concat();
    let signature = signer.signer.sign(&sign_content).unwrap();
    (tbs, signature, extensions)
}

/// [`tbs_without_external_pub`] as a full GroupInfo `MLSMessage` (`mls10`, `mls_group_info`).
fn without_external_pub(
    message: &mimi_ds::wire::MlsMessageBytes,
    signer: &TestClient,
) -> mimi_ds::wire::MlsMessageBytes {
    let (tbs, signature, _) = tbs_without_external_pub(message, signer);
    let bytes = [&[0, 1, 0, 4][..], &tbs, &vl(&signature)].concat();
    let forged = mimi_ds::wire::MlsMessageBytes::from_bytes(bytes).unwrap();
    // Well-formed and correctly signed: only the extension is missing.
    let MlsMessageBodyIn::GroupInfo(vgi) = forged.parse().unwrap().extract() else {
        panic!()
    };
    assert!(vgi.extensions().external_pub().is_none());
    forged
}

/// Processes `request`, which must be refused with `invalid_group_info` for the missing
/// `external_pub`, leaving storage byte-identical.
fn refused_without_external_pub(ds: &mut TestDs, request: &[u8]) {
    assert_eq!(
        ds.reject(request, ErrorCode::InvalidGroupInfo),
        RejectReason::GroupInfoWithoutExternalPub
    );
}

#[test]
fn a_commits_full_group_info_without_external_pub_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let GroupInfoOption::Full(full) = &update.group_info else {
        panic!()
    };
    update.group_info = GroupInfoOption::Full(without_external_pub(full, &alice));
    let request = alice.signed(commit_body(update), ds.now_ms);
    refused_without_external_pub(&mut ds, &request);
    alice.discard_commit();

    // The same commit with openmls's GroupInfo is accepted, and others can join from it.
    let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
    alice.confirm_commit();
    let mut laptop = TestClient::new("alice", "alice-2", "a.example");
    let info = ds.group_info(&alice, &alice.group_id());
    assert_eq!(
        ds.process(&laptop.external_join_request(&info)).status,
        Status::Accepted
    );
}

#[test]
fn a_partial_group_info_without_external_pub_is_refused() {
    let (mut ds, mut alice) = solo_group();
    let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
    let GroupInfoOption::Full(full) = &update.group_info else {
        panic!()
    };
    let (_, signature, extensions) = tbs_without_external_pub(full, &alice);
    update.group_info = GroupInfoOption::Partial(PartialGroupInfo {
        ratchet_tree_presence: RatchetTreePresence::NoRatchetTree,
        group_info_extensions: vl_content(&extensions),
        signature: signature.into(),
    });
    let request = alice.signed(commit_body(update), ds.now_ms);
    refused_without_external_pub(&mut ds, &request);
}

#[test]
fn an_external_commits_group_info_without_external_pub_is_refused() {
    let (mut ds, alice) = solo_group();
    let mut laptop = TestClient::new("alice", "alice-2", "a.example");
    let info = ds.group_info(&alice, &alice.group_id());
    let request = laptop.external_join_request(&info);
    let mut decoded: mimi_ds::wire::DsRequest = mimi_ds::wire::decode_exact(&request).unwrap();
    let mimi_ds::wire::DsRequestBody::ExternalJoin(body) = &mut decoded.body else {
        panic!()
    };
    let GroupInfoOption::Full(full) = &body.group_update.group_info else {
        panic!()
    };
    // Signed by the joiner's key, as its new leaf's GroupInfo must be.
    body.group_update.group_info = GroupInfoOption::Full(without_external_pub(full, &laptop));
    refused_without_external_pub(&mut ds, &mimi_ds::wire::encode(&decoded).unwrap());
}

#[test]
fn create_group_refuses_a_group_info_without_external_pub() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(ds.now_ms);
    let decoded: mimi_ds::wire::DsRequest = mimi_ds::wire::decode_exact(&request).unwrap();
    let mimi_ds::wire::DsRequestBody::CreateGroup(mut body) = decoded.body else {
        panic!()
    };
    body.group_info = without_external_pub(&body.group_info, &alice);
    let forged = alice.signed(mimi_ds::wire::DsRequestBody::CreateGroup(body), ds.now_ms);
    refused_without_external_pub(&mut ds, &forged);
    // The reservation is still there: the group can be created with openmls's GroupInfo.
    assert_eq!(
        ds.process(&alice.create_group_request(ds.now_ms)).status,
        Status::Accepted
    );
}
