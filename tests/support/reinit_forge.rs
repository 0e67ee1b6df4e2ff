//! A test-only forge of the MLS messages openmls 0.9 cannot build: a member's commit (or
//! standalone proposal) carrying a ReInit proposal, built the way openmls would build it.
//!
//! Why: openmls 0.9's `CommitBuilder` silently drops ReInit proposals (`filter_proposals`,
//! `// TODO #751`) and `MlsGroup` cannot propose one, so without this the
//! `re_initialize_group` rules could only be tested on a roster edited in storage.
//!
//! What is real: the encoding is RFC 9420's, written field by field below (§6 `FramedContent`,
//! `FramedContentTBS`, `FramedContentAuthData`, `PublicMessage`, §12.4 `Commit`, §12.4.3
//! `GroupInfo`, §5.1.2 `SignWithLabel`); the proposals are openmls's own `Proposal` encodings;
//! the `FramedContentTBS` and `GroupInfoTBS` signatures are made with the member's real
//! signature key, over the GroupContext of the group as the DS serves it (`group_info`); the
//! post-commit GroupContext is the one openmls computes: the forged commit is processed and
//! merged by an openmls `PublicGroup` imported from the DS's GroupInfo and tree (with the DS's
//! pending proposals replayed), the same validation the DS runs.
//!
//! What is not: the `membership_tag` and the commit's `confirmation_tag` are MACs under the
//! epoch's membership key and the next epoch's confirmation key (RFC 9420 §6.2, §8.1). `MlsGroup`
//! exposes neither key (nor the init secret the next epoch derives from), so the forge fills
//! them with well-formed, hash-length dummies. A public group cannot check either tag: openmls's
//! `PublicGroup::process_message` passes no message secrets to
//! `DecryptedMessage::from_inbound_public_message` (only the tag's presence is checked, ValSem007),
//! and `stage_diff_internal` only feeds the received confirmation tag into the interim transcript
//! hash ("if we have private key material ... check the confirmation tag"). So the DS's verdict
//! is the one it would give a real client's commit, but real members would refuse these
//! messages (see `re_initialize_group_to_a_reserved_id_then_refuses_commits`): never deliver
//! them to member clients. The GroupInfo's `external_pub` extension, which the DS requires
//! (wire-format.md §4.3.2 f), carries a fresh, well-formed HPKE key of the ciphersuite rather
//! than the next epoch's external key (derived from its external secret, which the forge does
//! not have): nobody could join from it by external commit.

use mimi_ds::testing::{mls_bytes, TestClient, TestDs, CIPHERSUITE};
use mimi_ds::wire::{ExternalCommitInfo, GroupInfoOption, GroupUpdate, MlsMessageBytes};
use openmls::prelude::{
    MlsMessageBodyIn, ProcessedMessageContent, Proposal, ProposalStore, PublicGroup,
    ReInitProposal, Verifiable as _,
};
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer as _;
use openmls_traits::OpenMlsProvider as _;
use tls_codec::{DeserializeBytes as _, Serialize as _, VLBytes};

/// `ProtocolVersion mls10`.
const MLS10: u16 = 1;
/// `WireFormat mls_public_message`, `mls_group_info`.
const PUBLIC_MESSAGE: u16 = 1;
const GROUP_INFO: u16 = 4;
/// `SenderType member`.
const MEMBER: u8 = 1;
/// `ContentType proposal`, `commit`.
const PROPOSAL: u8 = 2;
const COMMIT: u8 = 3;
/// `ProposalOrRefType proposal`, `reference`.
const BY_VALUE: u8 = 1;
const BY_REFERENCE: u8 = 2;

/// `opaque x<V>`.
fn vl(bytes: &[u8]) -> Vec<u8> {
    VLBytes::from(bytes.to_vec())
        .tls_serialize_detached()
        .expect("encode")
}

/// A fresh HPKE public key of the harness's ciphersuite, unrelated to any epoch.
fn unrelated_hpke_public_key() -> Vec<u8> {
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let ikm = openmls_traits::random::OpenMlsRand::random_vec(&crypto, 32).expect("randomness");
    openmls_traits::crypto::OpenMlsCrypto::derive_hpke_keypair(
        &crypto,
        CIPHERSUITE.hpke_config(),
        &ikm,
    )
    .expect("HPKE key pair")
    .public
}

/// A dummy MAC (membership or confirmation tag): see the module documentation.
fn dummy_tag() -> Vec<u8> {
    vec![0; CIPHERSUITE.hash_length()]
}

/// RFC 9420 §5.1.2 `SignWithLabel(key, label, content)`: the signature over
/// `SignContent { opaque label<V> = "MLS 1.0 " + label; opaque content<V>; }`.
fn sign_with_label(member: &TestClient, label: &str, content: &[u8]) -> Vec<u8> {
    let mut sign_content = vl(format!("MLS 1.0 {label}").as_bytes());
    sign_content.extend(vl(content));
    member.signer.sign(&sign_content).expect("sign")
}

/// The group as the DS serves it (`group_info`), imported into an openmls `PublicGroup`
/// with the DS's pending proposals stored, and their ProposalRefs.
fn served_group(ds: &mut TestDs, member: &TestClient) -> (PublicGroup, Vec<Vec<u8>>) {
    let info = ds.group_info(member, &member.group_id());
    import_served(&info)
}

/// [`served_group`] from a `group_info` answer the caller fetched (a privacy-mode group's is a
/// keyed read, wire-format.md §17.4).
fn import_served(info: &ExternalCommitInfo) -> (PublicGroup, Vec<Vec<u8>>) {
    let provider = OpenMlsRustCrypto::default();
    let group_info = info.group_info.parse().expect("GroupInfo");
    let (mut group, _) = PublicGroup::from_external(
        provider.crypto(),
        provider.storage(),
        info.ratchet_tree()
            .expect("full tree")
            .parse()
            .expect("tree"),
        group_info,
        ProposalStore::new(),
    )
    .expect("import the served group");
    let mut refs = Vec::new();
    for pending in &info.pending_proposals {
        let MlsMessageBodyIn::PublicMessage(message) =
            pending.proposal.parse().expect("proposal").extract()
        else {
            panic!("pending proposals are PublicMessages")
        };
        let processed = group
            .process_message(provider.crypto(), message)
            .expect("pending proposal");
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            panic!("a pending proposal")
        };
        refs.push(queued.proposal_reference_ref().as_slice().to_vec());
        group
            .add_proposal(provider.storage(), *queued)
            .expect("store proposal");
    }
    (group, refs)
}

/// RFC 9420 §6 `FramedContent` sent by `member` at the group's current epoch, with no
/// authenticated data; `body` is the content after `content_type`.
fn framed_content(group: &PublicGroup, member: &TestClient, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut content = vl(group.group_id().as_slice());
    content.extend(group.group_context().epoch().as_u64().to_be_bytes());
    content.push(MEMBER);
    content.extend(member.leaf().to_be_bytes());
    content.extend(vl(&[])); // authenticated_data
    content.push(kind);
    content.extend_from_slice(body);
    content
}

/// RFC 9420 §6.1: the signature over `FramedContentTBS { version, wire_format, content,
/// context }` (a member sender signs the current GroupContext too).
fn content_signature(group: &PublicGroup, member: &TestClient, content: &[u8]) -> Vec<u8> {
    let mut tbs = MLS10.to_be_bytes().to_vec();
    tbs.extend(PUBLIC_MESSAGE.to_be_bytes());
    tbs.extend_from_slice(content);
    tbs.extend(
        group
            .group_context()
            .tls_serialize_detached()
            .expect("encode"),
    );
    sign_with_label(member, "FramedContentTBS", &tbs)
}

/// RFC 9420 §6 `MLSMessage { mls10, mls_public_message, PublicMessage { content, auth,
/// membership_tag } }`.
fn public_message(content: &[u8], auth: &[u8]) -> MlsMessageBytes {
    let mut message = MLS10.to_be_bytes().to_vec();
    message.extend(PUBLIC_MESSAGE.to_be_bytes());
    message.extend_from_slice(content);
    message.extend_from_slice(auth);
    message.extend(vl(&dummy_tag())); // membership_tag
    MlsMessageBytes::from_bytes(message).expect("an MLSMessage openmls decodes")
}

/// `member`'s standalone proposal at the DS's current epoch, for `proposals`.
pub(super) fn proposal(
    ds: &mut TestDs,
    member: &TestClient,
    proposal: &Proposal,
) -> MlsMessageBytes {
    let (group, _) = served_group(ds, member);
    let body = proposal.tls_serialize_detached().expect("encode");
    let content = framed_content(&group, member, PROPOSAL, &body);
    // FramedContentAuthData of a proposal: the signature only.
    public_message(&content, &vl(&content_signature(&group, member, &content)))
}

/// `member`'s commit at the DS's current epoch carrying `by_value`, and every proposal
/// pending at the DS by reference (as openmls's CommitBuilder does by default), without an
/// update path (RFC 9420 §12.4: none of Add, PreSharedKey, ReInit needs one); with the new
/// epoch's GroupInfo, signed by `member`, as the DS requires (`GroupInfoOption::Full`).
///
/// Panics if openmls's `PublicGroup` refuses the commit: the forge only builds commits that
/// are valid MLS, so a refusal by the DS is the DS's own rule.
pub(super) fn commit(ds: &mut TestDs, member: &TestClient, by_value: &[Proposal]) -> GroupUpdate {
    let (group, pending) = served_group(ds, member);
    // MlsGroup does not expose its GroupContext, but its GroupInfoTBS starts with it.
    let own = member
        .group()
        .export_group_info(member.provider.crypto(), &member.signer, false)
        .expect("group info");
    let MlsMessageBodyIn::GroupInfo(own) = mls_bytes(&own).parse().expect("parse").extract() else {
        unreachable!("a GroupInfo")
    };
    let context = group
        .group_context()
        .tls_serialize_detached()
        .expect("encode");
    assert!(
        own.unsigned_payload()
            .expect("encode")
            .starts_with(&context),
        "{} is in sync with the DS",
        member.name
    );
    build_commit(group, &pending, member, by_value)
}

/// [`commit`] from a `group_info` answer the caller fetched.
#[allow(dead_code)] // not every test file that includes the forge uses it
pub(super) fn commit_from(
    info: &ExternalCommitInfo,
    member: &TestClient,
    by_value: &[Proposal],
) -> GroupUpdate {
    let (group, pending) = import_served(info);
    build_commit(group, &pending, member, by_value)
}

/// [`commit`] at the DS's current epoch even if `member`'s `MlsGroup` is behind it (a
/// member that did not process a forged commit without update path keeps its leaf and
/// key, so it can still sign for the DS's epoch).
pub(super) fn commit_at_served_epoch(
    ds: &mut TestDs,
    member: &TestClient,
    by_value: &[Proposal],
) -> GroupUpdate {
    let (group, pending) = served_group(ds, member);
    build_commit(group, &pending, member, by_value)
}

fn build_commit(
    mut group: PublicGroup,
    pending: &[Vec<u8>],
    member: &TestClient,
    by_value: &[Proposal],
) -> GroupUpdate {
    // Commit { ProposalOrRef proposals<V>; optional<UpdatePath> path; }
    let mut proposals = Vec::new();
    for reference in pending {
        proposals.push(BY_REFERENCE);
        proposals.extend(vl(reference));
    }
    for proposal in by_value {
        proposals.push(BY_VALUE);
        proposals.extend(proposal.tls_serialize_detached().expect("encode"));
    }
    let mut body = vl(&proposals);
    body.push(0); // path: absent
    let content = framed_content(&group, member, COMMIT, &body);
    // FramedContentAuthData of a commit: the signature and the confirmation tag.
    let confirmation_tag = dummy_tag();
    let mut auth = vl(&content_signature(&group, member, &content));
    auth.extend(vl(&confirmation_tag));
    let commit = public_message(&content, &auth);

    // The post-commit state, as openmls (and so the DS) computes it.
    let provider = OpenMlsRustCrypto::default();
    let MlsMessageBodyIn::PublicMessage(message) = commit.parse().expect("commit").extract() else {
        unreachable!("built as a PublicMessage")
    };
    let processed = group
        .process_message(provider.crypto(), message)
        .expect("openmls's PublicGroup accepts the forged commit");
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        unreachable!("a commit")
    };
    group
        .merge_commit(provider.storage(), *staged)
        .expect("merge");
    assert_eq!(
        group
            .confirmation_tag()
            .tls_serialize_detached()
            .expect("encode"),
        vl(&confirmation_tag)
    );

    // RFC 9420 §12.4.3 GroupInfoTBS { GroupContext group_context; Extension extensions<V>;
    // MAC confirmation_tag; uint32 signer; } and GroupInfo { tbs..., opaque signature<V>; }.
    let mut tbs = group
        .group_context()
        .tls_serialize_detached()
        .expect("encode");
    // extensions: only external_pub (see the module documentation): Extension {
    // extension_type external_pub(4); extension_data<V> = ExternalPub { HPKEPublicKey<V> } }.
    let mut external_pub = 4u16.to_be_bytes().to_vec();
    external_pub.extend(vl(&vl(&unrelated_hpke_public_key())));
    tbs.extend(vl(&external_pub));
    tbs.extend(vl(&confirmation_tag));
    tbs.extend(member.leaf().to_be_bytes());
    let signature = sign_with_label(member, "GroupInfoTBS", &tbs);
    let mut group_info = MLS10.to_be_bytes().to_vec();
    group_info.extend(GROUP_INFO.to_be_bytes());
    group_info.extend(tbs);
    group_info.extend(vl(&signature));
    GroupUpdate {
        commit,
        group_info: GroupInfoOption::Full(
            MlsMessageBytes::from_bytes(group_info).expect("an MLSMessage openmls decodes"),
        ),
    }
}

/// A ReInit proposal to `group_id`, same version and suite, no extensions. openmls keeps
/// ReInitProposal's fields private, so it is decoded from its encoding:
/// `struct { opaque group_id<V>; ProtocolVersion version; CipherSuite cipher_suite;
/// Extension extensions<V>; }`.
pub(super) fn reinit(group_id: &[u8]) -> Proposal {
    reinit_with_extensions(group_id, &[])
}

#[allow(dead_code)] // used by the privacy-mode tests only
/// A ReInit proposal to `group_id` whose successor has these GroupContext `extensions`
/// (`Extension extensions<V>`, encoded, without the vector's length).
pub(super) fn reinit_with_extensions(group_id: &[u8], extensions: &[u8]) -> Proposal {
    let mut bytes = VLBytes::from(group_id.to_vec())
        .tls_serialize_detached()
        .expect("encode");
    bytes.extend_from_slice(&1u16.to_be_bytes()); // mls10
    bytes.extend_from_slice(&(CIPHERSUITE as u16).to_be_bytes());
    bytes.extend(vl(extensions)); // extensions<V>
    Proposal::ReInit(Box::new(
        ReInitProposal::tls_deserialize_exact_bytes(&bytes).expect("ReInit"),
    ))
}
