//! MM-01 flow A step 8 (wire-format.md §14.3.4): after the responder joins a pseudonymous
//! connection room, each side checks, from the room's identity links, that the other members
//! are the peer it meant to connect to, and not a stranger who joined the room (connection rooms
//! admit external joins) or who copied the peer's credential.
//!
//! For a leaf this means (MIMIMI §"Pseudonymous credentials"; wire-format.md §14.1, §14.2):
//!
//! 1. its credential is a well-formed `PseudonymousCredential` whose `signature_public_key` is
//!    the leaf's own (otherwise anyone could copy the peer's credential, identity link and all,
//!    into a leaf of their own);
//! 2. its wrapped `identity_link_key` unwraps under the room's `identity_link_wrapper_key`,
//!    opens the credential's identity link, and the real key in the link verifies the
//!    `pseudonymous_credential_signature`;
//! 3. the real credential and key the link names are the ones the peer's connection message
//!    named and signed with (the request's `requester_client_credential` and
//!    `requester_signature_key`, or the response's `responder_*`).
//!
//! These are client-side checks with the room's keys; the hub holds none of them.

use openmls::prelude::{Ciphersuite, Credential, Member};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::pseudonym::group_links::unwrap_identity_link_key;
use crate::pseudonym::link::{authenticate, from_mls_credential};
use crate::pseudonym::{
    EncryptedIdentityLinkKey, IdentityLinkError, IdentityLinkKeys, RealIdentity,
};

/// Why a connection room's identity links do not show the expected peer (MM-01 flow A step 8;
/// wire-format.md §14.3.4). Client-side: nothing is sent, the client does not trust the room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerIdentityError {
    /// The leaf's credential is not a well-formed pseudonymous credential.
    #[error("leaf {leaf}: not a pseudonymous credential")]
    NotPseudonymous {
        /// The leaf index.
        leaf: u32,
    },
    /// The credential's `signature_public_key` is not the leaf's signature key: a credential
    /// copied from another leaf (wire-format.md §14.1, rule R-PSEUDO-4, checked again here so
    /// that the check does not rest on the hub).
    #[error("leaf {leaf}: the credential's signature key is not the leaf's")]
    LeafKeyMismatch {
        /// The leaf index.
        leaf: u32,
    },
    /// The room holds no wrapped `identity_link_key` for the leaf (none was sent, or the hub
    /// withholds it).
    #[error("leaf {leaf}: no identity link key")]
    NoIdentityLinkKey {
        /// The leaf index.
        leaf: u32,
    },
    /// The wrapped key does not unwrap under the room's wrapper key, or the identity link does
    /// not open with it, or its real key does not verify the pseudonymous credential's
    /// signature.
    #[error("leaf {leaf}: the identity link does not authenticate: {reason}")]
    DoesNotAuthenticate {
        /// The leaf index.
        leaf: u32,
        /// What failed.
        reason: IdentityLinkError,
    },
    /// The identity link authenticates, but names another real credential or key than the
    /// connection message did: someone else is in the room.
    #[error("leaf {leaf}: a member other than the peer")]
    UnexpectedIdentity {
        /// The leaf index.
        leaf: u32,
        /// The real identity the leaf's link names.
        found: Box<RealIdentity>,
    },
    /// The room holds no member but the checking client.
    #[error("the room holds no peer")]
    NoPeer,
}

/// A connection room's identity-link parameters: what the wrapped keys are bound to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionRoom<'a> {
    /// The connection's ciphersuite (the room's).
    pub ciphersuite: Ciphersuite,
    /// The room's group ID (`connection_room_id`).
    pub group_id: &'a [u8],
    /// The room's `identity_link_wrapper_key` (`connection_room_identity_link_wrapper_key`).
    pub wrapper_key: &'a [u8],
}

/// The real identity the peer's connection message named and signed with.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedPeer<'a> {
    /// The real client credential.
    pub credential: &'a Credential,
    /// Its signature public key.
    pub signature_key: &'a [u8],
}

impl ExpectedPeer<'_> {
    /// Whether `real` is this peer: the same credential and the same key.
    pub fn is(&self, real: &RealIdentity) -> bool {
        real.credential == *self.credential && real.signature_key == self.signature_key
    }
}

/// Authenticates one member of the room (steps 1 and 2 of the module's list) with its wrapped
/// `identity_link_key` `entry`, and returns the real identity its link names.
pub fn authenticate_room_member(
    crypto: &impl OpenMlsCrypto,
    room: &ConnectionRoom<'_>,
    member: &Member,
    entry: Option<&EncryptedIdentityLinkKey>,
) -> Result<RealIdentity, PeerIdentityError> {
    let leaf = member.index.u32();
    let credential = from_mls_credential(&member.credential)
        .map_err(|_| PeerIdentityError::NotPseudonymous { leaf })?;
    if credential.signature_public_key.as_slice() != member.signature_key.as_slice() {
        return Err(PeerIdentityError::LeafKeyMismatch { leaf });
    }
    let entry = entry.ok_or(PeerIdentityError::NoIdentityLinkKey { leaf })?;
    let not_authenticated =
        |reason: IdentityLinkError| PeerIdentityError::DoesNotAuthenticate { leaf, reason };
    let key = unwrap_identity_link_key(
        crypto,
        room.ciphersuite,
        room.wrapper_key,
        room.group_id,
        &credential.tbs(),
        entry,
    )
    .map_err(not_authenticated)?;
    authenticate(crypto, room.ciphersuite, &key, &credential).map_err(not_authenticated)
}

/// Checks one member against the expected peer (all three steps of the module's list).
pub fn check_peer_member(
    crypto: &impl OpenMlsCrypto,
    room: &ConnectionRoom<'_>,
    member: &Member,
    entry: Option<&EncryptedIdentityLinkKey>,
    expected: &ExpectedPeer<'_>,
) -> Result<RealIdentity, PeerIdentityError> {
    let real = authenticate_room_member(crypto, room, member, entry)?;
    if !expected.is(&real) {
        return Err(PeerIdentityError::UnexpectedIdentity {
            leaf: member.index.u32(),
            found: Box::new(real),
        });
    }
    Ok(real)
}

/// Checks every member of the room but `own_leaf` against the expected peer, with the room's
/// wrapped keys `links` (as `identity_link_keys(24)` serves them, wire-format.md §14.2). A
/// connection room holds the initiator's client that sent the request and, once accepted, the
/// responder's client that answered; any other member is refused. Returns each peer leaf with
/// its real identity.
pub fn check_connection_room(
    crypto: &impl OpenMlsCrypto,
    room: &ConnectionRoom<'_>,
    members: impl IntoIterator<Item = Member>,
    own_leaf: u32,
    links: &IdentityLinkKeys,
    expected: &ExpectedPeer<'_>,
) -> Result<Vec<(u32, RealIdentity)>, PeerIdentityError> {
    let mut peers = Vec::new();
    for member in members {
        let leaf = member.index.u32();
        if leaf == own_leaf {
            continue;
        }
        let entry = links.entries.get(leaf as usize).and_then(Option::as_ref);
        peers.push((
            leaf,
            check_peer_member(crypto, room, &member, entry, expected)?,
        ));
    }
    if peers.is_empty() {
        return Err(PeerIdentityError::NoPeer);
    }
    Ok(peers)
}
