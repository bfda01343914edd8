//! Data-stream groups (Ratis routes each stream to the division of its group): two servers of
//! different groups on one port, each with its own sink; a stream opened in a group lands in
//! that group's sink, forwarded to the same group on the replica; a group nobody serves is
//! refused at open, with no sink left open anywhere.

use bytes::Bytes;
use peerwire::{Error, HandshakeError, NotExecuted, Server, ServerConfig};
use peerwire_datastream::{
    DataStreamClient, DataStreamConfig, DataStreamError, DataStreamServer, RoutingTable,
    StreamFlags,
};
use peerwire_testkit::datastream::{MemorySink, SinkState, ds_config};

/// One node serving data-stream groups 1 and 2 on one port, each into its own sink.
struct Node {
    id: u64,
    groups: Vec<(DataStreamServer<MemorySink>, MemorySink)>,
    server: Server,
}

async fn node(id: u64) -> Node {
    let mut groups = Vec::new();
    for group in [1, 2] {
        let cfg = DataStreamConfig {
            group,
            ..ds_config(9, id)
        };
        let sink = MemorySink::new();
        groups.push((DataStreamServer::new(cfg, sink.clone()).unwrap(), sink));
    }
    let cfg = ds_config(9, id);
    let server = Server::builder(ServerConfig {
        identity: cfg.identity,
        connection: cfg.connection.clone(),
        ..ServerConfig::default()
    })
    .mount_all(&groups[0].0)
    .mount_all(&groups[1].0)
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    Node { id, groups, server }
}

fn client(group: u64) -> DataStreamClient {
    DataStreamClient::new(DataStreamConfig {
        group,
        ..ds_config(9, 0)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_two_groups_land_in_their_own_sinks_on_every_replica() {
    let (a, b) = (node(1).await, node(2).await);
    for n in [&a, &b] {
        for (ds, _) in &n.groups {
            let other = if n.id == 1 { &b } else { &a };
            ds.add_peer(other.id, other.server.local_addr());
        }
    }
    let mut replies = Vec::new();
    for (group, text) in [(1u64, "bytes of group one"), (2, "and these of group two")] {
        let c = client(group);
        let mut out = c
            .open(
                a.server.local_addr(),
                Bytes::from(format!("group {group}")),
                RoutingTable::star(1, &[2]).unwrap(),
            )
            .await
            .unwrap();
        let ack = out
            .write(Bytes::from_static(text.as_bytes()), StreamFlags::SYNC)
            .await
            .unwrap();
        ack.await.unwrap();
        let reply = out.close().await.unwrap();
        replies.push((group, reply.stream, text));
        c.shutdown().await;
    }
    for (group, stream, text) in replies {
        let index = (group - 1) as usize;
        for n in [&a, &b] {
            // In this group's sink, on the primary and on the replica...
            let (_, sink) = &n.groups[index];
            let record = sink
                .record(&stream)
                .expect("the stream in its group's sink");
            assert_eq!(record.data, text.as_bytes());
            assert_eq!(record.state, SinkState::Closed);
            assert_eq!(record.header, format!("group {group}"));
            // ...and not in the other group's.
            let (_, other) = &n.groups[1 - index];
            assert!(
                other.record(&stream).is_none(),
                "node {} group {group}",
                n.id
            );
        }
    }
    for n in [a, b] {
        for (ds, _) in &n.groups {
            ds.stop().await;
        }
        n.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_nobody_serves_is_refused_at_open_with_no_sink_left_open() {
    let a = node(1).await;
    let c = client(3);
    let err = c
        .open(
            a.server.local_addr(),
            Bytes::from_static(b"nowhere"),
            RoutingTable::star(1, &[]).unwrap(),
        )
        .await
        .unwrap_err();
    match &err {
        DataStreamError::Primary {
            source:
                Error::NotExecuted {
                    reason:
                        NotExecuted::Connect(peerwire::ConnectError::Handshake(
                            HandshakeError::UnknownGroup(message),
                        )),
                    ..
                },
            ..
        } => assert!(message.contains("groups 1, 2, not group 3"), "{message}"),
        other => panic!("expected an unknown group, got {other:?}"),
    }
    for (ds, sink) in &a.groups {
        assert!(sink.states().is_empty(), "no stream was created");
        assert_eq!(ds.active_streams(), 0);
    }
    c.shutdown().await;
    for (ds, _) in &a.groups {
        ds.stop().await;
    }
    a.server.shutdown().await;
}
