//! Access rules over principals: a route, a typed protocol's method and a lane, each allowed to
//! one secret holder and denied to another on the same node; a refusal is its own status, not
//! executed, not retried, and names the principal and the rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use peerwire::access::{AccessPolicy, Target, Who};
use peerwire::connection::{Connection, ReplySlot, Service};
use peerwire::mount::MountPoint;
use peerwire::secret::SecretConfig;
use peerwire::service::{Protocol, ProtocolClient, Serde};
use peerwire::{
    Client, ClientConfig, ConnectError, ConnectionConfig, Error, GoAwayReason, HandlerError,
    HandshakeError, Lane, NotExecuted, Request, Server, ServerConfig, Status, handler_fn,
};

const OPS: [u8; 32] = [1; 32];
const APP: [u8; 32] = [2; 32];

fn as_holder(name: &str, key: [u8; 32]) -> ConnectionConfig {
    ConnectionConfig {
        secret: Some(SecretConfig::new(name, key).unwrap()),
        ..ConnectionConfig::default()
    }
}

/// A user lane that echoes.
struct Echo;
impl Service for Echo {
    fn on_request(&self, conn: &Connection, req: peerwire::wire::Request, slot: ReplySlot) {
        conn.reply(slot, req.id, req.payload);
    }
}

fn denied_status(err: &Error) -> Option<(Status, String)> {
    match err {
        Error::NotExecuted {
            reason: NotExecuted::Rejected { status, message },
            ..
        } => Some((*status, message.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn routes_methods_and_lanes_follow_the_rules() {
    let policy = AccessPolicy::default()
        .deny(Who::Secret("app".into()), Target::Route("admin".into()))
        .deny(
            Who::Secret("app".into()),
            Target::Method {
                protocol: "Fs".into(),
                method: "delete".into(),
            },
        )
        .deny(Who::Secret("app".into()), Target::Lane(Lane::user(3)));
    let secrets = SecretConfig::new("ops", OPS)
        .unwrap()
        .accepting("app", APP)
        .unwrap();
    let admin_runs = Arc::new(AtomicUsize::new(0));
    let runs = admin_runs.clone();
    let fs = Protocol::new("Fs", 1)
        .idempotent_method("stat", Serde, |p: String, _ctx: Request| async move {
            Ok::<u64, HandlerError>(p.len() as u64)
        })
        .method("delete", Serde, |_p: String, _ctx: Request| async move {
            Ok::<bool, HandlerError>(true)
        });
    let server = Server::builder(ServerConfig {
        connection: ConnectionConfig {
            secret: Some(secrets),
            access: policy,
            ..ConnectionConfig::default()
        },
        ..ServerConfig::default()
    })
    .route(
        "admin",
        handler_fn(move |req: Request| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move { Ok(req.into_payload()) }
        }),
    )
    .protocol(fs)
    .mount(MountPoint::lane(Lane::user(3)), Arc::new(Echo))
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let addr = server.local_addr();
    let client = |name, key| {
        Client::new(ClientConfig {
            connection: as_holder(name, key),
            ..ClientConfig::default()
        })
    };
    let (ops, app) = (client("ops", OPS), client("app", APP));

    // A route.
    ops.call(addr, "admin", Bytes::new()).await.unwrap();
    let err = app.call(addr, "admin", Bytes::new()).await.unwrap_err();
    let (status, message) = denied_status(&err).expect("a refusal");
    assert_eq!(status, Status::AccessDenied);
    assert!(message.contains("holder of secret app"), "{message}");
    assert!(message.contains("access rule 1"), "{message}");
    assert!(err.is_not_executed());
    assert_eq!(
        admin_runs.load(Ordering::SeqCst),
        1,
        "run for ops only, once"
    );

    // A method; the protocol's other methods stay open.
    let fs = |c: &Client| ProtocolClient::new(c.clone(), "Fs", 1);
    let deleted: bool = fs(&ops)
        .call(addr, "delete", Serde, &"/x".to_string())
        .await
        .unwrap();
    assert!(deleted);
    let err = fs(&app)
        .call::<_, String, bool>(addr, "delete", Serde, &"/x".to_string())
        .await
        .unwrap_err();
    assert_eq!(
        denied_status(&err).map(|d| d.0),
        Some(Status::AccessDenied),
        "{err}"
    );
    let len: u64 = fs(&app)
        .call(addr, "stat", Serde, &"/abc".to_string())
        .await
        .unwrap();
    assert_eq!(len, 4);

    // A lane: refused at the handshake.
    let lane = |name, key| {
        Client::for_service(
            ClientConfig {
                connection: as_holder(name, key),
                ..ClientConfig::default()
            },
            MountPoint::lane(Lane::user(3)),
            Arc::new(peerwire::mount::ServeNothing),
        )
        .unwrap()
    };
    let (ops_lane, app_lane) = (lane("ops", OPS), lane("app", APP));
    let echoed = ops_lane
        .call(addr, "any", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(echoed, "hi");
    let err = app_lane.call(addr, "any", Bytes::new()).await.unwrap_err();
    match &err {
        Error::NotExecuted {
            reason:
                NotExecuted::Connect(ConnectError::Handshake(HandshakeError::Refused {
                    reason,
                    message,
                })),
            ..
        } => {
            assert_eq!(*reason, GoAwayReason::AccessDenied);
            assert!(
                message.contains("user-3") || message.contains("lane"),
                "{message}"
            );
        }
        other => panic!("expected a lane refusal, got {other:?}"),
    }
    for c in [ops, app, ops_lane, app_lane] {
        c.shutdown().await;
    }
    server.shutdown().await;
}
