//! The HTTPS client: keep-alive connections per provider domain, one transparent reconnect.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use rustls::pki_types::ServerName;
use rustls::StreamOwned;
use rustls::{ClientConfig, ClientConnection};

use super::http1::*;
use super::*;

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

pub(super) type ClientStream = BufReader<StreamOwned<ClientConnection, TcpStream>>;

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

pub(super) enum Failure {
    /// Nothing came back before EOF or a reset: the connection was (most likely) closed by
    /// the server before it saw the request, so sending it again is safe.
    Stale(io::Error),
    Io(io::Error),
}

pub(super) fn exchange(
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

pub(super) fn read_response(
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

pub(super) fn encode_request(
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
