//! The provider's KeyPackage directory (wire-format.md §14.4): uploads of pseudonymous
//! KeyPackage sets under a connection token, claims of one complete set per group, and every
//! refusal, each leaving storage byte-identical. Every KeyPackage is made by a real openmls
//! client (`DirectoryUser`).

use mimi_ds::directory::token::{connection_token, directory_index};
use mimi_ds::directory::{
    DirectoryConfig, DirectoryStorage, DirectoryWriteOutcome, DirectoryWriteSet,
    InMemoryDirectoryStorage, KeyPackageDirectory, SetPurpose, VersionedAccount,
};
use mimi_ds::testing::directory::{
    claim_request, claimed_set, upload_request, DirectoryUser, TestDirectory,
};
use mimi_ds::testing::START_MS;
use mimi_ds::wire::{ErrorCode, LastResort, MlsMessageBytes};
use mimi_ds::{DirectoryRejectReason, SetRule, Status, UnixTimeMs};
use openmls::prelude::{
    BasicCredential, Credential, CredentialType, KeyPackageIn, Lifetime, MlsMessageBodyIn,
    MlsMessageIn,
};
use openmls_rust_crypto::RustCrypto;
use tls_codec::DeserializeBytes as _;

const CLAIM_1: &[u8] = b"claim for group 1 (16+ bytes)";
const CLAIM_2: &[u8] = b"claim for group 2 (16+ bytes)";
const CLAIM_3: &[u8] = b"claim for group 3 (16+ bytes)";

fn user_pseudonym_of(key_package: &MlsMessageBytes) -> Vec<u8> {
    let message = MlsMessageIn::tls_deserialize_exact_bytes(key_package.as_bytes()).unwrap();
    let MlsMessageBodyIn::KeyPackage(kp) = message.extract() else {
        panic!("not a KeyPackage")
    };
    let kp: KeyPackageIn = kp;
    let credential = kp.unverified_credential().credential;
    mimi_ds::directory::user_pseudonym(&credential)
        .unwrap()
        .user_pseudonym
}

/// A user with two clients uploads two complete sets; two claims get one each, with every
/// KeyPackage of a set carrying the set's user pseudonym, and the two sets different.
#[test]
fn a_claim_gets_one_complete_set_and_consumes_it() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 2, "bob.example");
    let (p1, mut entries) = bob.set(SetPurpose::Group, false);
    let (p2, more) = bob.set(SetPurpose::Group, false);
    entries.extend(more);
    let status = dir.accept_upload(&bob.upload(entries));
    assert_eq!(status.sets.len(), 2);
    assert!(status.sets.iter().all(|s| s.filled.as_slice() == [0, 1]));

    let first = dir.accept_claim(&bob.claim(SetPurpose::Group, CLAIM_1));
    assert_eq!(first.user_pseudonym.as_slice(), p1);
    assert_eq!(first.last_resort, LastResort::No);
    assert_eq!(first.key_packages.len(), 2);
    for kp in &first.key_packages {
        assert_eq!(user_pseudonym_of(kp), p1);
    }
    let second = dir.accept_claim(&bob.claim(SetPurpose::Group, CLAIM_2));
    assert_eq!(second.user_pseudonym.as_slice(), p2);
    // Both consumed: a third claim finds nothing.
    let reason = dir.reject_claim(
        &bob.claim(SetPurpose::Group, CLAIM_3),
        ErrorCode::KeyPackagesExhausted,
    );
    assert_eq!(
        reason,
        DirectoryRejectReason::Exhausted {
            incomplete: 0,
            expired: 0
        }
    );
}

/// Sets are built by each client uploading into the sets its siblings started (MM-01 pseudonymous KeyPackage sets):
/// a set missing one client's KeyPackage is never handed out.
#[test]
fn incomplete_sets_are_never_claimed() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 2, "bob.example");
    let pseudonym = bob.pseudonym(0, 'u');
    let first = bob.entry(SetPurpose::Group, 0, bob.key_package(0, &pseudonym, false));
    let status = dir.accept_upload(&bob.upload(vec![first]));
    assert_eq!(status.sets[0].filled.as_slice(), [0]);
    let reason = dir.reject_claim(
        &bob.claim(SetPurpose::Group, CLAIM_1),
        ErrorCode::KeyPackagesExhausted,
    );
    assert_eq!(
        reason,
        DirectoryRejectReason::Exhausted {
            incomplete: 1,
            expired: 0
        }
    );
    // The sibling completes it; now it is served.
    let second = bob.entry(SetPurpose::Group, 1, bob.key_package(1, &pseudonym, false));
    dir.accept_upload(&bob.upload(vec![second]));
    let set = dir.accept_claim(&bob.claim(SetPurpose::Group, CLAIM_1));
    assert_eq!(set.key_packages.len(), 2);
}

/// The last-resort set is handed out only when nothing else is left, is not consumed, and
/// the response says so.
#[test]
fn last_resort_sets_are_reused_only_when_nothing_else_is_left() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 2, "bob.example");
    let (last, mut entries) = bob.set(SetPurpose::Group, true);
    let (normal, more) = bob.set(SetPurpose::Group, false);
    entries.extend(more);
    dir.accept_upload(&bob.upload(entries));

    let first = dir.accept_claim(&bob.claim(SetPurpose::Group, CLAIM_1));
    assert_eq!(
        first.user_pseudonym.as_slice(),
        normal,
        "the normal set first"
    );
    assert_eq!(first.last_resort, LastResort::No);
    for claim in [CLAIM_2, CLAIM_3] {
        let outcome = dir.claim(&bob.claim(SetPurpose::Group, claim));
        assert_eq!(outcome.status, Status::Accepted);
        assert!(outcome.last_resort);
        let set = claimed_set(&outcome.response);
        assert_eq!(set.user_pseudonym.as_slice(), last);
        assert_eq!(set.last_resort, LastResort::Yes);
    }
}

/// A retry with the same claim ID gets the same set and consumes nothing more.
#[test]
fn a_repeated_claim_gets_the_same_set_again() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let (_, mut entries) = bob.set(SetPurpose::Group, false);
    entries.extend(bob.set(SetPurpose::Group, false).1);
    dir.accept_upload(&bob.upload(entries));
    let first = dir.claim(&bob.claim(SetPurpose::Group, CLAIM_1));
    assert_eq!(first.status, Status::Accepted);
    let before = dir.storage.clone();
    let again = dir.claim(&bob.claim(SetPurpose::Group, CLAIM_1));
    assert_eq!(again.status, Status::Duplicate);
    assert_eq!(again.response, first.response);
    assert!(dir.storage == before, "a repeated claim changes nothing");
    // The second set is still there for another claim.
    let other = dir.accept_claim(&bob.claim(SetPurpose::Group, CLAIM_2));
    assert_ne!(claimed_set(&first.response), other);
}

/// Group claims take only group sets, connection claims only connection sets.
#[test]
fn connection_and_group_sets_are_claimed_separately() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let (connection, entries) = bob.set(SetPurpose::Connection, false);
    dir.accept_upload(&bob.upload(entries));
    dir.reject_claim(
        &bob.claim(SetPurpose::Group, CLAIM_1),
        ErrorCode::KeyPackagesExhausted,
    );
    let outcome = dir.claim(&bob.claim(SetPurpose::Connection, CLAIM_1));
    assert_eq!(outcome.operation, "connection_key_packages");
    let response = mimi_ds::testing::decode_response(&outcome.response);
    let mimi_ds::wire::DsResponseBody::ConnectionKeyPackages(set) = response.body else {
        panic!("not connection_key_packages(7): {response:?}")
    };
    assert_eq!(set.user_pseudonym.as_slice(), connection);
}

/// Bad tokens: a token nobody uploaded under, and tokens or claim IDs of the wrong length.
#[test]
fn bad_tokens_are_refused() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    dir.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
    let reason = dir.reject_claim(
        &claim_request(SetPurpose::Group, &[7; 32], CLAIM_1),
        ErrorCode::UnknownConnectionToken,
    );
    assert_eq!(reason, DirectoryRejectReason::UnknownToken);
    // The upload secret is not the token: claiming with it finds nothing.
    dir.reject_claim(
        &claim_request(SetPurpose::Group, &bob.upload_secret, CLAIM_1),
        ErrorCode::UnknownConnectionToken,
    );
    let reason = dir.reject_claim(
        &claim_request(SetPurpose::Group, &bob.connection_token[..31], CLAIM_1),
        ErrorCode::MalformedRequest,
    );
    assert!(matches!(
        reason,
        DirectoryRejectReason::BadLength {
            field: "connection_token",
            ..
        }
    ));
    let reason = dir.reject_claim(
        &bob.claim(SetPurpose::Group, b"short"),
        ErrorCode::MalformedRequest,
    );
    assert!(matches!(
        reason,
        DirectoryRejectReason::BadLength {
            field: "claim_id",
            ..
        }
    ));
}

/// An upload under someone else's token: a connected user knows the token but not the
/// secret it derives from, so whatever secret it presents does not derive the token.
#[test]
fn uploads_with_someone_elses_token_are_refused() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let mallory = DirectoryUser::new("mallory", 1, "evil.example");
    dir.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
    // Mallory's own secret with Bob's token.
    let request = upload_request(
        &bob.connection_token,
        &mallory.upload_secret,
        mallory.set(SetPurpose::Group, false).1,
    );
    let reason = dir.reject_upload(&request, ErrorCode::AuthenticationFailed);
    assert_eq!(reason, DirectoryRejectReason::UploadSecretMismatch);
    // The token itself presented as the secret.
    let request = upload_request(
        &bob.connection_token,
        &bob.connection_token,
        mallory.set(SetPurpose::Group, false).1,
    );
    dir.reject_upload(&request, ErrorCode::AuthenticationFailed);
    // Even a status query needs the secret.
    dir.reject_upload(
        &upload_request(&bob.connection_token, &mallory.upload_secret, Vec::new()),
        ErrorCode::AuthenticationFailed,
    );
}

/// Oversized uploads: the request, one KeyPackage, or too many KeyPackages.
#[test]
fn oversized_uploads_are_refused() {
    let mut config = DirectoryConfig::default();
    config.max_uploads_per_request = 2;
    config.max_key_package_bytes = 2000;
    let mut dir = TestDirectory::new(config);
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let mut entries = bob.set(SetPurpose::Group, false).1;
    entries.extend(bob.set(SetPurpose::Group, false).1);
    entries.extend(bob.set(SetPurpose::Group, false).1);
    let reason = dir.reject_upload(&bob.upload(entries), ErrorCode::RequestTooLarge);
    assert_eq!(
        reason,
        DirectoryRejectReason::TooManyKeyPackages { count: 3, limit: 2 }
    );

    let big = bob.key_package_for(
        0,
        Credential::new(
            CredentialType::Other(mimi_ds::directory::PSEUDONYMOUS_CREDENTIAL_TYPE),
            vec![0; 3000],
        ),
        &bob_signer(),
        false,
        None,
    );
    let entry = bob.entry(SetPurpose::Group, 0, big);
    let reason = dir.reject_upload(&bob.upload(vec![entry]), ErrorCode::RequestTooLarge);
    assert!(matches!(
        reason,
        DirectoryRejectReason::KeyPackageTooLarge { limit: 2000, .. }
    ));

    let mut config = DirectoryConfig::default();
    config.max_request_bytes = 100;
    let mut dir = TestDirectory::new(config);
    let reason = dir.reject_upload(
        &bob.upload(bob.set(SetPurpose::Group, false).1),
        ErrorCode::RequestTooLarge,
    );
    assert!(matches!(
        reason,
        DirectoryRejectReason::TooLarge { limit: 100, .. }
    ));
}

fn bob_signer() -> openmls_basic_credential::SignatureKeyPair {
    openmls_basic_credential::SignatureKeyPair::new(
        mimi_ds::testing::CIPHERSUITE.signature_algorithm(),
    )
    .unwrap()
}

/// KeyPackages that openmls or the directory's rules refuse: a basic credential, a
/// pseudonymous credential naming another signature key, a KeyPackage outside its lifetime,
/// and a KeyPackage whose signature does not verify.
#[test]
fn invalid_key_packages_are_refused() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let signer = bob_signer();
    let basic = bob.key_package_for(
        0,
        BasicCredential::new(b"mimi://bob.example/u/bob".to_vec()).into(),
        &signer,
        false,
        None,
    );
    let reason = dir.reject_upload(
        &bob.upload(vec![bob.entry(SetPurpose::Group, 0, basic)]),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
    );
    assert!(matches!(reason, DirectoryRejectReason::NotPseudonymous(_)));

    let other_key = bob_signer().to_public_vec();
    let credential = Credential::new(
        CredentialType::Other(mimi_ds::directory::PSEUDONYMOUS_CREDENTIAL_TYPE),
        mimi_ds::testing::directory::pseudonymous_credential_content(
            &bob.pseudonym(0, 'd'),
            &bob.pseudonym(0, 'u'),
            &other_key,
            b"ct",
        ),
    );
    let foreign_key = bob.key_package_for(0, credential, &signer, false, None);
    let reason = dir.reject_upload(
        &bob.upload(vec![bob.entry(SetPurpose::Group, 0, foreign_key)]),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
    );
    assert!(matches!(reason, DirectoryRejectReason::NotPseudonymous(_)));

    // Well formed but not canonical pseudonyms (wire-format.md §14.1 R-PSEUDO-2), and
    // canonical ones under two domains (R-PSEUDO-3): the hub would refuse such a KeyPackage,
    // so the directory does not hand it out.
    for (client, user) in [
        (
            b"mimi://bob.example/d/1".to_vec(),
            b"mimi://bob.example/u/1".to_vec(),
        ),
        (
            bob.pseudonym(0, 'd'),
            String::from_utf8(bob.pseudonym(0, 'u'))
                .unwrap()
                .replace("bob.example", "eve.example")
                .into_bytes(),
        ),
    ] {
        let credential = Credential::new(
            CredentialType::Other(mimi_ds::directory::PSEUDONYMOUS_CREDENTIAL_TYPE),
            mimi_ds::testing::directory::pseudonymous_credential_content(
                &client,
                &user,
                &signer.to_public_vec(),
                b"ct",
            ),
        );
        let key_package = bob.key_package_for(0, credential, &signer, false, None);
        let reason = dir.reject_upload(
            &bob.upload(vec![bob.entry(SetPurpose::Group, 0, key_package)]),
            ErrorCode::InvalidLeafNodeOrKeyPackage,
        );
        assert!(
            matches!(reason, DirectoryRejectReason::NotPseudonymous(_)),
            "{reason:?}"
        );
    }

    // Valid by the system clock (openmls) but expired at the directory's `now`.
    let start = START_MS / 1000;
    let pseudonym = bob.pseudonym(0, 'u');
    let expired = bob.key_package_with(
        0,
        &pseudonym,
        false,
        Some(Lifetime::init(start - 7200, start - 3600)),
    );
    let reason = dir.reject_upload(
        &bob.upload(vec![bob.entry(SetPurpose::Group, 0, expired)]),
        ErrorCode::KeyPackageLifetime,
    );
    assert!(matches!(
        reason,
        DirectoryRejectReason::KeyPackageLifetime { .. }
    ));

    // A flipped byte in the signature.
    let good = bob.key_package(0, &pseudonym, false);
    let mut bytes = good.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = MlsMessageBytes::from_bytes(bytes).unwrap();
    let reason = dir.reject_upload(
        &bob.upload(vec![bob.entry(SetPurpose::Group, 0, forged)]),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
    );
    assert!(matches!(
        reason,
        DirectoryRejectReason::InvalidKeyPackage(_)
    ));
}

/// The rules of sets: slots, sizes, kinds, last-resort flags agree within a set; no two sets
/// share a user pseudonym, also across tokens and after a set was consumed.
#[test]
fn set_rules_are_enforced() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 2, "bob.example");
    let pseudonym = bob.pseudonym(0, 'u');
    let kp0 = bob.key_package(0, &pseudonym, false);
    let kp0b = bob.key_package(0, &pseudonym, false);

    let mut entry = bob.entry(SetPurpose::Group, 0, kp0.clone());
    entry.client_index = 2;
    let reason = dir.reject_upload(&bob.upload(vec![entry]), ErrorCode::InvalidKeyPackageSet);
    assert_eq!(reason, SetRule::ClientIndex { index: 2, size: 2 }.into());
    let mut entry = bob.entry(SetPurpose::Group, 0, kp0.clone());
    entry.set_size = 0;
    dir.reject_upload(&bob.upload(vec![entry]), ErrorCode::InvalidKeyPackageSet);

    dir.accept_upload(&bob.upload(vec![bob.entry(SetPurpose::Group, 0, kp0.clone())]));
    // The same slot again (a replayed upload, or a second KeyPackage for it).
    let reason = dir.reject_upload(
        &bob.upload(vec![bob.entry(SetPurpose::Group, 0, kp0b)]),
        ErrorCode::InvalidKeyPackageSet,
    );
    assert_eq!(reason, SetRule::SlotTaken(0).into());
    // Client 1 joins with the wrong kind, size or last-resort flag.
    let kp1 = bob.key_package(1, &pseudonym, false);
    let mut entry = bob.entry(SetPurpose::Connection, 1, kp1.clone());
    let reason = dir.reject_upload(
        &bob.upload(vec![entry.clone()]),
        ErrorCode::InvalidKeyPackageSet,
    );
    assert_eq!(reason, SetRule::Disagrees("purpose").into());
    entry.purpose = SetPurpose::Group;
    entry.set_size = 3;
    let reason = dir.reject_upload(&bob.upload(vec![entry]), ErrorCode::InvalidKeyPackageSet);
    assert_eq!(reason, SetRule::Disagrees("set_size").into());
    let kp1_last = bob.key_package(1, &pseudonym, true);
    let reason = dir.reject_upload(
        &bob.upload(vec![bob.entry(SetPurpose::Group, 1, kp1_last)]),
        ErrorCode::InvalidKeyPackageSet,
    );
    assert_eq!(reason, SetRule::Disagrees("last_resort").into());

    // Another token cannot start a set with Bob's pseudonym.
    let mallory = DirectoryUser::new("mallory", 2, "bob.example");
    let stolen = mallory.key_package(0, &pseudonym, false);
    let reason = dir.reject_upload(
        &mallory.upload(vec![mallory.entry(SetPurpose::Group, 0, stolen)]),
        ErrorCode::InvalidKeyPackageSet,
    );
    assert_eq!(reason, SetRule::PseudonymTaken.into());
    // Nor once that token holds sets of its own (its account then exists and is read first).
    dir.accept_upload(&mallory.upload(mallory.set(SetPurpose::Group, false).1));
    let stolen = mallory.key_package(0, &pseudonym, false);
    let reason = dir.reject_upload(
        &mallory.upload(vec![mallory.entry(SetPurpose::Group, 0, stolen)]),
        ErrorCode::InvalidKeyPackageSet,
    );
    assert_eq!(reason, SetRule::PseudonymTaken.into());

    // Complete, claim, and the consumed pseudonym never comes back.
    dir.accept_upload(&bob.upload(vec![bob.entry(SetPurpose::Group, 1, kp1)]));
    dir.accept_claim(&bob.claim(SetPurpose::Group, CLAIM_1));
    let again = bob.key_package(0, &pseudonym, false);
    let reason = dir.reject_upload(
        &bob.upload(vec![bob.entry(SetPurpose::Group, 0, again)]),
        ErrorCode::InvalidKeyPackageSet,
    );
    assert_eq!(reason, SetRule::PseudonymTaken.into());
}

/// The token's quota of sets.
#[test]
fn a_token_holds_at_most_max_sets() {
    let mut config = DirectoryConfig::default();
    config.max_sets_per_token = 2;
    let mut dir = TestDirectory::new(config);
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let mut entries = bob.set(SetPurpose::Group, false).1;
    entries.extend(bob.set(SetPurpose::Group, false).1);
    dir.accept_upload(&bob.upload(entries));
    let reason = dir.reject_upload(
        &bob.upload(bob.set(SetPurpose::Group, false).1),
        ErrorCode::InvalidKeyPackageSet,
    );
    assert_eq!(reason, SetRule::TooManySets { limit: 2 }.into());
}

/// Sets whose KeyPackages expired are skipped by claims (and the answer counts them).
#[test]
fn expired_sets_are_not_claimed() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    // openmls checks the lifetime against the system clock at upload, the directory against
    // its `now`: the lifetime covers both, and then the directory's clock passes its end.
    let start = START_MS / 1000;
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let end = system.max(start) + 60;
    let pseudonym = bob.pseudonym(0, 'u');
    let short = bob.key_package_with(
        0,
        &pseudonym,
        false,
        Some(Lifetime::init(start.min(system) - 3600, end)),
    );
    dir.accept_upload(&bob.upload(vec![bob.entry(SetPurpose::Group, 0, short)]));
    // Carol's set is incomplete (one of two clients) and expires too: it counts as
    // incomplete, not as expired.
    let carol = DirectoryUser::new("carol", 2, "bob.example");
    let carols = carol.pseudonym(0, 'u');
    let short = carol.key_package_with(
        0,
        &carols,
        false,
        Some(Lifetime::init(start.min(system) - 3600, end)),
    );
    dir.accept_upload(&carol.upload(vec![carol.entry(SetPurpose::Group, 0, short)]));
    dir.now_ms = (end + 1) * 1000;
    let reason = dir.reject_claim(
        &bob.claim(SetPurpose::Group, CLAIM_1),
        ErrorCode::KeyPackagesExhausted,
    );
    assert_eq!(
        reason,
        DirectoryRejectReason::Exhausted {
            incomplete: 0,
            expired: 1
        }
    );
    let reason = dir.reject_claim(
        &carol.claim(SetPurpose::Group, CLAIM_1),
        ErrorCode::KeyPackagesExhausted,
    );
    assert_eq!(
        reason,
        DirectoryRejectReason::Exhausted {
            incomplete: 1,
            expired: 0
        }
    );

    // The next write of Bob's token drops the expired set, which frees its place in the
    // token's quota of sets.
    let mut config = DirectoryConfig::default();
    config.max_sets_per_token = 1;
    let storage = dir.storage.clone();
    let mut dir = TestDirectory::new(config);
    dir.storage = storage;
    dir.now_ms = (end + 1) * 1000;
    dir.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
}

/// A storage wrapper that lets a rival claim write first, between this claim's read and its
/// write: the race two concurrent claims on one set run.
struct RivalFirst {
    inner: InMemoryDirectoryStorage,
    rival: Option<Vec<u8>>,
    directory: KeyPackageDirectory<RustCrypto>,
}

impl DirectoryStorage for RivalFirst {
    type Error = mimi_ds::storage::Infallible;
    fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Self::Error> {
        self.inner.account(index)
    }
    fn pseudonym_registered(&self, hash: &[u8]) -> Result<bool, Self::Error> {
        self.inner.pseudonym_registered(hash)
    }
    fn write(&mut self, writes: &DirectoryWriteSet) -> Result<DirectoryWriteOutcome, Self::Error> {
        if let Some(rival) = self.rival.take() {
            let outcome = self
                .directory
                .claim(UnixTimeMs(START_MS), &rival, &mut self.inner)
                .unwrap();
            assert_eq!(outcome.status, Status::Accepted, "the rival wins");
        }
        self.inner.write(writes)
    }
}

/// Two concurrent claims on one set: exactly one gets it, the other reads again and gets the
/// next set; with no next set, `key_packages_exhausted`.
#[test]
fn racing_claims_resolve_to_one_winner_per_set() {
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let mut dir = TestDirectory::default();
    let (first, mut entries) = bob.set(SetPurpose::Group, false);
    let (second, more) = bob.set(SetPurpose::Group, false);
    entries.extend(more);
    dir.accept_upload(&bob.upload(entries.clone()));

    let mut racing = RivalFirst {
        inner: dir.storage.clone(),
        rival: Some(bob.claim(SetPurpose::Group, CLAIM_2)),
        directory: KeyPackageDirectory::new(DirectoryConfig::default(), RustCrypto::default()),
    };
    let ours = KeyPackageDirectory::new(DirectoryConfig::default(), RustCrypto::default())
        .claim(
            UnixTimeMs(START_MS),
            &bob.claim(SetPurpose::Group, CLAIM_1),
            &mut racing,
        )
        .unwrap();
    assert_eq!(ours.status, Status::Accepted);
    assert_eq!(ours.conflict_retries, 1, "the first write lost the race");
    assert_eq!(
        claimed_set(&ours.response).user_pseudonym.as_slice(),
        second
    );
    // The rival got the first set.
    let rival = racing
        .directory
        .claim(
            UnixTimeMs(START_MS),
            &bob.claim(SetPurpose::Group, CLAIM_2),
            &mut racing.inner,
        )
        .unwrap();
    assert_eq!(rival.status, Status::Duplicate);
    assert_eq!(
        claimed_set(&rival.response).user_pseudonym.as_slice(),
        first
    );

    // One set, two racing claims: the loser gets `key_packages_exhausted`, and changes
    // nothing.
    let mut dir = TestDirectory::default();
    dir.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
    let mut racing = RivalFirst {
        inner: dir.storage.clone(),
        rival: Some(bob.claim(SetPurpose::Group, CLAIM_2)),
        directory: KeyPackageDirectory::new(DirectoryConfig::default(), RustCrypto::default()),
    };
    let ours = KeyPackageDirectory::new(DirectoryConfig::default(), RustCrypto::default())
        .claim(
            UnixTimeMs(START_MS),
            &bob.claim(SetPurpose::Group, CLAIM_1),
            &mut racing,
        )
        .unwrap();
    assert_eq!(
        ours.status,
        Status::Rejected(ErrorCode::KeyPackagesExhausted)
    );
}

/// The directory stores neither the token nor the secret: only the index derived from the
/// token, so a copy of its storage lets nobody claim or upload.
#[test]
fn the_directory_stores_neither_token_nor_secret() {
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    dir.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
    let crypto = RustCrypto::default();
    assert_eq!(
        connection_token(&crypto, &bob.upload_secret).unwrap(),
        bob.connection_token
    );
    let index = directory_index(&crypto, &bob.connection_token).unwrap();
    assert!(dir.storage.account(&index).unwrap().is_some());
    let dump = format!("{:?}", dir.storage);
    let hex = |b: &[u8]| format!("{b:?}");
    assert!(!dump.contains(&hex(&bob.connection_token)));
    assert!(!dump.contains(&hex(&bob.upload_secret)));
}

/// Framing: another version, a request type other than 12 or 13, a signed claim, trailing
/// bytes.
#[test]
fn framing_errors_are_refused() {
    use mimi_ds::wire::{DsAuthData, DsRequest, DsRequestBody, PROTOCOL_VERSION_MIMI_DS10};
    let mut dir = TestDirectory::default();
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    dir.accept_upload(&bob.upload(bob.set(SetPurpose::Group, false).1));
    let mut claim = bob.claim(SetPurpose::Group, CLAIM_1);
    claim[1] = 2;
    let reason = dir.reject_claim(&claim, ErrorCode::UnsupportedVersion);
    assert_eq!(reason, DirectoryRejectReason::UnsupportedVersion(2));
    let mut upload = bob.upload(Vec::new());
    upload[1] = 2;
    dir.reject_upload(&upload, ErrorCode::UnsupportedVersion);
    let not_a_claim = mimi_ds::wire::encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap();
    let reason = dir.reject_claim(&not_a_claim, ErrorCode::MalformedRequest);
    assert_eq!(reason, DirectoryRejectReason::NotAClaim);
    // A claim signed as a member is not an anonymous claim.
    let mut carol = mimi_ds::testing::TestClient::new("carol", "carol-1", "c.example");
    mimi_ds::testing::TestClient::share_user_key(&mut [&mut carol]);
    let signed = carol.signed_as_user_in(
        DsRequestBody::KeyPackages(mimi_ds::wire::KeyPackageClaimRequest {
            connection_token: bob.connection_token.clone().into(),
            claim_id: CLAIM_1.to_vec().into(),
        }),
        b"group",
        START_MS,
    );
    assert_eq!(
        dir.reject_claim(&signed, ErrorCode::MalformedRequest),
        DirectoryRejectReason::NotAClaim
    );
    let mut trailing = bob.claim(SetPurpose::Group, CLAIM_1);
    trailing.push(0);
    assert!(matches!(
        dir.reject_claim(&trailing, ErrorCode::MalformedRequest),
        DirectoryRejectReason::Malformed(_)
    ));
}

/// A KeyPackage of a ciphersuite the directory does not accept.
#[test]
fn key_packages_of_another_ciphersuite_are_refused() {
    let mut config = DirectoryConfig::default();
    config.ciphersuites =
        vec![openmls::prelude::Ciphersuite::MLS_128_DHKEMP256_AES128GCM_SHA256_P256];
    let mut dir = TestDirectory::new(config);
    let bob = DirectoryUser::new("bob", 1, "bob.example");
    let reason = dir.reject_upload(
        &bob.upload(bob.set(SetPurpose::Group, false).1),
        ErrorCode::InvalidLeafNodeOrKeyPackage,
    );
    assert_eq!(reason, DirectoryRejectReason::UnsupportedCiphersuite(1));
}
