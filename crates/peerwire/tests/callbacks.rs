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

/// What a subscriber serves on its own connections.
#[peerwire::protocol(name = "TypedListener", version = 1)]
trait TypedListener {
    /// One event; answers how many it has seen.
    async fn notify(&self, event: String) -> Result<u64, HandlerError>;
}

/// What the server serves.
#[peerwire::protocol(name = "TypedWatch", version = 1)]
trait TypedWatch {
    /// Sends `count` events back to the caller, then answers what the caller last counted.
    async fn subscribe(&self, count: u64, call: Request) -> Result<u64, HandlerError>;
}

struct Watcher;

impl TypedWatch for Watcher {
    async fn subscribe(&self, count: u64, call: Request) -> Result<u64, HandlerError> {
        let back = TypedListenerClient::new(Client::new(ClientConfig::default()));
        let mut seen = 0;
        for i in 0..count {
            seen = back
                .notify_on(
                    call.connection(),
                    &format!("event {i}"),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|e| HandlerError::new(e.to_string()))?;
        }
        Ok(seen)
    }
}

struct Counter(AtomicU64);

impl TypedListener for Counter {
    async fn notify(&self, _event: String) -> Result<u64, HandlerError> {
        Ok(self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

#[tokio::test]
async fn generated_clients_call_back_over_the_connection_a_call_came_on() {
    let server = Server::builder(ServerConfig::default())
        .protocol(typed_watch_protocol(Arc::new(Watcher)))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let counter = Arc::new(Counter(AtomicU64::new(0)));
    let client = Client::for_service(
        ClientConfig::default(),
        MountPoint::lane(Lane::Rpc),
        Callbacks::new(vec![typed_listener_protocol(counter.clone())], 0),
    )
    .unwrap();
    let watch = TypedWatchClient::new(client.clone());
    assert_eq!(watch.subscribe(server.local_addr(), &3).await.unwrap(), 3);
    assert_eq!(watch.subscribe(server.local_addr(), &2).await.unwrap(), 5);
    assert_eq!(counter.0.load(Ordering::SeqCst), 5);
    client.shutdown().await;
    server.shutdown().await;
}
