//! Deadlines: an expired call ends as unknown and its late reply is discarded; a call whose
//! deadline passes in the server's queue is never executed.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use peerwire::{CallOptions, Client, ClientConfig, Error, ServerConfig, Unknown};
use peerwire_testkit::{Gate, bounded, gate_count_server, test_server};

#[tokio::test]
async fn expired_deadline_is_unknown_and_the_late_reply_is_discarded() {
    let gate = Gate::new();
    let server = test_server(ServerConfig::default(), gate.clone()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    let conn = client.connection(addr, None).await.unwrap();

    let err = conn
        .call(
            "gate",
            Bytes::from_static(b"slow"),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unknown {
                reason: Unknown::DeadlineExceeded { .. },
                ..
            }
        ),
        "{err:?}"
    );
    gate.wait_entered(1).await;
    gate.open();
    // The late reply arrives on the same connection and must not reach anyone.
    bounded("the late reply", async {
        while conn.late_replies() == 0 {
            let r = conn
                .call("echo", Bytes::from_static(b"x"), Duration::from_secs(5))
                .await;
            assert_eq!(
                r.unwrap(),
                "x",
                "a call must never receive another call's reply"
            );
        }
    })
    .await;
    assert_eq!(conn.late_replies(), 1);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn call_expired_in_the_queue_is_not_executed() {
    let gate = Gate::new();
    let executed = Arc::new(AtomicU64::new(0));
    let server = gate_count_server(1, gate.clone(), executed.clone()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());

    let blocker = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, "gate", Bytes::new()).await }
    });
    gate.wait_entered(1).await;
    // Queued behind the blocked handler; its 50 ms pass before the handler is free.
    let err = client
        .call_with(
            addr,
            "count",
            Bytes::new(),
            CallOptions::deadline(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert!(err.is_unknown(), "{err:?}");
    gate.open();
    bounded("blocker", blocker).await.unwrap().unwrap();
    // The expired call never ran: the counter is still at zero.
    let first = client.call(addr, "count", Bytes::new()).await.unwrap();
    assert_eq!(first, "0");
    client.shutdown().await;
    server.shutdown().await;
}
