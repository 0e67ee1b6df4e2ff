//! Crash safety: the hub process (`mimi-ds-server --hub`) is killed with `SIGKILL` at random
//! points of a stream of real clients' commits and messages, and started again on the same
//! database and state folder. The other provider's Queueing Service process is killed too, now
//! and then. Clients do what wire-format.md §3.4 tells them: a request that got no answer is
//! sent again, byte for byte, and a byte-identical retry of an accepted request gets the
//! original answer and no second fanout.
//!
//! Checked, once on SQLite and once on PostgreSQL:
//! * nothing accepted is lost: every accepted message reaches every recipient's queue (the
//!   relay delivers the outbox left by a killed process after the restart);
//! * nothing phantom: no queue holds a message the hub did not accept (a retried request whose
//!   first answer was lost is one message, delivered once), and the database holds one replay
//!   mark per accepted request;
//! * the groups stay consistent with the clients' view: every member processes everything
//!   with openmls and all agree on the epoch, the ratchet tree and the epoch authenticator, and
//!   a last message reaches everyone.
//!
//! The kill points come from a seeded generator; the seed is printed, and
//! `MIMI_DS_CRASH_SEED=<seed>` repeats its choices (the timing of a run still varies).

mod support;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimi_ds::testing::{Received, TestClient};
use mimi_ds::wire::{ErrorCode, FanoutMessage};
use support::groups::{Transport, World};
use support::ledger::{answer_of, Answer};
use support::process::{ServerFlags, ServerProcess};
use support::*;
use tokio::sync::Mutex;

/// Groups in the stream.
const GROUPS: usize = 2;
/// Commits and messages in the stream (each after its sender caught up).
const STEPS: usize = 40;
/// The chance that a request to the hub has a kill timed somewhere around it.
const HUB_KILL_CHANCE: f64 = 0.15;
/// The chance that a request to the other provider has one.
const QS_KILL_CHANCE: f64 = 0.08;
/// Every this many commits or messages of the stream, the client drops the hub's answer and
/// the hub is killed right after answering: the write is certainly durable and the answer
/// certainly lost, so the retry must be answered from the stored response.
const LOSE_ANSWER_EVERY: usize = 8;
/// A kill fires this long (at most) after its request was sent: debug builds take a few to
/// tens of milliseconds per request, so kills land before, during and after the write.
const KILL_WITHIN_MS: u64 = 40;
/// A hub kill is scheduled at the latest after this many armed requests to the hub without
/// one: chance alone gives fewer than 3 kills in about one run of twenty, and the run then
/// tests little (the check after the stream asks for 3).
const HUB_KILL_AT_LEAST_EVERY: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_killed_at_random_points_loses_nothing_on_sqlite() {
    let root = tempfile::tempdir().expect("tmp");
    let storage = format!("sqlite:{}", root.path().join("hub.sqlite3").display());
    run(&root, storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_killed_at_random_points_loses_nothing_on_postgresql() {
    let root = tempfile::tempdir().expect("tmp");
    let storage = support::postgres::fresh_database().await;
    run(&root, storage).await;
}

/// SplitMix64: a few random choices from a printed seed, without a dependency.
struct Rng(Cell<u64>);

impl Rng {
    fn next(&self) -> u64 {
        let state = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Requests to a hub and a QS provider that get killed; every lost answer is retried.
struct Crashing {
    net: Arc<Net>,
    hub: Arc<Mutex<ServerProcess>>,
    beta: Arc<Mutex<ServerProcess>>,
    rng: Rng,
    /// Whether kills are being scheduled (not while the groups are set up).
    armed: Cell<bool>,
    /// The scheduled kill, if one has not fired yet.
    pending_kill: RefCell<Option<tokio::task::JoinHandle<()>>>,
    kills: Cell<[u32; 2]>,
    /// Armed requests to the hub since its last scheduled kill.
    hub_requests_since_kill: Cell<u32>,
    lost_answers: Cell<u32>,
}

impl Crashing {
    /// Sends a DS request, takes its answer, then acts as if it were lost: kills the hub
    /// and sends the same bytes again after the restart. The second answer must be the first,
    /// byte for byte (wire-format.md §3.4).
    async fn post_and_lose_answer(&self, request: Vec<u8>) -> (u16, Vec<u8>) {
        let first = self.post(ALPHA, "/group_operation", request.clone()).await;
        self.hub.lock().await.kill();
        self.lost_answers.set(self.lost_answers.get() + 1);
        let second = self.post(ALPHA, "/group_operation", request).await;
        assert_eq!(second, first, "a retry after the crash got another answer");
        second
    }

    fn server(&self, domain: &str) -> &Arc<Mutex<ServerProcess>> {
        if domain == ALPHA {
            &self.hub
        } else {
            &self.beta
        }
    }

    /// Maybe schedules a `SIGKILL` of `domain`'s server a few milliseconds from now, and its
    /// restart.
    fn maybe_schedule_kill(&self, domain: &str) {
        let chance = if domain == ALPHA {
            HUB_KILL_CHANCE
        } else {
            QS_KILL_CHANCE
        };
        if !self.armed.get() {
            return;
        }
        let which = usize::from(domain != ALPHA);
        let overdue = which == 0 && {
            let since = self.hub_requests_since_kill.get() + 1;
            self.hub_requests_since_kill.set(since);
            since >= HUB_KILL_AT_LEAST_EVERY
        };
        // The draw is made in every case, so that a seed's later choices do not depend on
        // whether this kill was overdue.
        if !self.rng.chance(chance) && !overdue {
            return;
        }
        let mut pending = self.pending_kill.borrow_mut();
        if pending.as_ref().is_some_and(|k| !k.is_finished()) {
            return;
        }
        if which == 0 {
            self.hub_requests_since_kill.set(0);
        }
        let mut kills = self.kills.get();
        kills[which] += 1;
        self.kills.set(kills);
        let delay = Duration::from_millis(self.rng.below(KILL_WITHIN_MS));
        let server = Arc::clone(self.server(domain));
        // Killed, then started again at once, as a service manager would: a provider left
        // down for long would only stretch the relay's backoff (up to minutes).
        *pending = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            server.lock().await.restart().await;
        }));
    }

    /// The server's address, started again first if it was killed.
    async fn running(&self, domain: &str) -> std::net::SocketAddr {
        let mut server = self.server(domain).lock().await;
        if !server.is_running() {
            server.restart().await;
        }
        server.addr
    }
}

impl Transport for Crashing {
    async fn post(&self, domain: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        for _ in 0..50 {
            let address = self.running(domain).await;
            self.maybe_schedule_kill(domain);
            match self.net.try_post(domain, address, path, body.clone()).await {
                // The same bytes again: a retry of an accepted request gets its answer
                // (wire-format.md §3.4); a `conflict` changed nothing (§2.3).
                Err(_) => self.lost_answers.set(self.lost_answers.get() + 1),
                Ok((409, answer))
                    if path != "/queue_operation"
                        && answer_of(&answer) == Answer::Rejected(ErrorCode::Conflict) => {}
                Ok(answer) => return answer,
            }
        }
        panic!("{domain}{path}: no answer in 50 attempts");
    }

    async fn fetch(&self, client: &mut TestClient) -> Vec<FanoutMessage> {
        let domain = provider_of(client);
        for _ in 0..50 {
            let address = self.running(&domain).await;
            self.maybe_schedule_kill(&domain);
            match self.net.try_fetch_raw(client, address).await {
                Ok(messages) => return messages,
                Err(_) => self.lost_answers.set(self.lost_answers.get() + 1),
            }
        }
        panic!("{domain}: no fetch answered in 50 attempts");
    }

    async fn diagnostics(&self) -> String {
        format!(
            "--- hub\n{}\n--- beta\n{}",
            self.hub.lock().await.log_tail(),
            self.beta.lock().await.log_tail()
        )
    }
}

async fn run(root: &tempfile::TempDir, hub_storage: String) {
    let started = Instant::now();
    let seed = std::env::var("MIMI_DS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()));
    eprintln!("crash test seed: {seed} (MIMI_DS_CRASH_SEED={seed} repeats the kill choices)");

    let pki = Pki::new(&[ALPHA, BETA]);
    let beta_flags = ServerFlags::beta_queueing_service(&pki, root.path());
    let beta = ServerProcess::start("beta", beta_flags).await;
    let hub_flags =
        ServerFlags::alpha_hub(&pki, root.path(), hub_storage.clone(), &[(BETA, beta.addr)]);
    let hub = ServerProcess::start("alpha", hub_flags).await;
    let net = Arc::new(Net { pki });
    let external_sender = net.hub_external_sender(ALPHA, hub.addr).await;
    let transport = Crashing {
        net,
        hub: Arc::new(Mutex::new(hub)),
        beta: Arc::new(Mutex::new(beta)),
        rng: Rng(Cell::new(seed)),
        armed: Cell::new(false),
        pending_kill: RefCell::new(None),
        kills: Cell::new([0, 0]),
        hub_requests_since_kill: Cell::new(0),
        lost_answers: Cell::new(0),
    };

    let outcome = tokio::time::timeout(
        Duration::from_secs(150),
        stream(&transport, &external_sender),
    )
    .await;
    let Ok(world) = outcome else {
        panic!(
            "seed {seed}: not done within 150 s\n--- hub\n{}",
            transport.hub.lock().await.log_tail()
        );
    };
    let [hub_kills, qs_kills] = transport.kills.get();
    let hub_starts = transport.hub.lock().await.starts;
    assert!(
        hub_kills >= 3 && hub_starts > 3,
        "seed {seed}: only {hub_kills} kills, {hub_starts} starts: the stream tested little"
    );

    world.ledger.check_sequences();
    world.ledger.check_deliveries(&world.received);
    let out_of_order: usize = world
        .received
        .iter()
        .map(|queue| {
            queue
                .windows(2)
                .filter(|w| w[0].sequence_number > w[1].sequence_number)
                .count()
        })
        .sum();
    // Every queue holds the hub's order, also when the QS process was killed: a failed
    // delivery is retried before anything written for that provider after it (the outbox
    // keeps each destination's order, `DsOutbox::pending`), and a crashing hub delivers its
    // outbox in order after each start.
    assert_eq!(
        out_of_order, 0,
        "seed {seed}: a queue out of sequence order ({qs_kills} QS kills)"
    );
    // Nothing phantom in storage either: one replay mark per accepted signed request.
    assert_eq!(
        count(&hub_storage, "mimi_ds_replay").await,
        world.signed_accepted,
        "seed {seed}: replay marks"
    );
    eprintln!(
        "seed {seed}: {} accepted messages, {hub_kills} hub kills ({hub_starts} starts), \
         {qs_kills} QS kills, {} answers lost and retried, in {:?}",
        world.ledger.entries.len(),
        transport.lost_answers.get(),
        started.elapsed()
    );
}

/// Sets the groups up (no kills), then the stream with kills, then the final checks that need
/// the clients: everyone caught up, agreeing, and a last message round-trips.
async fn stream(transport: &Crashing, hub: &openmls::prelude::ExternalSender) -> World {
    let mut world = World::build(transport, hub, GROUPS, &[ALPHA, BETA, ALPHA, BETA]).await;
    transport.armed.set(true);
    for step in 0..STEPS {
        let g = transport.rng.below(GROUPS as u64) as usize;
        let group = world.groups[g].clone();
        let sender = group.members[transport.rng.below(group.members.len() as u64) as usize];
        let commit = transport.rng.chance(0.25);
        world.catch_up(transport, sender).await;
        let request = if commit {
            world.clients[sender].update_request(now_ms())
        } else {
            world.clients[sender].message_request(format!("step {step}").as_bytes(), now_ms())
        };
        let (status, body) = if step % LOSE_ANSWER_EVERY == LOSE_ANSWER_EVERY - 1 {
            transport.post_and_lose_answer(request.clone()).await
        } else {
            transport
                .post(ALPHA, "/group_operation", request.clone())
                .await
        };
        let Answer::Accepted(accepted) = answer_of(&body) else {
            panic!("step {step}: refused ({status}): {:?}", answer_of(&body));
        };
        if commit {
            world.clients[sender].confirm_commit();
        }
        world
            .ledger
            .accept(&group.id, &request, accepted, sender, &group.members, &[]);
        world.signed_accepted += 1;
    }
    transport.armed.set(false);
    let last_kill = transport.pending_kill.borrow_mut().take();
    if let Some(kill) = last_kill {
        let _ = kill.await;
    }

    for (g, group) in world.groups.clone().iter().enumerate() {
        for &m in &group.members {
            world.catch_up(transport, m).await;
        }
        world.assert_agree(g);
        let sender = group.members[0];
        let text = format!("last words in group {g}").into_bytes();
        let request = world.clients[sender].message_request(&text, now_ms());
        let (_, body) = transport
            .post(ALPHA, "/group_operation", request.clone())
            .await;
        let Answer::Accepted(accepted) = answer_of(&body) else {
            panic!("the last message was refused");
        };
        world
            .ledger
            .accept(&group.id, &request, accepted, sender, &group.members, &[]);
        world.signed_accepted += 1;
        for &m in &group.members[1..] {
            let got = world.catch_up(transport, m).await;
            assert!(
                got.contains(&Received::Application(text.clone())),
                "client {m}: {got:?}"
            );
        }
    }
    world
}

/// Rows in `table` of the hub's database.
async fn count(storage: &str, table: &str) -> usize {
    if let Some(path) = storage.strip_prefix("sqlite:") {
        let connection = rusqlite::Connection::open(path).expect("open");
        let rows: i64 = connection
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect("count");
        return rows as usize;
    }
    let (client, connection) = tokio_postgres::connect(storage, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count");
    row.get::<_, i64>(0) as usize
}
