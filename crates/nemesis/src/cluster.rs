//! The nodes: peerwire-kv processes, one per namespace, started, killed (`kill -9`), paused
//! (`SIGSTOP`/`SIGCONT`) and restarted on the same data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::netns::{Hosts, node_ip};
use crate::partition::NodeId;

/// Every node's peerwire (raft and native client) port.
pub const PEER_PORT: u16 = 2380;
/// Every node's HTTP API port.
pub const HTTP_PORT: u16 = 2379;

/// Node `i`'s peerwire address.
pub fn peer_addr(i: NodeId) -> SocketAddr {
    SocketAddr::from((node_ip(i), PEER_PORT))
}

/// Node `i`'s HTTP address.
pub fn http_addr(i: NodeId) -> SocketAddr {
    SocketAddr::from((node_ip(i), HTTP_PORT))
}

/// How to start the nodes.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The `peerwire-kv` program.
    pub kv_bin: PathBuf,
    /// Where node `i` keeps `n<i>/` (its data and `node.log`).
    pub dir: PathBuf,
    /// Mutual TLS on every lane: a directory `peerwire-kv certs` wrote.
    pub tls_dir: Option<PathBuf>,
}

/// The running nodes.
#[derive(Debug)]
pub struct Cluster {
    spec: NodeSpec,
    /// Each node's process (index `i - 1`), `None` while killed.
    procs: Vec<Option<Child>>,
    /// The namespace prefix of each node (`ip netns exec <ns>`).
    exec: Vec<[String; 3]>,
    nodes: NodeId,
}

impl Cluster {
    /// Starts every node of `hosts`.
    pub fn start(hosts: &Hosts, spec: NodeSpec) -> std::io::Result<Self> {
        let nodes = hosts.nodes();
        let mut cluster = Self {
            spec,
            procs: (0..nodes).map(|_| None).collect(),
            exec: (1..=nodes).map(|i| hosts.exec_prefix(i)).collect(),
            nodes,
        };
        for i in 1..=nodes {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    /// How many nodes.
    pub fn nodes(&self) -> NodeId {
        self.nodes
    }

    fn cluster_flag(&self) -> String {
        (1..=self.nodes)
            .map(|i| format!("http://{}", peer_addr(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s directory.
    pub fn node_dir(&self, i: NodeId) -> PathBuf {
        self.spec.dir.join(format!("n{i}"))
    }

    /// Starts node `i` (again, after a kill: same data directory, the log appended to).
    pub fn start_node(&mut self, i: NodeId) -> std::io::Result<()> {
        let dir = self.node_dir(i);
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))?;
        let mut command = Command::new("ip");
        command
            .args(&self.exec[i as usize - 1])
            .arg(&self.spec.kv_bin)
            .arg("node")
            .args(["--id", &i.to_string()])
            .args(["--cluster", &self.cluster_flag()])
            .args(["--port", &HTTP_PORT.to_string()])
            .args(["--http-host", &node_ip(i).to_string()])
            .arg("--data-dir")
            .arg(dir.join("data"));
        if let Some(tls) = &self.spec.tls_dir {
            command.arg("--tls-dir").arg(tls);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.procs[i as usize - 1] = Some(child);
        Ok(())
    }

    fn pid(&self, i: NodeId) -> Option<Pid> {
        self.procs[i as usize - 1]
            .as_ref()
            .and_then(Child::id)
            .map(|p| Pid::from_raw(p as i32))
    }

    /// `kill -9` node `i` and waits for it to be gone.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropped midway, the node may be killed but still counted as running.
    pub async fn kill(&mut self, i: NodeId) {
        if let Some(mut child) = self.procs[i as usize - 1].take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Whether node `i` is running (not killed).
    pub fn is_running(&self, i: NodeId) -> bool {
        self.procs[i as usize - 1].is_some()
    }

    /// Stops node `i` with `SIGSTOP` (a process that does nothing, as in a long GC pause).
    pub fn pause(&self, i: NodeId) {
        if let Some(pid) = self.pid(i) {
            let _ = kill(pid, Signal::SIGSTOP);
        }
    }

    /// Lets a paused node `i` go on (`SIGCONT`).
    pub fn resume(&self, i: NodeId) {
        if let Some(pid) = self.pid(i) {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }

    /// Which nodes exited on their own (not killed by the nemesis), with their status.
    pub fn exited(&mut self) -> Vec<(NodeId, String)> {
        let mut out = Vec::new();
        for (n, slot) in self.procs.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push((n as NodeId + 1, status.to_string()));
                *slot = None;
            }
        }
        out
    }

    /// Stops every node (resumed first, then `SIGTERM`, then killed if it lingers).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe; dropping the cluster kills what is left.
    pub async fn stop(&mut self) {
        for i in 1..=self.nodes {
            self.resume(i);
            if let Some(pid) = self.pid(i) {
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
        for slot in &mut self.procs {
            if let Some(mut child) = slot.take() {
                let waited =
                    tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
                if waited.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
    }
}
