//! Typed services: two protocols and both engines on one server, their error codes, the retry
//! cache, and tower services as handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use peerwire::service::{Prost, Protocol, ProtocolClient, Serde, tower_handler};
use peerwire::{
    Client, ClientConfig, Error, HandlerError, NotExecuted, Request, Server, ServerConfig, Status,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MkdirsRequest {
    path: String,
    create_parent: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileInfoRequest {
    #[prost(string, tag = "1")]
    path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileInfo {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(uint64, tag = "2")]
    length: u64,
}

async fn namenode(created: Arc<AtomicU64>) -> Server {
    let client_protocol = Protocol::new("ClientProtocol", 1)
        .method("mkdirs", Serde, move |req: MkdirsRequest, _ctx: Request| {
            let created = created.clone();
            async move {
                if req.path.is_empty() {
                    return Err(HandlerError::new("empty path"));
                }
                Ok::<u64, HandlerError>(created.fetch_add(1, Ordering::SeqCst) + 1)
            }
        })
        .idempotent_method(
            "getFileInfo",
            Prost,
            |req: FileInfoRequest, _ctx: Request| async move {
                Ok::<FileInfo, HandlerError>(FileInfo {
                    length: req.path.len() as u64,
                    path: req.path,
                })
            },
        );
    let service_protocol = Protocol::new("DatanodeProtocol", 2).idempotent_method(
        "heartbeat",
        Serde,
        |node: u64, ctx: Request| async move {
            Ok::<String, HandlerError>(format!("ack {node} from {}", ctx.peer().node_id))
        },
    );
    Server::builder(ServerConfig::default())
        .protocol(client_protocol)
        .protocol(service_protocol)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn rejected(err: Error) -> (Status, String) {
    match err {
        Error::NotExecuted {
            reason: NotExecuted::Rejected { status, message },
            ..
        } => (status, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn two_protocols_and_both_engines_on_one_port() {
    let created = Arc::new(AtomicU64::new(0));
    let server = namenode(created.clone()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    let cp = ProtocolClient::new(client.clone(), "ClientProtocol", 1);
    let dp = ProtocolClient::new(client.clone(), "DatanodeProtocol", 2);

    let n: u64 = cp
        .call(
            addr,
            "mkdirs",
            Serde,
            &MkdirsRequest {
                path: "/a".into(),
                create_parent: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let info: FileInfo = cp
        .call(
            addr,
            "getFileInfo",
            Prost,
            &FileInfoRequest {
                path: "/a/b".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!((info.path.as_str(), info.length), ("/a/b", 4));
    let ack: String = dp.call(addr, "heartbeat", Serde, &7u64).await.unwrap();
    assert_eq!(ack, "ack 7 from 0");
    // The handler's own error is a remote failure.
    let err = cp
        .call::<_, _, u64>(
            addr,
            "mkdirs",
            Serde,
            &MkdirsRequest {
                path: String::new(),
                create_parent: false,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                status: Status::HandlerFailed,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        server.connections(),
        1,
        "every protocol shares one connection"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn each_mismatch_has_its_own_error_code() {
    let server = namenode(Arc::new(AtomicU64::new(0))).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());

    let unknown = ProtocolClient::new(client.clone(), "NoSuchProtocol", 1);
    let (status, message) = rejected(
        unknown
            .call::<_, _, u64>(addr, "x", Serde, &1u64)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Status::UnknownProtocol);
    assert!(message.contains("NoSuchProtocol"), "{message}");

    let cp = ProtocolClient::new(client.clone(), "ClientProtocol", 1);
    let (status, message) = rejected(
        cp.call::<_, _, u64>(addr, "rmdir", Serde, &1u64)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Status::UnknownMethod);
    assert!(message.contains("rmdir"), "{message}");

    let old = ProtocolClient::new(client.clone(), "ClientProtocol", 0);
    let (status, message) = rejected(
        old.call::<_, _, u64>(
            addr,
            "mkdirs",
            Serde,
            &MkdirsRequest {
                path: "/x".into(),
                create_parent: false,
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, Status::ProtocolVersionMismatch);
    assert!(
        message.contains("version 1") && message.contains("version 0"),
        "{message}"
    );

    // The right method with the wrong engine.
    let (status, message) = rejected(
        cp.call::<_, _, String>(addr, "getFileInfo", Serde, &"x".to_string())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Status::BadRequest);
    assert!(
        message.contains("protobuf") && message.contains("serde"),
        "{message}"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_retried_non_idempotent_call_is_answered_from_the_retry_cache() {
    let created = Arc::new(AtomicU64::new(0));
    let server = namenode(created.clone()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    // The same call (client id 42, call id 7) sent twice, as a retry after a lost reply would.
    let body = {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .serialize(&MkdirsRequest {
                path: "/once".into(),
                create_parent: false,
            })
            .unwrap()
    };
    let envelope = service_envelope(1, "ClientProtocol", 1, "mkdirs", 42, 7, &body);
    let first = client.call(addr, "svc", envelope.clone()).await.unwrap();
    let second = client.call(addr, "svc", envelope).await.unwrap();
    assert_eq!(first, second, "the retry gets the first attempt's answer");
    assert_eq!(created.load(Ordering::SeqCst), 1, "and the method ran once");
    // A new call id runs again.
    let again = service_envelope(1, "ClientProtocol", 1, "mkdirs", 42, 8, &body);
    client.call(addr, "svc", again).await.unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 2);
    client.shutdown().await;
    server.shutdown().await;
}

/// Builds a service envelope by hand (the layout in `docs/PROTOCOL.md`).
fn service_envelope(
    engine: u8,
    protocol: &str,
    version: u32,
    method: &str,
    client_id: u64,
    call_id: u64,
    body: &[u8],
) -> Bytes {
    let mut out = vec![1u8, engine];
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&client_id.to_be_bytes());
    out.extend_from_slice(&call_id.to_be_bytes());
    out.push(protocol.len() as u8);
    out.extend_from_slice(protocol.as_bytes());
    out.push(method.len() as u8);
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

#[tokio::test]
async fn tower_services_with_middleware_serve_routes() {
    use tower::ServiceExt;
    let upper = tower::service_fn(|req: Request| async move {
        Ok::<Bytes, HandlerError>(Bytes::from(req.payload().to_ascii_uppercase()))
    })
    .map_response(|b: Bytes| {
        let mut v = b.to_vec();
        v.extend_from_slice(b"!");
        Bytes::from(v)
    });
    let server = Server::builder(ServerConfig::default())
        .route("upper", tower_handler(upper))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::new(ClientConfig::default());
    let reply = client
        .call(server.local_addr(), "upper", Bytes::from_static(b"tower"))
        .await
        .unwrap();
    assert_eq!(reply, "TOWER!");
    client.shutdown().await;
    server.shutdown().await;
}

/// A TCP proxy in front of `server` that loses the first reply: on its first connection it
/// forwards requests, then drops both sides when the server's first response arrives, so the
/// caller never learns the outcome. Later connections pass through untouched.
async fn reply_losing_proxy(
    server: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use bytes::BytesMut;
    use peerwire::wire::{Frame, FrameDecoder, Limits};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut pumps = tokio::task::JoinSet::new();
        for connection in 0.. {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut outbound) = TcpStream::connect(server).await else {
                return;
            };
            if connection > 0 {
                pumps.spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                continue;
            }
            let (mut in_read, mut in_write) = inbound.into_split();
            let (mut out_read, mut out_write) = outbound.into_split();
            let upstream = async move {
                let _ = tokio::io::copy(&mut in_read, &mut out_write).await;
            };
            let downstream = async move {
                let mut buf = BytesMut::new();
                let mut dec = FrameDecoder::new(Limits::default());
                loop {
                    while let Ok(Some(frame)) = dec.decode(&mut buf) {
                        if matches!(frame, Frame::Response(_)) {
                            return; // lose it, and the connection with it
                        }
                        let mut out = BytesMut::new();
                        frame.encode(&mut out);
                        if in_write.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    if !matches!(out_read.read_buf(&mut buf).await, Ok(n) if n > 0) {
                        return;
                    }
                }
            };
            // Whichever direction ends first takes the whole connection down.
            tokio::select! {
                _ = upstream => {}
                _ = downstream => {}
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_lost_reply_is_retried_and_answered_from_the_retry_cache() {
    use peerwire::RetryPolicy;
    use peerwire_testkit::{bounded, fixed_backoff};

    let created = Arc::new(AtomicU64::new(0));
    let server = namenode(created.clone()).await;
    let (proxy, proxy_task) = reply_losing_proxy(server.local_addr()).await;
    let quick = fixed_backoff(1);
    let client = Client::new(ClientConfig {
        retry: RetryPolicy {
            backoff: quick,
            ..RetryPolicy::default()
        },
        backoff: quick,
        ..ClientConfig::default()
    });
    let cp = ProtocolClient::new(client.clone(), "ClientProtocol", 1);
    // mkdirs is not idempotent: the first attempt runs, its reply is lost with the connection,
    // the client retries the same call id on a new connection, and the retry cache answers.
    let n: u64 = bounded(
        "mkdirs through the proxy",
        cp.call(
            proxy,
            "mkdirs",
            Serde,
            &MkdirsRequest {
                path: "/lost".into(),
                create_parent: false,
            },
        ),
    )
    .await
    .unwrap();
    assert_eq!(n, 1, "the retry got the first attempt's answer");
    assert!(client.retries() >= 1, "the call was retried");
    assert_eq!(created.load(Ordering::SeqCst), 1, "and the method ran once");
    // A new call runs normally through the (now transparent) proxy.
    let n: u64 = cp
        .call(
            proxy,
            "mkdirs",
            Serde,
            &MkdirsRequest {
                path: "/next".into(),
                create_parent: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    proxy_task.abort();
    client.shutdown().await;
    server.shutdown().await;
}
