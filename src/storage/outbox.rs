//! The durable outbox: the fanout of an applied write, stored with it, so that a relay can
//! deliver it even if the process that made the write stops before delivering.
//!
//! [`crate::DeliveryService::process`] returns the fanout of a request in
//! [`crate::Outcome::fanout`] only after its [`WriteSet`](super::WriteSet) was applied. If the
//! process crashes between the write and the deliveries, or the backend applied the write but
//! reported a failure (a lost commit acknowledgement), that fanout exists nowhere else: the
//! members it was for miss a commit and are stuck at an old epoch. A backend implementing
//! [`DsOutbox`] stores one [`OutboxEntry`] per [`Fanout`] of every applied write set, in the
//! same atomic write, and a relay drains it:
//!
//! ```no_run
//! # use mimi_ds::storage::{DsOutbox, InMemoryStorage};
//! # fn deliver(_: &mimi_ds::Fanout) -> bool { true }
//! # let mut storage = InMemoryStorage::with_outbox();
//! # let now_ms = 0;
//! for entry in storage.pending(now_ms, 100)? {
//!     match entry.fanout() {
//!         Ok(fanout) if deliver(&fanout) => {
//!             storage.mark_delivered(entry.id)?;
//!         }
//!         // Back off: the n-th retry waits 2^n seconds. The destination's newer entries
//!         // wait behind this one (`pending` keeps each destination's order).
//!         Ok(_) => {
//!             storage.retry_later(entry.id, now_ms + (1_000 << entry.attempts.min(10)))?;
//!         }
//!         // Corrupt stored bytes: report it; never guess at a delivery.
//!         Err(corrupt) => eprintln!("{corrupt}"),
//!     }
//! }
//! # Ok::<(), mimi_ds::storage::Infallible>(())
//! ```
//!
//! Deliveries are at least once: a relay that crashes after delivering and before
//! [`DsOutbox::mark_delivered`] delivers again, and the Queueing Service accepts the
//! byte-identical redelivery without storing it twice within its `duplicate_window_ms`
//! (wire-format.md §10.2, "Redelivery"); retry well inside that window.
//! A caller that delivers [`crate::Outcome::fanout`] directly and also runs a relay marks the
//! entries delivered when it is done; the outbox is then only the safety net.

use crate::fanout::Fanout;
use crate::wire::{decode_exact, QueueingServiceRequest};

use super::DsStorage;

/// One stored delivery: a [`Fanout`] of an applied write set, with its retry bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Assigned by the backend: unique, increasing in the order one write stored its entries,
    /// and never reused, also after [`DsOutbox::mark_delivered`]. Across concurrent writes a
    /// smaller ID may become visible later (see the storage contract).
    pub id: u64,
    /// The group the write set was for.
    pub group_id: Vec<u8>,
    /// [`Fanout::destination`]: chosen by group members and unchecked, see
    /// [`Fanout::check_destination`].
    pub destination: String,
    /// The encoded `QueueingServiceRequest` ([`Fanout::to_bytes`]).
    pub request: Vec<u8>,
    /// The write set's `now_ms`.
    pub created_at_ms: u64,
    /// How many times [`DsOutbox::retry_later`] was called for it.
    pub attempts: u32,
    /// [`DsOutbox::pending`] returns the entry from this time on (ms since the UNIX epoch);
    /// `created_at_ms` when stored.
    pub next_attempt_at_ms: u64,
}

impl OutboxEntry {
    /// The entry a backend stores for one fanout of a write set applied at `now_ms`, before
    /// it assigns [`OutboxEntry::id`] (0 here).
    pub fn new(group_id: &[u8], fanout: &Fanout, now_ms: u64) -> Self {
        Self {
            id: 0,
            group_id: group_id.to_vec(),
            destination: fanout.destination.clone(),
            request: fanout.to_bytes(),
            created_at_ms: now_ms,
            attempts: 0,
            next_attempt_at_ms: now_ms,
        }
    }

    /// The fanout to deliver, decoded from [`OutboxEntry::request`]. Stored bytes that no
    /// longer decode (a damaged database) are an error naming the entry and its group.
    pub fn fanout(&self) -> Result<Fanout, CorruptOutboxEntry> {
        let request = decode_exact::<QueueingServiceRequest>(&self.request).map_err(|e| {
            CorruptOutboxEntry {
                id: self.id,
                group_id: self.group_id.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Fanout {
            destination: self.destination.clone(),
            request,
        })
    }
}

/// An [`OutboxEntry`] whose stored request does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "outbox entry {id} of group {} does not decode: {reason}",
    super::id_hex(group_id)
)]
pub struct CorruptOutboxEntry {
    /// The entry.
    pub id: u64,
    /// Its group.
    pub group_id: Vec<u8>,
    /// What the decoder said.
    pub reason: String,
}

/// A durable outbox kept by a [`DsStorage`] backend. See the [module documentation](self)
/// and the storage contract in [`crate::storage`].
///
/// The contract: [`DsStorage::write`] stores one [`OutboxEntry`] per element of
/// [`WriteSet::fanout`](super::WriteSet::fanout), in that order, **in the same atomic write**
/// as the rest of the write set; a write that returns [`WriteOutcome::Conflict`](super::WriteOutcome::Conflict)
/// or fails stores none.
///
/// **Order per destination.** [`DsOutbox::pending`] never hands out an entry while an older
/// entry (lower [`OutboxEntry::id`]) of the same [`OutboxEntry::destination`] is put off (not
/// yet due), whatever their groups. A relay that puts off the entry whose delivery failed
/// ([`DsOutbox::retry_later`]) so holds back everything written for that destination after
/// it, also entries written later and by other replicas on the same database, and delivers a
/// destination's entries in ID order: a group's messages reach each queue in the hub's
/// `sequence_number` order (wire-format.md §6.5), and MLS commits arrive in epoch order.
pub trait DsOutbox: DsStorage {
    /// Up to `limit` entries due at `now_ms` (`next_attempt_at_ms <= now_ms`), oldest
    /// (lowest [`OutboxEntry::id`]) first, leaving out every entry that has an older entry of
    /// the same destination not yet due (see the trait documentation). Entries left out do
    /// not count against `limit`.
    fn pending(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, Self::Error>;

    /// Removes a delivered entry. `Ok(false)` if there was none with this ID (already marked
    /// by another relay, say).
    fn mark_delivered(&mut self, id: u64) -> Result<bool, Self::Error>;

    /// Counts a failed attempt ([`OutboxEntry::attempts`] + 1) and hides the entry, and every
    /// newer entry of its destination, from [`DsOutbox::pending`] until `next_attempt_at_ms`.
    /// `Ok(false)` if there was no entry with this ID.
    fn retry_later(&mut self, id: u64, next_attempt_at_ms: u64) -> Result<bool, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored bytes that no longer decode are an error naming the entry and its group (in hex,
    /// cut after 32 bytes), never a panic.
    #[test]
    fn a_corrupt_entry_is_an_error_naming_it() {
        let entry = OutboxEntry {
            id: 7,
            group_id: vec![0xab; 40],
            destination: "a.example".into(),
            request: vec![0, 1, 2],
            created_at_ms: 0,
            attempts: 0,
            next_attempt_at_ms: 0,
        };
        let error = entry.fanout().expect_err("three bytes are no request");
        assert_eq!((error.id, error.group_id.as_slice()), (7, &[0xab; 40][..]));
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "outbox entry 7 of group {}... does not decode",
                "ab".repeat(32)
            )),
            "{text}"
        );
    }
}
