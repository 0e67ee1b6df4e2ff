//! Checks on GroupInfos sent by clients (DS-03..06 `MLSGroupUpdate`; RFC 9420 §12.4.3).

use openmls::messages::group_info::{GroupInfo, VerifiableGroupInfo};
use openmls::prelude::{
    Extensions, LeafNodeIndex, OpenMlsSignaturePublicKey, PublicGroup, Signature, Verifiable,
};
use openmls::prelude::{ExternalSender, MlsMessageBodyIn};
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{DeserializeBytes, Serialize as _};

use crate::config::DsIdentity;
use crate::error::RejectReason;
use crate::error::{InvalidGroupInfo, InvalidMessageType};
use crate::wire::{
    GroupInfoOption, MlsMessageBytes, RatchetTreePresence, GROUP_INFO_MESSAGE_HEADER,
};

/// Extracts the GroupInfo from an MLSMessage.
pub(crate) fn verifiable_group_info(
    message: &MlsMessageBytes,
) -> Result<VerifiableGroupInfo, RejectReason> {
    match message.parse()?.extract() {
        MlsMessageBodyIn::GroupInfo(vgi) => Ok(vgi),
        // Rule R-MSG-9.
        _ => Err(RejectReason::InvalidMessageType(
            InvalidMessageType::ExpectedGroupInfo,
        )),
    }
}

/// The `signer` of a GroupInfo: the last field of `GroupInfoTBS`, a uint32 (openmls keeps its
/// accessor private; docs/openmls-notes.md O4).
pub(crate) fn signer_of(vgi: &VerifiableGroupInfo) -> Result<u32, RejectReason> {
    // Rule R-GI-12.
    let payload = vgi.unsigned_payload().map_err(|e| {
        RejectReason::InvalidGroupInfo(InvalidGroupInfo::Unencodable {
            detail: e.to_string(),
        })
    })?;
    match payload.as_slice() {
        [.., a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        // Rule R-GI-13.
        _ => Err(RejectReason::InvalidGroupInfo(InvalidGroupInfo::TooShort)),
    }
}

/// RFC 9420 §12.4.3.2: a client joins by external commit (a new device, or a resync after lost
/// state) from the GroupInfo the DS serves (`group_info`), and can only do so if it carries the
/// `external_pub` extension, the epoch's external HPKE key. openmls always adds it; mls-rs only
/// when configured to. The DS cannot check that the key is the one the epoch's secrets derive
/// (it has no secrets), only that it is there (wire-format.md §4.3.2 f).
pub(crate) fn check_has_external_pub(
    extensions: &Extensions<GroupInfo>,
) -> Result<(), RejectReason> {
    match extensions.external_pub() {
        Some(_) => Ok(()),
        // Rule R-GI-14.
        None => Err(RejectReason::GroupInfoWithoutExternalPub),
    }
}

/// DS-03..06 §"Group lifecycle", RFC 9420 §12.1.8.1: every group carries an `external_senders`
/// extension naming the DS's signature key and credential.
pub(crate) fn check_names_ds_as_external_sender(
    group: &PublicGroup,
    identity: &DsIdentity,
) -> Result<(), RejectReason> {
    let ours = ExternalSender::new(identity.signature_key.clone(), identity.credential.clone());
    let named = group
        .group_context()
        .extensions()
        .external_senders()
        .is_some_and(|senders| senders.contains(&ours));
    // Rule R-GI-4.
    if named {
        Ok(())
    } else {
        Err(RejectReason::InvalidGroupInfo(
            InvalidGroupInfo::DsNotExternalSender,
        ))
    }
}

/// Verifies the GroupInfo that came with a commit against the group state *after* merging the
/// commit, and returns the GroupInfo MLSMessage to store. The GroupInfo must be signed by
/// `signer` (the committer, or the joiner of an external commit) and carry exactly the
/// post-commit GroupContext and confirmation tag.
pub(crate) fn verify_post_commit_group_info(
    crypto: &impl OpenMlsCrypto,
    group: &PublicGroup,
    option: &GroupInfoOption,
    signer: LeafNodeIndex,
) -> Result<Vec<u8>, RejectReason> {
    let (received, stored) = match option {
        GroupInfoOption::Full(message) => {
            (verifiable_group_info(message)?, message.as_bytes().to_vec())
        }
        GroupInfoOption::Partial(partial) => {
            // RTO: only the "no ratchet tree" form is accepted in v1 (wire-format.md §4.3).
            // Rule R-GI-5.
            if partial.ratchet_tree_presence != RatchetTreePresence::NoRatchetTree {
                return Err(RejectReason::InvalidGroupInfo(
                    InvalidGroupInfo::PartialWithRatchetTree,
                ));
            }
            // Rule R-GI-6.
            let partial_extensions = |detail: String| {
                RejectReason::InvalidGroupInfo(InvalidGroupInfo::PartialExtensions { detail })
            };
            let mut encoded = Vec::new();
            partial
                .group_info_extensions
                .tls_serialize(&mut encoded)
                .map_err(|e| partial_extensions(e.to_string()))?;
            let extensions = Extensions::<GroupInfo>::tls_deserialize_exact_bytes(&encoded)
                .map_err(|e| partial_extensions(format!("{e:?}")))?;
            let vgi = VerifiableGroupInfo::new(
                group.group_context().clone(),
                extensions,
                group.confirmation_tag().clone(),
                signer,
                Signature::from(partial.signature.as_slice().to_vec()),
            );
            let mut stored = GROUP_INFO_MESSAGE_HEADER.to_vec();
            // Rule R-GI-12.
            vgi.tls_serialize(&mut stored).map_err(|e| {
                RejectReason::InvalidGroupInfo(InvalidGroupInfo::Unencodable {
                    detail: e.to_string(),
                })
            })?;
            (vgi, stored)
        }
    };

    // Rule R-GI-7.
    if signer_of(&received)? != signer.u32() {
        return Err(RejectReason::InvalidGroupInfo(
            InvalidGroupInfo::NotSignedByCommitter,
        ));
    }
    // Rebuild the TBS from our own post-commit state with the sender's extensions: equal bytes
    // mean equal GroupContext (epoch, tree hash, transcript) and confirmation tag.
    let expected = VerifiableGroupInfo::new(
        group.group_context().clone(),
        received.extensions().clone(),
        group.confirmation_tag().clone(),
        signer,
        received.signature().clone(),
    );
    let matches = match (expected.unsigned_payload(), received.unsigned_payload()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    // Rule R-GI-8.
    if !matches {
        return Err(RejectReason::InvalidGroupInfo(
            InvalidGroupInfo::DoesNotMatchState,
        ));
    }
    // Rule R-GI-9.
    let leaf = group.leaf(signer).ok_or(RejectReason::InvalidGroupInfo(
        InvalidGroupInfo::SignerNotMember,
    ))?;
    let key = OpenMlsSignaturePublicKey::from_signature_key(
        leaf.signature_key().clone(),
        group.ciphersuite().signature_algorithm(),
    );
    // Rule R-GI-10.
    received
        .verify_no_out(crypto, &key)
        .map_err(|_| RejectReason::InvalidGroupInfo(InvalidGroupInfo::SignatureDoesNotVerify))?;
    check_has_external_pub(received.extensions())?;
    Ok(stored)
}
