//! The group's stored state as handlers open it: decoding and encoding its records, loading
//! its openmls state, and the refusal of a group that was re-initialized.

use openmls::prelude::{Ciphersuite, GroupId, PublicGroup};
use tls_codec::DeserializeBytes;

use super::Result;
use crate::error::{internal, RejectReason};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::Roster;
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, RecordWrite};
use crate::wire::decode_exact;

/// Decodes a record mimi-ds wrote itself; failure is a bug or storage corruption.
pub(crate) fn decode_record<T: DeserializeBytes, S: DsStorage>(
    snapshot: &GroupSnapshot,
    kind: RecordKind,
) -> Result<T, S> {
    let bytes = snapshot
        .record(kind)
        .ok_or_else(|| internal(format!("{kind:?} record missing")))?;
    decode_exact::<T>(bytes).map_err(|e| internal(format!("{kind:?} record: {e}")))
}

/// Encodes a record.
pub(crate) fn encode_record<T: tls_codec::Serialize, S: DsStorage>(
    kind: RecordKind,
    value: &T,
) -> Result<RecordWrite, S> {
    crate::wire::encode(value)
        .map(|bytes| RecordWrite::Put(kind, bytes))
        .map_err(internal)
}

/// The group's ciphersuite, as stored in its roster.
pub(crate) fn ciphersuite<S: DsStorage>(value: u16) -> Result<Ciphersuite, S> {
    Ciphersuite::try_from(value).map_err(internal)
}

/// Loads the group's openmls state from its record.
pub(crate) fn load_group<S: DsStorage>(
    buffer: &MlsStateBuffer,
    group_id: &[u8],
) -> Result<PublicGroup, S> {
    buffer
        .load_group(&GroupId::from_slice(group_id))
        .map_err(internal)?
        .ok_or_else(|| internal("MlsState record holds no group"))
}

/// RFC 9420 §12.1.5: after a ReInit is committed, the old group is only kept for reference.
pub(crate) fn refuse_if_reinitialized(roster: &Roster) -> std::result::Result<(), RejectReason> {
    match &roster.successor {
        Some(_) => Err(RejectReason::NotAllowed(
            "the group was re-initialized; use its successor".into(),
        )),
        None => Ok(()),
    }
}
