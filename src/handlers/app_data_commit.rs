//! The staged commit of a processed commit message, resolving AppDataUpdate proposals with the
//! registered component semantics (feature `app-data-update`; wire-format.md §15.7).
//!
//! With openmls's `extensions-draft`, `PublicGroup::process_message` does not stage a commit
//! that covers AppDataUpdate proposals: it returns `UnresolvedAppDataCommit`, and the caller
//! computes the new `app_data_dictionary` entries and stages it with `stage_app_data_commit`
//! (which then runs openmls's commit validation). Without the feature there is nothing to
//! resolve.

use openmls::prelude::{ProcessedMessageContent, PublicGroup, StagedCommit};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::error::{Failure, InvalidMessageType, RejectReason};

/// The staged commit `content` carries; `invalid_message_type` if it is not a commit (rule
/// R-MSG-3). Every AppDataUpdate it covers (inline or by reference) is checked against the
/// components registered in `config` (rules R-PROP-7..9,
/// `invalid_proposal` without refs) before openmls validates and stages the commit with the
/// resulting dictionary (rule R-MLS-1 for its refusals).
#[cfg(feature = "app-data-update")]
pub(crate) fn staged_commit<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    crypto: &C,
    config: &crate::DsConfig,
    group: &PublicGroup,
    content: ProcessedMessageContent,
) -> Result<Box<StagedCommit>, Failure<E>> {
    use crate::error::{internal, InvalidMlsMessage};
    use openmls::prelude::StageCommitError;

    match content {
        ProcessedMessageContent::StagedCommitMessage(staged) => Ok(staged),
        ProcessedMessageContent::UnresolvedAppDataCommit(unresolved) => {
            let dictionary = group
                .group_context()
                .extensions()
                .app_data_dictionary()
                .map(|extension| extension.dictionary());
            let updates = config
                .app_data_components
                .updates(dictionary, unresolved.app_data_update_proposals())
                .map_err(|(_, reason)| RejectReason::InvalidProposal {
                    refs: Vec::new(),
                    reason,
                })?;
            match group.stage_app_data_commit(crypto, *unresolved, updates) {
                Ok(staged) => Ok(Box::new(staged)),
                Err(StageCommitError::LibraryError(e)) => Err(internal(e)),
                // Rule R-MLS-1.
                Err(other) => Err(
                    RejectReason::InvalidMlsMessage(InvalidMlsMessage::Validation {
                        detail: other.to_string(),
                    })
                    .into(),
                ),
            }
        }
        _ => Err(not_a_commit()),
    }
}

/// Without the feature, openmls stages every valid commit itself.
#[cfg(not(feature = "app-data-update"))]
pub(crate) fn staged_commit<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    _crypto: &C,
    _config: &crate::DsConfig,
    _group: &PublicGroup,
    content: ProcessedMessageContent,
) -> Result<Box<StagedCommit>, Failure<E>> {
    match content {
        ProcessedMessageContent::StagedCommitMessage(staged) => Ok(staged),
        _ => Err(not_a_commit()),
    }
}

/// Rule R-MSG-3: the message of a commit request must be a commit.
fn not_a_commit<E: std::error::Error + 'static>() -> Failure<E> {
    RejectReason::InvalidMessageType(InvalidMessageType::ExpectedCommit).into()
}
