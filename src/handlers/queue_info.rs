//! `update_queue_info(19)` (DS-00 §"Update queue information"): a member replaces the queue
//! configuration the DS fans out to. The MLS tree is not involved.

use openmls_traits::crypto::OpenMlsCrypto;

use super::{ciphersuite, decode_record, encode_record, Ctx, Plan, Result};
use crate::error::RejectReason;
use crate::state::Roster;
use crate::storage::{DsStorage, RecordKind, VersionGuard};
use crate::wire::{DsResponseBody, UpdateQueueInfoRequest};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &UpdateQueueInfoRequest,
) -> Result<Plan, S>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let auth = ctx.client_auth::<S>()?;
    if let Some(plan) = ctx.replay_check(&auth, storage)? {
        return Ok(plan);
    }
    let sender = auth.leaf_index()?;
    let group_id = auth.group_id();
    let snapshot = ctx.read_group(storage, group_id, &[RecordKind::Roster])?;
    let mut roster: Roster = decode_record::<_, S>(&snapshot, RecordKind::Roster)?;
    let suite = ciphersuite::<S>(roster.ciphersuite)?;
    let member = roster
        .members
        .get_mut(sender as usize)
        .and_then(Option::as_mut)
        .ok_or(RejectReason::AuthenticationFailed(
            "no member at the sender's leaf",
        ))?;
    auth.verify(ctx.crypto(), suite, member.signature_key.as_slice())?;
    member.queue_config = body.queue_config.clone();

    ctx.write_plan::<S>(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        vec![encode_record::<_, S>(RecordKind::Roster, &roster)?],
        Vec::new(),
        DsResponseBody::Ok,
    )
}
