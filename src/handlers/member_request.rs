//! Who sent a member's request: the common start of every request a member signs
//! (wire-format.md §3): freshness, replay marks, the group's records, and the signer's
//! authentication against the roster.

use openmls_traits::crypto::OpenMlsCrypto;

use super::group_state::{ciphersuite, decode_record};
use super::{Ctx, HandlerResult, Plan};
use crate::auth::ClientAuth;
use crate::error::{internal, AuthenticationFailed, NotAllowed, RejectReason};
use crate::signing::user_key_hash;
use crate::state::Roster;
use crate::storage::{DsStorage, GroupSnapshot, RecordKind};
use crate::wire::DsSenderId;

/// Who signed a member request (DS-00 §5.1 `DSSenderID`).
pub(crate) enum Principal {
    /// A member client, by `leaf_index`.
    Leaf(u32),
    /// A user, by `user_key_hash` of the key it registered with the group.
    User(Vec<u8>),
}

impl Principal {
    /// The authenticated leaf, for operations that only a `leaf_index` sender may perform.
    pub(crate) fn leaf(&self) -> Result<u32, RejectReason> {
        match self {
            Self::Leaf(leaf) => Ok(*leaf),
            // Rule R-AUTH-3.
            Self::User(_) => Err(RejectReason::AuthenticationFailed(
                AuthenticationFailed::LeafIndexSenderRequired,
            )),
        }
    }

    /// The leaf on whose behalf an MLS message with this MLS sender is accepted: the
    /// authenticated leaf itself, or any client of the authenticated user. A member cannot
    /// submit another member's handshake as its own.
    pub(crate) fn sender_of(
        &self,
        mls_sender: &openmls::prelude::Sender,
        roster: &Roster,
    ) -> Result<u32, RejectReason> {
        // Rule R-COMMIT-1.
        let openmls::prelude::Sender::Member(leaf) = mls_sender else {
            return Err(RejectReason::NotAllowed(NotAllowed::MlsSenderNotMember));
        };
        let allowed = match self {
            Self::Leaf(own) => *own == leaf.u32(),
            Self::User(user) => roster
                .member(leaf.u32())
                .is_some_and(|m| m.user.as_slice() == user.as_slice()),
        };
        // Rule R-COMMIT-2.
        if allowed {
            Ok(leaf.u32())
        } else {
            Err(RejectReason::NotAllowed(NotAllowed::MlsSenderNotRequester))
        }
    }
}

/// A member's request after its common checks: fresh, not a replay, for a live group, and
/// authenticated against the roster.
pub(crate) struct MemberRequest<'r> {
    pub(crate) auth: ClientAuth<'r>,
    pub(crate) snapshot: GroupSnapshot,
    pub(crate) roster: Roster,
    pub(crate) principal: Principal,
}

/// How [`Ctx::start_member_request`] ended.
pub(crate) enum Started<'r> {
    /// A byte-identical retry, answered as before.
    Duplicate(Plan),
    /// A new request, authenticated.
    Fresh(MemberRequest<'r>),
}

impl<C: OpenMlsCrypto> Ctx<'_, C> {
    /// The common start of a member's request (wire-format.md §3): `ClientSignature` within the
    /// window, replay marks, the group's records `kinds` (which must include the roster), and
    /// the signer's authentication (`allow_user`: a user key may sign, see
    /// [`Ctx::authenticate_member`]).
    pub(crate) fn start_member_request<S: DsStorage>(
        &self,
        storage: &S,
        kinds: &[RecordKind],
        allow_user: bool,
    ) -> HandlerResult<Started<'_>, S::Error> {
        self.start_member_request_reading(storage, kinds, allow_user, |_, _, _| Ok(()))
    }

    /// [`Ctx::start_member_request`], with `more_reads`, given the group ID and the roster,
    /// adding records to the group's snapshot before the signer is authenticated: reads that
    /// depend on what the first read found. Under the step API a round that misses them costs
    /// no signature check.
    pub(crate) fn start_member_request_reading<S: DsStorage>(
        &self,
        storage: &S,
        kinds: &[RecordKind],
        allow_user: bool,
        more_reads: impl FnOnce(&[u8], &Roster, &mut GroupSnapshot) -> HandlerResult<(), S::Error>,
    ) -> HandlerResult<Started<'_>, S::Error> {
        let auth = self.client_auth()?;
        if let Some(plan) = self.replay_check(&auth, storage)? {
            return Ok(Started::Duplicate(plan));
        }
        let mut snapshot = self.read_group(storage, auth.group_id(), kinds)?;
        let roster: Roster = decode_record(&snapshot, RecordKind::Roster)?;
        more_reads(auth.group_id(), &roster, &mut snapshot)?;
        let principal = self.authenticate_member(&auth, &roster, allow_user)?;
        Ok(Started::Fresh(MemberRequest {
            auth,
            snapshot,
            roster,
            principal,
        }))
    }

    /// Authenticates a request by a member: a `leaf_index` sender with that leaf's signature
    /// key, or, where `allow_user`, a `user_key_hash` sender with the user's registered key
    /// (DS-00 §5.1; DS-03 "PseudonymousUserAuth" for user-level operations).
    pub(crate) fn authenticate_member<E: std::error::Error + 'static>(
        &self,
        auth: &ClientAuth<'_>,
        roster: &Roster,
        allow_user: bool,
    ) -> HandlerResult<Principal, E> {
        let suite = ciphersuite(roster.ciphersuite)?;
        match &auth.signature.sender_id {
            DsSenderId::LeafIndex(leaf) => {
                // Rule R-AUTH-4.
                let member = roster
                    .member(*leaf)
                    .ok_or(RejectReason::AuthenticationFailed(
                        AuthenticationFailed::NoMemberAtLeaf,
                    ))?;
                auth.verify(self.crypto(), suite, member.signature_key.as_slice())?;
                Ok(Principal::Leaf(*leaf))
            }
            DsSenderId::UserKeyHash(hash) if allow_user => {
                let mut registered = Vec::new();
                for key in &roster.user_keys {
                    let candidate =
                        user_key_hash(self.crypto(), suite.hash_algorithm(), key.key.as_slice())
                            .map_err(internal)?;
                    if candidate == hash.as_slice() {
                        registered.push(key);
                    }
                }
                // Registration keeps one user per key (§3.5); a roster stored before that rule
                // may hold more, and then the hash names nobody rather than the latest.
                // Rule R-AUTH-5.
                let [key] = registered.as_slice() else {
                    return Err(RejectReason::AuthenticationFailed(
                        AuthenticationFailed::UnknownUserKey,
                    )
                    .into());
                };
                auth.verify(self.crypto(), suite, key.key.as_slice())?;
                Ok(Principal::User(key.user.as_slice().to_vec()))
            }
            // Rule R-AUTH-3.
            _ => Err(RejectReason::AuthenticationFailed(
                AuthenticationFailed::LeafIndexSenderRequired,
            )
            .into()),
        }
    }
}
