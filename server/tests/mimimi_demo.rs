//! The MIMIMI example over HTTPS (`examples/mimimi`) as a test: two mimi-ds-server providers
//! on loopback HTTPS with SQLite files, real openmls clients. After the run, every row of
//! every table of both providers' files (hub, Queueing Service, KeyPackage directory,
//! connection keys and inboxes) is searched for the users' real identifiers: names and user
//! IDs, the real credentials' identities, the real signature keys, connection keys and
//! tokens, upload secrets and the room's wrapper key. Positive controls show the search finds
//! what is legitimately stored there.

// The example's modules, each at the crate root as in the example.
#![allow(dead_code, unreachable_pub)]

mod support;

#[path = "../examples/mimimi/flow.rs"]
mod flow;
#[path = "../examples/demo/net.rs"]
mod net;
#[path = "../examples/demo/pki.rs"]
mod pki;
#[path = "../examples/demo/providers.rs"]
mod providers;

use mimi_ds::testing::connection::debug_dump_contains;
use providers::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mimimi_flow_over_https_stores_no_real_identifier() {
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        dir: dir.path().to_path_buf(),
        postgres: None,
        hub_instances: 1,
        open_joins: true,
    };
    let mut transcript = Vec::new();
    let demo = tokio::time::timeout(support::TEST_DEADLINE, flow::run(&options, &mut transcript))
        .await
        .expect("within the deadline")
        .expect("the flow runs");
    let transcript = String::from_utf8(transcript).expect("text");
    // Every step ran over HTTPS, the request was opened, and the hub (run with
    // `--external-joins anyone --group-info-access anyone`) accepted Bob's anonymous GroupInfo
    // fetch and his acceptance by external commit, whose response Alice opened.
    for expected in [
        "POST https://beta.example/connection_operation",
        "POST https://beta.example/connection_key",
        "POST https://beta.example/key_package_upload",
        "POST https://beta.example/connection_request",
        "opened it: from mimi://alpha.example/d/alice.smith/phone (signature verified)",
        "joined by external commit with",
        "alice's phone opened it: mimi://beta.example/d/bob.jones/phone accepted (signature verified)",
        "POST https://alpha.example/group_key_packages",
        "alice's phone: leaf 0 = mimi://beta.example/d/bob.jones/phone, leaf 2 = mimi://alpha.example/d/alice.smith/laptop",
        "bob's phone: leaf 1 = mimi://alpha.example/d/alice.smith/phone, leaf 2 = mimi://alpha.example/d/alice.smith/laptop",
    ] {
        assert!(transcript.contains(expected), "{expected}\n{transcript}");
    }

    assert_eq!(demo.decrypted, 3, "every message read by every recipient");
    assert_eq!(demo.accepted_by, "mimi://beta.example/d/bob.jones/phone");
    let stored: Vec<(&str, String)> = demo
        .storage
        .iter()
        .map(|storage| {
            let path = storage.sqlite_path().expect("SQLite");
            (storage.domain, support::dump(path).join("\n"))
        })
        .collect();
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for user in &demo.users {
        secrets.push((
            format!("{}'s name", user.name),
            user.name.clone().into_bytes(),
        ));
        secrets.push((format!("{}'s user ID", user.name), user.user_id()));
        secrets.push((
            format!("{}'s connection key", user.name),
            user.connection_key.clone(),
        ));
        secrets.push((
            format!("{}'s connection token", user.name),
            user.connection_token.clone(),
        ));
        secrets.push((
            format!("{}'s upload secret", user.name),
            user.upload_secret.clone(),
        ));
    }
    for real in &demo.real_clients {
        let name = String::from_utf8_lossy(&real.identity()).into_owned();
        secrets.push((format!("{name}: credential identity"), real.identity()));
        secrets.push((format!("{name}: signature key"), real.signature_key()));
    }
    for key in &demo.wrapper_keys {
        secrets.push(("a wrapper key".into(), key.clone()));
    }
    for (domain, dump) in &stored {
        assert!(dump.len() > 1000, "{domain} stored something: {dump}");
        for (what, secret) in &secrets {
            assert!(
                !debug_dump_contains(dump, secret),
                "{domain}'s storage holds {what}"
            );
        }
    }

    // Positive controls: the search finds what the providers legitimately hold. beta stores
    // Bob's public connection-establishment key in the clear and his phone's client
    // pseudonym in the KeyPackage it keeps; alpha's hub the room creator's random name.
    let (alpha, beta) = (&stored[0].1, &stored[1].1);
    assert!(debug_dump_contains(beta, &demo.bob_public_key));
    assert!(debug_dump_contains(beta, &demo.client_pseudonyms[1]));
    assert!(debug_dump_contains(alpha, &demo.client_pseudonyms[0]));
}
