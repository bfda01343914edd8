//! Which node a certificate belongs to.

use rustls_pki_types::{CertificateDer, ServerName};

/// The DNS subject-alternative name every node's certificate carries:
/// `node-<id>.peerwire`.
pub fn node_name(node_id: u64) -> String {
    format!("node-{node_id}.peerwire")
}

/// The name client certificates carry (`peerwire-kv certs` issues one); any certificate from
/// the CA admits an anonymous client, so this is a convention, not a check.
pub const CLIENT_NAME: &str = "client.peerwire";

/// The end-entity certificate a peer proved it holds during the TLS handshake.
#[derive(Debug, Clone)]
pub(crate) struct PeerCert(CertificateDer<'static>);

impl PeerCert {
    pub(crate) fn new(der: CertificateDer<'static>) -> Self {
        Self(der)
    }

    /// The first DNS subject-alternative name the certificate carries.
    pub(crate) fn first_dns_name(&self) -> Option<String> {
        let cert = webpki::EndEntityCert::try_from(&self.0).ok()?;
        cert.valid_dns_names().next().map(str::to_owned)
    }

    /// Whether this certificate may speak for `node_id`: node 0 (an anonymous client) claims
    /// nothing, any other node must be named by the certificate.
    pub(crate) fn check_claim(&self, node_id: u64) -> Result<(), String> {
        if node_id == 0 {
            return Ok(());
        }
        let name = node_name(node_id);
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|e| format!("{name} is not a valid DNS name: {e}"))?;
        let cert = webpki::EndEntityCert::try_from(&self.0)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        cert.verify_is_valid_for_subject_name(&server_name)
            .map_err(|_| format!("the certificate does not name {name}"))
    }
}
