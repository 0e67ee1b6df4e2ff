//! What a server is started with: its role, address, storage, TLS material, peers and limits,
//! and the command-line flags that fill it in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mimi_ds::{ExternalJoinPolicy, GroupInfoAccess};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the server keeps its state.
///
/// An enum rather than a URL string passed around, so that each backend is one arm of the
/// `match` in [`crate::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageChoice {
    /// SQLite (the default): this is the hub's file, with the DS's groups and its durable
    /// outbox. The Queueing Service's queues are in a second file beside it
    /// ([`StorageChoice::qs_sqlite_file`], or [`ServerConfig::qs_sqlite`]), so that a QS
    /// enqueue never holds the hub's write lock (SQLite admits one writer per file). Both are
    /// created if missing, in WAL journal mode.
    Sqlite(PathBuf),
    /// In memory, gone when the process stops: for tests.
    Memory,
    /// A PostgreSQL server (`mimi-ds-postgres`), by its `postgres://` or `postgresql://` URL
    /// (tokio-postgres syntax; choose a schema with `?options=-c%20search_path%3D<schema>`).
    /// Several servers may share one database. The tables are created or upgraded at start.
    Postgres(String),
}

impl StorageChoice {
    /// Where the server keeps the QS's SQLite file when the hub's is `ds_file` (and
    /// [`ServerConfig::qs_sqlite`] does not say otherwise): the same folder and name with
    /// `-qs` before the extension, e.g. `mimi-ds.sqlite3` → `mimi-ds-qs.sqlite3`.
    pub fn qs_sqlite_file(ds_file: &Path) -> PathBuf {
        let stem = ds_file.file_stem().unwrap_or_default().to_string_lossy();
        let name = match ds_file.extension() {
            Some(extension) => format!("{stem}-qs.{}", extension.to_string_lossy()),
            None => format!("{stem}-qs"),
        };
        ds_file.with_file_name(name)
    }

    /// Parses `sqlite:<path>`, `memory`, or a `postgres://` (or `postgresql://`) URL.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        if value == "memory" {
            return Ok(Self::Memory);
        }
        if let Some(path) = value.strip_prefix("sqlite:") {
            if !path.is_empty() {
                return Ok(Self::Sqlite(PathBuf::from(path)));
            }
        }
        let is_postgres = value.starts_with("postgres://") || value.starts_with("postgresql://");
        if is_postgres && value.parse::<tokio_postgres::Config>().is_ok() {
            return Ok(Self::Postgres(value.to_owned()));
        }
        Err(ConfigError::Invalid(format!(
            "--storage {value:?}: expected sqlite:<path>, memory or a postgres:// URL"
        )))
    }
}

/// The certificates the server presents and trusts.
#[derive(Debug)]
pub struct TlsMaterial {
    /// This provider's certificate chain, leaf first: its TLS server certificate and, when
    /// the relay calls another provider, its client certificate (mutual TLS).
    pub certificate_chain: Vec<CertificateDer<'static>>,
    /// The chain's private key.
    pub private_key: PrivateKeyDer<'static>,
    /// The certificate authorities that issue providers' certificates: client certificates
    /// are verified against them, and so are the servers the relay calls.
    pub trusted_cas: Vec<CertificateDer<'static>>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        Self {
            certificate_chain: self.certificate_chain.clone(),
            private_key: self.private_key.clone_key(),
            trusted_cas: self.trusted_cas.clone(),
        }
    }
}

impl TlsMaterial {
    /// Reads PEM files: the certificate chain, its key, and the trusted CA certificates.
    pub fn from_pem_files(certificate: &Path, key: &Path, cas: &Path) -> Result<Self, ConfigError> {
        let read_certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, ConfigError> {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{}: no certificate",
                    path.display()
                )));
            }
            Ok(certs)
        };
        Ok(Self {
            certificate_chain: read_certs(certificate)?,
            private_key: PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", key.display())))?,
            trusted_cas: read_certs(cas)?,
        })
    }
}

/// Where other providers are: domain → the `host:port` of their HTTPS server (QS and DS).
///
/// It is the only way a destination resolves: a fanout whose destination is not in it is never
/// delivered (its queues are reported to the hub as rejected), and only its domains can be an
/// authenticated peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerDirectory {
    entries: HashMap<String, String>,
}

impl PeerDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a provider.
    pub fn insert(&mut self, domain: impl Into<String>, address: impl Into<String>) {
        self.entries
            .insert(domain.into().to_ascii_lowercase(), address.into());
    }

    /// The address of `domain`, if known.
    pub fn address(&self, domain: &str) -> Option<&str> {
        self.entries
            .get(&domain.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The known domains.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Parses the directory file: one `domain address` per line, where the address is
    /// `host:port` or `https://host:port`; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut directory = Self::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(domain), Some(address), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(ConfigError::Invalid(format!(
                    "peer directory line {}: expected `domain host:port`",
                    number + 1
                )));
            };
            let address = address.strip_prefix("https://").unwrap_or(address);
            let address = address.trim_end_matches('/');
            if address
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
            {
                return Err(ConfigError::Invalid(format!(
                    "peer directory line {}: {address:?} is not host:port",
                    number + 1
                )));
            }
            directory.insert(domain, address);
        }
        Ok(directory)
    }
}

/// Randomness for the relay's backoff jitter: a number in `[0, 1)` per call. Injected so that
/// tests see exact delays.
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// How the relay retries a delivery that failed.
#[derive(Clone)]
pub struct RetryPolicy {
    /// The first retry waits about this long; each further one twice as long.
    pub base_delay: Duration,
    /// No retry waits longer than this.
    pub max_delay: Duration,
    /// Picks each delay in `[d/2, d)` ("equal jitter"), so that providers coming back are not
    /// hit by every hub at once.
    pub jitter: Jitter,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            jitter: Arc::new(random_unit),
        }
    }
}

impl RetryPolicy {
    /// How long to wait after the `attempts`-th failed attempt (1 for the first).
    pub fn delay(&self, attempts: u32) -> Duration {
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        let full = self.base_delay.saturating_mul(doubling).min(self.max_delay);
        let unit = (self.jitter)().clamp(0.0, 1.0);
        full / 2 + full.mul_f64(unit / 2.0)
    }
}

/// A number in `[0, 1)` from the standard library's per-process random hash keys: good enough
/// to spread retries, and no random-number crate for it.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(std::time::SystemTime::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The bounds on what a client can make the server spend.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (also the router's [`mimi_ds::transport::TransportConfig`] limit).
    pub max_body_bytes: usize,
    /// Time to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to send a request's header section (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// Time to serve a whole request, body included; then 408.
    pub request_timeout: Duration,
    /// Requests served at once; more wait for a slot.
    pub max_concurrent_requests: usize,
    /// Connections open at once; more are closed when accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 64,
            max_connections: 1024,
        }
    }
}

/// Everything a server is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This provider's domain: the `Host` it answers to, its QS's domain, and its hub's.
    pub domain: String,
    /// Whether it runs the hub (DS) besides its Queueing Service.
    pub runs_hub: bool,
    /// Where to listen, e.g. `127.0.0.1:0`.
    pub listen: std::net::SocketAddr,
    /// Where state is kept.
    pub storage: StorageChoice,
    /// With SQLite storage: the QS's file, if not the default beside the hub's
    /// ([`StorageChoice::qs_sqlite_file`]). Giving the hub's own file keeps both in one file
    /// (the layout of earlier builds), at the cost of QS and hub writes queueing on one write
    /// lock. Ignored for other storage.
    pub qs_sqlite: Option<PathBuf>,
    /// The folder for the hub's signature key and the QS's queue key (created if missing);
    /// keep it with the database: a new key makes every sealed queue unreadable.
    pub state_dir: PathBuf,
    /// Certificates.
    pub tls: TlsMaterial,
    /// The other providers (and this one, if its clients' queues are here: not needed).
    pub peers: PeerDirectory,
    /// Limits.
    pub limits: Limits,
    /// The relay's retries.
    pub retry: RetryPolicy,
    /// How often the relay looks at the outbox when nothing woke it.
    pub relay_poll_interval: Duration,
    /// Destinations delivered to at once.
    pub relay_concurrency: usize,
    /// How long one delivery (connect, TLS, request, answer) may take.
    pub delivery_timeout: Duration,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP), if anywhere. Keep it
    /// on loopback or an operator network: it is not for peers. Default: none.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Who may join the hub's groups by external commit (the hub's
    /// [`mimi_ds::DsConfig::external_joins`]). Default: [`ExternalJoinPolicy::ExistingUsers`],
    /// as in [`mimi_ds::DsConfig::new`]. MIMIMI connection rooms (docs/wire-format.md §14.3.4)
    /// need [`ExternalJoinPolicy::Anyone`]; a room's policy (`external_commit_allowed`) still
    /// restricts each room.
    pub external_joins: ExternalJoinPolicy,
    /// Who may fetch a group's GroupInfo (the hub's [`mimi_ds::DsConfig::group_info_access`]).
    /// Default: [`GroupInfoAccess::Members`], as in [`mimi_ds::DsConfig::new`]. MIMIMI
    /// connection rooms need [`GroupInfoAccess::Anyone`]: the invitee is not yet a member.
    pub group_info_access: GroupInfoAccess,
}

impl ServerConfig {
    /// A configuration with the default limits, retry policy and relay settings.
    pub fn new(
        domain: impl Into<String>,
        runs_hub: bool,
        listen: std::net::SocketAddr,
        storage: StorageChoice,
        state_dir: PathBuf,
        tls: TlsMaterial,
        peers: PeerDirectory,
    ) -> Self {
        Self {
            domain: domain.into(),
            runs_hub,
            listen,
            storage,
            qs_sqlite: None,
            state_dir,
            tls,
            peers,
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            relay_poll_interval: Duration::from_secs(1),
            metrics_listen: None,
            relay_concurrency: 16,
            delivery_timeout: Duration::from_secs(10),
            external_joins: ExternalJoinPolicy::ExistingUsers,
            group_info_access: GroupInfoAccess::Members,
        }
    }

    /// Reads the flags (`args` without the program name). `--help` is an error carrying
    /// [`USAGE`].
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        let mut values: HashMap<&'static str, String> = HashMap::new();
        let mut runs_hub = false;
        let mut args = args.into_iter();
        const WITH_VALUE: [&str; 12] = [
            "--domain",
            "--external-joins",
            "--group-info-access",
            "--metrics-listen",
            "--listen",
            "--storage",
            "--qs-sqlite",
            "--state-dir",
            "--cert",
            "--key",
            "--ca",
            "--peers",
        ];
        while let Some(arg) = args.next() {
            if arg == "--hub" {
                runs_hub = true;
                continue;
            }
            if arg == "--help" || arg == "-h" {
                return Err(ConfigError::Help);
            }
            let Some(&name) = WITH_VALUE.iter().find(|n| **n == arg) else {
                return Err(ConfigError::Invalid(format!(
                    "unknown flag {arg:?}\n\n{USAGE}"
                )));
            };
            let value = args
                .next()
                .ok_or_else(|| ConfigError::Invalid(format!("{name} needs a value")))?;
            values.insert(name, value);
        }
        let required = |name: &'static str| {
            values
                .get(name)
                .cloned()
                .ok_or_else(|| ConfigError::Invalid(format!("{name} is required\n\n{USAGE}")))
        };
        let domain = required("--domain")?;
        let listen = values
            .get("--listen")
            .map_or("127.0.0.1:8443", String::as_str)
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("--listen: {e}")))?;
        let state_dir = values.get("--state-dir").map_or_else(
            || std::env::temp_dir().join(format!("mimi-ds-server-{domain}")),
            PathBuf::from,
        );
        let storage = match values.get("--storage") {
            Some(value) => StorageChoice::parse(value)?,
            None => StorageChoice::Sqlite(state_dir.join("mimi-ds.sqlite3")),
        };
        let tls = TlsMaterial::from_pem_files(
            Path::new(&required("--cert")?),
            Path::new(&required("--key")?),
            Path::new(&required("--ca")?),
        )?;
        let peers = match values.get("--peers") {
            Some(path) => PeerDirectory::parse(
                &std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Invalid(format!("{path}: {e}")))?,
            )?,
            None => PeerDirectory::new(),
        };
        let metrics_listen = values
            .get("--metrics-listen")
            .map(|value| value.parse())
            .transpose()
            .map_err(|e| ConfigError::Invalid(format!("--metrics-listen: {e}")))?;
        let mut config = Self::new(domain, runs_hub, listen, storage, state_dir, tls, peers);
        config.metrics_listen = metrics_listen;
        config.qs_sqlite = values.get("--qs-sqlite").map(PathBuf::from);
        if let Some(value) = values.get("--external-joins") {
            config.external_joins = parse_external_joins(value)?;
        }
        if let Some(value) = values.get("--group-info-access") {
            config.group_info_access = parse_group_info_access(value)?;
        }
        Ok(config)
    }
}

/// `--external-joins disabled|existing-users|anyone`.
fn parse_external_joins(value: &str) -> Result<ExternalJoinPolicy, ConfigError> {
    match value {
        "disabled" => Ok(ExternalJoinPolicy::Disabled),
        "existing-users" => Ok(ExternalJoinPolicy::ExistingUsers),
        "anyone" => Ok(ExternalJoinPolicy::Anyone),
        _ => Err(ConfigError::Invalid(format!(
            "--external-joins {value:?}: expected disabled, existing-users or anyone"
        ))),
    }
}

/// `--group-info-access members|anyone`.
fn parse_group_info_access(value: &str) -> Result<GroupInfoAccess, ConfigError> {
    match value {
        "members" => Ok(GroupInfoAccess::Members),
        "anyone" => Ok(GroupInfoAccess::Anyone),
        _ => Err(ConfigError::Invalid(format!(
            "--group-info-access {value:?}: expected members or anyone"
        ))),
    }
}

/// The flags.
pub const USAGE: &str = "\
mimi-ds-server --domain <domain> --cert <chain.pem> --key <key.pem> --ca <cas.pem> [options]

  --domain <domain>     this provider's domain (Host it answers to)
  --hub                 also run the hub (Delivery Service), not only the Queueing Service
  --listen <addr:port>  where to listen (default 127.0.0.1:8443)
  --storage <choice>    sqlite:<path> (default: <state-dir>/mimi-ds.sqlite3), memory, or a
                        PostgreSQL URL postgres://user:password@host:port/database.
                        SQLite: <path> holds the hub's groups and outbox; the QS's queues
                        are in a second file beside it, <path> with -qs before the
                        extension (default: <state-dir>/mimi-ds-qs.sqlite3)
  --qs-sqlite <path>    with SQLite: the QS's file instead (the hub's own path keeps one file)
  --state-dir <folder>  keys and the default database (default: <tmp>/mimi-ds-server-<domain>)
  --cert, --key         PEM certificate chain and private key of this provider
  --ca <cas.pem>        PEM CA certificates that issue providers' certificates
  --peers <file>        peer directory: one `domain host:port` per line
  --metrics-listen <addr:port>  serve Prometheus metrics at GET /metrics (plain HTTP; keep it
                        on loopback or an operator network)
  --external-joins <who>  with --hub: who may join a group by external commit: disabled,
                        existing-users (default: new devices of members' users) or anyone
                        (open rooms, MIMIMI connection rooms); a room's policy still applies
  --group-info-access <who>  with --hub: who may fetch a group's GroupInfo: members (default:
                        members and their users' new devices) or anyone (also unauthenticated
                        requests; MIMIMI connection rooms)";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--help` was asked for.
    #[error("{USAGE}")]
    Help,
    /// A flag, file or value is wrong.
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_file_parses_and_refuses_garbage() {
        let directory = PeerDirectory::parse(
            "# providers\nbeta.example https://127.0.0.1:8444/\n\nGAMMA.example 10.0.0.1:443\n",
        )
        .expect("parses");
        assert_eq!(directory.address("beta.example"), Some("127.0.0.1:8444"));
        assert_eq!(directory.address("gamma.example"), Some("10.0.0.1:443"));
        assert!(PeerDirectory::parse("beta.example").is_err());
        assert!(PeerDirectory::parse("beta.example 127.0.0.1").is_err());
    }

    #[test]
    fn storage_choices_parse() {
        assert_eq!(
            StorageChoice::parse("memory").ok(),
            Some(StorageChoice::Memory)
        );
        assert_eq!(
            StorageChoice::parse("sqlite:/tmp/x.db").ok(),
            Some(StorageChoice::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            StorageChoice::parse("postgres://hub@localhost/db").ok(),
            Some(StorageChoice::Postgres(
                "postgres://hub@localhost/db".into()
            ))
        );
        assert!(StorageChoice::parse("postgres://localhost:notaport/db").is_err());
        assert!(StorageChoice::parse("mysql://localhost/db").is_err());
        assert!(StorageChoice::parse("sqlite:").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_within_the_jitter_band() {
        let mut policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            jitter: Arc::new(|| 0.0),
        };
        let delays: Vec<_> = (1..=6).map(|n| policy.delay(n).as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 500, 500]);
        policy.jitter = Arc::new(|| 1.0);
        assert_eq!(policy.delay(1).as_millis(), 100);
        assert_eq!(policy.delay(9).as_millis(), 1000);
    }
}
