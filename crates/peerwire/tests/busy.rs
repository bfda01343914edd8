//! A full call queue answers `Busy` at once; nothing waits or is dropped silently.

use bytes::Bytes;
use peerwire::{CallOptions, Client, ClientConfig, Error, NotExecuted, RetryPolicy, ServerConfig};
use peerwire_testkit::{Gate, bounded, test_server};

#[tokio::test]
async fn full_call_queue_answers_busy_with_a_retry_hint() {
    let gate = Gate::new();
    let cfg = ServerConfig {
        handlers: 1,
        call_queue_capacity: Some(1),
        ..ServerConfig::default()
    };
    let server = test_server(cfg, gate.clone()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());

    // A occupies the only handler.
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, "gate", Bytes::from_static(b"a")).await }
    });
    gate.wait_entered(1).await;
    // B fills the queue, C finds it full. `join!` polls B first, so B is written first.
    let b = client.call(addr, "gate", Bytes::from_static(b"b"));
    let c = async {
        let result = client
            .call_with(
                addr,
                "echo",
                Bytes::from_static(b"c"),
                CallOptions {
                    retry: Some(RetryPolicy::never()),
                    ..CallOptions::default()
                },
            )
            .await;
        // C is answered while A and B are still held: then let them go.
        gate.open();
        result
    };
    let (b, c) = bounded("B and C", async { tokio::join!(b, c) }).await;
    match c {
        Err(Error::NotExecuted {
            reason:
                NotExecuted::Busy {
                    retry_after,
                    message,
                },
            ..
        }) => {
            assert!(retry_after.is_some());
            assert!(message.contains("call_queue_capacity"), "{message}");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    assert_eq!(b.unwrap(), "b");
    assert_eq!(bounded("A", a).await.unwrap().unwrap(), "a");
    // Capacity is back: the same call now succeeds.
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"c"))
            .await
            .unwrap(),
        "c"
    );
    client.shutdown().await;
    server.shutdown().await;
}
