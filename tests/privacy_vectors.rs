//! Golden vectors of privacy mode (wire-format.md §17.10), checked in under
//! `tests/vectors/privacy/` in the format of `tests/golden_vectors.rs` (`# <type>: <what>`,
//! then lowercase hex). They are made from fixed inputs (seeded bytes, a fixed salt); the
//! derivation and the sealing are deterministic, so the same code makes the same bytes.
//!
//! Regenerate after a deliberate change, and review `git diff tests/vectors/privacy`:
//!
//! ```text
//! cargo test --all-features --test privacy_vectors -- --ignored regenerate
//! ```

use mimi_ds::privacy::{
    open_record, seal_record, state_key_from_exporter_secret, Manifest, OpenError,
    PrivacyModeExtension, RecordBinding, SealedKind, SealedRecord, SealedRecordFormat, StateKey,
    StateKeyScheme, StateKeys,
};
use mimi_ds::storage::RecordKind;
use mimi_ds::testing::seeded::seed;
use mimi_ds::testing::CIPHERSUITE;
use mimi_ds::wire::encode;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::types::HashType;

#[path = "support/hex_vectors.rs"]
mod hex_vectors;
use hex_vectors::{Vector, VectorDir};

const DIR: VectorDir = VectorDir(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/privacy"
));
const GROUP_ID: &[u8] = b"privacy-vectors group";
const EPOCH: u64 = 5;
const ROSTER_VERSION: u64 = 7;
const SALT: [u8; 32] = [0x5a; 32];

fn replay_key() -> Vec<u8> {
    RustCrypto::default()
        .hash(HashType::Sha2_256, b"replay key")
        .unwrap()
}

fn roster_binding(group_id: &[u8], version: u64) -> RecordBinding {
    RecordBinding::for_record(group_id, RecordKind::Roster, version).unwrap()
}

/// The records the manifest vector lists, with their versions.
fn manifest_records() -> Vec<(RecordBinding, u64)> {
    [
        (RecordKind::Sequencer, 9),
        (RecordKind::Roster, ROSTER_VERSION),
        (RecordKind::Activity, 8),
    ]
    .into_iter()
    .map(|(kind, version)| {
        (
            RecordBinding::for_record(GROUP_ID, kind, 0).unwrap(),
            version,
        )
    })
    .collect()
}

fn generate() -> Vec<Vector> {
    let crypto = RustCrypto::default();
    let exporter_secret = seed("privacy-vectors exporter_secret").to_vec();
    let key =
        state_key_from_exporter_secret(&crypto, CIPHERSUITE, &exporter_secret, EPOCH).unwrap();
    let next = StateKey::new(EPOCH + 1, seed("privacy-vectors next key").to_vec());
    let plaintext =
        b"a roster: per leaf a signature key, a queue configuration and a user".to_vec();
    let keys = StateKeys::new(
        StateKeyScheme::ExporterEpochKey,
        key.clone(),
        Some(next.clone()),
    )
    .unwrap();
    let current_only = StateKeys::new(StateKeyScheme::ExporterEpochKey, key.clone(), None).unwrap();
    let sealed_roster = seal_record(
        &crypto,
        CIPHERSUITE,
        &key,
        &roster_binding(GROUP_ID, ROSTER_VERSION),
        SALT,
        &plaintext,
    )
    .unwrap();
    let sealed_response = seal_record(
        &crypto,
        CIPHERSUITE,
        &key,
        &RecordBinding::replay_response(GROUP_ID, &replay_key()),
        SALT,
        &plaintext,
    )
    .unwrap();
    let manifest = Manifest::new(EPOCH, manifest_records());
    let suite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
    vec![
        Vector {
            name: "exporter_secret",
            comment: format!("opaque: input, the exporter secret of epoch {EPOCH} ({suite})"),
            bytes: exporter_secret,
        },
        Vector {
            name: "state_key",
            comment: "opaque: MLS-Exporter(\"MIMI DS state key\", \"\", 32) of exporter_secret"
                .into(),
            bytes: key.secret().to_vec(),
        },
        Vector {
            name: "next_state_key",
            comment: format!("opaque: input, the state key of epoch {}", EPOCH + 1),
            bytes: next.secret().to_vec(),
        },
        Vector {
            name: "state_keys",
            comment: format!(
                "StateKeys: exporter_epoch_key, epoch {EPOCH}, state_key, next_key = next_state_key"
            ),
            bytes: encode(&keys).unwrap(),
        },
        Vector {
            name: "state_keys_current_only",
            comment: format!("StateKeys: exporter_epoch_key, epoch {EPOCH}, state_key, no next_key"),
            bytes: encode(&current_only).unwrap(),
        },
        Vector {
            name: "privacy_mode_extension",
            comment: "PrivacyModeExtension: GroupContext extension 0xF1E6, exporter_epoch_key".into(),
            bytes: encode(&PrivacyModeExtension {
                scheme: StateKeyScheme::ExporterEpochKey,
            })
            .unwrap(),
        },
        Vector {
            name: "manifest",
            comment: format!(
                "Manifest: epoch {EPOCH}; Roster at version {ROSTER_VERSION}, Sequencer at 9, \
                 Activity at 8 (encoding order)"
            ),
            bytes: encode(&manifest).unwrap(),
        },
        Vector {
            name: "roster_plaintext",
            comment: "opaque: input, a record's plaintext".into(),
            bytes: plaintext,
        },
        Vector {
            name: "sealed_roster",
            comment: format!(
                "SealedRecord: roster_plaintext sealed under state_key as Roster (kind 2) of group \
                 \"privacy-vectors group\" at version {ROSTER_VERSION}, salt 32 x 0x5a ({suite})"
            ),
            bytes: sealed_roster,
        },
        Vector {
            name: "sealed_replay_response",
            comment: format!(
                "SealedRecord: roster_plaintext sealed under state_key as ReplayResponse (kind 33, \
                 record_key SHA-256(\"replay key\"), version 0) of group \"privacy-vectors group\", \
                 salt 32 x 0x5a ({suite})"
            ),
            bytes: sealed_response,
        },
    ]
}

fn read(name: &str) -> Vec<u8> {
    DIR.read(name)
}

#[test]
#[ignore = "rewrites tests/vectors/privacy; run with `-- --ignored regenerate`"]
fn regenerate_privacy_vectors() {
    DIR.regenerate(&generate());
}

#[test]
fn checked_in_vectors_are_what_the_generator_makes() {
    DIR.check(&generate());
}

fn round_trip<T: tls_codec::DeserializeBytes + tls_codec::Serialize>(name: &str) -> T {
    DIR.round_trip(name)
}

/// The vectors agree with one another, read from the files only: the key is the exporter
/// output of the secret, the request structures carry it, and the sealed records open with it
/// under their binding and under no other.
#[test]
fn vectors_decode_and_agree() {
    let crypto = RustCrypto::default();
    let key = state_key_from_exporter_secret(&crypto, CIPHERSUITE, &read("exporter_secret"), EPOCH)
        .unwrap();
    assert_eq!(key.secret(), read("state_key"));
    let next = StateKey::new(EPOCH + 1, read("next_state_key"));

    let keys: StateKeys = round_trip("state_keys");
    assert_eq!(keys.scheme(), StateKeyScheme::ExporterEpochKey);
    assert_eq!(keys.current(), &key);
    assert_eq!(keys.next(), Some(&next));
    let current_only: StateKeys = round_trip("state_keys_current_only");
    assert_eq!((current_only.current(), current_only.next()), (&key, None));
    let extension: PrivacyModeExtension = round_trip("privacy_mode_extension");
    assert_eq!(extension.scheme, StateKeyScheme::ExporterEpochKey);

    let manifest: Manifest = round_trip("manifest");
    assert!(manifest.is_canonical());
    assert_eq!(manifest.epoch, EPOCH);
    assert_eq!(
        manifest.version_of(SealedKind::Roster, &[]),
        Some(ROSTER_VERSION),
        "the manifest names the version the roster vector is sealed at"
    );

    let plaintext = read("roster_plaintext");
    let roster: SealedRecord = round_trip("sealed_roster");
    assert_eq!(
        (roster.format, roster.key_epoch, roster.salt),
        (SealedRecordFormat::SealedRecordV1, EPOCH, SALT)
    );
    let sealed = read("sealed_roster");
    let binding = roster_binding(GROUP_ID, ROSTER_VERSION);
    assert_eq!(
        open_record(&crypto, CIPHERSUITE, &key, &binding, &sealed).unwrap(),
        plaintext
    );
    assert!(matches!(
        open_record(&crypto, CIPHERSUITE, &next, &binding, &sealed),
        Err(OpenError::KeyEpoch { .. })
    ));
    let next_as_current = StateKey::new(EPOCH, next.secret().to_vec());
    assert_eq!(
        open_record(&crypto, CIPHERSUITE, &next_as_current, &binding, &sealed),
        Err(OpenError::WrongKey)
    );
    for moved in [
        roster_binding(GROUP_ID, ROSTER_VERSION - 1),
        roster_binding(b"another group", ROSTER_VERSION),
    ] {
        assert_eq!(
            open_record(&crypto, CIPHERSUITE, &key, &moved, &sealed),
            Err(OpenError::Altered)
        );
    }

    let response = read("sealed_replay_response");
    let _: SealedRecord = round_trip("sealed_replay_response");
    let response_binding = RecordBinding::replay_response(GROUP_ID, &replay_key());
    assert_eq!(response_binding.kind, SealedKind::ReplayResponse);
    assert_eq!(
        open_record(&crypto, CIPHERSUITE, &key, &response_binding, &response).unwrap(),
        plaintext
    );
    assert_eq!(
        open_record(&crypto, CIPHERSUITE, &key, &binding, &response),
        Err(OpenError::Altered),
        "a replay answer does not open as a roster"
    );
}
