//! The group's stored state as handlers open it: decoding and encoding its records, loading
//! its openmls state ([`OpenGroup`]), and the refusal of a group that was re-initialized.

use openmls::prelude::{Ciphersuite, GroupId, PublicGroup};
use tls_codec::DeserializeBytes;

use super::HandlerResult;
use crate::error::{internal, NotAllowed, RejectReason};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::{PendingProposals, Roster, Sequencer};
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

/// A group opened to run MLS messages through it: its openmls state, loaded from the `MlsState`
/// record, and the records that change with it. Every handler that processes or issues
/// handshake messages opens the group this way (`commit`, `proposals`, `external_join`, the
/// DS's own proposals in `hub_events`).
///
/// Opening deserializes the whole ratchet tree, the costly part of a request, so handlers
/// refuse what they can without it (authentication, framing, epoch) before they open.
pub(crate) struct OpenGroup {
    /// The `MlsState` record as openmls's storage; written back after a change.
    pub(crate) buffer: MlsStateBuffer,
    /// The group, as openmls validates messages against it.
    pub(crate) group: PublicGroup,
    /// The proposals pending in the current epoch.
    pub(crate) pending: PendingProposals,
    /// Sequence numbers, activity and the application messages' replay memory.
    pub(crate) sequencer: Sequencer,
}

/// The records a handler reads to open the group: the roster, and what [`OpenGroup::open`]
/// decodes.
pub(crate) const OPEN_GROUP_READS: [RecordKind; 4] = [
    RecordKind::Roster,
    RecordKind::Sequencer,
    RecordKind::MlsState,
    RecordKind::PendingProposals,
];

impl OpenGroup {
    /// Opens the group `group_id` from a snapshot holding [`OPEN_GROUP_READS`].
    pub(crate) fn open<E: std::error::Error + 'static>(
        snapshot: &GroupSnapshot,
        group_id: &[u8],
    ) -> HandlerResult<Self, E> {
        let (buffer, group) = open_mls_state(snapshot, group_id)?;
        Ok(Self {
            buffer,
            group,
            pending: decode_record(snapshot, RecordKind::PendingProposals)?,
            sequencer: decode_record(snapshot, RecordKind::Sequencer)?,
        })
    }
}

/// The `MlsState` record as openmls's storage, and the group loaded from it (the part of
/// [`OpenGroup::open`] a read-only handler needs).
pub(crate) fn open_mls_state<E: std::error::Error + 'static>(
    snapshot: &GroupSnapshot,
    group_id: &[u8],
) -> HandlerResult<(MlsStateBuffer, PublicGroup), E> {
    let buffer =
        MlsStateBuffer::from_record(snapshot.record(RecordKind::MlsState).unwrap_or_default())
            .map_err(internal)?;
    let group = load_group(&buffer, group_id)?;
    Ok((buffer, group))
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
    // Rule R-COMMIT-6.
    match &roster.successor {
        Some(_) => Err(RejectReason::NotAllowed(NotAllowed::GroupReInitialized)),
        None => Ok(()),
    }
}
