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
use mimi_ds::directory::InMemoryDirectoryStorage;
use mimi_ds::qs::{InMemoryQsStorage, QsOutcome, QsStorage};
use mimi_ds::storage::{AsyncDsOutbox, DsOutbox, InMemoryStorage, OutboxEntry};
use mimi_ds::transport::{CallStats, Endpoint, HttpRequest, HttpResponse, Routed, Router};
use mimi_ds::wire::ClientQueueConfig;
use mimi_ds::{HubEvent, Outcome, UnixTimeMs};
use mimi_ds_postgres::{migrate, PostgresDirectoryStorage, PostgresDsStorage, PostgresQsStorage};
use mimi_ds_sqlite::{enable_wal, SqliteDirectoryStorage, SqliteDsStorage, SqliteQsStorage};
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
    async fn route(
        shared: &Arc<Shared<Self>>,
        request: OwnedRequest,
    ) -> Result<Routed, HttpResponse> {
        let shared = Arc::clone(shared);
        blocking(move || {
            let headers = request.header_refs();
            let for_directory = request.for_directory();
            let request = request.borrow(&headers);
            if for_directory {
                return shared.backend.route_directory(&shared.router, &request);
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

    async fn finish(
        shared: &Arc<Shared<Self>>,
        id: u64,
        group_id: Vec<u8>,
        rejected: Vec<ClientQueueConfig>,
    ) -> Result<(), String> {
        let shared = Arc::clone(shared);
        blocking(move || {
            shared.backend.with(|ds_storage, _| {
                if let Some(ds) = shared.router.ds() {
                    for queue in rejected {
                        let event = HubEvent::QueueRejected(queue);
                        let started = Instant::now();
                        match ds.handle_event(UnixTimeMs(now_ms()), &group_id, &event, ds_storage) {
                            Ok(outcome) => observe_event(&shared, &outcome, started),
                            Err(error) => tracing::error!(
                                %error,
                                "relay: hub event for a rejected queue failed"
                            ),
                        }
                    }
                }
                ds_storage
                    .mark_delivered(id)
                    .map(drop)
                    .map_err(|e| e.to_string())
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
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves no half-applied write (each write is one
    // transaction), so the connection is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// In memory, one mutex (and one for the KeyPackage directory): for tests.
pub(crate) struct MemoryBackend(
    Mutex<(InMemoryStorage, InMemoryQsStorage)>,
    Mutex<InMemoryDirectoryStorage>,
);

impl MemoryBackend {
    pub(crate) fn new() -> Self {
        Self(
            Mutex::new((InMemoryStorage::with_outbox(), InMemoryQsStorage::new())),
            Mutex::new(InMemoryDirectoryStorage::new()),
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
}

type SqliteSlot = (SqliteDsStorage<Connection>, SqliteQsStorage<Connection>);

/// A SQLite file, WAL mode, a few connections (each slot holds the DS's and the QS's).
pub(crate) struct SqliteBackend {
    slots: Vec<Mutex<SqliteSlot>>,
    next: AtomicUsize,
}

impl SqliteBackend {
    /// Opens (creating and migrating if needed) `path` with `connections` slots.
    pub(crate) fn open(
        path: &std::path::Path,
        connections: usize,
    ) -> Result<Self, mimi_ds_sqlite::Error> {
        let mut slots = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let ds = Connection::open(path)?;
            enable_wal(&ds)?;
            let qs = Connection::open(path)?;
            slots.push(Mutex::new((
                SqliteDsStorage::new(ds)?,
                SqliteQsStorage::new(qs)?,
            )));
        }
        Ok(Self {
            slots,
            next: AtomicUsize::new(0),
        })
    }
}

impl BlockingBackend for SqliteBackend {
    fn outbox_len(ds: &Self::Ds) -> Result<u64, String> {
        ds.outbox_len().map_err(|e| e.to_string())
    }

    type Ds = SqliteDsStorage<Connection>;
    type Qs = SqliteQsStorage<Connection>;

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
        // The directory's tables are in the same file; the slot's QS connection serves it.
        self.with(|_, qs| {
            let mut directory = SqliteDirectoryStorage::from_migrated(qs.connection());
            router
                .handle_directory(UnixTimeMs(now_ms()), request, &mut directory)
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
