//! The client side of privacy mode (wire-format.md §17.3): a member derives the state key of
//! its group's current epoch, and a committer the key of the epoch its pending commit creates,
//! with the MLS exporter (RFC 9420 §8.5). The hub never runs this; it only receives the keys.

use openmls::prelude::{ExportSecretError, MlsGroup};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::privacy::{StateKey, STATE_KEY_EXPORTER_LABEL};

/// The state key of the group's current epoch:
/// `MLS-Exporter("MIMI DS state key", "", KDF.Nh)`.
pub fn state_key_of(
    group: &MlsGroup,
    crypto: &impl OpenMlsCrypto,
) -> Result<StateKey, ExportSecretError> {
    let secret = group.export_secret(
        crypto,
        STATE_KEY_EXPORTER_LABEL,
        &[],
        group.ciphersuite().hash_length(),
    )?;
    Ok(StateKey::new(group.epoch().as_u64(), secret))
}

/// The state key of the epoch the group's pending commit creates, which the committer hands
/// to the hub as `next_key` (wire-format.md §17.4), or `None` without a pending commit. An
/// external joiner has none: openmls returns its group already in the epoch its external
/// commit creates, so its `next_key` is [`state_key_of`] that group.
pub fn next_state_key_of(
    group: &MlsGroup,
    crypto: &impl OpenMlsCrypto,
) -> Option<Result<StateKey, ExportSecretError>> {
    let staged = group.pending_commit()?;
    let epoch = staged.group_context().epoch().as_u64();
    Some(
        staged
            .export_secret(
                crypto,
                STATE_KEY_EXPORTER_LABEL,
                &[],
                group.ciphersuite().hash_length(),
            )
            .map(|secret| StateKey::new(epoch, secret)),
    )
}
