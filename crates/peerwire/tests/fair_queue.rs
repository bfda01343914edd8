//! The fair call queue over real connections: a heavy principal is shed before a light one on
//! the same host; unauthenticated callers from one host share one level, whatever node ids
//! they claim.

use bytes::Bytes;
use peerwire::secret::SecretConfig;
use peerwire::{
    Client, ClientConfig, ConnectionConfig, Error, FairScheduler, FairSchedulerConfig, Identity,
    NotExecuted, Request, RetryPolicy, Server, ServerConfig, handler_fn,
};
use peerwire_testkit::{Gate, bounded, wait_until};
use tokio::sync::mpsc;

/// Secret mode: its holders are trusted with their node id claims, so two node ids on one
/// host are two callers.
fn secret() -> ConnectionConfig {
    ConnectionConfig {
        secret: Some(SecretConfig::new("cluster", [9; 32]).unwrap()),
        ..ConnectionConfig::default()
    }
}

fn client(node_id: u64, connection: &ConnectionConfig) -> Client {
    Client::new(ClientConfig {
        identity: Identity {
            node_id,
            ..Identity::default()
        },
        connection: connection.clone(),
        // Observe the scheduler's answers directly.
        retry: RetryPolicy::never(),
        ..ClientConfig::default()
    })
}

fn is_busy(result: &Result<Bytes, Error>) -> bool {
    matches!(
        result,
        Err(Error::NotExecuted {
            reason: NotExecuted::Busy { .. },
            ..
        })
    )
}

/// One handler held at a gate and a fair queue of 8: caller "1" takes the handler and sends
/// ten more calls (eight refused at once: it made every recent call, so it sits at the lowest
/// level, where two fit); then caller "2" from the same host sends two. Returns caller 2's
/// results once the gate opens.
async fn hog_then_light(connection: ConnectionConfig) -> Vec<Result<Bytes, Error>> {
    let gate = Gate::new();
    let server = Server::builder(ServerConfig {
        handlers: 1,
        connection: connection.clone(),
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
    let hog = client(1, &connection);
    let light = client(2, &connection);

    let first = tokio::spawn({
        let hog = hog.clone();
        async move { hog.call(addr, "gate", Bytes::new()).await }
    });
    gate.wait_entered(1).await;
    let (tx, mut results) = mpsc::unbounded_channel();
    for _ in 0..10 {
        let (hog, tx) = (hog.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(hog.call(addr, "gate", Bytes::new()).await);
        });
    }
    for _ in 0..8 {
        let refused = bounded("a refused hog call", results.recv()).await.unwrap();
        match &refused {
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
    wait_until("two hog calls queued", || server.queued_calls() >= 2).await;

    let light_calls: Vec<_> = (0..2)
        .map(|i| {
            let light = light.clone();
            tokio::spawn(async move { light.call(addr, "gate", Bytes::from(vec![i])).await })
        })
        .collect();
    // Each light call is either queued or refused at once.
    let mut light_results = Vec::new();
    let mut pending = Vec::new();
    for call in light_calls {
        pending.push(call);
    }
    wait_until("the light calls queued or answered", || {
        server.queued_calls() >= 4 || pending.iter().all(|c| c.is_finished())
    })
    .await;
    gate.open();
    for call in pending {
        light_results.push(bounded("a light call", call).await.unwrap());
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
    light_results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_principal_is_shed_before_a_light_one_on_the_same_host() {
    let light = hog_then_light(secret()).await;
    for result in &light {
        assert!(result.is_ok(), "the light principal was served: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_callers_on_one_host_share_a_level() {
    // Plaintext: node ids 1 and 2 are only claims, so both are the host's one caller.
    let light = hog_then_light(ConnectionConfig::default()).await;
    assert!(
        light.iter().all(is_busy),
        "the claimed second node shares the hog's level: {light:?}"
    );
}
