//! The HTTPS server: accept thread, one thread per connection (at most
//! [`ServerLimits::max_connections`]), HTTP/1.1 with keep-alive, a deadline on every phase.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::StreamOwned;
use rustls::{ServerConfig, ServerConnection};

use super::http1::*;
use super::limits::{DeadlineStream, ServerLimits};
use super::*;

/// An HTTPS server on its own accept thread, one thread per connection. Stops accepting when
/// shut down or dropped; connections already open finish on their own (at the latest after
/// their current deadline: see [`ServerLimits`]).
pub struct HttpsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    refused: AtomicU64,
    open: AtomicUsize,
}

/// One of [`ServerLimits::max_connections`] slots, given back when the connection's thread
/// ends (or when the thread could not be started and the closure holding it is dropped).
struct Slot(Arc<Counts>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HttpsServer {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves HTTP/1.1 with keep-alive over TLS, with
    /// the default [`ServerLimits`] for `max_body`.
    pub fn spawn(
        addr: &str,
        config: Arc<ServerConfig>,
        max_body: usize,
        handler: Handler,
    ) -> io::Result<Self> {
        Self::spawn_with(addr, config, ServerLimits::new(max_body), handler)
    }

    /// Binds `addr` and serves HTTP/1.1 with keep-alive over TLS within `limits`.
    ///
    /// Only `Content-Length` bodies are accepted: `Transfer-Encoding` gets 501, a header
    /// section over [`MAX_HEAD`] gets 431, a declared body over `max_body` gets 413 (the body
    /// is not read), a request not complete by its deadline gets 408, a malformed request, an
    /// HTTP/1.1 request without `Host` or any request with more than one `Host` gets 400
    /// (RFC 9112 §3.2), and each of these closes the connection. Over
    /// [`ServerLimits::max_connections`], a new connection is closed without a word.
    pub fn spawn_with(
        addr: &str,
        config: Arc<ServerConfig>,
        limits: ServerLimits,
        handler: Handler,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (stop2, counts2) = (stop.clone(), counts.clone());
        let limits = Arc::new(limits);
        let thread = thread::Builder::new()
            .name("https-accept".into())
            .spawn(move || {
                for tcp in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = tcp else {
                        // E.g. out of file descriptors: back off instead of spinning.
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    counts2.accepted.fetch_add(1, Ordering::SeqCst);
                    // Only this thread adds to `open`, so the check cannot race another add.
                    if counts2.open.load(Ordering::SeqCst) >= limits.max_connections {
                        counts2.refused.fetch_add(1, Ordering::SeqCst);
                        drop(tcp);
                        continue;
                    }
                    counts2.open.fetch_add(1, Ordering::SeqCst);
                    let slot = Slot(counts2.clone());
                    let (config, handler, limits) =
                        (config.clone(), handler.clone(), limits.clone());
                    // If no thread can be started, the closure (socket and slot) is dropped.
                    let _ = thread::Builder::new()
                        .name("https-conn".into())
                        .spawn(move || {
                            let _slot = slot;
                            serve_connection(tcp, config, &limits, &handler);
                        });
                }
            })?;
        Ok(Self {
            addr,
            stop,
            counts,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many TCP connections the server has accepted so far (served or refused).
    pub fn connections_accepted(&self) -> u64 {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// How many connections were closed at once because [`ServerLimits::max_connections`]
    /// were open.
    pub fn connections_refused(&self) -> u64 {
        self.counts.refused.load(Ordering::SeqCst)
    }

    /// How many connections are open now (each with its thread).
    pub fn connections_open(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }

    /// Stops accepting connections (also done on drop).
    pub fn shutdown(self) {}

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // `accept` has no timeout: wake it with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip([127, 0, 0, 1].into());
        }
        if TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok() {
            let _ = thread.join();
        } // else: leave the thread detached rather than risk blocking forever.
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) type ServerStream = BufReader<StreamOwned<ServerConnection, DeadlineStream>>;

pub(super) fn serve_connection(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    limits: &ServerLimits,
    handler: &Handler,
) {
    let Some((mut stream, peer)) = accept_tls(tcp, config, limits) else {
        return;
    };
    loop {
        // Idle until the next request's first byte, then a deadline for the whole request.
        stream.get_mut().sock.deadline_in(limits.idle_timeout);
        if !matches!(stream.fill_buf(), Ok(buffered) if !buffered.is_empty()) {
            return;
        }
        stream.get_mut().sock.deadline_in(limits.request_deadline);
        let (response, close) = match read_request(&mut stream, limits.max_body) {
            // A panicking handler is a bug in the example; answer 500 rather than leave the
            // client waiting for its timeout.
            Ok(ParsedRequest {
                request,
                keep_alive,
            }) => match panic::catch_unwind(AssertUnwindSafe(|| handler(request, &peer))) {
                Ok(response) => {
                    let close = !keep_alive || has_token(&response.headers, "connection", "close");
                    (response, close)
                }
                Err(_) => (HttpResponse::text(500, "handler panicked"), true),
            },
            Err(RequestError::Reply(status, text)) => (HttpResponse::text(status, text), true),
            // EOF, TLS error: nothing sensible to answer.
            Err(RequestError::Drop) => return,
        };
        stream.get_mut().sock.deadline_in(limits.request_deadline);
        if write_response(stream.get_mut(), &response, close).is_err() || close {
            linger_close(stream.into_inner());
            return;
        }
    }
}

pub(super) fn accept_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    limits: &ServerLimits,
) -> Option<(ServerStream, Peer)> {
    set_timeouts(&tcp).ok()?;
    let mut tcp = DeadlineStream::new(tcp, limits.io_timeout);
    tcp.deadline_in(limits.request_deadline);
    let mut conn = ServerConnection::new(config).ok()?;
    // Finish the handshake before the first request, so the client certificate is known.
    conn.complete_io(&mut tcp).ok()?;
    if conn.is_handshaking() {
        return None;
    }
    let chain = conn
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    Some((BufReader::new(StreamOwned::new(conn, tcp)), Peer { chain }))
}

pub(super) struct ParsedRequest {
    request: HttpRequest,
    keep_alive: bool,
}

pub(super) enum RequestError {
    /// Answer with this status and close (408 when the request's deadline passed).
    Reply(u16, &'static str),
    /// Close without answering.
    Drop,
}

pub(super) fn read_request(
    stream: &mut ServerStream,
    max_body: usize,
) -> Result<ParsedRequest, RequestError> {
    let head = match read_head(stream) {
        Ok(head) => head,
        Err(HeadError::TooLarge) => {
            return Err(RequestError::Reply(431, "header section too large"))
        }
        Err(HeadError::Malformed) => return Err(RequestError::Reply(400, "malformed request")),
        Err(HeadError::Io(e)) if is_timeout(&e) => return Err(too_slow()),
        Err(HeadError::Nothing(_) | HeadError::Io(_)) => return Err(RequestError::Drop),
    };
    let bad = RequestError::Reply(400, "malformed request");
    let (start, headers) = parse_head(&head).ok_or(bad)?;
    let mut parts = start.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Reply(400, "malformed request line"));
    };
    if !is_token(method) || !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(RequestError::Reply(400, "malformed request line"));
    }
    // RFC 9112 §3.2: 400 for more than one Host field, or none in HTTP/1.1. A second Host
    // could name another authority than the one a router checks.
    let hosts = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 {
        return Err(RequestError::Reply(400, "repeated Host header"));
    }
    if hosts == 0 && version == "HTTP/1.1" {
        return Err(RequestError::Reply(400, "no Host header"));
    }
    let keep_alive = match version {
        "HTTP/1.1" => !has_token(&headers, "connection", "close"),
        "HTTP/1.0" => has_token(&headers, "connection", "keep-alive"),
        _ => return Err(RequestError::Reply(400, "unsupported HTTP version")),
    };
    if find_header(&headers, "transfer-encoding").is_some() {
        return Err(RequestError::Reply(
            501,
            "only Content-Length bodies are supported",
        ));
    }
    let len = content_length(&headers)
        .ok_or(RequestError::Reply(400, "bad Content-Length"))?
        .unwrap_or(0);
    if len > max_body as u64 {
        return Err(RequestError::Reply(413, "body too large"));
    }
    let body = read_body(stream, len).map_err(|e| {
        if is_timeout(&e) {
            too_slow()
        } else {
            RequestError::Drop
        }
    })?;
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        headers,
        body,
    };
    Ok(ParsedRequest {
        request,
        keep_alive,
    })
}

/// The request did not arrive by its deadline, or stalled longer than the I/O timeout (RFC
/// 9110 §15.5.9).
fn too_slow() -> RequestError {
    RequestError::Reply(408, "request not received in time")
}

pub(super) fn write_response(
    w: &mut impl Write,
    response: &HttpResponse,
    close: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        // Skip what we write ourselves, and anything that would break the framing.
        if !framing && is_token(name) && is_field_value(value) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response.body);
    // One write, so headers and body share TLS records.
    w.write_all(&bytes)?;
    w.flush()
}

/// Sends close_notify, half-closes, and drains what the client is still sending (bounded), so
/// that the client reads our last response instead of a connection reset.
pub(super) fn linger_close(mut stream: StreamOwned<ServerConnection, DeadlineStream>) {
    stream.sock.deadline_in(LINGER);
    stream.conn.send_close_notify();
    if stream.flush().is_err() || stream.sock.tcp.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sock = (&stream.sock.tcp).take(LINGER_MAX_BYTES);
    let mut buf = [0u8; 8192];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || sock.get_ref().set_read_timeout(Some(left)).is_err() {
            return;
        }
        if !matches!(sock.read(&mut buf), Ok(n) if n > 0) {
            return;
        }
    }
}
