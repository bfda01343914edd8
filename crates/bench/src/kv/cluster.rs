//! A local 3-node peerwire-kv cluster for the benchmark: real nodes (redb log, fsync on) on
//! loopback, each on its own runtime, data in a temporary directory.

use std::net::SocketAddr;

use peerwire_kv::log_store::LogStoreKind;
use peerwire_kv::{Node, NodeConfig};

use crate::BoxError;
use crate::runtime::RuntimeThread;

/// The running cluster.
pub(crate) struct KvCluster {
    nodes: Vec<(RuntimeThread, Node)>,
    /// Each node's peerwire address.
    pub(crate) addrs: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl KvCluster {
    /// Starts three nodes with `threads` workers each, their raft logs in `log_store`, and
    /// waits for a leader.
    pub(crate) fn start(threads: usize, log_store: LogStoreKind) -> Result<Self, BoxError> {
        let dir = tempfile::tempdir()?;
        let mut listeners = Vec::new();
        let mut peers = Vec::new();
        for id in 1..=3u64 {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.set_nonblocking(true)?;
            peers.push((id, l.local_addr()?));
            listeners.push(l);
        }
        let mut nodes = Vec::new();
        for (l, (id, _)) in listeners.into_iter().zip(peers.iter()) {
            let rt = RuntimeThread::start(&format!("kv-node-{id}"), threads)?;
            let mut cfg =
                NodeConfig::new(*id, peers.clone(), dir.path().join(format!("node-{id}")));
            cfg.log_store = Some(log_store);
            let node = rt.run(async move {
                let l = tokio::net::TcpListener::from_std(l)?;
                Node::start_on(cfg, l).await.map_err(BoxError::from)
            })?;
            nodes.push((rt, node));
        }
        let cluster = Self {
            addrs: peers.iter().map(|(_, a)| *a).collect(),
            nodes,
            _dir: dir,
        };
        let (rt, node) = &cluster.nodes[0];
        let handle = node.handle().clone();
        rt.run(async move {
            tokio::time::timeout(std::time::Duration::from_secs(20), handle.wait_for_leader()).await
        })
        .map_err(|_| "no peerwire-kv leader within 20 s")?;
        Ok(cluster)
    }

    /// Every node's API handle.
    pub(crate) fn handles(&self) -> Vec<peerwire_kv::KvHandle> {
        self.nodes.iter().map(|(_, n)| n.handle().clone()).collect()
    }

    /// Stops every node and its runtime.
    pub(crate) fn stop(self) {
        for (rt, node) in self.nodes {
            rt.run(node.stop());
            rt.shutdown();
        }
    }
}
