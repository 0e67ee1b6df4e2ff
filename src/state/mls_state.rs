//! The openmls `PublicGroup` of a group, persisted as one record.
//!
//! openmls persists a `PublicGroup` only through a `PublicStorageProvider` whose entities are
//! serde types (docs/openmls-notes.md O7). [`MlsStateBuffer`] is such a provider for exactly one
//! group: `PublicGroup::load` reads from it and `merge_commit` writes into it, and the whole
//! buffer is encoded as the `MlsState` record with postcard, a compact, stable binary serde
//! format (JSON would store about five times the TLS-encoded tree, see BENCHMARKS.md).
//!
//! Each entity is kept encoded as [`Encoded`] bytes, which postcard writes exactly as it writes
//! a `Vec<u8>` (a varint length, then the bytes) but copies in one piece: decoding and
//! re-encoding the record no longer visits the tree's bytes one by one (BENCHMARKS.md "Issue
//! 14: where a 4000-member commit's time goes").

use std::cell::RefCell;

use openmls::prelude::{GroupId, PublicGroup};
use openmls_traits::public_storage::PublicStorageProvider;
use openmls_traits::storage::{traits, CURRENT_VERSION};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

fn encode<T: Serialize>(value: &T) -> Result<Encoded, MlsStateError> {
    to_bytes(value).map(Encoded)
}

/// One postcard-encoded entity. Serialized as serde bytes, which postcard encodes exactly like
/// the `Vec<u8>` sequence records were written with before (a varint length, then each byte
/// as itself), so old and new records are the same bytes; but the bytes are copied in one
/// piece instead of being visited one at a time (on a 4000-member group's ~900 kB tree, that
/// was 4% of a commit's instructions).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Encoded(Vec<u8>);

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(EncodedVisitor)
    }
}

struct EncodedVisitor;

impl<'de> Visitor<'de> for EncodedVisitor {
    type Value = Encoded;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an encoded openmls entity")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Encoded, E> {
        Ok(Encoded(bytes.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Encoded, E> {
        Ok(Encoded(bytes))
    }

    // Formats without a bytes type hand the bytes over as a sequence.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Encoded, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(Encoded(bytes))
    }
}

/// The encoded entities of one group's `PublicGroup`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entities {
    tree: Option<Encoded>,
    context: Option<Encoded>,
    interim_transcript_hash: Option<Encoded>,
    confirmation_tag: Option<Encoded>,
    /// `(proposal_ref, queued_proposal)` in insertion order.
    proposals: Vec<(Encoded, Encoded)>,
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
        self.entities.borrow_mut().tree = Some(encode(tree)?);
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
        self.entities.borrow_mut().interim_transcript_hash = Some(encode(hash)?);
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
        self.entities.borrow_mut().context = Some(encode(context)?);
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
        self.entities.borrow_mut().confirmation_tag = Some(encode(tag)?);
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
        let key = encode(proposal_ref)?;
        let value = encode(proposal)?;
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
            .map(|(k, v)| Ok((from_bytes(&k.0)?, from_bytes(&v.0)?)))
            .collect()
    }

    fn tree<G: traits::GroupId<CURRENT_VERSION>, T: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        _group_id: &G,
    ) -> Result<Option<T>, MlsStateError> {
        self.entities
            .borrow()
            .tree
            .as_ref()
            .map(|encoded| from_bytes(&encoded.0))
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
            .as_ref()
            .map(|encoded| from_bytes(&encoded.0))
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
            .as_ref()
            .map(|encoded| from_bytes(&encoded.0))
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
            .as_ref()
            .map(|encoded| from_bytes(&encoded.0))
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
        let key = encode(proposal_ref)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout `MlsState` records were written with before [`Encoded`]: every entity a
    /// `Vec<u8>` sequence.
    #[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct SequenceEntities {
        tree: Option<Vec<u8>>,
        context: Option<Vec<u8>>,
        interim_transcript_hash: Option<Vec<u8>>,
        confirmation_tag: Option<Vec<u8>>,
        proposals: Vec<(Vec<u8>, Vec<u8>)>,
    }

    /// Stored records stay readable and are written as the same bytes: `Encoded` must encode
    /// exactly as the `Vec<u8>` it replaced (lengths past one varint byte included).
    #[test]
    fn encoded_entities_keep_the_sequence_layout() {
        let tree: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let sequence = SequenceEntities {
            tree: Some(tree.clone()),
            context: Some(vec![1, 2, 3]),
            interim_transcript_hash: None,
            confirmation_tag: Some(Vec::new()),
            proposals: vec![(vec![9; 40], vec![7; 300])],
        };
        let encoded = Entities {
            tree: Some(Encoded(tree)),
            context: Some(Encoded(vec![1, 2, 3])),
            interim_transcript_hash: None,
            confirmation_tag: Some(Encoded(Vec::new())),
            proposals: vec![(Encoded(vec![9; 40]), Encoded(vec![7; 300]))],
        };
        let record = to_bytes(&sequence).expect("encode");
        assert_eq!(to_bytes(&encoded).expect("encode"), record);
        assert_eq!(from_bytes::<Entities>(&record).expect("decode"), encoded);
        assert_eq!(
            from_bytes::<SequenceEntities>(&to_bytes(&encoded).expect("encode")).expect("decode"),
            sequence
        );
    }
}
