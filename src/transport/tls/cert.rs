//! The server's certificate: loaded from PEM files, or made at start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The certificate file cannot be read or is not PEM.
    #[error("cannot read the TLS certificate file '{}'", path.display())]
    ReadCertificate {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("the TLS certificate file '{}' holds no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file cannot be read or is not PEM.
    #[error("cannot read the TLS key file '{}'", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: pem::Error,
    },
    /// The key file holds no private key.
    #[error("the TLS key file '{}' holds no private key", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key does not match the certificate, or rustls cannot use it.
    #[error("the TLS key does not match the certificate, or cannot be used")]
    Key(#[source] rustls::Error),
    /// Making the self-signed certificate failed.
    #[error("making a self-signed TLS certificate failed")]
    Generate(#[source] rcgen::Error),
}

/// A certificate chain and its private key, for the TLS listeners.
pub struct TlsCertificate {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsCertificate {
    /// Loads a certificate chain (the server's certificate first) and its
    /// private key (PKCS#8, PKCS#1 or SEC1) from PEM files, and checks that
    /// they belong together.
    pub fn load_pem(cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let chain = CertificateDer::pem_file_iter(cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| CertError::ReadCertificate {
                path: cert_path.to_owned(),
                source,
            })?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate {
                path: cert_path.to_owned(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| match source {
            pem::Error::NoItemsFound => CertError::NoKey {
                path: key_path.to_owned(),
            },
            source => CertError::ReadKey {
                path: key_path.to_owned(),
                source,
            },
        })?;
        let certificate = TlsCertificate { chain, key };
        certificate.server_config()?;
        Ok(certificate)
    }

    /// A new self-signed certificate for `localhost` and `127.0.0.1`
    /// (ECDSA P-256), made now.
    pub fn self_signed() -> Result<Self, CertError> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).map_err(CertError::Generate)?;
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        Ok(TlsCertificate {
            chain: vec![made.cert.der().clone()],
            key,
        })
    }

    /// The server's own certificate (DER), the first of the chain: what a
    /// client may pin or add to its roots.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The SHA-256 fingerprint of the server's certificate, as
    /// `openssl x509 -fingerprint -sha256` prints it (`AB:CD:...`).
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.certificate_der());
        let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }

    /// A rustls server configuration with this certificate: the `ring`
    /// provider, TLS 1.2 and 1.3, no client certificates. (For WebSocket
    /// over TLS a caller may set `alpn_protocols` to `http/1.1` on a clone.)
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(CertError::Key)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(CertError::Key)?;
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsCertificate {
    /// Never shows the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("chain_len", &self.chain.len())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}
