//! The connection cap (`Limits::max_connections`) and the `Host` rules on the real server
//! over loopback HTTPS.
//!
//! The cap: the accept loop takes a slot for every accepted TCP connection and holds it until
//! the connection's task ends (handshake, requests, close); a connection accepted while every
//! slot is taken is closed at once, before the TLS handshake (`accept_loop` in
//! server/src/lib.rs). Its client sees the handshake fail; nothing is queued.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use mimi_ds::testing::TestClient;
use mimi_ds::wire::{decode_exact, DsResponse, DsResponseBody, ErrorCode};
use mimi_ds_server::{RunningServer, StorageChoice};
use rustls::pki_types::ServerName;
use support::*;
use tokio::io::AsyncWriteExt;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

const MAX_CONNECTIONS: usize = 3;

/// A hub on SQLite with a cap of [`MAX_CONNECTIONS`], and Alice's group in it.
async fn hub(root: &Path) -> (Net, RunningServer, std::path::PathBuf, TestClient) {
    let net = Net {
        pki: Pki::new(&[ALPHA]),
    };
    let database = root.join("hub.sqlite3");
    let mut config = config(
        &net.pki,
        ALPHA,
        true,
        StorageChoice::Sqlite(database.clone()),
        &state_dir(root, "alpha"),
        directory(&[]),
    );
    config.limits.max_connections = MAX_CONNECTIONS;
    let hub = start(config).await;
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    net.create_queue(&mut alice, hub.local_addr()).await;
    net.create_group(&mut alice, &hub).await;
    // Let the relay finish whatever the group's creation stored.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (net, hub, database, alice)
}

/// A TLS connection, or why not (within 5 s).
async fn try_tls(net: &Net, hub: &RunningServer) -> Result<Tls, String> {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(hub.local_addr())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tokio_rustls::TlsConnector::from(net.pki.client(None, false))
            .connect(ServerName::try_from(ALPHA.to_owned()).expect("name"), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or_else(|_| Err("no TLS handshake within 5 s".into()))
}

/// Sends `POST /group_operation` with these header lines (each ending in CRLF) and body on
/// an open connection, and reads the answer.
async fn exchange(stream: &mut Tls, header_lines: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut request = format!(
        "POST /group_operation HTTP/1.1\r\n{header_lines}Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.expect("write");
    read_response(stream).await
}

/// The body is a `DSResponse` carrying this error code.
fn assert_error(body: &[u8], code: ErrorCode) {
    let response = decode_exact::<DsResponse>(body).expect("a DSResponse error body");
    match response.body {
        DsResponseBody::Error(error) => assert_eq!(error.code, code),
        other => panic!("not an error: {other:?}"),
    }
}

/// Whether the connection is served: a malformed request gets its 400.
async fn served(stream: &mut Tls) {
    let (status, body) = exchange(stream, &format!("Host: {ALPHA}\r\n"), b"\x00\x01").await;
    assert_eq!(status, 400);
    assert_error(&body, ErrorCode::MalformedRequest);
}

/// Up to the cap, connections are served and stay open while idle; the next one is closed
/// before its TLS handshake completes, promptly and without waiting for a slot; after a
/// client closes one of its connections, a new connection gets its slot and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_and_a_closed_connection_frees_its_slot() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let (net, hub, _database, _alice) = hub(root.path()).await;
        // Every connection of the setup is closed; wait until the server saw them go.
        let mut open = Vec::new();
        let started = Instant::now();
        while open.len() < MAX_CONNECTIONS {
            match try_tls(&net, &hub).await {
                Ok(mut stream) => {
                    served(&mut stream).await;
                    open.push(stream);
                }
                Err(error) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "the setup's connections never freed their slots: {error}"
                    );
                    open.clear();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }

        // Over the cap, several times: each is refused at once, none waits for a slot.
        for _ in 0..3 {
            let started = Instant::now();
            let refused = try_tls(&net, &hub).await;
            assert!(refused.is_err(), "a connection over the cap was served");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "refused only after {:?}",
                started.elapsed()
            );
        }
        // The connections within the cap are still served.
        for stream in &mut open {
            served(stream).await;
        }

        // A client closes one connection: its slot comes back.
        let mut closing = open.pop().expect("a connection");
        closing.shutdown().await.expect("close");
        drop(closing);
        let started = Instant::now();
        let mut again = loop {
            match try_tls(&net, &hub).await {
                Ok(stream) => break stream,
                Err(error) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(5),
                        "no slot came back after a close: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        served(&mut again).await;
        // And the cap holds again.
        assert!(
            try_tls(&net, &hub).await.is_err(),
            "one slot came back, not two"
        );
        hub.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

/// A request with no `Host`, or with two, gets 400 `malformed_request` with an error body
/// (RFC 9112 §3.2; MP-06 §4.1) and changes nothing, though its body is a message the hub
/// accepts: the same bytes with one `Host` are accepted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_repeated_host_is_refused_and_changes_nothing() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let (net, hub, database, mut alice) = hub(root.path()).await;
        let message = alice.message_request(b"hello", now_ms());
        let before = dump(&database);

        for header_lines in [
            String::new(),
            format!("Host: {ALPHA}\r\nHost: {ALPHA}\r\n"),
            format!("Host: {ALPHA}\r\nHost: evil.example\r\n"),
        ] {
            let mut stream = try_tls(&net, &hub).await.expect("a connection");
            let (status, body) = exchange(&mut stream, &header_lines, &message).await;
            assert_eq!(status, 400, "{header_lines:?}");
            assert_error(&body, ErrorCode::MalformedRequest);
            assert_eq!(dump(&database), before, "{header_lines:?} changed storage");
        }

        let mut stream = try_tls(&net, &hub).await.expect("a connection");
        let (status, _) = exchange(&mut stream, &format!("Host: {ALPHA}\r\n"), &message).await;
        assert_eq!(status, 200, "the message itself is acceptable");
        assert_ne!(dump(&database), before);
        hub.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
