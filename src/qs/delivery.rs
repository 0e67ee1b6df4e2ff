//! Deliveries from a DS: `QueueingServiceRequest` in, `QueueingServiceResponse` out
//! (wire-format.md §6.2, §6.3, §10.2).

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::types::HashType;

use super::{internal, storage_error, QsFailure, QsOutcome, QsPlan, QsStatus, QueueingService};
use crate::constant_time::constant_time_eq;
use crate::error::QsRejectReason;
use crate::qs::{queued_size, DeliveryMark, QsChange, QsStorage, QsWriteSet, QueueRecord};
use crate::wire::{
    decode_exact, encode, QueueInfoPlaintext, QueuedMessage, QueueingServiceRequest,
    QueueingServiceResponse, RecipientRefusal,
};

/// A delivery that passed the checks that need no storage, with its duplicate-detection hash
/// and its recipients opened.
pub(super) struct Delivery {
    request: QueueingServiceRequest,
    hash: Vec<u8>,
    /// Each recipient's queue information, if it opens with this provider's key for
    /// deliveries from the request's `sender_domain`. Opened once here, not in [`plan`],
    /// which the step API may run more than once per request.
    opened: Vec<Option<QueueInfoPlaintext>>,
}

impl Delivery {
    /// The duplicate-detection hash: the delivery's marks are read and written under it.
    pub(super) fn hash(&self) -> &[u8] {
        &self.hash
    }

    /// How many recipients it names.
    pub(super) fn recipients(&self) -> usize {
        self.request.recipients.len()
    }
}

/// Size, version, decoding, the forwarding-attack rule and the sender check: everything that
/// refuses the whole request before storage is read; then each recipient is opened.
pub(super) fn decode<C: OpenMlsCrypto + OpenMlsRand, E: std::error::Error + 'static>(
    qs: &QueueingService<C>,
    bytes: &[u8],
    authenticated_sender: Option<&str>,
) -> Result<Delivery, QsFailure<E>> {
    qs.check_size_and_version(bytes)?;
    let request: QueueingServiceRequest = decode_exact(bytes).map_err(QsRejectReason::Malformed)?;
    // draft-kohbrok-mimi-transport-00 §"Security considerations": a provider checks that the
    // payload names it as recipient, so a delivery cannot be replayed to another provider.
    if request.recipient_domain.as_slice() != qs.config.domain.as_bytes() {
        // Rule R-QS-4.
        return Err(QsRejectReason::WrongRecipient.into());
    }
    // DS-05/06 and TR-01 leave DS authentication to mutual TLS: the authenticated peer must be
    // the DS the delivery claims to come from.
    if let Some(peer) = authenticated_sender {
        if request.sender_domain.as_slice() != peer.as_bytes() {
            // Rule R-QS-5.
            return Err(QsRejectReason::SenderMismatch.into());
        }
    }
    // The same message from the same DS is the same delivery, whichever recipients a retry
    // batches it with (draft-ietf-mimi-protocol-06 `/notify`: duplicates are byte-identical).
    // Hashed: the encoding of `(opaque sender_domain<V>, FanoutMessage)`, which is the two
    // encodings one after the other. Re-encoding what just decoded cannot fail.
    let mut hashed = encode(&request.sender_domain).map_err(internal)?;
    hashed.extend_from_slice(&encode(&request.message).map_err(internal)?);
    let hash = qs
        .crypto
        .hash(HashType::Sha2_256, &hashed)
        .map_err(|e| internal(format!("{e:?}")))?;
    let opened = request
        .recipients
        .iter()
        .map(|sealed| {
            qs.key.open(
                qs.config.domain.as_bytes(),
                request.sender_domain.as_slice(),
                sealed.as_slice(),
            )
        })
        .collect();
    Ok(Delivery {
        request,
        hash,
        opened,
    })
}

/// Plans one enqueue per distinct, valid, not yet served queue among the recipients.
pub(super) fn plan<C: OpenMlsCrypto + OpenMlsRand, S: QsStorage>(
    qs: &QueueingService<C>,
    now_ms: u64,
    delivery: &Delivery,
    storage: &S,
) -> Result<QsPlan, QsFailure<S::Error>> {
    let request = &delivery.request;
    let mut invalid = Vec::new();
    let mut full = Vec::new();
    let mut changes = Vec::new();
    let mut served: Vec<Vec<u8>> = Vec::new();
    let mut duplicate = false;
    for (index, opened) in delivery.opened.iter().enumerate() {
        let index = u32::try_from(index).map_err(internal)?;
        let Some((queue_id, record)) = find_recipient(opened.as_ref(), storage)? else {
            invalid.push(index);
            continue;
        };
        // Two recipients may be the same queue (a client in a group twice, or two ciphertexts
        // of one queue): it gets the message once.
        if served.contains(&queue_id) {
            continue;
        }
        served.push(queue_id.clone());
        if storage
            .has_mark(&queue_id, &delivery.hash, now_ms)
            .map_err(storage_error)?
        {
            duplicate = true;
            continue;
        }
        let message = QueuedMessage {
            sequence_number: record.next_sequence,
            received_ms: now_ms,
            sender_domain: request.sender_domain.clone(),
            message: request.message.clone(),
        };
        // A full queue refuses this message for now, without a mark, so a later redelivery
        // is a new delivery (wire-format.md §10.2 "Queue limits").
        if is_full(qs, &record, queued_size(&message)) {
            full.push(index);
            continue;
        }
        changes.push(QsChange::Enqueue {
            queue_id: queue_id.clone(),
            message,
            mark: DeliveryMark {
                hash: delivery.hash.clone(),
                expires_at_ms: now_ms.saturating_add(qs.config.duplicate_window_ms),
            },
        });
    }
    let response = if !full.is_empty() {
        // Only a full queue needs the per-recipient form: DS-00 peers keep getting the two
        // responses they know otherwise (wire-format.md §6.3).
        let refusal = |reason: QsRejectReason| {
            move |&recipient: &u32| RecipientRefusal {
                recipient,
                code: reason.code() as u16,
            }
        };
        let mut refused: Vec<RecipientRefusal> = invalid
            .iter()
            .map(refusal(QsRejectReason::UnknownQueue))
            .chain(full.iter().map(refusal(QsRejectReason::QueueFull)))
            .collect();
        refused.sort_by_key(|r| r.recipient);
        QueueingServiceResponse::RecipientsRefused(refused)
    } else if invalid.is_empty() {
        QueueingServiceResponse::Ok
    } else {
        QueueingServiceResponse::InvalidClientQueueInformation(invalid.clone())
    };
    let enqueued: Vec<Vec<u8>> = changes
        .iter()
        .filter_map(|c| match c {
            QsChange::Enqueue { queue_id, .. } => Some(queue_id.clone()),
            _ => None,
        })
        .collect();
    let status = if enqueued.is_empty() && duplicate {
        QsStatus::Duplicate
    } else {
        QsStatus::Accepted
    };
    let outcome = QsOutcome {
        response: encode(&response).map_err(internal)?,
        status,
        enqueued,
        invalid_recipients: invalid,
        full_recipients: full,
        refusal: None,
        stats: super::QsStats::default(),
    };
    let writes = (!changes.is_empty()).then_some(QsWriteSet { changes, now_ms });
    Ok(QsPlan { writes, outcome })
}

/// A recipient's queue ID and record.
type OpenedRecipient = (Vec<u8>, QueueRecord);

/// Whether a queue cannot take one more message of `size` bytes under the configured limits.
/// An empty queue always takes one, so no single message is refused forever.
fn is_full<C>(qs: &QueueingService<C>, record: &QueueRecord, size: u64) -> bool {
    let held = record
        .next_sequence
        .saturating_sub(record.first_unacknowledged);
    if held == 0 {
        return false;
    }
    let too_many = qs
        .config
        .max_queue_messages
        .is_some_and(|limit| held >= limit);
    let too_large = qs
        .config
        .max_queue_bytes
        .is_some_and(|limit| record.queued_bytes.saturating_add(size) > limit);
    too_many || too_large
}

/// The queue a recipient names, with its record, if its sealed information opened with this
/// provider's key for deliveries from the delivery's `sender_domain` (which the transport
/// authenticated), names an existing queue and carries that queue's token.
fn find_recipient<S: QsStorage>(
    opened: Option<&QueueInfoPlaintext>,
    storage: &S,
) -> Result<Option<OpenedRecipient>, QsFailure<S::Error>> {
    let Some(info) = opened else {
        return Ok(None);
    };
    let queue_id = info.queue_id.as_slice();
    let Some(record) = storage.queue(queue_id).map_err(storage_error)? else {
        return Ok(None);
    };
    let valid = constant_time_eq(&record.fanout_auth_token, info.fanout_auth_token.as_slice());
    Ok(valid.then(|| (queue_id.to_vec(), record)))
}
