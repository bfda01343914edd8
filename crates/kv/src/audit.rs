//! The audit log and the context a request carries through the cluster.
//!
//! A request that carries a context — a caller context (who started the work) or W3C trace
//! context — gets one `info` event per node it touches, under [`AUDIT_TARGET`], as Hadoop's
//! NameNode logs each operation with its `callerContext`:
//!
//! - where it arrives (`method` `put`, `get`, … for the native protocol; `http.put`,
//!   `http.get`, … for the HTTP API, whose context comes from the `traceparent`, `tracestate`
//!   and [`CALLER_HEADER`] headers);
//! - on the leader, when a follower forwards it (`leader.propose`; the forwarded call carries
//!   the context);
//! - on **every** member when the write is applied (`method` `apply`, with its `index`): the
//!   leader proposes the entry with the context in the raft entry's own `context` field, so it
//!   reaches the followers over the raft append lane with the entry, and survives in the log.
//!   The event is emitted inside a `peerwire.call` span (route `raft.apply`), which with
//!   peerwire's `otel` feature is the child of the leader's span.
//!
//! Fields: `node`, `method`, `key`, `caller`, `trace_id` (and `index` on `apply`).

use axum::http::HeaderMap;
use peerwire::context::{CALLER, Context, DEFAULT_MAX_CONTEXT, TRACEPARENT, TRACESTATE};

/// The audit log's target.
pub const AUDIT_TARGET: &str = "peerwire_kv::audit";

/// The HTTP header carrying the caller context (`caller` in the native protocol's context).
pub const CALLER_HEADER: &str = "x-caller-context";

/// The route named by the span an applied entry's audit event is emitted in.
const APPLY_ROUTE: &[u8] = b"raft.apply";

fn trace_id(context: &Context) -> &str {
    context
        .get_str(TRACEPARENT)
        .and_then(peerwire::context::trace_id)
        .unwrap_or("")
}

/// Logs a request that arrived at `node` with `context` (nothing when it has none).
pub(crate) fn request(node: u64, method: &str, key: &str, context: &Context) {
    if context.is_empty() {
        return;
    }
    tracing::info!(
        target: AUDIT_TARGET,
        node,
        method,
        key,
        caller = context.get_str(CALLER).unwrap_or(""),
        trace_id = trace_id(context),
        "request"
    );
}

/// Logs the write to `key` applied at `index` on `node`, from the context its entry carried
/// (raw, as the raft entry holds it; nothing when empty or undecodable).
pub(crate) fn applied(node: u64, index: u64, key: &str, entry_context: &[u8]) {
    if entry_context.is_empty() {
        return;
    }
    let context = match Context::parse(
        bytes::Bytes::copy_from_slice(entry_context),
        usize::from(DEFAULT_MAX_CONTEXT),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(index, error = %e, "an entry's context does not decode; not audited");
            return;
        }
    };
    let span = peerwire::context::call_span(APPLY_ROUTE, &context);
    let _entered = span.as_ref().map(tracing::Span::enter);
    tracing::info!(
        target: AUDIT_TARGET,
        node,
        method = "apply",
        index,
        key,
        caller = context.get_str(CALLER).unwrap_or(""),
        trace_id = trace_id(&context),
        "applied"
    );
}

/// The context of an HTTP request: its `traceparent`, `tracestate` and [`CALLER_HEADER`]
/// headers, within the same limits as a native call's context. A header that is not text or
/// breaks a limit is an error naming it.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Context, String> {
    let mut entries = Vec::new();
    for (header, key) in [
        (TRACEPARENT, TRACEPARENT),
        (TRACESTATE, TRACESTATE),
        (CALLER_HEADER, CALLER),
    ] {
        if let Some(value) = headers.get(header) {
            entries.push((key, value.as_bytes()));
        }
    }
    if entries.is_empty() {
        return Ok(Context::empty());
    }
    Context::from_entries(entries, usize::from(DEFAULT_MAX_CONTEXT))
        .map_err(|e| format!("the request's context headers: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_the_context() {
        let mut h = HeaderMap::new();
        assert!(from_headers(&h).unwrap().is_empty());
        h.insert(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        h.insert(CALLER_HEADER, "nightly-report".parse().unwrap());
        let c = from_headers(&h).unwrap();
        assert_eq!(c.get_str(CALLER), Some("nightly-report"));
        assert_eq!(trace_id(&c), "0af7651916cd43dd8448eb211c80319c");
        h.insert(CALLER_HEADER, "x".repeat(5000).parse().unwrap());
        let e = from_headers(&h).unwrap_err();
        assert!(e.contains("context"), "{e}");
    }
}
