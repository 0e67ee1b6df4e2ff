//! Real openmls clients through a `DeliveryService` on PostgreSQL: two connections race commits
//! on the same group; exactly one is accepted, and the loser, whose guarded write conflicted,
//! re-reads, re-validates and is refused with `wrong_epoch` (issue 12, point 4), through
//! `DeliveryService::process_async` on tokio. (The same race through the sync `process` on two
//! threads is the conformance suite's `racing_commits`, run in tests/conformance.rs.)

mod support;

use mimi_ds::storage::{
    AsyncDsOutbox, AsyncDsStorage, DsOutbox, GroupSnapshot, RecordKind, ReplayMark, WriteOutcome,
    WriteSet,
};
use mimi_ds::testing::{decode_response, ds_identity, Received, TestClient, START_MS};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ErrorCode,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{
    BasicCredentialValidator, DeliveryService, DsConfig, Fanout, Outcome, Status, UnixTimeMs,
};
use mimi_ds_postgres::{Error, PostgresDsStorage};
use openmls_rust_crypto::RustCrypto;
use support::{block_on, Blocking, TestDatabase};

const NOW: u64 = START_MS;

fn hub() -> (
    DeliveryService<RustCrypto>,
    openmls::prelude::ExternalSender,
) {
    let config = DsConfig::new("hub.example");
    let (identity, external_sender) = ds_identity(&config.domain);
    let ds = DeliveryService::new(config, identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    (ds, external_sender)
}

fn accepted(outcome: Outcome, what: &str) -> Outcome {
    assert_eq!(
        outcome.status,
        Status::Accepted,
        "{what}: {:?}",
        decode_response(&outcome.response)
    );
    outcome
}

/// Delivers fanouts to the clients whose queues they name, as Queueing Services would.
fn deliver(fanouts: &[Fanout], clients: &mut [&mut TestClient]) {
    for fanout in fanouts {
        for queue in &fanout.request.recipients {
            for client in clients.iter_mut() {
                if client.queue.queue == *queue
                    && client.queue.provider_domain == fanout.request.recipient_domain
                {
                    client.inbox.push(fanout.request.message.clone());
                }
            }
        }
    }
}

/// Alice creates a group on the hub and adds Bob, who joins; both are at the same epoch. The
/// setup goes through the sync driver on the blocking adapter.
fn group_of_two(
    ds: &DeliveryService<RustCrypto>,
    external_sender: &openmls::prelude::ExternalSender,
    storage: &mut Blocking<PostgresDsStorage>,
) -> (TestClient, TestClient) {
    let now = UnixTimeMs(NOW);
    let mut alice = TestClient::new("alice", "a1", "alice.example");
    let mut bob = TestClient::new("bob", "b1", "bob.example");
    let request_group_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap();
    let out = accepted(
        ds.process(now, &request_group_id, storage).unwrap(),
        "request_group_id",
    );
    let DsResponseBody::GroupId(group_id) = decode_response(&out.response).body else {
        panic!("no group ID");
    };
    alice.create_group(group_id.as_slice(), external_sender);
    let _created = accepted(
        ds.process(now, &alice.create_group_request(NOW), storage)
            .unwrap(),
        "create_group",
    );
    let add = accepted(
        ds.process(
            now,
            &alice.add_request(vec![bob.key_package()], NOW),
            storage,
        )
        .unwrap(),
        "add bob",
    );
    alice.confirm_commit();
    deliver(&add.fanout, &mut [&mut bob]);
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("bob got no Welcome");
    };
    let (request, processed) = bob.welcome_info_request(&welcome, NOW);
    let out = accepted(ds.process(now, &request, storage).unwrap(), "welcome_info");
    let DsResponseBody::WelcomeInfo(info) = decode_response(&out.response).body else {
        panic!("no welcome info");
    };
    bob.join_with_tree(processed, &info.ratchet_tree);
    assert_eq!(alice.epoch(), bob.epoch());
    for entry in storage.pending(u64::MAX, usize::MAX).unwrap() {
        assert!(storage.mark_delivered(entry.id).unwrap());
    }
    (alice, bob)
}

/// What a tokio server needs to `spawn` a request: the future is `Send` (checked at compile
/// time).
fn spawnable<F: std::future::Future + Send>(future: F) -> F {
    future
}

/// A handle whose first write waits until the other racer reached its first write too (a tokio
/// barrier): both requests have read the same group version before either writes, so one
/// write must conflict.
struct WritesTogetherAsync<'b> {
    inner: PostgresDsStorage,
    barrier: &'b tokio::sync::Barrier,
    waited: bool,
}

impl AsyncDsStorage for WritesTogetherAsync<'_> {
    type Error = Error;

    async fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Error> {
        self.inner.read(group_id, kinds).await
    }

    async fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Error> {
        self.inner.replay_mark(group_id, key, now_ms).await
    }

    async fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Error> {
        if !std::mem::replace(&mut self.waited, true) {
            self.barrier.wait().await;
        }
        self.inner.write(write_set).await
    }
}

/// A race through `DeliveryService::process_async` on tokio: two connections, two
/// concurrently running requests; one commit is accepted, the other conflicts, re-validates
/// and gets `wrong_epoch`; Bob (or Alice) then follows the winner's commit from the outbox, read
/// asynchronously, and the group goes on through the async driver in the new epoch.
#[test]
fn racing_commits_through_process_async_one_wins_the_other_gets_wrong_epoch() {
    let (ds, external_sender) = hub();
    let database = TestDatabase::new();
    let mut setup = database.ds();
    let (mut alice, mut bob) = group_of_two(&ds, &external_sender, &mut setup);
    drop(setup);
    let epoch = alice.epoch();
    let requests = [alice.update_request(NOW), bob.update_request(NOW)];
    let now = UnixTimeMs(NOW);

    let (outcomes, relayed) = block_on(async {
        let barrier = tokio::sync::Barrier::new(2);
        let mut first = WritesTogetherAsync {
            inner: PostgresDsStorage::new(database.client().await),
            barrier: &barrier,
            waited: false,
        };
        let mut second = WritesTogetherAsync {
            inner: PostgresDsStorage::new(database.client().await),
            barrier: &barrier,
            waited: false,
        };
        let (a, b) = tokio::join!(
            spawnable(ds.process_async(now, &requests[0], &mut first)),
            spawnable(ds.process_async(now, &requests[1], &mut second)),
        );
        let outcomes = [a.expect("no storage error"), b.expect("no storage error")];
        let mut relay = first.inner;
        let mut relayed = Vec::new();
        for entry in relay.pending(u64::MAX, usize::MAX).await.unwrap() {
            relayed.push(entry.fanout().unwrap());
            assert!(relay.mark_delivered(entry.id).await.unwrap());
        }
        (outcomes, relayed)
    });

    let statuses: Vec<Status> = outcomes.iter().map(|o| o.status).collect();
    let winner = statuses
        .iter()
        .position(|s| *s == Status::Accepted)
        .unwrap_or_else(|| panic!("one commit is accepted: {statuses:?}"));
    let loser = 1 - winner;
    assert_eq!(
        statuses[loser],
        Status::Rejected(ErrorCode::WrongEpoch),
        "the loser re-validates against the winner's epoch"
    );
    assert_eq!(
        relayed, outcomes[winner].fanout,
        "only the winner's fanout is stored"
    );

    let (won, lost) = if winner == 0 {
        (&mut alice, &mut bob)
    } else {
        (&mut bob, &mut alice)
    };
    won.confirm_commit();
    lost.discard_commit();
    deliver(&relayed, &mut [&mut *lost]);
    assert_eq!(
        lost.process_inbox(),
        vec![Received::Commit {
            epoch: epoch + 1,
            removed: false
        }]
    );
    // The loser talks in the winner's epoch, through the async driver.
    let message = lost.message_request(b"after the race", NOW);
    let reply = block_on(async {
        let mut storage = PostgresDsStorage::new(database.client().await);
        spawnable(ds.process_async(now, &message, &mut storage)).await
    })
    .expect("no storage error");
    let reply = accepted(reply, "a message in the new epoch");
    deliver(&reply.fanout, &mut [&mut *won]);
    assert_eq!(
        won.process_inbox(),
        vec![Received::Application(b"after the race".to_vec())]
    );
}

/// A vendor's handle that writes inside its own transaction (`ds::write_in`) and, once the
/// write applied, keeps the transaction open (holding the group's row lock) until told to
/// commit.
struct CommitsWhenTold<'n> {
    inner: PostgresDsStorage,
    holding: &'n tokio::sync::Notify,
    commit: &'n tokio::sync::Notify,
}

impl AsyncDsStorage for CommitsWhenTold<'_> {
    type Error = Error;

    async fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Error> {
        self.inner.read(group_id, kinds).await
    }

    async fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Error> {
        self.inner.replay_mark(group_id, key, now_ms).await
    }

    async fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Error> {
        let mut tx = self.inner.client_mut().transaction().await?;
        let outcome = mimi_ds_postgres::ds::write_in(&mut tx, write_set).await?;
        if outcome == WriteOutcome::Applied {
            self.holding.notify_one();
            self.commit.notified().await;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

/// The race of a distributed SQL engine (docs/deploy.md §6), on PostgreSQL: the second hub's
/// connection runs its transactions at SERIALIZABLE, as CockroachDB does. Its guarded write
/// waits for the row the first hub's transaction holds; when that commits, PostgreSQL aborts
/// the waiting write with SQLSTATE 40001. The backend reports it as a conflict, so
/// `process_async` re-reads, re-validates and answers `wrong_epoch`, as it does for the
/// version guard, instead of failing with a storage error (a 500 in the server).
#[test]
fn a_serialization_failure_through_process_async_is_retried_and_gets_wrong_epoch() {
    let (ds, external_sender) = hub();
    let database = TestDatabase::new();
    let mut setup = database.ds();
    let (mut alice, mut bob) = group_of_two(&ds, &external_sender, &mut setup);
    drop(setup);
    let requests = [alice.update_request(NOW), bob.update_request(NOW)];
    let now = UnixTimeMs(NOW);

    let (first, second, relayed) = block_on(async {
        let (holding, commit) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
        let mut first_hub = CommitsWhenTold {
            inner: PostgresDsStorage::new(database.client().await),
            holding: &holding,
            commit: &commit,
        };
        let mut config = database.config().clone();
        let options = format!(
            "{} -c default_transaction_isolation=serializable",
            config.get_options().unwrap_or_default()
        );
        config.options(options);
        let mut second_hub = PostgresDsStorage::new(support::connect(&config).await);
        let second_pid: i32 = second_hub
            .client()
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let monitor = database.client().await;
        let (first, second, ()) = tokio::join!(
            spawnable(ds.process_async(now, &requests[0], &mut first_hub)),
            async {
                // Starts once the first hub holds the row, so it reads the old epoch.
                holding.notified().await;
                spawnable(ds.process_async(now, &requests[1], &mut second_hub)).await
            },
            async {
                // Lets the first hub commit once the second waits for its row lock.
                let mut waited = 0;
                loop {
                    let row = monitor
                        .query_one(
                            "SELECT coalesce(wait_event_type, '') FROM pg_stat_activity
                             WHERE pid = $1",
                            &[&second_pid],
                        )
                        .await
                        .unwrap();
                    if row.get::<_, String>(0) == "Lock" {
                        break;
                    }
                    waited += 1;
                    assert!(
                        waited < 2_000,
                        "the second hub never waited for the row lock"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                commit.notify_one();
            },
        );
        let mut relayed = Vec::new();
        for entry in second_hub.pending(u64::MAX, usize::MAX).await.unwrap() {
            relayed.push(entry.fanout().unwrap());
        }
        (first, second, relayed)
    });

    let first = accepted(first.expect("no storage error"), "the first hub's commit");
    let second = second.expect("40001 is a conflict, retried: not a storage error");
    assert_eq!(
        second.status,
        Status::Rejected(ErrorCode::WrongEpoch),
        "the retry re-validates against the winner's epoch"
    );
    assert_eq!(relayed, first.fanout, "only the winner's fanout is stored");
    alice.confirm_commit();
    bob.discard_commit();
    deliver(&relayed, &mut [&mut bob]);
    assert_eq!(bob.process_inbox().len(), 1);
    assert_eq!(alice.epoch(), bob.epoch());
}
