//! `request_group_id(0)` (DS-03/04 §"Request group ID"): the DS issues and reserves a fresh
//! group ID, so `create_group` can refuse IDs it did not issue.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use super::group_state::encode_record;
use super::{Ctx, HandlerResult, Plan};
use crate::error::internal;
use crate::state::Reservation;
use crate::storage::{DsStorage, RecordKind, VersionGuard};
use crate::wire::DsResponseBody;

pub(crate) fn handle<C, S>(ctx: &Ctx<'_, C>, _storage: &S) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto + OpenMlsRand,
    S: DsStorage,
{
    // 128 random bits from the injected RNG; the domain suffix makes IDs unique across hubs.
    let random = ctx
        .env
        .crypto
        .random_vec(16)
        .map_err(|e| internal(format!("{e:?}")))?;
    let mut group_id: Vec<u8> = random
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes();
    group_id.push(b'@');
    group_id.extend_from_slice(ctx.env.config.domain.as_bytes());

    let reservation = Reservation {
        expires_at: ctx
            .now
            .saturating_add(ctx.env.config.group_id_reservation_ms),
    };
    // `Absent` makes a (2^-128) collision a conflict, and the retry draws a new ID.
    ctx.write_plan(
        None,
        &group_id,
        VersionGuard::Absent,
        vec![encode_record(RecordKind::Reservation, &reservation)?],
        Vec::new(),
        DsResponseBody::GroupId(group_id.clone().into()),
    )
}
