//! Where a provider keeps its users' connection-establishment keys and connection inboxes: the
//! [`ConnectionStore`] contract and [`InMemoryConnectionStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::{ready, Future};

use super::wire::StoredConnectionRequest;
use crate::storage::Infallible;

/// One user's published connection-establishment key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionKeyRecord {
    /// The MLS ciphersuite of the key.
    pub ciphersuite: u16,
    /// The HPKE public key.
    pub connection_establishment_key: Vec<u8>,
    /// The user's connection inbox (chosen at the first publication, kept by later ones).
    pub inbox_id: Vec<u8>,
    /// The signature key that owns the user's name at the `/connection_operation` endpoint
    /// (wire-format.md §14.3.2), bound by the first publication through it; empty when the
    /// embedding server published through [`super::ConnectionProvider::publish`] after its
    /// own login, and then no signed request is accepted for the user.
    pub owner_key: Vec<u8>,
    /// When the key was published: the signed request's `timestamp_ms` at
    /// `/connection_operation`, the embedding server's time for [`super::ConnectionProvider::publish`].
    /// A publication replaces the record only if it is newer (rule R-CONN-9), so a replayed
    /// earlier publication cannot bring back a replaced key.
    pub published_at_ms: u64,
}

/// A connection inbox's state, without its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRecord {
    /// The user it belongs to.
    pub user: Vec<u8>,
    /// The sequence number the next request gets.
    pub next_sequence: u64,
    /// How many requests it holds (not yet acknowledged).
    pub len: u64,
}

/// One change a [`super::ConnectionProvider`] call makes: every call writes at most one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionChange {
    /// Publish (or replace) `user`'s key; creates the inbox `record.inbox_id` if it does not
    /// exist yet. Guard: no record of `user`, or one with an older `published_at_ms` (rule
    /// R-CONN-9); otherwise nothing changes and the store answers a conflict.
    Publish {
        /// The provider's local name of the user.
        user: Vec<u8>,
        /// The key and the inbox.
        record: ConnectionKeyRecord,
    },
    /// Append `request` to the inbox, if its next sequence number is still
    /// `request.sequence_number`, and remember `mark` until `mark_expires_at_ms`.
    Enqueue {
        /// The inbox.
        inbox_id: Vec<u8>,
        /// The request, numbered with the sequence number the inbox expects.
        request: StoredConnectionRequest,
        /// The replay mark: the hash of the sealed request.
        mark: Vec<u8>,
        /// When the mark may be dropped.
        mark_expires_at_ms: u64,
    },
    /// Drop every request below `up_to_sequence`.
    Acknowledge {
        /// The inbox.
        inbox_id: Vec<u8>,
        /// One past the last request the user has processed.
        up_to_sequence: u64,
    },
}

/// A provider's storage of connection keys and inboxes.
///
/// Contract:
/// - reads return `Ok(None)` (or empty) for what does not exist, and `Err` only when the
///   backend fails;
/// - the user names, inbox IDs and request bytes come from the provider's server and from
///   strangers: store them as opaque bytes;
/// - [`ConnectionStore::apply`] is atomic, and an `Enqueue` applies only while the inbox's next
///   sequence number is the request's (otherwise it returns `Ok(false)` and changes nothing);
///   it returns `Ok(false)` also for an `Enqueue` or `Acknowledge` of an inbox that no longer
///   exists;
/// - a mark is live while `now_ms <= expires_at_ms`; expired marks may be dropped at any time.
pub trait ConnectionStore {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// `user`'s published key.
    fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Self::Error>;

    /// The inbox `inbox_id`.
    fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Self::Error>;

    /// Whether the inbox holds a live replay mark `mark` at `now_ms`.
    fn has_mark(&self, inbox_id: &[u8], mark: &[u8], now_ms: u64) -> Result<bool, Self::Error>;

    /// Up to `max` requests of the inbox from `from_sequence` on, in order.
    fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, Self::Error>;

    /// Applies one change atomically; `Ok(false)` if its guard failed (see the contract).
    fn apply(&mut self, now_ms: u64, change: ConnectionChange) -> Result<bool, Self::Error>;
}

/// [`ConnectionStore`] for async backends (PostgreSQL): the same contract, each method
/// returning a future.
pub trait AsyncConnectionStore: Send {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// As [`ConnectionStore::key_record`].
    fn key_record(
        &self,
        user: &[u8],
    ) -> impl Future<Output = Result<Option<ConnectionKeyRecord>, Self::Error>> + Send;

    /// As [`ConnectionStore::inbox`].
    fn inbox(
        &self,
        inbox_id: &[u8],
    ) -> impl Future<Output = Result<Option<InboxRecord>, Self::Error>> + Send;

    /// As [`ConnectionStore::has_mark`].
    fn has_mark(
        &self,
        inbox_id: &[u8],
        mark: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// As [`ConnectionStore::requests`].
    fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<StoredConnectionRequest>, Self::Error>> + Send;

    /// As [`ConnectionStore::apply`].
    fn apply(
        &mut self,
        now_ms: u64,
        change: ConnectionChange,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Inbox {
    user: Vec<u8>,
    next_sequence: u64,
    requests: BTreeMap<u64, StoredConnectionRequest>,
    /// Replay marks: hash to expiry.
    marks: HashMap<Vec<u8>, u64>,
}

/// A [`ConnectionStore`] in process memory; `Clone + PartialEq` so tests can assert that a
/// refused request changed nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InMemoryConnectionStore {
    keys: HashMap<Vec<u8>, ConnectionKeyRecord>,
    inboxes: HashMap<Vec<u8>, Inbox>,
    /// `(expires_at_ms, inbox_id, mark)` of every mark, so writes drop expired ones from the
    /// front.
    mark_expiry: BTreeSet<(u64, Vec<u8>, Vec<u8>)>,
}

impl InMemoryConnectionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many replay marks are held, expired ones not yet dropped included.
    pub fn mark_count(&self) -> usize {
        self.mark_expiry.len()
    }

    fn drop_expired(&mut self, now_ms: u64) {
        while let Some((expires_at_ms, _, _)) = self.mark_expiry.first() {
            if *expires_at_ms >= now_ms {
                break;
            }
            if let Some((_, inbox_id, mark)) = self.mark_expiry.pop_first() {
                if let Some(inbox) = self.inboxes.get_mut(&inbox_id) {
                    inbox.marks.remove(&mark);
                }
            }
        }
    }
}

impl ConnectionStore for InMemoryConnectionStore {
    type Error = Infallible;

    fn key_record(&self, user: &[u8]) -> Result<Option<ConnectionKeyRecord>, Infallible> {
        Ok(self.keys.get(user).cloned())
    }

    fn inbox(&self, inbox_id: &[u8]) -> Result<Option<InboxRecord>, Infallible> {
        Ok(self.inboxes.get(inbox_id).map(|inbox| InboxRecord {
            user: inbox.user.clone(),
            next_sequence: inbox.next_sequence,
            len: inbox.requests.len() as u64,
        }))
    }

    fn has_mark(&self, inbox_id: &[u8], mark: &[u8], now_ms: u64) -> Result<bool, Infallible> {
        Ok(self
            .inboxes
            .get(inbox_id)
            .and_then(|inbox| inbox.marks.get(mark))
            .is_some_and(|expires_at_ms| now_ms <= *expires_at_ms))
    }

    fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, Infallible> {
        Ok(self.inboxes.get(inbox_id).map_or_else(Vec::new, |inbox| {
            inbox
                .requests
                .range(from_sequence..)
                .take(max)
                .map(|(_, request)| request.clone())
                .collect()
        }))
    }

    fn apply(&mut self, now_ms: u64, change: ConnectionChange) -> Result<bool, Infallible> {
        self.drop_expired(now_ms);
        match change {
            ConnectionChange::Publish { user, record } => {
                // Rule R-CONN-9: only a newer publication replaces the stored one.
                if let Some(stored) = self.keys.get(&user) {
                    if stored.published_at_ms >= record.published_at_ms {
                        return Ok(false);
                    }
                }
                self.inboxes
                    .entry(record.inbox_id.clone())
                    .or_insert_with(|| Inbox {
                        user: user.clone(),
                        ..Inbox::default()
                    });
                self.keys.insert(user, record);
                Ok(true)
            }
            ConnectionChange::Enqueue {
                inbox_id,
                request,
                mark,
                mark_expires_at_ms,
            } => {
                let Some(inbox) = self.inboxes.get_mut(&inbox_id) else {
                    return Ok(false);
                };
                if inbox.next_sequence != request.sequence_number {
                    return Ok(false);
                }
                inbox.next_sequence += 1;
                inbox.requests.insert(request.sequence_number, request);
                if let Some(old) = inbox.marks.insert(mark.clone(), mark_expires_at_ms) {
                    self.mark_expiry
                        .remove(&(old, inbox_id.clone(), mark.clone()));
                }
                self.mark_expiry
                    .insert((mark_expires_at_ms, inbox_id, mark));
                Ok(true)
            }
            ConnectionChange::Acknowledge {
                inbox_id,
                up_to_sequence,
            } => {
                let Some(inbox) = self.inboxes.get_mut(&inbox_id) else {
                    return Ok(false);
                };
                inbox.requests = inbox.requests.split_off(&up_to_sequence);
                Ok(true)
            }
        }
    }
}

// Memory never waits: every future is ready when it is created.
impl AsyncConnectionStore for InMemoryConnectionStore {
    type Error = Infallible;

    fn key_record(
        &self,
        user: &[u8],
    ) -> impl Future<Output = Result<Option<ConnectionKeyRecord>, Infallible>> + Send {
        ready(ConnectionStore::key_record(self, user))
    }

    fn inbox(
        &self,
        inbox_id: &[u8],
    ) -> impl Future<Output = Result<Option<InboxRecord>, Infallible>> + Send {
        ready(ConnectionStore::inbox(self, inbox_id))
    }

    fn has_mark(
        &self,
        inbox_id: &[u8],
        mark: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(ConnectionStore::has_mark(self, inbox_id, mark, now_ms))
    }

    fn requests(
        &self,
        inbox_id: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<StoredConnectionRequest>, Infallible>> + Send {
        ready(ConnectionStore::requests(
            self,
            inbox_id,
            from_sequence,
            max,
        ))
    }

    fn apply(
        &mut self,
        now_ms: u64,
        change: ConnectionChange,
    ) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(ConnectionStore::apply(self, now_ms, change))
    }
}
