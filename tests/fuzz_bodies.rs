//! The fuzz bodies run as ordinary tests on a few inputs, so CI exercises them (and their
//! fixture of real groups) on machines without a nightly toolchain too.

use mimi_ds::fuzzing;

#[test]
fn process_bodies_hold_their_invariants_on_sample_inputs() {
    fuzzing::process_bytes(&[]);
    fuzzing::process_bytes(&[0, 1, 17, 0]);
    // 17 seeds, the franked message and the one with a malformed franking tag included.
    for selector in 0..18u8 {
        // Unchanged (valid), and with mutations at a few places, re-signed.
        fuzzing::process_mutated(&[selector]);
        fuzzing::process_mutated(&[selector, 0, 40, 1, 0, 200, 0x80, 1, 44, 0xff]);
    }
}

#[test]
fn decode_bodies_and_the_report_check_hold_on_sample_inputs() {
    // Empty, a ReportedMessage-shaped prefix (empty plaintext, empty URIs), and garbage.
    fuzzing::decode_response_bytes(&[]);
    let mut report = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    report.extend_from_slice(&[7; 32]);
    report.extend_from_slice(&[0, 1, 2, 0xaa, 0xbb]);
    fuzzing::decode_response_bytes(&report);
    fuzzing::decode_response_bytes(&[0xff; 64]);
}

#[test]
fn sequence_body_holds_its_invariants_on_sample_inputs() {
    // message, deliver, update, deliver, propose remove, update (commits it), deliver,
    // replay, mutate, clock step, message, deliver.
    fuzzing::sequence(&[
        0, 0, 7, 4, 0, 0, 1, 1, 0, 4, 0, 0, 2, 2, 0, 1, 0, 0, 4, 0, 0, 5, 0, 0, 6, 0, 9, 7, 0, 3,
        0, 1, 1, 4, 0, 0,
    ]);
    fuzzing::sequence(&[3, 0, 1, 4, 0, 0, 0, 1, 5, 4, 1, 0, 1, 2, 0, 4, 0, 0]);
}

#[test]
fn privacy_keys_body_holds_its_invariants_on_sample_inputs() {
    // Both requests, every damage, a few arguments (wire-format.md §17.9).
    for which in 0..2u8 {
        for damage in 0..6u8 {
            for arg in [0u8, 1, 7, 31, 200, 255] {
                mimi_ds::fuzzing::privacy_keys(&[which, damage, arg]);
            }
        }
    }
}

/// Inputs the fuzzers found, kept as regressions.
#[test]
fn sequence_body_regressions() {
    // An application message accepted in epoch 1 reaches a member only after that member
    // merged its own commit to epoch 2: clients must keep past epochs' secrets to read it.
    fuzzing::sequence(&[0, 0, 255, 255, 255, 255, 1, 1, 0, 4, 0, 0, 0, 2, 1, 4, 0, 0]);
    // Two removals by the same member before anyone processes the first: the second commit's
    // epoch no longer has the first removed member.
    fuzzing::sequence(&[
        3, 0, 251, 3, 0, 0, 5, 0, 0, 6, 0, 17, 7, 0, 30, 0, 1, 2, 4, 0, 0,
    ]);
    // An application message resubmitted under a fresh signature, by its sender and by
    // another member (wire-format.md §4.8: never accepted twice; before, it was).
    fuzzing::sequence(&[0, 0, 7, 7, 0, 1, 5, 0, 1, 5, 1, 1, 4, 0, 0]);
    // Alice and Bob both propose removing Carol before either proposal is delivered. Both used
    // to be accepted and mandatory; openmls commits only one Remove per leaf, so the group
    // could never commit again (the end-of-sequence invariant). Bob's is now refused.
    fuzzing::sequence(&[2, 0, 1, 2, 1, 1]);
    fuzzing::sequence(&[2, 0, 33, 4, 0, 0, 1, 1, 0, 2, 0, 0, 0, 5, 59, 0]);
}

#[test]
fn provider_bodies_hold_their_invariants_on_sample_inputs() {
    for selector in 0..6u8 {
        // Valid, mutated in the version, in the middle and at the end, and raw bytes.
        fuzzing::qs_bytes(&[selector]);
        fuzzing::qs_bytes(&[selector, 0, 1, 0x01, 0, 40, 0x80, 0xff, 0xff, 0x01]);
        fuzzing::qs_bytes(&[selector | 0x80, 0, 1, 2, 0, 0, 0]);
    }
    for method in 0..4u8 {
        for path in 0..11u8 {
            for host in 0..4u8 {
                for kind in [0u8, 1, 2, 0x80] {
                    // A request_group_id body, and a truncated one.
                    fuzzing::route_bytes(&[method, path, host, kind, 0, 1, 0, 0]);
                    fuzzing::route_bytes(&[method, path, host, kind, 0, 1]);
                }
            }
        }
    }
}

#[test]
fn connection_bodies_hold_their_invariants_on_sample_inputs() {
    fuzzing::decode_connection(&[]);
    fuzzing::decode_connection(&[0, 1, 0, 0, 0]);
    // The valid delivery; mutated in the version, the sender, the inbox address, the sealed
    // request's KEM output and its ciphertext's last byte (accepted by the provider, refused by
    // the responder); raw bytes.
    fuzzing::connection_bytes(&[0]);
    for mutation in [
        [0u8, 1, 0x02],
        [0, 3, 0x20],
        [0, 40, 0x01],
        [0, 140, 0x01],
        [0xff, 0xff, 0x01],
    ] {
        let mut data = vec![0];
        data.extend_from_slice(&mutation);
        fuzzing::connection_bytes(&data);
    }
    fuzzing::connection_bytes(&[0x80, 0, 1, 2, 0, 0, 0]);
    // The client-facing endpoints: a fetch, publish, read and acknowledge as built (accepted),
    // mutated in the version, the operation, the name, the signed fields and the signature's
    // last byte (refused), and raw.
    for endpoint in 1u8..=4 {
        fuzzing::connection_bytes(&[endpoint]);
        for mutation in [
            [0u8, 1, 0x02],
            [0, 2, 0x01],
            [0, 5, 0x20],
            [0, 20, 0x01],
            [0, 60, 0x80],
            [0xff, 0xff, 0x01],
        ] {
            let mut data = vec![endpoint];
            data.extend_from_slice(&mutation);
            fuzzing::connection_bytes(&data);
        }
        fuzzing::connection_bytes(&[0x80 | endpoint, 0, 1, 2, 0, 0, 0]);
        fuzzing::connection_bytes(&[0x80 | endpoint]);
    }
}

/// Room policy (wire-format.md §15): strict decoding of the policy structures, and mutated
/// policy changes by the admin and by a member.
#[test]
fn room_policy_bodies_hold_their_invariants_on_sample_inputs() {
    use mimi_ds::policy::{OperationalParameters, ROLES_LIST_EXTENSION_TYPE};
    use mimi_ds::testing::policy::{admin_policy, encoded, raw};
    fuzzing::decode_room_policy(&[]);
    fuzzing::decode_room_policy(&[0, 1, 2, 3]);
    let roles = raw(&admin_policy(&[], &[]))
        .into_iter()
        .find(|(t, _)| *t == ROLES_LIST_EXTENSION_TYPE)
        .unwrap()
        .1;
    fuzzing::decode_room_policy(&[[0].as_slice(), &roles].concat());
    fuzzing::decode_room_policy(
        &[[2].as_slice(), &encoded(&OperationalParameters::default())].concat(),
    );
    for sender in 0..2u8 {
        fuzzing::policy_change(&[sender]);
        fuzzing::policy_change(&[sender, 0, 5, 1]);
        fuzzing::policy_change(&[sender, 0, 30, 0x02, 0, 60, 0x01]);
        fuzzing::policy_change(&[sender, 0, 200, 0x03]);
    }
}

#[test]
fn directory_bodies_hold_their_invariants_on_sample_inputs() {
    for selector in 0..6u8 {
        // Valid, and mutated in the version, the token, the middle and the end.
        fuzzing::directory_bytes(&[selector]);
        fuzzing::directory_bytes(&[
            selector, 0, 1, 0x01, 0, 5, 0x80, 0, 200, 0x10, 0xff, 0xff, 1,
        ]);
        fuzzing::directory_bytes(&[selector | 0x80, 0, 1, 12, 0, 32]);
        fuzzing::decode_directory(&[selector, 0, 1, 0, 0]);
    }
    // Every single-byte flip of the first claim's token and claim ID (bytes 3 to 53).
    for position in 3..53u16 {
        let [hi, lo] = position.to_be_bytes();
        fuzzing::directory_bytes(&[4, hi, lo, 0x01]);
    }
}

#[test]
fn pseudonymous_codec_body_holds_its_invariants_on_sample_inputs() {
    use mimi_ds::pseudonym::PseudonymKind;
    use mimi_ds::testing::pseudonymous::{
        random_connection_key, random_pseudonym, PseudonymousClient,
    };
    let user = random_pseudonym(PseudonymKind::User, "a.example");
    let alice = PseudonymousClient::new(
        "alice",
        "phone",
        "a.example",
        &user,
        &random_connection_key(),
    );
    let credential = alice.pseudonymous.encode().unwrap();
    fuzzing::decode_pseudonymous(&credential);
    fuzzing::decode_pseudonymous(&credential[..credential.len() / 2]);
    fuzzing::decode_pseudonymous(&credential[..credential.len() - 1]);
    fuzzing::decode_pseudonymous(&mimi_ds::wire::encode(&user).unwrap());
    fuzzing::decode_pseudonymous(&[]);
    fuzzing::decode_pseudonymous(&[0, 0, 0, 0]);
    fuzzing::decode_pseudonymous(&[0x40, 0x05, 1, 2, 3]);
    let entry = mimi_ds::pseudonym::EncryptedIdentityLinkKey {
        ciphertext: vec![9; 48].into(),
    };
    let aad = mimi_ds::pseudonym::group_links::add_aad_bytes(vec![entry]).unwrap();
    fuzzing::decode_pseudonymous(&aad);
    fuzzing::decode_pseudonymous(&aad[..aad.len() - 3]);
    fuzzing::decode_pseudonymous(&[aad.as_slice(), b"application data"].concat());
}
