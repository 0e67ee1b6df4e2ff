//! The whole life of a group on the real server, shared by `examples/demo/main.rs` and
//! `tests/demo.rs`.
//!
//! Alice (phone, later laptop) is at alpha, Bob (phone, laptop) at beta. Every client is a
//! real openmls `MlsGroup`; it creates its queue at its provider, publishes it sealed to the
//! provider's key, sends its requests to the hub, and fetches its messages from its queue.
//! The hub answers a request once its write (and the fanout it causes, in the durable outbox)
//! is stored; its relay then delivers the fanout, to beta over mutual TLS. So a client polls
//! its queue until what it expects has arrived, within [`DELIVERY_WAIT`].

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mimi_ds::testing::{Received, TestClient};
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    ExternalCommitInfo, MlsMessageBytes, QsClientRequestBody, PROTOCOL_VERSION_MIMI_DS10,
};

use crate::net::{Answer, Error, Https};
use crate::providers::{self, Options, Providers, ALPHA, BETA};

/// How long a client waits for the relay to bring what it expects.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(30);
/// Between two fetches of a queue that did not yet hold everything.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// HTTPS requests the clients made.
    pub client_requests: u64,
    /// Fanouts the hub's relay delivered (one message to one provider's QS).
    pub delivered: u64,
    /// Failed delivery attempts, each retried after a backoff.
    pub failed_attempts: u64,
    /// Messages clients fetched from their queues.
    pub fetched: u64,
    /// Application messages clients decrypted.
    pub decrypted: u64,
    /// Queues a QS reported invalid, each fed to the hub as a `QueueRejected` event (the hub
    /// proposes a Remove for a member that uses it; the report for the commit that removed
    /// the wiped laptop finds no member).
    pub rejected_queues: u64,
    /// Members left when the group was deleted.
    pub final_members: usize,
    /// Each provider's storage and its tables' row counts after the run.
    pub databases: Vec<(providers::Storage, Vec<(String, i64)>)>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

struct Demo<'a> {
    out: &'a mut dyn Write,
    providers: Providers,
    https: Https,
    several_hubs: bool,
    client_requests: u64,
    fetched: u64,
    decrypted: u64,
}

/// The host clock in ms since the UNIX epoch (clients sign their requests with it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the flow, writing a transcript to `out`. Panics if any step does not go as MIMI says
/// it must (it doubles as the loopback integration test); errors are those of starting the
/// servers or of the network.
pub async fn run(options: &Options, out: &mut dyn Write) -> Result<Summary, Error> {
    let started = Instant::now();
    let providers = Providers::start(options).await?;
    // End-user clients present no certificate; they trust the demo CA.
    let https = Https::new(providers.pki.end_user_client(), providers.servers());
    let mut demo = Demo {
        out,
        several_hubs: providers.alpha.len() > 1,
        providers,
        https,
        client_requests: 0,
        fetched: 0,
        decrypted: 0,
    };
    let alpha_at: Vec<String> = demo
        .providers
        .alpha
        .iter()
        .map(|a| format!("https://{}", a.local_addr()))
        .collect();
    demo.say(&format!(
        "providers (mimi-ds-server, HTTP/1.1 and HTTP/2, TLS 1.3 only, certificates from a CA made at start-up):\n  \
         {ALPHA} (hub + queues) at {}\n  {BETA} (queues) at https://{}",
        alpha_at.join(", "),
        demo.providers.beta.local_addr()
    ));
    for storage in demo.providers.storage.clone() {
        demo.say(&format!(
            "  {} storage: {}",
            storage.domain,
            describe(&storage)
        ));
    }

    demo.section("Discovery and queues");
    let ds_domain = demo
        .call("anyone", ALPHA, "/.well-known/mimi/ds-domain", &[])
        .await?;
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
        demo.create_queue(client).await?;
    }

    demo.section("Alice creates a group and invites Bob's two clients (Welcome)");
    let request_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })?;
    let DsResponseBody::GroupId(group_id) = demo
        .ds("alice/phone", "request_group_id", &request_id)
        .await?
    else {
        panic!("no group id")
    };
    let group_id = group_id.as_slice().to_vec();
    let hub = demo.providers.hub().clone();
    alice.create_group(&group_id, &hub);
    let create = alice.create_group_request(now_ms());
    demo.ds("alice/phone", "create_group", &create).await?;
    let add = alice.add_request(vec![bob.key_package(), bob_laptop.key_package()], now_ms());
    demo.ds("alice/phone", "add_users (commit + Welcome)", &add)
        .await?;
    alice.confirm_commit();
    for client in [&mut bob, &mut bob_laptop] {
        let received = demo.fetch(client, 1).await?;
        let welcome = received.into_iter().find_map(|r| match r {
            Received::Welcome(w) => Some(w),
            _ => None,
        });
        demo.join_from_welcome(client, &welcome.expect("a Welcome in the queue"))
            .await?;
    }

    demo.section("Messages");
    demo.message(&mut alice, b"Hi Bob!").await?;
    demo.fetch_all(&mut [&mut bob, &mut bob_laptop], 1).await?;
    demo.message(&mut bob, b"Hi Alice, on my phone.").await?;
    demo.fetch_all(&mut [&mut alice, &mut bob_laptop], 1)
        .await?;

    demo.section("Alice's laptop joins by external commit");
    demo.external_join(&mut alice_laptop, &group_id).await?;
    demo.fetch_all(&mut [&mut alice, &mut bob, &mut bob_laptop], 1)
        .await?;

    demo.section("Bob's phone loses its state and resyncs by external commit");
    bob.lose_state();
    demo.say("bob/phone: state lost (same identity and queue, no MLS state)");
    demo.external_join(&mut bob, &group_id).await?;
    demo.fetch_all(&mut [&mut alice, &mut alice_laptop, &mut bob_laptop], 1)
        .await?;
    demo.message(&mut bob, b"Back again.").await?;
    demo.fetch_all(&mut [&mut alice, &mut alice_laptop, &mut bob_laptop], 1)
        .await?;

    demo.section("Bob's laptop is wiped: its provider rejects its queue, the hub removes it");
    let delete = bob_laptop.qs_request(QsClientRequestBody::DeleteQueue, now_ms());
    let deleted = demo
        .call("bob/laptop", BETA, "/queue_operation", &delete)
        .await?;
    assert_eq!(deleted.status, 200);
    demo.say(&format!("{:<18}   queue deleted", ""));
    demo.message(&mut alice, b"Anyone there?").await?;
    let waited = Instant::now();
    while demo.providers.rejected_queues() == 0 {
        assert!(
            waited.elapsed() < DELIVERY_WAIT,
            "beta never rejected the wiped laptop's queue"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    demo.say(
        "alpha.example relay: beta answered invalid_client_queue_information for bob/laptop's \
         queue; the hub proposed removing bob/laptop (a QueueRejected event)",
    );
    // The message, then the hub's proposal.
    demo.fetch_all(&mut [&mut alice_laptop, &mut bob], 2)
        .await?;
    demo.fetch_all(&mut [&mut alice], 1).await?;
    demo.commit(&mut alice, "commits the hub's Remove", |c| {
        c.update_request(now_ms())
    })
    .await?;
    demo.fetch_all(&mut [&mut alice_laptop, &mut bob], 1)
        .await?;

    demo.section("Alice removes Bob's phone, then deletes the group");
    let bob_leaf = bob.leaf();
    demo.commit(&mut alice, "remove_users", |c| {
        c.remove_request(&[bob_leaf], now_ms())
    })
    .await?;
    let received = demo.fetch(&mut bob, 1).await?;
    assert!(received
        .iter()
        .any(|r| matches!(r, Received::Commit { removed: true, .. })));
    demo.fetch_all(&mut [&mut alice_laptop], 1).await?;
    let final_members = alice.group().members().count();
    demo.commit(&mut alice, "delete_group", |c| {
        c.delete_group_request(now_ms())
    })
    .await?;
    demo.fetch_all(&mut [&mut alice_laptop], 1).await?;
    let info_request = alice.signed_group_info_request(&group_id, None, now_ms());
    let gone = demo
        .call(
            "alice/phone",
            ALPHA,
            "/external_commit_information",
            &info_request,
        )
        .await?;
    assert_eq!(gone.status, 404, "a deleted group is unknown");

    // The relay may still be reporting the commit that removed the wiped laptop to the hub.
    let waited = Instant::now();
    while providers::outbox_entries(&demo.providers.storage[0]).await? > 0 {
        assert!(
            waited.elapsed() < DELIVERY_WAIT,
            "the relay did not drain the outbox"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let delivered = demo.providers.delivered();
    let failed_attempts = demo.providers.failed_attempts();
    let rejected_queues = demo.providers.rejected_queues();
    let Demo {
        out,
        providers,
        client_requests,
        fetched,
        decrypted,
        ..
    } = demo;
    let storage = providers.storage.clone();
    providers.shutdown().await;
    let mut databases = Vec::new();
    for storage in storage {
        let sizes = providers::table_sizes(&storage).await?;
        databases.push((storage, sizes));
    }
    let summary = Summary {
        client_requests,
        delivered,
        failed_attempts,
        fetched,
        decrypted,
        rejected_queues,
        final_members,
        databases,
        elapsed: started.elapsed(),
    };
    print_summary(out, &summary);
    Ok(summary)
}

fn describe(storage: &providers::Storage) -> String {
    match (storage.sqlite_path(), storage.postgres_url()) {
        (Some(path), _) => format!(
            "SQLite file {} (hub: groups, outbox) and SQLite file {} (Queueing Service: queues)",
            path.display(),
            storage.qs_sqlite_path().unwrap_or_default().display()
        ),
        (_, Some(url)) => format!(
            "PostgreSQL schema {} in {}",
            storage.schema.as_deref().unwrap_or("?"),
            without_password(storage.database_url.as_deref().unwrap_or(url))
        ),
        _ => "memory".into(),
    }
}

/// The URL with its password (if any) replaced, for printing.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

fn print_summary(out: &mut dyn Write, s: &Summary) {
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    say("\n== Summary".into());
    say(format!(
        "HTTPS requests by clients:       {}",
        s.client_requests
    ));
    say(format!(
        "fanouts delivered by the relay:  {} (from the durable outbox; {} failed attempts retried)",
        s.delivered, s.failed_attempts
    ));
    say(format!("messages fetched from queues:    {}", s.fetched));
    say(format!("application messages decrypted:  {}", s.decrypted));
    say(format!(
        "queues reported invalid:         {} (each a QueueRejected event at the hub)",
        s.rejected_queues
    ));
    say(format!(
        "members when deleted:            {} (alice/phone, alice/laptop)",
        s.final_members
    ));
    say(format!(
        "time taken:                      {:.2?}",
        s.elapsed
    ));
    say("\n== Databases (kept after the run)".into());
    for (storage, sizes) in &s.databases {
        say(format!("{}: {}", storage.domain, describe(storage)));
        let rows: Vec<String> = sizes
            .iter()
            .map(|(table, rows)| format!("{table} {rows}"))
            .collect();
        say(format!("  rows: {}", rows.join(", ")));
        let keys = if storage.domain == ALPHA {
            "the hub's signature key and the queue key"
        } else {
            "the queue key"
        };
        say(format!(
            "  keys: {} ({keys}; keep this folder with the database)",
            storage.state_dir.display()
        ));
        if let (Some(path), Some(qs_path)) = (storage.sqlite_path(), storage.qs_sqlite_path()) {
            say(format!(
                "  look inside: sqlite3 {} '.tables'; sqlite3 {} '.tables'",
                path.display(),
                qs_path.display()
            ));
        }
        if let Some(schema) = &storage.schema {
            say(format!(
                "  look inside: \\dt {schema}.*   remove: DROP SCHEMA {schema} CASCADE"
            ));
        }
    }
}

impl Demo<'_> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
    }

    fn section(&mut self, title: &str) {
        self.say(&format!("\n== {title}"));
    }

    /// One HTTPS request (GET when `body` is empty, else POST), printed with its answer.
    async fn call(
        &mut self,
        who: &str,
        domain: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Answer, Error> {
        self.client_requests += 1;
        let answer = self.https.request(domain, path, body).await?;
        let method = if body.is_empty() { "GET" } else { "POST" };
        let instance = if self.several_hubs && domain == ALPHA {
            format!(" [alpha instance {}]", answer.instance + 1)
        } else {
            String::new()
        };
        self.say(&format!(
            "{who:<18} {method} https://{domain}{path} ({} bytes) -> {} ({} bytes){instance}",
            body.len(),
            answer.status,
            answer.body.len()
        ));
        Ok(answer)
    }

    /// A DS request to the hub; panics unless it is accepted.
    async fn ds(
        &mut self,
        who: &str,
        operation: &str,
        request: &[u8],
    ) -> Result<DsResponseBody, Error> {
        let answer = self.call(who, ALPHA, "/group_operation", request).await?;
        let body = decode_exact::<DsResponse>(&answer.body)?.body;
        assert_eq!(answer.status, 200, "{operation}: {body:?}");
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
        Ok(body)
    }

    async fn create_queue(&mut self, client: &mut TestClient) -> Result<(), Error> {
        let who = format!("{}/{}", client.user, client.name);
        let domain = provider_of(client);
        let request = client.create_queue_request(now_ms());
        let answer = self
            .call(&who, &domain, "/queue_operation", &request)
            .await?;
        assert_eq!(answer.status, 200);
        // Sealed for deliveries from the hub at alpha only (wire-format.md §10.1).
        client.use_queue(&answer.body, ALPHA);
        self.say(&format!(
            "{:<18}   queue created; published sealed to {domain}'s key for the hub ({} bytes, opaque to the hub)",
            "",
            client.queue.queue.as_slice().len()
        ));
        Ok(())
    }

    /// Fetches a client's queue (page by page, acknowledging what came) and processes it,
    /// until `expected` messages have arrived; panics after [`DELIVERY_WAIT`].
    async fn fetch(
        &mut self,
        client: &mut TestClient,
        expected: usize,
    ) -> Result<Vec<Received>, Error> {
        let who = format!("{}/{}", client.user, client.name);
        let domain = provider_of(client);
        let started = Instant::now();
        let mut received = Vec::new();
        loop {
            let mut count = 0;
            loop {
                let request = client.fetch_request(50, now_ms());
                let answer = self
                    .call(
                        &format!("{who} fetch"),
                        &domain,
                        "/queue_operation",
                        &request,
                    )
                    .await?;
                assert_eq!(answer.status, 200);
                let (page, remaining) = client.take_page(&answer.body);
                count += page;
                if remaining == 0 {
                    break;
                }
            }
            if count > 0 {
                self.fetched += count as u64;
                let ack = client.ack_request(now_ms());
                let answer = self
                    .call(&format!("{who} ack"), &domain, "/queue_operation", &ack)
                    .await?;
                assert_eq!(answer.status, 200);
                for item in client.process_inbox() {
                    self.report(&item);
                    received.push(item);
                }
            }
            if received.len() >= expected {
                return Ok(received);
            }
            assert!(
                started.elapsed() < DELIVERY_WAIT,
                "{who}: {expected} message(s) not delivered within {DELIVERY_WAIT:?}; got {received:?}"
            );
            self.say(&format!(
                "{:<18}   (not there yet: the relay delivers after the hub answered; asking again)",
                ""
            ));
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn report(&mut self, item: &Received) {
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

    async fn fetch_all(
        &mut self,
        clients: &mut [&mut TestClient],
        expected: usize,
    ) -> Result<(), Error> {
        for client in clients.iter_mut() {
            self.fetch(client, expected).await?;
        }
        Ok(())
    }

    async fn join_from_welcome(
        &mut self,
        client: &mut TestClient,
        welcome: &MlsMessageBytes,
    ) -> Result<(), Error> {
        let who = format!("{}/{}", client.user, client.name);
        let (request, processed) = client.welcome_info_request(welcome, now_ms());
        let answer = self
            .call(&who, ALPHA, "/welcome_information", &request)
            .await?;
        let DsResponseBody::WelcomeInfo(info) = decode_exact::<DsResponse>(&answer.body)?.body
        else {
            panic!("welcome_info refused")
        };
        client.join_with_tree(processed, &info.ratchet_tree);
        self.say(&format!(
            "{:<18}   joined at epoch {} with the tree from the hub",
            "",
            client.epoch()
        ));
        Ok(())
    }

    async fn external_join(
        &mut self,
        client: &mut TestClient,
        group_id: &[u8],
    ) -> Result<(), Error> {
        let who = format!("{}/{}", client.user, client.name);
        let request = client.signed_group_info_request(group_id, None, now_ms());
        let answer = self
            .call(&who, ALPHA, "/external_commit_information", &request)
            .await?;
        let DsResponseBody::ExternalCommitInfo(info) =
            decode_exact::<DsResponse>(&answer.body)?.body
        else {
            panic!("group_info refused")
        };
        let info: ExternalCommitInfo = info;
        let join = client.external_join_request(&info);
        self.ds(&who, "external_join", &join).await?;
        client.confirm_commit();
        self.say(&format!(
            "{:<18}   joined at epoch {} as leaf {}; {} members",
            "",
            client.epoch(),
            client.leaf(),
            client.group().members().count()
        ));
        Ok(())
    }

    async fn message(&mut self, client: &mut TestClient, text: &[u8]) -> Result<(), Error> {
        let who = format!("{}/{}", client.user, client.name);
        let request = client.message_request(text, now_ms());
        let operation = format!("send_message \"{}\"", String::from_utf8_lossy(text));
        self.ds(&who, &operation, &request).await?;
        Ok(())
    }

    async fn commit(
        &mut self,
        client: &mut TestClient,
        operation: &str,
        build: impl FnOnce(&mut TestClient) -> Vec<u8>,
    ) -> Result<(), Error> {
        let who = format!("{}/{}", client.user, client.name);
        let request = build(client);
        self.ds(&who, operation, &request).await?;
        client.confirm_commit();
        Ok(())
    }
}

fn provider_of(client: &TestClient) -> String {
    String::from_utf8_lossy(client.queue.provider_domain.as_slice()).into_owned()
}
