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
//! Include it with `#[path = "support/https.rs"] mod https;` (or `../examples/support/https.rs`
//! from `tests/`).

// Each includer (server example, demo, tests) uses a different subset, and includes it as a
// private module, where `pub` marks the module's interface rather than crate-level reach.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::StreamOwned;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

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

/// What TLS authenticated about the connecting peer.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's certificate chain, leaf first; rustls has already verified it against the
    /// [`Pki`]'s CA during the handshake. Empty when the client presented none.
    chain: Vec<CertificateDer<'static>>,
}

impl Peer {
    /// True iff the peer presented a client certificate (which the server verified).
    pub fn is_authenticated(&self) -> bool {
        !self.chain.is_empty()
    }

    /// True iff the peer presented a verified client certificate that is valid for `domain`
    /// (a DNS subject alternative name matching it), i.e. the peer is that provider.
    pub fn is(&self, domain: &str) -> bool {
        let (Some(leaf), Ok(name)) = (self.chain.first(), ServerName::try_from(domain)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
            .is_ok()
    }
}

/// A throw-away certificate authority for 127.0.0.1 runs: one CA, and one leaf certificate
/// per provider domain (subject alternative name = that DNS name) that serves both as TLS
/// server certificate and as TLS client certificate (mutual TLS between providers).
pub struct Pki {
    ca: CertificateDer<'static>,
    leaves: HashMap<String, (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)>,
    provider: Arc<CryptoProvider>,
}

impl Pki {
    /// Generates a CA and one leaf certificate per domain (ECDSA P-256 keys).
    pub fn new(domains: &[&str]) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::new())?;
        // A name of its own per Pki, so that a certificate from another Pki is reported as
        // an unknown issuer rather than a bad signature by a same-named CA.
        let tag: String = ca_key.public_key_raw()[1..9]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("mimi-ds example CA {tag}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;

        let mut leaves = HashMap::new();
        for &domain in domains {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![domain.to_owned()])?;
            params.distinguished_name.push(DnType::CommonName, domain);
            params.key_usages = vec![Ku::DigitalSignature];
            // Both: webpki checks serverAuth on server certificates and clientAuth on client
            // certificates, and a provider's one certificate is used both ways.
            params.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
            let cert = params.signed_by(&key, &ca, &ca_key)?;
            let key = PrivatePkcs8KeyDer::from(key.serialize_der());
            leaves.insert(domain.to_owned(), (cert.der().clone(), key));
        }
        // The ring provider explicitly, not the process default, so that nothing depends on
        // which rustls backend some other crate in the build happened to install.
        let provider = Arc::new(ring::default_provider());
        Ok(Self {
            ca: ca.der().clone(),
            leaves,
            provider,
        })
    }

    /// The CA certificate (DER), for building other client configurations.
    pub fn ca_certificate(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The ring crypto provider all configurations of this `Pki` use.
    pub fn crypto_provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    /// A TLS 1.3-only server configuration presenting the certificate of `domain`. Client
    /// certificates are requested and verified against the CA, but optional: end-user clients
    /// have none, providers present theirs (see [`Peer`]).
    ///
    /// # Panics
    /// If `domain` was not passed to [`Pki::new`] (a programming error in the example).
    pub fn server_config(&self, domain: &str) -> Arc<ServerConfig> {
        let (cert, key) = self.leaf(domain);
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()),
            self.provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        // Invariant: only fails for an empty root store, and ours holds the CA.
        .expect("client verifier over a non-empty root store");
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            // Invariant: the ring provider supports TLS 1.3.
            .expect("ring supports TLS 1.3")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            // Invariant: the key is the one the certificate was generated for.
            .expect("leaf certificate matches its key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS 1.3-only client configuration trusting only the CA; it presents the certificate
    /// of `client_domain` when given (mutual TLS between providers).
    ///
    /// # Panics
    /// If `client_domain` was not passed to [`Pki::new`] (a programming error in the example).
    pub fn client_config(&self, client_domain: Option<&str>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            // Invariant: the ring provider supports TLS 1.3.
            .expect("ring supports TLS 1.3")
            .with_root_certificates(self.roots());
        let mut config = match client_domain {
            None => builder.with_no_client_auth(),
            Some(domain) => {
                let (cert, key) = self.leaf(domain);
                builder
                    .with_client_auth_cert(vec![cert], key)
                    // Invariant: the key is the one the certificate was generated for.
                    .expect("leaf certificate matches its key")
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // Invariant: rcgen produced this certificate, so webpki can parse it.
        roots
            .add(self.ca.clone())
            .expect("rcgen CA certificate parses");
        roots
    }

    fn leaf(&self, domain: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let Some((cert, key)) = self.leaves.get(domain) else {
            panic!("Pki has no certificate for {domain:?}; pass it to Pki::new");
        };
        (cert.clone(), PrivateKeyDer::Pkcs8(key.clone_key()))
    }
}

/// The server's request handler: called once per request, on that connection's thread.
pub type Handler = Arc<dyn Fn(HttpRequest, &Peer) -> HttpResponse + Send + Sync>;

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

type ServerStream = BufReader<StreamOwned<ServerConnection, TcpStream>>;

fn serve_connection(tcp: TcpStream, config: Arc<ServerConfig>, max_body: usize, handler: &Handler) {
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

fn accept_tls(tcp: TcpStream, config: Arc<ServerConfig>) -> Option<(ServerStream, Peer)> {
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

struct ParsedRequest {
    request: HttpRequest,
    keep_alive: bool,
}

enum RequestError {
    /// Answer with this status and close.
    Reply(u16, &'static str),
    /// Close without answering.
    Drop,
}

fn read_request(stream: &mut ServerStream, max_body: usize) -> Result<ParsedRequest, RequestError> {
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

fn write_response(w: &mut impl Write, response: &HttpResponse, close: bool) -> io::Result<()> {
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
fn linger_close(mut stream: StreamOwned<ServerConnection, TcpStream>) {
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

/// An HTTPS client for provider-to-provider (or user-to-provider) calls on loopback: domains
/// resolve through a fixed map, and idle keep-alive connections are kept for reuse. Used from
/// one thread, it keeps one connection per domain; used from several at once, each request
/// takes an idle connection or opens its own, and up to [`MAX_IDLE_PER_DOMAIN`] are kept.
pub struct HttpsClient {
    config: Arc<ClientConfig>,
    resolve: HashMap<String, SocketAddr>,
    /// Most recently used last (it is the least likely to have been closed by the server).
    idle: Mutex<HashMap<String, Vec<ClientStream>>>,
}

/// How many idle connections [`HttpsClient`] keeps per domain. More than one, so that a few
/// threads sharing a client do not keep closing and reopening connections.
pub const MAX_IDLE_PER_DOMAIN: usize = 4;

type ClientStream = BufReader<StreamOwned<ClientConnection, TcpStream>>;

impl HttpsClient {
    /// A client using `config` (see [`Pki::client_config`]) and resolving domains via
    /// `resolve`.
    pub fn new(config: Arc<ClientConfig>, resolve: HashMap<String, SocketAddr>) -> Self {
        Self {
            config,
            resolve,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Sends a request to `domain` (TLS server name and `Host` header) and reads the response.
    ///
    /// `Content-Length` is set from `body`; `headers` must not contain `Host`,
    /// `Content-Length` or `Transfer-Encoding`. If a reused keep-alive connection turns out
    /// to have been closed by the server (no response byte at all), the request is sent once
    /// more on a fresh connection; a fresh connection's failure is returned as is.
    pub fn request(
        &self,
        method: &str,
        domain: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let wire = encode_request(method, domain, path, headers, body)?;
        let head_only = method == "HEAD";
        let idle = self.lock_idle().get_mut(domain).and_then(Vec::pop);
        if let Some(mut stream) = idle {
            match exchange(&mut stream, &wire, head_only) {
                Ok((response, reusable)) => {
                    return Ok(self.finish(domain, stream, response, reusable))
                }
                Err(Failure::Stale(_)) => {} // The server closed it while idle: reconnect.
                Err(Failure::Io(e)) => return Err(e),
            }
        }
        let mut stream = self.connect(domain)?;
        match exchange(&mut stream, &wire, head_only) {
            Ok((response, reusable)) => Ok(self.finish(domain, stream, response, reusable)),
            Err(Failure::Stale(e) | Failure::Io(e)) => Err(e),
        }
    }

    /// `POST` with a `Content-Type`.
    pub fn post(
        &self,
        domain: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        self.request(
            "POST",
            domain,
            path,
            &[("Content-Type", content_type)],
            body,
        )
    }

    /// `GET` without a body.
    pub fn get(&self, domain: &str, path: &str) -> io::Result<HttpResponse> {
        self.request("GET", domain, path, &[], &[])
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<ClientStream>>> {
        // A panic while holding the lock cannot leave the map inconsistent: take the guard.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn finish(
        &self,
        domain: &str,
        stream: ClientStream,
        resp: HttpResponse,
        reusable: bool,
    ) -> HttpResponse {
        if reusable {
            let mut idle = self.lock_idle();
            let pool = idle.entry(domain.to_owned()).or_default();
            if pool.len() < MAX_IDLE_PER_DOMAIN {
                pool.push(stream);
            }
        }
        resp
    }

    fn connect(&self, domain: &str) -> io::Result<ClientStream> {
        let addr = self.resolve.get(domain).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no address for domain {domain:?}"),
            )
        })?;
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut tcp = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
        set_timeouts(&tcp)?;
        let mut conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Handshake now, so that certificate errors surface as such (an io::Error wrapping a
        // rustls::Error) rather than in the middle of writing the request.
        conn.complete_io(&mut tcp)?;
        if conn.is_handshaking() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(BufReader::new(StreamOwned::new(conn, tcp)))
    }
}

enum Failure {
    /// Nothing came back before EOF or a reset: the connection was (most likely) closed by
    /// the server before it saw the request, so sending it again is safe.
    Stale(io::Error),
    Io(io::Error),
}

fn exchange(
    stream: &mut ClientStream,
    wire: &[u8],
    head_only: bool,
) -> Result<(HttpResponse, bool), Failure> {
    if let Err(e) = stream
        .get_mut()
        .write_all(wire)
        .and_then(|()| stream.get_mut().flush())
    {
        return Err(if is_timeout(&e) {
            Failure::Io(e)
        } else {
            Failure::Stale(e)
        });
    }
    let head = match read_head(stream) {
        Ok(head) => head,
        // A timeout means the server may be working on it: never resend then.
        Err(HeadError::Nothing(e)) if !is_timeout(&e) => return Err(Failure::Stale(e)),
        Err(HeadError::Nothing(e) | HeadError::Io(e)) => return Err(Failure::Io(e)),
        Err(HeadError::TooLarge | HeadError::Malformed) => {
            return Err(Failure::Io(invalid("malformed response header section")))
        }
    };
    read_response(stream, &head, head_only).map_err(Failure::Io)
}

fn read_response(
    stream: &mut ClientStream,
    head: &[u8],
    head_only: bool,
) -> io::Result<(HttpResponse, bool)> {
    let (start, headers) = parse_head(head).ok_or_else(|| invalid("malformed response head"))?;
    let mut parts = start.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().unwrap_or_default();
    // No interim (1xx) responses: we never send `Expect: 100-continue` or `Upgrade`.
    let status: u16 = match status.parse() {
        Ok(s) if (200..1000).contains(&s) && status.len() == 3 => s,
        _ => return Err(invalid("malformed or interim status line")),
    };
    let reusable = match version {
        "HTTP/1.1" => !has_token(&headers, "connection", "close"),
        "HTTP/1.0" => false,
        _ => return Err(invalid("unsupported HTTP version in response")),
    };
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if find_header(&headers, "transfer-encoding").is_some() {
        return Err(invalid("only Content-Length response bodies are supported"));
    } else {
        // Like the server, only Content-Length framing (a missing one means no body: the
        // server in this module always sends it).
        match content_length(&headers).ok_or_else(|| invalid("bad Content-Length"))? {
            Some(len) if len > MAX_RESPONSE_BODY as u64 => return Err(invalid("body too large")),
            len => read_body(stream, len.unwrap_or(0))?,
        }
    };
    Ok((
        HttpResponse {
            status,
            headers,
            body,
        },
        reusable,
    ))
}

fn encode_request(
    method: &str,
    domain: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Vec<u8>> {
    let bad_input = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    if !is_token(method) {
        return Err(bad_input("invalid method"));
    }
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad_input(
            "path must start with '/' and contain no spaces or controls",
        ));
    }
    if !is_field_value(domain) || domain.contains(' ') {
        return Err(bad_input("invalid domain"));
    }
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {domain}\r\n");
    for (name, value) in headers {
        let reserved = ["host", "content-length", "transfer-encoding"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if reserved || !is_token(name) || !is_field_value(value) {
            return Err(bad_input("invalid or reserved header"));
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    // RFC 9110 §8.6: no Content-Length on a bodiless GET/HEAD.
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 message parsing shared by server and client.

enum HeadError {
    /// Not a single byte arrived (EOF, reset, timeout): the error says which.
    Nothing(io::Error),
    /// The head exceeded [`MAX_HEAD`].
    TooLarge,
    /// The connection ended in the middle of the head, or a line is not valid.
    Malformed,
    /// An I/O error after part of the head arrived.
    Io(io::Error),
}

/// Reads a header section up to and including its empty line, at most [`MAX_HEAD`] bytes.
fn read_head(r: &mut impl BufRead) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::new();
    loop {
        let room = MAX_HEAD - head.len();
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let start = head.len();
        match r.by_ref().take(room as u64).read_until(b'\n', &mut head) {
            Ok(0) if head.is_empty() => {
                return Err(HeadError::Nothing(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Err(HeadError::Malformed), // EOF inside the head.
            Ok(_) => {}
            Err(e) if head.is_empty() => return Err(HeadError::Nothing(e)),
            Err(e) => return Err(HeadError::Io(e)),
        }
        if head.last() != Some(&b'\n') {
            return Err(if head.len() == MAX_HEAD {
                HeadError::TooLarge
            } else {
                HeadError::Malformed
            });
        }
        if start > 0 && matches!(&head[start..], b"\r\n" | b"\n") {
            return Ok(head);
        }
    }
}

/// Splits a head into its start line and header fields; `None` if any line is invalid.
fn parse_head(head: &[u8]) -> Option<(&str, Vec<(String, String)>)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next()?;
    if start.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        // No whitespace before the colon (RFC 9112 §5.1) and no obsolete line folding.
        let (name, value) = line.split_once(':')?;
        let value = value.trim_matches([' ', '\t']);
        if !is_token(name) || !is_field_value(value) {
            return None;
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Some((start, headers))
}

/// `Some(None)` without `Content-Length`, `None` if invalid or conflicting.
fn content_length(headers: &[(String, String)]) -> Option<Option<u64>> {
    let mut len = None;
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = value.parse().ok()?;
        if len.is_some_and(|l| l != value) {
            return None;
        }
        len = Some(value);
    }
    Some(len)
}

fn read_body(r: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    // Grow as data arrives rather than trusting the declared length for the allocation.
    let mut body = Vec::with_capacity(len.min(64 * 1024) as usize);
    r.by_ref().take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether any `name` header lists `token` (comma-separated, case-insensitive).
fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn set_timeouts(tcp: &TcpStream) -> io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    // Requests and responses are written in one piece; don't wait for more.
    tcp.set_nodelay(true)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}
