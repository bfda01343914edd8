//! Each call outcome: reply, not executed, failed remotely; one-way delivery.

use std::sync::Arc;

use bytes::Bytes;
use peerwire::{
    Client, ClientConfig, ConnectionConfig, Error, NotExecuted, Request, Server, ServerConfig,
    Status, handler_fn,
};
use peerwire_testkit::{Gate, bounded, test_server};
use tokio::sync::mpsc;

#[tokio::test]
async fn handler_failure_is_remote_and_unknown_route_is_not_executed() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());

    match client
        .call(addr, "fail", Bytes::from_static(b"disk full"))
        .await
    {
        Err(Error::Remote {
            status, message, ..
        }) => {
            assert_eq!(status, Status::HandlerFailed);
            assert_eq!(message, "disk full");
        }
        other => panic!("expected a remote failure, got {other:?}"),
    }
    match client.call(addr, "nope", Bytes::new()).await {
        Err(Error::NotExecuted {
            reason: NotExecuted::Rejected { status, message },
            ..
        }) => {
            assert_eq!(status, Status::UnknownRoute);
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("expected an unknown route, got {other:?}"),
    }
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn panicking_handler_fails_its_call_and_the_server_survives() {
    let server = test_server(
        ServerConfig {
            handlers: 1,
            ..ServerConfig::default()
        },
        Gate::new(),
    )
    .await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    for _ in 0..3 {
        match client.call(addr, "panic", Bytes::new()).await {
            Err(Error::Remote {
                status: Status::Internal,
                message,
                ..
            }) => {
                assert!(message.contains("handler exploded"), "{message}");
            }
            other => panic!("expected an internal failure, got {other:?}"),
        }
    }
    // The single handler task is still alive.
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"ok"))
            .await
            .unwrap(),
        "ok"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn payload_over_the_peer_limit_is_refused_before_sending() {
    let cfg = ServerConfig {
        connection: ConnectionConfig {
            max_frame_body: 64 * 1024,
            max_message_bytes: 64 * 1024,
            ..ConnectionConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = test_server(cfg, Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    match client
        .call(addr, "echo", Bytes::from(vec![0u8; 100_000]))
        .await
    {
        Err(Error::NotExecuted {
            reason:
                NotExecuted::PayloadTooLarge {
                    len,
                    limit,
                    setting,
                },
            ..
        }) => {
            assert_eq!(len, 100_000);
            assert_eq!(limit, 64 * 1024);
            assert_eq!(setting, "max_message_bytes");
        }
        other => panic!("expected payload too large, got {other:?}"),
    }
    // Just under the limit is fine.
    let ok = Bytes::from(vec![1u8; 60_000]);
    assert_eq!(client.call(addr, "echo", ok.clone()).await.unwrap(), ok);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oneway_messages_arrive_in_order() {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let tx = Arc::new(tx);
    let server = Server::builder(ServerConfig {
        handlers: 1,
        ..ServerConfig::default()
    })
    .route(
        "record",
        handler_fn(move |req: Request| {
            let tx = tx.clone();
            async move {
                assert!(req.is_oneway());
                tx.send(req.into_payload()).unwrap();
                Ok(Bytes::new())
            }
        }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let client = Client::new(ClientConfig::default());
    for i in 0..100u32 {
        client
            .send_oneway(server.local_addr(), "record", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    for i in 0..100u32 {
        let got = bounded("a one-way message", rx.recv()).await.unwrap();
        assert_eq!(got, i.to_string());
    }
    client.shutdown().await;
    server.shutdown().await;
}
