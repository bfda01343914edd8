//! Every connection's principal, as handlers see it: the address alone in plaintext, the
//! secret's name in secret mode, the node or user a certificate names under mutual TLS — and
//! the same on the calling side, for the server.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use peerwire::secret::SecretConfig;
use peerwire::tls::certs::CertAuthority;
use peerwire::{
    Client, ClientConfig, ConnectionConfig, Identity, Principal, Request, Server, ServerConfig,
    handler_fn,
};

const CLUSTER: u64 = 0xabc;

/// A server as node 1 with `connection`, whose `who` route records each caller's principal.
async fn server(connection: ConnectionConfig) -> (Server, Arc<Mutex<Vec<Principal>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = Server::builder(ServerConfig {
        identity: Identity {
            cluster_id: CLUSTER,
            node_id: 1,
            epoch: 1,
        },
        connection,
        ..ServerConfig::default()
    })
    .route(
        "who",
        handler_fn(move |req: Request| {
            record.lock().unwrap().push(req.principal().clone());
            async move { Ok(Bytes::new()) }
        }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    (server, seen)
}

/// Calls `who` as `node_id` with `connection`; returns the principal the client saw the
/// server as.
async fn call(server: &Server, node_id: u64, connection: ConnectionConfig) -> Principal {
    let client = Client::new(ClientConfig {
        identity: Identity {
            cluster_id: CLUSTER,
            node_id,
            epoch: 1,
        },
        connection,
        ..ClientConfig::default()
    });
    client
        .call(server.local_addr(), "who", Bytes::new())
        .await
        .unwrap();
    let conn = client.connection(server.local_addr(), None).await.unwrap();
    let seen = conn.principal().clone();
    client.shutdown().await;
    seen
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn plaintext_peers_are_known_by_address_only() {
    let (server, seen) = server(ConnectionConfig::default()).await;
    // The node id in a plaintext hello is a claim: it proves nothing.
    let of_server = call(&server, 7, ConnectionConfig::default()).await;
    assert_eq!(of_server, Principal::Anonymous(LOCALHOST));
    assert_eq!(*seen.lock().unwrap(), [Principal::Anonymous(LOCALHOST)]);
    assert!(!seen.lock().unwrap()[0].is_authenticated());
    server.shutdown().await;
}

#[tokio::test]
async fn secret_holders_are_known_by_the_secrets_name() {
    let secret = SecretConfig::new("cluster", [3; 32]).unwrap();
    let connection = ConnectionConfig {
        secret: Some(secret),
        ..ConnectionConfig::default()
    };
    let (server, seen) = server(connection.clone()).await;
    let of_server = call(&server, 0, connection).await;
    assert_eq!(of_server, Principal::Secret("cluster".into()));
    assert_eq!(*seen.lock().unwrap(), [Principal::Secret("cluster".into())]);
    server.shutdown().await;
}

#[tokio::test]
async fn certificates_name_nodes_and_users() {
    let ca = CertAuthority::generate("principals").unwrap();
    let tls = |cert| ConnectionConfig {
        tls: Some(ca.tls_config(&cert).unwrap()),
        ..ConnectionConfig::default()
    };
    let (server, seen) = server(tls(ca.issue_node(1).unwrap())).await;
    // A client certificate: a user, by the certificate's name.
    let of_server = call(&server, 0, tls(ca.issue_client().unwrap())).await;
    assert_eq!(
        of_server,
        Principal::Node(1),
        "the server proved it is node 1"
    );
    // A member's certificate, claiming its node id.
    call(&server, 2, tls(ca.issue_node(2).unwrap())).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Principal::User(peerwire::tls::CLIENT_NAME.into()),
            Principal::Node(2)
        ]
    );
    server.shutdown().await;
}
