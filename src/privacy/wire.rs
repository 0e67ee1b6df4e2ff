//! The codecs of privacy mode (wire-format.md §17.2, §17.4, §17.5): the keys a request carries,
//! the GroupContext extension that marks a privacy-mode group, and a sealed record as stored.

use tls_codec::{
    DeserializeBytes, Serialize, Size, TlsDeserializeBytes, TlsSerialize, TlsSize, VLByteSlice,
    VLBytes,
};

use super::key::StateKey;
use super::seal::SALT_BYTES;

/// The private-use GroupContext extension type (RFC 9420 §17.3) that marks a group as a
/// privacy-mode group; its data is a [`PrivacyModeExtension`] (wire-format.md §17.2).
pub const PRIVACY_MODE_EXTENSION_TYPE: u16 = 0xF1E6;

/// `StateKeyScheme`: how members derive the state key (wire-format.md §17.3). A uint8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum StateKeyScheme {
    /// `exporter_epoch_key(1)`: `MLS-Exporter("MIMI DS state key", "", KDF.Nh)` of each epoch.
    ExporterEpochKey = 1,
}

/// The data of GroupContext extension [`PRIVACY_MODE_EXTENSION_TYPE`]:
/// `struct { StateKeyScheme scheme; }`. Members agree on it through the key schedule, so the
/// hub can neither hide the mode from a joiner nor let a commit drop it (wire-format.md §17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct PrivacyModeExtension {
    /// The group's key scheme, fixed for its lifetime.
    pub scheme: StateKeyScheme,
}

/// The keys a request of a privacy-mode group carries (wire-format.md §17.4):
///
/// ```text
/// struct {
///     StateKeyScheme scheme;
///     uint64 epoch;                     /* the epoch of current_key */
///     opaque current_key<V>;
///     optional<StateKeyBytes> next_key; /* the key of epoch + 1; commits only */
/// } StateKeys;                          /* opaque StateKeyBytes<V> */
/// ```
///
/// The fields are private so that `next`, when present, is always the key of the epoch after
/// `current`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKeys {
    scheme: StateKeyScheme,
    current: StateKey,
    next: Option<StateKey>,
}

impl StateKeys {
    /// The keys of a request: `current` opens the group's state, `next` (commits only) is the
    /// key of the epoch the commit creates. `None` if `next` is not for `current.epoch() + 1`.
    pub fn new(scheme: StateKeyScheme, current: StateKey, next: Option<StateKey>) -> Option<Self> {
        let next_epoch = current.epoch().checked_add(1)?;
        if next.as_ref().is_some_and(|n| n.epoch() != next_epoch) {
            return None;
        }
        Some(Self {
            scheme,
            current,
            next,
        })
    }

    /// The scheme the keys were derived with.
    pub fn scheme(&self) -> StateKeyScheme {
        self.scheme
    }

    /// The key of the group's current epoch.
    pub fn current(&self) -> &StateKey {
        &self.current
    }

    /// The key of the next epoch, if the request carries it.
    pub fn next(&self) -> Option<&StateKey> {
        self.next.as_ref()
    }
}

impl Size for StateKeys {
    fn tls_serialized_len(&self) -> usize {
        self.scheme.tls_serialized_len()
            + self.current.epoch().tls_serialized_len()
            + VLByteSlice(self.current.secret()).tls_serialized_len()
            + 1
            + self
                .next
                .as_ref()
                .map_or(0, |n| VLByteSlice(n.secret()).tls_serialized_len())
    }
}

impl Serialize for StateKeys {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        // The secrets are written straight from the keys, never copied into a `VLBytes`.
        let mut written = self.scheme.tls_serialize(writer)?;
        written += self.current.epoch().tls_serialize(writer)?;
        written += VLByteSlice(self.current.secret()).tls_serialize(writer)?;
        match &self.next {
            None => written += 0u8.tls_serialize(writer)?,
            Some(next) => {
                written += 1u8.tls_serialize(writer)?;
                written += VLByteSlice(next.secret()).tls_serialize(writer)?;
            }
        }
        Ok(written)
    }
}

/// The layout [`StateKeys`] decodes through.
#[derive(TlsDeserializeBytes, TlsSize)]
struct StateKeysWire {
    scheme: StateKeyScheme,
    epoch: u64,
    current_key: VLBytes,
    next_key: Option<VLBytes>,
}

impl DeserializeBytes for StateKeys {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (wire, rest) = StateKeysWire::tls_deserialize_bytes(bytes)?;
        let current = StateKey::new(wire.epoch, wire.current_key.into());
        let next = match wire.next_key {
            None => None,
            Some(next) => {
                let epoch = wire.epoch.checked_add(1).ok_or_else(|| {
                    tls_codec::Error::DecodingError("next_key after the last epoch".into())
                })?;
                Some(StateKey::new(epoch, next.into()))
            }
        };
        let keys = Self {
            scheme: wire.scheme,
            current,
            next,
        };
        Ok((keys, rest))
    }
}

/// `SealedRecordFormat`: the layout of a [`SealedRecord`]. A uint8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum SealedRecordFormat {
    /// `sealed_record_v1(1)`: wire-format.md §17.5.
    SealedRecordV1 = 1,
}

/// A record of a privacy-mode group as the storage keeps it (wire-format.md §17.5). Everything
/// but `ciphertext` is in the clear: the format, the epoch of the key that sealed it, the
/// random salt and the key commitment.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SealedRecord {
    /// Always [`SealedRecordFormat::SealedRecordV1`].
    pub format: SealedRecordFormat,
    /// The epoch of the state key that sealed the record.
    pub key_epoch: u64,
    /// Fresh randomness of the sealing write, from which the AEAD key and nonce are derived.
    pub salt: [u8; SALT_BYTES],
    /// `ExpandWithLabel(state_key, "MIMI DS record commitment", ..., KDF.Nh)`: commits the
    /// record to one key.
    pub commitment: VLBytes,
    /// The AEAD ciphertext of the record's plaintext, with its tag.
    pub ciphertext: VLBytes,
}
