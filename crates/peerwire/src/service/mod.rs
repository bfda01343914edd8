//! Typed services (the Hadoop IPC model): protocols with names, versions and methods, each
//! method with its engine (serde or protobuf), served beside each other on one port; a retry
//! cache so that retried non-idempotent calls never run twice; and tower services as handlers.
//!
//! Service calls go through the server core like any call: fair scheduling, deadlines,
//! cancellation and busy answers apply.
//!
//! | Hadoop | peerwire |
//! |---|---|
//! | protocol interface + `RPC.setProtocolEngine` | [`Protocol`] with a per-method [`Engine`] |
//! | `RpcKind` / `RpcInvoker` (Writable, Protobuf) | [`Serde`], [`Prost`] |
//! | `Server.addProtocol` | [`crate::ServerBuilder::protocol`] |
//! | `RetryCache` | `retry_cache.rs` |
//! | client proxy | [`ProtocolClient`] |

mod callbacks;
mod client;
mod engine;
mod envelope;
mod protocol;
mod retry_cache;
mod router;
pub mod stream;
mod tower;

pub use callbacks::Callbacks;
pub use client::ProtocolClient;
pub use engine::{Engine, EngineId, Prost, Serde};
pub use protocol::Protocol;
pub use stream::{ItemStream, ReplyStream, Streaming};

/// The stream trait of request streams handed to generated streaming clients (re-exported so
/// the code `#[peerwire::protocol]` writes needs no other crate).
pub use futures::Stream;
pub use tower::{TowerHandler, tower_handler};

pub(crate) use router::{RouterHandler, ServiceRouter};

/// The route service calls travel on.
pub(crate) const SERVICE_ROUTE: &str = "svc";
