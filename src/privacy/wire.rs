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

/// One sealed record a [`Manifest`] lists: `struct { uint16 record_kind; opaque
/// record_key<V>; uint64 version; } ManifestEntry` (wire-format.md §17.6).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ManifestEntry {
    /// The record's [`super::SealedKind`] number.
    pub record_kind: u16,
    /// The record's key, as in its binding ([`super::RecordBinding::record_key`]).
    pub record_key: VLBytes,
    /// The group version the record was written at.
    pub version: u64,
}

/// The plaintext of a privacy-mode group's manifest (wire-format.md §17.6): the epoch and, for
/// every other sealed record of the group, the version it was written at. Entries are in
/// strictly increasing `(record_kind, record_key)` order, so a set of records has one encoding.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct Manifest {
    /// The group's epoch (the epoch of the key that seals the group).
    pub epoch: u64,
    /// The sealed records, ordered.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// A manifest listing `records` as `(binding, version)`; a later entry for the same record
    /// replaces an earlier one, and the result is ordered.
    pub fn new(epoch: u64, records: impl IntoIterator<Item = (super::RecordBinding, u64)>) -> Self {
        let mut by_record = std::collections::BTreeMap::new();
        for (binding, version) in records {
            by_record.insert((binding.kind as u16, binding.record_key), version);
        }
        Self {
            epoch,
            entries: by_record
                .into_iter()
                .map(|((record_kind, record_key), version)| ManifestEntry {
                    record_kind,
                    record_key: record_key.into(),
                    version,
                })
                .collect(),
        }
    }

    /// Whether the entries are in strictly increasing `(record_kind, record_key)` order: a
    /// reader treats a manifest that is not as corrupt state.
    pub fn is_canonical(&self) -> bool {
        self.entries.windows(2).all(|pair| {
            (pair[0].record_kind, pair[0].record_key.as_slice())
                < (pair[1].record_kind, pair[1].record_key.as_slice())
        })
    }

    /// The version the manifest lists for the record of `kind` with `record_key`, if any.
    pub fn version_of(&self, kind: super::SealedKind, record_key: &[u8]) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.record_kind == kind as u16 && e.record_key.as_slice() == record_key)
            .map(|e| e.version)
    }
}

/// Whether a ReInit proposal's fields after its `group_id` (`ProtocolVersion version;
/// CipherSuite cipher_suite; Extension extensions<V>;`, RFC 9420 §12.1.5) name a successor
/// in privacy mode: its extensions carry [`PRIVACY_MODE_EXTENSION_TYPE`] with the data of
/// `exporter_epoch_key` (wire-format.md §17.2). openmls keeps the proposal's fields private.
pub fn reinit_keeps_privacy_mode(after_group_id: &[u8]) -> Result<bool, tls_codec::Error> {
    #[derive(TlsDeserializeBytes, TlsSize)]
    struct ExtensionWire {
        extension_type: u16,
        extension_data: VLBytes,
    }
    let (_version, rest) = u16::tls_deserialize_bytes(after_group_id)?;
    let (_cipher_suite, rest) = u16::tls_deserialize_bytes(rest)?;
    let (extensions, _) = Vec::<ExtensionWire>::tls_deserialize_bytes(rest)?;
    let expected = PrivacyModeExtension {
        scheme: StateKeyScheme::ExporterEpochKey,
    }
    .tls_serialize_detached()?;
    Ok(extensions.iter().any(|extension| {
        extension.extension_type == PRIVACY_MODE_EXTENSION_TYPE
            && extension.extension_data.as_slice() == expected.as_slice()
    }))
}
