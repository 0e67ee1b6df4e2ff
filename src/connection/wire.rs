//! The codecs of connection establishment (wire-format.md §14.3; MM-01 flow A):
//! what the initiator seals to the responder, what the responder seals back, what a provider
//! serves and takes in, and how the sealed answer rides in an external commit's AAD.

use openmls::prelude::Credential;
use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use crate::wire::HpkeCiphertext;

/// The `EncryptWithLabel` label of a sealed [`ConnectionRequest`] (MM-01 leaves it open; wire-format.md §14.3.1).
pub const CONNECTION_REQUEST_LABEL: &str = "MIMIMI ConnectionRequest";
/// The `EncryptWithLabel` label of a sealed [`ConnectionResponse`] (MM-01 leaves it open; wire-format.md §14.3.1).
pub const CONNECTION_RESPONSE_LABEL: &str = "MIMIMI ConnectionResponse";
/// The `SignWithLabel` label of a [`ConnectionRequest`]'s signature.
pub const CONNECTION_REQUEST_SIGNATURE_LABEL: &str = "MIMIMI ConnectionRequestTBS";
/// The `SignWithLabel` label of a [`ConnectionResponse`]'s signature.
pub const CONNECTION_RESPONSE_SIGNATURE_LABEL: &str = "MIMIMI ConnectionResponseTBS";
/// The `EncryptWithLabel` label of a sealed [`ConnectionInboxAddress`].
pub const CONNECTION_INBOX_LABEL: &str = "MIMIMI ConnectionInbox";
/// The SafeAAD component ID (draft-ietf-mls-extensions; openmls 0.9 `ComponentId`, private
/// range 0x8000-0xFFFF) under which an external commit carries a sealed
/// [`ConnectionResponse`].
pub const CONNECTION_RESPONSE_COMPONENT_ID: u16 = 0xF1DA;

/// `ConnectionRequest` (MM-01 flow A step 4, with the connection token of MM-00
/// and a signature by the requester's real client key): what the initiator seals to the
/// responder's connection-establishment key.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionRequest {
    /// The requester's real client credential.
    pub requester_client_credential: Credential,
    /// The signature public key that goes with it (the MLS `CredentialWithKey` key).
    pub requester_signature_key: VLBytes,
    /// The connection room, hosted by the requester's provider as hub.
    pub connection_room_id: VLBytes,
    /// The room's `identity_link_wrapper_key` (MM-01 §5.6).
    pub connection_room_identity_link_wrapper_key: VLBytes,
    /// The requester's connection key (MM-01, the keys a user holds).
    pub requester_connection_key: VLBytes,
    /// The requester's connection token: it authorizes fetching the requester's KeyPackages
    /// from its provider (MM-00; the draft's TODO in MM-01 flow A step 4).
    pub requester_connection_token: VLBytes,
    /// A fresh HPKE public key of the connection's ciphersuite; the response is sealed to it.
    pub connection_response_key: VLBytes,
    /// `SignWithLabel(requester key, "MIMIMI ConnectionRequestTBS", ConnectionRequestTBS)`.
    pub signature: VLBytes,
}

impl ConnectionRequest {
    /// `ConnectionRequestTBS`: every field but the signature, then the responder's
    /// connection-establishment key the request is sealed to, so that the responder cannot
    /// pass a request on to someone else as addressed to them.
    pub fn tbs(&self, responder_establishment_key: &[u8]) -> Result<Vec<u8>, tls_codec::Error> {
        let mut out = self.requester_client_credential.tls_serialize_detached()?;
        for field in [
            &self.requester_signature_key,
            &self.connection_room_id,
            &self.connection_room_identity_link_wrapper_key,
            &self.requester_connection_key,
            &self.requester_connection_token,
            &self.connection_response_key,
        ] {
            field.tls_serialize(&mut out)?;
        }
        VLBytes::from(responder_establishment_key.to_vec()).tls_serialize(&mut out)?;
        Ok(out)
    }
}

/// `ConnectionResponse` (MM-01 flow A step 7, mirrored: the responder's connection token, its
/// real credential and a signature, as the draft asks for anything added to the request).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionResponse {
    /// The responder's real client credential.
    pub responder_client_credential: Credential,
    /// The signature public key that goes with it.
    pub responder_signature_key: VLBytes,
    /// The responder's connection key.
    pub responder_connection_key: VLBytes,
    /// The responder's connection token.
    pub responder_connection_token: VLBytes,
    /// `SignWithLabel(responder key, "MIMIMI ConnectionResponseTBS", ConnectionResponseTBS)`.
    pub signature: VLBytes,
}

impl ConnectionResponse {
    /// `ConnectionResponseTBS`: every field but the signature, then the room and the
    /// `connection_response_key` of the request it answers, so that it answers that request
    /// only.
    pub fn tbs(
        &self,
        connection_room_id: &[u8],
        connection_response_key: &[u8],
    ) -> Result<Vec<u8>, tls_codec::Error> {
        let mut out = self.responder_client_credential.tls_serialize_detached()?;
        for field in [
            &self.responder_signature_key,
            &self.responder_connection_key,
            &self.responder_connection_token,
        ] {
            field.tls_serialize(&mut out)?;
        }
        VLBytes::from(connection_room_id.to_vec()).tls_serialize(&mut out)?;
        VLBytes::from(connection_response_key.to_vec()).tls_serialize(&mut out)?;
        Ok(out)
    }
}

pub use crate::safe_aad::{SafeAad, SafeAadItem};

/// `ConnectionInboxAddress`: which connection inbox a delivery is for, sealed by the provider
/// to itself (`EncryptWithLabel(inbox key, "MIMIMI ConnectionInbox", provider_domain, ·)`), so
/// only that provider reads it.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionInboxAddress {
    /// The inbox, 16 random bytes chosen by the provider when the key was first published.
    pub inbox_id: VLBytes,
}

/// `ConnectionKeyBundle`: what a provider serves, without authentication, for one of its
/// users (MM-01 flow A step 2): the connection-establishment key and a freshly sealed inbox
/// address. It reveals nothing else about the user.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionKeyBundle {
    /// The MLS ciphersuite whose HPKE suite the key belongs to (RFC 9420 §17.1).
    pub ciphersuite: u16,
    /// The user's connection-establishment HPKE public key.
    pub connection_establishment_key: VLBytes,
    /// The provider that holds the inbox.
    pub provider_domain: VLBytes,
    /// The sealed [`ConnectionInboxAddress`], sealed afresh for every fetch.
    pub inbox: HpkeCiphertext,
}

/// `ConnectionRequestDelivery`: the body of `POST /connection_request`, from the initiator's
/// provider to the responder's.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionRequestDelivery {
    /// `DSProtocolVersion`; only `mimi_ds10(1)`.
    pub version: u16,
    /// The sending provider; it must be the provider mutual TLS authenticated.
    pub sender_domain: VLBytes,
    /// The receiving provider (forwarding-attack rule).
    pub recipient_domain: VLBytes,
    /// The sealed inbox address from the responder's [`ConnectionKeyBundle`].
    pub inbox: HpkeCiphertext,
    /// The sealed [`ConnectionRequest`].
    pub sealed_request: HpkeCiphertext,
}

/// `StoredConnectionRequest`: one request in a connection inbox, as the responder fetches it.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct StoredConnectionRequest {
    /// Position in the inbox: consecutive, from 0.
    pub sequence_number: u64,
    /// When the provider took it (its `now`), ms since the UNIX epoch.
    pub received_ms: u64,
    /// The provider that delivered it.
    pub sender_domain: VLBytes,
    /// The sealed [`ConnectionRequest`], as delivered.
    pub sealed_request: HpkeCiphertext,
}
