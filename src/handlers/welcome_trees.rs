//! The Welcome trees a commit carries into its new epoch (wire-format.md §4.12).
//!
//! The tree of an epoch whose joiners have not all fetched it is kept until they have. The
//! current epoch's is the `MlsState` record's. Every earlier one is a `WelcomeTree` record
//! holding its difference from the current tree ([`crate::state::TreeDiff`]). A commit changes
//! the current tree, so it rewrites each of those records against the new tree, and writes the
//! one of the epoch it leaves. A commit therefore reads the earlier epochs' records (at most
//! `DsConfig::max_welcome_snapshots`, each as large as the nodes that changed since its epoch)
//! and encodes the nodes of the tree before and after it, whenever joiners are pending.

use openmls::prelude::PublicGroup;

use super::group_state::decode_record;
use super::HandlerResult;
use crate::error::{internal, Failure, ProcessError, RejectReason};
use crate::state::{StoredTree, Transition, TreeNodes, WelcomeSnapshots, WelcomeTree};
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, RecordWrite};

/// Adds to `snapshot` the `WelcomeTree` records of the epochs before `current_epoch` that the
/// group's index lists, with one more read. A commit reads them before it authenticates
/// anything, so that under the step API a round that misses them costs no signature check.
///
/// If that read saw another version of the group, `snapshot` takes the older version: the
/// commit's write is guarded by it, which the store has already moved past, so the write
/// conflicts and the request is validated again on fresh reads.
pub(crate) fn read_earlier_trees<S: DsStorage>(
    storage: &S,
    group_id: &[u8],
    current_epoch: u64,
    snapshot: &mut GroupSnapshot,
) -> HandlerResult<(), S::Error> {
    let index: WelcomeSnapshots = decode_record(snapshot, RecordKind::WelcomeSnapshots)?;
    let kinds: Vec<RecordKind> = index
        .snapshots
        .iter()
        .filter(|s| s.epoch < current_epoch)
        .map(|s| RecordKind::WelcomeTree { epoch: s.epoch })
        .collect();
    if kinds.is_empty() {
        return Ok(());
    }
    let trees = storage
        .read(group_id, &kinds)
        .map_err(|e| Failure::Process(ProcessError::Storage(e)))?
        // Deleted since the first read.
        // Rule R-FRAME-5.
        .ok_or(RejectReason::UnknownGroup)?;
    snapshot.version = snapshot.version.min(trees.version);
    snapshot.records.extend(trees.records);
    Ok(())
}

/// The nodes of the tree before a commit, if the group has a Welcome snapshot that the commit
/// may have to carry (none: the commit writes no tree).
pub(crate) fn tree_before<E: std::error::Error + 'static>(
    snapshot: &GroupSnapshot,
    group: &PublicGroup,
) -> HandlerResult<Option<TreeNodes>, E> {
    let index: WelcomeSnapshots = decode_record(snapshot, RecordKind::WelcomeSnapshots)?;
    if index.snapshots.is_empty() {
        return Ok(None);
    }
    Ok(Some(TreeNodes::of(group.treesync()).map_err(internal)?))
}

/// The commit's [`Transition`], from [`tree_before`] and the merged group.
pub(crate) fn transition<E: std::error::Error + 'static>(
    before: Option<TreeNodes>,
    merged: &PublicGroup,
) -> HandlerResult<Option<Transition>, E> {
    before
        .map(|before| {
            let after = TreeNodes::of(merged.treesync()).map_err(internal)?;
            Ok(Transition::new(before, after))
        })
        .transpose()
}

/// The `WelcomeTree` puts of a commit that leaves `left_epoch`: the tree of that epoch if
/// `index` (already updated by the commit) still lists it, and every earlier listed epoch's
/// record carried over to the new tree. A record stored whole by an earlier version depends on
/// no other tree and stays as it is; a missing one (dropped by the backend after its expiry)
/// stays missing.
pub(crate) fn tree_writes<E: std::error::Error + 'static>(
    index: &WelcomeSnapshots,
    left_epoch: u64,
    transition: Option<&Transition>,
    snapshot: &GroupSnapshot,
) -> HandlerResult<Vec<RecordWrite>, E> {
    let mut writes = Vec::new();
    for listed in index.snapshots.iter().filter(|s| s.epoch <= left_epoch) {
        let Some(expires_at) = listed.joiners.iter().map(|j| j.expires_at).max() else {
            continue;
        };
        let transition = transition
            .ok_or_else(|| internal("a Welcome snapshot without the tree before the commit"))?;
        let kind = RecordKind::WelcomeTree {
            epoch: listed.epoch,
        };
        let diff = if listed.epoch == left_epoch {
            transition.left()
        } else {
            let Some(record) = snapshot.record(kind) else {
                continue;
            };
            match WelcomeTree::decode(record)
                .map_err(|e| internal(format!("WelcomeTree record: {e}")))?
                .tree
            {
                StoredTree::Whole(_) => continue,
                StoredTree::ReverseDiff(diff) => transition.carry(&diff).map_err(internal)?,
            }
        };
        let tree = WelcomeTree {
            expires_at,
            tree: StoredTree::ReverseDiff(diff),
        };
        writes.push(RecordWrite::Put(kind, tree.encode().map_err(internal)?));
    }
    Ok(writes)
}
