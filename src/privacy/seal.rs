//! Sealing and opening the records of a privacy-mode group (wire-format.md §17.5).
//!
//! A key-committing AEAD built only from the ciphersuite's HKDF and AEAD (`OpenMlsCrypto`):
//!
//! ```text
//! context    = SealedRecordContext { label, group_id, record_kind, record_key, version,
//!                                    key_epoch, salt }
//! commitment = ExpandWithLabel(state_key, "MIMI DS record commitment",
//!                              CommitmentContext { key_epoch, salt }, KDF.Nh)
//! aead_key   = ExpandWithLabel(state_key, "MIMI DS record key",   context, AEAD.Nk)
//! nonce      = ExpandWithLabel(state_key, "MIMI DS record nonce", context, AEAD.Nn)
//! ciphertext = AEAD.Seal(aead_key, nonce, aad = context, plaintext)
//! ```
//!
//! Opening recomputes the commitment first and refuses a key whose commitment differs
//! ([`OpenError::WrongKey`]) before anything is decrypted; AES-GCM and ChaCha20-Poly1305 alone
//! are not key-committing, the commitment is what makes a second key useless. The binding
//! (group, kind, record key, version) is in both the AEAD key derivation and the associated
//! data, so a record moved to another group, kind, key or version does not open
//! ([`OpenError::Altered`]).

use openmls::prelude::Ciphersuite;
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{Serialize as _, TlsSerialize, TlsSize, VLBytes};

use super::expand_with_label;
use super::key::StateKey;
use super::wire::{SealedRecord, SealedRecordFormat};
use crate::constant_time::constant_time_eq;
use crate::storage::RecordKind;
use crate::wire::decode_exact;

/// The `ExpandWithLabel` label of a sealed record's key commitment.
pub const COMMITMENT_LABEL: &str = "MIMI DS record commitment";
/// The `ExpandWithLabel` label of a sealed record's AEAD key.
pub const RECORD_KEY_LABEL: &str = "MIMI DS record key";
/// The `ExpandWithLabel` label of a sealed record's AEAD nonce.
pub const RECORD_NONCE_LABEL: &str = "MIMI DS record nonce";
/// The label at the start of every `SealedRecordContext`.
const CONTEXT_LABEL: &[u8] = b"MIMI DS sealed record";

/// The length of the salt each seal takes from the caller's randomness.
pub const SALT_BYTES: usize = 32;

/// `SealedKind`: what a sealed record is, a uint16 bound into every seal (wire-format.md
/// §17.5). The storage's [`RecordKind`]s that hold group data, numbered as the SQLite and
/// PostgreSQL backends store them, plus the two privacy-mode additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // each is the RecordKind of the same name, except the last two
pub enum SealedKind {
    Roster = 2,
    Sequencer = 3,
    MlsState = 4,
    GroupInfo = 5,
    PendingProposals = 6,
    WelcomeSnapshots = 8,
    WelcomeTree = 9,
    Activity = 10,
    IdentityLinks = 24,
    /// The list of the versions at which the group's other records were written (§17.6).
    Manifest = 32,
    /// The success response a replay mark keeps for a byte-identical retry (§17.7).
    ReplayResponse = 33,
}

/// What a record is bound to: opening succeeds only with the same binding it was sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBinding {
    /// The group the record belongs to.
    pub group_id: Vec<u8>,
    /// The kind of record.
    pub kind: SealedKind,
    /// The key of a keyed record: a `WelcomeTree`'s epoch (8 bytes, big-endian), a replay
    /// response's replay key; empty for every other kind.
    pub record_key: Vec<u8>,
    /// The group version the record was written at (the version the write set moves the group
    /// to); 0 for a replay response.
    pub version: u64,
}

impl RecordBinding {
    /// The binding of a stored record of `kind` written at `version`. `None` for the kinds
    /// that stay in the clear (`Reservation`, `Tombstone`: they hold no member data, and
    /// backends read their expiry) and for kinds this version does not know.
    pub fn for_record(group_id: &[u8], kind: RecordKind, version: u64) -> Option<Self> {
        let (kind, record_key) = match kind {
            RecordKind::Roster => (SealedKind::Roster, Vec::new()),
            RecordKind::Sequencer => (SealedKind::Sequencer, Vec::new()),
            RecordKind::MlsState => (SealedKind::MlsState, Vec::new()),
            RecordKind::GroupInfo => (SealedKind::GroupInfo, Vec::new()),
            RecordKind::PendingProposals => (SealedKind::PendingProposals, Vec::new()),
            RecordKind::WelcomeSnapshots => (SealedKind::WelcomeSnapshots, Vec::new()),
            RecordKind::WelcomeTree { epoch } => {
                (SealedKind::WelcomeTree, epoch.to_be_bytes().to_vec())
            }
            RecordKind::IdentityLinks => (SealedKind::IdentityLinks, Vec::new()),
            RecordKind::Activity => (SealedKind::Activity, Vec::new()),
            _ => return None,
        };
        Some(Self {
            group_id: group_id.to_vec(),
            kind,
            record_key,
            version,
        })
    }

    /// The binding of the group's manifest written at `version` (wire-format.md §17.6).
    pub fn manifest(group_id: &[u8], version: u64) -> Self {
        Self {
            group_id: group_id.to_vec(),
            kind: SealedKind::Manifest,
            record_key: Vec::new(),
            version,
        }
    }

    /// The binding of the response a replay mark keeps, under its replay key (§17.7).
    pub fn replay_response(group_id: &[u8], replay_key: &[u8]) -> Self {
        Self {
            group_id: group_id.to_vec(),
            kind: SealedKind::ReplayResponse,
            record_key: replay_key.to_vec(),
            version: 0,
        }
    }
}

/// Why a record could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key is not `KDF.Nh` bytes long for the ciphersuite.
    #[error("state key of {got} bytes, the ciphersuite needs {expected}")]
    KeyLength {
        /// `KDF.Nh`.
        expected: usize,
        /// The key's length.
        got: usize,
    },
    /// A structure could not be encoded (a vector over the MLS varint limit).
    #[error("encoding failed: {0}")]
    Encoding(String),
    /// The crypto provider failed.
    #[error("crypto provider error: {0}")]
    Crypto(String),
}

/// Why a sealed record did not open. No variant carries any plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The bytes are not a [`SealedRecord`].
    #[error("not a sealed record: {0}")]
    Malformed(String),
    /// The key is not `KDF.Nh` bytes long for the ciphersuite.
    #[error("state key of {got} bytes, the ciphersuite needs {expected}")]
    KeyLength {
        /// `KDF.Nh`.
        expected: usize,
        /// The key's length.
        got: usize,
    },
    /// The key is for another epoch than the one that sealed the record.
    #[error("record sealed under the key of epoch {record_epoch}, key of epoch {key_epoch}")]
    KeyEpoch {
        /// The epoch in the record's header.
        record_epoch: u64,
        /// The epoch of the key offered.
        key_epoch: u64,
    },
    /// The key's commitment is not the record's: a wrong key, refused before decryption.
    #[error("the state key does not match the record's commitment")]
    WrongKey,
    /// The key is the right one but the record does not decrypt under this binding: it was
    /// moved to another group, kind, record key or version, rolled back, or altered.
    #[error("the record does not open under its binding")]
    Altered,
    /// The crypto provider failed for another reason.
    #[error("crypto provider error: {0}")]
    Crypto(String),
}

/// RFC 9420-style context of the AEAD key, nonce and associated data.
#[derive(TlsSerialize, TlsSize)]
struct SealedRecordContext<'a> {
    label: VLBytes,
    group_id: tls_codec::VLByteSlice<'a>,
    record_kind: u16,
    record_key: tls_codec::VLByteSlice<'a>,
    version: u64,
    key_epoch: u64,
    salt: [u8; SALT_BYTES],
}

/// The context of the key commitment: only what the header carries in the clear.
#[derive(TlsSerialize, TlsSize)]
struct CommitmentContext {
    key_epoch: u64,
    salt: [u8; SALT_BYTES],
}

/// The commitment, AEAD key and nonce of one seal, and its associated data.
struct Derived {
    commitment: Vec<u8>,
    aead_key: Vec<u8>,
    nonce: Vec<u8>,
    context: Vec<u8>,
}

fn check_key_length(ciphersuite: Ciphersuite, key: &StateKey) -> Result<(), (usize, usize)> {
    // HMAC pads a short key with zeros, so `k` and `k || 0x00` would derive the same values:
    // only keys of exactly KDF.Nh bytes are accepted, which makes the derivation injective.
    let expected = ciphersuite.hash_length();
    match key.secret().len() {
        got if got == expected => Ok(()),
        got => Err((expected, got)),
    }
}

fn commitment(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &StateKey,
    key_epoch: u64,
    salt: &[u8; SALT_BYTES],
) -> Result<Vec<u8>, String> {
    let context = CommitmentContext {
        key_epoch,
        salt: *salt,
    }
    .tls_serialize_detached()
    .map_err(|e| e.to_string())?;
    expand_with_label(
        crypto,
        ciphersuite,
        key.secret(),
        COMMITMENT_LABEL.as_bytes(),
        &context,
        ciphersuite.hash_length(),
    )
}

fn derive(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &StateKey,
    binding: &RecordBinding,
    salt: &[u8; SALT_BYTES],
) -> Result<Derived, String> {
    let context = SealedRecordContext {
        label: CONTEXT_LABEL.to_vec().into(),
        group_id: tls_codec::VLByteSlice(&binding.group_id),
        record_kind: binding.kind as u16,
        record_key: tls_codec::VLByteSlice(&binding.record_key),
        version: binding.version,
        key_epoch: key.epoch(),
        salt: *salt,
    }
    .tls_serialize_detached()
    .map_err(|e| e.to_string())?;
    let expand = |label: &str, length| {
        expand_with_label(
            crypto,
            ciphersuite,
            key.secret(),
            label.as_bytes(),
            &context,
            length,
        )
    };
    Ok(Derived {
        commitment: commitment(crypto, ciphersuite, key, key.epoch(), salt)?,
        aead_key: expand(RECORD_KEY_LABEL, ciphersuite.aead_key_length())?,
        nonce: expand(RECORD_NONCE_LABEL, ciphersuite.aead_nonce_length())?,
        context,
    })
}

/// Seals `plaintext` as the record `binding` names, under `key`, and returns the encoded
/// [`SealedRecord`] to store. `salt` MUST be fresh randomness for every call (the caller's
/// randomness input): it makes the AEAD key and nonce of each seal unique, even when two
/// racing writers seal different plaintexts for the same group, kind and version.
pub fn seal_record(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &StateKey,
    binding: &RecordBinding,
    salt: [u8; SALT_BYTES],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    check_key_length(ciphersuite, key)
        .map_err(|(expected, got)| SealError::KeyLength { expected, got })?;
    let derived = derive(crypto, ciphersuite, key, binding, &salt).map_err(SealError::Crypto)?;
    let ciphertext = crypto
        .aead_encrypt(
            ciphersuite.aead_algorithm(),
            &derived.aead_key,
            plaintext,
            &derived.nonce,
            &derived.context,
        )
        .map_err(|e| SealError::Crypto(format!("{e:?}")))?;
    SealedRecord {
        format: SealedRecordFormat::SealedRecordV1,
        key_epoch: key.epoch(),
        salt,
        commitment: derived.commitment.into(),
        ciphertext: ciphertext.into(),
    }
    .tls_serialize_detached()
    .map_err(|e| SealError::Encoding(e.to_string()))
}

/// Opens a stored [`SealedRecord`] with `key`, for the record `binding` names. In order: the
/// bytes must decode; the key must be `KDF.Nh` bytes; its epoch must be the record's
/// ([`OpenError::KeyEpoch`]); its commitment must equal the record's ([`OpenError::WrongKey`],
/// checked before any decryption); and the AEAD must open under the binding
/// ([`OpenError::Altered`]).
pub fn open_record(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &StateKey,
    binding: &RecordBinding,
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let record =
        decode_exact::<SealedRecord>(sealed).map_err(|e| OpenError::Malformed(e.to_string()))?;
    check_key_length(ciphersuite, key)
        .map_err(|(expected, got)| OpenError::KeyLength { expected, got })?;
    if record.key_epoch != key.epoch() {
        return Err(OpenError::KeyEpoch {
            record_epoch: record.key_epoch,
            key_epoch: key.epoch(),
        });
    }
    let derived =
        derive(crypto, ciphersuite, key, binding, &record.salt).map_err(OpenError::Crypto)?;
    if !constant_time_eq(&derived.commitment, record.commitment.as_slice()) {
        return Err(OpenError::WrongKey);
    }
    crypto
        .aead_decrypt(
            ciphersuite.aead_algorithm(),
            &derived.aead_key,
            record.ciphertext.as_slice(),
            &derived.nonce,
            &derived.context,
        )
        .map_err(|_| OpenError::Altered)
}
