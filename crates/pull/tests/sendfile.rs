//! File chunks go from the page cache to the socket with `sendfile` on plaintext TCP. Alone in
//! its test binary: the counters it reads are the process's.

use bytes::Bytes;
use futures::TryStreamExt;
use peerwire::transport::file_send_totals;
use peerwire::{ClientConfig, Server, ServerConfig};
use peerwire_pull::{PullClient, PullConfig, ReadOptions, Reader, Source, StreamManager};

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_chunks_go_by_sendfile_not_by_copy() {
    let streams = StreamManager::new(PullConfig::default());
    let server = Server::builder(ServerConfig::default())
        .mount_all(&streams)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let data: Vec<u8> = (0..(4 << 20) + 777).map(|i: u32| (i % 239) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let info = streams
        .register(
            Source::file(std::fs::File::open(&path).unwrap()),
            Reader::Anyone,
        )
        .await
        .unwrap();
    let before = file_send_totals();
    let c = PullClient::new(ClientConfig::default()).unwrap();
    let chunks: Vec<Bytes> = c
        .read(addr, info, ReadOptions::default())
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let after = file_send_totals();
    assert_eq!(chunks.concat(), data);
    // Fails if the server silently copied the file through a buffer.
    assert_eq!(after.sendfile - before.sendfile, data.len() as u64);
    assert_eq!(after.copied, before.copied);
    c.shutdown().await;
    server.shutdown().await;
    streams.shutdown().await;
}
