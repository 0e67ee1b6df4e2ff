//! TLS-encoded group records.

use openmls::prelude::{LeafNode, LeafNodeIndex, PublicGroup};
use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use crate::error::RejectReason;
use crate::wire::{decode_exact, ClientQueueConfig, QUEUE_CONFIG_EXTENSION_TYPE};

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
}

/// A member's entry in the [`Roster`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct MemberEntry {
    pub(crate) signature_key: VLBytes,
    pub(crate) queue_config: ClientQueueConfig,
}

/// [`crate::storage::RecordKind::Sequencer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub(crate) struct Sequencer {
    pub(crate) next_sequence: u64,
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

impl Roster {
    /// The roster of a freshly imported group: every leaf must publish its queue configuration.
    pub(crate) fn from_group(group: &PublicGroup) -> Result<Self, RejectReason> {
        Self::rebuild(group, None, &[])
    }

    /// The roster after a commit was merged into `group`. A leaf that held the same member
    /// before keeps its stored queue configuration (which `update_queue_info` may have
    /// changed); a leaf that is new, or was in `replaced` (removed and re-filled by the same
    /// commit), takes the configuration from its leaf node.
    pub(crate) fn rebuild(
        group: &PublicGroup,
        previous: Option<&Self>,
        replaced: &[LeafNodeIndex],
    ) -> Result<Self, RejectReason> {
        let mut members: Vec<Option<MemberEntry>> = Vec::new();
        for member in group.members() {
            let index = member.index.usize();
            if members.len() <= index {
                members.resize(index + 1, None);
            }
            let kept = previous
                .filter(|_| !replaced.contains(&member.index))
                .and_then(|p| p.members.get(index).cloned().flatten());
            let queue_config = match kept {
                Some(entry) => entry.queue_config,
                None => {
                    let leaf = group.leaf(member.index).ok_or_else(|| {
                        RejectReason::InvalidLeafNode("member without leaf".into())
                    })?;
                    queue_config_of(leaf)?
                }
            };
            members[index] = Some(MemberEntry {
                signature_key: member.signature_key.into(),
                queue_config,
            });
        }
        Ok(Self {
            ciphersuite: group.ciphersuite() as u16,
            epoch: group.group_context().epoch().as_u64(),
            members,
        })
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
