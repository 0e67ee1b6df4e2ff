//! Request authentication: `DSAuthData`, `ClientSignature`, `DSSenderID` (wire-format.md §3).
//!
//! `DSSenderID` keeps the three kinds of DS-00 §5.1 (the seed); `ClientSignature` merges the
//! seed's `DSAuthToken` (group id, timestamp, sender) with the request binding of DS-01/03
//! (the signature covers the whole request body), as docs/decisions.md D7 says.
//!
//! Codecs only: `ClientSignatureTBS` is encoded with the request it covers (`request.rs`);
//! clients sign in `crate::signing` and the DS verifies in `crate::auth`.

use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

/// The `SignWithLabel` label of a [`ClientSignature`] (RFC 9420 §5.1.2 labelling).
pub const CLIENT_SIGNATURE_LABEL: &str = "MIMI DS Request";

/// The private-use LeafNode extension type (RFC 9420 §17.3) through which a client registers
/// its user's authentication key with the group; its data is a [`UserAuthKeyExtension`]
/// (wire-format.md §3.5).
pub const USER_AUTH_KEY_EXTENSION_TYPE: u16 = 0xF1D6;

/// The `SignWithLabel` label of a [`UserAuthKeyExtension`]'s proof of possession.
pub const USER_KEY_PROOF_LABEL: &str = "MIMI DS UserKeyProof";

/// The data of LeafNode extension [`USER_AUTH_KEY_EXTENSION_TYPE`] (wire-format.md §3.5):
/// `struct { opaque user_auth_key<V>; opaque proof<V>; }`, where `proof` is
/// `SignWithLabel(user_auth_key, "MIMI DS UserKeyProof", leaf_signature_key)`: the user key
/// vouches for the signature key of the leaf that carries it.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct UserAuthKeyExtension {
    /// A signature public key of the group's ciphersuite.
    pub user_auth_key: VLBytes,
    /// The proof of possession of the user key's private key.
    pub proof: VLBytes,
}

impl UserAuthKeyExtension {
    /// The exact bytes the proof signs for a leaf with this signature key: `SignContent` with
    /// label "MLS 1.0 MIMI DS UserKeyProof" and the key as content (RFC 9420 §5.1.2).
    pub fn proof_content(leaf_signature_key: &[u8]) -> Result<Vec<u8>, tls_codec::Error> {
        sign_content(USER_KEY_PROOF_LABEL, leaf_signature_key.to_vec())
    }
}

/// The `RefHash` label of a `user_key_hash` sender (docs/decisions.md D8).
pub const USER_KEY_HASH_LABEL: &str = "MIMI DS UserKey";

/// `DSAuthData`: how a request is authenticated (DS-03..06 §"Framing", DS-06 names).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum DsAuthData {
    /// `unauthenticated(0)`: the request carries its own proof (MLS signatures) or needs none.
    #[tls_codec(discriminant = 0)]
    Unauthenticated,
    /// `client_signature(1)`.
    #[tls_codec(discriminant = 1)]
    ClientSignature(ClientSignature),
}

/// `DSSenderID` (DS-00 §5.1): who signed the request, and so which key verifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum DsSenderId {
    /// `leaf_index(0)`: the signature key of that leaf in the group's current tree.
    #[tls_codec(discriminant = 0)]
    LeafIndex(u32),
    /// `key_package_ref(1)`: the leaf signature key of a KeyPackage the DS routed a Welcome for.
    #[tls_codec(discriminant = 1)]
    KeyPackageRef(VLBytes),
    /// `user_key_hash(2)`: `RefHash("MIMI DS UserKey", key)` of a user key registered with the
    /// group.
    #[tls_codec(discriminant = 2)]
    UserKeyHash(VLBytes),
}

/// `ClientSignature` (wire-format.md §3.2).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ClientSignature {
    /// The group the request is about.
    pub group_id: VLBytes,
    /// Milliseconds since the UNIX epoch at which the client signed.
    pub timestamp_ms: u64,
    /// Whose key verifies the signature.
    pub sender_id: DsSenderId,
    /// `SignWithLabel(key, "MIMI DS Request", ClientSignatureTBS)`.
    pub signature: VLBytes,
}

/// RFC 9420 §5.1.2 `SignContent { opaque label<V> = "MLS 1.0 " + Label; opaque content<V>; }`.
#[derive(TlsSerialize, TlsSize)]
struct SignContent {
    label: VLBytes,
    content: VLBytes,
}

/// RFC 9420 §5.1.2 `SignWithLabel` input: `content` wrapped in `SignContent` with the label
/// "MLS 1.0 " + `label`. Shared by every signed mimi-ds request.
pub(super) fn sign_content(label: &str, content: Vec<u8>) -> Result<Vec<u8>, tls_codec::Error> {
    let mut full = b"MLS 1.0 ".to_vec();
    full.extend_from_slice(label.as_bytes());
    SignContent {
        label: full.into(),
        content: content.into(),
    }
    .tls_serialize_detached()
}

/// Why a client could not sign a request (the error of the `sign` constructors of
/// [`ClientSignature`], [`UserAuthKeyExtension`] and [`super::QsClientRequest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The request could not be encoded (a vector over the MLS varint limit).
    #[error("request could not be encoded")]
    Encoding,
    /// The signer reported an error.
    #[error("signer failed")]
    Signer,
}
