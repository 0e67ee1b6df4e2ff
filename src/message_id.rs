//! The mimi-content message ID (draft-ietf-mimi-content-08 §"Message ID", the length-prefixed
//! construction of PR #70; wire-format.md §15.8):
//!
//! ```text
//! hash_output = SHA-256( uint16 senderUriLength || senderUri ||
//!                        uint16 roomUriLength   || roomUri   ||
//!                        message || salt )
//! messageId   = hashAlg (0x01) || hash_output[0..31]          /* 32 octets */
//! ```
//!
//! `message` is the exact CBOR encoding of the `mimiContent` array as received (never
//! re-encoded), `salt` its first element (16 octets), appended again as a guard against
//! SHA-256 length extension. `senderUri` and `roomUri` are the values of the content's
//! extensions 1 (`sender_uri`) and 2 (`room_uri`), as UTF-8 bytes; their lengths are
//! big-endian uint16. The hash is SHA-256 (hash ID 0x01 of the IANA Named Information
//! registry) whatever the MLS ciphersuite.
//!
//! The hub never sees message content (it is end-to-end encrypted); clients compute IDs to
//! refer to messages (replies, reactions, edits) and abuse reports name messages by them.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::HashType;

/// The length of a message ID: the hash ID octet and 31 octets of the hash.
pub const MESSAGE_ID_LEN: usize = 32;
/// The length of a mimi-content salt.
pub const SALT_LEN: usize = 16;
/// The first octet of a message ID made with SHA-256 (IANA Named Information hash registry).
pub const HASH_ID_SHA256: u8 = 0x01;

/// CBOR: an array of 7 elements (the `mimiContent` array, mimi-content §"Message format").
const CBOR_ARRAY_OF_7: u8 = 0x87;
/// CBOR: a byte string of 16 bytes (the salt, the array's first element).
const CBOR_BYTES_16: u8 = 0x50;

/// Why a message ID could not be computed or did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageIdError {
    /// The message does not begin like a `mimiContent` array with a 16-octet salt (CBOR
    /// `0x87 0x50`), so it has no salt to hash.
    #[error("not a mimiContent array beginning with a 16-octet salt")]
    NotMimiContent,
    /// `senderUri` or `roomUri` is longer than a uint16 length prefix can say.
    #[error("{which} is {len} bytes, more than a uint16 length prefix allows")]
    UriTooLong {
        /// `"sender_uri"` or `"room_uri"`.
        which: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A message ID's first octet names a hash algorithm other than SHA-256 (0x01).
    #[error("unknown message ID hash algorithm 0x{0:02x}")]
    UnknownHashAlgorithm(u8),
    /// A message ID is not 32 octets long.
    #[error("a message ID is {MESSAGE_ID_LEN} octets, not {0}")]
    WrongLength(usize),
    /// The crypto provider failed to hash.
    #[error("hashing failed")]
    Crypto,
    /// The message ID does not match the message.
    #[error("the message ID does not match the message")]
    Mismatch,
}

/// The salt of an encoded `mimiContent` message: the 16 octets of the byte string that is the
/// array's first element.
pub fn content_salt(message_cbor: &[u8]) -> Result<[u8; SALT_LEN], MessageIdError> {
    match message_cbor {
        [CBOR_ARRAY_OF_7, CBOR_BYTES_16, rest @ ..] => rest
            .get(..SALT_LEN)
            .and_then(|salt| salt.try_into().ok())
            .ok_or(MessageIdError::NotMimiContent),
        _ => Err(MessageIdError::NotMimiContent),
    }
}

/// The bytes hashed into a message ID: `uint16 len || sender_uri || uint16 len || room_uri ||
/// message_cbor || salt`.
pub fn message_id_input(
    sender_uri: &str,
    room_uri: &str,
    message_cbor: &[u8],
) -> Result<Vec<u8>, MessageIdError> {
    let salt = content_salt(message_cbor)?;
    let mut input = Vec::with_capacity(4 + sender_uri.len() + room_uri.len() + message_cbor.len());
    for (which, uri) in [("sender_uri", sender_uri), ("room_uri", room_uri)] {
        let len = u16::try_from(uri.len()).map_err(|_| MessageIdError::UriTooLong {
            which,
            len: uri.len(),
        })?;
        input.extend_from_slice(&len.to_be_bytes());
        input.extend_from_slice(uri.as_bytes());
    }
    input.extend_from_slice(message_cbor);
    input.extend_from_slice(&salt);
    Ok(input)
}

/// The message ID of an encoded `mimiContent` message sent by `sender_uri` in `room_uri`.
pub fn message_id(
    crypto: &impl OpenMlsCrypto,
    sender_uri: &str,
    room_uri: &str,
    message_cbor: &[u8],
) -> Result<[u8; MESSAGE_ID_LEN], MessageIdError> {
    let input = message_id_input(sender_uri, room_uri, message_cbor)?;
    let hash = crypto
        .hash(HashType::Sha2_256, &input)
        .map_err(|_| MessageIdError::Crypto)?;
    let mut id = [0u8; MESSAGE_ID_LEN];
    id[0] = HASH_ID_SHA256;
    let tail = hash
        .get(..MESSAGE_ID_LEN - 1)
        .ok_or(MessageIdError::Crypto)?;
    id[1..].copy_from_slice(tail);
    Ok(id)
}

/// Checks that `id` is the message ID of the message: 32 octets, hash ID 0x01 (an unknown
/// algorithm is refused: mimi-content defines only SHA-256), and the recomputed value, compared in constant
/// time.
pub fn check_message_id(
    crypto: &impl OpenMlsCrypto,
    id: &[u8],
    sender_uri: &str,
    room_uri: &str,
    message_cbor: &[u8],
) -> Result<(), MessageIdError> {
    if id.len() != MESSAGE_ID_LEN {
        return Err(MessageIdError::WrongLength(id.len()));
    }
    if id[0] != HASH_ID_SHA256 {
        return Err(MessageIdError::UnknownHashAlgorithm(id[0]));
    }
    let expected = message_id(crypto, sender_uri, room_uri, message_cbor)?;
    let difference = expected
        .iter()
        .zip(id)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if difference != 0 {
        return Err(MessageIdError::Mismatch);
    }
    Ok(())
}
