//! One handler per operation. Each validates against what it read, then describes its single
//! write as a [`Plan`]; [`crate::DeliveryService::process`] performs the write.

mod app_data_commit;
mod cached_group;
mod commit;
mod commit_rules;
mod create_group;
mod external_join;
mod group_id;
mod group_info;
mod group_info_check;
mod group_state;
mod handshake;
pub(crate) mod hub_events;
mod hub_proposals;
pub(crate) mod key_package_lifetime;
mod member_request;
mod proposal_conflicts;
mod proposals;
mod queue_info;
mod send_message;
pub(crate) mod state_tag;
mod tree_leaf;
mod welcome_info;
mod welcome_trees;

use openmls::prelude::{Ciphersuite, LeafNode};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use crate::auth::{ClientAuth, ReplayCheck, ReplayGuard};
use crate::config::{DsConfig, DsIdentity};
use crate::error::InvalidLeafNode;
use crate::error::{internal, Failure, ProcessError, RejectReason};
use crate::fanout::Fanout;
use crate::identity::CredentialValidator;
use crate::state::LeafChecks;
use crate::storage::{DsStorage, GroupSnapshot, RecordKind, RecordWrite, VersionGuard, WriteSet};
use crate::time::UnixTimeMs;
use crate::wire::{encode_response, DsRequest, DsRequestBody, DsResponseBody};
use commit_rules::Operation;
pub(crate) use group_info_check::verifiable_group_info;
pub(crate) use member_request::{MemberRequest, Principal, Started};
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
    /// The key of the server franks, if the hub franks messages (wire-format.md §15.5).
    pub(crate) franking_key: Option<&'a crate::franking::FrankingKey>,
    /// Crypto, and the source of randomness.
    pub(crate) crypto: &'a C,
    pub(crate) validator: &'a dyn CredentialValidator,
    /// Decoded group state by stored version (wire-format.md §16.2).
    pub(crate) cache: &'a crate::service::cache::GroupCache,
}

/// The request being processed and what its handler may use.
pub(crate) struct Ctx<'a, C> {
    pub(crate) env: HandlerEnv<'a, C>,
    pub(crate) now: UnixTimeMs,
    pub(crate) request: &'a DsRequest,
    pub(crate) request_bytes: &'a [u8],
    /// The request's digests, computed once for every run of its handler.
    pub(crate) digests: &'a crate::auth::RequestDigests,
    /// The group state the handler's write leaves, for the cache once the write applied.
    pub(crate) cache_after: std::cell::RefCell<Option<crate::service::cache::CacheAfterWrite>>,
}

/// What a handler step returns: its value, or a refusal or a processing error whose storage
/// error type is `E`.
pub(crate) type HandlerResult<T, E> = Result<T, Failure<E>>;

/// Routes a decoded request to its handler.
pub(crate) fn dispatch<C, S>(ctx: &Ctx<'_, C>, storage: &S) -> HandlerResult<Plan, S::Error>
where
    C: OpenMlsCrypto + OpenMlsRand,
    S: DsStorage,
{
    // A keyed request (wire-format.md §17.4) is its inner operation; the keys are the
    // record layer's (crate::service::privacy).
    match ctx.request.body.operation() {
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
        DsRequestBody::IdentityLinkKeys => crate::pseudonym::serve::handle(ctx, storage),
        DsRequestBody::SignaturePublicKey => Ok(Plan::Answer(DsResponseBody::SignaturePublicKey(
            ctx.env.identity.signature_key.as_slice().to_vec().into(),
        ))),
        // KeyPackage claims (12, 13) are served by the provider's `KeyPackageDirectory`
        // (wire-format.md §14.4), which has storage of its own, not by the hub; the router
        // sends them there. The per-operation variants of commits are handled from the
        // operations release on.
        // Rule R-FRAME-4.
        other => Err(RejectReason::UnsupportedOperation(other.request_type()).into()),
    }
}

impl<C: OpenMlsCrypto> Ctx<'_, C> {
    pub(crate) fn crypto(&self) -> &C {
        self.env.crypto
    }

    /// The user a leaf belongs to, if its credential is acceptable.
    pub(crate) fn identify(&self, leaf: &LeafNode) -> Result<Vec<u8>, RejectReason> {
        // wire-format.md §14.1: pseudonymous credentials are the hub's own to check; the
        // group-level rules (which groups may hold them) run when the roster is rebuilt.
        if crate::pseudonym::hub::is_pseudonymous_leaf(leaf) {
            return crate::pseudonym::hub::user_of_leaf(leaf).map_err(RejectReason::from);
        }
        self.env
            .validator
            .validate(leaf.credential(), leaf.signature_key().as_slice())
            // Rule R-LEAF-1.
            .map_err(|e| RejectReason::InvalidLeafNode(InvalidLeafNode::CredentialRejected(e)))
    }

    /// The request's `ClientSignature`, checked for freshness.
    pub(crate) fn client_auth<E: std::error::Error + 'static>(
        &self,
    ) -> HandlerResult<ClientAuth<'_>, E> {
        ClientAuth::new(
            self.crypto(),
            self.request,
            self.request_bytes,
            self.digests,
            self.now,
            self.env.config.auth_window_ms,
        )
    }

    /// Checks the replay marks; `Some(plan)` if the request is a retry to answer as before.
    pub(crate) fn replay_check<S: DsStorage>(
        &self,
        auth: &ClientAuth<'_>,
        storage: &S,
    ) -> HandlerResult<Option<Plan>, S::Error> {
        Ok(
            match auth.guard.check(storage, auth.group_id(), self.now)? {
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
    ) -> HandlerResult<GroupSnapshot, S::Error> {
        let snapshot = storage
            .read(group_id, kinds)
            .map_err(|e| Failure::Process(ProcessError::Storage(e)))?
            // Rule R-FRAME-5.
            .ok_or(RejectReason::UnknownGroup)?;
        // Only pseudonymous groups hold identity links (wire-format.md §14.2); groups stored
        // before the activity record have none (§16.1).
        if kinds
            .iter()
            .any(|k| !group_state::optional_record(*k) && snapshot.record(*k).is_none())
        {
            // Rule R-FRAME-5.
            return Err(RejectReason::UnknownGroup.into());
        }
        Ok(snapshot)
    }

    /// A plan that writes `records` (guarded by `guard`), stores the replay mark with the
    /// encoded response, and fans out `fanout`.
    pub(crate) fn write_plan<E: std::error::Error + 'static>(
        &self,
        guard_mark: Option<&ReplayGuard>,
        group_id: &[u8],
        guard: VersionGuard,
        records: Vec<RecordWrite>,
        fanout: Vec<Fanout>,
        response: DsResponseBody,
    ) -> HandlerResult<Plan, E> {
        write_plan(
            self.crypto(),
            self.now,
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_plan<E: std::error::Error + 'static>(
    crypto: &impl OpenMlsCrypto,
    now: UnixTimeMs,
    guard_mark: Option<&ReplayGuard>,
    group_id: &[u8],
    guard: VersionGuard,
    mut records: Vec<RecordWrite>,
    fanout: Vec<Fanout>,
    response: DsResponseBody,
) -> HandlerResult<Plan, E> {
    state_tag::chain(crypto, &mut records)?;
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
        now_ms: now.as_millis(),
        fanout,
    };
    Ok(Plan::Write {
        write_set,
        response,
    })
}

impl<C: OpenMlsCrypto> LeafChecks for Ctx<'_, C> {
    fn identify(&self, leaf: &LeafNode) -> Result<Vec<u8>, RejectReason> {
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
