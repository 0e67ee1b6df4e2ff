//! A systematic sweep of damaged requests. Every kind of request the DS serves is built with
//! real openmls clients, each together with a snapshot of the DS storage taken just before it.
//! Every variant (truncations, single-bit flips, re-signatures by other senders, stale epochs)
//! is processed on a fresh clone of that snapshot and must not panic, must not return `Err`, and
//! must be refused with storage byte-identical and no fanout, unless the variant is a request
//! the DS is entitled to accept: see [`IfDamaged`] for the per-kind rule.
//!
//! The valid requests come from two groups on one DS:
//! - Alice's group: `create_group`, a `commits` adding Bob with a Welcome, `send_message`
//!   (plain, and franked; one with a malformed franking tag is refused),
//!   `update_queue_info`, signed and unauthenticated `group_info`, an update commit, a proposal
//!   with a corrupted `membership_tag` (which the DS cannot check), a Remove proposal and the
//!   commit including it; and, refused on the Remove's snapshot, a self-removal of the leaf it
//!   removes (RFC 9420 §12.2).
//! - Dave's group: `request_group_id`, `signature_public_key`, `add_users` (Erin's two
//!   clients, which registered Erin's user key), `welcome_info` (`key_package_ref` sender),
//!   `add_clients` (Dave's second client), `update_client` with a queue configuration,
//!   `proposals` signed with Erin's user key (`user_key_hash` sender), `self_remove_client`,
//!   `remove_clients`, an encrypted `group_info`, `external_join` (Dave's third client), an
//!   `external_join` resyncing Erin's client after it lost its state, `remove_users` and
//!   `delete_group`.
//! - Connection establishment (wire-format.md §14.3): a `ConnectionRequestDelivery` at the
//!   responder's provider and the acceptance's external commit with the sealed response in
//!   its authenticated data (`connection_requests_and_acceptances_damaged_are_refused`).
//!
//! - Frank's privacy-mode group (wire-format.md §17, `malformed/privacy.rs`): keyed
//!   `create_group`, commit and `send_message`, and the refusals of missing, wrong, stale and
//!   unexpected keys and of keyed bodies §17.4 forbids.
//!
//! The group-safety and room-policy refusals (wire-format.md §15) are swept on their own
//! snapshots (`group_safety_refusals_...`, `room_policy_refusals_...`).

use std::collections::BTreeMap;
use std::mem::{discriminant, Discriminant};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::franking::{mimi_content, test_franking_key};
use mimi_ds::testing::{
    assert_rejected, assert_unchanged, decode_response, Received, TestClient, TestDs, CIPHERSUITE,
};
use mimi_ds::wire::{
    decode_exact, encode, ClientQueueConfig, DsAuthData, DsErrorDetails, DsRequest, DsRequestBody,
    DsRequestType, DsResponseBody, DsSenderId, ErrorCode, ExternalCommitInfo, GroupInfoRequest,
    GroupUpdateRequest, MembershipCommitRequest, MlsMessageBytes, ProposalsRequest,
    RatchetTreeBytes, SafeAad, SafeAadItem, UpdateClientRequest, FRANK_AAD_COMPONENT_ID,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{Outcome, Status, UnixTimeMs};
use openmls::prelude::LeafNodeIndex;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::OpenMlsProvider as _;
use tls_codec::Serialize as _;

/// What a request does, which decides how it may fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `request_group_id`: unauthenticated, reserves a fresh ID.
    RequestGroupId,
    /// `signature_public_key`: unauthenticated read of the DS's key.
    SignaturePublicKey,
    CreateGroup,
    /// A commit by a member: `commits` and the per-operation commits (`add_users`,
    /// `add_clients`, `remove_users`, `remove_clients`, `update_client`, `delete_group`).
    Commit,
    /// An external commit: unauthenticated at the DS layer, signed by the joiner in MLS.
    ExternalJoin,
    /// `proposals` and `self_remove_client`.
    Proposal,
    Message,
    QueueInfo,
    GroupInfo,
    /// `welcome_info`, signed with the KeyPackage's key (`key_package_ref` sender).
    WelcomeInfo,
}

/// What a damaged variant of a valid request may do besides being refused (with storage
/// byte-identical and no fanout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfDamaged {
    /// Nothing: it is never accepted. Every byte of a signed request is covered by its
    /// ClientSignature; every byte of an external join by the joiner's signatures over the
    /// commit and the GroupInfo (whose confirmation tag the commit's must match), or frames them.
    Refused,
    /// An unauthenticated request (a read, or `request_group_id`) may be accepted if it does
    /// what the original does: the same kind of answer, the same number of fanout messages
    /// (none), and a storage change only if the original changes storage (`request_group_id`
    /// reserves an ID). E.g. a flipped bit inside `group_info`'s HPKE key is another valid
    /// X25519 key: the answer is encrypted to a key nobody holds, which is harmless.
    RefusedOrEquivalent,
}

/// The rule for a request, explicit per kind.
fn if_damaged(kind: Kind, request: &[u8]) -> IfDamaged {
    let signed = matches!(
        decode_exact::<DsRequest>(request).unwrap().auth,
        DsAuthData::ClientSignature(_)
    );
    match kind {
        // Strict for anything carrying a ClientSignature, whatever it is.
        _ if signed => IfDamaged::Refused,
        Kind::ExternalJoin => IfDamaged::Refused,
        Kind::RequestGroupId | Kind::SignaturePublicKey | Kind::GroupInfo => {
            IfDamaged::RefusedOrEquivalent
        }
        Kind::CreateGroup
        | Kind::Commit
        | Kind::Proposal
        | Kind::Message
        | Kind::QueueInfo
        | Kind::WelcomeInfo => panic!("{kind:?} requests are always signed"),
    }
}

/// What the valid request did on its snapshot, to compare accepted damaged variants with.
#[derive(Debug, Clone, Copy)]
struct Effect {
    response: Discriminant<DsResponseBody>,
    fanout: usize,
    writes: bool,
}

/// One valid request with the storage it is valid against.
struct Case {
    name: &'static str,
    kind: Kind,
    if_damaged: IfDamaged,
    request: Vec<u8>,
    /// Storage just before the request was accepted.
    storage: InMemoryStorage,
    now_ms: u64,
    /// What it did on `storage` (filled in when the case is recorded).
    effect: Option<Effect>,
    /// Whether the scenario went on from its result (otherwise it was only accepted on a
    /// clone of `storage`, and the clients forgot it).
    applied: bool,
    /// A commit for the same epoch by another member (or the same one), valid on `storage`; once
    /// it is accepted, `request` is for an old epoch.
    interloper: Option<Vec<u8>>,
    /// The group's epoch in `storage`.
    epoch: u64,
    /// The body signed with a key that is not the claimed sender's (another member's, or a
    /// non-member's), or naming a sender nobody is; for an external join, the commit wrapped
    /// in a member's ClientSignature.
    wrong_senders: Vec<Vec<u8>>,
    /// The body signed by another member as itself.
    as_other_member: Option<Vec<u8>>,
}

impl Case {
    fn new(name: &'static str, kind: Kind, epoch: u64, request: Vec<u8>, ds: &TestDs) -> Self {
        Self {
            name,
            kind,
            if_damaged: if_damaged(kind, &request),
            request,
            storage: ds.storage.clone(),
            now_ms: ds.now_ms,
            effect: None,
            applied: true,
            interloper: None,
            epoch,
            wrong_senders: Vec::new(),
            as_other_member: None,
        }
    }

    fn request_type(&self) -> DsRequestType {
        body_of(&self.request).request_type()
    }

    fn effect(&self) -> Effect {
        self.effect.expect("recorded")
    }
}

struct Scenario {
    ds: TestDs,
    cases: Vec<Case>,
    /// Well-formed, correctly signed requests the DS must refuse on their snapshot.
    refusals: Vec<Refusal>,
}

/// A request refused for what it asks, not for damage (wire-format.md §4.10 step 15).
struct Refusal {
    name: &'static str,
    code: ErrorCode,
    request: Vec<u8>,
    storage: InMemoryStorage,
    now_ms: u64,
}

impl Scenario {
    fn process(&self, case: &Case, storage: &mut InMemoryStorage, request: &[u8]) -> Outcome {
        self.ds
            .ds
            .process(UnixTimeMs(case.now_ms), request, storage)
            .expect("in-memory storage does not fail")
    }

    /// Records a case: it must be accepted on its snapshot; the scenario goes on from there.
    fn push(&mut self, case: Case) -> Outcome {
        self.record(case, true)
    }

    /// Records a case that is accepted on its snapshot but not applied.
    fn push_unapplied(&mut self, case: Case) -> Outcome {
        self.record(case, false)
    }

    fn record(&mut self, mut case: Case, apply: bool) -> Outcome {
        assert!(
            case.storage == self.ds.storage,
            "{}: stale snapshot",
            case.name
        );
        let mut storage = case.storage.clone();
        let out = self.process(&case, &mut storage, &case.request);
        assert_eq!(
            out.status,
            Status::Accepted,
            "{}: {:?}",
            case.name,
            decode_response(&out.response)
        );
        case.effect = Some(Effect {
            response: discriminant(&decode_response(&out.response).body),
            fanout: out.fanout.len(),
            writes: storage != case.storage,
        });
        case.applied = apply;
        if apply {
            self.ds.storage = storage;
        }
        self.cases.push(case);
        out
    }
}

fn body_of(request: &[u8]) -> DsRequestBody {
    decode_exact::<DsRequest>(request).unwrap().body
}

fn unauthenticated(body: DsRequestBody) -> Vec<u8> {
    encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap()
}

/// Wrong-sender variants of a signed `request`: each impostor's key claiming the request's
/// sender, and the request's signer claiming a sender nobody is (leaf 5, which no scenario
/// group reaches, or a KeyPackageRef / user key hash of the right length that names nothing).
fn wrong_senders(request: &[u8], impostors: &[&TestClient]) -> Vec<Vec<u8>> {
    let DsRequest { body, auth, .. } = decode_exact::<DsRequest>(request).unwrap();
    let DsAuthData::ClientSignature(signature) = auth else {
        panic!("unsigned")
    };
    let group_id = signature.group_id.as_slice();
    let now_ms = signature.timestamp_ms;
    let nobody = match &signature.sender_id {
        DsSenderId::LeafIndex(_) => DsSenderId::LeafIndex(5),
        DsSenderId::KeyPackageRef(r) => {
            DsSenderId::KeyPackageRef(vec![0xa5; r.as_slice().len()].into())
        }
        DsSenderId::UserKeyHash(h) => {
            DsSenderId::UserKeyHash(vec![0xa5; h.as_slice().len()].into())
        }
        other => panic!("{other:?}"),
    };
    let mut variants: Vec<Vec<u8>> = impostors
        .iter()
        .map(|c| c.signed_as(body.clone(), group_id, now_ms, signature.sender_id.clone()))
        .collect();
    variants.push(impostors[0].signed_as(body, group_id, now_ms, nobody));
    variants
}

/// A commit for the current epoch by `client`, then forgotten by it.
fn interloper(client: &mut TestClient, now_ms: u64) -> Vec<u8> {
    let request = client.update_request(now_ms);
    client.discard_commit();
    request
}

/// The only message `client` got: a Welcome.
fn welcome_of(client: &mut TestClient) -> MlsMessageBytes {
    match client.process_inbox().pop() {
        Some(Received::Welcome(welcome)) => welcome,
        other => panic!("{}: no Welcome: {other:?}", client.name),
    }
}

/// Routes an accepted commit to `members`, each of which must process it.
fn deliver(out: &Outcome, members: &mut [&mut TestClient], epoch: u64) {
    TestDs::route(out, members);
    for member in members.iter_mut() {
        match &member.process_inbox()[..] {
            [Received::Commit { removed: true, .. }] => {}
            [Received::Commit { epoch: e, .. }] if *e == epoch => {}
            other => panic!("{}: {other:?}", member.name),
        }
    }
}

fn group_info(ds: &mut TestDs, group_id: &[u8]) -> ExternalCommitInfo {
    match decode_response(
        &ds.process(&TestClient::group_info_request(group_id))
            .response,
    )
    .body
    {
        DsResponseBody::ExternalCommitInfo(info) => info,
        other => panic!("{other:?}"),
    }
}

fn welcome_tree(out: &Outcome) -> RatchetTreeBytes {
    match decode_response(&out.response).body {
        DsResponseBody::WelcomeInfo(info) => info.ratchet_tree,
        other => panic!("{other:?}"),
    }
}

/// The client forgets the proposals it made (their requests were not applied).
fn forget_proposals(client: &mut TestClient) {
    let storage = client.provider.storage();
    client
        .group
        .as_mut()
        .unwrap()
        .clear_pending_proposals(storage)
        .unwrap();
}

/// Both groups' cases on one DS, built once for all tests (building costs about as much as a
/// small sweep in debug builds).
fn scenario() -> &'static Scenario {
    static SCENARIO: OnceLock<Scenario> = OnceLock::new();
    SCENARIO.get_or_init(build_scenario)
}

fn build_scenario() -> Scenario {
    // Anonymous reads are a deployment's choice (wire-format.md §4.11); the sweep covers them
    // too, and `anonymous_reads_are_refused_by_default` the default's refusal.
    let mut config = mimi_ds::DsConfig::new("hub.example");
    config.group_info_access = mimi_ds::GroupInfoAccess::Anyone;
    let mut scenario = Scenario {
        // A franking hub (wire-format.md §15.5), so franked messages are in the sweep.
        ds: TestDs::with_config(config).franking_with(test_franking_key(1)),
        cases: Vec::new(),
        refusals: Vec::new(),
    };
    first_group(&mut scenario);
    second_group(&mut scenario);
    pseudonymous_group(&mut scenario);
    privacy::privacy_group(&mut scenario);
    scenario
}

#[path = "malformed/privacy.rs"]
mod privacy;

/// A pseudonymous group (wire-format.md §14.1) and, refused on its snapshot, Adds of
/// KeyPackages whose pseudonymous credentials break each of the hub's rules R-PSEUDO-1 to
/// R-PSEUDO-9 that an Add can break.
fn pseudonymous_group(s: &mut Scenario) {
    use mimi_ds::pseudonym::{IdentifierUri, PseudonymKind};
    use mimi_ds::testing::pseudonymous::{
        random_connection_key, random_pseudonym, PseudonymousClient,
    };
    use openmls::prelude::{BasicCredential, Credential, CredentialType};
    let newcomer = |domain: &str| {
        PseudonymousClient::new(
            "carol",
            "phone",
            domain,
            &random_pseudonym(PseudonymKind::User, domain),
            &random_connection_key(),
        )
    };
    let mut alice = newcomer("a.example");
    let group_id = s.ds.request_group_id();
    alice.create_group(&group_id, &s.ds.external_sender, true);
    let _ = s.ds.accept(&alice.client.create_group_request(s.ds.now_ms));
    let now = s.ds.now_ms;
    let alice_user =
        String::from_utf8(alice.pseudonymous.user_pseudonym.uri.as_slice().to_vec()).unwrap();
    let mut variants: Vec<(&'static str, PseudonymousClient)> = Vec::new();
    let mut undecodable = newcomer("c.example");
    let mut content = undecodable.pseudonymous.encode().unwrap();
    content.push(0);
    undecodable.set_mls_credential(Credential::new(CredentialType::Other(0xF1D7), content));
    variants.push(("pseudonymous_credential_undecodable", undecodable));
    let mut each =
        |name: &'static str, change: &dyn Fn(&mut mimi_ds::pseudonym::PseudonymousCredential)| {
            let mut client = newcomer("c.example");
            let mut credential = client.pseudonymous.clone();
            change(&mut credential);
            client.set_credential(&credential);
            variants.push((name, client));
        };
    each("pseudonym_not_canonical", &|c| {
        c.user_pseudonym.uri = b"mimi://c.example/u/not-a-uuid".to_vec().into()
    });
    each("pseudonyms_of_two_domains", &|c| {
        c.client_pseudonym = random_pseudonym(PseudonymKind::Client, "d.example")
    });
    each("pseudonymous_credential_of_another_key", &|c| {
        c.signature_public_key = vec![1; 32].into()
    });
    each("identity_link_empty", &|c| {
        c.identity_link_ciphertext = Vec::new().into()
    });
    let claimed = alice_user.replace("a.example", "c.example");
    each("user_pseudonym_under_two_domains", &|c| {
        c.user_pseudonym = IdentifierUri {
            uri: claimed.clone().into_bytes().into(),
        };
        c.client_pseudonym = random_pseudonym(PseudonymKind::Client, "c.example");
    });
    let mut reused = newcomer("a.example");
    let mut credential = reused.pseudonymous.clone();
    credential.client_pseudonym = alice.pseudonymous.client_pseudonym.clone();
    reused.set_credential(&credential);
    variants.push(("client_pseudonym_reused", reused));
    let mut real = newcomer("c.example");
    real.set_mls_credential(
        BasicCredential::new(b"mimi://c.example/d/carol/phone".to_vec()).into(),
    );
    variants.push(("real_credential_in_pseudonymous_group", real));
    for (name, client) in variants {
        let request = alice.client.add_request(vec![client.key_package()], now);
        alice.client.discard_commit();
        s.refusals.push(Refusal {
            name,
            code: ErrorCode::InvalidLeafNodeOrKeyPackage,
            request,
            storage: s.ds.storage.clone(),
            now_ms: now,
        });
    }
    // Adds of a well-formed credential whose identity link keys break rules R-LINK-1 (three
    // ways), R-LINK-3, R-LINK-4 and R-LINK-6 (wire-format.md §14.2).
    let wrapper_key = mimi_ds::testing::pseudonymous::random_wrapper_key();
    let carol = newcomer("c.example");
    let entry = |n: u8| mimi_ds::pseudonym::EncryptedIdentityLinkKey {
        ciphertext: vec![n; 48].into(),
    };
    let three =
        mimi_ds::pseudonym::group_links::add_aad_bytes(vec![entry(1), entry(2), entry(3)]).unwrap();
    let one = mimi_ds::pseudonym::group_links::add_aad_bytes(vec![entry(1)]).unwrap();
    // SafeAADs whose items are unsorted or duplicated (R-LINK-1, draft-ietf-mls-extensions-08
    // §4.9): which AddAAD would the hub store?
    let link_item = mimi_ds::pseudonym::group_links::add_aad_item(vec![entry(1)]).unwrap();
    let other_item = SafeAadItem::new(0xF1DA, vec![1, 2, 3]);
    let unsorted = SafeAad {
        aad_items: vec![other_item, link_item.clone()],
    }
    .tls_serialize_detached()
    .unwrap();
    let duplicated = SafeAad {
        aad_items: vec![link_item.clone(), link_item],
    }
    .tls_serialize_detached()
    .unwrap();
    for (name, aad, strip) in [
        ("identity_link_keys_missing", Vec::new(), true),
        (
            "authenticated_data_not_safe_aad",
            b"not a SafeAAD".to_vec(),
            true,
        ),
        ("safe_aad_items_unsorted", unsorted, true),
        ("safe_aad_items_duplicated", duplicated, true),
        ("identity_link_keys_too_many", three, true),
        ("group_info_exposes_wrapper_key", one, false),
    ] {
        let request =
            alice.add_request_with_aad(vec![carol.key_package()], aad, &wrapper_key, strip, now);
        alice.client.discard_commit();
        s.refusals.push(Refusal {
            name,
            code: ErrorCode::InvalidMlsMessage,
            request,
            storage: s.ds.storage.clone(),
            now_ms: now,
        });
    }
}

/// Alice's group: created by Alice, Bob added with a Welcome, messages, a queue update, a
/// signed and an unauthenticated GroupInfo request, an update commit, a proposal and the commit
/// including it.
fn first_group(s: &mut Scenario) {
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example"); // never a member
    let group_id = s.ds.request_group_id();
    let now = s.ds.now_ms;

    // create_group.
    alice.create_group(&group_id, &s.ds.external_sender);
    let request = alice.create_group_request(now);
    let mut case = Case::new("create_group", Kind::CreateGroup, 0, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol]);
    let _ = s.push(case);

    // An add commit with a Welcome (Alice alone: the interloper is her own other commit).
    let stale = interloper(&mut alice, now);
    let request = alice.add_request(vec![bob.key_package()], now);
    let mut case = Case::new("add_commit_with_welcome", Kind::Commit, 0, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &bob]);
    case.interloper = Some(stale);
    let out = s.push(case);
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    let tree = group_info(&mut s.ds, &group_id)
        .ratchet_tree()
        .expect("full tree")
        .clone();
    let welcome = welcome_of(&mut bob);
    bob.join_from_welcome(&welcome, &tree);

    // send_message. Signed by Bob as himself it is a valid request of Bob's: a PrivateMessage
    // hides its sender from the DS (RFC 9420 §6.3).
    let stale = interloper(&mut alice, now);
    let request = alice.message_request(b"hello bob", now);
    let mut case = Case::new("send_message", Kind::Message, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &bob]);
    case.as_other_member = Some(bob.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let out = s.push(case);
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"hello bob".to_vec())]
    );

    // A franked send_message (wire-format.md §15.5), accepted on its snapshot only; and one
    // whose frank_aad item is not a 32-octet tag, refused (R-FRANK-1).
    let content = mimi_content([7; 16], "franked");
    let request = alice.franked_message_request(&content, now);
    let mut case = Case::new("send_message_franked", Kind::Message, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &bob]);
    case.as_other_member = Some(bob.signed(body_of(&case.request), now));
    let _ = s.push_unapplied(case);
    let short_tag = SafeAad {
        aad_items: vec![SafeAadItem {
            component_id: FRANK_AAD_COMPONENT_ID,
            aad_item_data: vec![7; 31].into(),
        }],
    };
    let request =
        alice.message_request_with_aad(&content, short_tag.tls_serialize_detached().unwrap(), now);
    s.refusals.push(Refusal {
        name: "send_message_with_a_short_franking_tag",
        code: ErrorCode::MalformedRequest,
        request,
        storage: s.ds.storage.clone(),
        now_ms: now,
    });

    // update_queue_info by Bob (signed by Alice as herself it moves Alice's queue: valid).
    let queue = ClientQueueConfig {
        provider_domain: b"b2.example".to_vec().into(),
        queue: b"bob-1-new".to_vec().into(),
    };
    let request = bob.update_queue_request(queue, now);
    let mut case = Case::new("update_queue_info", Kind::QueueInfo, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &alice]);
    case.as_other_member = Some(alice.signed(body_of(&case.request), now));
    let _ = s.push(case);

    // A signed group_info request by Alice (any member may read).
    let body = DsRequestBody::GroupInfo(GroupInfoRequest {
        group_id: group_id.clone().into(),
        encryption_key: None,
    });
    let request = alice.signed(body.clone(), now);
    let mut case = Case::new("signed_group_info", Kind::GroupInfo, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &bob]);
    case.as_other_member = Some(bob.signed(body, now));
    let _ = s.push(case);

    // The same read without authentication (the embedding server's policy decides who may).
    let request = TestClient::group_info_request(&group_id);
    let _ = s.push(Case::new(
        "unauthenticated_group_info",
        Kind::GroupInfo,
        1,
        request,
        &s.ds,
    ));

    // An update commit by Bob.
    let stale = interloper(&mut alice, now);
    let request = bob.update_request(now);
    let mut case = Case::new("update_commit", Kind::Commit, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &alice]);
    case.as_other_member = Some(alice.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let out = s.push(case);
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );

    // An Update proposal by Bob whose membership_tag is corrupted: the DS holds no membership
    // key, so it accepts it (members would refuse it; wire-format.md §4.3.3). Not applied.
    let group = bob.group.as_mut().unwrap();
    let (message, _) = group
        .propose_self_update(&bob.provider, &bob.signer, Default::default())
        .unwrap();
    let mut tagged = mimi_ds::testing::mls_bytes(&message).as_bytes().to_vec();
    *tagged.last_mut().unwrap() ^= 1; // the last byte of MAC membership_tag (RFC 9420 §6.2)
    let body = DsRequestBody::Proposals(ProposalsRequest {
        proposals: vec![MlsMessageBytes::from_bytes(tagged).unwrap()],
    });
    let request = bob.signed(body.clone(), now);
    let mut case = Case::new(
        "proposal_with_corrupted_membership_tag",
        Kind::Proposal,
        2,
        request,
        &s.ds,
    );
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &alice]);
    case.as_other_member = Some(alice.signed(body, now));
    let _ = s.push_unapplied(case);
    forget_proposals(&mut bob);

    // A Remove proposal by Alice.
    let stale = interloper(&mut bob, now);
    let request = alice.propose_remove_request(bob.leaf(), now);
    let mut case = Case::new("proposal", Kind::Proposal, 2, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &bob]);
    case.as_other_member = Some(bob.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let _ = s.push(case);

    // Refused on that snapshot: Bob's own removal next to Alice's Remove of him (RFC 9420
    // §12.2: one Remove per leaf in a commit).
    let request = bob.self_remove_request(now);
    s.refusals.push(Refusal {
        name: "self_removal_next_to_a_pending_remove",
        code: ErrorCode::InvalidProposal,
        request,
        storage: s.ds.storage.clone(),
        now_ms: now,
    });
    forget_proposals(&mut bob);

    // The commit that includes the proposal (removes Bob).
    let request = alice.update_request(now);
    let mut case = Case::new(
        "commit_with_pending_proposal",
        Kind::Commit,
        2,
        request,
        &s.ds,
    );
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &bob]);
    case.as_other_member = Some(bob.signed(body_of(&case.request), now));
    let _ = s.push(case);
}

/// Dave's group: the DS-level reads, the per-operation commits, Welcome and external joins,
/// user-key authentication and self-removal.
fn second_group(s: &mut Scenario) {
    let now = s.ds.now_ms;
    let carol = TestClient::new("carol", "carol-2", "c.example"); // never a member
    let mut dave1 = TestClient::new("dave", "dave-1", "d.example");
    let mut dave2 = TestClient::new("dave", "dave-2", "d.example");
    let mut dave3 = TestClient::new("dave", "dave-3", "d.example");
    let mut erin1 = TestClient::new("erin", "erin-1", "e.example");
    let mut erin2 = TestClient::new("erin", "erin-2", "e.example");
    // Erin's user key, registered through both clients' KeyPackages.
    let user_key = Rc::new(SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap());
    erin1.user_key = Some(user_key.clone());
    erin2.user_key = Some(user_key);

    // request_group_id and signature_public_key: unauthenticated, no group.
    let request = unauthenticated(DsRequestBody::RequestGroupId);
    let out = s.push(Case::new(
        "request_group_id",
        Kind::RequestGroupId,
        0,
        request,
        &s.ds,
    ));
    let group_id = match decode_response(&out.response).body {
        DsResponseBody::GroupId(id) => id.as_slice().to_vec(),
        other => panic!("{other:?}"),
    };
    let request = unauthenticated(DsRequestBody::SignaturePublicKey);
    let _ = s.push(Case::new(
        "signature_public_key",
        Kind::SignaturePublicKey,
        0,
        request,
        &s.ds,
    ));

    dave1.create_group(&group_id, &s.ds.external_sender);
    let request = dave1.create_group_request(now);
    let _ = s.ds.accept(&request);

    // add_users: both of Erin's clients, with their Welcome (epoch 0 → 1).
    let stale = interloper(&mut dave1, now);
    let (update, welcome) =
        dave1.stage_commit(|b| b.propose_adds(vec![erin1.key_package(), erin2.key_package()]));
    let request = dave1.signed(
        DsRequestBody::AddUsers(MembershipCommitRequest {
            group_update: update,
            welcome_messages: welcome.into_iter().collect(),
        }),
        now,
    );
    let mut case = Case::new("add_users", Kind::Commit, 0, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &erin1]);
    case.interloper = Some(stale);
    let out = s.push(case);
    dave1.confirm_commit();
    TestDs::route(&out, &mut [&mut erin1, &mut erin2]);
    let welcomes = [welcome_of(&mut erin1), welcome_of(&mut erin2)];

    // welcome_info by Erin's first client (key_package_ref sender); the second joins likewise.
    let (request, processed) = erin1.welcome_info_request(&welcomes[0], now);
    let mut case = Case::new("welcome_info", Kind::WelcomeInfo, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &dave1, &erin2]);
    let out = s.push(case);
    erin1.join_with_tree(processed, &welcome_tree(&out));
    let (request, processed) = erin2.welcome_info_request(&welcomes[1], now);
    let out = s.ds.accept(&request);
    erin2.join_with_tree(processed, &welcome_tree(&out));

    // add_clients: Dave's second client, with its Welcome (1 → 2).
    let stale = interloper(&mut erin1, now);
    let (update, welcome) = dave1.stage_commit(|b| b.propose_adds(vec![dave2.key_package()]));
    let request = dave1.signed(
        DsRequestBody::AddClients(MembershipCommitRequest {
            group_update: update,
            welcome_messages: welcome.into_iter().collect(),
        }),
        now,
    );
    let mut case = Case::new("add_clients", Kind::Commit, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &erin1]);
    case.as_other_member = Some(erin1.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let out = s.push(case);
    dave1.confirm_commit();
    deliver(&out, &mut [&mut erin1, &mut erin2], 2);
    TestDs::route(&out, &mut [&mut dave2]);
    let welcome = welcome_of(&mut dave2);
    let (request, processed) = dave2.welcome_info_request(&welcome, now);
    let out = s.ds.accept(&request);
    dave2.join_with_tree(processed, &welcome_tree(&out));

    // update_client moving Erin's first client's queue (2 → 3).
    let stale = interloper(&mut dave2, now);
    let moved = ClientQueueConfig {
        provider_domain: b"e2.example".to_vec().into(),
        queue: b"erin-1-moved".to_vec().into(),
    };
    let (update, _) = erin1.stage_commit(|b| b.force_self_update(true));
    let request = erin1.signed(
        DsRequestBody::UpdateClient(UpdateClientRequest {
            group_update: update,
            queue_config: Some(moved.clone()),
        }),
        now,
    );
    let mut case = Case::new("update_client", Kind::Commit, 2, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &dave1]);
    case.as_other_member = Some(dave1.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let out = s.push(case);
    erin1.confirm_commit();
    erin1.queue = moved;
    deliver(&out, &mut [&mut dave1, &mut dave2, &mut erin2], 3);

    // Two proposals at epoch 3, each only accepted on its snapshot.
    let stale = interloper(&mut dave1, now);
    // Erin's first client proposes removing her second, signed with Erin's user key.
    let leaf = erin2.leaf();
    let proposal = erin1.propose_remove_request(leaf, now);
    let DsRequestBody::Proposals(ProposalsRequest { proposals }) = body_of(&proposal) else {
        panic!("not proposals")
    };
    let request = erin1.signed_as_user(
        DsRequestBody::Proposals(ProposalsRequest { proposals }),
        now,
    );
    let mut case = Case::new("user_key_proposals", Kind::Proposal, 3, request, &s.ds);
    // Erin's client key is not her user key.
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &dave1, &erin1]);
    case.as_other_member = Some(dave1.signed(body_of(&case.request), now));
    case.interloper = Some(stale.clone());
    let _ = s.push_unapplied(case);
    forget_proposals(&mut erin1);
    // Erin's second client removes itself.
    let request = erin2.self_remove_request(now);
    let mut case = Case::new("self_remove_client", Kind::Proposal, 3, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &dave1]);
    case.as_other_member = Some(dave1.signed(body_of(&case.request), now));
    case.interloper = Some(stale.clone());
    let _ = s.push_unapplied(case);
    forget_proposals(&mut erin2);

    // remove_clients: Erin's first client removes her second (3 → 4).
    let (update, _) = erin1.stage_commit(|b| b.propose_removals([LeafNodeIndex::new(leaf)]));
    let request = erin1.signed(
        DsRequestBody::RemoveClients(GroupUpdateRequest {
            group_update: update,
        }),
        now,
    );
    let mut case = Case::new("remove_clients", Kind::Commit, 3, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &dave1]);
    case.as_other_member = Some(dave1.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let out = s.push(case);
    erin1.confirm_commit();
    deliver(&out, &mut [&mut dave1, &mut dave2, &mut erin2], 4);

    // An unauthenticated group_info answered encrypted to the requester's HPKE key.
    let (request, _keys) = TestClient::encrypted_group_info_request(&group_id);
    let _ = s.push(Case::new(
        "encrypted_group_info",
        Kind::GroupInfo,
        4,
        request,
        &s.ds,
    ));

    // external_join: Dave's third client (a new client of a user in the group) (4 → 5).
    let info = group_info(&mut s.ds, &group_id);
    let stale = interloper(&mut dave1, now);
    let request = dave3.external_join_request(&info);
    let mut case = Case::new("external_join", Kind::ExternalJoin, 4, request, &s.ds);
    case.wrong_senders = vec![dave1.signed(body_of(&case.request), now)];
    case.interloper = Some(stale);
    let out = s.push(case);
    dave3.confirm_commit();
    deliver(&out, &mut [&mut dave1, &mut dave2, &mut erin1], 5);

    // Erin's client loses its state and resyncs by external commit (5 → 6).
    erin1.lose_state();
    let info = group_info(&mut s.ds, &group_id);
    let stale = interloper(&mut dave1, now);
    let request = erin1.external_join_request(&info);
    let mut case = Case::new(
        "external_join_resync",
        Kind::ExternalJoin,
        5,
        request,
        &s.ds,
    );
    case.wrong_senders = vec![dave2.signed(body_of(&case.request), now)];
    case.interloper = Some(stale);
    let out = s.push(case);
    erin1.confirm_commit();
    deliver(&out, &mut [&mut dave1, &mut dave2, &mut dave3], 6);
    assert_eq!(
        dave1.group().members().count(),
        4,
        "the resync replaced Erin's old leaf"
    );

    // remove_users: Dave removes Erin's only client (6 → 7).
    let stale = interloper(&mut dave2, now);
    let removed = [LeafNodeIndex::new(erin1.leaf())];
    let (update, _) = dave1.stage_commit(|b| b.propose_removals(removed));
    let request = dave1.signed(
        DsRequestBody::RemoveUsers(GroupUpdateRequest {
            group_update: update,
        }),
        now,
    );
    let mut case = Case::new("remove_users", Kind::Commit, 6, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &erin1]);
    case.as_other_member = Some(dave2.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let out = s.push(case);
    dave1.confirm_commit();
    deliver(&out, &mut [&mut dave2, &mut dave3, &mut erin1], 7);

    // delete_group, only accepted on its snapshot (the group stays for the replay test).
    let stale = interloper(&mut dave2, now);
    let request = dave1.delete_group_request(now);
    let mut case = Case::new("delete_group", Kind::Commit, 7, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&carol, &dave2]);
    case.as_other_member = Some(dave2.signed(body_of(&case.request), now));
    case.interloper = Some(stale);
    let _ = s.push_unapplied(case);
    dave1.discard_commit();
}

/// How one variant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Rejected(ErrorCode),
    /// Accepted, doing what the valid request does (only for [`IfDamaged::RefusedOrEquivalent`]).
    Equivalent,
    /// Anything else (accepted otherwise, a panic, an `Err`): recorded as a failure.
    Other,
}

/// Per-case counts of one sweep.
#[derive(Default)]
struct CaseCount {
    variants: usize,
    rejected: usize,
    equivalent: usize,
    time: Duration,
}

/// Tallies of one sweep.
#[derive(Default)]
struct Tally {
    variants: usize,
    accepted: Vec<String>,
    equivalent: Vec<String>,
    panicked: Vec<String>,
    errors: Vec<String>,
    by_code: BTreeMap<&'static str, usize>,
    /// In case order.
    per_case: Vec<(&'static str, CaseCount)>,
}

impl Tally {
    fn count(&mut self, case: &Case) -> &mut CaseCount {
        if self.per_case.last().map(|(name, _)| *name) != Some(case.name) {
            self.per_case.push((case.name, CaseCount::default()));
        }
        &mut self.per_case.last_mut().unwrap().1
    }

    /// Processes one variant on a fresh clone of the case's storage and checks the invariants.
    fn run(&mut self, scenario: &Scenario, case: &Case, label: &str, variant: &[u8]) -> Ended {
        let start = Instant::now();
        let ended = self.run_timed(scenario, case, label, variant);
        let count = self.count(case);
        count.variants += 1;
        count.time += start.elapsed();
        match ended {
            Ended::Rejected(_) => count.rejected += 1,
            Ended::Equivalent => count.equivalent += 1,
            Ended::Other => {}
        }
        ended
    }

    fn run_timed(
        &mut self,
        scenario: &Scenario,
        case: &Case,
        label: &str,
        variant: &[u8],
    ) -> Ended {
        self.variants += 1;
        let mut storage = case.storage.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            scenario
                .ds
                .ds
                .process(UnixTimeMs(case.now_ms), variant, &mut storage)
        }));
        let outcome = match result {
            Err(_) => {
                self.panicked.push(format!("{}: {label}", case.name));
                return Ended::Other;
            }
            Ok(Err(e)) => {
                self.errors.push(format!("{}: {label}: {e}", case.name));
                return Ended::Other;
            }
            Ok(Ok(outcome)) => outcome,
        };
        match outcome.status {
            Status::Rejected(code) => {
                *self.by_code.entry(code.name()).or_default() += 1;
                assert!(
                    outcome.fanout.is_empty(),
                    "{}: {label}: rejected with fanout",
                    case.name
                );
                assert!(
                    storage == case.storage,
                    "{}: {label}: rejected but storage changed",
                    case.name
                );
                match decode_response(&outcome.response).body {
                    DsResponseBody::Error(e) => assert_eq!(e.code, code, "{}: {label}", case.name),
                    other => panic!("{}: {label}: rejected with {other:?}", case.name),
                }
                Ended::Rejected(code)
            }
            Status::Accepted if case.if_damaged == IfDamaged::RefusedOrEquivalent => {
                let effect = case.effect();
                let body = decode_response(&outcome.response).body;
                let equivalent = discriminant(&body) == effect.response
                    && outcome.fanout.len() == effect.fanout
                    && (effect.writes || storage == case.storage);
                if equivalent {
                    self.equivalent.push(format!("{}: {label}", case.name));
                    Ended::Equivalent
                } else {
                    self.accepted.push(format!(
                        "{}: {label}: accepted but not equivalent: {body:?}, {} fanout, {}",
                        case.name,
                        outcome.fanout.len(),
                        if storage == case.storage {
                            "storage unchanged"
                        } else {
                            "storage changed"
                        }
                    ));
                    Ended::Other
                }
            }
            other => {
                self.accepted
                    .push(format!("{}: {label}: {other:?}", case.name));
                Ended::Other
            }
        }
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: {} variants, {} rejected, {} accepted as equivalent, {} accepted otherwise, \
             {} panics, {} errors",
            self.variants,
            self.by_code.values().sum::<usize>(),
            self.equivalent.len(),
            self.accepted.len(),
            self.panicked.len(),
            self.errors.len()
        );
        for (code, count) in &self.by_code {
            println!("    {code}: {count}");
        }
        for (name, count) in &self.per_case {
            println!(
                "    {name}: {} variants, {} rejected, {} equivalent, {:.1} s",
                count.variants,
                count.rejected,
                count.equivalent,
                count.time.as_secs_f64()
            );
        }
        assert!(self.panicked.is_empty(), "panics: {:#?}", self.panicked);
        assert!(self.errors.is_empty(), "errors: {:#?}", self.errors);
        // Only unauthenticated requests may survive damage, and only doing what they did
        // (`IfDamaged`); a signed request or an external join never does.
        assert!(
            self.accepted.is_empty(),
            "damaged requests accepted: {:#?}",
            self.accepted
        );
    }
}

/// Every request type the DS serves. Not served: `key_packages` and `connection_key_packages`
/// (a provider's directory answers them), and `re_initialize_group`, which openmls 0.9 clients
/// cannot produce (its CommitBuilder drops ReInit proposals; see `reinit.rs`).
const SERVED: [DsRequestType; 18] = [
    DsRequestType::RequestGroupId,
    DsRequestType::CreateGroup,
    DsRequestType::DeleteGroup,
    DsRequestType::AddUsers,
    DsRequestType::RemoveUsers,
    DsRequestType::AddClients,
    DsRequestType::RemoveClients,
    DsRequestType::SelfRemoveClient,
    DsRequestType::UpdateClient,
    DsRequestType::ExternalJoin,
    DsRequestType::SendMessage,
    DsRequestType::SignaturePublicKey,
    DsRequestType::Proposals,
    DsRequestType::Commits,
    DsRequestType::GroupInfo,
    DsRequestType::WelcomeInfo,
    DsRequestType::UpdateQueueInfo,
    DsRequestType::WithStateKeys,
];

#[test]
fn the_valid_requests_are_accepted_on_their_snapshots() {
    let scenario = scenario();
    for case in &scenario.cases {
        let mut storage = case.storage.clone();
        let out = scenario.process(case, &mut storage, &case.request);
        assert_eq!(
            out.status,
            Status::Accepted,
            "{}: {:?}",
            case.name,
            decode_response(&out.response)
        );
        println!(
            "{}: {} bytes, {:?}",
            case.name,
            case.request.len(),
            case.if_damaged
        );
    }
    assert_eq!(scenario.cases.len(), 28);
    // Every request type served, every sender kind and the unauthenticated requests.
    let types: Vec<DsRequestType> = scenario.cases.iter().map(Case::request_type).collect();
    for served in SERVED {
        assert!(types.contains(&served), "no {served:?} request");
    }
    let auths: Vec<String> = scenario
        .cases
        .iter()
        .map(
            |c| match decode_exact::<DsRequest>(&c.request).unwrap().auth {
                DsAuthData::Unauthenticated => "unauthenticated".to_string(),
                DsAuthData::ClientSignature(s) => format!("{:?}", discriminant(&s.sender_id)),
                other => panic!("{other:?}"),
            },
        )
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(auths.len(), 4, "{auths:?}");
    // Each case is in exactly one bit-flip sweep.
    for case in &scenario.cases {
        let sweeps = FLIP_SWEEPS
            .iter()
            .filter(|types| types.contains(&case.request_type()))
            .count();
        assert_eq!(sweeps, 1, "{}", case.name);
    }
}

/// Well-formed requests the DS refuses for what they ask: the exact code, no fanout, storage
/// unchanged; and each truncation is malformed.
#[test]
fn conflicting_proposals_are_refused() {
    let scenario = scenario();
    assert!(!scenario.refusals.is_empty());
    for refusal in &scenario.refusals {
        let mut storage = refusal.storage.clone();
        let out = assert_unchanged(&mut storage, |storage| {
            scenario
                .ds
                .ds
                .process(UnixTimeMs(refusal.now_ms), &refusal.request, storage)
                .expect("in-memory storage does not fail")
        });
        assert_eq!(
            out.status,
            Status::Rejected(refusal.code),
            "{}: {:?}",
            refusal.name,
            decode_response(&out.response)
        );
        assert_rejected(&out, refusal.code);
        for len in truncation_lengths(refusal.request.len()) {
            let out = scenario
                .ds
                .ds
                .process(
                    UnixTimeMs(refusal.now_ms),
                    &refusal.request[..len],
                    &mut storage,
                )
                .expect("in-memory storage does not fail");
            assert_eq!(
                out.status,
                Status::Rejected(ErrorCode::MalformedRequest),
                "{}: truncated to {len}",
                refusal.name
            );
        }
        assert!(storage == refusal.storage, "{}", refusal.name);
    }
}

/// Lengths to truncate a request of `len` bytes to: all of them up to 2 KiB; beyond, the first
/// and last 64 and about 512 spread in between.
fn truncation_lengths(len: usize) -> Vec<usize> {
    if len <= 2048 {
        return (0..len).collect();
    }
    let step = len.div_ceil(512);
    let mut lengths: Vec<usize> = (0..64)
        .chain((64..len - 64).step_by(step))
        .chain(len - 64..len)
        .collect();
    lengths.dedup();
    lengths
}

#[test]
fn every_truncation_is_malformed() {
    let scenario = scenario();
    let mut tally = Tally::default();
    for case in &scenario.cases {
        for len in truncation_lengths(case.request.len()) {
            let ended = tally.run(
                scenario,
                case,
                &format!("truncated to {len}"),
                &case.request[..len],
            );
            // The request's last field is its auth (the signature, or the unauthenticated tag),
            // so no prefix is a complete request.
            assert!(
                ended == Ended::Rejected(ErrorCode::MalformedRequest),
                "{}: truncated to {len}: {ended:?}",
                case.name
            );
        }
    }
    tally.report("truncations");
}

/// Byte positions to flip a bit in: every byte of a small request; otherwise the first 32
/// bytes (version, operation, leading lengths), the last 100 (ClientSignature: group, time,
/// sender, signature) and about 300 spread across the rest.
fn flip_positions(len: usize) -> Vec<usize> {
    if len <= 512 {
        return (0..len).collect();
    }
    let step = (len - 132).div_ceil(300);
    let mut positions: Vec<usize> = (0..32)
        .chain((32..len - 100).step_by(step))
        .chain(len - 100..len)
        .collect();
    positions.dedup();
    positions
}

/// The bit-flip sweeps, by request type (split to run in parallel).
const FLIP_SWEEPS: [&[DsRequestType]; 4] = [
    &[DsRequestType::Commits, DsRequestType::DeleteGroup],
    &[
        DsRequestType::AddUsers,
        DsRequestType::AddClients,
        DsRequestType::RemoveUsers,
        DsRequestType::RemoveClients,
    ],
    &[
        DsRequestType::ExternalJoin,
        DsRequestType::UpdateClient,
        DsRequestType::CreateGroup,
    ],
    &[
        DsRequestType::RequestGroupId,
        DsRequestType::SignaturePublicKey,
        DsRequestType::SendMessage,
        DsRequestType::Proposals,
        DsRequestType::SelfRemoveClient,
        DsRequestType::UpdateQueueInfo,
        DsRequestType::GroupInfo,
        DsRequestType::WelcomeInfo,
        // Privacy mode's keyed requests (wire-format.md §17.4), whatever they wrap.
        DsRequestType::WithStateKeys,
    ],
];

fn flip_sweep(sweep: usize, what: &str) -> Tally {
    let scenario = scenario();
    let mut tally = Tally::default();
    for case in scenario
        .cases
        .iter()
        .filter(|c| FLIP_SWEEPS[sweep].contains(&c.request_type()))
    {
        let len = case.request.len();
        for position in flip_positions(len) {
            // All eight bits of the header and of the tail, one bit elsewhere.
            let bits: Vec<u8> = if position < 4 || position >= len.saturating_sub(8) {
                (0..8).collect()
            } else {
                vec![(position % 8) as u8]
            };
            for bit in bits {
                let mut variant = case.request.clone();
                variant[position] ^= 1 << bit;
                tally.run(
                    scenario,
                    case,
                    &format!("bit {bit} of byte {position}/{len}"),
                    &variant,
                );
            }
        }
    }
    tally.report(what);
    tally
}

#[test]
fn single_bit_flips_in_commits_are_refused() {
    flip_sweep(0, "bit flips (commits, delete_group)");
}

#[test]
fn single_bit_flips_in_membership_commits_are_refused() {
    flip_sweep(1, "bit flips (add/remove users/clients)");
}

#[test]
fn single_bit_flips_in_joins_and_updates_are_refused() {
    flip_sweep(2, "bit flips (external joins, update_client, create_group)");
}

#[test]
fn single_bit_flips_in_other_requests_are_refused() {
    let tally = flip_sweep(3, "bit flips (other requests)");
    // What was accepted is a flip inside the encrypted read's HPKE public key (the last 32
    // bytes before the auth tag): another X25519 key, or the same one when the ignored top bit
    // (RFC 7748 §5) flips. The answer is then sealed to a key nobody holds.
    let scenario = scenario();
    let case = scenario
        .cases
        .iter()
        .find(|c| c.name == "encrypted_group_info")
        .unwrap();
    let len = case.request.len();
    let key = len - 33..len - 1;
    for label in &tally.equivalent {
        let position: usize = label
            .strip_prefix("encrypted_group_info: bit ")
            .and_then(|rest| rest.split(" of byte ").nth(1))
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("accepted as equivalent: {label}"));
        assert!(key.contains(&position), "accepted as equivalent: {label}");
    }
}

#[test]
fn wrong_senders_are_refused() {
    let scenario = scenario();
    let mut tally = Tally::default();
    for case in &scenario.cases {
        for (i, variant) in case.wrong_senders.iter().enumerate() {
            let ended = tally.run(scenario, case, &format!("wrong sender {i}"), variant);
            // A creator claiming a leaf other than the GroupInfo's signer is refused one step
            // earlier: the GroupInfo is not signed by the requester.
            let refused = ended == Ended::Rejected(ErrorCode::AuthenticationFailed)
                || (case.kind == Kind::CreateGroup
                    && ended == Ended::Rejected(ErrorCode::InvalidGroupInfo));
            assert!(refused, "{}: wrong sender {i}: {ended:?}", case.name);
        }
        let Some(variant) = &case.as_other_member else {
            continue;
        };
        let mut storage = case.storage.clone();
        let out = scenario.process(case, &mut storage, variant);
        match case.kind {
            // The MLS sender of a handshake message must be the requester.
            Kind::Commit | Kind::Proposal => {
                assert_eq!(
                    out.status,
                    Status::Rejected(ErrorCode::NotAllowed),
                    "{}: {:?}",
                    case.name,
                    decode_response(&out.response)
                );
                assert!(
                    out.fanout.is_empty() && storage == case.storage,
                    "{}",
                    case.name
                );
            }
            // A valid request of the other member's own: the DS cannot see the sender of a
            // PrivateMessage, a queue update concerns the signer's own leaf, and any member may
            // read the GroupInfo.
            Kind::Message | Kind::QueueInfo | Kind::GroupInfo => {
                assert_eq!(
                    out.status,
                    Status::Accepted,
                    "{}: {:?}",
                    case.name,
                    decode_response(&out.response)
                );
            }
            other => unreachable!("{other:?}"),
        }
    }
    tally.report("wrong senders");
    let checked: Vec<&str> = tally.per_case.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        checked.len(),
        scenario
            .cases
            .iter()
            .filter(|c| c.if_damaged == IfDamaged::Refused)
            .count(),
        "every signed request and external join has wrong-sender variants: {checked:?}"
    );
}

#[test]
fn requests_for_an_old_epoch_are_refused() {
    let scenario = scenario();
    let mut checked = Vec::new();
    for case in &scenario.cases {
        let Some(interloper) = &case.interloper else {
            continue;
        };
        let mut storage = case.storage.clone();
        let out = scenario.process(case, &mut storage, interloper);
        assert_eq!(
            out.status,
            Status::Accepted,
            "{}: interloper: {:?}",
            case.name,
            decode_response(&out.response)
        );
        let out = assert_unchanged(&mut storage, |storage| {
            scenario.process(case, storage, &case.request)
        });
        assert_eq!(
            out.status,
            Status::Rejected(ErrorCode::WrongEpoch),
            "{}: {:?}",
            case.name,
            decode_response(&out.response)
        );
        assert!(out.fanout.is_empty(), "{}", case.name);
        match decode_response(&out.response).body {
            DsResponseBody::Error(e) => assert_eq!(
                e.details,
                DsErrorDetails::CurrentEpoch(case.epoch + 1),
                "{}",
                case.name
            ),
            other => panic!("{other:?}"),
        }
        checked.push(case.request_type());
    }
    // Every request bound to an epoch: the commits of every operation, external joins,
    // proposals (by leaf and by user key), self-removals and messages.
    assert_eq!(checked.len(), 14, "{checked:?}");
    for bound in [
        DsRequestType::Commits,
        DsRequestType::AddUsers,
        DsRequestType::AddClients,
        DsRequestType::RemoveUsers,
        DsRequestType::RemoveClients,
        DsRequestType::UpdateClient,
        DsRequestType::DeleteGroup,
        DsRequestType::ExternalJoin,
        DsRequestType::Proposals,
        DsRequestType::SelfRemoveClient,
        DsRequestType::SendMessage,
    ] {
        assert!(checked.contains(&bound), "{bound:?}");
    }
}

#[test]
fn an_accepted_request_replayed_after_the_group_moved_on_is_a_retry_not_a_new_request() {
    // Byte-identical resubmission of each applied request, after all of them were accepted:
    // answered as a duplicate and never applied twice. (The signed read is answered as a
    // duplicate too today, or would be refused as a replay if it stored no response, see
    // `error_codes.rs`; the unauthenticated requests are simply answered again.)
    let scenario = scenario();
    let mut storage = scenario.ds.storage.clone();
    for case in scenario.cases.iter().filter(|c| c.applied) {
        let before = storage.clone();
        let out = scenario.process(case, &mut storage, &case.request);
        match (case.kind, case.if_damaged) {
            // A new reservation, a new ID.
            (Kind::RequestGroupId, _) => {
                assert_eq!(out.status, Status::Accepted);
                assert!(storage != before);
                storage = before.clone();
            }
            (_, IfDamaged::RefusedOrEquivalent) => assert_eq!(out.status, Status::Accepted),
            (Kind::GroupInfo, _) => assert!(
                matches!(
                    out.status,
                    Status::Duplicate | Status::Rejected(ErrorCode::ReplayedRequest)
                ),
                "{:?}",
                out.status
            ),
            _ => assert_eq!(
                out.status,
                Status::Duplicate,
                "{}: {:?}",
                case.name,
                decode_response(&out.response)
            ),
        }
        assert!(out.fanout.is_empty(), "{}", case.name);
        assert!(storage == before, "{}", case.name);
    }
}

/// wire-format.md §4.8: once a `send_message` is accepted, its body signed by another member
/// (a valid request before, see `wrong_senders_are_refused`) is `replayed_message`.
#[test]
fn an_accepted_message_resubmitted_by_another_member_is_a_replayed_message() {
    let scenario = scenario();
    let mut checked = 0;
    for case in scenario.cases.iter().filter(|c| c.kind == Kind::Message) {
        let Some(variant) = &case.as_other_member else {
            continue;
        };
        let mut storage = case.storage.clone();
        let out = scenario.process(case, &mut storage, &case.request);
        assert_eq!(out.status, Status::Accepted, "{}", case.name);
        let out = assert_unchanged(&mut storage, |storage| {
            scenario.process(case, storage, variant)
        });
        assert_eq!(
            out.status,
            Status::Rejected(ErrorCode::ReplayedMessage),
            "{}: {:?}",
            case.name,
            decode_response(&out.response)
        );
        assert!(out.fanout.is_empty(), "{}", case.name);
        checked += 1;
    }
    assert_eq!(checked, 2, "the send_message cases (plain and franked)");
}

/// Under the default `GroupInfoAccess::Members`, the sweep's anonymous reads are
/// `authentication_failed`, and storage is unchanged (wire-format.md §4.11).
#[test]
fn anonymous_reads_are_refused_by_default() {
    let scenario = scenario();
    let (identity, _) = mimi_ds::testing::ds_identity("hub.example");
    let default = mimi_ds::DeliveryService::new(
        mimi_ds::DsConfig::new("hub.example"),
        identity,
        openmls_rust_crypto::RustCrypto::default(),
    );
    let mut anonymous = 0;
    for case in &scenario.cases {
        let request: DsRequest = decode_exact(&case.request).unwrap();
        if !matches!(request.body, DsRequestBody::GroupInfo(_))
            || request.auth != DsAuthData::Unauthenticated
        {
            continue;
        }
        anonymous += 1;
        let out = assert_unchanged(&mut case.storage.clone(), |storage| {
            default
                .process(UnixTimeMs(case.now_ms), &case.request, storage)
                .unwrap()
        });
        assert_eq!(
            out.status,
            Status::Rejected(ErrorCode::AuthenticationFailed),
            "{}",
            case.name
        );
    }
    assert_eq!(anonymous, 2, "the clear and the encrypted read");
}

#[test]
/// tls_codec 0.5 panics here in debug builds (RustCrypto/formats#2414) unless its
/// debug assertions are off, as Cargo.toml arranges.
fn a_truncated_vector_is_malformed_not_a_panic() {
    let mut ds = TestDs::new("hub.example");
    // group_info(17) whose group_id<V> announces 5 bytes and carries 1.
    ds.reject(&[0x00, 0x01, 0x11, 0x05, b'a'], ErrorCode::MalformedRequest);
}

/// The group-safety refusals (a joiner taking a member's queue configuration, an Add whose
/// KeyPackage expired at `now`) as sweep cases: the attacking request itself gets its specific
/// code, and every truncation and a spread of single-bit flips of it are refused too, with no
/// panic, no fanout and storage byte-identical.
#[test]
fn group_safety_refusals_and_their_damaged_variants_are_refused() {
    let mut config = mimi_ds::DsConfig::new("hub.example");
    config.external_joins = mimi_ds::ExternalJoinPolicy::Anyone;
    let mut ds = TestDs::with_config(config);
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);

    let mut attacks = Vec::new();
    // An external joiner publishing Alice's queue configuration.
    let mut eve = TestClient::new("eve", "eve-1", "e.example");
    eve.queue = alice.queue.clone();
    let info = ds.group_info(&alice, &alice.group_id());
    let request = eve.external_join_request(&info);
    attacks.push((
        Case::new("shared_queue_join", Kind::ExternalJoin, 1, request, &ds),
        ErrorCode::NotAllowed,
    ));
    // An Add whose KeyPackage expired at the DS's `now` (not at the system clock).
    ds.now_ms = TestClient::lifetime().not_after() * 1000 + 1;
    let carol = TestClient::new("carol", "carol-1", "c.example");
    let request = alice.add_request(vec![carol.key_package()], ds.now_ms);
    alice.discard_commit();
    attacks.push((
        Case::new("expired_key_package_add", Kind::Commit, 1, request, &ds),
        ErrorCode::KeyPackageLifetime,
    ));

    let scenario = Scenario {
        ds,
        cases: Vec::new(),
        refusals: Vec::new(),
    };
    let mut tally = Tally::default();
    for (case, code) in &attacks {
        let ended = tally.run(&scenario, case, "as built", &case.request);
        assert_eq!(ended, Ended::Rejected(*code), "{}", case.name);
        for len in truncation_lengths(case.request.len()) {
            let label = format!("truncated to {len}");
            let ended = tally.run(&scenario, case, &label, &case.request[..len]);
            assert_eq!(
                ended,
                Ended::Rejected(ErrorCode::MalformedRequest),
                "{label}"
            );
        }
        // Every fourth of the sweep's positions: the valid requests are swept in full above;
        // these check that the new refusals keep the sweep's invariants.
        for position in flip_positions(case.request.len()).into_iter().step_by(4) {
            let mut variant = case.request.clone();
            variant[position] ^= 1 << (position % 8);
            tally.run(
                &scenario,
                case,
                &format!("bit flip at {position}"),
                &variant,
            );
        }
    }
    tally.report("group-safety refusals");
}

/// Connection establishment (wire-format.md §14.3) where it reaches the services: the
/// responder's external commit carrying the sealed response in its authenticated data, at the
/// hub, and the `ConnectionRequestDelivery` at the responder's provider. The valid requests are
/// accepted; every truncation is refused; every single-bit flip of the commit's authenticated
/// data is refused (the MLS signature covers it, so nobody on the way can swap the response);
/// every single-bit flip of the delivery outside its sealed request is refused, and a flip
/// inside it, which the provider cannot see, yields a request the responder refuses to open.
/// Every refusal leaves storage byte-identical.
#[test]
fn connection_requests_and_acceptances_damaged_are_refused() {
    use mimi_ds::connection::{
        seal_connection_request, seal_connection_response, ConnectionConfig,
        ConnectionEstablishmentKey, ConnectionProvider, ConnectionResponder,
        InMemoryConnectionStore, RequestContents, ResponseContents,
    };
    use mimi_ds::qs::QsStatus;
    use mimi_ds::testing::connection::{pseudonymous_client, RealIdentity};
    use openmls_rust_crypto::RustCrypto;

    let crypto = RustCrypto::default();
    // Bob's provider, his published key, and Alice's room at her hub.
    let provider = ConnectionProvider::new(
        ConnectionConfig::new("b.example"),
        &[5; 32],
        RustCrypto::default(),
    )
    .unwrap();
    let mut store = InMemoryConnectionStore::new();
    let bob_key = ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &[6; 32]).unwrap();
    let now = UnixTimeMs(mimi_ds::testing::START_MS);
    provider
        .publish(
            now,
            &mut store,
            b"bob",
            u16::from(CIPHERSUITE),
            bob_key.public_key(),
        )
        .unwrap();
    let bundle = provider.fetch(&store, b"bob").unwrap().unwrap();
    let mut config = mimi_ds::DsConfig::new("hub.example");
    config.external_joins = mimi_ds::ExternalJoinPolicy::Anyone;
    config.group_info_access = mimi_ds::GroupInfoAccess::Anyone;
    let mut ds = TestDs::with_config(config);
    let mut alice_room = pseudonymous_client("a.example");
    let room_id = ds.request_group_id();
    alice_room.create_group(&room_id, &ds.external_sender);
    let _ = ds.accept(&alice_room.create_group_request(ds.now_ms));

    let alice = RealIdentity::new("alice", "phone", "a.example");
    let alice_key = alice.signature_key();
    let (_, delivery) = seal_connection_request(
        &crypto,
        &crypto,
        &alice.signer,
        &RequestContents {
            credential: &alice.credential,
            signature_key: &alice_key,
            connection_room_id: &room_id,
            identity_link_wrapper_key: &[1; 32],
            connection_key: &alice.connection_key,
            connection_token: &alice.connection_token,
        },
        &bundle,
        "a.example",
    )
    .unwrap();
    let delivery_bytes = encode(&delivery).unwrap();
    let sealed_len = encode(&delivery.sealed_request).unwrap().len();
    let sealed_from = delivery_bytes.len() - sealed_len;

    // The delivery: truncations and every single-bit flip.
    let deliver = |bytes: &[u8]| {
        let mut after = store.clone();
        let outcome = provider
            .deliver(now, bytes, Some("a.example"), &mut after)
            .unwrap();
        (outcome, after)
    };
    let (valid, with_request) = deliver(&delivery_bytes);
    assert_eq!(valid.status, QsStatus::Accepted);
    for len in 0..delivery_bytes.len() {
        let (outcome, after) = deliver(&delivery_bytes[..len]);
        assert!(
            matches!(outcome.status, QsStatus::Rejected(_)),
            "truncated to {len}"
        );
        assert!(after == store, "truncated to {len}: store changed");
    }
    let mut responder = ConnectionResponder::new(bob_key);
    let mut accepted_flips = 0;
    for position in 0..delivery_bytes.len() {
        let mut bytes = delivery_bytes.clone();
        bytes[position] ^= 0x01;
        let (outcome, after) = deliver(&bytes);
        if let QsStatus::Rejected(_) = outcome.status {
            assert!(after == store, "flip at {position}: store changed");
            continue;
        }
        assert!(
            position >= sealed_from,
            "flip at {position} outside the sealed request"
        );
        accepted_flips += 1;
        let stored = provider.inbox(&after, b"bob", 0, 10).unwrap();
        assert!(
            responder.open(&crypto, "b.example", &stored[0]).is_err(),
            "flip at {position} opened"
        );
    }
    assert!(
        accepted_flips > 0,
        "flips inside the ciphertext reach the inbox"
    );
    let stored = provider.inbox(&with_request, b"bob", 0, 10).unwrap();
    let opened = responder.open(&crypto, "b.example", &stored[0]).unwrap();

    // The acceptance: Bob's external commit with the sealed response in its AAD.
    let bob = RealIdentity::new("bob", "phone", "b.example");
    let bob_signature_key = bob.signature_key();
    let aad = seal_connection_response(
        &crypto,
        &bob.signer,
        &opened,
        &ResponseContents {
            credential: &bob.credential,
            signature_key: &bob_signature_key,
            connection_key: &bob.connection_key,
            connection_token: &bob.connection_token,
        },
    )
    .unwrap();
    let mut bob_room = pseudonymous_client("b.example");
    let info = match decode_response(
        &ds.process(&TestClient::group_info_request(&room_id))
            .response,
    )
    .body
    {
        DsResponseBody::ExternalCommitInfo(info) => info,
        other => panic!("no ExternalCommitInfo: {other:?}"),
    };
    let join = bob_room.external_join_request_with_aad(&info, aad.clone());
    let aad_at = join
        .windows(aad.len())
        .position(|w| w == aad.as_slice())
        .expect("the AAD travels in the commit");
    let snapshot = ds.storage.clone();
    let process = |bytes: &[u8]| {
        let mut storage = snapshot.clone();
        let out = ds
            .ds
            .process(UnixTimeMs(ds.now_ms), bytes, &mut storage)
            .unwrap();
        (out, storage)
    };
    let (out, _) = process(&join);
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    for len in truncation_lengths(join.len()) {
        let (out, storage) = process(&join[..len]);
        assert!(
            matches!(out.status, Status::Rejected(_)),
            "truncated to {len}"
        );
        assert!(out.fanout.is_empty() && storage == snapshot);
    }
    for position in aad_at..aad_at + aad.len() {
        for bit in [0x01, 0x80] {
            let mut bytes = join.clone();
            bytes[position] ^= bit;
            let (out, storage) = process(&bytes);
            assert!(
                matches!(out.status, Status::Rejected(_)),
                "AAD flip at {position} accepted"
            );
            assert!(out.fanout.is_empty() && storage == snapshot);
        }
    }
}

/// The room-policy refusals (wire-format.md §15) as sweep cases: a member's plain commit
/// removing the admin, an admin's commit installing a malformed policy, and a standalone
/// proposal naming an undefined role each get their code, and every truncation and a spread
/// of single-bit flips of them are refused too, with no panic, no fanout and storage
/// byte-identical.
#[test]
fn room_policy_refusals_and_their_damaged_variants_are_refused() {
    use mimi_ds::testing::policy::{admin_policy, raw, with_participant};
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let policy = admin_policy(&[&alice], &[&bob]);
    ds.create_policy_room(&mut alice, &mut [&mut bob], &policy);

    let mut attacks = Vec::new();
    let request = bob.remove_request(&[alice.leaf()], ds.now_ms);
    bob.discard_commit();
    attacks.push((
        Case::new("member_removes_admin", Kind::Commit, 1, request, &ds),
        ErrorCode::NotAllowed,
    ));
    let mut malformed = raw(&policy);
    malformed[0].1.truncate(3);
    let request = alice.policy_commit_request(&malformed, |b| b, ds.now_ms);
    alice.discard_commit();
    attacks.push((
        Case::new("malformed_roles_list", Kind::Commit, 1, request, &ds),
        ErrorCode::InvalidGroupInfo,
    ));
    let carol = TestClient::new("carol", "carol-1", "c.example");
    let unknown_role = with_participant(&policy, &carol, 9);
    let request = alice.policy_proposal_request(&raw(&unknown_role), ds.now_ms);
    attacks.push((
        Case::new("unknown_role_proposal", Kind::Proposal, 1, request, &ds),
        ErrorCode::InvalidGroupInfo,
    ));

    sweep_policy_attacks(ds, &attacks, "room-policy refusals");
}

/// Runs each attack as built (refused with its code), every truncation of it
/// (`malformed_request`) and a spread of single-bit flips, each on its own snapshot.
fn sweep_policy_attacks(ds: TestDs, attacks: &[(Case, ErrorCode)], what: &str) {
    let scenario = Scenario {
        ds,
        cases: Vec::new(),
        refusals: Vec::new(),
    };
    let mut tally = Tally::default();
    for (case, code) in attacks {
        let ended = tally.run(&scenario, case, "as built", &case.request);
        assert_eq!(ended, Ended::Rejected(*code), "{}", case.name);
        for len in truncation_lengths(case.request.len()) {
            let label = format!("truncated to {len}");
            let ended = tally.run(&scenario, case, &label, &case.request[..len]);
            assert_eq!(
                ended,
                Ended::Rejected(ErrorCode::MalformedRequest),
                "{label}"
            );
        }
        for position in flip_positions(case.request.len()).into_iter().step_by(4) {
            let mut variant = case.request.clone();
            variant[position] ^= 1 << (position % 8);
            tally.run(
                &scenario,
                case,
                &format!("bit flip at {position}"),
                &variant,
            );
        }
    }
    tally.report(what);
}

/// The room-parameter refusals (wire-format.md §15.4) as sweep cases: a second client of a
/// user where the base policy leaves `multi_device` false (R-POL-30), and an application
/// message from a leaf older than `leaf_node_update_time` allows (R-POL-29); each damaged
/// like the other room-policy refusals.
#[test]
fn room_parameter_refusals_and_their_damaged_variants_are_refused() {
    use mimi_ds::policy::{BaseRoomPolicy, Flag, MinDefaultMaxTime, OperationalParameters};
    use mimi_ds::testing::policy::admin_policy;
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let mut policy = admin_policy(&[&alice], &[&bob]);
    policy.base = Some(BaseRoomPolicy::default());
    policy.operational = Some(OperationalParameters {
        handshake_formats: vec![1],
        external_commit_allowed: Flag(true),
        leaf_node_update_time: MinDefaultMaxTime {
            minimum_time: 0,
            default_time: 60,
            maximum_time: 60,
        },
        ..OperationalParameters::default()
    });
    ds.create_policy_room(&mut alice, &mut [&mut bob], &policy);

    let mut attacks = Vec::new();
    let bob2 = TestClient::new("bob", "bob-2", "b.example");
    let request = bob.add_request(vec![bob2.policy_key_package()], ds.now_ms);
    bob.discard_commit();
    attacks.push((
        Case::new("second_device", Kind::Commit, 1, request, &ds),
        ErrorCode::NotAllowed,
    ));
    ds.advance(61_000);
    let request = bob.message_request(b"stale", ds.now_ms);
    attacks.push((
        Case::new("stale_leaf_message", Kind::Message, 1, request, &ds),
        ErrorCode::NotAllowed,
    ));
    sweep_policy_attacks(ds, &attacks, "room-parameter refusals");
}

/// The KeyPackage directory's requests (wire-format.md §14.4), damaged: every truncation of an
/// upload and of a claim is `malformed_request` with storage byte-identical; every bit flip of
/// the sweep's positions is refused with storage byte-identical, or is a request the directory
/// may serve (another claim ID, another client index of the same set) and is served.
#[test]
fn key_package_directory_requests_damaged() {
    use mimi_ds::directory::SetPurpose;
    use mimi_ds::testing::directory::{DirectoryUser, TestDirectory};

    let mut base = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 2, "b.example");
    base.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
    let pseudonym = bob.pseudonym(0, 'u');
    let requests = [
        (
            "upload",
            bob.upload(vec![bob.entry(
                SetPurpose::Group,
                0,
                bob.key_package(0, &pseudonym, false),
            )]),
        ),
        (
            "claim",
            bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)"),
        ),
    ];
    let (mut refused, mut served) = (0, 0);
    for (name, request) in &requests {
        let run = |bytes: &[u8]| {
            let mut directory = TestDirectory {
                storage: base.storage.clone(),
                ..TestDirectory::default()
            };
            let outcome = if *name == "upload" {
                directory.upload(bytes)
            } else {
                directory.claim(bytes)
            };
            if matches!(outcome.status, Status::Rejected(_)) {
                assert!(
                    directory.storage == base.storage,
                    "{name}: a refusal changes nothing"
                );
            }
            outcome.status
        };
        assert_eq!(run(request), Status::Accepted, "{name} as built");
        for len in truncation_lengths(request.len()) {
            assert_eq!(
                run(&request[..len]),
                Status::Rejected(ErrorCode::MalformedRequest),
                "{name} truncated to {len}"
            );
        }
        for position in flip_positions(request.len()) {
            let mut variant = request.clone();
            variant[position] ^= 1 << (position % 8);
            match run(&variant) {
                Status::Rejected(_) => refused += 1,
                _ => served += 1,
            }
        }
    }
    assert!(refused > 10 * served, "{refused} refused, {served} served");
}

/// The client-facing connection endpoints (wire-format.md §14.3.2), damaged: a fetch of
/// Bob's key and his signed publish, read and acknowledge, each built as a client does. The
/// valid requests are accepted; every truncation is `malformed_request`; every bit flip of the
/// sweep's positions is refused with a specific code (a flip in the signed fields breaks the
/// signature, rule R-CONN-8; one in a fetch's name asks for nobody). A replayed publish and
/// acknowledge, and the same requests signed by another key, change nothing. Every refusal
/// answers a `ConnectionServiceResponse` error with the status's code and leaves the
/// connection store identical.
#[test]
fn connection_endpoint_requests_damaged() {
    use mimi_ds::connection::{
        seal_connection_request, ConnectionClientRequest, ConnectionClientRequestBody,
        ConnectionConfig, ConnectionEstablishmentKey, ConnectionKeyFetch, ConnectionProvider,
        ConnectionServiceResponse, ConnectionServiceResponseBody, InMemoryConnectionStore,
        RequestContents,
    };
    use mimi_ds::qs::QsStatus;
    use mimi_ds::testing::connection::RealIdentity;
    use openmls_rust_crypto::RustCrypto;
    use openmls_traits::types::SignatureScheme;

    let crypto = RustCrypto::default();
    let provider = ConnectionProvider::new(
        ConnectionConfig::new("b.example"),
        &[5; 32],
        RustCrypto::default(),
    )
    .unwrap();
    let now = UnixTimeMs(mimi_ds::testing::START_MS);
    let (bob_owner, mallory) = (
        SignatureKeyPair::new(SignatureScheme::ED25519).unwrap(),
        SignatureKeyPair::new(SignatureScheme::ED25519).unwrap(),
    );
    let name = b"bob@b.example";
    let key =
        |seed: u8| ConnectionEstablishmentKey::derive(&crypto, CIPHERSUITE, &[seed; 32]).unwrap();
    let publish = |seed: u8| ConnectionClientRequestBody::Publish {
        ciphersuite: u16::from(CIPHERSUITE),
        connection_establishment_key: key(seed).public_key().to_vec().into(),
    };
    let signed_at = |body: ConnectionClientRequestBody, owner: &SignatureKeyPair, at: u64| {
        let request =
            ConnectionClientRequest::signed(body, name, &owner.to_public_vec(), at, owner).unwrap();
        encode(&request).unwrap()
    };
    let signed =
        |body: ConnectionClientRequestBody, owner: &SignatureKeyPair| signed_at(body, owner, now.0);
    let fetch = encode(&ConnectionKeyFetch {
        version: mimi_ds::wire::PROTOCOL_VERSION_MIMI_DS10,
        user: name.to_vec().into(),
    })
    .unwrap();
    // `(status, the ConnectionServiceResponse body, the store after)` of `bytes` at `path`.
    let post = |path: &str, bytes: &[u8], store: &InMemoryConnectionStore| {
        let mut after = store.clone();
        let outcome = if path == "/connection_key" {
            provider.fetch_request(bytes, &after).unwrap()
        } else {
            provider.client_request(now, bytes, &mut after).unwrap()
        };
        let response: ConnectionServiceResponse = decode_exact(&outcome.response).unwrap();
        if let QsStatus::Rejected(code) = outcome.status {
            assert!(
                matches!(&response.body, ConnectionServiceResponseBody::Error(e) if e.code == code),
                "{path}: the answer carries the refusal's code"
            );
            assert!(after == *store, "{path}: a refusal changed the store");
        }
        (outcome.status, response.body, after)
    };

    // Bob publishes his key himself (a second ago, so that the swept publish is newer; rule
    // R-CONN-9), and Alice's request reaches his inbox.
    let empty = InMemoryConnectionStore::new();
    let (status, _, mut base) = post(
        "/connection_operation",
        &signed_at(publish(1), &bob_owner, now.0 - 1000),
        &empty,
    );
    assert_eq!(status, QsStatus::Accepted);
    let ConnectionServiceResponseBody::KeyBundle(bundle) = post("/connection_key", &fetch, &base).1
    else {
        panic!("no bundle")
    };
    let alice = RealIdentity::new("alice", "phone", "a.example");
    let alice_key = alice.signature_key();
    let (_, delivery) = seal_connection_request(
        &crypto,
        &crypto,
        &alice.signer,
        &RequestContents {
            credential: &alice.credential,
            signature_key: &alice_key,
            connection_room_id: b"room",
            identity_link_wrapper_key: &[1; 32],
            connection_key: &alice.connection_key,
            connection_token: &alice.connection_token,
        },
        &bundle,
        "a.example",
    )
    .unwrap();
    let outcome = provider
        .deliver(
            now,
            &encode(&delivery).unwrap(),
            Some("a.example"),
            &mut base,
        )
        .unwrap();
    assert_eq!(outcome.status, QsStatus::Accepted);

    let acknowledge = ConnectionClientRequestBody::Acknowledge { up_to_sequence: 1 };
    let read = ConnectionClientRequestBody::Read {
        from_sequence: 0,
        max_requests: 10,
    };
    let requests = [
        ("fetch", "/connection_key", fetch.clone()),
        (
            "publish",
            "/connection_operation",
            signed(publish(2), &bob_owner),
        ),
        (
            "read",
            "/connection_operation",
            signed(read.clone(), &bob_owner),
        ),
        (
            "acknowledge",
            "/connection_operation",
            signed(acknowledge.clone(), &bob_owner),
        ),
    ];
    let specific = [
        ErrorCode::MalformedRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::AuthenticationFailed,
        ErrorCode::StaleTimestamp,
        ErrorCode::UnknownQueue,
    ];
    for (what, path, request) in &requests {
        let (status, body, after) = post(path, request, &base);
        assert_eq!(status, QsStatus::Accepted, "{what} as built");
        // A read and a fetch write nothing; a publish and an acknowledge do.
        assert_eq!(after == base, matches!(*what, "fetch" | "read"), "{what}");
        assert!(!matches!(body, ConnectionServiceResponseBody::Error(_)));
        for len in truncation_lengths(request.len()) {
            let (status, _, _) = post(path, &request[..len], &base);
            assert_eq!(
                status,
                QsStatus::Rejected(ErrorCode::MalformedRequest),
                "{what} truncated to {len}"
            );
        }
        for position in flip_positions(request.len()) {
            let mut variant = request.clone();
            variant[position] ^= 1 << (position % 8);
            let (status, _, _) = post(path, &variant, &base);
            assert!(
                matches!(status, QsStatus::Rejected(code) if specific.contains(&code)),
                "{what}: flip at {position}: {status:?}"
            );
        }
    }

    // Replays: a replayed publish is refused (rule R-CONN-9: no newer than the stored one),
    // an acknowledge applied again is accepted; neither changes anything more.
    for (what, body, replayed) in [
        (
            "publish",
            publish(2),
            QsStatus::Rejected(ErrorCode::ReplayedMessage),
        ),
        ("acknowledge", acknowledge.clone(), QsStatus::Accepted),
    ] {
        let request = signed(body, &bob_owner);
        let (_, _, once) = post("/connection_operation", &request, &base);
        let (status, _, twice) = post("/connection_operation", &request, &once);
        assert_eq!(status, replayed, "{what} replayed");
        assert!(twice == once, "{what} replayed: the store changed");
    }
    // Regression (rule R-CONN-9): Bob's first publication, replayed inside the freshness
    // window after he replaced his key, used to bring the replaced key back.
    let (_, _, replaced) = post(
        "/connection_operation",
        &signed(publish(2), &bob_owner),
        &base,
    );
    let first = signed_at(publish(1), &bob_owner, now.0 - 1000);
    let (status, _, after) = post("/connection_operation", &first, &replaced);
    assert_eq!(status, QsStatus::Rejected(ErrorCode::ReplayedMessage));
    assert!(
        after == replaced,
        "the replayed publication changed the store"
    );
    // Another key signs for Bob's name: refused, nothing changed.
    for body in [publish(3), read, acknowledge] {
        let (status, _, _) = post("/connection_operation", &signed(body, &mallory), &base);
        assert_eq!(status, QsStatus::Rejected(ErrorCode::AuthenticationFailed));
    }
}
