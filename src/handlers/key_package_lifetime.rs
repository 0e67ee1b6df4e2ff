//! KeyPackage lifetimes, checked against the DS's `now` (RFC 9420 §7.2 `Lifetime`, §10.1:
//! "MUST NOT use the data in a KeyPackage for any processing before the not_before date, or
//! after the not_after date"; wire-format.md §4.2 step 11, §4.3.3 step 10, §4.10 step 11).
//!
//! openmls checks the same lifetimes against the system clock (docs/openmls-notes.md O5),
//! which the DS never reads. So these checks run first, on the messages as received: the
//! verdict follows `now`, and a KeyPackage that is expired or not yet valid at `now` gets the
//! specific code `key_package_lifetime` instead of whatever openmls would answer (or its
//! acceptance, if the system clock disagrees with `now`).
//!
//! openmls keeps the fields of its incoming KeyPackage and LeafNode types private, so the
//! lifetime is read from their RFC 9420 encoding: a `LeafNode` starts with
//! `encryption_key<V>`, `signature_key<V>`, `Credential`, `Capabilities`, then
//! `leaf_node_source` (§7.2), which holds the `Lifetime` for a KeyPackage's leaf.

use openmls::prelude::{
    Capabilities, ContentType, Credential, Lifetime, ProposalIn, ProposalOrRefIn, RatchetTreeIn,
    Sender,
};
use openmls::treesync::LeafNodeSource;
use tls_codec::{DeserializeBytes, Serialize as _, VLBytes};

use crate::error::{InvalidMlsMessage, MlsStructure, RejectReason};
use crate::state::PendingProposals;
use crate::time::UnixTimeMs;
use crate::wire::MlsMessageBytes;

/// The `MLSMessage` header before a `PublicMessage`: `version`, `wire_format` (RFC 9420 §6).
const MLS_MESSAGE_HEADER_LEN: usize = 4;

/// Input openmls already parsed does not parse here: a bug in this module, not the peer's fault,
/// but refusing is the safe answer.
fn undecodable(structure: MlsStructure, e: impl std::fmt::Display) -> RejectReason {
    // Rule R-MLS-3.
    RejectReason::InvalidMlsMessage(InvalidMlsMessage::Undecodable {
        structure,
        detail: e.to_string(),
    })
}

/// RFC 9420 §7.2: a lifetime includes `now` if `not_before <= now <= not_after` (seconds; `now`
/// in ms is compared with the bounds scaled to ms, so a lifetime ends after its last second).
fn check(lifetime: &Lifetime, now: UnixTimeMs) -> Result<(), RejectReason> {
    let starts = lifetime.not_before().saturating_mul(1000);
    let ends = lifetime.not_after().saturating_mul(1000);
    if (starts..=ends).contains(&now.as_millis()) {
        Ok(())
    } else {
        // Rule R-LEAF-8.
        Err(RejectReason::KeyPackageLifetime {
            not_before: lifetime.not_before(),
            not_after: lifetime.not_after(),
            now_ms: now.as_millis(),
        })
    }
}

/// The lifetime in an encoded `LeafNode`, if its source is a KeyPackage.
pub(crate) fn leaf_node_lifetime(leaf_node: &[u8]) -> Result<Option<Lifetime>, RejectReason> {
    let read = |e| undecodable(MlsStructure::LeafNode, e);
    let (_encryption_key, rest) = VLBytes::tls_deserialize_bytes(leaf_node).map_err(read)?;
    let (_signature_key, rest) = VLBytes::tls_deserialize_bytes(rest).map_err(read)?;
    let (_credential, rest) = Credential::tls_deserialize_bytes(rest).map_err(read)?;
    let (_capabilities, rest) = Capabilities::tls_deserialize_bytes(rest).map_err(read)?;
    let (source, _) = LeafNodeSource::tls_deserialize_bytes(rest).map_err(read)?;
    Ok(match source {
        LeafNodeSource::KeyPackage(lifetime) => Some(lifetime),
        _ => None,
    })
}

/// The KeyPackage of an Add proposal, if `proposal` is one, must be valid at `now`.
fn check_proposal(proposal: &ProposalIn, now: UnixTimeMs) -> Result<(), RejectReason> {
    let ProposalIn::Add(add) = proposal else {
        return Ok(());
    };
    // `Add { KeyPackage key_package; }`; KeyPackage (§10): version, cipher_suite,
    // init_key<V>, leaf_node, ...
    let encoded = add
        .tls_serialize_detached()
        .map_err(|e| undecodable(MlsStructure::AddProposal, e))?;
    let read = |e| undecodable(MlsStructure::KeyPackage, e);
    let (_version, rest) = u16::tls_deserialize_bytes(&encoded).map_err(read)?;
    let (_cipher_suite, rest) = u16::tls_deserialize_bytes(rest).map_err(read)?;
    let (_init_key, rest) = VLBytes::tls_deserialize_bytes(rest).map_err(read)?;
    match leaf_node_lifetime(rest)? {
        Some(lifetime) => check(&lifetime, now),
        // A KeyPackage's leaf always has a lifetime; openmls refuses it otherwise.
        None => Ok(()),
    }
}

/// The content type of a `PublicMessage`'s `FramedContent` (RFC 9420 §6) and the bytes after it
/// (the proposal or commit). `message` is an `MLSMessage` carrying a PublicMessage.
fn framed_content(message: &[u8]) -> Result<(ContentType, &[u8]), RejectReason> {
    let read = |e| undecodable(MlsStructure::PublicMessage, e);
    let content = message
        .get(MLS_MESSAGE_HEADER_LEN..)
        .ok_or_else(|| read(tls_codec::Error::EndOfStream))?;
    let (_group_id, rest) = VLBytes::tls_deserialize_bytes(content).map_err(read)?;
    let (_epoch, rest) = u64::tls_deserialize_bytes(rest).map_err(read)?;
    let (_sender, rest) = Sender::tls_deserialize_bytes(rest).map_err(read)?;
    let (_authenticated_data, rest) = VLBytes::tls_deserialize_bytes(rest).map_err(read)?;
    let (content_type, rest) = ContentType::tls_deserialize_bytes(rest).map_err(read)?;
    Ok((content_type, rest))
}

/// A standalone proposal (`proposals(15)`): if it is an Add, its KeyPackage must be valid at
/// `now`. `message` is an `MLSMessage` carrying a PublicMessage.
pub(crate) fn check_proposal_message(
    message: &MlsMessageBytes,
    now: UnixTimeMs,
) -> Result<(), RejectReason> {
    match framed_content(message.as_bytes())? {
        (ContentType::Proposal, body) => {
            let (proposal, _) = ProposalIn::tls_deserialize_bytes(body)
                .map_err(|e| undecodable(MlsStructure::Proposal, e))?;
            check_proposal(&proposal, now)
        }
        _ => Ok(()),
    }
}

/// A commit: every Add it carries by value, and every pending Add proposal it includes by
/// reference (they were valid when proposed, but may have expired since), must have a
/// KeyPackage valid at `now`. `message` is an `MLSMessage` carrying a PublicMessage.
pub(crate) fn check_commit(
    message: &MlsMessageBytes,
    pending: &PendingProposals,
    now: UnixTimeMs,
) -> Result<(), RejectReason> {
    let (ContentType::Commit, body) = framed_content(message.as_bytes())? else {
        return Ok(());
    };
    // Commit { ProposalOrRef proposals<V>; optional<UpdatePath> path; }
    let (proposals, _) = Vec::<ProposalOrRefIn>::tls_deserialize_bytes(body)
        .map_err(|e| undecodable(MlsStructure::Commit, e))?;
    for proposal in &proposals {
        match proposal {
            ProposalOrRefIn::Proposal(proposal) => check_proposal(proposal, now)?,
            ProposalOrRefIn::Reference(reference) => {
                // A reference to no pending proposal is openmls's to refuse.
                let stored = pending
                    .proposals
                    .iter()
                    .find(|p| p.proposal_ref.as_slice() == reference.as_slice());
                if let Some(stored) = stored {
                    let message = MlsMessageBytes::from_bytes(stored.message.as_slice().to_vec())
                        .map_err(|e| undecodable(MlsStructure::StoredProposal, e))?;
                    check_proposal_message(&message, now)?;
                }
            }
        }
    }
    Ok(())
}

/// `create_group`: every leaf of the tree whose source is a KeyPackage (the creator's, and any
/// added before the group was registered) must be valid at `now`.
pub(crate) fn check_tree(tree: &RatchetTreeIn, now: UnixTimeMs) -> Result<(), RejectReason> {
    for leaf in tree.leaves() {
        let encoded = leaf
            .tls_serialize_detached()
            .map_err(|e| undecodable(MlsStructure::LeafNode, e))?;
        if let Some(lifetime) = leaf_node_lifetime(&encoded)? {
            check(&lifetime, now)?;
        }
    }
    Ok(())
}
