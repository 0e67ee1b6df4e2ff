//! Configuration of a [`crate::DeliveryService`].

use openmls::prelude::{Credential, SignaturePublicKey};
use openmls_traits::signatures::Signer;

use crate::time::UnixTimeMs;

/// Tunables of the Delivery Service. All durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DsConfig {
    /// The DS's domain: it names itself in fanout (`sender_domain`) and in the group IDs it
    /// issues.
    pub domain: String,
    /// Half-width of the window around `now` in which a `ClientSignature` timestamp is
    /// accepted; signatures are remembered for this long to reject replays (docs/decisions.md
    /// D7). Default 5 minutes.
    pub auth_window_ms: u64,
    /// Requests larger than this are refused before decoding. Default 4 MiB (a ratchet tree of
    /// ~20 000 members).
    pub max_request_bytes: usize,
    /// How long a group ID issued by `request_group_id` stays reserved. Default 1 hour.
    pub group_id_reservation_ms: u64,
    /// How many times `process` re-runs a request when storage reports a concurrent write
    /// before answering `conflict`. Default 3.
    pub max_conflict_retries: u32,
    /// Application messages may be this many epochs behind the group (RP-03
    /// `AppMessagePolicy.epoch_tolerance`). Default 0: the hub is the single arbiter and
    /// clients re-encrypt after processing the newest commit.
    pub app_message_epoch_tolerance: u64,
    /// How many accepted application messages per group the DS remembers (by a digest of their
    /// ciphertext) to refuse a resubmitted one with `replayed_message` (wire-format.md §4.8).
    /// Bounds the group's sequencer record, which every application message reads: about 25
    /// bytes per message. Default 64; 0 turns the check off.
    pub app_message_replay_memory: usize,
    /// Who may join by external commit. Default [`ExternalJoinPolicy::ExistingUsers`].
    pub external_joins: ExternalJoinPolicy,
    /// Who may fetch a group's GroupInfo, ratchet tree and pending proposals (`group_info`).
    /// Default [`GroupInfoAccess::Members`].
    pub group_info_access: GroupInfoAccess,
    /// What happens to commits that leave the DS's own pending proposals out, and to
    /// application messages while Remove proposals issued by the DS are pending. Default
    /// [`PendingProposalPolicy::Strict`]. Members' proposals are never mandatory
    /// (wire-format.md §4.3.3).
    pub pending_proposals: PendingProposalPolicy,
    /// How many proposals may be pending in one epoch; a member's proposal beyond it is refused
    /// with `too_many_pending_proposals` (wire-format.md §4.10). The DS's own proposals are
    /// never refused (there is at most one per member plus one rotation). Default 256: honest
    /// groups rarely have more than a few proposals per epoch (one per leaving or updating
    /// member), and the pending set is re-encoded with every proposal, commit and `group_info`,
    /// so without a bound one member could make each of those requests arbitrarily expensive.
    /// Any member's commit empties the set.
    pub max_pending_proposals: usize,
    /// A client that has sent nothing for this long is removed by
    /// [`crate::HubEvent::InactivitySweep`] (DS-00 §6). Default `None`: no inactivity removals.
    pub inactivity_limit_ms: Option<u64>,
    /// The longest the DS keeps a Welcome joiner's tree (wire-format.md §4.12): until its
    /// KeyPackage's `not_after`, but at most this long after the adding commit, whatever
    /// `not_after` the client chose. Default 14 days.
    pub welcome_retention_ms: u64,
    /// How many epochs' Welcome trees a group keeps at most (wire-format.md §4.12). A commit
    /// with Adds beyond this evicts the oldest; its remaining joiners then join by external
    /// commit. Default 16.
    pub max_welcome_snapshots: usize,
    /// How stale a member's stored activity time may get before a message rewrites it
    /// (wire-format.md §16.1). A message writes the group's per-leaf activity record only when
    /// its sender's stored time is at least this old, so most messages write a few bytes
    /// whatever the group's size. [`crate::HubEvent::InactivitySweep`] then sees each time up
    /// to this much too early; the DS uses at most a sixteenth of
    /// [`DsConfig::inactivity_limit_ms`] instead, so a short limit never removes active
    /// members. Default 1 hour; 0 writes the time with every message.
    pub activity_granularity_ms: u64,
    /// The most memory, in estimated heap bytes, the [`crate::DeliveryService`] spends on its
    /// cache of decoded group state (wire-format.md §16.2). A cached entry is used only for
    /// the exact stored version it was decoded from, so the cache never changes an answer.
    /// Default 64 MiB (a 1000-member group takes roughly 0.5 MiB); 0 turns the cache off.
    pub group_cache_bytes: usize,
    /// For tests: the cache stores, evicts and accounts entries as usual, but every lookup
    /// misses, so each request decodes what it reads (wire-format.md §16.2). Default `false`.
    pub group_cache_force_miss: bool,
    /// The components whose AppDataUpdate proposals the hub accepts, with their semantics
    /// (feature `app-data-update`; wire-format.md §15.7). Default empty: every AppDataUpdate is
    /// refused (`invalid_proposal`).
    #[cfg(feature = "app-data-update")]
    pub app_data_components: crate::app_data::AppDataComponents,
}

impl DsConfig {
    /// The granularity activity times are kept at: [`DsConfig::activity_granularity_ms`], but
    /// at most a sixteenth of the inactivity limit (wire-format.md §16.1).
    pub(crate) fn effective_activity_granularity_ms(&self) -> u64 {
        match self.inactivity_limit_ms {
            Some(limit) => self.activity_granularity_ms.min(limit / 16),
            None => self.activity_granularity_ms,
        }
    }
}

/// The rule for the DS's own pending proposals (its removals and signing-key rotations),
/// modelled on draft-ietf-mimi-room-policy-03 `PendingProposalPolicy` (`immediate_commit`, or a
/// delay after which it applies). It does not apply to members' proposals: a commit may always
/// leave those out, as the DS cannot check their `membership_tag` (wire-format.md §4.3.3, §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingProposalPolicy {
    /// DS-00 §6, draft-robert-mimi-delivery-service §5.1: a commit must include every pending
    /// proposal the DS issued (`missing_pending_proposals`), and while Remove proposals issued
    /// by the DS are pending, application messages are refused too.
    Strict,
    /// For this long after a DS proposal became pending, commits may leave it out and
    /// application messages flow; then [`PendingProposalPolicy::Strict`] applies. A commit that
    /// leaves the DS's own proposals out makes the DS issue them again in the new epoch (the
    /// grace period is not restarted). Strict-only rules leave groups stuck when the
    /// proposals' target never comes back to commit them.
    GraceWindow {
        /// The grace period, ms.
        ms: u64,
    },
}

impl PendingProposalPolicy {
    /// Whether the strict rule applies at `now` to proposals pending since `since`.
    pub fn enforced(self, since: UnixTimeMs, now: UnixTimeMs) -> bool {
        match self {
            Self::Strict => true,
            Self::GraceWindow { ms } => now >= since.saturating_add(ms),
        }
    }
}

/// Who may join a group by external commit (`external_join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalJoinPolicy {
    /// Nobody: groups grow only by Welcome.
    Disabled,
    /// Clients of users that already have a client in the group (DS-03/04 §"External join"):
    /// new devices and clients resyncing after state loss.
    ExistingUsers,
    /// Anyone with a credential the validator accepts (open rooms; draft-ietf-mimi-protocol's
    /// join links put the authorization in front of the DS).
    Anyone,
}

/// Who may fetch a group's GroupInfo, ratchet tree, credentials, sealed queue configurations
/// and pending proposals with `group_info` (draft-robert-mimi-delivery-service-06 §"Group
/// info": the DS "MUST verify that the sender is authorized"; wire-format.md §4.11). Group IDs
/// travel in every fanout, so knowing one is no authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupInfoAccess {
    /// Requests signed by a member (`leaf_index`) or by a user of the group with its
    /// registered user authentication key (`user_key_hash`): the new devices and resyncing
    /// clients that [`ExternalJoinPolicy::ExistingUsers`] admits. Unauthenticated requests are
    /// `authentication_failed`.
    Members,
    /// Also unauthenticated requests, by anyone who knows the group ID: open rooms, or
    /// deployments that authorize fetchers in front of the DS (join links, rate limits; see
    /// [`crate::transport::Router::with_anonymous_group_info_gate`]).
    Anyone,
}

impl DsConfig {
    /// The defaults for a DS serving `domain`.
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            auth_window_ms: 5 * 60 * 1000,
            max_request_bytes: 4 << 20,
            group_id_reservation_ms: 60 * 60 * 1000,
            max_conflict_retries: 3,
            app_message_epoch_tolerance: 0,
            app_message_replay_memory: 64,
            external_joins: ExternalJoinPolicy::ExistingUsers,
            group_info_access: GroupInfoAccess::Members,
            pending_proposals: PendingProposalPolicy::Strict,
            max_pending_proposals: 256,
            inactivity_limit_ms: None,
            welcome_retention_ms: 14 * 24 * 60 * 60 * 1000,
            max_welcome_snapshots: 16,
            activity_granularity_ms: 60 * 60 * 1000,
            group_cache_bytes: 64 << 20,
            group_cache_force_miss: false,
            #[cfg(feature = "app-data-update")]
            app_data_components: crate::app_data::AppDataComponents::new(),
        }
    }
}

/// The DS's own MLS identity: it is an external sender of every group it serves (RFC 9420
/// §12.1.8.1), and every group's `external_senders` extension must name this key and credential.
pub struct DsIdentity {
    /// The DS's signature public key.
    pub signature_key: SignaturePublicKey,
    /// The DS's credential (a BasicCredential holding its domain, DS-03 §"Group lifecycle").
    pub credential: Credential,
    /// Signs what the DS issues as an external sender.
    pub signer: Box<dyn Signer + Send + Sync>,
}

/// Borrows a [`DsIdentity`]'s boxed signer as the `impl Signer` openmls takes.
pub(crate) struct DsSigner<'a>(pub(crate) &'a (dyn Signer + Send + Sync));

impl Signer for DsSigner<'_> {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, openmls_traits::signatures::SignerError> {
        self.0.sign(payload)
    }
    fn signature_scheme(&self) -> openmls_traits::types::SignatureScheme {
        self.0.signature_scheme()
    }
}

impl DsIdentity {
    /// The DS as an entry of an `external_senders` extension.
    pub fn external_sender(&self) -> openmls::prelude::ExternalSender {
        openmls::prelude::ExternalSender::new(self.signature_key.clone(), self.credential.clone())
    }
}

impl std::fmt::Debug for DsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsIdentity")
            .field("signature_key", &self.signature_key)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}
