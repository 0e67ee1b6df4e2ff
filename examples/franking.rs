//! Franking end to end (wire-format.md §15.5-§15.6), with real openmls clients and an
//! in-process hub: Alice sends a franked message, Bob checks the hub's frank and reports the
//! message, the hub re-verifies the report; a forged frank is refused.
//!
//! ```text
//! cargo run --example franking
//! ```

use mimi_ds::franking::{franking_tag, verify_frank_signature, FrankRefusal};
use mimi_ds::message_id::message_id;
use mimi_ds::testing::franking::{mimi_content, test_franking_key};
use mimi_ds::testing::{accepted_message, decode_response, Received, TestClient, TestDs};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ReportedMessage,
    ServerFrankingContext, PROTOCOL_VERSION_MIMI_DS10,
};
use openmls_rust_crypto::RustCrypto;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    // A hub that franks (its franking key is a deployment secret), Alice and Bob in a group.
    let mut ds = TestDs::new("hub.example").franking_with(test_franking_key(42));
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob = TestClient::new("bob", "bob-phone", "b.example");
    let group_id = ds.create_group_with(&mut alice, &mut [&mut bob]);
    let crypto = RustCrypto::default();

    // Alice's mimi-content message; its franking tag goes into the MLS authenticated data.
    let content = mimi_content([0x5e; 16], "see you at 10");
    let tag = franking_tag(&crypto, &content).expect("a mimiContent message");
    println!("alice: franking tag {}", hex(&tag));
    let id = message_id(
        &crypto,
        "mimi://a.example/u/alice",
        "mimi://hub.example/r/demo",
        &content,
    )
    .expect("message id");
    println!("alice: message id   {}", hex(&id));
    let out = ds.accept(&alice.franked_message_request(&content, ds.now_ms));
    let receipt = accepted_message(&out);
    let frank = receipt.frank.clone().expect("the hub franked it");
    println!(
        "hub:   accepted as #{} at {} ms, server frank {}",
        receipt.sequence_number,
        receipt.accepted_time_ms,
        hex(&frank.server_frank)
    );

    // Bob receives the message with the frank, and checks the hub's signature with the hub's
    // public key.
    TestDs::route(&out, &mut [&mut bob]);
    let delivered = bob.inbox[0].clone();
    let Some(Received::Application(plaintext)) = bob.process_inbox().pop() else {
        panic!("no message for bob")
    };
    assert_eq!(franking_tag(&crypto, &plaintext), Some(tag));
    let context = ServerFrankingContext {
        sender_uri: b"mimi://a.example/u/alice".to_vec().into(),
        room_uri: group_id.into(),
        accepted_timestamp: delivered.accepted_time_ms,
    };
    let request = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::SignaturePublicKey,
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode");
    let DsResponseBody::SignaturePublicKey(hub_key) =
        decode_response(&ds.process(&request).response).body
    else {
        panic!("the hub's key")
    };
    let frank = delivered.frank.expect("the fanout carries the frank");
    verify_frank_signature(&crypto, hub_key.as_slice(), &frank, &context)
        .expect("the hub signed it");
    println!("bob:   frank signature verifies with the hub's key");

    // Bob reports the message; the hub re-verifies the frank.
    let report = ReportedMessage {
        application_data: plaintext.into(),
        context,
        frank,
    };
    ds.ds
        .verify_reported_message(&report)
        .expect("a genuine report verifies");
    println!("hub:   bob's report verifies: alice sent it at that time in this room");

    // A report that claims Alice said something else does not.
    let mut forged = report.clone();
    forged.application_data = mimi_content([0x5e; 16], "something else").into();
    assert_eq!(
        ds.ds.verify_reported_message(&forged),
        Err(FrankRefusal::ServerFrankMismatch)
    );
    println!("hub:   a report with altered content is refused (server frank mismatch)");
}
