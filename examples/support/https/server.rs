//! The HTTPS server: accept thread, one thread per connection, HTTP/1.1 with keep-alive.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::StreamOwned;
use rustls::{ServerConfig, ServerConnection};

use super::http1::*;
use super::*;

/// An HTTPS server on its own accept thread, one thread per connection. Stops accepting when
/// shut down or dropped; connections already open finish on their own (at the latest after
/// [`IO_TIMEOUT`] of idleness).
pub struct HttpsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves HTTP/1.1 with keep-alive over TLS.
    ///
    /// Only `Content-Length` bodies are accepted: `Transfer-Encoding` gets 501, a header
    /// section over [`MAX_HEAD`] gets 431, a declared body over `max_body` gets 413 (the body
    /// is not read), a malformed request gets 400, and each of these closes the connection.
    pub fn spawn(
        addr: &str,
        config: Arc<ServerConfig>,
        max_body: usize,
        handler: Handler,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
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
                    accepted2.fetch_add(1, Ordering::SeqCst);
                    let (config, handler) = (config.clone(), handler.clone());
                    // If no thread can be started, the closure (and the socket) is dropped.
                    let _ = thread::Builder::new()
                        .name("https-conn".into())
                        .spawn(move || serve_connection(tcp, config, max_body, &handler));
                }
            })?;
        Ok(Self {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many TCP connections the server has accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
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

pub(super) type ServerStream = BufReader<StreamOwned<ServerConnection, TcpStream>>;

pub(super) fn serve_connection(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    max_body: usize,
    handler: &Handler,
) {
    let Some((mut stream, peer)) = accept_tls(tcp, config) else {
        return;
    };
    loop {
        let (response, close) = match read_request(&mut stream, max_body) {
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
            // EOF, TLS error, timeout: nothing sensible to answer.
            Err(RequestError::Drop) => return,
        };
        if write_response(stream.get_mut(), &response, close).is_err() || close {
            linger_close(stream.into_inner());
            return;
        }
    }
}

pub(super) fn accept_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
) -> Option<(ServerStream, Peer)> {
    set_timeouts(&tcp).ok()?;
    let mut tcp = tcp;
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
    /// Answer with this status and close.
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
    let body = read_body(stream, len).map_err(|_| RequestError::Drop)?;
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
pub(super) fn linger_close(mut stream: StreamOwned<ServerConnection, TcpStream>) {
    stream.conn.send_close_notify();
    if stream.flush().is_err() || stream.sock.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sock = (&stream.sock).take(LINGER_MAX_BYTES);
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
