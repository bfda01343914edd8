//! `peerwire-kv`: run a node, a local 3-node cluster, or talk to a cluster natively.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use peerwire_kv::cluster::{DEFAULT_CLUSTER_TOKEN, parse_cluster, parse_peer_url};
use peerwire_kv::state::Value;
use peerwire_kv::{KvClient, Node, NodeConfig};

mod local;

/// The default local cluster's peer URLs (raftexample's Procfile).
const DEFAULT_CLUSTER: &str =
    "http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379";

#[derive(Debug, Parser)]
#[command(
    name = "peerwire-kv",
    version,
    about = "A replicated key-value store on raft and peerwire"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one node (raftexample's flags).
    Node(NodeArgs),
    /// Starts a local 3-node cluster as child processes and stops it on Ctrl-C.
    Local(local::LocalArgs),
    /// Sets a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Reads a key.
    Get {
        /// The key.
        key: String,
        /// Read the node's local state without a ReadIndex round.
        #[arg(long)]
        serializable: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Shows each node's status.
    Status {
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Args)]
struct NodeArgs {
    /// This node's id: its position in --cluster, from 1.
    #[arg(long)]
    id: u64,
    /// Every member's peer URL, comma-separated (with or without http://).
    #[arg(long, default_value = DEFAULT_CLUSTER)]
    cluster: String,
    /// The HTTP API port.
    #[arg(long, default_value_t = 12380)]
    port: u16,
    /// The address the HTTP API binds.
    #[arg(long, default_value = "127.0.0.1")]
    http_host: std::net::IpAddr,
    /// Join an existing cluster (after `POST /{id}` added this node).
    #[arg(long)]
    join: bool,
    /// Where the raft log and blobs live (default: peerwire-kv-{id}).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The cluster token every member and client shares.
    #[arg(long, default_value = DEFAULT_CLUSTER_TOKEN)]
    cluster_token: String,
    /// Snapshot after this many applied entries.
    #[arg(long, default_value_t = peerwire_kv::node::DEFAULT_SNAPSHOT_ENTRIES)]
    snapshot_entries: u64,
}

#[derive(Debug, Args)]
struct ConnArgs {
    /// Peer URLs of the nodes to ask, comma-separated.
    #[arg(long, default_value = DEFAULT_CLUSTER)]
    endpoints: String,
    /// The cluster token.
    #[arg(long, default_value = DEFAULT_CLUSTER_TOKEN)]
    cluster_token: String,
}

impl ConnArgs {
    fn client(&self) -> Result<KvClient, String> {
        let endpoints: Vec<SocketAddr> = self
            .endpoints
            .split(',')
            .map(parse_peer_url)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(KvClient::new(endpoints, &self.cluster_token))
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => run_node(args).await,
        Command::Local(args) => local::run(args).await,
        Command::Put { key, value, conn } => {
            async {
                let client = conn.client()?;
                client
                    .put(&key, value.as_bytes())
                    .await
                    .map_err(|e| e.to_string())
            }
            .await
        }
        Command::Get {
            key,
            serializable,
            conn,
        } => {
            async {
                let client = conn.client()?;
                match client
                    .get(&key, serializable)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Value::Inline(v) => println!("{}", String::from_utf8_lossy(&v)),
                    Value::Blob(b) => println!(
                        "(blob of {} bytes, sha256 {}, on nodes {:?})",
                        b.size, b.sha256, b.replicas
                    ),
                }
                Ok(())
            }
            .await
        }
        Command::Status { conn } => {
            async {
                let client = conn.client()?;
                let mut any = false;
                for url in conn.endpoints.split(',') {
                    let addr = parse_peer_url(url).map_err(|e| e.to_string())?;
                    match client.status_of(addr).await {
                        Ok(s) => {
                            any = true;
                            println!("{}", serde_json::to_string(&s).unwrap_or_default());
                        }
                        Err(e) => println!("{addr}: {e}"),
                    }
                }
                if any {
                    Ok(())
                } else {
                    Err("no node answered".into())
                }
            }
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peerwire-kv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_node(args: NodeArgs) -> Result<(), String> {
    init_tracing();
    peerwire_kv::metrics::install();
    let peers = parse_cluster(&args.cluster).map_err(|e| e.to_string())?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("peerwire-kv-{}", args.id)));
    let mut cfg = NodeConfig::new(args.id, peers, data_dir);
    cfg.join = args.join;
    cfg.http = Some(SocketAddr::new(args.http_host, args.port));
    cfg.cluster_token = args.cluster_token;
    cfg.snapshot_entries = args.snapshot_entries;
    let node = Node::start(cfg).await.map_err(|e| e.to_string())?;
    let removed = node.handle().until_refused();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = terminated() => tracing::info!("terminated; stopping"),
        _ = removed => tracing::warn!("this node no longer serves (removed, or its storage failed); stopping"),
    }
    node.stop().await;
    Ok(())
}

#[cfg(unix)]
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminated() {
    std::future::pending().await
}
