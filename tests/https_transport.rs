//! Tests of the examples' HTTPS plumbing (`examples/support/https.rs`) over loopback: HTTP
//! framing and limits, keep-alive, TLS 1.3 only, mutual TLS and certificate checks.

#[path = "../examples/support/https/mod.rs"]
mod https;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use https::{Handler, HttpRequest, HttpResponse, HttpsClient, HttpsServer, Peer, Pki};
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
