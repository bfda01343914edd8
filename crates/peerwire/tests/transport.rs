//! The stack runs over any transport: here an in-memory network, no sockets.

use bytes::Bytes;
use peerwire::{Client, ClientConfig, Request, Server, ServerConfig, handler_fn};
use peerwire_testkit::bounded;
use peerwire_testkit::memory::MemoryNetwork;

#[tokio::test]
async fn calls_work_over_an_in_memory_transport() {
    let net = MemoryNetwork::new();
    let addr = "10.0.0.1:7000".parse().unwrap();
    let server = Server::builder(ServerConfig::default())
        .route(
            "echo",
            handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
        )
        .serve(net.listen(addr))
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    let client = Client::with_connector(ClientConfig::default(), net.connector()).unwrap();
    let calls = (0..200u32).map(|i| {
        let client = client.clone();
        async move {
            let payload = Bytes::from(i.to_string());
            assert_eq!(
                client.call(addr, "echo", payload.clone()).await.unwrap(),
                payload
            );
        }
    });
    bounded("calls over memory", futures::future::join_all(calls)).await;
    assert_eq!(server.connections(), 1);

    // Nothing listens elsewhere: refused before sending.
    let other = "10.0.0.2:7000".parse::<std::net::SocketAddr>().unwrap();
    assert!(
        client
            .call(other, "echo", Bytes::new())
            .await
            .unwrap_err()
            .is_not_executed()
    );
    client.shutdown().await;
    server.shutdown().await;
}
