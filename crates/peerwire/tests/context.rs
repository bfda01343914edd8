//! Request context across nodes (protocol version 4): a caller context and a trace set by the
//! first client reach a server two hops away, whose `peerwire.call` span is (with the `otel`
//! feature) the child of the span that called it; an oversize or malformed context fails its
//! call alone; a peer on version 3 still talks, with the context dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use peerwire::context::{CALLER, Context, DEFAULT_MAX_CONTEXT};
use peerwire::wire::{Frame, Request as WireRequest};
use peerwire::{
    CallOptions, Client, ClientConfig, ConnectionConfig, Error, Identity, NotExecuted, Request,
    Server, ServerConfig, Status, handler_fn,
};
use peerwire_testkit::{Received, ScriptedPeer};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn context(entries: &[(&str, &str)]) -> Context {
    Context::from_entries(
        entries.iter().map(|(k, v)| (*k, v.as_bytes())),
        usize::from(DEFAULT_MAX_CONTEXT),
    )
    .unwrap()
}

/// What the last hop saw: its caller context and its `traceparent`.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// `hop2` records its call's context; `hop1` calls `hop2` on `next` from inside its handler.
async fn two_hops(client: Client) -> (Server, Server, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let last = Server::builder(ServerConfig::default())
        .route(
            "hop2",
            handler_fn(move |req: Request| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push((
                        req.caller_context().map(str::to_owned),
                        req.context().get_str("traceparent").map(str::to_owned),
                    ));
                    Ok(Bytes::from_static(b"done"))
                }
            }),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let next = last.local_addr();
    let first = Server::builder(ServerConfig::default())
        .route(
            "hop1",
            handler_fn(move |req: Request| {
                let client = client.clone();
                async move {
                    // No context is passed: the handled call's context goes on by itself.
                    client
                        .call(next, "hop2", req.into_payload())
                        .await
                        .map_err(|e| peerwire::HandlerError::new(e.to_string()))
                }
            }),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (first, last, seen)
}

#[tokio::test]
async fn a_caller_context_reaches_the_node_two_hops_away() {
    let inner = Client::new(ClientConfig::default());
    let (first, last, seen) = two_hops(inner.clone()).await;
    let client = Client::new(ClientConfig::default());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let options = CallOptions {
        context: Some(context(&[
            (CALLER, "job-42 (alice)"),
            ("traceparent", traceparent),
        ])),
        ..CallOptions::default()
    };
    let reply = client
        .call_with(
            first.local_addr(),
            "hop1",
            Bytes::from_static(b"x"),
            options,
        )
        .await
        .unwrap();
    assert_eq!(reply, "done");
    // Without a context, nothing arrives.
    client
        .call(first.local_addr(), "hop1", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0.as_deref(), Some("job-42 (alice)"));
    // No OpenTelemetry span is current here, so the trace context goes on as it came.
    assert_eq!(seen[0].1.as_deref(), Some(traceparent));
    assert_eq!(seen[1], (None, None));
    for c in [client, inner] {
        c.shutdown().await;
    }
    first.shutdown().await;
    last.shutdown().await;
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn the_server_spans_are_children_of_the_callers_spans_across_two_hops() {
    // OpenTelemetry as an application would set it up, with spans kept in memory.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("peerwire-test")));
    // A current-thread runtime: every task of the test runs on this thread, in this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let inner = Client::new(ClientConfig::default());
    let (first, last, seen) = two_hops(inner.clone()).await;
    let client = Client::new(ClientConfig::default());
    let options = CallOptions {
        context: Some(context(&[(CALLER, "job-7")])),
        ..CallOptions::default()
    };
    client
        .call_with(
            first.local_addr(),
            "hop1",
            Bytes::from_static(b"x"),
            options,
        )
        .instrument(tracing::info_span!("client.request"))
        .await
        .unwrap();
    for c in [client, inner] {
        c.shutdown().await;
    }
    first.shutdown().await;
    last.shutdown().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let named = |name: &str, route: Option<&str>| {
        spans
            .iter()
            .find(|s| {
                s.name == name && route.is_none_or(|r| attribute(s, "route").as_deref() == Some(r))
            })
            .unwrap_or_else(|| panic!("no span {name} {route:?} in {spans:#?}"))
            .clone()
    };
    let root = named("client.request", None);
    let hop1 = named("peerwire.call", Some("hop1"));
    let hop2 = named("peerwire.call", Some("hop2"));
    let trace = root.span_context.trace_id();
    assert_eq!(
        hop1.span_context.trace_id(),
        trace,
        "one trace across the nodes"
    );
    assert_eq!(hop2.span_context.trace_id(), trace);
    assert_eq!(hop1.parent_span_id, root.span_context.span_id());
    assert_eq!(hop2.parent_span_id, hop1.span_context.span_id());
    assert!(hop1.parent_span_is_remote && hop2.parent_span_is_remote);
    assert_eq!(attribute(&hop2, "caller").as_deref(), Some("job-7"));
    assert_eq!(
        attribute(&hop2, "trace_id").as_deref(),
        Some(trace.to_string().as_str())
    );
    // The last hop saw the trace context of the span that called it.
    let (caller, traceparent) = seen.lock().unwrap()[0].clone();
    assert_eq!(caller.as_deref(), Some("job-7"));
    let traceparent = traceparent.expect("a traceparent");
    assert!(
        traceparent.contains(&hop1.span_context.span_id().to_string()),
        "{traceparent}"
    );
}

#[tokio::test]
async fn an_oversize_or_malformed_context_fails_its_call_alone() {
    let server = Server::builder(ServerConfig {
        max_context_bytes: 64,
        ..ServerConfig::default()
    })
    .route(
        "echo",
        handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    let big = "x".repeat(100);
    let err = client
        .call_with(
            addr,
            "echo",
            Bytes::from_static(b"a"),
            CallOptions {
                context: Some(context(&[(CALLER, big.as_str())])),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotExecuted {
                reason: NotExecuted::Rejected {
                    status: Status::BadRequest,
                    message,
                },
                ..
            } if message.contains("over the limit of 64 bytes") && message.contains("max_context_bytes")
        ),
        "{err}"
    );
    // The same connection goes on.
    let ok = client
        .call(addr, "echo", Bytes::from_static(b"b"))
        .await
        .unwrap();
    assert_eq!(ok, "b");

    // A malformed block straight on the wire: refused, and the connection stays up.
    let mut peer = ScriptedPeer::handshaken(addr, ScriptedPeer::hello(Identity::default())).await;
    peer.send(&Frame::Request(WireRequest {
        id: 1,
        deadline_ms: 0,
        route: Bytes::from_static(b"echo"),
        context: Bytes::from_static(&[9, b'k']),
        payload: Bytes::from_static(b"c"),
    }))
    .await;
    match peer.recv().await {
        Received::Frame(Frame::Failure(f)) => {
            assert_eq!(f.status, Status::BadRequest);
            assert!(f.message.contains("past the end"), "{}", f.message);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    peer.send(&Frame::Request(WireRequest {
        id: 2,
        deadline_ms: 0,
        route: Bytes::from_static(b"echo"),
        context: Bytes::new(),
        payload: Bytes::from_static(b"d"),
    }))
    .await;
    match peer.recv().await {
        Received::Frame(Frame::Response(r)) => assert_eq!(r.payload, "d"),
        other => panic!("expected a response, got {other:?}"),
    }
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_version_3_peer_still_talks_with_the_context_dropped() {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let server = Server::builder(ServerConfig::default())
        .route(
            "who",
            handler_fn(move |req: Request| {
                let record = record.clone();
                async move {
                    record
                        .lock()
                        .unwrap()
                        .push(req.caller_context().map(str::to_owned));
                    Ok(Bytes::new())
                }
            }),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let options = || CallOptions {
        context: Some(context(&[(CALLER, "job-1")])),
        deadline: Some(Duration::from_secs(5)),
        ..CallOptions::default()
    };
    // A client that speaks up to version 3 (an older build).
    let old = Client::new(ClientConfig {
        connection: ConnectionConfig {
            protocol_versions: 1..=3,
            ..ConnectionConfig::default()
        },
        ..ClientConfig::default()
    });
    old.call_with(server.local_addr(), "who", Bytes::new(), options())
        .await
        .unwrap();
    let new = Client::new(ClientConfig::default());
    new.call_with(server.local_addr(), "who", Bytes::new(), options())
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![None, Some("job-1".to_owned())]);
    old.shutdown().await;
    new.shutdown().await;
    server.shutdown().await;
}
