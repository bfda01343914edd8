//! The server's per-route call metrics and handshake counts, read through a recorder installed
//! before the server mounts its routes (this test binary's own process).

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use peerwire::service::{Protocol, ProtocolClient, Serde};
use peerwire::{
    CallOptions, Client, ClientConfig, HandlerError, Request, RetryPolicy, Server, ServerConfig,
};
use peerwire_testkit::{Gate, bounded, test_server};

/// What the debugging recorder holds.
type Snapshot = [(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)];

/// The values of metric `name` whose labels include every pair of `labels`.
fn matching<'a>(
    snapshot: &'a Snapshot,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a DebugValue> + 'a {
    snapshot
        .iter()
        .filter(move |(k, _, _, _)| {
            let key = k.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(n, v)| key.labels().any(|l| l.key() == *n && l.value() == *v))
        })
        .map(|(_, _, _, v)| v)
}

/// How many observations the histograms `name` with `labels` hold.
fn histogram_len(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> usize {
    matching(snapshot, name, labels)
        .map(|v| match v {
            DebugValue::Histogram(values) => values.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

/// The sum of the counters `name` with `labels`.
fn counter_sum(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    matching(snapshot, name, labels)
        .map(|v| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// The observations of `peerwire_server_call_duration_seconds` for `route` and `outcome`.
fn observations(snapshot: &Snapshot, route: &str, outcome: &str) -> usize {
    histogram_len(
        snapshot,
        "peerwire_server_call_duration_seconds",
        &[("route", route), ("outcome", outcome)],
    )
}

#[tokio::test]
async fn each_route_times_its_calls_by_outcome_and_handshakes_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    for _ in 0..3 {
        client
            .call(addr, "echo", Bytes::from_static(b"hi"))
            .await
            .unwrap();
    }
    assert!(
        client
            .call(addr, "fail", Bytes::from_static(b"no"))
            .await
            .is_err()
    );
    assert!(client.call(addr, "panic", Bytes::new()).await.is_err());

    // A typed protocol's methods are timed by protocol, method and outcome.
    let protocol =
        Protocol::new("Counter", 1).method("add", Serde, |n: u64, _ctx: Request| async move {
            if n == 0 {
                return Err(HandlerError::new("nothing to add"));
            }
            Ok::<u64, HandlerError>(n + 1)
        });
    let typed = Server::builder(ServerConfig::default())
        .protocol(protocol)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let counter_client = ProtocolClient::new(client.clone(), "Counter", 1);
    let two: u64 = counter_client
        .call(typed.local_addr(), "add", Serde, &1u64)
        .await
        .unwrap();
    assert_eq!(two, 2);
    let zero: Result<u64, _> = counter_client
        .call(typed.local_addr(), "add", Serde, &0u64)
        .await;
    assert!(zero.is_err());
    // A full call queue: the refused call counts under its route as `busy`.
    let gate = Gate::new();
    let tight = test_server(
        ServerConfig {
            handlers: 1,
            call_queue_capacity: Some(1),
            ..ServerConfig::default()
        },
        gate.clone(),
    )
    .await;
    let tight_addr = tight.local_addr();
    let held = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call(tight_addr, "gate", Bytes::from_static(b"a"))
                .await
        }
    });
    gate.wait_entered(1).await;
    let queued = client.call(tight_addr, "gate", Bytes::from_static(b"b"));
    let refused = async {
        let result = client
            .call_with(
                tight_addr,
                "echo",
                Bytes::from_static(b"c"),
                CallOptions {
                    retry: Some(RetryPolicy::never()),
                    ..CallOptions::default()
                },
            )
            .await;
        gate.open();
        result
    };
    let (queued, refused) = bounded("the queued and the refused call", async {
        tokio::join!(queued, refused)
    })
    .await;
    assert!(queued.is_ok());
    assert!(refused.is_err(), "the queue was full");
    bounded("the held call", held).await.unwrap().unwrap();
    client.shutdown().await;
    server.shutdown().await;
    typed.shutdown().await;
    tight.shutdown().await;

    let snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(observations(&snapshot, "echo", "ok"), 3);
    assert_eq!(observations(&snapshot, "fail", "failed"), 1);
    assert_eq!(observations(&snapshot, "panic", "panicked"), 1);
    assert_eq!(observations(&snapshot, "echo", "failed"), 0);
    assert_eq!(observations(&snapshot, "echo", "busy"), 1);
    assert_eq!(observations(&snapshot, "gate", "ok"), 2);
    assert!(
        counter_sum(
            &snapshot,
            "peerwire_handshakes_accepted_total",
            &[("lane", "rpc")]
        ) >= 2,
        "handshakes count by lane"
    );
    let method = |outcome: &str| {
        histogram_len(
            &snapshot,
            "peerwire_service_call_duration_seconds",
            &[
                ("protocol", "Counter"),
                ("method", "add"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!((method("ok"), method("failed")), (1, 1));
    // Bytes and frames count per lane; the handshake's own reads apart.
    let lane_counter = |name: &str, lane: &str| counter_sum(&snapshot, name, &[("lane", lane)]);
    assert!(lane_counter("peerwire_bytes_written_total", "rpc") > 0);
    assert!(
        lane_counter("peerwire_frames_written_total", "rpc") >= 5,
        "five calls, five replies"
    );
    assert!(lane_counter("peerwire_bytes_read_total", "rpc") > 0);
    assert!(lane_counter("peerwire_bytes_read_total", "handshake") > 0);
    assert!(
        lane_counter("peerwire_frames_read_total", "rpc") >= 5,
        "five calls read by the servers, five replies by the client"
    );
    assert!(
        lane_counter("peerwire_frames_read_total", "handshake") >= 2,
        "each side reads the other's hello"
    );
}
