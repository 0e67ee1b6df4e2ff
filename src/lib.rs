//! # mimi-ds
//!
//! An embeddable, **sans-IO** implementation of the MIMI Delivery Service: the *hub* that
//! orders and validates the MLS messages of the groups it owns and fans them out to the
//! providers of their members (draft-robert-mimi-delivery-service, draft-ietf-mimi-protocol).
//! It also provides the provider-side Queueing Service ([`qs`]), which takes that fanout into
//! client queues, and the HTTPS endpoint mapping of both ([`transport`],
//! draft-kohbrok-mimi-transport).
//!
//! The hub keeps the public state of every group (ratchet tree, GroupContext, pending
//! proposals) and validates each commit and proposal against it with openmls's `PublicGroup`,
//! as far as a party without the group's secrets can (see "What the DS cannot check" below),
//! and it gives every accepted message a per-group sequence number and an acceptance time. It
//! never sees plaintext.
//!
//! ## How it is driven
//!
//! The embedding server owns every socket, clock, thread and database. For each request it
//! calls [`DeliveryService::process`] with the request bytes, the current time and its
//! storage, and gets back the bytes to answer with and the deliveries to make:
//!
//! ```text
//!                      ┌──────────────────────────────┐
//!   request bytes ────►│                              ├───► response bytes  (to the requester)
//!   now: UnixTimeMs ──►│  DeliveryService::process    │
//!                      │                              ├───► Vec<Fanout>     (to each provider's
//!                      └───────┬──────────────▲───────┘      Queueing Service)
//!   at most one guarded write  │              │  reads
//!                      ┌───────▼──────────────┴───────┐
//!                      │  &mut impl DsStorage         │   your database, or InMemoryStorage
//!                      └──────────────────────────────┘
//! ```
//!
//! **Async servers** drive the same request in steps instead ([`DeliveryService::start`],
//! [`DsStep`], module [`steps`]): the hub says what to read, the server fetches it with any
//! I/O it likes and resumes, then applies the one write and learns the outcome, or retries
//! after a conflict. [`DeliveryService::process`] and [`DeliveryService::process_async`] (over
//! [`storage::AsyncDsStorage`], no runtime needed, a `Send` future) are both thin loops over
//! those steps, so there is one code path. The Queueing Service has the same pair.
//! Durable backends live in their own crates of this workspace (`mimi-ds-sqlite`,
//! `mimi-ds-postgres`), so a vendor's own database driver never conflicts with ours.
//!
//! One [`DeliveryService`] holds only configuration, the hub's own MLS identity and a crypto
//! provider; all group state lives in the [`storage::DsStorage`] passed to each call. The wire
//! format of requests, responses and fanout is specified in `docs/wire-format.md` and
//! implemented in [`wire`].
//!
//! A hub given a [`franking::FrankingKey`] franks application messages that carry a franking
//! tag and re-verifies reported franks ([`DeliveryService::verify_reported_message`]);
//! [`message_id`] computes mimi-content message IDs (wire-format.md §15.5-§15.8).
//!
//! **AppDataUpdate proposals** (draft-ietf-mls-extensions, type 0x0008) are accepted only
//! with the opt-in feature `app-data-update`, for the components registered in
//! `DsConfig::app_data_components` (module `app_data`, wire-format.md §15.7). The feature
//! turns on openmls's unstable `extensions-draft`, and Cargo unifies features: every crate in
//! the build that uses openmls then gets it too (your clients' `process_message` returns
//! `UnresolvedAppDataCommit` for such commits, and openmls's storage encoding gains the new
//! proposal and extension variants). Without it the hub refuses them as before.
//!
//! ## Example
//!
//! A hub for `hub.example` with in-memory storage, answering a `request_group_id`:
//!
//! ```
//! use mimi_ds::storage::InMemoryStorage;
//! use mimi_ds::wire::{
//!     decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
//!     PROTOCOL_VERSION_MIMI_DS10,
//! };
//! use mimi_ds::{DeliveryService, DsConfig, DsIdentity, Status, UnixTimeMs};
//! use openmls::prelude::{BasicCredential, Ciphersuite, SignaturePublicKey};
//! use openmls_basic_credential::SignatureKeyPair;
//! use openmls_rust_crypto::RustCrypto;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The hub's own MLS identity: it is an external sender of every group it serves.
//! let suite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
//! let keys = SignatureKeyPair::new(suite.signature_algorithm())?;
//! let identity = DsIdentity {
//!     signature_key: SignaturePublicKey::from(keys.to_public_vec()),
//!     credential: BasicCredential::new(b"hub.example".to_vec()).into(),
//!     signer: Box::new(keys),
//! };
//! let hub = DeliveryService::new(DsConfig::new("hub.example"), identity, RustCrypto::default());
//! let mut storage = InMemoryStorage::new();
//!
//! // Bytes as they arrive from the network, and the time as the server's clock reads it.
//! let request = encode(&DsRequest {
//!     version: PROTOCOL_VERSION_MIMI_DS10,
//!     body: DsRequestBody::RequestGroupId,
//!     auth: DsAuthData::Unauthenticated,
//! })?;
//! let now = UnixTimeMs(1_767_225_600_000);
//!
//! let outcome = hub.process(now, &request, &mut storage)?;
//! assert_eq!(outcome.status, Status::Accepted);
//! // Group members chose each fanout's destination: check it against the providers you
//! // federate with before any DNS lookup or connection (see `Fanout`).
//! let federation = ["hub.example", "other.example"];
//! let allowed = |domain: &str| federation.contains(&domain);
//! for fanout in &outcome.fanout {
//!     match fanout.check_destination(&allowed) {
//!         // POST fanout.to_bytes() to the Queueing Service of `destination`.
//!         Ok(destination) => {
//!             let _ = (destination, fanout.to_bytes());
//!         }
//!         Err(refusal) => eprintln!("not delivered: {refusal}"),
//!     }
//! }
//! // Send outcome.response back to the requester; here, read it.
//! let response: DsResponse = decode_exact(&outcome.response)?;
//! let DsResponseBody::GroupId(group_id) = response.body else { panic!("not a group ID") };
//! assert!(group_id.as_slice().ends_with(b"@hub.example"));
//! # Ok(())
//! # }
//! ```
//!
//! [`DeliveryService::new`] refuses every client credential until the deployment says which
//! it trusts, with [`DeliveryService::with_credential_validator`] and a
//! [`CredentialValidator`]. With the `test-utils` feature, `mimi_ds::testing` provides real
//! openmls clients and an in-process hub; `examples/demo_in_process.rs` runs a whole group
//! life with them, and the workspace's `mimi-ds-server` runs the same clients against two
//! providers over HTTPS (`cargo run --release -p mimi-ds-server --example demo`).
//!
//! **Observability.** Every [`Outcome`] carries [`OutcomeStats`] (and every
//! [`qs::QsOutcome`] its [`qs::QsStats`]): the operation, read rounds, conflict retries,
//! request and response sizes, fanout count and bytes, and the epoch; counts and names only,
//! fit for metrics labels. The optional `tracing` feature adds one `tracing` span per DS or QS
//! request (target `mimi_ds`, spans `ds_request` and `qs_request`) with those fields and the
//! outcome, and never an ID, a credential or key material; the span is carried by the steps
//! and entered only while mimi-ds works, so a subscriber's timings separate the hub's work
//! from the caller's I/O (module [`steps`]). Without the feature no tracing code is compiled.
//!
//! ## What the DS does not do
//!
//! * **No I/O.** It opens no sockets and does not deliver fanout: it returns [`Fanout`]
//!   instructions and the caller sends them. [`transport::Router`] maps HTTP requests that the
//!   caller parsed; the workspace's `mimi-ds-server` (`server/`) is an HTTPS server around it.
//! * **No clock.** Time is the `now` argument of every call; timestamps, replay windows and
//!   reservations are all measured against it.
//! * **No threads, no sleeping, no background work.** Expired replay marks and reservations
//!   are dropped by the storage backend (see the [`storage`] contract).
//! * **No KeyPackage directory in the hub.** The hub answers `key_packages` and
//!   `connection_key_packages` with `unsupported_operation`: in MIMI each provider serves its
//!   own users' KeyPackages, with [`directory::KeyPackageDirectory`] (wire-format.md §14.4).
//! * **No identity policy of its own.** Which credentials are acceptable, and which user a
//!   client belongs to, is the [`CredentialValidator`]'s decision.
//!
//! **Known limitation.** openmls reads the system clock in one place: when `PublicGroup`
//! validates a KeyPackage (an Add in a commit or proposal, a new group's tree), it checks the
//! KeyPackage's lifetime against `SystemTime::now()`, not against `now`. mimi-ds checks the
//! same lifetimes against `now` first (refusing with `key_package_lifetime`; wire-format.md
//! §4.3.5), but cannot switch openmls's check off: the host clock must still be roughly right,
//! and a simulated `now` far from the real time does not move that check.
//!
//! ## What the DS cannot check
//!
//! The hub is not a member: it holds none of a group's secrets. It checks signatures, epochs,
//! the ratchet tree, which proposals a commit may carry (RFC 9420 §12.2) and the GroupInfo of
//! the new epoch, but it cannot check:
//!
//! * a PublicMessage's `membership_tag` (a MAC under the epoch's membership key, RFC 9420
//!   §6.2), which lies outside the signed content;
//! * the HPKE ciphertexts of a commit's UpdatePath, and the contents of a Welcome;
//! * anything inside a PrivateMessage, its sender included.
//!
//! So members can refuse a message the hub accepted. Two rules keep that from wedging a group
//! (`docs/wire-format.md` §4.3.3): only the hub's own proposals are mandatory in commits (a
//! member's proposal that members refuse simply lapses with its epoch), and a member that
//! refuses an accepted commit recovers by external commit (`external_join`, resync).
//!
//! ## Guarantees
//!
//! * **Bad input is an answer, not a failure.** Whatever bytes arrive, a request the peer got
//!   wrong yields an error `DSResponse` ([`Status::Rejected`] with a [`wire::ErrorCode`]),
//!   leaves storage unchanged (except that a `create_group` refused after its signature
//!   verified consumes its group ID reservation, wire-format.md §4.2) and fans out nothing.
//!   It never panics. `Err` from `process` is
//!   reserved for storage failures and bugs ([`ProcessError`]), and then nothing was written.
//! * **Validate first, write once.** A request is fully validated against what it read before
//!   anything is written; its changes reach storage as one atomic write set, guarded by the
//!   group's version (optimistic concurrency).
//! * **Fanout only after the write.** [`Outcome::fanout`] is returned only once storage
//!   reported the write applied, so every delivery reflects stored state. The write set also
//!   carries the fanout, for backends that keep a durable outbox.
//! * **Exactly one winner.** Of two conflicting commits for the same epoch, exactly one is
//!   accepted, also when they race between read and write on different servers; the other
//!   gets `wrong_epoch` with the current epoch and can retry after processing the winner.
//! * **Retries are safe.** A byte-identical retry of an accepted request gets the original
//!   answer ([`Status::Duplicate`]) and no second fanout; any other reuse of an accepted
//!   signed request inside the authentication window is refused as `replayed_request`.
//!
//! ## Module map
//!
//! | Module | Visibility | Contents |
//! |---|---|---|
//! | [`wire`] | public | Codecs for every struct and codepoint on the wire, nothing else |
//! | `service` | re-exported | [`DeliveryService`], [`Outcome`], [`Status`]: decode, dispatch, the single write |
//! | `time` | re-exported | [`UnixTimeMs`], the type of instants |
//! | `hub_event` | re-exported | [`HubEvent`]: what the embedding server tells the DS about a group |
//! | `handlers` | private | One file per operation: validate against a snapshot, plan the write |
//! | `signing` | private; re-exports [`user_key_hash`] | The client side of signatures: `ClientSignature::sign`, `UserAuthKeyExtension::sign`, `QsClientRequest::sign`, and `user_key_hash` |
//! | `auth` | private | `ClientSignature` checks, the freshness window, replay marks |
//! | `identity` | re-exported | [`CredentialValidator`] and the default [`BasicCredentialValidator`] |
//! | [`storage`] | public | The [`storage::DsStorage`] contract, the durable outbox [`storage::DsOutbox`] and [`storage::InMemoryStorage`] |
//! | `state` | private | The records mimi-ds stores per group, including the openmls `PublicGroup` |
//! | `error` | re-exported | [`ProcessError`] (storage or bug) and [`RejectReason`] (the peer's fault) |
//! | `config` | re-exported | [`DsConfig`] tunables and the hub's [`DsIdentity`] |
//! | `fanout` | re-exported | [`Fanout`]: one delivery to one provider's Queueing Service |
//! | `destination` | re-exported | [`check_host_name`] and [`DestinationPolicy`]: checking a [`Fanout::destination`] before delivery |
//! | [`policy`] | public | Room policy (roles, participants, operational parameters) read from the GroupContext and enforced by the hub (wire-format.md §15) |
//! | [`pseudonym`] | public | MIMIMI pseudonymous credentials: the codecs, the client-side identity links, the hub's validator for pseudonymous groups, and identity links in groups (wrapped keys in commits' SafeAAD, kept and served by the hub; wire-format.md §14) |
//! | [`qs`] | public | The Queueing Service: deliveries, sealed queue IDs, client queue operations, its storage |
//! | [`safe_aad`] | public | The SafeAAD framing of `authenticated_data` (draft-ietf-mls-extensions): one parser, with named refusals, for every component's item (identity link keys, connection responses, franking tags) |
//! | [`connection`] | public | MIMIMI connection establishment: request and response codecs, sealing, the provider's connection keys and inboxes |
//! | [`transport`] | public | The router from HTTP requests to the DS and QS, and the status table |
//! | `app_data` | feature `app-data-update` | AppDataUpdate proposals: the registry of component semantics the hub applies (wire-format.md §15.7) |
//! | `testing` | feature `test-utils` | Real openmls clients and an in-process hub for tests and the demo; the storage conformance suite (`testing::conformance`) |
//! | `fuzzing` | feature `fuzzing` | Fuzz bodies behind the cargo-fuzz targets in `fuzz/` |
//! | `trace` | private; spans with feature `tracing` | One span per DS or QS request, its fields, and where it lives in the step API |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod connection;
pub mod directory;
pub mod franking;
pub mod message_id;
pub mod policy;
pub mod privacy;
pub mod pseudonym;
pub mod qs;
pub mod safe_aad;
pub mod storage;
pub mod transport;
pub mod wire;

mod auth;
mod config;
mod constant_time;
mod destination;
mod error;
mod fanout;
mod handlers;
mod hub_event;
mod identity;
mod service;
mod signing;
mod state;
mod time;
mod trace;

pub use config::*;
pub use destination::{
    check_host_name, DestinationPolicy, DestinationRefusal, HostNameError, MAX_HOST_NAME_LEN,
    MAX_LABEL_LEN,
};
pub use error::*;
pub use fanout::Fanout;
pub use hub_event::HubEvent;
pub use identity::{
    user_of_client_uri, BasicCredentialValidator, CredentialRejection, CredentialValidator,
};
pub use service::*;
pub use signing::user_key_hash;
pub use time::UnixTimeMs;

#[cfg(feature = "app-data-update")]
pub mod app_data;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "test-utils")]
pub mod testing;
