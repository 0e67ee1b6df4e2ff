//! The per-epoch state key (wire-format.md §17.3): `KDF.Nh` bytes every member of the group
//! derives with the MLS exporter of the current epoch, and which the hub receives with each
//! request of a privacy-mode group, uses in memory and never stores.

use openmls::prelude::Ciphersuite;
use openmls_traits::crypto::OpenMlsCrypto;

use super::expand_with_label;
use crate::constant_time::constant_time_eq;

/// The MLS exporter label of the state key (RFC 9420 §8.5 `MLS-Exporter(Label, Context,
/// Length)`, with `Context` empty and `Length = KDF.Nh`; wire-format.md §17.3).
pub const STATE_KEY_EXPORTER_LABEL: &str = "MIMI DS state key";

/// A group's state key for one epoch. The secret is overwritten with zeros when the value is
/// dropped, and `Debug` never prints it.
///
/// The overwrite is best effort without `unsafe` and without a new crate: the bytes are
/// zeroed in place and then passed through [`std::hint::black_box`] so the compiler cannot
/// drop the writes as dead stores. Copies made elsewhere (the exporter's output buffer inside
/// openmls, a decoded request's buffer) are outside this type's control; wire-format.md §17.3
/// says so.
pub struct StateKey {
    epoch: u64,
    secret: Vec<u8>,
}

impl StateKey {
    /// A key for `epoch` with these secret bytes. Its length is checked against the
    /// ciphersuite (`KDF.Nh`) when it seals or opens, not here.
    pub fn new(epoch: u64, secret: Vec<u8>) -> Self {
        Self { epoch, secret }
    }

    /// The epoch whose exporter the key comes from.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The secret bytes, for the codec and the sealing functions.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl Clone for StateKey {
    fn clone(&self) -> Self {
        Self::new(self.epoch, self.secret.clone())
    }
}

impl Drop for StateKey {
    fn drop(&mut self) {
        for byte in self.secret.iter_mut() {
            *byte = 0;
        }
        std::hint::black_box(&mut self.secret);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateKey")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Equal epochs and equal secrets, the secrets compared without an early exit.
impl PartialEq for StateKey {
    fn eq(&self, other: &Self) -> bool {
        self.epoch == other.epoch && constant_time_eq(&self.secret, &other.secret)
    }
}

impl Eq for StateKey {}

/// RFC 9420 §8.5 `MLS-Exporter(Label, Context, Length) =
/// ExpandWithLabel(DeriveSecret(exporter_secret, Label), "exported", Hash(Context), Length)`,
/// spelled out for implementations that hold the exporter secret and for the golden vectors.
/// A member's openmls `MlsGroup::export_secret` computes the same value.
pub fn mls_exporter(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    exporter_secret: &[u8],
    label: &[u8],
    context: &[u8],
    length: usize,
) -> Result<Vec<u8>, String> {
    let nh = ciphersuite.hash_length();
    // DeriveSecret(Secret, Label) = ExpandWithLabel(Secret, Label, "", KDF.Nh) (RFC 9420 §8).
    let derived = expand_with_label(crypto, ciphersuite, exporter_secret, label, &[], nh)?;
    let context_hash = crypto
        .hash(ciphersuite.hash_algorithm(), context)
        .map_err(|e| format!("{e:?}"))?;
    expand_with_label(
        crypto,
        ciphersuite,
        &derived,
        b"exported",
        &context_hash,
        length,
    )
}

/// The state key of the epoch whose exporter secret is `exporter_secret`:
/// `MLS-Exporter("MIMI DS state key", "", KDF.Nh)` (wire-format.md §17.3).
pub fn state_key_from_exporter_secret(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    exporter_secret: &[u8],
    epoch: u64,
) -> Result<StateKey, String> {
    mls_exporter(
        crypto,
        ciphersuite,
        exporter_secret,
        STATE_KEY_EXPORTER_LABEL.as_bytes(),
        &[],
        ciphersuite.hash_length(),
    )
    .map(|secret| StateKey::new(epoch, secret))
}
