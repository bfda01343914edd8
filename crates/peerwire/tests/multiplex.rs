//! Many calls in flight on one connection, each reply matched to its caller.

use bytes::Bytes;
use peerwire::{Client, ClientConfig, Request, Server, ServerConfig, handler_fn};
use peerwire_testkit::bounded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_share_one_connection_and_get_their_own_replies() {
    // Handlers yield a payload-dependent number of times so replies come back out of order.
    let server = Server::builder(ServerConfig::default())
        .route(
            "shuffle",
            handler_fn(|req: Request| async move {
                let spins = req.payload().len() % 7;
                for _ in 0..spins {
                    tokio::task::yield_now().await;
                }
                Ok(req.into_payload())
            }),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    let calls = (0..1000usize).map(|i| {
        let client = client.clone();
        async move {
            let payload = Bytes::from(format!("call-{i}-{}", "x".repeat(i % 97)));
            let reply = client.call(addr, "shuffle", payload.clone()).await.unwrap();
            assert_eq!(reply, payload, "call {i} got another call's reply");
        }
    });
    bounded("1,000 calls", futures::future::join_all(calls)).await;
    assert_eq!(
        server.connections(),
        1,
        "all calls must share one connection"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn large_payloads_travel_intact_in_both_directions() {
    let server =
        peerwire_testkit::test_server(ServerConfig::default(), peerwire_testkit::Gate::new()).await;
    let client = Client::new(ClientConfig::default());
    let payload: Bytes = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let calls = (0..4).map(|_| client.call(server.local_addr(), "echo", payload.clone()));
    for reply in bounded("large echoes", futures::future::join_all(calls)).await {
        assert_eq!(reply.unwrap(), payload);
    }
    client.shutdown().await;
    server.shutdown().await;
}
