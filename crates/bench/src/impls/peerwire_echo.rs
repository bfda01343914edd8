//! The implementation under test: a peerwire server with an `echo` route and a
//! `peerwire::Client` (one connection per peer by default) shared by all callers, in plaintext
//! ([`Peerwire`]), secret mode ([`PeerwireSecret`]) or mutual TLS ([`PeerwireTls`]).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use peerwire::{ConnectionConfig, Identity};

use crate::BoxError;
use crate::echo::{EchoCaller, EchoImpl};

/// How the connections are secured.
pub(crate) trait Mode: Send + Sync + 'static {
    /// The server's identity and connection settings.
    fn server() -> Result<(Identity, ConnectionConfig), BoxError> {
        Ok((Identity::default(), ConnectionConfig::default()))
    }
    /// The client's connection settings.
    fn client() -> Result<ConnectionConfig, BoxError> {
        Ok(ConnectionConfig::default())
    }
    /// The context every call carries (none by default).
    fn context() -> Option<peerwire::context::Context> {
        None
    }
}

/// Plaintext, every call carrying W3C trace context and a caller context (protocol version 4):
/// a `traceparent`, a `tracestate` and a `caller`, 119 bytes of context per call.
#[derive(Debug)]
pub(crate) struct Traced;
impl Mode for Traced {
    fn context() -> Option<peerwire::context::Context> {
        use peerwire::context::{CALLER, Context, DEFAULT_MAX_CONTEXT, TRACEPARENT, TRACESTATE};
        let entries: [(&str, &[u8]); 3] = [
            (
                TRACEPARENT,
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (TRACESTATE, b"congo=t61rcWkgMzE"),
            (CALLER, b"bench-job-1"),
        ];
        Context::from_entries(entries, usize::from(DEFAULT_MAX_CONTEXT)).ok()
    }
}

/// Plaintext.
#[derive(Debug)]
pub(crate) struct Plain;
impl Mode for Plain {}

/// Secret mode, one fixed bench secret.
#[derive(Debug)]
pub(crate) struct Secret;
impl Mode for Secret {
    fn server() -> Result<(Identity, ConnectionConfig), BoxError> {
        Ok((Identity::default(), Self::client()?))
    }
    fn client() -> Result<ConnectionConfig, BoxError> {
        Ok(ConnectionConfig {
            secret: Some(peerwire::secret::SecretConfig::new("bench", [0x42; 32])?),
            ..ConnectionConfig::default()
        })
    }
}

/// Mutual TLS: the server is node 1, the client anonymous, both with certificates of one CA
/// made in memory for the run (a child echo server gets the CA and its own certificate and key
/// through [`TLS_ENV`]).
#[derive(Debug)]
pub(crate) struct Tls;
impl Mode for Tls {
    fn server() -> Result<(Identity, ConnectionConfig), BoxError> {
        let tls = match std::env::var(TLS_ENV) {
            Ok(pems) => {
                let parts: Vec<&str> = pems.split(PEM_SEPARATOR).collect();
                let [ca, cert, key] = parts[..] else {
                    return Err(format!("{TLS_ENV} holds {} parts, not 3", parts.len()).into());
                };
                peerwire::tls::TlsConfig::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes())?
            }
            Err(_) => {
                let m = material()?;
                peerwire::tls::TlsConfig::from_pem(
                    m.ca.as_bytes(),
                    m.node.cert_pem.as_bytes(),
                    m.node.key_pem.as_bytes(),
                )?
            }
        };
        let identity = Identity {
            node_id: 1,
            ..Identity::default()
        };
        Ok((
            identity,
            ConnectionConfig {
                tls: Some(tls),
                ..ConnectionConfig::default()
            },
        ))
    }
    fn client() -> Result<ConnectionConfig, BoxError> {
        let m = material()?;
        let tls = peerwire::tls::TlsConfig::from_pem(
            m.ca.as_bytes(),
            m.client.cert_pem.as_bytes(),
            m.client.key_pem.as_bytes(),
        )?;
        Ok(ConnectionConfig {
            tls: Some(tls),
            ..ConnectionConfig::default()
        })
    }
}

/// The environment variable that hands a child echo server its TLS material: the CA, its
/// certificate and its key, PEM, joined by [`PEM_SEPARATOR`].
pub(crate) const TLS_ENV: &str = "PEERWIRE_BENCH_TLS";
const PEM_SEPARATOR: char = '|';

/// This run's CA, node 1's certificate and a client's.
struct Material {
    ca: String,
    node: peerwire::tls::certs::IssuedCert,
    client: peerwire::tls::certs::IssuedCert,
}

fn material() -> Result<&'static Material, BoxError> {
    static MATERIAL: OnceLock<Result<Material, String>> = OnceLock::new();
    MATERIAL
        .get_or_init(|| {
            let ca = peerwire::tls::certs::CertAuthority::generate("peerwire-bench")
                .map_err(|e| e.to_string())?;
            Ok(Material {
                ca: ca.ca_pem(),
                node: ca.issue_node(1).map_err(|e| e.to_string())?,
                client: ca.issue_client().map_err(|e| e.to_string())?,
            })
        })
        .as_ref()
        .map_err(|e| format!("making the bench's certificates: {e}").into())
}

/// The environment a child echo server needs: its TLS material.
pub(crate) fn child_env() -> Result<(&'static str, String), BoxError> {
    let m = material()?;
    Ok((
        TLS_ENV,
        [m.ca.as_str(), &m.node.cert_pem, &m.node.key_pem].join(&PEM_SEPARATOR.to_string()),
    ))
}

/// The route the echo handler is registered under.
const ROUTE: &str = "echo";

/// The peerwire echo implementation, its connections secured by `M`.
#[derive(Debug)]
pub(crate) struct PeerwireIn<M>(PhantomData<M>);

/// Plaintext peerwire.
pub(crate) type Peerwire = PeerwireIn<Plain>;
/// Peerwire in secret mode.
pub(crate) type PeerwireSecret = PeerwireIn<Secret>;
/// Peerwire over mutual TLS.
pub(crate) type PeerwireTls = PeerwireIn<Tls>;
/// Plaintext peerwire, every call carrying trace and caller context.
pub(crate) type PeerwireTraced = PeerwireIn<Traced>;

/// Calls the echo route of one server through a shared client.
#[derive(Debug, Clone)]
pub(crate) struct PeerwireCaller {
    client: peerwire::Client,
    addr: SocketAddr,
    /// Options carrying the mode's context, if it has one.
    options: Option<peerwire::CallOptions>,
}

/// A client and the server address it calls.
#[derive(Debug)]
pub(crate) struct PeerwireClient {
    caller: PeerwireCaller,
}

impl<M: Mode> EchoImpl for PeerwireIn<M> {
    type Server = peerwire::Server;
    type Client = PeerwireClient;
    type Caller = PeerwireCaller;

    async fn start_server() -> Result<(peerwire::Server, SocketAddr), BoxError> {
        let (identity, connection) = M::server()?;
        let server = peerwire::Server::builder(peerwire::ServerConfig {
            identity,
            connection,
            ..peerwire::ServerConfig::default()
        })
        .route(
            ROUTE,
            peerwire::handler_fn(|req: peerwire::Request| async move { Ok(req.into_payload()) }),
        )
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("peerwire server: bind 127.0.0.1:0: {e}"))?;
        let addr = server.local_addr();
        Ok((server, addr))
    }

    async fn stop_server(server: peerwire::Server) {
        server.shutdown().await;
    }

    async fn connect(addr: SocketAddr) -> Result<PeerwireClient, BoxError> {
        let mut caller = PeerwireCaller {
            client: peerwire::Client::new(peerwire::ClientConfig {
                connection: M::client()?,
                ..peerwire::ClientConfig::default()
            }),
            addr,
            options: M::context().map(|context| peerwire::CallOptions {
                context: Some(context),
                ..peerwire::CallOptions::default()
            }),
        };
        // Connections are lazy: make one call so the handshake is not measured.
        caller
            .call(Bytes::from_static(b"connect"))
            .await
            .map_err(|e| format!("peerwire client: first call to {addr}: {e}"))?;
        Ok(PeerwireClient { caller })
    }

    fn caller(client: &PeerwireClient) -> PeerwireCaller {
        client.caller.clone()
    }

    async fn close(client: PeerwireClient) {
        client.caller.client.shutdown().await;
    }
}

impl EchoCaller for PeerwireCaller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        Ok(match &self.options {
            None => self.client.call(self.addr, ROUTE, payload).await?,
            Some(options) => {
                self.client
                    .call_with(self.addr, ROUTE, payload, options.clone())
                    .await?
            }
        })
    }
}
