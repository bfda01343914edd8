//! Who is on the other end of a connection, as far as the connection proved it.

use std::net::IpAddr;

/// The peer of a connection as its handshake established it: what handlers, RpcEnv endpoints,
/// typed-protocol methods and lane services may base decisions on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// A member whose certificate names it (`node-<id>.peerwire`), under mutual TLS.
    Node(u64),
    /// A client under mutual TLS, by its certificate's first DNS name (`client.peerwire` for
    /// the certificates `peerwire-kv certs` issues).
    User(String),
    /// A holder of the shared secret of this name (secret mode).
    Secret(String),
    /// A plaintext peer: nothing is proven (the node id in its hello is a claim), so it is
    /// known by its address only.
    Anonymous(IpAddr),
}

impl Principal {
    /// Whether the handshake proved anything (TLS or secret mode).
    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Self::Anonymous(_))
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(id) => write!(f, "node {id}"),
            Self::User(name) => write!(f, "user {name}"),
            Self::Secret(name) => write!(f, "holder of secret {name}"),
            Self::Anonymous(ip) => write!(f, "anonymous peer at {ip}"),
        }
    }
}

/// What a connection's security layer established about its peer, before the hello.
#[derive(Debug, Clone)]
pub(crate) enum Proof {
    None,
    Certificate(crate::tls::PeerCert),
    Secret(String),
}

impl Proof {
    /// The principal, given the node id the peer's hello claimed (already checked against
    /// its certificate under TLS).
    pub(crate) fn principal(&self, claimed_node: u64, addr: IpAddr) -> Principal {
        match self {
            Self::None => Principal::Anonymous(addr),
            Self::Secret(name) => Principal::Secret(name.clone()),
            Self::Certificate(_) if claimed_node != 0 => Principal::Node(claimed_node),
            Self::Certificate(cert) => Principal::User(
                cert.first_dns_name()
                    .unwrap_or_else(|| "a certificate without a DNS name".into()),
            ),
        }
    }

    /// The certificate, under TLS.
    pub(crate) fn certificate(&self) -> Option<&crate::tls::PeerCert> {
        match self {
            Self::Certificate(c) => Some(c),
            _ => None,
        }
    }
}
