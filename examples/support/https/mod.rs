//! Minimal HTTPS (HTTP/1.1 over TLS 1.3) for the examples and loopback tests.
//!
//! This module knows nothing about MIMI: it moves [`HttpRequest`]s and [`HttpResponse`]s over
//! rustls with plain `std` threads, so that the examples can show the sans-IO library wired
//! to real sockets without pulling an async runtime into the dev-dependencies.
//!
//! Everything runs on 127.0.0.1 with a throw-away certificate authority ([`Pki`]): one leaf
//! certificate per provider domain, used both as that provider's server certificate and as its
//! client certificate when it calls another provider (mutual TLS). End-user clients connect
//! without a certificate.
//!
//! HTTP support is deliberately small: `Content-Length` framing only (no chunked encoding),
//! one thread per connection, keep-alive, and hard limits on header and body sizes. Bad
//! network input never panics: a malformed request gets a 4xx and the connection is closed, a
//! TLS error just closes it.
//!
//! # What a stranger can make the server spend
//!
//! A later version replaces this server; until then it is bounded by [`ServerLimits`]:
//!
//! * at most `max_connections` connections (threads) at once (default 256); beyond that a new
//!   connection is closed as soon as it is accepted, before any TLS work;
//! * the TLS handshake, each request (from its first byte to the end of its body) and each
//!   response write must complete within `request_deadline` (default 10 s), however the
//!   client paces its bytes: a slowloris client is answered 408 and closed at the deadline;
//! * a connection waits at most `idle_timeout` (default 10 s) for its next request;
//! * a header section is at most [`MAX_HEAD`] bytes, a body at most `max_body`, and after an
//!   error the server drains at most 4 MiB for 2 s before closing;
//! * a request with more than one `Host`, or an HTTP/1.1 request with none, gets 400.
//!
//! What it does not bound: connections per client address (one client can take every slot;
//! each is held for at most the handshake deadline plus the idle timeout, or a request
//! deadline, and then it must reconnect), the handler's own running time, and the kernel's
//! accept backlog. A production server puts per-address limits in front (a load balancer or
//! firewall) or replaces the thread per connection with an event loop.
//!
//! Include it with `#[path = "support/https/mod.rs"] mod https;` (from `tests/`:
//! `../examples/support/https/mod.rs`). Files: [`pki`] (certificates, peer identity),
//! [`server`], [`client`], `http1` (message framing both use).

// Each includer (server example, demo, tests) uses a different subset, and includes it as a
// private module, where `pub` marks the module's interface rather than crate-level reach.
#![allow(dead_code, unreachable_pub)]

mod client;
mod http1;
mod limits;
mod pki;
mod server;

pub use client::HttpsClient;
pub use limits::ServerLimits;
pub use pki::{Peer, Pki};
pub use server::HttpsServer;

use std::sync::Arc;
use std::time::Duration;

use http1::find_header;

/// Read and write timeout on every socket, so that a stuck peer cannot hang a thread (or a
/// test) for longer than this. It is also how long the server keeps an idle connection open.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request or response header section (start line and headers) we accept.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body the client accepts (requests are bounded by the server's `max_body`).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;
/// After an error response, how long and how much the server keeps reading (and discarding)
/// before closing, so that closing with unread data does not send a TCP reset that could
/// destroy the response before the client has read it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// An HTTP request as the server's handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target in origin form, e.g. `/mimi/v1/ds`; always starts with `/`.
    pub path: String,
    /// Header fields in the order received; names as sent (compare case-insensitively).
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes, at most the server's `max_body`).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// An HTTP response: built by the server's handler, or returned by [`HttpsClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header fields. The server writes `Content-Length` (and `Connection: close` when
    /// closing) itself and ignores those a handler sets, except that a handler's
    /// `Connection: close` closes the connection after the response.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with a status, a `Content-Type` and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let headers = vec![("Content-Type".to_owned(), content_type.to_owned())];
        Self {
            status,
            headers,
            body: body.into(),
        }
    }

    /// A `text/plain` response, for errors and simple endpoints.
    pub fn text(status: u16, text: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", text)
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The server's request handler: called once per request, on that connection's thread.
pub type Handler = Arc<dyn Fn(HttpRequest, &Peer) -> HttpResponse + Send + Sync>;
