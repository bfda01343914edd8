//! What a connection's security layer (TLS, secret mode) proved about its peer, before the
//! hello: the connection turns it into a [`Principal`](crate::connection::Principal).

/// The security layer's proof.
#[derive(Debug, Clone)]
pub(crate) enum Proof {
    /// Plaintext: nothing.
    None,
    /// Mutual TLS: the certificate the peer holds.
    Certificate(crate::tls::PeerCert),
    /// Secret mode: the name of the secret the peer holds.
    Secret(String),
}

impl Proof {
    /// The certificate, under TLS.
    pub(crate) fn certificate(&self) -> Option<&crate::tls::PeerCert> {
        match self {
            Self::Certificate(c) => Some(c),
            _ => None,
        }
    }
}
