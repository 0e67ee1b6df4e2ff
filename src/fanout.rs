//! Fanout instructions: what the caller must deliver after a request was accepted.

use std::collections::BTreeMap;

use tls_codec::VLBytes;

use crate::destination::{check_host_name, shortened, DestinationPolicy, DestinationRefusal};
use crate::time::UnixTimeMs;
use crate::wire::{
    encode, ClientQueueConfig, FanoutMessage, MlsMessageBytes, QueueingServiceRequest,
    QueueingServiceResponse, PROTOCOL_VERSION_MIMI_DS10,
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
                recipients: queues,
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
