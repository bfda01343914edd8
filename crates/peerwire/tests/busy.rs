//! A full call queue answers `Busy` at once; nothing waits or is dropped silently.

use bytes::Bytes;
use peerwire::{CallOptions, Client, ClientConfig, Error, NotExecuted, RetryPolicy, ServerConfig};
use peerwire_testkit::{Gate, bounded, test_server};

#[tokio::test]
async fn full_call_queue_answers_busy_with_a_retry_hint() {
    let gate = Gate::new();
    let cfg = ServerConfig {
        handlers: 1,
        call_queue_capacity: Some(1),
        ..ServerConfig::default()
    };
    let server = test_server(cfg, gate.clone()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());

    // A occupies the only handler.
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, "gate", Bytes::from_static(b"a")).await }
    });
    gate.wait_entered(1).await;
    // B fills the queue, C finds it full. `join!` polls B first, so B is written first.
    let b = client.call(addr, "gate", Bytes::from_static(b"b"));
    let c = async {
        let result = client
            .call_with(
                addr,
                "echo",
                Bytes::from_static(b"c"),
                CallOptions {
                    retry: Some(RetryPolicy::never()),
                    ..CallOptions::default()
                },
            )
            .await;
        // C is answered while A and B are still held: then let them go.
        gate.open();
        result
    };
    let (b, c) = bounded("B and C", async { tokio::join!(b, c) }).await;
    match c {
        Err(Error::NotExecuted {
            reason:
                NotExecuted::Busy {
                    retry_after,
                    message,
                },
            ..
        }) => {
            assert!(retry_after.is_some());
            assert!(message.contains("call_queue_capacity"), "{message}");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    assert_eq!(b.unwrap(), "b");
    assert_eq!(bounded("A", a).await.unwrap().unwrap(), "a");
    // Capacity is back: the same call now succeeds.
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"c"))
            .await
            .unwrap(),
        "c"
    );
    client.shutdown().await;
    server.shutdown().await;
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Waves of calls at four times what the server can hold (handlers plus queue): each wave, the
/// excess is refused `Busy` with a retry hint at once, the server holds no more than its handlers
/// and queue, the admitted calls all complete, and over 60 waves (150 MiB offered) the process's
/// memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_at_four_times_capacity_is_refused_busy_with_flat_memory() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    const HANDLERS: usize = 2;
    const QUEUE: usize = 8;
    const CAPACITY: usize = HANDLERS + QUEUE;
    const OFFERED: usize = 4 * CAPACITY;
    const PAYLOAD: usize = 64 << 10;
    const WAVES: usize = 60;
    // Each admitted call waits for a permit: the test releases them once every call of a wave
    // was either refused or is held by the server, so nothing finishes early and makes room.
    let release = Arc::new(Semaphore::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let hold = {
        let (release, entered) = (release.clone(), entered.clone());
        peerwire::handler_fn(move |req: peerwire::Request| {
            let (release, entered) = (release.clone(), entered.clone());
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                release.acquire().await.expect("open").forget();
                Ok(req.into_payload())
            }
        })
    };
    let server = peerwire::Server::builder(ServerConfig {
        handlers: HANDLERS,
        call_queue_capacity: Some(QUEUE),
        ..ServerConfig::default()
    })
    .route("hold", hold)
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let addr = server.local_addr();
    let client = Client::new(ClientConfig {
        retry: RetryPolicy::never(),
        ..ClientConfig::default()
    });
    let payload = Bytes::from(vec![5u8; PAYLOAD]);
    let mut rss_warm = None;
    for wave in 0..WAVES {
        entered.store(0, Ordering::SeqCst);
        let busy = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..OFFERED)
            .map(|_| {
                let (client, payload, busy) = (client.clone(), payload.clone(), busy.clone());
                tokio::spawn(async move {
                    let result = client.call(addr, "hold", payload).await;
                    if let Err(Error::NotExecuted {
                        reason: NotExecuted::Busy { retry_after, .. },
                        ..
                    }) = &result
                    {
                        assert!(retry_after.is_some(), "a busy answer carries a retry hint");
                        busy.fetch_add(1, Ordering::SeqCst);
                    }
                    result
                })
            })
            .collect();
        // Every call is answered busy or held (in a handler or the queue).
        let held = || entered.load(Ordering::SeqCst) + server.queued_calls();
        peerwire_testkit::wait_until("every call refused or held", || {
            busy.load(Ordering::SeqCst) + held() == OFFERED
        })
        .await;
        // Read from the refusals, which are final: `held` can miss a call between the queue and
        // its handler for an instant.
        let admitted = OFFERED - busy.load(Ordering::SeqCst);
        assert!(
            (QUEUE..=CAPACITY).contains(&admitted),
            "wave {wave}: {admitted} calls held with {HANDLERS} handlers and a queue of {QUEUE}"
        );
        release.add_permits(admitted);
        let mut ok = 0;
        for call in calls {
            match bounded("a call", call).await.unwrap() {
                Ok(reply) => {
                    assert_eq!(reply.len(), PAYLOAD);
                    ok += 1;
                }
                Err(Error::NotExecuted {
                    reason: NotExecuted::Busy { .. },
                    ..
                }) => {}
                Err(other) => panic!("wave {wave}: unexpected outcome {other:?}"),
            }
        }
        assert_eq!(ok, admitted, "wave {wave}");
        assert_eq!(
            busy.load(Ordering::SeqCst),
            OFFERED - admitted,
            "wave {wave}"
        );
        if wave == 9 {
            rss_warm = rss_bytes();
        }
    }
    if let (Some(warm), Some(end)) = (rss_warm, rss_bytes()) {
        assert!(
            end.saturating_sub(warm) < 16 << 20,
            "RSS grew from {warm} to {end} bytes over {} waves",
            WAVES - 10
        );
    }
    client.shutdown().await;
    server.shutdown().await;
}
