//! [`GroupCache`]: decoded group state kept between requests (wire-format.md §16.2).
//!
//! An entry is the state decoded from one stored **version** of a group, and is used only when
//! the version a request has just read from storage is that same version. Storage moves a
//! group's version by one with every applied write and never reuses one (the storage contract
//! of [`crate::storage`]), so equal versions mean equal records: a hit answers exactly as
//! decoding would have. Another instance's write, or any write this instance did not describe
//! to the cache, moves the version on and the entry is no longer used.
//!
//! The cache is bounded by an estimate of its heap bytes, split over shards that each lock on
//! their own, so threads working on different groups rarely wait for each other. A shard over
//! its share evicts its least recently used entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fanout::PreparedFanout;
use crate::state::{Activity, Roster};

/// How many independently locked shards the cache has.
const SHARDS: usize = 16;

/// A shard over its share evicts down to this fraction of it (in eighths), so that the next
/// inserts do not each evict again.
const EVICT_TO_EIGHTHS: usize = 7;

/// What an application message needs of a group, decoded: the roster with its fanout
/// prepared per provider, and the activity times.
#[derive(Debug, Clone)]
pub(crate) struct CachedGroup {
    /// The roster and its fanout: shared by every version until the roster changes.
    pub(crate) roster: Arc<CachedRoster>,
    /// The activity times.
    pub(crate) activity: Arc<Activity>,
    /// Whether the group has an activity record (`false`: the times are the legacy ones of its
    /// sequencer, wire-format.md §16.1).
    pub(crate) activity_stored: bool,
    /// The sequencer's state tag at this state (wire-format.md §16.2): a hit needs the tag
    /// just read to be this one, as well as the version.
    pub(crate) state_tag: [u8; crate::state::STATE_TAG_BYTES],
}

/// A decoded roster and the fanout prepared from it.
#[derive(Debug)]
pub(crate) struct CachedRoster {
    /// The roster.
    pub(crate) roster: Roster,
    /// Its recipients grouped per provider, shared by every message's fanout.
    pub(crate) fanout: PreparedFanout,
    /// Estimated heap bytes of the roster and its fanout, computed once: every message's
    /// write puts its entry again, and that must not visit every member.
    heap_bytes: usize,
}

impl CachedRoster {
    /// The roster with its fanout prepared per provider.
    pub(crate) fn new(roster: Roster) -> Self {
        let fanout = PreparedFanout::new(roster.iter().map(|(leaf, m)| (leaf, &m.queue_config)));
        // Per member: its entry's three byte strings with their headers, and its queue once
        // more in the prepared fanout with a slot.
        const PER_MEMBER_OVERHEAD: usize = 4 * 24 + 16;
        let members: usize = roster
            .iter()
            .map(|(_, m)| {
                m.signature_key.as_slice().len()
                    + m.user.as_slice().len()
                    + m.queue_config.provider_domain.as_slice().len()
                    + 2 * m.queue_config.queue.as_slice().len()
                    + PER_MEMBER_OVERHEAD
            })
            .sum();
        let user_keys: usize = roster
            .user_keys
            .iter()
            .map(|k| k.user.as_slice().len() + k.key.as_slice().len() + 48)
            .sum();
        let leaves =
            roster.members.len() * std::mem::size_of::<Option<crate::state::MemberEntry>>();
        let heap_bytes = members + user_keys + leaves + fanout.heap_bytes();
        Self {
            roster,
            fanout,
            heap_bytes,
        }
    }
}

impl CachedGroup {
    /// Estimated heap bytes: what the cache accounts for the entry.
    fn estimated_bytes(&self, group_id: &[u8]) -> usize {
        // Per leaf an activity time.
        let activity = self.activity.last_active.len() * 8;
        // The entry itself, its key, and the fixed parts of the structs.
        const FIXED: usize = 512;
        self.roster.heap_bytes + activity + group_id.len() + FIXED
    }
}

/// The state a write leaves the group in, for the cache, if the write applies.
#[derive(Debug)]
pub(crate) struct CacheAfterWrite {
    /// The group.
    pub(crate) group_id: Vec<u8>,
    /// The version the write moves the group to (the version it is guarded on, plus one).
    pub(crate) version: u64,
    /// The state at that version.
    pub(crate) state: CachedGroup,
}

/// How the cache was used: for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GroupCacheStats {
    /// Estimated heap bytes of the entries held now; at most
    /// [`crate::DsConfig::group_cache_bytes`].
    pub bytes: usize,
    /// Entries held now.
    pub entries: usize,
    /// Lookups whose entry was of the version just read, since the service was built.
    pub hits: u64,
    /// Lookups that had to decode: no entry, another version, or the cache off or forced to
    /// miss.
    pub misses: u64,
    /// Entries evicted to stay within the bound.
    pub evictions: u64,
}

/// The cache. See the [module documentation](self).
pub(crate) struct GroupCache {
    shards: Vec<Mutex<Shard>>,
    /// The byte bound of each shard.
    shard_bytes: usize,
    force_miss: bool,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for GroupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Vec<u8>, Entry>,
    bytes: usize,
    /// Counts uses, to order entries by recency.
    clock: u64,
}

/// A group's entry: the newest version it knows, and the one before it. Both are true facts
/// about stored versions; a reader at the older one (a replica that has not seen the last write
/// yet, or a caller replaying a request against an older copy) can still use it.
struct Entry {
    version: u64,
    state: CachedGroup,
    older: Option<(u64, CachedGroup)>,
    bytes: usize,
    last_used: u64,
}

impl Entry {
    fn estimated_bytes(&self, group_id: &[u8]) -> usize {
        let older = match &self.older {
            // Versions that share the roster share its memory.
            Some((_, older)) if Arc::ptr_eq(&older.roster, &self.state.roster) => {
                older.activity.last_active.len() * 8 + 64
            }
            Some((_, older)) => older.estimated_bytes(group_id),
            None => 0,
        };
        self.state.estimated_bytes(group_id) + older
    }
}

impl GroupCache {
    /// A cache of at most `bytes` estimated heap bytes (0: off). With `force_miss`, entries
    /// are stored, evicted and accounted, but never used.
    pub(crate) fn new(bytes: usize, force_miss: bool) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_bytes: bytes / SHARDS,
            force_miss,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, group_id: &[u8]) -> MutexGuard<'_, Shard> {
        // FNV-1a: group IDs are chosen by clients, but a skewed spread only makes one shard
        // busier; the bound holds per shard.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in group_id {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let shard = &self.shards[(hash % SHARDS as u64) as usize];
        // A thread that panicked while holding the lock left a consistent map (every change
        // below is completed before anything can panic), so the data is still usable.
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The states of `group_id` the cache holds, each with the version it was decoded from
    /// (newest first; at most two): the caller reads the group's version and uses a state only
    /// if it is of that version ([`GroupCache::record_hit`]).
    pub(crate) fn lookup(&self, group_id: &[u8]) -> Vec<(u64, CachedGroup)> {
        if self.force_miss || self.shard_bytes == 0 {
            return Vec::new();
        }
        let mut shard = self.shard(group_id);
        shard.clock += 1;
        let now = shard.clock;
        let Some(entry) = shard.entries.get_mut(group_id) else {
            return Vec::new();
        };
        entry.last_used = now;
        let mut found = vec![(entry.version, entry.state.clone())];
        found.extend(entry.older.clone());
        found
    }

    /// Counts a lookup whose entry was of the version just read.
    pub(crate) fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup that decoded instead.
    pub(crate) fn record_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps `state`, decoded from (or left by a write at) `version` of `group_id`, next to the
    /// newest other version the cache knows of the group (the older of the two is dropped).
    pub(crate) fn insert(&self, group_id: &[u8], version: u64, state: CachedGroup) {
        if self.shard_bytes == 0 {
            return;
        }
        let mut shard = self.shard(group_id);
        let previous = shard.entries.remove(group_id);
        if let Some(old) = &previous {
            shard.bytes -= old.bytes;
        }
        let (version, state, older) = match previous {
            None => (version, state, None),
            Some(old) if old.version == version => (version, state, old.older),
            Some(old) if old.version < version => (version, state, Some((old.version, old.state))),
            // A state older than the newest known: kept as the older one.
            Some(old) => (old.version, old.state, Some((version, state))),
        };
        let mut entry = Entry {
            version,
            state,
            older,
            bytes: 0,
            last_used: 0,
        };
        let bytes = entry.estimated_bytes(group_id);
        entry.bytes = bytes;
        if bytes > self.shard_bytes {
            // Larger than a shard's share: never cached (the group is decoded every time).
            return;
        }
        if shard.bytes + bytes > self.shard_bytes {
            let evicted = shard.evict_to(self.shard_bytes / 8 * EVICT_TO_EIGHTHS, bytes);
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        shard.clock += 1;
        entry.last_used = shard.clock;
        shard.bytes += bytes;
        shard.entries.insert(group_id.to_vec(), entry);
    }

    /// Forgets every entry.
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.entries.clear();
            shard.bytes = 0;
        }
    }

    /// How the cache was used so far, and what it holds.
    pub(crate) fn stats(&self) -> GroupCacheStats {
        let (mut bytes, mut entries) = (0, 0);
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            bytes += shard.bytes;
            entries += shard.entries.len();
        }
        GroupCacheStats {
            bytes,
            entries,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

impl Shard {
    /// Evicts least recently used entries until `incoming` more bytes fit under `target`.
    /// Returns how many it evicted.
    fn evict_to(&mut self, target: usize, incoming: usize) -> u64 {
        let mut by_age: Vec<(u64, Vec<u8>)> = self
            .entries
            .iter()
            .map(|(id, entry)| (entry.last_used, id.clone()))
            .collect();
        by_age.sort_unstable();
        let mut evicted = 0;
        for (_, id) in by_age {
            if self.bytes + incoming <= target {
                break;
            }
            if let Some(entry) = self.entries.remove(&id) {
                self.bytes -= entry.bytes;
                evicted += 1;
            }
        }
        evicted
    }
}
