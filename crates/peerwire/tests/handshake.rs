//! Handshake refusals: each cause has its own error, on the server's go-away and the client's
//! error alike.

use std::time::Duration;

use bytes::Bytes;
use peerwire::wire::{Frame, GoAwayReason, Hello, Lane};
use peerwire::{
    Client, ClientConfig, ConnectionConfig, HandshakeError, Identity, Peer, ServerConfig,
};
use peerwire_testkit::{Gate, Received, ScriptedPeer, handshake_error, test_server};

fn node(cluster_id: u64, node_id: u64) -> Identity {
    Identity {
        cluster_id,
        node_id,
        epoch: 1,
    }
}

fn server_cfg() -> ServerConfig {
    ServerConfig {
        identity: node(7, 1),
        ..ServerConfig::default()
    }
}

async fn refusal(addr: std::net::SocketAddr, hello: Hello) -> GoAwayReason {
    let mut peer = ScriptedPeer::connect(addr).await;
    peer.send(&Frame::Hello(hello)).await;
    match peer.recv().await {
        Received::Frame(Frame::GoAway(g)) => g.reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn each_mismatch_is_refused_with_its_own_reason() {
    let server = test_server(server_cfg(), Gate::new()).await;
    let addr = server.local_addr();
    let good = ScriptedPeer::hello(node(7, 2));
    let cases = [
        (
            Hello {
                cluster_id: 8,
                ..good
            },
            GoAwayReason::ClusterMismatch,
        ),
        (
            Hello {
                min_version: 7,
                max_version: 9,
                ..good
            },
            GoAwayReason::VersionMismatch,
        ),
        (Hello { group: 5, ..good }, GoAwayReason::UnknownGroup),
        (
            Hello {
                target_node_id: 3,
                ..good
            },
            GoAwayReason::WrongNode,
        ),
        (
            Hello {
                lane: Lane::DataStream,
                ..good
            },
            GoAwayReason::UnsupportedLane,
        ),
        (
            Hello {
                lane: Lane::Other(200),
                ..good
            },
            GoAwayReason::UnsupportedLane,
        ),
    ];
    for (hello, want) in cases {
        assert_eq!(refusal(addr, hello).await, want, "{hello:?}");
    }
    // And the right hello is accepted.
    ScriptedPeer::handshaken(
        addr,
        Hello {
            target_node_id: 1,
            ..good
        },
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn client_sees_typed_handshake_errors() {
    let server = test_server(server_cfg(), Gate::new()).await;
    let addr = server.local_addr();

    let other_cluster = Client::new(ClientConfig {
        identity: node(9, 2),
        ..ClientConfig::default()
    });
    let err = other_cluster
        .call(addr, "echo", Bytes::new())
        .await
        .unwrap_err();
    assert!(err.is_not_executed());
    let e = handshake_error(err);
    assert!(
        matches!(&e, HandshakeError::ClusterMismatch(m) if m.contains("0x9") && m.contains("0x7")),
        "{e}"
    );

    let same_cluster = Client::new(ClientConfig {
        identity: node(7, 2),
        ..ClientConfig::default()
    });
    let err = same_cluster
        .call(Peer::new(addr, 5), "echo", Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(handshake_error(err), HandshakeError::WrongNode(_)));

    let reply = same_cluster
        .call(Peer::new(addr, 1), "echo", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(reply, "hi");
    server.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_dropped_at_the_handshake_timeout() {
    let cfg = ServerConfig {
        connection: ConnectionConfig {
            handshake_timeout: Duration::from_millis(100),
            ..ConnectionConfig::default()
        },
        ..server_cfg()
    };
    let server = test_server(cfg, Gate::new()).await;
    let mut silent = ScriptedPeer::connect(server.local_addr()).await;
    let goaway = silent.expect_goaway_then_eof().await;
    assert_eq!(goaway.reason, GoAwayReason::HandshakeTimeout);
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let cfg = ServerConfig {
        max_connections: 1,
        ..server_cfg()
    };
    let server = test_server(cfg, Gate::new()).await;
    let addr = server.local_addr();
    let first = Client::new(ClientConfig {
        identity: node(7, 2),
        ..ClientConfig::default()
    });
    first.call(addr, "echo", Bytes::new()).await.unwrap();
    let second = Client::new(ClientConfig {
        identity: node(7, 3),
        ..ClientConfig::default()
    });
    let err = second.call(addr, "echo", Bytes::new()).await.unwrap_err();
    assert!(
        matches!(handshake_error(err), HandshakeError::TooManyConnections(m) if m.contains("max_connections"))
    );
    first.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_is_capped_unless_it_is_exempt() {
    let client = |id| {
        Client::new(ClientConfig {
            identity: node(7, id),
            ..ClientConfig::default()
        })
    };
    let capped = ServerConfig {
        max_connections_per_address: 2,
        ..server_cfg()
    };
    let server = test_server(capped, Gate::new()).await;
    let addr = server.local_addr();
    let (a, b, c) = (client(2), client(3), client(4));
    a.call(addr, "echo", Bytes::new()).await.unwrap();
    b.call(addr, "echo", Bytes::new()).await.unwrap();
    let err = c.call(addr, "echo", Bytes::new()).await.unwrap_err();
    assert!(
        matches!(handshake_error(err), HandshakeError::TooManyConnections(m) if m.contains("max_connections_per_address") && m.contains("127.0.0.1"))
    );
    // One closes: its place is free again.
    a.shutdown().await;
    let d = client(5);
    peerwire_testkit::bounded("a connection after one closed", async {
        loop {
            if d.call(addr, "echo", Bytes::new()).await.is_ok() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    for c in [b, c, d] {
        c.shutdown().await;
    }
    server.shutdown().await;

    // Exempt: neither cap applies to 127.0.0.1.
    let exempt = ServerConfig {
        max_connections: 1,
        max_connections_per_address: 1,
        cap_exempt_addresses: vec!["127.0.0.1".parse().unwrap()],
        ..server_cfg()
    };
    let server = test_server(exempt, Gate::new()).await;
    let clients: Vec<Client> = (2..6).map(client).collect();
    for c in &clients {
        c.call(server.local_addr(), "echo", Bytes::new())
            .await
            .unwrap();
    }
    for c in clients {
        c.shutdown().await;
    }
    server.shutdown().await;
}
