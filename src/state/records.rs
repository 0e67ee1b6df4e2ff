//! TLS-encoded group records.

use openmls::prelude::{LeafNode, LeafNodeIndex, PublicGroup};
use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use crate::error::RejectReason;
use crate::wire::{
    decode_exact, ClientQueueConfig, QUEUE_CONFIG_EXTENSION_TYPE, USER_AUTH_KEY_EXTENSION_TYPE,
};

/// [`crate::storage::RecordKind::Reservation`]: a reserved group ID. The expiry comes first so
/// backends can expire reservations without decoding more (storage contract).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct Reservation {
    pub(crate) expires_at_ms: u64,
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
    /// When each leaf last sent something (ms), for inactivity removals (DS-00 §6).
    pub(crate) last_active_ms: Vec<u64>,
    /// Since when Remove proposals issued by the DS are pending, if any (DS-00 §6: until a
    /// commit covers them, application messages are refused).
    pub(crate) ds_removals_pending_since: Option<u64>,
}

impl Sequencer {
    /// Records that `leaf` sent something at `now_ms`.
    pub(crate) fn touch(&mut self, leaf: u32, now_ms: u64) {
        let index = leaf as usize;
        if self.last_active_ms.len() <= index {
            self.last_active_ms.resize(index + 1, now_ms);
        }
        self.last_active_ms[index] = now_ms;
    }

    /// After a commit: leaves that are new (or re-filled) count as active now.
    pub(crate) fn follow(&mut self, roster: &Roster, fresh: impl Fn(u32) -> bool, now_ms: u64) {
        self.last_active_ms.resize(roster.members.len(), now_ms);
        for (leaf, _) in roster.iter() {
            if fresh(leaf) {
                self.last_active_ms[leaf as usize] = now_ms;
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
    pub(crate) hub_accepted_time: u64,
    /// The proposal's MLSMessage as received.
    pub(crate) message: VLBytes,
    /// For a Remove the DS issued itself: the signature key of the client to remove, so the
    /// DS can issue it again in a later epoch if a commit lets it lapse. Empty otherwise.
    pub(crate) ds_removal_target: VLBytes,
}

/// The user authentication key a leaf registers, if any.
fn user_auth_key_of(leaf: &LeafNode) -> Result<Option<Vec<u8>>, RejectReason> {
    leaf.extensions()
        .unknown(USER_AUTH_KEY_EXTENSION_TYPE)
        .map(|ext| {
            decode_exact::<VLBytes>(&ext.0)
                .map(Vec::from)
                .map_err(|e| RejectReason::InvalidLeafNode(format!("user authentication key: {e}")))
        })
        .transpose()
}

/// The queue configuration a leaf publishes in its [`QUEUE_CONFIG_EXTENSION_TYPE`] extension.
pub(crate) fn queue_config_of(leaf: &LeafNode) -> Result<ClientQueueConfig, RejectReason> {
    let ext = leaf.extensions().unknown(QUEUE_CONFIG_EXTENSION_TYPE).ok_or_else(|| {
        RejectReason::InvalidLeafNode(format!(
            "leaf lacks the client queue configuration extension 0x{QUEUE_CONFIG_EXTENSION_TYPE:04x}"
        ))
    })?;
    decode_exact::<ClientQueueConfig>(&ext.0)
        .map_err(|e| RejectReason::InvalidLeafNode(format!("queue configuration: {e}")))
}

/// How a roster rebuild learns the user of a leaf: the deployment's
/// [`crate::CredentialValidator`], applied to the leaf's credential.
pub(crate) type IdentifyLeaf<'a> = &'a dyn Fn(&LeafNode) -> Result<Vec<u8>, RejectReason>;

impl Roster {
    /// The roster of a freshly imported group: every leaf must carry an acceptable credential
    /// and publish its queue configuration.
    pub(crate) fn from_group(
        group: &PublicGroup,
        identify: IdentifyLeaf<'_>,
    ) -> Result<Self, RejectReason> {
        Self::rebuild(group, None, &[], &[], identify)
    }

    /// The roster after a commit was merged into `group`.
    ///
    /// * A leaf that held the same member before (not in `replaced`, i.e. not removed and
    ///   re-filled by this commit) keeps its user and its stored queue configuration, which
    ///   `update_queue_info` may have changed. If its leaf node was replaced (`changed`: an
    ///   update path or Update proposal), the new credential is validated again and must name
    ///   the same user (DS-04 §"Update client").
    /// * A new leaf is validated and takes its queue configuration from its leaf node.
    pub(crate) fn rebuild(
        group: &PublicGroup,
        previous: Option<&Self>,
        replaced: &[LeafNodeIndex],
        changed: &[LeafNodeIndex],
        identify: IdentifyLeaf<'_>,
    ) -> Result<Self, RejectReason> {
        let mut members: Vec<Option<MemberEntry>> = Vec::new();
        let mut user_keys: Vec<UserKey> = previous.map(|p| p.user_keys.clone()).unwrap_or_default();
        for member in group.members() {
            let index = member.index.usize();
            if members.len() <= index {
                members.resize(index + 1, None);
            }
            let leaf = group
                .leaf(member.index)
                .ok_or_else(|| RejectReason::InvalidLeafNode("member without leaf".into()))?;
            let kept = previous
                .filter(|_| !replaced.contains(&member.index))
                .and_then(|p| p.members.get(index).cloned().flatten());
            let fresh = kept.is_none() || changed.contains(&member.index);
            let entry = match kept {
                Some(mut entry) => {
                    if changed.contains(&member.index) && identify(leaf)? != entry.user.as_slice() {
                        return Err(RejectReason::NotAllowed(
                            "a credential change may not move a client to another user".into(),
                        ));
                    }
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
                if let Some(key) = user_auth_key_of(leaf)? {
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
        Ok(Self {
            ciphersuite: group.ciphersuite() as u16,
            epoch: group.group_context().epoch().as_u64(),
            members,
            user_keys,
            successor: previous.and_then(|p| p.successor.clone()),
        })
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
