//! Fanout destinations are chosen by group members (the `provider_domain` of their leaf's
//! queue configuration): `Fanout::check_destination` lets the embedder refuse addresses,
//! loopback names and providers outside its federation before any lookup, and
//! `Fanout::recipient_queues` lets it report the unreachable queues to the hub, which then
//! proposes removing the clients that use them. Real openmls clients throughout.

use mimi_ds::testing::{decode_response, TestClient, TestDs};
use mimi_ds::wire::DsResponseBody;
use mimi_ds::{DestinationRefusal, Fanout, HostNameError, HubEvent, Status};

const HUB: &str = "hub.example";
const FEDERATION: [&str; 2] = ["hub.example", "beta.example"];

fn federation(domain: &str) -> bool {
    FEDERATION.contains(&domain)
}

/// A client of `user` at `HUB` whose leaf points its queue at `domain`.
fn client_with_queue_at(user: &str, domain: &str) -> TestClient {
    let mut client = TestClient::new(user, "phone", HUB);
    client.queue.provider_domain = domain.as_bytes().to_vec().into();
    client
}

fn fanout_to<'a>(fanout: &'a [Fanout], destination: &str) -> &'a Fanout {
    fanout
        .iter()
        .find(|f| f.destination == destination)
        .unwrap_or_else(|| panic!("no fanout to {destination:?}"))
}

#[test]
fn members_choose_destinations_and_the_embedder_checks_them() {
    let mut ds = TestDs::new(HUB);
    let mut alice = TestClient::new("alice", "phone", HUB);
    let mut bob = TestClient::new("bob", "phone", "beta.example");
    // Members can name any bytes as their provider: the DS does not know the federation.
    let mut loopback = client_with_queue_at("mallory", "127.0.0.1");
    let mut with_port = client_with_queue_at("trudy", "beta.example:8080");
    let mut outsider = client_with_queue_at("eve", "gamma.example");
    let group_id = ds.create_group_with(
        &mut alice,
        &mut [&mut bob, &mut loopback, &mut with_port, &mut outsider],
    );

    let out = ds.process(&alice.message_request(b"hello", ds.now_ms));
    assert_eq!(out.status, Status::Accepted);
    assert_eq!(out.fanout.len(), 4, "{:?}", out.fanout);

    assert_eq!(
        fanout_to(&out.fanout, "beta.example").check_destination(&federation),
        Ok("beta.example")
    );
    assert_eq!(
        fanout_to(&out.fanout, "127.0.0.1").check_destination(&federation),
        Err(DestinationRefusal::HostName {
            destination: "127.0.0.1".into(),
            reason: HostNameError::NumericLastLabel,
        })
    );
    // The syntax check comes first: even a policy that allows everything refuses an address.
    let anything = |_: &str| true;
    assert!(matches!(
        fanout_to(&out.fanout, "beta.example:8080").check_destination(&anything),
        Err(DestinationRefusal::HostName {
            reason: HostNameError::InvalidByte(b':'),
            ..
        })
    ));
    assert_eq!(
        fanout_to(&out.fanout, "gamma.example").check_destination(&federation),
        Err(DestinationRefusal::NotAllowed {
            destination: "gamma.example".into()
        })
    );

    // Reporting the refused destinations' queues makes the hub propose removing their clients.
    let mut removals = 0;
    for fanout in &out.fanout {
        if fanout.check_destination(&federation).is_ok() {
            continue;
        }
        let queues = fanout.recipient_queues();
        assert_eq!(queues.len(), 1);
        assert_eq!(
            queues[0].provider_domain.as_slice(),
            fanout.destination.as_bytes()
        );
        for queue in queues {
            let event = HubEvent::QueueRejected(queue);
            let outcome = ds.handle_event(&group_id, &event);
            assert_eq!(
                outcome.status,
                Status::Accepted,
                "{:?}",
                decode_response(&outcome.response)
            );
            assert!(matches!(
                decode_response(&outcome.response).body,
                DsResponseBody::Accepted(_)
            ));
            // The hub's Remove proposal fans out to the members, the reachable ones included.
            assert!(outcome
                .fanout
                .iter()
                .any(|f| f.check_destination(&federation).is_ok()));
            removals += 1;
        }
    }
    assert_eq!(removals, 3);
}
