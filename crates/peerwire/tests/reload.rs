//! Certificates and secrets replaced under a running server: connections opened before go on,
//! new connections use the new material — no restart.

use bytes::Bytes;
use peerwire::secret::{SecretConfig, SecretFailure};
use peerwire::tls::TlsFailure;
use peerwire::tls::certs::CertAuthority;
use peerwire::{
    Client, ClientConfig, ConnectError, ConnectionConfig, Error, HandshakeError, Identity,
    NotExecuted, Request, Server, ServerConfig, handler_fn,
};

async fn echo_server(connection: ConnectionConfig, node_id: u64) -> Server {
    Server::builder(ServerConfig {
        identity: Identity {
            node_id,
            ..Identity::default()
        },
        connection,
        ..ServerConfig::default()
    })
    .route(
        "echo",
        handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

fn client(connection: ConnectionConfig) -> Client {
    Client::new(ClientConfig {
        connection,
        ..ClientConfig::default()
    })
}

fn handshake_error(err: &Error) -> Option<&HandshakeError> {
    match err {
        Error::NotExecuted {
            reason: NotExecuted::Connect(ConnectError::Handshake(e)),
            ..
        } => Some(e),
        _ => None,
    }
}

#[tokio::test]
async fn a_rotated_ca_applies_to_new_connections_and_spares_established_ones() {
    let (old_ca, new_ca) = (
        CertAuthority::generate("old").unwrap(),
        CertAuthority::generate("new").unwrap(),
    );
    let server_tls = old_ca.tls_config(&old_ca.issue_node(1).unwrap()).unwrap();
    let tls = |tls| ConnectionConfig {
        tls: Some(tls),
        ..ConnectionConfig::default()
    };
    let server = echo_server(tls(server_tls.clone()), 1).await;
    let addr = server.local_addr();
    let before = client(tls(old_ca
        .tls_config(&old_ca.issue_client().unwrap())
        .unwrap()));
    before.call(addr, "echo", Bytes::new()).await.unwrap();

    // The server's certificate and trusted CA are replaced through its configuration.
    server_tls.reload(&new_ca.tls_config(&new_ca.issue_node(1).unwrap()).unwrap());
    before
        .call(addr, "echo", Bytes::from_static(b"still"))
        .await
        .expect("the established connection goes on");
    let stale = client(tls(old_ca
        .tls_config(&old_ca.issue_client().unwrap())
        .unwrap()));
    let err = stale.call(addr, "echo", Bytes::new()).await.unwrap_err();
    assert!(
        matches!(handshake_error(&err), Some(HandshakeError::Tls { failure, .. }) if *failure != TlsFailure::NotTls),
        "an old-CA client is refused: {err}"
    );
    let fresh = client(tls(new_ca
        .tls_config(&new_ca.issue_client().unwrap())
        .unwrap()));
    fresh.call(addr, "echo", Bytes::new()).await.unwrap();
    for c in [before, stale, fresh] {
        c.shutdown().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_secret_dropped_from_a_running_server_refuses_new_connections_only() {
    let server_secrets = SecretConfig::new("new", [2; 32])
        .unwrap()
        .accepting("old", [1; 32])
        .unwrap();
    let secret = |s| ConnectionConfig {
        secret: Some(s),
        ..ConnectionConfig::default()
    };
    let server = echo_server(secret(server_secrets.clone()), 0).await;
    let addr = server.local_addr();
    let old = || secret(SecretConfig::new("old", [1; 32]).unwrap());
    let before = client(old());
    before.call(addr, "echo", Bytes::new()).await.unwrap();

    server_secrets.reload(&SecretConfig::new("new", [2; 32]).unwrap());
    before
        .call(addr, "echo", Bytes::new())
        .await
        .expect("the established connection goes on");
    let err = client(old())
        .call(addr, "echo", Bytes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            handshake_error(&err),
            Some(HandshakeError::Secret {
                failure: SecretFailure::UnknownSecret,
                ..
            })
        ),
        "{err}"
    );
    client(secret(SecretConfig::new("new", [2; 32]).unwrap()))
        .call(addr, "echo", Bytes::new())
        .await
        .unwrap();
    before.shutdown().await;
    server.shutdown().await;
}
