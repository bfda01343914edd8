//! Bulk data streams with replica fan-out, after Apache Ratis's DataStream.
//!
//! A client opens a stream at a *primary* with a [`RoutingTable`] (star, chain or any tree)
//! and writes packets; the primary writes each packet to its [`DataSink`] and forwards the
//! same buffer to its successors, which do the same. A packet is acknowledged only when every
//! server on the route holds it (and, for `SYNC`, made it durable). Every packet carries a
//! CRC32C checked at every hop. After `close`, the application links the stream to something
//! durable (a raft log entry) by its [`StreamRef`] with [`DataStreamServer::take_closed`].
//!
//! | Ratis | peerwire | where |
//! |---|---|---|
//! | `DataStreamClient.stream(header, routingTable)` | [`DataStreamClient::open`] | [`client`] |
//! | `DataStreamOutput.writeAsync(buf, options)` | [`DataStreamOutput::write`] (flags `SYNC`, `CLOSE`) | [`client`] |
//! | `writeAsync(FileRegion)` | [`DataStreamOutput::write_file`] | [`client`] |
//! | outstanding-request limit | `max_outstanding` (back-pressure in `write`) | [`config`] |
//! | `RoutingTable` | [`RoutingTable`] (checked: tree rooted at the primary) | [`routing`] |
//! | `NettyServerStreamRpc` + `DataStreamManagement` | [`DataStreamServer`], one task per stream | `server`, `stream` |
//! | `ProxiesPool` (pool chosen by hash of client id and stream id) | forwarding client with `forward_pool` connections per successor | `forward` |
//! | `StateMachine.DataApi` / `DataChannel` | [`DataSink`] / [`SinkStream`] | [`sink`] |
//! | stream linked to a log entry | [`DataStreamServer::take_closed`] by [`StreamRef`] | `server` |
//!
//! Beyond Ratis: CRC32C per packet at every hop; every stream has an owner (its connection)
//! and an idle timeout, and closed streams not linked within `link_timeout` are discarded, so
//! nothing leaks; a bad routing table is refused at open with the reason.
//!
//! ```no_run
//! use bytes::Bytes;
//! use peerwire_datastream::{DataStreamClient, DataStreamConfig, RoutingTable, StreamFlags};
//!
//! # async fn demo(primary: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
//! let client = DataStreamClient::new(DataStreamConfig::default())?;
//! let mut out = client
//!     .open(primary, Bytes::from_static(b"blob-42"), RoutingTable::star(1, &[2, 3])?)
//!     .await?;
//! for _ in 0..8 {
//!     out.write(Bytes::from(vec![7u8; 1 << 20]), StreamFlags::NONE).await?;
//! }
//! let reply = out.close().await?; // every replica holds 8 MiB
//! assert_eq!(reply.bytes, 8 << 20);
//! # Ok(())
//! # }
//! ```

mod ack;
pub mod client;
pub mod codec;
pub mod config;
mod error;
#[cfg(feature = "testing")]
mod faults;
mod file_sink;
mod forward;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod routing;
mod server;
pub mod sink;
mod state;
mod stream;

pub use client::{Ack, DataStreamClient, DataStreamOutput, StreamReply, WriteAck};
pub use codec::{FailureKind, ReplicaBytes, StreamFailure, StreamRef};
pub use config::DataStreamConfig;
pub use error::DataStreamError;
#[cfg(feature = "testing")]
pub use faults::DataStreamFaults;
pub use file_sink::{FileSink, FileStream};
pub use peerwire_wire::StreamFlags;
pub use routing::{RoutingError, RoutingTable};
pub use server::{DataStreamServer, DataStreamStats};
pub use sink::{DataSink, SinkError, SinkStream, StreamInfo};
