//! Either side of a connection calls the other: a server's handler calls a typed protocol the
//! client serves, back over the connection the call came on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peerwire::mount::MountPoint;
use peerwire::service::{Callbacks, Protocol, ProtocolClient, Serde};
use peerwire::{
    Client, ClientConfig, Error, HandlerError, Lane, Request, Server, ServerConfig, Status,
};

#[tokio::test]
async fn a_server_calls_the_client_back_over_the_same_connection() {
    // The server: `subscribe` notifies the caller over the caller's own connection and answers
    // with what the caller's `notify` answered.
    let watch = Protocol::new("Watch", 1).method(
        "subscribe",
        Serde,
        |topic: String, call: Request| async move {
            let listener = ProtocolClient::new(Client::new(ClientConfig::default()), "Listener", 1);
            let conn = call.connection().clone();
            let seen: u64 = listener
                .call_on(
                    &conn,
                    "notify",
                    Serde,
                    &format!("{topic}: first event"),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|e| HandlerError::new(e.to_string()))?;
            Ok::<_, HandlerError>(seen)
        },
    );
    let server = Server::builder(ServerConfig::default())
        .protocol(watch)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // The client serves `Listener.notify` on the connections it opens.
    let notified = Arc::new(AtomicU64::new(0));
    let n = notified.clone();
    let listener = Protocol::new("Listener", 1).method(
        "notify",
        Serde,
        move |event: String, _call: Request| {
            let n = n.clone();
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(event.len() as u64)
            }
        },
    );
    let client = Client::for_service(
        ClientConfig::default(),
        MountPoint::lane(Lane::Rpc),
        Callbacks::new(vec![listener], 0),
    )
    .unwrap();
    let watch = ProtocolClient::new(client.clone(), "Watch", 1);
    let seen: u64 = watch
        .call(server.local_addr(), "subscribe", Serde, &"disk".to_string())
        .await
        .unwrap();
    assert_eq!(seen, "disk: first event".len() as u64);
    assert_eq!(notified.load(Ordering::SeqCst), 1);

    // A client that serves nothing answers the call back with an error, and the outer call
    // fails with it, naming what was missing.
    let plain = ProtocolClient::new(Client::new(ClientConfig::default()), "Watch", 1);
    let err = plain
        .call::<_, String, u64>(server.local_addr(), "subscribe", Serde, &"x".to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote { status: Status::HandlerFailed, message, .. } if message.contains("svc")),
        "{err}"
    );
    client.shutdown().await;
    server.shutdown().await;
}
