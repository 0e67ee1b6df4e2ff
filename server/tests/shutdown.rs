//! Graceful shutdown: a request in flight when the server is told to stop is still answered;
//! then the server accepts no more connections.

mod support;

use std::time::Duration;

use mimi_ds_server::StorageChoice;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_answered_during_shutdown() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA]),
        };
        let server = start(config(
            &net.pki,
            ALPHA,
            true,
            StorageChoice::Memory,
            &state_dir(root.path(), "alpha"),
            directory(&[]),
        ))
        .await;
        let at = server.local_addr();
        let mut stream = raw_tls(&net.pki, ALPHA, at).await;
        let head = format!(
            "POST /group_operation HTTP/1.1\r\nHost: {ALPHA}\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\x00\x01"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;

        let stopping = tokio::spawn(server.shutdown());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!stopping.is_finished(), "shutdown did not wait for the open request");
        stream.write_all(b"\x7f\x7f").await.expect("the rest of the body");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        tokio::time::timeout(Duration::from_secs(5), stopping)
            .await
            .expect("shutdown ends once the request is answered")
            .expect("no panic");
        assert!(
            tokio::net::TcpStream::connect(at).await.is_err(),
            "still accepting after shutdown"
        );
    })
    .await
    .expect("within the deadline");
}
