//! The KeyPackage directory's limits and its retries (wire-format.md §14.4): each limit is
//! inclusive (a request exactly at it is taken, one past it refused with its named reason),
//! and a write that meets a concurrent change is re-run `max_conflict_retries` times, on the
//! sync and the async path, before the request is refused with `conflict` and nothing stored.

use mimi_ds::directory::{
    AsyncDirectoryStorage, DirectoryConfig, DirectoryOutcome, DirectoryStorage,
    DirectoryWriteOutcome, DirectoryWriteSet, InMemoryDirectoryStorage, KeyPackageDirectory,
    SetPurpose, VersionedAccount,
};
use mimi_ds::testing::directory::{DirectoryUser, TestDirectory};
use mimi_ds::testing::driver::block_on;
use mimi_ds::testing::START_MS;
use mimi_ds::wire::ErrorCode;
use mimi_ds::{DirectoryRejectReason, SetRule, Status, UnixTimeMs};
use openmls_rust_crypto::RustCrypto;

const CLAIM: &[u8] = b"claim for group 1 (16+ bytes)";

/// In-memory directory storage whose next `conflicts` writes report a concurrent change, as
/// a durable backend's version guard does when another instance wrote first.
struct Conflicting {
    inner: InMemoryDirectoryStorage,
    conflicts: u32,
}

impl Conflicting {
    fn next_write(&mut self) -> Option<DirectoryWriteOutcome> {
        (self.conflicts > 0).then(|| {
            self.conflicts -= 1;
            DirectoryWriteOutcome::Conflict
        })
    }
}

impl DirectoryStorage for Conflicting {
    type Error = mimi_ds::storage::Infallible;
    fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Self::Error> {
        DirectoryStorage::account(&self.inner, index)
    }
    fn pseudonym_registered(&self, hash: &[u8]) -> Result<bool, Self::Error> {
        DirectoryStorage::pseudonym_registered(&self.inner, hash)
    }
    fn write(&mut self, writes: &DirectoryWriteSet) -> Result<DirectoryWriteOutcome, Self::Error> {
        match self.next_write() {
            Some(conflict) => Ok(conflict),
            None => DirectoryStorage::write(&mut self.inner, writes),
        }
    }
}

impl AsyncDirectoryStorage for Conflicting {
    type Error = mimi_ds::storage::Infallible;
    async fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Self::Error> {
        DirectoryStorage::account(&self.inner, index)
    }
    async fn pseudonym_registered(&self, hash: &[u8]) -> Result<bool, Self::Error> {
        DirectoryStorage::pseudonym_registered(&self.inner, hash)
    }
    async fn write(
        &mut self,
        writes: &DirectoryWriteSet,
    ) -> Result<DirectoryWriteOutcome, Self::Error> {
        match self.next_write() {
            Some(conflict) => Ok(conflict),
            None => DirectoryStorage::write(&mut self.inner, writes),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    Upload,
    Claim,
}

fn run(
    directory: &KeyPackageDirectory,
    operation: Operation,
    asynchronous: bool,
    request: &[u8],
    storage: &mut Conflicting,
) -> DirectoryOutcome {
    let now = UnixTimeMs(START_MS);
    match (operation, asynchronous) {
        (Operation::Upload, false) => directory.upload(now, request, storage),
        (Operation::Upload, true) => block_on(directory.upload_async(now, request, storage)),
        (Operation::Claim, false) => directory.claim(now, request, storage),
        (Operation::Claim, true) => block_on(directory.claim_async(now, request, storage)),
    }
    .expect("memory does not fail")
}

/// Uploads and claims, sync and async: up to `max_conflict_retries` (3) conflicts the request
/// still lands and says how often it was re-run; one more and it is refused with `conflict`
/// after every retry, with nothing stored.
#[test]
fn conflicting_writes_are_retried_then_refused() {
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let upload = bob.upload(bob.set(SetPurpose::Group, false).1);
    let claim = bob.claim(SetPurpose::Group, CLAIM);
    let mut uploaded = TestDirectory::default();
    uploaded.accept_upload(&upload);
    let directory = KeyPackageDirectory::new(DirectoryConfig::default(), RustCrypto::default());
    let retries = directory.config().max_conflict_retries;
    assert_eq!(retries, 3);
    for asynchronous in [false, true] {
        for (operation, request, before) in [
            (Operation::Upload, &upload, InMemoryDirectoryStorage::new()),
            (Operation::Claim, &claim, uploaded.storage.clone()),
        ] {
            for conflicts in 0..=retries + 1 {
                let case = format!("{operation:?}, async {asynchronous}, {conflicts} conflicts");
                let mut storage = Conflicting {
                    inner: before.clone(),
                    conflicts,
                };
                let outcome = run(&directory, operation, asynchronous, request, &mut storage);
                assert_eq!(storage.conflicts, 0, "{case}: every retry was made");
                if conflicts <= retries {
                    assert_eq!(outcome.status, Status::Accepted, "{case}");
                    assert_eq!(outcome.conflict_retries, conflicts, "{case}");
                    assert_ne!(storage.inner, before, "{case}: stored");
                } else {
                    assert_eq!(
                        outcome.status,
                        Status::Rejected(ErrorCode::Conflict),
                        "{case}"
                    );
                    assert_eq!(
                        outcome.refusal,
                        Some(DirectoryRejectReason::Conflict),
                        "{case}"
                    );
                    assert_eq!(storage.inner, before, "{case}: nothing stored");
                }
            }
        }
    }
}

/// `max_uploads_per_request`, `max_key_package_bytes` and `max_set_size` are inclusive.
#[test]
fn the_upload_limits_are_inclusive() {
    let bob = DirectoryUser::new("bob", 2, "bob.example");
    let (_, entries) = bob.set(SetPurpose::Group, false);
    let upload = bob.upload(entries.clone());
    let largest = entries
        .iter()
        .map(|entry| entry.key_package.as_bytes().len())
        .max()
        .expect("two entries");
    let mut at_limit = DirectoryConfig::default();
    at_limit.max_uploads_per_request = 2;
    at_limit.max_key_package_bytes = largest;
    at_limit.max_set_size = 2;
    let mut dir = TestDirectory::new(at_limit.clone());
    assert_eq!(dir.directory.config(), &at_limit);
    dir.accept_upload(&upload);

    let mut too_many = at_limit.clone();
    too_many.max_uploads_per_request = 1;
    let mut too_large = at_limit.clone();
    too_large.max_key_package_bytes = largest - 1;
    let mut too_big_a_set = at_limit.clone();
    too_big_a_set.max_set_size = 1;
    let past = [
        (
            too_many,
            DirectoryRejectReason::TooManyKeyPackages { count: 2, limit: 1 },
        ),
        (
            too_large,
            DirectoryRejectReason::KeyPackageTooLarge {
                size: largest,
                limit: largest - 1,
            },
        ),
        (too_big_a_set, SetRule::SetSize { size: 2, limit: 1 }.into()),
    ];
    let mut exactly_this_size = at_limit.clone();
    exactly_this_size.max_request_bytes = upload.len();
    TestDirectory::new(exactly_this_size).accept_upload(&upload);
    let mut one_byte_short = at_limit.clone();
    one_byte_short.max_request_bytes = upload.len() - 1;
    let past = past.into_iter().chain([(
        one_byte_short,
        DirectoryRejectReason::TooLarge {
            size: upload.len(),
            limit: upload.len() - 1,
        },
    )]);
    for (config, expected) in past {
        let mut dir = TestDirectory::new(config);
        let reason = dir.reject_upload(&upload, expected.code());
        assert_eq!(reason, expected);
    }
    let debug = format!("{:?}", dir.directory);
    assert!(debug.contains("KeyPackageDirectory"), "{debug}");
}

/// What the storage holds after uploads and a claim: one account per token, every user
/// pseudonym registered once, and an account's stored form (what durable backends keep)
/// decodes to the same account.
#[test]
fn accounts_are_counted_and_their_stored_form_round_trips() {
    use mimi_ds::directory::token::{connection_token, directory_index};
    use mimi_ds::directory::DirectoryAccount;

    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 2, "bob.example");
    let carol = DirectoryUser::new("carol", 1, "carol.example");
    let mut entries = bob.set(SetPurpose::Group, false).1;
    entries.extend(bob.set(SetPurpose::Group, true).1);
    dir.accept_upload(&bob.upload(entries));
    dir.accept_upload(&carol.upload(carol.set(SetPurpose::Group, false).1));
    dir.accept_claim(&bob.claim(SetPurpose::Group, CLAIM));
    assert_eq!(dir.storage.account_count(), 2);
    assert_eq!(dir.storage.pseudonym_count(), 3);

    let crypto = RustCrypto::default();
    let token = connection_token(&crypto, &bob.upload_secret).expect("hash");
    assert_eq!(token, bob.connection_token);
    let index = directory_index(&crypto, &token).expect("hash");
    let stored = DirectoryStorage::account(&dir.storage, &index)
        .unwrap()
        .expect("bob's account");
    let account = stored.account;
    assert_eq!((account.sets.len(), account.claims.len()), (1, 1));
    let bytes = account.to_bytes();
    assert_eq!(DirectoryAccount::from_bytes(&bytes), Ok(account));
    assert!(DirectoryAccount::from_bytes(&bytes[..bytes.len() - 1]).is_err());
}

/// A set's purpose is named as in wire-format.md §14.4's `SetPurpose` enum, for logs.
#[test]
fn set_purposes_are_named_as_on_the_wire() {
    assert_eq!(SetPurpose::Group.name(), "group");
    assert_eq!(SetPurpose::Connection.name(), "connection");
}
