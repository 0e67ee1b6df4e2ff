//! The demo's throw-away certificate authority: one CA generated at start-up, and one
//! certificate per provider domain that serves as its TLS server certificate and, when its
//! relay delivers to another provider, as its client certificate (mutual TLS).
//!
//! A deployment gets these from its own CA instead and passes them as PEM files
//! (`mimi-ds-server --cert --key --ca`, docs/deploy.md "Certificates and the peer directory").

use std::sync::Arc;

use mimi_ds_server::TlsMaterial;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and the certificate and key of each provider domain.
pub struct Pki {
    ca: CertificateDer<'static>,
    leaves: Vec<(String, CertificateDer<'static>, Vec<u8>)>,
}

impl Pki {
    /// Generates a CA and one leaf per domain (ECDSA P-256 keys; subject alternative name =
    /// the domain; usable as server and as client certificate).
    pub fn new(domains: &[&str]) -> Result<Self, rcgen::Error> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mimi-ds demo CA (throw-away)");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;
        let mut leaves = Vec::new();
        for &domain in domains {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![domain.to_owned()])?;
            params.distinguished_name.push(DnType::CommonName, domain);
            params.key_usages = vec![Ku::DigitalSignature];
            params.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
            let cert = params.signed_by(&key, &ca, &ca_key)?;
            leaves.push((domain.to_owned(), cert.der().clone(), key.serialize_der()));
        }
        Ok(Self {
            ca: ca.der().clone(),
            leaves,
        })
    }

    /// A provider's certificate and key, and the CA it trusts for its peers.
    pub fn material(&self, domain: &str) -> TlsMaterial {
        let (_, cert, key) = self
            .leaves
            .iter()
            .find(|(d, _, _)| d == domain)
            .expect("a certificate for every provider of the demo");
        TlsMaterial {
            certificate_chain: vec![cert.clone()],
            private_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
            trusted_cas: vec![self.ca.clone()],
        }
    }

    /// What an end-user client uses: TLS 1.3 only, trusting the demo CA, no client
    /// certificate, HTTP/2 offered by ALPN.
    pub fn end_user_client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .expect("the CA certificate parses");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}
