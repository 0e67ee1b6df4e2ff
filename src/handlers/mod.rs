//! One handler per operation. Each validates against what it read, then describes its single
//! write as a [`Plan`]; [`crate::DeliveryService::process`] performs the write.

mod commit;
mod commit_rules;
mod create_group;
mod external_join;
mod group_id;
mod group_info;
mod group_info_check;
pub(crate) mod hub_events;
mod hub_proposals;
mod key_package_lifetime;
mod proposal_conflicts;
mod proposals;
mod queue_info;
mod send_message;
mod tree_leaf;
mod welcome_info;

use openmls::prelude::{Ciphersuite, GroupEpoch, LeafNode};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use tls_codec::DeserializeBytes;

use crate::auth::{ClientAuth, ReplayCheck, ReplayGuard};
use crate::config::{DsConfig, DsIdentity};
use crate::error::{internal, Failure, ProcessError, RejectReason};
use crate::error::{AuthenticationFailed, InvalidLeafNode, NotAllowed};
use crate::fanout::Fanout;
use crate::identity::CredentialValidator;
use crate::state::{LeafChecks, Roster};
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, RecordWrite, VersionGuard, WriteSet};
use crate::wire::{
    decode_exact, encode_response, user_key_hash, DsRequest, DsRequestBody, DsResponseBody,
    DsSenderId,
};
use commit_rules::Operation;
use proposals::ProposalRule;

/// What a handler decided.
pub(crate) enum Plan {
    /// Answer without writing anything.
    Answer(DsResponseBody),
    /// A byte-identical retry: repeat the stored answer.
    Duplicate(Vec<u8>),
    /// Apply the write set, then answer with `response` (already encoded, because it is also
    /// stored in the replay mark).
    Write {
        write_set: WriteSet,
        response: Vec<u8>,
    },
    /// Apply the write set, then refuse with `reason`. The one refusal that writes:
    /// `create_group` consumes the reservation of an authenticated attempt that failed
    /// validation, so each expensive validation costs a fresh `request_group_id`
    /// (wire-format.md §4.2).
    RefuseAfterWrite {
        write_set: WriteSet,
        reason: RejectReason,
    },
}

/// What handlers need of the service that runs them: its configuration, its identities, its
/// crypto and its credential validator. Built by the service for each call, so handlers do not
/// depend on the service (the layers point one way: service → handlers → wire).
pub(crate) struct HandlerEnv<'a, C> {
    pub(crate) config: &'a DsConfig,
    /// The identity the DS signs with now.
    pub(crate) identity: &'a DsIdentity,
    /// Earlier signing identities, still named by groups that have not committed a rotation.
    pub(crate) retired: &'a [DsIdentity],
    /// Crypto, and the source of randomness.
    pub(crate) crypto: &'a C,
    pub(crate) validator: &'a dyn CredentialValidator,
}

/// The request being processed and what its handler may use.
pub(crate) struct Ctx<'a, C> {
    pub(crate) env: HandlerEnv<'a, C>,
    pub(crate) now_ms: u64,
    pub(crate) request: &'a DsRequest,
    pub(crate) request_bytes: &'a [u8],
}

type Result<T, S> = std::result::Result<T, Failure<<S as DsStorage>::Error>>;

/// Routes a decoded request to its handler.
pub(crate) fn dispatch<C, S>(ctx: &Ctx<'_, C>, storage: &S) -> Result<Plan, S>
where
    C: OpenMlsCrypto + OpenMlsRand,
    S: DsStorage,
{
    match &ctx.request.body {
        DsRequestBody::RequestGroupId => group_id::handle(ctx, storage),
        DsRequestBody::CreateGroup(body) => create_group::handle(ctx, storage, body),
        DsRequestBody::Commits(body) => commit::handle(
            ctx,
            storage,
            Operation::Commits,
            &body.group_update,
            &body.welcome_messages,
        ),
        DsRequestBody::DeleteGroup(body) => commit::handle(
            ctx,
            storage,
            Operation::DeleteGroup,
            &body.group_update,
            &[],
        ),
        DsRequestBody::AddUsers(body) => commit::handle(
            ctx,
            storage,
            Operation::AddUsers,
            &body.group_update,
            &body.welcome_messages,
        ),
        DsRequestBody::AddClients(body) => commit::handle(
            ctx,
            storage,
            Operation::AddClients,
            &body.group_update,
            &body.welcome_messages,
        ),
        DsRequestBody::RemoveUsers(body) => commit::handle(
            ctx,
            storage,
            Operation::RemoveUsers,
            &body.group_update,
            &[],
        ),
        DsRequestBody::RemoveClients(body) => commit::handle(
            ctx,
            storage,
            Operation::RemoveClients,
            &body.group_update,
            &[],
        ),
        DsRequestBody::UpdateClient(body) => commit::handle(
            ctx,
            storage,
            Operation::UpdateClient(body.queue_config.as_ref()),
            &body.group_update,
            &[],
        ),
        DsRequestBody::ExternalJoin(body) => external_join::handle(ctx, storage, body),
        DsRequestBody::ReInitializeGroup(body) => commit::handle(
            ctx,
            storage,
            Operation::ReInitialize,
            &body.group_update,
            &[],
        ),
        DsRequestBody::Proposals(body) => {
            proposals::handle(ctx, storage, ProposalRule::Any, &body.proposals)
        }
        DsRequestBody::SelfRemoveClient(body) => proposals::handle(
            ctx,
            storage,
            ProposalRule::SelfRemove,
            std::slice::from_ref(&body.proposal),
        ),
        DsRequestBody::SendMessage(body) => send_message::handle(ctx, storage, body),
        DsRequestBody::UpdateQueueInfo(body) => queue_info::handle(ctx, storage, body),
        DsRequestBody::GroupInfo(body) => group_info::handle(ctx, storage, body),
        DsRequestBody::WelcomeInfo(body) => welcome_info::handle(ctx, storage, body),
        DsRequestBody::SignaturePublicKey => Ok(Plan::Answer(DsResponseBody::SignaturePublicKey(
            ctx.env.identity.signature_key.as_slice().to_vec().into(),
        ))),
        // Defined on the wire (DS-03/04) but outside this crate: KeyPackages are served by the
        // provider's own directory, not by the hub; the per-operation variants of commits are
        // handled from the operations release on.
        // Rule R-FRAME-4.
        other => Err(RejectReason::UnsupportedOperation(other.request_type()).into()),
    }
}

impl<C: OpenMlsCrypto> Ctx<'_, C> {
    pub(crate) fn crypto(&self) -> &C {
        self.env.crypto
    }

    /// The user a leaf belongs to, if its credential is acceptable.
    pub(crate) fn identify(&self, leaf: &LeafNode) -> std::result::Result<Vec<u8>, RejectReason> {
        self.env
            .validator
            .validate(leaf.credential(), leaf.signature_key().as_slice())
            // Rule R-LEAF-1.
            .map_err(|e| RejectReason::InvalidLeafNode(InvalidLeafNode::CredentialRejected(e)))
    }

    /// The request's `ClientSignature`, checked for freshness.
    pub(crate) fn client_auth<S: DsStorage>(&self) -> Result<ClientAuth<'_>, S> {
        ClientAuth::new(
            self.crypto(),
            self.request,
            self.request_bytes,
            self.now_ms,
            self.env.config.auth_window_ms,
        )
    }

    /// Checks the replay marks; `Some(plan)` if the request is a retry to answer as before.
    pub(crate) fn replay_check<S: DsStorage>(
        &self,
        auth: &ClientAuth<'_>,
        storage: &S,
    ) -> Result<Option<Plan>, S> {
        Ok(
            match auth.guard.check(storage, auth.group_id(), self.now_ms)? {
                ReplayCheck::Fresh => None,
                ReplayCheck::Retry(response) => Some(Plan::Duplicate(response)),
            },
        )
    }

    /// Reads a live group: `unknown_group` if it does not exist, was deleted, or is only a
    /// reservation.
    pub(crate) fn read_group<S: DsStorage>(
        &self,
        storage: &S,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<GroupSnapshot, S> {
        let snapshot = storage
            .read(group_id, kinds)
            .map_err(|e| Failure::Process(ProcessError::Storage(e)))?
            // Rule R-FRAME-5.
            .ok_or(RejectReason::UnknownGroup)?;
        if kinds.iter().any(|k| snapshot.record(*k).is_none()) {
            // Rule R-FRAME-5.
            return Err(RejectReason::UnknownGroup.into());
        }
        Ok(snapshot)
    }

    /// A plan that writes `records` (guarded by `guard`), stores the replay mark with the
    /// encoded response, and fans out `fanout`.
    pub(crate) fn write_plan<S: DsStorage>(
        &self,
        guard_mark: Option<&ReplayGuard>,
        group_id: &[u8],
        guard: VersionGuard,
        records: Vec<RecordWrite>,
        fanout: Vec<Fanout>,
        response: DsResponseBody,
    ) -> Result<Plan, S> {
        write_plan::<S>(
            self.now_ms,
            guard_mark,
            group_id,
            guard,
            records,
            fanout,
            response,
        )
    }
}

/// A plan that writes `records` (guarded by `guard`), stores the replay mark with the encoded
/// response, and fans out `fanout`.
pub(crate) fn write_plan<S: DsStorage>(
    now_ms: u64,
    guard_mark: Option<&ReplayGuard>,
    group_id: &[u8],
    guard: VersionGuard,
    records: Vec<RecordWrite>,
    fanout: Vec<Fanout>,
    response: DsResponseBody,
) -> Result<Plan, S> {
    let response = encode_response(response).map_err(internal)?;
    let write_set = WriteSet {
        group_id: group_id.to_vec(),
        guard,
        records,
        // A retry of a state change must get the same answer, so its response is kept;
        // a read (`ReplayMarkOnly`) keeps only the mark: a resend is a replay, and the
        // stored answer would be stale and as large as a ratchet tree.
        replay_mark: guard_mark
            .map(|g| g.mark((guard != VersionGuard::ReplayMarkOnly).then(|| response.clone()))),
        now_ms,
        fanout,
    };
    Ok(Plan::Write {
        write_set,
        response,
    })
}

impl<C: OpenMlsCrypto> LeafChecks for Ctx<'_, C> {
    fn identify(&self, leaf: &LeafNode) -> std::result::Result<Vec<u8>, RejectReason> {
        Ctx::identify(self, leaf)
    }

    fn verifies(
        &self,
        ciphersuite: Ciphersuite,
        public_key: &[u8],
        content: &[u8],
        signature: &[u8],
    ) -> bool {
        self.crypto()
            .verify_signature(
                ciphersuite.signature_algorithm(),
                content,
                public_key,
                signature,
            )
            .is_ok()
    }
}

/// Who signed a member request (DS-00 §5.1 `DSSenderID`).
pub(crate) enum Principal {
    /// A member client, by `leaf_index`.
    Leaf(u32),
    /// A user, by `user_key_hash` of the key it registered with the group.
    User(Vec<u8>),
}

impl Principal {
    /// The authenticated leaf, for operations that only a `leaf_index` sender may perform.
    pub(crate) fn leaf(&self) -> std::result::Result<u32, RejectReason> {
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
    ) -> std::result::Result<u32, RejectReason> {
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
    ) -> Result<Started<'_>, S> {
        let auth = self.client_auth::<S>()?;
        if let Some(plan) = self.replay_check(&auth, storage)? {
            return Ok(Started::Duplicate(plan));
        }
        let snapshot = self.read_group(storage, auth.group_id(), kinds)?;
        let roster: Roster = decode_record::<_, S>(&snapshot, RecordKind::Roster)?;
        let principal = self.authenticate_member::<S>(&auth, &roster, allow_user)?;
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
    pub(crate) fn authenticate_member<S: DsStorage>(
        &self,
        auth: &ClientAuth<'_>,
        roster: &Roster,
        allow_user: bool,
    ) -> Result<Principal, S> {
        let suite = ciphersuite::<S>(roster.ciphersuite)?;
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

/// Decodes a record mimi-ds wrote itself; failure is a bug or storage corruption.
pub(crate) fn decode_record<T: DeserializeBytes, S: DsStorage>(
    snapshot: &GroupSnapshot,
    kind: RecordKind,
) -> Result<T, S> {
    let bytes = snapshot
        .record(kind)
        .ok_or_else(|| internal(format!("{kind:?} record missing")))?;
    decode_exact::<T>(bytes).map_err(|e| internal(format!("{kind:?} record: {e}")))
}

/// Encodes a record.
pub(crate) fn encode_record<T: tls_codec::Serialize, S: DsStorage>(
    kind: RecordKind,
    value: &T,
) -> Result<RecordWrite, S> {
    crate::wire::encode(value)
        .map(|bytes| RecordWrite::Put(kind, bytes))
        .map_err(internal)
}

/// The group's ciphersuite, as stored in its roster.
pub(crate) fn ciphersuite<S: DsStorage>(value: u16) -> Result<Ciphersuite, S> {
    Ciphersuite::try_from(value).map_err(internal)
}

/// RFC 9420 §6: a handshake message must be for the current epoch. Older is `wrong_epoch`,
/// newer is `future_epoch` (a client ahead of the DS has a state the DS never accepted).
pub(crate) fn check_epoch(
    current: u64,
    message: GroupEpoch,
    tolerance: u64,
) -> std::result::Result<(), RejectReason> {
    let message_epoch = message.as_u64();
    if message_epoch > current {
        // Rule R-EPOCH-2.
        Err(RejectReason::FutureEpoch {
            current,
            message_epoch,
        })
    } else if message_epoch.saturating_add(tolerance) < current {
        // Rule R-EPOCH-1.
        Err(RejectReason::WrongEpoch {
            current,
            message_epoch,
        })
    } else {
        Ok(())
    }
}
