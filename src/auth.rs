//! Request authentication: the freshness window, replay marks, and `ClientSignature`
//! verification (wire-format.md §3; docs/decisions.md D7).

use std::sync::OnceLock;

use openmls::prelude::Ciphersuite;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::HashType;

use crate::error::{internal, AuthenticationFailed, Failure, RejectReason};
use crate::storage::{DsStorage, ReplayMark};
use crate::time::UnixTimeMs;
use crate::wire::{ClientSignature, ClientSignatureTbs, DsAuthData, DsRequest, DsSenderId};

/// What the replay check found.
pub(crate) enum ReplayCheck {
    /// Not seen before.
    Fresh,
    /// A byte-identical retry of an accepted request: answer with the stored response.
    Retry(Vec<u8>),
}

/// What authenticating a request computes from its bytes alone: the SHA-256 of its exact bytes,
/// and of a signed request its `SignContent(ClientSignatureTBS)` with that digest, the replay
/// key. The step API runs a request's handler again after every read round and every conflict
/// (src/service/steps.rs); none of these change between runs, and on a large commit computing
/// them twice cost a tenth of the request (BENCHMARKS.md "Issue 14: where a 4000-member
/// commit's time goes"). So a request computes each once and every run reuses it.
#[derive(Debug, Default)]
pub(crate) struct RequestDigests {
    request_hash: OnceLock<Vec<u8>>,
    /// `SignContent(ClientSignatureTBS)` and its SHA-256.
    signed: OnceLock<(Vec<u8>, Vec<u8>)>,
}

impl RequestDigests {
    /// SHA-256 of the request's exact bytes.
    fn request_hash<E: std::error::Error + 'static>(
        &self,
        crypto: &impl OpenMlsCrypto,
        request_bytes: &[u8],
    ) -> Result<&[u8], Failure<E>> {
        if let Some(hash) = self.request_hash.get() {
            return Ok(hash);
        }
        let hash = sha256(crypto, request_bytes)?;
        Ok(self.request_hash.get_or_init(|| hash))
    }

    /// The signed content `tbs` encodes to, and its SHA-256.
    fn signed<E: std::error::Error + 'static>(
        &self,
        crypto: &impl OpenMlsCrypto,
        tbs: &ClientSignatureTbs<'_>,
    ) -> Result<&(Vec<u8>, Vec<u8>), Failure<E>> {
        if let Some(signed) = self.signed.get() {
            return Ok(signed);
        }
        let sign_content = tbs.sign_content().map_err(internal)?;
        let replay_key = sha256(crypto, &sign_content)?;
        Ok(self.signed.get_or_init(|| (sign_content, replay_key)))
    }
}

/// How a request is remembered: its replay key, the hash of its exact bytes, and until when.
pub(crate) struct ReplayGuard {
    replay_key: Vec<u8>,
    request_hash: Vec<u8>,
    expires_at: UnixTimeMs,
}

impl ReplayGuard {
    /// For a request without a `ClientSignature` that changes state (an external commit): it is
    /// keyed by its own bytes, so only a byte-identical retry is recognised, and remembered for
    /// one authentication window.
    pub(crate) fn for_unsigned<E: std::error::Error + 'static>(
        crypto: &impl OpenMlsCrypto,
        request_bytes: &[u8],
        digests: &RequestDigests,
        now: UnixTimeMs,
        window_ms: u64,
    ) -> Result<Self, Failure<E>> {
        let request_hash = digests.request_hash(crypto, request_bytes)?.to_vec();
        Ok(Self {
            replay_key: request_hash.clone(),
            request_hash,
            expires_at: mark_expiry(now, window_ms),
        })
    }

    /// Looks the request up among the replay marks of its group.
    pub(crate) fn check<S: DsStorage>(
        &self,
        storage: &S,
        group_id: &[u8],
        now: UnixTimeMs,
    ) -> Result<ReplayCheck, Failure<S::Error>> {
        let mark = storage
            .replay_mark(group_id, &self.replay_key, now.as_millis())
            .map_err(|e| Failure::Process(crate::ProcessError::Storage(e)))?;
        match mark {
            None => Ok(ReplayCheck::Fresh),
            Some(ReplayMark {
                request_hash,
                response: Some(response),
                ..
            }) if request_hash == self.request_hash => Ok(ReplayCheck::Retry(response)),
            // Rule R-AUTH-12.
            Some(_) => Err(RejectReason::Replayed.into()),
        }
    }

    /// The replay mark to store with the request's write set.
    pub(crate) fn mark(&self, response: Option<Vec<u8>>) -> (Vec<u8>, ReplayMark) {
        (
            self.replay_key.clone(),
            ReplayMark {
                request_hash: self.request_hash.clone(),
                expires_at_ms: self.expires_at.as_millis(),
                response,
            },
        )
    }
}

/// How long a replay mark outlives the last instant at which its request could be accepted
/// again. The storage contract says a mark is live at exactly `expires_at_ms`; the margin keeps
/// a backend that gets that boundary wrong (exclusive expiry, or expiring by its own clock a
/// little ahead of `now`) from ever taking the same request twice (wire-format.md §3.4).
pub(crate) const REPLAY_MARK_MARGIN_MS: u64 = 1_000;

/// The expiry of a replay mark for a request acceptable until `accepted_from +
/// window_ms` (§3.3 accepts `|now − timestamp| ≤ window`): that instant plus the margin.
fn mark_expiry(accepted_from: UnixTimeMs, window_ms: u64) -> UnixTimeMs {
    accepted_from
        .saturating_add(window_ms)
        .saturating_add(REPLAY_MARK_MARGIN_MS)
}

/// A request's `ClientSignature`, checked for freshness and not yet verified.
pub(crate) struct ClientAuth<'a> {
    pub(crate) signature: &'a ClientSignature,
    /// `SignContent(ClientSignatureTBS)`: what the signature covers.
    sign_content: &'a [u8],
    /// Keyed by SHA-256 of `sign_content`: what is signed, not the signature bytes, so a
    /// re-encoded or malleated (ECDSA) signature is still a replay.
    pub(crate) guard: ReplayGuard,
}

impl<'a> ClientAuth<'a> {
    /// Requires a `ClientSignature` whose timestamp lies within `window_ms` of `now`.
    pub(crate) fn new<E: std::error::Error + 'static>(
        crypto: &impl OpenMlsCrypto,
        request: &'a DsRequest,
        request_bytes: &[u8],
        digests: &'a RequestDigests,
        now: UnixTimeMs,
        window_ms: u64,
    ) -> Result<Self, Failure<E>> {
        // Rule R-AUTH-1.
        let DsAuthData::ClientSignature(signature) = &request.auth else {
            return Err(RejectReason::AuthenticationFailed(
                AuthenticationFailed::ClientSignatureRequired,
            )
            .into());
        };
        // docs/decisions.md D7: requests more than the window away from `now` are refused, in both
        // directions, so a replay set kept for the window is complete.
        let signed_at = UnixTimeMs(signature.timestamp_ms);
        if signed_at.abs_diff(now) > window_ms {
            // Rule R-AUTH-11.
            return Err(RejectReason::StaleTimestamp {
                timestamp_ms: signature.timestamp_ms,
                now_ms: now.as_millis(),
            }
            .into());
        }
        let tbs = ClientSignatureTbs {
            version: request.version,
            body: &request.body,
            group_id: &signature.group_id,
            timestamp_ms: signature.timestamp_ms,
            sender_id: &signature.sender_id,
        };
        let (sign_content, replay_key) = digests.signed(crypto, &tbs)?;
        let guard = ReplayGuard {
            replay_key: replay_key.clone(),
            request_hash: digests.request_hash(crypto, request_bytes)?.to_vec(),
            // Past this the timestamp is stale, so the mark is no longer needed.
            expires_at: mark_expiry(signed_at, window_ms),
        };
        Ok(Self {
            signature,
            sign_content,
            guard,
        })
    }

    /// The group the request is about.
    pub(crate) fn group_id(&self) -> &[u8] {
        self.signature.group_id.as_slice()
    }

    /// The leaf index, for operations that only members may perform.
    pub(crate) fn leaf_index(&self) -> Result<u32, RejectReason> {
        match self.signature.sender_id {
            DsSenderId::LeafIndex(leaf) => Ok(leaf),
            // Rule R-AUTH-3.
            _ => Err(RejectReason::AuthenticationFailed(
                AuthenticationFailed::LeafIndexSenderRequired,
            )),
        }
    }

    /// Verifies the signature with a signature public key of the group's ciphersuite.
    pub(crate) fn verify(
        &self,
        crypto: &impl OpenMlsCrypto,
        ciphersuite: Ciphersuite,
        public_key: &[u8],
    ) -> Result<(), RejectReason> {
        crypto
            .verify_signature(
                ciphersuite.signature_algorithm(),
                self.sign_content,
                public_key,
                self.signature.signature.as_slice(),
            )
            // Rule R-AUTH-2.
            .map_err(|_| {
                RejectReason::AuthenticationFailed(AuthenticationFailed::SignatureDoesNotVerify)
            })
    }
}

pub(crate) fn sha256<E: std::error::Error + 'static>(
    crypto: &impl OpenMlsCrypto,
    data: &[u8],
) -> Result<Vec<u8>, Failure<E>> {
    crypto.hash(HashType::Sha2_256, data).map_err(internal)
}
