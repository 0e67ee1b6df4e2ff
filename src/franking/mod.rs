//! Franking (draft-ietf-mimi-protocol-06 §"Franking"; wire-format.md §15.5-§15.7): the hub
//! vouches that a member sent an application message, so that a recipient can later prove it
//! to the hub in an abuse report without the hub ever reading messages.
//!
//! * The sender puts `franking_tag = HMAC-SHA256(salt, application_data)` in the message's
//!   authenticated data (`frank_aad`, SafeAAD component 0x0020), where `salt` is the
//!   mimi-content salt inside `application_data` ([`franking_tag`]).
//! * The hub, accepting the message, computes `server_frank = HMAC-SHA256(hub_key,
//!   franking_tag || ServerFrankingContext)` and signs it ([`frank_message`]); the frank goes
//!   back with the acceptance and out with the fanout.
//! * A recipient checks the tag against what it decrypted; to report the message it hands the
//!   hub the plaintext, the context and the frank, and the hub re-verifies both
//!   ([`crate::DeliveryService::verify_reported_message`]).
//!
//! The hub's HMAC key ([`FrankingKey`]) is a secret of the deployment; the signature is made
//! with the DS's current identity and verifies with it or any retired one (§7.6).

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use openmls_traits::types::{Ciphersuite, HashType};
use tls_codec::Serialize as _;

use crate::message_id::content_salt;
use crate::wire::{
    Frank, FrankingIntegrityTbs, ReportedMessage, SafeAad, ServerFrankingContext,
    FRANK_AAD_COMPONENT_ID, FRANK_LEN,
};

mod verify;

pub use verify::FrankRefusal;

/// The hub's franking secret: the HMAC-SHA256 key of every server frank. A deployment keeps
/// it like a signing key (every hub instance needs the same one, and it must outlive every
/// frank a user may still report).
#[derive(Clone)]
pub struct FrankingKey([u8; 32]);

impl FrankingKey {
    /// A key from 32 secret bytes (e.g. from the deployment's key store or its CSPRNG).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for FrankingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrankingKey(..)")
    }
}

/// Why the franking tag of a message's authenticated data could not be read (a refusal of
/// `send_message`, wire-format.md §15.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrankAadError {
    /// The `frank_aad` item is not a `FrankAAD` (exactly 32 octets).
    #[error("the frank_aad item holds {0} octets, not a 32-octet franking tag")]
    WrongTagLength(usize),
}

/// The franking tag a message carries in its `authenticated_data`, if any: the data of the
/// `frank_aad` item (component 0x0020) of the SafeAAD at the beginning of the bytes. `None`
/// when the bytes do not begin with a SafeAAD or it has no `frank_aad` item: the message is
/// not franked.
pub fn franking_tag_in(
    authenticated_data: &[u8],
) -> Result<Option<[u8; FRANK_LEN]>, FrankAadError> {
    let Some(aad) = SafeAad::read_prefix(authenticated_data) else {
        return Ok(None);
    };
    // Items are in strictly increasing order, so there is at most one frank_aad item.
    let Some(item) = aad
        .aad_items
        .iter()
        .find(|item| item.component_id == FRANK_AAD_COMPONENT_ID)
    else {
        return Ok(None);
    };
    let data = item.aad_item_data.as_slice();
    data.try_into()
        .map(Some)
        .map_err(|_| FrankAadError::WrongTagLength(data.len()))
}

/// HMAC-SHA256 through the crate's crypto provider (RFC 2104; RFC 5869's HKDF-Extract is the
/// same function with the salt as the key).
fn hmac_sha256(crypto: &impl OpenMlsCrypto, key: &[u8], message: &[u8]) -> Option<[u8; FRANK_LEN]> {
    let mac = crypto.hmac(HashType::Sha2_256, key, message).ok()?;
    mac.as_slice().try_into().ok()
}

/// The sender's franking tag of an encoded `mimiContent` message: `HMAC-SHA256(salt,
/// application_data)` with the content's own salt (the client side of wire-format.md §15.5).
/// `None` if the bytes are not a `mimiContent` array with a 16-octet salt.
pub fn franking_tag(
    crypto: &impl OpenMlsCrypto,
    application_data: &[u8],
) -> Option<[u8; FRANK_LEN]> {
    let salt = content_salt(application_data).ok()?;
    hmac_sha256(crypto, &salt, application_data)
}

/// `server_frank = HMAC-SHA256(hub_key, franking_tag || ServerFrankingContext)`.
pub fn server_frank(
    crypto: &impl OpenMlsCrypto,
    key: &FrankingKey,
    franking_tag: &[u8; FRANK_LEN],
    context: &ServerFrankingContext,
) -> Option<[u8; FRANK_LEN]> {
    let mut input = franking_tag.to_vec();
    input.extend_from_slice(&context.tls_serialize_detached().ok()?);
    hmac_sha256(crypto, &key.0, &input)
}

/// The hub's frank of an accepted message with this franking tag: the server frank and its
/// `SignWithLabel(.., "FrankingIntegrityTBS", ..)` by `signer`, naming `ciphersuite`.
/// `None` if the crypto provider or the signer fails.
pub fn frank_message(
    crypto: &impl OpenMlsCrypto,
    key: &FrankingKey,
    signer: &impl Signer,
    ciphersuite: u16,
    franking_tag: &[u8; FRANK_LEN],
    context: &ServerFrankingContext,
) -> Option<Frank> {
    let server_frank = server_frank(crypto, key, franking_tag, context)?;
    let content = FrankingIntegrityTbs {
        server_frank,
        franking_signature_ciphersuite: ciphersuite,
        context,
    }
    .sign_content()
    .ok()?;
    let signature = signer.sign(&content).ok()?;
    Some(Frank {
        server_frank,
        franking_signature_ciphersuite: ciphersuite,
        franking_integrity_signature: signature.into(),
    })
}

/// Checks a frank's `franking_integrity_signature` with `signature_key` (a recipient's check,
/// also part of the hub's [`verify_reported_message`]).
pub fn verify_frank_signature(
    crypto: &impl OpenMlsCrypto,
    signature_key: &[u8],
    frank: &Frank,
    context: &ServerFrankingContext,
) -> Result<(), FrankRefusal> {
    let suite = Ciphersuite::try_from(frank.franking_signature_ciphersuite)
        .map_err(|_| FrankRefusal::UnknownCiphersuite(frank.franking_signature_ciphersuite))?;
    let content = FrankingIntegrityTbs {
        server_frank: frank.server_frank,
        franking_signature_ciphersuite: frank.franking_signature_ciphersuite,
        context,
    }
    .sign_content()
    .map_err(|_| FrankRefusal::SignatureDoesNotVerify)?;
    crypto
        .verify_signature(
            suite.signature_algorithm(),
            &content,
            signature_key,
            frank.franking_integrity_signature.as_slice(),
        )
        .map_err(|_| FrankRefusal::SignatureDoesNotVerify)
}

/// The hub's check of a reported message (wire-format.md §15.7), in order: the plaintext is a
/// `mimiContent` with a salt; the server frank recomputed from the plaintext's franking tag
/// and the context equals the frank's (constant time); the signature verifies with one of
/// `hub_signature_keys` (the current identity's and the retired ones', §7.6).
pub fn verify_reported_message(
    crypto: &impl OpenMlsCrypto,
    key: &FrankingKey,
    hub_signature_keys: &[&[u8]],
    report: &ReportedMessage,
) -> Result<(), FrankRefusal> {
    let tag = franking_tag(crypto, report.application_data.as_slice())
        .ok_or(FrankRefusal::NotMimiContent)?;
    let expected =
        server_frank(crypto, key, &tag, &report.context).ok_or(FrankRefusal::CryptoFailed)?;
    let difference = expected
        .iter()
        .zip(&report.frank.server_frank)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if difference != 0 {
        return Err(FrankRefusal::ServerFrankMismatch);
    }
    let mut last = FrankRefusal::SignatureDoesNotVerify;
    for signature_key in hub_signature_keys {
        match verify_frank_signature(crypto, signature_key, &report.frank, &report.context) {
            Ok(()) => return Ok(()),
            Err(refusal) => last = refusal,
        }
    }
    Err(last)
}
