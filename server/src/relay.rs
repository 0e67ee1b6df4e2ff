//! The fanout relay: drains the durable outbox and delivers each fanout to its provider's
//! Queueing Service.
//!
//! * **At least once.** An entry leaves the outbox ([`mark_delivered`](mimi_ds::storage::DsOutbox::mark_delivered)) only after
//!   the QS answered it; a crash in between delivers it again, and the QS accepts the
//!   byte-identical redelivery without storing it twice (wire-format.md §10.2).
//! * **Per destination, concurrently.** Each round groups the due entries by destination and
//!   gives each destination one task (at most `relay_concurrency` at once) that delivers its
//!   entries in outbox order over one connection. A destination already being served when a
//!   round reads the outbox is skipped by that round, so no entry goes to two tasks of one
//!   server, and a provider that is slow or down holds up only its own deliveries; the
//!   request path never waits for the relay at all.
//! * **Backoff, in order.** When a delivery fails (no connection, TLS failure, timeout, an
//!   answer other than 200 with a `QueueingServiceResponse`), that entry is put off by an
//!   exponentially growing, jittered delay ([`crate::RetryPolicy`]; its `attempts` count the
//!   destination's failures since its last delivery). The outbox holds back every newer entry
//!   of the destination while it waits
//!   ([`DsOutbox::pending`](mimi_ds::storage::DsOutbox::pending)), also entries written
//!   meanwhile and entries another replica reads, so a queue receives a group's messages in
//!   the hub's `sequence_number` order (wire-format.md §6.5) and commits in epoch order. Every
//!   failure is retried: a delivery is never dropped because a peer misbehaved for a while.
//! * **To this provider's own QS, in batches.** The due entries for the server's own QS are
//!   delivered in batches: each batch's deliveries in one QS transaction, then their removal
//!   from the outbox in one DS transaction (on SQLite, two commits for up to 64 messages
//!   instead of two per message, and the QS's in a file of its own). The order and the
//!   retries are those above: a delivery that fails ends its batch, the ones before it are
//!   committed and removed, it and the ones behind it wait for its retry. On SQLite, rounds
//!   start at most every 5 ms, so that what is accepted meanwhile is delivered together.
//! * **What remains shared.** A round reads the oldest due entries (up to 512). While a
//!   destination's task hangs (up to the delivery timeout), its entries stay due and take
//!   room in the batch; with a backlog of more than a batch for one hanging provider, other
//!   providers' newer entries wait for that timeout once per backoff period. Once the
//!   delivery failed, the destination's entries leave the batches until its retry.
//! * **Destinations** are chosen by group members, so each passes
//!   [`Fanout::check_destination`] against the peer directory (the only way one resolves)
//!   before anything is looked up. A refused one is never called: its queues are reported to
//!   the hub as [`HubEvent::QueueRejected`](mimi_ds::HubEvent::QueueRejected), as are the queues a QS answers
//!   `invalid_client_queue_information` for, and the fanout of those events goes back
//!   through the outbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use mimi_ds::storage::OutboxEntry;
use mimi_ds::transport::{CallStats, OCTET_STREAM};
use mimi_ds::wire::{decode_exact, QueueingServiceResponse};
use mimi_ds::Fanout;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::{Backend, Delivered, OwnDeliveries};
use crate::{now_ms, Shared};

/// Entries read from the outbox per round.
const BATCH: usize = 512;
/// Largest QS answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// What the relay counted since the server started.
#[derive(Debug, Default)]
pub struct RelayStats {
    delivered: AtomicU64,
    own_qs_batches: AtomicU64,
    failed_attempts: AtomicU64,
    rejected_queues: AtomicU64,
    refused_destinations: AtomicU64,
    failures_by_destination: Mutex<HashMap<String, u64>>,
    deliveries_by_destination: Mutex<HashMap<String, u64>>,
}

impl RelayStats {
    /// Fanouts a QS accepted (and that left the outbox).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Storage transactions in which fanouts to this provider's own QS were committed, each
    /// holding one or more of them (every due fanout of a round, up to a bound).
    pub fn own_qs_batches(&self) -> u64 {
        self.own_qs_batches.load(Ordering::Relaxed)
    }

    /// Failed delivery attempts, each followed by a backoff.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }

    /// Failed delivery attempts to one destination.
    pub fn failed_attempts_to(&self, destination: &str) -> u64 {
        lock(&self.failures_by_destination)
            .get(destination)
            .copied()
            .unwrap_or(0)
    }

    /// Fanouts one destination's QS accepted.
    pub fn delivered_to(&self, destination: &str) -> u64 {
        lock(&self.deliveries_by_destination)
            .get(destination)
            .copied()
            .unwrap_or(0)
    }

    /// Failed attempts per destination, sorted by destination (for the metrics).
    pub(crate) fn failed_attempts_by_destination(&self) -> Vec<(String, u64)> {
        sorted(&lock(&self.failures_by_destination))
    }

    /// Deliveries per destination, sorted by destination (for the metrics).
    pub(crate) fn delivered_by_destination(&self) -> Vec<(String, u64)> {
        sorted(&lock(&self.deliveries_by_destination))
    }

    /// Queues reported to the hub as rejected (by a QS, or at a refused destination).
    pub fn rejected_queues(&self) -> u64 {
        self.rejected_queues.load(Ordering::Relaxed)
    }

    /// Fanouts whose destination [`Fanout::check_destination`] refused.
    pub fn refused_destinations(&self) -> u64 {
        self.refused_destinations.load(Ordering::Relaxed)
    }

    fn failed(&self, destination: &str) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
        *lock(&self.failures_by_destination)
            .entry(destination.to_owned())
            .or_default() += 1;
    }

    fn count_delivery(&self, destination: &str) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        *lock(&self.deliveries_by_destination)
            .entry(destination.to_owned())
            .or_default() += 1;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn sorted(counts: &HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = counts.iter().map(|(d, n)| (d.clone(), *n)).collect();
    counts.sort();
    counts
}

/// Why one delivery did not happen.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answer: {0}")]
    Answer(String),
    #[error("timed out")]
    Timeout,
    #[error("storage: {0}")]
    Storage(String),
}

/// Runs until `cancel` fires. Delivery tasks still running then are dropped: their entries
/// stay in the outbox and are delivered after the next start.
pub(crate) async fn run<B: Backend>(shared: Arc<Shared<B>>, cancel: CancellationToken) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(shared.relay.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        let round_started = tokio::time::Instant::now();
        while tasks.try_join_next().is_some() {}
        // Destinations busy before the outbox is read are skipped this round even if their
        // task ends while the read runs: the read may predate that task's removals from the
        // outbox, and would hand its delivered entries to a second task (a repeated report
        // of every queue they rejected). The ending task wakes the next round.
        let busy_before_read = in_flight.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match B::pending(&shared, now_ms(), BATCH).await {
            Ok(entries) => {
                let mut by_destination: BTreeMap<String, Vec<OutboxEntry>> = BTreeMap::new();
                for entry in entries {
                    by_destination
                        .entry(entry.destination.clone())
                        .or_default()
                        .push(entry);
                }
                for (destination, entries) in by_destination {
                    if busy_before_read.contains(&destination) {
                        continue;
                    }
                    let newly_busy = in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(destination.clone());
                    if !newly_busy {
                        continue;
                    }
                    let shared = Arc::clone(&shared);
                    let permits = Arc::clone(&permits);
                    let in_flight = Arc::clone(&in_flight);
                    tasks.spawn(async move {
                        if let Ok(_permit) = permits.acquire_owned().await {
                            deliver_destination(&shared, &destination, entries).await;
                        }
                        in_flight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&destination);
                        // Its entries may have been skipped meanwhile; look again.
                        shared.relay_wake.notify_one();
                    });
                }
            }
            Err(error) => tracing::error!(%error, "relay: reading the outbox failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = shared.relay_wake.notified() => {}
            () = tokio::time::sleep(shared.relay.poll_interval) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            // Rounds start at most this often (SQLite: 5 ms). A round delivers what was
            // accepted since the last one together (to the own QS: one QS and one hub
            // transaction per batch), so while requests keep coming the hub's file sees one
            // relay write per few messages instead of one per message.
            () = tokio::time::sleep_until(round_started + B::RELAY_ROUND_SPACING) => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Delivers one destination's due entries in order; at the first failure, this entry is put
/// off by the backoff, and the outbox holds the destination's newer entries back behind it.
async fn deliver_destination<B: Backend>(
    shared: &Arc<Shared<B>>,
    destination: &str,
    entries: Vec<OutboxEntry>,
) {
    if destination.eq_ignore_ascii_case(&shared.domain) {
        return deliver_own_destination(shared, destination, entries).await;
    }
    deliver_one_by_one(shared, destination, entries).await;
}

/// Delivers entries one request (and one `mark_delivered`) at a time, in order.
async fn deliver_one_by_one<B: Backend>(
    shared: &Arc<Shared<B>>,
    destination: &str,
    entries: Vec<OutboxEntry>,
) {
    let mut connection: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    for entry in &entries {
        let fanout = match entry.fanout() {
            Ok(fanout) => fanout,
            Err(corrupt) => {
                // Never guess at a delivery, and never skip one: report it and look again only
                // after the longest backoff (an operator may repair or remove the row). The
                // destination's newer entries wait behind it, as behind a failed delivery.
                tracing::error!(error = %corrupt, "relay: corrupt outbox entry");
                let later = now_ms().saturating_add(millis(shared.relay.retry.max_delay));
                put_off(shared, vec![(entry.id, later)]).await;
                return;
            }
        };
        if let Err(refusal) = fanout.check_destination(&|d: &str| is_known(shared, d)) {
            tracing::warn!(%refusal, "relay: destination refused; its queues are reported to the hub");
            shared
                .relay_stats
                .refused_destinations
                .fetch_add(1, Ordering::Relaxed);
            let rejected = fanout.recipient_queues();
            finish(shared, entry.id, &fanout, rejected).await;
            continue;
        }
        let attempt = tokio::time::timeout(
            shared.relay.delivery_timeout,
            deliver(shared, &fanout, &mut connection),
        )
        .await
        .unwrap_or(Err(DeliveryError::Timeout));
        match attempt {
            Ok(answer) => {
                let rejected = fanout.rejected_queues(&answer);
                shared.relay_stats.count_delivery(destination);
                finish(shared, entry.id, &fanout, rejected).await;
            }
            Err(error) => {
                shared.relay_stats.failed(destination);
                let wait = shared.relay.retry.delay(entry.attempts.saturating_add(1));
                tracing::warn!(%destination, %error, attempts = entry.attempts + 1, "relay: delivery failed; retrying later");
                // The rest of `entries` stays in the outbox, held back behind this one.
                put_off(
                    shared,
                    vec![(entry.id, now_ms().saturating_add(millis(wait)))],
                )
                .await;
                return;
            }
        }
    }
}

/// Fanouts to this provider's own QS delivered in one storage transaction, at most.
const OWN_BATCH_ENTRIES: usize = 64;
/// Recipients in one such transaction, at most (a batch holds at least one entry): bounds how
/// long the QS's write lock is held for its clients' own requests.
const OWN_BATCH_RECIPIENTS: usize = 1024;

/// [`deliver_destination`] for this provider's own QS: the same order, retries and reports,
/// but consecutive deliverable entries go to the QS in batches, each batch's deliveries in one
/// QS transaction and their removal from the outbox in one DS transaction (SQLite: two commits
/// for up to [`OWN_BATCH_ENTRIES`] messages instead of two per message). An entry is removed
/// only after the QS committed it; a crash in between delivers it again, which the QS
/// deduplicates.
async fn deliver_own_destination<B: Backend>(
    shared: &Arc<Shared<B>>,
    destination: &str,
    entries: Vec<OutboxEntry>,
) {
    let mut rest = entries.as_slice();
    while let Some(first) = rest.first() {
        // The longest run of deliverable entries from here, within the batch's bounds.
        let mut batch: Vec<(u64, Fanout)> = Vec::new();
        let mut recipients = 0;
        for entry in rest {
            let Ok(fanout) = entry.fanout() else { break };
            if fanout
                .check_destination(&|d: &str| is_known(shared, d))
                .is_err()
                || batch.len() == OWN_BATCH_ENTRIES
                || (!batch.is_empty()
                    && recipients + fanout.recipient_count() > OWN_BATCH_RECIPIENTS)
            {
                break;
            }
            recipients += fanout.recipient_count();
            batch.push((entry.id, fanout));
        }
        if batch.is_empty() {
            // Corrupt or refused: the one-by-one path reports it (and stops at a corrupt one).
            let corrupt = first.fanout().is_err();
            deliver_one_by_one(shared, destination, vec![first.clone()]).await;
            if corrupt {
                return;
            }
            rest = &rest[1..];
            continue;
        }
        let bodies = batch.iter().map(|(_, fanout)| fanout.to_bytes()).collect();
        let done = tokio::time::timeout(
            shared.relay.delivery_timeout,
            B::deliver_own_batch(shared, bodies),
        )
        .await
        .unwrap_or_else(|_| OwnDeliveries {
            answers: Vec::new(),
            failure: Some(DeliveryError::Timeout.to_string()),
        });
        let delivered_count = done.answers.len();
        let mut delivered = Vec::with_capacity(delivered_count);
        let mut events = 0;
        for ((id, fanout), answer) in batch.iter().zip(&done.answers) {
            let rejected = fanout.rejected_queues(answer);
            events += rejected.len() as u64;
            delivered.push(Delivered {
                id: *id,
                group_id: fanout.group_id().to_vec(),
                rejected,
            });
        }
        if !delivered.is_empty() {
            shared
                .relay_stats
                .own_qs_batches
                .fetch_add(1, Ordering::Relaxed);
            // Counted before the entries leave the outbox, as in `finish`.
            for _ in 0..delivered_count {
                shared.relay_stats.count_delivery(destination);
            }
            shared
                .relay_stats
                .rejected_queues
                .fetch_add(events, Ordering::Relaxed);
            if let Err(error) = B::finish_batch(shared, delivered).await {
                tracing::error!(%error, "relay: removing delivered entries failed");
            }
            if events > 0 {
                shared.relay_wake.notify_one();
            }
        }
        if let Some(error) = done.failure {
            let failed = &rest[delivered_count];
            shared.relay_stats.failed(destination);
            let wait = shared.relay.retry.delay(failed.attempts.saturating_add(1));
            tracing::warn!(%destination, %error, attempts = failed.attempts + 1, "relay: delivery failed; retrying later");
            // The entries after it stay in the outbox, held back behind it.
            put_off(
                shared,
                vec![(failed.id, now_ms().saturating_add(millis(wait)))],
            )
            .await;
            return;
        }
        rest = &rest[batch.len()..];
    }
}

/// Whether deliveries to `destination` may go anywhere: this provider, or a peer in the
/// directory (the only way one resolves).
fn is_known<B>(shared: &Shared<B>, destination: &str) -> bool {
    destination.eq_ignore_ascii_case(&shared.domain) || shared.peers.address(destination).is_some()
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One delivery: to this provider's own QS directly, to another over HTTPS with mutual TLS.
async fn deliver<B: Backend>(
    shared: &Arc<Shared<B>>,
    fanout: &Fanout,
    connection: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
) -> Result<QueueingServiceResponse, DeliveryError> {
    let body = fanout.to_bytes();
    if fanout.destination.eq_ignore_ascii_case(&shared.domain) {
        // Our own hub is the sender: there is no transport to authenticate.
        let started = std::time::Instant::now();
        let answer = B::deliver_own(shared, body)
            .await
            .map_err(DeliveryError::Storage)?;
        shared.request_metrics.observe_call(
            &CallStats::Qs(answer.status.clone(), answer.stats),
            started.elapsed(),
        );
        return decode_exact(&answer.response).map_err(|e| DeliveryError::Answer(e.to_string()));
    }
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        *connection = Some(connect(shared, &fanout.destination).await?);
    }
    let sender = connection.as_mut().ok_or(DeliveryError::Timeout)?;
    sender.ready().await?;
    let request = http::Request::post("/deliver_message")
        .header(HOST, fanout.destination.as_str())
        .header(CONTENT_TYPE, OCTET_STREAM)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| DeliveryError::Answer(e.to_string()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| DeliveryError::Answer(e.to_string()))?
        .to_bytes();
    if status != 200 {
        return Err(DeliveryError::Status(status));
    }
    decode_exact(&answer).map_err(|e| DeliveryError::Answer(e.to_string()))
}

/// A TLS 1.3 connection to `destination` at its directory address, presenting this
/// provider's certificate, and the HTTP/1.1 handshake over it.
async fn connect<B: Backend>(
    shared: &Arc<Shared<B>>,
    destination: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, DeliveryError> {
    let address = shared.peers.address(destination).ok_or_else(|| {
        DeliveryError::Answer(format!("{destination} is not in the peer directory"))
    })?;
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::try_from(destination.to_owned())
        .map_err(|e| DeliveryError::Answer(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&shared.client_tls))
        .connect(name, tcp)
        .await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "relay connection ended");
        }
    });
    Ok(sender)
}

/// A delivered (or undeliverable) entry: report its rejected queues as hub events (their
/// fanout goes into the outbox by the same writes), then remove it from the outbox.
async fn finish<B: Backend>(
    shared: &Arc<Shared<B>>,
    id: u64,
    fanout: &Fanout,
    rejected: Vec<mimi_ds::wire::ClientQueueConfig>,
) {
    let group_id = fanout.group_id().to_vec();
    let events = rejected.len() as u64;
    // Counted before the entry leaves the outbox, so that whoever sees the outbox drained
    // also sees its reports in the stats (a report retried after a failed removal counts
    // again: it was made again).
    shared
        .relay_stats
        .rejected_queues
        .fetch_add(events, Ordering::Relaxed);
    if let Err(error) = B::finish(shared, id, group_id, rejected).await {
        tracing::error!(%error, "relay: removing a delivered entry failed");
    }
    if events > 0 {
        shared.relay_wake.notify_one();
    }
}

/// Hides entries until their next attempt time.
async fn put_off<B: Backend>(shared: &Arc<Shared<B>>, delays: Vec<(u64, u64)>) {
    if let Err(error) = B::retry_later(shared, delays).await {
        tracing::error!(%error, "relay: scheduling a retry failed");
    }
}
