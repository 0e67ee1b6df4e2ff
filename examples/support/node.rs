//! A MIMI provider on real sockets: the sans-IO [`Router`] (with a DS and/or a QS) behind the
//! HTTPS server of [`super::https`], with in-memory storage, the host clock, and fanout
//! delivery to other providers over mutual TLS.
//!
//! This is the embedding a vendor writes around mimi-ds, kept small: everything the library
//! leaves to its caller (sockets, clock, storage, locking, delivering fanout, feeding
//! `invalid_client_queue_information` back as a hub event) happens here.
//!
//! Fanout destinations are chosen by group members (the domain in their leaf's queue
//! configuration). Before its directory lookup, the provider checks each with
//! [`Fanout::check_destination`] against the providers it knows (`peers`); a refused
//! destination is never looked up or called, and its queues are reported to the hub as
//! [`HubEvent::QueueRejected`], which proposes removing the clients that use them.
//!
//! Locking: each storage has one mutex, held only while mimi-ds processes (the router's
//! `handle`, a local `deliver`, one `handle_event`), never while reading a request, writing a
//! response or calling another provider. What remains serialised: every request to this
//! provider locks both storages (DS, then QS), so requests run one at a time, and a slow one
//! (a large commit) delays the others by its processing time. A production server would use a
//! storage backend with per-group transactions instead (see the `DsStorage` contract).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use mimi_ds::qs::{InMemoryQsStorage, QsConfig, QueueKey, QueueingService};
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::ds_identity;
use mimi_ds::transport::{self, Router, TransportConfig};
use mimi_ds::wire::{decode_exact, QueueingServiceResponse};
use mimi_ds::{BasicCredentialValidator, DeliveryService, DsConfig, Fanout, HubEvent, UnixTimeMs};
use openmls::prelude::ExternalSender;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand;

use super::https::{
    Handler, HttpRequest, HttpResponse, HttpsClient, HttpsServer, Peer, Pki, ServerLimits,
};

/// The largest body the HTTP layer reads; the router enforces its own (equal) limit with a
/// DS error body, this one protects the socket layer.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// How many rounds of "delivery rejected a queue → hub proposes a Remove → deliver that"
/// one request may cause. One is enough (the Removes go to clients whose queues were
/// accepted); the bound keeps a misbehaving peer from looping us.
const MAX_EVENT_ROUNDS: usize = 3;

/// What a provider counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP requests served.
    pub requests: AtomicU64,
    /// Fanout instructions (one message to one provider) delivered.
    pub fanouts: AtomicU64,
    /// Messages enqueued into this provider's queues.
    pub enqueued: AtomicU64,
    /// Queues other providers reported invalid, or at destinations refused before delivery,
    /// turned into hub events.
    pub rejected_queues: AtomicU64,
    /// Fanout instructions whose destination [`Fanout::check_destination`] refused (never
    /// looked up nor called).
    pub refused_destinations: AtomicU64,
}

/// A provider's state shared by its connection threads.
struct Node {
    domain: String,
    router: Router,
    ds_storage: Mutex<InMemoryStorage>,
    qs_storage: Mutex<InMemoryQsStorage>,
    /// Calls to other providers, with this provider's certificate (set once all providers
    /// have addresses).
    outbound: OnceLock<HttpsClient>,
    /// Provider domains known to this one: who an authenticated peer can be.
    peers: Vec<String>,
    counters: Counters,
}

/// A running provider.
pub struct Provider {
    /// Its domain.
    pub domain: String,
    /// The hub's external-sender entry, if it runs a DS (clients put it in new groups).
    pub external_sender: Option<ExternalSender>,
    server: HttpsServer,
    node: Arc<Node>,
}

/// The host clock in ms since the UNIX epoch: the embedding server reads it and hands it to
/// mimi-ds, which never reads a clock itself.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Provider {
    /// Starts a provider on 127.0.0.1 (any free port): its QS, and its DS (named by its own
    /// domain) when `runs_hub`.
    pub fn start(pki: &Pki, domain: &str, runs_hub: bool, peers: &[&str]) -> std::io::Result<Self> {
        let crypto = RustCrypto::default();
        let seed = crypto.random_vec(32).map_err(std::io::Error::other)?;
        let key = QueueKey::derive(&seed).map_err(std::io::Error::other)?;
        let qs = QueueingService::new(QsConfig::new(domain), key, RustCrypto::default());
        let ds_domain = runs_hub.then(|| domain.to_string());
        let mut router = Router::new(TransportConfig::new(domain, ds_domain)).with_qs(qs);
        let mut external_sender = None;
        if runs_hub {
            let (identity, sender) = ds_identity(domain);
            // The demo's clients carry BasicCredentials naming `mimi://<domain>/d/<user>/<device>`;
            // a real deployment plugs in its own credential validator.
            let ds = DeliveryService::new(DsConfig::new(domain), identity, RustCrypto::default())
                .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
            router = router.with_ds(ds);
            external_sender = Some(sender);
        }
        let node = Arc::new(Node {
            domain: domain.to_string(),
            router,
            ds_storage: Mutex::new(InMemoryStorage::new()),
            qs_storage: Mutex::new(InMemoryQsStorage::new()),
            outbound: OnceLock::new(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            counters: Counters::default(),
        });
        let handler_node = Arc::clone(&node);
        let handler: Handler = Arc::new(move |request, peer| handler_node.serve(request, peer));
        // The defaults: 256 connections, 10 s to complete each request (see ServerLimits).
        let limits = ServerLimits::new(MAX_BODY);
        let server =
            HttpsServer::spawn_with("127.0.0.1:0", pki.server_config(domain), limits, handler)?;
        Ok(Self {
            domain: domain.to_string(),
            external_sender,
            server,
            node,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Gives it the addresses of every provider, for delivering fanout (mutual TLS with its
    /// own certificate).
    pub fn connect(&self, pki: &Pki, directory: &HashMap<String, SocketAddr>) {
        let client = HttpsClient::new(pki.client_config(Some(&self.domain)), directory.clone());
        let _ = self.node.outbound.set(client);
    }

    /// Its counters.
    pub fn counters(&self) -> &Counters {
        &self.node.counters
    }

    /// Connections its server accepted.
    pub fn connections(&self) -> u64 {
        self.server.connections_accepted()
    }

    /// Delivers fanout the way it delivers its own hub's (for tests: fanout from elsewhere).
    pub fn deliver_fanout(&self, fanout: Vec<Fanout>) {
        self.node.deliver_all(fanout);
    }
}

impl Node {
    /// One HTTP request: route it, answer, and deliver the fanout it caused first, so that
    /// when a client sees `200` its message already sits in the recipients' queues.
    fn serve(&self, request: HttpRequest, peer: &Peer) -> HttpResponse {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let peer_domain = self.peers.iter().find(|d| peer.is(d)).map(String::as_str);
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let http = transport::HttpRequest {
            method: &request.method,
            path: &request.path,
            headers: &headers,
            body: &request.body,
            authenticated_peer: peer_domain,
        };
        let now = UnixTimeMs(now_ms());
        // Lock order: DS, then QS, everywhere.
        let routed = {
            let mut ds_storage = self.ds_storage.lock().unwrap_or_else(|e| e.into_inner());
            let mut qs_storage = self.qs_storage.lock().unwrap_or_else(|e| e.into_inner());
            self.router
                .handle(now, &http, &mut *ds_storage, &mut *qs_storage)
        };
        let routed = match routed {
            Ok(routed) => routed,
            Err(e) => {
                eprintln!("[{}] internal error: {e}", self.domain);
                let r = e.response();
                return HttpResponse::new(r.status, r.content_type, r.body);
            }
        };
        self.counters
            .enqueued
            .fetch_add(routed.enqueued.len() as u64, Ordering::Relaxed);
        self.deliver_all(routed.fanout);
        let r = routed.response;
        let mut response = HttpResponse::new(r.status, r.content_type, r.body);
        response
            .headers
            .extend(r.headers.into_iter().map(|(n, v)| (n.to_string(), v)));
        response
    }

    /// Delivers fanout, turning every queue a provider rejects, and every queue at a
    /// destination the check refuses, into a hub event whose own fanout is delivered in turn
    /// (wire-format.md §6.3, §7.2).
    fn deliver_all(&self, mut fanout: Vec<Fanout>) {
        for _ in 0..MAX_EVENT_ROUNDS {
            let mut events = Vec::new();
            for delivery in &fanout {
                let rejected = if !self.destination_allowed(delivery) {
                    delivery.recipient_queues()
                } else if let Some(answer) = self.deliver(delivery) {
                    delivery.rejected_queues(&answer)
                } else {
                    continue;
                };
                for queue in rejected {
                    events.push((delivery.group_id().to_vec(), HubEvent::QueueRejected(queue)));
                }
            }
            fanout = Vec::new();
            let Some(ds) = self.router.ds() else { return };
            for (group_id, event) in events {
                self.counters
                    .rejected_queues
                    .fetch_add(1, Ordering::Relaxed);
                let mut storage = self.ds_storage.lock().unwrap_or_else(|e| e.into_inner());
                match ds.handle_event(UnixTimeMs(now_ms()), &group_id, &event, &mut *storage) {
                    Ok(outcome) => fanout.extend(outcome.fanout),
                    Err(e) => eprintln!("[{}] hub event failed: {e}", self.domain),
                }
            }
            if fanout.is_empty() {
                return;
            }
        }
    }

    /// Whether `fanout` may be delivered: its destination, chosen by group members, must be a
    /// plain host name and one of the providers this one knows. Checked before the directory
    /// lookup, so that no member can make this provider resolve or call a host of its choosing.
    fn destination_allowed(&self, fanout: &Fanout) -> bool {
        let known = |destination: &str| self.peers.iter().any(|p| p == destination);
        let Err(refusal) = fanout.check_destination(&known) else {
            return true;
        };
        self.counters
            .refused_destinations
            .fetch_add(1, Ordering::Relaxed);
        eprintln!("[{}] not delivered: {refusal}", self.domain);
        false
    }

    /// One delivery: to this provider's own QS directly, to another over HTTPS. `None` when
    /// it could not be delivered (a real server would queue it for retry).
    fn deliver(&self, fanout: &Fanout) -> Option<QueueingServiceResponse> {
        self.counters.fanouts.fetch_add(1, Ordering::Relaxed);
        let bytes = fanout.to_bytes();
        let body = if fanout.destination == self.domain {
            let qs = self.router.qs()?;
            let mut storage = self.qs_storage.lock().unwrap_or_else(|e| e.into_inner());
            // Our own DS is the sender: no transport to authenticate.
            let outcome = qs
                .deliver(
                    UnixTimeMs(now_ms()),
                    &bytes,
                    Some(&self.domain),
                    &mut *storage,
                )
                .ok()?;
            self.counters
                .enqueued
                .fetch_add(outcome.enqueued.len() as u64, Ordering::Relaxed);
            outcome.response
        } else {
            let client = self.outbound.get()?;
            let response = client
                .post(
                    &fanout.destination,
                    "/deliver_message",
                    transport::OCTET_STREAM,
                    &bytes,
                )
                .map_err(|e| {
                    eprintln!(
                        "[{}] delivery to {} failed: {e}",
                        self.domain, fanout.destination
                    )
                })
                .ok()?;
            if response.status != 200 {
                eprintln!(
                    "[{}] {} refused a delivery: HTTP {}",
                    self.domain, fanout.destination, response.status
                );
                return None;
            }
            response.body
        };
        decode_exact(&body).ok()
    }
}
