//! TLS-encoded group records.

use std::collections::HashMap;

use openmls::prelude::{Ciphersuite, LeafNode, LeafNodeIndex, PublicGroup};
use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use crate::error::InvalidLeafNode;
use crate::error::RejectReason;
use crate::time::UnixTimeMs;
use crate::wire::{
    decode_exact, ClientQueueConfig, UserAuthKeyExtension, QUEUE_CONFIG_EXTENSION_TYPE,
    USER_AUTH_KEY_EXTENSION_TYPE,
};

/// [`crate::storage::RecordKind::Reservation`]: a reserved group ID. The expiry comes first so
/// backends can expire reservations without decoding more (storage contract).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct Reservation {
    pub(crate) expires_at: UnixTimeMs,
}

/// [`crate::storage::RecordKind::Roster`]: what authenticating a member and fanning out need.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct Roster {
    pub(crate) ciphersuite: u16,
    pub(crate) epoch: u64,
    /// Indexed by leaf index; `None` for blank leaves.
    pub(crate) members: Vec<Option<MemberEntry>>,
    /// Users' authentication keys, registered through leaf extension
    /// [`crate::wire::USER_AUTH_KEY_EXTENSION_TYPE`]; they authenticate `user_key_hash` senders.
    pub(crate) user_keys: Vec<UserKey>,
    /// Set once a ReInit was committed: the group that replaces this one. The group then takes
    /// no further messages (RFC 9420 §12.1.5).
    pub(crate) successor: Option<VLBytes>,
    /// What application messages need of the room policy (wire-format.md §15.4). Last, and
    /// encoded as nothing when default, so rosters stored before it decode unchanged.
    pub(crate) room_parameters: crate::policy::RoomParameters,
}

/// A user's registered authentication key.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct UserKey {
    pub(crate) user: VLBytes,
    pub(crate) key: VLBytes,
}

/// A member's entry in the [`Roster`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct MemberEntry {
    pub(crate) signature_key: VLBytes,
    pub(crate) queue_config: ClientQueueConfig,
    /// The user the client belongs to, as the credential validator named it.
    pub(crate) user: VLBytes,
}

/// [`crate::storage::RecordKind::Sequencer`]: the small, often-written part of a group's
/// state: what an application message reads and writes besides the roster.
#[derive(Debug, Clone, Default, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct Sequencer {
    pub(crate) next_sequence: u64,
    /// Legacy: when each leaf last sent something, as groups stored before the
    /// [`crate::storage::RecordKind::Activity`] record kept it. Read only while that record is
    /// absent; a handler that writes the [`Activity`] record writes this empty, so the record
    /// every message rewrites no longer grows with the group.
    pub(crate) last_active: Vec<UnixTimeMs>,
    /// Since when Remove proposals issued by the DS are pending, if any (DS-00 §6: until a
    /// commit covers them, application messages are refused).
    pub(crate) ds_removals_pending_since: Option<UnixTimeMs>,
    /// Digests of the latest accepted application messages, oldest first, of the epochs that
    /// still take application messages (wire-format.md §4.8): a resubmitted ciphertext is
    /// `replayed_message`. At most [`crate::DsConfig::app_message_replay_memory`] entries.
    pub(crate) recent_messages: Vec<RecentMessage>,
    /// What the group's writes so far were (wire-format.md §16.2): every write that puts the
    /// sequencer chains it over the records it writes, and every write of the roster or the
    /// activity puts the sequencer. Equal tags mean equal rosters and activity, even in stores
    /// that forked (a failover that lost writes) and reuse a version; the group cache checks
    /// it. All zero in groups stored before it existed.
    pub(crate) state_tag: [u8; STATE_TAG_BYTES],
}

/// The length of [`Sequencer::state_tag`]: 128 bits of SHA-256.
pub(crate) const STATE_TAG_BYTES: usize = 16;

/// The [`Sequencer`] as stored before it had a state tag.
#[derive(TlsDeserializeBytes, TlsSize)]
struct LegacySequencer {
    next_sequence: u64,
    last_active: Vec<UnixTimeMs>,
    ds_removals_pending_since: Option<UnixTimeMs>,
    recent_messages: Vec<RecentMessage>,
}

impl Sequencer {
    /// Decodes a stored sequencer, of either layout (migration on read: the tag of a legacy
    /// record is all zero). The current layout is the legacy one with the tag appended, so no
    /// record decodes as both.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, crate::wire::DecodeError> {
        decode_exact::<Self>(bytes).or_else(|current| {
            let legacy = decode_exact::<LegacySequencer>(bytes).map_err(|_| current)?;
            Ok(Self {
                next_sequence: legacy.next_sequence,
                last_active: legacy.last_active,
                ds_removals_pending_since: legacy.ds_removals_pending_since,
                recent_messages: legacy.recent_messages,
                state_tag: [0; STATE_TAG_BYTES],
            })
        })
    }
}

/// An accepted application message, as the replay check remembers it.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct RecentMessage {
    /// The epoch of the message.
    pub(crate) epoch: u64,
    /// The first [`MESSAGE_DIGEST_BYTES`] bytes of SHA-256 of the PrivateMessage's ciphertext.
    pub(crate) digest: [u8; MESSAGE_DIGEST_BYTES],
}

/// How much of a ciphertext's SHA-256 the replay check keeps: at 128 bits a new message
/// matches one of the `app_message_replay_memory` remembered ones by accident with probability
/// about memory / 2^128, at half the storage of the full hash.
pub(crate) const MESSAGE_DIGEST_BYTES: usize = 16;

impl Sequencer {
    /// Whether an application message with this digest is among the remembered ones.
    pub(crate) fn has_seen(&self, digest: &[u8; MESSAGE_DIGEST_BYTES]) -> bool {
        self.recent_messages.iter().any(|m| &m.digest == digest)
    }

    /// Remembers an accepted application message, keeping at most `limit` of the newest.
    pub(crate) fn remember(
        &mut self,
        epoch: u64,
        digest: [u8; MESSAGE_DIGEST_BYTES],
        limit: usize,
    ) {
        if limit == 0 {
            self.recent_messages.clear();
            return;
        }
        self.recent_messages.push(RecentMessage { epoch, digest });
        let excess = self.recent_messages.len().saturating_sub(limit);
        self.recent_messages.drain(..excess);
    }

    /// Forgets the messages of epochs before `oldest_epoch`: the DS refuses application
    /// messages of those epochs (`wrong_epoch`) before it looks for replays.
    pub(crate) fn forget_messages_before(&mut self, oldest_epoch: u64) {
        self.recent_messages.retain(|m| m.epoch >= oldest_epoch);
    }
}

/// [`crate::storage::RecordKind::Activity`]: when each leaf last sent something, for inactivity
/// removals (DS-00 §6). A message rewrites it only when its sender's stored time is at least
/// [`crate::DsConfig::activity_granularity_ms`] old, so most messages write only the small
/// [`Sequencer`].
#[derive(Debug, Clone, Default, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct Activity {
    /// Indexed by leaf index; blank leaves keep whatever time they had.
    pub(crate) last_active: Vec<UnixTimeMs>,
}

impl Activity {
    /// When `leaf` last sent something, as far as the record knows.
    pub(crate) fn last_active(&self, leaf: u32) -> UnixTimeMs {
        self.last_active
            .get(leaf as usize)
            .copied()
            .unwrap_or(UnixTimeMs(0))
    }

    /// Records that `leaf` sent something at `now`, if its stored time is at least
    /// `granularity_ms` old (or it has none). Whether the record changed.
    pub(crate) fn touch(&mut self, leaf: u32, now: UnixTimeMs, granularity_ms: u64) -> bool {
        if !self.is_stale(leaf, now, granularity_ms) {
            return false;
        }
        let index = leaf as usize;
        if self.last_active.len() <= index {
            self.last_active.resize(index + 1, now);
        }
        self.last_active[index] = now;
        true
    }

    /// Whether [`Activity::touch`] would change the record.
    pub(crate) fn is_stale(&self, leaf: u32, now: UnixTimeMs, granularity_ms: u64) -> bool {
        match self.last_active.get(leaf as usize) {
            Some(stored) => now.since(*stored) >= granularity_ms.max(1),
            None => true,
        }
    }

    /// After a commit: leaves that are new (or re-filled) count as active now.
    pub(crate) fn follow(&mut self, roster: &Roster, fresh: impl Fn(u32) -> bool, now: UnixTimeMs) {
        self.last_active.resize(roster.members.len(), now);
        for (leaf, _) in roster.iter() {
            if fresh(leaf) {
                self.last_active[leaf as usize] = now;
            }
        }
    }
}

/// [`crate::storage::RecordKind::PendingProposals`].
#[derive(Debug, Clone, Default, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct PendingProposals {
    pub(crate) proposals: Vec<PendingProposalRecord>,
}

/// A pending proposal as the DS accepted it.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct PendingProposalRecord {
    pub(crate) proposal_ref: VLBytes,
    pub(crate) hub_accepted_time: UnixTimeMs,
    /// The proposal's MLSMessage as received.
    pub(crate) message: VLBytes,
    /// For a Remove the DS sees through (its own, or a member's self-removal): the signature
    /// key of the client to remove, so the DS can issue a Remove of it in a later epoch if a
    /// commit lets this one lapse. Empty otherwise.
    pub(crate) removal_target: VLBytes,
    /// Who issued it, which decides whether commits must include it (wire-format.md §4.3.3).
    pub(crate) origin: ProposalOrigin,
}

/// Who issued a pending proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
pub(crate) enum ProposalOrigin {
    /// A member's `proposals(15)`. Commits may leave it out; it lapses with the epoch (the DS
    /// cannot check its `membership_tag`, so members may refuse it).
    Member = 1,
    /// A member's `self_remove_client(7)`. Optional like any member proposal, but if a commit
    /// lets it lapse the DS issues the Remove itself in the new epoch.
    SelfRemoval = 2,
    /// The DS's own proposal (a removal or a signing-key rotation): commits must include it
    /// under [`crate::PendingProposalPolicy`] (draft-robert-mimi-delivery-service §5.1).
    Hub = 3,
}

impl PendingProposalRecord {
    /// Whether commits must include it (subject to the pending-proposal policy).
    pub(crate) fn is_mandatory(&self) -> bool {
        self.origin == ProposalOrigin::Hub
    }
}

/// The user authentication key a leaf registers, if any, once its proof of possession verifies
/// (wire-format.md §3.5): `SignWithLabel(user_auth_key, "MIMI DS UserKeyProof",
/// leaf.signature_key)`.
fn user_auth_key_of(
    leaf: &LeafNode,
    ciphersuite: Ciphersuite,
    checks: &dyn LeafChecks,
) -> Result<Option<Vec<u8>>, RejectReason> {
    let Some(ext) = leaf.extensions().unknown(USER_AUTH_KEY_EXTENSION_TYPE) else {
        return Ok(None);
    };
    // Rule R-LEAF-4.
    let registration = decode_exact::<UserAuthKeyExtension>(&ext.0)
        .map_err(|e| RejectReason::InvalidLeafNode(InvalidLeafNode::UserKeyUndecodable(e)))?;
    // The leaf's signature key decoded as a `VLBytes`, so it encodes again; refused like an
    // undecodable extension if it did not.
    let content =
        UserAuthKeyExtension::proof_content(leaf.signature_key().as_slice()).map_err(|e| {
            RejectReason::InvalidLeafNode(InvalidLeafNode::UserKeyUndecodable(
                crate::wire::DecodeError::Malformed {
                    type_name: "UserKeyProofContent",
                    reason: format!("{e:?}"),
                },
            ))
        })?;
    if !checks.verifies(
        ciphersuite,
        registration.user_auth_key.as_slice(),
        &content,
        registration.proof.as_slice(),
    ) {
        // Rule R-LEAF-6.
        return Err(RejectReason::InvalidUserKeyProof);
    }
    Ok(Some(registration.user_auth_key.into()))
}

/// The queue configuration a leaf publishes in its [`QUEUE_CONFIG_EXTENSION_TYPE`] extension.
pub(crate) fn queue_config_of(leaf: &LeafNode) -> Result<ClientQueueConfig, RejectReason> {
    // Rules R-LEAF-2, R-LEAF-3.
    let ext = leaf
        .extensions()
        .unknown(QUEUE_CONFIG_EXTENSION_TYPE)
        .ok_or(RejectReason::InvalidLeafNode(
            InvalidLeafNode::MissingQueueConfig,
        ))?;
    decode_exact::<ClientQueueConfig>(&ext.0)
        .map_err(|e| RejectReason::InvalidLeafNode(InvalidLeafNode::QueueConfigUndecodable(e)))
}

/// What a roster rebuild needs from the service to check new leaves.
pub(crate) trait LeafChecks {
    /// The user of a leaf: the deployment's [`crate::CredentialValidator`], applied to the
    /// leaf's credential.
    fn identify(&self, leaf: &LeafNode) -> Result<Vec<u8>, RejectReason>;

    /// Whether `signature` over `content` verifies with `public_key` under the signature
    /// scheme of `ciphersuite`.
    fn verifies(
        &self,
        ciphersuite: Ciphersuite,
        public_key: &[u8],
        content: &[u8],
        signature: &[u8],
    ) -> bool;
}

impl Roster {
    /// The roster of a freshly imported group: every leaf must carry an acceptable credential
    /// and publish its queue configuration.
    pub(crate) fn from_group(
        group: &PublicGroup,
        checks: &dyn LeafChecks,
    ) -> Result<Self, RejectReason> {
        Self::rebuild(group, None, &[], &[], checks)
    }

    /// The roster after a commit was merged into `group`.
    ///
    /// * A leaf that held the same member before (not in `replaced`, i.e. not removed and
    ///   re-filled by this commit) keeps its user and its stored queue configuration, which
    ///   `update_queue_info` may have changed. If its leaf node was replaced (`changed`: an
    ///   update path or Update proposal), the commit rules have already checked that its new
    ///   credential names the same user (DS-04 §"Update client";
    ///   `commit_rules::check_changed_clients_keep_their_user`): the rebuild only builds.
    /// * A new leaf is validated and takes its queue configuration from its leaf node.
    /// * A new or changed leaf that registers a user key (wire-format.md §3.5) must prove
    ///   possession of it, and the key must not be registered to another user: a key belongs to
    ///   the first user that registered it, in leaf order within one commit.
    pub(crate) fn rebuild(
        group: &PublicGroup,
        previous: Option<&Self>,
        replaced: &[LeafNodeIndex],
        changed: &[LeafNodeIndex],
        checks: &dyn LeafChecks,
    ) -> Result<Self, RejectReason> {
        // Rules R-PSEUDO-6 to R-PSEUDO-9 (wire-format.md §14.1).
        crate::pseudonym::hub::check_group(group)?;
        let identify = |leaf: &LeafNode| checks.identify(leaf);
        let mut members: Vec<Option<MemberEntry>> = Vec::new();
        let mut user_keys: Vec<UserKey> = previous.map(|p| p.user_keys.clone()).unwrap_or_default();
        for member in group.members() {
            let index = member.index.usize();
            if members.len() <= index {
                members.resize(index + 1, None);
            }
            let leaf = group
                .leaf(member.index)
                // Rule R-LEAF-5.
                .ok_or(RejectReason::InvalidLeafNode(
                    InvalidLeafNode::MemberWithoutLeaf,
                ))?;
            let kept = previous
                .filter(|_| !replaced.contains(&member.index))
                .and_then(|p| p.members.get(index).cloned().flatten());
            let fresh = kept.is_none() || changed.contains(&member.index);
            let entry = match kept {
                Some(mut entry) => {
                    entry.signature_key = member.signature_key.into();
                    entry
                }
                None => MemberEntry {
                    signature_key: member.signature_key.into(),
                    queue_config: queue_config_of(leaf)?,
                    user: identify(leaf)?.into(),
                },
            };
            if fresh {
                if let Some(key) = user_auth_key_of(leaf, group.ciphersuite(), checks)? {
                    // Otherwise the key's `user_key_hash` would name two users, and the
                    // other user's requests could act for this one (wire-format.md §3.5).
                    if user_keys
                        .iter()
                        .any(|k| k.key.as_slice() == key && k.user != entry.user)
                    {
                        // Rule R-LEAF-7.
                        return Err(RejectReason::UserKeyOfAnotherUser);
                    }
                    user_keys.retain(|k: &UserKey| k.user != entry.user);
                    user_keys.push(UserKey {
                        user: entry.user.clone(),
                        key: key.into(),
                    });
                }
            }
            members[index] = Some(entry);
        }
        // A user with no client left has no key either.
        user_keys.retain(|k| members.iter().flatten().any(|m| m.user == k.user));
        let roster = Self {
            ciphersuite: group.ciphersuite() as u16,
            epoch: group.group_context().epoch().as_u64(),
            members,
            user_keys,
            successor: previous.and_then(|p| p.successor.clone()),
            room_parameters: previous
                .map(|p| p.room_parameters.clone())
                .unwrap_or_default(),
        };
        // A leaf that took its queue configuration from its leaf node (new, or re-filled).
        roster.refuse_shared_queue_configs(|leaf| {
            previous.and_then(|p| p.member(leaf)).is_none()
                || replaced.contains(&LeafNodeIndex::new(leaf))
        })?;
        Ok(roster)
    }

    /// wire-format.md §6.1: the leaves for which `fresh` holds (whose queue configuration was
    /// just set) may not share it with any other member. Otherwise the DS would deliver one
    /// client's traffic to another's queue, and a fanout rule keyed on queues could be steered
    /// by copying a member's published configuration into one's own leaf. Equality is on the
    /// bytes: the `queue` is opaque (sealed) to the DS. Members kept from earlier epochs are
    /// only compared with fresh ones, so a group stored before this rule is not wedged by a
    /// duplicate it already holds.
    pub(crate) fn refuse_shared_queue_configs(
        &self,
        fresh: impl Fn(u32) -> bool,
    ) -> Result<(), RejectReason> {
        let mut users: HashMap<&ClientQueueConfig, usize> = HashMap::new();
        for (_, member) in self.iter() {
            *users.entry(&member.queue_config).or_default() += 1;
        }
        match self
            .iter()
            .find(|(leaf, m)| fresh(*leaf) && users.get(&m.queue_config).copied() > Some(1))
        {
            // Rule R-LEAF-9.
            Some((leaf, _)) => Err(RejectReason::SharedQueueConfig { leaf }),
            None => Ok(()),
        }
    }

    /// The leaves of a user's clients.
    pub(crate) fn leaves_of(&self, user: &[u8]) -> impl Iterator<Item = u32> + '_ {
        let user = user.to_vec();
        self.iter()
            .filter(move |(_, m)| m.user.as_slice() == user)
            .map(|(leaf, _)| leaf)
    }

    /// The member at a leaf, if the leaf is occupied.
    pub(crate) fn member(&self, leaf: u32) -> Option<&MemberEntry> {
        self.members.get(leaf as usize).and_then(Option::as_ref)
    }

    /// All members with their leaf indices.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &MemberEntry)> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i as u32, m)))
    }
}
