//! The mount API from outside the core crate: a service of our own mounted beside the core's
//! routes and an RpcEnv on one port, its groups, the refusals of unknown lanes, groups and
//! version ranges, and a mount point taken twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use peerwire::mount::{MountPoint, ReplySlot, Service};
use peerwire::wire::{Frame, Hello, Lane, OneWay, Request, Status};
use peerwire::{
    Client, ClientConfig, Connection, ConnectionConfig, Error, HandshakeError, Request as Call,
    Server, ServerConfig, handler_fn,
};
use peerwire_rpc::{Endpoint, EndpointError, ReplyContext, RpcEnv, RpcEnvConfig};
use peerwire_testkit::{Received, ScriptedPeer, bounded, handshake_error, wait_until};

/// A block service of our own: `put` stores a block, `get` reads it back; one-way `drop`
/// forgets one. It records what it saw of its connections.
#[derive(Default)]
struct Blocks {
    tag: &'static str,
    blocks: Mutex<std::collections::HashMap<Vec<u8>, Bytes>>,
    connected: AtomicUsize,
    disconnected: AtomicUsize,
    /// (connection id, group, version) of every connection.
    seen: Mutex<Vec<(u64, u64, u16)>>,
}

impl Blocks {
    fn new(tag: &'static str) -> Arc<Self> {
        Arc::new(Self {
            tag,
            ..Self::default()
        })
    }
}

impl Service for Blocks {
    fn on_connected(&self, conn: &Connection) {
        self.connected.fetch_add(1, Ordering::SeqCst);
        let peer = conn.peer();
        self.seen
            .lock()
            .unwrap()
            .push((conn.id(), peer.group, peer.version));
    }

    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
        let (verb, key) = request
            .payload
            .split_first()
            .map(|(v, k)| (*v, k.to_vec()))
            .unwrap_or((0, Vec::new()));
        match (&request.route[..], verb) {
            (b"put", _) => {
                let (key, value) = request.payload.split_at(request.payload.len().min(4));
                self.blocks
                    .lock()
                    .unwrap()
                    .insert(key.to_vec(), Bytes::copy_from_slice(value));
                conn.reply(slot, request.id, Bytes::from(self.tag));
            }
            (b"get", _) => {
                let block = self
                    .blocks
                    .lock()
                    .unwrap()
                    .get(&request.payload[..])
                    .cloned();
                match block {
                    Some(block) => conn.reply(slot, request.id, block),
                    None => conn.fail(
                        slot,
                        request.id,
                        Status::HandlerFailed,
                        0,
                        format!("no block {key:?} in {}", self.tag),
                    ),
                }
            }
            _ => conn.fail(
                slot,
                request.id,
                Status::UnknownRoute,
                0,
                "blocks serves put and get".into(),
            ),
        }
    }

    fn on_oneway(&self, _conn: &Connection, message: OneWay) {
        if &message.route[..] == b"drop" {
            self.blocks.lock().unwrap().remove(&message.payload[..]);
        }
    }

    fn on_disconnected(&self, _conn: &Connection, _why: &str) {
        self.disconnected.fetch_add(1, Ordering::SeqCst);
    }
}

const BLOCKS: Lane = Lane::user(7);

fn blocks_client(group: u64) -> Client {
    Client::for_service(
        ClientConfig::default(),
        MountPoint::group(BLOCKS, group),
        Arc::new(NoReverseCalls),
    )
    .expect("client")
}

/// The client side of the block service serves nothing.
struct NoReverseCalls;

impl Service for NoReverseCalls {
    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
        conn.fail(slot, request.id, Status::UnknownRoute, 0, "no".into());
    }
}

#[tokio::test]
async fn a_service_of_our_own_mounts_in_two_groups_beside_the_core_routes() {
    let (a, b) = (Blocks::new("group-1"), Blocks::new("group-2"));
    let server = Server::builder(ServerConfig::default())
        .route(
            "echo",
            handler_fn(|req: Call| async move { Ok(req.into_payload()) }),
        )
        .mount(MountPoint::group(BLOCKS, 1), a.clone())
        .mount(MountPoint::group(BLOCKS, 2), b.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (one, two) = (blocks_client(1), blocks_client(2));
    let put = |c: &Client, payload: &'static [u8]| {
        let c = c.clone();
        async move { c.call(addr, "put", Bytes::from_static(payload)).await }
    };
    assert_eq!(put(&one, b"k001hello").await.unwrap(), "group-1");
    assert_eq!(put(&two, b"k001world").await.unwrap(), "group-2");
    // Each group has its own blocks.
    assert_eq!(
        one.call(addr, "get", Bytes::from_static(b"k001"))
            .await
            .unwrap(),
        "hello"
    );
    assert_eq!(
        two.call(addr, "get", Bytes::from_static(b"k001"))
            .await
            .unwrap(),
        "world"
    );
    // One-way messages reach the service too.
    one.send_oneway(addr, "drop", Bytes::from_static(b"k001"))
        .await
        .unwrap();
    wait_until("the block is dropped", || {
        a.blocks.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(b.blocks.lock().unwrap().len(), 1);
    // The core's routes share the port.
    let plain = Client::new(ClientConfig::default());
    assert_eq!(
        plain
            .call(addr, "echo", Bytes::from_static(b"hi"))
            .await
            .unwrap(),
        "hi"
    );
    // A service's failure reaches the caller typed.
    let err = one
        .call(addr, "get", Bytes::from_static(b"none"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote { status: Status::HandlerFailed, message, .. } if message.contains("group-1")),
        "{err:?}"
    );
    // The service saw its own connections: numbered, in its group, at version 2.
    let conn = one.connection(addr, None).await.unwrap();
    let seen_a = a.seen.lock().unwrap().clone();
    let seen_b = b.seen.lock().unwrap().clone();
    assert_eq!(seen_a.len(), 1);
    assert_eq!(seen_a[0].1, 1);
    assert_eq!(seen_b[0].1, 2);
    assert_ne!(seen_a[0].0, seen_b[0].0, "connection ids differ");
    assert_eq!(seen_a[0].2, peerwire::wire::PROTOCOL_VERSION);
    assert_eq!(conn.peer().mount_point(), MountPoint::group(BLOCKS, 1));
    one.shutdown().await;
    two.shutdown().await;
    plain.shutdown().await;
    wait_until("both services see their connections close", || {
        a.disconnected.load(Ordering::SeqCst) == 1 && b.disconnected.load(Ordering::SeqCst) == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_lane_or_group_is_refused_with_its_own_error() {
    let server = Server::builder(ServerConfig::default())
        .mount(MountPoint::group(BLOCKS, 1), Blocks::new("one"))
        .mount(MountPoint::group(BLOCKS, 4), Blocks::new("four"))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let unknown_group = blocks_client(3);
    let err = handshake_error(
        unknown_group
            .call(addr, "get", Bytes::new())
            .await
            .unwrap_err(),
    );
    match &err {
        HandshakeError::UnknownGroup(message) => {
            assert!(message.contains("groups 1, 4, not group 3"), "{message}");
        }
        other => panic!("expected UnknownGroup, got {other:?}"),
    }
    let unknown_lane = Client::for_service(
        ClientConfig::default(),
        MountPoint::lane(Lane::user(8)),
        Arc::new(NoReverseCalls),
    )
    .unwrap();
    let err = handshake_error(
        unknown_lane
            .call(addr, "get", Bytes::new())
            .await
            .unwrap_err(),
    );
    assert!(matches!(err, HandshakeError::UnsupportedLane(_)), "{err:?}");
    // The server keeps serving the groups it has.
    let good = blocks_client(4);
    assert_eq!(
        good.call(addr, "put", Bytes::from_static(b"k"))
            .await
            .unwrap(),
        "four"
    );
    for c in [unknown_group, unknown_lane, good] {
        c.shutdown().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_mount_point_taken_twice_is_a_configuration_error() {
    let err = Server::builder(ServerConfig::default())
        .mount(MountPoint::group(BLOCKS, 1), Blocks::new("a"))
        .mount(MountPoint::group(BLOCKS, 1), Blocks::new("b"))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("group 1")),
        "{err:?}"
    );
    // Routes beside a service mounted where the core's own service goes.
    let err = Server::builder(ServerConfig::default())
        .route(
            "echo",
            handler_fn(|req: Call| async move { Ok(req.into_payload()) }),
        )
        .mount(MountPoint::lane(Lane::Rpc), Blocks::new("core"))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

fn versions(range: std::ops::RangeInclusive<u16>) -> ConnectionConfig {
    ConnectionConfig {
        protocol_versions: range,
        ..ConnectionConfig::default()
    }
}

async fn version_server(range: std::ops::RangeInclusive<u16>, blocks: Arc<Blocks>) -> Server {
    Server::builder(ServerConfig {
        connection: versions(range),
        ..ServerConfig::default()
    })
    .mount(MountPoint::lane(BLOCKS), blocks)
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

fn version_client(range: std::ops::RangeInclusive<u16>) -> Client {
    Client::for_service(
        ClientConfig {
            connection: versions(range),
            ..ClientConfig::default()
        },
        MountPoint::lane(BLOCKS),
        Arc::new(NoReverseCalls),
    )
    .unwrap()
}

#[tokio::test]
async fn a_connection_runs_at_the_highest_common_version() {
    // (server's range, client's range, the version both sides see)
    let cases = [
        (1..=2, 1..=2, 2),
        (1..=1, 1..=2, 1),
        (1..=2, 1..=1, 1),
        (2..=2, 1..=2, 2),
        (1..=3, 1..=3, 3),
        (1..=3, 2..=2, 2),
        (3..=3, 1..=3, 3),
    ];
    for (server_range, client_range, want) in cases {
        let blocks = Blocks::new("v");
        let server = version_server(server_range.clone(), blocks.clone()).await;
        let client = version_client(client_range.clone());
        let conn = client.connection(server.local_addr(), None).await.unwrap();
        assert_eq!(
            conn.peer().version,
            want,
            "{server_range:?} / {client_range:?}"
        );
        assert_eq!(
            client
                .call(server.local_addr(), "put", Bytes::from_static(b"kkkkv"))
                .await
                .unwrap(),
            "v"
        );
        assert_eq!(blocks.seen.lock().unwrap()[0].2, want);
        client.shutdown().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn nodes_with_no_common_version_are_refused_naming_both_ranges() {
    let server = version_server(2..=2, Blocks::new("v2")).await;
    let client = version_client(1..=1);
    let err = handshake_error(
        client
            .call(server.local_addr(), "put", Bytes::new())
            .await
            .unwrap_err(),
    );
    match &err {
        HandshakeError::VersionMismatch(message) => {
            assert!(
                message.contains("2..=2") && message.contains("1..=1"),
                "{message}"
            );
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    client.shutdown().await;
    server.shutdown().await;
}

#[test]
fn a_version_range_outside_this_build_is_a_configuration_error() {
    // Below this build's lowest, empty (2 down to 1), above its highest.
    for (low, high) in [(0, 1), (2, 1), (1, peerwire::wire::PROTOCOL_VERSION + 1)] {
        let range = std::ops::RangeInclusive::new(low, high);
        let cfg = versions(range.clone());
        assert!(matches!(cfg.validate(), Err(Error::Config(_))), "{range:?}");
    }
}

#[tokio::test]
async fn a_version_1_peer_is_answered_at_version_1() {
    let server = version_server(1..=2, Blocks::new("v")).await;
    // A version-1 node's hello: the 44-byte layout, version 1.
    let mut peer = ScriptedPeer::connect(server.local_addr()).await;
    let hello = Hello {
        lane: BLOCKS,
        ..ScriptedPeer::hello(ServerConfig::default().identity)
    };
    let mut bytes = bytes::BytesMut::new();
    Frame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        ..hello
    })
    .encode(&mut bytes);
    // Cut the version-2 fields off: the header's length says 44, the body is 44 bytes.
    let mut v1 = bytes[..peerwire::wire::HEADER_LEN + 44].to_vec();
    v1[..4].copy_from_slice(&44u32.to_be_bytes());
    peer.send_raw(&v1).await;
    match bounded("the ack", peer.recv()).await {
        Received::Frame(Frame::HelloAck(ack)) => {
            // A version-1 reader looks at offset 4 only: 1.
            assert_eq!(ack.min_version, 1);
        }
        other => panic!("expected an ack, got {other:?}"),
    }
    server.shutdown().await;
}

/// An endpoint answering with its environment's address.
struct Where;

impl Endpoint for Where {
    type Message = String;

    async fn receive_and_reply(
        &mut self,
        name: String,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        reply.reply(&format!("{name} is here"));
        Ok(())
    }
}

#[tokio::test]
async fn an_rpc_env_mounts_on_a_server_shared_with_routes_and_services() {
    let env = RpcEnv::start(RpcEnvConfig::client("shared")).await.unwrap();
    env.setup_endpoint("where", Where).unwrap();
    assert_eq!(env.address(), None, "no address before the server binds");
    let blocks = Blocks::new("blocks");
    let server = Server::builder(ServerConfig::default())
        .route(
            "echo",
            handler_fn(|req: Call| async move { Ok(req.into_payload()) }),
        )
        .mount_all(&env)
        .mount(MountPoint::lane(BLOCKS), blocks)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(
        env.address(),
        Some(addr),
        "the env's address is the server's"
    );
    let caller = RpcEnv::start(RpcEnvConfig::client("caller")).await.unwrap();
    let at = caller.endpoint_ref::<String>(addr, "where").await.unwrap();
    assert_eq!(
        at.ask::<String>("the endpoint".into()).await.unwrap(),
        "the endpoint is here"
    );
    let plain = Client::new(ClientConfig::default());
    assert_eq!(
        plain
            .call(addr, "echo", Bytes::from_static(b"same port"))
            .await
            .unwrap(),
        "same port"
    );
    let blocks_at = Client::for_service(
        ClientConfig::default(),
        MountPoint::lane(BLOCKS),
        Arc::new(NoReverseCalls),
    )
    .unwrap();
    assert_eq!(
        blocks_at
            .call(addr, "put", Bytes::from_static(b"kkkkv"))
            .await
            .unwrap(),
        "blocks"
    );
    plain.shutdown().await;
    blocks_at.shutdown().await;
    caller.shutdown().await;
    env.shutdown().await;
    server.shutdown().await;
}
