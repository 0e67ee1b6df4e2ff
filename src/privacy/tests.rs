//! Unit tests of the sealing core: each refusal is checked to yield no plaintext.

use openmls::prelude::Ciphersuite;
use openmls_rust_crypto::RustCrypto;

use super::*;
use crate::storage::RecordKind;
use crate::wire::{decode_exact, encode};

const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
const CHACHA_SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
const PLAINTEXT: &[u8] = b"roster: alice's credential, bob's signature key";

fn key(epoch: u64, fill: u8) -> StateKey {
    StateKey::new(epoch, vec![fill; 32])
}

fn binding() -> RecordBinding {
    RecordBinding::for_record(b"group-a", RecordKind::Roster, 7).unwrap()
}

fn sealed_with(key: &StateKey, binding: &RecordBinding) -> Vec<u8> {
    seal_record(
        &RustCrypto::default(),
        SUITE,
        key,
        binding,
        [9; SALT_BYTES],
        PLAINTEXT,
    )
    .unwrap()
}

fn open(key: &StateKey, binding: &RecordBinding, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    open_record(&RustCrypto::default(), SUITE, key, binding, sealed)
}

#[test]
fn round_trip_with_the_same_key_and_binding() {
    for suite in [SUITE, CHACHA_SUITE] {
        let crypto = RustCrypto::default();
        let sealed = seal_record(
            &crypto,
            suite,
            &key(3, 1),
            &binding(),
            [5; SALT_BYTES],
            PLAINTEXT,
        )
        .unwrap();
        assert!(
            !sealed
                .windows(8)
                .any(|w| PLAINTEXT.windows(8).any(|p| p == w)),
            "no 8 plaintext bytes appear in the sealed record"
        );
        assert_eq!(
            open_record(&crypto, suite, &key(3, 1), &binding(), &sealed).unwrap(),
            PLAINTEXT
        );
    }
}

#[test]
fn a_wrong_key_is_refused_by_the_commitment() {
    let sealed = sealed_with(&key(3, 1), &binding());
    assert_eq!(
        open(&key(3, 2), &binding(), &sealed),
        Err(OpenError::WrongKey)
    );
    // One bit of difference is enough.
    let mut secret = vec![1; 32];
    secret[31] ^= 1;
    assert_eq!(
        open(&StateKey::new(3, secret), &binding(), &sealed),
        Err(OpenError::WrongKey)
    );
}

#[test]
fn a_key_with_a_zero_byte_appended_is_refused() {
    // HMAC pads short keys with zeros: without the length rule, `k || 0x00` would derive the
    // same commitment and AEAD key as a 33-byte key, or the reverse.
    let sealed = sealed_with(&key(3, 1), &binding());
    let mut longer = vec![1; 32];
    longer.push(0);
    assert_eq!(
        open(&StateKey::new(3, longer), &binding(), &sealed),
        Err(OpenError::KeyLength {
            expected: 32,
            got: 33
        })
    );
    assert!(matches!(
        seal_record(
            &RustCrypto::default(),
            SUITE,
            &StateKey::new(3, vec![1; 31]),
            &binding(),
            [0; SALT_BYTES],
            PLAINTEXT
        ),
        Err(SealError::KeyLength {
            expected: 32,
            got: 31
        })
    ));
}

#[test]
fn a_key_of_another_epoch_is_refused_as_such() {
    let sealed = sealed_with(&key(3, 1), &binding());
    assert_eq!(
        open(&key(2, 1), &binding(), &sealed),
        Err(OpenError::KeyEpoch {
            record_epoch: 3,
            key_epoch: 2
        })
    );
    // Rewriting the clear epoch in the header does not help: the commitment covers it.
    let mut record = decode_exact::<SealedRecord>(&sealed).unwrap();
    record.key_epoch = 2;
    assert_eq!(
        open(&key(2, 1), &binding(), &encode(&record).unwrap()),
        Err(OpenError::WrongKey)
    );
}

#[test]
fn every_bound_field_is_checked() {
    let sealed = sealed_with(&key(3, 1), &binding());
    let mut other_group = binding();
    other_group.group_id = b"group-b".to_vec();
    let mut other_kind = binding();
    other_kind.kind = SealedKind::Sequencer;
    let mut other_version = binding();
    other_version.version = 6;
    let mut other_record_key = binding();
    other_record_key.record_key = vec![0];
    for (name, moved) in [
        ("group ID", other_group),
        ("kind", other_kind),
        ("version", other_version),
        ("record key", other_record_key),
    ] {
        assert_eq!(
            open(&key(3, 1), &moved, &sealed),
            Err(OpenError::Altered),
            "{name} swapped"
        );
    }
    // A Welcome tree of one epoch does not open as another epoch's.
    let tree7 = RecordBinding::for_record(b"g", RecordKind::WelcomeTree { epoch: 7 }, 1).unwrap();
    let tree8 = RecordBinding::for_record(b"g", RecordKind::WelcomeTree { epoch: 8 }, 1).unwrap();
    assert_eq!(
        open(&key(3, 1), &tree8, &sealed_with(&key(3, 1), &tree7)),
        Err(OpenError::Altered)
    );
}

#[test]
fn a_changed_salt_or_commitment_is_refused() {
    let sealed = sealed_with(&key(3, 1), &binding());
    let mut record = decode_exact::<SealedRecord>(&sealed).unwrap();
    record.salt[0] ^= 1;
    assert_eq!(
        open(&key(3, 1), &binding(), &encode(&record).unwrap()),
        Err(OpenError::WrongKey)
    );
    let mut record = decode_exact::<SealedRecord>(&sealed).unwrap();
    let mut commitment = record.commitment.as_slice().to_vec();
    commitment[0] ^= 1;
    record.commitment = commitment.into();
    assert_eq!(
        open(&key(3, 1), &binding(), &encode(&record).unwrap()),
        Err(OpenError::WrongKey)
    );
}

#[test]
fn every_bit_flip_and_truncation_is_refused() {
    let sealed = sealed_with(&key(3, 1), &binding());
    for bit in 0..sealed.len() * 8 {
        let mut flipped = sealed.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            open(&key(3, 1), &binding(), &flipped).is_err(),
            "bit {bit} flipped opened"
        );
    }
    for len in 0..sealed.len() {
        assert!(
            open(&key(3, 1), &binding(), &sealed[..len]).is_err(),
            "truncated to {len} opened"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(
        open(&key(3, 1), &binding(), &longer),
        Err(OpenError::Malformed(_))
    ));
}

#[test]
fn fresh_salts_give_unrelated_ciphertexts() {
    let crypto = RustCrypto::default();
    let a = seal_record(
        &crypto,
        SUITE,
        &key(3, 1),
        &binding(),
        [1; SALT_BYTES],
        PLAINTEXT,
    )
    .unwrap();
    let b = seal_record(
        &crypto,
        SUITE,
        &key(3, 1),
        &binding(),
        [2; SALT_BYTES],
        PLAINTEXT,
    )
    .unwrap();
    let (a, b) = (
        decode_exact::<SealedRecord>(&a).unwrap(),
        decode_exact::<SealedRecord>(&b).unwrap(),
    );
    assert_ne!(a.commitment, b.commitment);
    // Equal plaintexts under different salts share no keystream: the ciphertexts differ in
    // (almost) every byte, not just the tag.
    let same = a
        .ciphertext
        .as_slice()
        .iter()
        .zip(b.ciphertext.as_slice())
        .filter(|(x, y)| x == y)
        .count();
    assert!(same < 8, "{same} equal bytes");
}

#[test]
fn clear_records_have_no_binding() {
    assert_eq!(
        RecordBinding::for_record(b"g", RecordKind::Reservation, 1),
        None
    );
    assert_eq!(
        RecordBinding::for_record(b"g", RecordKind::Tombstone, 1),
        None
    );
    let response = RecordBinding::replay_response(b"g", &[7; 32]);
    let sealed = sealed_with(&key(3, 1), &response);
    assert_eq!(
        open(
            &key(3, 1),
            &RecordBinding::replay_response(b"g", &[8; 32]),
            &sealed
        ),
        Err(OpenError::Altered)
    );
    assert_eq!(
        open(&key(3, 1), &RecordBinding::manifest(b"g", 0), &sealed),
        Err(OpenError::Altered)
    );
}

#[test]
fn state_keys_round_trip_strictly() {
    let keys =
        StateKeys::new(StateKeyScheme::ExporterEpochKey, key(4, 1), Some(key(5, 2))).unwrap();
    let bytes = encode(&keys).unwrap();
    assert_eq!(bytes.len(), tls_codec::Size::tls_serialized_len(&keys));
    let decoded = decode_exact::<StateKeys>(&bytes).unwrap();
    assert_eq!(decoded, keys);
    assert_eq!(decoded.next().unwrap().epoch(), 5);
    assert_eq!(encode(&decoded).unwrap(), bytes);
    let without = StateKeys::new(StateKeyScheme::ExporterEpochKey, key(4, 1), None).unwrap();
    assert_eq!(
        decode_exact::<StateKeys>(&encode(&without).unwrap()).unwrap(),
        without
    );
    // A next key of any other epoch cannot be built.
    assert!(StateKeys::new(StateKeyScheme::ExporterEpochKey, key(4, 1), Some(key(6, 2))).is_none());
    assert!(StateKeys::new(StateKeyScheme::ExporterEpochKey, key(u64::MAX, 1), None).is_none());
    // Unknown scheme, bad presence octet, truncation, trailing bytes.
    let mut unknown = bytes.clone();
    unknown[0] = 2;
    assert!(decode_exact::<StateKeys>(&unknown).is_err());
    let mut presence = encode(&without).unwrap();
    *presence.last_mut().unwrap() = 2;
    assert!(decode_exact::<StateKeys>(&presence).is_err());
    assert!(decode_exact::<StateKeys>(&bytes[..bytes.len() - 1]).is_err());
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(decode_exact::<StateKeys>(&trailing).is_err());
    // A next key after the last epoch does not decode.
    let mut last = encode(&without).unwrap();
    last[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
    *last.last_mut().unwrap() = 1;
    last.extend_from_slice(&[1, 0]);
    assert!(decode_exact::<StateKeys>(&last).is_err());
}

#[test]
fn the_key_is_not_printed() {
    let shown = format!(
        "{:?}",
        StateKeys::new(StateKeyScheme::ExporterEpochKey, key(4, 0xab), None).unwrap()
    );
    assert!(shown.contains("epoch: 4"), "{shown}");
    assert!(
        !shown.contains("171") && !shown.to_lowercase().contains("ab, ab"),
        "{shown}"
    );
}

/// RFC 9420 §8.5 checked against the MLS working group's key-schedule test vector
/// (mlswg/mls-implementations, test-vectors/key-schedule.json, cipher suite 1, epoch 0,
/// `exporter`): the spelled-out exporter is the one openmls and every other MLS stack compute.
#[test]
fn mls_exporter_matches_the_rfc_9420_test_vector() {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let out = mls_exporter(
        &RustCrypto::default(),
        SUITE,
        &hex("5a097e149f2a375d0b9e1d1f4dc3a9c6c1788df888e5441f41a8791f4dc56cea"),
        // The vector's `label` is a string (its test-vectors.md), here one of hex digits.
        b"9ba13d54ecdec7cbefcb47b4268d7b1990fabc6d6e67681e167959389d84e4e4",
        &hex("884f1af892ab002f5be4c5d5081ade9e0e6418c6ea7a9a92e90534f19dcef785"),
        32,
    )
    .unwrap();
    assert_eq!(
        out,
        hex("dbce4e25e59ab4dfa6f6200f113ed08393cf6e7286d024811141c6a4dd11c0cb")
    );
}

#[test]
fn privacy_mode_extension_round_trips() {
    let ext = PrivacyModeExtension {
        scheme: StateKeyScheme::ExporterEpochKey,
    };
    assert_eq!(encode(&ext).unwrap(), vec![1]);
    assert_eq!(decode_exact::<PrivacyModeExtension>(&[1]).unwrap(), ext);
    assert!(decode_exact::<PrivacyModeExtension>(&[0]).is_err());
}

#[test]
fn the_manifest_is_ordered_and_names_each_records_version() {
    let tree =
        |epoch| RecordBinding::for_record(b"g", RecordKind::WelcomeTree { epoch }, 0).unwrap();
    let roster = RecordBinding::for_record(b"g", RecordKind::Roster, 0).unwrap();
    let manifest = Manifest::new(
        4,
        [
            (tree(9), 3),
            (roster.clone(), 1),
            (tree(2), 5),
            (roster, 6), // a later write of the roster replaces the earlier entry
        ],
    );
    assert!(manifest.is_canonical());
    assert_eq!(manifest.entries.len(), 3);
    assert_eq!(manifest.version_of(SealedKind::Roster, &[]), Some(6));
    assert_eq!(
        manifest.version_of(SealedKind::WelcomeTree, &2u64.to_be_bytes()),
        Some(5)
    );
    assert_eq!(
        manifest.version_of(SealedKind::WelcomeTree, &9u64.to_be_bytes()),
        Some(3)
    );
    assert_eq!(
        manifest.version_of(SealedKind::WelcomeTree, &3u64.to_be_bytes()),
        None
    );
    assert_eq!(manifest.version_of(SealedKind::Sequencer, &[]), None);
    let decoded = decode_exact::<Manifest>(&encode(&manifest).unwrap()).unwrap();
    assert_eq!(decoded, manifest);
    // A repeated or out-of-order entry is not canonical.
    let mut repeated = manifest.clone();
    repeated.entries.push(repeated.entries[2].clone());
    assert!(!repeated.is_canonical());
    let mut reversed = manifest;
    reversed.entries.reverse();
    assert!(!reversed.is_canonical());
}

/// A sealed record's kind number is the number its backend stores it under
/// (`RecordKind::stored_code`), so one table of numbers serves both; the kinds that stay in
/// the clear, and the manifest (sealed with its own binding), have no record binding.
#[test]
fn sealed_kinds_are_the_stored_codes_and_clear_kinds_are_not_sealed() {
    let keyed = [0, 5].map(|epoch| RecordKind::WelcomeTree { epoch });
    for kind in RecordKind::ALL.into_iter().chain(keyed) {
        let binding = RecordBinding::for_record(b"g", kind, 3);
        match kind {
            RecordKind::Reservation | RecordKind::Tombstone | RecordKind::Manifest => {
                assert_eq!(binding, None, "{kind:?}")
            }
            _ => {
                let binding = binding.unwrap();
                let (code, key) = kind.stored_code();
                assert_eq!(binding.kind as u16, code, "{kind:?}");
                let expected_key = match kind {
                    RecordKind::WelcomeTree { .. } => key.to_be_bytes().to_vec(),
                    _ => Vec::new(),
                };
                assert_eq!(binding.record_key, expected_key, "{kind:?}");
            }
        }
    }
    assert_eq!(
        RecordBinding::manifest(b"g", 1).kind as u16,
        RecordKind::Manifest.stored_code().0
    );
}

/// A ReInit proposal's fields after its group ID, with `extensions` as `(type, data)`.
fn reinit_fields(extensions: &[(u16, &[u8])]) -> Vec<u8> {
    use tls_codec::{Serialize, VLBytes};
    let mut list = Vec::new();
    for (extension_type, data) in extensions {
        list.extend(extension_type.to_be_bytes());
        list.extend(
            VLBytes::new(data.to_vec())
                .tls_serialize_detached()
                .unwrap(),
        );
    }
    // mls10, MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
    let mut fields = vec![0, 1, 0, 1];
    fields.extend(VLBytes::new(list).tls_serialize_detached().unwrap());
    fields
}

/// wire-format.md §17.2: a successor keeps privacy mode only if one of its extensions is
/// 0xF1E6 *and* carries this hub's scheme; the type alone, or the data under another type,
/// is a plain successor.
#[test]
fn a_reinit_keeps_privacy_mode_only_with_extension_0xf1e6_and_its_data() {
    use tls_codec::Serialize;
    let data = PrivacyModeExtension {
        scheme: StateKeyScheme::ExporterEpochKey,
    }
    .tls_serialize_detached()
    .unwrap();
    let keeps = |extensions: &[(u16, &[u8])]| {
        reinit_keeps_privacy_mode(&reinit_fields(extensions)).unwrap()
    };
    assert!(keeps(&[(PRIVACY_MODE_EXTENSION_TYPE, &data)]));
    assert!(keeps(&[
        (0x0002, b"other"),
        (PRIVACY_MODE_EXTENSION_TYPE, &data)
    ]));
    assert!(!keeps(&[]));
    assert!(!keeps(&[(PRIVACY_MODE_EXTENSION_TYPE, &[2])]));
    assert!(!keeps(&[(PRIVACY_MODE_EXTENSION_TYPE, &[])]));
    assert!(!keeps(&[(0xF1E5, &data)]));
    assert!(!keeps(&[
        (0xF1E5, &data),
        (PRIVACY_MODE_EXTENSION_TYPE, &[2])
    ]));
    let fields = reinit_fields(&[(PRIVACY_MODE_EXTENSION_TYPE, &data)]);
    for cut in 0..fields.len() {
        assert!(
            reinit_keeps_privacy_mode(&fields[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}
