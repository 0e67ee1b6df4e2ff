//! The hub's side of an abuse report (wire-format.md §15.7): re-verifying the frank of a
//! reported message.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use super::verify_reported_message;
use crate::service::DeliveryService;
use crate::wire::{decode_exact, ReportedMessage};

/// Why a reported message's frank does not verify (wire-format.md §15.7). Each is a refusal
/// of the report; the hub stores nothing either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrankRefusal {
    /// The hub has no [`super::FrankingKey`]: it franks nothing and verifies nothing.
    #[error("this hub does not frank messages")]
    NotConfigured,
    /// The report is not a `ReportedMessage`.
    #[error("the report is not a ReportedMessage")]
    Malformed,
    /// The reported plaintext is not a `mimiContent` array with a 16-octet salt, so it has no
    /// franking tag.
    #[error("the reported plaintext is not a mimiContent message")]
    NotMimiContent,
    /// The server frank recomputed from the plaintext and the context differs from the
    /// frank's: another message, sender, room or time, or an altered frank.
    #[error("the server frank does not match the message and its context")]
    ServerFrankMismatch,
    /// `franking_signature_ciphersuite` is not a ciphersuite this crate knows.
    #[error("unknown franking signature ciphersuite 0x{0:04x}")]
    UnknownCiphersuite(u16),
    /// The `franking_integrity_signature` does not verify with any of the hub's identities.
    #[error("the franking integrity signature does not verify")]
    SignatureDoesNotVerify,
    /// The crypto provider failed.
    #[error("crypto provider failure")]
    CryptoFailed,
}

impl<C: OpenMlsCrypto + OpenMlsRand> DeliveryService<C> {
    /// Re-verifies the frank of a message presented in an abuse report (draft-ietf-mimi-protocol
    /// `/reportAbuse`: "the hub re-verifies the frank"; wire-format.md §15.7): the server frank
    /// recomputed with the hub's key from the plaintext and the context, and the signature by
    /// the DS's current or a retired identity. Reads no storage and writes nothing; the
    /// embedding server decides what to do with a verified report (e.g. compare
    /// `context.sender_uri` with the alleged abuser and `context.room_uri` with the room).
    pub fn verify_reported_message(&self, report: &ReportedMessage) -> Result<(), FrankRefusal> {
        let key = self
            .franking_key
            .as_ref()
            .ok_or(FrankRefusal::NotConfigured)?;
        let keys: Vec<&[u8]> = std::iter::once(&self.identity)
            .chain(&self.retired)
            .map(|identity| identity.signature_key.as_slice())
            .collect();
        verify_reported_message(&self.crypto, key, &keys, report)
    }

    /// [`DeliveryService::verify_reported_message`] of an encoded `ReportedMessage`.
    pub fn verify_reported_message_bytes(&self, report: &[u8]) -> Result<(), FrankRefusal> {
        let report =
            decode_exact::<ReportedMessage>(report).map_err(|_| FrankRefusal::Malformed)?;
        self.verify_reported_message(&report)
    }
}
