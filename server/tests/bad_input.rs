//! Oversized, malformed, wrongly routed and slow requests get HTTP errors with an error body
//! (or are cut off), within the configured limits and deadlines, and change nothing in
//! storage.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use mimi_ds::testing::TestClient;
use mimi_ds::wire::{decode_exact, DsResponse, DsResponseBody, ErrorCode};
use mimi_ds_server::{RunningServer, StorageChoice};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_BODY: usize = 64 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_millis(800);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// A hub on SQLite with small limits, and one group in it (so there is state to keep).
async fn hub(root: &Path) -> (Net, RunningServer, std::path::PathBuf) {
    let net = Net {
        pki: Pki::new(&[ALPHA, BETA]),
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
    config.limits.max_body_bytes = MAX_BODY;
    config.limits.header_read_timeout = HEADER_TIMEOUT;
    config.limits.request_timeout = REQUEST_TIMEOUT;
    let hub = start(config).await;
    let mut alice = TestClient::new("alice", "phone", ALPHA);
    net.create_queue(&mut alice, hub.local_addr()).await;
    net.create_group(&mut alice, &hub).await;
    // Let the relay finish whatever the group's creation stored.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (net, hub, database)
}

/// The body is a `DSResponse` carrying this error code.
fn assert_error(body: &[u8], code: ErrorCode) {
    let response = decode_exact::<DsResponse>(body).expect("a DSResponse error body");
    match response.body {
        DsResponseBody::Error(error) => assert_eq!(error.code, code),
        other => panic!("not an error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_malformed_and_misrouted_requests_are_refused_and_change_nothing() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let (net, hub, database) = hub(root.path()).await;
        let at = hub.local_addr();
        let before = dump(&database);
        assert!(!before.is_empty());

        // Oversized, announced by Content-Length: 413 before the body is read.
        // (Raw bytes: the server answers without reading the body, so a client still
        // writing it may see its connection closed before it reads the answer.)
        let mut stream = raw_tls(&net.pki, ALPHA, at).await;
        let head = format!(
            "POST /group_operation HTTP/1.1\r\nHost: {ALPHA}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(status, 413);
        assert_error(&body, ErrorCode::RequestTooLarge);

        // Oversized, chunked (no Content-Length): cut at the limit while reading.
        let mut stream = raw_tls(&net.pki, ALPHA, at).await;
        let head = format!(
            "POST /group_operation HTTP/1.1\r\nHost: {ALPHA}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        // One byte over the limit and nothing after it: the server reads every byte sent
        // before it can tell, so it closes with nothing unread (no reset that could destroy
        // its answer).
        let mut chunk = format!("{:x}\r\n", MAX_BODY + 1).into_bytes();
        chunk.extend(std::iter::repeat_n(b'a', MAX_BODY + 1));
        stream.write_all(&chunk).await.expect("write");
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(status, 413);
        assert_error(&body, ErrorCode::RequestTooLarge);

        // Malformed: not a DSRequest.
        let (status, body) = net.post(ALPHA, at, "/group_operation", b"\x00\x01garbage".to_vec()).await;
        assert_eq!(status, 400);
        assert_error(&body, ErrorCode::MalformedRequest);

        // Wrongly routed: a request for another provider reaches this one.
        // (TLS to alpha, whose certificate the client checks; `Host` names beta.)
        let misrouted = post(BETA, "/group_operation", b"\x00\x01".to_vec());
        let (status, body) = net.send(ALPHA, at, misrouted, None).await;
        assert_eq!(status, 421);
        assert_error(&body, ErrorCode::NotAllowed);

        // A delivery for this provider's QS from a client without a provider certificate.
        let (status, body) = net.post(ALPHA, at, "/deliver_message", b"\x00\x01".to_vec()).await;
        assert_eq!(status, 403);
        assert_error(&body, ErrorCode::AuthenticationFailed);

        // The same from a provider whose certificate the CA issued but that is not in the peer
        // directory: not an authenticated peer.
        let unknown_provider = post(ALPHA, "/deliver_message", b"\x00\x01".to_vec());
        let (status, body) = net.send(ALPHA, at, unknown_provider, Some(BETA)).await;
        assert_eq!(status, 403);
        assert_error(&body, ErrorCode::AuthenticationFailed);

        assert_eq!(dump(&database), before, "a refused request changed storage");
        hub.shutdown().await;
    })
    .await
    .expect("within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_at_the_deadlines() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let (net, hub, database) = hub(root.path()).await;
        let at = hub.local_addr();
        let before = dump(&database);

        // Headers trickled a byte at a time: the connection is closed at the header timeout.
        let mut stream = raw_tls(&net.pki, ALPHA, at).await;
        let started = Instant::now();
        let head = format!("POST /group_operation HTTP/1.1\r\nHost: {ALPHA}\r\nX-Slow: ");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut closed = false;
        for _ in 0..100 {
            if stream.write_all(b"a").await.is_err() || stream.flush().await.is_err() {
                closed = true;
                break;
            }
            let mut byte = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => {
                    // An answer (408) is as good as a close; the server closes after it.
                    closed = true;
                    break;
                }
                Err(_) => {}
            }
        }
        let elapsed = started.elapsed();
        assert!(closed, "a header trickle was served for {elapsed:?}");
        assert!(elapsed >= HEADER_TIMEOUT && elapsed < HEADER_TIMEOUT * 4, "{elapsed:?}");

        // A body trickled after complete headers: 408 with an error body at the request
        // timeout.
        let mut stream = raw_tls(&net.pki, ALPHA, at).await;
        let started = Instant::now();
        let head = format!(
            "POST /group_operation HTTP/1.1\r\nHost: {ALPHA}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        for _ in 0..100 {
            if stream.write_all(b"a").await.is_err() {
                break;
            }
            let mut buffer = [0u8; 4096];
            match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buffer[..n]);
                    break;
                }
                Err(_) => {}
            }
        }
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(elapsed >= REQUEST_TIMEOUT && elapsed < REQUEST_TIMEOUT * 4, "{elapsed:?}");

        assert_eq!(dump(&database), before, "a slow request changed storage");
        hub.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
