//! A peerwire-kv cluster in one process: real nodes over loopback sockets, each with its own
//! data directory, fast ticks, and helpers to stop, restart, cut and talk HTTP to them.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;

use peerwire::tls::TlsConfig;
use peerwire::tls::certs::CertAuthority;
use peerwire_kv::{Node, NodeConfig};
use peerwire_testkit::bounded;

/// The tick of test clusters: elections take 10–20 ticks.
pub const TICK: Duration = Duration::from_millis(20);

/// A cluster of in-process nodes.
pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    pub peers: Vec<(u64, SocketAddr)>,
    pub dirs: BTreeMap<u64, tempfile::TempDir>,
    pub snapshot_entries: u64,
    pub catchup_entries: u64,
    pub request_timeout: Duration,
    /// With TLS: the CA that issued every node's certificate.
    pub ca: Option<Arc<CertAuthority>>,
    /// In secret mode: the secret every node holds.
    pub secret: Option<peerwire::secret::SecretConfig>,
    /// The access rules of nodes (re)started from now on.
    pub access: peerwire::access::AccessPolicy,
    /// With TLS: each running node's configuration (shared with the node: reloading it
    /// changes what the node's new connections use).
    pub tls_of: BTreeMap<u64, TlsConfig>,
}

pub fn config(
    id: u64,
    peers: &[(u64, SocketAddr)],
    dir: PathBuf,
    snapshot_entries: u64,
    catchup_entries: u64,
) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, peers.to_vec(), dir);
    cfg.tick = TICK;
    cfg.snapshot_entries = snapshot_entries;
    cfg.catchup_entries = catchup_entries;
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    cfg
}

impl Cluster {
    /// Starts `n` nodes.
    pub async fn start(n: u64) -> Self {
        Self::start_with(n, 10_000, 5_000, Duration::from_secs(5)).await
    }

    /// Starts `n` nodes with mutual TLS, each with a certificate from a fresh test CA.
    pub async fn start_tls(n: u64) -> Self {
        let ca = Arc::new(CertAuthority::generate("test cluster").unwrap());
        Self::start_full(n, 10_000, 5_000, Duration::from_secs(5), Some(ca), None).await
    }

    /// Starts `n` nodes in secret mode, all holding `secret`.
    pub async fn start_secret(n: u64, secret: peerwire::secret::SecretConfig) -> Self {
        Self::start_full(n, 10_000, 5_000, Duration::from_secs(5), None, Some(secret)).await
    }

    /// Restarts node `id` with `access` as its rules (kept for later restarts).
    pub async fn restart_with_access(&mut self, id: u64, access: peerwire::access::AccessPolicy) {
        self.access = access;
        self.stop(id).await;
        self.restart(id).await;
    }

    pub async fn start_with(
        n: u64,
        snapshot_entries: u64,
        catchup_entries: u64,
        request_timeout: Duration,
    ) -> Self {
        Self::start_full(
            n,
            snapshot_entries,
            catchup_entries,
            request_timeout,
            None,
            None,
        )
        .await
    }

    /// Rotates the cluster to a new CA under the running nodes: each node's certificate and
    /// trusted CA are reloaded (new connections use them); restarts use the new CA too.
    pub fn rotate_ca(&mut self, ca: Arc<CertAuthority>) {
        for (id, tls) in &self.tls_of {
            tls.reload(&ca.tls_config(&ca.issue_node(*id).unwrap()).unwrap());
        }
        self.ca = Some(ca);
    }

    /// The TLS settings of node `id` (or of a client, id 0), if the cluster runs TLS.
    pub fn tls(&self, id: u64) -> Option<TlsConfig> {
        let ca = self.ca.as_ref()?;
        let cert = match id {
            0 => ca.issue_client(),
            id => ca.issue_node(id),
        };
        Some(ca.tls_config(&cert.unwrap()).unwrap())
    }

    async fn start_full(
        n: u64,
        snapshot_entries: u64,
        catchup_entries: u64,
        request_timeout: Duration,
        ca: Option<Arc<CertAuthority>>,
        secret: Option<peerwire::secret::SecretConfig>,
    ) -> Self {
        peerwire_testkit::logs_from_env();
        let mut listeners = Vec::new();
        let mut peers = Vec::new();
        for id in 1..=n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.push((id, l.local_addr().unwrap()));
            listeners.push(l);
        }
        let mut c = Self {
            nodes: BTreeMap::new(),
            peers: peers.clone(),
            dirs: BTreeMap::new(),
            snapshot_entries,
            catchup_entries,
            request_timeout,
            ca,
            secret,
            tls_of: BTreeMap::new(),
            access: peerwire::access::AccessPolicy::default(),
        };
        for (l, (id, _)) in listeners.into_iter().zip(peers.iter()) {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(
                *id,
                &peers,
                dir.path().to_path_buf(),
                snapshot_entries,
                catchup_entries,
            );
            cfg.request_timeout = request_timeout;
            cfg.tls = c.tls(*id);
            if let Some(tls) = &cfg.tls {
                c.tls_of.insert(*id, tls.clone());
            }
            cfg.secret = c.secret.clone();
            let node = Node::start_on(cfg, l).await.unwrap();
            c.dirs.insert(*id, dir);
            c.nodes.insert(*id, node);
        }
        c
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    /// Waits until every running node (but `skip`) agrees on a leader, and returns it.
    pub async fn leader(&self, skip: Option<u64>) -> u64 {
        bounded("an agreed leader", async {
            let mut watches: Vec<_> = self
                .nodes
                .iter()
                .filter(|(id, _)| Some(**id) != skip)
                .map(|(_, n)| n.handle().views())
                .collect();
            loop {
                let leaders: Vec<u64> = watches
                    .iter_mut()
                    .map(|w| w.borrow_and_update().leader)
                    .collect();
                if leaders[0] != 0
                    && Some(leaders[0]) != skip
                    && leaders.iter().all(|l| *l == leaders[0])
                    && self.nodes.contains_key(&leaders[0])
                {
                    return leaders[0];
                }
                // Wake on any node's next step.
                let waits = watches.iter_mut().map(|w| Box::pin(w.changed()));
                let _ = futures::future::select_all(waits).await;
            }
        })
        .await
    }

    /// Stops node `id`, keeping its data directory.
    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("node running");
        node.stop().await;
    }

    /// Restarts node `id` from its data directory, on its address.
    pub async fn restart(&mut self, id: u64) {
        let dir = self.dirs[&id].path().to_path_buf();
        let mut cfg = config(
            id,
            &self.peers,
            dir,
            self.snapshot_entries,
            self.catchup_entries,
        );
        cfg.request_timeout = self.request_timeout;
        cfg.tls = self.tls(id);
        if let Some(tls) = &cfg.tls {
            self.tls_of.insert(id, tls.clone());
        }
        cfg.secret = self.secret.clone();
        cfg.access = self.access.clone();
        let node = Node::start(cfg).await.unwrap();
        self.nodes.insert(id, node);
    }

    /// Starts a new node `id` at a fresh address that joins the cluster (after `add_member`).
    pub async fn start_joiner(&mut self, id: u64, listener: tokio::net::TcpListener) {
        let addr = listener.local_addr().unwrap();
        self.peers.push((id, addr));
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(
            id,
            &self.peers,
            dir.path().to_path_buf(),
            self.snapshot_entries,
            self.catchup_entries,
        );
        cfg.join = true;
        cfg.request_timeout = self.request_timeout;
        cfg.tls = self.tls(id);
        if let Some(tls) = &cfg.tls {
            self.tls_of.insert(id, tls.clone());
        }
        cfg.secret = self.secret.clone();
        let node = Node::start_on(cfg, listener).await.unwrap();
        self.dirs.insert(id, dir);
        self.nodes.insert(id, node);
    }

    pub async fn shutdown(self) {
        for (_, n) in self.nodes {
            n.stop().await;
        }
    }
}

/// One HTTP request; returns the status and the body as text.
pub async fn http(method: &str, url: &str, body: impl Into<Bytes>) -> (u16, String) {
    let (status, _, body) = http_bytes(method, url, body).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One HTTP request; returns the status, the headers and the body.
pub async fn http_bytes(
    method: &str,
    url: &str,
    body: impl Into<Bytes>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body.into()))
        .unwrap();
    let resp = bounded("an HTTP answer", client.request(req))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = bounded("an HTTP body", resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, headers, body)
}

/// Sends `request` as is over a new connection and returns everything the server answers
/// (for requests whose body the server refuses before reading it).
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    bounded("an HTTP answer", s.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
