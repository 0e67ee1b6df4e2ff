//! Metadata minimization (MIMIMI): pseudonymous credentials and identity links
//! (draft-mahy-mimi-metadata-minimization §"Pseudonymous credentials";
//! draft-ietf-mimi-protocol-06 §"Minimal metadata rooms"; docs/wire-format.md §14.1).
//!
//! In a pseudonymous group every leaf holds a [`PseudonymousCredential`]: a random client
//! pseudonym, a user pseudonym shared by the user's leaves in that room, the leaf's signature
//! key, and the client's real identity encrypted under a per-credential `identity_link_key`
//! that only the user's connections (and, once wrapped for it, the room) can derive. The hub
//! sees pseudonyms only.
//!
//! - [`codec`]: the structures and the canonical pseudonym URIs;
//! - [`link`]: the client side (key derivation, sealing and opening identity links, the
//!   signature by the real credential), shared by clients and tests;
//! - [`hub`]: the hub's credential validator and group rules;
//! - [`group_links`]: identity links in groups (wire-format.md §14.2): the wrapped keys in
//!   commits' SafeAAD, the room's wrapper key in Welcomes, and what the hub keeps of them.

pub mod codec;
pub mod group_links;
pub mod hub;
pub mod link;
pub(crate) mod serve;

pub use codec::{
    IdentifierUri, IdentityLinkTbe, PseudonymError, PseudonymKind, PseudonymousCredential,
    PseudonymousCredentialTbs,
};
pub use group_links::{
    AddAad, EncryptedIdentityLinkKey, IdentityLinkKeys, IdentityLinkWrapperKeyExtension,
    InvalidIdentityLinkKeys,
};
pub use hub::{is_pseudonymous_group, InvalidPseudonymousCredential};
pub use link::{IdentityLinkError, IdentityLinkKey, RealIdentity};

/// The private-use MLS credential type (RFC 9420 §17.4 range 0xF000-0xFFFF) of a
/// [`PseudonymousCredential`]. The `Credential`'s content is the encoded
/// `PseudonymousCredential` as one `opaque<V>` (wire-format.md §14.1).
pub const PSEUDONYMOUS_CREDENTIAL_TYPE: u16 = 0xF1D7;
