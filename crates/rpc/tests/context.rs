//! Request context through RpcEnv asks: a caller context set around an ask reaches the
//! endpoint, and asks the endpoint makes while answering carry it on to an endpoint of another
//! env (two hops).

use peerwire::context::{CALLER, Context, DEFAULT_MAX_CONTEXT};
use peerwire_rpc::{Endpoint, EndpointError, EndpointRef, ReplyContext, RpcEnv, RpcEnvConfig};

/// Answers with the caller context it was asked under.
struct Audit;

impl Endpoint for Audit {
    type Message = String;

    async fn receive_and_reply(
        &mut self,
        _msg: String,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        let caller = reply.caller_context().unwrap_or("none").to_owned();
        reply.reply(&caller);
        Ok(())
    }
}

/// Asks `next` and answers with its answer (no context passed by hand).
struct Relay {
    next: EndpointRef<String>,
}

impl Endpoint for Relay {
    type Message = String;

    async fn receive_and_reply(
        &mut self,
        msg: String,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        let answer: String = self
            .next
            .ask(msg)
            .await
            .map_err(|e| EndpointError(e.to_string()))?;
        reply.reply(&format!("{answer} (relayed)"));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_context_crosses_two_rpcenv_hops() {
    let audit_env = RpcEnv::start(RpcEnvConfig::server(
        "audit",
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    audit_env.setup_endpoint("audit", Audit).unwrap();
    let relay_env = RpcEnv::start(RpcEnvConfig::server(
        "relay",
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let next = relay_env.endpoint_ref_unchecked::<String>(audit_env.address().unwrap(), "audit");
    relay_env.setup_endpoint("relay", Relay { next }).unwrap();
    let client = RpcEnv::start(RpcEnvConfig::client("driver")).await.unwrap();
    let relay = client.endpoint_ref_unchecked::<String>(relay_env.address().unwrap(), "relay");

    let context = Context::from_entries(
        [(CALLER, &b"spark-app-17 (bob)"[..])],
        usize::from(DEFAULT_MAX_CONTEXT),
    )
    .unwrap();
    let answer: String = peerwire::context::scope(context, relay.ask("hi".to_string()))
        .await
        .unwrap();
    assert_eq!(answer, "spark-app-17 (bob) (relayed)");
    let plain: String = relay.ask("hi".to_string()).await.unwrap();
    assert_eq!(plain, "none (relayed)");

    for env in [client, relay_env, audit_env] {
        env.shutdown().await;
    }
}
