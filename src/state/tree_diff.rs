//! A Welcome snapshot's tree kept as its difference from the group's current tree
//! (wire-format.md §4.12).
//!
//! A commit changes few nodes of a tree: the committer's leaf and direct path, and the leaves
//! and direct paths its proposals add, update or remove (RFC 9420 §12.4.2, §7.8). So an earlier
//! epoch's tree is stored as the nodes in which it differs from the current tree, a *reverse
//! diff*. Each commit carries every stored diff over to its new epoch ([`Transition::carry`]),
//! and `welcome_info` applies one to the current tree ([`TreeDiff::apply`]).
//!
//! Nodes are compared and stored as their TLS encoding, the `optional<Node>` elements of
//! `ratchet_tree<V>` (RFC 9420 §12.4.3.3), so nothing here decodes a node and the answer is
//! byte for byte the tree that openmls exports for that epoch.

use openmls::prelude::tls_codec::{Serialize as _, Size as _};
use openmls::treesync::TreeSync;
use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

/// `optional<Node>` of a blank node: the `present` byte 0.
const BLANK: &[u8] = &[0];
/// `optional<Node>` of a leaf: present (1), then `NodeType` leaf (1) and the `LeafNode`.
const LEAF_HEADER: [u8; 2] = [1, 1];
/// `optional<Node>` of a parent: present (1), then `NodeType` parent (2) and the `ParentNode`.
const PARENT_HEADER: [u8; 2] = [1, 2];

/// A ratchet tree as the TLS encodings of its nodes, in array order (RFC 9420 §4.1), trimmed
/// after the rightmost non-blank leaf as `ratchet_tree<V>` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeNodes(Vec<Vec<u8>>);

impl TreeNodes {
    /// The nodes of an openmls tree, as its `export_ratchet_tree` encodes them.
    pub(crate) fn of(tree: &TreeSync) -> Result<Self, tls_codec::Error> {
        let leaves = tree.leaves();
        // openmls exports the leaves up to the rightmost full one (leaf 0 if all are blank).
        let last_leaf = leaves.iter().rposition(Option::is_some).unwrap_or(0);
        let count = 2 * last_leaf + 1;
        let mut nodes = vec![BLANK.to_vec(); count];
        for (leaf, node) in leaves.iter().enumerate().take(last_leaf + 1) {
            if let Some(node) = node {
                nodes[2 * leaf] = encoded(LEAF_HEADER, node.tls_serialized_len(), |out| {
                    node.tls_serialize(out)
                })?;
            }
        }
        for (index, node) in tree.full_parents() {
            let slot = 2 * index.u32() as usize + 1;
            // As in openmls's export, nothing past the rightmost full leaf, parents included.
            if slot < count {
                nodes[slot] = encoded(PARENT_HEADER, node.tls_serialized_len(), |out| {
                    node.tls_serialize(out)
                })?;
            }
        }
        Ok(Self(nodes))
    }

    /// The encoding of node `index`: blank beyond the end, as the tree's trimmed blanks are.
    fn node(&self, index: usize) -> &[u8] {
        self.0.get(index).map_or(BLANK, Vec::as_slice)
    }

    /// How many nodes the tree has.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// `ratchet_tree<V>`: the nodes as one variable-length vector (RFC 9420 §2.1.2).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, tls_codec::Error> {
        VLBytes::new(self.0.concat()).tls_serialize_detached()
    }
}

/// One node's `optional<Node>` encoding: `header`, then the node's own encoding of `len` bytes.
fn encoded(
    header: [u8; 2],
    len: usize,
    body: impl FnOnce(&mut Vec<u8>) -> Result<usize, tls_codec::Error>,
) -> Result<Vec<u8>, tls_codec::Error> {
    let mut out = Vec::with_capacity(header.len() + len);
    out.extend_from_slice(&header);
    body(&mut out)?;
    Ok(out)
}

/// An earlier epoch's tree as its difference from a later tree: its length, and each node in
/// which it differs, with the node's encoding in the earlier tree.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct TreeDiff {
    /// How many nodes the earlier tree has.
    pub(crate) node_count: u32,
    /// The nodes that differ, by strictly increasing index, all below `node_count`.
    pub(crate) changed: Vec<ChangedNode>,
}

/// One node of a [`TreeDiff`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct ChangedNode {
    /// The node's index in the array representation (RFC 9420 §4.1).
    pub(crate) index: u32,
    /// The node's `optional<Node>` encoding in the earlier tree.
    pub(crate) node: VLBytes,
}

/// A diff that does not describe a tree (a stored record that mimi-ds did not write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Welcome tree diff: {0}")]
pub(crate) struct CorruptDiff(&'static str);

impl TreeDiff {
    /// Checks that the diff describes a tree when taken against a tree of `later_nodes` nodes:
    /// a length, and node indices increasing below it. Beyond the later tree the earlier
    /// one's last node is a leaf, which is never blank, so it is in the diff: the length is
    /// bounded by stored bytes, not only by the field.
    fn check(&self, later_nodes: usize) -> Result<(), CorruptDiff> {
        let count = self.node_count as usize;
        if count == 0 {
            return Err(CorruptDiff("an empty tree"));
        }
        let mut previous = None;
        for changed in &self.changed {
            let index = changed.index as usize;
            if index >= count || previous.is_some_and(|p| p >= index) {
                return Err(CorruptDiff("node indices out of order or range"));
            }
            previous = Some(index);
        }
        if count > later_nodes && previous != Some(count - 1) {
            return Err(CorruptDiff("a node count beyond the stored nodes"));
        }
        Ok(())
    }

    /// The earlier tree, from the later tree the diff was taken against.
    pub(crate) fn apply(&self, later: &TreeNodes) -> Result<TreeNodes, CorruptDiff> {
        self.check(later.len())?;
        let mut nodes: Vec<Vec<u8>> = (0..self.node_count as usize)
            .map(|i| later.node(i).to_vec())
            .collect();
        for changed in &self.changed {
            nodes[changed.index as usize] = changed.node.as_slice().to_vec();
        }
        Ok(TreeNodes(nodes))
    }
}

/// What a commit did to the tree: the tree of the epoch it leaves and of the one it creates,
/// and the nodes in which they differ.
pub(crate) struct Transition {
    before: TreeNodes,
    after: TreeNodes,
    /// Indices whose encoding differs between `before` and `after`, increasing.
    moved: Vec<u32>,
}

impl Transition {
    pub(crate) fn new(before: TreeNodes, after: TreeNodes) -> Self {
        let span = before.len().max(after.len());
        let moved = (0..span)
            .filter(|&i| before.node(i) != after.node(i))
            .map(|i| i as u32)
            .collect();
        Self {
            before,
            after,
            moved,
        }
    }

    /// The tree of the epoch the commit leaves, as its difference from the new tree.
    pub(crate) fn left(&self) -> TreeDiff {
        self.carried(&TreeDiff {
            node_count: self.before.len() as u32,
            changed: Vec::new(),
        })
    }

    /// `diff`, taken against the tree before the commit, taken against the tree after it.
    pub(crate) fn carry(&self, diff: &TreeDiff) -> Result<TreeDiff, CorruptDiff> {
        diff.check(self.before.len())?;
        Ok(self.carried(diff))
    }

    /// The earlier tree's node is the diff's where it has one and the old tree's elsewhere; it
    /// differs from the new tree only where the diff has a node or the commit moved one. The
    /// result is minimal: a node the commit set back to the earlier epoch's leaves the diff.
    fn carried(&self, diff: &TreeDiff) -> TreeDiff {
        let count = diff.node_count;
        let mut stored = diff.changed.iter().peekable();
        let mut moved = self.moved.iter().copied().filter(|&i| i < count).peekable();
        let mut changed = Vec::new();
        loop {
            let index = match (stored.peek().map(|node| node.index), moved.peek()) {
                (None, None) => break,
                (Some(s), Some(&m)) => s.min(m),
                (Some(s), None) => s,
                (None, Some(&m)) => m,
            };
            let earlier = match stored.next_if(|node| node.index == index) {
                Some(node) => node.node.as_slice(),
                None => self.before.node(index as usize),
            };
            moved.next_if_eq(&index);
            if earlier != self.after.node(index as usize) {
                changed.push(ChangedNode {
                    index,
                    node: earlier.to_vec().into(),
                });
            }
        }
        TreeDiff {
            node_count: count,
            changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(nodes: &[&[u8]]) -> TreeNodes {
        TreeNodes(nodes.iter().map(|n| n.to_vec()).collect())
    }

    /// The diff of `earlier` against `later`, computed from scratch.
    fn diff(earlier: &TreeNodes, later: &TreeNodes) -> TreeDiff {
        TreeDiff {
            node_count: earlier.len() as u32,
            changed: (0..earlier.len())
                .filter(|&i| earlier.node(i) != later.node(i))
                .map(|i| ChangedNode {
                    index: i as u32,
                    node: earlier.node(i).to_vec().into(),
                })
                .collect(),
        }
    }

    #[test]
    fn carried_diffs_stay_minimal_and_apply_to_the_tree_of_their_epoch() {
        // Epochs of a tree that grows (with a node at index 3, just past epoch 0's end),
        // changes in place, shrinks and grows again; a node set back to an earlier value
        // ([1, 1, 9] at index 2 in epochs 0 and 3).
        let epochs = [
            tree(&[&[1, 1, 1], &[0], &[1, 1, 9]]),
            tree(&[&[1, 1, 1], &[1, 2, 5], &[1, 1, 2], &[1, 2, 6], &[1, 1, 3]]),
            tree(&[&[1, 1, 4], &[1, 2, 5], &[1, 1, 2], &[0], &[1, 1, 3]]),
            tree(&[&[1, 1, 4], &[0], &[1, 1, 9]]),
            tree(&[&[1, 1, 4]]),
            tree(&[&[1, 1, 4], &[0], &[0], &[0], &[1, 1, 7]]),
        ];
        // Every epoch's diff, carried over every later commit.
        let mut pending: Vec<(usize, TreeDiff)> = Vec::new();
        for (epoch, pair) in epochs.windows(2).enumerate() {
            let transition = Transition::new(pair[0].clone(), pair[1].clone());
            for (_, stored) in &mut pending {
                *stored = transition.carry(stored).unwrap();
            }
            pending.push((epoch, transition.left()));
            for (earlier, stored) in &pending {
                assert_eq!(
                    *stored,
                    diff(&epochs[*earlier], &pair[1]),
                    "epoch {earlier}"
                );
                assert_eq!(stored.apply(&pair[1]).unwrap(), epochs[*earlier]);
            }
        }
        // Epoch 0 against epoch 5: its third node differs, the second is blank in both.
        assert_eq!(pending[0].1.changed.len(), 2);
        // Epoch 3 against epoch 5: its third node only; a node set back is no difference.
        assert_eq!(pending[3].1.changed.len(), 1);
    }

    #[test]
    fn a_diff_that_mimi_ds_did_not_write_is_refused_not_applied() {
        let later = tree(&[&[1, 1, 1], &[0], &[1, 1, 2]]);
        let node = |index| ChangedNode {
            index,
            node: vec![1, 1, 3].into(),
        };
        let refused = [
            TreeDiff {
                node_count: 0,
                changed: vec![],
            },
            // Out of range, and out of order.
            TreeDiff {
                node_count: 3,
                changed: vec![node(3)],
            },
            TreeDiff {
                node_count: 3,
                changed: vec![node(2), node(0)],
            },
            TreeDiff {
                node_count: 3,
                changed: vec![node(0), node(0)],
            },
            // A length beyond the later tree without its last node stored (so no huge
            // allocation from a count alone).
            TreeDiff {
                node_count: u32::MAX,
                changed: vec![node(0)],
            },
        ];
        for diff in refused {
            assert!(diff.apply(&later).is_err(), "{diff:?}");
        }
        let longer = TreeDiff {
            node_count: 5,
            changed: vec![node(4)],
        };
        assert_eq!(longer.apply(&later).unwrap().len(), 5);
        let shorter = TreeDiff {
            node_count: 1,
            changed: vec![],
        };
        assert_eq!(shorter.apply(&later).unwrap(), tree(&[&[1, 1, 1]]));
    }

    #[test]
    fn the_encoding_is_the_vector_of_the_nodes() {
        let nodes = tree(&[&[1, 1, 7], &[0], &[1, 1, 8]]);
        assert_eq!(nodes.encode().unwrap(), vec![7, 1, 1, 7, 0, 1, 1, 8]);
    }
}
