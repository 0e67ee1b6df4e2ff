//! Fuzz bodies (feature `fuzzing`), so the targets under `fuzz/` are thin shims and the logic
//! is compiled and linted with the library and cannot drift from it. They panic when an
//! invariant breaks: that is how a fuzzer reports it.
//!
//! * `decode_*`: whatever decodes re-encodes to the same bytes.
//! * [`process_bytes`]: arbitrary bytes against a DS whose storage holds real groups; no panic,
//!   a rejected request changes nothing and fans out nothing, and after an accepted one no two
//!   members of a group share a queue configuration.
//! * [`process_mutated`]: a valid request from real clients, mutated and then **re-signed**
//!   with its sender's key, so mutations reach MLS validation instead of stopping at the
//!   signature; the same invariants.
//! * [`sequence`]: a sequence of operations by real clients, valid and mutated, with the
//!   group invariants checked after each step.
//! * [`qs_bytes`], [`route_bytes`]: the Queueing Service and the transport router
//!   (`fuzzing/provider.rs`).
//! * [`decode_connection`], [`connection_bytes`]: connection establishment
//!   (`fuzzing/connection.rs`).
//! * [`decode_room_policy`], [`policy_change`]: room policy (`fuzzing/policy.rs`).
//! * [`directory_bytes`], [`decode_directory`]: the KeyPackage directory
//!   (`fuzzing/directory.rs`) and its codecs.
//! * [`decode_pseudonymous`]: the MIMIMI codecs (`fuzzing/pseudonym.rs`).
//! * [`privacy_keys`]: privacy mode's refusals of missing, wrong, stale and unexpected state
//!   keys (`fuzzing/privacy.rs`).

mod connection;
mod connection_endpoints;
mod directory;
mod policy;
mod privacy;
mod provider;
mod pseudonym;

pub use connection::{connection_bytes, decode_connection};
pub use directory::directory_bytes;
pub use policy::{decode_room_policy, policy_change};
pub use privacy::privacy_keys;
pub use provider::{qs_bytes, route_bytes};
pub use pseudonym::decode_pseudonymous;

use std::sync::OnceLock;

use openmls::prelude::{
    ContentType, Lifetime, MlsGroup, MlsMessageBodyIn, Proposal, SignaturePublicKey,
};
use openmls_basic_credential::SignatureKeyPair;

use crate::state::Roster;
use crate::storage::{InMemoryStorage, RecordKind};
use crate::testing::franking::{mimi_content, test_franking_key};
use crate::testing::{decode_response, Received, TestClient, TestDs};
use crate::wire::{
    decode_exact, encode, ClientSignature, DsAuthData, DsRequest, DsRequestBody, DsResponse,
    DsResponseBody, QsClientRequest, QsClientResponse, QueueInfoPlaintext, QueueingServiceRequest,
    QueueingServiceResponse, ReportedMessage, SafeAad, SafeAadItem, FRANK_AAD_COMPONENT_ID,
};
use crate::{Status, UnixTimeMs};

/// Decodes `data` as `T`; whatever decodes must re-encode to exactly `data` (strict decoding
/// means every value has one encoding).
fn roundtrip<T: tls_codec::DeserializeBytes + tls_codec::Serialize>(data: &[u8]) {
    if let Ok(value) = decode_exact::<T>(data) {
        let encoded = encode(&value).expect("a decoded value re-encodes");
        assert_eq!(encoded, data, "decode/encode is not the identity");
    }
}

/// Fuzz body: `DSRequest` decoding.
pub fn decode_request(data: &[u8]) {
    roundtrip::<DsRequest>(data);
}

/// Fuzz body: `DSResponse` decoding, and the `ReportedMessage` of an abuse report
/// (wire-format.md §15.7), which also goes through the hub's check without panicking.
pub fn decode_response_bytes(data: &[u8]) {
    roundtrip::<DsResponse>(data);
    roundtrip::<ReportedMessage>(data);
    let _ = fixture().ds.ds.verify_reported_message_bytes(data);
}

/// Fuzz body: decoding of the KeyPackage directory's messages (wire-format.md §14.4):
/// `KeyPackageUploadRequest`/`Response`, the claim bodies and `ClaimedKeyPackageSet`.
pub fn decode_directory(data: &[u8]) {
    roundtrip::<crate::directory::KeyPackageUploadRequest>(data);
    roundtrip::<crate::directory::KeyPackageUploadResponse>(data);
    roundtrip::<crate::wire::KeyPackageClaimRequest>(data);
    roundtrip::<crate::wire::ClaimedKeyPackageSet>(data);
}

/// Fuzz body: decoding of everything a Queueing Service reads and writes:
/// `QueueingServiceRequest`/`Response`, `QSClientRequest`/`Response`, `QueueInfoPlaintext`.
pub fn decode_queueing_service(data: &[u8]) {
    roundtrip::<QueueingServiceRequest>(data);
    roundtrip::<QueueingServiceResponse>(data);
    roundtrip::<QsClientRequest>(data);
    roundtrip::<QsClientResponse>(data);
    roundtrip::<QueueInfoPlaintext>(data);
}

/// A copy of a client's signature key, to re-sign mutated requests.
fn copy_key(key: &SignatureKeyPair) -> SignatureKeyPair {
    // The key pair is TLS-serialisable, which is the public way to copy it.
    let bytes = tls_codec::Serialize::tls_serialize_detached(key).expect("a key pair encodes");
    tls_codec::DeserializeBytes::tls_deserialize_exact_bytes(&bytes).expect("a key pair decodes")
}

/// A DS holding real groups (a 3-member group at epoch 2, a 7-member group at epoch 1, a
/// reserved ID), and valid requests against exactly that state, each with the key that signed
/// it. Built once per fuzzing process.
struct Fixture {
    ds: TestDs,
    group_ids: Vec<Vec<u8>>,
    requests: Vec<(Vec<u8>, Option<SignatureKeyPair>)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::build)
}

/// Runs the request, asserts it was accepted, and delivers its fanout.
fn accept(ds: &mut TestDs, request: &[u8], clients: &mut [&mut TestClient]) {
    let out = ds.process(request);
    assert!(
        matches!(out.status, Status::Accepted),
        "fixture request refused: {:?}",
        decode_response(&out.response)
    );
    TestDs::route(&out, clients);
}

/// A client joins from the Welcome in its inbox, fetching its tree with `welcome_info`.
fn join(ds: &mut TestDs, client: &mut TestClient) {
    let Some(Received::Welcome(welcome)) = client.process_inbox().pop() else {
        panic!("no Welcome delivered")
    };
    let (request, processed) = client.welcome_info_request(&welcome, ds.now_ms);
    let DsResponseBody::WelcomeInfo(info) = decode_response(&ds.process(&request).response).body
    else {
        panic!("welcome_info refused")
    };
    client.join_with_tree(processed, &info.ratchet_tree);
}

impl Fixture {
    fn build() -> Self {
        // A franking hub (wire-format.md §15.5), so franked messages are among the seeds.
        let mut ds = TestDs::new("hub.example").franking_with(test_franking_key(3));
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let mut bob = TestClient::new("bob", "bob-1", "b.example");
        let mut carol = TestClient::new("carol", "carol-1", "c.example");
        let group_a = ds.request_group_id();
        alice.create_group(&group_a, &ds.external_sender);
        let request = alice.create_group_request(ds.now_ms);
        accept(&mut ds, &request, &mut []);
        let request = alice.add_request(vec![bob.key_package(), carol.key_package()], ds.now_ms);
        accept(&mut ds, &request, &mut [&mut bob, &mut carol]);
        alice.confirm_commit();
        join(&mut ds, &mut bob);
        join(&mut ds, &mut carol);
        let request = bob.update_request(ds.now_ms);
        accept(&mut ds, &request, &mut [&mut alice, &mut carol]);
        bob.confirm_commit();
        alice.process_inbox();
        carol.process_inbox();

        // A second, larger group whose members never join (the DS needs only their leaves),
        // with one Welcome joiner that has not fetched its tree yet.
        let mut owner = TestClient::new("olga", "olga-1", "o.example");
        let mut frank = TestClient::new("frank", "frank-1", "f.example");
        let group_b = ds.request_group_id();
        owner.create_group(&group_b, &ds.external_sender);
        let request = owner.create_group_request(ds.now_ms);
        accept(&mut ds, &request, &mut []);
        let mut key_packages: Vec<_> = (0..5)
            .map(|i| {
                TestClient::new(&format!("user{i}"), &format!("client{i}"), "u.example")
                    .key_package()
            })
            .collect();
        key_packages.push(frank.key_package());
        let request = owner.add_request(key_packages, ds.now_ms);
        accept(&mut ds, &request, &mut [&mut frank]);
        owner.confirm_commit();

        // A reserved ID and a client ready to create a group under it.
        let mut gina = TestClient::new("gina", "gina-1", "g.example");
        let reserved = ds.request_group_id();
        gina.create_group(&reserved, &ds.external_sender);

        ds.advance(1000);
        let now = ds.now_ms;
        let key = |c: &TestClient| Some(copy_key(&c.signer));
        let mut requests = vec![
            (alice.message_request(b"fuzz", now), key(&alice)),
            (
                alice.franked_message_request(&mimi_content([3; 16], "fuzz"), now),
                key(&alice),
            ),
            // A frank_aad item that is not a 32-octet tag: refused (R-FRANK-1).
            (
                alice.message_request_with_aad(
                    b"fuzz",
                    encode(&SafeAad {
                        aad_items: vec![SafeAadItem {
                            component_id: FRANK_AAD_COMPONENT_ID,
                            aad_item_data: vec![3; 31].into(),
                        }],
                    })
                    .expect("encode SafeAAD"),
                    now,
                ),
                key(&alice),
            ),
            (
                alice.signed_group_info_request(&group_a, None, now),
                key(&alice),
            ),
            // Anonymous reads are refused under the default `GroupInfoAccess::Members`.
            (TestClient::group_info_request(&group_a), None),
            (TestClient::encrypted_group_info_request(&group_a).0, None),
            (gina.create_group_request(now), key(&gina)),
        ];
        let Some(Received::Welcome(welcome)) = frank.process_inbox().pop() else {
            panic!("no Welcome for frank")
        };
        requests.push((frank.welcome_info_request(&welcome, now).0, key(&frank)));
        // A millisecond earlier than the seed above, which would otherwise be its replay.
        let DsResponseBody::ExternalCommitInfo(info) = decode_response(
            &ds.process(&alice.signed_group_info_request(&group_a, None, now - 1))
                .response,
        )
        .body
        else {
            panic!("group_info refused")
        };
        let mut laptop = TestClient::new("alice", "alice-2", "a.example");
        requests.push((laptop.external_join_request(&info), None));
        requests.push((carol.propose_remove_request(bob.leaf(), now), key(&carol)));
        requests.push((bob.update_request(now), key(&bob)));
        requests.push((
            alice.add_request(
                vec![TestClient::new("dave", "dave-1", "d.example").key_package()],
                now,
            ),
            key(&alice),
        ));
        requests.push((owner.delete_group_request(now), key(&owner)));
        let mut moved = carol.queue.clone();
        moved.queue = b"carol-moved".to_vec().into();
        let mut carol_again = TestClient::new("carol", "carol-x", "c.example");
        std::mem::swap(&mut carol_again.group, &mut carol.group);
        requests.push((carol_again.update_queue_request(moved, now), key(&carol)));
        // Refused by the group-safety rules: Carol moving to Alice's queue, a new client of
        // Alice's joining with Alice's queue (wire-format.md §6.1), and an Add whose KeyPackage
        // is not valid yet at the DS's `now`, though it is at the system clock (§4.3.5).
        requests.push((
            carol_again.update_queue_request(alice.queue.clone(), now),
            key(&carol),
        ));
        let mut impostor = TestClient::new("alice", "alice-3", "a.example");
        impostor.queue = alice.queue.clone();
        requests.push((impostor.external_join_request(&info), None));
        let not_yet = TestClient::lifetime();
        let not_yet = Lifetime::init(now / 1000 + 2, not_yet.not_after());
        requests.push((
            alice.add_request(
                vec![TestClient::new("erin", "erin-1", "e.example")
                    .key_package_with_lifetime(not_yet)],
                now,
            ),
            key(&alice),
        ));
        Self {
            ds,
            group_ids: vec![group_a, group_b, reserved],
            requests,
        }
    }

    /// Runs `request` on a copy of the fixture's storage and checks the invariants.
    fn check(&self, request: &[u8]) {
        let mut storage: InMemoryStorage = self.ds.storage.clone();
        let out = self
            .ds
            .ds
            .process(UnixTimeMs(self.ds.now_ms), request, &mut storage)
            .expect("in-memory storage cannot fail");
        decode_exact::<DsResponse>(&out.response).expect("the DS's answer decodes");
        match out.status {
            Status::Rejected(_) => {
                assert!(
                    storage == self.ds.storage
                        || storage
                            == consumed_reservation(&self.ds.storage, request, self.ds.now_ms),
                    "a rejected request changed storage"
                );
                assert!(out.fanout.is_empty(), "a rejected request fanned out");
            }
            _ => {
                for id in &self.group_ids {
                    assert!(
                        storage.version(id) >= self.ds.storage.version(id),
                        "a group version went back"
                    );
                    assert_distinct_queues(&storage, id);
                }
            }
        }
    }
}

/// wire-format.md §6.1: no two members of a group share a queue configuration.
fn assert_distinct_queues(storage: &InMemoryStorage, group_id: &[u8]) {
    let snapshot = crate::storage::DsStorage::read(storage, group_id, &[RecordKind::Roster])
        .expect("in-memory storage cannot fail");
    let Some(bytes) = snapshot.as_ref().and_then(|s| s.record(RecordKind::Roster)) else {
        return;
    };
    let roster: Roster = decode_exact(bytes).expect("a stored roster decodes");
    let mut queues: Vec<_> = roster.iter().map(|(_, m)| &m.queue_config).collect();
    let members = queues.len();
    queues.sort_by_key(|q| (q.provider_domain.as_slice(), q.queue.as_slice()));
    queues.dedup();
    assert_eq!(
        queues.len(),
        members,
        "two members share a queue configuration"
    );
}

/// Fuzz body: arbitrary bytes to `process` against a DS holding real groups.
pub fn process_bytes(data: &[u8]) {
    fixture().check(data);
}

/// Fuzz body: `data[0]` picks a valid request; the rest are `(offset: u16, xor: u8)`
/// mutations. A mutated request that still decodes is re-signed by its sender.
pub fn process_mutated(data: &[u8]) {
    let fixture = fixture();
    let [selector, mutations @ ..] = data else {
        return;
    };
    let (original, signer) = &fixture.requests[*selector as usize % fixture.requests.len()];
    let mut bytes = original.clone();
    for m in mutations.chunks_exact(3) {
        let offset = u16::from_be_bytes([m[0], m[1]]) as usize % bytes.len();
        bytes[offset] ^= m[2];
    }
    if let (Ok(request), Some(signer)) = (decode_exact::<DsRequest>(&bytes), signer) {
        if let DsAuthData::ClientSignature(sig) = &request.auth {
            if let Ok(auth) = ClientSignature::sign(
                signer,
                request.version,
                &request.body,
                sig.group_id.as_slice(),
                sig.timestamp_ms,
                sig.sender_id.clone(),
            ) {
                let resigned = DsRequest {
                    auth: DsAuthData::ClientSignature(auth),
                    ..request
                };
                if let Ok(encoded) = encode(&resigned) {
                    bytes = encoded;
                }
            }
        }
    }
    fixture.check(&bytes);
}

/// The leaves' signature keys as the DS serves them (`group_info`), sorted.
fn ds_members(ds: &mut TestDs, group_id: &[u8]) -> Vec<Vec<u8>> {
    let DsResponseBody::ExternalCommitInfo(info) = decode_response(
        &ds.process(&TestClient::group_info_request(group_id))
            .response,
    )
    .body
    else {
        panic!("group_info refused for a live group")
    };
    let tree = info
        .ratchet_tree()
        .expect("the hub sends the full tree")
        .parse()
        .expect("the served tree parses");
    let mut keys: Vec<Vec<u8>> = tree
        .leaves()
        .map(|l| l.signature_key().as_slice().to_vec())
        .collect();
    keys.sort();
    keys
}

/// A client's view of the members' signature keys, sorted.
fn client_members(group: &MlsGroup) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = group
        .members()
        .map(|m| {
            SignaturePublicKey::from(m.signature_key)
                .as_slice()
                .to_vec()
        })
        .collect();
    keys.sort();
    keys
}

/// Fuzz body: a sequence of operations by three real clients (messages, updates, proposals,
/// removals, deliveries, replays, mutations, clock steps, resubmissions re-signed by another
/// client), checking after each step that group versions only grow, that every accepted commit
/// reaches every other member of the epoch it ends, that no application message is accepted
/// twice (wire-format.md §4.8), that rejected requests change nothing, that no two members
/// share a queue configuration, and, after deliveries, that the DS's member list equals every
/// client's view; and at the end, that an up-to-date member can still commit (no proposal
/// wedges the group).
pub fn sequence(data: &[u8]) {
    // The oracle (`ds_members`) reads the DS's view with anonymous `group_info` requests.
    let mut config = crate::DsConfig::new("hub.example");
    config.group_info_access = crate::GroupInfoAccess::Anyone;
    let mut ds = TestDs::with_config(config);
    let mut clients = [
        TestClient::new("alice", "alice-1", "a.example"),
        TestClient::new("bob", "bob-1", "b.example"),
        TestClient::new("carol", "carol-1", "c.example"),
    ];
    let group_id = ds.request_group_id();
    let [alice, bob, carol] = &mut clients;
    alice.create_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(ds.now_ms);
    accept(&mut ds, &request, &mut []);
    let request = alice.add_request(vec![bob.key_package(), carol.key_package()], ds.now_ms);
    accept(&mut ds, &request, &mut [bob, carol]);
    alice.confirm_commit();
    join(&mut ds, bob);
    join(&mut ds, carol);
    let mut active = [true; 3];
    let mut last: Option<Vec<u8>> = None;
    let mut accepted_messages: Vec<Vec<u8>> = Vec::new();

    for step in data.chunks_exact(3).take(24) {
        let (op, who, arg) = (step[0] % 8, step[1] as usize % 3, step[2]);
        if !active[who] {
            continue;
        }
        let version = ds.storage.version(&group_id);
        let before = ds.storage.clone();
        // The other members as the acting client sees its group: the members of the epoch its
        // request is for (the delivery flags may lag behind an accepted removal).
        let view = client_members(clients[who].group());
        let others: Vec<usize> = (0..3)
            .filter(|i| *i != who && view.contains(&clients[*i].signer.to_public_vec()))
            .collect();
        let now = ds.now_ms;
        let client = &mut clients[who];
        let has_pending = client.group().pending_proposals().next().is_some();
        // Operations a real client cannot build are skipped, not failures of the DS: openmls
        // refuses to commit when a stored proposal removes the committer, and to propose or
        // commit the removal of a leaf that is already being removed.
        let pending_removals: Vec<u32> = client
            .group()
            .pending_proposals()
            .filter_map(|p| match p.proposal() {
                Proposal::Remove(remove) => Some(remove.removed().u32()),
                _ => None,
            })
            .collect();
        // What the client had stored before this step: a refused proposal is forgotten alone,
        // never an earlier accepted one that a commit it has not processed yet may name.
        let stored_before: Vec<openmls::prelude::hash_ref::ProposalRef> = client
            .group()
            .pending_proposals()
            .map(|p| p.proposal_reference_ref().clone())
            .collect();
        let own_leaf = client.leaf();
        let may_commit = !pending_removals.contains(&own_leaf);
        let target = (!others.is_empty())
            .then(|| clients[others[arg as usize % others.len()]].leaf())
            .filter(|t| !pending_removals.contains(t));
        let request = match (op, target) {
            (0, _) if !has_pending => clients[who].message_request(&[arg], now),
            (1, _) if may_commit => clients[who].update_request(now),
            (2, Some(target)) => clients[who].propose_remove_request(target, now),
            (3, Some(target)) if may_commit => clients[who].remove_request(&[target], now),
            (4, _) => {
                // Deliver everything, then compare the DS's view with every client's.
                deliver_all(&mut clients, &mut active);
                let expected = ds_members(&mut ds, &group_id);
                for (i, client) in clients.iter().enumerate() {
                    if active[i] && client.inbox.is_empty() {
                        assert_eq!(
                            client_members(client.group()),
                            expected,
                            "a client's member list differs from the DS's"
                        );
                    }
                }
                continue;
            }
            // The last request again: byte for byte (even `arg`), or its body resubmitted by
            // this client under a fresh signature (odd `arg`).
            (5, _) => match &last {
                Some(previous) if arg % 2 == 0 => previous.clone(),
                Some(previous) => match decode_exact::<DsRequest>(previous) {
                    Ok(previous) => clients[who].signed(previous.body, now),
                    Err(_) => continue,
                },
                None => continue,
            },
            (6, _) => match &last {
                Some(previous) => {
                    let mut mutated = previous.clone();
                    let at = arg as usize % mutated.len();
                    mutated[at] ^= 0x5a;
                    mutated
                }
                None => continue,
            },
            (7, _) => {
                ds.advance(u64::from(arg) * 1000);
                continue;
            }
            _ => continue,
        };
        let is_commit = matches!(op, 1 | 3);
        // Members of the epoch this commit would end, other than the committer.
        let expected_queues: Vec<_> = others.iter().map(|i| clients[*i].queue.clone()).collect();
        let out = ds.process(&request);
        assert!(
            ds.storage.version(&group_id) >= version,
            "the group version went back"
        );
        assert_distinct_queues(&ds.storage, &group_id);
        match out.status {
            Status::Accepted => {
                if let Ok(DsRequest {
                    body: DsRequestBody::SendMessage(message),
                    ..
                }) = decode_exact::<DsRequest>(&request)
                {
                    let bytes = message.application_message.into_bytes();
                    assert!(
                        !accepted_messages.contains(&bytes),
                        "an application message was accepted twice"
                    );
                    accepted_messages.push(bytes);
                }
                if is_commit && op != 5 && op != 6 {
                    for queue in &expected_queues {
                        let reached = out.fanout.iter().any(|f| {
                            f.request.recipient_domain == queue.provider_domain
                                && f.request.recipients.contains(&queue.queue)
                        });
                        assert!(
                            reached,
                            "an accepted commit did not reach a member of the epoch it ends"
                        );
                    }
                    clients[who].confirm_commit();
                }
                let mut refs: Vec<&mut TestClient> = clients.iter_mut().collect();
                TestDs::route(&out, &mut refs);
            }
            Status::Duplicate => assert!(out.fanout.is_empty(), "a duplicate fanned out again"),
            Status::Rejected(_) => {
                assert!(ds.storage == before, "a rejected request changed storage");
                assert!(out.fanout.is_empty(), "a rejected request fanned out");
                if is_commit && op != 5 && op != 6 {
                    clients[who].discard_commit();
                }
                if op == 2 {
                    // The proposer drops what the DS refused (openmls stored it when proposing),
                    // and only that: its earlier proposals the DS accepted stay, since a commit
                    // it has not processed yet may include them by reference.
                    forget_new_proposals(&mut clients[who], &stored_before);
                }
            }
        }
        if op != 5 && op != 6 {
            last = Some(request);
        }
    }
    no_member_proposal_wedges_the_group(&mut ds, &mut clients, &mut active);
}

/// Every active client processes its inbox; a client a commit removed becomes inactive. A
/// member's proposal that a commit left out can arrive after the client merged that commit:
/// it lapsed with its epoch (wire-format.md §4.3.3), and the client discards it, as openmls
/// refuses proposals of past epochs.
fn deliver_all(clients: &mut [TestClient; 3], active: &mut [bool; 3]) {
    for (i, client) in clients.iter_mut().enumerate() {
        if !active[i] {
            continue;
        }
        let epoch = client.epoch();
        client.inbox.retain(|m| {
            !matches!(
                m.message.parse().map(|p| p.extract()),
                Ok(MlsMessageBodyIn::PublicMessage(p))
                    if p.content_type() == ContentType::Proposal && p.epoch().as_u64() < epoch
            )
        });
        for received in client.process_inbox() {
            if let Received::Commit { removed: true, .. } = received {
                active[i] = false;
            }
        }
    }
}

/// Drops the pending proposals `client` stored after `stored_before` was taken.
fn forget_new_proposals(
    client: &mut TestClient,
    stored_before: &[openmls::prelude::hash_ref::ProposalRef],
) {
    let storage = openmls_traits::OpenMlsProvider::storage(&client.provider);
    let group = client.group.as_mut().expect("an active client has a group");
    let new: Vec<_> = group
        .pending_proposals()
        .map(|p| p.proposal_reference_ref().clone())
        .filter(|r| !stored_before.contains(r))
        .collect();
    for proposal_ref in new {
        group
            .remove_pending_proposal(storage, &proposal_ref)
            .expect("a stored proposal");
    }
}

fn forget_proposals(client: &mut TestClient) {
    let storage = openmls_traits::OpenMlsProvider::storage(&client.provider);
    client
        .group
        .as_mut()
        .expect("an active client has a group")
        .clear_pending_proposals(storage)
        .expect("in-memory storage");
}

/// The end-of-sequence invariant (wire-format.md §4.3.3, §4.10): whatever members proposed,
/// once everything is delivered an active member can commit, including the proposals it
/// stored unless one removes itself (openmls cannot build that commit; a member's proposal may
/// be left out).
fn no_member_proposal_wedges_the_group(
    ds: &mut TestDs,
    clients: &mut [TestClient; 3],
    active: &mut [bool; 3],
) {
    deliver_all(clients, active);
    let Some(committer) = (0..3).find(|i| active[*i]) else {
        return;
    };
    let client = &mut clients[committer];
    let own = client.leaf();
    let removes_itself = client
        .group()
        .pending_proposals()
        .any(|p| matches!(p.proposal(), Proposal::Remove(remove) if remove.removed().u32() == own));
    if removes_itself {
        forget_proposals(client);
    }
    let out = ds.process(&client.update_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "an up-to-date member could not commit: {:?}",
        decode_response(&out.response)
    );
}

/// `storage` after the one write a refusal may make: a `create_group` whose signature verified
/// but whose group did not validate consumes its reservation (wire-format.md §4.2).
fn consumed_reservation(storage: &InMemoryStorage, request: &[u8], now_ms: u64) -> InMemoryStorage {
    use crate::storage::{DsStorage, RecordKind, RecordWrite, VersionGuard, WriteSet};
    let mut after = storage.clone();
    let Ok(DsRequest {
        body: crate::wire::DsRequestBody::CreateGroup(body),
        ..
    }) = decode_exact::<DsRequest>(request)
    else {
        return after;
    };
    let group_id = body.group_id.as_slice();
    if let Some(version) = storage.version(group_id) {
        let _ = after.write(&WriteSet {
            group_id: group_id.to_vec(),
            guard: VersionGuard::Exactly(version),
            records: vec![RecordWrite::Delete(RecordKind::Reservation)],
            replay_mark: None,
            now_ms,
            fanout: Vec::new(),
        });
    }
    after
}
