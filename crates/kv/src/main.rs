//! `peerwire-kv`: run a node, a local 3-node cluster, or talk to a cluster natively.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use peerwire::tls::TlsConfig;
use peerwire::tls::certs::CertAuthority;
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
    /// Sets a key to a value, or (with --file) to a file's bytes as a blob.
    Put {
        /// The key.
        key: String,
        /// The value.
        #[arg(required_unless_present = "file")]
        value: Option<String>,
        /// Store this file as a blob (streamed to the replicas, with a progress bar).
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Reads a key (with --file, into a file, with a progress bar).
    Get {
        /// The key.
        key: String,
        /// Read the node's local state without a ReadIndex round.
        #[arg(long, conflicts_with = "file")]
        serializable: bool,
        /// Write the value (a blob's bytes) to this file.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Shows each node's status: a table (endpoint, id, role, leader, term, commit, applied,
    /// snapshot, peers up, errors), or one JSON object per node with `-o json`.
    Status {
        /// `table` or `json`.
        #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
        output: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Creates a test CA and certificates for nodes 1..=N and a client, for `--tls-dir`.
    Certs {
        /// The directory to write `ca.pem`, `node-<id>.pem`/`.key` and `client.pem`/`.key`
        /// into.
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        /// How many nodes to issue certificates for.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
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
    /// The raft log's store for a new data directory: `raft-engine` (append-only files, the
    /// default) or `redb` (a B-tree database). An existing directory keeps its own.
    #[arg(long)]
    log_store: Option<peerwire_kv::log_store::LogStoreKind>,
    /// The log's format on stderr: `text` (coloured only on a terminal) or `json` (one object
    /// per line, for log shippers).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Mutual TLS on every peerwire connection: a directory with `ca.pem` and this node's
    /// `node-<id>.pem` and `node-<id>.key` (`peerwire-kv certs` makes one).
    #[arg(long, conflicts_with = "secret_file")]
    tls_dir: Option<PathBuf>,
    /// Secret mode on every peerwire connection: a key file of `NAME HEX` lines (the first
    /// secret connects, every one is accepted; `peerwire-kv local` writes one). SIGHUP reads
    /// it (and `--tls-dir`) again without a restart.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Access rules for this node's lanes, routes and methods: one `allow|deny WHO TARGET`
    /// per line, first match deciding, `default allow|deny` (see `peerwire::access`).
    #[arg(long)]
    access_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ConnArgs {
    /// Peer URLs of the nodes to ask, comma-separated.
    #[arg(long, default_value = DEFAULT_CLUSTER)]
    endpoints: String,
    /// The cluster token.
    #[arg(long, default_value = DEFAULT_CLUSTER_TOKEN)]
    cluster_token: String,
    /// Connect with TLS: a directory with `ca.pem`, `client.pem` and `client.key`.
    #[arg(long, conflicts_with = "secret_file")]
    tls_dir: Option<PathBuf>,
    /// Connect in secret mode with the cluster's key file [default: `./peerwire-kv.secret`
    /// if it exists and no `--tls-dir` is given: the file `peerwire-kv local` writes].
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

impl ConnArgs {
    fn client(&self) -> Result<KvClient, String> {
        let endpoints: Vec<SocketAddr> = self
            .endpoints
            .split(',')
            .map(parse_peer_url)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let mut cfg = peerwire::ClientConfig::default();
        cfg.connection.tls = load_tls(self.tls_dir.as_deref(), "client")?;
        let local_secret = PathBuf::from(local::SECRET_FILE);
        let secret_file = self
            .secret_file
            .clone()
            .or_else(|| (self.tls_dir.is_none() && local_secret.exists()).then_some(local_secret));
        cfg.connection.secret = load_secret(secret_file.as_deref())?;
        Ok(KvClient::with_config(endpoints, &self.cluster_token, cfg))
    }
}

/// Logs to stderr (`RUST_LOG` filters, `info` by default): text, coloured only on a terminal,
/// or one JSON object per line for log shippers.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// How `node` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => run_node(args).await,
        Command::Local(args) => local::run(args).await,
        Command::Certs { dir, nodes } => write_certs(&dir, nodes),
        Command::Put {
            key,
            value,
            file,
            conn,
        } => {
            async {
                let client = conn.client()?;
                match (value, file) {
                    (_, Some(path)) => put_file(&client, &key, &path).await,
                    (Some(value), None) => client
                        .put(&key, value.as_bytes())
                        .await
                        .map_err(|e| e.to_string()),
                    (None, None) => Err("a value or --file is needed".into()),
                }
            }
            .await
        }
        Command::Get {
            key,
            serializable,
            file,
            conn,
        } => {
            async {
                let client = conn.client()?;
                if let Some(path) = file {
                    return get_file(&client, &key, &path).await;
                }
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
        Command::Status { output, conn } => {
            async {
                let client = conn.client()?;
                let mut answers = Vec::new();
                for url in conn.endpoints.split(',') {
                    let addr = parse_peer_url(url).map_err(|e| e.to_string())?;
                    let answer = client.status_of(addr).await.map_err(|e| e.to_string());
                    if output == "json" {
                        match &answer {
                            Ok(s) => println!("{}", serde_json::to_string(s).unwrap_or_default()),
                            Err(e) => println!("{addr}: {e}"),
                        }
                    }
                    answers.push((url.to_owned(), answer));
                }
                if output == "table" {
                    print!("{}", peerwire_kv::status_table::render(&answers));
                }
                let any = answers.iter().any(|(_, a)| a.is_ok());
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

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

async fn put_file(client: &KvClient, key: &str, path: &std::path::Path) -> Result<(), String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let bar = progress_bar(len);
    let blob = client
        .put_file(key, path, |sent| bar.set_position(sent))
        .await;
    bar.finish_and_clear();
    let blob = blob.map_err(|e| e.to_string())?;
    println!(
        "stored {} bytes under `{key}` (sha256 {}, on nodes {:?})",
        blob.size, blob.sha256, blob.replicas
    );
    Ok(())
}

async fn get_file(client: &KvClient, key: &str, path: &std::path::Path) -> Result<(), String> {
    let bar = progress_bar(0);
    let got = client
        .get_file(key, path, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await;
    bar.finish_and_clear();
    let bytes = got.map_err(|e| e.to_string())?;
    println!("wrote {bytes} bytes to {}", path.display());
    Ok(())
}

async fn run_node(args: NodeArgs) -> Result<(), String> {
    init_tracing(args.log_format);
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
    cfg.log_store = args.log_store;
    let cert_name = format!("node-{}", args.id);
    cfg.tls = load_tls(args.tls_dir.as_deref(), &cert_name)?;
    cfg.secret = load_secret(args.secret_file.as_deref())?;
    if let Some(path) = &args.access_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--access-file {}: {e}", path.display()))?;
        cfg.access = peerwire::access::AccessPolicy::parse(&text)
            .map_err(|e| format!("--access-file {}: {e}", path.display()))?;
    }
    let (tls, secret) = (cfg.tls.clone(), cfg.secret.clone());
    let node = Node::start(cfg).await.map_err(|e| e.to_string())?;
    let removed = node.handle().until_refused();
    let reload = async {
        // SIGHUP: read the certificates and the key file again; new connections use them,
        // established ones go on.
        let mut hangups = Hangups::new();
        loop {
            hangups.next().await;
            let reloaded = load_tls(args.tls_dir.as_deref(), &cert_name).and_then(|new_tls| {
                let new_secret = load_secret(args.secret_file.as_deref())?;
                if let (Some(old), Some(new)) = (&tls, &new_tls) {
                    old.reload(new);
                }
                if let (Some(old), Some(new)) = (&secret, &new_secret) {
                    old.reload(new);
                }
                Ok(())
            });
            match reloaded {
                Ok(()) => tracing::info!("reloaded the certificates and secrets"),
                Err(e) => tracing::warn!(error = %e, "reload failed; keeping the current ones"),
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = terminated() => tracing::info!("terminated; stopping"),
        _ = removed => tracing::warn!("this node no longer serves (removed, or its storage failed); stopping"),
        () = reload => {}
    }
    node.stop().await;
    Ok(())
}

/// SIGHUPs, as they arrive (never, where there are no signals).
struct Hangups(
    #[cfg(unix)] Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] (),
);

impl Hangups {
    fn new() -> Self {
        #[cfg(unix)]
        return Self(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok());
        #[cfg(not(unix))]
        Self(())
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.0 {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// The secrets in the key file `path`, if one is given.
fn load_secret(path: Option<&Path>) -> Result<Option<peerwire::secret::SecretConfig>, String> {
    path.map(|p| {
        peerwire::secret::SecretConfig::from_file(p).map_err(|e| format!("--secret-file: {e}"))
    })
    .transpose()
}

/// The TLS settings in `dir` for the certificate `name`, if a directory is given.
fn load_tls(dir: Option<&Path>, name: &str) -> Result<Option<TlsConfig>, String> {
    dir.map(|d| TlsConfig::from_dir(d, name).map_err(|e| format!("--tls-dir: {e}")))
        .transpose()
}

/// Writes a test CA and certificates for nodes `1..=nodes` and a client into `dir`.
fn write_certs(dir: &Path, nodes: u64) -> Result<(), String> {
    let ca = CertAuthority::generate("peerwire-kv test CA").map_err(|e| e.to_string())?;
    let ids: Vec<u64> = (1..=nodes).collect();
    ca.write_cluster(dir, &ids).map_err(|e| e.to_string())?;
    println!(
        "wrote a test CA and certificates for nodes 1..={nodes} and a client to {}; start a TLS cluster with\n  peerwire-kv local --tls-dir {}",
        dir.display(),
        dir.display()
    );
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
