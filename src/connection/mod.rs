//! Connection establishment between users of different providers (MIMIMI, MM-01 flow A;
//! wire-format.md §14.3).
//!
//! Alice (the initiator) wants to connect with Bob (the responder) without telling Bob's
//! provider, or the hub, who she is:
//!
//! 1. Bob's client publishes his connection-establishment HPKE key at his provider
//!    ([`ConnectionProvider::publish`], after the provider's own user login).
//! 2. Anyone fetches it without authentication ([`ConnectionProvider::fetch`]): the key and
//!    an address of Bob's connection inbox sealed by Bob's provider to itself, afresh for every
//!    fetch.
//! 3. Alice creates the connection room at her own provider's hub and seals a signed
//!    [`ConnectionRequest`] to Bob's key ([`seal_connection_request`]); her provider posts the
//!    resulting [`ConnectionRequestDelivery`] to `/connection_request` at Bob's provider
//!    ([`ConnectionProvider::deliver`], `transport::Router::handle_connection_request`), which
//!    stores it in Bob's inbox without learning anything but its size and the sending provider.
//! 4. Bob's client fetches it ([`ConnectionProvider::inbox`]), opens and checks it
//!    ([`ConnectionResponder::open`]), and accepts by joining the room by external commit with
//!    the sealed [`ConnectionResponse`] in the commit's authenticated data
//!    ([`seal_connection_response`], a SafeAAD item).
//! 5. The hub fans the commit out like any other; Alice opens the response from its
//!    authenticated data ([`PendingConnection::open_response`]). Both now hold each other's
//!    connection keys and tokens.
//!
//! In a pseudonymous connection room (wire-format.md §14.1-§14.2) Bob's external commit carries
//! his own identity link key beside the response, in one SafeAAD
//! ([`seal_connection_response_with_identity_link`]); Alice opens both and checks that Bob's
//! leaf is Bob ([`PendingConnection::open_pseudonymous_response`]), and Bob checks from the
//! room's identity links that the other members are Alice ([`OpenedConnectionRequest::check_room`];
//! MM-01 flow A step 8).
//!
//! Everything here is sans-IO: time, randomness (through the crypto provider) and storage are
//! inputs.

mod client;
mod crypto;
mod endpoints;
mod peer;
mod provider;
mod provider_async;
mod refusal;
mod store;
mod wire;

pub use client::{
    connection_response_aad, connection_response_item, seal_connection_request,
    seal_connection_response, seal_connection_response_with_identity_link, ConnectionError,
    ConnectionEstablishmentKey, ConnectionResponder, OpenedConnectionRequest, PendingConnection,
    RequestContents, ResponseContents,
};
pub use endpoints::{
    ConnectionClientRequest, ConnectionClientRequestBody, ConnectionKeyFetch,
    ConnectionServiceResponse, ConnectionServiceResponseBody, CONNECTION_CLIENT_REQUEST_LABEL,
    CONNECTION_USER_LABEL,
};
pub use peer::{
    authenticate_room_member, check_connection_room, check_peer_member, ConnectionRoom,
    ExpectedPeer, PeerIdentityError,
};
pub use provider::{ConnectionConfig, ConnectionFailure, ConnectionProvider};
pub use refusal::ConnectionRefusal;
pub use store::{
    AsyncConnectionStore, ConnectionChange, ConnectionKeyRecord, ConnectionStore,
    InMemoryConnectionStore, InboxRecord,
};
pub use wire::{
    ConnectionInboxAddress, ConnectionKeyBundle, ConnectionRequest, ConnectionRequestDelivery,
    ConnectionResponse, SafeAad, SafeAadItem, StoredConnectionRequest, CONNECTION_INBOX_LABEL,
    CONNECTION_REQUEST_LABEL, CONNECTION_REQUEST_SIGNATURE_LABEL, CONNECTION_RESPONSE_COMPONENT_ID,
    CONNECTION_RESPONSE_LABEL, CONNECTION_RESPONSE_SIGNATURE_LABEL,
};
