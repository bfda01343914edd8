//! `#[peerwire::protocol]`: a protocol defined once as a trait is served and called with both
//! engines; its idempotent methods and its version are what the trait says.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};

use peerwire::{
    CallOptions, Client, ClientConfig, Error, HandlerError, NotExecuted, Server, ServerConfig,
    Status,
};

/// A file system's namespace, as a typed protocol.
#[peerwire::protocol(name = "Namespace", version = 3)]
pub trait Namespace {
    /// How many bytes the file at a path holds.
    #[idempotent]
    async fn stat(&self, path: String) -> Result<u64, HandlerError>;
    /// Creates a directory; false if it existed.
    async fn mkdirs(&self, path: String) -> Result<bool, HandlerError>;
    /// Echoes a protobuf value (the prost engine).
    #[engine(prost)]
    async fn echo(&self, value: u64) -> Result<u64, HandlerError>;
    /// The caller's node id, from the call itself; `whoAmI` on the wire.
    #[rename = "whoAmI"]
    async fn who(&self, nothing: (), call: peerwire::Request) -> Result<u64, HandlerError>;
}

struct Memory {
    created: AtomicU64,
}

impl Namespace for Memory {
    async fn stat(&self, path: String) -> Result<u64, HandlerError> {
        if path.is_empty() {
            return Err(HandlerError::new("an empty path"));
        }
        Ok(path.len() as u64)
    }

    async fn mkdirs(&self, _path: String) -> Result<bool, HandlerError> {
        Ok(self.created.fetch_add(1, Ordering::SeqCst) == 0)
    }

    async fn echo(&self, value: u64) -> Result<u64, HandlerError> {
        Ok(value)
    }

    async fn who(&self, (): (), call: peerwire::Request) -> Result<u64, HandlerError> {
        Ok(call.peer().node_id)
    }
}

/// Only the client of this version is used here.
#[allow(dead_code)]
mod newer {
    use peerwire::HandlerError;

    /// The same protocol at another version.
    #[peerwire::protocol(name = "Namespace", version = 4)]
    pub(crate) trait Namespace {
        /// As version 3.
        async fn stat(&self, path: String) -> Result<u64, HandlerError>;
    }
}

#[tokio::test]
async fn a_trait_is_served_and_called_through_the_generated_sides() {
    let service = Arc::new(Memory {
        created: AtomicU64::new(0),
    });
    let server = Server::builder(ServerConfig::default())
        .protocol(namespace_protocol(service))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let client = Client::new(ClientConfig {
        identity: peerwire::Identity {
            node_id: 9,
            ..peerwire::Identity::default()
        },
        ..ClientConfig::default()
    });
    let ns = NamespaceClient::new(client.clone());
    assert_eq!(ns.who(addr, &()).await.unwrap(), 9);
    // The wire name is the renamed one.
    let by_name: u64 = peerwire::service::ProtocolClient::new(client.clone(), "Namespace", 3)
        .call(addr, "whoAmI", peerwire::service::Serde, &())
        .await
        .unwrap();
    assert_eq!(by_name, 9);
    assert_eq!(ns.stat(addr, &"/a/b".to_string()).await.unwrap(), 4);
    assert!(ns.mkdirs(addr, &"/x".to_string()).await.unwrap());
    assert!(!ns.mkdirs(addr, &"/x".to_string()).await.unwrap());
    assert_eq!(ns.echo(addr, &42).await.unwrap(), 42);
    let err = ns.stat(addr, &String::new()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Remote { status: Status::HandlerFailed, message, .. } if message.contains("an empty path")),
        "{err}"
    );

    // A client of another version is refused before any method runs.
    let err = newer::NamespaceClient::new(client.clone())
        .stat(addr, &"/a".to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotExecuted {
                reason: NotExecuted::Rejected {
                    status: Status::ProtocolVersionMismatch,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    client.shutdown().await;
    server.shutdown().await;
}

/// A log service with a method of each streaming shape.
#[peerwire::protocol(name = "Log", version = 1)]
pub trait Log {
    /// The entries from `from` on (server streaming).
    async fn tail(&self, from: u64) -> Result<peerwire::service::ItemStream<String>, HandlerError>;
    /// Appends every entry sent; the count (client streaming).
    async fn append(
        &self,
        entries: peerwire::service::Streaming<String>,
    ) -> Result<u64, HandlerError>;
    /// Each entry's length as it comes (bidirectional).
    async fn lengths(
        &self,
        entries: peerwire::service::Streaming<String>,
    ) -> Result<peerwire::service::ItemStream<u64>, HandlerError>;
}

struct Entries;

impl Log for Entries {
    async fn tail(&self, from: u64) -> Result<peerwire::service::ItemStream<String>, HandlerError> {
        Ok(Box::pin(
            futures::stream::iter(from..from + 3).map(|i| Ok(format!("entry {i}"))),
        ))
    }

    async fn append(
        &self,
        mut entries: peerwire::service::Streaming<String>,
    ) -> Result<u64, HandlerError> {
        let mut n = 0;
        while let Some(entry) = entries.next().await {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    async fn lengths(
        &self,
        entries: peerwire::service::Streaming<String>,
    ) -> Result<peerwire::service::ItemStream<u64>, HandlerError> {
        Ok(Box::pin(entries.map(|e| e.map(|s| s.len() as u64))))
    }
}

/// Every item of a stream of replies, each one required to be `Ok`.
async fn every_item<T, E: std::fmt::Debug>(
    replies: impl futures::Stream<Item = Result<T, E>>,
) -> Vec<T> {
    replies.map(Result::unwrap).collect().await
}

#[tokio::test]
async fn streaming_methods_are_served_and_called_through_the_generated_sides() {
    let server = Server::builder(ServerConfig::default())
        .protocol(log_protocol(Arc::new(Entries)))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    let log = LogClient::new(client.clone());
    let tail: Vec<String> = every_item(log.tail(addr, &7).await.unwrap()).await;
    assert_eq!(tail, ["entry 7", "entry 8", "entry 9"]);
    let entries = || futures::stream::iter(["a", "bb", "ccc"].map(String::from));
    assert_eq!(log.append(addr, entries()).await.unwrap(), 3);
    let lengths: Vec<u64> = every_item(log.lengths(addr, entries()).await.unwrap()).await;
    assert_eq!(lengths, [1, 2, 3]);

    // With options: the same stream within a deadline; and a client stream whose requests
    // never end is cut by its deadline, with an unknown outcome.
    let tail: Vec<String> = every_item(
        log.tail_with(addr, &1, CallOptions::deadline(Duration::from_secs(10)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tail, ["entry 1", "entry 2", "entry 3"]);
    let endless = futures::stream::iter(["a".to_string()]).chain(futures::stream::pending());
    let err = log
        .append_with(
            addr,
            endless,
            CallOptions::deadline(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(err.is_unknown(), "{err}");
    let lengths: Vec<u64> = every_item(
        log.lengths_with(
            addr,
            entries(),
            CallOptions::deadline(Duration::from_secs(10)),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(lengths, [1, 2, 3]);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_retried_call_of_a_generated_non_idempotent_method_is_answered_from_the_retry_cache() {
    let service = Arc::new(Memory {
        created: AtomicU64::new(0),
    });
    let server = Server::builder(ServerConfig::default())
        .protocol(namespace_protocol(service.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    // The same call (client id 42, call id 7) sent twice, as a retry after a lost reply is:
    // the layout of docs/PROTOCOL.md's service envelope, serde engine, `mkdirs("/x")`.
    let envelope = |call_id: u64| {
        use bincode::Options;
        let body = bincode::DefaultOptions::new()
            .serialize(&"/x".to_string())
            .unwrap();
        let mut out = vec![1u8, 1];
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(&42u64.to_be_bytes());
        out.extend_from_slice(&call_id.to_be_bytes());
        for name in ["Namespace", "mkdirs"] {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(&body);
        bytes::Bytes::from(out)
    };
    let first = client.call(addr, "svc", envelope(7)).await.unwrap();
    let retried = client.call(addr, "svc", envelope(7)).await.unwrap();
    assert_eq!(first, retried, "the retry gets the first attempt's answer");
    assert_eq!(
        service.created.load(Ordering::SeqCst),
        1,
        "and the method ran once"
    );
    client.call(addr, "svc", envelope(8)).await.unwrap();
    assert_eq!(service.created.load(Ordering::SeqCst), 2, "a new call runs");
    client.shutdown().await;
    server.shutdown().await;
}
