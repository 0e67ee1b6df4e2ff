//! Groups of real openmls clients spread over two providers, for the tests that run the server
//! binary: queues, group creation, joins, and catching up on the queue, all through a
//! [`Transport`] that the test chooses (several hub instances, or one that gets killed).

#![allow(async_fn_in_trait)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mimi_ds::testing::{Received, TestClient};
use mimi_ds::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, FanoutMessage,
    PROTOCOL_VERSION_MIMI_DS10,
};
use openmls::prelude::ExternalSender;

use super::ledger::{answer_of, Answer, Ledger};
use super::{now_ms, provider_of, ALPHA};

/// How a test reaches its servers.
pub trait Transport {
    /// POSTs `body` to a server of `domain` and returns its answer, resending the same bytes
    /// as long as an answer is lost (wire-format.md §3.4).
    async fn post(&self, domain: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>);

    /// Fetches and acknowledges what the client's queue holds, unprocessed.
    async fn fetch(&self, client: &mut TestClient) -> Vec<FanoutMessage>;

    /// What to show when a check fails (the servers' logs).
    async fn diagnostics(&self) -> String {
        String::new()
    }
}

/// A group: its ID and its members, by client index.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: Vec<u8>,
    pub members: Vec<usize>,
}

/// Clients, their groups, what they fetched and the ledger of the hub's answers.
#[derive(Default)]
pub struct World {
    pub clients: Vec<TestClient>,
    /// Everything client `i` ever fetched, in the order its queue gave it.
    pub received: Vec<Vec<FanoutMessage>>,
    /// What client `i` processed: `(sequence number, message)`.
    processed: Vec<HashSet<(u64, Vec<u8>)>>,
    pub groups: Vec<Group>,
    pub ledger: Ledger,
    /// Accepted requests that carry a `ClientSignature`: each left one replay mark (§3.4).
    pub signed_accepted: usize,
}

impl World {
    /// `groups` groups; group `g`'s members have their queues at `domains` in order (the
    /// first, at the hub's domain, creates the group and adds the others in one commit).
    pub async fn build(
        transport: &impl Transport,
        hub: &ExternalSender,
        groups: usize,
        domains: &[&str],
    ) -> Self {
        let mut world = Self::default();
        for g in 0..groups {
            let mut members = Vec::new();
            for (i, domain) in domains.iter().enumerate() {
                let mut client = TestClient::new(&format!("user{g}x{i}"), "device", domain);
                let (status, body) = transport
                    .post(
                        domain,
                        "/queue_operation",
                        client.create_queue_request(now_ms()),
                    )
                    .await;
                assert_eq!(status, 200, "create_queue");
                client.use_queue(&body, ALPHA);
                members.push(world.clients.len());
                world.clients.push(client);
                world.received.push(Vec::new());
                world.processed.push(HashSet::new());
            }
            let id = world.create_group(transport, hub, &members).await;
            world.groups.push(Group { id, members });
        }
        world
    }

    async fn create_group(
        &mut self,
        transport: &impl Transport,
        hub: &ExternalSender,
        members: &[usize],
    ) -> Vec<u8> {
        let request = encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::RequestGroupId,
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode");
        let (status, body) = transport.post(ALPHA, "/group_operation", request).await;
        assert_eq!(status, 200, "request_group_id");
        let DsResponseBody::GroupId(id) = mimi_ds::testing::decode_response(&body).body else {
            panic!("no group ID");
        };
        let id = id.as_slice().to_vec();
        let (creator, joiners) = members.split_first().expect("members");
        self.clients[*creator].create_group(&id, hub);
        let request = self.clients[*creator].create_group_request(now_ms());
        let (status, _) = transport.post(ALPHA, "/group_operation", request).await;
        assert_eq!(status, 200, "create_group");
        self.signed_accepted += 1;

        let key_packages = joiners
            .iter()
            .map(|&j| self.clients[j].key_package())
            .collect();
        let add = self.clients[*creator].add_request(key_packages, now_ms());
        let (status, body) = transport.post(ALPHA, "/group_operation", add.clone()).await;
        let Answer::Accepted(accepted) = answer_of(&body) else {
            panic!("add refused ({status})");
        };
        self.clients[*creator].confirm_commit();
        self.ledger
            .accept(&id, &add, accepted, *creator, &[*creator], joiners);
        self.signed_accepted += 1;

        for &joiner in joiners {
            let received = self.catch_up(transport, joiner).await;
            let welcome = received
                .iter()
                .find_map(|r| match r {
                    Received::Welcome(w) => Some(w.clone()),
                    _ => None,
                })
                .expect("a Welcome");
            let (request, processed) =
                self.clients[joiner].welcome_info_request(&welcome, now_ms());
            let (status, body) = transport.post(ALPHA, "/welcome_information", request).await;
            assert_eq!(status, 200, "welcome_info");
            let DsResponseBody::WelcomeInfo(info) = mimi_ds::testing::decode_response(&body).body
            else {
                panic!("welcome_info refused");
            };
            self.clients[joiner].join_with_tree(processed, &info.ratchet_tree);
            self.signed_accepted += 1;
        }
        id
    }

    /// Fetches until client `c` holds every delivery the ledger owes it (or panics after a
    /// while), then processes what it had not processed, in sequence order, with openmls.
    pub async fn catch_up(&mut self, transport: &impl Transport, c: usize) -> Vec<Received> {
        let owed = self.ledger.owed_keys(c);
        let started = Instant::now();
        loop {
            let fetched = transport.fetch(&mut self.clients[c]).await;
            self.received[c].extend(fetched);
            let have: HashSet<(u64, Vec<u8>)> = self.received[c]
                .iter()
                .map(|m| (m.sequence_number, m.message.as_bytes().to_vec()))
                .collect();
            if owed.is_subset(&have) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let missing: Vec<u64> = owed.difference(&have).map(|(n, _)| *n).collect();
                panic!(
                    "client {c} ({}): deliveries #{missing:?} missing after 30 s\n{}",
                    provider_of(&self.clients[c]),
                    transport.diagnostics().await
                );
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let mut new: Vec<FanoutMessage> = self.received[c]
            .iter()
            .filter(|m| {
                !self.processed[c].contains(&(m.sequence_number, m.message.as_bytes().to_vec()))
            })
            .cloned()
            .collect();
        new.sort_by_key(|m| m.sequence_number);
        let mut results = Vec::new();
        for message in new {
            // A duplicate is left for `Ledger::check_deliveries` to name; MLS would refuse it.
            if self.processed[c]
                .insert((message.sequence_number, message.message.as_bytes().to_vec()))
            {
                results.push(self.clients[c].receive(&message));
            }
        }
        results
    }

    /// Every member of group `g` at the same epoch with the same ratchet tree and epoch
    /// authenticator (after each caught up).
    pub fn assert_agree(&self, g: usize) {
        let group = &self.groups[g];
        let first = &self.clients[group.members[0]];
        for &m in &group.members[1..] {
            let other = &self.clients[m];
            assert_eq!(other.epoch(), first.epoch(), "group {g}: epochs differ");
            assert_eq!(
                tree_bytes(other),
                tree_bytes(first),
                "group {g}: ratchet trees differ"
            );
            assert_eq!(
                other.group().epoch_authenticator().as_slice(),
                first.group().epoch_authenticator().as_slice(),
                "group {g}: epoch authenticators differ"
            );
        }
    }
}

fn tree_bytes(client: &TestClient) -> Vec<u8> {
    tls_codec::Serialize::tls_serialize_detached(&client.group().export_ratchet_tree())
        .expect("encode")
}
