//! Where the generator's requests go: the server over HTTPS, or the router directly.

use super::*;

/// Where requests go.
pub(super) enum Target {
    Https(Https),
    Sqlite(Arc<DirectSqlite>),
    Postgres(Arc<DirectPostgres>),
}

impl Target {
    /// One request; the HTTP status and body.
    pub(super) async fn call(
        &self,
        worker: usize,
        path: &'static str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        match self {
            Self::Https(https) => https.call(worker, path, body).await,
            // Setup only (the timed phase calls it from blocking threads).
            Self::Sqlite(direct) => {
                tokio::task::block_in_place(|| direct.call(worker, path, &body))
            }
            Self::Postgres(direct) => direct.call(worker, path, &body).await,
        }
    }
}

pub(super) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Kept-alive connections to the server, one per worker (HTTP/2: clones of one). A
/// connection the server closed (its idle timeout) is opened again, as a provider would.
pub(super) struct Https {
    senders: Vec<tokio::sync::Mutex<Sender>>,
    tls: Arc<rustls::ClientConfig>,
    address: std::net::SocketAddr,
    h2: bool,
}

impl Https {
    pub(super) async fn connect(
        pki: &Pki,
        address: std::net::SocketAddr,
        workers: usize,
        h2: bool,
    ) -> Result<Self, String> {
        let tls = pki.client(None, h2);
        let mut senders = Vec::with_capacity(workers);
        if h2 {
            let Sender::H2(shared) = open(&tls, address, true).await? else {
                unreachable!("asked for HTTP/2");
            };
            for _ in 0..workers {
                senders.push(tokio::sync::Mutex::new(Sender::H2(shared.clone())));
            }
        } else {
            for _ in 0..workers {
                senders.push(tokio::sync::Mutex::new(open(&tls, address, false).await?));
            }
        }
        Ok(Self {
            senders,
            tls,
            address,
            h2,
        })
    }

    /// One request on the worker's connection. A connection the server closed meanwhile is
    /// reopened, and a request that got no answer because its connection failed is sent once
    /// more on a new one (the server never saw it, or answers a byte-identical DS request
    /// with its first answer).
    pub(super) async fn call(
        &self,
        worker: usize,
        path: &'static str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut sender = self.senders[worker % self.senders.len()].lock().await;
        let mut failure = String::new();
        for _ in 0..2 {
            let closed = match &*sender {
                Sender::H1(sender) => sender.is_closed(),
                Sender::H2(sender) => sender.is_closed(),
            };
            if closed || !failure.is_empty() {
                match open(&self.tls, self.address, self.h2).await {
                    Ok(reopened) => *sender = reopened,
                    Err(e) => return (0, e.into_bytes()),
                }
            }
            match send(&mut sender, path, body.clone()).await {
                Ok(answer) => return answer,
                Err(e) => failure = e,
            }
        }
        (0, failure.into_bytes())
    }
}

/// Sends one request; `Err` if no answer came (the connection failed).
pub(super) async fn send(
    sender: &mut Sender,
    path: &'static str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let request = |uri: String| {
        http::Request::post(uri)
            .header("content-type", OCTET_STREAM)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())
    };
    let response = match sender {
        Sender::H1(sender) => {
            let mut request = request(path.to_owned())?;
            request
                .headers_mut()
                .insert("host", http::HeaderValue::from_static(ALPHA));
            sender.ready().await.map_err(|e| format!("HTTP: {e}"))?;
            sender.send_request(request).await
        }
        Sender::H2(sender) => {
            let request = request(format!("https://{ALPHA}{path}"))?;
            sender.ready().await.map_err(|e| format!("HTTP: {e}"))?;
            sender.send_request(request).await
        }
    }
    .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, body.to_bytes().to_vec()))
}

/// A TLS 1.3 connection to the server and the HTTP handshake over it.
pub(super) async fn open(
    tls: &Arc<rustls::ClientConfig>,
    address: std::net::SocketAddr,
    h2: bool,
) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(ALPHA.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let io = TokioIo::new(tls);
    if h2 {
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("HTTP/2: {e}"))?;
        tokio::spawn(connection);
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP/1.1: {e}"))?;
        tokio::spawn(connection);
        Ok(Sender::H1(sender))
    }
}

/// A router with the hub and the QS, as the server builds it (same configuration).
pub(super) fn router() -> (Router, ExternalSender) {
    let (identity, external_sender) = ds_identity(ALPHA);
    let ds = DeliveryService::new(DsConfig::new(ALPHA), identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    let key = QueueKey::derive(&[7; 32]).expect("queue key");
    let qs = QueueingService::new(QsConfig::new(ALPHA), key, RustCrypto::default());
    let mut transport = TransportConfig::new(ALPHA, Some(ALPHA.to_owned()));
    transport.max_body_bytes = mimi_ds_server::Limits::default().max_body_bytes;
    (
        Router::new(transport).with_ds(ds).with_qs(qs),
        external_sender,
    )
}

pub(super) const HEADERS: [(&str, &str); 2] = [("host", ALPHA), ("content-type", OCTET_STREAM)];

pub(super) fn request<'a>(path: &'a str, body: &'a [u8]) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path,
        headers: &HEADERS,
        body,
        authenticated_peer: None,
    }
}

pub(super) type SqliteSlot = (SqliteDsStorage, SqliteQsStorage);

/// The router over SQLite, one connection pair per worker.
pub(super) struct DirectSqlite {
    pub(super) router: Router,
    pub(super) slots: Vec<Mutex<SqliteSlot>>,
}

/// The writer queues of the hub's file and of the QS's, shared by every connection to them.
pub(super) type WriterQueues = (Arc<WriterQueue>, Arc<WriterQueue>);

/// One connection to the hub's file `path` and one to the QS's file beside it, each taking
/// its turns from `writers`: the server's layout ([`StorageChoice::qs_sqlite_file`]).
pub(super) fn open_sqlite(
    path: &std::path::Path,
    writers: &WriterQueues,
) -> Result<SqliteSlot, String> {
    let ds = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    enable_wal(&ds).map_err(|e| e.to_string())?;
    let qs = rusqlite::Connection::open(StorageChoice::qs_sqlite_file(path))
        .map_err(|e| e.to_string())?;
    enable_wal(&qs).map_err(|e| e.to_string())?;
    Ok((
        SqliteDsStorage::new(ds)
            .map_err(|e| e.to_string())?
            .with_writer_queue(Arc::clone(&writers.0)),
        SqliteQsStorage::new(qs)
            .map_err(|e| e.to_string())?
            .with_writer_queue(Arc::clone(&writers.1)),
    ))
}

impl DirectSqlite {
    pub(super) fn call(&self, worker: usize, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut slot = self.slots[worker % self.slots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (ds, qs) = &mut *slot;
        match self
            .router
            .handle(UnixTimeMs(now_ms()), &request(path, body), ds, qs)
        {
            Ok(routed) => (routed.response.status, routed.response.body),
            Err(e) => (500, e.to_string().into_bytes()),
        }
    }
}

pub(super) type PostgresSlot = (
    PostgresDsStorage<tokio_postgres::Client>,
    PostgresQsStorage<tokio_postgres::Client>,
);

/// The router over PostgreSQL (async path), one connection pair per worker.
pub(super) struct DirectPostgres {
    pub(super) router: Router,
    pub(super) slots: Vec<tokio::sync::Mutex<PostgresSlot>>,
}

pub(super) async fn open_postgres(url: &str) -> Result<PostgresSlot, String> {
    Ok((
        PostgresDsStorage::connect(url)
            .await
            .map_err(|e| e.to_string())?,
        PostgresQsStorage::connect(url)
            .await
            .map_err(|e| e.to_string())?,
    ))
}

impl DirectPostgres {
    pub(super) async fn call(&self, worker: usize, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut slot = self.slots[worker % self.slots.len()].lock().await;
        let (ds, qs) = &mut *slot;
        match self
            .router
            .handle_async(UnixTimeMs(now_ms()), &request(path, body), ds, qs)
            .await
        {
            Ok(routed) => (routed.response.status, routed.response.body),
            Err(e) => (500, e.to_string().into_bytes()),
        }
    }
}
