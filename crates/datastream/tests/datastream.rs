//! Data streams over three servers on loopback: star and chain replication, replica death,
//! SYNC, corruption, bad routes, idle cleanup, back-pressure.

use std::time::Duration;

use bytes::Bytes;
use peerwire::wire::Frame;
use peerwire_datastream::{
    Ack, DataStreamClient, DataStreamConfig, DataStreamError, DataStreamOutput, FailureKind,
    RoutingError, RoutingTable, StreamFlags,
};
use peerwire_testkit::datastream::{DsNode, MemorySink, SinkState, ds_config, introduce};
use peerwire_testkit::{Gate, bounded, wait_until};
use sha2::{Digest, Sha256};

const CLUSTER: u64 = 0xd5;

async fn three(cfg: impl Fn(u64) -> DataStreamConfig, sinks: [MemorySink; 3]) -> Vec<DsNode> {
    let mut nodes = Vec::new();
    for (i, sink) in sinks.into_iter().enumerate() {
        nodes.push(DsNode::start(cfg(i as u64 + 1), sink).await);
    }
    introduce(&nodes.iter().collect::<Vec<_>>());
    nodes
}

fn client(cfg: DataStreamConfig) -> DataStreamClient {
    DataStreamClient::new(DataStreamConfig {
        identity: peerwire::Identity {
            node_id: 0,
            ..cfg.identity
        },
        ..cfg
    })
    .unwrap()
}

fn payload(seed: u64, len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    Bytes::from((0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>())
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

async fn open(
    client: &DataStreamClient,
    nodes: &[DsNode],
    routing: RoutingTable,
) -> DataStreamOutput {
    bounded("open", client.open(nodes[0].addr(), Bytes::new(), routing))
        .await
        .unwrap()
}

/// Writes one packet and waits for its acknowledgement.
async fn write_acked(out: &mut DataStreamOutput, data: Bytes) -> Result<Ack, DataStreamError> {
    out.write(data, StreamFlags::NONE).await?.await
}

async fn stop_all(nodes: Vec<DsNode>, client: DataStreamClient) {
    client.shutdown().await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test]
async fn star_and_chain_store_every_byte_on_every_replica() {
    let nodes = three(|id| ds_config(CLUSTER, id), Default::default()).await;
    let client = client(ds_config(CLUSTER, 0));
    for (name, routing) in [
        ("star", RoutingTable::star(1, &[2, 3]).unwrap()),
        ("chain", RoutingTable::chain(&[1, 2, 3]).unwrap()),
    ] {
        let mut out = bounded(
            "open",
            client.open(nodes[0].addr(), Bytes::from(name), routing),
        )
        .await
        .unwrap();
        let mut sent = Vec::new();
        let mut acks = Vec::new();
        for i in 0..20u64 {
            let data = payload(i, 10_000 + 997 * i as usize);
            sent.extend_from_slice(&data);
            acks.push(out.write(data, StreamFlags::NONE).await.unwrap());
        }
        let stream = out.stream();
        let reply = bounded("close", out.close()).await.unwrap();
        assert_eq!(reply.bytes, sent.len() as u64, "{name}");
        let mut replicas: Vec<u64> = reply.replicas.iter().map(|r| r.node).collect();
        replicas.sort_unstable();
        assert_eq!(replicas, vec![1, 2, 3], "{name}");
        assert!(reply.replicas.iter().all(|r| r.bytes == sent.len() as u64));
        // Acknowledgements arrived in order, each covering its packet on every replica.
        let mut last = 0;
        for ack in acks {
            let ack = ack.await.unwrap();
            assert!(ack.bytes > last);
            assert_eq!(ack.replicas.len(), 3);
            last = ack.bytes;
        }
        for node in &nodes {
            let record = node.sink.record(&stream).unwrap();
            assert_eq!(record.state, SinkState::Closed, "{name} node {}", node.id);
            assert_eq!(sha(&record.data), sha(&sent), "{name} node {}", node.id);
            assert_eq!(record.header, name);
            assert_eq!(record.primary, node.id == 1);
            // The link to the log: the application takes what the close left.
            assert_eq!(node.ds.take_closed(&stream), Some(stream));
            assert_eq!(node.ds.take_closed(&stream), None);
            assert_eq!(node.ds.active_streams(), 0);
            assert_eq!(node.ds.buffered_bytes(), 0);
        }
    }
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn a_replica_that_dies_fails_the_stream_naming_it_and_acknowledged_bytes_survive() {
    let mut nodes = three(|id| ds_config(CLUSTER, id), Default::default()).await;
    // Node 3 runs on its own runtime so it can die as a process does: every task and socket
    // dropped at once.
    let victim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sink3 = MemorySink::new();
    let victim = victim_rt
        .spawn(DsNode::start(ds_config(CLUSTER, 3), sink3.clone()))
        .await
        .unwrap();
    let old = nodes.pop().unwrap();
    old.stop().await;
    introduce(&[&nodes[0], &nodes[1], &victim]);
    let client = client(ds_config(CLUSTER, 0));
    let mut out = open(&client, &nodes, RoutingTable::chain(&[1, 2, 3]).unwrap()).await;
    let mut sent = Vec::new();
    let mut acked = 0;
    for i in 0..5 {
        let data = payload(i, 50_000);
        sent.extend_from_slice(&data);
        acked = out
            .write(data, StreamFlags::NONE)
            .await
            .unwrap()
            .await
            .unwrap()
            .bytes;
    }
    let stream = out.stream();
    victim_rt.shutdown_background();
    drop(victim);
    let started = std::time::Instant::now();
    let err = bounded("the stream to fail", async {
        loop {
            let result = match out.write(payload(9, 50_000), StreamFlags::NONE).await {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                break e;
            }
        }
    })
    .await;
    assert!(
        started.elapsed() < ds_config(CLUSTER, 0).request_timeout + Duration::from_secs(1),
        "failed after {:?}",
        started.elapsed()
    );
    assert_eq!(err.node(), Some(3), "{err}");
    assert_eq!(err.failure().unwrap().kind, FailureKind::Replica, "{err}");
    // Every acknowledged byte is on the surviving replicas (the sinks were aborted, but the
    // test sink keeps what it had).
    for node in &nodes {
        let record = node.sink.record(&stream).unwrap();
        assert!(record.data.len() as u64 >= acked);
        assert_eq!(&record.data[..acked as usize], &sent[..acked as usize]);
        wait_until("the stream to be aborted", || {
            matches!(
                node.sink.record(&stream).unwrap().state,
                SinkState::Aborted(_)
            )
        })
        .await;
    }
    wait_until("streams to leave the tables", || {
        nodes.iter().all(|n| n.ds.active_streams() == 0)
    })
    .await;
    // The next write reports the same failure.
    let again = out.write(Bytes::from_static(b"x"), StreamFlags::NONE).await;
    assert_eq!(again.unwrap_err().node(), Some(3));
    drop(out);
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn sync_reaches_every_sink_before_the_acknowledgement() {
    let nodes = three(|id| ds_config(CLUSTER, id), Default::default()).await;
    let client = client(ds_config(CLUSTER, 0));
    let mut out = open(&client, &nodes, RoutingTable::star(1, &[2, 3]).unwrap()).await;
    let _first = out
        .write(payload(1, 4096), StreamFlags::NONE)
        .await
        .unwrap();
    let ack = out
        .write(payload(2, 4096), StreamFlags::SYNC)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.bytes, 8192);
    for node in &nodes {
        assert_eq!(node.sink.record(&out.stream()).unwrap().syncs, vec![8192]);
    }
    out.close().await.unwrap();
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn a_corrupted_packet_is_detected_at_the_hop_that_received_it() {
    let nodes = three(|id| ds_config(CLUSTER, id), Default::default()).await;
    let client = client(ds_config(CLUSTER, 0));
    let mut out = open(&client, &nodes, RoutingTable::chain(&[1, 2, 3]).unwrap()).await;
    write_acked(&mut out, payload(1, 1000)).await.unwrap();
    // Node 2 flips a bit in what it forwards to node 3.
    nodes[1].ds.faults().corrupt_forwarded(1);
    let err = write_acked(&mut out, payload(2, 1000)).await.unwrap_err();
    let failure = err.failure().unwrap();
    assert_eq!(
        (failure.kind, failure.node, failure.offset),
        (FailureKind::Checksum, 3, 1000)
    );
    assert_eq!(nodes[2].ds.stats().failed, 1);
    for node in &nodes {
        let stream = out.stream();
        wait_until("the stream to be aborted everywhere", || {
            matches!(
                node.sink.record(&stream).unwrap().state,
                SinkState::Aborted(_)
            )
        })
        .await;
        // Nodes 1 and 2 checked and wrote the packet (unacknowledged); node 3 refused it.
        let expected = if node.id == 3 { 1000 } else { 2000 };
        assert_eq!(node.sink.record(&stream).unwrap().data.len(), expected);
    }
    drop(out);
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn bad_routing_tables_are_refused_at_open() {
    let nodes = three(|id| ds_config(CLUSTER, id), Default::default()).await;
    let client = client(ds_config(CLUSTER, 0));
    // Structurally bad tables never leave the client.
    assert!(matches!(
        RoutingTable::new(1, [(1, vec![2]), (2, vec![3]), (3, vec![2])]),
        Err(RoutingError::Cycle { .. })
    ));
    assert!(matches!(
        RoutingTable::new(1, [(2, vec![3])]),
        Err(RoutingError::PrimaryNotInTable { .. })
    ));
    // A table naming a server the primary does not know.
    let err = client
        .open(
            nodes[0].addr(),
            Bytes::new(),
            RoutingTable::star(1, &[2, 9]).unwrap(),
        )
        .await
        .unwrap_err();
    let failure = err.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Routing);
    assert!(failure.message.contains("node 9"), "{failure}");
    // An unknown peer further down a chain is found by the server that would forward.
    nodes[1].ds.remove_peer(3);
    let err = client
        .open(
            nodes[0].addr(),
            Bytes::new(),
            RoutingTable::chain(&[1, 2, 3]).unwrap(),
        )
        .await
        .unwrap_err();
    let failure = err.failure().unwrap();
    assert_eq!(
        (failure.kind, failure.node),
        (FailureKind::Routing, 2),
        "{failure}"
    );
    // A primary that is not the server connected to: the handshake names the mismatch.
    let err = client
        .open(
            nodes[0].addr(),
            Bytes::new(),
            RoutingTable::star(2, &[3]).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DataStreamError::Primary { node: 2, .. }),
        "{err}"
    );
    for node in &nodes {
        assert_eq!(node.ds.active_streams(), 0);
    }
    // Nothing that failed to open left a sink stream open.
    for node in &nodes {
        assert!(node.sink.states().iter().all(|s| *s != SinkState::Open));
    }
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn an_abandoned_stream_is_cleaned_up_after_its_idle_timeout() {
    let cfg = |id| DataStreamConfig {
        idle_timeout: Duration::from_millis(300),
        ..ds_config(CLUSTER, id)
    };
    let nodes = three(cfg, Default::default()).await;
    let client = client(ds_config(CLUSTER, 0));
    let mut out = open(&client, &nodes, RoutingTable::chain(&[1, 2, 3]).unwrap()).await;
    write_acked(&mut out, payload(1, 100)).await.unwrap();
    let stream = out.stream();
    // The client keeps the stream but never writes again.
    wait_until("every server to drop the idle stream", || {
        nodes.iter().all(|n| n.ds.active_streams() == 0)
    })
    .await;
    for node in &nodes {
        wait_until("the sink to be aborted", || {
            matches!(
                node.sink.record(&stream).unwrap().state,
                SinkState::Aborted(_)
            )
        })
        .await;
        assert_eq!(node.ds.stats().aborted, 1, "node {}", node.id);
    }
    let err = write_acked(&mut out, payload(2, 100)).await.unwrap_err();
    assert_eq!(err.failure().unwrap().kind, FailureKind::UnknownStream);

    // Dropping an open stream aborts it at once; closing the client's connection does too.
    let out = open(&client, &nodes, RoutingTable::star(1, &[2, 3]).unwrap()).await;
    drop(out);
    wait_until("the dropped stream to be aborted", || {
        nodes.iter().all(|n| n.ds.stats().aborted == 2)
    })
    .await;
    let _out = open(&client, &nodes, RoutingTable::star(1, &[2, 3]).unwrap()).await;
    client.shutdown().await;
    wait_until("the orphaned stream to be aborted", || {
        nodes
            .iter()
            .all(|n| n.ds.stats().aborted == 3 && n.ds.active_streams() == 0)
    })
    .await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test]
async fn outstanding_packets_are_limited() {
    let gate = Gate::new();
    let nodes = three(
        |id| ds_config(CLUSTER, id),
        [
            MemorySink::gated(gate.clone()),
            MemorySink::new(),
            MemorySink::new(),
        ],
    )
    .await;
    let client = client(DataStreamConfig {
        max_outstanding: 4,
        ..ds_config(CLUSTER, 0)
    });
    let mut out = open(&client, &nodes, RoutingTable::star(1, &[2, 3]).unwrap()).await;
    let mut acks = Vec::new();
    for i in 0..4 {
        acks.push(out.write(payload(i, 100), StreamFlags::NONE).await.unwrap());
    }
    assert_eq!(out.outstanding(), 4);
    gate.wait_entered(1).await;
    // The primary's sink holds the first packet, so no acknowledgement can come: a fifth
    // write must wait.
    {
        let fifth = out.write(payload(4, 100), StreamFlags::NONE);
        tokio::pin!(fifth);
        assert!(futures::poll!(fifth.as_mut()).is_pending());
        gate.open();
        acks.push(bounded("the fifth write", fifth).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    assert_eq!(out.outstanding(), 0);
    let reply = out.close().await.unwrap();
    assert_eq!(reply.bytes, 500);
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn a_failing_sink_fails_the_stream_naming_its_server() {
    let nodes = three(
        |id| ds_config(CLUSTER, id),
        [
            MemorySink::new(),
            MemorySink::failing_after(150),
            MemorySink::new(),
        ],
    )
    .await;
    let client = client(ds_config(CLUSTER, 0));
    let mut out = open(&client, &nodes, RoutingTable::star(1, &[2, 3]).unwrap()).await;
    write_acked(&mut out, payload(1, 100)).await.unwrap();
    let err = write_acked(&mut out, payload(2, 100)).await.unwrap_err();
    let failure = err.failure().unwrap();
    assert_eq!(
        (failure.kind, failure.node),
        (FailureKind::Sink, 2),
        "{failure}"
    );
    assert!(failure.message.contains("disk full"), "{failure}");
    drop(out);
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn a_file_streams_to_every_replica_with_sendfile() {
    let nodes = three(|id| ds_config(CLUSTER, id), Default::default()).await;
    let client = client(DataStreamConfig {
        packet_size: 1 << 20,
        ..ds_config(CLUSTER, 0)
    });
    let path = std::env::temp_dir().join(format!("peerwire-ds-test-{}.bin", std::process::id()));
    let content = payload(42, (3 << 20) + 12_345);
    std::fs::write(&path, &content).unwrap();
    let mut out = open(&client, &nodes, RoutingTable::chain(&[1, 2, 3]).unwrap()).await;
    let totals = peerwire::transport::file_send_totals();
    let ack = bounded("the file", async {
        out.write_file(&path, StreamFlags::SYNC)
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(ack.bytes, content.len() as u64);
    // The client's packets went from the page cache to the socket: a silent fallback to
    // copying (a transport that lost its sendfile path) fails here. This is the only test of
    // this binary that sends files, so nothing else moves the totals meanwhile.
    let after = peerwire::transport::file_send_totals();
    assert_eq!(
        after.sendfile - totals.sendfile,
        content.len() as u64,
        "{totals:?} -> {after:?}"
    );
    assert_eq!(after.copied, totals.copied, "{totals:?} -> {after:?}");
    let reply = out.close().await.unwrap();
    assert_eq!(reply.bytes, content.len() as u64);
    for node in &nodes {
        let record = node.sink.record(&reply.stream).unwrap();
        assert_eq!(sha(&record.data), sha(&content), "node {}", node.id);
        assert_eq!(record.syncs, vec![content.len() as u64]);
    }
    // A missing file is a typed error before anything is sent.
    let mut out = client
        .open(nodes[0].addr(), Bytes::new(), RoutingTable::single(1))
        .await
        .unwrap();
    let err = out
        .write_file(path.with_extension("missing"), StreamFlags::NONE)
        .await
        .unwrap_err();
    assert!(matches!(err, DataStreamError::File { .. }), "{err}");
    assert_eq!(out.bytes_written(), 0);
    std::fs::remove_file(&path).unwrap();
    drop(out);
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn a_replica_that_stops_answering_fails_the_stream_within_the_request_timeout() {
    let gate = Gate::new();
    let timeout = Duration::from_millis(500);
    let nodes = three(
        |id| DataStreamConfig {
            request_timeout: timeout,
            ..ds_config(CLUSTER, id)
        },
        [
            MemorySink::new(),
            MemorySink::new(),
            MemorySink::gated(gate.clone()),
        ],
    )
    .await;
    let client = client(ds_config(CLUSTER, 0));
    let mut out = open(&client, &nodes, RoutingTable::star(1, &[2, 3]).unwrap()).await;
    let started = std::time::Instant::now();
    let err = bounded("the stream to fail", async {
        write_acked(&mut out, payload(1, 1000)).await.unwrap_err()
    })
    .await;
    let elapsed = started.elapsed();
    let failure = err.failure().unwrap();
    assert_eq!(
        (failure.kind, failure.node),
        (FailureKind::Replica, 3),
        "{failure}"
    );
    assert!(elapsed >= timeout && elapsed < timeout * 4, "{elapsed:?}");
    gate.open();
    drop(out);
    stop_all(nodes, client).await;
}

#[tokio::test]
async fn a_closed_stream_not_linked_in_time_is_discarded() {
    let nodes = three(
        |id| DataStreamConfig {
            link_timeout: Duration::from_millis(100),
            ..ds_config(CLUSTER, id)
        },
        Default::default(),
    )
    .await;
    let client = client(ds_config(CLUSTER, 0));
    let mut out = open(&client, &nodes, RoutingTable::star(1, &[2, 3]).unwrap()).await;
    let _ack = out.write(payload(1, 10), StreamFlags::NONE).await.unwrap();
    let reply = out.close().await.unwrap();
    for node in &nodes {
        wait_until("the unlinked stream to be discarded", || {
            node.sink.record(&reply.stream).unwrap().state == SinkState::Discarded
        })
        .await;
        assert_eq!(node.ds.take_closed(&reply.stream), None);
        assert!(node.ds.closed_streams().is_empty());
    }
    stop_all(nodes, client).await;
}

/// Decodes the failure in a data-stream reply frame.
fn failure_of(received: peerwire_testkit::Received, id: u64) -> peerwire_datastream::StreamFailure {
    match received {
        peerwire_testkit::Received::Frame(Frame::Response(r)) if r.id == id => {
            assert_eq!(r.payload[0], 1, "expected a failed reply");
            let kind = r.payload[1];
            let node = u64::from_be_bytes(r.payload[2..10].try_into().unwrap());
            let offset = u64::from_be_bytes(r.payload[10..18].try_into().unwrap());
            let message = String::from_utf8_lossy(&r.payload[20..]).into_owned();
            peerwire_datastream::StreamFailure {
                kind: match kind {
                    1 => FailureKind::Checksum,
                    6 => FailureKind::Routing,
                    8 => FailureKind::UnknownStream,
                    11 => FailureKind::Malformed,
                    other => FailureKind::Other(other),
                },
                node,
                offset,
                message,
            }
        }
        other => panic!("expected the reply to {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_on_the_data_stream_lane_gets_typed_failures_and_the_server_stays_up() {
    use peerwire::wire::{Lane, Request, StreamData};
    use peerwire_testkit::ScriptedPeer;

    let nodes = three(|id| ds_config(CLUSTER, id), Default::default()).await;
    let addr = nodes[0].addr();
    let hello = peerwire::wire::Hello {
        lane: Lane::DataStream,
        ..ScriptedPeer::hello(peerwire::Identity {
            cluster_id: CLUSTER,
            node_id: 0,
            epoch: 1,
        })
    };
    let mut peer = ScriptedPeer::handshaken(addr, hello).await;
    // A garbage open.
    peer.send(&Frame::Request(Request {
        id: 1,
        deadline_ms: 1000,
        route: Bytes::from_static(b"ds.open"),
        context: Bytes::new(),
        payload: Bytes::from_static(b"\x00\x01garbage"),
    }))
    .await;
    let f = failure_of(peer.recv().await, 1);
    assert_eq!(
        (f.kind, f.node),
        (FailureKind::Malformed, 1),
        "{}",
        f.message
    );
    // A packet for a stream that was never opened.
    peer.send(&Frame::StreamData(StreamData {
        id: 2,
        stream_id: 77,
        flags: StreamFlags::NONE,
        offset: 0,
        checksum: 0,
        payload: Bytes::from_static(b"data"),
    }))
    .await;
    let f = failure_of(peer.recv().await, 2);
    assert_eq!(f.kind, FailureKind::UnknownStream, "{}", f.message);
    // A packet with a wrong checksum on an open stream (opened by a real client's encoding).
    let mut open = bytes::BytesMut::new();
    for v in [5u64, 9, 5] {
        open.extend_from_slice(&v.to_be_bytes());
    }
    open.extend_from_slice(&0u32.to_be_bytes());
    open.extend_from_slice(&1u64.to_be_bytes()); // primary 1, no successors
    open.extend_from_slice(&0u16.to_be_bytes());
    peer.send(&Frame::Request(Request {
        id: 3,
        deadline_ms: 1000,
        route: Bytes::from_static(b"ds.open"),
        context: Bytes::new(),
        payload: open.freeze(),
    }))
    .await;
    match peer.recv().await {
        peerwire_testkit::Received::Frame(Frame::Response(r)) => assert_eq!(r.payload[0], 0),
        other => panic!("open refused: {other:?}"),
    }
    peer.send(&Frame::StreamData(StreamData {
        id: 4,
        stream_id: 5,
        flags: StreamFlags::NONE,
        offset: 0,
        checksum: 0xbad,
        payload: Bytes::from_static(b"data"),
    }))
    .await;
    let f = failure_of(peer.recv().await, 4);
    assert_eq!(
        (f.kind, f.node, f.offset),
        (FailureKind::Checksum, 1, 0),
        "{}",
        f.message
    );

    // Stream data on an RPC connection is a protocol error for that connection only.
    let mut rpc = ScriptedPeer::handshaken(
        addr,
        ScriptedPeer::hello(peerwire::Identity {
            cluster_id: CLUSTER,
            node_id: 0,
            epoch: 1,
        }),
    )
    .await;
    rpc.send(&Frame::StreamData(StreamData {
        id: 1,
        stream_id: 1,
        flags: StreamFlags::NONE,
        offset: 0,
        checksum: 0,
        payload: Bytes::new(),
    }))
    .await;
    let goaway = rpc.expect_goaway_then_eof().await;
    assert_eq!(goaway.reason, peerwire::GoAwayReason::ProtocolError);

    // The server still serves streams.
    let client = client(ds_config(CLUSTER, 0));
    let mut out = client
        .open(addr, Bytes::new(), RoutingTable::star(1, &[2, 3]).unwrap())
        .await
        .unwrap();
    let _ack = out.write(payload(1, 100), StreamFlags::NONE).await.unwrap();
    assert_eq!(out.close().await.unwrap().bytes, 100);
    drop(peer);
    stop_all(nodes, client).await;
}
