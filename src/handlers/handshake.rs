//! Checks of the MLS handshake messages members send: framing (a PublicMessage of the expected
//! content type, for the expected group), the epoch, and how openmls's validation failures
//! become refusals.

use openmls::prelude::{
    ContentType, GroupEpoch, MlsMessageBodyIn, PublicMessageIn, PublicProcessMessageError,
};

use crate::error::{internal, InvalidGroupId, InvalidMessageType, InvalidMlsMessage, RejectReason};
use crate::wire::MlsMessageBytes;

/// docs/decisions.md D11: handshake messages must be PublicMessages, so the DS can validate them;
/// the content type and group must be the expected ones.
pub(crate) fn public_handshake(
    bytes: &MlsMessageBytes,
    group_id: &[u8],
    content_type: ContentType,
) -> Result<PublicMessageIn, RejectReason> {
    let message = public_handshake_in_any_group(bytes, content_type)?;
    // Rule R-GID-5.
    if message.group_id().as_slice() != group_id {
        return Err(RejectReason::InvalidGroupId(
            InvalidGroupId::MessageForAnotherGroup,
        ));
    }
    Ok(message)
}

/// Like [`public_handshake`], for requests that are routed by the message's own group ID.
pub(crate) fn public_handshake_in_any_group(
    bytes: &MlsMessageBytes,
    content_type: ContentType,
) -> Result<PublicMessageIn, RejectReason> {
    let message = match bytes.parse()?.extract() {
        MlsMessageBodyIn::PublicMessage(message) => message,
        // Rule R-MSG-1.
        MlsMessageBodyIn::PrivateMessage(_) => {
            return Err(RejectReason::InvalidMessageType(
                InvalidMessageType::HandshakeNotPublic,
            ))
        }
        // Rule R-MSG-2.
        _ => {
            return Err(RejectReason::InvalidMessageType(
                InvalidMessageType::ExpectedPublicMessage,
            ))
        }
    };
    // Rules R-MSG-3, R-MSG-4.
    if message.content_type() != content_type {
        return Err(RejectReason::InvalidMessageType(match content_type {
            ContentType::Commit => InvalidMessageType::ExpectedCommit,
            _ => InvalidMessageType::ExpectedProposal,
        }));
    }
    Ok(message)
}

/// openmls validation failures are the peer's fault, except library errors.
pub(crate) fn mls_reject<E: std::error::Error + 'static>(
    e: PublicProcessMessageError,
) -> crate::error::Failure<E> {
    match e {
        PublicProcessMessageError::LibraryError(e) => internal(e),
        // Rule R-MLS-1.
        other => RejectReason::InvalidMlsMessage(InvalidMlsMessage::Validation {
            detail: other.to_string(),
        })
        .into(),
    }
}

/// RFC 9420 §6: a handshake message must be for the current epoch. Older is `wrong_epoch`,
/// newer is `future_epoch` (a client ahead of the DS has a state the DS never accepted).
pub(crate) fn check_epoch(
    current: u64,
    message: GroupEpoch,
    tolerance: u64,
) -> Result<(), RejectReason> {
    let message_epoch = message.as_u64();
    if message_epoch > current {
        // Rule R-EPOCH-2.
        Err(RejectReason::FutureEpoch {
            current,
            message_epoch,
        })
    } else if message_epoch.saturating_add(tolerance) < current {
        // Rule R-EPOCH-1.
        Err(RejectReason::WrongEpoch {
            current,
            message_epoch,
        })
    } else {
        Ok(())
    }
}
