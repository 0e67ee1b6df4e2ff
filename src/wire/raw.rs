//! Embedded MLS structures kept as the exact bytes the peer sent.
//!
//! The DS forwards MLS messages verbatim (fanout, GroupInfo service), so it keeps the bytes it
//! received rather than re-encoding openmls' parsed form. At decode time the bytes are checked
//! to parse as the MLS type, which also tells where the structure ends (an `MLSMessage` carries
//! no outer length prefix, RFC 9420 §6).

use std::marker::PhantomData;
use std::sync::Arc;

use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::{MlsMessageIn, RatchetTreeIn};
use tls_codec::{DeserializeBytes, Size};

/// Raw bytes that are known to hold exactly one valid encoding of `T`.
///
/// The bytes are immutable and shared: a clone copies a pointer, so that a message fanned out
/// to many providers is held once (wire-format.md §16.2).
#[derive(Debug)]
pub struct Raw<T> {
    bytes: Arc<Vec<u8>>,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Self {
        Self {
            bytes: Arc::clone(&self.bytes),
            _kind: PhantomData,
        }
    }
}
impl<T> PartialEq for Raw<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl<T> Eq for Raw<T> {}

impl<T: DeserializeBytes> Raw<T> {
    /// Wraps bytes after checking that they hold exactly one `T`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, super::DecodeError> {
        super::decode_exact::<T>(&bytes)?;
        Ok(Self {
            bytes: Arc::new(bytes),
            _kind: PhantomData,
        })
    }

    /// Parses the bytes into the openmls type. The bytes were checked when this value was
    /// built, so this only fails if openmls' decoder is not deterministic.
    pub fn parse(&self) -> Result<T, super::DecodeError> {
        super::decode_exact::<T>(&self.bytes)
    }
}

impl<T> Raw<T> {
    /// The exact encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Consumes the wrapper, returning the encoding (copied only if a clone still shares it).
    pub fn into_bytes(self) -> Vec<u8> {
        Arc::try_unwrap(self.bytes).unwrap_or_else(|shared| shared.as_ref().clone())
    }
}

impl<T> Size for Raw<T> {
    fn tls_serialized_len(&self) -> usize {
        self.bytes.len()
    }
}

impl<T> tls_codec::Serialize for Raw<T> {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        writer.write_all(&self.bytes)?;
        Ok(self.bytes.len())
    }
}

impl<T: DeserializeBytes> DeserializeBytes for Raw<T> {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (_, rest) = T::tls_deserialize_bytes(bytes)?;
        let used = bytes.len() - rest.len();
        Ok((
            Self {
                bytes: Arc::new(bytes[..used].to_vec()),
                _kind: PhantomData,
            },
            rest,
        ))
    }
}

/// An `MLSMessage` (RFC 9420 §6) as received.
pub type MlsMessageBytes = Raw<MlsMessageIn>;

/// A bare `GroupInfo` (RFC 9420 §12.4.3), not wrapped in an `MLSMessage`, as stored
/// (draft-ietf-mimi-protocol-06 `GroupInfoRatchetTreeTBE.groupInfo`; wire-format.md §5.4).
pub type GroupInfoBytes = Raw<VerifiableGroupInfo>;

/// A ratchet tree, `optional<Node> ratchet_tree<V>` (RFC 9420 §12.4.3.3), as received.
pub type RatchetTreeBytes = Raw<RatchetTreeIn>;
