//! RpcEnv endpoints under an access policy: an endpoint denied to one secret holder answers
//! its asks `AccessDenied` (not executed) and drops its one-way messages, while another holder
//! and another endpoint are served; each ask says who it came from.

use peerwire::access::{AccessPolicy, Target};
use peerwire::secret::SecretConfig;
use peerwire::{ConnectionConfig, Error, NotExecuted, Principal, Status};
use peerwire_rpc::{Endpoint, EndpointError, ReplyContext, RpcEnv, RpcEnvConfig};

/// Answers every ask with the asker's principal.
struct Whoami;

impl Endpoint for Whoami {
    type Message = String;

    async fn receive_and_reply(
        &mut self,
        _msg: String,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        let who = reply
            .principal()
            .map_or("local".to_string(), ToString::to_string);
        reply.reply(&who);
        Ok(())
    }
}

fn holder(name: &str, key: u8) -> ConnectionConfig {
    ConnectionConfig {
        secret: Some(SecretConfig::new(name, [key; 32]).unwrap()),
        ..ConnectionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_denied_to_a_principal_refuses_its_asks() {
    let mut cfg = RpcEnvConfig::server("vault-host", "127.0.0.1:0".parse().unwrap());
    cfg.server.connection = ConnectionConfig {
        secret: Some(
            SecretConfig::new("ops", [1; 32])
                .unwrap()
                .accepting("app", [2; 32])
                .unwrap(),
        ),
        access: AccessPolicy::default().deny(
            peerwire::access::Who::Secret("app".into()),
            Target::Endpoint("vault".into()),
        ),
        ..ConnectionConfig::default()
    };
    let server = RpcEnv::start(cfg).await.unwrap();
    server.setup_endpoint("vault", Whoami).unwrap();
    server.setup_endpoint("lobby", Whoami).unwrap();
    let addr = server.address().unwrap();
    let client = |name: &str, key| {
        let mut cfg = RpcEnvConfig::client(name);
        cfg.client.connection = holder(name, key);
        RpcEnv::start(cfg)
    };
    let (ops, app) = (
        client("ops", 1).await.unwrap(),
        client("app", 2).await.unwrap(),
    );

    let vault = ops.endpoint_ref_unchecked::<String>(addr, "vault");
    let who: String = vault.ask("hi".to_string()).await.unwrap();
    assert_eq!(who, Principal::Secret("ops".into()).to_string());

    let denied = app.endpoint_ref_unchecked::<String>(addr, "vault");
    let err = denied.ask::<String>("hi".to_string()).await.unwrap_err();
    match &err {
        Error::NotExecuted {
            reason: NotExecuted::Rejected { status, message },
            ..
        } => {
            assert_eq!(*status, Status::AccessDenied);
            assert!(message.contains("endpoint `vault`"), "{message}");
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    let lobby = app.endpoint_ref_unchecked::<String>(addr, "lobby");
    let who: String = lobby.ask("hi".to_string()).await.unwrap();
    assert_eq!(who, Principal::Secret("app".into()).to_string());

    for env in [ops, app, server] {
        env.shutdown().await;
    }
}
