//! One port for everything: node 1 serves, on a single listening port, an RpcEnv endpoint
//! (Spark), two typed protocols (Hadoop), two raft groups (etcd rafthttp, multi-raft), a
//! data-stream group (Ratis) and a service of our own (a toy shuffle service mounted on a user
//! lane). Node 2, a member of both raft groups, drives each of them and prints what it got.
//!
//! Run with `cargo run -p peerwire --example one_port`.

#[path = "../../raft/examples/raft_groups.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod raft_groups;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use peerwire::mount::{MountPoint, ReplySlot, Service};
use peerwire::service::{Protocol, ProtocolClient, Serde};
use peerwire::wire::{Lane, Request as Frame, Status};
use peerwire::{Client, ClientConfig, Connection, HandlerError, Identity, Peer, Request, Server};
use peerwire_datastream::{
    DataStreamClient, DataStreamConfig, DataStreamServer, FileSink, RoutingTable, StreamFlags,
};
use peerwire_raft::Transport;
use peerwire_rpc::{Endpoint, EndpointError, ReplyContext, RpcEnv, RpcEnvConfig};
use raft_groups::{GroupMember, applied_in, group_leader, propose_in, transport_config};

type BoxError = Box<dyn std::error::Error>;

/// The lane of our own service (user lane codes are 128–255).
const SHUFFLE: Lane = Lane::user(1);
/// The data-stream group node 1 serves.
const BLOBS: u64 = 7;

fn identity(node_id: u64) -> Identity {
    transport_config(node_id).identity
}

/// A toy shuffle service: `fetch` returns a block of the size asked for, and it counts the
/// bytes it served.
#[derive(Default)]
struct Shuffle {
    served: AtomicU64,
}

impl Service for Shuffle {
    fn on_request(&self, conn: &Connection, request: Frame, slot: ReplySlot) {
        if &request.route[..] != b"fetch" || request.payload.len() != 4 {
            conn.fail(
                slot,
                request.id,
                Status::BadRequest,
                0,
                "shuffle serves `fetch` with a 4-byte size".into(),
            );
            return;
        }
        let size = u32::from_be_bytes(request.payload[..].try_into().expect("4 bytes"));
        let size = size.min(1 << 20) as usize;
        self.served.fetch_add(size as u64, Ordering::Relaxed);
        conn.reply(slot, request.id, Bytes::from(vec![0xab; size]));
    }
}

/// The RpcEnv endpoint: greets whoever asks.
struct Greeter;

impl Endpoint for Greeter {
    type Message = String;

    async fn receive_and_reply(
        &mut self,
        name: String,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        reply.reply(&format!("hello, {name}, from the rpc env"));
        Ok(())
    }
}

/// Two typed protocols.
fn protocols() -> [Protocol; 2] {
    let greeter = Protocol::new("GreeterProtocol", 1).idempotent_method(
        "greet",
        Serde,
        |name: String, _: Request| async move {
            Ok::<_, HandlerError>(format!("greetings, {name}, from a typed protocol"))
        },
    );
    let calls = Arc::new(AtomicU64::new(0));
    let counter =
        Protocol::new("CounterProtocol", 2).method("add", Serde, move |n: u64, _: Request| {
            let calls = calls.clone();
            async move { Ok::<_, HandlerError>(calls.fetch_add(n, Ordering::Relaxed) + n) }
        });
    [greeter, counter]
}

/// Starts both nodes, drives every service of node 1 from node 2, and stops them.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn main() -> Result<(), BoxError> {
    let work = std::env::temp_dir().join(format!("peerwire-one-port-{}", std::process::id()));

    // ---- node 1: everything on one port ----
    let raft_cfg = transport_config(1);
    let server_cfg = raft_cfg.server_config();
    let transport = Transport::start_multi(raft_cfg)?;
    let env = RpcEnv::start(RpcEnvConfig {
        identity: identity(1),
        ..RpcEnvConfig::client("node-1")
    })
    .await?;
    env.setup_endpoint("greeter", Greeter)?;
    let blobs = DataStreamServer::new(
        DataStreamConfig {
            identity: identity(1),
            group: BLOBS,
            connection: server_cfg.connection.clone(),
            ..DataStreamConfig::default()
        },
        FileSink::new(work.join("node-1"))?,
    )?;
    let shuffle = Arc::new(Shuffle::default());
    let [greeter, counter] = protocols();
    let server = Server::builder(server_cfg)
        .protocol(greeter)
        .protocol(counter)
        .mount_all(&env)
        .mount_all(&transport)
        .mount_all(&blobs)
        .mount(MountPoint::lane(SHUFFLE), shuffle.clone())
        .bind("127.0.0.1:0".parse()?)
        .await?;
    let port = server.local_addr();
    println!("node 1 serves everything on {port}");
    let node1 = GroupMember::with(1, transport, server, &[1, 2], &[1, 2])?;

    // ---- node 2: a member of both raft groups, and the clients ----
    let node2 = GroupMember::start(2, &[1, 2], &[1, 2]).await?;
    node1
        .transport
        .add_peer(2, vec![node2.server.local_addr()])?;
    node2.transport.add_peer(1, vec![port])?;

    // RpcEnv: ask the endpoint by name.
    let caller = RpcEnv::start(RpcEnvConfig {
        identity: identity(2),
        ..RpcEnvConfig::client("node-2")
    })
    .await?;
    let greeter = caller.endpoint_ref::<String>(port, "greeter").await?;
    let answer: String = greeter.ask("node 2".to_string()).await?;
    println!("rpc env      greeter.ask            -> {answer}");

    // Typed protocols: two on the same port.
    let client = Client::new(ClientConfig {
        identity: identity(2),
        ..ClientConfig::default()
    });
    let node1_peer = Peer::new(port, 1);
    let greet = ProtocolClient::new(client.clone(), "GreeterProtocol", 1);
    let answer: String = greet
        .call(node1_peer, "greet", Serde, &"node 2".to_string())
        .await?;
    println!("protocol     GreeterProtocol.greet  -> {answer}");
    let count = ProtocolClient::new(client.clone(), "CounterProtocol", 2);
    let _: u64 = count.call(node1_peer, "add", Serde, &40u64).await?;
    let total: u64 = count.call(node1_peer, "add", Serde, &2u64).await?;
    println!("protocol     CounterProtocol.add    -> {total}");

    // Raft: two groups, each with its own leader and log, over the same lanes.
    let mut members = [node1, node2];
    for group in [1, 2] {
        let leader = group_leader(&mut members, group).await;
        propose_in(&members, group, leader, 5);
        applied_in(&mut members, group, 5).await;
        let applied = members[0].groups[&group].log.lock().expect("log").len();
        println!(
            "raft         group {group}                -> member {leader} leads, node 1 applied {applied} entries"
        );
    }

    // Data stream: a stream in group 7, written to node 1's sink.
    let streams = DataStreamClient::new(DataStreamConfig {
        identity: identity(0),
        group: BLOBS,
        ..DataStreamConfig::default()
    })?;
    let mut out = streams
        .open(
            port,
            Bytes::from_static(b"blob"),
            RoutingTable::star(1, &[])?,
        )
        .await?;
    let ack = out
        .write(Bytes::from(vec![7u8; 256 * 1024]), StreamFlags::SYNC)
        .await?;
    ack.await?;
    let reply = out.close().await?;
    let path = blobs
        .take_closed(&reply.stream)
        .ok_or("node 1 kept no closed stream")?;
    println!(
        "data stream  group {BLOBS}                -> {} bytes into {}",
        reply.bytes,
        path.display()
    );

    // Our own service.
    let shuffle_client = Client::for_service(
        ClientConfig {
            identity: identity(2),
            ..ClientConfig::default()
        },
        MountPoint::lane(SHUFFLE),
        Arc::new(NoCalls),
    )?;
    let block = shuffle_client
        .call(
            port,
            "fetch",
            Bytes::copy_from_slice(&4096u32.to_be_bytes()),
        )
        .await?;
    println!(
        "shuffle      fetch 4096             -> {} bytes (served {} in all)",
        block.len(),
        shuffle.served.load(Ordering::Relaxed)
    );

    println!(
        "node 1: {} connections, one listening port",
        members[0].server.connections()
    );

    shuffle_client.shutdown().await;
    streams.shutdown().await;
    client.shutdown().await;
    caller.shutdown().await;
    let [node1, node2] = members;
    node2.stop().await;
    blobs.stop().await;
    node1.stop().await;
    env.shutdown().await;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// The shuffle client serves nothing back.
struct NoCalls;

impl Service for NoCalls {
    fn on_request(&self, conn: &Connection, request: Frame, slot: ReplySlot) {
        conn.fail(
            slot,
            request.id,
            Status::UnknownRoute,
            0,
            "a shuffle client serves nothing".into(),
        );
    }
}
