//! Runs the flow of `examples/room_policy.rs` (docs/wire-format.md §15.3) and checks the hub's
//! answer to every request: the ordinary member's four admin-only actions are refused with
//! `not_allowed` and the named rule (storage unchanged, checked inside the flow), and after the
//! admin's policy change and promotion the same actions are accepted.

#[allow(dead_code)]
#[path = "../examples/room_policy.rs"]
mod example;

use example::Step;
use mimi_ds::policy::PolicyViolation;
use mimi_ds::{NotAllowed, RejectReason};

fn refused(rule: PolicyViolation) -> Result<(), RejectReason> {
    Err(RejectReason::NotAllowed(NotAllowed::RoomPolicy(rule)))
}

fn step(sender: &'static str, action: &'static str, answer: Result<(), RejectReason>) -> Step {
    Step {
        sender,
        action,
        answer,
    }
}

#[test]
fn the_member_is_refused_what_only_an_admin_may_do_until_the_admin_allows_it() {
    let mut transcript = Vec::new();
    let steps = example::run(&mut |line| transcript.push(line));
    let expected = vec![
        step(
            "alice",
            "add bob and carol as members (participant list + MLS Adds)",
            Ok(()),
        ),
        step("carol", "send a franked message", Ok(())),
        step(
            "bob",
            "remove carol's client",
            refused(PolicyViolation::RemoveParticipant),
        ),
        step(
            "bob",
            "make himself admin",
            refused(PolicyViolation::ChangeOwnRole),
        ),
        step(
            "bob",
            "let members remove participants",
            refused(PolicyViolation::ChangePolicy),
        ),
        step(
            "bob",
            "delete the room",
            refused(PolicyViolation::DestroyRoom),
        ),
        step("alice", "let members remove participants", Ok(())),
        step("bob", "remove carol's client", Ok(())),
        step("alice", "promote bob to admin", Ok(())),
        step("bob", "take removal back from members", Ok(())),
        step("bob", "delete the room", Ok(())),
    ];
    assert_eq!(steps, expected);
    // The transcript names the wire code and the rule of each refusal.
    let refusals: Vec<&String> = transcript
        .iter()
        .filter(|l| l.contains("refused: not_allowed"))
        .collect();
    assert_eq!(refusals.len(), 4, "{transcript:#?}");
    for rule in [
        "RemoveParticipant",
        "ChangeOwnRole",
        "ChangePolicy",
        "DestroyRoom",
    ] {
        assert!(
            refusals.iter().any(|l| l.contains(&format!("({rule})"))),
            "{rule} in {transcript:#?}"
        );
    }
}
