//! TLS 1.3 with mutual authentication on every lane (rustls, tokio-rustls).
//!
//! Both sides of every connection present a certificate signed by the cluster's CA. A node's
//! certificate names it by a DNS subject-alternative name, [`node_name`]`(id)`
//! (`node-7.peerwire`); the hello that follows the TLS handshake must claim that same node id,
//! or the connection is refused with [`GoAwayReason::IdentityMismatch`]. An anonymous client
//! (node id 0) needs a certificate from the CA but claims no node.
//!
//! With TLS configured ([`ConnectionConfig::tls`](crate::ConnectionConfig::tls)) there is no
//! plaintext fallback: a server answers a plaintext hello with
//! [`GoAwayReason::TlsRequired`] and closes. The TLS handshake runs in the connection's own
//! task, bounded by the handshake timeout, so a slow peer never stalls accepting.
//!
//! [`GoAwayReason::IdentityMismatch`]: crate::GoAwayReason::IdentityMismatch
//! [`GoAwayReason::TlsRequired`]: crate::GoAwayReason::TlsRequired

#[cfg(feature = "certs")]
pub mod certs;
mod config;
mod failure;
mod handshake;
mod identity;
mod prefixed;
mod verify;

pub use config::{CA_FILE, TlsConfig, TlsConfigError};
pub use failure::TlsFailure;
pub use identity::{CLIENT_NAME, node_name};

pub(crate) use failure::classify_io;
pub(crate) use handshake::{accept, connect};
pub(crate) use identity::PeerCert;
pub(crate) use prefixed::Prefixed;

/// The first byte of every TLS record that opens a connection (a handshake record). A
/// peerwire frame starts with a big-endian body length, whose first byte is 0 for a hello.
pub(crate) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A TLS stream made outside peerwire (a custom [`Connector`](crate::transport::Connector))
/// can carry connections too; peerwire then sees it as plaintext and checks no certificate.
impl<I: crate::transport::Io> crate::transport::Io for tokio_rustls::client::TlsStream<I> {}

/// See the client-side impl.
impl<I: crate::transport::Io> crate::transport::Io for tokio_rustls::server::TlsStream<I> {}
