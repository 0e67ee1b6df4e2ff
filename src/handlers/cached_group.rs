//! The start of an application message over the group cache (wire-format.md §16.2): the
//! roster, its prepared fanout and the activity come from the cache when the group's stored
//! version is the cached one, and are read and decoded otherwise.
//!
//! With a cached entry, the first read asks for the small [`RecordKind::Sequencer`] only; if
//! its version is the entry's, nothing else is read. If it is not (another instance or another
//! kind of request wrote the group), the handler reads the roster, sequencer and activity
//! again in one read and decides on that read alone, so a decision never mixes versions.

use std::sync::Arc;

use openmls_traits::crypto::OpenMlsCrypto;

use super::group_state::{decode_activity, decode_record, decode_sequencer};
use super::{Ctx, HandlerResult, Principal};
use crate::auth::ClientAuth;
use crate::service::cache::{CacheAfterWrite, CachedGroup, CachedRoster};
use crate::state::{Roster, Sequencer, STATE_TAG_BYTES};
use crate::storage::{DsStorage, GroupSnapshot, RecordKind};

/// What an application message reads when the group is not cached.
pub(crate) const MESSAGE_READS: [RecordKind; 3] = [
    RecordKind::Roster,
    RecordKind::Sequencer,
    RecordKind::Activity,
];

/// A member's application message after its common checks, with the group as cached or
/// decoded. `snapshot` holds the [`RecordKind::Sequencer`] (and, on a miss, the records it was
/// decoded from) at the version `group` is of.
pub(crate) struct CachedMemberRequest<'r> {
    pub(crate) auth: ClientAuth<'r>,
    pub(crate) snapshot: GroupSnapshot,
    pub(crate) group: CachedGroup,
    pub(crate) principal: Principal,
}

/// How [`Ctx::start_cached_member_request`] ended.
pub(crate) enum StartedCached<'r> {
    /// A byte-identical retry, answered as before.
    Duplicate(super::Plan),
    /// A new request, authenticated.
    Fresh(CachedMemberRequest<'r>),
}

impl<C: OpenMlsCrypto> Ctx<'_, C> {
    /// [`Ctx::start_member_request`] for an application message, over the group cache: the
    /// same checks in the same order, against the same stored state.
    pub(crate) fn start_cached_member_request<S: DsStorage>(
        &self,
        storage: &S,
    ) -> HandlerResult<StartedCached<'_>, S::Error> {
        let auth = self.client_auth()?;
        if let Some(plan) = self.replay_check(&auth, storage)? {
            return Ok(StartedCached::Duplicate(plan));
        }
        let (snapshot, group) = self.read_cached_group(storage, auth.group_id())?;
        let principal = self.authenticate_member(&auth, &group.roster.roster, false)?;
        Ok(StartedCached::Fresh(CachedMemberRequest {
            auth,
            snapshot,
            group,
            principal,
        }))
    }

    /// The group's sequencer snapshot and its decoded state at the same version: from the
    /// cache if its entry is of the version just read, decoded (and cached) otherwise.
    fn read_cached_group<S: DsStorage>(
        &self,
        storage: &S,
        group_id: &[u8],
    ) -> HandlerResult<(GroupSnapshot, CachedGroup), S::Error> {
        let cache = self.env.cache;
        let cached = cache.lookup(group_id);
        if !cached.is_empty() {
            let snapshot = self.read_group(storage, group_id, &[RecordKind::Sequencer])?;
            let tag = decode_sequencer(&snapshot)?.state_tag;
            if let Some((_, group)) = cached
                .into_iter()
                .find(|(version, group)| *version == snapshot.version && group.state_tag == tag)
            {
                cache.record_hit();
                return Ok((snapshot, group));
            }
        }
        let snapshot = self.read_group(storage, group_id, &MESSAGE_READS)?;
        cache.record_miss();
        let roster: Roster = decode_record(&snapshot, RecordKind::Roster)?;
        let sequencer: Sequencer = decode_sequencer(&snapshot)?;
        let activity = decode_activity(&snapshot, &sequencer)?;
        let group = CachedGroup {
            roster: Arc::new(CachedRoster::new(roster)),
            activity: Arc::new(activity),
            activity_stored: snapshot.record(RecordKind::Activity).is_some(),
            state_tag: sequencer.state_tag,
        };
        // A group stored before the tag existed is not cached until a write tags it: the
        // version alone does not tell forked stores apart.
        if sequencer.state_tag != [0; STATE_TAG_BYTES] {
            cache.insert(group_id, snapshot.version, group.clone());
        }
        Ok((snapshot, group))
    }

    /// Notes the state a write guarded on `read_version` leaves the group in, so the cache
    /// holds it once the write applied (and the group is at `read_version + 1`).
    pub(crate) fn cache_after_write(&self, group_id: &[u8], read_version: u64, state: CachedGroup) {
        *self.cache_after.borrow_mut() = Some(CacheAfterWrite {
            group_id: group_id.to_vec(),
            version: read_version + 1,
            state,
        });
    }
}
