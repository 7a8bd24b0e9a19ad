//! TLS client configuration for REST over HTTPS and API-SSL: rustls with the `ring` provider
//! (no aws-lc-rs: we cross-compile to aarch64), and either a pinned SHA-256 fingerprint of the
//! router's usually self-signed certificate or the platform's trust store.
//!
//! When an unpinned certificate is not trusted, the error names its fingerprint so the
//! technician can pin it with `?fingerprint=…` after checking it at the router
//! (`/certificate print detail`).

use std::sync::{Arc, Once};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::error::{Result, RouterError};
use super::url::fingerprint_hex;

/// Installs ring as the process-wide rustls provider, once. Harmless if already installed.
pub(crate) fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; ours is passed explicitly anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn sha256(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A client config that pins `fingerprint`, or trusts the platform's roots when `None`.
pub(crate) fn client_config(fingerprint: Option<[u8; 32]>) -> Result<ClientConfig> {
    install_provider();
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RouterError::Protocol(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match fingerprint {
        Some(fp) => Arc::new(PinnedCertificate { fp, algs }),
        None => Arc::new(HintFingerprint {
            inner: Arc::new(
                rustls_platform_verifier::Verifier::new(provider)
                    .map_err(|e| RouterError::Protocol(format!("TLS trust store: {e}")))?,
            ),
        }),
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

/// Accepts exactly the certificate whose DER SHA-256 is `fp`; signatures are still checked,
/// so the peer must hold the certificate's private key.
#[derive(Debug)]
struct PinnedCertificate {
    fp: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let got = sha256(end_entity.as_ref());
        if got == self.fp {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "router certificate fingerprint {} does not match the pinned {}",
                fingerprint_hex(&got),
                fingerprint_hex(&self.fp)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Delegates to the platform verifier and, on failure, names the certificate's fingerprint.
#[derive(Debug)]
struct HintFingerprint {
    inner: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for HintFingerprint {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| {
                rustls::Error::General(format!(
                    "router certificate not trusted ({e}); if it is the router's own \
                     certificate, pin it by adding ?fingerprint={} to the router URL",
                    fingerprint_hex(&sha256(end_entity.as_ref()))
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server name to present: an IP literal or a DNS name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .map_err(|e| RouterError::Protocol(format!("invalid host name {host:?}: {e}")))
}
