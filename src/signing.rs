//! Client-side signing: the signatures a client puts on what it sends (wire-format.md §3.2
//! `ClientSignature`, §3.5 `UserAuthKeyExtension`, §10.3 `QSClientRequest`), and the
//! `user_key_hash` by which a user names its key as a request's sender (§3.5). The DS computes
//! the same hash to find the key that verifies such a request.
//!
//! The structures and the exact bytes each signature covers are codecs and live in
//! [`crate::wire`]; here they are signed. Verification is the server's: `auth` (the DS) and
//! `qs::client` (the QS).

use openmls_traits::signatures::Signer;
use tls_codec::{Serialize as _, VLBytes};

use crate::wire::{
    ClientSignature, ClientSignatureTbs, DsRequestBody, DsSenderId, QsClientRequest,
    QsClientRequestBody, SignError, UserAuthKeyExtension, USER_KEY_HASH_LABEL,
};

/// `user_key_hash` for a user authentication key: `RefHash("MIMI DS UserKey", key)` with the
/// group ciphersuite's hash (RFC 9420 §5.2), i.e. `Hash(RefHashInput { opaque label<V>; opaque
/// value<V>; })`.
pub fn user_key_hash(
    crypto: &impl openmls_traits::crypto::OpenMlsCrypto,
    hash: openmls_traits::types::HashType,
    key: &[u8],
) -> Result<Vec<u8>, openmls_traits::types::CryptoError> {
    let input = (
        VLBytes::from(USER_KEY_HASH_LABEL.as_bytes().to_vec()),
        VLBytes::from(key.to_vec()),
    )
        .tls_serialize_detached()
        .map_err(|_| openmls_traits::types::CryptoError::TlsSerializationError)?;
    crypto.hash(hash, &input)
}

impl ClientSignature {
    /// Signs a request body as `sender_id` (the client side of wire-format.md §3.2).
    pub fn sign(
        signer: &impl Signer,
        version: u16,
        body: &DsRequestBody,
        group_id: &[u8],
        timestamp_ms: u64,
        sender_id: DsSenderId,
    ) -> Result<Self, SignError> {
        let group_id = VLBytes::from(group_id.to_vec());
        let tbs = ClientSignatureTbs {
            version,
            body,
            group_id: &group_id,
            timestamp_ms,
            sender_id: &sender_id,
        };
        let content = tbs.sign_content().map_err(|_| SignError::Encoding)?;
        let signature = signer.sign(&content).map_err(|_| SignError::Signer)?;
        Ok(Self {
            group_id,
            timestamp_ms,
            sender_id,
            signature: signature.into(),
        })
    }
}

impl UserAuthKeyExtension {
    /// The extension a client publishes in a leaf whose signature key is `leaf_signature_key`,
    /// signed with its user's key (the client side of wire-format.md §3.5).
    pub fn sign(
        user_key: &impl Signer,
        user_auth_key: &[u8],
        leaf_signature_key: &[u8],
    ) -> Result<Self, SignError> {
        let content = Self::proof_content(leaf_signature_key).map_err(|_| SignError::Encoding)?;
        let proof = user_key.sign(&content).map_err(|_| SignError::Signer)?;
        Ok(Self {
            user_auth_key: user_auth_key.to_vec().into(),
            proof: proof.into(),
        })
    }
}

impl QsClientRequest {
    /// Builds and signs a request (the client side of wire-format.md §10.3).
    pub fn sign(
        signer: &impl Signer,
        version: u16,
        body: QsClientRequestBody,
        queue_id: &[u8],
        timestamp_ms: u64,
    ) -> Result<Self, SignError> {
        let mut request = Self {
            version,
            body,
            queue_id: queue_id.to_vec().into(),
            timestamp_ms,
            signature: VLBytes::new(Vec::new()),
        };
        let content = request
            .tbs()
            .sign_content()
            .map_err(|_| SignError::Encoding)?;
        request.signature = signer.sign(&content).map_err(|_| SignError::Signer)?.into();
        Ok(request)
    }
}
