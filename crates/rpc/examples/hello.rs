//! Spark's HelloEndpoint on peerwire: a server env registers `hello-service`; a client env in
//! client mode (no listener) asks it `SayHi("name")` and prints the reply.
//!
//! Run with `cargo run -p peerwire --example hello`.

use peerwire_rpc::{Endpoint, EndpointError, ReplyContext, RpcEnv, RpcEnvConfig};
use serde::{Deserialize, Serialize};

/// What `hello-service` understands.
#[derive(Debug, Serialize, Deserialize)]
enum HelloMessage {
    SayHi(String),
    SayBye(String),
}

struct HelloEndpoint;

impl Endpoint for HelloEndpoint {
    type Message = HelloMessage;

    async fn receive_and_reply(
        &mut self,
        message: HelloMessage,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        match message {
            HelloMessage::SayHi(name) => reply.reply(&format!("hi, {name}")),
            HelloMessage::SayBye(name) => reply.reply(&format!("bye, {name}")),
        }
        Ok(())
    }

    async fn on_stop(&mut self) {
        println!("hello-service stopped");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), peerwire::Error> {
    let server = RpcEnv::start(RpcEnvConfig::server(
        "hello-server",
        "127.0.0.1:0".parse().expect("addr"),
    ))
    .await?;
    server.setup_endpoint("hello-service", HelloEndpoint)?;
    let address = server.address().expect("server mode has an address");
    println!("server env listening on {address}");

    let client = RpcEnv::start(RpcEnvConfig::client("hello-client")).await?;
    let hello = client
        .endpoint_ref::<HelloMessage>(address, "hello-service")
        .await?;
    let hi: String = hello.ask(HelloMessage::SayHi("peerwire".into())).await?;
    println!("{hi}");
    let bye: String = hello.ask(HelloMessage::SayBye("peerwire".into())).await?;
    println!("{bye}");

    client.shutdown().await;
    server.shutdown().await;
    server.await_termination().await;
    Ok(())
}
