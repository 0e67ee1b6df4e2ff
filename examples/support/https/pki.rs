//! The throw-away certificate authority and what TLS authenticated about a peer.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What TLS authenticated about the connecting peer.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's certificate chain, leaf first; rustls has already verified it against the
    /// [`Pki`]'s CA during the handshake. Empty when the client presented none.
    pub(super) chain: Vec<CertificateDer<'static>>,
}

impl Peer {
    /// True iff the peer presented a client certificate (which the server verified).
    pub fn is_authenticated(&self) -> bool {
        !self.chain.is_empty()
    }

    /// True iff the peer presented a verified client certificate that is valid for `domain`
    /// (a DNS subject alternative name matching it), i.e. the peer is that provider.
    pub fn is(&self, domain: &str) -> bool {
        let (Some(leaf), Ok(name)) = (self.chain.first(), ServerName::try_from(domain)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
            .is_ok()
    }
}

/// A throw-away certificate authority for 127.0.0.1 runs: one CA, and one leaf certificate
/// per provider domain (subject alternative name = that DNS name) that serves both as TLS
/// server certificate and as TLS client certificate (mutual TLS between providers).
pub struct Pki {
    ca: CertificateDer<'static>,
    leaves: HashMap<String, (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)>,
    provider: Arc<CryptoProvider>,
}

impl Pki {
    /// Generates a CA and one leaf certificate per domain (ECDSA P-256 keys).
    pub fn new(domains: &[&str]) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::new())?;
        // A name of its own per Pki, so that a certificate from another Pki is reported as
        // an unknown issuer rather than a bad signature by a same-named CA.
        let tag: String = ca_key.public_key_raw()[1..9]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("mimi-ds example CA {tag}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;

        let mut leaves = HashMap::new();
        for &domain in domains {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![domain.to_owned()])?;
            params.distinguished_name.push(DnType::CommonName, domain);
            params.key_usages = vec![Ku::DigitalSignature];
            // Both: webpki checks serverAuth on server certificates and clientAuth on client
            // certificates, and a provider's one certificate is used both ways.
            params.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
            let cert = params.signed_by(&key, &ca, &ca_key)?;
            let key = PrivatePkcs8KeyDer::from(key.serialize_der());
            leaves.insert(domain.to_owned(), (cert.der().clone(), key));
        }
        // The ring provider explicitly, not the process default, so that nothing depends on
        // which rustls backend some other crate in the build happened to install.
        let provider = Arc::new(ring::default_provider());
        Ok(Self {
            ca: ca.der().clone(),
            leaves,
            provider,
        })
    }

    /// The CA certificate (DER), for building other client configurations.
    pub fn ca_certificate(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The ring crypto provider all configurations of this `Pki` use.
    pub fn crypto_provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    /// A TLS 1.3-only server configuration presenting the certificate of `domain`. Client
    /// certificates are requested and verified against the CA, but optional: end-user clients
    /// have none, providers present theirs (see [`Peer`]).
    ///
    /// # Panics
    /// If `domain` was not passed to [`Pki::new`] (a programming error in the example).
    pub fn server_config(&self, domain: &str) -> Arc<ServerConfig> {
        let (cert, key) = self.leaf(domain);
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()),
            self.provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        // Invariant: only fails for an empty root store, and ours holds the CA.
        .expect("client verifier over a non-empty root store");
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            // Invariant: the ring provider supports TLS 1.3.
            .expect("ring supports TLS 1.3")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            // Invariant: the key is the one the certificate was generated for.
            .expect("leaf certificate matches its key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS 1.3-only client configuration trusting only the CA; it presents the certificate
    /// of `client_domain` when given (mutual TLS between providers).
    ///
    /// # Panics
    /// If `client_domain` was not passed to [`Pki::new`] (a programming error in the example).
    pub fn client_config(&self, client_domain: Option<&str>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            // Invariant: the ring provider supports TLS 1.3.
            .expect("ring supports TLS 1.3")
            .with_root_certificates(self.roots());
        let mut config = match client_domain {
            None => builder.with_no_client_auth(),
            Some(domain) => {
                let (cert, key) = self.leaf(domain);
                builder
                    .with_client_auth_cert(vec![cert], key)
                    // Invariant: the key is the one the certificate was generated for.
                    .expect("leaf certificate matches its key")
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // Invariant: rcgen produced this certificate, so webpki can parse it.
        roots
            .add(self.ca.clone())
            .expect("rcgen CA certificate parses");
        roots
    }

    fn leaf(&self, domain: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let Some((cert, key)) = self.leaves.get(domain) else {
            panic!("Pki has no certificate for {domain:?}; pass it to Pki::new");
        };
        (cert.clone(), PrivateKeyDer::Pkcs8(key.clone_key()))
    }
}
