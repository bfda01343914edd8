//! Ratis DataStream on peerwire: three servers store streams as files; a client streams one
//! file to all three, once through a star (the primary forwards to both replicas) and once
//! through a chain (each server forwards to the next), and the example prints the SHA-256 of
//! what each replica stored beside the source's.
//!
//! Run with `cargo run --release -p peerwire --example datastream [FILE]` (without a file, a
//! 64 MiB file of pseudo-random bytes is made in the temporary directory).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use peerwire::{Identity, Server, ServerConfig};
use peerwire_datastream::{
    DataStreamClient, DataStreamConfig, DataStreamServer, FileSink, RoutingTable, StreamFlags,
};
use sha2::{Digest, Sha256};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CLUSTER: u64 = 0x5eed;

fn identity(node_id: u64) -> Identity {
    Identity {
        cluster_id: CLUSTER,
        node_id,
        epoch: 1,
    }
}

fn sha256_file(path: &Path) -> Result<String, BoxError> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn make_input(dir: &Path) -> Result<PathBuf, BoxError> {
    let path = dir.join("input.bin");
    let mut rng = fastrand::Rng::with_seed(7);
    let data: Vec<u8> = (0..64 << 20).map(|_| rng.u8(..)).collect();
    std::fs::write(&path, data)?;
    Ok(path)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let work = std::env::temp_dir().join(format!("peerwire-datastream-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let input = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        None => make_input(&work)?,
    };
    let source = sha256_file(&input)?;
    println!("source  {}  {}", source, input.display());

    // Three servers, each storing streams under its own directory.
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let cfg = DataStreamConfig {
            identity: identity(id),
            ..DataStreamConfig::default()
        };
        let server_cfg = ServerConfig {
            identity: cfg.identity,
            connection: cfg.connection.clone(),
            ..ServerConfig::default()
        };
        let ds = DataStreamServer::new(cfg, FileSink::new(work.join(format!("node{id}")))?)?;
        let server = Server::builder(server_cfg)
            .mount_all(&ds)
            .bind("127.0.0.1:0".parse()?)
            .await?;
        nodes.push((ds, server));
    }
    for (ds, _) in &nodes {
        for (other, server) in &nodes {
            if other.node_id() != ds.node_id() {
                ds.add_peer(other.node_id(), server.local_addr());
            }
        }
    }

    let client = DataStreamClient::new(DataStreamConfig {
        identity: identity(0),
        ..DataStreamConfig::default()
    })?;
    let primary = nodes[0].1.local_addr();
    for (name, routing) in [
        ("star", RoutingTable::star(1, &[2, 3])?),
        ("chain", RoutingTable::chain(&[1, 2, 3])?),
    ] {
        let started = std::time::Instant::now();
        let mut out = client
            .open(primary, Bytes::from_static(b"example"), routing)
            .await?;
        // The close acknowledges every packet before it, so the file's own ack is not needed.
        let _file_ack = out.write_file(&input, StreamFlags::NONE).await?;
        let reply = out.close().await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: {} bytes to {} replicas in {:.3} s ({:.0} MB/s)",
            reply.bytes,
            reply.replicas.len(),
            secs,
            reply.bytes as f64 / secs / 1e6
        );
        for (ds, _) in &nodes {
            // The link to the log: a real application would record the stream reference in a
            // raft entry and take the file when applying it.
            let path = ds
                .take_closed(&reply.stream)
                .ok_or("a replica did not keep the closed stream")?;
            let stored = sha256_file(&path)?;
            let verdict = if stored == source { "ok" } else { "MISMATCH" };
            println!("  node {}  {}  {}", ds.node_id(), stored, verdict);
            if stored != source {
                return Err(format!("node {} stored different bytes", ds.node_id()).into());
            }
            std::fs::remove_file(path)?;
        }
    }

    client.shutdown().await;
    for (ds, server) in nodes {
        ds.stop().await;
        server.shutdown().await;
    }
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
