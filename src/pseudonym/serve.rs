//! `identity_link_keys(24)` (wire-format.md §14.2): a member reads the wrapped identity link
//! keys of its pseudonymous group, e.g. right after joining from a Welcome or by external
//! commit, to authenticate every other member. Signed by the member's leaf; a read that only
//! stores its replay mark.

use openmls_traits::crypto::OpenMlsCrypto;

use super::IdentityLinkKeys;
use crate::handlers::{Ctx, HandlerResult, Plan, Started};
use crate::storage::{DsStorage, RecordKind, VersionGuard};
use crate::wire::{decode_exact, DsResponseBody};

pub(crate) fn handle<C, S>(ctx: &Ctx<'_, C>, storage: &S) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    let request = match ctx.start_member_request(
        storage,
        &[RecordKind::Roster, RecordKind::IdentityLinks],
        false,
    )? {
        Started::Duplicate(plan) => return Ok(plan),
        Started::Fresh(request) => request,
    };
    // A group that is not pseudonymous has none: an empty answer for its epoch.
    let links = match request.snapshot.record(RecordKind::IdentityLinks) {
        Some(bytes) => decode_exact::<IdentityLinkKeys>(bytes)
            .map_err(|e| crate::error::internal(format!("IdentityLinks record: {e}")))?,
        None => IdentityLinkKeys {
            epoch: request.roster.epoch,
            entries: Vec::new(),
        },
    };
    ctx.write_plan(
        Some(&request.auth.guard),
        request.auth.group_id(),
        VersionGuard::ReplayMarkOnly,
        Vec::new(),
        Vec::new(),
        DsResponseBody::IdentityLinkKeys(links),
    )
}
