//! The group's stored state as handlers open it: decoding and encoding its records, loading
//! its openmls state ([`OpenGroup`]), and the refusal of a group that was re-initialized.

use openmls::prelude::{Ciphersuite, GroupId, PublicGroup};
use tls_codec::DeserializeBytes;

use super::HandlerResult;
use crate::error::{internal, NotAllowed, RejectReason};
use crate::state::mls_state::MlsStateBuffer;
use crate::state::{Activity, PendingProposals, Roster, Sequencer};
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

/// Decodes the group's sequencer, of either stored layout (see [`Sequencer::decode`]).
pub(crate) fn decode_sequencer<E: std::error::Error + 'static>(
    snapshot: &GroupSnapshot,
) -> HandlerResult<Sequencer, E> {
    let bytes = snapshot
        .record(RecordKind::Sequencer)
        .ok_or_else(|| internal("Sequencer record missing"))?;
    Sequencer::decode(bytes).map_err(|e| internal(format!("Sequencer record: {e}")))
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
    /// Sequence numbers and the application messages' replay memory.
    pub(crate) sequencer: Sequencer,
    /// When each leaf last sent something.
    pub(crate) activity: Activity,
}

/// The records a handler reads to open the group: the roster, and what [`OpenGroup::open`]
/// decodes.
pub(crate) const OPEN_GROUP_READS: [RecordKind; 5] = [
    RecordKind::Roster,
    RecordKind::Sequencer,
    RecordKind::MlsState,
    RecordKind::PendingProposals,
    RecordKind::Activity,
];

/// Records a live group may lack: [`RecordKind::IdentityLinks`] exist only in pseudonymous
/// groups (wire-format.md §14.2), [`RecordKind::Activity`] only in groups stored since it
/// exists (wire-format.md §16.1).
pub(crate) fn optional_record(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::IdentityLinks | RecordKind::Activity)
}

/// The group's activity: its [`RecordKind::Activity`] record or, in a group stored before that
/// record existed, the times its sequencer kept (migration on read; the next write of the
/// activity moves them into their own record).
pub(crate) fn decode_activity<E: std::error::Error + 'static>(
    snapshot: &GroupSnapshot,
    sequencer: &Sequencer,
) -> HandlerResult<Activity, E> {
    match snapshot.record(RecordKind::Activity) {
        Some(_) => decode_record(snapshot, RecordKind::Activity),
        None => Ok(Activity {
            last_active: sequencer.last_active.clone(),
        }),
    }
}

/// The writes of the sequencer after a member sent something: with the activity record too if
/// the sender's time in it changed (`touched`) or the group has no such record yet (`stored`
/// false: the legacy times move out of the sequencer). Most messages write the small
/// sequencer only (wire-format.md §16.1).
pub(crate) fn sequencer_writes<E: std::error::Error + 'static>(
    sequencer: &Sequencer,
    activity: &Activity,
    touched: bool,
    stored: bool,
) -> HandlerResult<Vec<RecordWrite>, E> {
    if touched || !stored {
        return Ok(activity_writes(activity, sequencer)?.into());
    }
    Ok(vec![encode_record(RecordKind::Sequencer, sequencer)?])
}

/// The writes of a changed activity: its own record, and the sequencer without the legacy times
/// (which the record replaces).
pub(crate) fn activity_writes<E: std::error::Error + 'static>(
    activity: &Activity,
    sequencer: &Sequencer,
) -> HandlerResult<[RecordWrite; 2], E> {
    let sequencer = Sequencer {
        last_active: Vec::new(),
        ..sequencer.clone()
    };
    Ok([
        encode_record(RecordKind::Activity, activity)?,
        encode_record(RecordKind::Sequencer, &sequencer)?,
    ])
}

impl OpenGroup {
    /// Opens the group `group_id` from a snapshot holding [`OPEN_GROUP_READS`].
    pub(crate) fn open<E: std::error::Error + 'static>(
        snapshot: &GroupSnapshot,
        group_id: &[u8],
    ) -> HandlerResult<Self, E> {
        let (buffer, group) = open_mls_state(snapshot, group_id)?;
        let sequencer = decode_sequencer(snapshot)?;
        Ok(Self {
            buffer,
            group,
            pending: decode_record(snapshot, RecordKind::PendingProposals)?,
            activity: decode_activity(snapshot, &sequencer)?,
            sequencer,
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
