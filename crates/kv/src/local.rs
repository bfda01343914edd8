//! `peerwire-kv local`: raftexample's Procfile as a command — three nodes as child processes
//! on the default ports, each logging to `node.log` in its data directory, a wait until they
//! agree on a leader, the curl commands to try (and where the logs are), a report naming a
//! node that exits, and a clean stop on Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use peerwire_kv::KvClient;
use peerwire_kv::cluster::{DEFAULT_CLUSTER_TOKEN, parse_cluster};
use tokio::process::{Child, Command};

use crate::DEFAULT_CLUSTER;

/// Each node's log, in its data directory.
const LOG_FILE: &str = "node.log";

/// Options of `peerwire-kv local`.
#[derive(Debug, Args)]
pub(crate) struct LocalArgs {
    /// Where the nodes keep their data (peerwire-kv-{id} inside it).
    #[arg(long, default_value = ".")]
    base_dir: PathBuf,
    /// The HTTP port of node 1; node i serves on this + 10000 × (i − 1).
    #[arg(long, default_value_t = 12380)]
    port: u16,
    /// How long to wait for a leader.
    #[arg(long, default_value_t = 30)]
    wait_secs: u64,
    /// Run with mutual TLS between the nodes: a directory `peerwire-kv certs` wrote.
    #[arg(long, conflicts_with_all = ["secret_file", "plaintext"])]
    tls_dir: Option<PathBuf>,
    /// The cluster's key file (secret mode, the default): created with a new random secret
    /// if it does not exist.
    #[arg(long, default_value = SECRET_FILE)]
    secret_file: PathBuf,
    /// Run without secret mode: anyone who reaches the peer ports may join or call.
    #[arg(long)]
    plaintext: bool,
}

/// The key file `local` uses unless told otherwise, in the directory it runs in.
pub(crate) const SECRET_FILE: &str = "peerwire-kv.secret";

/// The key file at `path`, made with a new random secret named `local` if absent (readable by
/// its owner only).
fn ensure_secret(path: &std::path::Path) -> Result<peerwire::secret::SecretConfig, String> {
    use peerwire::secret::SecretConfig;
    if !path.exists() {
        let key = SecretConfig::generate_key().map_err(|e| format!("making a secret: {e}"))?;
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        let mut file = file
            .open(path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, SecretConfig::file_line("local", &key).as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote a new cluster secret to {}", path.display());
    }
    SecretConfig::from_file(path).map_err(|e| e.to_string())
}

/// Runs the local cluster until Ctrl-C (or a node exits).
pub(crate) async fn run(args: LocalArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let peers = parse_cluster(DEFAULT_CLUSTER).map_err(|e| e.to_string())?;
    // Checked here, before any node starts, so a missing file is one clear error.
    let client_tls = crate::load_tls(args.tls_dir.as_deref(), "client")?;
    let secret = (args.tls_dir.is_none() && !args.plaintext)
        .then(|| ensure_secret(&args.secret_file))
        .transpose()?;
    for (id, _) in &peers {
        crate::load_tls(args.tls_dir.as_deref(), &format!("node-{id}"))?;
    }
    let mut children: Vec<(u64, Child)> = Vec::new();
    let mut logs = Vec::new();
    for (id, _) in &peers {
        let port = args.port + 10_000 * (*id as u16 - 1);
        let data_dir = args.base_dir.join(format!("peerwire-kv-{id}"));
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let log_path = data_dir.join(LOG_FILE);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let mut command = Command::new(&exe);
        command
            .arg("node")
            .args(["--id", &id.to_string()])
            .args(["--cluster", DEFAULT_CLUSTER])
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&data_dir);
        if let Some(dir) = &args.tls_dir {
            command.arg("--tls-dir").arg(dir);
        }
        if secret.is_some() {
            command.arg("--secret-file").arg(&args.secret_file);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting node {id}: {e}"))?;
        println!(
            "started node {id}: peer {}, HTTP 127.0.0.1:{port}, data {}",
            peers[*id as usize - 1].1,
            data_dir.display()
        );
        children.push((*id, child));
        logs.push((*id, log_path));
    }
    println!("waiting for a leader ...");

    let endpoints: Vec<SocketAddr> = peers.iter().map(|(_, a)| *a).collect();
    let mut client_cfg = peerwire::ClientConfig::default();
    client_cfg.connection.tls = client_tls;
    client_cfg.connection.secret = secret.clone();
    let client = KvClient::with_config(endpoints.clone(), DEFAULT_CLUSTER_TOKEN, client_cfg);
    let leader = tokio::select! {
        l = wait_for_leader(&client, &endpoints, Duration::from_secs(args.wait_secs)) => l,
        exit = first_exit(&mut children, &logs) => Err(exit),
    };
    let leader = match leader {
        Ok(l) => l,
        Err(e) => {
            stop(&mut children).await;
            return Err(e);
        }
    };
    let security = match &args.tls_dir {
        Some(dir) => format!(
            "mutual TLS between nodes, certificates in {}",
            dir.display()
        ),
        None if secret.is_some() => format!(
            "secret mode, the cluster's secret in {}",
            args.secret_file.display()
        ),
        None => "plaintext".to_string(),
    };
    println!(
        "\npeerwire-kv: 3 nodes up ({security}), node {leader} leads. Try (raftexample's commands):\n"
    );
    println!(
        "  curl -L http://127.0.0.1:{}/my-key -XPUT -d hello",
        args.port
    );
    println!("  curl -L http://127.0.0.1:{}/my-key", args.port);
    println!("  curl -L http://127.0.0.1:{}/my-key", args.port + 10_000);
    println!("  curl -L http://127.0.0.1:{}/status", args.port);
    println!(
        "  curl -L http://127.0.0.1:{}/health      (200 only with a leader and a quorum)",
        args.port
    );
    println!("  curl -L http://127.0.0.1:{}/metrics", args.port);
    println!(
        "  curl -L http://127.0.0.1:{}/blob/big -T FILE     (any size, through the data stream)",
        args.port
    );
    println!(
        "  curl -L http://127.0.0.1:{}/blob/big -o copy",
        args.port + 20_000
    );
    let tls_flag = match (&args.tls_dir, &secret) {
        (Some(d), _) => format!(" --tls-dir {}", d.display()),
        // The native commands read the default key file from the directory they run in.
        (None, Some(_)) if args.secret_file == std::path::Path::new(SECRET_FILE) => String::new(),
        (None, Some(_)) => format!(" --secret-file {}", args.secret_file.display()),
        (None, None) => String::new(),
    };
    println!(
        "\nor natively: peerwire-kv put my-key hello{tls_flag}; peerwire-kv get my-key{tls_flag};\n\
         peerwire-kv status{tls_flag}; peerwire-kv put --file FILE big{tls_flag}"
    );
    println!("\nlogs (RUST_LOG sets the level):");
    for (id, path) in &logs {
        println!("  node {id}: {}", path.display());
    }
    println!("Ctrl-C stops all nodes.\n");

    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        exit = first_exit(&mut children, &logs) => Err(exit),
    };
    stop(&mut children).await;
    outcome
}

async fn wait_for_leader(
    client: &KvClient,
    endpoints: &[SocketAddr],
    limit: Duration,
) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = tokio::time::interval(Duration::from_millis(200));
    loop {
        pause.tick().await;
        let mut leaders = Vec::new();
        for addr in endpoints {
            if let Ok(s) = client.status_of(*addr).await {
                leaders.push(s.leader);
            }
        }
        if leaders.len() == endpoints.len()
            && leaders[0] != 0
            && leaders.iter().all(|l| *l == leaders[0])
        {
            return Ok(leaders[0]);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no agreed leader after {limit:?} (leaders seen: {leaders:?})"
            ));
        }
    }
}

/// Waits for the first node to exit and says which, how, and the end of its log.
async fn first_exit(children: &mut [(u64, Child)], logs: &[(u64, PathBuf)]) -> String {
    let waits = children.iter_mut().map(|(id, c)| {
        let id = *id;
        Box::pin(async move { (id, c.wait().await) })
    });
    let ((id, status), _, _) = futures::future::select_all(waits).await;
    let log = logs.iter().find(|(i, _)| *i == id).map(|(_, p)| p);
    let tail = log
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| last_lines(&text, 5))
        .unwrap_or_default();
    let place = log.map_or_else(String::new, |p| format!("; its log: {}", p.display()));
    match status {
        Ok(s) => format!("node {id} exited ({s}){place}\n{tail}"),
        Err(e) => format!("node {id}: {e}{place}"),
    }
}

/// The last `n` lines of `text`, each indented.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  | {l}\n"))
        .collect()
}

/// Stops the nodes: each is asked to stop (SIGTERM; from a terminal, Ctrl-C reached them too)
/// and killed if it lingers (everything acknowledged is already on disk).
async fn stop(children: &mut [(u64, Child)]) {
    for (_, child) in children.iter() {
        terminate(child);
    }
    for (id, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill().await;
                eprintln!("node {id} killed");
            }
        }
    }
}

#[cfg(unix)]
fn terminate(child: &Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn the_end_of_a_log_is_its_last_lines_indented() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "  | b\n  | c\n");
        assert_eq!(last_lines("only", 5), "  | only\n");
        assert_eq!(last_lines("", 5), "");
    }
}
