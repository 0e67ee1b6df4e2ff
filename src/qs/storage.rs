//! The storage contract of the Queueing Service, and [`InMemoryQsStorage`].
//!
//! Like the DS's (see [`crate::storage`]), a request reads first and then makes at most one
//! **atomic, guarded** write ([`QsStorage::write`]): every change in a [`QsWriteSet`] applies
//! together or none does. The guards are per queue: an enqueue names the sequence number it
//! expects the queue to hand out next, so two deliveries racing for one queue cannot both take
//! the same number; the loser's write reports [`QsWriteOutcome::Conflict`] and the QS reads
//! again. Queue IDs are chosen by the QS; owner keys and delivery marks come from clients and
//! DSs: treat them as arbitrary bytes.
//!
//! # Sizes an attacker drives
//!
//! Everything below is bounded by the QS's configuration ([`crate::qs::QsConfig`]), not by
//! the backend; a backend should still be ready for these sizes:
//!
//! * **Queues**: one per owner key. `create_queue` only proves possession of a key, and anyone
//!   can make keys, so the number of queues is bounded only by who the embedding server lets
//!   send `create_queue` (authenticate your users before passing it on). Each
//!   [`QueueRecord`] holds an owner key of up to `max_request_bytes` (default 4 MiB; Ed25519
//!   keys are 32 bytes, but the bytes are not checked beyond the signature verifying).
//! * **Messages**: chosen by any hub the queue's client is in a group on (and by the members
//!   of those groups, who send through the hub). One message is at most `max_request_bytes`
//!   (the delivery that carried it). A queue holds at most `max_queue_messages` messages and
//!   `max_queue_bytes` bytes of them, or without those limits as many as are delivered
//!   before the client acknowledges.
//! * **Delivery marks**: one per enqueued message per queue (a 32-byte hash and an expiry),
//!   kept for `duplicate_window_ms`; so at most as many as the queue received in the window.
//! * **Pages**: [`QsStorage::messages`] is asked for at most `max_page` messages and
//!   `max_page_bytes` bytes (plus the one message a page always holds).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tls_codec::Size as _;

use crate::storage::Infallible;
use crate::wire::QueuedMessage;

/// The size a message counts for in [`QueueRecord::queued_bytes`] and in page limits: its
/// encoded `QueuedMessage`.
pub fn queued_size(message: &QueuedMessage) -> u64 {
    message.tls_serialized_len() as u64
}

/// A queue's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueRecord {
    /// The signature public key that authenticates the owner's requests.
    pub owner_key: Vec<u8>,
    /// The token a delivery must present inside the sealed queue information.
    pub fanout_auth_token: Vec<u8>,
    /// The sequence number the next enqueued message gets.
    pub next_sequence: u64,
    /// The lowest sequence number not yet acknowledged.
    pub first_unacknowledged: u64,
    /// The sum of [`queued_size`] over the messages the queue holds. The QS sets it to 0 on
    /// creation; the backend keeps it: an enqueue adds the message's size, an acknowledgement
    /// subtracts the sizes of the messages it drops.
    #[serde(default)]
    pub queued_bytes: u64,
}

/// A remembered delivery: the hash of what was enqueued and until when it is remembered, so a
/// byte-identical redelivery is accepted without being stored twice (draft-ietf-mimi-protocol
/// `/notify`: "MUST answer 201 to a byte-identical duplicate … SHOULD process only the first").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryMark {
    /// SHA-256 of the sender domain and the encoded `FanoutMessage`.
    pub hash: Vec<u8>,
    /// The mark may be dropped once `now` passes this (ms since the UNIX epoch).
    pub expires_at_ms: u64,
}

/// One change of a [`QsWriteSet`], with its guard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QsChange {
    /// Create a queue. Guard: neither the ID nor the owner key is in use.
    CreateQueue {
        /// The new queue's ID.
        queue_id: Vec<u8>,
        /// Its record.
        record: QueueRecord,
    },
    /// Delete a queue, its messages and its marks. Guard: the queue exists.
    DeleteQueue {
        /// The queue.
        queue_id: Vec<u8>,
    },
    /// Append a message. Guard: the queue exists, its `next_sequence` equals
    /// `message.sequence_number`, and it holds no unexpired mark with the same hash.
    Enqueue {
        /// The queue.
        queue_id: Vec<u8>,
        /// The message, numbered.
        message: QueuedMessage,
        /// The mark to remember it by.
        mark: DeliveryMark,
    },
    /// Drop every message below `up_to_sequence`. Guard: the queue exists and
    /// `up_to_sequence <= next_sequence`.
    Acknowledge {
        /// The queue.
        queue_id: Vec<u8>,
        /// One past the last message to drop.
        up_to_sequence: u64,
    },
}

/// Everything one QS request changes, applied atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QsWriteSet {
    /// The changes, in order.
    pub changes: Vec<QsChange>,
    /// `now` of the request, for expiring marks.
    pub now_ms: u64,
}

/// Whether a write set was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum QsWriteOutcome {
    /// Every change is durable.
    Applied,
    /// A guard did not hold; nothing changed.
    Conflict,
}

/// Storage for the Queueing Service.
pub trait QsStorage {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A queue's record.
    fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, Self::Error>;
    /// The queue owned by this key, if any.
    fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Up to `limit` messages of a queue with sequence numbers from `from_sequence` on, in
    /// order, whose [`queued_size`]s add up to at most `max_bytes`, except that the first
    /// message is returned whatever its size (so that any message can be fetched).
    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, Self::Error>;
    /// Whether the queue holds an unexpired mark with this hash.
    fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, Self::Error>;
    /// Applies the write set atomically if every guard holds. Marks whose expiry is before
    /// `writes.now_ms` may be dropped on the way; a backend should drop them without reading
    /// every mark it holds (index them by expiry, or let the database expire them).
    fn write(&mut self, writes: &QsWriteSet) -> Result<QsWriteOutcome, Self::Error>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct QueueEntry {
    record: QueueRecord,
    messages: BTreeMap<u64, QueuedMessage>,
    marks: HashMap<Vec<u8>, u64>,
}

/// A [`QsStorage`] in process memory; `Clone + PartialEq` so tests can assert a rejected
/// request changed nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InMemoryQsStorage {
    queues: HashMap<Vec<u8>, QueueEntry>,
    owners: HashMap<Vec<u8>, Vec<u8>>,
    /// Every mark of every queue as `(expires_at_ms, queue_id, hash)`, so a write drops the
    /// expired ones from the front instead of scanning them all.
    mark_expiry: BTreeSet<(u64, Vec<u8>, Vec<u8>)>,
}

impl InMemoryQsStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The number of messages waiting in a queue.
    pub fn queued(&self, queue_id: &[u8]) -> usize {
        self.queues.get(queue_id).map_or(0, |q| q.messages.len())
    }

    /// The number of delivery marks held, expired or not, over all queues.
    pub fn mark_count(&self) -> usize {
        self.mark_expiry.len()
    }

    /// Drops every mark that expired before `now_ms` (a mark is valid up to and including its
    /// expiry, as [`QsStorage::has_mark`] reads it).
    fn drop_expired_marks(&mut self, now_ms: u64) {
        while self
            .mark_expiry
            .first()
            .is_some_and(|(expiry, _, _)| *expiry < now_ms)
        {
            if let Some((_, queue_id, hash)) = self.mark_expiry.pop_first() {
                if let Some(entry) = self.queues.get_mut(&queue_id) {
                    entry.marks.remove(&hash);
                }
            }
        }
    }

    fn guards_hold(&self, writes: &QsWriteSet) -> bool {
        // Guards are checked against the state as the earlier changes of the same set leave
        // it, so simulate on a copy of the touched entries' counters.
        let mut next: HashMap<&[u8], u64> = HashMap::new();
        let mut created: Vec<&[u8]> = Vec::new();
        for change in &writes.changes {
            match change {
                QsChange::CreateQueue { queue_id, record } => {
                    if self.queues.contains_key(queue_id)
                        || self.owners.contains_key(&record.owner_key)
                        || created.contains(&queue_id.as_slice())
                    {
                        return false;
                    }
                    created.push(queue_id);
                }
                QsChange::DeleteQueue { queue_id } => {
                    if !self.queues.contains_key(queue_id) {
                        return false;
                    }
                }
                QsChange::Enqueue {
                    queue_id,
                    message,
                    mark,
                } => {
                    let Some(entry) = self.queues.get(queue_id) else {
                        return false;
                    };
                    let expected = next.entry(queue_id).or_insert(entry.record.next_sequence);
                    let marked = entry
                        .marks
                        .get(&mark.hash)
                        .is_some_and(|&expiry| expiry >= writes.now_ms);
                    if message.sequence_number != *expected || marked {
                        return false;
                    }
                    *expected += 1;
                }
                QsChange::Acknowledge {
                    queue_id,
                    up_to_sequence,
                } => match self.queues.get(queue_id) {
                    Some(entry) if *up_to_sequence <= entry.record.next_sequence => {}
                    _ => return false,
                },
            }
        }
        true
    }
}

impl QsStorage for InMemoryQsStorage {
    type Error = Infallible;

    fn queue(&self, queue_id: &[u8]) -> Result<Option<QueueRecord>, Infallible> {
        Ok(self.queues.get(queue_id).map(|q| q.record.clone()))
    }

    fn queue_of_owner(&self, owner_key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.owners.get(owner_key).cloned())
    }

    fn messages(
        &self,
        queue_id: &[u8],
        from_sequence: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, Infallible> {
        let Some(queue) = self.queues.get(queue_id) else {
            return Ok(Vec::new());
        };
        let mut page = Vec::new();
        let mut bytes = 0u64;
        for message in queue
            .messages
            .range(from_sequence..)
            .map(|(_, m)| m)
            .take(limit)
        {
            bytes = bytes.saturating_add(queued_size(message));
            if !page.is_empty() && bytes > max_bytes as u64 {
                break;
            }
            page.push(message.clone());
        }
        Ok(page)
    }

    fn has_mark(&self, queue_id: &[u8], hash: &[u8], now_ms: u64) -> Result<bool, Infallible> {
        Ok(self
            .queues
            .get(queue_id)
            .and_then(|q| q.marks.get(hash))
            .is_some_and(|&expiry| expiry >= now_ms))
    }

    fn write(&mut self, writes: &QsWriteSet) -> Result<QsWriteOutcome, Infallible> {
        if !self.guards_hold(writes) {
            return Ok(QsWriteOutcome::Conflict);
        }
        self.drop_expired_marks(writes.now_ms);
        for change in &writes.changes {
            match change {
                QsChange::CreateQueue { queue_id, record } => {
                    self.owners
                        .insert(record.owner_key.clone(), queue_id.clone());
                    self.queues.insert(
                        queue_id.clone(),
                        QueueEntry {
                            record: record.clone(),
                            ..QueueEntry::default()
                        },
                    );
                }
                QsChange::DeleteQueue { queue_id } => {
                    if let Some(entry) = self.queues.remove(queue_id) {
                        self.owners.remove(&entry.record.owner_key);
                        for (hash, expiry) in entry.marks {
                            self.mark_expiry.remove(&(expiry, queue_id.clone(), hash));
                        }
                    }
                }
                QsChange::Enqueue {
                    queue_id,
                    message,
                    mark,
                } => {
                    if let Some(entry) = self.queues.get_mut(queue_id) {
                        if let Some(old) = entry.marks.insert(mark.hash.clone(), mark.expires_at_ms)
                        {
                            self.mark_expiry
                                .remove(&(old, queue_id.clone(), mark.hash.clone()));
                        }
                        self.mark_expiry.insert((
                            mark.expires_at_ms,
                            queue_id.clone(),
                            mark.hash.clone(),
                        ));
                        entry.record.next_sequence = message.sequence_number + 1;
                        entry.record.queued_bytes = entry
                            .record
                            .queued_bytes
                            .saturating_add(queued_size(message));
                        entry
                            .messages
                            .insert(message.sequence_number, message.clone());
                    }
                }
                QsChange::Acknowledge {
                    queue_id,
                    up_to_sequence,
                } => {
                    if let Some(entry) = self.queues.get_mut(queue_id) {
                        let kept = entry.messages.split_off(up_to_sequence);
                        let dropped: u64 = entry.messages.values().map(queued_size).sum();
                        entry.messages = kept;
                        entry.record.queued_bytes =
                            entry.record.queued_bytes.saturating_sub(dropped);
                        entry.record.first_unacknowledged =
                            entry.record.first_unacknowledged.max(*up_to_sequence);
                    }
                }
            }
        }
        Ok(QsWriteOutcome::Applied)
    }
}
