//! Pull streams over loopback: chunk fetch in and out of order, whole reads, resume, bindings,
//! back-pressure and release, corruption, producers, and many concurrent small pulls.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use peerwire::config::Identity;
use peerwire::{ClientConfig, Server, ServerConfig};
use peerwire_pull::{
    OpenError, PullClient, PullConfig, PullError, ReadOptions, Reader, Resolving, Source, StreamId,
    StreamManager,
};
use peerwire_testkit::{bounded, wait_until};

const CHUNK: usize = 64 * 1024;

async fn serve(cfg: PullConfig) -> (Server, StreamManager, SocketAddr) {
    let streams = StreamManager::new(PullConfig {
        chunk_size: CHUNK,
        ..cfg
    });
    let server = Server::builder(ServerConfig::default())
        .mount_all(&streams)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    (server, streams, addr)
}

fn reader() -> PullClient {
    PullClient::new(ClientConfig::default()).unwrap()
}

fn content(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn read_all(
    c: &PullClient,
    addr: SocketAddr,
    info: peerwire_pull::StreamInfo,
    opts: ReadOptions,
) -> Result<Vec<u8>, PullError> {
    let chunks: Vec<Bytes> = c.read(addr, info, opts)?.try_collect().await?;
    Ok(chunks.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_in_and_out_of_order_whole_reads_and_resume() {
    let (server, streams, addr) = serve(PullConfig::default()).await;
    let data = content(3 * CHUNK + 1000);
    let info = streams
        .register(Source::bytes(data.clone()), Reader::Anyone)
        .await
        .unwrap();
    assert_eq!(info.len, Some(data.len() as u64));
    assert_eq!(info.chunks(), Some(4));
    assert_eq!(info.crc32c, Some(crc32c::crc32c(&data)));
    let c = reader();
    assert_eq!(c.info(addr, info.id).await.unwrap(), info);
    for index in [3u64, 0, 2, 1, 3] {
        let chunk = c.chunk(addr, info.id, index).await.unwrap();
        let start = index as usize * CHUNK;
        let end = (start + CHUNK).min(data.len());
        assert_eq!(chunk.data, data.slice(start..end), "chunk {index}");
        assert_eq!(chunk.last, index == 3);
    }
    let past = c.chunk(addr, info.id, 4).await.unwrap_err();
    assert!(
        matches!(past, PullError::OutOfRange { index: 4, .. }),
        "{past}"
    );

    let opts = ReadOptions {
        close_at_end: false,
        ..ReadOptions::default()
    };
    assert_eq!(read_all(&c, addr, info, opts).await.unwrap(), data);
    // Resume in the middle of a chunk, with a window of one.
    let offset = CHUNK as u64 + 123;
    let resumed = ReadOptions {
        offset,
        window: 1,
        ..ReadOptions::default()
    };
    assert_eq!(
        read_all(&c, addr, info, resumed).await.unwrap(),
        data[offset as usize..]
    );
    // The read closed the stream at its end.
    wait_until("the stream released", || streams.streams() == 0).await;
    let gone = c.info(addr, info.id).await.unwrap_err();
    assert!(matches!(gone, PullError::UnknownStream { .. }), "{gone}");
    c.shutdown().await;
    server.shutdown().await;
    streams.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_served_whole_and_a_changed_chunk_is_detected() {
    let (server, streams, addr) = serve(PullConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let data = content(5 * CHUNK / 2);
    std::fs::write(&path, &data).unwrap();
    let info = streams
        .register(
            Source::file(std::fs::File::open(&path).unwrap()),
            Reader::Anyone,
        )
        .await
        .unwrap();
    assert_eq!(info.len, Some(data.len() as u64));
    let c = reader();
    let opts = ReadOptions {
        close_at_end: false,
        ..ReadOptions::default()
    };
    assert_eq!(read_all(&c, addr, info, opts).await.unwrap(), data);

    // Corrupt a byte of chunk 1 under the registered stream: its CRC32C no longer matches.
    let mut changed = data.to_vec();
    changed[CHUNK + 10] ^= 0xff;
    std::fs::write(&path, &changed).unwrap();
    assert_eq!(
        c.chunk(addr, info.id, 0).await.unwrap().data,
        data.slice(..CHUNK)
    );
    let err = c.chunk(addr, info.id, 1).await.unwrap_err();
    assert!(matches!(err, PullError::Checksum { index: 1, .. }), "{err}");
    let err = read_all(&c, addr, info, opts).await.unwrap_err();
    assert!(matches!(err, PullError::Checksum { index: 1, .. }), "{err}");
    c.shutdown().await;
    server.shutdown().await;
    streams.shutdown().await;
}

/// Names resolve to streams bound to the connection that opened them: another connection
/// that guesses the id is refused, and the stream goes when its connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opened_streams_are_bound_to_their_connection() {
    let (server, streams, addr) = serve(PullConfig::default()).await;
    streams.set_resolver(
        |_peer: &peerwire::connection::PeerInfo, name: &str| -> Resolving {
            let name = name.to_owned();
            Box::pin(async move {
                match name.as_str() {
                    "hello" => Ok(Source::bytes(Bytes::from_static(b"hello, reader"))),
                    "secret" => Err(OpenError::NotAllowed("not for you".into())),
                    _ => Err(OpenError::NoSuchName(format!("no {name}"))),
                }
            })
        },
    );
    let a = reader();
    let info = a.open(addr, "hello").await.unwrap();
    assert_eq!(
        a.chunk(addr, info.id, 0).await.unwrap().data,
        "hello, reader"
    );
    let b = reader();
    let guessed = b.chunk(addr, info.id, 0).await.unwrap_err();
    assert!(matches!(guessed, PullError::NotAllowed { .. }), "{guessed}");
    let unknown = b.chunk(addr, StreamId(12345), 0).await.unwrap_err();
    assert!(
        matches!(unknown, PullError::UnknownStream { .. }),
        "{unknown}"
    );
    let missing = b.open(addr, "nothing").await.unwrap_err();
    assert!(
        matches!(&missing, PullError::NoSuchName { name, .. } if name == "nothing"),
        "{missing}"
    );
    let denied = b.open(addr, "secret").await.unwrap_err();
    assert!(matches!(denied, PullError::NotAllowed { .. }), "{denied}");
    assert_eq!(b.fetch_all(addr, "hello").await.unwrap(), "hello, reader");

    wait_until("b's stream closed at its end", || streams.streams() == 1).await;
    a.shutdown().await;
    wait_until("a's stream released with its connection", || {
        streams.streams() == 0
    })
    .await;
    b.shutdown().await;
    server.shutdown().await;
    streams.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_bound_to_a_node_is_refused_to_others() {
    let (server, streams, addr) = serve(PullConfig::default()).await;
    let info = streams
        .register(
            Source::bytes(Bytes::from_static(b"for node 5")),
            Reader::Node(5),
        )
        .await
        .unwrap();
    let as_node = |node_id| {
        PullClient::new(ClientConfig {
            identity: Identity {
                node_id,
                ..Identity::default()
            },
            ..ClientConfig::default()
        })
        .unwrap()
    };
    let (five, six, anonymous) = (as_node(5), as_node(6), reader());
    assert_eq!(
        five.chunk(addr, info.id, 0).await.unwrap().data,
        "for node 5"
    );
    for other in [&six, &anonymous] {
        let err = other.chunk(addr, info.id, 0).await.unwrap_err();
        assert!(matches!(err, PullError::NotAllowed { .. }), "{err}");
    }
    for c in [five, six, anonymous] {
        c.shutdown().await;
    }
    server.shutdown().await;
    streams.shutdown().await;
}

/// A producer is read once, in order; a reader that stops reading stops the producer, and its
/// stream is released when it disconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_holds_the_producer_and_releases_it_on_disconnect() {
    let (server, streams, addr) = serve(PullConfig::default()).await;
    let taken = Arc::new(AtomicUsize::new(0));
    let items = futures::stream::iter((0..20u8).map(|i| Ok(Bytes::from(vec![i; 1000])))).inspect({
        let taken = taken.clone();
        move |_| {
            taken.fetch_add(1, Ordering::SeqCst);
        }
    });
    streams.set_resolver({
        let items = std::sync::Mutex::new(Some(Source::producer(items)));
        move |_: &peerwire::connection::PeerInfo, _: &str| -> Resolving {
            let source = items.lock().unwrap().take();
            Box::pin(async move { source.ok_or_else(|| OpenError::NoSuchName("read once".into())) })
        }
    });
    let c = reader();
    let info = c.open(addr, "items").await.unwrap();
    assert_eq!(
        (info.len, info.crc32c, info.random_access),
        (None, None, false)
    );
    let mut read = c
        .read(
            addr,
            info,
            ReadOptions {
                window: 2,
                ..ReadOptions::default()
            },
        )
        .unwrap();
    assert_eq!(read.next().await.unwrap().unwrap(), vec![0u8; 1000]);
    assert_eq!(read.next().await.unwrap().unwrap(), vec![1u8; 1000]);
    // Two chunks taken, a window of two fetches (chunks 2 and 3) out; the producer looked one
    // item past the last chunk it handed out. Nothing more is asked while the reader waits.
    wait_until("chunk 3 produced", || taken.load(Ordering::SeqCst) == 5).await;
    let again = c.chunk(addr, info.id, 0).await.unwrap_err();
    assert!(
        matches!(again, PullError::OutOfOrder { index: 0, .. }),
        "{again}"
    );
    assert_eq!(streams.streams(), 1);
    drop(read);
    c.shutdown().await;
    wait_until("released on disconnect", || streams.streams() == 0).await;
    assert_eq!(
        taken.load(Ordering::SeqCst),
        5,
        "nothing produced after the reader stopped"
    );
    server.shutdown().await;
    streams.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_end_fail_and_refuse_seeks() {
    let (server, streams, addr) = serve(PullConfig::default()).await;
    let big = Bytes::from(vec![9u8; 2 * CHUNK + 5]);
    let info = streams
        .register(
            Source::producer(futures::stream::iter([
                Ok(Bytes::from_static(b"head")),
                Ok(big.clone()),
            ])),
            Reader::Anyone,
        )
        .await
        .unwrap();
    let c = reader();
    let seek = c
        .read(
            addr,
            info,
            ReadOptions {
                offset: 1,
                ..ReadOptions::default()
            },
        )
        .unwrap_err();
    assert!(matches!(seek, PullError::NotSeekable { .. }), "{seek}");
    let got = read_all(&c, addr, info, ReadOptions::default())
        .await
        .unwrap();
    let mut want = b"head".to_vec();
    want.extend_from_slice(&big);
    assert_eq!(got, want, "long items split into chunks");
    assert_eq!(streams.streams(), 0, "released after its last chunk");

    let failing = streams
        .register(
            Source::producer(futures::stream::iter([
                Ok(Bytes::from_static(b"ok")),
                Err(io::Error::other("disk on fire")),
            ])),
            Reader::Anyone,
        )
        .await
        .unwrap();
    let err = read_all(&c, addr, failing, ReadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::Source { message, .. } if message.contains("disk on fire")),
        "{err}"
    );
    c.shutdown().await;
    server.shutdown().await;
    streams.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_streams_expire_and_the_table_is_bounded() {
    let (server, streams, addr) = serve(PullConfig {
        idle_timeout: Duration::from_millis(50),
        max_streams: 2,
        ..PullConfig::default()
    })
    .await;
    let one = Source::bytes(Bytes::from_static(b"1"));
    let info = streams.register(one, Reader::Anyone).await.unwrap();
    streams
        .register(Source::bytes(Bytes::from_static(b"2")), Reader::Anyone)
        .await
        .unwrap();
    let full = streams
        .register(Source::bytes(Bytes::from_static(b"3")), Reader::Anyone)
        .await
        .unwrap_err();
    assert!(full.to_string().contains("max_streams"), "{full}");
    wait_until("idle streams released", || streams.streams() == 0).await;
    let c = reader();
    let gone = c.chunk(addr, info.id, 0).await.unwrap_err();
    assert!(matches!(gone, PullError::UnknownStream { .. }), "{gone}");
    c.shutdown().await;
    server.shutdown().await;
    streams.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_small_pulls_from_one_server() {
    let (server, streams, addr) = serve(PullConfig::default()).await;
    let file = streams
        .prepare(Source::bytes(content(10_000)))
        .await
        .unwrap();
    streams.set_resolver(
        move |_: &peerwire::connection::PeerInfo, _: &str| -> Resolving {
            let file = file.clone();
            Box::pin(async move { Ok(Source::from(file)) })
        },
    );
    let clients: Vec<PullClient> = (0..10).map(|_| reader()).collect();
    let pulls = (0..1000).map(|i| {
        let c = clients[i % clients.len()].clone();
        async move { c.fetch_all(addr, "small").await }
    });
    let results = bounded("1,000 pulls", futures::future::join_all(pulls)).await;
    let want = content(10_000);
    for r in results {
        assert_eq!(r.unwrap(), want);
    }
    for c in clients {
        c.shutdown().await;
    }
    wait_until("every stream released", || streams.streams() == 0).await;
    server.shutdown().await;
    streams.shutdown().await;
}
