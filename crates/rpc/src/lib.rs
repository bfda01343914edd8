//! RpcEnv: named endpoints with inboxes, `send` and `ask` (the Spark RPC model).
//!
//! ```no_run
//! use peerwire_rpc::{Endpoint, EndpointError, ReplyContext, RpcEnv, RpcEnvConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum HelloMsg {
//!     SayHi(String),
//! }
//!
//! struct Hello;
//!
//! impl Endpoint for Hello {
//!     type Message = HelloMsg;
//!     async fn receive_and_reply(&mut self, msg: HelloMsg, reply: ReplyContext) -> Result<(), EndpointError> {
//!         let HelloMsg::SayHi(name) = msg;
//!         reply.reply(&format!("hi, {name}"));
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo() -> Result<(), peerwire::Error> {
//! let server = RpcEnv::start(RpcEnvConfig::server("server", "127.0.0.1:0".parse().unwrap())).await?;
//! server.setup_endpoint("hello-service", Hello)?;
//! let client = RpcEnv::start(RpcEnvConfig::client("client")).await?;
//! let hello = client.endpoint_ref::<HelloMsg>(server.address().unwrap(), "hello-service").await?;
//! let answer: String = hello.ask(HelloMsg::SayHi("peerwire".into())).await?;
//! # Ok(())
//! # }
//! ```
//!
//! | Spark | peerwire |
//! |---|---|
//! | `NettyRpcEnv` | [`RpcEnv`] (`env.rs`) |
//! | `ThreadSafeRpcEndpoint` | [`Endpoint`] (`&mut self`: one message at a time) |
//! | `RpcEndpoint` with concurrency | [`SharedEndpoint`] (`&self`, up to N messages at once) |
//! | `IsolatedRpcEndpoint` | [`EndpointOptions::isolated`] |
//! | `RpcEndpointRef` | [`EndpointRef`] (serializable; binds on receipt) |
//! | `RpcCallContext` | [`ReplyContext`] |
//! | `Dispatcher`, `Inbox`, `MessageLoop` | `dispatcher.rs`, `inbox.rs` (bounded), `message_loop.rs` |
//! | `Outbox` | `outbox.rs` |
//! | `NettyRpcHandler` | `inbound.rs` (an inbound policy of the connection layer) |
//! | `RpcEndpointVerifier` | the built-in `$verifier` receiver used by [`RpcEnv::endpoint_ref`] |
//! | `RpcEnvFileServer`, `RpcEnv.openChannel` | [`RpcEnv::file_server`] ([`FileServer`]: `add_file`, `add_jar`, `add_directory`), [`RpcEnv::open_channel`] (`file_server.rs`, on `peerwire-pull`) |

mod codec;
mod dispatcher;
mod endpoint;
mod endpoint_ref;
mod env;
mod envelope;
mod file_server;
mod inbound;
mod inbox;
mod message_loop;
mod outbox;
mod reply;

pub use codec::{BincodeCodec, Codec};
pub use endpoint::{Endpoint, EndpointContext, EndpointError, MessageContext, SharedEndpoint};
pub use endpoint_ref::EndpointRef;
pub use env::{
    DEFAULT_ASK_TIMEOUT, DEFAULT_INBOX_CAPACITY, DEFAULT_OUTBOX_CAPACITY, EndpointOptions, RpcEnv,
    RpcEnvConfig,
};
pub use file_server::{FileServer, FileServerError, FileUri, OpenChannelError, URI_SCHEME};
pub use reply::ReplyContext;

/// The route RpcEnv messages travel on.
pub(crate) const ROUTE: &str = "rpcenv";
