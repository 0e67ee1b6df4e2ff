//! The end-user clients' HTTPS: hyper's HTTP/2 client connection over tokio-rustls (TLS 1.3,
//! the server certificate checked for the provider's domain), one connection per server
//! address, reused for every request.
//!
//! A request whose connection broke before an answer came is sent once more, byte for byte,
//! on a new connection: the documented client rule (wire-format.md §3.4, docs/deploy.md
//! "Clients: retry byte for byte") makes that safe, because the hub answers a
//! byte-identical retry of an accepted request with the original answer and no second fanout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_ds::transport::OCTET_STREAM;
use rustls::pki_types::ServerName;

/// Boxed errors: the demo reports them and stops.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// Which server of the domain answered (0 unless a domain has several, see
    /// [`Https::new`]).
    pub instance: usize,
}

/// The clients' connections to the providers.
pub struct Https {
    tls: Arc<rustls::ClientConfig>,
    /// Per provider domain, the addresses of its servers: several when one provider runs
    /// several instances on one database; requests go to them in turn, the way a load
    /// balancer in front of them would spread them.
    servers: HashMap<String, Vec<SocketAddr>>,
    turn: HashMap<String, usize>,
    connections: HashMap<SocketAddr, SendRequest<Full<Bytes>>>,
}

impl Https {
    /// A client trusting what `tls` trusts, knowing where each provider's servers are.
    pub fn new(tls: Arc<rustls::ClientConfig>, servers: HashMap<String, Vec<SocketAddr>>) -> Self {
        Self {
            tls,
            servers,
            turn: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// `GET` (empty `body`) or `POST` (`application/octet-stream`) to `domain`'s next server.
    pub async fn request(
        &mut self,
        domain: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Answer, Error> {
        let servers = self
            .servers
            .get(domain)
            .ok_or_else(|| format!("{domain} is not a provider of the demo"))?;
        let turn = self.turn.entry(domain.to_owned()).or_default();
        let instance = *turn % servers.len();
        *turn = turn.wrapping_add(1);
        let address = servers[instance];
        let build = || {
            let builder = if body.is_empty() {
                http::Request::get(path)
            } else {
                http::Request::post(path).header(CONTENT_TYPE, OCTET_STREAM)
            };
            builder
                .header(HOST, domain)
                .body(Full::new(Bytes::copy_from_slice(body)))
        };
        let mut sent_once = false;
        let response = loop {
            let sender = self.connection(domain, address).await?;
            match sender.send_request(build()?).await {
                Ok(response) => break response,
                // The connection closed under us (the server's idle timeout, a restart):
                // the same bytes once more, on a new connection.
                Err(error) if !sent_once && (error.is_closed() || error.is_canceled()) => {
                    self.connections.remove(&address);
                    sent_once = true;
                }
                Err(error) => return Err(error.into()),
            }
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Answer {
            status,
            body,
            instance,
        })
    }

    /// The open connection to `address`, or a new one: TCP, TLS 1.3 for `domain`, HTTP/2.
    async fn connection(
        &mut self,
        domain: &str,
        address: SocketAddr,
    ) -> Result<&mut SendRequest<Full<Bytes>>, Error> {
        if self
            .connections
            .get(&address)
            .is_none_or(SendRequest::is_closed)
        {
            let tcp = tokio::net::TcpStream::connect(address).await?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(ServerName::try_from(domain.to_owned())?, tcp)
                .await?;
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await?;
            tokio::spawn(connection);
            self.connections.insert(address, sender);
        }
        let sender = self.connections.get_mut(&address).ok_or("no connection")?;
        sender.ready().await?;
        Ok(sender)
    }
}
