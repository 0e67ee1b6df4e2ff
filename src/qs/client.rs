//! Client requests: create, delete, fetch and acknowledge (wire-format.md §10.3).
//!
//! Every request is signed by the queue owner's key and carries a timestamp checked against
//! `now`. There is no replay set, unlike the DS's: each operation is idempotent for its
//! owner (creating returns the owner's existing queue, fetching reads, acknowledging again
//! drops nothing more, deleting again finds no queue), so a replay inside the window can
//! only repeat what the owner already did. The one answer with secrets in it, the queue ID
//! and token of `create_queue`, is sealed to a key the owner signed into the request, so a
//! replay gets nothing it can read.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use tls_codec::VLBytes;

use super::{
    internal, storage_error, QsFailure, QsOutcome, QsPlan, QsStats, QsStatus, QueueingService,
};
use crate::error::{QsNotAllowed, QsRejectReason};
use crate::qs::sealing::seal_with_label;
use crate::qs::{QsChange, QsStorage, QsWriteSet, QueueRecord, SealError};
use crate::wire::{
    decode_exact, encode, QsClientRequest, QsClientRequestBody, QsClientResponse,
    QsClientResponseBody, QueueCreated, QueuedMessages, PROTOCOL_VERSION_MIMI_DS10,
    QUEUE_CREATED_LABEL,
};

/// Queue IDs are 128 random bits: unguessable, so "unknown queue" reveals nothing useful.
const QUEUE_ID_BYTES: usize = 16;
/// Fanout tokens are 256 random bits (docs/decisions.md D17).
const TOKEN_BYTES: usize = 32;

/// A client request that is well formed and fresh, with the exact bytes its signature covers.
pub(super) struct ClientRequest {
    request: QsClientRequest,
    sign_content: Vec<u8>,
    now_ms: u64,
}

/// Size, version, decoding and freshness: the checks that need no storage.
pub(super) fn decode<C: OpenMlsCrypto + OpenMlsRand, E: std::error::Error + 'static>(
    qs: &QueueingService<C>,
    now_ms: u64,
    bytes: &[u8],
) -> Result<ClientRequest, QsFailure<E>> {
    qs.check_size_and_version(bytes)?;
    let request: QsClientRequest = decode_exact(bytes).map_err(QsRejectReason::Malformed)?;
    if request.timestamp_ms.abs_diff(now_ms) > qs.config.auth_window_ms {
        return Err(QsRejectReason::StaleTimestamp {
            timestamp_ms: request.timestamp_ms,
            now_ms,
        }
        .into());
    }
    // Re-encoding what just decoded (within the size limit) cannot fail.
    let sign_content = request.tbs().sign_content().map_err(internal)?;
    Ok(ClientRequest {
        request,
        sign_content,
        now_ms,
    })
}

impl ClientRequest {
    /// The request type, as [`QsStats::operation`] names it.
    pub(super) fn operation(&self) -> &'static str {
        match self.request.body {
            QsClientRequestBody::CreateQueue { .. } => "create_queue",
            QsClientRequestBody::DeleteQueue => "delete_queue",
            QsClientRequestBody::Fetch { .. } => "fetch",
            QsClientRequestBody::Acknowledge { .. } => "acknowledge",
        }
    }
}

pub(super) fn plan<C: OpenMlsCrypto + OpenMlsRand, S: QsStorage>(
    qs: &QueueingService<C>,
    client: &ClientRequest,
    storage: &S,
) -> Result<QsPlan, QsFailure<S::Error>> {
    let request = &client.request;
    if let QsClientRequestBody::CreateQueue {
        owner_key,
        response_key,
    } = &request.body
    {
        return create(
            qs,
            client,
            owner_key.as_slice(),
            response_key.as_slice(),
            storage,
        );
    }
    let queue_id = request.queue_id.as_slice();
    let record = storage
        .queue(queue_id)
        .map_err(storage_error)?
        .ok_or(QsRejectReason::UnknownQueue)?;
    verify(qs, client, &record.owner_key)?;
    match &request.body {
        QsClientRequestBody::DeleteQueue => Ok(write(
            client.now_ms,
            QsChange::DeleteQueue {
                queue_id: queue_id.to_vec(),
            },
            QsClientResponseBody::Ok,
        )?),
        QsClientRequestBody::Fetch {
            from_sequence,
            max_messages,
        } => fetch(
            qs,
            queue_id,
            &record,
            *from_sequence,
            *max_messages,
            storage,
        ),
        QsClientRequestBody::Acknowledge { up_to_sequence } => {
            // Rule R-QS-2.
            if *up_to_sequence > record.next_sequence {
                return Err(QsRejectReason::NotAllowed(QsNotAllowed::AcknowledgesUnqueued).into());
            }
            if *up_to_sequence <= record.first_unacknowledged {
                return answer(QsClientResponseBody::Ok, QsStatus::Duplicate);
            }
            Ok(write(
                client.now_ms,
                QsChange::Acknowledge {
                    queue_id: queue_id.to_vec(),
                    up_to_sequence: *up_to_sequence,
                },
                QsClientResponseBody::Ok,
            )?)
        }
        QsClientRequestBody::CreateQueue { .. } => Err(internal("create handled above")),
    }
}

/// `create_queue`: proof of possession of the owner key, then a fresh queue, or the queue
/// the key already owns, answered encrypted to the request's `response_key`
/// (wire-format.md §10.3): a replay of the signed request, by anyone, is answered with a
/// ciphertext only the owner opens.
fn create<C: OpenMlsCrypto + OpenMlsRand, S: QsStorage>(
    qs: &QueueingService<C>,
    client: &ClientRequest,
    owner_key: &[u8],
    response_key: &[u8],
    storage: &S,
) -> Result<QsPlan, QsFailure<S::Error>> {
    if !client.request.queue_id.as_slice().is_empty() {
        // Rule R-QS-3.
        return Err(QsRejectReason::NotAllowed(QsNotAllowed::CreateQueueNamesQueue).into());
    }
    verify(qs, client, owner_key)?;
    let sealed = |queue_id: &[u8], token: &[u8]| -> Result<_, QsFailure<S::Error>> {
        let created = encode(&QueueCreated {
            queue_id: queue_id.to_vec().into(),
            fanout_auth_token: token.to_vec().into(),
            queue_encryption_key: VLBytes::from(qs.key.public_key().to_vec()),
        })
        .map_err(internal)?;
        // The key is the client's: one that HPKE refuses is the client's fault.
        let ciphertext = seal_with_label(
            &qs.crypto,
            response_key,
            QUEUE_CREATED_LABEL,
            qs.config.domain.as_bytes(),
            &created,
        )
        .map_err(|e| match e {
            SealError::InvalidKey => QsFailure::Reject(QsRejectReason::InvalidResponseKey),
            other => internal(other),
        })?;
        Ok(QsClientResponseBody::EncryptedQueueCreated(ciphertext))
    };
    if let Some(queue_id) = storage.queue_of_owner(owner_key).map_err(storage_error)? {
        let record = storage
            .queue(&queue_id)
            .map_err(storage_error)?
            .ok_or_else(|| internal("owner index names a missing queue"))?;
        let body = sealed(&queue_id, &record.fanout_auth_token)?;
        return answer(body, QsStatus::Duplicate);
    }
    let queue_id = qs.crypto.random_vec(QUEUE_ID_BYTES).map_err(internal)?;
    let token = qs.crypto.random_vec(TOKEN_BYTES).map_err(internal)?;
    let body = sealed(&queue_id, &token)?;
    write(
        client.now_ms,
        QsChange::CreateQueue {
            queue_id,
            record: QueueRecord {
                owner_key: owner_key.to_vec(),
                fanout_auth_token: token,
                next_sequence: 0,
                first_unacknowledged: 0,
                queued_bytes: 0,
            },
        },
        body,
    )
}

/// `fetch`: a page from the first message the client asked for and has not acknowledged.
fn fetch<C: OpenMlsCrypto + OpenMlsRand, S: QsStorage>(
    qs: &QueueingService<C>,
    queue_id: &[u8],
    record: &QueueRecord,
    from_sequence: u64,
    max_messages: u32,
    storage: &S,
) -> Result<QsPlan, QsFailure<S::Error>> {
    let from = from_sequence.max(record.first_unacknowledged);
    let limit = max_messages.min(qs.config.max_page) as usize;
    let messages = storage
        .messages(queue_id, from, limit, qs.config.max_page_bytes)
        .map_err(storage_error)?;
    let next_sequence = messages
        .last()
        .map_or(from, |m| m.sequence_number.saturating_add(1));
    let body = QsClientResponseBody::Messages(QueuedMessages {
        messages,
        next_sequence,
        remaining: record.next_sequence.saturating_sub(next_sequence),
    });
    answer(body, QsStatus::Accepted)
}

/// Checks the request's signature with the queue owner's key (RFC 9420 §5.1.2
/// `VerifyWithLabel`, label "MIMI QS Request").
fn verify<C: OpenMlsCrypto + OpenMlsRand, E: std::error::Error + 'static>(
    qs: &QueueingService<C>,
    client: &ClientRequest,
    owner_key: &[u8],
) -> Result<(), QsFailure<E>> {
    qs.crypto
        .verify_signature(
            qs.config.signature_scheme,
            &client.sign_content,
            owner_key,
            client.request.signature.as_slice(),
        )
        // Rule R-QS-1.
        .map_err(|_| QsRejectReason::SignatureDoesNotVerify.into())
}

fn encode_response<E: std::error::Error + 'static>(
    body: QsClientResponseBody,
) -> Result<Vec<u8>, QsFailure<E>> {
    encode(&QsClientResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body,
    })
    .map_err(internal)
}

fn answer<E: std::error::Error + 'static>(
    body: QsClientResponseBody,
    status: QsStatus,
) -> Result<QsPlan, QsFailure<E>> {
    Ok(QsPlan {
        writes: None,
        outcome: QsOutcome {
            response: encode_response(body)?,
            status,
            enqueued: Vec::new(),
            invalid_recipients: Vec::new(),
            full_recipients: Vec::new(),
            refusal: None,
            stats: QsStats::default(),
        },
    })
}

fn write<E: std::error::Error + 'static>(
    now_ms: u64,
    change: QsChange,
    body: QsClientResponseBody,
) -> Result<QsPlan, QsFailure<E>> {
    let mut plan = answer(body, QsStatus::Accepted)?;
    plan.writes = Some(QsWriteSet {
        changes: vec![change],
        now_ms,
    });
    Ok(plan)
}
