//! The real `mimi-ds-server` binary as an OS process, for the multi-instance and crash tests:
//! start it from flags, wait until it listens, kill it with `SIGKILL`, start it again on the
//! same database, state folder and port. A [`ServerProcess`] kills and reaps its child when
//! dropped, so no server outlives its test (a panicking test included).
//!
//! Also what those tests need on the client side: HTTPS requests that report a lost answer
//! instead of panicking ([`Net::try_post`]), and the hub's external-sender entry read over
//! the wire (`/verification_key`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    PROTOCOL_VERSION_MIMI_DS10,
};
use openmls::prelude::{BasicCredential, ExternalSender, SignaturePublicKey};
use rustls::pki_types::ServerName;

use super::{closed_address, post, Net, Pki, ALPHA, BETA};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for one answer before it counts as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a server's output kept for the failure message.
const LOG_LINES: usize = 400;

/// The flags of one server, built up by the test.
#[derive(Debug, Clone)]
pub struct ServerFlags {
    pub domain: String,
    pub hub: bool,
    /// `sqlite:<path>`, `memory` or a `postgres://` URL.
    pub storage: String,
    pub state_dir: PathBuf,
    /// `(certificate, key, CA)` PEM files.
    pub pem: [PathBuf; 3],
    pub peers: PathBuf,
}

impl ServerFlags {
    /// A server for `domain` whose PEM files (from `pki`) and peer file go into `dir`; the
    /// peer file is written with `peers`.
    pub fn new(
        pki: &Pki,
        dir: &Path,
        domain: &str,
        hub: bool,
        storage: String,
        state_dir: &Path,
        peers: &[(&str, SocketAddr)],
    ) -> Self {
        std::fs::create_dir_all(dir).expect("folder");
        let pem = pki.write_pem_files(dir, domain);
        let peer_file = dir.join(format!("{domain}.peers"));
        let text: String = peers.iter().map(|(d, a)| format!("{d} {a}\n")).collect();
        std::fs::write(&peer_file, text).expect("peer file");
        Self {
            domain: domain.to_owned(),
            hub,
            storage,
            state_dir: state_dir.to_path_buf(),
            pem,
            peers: peer_file,
        }
    }

    /// beta.example's Queueing Service alone, on a SQLite file in `root` (alpha's address
    /// is not known yet: it is started after beta, so beta's directory names a closed port).
    pub fn beta_queueing_service(pki: &Pki, root: &Path) -> Self {
        Self::new(
            pki,
            &root.join("beta"),
            BETA,
            false,
            format!("sqlite:{}", root.join("beta.sqlite3").display()),
            &root.join("beta-state"),
            &[(ALPHA, closed_address())],
        )
    }

    /// alpha.example's hub and Queueing Service on `storage`, with its state folder in `root`
    /// (shared by every instance made from these flags) and `peers` as its directory.
    pub fn alpha_hub(
        pki: &Pki,
        root: &Path,
        storage: String,
        peers: &[(&str, SocketAddr)],
    ) -> Self {
        Self::new(
            pki,
            &root.join("alpha"),
            ALPHA,
            true,
            storage,
            &root.join("alpha-state"),
            peers,
        )
    }

    fn args(&self, listen: SocketAddr) -> Vec<String> {
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
        let mut args = vec![
            "--domain".to_owned(),
            self.domain.clone(),
            "--listen".to_owned(),
            listen.to_string(),
            "--storage".to_owned(),
            self.storage.clone(),
            "--state-dir".to_owned(),
            path(&self.state_dir),
            "--cert".to_owned(),
            path(&self.pem[0]),
            "--key".to_owned(),
            path(&self.pem[1]),
            "--ca".to_owned(),
            path(&self.pem[2]),
            "--peers".to_owned(),
            path(&self.peers),
        ];
        if self.hub {
            args.push("--hub".to_owned());
        }
        args
    }
}

/// One `mimi-ds-server` process (or none, between a kill and the next start).
pub struct ServerProcess {
    /// A name for messages, e.g. `alpha-1`.
    pub name: String,
    flags: ServerFlags,
    child: Option<Child>,
    /// Where it listens: the port it chose at its first start, kept for every restart so
    /// that peers and clients keep their address.
    pub addr: SocketAddr,
    /// Starts so far.
    pub starts: u32,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the binary with `flags` on `127.0.0.1:0` and waits until it listens.
    pub async fn start(name: &str, flags: ServerFlags) -> Self {
        let mut process = Self {
            name: name.to_owned(),
            flags,
            child: None,
            addr: "127.0.0.1:0".parse().expect("address"),
            starts: 0,
            log: Arc::default(),
        };
        process.spawn().await;
        process
    }

    /// Spawns the child on `self.addr` (port 0 the first time) and waits for its "listening
    /// on https://<address>" line. A restart whose port is briefly taken is tried again.
    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        for attempt in 1..=5 {
            match self.try_spawn().await {
                Ok(addr) => {
                    self.addr = addr;
                    self.starts += 1;
                    return;
                }
                Err(why) if attempt < 5 => {
                    eprintln!("{}: start failed ({why}); trying again", self.name);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(why) => panic!("{} did not start: {why}\n{}", self.name, self.log_tail()),
            }
        }
    }

    async fn try_spawn(&mut self) -> Result<SocketAddr, String> {
        // Cargo names the binary to integration tests only; the examples that share this
        // support module (the load generator) never start processes.
        let binary = option_env!("CARGO_BIN_EXE_mimi-ds-server")
            .ok_or("the mimi-ds-server binary is known to integration tests only")?;
        let mut child = Command::new(binary)
            .args(self.flags.args(self.addr))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // Both pipes are read to the end by threads, so a server that logs a lot never
        // blocks on a full pipe; the lines are kept for failure messages.
        let start = self.starts + 1;
        let stdout = child.stdout.take().expect("stdout");
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("listening on https://") {
                    let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                    if let (Some(tx), Some(addr)) = (ready.take(), addr) {
                        let _ = tx.send(addr);
                    }
                }
                keep(&log, format!("[start {start}] {line}"));
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            for line in text.lines() {
                keep(&log, format!("[start {start}, stderr] {line}"));
            }
        });
        self.child = Some(child);
        match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
            Ok(Ok(addr)) => Ok(addr),
            Ok(Err(_)) => {
                self.kill();
                Err("exited before listening".into())
            }
            Err(_) => {
                self.kill();
                Err(format!("not listening within {START_TIMEOUT:?}"))
            }
        }
    }

    /// `SIGKILL` (`Child::kill` on Unix), then reaps it. Nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after [`ServerProcess::kill`], on the same flags and port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Whether the child is alive (a child that exited by itself is reaped here).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                _ => {
                    self.child = None;
                    false
                }
            },
        }
    }

    /// The last lines the server wrote, for a failure message.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

fn keep(log: &Mutex<Vec<String>>, line: String) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() == LOG_LINES {
        log.remove(0);
    }
    log.push(line);
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Net {
    /// POSTs as an end-user client; `Err` when no answer came (refused connection, the server
    /// died mid-request, no answer within [`ANSWER_TIMEOUT`]): the caller decides whether to
    /// resend.
    pub async fn try_post(
        &self,
        domain: &str,
        address: SocketAddr,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), String> {
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(self.pki.client(None, false))
                .connect(ServerName::try_from(domain.to_owned()).expect("name"), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP: {e}"))?;
            tokio::spawn(connection);
            let response = sender
                .send_request(post(domain, path, body))
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status().as_u16();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes()
                .to_vec();
            Ok((status, body))
        };
        tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()))
    }

    /// The hub's external-sender entry, as `/verification_key` publishes it: its signature
    /// key, with a BasicCredential naming its domain (the server's identity, `keys.rs`).
    pub async fn hub_external_sender(&self, domain: &str, hub: SocketAddr) -> ExternalSender {
        let request = encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::SignaturePublicKey,
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode");
        let (status, body) = self
            .try_post(domain, hub, "/verification_key", request)
            .await
            .expect("an answer");
        assert_eq!(status, 200);
        let DsResponseBody::SignaturePublicKey(key) =
            decode_exact::<DsResponse>(&body).expect("DSResponse").body
        else {
            panic!("no signature key");
        };
        ExternalSender::new(
            SignaturePublicKey::from(key.as_slice().to_vec()),
            BasicCredential::new(domain.as_bytes().to_vec()).into(),
        )
    }
}
