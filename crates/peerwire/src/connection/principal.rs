//! Who is on the other end of a connection, as far as the connection proved it.

use std::net::IpAddr;

use crate::transport::Proof;

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

impl Principal {
    /// The principal `proof` establishes, given the node id the peer's hello claimed (already
    /// checked against its certificate under TLS) and its address.
    pub(crate) fn proven(proof: &Proof, claimed_node: u64, addr: IpAddr) -> Self {
        match proof {
            Proof::None => Self::Anonymous(addr),
            Proof::Secret(name) => Self::Secret(name.clone()),
            Proof::Certificate(_) if claimed_node != 0 => Self::Node(claimed_node),
            Proof::Certificate(cert) => Self::User(
                cert.first_dns_name()
                    .unwrap_or_else(|| "a certificate without a DNS name".into()),
            ),
        }
    }
}
