//! A restarted server: the client notices, backs off, reconnects, and later calls succeed.

use std::time::Duration;

use bytes::Bytes;
use peerwire::{CallOptions, Client, ClientConfig, ConnectError, Error, NotExecuted, ServerConfig};
use peerwire_testkit::{Gate, test_server};

#[tokio::test]
async fn client_reconnects_after_server_restart() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"1"))
            .await
            .unwrap(),
        "1"
    );

    server.shutdown().await;
    // While the server is down, calls are refused before sending: safe to retry.
    let err = client
        .call_with(
            addr,
            "echo",
            Bytes::from_static(b"2"),
            CallOptions::deadline(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotExecuted {
                reason: NotExecuted::Connect(ConnectError::Io(_) | ConnectError::Backoff { .. }),
                ..
            }
        ),
        "{err:?}"
    );

    // Same port again.
    let server = test_server_at(addr).await;
    // The client waits out its backoff within the call's deadline and reconnects.
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"3"))
            .await
            .unwrap(),
        "3"
    );
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"4"))
            .await
            .unwrap(),
        "4"
    );
    client.shutdown().await;
    server.shutdown().await;
}

async fn test_server_at(addr: std::net::SocketAddr) -> peerwire::Server {
    peerwire::Server::builder(ServerConfig::default())
        .route(
            "echo",
            peerwire::handler_fn(|req: peerwire::Request| async move { Ok(req.into_payload()) }),
        )
        .bind(addr)
        .await
        .expect("rebind the same port")
}

#[tokio::test]
async fn calls_to_a_dead_address_fail_fast_in_backoff() {
    // Bind and drop a listener to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::new(ClientConfig {
        backoff: peerwire::BackoffConfig {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.0,
        },
        // This test is about the pool's reconnect backoff, not call retries.
        retry: peerwire::RetryPolicy::never(),
        ..ClientConfig::default()
    });
    let first = client.call(addr, "echo", Bytes::new()).await.unwrap_err();
    assert!(
        matches!(
            first,
            Error::NotExecuted {
                reason: NotExecuted::Connect(ConnectError::Io(_)),
                ..
            }
        ),
        "{first:?}"
    );
    // The next attempt is a minute away, beyond this call's deadline: refused at once.
    let second = client
        .call_with(
            addr,
            "echo",
            Bytes::new(),
            CallOptions::deadline(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    match second {
        Error::NotExecuted {
            reason: NotExecuted::Connect(ConnectError::Backoff { remaining, .. }),
            ..
        } => assert!(remaining > Duration::from_secs(30)),
        other => panic!("expected backoff, got {other:?}"),
    }
}
