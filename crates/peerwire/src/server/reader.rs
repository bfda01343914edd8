//! The reader role (Hadoop's `Listener.Reader`): admission of each decoded request.
//!
//! The connection driver decodes frames; for a server connection it hands every request and
//! one-way message to [`ServerInbound`], which finds the route, builds a [`Call`] and queues
//! it. A call that cannot be queued is answered at once: unknown route, or `Busy` with the
//! scheduler's retry hint. Nothing is dropped silently: one-way messages refused for lack of
//! room are counted.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use peerwire_wire::{OneWay, Request, Status};

use super::call::Call;
use super::call_queue::CallQueue;
use super::route::Routes;
use crate::connection::{Connection, ReplySlot, Service};

/// Admission of a server's inbound calls into its call queue: the server core's own service,
/// mounted at the default group of the rpc lane.
#[derive(Debug)]
pub(crate) struct ServerInbound {
    pub(crate) routes: Arc<Routes>,
    pub(crate) queue: Arc<CallQueue<Call>>,
    pub(crate) node_id: u64,
    /// `ServerConfig::max_context_bytes`.
    pub(crate) max_context: usize,
    /// The steps of streaming methods, handled as they arrive (not queued).
    pub(crate) streams: Option<Arc<crate::service::stream::StreamService>>,
}

impl Service for ServerInbound {
    fn on_request(&self, handle: &Connection, request: Request, ReplySlot(slot): ReplySlot) {
        let conn = &handle.conn;
        if let Err(denied) = conn.check(crate::access::Access::Route(&request.route)) {
            conn.fail(
                slot,
                request.id,
                Status::AccessDenied,
                0,
                denied.to_string(),
            );
            return;
        }
        if let Some(streams) = &self.streams
            && request.route == crate::service::stream::STREAM_ROUTE.as_bytes()
        {
            streams.on_request(handle, request, ReplySlot(slot));
            return;
        }
        let Some(handler) = self.routes.get(&request.route) else {
            metrics::counter!("peerwire_calls_rejected_total", "reason" => "unknown_route")
                .increment(1);
            conn.fail(
                slot,
                request.id,
                Status::UnknownRoute,
                0,
                format!(
                    "node {} has no route `{}`",
                    self.node_id,
                    String::from_utf8_lossy(&request.route)
                ),
            );
            return;
        };
        let context = match crate::context::accept(
            request.context,
            self.max_context,
            crate::context::SERVER_SETTING,
        ) {
            Ok(c) => c,
            Err(message) => {
                conn.fail(slot, request.id, Status::BadRequest, 0, message);
                return;
            }
        };
        let received = Instant::now();
        let call = Call {
            conn: conn.clone(),
            id: request.id,
            route: request.route,
            context,
            payload: request.payload,
            route_entry: handler.clone(),
            received,
            deadline: (request.deadline_ms > 0)
                .then(|| received + Duration::from_millis(u64::from(request.deadline_ms))),
            slot: Some(slot),
        };
        if let Err(rejected) = self.queue.push(call) {
            metrics::counter!("peerwire_calls_busy_total", "reason" => "call_queue").increment(1);
            let call = rejected.item;
            call.route_entry
                .metrics
                .finished(super::route_metrics::CallOutcome::Busy, call.received);
            let retry_ms = rejected
                .retry_after
                .map_or(0, |d| d.as_millis().min(u128::from(u32::MAX)) as u32);
            if let Some(slot) = call.slot {
                conn.fail(slot, call.id, Status::Busy, retry_ms, rejected.reason);
            }
        }
    }

    fn on_oneway(&self, handle: &Connection, message: OneWay) {
        let conn = &handle.conn;
        if let Err(denied) = conn.check(crate::access::Access::Route(&message.route)) {
            metrics::counter!("peerwire_oneway_dropped_total", "reason" => "access_denied")
                .increment(1);
            tracing::debug!(%denied, "one-way message refused");
            return;
        }
        if let Some(streams) = &self.streams
            && message.route == crate::service::stream::STREAM_ROUTE.as_bytes()
        {
            streams.on_oneway(handle, message.payload);
            return;
        }
        let Some(handler) = self.routes.get(&message.route) else {
            metrics::counter!("peerwire_oneway_dropped_total", "reason" => "unknown_route")
                .increment(1);
            tracing::debug!(route = %String::from_utf8_lossy(&message.route), "one-way message for unknown route dropped");
            return;
        };
        let call = Call {
            conn: conn.clone(),
            id: 0,
            route: message.route,
            context: crate::context::Context::empty(),
            payload: message.payload,
            route_entry: handler.clone(),
            received: Instant::now(),
            deadline: None,
            slot: None,
        };
        if self.queue.push(call).is_err() {
            metrics::counter!("peerwire_oneway_dropped_total", "reason" => "call_queue")
                .increment(1);
        }
    }
}
