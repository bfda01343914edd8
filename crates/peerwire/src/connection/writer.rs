//! The write loop: drains the bounded write queue, coalesces frames into few vectored
//! writes, and flushes when the queue is empty or the batch limit is reached (the idea of
//! etcd's `streamWriter`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::batch::Batch;
use super::outgoing::{FileRegion, Outgoing};
use super::parts::{Done, Parts};
use crate::transport::BoxWrite;

/// Frames taken from the queue per batch at most.
const MAX_BATCH_FRAMES: usize = 512;

/// Outgoing calls in flight on a connection above which the writer, woken by one frame, yields
/// once so the other ready callers can queue theirs into the same write.
///
/// With many calls in flight both sides are busy and one write per frame costs more CPU than
/// it saves latency: at 64 calls in flight the yield carries ~1.3x the calls of writing at once
/// (`peerwire-bench rpc`, 64 B and 1 KiB). With a few, the peer is idle waiting for the first
/// reply, and holding it back for the rest turns the pipeline into lock-step batches: at 16 in
/// flight writing at once carries ~1.35x the calls of the yield. Between them (32) the two are
/// even. See BENCHMARKS.md, "writer batching".
const BATCH_WAIT_MIN_INFLIGHT: usize = 24;

/// A frame this large (encoded) makes the writer wait for the other frames ready to go whenever
/// more than one call is in flight, replies included: at this size the kernel's work per write
/// dominates, and one `writev` of several frames costs less than several writes. Measured at 16
/// in flight (`peerwire-bench rpc`): waiting carries 1.6x the calls at 64 KiB, the same at 1 MiB,
/// and 0.78x at 16 KiB (where the wait was tried with an 8 KiB threshold), so the line is
/// between 16 and 64 KiB.
const LARGE_FRAME: usize = 32 * 1024;

/// The connection's slots for its outgoing calls, read by the writer to decide whether to wait
/// for more frames before writing.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) call_slots: Arc<Semaphore>,
    pub(crate) serve_slots: Arc<Semaphore>,
    pub(crate) max_inflight: usize,
}

impl Load {
    /// This side's calls in flight on the connection now. Calls it serves do not count here:
    /// small replies go out as soon as they are ready, because the peer is waiting for them
    /// (holding them back for more made `peerwire-bench rpc` slower at every in-flight level
    /// tried); large ones wait ([`LARGE_FRAME`]).
    fn calls_in_flight(&self) -> usize {
        self.max_inflight
            .saturating_sub(self.call_slots.available_permits())
    }

    /// Calls in flight in both directions.
    fn all_in_flight(&self) -> usize {
        self.calls_in_flight()
            + self
                .max_inflight
                .saturating_sub(self.serve_slots.available_permits())
    }
}

/// Whether the connection carries enough outgoing calls that waiting for more frames before a
/// write pays: its recent peak of calls in flight is above [`BATCH_WAIT_MIN_INFLIGHT`].
///
/// The peak, not the count at the moment the writer wakes: a client that has just read a batch
/// of replies has released their slots, and its callers are about to take them again with the
/// very frames worth waiting for. The peak decays by an eighth per wake-up, so a connection
/// that quiets down stops waiting after a few writes.
#[derive(Debug, Default)]
struct Concurrency {
    peak: usize,
}

impl Concurrency {
    /// Records the calls in flight at a wake-up; whether to wait for more frames.
    fn observe(&mut self, in_flight: usize) -> bool {
        self.peak = in_flight.max(self.peak - self.peak / 8);
        self.peak > BATCH_WAIT_MIN_INFLIGHT
    }
}

/// Sends a file region: `sendfile` where the transport supports it, else reads and writes it
/// in 256 KiB pieces (a blocking read of the page cache on this task).
async fn send_region(io: &mut BoxWrite, region: &FileRegion) -> io::Result<()> {
    let mut done = 0usize;
    while done < region.len {
        let offset = region.offset + done as u64;
        let left = region.len - done;
        let sent = std::future::poll_fn(|cx| {
            match std::pin::Pin::new(io.as_mut()).poll_send_file(cx, &region.file, offset, left) {
                Some(poll) => poll.map(|r| r.map(Some)),
                None => std::task::Poll::Ready(Ok(None)),
            }
        })
        .await?;
        match sent {
            Some(0) => return Err(short_file()),
            Some(n) => {
                crate::transport::record_sendfile(n);
                done += n;
            }
            None => return copy_region(io, region, done).await,
        }
    }
    Ok(())
}

fn short_file() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file ended before the packet's region (was it truncated while being sent?)",
    )
}

#[cfg(unix)]
async fn copy_region(io: &mut BoxWrite, region: &FileRegion, mut done: usize) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (region.len - done).min(256 * 1024)];
    while done < region.len {
        let want = (region.len - done).min(buf.len());
        let n = region
            .file
            .read_at(&mut buf[..want], region.offset + done as u64)?;
        if n == 0 {
            return Err(short_file());
        }
        io.write_all(&buf[..n]).await?;
        crate::transport::record_copied(n);
        done += n;
    }
    Ok(())
}

#[cfg(not(unix))]
async fn copy_region(_io: &mut BoxWrite, _region: &FileRegion, _done: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "file packets need a unix platform",
    ))
}

/// Wakes a producer waiting for room in the write queue ([`super::Conn::send_oneway_wait`]).
/// The writer checks `wanted` once per write, so the wake costs nothing when nobody waits.
#[derive(Debug, Default)]
pub(crate) struct Room {
    pub(crate) wanted: std::sync::atomic::AtomicBool,
    pub(crate) notify: tokio::sync::Notify,
}

impl Room {
    fn wake(&self) {
        if self.wanted.load(Ordering::SeqCst) && self.wanted.swap(false, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }
}

/// What the write loop shares with the rest of the connection.
#[derive(Debug)]
pub(crate) struct WriterContext {
    /// One-way and control frames queued (decremented as they are written).
    pub(crate) queued: Arc<AtomicUsize>,
    /// Their encoded bytes (decremented as they are written).
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    /// Producers waiting for `queued` to fall.
    pub(crate) room: Arc<Room>,
    /// In-flight calls, to decide whether to wait for more frames.
    pub(crate) load: Load,
    pub(crate) activity: Arc<Activity>,
    /// Cancelled when the loop stops.
    pub(crate) closing: CancellationToken,
    /// Stops the loop at once.
    pub(crate) abort: CancellationToken,
    /// Bytes gathered into one write at most.
    pub(crate) max_batch_bytes: usize,
    /// Payload bytes per part of a message sent in parts; `None` below protocol version 3.
    pub(crate) message_part: Option<usize>,
    /// This connection's lane's byte and frame counters.
    pub(crate) counters: super::lane_metrics::LaneCounters,
}

/// Runs the write loop until the queue closes, a [`Outgoing::Shutdown`] is written, `abort`
/// fires, or the transport fails. Cancels `closing` when it stops.
pub(crate) async fn run(
    mut io: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    ctx: WriterContext,
) -> io::Result<()> {
    let result = write_loop(&mut io, &mut rx, &ctx).await;
    ctx.closing.cancel();
    result
}

async fn write_loop(
    io: &mut BoxWrite,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    ctx: &WriterContext,
) -> io::Result<()> {
    let WriterContext {
        queued,
        queued_bytes,
        room,
        load,
        activity,
        abort,
        max_batch_bytes,
        message_part,
        counters,
        ..
    } = ctx;
    let max_batch_bytes = *max_batch_bytes;
    // Grown by `recv_many` as batches need it: a connection that carries a call now and then
    // never holds room for MAX_BATCH_FRAMES queued frames.
    let mut items = Vec::new();
    let mut batch = Batch::default();
    let mut concurrency = Concurrency::default();
    let mut parts = Parts::new(*message_part);
    let mut done = Vec::new();
    // The queue closed, or a shutdown was taken, while messages in parts were still going.
    let mut closed = false;
    let mut shutdown = false;
    // Built once, not per batch (each build registers a waiter on the token).
    let aborted = abort.cancelled();
    tokio::pin!(aborted);
    loop {
        if parts.busy() || closed || shutdown {
            // Messages in parts are going: take what is ready, without waiting for more.
            if abort.is_cancelled() {
                return Ok(());
            }
            while !closed && !shutdown && items.len() < MAX_BATCH_FRAMES {
                match rx.try_recv() {
                    Ok(item) => items.push(item),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
        } else {
            let n = tokio::select! {
                biased;
                n = rx.recv_many(&mut items, MAX_BATCH_FRAMES) => n,
                _ = &mut aborted => return Ok(()),
            };
            if n == 0 {
                io.flush().await?;
                return Ok(());
            }
            let many_calls = concurrency.observe(load.calls_in_flight());
            let large = items.first().is_some_and(|item| item.len() >= LARGE_FRAME)
                && load.all_in_flight() > 1;
            if (many_calls || large) && n < MAX_BATCH_FRAMES {
                // With many calls in flight, the task that woke us (tokio runs it first, from
                // the LIFO slot) is the first of several producers ready to run: yield once so
                // they queue their frames and one write carries them all. With few there is
                // little to wait for, and the peer is waiting for this frame
                // (BATCH_WAIT_MIN_INFLIGHT).
                tokio::task::yield_now().await;
                while items.len() < MAX_BATCH_FRAMES {
                    match rx.try_recv() {
                        Ok(item) => items.push(item),
                        Err(_) => break,
                    }
                }
            }
        }
        let mut frames = 0u64;
        let mut bytes = 0u64;
        for item in items.drain(..) {
            frames += 1;
            let Some(item) = parts.admit(item, &mut batch) else {
                continue;
            };
            match item {
                Outgoing::Queued(frame) => {
                    batch.push(&frame);
                    queued.fetch_sub(1, Ordering::AcqRel);
                    queued_bytes.fetch_sub(frame.encoded_len(), Ordering::AcqRel);
                }
                Outgoing::Call(frame) => batch.push(&frame),
                Outgoing::Reply(frame, _slot) => batch.push(&frame),
                Outgoing::CallFile(head, region) => {
                    batch.push_stream_head(&head, region.len);
                    bytes += batch.len as u64;
                    batch.write_to(io).await?;
                    send_region(io, &region).await?;
                    bytes += region.len as u64;
                }
                Outgoing::ReplyTail(head, tail, _slot) => {
                    let trailing = tail.len();
                    batch.push_encoded(
                        |dst| head.encode_head_with_trailing(trailing, dst),
                        Some(tail),
                    );
                }
                Outgoing::ReplyFile(head, region, _slot) => {
                    batch.push_response_head(&head, region.len);
                    bytes += batch.len as u64;
                    batch.write_to(io).await?;
                    send_region(io, &region).await?;
                    bytes += region.len as u64;
                }
                Outgoing::Shutdown => shutdown = true,
            }
            if batch.len >= max_batch_bytes {
                bytes += batch.len as u64;
                batch.write_to(io).await?;
            }
        }
        // One part of each message in parts rides with every write.
        parts.pump(&mut batch, &mut done);
        bytes += batch.len as u64;
        batch.write_to(io).await?;
        for entry in done.drain(..) {
            if let Done::Queued { len } = entry {
                queued.fetch_sub(1, Ordering::AcqRel);
                queued_bytes.fetch_sub(len, Ordering::AcqRel);
            }
        }
        let finished = (shutdown || closed) && !parts.busy();
        if finished || rx.is_empty() {
            io.flush().await?;
        }
        activity.touch_write();
        room.wake();
        counters.bytes_written.increment(bytes);
        counters.frames_written.increment(frames);
        if finished {
            if shutdown {
                io.shutdown().await?;
            }
            return Ok(());
        }
        if parts.busy() {
            // Let the tasks that produce small frames run between parts.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_more_frames_while_the_recent_peak_is_high() {
        let mut c = Concurrency::default();
        // A few calls in flight: write at once.
        assert!(!c.observe(1));
        assert!(!c.observe(BATCH_WAIT_MIN_INFLIGHT));
        // Many: wait, and keep waiting while the count dips as a batch of replies lands.
        assert!(c.observe(64));
        assert!(c.observe(30));
        assert!(c.observe(10));
        // Quiet for a while: the peak decays and writes go out at once again.
        let waits = (0..20).filter(|_| c.observe(1)).count();
        assert!(waits < 10, "{waits}");
        assert!(!c.observe(1));
    }
    use bytes::{Bytes, BytesMut};
    use peerwire_wire::{Frame, FrameDecoder, Limits, OneWay, Request, Response, StreamData};
    use tokio::io::AsyncReadExt;

    fn test_context(closing: CancellationToken) -> WriterContext {
        WriterContext {
            queued: Arc::new(AtomicUsize::new(0)),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            room: Arc::default(),
            load: Load {
                call_slots: Arc::new(Semaphore::new(1)),
                serve_slots: Arc::new(Semaphore::new(1)),
                max_inflight: 1,
            },
            activity: Arc::new(Activity::new()),
            closing,
            abort: CancellationToken::new(),
            max_batch_bytes: 64 * 1024,
            message_part: None,
            counters: super::super::lane_metrics::LaneCounters::register(peerwire_wire::Lane::Rpc),
        }
    }

    #[tokio::test]
    async fn coalesces_small_and_large_frames_in_order() {
        let (client, mut server) = tokio::io::duplex(1 << 22);
        let (tx, rx) = mpsc::unbounded_channel();
        let frames: Vec<Frame> = [10usize, 20_000, 5, 100_000, 0]
            .iter()
            .enumerate()
            .map(|(i, len)| {
                Frame::Response(Response {
                    id: i as u64 + 1,
                    payload: Bytes::from(vec![i as u8; *len]),
                })
            })
            .collect();
        for f in &frames {
            tx.send(Outgoing::Call(f.clone())).unwrap();
        }
        tx.send(Outgoing::Shutdown).unwrap();
        let io: BoxWrite = Box::new(client);
        let closing = CancellationToken::new();
        run(io, rx, test_context(closing.clone())).await.unwrap();
        assert!(closing.is_cancelled());
        let mut bytes = Vec::new();
        server.read_to_end(&mut bytes).await.unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Limits::default());
        for f in &frames {
            assert_eq!(dec.decode(&mut buf).unwrap().as_ref(), Some(f));
        }
        assert!(buf.is_empty());
    }

    /// The head of a file packet (its payload comes from the file region).
    fn file_packet_head() -> StreamData {
        StreamData {
            id: 2,
            stream_id: 5,
            flags: peerwire_wire::StreamFlags::CLOSE,
            offset: 0,
            checksum: 9,
            payload: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn file_packets_follow_their_head_in_queue_order() {
        // A duplex pipe cannot sendfile: this is the copying fallback.
        let path = std::env::temp_dir().join(format!("peerwire-writer-{}.bin", std::process::id()));
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let (client, mut server) = tokio::io::duplex(1 << 22);
        let (tx, rx) = mpsc::unbounded_channel();
        let before = Frame::Response(Response {
            id: 1,
            payload: Bytes::from_static(b"before"),
        });
        let head = file_packet_head();
        let after = Frame::Response(Response {
            id: 3,
            payload: Bytes::from_static(b"after"),
        });
        tx.send(Outgoing::Call(before.clone())).unwrap();
        tx.send(Outgoing::CallFile(
            head.clone(),
            FileRegion {
                file,
                offset: 1000,
                len: 250_000,
            },
        ))
        .unwrap();
        tx.send(Outgoing::Call(after.clone())).unwrap();
        tx.send(Outgoing::Shutdown).unwrap();
        let totals = crate::transport::file_send_totals();
        run(Box::new(client), rx, test_context(CancellationToken::new()))
            .await
            .unwrap();
        // Counted as copied (other tests may add to the totals meanwhile, never subtract).
        assert!(crate::transport::file_send_totals().copied - totals.copied >= 250_000);
        std::fs::remove_file(&path).unwrap();
        let mut bytes = Vec::new();
        server.read_to_end(&mut bytes).await.unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Limits::default());
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(before));
        let expected = Frame::StreamData(StreamData {
            payload: Bytes::copy_from_slice(&content[1000..251_000]),
            ..head
        });
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(expected));
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(after));
        assert!(buf.is_empty());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn file_packets_over_tcp_go_by_sendfile_not_by_copy() {
        let path =
            std::env::temp_dir().join(format!("peerwire-sendfile-{}.bin", std::process::id()));
        let content: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut server, _) = accepted.unwrap();
        // The write half exactly as the TCP transport hands it to the writer.
        let (_read, write) = client.unwrap().into_split();
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            server.read_to_end(&mut bytes).await.unwrap();
            bytes
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let head = file_packet_head();
        tx.send(Outgoing::CallFile(
            head.clone(),
            FileRegion {
                file,
                offset: 7,
                len: 390_000,
            },
        ))
        .unwrap();
        tx.send(Outgoing::Shutdown).unwrap();
        let totals = crate::transport::file_send_totals();
        run(Box::new(write), rx, test_context(CancellationToken::new()))
            .await
            .unwrap();
        let after = crate::transport::file_send_totals();
        // Fails if the TCP path silently fell back to copying through a buffer.
        assert!(
            after.sendfile - totals.sendfile >= 390_000,
            "{totals:?} -> {after:?}"
        );
        std::fs::remove_file(&path).unwrap();
        let bytes = reader.await.unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Limits::default());
        let expected = Frame::StreamData(StreamData {
            payload: Bytes::copy_from_slice(&content[7..390_007]),
            ..head
        });
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(expected));
        assert!(buf.is_empty());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn file_replies_over_tcp_go_by_sendfile_after_their_prefix() {
        let path =
            std::env::temp_dir().join(format!("peerwire-reply-file-{}.bin", std::process::id()));
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut server, _) = accepted.unwrap();
        let (_read, write) = client.unwrap().into_split();
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            server.read_to_end(&mut bytes).await.unwrap();
            bytes
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(1));
        let prefix = Bytes::from_static(b"chunk head");
        tx.send(Outgoing::ReplyFile(
            Response {
                id: 4,
                payload: prefix.clone(),
            },
            FileRegion {
                file,
                offset: 100,
                len: 200_000,
            },
            slots.clone().try_acquire_owned().unwrap(),
        ))
        .unwrap();
        tx.send(Outgoing::Call(response(5, 10))).unwrap();
        tx.send(Outgoing::Shutdown).unwrap();
        let totals = crate::transport::file_send_totals();
        run(Box::new(write), rx, test_context(CancellationToken::new()))
            .await
            .unwrap();
        let after = crate::transport::file_send_totals();
        // Fails if the TCP path silently fell back to copying through a buffer.
        assert!(
            after.sendfile - totals.sendfile >= 200_000,
            "{totals:?} -> {after:?}"
        );
        assert_eq!(slots.available_permits(), 1, "the call's slot was released");
        std::fs::remove_file(&path).unwrap();
        let bytes = reader.await.unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Limits::default());
        let mut payload = prefix.to_vec();
        payload.extend_from_slice(&content[100..200_100]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Frame::Response(Response {
                id: 4,
                payload: Bytes::from(payload),
            }))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(response(5, 10)));
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn a_reply_with_a_head_arrives_as_one_payload() {
        let (client, mut server) = tokio::io::duplex(1 << 22);
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(2));
        let tail = Bytes::from(vec![7u8; 100_000]);
        let small_tail = Bytes::from_static(b"tiny");
        for (id, t) in [(6, tail.clone()), (7, small_tail.clone())] {
            tx.send(Outgoing::ReplyTail(
                Response {
                    id,
                    payload: Bytes::from_static(b"head"),
                },
                t,
                slots.clone().try_acquire_owned().unwrap(),
            ))
            .unwrap();
        }
        tx.send(Outgoing::Shutdown).unwrap();
        run(Box::new(client), rx, test_context(CancellationToken::new()))
            .await
            .unwrap();
        assert_eq!(slots.available_permits(), 2, "both calls' slots released");
        let mut bytes = Vec::new();
        server.read_to_end(&mut bytes).await.unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Limits::default());
        for (id, t) in [(6, tail), (7, small_tail)] {
            let mut payload = b"head".to_vec();
            payload.extend_from_slice(&t);
            assert_eq!(
                dec.decode(&mut buf).unwrap(),
                Some(Frame::Response(Response {
                    id,
                    payload: Bytes::from(payload),
                }))
            );
        }
        assert!(buf.is_empty());
    }

    fn response(id: u64, len: usize) -> Frame {
        Frame::Response(Response {
            id,
            payload: Bytes::from(vec![id as u8; len]),
        })
    }

    fn oneway(len: usize, fill: u8) -> Frame {
        Frame::OneWay(OneWay {
            id: 0,
            route: Bytes::from_static(b"m"),
            payload: Bytes::from(vec![fill; len]),
        })
    }

    /// Runs the writer over `items` with parts of `part` bytes, then decodes what it wrote,
    /// noting after how many continuations each frame came out.
    async fn write_in_parts(items: Vec<Outgoing>, part: usize) -> Vec<(Frame, usize)> {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            server.read_to_end(&mut bytes).await.unwrap();
            bytes
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = WriterContext {
            message_part: Some(part),
            ..test_context(CancellationToken::new())
        };
        let queued = ctx.queued.clone();
        let queued_bytes = ctx.queued_bytes.clone();
        for item in items {
            if let Outgoing::Queued(f) = &item {
                queued.fetch_add(1, Ordering::AcqRel);
                queued_bytes.fetch_add(f.encoded_len(), Ordering::AcqRel);
            }
            tx.send(item).unwrap();
        }
        tx.send(Outgoing::Shutdown).unwrap();
        run(Box::new(client), rx, ctx).await.unwrap();
        // Every one-way frame, whole or in parts, was taken off the queue counters.
        assert_eq!(queued.load(Ordering::Acquire), 0);
        assert_eq!(queued_bytes.load(Ordering::Acquire), 0);
        let bytes = reader.await.unwrap();
        let mut out = Vec::new();
        let mut parts_seen = 0;
        let mut dec = FrameDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        // Feed frame by frame to count the continuations passed before each frame.
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = bytes[at + 4];
            buf.extend_from_slice(&bytes[at..at + 16 + len]);
            at += 16 + len;
            if kind == peerwire_wire::FrameKind::Continuation as u8 {
                parts_seen += 1;
            }
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                out.push((f, parts_seen));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_small_frame_waits_for_one_part_of_a_large_message_at_most() {
        let big = response(1, 1 << 20);
        let small = Frame::Request(Request {
            id: 9,
            deadline_ms: 0,
            route: Bytes::from_static(b"x"),
            context: Bytes::new(),
            payload: Bytes::from_static(b"small"),
        });
        let slot_tx = Arc::new(Semaphore::new(1));
        let slot = slot_tx.clone().try_acquire_owned().unwrap();
        let out = write_in_parts(
            vec![
                Outgoing::Reply(big.clone(), slot),
                Outgoing::Call(small.clone()),
            ],
            64 * 1024,
        )
        .await;
        assert_eq!(out.len(), 2);
        // The small call went out in the first write, before any part of the big reply.
        assert_eq!(out[0], (small, 0));
        assert_eq!(out[1], (big, 16));
        // The reply's in-flight slot was released once its last part was written.
        assert_eq!(slot_tx.available_permits(), 1);
    }

    #[tokio::test]
    async fn one_way_messages_keep_their_order_around_one_in_parts() {
        let first = oneway(300_000, 1);
        let second = oneway(10, 2);
        let third = oneway(200_000, 3);
        let out = write_in_parts(
            vec![
                Outgoing::Queued(first.clone()),
                Outgoing::Queued(second.clone()),
                Outgoing::Queued(third.clone()),
            ],
            64 * 1024,
        )
        .await;
        let payloads: Vec<_> = out
            .iter()
            .map(|(f, _)| match f {
                Frame::OneWay(m) => m.payload.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: Vec<_> = [first, second, third]
            .into_iter()
            .map(|f| match f {
                Frame::OneWay(m) => m.payload,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(payloads, expected);
    }

    #[tokio::test]
    async fn large_calls_take_turns_and_small_ones_pass_them() {
        let request = |id: u64, len: usize| {
            Frame::Request(Request {
                id,
                deadline_ms: 5,
                route: Bytes::from_static(b"r"),
                context: Bytes::new(),
                payload: Bytes::from(vec![id as u8; len]),
            })
        };
        let out = write_in_parts(
            vec![
                Outgoing::Call(request(1, 200_000)),
                Outgoing::Call(request(2, 200_000)),
                Outgoing::Call(request(3, 10)),
            ],
            50_000,
        )
        .await;
        let order: Vec<_> = out
            .iter()
            .map(|(f, parts)| match f {
                Frame::Request(r) => (r.id, *parts),
                other => panic!("{other:?}"),
            })
            .collect();
        // Call 3 passed both; call 2 went in parts after call 1's four parts.
        assert_eq!(order, vec![(3, 0), (1, 4), (2, 8)]);
    }

    #[tokio::test]
    async fn a_large_call_cancelled_while_it_waits_for_its_turn_is_never_written() {
        let request = |id: u64| {
            Frame::Request(Request {
                id,
                deadline_ms: 5,
                route: Bytes::from_static(b"r"),
                context: Bytes::new(),
                payload: Bytes::from(vec![id as u8; 200_000]),
            })
        };
        let out = write_in_parts(
            vec![
                Outgoing::Call(request(1)),
                Outgoing::Call(request(2)),
                Outgoing::Queued(Frame::Cancel { id: 2 }),
            ],
            50_000,
        )
        .await;
        let frames: Vec<_> = out.into_iter().map(|(f, _)| f).collect();
        assert_eq!(frames, vec![Frame::Cancel { id: 2 }, request(1)]);
    }
}
