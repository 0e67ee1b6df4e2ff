//! The storage conformance checks of the KeyPackage directory ([`DirectoryStorage`],
//! wire-format.md §14.4), run on [`crate::directory::InMemoryDirectoryStorage`]
//! (tests/storage_conformance.rs), on SQLite and on PostgreSQL (the backends' tests), with
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
//!   claim them through a [`KeyPackageDirectory`] on the backend;
//! - [`directory_racing_handles`] (with [`crate::directory_storage_racing_tests!`], given a
//!   database factory): two handles on two threads write the same version, exactly one is
//!   applied; two real claims race on two handles and get different sets.

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

/// Generates the racing check for a backend, given a **database factory** as the DS suite's
/// (each call of the returned function opens one more handle on one fresh database).
#[macro_export]
macro_rules! directory_storage_racing_tests {
    ($new_database:expr) => {
        #[test]
        fn directory_racing_handles() {
            $crate::testing::conformance::directory::directory_racing_handles(&$new_database);
        }
    };
}

/// Two handles on two threads: both write the version they read, exactly one is applied; then
/// two real claims with different claim IDs race through a [`KeyPackageDirectory`] each on its
/// own handle, for a token holding two sets: each gets one, and they are different.
pub fn directory_racing_handles<S, O>(new_database: &impl Fn() -> O)
where
    S: DirectoryStorage + Send,
    O: Fn() -> S + Sync,
{
    let open = new_database();
    let index: &[u8] = &[3; 32];
    let mut first = open();
    assert_eq!(
        write(&mut first, index, None, account(&[b"p"]), &[b"hp"]),
        DirectoryWriteOutcome::Applied
    );
    let barrier = std::sync::Barrier::new(2);
    let outcomes: Vec<DirectoryWriteOutcome> = std::thread::scope(|scope| {
        let racers: Vec<_> = [&b"q1"[..], &b"q2"[..]]
            .into_iter()
            .map(|pseudonym| {
                let (open, barrier) = (&open, &barrier);
                scope.spawn(move || {
                    let mut handle = open();
                    let read = handle.account(index).expect("read").expect("stored");
                    barrier.wait();
                    write(
                        &mut handle,
                        index,
                        Some(read.version),
                        account(&[b"p", pseudonym]),
                        &[pseudonym],
                    )
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("no panic"))
            .collect()
    });
    let applied = outcomes
        .iter()
        .filter(|o| **o == DirectoryWriteOutcome::Applied)
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    let read = first.account(index).unwrap().expect("stored");
    assert_eq!(read.version, 2);
    let registered = [&b"q1"[..], &b"q2"[..]]
        .iter()
        .filter(|p| first.pseudonym_registered(p).unwrap())
        .count();
    assert_eq!(registered, 1, "the loser's pseudonym was not registered");

    // Real claims.
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let mut entries = bob.set(SetPurpose::Group, false).1;
    entries.extend(bob.set(SetPurpose::Group, false).1);
    let upload = bob.upload(entries);
    let claims = [
        bob.claim(SetPurpose::Group, b"racing claim number 1"),
        bob.claim(SetPurpose::Group, b"racing claim number 2"),
    ];
    let now = UnixTimeMs(START_MS);
    let directory = KeyPackageDirectory::new(
        DirectoryConfig::default(),
        openmls_rust_crypto::RustCrypto::default(),
    );
    let outcome = directory
        .upload(now, &upload, &mut first)
        .expect("storage works");
    assert_eq!(outcome.status, Status::Accepted, "{:?}", outcome.refusal);
    let sets: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let racers: Vec<_> = claims
            .iter()
            .map(|claim| {
                let (open, directory) = (&open, &directory);
                scope.spawn(move || {
                    let mut handle = open();
                    let outcome = directory
                        .claim(now, claim, &mut handle)
                        .expect("storage works");
                    assert_eq!(outcome.status, Status::Accepted, "{:?}", outcome.refusal);
                    claimed_set(&outcome.response)
                        .user_pseudonym
                        .as_slice()
                        .to_vec()
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("no panic"))
            .collect()
    });
    assert_ne!(sets[0], sets[1], "two claims never get the same set");
}
