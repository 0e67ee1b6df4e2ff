//! A whole group life with real openmls clients: create, add two users' three clients, messages
//! in both directions, an update, a standalone proposal, a removal, deletion.

use mimi_ds::testing::{accepted_message, decode_response, TestClient, TestDs};
use mimi_ds::wire::ErrorCode;
use mimi_ds::Status;

#[test]
fn whole_group_life() {
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let mut bob1 = TestClient::new("bob", "bob-phone", "b.example");
    let mut bob2 = TestClient::new("bob", "bob-laptop", "b.example");

    // Create.
    let group_id = ds.request_group_id();
    alice.create_group(&group_id, &ds.external_sender);
    let out = ds.process(&alice.create_group_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );

    // Add Bob's two clients.
    let request = alice.add_request(vec![bob1.key_package(), bob2.key_package()], ds.now_ms);
    let out = ds.process(&request);
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    let receipt = accepted_message(&out);
    assert_eq!((receipt.sequence_number, receipt.epoch), (0, 1));
    alice.confirm_commit();
    // The commit goes to nobody (Alice was alone); the Welcome to both Bob clients.
    assert_eq!(
        TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]),
        2
    );

    // Joiners fetch the tree and join.
    let info = ds.group_info(&alice, &group_id);
    for bob in [&mut bob1, &mut bob2] {
        let welcome = match bob.process_inbox().pop() {
            Some(mimi_ds::testing::Received::Welcome(w)) => w,
            other => panic!("{other:?}"),
        };
        bob.join_from_welcome(&welcome, info.ratchet_tree().expect("full tree"));
        assert_eq!(bob.epoch(), 1);
    }

    // Messages both ways.
    ds.advance(1000);
    let out = ds.process(&alice.message_request(b"hi bob", ds.now_ms));
    assert_eq!(accepted_message(&out).sequence_number, 1);
    assert_eq!(
        TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]),
        2
    );
    for bob in [&mut bob1, &mut bob2] {
        assert_eq!(
            bob.process_inbox(),
            vec![mimi_ds::testing::Received::Application(b"hi bob".to_vec())]
        );
    }
    let out = ds.process(&bob2.message_request(b"hi alice", ds.now_ms));
    assert_eq!(accepted_message(&out).sequence_number, 2);
    TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]);
    assert!(
        bob2.inbox.is_empty(),
        "the sender does not get its own message"
    );
    assert_eq!(
        alice.process_inbox(),
        vec![mimi_ds::testing::Received::Application(
            b"hi alice".to_vec()
        )]
    );
    bob1.process_inbox();

    // An update by Bob's phone.
    let out = ds.process(&bob1.update_request(ds.now_ms));
    assert_eq!(accepted_message(&out).epoch, 2);
    bob1.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]);
    alice.process_inbox();
    bob2.process_inbox();

    // A standalone proposal, then a commit that must include it.
    let bob2_leaf = bob2.leaf();
    let out = ds.process(&bob1.propose_remove_request(bob2_leaf, ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]);
    alice.process_inbox();
    bob2.process_inbox();
    let out = ds.process(&alice.update_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]);
    bob1.process_inbox();
    assert!(matches!(
        bob2.process_inbox()[..],
        [mimi_ds::testing::Received::Commit { removed: true, .. }]
    ));

    // Deletion: Alice removes everyone else; the group is gone.
    let out = ds.process(&alice.delete_group_request(ds.now_ms));
    assert_eq!(
        out.status,
        Status::Accepted,
        "{:?}",
        decode_response(&out.response)
    );
    assert_eq!(
        TestDs::route(&out, &mut [&mut alice, &mut bob1, &mut bob2]),
        1
    );
    alice.confirm_commit();
    let out = ds.process(&alice.message_request(b"anyone?", ds.now_ms));
    assert_eq!(out.status, Status::Rejected(ErrorCode::UnknownGroup));
}
