//! The client side of connection establishment (wire-format.md §14.3.4; MM-01 flow A): the
//! initiator builds, signs and seals a [`ConnectionRequest`] and later opens the
//! [`ConnectionResponse`] from the responder's external commit; the responder opens and checks
//! the request and builds the sealed response for its external commit's AAD.

use std::collections::BTreeSet;

use openmls::prelude::{Ciphersuite, Credential, Member};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::signatures::Signer;
use openmls_traits::types::HpkePrivateKey;

use super::crypto::{open_with_label, seal_with_label, sign_with_label, verify_with_label};
use super::peer::{
    check_connection_room, check_peer_member, ConnectionRoom, ExpectedPeer, PeerIdentityError,
};
use super::wire::{
    ConnectionKeyBundle, ConnectionRequest, ConnectionRequestDelivery, ConnectionResponse, SafeAad,
    SafeAadItem, StoredConnectionRequest, CONNECTION_REQUEST_LABEL,
    CONNECTION_REQUEST_SIGNATURE_LABEL, CONNECTION_RESPONSE_COMPONENT_ID,
    CONNECTION_RESPONSE_LABEL, CONNECTION_RESPONSE_SIGNATURE_LABEL,
};
use crate::pseudonym::group_links::{add_aad_item, add_aad_of};
use crate::pseudonym::{
    EncryptedIdentityLinkKey, IdentityLinkKeys, InvalidIdentityLinkKeys, RealIdentity,
};
use crate::safe_aad::SafeAadError;
use crate::wire::{decode_exact, encode, HpkeCiphertext, PROTOCOL_VERSION_MIMI_DS10};

/// Why a client could not build, open or accept a connection message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The ciphersuite is not an MLS ciphersuite.
    #[error("unknown ciphersuite {0:#06x}")]
    UnknownCiphersuite(u16),
    /// A key is not a key of the ciphersuite's HPKE suite, or randomness failed.
    #[error("invalid key or no randomness")]
    InvalidKey,
    /// The ciphertext does not open with our key (not sealed to us, with this label and
    /// context, or altered).
    #[error("does not open with this key")]
    NotSealedToUs,
    /// The plaintext is not a well-formed message of its type.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the signature key the message names.
    #[error("the signature does not verify")]
    BadSignature,
    /// The responder already opened a request with this `connection_response_key`: a replay.
    #[error("connection request already seen")]
    Replayed,
    /// The commit's authenticated data carries no connection response.
    #[error("no connection response in the authenticated data")]
    NoResponse,
    /// The commit's authenticated data does not begin with a well-formed SafeAAD
    /// (draft-ietf-mls-extensions-08 §4.9; wire-format.md §14.3.4): undecodable, or items
    /// unsorted or duplicated.
    #[error("{0}")]
    SafeAad(SafeAadError),
    /// The room's identity links do not show the peer the connection was meant for
    /// (MM-01 flow A step 8; wire-format.md §14.3.4).
    #[error("connection room: {0}")]
    PeerIdentity(#[from] PeerIdentityError),
    /// A message could not be encoded or signed.
    #[error("encoding or signing failed")]
    Encoding,
}

fn suite(ciphersuite: u16) -> Result<Ciphersuite, ConnectionError> {
    Ciphersuite::try_from(ciphersuite).map_err(|_| ConnectionError::UnknownCiphersuite(ciphersuite))
}

/// A user's connection-establishment HPKE key pair (MM-01, the keys a user holds): the public key is published
/// at the user's provider, the private key opens connection requests.
pub struct ConnectionEstablishmentKey {
    ciphersuite: Ciphersuite,
    public: Vec<u8>,
    private: HpkePrivateKey,
}

impl std::fmt::Debug for ConnectionEstablishmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionEstablishmentKey")
            .field("ciphersuite", &self.ciphersuite)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ConnectionEstablishmentKey {
    /// Derives the key pair of `ciphersuite`'s HPKE suite from secret `seed` bytes (RFC 9180
    /// `DeriveKeyPair`).
    pub fn derive(
        crypto: &impl OpenMlsCrypto,
        ciphersuite: Ciphersuite,
        seed: &[u8],
    ) -> Result<Self, ConnectionError> {
        let pair = crypto
            .derive_hpke_keypair(ciphersuite.hpke_config(), seed)
            .map_err(|_| ConnectionError::InvalidKey)?;
        Ok(Self {
            ciphersuite,
            public: pair.public,
            private: pair.private,
        })
    }

    /// The public key to publish.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The ciphersuite.
    pub fn ciphersuite(&self) -> Ciphersuite {
        self.ciphersuite
    }
}

/// What the initiator puts into its request besides the keys this module generates.
#[derive(Debug, Clone)]
pub struct RequestContents<'a> {
    /// The initiator's real client credential.
    pub credential: &'a Credential,
    /// Its signature public key; `signer` below signs with the matching private key.
    pub signature_key: &'a [u8],
    /// The connection room the initiator created at its provider's hub.
    pub connection_room_id: &'a [u8],
    /// The room's identity-link wrapper key.
    pub identity_link_wrapper_key: &'a [u8],
    /// The initiator's connection key.
    pub connection_key: &'a [u8],
    /// The initiator's connection token.
    pub connection_token: &'a [u8],
}

/// What the initiator keeps after sending a request, to open the response: the request and
/// the private `connection_response_key`.
pub struct PendingConnection {
    ciphersuite: Ciphersuite,
    request: ConnectionRequest,
    response_private: HpkePrivateKey,
}

impl std::fmt::Debug for PendingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConnection")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// The initiator: builds and signs a [`ConnectionRequest`] with a fresh
/// `connection_response_key`, seals it to the responder's key from `bundle`
/// (`EncryptWithLabel(key, "MIMIMI ConnectionRequest", provider_domain, request)`), and
/// returns the `ConnectionRequestDelivery` its provider (`sender_domain`) posts to
/// `/connection_request` at the responder's provider.
pub fn seal_connection_request(
    crypto: &impl OpenMlsCrypto,
    rand: &impl OpenMlsRand,
    signer: &impl Signer,
    contents: &RequestContents<'_>,
    bundle: &ConnectionKeyBundle,
    sender_domain: &str,
) -> Result<(PendingConnection, ConnectionRequestDelivery), ConnectionError> {
    let ciphersuite = suite(bundle.ciphersuite)?;
    let seed = rand
        .random_vec(ciphersuite.hash_length())
        .map_err(|_| ConnectionError::InvalidKey)?;
    let response_keys = crypto
        .derive_hpke_keypair(ciphersuite.hpke_config(), &seed)
        .map_err(|_| ConnectionError::InvalidKey)?;
    let mut request = ConnectionRequest {
        requester_client_credential: contents.credential.clone(),
        requester_signature_key: contents.signature_key.to_vec().into(),
        connection_room_id: contents.connection_room_id.to_vec().into(),
        connection_room_identity_link_wrapper_key: contents
            .identity_link_wrapper_key
            .to_vec()
            .into(),
        requester_connection_key: contents.connection_key.to_vec().into(),
        requester_connection_token: contents.connection_token.to_vec().into(),
        connection_response_key: response_keys.public.into(),
        signature: Vec::new().into(),
    };
    let responder_key = bundle.connection_establishment_key.as_slice();
    let tbs = request
        .tbs(responder_key)
        .map_err(|_| ConnectionError::Encoding)?;
    request.signature = sign_with_label(signer, CONNECTION_REQUEST_SIGNATURE_LABEL, &tbs)
        .ok_or(ConnectionError::Encoding)?
        .into();
    let plaintext = encode(&request).map_err(|_| ConnectionError::Encoding)?;
    let sealed_request = seal_with_label(
        crypto,
        ciphersuite.hpke_config(),
        responder_key,
        CONNECTION_REQUEST_LABEL,
        bundle.provider_domain.as_slice(),
        &plaintext,
    )
    .ok_or(ConnectionError::InvalidKey)?;
    let delivery = ConnectionRequestDelivery {
        version: PROTOCOL_VERSION_MIMI_DS10,
        sender_domain: sender_domain.as_bytes().to_vec().into(),
        recipient_domain: bundle.provider_domain.clone(),
        inbox: bundle.inbox.clone(),
        sealed_request,
    };
    let pending = PendingConnection {
        ciphersuite,
        request,
        response_private: response_keys.private,
    };
    Ok((pending, delivery))
}

impl PendingConnection {
    /// The request as sent.
    pub fn request(&self) -> &ConnectionRequest {
        &self.request
    }

    /// Opens the response from the `authenticated_data` of the responder's external commit
    /// into the connection room (a SafeAAD whose item [`CONNECTION_RESPONSE_COMPONENT_ID`]
    /// holds `EncryptWithLabel(connection_response_key, "MIMIMI ConnectionResponse",
    /// connection_room_id, response)`), and verifies its signature. The caller still checks
    /// the responder's credential with its authentication service.
    pub fn open_response(
        &self,
        crypto: &impl OpenMlsCrypto,
        authenticated_data: &[u8],
    ) -> Result<ConnectionResponse, ConnectionError> {
        let sealed = response_from_aad(authenticated_data)?;
        let plaintext = open_with_label(
            crypto,
            self.ciphersuite.hpke_config(),
            self.response_private.as_ref(),
            CONNECTION_RESPONSE_LABEL,
            self.request.connection_room_id.as_slice(),
            &sealed,
        )
        .ok_or(ConnectionError::NotSealedToUs)?;
        let response: ConnectionResponse =
            decode_exact(&plaintext).map_err(|e| ConnectionError::Malformed(e.to_string()))?;
        let tbs = response
            .tbs(
                self.request.connection_room_id.as_slice(),
                self.request.connection_response_key.as_slice(),
            )
            .map_err(|_| ConnectionError::Encoding)?;
        if !verify_with_label(
            crypto,
            self.ciphersuite.signature_algorithm(),
            response.responder_signature_key.as_slice(),
            CONNECTION_RESPONSE_SIGNATURE_LABEL,
            &tbs,
            response.signature.as_slice(),
        ) {
            return Err(ConnectionError::BadSignature);
        }
        Ok(response)
    }
}

impl PendingConnection {
    /// The room's identity-link parameters, as the request gave them to the responder.
    pub fn room(&self) -> ConnectionRoom<'_> {
        ConnectionRoom {
            ciphersuite: self.ciphersuite,
            group_id: self.request.connection_room_id.as_slice(),
            wrapper_key: self
                .request
                .connection_room_identity_link_wrapper_key
                .as_slice(),
        }
    }

    /// The initiator's side of an acceptance into a pseudonymous connection room (MM-01 flow
    /// A steps 8-9; wire-format.md §14.3.4): opens and verifies the response as
    /// [`Self::open_response`] does, takes the joiner's identity link key from the same
    /// SafeAAD (component 0xF1D8, exactly one entry), and checks that `joiner`, the leaf the
    /// external commit added, authenticates as the real credential and key the response names
    /// ([`check_peer_member`]). Returns the response and the joiner's real identity.
    pub fn open_pseudonymous_response(
        &self,
        crypto: &impl OpenMlsCrypto,
        authenticated_data: &[u8],
        joiner: &Member,
    ) -> Result<(ConnectionResponse, RealIdentity), ConnectionError> {
        let response = self.open_response(crypto, authenticated_data)?;
        let add_aad = add_aad_of(authenticated_data).map_err(|e| match e {
            InvalidIdentityLinkKeys::SafeAad(e) => ConnectionError::SafeAad(e),
            other => ConnectionError::Malformed(other.to_string()),
        })?;
        let leaf = joiner.index.u32();
        let entries = add_aad
            .map(|aad| aad.encrypted_identity_link_keys)
            .unwrap_or_default();
        let [entry] = entries.as_slice() else {
            return Err(PeerIdentityError::NoIdentityLinkKey { leaf }.into());
        };
        let expected = ExpectedPeer {
            credential: &response.responder_client_credential,
            signature_key: response.responder_signature_key.as_slice(),
        };
        let real = check_peer_member(crypto, &self.room(), joiner, Some(entry), &expected)?;
        Ok((response, real))
    }
}

/// The sealed response in the SafeAAD prefix of `authenticated_data`
/// ([`SafeAad::parse_prefix`]: items strictly increasing by component ID,
/// draft-ietf-mls-extensions-08 §4.9), its [`CONNECTION_RESPONSE_COMPONENT_ID`] item present.
fn response_from_aad(authenticated_data: &[u8]) -> Result<HpkeCiphertext, ConnectionError> {
    let (aad, _application_data) =
        SafeAad::parse_prefix(authenticated_data).map_err(ConnectionError::SafeAad)?;
    let item = aad
        .item(CONNECTION_RESPONSE_COMPONENT_ID)
        .ok_or(ConnectionError::NoResponse)?;
    decode_exact(item).map_err(|e| ConnectionError::Malformed(e.to_string()))
}

/// A request the responder opened and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedConnectionRequest {
    /// The ciphersuite of the responder's key, which the connection uses.
    pub ciphersuite: Ciphersuite,
    /// The request; its signature verified with `requester_signature_key`. Whether
    /// `requester_client_credential` is acceptable (and goes with that key) is for the
    /// responder's authentication service, and whether to accept for its user.
    pub request: ConnectionRequest,
}

impl OpenedConnectionRequest {
    /// The room's identity-link parameters the request names.
    pub fn room(&self) -> ConnectionRoom<'_> {
        ConnectionRoom {
            ciphersuite: self.ciphersuite,
            group_id: self.request.connection_room_id.as_slice(),
            wrapper_key: self
                .request
                .connection_room_identity_link_wrapper_key
                .as_slice(),
        }
    }

    /// The responder's check after joining a pseudonymous connection room (MM-01 flow A step
    /// 8; wire-format.md §14.3.4): every other member of the room (`members`, the responder at
    /// `own_leaf`) authenticates, with the room's wrapped keys `links` (from
    /// `identity_link_keys(24)`), as the real credential and key that signed the request
    /// ([`check_connection_room`]). Returns each peer leaf with its real identity.
    pub fn check_room(
        &self,
        crypto: &impl OpenMlsCrypto,
        members: impl IntoIterator<Item = Member>,
        own_leaf: u32,
        links: &IdentityLinkKeys,
    ) -> Result<Vec<(u32, RealIdentity)>, ConnectionError> {
        let expected = ExpectedPeer {
            credential: &self.request.requester_client_credential,
            signature_key: self.request.requester_signature_key.as_slice(),
        };
        Ok(check_connection_room(
            crypto,
            &self.room(),
            members,
            own_leaf,
            links,
            &expected,
        )?)
    }
}

/// The responder: its connection-establishment key and the `connection_response_key`s of the
/// requests it has opened, to refuse replays.
#[derive(Debug)]
pub struct ConnectionResponder {
    key: ConnectionEstablishmentKey,
    seen: BTreeSet<Vec<u8>>,
}

/// What the responder puts into its response.
#[derive(Debug, Clone)]
pub struct ResponseContents<'a> {
    /// The responder's real client credential.
    pub credential: &'a Credential,
    /// Its signature public key; `signer` signs with the matching private key.
    pub signature_key: &'a [u8],
    /// The responder's connection key.
    pub connection_key: &'a [u8],
    /// The responder's connection token.
    pub connection_token: &'a [u8],
}

impl ConnectionResponder {
    /// A responder holding `key`, with no request seen yet.
    pub fn new(key: ConnectionEstablishmentKey) -> Self {
        Self {
            key,
            seen: BTreeSet::new(),
        }
    }

    /// The key.
    pub fn key(&self) -> &ConnectionEstablishmentKey {
        &self.key
    }

    /// Opens a request from the user's connection inbox at `provider_domain` (its own
    /// provider) and verifies its signature, bound to this responder's key. A request whose
    /// `connection_response_key` was already opened is [`ConnectionError::Replayed`]: a replay
    /// (a copy re-delivered after the provider's window, or through another provider) must not
    /// make the responder join twice. A request that fails changes nothing.
    pub fn open(
        &mut self,
        crypto: &impl OpenMlsCrypto,
        provider_domain: &str,
        stored: &StoredConnectionRequest,
    ) -> Result<OpenedConnectionRequest, ConnectionError> {
        let config = self.key.ciphersuite.hpke_config();
        let plaintext = open_with_label(
            crypto,
            config,
            self.key.private.as_ref(),
            CONNECTION_REQUEST_LABEL,
            provider_domain.as_bytes(),
            &stored.sealed_request,
        )
        .ok_or(ConnectionError::NotSealedToUs)?;
        let request: ConnectionRequest =
            decode_exact(&plaintext).map_err(|e| ConnectionError::Malformed(e.to_string()))?;
        let tbs = request
            .tbs(&self.key.public)
            .map_err(|_| ConnectionError::Encoding)?;
        if !verify_with_label(
            crypto,
            self.key.ciphersuite.signature_algorithm(),
            request.requester_signature_key.as_slice(),
            CONNECTION_REQUEST_SIGNATURE_LABEL,
            &tbs,
            request.signature.as_slice(),
        ) {
            return Err(ConnectionError::BadSignature);
        }
        if !self
            .seen
            .insert(request.connection_response_key.as_slice().to_vec())
        {
            return Err(ConnectionError::Replayed);
        }
        Ok(OpenedConnectionRequest {
            ciphersuite: self.key.ciphersuite,
            request,
        })
    }
}

/// The responder accepts: builds and signs the [`ConnectionResponse`], seals it to the
/// request's `connection_response_key` with the room ID as context, and returns the SafeAAD
/// bytes to pass to the external commit into the room (openmls
/// `ExternalCommitBuilder::with_aad`). For a pseudonymous connection room use
/// [`seal_connection_response_with_identity_link`], which adds the joiner's identity link key.
pub fn seal_connection_response(
    crypto: &impl OpenMlsCrypto,
    signer: &impl Signer,
    opened: &OpenedConnectionRequest,
    contents: &ResponseContents<'_>,
) -> Result<Vec<u8>, ConnectionError> {
    let item = connection_response_item(crypto, signer, opened, contents)?;
    encode(&SafeAad::from_items(vec![item]).map_err(ConnectionError::SafeAad)?)
        .map_err(|_| ConnectionError::Encoding)
}

/// The responder's acceptance into a pseudonymous connection room (rule R-LINK-1 with MM-01
/// flow A step 7; wire-format.md §14.3.4): one SafeAAD carrying both the joiner's own
/// identity link key (`own_entry`, its `identity_link_key` wrapped under the request's
/// `connection_room_identity_link_wrapper_key`, component 0xF1D8) and the sealed response
/// (component [`CONNECTION_RESPONSE_COMPONENT_ID`]), in increasing component order. The hub
/// requires the first (an external commit into a pseudonymous group carries its joiner's
/// entry, rule R-LINK-3); the initiator requires both.
pub fn seal_connection_response_with_identity_link(
    crypto: &impl OpenMlsCrypto,
    signer: &impl Signer,
    opened: &OpenedConnectionRequest,
    contents: &ResponseContents<'_>,
    own_entry: EncryptedIdentityLinkKey,
) -> Result<Vec<u8>, ConnectionError> {
    let response = connection_response_item(crypto, signer, opened, contents)?;
    let links = add_aad_item(vec![own_entry]).map_err(|_| ConnectionError::Encoding)?;
    encode(&SafeAad::from_items(vec![response, links]).map_err(ConnectionError::SafeAad)?)
        .map_err(|_| ConnectionError::Encoding)
}

/// The sealed response as a SafeAAD item ([`CONNECTION_RESPONSE_COMPONENT_ID`]), to combine
/// with other components' items in one SafeAAD ([`SafeAad::from_items`]).
pub fn connection_response_item(
    crypto: &impl OpenMlsCrypto,
    signer: &impl Signer,
    opened: &OpenedConnectionRequest,
    contents: &ResponseContents<'_>,
) -> Result<SafeAadItem, ConnectionError> {
    let request = &opened.request;
    let mut response = ConnectionResponse {
        responder_client_credential: contents.credential.clone(),
        responder_signature_key: contents.signature_key.to_vec().into(),
        responder_connection_key: contents.connection_key.to_vec().into(),
        responder_connection_token: contents.connection_token.to_vec().into(),
        signature: Vec::new().into(),
    };
    let tbs = response
        .tbs(
            request.connection_room_id.as_slice(),
            request.connection_response_key.as_slice(),
        )
        .map_err(|_| ConnectionError::Encoding)?;
    response.signature = sign_with_label(signer, CONNECTION_RESPONSE_SIGNATURE_LABEL, &tbs)
        .ok_or(ConnectionError::Encoding)?
        .into();
    let plaintext = encode(&response).map_err(|_| ConnectionError::Encoding)?;
    let sealed = seal_with_label(
        crypto,
        opened.ciphersuite.hpke_config(),
        request.connection_response_key.as_slice(),
        CONNECTION_RESPONSE_LABEL,
        request.connection_room_id.as_slice(),
        &plaintext,
    )
    .ok_or(ConnectionError::InvalidKey)?;
    let data = encode(&sealed).map_err(|_| ConnectionError::Encoding)?;
    Ok(SafeAadItem::new(CONNECTION_RESPONSE_COMPONENT_ID, data))
}

/// The SafeAAD carrying a sealed response: one item, [`CONNECTION_RESPONSE_COMPONENT_ID`].
pub fn connection_response_aad(sealed: &HpkeCiphertext) -> Result<Vec<u8>, ConnectionError> {
    let data = encode(sealed).map_err(|_| ConnectionError::Encoding)?;
    encode(&SafeAad {
        aad_items: vec![SafeAadItem {
            component_id: CONNECTION_RESPONSE_COMPONENT_ID,
            aad_item_data: data.into(),
        }],
    })
    .map_err(|_| ConnectionError::Encoding)
}
