//! One stream on one server: a task that opens the stream at its successors, then for each
//! packet in order checks its CRC32C and offset, forwards the same buffer to every successor,
//! writes it to the sink, and acknowledges it once its own write and every successor's
//! acknowledgement agree on the stream length (Ratis's `DataStreamManagement.read` path).
//! Acknowledgements go out in packet order; forwarding and local writes of later packets
//! overlap with waiting for earlier acknowledgements.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use peerwire_wire::{StreamData, StreamFlags};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ack::{self, SuccessorAnswer};
use super::codec::{self, FailureKind, OpenRequest, Reply, StreamFailure};
use super::forward::Successor;
use super::sink::{DataSink, SinkStream, StreamInfo};
use super::state::{Packet, ServerInner, StreamKey, send_reply};
use peerwire::connection::{Connection, ReplySlot};

/// The reply owed for one packet.
struct Owed {
    id: u64,
    slot: ReplySlot,
    len: usize,
    close: bool,
}

type AckFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

struct StreamTask<S: DataSink> {
    inner: Arc<ServerInner<S>>,
    conn: Connection,
    key: StreamKey,
    open: OpenRequest,
    sink: Option<S::Stream>,
    successors: Vec<Successor>,
    /// Stream bytes written here.
    end: u64,
    /// A close packet was taken.
    closing: bool,
    closed: Option<S::Closed>,
    owed: VecDeque<Owed>,
    acks: FuturesOrdered<AckFuture>,
}

/// Runs the stream registered under `key` until it closes, fails or is aborted.
pub(crate) async fn run<S: DataSink>(
    inner: Arc<ServerInner<S>>,
    conn: Connection,
    key: StreamKey,
    open: OpenRequest,
    (open_id, open_slot): (u64, ReplySlot),
    mut rx: mpsc::UnboundedReceiver<Packet>,
    abort: CancellationToken,
) {
    let mut task = StreamTask {
        inner,
        conn,
        key,
        open,
        sink: None,
        successors: Vec::new(),
        end: 0,
        closing: false,
        closed: None,
        owed: VecDeque::new(),
        acks: FuturesOrdered::new(),
    };
    let opened = tokio::select! {
        opened = task.open() => opened,
        _ = abort.cancelled() => Err(task.aborted_failure()),
    };
    match opened {
        Ok(reply) => send_reply(&task.conn, open_slot, open_id, &Ok(reply)),
        Err(failure) => {
            send_reply(&task.conn, open_slot, open_id, &Err(failure.clone()));
            task.fail(failure, &mut rx).await;
            return;
        }
    }
    task.serve(&mut rx, abort).await;
}

impl<S: DataSink> StreamTask<S> {
    fn me(&self) -> u64 {
        self.inner.me()
    }

    fn failure(&self, kind: FailureKind, offset: u64, message: String) -> StreamFailure {
        self.inner.failure(kind, offset, message)
    }

    fn aborted_failure(&self) -> StreamFailure {
        let why = if self.inner.stop.is_cancelled() {
            format!("node {} is stopping", self.me())
        } else {
            "aborted by its sender".to_owned()
        };
        self.failure(FailureKind::Aborted, self.end, why)
    }

    /// Creates the sink and opens the stream at every successor, concurrently.
    async fn open(&mut self) -> Result<Vec<codec::ReplicaBytes>, StreamFailure> {
        let me = self.me();
        let info = StreamInfo {
            stream: self.open.stream,
            header: self.open.header.clone(),
            routing: self.open.routing.clone(),
            primary: self.open.routing.primary() == me,
        };
        let inner = &self.inner;
        let open = &self.open;
        let successors =
            futures::future::join_all(open.routing.successors(me).iter().map(|&node| async move {
                match inner.peer_addr(node) {
                    Some(addr) => inner.forwarder.open(node, addr, open).await,
                    None => Err(StreamFailure {
                        kind: FailureKind::Routing,
                        node: me,
                        offset: 0,
                        message: format!("node {node} is not a known peer of node {me}"),
                    }),
                }
            }));
        let (sink, successors) = tokio::join!(inner.sink.create(&info), successors);
        let mut answers = Vec::new();
        let mut first_failure = None;
        for result in successors {
            match result {
                Ok((successor, reply)) => {
                    answers.push((successor.node, Ok(reply)));
                    self.successors.push(successor);
                }
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                }
            }
        }
        match sink {
            Ok(sink) => self.sink = Some(sink),
            Err(e) => {
                first_failure.get_or_insert(self.failure(
                    FailureKind::Sink,
                    0,
                    format!("creating the stream: {e}"),
                ));
            }
        }
        if let Some(failure) = first_failure {
            return Err(failure);
        }
        ack::combine(me, 0, 0, answers)
    }

    async fn serve(&mut self, rx: &mut mpsc::UnboundedReceiver<Packet>, abort: CancellationToken) {
        let idle_timeout = self.inner.cfg.idle_timeout;
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                _ = abort.cancelled() => {
                    let failure = self.aborted_failure();
                    self.fail(failure, rx).await;
                    return;
                }
                Some(reply) = self.acks.next(), if !self.acks.is_empty() => {
                    let owed = self.owed.pop_front().expect("one owed reply per acknowledgement");
                    match reply {
                        Ok(replicas) => {
                            let close = owed.close;
                            self.answer(owed, &Ok(replicas));
                            if close {
                                self.finish_close(rx).await;
                                return;
                            }
                        }
                        Err(failure) => {
                            self.answer(owed, &Err(failure.clone()));
                            self.fail(failure, rx).await;
                            return;
                        }
                    }
                }
                packet = rx.recv() => match packet {
                    Some(packet) => {
                        idle.as_mut().reset(Instant::now() + idle_timeout);
                        if let Err(failure) = self.take_packet(packet).await {
                            self.fail(failure, rx).await;
                            return;
                        }
                    }
                    None => {
                        // The owner's connection is gone: nobody can be answered.
                        let failure = self.failure(
                            FailureKind::Aborted,
                            self.end,
                            "the stream's sender disconnected".into(),
                        );
                        self.fail(failure, rx).await;
                        return;
                    }
                },
                _ = &mut idle, if self.acks.is_empty() => {
                    metrics::counter!("peerwire_datastream_idle_aborts_total").increment(1);
                    let failure = self.failure(
                        FailureKind::Aborted,
                        self.end,
                        format!(
                            "no packet for {idle_timeout:?} (setting `idle_timeout`)"
                        ),
                    );
                    self.fail(failure, rx).await;
                    return;
                }
            }
        }
    }

    /// Checks, forwards and writes one packet; its acknowledgement is queued.
    async fn take_packet(&mut self, packet: Packet) -> Result<(), StreamFailure> {
        let Packet {
            data,
            slot,
            over_budget,
        } = packet;
        let StreamData {
            id,
            flags,
            offset,
            checksum,
            payload,
            ..
        } = data;
        let len = payload.len();
        let close = flags.contains(StreamFlags::CLOSE);
        let owed = Owed {
            id,
            slot,
            len,
            close,
        };
        if self.closing {
            let failure = self.failure(
                FailureKind::Closed,
                offset,
                "a packet arrived after the stream's close".into(),
            );
            self.answer(owed, &Err(failure));
            return Ok(());
        }
        self.owed.push_back(owed);
        if over_budget {
            return Err(self.failure(
                FailureKind::Limit,
                offset,
                format!(
                    "node {} holds more than {} bytes of unacknowledged packets (setting `max_buffered_bytes`)",
                    self.me(),
                    self.inner.cfg.max_buffered_bytes
                ),
            ));
        }
        let actual = crc32c::crc32c(&payload);
        if actual != checksum {
            metrics::counter!("peerwire_datastream_checksum_failures_total").increment(1);
            return Err(self.failure(
                FailureKind::Checksum,
                offset,
                format!(
                    "packet of {len} bytes has CRC32C {actual:08x}, its sender computed {checksum:08x}"
                ),
            ));
        }
        if offset != self.end {
            return Err(self.failure(
                FailureKind::OutOfOrder,
                offset,
                format!(
                    "packet at offset {offset}, but the stream is at {}",
                    self.end
                ),
            ));
        }
        let mut calls = Vec::with_capacity(self.successors.len());
        for successor in &self.successors {
            let payload = self.forwarded(payload.clone());
            match successor.send(flags, offset, checksum, payload).await {
                Ok(call) => calls.push((successor.node, call)),
                Err(e) => {
                    return Err(StreamFailure {
                        kind: FailureKind::Replica,
                        node: successor.node,
                        offset,
                        message: e.to_string(),
                    });
                }
            }
        }
        self.write_local(payload, flags, offset).await?;
        self.end += len as u64;
        metrics::counter!("peerwire_datastream_bytes_total").increment(len as u64);
        let (me, end) = (self.me(), self.end);
        self.acks.push_back(Box::pin(async move {
            let answers =
                futures::future::join_all(calls.into_iter().map(|(node, call)| async move {
                    let answer: SuccessorAnswer = match call.wait().await {
                        Ok(bytes) => codec::decode_reply(&bytes)
                            .ok_or_else(|| "malformed acknowledgement".to_owned()),
                        Err(e) => Err(e.to_string()),
                    };
                    (node, answer)
                }))
                .await;
            ack::combine(me, end, offset, answers)
        }));
        Ok(())
    }

    /// The buffer forwarded to successors: the received one, unless a test corrupts it.
    fn forwarded(&self, payload: Bytes) -> Bytes {
        #[cfg(feature = "testing")]
        if self.inner.faults.take_corruption() && !payload.is_empty() {
            let mut copy = payload.to_vec();
            copy[0] ^= 0x01;
            return Bytes::from(copy);
        }
        payload
    }

    async fn write_local(
        &mut self,
        payload: Bytes,
        flags: StreamFlags,
        offset: u64,
    ) -> Result<(), StreamFailure> {
        let me = self.me();
        let sink_failure = |what: &str, e: super::sink::SinkError| StreamFailure {
            kind: FailureKind::Sink,
            node: me,
            offset,
            message: format!("{what}: {e}"),
        };
        let sink = self
            .sink
            .as_mut()
            .expect("sink present until close or abort");
        if !payload.is_empty() {
            sink.write(payload)
                .await
                .map_err(|e| sink_failure("write", e))?;
        }
        if flags.contains(StreamFlags::SYNC) {
            sink.sync().await.map_err(|e| sink_failure("sync", e))?;
        }
        if flags.contains(StreamFlags::CLOSE) {
            self.closing = true;
            let sink = self.sink.take().expect("sink present until close or abort");
            self.closed = Some(sink.close().await.map_err(|e| sink_failure("close", e))?);
        }
        Ok(())
    }

    fn answer(&self, owed: Owed, reply: &Reply) {
        self.inner.buffered.fetch_sub(owed.len, Ordering::AcqRel);
        send_reply(&self.conn, owed.slot, owed.id, reply);
    }

    /// The close was acknowledged everywhere: keep what the sink left for the application
    /// to link, and end.
    async fn finish_close(&mut self, rx: &mut mpsc::UnboundedReceiver<Packet>) {
        let stream = self.open.stream;
        if let Some(closed) = self.closed.take() {
            self.inner
                .closed
                .lock()
                .expect("closed lock poisoned")
                .insert(stream, closed);
            let inner = self.inner.clone();
            let link_timeout = inner.cfg.link_timeout;
            self.inner.tasks.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(link_timeout) => {}
                    _ = inner.stop.cancelled() => return,
                }
                let unlinked = inner
                    .closed
                    .lock()
                    .expect("closed lock poisoned")
                    .remove(&stream);
                if let Some(closed) = unlinked {
                    metrics::counter!("peerwire_datastream_unlinked_discarded_total").increment(1);
                    inner.sink.discard(closed).await;
                }
            });
        }
        self.inner.counters.closed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("peerwire_datastream_streams_closed_total").increment(1);
        let failure = self.failure(
            FailureKind::Closed,
            self.end,
            "a packet arrived after the stream's close".into(),
        );
        self.end_stream(&failure, rx).await;
    }

    /// Fails the stream: every owed reply gets `failure`, the sink and the successors are
    /// aborted, and the stream leaves the table.
    async fn fail(&mut self, failure: StreamFailure, rx: &mut mpsc::UnboundedReceiver<Packet>) {
        let aborted = failure.kind == FailureKind::Aborted;
        if aborted {
            self.inner.counters.aborted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.inner.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("peerwire_datastream_streams_failed_total", "kind" => failure.kind.to_string())
            .increment(1);
        tracing::debug!(stream = %self.open.stream, %failure, "data stream failed");
        self.acks = FuturesOrdered::new();
        while let Some(owed) = self.owed.pop_front() {
            self.answer(owed, &Err(failure.clone()));
        }
        for successor in &self.successors {
            successor.abort(&self.inner.tasks);
        }
        if let Some(sink) = self.sink.take() {
            sink.abort(failure.to_string()).await;
        }
        if let Some(closed) = self.closed.take() {
            self.inner.sink.discard(closed).await;
        }
        self.end_stream(&failure, rx).await;
    }

    /// Leaves the table, then answers every packet still queued with `failure`.
    async fn end_stream(
        &mut self,
        failure: &StreamFailure,
        rx: &mut mpsc::UnboundedReceiver<Packet>,
    ) {
        self.inner.remove_stream(self.key);
        // The entry (and its sender) is gone, so the channel ends once drained.
        while let Some(packet) = rx.recv().await {
            let owed = Owed {
                id: packet.data.id,
                slot: packet.slot,
                len: packet.data.payload.len(),
                close: false,
            };
            let failure = StreamFailure {
                offset: packet.data.offset,
                ..failure.clone()
            };
            self.answer(owed, &Err(failure));
        }
    }
}
