//! Every variant of each sub-enum, for the tests that encode every reason. Each list is checked
//! by a match without wildcard, so a new variant must be added to it.

use super::*;
use crate::pseudonym::InvalidPseudonymousCredential;

fn decode_error() -> DecodeError {
    DecodeError::TrailingBytes {
        type_name: "x",
        count: 1,
    }
}

pub(crate) fn authentication_failed() -> Vec<AuthenticationFailed> {
    let all = vec![
        AuthenticationFailed::ClientSignatureRequired,
        AuthenticationFailed::SignatureDoesNotVerify,
        AuthenticationFailed::LeafIndexSenderRequired,
        AuthenticationFailed::NoMemberAtLeaf,
        AuthenticationFailed::UnknownUserKey,
        AuthenticationFailed::CreatorLeafMismatch,
        AuthenticationFailed::ExternalJoinSigned,
        AuthenticationFailed::GroupInfoNeedsSignature,
        AuthenticationFailed::KeyPackageRefSenderRequired,
        AuthenticationFailed::NoPendingWelcome,
    ];
    for each in &all {
        match each {
            AuthenticationFailed::ClientSignatureRequired
            | AuthenticationFailed::SignatureDoesNotVerify
            | AuthenticationFailed::LeafIndexSenderRequired
            | AuthenticationFailed::NoMemberAtLeaf
            | AuthenticationFailed::UnknownUserKey
            | AuthenticationFailed::CreatorLeafMismatch
            | AuthenticationFailed::ExternalJoinSigned
            | AuthenticationFailed::GroupInfoNeedsSignature
            | AuthenticationFailed::KeyPackageRefSenderRequired
            | AuthenticationFailed::NoPendingWelcome => {}
        }
    }
    all
}

pub(crate) fn invalid_group_id() -> Vec<InvalidGroupId> {
    let all = vec![
        InvalidGroupId::SignedForAnotherGroup,
        InvalidGroupId::NotIssued,
        InvalidGroupId::AlreadyInUse,
        InvalidGroupId::ReservationExpired,
        InvalidGroupId::MessageForAnotherGroup,
        InvalidGroupId::ReInitTargetNotReserved,
    ];
    for each in &all {
        match each {
            InvalidGroupId::SignedForAnotherGroup
            | InvalidGroupId::NotIssued
            | InvalidGroupId::AlreadyInUse
            | InvalidGroupId::ReservationExpired
            | InvalidGroupId::MessageForAnotherGroup
            | InvalidGroupId::ReInitTargetNotReserved => {}
        }
    }
    all
}

pub(crate) fn invalid_group_info() -> Vec<InvalidGroupInfo> {
    let all = vec![
        InvalidGroupInfo::ForAnotherGroup,
        InvalidGroupInfo::NotSignedByRequester,
        InvalidGroupInfo::DoesNotValidate { detail: "x".into() },
        InvalidGroupInfo::DsNotExternalSender,
        InvalidGroupInfo::PartialWithRatchetTree,
        InvalidGroupInfo::PartialExtensions { detail: "x".into() },
        InvalidGroupInfo::NotSignedByCommitter,
        InvalidGroupInfo::DoesNotMatchState,
        InvalidGroupInfo::SignerNotMember,
        InvalidGroupInfo::SignatureDoesNotVerify,
        InvalidGroupInfo::NotForCommitEpoch,
        InvalidGroupInfo::Unencodable { detail: "x".into() },
        InvalidGroupInfo::TooShort,
    ];
    let mut all = all;
    all.extend(
        crate::policy::every_defect()
            .into_iter()
            .map(InvalidGroupInfo::RoomPolicy),
    );
    for each in &all {
        match each {
            InvalidGroupInfo::ForAnotherGroup
            | InvalidGroupInfo::NotSignedByRequester
            | InvalidGroupInfo::DoesNotValidate { .. }
            | InvalidGroupInfo::DsNotExternalSender
            | InvalidGroupInfo::PartialWithRatchetTree
            | InvalidGroupInfo::PartialExtensions { .. }
            | InvalidGroupInfo::NotSignedByCommitter
            | InvalidGroupInfo::DoesNotMatchState
            | InvalidGroupInfo::SignerNotMember
            | InvalidGroupInfo::SignatureDoesNotVerify
            | InvalidGroupInfo::NotForCommitEpoch
            | InvalidGroupInfo::Unencodable { .. }
            | InvalidGroupInfo::TooShort
            | InvalidGroupInfo::RoomPolicy(_) => {}
        }
    }
    all
}

pub(crate) fn invalid_leaf_node() -> Vec<InvalidLeafNode> {
    let all = vec![
        InvalidLeafNode::CredentialRejected(CredentialRejection("x".into())),
        InvalidLeafNode::MissingQueueConfig,
        InvalidLeafNode::QueueConfigUndecodable(decode_error()),
        InvalidLeafNode::UserKeyUndecodable(decode_error()),
        InvalidLeafNode::MemberWithoutLeaf,
    ];
    let all = [
        all,
        pseudonymous()
            .into_iter()
            .map(InvalidLeafNode::Pseudonymous)
            .collect(),
    ]
    .concat();
    for each in &all {
        match each {
            InvalidLeafNode::CredentialRejected(_)
            | InvalidLeafNode::MissingQueueConfig
            | InvalidLeafNode::QueueConfigUndecodable(_)
            | InvalidLeafNode::UserKeyUndecodable(_)
            | InvalidLeafNode::MemberWithoutLeaf
            | InvalidLeafNode::Pseudonymous(_) => {}
        }
    }
    all
}

pub(crate) fn invalid_message_type() -> Vec<InvalidMessageType> {
    let all = vec![
        InvalidMessageType::HandshakeNotPublic,
        InvalidMessageType::ExpectedPublicMessage,
        InvalidMessageType::ExpectedCommit,
        InvalidMessageType::ExpectedProposal,
        InvalidMessageType::ApplicationNotPrivate,
        InvalidMessageType::ExpectedApplication,
        InvalidMessageType::ExpectedNewMemberCommit,
        InvalidMessageType::ExpectedWelcome,
        InvalidMessageType::ExpectedGroupInfo,
    ];
    for each in &all {
        match each {
            InvalidMessageType::HandshakeNotPublic
            | InvalidMessageType::ExpectedPublicMessage
            | InvalidMessageType::ExpectedCommit
            | InvalidMessageType::ExpectedProposal
            | InvalidMessageType::ApplicationNotPrivate
            | InvalidMessageType::ExpectedApplication
            | InvalidMessageType::ExpectedNewMemberCommit
            | InvalidMessageType::ExpectedWelcome
            | InvalidMessageType::ExpectedGroupInfo => {}
        }
    }
    all
}

pub(crate) fn mls_structure() -> Vec<MlsStructure> {
    let all = vec![
        MlsStructure::PublicMessage,
        MlsStructure::Commit,
        MlsStructure::Proposal,
        MlsStructure::AddProposal,
        MlsStructure::KeyPackage,
        MlsStructure::LeafNode,
        MlsStructure::StoredProposal,
    ];
    for each in &all {
        match each {
            MlsStructure::PublicMessage
            | MlsStructure::Commit
            | MlsStructure::Proposal
            | MlsStructure::AddProposal
            | MlsStructure::KeyPackage
            | MlsStructure::LeafNode
            | MlsStructure::StoredProposal => {}
        }
    }
    all
}

pub(crate) fn invalid_mls_message() -> Vec<InvalidMlsMessage> {
    let all = vec![
        InvalidMlsMessage::Validation { detail: "x".into() },
        InvalidMlsMessage::ExternalCommitWithoutPath,
        InvalidMlsMessage::Undecodable {
            structure: MlsStructure::Commit,
            detail: "x".into(),
        },
    ];
    let all = [
        all,
        identity_link_keys()
            .into_iter()
            .map(InvalidMlsMessage::IdentityLinkKeys)
            .collect(),
    ]
    .concat();
    for each in &all {
        match each {
            InvalidMlsMessage::Validation { .. }
            | InvalidMlsMessage::ExternalCommitWithoutPath
            | InvalidMlsMessage::Undecodable { .. }
            | InvalidMlsMessage::IdentityLinkKeys(_) => {}
        }
    }
    all
}

pub(crate) fn invalid_proposal() -> Vec<InvalidProposal> {
    let all = vec![
        InvalidProposal::Empty,
        InvalidProposal::AlreadyPending,
        InvalidProposal::AppDataComponentUnknown { component_id: 1 },
        InvalidProposal::AppDataRemoveOfAbsentState { component_id: 1 },
        InvalidProposal::AppDataUpdateRefused { component_id: 1 },
    ];
    for each in &all {
        match each {
            InvalidProposal::Empty
            | InvalidProposal::AlreadyPending
            | InvalidProposal::AppDataComponentUnknown { .. }
            | InvalidProposal::AppDataRemoveOfAbsentState { .. }
            | InvalidProposal::AppDataUpdateRefused { .. } => {}
        }
    }
    all
}

pub(crate) fn not_allowed() -> Vec<NotAllowed> {
    let all = vec![
        NotAllowed::MlsSenderNotMember,
        NotAllowed::MlsSenderNotRequester,
        NotAllowed::CommitterRemovesItself,
        NotAllowed::WelcomesDoNotMatchAdds,
        NotAllowed::CredentialMovesClientToAnotherUser,
        NotAllowed::GroupReInitialized,
        NotAllowed::MembershipOperationChangesCredential,
        NotAllowed::ReInitNotAlone,
        NotAllowed::ReInitOutsideReInitialize,
        NotAllowed::DeleteGroupKeepsMembers,
        NotAllowed::AddUsersNotOnlyAdds,
        NotAllowed::AddUsersOfExistingUser,
        NotAllowed::AddClientsNotOnlyAdds,
        NotAllowed::AddClientsOfAnotherUser,
        NotAllowed::RemoveUsersNotOnlyRemoves,
        NotAllowed::RemoveUsersPartially,
        NotAllowed::RemoveClientsNotOnlyRemoves,
        NotAllowed::RemoveClientsOfAnotherUser,
        NotAllowed::UpdateClientNotAnUpdatePath,
        NotAllowed::ReInitializeWithoutReInit,
        NotAllowed::ExternalJoinsDisabled,
        NotAllowed::ExternalCommitRemovesOthers,
        NotAllowed::ExternalJoinOfNewUser,
        NotAllowed::UserKeyBeyondOwnRemovals,
        NotAllowed::SelfRemoveOfAnotherLeaf,
        NotAllowed::NoInactivityLimit,
        NotAllowed::DsNotExternalSender,
    ];
    let mut all = all;
    all.extend(
        crate::policy::every_violation()
            .into_iter()
            .map(NotAllowed::RoomPolicy),
    );
    for each in &all {
        match each {
            NotAllowed::MlsSenderNotMember
            | NotAllowed::MlsSenderNotRequester
            | NotAllowed::CommitterRemovesItself
            | NotAllowed::WelcomesDoNotMatchAdds
            | NotAllowed::CredentialMovesClientToAnotherUser
            | NotAllowed::GroupReInitialized
            | NotAllowed::MembershipOperationChangesCredential
            | NotAllowed::ReInitNotAlone
            | NotAllowed::ReInitOutsideReInitialize
            | NotAllowed::DeleteGroupKeepsMembers
            | NotAllowed::AddUsersNotOnlyAdds
            | NotAllowed::AddUsersOfExistingUser
            | NotAllowed::AddClientsNotOnlyAdds
            | NotAllowed::AddClientsOfAnotherUser
            | NotAllowed::RemoveUsersNotOnlyRemoves
            | NotAllowed::RemoveUsersPartially
            | NotAllowed::RemoveClientsNotOnlyRemoves
            | NotAllowed::RemoveClientsOfAnotherUser
            | NotAllowed::UpdateClientNotAnUpdatePath
            | NotAllowed::ReInitializeWithoutReInit
            | NotAllowed::ExternalJoinsDisabled
            | NotAllowed::ExternalCommitRemovesOthers
            | NotAllowed::ExternalJoinOfNewUser
            | NotAllowed::UserKeyBeyondOwnRemovals
            | NotAllowed::SelfRemoveOfAnotherLeaf
            | NotAllowed::NoInactivityLimit
            | NotAllowed::DsNotExternalSender
            | NotAllowed::RoomPolicy(_) => {}
        }
    }
    all
}

pub(crate) fn qs_not_allowed() -> Vec<QsNotAllowed> {
    let all = vec![
        QsNotAllowed::AcknowledgesUnqueued,
        QsNotAllowed::CreateQueueNamesQueue,
    ];
    for each in &all {
        match each {
            QsNotAllowed::AcknowledgesUnqueued | QsNotAllowed::CreateQueueNamesQueue => {}
        }
    }
    all
}

pub(crate) fn proposal_conflict() -> Vec<crate::error::ProposalConflict> {
    use crate::error::ProposalConflict;
    let all = vec![
        ProposalConflict::DuplicateRemove,
        ProposalConflict::UpdateOfRemovedLeaf,
        ProposalConflict::SecondGroupContextExtensions,
        ProposalConflict::ReInitNotAlone,
        ProposalConflict::AppDataRemoveWithOther,
    ];
    for each in &all {
        match each {
            ProposalConflict::DuplicateRemove
            | ProposalConflict::UpdateOfRemovedLeaf
            | ProposalConflict::SecondGroupContextExtensions
            | ProposalConflict::ReInitNotAlone
            | ProposalConflict::AppDataRemoveWithOther => {}
        }
    }
    all
}

pub(crate) fn pseudonymous() -> Vec<InvalidPseudonymousCredential> {
    let all = vec![
        InvalidPseudonymousCredential::Undecodable(decode_error()),
        InvalidPseudonymousCredential::MalformedPseudonym {
            field: "user_pseudonym",
            error: crate::pseudonym::PseudonymError::NotUuidV4,
        },
        InvalidPseudonymousCredential::PseudonymDomainsDiffer,
        InvalidPseudonymousCredential::SignatureKeyMismatch,
        InvalidPseudonymousCredential::EmptyIdentityLink,
        InvalidPseudonymousCredential::NotPseudonymous { leaf: 0 },
        InvalidPseudonymousCredential::InPlainGroup { leaf: 0 },
        InvalidPseudonymousCredential::UserPseudonymUnderTwoDomains { leaf: 0 },
        InvalidPseudonymousCredential::ClientPseudonymReused { leaf: 0 },
    ];
    for each in &all {
        match each {
            InvalidPseudonymousCredential::Undecodable(_)
            | InvalidPseudonymousCredential::MalformedPseudonym { .. }
            | InvalidPseudonymousCredential::PseudonymDomainsDiffer
            | InvalidPseudonymousCredential::SignatureKeyMismatch
            | InvalidPseudonymousCredential::EmptyIdentityLink
            | InvalidPseudonymousCredential::NotPseudonymous { .. }
            | InvalidPseudonymousCredential::InPlainGroup { .. }
            | InvalidPseudonymousCredential::UserPseudonymUnderTwoDomains { .. }
            | InvalidPseudonymousCredential::ClientPseudonymReused { .. } => {}
        }
    }
    all
}

pub(crate) fn identity_link_keys() -> Vec<crate::pseudonym::InvalidIdentityLinkKeys> {
    use crate::pseudonym::InvalidIdentityLinkKeys as L;
    let all = vec![
        L::SafeAad(crate::safe_aad::SafeAadError::Undecodable(decode_error())),
        L::SafeAad(crate::safe_aad::SafeAadError::Unsorted {
            previous: 2,
            next: 1,
        }),
        L::SafeAad(crate::safe_aad::SafeAadError::Duplicate { component_id: 1 }),
        L::AddAadUndecodable(decode_error()),
        L::Missing,
        L::CountMismatch { adds: 1, got: 0 },
        L::BadEntry,
        L::WrapperKeyExposed,
    ];
    for each in &all {
        match each {
            L::SafeAad(_)
            | L::AddAadUndecodable(_)
            | L::Missing
            | L::CountMismatch { .. }
            | L::BadEntry
            | L::WrapperKeyExposed => {}
        }
    }
    all
}
