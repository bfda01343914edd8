//! The fair call queue over real connections: a heavy caller is shed before light callers.

use bytes::Bytes;
use peerwire::{
    Client, ClientConfig, Error, FairScheduler, FairSchedulerConfig, Identity, NotExecuted,
    Request, RetryPolicy, Server, ServerConfig, handler_fn,
};
use peerwire_testkit::{Gate, bounded, wait_until};
use tokio::sync::mpsc;

fn client(node_id: u64) -> Client {
    Client::new(ClientConfig {
        identity: Identity {
            node_id,
            ..Identity::default()
        },
        // Observe the scheduler's answers directly.
        retry: RetryPolicy::never(),
        ..ClientConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_caller_is_shed_before_light_callers() {
    let gate = Gate::new();
    let server = Server::builder(ServerConfig {
        handlers: 1,
        ..ServerConfig::default()
    })
    .scheduler(FairScheduler::new(FairSchedulerConfig::with_capacity(8)))
    .route("gate", {
        let gate = gate.clone();
        handler_fn(move |req: Request| {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                Ok(req.into_payload())
            }
        })
    })
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let addr = server.local_addr();
    let hog = client(1);
    let light = client(2);

    // The hog's first call occupies the only handler.
    let first = tokio::spawn({
        let hog = hog.clone();
        async move { hog.call(addr, "gate", Bytes::new()).await }
    });
    gate.wait_entered(1).await;

    // Ten more hog calls: it made every recent call, so it sits at the lowest level, where two
    // fit; eight are refused at once with a backoff hint.
    let (tx, mut results) = mpsc::unbounded_channel();
    for _ in 0..10 {
        let (hog, tx) = (hog.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(hog.call(addr, "gate", Bytes::new()).await);
        });
    }
    for _ in 0..8 {
        match bounded("a refused hog call", results.recv()).await.unwrap() {
            Err(Error::NotExecuted {
                reason:
                    NotExecuted::Busy {
                        retry_after,
                        message,
                    },
                ..
            }) => {
                assert!(retry_after.is_some());
                assert!(message.contains("fair call queue"), "{message}");
            }
            other => panic!("expected busy for the hog, got {other:?}"),
        }
    }

    // The light caller's calls are queued (not refused) while the queue is full of hog calls.
    let light_calls: Vec<_> = (0..2)
        .map(|i| {
            let light = light.clone();
            tokio::spawn(async move { light.call(addr, "gate", Bytes::from(vec![i])).await })
        })
        .collect();
    wait_until("the light calls to be queued", || {
        server.queued_calls() >= 4
    })
    .await;

    gate.open();
    for call in light_calls {
        bounded("a light call", call).await.unwrap().unwrap();
    }
    bounded("the first hog call", first).await.unwrap().unwrap();
    for _ in 0..2 {
        bounded("an admitted hog call", results.recv())
            .await
            .unwrap()
            .unwrap();
    }
    hog.shutdown().await;
    light.shutdown().await;
    server.shutdown().await;
}
