//! Secret mode: the right secret is accepted and the bytes on the wire are encrypted; a wrong
//! secret, an unknown name, a plaintext peer and a peer that does not speak secret mode are
//! each refused with their own error; a recorded exchange replayed does not reach a handler;
//! secrets rotate by name.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use peerwire::secret::{SecretConfig, SecretFailure};
use peerwire::{
    Client, ClientConfig, ConnectError, ConnectionConfig, Error, HandshakeError, NotExecuted,
    Request, Server, ServerConfig, handler_fn,
};
use peerwire_testkit::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET_PAYLOAD: &[u8] = b"the payload nobody on the wire may read";

fn secret(name: &str, byte: u8) -> SecretConfig {
    SecretConfig::new(name, [byte; 32]).unwrap()
}

fn connection(secret: Option<SecretConfig>) -> ConnectionConfig {
    ConnectionConfig {
        secret,
        ..ConnectionConfig::default()
    }
}

/// A server in secret mode (or plaintext with `None`) with an `echo` route counting its calls.
async fn server(secret: Option<SecretConfig>) -> (Server, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = Server::builder(ServerConfig {
        connection: connection(secret),
        ..ServerConfig::default()
    })
    .route(
        "echo",
        handler_fn(move |req: Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Ok(req.into_payload()) }
        }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    (server, calls)
}

fn client(secret: Option<SecretConfig>) -> Client {
    Client::new(ClientConfig {
        connection: connection(secret),
        ..ClientConfig::default()
    })
}

fn secret_failure(err: &Error) -> Option<SecretFailure> {
    match err {
        Error::NotExecuted {
            reason:
                NotExecuted::Connect(ConnectError::Handshake(HandshakeError::Secret {
                    failure, ..
                })),
            ..
        } => Some(*failure),
        _ => None,
    }
}

/// A TCP proxy to `to` that keeps every byte the client sent.
async fn recording_proxy(to: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let (inbound, _) = listener.accept().await.unwrap();
        let outbound = TcpStream::connect(to).await.unwrap();
        let (mut ci, mut co) = inbound.into_split();
        let (mut si, mut so) = outbound.into_split();
        let up = async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = ci.read(&mut buf).await {
                if n == 0 || so.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                record.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = so.shutdown().await;
        };
        let down = async move {
            let _ = tokio::io::copy(&mut si, &mut co).await;
        };
        tokio::join!(up, down);
    });
    (addr, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_right_secret_is_accepted_and_the_wire_carries_no_plaintext() {
    let (server, calls) = server(Some(secret("cluster", 7))).await;
    let (proxy, seen) = recording_proxy(server.local_addr()).await;
    let c = client(Some(secret("cluster", 7)));
    // Large enough for several records, with a 100 KiB call among small ones.
    let big = Bytes::from(SECRET_PAYLOAD.repeat(2700));
    for payload in [Bytes::from_static(SECRET_PAYLOAD), big.clone()] {
        let reply = bounded("an echo", c.call(proxy, "echo", payload.clone()))
            .await
            .unwrap();
        assert_eq!(reply, payload);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    c.shutdown().await;
    let wire = seen.lock().unwrap().clone();
    assert!(wire.len() > big.len(), "the calls went through the proxy");
    assert!(
        !contains(&wire, b"the payload nobody"),
        "the payload crossed the wire in the clear"
    );
    assert!(
        !contains(&wire, b"echo"),
        "the route crossed the wire in the clear"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn each_refusal_has_its_own_error() {
    let (server, calls) = server(Some(secret("cluster", 7))).await;
    let addr = server.local_addr();
    let call = |c: Client| async move {
        let err = c.call(addr, "echo", Bytes::new()).await.unwrap_err();
        c.shutdown().await;
        err
    };
    let wrong = call(client(Some(secret("cluster", 8)))).await;
    assert_eq!(
        secret_failure(&wrong),
        Some(SecretFailure::WrongSecret),
        "{wrong}"
    );
    let unknown = call(client(Some(secret("other", 7)))).await;
    assert_eq!(
        secret_failure(&unknown),
        Some(SecretFailure::UnknownSecret),
        "{unknown}"
    );
    let plaintext = call(client(None)).await;
    assert_eq!(
        secret_failure(&plaintext),
        Some(SecretFailure::NotSecret),
        "{plaintext}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing reached the handler"
    );

    // A node in secret mode calling a plaintext node learns the peer does not speak it.
    let (plain, _) = self::server(None).await;
    let addr = plain.local_addr();
    let err = client(Some(secret("cluster", 7)))
        .call(addr, "echo", Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(
        secret_failure(&err),
        Some(SecretFailure::PeerNotSecret),
        "{err}"
    );
    plain.shutdown().await;
    server.shutdown().await;
}

/// Every byte a client sent in a whole session, sent again on a new connection: the node
/// answers the handshake with fresh keys, the recorded records fail to decrypt, and the
/// connection closes without a call reaching the handler.
#[tokio::test]
async fn a_recorded_exchange_replayed_reaches_no_handler() {
    let (server, calls) = server(Some(secret("cluster", 7))).await;
    let (proxy, seen) = recording_proxy(server.local_addr()).await;
    let c = client(Some(secret("cluster", 7)));
    c.call(proxy, "echo", Bytes::from_static(b"once"))
        .await
        .unwrap();
    c.shutdown().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let recorded = seen.lock().unwrap().clone();

    let mut replay = TcpStream::connect(server.local_addr()).await.unwrap();
    replay.write_all(&recorded).await.unwrap();
    let mut answer = Vec::new();
    bounded(
        "the node closes the replay",
        replay.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    // The handshake's answer alone ('S', a record of the node's ephemeral key and tag), and
    // no reply: the hello and the call never decrypted.
    assert_eq!(answer.first(), Some(&b'S'));
    assert!(
        answer.len() <= 1 + 2 + 48,
        "{} bytes came back",
        answer.len()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the replayed call did not run"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn secrets_rotate_by_name() {
    let both = secret("new", 2).accepting("old", [1; 32]).unwrap();
    let (rotating, calls) = server(Some(both)).await;
    for c in [
        client(Some(secret("old", 1))),
        client(Some(secret("new", 2))),
    ] {
        c.call(rotating.local_addr(), "echo", Bytes::new())
            .await
            .unwrap();
        c.shutdown().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let (rotated, _) = server(Some(secret("new", 2))).await;
    let err = client(Some(secret("old", 1)))
        .call(rotated.local_addr(), "echo", Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(
        secret_failure(&err),
        Some(SecretFailure::UnknownSecret),
        "{err}"
    );
    rotating.shutdown().await;
    rotated.shutdown().await;
}

#[test]
fn tls_and_secret_together_are_refused() {
    let ca = peerwire::tls::certs::CertAuthority::generate("test").unwrap();
    let cfg = ConnectionConfig {
        tls: Some(ca.tls_config(&ca.issue_client().unwrap()).unwrap()),
        secret: Some(secret("cluster", 1)),
        ..ConnectionConfig::default()
    };
    assert!(matches!(cfg.validate(), Err(Error::Config(_))));
}

/// The refusal comes before the hello, so it is the same on every lane a node serves.
#[tokio::test]
async fn every_lane_refuses_a_peer_without_the_secret() {
    use peerwire::Lane;
    use peerwire::mount::Service;
    use peerwire::mount::{MountPoint, ServeNothing};
    struct Echo;
    impl Service for Echo {
        fn on_request(
            &self,
            conn: &peerwire::Connection,
            req: peerwire::wire::Request,
            slot: peerwire::mount::ReplySlot,
        ) {
            conn.reply(slot, req.id, req.payload);
        }
    }
    let lanes = [
        Lane::RaftAppend,
        Lane::RaftMessage,
        Lane::RaftPipeline,
        Lane::RaftSnapshot,
        Lane::DataStream,
        Lane::RpcEnv,
        Lane::Pull,
        Lane::user(1),
    ];
    let mut builder = Server::builder(ServerConfig {
        connection: connection(Some(secret("cluster", 7))),
        ..ServerConfig::default()
    });
    for lane in lanes {
        builder = builder.mount(MountPoint::lane(lane), Arc::new(Echo));
    }
    let server = builder.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for lane in lanes {
        let for_lane = |secret| {
            Client::for_service(
                ClientConfig {
                    connection: connection(secret),
                    ..ClientConfig::default()
                },
                MountPoint::lane(lane),
                Arc::new(ServeNothing),
            )
            .unwrap()
        };
        let holder = for_lane(Some(secret("cluster", 7)));
        holder
            .call(server.local_addr(), "x", Bytes::from_static(b"hi"))
            .await
            .unwrap_or_else(|e| panic!("{lane}: {e}"));
        let stranger = for_lane(None);
        let err = stranger
            .call(server.local_addr(), "x", Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(
            secret_failure(&err),
            Some(SecretFailure::NotSecret),
            "{lane}: {err}"
        );
        let wrong = for_lane(Some(secret("cluster", 8)));
        let err = wrong
            .call(server.local_addr(), "x", Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(
            secret_failure(&err),
            Some(SecretFailure::WrongSecret),
            "{lane}: {err}"
        );
        for c in [holder, stranger, wrong] {
            c.shutdown().await;
        }
    }
    server.shutdown().await;
}

/// A peer that opens a connection to a secret-mode node and says nothing is closed once the
/// handshake timeout passes.
#[tokio::test]
async fn a_silent_peer_is_closed_at_the_handshake_timeout() {
    let server = Server::builder(ServerConfig {
        connection: ConnectionConfig {
            secret: Some(secret("cluster", 7)),
            handshake_timeout: std::time::Duration::from_millis(100),
            ..ConnectionConfig::default()
        },
        ..ServerConfig::default()
    })
    .route(
        "echo",
        handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut got = Vec::new();
    bounded(
        "the node closes the silent connection",
        silent.read_to_end(&mut got),
    )
    .await
    .unwrap();
    assert!(
        got.is_empty(),
        "nothing is said to a peer that said nothing"
    );
    server.shutdown().await;
}
