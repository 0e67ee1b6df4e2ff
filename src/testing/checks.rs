//! The checks every test makes on an answer, in one place: a request is accepted, or refused
//! with an exact code and **no change in storage** (the DS and the QS promise a refusal writes
//! nothing; wire-format.md §5.6 and §10). Tests assert the named reason the checks return
//! ([`crate::RejectReason`], [`crate::QsRejectReason`]) rather than the description text.
//!
//! The checks are methods, so `ds.reject(&client.update_request(ds.now_ms), code)` borrows like
//! `ds.process(..)` does.

use super::{decode_response, TestDs, TestQs};
use crate::qs::{QsOutcome, QsStatus};
use crate::wire::{
    decode_exact, AcceptedMessage, DsError, DsErrorDetails, DsRequest, DsRequestBody, DsResponse,
    DsResponseBody, ErrorCode, QsClientResponse, QsClientResponseBody, PROTOCOL_VERSION_MIMI_DS10,
};
use crate::{Fanout, HubEvent, Outcome, QsRejectReason, RejectReason, Status};

impl TestDs {
    /// Processes a request that must be accepted; panics with the decoded answer otherwise.
    pub fn accept(&mut self, request: &[u8]) -> Outcome {
        let out = self.process(request);
        assert_accepted(&out);
        out
    }

    /// Processes a request that must be refused with `code`, checked end to end: the status,
    /// the error response as it decodes on the wire ([`assert_rejected`]), no fanout, and
    /// storage byte-identical to what it was before. Returns the named reason.
    pub fn reject(&mut self, request: &[u8], code: ErrorCode) -> RejectReason {
        self.rejected(request, code).0
    }

    /// [`Self::reject`], returning the `DSError` the requester got instead of the reason (for
    /// tests that read its details).
    pub fn reject_error(&mut self, request: &[u8], code: ErrorCode) -> DsError {
        self.rejected(request, code).1
    }

    fn rejected(&mut self, request: &[u8], code: ErrorCode) -> (RejectReason, DsError) {
        let out = self.assert_unchanged(|ds| ds.process(request));
        let error = assert_rejected(&out, code);
        (out.refusal.expect("a refusal names its reason"), error)
    }

    /// Runs `drive` on this DS and asserts its storage is byte-identical afterwards: for a
    /// duplicate, a read, an event with nothing to do, or an answer the test checks itself.
    /// Returns what `drive` returned.
    pub fn assert_unchanged<T>(&mut self, drive: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.storage.clone();
        let result = drive(self);
        assert!(self.storage == before, "storage is byte-identical");
        result
    }

    /// A [`HubEvent`] that must be refused with `code`: checked like [`Self::reject`].
    /// Returns the `DSError` the hub's server got.
    pub fn reject_event(&mut self, group_id: &[u8], event: &HubEvent, code: ErrorCode) -> Refusal {
        let out = self.assert_unchanged(|ds| ds.handle_event(group_id, event));
        Refusal::of(&out, code)
    }

    /// A `create_group` that must be refused with `code` after its `ClientSignature` verified:
    /// checked like [`Self::reject`], except that the group ID reservation is consumed, the
    /// one write a refusal makes (wire-format.md §4.2).
    pub fn reject_consuming_reservation(&mut self, request: &[u8], code: ErrorCode) -> Refusal {
        let group_id = match decode_exact::<DsRequest>(request).map(|r| r.body) {
            Ok(DsRequestBody::CreateGroup(body)) => body.group_id.as_slice().to_vec(),
            other => panic!("not create_group: {other:?}"),
        };
        let expected = self.storage_with_reservation_consumed(&group_id);
        let out = self.process(request);
        let refusal = Refusal::of(&out, code);
        assert!(self.storage == expected, "only the reservation is consumed");
        refusal
    }
}

/// A refusal as the checks saw it: the named reason ([`Outcome::refusal`]) and the `DSError`
/// the requester got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that refused the request.
    pub reason: RejectReason,
    /// The error response, decoded.
    pub error: DsError,
}

impl Refusal {
    /// [`assert_rejected`], and the reason the outcome names.
    fn of(out: &Outcome, code: ErrorCode) -> Self {
        let error = assert_rejected(out, code);
        let reason = out.refusal.clone().expect("a refusal names its reason");
        Self { reason, error }
    }
}

/// Checks that a DS answer accepts its request; panics with the decoded answer otherwise.
pub fn assert_accepted(out: &Outcome) {
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
}

/// Checks that a DS answer accepts its request and returns its receipt (`accepted`,
/// wire-format.md §5.2).
pub fn accepted_message(out: &Outcome) -> AcceptedMessage {
    assert_accepted(out);
    match decode_response(&out.response).body {
        DsResponseBody::Accepted(receipt) => receipt,
        other => panic!("expected accepted, got {other:?}"),
    }
}

/// Checks a DS answer refusing a request with `code`: the status, a `DSResponse` of this
/// protocol version carrying a `DSError` with the code, a description, details of the shape
/// the code fixes (wire-format.md §5.6), a named reason, and no fanout. Returns the error.
/// (Storage is the caller's to compare: see [`TestDs::reject`] and [`assert_unchanged`].)
pub fn assert_rejected(out: &Outcome, code: ErrorCode) -> DsError {
    let response = decode_response(&out.response);
    assert_eq!(out.status, Status::Rejected(code), "response: {response:?}");
    assert!(out.refusal.is_some(), "a refusal names its reason");
    assert_eq!(response.version, PROTOCOL_VERSION_MIMI_DS10);
    let DsResponseBody::Error(error) = response.body else {
        panic!("expected an error body, got {response:?}")
    };
    assert_eq!(error.code, code);
    assert!(
        !error.description.as_slice().is_empty(),
        "a description is given"
    );
    match code {
        ErrorCode::WrongEpoch | ErrorCode::FutureEpoch => assert!(
            matches!(error.details, DsErrorDetails::CurrentEpoch(_)),
            "{error:?}"
        ),
        ErrorCode::InvalidProposal | ErrorCode::MissingPendingProposals => assert!(
            matches!(error.details, DsErrorDetails::ProposalRefs(_)),
            "{error:?}"
        ),
        _ => assert_eq!(error.details, DsErrorDetails::None),
    }
    assert!(out.fanout.is_empty(), "a rejected request fans out nothing");
    error
}

/// Runs `drive` on `storage` and asserts that storage is byte-identical afterwards (for tests
/// that drive a service or a storage wrapper themselves). Returns what `drive` returned.
pub fn assert_unchanged<S: Clone + PartialEq, T>(
    storage: &mut S,
    drive: impl FnOnce(&mut S) -> T,
) -> T {
    let before = storage.clone();
    let result = drive(storage);
    assert!(
        *storage == before,
        "a refused request leaves storage byte-identical"
    );
    result
}

/// The description of a `DSError`, as text (for logs; tests assert reasons).
pub fn error_description(error: &DsError) -> String {
    String::from_utf8_lossy(error.description.as_slice()).into_owned()
}

/// The proposal references a `DSError` names (`invalid_proposal`,
/// `missing_pending_proposals`), or none.
pub fn proposal_refs(error: &DsError) -> Vec<Vec<u8>> {
    match &error.details {
        DsErrorDetails::ProposalRefs(refs) => refs.iter().map(|r| r.as_slice().to_vec()).collect(),
        _ => Vec::new(),
    }
}

impl TestQs {
    /// Runs `drive` on this QS and asserts its storage is byte-identical afterwards.
    /// Returns what `drive` returned.
    pub fn assert_unchanged<T>(&mut self, drive: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.storage.clone();
        let result = drive(self);
        assert!(self.storage == before, "storage is byte-identical");
        result
    }

    /// A client request that must be served ([`QsStatus::Accepted`]).
    pub fn accept_client(&mut self, request: &[u8]) -> QsOutcome {
        let out = self.client_request(request);
        assert_eq!(
            out.status,
            QsStatus::Accepted,
            "{:?}",
            decode_exact::<QsClientResponse>(&out.response).map(|r| r.body)
        );
        out
    }

    /// A client request that must be refused with `code`: the status, a `QSClientResponse`
    /// carrying the `DSError` with the code, nothing enqueued, storage byte-identical. Returns
    /// the named reason.
    pub fn reject_client(&mut self, request: &[u8], code: ErrorCode) -> QsRejectReason {
        let (qs, now_ms) = (&self.qs, self.now_ms);
        let out = assert_unchanged(&mut self.storage, |storage| {
            qs.client_request(crate::UnixTimeMs(now_ms), request, storage)
                .expect("in-memory storage does not fail")
        });
        assert_client_rejected(&out, code);
        out.refusal.expect("a refusal names its reason")
    }

    /// A delivery that must be refused as a whole with `code`: the status, a `DSResponse`
    /// carrying the `DSError` with the code, nothing enqueued, storage byte-identical. Returns
    /// the named reason.
    pub fn reject_delivery(&mut self, fanout: &Fanout, code: ErrorCode) -> QsRejectReason {
        let (qs, now_ms) = (&self.qs, self.now_ms);
        let out = assert_unchanged(&mut self.storage, |storage| {
            qs.deliver(crate::UnixTimeMs(now_ms), &fanout.to_bytes(), None, storage)
                .expect("in-memory storage does not fail")
        });
        assert_eq!(out.status, QsStatus::Rejected(code));
        assert!(
            out.enqueued.is_empty(),
            "a refused delivery enqueues nothing"
        );
        match decode_exact::<DsResponse>(&out.response)
            .expect("a refused delivery answers a DSResponse")
            .body
        {
            DsResponseBody::Error(e) => assert_eq!(e.code, code),
            other => panic!("expected {code:?}, got {other:?}"),
        }
        out.refusal.expect("a refusal names its reason")
    }
}

/// Checks a QS answer refusing a client request with `code`: the status, a `QSClientResponse`
/// carrying a `DSError` with the code, and nothing enqueued. Returns the error.
pub fn assert_client_rejected(out: &QsOutcome, code: ErrorCode) -> DsError {
    assert_eq!(out.status, QsStatus::Rejected(code));
    assert!(out.refusal.is_some(), "a refusal names its reason");
    assert!(
        out.enqueued.is_empty(),
        "a refused request enqueues nothing"
    );
    match decode_exact::<QsClientResponse>(&out.response)
        .expect("QS answers decode")
        .body
    {
        QsClientResponseBody::Error(e) => {
            assert_eq!(e.code, code);
            e
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}
