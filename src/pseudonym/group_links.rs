//! Identity links in pseudonymous groups (MIMIMI Flows C and D, the hub-stored variant of
//! MM-01; wire-format.md §14.2).
//!
//! Every member's `identity_link_key`, wrapped under the room's `identity_link_wrapper_key`,
//! travels in the `authenticated_data` of the commit that adds the member (or of the member's
//! own external commit), as a SafeAAD item (draft-ietf-mls-extensions §4.9). The hub keeps the
//! wrapped keys per leaf, drops a member's entry with the member, and serves them to members
//! (`identity_link_keys(24)`). It never holds the wrapper key, so it can withhold an entry but
//! not open, forge or move one: each is bound to the group and the credential it belongs to.

use openmls::prelude::{Ciphersuite, LeafNodeIndex, PublicGroup};
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::codec::PseudonymousCredentialTbs;
use super::hub::is_pseudonymous_group;
use super::link::{expand_with_label, IdentityLinkError, IdentityLinkKey};
use crate::error::{internal, Failure, InvalidMlsMessage, RejectReason};
use crate::safe_aad::SafeAadError;
use crate::wire::{decode_exact, DecodeError};

/// The private-use SafeAAD `ComponentID` (draft-ietf-mls-extensions; private range
/// 0x8000-0xFFFF) of the [`AddAad`] item in a commit's `authenticated_data`.
pub const IDENTITY_LINK_KEYS_COMPONENT_ID: u16 = 0xF1D8;

/// The private-use GroupInfo extension type (RFC 9420 §17.3) of
/// [`IdentityLinkWrapperKeyExtension`], which the adder puts into the GroupInfo of a Welcome.
pub const IDENTITY_LINK_WRAPPER_KEY_EXTENSION_TYPE: u16 = 0xF1D9;

/// The `ExpandWithLabel` label of the AEAD key derived from the wrapper key.
pub const WRAP_KEY_LABEL: &str = "IdentityLinkWrapKey";
/// The `ExpandWithLabel` label of the AEAD nonce derived from the wrapper key and the context.
pub const WRAP_NONCE_LABEL: &str = "IdentityLinkWrapNonce";

/// The most bytes one wrapped key may have: an `identity_link_key` (`KDF.Nh`, at most 64
/// bytes) and an AEAD tag (16 bytes) fit many times over.
pub const MAX_ENCRYPTED_IDENTITY_LINK_KEY: usize = 255;

pub use crate::safe_aad::{SafeAad, SafeAadItem};

/// `struct { opaque ciphertext<V>; } EncryptedIdentityLinkKey` (MP-MMR).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct EncryptedIdentityLinkKey {
    /// The `identity_link_key` wrapped under the room's wrapper key.
    pub ciphertext: VLBytes,
}

/// `struct { EncryptedIdentityLinkKey encrypted_identity_link_keys<V>; } AddAAD` (MM-01): one
/// entry per Add of the commit, in the commit's order, then optionally the committer's own.
/// An external commit carries exactly one, the joiner's.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct AddAad {
    /// The entries.
    pub encrypted_identity_link_keys: Vec<EncryptedIdentityLinkKey>,
}

/// `struct { opaque identity_link_wrapper_key<V>; } IdentityLinkWrapperKeyExtension`
/// (MP-MMR; MM-01 `IdentityLinkExtension`): in the GroupInfo of a Welcome, so that joiners
/// learn the room's wrapper key; external joiners get it out of band (e.g. in a join link).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct IdentityLinkWrapperKeyExtension {
    /// The room's `identity_link_wrapper_key`.
    pub identity_link_wrapper_key: VLBytes,
}

/// What the hub stores and serves: per leaf index, the member's wrapped key, if it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct IdentityLinkKeys {
    /// The epoch the entries are for.
    pub epoch: u64,
    /// Indexed by leaf index; `None` for blank leaves and members without an entry.
    pub entries: Vec<Option<EncryptedIdentityLinkKey>>,
}

/// `struct { opaque group_id<V>; PseudonymousCredentialTBS tbs; } IdentityLinkWrapContext`:
/// what a wrapped key is bound to (AEAD associated data and nonce context).
#[derive(TlsSerialize, TlsSize)]
struct IdentityLinkWrapContext<'a> {
    group_id: VLBytes,
    tbs: &'a PseudonymousCredentialTbs,
}

/// The AEAD key, nonce and associated data of one wrapped key.
struct WrapParameters {
    key: Vec<u8>,
    nonce: Vec<u8>,
    context: Vec<u8>,
}

fn wrap_parameters(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    wrapper_key: &[u8],
    group_id: &[u8],
    tbs: &PseudonymousCredentialTbs,
) -> Result<WrapParameters, IdentityLinkError> {
    let context = IdentityLinkWrapContext {
        group_id: group_id.to_vec().into(),
        tbs,
    }
    .tls_serialize_detached()
    .map_err(|e| IdentityLinkError::Encoding(e.to_string()))?;
    let key = expand_with_label(
        crypto,
        ciphersuite,
        wrapper_key,
        WRAP_KEY_LABEL,
        &[],
        ciphersuite.aead_key_length(),
    )?;
    let nonce = expand_with_label(
        crypto,
        ciphersuite,
        wrapper_key,
        WRAP_NONCE_LABEL,
        &context,
        ciphersuite.aead_nonce_length(),
    )?;
    Ok(WrapParameters {
        key,
        nonce,
        context,
    })
}

/// Wraps a credential's `identity_link_key` for the room (wire-format.md §14.2).
pub fn wrap_identity_link_key(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    wrapper_key: &[u8],
    group_id: &[u8],
    tbs: &PseudonymousCredentialTbs,
    key: &IdentityLinkKey,
) -> Result<EncryptedIdentityLinkKey, IdentityLinkError> {
    let WrapParameters {
        key: aead_key,
        nonce,
        context,
    } = wrap_parameters(crypto, ciphersuite, wrapper_key, group_id, tbs)?;
    let ciphertext = crypto
        .aead_encrypt(
            ciphersuite.aead_algorithm(),
            &aead_key,
            &key.0,
            &nonce,
            &context,
        )
        .map_err(|e| IdentityLinkError::Crypto(format!("{e:?}")))?;
    Ok(EncryptedIdentityLinkKey {
        ciphertext: ciphertext.into(),
    })
}

/// Unwraps the `identity_link_key` of the credential with `tbs` in group `group_id`.
pub fn unwrap_identity_link_key(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    wrapper_key: &[u8],
    group_id: &[u8],
    tbs: &PseudonymousCredentialTbs,
    wrapped: &EncryptedIdentityLinkKey,
) -> Result<IdentityLinkKey, IdentityLinkError> {
    let WrapParameters {
        key: aead_key,
        nonce,
        context,
    } = wrap_parameters(crypto, ciphersuite, wrapper_key, group_id, tbs)?;
    crypto
        .aead_decrypt(
            ciphersuite.aead_algorithm(),
            &aead_key,
            wrapped.ciphertext.as_slice(),
            &nonce,
            &context,
        )
        .map(IdentityLinkKey)
        .map_err(|_| IdentityLinkError::DoesNotDecrypt)
}

/// The SafeAAD item of a commit carrying `entries`: component
/// [`IDENTITY_LINK_KEYS_COMPONENT_ID`], an [`AddAad`]. Combine it with other components' items
/// (e.g. a connection response) with [`SafeAad::from_items`].
pub fn add_aad_item(
    entries: Vec<EncryptedIdentityLinkKey>,
) -> Result<SafeAadItem, IdentityLinkError> {
    let item = AddAad {
        encrypted_identity_link_keys: entries,
    }
    .tls_serialize_detached()
    .map_err(|e| IdentityLinkError::Encoding(e.to_string()))?;
    Ok(SafeAadItem::new(IDENTITY_LINK_KEYS_COMPONENT_ID, item))
}

/// The `authenticated_data` of a commit carrying `entries`: a SafeAAD with one
/// [`IDENTITY_LINK_KEYS_COMPONENT_ID`] item.
pub fn add_aad_bytes(entries: Vec<EncryptedIdentityLinkKey>) -> Result<Vec<u8>, IdentityLinkError> {
    let encoding = |e: tls_codec::Error| IdentityLinkError::Encoding(e.to_string());
    SafeAad {
        aad_items: vec![add_aad_item(entries)?],
    }
    .tls_serialize_detached()
    .map_err(encoding)
}

/// The [`AddAad`] in a commit's `authenticated_data`, if it has one: the
/// [`IDENTITY_LINK_KEYS_COMPONENT_ID`] item of its SafeAAD ([`SafeAad::parse_prefix`]), other
/// components' items ignored.
pub fn add_aad_of(authenticated_data: &[u8]) -> Result<Option<AddAad>, InvalidIdentityLinkKeys> {
    // Rule R-LINK-1.
    let (safe_aad, _application_data) =
        SafeAad::parse_prefix(authenticated_data).map_err(InvalidIdentityLinkKeys::SafeAad)?;
    safe_aad
        .item(IDENTITY_LINK_KEYS_COMPONENT_ID)
        .map(|data| {
            // Rule R-LINK-2.
            decode_exact::<AddAad>(data).map_err(InvalidIdentityLinkKeys::AddAadUndecodable)
        })
        .transpose()
}

/// Why the hub refused the identity link keys of a commit (code `invalid_mls_message`;
/// wire-format.md §14.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidIdentityLinkKeys {
    /// Rule R-LINK-1: a commit of a pseudonymous group whose non-empty `authenticated_data`
    /// does not start with a well-formed SafeAAD: undecodable, or items not in strictly
    /// increasing component order (draft-ietf-mls-extensions-08 §4.9; wire-format.md §14.2).
    #[error("the authenticated data is not a well-formed SafeAAD: {0}")]
    SafeAad(SafeAadError),
    /// Rule R-LINK-2: the identity link keys item is not exactly one `AddAAD`.
    #[error("the AddAAD does not decode: {0}")]
    AddAadUndecodable(DecodeError),
    /// Rule R-LINK-3: a commit that adds members, or an external commit, without identity
    /// link keys (MIMIMI Flows C step 4 and D).
    #[error("the commit adds members without their identity link keys")]
    Missing,
    /// Rule R-LINK-4: not one entry per Add (and at most one more, the committer's own); for
    /// an external commit, not exactly one.
    #[error("{got} identity link keys for {adds} Adds")]
    CountMismatch {
        /// How many Adds (for an external commit: 1, the joiner).
        adds: usize,
        /// How many entries the commit carries.
        got: usize,
    },
    /// Rule R-LINK-5: an entry is empty or longer than [`MAX_ENCRYPTED_IDENTITY_LINK_KEY`].
    #[error("an identity link key entry is empty or too long")]
    BadEntry,
    /// Rule R-LINK-6: the GroupInfo sent to the hub carries the room's wrapper key
    /// ([`IDENTITY_LINK_WRAPPER_KEY_EXTENSION_TYPE`]), which the hub would store and serve to
    /// anyone allowed to read it; it belongs in the Welcome only.
    #[error("the GroupInfo for the hub carries the room's identity link wrapper key")]
    WrapperKeyExposed,
}

impl From<InvalidIdentityLinkKeys> for RejectReason {
    fn from(reason: InvalidIdentityLinkKeys) -> Self {
        Self::InvalidMlsMessage(InvalidMlsMessage::IdentityLinkKeys(reason))
    }
}

/// The hub's side of a merged commit: the identity link keys of `group` (after the merge) in
/// its new epoch, from those of the previous epoch (`previous`, absent for the first) and the
/// commit's `authenticated_data`. `None` for a group that is not pseudonymous.
///
/// * Entries of removed leaves go (a leaf the commit refills gets the new member's).
/// * A member commit that adds members carries one entry per Add, for the leaf the added
///   KeyPackage's signature key now holds (`added_keys`, in the commit's order), and may carry
///   one more for the committer's own leaf (the creator's first commit, or after the committer
///   changed its credential).
/// * An external commit carries exactly one, for the joiner's leaf.
pub(crate) struct CommitLinks<'a> {
    /// The group after the merge.
    pub(crate) group: &'a PublicGroup,
    /// The stored entries before the commit, if any.
    pub(crate) previous: Option<&'a [u8]>,
    /// The leaves the commit removes.
    pub(crate) removed: &'a [LeafNodeIndex],
    /// The signature keys of the added KeyPackages, in the commit's order.
    pub(crate) added_keys: Vec<&'a [u8]>,
    /// The committer's leaf (a member commit) or the joiner's (an external commit).
    pub(crate) committer: u32,
    /// Whether it is an external commit.
    pub(crate) external: bool,
    /// The commit's `authenticated_data`.
    pub(crate) authenticated_data: &'a [u8],
    /// The new epoch's GroupInfo as the hub will store it.
    pub(crate) group_info: &'a [u8],
}

impl CommitLinks<'_> {
    /// The new entries, or `None` for a group that is not pseudonymous.
    pub(crate) fn entries<E: std::error::Error + 'static>(
        &self,
    ) -> Result<Option<IdentityLinkKeys>, Failure<E>> {
        // Rule R-LINK-6.
        if exposes_wrapper_key(self.group_info) {
            return Err(RejectReason::from(InvalidIdentityLinkKeys::WrapperKeyExposed).into());
        }
        if !is_pseudonymous_group(self.group.group_context()) {
            return Ok(None);
        }
        let mut links = match self.previous {
            Some(bytes) => decode_exact::<IdentityLinkKeys>(bytes)
                .map_err(|e| internal(format!("IdentityLinks record: {e}")))?,
            None => IdentityLinkKeys::default(),
        };
        links.epoch = self.group.group_context().epoch().as_u64();
        for leaf in self.removed {
            if let Some(entry) = links.entries.get_mut(leaf.usize()) {
                *entry = None;
            }
        }
        let add_aad = add_aad_of(self.authenticated_data).map_err(RejectReason::from)?;
        let adds = if self.external {
            1
        } else {
            self.added_keys.len()
        };
        let entries = match add_aad {
            None if adds == 0 => Vec::new(),
            // Rule R-LINK-3.
            None => return Err(RejectReason::from(InvalidIdentityLinkKeys::Missing).into()),
            Some(aad) => aad.encrypted_identity_link_keys,
        };
        let allowed = if self.external {
            1..=1
        } else {
            adds..=adds + 1
        };
        // Rule R-LINK-4.
        if !allowed.contains(&entries.len()) {
            return Err(RejectReason::from(InvalidIdentityLinkKeys::CountMismatch {
                adds,
                got: entries.len(),
            })
            .into());
        }
        let mut added_leaves: Vec<u32> = Vec::with_capacity(self.added_keys.len());
        if !self.external {
            for key in &self.added_keys {
                let leaf = self
                    .group
                    .members()
                    .find(|m| m.signature_key.as_slice() == *key)
                    .map(|m| m.index.u32())
                    .ok_or_else(|| internal("an added leaf is not in the merged group"))?;
                added_leaves.push(leaf);
            }
        }
        // The entries are the added leaves' in the commit's order; the one entry R-LINK-4
        // allows beyond them, and an external joiner's only entry, is the committer's own.
        let targets = added_leaves
            .into_iter()
            .chain(std::iter::once(self.committer));
        for (leaf, entry) in targets.zip(entries) {
            let len = entry.ciphertext.as_slice().len();
            // Rule R-LINK-5.
            if len == 0 || len > MAX_ENCRYPTED_IDENTITY_LINK_KEY {
                return Err(RejectReason::from(InvalidIdentityLinkKeys::BadEntry).into());
            }
            let index = leaf as usize;
            if links.entries.len() <= index {
                links.entries.resize(index + 1, None);
            }
            links.entries[index] = Some(entry);
        }
        // Trailing blank leaves (the tree shrank) keep no entry.
        let leaves = self
            .group
            .members()
            .map(|m| m.index.usize() + 1)
            .max()
            .unwrap_or(0);
        links.entries.truncate(leaves);
        Ok(Some(links))
    }
}

/// The MLSMessage header of a GroupInfo: `mls10(1)`, `mls_group_info(4)` (RFC 9420 §6).
const GROUP_INFO_MESSAGE_HEADER: [u8; 4] = [0, 1, 0, 4];

/// A committer's GroupInfo for the hub, without the room's wrapper key.
///
/// openmls puts the same extensions into the Welcome's GroupInfo and the exported one, so a
/// commit that gives Welcome joiners the [`IdentityLinkWrapperKeyExtension`] also exports it.
/// This re-signs the exported GroupInfo (`SignWithLabel(., "GroupInfoTBS", GroupInfoTBS)`, RFC
/// 9420 §12.4.3) without extension `extension_type`, so the hub, which stores and serves the
/// GroupInfo, never sees the wrapper key (rule R-LINK-6 refuses one that carries it).
pub fn group_info_without_extension(
    group_info: &[u8],
    extension_type: u16,
    signer: &impl openmls_traits::signatures::Signer,
) -> Result<Vec<u8>, IdentityLinkError> {
    use openmls::messages::group_info::GroupInfo;
    use openmls::prelude::{Extension, ExtensionType, Extensions, GroupContext};
    use tls_codec::DeserializeBytes as _;
    let malformed = |what: &str| IdentityLinkError::Undecodable(format!("GroupInfo: {what}"));
    let encoding = |e: tls_codec::Error| IdentityLinkError::Encoding(e.to_string());
    let body = group_info
        .strip_prefix(&GROUP_INFO_MESSAGE_HEADER[..])
        .ok_or_else(|| malformed("not an MLSMessage holding a GroupInfo"))?;
    let (context, rest) =
        GroupContext::tls_deserialize_bytes(body).map_err(|e| malformed(&format!("{e:?}")))?;
    let (extensions, rest) = Extensions::<GroupInfo>::tls_deserialize_bytes(rest)
        .map_err(|e| malformed(&format!("{e:?}")))?;
    let (tag, rest) =
        VLBytes::tls_deserialize_bytes(rest).map_err(|e| malformed(&format!("{e:?}")))?;
    let (signer_index, rest) =
        u32::tls_deserialize_bytes(rest).map_err(|e| malformed(&format!("{e:?}")))?;
    let (_signature, rest) =
        VLBytes::tls_deserialize_bytes(rest).map_err(|e| malformed(&format!("{e:?}")))?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    let kept: Vec<Extension> = extensions
        .iter()
        .filter(|e| e.extension_type() != ExtensionType::Unknown(extension_type))
        .cloned()
        .collect();
    let kept = Extensions::<GroupInfo>::from_vec(kept).map_err(|e| malformed(&format!("{e:?}")))?;
    let mut tbs = context.tls_serialize_detached().map_err(encoding)?;
    tbs.extend(kept.tls_serialize_detached().map_err(encoding)?);
    tbs.extend(tag.tls_serialize_detached().map_err(encoding)?);
    tbs.extend(signer_index.tls_serialize_detached().map_err(encoding)?);
    let sign_content = SignContent {
        label: b"MLS 1.0 GroupInfoTBS".to_vec().into(),
        content: tbs.clone().into(),
    }
    .tls_serialize_detached()
    .map_err(encoding)?;
    let signature: VLBytes = signer
        .sign(&sign_content)
        .map_err(|_| IdentityLinkError::Signer)?
        .into();
    let mut message = GROUP_INFO_MESSAGE_HEADER.to_vec();
    message.extend(tbs);
    message.extend(signature.tls_serialize_detached().map_err(encoding)?);
    Ok(message)
}

/// RFC 9420 §5.1.2 `SignContent`.
#[derive(TlsSerialize, TlsSize)]
struct SignContent {
    label: VLBytes,
    content: VLBytes,
}

/// Whether an encoded GroupInfo MLSMessage carries the room's wrapper key extension.
pub(crate) fn exposes_wrapper_key(group_info: &[u8]) -> bool {
    use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};
    use tls_codec::DeserializeBytes as _;
    let Ok((message, _)) = MlsMessageIn::tls_deserialize_bytes(group_info) else {
        return false;
    };
    match message.extract() {
        MlsMessageBodyIn::GroupInfo(info) => info
            .extensions()
            .unknown(IDENTITY_LINK_WRAPPER_KEY_EXTENSION_TYPE)
            .is_some(),
        _ => false,
    }
}
