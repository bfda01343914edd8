//! One write's worth of frames: small frames copied into one buffer, large payloads and
//! message parts kept in their own buffers and written with them in vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use peerwire_wire::{Frame, StreamData};
use tokio::io::AsyncWriteExt;

use crate::transport::BoxWrite;

/// Payloads at least this large are written from their own buffer (vectored IO) instead of
/// being copied into the batch buffer: 16 KiB, where a copy starts to cost more than an extra
/// iovec entry.
const COPY_THRESHOLD: usize = 16 * 1024;

/// At most this many buffers per `writev` call (well below Linux's `IOV_MAX` of 1024).
const MAX_IOVECS: usize = 64;

/// Bytes of one batch: a copy buffer for small frames, separate buffers for large payloads.
#[derive(Debug, Default)]
pub(super) struct Batch {
    staging: BytesMut,
    parts: VecDeque<Bytes>,
    pub(super) len: usize,
}

impl Batch {
    /// Adds a whole frame.
    pub(super) fn push(&mut self, frame: &Frame) {
        let before = self.staging.len();
        let payload = frame.encode_head(&mut self.staging);
        self.len += self.staging.len() - before;
        match payload {
            Some(p) if p.len() >= COPY_THRESHOLD => self.push_payload(p.clone()),
            Some(p) => {
                self.len += p.len();
                self.staging.extend_from_slice(p);
            }
            None => {}
        }
    }

    /// Adds a frame head encoded by `encode` into the copy buffer, then the payload bytes
    /// that follow it (a message's part, say).
    pub(super) fn push_encoded(
        &mut self,
        encode: impl FnOnce(&mut BytesMut),
        payload: Option<Bytes>,
    ) {
        let before = self.staging.len();
        encode(&mut self.staging);
        self.len += self.staging.len() - before;
        if let Some(p) = payload {
            self.push_payload(p);
        }
    }

    /// Adds payload bytes: copied when small, else kept in their own buffer.
    fn push_payload(&mut self, p: Bytes) {
        self.len += p.len();
        if p.len() >= COPY_THRESHOLD {
            let head = self.staging.split().freeze();
            if !head.is_empty() {
                self.parts.push_back(head);
            }
            self.parts.push_back(p);
        } else {
            self.staging.extend_from_slice(&p);
        }
    }

    pub(super) fn push_response_head(&mut self, head: &peerwire_wire::Response, trailing: usize) {
        let before = self.staging.len();
        head.encode_head_with_trailing(trailing, &mut self.staging);
        self.len += self.staging.len() - before;
    }

    pub(super) fn push_stream_head(&mut self, head: &StreamData, payload_len: usize) {
        let before = self.staging.len();
        head.encode_head_with_len(payload_len, &mut self.staging);
        self.len += self.staging.len() - before;
    }

    pub(super) async fn write_to(&mut self, io: &mut BoxWrite) -> io::Result<()> {
        if self.parts.is_empty() {
            io.write_all(&self.staging).await?;
            self.staging.clear();
        } else {
            if !self.staging.is_empty() {
                self.parts.push_back(self.staging.split().freeze());
            }
            write_parts(io, &mut self.parts).await?;
        }
        self.len = 0;
        Ok(())
    }
}

async fn write_parts(io: &mut BoxWrite, parts: &mut VecDeque<Bytes>) -> io::Result<()> {
    while !parts.is_empty() {
        let slices: Vec<IoSlice<'_>> = parts
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let front = parts.front_mut().expect("wrote more than was queued");
            if n >= front.len() {
                n -= front.len();
                parts.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}
