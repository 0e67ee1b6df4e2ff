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
