//! The provider's **KeyPackage directory** for MIMIMI (wire-format.md §14.4;
//! draft-kohbrok-mimi-metadata-minimalization), sans-IO like the DS and the QS.
//!
//! A user's clients upload **sets** of KeyPackages under a connection token, without a
//! session and without saying who they are; connected users, who were given the token,
//! **claim** one complete set per group. Every KeyPackage carries a pseudonymous credential
//! (type 0xF1D7) with a fresh client pseudonym; the KeyPackages of one set share one user
//! pseudonym, and no two sets ever share one, so the groups a user is added to cannot be
//! linked through the pseudonym, unless the only set left is a **last-resort** set: it is
//! handed out again, and the claim response says so.
//!
//! * **Uploads** ([`KeyPackageDirectory::upload`], `POST /key_package_upload`) prove knowledge
//!   of the token's upload secret ([`token`]): the token is a hash of the secret, so a
//!   connected user holding only the token cannot upload under it. Each KeyPackage is
//!   validated with openmls (RFC 9420 §10.1: signatures, protocol version, init key), against
//!   the directory's `now` for its lifetime, and for its ciphersuite, before anything is
//!   stored. The answer lists the token's sets, so each client sees which sets lack its
//!   KeyPackage.
//! * **Claims** ([`KeyPackageDirectory::claim`]) are `DSRequest`s of type `key_packages(12)`
//!   (group sets, `/group_key_packages`) or `connection_key_packages(13)` (connection sets,
//!   `/connection_key_packages`), unauthenticated, naming the token and a claim ID. A claim
//!   gets the oldest complete set valid at `now` and consumes it; a last-resort set only when
//!   nothing else is left; a retry with the same claim ID gets the same set again.
//!
//! Every call reads, validates, then makes at most one atomic write guarded by the token's
//! account version ([`DirectoryStorage`]); a refusal changes nothing. Two claims racing for
//! one set: one write is applied, the other conflicts, reads again and gets the next set (or
//! `key_packages_exhausted`).

mod pseudonym;
mod storage;
pub mod token;
mod wire;

pub use pseudonym::{user_pseudonym, PseudonymousParts, PSEUDONYMOUS_CREDENTIAL_TYPE};
pub use storage::{
    AsyncDirectoryStorage, DirectoryAccount, DirectoryStorage, DirectoryWriteOutcome,
    DirectoryWriteSet, InMemoryDirectoryStorage, ServedClaim, StoredKeyPackage, StoredSet,
    VersionedAccount,
};
pub use wire::{
    DirectoryStatus, KeyPackageSetStatus, KeyPackageUpload, KeyPackageUploadRequest,
    KeyPackageUploadResponse, KeyPackageUploadResponseBody, SetPurpose,
};

use std::collections::HashSet;

use openmls::prelude::{Ciphersuite, MlsMessageBodyIn, MlsMessageIn, ProtocolVersion};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;

use crate::error::{DirectoryRejectReason, SetRule};
use crate::time::UnixTimeMs;
use crate::wire::{
    decode_exact, encode, ClaimedKeyPackageSet, DsAuthData, DsRequest, DsRequestBody, DsResponse,
    DsResponseBody, LastResort, MlsMessageBytes, PROTOCOL_VERSION_MIMI_DS10,
};
use crate::{ProcessError, Status};

use crate::constant_time::constant_time_eq;
use token::{ref_hash, CLAIM_ID_LABEL, TOKEN_LEN, USER_PSEUDONYM_LABEL};

/// Directory settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryConfig {
    /// Requests larger than this are refused before decoding. Default 1 MiB.
    pub max_request_bytes: usize,
    /// The most KeyPackages one upload carries. Default 64.
    pub max_uploads_per_request: usize,
    /// The largest KeyPackage accepted, in bytes. Default 16 KiB.
    pub max_key_package_bytes: usize,
    /// The most clients a set has. Default 16.
    pub max_set_size: u8,
    /// The most sets one token holds. Default 32.
    pub max_sets_per_token: usize,
    /// How long a served claim is remembered, so that a retry gets the same set. Default
    /// 24 hours.
    pub claim_retention_ms: u64,
    /// The ciphersuites accepted. Default: `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`.
    pub ciphersuites: Vec<Ciphersuite>,
    /// How often a request is re-run when storage reports a concurrent write. Default 3.
    pub max_conflict_retries: u32,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            max_uploads_per_request: 64,
            max_key_package_bytes: 16 * 1024,
            max_set_size: 16,
            max_sets_per_token: 32,
            claim_retention_ms: 24 * 60 * 60 * 1000,
            ciphersuites: vec![Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519],
            max_conflict_retries: 3,
        }
    }
}

/// The result of one directory call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct DirectoryOutcome {
    /// The bytes to answer with: a `KeyPackageUploadResponse` for an upload, a `DSResponse`
    /// for a claim.
    pub response: Vec<u8>,
    /// `Accepted`; `Duplicate` for a claim answered again from its claim ID; or the refusal's
    /// code.
    pub status: Status,
    /// Why it was refused, for logs, metrics and tests.
    pub refusal: Option<DirectoryRejectReason>,
    /// `upload`, `key_packages` or `connection_key_packages`.
    pub operation: &'static str,
    /// Whether a claim was answered with a last-resort set.
    pub last_resort: bool,
    /// Writes storage refused with a conflict, each followed by a fresh attempt.
    pub conflict_retries: u32,
}

/// The KeyPackage directory: configuration and a crypto provider; the sets live in the
/// [`DirectoryStorage`] passed to each call.
pub struct KeyPackageDirectory<C = RustCrypto> {
    config: DirectoryConfig,
    crypto: C,
}

impl<C> std::fmt::Debug for KeyPackageDirectory<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPackageDirectory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One validated KeyPackage of an upload.
struct CheckedUpload {
    purpose: SetPurpose,
    set_size: u8,
    client_index: u8,
    last_resort: bool,
    ciphersuite: u16,
    user_pseudonym: Vec<u8>,
    pseudonym_hash: Vec<u8>,
    stored: StoredKeyPackage,
}

/// An upload that passed every check that needs no storage.
struct PreparedUpload {
    index: Vec<u8>,
    uploads: Vec<CheckedUpload>,
}

/// A claim that passed every check that needs no storage.
struct PreparedClaim {
    index: Vec<u8>,
    claim_hash: Vec<u8>,
    purpose: SetPurpose,
}

/// What a request does once its account was read.
enum Plan {
    /// Answer without writing.
    Answer {
        response: Vec<u8>,
        status: Status,
        last_resort: bool,
    },
    /// Apply this write, then answer.
    Write {
        writes: DirectoryWriteSet,
        response: Vec<u8>,
        last_resort: bool,
    },
}

/// What a plan needs read besides the account.
type Registered = HashSet<Vec<u8>>;

impl<C: OpenMlsCrypto> KeyPackageDirectory<C> {
    /// A directory with its settings and a crypto provider.
    pub fn new(config: DirectoryConfig, crypto: C) -> Self {
        Self { config, crypto }
    }

    /// The settings.
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Handles a `KeyPackageUploadRequest`.
    pub fn upload<S: DirectoryStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<DirectoryOutcome, ProcessError<S::Error>> {
        let prepared = match self.prepare_upload(now, request) {
            Ok(prepared) => prepared,
            Err(reason) => return Ok(upload_rejection(reason)),
        };
        let mut retries = 0;
        loop {
            let account = storage
                .account(&prepared.index)
                .map_err(ProcessError::Storage)?;
            let mut registered = Registered::new();
            for hash in new_pseudonyms(&prepared, account.as_ref()) {
                if storage
                    .pseudonym_registered(&hash)
                    .map_err(ProcessError::Storage)?
                {
                    registered.insert(hash);
                }
            }
            let plan = match self.plan_upload(now, &prepared, account, &registered) {
                Ok(plan) => plan,
                Err(reason) => return Ok(upload_rejection(reason)),
            };
            match finish(plan, "upload", retries, |w| storage.write(w))? {
                Some(outcome) => return Ok(outcome),
                None if retries < self.config.max_conflict_retries => retries += 1,
                None => return Ok(upload_rejection(DirectoryRejectReason::Conflict)),
            }
        }
    }

    /// [`KeyPackageDirectory::upload`] over async storage.
    pub async fn upload_async<S: AsyncDirectoryStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<DirectoryOutcome, ProcessError<S::Error>> {
        let prepared = match self.prepare_upload(now, request) {
            Ok(prepared) => prepared,
            Err(reason) => return Ok(upload_rejection(reason)),
        };
        let mut retries = 0;
        loop {
            let account = storage
                .account(&prepared.index)
                .await
                .map_err(ProcessError::Storage)?;
            let mut registered = Registered::new();
            for hash in new_pseudonyms(&prepared, account.as_ref()) {
                if storage
                    .pseudonym_registered(&hash)
                    .await
                    .map_err(ProcessError::Storage)?
                {
                    registered.insert(hash);
                }
            }
            let plan = match self.plan_upload(now, &prepared, account, &registered) {
                Ok(plan) => plan,
                Err(reason) => return Ok(upload_rejection(reason)),
            };
            let applied = match &plan {
                Plan::Write { writes, .. } => {
                    Some(storage.write(writes).await.map_err(ProcessError::Storage)?)
                }
                Plan::Answer { .. } => None,
            };
            match finish_with(plan, "upload", retries, applied) {
                Some(outcome) => return Ok(outcome),
                None if retries < self.config.max_conflict_retries => retries += 1,
                None => return Ok(upload_rejection(DirectoryRejectReason::Conflict)),
            }
        }
    }

    /// Handles a claim: a `DSRequest` of type `key_packages(12)` or
    /// `connection_key_packages(13)`, answered with a `DSResponse`.
    pub fn claim<S: DirectoryStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<DirectoryOutcome, ProcessError<S::Error>> {
        let prepared = match self.prepare_claim(request) {
            Ok(prepared) => prepared,
            Err((reason, operation)) => return Ok(claim_rejection(reason, operation)),
        };
        let operation = operation_name(prepared.purpose);
        let mut retries = 0;
        loop {
            let account = storage
                .account(&prepared.index)
                .map_err(ProcessError::Storage)?;
            let plan = match self.plan_claim(now, &prepared, account) {
                Ok(plan) => plan,
                Err(reason) => return Ok(claim_rejection(reason, operation)),
            };
            match finish(plan, operation, retries, |w| storage.write(w))? {
                Some(outcome) => return Ok(outcome),
                None if retries < self.config.max_conflict_retries => retries += 1,
                None => return Ok(claim_rejection(DirectoryRejectReason::Conflict, operation)),
            }
        }
    }

    /// [`KeyPackageDirectory::claim`] over async storage.
    pub async fn claim_async<S: AsyncDirectoryStorage>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        storage: &mut S,
    ) -> Result<DirectoryOutcome, ProcessError<S::Error>> {
        let prepared = match self.prepare_claim(request) {
            Ok(prepared) => prepared,
            Err((reason, operation)) => return Ok(claim_rejection(reason, operation)),
        };
        let operation = operation_name(prepared.purpose);
        let mut retries = 0;
        loop {
            let account = storage
                .account(&prepared.index)
                .await
                .map_err(ProcessError::Storage)?;
            let plan = match self.plan_claim(now, &prepared, account) {
                Ok(plan) => plan,
                Err(reason) => return Ok(claim_rejection(reason, operation)),
            };
            let applied = match &plan {
                Plan::Write { writes, .. } => {
                    Some(storage.write(writes).await.map_err(ProcessError::Storage)?)
                }
                Plan::Answer { .. } => None,
            };
            match finish_with(plan, operation, retries, applied) {
                Some(outcome) => return Ok(outcome),
                None if retries < self.config.max_conflict_retries => retries += 1,
                None => return Ok(claim_rejection(DirectoryRejectReason::Conflict, operation)),
            }
        }
    }

    fn hash(&self, label: &[u8], value: &[u8]) -> Result<Vec<u8>, DirectoryRejectReason> {
        // SHA-256 is in every provider the crate supports; a failure is the provider's bug,
        // answered as a refusal rather than a panic.
        ref_hash(&self.crypto, label, value)
            .ok_or_else(|| DirectoryRejectReason::InvalidKeyPackage("hash failed".into()))
    }

    /// The request's size, framing, lengths and the secret (wire-format.md §14.4).
    fn prepare_upload(
        &self,
        now: UnixTimeMs,
        bytes: &[u8],
    ) -> Result<PreparedUpload, DirectoryRejectReason> {
        // Rules R-DIR-1, R-DIR-2.
        check_size_and_version(bytes, self.config.max_request_bytes)?;
        let request: KeyPackageUploadRequest = decode_exact(bytes)?;
        // Rule R-DIR-3.
        check_length(
            "connection_token",
            request.connection_token.as_slice(),
            TOKEN_LEN..=TOKEN_LEN,
        )?;
        check_length(
            "upload_secret",
            request.upload_secret.as_slice(),
            TOKEN_LEN..=TOKEN_LEN,
        )?;
        let derived = self.hash(
            token::CONNECTION_TOKEN_LABEL,
            request.upload_secret.as_slice(),
        )?;
        // Rule R-DIR-4.
        if !constant_time_eq(&derived, request.connection_token.as_slice()) {
            return Err(DirectoryRejectReason::UploadSecretMismatch);
        }
        // Rule R-DIR-2.
        if request.uploads.len() > self.config.max_uploads_per_request {
            return Err(DirectoryRejectReason::TooManyKeyPackages {
                count: request.uploads.len(),
                limit: self.config.max_uploads_per_request,
            });
        }
        let index = self.hash(
            token::DIRECTORY_INDEX_LABEL,
            request.connection_token.as_slice(),
        )?;
        let uploads = request
            .uploads
            .iter()
            .map(|upload| self.check_upload(now, upload))
            .collect::<Result<_, _>>()?;
        Ok(PreparedUpload { index, uploads })
    }

    /// The checks of one KeyPackage and its set fields (wire-format.md §14.4).
    fn check_upload(
        &self,
        now: UnixTimeMs,
        upload: &KeyPackageUpload,
    ) -> Result<CheckedUpload, DirectoryRejectReason> {
        let bytes = upload.key_package.as_bytes();
        // Rule R-DIR-2.
        if bytes.len() > self.config.max_key_package_bytes {
            return Err(DirectoryRejectReason::KeyPackageTooLarge {
                size: bytes.len(),
                limit: self.config.max_key_package_bytes,
            });
        }
        // Rule R-DIR-11.
        if upload.set_size == 0 || upload.set_size > self.config.max_set_size {
            return Err(SetRule::SetSize {
                size: upload.set_size,
                limit: self.config.max_set_size,
            }
            .into());
        }
        if upload.client_index >= upload.set_size {
            return Err(SetRule::ClientIndex {
                index: upload.client_index,
                size: upload.set_size,
            }
            .into());
        }
        let invalid = |what: &str| DirectoryRejectReason::InvalidKeyPackage(what.to_owned());
        let message: MlsMessageIn = decode_exact(bytes)?;
        // Rule R-DIR-7.
        let MlsMessageBodyIn::KeyPackage(key_package_in) = message.extract() else {
            return Err(invalid("the MLSMessage does not carry a KeyPackage"));
        };
        // RFC 9420 §6 and §10: MLSMessage `version`, `wire_format`, then the KeyPackage's
        // `version` and `cipher_suite`; read before openmls is asked to verify under it.
        let suite = bytes
            .get(6..8)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        // Rule R-DIR-8.
        if !self.config.ciphersuites.iter().any(|c| *c as u16 == suite) {
            return Err(DirectoryRejectReason::UnsupportedCiphersuite(suite));
        }
        // The lifetime against our `now` first: openmls checks it against the system clock
        // (docs/openmls-notes.md O5), which the directory never reads.
        // Rule R-DIR-10.
        let (not_before, not_after) = raw_lifetime(bytes)?;
        if !(not_before.saturating_mul(1000)..=not_after.saturating_mul(1000))
            .contains(&now.as_millis())
        {
            return Err(DirectoryRejectReason::KeyPackageLifetime {
                not_before,
                not_after,
                now_ms: now.as_millis(),
            });
        }
        // Rule R-DIR-7.
        let key_package = key_package_in
            .validate(&self.crypto, ProtocolVersion::Mls10)
            .map_err(|e| invalid(&format!("{e:?}")))?;
        let leaf = key_package.leaf_node();
        // Rule R-DIR-9.
        let parts =
            user_pseudonym(leaf.credential()).map_err(DirectoryRejectReason::NotPseudonymous)?;
        if parts.signature_public_key != leaf.signature_key().as_slice() {
            return Err(DirectoryRejectReason::NotPseudonymous(
                "the credential's signature key is not the leaf's",
            ));
        }
        let pseudonym_hash = self.hash(USER_PSEUDONYM_LABEL, &parts.user_pseudonym)?;
        Ok(CheckedUpload {
            purpose: upload.purpose,
            set_size: upload.set_size,
            client_index: upload.client_index,
            last_resort: key_package.last_resort(),
            ciphersuite: suite,
            user_pseudonym: parts.user_pseudonym,
            pseudonym_hash,
            stored: StoredKeyPackage {
                client_index: upload.client_index,
                client_pseudonym: parts.client_pseudonym,
                not_before,
                not_after,
                key_package: bytes.to_vec(),
            },
        })
    }

    /// Places every KeyPackage into its set (the set rules, wire-format.md §14.4).
    fn plan_upload(
        &self,
        now: UnixTimeMs,
        prepared: &PreparedUpload,
        current: Option<VersionedAccount>,
        registered: &Registered,
    ) -> Result<Plan, DirectoryRejectReason> {
        let expected_version = current.as_ref().map(|c| c.version);
        let mut account = current.map(|c| c.account).unwrap_or_default();
        if prepared.uploads.is_empty() {
            return Ok(Plan::Answer {
                response: upload_status(&account),
                status: Status::Accepted,
                last_resort: false,
            });
        }
        prune(&mut account, now.as_millis());
        let mut new_pseudonyms = Vec::new();
        for upload in &prepared.uploads {
            let position = account
                .sets
                .iter()
                .position(|s| s.user_pseudonym == upload.user_pseudonym);
            let set = match position {
                Some(i) => &mut account.sets[i],
                None => {
                    // Rule R-DIR-11.
                    if registered.contains(&upload.pseudonym_hash) {
                        return Err(SetRule::PseudonymTaken.into());
                    }
                    if account.sets.len() >= self.config.max_sets_per_token {
                        return Err(SetRule::TooManySets {
                            limit: self.config.max_sets_per_token,
                        }
                        .into());
                    }
                    new_pseudonyms.push(upload.pseudonym_hash.clone());
                    account.sets.push(StoredSet {
                        user_pseudonym: upload.user_pseudonym.clone(),
                        purpose: upload.purpose,
                        set_size: upload.set_size,
                        last_resort: upload.last_resort,
                        ciphersuite: upload.ciphersuite,
                        key_packages: Vec::new(),
                    });
                    account.sets.last_mut().ok_or(SetRule::PseudonymTaken)?
                }
            };
            if set.purpose != upload.purpose {
                return Err(SetRule::Disagrees("purpose").into());
            }
            if set.set_size != upload.set_size {
                return Err(SetRule::Disagrees("set_size").into());
            }
            if set.last_resort != upload.last_resort {
                return Err(SetRule::Disagrees("last_resort").into());
            }
            if set.ciphersuite != upload.ciphersuite {
                return Err(SetRule::Disagrees("ciphersuite").into());
            }
            if set
                .key_packages
                .iter()
                .any(|kp| kp.client_index == upload.client_index)
            {
                return Err(SetRule::SlotTaken(upload.client_index).into());
            }
            if set
                .key_packages
                .iter()
                .any(|kp| kp.client_pseudonym == upload.stored.client_pseudonym)
            {
                return Err(SetRule::ClientPseudonymRepeated.into());
            }
            set.key_packages.push(upload.stored.clone());
            set.key_packages.sort_by_key(|kp| kp.client_index);
        }
        Ok(Plan::Write {
            response: upload_status(&account),
            writes: DirectoryWriteSet {
                index: prepared.index.clone(),
                expected_version,
                account,
                new_pseudonyms,
            },
            last_resort: false,
        })
    }

    /// A claim's framing and lengths (wire-format.md §14.4).
    fn prepare_claim(
        &self,
        bytes: &[u8],
    ) -> Result<PreparedClaim, (DirectoryRejectReason, &'static str)> {
        let fail = |reason| (reason, "claim");
        // Rules R-DIR-1, R-DIR-2.
        check_size_and_version(bytes, self.config.max_request_bytes).map_err(fail)?;
        let request: DsRequest =
            decode_exact(bytes).map_err(|e| fail(DirectoryRejectReason::Malformed(e)))?;
        let (purpose, body) = match (&request.body, &request.auth) {
            (DsRequestBody::KeyPackages(body), DsAuthData::Unauthenticated) => {
                (SetPurpose::Group, body)
            }
            (DsRequestBody::ConnectionKeyPackages(body), DsAuthData::Unauthenticated) => {
                (SetPurpose::Connection, body)
            }
            // Rule R-DIR-1.
            _ => return Err(fail(DirectoryRejectReason::NotAClaim)),
        };
        let operation = operation_name(purpose);
        let fail = |reason| (reason, operation);
        // Rule R-DIR-3.
        check_length(
            "connection_token",
            body.connection_token.as_slice(),
            TOKEN_LEN..=TOKEN_LEN,
        )
        .map_err(fail)?;
        check_length("claim_id", body.claim_id.as_slice(), 16..=64).map_err(fail)?;
        let index = self
            .hash(
                token::DIRECTORY_INDEX_LABEL,
                body.connection_token.as_slice(),
            )
            .map_err(fail)?;
        let mut claim_input = vec![purpose as u8];
        claim_input.extend_from_slice(body.claim_id.as_slice());
        let claim_hash = self.hash(CLAIM_ID_LABEL, &claim_input).map_err(fail)?;
        Ok(PreparedClaim {
            index,
            claim_hash,
            purpose,
        })
    }

    /// Picks and consumes a set (wire-format.md §14.4).
    fn plan_claim(
        &self,
        now: UnixTimeMs,
        prepared: &PreparedClaim,
        current: Option<VersionedAccount>,
    ) -> Result<Plan, DirectoryRejectReason> {
        let now_ms = now.as_millis();
        let Some(current) = current else {
            // Rule R-DIR-5.
            return Err(DirectoryRejectReason::UnknownToken);
        };
        if let Some(served) = current
            .account
            .claims
            .iter()
            .find(|c| c.claim_hash == prepared.claim_hash && c.expires_at_ms >= now_ms)
        {
            let last_resort = decode_exact::<DsResponse>(&served.response).is_ok_and(|r| {
                matches!(
                    r.body,
                    DsResponseBody::KeyPackages(ClaimedKeyPackageSet {
                        last_resort: LastResort::Yes,
                        ..
                    }) | DsResponseBody::ConnectionKeyPackages(ClaimedKeyPackageSet {
                        last_resort: LastResort::Yes,
                        ..
                    })
                )
            });
            return Ok(Plan::Answer {
                response: served.response.clone(),
                status: Status::Duplicate,
                last_resort,
            });
        }
        let mut account = current.account;
        let usable = |s: &StoredSet, last_resort: bool| {
            s.purpose == prepared.purpose
                && s.last_resort == last_resort
                && s.is_complete()
                && s.is_valid_at(now_ms)
        };
        let chosen = account
            .sets
            .iter()
            .position(|s| usable(s, false))
            .or_else(|| account.sets.iter().position(|s| usable(s, true)));
        let Some(chosen) = chosen else {
            // Rule R-DIR-6.
            let of_purpose = account
                .sets
                .iter()
                .filter(|s| s.purpose == prepared.purpose);
            let incomplete = of_purpose.clone().filter(|s| !s.is_complete()).count();
            let expired = of_purpose
                .filter(|s| s.is_complete() && !s.is_valid_at(now_ms))
                .count();
            return Err(DirectoryRejectReason::Exhausted {
                incomplete,
                expired,
            });
        };
        let set = &account.sets[chosen];
        let last_resort = set.last_resort;
        let claimed = ClaimedKeyPackageSet {
            user_pseudonym: set.user_pseudonym.clone().into(),
            last_resort: last_resort.into(),
            key_packages: set
                .key_packages
                .iter()
                .map(|kp| MlsMessageBytes::from_bytes(kp.key_package.clone()))
                .collect::<Result<_, _>>()?,
        };
        let body = match prepared.purpose {
            SetPurpose::Group => DsResponseBody::KeyPackages(claimed),
            SetPurpose::Connection => DsResponseBody::ConnectionKeyPackages(claimed),
        };
        let response = encode(&DsResponse {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body,
        })
        .map_err(|e| DirectoryRejectReason::InvalidKeyPackage(format!("{e:?}")))?;
        if !last_resort {
            account.sets.remove(chosen);
        }
        prune(&mut account, now_ms);
        account.claims.push(ServedClaim {
            claim_hash: prepared.claim_hash.clone(),
            response: response.clone(),
            expires_at_ms: now_ms.saturating_add(self.config.claim_retention_ms),
        });
        Ok(Plan::Write {
            writes: DirectoryWriteSet {
                index: prepared.index.clone(),
                expected_version: Some(current.version),
                account,
                new_pseudonyms: Vec::new(),
            },
            response,
            last_resort,
        })
    }
}

/// The `Lifetime` of a KeyPackage `MLSMessage`, read from its RFC 9420 encoding (§6 header,
/// §10 `version`, `cipher_suite`, `init_key<V>`, then the leaf node).
fn raw_lifetime(message: &[u8]) -> Result<(u64, u64), DirectoryRejectReason> {
    use tls_codec::{DeserializeBytes as _, VLBytes};
    let invalid = || DirectoryRejectReason::InvalidKeyPackage("no lifetime".into());
    let key_package = message.get(8..).ok_or_else(invalid)?;
    let (_init_key, leaf_node) =
        VLBytes::tls_deserialize_bytes(key_package).map_err(|_| invalid())?;
    match crate::handlers::key_package_lifetime::leaf_node_lifetime(leaf_node) {
        Ok(Some(lifetime)) => Ok((lifetime.not_before(), lifetime.not_after())),
        _ => Err(invalid()),
    }
}

/// The user pseudonym hashes of an upload that the account does not hold yet: whether another
/// account (or a consumed set) registered them must be read.
fn new_pseudonyms(prepared: &PreparedUpload, account: Option<&VersionedAccount>) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    prepared
        .uploads
        .iter()
        .filter(|u| {
            !account.is_some_and(|a| {
                a.account
                    .sets
                    .iter()
                    .any(|s| s.user_pseudonym == u.user_pseudonym)
            })
        })
        .filter(|u| seen.insert(u.pseudonym_hash.clone()))
        .map(|u| u.pseudonym_hash.clone())
        .collect()
}

/// Drops what can never be served again: sets with a KeyPackage past its `not_after`, and
/// claims past their retention.
fn prune(account: &mut DirectoryAccount, now_ms: u64) {
    account.sets.retain(|s| {
        s.key_packages
            .iter()
            .all(|kp| kp.not_after.saturating_mul(1000) >= now_ms)
    });
    account.claims.retain(|c| c.expires_at_ms >= now_ms);
}

fn operation_name(purpose: SetPurpose) -> &'static str {
    match purpose {
        SetPurpose::Group => "key_packages",
        SetPurpose::Connection => "connection_key_packages",
    }
}

fn check_size_and_version(bytes: &[u8], limit: usize) -> Result<(), DirectoryRejectReason> {
    if bytes.len() > limit {
        return Err(DirectoryRejectReason::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if let [hi, lo, ..] = bytes {
        let version = u16::from_be_bytes([*hi, *lo]);
        if version != PROTOCOL_VERSION_MIMI_DS10 {
            return Err(DirectoryRejectReason::UnsupportedVersion(version));
        }
    }
    Ok(())
}

fn check_length(
    field: &'static str,
    value: &[u8],
    allowed: std::ops::RangeInclusive<usize>,
) -> Result<(), DirectoryRejectReason> {
    if allowed.contains(&value.len()) {
        Ok(())
    } else {
        Err(DirectoryRejectReason::BadLength {
            field,
            length: value.len(),
        })
    }
}

/// The `KeyPackageUploadResponse` listing the account's sets.
fn upload_status(account: &DirectoryAccount) -> Vec<u8> {
    let sets = account
        .sets
        .iter()
        .map(|s| KeyPackageSetStatus {
            user_pseudonym: s.user_pseudonym.clone().into(),
            purpose: s.purpose,
            set_size: s.set_size,
            last_resort: s.last_resort.into(),
            filled: s
                .key_packages
                .iter()
                .map(|kp| kp.client_index)
                .collect::<Vec<_>>()
                .into(),
            not_after: s
                .key_packages
                .iter()
                .map(|kp| kp.not_after)
                .min()
                .unwrap_or(0),
        })
        .collect();
    encode(&KeyPackageUploadResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: KeyPackageUploadResponseBody::Status(DirectoryStatus { sets }),
    })
    .unwrap_or_default()
}

fn upload_rejection(reason: DirectoryRejectReason) -> DirectoryOutcome {
    let response = encode(&KeyPackageUploadResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: KeyPackageUploadResponseBody::Error(reason.to_wire()),
    })
    .unwrap_or_default();
    rejected(response, reason, "upload")
}

fn claim_rejection(reason: DirectoryRejectReason, operation: &'static str) -> DirectoryOutcome {
    let response = encode(&DsResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsResponseBody::Error(reason.to_wire()),
    })
    .unwrap_or_default();
    rejected(response, reason, operation)
}

fn rejected(
    response: Vec<u8>,
    reason: DirectoryRejectReason,
    operation: &'static str,
) -> DirectoryOutcome {
    DirectoryOutcome {
        response,
        status: Status::Rejected(reason.code()),
        refusal: Some(reason),
        operation,
        last_resort: false,
        conflict_retries: 0,
    }
}

/// Applies a plan's write with `write`; `None` if the write conflicted.
fn finish<E: std::error::Error + 'static>(
    plan: Plan,
    operation: &'static str,
    retries: u32,
    write: impl FnOnce(&DirectoryWriteSet) -> Result<DirectoryWriteOutcome, E>,
) -> Result<Option<DirectoryOutcome>, ProcessError<E>> {
    let applied = match &plan {
        Plan::Write { writes, .. } => Some(write(writes).map_err(ProcessError::Storage)?),
        Plan::Answer { .. } => None,
    };
    Ok(finish_with(plan, operation, retries, applied))
}

/// The outcome of a plan whose write (if any) ended with `applied`; `None` on a conflict.
fn finish_with(
    plan: Plan,
    operation: &'static str,
    retries: u32,
    applied: Option<DirectoryWriteOutcome>,
) -> Option<DirectoryOutcome> {
    let (response, status, last_resort) = match plan {
        Plan::Answer {
            response,
            status,
            last_resort,
        } => (response, status, last_resort),
        Plan::Write {
            response,
            last_resort,
            ..
        } => {
            if applied != Some(DirectoryWriteOutcome::Applied) {
                return None;
            }
            (response, Status::Accepted, last_resort)
        }
    };
    Some(DirectoryOutcome {
        response,
        status,
        refusal: None,
        operation,
        last_resort,
        conflict_retries: retries,
    })
}
