//! [`Network`]: how every client built from a configuration opens its streams.

use std::sync::Arc;

use super::{Connector, DynConnector, TcpConnector};

/// How a node opens streams to its peers: TCP by default, or any [`Connector`] (a simulated
/// network, a fault proxy's dialer). It is part of [`ConnectionConfig`](crate::ConnectionConfig),
/// so the clients the library builds for itself (RpcEnv, raft lanes, data-stream forwarding)
/// use it too. Cheap to clone.
#[derive(Clone)]
pub struct Network(Arc<dyn DynConnector>);

impl Network {
    /// Plain TCP ([`TcpConnector`]).
    pub fn tcp() -> Self {
        Self(Arc::new(TcpConnector))
    }

    /// Streams opened by `connector`.
    pub fn new(connector: impl Connector) -> Self {
        Self(Arc::new(connector))
    }

    pub(crate) fn connector(&self) -> Arc<dyn DynConnector> {
        self.0.clone()
    }
}

impl Default for Network {
    fn default() -> Self {
        Self::tcp()
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Network")
    }
}
