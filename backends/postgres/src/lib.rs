//! PostgreSQL storage for [mimi-ds](mimi_ds) on [tokio-postgres](tokio_postgres): the
//! Delivery Service's [`AsyncDsStorage`](mimi_ds::storage::AsyncDsStorage) with its durable
//! outbox ([`AsyncDsOutbox`](mimi_ds::storage::AsyncDsOutbox)), and the Queueing Service's
//! [`AsyncQsStorage`](mimi_ds::qs::AsyncQsStorage).
//!
//! ```no_run
//! use mimi_ds::storage::AsyncDsOutbox;
//! use mimi_ds::{DeliveryService, UnixTimeMs};
//! use mimi_ds_postgres::PostgresDsStorage;
//! # async fn example(
//! #     hub: &DeliveryService<openmls_rust_crypto::RustCrypto>,
//! #     request_bytes: &[u8],
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! # let now = UnixTimeMs(1_700_000_000_000);
//! // Connects (the connection's task runs on the current tokio runtime) and creates or
//! // upgrades the tables (plain SQL migrations, recorded in `mimi_ds_postgres_schema`).
//! let mut storage = PostgresDsStorage::connect("host=127.0.0.1 user=hub dbname=hub").await?;
//! // Per request:
//! let outcome = hub.process_async(now, request_bytes, &mut storage).await?;
//! // Deliver `outcome.fanout`, then mark its outbox entries delivered; or let a relay drain
//! // the outbox (also after a crash):
//! for entry in storage.pending(now.0, 100).await? {
//!     let fanout = entry.fanout()?; // deliver it, then:
//!     storage.mark_delivered(entry.id).await?;
//! }
//! # let _ = outcome; Ok(()) }
//! ```
//!
//! # Connections, pools and your own transaction
//!
//! * [`PostgresDsStorage<C>`] and [`PostgresQsStorage<C>`] hold one connection: anything that
//!   is a [`ClientHandle`], i.e. an owned [`tokio_postgres::Client`], a `&mut Client`, or (with
//!   the feature `pool`) a pooled `deadpool_postgres::Object`. [`PostgresDsStorage::new`]
//!   does not touch the database; run [`migrate`] once at start-up.
//! * **Your transaction.** [`ds::write_in`] and [`qs::write_in`] apply a write set inside a
//!   [`Transaction`](tokio_postgres::Transaction) you opened, under a savepoint: your own rows
//!   (notifications, audit) and mimi-ds's commit or roll back together. The read functions
//!   ([`ds::read`], [`ds::replay_mark`], [`qs::queue`], ...) take any
//!   [`GenericClient`](tokio_postgres::GenericClient), a transaction included.
//! * **Schema.** Tables are created in the connection's current schema (the first of its
//!   `search_path`), so you choose where they live, e.g. with
//!   `options='-c search_path=mimi'` in the connection string. Names start with `mimi_ds_` and
//!   `mimi_qs_`. PostgreSQL 11 or newer (for `sha256`); CI tests on 15.
//!
//! # How it holds the storage contract
//!
//! * **One transaction per write set**, at the default isolation level (READ COMMITTED), or a
//!   savepoint in yours.
//! * **The guard** is the group row's version: `UPDATE … SET version = version + 1 WHERE
//!   group = $1 AND version = $2`, or `INSERT … ON CONFLICT DO NOTHING` for a new group. The
//!   row lock the update takes serialises racing writers; a writer that waited re-checks the
//!   version of the committed row, sees it moved and changes no row. No row changed means
//!   [`Conflict`](mimi_ds::storage::WriteOutcome::Conflict), and the transaction is rolled
//!   back. A replay mark is an upsert that replaces only an expired mark (`ON CONFLICT … DO
//!   UPDATE … WHERE expires_at_ms < now`); no row changed is a conflict. SERIALIZABLE is not
//!   needed: every write set touches one group, and its row is the lock.
//! * **Conflicts the database reports** are conflicts too. A write (a statement or the
//!   commit) that the database aborts with SQLSTATE `40001` (`serialization_failure`) or
//!   `40P01` (`deadlock_detected`) changed nothing, and reports
//!   [`Conflict`](mimi_ds::storage::WriteOutcome::Conflict) (or
//!   [`QsWriteOutcome::Conflict`](mimi_ds::qs::QsWriteOutcome::Conflict)), after rolling back
//!   its transaction or savepoint, so the step API re-reads and re-validates (at most
//!   `max_conflict_retries` times, then the request is answered `conflict`). This holds in the
//!   backend's own transaction and in [`ds::write_in`]/[`qs::write_in`]. It is what a
//!   connection at SERIALIZABLE (`default_transaction_isolation`, or CockroachDB and similar
//!   engines, which report every write conflict that way) needs, and what a deadlock between
//!   a vendor's transactions gets. In your own SERIALIZABLE transaction, a conflict means its
//!   snapshot is stale: reads through the same transaction see the same state again, so roll
//!   it back and run the request again in a new one.
//! * **Expiry in the write.** Expired replay marks, reservation-only groups and QS delivery
//!   marks are deleted by the write transaction through indexes on their expiry, at most
//!   [`EXPIRE_PER_WRITE`] of each per write, skipping rows another writer holds (`FOR UPDATE
//!   SKIP LOCKED`: two writers never wait on, or deadlock over, each other's expired rows). No
//!   background task is needed.
//! * **The outbox** gets one row per fanout in the same transaction. Its IDs come from an
//!   identity column (a sequence): unique, increasing in the order a transaction stores them,
//!   never reused. Across concurrent transactions an entry with a smaller ID may commit later;
//!   [`pending`](mimi_ds::storage::AsyncDsOutbox::pending) lists whatever is committed and due,
//!   leaving out an entry while an older entry of its destination is put off: one statement
//!   with a `NOT EXISTS` probe on the index `(destination, next_attempt_at_ms, id)` (schema
//!   version 2), so the order holds whichever replica put the older entry off.
//! * **Reads** are single statements, so each sees one snapshot.
//! * **Attacker-chosen IDs.** Group IDs, replay keys, queue IDs, owner keys and mark hashes
//!   are indexed by their SHA-256 (computed by the server, `sha256($1)`), never by the bytes
//!   themselves: a B-tree entry holds at most about 2.7 kB, and a client chooses these bytes.
//!   Group, queue and owner IDs are stored whole beside the hash and compared whole.
//! * **Faults.** Any other database error is an [`Error::Postgres`] and the transaction is
//!   rolled back: nothing partial is ever committed. A stored row that does not decode (a
//!   negative version, an unknown record kind, a queued message that is not one) is an
//!   [`Error::CorruptGroup`] (or [`Error::CorruptQueue`], [`Error::CorruptOutbox`]) naming it;
//!   the group is never reset. A value larger than [`DEFAULT_MAX_VALUE_BYTES`] (PostgreSQL
//!   stores at most 1 GB in one field; lower it with
//!   [`PostgresDsStorage::with_max_value_bytes`]) is an [`Error::TooLarge`] before anything
//!   is sent.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod connection;
pub mod directory;
pub mod ds;
pub mod qs;
mod schema;
#[cfg(feature = "test-cluster")]
pub mod test_cluster;

use tokio_postgres::{Client, NoTls};

pub use connection::PostgresConnectionStore;
pub use directory::PostgresDirectoryStorage;
pub use ds::PostgresDsStorage;
pub use qs::PostgresQsStorage;
pub use schema::{migrate, SCHEMA_VERSION};

/// The largest value (a record, a replay mark's response, an outbox request, a queued message)
/// a write stores, with the group or queue ID sent beside it: 1 GiB less 64 KiB. PostgreSQL
/// stores at most 1 GB in one `bytea` field and receives at most 1 GB in one protocol message;
/// the 64 KiB leave room for the statement's other parameters. A larger value is an
/// [`Error::TooLarge`] before anything is written.
pub const DEFAULT_MAX_VALUE_BYTES: usize = (1 << 30) - (1 << 16);

/// How many expired replay marks, expired reservation-only groups and expired QS delivery
/// marks one write deletes at most, each. A backlog (after downtime) drains over the next
/// writes; a single write stays bounded.
pub const EXPIRE_PER_WRITE: u32 = 1_000;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// PostgreSQL (or the connection to it) failed; the write, if any, was rolled back. The
    /// message includes the server's (tokio-postgres's own says only "db error").
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The pool could not hand out a connection (feature `pool`).
    #[cfg(feature = "pool")]
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored row of this group does not decode into mimi-ds types (a damaged or hand-edited
    /// database). The group is left as it is.
    #[error("corrupt stored data of group {group}: {detail}")]
    CorruptGroup {
        /// The group ID in hex (the first 32 bytes).
        group: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored row of this queue does not decode.
    #[error("corrupt stored data of queue {queue}: {detail}")]
    CorruptQueue {
        /// The queue ID in hex (the first 32 bytes).
        queue: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored KeyPackage directory account does not decode.
    #[error("corrupt KeyPackage directory account {index}: {detail}")]
    CorruptDirectory {
        /// The account's index in hex (the first 32 bytes).
        index: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored connection request or inbox row does not decode.
    #[error("corrupt connection inbox {inbox}: {detail}")]
    CorruptConnection {
        /// The inbox ID in hex (the first 32 bytes).
        inbox: String,
        /// What does not decode.
        detail: String,
    },
    /// A stored outbox row does not decode.
    #[error("corrupt outbox entry {id}: {detail}")]
    CorruptOutbox {
        /// The entry's ID.
        id: i64,
        /// What does not decode.
        detail: String,
    },
    /// A value is larger than the storage's limit ([`DEFAULT_MAX_VALUE_BYTES`] unless set
    /// lower); nothing was written.
    #[error("{what} of {len} bytes for {owner} is over the limit of {limit} bytes per value (PostgreSQL stores at most 1 GB per field)")]
    TooLarge {
        /// Which value.
        what: &'static str,
        /// The group or queue it belongs to, in hex.
        owner: String,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The database was migrated by a newer mimi-ds-postgres.
    #[error("the database's mimi-ds-postgres schema is version {found}, newer than the {supported} this version knows")]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
    /// A Queueing Service change added to mimi-ds after this version of the crate; nothing
    /// was written.
    #[error("queue change {0} is not known to this version of mimi-ds-postgres")]
    UnsupportedChange(String),
}

/// A connection the storage can use: it reads through `&Client` and opens its write
/// transactions through `&mut Client`.
pub trait ClientHandle: Send + Sync {
    /// The connection, for statements.
    fn client(&self) -> &Client;
    /// The connection, for opening a transaction.
    fn client_mut(&mut self) -> &mut Client;
}

impl ClientHandle for Client {
    fn client(&self) -> &Client {
        self
    }

    fn client_mut(&mut self) -> &mut Client {
        self
    }
}

impl ClientHandle for &mut Client {
    fn client(&self) -> &Client {
        self
    }

    fn client_mut(&mut self) -> &mut Client {
        self
    }
}

#[cfg(feature = "pool")]
impl ClientHandle for deadpool_postgres::Object {
    fn client(&self) -> &Client {
        self
    }

    fn client_mut(&mut self) -> &mut Client {
        self
    }
}

/// Connects without TLS (loopback or a private network; for TLS, connect yourself with
/// [`tokio_postgres::Config::connect`] and a TLS connector and hand the client to `new`),
/// and runs the connection's task on the current tokio runtime. The task ends when the client
/// is dropped.
pub(crate) async fn connect_plain(config: &str) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(config, NoTls).await?;
    tokio::spawn(async move {
        // An error here is the connection dropping; every later call on the client reports it.
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether the database aborted the statement or the commit because a concurrent
/// transaction won: SQLSTATE `40001` (`serialization_failure`: SERIALIZABLE isolation, and
/// every write conflict on CockroachDB and similar engines) or `40P01` (`deadlock_detected`).
/// The transaction (or savepoint) changed nothing, so the write is reported as a
/// [`Conflict`](mimi_ds::storage::WriteOutcome::Conflict) and the step API re-reads and
/// re-validates, like a moved version.
pub(crate) fn lost_to_concurrent_transaction(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// [`lost_to_concurrent_transaction`] for the crate's error.
pub(crate) fn is_lost_race(error: &Error) -> bool {
    matches!(error, Error::Postgres(e) if lost_to_concurrent_transaction(e))
}

/// tokio-postgres's message, with the server's error (severity, message, detail) when there is
/// one.
fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{error}: {db}"),
        None => error.to_string(),
    }
}

/// Refuses a value that would make a statement's parameters longer than `limit`: the
/// statement also carries its owner's ID (`owner` is "group" or "queue", `id` the ID).
pub(crate) fn check_size(
    limit: usize,
    what: &'static str,
    owner: &str,
    id: &[u8],
    len: usize,
) -> Result<(), Error> {
    if len.saturating_add(id.len()) > limit {
        return Err(Error::TooLarge {
            what,
            owner: format!("{owner} {}", hex(id)),
            len,
            limit,
        });
    }
    Ok(())
}

pub(crate) use mimi_ds::storage::id_hex as hex;

/// A time or count as PostgreSQL's `bigint`. Times past year 292 million saturate; they are
/// "never" either way.
pub(crate) fn sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_names_at_most_32_bytes() {
        assert_eq!(hex(b"\x01\xab"), "01ab");
        assert_eq!(hex(&[0; 33]), format!("{}...", "00".repeat(32)));
    }

    #[test]
    fn sizes_count_the_id_beside_the_value() {
        assert!(check_size(10, "record", "group", b"gg", 8).is_ok());
        match check_size(10, "record", "group", b"gg", 9) {
            Err(Error::TooLarge {
                owner, len, limit, ..
            }) => assert_eq!((owner.as_str(), len, limit), ("group 6767", 9, 10)),
            other => panic!("over the limit: {other:?}"),
        }
    }
}
