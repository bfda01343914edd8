//! The stream operations' payloads on the `svc.stream` route (pure).
//!
//! Every payload starts with an op byte:
//!
//! | op | code | after the op byte | reply |
//! |---|---:|---|---|
//! | Open | 1 | a service envelope (protocol, version, method, engine, ids) whose body is the first request (server streaming) or empty | u64 stream id |
//! | Push | 2 | u64 stream id, u64 batch sequence (0, 1, …), items | empty, once the items are in the method's input |
//! | End | 3 | u64 stream id, u64 batches pushed | empty |
//! | Next | 4 | u64 stream id, u32 most bytes wanted | a batch, below |
//! | Close | 5 | u64 stream id | empty (sent one-way) |
//!
//! Items: each a u32 length and that many bytes (the engine's encoding). A batch (the reply to
//! Next): u64 sequence, u8 flags (1 = the stream ended after these items, 2 = it failed), u32
//! item count, the items, and with flag 2 a u16 status code, a u16 length and the error text.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use peerwire_wire::Status;

/// Open a stream.
pub(crate) const OPEN: u8 = 1;
/// Push a batch of input items.
pub(crate) const PUSH: u8 = 2;
/// End the input.
pub(crate) const END: u8 = 3;
/// Ask for the next batch of output items.
pub(crate) const NEXT: u8 = 4;
/// Drop the stream.
pub(crate) const CLOSE: u8 = 5;

/// Batch flag: the stream ended after these items.
pub(crate) const ENDED: u8 = 1;
/// Batch flag: the stream failed after these items.
pub(crate) const FAILED: u8 = 2;

/// Why a stream payload does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad stream payload: {0}")]
pub(crate) struct BadPayload(pub(crate) &'static str);

/// A decoded op (Open's envelope is decoded by the service envelope's code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Open(Bytes),
    Push {
        stream: u64,
        seq: u64,
        items: Vec<Bytes>,
    },
    End {
        stream: u64,
        batches: u64,
    },
    Next {
        stream: u64,
        max_bytes: u32,
    },
    Close {
        stream: u64,
    },
}

fn need(b: &Bytes, n: usize, what: &'static str) -> Result<(), BadPayload> {
    if b.remaining() < n {
        Err(BadPayload(what))
    } else {
        Ok(())
    }
}

/// Reads items (u32 length + bytes each) until `b` is empty; slices, no copies.
pub(crate) fn read_items(b: &mut Bytes, count: Option<u32>) -> Result<Vec<Bytes>, BadPayload> {
    let mut items = Vec::with_capacity(count.map_or(8, |c| c.min(1024) as usize));
    loop {
        if count.is_some_and(|c| items.len() as u32 == c) || (count.is_none() && b.is_empty()) {
            return Ok(items);
        }
        need(b, 4, "item length")?;
        let len = b.get_u32() as usize;
        need(b, len, "item")?;
        items.push(b.split_to(len));
    }
}

/// Decodes a `svc.stream` payload.
pub(crate) fn decode(mut b: Bytes) -> Result<Op, BadPayload> {
    need(&b, 1, "op")?;
    let op = b.get_u8();
    Ok(match op {
        OPEN => Op::Open(b),
        PUSH => {
            need(&b, 16, "push header")?;
            let stream = b.get_u64();
            let seq = b.get_u64();
            Op::Push {
                stream,
                seq,
                items: read_items(&mut b, None)?,
            }
        }
        END => {
            need(&b, 16, "end")?;
            Op::End {
                stream: b.get_u64(),
                batches: b.get_u64(),
            }
        }
        NEXT => {
            need(&b, 12, "next")?;
            Op::Next {
                stream: b.get_u64(),
                max_bytes: b.get_u32(),
            }
        }
        CLOSE => {
            need(&b, 8, "close")?;
            Op::Close {
                stream: b.get_u64(),
            }
        }
        _ => return Err(BadPayload("unknown op")),
    })
}

/// Writes one item.
pub(crate) fn put_item(out: &mut BytesMut, item: &[u8]) {
    out.put_u32(item.len() as u32);
    out.put_slice(item);
}

/// A push payload's header (items follow).
pub(crate) fn push_header(stream: u64, seq: u64, out: &mut BytesMut) {
    out.put_u8(PUSH);
    out.put_u64(stream);
    out.put_u64(seq);
}

/// An End payload.
pub(crate) fn end(stream: u64, batches: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(17);
    out.put_u8(END);
    out.put_u64(stream);
    out.put_u64(batches);
    out.freeze()
}

/// A Next payload.
pub(crate) fn next(stream: u64, max_bytes: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(13);
    out.put_u8(NEXT);
    out.put_u64(stream);
    out.put_u32(max_bytes);
    out.freeze()
}

/// A Close payload.
pub(crate) fn close(stream: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(9);
    out.put_u8(CLOSE);
    out.put_u64(stream);
    out.freeze()
}

/// A batch of output items as the reply to Next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) seq: u64,
    pub(crate) items: Vec<Bytes>,
    /// The stream ended after these items.
    pub(crate) ended: bool,
    /// It failed after these items, with this status and message.
    pub(crate) failure: Option<(Status, String)>,
}

impl Batch {
    /// Bytes of a batch's header (sequence, flags, count).
    pub(crate) const HEAD: usize = 13;

    /// Fills in the header of a batch laid out as [`Batch::HEAD`] blank bytes and then its
    /// items, as an ordinary batch (not the last).
    pub(crate) fn stamp(batch: &mut [u8], seq: u64, count: u32) {
        batch[0..8].copy_from_slice(&seq.to_be_bytes());
        batch[8] = 0;
        batch[9..13].copy_from_slice(&count.to_be_bytes());
    }

    /// Encodes the batch (items already encoded into `items_buf` with their count).
    pub(crate) fn encode(
        seq: u64,
        count: u32,
        items_buf: &[u8],
        ended: bool,
        failure: Option<&(Status, String)>,
    ) -> Bytes {
        let mut out = BytesMut::with_capacity(13 + items_buf.len() + 64);
        out.put_u64(seq);
        let mut flags = 0;
        if ended {
            flags |= ENDED;
        }
        if failure.is_some() {
            flags |= FAILED;
        }
        out.put_u8(flags);
        out.put_u32(count);
        out.put_slice(items_buf);
        if let Some((status, message)) = failure {
            out.put_u16(status.to_wire());
            let text = &message.as_bytes()[..message.len().min(4096)];
            out.put_u16(text.len() as u16);
            out.put_slice(text);
        }
        out.freeze()
    }

    /// Decodes a Next reply.
    pub(crate) fn decode(mut b: Bytes) -> Result<Self, BadPayload> {
        need(&b, 13, "batch header")?;
        let seq = b.get_u64();
        let flags = b.get_u8();
        let count = b.get_u32();
        let items = read_items(&mut b, Some(count))?;
        let failure = if flags & FAILED != 0 {
            need(&b, 4, "failure")?;
            let status = Status::from_wire(b.get_u16());
            let len = b.get_u16() as usize;
            need(&b, len, "failure message")?;
            Some((
                status,
                String::from_utf8_lossy(&b.split_to(len)).into_owned(),
            ))
        } else {
            None
        };
        Ok(Self {
            seq,
            items,
            ended: flags & (ENDED | FAILED) != 0,
            failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let mut push = BytesMut::new();
        push_header(7, 2, &mut push);
        put_item(&mut push, b"ab");
        put_item(&mut push, b"");
        put_item(&mut push, b"cde");
        assert_eq!(
            decode(push.freeze()).unwrap(),
            Op::Push {
                stream: 7,
                seq: 2,
                items: vec![
                    Bytes::from_static(b"ab"),
                    Bytes::new(),
                    Bytes::from_static(b"cde")
                ]
            }
        );
        assert_eq!(
            decode(end(7, 3)).unwrap(),
            Op::End {
                stream: 7,
                batches: 3
            }
        );
        assert_eq!(
            decode(next(7, 65536)).unwrap(),
            Op::Next {
                stream: 7,
                max_bytes: 65536
            }
        );
        assert_eq!(decode(close(7)).unwrap(), Op::Close { stream: 7 });
    }

    #[test]
    fn batches_round_trip_with_and_without_a_failure() {
        let mut items = BytesMut::new();
        put_item(&mut items, b"x");
        put_item(&mut items, b"yz");
        let b = Batch::decode(Batch::encode(4, 2, &items, false, None)).unwrap();
        assert_eq!(b.seq, 4);
        assert_eq!(
            b.items,
            vec![Bytes::from_static(b"x"), Bytes::from_static(b"yz")]
        );
        assert!(!b.ended && b.failure.is_none());
        let failed = Batch::decode(Batch::encode(
            5,
            0,
            &[],
            false,
            Some(&(Status::HandlerFailed, "disk gone".into())),
        ))
        .unwrap();
        assert!(failed.ended);
        assert_eq!(
            failed.failure,
            Some((Status::HandlerFailed, "disk gone".into()))
        );
    }

    #[test]
    fn a_stamped_batch_decodes_as_an_encoded_one() {
        let mut b = BytesMut::new();
        b.resize(Batch::HEAD, 0);
        put_item(&mut b, b"one");
        put_item(&mut b, b"two");
        Batch::stamp(&mut b, 9, 2);
        let d = Batch::decode(b.freeze()).unwrap();
        assert_eq!(d.seq, 9);
        assert_eq!(
            d.items,
            vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]
        );
        assert!(!d.ended && d.failure.is_none());
    }

    #[test]
    fn truncated_payloads_are_refused() {
        assert!(decode(Bytes::new()).is_err());
        assert!(decode(Bytes::from_static(&[PUSH, 0, 0])).is_err());
        let mut push = BytesMut::new();
        push_header(1, 0, &mut push);
        push.put_u32(10);
        push.put_slice(b"abc");
        assert_eq!(decode(push.freeze()), Err(BadPayload("item")));
        assert!(decode(Bytes::from_static(&[9])).is_err());
        assert!(Batch::decode(Bytes::from_static(&[0; 5])).is_err());
    }
}
