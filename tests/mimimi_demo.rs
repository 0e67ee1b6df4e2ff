//! The MIMIMI demo (examples/mimimi.rs) as a test: the same flow runs, then everything both
//! providers stored (the hub's storage, both Queueing Services, both KeyPackage directories,
//! both connection stores) and every body one provider sent the other is searched for the
//! users' real identifiers and secrets (docs/privacy.md, docs/wire-format.md §14). None may be
//! there, with two exceptions the search must find where they belong: a queue ID at the
//! provider that holds the queue, and Bob's account name in his own provider's connection
//! store (he published his connection-establishment key under it; his provider knows its
//! users).

// The example at the root of a module: its `main` is not called, its items are `pub`.
#![allow(dead_code, unreachable_pub)]

#[path = "../examples/mimimi.rs"]
mod demo;

use demo::{ALPHA, BETA};
use mimi_ds::directory::token::directory_index;
use mimi_ds::testing::connection::debug_dump_contains;
use openmls_rust_crypto::RustCrypto;
use tls_codec::Serialize as _;

const HUB_STORAGE: &str = "hub storage";
const QS_STORAGE: &str = "Queueing Service storage";
const DIRECTORY: &str = "KeyPackage directory";
const CONNECTION_STORE: &str = "connection store";

#[test]
fn the_demo_runs_and_the_providers_store_none_of_the_real_identifiers() {
    let mut transcript = Vec::new();
    let demo = demo::run(&mut transcript).expect("the demo runs");
    let transcript = String::from_utf8(transcript).expect("text");
    assert_eq!(demo.decrypted, 3);
    // The members learned each other's real identities.
    for line in [
        "alice's phone: leaf 1 = mimi://beta.example/d/bob.jones/phone, \
         leaf 2 = mimi://alpha.example/d/alice.smith/laptop",
        "bob's phone: leaf 0 = mimi://alpha.example/d/alice.smith/phone, \
         leaf 2 = mimi://alpha.example/d/alice.smith/laptop",
    ] {
        assert!(transcript.contains(line), "{line}\n{transcript}");
    }

    // What no provider may hold, anywhere.
    let mut forbidden: Vec<(String, Vec<u8>)> = Vec::new();
    for user in [&demo.alice, &demo.bob] {
        let name = &user.name;
        forbidden.extend([
            (format!("{name}'s user ID"), user.user_id()),
            (
                format!("{name}'s connection key"),
                user.connection_key.clone(),
            ),
            (
                format!("{name}'s connection token"),
                user.connection_token.clone(),
            ),
            (
                format!("{name}'s upload secret"),
                user.upload_secret.clone(),
            ),
        ]);
    }
    for real in &demo.real_clients {
        let id = String::from_utf8_lossy(&real.identity()).into_owned();
        forbidden.extend([
            (format!("{id} (identity)"), real.identity()),
            (
                format!("{id} (credential)"),
                real.credential.tls_serialize_detached().expect("encode"),
            ),
            (format!("{id} (signature key)"), real.signature_key()),
        ]);
    }
    for (i, key) in demo.wrapper_keys.iter().enumerate() {
        forbidden.push((format!("wrapper key {i}"), key.clone()));
    }
    for (i, key) in demo.identity_link_keys.iter().enumerate() {
        forbidden.push((format!("identity-link key {i}"), key.clone()));
    }

    let providers = [(ALPHA, demo.alpha.stores()), (BETA, demo.beta.stores())];
    for (domain, stores) in &providers {
        for (store, dump) in stores {
            for (what, needle) in &forbidden {
                assert!(
                    !debug_dump_contains(dump, needle),
                    "{domain}'s {store} holds {what}"
                );
            }
            // A queue ID only at the Queueing Service that holds the queue.
            for (holder, queue_id) in &demo.queues {
                let home = domain == holder && *store == QS_STORAGE;
                assert_eq!(
                    debug_dump_contains(dump, queue_id),
                    home,
                    "{domain}'s {store} and a queue ID of {holder}"
                );
            }
            // An account name only where its user published its connection key.
            for user in [&demo.alice, &demo.bob] {
                let home =
                    *domain == BETA && *store == CONNECTION_STORE && user.name == "bob.jones";
                assert_eq!(
                    debug_dump_contains(dump, user.name.as_bytes()),
                    home,
                    "{domain}'s {store} and the account name {}",
                    user.name
                );
            }
        }
    }

    // The search finds what each store legitimately holds, so its silence above means
    // something: the client pseudonyms at the hub, Bob's token's directory index (a hash of
    // the token) in Bob's provider's directory.
    let store = |domain: &str, name: &str| -> String {
        let (_, stores) = providers
            .iter()
            .find(|(d, _)| *d == domain)
            .expect("provider");
        stores
            .iter()
            .find(|(n, _)| *n == name)
            .expect("store")
            .1
            .clone()
    };
    for pseudonym in &demo.client_pseudonyms {
        assert!(debug_dump_contains(&store(ALPHA, HUB_STORAGE), pseudonym));
    }
    let index = directory_index(&RustCrypto::default(), &demo.bob.connection_token).expect("hash");
    assert!(debug_dump_contains(&store(BETA, DIRECTORY), &index));
}
