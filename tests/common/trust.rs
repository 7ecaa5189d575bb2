//! How a test's TLS client trusts the server: by pinning the server's own
//! certificate (the self-signed one a test server makes), with rustls and
//! its `ring` provider, as the crate itself uses them.

#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
#[cfg(feature = "tls")]
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
#[cfg(feature = "tls")]
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
#[cfg(feature = "tls")]
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

/// What a TLS client (`tls`, `wss`) trusts; empty for a server without TLS
/// listeners.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    #[cfg(feature = "tls")]
    config: Option<Arc<ClientConfig>>,
}

#[cfg(feature = "tls")]
impl Trust {
    /// Trusts exactly `certificate` (DER) and nothing else, with TLS 1.2
    /// and 1.3.
    pub fn pinned(certificate: CertificateDer<'static>) -> Self {
        Self::with_config(pinned_config(certificate, rustls::DEFAULT_VERSIONS))
    }

    /// A client configuration of the test's own (say, TLS 1.2 only).
    pub fn with_config(config: Arc<ClientConfig>) -> Self {
        Trust {
            config: Some(config),
        }
    }

    /// The client configuration, if this trusts a server.
    pub fn config(&self) -> Option<Arc<ClientConfig>> {
        self.config.clone()
    }
}

/// A client configuration that accepts only `certificate` as the server's,
/// for the given protocol `versions`.
#[cfg(feature = "tls")]
pub fn pinned_config(
    certificate: CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Pinned {
        certificate,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts the pinned certificate, whatever name it is for, and checks the
/// handshake's signatures with it as usual.
#[cfg(feature = "tls")]
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

#[cfg(feature = "tls")]
impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
