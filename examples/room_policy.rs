//! A room with an admin and an ordinary member, policed by the hub (docs/wire-format.md §15.1-
//! §15.4, §15.5-§15.6 for franking), with real openmls clients and an in-process hub.
//!
//! Alice creates the room with a policy (roles `banned`, `member`, `admin`; she is its admin)
//! and adds Bob and Carol as members. Carol sends a franked message that Bob verifies. Bob then
//! tries what only an admin may do: remove Carol, make himself admin, change the policy, delete
//! the room. The hub refuses each with `not_allowed` and the named rule, and stores nothing.
//! Alice lets members remove participants and promotes Bob; the same actions then succeed.
//!
//! ```text
//! cargo run --example room_policy
//! ```
//!
//! `tests/room_policy_example.rs` runs the same flow ([`run`]) and checks every answer.

use mimi_ds::franking::verify_frank_signature;
use mimi_ds::policy::capability::CAN_REMOVE_PARTICIPANT;
use mimi_ds::policy::RoomPolicy;
use mimi_ds::testing::franking::{mimi_content, test_franking_key};
use mimi_ds::testing::policy::{admin_policy, raw, user_uri, with_participant, ADMIN, MEMBER};
use mimi_ds::testing::{
    accepted_message, assert_rejected, decode_response, Received, TestClient, TestDs,
};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, ErrorCode, ReportedMessage,
    ServerFrankingContext, PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds::{NotAllowed, Outcome, RejectReason, Status};
use openmls_rust_crypto::RustCrypto;

/// One request of the run and the hub's answer: accepted, or refused with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// Who sent it.
    pub(crate) sender: &'static str,
    /// What it asked for.
    pub(crate) action: &'static str,
    /// `Ok` if the hub accepted it, else the named reason it gave.
    pub(crate) answer: Result<(), RejectReason>,
}

/// The hub, the three clients, the room's current policy, and the answers so far.
struct Room<'a> {
    ds: TestDs,
    alice: TestClient,
    bob: TestClient,
    carol: TestClient,
    policy: RoomPolicy,
    steps: Vec<Step>,
    say: &'a mut dyn FnMut(String),
}

/// Which client sends a request.
#[derive(Clone, Copy)]
enum Who {
    Alice,
    Bob,
    Carol,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Self::Alice => "alice",
            Self::Bob => "bob",
            Self::Carol => "carol",
        }
    }
}

impl Room<'_> {
    fn client(&mut self, who: Who) -> &mut TestClient {
        match who {
            Who::Alice => &mut self.alice,
            Who::Bob => &mut self.bob,
            Who::Carol => &mut self.carol,
        }
    }

    /// Sends `request` from `who` to the hub and prints the answer. A refusal must be
    /// `not_allowed` and leave the hub's storage byte-identical; the sender then drops its
    /// staged commit. An accepted commit is merged by its sender and delivered to the others.
    fn send(&mut self, who: Who, action: &'static str, request: &[u8]) -> Outcome {
        let before = self.ds.storage.clone();
        let out = self.ds.process(request);
        let answer = match out.status {
            Status::Accepted => {
                (self.say)(format!(
                    "{:>5} -> hub: {action}\n         accepted",
                    who.name()
                ));
                Ok(())
            }
            _ => {
                let error = assert_rejected(&out, ErrorCode::NotAllowed);
                assert!(self.ds.storage == before, "a refusal stores nothing");
                let reason = out.refusal.clone().expect("a refusal names its reason");
                let rule = match &reason {
                    RejectReason::NotAllowed(NotAllowed::RoomPolicy(rule)) => format!("{rule:?}"),
                    other => format!("{other:?}"),
                };
                (self.say)(format!(
                    "{:>5} -> hub: {action}\n         refused: {} ({rule}): {}",
                    who.name(),
                    error.code.name(),
                    String::from_utf8_lossy(error.description.as_slice()),
                ));
                Err(reason)
            }
        };
        self.steps.push(Step {
            sender: who.name(),
            action,
            answer,
        });
        out
    }

    /// [`Self::send`] for a staged commit: merged and delivered if accepted, dropped if not.
    fn commit(&mut self, who: Who, action: &'static str, request: &[u8]) {
        let out = self.send(who, action, request);
        if out.status != Status::Accepted {
            self.client(who).discard_commit();
            return;
        }
        self.client(who).confirm_commit();
        let mut others: Vec<&mut TestClient> = match who {
            Who::Alice => vec![&mut self.bob, &mut self.carol],
            Who::Bob => vec![&mut self.alice, &mut self.carol],
            Who::Carol => vec![&mut self.alice, &mut self.bob],
        };
        TestDs::route(&out, &mut others);
        for client in others {
            client.process_inbox();
        }
    }

    /// `who` commits `policy` (a GroupContextExtensions proposal carrying it); if the hub
    /// accepts, it is the room's policy from then on.
    fn set_policy(&mut self, who: Who, action: &'static str, policy: RoomPolicy) {
        let now = self.ds.now_ms;
        let request = self
            .client(who)
            .policy_commit_request(&raw(&policy), |b| b, now);
        self.commit(who, action, &request);
        if self.steps.last().is_some_and(|s| s.answer.is_ok()) {
            self.policy = policy;
        }
    }

    /// Bob removes Carol's client.
    fn bob_removes_carol(&mut self) {
        let request = self
            .bob
            .remove_request(&[self.carol.leaf()], self.ds.now_ms);
        self.commit(Who::Bob, "remove carol's client", &request);
    }

    /// Bob deletes the room (`delete_group`: a commit removing every other member).
    fn bob_deletes_the_room(&mut self) {
        let request = self.bob.delete_group_request(self.ds.now_ms);
        self.commit(Who::Bob, "delete the room", &request);
    }

    /// `policy` with `canRemoveParticipant` given to members too (or taken back).
    fn members_may_remove(&self, allowed: bool) -> RoomPolicy {
        let mut policy = self.policy.clone();
        let member = policy
            .roles
            .roles
            .iter_mut()
            .find(|r| r.role_index == MEMBER)
            .expect("the member role");
        member
            .role_capabilities
            .retain(|c| *c != CAN_REMOVE_PARTICIPANT);
        if allowed {
            member.role_capabilities.push(CAN_REMOVE_PARTICIPANT);
        }
        policy
    }
}

/// Joins `joiner` from the Welcome in its inbox, with the tree from the hub's `welcome_info`.
fn join(ds: &mut TestDs, joiner: &mut TestClient) {
    let Some(Received::Welcome(welcome)) = joiner.process_inbox().pop() else {
        panic!("no Welcome for {}", joiner.name)
    };
    let (request, processed) = joiner.welcome_info_request(&welcome, ds.now_ms);
    let DsResponseBody::WelcomeInfo(info) = decode_response(&ds.process(&request).response).body
    else {
        panic!("welcome_info refused for {}", joiner.name)
    };
    joiner.join_with_tree(processed, &info.ratchet_tree);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the whole story, printing a transcript line by line through `say`, and returns the
/// hub's answer to every request Alice, Bob and Carol sent after the room was created.
pub(crate) fn run(say: &mut dyn FnMut(String)) -> Vec<Step> {
    let mut ds = TestDs::new("hub.example").franking_with(test_franking_key(7));
    let mut alice = TestClient::new("alice", "alice-phone", "a.example");
    let bob = TestClient::new("bob", "bob-phone", "b.example");
    let carol = TestClient::new("carol", "carol-phone", "c.example");

    // The room starts with Alice alone, as its admin.
    let policy = admin_policy(&[&alice], &[]);
    let group_id = ds.create_policy_room(&mut alice, &mut [], &policy);
    say("alice -> hub: create the room with a policy".into());
    say("         roles: 1 banned (nothing), 2 member (add/remove own clients),".into());
    say("                3 admin (everything; may promote members and ban them)".into());
    say("         participants: alice = admin".into());
    let mut room = Room {
        ds,
        alice,
        bob,
        carol,
        policy,
        steps: Vec::new(),
        say,
    };

    // Alice adds Bob and Carol: the participant-list entries and the MLS Adds in one commit.
    let mut policy = with_participant(&room.policy, &room.bob, MEMBER);
    policy = with_participant(&policy, &room.carol, MEMBER);
    let key_packages = [
        room.bob.policy_key_package(),
        room.carol.policy_key_package(),
    ];
    let now = room.ds.now_ms;
    let request =
        room.alice
            .policy_commit_request(&raw(&policy), |b| b.propose_adds(key_packages), now);
    let out = room.send(
        Who::Alice,
        "add bob and carol as members (participant list + MLS Adds)",
        &request,
    );
    room.alice.confirm_commit();
    room.policy = policy;
    TestDs::route(&out, &mut [&mut room.bob, &mut room.carol]);
    join(&mut room.ds, &mut room.bob);
    join(&mut room.ds, &mut room.carol);
    (room.say)("  bob, carol: joined from the Welcome".into());

    // Carol sends a franked message; Bob checks the hub's frank and that a report verifies.
    let content = mimi_content([0xca; 16], "hello, room");
    let request = room.carol.franked_message_request(&content, room.ds.now_ms);
    let out = room.send(Who::Carol, "send a franked message", &request);
    let frank = accepted_message(&out).frank.expect("the hub franked it");
    (room.say)(format!(
        "         server frank {}",
        hex(&frank.server_frank)
    ));
    TestDs::route(&out, &mut [&mut room.alice, &mut room.bob]);
    room.alice.process_inbox();
    let delivered = room.bob.inbox[0].clone();
    let Some(Received::Application(plaintext)) = room.bob.process_inbox().pop() else {
        panic!("no message for bob")
    };
    let context = ServerFrankingContext {
        sender_uri: user_uri(&room.carol).into(),
        room_uri: group_id.into(),
        accepted_timestamp: delivered.accepted_time_ms,
    };
    let key_request = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::SignaturePublicKey,
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode");
    let DsResponseBody::SignaturePublicKey(hub_key) =
        decode_response(&room.ds.process(&key_request).response).body
    else {
        panic!("the hub's key")
    };
    let frank = delivered.frank.expect("the fanout carries the frank");
    verify_frank_signature(&RustCrypto::default(), hub_key.as_slice(), &frank, &context)
        .expect("the hub signed it");
    room.ds
        .ds
        .verify_reported_message(&ReportedMessage {
            application_data: plaintext.into(),
            context,
            frank,
        })
        .expect("a genuine report verifies");
    (room.say)("  bob: the frank's signature verifies with the hub's public key".into());
    (room.say)("  hub: bob's abuse report of the message verifies against the frank".into());

    // Bob, an ordinary member, tries what only an admin may do.
    (room.say)(String::new());
    room.bob_removes_carol();
    let promoted = with_participant(&room.policy, &room.bob, ADMIN);
    room.set_policy(Who::Bob, "make himself admin", promoted);
    let relaxed = room.members_may_remove(true);
    room.set_policy(Who::Bob, "let members remove participants", relaxed);
    room.bob_deletes_the_room();

    // The admin changes the policy; Bob's removal of Carol now succeeds.
    (room.say)(String::new());
    let relaxed = room.members_may_remove(true);
    room.set_policy(Who::Alice, "let members remove participants", relaxed);
    room.bob_removes_carol();

    // The admin promotes Bob; as admin he changes the policy back and deletes the room.
    (room.say)(String::new());
    let promoted = with_participant(&room.policy, &room.bob, ADMIN);
    room.set_policy(Who::Alice, "promote bob to admin", promoted);
    let strict = room.members_may_remove(false);
    room.set_policy(Who::Bob, "take removal back from members", strict);
    room.bob_deletes_the_room();

    let refused = room.steps.iter().filter(|s| s.answer.is_err()).count();
    (room.say)(format!(
        "\n{} requests: {} accepted, {refused} refused with not_allowed",
        room.steps.len(),
        room.steps.len() - refused
    ));
    room.steps
}

fn main() {
    let steps = run(&mut |line| println!("{line}"));
    assert!(steps.iter().any(|s| s.answer.is_err()));
}
