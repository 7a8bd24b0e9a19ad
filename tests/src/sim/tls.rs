//! The self-signed certificate generated at start (RouterOS routers usually have one) and the
//! rustls server config used by REST-over-HTTPS and API-SSL. Uses the `ring` provider only.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
    /// The certificate in PEM, for clients that want to trust it as a root.
    pub cert_pem: String,
}

pub fn generate() -> Result<Tls, TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let der = ck.cert.der().clone();
    let fingerprint = hex::encode(Sha256::digest(der.as_ref()));
    let cert_pem = ck.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)?;
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        fingerprint,
        cert_pem,
    })
}
