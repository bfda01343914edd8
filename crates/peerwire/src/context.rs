//! Request context that crosses nodes (protocol version 4): a bounded set of key/value entries
//! carried by each call, such as W3C trace context (`traceparent`, `tracestate`) and a caller
//! context (`caller`: who started this work, as Hadoop's `CallerContext`, for audit logs).
//!
//! - **Sending.** A call carries the context given in
//!   [`CallOptions::context`](crate::CallOptions::context), merged over the context of the call being handled when it is made
//!   from inside a handler ([`current`]), so a context set by the first client reaches every
//!   node the work touches. With the `otel` feature, a call made inside a `tracing` span that
//!   has an OpenTelemetry context (`tracing-opentelemetry`) carries that span as its
//!   `traceparent`/`tracestate`.
//! - **Receiving.** A server checks each context against
//!   [`ServerConfig::max_context_bytes`](crate::ServerConfig) and the entry rules before the
//!   call is queued; a bad one fails that call alone with `BadRequest`, naming the limit. The
//!   handler reads it with [`Request::context`](crate::server::Request::context) and runs
//!   inside [`current`]'s scope; a call whose context has a `traceparent` runs in a
//!   `peerwire.call` span (fields `route`, `trace_id`, `caller`), which with the `otel`
//!   feature is the child of the caller's span.
//! - **Older peers.** A connection running at a version before 4 carries no context: it is
//!   dropped at the sender (counted in `peerwire_context_dropped_total`) and the call goes on.

use std::future::Future;

pub use peerwire_wire::context::{
    Context, ContextError, DEFAULT_MAX_CONTEXT, MAX_ENTRIES, MAX_KEY,
};

/// The setting a server's context limit comes from, as [`accept`] names it.
pub(crate) const SERVER_SETTING: &str = "ServerConfig::max_context_bytes";

/// Checks the context block a call arrived with against `limit`: the context, or the message
/// its call is failed with (`BadRequest`), naming the limit and the `setting` that sets it.
/// Counted in `peerwire_calls_rejected_total{reason="bad_context"}`. Every side that serves
/// calls (the server core, streaming methods, callbacks, the RpcEnv) takes contexts through it.
pub fn accept(block: bytes::Bytes, limit: usize, setting: &str) -> Result<Context, String> {
    Context::parse(block, limit).map_err(|e| {
        metrics::counter!("peerwire_calls_rejected_total", "reason" => "bad_context").increment(1);
        format!("{e} ({setting} = {limit})")
    })
}

/// The W3C trace context key naming the trace and the calling span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace context key with vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";
/// The caller context key: who started the work (a job, a user request), for audit logs.
pub const CALLER: &str = "caller";

tokio::task_local! {
    static CURRENT: Context;
}

/// The context of the call being handled by the current task, if any (set around every
/// handler whose call carried one, and by [`scope`]).
pub fn current() -> Option<Context> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `context` as [`current`]: calls it makes carry the context. For work a
/// handler hands to a task of its own (`tokio::spawn` does not inherit task-locals).
///
/// # Cancel safety
///
/// As `future`.
pub async fn scope<F: Future>(context: Context, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The context an outgoing call carries: `explicit` over the current call's context, then
/// (with `otel`) the current span as its trace context. The client's and
/// [`Connection`](crate::Connection)'s calls use it; a service that sends its own requests (or delivers asks
/// in process) may too.
pub fn outgoing(explicit: Option<&Context>) -> Context {
    let inherited = current();
    let merged = match (inherited, explicit) {
        (None, None) => Context::empty(),
        (Some(i), None) => i,
        (None, Some(e)) => e.clone(),
        (Some(i), Some(e)) => {
            let kept = i
                .iter()
                .filter(|(k, _)| e.get(k).is_none())
                .collect::<Vec<_>>();
            Context::from_entries(kept.into_iter().chain(e.iter()), usize::MAX)
                .unwrap_or_else(|_| e.clone())
        }
    };
    #[cfg(feature = "otel")]
    let merged = otel::inject(merged);
    merged
}

/// The trace id of a `traceparent` value (`00-<32 hex trace id>-<16 hex span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The span a handled call runs in when its context carries a `traceparent` (`None`
/// otherwise): `peerwire.call` with fields `route`, `trace_id` and `caller`, and, with the
/// `otel` feature, the caller's span as its parent. The server core uses it for every handled
/// call; a service that handles calls itself (the RpcEnv's asks) uses it the same way.
pub fn call_span(route: &[u8], context: &Context) -> Option<tracing::Span> {
    let traceparent = context.get_str(TRACEPARENT)?;
    let span = tracing::info_span!(
        "peerwire.call",
        route = %String::from_utf8_lossy(route),
        trace_id = trace_id(traceparent).unwrap_or(""),
        caller = context.get_str(CALLER).unwrap_or(""),
    );
    #[cfg(feature = "otel")]
    otel::adopt_parent(&span, context);
    Some(span)
}

#[cfg(feature = "otel")]
mod otel {
    //! W3C trace context through OpenTelemetry's own propagator.

    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{Context, TRACEPARENT, TRACESTATE};

    struct Entries(Vec<(String, String)>);

    impl Injector for Entries {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }

    struct Reader<'a>(&'a Context);

    impl Extractor for Reader<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get_str(key)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k).collect()
        }
    }

    /// `context` with the current span's trace context, when the span has a valid one.
    pub(super) fn inject(context: Context) -> Context {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return context;
        }
        let mut entries = Entries(Vec::new());
        TraceContextPropagator::new().inject_context(&cx, &mut entries);
        let mut out = context;
        for (k, v) in &entries.0 {
            if k == TRACEPARENT || k == TRACESTATE {
                out = out.with(k, v.as_bytes(), usize::MAX).unwrap_or(out);
            }
        }
        out
    }

    /// Makes `span` the child of the span `context`'s trace context names.
    pub(super) fn adopt_parent(span: &tracing::Span, context: &Context) {
        let parent = TraceContextPropagator::new().extract(&Reader(context));
        if parent.span().span_context().is_valid() {
            // Without an OpenTelemetry layer there is nothing to link: the span keeps its
            // `trace_id` field.
            let _ = span.set_parent(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(entries: &[(&str, &str)]) -> Context {
        Context::from_entries(
            entries.iter().map(|(k, v)| (*k, v.as_bytes())),
            DEFAULT_MAX_CONTEXT as usize,
        )
        .unwrap()
    }

    #[test]
    fn trace_ids_are_read_from_traceparent() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("00-short-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(""), None);
    }

    #[tokio::test]
    async fn an_outgoing_call_inherits_the_handled_calls_context_under_its_own() {
        assert!(outgoing(None).is_empty(), "nothing outside a handler");
        let handled = ctx(&[(CALLER, "job-1"), ("tenant", "a")]);
        let explicit = ctx(&[("tenant", "b")]);
        let (plain, merged) = scope(handled.clone(), async {
            (outgoing(None), outgoing(Some(&explicit)))
        })
        .await;
        assert_eq!(plain, handled);
        assert_eq!(merged.get_str(CALLER), Some("job-1"));
        assert_eq!(merged.get_str("tenant"), Some("b"));
        assert_eq!(merged.len(), 2);
        assert_eq!(outgoing(Some(&explicit)), explicit);
    }
}
