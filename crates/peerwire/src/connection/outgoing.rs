//! The entries of a connection's write queue: what its handles ask the writer to send.

use std::sync::Arc;

use peerwire_wire::{Frame, Response, StreamData};
use tokio::sync::OwnedSemaphorePermit;

impl Outgoing {
    /// Encoded bytes of the entry (a file region counts its length).
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Queued(frame) | Self::Call(frame) | Self::Reply(frame, _) => frame.encoded_len(),
            Self::CallFile(head, region) => head.payload.len() + region.len,
            Self::ReplyFile(head, region, _) => head.payload.len() + region.len,
            Self::ReplyTail(head, tail, _) => head.payload.len() + tail.len(),
            Self::Shutdown => 0,
        }
    }
}

/// An entry of the write queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A one-way or control frame, counted in the connection's `queued` counter.
    Queued(Frame),
    /// A request; bounded by the connection's in-flight call limit.
    Call(Frame),
    /// A reply; the permit is the in-flight slot of the call it answers, released once the
    /// reply is handed to the transport.
    Reply(Frame, OwnedSemaphorePermit),
    /// A data-stream packet whose payload is a file region: the head (its `payload` is
    /// ignored) is written, then the region is sent with `sendfile` where the transport can.
    /// Bounded by the connection's in-flight call limit.
    CallFile(StreamData, FileRegion),
    /// A reply whose payload is the head's payload followed by a file region, sent with
    /// `sendfile` where the transport can; the permit as for [`Outgoing::Reply`]. Always one
    /// frame (never in parts).
    ReplyFile(Response, FileRegion, OwnedSemaphorePermit),
    /// A reply whose payload is the head's payload followed by a second buffer, written
    /// without joining them (a large tail goes in the vectored write as it is). One frame.
    ReplyTail(Response, bytes::Bytes, OwnedSemaphorePermit),
    /// Flush, close the write side and stop.
    Shutdown,
}

/// A range of a file to send as a packet payload.
#[derive(Debug, Clone)]
pub struct FileRegion {
    /// The file.
    pub file: Arc<std::fs::File>,
    /// Where the bytes start in it.
    pub offset: u64,
    /// How many bytes.
    pub len: usize,
}
