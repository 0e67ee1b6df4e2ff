//! MIMIMI end to end, in process (docs/wire-format.md §14, docs/privacy.md): two users on two
//! providers connect, upload and claim KeyPackage sets, share a pseudonymous group with
//! identity links, and exchange messages through sealed queues. Every client is a real openmls
//! client; every request goes through a provider's `Router`. The transcript says, step by step,
//! what each party saw: the users learn each other's real identities, the hub and the
//! providers see pseudonyms and ciphertext.
//!
//! ```text
//! cargo run --example mimimi
//! ```
//!
//! `tests/mimimi_demo.rs` runs the same flow and searches everything the providers stored for
//! the users' real identifiers.

use std::io::{self, Write};

use mimi_ds::connection::{
    seal_connection_request, seal_connection_response, ConnectionEstablishmentKey,
    ConnectionResponder, RequestContents, ResponseContents,
};
use mimi_ds::directory::SetPurpose;
use mimi_ds::pseudonym::group_links::add_aad_bytes;
use mimi_ds::testing::connection::{pseudonymous_client, RealIdentity};
use mimi_ds::testing::directory::{claim_request, claimed_set};
use mimi_ds::testing::mimimi::{
    credential_identity, group_id_request, relay, short_hex, validated_key_package, MimimiProvider,
    MimimiUser,
};
use mimi_ds::testing::pseudonymous::{
    authenticate_members, random_wrapper_key, wrapper_key_of, LinkedAdd, PseudonymousClient,
};
use mimi_ds::testing::{decode_response, Received, TestClient, CIPHERSUITE};
use mimi_ds::wire::{encode, DsResponseBody, ExternalCommitInfo};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand as _;

/// Alice's provider; it also runs the hub.
pub const ALPHA: &str = "alpha.example";
/// The hub's domain (at Alice's provider).
pub const HUB: &str = "hub.alpha.example";
/// Bob's provider.
pub const BETA: &str = "beta.example";

/// What the run leaves behind: the providers with all they stored, and everything that must
/// not be found there.
pub struct Demo {
    /// Alice's provider, with the hub.
    pub alpha: MimimiProvider,
    /// Bob's provider.
    pub beta: MimimiProvider,
    /// Alice, with her secrets.
    pub alice: MimimiUser,
    /// Bob, with his.
    pub bob: MimimiUser,
    /// The real clients: Alice's phone and laptop, Bob's phone.
    pub real_clients: Vec<RealIdentity>,
    /// Every queue created, with the provider that holds it.
    pub queues: Vec<(&'static str, Vec<u8>)>,
    /// The wrapper keys of the connection room and of the group.
    pub wrapper_keys: Vec<Vec<u8>>,
    /// The identity-link keys of the group's members.
    pub identity_link_keys: Vec<Vec<u8>>,
    /// The client pseudonyms in the group, which the hub must hold.
    pub client_pseudonyms: Vec<Vec<u8>>,
    /// Application messages decrypted by their recipients.
    pub decrypted: usize,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn identity(credential: &openmls::prelude::Credential) -> String {
    credential_identity(credential)
}

fn ds_body(bytes: &[u8]) -> DsResponseBody {
    decode_response(bytes).body
}

fn request_group_id(hub: &mut MimimiProvider) -> Vec<u8> {
    let routed = hub.post("/group_operation", &group_id_request(), None);
    let DsResponseBody::GroupId(id) = ds_body(&routed.response.body) else {
        panic!("no group ID")
    };
    id.as_slice().to_vec()
}

fn external_commit_info(hub: &mut MimimiProvider, group_id: &[u8]) -> ExternalCommitInfo {
    let routed = hub.post(
        "/external_commit_information",
        &TestClient::group_info_request(group_id),
        None,
    );
    let DsResponseBody::ExternalCommitInfo(info) = ds_body(&routed.response.body) else {
        panic!("no GroupInfo")
    };
    info
}

/// `request` at the hub's `/group_operation`; panics unless accepted.
fn group_operation(hub: &mut MimimiProvider, request: &[u8]) -> mimi_ds::transport::Routed {
    let routed = hub.post("/group_operation", request, None);
    assert_eq!(
        routed.response.status,
        200,
        "{:?}",
        ds_body(&routed.response.body)
    );
    routed
}

fn queue_id(client: &TestClient) -> Vec<u8> {
    client
        .qs_queue
        .as_ref()
        .expect("a queue")
        .queue_id
        .as_slice()
        .to_vec()
}

fn destinations(delivered: &[(String, usize)]) -> String {
    delivered
        .iter()
        .map(|(to, size)| format!("{to} ({size} B)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the whole flow, writing the transcript to `out`; panics if any step fails.
pub fn run(out: &mut dyn Write) -> io::Result<Demo> {
    let crypto = RustCrypto::default();
    let mut alpha = MimimiProvider::new(ALPHA, Some(HUB));
    let mut beta = MimimiProvider::new(BETA, None);
    let alice = MimimiUser::new("alice.smith", ALPHA);
    let bob = MimimiUser::new("bob.jones", BETA);
    let alice_phone = alice.real_client("phone");
    let alice_laptop = alice.real_client("laptop");
    let bob_phone = bob.real_client("phone");
    let mut queues = Vec::new();

    writeln!(
        out,
        "{ALPHA} runs the hub {HUB}, a Queueing Service, a KeyPackage directory and \
         connection keys; {BETA} the last three."
    )?;
    for real in [&alice_phone, &alice_laptop, &bob_phone] {
        writeln!(out, "real client: {}", text(&real.identity()))?;
    }

    writeln!(out, "\n1. Bob publishes his connection-establishment key")?;
    let bob_key = ConnectionEstablishmentKey::derive(
        &crypto,
        CIPHERSUITE,
        &crypto.random_vec(32).expect("randomness"),
    )
    .expect("key");
    let now = beta.now();
    beta.connections
        .publish(
            now,
            &mut beta.conn_store,
            bob.name.as_bytes(),
            u16::from(CIPHERSUITE),
            bob_key.public_key(),
        )
        .expect("published");
    writeln!(
        out,
        "  bob -> {BETA} (logged in to his account): public key {}",
        short_hex(bob_key.public_key(), 8)
    )?;
    writeln!(
        out,
        "  {BETA} saw: its own user {:?} and a public key (it is Bob's provider)",
        bob.name
    )?;

    writeln!(
        out,
        "\n2. Bob's phone uploads a KeyPackage set under his connection token"
    )?;
    let bob_pseudonym = bob.pseudonym();
    let mut bob_member = PseudonymousClient::with_real_identity(&bob_phone, BETA, &bob_pseudonym);
    beta.create_queue(&mut bob_member.client, HUB);
    queues.push((BETA, queue_id(&bob_member.client)));
    let upload = bob.group_set_upload(&bob_member);
    let routed = beta.post("/key_package_upload", &upload, None);
    assert_eq!(routed.response.status, 200, "upload refused");
    writeln!(
        out,
        "  bob's phone: queue created at {BETA}, its ID sealed to {BETA} for the hub; \
         KeyPackage with user pseudonym {}, client pseudonym {}, and its identity link \
         encrypted under Bob's connection key",
        text(bob_pseudonym.uri.as_slice()),
        text(bob_member.pseudonymous.client_pseudonym.uri.as_slice()),
    )?;
    writeln!(
        out,
        "  bob's phone -> {BETA} /key_package_upload, no login: token, upload secret, one \
         KeyPackage ({} B)",
        upload.len()
    )?;
    writeln!(
        out,
        "  {BETA}'s directory saw: a token it stores only as a hash, and a set of pseudonymous \
         KeyPackages; no account, no name"
    )?;

    writeln!(out, "\n3. Alice fetches Bob's connection-establishment key")?;
    let bundle = beta
        .connections
        .fetch(&beta.conn_store, bob.name.as_bytes())
        .expect("in-memory storage")
        .expect("Bob published a key");
    writeln!(
        out,
        "  anyone -> {BETA}: key of {:?}? The public key, and Bob's inbox address sealed \
         afresh by {BETA} to itself ({} B of ciphertext)",
        bob.name,
        bundle.inbox.ciphertext.as_slice().len()
    )?;

    writeln!(out, "\n4. Alice opens a connection room at the hub")?;
    let mut alice_room = pseudonymous_client(ALPHA);
    alpha.create_queue(&mut alice_room, HUB);
    queues.push((ALPHA, queue_id(&alice_room)));
    let room_id = request_group_id(&mut alpha);
    alice_room.create_group(&room_id, alpha.external_sender.as_ref().expect("the hub"));
    let request = alice_room.create_group_request(alpha.now_ms);
    let _ = group_operation(&mut alpha, &request);
    writeln!(
        out,
        "  {HUB} saw: room {}, created by {}, a client with random names",
        text(&room_id),
        identity(&alice_room.credential.credential)
    )?;

    writeln!(out, "\n5. Alice sends a sealed ConnectionRequest")?;
    let room_wrapper_key = random_wrapper_key();
    let alice_signature_key = alice_phone.signature_key();
    let (pending, delivery) = seal_connection_request(
        &crypto,
        &crypto,
        &alice_phone.signer,
        &RequestContents {
            credential: &alice_phone.credential,
            signature_key: &alice_signature_key,
            connection_room_id: &room_id,
            identity_link_wrapper_key: &room_wrapper_key,
            connection_key: &alice.connection_key,
            connection_token: &alice.connection_token,
        },
        &bundle,
        ALPHA,
    )
    .expect("sealed");
    let body = encode(&delivery).expect("encode");
    alpha.relayed.push(body.clone());
    let routed = beta.post("/connection_request", &body, Some(ALPHA));
    assert_eq!(routed.response.status, 200, "connection request refused");
    writeln!(
        out,
        "  alice's phone: her real credential, key, connection key and token and the room ID, \
         signed with her real key, sealed to Bob's key"
    )?;
    writeln!(
        out,
        "  {ALPHA} -> {BETA} /connection_request ({} B): {ALPHA} saw that its user wrote to \
         some user of {BETA}",
        body.len()
    )?;
    writeln!(
        out,
        "  {BETA} saw: some user of {ALPHA} wrote {} B of ciphertext to the inbox the sealed \
         address names; it stored it in that inbox",
        delivery.sealed_request.ciphertext.as_slice().len()
    )?;

    writeln!(
        out,
        "\n6. Bob accepts by external commit, the response in its SafeAAD"
    )?;
    let stored = beta
        .connections
        .inbox(&beta.conn_store, bob.name.as_bytes(), 0, 10)
        .expect("Bob's inbox");
    let now = beta.now();
    beta.connections
        .acknowledge(
            now,
            &mut beta.conn_store,
            bob.name.as_bytes(),
            stored[0].sequence_number + 1,
        )
        .expect("acknowledged");
    let mut responder = ConnectionResponder::new(bob_key);
    let opened = responder
        .open(&crypto, BETA, &stored[0])
        .expect("the request opens and its signature verifies");
    writeln!(
        out,
        "  bob's phone opened it: from {} (signature verified), room {}",
        identity(&opened.request.requester_client_credential),
        text(opened.request.connection_room_id.as_slice())
    )?;
    let mut bob_room = pseudonymous_client(BETA);
    beta.create_queue(&mut bob_room, HUB);
    queues.push((BETA, queue_id(&bob_room)));
    let info = external_commit_info(&mut alpha, &room_id);
    let bob_signature_key = bob_phone.signature_key();
    let aad = seal_connection_response(
        &crypto,
        &bob_phone.signer,
        &opened,
        &ResponseContents {
            credential: &bob_phone.credential,
            signature_key: &bob_signature_key,
            connection_key: &bob.connection_key,
            connection_token: &bob.connection_token,
        },
    )
    .expect("sealed");
    let routed = group_operation(
        &mut alpha,
        &bob_room.external_join_request_with_aad(&info, aad.clone()),
    );
    bob_room.confirm_commit();
    let delivered = relay(&routed, HUB, &mut alpha, &mut [&mut beta]);
    writeln!(
        out,
        "  {HUB} saw: {} joined by external commit with {} B of authenticated data it cannot \
         open; fanout to {}",
        identity(&bob_room.credential.credential),
        aad.len(),
        destinations(&delivered)
    )?;

    writeln!(out, "\n7. Alice reads the response")?;
    let messages = alpha.fetch(&mut alice_room);
    let received = alice_room.receive_commit_with_aad(&messages[0]);
    let response = pending
        .open_response(&crypto, &received)
        .expect("the response opens and its signature verifies");
    assert_eq!(response.responder_client_credential, bob_phone.credential);
    let bob_connection_key = response.responder_connection_key.as_slice().to_vec();
    let bob_token = response.responder_connection_token.as_slice().to_vec();
    writeln!(
        out,
        "  alice's phone opened it: {} accepted (signature verified); each now holds the \
         other's connection key and token",
        identity(&response.responder_client_credential)
    )?;

    writeln!(out, "\n8. Alice claims one of Bob's KeyPackage sets")?;
    let claim_id = crypto.random_vec(16).expect("randomness");
    let routed = beta.post(
        "/group_key_packages",
        &claim_request(SetPurpose::Group, &bob_token, &claim_id),
        None,
    );
    assert_eq!(routed.response.status, 200, "claim refused");
    let set = claimed_set(&routed.response.body);
    writeln!(
        out,
        "  alice's phone -> {BETA} /group_key_packages, no login: Bob's token, a random claim ID"
    )?;
    writeln!(
        out,
        "  {BETA}'s directory saw: a claim under a token; it handed out and consumed the set of \
         {}; not who asked (beyond a network address) nor for which group",
        text(set.user_pseudonym.as_slice())
    )?;

    writeln!(
        out,
        "\n9. Alice creates a pseudonymous group and adds Bob with identity links"
    )?;
    let alice_pseudonym = alice.pseudonym();
    let mut alice_member =
        PseudonymousClient::with_real_identity(&alice_phone, ALPHA, &alice_pseudonym);
    alpha.create_queue(&mut alice_member.client, HUB);
    queues.push((ALPHA, queue_id(&alice_member.client)));
    let group_id = request_group_id(&mut alpha);
    let hub_sender = alpha.external_sender.clone().expect("the hub");
    alice_member.create_group(&group_id, &hub_sender, true);
    let request = alice_member.client.create_group_request(alpha.now_ms);
    let _ = group_operation(&mut alpha, &request);
    let wrapper_key = random_wrapper_key();
    let key_package = validated_key_package(&set.key_packages[0]);
    let (bob_seen, _) =
        PseudonymousClient::entry_for(&key_package, &bob_connection_key, &wrapper_key, &group_id);
    writeln!(
        out,
        "  alice's phone opened the identity link of Bob's KeyPackage with his connection key: \
         {} (signed by his real key)",
        identity(&bob_seen.credential)
    )?;
    let request = alice_member.add_linked_request(
        LinkedAdd {
            added: vec![(key_package, &bob_connection_key)],
            own: true,
        },
        &wrapper_key,
        alpha.now_ms,
    );
    let routed = group_operation(&mut alpha, &request);
    alice_member.client.confirm_commit();
    let delivered = relay(&routed, HUB, &mut alpha, &mut [&mut beta]);
    writeln!(
        out,
        "  {HUB} saw: group {} with leaves {} and {}, two identity-link keys wrapped under a \
         room key it never gets; Welcome to {}",
        text(&group_id),
        text(alice_member.pseudonymous.client_pseudonym.uri.as_slice()),
        text(bob_member.pseudonymous.client_pseudonym.uri.as_slice()),
        destinations(&delivered)
    )?;
    writeln!(
        out,
        "  {BETA}'s Queueing Service saw: {} B for a queue of its own, addressed by a sealed ID",
        delivered
            .iter()
            .filter(|(to, _)| to == BETA)
            .map(|(_, size)| size)
            .sum::<usize>()
    )?;

    writeln!(out, "\n10. Bob's phone joins from the Welcome")?;
    bob_member.client.inbox = beta.fetch(&mut bob_member.client);
    let Some(Received::Welcome(welcome)) = bob_member.client.process_inbox().pop() else {
        panic!("no Welcome for Bob")
    };
    let (request, processed) = bob_member
        .client
        .welcome_info_request(&welcome, alpha.now_ms);
    let bob_wrapper_key = wrapper_key_of(&processed).expect("the Welcome carries the room key");
    let routed = alpha.post("/welcome_information", &request, None);
    let DsResponseBody::WelcomeInfo(welcome_info) = ds_body(&routed.response.body) else {
        panic!("welcome_info refused")
    };
    bob_member
        .client
        .join_with_tree(processed, &welcome_info.ratchet_tree);
    writeln!(
        out,
        "  bob's phone joined at epoch {}; the room's wrapper key came in the Welcome",
        bob_member.client.epoch()
    )?;

    writeln!(
        out,
        "\n11. Alice's laptop joins by external commit with its own identity link"
    )?;
    let mut laptop = PseudonymousClient::with_real_identity(&alice_laptop, ALPHA, &alice_pseudonym);
    alpha.create_queue(&mut laptop.client, HUB);
    queues.push((ALPHA, queue_id(&laptop.client)));
    let info = external_commit_info(&mut alpha, &group_id);
    let own = laptop.own_entry(&wrapper_key, &group_id);
    let request =
        laptop.external_join_request_with_aad(&info, add_aad_bytes(vec![own]).expect("AddAAD"));
    let routed = group_operation(&mut alpha, &request);
    laptop.client.confirm_commit();
    let delivered = relay(&routed, HUB, &mut alpha, &mut [&mut beta]);
    alice_member.client.inbox = alpha.fetch(&mut alice_member.client);
    alice_member.client.process_inbox();
    bob_member.client.inbox = beta.fetch(&mut bob_member.client);
    bob_member.client.process_inbox();
    writeln!(
        out,
        "  alice's phone handed the laptop the room's wrapper key (a join link); {HUB} saw {} \
         join under Alice's user pseudonym, with its wrapped identity-link key; fanout to {}",
        text(laptop.pseudonymous.client_pseudonym.uri.as_slice()),
        destinations(&delivered)
    )?;

    writeln!(
        out,
        "\n12. Every member authenticates every other member's real identity"
    )?;
    let members = [&alice_member, &laptop, &bob_member];
    for (member, name, key) in [
        (&alice_member, "alice's phone", &wrapper_key),
        (&laptop, "alice's laptop", &wrapper_key),
        (&bob_member, "bob's phone", &bob_wrapper_key),
    ] {
        alpha.now_ms += 1;
        let request = member.identity_link_keys_request(alpha.now_ms);
        let routed = group_operation(&mut alpha, &request);
        let DsResponseBody::IdentityLinkKeys(links) = ds_body(&routed.response.body) else {
            panic!("no identity link keys")
        };
        let mut seen = Vec::new();
        for (leaf, result) in authenticate_members(member.client.group(), &links, key) {
            let real = result.unwrap_or_else(|e| panic!("{name}, leaf {leaf}: {e}"));
            let expected = members
                .iter()
                .find(|m| m.client.leaf() == leaf)
                .expect("a member at that leaf");
            assert_eq!(real.credential, expected.real_credential);
            assert_eq!(real.signature_key, expected.real_signer.to_public_vec());
            seen.push(format!("leaf {leaf} = {}", identity(&real.credential)));
        }
        writeln!(out, "  {name}: {}", seen.join(", "))?;
    }
    writeln!(
        out,
        "  {HUB} served only the wrapped keys: it cannot open them"
    )?;

    writeln!(out, "\n13. Messages through the queues")?;
    let mut decrypted = 0;
    let request = bob_member
        .client
        .message_request(b"Hi Alice!", alpha.now_ms);
    let routed = group_operation(&mut alpha, &request);
    let delivered = relay(&routed, HUB, &mut alpha, &mut [&mut beta]);
    for (member, name) in [(&mut alice_member, "phone"), (&mut laptop, "laptop")] {
        for message in alpha.fetch(&mut member.client) {
            let Received::Application(plaintext) = member.client.receive(&message) else {
                continue;
            };
            assert_eq!(plaintext, b"Hi Alice!");
            decrypted += 1;
            writeln!(out, "  alice's {name} read: {}", text(&plaintext))?;
        }
    }
    writeln!(
        out,
        "  {HUB} saw: {} B of PrivateMessage from a pseudonymous leaf; fanout to {}",
        request.len(),
        destinations(&delivered)
    )?;
    let request = laptop.client.message_request(b"Hi Bob!", alpha.now_ms);
    let routed = group_operation(&mut alpha, &request);
    relay(&routed, HUB, &mut alpha, &mut [&mut beta]);
    alpha.fetch(&mut alice_member.client).iter().for_each(|m| {
        let _ = alice_member.client.receive(m);
    });
    for message in beta.fetch(&mut bob_member.client) {
        if let Received::Application(plaintext) = bob_member.client.receive(&message) {
            assert_eq!(plaintext, b"Hi Bob!");
            decrypted += 1;
            writeln!(out, "  bob's phone read: {}", text(&plaintext))?;
        }
    }
    assert_eq!(decrypted, 3, "every message decrypted by every recipient");

    writeln!(out, "\nWhat each provider stored")?;
    for provider in [&alpha, &beta] {
        for (store, dump) in provider.stores() {
            writeln!(
                out,
                "  {}: {store}: {} B of text",
                provider.domain,
                dump.len()
            )?;
        }
    }
    writeln!(
        out,
        "  tests/mimimi_demo.rs searches all of it for the real names, credentials, keys, \
         tokens and queue IDs"
    )?;

    let identity_link_keys = [&alice_member, &laptop, &bob_member]
        .iter()
        .map(|m| m.identity_link_key.0.clone())
        .collect();
    let client_pseudonyms = [&alice_member, &laptop, &bob_member]
        .iter()
        .map(|m| m.pseudonymous.client_pseudonym.uri.as_slice().to_vec())
        .collect();
    Ok(Demo {
        alpha,
        beta,
        alice,
        bob,
        real_clients: vec![alice_phone, alice_laptop, bob_phone],
        queues,
        wrapper_keys: vec![room_wrapper_key, wrapper_key],
        identity_link_keys,
        client_pseudonyms,
        decrypted,
    })
}

#[allow(dead_code)] // The test includes this file for `run`.
fn main() -> io::Result<()> {
    run(&mut io::stdout().lock())?;
    Ok(())
}
