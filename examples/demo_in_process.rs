//! An end-to-end run of the MIMI hub with real openmls clients, all in one process.
//!
//! A Delivery Service for `hub.example` serves one group: Alice (a phone and, later, a laptop at
//! `a.example`) and Bob (a phone and a laptop at `b.example`). Bob's clients join by Welcome,
//! Alice's laptop by external commit, and Bob's phone rejoins the same way after losing its
//! state; the DS itself proposes removing a client whose queue is gone. Every request (and the
//! one hub event) is printed with its response and the fanout it caused; fanout is then
//! delivered the way a Queueing Service would, and each client prints what it got out of its
//! inbox.
//!
//! Run it with `cargo run --release --example demo_in_process`.

use std::time::Instant;

use mimi_ds::testing::{
    decode_response, group_info_encryption_keys, open_external_commit_info, Received, TestClient,
    TestDs, START_MS,
};
use mimi_ds::wire::{
    encode, ClientQueueConfig, DsAuthData, DsErrorDetails, DsRequest, DsRequestBody,
    DsResponseBody, ErrorCode, ExternalCommitInfo, FanoutMessage, MlsMessageBytes,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{HubEvent, Outcome, Status, UnixTimeMs};
use openmls::prelude::{ContentType, MlsMessageBodyIn};

const ALICE: usize = 0;
const BOB_PHONE: usize = 1;
const BOB_LAPTOP: usize = 2;
const ALICE_LAPTOP: usize = 3;

/// The hub, the clients, and what happened so far.
struct World {
    ds: TestDs,
    clients: Vec<TestClient>,
    /// Clients whose queues their provider deleted: deliveries to them are refused.
    gone: Vec<usize>,
    requests: usize,
    events: usize,
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    deliveries: usize,
    decrypted: usize,
}

impl World {
    /// Sends one request to the hub and prints it, its response and its fanout.
    fn send(&mut self, operation: &str, requester: &str, request: Vec<u8>) -> Outcome {
        let outcome = self.ds.process(&request);
        self.requests += 1;
        let origin = format!("from {requester}  ({} bytes)", request.len());
        self.report(operation, &origin, &outcome);
        outcome
    }

    /// Tells the hub what its server learned about the group and prints it like a request.
    fn hub_event(&mut self, operation: &str, group_id: &[u8], event: &HubEvent) -> Outcome {
        let outcome = self
            .ds
            .ds
            .handle_event(
                UnixTimeMs(self.ds.now_ms),
                group_id,
                event,
                &mut self.ds.storage,
            )
            .expect("in-memory storage does not fail");
        self.events += 1;
        self.report(operation, "from the hub's own server", &outcome);
        outcome
    }

    /// Counts an outcome and prints its status, response and fanout.
    fn report(&mut self, operation: &str, origin: &str, outcome: &Outcome) {
        match outcome.status {
            Status::Rejected(_) => self.rejected += 1,
            Status::Duplicate => self.duplicates += 1,
            _ => self.accepted += 1,
        }
        println!("\n>> {operation}  {origin}");
        println!("   status:   {:?}", outcome.status);
        println!("   response: {}", describe_response(&outcome.response));
        if outcome.fanout.is_empty() {
            println!("   fanout:   none");
        }
        for fanout in &outcome.fanout {
            let queues: Vec<String> = fanout
                .request
                .recipients
                .iter()
                .map(|q| String::from_utf8_lossy(q.as_slice()).into_owned())
                .collect();
            let message = &fanout.request.message;
            let stapled = match message.external_proposals.len() {
                0 => String::new(),
                n => format!(" +{n} stapled"),
            };
            println!(
                "   fanout:   -> {} : {} recipient(s) [{}], {} seq {}{stapled}",
                fanout.destination,
                fanout.recipient_count(),
                queues.join(", "),
                message_kind(message),
                message.sequence_number,
            );
        }
    }

    /// Hands the fanout to the recipients' queues, as their Queueing Services would. A queue
    /// that is gone refuses the delivery.
    fn route(&mut self, outcome: &Outcome) {
        for fanout in &outcome.fanout {
            let request = &fanout.request;
            for queue in &request.recipients {
                let target = self.clients.iter().position(|c| {
                    c.queue.queue == *queue && c.queue.provider_domain == request.recipient_domain
                });
                match target {
                    Some(index) if self.gone.contains(&index) => println!(
                        "   {:<12} answered invalid_client_queue_information for {}",
                        fanout.destination, self.clients[index].name
                    ),
                    Some(index) => {
                        self.clients[index].inbox.push(request.message.clone());
                        self.deliveries += 1;
                    }
                    None => {}
                }
            }
        }
    }

    /// Lets every client process its inbox. Returns the Welcomes that arrived, with the index
    /// of the client they are for.
    fn process_inboxes(&mut self) -> Vec<(usize, MlsMessageBytes)> {
        let mut welcomes = Vec::new();
        for (index, client) in self.clients.iter_mut().enumerate() {
            for received in client.process_inbox() {
                let what = match received {
                    Received::Application(text) => {
                        self.decrypted += 1;
                        format!("message \"{}\"", String::from_utf8_lossy(&text))
                    }
                    Received::Commit { removed: true, .. } => {
                        "commit: removed from the group".into()
                    }
                    Received::Commit { epoch, .. } => format!("commit: now at epoch {epoch}"),
                    Received::Proposal => "proposal: stored for the next commit".into(),
                    Received::Welcome(welcome) => {
                        welcomes.push((index, welcome));
                        "welcome: ready to join".into()
                    }
                };
                println!("   {:<12} got {what}", client.name);
            }
        }
        welcomes
    }

    /// Routes the fanout and lets every client process its inbox.
    fn deliver(&mut self, outcome: &Outcome) -> Vec<(usize, MlsMessageBytes)> {
        self.route(outcome);
        self.process_inboxes()
    }

    /// A commit whose sender must merge it once the hub accepted it.
    fn commit(&mut self, operation: &str, sender: usize, request: Vec<u8>) -> Status {
        let name = self.clients[sender].name.clone();
        let outcome = self.send(operation, &name, request);
        if outcome.status == Status::Accepted {
            self.clients[sender].confirm_commit();
        }
        self.deliver(&outcome);
        outcome.status
    }

    /// An external commit built from `info`. The joiner merges it once the hub accepted it; if
    /// its old leaf's queue gets the commit back, it skips it, having merged it already.
    fn external_join(&mut self, joiner: usize, info: &ExternalCommitInfo) -> Status {
        let request = self.clients[joiner].external_join_request(info);
        let name = self.clients[joiner].name.clone();
        let outcome = self.send("external_join", &format!("{name} (anonymous)"), request);
        assert_eq!(outcome.status, Status::Accepted);
        self.clients[joiner].confirm_commit();
        self.route(&outcome);
        let echoed = std::mem::take(&mut self.clients[joiner].inbox).len();
        if echoed > 0 {
            println!("   {name:<12} got its own commit back: already merged, skipped");
        }
        self.process_inboxes();
        println!(
            "   {name:<12} joined at epoch {} as leaf {}; the group has {} members",
            self.clients[joiner].epoch(),
            self.clients[joiner].leaf(),
            self.clients[joiner].group().members().count()
        );
        outcome.status
    }

    /// An application message from `sender`.
    fn message(&mut self, sender: usize, text: &str) -> Status {
        let request = self.clients[sender].message_request(text.as_bytes(), self.ds.now_ms);
        let name = self.clients[sender].name.clone();
        let outcome = self.send("send_message", &name, request);
        self.deliver(&outcome);
        outcome.status
    }

    /// The `group_info` answer in the clear, for a client signing with its user key.
    fn group_info(&mut self, requester: usize, group_id: &[u8]) -> ExternalCommitInfo {
        let request =
            self.clients[requester].signed_group_info_request(group_id, None, self.ds.now_ms);
        let name = format!("{} (user key)", self.clients[requester].name);
        let out = self.send("group_info", &name, request);
        let DsResponseBody::ExternalCommitInfo(info) = decode_response(&out.response).body else {
            panic!("group_info was refused")
        };
        info
    }
}

/// A one-line reading of a `DSResponse`.
fn describe_response(bytes: &[u8]) -> String {
    match decode_response(bytes).body {
        DsResponseBody::Accepted(a) => {
            let proposals = match a.external_proposals.len() {
                0 => String::new(),
                1 => ", 1 external proposal".into(),
                n => format!(", {n} external proposals"),
            };
            format!(
                "Accepted {{ seq {}, time +{:.3}s, epoch {}{proposals} }}",
                a.sequence_number,
                a.accepted_time_ms.saturating_sub(START_MS) as f64 / 1000.0,
                a.epoch
            )
        }
        DsResponseBody::Ok => "Ok".into(),
        DsResponseBody::GroupId(id) => format!("GroupId {}", printable(id.as_slice())),
        DsResponseBody::SignaturePublicKey(key) => {
            format!("SignaturePublicKey {}", hex(key.as_slice()))
        }
        DsResponseBody::WelcomeInfo(info) => format!(
            "WelcomeInfo {{ ratchet_tree {} bytes }}",
            info.ratchet_tree.as_bytes().len()
        ),
        DsResponseBody::ExternalCommitInfo(info) => describe_info(&info),
        DsResponseBody::EncryptedExternalCommitInfo(sealed) => format!(
            "EncryptedExternalCommitInfo {{ kem_output {} bytes, ciphertext {} bytes }}",
            sealed.kem_output.as_slice().len(),
            sealed.ciphertext.as_slice().len()
        ),
        DsResponseBody::Error(e) => {
            let details = match e.details {
                DsErrorDetails::CurrentEpoch(epoch) => format!(", current epoch {epoch}"),
                DsErrorDetails::ProposalRefs(refs) => format!(", {} proposal ref(s)", refs.len()),
                _ => String::new(),
            };
            format!(
                "Error {{ {}: \"{}\"{details} }}",
                e.code.name(),
                String::from_utf8_lossy(e.description.as_slice())
            )
        }
        other => format!("{other:?}"),
    }
}

fn describe_info(info: &ExternalCommitInfo) -> String {
    format!(
        "GroupInfoRatchetTreeTBE {{ group_info {} bytes, ratchet_tree {} bytes, {} pending proposal(s) }}",
        info.group_info.as_bytes().len(),
        info.ratchet_tree().map_or(0, |tree| tree.as_bytes().len()),
        info.pending_proposals.len()
    )
}

/// What kind of MLS message a fanout carries.
fn message_kind(message: &FanoutMessage) -> &'static str {
    let Ok(parsed) = message.message.parse() else {
        return "unparsable";
    };
    match parsed.extract() {
        MlsMessageBodyIn::Welcome(_) => "welcome",
        MlsMessageBodyIn::PublicMessage(m) => content_kind(m.content_type()),
        MlsMessageBodyIn::PrivateMessage(m) => content_kind(m.content_type()),
        _ => "other",
    }
}

fn content_kind(content_type: ContentType) -> &'static str {
    match content_type {
        ContentType::Application => "application",
        ContentType::Proposal => "proposal",
        ContentType::Commit => "commit",
    }
}

/// Text if the bytes are printable ASCII, else the start in hex.
fn printable(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic()) {
        return format!("\"{}\"", String::from_utf8_lossy(bytes));
    }
    hex(bytes)
}

fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 8 {
        format!("{shown}… ({} bytes)", bytes.len())
    } else {
        shown
    }
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}

fn main() {
    let started = Instant::now();
    let mut w = World {
        ds: TestDs::new("hub.example"),
        clients: vec![
            TestClient::new("alice", "alice-phone", "a.example"),
            TestClient::new("bob", "bob-phone", "b.example"),
            TestClient::new("bob", "bob-laptop", "b.example"),
            TestClient::new("alice", "alice-laptop", "a.example"),
        ],
        gone: Vec::new(),
        requests: 0,
        events: 0,
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        deliveries: 0,
        decrypted: 0,
    };
    println!(
        "MIMI hub `hub.example`; alice-phone + alice-laptop @ a.example, \
         bob-phone + bob-laptop @ b.example"
    );
    // Each user's clients share a user key, registered through their leaves: with it a new
    // device or a client that lost its state may fetch the GroupInfo (wire-format.md §4.11).
    if let [alice, bob_phone, bob_laptop, alice_laptop] = w.clients.as_mut_slice() {
        TestClient::share_user_key(&mut [alice, alice_laptop]);
        TestClient::share_user_key(&mut [bob_phone, bob_laptop]);
    }

    section("Alice asks for a group ID and creates the group");
    let request = DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    };
    let out = w.send(
        "request_group_id",
        "alice-phone (anonymous)",
        encode(&request).expect("encode"),
    );
    let DsResponseBody::GroupId(group_id) = decode_response(&out.response).body else {
        panic!("request_group_id was refused")
    };
    let group_id = group_id.as_slice().to_vec();
    w.clients[ALICE].create_group(&group_id, &w.ds.external_sender);
    let request = w.clients[ALICE].create_group_request(w.ds.now_ms);
    let out = w.send("create_group", "alice-phone", request);
    w.deliver(&out);

    section("Alice adds Bob's two clients; they join with the tree from welcome_info");
    let key_packages = vec![
        w.clients[BOB_PHONE].key_package(),
        w.clients[BOB_LAPTOP].key_package(),
    ];
    let request = w.clients[ALICE].add_request(key_packages, w.ds.now_ms);
    let out = w.send("commits (add)", "alice-phone", request);
    w.clients[ALICE].confirm_commit();
    let welcomes = w.deliver(&out);
    for (index, welcome) in welcomes {
        let (request, processed) = w.clients[index].welcome_info_request(&welcome, w.ds.now_ms);
        let requester = format!("{} (KeyPackageRef)", w.clients[index].name);
        let out = w.send("welcome_info", &requester, request);
        let DsResponseBody::WelcomeInfo(info) = decode_response(&out.response).body else {
            panic!("welcome_info was refused")
        };
        w.clients[index].join_with_tree(processed, &info.ratchet_tree);
        println!(
            "   {:<12} joined at epoch {}",
            w.clients[index].name,
            w.clients[index].epoch()
        );
    }

    section("Messages in both directions");
    w.ds.advance(2_000);
    w.message(ALICE, "Hi Bob! Welcome to the group.");
    w.ds.advance(1_500);
    w.message(BOB_LAPTOP, "Hi Alice, writing from my laptop.");

    section("Bob's phone updates its keys");
    w.ds.advance(1_000);
    let request = w.clients[BOB_PHONE].update_request(w.ds.now_ms);
    w.commit("commits (update)", BOB_PHONE, request);

    section("Alice's laptop joins by external commit");
    w.ds.advance(1_000);
    let keys = group_info_encryption_keys();
    let request =
        w.clients[ALICE_LAPTOP].signed_group_info_request(&group_id, Some(&keys), w.ds.now_ms);
    let out = w.send(
        "group_info (encrypted to a fresh HPKE key)",
        "alice-laptop (user key)",
        request,
    );
    let DsResponseBody::EncryptedExternalCommitInfo(sealed) = decode_response(&out.response).body
    else {
        panic!("group_info was refused")
    };
    let info = open_external_commit_info(&sealed, &group_id, &keys).expect("open");
    println!("   alice-laptop opened it: {}", describe_info(&info));
    w.external_join(ALICE_LAPTOP, &info);
    w.ds.advance(1_000);
    w.message(ALICE_LAPTOP, "Hello from Alice's laptop.");

    section("Bob's phone proposes removing Bob's laptop; Alice's next commit includes it");
    w.ds.advance(1_000);
    let laptop_leaf = w.clients[BOB_LAPTOP].leaf();
    let request = w.clients[BOB_PHONE].propose_remove_request(laptop_leaf, w.ds.now_ms);
    let out = w.send("proposals (remove bob-laptop)", "bob-phone", request);
    w.deliver(&out);
    let request = w.clients[ALICE].update_request(w.ds.now_ms);
    w.commit("commits (update + pending remove)", ALICE, request);

    section("Bob's phone moves its queue");
    w.ds.advance(1_000);
    let new_queue = ClientQueueConfig {
        provider_domain: b"b.example".to_vec().into(),
        queue: b"bob-phone-v2".to_vec().into(),
    };
    let request = w.clients[BOB_PHONE].update_queue_request(new_queue, w.ds.now_ms);
    let out = w.send("update_queue_info", "bob-phone", request);
    w.deliver(&out);
    w.message(ALICE, "Still there after the move?");

    section("A commit race: both commit at the same epoch, Bob's phone wins");
    w.ds.advance(1_000);
    let from_alice = w.clients[ALICE].update_request(w.ds.now_ms);
    let from_bob = w.clients[BOB_PHONE].update_request(w.ds.now_ms);
    let won = w.send("commits (update)", "bob-phone", from_bob);
    w.clients[BOB_PHONE].confirm_commit();
    println!("   (bob-phone's commit has not reached alice-phone yet)");
    let lost = w.send("commits (update, stale)", "alice-phone", from_alice);
    assert_eq!(lost.status, Status::Rejected(ErrorCode::WrongEpoch));
    println!("   alice-phone drops its commit and processes the winner's");
    w.clients[ALICE].discard_commit();
    w.deliver(&won);
    let request = w.clients[ALICE].update_request(w.ds.now_ms);
    w.commit("commits (update, retried)", ALICE, request);

    section("A retry of an accepted message is a Duplicate with no second fanout");
    w.ds.advance(1_000);
    let request = w.clients[BOB_PHONE].message_request(b"Lunch at noon?", w.ds.now_ms);
    let first = w.send("send_message", "bob-phone", request.clone());
    w.deliver(&first);
    w.ds.advance(300);
    let retry = w.send("send_message (same bytes again)", "bob-phone", request);
    assert_eq!(
        (retry.status, retry.response == first.response),
        (Status::Duplicate, true)
    );
    w.deliver(&retry);

    section("Bob's phone loses its state and resyncs");
    w.ds.advance(1_000);
    let old_leaf = w.clients[BOB_PHONE].leaf();
    w.clients[BOB_PHONE].lose_state();
    println!("   bob-phone    lost its group state (leaf {old_leaf}); it keeps its identity key");
    let info = w.group_info(BOB_PHONE, &group_id);
    w.external_join(BOB_PHONE, &info);
    w.ds.advance(1_000);
    w.message(BOB_PHONE, "Sorry, my phone was reset. Back now.");
    w.ds.advance(500);
    w.message(ALICE, "Welcome back!");

    section("The hub removes a client whose queue is gone");
    w.ds.advance(1_000);
    w.clients[ALICE_LAPTOP].lose_state();
    w.gone.push(ALICE_LAPTOP);
    println!("   alice-laptop is wiped; a.example deletes its queue");
    w.message(ALICE, "Is my laptop still in here?");
    let queue = w.clients[ALICE_LAPTOP].queue.clone();
    let proposal = w.hub_event(
        "hub event QueueRejected (a.example: alice-laptop)",
        &group_id,
        &HubEvent::QueueRejected(queue),
    );
    assert_eq!(proposal.status, Status::Accepted);
    println!("   (the DS's Remove proposal has not reached bob-phone yet)");
    w.ds.advance(200);
    let refused = w.message(BOB_PHONE, "Anyone there?");
    assert_eq!(
        refused,
        Status::Rejected(ErrorCode::MissingPendingProposals)
    );
    w.deliver(&proposal);
    w.ds.advance(500);
    let request = w.clients[ALICE].update_request(w.ds.now_ms);
    w.commit("commits (update + the DS's remove)", ALICE, request);
    println!(
        "   alice-phone  sees {} members",
        w.clients[ALICE].group().members().count()
    );
    w.ds.advance(500);
    w.message(BOB_PHONE, "Messages flow again.");

    section("Alice removes Bob's phone");
    w.ds.advance(1_000);
    let phone_leaf = w.clients[BOB_PHONE].leaf();
    let request = w.clients[ALICE].remove_request(&[phone_leaf], w.ds.now_ms);
    w.commit("commits (remove bob-phone)", ALICE, request);

    section("Alice deletes the group; sending to it afterwards fails");
    w.ds.advance(1_000);
    let request = w.clients[ALICE].delete_group_request(w.ds.now_ms);
    w.commit("delete_group", ALICE, request);
    w.ds.advance(1_000);
    let after_delete = w.message(ALICE, "Anyone still here?");
    assert_eq!(after_delete, Status::Rejected(ErrorCode::UnknownGroup));

    println!(
        "\nSummary: {} requests + {} hub event, {} accepted (+{} duplicate), {} rejected, \
         {} fanout deliveries, {} messages decrypted, {:.2?} elapsed",
        w.requests,
        w.events,
        w.accepted,
        w.duplicates,
        w.rejected,
        w.deliveries,
        w.decrypted,
        started.elapsed()
    );
}
