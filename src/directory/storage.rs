//! The storage contract of the KeyPackage directory, and [`InMemoryDirectoryStorage`].
//!
//! Like the DS's and the QS's, a request reads first and then makes at most one **atomic,
//! guarded** write ([`DirectoryStorage::write`]). Everything a token holds is one
//! [`DirectoryAccount`] with a version; a write names the version it read (or that the
//! account must not exist yet) and the user pseudonyms it registers (which must be new), so
//! of two claims racing for the same set exactly one is applied, and the other reads again
//! and gets the next set. Indices and pseudonym hashes are 32-byte hashes; the account
//! holds KeyPackages as uploaded: treat them as arbitrary bytes.
//!
//! # Sizes an attacker drives
//!
//! Anyone can upload under a fresh secret, so the number of accounts is bounded only by who
//! the embedding server lets reach `/key_package_upload` (rate-limit it like any anonymous
//! endpoint). One account holds at most `max_sets_per_token` sets of at most `max_set_size`
//! KeyPackages of at most `max_key_package_bytes` each, and the claims served within
//! `claim_retention_ms` ([`super::DirectoryConfig`]). The pseudonym registry keeps one
//! 32-byte hash per set ever uploaded, so that a consumed set's pseudonym never comes back.

use std::collections::{HashMap, HashSet};

use crate::storage::Infallible;

use super::wire::SetPurpose;

/// One KeyPackage of a set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredKeyPackage {
    /// The client's slot in the set.
    pub client_index: u8,
    /// The credential's client pseudonym.
    pub client_pseudonym: Vec<u8>,
    /// The KeyPackage's lifetime start, seconds since the UNIX epoch.
    pub not_before: u64,
    /// The KeyPackage's lifetime end, seconds since the UNIX epoch.
    pub not_after: u64,
    /// The `MLSMessage` as uploaded.
    pub key_package: Vec<u8>,
}

/// A set: one KeyPackage per client of the user, one user pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredSet {
    /// The user pseudonym all its KeyPackages carry.
    pub user_pseudonym: Vec<u8>,
    /// Which claims it serves.
    pub purpose: SetPurpose,
    /// How many KeyPackages complete it.
    pub set_size: u8,
    /// Whether it is a last-resort set (kept after a claim).
    pub last_resort: bool,
    /// The ciphersuite of its KeyPackages.
    pub ciphersuite: u16,
    /// Its KeyPackages, by ascending client index.
    pub key_packages: Vec<StoredKeyPackage>,
}

impl StoredSet {
    /// Whether every slot holds a KeyPackage.
    pub fn is_complete(&self) -> bool {
        self.key_packages.len() == usize::from(self.set_size)
    }

    /// Whether every KeyPackage's lifetime includes `now_ms` (RFC 9420 §7.2).
    pub fn is_valid_at(&self, now_ms: u64) -> bool {
        self.key_packages.iter().all(|kp| {
            (kp.not_before.saturating_mul(1000)..=kp.not_after.saturating_mul(1000))
                .contains(&now_ms)
        })
    }
}

/// A claim the directory served, remembered so that a retry with the same claim ID gets the
/// same answer instead of consuming another set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServedClaim {
    /// `RefHash("MIMIMI ClaimId", purpose || claim_id)`.
    pub claim_hash: Vec<u8>,
    /// The encoded `DSResponse` it was answered with.
    pub response: Vec<u8>,
    /// It may be forgotten once `now` passes this (ms since the UNIX epoch).
    pub expires_at_ms: u64,
}

/// Everything the directory holds for one connection token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirectoryAccount {
    /// The sets, oldest first.
    pub sets: Vec<StoredSet>,
    /// Claims served recently.
    pub claims: Vec<ServedClaim>,
}

impl DirectoryAccount {
    /// The account's stored form (postcard), for backends that keep it as one value.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing owned vectors and integers into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// An account from [`DirectoryAccount::to_bytes`]; `Err` names what does not decode.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

/// An account as read, with the version a write must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedAccount {
    /// Starts at 1 and grows by one with every applied write.
    pub version: u64,
    /// The contents.
    pub account: DirectoryAccount,
}

/// Everything one directory request changes, applied atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryWriteSet {
    /// `RefHash("MIMIMI DirectoryIndex", connection_token)`.
    pub index: Vec<u8>,
    /// Guard: the account's current version, or `None` if it must not exist yet. The
    /// account's version afterwards is this plus one (or 1).
    pub expected_version: Option<u64>,
    /// The account's new contents.
    pub account: DirectoryAccount,
    /// Guard and change: user pseudonym hashes to register, none registered yet.
    pub new_pseudonyms: Vec<Vec<u8>>,
}

/// Whether a write set was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum DirectoryWriteOutcome {
    /// Every change is durable.
    Applied,
    /// A guard did not hold; nothing changed.
    Conflict,
}

/// Storage for the KeyPackage directory.
pub trait DirectoryStorage {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The account filed under `index`, with its version.
    fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Self::Error>;
    /// Whether this user pseudonym hash was ever registered (by any account).
    fn pseudonym_registered(&self, pseudonym_hash: &[u8]) -> Result<bool, Self::Error>;
    /// Applies the write set atomically if both guards hold.
    fn write(&mut self, writes: &DirectoryWriteSet) -> Result<DirectoryWriteOutcome, Self::Error>;
}

/// [`DirectoryStorage`] for async backends: the same contract, each method returning a
/// future.
pub trait AsyncDirectoryStorage: Send {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// As [`DirectoryStorage::account`].
    fn account(
        &self,
        index: &[u8],
    ) -> impl std::future::Future<Output = Result<Option<VersionedAccount>, Self::Error>> + Send;
    /// As [`DirectoryStorage::pseudonym_registered`].
    fn pseudonym_registered(
        &self,
        pseudonym_hash: &[u8],
    ) -> impl std::future::Future<Output = Result<bool, Self::Error>> + Send;
    /// As [`DirectoryStorage::write`].
    fn write(
        &mut self,
        writes: &DirectoryWriteSet,
    ) -> impl std::future::Future<Output = Result<DirectoryWriteOutcome, Self::Error>> + Send;
}

/// A [`DirectoryStorage`] in process memory; `Clone + PartialEq` so tests can assert that a
/// refused request changed nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InMemoryDirectoryStorage {
    accounts: HashMap<Vec<u8>, VersionedAccount>,
    pseudonyms: HashSet<Vec<u8>>,
}

impl InMemoryDirectoryStorage {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of accounts (tokens with anything uploaded).
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The number of user pseudonyms ever registered.
    pub fn pseudonym_count(&self) -> usize {
        self.pseudonyms.len()
    }
}

impl DirectoryStorage for InMemoryDirectoryStorage {
    type Error = Infallible;

    fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Infallible> {
        Ok(self.accounts.get(index).cloned())
    }

    fn pseudonym_registered(&self, pseudonym_hash: &[u8]) -> Result<bool, Infallible> {
        Ok(self.pseudonyms.contains(pseudonym_hash))
    }

    fn write(&mut self, writes: &DirectoryWriteSet) -> Result<DirectoryWriteOutcome, Infallible> {
        let current = self.accounts.get(&writes.index).map(|a| a.version);
        let mut fresh = HashSet::new();
        let pseudonyms_new = writes
            .new_pseudonyms
            .iter()
            .all(|p| !self.pseudonyms.contains(p) && fresh.insert(p));
        if current != writes.expected_version || !pseudonyms_new {
            return Ok(DirectoryWriteOutcome::Conflict);
        }
        self.pseudonyms
            .extend(writes.new_pseudonyms.iter().cloned());
        self.accounts.insert(
            writes.index.clone(),
            VersionedAccount {
                version: writes.expected_version.map_or(1, |v| v + 1),
                account: writes.account.clone(),
            },
        );
        Ok(DirectoryWriteOutcome::Applied)
    }
}

// Memory never waits: every future is ready when it is created.
impl AsyncDirectoryStorage for InMemoryDirectoryStorage {
    type Error = Infallible;

    fn account(
        &self,
        index: &[u8],
    ) -> impl std::future::Future<Output = Result<Option<VersionedAccount>, Infallible>> + Send
    {
        std::future::ready(DirectoryStorage::account(self, index))
    }

    fn pseudonym_registered(
        &self,
        pseudonym_hash: &[u8],
    ) -> impl std::future::Future<Output = Result<bool, Infallible>> + Send {
        std::future::ready(DirectoryStorage::pseudonym_registered(self, pseudonym_hash))
    }

    fn write(
        &mut self,
        writes: &DirectoryWriteSet,
    ) -> impl std::future::Future<Output = Result<DirectoryWriteOutcome, Infallible>> + Send {
        std::future::ready(DirectoryStorage::write(self, writes))
    }
}
