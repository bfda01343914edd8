//! Writing a blob into an open data stream: the body is cut into packets of the stream's
//! packet size and hashed on the way; the close proves every server on the route holds every
//! byte. Used by a node for `PUT /blob/{key}` and by the native client for `put --file`.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use peerwire_datastream::{DataStreamConfig, DataStreamError, DataStreamOutput, StreamFlags};
use sha2::{Digest, Sha256};

use crate::command::{BlobRef, hex};

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    /// Reading the body failed.
    #[error("reading the body: {0}")]
    Body(String),
    /// The body is over the limit.
    #[error("blob of at least {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: u64, max: u64 },
    /// The stream failed.
    #[error(transparent)]
    Stream(#[from] DataStreamError),
    /// The servers hold another length than was sent.
    #[error("the replicas hold {held} bytes of {sent}")]
    Short { held: u64, sent: u64 },
}

/// Sends `body` (at most `max` bytes) into `out`, closes it, and returns the reference to
/// commit; `route` names the servers on the stream's route. `progress` is called with the
/// bytes sent after each packet.
///
/// # Cancel safety
///
/// Not cancel safe: a stream dropped half-way is aborted by the servers' idle timeout.
pub(crate) async fn upload<E: std::fmt::Display>(
    mut out: DataStreamOutput,
    mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
    max: u64,
    route: Vec<u64>,
    mut progress: impl FnMut(u64),
) -> Result<BlobRef, UploadError> {
    let stream = out.stream();
    let packet = DataStreamConfig::default().packet_size;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = BytesMut::with_capacity(packet);
    let mut ended = false;
    while !ended {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > max {
                    return Err(UploadError::TooLarge { len: size, max });
                }
                hasher.update(&chunk);
                buf.extend_from_slice(&chunk);
            }
            None => ended = true,
        }
        while buf.len() >= packet || (ended && !buf.is_empty()) {
            let data = buf.split_to(buf.len().min(packet)).freeze();
            // Acknowledgements come in order: the close's covers this packet.
            drop(out.write(data, StreamFlags::NONE).await?);
            progress(size - buf.len() as u64);
        }
    }
    let reply = out.close().await?;
    if reply.bytes != size {
        return Err(UploadError::Short {
            held: reply.bytes,
            sent: size,
        });
    }
    Ok(BlobRef {
        sha256: hex(&hasher.finalize()),
        size,
        stream: (stream.client_id, stream.stream_id),
        replicas: route,
    })
}
