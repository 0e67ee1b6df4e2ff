//! Privacy mode (docs/wire-format.md §17): the cryptographic core that keeps a group's state
//! at rest as ciphertext under a key only the group's members hold.
//!
//! draft-robert-mimi-delivery-service-03 §"Reduced metadata operating mode", subsection
//! "Group state encryption at rest", has clients send a group-state key with every request so
//! that the DS "decrypts the group state, performs the operation and re-encrypts it". This
//! module is the part of that mode the hub's record layer (`service/privacy.rs`) calls to open
//! and seal a privacy-mode group's records:
//!
//! - [`key`]: the per-epoch [`StateKey`], derived by members with the MLS exporter
//!   (RFC 9420 §8.5, label [`STATE_KEY_EXPORTER_LABEL`]), overwritten when dropped;
//! - [`seal`]: [`seal_record`] and [`open_record`], a key-committing AEAD construction built
//!   from the ciphersuite's HKDF and AEAD (`OpenMlsCrypto`), binding each record to its group
//!   ID, record kind, record key, version and key epoch;
//! - [`wire`]: the codecs of what a request carries ([`StateKeys`]), of the GroupContext
//!   extension that marks a privacy-mode group ([`PrivacyModeExtension`]), of a stored
//!   [`SealedRecord`] and of the [`Manifest`] that pins every record's version.
//!
//! Members derive keys with `mimi_ds::testing::privacy` (feature `test-utils`) or the same
//! exporter call in their own client; the hub only ever receives them.

pub mod key;
pub mod seal;
pub mod wire;

pub use key::{mls_exporter, state_key_from_exporter_secret, StateKey, STATE_KEY_EXPORTER_LABEL};
pub use seal::{
    open_record, seal_record, OpenError, RecordBinding, SealError, SealedKind, COMMITMENT_LABEL,
    RECORD_KEY_LABEL, RECORD_NONCE_LABEL, SALT_BYTES,
};
pub use wire::{
    reinit_keeps_privacy_mode, Manifest, ManifestEntry, PrivacyModeExtension, SealedRecord,
    SealedRecordFormat, StateKeyScheme, StateKeys, PRIVACY_MODE_EXTENSION_TYPE,
};

/// RFC 9420 §8 `ExpandWithLabel(secret, label, context, length)` over byte labels, with the
/// ciphersuite's KDF: `KDFLabel { uint16 length; opaque label<V> = "MLS 1.0 " + Label;
/// opaque context<V>; }` as the HKDF-Expand info.
pub(crate) fn expand_with_label(
    crypto: &impl openmls_traits::crypto::OpenMlsCrypto,
    ciphersuite: openmls::prelude::Ciphersuite,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    length: usize,
) -> Result<Vec<u8>, String> {
    use tls_codec::Serialize as _;
    #[derive(tls_codec::TlsSerialize, tls_codec::TlsSize)]
    struct KdfLabel {
        length: u16,
        label: tls_codec::VLBytes,
        context: tls_codec::VLBytes,
    }
    let info = KdfLabel {
        length: u16::try_from(length).map_err(|e| e.to_string())?,
        label: [b"MLS 1.0 ".as_slice(), label].concat().into(),
        context: context.to_vec().into(),
    }
    .tls_serialize_detached()
    .map_err(|e| e.to_string())?;
    crypto
        .hkdf_expand(ciphersuite.hash_algorithm(), secret, &info, length)
        .map(|okm| okm.as_slice().to_vec())
        .map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests;
