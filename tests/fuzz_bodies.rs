//! The fuzz bodies run as ordinary tests on a few inputs, so CI exercises them (and their
//! fixture of real groups) on machines without a nightly toolchain too.

use mimi_ds::fuzzing;

#[test]
fn process_bodies_hold_their_invariants_on_sample_inputs() {
    fuzzing::process_bytes(&[]);
    fuzzing::process_bytes(&[0, 1, 17, 0]);
    for selector in 0..16u8 {
        // Unchanged (valid), and with mutations at a few places, re-signed.
        fuzzing::process_mutated(&[selector]);
        fuzzing::process_mutated(&[selector, 0, 40, 1, 0, 200, 0x80, 1, 44, 0xff]);
    }
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
