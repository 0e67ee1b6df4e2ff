//! The openmls `PublicGroup` of a group, persisted as one record.
//!
//! openmls persists a `PublicGroup` only through a `PublicStorageProvider` whose entities are
//! serde types (docs/openmls-notes.md O7). [`MlsStateBuffer`] is such a provider for exactly one
//! group: `PublicGroup::load` reads from it and `merge_commit` writes into it, and the whole
//! buffer is encoded as the `MlsState` record with postcard, a compact, stable binary serde
//! format (JSON would store about five times the TLS-encoded tree, see BENCHMARKS.md).

use std::cell::RefCell;

use openmls::prelude::{GroupId, PublicGroup};
use openmls_traits::public_storage::PublicStorageProvider;
use openmls_traits::storage::{traits, CURRENT_VERSION};
use serde::{Deserialize, Serialize};

/// An error of the in-process openmls storage: an entity that failed to (de)serialize.
#[derive(Debug, thiserror::Error)]
#[error("openmls state codec: {0}")]
pub(crate) struct MlsStateError(String);

fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, MlsStateError> {
    postcard::to_allocvec(value).map_err(|e| MlsStateError(e.to_string()))
}

fn from_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MlsStateError> {
    postcard::from_bytes(bytes).map_err(|e| MlsStateError(e.to_string()))
}

/// The encoded entities of one group's `PublicGroup`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Entities {
    tree: Option<Vec<u8>>,
    context: Option<Vec<u8>>,
    interim_transcript_hash: Option<Vec<u8>>,
    confirmation_tag: Option<Vec<u8>>,
    /// `(proposal_ref, queued_proposal)` in insertion order.
    proposals: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A single-group openmls `PublicStorageProvider` backed by encoded entities.
#[derive(Debug, Default)]
pub(crate) struct MlsStateBuffer {
    entities: RefCell<Entities>,
}

impl MlsStateBuffer {
    /// Decodes an `MlsState` record.
    pub(crate) fn from_record(record: &[u8]) -> Result<Self, MlsStateError> {
        Ok(Self {
            entities: RefCell::new(from_bytes(record)?),
        })
    }

    /// Encodes the buffer as an `MlsState` record.
    pub(crate) fn to_record(&self) -> Result<Vec<u8>, MlsStateError> {
        to_bytes(&*self.entities.borrow())
    }

    /// Loads the group held in this buffer.
    pub(crate) fn load_group(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<PublicGroup>, MlsStateError> {
        PublicGroup::load(self, group_id)
    }
}

impl PublicStorageProvider<CURRENT_VERSION> for MlsStateBuffer {
    type PublicError = MlsStateError;

    fn write_tree<G: traits::GroupId<CURRENT_VERSION>, T: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        _group_id: &G,
        tree: &T,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().tree = Some(to_bytes(tree)?);
        Ok(())
    }

    fn write_interim_transcript_hash<
        G: traits::GroupId<CURRENT_VERSION>,
        H: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
        hash: &H,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().interim_transcript_hash = Some(to_bytes(hash)?);
        Ok(())
    }

    fn write_context<
        G: traits::GroupId<CURRENT_VERSION>,
        C: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
        context: &C,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().context = Some(to_bytes(context)?);
        Ok(())
    }

    fn write_confirmation_tag<
        G: traits::GroupId<CURRENT_VERSION>,
        C: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
        tag: &C,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().confirmation_tag = Some(to_bytes(tag)?);
        Ok(())
    }

    fn queue_proposal<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
        P: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
        proposal_ref: &R,
        proposal: &P,
    ) -> Result<(), MlsStateError> {
        let key = to_bytes(proposal_ref)?;
        let value = to_bytes(proposal)?;
        let mut entities = self.entities.borrow_mut();
        entities.proposals.retain(|(k, _)| *k != key);
        entities.proposals.push((key, value));
        Ok(())
    }

    fn queued_proposals<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
        P: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
    ) -> Result<Vec<(R, P)>, MlsStateError> {
        let entities = self.entities.borrow();
        entities
            .proposals
            .iter()
            .map(|(k, v)| Ok((from_bytes(k)?, from_bytes(v)?)))
            .collect()
    }

    fn tree<G: traits::GroupId<CURRENT_VERSION>, T: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        _group_id: &G,
    ) -> Result<Option<T>, MlsStateError> {
        self.entities
            .borrow()
            .tree
            .as_deref()
            .map(from_bytes)
            .transpose()
    }

    fn group_context<
        G: traits::GroupId<CURRENT_VERSION>,
        C: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
    ) -> Result<Option<C>, MlsStateError> {
        self.entities
            .borrow()
            .context
            .as_deref()
            .map(from_bytes)
            .transpose()
    }

    fn interim_transcript_hash<
        G: traits::GroupId<CURRENT_VERSION>,
        H: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
    ) -> Result<Option<H>, MlsStateError> {
        self.entities
            .borrow()
            .interim_transcript_hash
            .as_deref()
            .map(from_bytes)
            .transpose()
    }

    fn confirmation_tag<
        G: traits::GroupId<CURRENT_VERSION>,
        C: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
    ) -> Result<Option<C>, MlsStateError> {
        self.entities
            .borrow()
            .confirmation_tag
            .as_deref()
            .map(from_bytes)
            .transpose()
    }

    fn delete_tree<G: traits::GroupId<CURRENT_VERSION>>(&self, _: &G) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().tree = None;
        Ok(())
    }

    fn delete_confirmation_tag<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _: &G,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().confirmation_tag = None;
        Ok(())
    }

    fn delete_context<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _: &G,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().context = None;
        Ok(())
    }

    fn delete_interim_transcript_hash<G: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _: &G,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().interim_transcript_hash = None;
        Ok(())
    }

    fn remove_proposal<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
        proposal_ref: &R,
    ) -> Result<(), MlsStateError> {
        let key = to_bytes(proposal_ref)?;
        self.entities
            .borrow_mut()
            .proposals
            .retain(|(k, _)| *k != key);
        Ok(())
    }

    fn clear_proposal_queue<
        G: traits::GroupId<CURRENT_VERSION>,
        R: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &G,
    ) -> Result<(), MlsStateError> {
        self.entities.borrow_mut().proposals.clear();
        Ok(())
    }
}
