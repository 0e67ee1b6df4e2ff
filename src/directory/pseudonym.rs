//! Reading the user pseudonym out of a KeyPackage's leaf credential.
//!
//! # MERGE POINT (issue 15)
//!
//! [`user_pseudonym`] is the single place the directory reads a pseudonymous credential. It
//! decodes the credential content in digest §5.2's field order (MM-01
//! `PseudonymousCredential`, with the digest §7 item 20 recommendation of a `<V>` signature
//! key): `IdentifierUri client_pseudonym; IdentifierUri user_pseudonym; opaque
//! signature_public_key<V>; opaque identity_link_ciphertext<V>;`, each `IdentifierUri` an
//! `opaque uri<V>`. When the crate's own `PseudonymousCredential` codec lands (wire-format.md
//! §14.1), point this function at its decoder; nothing else in the directory reads the
//! credential.

use openmls::prelude::{Credential, CredentialType};
use tls_codec::{DeserializeBytes as _, VLBytes};

/// The private-use credential type of pseudonymous credentials (wire-format.md §14.1).
pub const PSEUDONYMOUS_CREDENTIAL_TYPE: u16 = 0xF1D7;

/// What the directory needs of a pseudonymous credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PseudonymousParts {
    /// `client_pseudonym`: fresh per KeyPackage.
    pub client_pseudonym: Vec<u8>,
    /// `user_pseudonym`: shared by the KeyPackages of one set.
    pub user_pseudonym: Vec<u8>,
    /// `signature_public_key`: must be the leaf's.
    pub signature_public_key: Vec<u8>,
}

/// The pseudonyms and signature key of a pseudonymous credential, or why it is not one.
pub fn user_pseudonym(credential: &Credential) -> Result<PseudonymousParts, &'static str> {
    if credential.credential_type() != CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE) {
        return Err("the credential type is not 0xF1D7");
    }
    let content = credential.serialized_content();
    let (client_pseudonym, rest) =
        VLBytes::tls_deserialize_bytes(content).map_err(|_| "client_pseudonym does not decode")?;
    let (user_pseudonym, rest) =
        VLBytes::tls_deserialize_bytes(rest).map_err(|_| "user_pseudonym does not decode")?;
    let (signature_public_key, rest) =
        VLBytes::tls_deserialize_bytes(rest).map_err(|_| "signature_public_key does not decode")?;
    let (_identity_link_ciphertext, rest) = VLBytes::tls_deserialize_bytes(rest)
        .map_err(|_| "identity_link_ciphertext does not decode")?;
    if !rest.is_empty() {
        return Err("trailing bytes after identity_link_ciphertext");
    }
    if client_pseudonym.as_slice().is_empty() || user_pseudonym.as_slice().is_empty() {
        return Err("an empty pseudonym");
    }
    Ok(PseudonymousParts {
        client_pseudonym: client_pseudonym.into(),
        user_pseudonym: user_pseudonym.into(),
        signature_public_key: signature_public_key.into(),
    })
}
