//! The group's stored state as handlers open it: decoding and encoding its records, loading
//! its openmls state, and the refusal of a group that was re-initialized.

use openmls::prelude::{Ciphersuite, GroupId, PublicGroup};
use tls_codec::DeserializeBytes;

use super::HandlerResult;
use crate::error::{internal, RejectReason};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::Roster;
use crate::storage::{GroupSnapshot, RecordKind, RecordWrite};
use crate::wire::decode_exact;

/// Decodes a record mimi-ds wrote itself; failure is a bug or storage corruption.
pub(crate) fn decode_record<T: DeserializeBytes, E: std::error::Error + 'static>(
    snapshot: &GroupSnapshot,
    kind: RecordKind,
) -> HandlerResult<T, E> {
    let bytes = snapshot
        .record(kind)
        .ok_or_else(|| internal(format!("{kind:?} record missing")))?;
    decode_exact::<T>(bytes).map_err(|e| internal(format!("{kind:?} record: {e}")))
}

/// Encodes a record.
pub(crate) fn encode_record<T: tls_codec::Serialize, E: std::error::Error + 'static>(
    kind: RecordKind,
    value: &T,
) -> HandlerResult<RecordWrite, E> {
    crate::wire::encode(value)
        .map(|bytes| RecordWrite::Put(kind, bytes))
        .map_err(internal)
}

/// The group's ciphersuite, as stored in its roster.
pub(crate) fn ciphersuite<E: std::error::Error + 'static>(
    value: u16,
) -> HandlerResult<Ciphersuite, E> {
    Ciphersuite::try_from(value).map_err(internal)
}

/// Loads the group's openmls state from its record.
pub(crate) fn load_group<E: std::error::Error + 'static>(
    buffer: &MlsStateBuffer,
    group_id: &[u8],
) -> HandlerResult<PublicGroup, E> {
    buffer
        .load_group(&GroupId::from_slice(group_id))
        .map_err(internal)?
        .ok_or_else(|| internal("MlsState record holds no group"))
}

/// RFC 9420 §12.1.5: after a ReInit is committed, the old group is only kept for reference.
pub(crate) fn refuse_if_reinitialized(roster: &Roster) -> Result<(), RejectReason> {
    match &roster.successor {
        Some(_) => Err(RejectReason::NotAllowed(
            "the group was re-initialized; use its successor".into(),
        )),
        None => Ok(()),
    }
}
