//! What the multi-instance and crash tests check: a ledger of the hub's answers, kept by the
//! clients, and the invariants every queue and every group must satisfy against it.
//!
//! * Per group, the accepted sequence numbers are exactly `0..n` (contiguous, no duplicate);
//!   commits in sequence order raise the epoch by one each; every other accepted message
//!   carries the epoch of the last commit before it (wire-format.md §5.2, §6.5).
//! * Every accepted message is in the queue of every recipient exactly once, and nothing
//!   else is in any queue: no message the hub did not accept, no message of a rejected request
//!   (§6.4, §10.2).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use mimi_ds::testing::TestClient;
use mimi_ds::wire::{
    decode_exact, AcceptedMessage, DsRequest, DsRequestBody, DsResponse, DsResponseBody, ErrorCode,
    FanoutMessage,
};

use super::{now_ms, provider_of, Net};

/// A request's MLS messages as its fanout carries them: the message, then the Welcomes.
pub fn messages_of(request: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let request = decode_exact::<DsRequest>(request).expect("a DSRequest");
    match request.body {
        DsRequestBody::Commits(commit) => (
            commit.group_update.commit.as_bytes().to_vec(),
            commit
                .welcome_messages
                .iter()
                .map(|w| w.as_bytes().to_vec())
                .collect(),
        ),
        DsRequestBody::SendMessage(message) => {
            (message.application_message.as_bytes().to_vec(), Vec::new())
        }
        other => panic!("not a commit or message: {other:?}"),
    }
}

/// The hub's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted(AcceptedMessage),
    Rejected(ErrorCode),
}

/// Reads a `DSResponse` body (any status).
pub fn answer_of(body: &[u8]) -> Answer {
    match decode_exact::<DsResponse>(body).expect("a DSResponse").body {
        DsResponseBody::Accepted(accepted) => Answer::Accepted(accepted),
        DsResponseBody::Error(error) => Answer::Rejected(error.code),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// One accepted commit or message, and who must receive what.
#[derive(Debug, Clone)]
pub struct Entry {
    pub group: Vec<u8>,
    pub accepted: AcceptedMessage,
    pub commit: bool,
    /// Each message the fanout carries (the commit or application message, then each
    /// Welcome) with its recipients, by client index.
    pub deliveries: Vec<(Vec<u8>, Vec<usize>)>,
}

/// The clients' record of what the hub accepted and refused.
#[derive(Debug, Default)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    /// The MLS messages of refused requests: none may reach any queue.
    pub refused: Vec<Vec<u8>>,
}

impl Ledger {
    /// Records an accepted commit or message sent by `sender` to `members` (client indexes, the
    /// sender among them); Welcomes go to `joiners`, in the order of the request's Welcomes
    /// (one Welcome for all of them, as openmls builds it).
    pub fn accept(
        &mut self,
        group: &[u8],
        request: &[u8],
        accepted: AcceptedMessage,
        sender: usize,
        members: &[usize],
        joiners: &[usize],
    ) {
        let decoded = decode_exact::<DsRequest>(request).expect("a DSRequest");
        let commit = matches!(decoded.body, DsRequestBody::Commits(_));
        let (message, welcomes) = messages_of(request);
        let mut deliveries = vec![(
            message,
            members.iter().copied().filter(|&m| m != sender).collect(),
        )];
        deliveries.extend(welcomes.into_iter().map(|w| (w, joiners.to_vec())));
        self.entries.push(Entry {
            group: group.to_vec(),
            accepted,
            commit,
            deliveries,
        });
    }

    /// Records a refused commit or message.
    pub fn refuse(&mut self, request: &[u8]) {
        let (message, welcomes) = messages_of(request);
        self.refused.push(message);
        self.refused.extend(welcomes);
    }

    /// What client `client` is owed: `(sequence number, message)` of each delivery.
    pub fn owed_keys(&self, client: usize) -> HashSet<(u64, Vec<u8>)> {
        self.entries
            .iter()
            .flat_map(|e| {
                e.deliveries
                    .iter()
                    .filter(|(_, recipients)| recipients.contains(&client))
                    .map(|(message, _)| (e.accepted.sequence_number, message.clone()))
            })
            .collect()
    }

    /// Sequence numbers contiguous from 0 without duplicates, epochs as §5.2 says.
    pub fn check_sequences(&self) {
        let mut by_group: BTreeMap<&[u8], Vec<&Entry>> = BTreeMap::new();
        for entry in &self.entries {
            by_group.entry(&entry.group).or_default().push(entry);
        }
        for (group, mut entries) in by_group {
            entries.sort_by_key(|e| e.accepted.sequence_number);
            let numbers: Vec<u64> = entries.iter().map(|e| e.accepted.sequence_number).collect();
            let expected: Vec<u64> = (0..entries.len() as u64).collect();
            assert_eq!(
                numbers,
                expected,
                "group {}: sequence numbers not contiguous from 0",
                hex(group)
            );
            let mut epoch = 0;
            for entry in entries {
                if entry.commit {
                    assert_eq!(
                        entry.accepted.epoch,
                        epoch + 1,
                        "group {}: commit #{} does not raise the epoch by one",
                        hex(group),
                        entry.accepted.sequence_number
                    );
                    epoch = entry.accepted.epoch;
                } else {
                    assert_eq!(
                        entry.accepted.epoch,
                        epoch,
                        "group {}: message #{} not in the epoch of the commit before it",
                        hex(group),
                        entry.accepted.sequence_number
                    );
                }
            }
        }
    }

    /// Every delivery owed arrived exactly once; nothing else arrived. `received[i]` is all
    /// that client `i` ever fetched.
    pub fn check_deliveries(&self, received: &[Vec<FanoutMessage>]) {
        type Key = (usize, Vec<u8>, u64, Vec<u8>);
        let mut owed: HashSet<Key> = HashSet::new();
        for entry in &self.entries {
            for (message, recipients) in &entry.deliveries {
                for &client in recipients {
                    let key = (
                        client,
                        entry.group.clone(),
                        entry.accepted.sequence_number,
                        message.clone(),
                    );
                    assert!(owed.insert(key), "one delivery owed twice");
                }
            }
        }
        let refused: HashSet<&[u8]> = self.refused.iter().map(Vec::as_slice).collect();
        let mut got: HashMap<Key, usize> = HashMap::new();
        for (client, messages) in received.iter().enumerate() {
            for message in messages {
                let bytes = message.message.as_bytes();
                assert!(
                    !refused.contains(bytes),
                    "client {client} got the message of a refused request (group {}, #{})",
                    hex(message.group_id.as_slice()),
                    message.sequence_number
                );
                let key = (
                    client,
                    message.group_id.as_slice().to_vec(),
                    message.sequence_number,
                    bytes.to_vec(),
                );
                assert!(
                    owed.contains(&key),
                    "client {client} got a message the hub never accepted for it (group {}, #{})",
                    hex(&key.1),
                    key.2
                );
                *got.entry(key).or_default() += 1;
            }
        }
        for key in &owed {
            let count = got.get(key).copied().unwrap_or(0);
            assert_eq!(
                count,
                1,
                "client {} got group {} #{} {count} times",
                key.0,
                hex(&key.1),
                key.2
            );
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Net {
    /// Fetches (and acknowledges) everything in the client's queue at `provider`, without
    /// processing it. `Err` if an answer was lost; fetching again is safe (a fetch starts at
    /// the client's `next_fetch`, an acknowledgement is idempotent, and what pages already
    /// brought waits in the client's inbox for the next call).
    pub async fn try_fetch_raw(
        &self,
        client: &mut TestClient,
        provider: SocketAddr,
    ) -> Result<Vec<FanoutMessage>, String> {
        let domain = provider_of(client);
        loop {
            let request = client.fetch_request(50, now_ms());
            let (status, body) = self
                .try_post(&domain, provider, "/queue_operation", request)
                .await?;
            if status != 200 {
                return Err(format!("fetch answered {status}"));
            }
            let (_, remaining) = client.take_page(&body);
            if remaining == 0 {
                break;
            }
        }
        let (status, _) = self
            .try_post(
                &domain,
                provider,
                "/queue_operation",
                client.ack_request(now_ms()),
            )
            .await?;
        if status != 200 {
            return Err(format!("acknowledge answered {status}"));
        }
        Ok(std::mem::take(&mut client.inbox))
    }
}
