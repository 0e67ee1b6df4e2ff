//! The client side of pseudonymous credentials (MIMIMI §"Pseudonymous credentials"; digest
//! §5.2, §5.6; wire-format.md §14.1): deriving a credential's `identity_link_key` from the
//! user's connection key, sealing and opening the identity link, and signing and verifying the
//! pseudonymous credential with the client's real key. The hub never runs any of this: it
//! neither holds connection keys nor sees real credentials.

use openmls::prelude::{Ciphersuite, Credential, CredentialType};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use tls_codec::{Serialize as _, TlsSerialize, TlsSize, VLBytes};

use super::codec::{IdentityLinkTbe, PseudonymousCredential, PseudonymousCredentialTbs};
use super::PSEUDONYMOUS_CREDENTIAL_TYPE;
use crate::wire::decode_exact;

/// The `ExpandWithLabel` label of `identity_link_key` (MIMIMI; MP-MMR).
pub const IDENTITY_LINK_KEY_LABEL: &str = "IdentityLinkKey";
/// The `ExpandWithLabel` label of the AEAD key derived from an `identity_link_key`.
pub const IDENTITY_LINK_AEAD_KEY_LABEL: &str = "IdentityLinkAeadKey";
/// The `ExpandWithLabel` label of the AEAD nonce derived from an `identity_link_key`.
pub const IDENTITY_LINK_AEAD_NONCE_LABEL: &str = "IdentityLinkAeadNonce";
/// The `SignWithLabel` label of `pseudonymous_credential_signature` (MIMIMI).
pub const PSEUDONYMOUS_CREDENTIAL_SIGNATURE_LABEL: &str = "PseudonymousCredentialTBS";

/// Why a client-side pseudonymous-credential operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityLinkError {
    /// The crypto provider failed (an unsupported algorithm or a bad key length).
    #[error("crypto provider error: {0}")]
    Crypto(String),
    /// A structure could not be encoded (a vector over the MLS varint limit).
    #[error("encoding failed: {0}")]
    Encoding(String),
    /// The credential is not of type [`PSEUDONYMOUS_CREDENTIAL_TYPE`].
    #[error("not a pseudonymous credential")]
    NotPseudonymous,
    /// The credential's content is not a `PseudonymousCredential`.
    #[error("the pseudonymous credential does not decode: {0}")]
    Undecodable(String),
    /// The identity link does not decrypt with this key: the wrong connection key (not a
    /// connected user), or a ciphertext altered or moved to another credential.
    #[error("the identity link does not decrypt")]
    DoesNotDecrypt,
    /// The decrypted identity link is not an `IdentityLinkTBE`.
    #[error("the identity link does not decode: {0}")]
    LinkUndecodable(String),
    /// `pseudonymous_credential_signature` does not verify with the real credential's key.
    #[error("the pseudonymous credential signature does not verify")]
    SignatureDoesNotVerify,
    /// The real signer failed.
    #[error("signing failed")]
    Signer,
}

/// A credential's `identity_link_key`: `KDF.Nh` bytes that decrypt its identity link. Whoever
/// holds it learns the client's real identity, so it is shared only with the room's members
/// (wrapped, wire-format.md §14.2).
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityLinkKey(pub Vec<u8>);

impl std::fmt::Debug for IdentityLinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityLinkKey(..)")
    }
}

/// RFC 9420 §8 `KDFLabel { uint16 length; opaque label<V> = "MLS 1.0 " + Label; opaque
/// context<V>; }`.
#[derive(TlsSerialize, TlsSize)]
struct KdfLabel {
    length: u16,
    label: VLBytes,
    context: VLBytes,
}

/// RFC 9420 §8 `ExpandWithLabel(secret, label, context, length)` with the ciphersuite's KDF.
pub fn expand_with_label(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    secret: &[u8],
    label: &str,
    context: &[u8],
    length: usize,
) -> Result<Vec<u8>, IdentityLinkError> {
    let info = KdfLabel {
        length: u16::try_from(length).map_err(|e| IdentityLinkError::Encoding(e.to_string()))?,
        label: [b"MLS 1.0 ", label.as_bytes()].concat().into(),
        context: context.to_vec().into(),
    }
    .tls_serialize_detached()
    .map_err(|e| IdentityLinkError::Encoding(e.to_string()))?;
    crypto
        .hkdf_expand(ciphersuite.hash_algorithm(), secret, &info, length)
        .map(|okm| okm.as_slice().to_vec())
        .map_err(|e| IdentityLinkError::Crypto(format!("{e:?}")))
}

/// RFC 9420 §5.1.2 `SignContent { opaque label<V> = "MLS 1.0 " + Label; opaque content<V>; }`.
#[derive(TlsSerialize, TlsSize)]
struct SignContent {
    label: VLBytes,
    content: VLBytes,
}

fn sign_content(tbs: &PseudonymousCredentialTbs) -> Result<Vec<u8>, IdentityLinkError> {
    let encoding = |e: tls_codec::Error| IdentityLinkError::Encoding(e.to_string());
    SignContent {
        label: [
            b"MLS 1.0 ",
            PSEUDONYMOUS_CREDENTIAL_SIGNATURE_LABEL.as_bytes(),
        ]
        .concat()
        .into(),
        content: tbs.encode().map_err(encoding)?.into(),
    }
    .tls_serialize_detached()
    .map_err(encoding)
}

/// `identity_link_key = ExpandWithLabel(connection_key, "IdentityLinkKey",
/// PseudonymousCredentialTBS, KDF.Nh)`.
pub fn identity_link_key(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    connection_key: &[u8],
    tbs: &PseudonymousCredentialTbs,
) -> Result<IdentityLinkKey, IdentityLinkError> {
    let context = tbs
        .encode()
        .map_err(|e| IdentityLinkError::Encoding(e.to_string()))?;
    expand_with_label(
        crypto,
        ciphersuite,
        connection_key,
        IDENTITY_LINK_KEY_LABEL,
        &context,
        ciphersuite.hash_length(),
    )
    .map(IdentityLinkKey)
}

/// The AEAD key and nonce of an identity link: both derived from its `identity_link_key`
/// (wire-format.md §14.1). Each key encrypts exactly one plaintext (one credential's link), so
/// a deterministic nonce is never reused with two plaintexts.
fn aead_key_and_nonce(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &IdentityLinkKey,
) -> Result<(Vec<u8>, Vec<u8>), IdentityLinkError> {
    Ok((
        expand_with_label(
            crypto,
            ciphersuite,
            &key.0,
            IDENTITY_LINK_AEAD_KEY_LABEL,
            &[],
            ciphersuite.aead_key_length(),
        )?,
        expand_with_label(
            crypto,
            ciphersuite,
            &key.0,
            IDENTITY_LINK_AEAD_NONCE_LABEL,
            &[],
            ciphersuite.aead_nonce_length(),
        )?,
    ))
}

/// `identity_link_ciphertext`: the AEAD of the ciphersuite over `IdentityLinkTBE`, with the
/// encoded `PseudonymousCredentialTBS` as associated data.
pub fn seal_identity_link(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &IdentityLinkKey,
    tbs: &PseudonymousCredentialTbs,
    link: &IdentityLinkTbe,
) -> Result<Vec<u8>, IdentityLinkError> {
    let encoding = |e: tls_codec::Error| IdentityLinkError::Encoding(e.to_string());
    let (aead_key, nonce) = aead_key_and_nonce(crypto, ciphersuite, key)?;
    crypto
        .aead_encrypt(
            ciphersuite.aead_algorithm(),
            &aead_key,
            &link.tls_serialize_detached().map_err(encoding)?,
            &nonce,
            &tbs.encode().map_err(encoding)?,
        )
        .map_err(|e| IdentityLinkError::Crypto(format!("{e:?}")))
}

/// Opens `identity_link_ciphertext` with the credential's `identity_link_key`.
pub fn open_identity_link(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &IdentityLinkKey,
    tbs: &PseudonymousCredentialTbs,
    ciphertext: &[u8],
) -> Result<IdentityLinkTbe, IdentityLinkError> {
    let (aead_key, nonce) = aead_key_and_nonce(crypto, ciphersuite, key)?;
    let aad = tbs
        .encode()
        .map_err(|e| IdentityLinkError::Encoding(e.to_string()))?;
    let plaintext = crypto
        .aead_decrypt(
            ciphersuite.aead_algorithm(),
            &aead_key,
            ciphertext,
            &nonce,
            &aad,
        )
        .map_err(|_| IdentityLinkError::DoesNotDecrypt)?;
    decode_exact::<IdentityLinkTbe>(&plaintext)
        .map_err(|e| IdentityLinkError::LinkUndecodable(e.to_string()))
}

/// `pseudonymous_credential_signature = SignWithLabel(real_key, "PseudonymousCredentialTBS",
/// PseudonymousCredentialTBS)`.
pub fn sign_pseudonymous_credential(
    real_signer: &impl Signer,
    tbs: &PseudonymousCredentialTbs,
) -> Result<Vec<u8>, IdentityLinkError> {
    real_signer
        .sign(&sign_content(tbs)?)
        .map_err(|_| IdentityLinkError::Signer)
}

/// Verifies `pseudonymous_credential_signature` with the real credential's key.
pub fn verify_pseudonymous_credential_signature(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    real_signature_key: &[u8],
    tbs: &PseudonymousCredentialTbs,
    signature: &[u8],
) -> Result<(), IdentityLinkError> {
    crypto
        .verify_signature(
            ciphersuite.signature_algorithm(),
            &sign_content(tbs)?,
            real_signature_key,
            signature,
        )
        .map_err(|_| IdentityLinkError::SignatureDoesNotVerify)
}

/// What a client's real identity is, as an authenticated identity link names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIdentity {
    /// The client's real credential.
    pub credential: Credential,
    /// Its signature public key, which signed the pseudonymous credential.
    pub signature_key: Vec<u8>,
}

/// A client's new pseudonymous credential and the key its identity link is sealed under.
#[derive(Debug, Clone)]
pub struct NewPseudonymousCredential {
    /// The credential, to put into an MLS `Credential` with [`to_mls_credential`].
    pub credential: PseudonymousCredential,
    /// Its `identity_link_key`, which the adder re-derives and wraps for the room.
    pub identity_link_key: IdentityLinkKey,
}

/// The inputs of a new pseudonymous credential (MIMIMI §"Pseudonymous credentials").
pub struct CredentialInputs<'a, S: Signer> {
    /// The user's connection key.
    pub connection_key: &'a [u8],
    /// The credential's pseudonyms and leaf signature key.
    pub tbs: PseudonymousCredentialTbs,
    /// The client's real credential.
    pub real_credential: &'a Credential,
    /// The real credential's signature key pair.
    pub real_signer: &'a S,
    /// The real credential's signature public key.
    pub real_signature_key: &'a [u8],
}

/// Builds a pseudonymous credential: signs its TBS with the real key, derives its
/// `identity_link_key` from the connection key and seals the identity link under it.
pub fn new_pseudonymous_credential<S: Signer>(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    inputs: CredentialInputs<'_, S>,
) -> Result<NewPseudonymousCredential, IdentityLinkError> {
    let encoding = |e: tls_codec::Error| IdentityLinkError::Encoding(e.to_string());
    let link = IdentityLinkTbe {
        pseudonymous_credential_signature: sign_pseudonymous_credential(
            inputs.real_signer,
            &inputs.tbs,
        )?
        .into(),
        client_credential: inputs
            .real_credential
            .tls_serialize_detached()
            .map_err(encoding)?
            .into(),
        client_signature_key: inputs.real_signature_key.to_vec().into(),
    };
    let key = identity_link_key(crypto, ciphersuite, inputs.connection_key, &inputs.tbs)?;
    let ciphertext = seal_identity_link(crypto, ciphersuite, &key, &inputs.tbs, &link)?;
    let tbs = inputs.tbs;
    Ok(NewPseudonymousCredential {
        credential: PseudonymousCredential {
            client_pseudonym: tbs.client_pseudonym,
            user_pseudonym: tbs.user_pseudonym,
            signature_public_key: tbs.signature_public_key,
            identity_link_ciphertext: ciphertext.into(),
        },
        identity_link_key: key,
    })
}

/// The MLS `Credential` carrying `credential`: type [`PSEUDONYMOUS_CREDENTIAL_TYPE`], content
/// the encoded `PseudonymousCredential` (wire-format.md §14.1).
pub fn to_mls_credential(
    credential: &PseudonymousCredential,
) -> Result<Credential, IdentityLinkError> {
    Ok(Credential::new(
        CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE),
        credential
            .encode()
            .map_err(|e| IdentityLinkError::Encoding(e.to_string()))?,
    ))
}

/// The `PseudonymousCredential` an MLS `Credential` carries.
pub fn from_mls_credential(
    credential: &Credential,
) -> Result<PseudonymousCredential, IdentityLinkError> {
    if credential.credential_type() != CredentialType::Other(PSEUDONYMOUS_CREDENTIAL_TYPE) {
        return Err(IdentityLinkError::NotPseudonymous);
    }
    PseudonymousCredential::decode(credential.serialized_content())
        .map_err(|e| IdentityLinkError::Undecodable(e.to_string()))
}

/// Authenticates a pseudonymous credential with its `identity_link_key`: opens the identity
/// link, decodes the real credential and verifies `pseudonymous_credential_signature` with the
/// real key. Whether the real credential itself is valid (and its key is its own) is the
/// caller's identity system's decision, e.g. a [`crate::CredentialValidator`].
pub fn authenticate(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    key: &IdentityLinkKey,
    credential: &PseudonymousCredential,
) -> Result<RealIdentity, IdentityLinkError> {
    let tbs = credential.tbs();
    let link = open_identity_link(
        crypto,
        ciphersuite,
        key,
        &tbs,
        credential.identity_link_ciphertext.as_slice(),
    )?;
    verify_pseudonymous_credential_signature(
        crypto,
        ciphersuite,
        link.client_signature_key.as_slice(),
        &tbs,
        link.pseudonymous_credential_signature.as_slice(),
    )?;
    let real = decode_exact::<Credential>(link.client_credential.as_slice())
        .map_err(|e| IdentityLinkError::LinkUndecodable(e.to_string()))?;
    Ok(RealIdentity {
        credential: real,
        signature_key: link.client_signature_key.as_slice().to_vec(),
    })
}

/// What the adder of a connected user does per KeyPackage (MIMIMI Flow C step 2): derives the
/// credential's `identity_link_key` from the user's connection key and authenticates the
/// credential with it. Returns the real identity and the key, to wrap for the room.
pub fn authenticate_with_connection_key(
    crypto: &impl OpenMlsCrypto,
    ciphersuite: Ciphersuite,
    connection_key: &[u8],
    credential: &PseudonymousCredential,
) -> Result<(RealIdentity, IdentityLinkKey), IdentityLinkError> {
    let key = identity_link_key(crypto, ciphersuite, connection_key, &credential.tbs())?;
    let real = authenticate(crypto, ciphersuite, &key, credential)?;
    Ok((real, key))
}
