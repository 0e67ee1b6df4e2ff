//! `send_message(10)` (DS-03..06 §"Send message"): a PrivateMessage application message from an
//! authenticated member, fanned out to every other member.
//!
//! This is the hot path, so it reads only the roster, the sequencer and the activity, and
//! writes only the sequencer (and the activity when the sender's stored time is older than
//! `DsConfig::activity_granularity_ms`, wire-format.md §16.1): its cost is one signature
//! verification plus one small request header per destination provider, whatever the size of
//! the group: the recipient lists are shared, not copied (wire-format.md §16.2).

use openmls::prelude::{ContentType, MlsMessageBodyIn};
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{TlsDeserializeBytes, TlsSize, VLBytes};

use std::sync::Arc;

use super::cached_group::{CachedMemberRequest, StartedCached};
use super::group_state::{decode_sequencer, refuse_if_reinitialized, sequencer_writes};
use super::handshake::check_epoch;
use super::{Ctx, HandlerResult, Plan};
use crate::auth::sha256;
use crate::config::DsSigner;
use crate::error::{internal, RejectReason};
use crate::error::{InvalidGroupId, InvalidMessageType};
use crate::franking::{frank_message, franking_tag_in};
use crate::state::Roster;
use crate::state::{Sequencer, MESSAGE_DIGEST_BYTES};
use crate::storage::{DsStorage, VersionGuard};
use crate::wire::{
    decode_exact, AcceptedMessage, DsResponseBody, Frank, SendMessageRequest,
    ServerFrankingContext, FRANK_LEN,
};

pub(crate) fn handle<C, S>(
    ctx: &Ctx<'_, C>,
    storage: &S,
    body: &SendMessageRequest,
) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto,
    S: DsStorage,
{
    // wire-format.md §16.2: the roster, its fanout and the activity come from the group cache
    // when the stored version is the cached one.
    let CachedMemberRequest {
        auth,
        snapshot,
        group: cached,
        principal,
    } = match ctx.start_cached_member_request(storage)? {
        StartedCached::Duplicate(plan) => return Ok(plan),
        StartedCached::Fresh(request) => request,
    };
    let roster = &cached.roster.roster;
    // The PrivateMessage hides its sender (RFC 9420 §6.3), so the ClientSignature is what
    // authenticates the member to the DS.
    let sender = principal.leaf()?;
    let group_id = auth.group_id();

    // RFC 9420 §12.1.5: once re-initialized, the group takes no more messages.
    refuse_if_reinitialized(roster)?;

    // DS-03..06: must be a PrivateMessage with content type application.
    let MlsMessageBodyIn::PrivateMessage(message) = body.application_message.parse()?.extract()
    else {
        // Rule R-MSG-5.
        return Err(
            RejectReason::InvalidMessageType(InvalidMessageType::ApplicationNotPrivate).into(),
        );
    };
    // Rule R-MSG-6.
    if message.content_type() != ContentType::Application {
        return Err(
            RejectReason::InvalidMessageType(InvalidMessageType::ExpectedApplication).into(),
        );
    }
    // Rule R-GID-5.
    if message.group_id().as_slice() != group_id {
        return Err(RejectReason::InvalidGroupId(InvalidGroupId::MessageForAnotherGroup).into());
    }
    // Rules R-POL-27, R-POL-28, R-POL-29: the room's parameters, copied into the roster when
    // the policy was read, replace the hub-wide ones (wire-format.md §15.4).
    let room = &roster.room_parameters;
    let epoch_tolerance = room.epoch_tolerance(ctx.env.config.app_message_epoch_tolerance);
    check_epoch(roster.epoch, message.epoch(), epoch_tolerance)?;
    room.check_leaf_age(sender, ctx.now, false)?;

    let mut sequencer: Sequencer = decode_sequencer(&snapshot)?;
    // DS-00 §6: while Remove proposals the DS issued are pending, application messages are
    // refused until a commit covers them (subject to the pending-proposal policy's grace).
    if let Some(since) = sequencer.ds_removals_pending_since {
        if room
            .pending_proposals(ctx.env.config.pending_proposals)
            .enforced(since, ctx.now)
        {
            // Rule R-MSG-11.
            return Err(RejectReason::HubRemovalsPending.into());
        }
    }
    // RFC 9420 §6.3: a ciphertext is encrypted under a one-time key and nonce, so the same
    // ciphertext twice is a replay, whoever signs the request (wire-format.md §4.8).
    // The message's frame as received: its ciphertext for the replay check, its
    // authenticated data for the franking tag.
    let fields = decode_exact::<PrivateMessageFields>(body.application_message.as_bytes())
        .map_err(internal)?;
    // wire-format.md §15.5: a malformed franking tag is refused before anything is written.
    // Rule R-FRANK-1.
    let franking_tag = franking_tag_in(fields.authenticated_data.as_slice())
        .map_err(RejectReason::MalformedFrankAad)?;
    let digest = ciphertext_digest(ctx.crypto(), &fields)?;
    if sequencer.has_seen(&digest) {
        // Rule R-MSG-10.
        return Err(RejectReason::ReplayedMessage.into());
    }
    sequencer.forget_messages_before(roster.epoch.saturating_sub(epoch_tolerance));
    sequencer.remember(
        message.epoch().as_u64(),
        digest,
        ctx.env.config.app_message_replay_memory,
    );
    let frank = match (franking_tag, ctx.env.franking_key) {
        (Some(tag), Some(key)) => Some(frank(ctx, key, &tag, roster, sender, group_id)?),
        // A hub without a franking key accepts franked messages unfranked (MP-06 `optional
        // Frank`).
        _ => None,
    };
    let accepted = AcceptedMessage {
        sequence_number: sequencer.next_sequence,
        accepted_time_ms: ctx.now.as_millis(),
        epoch: roster.epoch,
        external_proposals: Vec::new(),
        frank: frank.clone(),
    };
    // Refers to the recipient lists prepared once per roster version: neither grouped nor
    // copied again.
    let mut fanout = cached.roster.fanout.fan_out(
        &ctx.env.config.domain,
        group_id,
        accepted.sequence_number,
        ctx.now,
        &body.application_message,
        sender,
    );
    for delivery in &mut fanout {
        delivery.request.message.frank = frank.clone();
    }
    sequencer.next_sequence += 1;
    // wire-format.md §16.1: the activity record is written only when the sender's stored time
    // is older than the granularity, so most messages write the small sequencer alone.
    let mut after = cached.clone();
    let granularity = ctx.env.config.effective_activity_granularity_ms();
    // The cached times are shared: copied only when this message changes them.
    let touched = after.activity.is_stale(sender, ctx.now, granularity)
        && Arc::make_mut(&mut after.activity).touch(sender, ctx.now, granularity);
    let records = sequencer_writes(&sequencer, &after.activity, touched, cached.activity_stored)?;
    // The write changes neither the roster nor, unless it writes them, the activity times.
    after.activity_stored = true;
    ctx.cache_after_write(group_id, snapshot.version, after);
    ctx.write_plan(
        Some(&auth.guard),
        group_id,
        VersionGuard::Exactly(snapshot.version),
        records,
        fanout,
        DsResponseBody::Accepted(accepted),
    )
}

/// The fields of an `MLSMessage` holding a PrivateMessage (RFC 9420 §6, §6.3), read from the
/// bytes as received: openmls does not expose the ciphertext of a `PrivateMessageIn`.
#[derive(TlsDeserializeBytes, TlsSize)]
struct PrivateMessageFields {
    _version: u16,
    _wire_format: u16,
    _group_id: VLBytes,
    _epoch: u64,
    _content_type: u8,
    authenticated_data: VLBytes,
    _encrypted_sender_data: VLBytes,
    ciphertext: VLBytes,
}

/// The hub's frank of an accepted message (wire-format.md §15.5): bound to the sender's user
/// (as the credential validator named it), the group ID as the room, and the acceptance time;
/// signed with the DS's current identity, naming the group's ciphersuite.
fn frank<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    ctx: &Ctx<'_, C>,
    key: &crate::franking::FrankingKey,
    tag: &[u8; FRANK_LEN],
    roster: &Roster,
    sender: u32,
    group_id: &[u8],
) -> HandlerResult<Frank, E> {
    let member = roster
        .member(sender)
        .ok_or_else(|| internal("the authenticated sender has no roster entry"))?;
    let context = ServerFrankingContext {
        sender_uri: member.user.clone(),
        room_uri: group_id.to_vec().into(),
        accepted_timestamp: ctx.now.as_millis(),
    };
    frank_message(
        ctx.crypto(),
        key,
        &DsSigner(ctx.env.identity.signer.as_ref()),
        roster.ciphersuite,
        tag,
        &context,
    )
    .ok_or_else(|| internal("franking failed in the crypto provider or the signer"))
}

/// What identifies an application message for the replay check: the first bytes of SHA-256 of
/// its `ciphertext`. Not of the whole message, so that changing the cleartext framing
/// (`authenticated_data`, `encrypted_sender_data`) around an accepted ciphertext does not make
/// it new.
fn ciphertext_digest<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    crypto: &C,
    fields: &PrivateMessageFields,
) -> HandlerResult<[u8; MESSAGE_DIGEST_BYTES], E> {
    let hash = sha256::<E>(crypto, fields.ciphertext.as_slice())?;
    hash.get(..MESSAGE_DIGEST_BYTES)
        .and_then(|prefix| prefix.try_into().ok())
        .ok_or_else(|| internal("SHA-256 is shorter than a message digest"))
}
