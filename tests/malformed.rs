//! A systematic sweep of damaged requests. A realistic set of valid requests is built with real
//! openmls clients, each together with a snapshot of the DS storage taken just before it. Every
//! variant (truncations, single-bit flips, re-signatures by other senders, stale epochs) is
//! processed on a fresh clone of that snapshot and must not panic, must not return `Err`, and
//! must be refused with storage byte-identical and no fanout, unless the variant is a request
//! the DS is entitled to accept (listed explicitly below).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::{decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{
    decode_exact, ClientQueueConfig, DsAuthData, DsErrorDetails, DsRequest, DsRequestBody,
    DsResponseBody, DsSenderId, ErrorCode, GroupInfoRequest,
};
use mimi_ds::{Outcome, Status, UnixTimeMs};

/// What a request does, which decides how it may fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CreateGroup,
    Commit,
    Proposal,
    Message,
    QueueInfo,
    GroupInfo,
}

/// One valid request with the storage it is valid against.
struct Case {
    name: &'static str,
    kind: Kind,
    request: Vec<u8>,
    /// Storage just before the request was accepted.
    storage: InMemoryStorage,
    now_ms: u64,
    /// A commit for the same epoch by the same or another member, valid on `storage`; once it is
    /// accepted, `request` is for an old epoch.
    interloper: Option<Vec<u8>>,
    /// The group's epoch in `storage`.
    epoch: u64,
    /// The body signed with a key that is not the claimed sender's (another member's, or a
    /// non-member's), or naming a leaf without a member.
    wrong_senders: Vec<Vec<u8>>,
    /// The body signed by another member as itself.
    as_other_member: Option<Vec<u8>>,
}

struct Scenario {
    ds: TestDs,
    cases: Vec<Case>,
}

impl Scenario {
    fn process(&self, case: &Case, storage: &mut InMemoryStorage, request: &[u8]) -> Outcome {
        self.ds
            .ds
            .process(UnixTimeMs(case.now_ms), request, storage)
            .expect("in-memory storage does not fail")
    }
}

fn body_of(request: &[u8]) -> DsRequestBody {
    decode_exact::<DsRequest>(request).unwrap().body
}

fn sender_leaf(request: &[u8]) -> u32 {
    match decode_exact::<DsRequest>(request).unwrap().auth {
        DsAuthData::ClientSignature(signature) => match signature.sender_id {
            DsSenderId::LeafIndex(leaf) => leaf,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn accept(ds: &mut TestDs, request: &[u8]) -> Outcome {
    let out = ds.process(request);
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    out
}

/// Wrong-sender variants of `request`: `outsider`'s key claiming the sender's leaf, and a leaf
/// nobody occupies.
fn wrong_senders(
    request: &[u8],
    group_id: &[u8],
    now_ms: u64,
    impostors: &[&TestClient],
) -> Vec<Vec<u8>> {
    let body = body_of(request);
    let leaf = sender_leaf(request);
    let mut variants: Vec<Vec<u8>> = impostors
        .iter()
        .map(|c| c.signed_as(body.clone(), group_id, now_ms, DsSenderId::LeafIndex(leaf)))
        .collect();
    variants.push(impostors[0].signed_as(body, group_id, now_ms, DsSenderId::LeafIndex(5)));
    variants
}

/// Builds the scenario: a group created by Alice, Bob added with a Welcome, messages, a queue
/// update, a signed GroupInfo request, an update commit, a proposal and the commit including it.
fn scenario() -> Scenario {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let carol = TestClient::new("carol", "carol-1", "c.example"); // never a member
    let mut cases = Vec::new();
    let group_id = ds.request_group_id();
    let now = ds.now_ms;

    // create_group.
    alice.create_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(now);
    cases.push(Case {
        name: "create_group",
        kind: Kind::CreateGroup,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol]),
        as_other_member: None,
        interloper: None,
        epoch: 0,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let _ = accept(&mut ds, &request);

    // An add commit with a Welcome (Alice alone: the interloper is her own other commit).
    let interloper = alice.update_request(now);
    alice.discard_commit();
    let request = alice.add_request(vec![bob.key_package()], now);
    cases.push(Case {
        name: "add_commit_with_welcome",
        kind: Kind::Commit,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol, &bob]),
        as_other_member: None,
        interloper: Some(interloper),
        epoch: 0,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let out = accept(&mut ds, &request);
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    let tree = match decode_response(
        &ds.process(&TestClient::group_info_request(&group_id))
            .response,
    )
    .body
    {
        DsResponseBody::ExternalCommitInfo(info) => info.ratchet_tree,
        other => panic!("{other:?}"),
    };
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("no Welcome")
    };
    bob.join_from_welcome(&welcome, &tree);

    // send_message. Signed by Bob as himself it is a valid request of Bob's: a PrivateMessage
    // hides its sender from the DS (RFC 9420 §6.3).
    let interloper = alice.update_request(now);
    alice.discard_commit();
    let request = alice.message_request(b"hello bob", now);
    cases.push(Case {
        name: "send_message",
        kind: Kind::Message,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol, &bob]),
        as_other_member: Some(bob.signed(body_of(&request), now)),
        interloper: Some(interloper),
        epoch: 1,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let out = accept(&mut ds, &request);
    TestDs::route(&out, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"hello bob".to_vec())]
    );

    // update_queue_info by Bob (signed by Alice as herself it moves Alice's queue: valid).
    let queue = ClientQueueConfig {
        provider_domain: b"b2.example".to_vec().into(),
        queue: b"bob-1-new".to_vec().into(),
    };
    let request = bob.update_queue_request(queue, now);
    cases.push(Case {
        name: "update_queue_info",
        kind: Kind::QueueInfo,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol, &alice]),
        as_other_member: Some(alice.signed(body_of(&request), now)),
        interloper: None,
        epoch: 1,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let _ = accept(&mut ds, &request);

    // A signed group_info request by Alice (any member may read).
    let body = DsRequestBody::GroupInfo(GroupInfoRequest {
        group_id: group_id.clone().into(),
        encryption_key: None,
    });
    let request = alice.signed(body.clone(), now);
    cases.push(Case {
        name: "signed_group_info",
        kind: Kind::GroupInfo,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol, &bob]),
        as_other_member: Some(bob.signed(body, now)),
        interloper: None,
        epoch: 1,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let _ = accept(&mut ds, &request);

    // The same read without authentication (the embedding server's policy decides who may).
    let request = TestClient::group_info_request(&group_id);
    cases.push(Case {
        name: "unauthenticated_group_info",
        kind: Kind::GroupInfo,
        wrong_senders: Vec::new(),
        as_other_member: None,
        interloper: None,
        epoch: 1,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let _ = accept(&mut ds, &request);

    // An update commit by Bob.
    let interloper = alice.update_request(now);
    alice.discard_commit();
    let request = bob.update_request(now);
    cases.push(Case {
        name: "update_commit",
        kind: Kind::Commit,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol, &alice]),
        as_other_member: Some(alice.signed(body_of(&request), now)),
        interloper: Some(interloper),
        epoch: 1,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let out = accept(&mut ds, &request);
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Commit {
            epoch: 2,
            removed: false
        }]
    );

    // A Remove proposal by Alice.
    let interloper = bob.update_request(now);
    bob.discard_commit();
    let request = alice.propose_remove_request(bob.leaf(), now);
    cases.push(Case {
        name: "proposal",
        kind: Kind::Proposal,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol, &bob]),
        as_other_member: Some(bob.signed(body_of(&request), now)),
        interloper: Some(interloper),
        epoch: 2,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let _ = accept(&mut ds, &request);

    // The commit that includes the proposal (removes Bob).
    let request = alice.update_request(now);
    cases.push(Case {
        name: "commit_with_pending_proposal",
        kind: Kind::Commit,
        wrong_senders: wrong_senders(&request, &group_id, now, &[&carol, &bob]),
        as_other_member: Some(bob.signed(body_of(&request), now)),
        interloper: None,
        epoch: 2,
        storage: ds.storage.clone(),
        now_ms: now,
        request: request.clone(),
    });
    let _ = accept(&mut ds, &request);

    Scenario { ds, cases }
}

/// How one variant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Rejected(ErrorCode),
    /// Anything else (accepted, another panic, an `Err`): recorded as a failure.
    Other,
}

/// Tallies of one sweep.
#[derive(Default)]
struct Tally {
    variants: usize,
    accepted: Vec<String>,
    panicked: Vec<String>,
    errors: Vec<String>,
    by_code: BTreeMap<&'static str, usize>,
}

impl Tally {
    /// Processes one variant on a fresh clone of the case's storage and checks the invariants.
    fn run(&mut self, scenario: &Scenario, case: &Case, label: &str, variant: &[u8]) -> Ended {
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
            other => {
                self.accepted
                    .push(format!("{}: {label}: {other:?}", case.name));
                Ended::Other
            }
        }
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: {} variants, {} rejected, {} accepted, {} panics, {} errors",
            self.variants,
            self.by_code.values().sum::<usize>(),
            self.accepted.len(),
            self.panicked.len(),
            self.errors.len()
        );
        for (code, count) in &self.by_code {
            println!("    {code}: {count}");
        }
        assert!(self.panicked.is_empty(), "panics: {:#?}", self.panicked);
        assert!(self.errors.is_empty(), "errors: {:#?}", self.errors);
        // Every byte of a request is covered by its ClientSignature (or, for the one
        // unauthenticated read, names the group), so no damaged variant is harmless.
        assert!(
            self.accepted.is_empty(),
            "damaged requests accepted: {:#?}",
            self.accepted
        );
    }
}

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
        println!("{}: {} bytes", case.name, case.request.len());
    }
    assert_eq!(scenario.cases.len(), 9);
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
                &scenario,
                case,
                &format!("truncated to {len}"),
                &case.request[..len],
            );
            // The request's last field is the signature, so no prefix is a complete request.
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

fn flip_sweep(kinds: &[Kind], what: &str) {
    let scenario = scenario();
    let mut tally = Tally::default();
    for case in scenario.cases.iter().filter(|c| kinds.contains(&c.kind)) {
        let len = case.request.len();
        for position in flip_positions(len) {
            // All eight bits of the header and of the signature's tail, one bit elsewhere.
            let bits: Vec<u8> = if position < 4 || position >= len - 8 {
                (0..8).collect()
            } else {
                vec![(position % 8) as u8]
            };
            for bit in bits {
                let mut variant = case.request.clone();
                variant[position] ^= 1 << bit;
                tally.run(
                    &scenario,
                    case,
                    &format!("bit {bit} of byte {position}/{len}"),
                    &variant,
                );
            }
        }
    }
    tally.report(what);
}

#[test]
fn single_bit_flips_in_commits_are_refused() {
    flip_sweep(&[Kind::Commit], "bit flips (commits)");
}

#[test]
fn single_bit_flips_in_other_requests_are_refused() {
    flip_sweep(
        &[
            Kind::CreateGroup,
            Kind::Proposal,
            Kind::Message,
            Kind::QueueInfo,
            Kind::GroupInfo,
        ],
        "bit flips (other requests)",
    );
}

#[test]
fn wrong_senders_are_refused() {
    let scenario = scenario();
    let mut tally = Tally::default();
    for case in &scenario.cases {
        for (i, variant) in case.wrong_senders.iter().enumerate() {
            let ended = tally.run(&scenario, case, &format!("wrong sender {i}"), variant);
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
                    "{}",
                    case.name
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
            Kind::CreateGroup => unreachable!(),
        }
    }
    tally.report("wrong senders");
}

#[test]
fn requests_for_an_old_epoch_are_refused() {
    let scenario = scenario();
    let mut checked = 0;
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
        let advanced = storage.clone();
        let out = scenario.process(case, &mut storage, &case.request);
        assert_eq!(
            out.status,
            Status::Rejected(ErrorCode::WrongEpoch),
            "{}",
            case.name
        );
        assert!(out.fanout.is_empty(), "{}", case.name);
        assert!(storage == advanced, "{}", case.name);
        match decode_response(&out.response).body {
            DsResponseBody::Error(e) => assert_eq!(
                e.details,
                DsErrorDetails::CurrentEpoch(case.epoch + 1),
                "{}",
                case.name
            ),
            other => panic!("{other:?}"),
        }
        checked += 1;
    }
    // The add commit, the message, the update commit and the proposal.
    assert_eq!(checked, 4);
    let kinds: Vec<Kind> = scenario
        .cases
        .iter()
        .filter(|c| c.interloper.is_some())
        .map(|c| c.kind)
        .collect();
    assert!([Kind::Commit, Kind::Proposal, Kind::Message]
        .iter()
        .all(|k| kinds.contains(k)));
}

#[test]
fn an_accepted_request_replayed_after_the_group_moved_on_is_a_retry_not_a_new_request() {
    // Byte-identical resubmission of each accepted request, after all of them were accepted:
    // answered as a duplicate and never applied twice. (The signed read is answered as a
    // duplicate too today, or would be refused as a replay if it stored no response, see
    // `error_codes.rs`; the unauthenticated read is simply answered again.)
    let scenario = scenario();
    let mut storage = scenario.ds.storage.clone();
    for case in &scenario.cases {
        let before = storage.clone();
        let out = scenario.process(case, &mut storage, &case.request);
        match case.name {
            "unauthenticated_group_info" => assert_eq!(out.status, Status::Accepted),
            "signed_group_info" => assert!(
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

#[test]
/// tls_codec 0.5 panics here in debug builds (RustCrypto/formats#2414) unless its
/// debug assertions are off, as Cargo.toml arranges.
fn a_truncated_vector_is_malformed_not_a_panic() {
    let mut ds = TestDs::new("hub.example");
    // group_info(17) whose group_id<V> announces 5 bytes and carries 1.
    let out = ds.process(&[0x00, 0x01, 0x11, 0x05, b'a']);
    assert_eq!(out.status, Status::Rejected(ErrorCode::MalformedRequest));
}
