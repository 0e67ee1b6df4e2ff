//! Tests of the examples' HTTPS plumbing (`examples/support/https/`) over loopback: HTTP
//! framing and limits, keep-alive, TLS 1.3 only, mutual TLS and certificate checks, and what a
//! stranger can make the server spend (connection cap, deadlines, repeated `Host`).
//!
//! Everything runs on 127.0.0.1. No test asserts how long something took: waits are bounded
//! (a test fails rather than hangs) and the limits under test are configured short.

#[path = "../examples/support/https/mod.rs"]
mod https;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use https::{
    Handler, HttpRequest, HttpResponse, HttpsClient, HttpsServer, Peer, Pki, ServerLimits,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConnection, StreamOwned};

const A: &str = "a.example";
const B: &str = "b.example";
const MAX_BODY: usize = 1024;

/// Echoes what the server saw, and what TLS said about the peer.
fn echo(request: HttpRequest, peer: &Peer) -> HttpResponse {
    let mut body = format!(
        "{} {} host={} type={} auth={} a={} b={}\n",
        request.method,
        request.path,
        request.header("HOST").unwrap_or("-"),
        request.header("content-type").unwrap_or("-"),
        peer.is_authenticated(),
        peer.is(A),
        peer.is(B),
    )
    .into_bytes();
    body.extend_from_slice(&request.body);
    HttpResponse::new(200, "text/plain", body)
}

fn serve(pki: &Pki, domain: &str, handler: Handler) -> HttpsServer {
    HttpsServer::spawn("127.0.0.1:0", pki.server_config(domain), MAX_BODY, handler).unwrap()
}

fn client(config: Arc<ClientConfig>, domain: &str, server: &HttpsServer) -> HttpsClient {
    HttpsClient::new(
        config,
        HashMap::from([(domain.to_owned(), server.local_addr())]),
    )
}

fn text(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// The rustls error inside an I/O error, if that is what it is.
fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref()
}

/// Sends raw bytes over TLS (no client certificate) and reads until the server closes.
fn raw_exchange(pki: &Pki, addr: SocketAddr, bytes: &[u8]) -> String {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(https::IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from(A).unwrap().to_owned();
    let conn = ClientConnection::new(pki.client_config(None), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn round_trip_and_keep_alive() {
    let pki = Pki::new(&[A]).unwrap();
    let server = serve(&pki, A, Arc::new(echo));
    let client = client(pki.client_config(None), A, &server);

    let response = client
        .post(
            A,
            "/mimi/v1/ds",
            "application/octet-stream",
            b"\x00hello\xff",
        )
        .unwrap();
    assert_eq!(response.status, 200);
    let mut expected =
        b"POST /mimi/v1/ds host=a.example type=application/octet-stream auth=false a=false b=false\n".to_vec();
    expected.extend_from_slice(b"\x00hello\xff");
    assert_eq!(response.body, expected);
    assert_eq!(
        response.header("Content-Length"),
        Some(expected.len().to_string().as_str())
    );

    let response = client.get(A, "/second?x=1").unwrap();
    assert_eq!(
        text(&response),
        "GET /second?x=1 host=a.example type=- auth=false a=false b=false\n"
    );
    // Both requests went over one kept-alive connection.
    assert_eq!(server.connections_accepted(), 1);
}

#[test]
fn client_is_usable_from_several_threads() {
    let pki = Pki::new(&[A]).unwrap();
    let server = serve(&pki, A, Arc::new(echo));
    let client = Arc::new(client(pki.client_config(None), A, &server));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            thread::spawn(move || {
                for i in 0..5 {
                    let body = format!("{t}-{i}");
                    let response = client.post(A, "/", "text/plain", body.as_bytes()).unwrap();
                    assert!(text(&response).ends_with(&format!("\n{body}")));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Connections are reused, not one per request.
    assert!(
        server.connections_accepted() <= 4,
        "{}",
        server.connections_accepted()
    );
}

#[test]
fn server_speaks_only_tls13() {
    let pki = Pki::new(&[A]).unwrap();
    let server = serve(&pki, A, Arc::new(echo));

    // A client that offers only TLS 1.2 is refused with a protocol_version alert.
    let tls12_only = ClientConfig::builder_with_provider(pki.crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_certificate().clone()).unwrap();
            roots
        })
        .with_no_client_auth();
    let err = client(Arc::new(tls12_only), A, &server)
        .get(A, "/")
        .unwrap_err();
    assert_eq!(
        tls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::ProtocolVersion
        )),
        "{err:?}"
    );

    // The Pki's own client negotiates TLS 1.3 with it.
    let mut tcp = TcpStream::connect(server.local_addr()).unwrap();
    let name = ServerName::try_from(A).unwrap().to_owned();
    let mut conn = ClientConnection::new(pki.client_config(None), name).unwrap();
    conn.complete_io(&mut tcp).unwrap();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn mutual_tls_identifies_providers() {
    let pki = Pki::new(&[A, B]).unwrap();
    let server = serve(&pki, A, Arc::new(echo));

    let as_b = client(pki.client_config(Some(B)), A, &server);
    let response = as_b.get(A, "/").unwrap();
    assert_eq!(
        text(&response),
        "GET / host=a.example type=- auth=true a=false b=true\n"
    );

    let anonymous = client(pki.client_config(None), A, &server);
    let response = anonymous.get(A, "/").unwrap();
    assert_eq!(
        text(&response),
        "GET / host=a.example type=- auth=false a=false b=false\n"
    );

    // A client certificate from another CA is refused, not merely ignored.
    let other = Pki::new(&[B]).unwrap();
    let impostor = client(other.client_config(Some(B)), A, &server);
    assert!(impostor.get(A, "/").is_err());
    assert_eq!(anonymous.get(A, "/").unwrap().status, 200);
}

#[test]
fn limits_and_malformed_requests() {
    let pki = Pki::new(&[A]).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = serve(
        &pki,
        A,
        Arc::new(move |request, peer: &Peer| {
            counted.fetch_add(1, Ordering::SeqCst);
            echo(request, peer)
        }),
    );
    let client = client(pki.client_config(None), A, &server);
    let addr = server.local_addr();

    // Exactly max_body is fine, one byte more is 413 and closes the connection.
    assert_eq!(
        client.post(A, "/", "x/y", &[7; MAX_BODY]).unwrap().status,
        200
    );
    let response = client.post(A, "/", "x/y", &[7; MAX_BODY + 1]).unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    // Also when the body is far larger than the socket buffers: the server drains it after
    // answering, instead of resetting the connection under the client's feet.
    let response = client.post(A, "/", "x/y", &vec![7; 2 << 20]).unwrap();
    assert_eq!(response.status, 413);

    // The 413 comes without the body being read: none is sent here, and the answer is
    // immediate rather than after the server's read timeout.
    let huge = "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 999999999999\r\n\r\n";
    assert!(raw_exchange(&pki, addr, huge.as_bytes()).starts_with("HTTP/1.1 413 "));

    let garbage = raw_exchange(&pki, addr, b"GARBAGE\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    assert!(garbage.contains("\r\nConnection: close\r\n"), "{garbage}");
    let folded = "GET / HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\n folded\r\n\r\n";
    assert!(raw_exchange(&pki, addr, folded.as_bytes()).starts_with("HTTP/1.1 400 "));
    let two_lengths = "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    assert!(raw_exchange(&pki, addr, two_lengths.as_bytes()).starts_with("HTTP/1.1 400 "));
    let chunked =
        "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(raw_exchange(&pki, addr, chunked.as_bytes()).starts_with("HTTP/1.1 501 "));

    let big_header = "v".repeat(https::MAX_HEAD);
    let response = client
        .request("GET", A, "/", &[("X-Big", &big_header)], b"")
        .unwrap();
    assert_eq!(response.status, 431);

    // Still serving, and no bad request reached the handler.
    assert_eq!(client.get(A, "/after").unwrap().status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn untrusted_or_misnamed_server_certificate_fails() {
    let pki = Pki::new(&[A, B]).unwrap();
    let rogue = Pki::new(&[A]).unwrap();

    let server = serve(&rogue, A, Arc::new(echo));
    let err = client(pki.client_config(None), A, &server)
        .get(A, "/")
        .unwrap_err();
    assert!(
        matches!(
            tls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );

    // Trusted CA, but the certificate is B's while the client dialled A.
    let server = serve(&pki, B, Arc::new(echo));
    let err = client(pki.client_config(None), A, &server)
        .get(A, "/")
        .unwrap_err();
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");
}

#[test]
fn client_reconnects_once_when_the_server_closed_the_idle_connection() {
    let pki = Pki::new(&[A]).unwrap();
    let config = pki.server_config(A);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = mpsc::channel();
    // A server that answers one request per connection, then closes without saying so in
    // the response (as a keep-alive server does when its idle timeout fires).
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let (tcp, _) = listener.accept().unwrap();
            let conn = ServerConnection::new(config.clone()).unwrap();
            let mut stream = BufReader::new(StreamOwned::new(conn, tcp));
            let mut line = String::new();
            while line != "\r\n" {
                line.clear();
                stream.read_line(&mut line).unwrap();
            }
            let stream = stream.get_mut();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            stream.conn.send_close_notify();
            stream.flush().unwrap();
            closed_tx.send(()).unwrap();
        }
    });
    let client = HttpsClient::new(
        pki.client_config(None),
        HashMap::from([(A.to_owned(), addr)]),
    );
    assert_eq!(client.get(A, "/1").unwrap().body, b"ok");
    closed_rx.recv().unwrap();
    assert_eq!(client.get(A, "/2").unwrap().body, b"ok");
    server.join().unwrap();
}

#[test]
fn shutdown_stops_accepting() {
    let pki = Pki::new(&[A]).unwrap();
    let server = serve(&pki, A, Arc::new(echo));
    let addr = server.local_addr();
    server.shutdown();
    let client = HttpsClient::new(
        pki.client_config(None),
        HashMap::from([(A.to_owned(), addr)]),
    );
    assert!(client.get(A, "/").is_err());
}

// ---------------------------------------------------------------------------------------------
// What a stranger can make the server spend

/// A server for `A` answering with [`echo`], within `limits`.
fn serve_limited(pki: &Pki, limits: ServerLimits) -> HttpsServer {
    HttpsServer::spawn_with("127.0.0.1:0", pki.server_config(A), limits, Arc::new(echo)).unwrap()
}

/// Waits (polling, at most 10 s) until `condition` holds; fails the test otherwise.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the server closed this connection (EOF or reset) within 5 s, reading and
/// discarding whatever it sends first.
fn closed_by_server(tcp: &mut TcpStream) -> bool {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A TLS connection to `addr` that has completed its handshake and then sends nothing.
fn idle_tls(pki: &Pki, addr: SocketAddr) -> StreamOwned<ClientConnection, TcpStream> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(https::IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from(A).unwrap().to_owned();
    let mut conn = ClientConnection::new(pki.client_config(None), name).unwrap();
    conn.complete_io(&mut tcp).unwrap();
    StreamOwned::new(conn, tcp)
}

#[test]
fn connections_over_the_cap_are_refused_and_slots_come_back_when_idle_ones_close() {
    let pki = Pki::new(&[A]).unwrap();
    let limits = ServerLimits {
        max_connections: 2,
        request_deadline: Duration::from_millis(500),
        ..ServerLimits::new(MAX_BODY)
    };
    let server = serve_limited(&pki, limits);
    let addr = server.local_addr();
    let client = client(pki.client_config(None), A, &server);

    // Two clients hold the two slots with idle TLS connections.
    let idle: Vec<_> = (0..2).map(|_| idle_tls(&pki, addr)).collect();
    eventually("two connections open", || server.connections_open() == 2);
    // A third connection is closed at once, before TLS, and a real request fails.
    let mut third = TcpStream::connect(addr).unwrap();
    assert!(closed_by_server(&mut third), "over the cap, still open");
    assert_eq!(server.connections_refused(), 1);
    assert!(client.get(A, "/").is_err());
    assert_eq!(server.connections_refused(), 2);
    assert_eq!(server.connections_open(), 2);

    // The idle clients leave: their slots come back and a normal client is served.
    drop(idle);
    eventually("slots given back", || server.connections_open() == 0);
    assert_eq!(client.get(A, "/back").unwrap().status, 200);
    drop(client);
    eventually("client's connection closed", || {
        server.connections_open() == 0
    });

    // Connections that never even start TLS are admitted, but hold their slot only until the
    // handshake deadline: the server closes them itself, and then serves a normal client.
    let mut silent: Vec<_> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    eventually("two silent connections admitted", || {
        server.connections_open() == 2
    });
    assert_eq!(server.connections_refused(), 2);
    for tcp in &mut silent {
        assert!(
            closed_by_server(tcp),
            "a silent connection was kept past its deadline"
        );
    }
    eventually("slots given back", || server.connections_open() == 0);
    let fresh = HttpsClient::new(
        pki.client_config(None),
        HashMap::from([(A.to_owned(), addr)]),
    );
    assert_eq!(fresh.get(A, "/again").unwrap().status, 200);
}

/// Sends `bytes` one at a time, 50 ms apart, over a client TLS connection to `addr`, and
/// returns how many were sent before the server answered or closed, and what it answered.
fn slow_request(pki: &Pki, addr: SocketAddr, bytes: &[u8]) -> (usize, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let name = ServerName::try_from(A).unwrap().to_owned();
    let mut conn = ClientConnection::new(pki.client_config(None), name).unwrap();
    tcp.set_read_timeout(Some(https::IO_TIMEOUT)).unwrap();
    conn.complete_io(&mut tcp).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let mut answer = Vec::new();
    let mut sent = 0;
    for &byte in bytes {
        conn.writer().write_all(&[byte]).unwrap();
        if conn.write_tls(&mut tcp).is_err() {
            break; // The server has closed.
        }
        sent += 1;
        thread::sleep(Duration::from_millis(50));
        match conn.read_tls(&mut tcp) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(n) if n > 0 => {
                let _ = conn.process_new_packets();
                let _ = conn.reader().read_to_end(&mut answer);
                if answer.is_empty() {
                    continue;
                }
            }
            _ => {}
        }
        break;
    }
    // Read the rest of the answer, if any, until the server closes (bounded).
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while let Ok(n) = conn.read_tls(&mut tcp) {
        if n == 0 || conn.process_new_packets().is_err() {
            break;
        }
        let _ = conn.reader().read_to_end(&mut answer);
    }
    (sent, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn a_slowloris_client_is_cut_off_at_the_request_deadline() {
    let pki = Pki::new(&[A]).unwrap();
    let limits = ServerLimits {
        request_deadline: Duration::from_secs(1),
        ..ServerLimits::new(MAX_BODY)
    };
    let server = serve_limited(&pki, limits);
    let addr = server.local_addr();

    // A header section that never ends, one byte every 50 ms: each read succeeds well within
    // the I/O timeout, so only the deadline on the whole request stops it. The client would
    // take 10 s to send it all.
    let head = format!("GET / HTTP/1.1\r\nHost: {A}\r\nX-Slow: {}", "z".repeat(150));
    let (sent, answer) = slow_request(&pki, addr, head.as_bytes());
    assert!(sent < head.len(), "the server read all {sent} bytes");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");

    // The same for a body trickling in after a complete header section.
    let body = "b".repeat(150);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {A}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (sent, answer) = slow_request(&pki, addr, request.as_bytes());
    assert!(sent < request.len(), "the server read all {sent} bytes");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");

    // A TLS handshake trickling in is cut off too (without an answer: there is no TLS yet).
    let name = ServerName::try_from(A).unwrap().to_owned();
    let mut hello = Vec::new();
    ClientConnection::new(pki.client_config(None), name)
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    let mut cut_off = false;
    for &byte in &hello {
        if tcp.write_all(&[byte]).is_err() {
            cut_off = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
        tcp.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let read = tcp.read(&mut buf);
        tcp.set_nonblocking(false).unwrap();
        if !matches!(&read, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            cut_off = true;
            break;
        }
    }
    assert!(
        cut_off,
        "the server waited for all {} bytes of the hello",
        hello.len()
    );

    // Meanwhile and afterwards, normal clients are served.
    assert_eq!(
        client(pki.client_config(None), A, &server)
            .get(A, "/")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn repeated_or_missing_host_is_a_bad_request() {
    let pki = Pki::new(&[A]).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = serve(
        &pki,
        A,
        Arc::new(move |request, peer: &Peer| {
            counted.fetch_add(1, Ordering::SeqCst);
            echo(request, peer)
        }),
    );
    let addr = server.local_addr();
    for request in [
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a.example\r\nHOST: b.example\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Host: a.example\r\n\r\n",
    ] {
        let answer = raw_exchange(&pki, addr, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 "), "{request:?}: {answer}");
        assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no bad request reached the handler"
    );
    // HTTP/1.0 may omit Host; one Host is fine.
    let answer = raw_exchange(&pki, addr, b"GET /old HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let answer = raw_exchange(
        &pki,
        addr,
        b"GET /one HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
