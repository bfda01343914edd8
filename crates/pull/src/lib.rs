//! Pull streams on peerwire: Spark's `StreamManager`, chunk fetch and stream requests.
//!
//! A server mounts a [`StreamManager`] on its one port (lane `pull`) and registers streams —
//! a buffer, a file, or a producer of chunks — each bound to the [`Reader`] allowed to read it,
//! or serves names through a [`Resolve`] (the RpcEnv file server is one). A reader's
//! [`PullClient`] fetches chunk *i* of a stream, or reads it whole as a `futures::Stream`
//! ([`StreamRead`]) with a bounded window of fetches in flight. Lengths and CRC32Cs of
//! buffers and files are known before the first chunk; every chunk carries its CRC32C and
//! the reader checks it. File chunks go from the page cache to the socket with `sendfile` on
//! plaintext TCP.
//!
//! Streams are released when their reader's connection closes, when closed, after a
//! producer's last chunk, and when unread for [`PullConfig::idle_timeout`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::TryStreamExt;
//! use peerwire_pull::{PullClient, PullConfig, ReadOptions, Reader, Source, StreamManager};
//!
//! let streams = StreamManager::new(PullConfig::default());
//! let server = peerwire::Server::builder(peerwire::ServerConfig::default())
//!     .mount_all(&streams)
//!     .bind("127.0.0.1:0".parse()?)
//!     .await?;
//! let info = streams
//!     .register(Source::bytes(vec![7u8; 3 << 20]), Reader::Anyone)
//!     .await?;
//!
//! let reader = PullClient::new(peerwire::ClientConfig::default())?;
//! let chunk = reader.chunk(server.local_addr(), info.id, 2).await?;
//! let whole: Vec<bytes::Bytes> = reader
//!     .read(server.local_addr(), info, ReadOptions::default())?
//!     .try_collect()
//!     .await?;
//! # Ok(()) }
//! ```

mod client;
mod codec;
mod error;
mod manager;
mod read;
mod registry;
mod source;

pub use client::{Chunk, PullClient};
pub use codec::{StreamId, StreamInfo};
pub use error::PullError;
pub use manager::{
    OpenError, PreparedSource, PullConfig, RegisterError, Resolve, Resolving, StreamManager,
};
pub use read::{ReadOptions, StreamRead};
pub use registry::Reader;
pub use source::{ChunkStream, Source};
