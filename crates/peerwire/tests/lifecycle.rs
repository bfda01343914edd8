//! Connection lifecycle: graceful shutdown, heartbeats, read and idle timeouts.

use std::time::Duration;

use bytes::Bytes;
use peerwire::wire::GoAwayReason;
use peerwire::{Client, ClientConfig, ConnectionConfig, Identity, ServerConfig};
use peerwire_testkit::{Gate, ScriptedPeer, bounded, test_server};

fn fast_timeouts() -> ConnectionConfig {
    ConnectionConfig {
        heartbeat_interval: Duration::from_millis(50),
        read_timeout: Duration::from_millis(300),
        ..ConnectionConfig::default()
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish() {
    let gate = Gate::new();
    let server = test_server(ServerConfig::default(), gate.clone()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call(addr, "gate", Bytes::from_static(b"finish me"))
                .await
        }
    });
    gate.wait_entered(1).await;
    let shutdown = tokio::spawn(server.shutdown());
    gate.open();
    assert_eq!(
        bounded("in-flight call", in_flight).await.unwrap().unwrap(),
        "finish me"
    );
    bounded("shutdown", shutdown).await.unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_closed_at_the_read_timeout() {
    let cfg = ServerConfig {
        connection: fast_timeouts(),
        ..ServerConfig::default()
    };
    let server = test_server(cfg, Gate::new()).await;
    // Handshakes, then never sends another byte (not even heartbeat acks).
    let mut silent = ScriptedPeer::handshaken(
        server.local_addr(),
        ScriptedPeer::hello(Identity::default()),
    )
    .await;
    let goaway = silent.expect_goaway_then_eof().await;
    assert_eq!(goaway.reason, GoAwayReason::ReadTimeout);
    assert!(
        goaway.message.contains("read_timeout"),
        "{}",
        goaway.message
    );
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_connection_alive_and_measure_rtt() {
    let server = test_server(
        ServerConfig {
            connection: fast_timeouts(),
            ..ServerConfig::default()
        },
        Gate::new(),
    )
    .await;
    let client = Client::new(ClientConfig {
        connection: fast_timeouts(),
        ..ClientConfig::default()
    });
    let conn = client.connection(server.local_addr(), None).await.unwrap();
    // Time passing is what is under test here: three read timeouts with no calls.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        conn.is_open(),
        "heartbeats should have kept the connection open"
    );
    assert!(
        conn.rtt().is_some(),
        "a heartbeat round trip should have been measured"
    );
    assert_eq!(
        conn.call(
            "echo",
            Bytes::from_static(b"still here"),
            Duration::from_secs(5)
        )
        .await
        .unwrap(),
        "still here"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn idle_connection_closes_and_the_next_call_reconnects() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let client = Client::new(ClientConfig {
        connection: ConnectionConfig {
            idle_timeout: Some(Duration::from_millis(200)),
            heartbeat_interval: Duration::from_millis(50),
            ..ConnectionConfig::default()
        },
        ..ClientConfig::default()
    });
    let addr = server.local_addr();
    let conn = client.connection(addr, None).await.unwrap();
    conn.call("echo", Bytes::new(), Duration::from_secs(5))
        .await
        .unwrap();
    bounded("the idle close", conn.closed()).await;
    assert!(!conn.is_open());
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"again"))
            .await
            .unwrap(),
        "again"
    );
    client.shutdown().await;
    server.shutdown().await;
}

/// A connect that was under way when the client shut down finishes after the shutdown took
/// its list of connections to close: the connection it makes is closed at once and the call
/// refused, so nothing the client opened outlives its shutdown.
#[tokio::test]
async fn a_connect_finishing_after_shutdown_is_closed_and_the_call_refused() {
    use peerwire::{Error, NotExecuted};
    use tokio::net::{TcpListener, TcpStream};

    let server = test_server(ServerConfig::default(), Gate::new()).await;
    // A relay that holds the client's connection until the shutdown is over, then passes it
    // on to the server: the client's handshake is in progress throughout.
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let client = Client::new(ClientConfig {
        retry: peerwire::RetryPolicy::never(),
        ..ClientConfig::default()
    });
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(relay_addr, "echo", Bytes::new()).await }
    });
    let (mut from_client, _) = bounded("the client to dial", relay.accept()).await.unwrap();
    bounded("the client to shut down", client.shutdown()).await;
    let target = server.local_addr();
    let pass = tokio::spawn(async move {
        let mut to_server = TcpStream::connect(target).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut from_client, &mut to_server).await;
    });

    let refused = bounded("the call to end", call).await.unwrap().unwrap_err();
    assert!(
        matches!(
            refused,
            Error::NotExecuted {
                reason: NotExecuted::ClientClosed,
                ..
            }
        ),
        "{refused:?}"
    );
    peerwire_testkit::wait_until("the late connection to close", || server.connections() == 0)
        .await;
    bounded("the relay to end", pass).await.unwrap();
    server.shutdown().await;
}
