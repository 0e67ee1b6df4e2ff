//! The sequencer's state tag (wire-format.md §16.2): a hash chained over every roster and
//! activity record a group's writes put, so that equal tags mean equal rosters and activity
//! times. The group cache checks it next to the version, which alone would not do in a store
//! that forked (a failover that lost writes) and so holds one version number with two contents.

use openmls_traits::crypto::OpenMlsCrypto;

use super::HandlerResult;
use crate::auth::sha256;
use crate::error::internal;
use crate::state::STATE_TAG_BYTES;
use crate::storage::{RecordKind, RecordWrite, WriteSet};

/// The records the tag covers: what the group cache keeps.
fn covered(kind: RecordKind) -> Option<&'static [u8]> {
    match kind {
        RecordKind::Roster => Some(b"roster"),
        RecordKind::Activity => Some(b"activity"),
        _ => None,
    }
}

/// Chains the tag of the sequencer `records` put over the covered records they put: the new
/// tag is the first 16 bytes of SHA-256 over the sequencer's tag as read (the last 16 bytes of
/// its encoding), then each covered record's name, length and bytes. A write that puts a
/// covered record without the sequencer is a bug: the cache could not see it.
pub(crate) fn chain<E: std::error::Error + 'static>(
    crypto: &impl OpenMlsCrypto,
    records: &mut [RecordWrite],
) -> HandlerResult<(), E> {
    let mut input = Vec::new();
    for record in records.iter() {
        if let RecordWrite::Put(kind, bytes) = record {
            if let Some(name) = covered(*kind) {
                input.extend_from_slice(name);
                input.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                input.extend_from_slice(bytes);
            }
        }
    }
    if input.is_empty() {
        return Ok(());
    }
    let sequencer = records
        .iter_mut()
        .find_map(|record| match record {
            RecordWrite::Put(RecordKind::Sequencer, bytes) => Some(bytes),
            _ => None,
        })
        .ok_or_else(|| internal("a write of the roster or the activity must put the sequencer"))?;
    let start = sequencer
        .len()
        .checked_sub(STATE_TAG_BYTES)
        .ok_or_else(|| internal("the sequencer is shorter than its tag"))?;
    let mut chained = sequencer[start..].to_vec();
    chained.extend_from_slice(&input);
    let hash = sha256::<E>(crypto, &chained)?;
    let tag = hash
        .get(..STATE_TAG_BYTES)
        .ok_or_else(|| internal("SHA-256 is shorter than a state tag"))?;
    sequencer[start..].copy_from_slice(tag);
    Ok(())
}

/// The tag of the sequencer a write set puts, if it puts one.
pub(crate) fn written(write_set: &WriteSet) -> Option<[u8; STATE_TAG_BYTES]> {
    write_set.records.iter().find_map(|record| match record {
        RecordWrite::Put(RecordKind::Sequencer, bytes) => bytes
            .len()
            .checked_sub(STATE_TAG_BYTES)
            .and_then(|start| bytes[start..].try_into().ok()),
        _ => None,
    })
}
