//! The server's per-route call metrics and handshake counts, read through a recorder installed
//! before the server mounts its routes (this test binary's own process).

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use peerwire::service::{Protocol, ProtocolClient, Serde};
use peerwire::{
    CallOptions, Client, ClientConfig, HandlerError, Request, RetryPolicy, Server, ServerConfig,
};
use peerwire_testkit::{Gate, bounded, test_server};

/// The observations of `peerwire_server_call_duration_seconds` for `route` and `outcome`.
fn observations(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    route: &str,
    outcome: &str,
) -> usize {
    snapshot
        .iter()
        .filter(|(k, _, _, _)| {
            let key = k.key();
            key.name() == "peerwire_server_call_duration_seconds"
                && key
                    .labels()
                    .any(|l| l.key() == "route" && l.value() == route)
                && key
                    .labels()
                    .any(|l| l.key() == "outcome" && l.value() == outcome)
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(values) => values.len(),
            other => panic!("not a histogram: {other:?}"),
        })
        .sum()
}

fn counter(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
) -> u64 {
    snapshot
        .iter()
        .filter(|(k, _, _, _)| k.key().name() == name)
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("not a counter: {other:?}"),
        })
        .sum()
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
    assert!(counter(&snapshot, "peerwire_handshakes_accepted_total") >= 2);
    let method = |outcome: &str| {
        snapshot
            .iter()
            .filter(|(k, _, _, _)| {
                let key = k.key();
                key.name() == "peerwire_service_call_duration_seconds"
                    && key
                        .labels()
                        .any(|l| l.key() == "protocol" && l.value() == "Counter")
                    && key
                        .labels()
                        .any(|l| l.key() == "method" && l.value() == "add")
                    && key
                        .labels()
                        .any(|l| l.key() == "outcome" && l.value() == outcome)
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Histogram(values) => values.len(),
                other => panic!("not a histogram: {other:?}"),
            })
            .sum::<usize>()
    };
    assert_eq!((method("ok"), method("failed")), (1, 1));
    // Bytes and frames count per lane; the handshake's own reads apart.
    let lane_counter = |name: &str, lane: &str| {
        snapshot
            .iter()
            .filter(|(k, _, _, _)| {
                k.key().name() == name
                    && k.key()
                        .labels()
                        .any(|l| l.key() == "lane" && l.value() == lane)
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("not a counter: {other:?}"),
            })
            .sum::<u64>()
    };
    assert!(lane_counter("peerwire_bytes_written_total", "rpc") > 0);
    assert!(
        lane_counter("peerwire_frames_written_total", "rpc") >= 5,
        "five calls, five replies"
    );
    assert!(lane_counter("peerwire_bytes_read_total", "rpc") > 0);
    assert!(lane_counter("peerwire_bytes_read_total", "handshake") > 0);
}
