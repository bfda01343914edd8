//! One framed, multiplexed, symmetric connection over any transport stream.
//!
//! After the handshake (`handshake.rs`), a connection runs three tasks:
//! - the **driver** (`driver.rs`) reads and decodes frames, matches replies to pending calls,
//!   hands inbound requests to the connection's `Inbound` policy (the server core's reader
//!   admission), answers heartbeats, and runs the close sequence;
//! - the **writer** (`writer.rs`) drains the write queue into coalesced vectored writes;
//! - the **keepalive** (`keepalive.rs`) sends heartbeats and enforces read and idle timeouts.
//!
//! Either side may issue calls ([`Connection::call`], [`Connection::send_oneway`]); request
//! ids are per direction. The write queue is unbounded as a channel but bounded by accounting:
//! requests by the in-flight call limit, replies by the in-flight serve limit, and one-way and
//! control frames by `write_queue`.

pub(crate) mod activity;
mod batch;
pub(crate) mod calls;
pub(crate) mod cancels;
mod deadlines;
pub(crate) mod driver;
pub(crate) mod frame_reader;
pub(crate) mod handshake;
pub(crate) mod keepalive;
mod lane_metrics;
pub(crate) mod lifecycle;
mod outgoing;
mod parts;
pub(crate) mod principal;
pub(crate) mod read_size;
pub(crate) mod service;
pub(crate) mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use peerwire_wire::{Frame, GoAwayReason, Hello, Lane, OneWay, Request, Status, StreamData};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::activity::Activity;
use self::calls::{Calls, CallsState, Reply};
use self::frame_reader::FrameReader;
use self::outgoing::Outgoing;
use crate::config::ConnectionConfig;
use crate::error::{Error, NotExecuted, Unknown, failure_to_error};
use crate::transport::BoxWrite;

pub use self::outgoing::FileRegion;
pub use self::principal::Principal;
pub use self::service::{MountPoint, Refusal, ReplySlot, ServeNothing, Service};

/// Numbers connections in this process: a connection's id, never reused.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Who is at the other end of a connection, as established by the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's transport address.
    pub addr: SocketAddr,
    /// The peer's node id (0 = anonymous client).
    pub node_id: u64,
    /// The peer's epoch.
    pub epoch: u64,
    /// The lane this connection carries.
    pub lane: Lane,
    /// The group of the lane's service this connection is for (0 = the default group).
    pub group: u64,
    /// The protocol version the connection runs at (the highest both sides speak).
    pub version: u16,
}

impl PeerInfo {
    /// The mount point this connection is for.
    pub fn mount_point(&self) -> MountPoint {
        MountPoint::group(self.lane, self.group)
    }
}

/// A route name: which handler a call is for. Cheap to clone; build it once for hot paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route(pub(crate) Bytes);

impl Route {
    /// The route's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&'static str> for Route {
    fn from(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Route {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<Bytes> for Route {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Counters of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    pub(crate) late_replies: AtomicU64,
}

/// How a close was requested.
#[derive(Debug, Clone)]
pub(crate) struct CloseRequest {
    pub(crate) reason: GoAwayReason,
    pub(crate) message: String,
    /// Hard closes skip draining: the peer misbehaved or is gone.
    pub(crate) hard: bool,
}

/// The state shared by a connection's tasks and handles.
pub(crate) struct Conn {
    /// This connection's number in this process.
    id: u64,
    peer: PeerInfo,
    /// Who the peer is, as far as the handshake proved it.
    principal: Principal,
    /// What the peer's principal may use.
    access: crate::access::AccessPolicy,
    peer_max_body: usize,
    /// The largest payload of one message the peer accepts: its `max_message_bytes` when the
    /// connection sends messages in parts (version 3), else one frame's worth.
    peer_max_message: usize,
    /// The peer's setting behind `peer_max_message`, for errors.
    peer_message_setting: &'static str,
    /// Whether messages larger than a frame travel in parts (version 3 on).
    in_parts: bool,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// One-way and control frames queued and not yet written.
    queued: Arc<AtomicUsize>,
    /// Their encoded bytes.
    queued_bytes: Arc<AtomicUsize>,
    room: Arc<writer::Room>,
    write_queue: usize,
    write_queue_bytes: usize,
    activity: Arc<Activity>,
    /// Fires when a close is requested (or the writer stops).
    closing: CancellationToken,
    /// Cleared when a close is requested: a lock-free check for the hot path.
    open: AtomicBool,
    /// Fires to stop the writer at once.
    abort: CancellationToken,
    /// Fires when the connection is fully closed.
    closed: CancellationToken,
    close_request: Mutex<Option<CloseRequest>>,
    calls: Mutex<Calls>,
    /// Wakes the deadline task when a call's deadline is earlier than every pending one.
    deadline_rearm: tokio::sync::Notify,
    next_id: AtomicU64,
    call_slots: Arc<Semaphore>,
    serve_slots: Arc<Semaphore>,
    max_inflight: usize,
    /// Highest request id received from the peer and accepted.
    last_accepted: AtomicU64,
    /// `u64::MAX` while open; once we sent a go-away, its mark: requests above it are ignored
    /// (not executed), requests up to it are still served.
    goaway_mark: AtomicU64,
    /// Inbound calls the peer cancelled.
    cancels: cancels::Cancels,
    inbound: Arc<dyn Service>,
    stats: ConnStats,
    cfg: ConnectionConfig,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("closing", &self.closing.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Largest route a request may carry.
const MAX_ROUTE: usize = peerwire_wire::limits::DEFAULT_MAX_ROUTE as usize;

/// Bytes of a one-way frame's body besides its route and payload.
const ONEWAY_OVERHEAD: usize = 2;

impl Conn {
    /// Who is at the other end.
    pub(crate) fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Checks `access` by the peer's principal against this connection's policy.
    pub(crate) fn check(
        &self,
        access: crate::access::Access<'_>,
    ) -> Result<(), crate::access::Denied> {
        if self.access.is_open() {
            return Ok(());
        }
        self.access.check(&self.principal, access)
    }

    /// The inbound calls the peer cancelled.
    pub(crate) fn cancels(&self) -> &cancels::Cancels {
        &self.cancels
    }

    /// Starts the tasks of an established connection on `tracker` — on `runtime`, or else on
    /// the current runtime — and returns its handle.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        reader: FrameReader,
        writer: BoxWrite,
        addr: SocketAddr,
        peer_hello: Hello,
        principal: Principal,
        cfg: &ConnectionConfig,
        inbound: Arc<dyn Service>,
        tracker: &TaskTracker,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> Connection {
        let rt = runtime
            .cloned()
            .unwrap_or_else(tokio::runtime::Handle::current);
        let (tx, rx) = mpsc::unbounded_channel();
        // The handshake put the version the connection runs at in both version fields.
        let in_parts = peer_hello.min_version >= 3;
        let peer_max_body = peer_hello.max_frame_body as usize;
        let (peer_max_message, peer_message_setting) = if in_parts {
            (
                usize::try_from(peer_hello.max_message).unwrap_or(usize::MAX),
                "max_message_bytes",
            )
        } else {
            (peer_max_body, "max_frame_body")
        };
        let message_part = in_parts.then(|| cfg.message_part.min(peer_max_body));
        let counters = lane_metrics::LaneCounters::register(peer_hello.lane);
        let mut reader = reader;
        reader.count_reads_in(&counters);
        let queued = Arc::new(AtomicUsize::new(0));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let room = Arc::new(writer::Room::default());
        let activity = Arc::new(Activity::new());
        let closing = CancellationToken::new();
        let abort = CancellationToken::new();
        let conn = Arc::new(Self {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            peer: PeerInfo {
                addr,
                node_id: peer_hello.node_id,
                epoch: peer_hello.epoch,
                lane: peer_hello.lane,
                group: peer_hello.group,
                version: peer_hello.min_version,
            },
            principal,
            access: cfg.access.clone(),
            peer_max_body,
            peer_max_message,
            peer_message_setting,
            in_parts,
            tx,
            queued: queued.clone(),
            queued_bytes: queued_bytes.clone(),
            room: room.clone(),
            write_queue: cfg.write_queue,
            write_queue_bytes: cfg.write_queue_bytes,
            activity: activity.clone(),
            closing: closing.clone(),
            open: AtomicBool::new(true),
            abort: abort.clone(),
            closed: CancellationToken::new(),
            close_request: Mutex::new(None),
            calls: Mutex::new(Calls::new()),
            deadline_rearm: tokio::sync::Notify::new(),
            next_id: AtomicU64::new(1),
            call_slots: Arc::new(Semaphore::new(cfg.max_inflight)),
            serve_slots: Arc::new(Semaphore::new(cfg.max_inflight)),
            max_inflight: cfg.max_inflight,
            last_accepted: AtomicU64::new(0),
            goaway_mark: AtomicU64::new(u64::MAX),
            cancels: cancels::Cancels::new(cfg.max_inflight),
            inbound,
            stats: ConnStats::default(),
            cfg: cfg.clone(),
        });
        // Before the driver can deliver anything, so the service knows the connection first.
        conn.inbound
            .on_connected(&Connection { conn: conn.clone() });
        let span = tracing::debug_span!("conn", peer = %addr, node = peer_hello.node_id, lane = %peer_hello.lane);
        let writer_conn = conn.clone();
        let max_batch = cfg.max_write_batch;
        let load = writer::Load {
            call_slots: conn.call_slots.clone(),
            serve_slots: conn.serve_slots.clone(),
            max_inflight: conn.max_inflight,
        };
        tracker.spawn_on(
            tracing::Instrument::instrument(
                async move {
                    let ctx = writer::WriterContext {
                        queued,
                        queued_bytes,
                        room,
                        load,
                        activity,
                        closing,
                        abort,
                        max_batch_bytes: max_batch,
                        message_part,
                        counters,
                    };
                    let result = writer::run(writer, rx, ctx).await;
                    if let Err(e) = result {
                        writer_conn
                            .begin_close_hard(GoAwayReason::Normal, format!("write failed: {e}"));
                    }
                },
                span.clone(),
            ),
            &rt,
        );
        let policy = keepalive::KeepalivePolicy {
            heartbeat_interval: cfg.heartbeat_interval,
            read_timeout: cfg.read_timeout,
            idle_timeout: cfg.idle_timeout,
        };
        tracker.spawn_on(keepalive::run(conn.clone(), policy), &rt);
        tracker.spawn_on(deadlines::run(conn.clone()), &rt);
        tracker.spawn_on(
            tracing::Instrument::instrument(driver::run(conn.clone(), reader), span),
            &rt,
        );
        metrics::counter!("peerwire_connections_opened_total").increment(1);
        Connection { conn }
    }

    /// A number that changes whenever a call or one-way message passes in either direction:
    /// request ids grow with every call sent, the accepted mark with every call received.
    pub(crate) fn call_marker(&self) -> u64 {
        self.next_id
            .load(Ordering::Relaxed)
            .wrapping_add(self.last_accepted.load(Ordering::Relaxed))
            .wrapping_add(self.activity.oneways())
    }

    /// Calls in flight in either direction.
    pub(crate) fn calls_in_flight(&self) -> bool {
        self.call_slots.available_permits() < self.max_inflight
            || self.serve_slots.available_permits() < self.max_inflight
    }

    /// Whether every call in both directions is done and every reply was written.
    pub(crate) fn is_drained(&self) -> bool {
        !self.calls_in_flight()
    }

    /// Queues a one-way or control frame, counted against `write_queue` and
    /// `write_queue_bytes` (a frame always fits an empty queue).
    pub(crate) fn try_send_control(&self, frame: Frame) -> Result<(), NotExecuted> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.write_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(NotExecuted::LocalQueueFull {
                queue: "write queue",
                limit: self.write_queue,
                unit: "frames",
                setting: "write_queue",
            });
        }
        let len = frame.encoded_len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.write_queue_bytes {
            self.unqueue(len);
            return Err(NotExecuted::LocalQueueFull {
                queue: "write queue",
                limit: self.write_queue_bytes,
                unit: "bytes",
                setting: "write_queue_bytes",
            });
        }
        self.tx.send(Outgoing::Queued(frame)).map_err(|_| {
            self.unqueue(len);
            NotExecuted::ConnectionClosing {
                reason: GoAwayReason::Normal,
                message: "connection closed".into(),
            }
        })
    }

    /// Takes back the accounting of a frame that was not queued after all.
    fn unqueue(&self, len: usize) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
    }

    /// Queues a frame regardless of the write-queue limits (go-away frames only).
    pub(crate) fn force_send(&self, frame: Frame) {
        let len = frame.encoded_len();
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(Outgoing::Queued(frame)).is_err() {
            self.unqueue(len);
        }
    }

    pub(crate) fn note_late_reply(&self) {
        self.stats.late_replies.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("peerwire_late_replies_total").increment(1);
    }

    /// Sends the reply to an inbound request, releasing its slot once written. Never blocks:
    /// replies are bounded by the in-flight limit. A response larger than the peer accepts in
    /// one message is replaced by a `ReplyTooLarge` failure naming the peer's limit (the
    /// handler ran; the caller learns why it gets no payload).
    pub(crate) fn reply(&self, slot: OwnedSemaphorePermit, frame: Frame) {
        let frame = match frame {
            Frame::Response(response) if response.payload.len() > self.peer_max_message => {
                let len = response.payload.len();
                metrics::counter!("peerwire_replies_refused_total", "reason" => "too_large")
                    .increment(1);
                tracing::warn!(
                    len,
                    limit = self.peer_max_message,
                    peer = %self.peer.addr,
                    "reply larger than the caller accepts; sent a failure instead"
                );
                Frame::Failure(peerwire_wire::Failure {
                    id: response.id,
                    status: Status::ReplyTooLarge,
                    retry_after_ms: 0,
                    message: format!(
                        "the reply of {len} bytes exceeds the caller's limit of {} bytes for one message (the caller's setting `{}`)",
                        self.peer_max_message, self.peer_message_setting
                    ),
                })
            }
            frame => frame,
        };
        if self.tx.send(Outgoing::Reply(frame, slot)).is_err() {
            metrics::counter!("peerwire_replies_dropped_total", "reason" => "closed").increment(1);
        }
    }

    /// Sends a reply whose payload is `prefix` followed by `region` of a file (by `sendfile`
    /// where the transport can). A reply larger than one of the peer's frames is answered
    /// `ReplyTooLarge` instead: file replies never go in parts.
    pub(crate) fn reply_file(
        &self,
        slot: OwnedSemaphorePermit,
        id: u64,
        prefix: Bytes,
        region: FileRegion,
    ) {
        let len = prefix.len() + region.len;
        if len > self.peer_max_body {
            metrics::counter!("peerwire_replies_refused_total", "reason" => "too_large")
                .increment(1);
            self.fail(
                slot,
                id,
                Status::ReplyTooLarge,
                0,
                format!(
                    "a file reply of {len} bytes exceeds the caller's largest frame of {} bytes (the caller's setting `max_frame_body`)",
                    self.peer_max_body
                ),
            );
            return;
        }
        let head = peerwire_wire::Response {
            id,
            payload: prefix,
        };
        if self
            .tx
            .send(Outgoing::ReplyFile(head, region, slot))
            .is_err()
        {
            metrics::counter!("peerwire_replies_dropped_total", "reason" => "closed").increment(1);
        }
    }

    /// Sends a reply whose payload is `head` followed by `tail`, without joining them when the
    /// reply fits one of the peer's frames (else joined and sent as any reply, in parts if it
    /// must).
    pub(crate) fn reply_tail(&self, slot: OwnedSemaphorePermit, id: u64, head: Bytes, tail: Bytes) {
        if head.len() + tail.len() > self.peer_max_body {
            let mut joined = bytes::BytesMut::with_capacity(head.len() + tail.len());
            joined.extend_from_slice(&head);
            joined.extend_from_slice(&tail);
            self.reply(
                slot,
                Frame::Response(peerwire_wire::Response {
                    id,
                    payload: joined.freeze(),
                }),
            );
            return;
        }
        let head = peerwire_wire::Response { id, payload: head };
        if self.tx.send(Outgoing::ReplyTail(head, tail, slot)).is_err() {
            metrics::counter!("peerwire_replies_dropped_total", "reason" => "closed").increment(1);
        }
    }

    /// Sends a failure reply.
    pub(crate) fn fail(
        &self,
        slot: OwnedSemaphorePermit,
        id: u64,
        status: Status,
        retry_after_ms: u32,
        message: String,
    ) {
        self.reply(
            slot,
            Frame::Failure(peerwire_wire::Failure {
                id,
                status,
                retry_after_ms,
                message,
            }),
        );
    }

    /// Requests a graceful close: stop new calls, finish in-flight ones, then close.
    pub(crate) fn begin_close(&self, reason: GoAwayReason, message: String) {
        self.request_close(CloseRequest {
            reason,
            message,
            hard: false,
        });
    }

    /// Requests an immediate close.
    pub(crate) fn begin_close_hard(&self, reason: GoAwayReason, message: String) {
        self.request_close(CloseRequest {
            reason,
            message,
            hard: true,
        });
    }

    fn request_close(&self, request: CloseRequest) {
        self.open.store(false, Ordering::Release);
        {
            let mut slot = self.close_request.lock().expect("close lock poisoned");
            match slot.as_ref() {
                // A hard close may upgrade a graceful one; otherwise the first request wins.
                Some(existing) if existing.hard || !request.hard => {}
                _ => *slot = Some(request),
            }
        }
        self.closing.cancel();
    }

    pub(crate) fn take_close_request(&self) -> Option<CloseRequest> {
        self.close_request
            .lock()
            .expect("close lock poisoned")
            .clone()
    }

    fn check_sizes(
        &self,
        route: &Route,
        payload: &Bytes,
        overhead: usize,
    ) -> Result<(), NotExecuted> {
        if route.0.len() > MAX_ROUTE {
            return Err(NotExecuted::RouteTooLong {
                len: route.0.len(),
                limit: MAX_ROUTE,
            });
        }
        let limit = self.max_payload(route, overhead);
        if payload.len() > limit {
            return Err(NotExecuted::PayloadTooLarge {
                len: payload.len(),
                limit,
                setting: self.peer_message_setting,
            });
        }
        Ok(())
    }

    /// The largest payload the peer accepts in one message on `route`, given the bytes its
    /// kind's fixed fields take in a frame: the peer's message limit when messages travel in
    /// parts, else what is left of one frame.
    fn max_payload(&self, route: &Route, overhead: usize) -> usize {
        if self.in_parts {
            self.peer_max_message
        } else {
            self.peer_max_body.saturating_sub(overhead + route.0.len())
        }
    }

    /// The largest one-way payload on `route` the peer accepts.
    pub(crate) fn max_oneway_payload(&self, route: &Route) -> usize {
        self.max_payload(route, ONEWAY_OVERHEAD)
    }

    fn not_executed(&self, reason: NotExecuted) -> Error {
        Error::NotExecuted {
            peer: self.peer.addr,
            reason,
        }
    }

    /// Sends a request carrying `context` (an encoded block; dropped if the connection runs
    /// at a version before contexts) and waits for its reply until `until` (= now +
    /// `deadline`) passes.
    pub(crate) async fn call(
        self: &Arc<Self>,
        route: &Route,
        payload: Bytes,
        context: Bytes,
        deadline: Duration,
        until: Instant,
    ) -> Result<Bytes, Error> {
        let context = if !context.is_empty() && self.peer.version < peerwire_wire::CONTEXT_VERSION {
            metrics::counter!("peerwire_context_dropped_total").increment(1);
            Bytes::new()
        } else {
            context
        };
        let overhead = 6 + if context.is_empty() {
            0
        } else {
            2 + context.len()
        };
        self.check_sizes(route, &payload, overhead)
            .map_err(|r| self.not_executed(r))?;
        let route = route.0.clone();
        let pending = self
            .start_call(deadline, until, None, true, |id, deadline_ms| {
                Outgoing::Call(Frame::Request(Request {
                    id,
                    deadline_ms,
                    route,
                    context,
                    payload,
                }))
            })
            .await?;
        pending.wait().await
    }

    /// Sends a data-stream packet as a call (its reply is the acknowledgement) and returns
    /// once it is queued for writing. `extra` is held until the reply arrives (a stream's
    /// outstanding-packet slot). Dropping the returned [`PendingCall`] does not cancel the
    /// packet: it stays in flight, and its reply releases the slots.
    pub(crate) async fn send_stream_data(
        self: &Arc<Self>,
        data: StreamData,
        deadline: Duration,
        until: Instant,
        extra: Option<OwnedSemaphorePermit>,
    ) -> Result<PendingCall, Error> {
        let body = StreamData::HEAD_LEN as usize + data.payload.len();
        if body > self.peer_max_body {
            return Err(self.not_executed(NotExecuted::PayloadTooLarge {
                len: data.payload.len(),
                limit: self
                    .peer_max_body
                    .saturating_sub(StreamData::HEAD_LEN as usize),
                setting: "max_frame_body",
            }));
        }
        self.start_call(deadline, until, extra, false, |id, _| {
            Outgoing::Call(Frame::StreamData(StreamData { id, ..data }))
        })
        .await
    }

    /// As [`Conn::send_stream_data`], with the payload read from `region` of a file when
    /// written (with `sendfile` where the transport can); `head.payload` is ignored.
    pub(crate) async fn send_stream_file(
        self: &Arc<Self>,
        head: StreamData,
        region: FileRegion,
        deadline: Duration,
        until: Instant,
        extra: Option<OwnedSemaphorePermit>,
    ) -> Result<PendingCall, Error> {
        let body = StreamData::HEAD_LEN as usize + region.len;
        if body > self.peer_max_body {
            return Err(self.not_executed(NotExecuted::PayloadTooLarge {
                len: region.len,
                limit: self
                    .peer_max_body
                    .saturating_sub(StreamData::HEAD_LEN as usize),
                setting: "max_frame_body",
            }));
        }
        self.start_call(deadline, until, extra, false, |id, _| {
            Outgoing::CallFile(
                StreamData {
                    id,
                    payload: Bytes::new(),
                    ..head
                },
                region,
            )
        })
        .await
    }

    /// Takes an in-flight slot (waiting until `until` at most), registers a call and queues
    /// the frame `build` makes from the call's id and remaining budget in ms.
    async fn start_call(
        self: &Arc<Self>,
        deadline: Duration,
        until: Instant,
        extra: Option<OwnedSemaphorePermit>,
        cancel_on_drop: bool,
        build: impl FnOnce(u64, u32) -> Outgoing,
    ) -> Result<PendingCall, Error> {
        let mut budget = deadline;
        let slot = match self.call_slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Slow path: wait for an in-flight slot, within the deadline.
                let acquired =
                    tokio::time::timeout_at(until, self.call_slots.clone().acquire_owned()).await;
                budget = until.saturating_duration_since(Instant::now());
                match acquired {
                    Ok(Ok(slot)) if !budget.is_zero() => slot,
                    _ => {
                        return Err(self.not_executed(NotExecuted::DeadlineBeforeSend { deadline }));
                    }
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // A call its caller waits for is expired by the connection's deadline task (no timer
        // of its own); one that outlives its `PendingCall` keeps the caller's timer.
        let swept = cancel_on_drop;
        let sooner = self
            .calls
            .lock()
            .expect("calls lock poisoned")
            .register(id, tx, slot, extra, swept.then_some(until))
            .map_err(|(reason, message)| {
                self.not_executed(NotExecuted::ConnectionClosing { reason, message })
            })?;
        if sooner {
            self.deadline_rearm.notify_one();
        }
        let outgoing = build(id, budget.as_millis().clamp(1, u128::from(u32::MAX)) as u32);
        if self.tx.send(outgoing).is_err() {
            self.calls.lock().expect("calls lock poisoned").remove(id);
            return Err(self.not_executed(NotExecuted::ConnectionClosing {
                reason: GoAwayReason::Normal,
                message: "connection closed before the request was written".into(),
            }));
        }
        Ok(PendingCall {
            conn: self.clone(),
            id,
            rx,
            until,
            deadline,
            armed: cancel_on_drop,
            swept,
        })
    }

    fn reply_to_result(&self, reply: Reply, deadline: Duration) -> Result<Bytes, Error> {
        let peer = self.peer.addr;
        match reply {
            Reply::Ok(bytes) => Ok(bytes),
            Reply::Failed(f) => Err(failure_to_error(
                peer,
                f.status,
                f.retry_after_ms,
                f.message,
            )),
            Reply::NotAccepted(reason, message) => {
                Err(self.not_executed(NotExecuted::ConnectionClosing { reason, message }))
            }
            Reply::Lost(message) => Err(Error::Unknown {
                peer,
                reason: Unknown::ConnectionLost(message),
            }),
            Reply::Expired => Err(Error::Unknown {
                peer,
                reason: Unknown::DeadlineExceeded { deadline },
            }),
        }
    }

    /// Queues a one-way message. `Ok` means queued for writing.
    pub(crate) fn send_oneway(&self, route: &Route, payload: Bytes) -> Result<(), Error> {
        self.check_sizes(route, &payload, ONEWAY_OVERHEAD)
            .map_err(|r| self.not_executed(r))?;
        if let CallsState::Draining(reason, message) =
            self.calls.lock().expect("calls lock poisoned").state()
        {
            return Err(self.not_executed(NotExecuted::ConnectionClosing {
                reason: *reason,
                message: message.clone(),
            }));
        }
        self.try_send_control(Frame::OneWay(OneWay {
            id: 0,
            route: route.0.clone(),
            payload,
        }))
        .map_err(|r| self.not_executed(r))?;
        self.activity.touch_oneway();
        Ok(())
    }
}

impl Conn {
    /// Queues a one-way message like [`Conn::send_oneway`], but waits for room when the write
    /// queue is full instead of failing: the back-pressure of a long-lived lane whose single
    /// producer should slow down to the socket's pace.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped, the message was not queued.
    pub(crate) async fn send_oneway_wait(
        &self,
        route: &Route,
        payload: Bytes,
    ) -> Result<(), Error> {
        loop {
            let notified = self.room.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.room.wanted.store(true, Ordering::SeqCst);
            match self.send_oneway(route, payload.clone()) {
                Err(Error::NotExecuted {
                    reason: NotExecuted::LocalQueueFull { .. },
                    ..
                }) => {}
                done => return done,
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closing.cancelled() => {
                    return Err(self.not_executed(NotExecuted::ConnectionClosing {
                        reason: GoAwayReason::Normal,
                        message: "connection closed while waiting for write-queue room".into(),
                    }));
                }
            }
        }
    }
}

/// A call that was queued for writing and awaits its reply.
///
/// Dropping it abandons the call: for requests, the call is removed and the peer is told
/// (a late reply is discarded); for stream packets, the packet stays in flight and its reply
/// releases its slots.
#[derive(Debug)]
pub struct PendingCall {
    conn: Arc<Conn>,
    id: u64,
    rx: oneshot::Receiver<Reply>,
    until: Instant,
    deadline: Duration,
    /// Whether dropping before the reply cancels the call.
    armed: bool,
    /// Whether the connection's deadline task expires the call (else `wait` keeps a timer).
    swept: bool,
}

impl PendingCall {
    /// Waits for the reply until the call's deadline.
    ///
    /// # Cancel safety
    ///
    /// As dropping the [`PendingCall`].
    pub async fn wait(mut self) -> Result<Bytes, Error> {
        let received = if self.swept {
            Ok((&mut self.rx).await)
        } else {
            tokio::time::timeout_at(self.until, &mut self.rx).await
        };
        let reply = match received {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Reply::Lost("connection dropped the call".into()),
            Err(_) => {
                // Removes the call and tells the peer; a late reply is discarded.
                self.abandon();
                return Err(Error::Unknown {
                    peer: self.conn.peer.addr,
                    reason: Unknown::DeadlineExceeded {
                        deadline: self.deadline,
                    },
                });
            }
        };
        self.armed = false;
        self.conn.reply_to_result(reply, self.deadline)
    }

    fn abandon(&mut self) {
        self.armed = false;
        if self
            .conn
            .calls
            .lock()
            .expect("calls lock poisoned")
            .remove(self.id)
        {
            let _ = self.conn.try_send_control(Frame::Cancel { id: self.id });
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if self.armed {
            self.abandon();
        }
    }
}

/// A handle to an established connection. Cheap to clone; the connection lives until it is
/// closed (by either side, by a timeout, or by a protocol error), not until handles drop.
#[derive(Debug, Clone)]
pub struct Connection {
    pub(crate) conn: Arc<Conn>,
}

impl Connection {
    /// Who is at the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.conn.peer
    }

    /// This connection's number, unique in this process for as long as it runs.
    pub fn id(&self) -> u64 {
        self.conn.id
    }

    /// Answers the peer's request `id` with `payload`, releasing its in-flight `slot` once
    /// written. Never blocks: replies are bounded by the in-flight limit. A reply on a closed
    /// connection is dropped and counted.
    pub fn reply(&self, slot: ReplySlot, id: u64, payload: Bytes) {
        self.conn.reply(
            slot.0,
            Frame::Response(peerwire_wire::Response { id, payload }),
        );
    }

    /// Answers the peer's request `id` with `head` followed by `tail`, as one payload, without
    /// copying `tail` into a joined buffer when the reply fits one of the peer's frames (a
    /// chunk of a stream behind its small header, say).
    pub fn reply_with_head(&self, slot: ReplySlot, id: u64, head: Bytes, tail: Bytes) {
        self.conn.reply_tail(slot.0, id, head, tail);
    }

    /// Answers the peer's request `id` with `prefix` followed by `region` of a file, as one
    /// payload: the file's bytes go from the page cache to the socket with `sendfile` on
    /// plaintext TCP (read and written through a buffer on TLS and other transports;
    /// [`crate::transport::file_send_totals`] tells which). The caller receives an ordinary
    /// reply. The whole reply must fit one of the peer's frames (`max_frame_body` in its
    /// hello, [`Connection::peer_max_frame_body`]); a larger one is answered `ReplyTooLarge`.
    pub fn reply_file(&self, slot: ReplySlot, id: u64, prefix: Bytes, region: FileRegion) {
        self.conn.reply_file(slot.0, id, prefix, region);
    }

    /// Answers the peer's request `id` with a failure: its `status` (which tells the caller
    /// whether the call may have run), a backoff hint for `Busy` (0 = none) and a message.
    pub fn fail(
        &self,
        slot: ReplySlot,
        id: u64,
        status: Status,
        retry_after_ms: u32,
        message: String,
    ) {
        self.conn.fail(slot.0, id, status, retry_after_ms, message);
    }

    /// Calls `route` on the peer and waits up to `deadline` for the reply.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call: it is removed from the pending table, its
    /// in-flight slot is released, a cancel frame tells the peer, and a late reply is
    /// discarded. The outcome on the peer is then unknown.
    pub async fn call(
        &self,
        route: impl Into<Route>,
        payload: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, Error> {
        let until = Instant::now() + deadline;
        let context = crate::context::outgoing(None).as_bytes().clone();
        self.conn
            .call(&route.into(), payload, context, deadline, until)
            .await
    }

    /// Queues a one-way message (at most once). `Ok` means queued; a full write queue or a
    /// closing connection is an immediate error.
    pub fn send_oneway(&self, route: impl Into<Route>, payload: Bytes) -> Result<(), Error> {
        self.conn.send_oneway(&route.into(), payload)
    }

    /// Whether the connection accepts new calls.
    pub fn is_open(&self) -> bool {
        self.conn.open.load(Ordering::Acquire)
    }

    /// Starts a graceful close: no new calls; in-flight calls in both directions finish.
    pub fn close(&self) {
        self.conn
            .begin_close(GoAwayReason::Normal, "closed by its owner".into());
    }

    /// Starts a graceful close telling the peer `reason` and `message` in the go-away.
    pub fn close_with(&self, reason: GoAwayReason, message: impl Into<String>) {
        self.conn.begin_close(reason, message.into());
    }

    /// Closes at once, without waiting for calls in flight (a misbehaving peer), telling the
    /// peer `reason` and `message`.
    pub fn abort(&self, reason: GoAwayReason, message: impl Into<String>) {
        self.conn.begin_close_hard(reason, message.into());
    }

    /// Waits until a close is requested, by either side, a timeout or an error (calls in
    /// flight may still finish); at once if one was.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closing(&self) {
        self.conn.closing.cancelled().await;
    }

    /// Waits until the connection is fully closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closed(&self) {
        self.conn.closed.cancelled().await;
    }

    /// Queues a one-way message like [`Connection::send_oneway`], but waits for room when the
    /// write queue is full instead of failing: the back-pressure of a long-lived lane whose
    /// single producer should slow down to the socket's pace (a raft stream).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped, the message was not queued.
    pub async fn send_oneway_wait(&self, route: &Route, payload: Bytes) -> Result<(), Error> {
        self.conn.send_oneway_wait(route, payload).await
    }

    /// The largest one-way payload on `route` the peer accepts (its frame limit less the
    /// frame's own fields).
    pub fn max_oneway_payload(&self, route: &Route) -> usize {
        self.conn.max_oneway_payload(route)
    }

    /// Who the peer is, as far as the connection's handshake proved it: the node or user its
    /// certificate names (TLS), the secret it holds (secret mode), or only its address.
    pub fn principal(&self) -> &Principal {
        &self.conn.principal
    }

    /// Whether the peer's principal may make `access` under this connection's access policy
    /// ([`ConnectionConfig::access`](crate::ConnectionConfig::access)); a service checks the
    /// targets it knows (the RpcEnv its endpoints).
    ///
    /// # Errors
    ///
    /// [`Denied`](crate::access::Denied), naming the principal and the rule.
    pub fn check_access(
        &self,
        access: crate::access::Access<'_>,
    ) -> Result<(), crate::access::Denied> {
        self.conn.check(access)
    }

    /// The largest frame body the peer accepts (`max_frame_body` in its hello): the bound on
    /// a [`Connection::reply_file`].
    pub fn peer_max_frame_body(&self) -> usize {
        self.conn.peer_max_body
    }

    /// Sends a data-stream packet as a call (its reply is the acknowledgement) and returns
    /// once it is queued for writing; the call times out at `until` (`deadline` is the budget
    /// it was given, named in the error). `hold` is kept until the reply arrives (a stream's
    /// outstanding-packet slot). Dropping the returned [`PendingCall`] does not cancel the
    /// packet: it stays in flight, and its reply releases the slots.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped before it returns, the packet was not queued.
    pub async fn send_stream_data(
        &self,
        data: StreamData,
        deadline: Duration,
        until: Instant,
        hold: Option<OwnedSemaphorePermit>,
    ) -> Result<PendingCall, Error> {
        self.conn
            .send_stream_data(data, deadline, until, hold)
            .await
    }

    /// As [`Connection::send_stream_data`], with the payload read from `region` of a file when
    /// written (with `sendfile` where the transport can); `head.payload` is ignored.
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::send_stream_data`].
    pub async fn send_stream_file(
        &self,
        head: StreamData,
        region: FileRegion,
        deadline: Duration,
        until: Instant,
        hold: Option<OwnedSemaphorePermit>,
    ) -> Result<PendingCall, Error> {
        self.conn
            .send_stream_file(head, region, deadline, until, hold)
            .await
    }

    /// Calls `route` on the peer and waits until `until` for the reply (`deadline` is the
    /// budget the call was given, named in errors).
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::call`].
    pub async fn call_until(
        &self,
        route: &Route,
        payload: Bytes,
        deadline: Duration,
        until: Instant,
    ) -> Result<Bytes, Error> {
        let context = crate::context::outgoing(None).as_bytes().clone();
        self.conn
            .call(route, payload, context, deadline, until)
            .await
    }

    /// The last heartbeat round-trip time, once one was measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.conn.activity.rtt()
    }

    /// Replies that arrived after their call had given up (deadline or cancellation).
    pub fn late_replies(&self) -> u64 {
        self.conn.stats.late_replies.load(Ordering::Relaxed)
    }
}
