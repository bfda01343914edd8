//! The responder role (Hadoop's `Responder`): turns a handler's outcome into a reply frame
//! and hands it to the call's connection.
//!
//! Handing over never blocks the handler: the connection's writer task does the writing
//! (batched with other replies), so a slow client never holds up a handler. The reply carries
//! the call's in-flight slot, which is released once the reply is written.

use peerwire_wire::{Frame, Response, Status};

use super::call::Call;
use super::handler::Outcome;

/// Sends the reply for a call that ran.
pub(crate) fn respond(call: Call, outcome: Outcome) {
    let Some(slot) = call.slot else {
        // One-way: nobody waits for a reply, but failures are counted.
        let failure = match outcome {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.message,
            Err(panic) => panic,
        };
        metrics::counter!("peerwire_oneway_failed_total").increment(1);
        tracing::debug!(error = %failure, "one-way handler failed");
        return;
    };
    call.conn.cancels().finish(call.id);
    match outcome {
        Ok(Ok(payload)) => call.conn.reply(
            slot,
            Frame::Response(Response {
                id: call.id,
                payload,
            }),
        ),
        Ok(Err(e)) => {
            let retry_ms = e
                .retry_after
                .map_or(0, |d| d.as_millis().min(u128::from(u32::MAX)) as u32);
            call.conn.fail(slot, call.id, e.status, retry_ms, e.message);
        }
        Err(panic) => call.conn.fail(
            slot,
            call.id,
            Status::Internal,
            0,
            format!("handler panicked: {panic}"),
        ),
    }
}

/// Answers a call its caller cancelled before a handler took it: it was not run. (The caller
/// has given up, so the answer only releases the call's slot.)
pub(crate) fn cancelled(call: Call) {
    metrics::counter!("peerwire_calls_cancelled_total").increment(1);
    call.conn.cancels().finish(call.id);
    if let Some(slot) = call.slot {
        call.conn.fail(
            slot,
            call.id,
            Status::Cancelled,
            0,
            "cancelled by the caller before it ran".into(),
        );
    }
}

/// Answers a call whose deadline passed before a handler took it: it was not run.
pub(crate) fn deadline_exceeded(call: Call) {
    metrics::counter!("peerwire_calls_expired_total").increment(1);
    call.conn.cancels().finish(call.id);
    if let Some(slot) = call.slot {
        let waited = call.received.elapsed();
        call.conn.fail(
            slot,
            call.id,
            Status::DeadlineExceeded,
            0,
            format!("deadline passed after {waited:?} in the call queue; not executed"),
        );
    }
}
