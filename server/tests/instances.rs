//! Many instances, one database: two `mimi-ds-server` hub processes for the same domain share
//! one PostgreSQL database (and one state folder's keys, so one hub identity), each running
//! its own fanout relay over the shared outbox. Real openmls clients race commits and
//! messages to the same groups through both instances at once; a third process is the other
//! provider's Queueing Service.
//!
//! Checked against the clients' ledger of answers: per group the epochs strictly increase and
//! the sequence numbers are contiguous without duplicates; every accepted message reaches every
//! recipient's queue exactly once (though both relays may deliver it); a refused request
//! leaves no trace: its messages are in no queue, and it left no replay mark.

mod support;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimi_ds::testing::TestClient;
use mimi_ds::wire::{ErrorCode, FanoutMessage};
use support::groups::{Transport, World};
use support::ledger::{answer_of, Answer};
use support::process::{ServerFlags, ServerProcess};
use support::*;

/// Groups raced at once.
const GROUPS: usize = 3;
/// Rounds of racing: in each, every member of every group sends one request.
const ROUNDS: usize = 4;

/// `conflict` answers resent (the DS ran out of its own retries against the other instance).
static CONFLICTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Alternates between the hub instances; beta has one.
struct Instances {
    net: Arc<Net>,
    alpha: [SocketAddr; 2],
    beta: SocketAddr,
    turn: Cell<usize>,
}

impl Instances {
    fn next_alpha(&self) -> SocketAddr {
        let turn = self.turn.get();
        self.turn.set(turn + 1);
        self.alpha[turn % 2]
    }

    fn address(&self, domain: &str) -> SocketAddr {
        if domain == ALPHA {
            self.next_alpha()
        } else {
            self.beta
        }
    }
}

impl Transport for Instances {
    async fn post(&self, domain: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let address = self.address(domain);
        self.net
            .try_post(domain, address, path, body)
            .await
            .unwrap_or_else(|e| panic!("{domain} at {address}: {e}"))
    }

    async fn fetch(&self, client: &mut TestClient) -> Vec<FanoutMessage> {
        let address = self.address(&provider_of(client));
        self.net
            .try_fetch_raw(client, address)
            .await
            .expect("fetch")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_on_one_postgresql_database_serve_racing_clients() {
    let started = Instant::now();
    let root = tempfile::tempdir().expect("tmp");
    let url = support::postgres::fresh_database().await;
    let pki = Pki::new(&[ALPHA, BETA]);
    let beta_flags = ServerFlags::beta_queueing_service(&pki, root.path());
    let beta = ServerProcess::start("beta", beta_flags).await;
    // One state folder for both instances, and both started at once: one creates the hub's
    // key, the QS's queue key and the tables, the other waits for the tables and reads the
    // keys.
    let alpha_flags = ServerFlags::alpha_hub(&pki, root.path(), url.clone(), &[(BETA, beta.addr)]);
    let (alpha_1, alpha_2) = tokio::join!(
        ServerProcess::start("alpha-1", alpha_flags.clone()),
        ServerProcess::start("alpha-2", alpha_flags)
    );
    let net = Arc::new(Net { pki });
    let hub = net.hub_external_sender(ALPHA, alpha_1.addr).await;
    assert_eq!(
        net.hub_external_sender(ALPHA, alpha_2.addr).await,
        hub,
        "both instances are one hub"
    );
    let transport = Instances {
        net: Arc::clone(&net),
        alpha: [alpha_1.addr, alpha_2.addr],
        beta: beta.addr,
        turn: Cell::new(0),
    };

    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        let mut world = World::build(&transport, &hub, GROUPS, &[ALPHA, BETA, ALPHA, BETA]).await;
        for round in 0..ROUNDS {
            race(&transport, &mut world, round).await;
        }
        world
    })
    .await;
    let Ok(mut world) = outcome else {
        panic!(
            "not done within 120 s\n--- alpha-1\n{}\n--- alpha-2\n{}",
            alpha_1.log_tail(),
            alpha_2.log_tail()
        );
    };

    world.ledger.check_sequences();
    // Late duplicates from either relay would show here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in 0..world.clients.len() {
        let late = transport.fetch(&mut world.clients[c]).await;
        world.received[c].extend(late);
    }
    world.ledger.check_deliveries(&world.received);
    for c in 0..world.clients.len() {
        assert_in_sequence_order(&world.received[c], c);
    }

    // No trace of refused requests in the database: one replay mark per accepted signed
    // request, and the outbox drained by the two relays.
    let count = |table: &'static str| {
        let url = url.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            let row = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .expect("count");
            row.get::<_, i64>(0)
        }
    };
    let refused = world.ledger.refused.len();
    assert!(refused > 0, "the race refused nothing: it tested nothing");
    assert_eq!(
        count("mimi_ds_replay").await as usize,
        world.signed_accepted,
        "replay marks: one per accepted signed request, none for the {refused} refused"
    );
    let started_drain = Instant::now();
    while count("mimi_ds_outbox").await > 0 {
        assert!(
            started_drain.elapsed() < Duration::from_secs(10),
            "outbox not drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count("mimi_ds_group").await as usize, GROUPS);
    eprintln!(
        "{} accepted, {refused} refused messages, {} conflicts resent, in {:?}",
        world.ledger.entries.len(),
        CONFLICTS.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed()
    );
}

/// One request per member of every group, all built at the group's current epoch and sent at
/// once, spread over both instances: in each group two members commit (one through each
/// instance), the others send application messages. The first commit the hub orders wins;
/// the other gets `wrong_epoch`, and so does every message ordered after the winning commit.
async fn race(transport: &Instances, world: &mut World, round: usize) {
    struct Job {
        group: usize,
        sender: usize,
        commit: bool,
        request: Vec<u8>,
    }
    let mut jobs = Vec::new();
    for (g, group) in world.groups.iter().enumerate() {
        let n = group.members.len();
        for (position, &sender) in group.members.iter().enumerate() {
            // Neighbours: the two commits go to different instances (job `i` to `i % 2`).
            let commit = position == round % n || position == (round + 1) % n;
            let client = &mut world.clients[sender];
            let request = if commit {
                client.update_request(now_ms())
            } else {
                client.message_request(format!("round {round} from {sender}").as_bytes(), now_ms())
            };
            jobs.push(Job {
                group: g,
                sender,
                commit,
                request,
            });
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (index, job) in jobs.iter().enumerate() {
        let net = Arc::clone(&transport.net);
        let address = transport.alpha[index % 2];
        let request = job.request.clone();
        tasks.spawn(async move {
            loop {
                let (_, body) = net
                    .try_post(ALPHA, address, "/group_operation", request.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{address}: {e}"));
                // `conflict`: nothing changed; resend unchanged (wire-format.md §2.3).
                match answer_of(&body) {
                    Answer::Rejected(ErrorCode::Conflict) => {
                        CONFLICTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    answer => return (index, answer),
                }
            }
        });
    }
    let mut answers = vec![None; jobs.len()];
    while let Some(done) = tasks.join_next().await {
        let (index, answer) = done.expect("no panic");
        answers[index] = Some(answer);
    }

    let epochs: Vec<u64> = world
        .groups
        .iter()
        .map(|g| world.clients[g.members[0]].epoch())
        .collect();
    let mut winners = vec![0; world.groups.len()];
    for (job, answer) in jobs.iter().zip(answers) {
        let group = world.groups[job.group].clone();
        match answer.expect("answered") {
            Answer::Accepted(accepted) => {
                let epoch = epochs[job.group];
                if job.commit {
                    winners[job.group] += 1;
                    assert_eq!(accepted.epoch, epoch + 1);
                    world.clients[job.sender].confirm_commit();
                } else {
                    assert_eq!(accepted.epoch, epoch, "a message accepted in another epoch");
                }
                world.ledger.accept(
                    &group.id,
                    &job.request,
                    accepted,
                    job.sender,
                    &group.members,
                    &[],
                );
                world.signed_accepted += 1;
            }
            Answer::Rejected(code) => {
                assert_eq!(code, ErrorCode::WrongEpoch, "only a lost race is refused");
                if job.commit {
                    world.clients[job.sender].discard_commit();
                }
                world.ledger.refuse(&job.request);
            }
        }
    }
    assert_eq!(
        winners,
        vec![1; world.groups.len()],
        "one commit per group wins"
    );
    for g in 0..world.groups.len() {
        for m in world.groups[g].members.clone() {
            world.catch_up(transport, m).await;
        }
        world.assert_agree(g);
    }
}

/// A queue holds each group's messages in sequence order: the relays never reorder.
fn assert_in_sequence_order(received: &[FanoutMessage], client: usize) {
    let numbers: Vec<u64> = received.iter().map(|m| m.sequence_number).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] <= w[1]),
        "client {client}: queue order {numbers:?}"
    );
}

/// Two instances started at the same moment on one empty state folder: the first start
/// creates the hub's key and the queue key, and both must end up with the same ones (one hub
/// identity; one key that opens every sealed queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_started_at_once_on_an_empty_state_folder_are_one_hub() {
    let mut pki = Pki::new(&[ALPHA]);
    for attempt in 0..6 {
        let root = tempfile::tempdir().expect("tmp");
        let flags = ServerFlags::alpha_hub(
            &pki,
            root.path(),
            format!("sqlite:{}", root.path().join("hub.sqlite3").display()),
            &[],
        );
        let (one, two) = tokio::join!(
            ServerProcess::start("alpha-1", flags.clone()),
            ServerProcess::start("alpha-2", flags)
        );
        let net = Net { pki };
        let first = net.hub_external_sender(ALPHA, one.addr).await;
        let second = net.hub_external_sender(ALPHA, two.addr).await;
        assert_eq!(first, second, "attempt {attempt}: two hub identities");
        let Net { pki: back } = net;
        pki = back;
    }
}
