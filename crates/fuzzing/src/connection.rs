//! A whole inbound connection, fed from an in-memory socket (the end-to-end target).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerwire_wire::{Frame, Hello, Lane, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use raft::eraftpb::Message;
use tokio::io::{AsyncWriteExt, DuplexStream};

use peerwire::config::{ConnectionConfig, Identity, ServerConfig};
use peerwire::fuzzing::block_on;
use peerwire::transport::Listener;
use peerwire::{Request, Server, handler_fn};
use peerwire_datastream::{
    DataSink, DataStreamConfig, DataStreamServer, SinkError, SinkStream, StreamInfo,
};
use peerwire_pull::{OpenError, PullConfig, Resolving, Source, StreamManager};
use peerwire_raft::{ProcessError, RaftHandler, SnapshotStatus, Transport, TransportConfig};

const IDENTITY: Identity = Identity {
    cluster_id: 0xC1,
    node_id: 1,
    epoch: 1,
};

/// How long a connection may stay open after its peer has sent everything and closed.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Serves one connection whose peer sends `data[1..]` and then closes its write side, on a
/// server with an echo route, a raft transport's four lanes, a data-stream lane and a pull
/// lane. If bit 0
/// of `data[0]` is set, a valid hello for the lane `data[0] >> 1` picks comes first, so the
/// fuzzer starts past the handshake. The server must close the connection within
/// `CLOSE_BOUND` of the peer's close, and then shut down cleanly.
///
/// Returns what the server sent.
pub fn connection(data: &[u8]) -> Vec<u8> {
    let [mode, rest @ ..] = data else {
        return Vec::new();
    };
    let mut input = BytesMut::new();
    if mode & 1 == 1 {
        let lanes = [
            Lane::Rpc,
            Lane::RaftAppend,
            Lane::RaftMessage,
            Lane::RaftPipeline,
            Lane::RaftSnapshot,
            Lane::DataStream,
            Lane::Pull,
        ];
        Frame::Hello(Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            group: 0,
            lane: lanes[usize::from(mode >> 1) % lanes.len()],
            cluster_id: IDENTITY.cluster_id,
            node_id: 2,
            target_node_id: IDENTITY.node_id,
            epoch: 1,
            max_frame_body: 1 << 20,
            max_message: 1 << 20,
        })
        .encode(&mut input);
    }
    input.extend_from_slice(rest);
    block_on(serve_one(input.freeze()))
}

/// Runs [`connection`] and returns what the server sent, as frames (decoding stops at the
/// first undecodable byte). For checking that seeds reach past the handshake.
pub fn connection_replies(data: &[u8]) -> Vec<Frame> {
    let mut sent = BytesMut::from(&connection(data)[..]);
    let mut decoder = peerwire_wire::FrameDecoder::new(peerwire_wire::Limits::default());
    std::iter::from_fn(|| decoder.decode(&mut sent).ok().flatten()).collect()
}

async fn serve_one(input: Bytes) -> Vec<u8> {
    let connection = ConnectionConfig {
        max_frame_body: 1 << 20,
        handshake_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_millis(50),
        ..ConnectionConfig::default()
    };
    let transport_cfg = TransportConfig {
        identity: IDENTITY,
        connection: connection.clone(),
        probe_interval: None,
        // One thread per input would outlive the input (it exits after the transport drops),
        // and LeakSanitizer reports it at exit.
        bulk_thread: false,
        ..TransportConfig::default()
    };
    let transport = Transport::start(transport_cfg, NoRaft).expect("transport config");
    let datastream = DataStreamServer::new(
        DataStreamConfig {
            identity: IDENTITY,
            connection: connection.clone(),
            packet_size: 64 * 1024,
            ..DataStreamConfig::default()
        },
        Discard,
    )
    .expect("data-stream config");
    // The pull lane, with a stream to fetch (its id is random: the fuzzer reaches the refusals
    // and, through `pull.open`, a stream bound to its own connection).
    let streams = StreamManager::new(PullConfig {
        identity: Some(IDENTITY),
        chunk_size: 4096,
        ..PullConfig::default()
    });
    streams.set_resolver(
        |_: &peerwire::connection::PeerInfo, name: &str| -> Resolving {
            let found = name == "x";
            Box::pin(async move {
                if found {
                    Ok(Source::bytes(Bytes::from(vec![7u8; 10_000])))
                } else {
                    Err(OpenError::NoSuchName("only x".into()))
                }
            })
        },
    );
    let (client, server_end) = tokio::io::duplex(64 * 1024);
    let server = Server::builder(ServerConfig {
        identity: IDENTITY,
        connection,
        shutdown_grace: Duration::from_millis(50),
        ..ServerConfig::default()
    })
    .route(
        "echo",
        handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
    )
    .mount_all(&transport)
    .mount_all(&datastream)
    .mount_all(&streams)
    .serve(OneConnection(Some(server_end)))
    .expect("server config");

    let (mut from_server, mut to_server) = tokio::io::split(client);
    let send = async move {
        // The server may close first (a refused hello, a bad frame): then writes fail.
        let _ = to_server.write_all(&input).await;
        let _ = to_server.shutdown().await;
        to_server
    };
    let receive = async move {
        let mut sent = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut from_server, &mut sent).await;
        sent
    };
    let (to_server, sent) = tokio::time::timeout(CLOSE_BOUND, futures::future::join(send, receive))
        .await
        .expect("the server closes a connection whose peer has closed");
    drop(to_server);
    server.shutdown().await;
    transport.stop().await;
    datastream.stop().await;
    streams.shutdown().await;
    sent
}

/// A listener with one connection to hand out.
struct OneConnection(Option<DuplexStream>);

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 2);

impl Listener for OneConnection {
    type Io = DuplexStream;

    async fn accept(&mut self) -> io::Result<(DuplexStream, SocketAddr)> {
        match self.0.take() {
            Some(io) => Ok((io, PEER)),
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 1))
    }
}

/// A raft node that takes every message and drops it.
struct NoRaft;

impl RaftHandler<Message> for NoRaft {
    fn process(&self, _: Message) -> Result<(), ProcessError> {
        Ok(())
    }

    fn is_id_removed(&self, id: u64) -> bool {
        id == 3
    }

    fn report_unreachable(&self, _: u64) {}

    fn report_snapshot(&self, _: u64, _: SnapshotStatus) {}
}

/// A data sink that keeps nothing.
struct Discard;

impl DataSink for Discard {
    type Stream = Self;
    type Closed = ();

    async fn create(&self, _: &StreamInfo) -> Result<Self, SinkError> {
        Ok(Self)
    }
}

impl SinkStream for Discard {
    type Closed = ();

    async fn write(&mut self, _: Bytes) -> Result<(), SinkError> {
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn abort(self, _: String) {}
}
