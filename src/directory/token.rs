//! Connection tokens, upload secrets and the directory's index (wire-format.md §14.4).
//!
//! A user's clients share a random 32-byte `upload_secret`. From it:
//!
//! ```text
//! connection_token = RefHash("MIMIMI ConnectionToken", upload_secret)    // given to connections
//! directory_index  = RefHash("MIMIMI DirectoryIndex", connection_token)  // what the directory stores
//! ```
//!
//! with RFC 9420 §5.2 `RefHash` over SHA-256. Connected users hold the token and can claim;
//! only the user's own clients hold the secret and can upload. The directory stores neither:
//! a copy of its database lets nobody claim (the index does not give the token) or upload (the
//! token does not give the secret).

use openmls::prelude::HashType;
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{Serialize as _, VLBytes};

/// The length of a connection token and of an upload secret.
pub const TOKEN_LEN: usize = 32;

/// The `RefHash` label deriving a connection token from an upload secret.
pub const CONNECTION_TOKEN_LABEL: &[u8] = b"MIMIMI ConnectionToken";
/// The `RefHash` label deriving the directory's index from a connection token.
pub const DIRECTORY_INDEX_LABEL: &[u8] = b"MIMIMI DirectoryIndex";
/// The `RefHash` label under which the directory remembers user pseudonyms.
pub const USER_PSEUDONYM_LABEL: &[u8] = b"MIMIMI UserPseudonym";
/// The `RefHash` label under which the directory remembers claim IDs.
pub const CLAIM_ID_LABEL: &[u8] = b"MIMIMI ClaimId";

/// RFC 9420 §5.2 `RefHash(label, value) = Hash(RefHashInput { label<V>; value<V>; })`, with
/// SHA-256. `None` only if the crypto provider fails.
pub fn ref_hash(crypto: &impl OpenMlsCrypto, label: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let input = (VLBytes::from(label.to_vec()), VLBytes::from(value.to_vec()))
        .tls_serialize_detached()
        .ok()?;
    crypto.hash(HashType::Sha2_256, &input).ok()
}

/// The connection token an upload secret derives.
pub fn connection_token(crypto: &impl OpenMlsCrypto, upload_secret: &[u8]) -> Option<Vec<u8>> {
    ref_hash(crypto, CONNECTION_TOKEN_LABEL, upload_secret)
}

/// The index the directory files a token's sets under.
pub fn directory_index(crypto: &impl OpenMlsCrypto, connection_token: &[u8]) -> Option<Vec<u8>> {
    ref_hash(crypto, DIRECTORY_INDEX_LABEL, connection_token)
}
