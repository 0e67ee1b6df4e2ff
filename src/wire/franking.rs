//! Franking codecs (draft-ietf-mimi-protocol-06 §"Franking"; wire-format.md §15.5-§15.7):
//! the client's `FrankAAD`, the hub's `Frank` and what it signs, and the message a reporter
//! presents to the hub.
//!
//! Codecs only: the hub computes and verifies franks in `crate::franking`.

use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::auth::sign_content;

/// The SafeAAD component ID of `frank_aad` (draft-ietf-mimi-protocol-06, registered in the
/// MLS Component IDs registry of draft-ietf-mls-extensions).
pub const FRANK_AAD_COMPONENT_ID: u16 = 0x0020;
/// The `SignWithLabel` label of a [`Frank`]'s `franking_integrity_signature`.
pub const FRANKING_INTEGRITY_LABEL: &str = "FrankingIntegrityTBS";
/// The length of a franking tag and of a server frank (HMAC-SHA256 outputs).
pub const FRANK_LEN: usize = 32;

pub use crate::safe_aad::{SafeAad, SafeAadItem};

impl SafeAad {
    /// The `authenticated_data` of a franked message: a SafeAAD whose only item is
    /// `frank_aad` with `FrankAAD { uint8 franking_tag[32]; }` (the client side of §15.5).
    pub fn with_franking_tag(franking_tag: &[u8; FRANK_LEN]) -> Self {
        Self {
            aad_items: vec![SafeAadItem {
                component_id: FRANK_AAD_COMPONENT_ID,
                aad_item_data: franking_tag.to_vec().into(),
            }],
        }
    }

    /// Reads a SafeAAD at the beginning of `authenticated_data` ([`SafeAad::parse_prefix`]);
    /// `None` when the bytes do not begin with one (the application's own AAD), or when its
    /// items are not in strictly increasing `component_id` order (draft-ietf-mls-extensions-08
    /// §4.9): such a message is not franked.
    pub fn read_prefix(authenticated_data: &[u8]) -> Option<Self> {
        Self::parse_prefix(authenticated_data)
            .ok()
            .map(|(aad, _application_data)| aad)
    }
}

/// `struct { opaque uri<V>; } IdentifierUri;` (draft-ietf-mimi-protocol-06).
pub type IdentifierUri = VLBytes;

/// `ServerFrankingContext { IdentifierUri sender_uri; IdentifierUri room_uri; uint64
/// accepted_timestamp; }` (draft-ietf-mimi-protocol-06): what the hub binds a frank to.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ServerFrankingContext {
    /// The sender's user, as the hub's credential validator names it (wire-format.md §15.5).
    pub sender_uri: IdentifierUri,
    /// The room: the group ID (wire-format.md §15.5).
    pub room_uri: IdentifierUri,
    /// The hub's acceptance time, ms since the UNIX epoch (`AcceptedMessage.accepted_time_ms`).
    pub accepted_timestamp: u64,
}

/// `Frank { uint8 server_frank[32]; CipherSuite franking_signature_ciphersuite; opaque
/// franking_integrity_signature<V>; }` (draft-ietf-mimi-protocol-06).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct Frank {
    /// `HMAC-SHA256(hub_key, franking_tag || ServerFrankingContext)`.
    pub server_frank: [u8; FRANK_LEN],
    /// The ciphersuite whose signature scheme made the signature (the group's).
    pub franking_signature_ciphersuite: u16,
    /// `SignWithLabel(hub key, "FrankingIntegrityTBS", FrankingIntegrityTBS)`.
    pub franking_integrity_signature: VLBytes,
}

/// `FrankingIntegrityTBS { uint8 server_frank[32]; CipherSuite franking_signature_ciphersuite;
/// ServerFrankingContext context; }` (draft-ietf-mimi-protocol-06).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsSize)]
pub struct FrankingIntegrityTbs<'a> {
    /// The server frank.
    pub server_frank: [u8; FRANK_LEN],
    /// The signature's ciphersuite.
    pub franking_signature_ciphersuite: u16,
    /// What the frank is bound to.
    pub context: &'a ServerFrankingContext,
}

impl FrankingIntegrityTbs<'_> {
    /// The exact bytes the hub signs: `SignContent` with label "MLS 1.0 FrankingIntegrityTBS"
    /// (RFC 9420 §5.1.2).
    pub fn sign_content(&self) -> Result<Vec<u8>, tls_codec::Error> {
        sign_content(FRANKING_INTEGRITY_LABEL, self.tls_serialize_detached()?)
    }
}

/// A message presented to the hub in an abuse report (wire-format.md §15.7), what MP-06
/// `/reportAbuse` carries per `AbusiveMessage` for the hub to re-verify the frank:
///
/// ```text
/// struct {
///     opaque application_data<V>;            /* the decrypted mimiContent, exact bytes */
///     ServerFrankingContext context;
///     Frank frank;
/// } ReportedMessage;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ReportedMessage {
    /// The application message's plaintext (an encoded `mimiContent`), as the reporter
    /// decrypted it; its salt is the franking key of the franking tag.
    pub application_data: VLBytes,
    /// The context the frank was delivered with.
    pub context: ServerFrankingContext,
    /// The frank the reporter received in the fanout.
    pub frank: Frank,
}
