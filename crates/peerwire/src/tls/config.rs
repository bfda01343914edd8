//! Loading a node's TLS material and building the rustls configurations from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::verify::ClusterCaVerifier;

/// A node's TLS settings: the cluster CA it trusts and the certificate (with its key) it
/// presents. Used for both sides of every connection. Cheap to clone; clones share the
/// material, so [`TlsConfig::reload`] on any of them changes it for every server and client
/// built with one: new connections use the new material, established ones go on until they
/// close.
#[derive(Clone)]
pub struct TlsConfig {
    material: Arc<std::sync::RwLock<Material>>,
}

#[derive(Clone)]
struct Material {
    server: tokio_rustls::TlsAcceptor,
    client: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read or holds no valid PEM of the expected kind.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The PEM text could not be parsed.
    #[error("{what}: {message}")]
    Pem {
        /// Which input (CA, certificate or key).
        what: &'static str,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the material (for example a key that does not match the certificate).
    #[error("tls: {0}")]
    Rustls(String),
}

/// The file names [`TlsConfig::from_dir`] reads.
pub const CA_FILE: &str = "ca.pem";

impl TlsConfig {
    /// Builds the configuration from PEM text: the CA certificate(s) to trust, this node's
    /// certificate chain (its own certificate first) and its private key.
    pub fn from_pem(ca: &[u8], cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsConfigError> {
        let pem = |what: &'static str| {
            move |e: rustls_pki_types::pem::Error| TlsConfigError::Pem {
                what,
                message: e.to_string(),
            }
        };
        let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca)
            .collect::<Result<_, _>>()
            .map_err(pem("CA"))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<_, _>>()
            .map_err(pem("certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(pem("key"))?;
        Self::from_der(roots, chain, key)
    }

    /// Reads `ca.pem`, `<name>.pem` and `<name>.key` from `dir` (the layout
    /// `peerwire-kv certs` writes, `name` being for example `node-1` or `client`).
    pub fn from_dir(dir: &Path, name: &str) -> Result<Self, TlsConfigError> {
        let read = |file: String| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|e| TlsConfigError::File {
                path,
                message: e.to_string(),
            })
        };
        Self::from_pem(
            &read(CA_FILE.to_string())?,
            &read(format!("{name}.pem"))?,
            &read(format!("{name}.key"))?,
        )
    }

    /// Builds the configuration from DER: trusted CA certificates, this node's chain and key.
    pub fn from_der(
        roots: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsConfigError> {
        if roots.is_empty() {
            return Err(TlsConfigError::Pem {
                what: "CA",
                message: "no certificate found".into(),
            });
        }
        if chain.is_empty() {
            return Err(TlsConfigError::Pem {
                what: "certificate",
                message: "no certificate found".into(),
            });
        }
        let rustls_err = |e: rustls::Error| TlsConfigError::Rustls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root).map_err(rustls_err)?;
        }
        let store = Arc::new(store);

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(store.clone(), provider.clone())
                .build()
                .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_err)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(rustls_err)?;

        let server_verifier = ClusterCaVerifier::new(store, provider.clone())?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(server_verifier))
            .with_client_auth_cert(chain, key)
            .map_err(rustls_err)?;
        Ok(Self {
            material: Arc::new(std::sync::RwLock::new(Material {
                server: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
                client: tokio_rustls::TlsConnector::from(Arc::new(client)),
            })),
        })
    }

    /// Replaces this configuration's material (and that of every clone) with `from`'s: a
    /// rotated certificate or CA, without a restart. Connections made or accepted from now on
    /// use it; established ones are not touched.
    pub fn reload(&self, from: &Self) {
        let new = from.material.read().expect("tls material poisoned").clone();
        *self.material.write().expect("tls material poisoned") = new;
    }

    /// The acceptor of new connections, with the material current now.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.material
            .read()
            .expect("tls material poisoned")
            .server
            .clone()
    }

    /// The connector of new connections, with the material current now.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        self.material
            .read()
            .expect("tls material poisoned")
            .client
            .clone()
    }

    /// The server name a client sends (SNI). Names are not what identifies a peer here (the
    /// hello's node id checked against the certificate is), so every connection uses one.
    pub(crate) fn server_name() -> ServerName<'static> {
        ServerName::try_from("peerwire").expect("a valid DNS name")
    }
}
