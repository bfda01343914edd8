//! TLS with mutual authentication: calls and raft lanes work over it, and every failure is
//! refused at the handshake with its own error before any handler runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use peerwire::tls::TlsFailure;
use peerwire::tls::certs::{CertAuthority, IssuedCert};
use peerwire::transport::{Connector, TcpConnector};
use peerwire::{
    Client, ClientConfig, ConnectionConfig, Error, HandshakeError, Identity, Peer, Request, Server,
    ServerConfig, handler_fn,
};
use peerwire_raft::{LanesUp, MessageKind};
use peerwire_testkit::raft::{Event, FakeMsg, fake_cluster_with};
use peerwire_testkit::{bounded, handshake_error, wait_until};
use tokio::io::AsyncReadExt;

const CLUSTER: u64 = 7;

fn node(node_id: u64) -> Identity {
    Identity {
        cluster_id: CLUSTER,
        node_id,
        epoch: 1,
    }
}

fn tls(ca: &CertAuthority, cert: &IssuedCert) -> ConnectionConfig {
    ConnectionConfig {
        tls: Some(ca.tls_config(cert).expect("tls config")),
        ..ConnectionConfig::default()
    }
}

/// A server (node 1) whose only route counts the calls that reach it.
struct Counting {
    server: Server,
    handled: Arc<AtomicUsize>,
}

async fn counting_server(identity: Identity, connection: ConnectionConfig) -> Counting {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let server = Server::builder(ServerConfig {
        identity,
        connection,
        ..ServerConfig::default()
    })
    .route(
        "count",
        handler_fn(move |req: Request| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                Ok(req.into_payload())
            }
        }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .expect("bind");
    Counting { server, handled }
}

fn client(identity: Identity, connection: ConnectionConfig) -> Client {
    Client::new(ClientConfig {
        identity,
        connection,
        ..ClientConfig::default()
    })
}

fn tls_failure(e: &HandshakeError) -> TlsFailure {
    match e {
        HandshakeError::Tls { failure, .. } => *failure,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

async fn call(client: &Client, addr: SocketAddr) -> Result<Bytes, Error> {
    let r = client
        .call(Peer::new(addr, 1), "count", Bytes::from_static(b"hi"))
        .await;
    client.shutdown().await;
    r
}

#[tokio::test]
async fn calls_work_over_mutual_tls() {
    let ca = CertAuthority::generate("cluster 7").unwrap();
    let s = counting_server(node(1), tls(&ca, &ca.issue_node(1).unwrap())).await;
    let addr = s.server.local_addr();

    let member = client(node(2), tls(&ca, &ca.issue_node(2).unwrap()));
    assert_eq!(call(&member, addr).await.unwrap(), "hi");
    // An anonymous client needs a certificate from the CA, and claims no node.
    let anonymous = client(node(0), tls(&ca, &ca.issue_client().unwrap()));
    assert_eq!(call(&anonymous, addr).await.unwrap(), "hi");
    assert_eq!(s.handled.load(Ordering::SeqCst), 2);
    s.server.shutdown().await;
}

#[tokio::test]
async fn each_tls_failure_is_refused_with_its_own_error_and_no_handler_runs() {
    let ca = CertAuthority::generate("cluster 7").unwrap();
    let other_ca = CertAuthority::generate("another cluster").unwrap();
    let s = counting_server(node(1), tls(&ca, &ca.issue_node(1).unwrap())).await;
    let addr = s.server.local_addr();

    // Trusting and holding another CA's certificates: the client refuses the server first.
    let err = call(
        &client(node(2), tls(&other_ca, &other_ca.issue_node(2).unwrap())),
        addr,
    )
    .await
    .unwrap_err();
    assert_eq!(
        tls_failure(&handshake_error(err)),
        TlsFailure::UnknownIssuer
    );
    // Trusting the right CA but holding another CA's certificate: the server refuses it and
    // says why in its alert.
    let cert = other_ca.issue_node(2).unwrap();
    let foreign = ConnectionConfig {
        tls: Some(
            peerwire::tls::TlsConfig::from_pem(
                ca.ca_pem().as_bytes(),
                cert.cert_pem.as_bytes(),
                cert.key_pem.as_bytes(),
            )
            .unwrap(),
        ),
        ..ConnectionConfig::default()
    };
    let err = call(&client(node(2), foreign), addr).await.unwrap_err();
    assert_eq!(
        tls_failure(&handshake_error(err)),
        TlsFailure::UnknownIssuer
    );

    // An expired certificate.
    let expired = ca
        .issue(
            &peerwire::tls::node_name(2),
            Some(((2000, 1, 1), (2001, 1, 1))),
        )
        .unwrap();
    let err = call(&client(node(2), tls(&ca, &expired)), addr)
        .await
        .unwrap_err();
    assert_eq!(tls_failure(&handshake_error(err)), TlsFailure::Expired);

    // A certificate for node 5 claiming to be node 2.
    let err = call(&client(node(2), tls(&ca, &ca.issue_node(5).unwrap())), addr)
        .await
        .unwrap_err();
    let e = handshake_error(err);
    assert_eq!(tls_failure(&e), TlsFailure::WrongIdentity);
    assert!(e.to_string().contains("node-2.peerwire"), "{e}");

    // No certificate at all: a TLS client of our own making that presents none.
    let err = Client::with_connector(
        ClientConfig {
            identity: node(2),
            ..ClientConfig::default()
        },
        NoCertTls::new(&ca),
    )
    .unwrap()
    .call(Peer::new(addr, 1), "count", Bytes::new())
    .await
    .unwrap_err();
    assert_eq!(
        tls_failure(&handshake_error(err)),
        TlsFailure::NoCertificate
    );

    // Plaintext to a TLS server, and TLS to a plaintext server.
    let err = call(&client(node(2), ConnectionConfig::default()), addr)
        .await
        .unwrap_err();
    assert_eq!(tls_failure(&handshake_error(err)), TlsFailure::NotTls);
    let plain = counting_server(node(1), ConnectionConfig::default()).await;
    let err = call(
        &client(node(2), tls(&ca, &ca.issue_node(2).unwrap())),
        plain.server.local_addr(),
    )
    .await
    .unwrap_err();
    assert_eq!(tls_failure(&handshake_error(err)), TlsFailure::NotTls);

    // A valid certificate from another cluster id is still refused by the hello check.
    let err = call(
        &client(
            Identity {
                cluster_id: 8,
                ..node(2)
            },
            tls(&ca, &ca.issue_node(2).unwrap()),
        ),
        addr,
    )
    .await
    .unwrap_err();
    assert!(matches!(
        handshake_error(err),
        HandshakeError::ClusterMismatch(_)
    ));

    assert_eq!(s.handled.load(Ordering::SeqCst), 0, "no handler ran");
    assert_eq!(plain.handled.load(Ordering::SeqCst), 0, "no handler ran");
    // The server is still up for the right peer.
    let member = client(node(2), tls(&ca, &ca.issue_node(2).unwrap()));
    assert_eq!(call(&member, addr).await.unwrap(), "hi");
    s.server.shutdown().await;
    plain.server.shutdown().await;
}

#[tokio::test]
async fn a_server_whose_certificate_names_another_node_is_refused_by_the_client() {
    let ca = CertAuthority::generate("cluster 7").unwrap();
    // Node 1 holding node 3's certificate.
    let s = counting_server(node(1), tls(&ca, &ca.issue_node(3).unwrap())).await;
    let member = client(node(2), tls(&ca, &ca.issue_node(2).unwrap()));
    let err = call(&member, s.server.local_addr()).await.unwrap_err();
    let e = handshake_error(err);
    assert_eq!(tls_failure(&e), TlsFailure::WrongIdentity);
    assert!(e.to_string().contains("node-1.peerwire"), "{e}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_silent_or_stalled_tls_handshake_is_closed_at_the_handshake_timeout() {
    let ca = CertAuthority::generate("cluster 7").unwrap();
    let connection = ConnectionConfig {
        handshake_timeout: Duration::from_millis(200),
        ..tls(&ca, &ca.issue_node(1).unwrap())
    };
    let s = counting_server(node(1), connection).await;
    let addr = s.server.local_addr();
    // One peer sends nothing, one sends the first byte of a TLS record and stops.
    for opening in [&b""[..], &[0x16][..]] {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut raw, opening)
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The server closes it (EOF or reset), within the test's step bound.
        let _ = bounded("the server to close", raw.read_to_end(&mut buf)).await;
    }
    assert_eq!(s.handled.load(Ordering::SeqCst), 0);
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_lanes_run_over_tls_and_a_removed_member_is_refused() {
    let ca = Arc::new(CertAuthority::generate("cluster 7").unwrap());
    let certs: Vec<IssuedCert> = (1..=3).map(|id| ca.issue_node(id).unwrap()).collect();
    let mut nodes = fake_cluster_with(CLUSTER, 3, |cfg| {
        let id = cfg.identity.node_id as usize;
        cfg.connection.tls = Some(ca.tls_config(&certs[id - 1]).unwrap());
    })
    .await;
    let both = Some(LanesUp {
        append: true,
        message: true,
    });
    wait_until("lanes up over TLS", || {
        nodes[0].transport.lanes_up(2) == both && nodes[0].transport.lanes_up(3) == both
    })
    .await;
    let t = nodes[0].transport.clone();
    t.send([
        FakeMsg::new(MessageKind::Append, 1, 2, 1).with_payload(Bytes::from(vec![7; 4096])),
        FakeMsg::new(MessageKind::Heartbeat, 1, 3, 2),
    ]);
    assert_eq!(nodes[1].next_message().await.seq, 1);
    assert_eq!(nodes[2].next_message().await.seq, 2);

    // Node 3 removes node 2: node 2 is refused with the member-removed error, though its
    // certificate is valid.
    nodes[2].transport.handler().remove_member(2);
    nodes[1]
        .transport
        .send([FakeMsg::new(MessageKind::Heartbeat, 2, 3, 3)]);
    let by = nodes[1]
        .wait_for("removal", |e| match e {
            Event::Removed { by } => Some(by),
            _ => None,
        })
        .await;
    assert_eq!(by, 3);
    for n in nodes {
        n.stop().await;
    }
}

/// A TLS connector that trusts the CA but presents no client certificate.
struct NoCertTls {
    connector: tokio_rustls::TlsConnector,
}

impl NoCertTls {
    fn new(ca: &CertAuthority) -> Self {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        }
    }
}

impl Connector for NoCertTls {
    type Io = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<Self::Io> {
        let tcp = TcpConnector.connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from(peerwire::tls::node_name(1)).unwrap();
        self.connector.connect(name, tcp).await
    }
}
