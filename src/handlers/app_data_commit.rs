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

use crate::error::Failure;

/// The staged commit `content` carries, or `None` if it is not a commit. Every AppDataUpdate
/// it covers (inline or by reference) is checked against `components` (rules R-PROP-7..9,
/// `invalid_proposal` without refs) before openmls validates and stages the commit with the
/// resulting dictionary (rule R-MLS-1 for its refusals).
#[cfg(feature = "app-data-update")]
pub(crate) fn staged_commit<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    crypto: &C,
    components: &crate::app_data::AppDataComponents,
    group: &PublicGroup,
    content: ProcessedMessageContent,
) -> Result<Option<Box<StagedCommit>>, Failure<E>> {
    use crate::error::{internal, InvalidMlsMessage, RejectReason};
    use openmls::prelude::StageCommitError;

    match content {
        ProcessedMessageContent::StagedCommitMessage(staged) => Ok(Some(staged)),
        ProcessedMessageContent::UnresolvedAppDataCommit(unresolved) => {
            let dictionary = group
                .group_context()
                .extensions()
                .app_data_dictionary()
                .map(|extension| extension.dictionary());
            let updates = components
                .updates(dictionary, unresolved.app_data_update_proposals())
                .map_err(|(_, reason)| RejectReason::InvalidProposal {
                    refs: Vec::new(),
                    reason,
                })?;
            match group.stage_app_data_commit(crypto, *unresolved, updates) {
                Ok(staged) => Ok(Some(Box::new(staged))),
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
        _ => Ok(None),
    }
}

/// Without the feature, openmls stages every valid commit itself.
#[cfg(not(feature = "app-data-update"))]
pub(crate) fn staged_commit<C: OpenMlsCrypto, E: std::error::Error + 'static>(
    _crypto: &C,
    _components: &(),
    _group: &PublicGroup,
    content: ProcessedMessageContent,
) -> Result<Option<Box<StagedCommit>>, Failure<E>> {
    match content {
        ProcessedMessageContent::StagedCommitMessage(staged) => Ok(Some(staged)),
        _ => Ok(None),
    }
}

/// The registry `staged_commit` takes: the hub's components with the feature, nothing without.
#[cfg(feature = "app-data-update")]
pub(crate) fn components(config: &crate::DsConfig) -> &crate::app_data::AppDataComponents {
    &config.app_data_components
}

/// The registry `staged_commit` takes: the hub's components with the feature, nothing without.
#[cfg(not(feature = "app-data-update"))]
pub(crate) fn components(_config: &crate::DsConfig) -> &() {
    &()
}
