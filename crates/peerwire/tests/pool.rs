//! Several connections per peer, chosen by hash key.

use bytes::Bytes;
use peerwire::{CallOptions, Client, ClientConfig, ServerConfig};
use peerwire_testkit::{Gate, test_server};

#[tokio::test]
async fn hash_keys_pick_connections_and_keep_using_them() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig {
        connections_per_peer: 3,
        ..ClientConfig::default()
    });
    let with_key = |key| CallOptions {
        hash_key: Some(key),
        ..CallOptions::default()
    };
    client
        .call_with(addr, "echo", Bytes::new(), with_key(0))
        .await
        .unwrap();
    assert_eq!(server.connections(), 1);
    // Same key: same connection.
    client
        .call_with(addr, "echo", Bytes::new(), with_key(3))
        .await
        .unwrap();
    assert_eq!(server.connections(), 1);
    client
        .call_with(addr, "echo", Bytes::new(), with_key(1))
        .await
        .unwrap();
    client
        .call_with(addr, "echo", Bytes::new(), with_key(2))
        .await
        .unwrap();
    assert_eq!(server.connections(), 3);
    // Keys 4, 5, 6 map onto the same three slots: no new connections.
    for key in 4..7 {
        client
            .call_with(addr, "echo", Bytes::new(), with_key(key))
            .await
            .unwrap();
    }
    assert_eq!(server.connections(), 3);
    client.shutdown().await;
    server.shutdown().await;
}

/// Callers queued behind a connect attempt that fails all get its failure at once; they do not
/// each make their own attempt after another backoff (which would make the last of n callers
/// wait out n growing backoffs to learn the peer is down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_connect_answers_every_caller_waiting_for_it() {
    use peerwire::{ConnectError, Error, NotExecuted, RetryPolicy};
    use std::time::Duration;

    // Accepts at the TCP level (the kernel's backlog) but never answers the hello, so each
    // connect attempt lasts the whole connect timeout and the callers pile up behind it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let client = Client::new(ClientConfig {
        connect_timeout: Duration::from_millis(300),
        backoff: peerwire_testkit::fixed_backoff(1_000),
        retry: RetryPolicy::never(),
        ..ClientConfig::default()
    });
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call_with(
                        addr,
                        "echo",
                        Bytes::new(),
                        CallOptions::deadline(Duration::from_secs(8)),
                    )
                    .await
            })
        })
        .collect();
    let mut attempts = 0;
    let mut answered_by_another = 0;
    for call in calls {
        let err = peerwire_testkit::bounded("a call", call)
            .await
            .unwrap()
            .unwrap_err();
        match err {
            Error::NotExecuted {
                reason: NotExecuted::Connect(ConnectError::Timeout(_)),
                ..
            } => attempts += 1,
            Error::NotExecuted {
                reason: NotExecuted::Connect(ConnectError::Backoff { last, .. }),
                ..
            } if matches!(*last, ConnectError::Timeout(_)) => answered_by_another += 1,
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!((attempts, answered_by_another), (1, 7));
    client.shutdown().await;
    drop(silent);
}
