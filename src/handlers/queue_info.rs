//! `update_queue_info(19)` (DS-00 §"Update queue information"): a member replaces the queue
//! configuration the DS fans out to. The MLS tree is not involved.

use openmls_traits::crypto::OpenMlsCrypto;

use super::group_state::{decode_sequencer, encode_record};
use super::{Ctx, HandlerResult, MemberRequest, Plan, Started};
use crate::error::{AuthenticationFailed, RejectReason};
use crate::storage::{DsStorage, RecordKind, VersionGuard};
use crate::wire::{DsResponseBody, UpdateQueueInfoRequest};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &UpdateQueueInfoRequest,
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let MemberRequest {
        auth,
        snapshot,
        mut roster,
        principal,
    } = match ctx.start_member_request(
        storage,
        &[RecordKind::Roster, RecordKind::Sequencer],
        false,
    )? {
        Started::Duplicate(plan) => return Ok(plan),
        Started::Fresh(request) => request,
    };
    let sender = principal.leaf()?;
    let group_id = auth.group_id();
    let member = roster
        .members
        .get_mut(sender as usize)
        .and_then(Option::as_mut)
        // Rule R-AUTH-4.
        .ok_or(RejectReason::AuthenticationFailed(
            AuthenticationFailed::NoMemberAtLeaf,
        ))?;
    member.queue_config = body.queue_config.clone();
    roster.refuse_shared_queue_configs(|leaf| leaf == sender)?;

    ctx.write_plan(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        // The sequencer goes with the roster, so that its state tag covers the change
        // (wire-format.md §16.2).
        vec![
            encode_record(RecordKind::Roster, &roster)?,
            encode_record(
                RecordKind::Sequencer,
                &decode_sequencer::<S::Error>(&snapshot)?,
            )?,
        ],
        Vec::new(),
        DsResponseBody::Ok,
    )
}
