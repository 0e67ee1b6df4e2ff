//! The storage conformance checks of the KeyPackage directory ([`DirectoryStorage`],
//! wire-format.md §14.4), run on [`InMemoryDirectoryStorage`] (tests/storage_conformance.rs),
//! on SQLite and on PostgreSQL (the backends' tests), with
//! [`crate::directory_storage_conformance_tests!`]:
//!
//! - [`directory_guard_and_atomicity`]: a new account needs `expected_version: None`, an
//!   existing one its current version; each applied write adds one to the version; a stale
//!   version, an account that exists when it must not, or a registered pseudonym makes the
//!   whole write a conflict that changes nothing (account and registry);
//! - [`directory_pseudonyms_are_global`]: a pseudonym one account registered conflicts for
//!   every other account, and stays registered when its set is gone;
//! - [`directory_attacker_sized`]: an account of many sets of large KeyPackages and long
//!   binary indices is stored and read back byte for byte;
//! - [`directory_end_to_end_with_real_clients`]: real openmls clients upload two sets and
//!   claim them through a [`KeyPackageDirectory`] on the backend.

use crate::directory::{
    DirectoryAccount, DirectoryConfig, DirectoryStorage, DirectoryWriteOutcome, DirectoryWriteSet,
    KeyPackageDirectory, ServedClaim, SetPurpose, StoredKeyPackage, StoredSet,
};
use crate::testing::directory::{claimed_set, DirectoryUser};
use crate::testing::START_MS;
use crate::{Status, UnixTimeMs};

/// Generates one `#[test]` per directory check for a backend, given a function that makes a
/// fresh, empty storage.
#[macro_export]
macro_rules! directory_storage_conformance_tests {
    ($new_storage:expr) => {
        $crate::directory_storage_conformance_tests!(@tests $new_storage;
            directory_guard_and_atomicity, directory_pseudonyms_are_global,
            directory_attacker_sized, directory_end_to_end_with_real_clients);
    };
    (@tests $new_storage:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::conformance::directory::$check(&$new_storage);
            }
        )*
    };
}

fn set(pseudonym: &[u8], key_package_bytes: usize, slots: u8) -> StoredSet {
    StoredSet {
        user_pseudonym: pseudonym.to_vec(),
        purpose: SetPurpose::Group,
        set_size: slots,
        last_resort: false,
        ciphersuite: 1,
        key_packages: (0..slots)
            .map(|i| StoredKeyPackage {
                client_index: i,
                client_pseudonym: [pseudonym, &[i]].concat(),
                not_before: 1,
                not_after: u64::MAX / 1000,
                key_package: vec![i; key_package_bytes],
            })
            .collect(),
    }
}

fn account(pseudonyms: &[&[u8]]) -> DirectoryAccount {
    DirectoryAccount {
        sets: pseudonyms.iter().map(|p| set(p, 40, 2)).collect(),
        claims: vec![ServedClaim {
            claim_hash: vec![9; 32],
            response: vec![1, 2, 3],
            expires_at_ms: START_MS,
        }],
    }
}

fn write<S: DirectoryStorage>(
    storage: &mut S,
    index: &[u8],
    expected_version: Option<u64>,
    account: DirectoryAccount,
    new_pseudonyms: &[&[u8]],
) -> DirectoryWriteOutcome {
    storage
        .write(&DirectoryWriteSet {
            index: index.to_vec(),
            expected_version,
            account,
            new_pseudonyms: new_pseudonyms.iter().map(|p| p.to_vec()).collect(),
        })
        .expect("storage works")
}

fn snapshot<S: DirectoryStorage>(storage: &S, indices: &[&[u8]], pseudonyms: &[&[u8]]) -> String {
    let accounts: Vec<_> = indices
        .iter()
        .map(|i| storage.account(i).expect("read"))
        .collect();
    let registered: Vec<_> = pseudonyms
        .iter()
        .map(|p| storage.pseudonym_registered(p).expect("read"))
        .collect();
    format!("{accounts:?} {registered:?}")
}

/// See the module documentation.
pub fn directory_guard_and_atomicity<S: DirectoryStorage>(new_storage: &impl Fn() -> S) {
    let mut storage = new_storage();
    let index: &[u8] = &[1; 32];
    assert_eq!(storage.account(index).unwrap(), None);
    // An existing version for an absent account: conflict.
    assert_eq!(
        write(&mut storage, index, Some(1), account(&[b"p1"]), &[b"h1"]),
        DirectoryWriteOutcome::Conflict
    );
    assert!(
        !storage.pseudonym_registered(b"h1").unwrap(),
        "nothing of a conflict is kept"
    );
    assert_eq!(
        write(&mut storage, index, None, account(&[b"p1"]), &[b"h1"]),
        DirectoryWriteOutcome::Applied
    );
    let read = storage.account(index).unwrap().expect("stored");
    assert_eq!((read.version, read.account), (1, account(&[b"p1"])));
    assert!(storage.pseudonym_registered(b"h1").unwrap());

    let all: [&[u8]; 3] = [b"h1", b"h2", b"h3"];
    let before = snapshot(&storage, &[index], &all);
    // Absent required but present; a stale version; a registered pseudonym; one pseudonym
    // twice in one write: each a conflict that changes nothing.
    for (expected, pseudonyms) in [
        (None, vec![&b"h2"[..]]),
        (Some(0), vec![&b"h2"[..]]),
        (Some(1), vec![&b"h2"[..], &b"h1"[..]]),
        (Some(1), vec![&b"h3"[..], &b"h3"[..]]),
    ] {
        assert_eq!(
            write(
                &mut storage,
                index,
                expected,
                account(&[b"p1", b"p2"]),
                &pseudonyms
            ),
            DirectoryWriteOutcome::Conflict,
            "{expected:?} {pseudonyms:?}"
        );
        assert_eq!(snapshot(&storage, &[index], &all), before);
    }
    assert_eq!(
        write(
            &mut storage,
            index,
            Some(1),
            account(&[b"p1", b"p2"]),
            &[b"h2"]
        ),
        DirectoryWriteOutcome::Applied
    );
    let read = storage.account(index).unwrap().expect("stored");
    assert_eq!((read.version, read.account), (2, account(&[b"p1", b"p2"])));
    // A write without new pseudonyms (a claim) still needs the version.
    assert_eq!(
        write(
            &mut storage,
            index,
            Some(1),
            DirectoryAccount::default(),
            &[]
        ),
        DirectoryWriteOutcome::Conflict
    );
    assert_eq!(
        write(
            &mut storage,
            index,
            Some(2),
            DirectoryAccount::default(),
            &[]
        ),
        DirectoryWriteOutcome::Applied
    );
    let read = storage.account(index).unwrap().expect("stored");
    assert_eq!(
        (read.version, read.account),
        (3, DirectoryAccount::default())
    );
}

/// See the module documentation.
pub fn directory_pseudonyms_are_global<S: DirectoryStorage>(new_storage: &impl Fn() -> S) {
    let mut storage = new_storage();
    let (a, b): (&[u8], &[u8]) = (&[0xa; 32], &[0xb; 32]);
    assert_eq!(
        write(&mut storage, a, None, account(&[b"p"]), &[b"hp"]),
        DirectoryWriteOutcome::Applied
    );
    assert_eq!(
        write(&mut storage, b, None, account(&[b"p"]), &[b"hp"]),
        DirectoryWriteOutcome::Conflict
    );
    assert_eq!(storage.account(b).unwrap(), None);
    // The set is consumed: the pseudonym stays registered.
    assert_eq!(
        write(&mut storage, a, Some(1), DirectoryAccount::default(), &[]),
        DirectoryWriteOutcome::Applied
    );
    assert!(storage.pseudonym_registered(b"hp").unwrap());
    assert_eq!(
        write(&mut storage, b, None, account(&[b"p"]), &[b"hp"]),
        DirectoryWriteOutcome::Conflict
    );
}

/// See the module documentation.
pub fn directory_attacker_sized<S: DirectoryStorage>(new_storage: &impl Fn() -> S) {
    let mut storage = new_storage();
    let config = DirectoryConfig::default();
    let index: Vec<u8> = (0..=255).collect();
    let pseudonyms: Vec<Vec<u8>> = (0..config.max_sets_per_token)
        .map(|i| [&[0u8, 0xff, 0][..], &i.to_be_bytes(), &[7; 200]].concat())
        .collect();
    let big = DirectoryAccount {
        sets: pseudonyms
            .iter()
            .map(|p| set(p, config.max_key_package_bytes, 4))
            .collect(),
        claims: Vec::new(),
    };
    let hashes: Vec<&[u8]> = pseudonyms.iter().map(Vec::as_slice).collect();
    assert_eq!(
        write(&mut storage, &index, None, big.clone(), &hashes),
        DirectoryWriteOutcome::Applied
    );
    let read = storage.account(&index).unwrap().expect("stored");
    assert_eq!(read.account, big, "read back byte for byte");
    for p in &pseudonyms {
        assert!(storage.pseudonym_registered(p).unwrap());
    }
}

/// See the module documentation.
pub fn directory_end_to_end_with_real_clients<S: DirectoryStorage>(new_storage: &impl Fn() -> S) {
    let mut storage = new_storage();
    let directory = KeyPackageDirectory::new(
        DirectoryConfig::default(),
        openmls_rust_crypto::RustCrypto::default(),
    );
    let now = UnixTimeMs(START_MS);
    let bob = DirectoryUser::new("bob", 2, "bob.example");
    let (first, mut entries) = bob.set(SetPurpose::Group, false);
    let (last, more) = bob.set(SetPurpose::Group, true);
    entries.extend(more);
    let outcome = directory
        .upload(now, &bob.upload(entries), &mut storage)
        .expect("storage works");
    assert_eq!(outcome.status, Status::Accepted, "{:?}", outcome.refusal);
    for (claim, pseudonym, last_resort) in [
        (&b"claim for group 1 (16+ bytes)"[..], &first, false),
        (&b"claim for group 2 (16+ bytes)"[..], &last, true),
        (&b"claim for group 3 (16+ bytes)"[..], &last, true),
    ] {
        let outcome = directory
            .claim(now, &bob.claim(SetPurpose::Group, claim), &mut storage)
            .expect("storage works");
        assert_eq!(outcome.status, Status::Accepted, "{:?}", outcome.refusal);
        assert_eq!(outcome.last_resort, last_resort);
        let set = claimed_set(&outcome.response);
        assert_eq!(set.user_pseudonym.as_slice(), pseudonym.as_slice());
        assert_eq!(set.key_packages.len(), 2);
    }
    // A retry of the first claim gets its set again.
    let outcome = directory
        .claim(
            now,
            &bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)"),
            &mut storage,
        )
        .expect("storage works");
    assert_eq!(outcome.status, Status::Duplicate);
    assert_eq!(
        claimed_set(&outcome.response).user_pseudonym.as_slice(),
        first
    );
}
