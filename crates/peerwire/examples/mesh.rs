//! Three peerwire nodes on loopback, each serving `whoami` and `echo`, each calling the
//! others: handshakes with node ids, multiplexed calls, heartbeats and graceful shutdown.
//!
//! Run with `cargo run --release -p peerwire --example mesh`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use peerwire::{Client, ClientConfig, Identity, Peer, Request, Server, ServerConfig, handler_fn};

const CLUSTER: u64 = 0x9ee4_0001;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), peerwire::Error> {
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let identity = Identity {
            cluster_id: CLUSTER,
            node_id: id,
            epoch: 1,
        };
        let server = Server::builder(ServerConfig {
            identity,
            ..ServerConfig::default()
        })
        .route(
            "whoami",
            handler_fn(move |req: Request| async move {
                Ok(Bytes::from(format!(
                    "node {id} answering node {} from {}",
                    req.peer().node_id,
                    req.peer().addr
                )))
            }),
        )
        .route(
            "echo",
            handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
        )
        .bind("127.0.0.1:0".parse().expect("loopback"))
        .await?;
        let client = Client::new(ClientConfig {
            identity,
            ..ClientConfig::default()
        });
        println!("node {id} listening on {}", server.local_addr());
        nodes.push((id, server, client));
    }

    for (id, _, client) in &nodes {
        for (peer_id, peer_server, _) in &nodes {
            if peer_id == id {
                continue;
            }
            let peer = Peer::new(peer_server.local_addr(), *peer_id);
            let reply = client.call(peer, "whoami", Bytes::new()).await?;
            println!(
                "node {id} -> node {peer_id}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    }

    // A burst of 10,000 echo calls, 64 in flight, from node 1 to node 2.
    let (_, server2, _) = &nodes[1];
    let target = Peer::new(server2.local_addr(), 2);
    let client1 = nodes[0].2.clone();
    let payload = Bytes::from(vec![7u8; 1024]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let client = client1.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10_000 / 64 {
                let reply = client.call(target, "echo", payload.clone()).await?;
                assert_eq!(reply.len(), payload.len());
            }
            Ok::<_, peerwire::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("echo task panicked")?;
    }
    let elapsed = started.elapsed();
    let calls = (10_000 / 64) * 64;
    println!(
        "node 1 -> node 2: {calls} echo calls of 1 KiB, 64 in flight, in {elapsed:.2?} ({:.0} calls/s)",
        calls as f64 / elapsed.as_secs_f64()
    );

    let conn = client1.connection(target, None).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    if let Some(rtt) = conn.rtt() {
        println!("heartbeat round trip node 1 -> node 2: {rtt:?}");
    }

    for (id, server, client) in nodes {
        client.shutdown().await;
        server.shutdown().await;
        println!("node {id} stopped");
    }
    Ok(())
}
