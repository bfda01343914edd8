//! Streaming methods in all three shapes over one connection: replies in order across many
//! batches, a slow reader holding the method back, cancellation from either side, the
//! stream's deadline, and refusals before anything streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use peerwire::service::stream::{BATCH_BYTES, OUTPUT_BUFFER, WINDOW};
use peerwire::service::{ItemStream, Protocol, ProtocolClient, Serde, Streaming};
use peerwire::{
    CallOptions, Client, ClientConfig, Error, HandlerError, NotExecuted, Request, Server,
    ServerConfig, Status, Unknown,
};
use tokio::sync::oneshot;

/// Sets a flag when dropped (a method's stream dropped by its server).
struct Dropped(Option<oneshot::Sender<()>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

struct Fixture {
    server: Server,
    client: Client,
    proto: ProtocolClient,
    produced: Arc<AtomicU64>,
    dropped: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
}

async fn fixture() -> Fixture {
    let produced = Arc::new(AtomicU64::new(0));
    let dropped: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>> = Arc::default();
    let (p, d) = (produced.clone(), dropped.clone());
    let protocol = Protocol::new("Streams", 1)
        // 0..n, counting what the method produced.
        .server_streaming("count", Serde, move |n: u64, _ctx: Request| {
            let p = p.clone();
            let d = d.clone();
            async move {
                let (tx, rx) = oneshot::channel();
                *d.lock().unwrap() = Some(rx);
                let guard = Dropped(Some(tx));
                let items: ItemStream<u64> = Box::pin(futures::stream::iter(0..n).map(move |i| {
                    let _keep = &guard;
                    p.fetch_add(1, Ordering::SeqCst);
                    Ok(i)
                }));
                Ok(items)
            }
        })
        // n items, then an error.
        .server_streaming("fail_after", Serde, |n: u64, _ctx: Request| async move {
            let items: ItemStream<u64> = Box::pin(futures::stream::iter(0..n).map(Ok).chain(
                futures::stream::once(async { Err(HandlerError::new("the disk went away")) }),
            ));
            Ok(items)
        })
        // Never answers.
        .server_streaming("silent", Serde, |_: u64, _ctx: Request| async move {
            let items: ItemStream<u64> = Box::pin(futures::stream::pending());
            Ok(items)
        })
        .client_streaming(
            "sum",
            Serde,
            |mut items: Streaming<u64>, _ctx: Request| async move {
                let mut total = 0u64;
                let mut count = 0u64;
                while let Some(item) = items.next().await {
                    total += item?;
                    count += 1;
                }
                Ok::<_, HandlerError>((count, total))
            },
        )
        .bidi_streaming(
            "upper",
            Serde,
            |items: Streaming<String>, ctx: Request| async move {
                // The caller context reaches streaming methods too.
                let suffix = ctx.caller_context().unwrap_or("").to_owned();
                let replies: ItemStream<String> = Box::pin(
                    items.map(move |s| s.map(|s| format!("{}{suffix}", s.to_uppercase()))),
                );
                Ok(replies)
            },
        );
    let server = Server::builder(ServerConfig::default())
        .protocol(protocol)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::new(ClientConfig::default());
    let proto = ProtocolClient::new(client.clone(), "Streams", 1);
    Fixture {
        server,
        client,
        proto,
        produced,
        dropped,
    }
}

impl Fixture {
    async fn stop(self) {
        self.client.shutdown().await;
        self.server.shutdown().await;
    }
}

#[tokio::test]
async fn server_streaming_replies_arrive_in_order_across_many_batches() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let n = 50_000u64;
    let replies = f
        .proto
        .server_streaming::<_, u64, u64>(addr, "count", Serde, &n, CallOptions::default())
        .await
        .unwrap();
    let got: Vec<u64> = replies.map(Result::unwrap).collect().await;
    assert_eq!(got.len() as u64, n);
    assert!(
        got.iter().enumerate().all(|(i, v)| *v == i as u64),
        "in order"
    );
    // An empty stream ends at once.
    let empty: Vec<_> = f
        .proto
        .server_streaming::<_, u64, u64>(addr, "count", Serde, &0, CallOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(empty.is_empty());
    f.stop().await;
}

#[tokio::test]
async fn client_and_bidi_streaming_carry_every_request_in_order() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let (count, total): (u64, u64) = f
        .proto
        .client_streaming(
            addr,
            "sum",
            Serde,
            futures::stream::iter(1..=20_000u64),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((count, total), (20_000, 20_000 * 20_001 / 2));

    let words: Vec<String> = (0..5_000).map(|i| format!("w{i}")).collect();
    let context =
        peerwire::context::Context::from_entries([(peerwire::context::CALLER, &b"!"[..])], 4096)
            .unwrap();
    let replies = f
        .proto
        .bidi_streaming::<_, String, String, _>(
            addr,
            "upper",
            Serde,
            futures::stream::iter(words.clone()),
            CallOptions {
                context: Some(context),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap();
    let got: Vec<String> = replies.map(Result::unwrap).collect().await;
    let want: Vec<String> = words
        .iter()
        .map(|w| format!("{}!", w.to_uppercase()))
        .collect();
    assert_eq!(got, want);
    f.stop().await;
}

#[tokio::test]
async fn a_slow_reader_holds_the_method_back_and_dropping_the_stream_stops_it() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let mut replies = f
        .proto
        .server_streaming::<_, u64, u64>(addr, "count", Serde, &10_000_000, CallOptions::default())
        .await
        .unwrap();
    assert_eq!(replies.next().await.unwrap().unwrap(), 0);
    // Let the server run as far as it can while nothing more is read.
    for _ in 0..2_000 {
        tokio::task::yield_now().await;
    }
    // A batch holds at most OUTPUT_BUFFER replies (and BATCH_BYTES): the method may be ahead
    // by the batches of the outstanding window, the two its runner has ready, and the one it is
    // filling.
    let per_batch = OUTPUT_BUFFER.min(BATCH_BYTES / 12 + 1);
    let bound = ((WINDOW + 3) * per_batch + 1) as u64;
    let produced = f.produced.load(Ordering::SeqCst);
    assert!(
        produced <= 1 + bound,
        "the method ran {produced} ahead (bound {bound})"
    );
    assert!(produced < 10_000_000);
    // Dropping the stream drops the method on the server.
    let dropped = f
        .dropped
        .lock()
        .unwrap()
        .take()
        .expect("the method started");
    drop(replies);
    peerwire_testkit::bounded("the method dropped", dropped)
        .await
        .expect("the method's stream was dropped");
    f.stop().await;
}

#[tokio::test]
async fn a_failing_method_ends_the_stream_with_its_error_after_its_replies() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let replies: Vec<Result<u64, Error>> = f
        .proto
        .server_streaming::<_, u64, u64>(addr, "fail_after", Serde, &3, CallOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(replies.len(), 4);
    assert_eq!(
        replies[..3]
            .iter()
            .map(|r| *r.as_ref().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(
        matches!(&replies[3], Err(Error::Remote { status: Status::HandlerFailed, message, .. }) if message.contains("disk went away")),
        "{:?}",
        replies[3]
    );
    f.stop().await;
}

#[tokio::test]
async fn the_streams_deadline_ends_it_as_unknown() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let mut replies = f
        .proto
        .server_streaming::<_, u64, u64>(
            addr,
            "silent",
            Serde,
            &0,
            CallOptions {
                deadline: Some(Duration::from_millis(300)),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap();
    let last = replies.next().await.expect("an error");
    assert!(
        matches!(
            last,
            Err(Error::Unknown {
                reason: Unknown::DeadlineExceeded { .. },
                ..
            })
        ),
        "{last:?}"
    );
    assert!(replies.next().await.is_none());
    f.stop().await;
}

#[tokio::test]
async fn streams_are_refused_before_anything_streams() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let refused = |r: Result<_, Error>, want: Status| match r {
        Err(Error::NotExecuted {
            reason: NotExecuted::Rejected { status, .. },
            ..
        }) if status == want => {}
        Err(e) => panic!("expected {want:?}, got {e}"),
        Ok(_) => panic!("expected {want:?}, got a stream"),
    };
    refused(
        f.proto
            .server_streaming::<_, u64, u64>(addr, "nope", Serde, &1, CallOptions::default())
            .await
            .map(drop),
        Status::UnknownMethod,
    );
    let newer = ProtocolClient::new(f.client.clone(), "Streams", 2);
    refused(
        newer
            .server_streaming::<_, u64, u64>(addr, "count", Serde, &1, CallOptions::default())
            .await
            .map(drop),
        Status::ProtocolVersionMismatch,
    );
    // A streaming method called as a unary one says how to call it.
    let err = f
        .proto
        .call::<_, u64, u64>(addr, "count", Serde, &1)
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("streaming client"), "{err}");
    f.stop().await;
}
