//! [`StepError`]: why a step of the step API could not go on.

use crate::ProcessError;

/// Why a step of the step API ([`crate::DsStep`], [`crate::qs::QsStep`]) could not go on. Never
/// caused by a request's content: a bad request is answered with an error response in
/// `Done`. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The answers passed to `resume` do not match the reads the step asked for: a different
    /// number of answers, or an answer of another kind than its read. A bug in the caller's
    /// driver loop.
    #[error("the answers do not match the reads: {0}")]
    AnswersDoNotMatchReads(String),
    /// mimi-ds or openmls hit a state that should be impossible; a bug worth reporting.
    #[error("internal error: {0}")]
    Internal(String),
}

impl<E: std::error::Error + 'static> From<StepError> for ProcessError<E> {
    fn from(error: StepError) -> Self {
        Self::Internal(error.to_string())
    }
}
