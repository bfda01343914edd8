//! peerwire: the network layer between the nodes of a distributed system.
//!
//! This crate is the open core: the connection layer, the server core with Hadoop-style typed
//! protocols, the client, TLS, and the mount API every service uses to share a node's one port.
//! The frame format lives in [`peerwire_wire`]; the service families are crates of their own
//! that see only this crate's public API: `peerwire-rpc` (Spark's RpcEnv), `peerwire-raft`
//! (etcd's rafthttp, multi-raft) and `peerwire-datastream` (Ratis DataStream).
//!
//! ```no_run
//! use bytes::Bytes;
//! use peerwire::{handler_fn, Client, ClientConfig, Request, Server, ServerConfig};
//!
//! # async fn demo() -> Result<(), peerwire::Error> {
//! let server = Server::builder(ServerConfig::default())
//!     .route("echo", handler_fn(|req: Request| async move { Ok(req.into_payload()) }))
//!     .bind("127.0.0.1:0".parse().unwrap())
//!     .await?;
//! let client = Client::new(ClientConfig::default());
//! let reply = client.call(server.local_addr(), "echo", Bytes::from_static(b"hi")).await?;
//! assert_eq!(reply, "hi");
//! client.shutdown().await;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Every call ends in exactly one of four outcomes: a reply, [`Error::NotExecuted`] (safe to
//! retry), [`Error::Remote`] (the handler failed), or [`Error::Unknown`] (deadline or
//! connection loss after sending). See [`error`].

pub mod access;
pub mod client;
pub mod config;
pub mod connection;
pub mod context;
pub mod envelope;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod mount;
pub mod secret;
pub mod server;
pub mod service;
pub mod tls;
pub mod transport;

pub use client::{CallOptions, Client, Peer, RetryPolicy};
pub use config::{BackoffConfig, ClientConfig, ConnectionConfig, Identity, ServerConfig};
pub use connection::{Connection, PeerInfo, Principal, Route};
pub use error::{ConnectError, Error, HandshakeError, NotExecuted, Unknown};
pub use mount::{MountPoint, Mountable};
pub use peerwire_macros::protocol;
pub use peerwire_wire as wire;
pub use peerwire_wire::{GoAwayReason, Lane, Status};
pub use server::{
    Call, FairScheduler, FairSchedulerConfig, FifoScheduler, Handler, HandlerError, HandlerFn,
    Rejected, Request, Schedulable, Scheduler, Server, ServerBuilder, handler_fn,
};
