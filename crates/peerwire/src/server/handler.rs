//! The handler pool (Hadoop's `Handler` threads): tasks that take calls from the call queue
//! and run them.
//!
//! A call whose deadline passed while it waited is answered `DeadlineExceeded` without
//! running, and one its caller cancelled while it waited is skipped. A handler that panics fails its call with `Internal`; the pool keeps its size.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::time::Instant;

use futures::FutureExt;
use tokio_util::task::TaskTracker;

use super::call::Call;
use super::call_queue::CallQueue;
use super::responder;
use super::route::{HandlerError, Request};
use super::route_metrics::CallOutcome;

/// Starts `size` handler tasks on `tracker`. They stop when the queue is closed and empty.
pub(crate) fn spawn_pool(size: usize, queue: Arc<CallQueue<Call>>, tracker: &TaskTracker) {
    for index in 0..size {
        let queue = queue.clone();
        tracker.spawn(tracing::Instrument::instrument(
            async move {
                while let Some(call) = queue.pop().await {
                    run_call(call).await;
                }
            },
            tracing::debug_span!("handler", index),
        ));
    }
}

async fn run_call(mut call: Call) {
    let entry = call.route_entry.clone();
    let received = call.received;
    if call.deadline.is_some_and(|d| Instant::now() >= d) {
        responder::deadline_exceeded(call);
        entry.metrics.finished(CallOutcome::Expired, received);
        return;
    }
    if call.slot.is_some() && call.conn.cancels().is_cancelled(call.id) {
        responder::cancelled(call);
        entry.metrics.finished(CallOutcome::Cancelled, received);
        return;
    }
    let context = std::mem::take(&mut call.context);
    let span = crate::context::call_span(&call.route, &context);
    let request = Request {
        id: call.id,
        route: std::mem::take(&mut call.route),
        context: context.clone(),
        payload: std::mem::take(&mut call.payload),
        deadline: call.deadline,
        oneway: call.slot.is_none(),
        connection: call.connection(),
    };
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _entered = span.as_ref().map(tracing::Span::enter);
        entry.handler.call(request)
    })) {
        // A call with a context runs in its scope (calls the handler makes carry it on), and
        // in its span when it carries trace context.
        Ok(future) if !context.is_empty() => {
            let scoped = crate::context::scope(context, future);
            match span {
                Some(span) => {
                    AssertUnwindSafe(tracing::Instrument::instrument(scoped, span))
                        .catch_unwind()
                        .await
                }
                None => AssertUnwindSafe(scoped).catch_unwind().await,
            }
        }
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    let result = outcome.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        metrics::counter!("peerwire_handler_panics_total").increment(1);
        tracing::error!(panic = %what, "handler panicked");
        what
    });
    let kind = match &result {
        Ok(Ok(_)) => CallOutcome::Ok,
        Ok(Err(_)) => CallOutcome::Failed,
        Err(_) => CallOutcome::Panicked,
    };
    responder::respond(call, result);
    entry.metrics.finished(kind, received);
}

/// The outcome of running a handler: its result, or the panic message.
pub(crate) type Outcome = Result<Result<bytes::Bytes, HandlerError>, String>;
