//! The mimi-content message ID (wire-format.md §15.8): the length-prefixed construction,
//! checked against draft-ietf-mimi-content's verified vector (the "original" example message).

use mimi_ds::message_id::{
    check_message_id, content_salt, message_id, message_id_input, MessageIdError,
};
use openmls_rust_crypto::RustCrypto;

/// draft-ietf-mimi-content `examples/original.cbor`, the exact bytes the draft hashes.
const ORIGINAL_CBOR: &str = "87505eed9406c2545547ab6f09f20a18b003f640f6f6a20178206d696d693a2f2f\
6578616d706c652e636f6d2f752f616c6963652d736d6974680278256d696d693a2f2f6578616d706c652e636f6d2f\
722f656e67696e656572696e675f7465616d85016001781e746578742f6d61726b646f776e3b76617269616e743d47\
464d2d4d494d49583948692065766572796f6e652c207765206a75737420736869707065642072656c656173652032\
2e302e205f5f476f6f642020776f726b5f5f21";
const SENDER: &str = "mimi://example.com/u/alice-smith";
const ROOM: &str = "mimi://example.com/r/engineering_team";
/// The draft's message ID of that message (also the `in_reply_to` of its "reaction" example).
const ORIGINAL_ID: &str = "017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f4";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_drafts_vector_matches() {
    let message = hex(ORIGINAL_CBOR);
    let id = message_id(&RustCrypto::default(), SENDER, ROOM, &message).unwrap();
    assert_eq!(id.to_vec(), hex(ORIGINAL_ID));
    check_message_id(&RustCrypto::default(), &id, SENDER, ROOM, &message).unwrap();
}

#[test]
fn the_input_is_length_prefixed_and_ends_with_the_salt_again() {
    let message = hex(ORIGINAL_CBOR);
    let input = message_id_input(SENDER, ROOM, &message).unwrap();
    assert_eq!(&input[..2], &(SENDER.len() as u16).to_be_bytes());
    assert_eq!(&input[2..2 + SENDER.len()], SENDER.as_bytes());
    let room_at = 2 + SENDER.len();
    assert_eq!(
        &input[room_at..room_at + 2],
        &(ROOM.len() as u16).to_be_bytes()
    );
    assert!(input.ends_with(&hex("5eed9406c2545547ab6f09f20a18b003")));
    assert_eq!(
        input.len(),
        4 + SENDER.len() + ROOM.len() + message.len() + 16
    );
    assert_eq!(
        content_salt(&message).unwrap().to_vec(),
        hex("5eed9406c2545547ab6f09f20a18b003")
    );
}

#[test]
fn moving_a_byte_between_the_uris_changes_the_id() {
    // Without the length prefixes, "…alice-smith" + "mimi://…" and "…alice-smit" +
    // "hmimi://…" would hash the same bytes.
    let message = hex(ORIGINAL_CBOR);
    let crypto = RustCrypto::default();
    let id = message_id(&crypto, SENDER, ROOM, &message).unwrap();
    let shifted_room = format!("h{ROOM}");
    let shifted = message_id(
        &crypto,
        &SENDER[..SENDER.len() - 1],
        &shifted_room,
        &message,
    )
    .unwrap();
    assert_ne!(id, shifted);
}

#[test]
fn wrong_ids_and_inputs_are_refused() {
    let message = hex(ORIGINAL_CBOR);
    let crypto = RustCrypto::default();
    let mut id = hex(ORIGINAL_ID);
    assert_eq!(
        check_message_id(
            &crypto,
            &id,
            "mimi://example.com/u/bob-jones",
            ROOM,
            &message
        ),
        Err(MessageIdError::Mismatch)
    );
    id[31] ^= 1;
    assert_eq!(
        check_message_id(&crypto, &id, SENDER, ROOM, &message),
        Err(MessageIdError::Mismatch)
    );
    id[0] = 0x02;
    assert_eq!(
        check_message_id(&crypto, &id, SENDER, ROOM, &message),
        Err(MessageIdError::UnknownHashAlgorithm(0x02))
    );
    assert_eq!(
        check_message_id(&crypto, &id[..31], SENDER, ROOM, &message),
        Err(MessageIdError::WrongLength(31))
    );
    // Not a mimiContent array: no salt to hash.
    assert_eq!(
        message_id(&crypto, SENDER, ROOM, &message[1..]),
        Err(MessageIdError::NotMimiContent)
    );
    assert_eq!(
        message_id(&crypto, SENDER, ROOM, &message[..10]),
        Err(MessageIdError::NotMimiContent)
    );
    let long = "x".repeat(65_536);
    assert!(matches!(
        message_id(&crypto, &long, ROOM, &message),
        Err(MessageIdError::UriTooLong {
            which: "sender_uri",
            len: 65_536
        })
    ));
}
