//! The whole life of a group over real HTTPS, shared by `examples/demo.rs` and
//! `tests/https_demo.rs`.
//!
//! Two providers run on 127.0.0.1, each an HTTPS server (TLS 1.3, certificates from a
//! throw-away CA): `alpha.example` runs the hub (DS) and a Queueing Service, `beta.example`
//! only a Queueing Service. Alice (phone, later laptop) is at alpha, Bob (phone, laptop) at
//! beta. Every client is a real openmls `MlsGroup`; it creates its queue at its provider,
//! publishes it sealed to the provider's key, sends its requests to the hub, and fetches its
//! messages from its queue. The hub delivers to beta over mutual TLS.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use mimi_ds::testing::{Received, TestClient};
use mimi_ds::transport::OCTET_STREAM;
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    ExternalCommitInfo, MlsMessageBytes, PROTOCOL_VERSION_MIMI_DS10,
};
use std::sync::atomic::Ordering;

use super::https::{HttpResponse, HttpsClient, Pki};
use super::node::{now_ms, Provider};

/// The hub's provider.
pub const ALPHA: &str = "alpha.example";
/// The guest provider.
pub const BETA: &str = "beta.example";

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// HTTPS requests the clients made.
    pub client_requests: u64,
    /// HTTPS requests the providers served (clients' and each other's).
    pub served_requests: u64,
    /// Fanout instructions the hub delivered (one message to one provider).
    pub fanouts: u64,
    /// Messages enqueued into client queues.
    pub enqueued: u64,
    /// Messages clients fetched from their queues.
    pub fetched: u64,
    /// Application messages clients decrypted.
    pub decrypted: u64,
    /// Queues a provider reported invalid, each fed to the hub as a `QueueRejected` event (the
    /// hub proposes a Remove for a member that uses it; the second report, for the commit
    /// that removed the wiped laptop, finds no member).
    pub rejected_queues: u64,
    /// Members left when the group was deleted.
    pub final_members: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
}

struct Demo<'a> {
    out: &'a mut dyn Write,
    alpha: Provider,
    beta: Provider,
    http: HttpsClient,
    client_requests: u64,
    fetched: u64,
    decrypted: u64,
}

/// Runs the flow, writing a transcript to `out`. Panics if any step does not go as MIMI says
/// it must (it doubles as the loopback integration test).
pub fn run(out: &mut dyn Write) -> Summary {
    let started = Instant::now();
    let pki = Pki::new(&[ALPHA, BETA]).expect("certificates");
    let alpha = Provider::start(&pki, ALPHA, true, &[ALPHA, BETA]).expect("start alpha");
    let beta = Provider::start(&pki, BETA, false, &[ALPHA, BETA]).expect("start beta");
    let directory: HashMap<String, _> = [
        (ALPHA.to_string(), alpha.addr()),
        (BETA.to_string(), beta.addr()),
    ]
    .into();
    alpha.connect(&pki, &directory);
    beta.connect(&pki, &directory);
    // End-user clients present no certificate; they trust the demo CA.
    let http = HttpsClient::new(pki.client_config(None), directory);
    let mut demo = Demo {
        out,
        alpha,
        beta,
        http,
        client_requests: 0,
        fetched: 0,
        decrypted: 0,
    };
    demo.say(&format!(
        "providers: {ALPHA} (hub + queues) at https://{}, {BETA} (queues) at https://{}; TLS 1.3 only",
        demo.alpha.addr(),
        demo.beta.addr()
    ));

    demo.section("Discovery and queues");
    let ds_domain = demo.call("anyone", "GET", ALPHA, "/.well-known/mimi/ds-domain", &[]);
    assert_eq!(ds_domain.body, ALPHA.as_bytes());
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut bob = TestClient::new("bob", "phone", BETA);
    let mut bob_laptop = TestClient::new("bob", "laptop", BETA);
    let mut alice_laptop = TestClient::new("alice", "laptop", ALPHA);
    // Each user's clients share a user key, registered through their leaves: with it a new
    // device or a client that lost its state may fetch the GroupInfo (wire-format.md §4.11).
    TestClient::share_user_key(&mut [&mut alice, &mut alice_laptop]);
    TestClient::share_user_key(&mut [&mut bob, &mut bob_laptop]);
    for client in [&mut alice, &mut bob, &mut bob_laptop, &mut alice_laptop] {
        demo.create_queue(client);
    }

    demo.section("Alice creates a group and invites Bob's two clients (Welcome)");
    let request_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode");
    let response = demo.ds("alice/phone", "request_group_id", &request_id);
    let DsResponseBody::GroupId(group_id) = response else {
        panic!("no group id")
    };
    let group_id = group_id.as_slice().to_vec();
    let hub = demo
        .alpha
        .external_sender
        .clone()
        .expect("alpha runs the hub");
    alice.create_group(&group_id, &hub);
    demo.ds(
        "alice/phone",
        "create_group",
        &alice.create_group_request(now_ms()),
    );
    let add = alice.add_request(vec![bob.key_package(), bob_laptop.key_package()], now_ms());
    demo.ds("alice/phone", "add_users (commit + Welcome)", &add);
    alice.confirm_commit();
    for client in [&mut bob, &mut bob_laptop] {
        let welcome = demo.fetch(client).into_iter().find_map(|r| match r {
            Received::Welcome(w) => Some(w),
            _ => None,
        });
        demo.join_from_welcome(client, &welcome.expect("a Welcome in the queue"));
    }

    demo.section("Messages");
    demo.message(&mut alice, b"Hi Bob!");
    demo.fetch_all(&mut [&mut bob, &mut bob_laptop]);
    demo.message(&mut bob, b"Hi Alice, on my phone.");
    demo.fetch_all(&mut [&mut alice, &mut bob_laptop]);

    demo.section("Alice's laptop joins by external commit");
    demo.external_join(&mut alice_laptop, &group_id);
    demo.fetch_all(&mut [&mut alice, &mut bob, &mut bob_laptop]);

    demo.section("Bob's phone loses its state and resyncs by external commit");
    bob.lose_state();
    demo.say("bob/phone: state lost (same identity and queue, no MLS state)");
    demo.external_join(&mut bob, &group_id);
    demo.fetch_all(&mut [&mut alice, &mut alice_laptop, &mut bob_laptop]);
    demo.message(&mut bob, b"Back again.");
    demo.fetch_all(&mut [&mut alice, &mut alice_laptop, &mut bob_laptop]);

    demo.section("Bob's laptop is wiped: its provider rejects its queue, the hub removes it");
    let now = now_ms();
    let deleted = demo.call(
        "bob/laptop",
        "POST",
        BETA,
        "/queue_operation",
        &bob_laptop.qs_request(mimi_ds::wire::QsClientRequestBody::DeleteQueue, now),
    );
    assert_eq!(deleted.status, 200);
    demo.message(&mut alice, b"Anyone there?");
    assert_eq!(
        demo.beta_rejections(),
        1,
        "beta rejected the wiped laptop's queue"
    );
    demo.say(
        "alpha.example: beta answered invalid_client_queue_information; the hub proposed a Remove",
    );
    demo.fetch_all(&mut [&mut alice_laptop, &mut bob]);
    demo.fetch_all(&mut [&mut alice]);
    demo.commit(&mut alice, "commits the hub's Remove", |c| {
        c.update_request(now_ms())
    });
    demo.fetch_all(&mut [&mut alice_laptop, &mut bob]);

    demo.section("Alice removes Bob's phone, then deletes the group");
    let bob_leaf = bob.leaf();
    demo.commit(&mut alice, "remove_users", |c| {
        c.remove_request(&[bob_leaf], now_ms())
    });
    let received = demo.fetch(&mut bob);
    assert!(received
        .iter()
        .any(|r| matches!(r, Received::Commit { removed: true, .. })));
    demo.fetch_all(&mut [&mut alice_laptop]);
    let final_members = alice.group().members().count();
    demo.commit(&mut alice, "delete_group", |c| {
        c.delete_group_request(now_ms())
    });
    demo.fetch_all(&mut [&mut alice_laptop]);
    let gone = demo.call(
        "alice/phone",
        "POST",
        ALPHA,
        "/external_commit_information",
        &alice.signed_group_info_request(&group_id, None, now_ms()),
    );
    assert_eq!(gone.status, 404, "a deleted group is unknown");

    let summary = Summary {
        client_requests: demo.client_requests,
        served_requests: demo.alpha.counters().requests.load(Ordering::Relaxed)
            + demo.beta.counters().requests.load(Ordering::Relaxed),
        fanouts: demo.alpha.counters().fanouts.load(Ordering::Relaxed),
        enqueued: demo.alpha.counters().enqueued.load(Ordering::Relaxed)
            + demo.beta.counters().enqueued.load(Ordering::Relaxed),
        fetched: demo.fetched,
        decrypted: demo.decrypted,
        rejected_queues: demo
            .alpha
            .counters()
            .rejected_queues
            .load(Ordering::Relaxed),
        final_members,
        elapsed: started.elapsed(),
    };
    demo.section("Summary");
    let s = &summary;
    demo.say(&format!(
        "HTTPS requests by clients:       {}",
        s.client_requests
    ));
    demo.say(&format!(
        "HTTPS requests served:           {} (incl. hub -> beta deliveries)",
        s.served_requests
    ));
    demo.say(&format!("fanout deliveries by the hub:    {}", s.fanouts));
    demo.say(&format!(
        "messages enqueued / fetched:     {} / {}",
        s.enqueued, s.fetched
    ));
    demo.say(&format!("application messages decrypted:  {}", s.decrypted));
    demo.say(&format!(
        "queues reported invalid:         {}",
        s.rejected_queues
    ));
    demo.say(&format!(
        "time taken:                      {:.2?}",
        s.elapsed
    ));
    summary
}

impl Demo<'_> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
    }

    fn section(&mut self, title: &str) {
        self.say(&format!("\n== {title}"));
    }

    /// One HTTPS request, printed with its answer.
    fn call(
        &mut self,
        who: &str,
        method: &str,
        domain: &str,
        path: &str,
        body: &[u8],
    ) -> HttpResponse {
        self.client_requests += 1;
        let response = if method == "GET" {
            self.http.get(domain, path)
        } else {
            self.http.post(domain, path, OCTET_STREAM, body)
        }
        .expect("HTTPS request");
        self.say(&format!(
            "{who:<18} {method} https://{domain}{path} ({} bytes) -> {} ({} bytes)",
            body.len(),
            response.status,
            response.body.len()
        ));
        response
    }

    /// A DS request to the hub; panics unless it is accepted.
    fn ds(&mut self, who: &str, operation: &str, request: &[u8]) -> DsResponseBody {
        let response = self.call(who, "POST", ALPHA, "/group_operation", request);
        let body = decode_exact::<DsResponse>(&response.body)
            .expect("DSResponse")
            .body;
        assert_eq!(response.status, 200, "{operation}: {body:?}");
        let detail = match &body {
            DsResponseBody::Accepted(a) => {
                format!("accepted as #{} in epoch {}", a.sequence_number, a.epoch)
            }
            DsResponseBody::GroupId(id) => {
                format!("group {}", String::from_utf8_lossy(id.as_slice()))
            }
            _ => "ok".into(),
        };
        self.say(&format!("{:<18}   {operation}: {detail}", ""));
        body
    }

    fn create_queue(&mut self, client: &mut TestClient) {
        let who = format!("{}/{}", client.user, client.name);
        let domain = provider_of(client);
        let response = self.call(
            &who,
            "POST",
            &domain,
            "/queue_operation",
            &client.create_queue_request(now_ms()),
        );
        assert_eq!(response.status, 200);
        // Sealed for deliveries from the hub at alpha only (wire-format.md §10.1).
        client.use_queue(&response.body, ALPHA);
        self.say(&format!(
            "{:<18}   queue created; published sealed to {domain}'s key for the hub ({} bytes, opaque to the hub)",
            "",
            client.queue.queue.as_slice().len()
        ));
    }

    /// Fetches a client's queue page by page, acknowledges it, and processes what came.
    fn fetch(&mut self, client: &mut TestClient) -> Vec<Received> {
        let who = format!("{}/{}", client.user, client.name);
        let domain = provider_of(client);
        loop {
            let response = self.call(
                &format!("{who} fetch"),
                "POST",
                &domain,
                "/queue_operation",
                &client.fetch_request(50, now_ms()),
            );
            assert_eq!(response.status, 200);
            let (count, remaining) = client.take_page(&response.body);
            self.fetched += count as u64;
            if remaining == 0 {
                break;
            }
        }
        let ack = self.call(
            &format!("{who} ack"),
            "POST",
            &domain,
            "/queue_operation",
            &client.ack_request(now_ms()),
        );
        assert_eq!(ack.status, 200);
        let received = client.process_inbox();
        for item in &received {
            let what = match item {
                Received::Application(text) => {
                    self.decrypted += 1;
                    format!("message \"{}\"", String::from_utf8_lossy(text))
                }
                Received::Commit { removed: true, .. } => "commit: removed from the group".into(),
                Received::Commit { epoch, .. } => format!("commit: now at epoch {epoch}"),
                Received::Proposal => "proposal: stored for the next commit".into(),
                Received::Welcome(_) => "Welcome".into(),
            };
            self.say(&format!("{:<18}   got {what}", ""));
        }
        received
    }

    fn fetch_all(&mut self, clients: &mut [&mut TestClient]) {
        for client in clients.iter_mut() {
            self.fetch(client);
        }
    }

    fn join_from_welcome(&mut self, client: &mut TestClient, welcome: &MlsMessageBytes) {
        let who = format!("{}/{}", client.user, client.name);
        let (request, processed) = client.welcome_info_request(welcome, now_ms());
        let response = self.call(&who, "POST", ALPHA, "/welcome_information", &request);
        let DsResponseBody::WelcomeInfo(info) = decode_exact::<DsResponse>(&response.body)
            .expect("DSResponse")
            .body
        else {
            panic!("welcome_info refused")
        };
        client.join_with_tree(processed, &info.ratchet_tree);
        self.say(&format!(
            "{:<18}   joined at epoch {} with the tree from the hub",
            "",
            client.epoch()
        ));
    }

    fn external_join(&mut self, client: &mut TestClient, group_id: &[u8]) {
        let who = format!("{}/{}", client.user, client.name);
        let response = self.call(
            &who,
            "POST",
            ALPHA,
            "/external_commit_information",
            &client.signed_group_info_request(group_id, None, now_ms()),
        );
        let DsResponseBody::ExternalCommitInfo(info) = decode_exact::<DsResponse>(&response.body)
            .expect("DSResponse")
            .body
        else {
            panic!("group_info refused")
        };
        let info: ExternalCommitInfo = info;
        self.ds(&who, "external_join", &client.external_join_request(&info));
        client.confirm_commit();
        self.say(&format!(
            "{:<18}   joined at epoch {} as leaf {}; {} members",
            "",
            client.epoch(),
            client.leaf(),
            client.group().members().count()
        ));
    }

    fn message(&mut self, client: &mut TestClient, text: &[u8]) {
        let who = format!("{}/{}", client.user, client.name);
        let request = client.message_request(text, now_ms());
        self.ds(
            &who,
            &format!("send_message \"{}\"", String::from_utf8_lossy(text)),
            &request,
        );
    }

    fn commit(
        &mut self,
        client: &mut TestClient,
        operation: &str,
        build: impl FnOnce(&mut TestClient) -> Vec<u8>,
    ) {
        let who = format!("{}/{}", client.user, client.name);
        let request = build(client);
        self.ds(&who, operation, &request);
        client.confirm_commit();
    }

    fn beta_rejections(&self) -> u64 {
        self.alpha
            .counters()
            .rejected_queues
            .load(Ordering::Relaxed)
    }
}

fn provider_of(client: &TestClient) -> String {
    String::from_utf8_lossy(client.queue.provider_domain.as_slice()).into_owned()
}
