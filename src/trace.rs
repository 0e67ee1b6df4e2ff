//! One `tracing` span per DS or QS request (feature `tracing`).
//!
//! # Where the span lives
//!
//! The step API lets the caller drive a request: it may fetch reads on another task, wait
//! for a connection, or drop the request halfway. So the span is not a scope around a call.
//! It is created when the request starts ([`crate::DeliveryService::start`],
//! [`crate::qs::QueueingService::start_delivery`], ...), travels inside the steps
//! ([`crate::DsReads`], [`crate::DsWrite`] and the QS's twins), and closes when the last step is
//! consumed: when the outcome is decided, its fields are recorded on it. The span is entered
//! only while mimi-ds runs the request's handler, never while the caller does I/O, so a
//! subscriber that times spans (tracing-subscriber's `FmtSpan::CLOSE`) reports the hub's own
//! CPU time as `busy` and the caller's storage I/O as `idle`. mimi-ds itself never reads a
//! clock; durations are the subscriber's business.
//!
//! # Fields
//!
//! Spans `ds_request` and `qs_request`, target `mimi_ds`, level INFO. Every field is a
//! count, a size or a name from a bounded set: no group ID, queue ID, credential, identity
//! or key appears in any field, and neither does an error's text (which may name a group).
//!
//! * `operation`: [`crate::OutcomeStats::operation`] or [`crate::qs::QsStats::operation`].
//! * `outcome`: `accepted`, `duplicate` or `rejected` (with `code`, the `DSErrorCode` name);
//!   or `internal_error` (a bug, or answers that do not fit the reads), `storage_error` (the
//!   built-in drivers' storage failed), `abandoned` (the caller dropped the request's step).
//! * `epoch` (DS, when known), `read_rounds`, `conflict_retries`, `request_bytes`,
//!   `response_bytes`; `fanout_count` and `fanout_bytes` (DS); `recipients`, `enqueued`,
//!   `invalid_recipients`, `full_recipients` (QS deliveries).
//!
//! Without the feature, [`RequestSpan`] is an empty struct whose methods do nothing: no
//! tracing code is compiled.

use crate::qs::{QsStats, QsStatus};
use crate::{OutcomeStats, Status};

/// The outcome field of a request that ended without an outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failed {
    /// A [`crate::StepError`]: a bug, or answers that do not fit the reads.
    Internal,
    /// The built-in driver's storage failed.
    Storage,
}

#[cfg(feature = "tracing")]
mod enabled {
    use super::*;
    use tracing::field::Empty;

    /// A request's span; see the [module documentation](super).
    #[derive(Debug)]
    pub(crate) struct RequestSpan {
        span: tracing::Span,
        /// Whether no outcome was recorded yet.
        open: bool,
    }

    impl RequestSpan {
        /// The span of a DS request (or hub event) of `request_bytes` bytes.
        pub(crate) fn ds(request_bytes: usize) -> Self {
            Self {
                span: tracing::info_span!(
                    target: "mimi_ds",
                    "ds_request",
                    operation = Empty,
                    outcome = Empty,
                    code = Empty,
                    epoch = Empty,
                    read_rounds = Empty,
                    conflict_retries = Empty,
                    request_bytes = request_bytes,
                    response_bytes = Empty,
                    fanout_count = Empty,
                    fanout_bytes = Empty,
                ),
                open: true,
            }
        }

        /// The span of a QS request of `request_bytes` bytes.
        pub(crate) fn qs(request_bytes: usize) -> Self {
            Self {
                span: tracing::info_span!(
                    target: "mimi_ds",
                    "qs_request",
                    operation = Empty,
                    outcome = Empty,
                    code = Empty,
                    read_rounds = Empty,
                    conflict_retries = Empty,
                    request_bytes = request_bytes,
                    response_bytes = Empty,
                    recipients = Empty,
                    enqueued = Empty,
                    invalid_recipients = Empty,
                    full_recipients = Empty,
                ),
                open: true,
            }
        }

        /// Records what the request is, as soon as that is known (so that even an abandoned
        /// request's span says it).
        pub(crate) fn operation(&self, operation: &'static str) {
            self.span.record("operation", operation);
        }

        /// Runs `f` inside the span.
        pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
            self.span.in_scope(f)
        }

        /// Records the DS outcome; the span closes when this value is dropped.
        pub(crate) fn ds_outcome(&mut self, status: Status, stats: &OutcomeStats) {
            self.status(status);
            let span = &self.span;
            if let Some(epoch) = stats.epoch {
                span.record("epoch", epoch);
            }
            span.record("read_rounds", stats.read_rounds);
            span.record("conflict_retries", stats.conflict_retries);
            span.record("response_bytes", stats.response_bytes as u64);
            span.record("fanout_count", stats.fanout_count as u64);
            span.record("fanout_bytes", stats.fanout_bytes as u64);
        }

        /// Records the QS outcome; the span closes when this value is dropped.
        pub(crate) fn qs_outcome(&mut self, status: &QsStatus, stats: &QsStats) {
            self.status(match status {
                QsStatus::Accepted => Status::Accepted,
                QsStatus::Duplicate => Status::Duplicate,
                QsStatus::Rejected(code) => Status::Rejected(*code),
            });
            let span = &self.span;
            span.record("read_rounds", stats.read_rounds);
            span.record("conflict_retries", stats.conflict_retries);
            span.record("response_bytes", stats.response_bytes as u64);
            span.record("recipients", stats.recipients as u64);
            span.record("enqueued", stats.enqueued as u64);
            span.record("invalid_recipients", stats.invalid_recipients as u64);
            span.record("full_recipients", stats.full_recipients as u64);
        }

        /// Records that the request ended without an outcome.
        pub(crate) fn failed(&mut self, how: Failed) {
            self.open = false;
            self.span.record(
                "outcome",
                match how {
                    Failed::Internal => "internal_error",
                    Failed::Storage => "storage_error",
                },
            );
        }

        fn status(&mut self, status: Status) {
            self.open = false;
            match status {
                Status::Accepted => self.span.record("outcome", "accepted"),
                Status::Duplicate => self.span.record("outcome", "duplicate"),
                Status::Rejected(code) => {
                    self.span.record("outcome", "rejected");
                    self.span.record("code", code.name())
                }
            };
        }
    }

    impl Drop for RequestSpan {
        fn drop(&mut self) {
            if self.open {
                self.span.record("outcome", "abandoned");
            }
        }
    }
}

#[cfg(not(feature = "tracing"))]
mod enabled {
    use super::*;

    /// Without the `tracing` feature: nothing.
    #[derive(Debug)]
    pub(crate) struct RequestSpan;

    impl RequestSpan {
        #[inline]
        pub(crate) fn ds(_request_bytes: usize) -> Self {
            Self
        }

        #[inline]
        pub(crate) fn qs(_request_bytes: usize) -> Self {
            Self
        }

        #[inline]
        pub(crate) fn operation(&self, _operation: &'static str) {}

        #[inline]
        pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
            f()
        }

        #[inline]
        pub(crate) fn ds_outcome(&mut self, _status: Status, _stats: &OutcomeStats) {}

        #[inline]
        pub(crate) fn qs_outcome(&mut self, _status: &QsStatus, _stats: &QsStats) {}

        #[inline]
        pub(crate) fn failed(&mut self, _how: Failed) {}
    }
}

pub(crate) use enabled::RequestSpan;
