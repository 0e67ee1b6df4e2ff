//! Identity links in pseudonymous groups (wire-format.md §14.2; MIMIMI Flows C and D, the
//! hub-stored variant), with real openmls clients: a connected user is added with its wrapped
//! identity link key in the commit's SafeAAD, a new device joins by external commit with its
//! own, the hub keeps and serves them per leaf and drops a member's with the member; every
//! member authenticates every other member's real identity, and the hub's storage holds none.

use mimi_ds::pseudonym::group_links::{
    add_aad_bytes, AddAad, EncryptedIdentityLinkKey, SafeAad, SafeAadItem,
    IDENTITY_LINK_KEYS_COMPONENT_ID, MAX_ENCRYPTED_IDENTITY_LINK_KEY,
};
use mimi_ds::pseudonym::{IdentityLinkKeys, InvalidIdentityLinkKeys, PseudonymKind};
use mimi_ds::safe_aad::SafeAadError;
use mimi_ds::testing::pseudonymous::{
    authenticate_members, random_connection_key, random_pseudonym, random_wrapper_key,
    wrapper_key_of, LinkedAdd, PseudonymousClient,
};
use mimi_ds::testing::{decode_response, Received, TestDs};
use mimi_ds::wire::{encode, DsResponseBody, ErrorCode};
use mimi_ds::{InvalidMlsMessage, RejectReason};
use tls_codec::Serialize as _;

/// A user: its connection key (known to its connections) and its user pseudonym in the room.
struct User {
    connection_key: Vec<u8>,
    pseudonym: mimi_ds::pseudonym::IdentifierUri,
    domain: &'static str,
    name: &'static str,
}

impl User {
    fn new(name: &'static str, domain: &'static str) -> Self {
        Self {
            connection_key: random_connection_key(),
            pseudonym: random_pseudonym(PseudonymKind::User, domain),
            domain,
            name,
        }
    }

    fn client(&self, device: &str) -> PseudonymousClient {
        PseudonymousClient::new(
            self.name,
            device,
            self.domain,
            &self.pseudonym,
            &self.connection_key,
        )
    }
}

/// Alice's phone creates a pseudonymous room with a fresh wrapper key.
fn alice_alone(ds: &mut TestDs, alice: &User) -> (PseudonymousClient, Vec<u8>) {
    let mut phone = alice.client("phone");
    let group_id = ds.request_group_id();
    phone.create_group(&group_id, &ds.external_sender, true);
    let _ = ds.accept(&phone.client.create_group_request(ds.now_ms));
    (phone, random_wrapper_key())
}

fn links(ds: &mut TestDs, member: &PseudonymousClient) -> IdentityLinkKeys {
    // A millisecond apart per read: a signed read sent twice is a replay.
    ds.advance(1);
    match decode_response(
        &ds.accept(&member.identity_link_keys_request(ds.now_ms))
            .response,
    )
    .body
    {
        DsResponseBody::IdentityLinkKeys(links) => links,
        other => panic!("{other:?}"),
    }
}

/// Joins from the Welcome in the client's inbox; returns the wrapper key it carried.
fn join(ds: &mut TestDs, joiner: &mut PseudonymousClient) -> Vec<u8> {
    let Some(Received::Welcome(welcome)) = joiner.client.process_inbox().pop() else {
        panic!("no Welcome")
    };
    let (request, processed) = joiner.client.welcome_info_request(&welcome, ds.now_ms);
    let wrapper_key = wrapper_key_of(&processed).expect("the Welcome carries the wrapper key");
    let DsResponseBody::WelcomeInfo(info) = decode_response(&ds.process(&request).response).body
    else {
        panic!("welcome_info refused")
    };
    joiner.client.join_with_tree(processed, &info.ratchet_tree);
    wrapper_key
}

/// Every needle's bytes, searched in the debug dump of the whole store (every record, replay
/// mark and stored response): a `Vec<u8>` prints as its decimal bytes.
fn storage_contains(ds: &TestDs, needle: &[u8]) -> bool {
    let dump = format!("{:?}", ds.storage);
    let pattern = format!("{needle:?}");
    let inner = &pattern[1..pattern.len() - 1];
    dump.contains(inner)
}

#[test]
fn members_authenticate_each_other_while_the_hub_stores_only_pseudonyms() {
    let mut ds = TestDs::new("hub.example");
    let alice = User::new("alice", "a.example");
    let bob = User::new("bob", "b.example");
    let (mut alice_phone, wrapper_key) = alice_alone(&mut ds, &alice);
    let group_id = alice_phone.client.group_id();

    // Flow C: Alice adds her connection Bob (his connection key handed over), authenticating
    // his KeyPackage's identity link first; her first commit carries her own entry too.
    let mut bob_phone = bob.client("phone");
    let request = alice_phone.add_linked_request(
        LinkedAdd {
            added: vec![(bob_phone.key_package(), &bob.connection_key)],
            own: true,
        },
        &wrapper_key,
        ds.now_ms,
    );
    let out = ds.accept(&request);
    alice_phone.client.confirm_commit();
    TestDs::route(&out, &mut [&mut bob_phone.client]);
    assert_eq!(join(&mut ds, &mut bob_phone), wrapper_key);

    // Flow D: Alice's laptop joins by external commit, with the GroupInfo and wrapper key a
    // member handed it (a join link), and supplies its own entry.
    let mut alice_laptop = alice.client("laptop");
    let info = ds.group_info(&alice_phone.client, &group_id);
    let own = alice_laptop.own_entry(&wrapper_key, &group_id);
    let request =
        alice_laptop.external_join_request_with_aad(&info, add_aad_bytes(vec![own]).unwrap());
    let out = ds.accept(&request);
    TestDs::route(&out, &mut [&mut alice_phone.client, &mut bob_phone.client]);
    alice_phone.client.process_inbox();
    bob_phone.client.process_inbox();

    // Every member authenticates every other member's real identity from what the hub serves.
    let members = [&alice_phone, &bob_phone, &alice_laptop];
    for member in members {
        let links = links(&mut ds, member);
        assert_eq!(links.epoch, member.client.epoch());
        let authenticated = authenticate_members(member.client.group(), &links, &wrapper_key);
        assert_eq!(authenticated.len(), 2);
        for (leaf, result) in authenticated {
            let expected = members
                .iter()
                .find(|m| m.client.leaf() == leaf)
                .expect("a member at that leaf");
            let real = result.unwrap_or_else(|e| panic!("leaf {leaf}: {e}"));
            assert_eq!(real.credential, expected.real_credential);
            assert_eq!(real.signature_key, expected.real_signer.to_public_vec());
        }
    }

    // The hub's storage holds none of the real identities: no real client URI, user name,
    // real credential or real signature key, in any record, replay mark or stored response.
    for member in members {
        let uri = member.real_credential.serialized_content().to_vec();
        assert!(!storage_contains(&ds, &uri), "a real client URI is stored");
        assert!(!storage_contains(
            &ds,
            &member.real_credential.tls_serialize_detached().unwrap()
        ));
        assert!(!storage_contains(&ds, &member.real_signer.to_public_vec()));
        // The pseudonyms are stored, as the hub needs them.
        assert!(storage_contains(
            &ds,
            member.pseudonymous.client_pseudonym.uri.as_slice()
        ));
    }
    for name in [&b"alice"[..], b"bob", b"/d/alice/", b"/d/bob/"] {
        assert!(
            !storage_contains(&ds, name),
            "{:?}",
            String::from_utf8_lossy(name)
        );
    }
    // Nor the wrapper key, nor any identity link key in the clear.
    assert!(!storage_contains(&ds, &wrapper_key));
    for member in members {
        assert!(!storage_contains(&ds, &member.identity_link_key.0));
    }

    // A removed member's entry goes with it (Bob's, between the others' leaves).
    let bob_leaf = bob_phone.client.leaf();
    assert!(bob_leaf < alice_laptop.client.leaf());
    let out = ds.accept(&alice_phone.client.remove_request(&[bob_leaf], ds.now_ms));
    alice_phone.client.confirm_commit();
    TestDs::route(&out, &mut [&mut alice_laptop.client]);
    alice_laptop.client.process_inbox();
    let after = links(&mut ds, &alice_laptop);
    assert_eq!(after.entries.get(bob_leaf as usize), Some(&None));
    let remaining = authenticate_members(alice_laptop.client.group(), &after, &wrapper_key);
    assert_eq!(remaining.len(), 1);
    assert!(remaining.iter().all(|(_, r)| r.is_ok()));
}

/// Alice alone in a room, and Bob's KeyPackage to add.
fn room_and_bob() -> (
    TestDs,
    PseudonymousClient,
    Vec<u8>,
    PseudonymousClient,
    User,
) {
    let mut ds = TestDs::new("hub.example");
    let alice = User::new("alice", "a.example");
    let bob = User::new("bob", "b.example");
    let (phone, wrapper_key) = alice_alone(&mut ds, &alice);
    let bob_phone = bob.client("phone");
    (ds, phone, wrapper_key, bob_phone, bob)
}

fn refused(ds: &mut TestDs, request: &[u8]) -> InvalidIdentityLinkKeys {
    match ds.reject(request, ErrorCode::InvalidMlsMessage) {
        RejectReason::InvalidMlsMessage(InvalidMlsMessage::IdentityLinkKeys(reason)) => reason,
        other => panic!("not an identity-link refusal: {other:?}"),
    }
}

/// Alice's commit adding Bob with `aad` as its authenticated data; refused with the reason.
fn add_with_aad(aad: Vec<u8>) -> InvalidIdentityLinkKeys {
    let (mut ds, mut alice, wrapper_key, bob, _) = room_and_bob();
    let request =
        alice.add_request_with_aad(vec![bob.key_package()], aad, &wrapper_key, true, ds.now_ms);
    alice.client.discard_commit();
    refused(&mut ds, &request)
}

fn entry(bytes: &[u8]) -> EncryptedIdentityLinkKey {
    EncryptedIdentityLinkKey {
        ciphertext: bytes.to_vec().into(),
    }
}

#[test]
fn an_add_without_identity_link_keys_is_refused() {
    assert_eq!(add_with_aad(Vec::new()), InvalidIdentityLinkKeys::Missing);
    // A SafeAAD with other components only.
    let other = encode(&SafeAad {
        aad_items: vec![SafeAadItem {
            component_id: 0x8000,
            aad_item_data: vec![1].into(),
        }],
    })
    .unwrap();
    assert_eq!(add_with_aad(other), InvalidIdentityLinkKeys::Missing);
}

#[test]
fn authenticated_data_that_is_not_a_safe_aad_is_refused() {
    assert!(matches!(
        add_with_aad(b"hello".to_vec()),
        InvalidIdentityLinkKeys::SafeAad(SafeAadError::Undecodable(_))
    ));
    let unordered = encode(&SafeAad {
        aad_items: vec![
            SafeAadItem {
                component_id: IDENTITY_LINK_KEYS_COMPONENT_ID,
                aad_item_data: encode(&AddAad {
                    encrypted_identity_link_keys: vec![entry(&[1; 48])],
                })
                .unwrap()
                .into(),
            },
            SafeAadItem {
                component_id: 0x8000,
                aad_item_data: Vec::new().into(),
            },
        ],
    })
    .unwrap();
    assert_eq!(
        add_with_aad(unordered),
        InvalidIdentityLinkKeys::SafeAad(SafeAadError::Unsorted {
            previous: IDENTITY_LINK_KEYS_COMPONENT_ID,
            next: 0x8000
        })
    );
    // Two AddAAD items, each well-formed: which one would the hub store? Neither.
    let add_aad = encode(&AddAad {
        encrypted_identity_link_keys: vec![entry(&[1; 48])],
    })
    .unwrap();
    let duplicated = encode(&SafeAad {
        aad_items: vec![
            SafeAadItem::new(IDENTITY_LINK_KEYS_COMPONENT_ID, add_aad.clone()),
            SafeAadItem::new(IDENTITY_LINK_KEYS_COMPONENT_ID, add_aad),
        ],
    })
    .unwrap();
    assert_eq!(
        add_with_aad(duplicated),
        InvalidIdentityLinkKeys::SafeAad(SafeAadError::Duplicate {
            component_id: IDENTITY_LINK_KEYS_COMPONENT_ID
        })
    );
}

#[test]
fn an_undecodable_add_aad_is_refused() {
    let aad = encode(&SafeAad {
        aad_items: vec![SafeAadItem {
            component_id: IDENTITY_LINK_KEYS_COMPONENT_ID,
            aad_item_data: vec![0x40].into(),
        }],
    })
    .unwrap();
    assert!(matches!(
        add_with_aad(aad),
        InvalidIdentityLinkKeys::AddAadUndecodable(_)
    ));
}

#[test]
fn identity_link_keys_not_one_per_add_are_refused() {
    let three = add_aad_bytes(vec![entry(&[1; 48]), entry(&[2; 48]), entry(&[3; 48])]).unwrap();
    assert_eq!(
        add_with_aad(three),
        InvalidIdentityLinkKeys::CountMismatch { adds: 1, got: 3 }
    );
    assert_eq!(
        add_with_aad(add_aad_bytes(Vec::new()).unwrap()),
        InvalidIdentityLinkKeys::CountMismatch { adds: 1, got: 0 }
    );
}

#[test]
fn an_empty_or_oversized_identity_link_key_is_refused() {
    assert_eq!(
        add_with_aad(add_aad_bytes(vec![entry(&[])]).unwrap()),
        InvalidIdentityLinkKeys::BadEntry
    );
    assert_eq!(
        add_with_aad(add_aad_bytes(vec![entry(&[7; 256])]).unwrap()),
        InvalidIdentityLinkKeys::BadEntry
    );
}

#[test]
fn an_identity_link_key_of_the_maximum_length_is_stored() {
    let (mut ds, mut alice, wrapper_key, bob, _) = room_and_bob();
    let longest = entry(&[7; MAX_ENCRYPTED_IDENTITY_LINK_KEY]);
    let request = alice.add_request_with_aad(
        vec![bob.key_package()],
        add_aad_bytes(vec![longest.clone()]).unwrap(),
        &wrapper_key,
        true,
        ds.now_ms,
    );
    let _ = ds.accept(&request);
    alice.client.confirm_commit();
    // Bob's leaf is leaf 1: the stored entry is the one sent, byte for byte.
    assert_eq!(links(&mut ds, &alice).entries[1], Some(longest));
}

#[test]
fn a_group_info_exposing_the_wrapper_key_to_the_hub_is_refused() {
    let (mut ds, mut alice, wrapper_key, bob, bob_user) = room_and_bob();
    let group_id = alice.client.group_id();
    let kp = bob.key_package();
    let (_, bob_entry) =
        PseudonymousClient::entry_for(&kp, &bob_user.connection_key, &wrapper_key, &group_id);
    let aad = add_aad_bytes(vec![bob_entry]).unwrap();
    // The GroupInfo for the hub keeps the Welcome's wrapper key extension.
    let request = alice.add_request_with_aad(vec![kp], aad, &wrapper_key, false, ds.now_ms);
    alice.client.discard_commit();
    assert_eq!(
        refused(&mut ds, &request),
        InvalidIdentityLinkKeys::WrapperKeyExposed
    );
}

#[test]
fn an_external_join_without_its_own_identity_link_key_is_refused() {
    let mut ds = TestDs::new("hub.example");
    let alice = User::new("alice", "a.example");
    let (alice_phone, _) = alice_alone(&mut ds, &alice);
    let group_id = alice_phone.client.group_id();
    let info = ds.group_info(&alice_phone.client, &group_id);
    let mut laptop = alice.client("laptop");
    let request = laptop.external_join_request_with_aad(&info, Vec::new());
    assert_eq!(refused(&mut ds, &request), InvalidIdentityLinkKeys::Missing);
    let mut laptop = alice.client("laptop");
    let two = add_aad_bytes(vec![entry(&[1; 48]), entry(&[2; 48])]).unwrap();
    let request = laptop.external_join_request_with_aad(&info, two);
    assert_eq!(
        refused(&mut ds, &request),
        InvalidIdentityLinkKeys::CountMismatch { adds: 1, got: 2 }
    );
}

#[test]
fn a_group_created_with_the_wrapper_key_in_its_group_info_is_refused() {
    use mimi_ds::testing::mls_bytes;
    use mimi_ds::testing::pseudonymous::wrapper_key_extension;
    use mimi_ds::wire::{CreateGroupRequest, DsRequestBody, RatchetTreeBytes};
    use openmls_traits::OpenMlsProvider as _;
    let mut ds = TestDs::new("hub.example");
    let mut phone = User::new("alice", "a.example").client("phone");
    let group_id = ds.request_group_id();
    phone.create_group(&group_id, &ds.external_sender, true);
    let group = phone.client.group();
    let group_info = group
        .export_group_info_with_additional_extensions(
            phone.client.provider.crypto(),
            &phone.client.signer,
            false,
            [wrapper_key_extension(&random_wrapper_key())],
        )
        .unwrap();
    let body = DsRequestBody::CreateGroup(CreateGroupRequest {
        group_id: group_id.clone().into(),
        group_info: mls_bytes(&group_info),
        ratchet_tree: RatchetTreeBytes::from_bytes(
            group
                .export_ratchet_tree()
                .tls_serialize_detached()
                .unwrap(),
        )
        .unwrap(),
    });
    let refusal = ds.reject_consuming_reservation(
        &phone.client.signed(body, ds.now_ms),
        ErrorCode::InvalidMlsMessage,
    );
    assert_eq!(
        refusal.reason,
        RejectReason::from(InvalidIdentityLinkKeys::WrapperKeyExposed)
    );
}
