//! Welcome snapshots (wire-format.md §4.12): what a client added by Welcome needs to join, kept
//! until it has fetched it.
//!
//! They are two kinds of record, so that what a commit reads and writes for them is the small
//! index and the nodes that changed, not whole trees:
//!
//! * [`WelcomeSnapshots`], a small index (per epoch: the joiners' KeyPackageRefs, signature
//!   keys and expiries) that commits read and write;
//! * one [`WelcomeTree`] per epoch but the current one: the epoch's tree as its difference
//!   from the current tree ([`super::TreeDiff`]), written by the commit that moves the group on
//!   from that epoch while it has joiners, carried to the new tree by every later commit, and
//!   deleted by the write that drops the epoch's last joiner. The current epoch's snapshot
//!   shares the `MlsState` record (its tree is the current tree), so adding clients stores no
//!   second copy of the tree, and a later commit stores only the nodes it changed.
//!
//! Retention is bounded three ways: a joiner is kept at most until its KeyPackage's
//! `not_after`, clamped to `now + DsConfig::welcome_retention_ms`; a joiner is dropped when a
//! commit removes its leaf; a group keeps at most `DsConfig::max_welcome_snapshots` epochs,
//! evicting the oldest.

use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::TreeDiff;
use crate::time::UnixTimeMs;
use crate::wire::{decode_exact, DecodeError};

/// [`crate::storage::RecordKind::WelcomeSnapshots`]: the index of the epochs whose joiners
/// have not all fetched their tree (DS-03..06 "keep the group state of every epoch in which
/// clients were added until each has joined"), oldest first.
///
/// It also holds the group's ciphersuite, so that `welcome_info` verifies the joiner's
/// signature from this small record alone and decodes nothing of the size of the group (the
/// roster, the tree) for a request that has not authenticated yet (wire-format.md §4.12).
#[derive(Debug, Clone, Default, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct WelcomeSnapshots {
    pub(crate) ciphersuite: u16,
    pub(crate) snapshots: Vec<WelcomeSnapshot>,
}

/// One epoch in which clients were added, and those of them that still need its tree (kept
/// under [`crate::storage::RecordKind::WelcomeTree`] with this epoch).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct WelcomeSnapshot {
    pub(crate) epoch: u64,
    pub(crate) joiners: Vec<Joiner>,
}

/// A client added in a snapshot's epoch.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct Joiner {
    pub(crate) key_package_ref: VLBytes,
    /// The leaf signature key of its KeyPackage: it authenticates `welcome_info`, and finds
    /// the joiner's leaf when a commit removes it.
    pub(crate) signature_key: VLBytes,
    /// Until when the tree is kept for it (ms): its KeyPackage's `not_after` (docs/decisions.md
    /// D15), at most `welcome_retention_ms` after it was added.
    pub(crate) expires_at: UnixTimeMs,
}

/// [`crate::storage::RecordKind::WelcomeTree`]: the ratchet tree of one epoch before the
/// current one. The expiry comes first (8 bytes, big-endian) so backends can drop the record
/// without decoding more (storage contract); it is the latest expiry of the epoch's joiners when
/// the record was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WelcomeTree {
    pub(crate) expires_at: UnixTimeMs,
    pub(crate) tree: StoredTree,
}

/// How a [`WelcomeTree`] holds its tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredTree {
    /// `optional<Node> ratchet_tree<V>` itself, as records written before reverse diffs hold
    /// it; read, never written.
    Whole(Vec<u8>),
    /// The byte [`REVERSE_DIFF`], then the tree as its difference from the group's current
    /// tree, which every commit carries over to its new epoch (wire-format.md §4.12).
    ReverseDiff(TreeDiff),
}

/// The byte after the expiry that marks a reverse diff. A whole tree has its
/// `ratchet_tree<V>` length there, whose first byte is at least 0x40 for any tree longer than
/// 63 bytes (RFC 9420 §2.1.2), and one leaf node is longer than that: 2 never starts one.
const REVERSE_DIFF: u8 = 2;

impl WelcomeTree {
    /// The record's bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, tls_codec::Error> {
        let mut out = self.expires_at.tls_serialize_detached()?;
        match &self.tree {
            StoredTree::Whole(tree) => {
                VLBytes::new(tree.clone()).tls_serialize(&mut out)?;
            }
            StoredTree::ReverseDiff(diff) => {
                out.push(REVERSE_DIFF);
                diff.tls_serialize(&mut out)?;
            }
        }
        Ok(out)
    }

    /// Whether a record holds a reverse diff, which needs the current tree to be read, from
    /// its first bytes only.
    pub(crate) fn is_reverse_diff(record: &[u8]) -> bool {
        record.get(8) == Some(&REVERSE_DIFF)
    }

    /// Reads either form of the record.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (expiry, rest) = bytes.split_at_checked(8).unwrap_or((bytes, &[]));
        let expires_at = decode_exact::<UnixTimeMs>(expiry)?;
        let tree = match rest.split_first() {
            Some((&REVERSE_DIFF, diff)) => StoredTree::ReverseDiff(decode_exact(diff)?),
            _ => StoredTree::Whole(decode_exact::<VLBytes>(rest)?.into()),
        };
        Ok(Self { expires_at, tree })
    }
}

impl WelcomeSnapshots {
    /// The empty index of a new group with this ciphersuite.
    pub(crate) fn new(ciphersuite: u16) -> Self {
        Self {
            ciphersuite,
            snapshots: Vec::new(),
        }
    }

    /// Drops the joiners whose retention ended before `now`, then the snapshots nobody
    /// needs any more. Returns the epochs of the dropped snapshots, whose trees are to be
    /// deleted.
    pub(crate) fn purge(&mut self, now: UnixTimeMs) -> Vec<u64> {
        for snapshot in &mut self.snapshots {
            snapshot.joiners.retain(|j| j.expires_at >= now);
        }
        self.drop_empty()
    }

    /// Drops the joiners whose leaves a commit removed, named by their leaf signature keys
    /// (unique in a tree, RFC 9420 §7.3), and the snapshots left without joiners. Returns the
    /// epochs of the dropped snapshots.
    pub(crate) fn forget(&mut self, removed_keys: &[&[u8]]) -> Vec<u64> {
        if removed_keys.is_empty() {
            return Vec::new();
        }
        for snapshot in &mut self.snapshots {
            snapshot
                .joiners
                .retain(|j| !removed_keys.contains(&j.signature_key.as_slice()));
        }
        self.drop_empty()
    }

    /// Adds the snapshot of a new epoch and evicts the oldest snapshots beyond `cap`. Returns
    /// the epochs of the evicted snapshots (the new one's if `cap` is 0).
    pub(crate) fn push(&mut self, snapshot: WelcomeSnapshot, cap: usize) -> Vec<u64> {
        self.snapshots.push(snapshot);
        let excess = self.snapshots.len().saturating_sub(cap);
        self.snapshots
            .drain(..excess)
            .map(|evicted| evicted.epoch)
            .collect()
    }

    /// The joiner with this KeyPackageRef in the snapshot of `epoch`, as (snapshot, joiner)
    /// positions.
    pub(crate) fn find(&self, epoch: u64, key_package_ref: &[u8]) -> Option<(usize, usize)> {
        self.snapshots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.epoch == epoch)
            .find_map(|(i, s)| {
                s.joiners
                    .iter()
                    .position(|j| j.key_package_ref.as_slice() == key_package_ref)
                    .map(|j| (i, j))
            })
    }

    fn drop_empty(&mut self) -> Vec<u64> {
        let dropped = self
            .snapshots
            .iter()
            .filter(|s| s.joiners.is_empty())
            .map(|s| s.epoch)
            .collect();
        self.snapshots.retain(|s| !s.joiners.is_empty());
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner(key: &[u8], expires_at_ms: u64) -> Joiner {
        Joiner {
            key_package_ref: key.to_vec().into(),
            signature_key: key.to_vec().into(),
            expires_at: UnixTimeMs(expires_at_ms),
        }
    }

    fn snapshot(epoch: u64, joiners: Vec<Joiner>) -> WelcomeSnapshot {
        WelcomeSnapshot { epoch, joiners }
    }

    #[test]
    fn purge_forget_and_push_report_the_epochs_whose_trees_go() {
        let mut index = WelcomeSnapshots::default();
        assert!(index
            .push(snapshot(1, vec![joiner(b"a", 10), joiner(b"b", 30)]), 2)
            .is_empty());
        assert!(index
            .push(snapshot(2, vec![joiner(b"c", 20)]), 2)
            .is_empty());
        // Expired joiners go; a snapshot goes with its last joiner.
        assert_eq!(index.purge(UnixTimeMs(11)), Vec::<u64>::new());
        assert_eq!(index.purge(UnixTimeMs(21)), vec![2]);
        assert_eq!(index.forget(&[b"b".as_slice()]), vec![1]);
        assert!(index.snapshots.is_empty());
        // Beyond the cap, the oldest snapshot is evicted.
        assert!(index
            .push(snapshot(3, vec![joiner(b"d", 50)]), 2)
            .is_empty());
        assert!(index
            .push(snapshot(4, vec![joiner(b"e", 50)]), 2)
            .is_empty());
        assert_eq!(index.push(snapshot(5, vec![joiner(b"f", 50)]), 2), vec![3]);
        assert_eq!(index.find(5, b"f"), Some((1, 0)));
        assert_eq!(index.find(4, b"f"), None);
        // A cap of 0 keeps nothing, not even the new snapshot.
        assert_eq!(
            index.push(snapshot(6, vec![joiner(b"g", 50)]), 0),
            vec![4, 5, 6]
        );
    }
}
