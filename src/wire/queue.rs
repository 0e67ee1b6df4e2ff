//! What the DS hands to Queueing Services (wire-format.md §6; DS-00 §6 `QueueingServiceRequest`,
//! batched per destination provider as DS-03 and draft-ietf-mimi-protocol-06 `/notify` do).

use std::sync::Arc;

use tls_codec::{DeserializeBytes, Size, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use super::raw::MlsMessageBytes;
use super::response::ErrorCode;

/// The private-use LeafNode extension type (RFC 9420 §17.3, 0xF000–0xFFFF) in which a client
/// publishes its [`ClientQueueConfig`], in KeyPackages and leaf nodes alike.
pub const QUEUE_CONFIG_EXTENSION_TYPE: u16 = 0xF1D5;

/// `ClientQueueConfig`: where the DS fans out a client's messages. The `queue` bytes are opaque
/// to the DS (an HPKE-sealed queue ID under MIMIMI, docs/decisions.md D18); only the provider
/// reads them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ClientQueueConfig {
    /// The client's provider, which runs its Queueing Service.
    pub provider_domain: VLBytes,
    /// Opaque queue information for that provider.
    pub queue: VLBytes,
}

/// `FanoutMessage`: one accepted message, with the order and time the hub gave it.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct FanoutMessage {
    /// The group the message belongs to.
    pub group_id: VLBytes,
    /// Per-group sequence number (see [`super::AcceptedMessage`]).
    pub sequence_number: u64,
    /// Hub acceptance time, ms since the UNIX epoch.
    pub accepted_time_ms: u64,
    /// The MLS message, exactly as the DS accepted it.
    pub message: MlsMessageBytes,
    /// Proposals the DS issued in the epoch a commit creates, stapled to that commit so that no
    /// member can commit without seeing them (draft-ietf-mimi-protocol-06 `FanoutMessage`
    /// `externalProposals`). Empty for everything but such commits.
    pub external_proposals: Vec<MlsMessageBytes>,
    /// The hub's frank of a franked application message (draft-ietf-mimi-protocol-06
    /// `FanoutMessage` `optional<Frank>`; wire-format.md §15.5); `None` for everything else.
    pub frank: Option<super::Frank>,
}

/// `QueueingServiceRequest`: one message for one or more clients of one provider.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueueingServiceRequest {
    /// `DSProtocolVersion`.
    pub version: u16,
    /// The DS's domain.
    pub sender_domain: VLBytes,
    /// The receiving provider; it must check this names itself (forwarding-attack rule,
    /// draft-kohbrok-mimi-transport-00 §"Security").
    pub recipient_domain: VLBytes,
    /// The queues of the recipient clients, all at `recipient_domain`: a list shared by
    /// reference, so that a message's fanout does not copy it (wire-format.md §16.2).
    pub recipients: Recipients,
    /// The message.
    pub message: FanoutMessage,
}

/// The queues of a delivery's recipient clients, `QueueingServiceRequest.recipients`:
/// encoded exactly as a `Vec<VLBytes>` (`opaque queue<V>` elements in a `<V>` vector).
///
/// The list is immutable and shared by reference: cloning it copies a pointer, whatever its
/// length, and [`Recipients::without`] leaves one queue out without copying the others. The
/// hub prepares one list per provider once per roster version and every application message's
/// fanout refers to it (wire-format.md §16.2), so a message's work does not grow with the
/// group. To change a list, build a new one: `Recipients::from(vec)`, or
/// [`Recipients::to_vec`] to start from an existing one.
#[derive(Clone, Default)]
pub struct Recipients {
    /// The shared queues.
    queues: Arc<[VLBytes]>,
    /// A position of `queues` that is not in this list (the sender of an application message,
    /// who gets no copy of its own message).
    left_out: Option<usize>,
    /// The TLS-encoded length of this list's elements, without the vector's length prefix:
    /// known without visiting them, so that sizing a request does not grow with the list.
    content_len: usize,
}

impl Recipients {
    /// A list of these queues, in this order.
    pub fn new(queues: Vec<VLBytes>) -> Self {
        let content_len = queues.iter().map(Size::tls_serialized_len).sum();
        Self {
            queues: queues.into(),
            left_out: None,
            content_len,
        }
    }

    /// The same list without the queue at `index` (counted in this list), sharing the queues
    /// with `self`; the list unchanged if `index` is out of range. Leaving out a second queue
    /// copies the list.
    pub fn without(&self, index: usize) -> Self {
        let Some(removed) = self.get(index) else {
            return self.clone();
        };
        if self.left_out.is_some() {
            let mut queues = self.to_vec();
            queues.remove(index);
            return Self::new(queues);
        }
        Self {
            queues: Arc::clone(&self.queues),
            left_out: Some(index),
            content_len: self.content_len - removed.tls_serialized_len(),
        }
    }

    /// The number of queues.
    pub fn len(&self) -> usize {
        self.queues.len() - usize::from(self.left_out.is_some())
    }

    /// Whether there is no queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&VLBytes> {
        match self.left_out {
            Some(left_out) if index >= left_out => self.queues.get(index.checked_add(1)?),
            _ => self.queues.get(index),
        }
    }

    /// The queues, in order.
    pub fn iter(&self) -> RecipientsIter<'_> {
        let (before, after) = match self.left_out {
            Some(left_out) => (&self.queues[..left_out], &self.queues[left_out + 1..]),
            None => (&self.queues[..], &[][..]),
        };
        RecipientsIter {
            before: before.iter(),
            after: after.iter(),
        }
    }

    /// Whether `queue` is one of the queues.
    pub fn contains(&self, queue: &VLBytes) -> bool {
        self.iter().any(|q| q == queue)
    }

    /// The queues, copied into a vector.
    pub fn to_vec(&self) -> Vec<VLBytes> {
        self.iter().cloned().collect()
    }

    /// Whether `self` and `other` refer to the same shared queues (one may leave out a queue
    /// the other has): how a test sees that a message's fanout copied no list.
    pub fn shares_queues_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.queues, &other.queues)
    }
}

/// The queues of a [`Recipients`] list, in order ([`Recipients::iter`]).
#[derive(Debug, Clone)]
pub struct RecipientsIter<'a> {
    // Two slice iterators one after the other: `std::iter::Chain` has no exact length.
    before: std::slice::Iter<'a, VLBytes>,
    after: std::slice::Iter<'a, VLBytes>,
}

impl<'a> Iterator for RecipientsIter<'a> {
    type Item = &'a VLBytes;

    fn next(&mut self) -> Option<Self::Item> {
        self.before.next().or_else(|| self.after.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.before.len() + self.after.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for RecipientsIter<'_> {}

impl DoubleEndedIterator for RecipientsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.after.next_back().or_else(|| self.before.next_back())
    }
}

impl From<Vec<VLBytes>> for Recipients {
    fn from(queues: Vec<VLBytes>) -> Self {
        Self::new(queues)
    }
}

impl FromIterator<VLBytes> for Recipients {
    fn from_iter<I: IntoIterator<Item = VLBytes>>(queues: I) -> Self {
        Self::new(queues.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Recipients {
    type Item = &'a VLBytes;
    type IntoIter = RecipientsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Equal when the queues are, whether shared or not.
impl PartialEq for Recipients {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}
impl Eq for Recipients {}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The length of a `<V>` vector with `content_len` bytes of elements, as tls_codec's `Vec`
/// computes it (a 30-bit limit under the `mls` feature; over it, no prefix is counted).
fn vector_len(content_len: usize) -> usize {
    let prefix = match content_len {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 0,
    };
    content_len + prefix
}

impl Size for Recipients {
    fn tls_serialized_len(&self) -> usize {
        vector_len(self.content_len)
    }
}

impl tls_codec::Serialize for Recipients {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        let mut written = tls_codec::vlen::write_length(writer, self.content_len)?;
        for queue in self.iter() {
            written += tls_codec::Serialize::tls_serialize(queue, writer)?;
        }
        Ok(written)
    }
}

impl DeserializeBytes for Recipients {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (queues, rest) = Vec::<VLBytes>::tls_deserialize_bytes(bytes)?;
        Ok((Self::new(queues), rest))
    }
}

/// `QueueingServiceResponse` (DS-00 §6): `ok(0)`, `invalid_client_queue_information(1)`, and
/// mimi-ds's `recipients_refused(2)` (wire-format.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum QueueingServiceResponse {
    /// `ok(0)`.
    #[tls_codec(discriminant = 0)]
    Ok,
    /// `invalid_client_queue_information(1)`: these queues (by index into `recipients`) are no
    /// longer valid.
    #[tls_codec(discriminant = 1)]
    InvalidClientQueueInformation(Vec<u32>),
    /// `recipients_refused(2)`: the recipients that did not get the message, each with why.
    /// A QS answers this only when a queue is full (`queue_full`, temporary: deliver again
    /// later); the other refusals in it are `unknown_queue`, the recipients
    /// `invalid_client_queue_information` would name.
    #[tls_codec(discriminant = 2)]
    RecipientsRefused(Vec<RecipientRefusal>),
}

/// One refused recipient of a delivery (wire-format.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct RecipientRefusal {
    /// Index into the request's `recipients`.
    pub recipient: u32,
    /// A `DSErrorCode`: `unknown_queue` (19), the queue information is no longer valid, or
    /// `queue_full` (23), the queue holds as much as its provider allows for now.
    pub code: u16,
}

impl QueueingServiceResponse {
    /// The recipients whose queue information is no longer valid: the hub removes their
    /// clients (wire-format.md §6.3).
    pub fn invalid_recipients(&self) -> Vec<u32> {
        match self {
            Self::Ok => Vec::new(),
            Self::InvalidClientQueueInformation(indices) => indices.clone(),
            Self::RecipientsRefused(refused) => refused
                .iter()
                .filter(|r| r.code == ErrorCode::UnknownQueue as u16)
                .map(|r| r.recipient)
                .collect(),
        }
    }

    /// The recipients whose queue was full: the message did not reach them, their clients
    /// stay; the hub's server may deliver the same message to them again later.
    pub fn full_recipients(&self) -> Vec<u32> {
        match self {
            Self::RecipientsRefused(refused) => refused
                .iter()
                .filter(|r| r.code == ErrorCode::QueueFull as u16)
                .map(|r| r.recipient)
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_codec::Serialize as _;

    fn queues(count: usize, len: usize) -> Vec<VLBytes> {
        (0..count)
            .map(|i| vec![i as u8; len + i % 3].into())
            .collect()
    }

    /// A shared list, with or without a queue left out, encodes and sizes exactly as the
    /// `Vec<VLBytes>` of its queues, on both sides of every length-prefix size, and decodes
    /// back to the same queues.
    #[test]
    fn recipients_encode_as_the_vector_of_their_queues() {
        // Content lengths around 63/64 and 16383/16384 bytes: one-, two- and four-byte prefixes.
        for (count, len) in [
            (0, 0),
            (1, 1),
            (20, 1),
            (21, 1),
            (62, 2),
            (5000, 1),
            (3, 7000),
        ] {
            let all = queues(count, len);
            let shared = Recipients::new(all.clone());
            let mut lists = vec![(all.clone(), shared.clone())];
            for index in [0, count / 2, count.saturating_sub(1), count] {
                let mut expected = all.clone();
                if index < count {
                    expected.remove(index);
                }
                lists.push((expected, shared.without(index)));
            }
            for (expected, recipients) in lists {
                let encoded = expected.tls_serialize_detached().expect("encodes");
                assert_eq!(
                    recipients.tls_serialize_detached().expect("encodes"),
                    encoded
                );
                assert_eq!(recipients.tls_serialized_len(), encoded.len());
                assert_eq!(recipients.len(), expected.len());
                assert_eq!(recipients.to_vec(), expected);
                assert_eq!(recipients.iter().rev().count(), expected.len());
                for (index, queue) in expected.iter().enumerate() {
                    assert_eq!(recipients.get(index), Some(queue));
                }
                assert_eq!(recipients.get(expected.len()), None);
                let (decoded, rest) = Recipients::tls_deserialize_bytes(&encoded).expect("decodes");
                assert!(rest.is_empty());
                assert_eq!(decoded, recipients);
                assert!(recipients.shares_queues_with(&shared));
                assert!(!decoded.shares_queues_with(&shared));
            }
        }
    }

    /// Leaving out a second queue copies: the positions are those of the list it is taken from.
    #[test]
    fn leaving_out_twice_counts_positions_in_the_shorter_list() {
        let all = queues(5, 2);
        let twice = Recipients::new(all.clone()).without(1).without(2);
        assert_eq!(
            twice.to_vec(),
            vec![all[0].clone(), all[2].clone(), all[4].clone()]
        );
        assert_eq!(
            twice.tls_serialized_len(),
            twice.to_vec().tls_serialized_len()
        );
    }
}
