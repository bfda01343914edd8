//! The reading side: open a stream by name, describe it, fetch a chunk, or read the whole
//! stream ([`StreamRead`]) with a bounded window of chunk fetches in flight.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use peerwire::ClientConfig;
use peerwire::connection::Route;
use peerwire::mount::{MountPoint, ServeNothing};
use peerwire_wire::Lane;

use super::codec::{self, StreamId, StreamInfo};
use super::error::PullError;
use super::read::{ReadOptions, StreamRead};

/// One chunk, its CRC32C checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its index in the stream.
    pub index: u64,
    /// Its bytes.
    pub data: Bytes,
    /// Whether it is the stream's last.
    pub last: bool,
    /// Its CRC32C (checked against its bytes).
    pub crc32c: u32,
}

/// Reads streams from stream managers. Cheap to clone; clones share connections (one per
/// server, so a stream opened by name is read on the connection it is bound to).
#[derive(Debug, Clone)]
pub struct PullClient {
    client: peerwire::Client,
    routes: Arc<Routes>,
}

#[derive(Debug)]
struct Routes {
    open: Route,
    info: Route,
    chunk: Route,
    close: Route,
}

impl PullClient {
    /// A client of the stream managers of group 0.
    ///
    /// # Errors
    ///
    /// An invalid `cfg` (`peerwire::Error::Config`).
    pub fn new(cfg: ClientConfig) -> Result<Self, peerwire::Error> {
        Self::for_group(cfg, 0)
    }

    /// A client of the stream managers of `group`.
    ///
    /// # Errors
    ///
    /// An invalid `cfg` (`peerwire::Error::Config`).
    pub fn for_group(cfg: ClientConfig, group: u64) -> Result<Self, peerwire::Error> {
        let client = peerwire::Client::for_service(
            cfg,
            MountPoint::group(Lane::Pull, group),
            Arc::new(ServeNothing),
        )?;
        Ok(Self {
            client,
            routes: Arc::new(Routes {
                open: Route::from(codec::OPEN_ROUTE),
                info: Route::from(codec::INFO_ROUTE),
                chunk: Route::from(codec::CHUNK_ROUTE),
                close: Route::from(codec::CLOSE_ROUTE),
            }),
        })
    }

    async fn ask(
        &self,
        addr: SocketAddr,
        route: &Route,
        payload: Bytes,
    ) -> Result<Result<Bytes, codec::Refusal>, PullError> {
        let reply = self.client.call(addr, route.clone(), payload).await?;
        codec::outcome(reply).map_err(|m| PullError::malformed(addr, m))
    }

    /// Opens the stream `name` on `addr` (resolved by the server; bound to this client's
    /// connection, released when it closes).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a stream opened by a cancelled call is released with the connection or
    /// after the server's idle timeout.
    pub async fn open(&self, addr: SocketAddr, name: &str) -> Result<StreamInfo, PullError> {
        let payload = Bytes::copy_from_slice(name.as_bytes());
        match self.ask(addr, &self.routes.open, payload).await? {
            Ok(body) => codec::decode_info(body).map_err(|m| PullError::malformed(addr, m)),
            Err(r) => Err(PullError::refused(addr, StreamId(0), 0, Some(name), r)),
        }
    }

    /// Describes stream `id` on `addr`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: describing changes nothing.
    pub async fn info(&self, addr: SocketAddr, id: StreamId) -> Result<StreamInfo, PullError> {
        match self
            .ask(addr, &self.routes.info, codec::encode_id(id, None))
            .await?
        {
            Ok(body) => codec::decode_info(body).map_err(|m| PullError::malformed(addr, m)),
            Err(r) => Err(PullError::refused(addr, id, 0, None, r)),
        }
    }

    /// Fetches chunk `index` of stream `id` and checks its CRC32C.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe for buffers and files (fetch it again); a producer's chunk fetched by a
    /// cancelled call is lost.
    pub async fn chunk(
        &self,
        addr: SocketAddr,
        id: StreamId,
        index: u64,
    ) -> Result<Chunk, PullError> {
        let body = match self
            .ask(addr, &self.routes.chunk, codec::encode_id(id, Some(index)))
            .await?
        {
            Ok(body) => body,
            Err(r) => return Err(PullError::refused(addr, id, index, None, r)),
        };
        let (head, data) = codec::decode_chunk(body).map_err(|m| PullError::malformed(addr, m))?;
        let actual = crc32c::crc32c(&data);
        if actual != head.crc32c {
            return Err(PullError::Checksum {
                id,
                index,
                expected: head.crc32c,
                actual,
            });
        }
        Ok(Chunk {
            index,
            data,
            last: head.last,
            crc32c: actual,
        })
    }

    /// Releases stream `id` on `addr` before its end.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the stream is released or left to the idle timeout.
    pub async fn close(&self, addr: SocketAddr, id: StreamId) -> Result<(), PullError> {
        match self
            .ask(addr, &self.routes.close, codec::encode_id(id, None))
            .await?
        {
            Ok(_) => Ok(()),
            Err(r) => Err(PullError::refused(addr, id, 0, None, r)),
        }
    }

    /// Reads the stream `info` describes, from `opts.offset`, as a `futures::Stream` of byte
    /// chunks in order, with at most `opts.window` chunk fetches in flight.
    ///
    /// # Errors
    ///
    /// [`PullError::NotSeekable`] for an offset other than 0 into a producer's stream.
    pub fn read(
        &self,
        addr: SocketAddr,
        info: StreamInfo,
        opts: ReadOptions,
    ) -> Result<StreamRead, PullError> {
        StreamRead::new(self.clone(), addr, info, opts)
    }

    /// Opens `name` on `addr` and reads it whole into memory, checking each chunk, the length
    /// and the whole CRC32C.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the stream is released with the connection or after the idle timeout.
    pub async fn fetch_all(&self, addr: SocketAddr, name: &str) -> Result<Bytes, PullError> {
        use futures::TryStreamExt;
        let info = self.open(addr, name).await?;
        let chunks: Vec<Bytes> = self
            .read(addr, info, ReadOptions::default())?
            .try_collect()
            .await?;
        Ok(match chunks.len() {
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        })
    }

    /// Closes the client's connections and waits for its tasks.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the connections are closed either way.
    pub async fn shutdown(&self) {
        self.client.shutdown().await;
    }
}
