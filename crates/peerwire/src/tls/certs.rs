//! A test certificate authority and the node and client certificates it issues (rcgen).
//!
//! Meant for tests, demos and `peerwire-kv certs`: the CA's key lives only in memory, so a
//! new CA is made for every set of certificates. Production clusters bring certificates from
//! their own CA, named as [`node_name`] says.

use std::io;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use super::config::CA_FILE;
use super::{CLIENT_NAME, TlsConfig, TlsConfigError, node_name};

/// A date, UTC: `(year, month, day)`.
pub type Ymd = (i32, u8, u8);

/// A certificate failed to generate.
#[derive(Debug, thiserror::Error)]
#[error("certificate generation: {0}")]
pub struct CertError(#[from] rcgen::Error);

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
}

impl IssuedCert {
    /// Writes `<name>.pem` and `<name>.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> io::Result<()> {
        std::fs::write(dir.join(format!("{name}.pem")), &self.cert_pem)?;
        std::fs::write(dir.join(format!("{name}.key")), &self.key_pem)
    }
}

/// A self-signed CA that issues node and client certificates.
pub struct CertAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Creates a CA whose certificate's common name is `name`.
    pub fn generate(name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = common_name(name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA certificate, PEM (what every node trusts).
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a certificate for node `node_id` (valid far into the future).
    pub fn issue_node(&self, node_id: u64) -> Result<IssuedCert, CertError> {
        self.issue(&node_name(node_id), None)
    }

    /// Issues a client certificate (for anonymous clients: node id 0).
    pub fn issue_client(&self) -> Result<IssuedCert, CertError> {
        self.issue(CLIENT_NAME, None)
    }

    /// Issues a certificate for `dns_name`, valid from the first date to the second or,
    /// with `None`, far into the future.
    pub fn issue(
        &self,
        dns_name: &str,
        validity: Option<(Ymd, Ymd)>,
    ) -> Result<IssuedCert, CertError> {
        let mut params = CertificateParams::new(vec![dns_name.to_string()])?;
        params.distinguished_name = common_name(dns_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The TLS configuration of a node that holds `cert` and trusts this CA.
    pub fn tls_config(&self, cert: &IssuedCert) -> Result<TlsConfig, TlsConfigError> {
        TlsConfig::from_pem(
            self.ca_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
    }

    /// Writes `ca.pem`, a certificate and key per node (`node-<id>.pem`, `node-<id>.key`)
    /// and a client certificate (`client.pem`, `client.key`) into `dir`, the layout
    /// [`TlsConfig::from_dir`] reads.
    pub fn write_cluster(&self, dir: &Path, node_ids: &[u64]) -> Result<(), WriteError> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(CA_FILE), self.ca_pem())?;
        for &id in node_ids {
            self.issue_node(id)?.write(dir, &format!("node-{id}"))?;
        }
        self.issue_client()?.write(dir, "client")?;
        Ok(())
    }
}

/// Writing a cluster's certificates failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Generating a certificate failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Writing a file failed.
    #[error("writing certificates: {0}")]
    Io(#[from] io::Error),
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}
