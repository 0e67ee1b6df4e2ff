//! The demo's flow (`examples/support/flow.rs`) over loopback HTTPS, as a test: two providers
//! on 127.0.0.1 with TLS 1.3 and mutual TLS between them, real openmls clients, every
//! message fetched from a real queue. The flow itself asserts each step; here the totals are
//! checked too.

#[path = "../examples/support/mod.rs"]
mod support;

#[test]
fn the_whole_group_life_runs_over_https() {
    let mut transcript = Vec::new();
    let summary = support::flow::run(&mut transcript);
    let transcript = String::from_utf8(transcript).unwrap();
    // Messages: Alice's two, Bob's two; each decrypted by every other member present.
    // "Hi Bob!" x2, "Hi Alice" x2, "Back again." x3, "Anyone there?" x2 (the wiped laptop
    // never gets it).
    assert_eq!(summary.decrypted, 9, "{transcript}");
    // One queue rejected by beta for a message, once more for the commit that removed it.
    assert!(summary.rejected_queues >= 1, "{transcript}");
    assert_eq!(summary.final_members, 2, "Alice's two clients remain");
    assert!(summary.fanouts > 0 && summary.enqueued >= summary.fetched);
    assert!(
        summary.served_requests > summary.client_requests,
        "the hub called beta too"
    );
    assert!(transcript.contains("POST https://beta.example/queue_operation"));
}

/// The example provider checks every fanout destination (chosen by group members) before its
/// directory lookup: a name outside its federation, or an address, is never resolved or
/// called, even when the directory would resolve it, and its queues go back to the hub.
#[test]
fn the_example_provider_never_calls_destinations_it_does_not_know() {
    use std::collections::HashMap;
    use std::io::ErrorKind;
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;

    use mimi_ds::testing::{TestClient, TestDs};
    use mimi_ds::Status;
    use support::flow::{ALPHA, BETA};
    use support::https::Pki;
    use support::node::Provider;

    let pki = Pki::new(&[ALPHA, BETA]).unwrap();
    let alpha = Provider::start(&pki, ALPHA, true, &[ALPHA, BETA]).unwrap();
    // Bait: a listener the directory would resolve both names to.
    let bait = TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let directory = HashMap::from([
        (ALPHA.to_string(), alpha.addr()),
        ("evil.example".to_string(), bait.local_addr().unwrap()),
        ("127.0.0.1".to_string(), bait.local_addr().unwrap()),
    ]);
    alpha.connect(&pki, &directory);

    // Real fanout, from a group whose members point their queues there.
    let mut ds = TestDs::new(ALPHA);
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    let mut eve = TestClient::new("eve", "phone", ALPHA);
    eve.queue.provider_domain = b"evil.example".to_vec().into();
    let mut mallory = TestClient::new("mallory", "phone", ALPHA);
    mallory.queue.provider_domain = b"127.0.0.1".to_vec().into();
    ds.create_group_with(&mut alice, &mut [&mut eve, &mut mallory]);
    let out = ds.process(&alice.message_request(b"hi", ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
    let foreign: Vec<_> = out
        .fanout
        .into_iter()
        .filter(|f| f.destination != ALPHA)
        .collect();
    assert_eq!(foreign.len(), 2);

    alpha.deliver_fanout(foreign);
    let counters = alpha.counters();
    assert_eq!(counters.refused_destinations.load(Ordering::Relaxed), 2);
    assert_eq!(
        counters.fanouts.load(Ordering::Relaxed),
        0,
        "nothing was sent"
    );
    // Each refused queue became a hub event (this hub does not know the group; a real one
    // proposes removing the clients).
    assert_eq!(counters.rejected_queues.load(Ordering::Relaxed), 2);
    assert_eq!(
        bait.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the bait was called"
    );
}
