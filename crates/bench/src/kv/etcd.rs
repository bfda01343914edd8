//! A local 3-member etcd cluster (the `etcd` binary, e.g. Debian's `etcd-server` 3.4) and a
//! client of its gRPC API (`proto/etcd.proto`: etcd's own `KV.Put` and `Maintenance.Status`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::BoxError;

/// The generated etcd client types.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::use_self)]
pub(crate) mod pb {
    tonic::include_proto!("etcdserverpb");
}

/// Where `docs/bench/install-etcd` puts etcd, relative to the workspace.
pub(crate) const INSTALLED: &str = "target/tools/etcd/etcd";

/// The `etcd` binary to use: `--etcd`, else `etcd` on PATH, else the one
/// `docs/bench/install-etcd` installed (looked up from the current directory and the
/// workspace this bench was built in).
pub(crate) fn find_etcd(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p.to_owned());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    on_path.or_else(|| {
        [PathBuf::from("."), workspace]
            .into_iter()
            .map(|root| root.join(INSTALLED))
            .find(|p| p.is_file())
    })
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Three etcd members as child processes; killed on drop.
pub(crate) struct EtcdCluster {
    children: Vec<Child>,
    /// Each member's client address.
    pub(crate) clients: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts the members (fsync on, etcd's defaults) and waits until they have a leader.
    pub(crate) fn start(etcd: &Path, rt: &tokio::runtime::Handle) -> Result<Self, BoxError> {
        let dir = tempfile::tempdir()?;
        let mut peer_ports = Vec::new();
        let mut client_ports = Vec::new();
        for _ in 0..3 {
            peer_ports.push(free_port()?);
            client_ports.push(free_port()?);
        }
        let initial: Vec<String> = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut cluster = Self {
            children: Vec::new(),
            clients: client_ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
            _dir: dir,
        };
        for i in 0..3 {
            let child = Command::new(etcd)
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(cluster._dir.path().join(format!("e{i}")))
                .args([
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{}", peer_ports[i]),
                ])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{}", peer_ports[i]),
                ])
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{}", client_ports[i]),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{}", client_ports[i]),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "peerwire-bench"])
                .args([
                    "--logger",
                    "zap",
                    "--log-outputs",
                    "stderr",
                    "--log-level",
                    "error",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting {}: {e}", etcd.display()))?;
            cluster.children.push(child);
        }
        let clients = cluster.clients.clone();
        rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = leader(&clients).await {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(BoxError::from("etcd had no leader within 30 s"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })?;
        Ok(cluster)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A gRPC channel to `addr`.
pub(crate) async fn channel(addr: SocketAddr) -> Result<Channel, BoxError> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// The client address of the member that leads, if the members agree on one.
pub(crate) async fn leader(clients: &[SocketAddr]) -> Result<Option<SocketAddr>, BoxError> {
    let mut leader = None;
    let mut ids = Vec::new();
    for addr in clients {
        let mut m = pb::maintenance_client::MaintenanceClient::new(channel(*addr).await?);
        let s = m.status(pb::StatusRequest {}).await?.into_inner();
        let me = s.header.map(|h| h.member_id).unwrap_or(0);
        ids.push((me, *addr));
        if s.leader != 0 {
            leader = Some(s.leader);
        }
    }
    Ok(leader.and_then(|l| ids.iter().find(|(id, _)| *id == l).map(|(_, a)| *a)))
}
