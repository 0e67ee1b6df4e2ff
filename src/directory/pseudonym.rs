//! Reading the pseudonyms out of a KeyPackage's leaf credential, with the crate's one
//! `PseudonymousCredential` decoder ([`crate::pseudonym`], wire-format.md §14.1).

use openmls::prelude::{Credential, CredentialType};

pub use crate::pseudonym::PSEUDONYMOUS_CREDENTIAL_TYPE;
use crate::pseudonym::{PseudonymKind, PseudonymousCredential};

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
///
/// The directory refuses what the hub would refuse when the KeyPackage is added
/// (wire-format.md §14.1 rules R-PSEUDO-1 to R-PSEUDO-3): a content that is not exactly one
/// `PseudonymousCredential`, a pseudonym that is not canonical, or client and user pseudonyms
/// under different domains. A set that could never be added would otherwise be handed out
/// and consumed. The leaf-key check (R-PSEUDO-4) is the caller's, which holds the leaf.
pub fn user_pseudonym(credential: &Credential) -> Result<PseudonymousParts, &'static str> {
    if credential.credential_type() != CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE) {
        return Err("the credential type is not 0xF1D7");
    }
    let parsed = PseudonymousCredential::decode(credential.serialized_content())
        .map_err(|_| "the content is not one PseudonymousCredential")?;
    let (client_domain, _) = parsed
        .client_pseudonym
        .parse_pseudonym(PseudonymKind::Client)
        .map_err(|_| "client_pseudonym is not a canonical client pseudonym")?;
    let (user_domain, _) = parsed
        .user_pseudonym
        .parse_pseudonym(PseudonymKind::User)
        .map_err(|_| "user_pseudonym is not a canonical user pseudonym")?;
    if client_domain != user_domain {
        return Err("client and user pseudonyms name different domains");
    }
    Ok(PseudonymousParts {
        client_pseudonym: parsed.client_pseudonym.uri.as_slice().to_vec(),
        user_pseudonym: parsed.user_pseudonym.uri.as_slice().to_vec(),
        signature_public_key: parsed.signature_public_key.as_slice().to_vec(),
    })
}
