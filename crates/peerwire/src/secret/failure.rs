//! Why a secret-mode handshake failed, by kind.

/// What went wrong in a secret-mode handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFailure {
    /// A plaintext (or TLS) peer reached a node that requires the shared secret.
    NotSecret,
    /// The peer does not speak secret mode (it answered as plaintext peerwire or TLS).
    PeerNotSecret,
    /// The peer holds no secret of the name offered.
    UnknownSecret,
    /// The secrets differ: the handshake's authentication failed.
    WrongSecret,
    /// Bytes that are not a secret-mode handshake or record (including a replayed or
    /// tampered exchange).
    Malformed,
}

impl SecretFailure {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotSecret => "secret_required",
            Self::PeerNotSecret => "peer_not_secret",
            Self::UnknownSecret => "unknown_secret",
            Self::WrongSecret => "wrong_secret",
            Self::Malformed => "secret_malformed",
        }
    }
}

impl std::fmt::Display for SecretFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotSecret => "the node requires the shared secret",
            Self::PeerNotSecret => "the peer does not speak secret mode",
            Self::UnknownSecret => "the peer holds no secret of that name",
            Self::WrongSecret => "wrong secret",
            Self::Malformed => "malformed secret-mode bytes",
        })
    }
}
