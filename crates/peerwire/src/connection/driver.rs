//! The connection driver: the read loop and the close sequence.
//!
//! Close sequence (both sides run the same one):
//! 1. A close is requested (owner, idle timeout, server shutdown, or the peer's go-away).
//!    The driver sends `GoAway(mark)` where `mark` is the highest request id it accepted;
//!    from then on it ignores requests above the mark (the peer knows they were not
//!    executed) and refuses new outgoing calls.
//! 2. It keeps reading: replies to its own calls still arrive, and requests up to the mark
//!    are still served.
//! 3. When no call is in flight in either direction (or the drain timeout passes), it queues
//!    `Shutdown`: the writer flushes and closes the write side.
//! 4. When the peer closes its side, remaining calls fail (as lost, or as not accepted if above
//!    the peer's mark) and the connection is closed.
//!
//! A hard close (protocol error, read timeout, write failure) sends a go-away if the peer can
//! hear it, closes the write side, discards input until the peer closes (bounded), and fails
//! every call at once.
//!
//! The phases and their transitions are `lifecycle.rs` (a pure state type, table-tested); the
//! read loop here turns what happens into its events and carries out the actions it returns.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use peerwire_wire::{Failure, Frame, FrameKind, GoAway, GoAwayReason, Heartbeat, Refused, Status};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::calls::Reply;
use super::frame_reader::{FrameReader, ReadError};
use super::lifecycle::{Action, Event, Phase, Timing};
use super::outgoing::Outgoing;
use super::{CloseRequest, Conn, Connection, ReplySlot};

/// While draining, how often the driver checks whether every call is done.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// After closing our write side, how long we wait for the peer to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// Runs the connection until it is closed.
///
/// # Cancel safety
///
/// Dropping it (its runtime went away) closes the connection as if it had ended: callers are
/// answered and whoever waits for the close is woken.
pub(crate) async fn run(conn: Arc<Conn>, mut reader: FrameReader) {
    let mut ending = Ending {
        conn: &conn,
        why: None,
    };
    ending.why = Some(read_loop(&conn, &mut reader).await);
}

/// Closes the connection when the driver ends, however it ends.
struct Ending<'a> {
    conn: &'a Arc<Conn>,
    why: Option<String>,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        let conn = self.conn;
        let why = self
            .why
            .take()
            .unwrap_or_else(|| "the connection's task was dropped".into());
        tracing::debug!(%why, "connection closed");
        conn.open.store(false, Ordering::Release);
        if let Ok(mut calls) = conn.calls.lock() {
            calls.close(&why);
        }
        conn.abort.cancel();
        conn.closing.cancel();
        conn.closed.cancel();
        metrics::counter!("peerwire_connections_closed_total").increment(1);
        conn.inbound
            .on_disconnected(&Connection { conn: conn.clone() }, &why);
    }
}

async fn read_loop(conn: &Arc<Conn>, reader: &mut FrameReader) -> String {
    // The handle the connection's service sees, made once.
    let service_handle = Connection { conn: conn.clone() };
    let timing = Timing {
        drain: conn.cfg.drain_timeout,
        linger: LINGER,
    };
    let mut phase = Phase::Open;
    let mut drain_tick = tokio::time::interval(DRAIN_POLL);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    // Built once: recreating these every iteration would register and unregister a waiter
    // (and a timer) for every read.
    let closing = conn.closing.cancelled();
    tokio::pin!(closing);
    let linger_timer = tokio::time::sleep_until(far);
    tokio::pin!(linger_timer);
    loop {
        let event = tokio::select! {
            biased;
            _ = &mut closing, if phase.is_open() => {
                let request = conn.take_close_request().unwrap_or(CloseRequest {
                    reason: GoAwayReason::Normal,
                    message: "writer stopped".into(),
                    hard: true,
                });
                Event::CloseRequested {
                    reason: request.reason,
                    message: request.message,
                    hard: request.hard,
                }
            }
            _ = drain_tick.tick(), if phase.is_draining() => Event::DrainCheck {
                drained: conn.is_drained(),
            },
            _ = &mut linger_timer, if phase.is_lingering() => Event::LingerExpired,
            read = reader.next(Some(&conn.activity)) => match read {
                Ok(frame) => {
                    let arriving = reader.open_request();
                    if let Err((reason, message)) = handle(conn, &service_handle, frame, arriving) {
                        tracing::warn!(%reason, %message, "closing connection");
                        conn.begin_close_hard(reason, message);
                    }
                    continue;
                }
                Err(ReadError::Refused(refused)) => {
                    if let Err((reason, message)) = refuse(conn, refused) {
                        conn.begin_close_hard(reason, message);
                    }
                    continue;
                }
                Err(ReadError::Eof) if phase.is_lingering() => Event::PeerClosed,
                Err(e) => {
                    let protocol = e.goaway_reason();
                    if let Some(reason) = protocol {
                        tracing::warn!(%reason, error = %e, "closing connection");
                        metrics::counter!("peerwire_protocol_errors_total").increment(1);
                    }
                    Event::ReadFailed {
                        protocol,
                        why: e.to_string(),
                    }
                }
            },
        };
        let (next, actions) = phase.step(event, Instant::now(), timing);
        for action in actions {
            match action {
                Action::CloseHard { reason, message } => conn.begin_close_hard(reason, message),
                Action::AnnounceClose { reason, message } => start_close(conn, reason, message),
                Action::ShutdownWrite => {
                    conn.tx.send(Outgoing::Shutdown).ok();
                }
                Action::WaitForPeerClose { until } => linger_timer.as_mut().reset(until),
                Action::DiscardUntilPeerCloses => linger(reader, LINGER).await,
            }
        }
        phase = next;
        if let Phase::Closed { why } = phase {
            return why;
        }
    }
}

/// Announces the close: sends our go-away with the accepted mark and stops new calls.
fn start_close(conn: &Conn, reason: GoAwayReason, message: String) {
    let mark = conn.last_accepted.load(Ordering::Acquire);
    conn.goaway_mark.store(mark, Ordering::Release);
    conn.calls
        .lock()
        .expect("calls lock poisoned")
        .drain(reason, message.clone());
    conn.force_send(Frame::GoAway(GoAway {
        last_request_id: mark,
        reason,
        message,
    }));
}

/// Discards input until the peer closes or `limit` passes, so that closing our socket does not
/// reset the connection before the peer has read our go-away.
async fn linger(reader: &mut FrameReader, limit: Duration) {
    let _ = tokio::time::timeout(limit, reader.discard_until_eof()).await;
}

/// Admits an inbound call (a request or a stream packet) with id `id`: `None` if it is above
/// our go-away mark (the peer knows it was not executed) or was answered `Busy` because the
/// connection's in-flight limit is reached.
fn admit_call(
    conn: &Arc<Conn>,
    id: u64,
) -> Result<Option<OwnedSemaphorePermit>, (GoAwayReason, String)> {
    if id > conn.goaway_mark.load(Ordering::Acquire) {
        metrics::counter!("peerwire_requests_ignored_total", "reason" => "goaway").increment(1);
        return Ok(None);
    }
    conn.last_accepted.fetch_max(id, Ordering::AcqRel);
    match conn.serve_slots.clone().try_acquire_owned() {
        Ok(slot) => Ok(Some(slot)),
        Err(_) => {
            metrics::counter!("peerwire_calls_busy_total", "reason" => "max_inflight").increment(1);
            conn.try_send_control(Frame::Failure(Failure {
                id,
                status: Status::Busy,
                retry_after_ms: 0,
                message: format!(
                    "connection has {} calls in flight (setting `max_inflight`)",
                    conn.max_inflight
                ),
            }))
            .map_err(|_| {
                (
                    GoAwayReason::LimitExceeded,
                    "peer keeps sending requests but does not read the replies".to_owned(),
                )
            })?;
            Ok(None)
        }
    }
}

/// Answers a message that exceeds this side's limit for one message, which the reader
/// refused and whose parts it drops: a request fails with `PayloadTooLarge` (not executed), a
/// one-way message is dropped and counted, and the call whose reply it was fails with
/// `ReplyTooLarge` (it ran). An error closes the connection hard with that reason.
fn refuse(conn: &Arc<Conn>, refused: Refused) -> Result<(), (GoAwayReason, String)> {
    let Refused {
        kind,
        id,
        route,
        len,
        limit,
    } = refused;
    let what = match kind {
        FrameKind::Request => "request",
        FrameKind::OneWay => "one-way message",
        _ => "reply",
    };
    metrics::counter!("peerwire_messages_refused_total", "kind" => what).increment(1);
    let message = format!(
        "the {what} of {len} bytes exceeds the receiver's limit of {limit} bytes for one message (the receiver's setting `max_message_bytes`)"
    );
    tracing::warn!(%message, route = %String::from_utf8_lossy(&route), id, "refused a message");
    match kind {
        FrameKind::Request => {
            if let Some(slot) = admit_call(conn, id)? {
                conn.fail(slot, id, Status::PayloadTooLarge, 0, message);
            }
        }
        FrameKind::OneWay => {}
        _ => {
            let done = conn.calls.lock().expect("calls lock poisoned").complete(
                id,
                Reply::Failed(Failure {
                    id,
                    status: Status::ReplyTooLarge,
                    retry_after_ms: 0,
                    message,
                }),
            );
            if !done {
                conn.note_late_reply();
            }
        }
    }
    Ok(())
}

/// Handles one frame; `arriving` is the request whose parts are still arriving, if any. An
/// error closes the connection hard with that reason.
fn handle(
    conn: &Arc<Conn>,
    handle: &Connection,
    frame: Frame,
    arriving: Option<u64>,
) -> Result<(), (GoAwayReason, String)> {
    match frame {
        Frame::Request(request) => {
            if let Some(slot) = admit_call(conn, request.id)? {
                conn.inbound.on_request(handle, request, ReplySlot(slot));
            }
        }
        Frame::StreamData(data) => {
            if conn.peer.lane != peerwire_wire::Lane::DataStream {
                return Err((
                    GoAwayReason::ProtocolError,
                    format!("stream data on the {} lane", conn.peer.lane),
                ));
            }
            if let Some(slot) = admit_call(conn, data.id)? {
                conn.inbound.on_stream_data(handle, data, ReplySlot(slot));
            }
        }
        Frame::OneWay(message) => {
            if conn.goaway_mark.load(Ordering::Acquire) == u64::MAX {
                conn.activity.touch_oneway();
                conn.inbound.on_oneway(handle, message);
            }
        }
        Frame::Response(response) => {
            let done = conn
                .calls
                .lock()
                .expect("calls lock poisoned")
                .complete(response.id, Reply::Ok(response.payload));
            if !done {
                conn.note_late_reply();
            }
        }
        Frame::Failure(failure) => {
            let id = failure.id;
            let done = conn
                .calls
                .lock()
                .expect("calls lock poisoned")
                .complete(id, Reply::Failed(failure));
            if !done {
                conn.note_late_reply();
            }
        }
        Frame::Cancel { id } => {
            // Only calls we accepted (or whose parts are arriving: recorded now, the call is
            // refused when it is whole) can be cancelled; anything else is noise.
            if id <= conn.last_accepted.load(Ordering::Acquire) || arriving == Some(id) {
                metrics::counter!("peerwire_cancels_received_total").increment(1);
                conn.cancels.cancel(id);
                conn.inbound.on_cancel(handle, id);
            }
        }
        Frame::Heartbeat(hb) if !hb.ack => {
            // Best effort: a full queue means the link is busy, which proves liveness anyway.
            let _ = conn.try_send_control(Frame::Heartbeat(Heartbeat { ack: true, ..hb }));
        }
        Frame::Heartbeat(hb) => {
            let rtt = conn.activity.now_us().saturating_sub(hb.timestamp_us);
            conn.activity.record_rtt(rtt);
            metrics::histogram!("peerwire_heartbeat_rtt_seconds").record(rtt as f64 / 1e6);
        }
        Frame::GoAway(goaway) => {
            let failed = conn.calls.lock().expect("calls lock poisoned").peer_goaway(
                goaway.last_request_id,
                goaway.reason,
                &goaway.message,
            );
            tracing::debug!(reason = %goaway.reason, message = %goaway.message, failed, "peer is going away");
            conn.begin_close(
                GoAwayReason::Normal,
                format!("peer is going away ({}): {}", goaway.reason, goaway.message),
            );
        }
        Frame::Hello(_) | Frame::HelloAck(_) => {
            return Err((
                GoAwayReason::ProtocolError,
                "hello after the handshake".into(),
            ));
        }
    }
    Ok(())
}
