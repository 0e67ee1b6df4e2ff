//! TLS 1.3 (rustls, ring): the server's configuration with optional, verified client
//! certificates; the relay's client configuration presenting this provider's certificate; and
//! which provider a verified client certificate names.

use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore};

use crate::config::{PeerDirectory, TlsMaterial};

/// A TLS setup that cannot be built from the given material.
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration: {0}")]
pub struct TlsError(String);

fn provider() -> Arc<CryptoProvider> {
    // The ring provider explicitly, never the process default, so nothing depends on which
    // rustls backend another crate in the build installed.
    Arc::new(ring::default_provider())
}

fn roots(material: &TlsMaterial) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in &material.trusted_cas {
        roots
            .add(ca.clone())
            .map_err(|e| TlsError(format!("CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The server side: TLS 1.3 only, ALPN `h2` and `http/1.1`. Client certificates are requested
/// and verified against the trusted CAs but optional: end-user clients have none, providers
/// present theirs (mutual TLS, TR-01).
pub(crate) fn server_config(material: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(material)?), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            material.certificate_chain.clone(),
            material.private_key.clone_key(),
        )
        .map_err(|e| TlsError(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side for provider-to-provider calls: TLS 1.3 only, trusting only the configured
/// CAs, presenting this provider's certificate; ALPN `http/1.1`.
pub(crate) fn client_config(material: &TlsMaterial) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots(material)?)
        .with_client_auth_cert(
            material.certificate_chain.clone(),
            material.private_key.clone_key(),
        )
        .map_err(|e| TlsError(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The provider a client certificate (already verified by rustls during the handshake) names:
/// the first domain of the directory, or this provider's own, the leaf is valid for. `None`
/// for a client without a certificate, or one naming no known provider.
pub(crate) fn authenticated_peer(
    chain: Option<&[CertificateDer<'static>]>,
    own_domain: &str,
    peers: &PeerDirectory,
) -> Option<String> {
    let leaf = chain?.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    std::iter::once(own_domain)
        .chain(peers.domains())
        .find(|domain| {
            ServerName::try_from(*domain)
                .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
        })
        .map(str::to_owned)
}
