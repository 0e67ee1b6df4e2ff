//! Franking (wire-format.md §15.5-§15.7; draft-ietf-mimi-protocol-06 §"Franking"): a member's
//! application message carrying a franking tag in its authenticated data (set with openmls's
//! `MlsGroup::set_aad`) gets the hub's frank in its acceptance and its fanout; a recipient
//! checks it, and the hub re-verifies it when the message is reported. Forged, altered or
//! transplanted franks do not verify; a malformed tag is refused before anything is stored.

use mimi_ds::franking::{
    frank_message, franking_tag, verify_frank_signature, FrankAadError, FrankRefusal,
};
use mimi_ds::testing::franking::{mimi_content, test_franking_key};
use mimi_ds::testing::{accepted_message, decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ErrorCode, Frank,
    ReportedMessage, SafeAad, SafeAadItem, ServerFrankingContext, FRANK_AAD_COMPONENT_ID,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::RejectReason;
use openmls_rust_crypto::RustCrypto;
use tls_codec::Serialize as _;

const ALICE: &[u8] = b"mimi://a.example/u/alice";
const BOB: &[u8] = b"mimi://b.example/u/bob";

/// A franking hub with Alice and Bob in a group.
fn franking_pair() -> (TestDs, TestClient, TestClient) {
    let mut ds = TestDs::new("hub.example").franking_with(test_franking_key(7));
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    (ds, alice, bob)
}

/// The hub's signature public key, as a client learns it (`signature_public_key`).
fn hub_signature_key(ds: &mut TestDs) -> Vec<u8> {
    let request = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::SignaturePublicKey,
        auth: DsAuthData::Unauthenticated,
    })
    .unwrap();
    match decode_response(&ds.process(&request).response).body {
        DsResponseBody::SignaturePublicKey(key) => key.as_slice().to_vec(),
        other => panic!("{other:?}"),
    }
}

/// What a recipient keeps of a franked message to report it later.
struct Delivered {
    plaintext: Vec<u8>,
    context: ServerFrankingContext,
    frank: Frank,
}

impl Delivered {
    fn report(&self) -> ReportedMessage {
        ReportedMessage {
            application_data: self.plaintext.clone().into(),
            context: self.context.clone(),
            frank: self.frank.clone(),
        }
    }
}

/// `sender` sends `content` franked; `recipient` receives it. Checks the frank in the
/// acceptance equals the one in the fanout, and returns what the recipient holds.
fn send_franked(
    ds: &mut TestDs,
    sender: &mut TestClient,
    sender_uri: &[u8],
    recipient: &mut TestClient,
    content: &[u8],
) -> Delivered {
    let out = ds.accept(&sender.franked_message_request(content, ds.now_ms));
    let accepted = accepted_message(&out);
    let frank = accepted
        .frank
        .clone()
        .expect("a franked message gets a frank");
    assert!(!out.fanout.is_empty());
    for fanout in &out.fanout {
        assert_eq!(fanout.request.message.frank.as_ref(), Some(&frank));
    }
    TestDs::route(&out, &mut [recipient]);
    let delivered_frank = recipient.inbox[0].frank.clone().expect("fanout frank");
    let accepted_time = recipient.inbox[0].accepted_time_ms;
    let Some(Received::Application(plaintext)) = recipient.process_inbox().pop() else {
        panic!("no application message")
    };
    assert_eq!(plaintext, content);
    Delivered {
        plaintext,
        context: ServerFrankingContext {
            sender_uri: sender_uri.to_vec().into(),
            room_uri: sender.group_id().into(),
            accepted_timestamp: accepted_time,
        },
        frank: delivered_frank,
    }
}

#[test]
fn a_franked_message_is_franked_in_the_acceptance_and_fanout_and_its_report_verifies() {
    let (mut ds, mut alice, mut bob) = franking_pair();
    let content = mimi_content([1; 16], "hello bob");
    let delivered = send_franked(&mut ds, &mut alice, ALICE, &mut bob, &content);

    // The recipient's checks: the tag it recomputes from the plaintext is the one the hub
    // franked (the hub verifies the same below), and the hub's signature verifies with the
    // hub's external-sender key.
    let hub_key = hub_signature_key(&mut ds);
    verify_frank_signature(
        &RustCrypto::default(),
        &hub_key,
        &delivered.frank,
        &delivered.context,
    )
    .unwrap();
    assert_eq!(delivered.frank.franking_signature_ciphersuite, 0x0001);

    // The hub re-verifies the report, decoded from bytes as an embedding server gets it.
    let report = delivered.report();
    ds.ds.verify_reported_message(&report).unwrap();
    ds.ds
        .verify_reported_message_bytes(&encode(&report).unwrap())
        .unwrap();
}

#[test]
fn unfranked_messages_and_hubs_without_a_key_give_no_frank() {
    let (mut ds, mut alice, _bob) = franking_pair();
    // No authenticated data.
    let out = ds.accept(&alice.message_request(b"plain", ds.now_ms));
    assert_eq!(accepted_message(&out).frank, None);
    assert!(out.fanout.iter().all(|f| f.request.message.frank.is_none()));
    // The application's own authenticated data, not a SafeAAD: not franked, accepted.
    let out = ds.accept(&alice.message_request_with_aad(b"x", b"hello".to_vec(), ds.now_ms));
    assert_eq!(accepted_message(&out).frank, None);

    // A hub without a franking key accepts a franked message unfranked and verifies nothing.
    let mut plain_ds = TestDs::new("hub.example");
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let mut dave = TestClient::new("dave", "dave-phone", "d.example");
    plain_ds.create_group_with(&mut carol, &mut [&mut dave]);
    let content = mimi_content([2; 16], "hi");
    let out = plain_ds.accept(&carol.franked_message_request(&content, plain_ds.now_ms));
    assert_eq!(accepted_message(&out).frank, None);
    let (mut ds2, mut alice2, mut bob2) = franking_pair();
    let report = send_franked(&mut ds2, &mut alice2, ALICE, &mut bob2, &content).report();
    assert_eq!(
        plain_ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::NotConfigured)
    );
}

#[test]
fn a_forged_or_altered_frank_is_refused() {
    let (mut ds, mut alice, mut bob) = franking_pair();
    let content = mimi_content([3; 16], "the real message");
    let delivered = send_franked(&mut ds, &mut alice, ALICE, &mut bob, &content);
    let crypto = RustCrypto::default();

    // One bit of the server frank flipped.
    let mut report = delivered.report();
    report.frank.server_frank[0] ^= 1;
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );
    // One bit of the signature flipped.
    let mut report = delivered.report();
    let mut signature = report
        .frank
        .franking_integrity_signature
        .as_slice()
        .to_vec();
    signature[5] ^= 1;
    report.frank.franking_integrity_signature = signature.into();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::SignatureDoesNotVerify)
    );
    // The reported plaintext altered (what the recipient claims it got).
    let mut report = delivered.report();
    report.application_data = mimi_content([3; 16], "the fake message").into();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );
    // A whole frank forged by a member: another HMAC key, signed with the member's own key.
    let tag = franking_tag(&crypto, &content).unwrap();
    let forged = frank_message(
        &crypto,
        &test_franking_key(8),
        &bob.signer,
        0x0001,
        &tag,
        &delivered.context,
    )
    .unwrap();
    let mut report = delivered.report();
    report.frank = forged.clone();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );
    // The right server frank (say, leaked) but signed by the member, not the hub.
    let mut resigned = forged;
    resigned.server_frank = delivered.frank.server_frank;
    let content_to_sign = mimi_ds::wire::FrankingIntegrityTbs {
        server_frank: resigned.server_frank,
        franking_signature_ciphersuite: 0x0001,
        context: &delivered.context,
    }
    .sign_content()
    .unwrap();
    resigned.franking_integrity_signature =
        openmls_traits::signatures::Signer::sign(&bob.signer, &content_to_sign)
            .unwrap()
            .into();
    let mut report = delivered.report();
    report.frank = resigned;
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::SignatureDoesNotVerify)
    );
    // An unknown ciphersuite, a plaintext that is no mimiContent, bytes that are no report.
    let mut report = delivered.report();
    report.frank.franking_signature_ciphersuite = 0x7777;
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::UnknownCiphersuite(0x7777))
    );
    let mut report = delivered.report();
    report.application_data = b"not cbor".to_vec().into();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::NotMimiContent)
    );
    let bytes = encode(&delivered.report()).unwrap();
    assert_eq!(
        ds.ds
            .verify_reported_message_bytes(&bytes[..bytes.len() - 1]),
        Err(FrankRefusal::Malformed)
    );
    // Another hub's franking key does not verify this hub's franks.
    let other = TestDs::new("hub.example").franking_with(test_franking_key(9));
    assert_eq!(
        other.ds.verify_reported_message(&delivered.report()),
        Err(FrankRefusal::ServerFrankMismatch)
    );
    // And the genuine report still verifies.
    ds.ds.verify_reported_message(&delivered.report()).unwrap();
}

#[test]
fn a_frank_from_another_sender_group_epoch_or_time_does_not_verify() {
    let (mut ds, mut alice, mut bob) = franking_pair();
    let same = mimi_content([4; 16], "same words");
    let from_alice = send_franked(&mut ds, &mut alice, ALICE, &mut bob, &same);
    ds.advance(1);
    let from_bob = send_franked(&mut ds, &mut bob, BOB, &mut alice, &same);
    ds.ds.verify_reported_message(&from_alice.report()).unwrap();
    ds.ds.verify_reported_message(&from_bob.report()).unwrap();

    // Another sender: Bob's frank of the same words, presented as Alice's.
    let mut report = from_bob.report();
    report.context.sender_uri = ALICE.to_vec().into();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );
    // Another time: the acceptance time moved by a millisecond.
    let mut report = from_alice.report();
    report.context.accepted_timestamp += 1;
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );

    // Another group: the same words franked in Alice and Carol's group, presented in this one.
    let mut carol = TestClient::new("carol", "carol-phone", "c.example");
    let mut alice_again = TestClient::new("alice", "alice-laptop", "a.example");
    ds.create_group_with(&mut alice_again, &mut [&mut carol]);
    let other_group = send_franked(&mut ds, &mut alice_again, ALICE, &mut carol, &same);
    ds.ds
        .verify_reported_message(&other_group.report())
        .unwrap();
    let mut report = other_group.report();
    report.context.room_uri = alice.group_id().into();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );

    // Another epoch: after a commit, a new message's context with the old message's frank.
    let out = ds.accept(&alice.update_request(ds.now_ms));
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    bob.process_inbox();
    assert_eq!(alice.epoch(), 2);
    ds.advance(1);
    let later = mimi_content([5; 16], "said in epoch 2");
    let in_epoch_2 = send_franked(&mut ds, &mut alice, ALICE, &mut bob, &later);
    ds.ds.verify_reported_message(&in_epoch_2.report()).unwrap();
    let mut report = in_epoch_2.report();
    report.frank = from_alice.frank.clone();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );
    // ... and the epoch-1 frank with the epoch-2 plaintext.
    let mut report = from_alice.report();
    report.application_data = later.into();
    assert_eq!(
        ds.ds.verify_reported_message(&report),
        Err(FrankRefusal::ServerFrankMismatch)
    );
}

#[test]
fn a_malformed_franking_tag_is_refused_and_nothing_is_stored() {
    let (mut ds, mut alice, _bob) = franking_pair();
    for len in [0, 31, 33] {
        let aad = SafeAad {
            aad_items: vec![SafeAadItem {
                component_id: FRANK_AAD_COMPONENT_ID,
                aad_item_data: vec![9; len].into(),
            }],
        }
        .tls_serialize_detached()
        .unwrap();
        let content = mimi_content([6; 16], "x");
        let request = alice.message_request_with_aad(&content, aad, ds.now_ms);
        let reason = ds.reject(&request, ErrorCode::MalformedRequest);
        assert_eq!(
            reason,
            RejectReason::MalformedFrankAad(FrankAadError::WrongTagLength(len))
        );
    }
    // A tag next to other components (in order) is found; the message is franked.
    let content = mimi_content([6; 16], "y");
    let tag = franking_tag(&RustCrypto::default(), &content).unwrap();
    let aad = SafeAad {
        aad_items: vec![
            SafeAadItem {
                component_id: 0x0010,
                aad_item_data: b"other".to_vec().into(),
            },
            SafeAadItem {
                component_id: FRANK_AAD_COMPONENT_ID,
                aad_item_data: tag.to_vec().into(),
            },
        ],
    }
    .tls_serialize_detached()
    .unwrap();
    let out = ds.accept(&alice.message_request_with_aad(&content, aad, ds.now_ms));
    assert!(accepted_message(&out).frank.is_some());
}

/// A copy of a key pair (it is TLS-serialisable, the public way to copy it).
fn copy_key(
    key: &openmls_basic_credential::SignatureKeyPair,
) -> openmls_basic_credential::SignatureKeyPair {
    let bytes = key.tls_serialize_detached().unwrap();
    tls_codec::DeserializeBytes::tls_deserialize_exact_bytes(&bytes).unwrap()
}

#[test]
fn franks_made_before_a_signing_key_rotation_still_verify_with_the_retired_identity() {
    use mimi_ds::testing::{ds_identity, ds_identity_with_keys, CIPHERSUITE};
    use mimi_ds::{BasicCredentialValidator, DeliveryService, DsConfig};

    let old_keys =
        openmls_basic_credential::SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
    let (old_identity, old_sender) = ds_identity_with_keys("hub.example", copy_key(&old_keys));
    let mut ds = TestDs::with_crypto(
        DsConfig::new("hub.example"),
        old_identity,
        old_sender,
        RustCrypto::default(),
    )
    .franking_with(test_franking_key(7));
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    ds.create_group_with(&mut alice, &mut [&mut bob]);
    let content = mimi_content([8; 16], "before the rotation");
    let report = send_franked(&mut ds, &mut alice, ALICE, &mut bob, &content).report();

    // The hub now signs with a new identity (wire-format.md §7.6) and keeps the old one as
    // retired: the old frank still verifies. Without the retired identity it does not.
    let (new_identity, _) = ds_identity("hub.example");
    let (old_identity, _) = ds_identity_with_keys("hub.example", old_keys);
    let rotated = DeliveryService::new(
        DsConfig::new("hub.example"),
        new_identity,
        RustCrypto::default(),
    )
    .with_credential_validator(BasicCredentialValidator::accept_basic_credentials())
    .with_franking_key(test_franking_key(7));
    assert_eq!(
        rotated.verify_reported_message(&report),
        Err(FrankRefusal::SignatureDoesNotVerify)
    );
    let rotated = rotated.with_retired_identity(old_identity);
    rotated.verify_reported_message(&report).unwrap();
}
