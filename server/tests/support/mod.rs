//! Shared by the server's loopback tests: a throw-away CA, servers on 127.0.0.1:0, an HTTPS
//! client (hyper over tokio-rustls) and MIMI client steps with real openmls clients.

#![allow(dead_code, unreachable_pub)]

pub mod groups;
pub mod ledger;
pub mod postgres;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mimi_ds::testing::{Received, TestClient};
use mimi_ds::transport::OCTET_STREAM;
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsRequest, DsRequestBody, DsResponse, DsResponseBody,
    PROTOCOL_VERSION_MIMI_DS10,
};
use mimi_ds_server::{
    PeerDirectory, RetryPolicy, RunningServer, ServerConfig, StorageChoice, TlsMaterial,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

pub const ALPHA: &str = "alpha.example";
pub const BETA: &str = "beta.example";
pub const GAMMA: &str = "gamma.example";

/// Every test's overall bound.
pub const TEST_DEADLINE: Duration = Duration::from_secs(90);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A CA and one leaf per provider domain (server and client certificate at once).
pub struct Pki {
    ca: CertificateDer<'static>,
    leaves: Vec<(String, CertificateDer<'static>, Vec<u8>)>,
    /// The CA certificate, and per domain the leaf and its key, in PEM (for the flags).
    pems: (String, Vec<(String, String, String)>),
}

impl Pki {
    pub fn new(domains: &[&str]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mimi-ds-server test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let mut pems = (ca.pem(), Vec::new());
        let leaves = domains
            .iter()
            .map(|&domain| {
                let key = KeyPair::generate().expect("key");
                let mut params = CertificateParams::new(vec![domain.to_owned()]).expect("params");
                params.distinguished_name.push(DnType::CommonName, domain);
                params.key_usages = vec![Ku::DigitalSignature];
                params.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
                let cert = params.signed_by(&key, &ca, &ca_key).expect("leaf");
                pems.1
                    .push((domain.to_owned(), cert.pem(), key.serialize_pem()));
                (domain.to_owned(), cert.der().clone(), key.serialize_der())
            })
            .collect();
        Self {
            ca: ca.der().clone(),
            leaves,
            pems,
        }
    }

    /// Writes `domain`'s certificate, its key and the CA as PEM files into `dir`; returns
    /// their paths.
    pub fn write_pem_files(&self, dir: &Path, domain: &str) -> [PathBuf; 3] {
        let (_, cert, key) = self
            .pems
            .1
            .iter()
            .find(|(d, _, _)| d == domain)
            .expect("a leaf for the domain");
        let paths = [
            dir.join(format!("{domain}.pem")),
            dir.join(format!("{domain}.key")),
            dir.join("ca.pem"),
        ];
        for (path, text) in paths.iter().zip([cert, key, &self.pems.0]) {
            std::fs::write(path, text).expect("write PEM");
        }
        paths
    }

    pub fn material(&self, domain: &str) -> TlsMaterial {
        let (_, cert, key) = self
            .leaves
            .iter()
            .find(|(d, _, _)| d == domain)
            .expect("a leaf for the domain");
        TlsMaterial {
            certificate_chain: vec![cert.clone()],
            private_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
            trusted_cas: vec![self.ca.clone()],
        }
    }

    /// A client configuration trusting the CA; with a provider's certificate if given. ALPN
    /// `h2` when asked for, else `http/1.1`.
    pub fn client(&self, as_provider: Option<&str>, h2: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).expect("CA");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
        let mut config = match as_provider {
            None => builder.with_no_client_auth(),
            Some(domain) => {
                let material = self.material(domain);
                builder
                    .with_client_auth_cert(material.certificate_chain, material.private_key)
                    .expect("client cert")
            }
        };
        config.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        Arc::new(config)
    }
}

/// A server configuration for tests: fast relay retries with fixed jitter (each delay is
/// exactly half the doubling step), short limits.
pub fn config(
    pki: &Pki,
    domain: &str,
    hub: bool,
    storage: StorageChoice,
    state_dir: &Path,
    peers: PeerDirectory,
) -> ServerConfig {
    let mut config = ServerConfig::new(
        domain,
        hub,
        "127.0.0.1:0".parse().expect("address"),
        storage,
        state_dir.to_path_buf(),
        pki.material(domain),
        peers,
    );
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
        jitter: Arc::new(|| 0.0),
    };
    config.relay_poll_interval = Duration::from_millis(50);
    config.delivery_timeout = Duration::from_secs(3);
    config
}

pub fn directory(entries: &[(&str, SocketAddr)]) -> PeerDirectory {
    let mut directory = PeerDirectory::new();
    for (domain, address) in entries {
        directory.insert(*domain, address.to_string());
    }
    directory
}

/// An address nothing listens on (bound, then released).
pub fn closed_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

pub async fn start(config: ServerConfig) -> RunningServer {
    mimi_ds_server::start(config).await.expect("server starts")
}

pub fn post(host: &str, path: &str, body: Vec<u8>) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("host", host)
        .header("content-type", OCTET_STREAM)
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

/// The clients' side: HTTPS to servers on loopback, checking their certificates for the
/// provider domain they are called by.
pub struct Net {
    pub pki: Pki,
}

impl Net {
    /// POSTs as an end-user client (no certificate) to `domain` at `address`.
    pub async fn post(
        &self,
        domain: &str,
        address: SocketAddr,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        self.send(domain, address, post(domain, path, body), None)
            .await
    }

    /// Over HTTP/1.1 on a new connection, as a provider (its client certificate) if given.
    pub async fn send(
        &self,
        domain: &str,
        address: SocketAddr,
        request: http::Request<Full<Bytes>>,
        as_provider: Option<&str>,
    ) -> (u16, Vec<u8>) {
        self.send_with(domain, address, request, as_provider, false)
            .await
    }

    /// Over HTTP/2 (ALPN `h2`) or HTTP/1.1 on a new connection.
    pub async fn send_with(
        &self,
        domain: &str,
        address: SocketAddr,
        request: http::Request<Full<Bytes>>,
        as_provider: Option<&str>,
        h2: bool,
    ) -> (u16, Vec<u8>) {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let stream = tokio_rustls::TlsConnector::from(self.pki.client(as_provider, h2))
            .connect(ServerName::try_from(domain.to_owned()).expect("name"), tcp)
            .await
            .expect("TLS");
        let io = TokioIo::new(stream);
        let response = if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .expect("HTTP/2");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("response")
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("HTTP");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("response")
        };
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, body)
    }

    /// A DS request to the hub; panics unless accepted.
    pub async fn ds(&self, hub: SocketAddr, request: Vec<u8>) -> DsResponseBody {
        let (status, body) = self.post(ALPHA, hub, "/group_operation", request).await;
        let body = decode_exact::<DsResponse>(&body).expect("DSResponse").body;
        assert_eq!(status, 200, "{body:?}");
        body
    }

    /// Creates the client's queue at its provider, sealed for the hub at alpha.
    pub async fn create_queue(&self, client: &mut TestClient, provider: SocketAddr) {
        let domain = provider_of(client);
        let (status, body) = self
            .post(
                &domain,
                provider,
                "/queue_operation",
                client.create_queue_request(now_ms()),
            )
            .await;
        assert_eq!(status, 200);
        client.use_queue(&body, ALPHA);
    }

    /// Fetches and acknowledges everything in the client's queue, then processes it.
    pub async fn fetch(&self, client: &mut TestClient, provider: SocketAddr) -> Vec<Received> {
        let domain = provider_of(client);
        loop {
            let (status, body) = self
                .post(
                    &domain,
                    provider,
                    "/queue_operation",
                    client.fetch_request(50, now_ms()),
                )
                .await;
            assert_eq!(status, 200);
            let (_, remaining) = client.take_page(&body);
            if remaining == 0 {
                break;
            }
        }
        let (status, _) = self
            .post(
                &domain,
                provider,
                "/queue_operation",
                client.ack_request(now_ms()),
            )
            .await;
        assert_eq!(status, 200);
        client.process_inbox()
    }

    /// Polls the client's queue until `want` holds for what arrived, or panics after `within`.
    pub async fn fetch_until(
        &self,
        client: &mut TestClient,
        provider: SocketAddr,
        within: Duration,
        want: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let started = Instant::now();
        let mut all = Vec::new();
        loop {
            all.extend(self.fetch(client, provider).await);
            if all.iter().any(&want) {
                return all;
            }
            assert!(
                started.elapsed() < within,
                "{}/{}: not delivered within {within:?}; got {all:?}",
                client.user,
                client.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Joins from a Welcome with the tree from the hub.
    pub async fn join(
        &self,
        client: &mut TestClient,
        hub: SocketAddr,
        welcome: &mimi_ds::wire::MlsMessageBytes,
    ) {
        let (request, processed) = client.welcome_info_request(welcome, now_ms());
        let (status, body) = self.post(ALPHA, hub, "/welcome_information", request).await;
        assert_eq!(status, 200);
        let DsResponseBody::WelcomeInfo(info) =
            decode_exact::<DsResponse>(&body).expect("DSResponse").body
        else {
            panic!("welcome_info refused");
        };
        client.join_with_tree(processed, &info.ratchet_tree);
    }

    /// Alice asks for a group ID and creates the group at the hub.
    pub async fn create_group(&self, alice: &mut TestClient, hub: &RunningServer) -> Vec<u8> {
        let request = encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::RequestGroupId,
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode");
        let DsResponseBody::GroupId(group_id) = self.ds(hub.local_addr(), request).await else {
            panic!("no group id");
        };
        let group_id = group_id.as_slice().to_vec();
        alice.create_group(&group_id, hub.external_sender().expect("a hub"));
        self.ds(hub.local_addr(), alice.create_group_request(now_ms()))
            .await;
        group_id
    }
}

pub fn welcome(received: &[Received]) -> mimi_ds::wire::MlsMessageBytes {
    received
        .iter()
        .find_map(|r| match r {
            Received::Welcome(w) => Some(w.clone()),
            _ => None,
        })
        .expect("a Welcome")
}

pub fn is_welcome(r: &Received) -> bool {
    matches!(r, Received::Welcome(_))
}

/// A fresh folder for a server's state.
pub fn state_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}

/// Every row of every table of a server's SQLite storage (the hub's file `path` and the QS's
/// file beside it), as text: equal before and after means storage did not change.
pub fn dump(path: &Path) -> Vec<String> {
    let qs_path = mimi_ds_server::StorageChoice::qs_sqlite_file(path);
    assert!(
        qs_path.is_file(),
        "the QS's file {} exists",
        qs_path.display()
    );
    let mut rows = dump_file(path);
    rows.extend(
        dump_file(&qs_path)
            .into_iter()
            .map(|row| format!("qs {row}")),
    );
    rows
}

/// Every row of every table of one SQLite file, as text.
fn dump_file(path: &Path) -> Vec<String> {
    let connection = rusqlite::Connection::open(path).expect("open");
    let mut tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("tables")
        .query_map([], |row| row.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    tables.sort();
    let mut rows = Vec::new();
    for table in tables {
        let mut statement = connection
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = statement.column_count();
        let mut table_rows: Vec<String> = statement
            .query_map([], |row| {
                let mut line = format!("{table}:");
                for i in 0..columns {
                    let value: rusqlite::types::Value = row.get(i)?;
                    line.push_str(&format!(" {value:?}"));
                }
                Ok(line)
            })
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        table_rows.sort();
        rows.extend(table_rows);
    }
    rows
}

/// The domain of the provider that holds the client's queue.
pub fn provider_of(client: &TestClient) -> String {
    String::from_utf8(client.queue.provider_domain.as_slice().to_vec()).expect("domain")
}

/// A TLS 1.3 connection (no client certificate) for writing raw HTTP/1.1 bytes.
pub async fn raw_tls(
    pki: &Pki,
    domain: &str,
    address: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    tokio_rustls::TlsConnector::from(pki.client(None, false))
        .connect(ServerName::try_from(domain.to_owned()).expect("name"), tcp)
        .await
        .expect("TLS")
}

/// A plain-HTTP (no TLS) GET over HTTP/1.1 with hyper's client; the status and the body.
pub async fn plain_get(address: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP");
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", "metrics")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).expect("text"))
}

/// The value of the sample `name` (with its labels, exactly as written) in `text`.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Reads one HTTP/1.1 response with a `Content-Length` body (within 5 s), for the tests that
/// write raw bytes on purpose (malformed, slow or misrouted requests).
pub async fn read_response(stream: &mut (impl tokio::io::AsyncReadExt + Unpin)) -> (u16, Vec<u8>) {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().expect("status");
                return (status, data[end + 4..end + 4 + length].to_vec());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buffer))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(n > 0, "closed before a whole answer: {data:?}");
        data.extend_from_slice(&buffer[..n]);
    }
}
