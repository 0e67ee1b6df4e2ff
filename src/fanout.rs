//! Fanout instructions: what the caller must deliver after a request was accepted.

use std::collections::BTreeMap;

use tls_codec::VLBytes;

use crate::destination::{check_host_name, shortened, DestinationPolicy, DestinationRefusal};
use crate::time::UnixTimeMs;
use crate::wire::{
    encode, ClientQueueConfig, FanoutMessage, MlsMessageBytes, QueueingServiceRequest,
    QueueingServiceResponse, Recipients, PROTOCOL_VERSION_MIMI_DS10,
};

/// One delivery to one provider's Queueing Service: a message and the queues of the recipient
/// clients at that provider (DS-03 batches per destination; draft-ietf-mimi-protocol `/notify`).
///
/// # The destination is chosen by group members
///
/// [`Fanout::destination`] is the `provider_domain` of the recipients' `ClientQueueConfig`,
/// which every member writes into its own leaf: the DS does not know which providers exist and
/// delivers wherever members point. Resolving it with DNS and connecting to it as it comes lets
/// any member make the hub call a host of its choosing, once per message: an internal service
/// (server-side request forgery), or a third party flooded with requests (amplification).
/// Before any lookup or connection, call [`Fanout::check_destination`] with the deployment's
/// [`DestinationPolicy`] (normally the providers it federates with), and resolve only through
/// the deployment's own directory of providers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Fanout {
    /// The provider to deliver to (its QS endpoint is the caller's business). Chosen by group
    /// members and unchecked: see [`Fanout::check_destination`] before resolving it.
    pub destination: String,
    /// The request to send it; [`Fanout::to_bytes`] encodes it.
    pub request: QueueingServiceRequest,
}

impl Fanout {
    /// The encoded `QueueingServiceRequest`.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding only fails for vectors over 2^30 bytes, which the request size limit rules
        // out; an empty result would be refused by any QS.
        encode(&self.request).unwrap_or_default()
    }

    /// Checks [`Fanout::destination`] before the caller resolves or connects to it: it must be a
    /// host name [`crate::check_host_name`] accepts (no IP address, port, path, loopback or
    /// single-label name), and `policy` must allow it. Returns the destination to deliver to.
    ///
    /// A refused delivery is the caller's to drop. It may also report every queue of
    /// [`Fanout::recipient_queues`] as [`crate::HubEvent::QueueRejected`], as for a Queueing
    /// Service that rejected them, so that the hub proposes removing clients that can never be
    /// reached.
    pub fn check_destination(
        &self,
        policy: &(impl DestinationPolicy + ?Sized),
    ) -> Result<&str, DestinationRefusal> {
        let destination = self.destination.as_str();
        check_host_name(destination).map_err(|reason| DestinationRefusal::HostName {
            destination: shortened(destination),
            reason,
        })?;
        if !policy.allows(destination) {
            return Err(DestinationRefusal::NotAllowed {
                destination: destination.to_owned(),
            });
        }
        Ok(destination)
    }

    /// The queue configuration of every recipient: [`Fanout::destination`] with each queue.
    pub fn recipient_queues(&self) -> Vec<ClientQueueConfig> {
        self.request
            .recipients
            .iter()
            .map(|queue| ClientQueueConfig {
                provider_domain: self.request.recipient_domain.clone(),
                queue: queue.clone(),
            })
            .collect()
    }

    /// The number of recipient clients.
    pub fn recipient_count(&self) -> usize {
        self.request.recipients.len()
    }

    /// The group the delivered message belongs to.
    pub fn group_id(&self) -> &[u8] {
        self.request.message.group_id.as_slice()
    }

    /// Closes the loop of wire-format.md §6.3: the queue configurations a Queueing Service's
    /// answer to this delivery rejected. Report each to the DS as
    /// [`crate::HubEvent::QueueRejected`] for [`Fanout::group_id`]; the DS then proposes
    /// removing the clients that use it. Indices outside `recipients` are ignored (a QS cannot
    /// reject what it was not sent).
    pub fn rejected_queues(&self, response: &QueueingServiceResponse) -> Vec<ClientQueueConfig> {
        // Full queues (`queue_full`) are temporary and not rejections.
        let indices = response.invalid_recipients();
        let mut rejected: Vec<ClientQueueConfig> = Vec::new();
        for index in indices {
            let Some(queue) = usize::try_from(index)
                .ok()
                .and_then(|i| self.request.recipients.get(i))
            else {
                continue;
            };
            let config = ClientQueueConfig {
                provider_domain: self.request.recipient_domain.clone(),
                queue: queue.clone(),
            };
            // A QS may name one queue twice; the hub needs one event per queue.
            if !rejected.contains(&config) {
                rejected.push(config);
            }
        }
        rejected
    }
}

/// Builds per-provider fanout for one message.
pub(crate) fn fan_out<'a>(
    ds_domain: &str,
    group_id: &[u8],
    sequence_number: u64,
    accepted_time: UnixTimeMs,
    message: &MlsMessageBytes,
    external_proposals: &[MlsMessageBytes],
    recipients: impl IntoIterator<Item = &'a ClientQueueConfig>,
) -> Vec<Fanout> {
    let mut by_provider: BTreeMap<&[u8], Vec<VLBytes>> = BTreeMap::new();
    for config in recipients {
        by_provider
            .entry(config.provider_domain.as_slice())
            .or_default()
            .push(config.queue.clone());
    }
    by_provider
        .into_iter()
        .map(|(provider, queues)| Fanout {
            destination: String::from_utf8_lossy(provider).into_owned(),
            request: QueueingServiceRequest {
                version: PROTOCOL_VERSION_MIMI_DS10,
                sender_domain: ds_domain.as_bytes().to_vec().into(),
                recipient_domain: provider.to_vec().into(),
                recipients: Recipients::new(queues),
                message: FanoutMessage {
                    group_id: group_id.to_vec().into(),
                    sequence_number,
                    accepted_time_ms: accepted_time.as_millis(),
                    message: message.clone(),
                    external_proposals: external_proposals.to_vec(),
                    frank: None,
                },
            },
        })
        .collect()
}

/// The recipients of a roster grouped per provider, in the order [`fan_out`] produces, so that
/// an application message's fanout refers to it instead of grouping again (wire-format.md
/// §16.2). Built once per roster version and shared through the group cache: a message's
/// fanout shares each provider's [`Recipients`] list, leaving the sender out by position.
#[derive(Debug, Clone, Default)]
pub(crate) struct PreparedFanout {
    blocks: Vec<ProviderBlock>,
    /// Per leaf: its block and its position there, if the leaf is occupied.
    slots: Vec<Option<(usize, usize)>>,
}

#[derive(Debug, Clone)]
struct ProviderBlock {
    provider: VLBytes,
    destination: String,
    queues: Recipients,
}

impl PreparedFanout {
    /// Groups `members` (leaf and queue configuration, in leaf order) per provider.
    pub(crate) fn new<'a>(members: impl IntoIterator<Item = (u32, &'a ClientQueueConfig)>) -> Self {
        let mut by_provider: BTreeMap<&[u8], Vec<(u32, &VLBytes)>> = BTreeMap::new();
        for (leaf, config) in members {
            by_provider
                .entry(config.provider_domain.as_slice())
                .or_default()
                .push((leaf, &config.queue));
        }
        let mut slots: Vec<Option<(usize, usize)>> = Vec::new();
        let blocks = by_provider
            .into_iter()
            .enumerate()
            .map(|(block, (provider, queues))| {
                for (position, (leaf, _)) in queues.iter().enumerate() {
                    let leaf = *leaf as usize;
                    if slots.len() <= leaf {
                        slots.resize(leaf + 1, None);
                    }
                    slots[leaf] = Some((block, position));
                }
                ProviderBlock {
                    provider: provider.to_vec().into(),
                    destination: String::from_utf8_lossy(provider).into_owned(),
                    queues: queues.into_iter().map(|(_, queue)| queue.clone()).collect(),
                }
            })
            .collect();
        Self { blocks, slots }
    }

    /// Estimated heap bytes, for the cache's bound.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Option<(usize, usize)>>()
            + self
                .blocks
                .iter()
                .map(|b| 2 * b.provider.as_slice().len() + b.queues.len() * 24 + 96)
                .sum::<usize>()
    }

    /// The fanout of one message to every member but `sender`: what [`fan_out`] returns for the
    /// same recipients. Its work grows with the number of providers, not of members: each
    /// delivery refers to its provider's prepared list, and the message's bytes are shared.
    pub(crate) fn fan_out(
        &self,
        ds_domain: &str,
        group_id: &[u8],
        sequence_number: u64,
        accepted_time: UnixTimeMs,
        message: &MlsMessageBytes,
        sender: u32,
    ) -> Vec<Fanout> {
        let skip = self.slots.get(sender as usize).copied().flatten();
        let sender_domain: VLBytes = ds_domain.as_bytes().to_vec().into();
        let group_id: VLBytes = group_id.to_vec().into();
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(index, block)| {
                let recipients = match skip {
                    Some((skip_block, position)) if skip_block == index => {
                        block.queues.without(position)
                    }
                    _ => block.queues.clone(),
                };
                if recipients.is_empty() {
                    return None;
                }
                Some(Fanout {
                    destination: block.destination.clone(),
                    request: QueueingServiceRequest {
                        version: PROTOCOL_VERSION_MIMI_DS10,
                        sender_domain: sender_domain.clone(),
                        recipient_domain: block.provider.clone(),
                        recipients,
                        message: FanoutMessage {
                            group_id: group_id.clone(),
                            sequence_number,
                            accepted_time_ms: accepted_time.as_millis(),
                            message: message.clone(),
                            external_proposals: Vec::new(),
                            frank: None,
                        },
                    },
                })
            })
            .collect()
    }
}

#[cfg(all(test, feature = "test-utils"))]
mod tests {
    use super::*;
    use tls_codec::Serialize as _;

    fn config(provider: &str, queue: u8) -> ClientQueueConfig {
        ClientQueueConfig {
            provider_domain: provider.as_bytes().to_vec().into(),
            queue: vec![queue; 3].into(),
        }
    }

    /// The prepared fanout is the grouped one, for every sender, including a sender alone at
    /// its provider and blank leaves.
    #[test]
    fn prepared_fanout_equals_grouping_for_every_sender() {
        let members: Vec<Option<ClientQueueConfig>> = vec![
            Some(config("b.example", 0)),
            None,
            Some(config("a.example", 2)),
            Some(config("b.example", 3)),
            Some(config("c.example", 4)),
            None,
            Some(config("b.example", 6)),
        ];
        let occupied = || {
            members
                .iter()
                .enumerate()
                .filter_map(|(leaf, m)| m.as_ref().map(|m| (leaf as u32, m)))
        };
        let prepared = PreparedFanout::new(occupied());
        let key_package = crate::testing::TestClient::new("u", "c", "a.example").key_package();
        let bytes = openmls::prelude::MlsMessageOut::from(key_package)
            .tls_serialize_detached()
            .expect("encodes");
        let message = MlsMessageBytes::from_bytes(bytes).expect("an MLSMessage");
        for sender in 0..9u32 {
            let expected = fan_out(
                "hub.example",
                b"group",
                7,
                UnixTimeMs(5),
                &message,
                &[],
                occupied()
                    .filter(|(leaf, _)| *leaf != sender)
                    .map(|(_, m)| m),
            );
            let got = prepared.fan_out("hub.example", b"group", 7, UnixTimeMs(5), &message, sender);
            assert_eq!(got, expected, "sender {sender}");
        }
    }
}
