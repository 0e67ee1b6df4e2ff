//! The storage backends behind the server, and how blocking storage is kept off the async
//! executor.
//!
//! [`Backend`] is what the request handler and the relay ask of storage: route a request, list
//! due outbox entries, deliver to this provider's own QS, finish or put off an entry. A
//! synchronous store ([`BlockingBackend`]: memory, SQLite) does each on a blocking thread;
//! PostgreSQL ([`PostgresBackend`]) does each on the async executor through
//! `Router::handle_async` and the async drivers, with no blocking thread.
//!
//! SQLite (rusqlite) is synchronous. Every use of storage (a request through
//! `Router::handle`, a relay round, a hub event) runs inside `tokio::task::spawn_blocking`
//! and takes one connection from a small pool for the duration of that one call.
//!
//! Why a pool and not one connection behind a mutex: SQLite admits one writer at a time in
//! any case (the backend writes under `BEGIN IMMEDIATE` and waits on SQLite's busy timeout),
//! but in WAL mode readers proceed while a writer commits. Most refused requests and all
//! queue fetches are reads, and a write's decoding and signature checks happen before its
//! transaction: with a few connections these overlap instead of queueing behind one mutex.
//! The pool is small (the 2-core machines this runs on gain nothing from more), and the
//! number of blocking tasks is bounded by the request concurrency limit plus the relay's.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use mimi_ds::connection::{ConnectionProvider, InMemoryConnectionStore};
use mimi_ds::directory::InMemoryDirectoryStorage;
use mimi_ds::qs::{InMemoryQsStorage, QsOutcome, QsStorage};
use mimi_ds::storage::{AsyncDsOutbox, DsOutbox, InMemoryStorage, OutboxEntry};
use mimi_ds::transport::{CallStats, Endpoint, HttpRequest, HttpResponse, Routed, Router};
use mimi_ds::wire::{decode_exact, ClientQueueConfig, QueueingServiceResponse};
use mimi_ds::{HubEvent, Outcome, UnixTimeMs};
use mimi_ds_postgres::{
    migrate, PostgresConnectionStore, PostgresDirectoryStorage, PostgresDsStorage,
    PostgresQsStorage,
};
use mimi_ds_sqlite::{
    enable_wal, SqliteConnectionStore, SqliteDirectoryStorage, SqliteDsStorage, SqliteQsStorage,
    WriterQueue,
};
use rusqlite::Connection;

use crate::{now_ms, Shared};

/// A request as the HTTP side read it, owned so that it can move to another thread.
pub(crate) struct OwnedRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
    pub(crate) authenticated_peer: Option<String>,
}

impl OwnedRequest {
    /// The header fields as the router takes them.
    fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// Whether it is for the KeyPackage directory (`Router::handle_directory`).
    fn for_directory(&self) -> bool {
        Endpoint::from_path(&self.path).is_some_and(Endpoint::is_directory)
    }

    /// Whether it is for the connection inboxes (`Router::handle_connection_request`).
    fn for_connections(&self) -> bool {
        Endpoint::from_path(&self.path).is_some_and(Endpoint::is_connection)
    }

    /// The request as the router takes it, with `headers` from [`OwnedRequest::header_refs`].
    fn borrow<'a>(&'a self, headers: &'a [(&'a str, &'a str)]) -> HttpRequest<'a> {
        HttpRequest {
            method: &self.method,
            path: &self.path,
            headers,
            body: &self.body,
            authenticated_peer: self.authenticated_peer.as_deref(),
        }
    }
}

/// Logs a storage failure and answers with the router's 500, which says nothing of the cause.
fn internal(error: &dyn std::fmt::Display) -> HttpResponse {
    tracing::error!(%error, "storage failure; answered 500");
    HttpResponse {
        status: 500,
        content_type: mimi_ds::transport::TEXT_PLAIN,
        headers: Vec::new(),
        body: b"internal error".to_vec(),
    }
}

/// Counts a hub event's DS call in the metrics, as a request's.
fn observe_event<B>(shared: &Shared<B>, outcome: &Outcome, started: Instant) {
    shared.request_metrics.observe_call(
        &CallStats::Ds(outcome.status, outcome.stats),
        started.elapsed(),
    );
}

/// What the request handler and the relay ask of storage. Every future is `Send`, so that
/// they run on the multi-threaded executor.
pub(crate) trait Backend: Send + Sync + Sized + 'static {
    /// The least time between the starts of two relay rounds: on SQLite, what is accepted
    /// meanwhile is delivered to the own QS in one batch (`relay.rs`); PostgreSQL delivers
    /// one by one and has no single write lock, so it does not wait.
    const RELAY_ROUND_SPACING: std::time::Duration;

    /// Routes one request (`Err`: the 500 to answer, already logged).
    fn route(
        shared: &Arc<Shared<Self>>,
        request: OwnedRequest,
    ) -> impl Future<Output = Result<Routed, HttpResponse>> + Send;

    /// Up to `limit` outbox entries due at `now`, oldest first.
    fn pending(
        shared: &Arc<Shared<Self>>,
        now: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, String>> + Send;

    /// Delivers a fanout to this provider's own QS, with this provider as its sender.
    fn deliver_own(
        shared: &Arc<Shared<Self>>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<QsOutcome, String>> + Send;

    /// Delivers fanouts to this provider's own QS in their order, in as few storage
    /// transactions as the backend allows (SQLite: one), and decodes each answer. Stops at the
    /// first that fails; what it returns stands durably in the QS (committed) before it is
    /// returned.
    fn deliver_own_batch(
        shared: &Arc<Shared<Self>>,
        bodies: Vec<Vec<u8>>,
    ) -> impl Future<Output = OwnDeliveries> + Send;

    /// [`Backend::finish`] for several entries, in as few transactions as the backend allows
    /// (SQLite: one).
    fn finish_batch(
        shared: &Arc<Shared<Self>>,
        delivered: Vec<Delivered>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Reports `rejected` queues of `group_id` as hub events, then removes entry `id`.
    fn finish(
        shared: &Arc<Shared<Self>>,
        id: u64,
        group_id: Vec<u8>,
        rejected: Vec<ClientQueueConfig>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Hides each `(entry, until)` until its time.
    fn retry_later(
        shared: &Arc<Shared<Self>>,
        delays: Vec<(u64, u64)>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Entries in the outbox, due or not (for the metrics).
    fn outbox_depth(shared: &Arc<Shared<Self>>)
        -> impl Future<Output = Result<u64, String>> + Send;
}

/// What [`Backend::deliver_own_batch`] did: the answers of the fanouts the QS committed, in
/// order (a prefix of the batch), and why the next one was not delivered, if one was not.
#[derive(Debug, Default)]
pub(crate) struct OwnDeliveries {
    pub(crate) answers: Vec<QueueingServiceResponse>,
    pub(crate) failure: Option<String>,
}

impl OwnDeliveries {
    fn failed(failure: impl Into<String>) -> Self {
        Self {
            answers: Vec::new(),
            failure: Some(failure.into()),
        }
    }
}

/// A delivered outbox entry for [`Backend::finish_batch`]: its ID, its group, and the queues
/// the QS rejected (reported to the hub as events before the entry is removed).
pub(crate) struct Delivered {
    pub(crate) id: u64,
    pub(crate) group_id: Vec<u8>,
    pub(crate) rejected: Vec<ClientQueueConfig>,
}

/// Reports `rejected` queues of `group_id` as hub events on `ds_storage`, then removes entry
/// `id` from its outbox.
fn report_and_mark<B, S: DsOutbox>(
    shared: &Shared<B>,
    ds_storage: &mut S,
    delivered: Delivered,
) -> Result<(), String> {
    if let Some(ds) = shared.router.ds() {
        for queue in delivered.rejected {
            let event = HubEvent::QueueRejected(queue);
            let started = Instant::now();
            match ds.handle_event(
                UnixTimeMs(now_ms()),
                &delivered.group_id,
                &event,
                ds_storage,
            ) {
                Ok(outcome) => observe_event(shared, &outcome, started),
                Err(error) => {
                    tracing::error!(%error, "relay: hub event for a rejected queue failed");
                }
            }
        }
    }
    ds_storage
        .mark_delivered(delivered.id)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Runs `f` on a blocking thread, inside the caller's tracing span (so that mimi-ds's span of
/// a call nests under the HTTP request's); a panic there is an error.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|panicked| format!("panicked: {panicked}"))
}

impl<T: BlockingBackend> Backend for T
where
    <T::Ds as mimi_ds::storage::DsStorage>::Error: Send,
{
    const RELAY_ROUND_SPACING: std::time::Duration = std::time::Duration::from_millis(5);

    async fn route(
        shared: &Arc<Shared<Self>>,
        request: OwnedRequest,
    ) -> Result<Routed, HttpResponse> {
        let shared = Arc::clone(shared);
        blocking(move || {
            let headers = request.header_refs();
            let for_directory = request.for_directory();
            let for_connections = request.for_connections();
            let request = request.borrow(&headers);
            if for_directory {
                return shared.backend.route_directory(&shared.router, &request);
            }
            if for_connections {
                return shared.backend.route_connections(
                    &shared.router,
                    &shared.connections,
                    &request,
                );
            }
            shared.backend.with(|ds, qs| {
                shared
                    .router
                    .handle(UnixTimeMs(now_ms()), &request, ds, qs)
                    .map_err(|e| internal(&e))
            })
        })
        .await
        .unwrap_or_else(|panicked| Err(internal(&panicked)))
    }

    async fn pending(
        shared: &Arc<Shared<Self>>,
        now: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, String> {
        let shared = Arc::clone(shared);
        blocking(move || {
            shared
                .backend
                .with(|ds, _| ds.pending(now, limit).map_err(|e| e.to_string()))
        })
        .await?
    }

    async fn deliver_own(shared: &Arc<Shared<Self>>, body: Vec<u8>) -> Result<QsOutcome, String> {
        let shared = Arc::clone(shared);
        blocking(move || {
            let qs = shared.router.qs().ok_or("this server runs no QS")?;
            shared.backend.with(|_, qs_storage| {
                qs.deliver(
                    UnixTimeMs(now_ms()),
                    &body,
                    Some(&shared.domain),
                    qs_storage,
                )
                .map_err(|e| e.to_string())
            })
        })
        .await?
    }

    async fn deliver_own_batch(shared: &Arc<Shared<Self>>, bodies: Vec<Vec<u8>>) -> OwnDeliveries {
        let shared = Arc::clone(shared);
        blocking(move || {
            let Some(qs) = shared.router.qs() else {
                return OwnDeliveries::failed("this server runs no QS");
            };
            shared.backend.with(|_, qs_storage| {
                T::in_qs_transaction(qs_storage, |qs_storage| {
                    let mut done = OwnDeliveries::default();
                    for body in &bodies {
                        let started = Instant::now();
                        let delivered = qs
                            .deliver(UnixTimeMs(now_ms()), body, Some(&shared.domain), qs_storage)
                            .map_err(|e| e.to_string())
                            .and_then(|answer| {
                                shared.request_metrics.observe_call(
                                    &CallStats::Qs(answer.status.clone(), answer.stats),
                                    started.elapsed(),
                                );
                                decode_exact(&answer.response).map_err(|e| format!("answer: {e}"))
                            });
                        match delivered {
                            Ok(answer) => done.answers.push(answer),
                            Err(failure) => {
                                // Its write, if any, was rolled back alone (a savepoint); the
                                // ones before it commit, the ones after it wait behind it.
                                done.failure = Some(failure);
                                break;
                            }
                        }
                    }
                    done
                })
                .unwrap_or_else(|e| OwnDeliveries::failed(format!("commit: {e}")))
            })
        })
        .await
        .unwrap_or_else(OwnDeliveries::failed)
    }

    async fn finish_batch(
        shared: &Arc<Shared<Self>>,
        delivered: Vec<Delivered>,
    ) -> Result<(), String> {
        let shared = Arc::clone(shared);
        blocking(move || {
            shared.backend.with(|ds_storage, _| {
                T::in_ds_transaction(ds_storage, |ds_storage| {
                    delivered
                        .into_iter()
                        .try_for_each(|entry| report_and_mark(&shared, ds_storage, entry))
                })?
            })
        })
        .await?
    }

    async fn finish(
        shared: &Arc<Shared<Self>>,
        id: u64,
        group_id: Vec<u8>,
        rejected: Vec<ClientQueueConfig>,
    ) -> Result<(), String> {
        let shared = Arc::clone(shared);
        blocking(move || {
            shared.backend.with(|ds_storage, _| {
                let delivered = Delivered {
                    id,
                    group_id,
                    rejected,
                };
                report_and_mark(&shared, ds_storage, delivered)
            })
        })
        .await?
    }

    async fn retry_later(
        shared: &Arc<Shared<Self>>,
        delays: Vec<(u64, u64)>,
    ) -> Result<(), String> {
        let shared = Arc::clone(shared);
        blocking(move || {
            shared.backend.with(|ds, _| {
                for (id, at) in delays {
                    ds.retry_later(id, at).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .await?
    }

    async fn outbox_depth(shared: &Arc<Shared<Self>>) -> Result<u64, String> {
        let shared = Arc::clone(shared);
        blocking(move || shared.backend.with(|ds, _| T::outbox_len(ds))).await?
    }
}

/// A DS storage with an outbox and a QS storage, used from blocking threads only.
pub(crate) trait BlockingBackend: Send + Sync + 'static {
    /// Entries in `ds`'s outbox.
    fn outbox_len(ds: &Self::Ds) -> Result<u64, String>;

    /// The DS's storage.
    type Ds: DsOutbox + Send;
    /// The QS's storage.
    type Qs: QsStorage + Send;

    /// Runs `f` with one DS and one QS storage. Blocks: call from `spawn_blocking` only.
    fn with<R>(&self, f: impl FnOnce(&mut Self::Ds, &mut Self::Qs) -> R) -> R;

    /// Routes a KeyPackage directory request (`Router::handle_directory`) on this backend's
    /// directory storage. Blocks: call from `spawn_blocking` only.
    fn route_directory(
        &self,
        router: &Router,
        request: &HttpRequest<'_>,
    ) -> Result<Routed, HttpResponse>;

    /// Routes a connection request (`Router::handle_connection_request`) on this backend's
    /// connection store. Blocks: call from `spawn_blocking` only.
    fn route_connections(
        &self,
        router: &Router,
        connections: &ConnectionProvider,
        request: &HttpRequest<'_>,
    ) -> Result<Routed, HttpResponse>;

    /// Runs `f`'s writes to `qs` as one transaction where the storage has them (SQLite), so
    /// that a batch costs one commit; each write still succeeds or fails alone. `Err`: the
    /// transaction did not commit, and none of `f`'s writes stand. Default: no transaction.
    fn in_qs_transaction<R>(
        qs: &mut Self::Qs,
        f: impl FnOnce(&mut Self::Qs) -> R,
    ) -> Result<R, String> {
        Ok(f(qs))
    }

    /// The same for the DS's storage.
    fn in_ds_transaction<R>(
        ds: &mut Self::Ds,
        f: impl FnOnce(&mut Self::Ds) -> R,
    ) -> Result<R, String> {
        Ok(f(ds))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves no half-applied write (each write is one
    // transaction), so the connection is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// In memory, one mutex (and one each for the KeyPackage directory and the connection
/// inboxes): for tests.
pub(crate) struct MemoryBackend(
    Mutex<(InMemoryStorage, InMemoryQsStorage)>,
    Mutex<InMemoryDirectoryStorage>,
    Mutex<InMemoryConnectionStore>,
);

impl MemoryBackend {
    pub(crate) fn new() -> Self {
        Self(
            Mutex::new((InMemoryStorage::with_outbox(), InMemoryQsStorage::new())),
            Mutex::new(InMemoryDirectoryStorage::new()),
            Mutex::new(InMemoryConnectionStore::new()),
        )
    }
}

impl BlockingBackend for MemoryBackend {
    fn outbox_len(ds: &Self::Ds) -> Result<u64, String> {
        Ok(ds.outbox_len() as u64)
    }

    type Ds = InMemoryStorage;
    type Qs = InMemoryQsStorage;

    fn with<R>(&self, f: impl FnOnce(&mut Self::Ds, &mut Self::Qs) -> R) -> R {
        let mut guard = lock(&self.0);
        let (ds, qs) = &mut *guard;
        f(ds, qs)
    }

    fn route_directory(
        &self,
        router: &Router,
        request: &HttpRequest<'_>,
    ) -> Result<Routed, HttpResponse> {
        router
            .handle_directory(UnixTimeMs(now_ms()), request, &mut *lock(&self.1))
            .map_err(|e| internal(&e))
    }

    fn route_connections(
        &self,
        router: &Router,
        connections: &ConnectionProvider,
        request: &HttpRequest<'_>,
    ) -> Result<Routed, HttpResponse> {
        let store = &mut *lock(&self.2);
        router
            .handle_connection_request(UnixTimeMs(now_ms()), request, connections, store)
            .map_err(|e| internal(&e))
    }
}

type SqliteSlot = (SqliteDsStorage<Connection>, SqliteQsStorage<Connection>);

/// Two SQLite files, the hub's (DS groups and outbox) and the QS's (queues), each in WAL mode,
/// and a few connection slots (each holds one connection to each file).
///
/// Why two files: SQLite admits one writer per file. With one file, every fanout the relay
/// delivers to this provider's own QS took the same write lock as the hub's requests, and a
/// request that found it taken slept in SQLite's busy handler (1, 2, 5, … ms between tries).
/// With two, a QS enqueue and a hub write never wait for each other; the relay's remaining DS
/// write (`mark_delivered`) is batched (see `relay.rs`). And the connections to one file share
/// a [`WriterQueue`]: a writer waits for the one before it in the process and is woken when it
/// commits, instead of sleeping in SQLite's busy handler.
pub(crate) struct SqliteBackend {
    slots: Vec<Mutex<SqliteSlot>>,
    next: AtomicUsize,
    // The QS file's writer queue, for the KeyPackage directory's writes on that file.
    qs_writers: Arc<WriterQueue>,
}

impl SqliteBackend {
    /// Opens (creating and migrating if needed) the hub's file `ds_path` and the QS's file
    /// `qs_path` (may be the same file) with `connections` slots.
    ///
    /// Refuses to start when the QS has its own file but the hub's file holds queues (a
    /// database made with both in one file): starting would hide those queues from their
    /// clients. Pass the hub's own path as the QS's to keep using it.
    pub(crate) fn open(
        ds_path: &std::path::Path,
        qs_path: &std::path::Path,
        connections: usize,
    ) -> Result<Self, crate::StartError> {
        let one_file = {
            // Both must exist for `same_file` to compare them.
            drop(Connection::open(ds_path).map_err(mimi_ds_sqlite::Error::from)?);
            drop(Connection::open(qs_path).map_err(mimi_ds_sqlite::Error::from)?);
            same_file(ds_path, qs_path)
        };
        // One writer queue per file, shared by all its connections.
        let ds_writers = Arc::new(WriterQueue::new());
        let qs_writers = if one_file {
            Arc::clone(&ds_writers)
        } else {
            Arc::new(WriterQueue::new())
        };
        let mut slots = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let ds = Connection::open(ds_path).map_err(mimi_ds_sqlite::Error::from)?;
            enable_wal(&ds)?;
            let qs = Connection::open(qs_path).map_err(mimi_ds_sqlite::Error::from)?;
            enable_wal(&qs)?;
            slots.push(Mutex::new((
                SqliteDsStorage::new(ds)?.with_writer_queue(Arc::clone(&ds_writers)),
                SqliteQsStorage::new(qs)?.with_writer_queue(Arc::clone(&qs_writers)),
            )));
        }
        if !one_file {
            let guard = lock(&slots[0]);
            let queues_in_hub_file: i64 = guard
                .0
                .connection()
                .query_row("SELECT count(*) FROM mimi_qs_queue", [], |row| row.get(0))
                .map_err(mimi_ds_sqlite::Error::from)?;
            if queues_in_hub_file > 0 {
                return Err(crate::StartError::QueuesInHubFile {
                    ds_file: ds_path.to_path_buf(),
                    qs_file: qs_path.to_path_buf(),
                });
            }
        }
        Ok(Self {
            slots,
            next: AtomicUsize::new(0),
            qs_writers,
        })
    }
}

/// Whether two paths name one file (both exist once opened).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl BlockingBackend for SqliteBackend {
    fn outbox_len(ds: &Self::Ds) -> Result<u64, String> {
        ds.outbox_len().map_err(|e| e.to_string())
    }

    type Ds = SqliteDsStorage<Connection>;
    type Qs = SqliteQsStorage<Connection>;

    fn in_qs_transaction<R>(
        qs: &mut Self::Qs,
        f: impl FnOnce(&mut Self::Qs) -> R,
    ) -> Result<R, String> {
        qs.in_transaction(f).map_err(|e| e.to_string())
    }

    fn in_ds_transaction<R>(
        ds: &mut Self::Ds,
        f: impl FnOnce(&mut Self::Ds) -> R,
    ) -> Result<R, String> {
        ds.in_transaction(f).map_err(|e| e.to_string())
    }

    fn with<R>(&self, f: impl FnOnce(&mut Self::Ds, &mut Self::Qs) -> R) -> R {
        // A free slot if there is one; otherwise wait for the next in turn.
        let mut guard = self
            .slots
            .iter()
            .find_map(|slot| slot.try_lock().ok())
            .unwrap_or_else(|| {
                let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                lock(&self.slots[turn])
            });
        let (ds, qs) = &mut *guard;
        f(ds, qs)
    }

    fn route_directory(
        &self,
        router: &Router,
        request: &HttpRequest<'_>,
    ) -> Result<Routed, HttpResponse> {
        // The directory's tables are in the QS's file; the slot's QS connection serves it,
        // taking its turns in that file's writer queue.
        self.with(|_, qs| {
            let mut directory = SqliteDirectoryStorage::from_migrated(qs.connection())
                .with_writer_queue(Arc::clone(&self.qs_writers));
            router
                .handle_directory(UnixTimeMs(now_ms()), request, &mut directory)
                .map_err(|e| internal(&e))
        })
    }

    fn route_connections(
        &self,
        router: &Router,
        connections: &ConnectionProvider,
        request: &HttpRequest<'_>,
    ) -> Result<Routed, HttpResponse> {
        // The connection tables are in the QS's file too: provider-side state, next to the
        // queues.
        self.with(|_, qs| {
            let mut store = SqliteConnectionStore::from_migrated(qs.connection())
                .with_writer_queue(Arc::clone(&self.qs_writers));
            router
                .handle_connection_request(UnixTimeMs(now_ms()), request, connections, &mut store)
                .map_err(|e| internal(&e))
        })
    }
}

/// PostgreSQL: two connection pools, one for the DS's storage and one for the QS's.
///
/// `Router::handle_async` takes both storages, and each holds its own connection. Taking both
/// from one pool could deadlock (every connection held by a request waiting for its second);
/// with a pool each, always taken DS first, it cannot. Every request runs on the executor:
/// nothing blocks a thread, and the pools bound the connections a server opens.
pub(crate) struct PostgresBackend {
    ds: deadpool_postgres::Pool,
    qs: deadpool_postgres::Pool,
}

type PooledDs = PostgresDsStorage<deadpool_postgres::Object>;
type PooledQs = PostgresQsStorage<deadpool_postgres::Object>;

impl PostgresBackend {
    /// Connects to `url` with pools of `connections` each, and creates or upgrades the tables.
    pub(crate) async fn connect(url: &str, connections: usize) -> Result<Self, String> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        let pool = || {
            let manager = deadpool_postgres::Manager::from_config(
                config.clone(),
                tokio_postgres::NoTls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            deadpool_postgres::Pool::builder(manager)
                .max_size(connections.max(1))
                .build()
                .map_err(|e| e.to_string())
        };
        let backend = Self {
            ds: pool()?,
            qs: pool()?,
        };
        let mut client = backend.ds.get().await.map_err(|e| e.to_string())?;
        migrate(&mut client).await.map_err(|e| e.to_string())?;
        Ok(backend)
    }

    async fn ds(&self) -> Result<PooledDs, String> {
        let client = self.ds.get().await.map_err(|e| e.to_string())?;
        Ok(PostgresDsStorage::new(client))
    }

    async fn qs(&self) -> Result<PooledQs, String> {
        let client = self.qs.get().await.map_err(|e| e.to_string())?;
        Ok(PostgresQsStorage::new(client))
    }
}

impl Backend for PostgresBackend {
    const RELAY_ROUND_SPACING: std::time::Duration = std::time::Duration::ZERO;

    async fn route(
        shared: &Arc<Shared<Self>>,
        request: OwnedRequest,
    ) -> Result<Routed, HttpResponse> {
        let headers = request.header_refs();
        if request.for_directory() {
            // One connection, from the QS's pool: the directory is provider-side too.
            let client = shared.backend.qs.get().await.map_err(|e| internal(&e))?;
            let mut directory = PostgresDirectoryStorage::new(client);
            return shared
                .router
                .handle_directory_async(
                    UnixTimeMs(now_ms()),
                    &request.borrow(&headers),
                    &mut directory,
                )
                .await
                .map_err(|e| internal(&e));
        }
        if request.for_connections() {
            // One connection from the QS's pool, as for the directory.
            let client = shared.backend.qs.get().await.map_err(|e| internal(&e))?;
            let mut store = PostgresConnectionStore::new(client);
            return shared
                .router
                .handle_connection_request_async(
                    UnixTimeMs(now_ms()),
                    &request.borrow(&headers),
                    &shared.connections,
                    &mut store,
                )
                .await
                .map_err(|e| internal(&e));
        }
        let mut ds = shared.backend.ds().await.map_err(|e| internal(&e))?;
        let mut qs = shared.backend.qs().await.map_err(|e| internal(&e))?;
        shared
            .router
            .handle_async(
                UnixTimeMs(now_ms()),
                &request.borrow(&headers),
                &mut ds,
                &mut qs,
            )
            .await
            .map_err(|e| internal(&e))
    }

    async fn pending(
        shared: &Arc<Shared<Self>>,
        now: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, String> {
        let ds = shared.backend.ds().await?;
        ds.pending(now, limit).await.map_err(|e| e.to_string())
    }

    async fn deliver_own(shared: &Arc<Shared<Self>>, body: Vec<u8>) -> Result<QsOutcome, String> {
        let qs = shared.router.qs().ok_or("this server runs no QS")?;
        let mut storage = shared.backend.qs().await?;
        qs.deliver_async(
            UnixTimeMs(now_ms()),
            &body,
            Some(&shared.domain),
            &mut storage,
        )
        .await
        .map_err(|e| e.to_string())
    }

    async fn deliver_own_batch(shared: &Arc<Shared<Self>>, bodies: Vec<Vec<u8>>) -> OwnDeliveries {
        // One transaction per delivery (the PostgreSQL QS storage commits each write set).
        let mut done = OwnDeliveries::default();
        for body in bodies {
            let started = Instant::now();
            let delivered = Self::deliver_own(shared, body).await.and_then(|answer| {
                shared.request_metrics.observe_call(
                    &CallStats::Qs(answer.status.clone(), answer.stats),
                    started.elapsed(),
                );
                decode_exact(&answer.response).map_err(|e| format!("answer: {e}"))
            });
            match delivered {
                Ok(answer) => done.answers.push(answer),
                Err(failure) => {
                    done.failure = Some(failure);
                    break;
                }
            }
        }
        done
    }

    async fn finish_batch(
        shared: &Arc<Shared<Self>>,
        delivered: Vec<Delivered>,
    ) -> Result<(), String> {
        for entry in delivered {
            Self::finish(shared, entry.id, entry.group_id, entry.rejected).await?;
        }
        Ok(())
    }

    async fn finish(
        shared: &Arc<Shared<Self>>,
        id: u64,
        group_id: Vec<u8>,
        rejected: Vec<ClientQueueConfig>,
    ) -> Result<(), String> {
        let mut storage = shared.backend.ds().await?;
        if let Some(ds) = shared.router.ds() {
            for queue in rejected {
                let event = HubEvent::QueueRejected(queue);
                let started = Instant::now();
                match ds
                    .handle_event_async(UnixTimeMs(now_ms()), &group_id, &event, &mut storage)
                    .await
                {
                    Ok(outcome) => observe_event(shared, &outcome, started),
                    Err(error) => {
                        tracing::error!(%error, "relay: hub event for a rejected queue failed");
                    }
                }
            }
        }
        storage
            .mark_delivered(id)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn retry_later(
        shared: &Arc<Shared<Self>>,
        delays: Vec<(u64, u64)>,
    ) -> Result<(), String> {
        let mut storage = shared.backend.ds().await?;
        for (id, at) in delays {
            storage
                .retry_later(id, at)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn outbox_depth(shared: &Arc<Shared<Self>>) -> Result<u64, String> {
        let storage = shared.backend.ds().await?;
        storage.outbox_len().await.map_err(|e| e.to_string())
    }
}
