//! Cancellation: a caller that gives up sends a cancel frame; the handler can observe it, and
//! a call cancelled while still queued never runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use peerwire::{Client, ClientConfig, Error, Request, Server, ServerConfig, Unknown, handler_fn};
use peerwire_testkit::{Gate, bounded, gate_count_server, wait_until};
use tokio::sync::mpsc;

#[tokio::test]
async fn a_running_handler_observes_the_caller_giving_up() {
    let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
    let server = Server::builder(ServerConfig::default())
        .route(
            "watch",
            handler_fn(move |req: Request| {
                let tx = tx.clone();
                async move {
                    assert!(!req.is_cancelled());
                    tx.send("started").unwrap();
                    req.cancelled().await;
                    assert!(req.is_cancelled());
                    tx.send("cancelled").unwrap();
                    Ok(Bytes::new())
                }
            }),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::new(ClientConfig::default());
    let conn = client.connection(server.local_addr(), None).await.unwrap();
    let err = conn
        .call("watch", Bytes::new(), Duration::from_millis(100))
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
    assert_eq!(
        bounded("the handler to start", rx.recv()).await,
        Some("started")
    );
    assert_eq!(
        bounded("the handler to see the cancel", rx.recv()).await,
        Some("cancelled")
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_queued_never_runs() {
    let gate = Gate::new();
    let executed = Arc::new(AtomicU64::new(0));
    let server = gate_count_server(1, gate.clone(), executed.clone()).await;
    let client = Client::new(ClientConfig::default());
    let conn = client.connection(server.local_addr(), None).await.unwrap();

    // A holds the only handler.
    let a = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call("gate", Bytes::new(), Duration::from_secs(10))
                .await
        }
    });
    gate.wait_entered(1).await;
    // B queues behind it; then its caller drops the call.
    let b = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call("count", Bytes::new(), Duration::from_secs(10))
                .await
        }
    });
    wait_until("B to be queued", || server.queued_calls() >= 1).await;
    b.abort();
    assert!(
        bounded("B to be dropped", b)
            .await
            .unwrap_err()
            .is_cancelled()
    );
    // C is written after B's cancel on the same connection: once C is queued, the server has
    // read the cancel.
    let c = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call("count", Bytes::new(), Duration::from_secs(10))
                .await
        }
    });
    wait_until("C to be queued", || server.queued_calls() >= 2).await;
    gate.open();
    bounded("A", a).await.unwrap().unwrap();
    // B was skipped: C is the first `count` call that ran.
    assert_eq!(bounded("C", c).await.unwrap().unwrap(), "0");
    assert_eq!(executed.load(Ordering::SeqCst), 1);
    client.shutdown().await;
    server.shutdown().await;
}
