//! The hub's checks of pseudonymous credentials (wire-format.md §14.1): which groups are
//! pseudonymous, the credential validator for their leaves, and the rules across leaves.
//!
//! The hub cannot open identity links; it checks what it can see: the credential decodes, its
//! pseudonyms are canonical and name one provider, its key is the leaf's, and, across the group,
//! no UUID is claimed under two providers and no client pseudonym twice. The user of a leaf
//! is its user pseudonym, so user-level operations (`remove_users`, user authentication keys,
//! wire-format.md §3.5) act on pseudonyms exactly as on real users.

use std::collections::HashMap;

use openmls::prelude::{CredentialType, GroupContext, LeafNode, PublicGroup};

use super::codec::{PseudonymError, PseudonymKind, PseudonymousCredential};
use super::PSEUDONYMOUS_CREDENTIAL_TYPE;
use crate::error::{InvalidLeafNode, RejectReason};
use crate::wire::DecodeError;

/// Why the hub refused a pseudonymous credential, or a leaf of a pseudonymous group (code
/// `invalid_leaf_node_or_key_package`; wire-format.md §14.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidPseudonymousCredential {
    /// Rule R-PSEUDO-1: the credential's content is not exactly one `PseudonymousCredential`.
    #[error("the pseudonymous credential does not decode: {0}")]
    Undecodable(DecodeError),
    /// Rule R-PSEUDO-2: a pseudonym is not a canonical `mimi://<domain>/u|d/<uuid-v4>`.
    #[error("{field} is not canonical: {error}")]
    MalformedPseudonym {
        /// `client_pseudonym` or `user_pseudonym`.
        field: &'static str,
        /// What is wrong with it.
        error: PseudonymError,
    },
    /// Rule R-PSEUDO-3: the client and user pseudonyms name different provider domains; both
    /// are the user's provider's (MIMIMI §"Pseudonymous credentials").
    #[error("the client and user pseudonyms name different providers")]
    PseudonymDomainsDiffer,
    /// Rule R-PSEUDO-4: the credential's `signature_public_key` is not the leaf's signature key.
    #[error("the credential's signature key is not the leaf's")]
    SignatureKeyMismatch,
    /// Rule R-PSEUDO-5: `identity_link_ciphertext` is empty; an AEAD ciphertext never is.
    #[error("the identity link ciphertext is empty")]
    EmptyIdentityLink,
    /// Rule R-PSEUDO-6: a leaf of a pseudonymous group holds another credential type
    /// (draft-ietf-mimi-protocol-06 §"Minimal metadata rooms": every leaf MUST hold a
    /// PseudonymousCredential).
    #[error("leaf {leaf} of a pseudonymous group holds another credential type")]
    NotPseudonymous {
        /// The leaf.
        leaf: u32,
    },
    /// Rule R-PSEUDO-7: a pseudonymous credential in a group whose required capabilities do
    /// not list the pseudonymous credential type, where its users would mix with real ones.
    #[error("leaf {leaf} holds a pseudonymous credential in a group that is not pseudonymous")]
    InPlainGroup {
        /// The leaf.
        leaf: u32,
    },
    /// Rule R-PSEUDO-8: the leaf's user pseudonym has the UUID of another user pseudonym of the
    /// group under another provider's domain.
    #[error("leaf {leaf}'s user pseudonym appears under two providers' domains")]
    UserPseudonymUnderTwoDomains {
        /// The leaf.
        leaf: u32,
    },
    /// Rule R-PSEUDO-9: the leaf's client pseudonym is another leaf's; each credential has a
    /// fresh one (MIMIMI §"Pseudonymous credentials").
    #[error("leaf {leaf}'s client pseudonym is another leaf's")]
    ClientPseudonymReused {
        /// The leaf.
        leaf: u32,
    },
}

impl From<InvalidPseudonymousCredential> for RejectReason {
    fn from(reason: InvalidPseudonymousCredential) -> Self {
        Self::InvalidLeafNode(InvalidLeafNode::Pseudonymous(reason))
    }
}

/// Whether a group is pseudonymous: its GroupContext's `required_capabilities` extension
/// (RFC 9420 §11.1) lists credential type [`PSEUDONYMOUS_CREDENTIAL_TYPE`]. Set when the
/// group is created; members cannot change it afterwards, since every leaf must then match
/// (rules R-PSEUDO-6 and R-PSEUDO-7).
pub fn is_pseudonymous_group(context: &GroupContext) -> bool {
    context
        .extensions()
        .required_capabilities()
        .is_some_and(|required| {
            required
                .credential_types()
                .contains(&CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE))
        })
}

/// The credential of a pseudonymous leaf, checked on its own (rules R-PSEUDO-1 to R-PSEUDO-5).
pub fn check_credential(
    leaf: &LeafNode,
) -> Result<PseudonymousCredential, InvalidPseudonymousCredential> {
    let credential = PseudonymousCredential::decode(leaf.credential().serialized_content())
        // Rule R-PSEUDO-1.
        .map_err(InvalidPseudonymousCredential::Undecodable)?;
    // Rule R-PSEUDO-2.
    let (client_domain, _) = credential
        .client_pseudonym
        .parse_pseudonym(PseudonymKind::Client)
        .map_err(|error| InvalidPseudonymousCredential::MalformedPseudonym {
            field: "client_pseudonym",
            error,
        })?;
    let (user_domain, _) = credential
        .user_pseudonym
        .parse_pseudonym(PseudonymKind::User)
        .map_err(|error| InvalidPseudonymousCredential::MalformedPseudonym {
            field: "user_pseudonym",
            error,
        })?;
    // Rule R-PSEUDO-3.
    if client_domain != user_domain {
        return Err(InvalidPseudonymousCredential::PseudonymDomainsDiffer);
    }
    // Rule R-PSEUDO-4.
    if credential.signature_public_key.as_slice() != leaf.signature_key().as_slice() {
        return Err(InvalidPseudonymousCredential::SignatureKeyMismatch);
    }
    // Rule R-PSEUDO-5.
    if credential.identity_link_ciphertext.as_slice().is_empty() {
        return Err(InvalidPseudonymousCredential::EmptyIdentityLink);
    }
    Ok(credential)
}

/// The credential validator of pseudonymous leaves: the user a leaf belongs to is its user
/// pseudonym's URI.
pub fn user_of_leaf(leaf: &LeafNode) -> Result<Vec<u8>, InvalidPseudonymousCredential> {
    check_credential(leaf).map(|c| c.user_pseudonym.uri.as_slice().to_vec())
}

/// Whether the leaf holds a credential of the pseudonymous type (well-formed or not).
pub fn is_pseudonymous_leaf(leaf: &LeafNode) -> bool {
    leaf.credential().credential_type() == CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE)
}

/// The rules across the leaves of `group` (after a commit, or as imported): in a pseudonymous
/// group every leaf holds a valid pseudonymous credential, no user pseudonym's UUID appears
/// under two domains and no client pseudonym twice; in any other group no leaf holds one.
pub(crate) fn check_group(group: &PublicGroup) -> Result<(), InvalidPseudonymousCredential> {
    let pseudonymous = is_pseudonymous_group(group.group_context());
    let mut user_domains: HashMap<String, String> = HashMap::new();
    let mut client_pseudonyms: HashMap<Vec<u8>, u32> = HashMap::new();
    for member in group.members() {
        let leaf_index = member.index.u32();
        let Some(leaf) = group.leaf(member.index) else {
            continue;
        };
        match (pseudonymous, is_pseudonymous_leaf(leaf)) {
            (false, false) => continue,
            // Rule R-PSEUDO-7.
            (false, true) => {
                return Err(InvalidPseudonymousCredential::InPlainGroup { leaf: leaf_index })
            }
            // Rule R-PSEUDO-6.
            (true, false) => {
                return Err(InvalidPseudonymousCredential::NotPseudonymous { leaf: leaf_index })
            }
            (true, true) => {}
        }
        let credential = check_credential(leaf)?;
        let (domain, uuid) = credential
            .user_pseudonym
            .parse_pseudonym(PseudonymKind::User)
            .map_err(|error| InvalidPseudonymousCredential::MalformedPseudonym {
                field: "user_pseudonym",
                error,
            })?;
        let known = user_domains
            .entry(uuid.to_owned())
            .or_insert_with(|| domain.to_owned());
        // Rule R-PSEUDO-8.
        if known != domain {
            return Err(
                InvalidPseudonymousCredential::UserPseudonymUnderTwoDomains { leaf: leaf_index },
            );
        }
        // Rule R-PSEUDO-9.
        if client_pseudonyms
            .insert(
                credential.client_pseudonym.uri.as_slice().to_vec(),
                leaf_index,
            )
            .is_some()
        {
            return Err(InvalidPseudonymousCredential::ClientPseudonymReused { leaf: leaf_index });
        }
    }
    Ok(())
}
