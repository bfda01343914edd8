//! Blobs on a 3-node cluster: a 64 MiB body streamed through one node reaches every replica
//! with the same SHA-256 and reads back from each; a node that was down fetches it; the native
//! client stores and reads a file; bad blob requests get their statuses.

mod common;

use common::{Cluster, http, http_bytes, raw_http};
use peerwire_kv::KvClient;
use peerwire_kv::cluster::DEFAULT_CLUSTER_TOKEN;
use peerwire_kv::state::Value;
use peerwire_testkit::bounded;
use sha2::{Digest, Sha256};

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut buf = vec![0u8; len];
    rng.fill(&mut buf);
    buf
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_blob_has_the_same_sha256_on_every_replica() {
    let c = Cluster::start(3).await;
    let leader = c.leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let url = |id: u64, path: &str| format!("http://{}{path}", c.node(id).http_addr().unwrap());
    let data = random_bytes(64 << 20, 64);
    let want = sha256_hex(&data);

    // Through a follower: it is the stream's primary and forwards the reference to the leader.
    let (status, headers, body) = http_bytes("PUT", &url(follower, "/blob/big"), data).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-sha256"], want.as_str());

    for id in 1..=3 {
        let (status, headers, body) = http_bytes("GET", &url(id, "/blob/big"), "").await;
        assert_eq!(status, 200, "node {id}");
        assert_eq!(headers["x-sha256"], want.as_str());
        assert_eq!(
            headers["content-length"],
            (64u64 << 20).to_string().as_str()
        );
        assert_eq!(sha256_hex(&body), want, "node {id} served other bytes");
        // The replica's own file, as stored.
        let file = c.dirs[&id].path().join("blobs").join(&want);
        assert_eq!(
            sha256_hex(&std::fs::read(&file).unwrap()),
            want,
            "node {id}'s file"
        );
    }
    match c.node(leader).handle().get("big", false).await.unwrap() {
        Value::Blob(b) => {
            assert_eq!((b.size, b.sha256.as_str()), (64 << 20, want.as_str()));
            let mut replicas = b.replicas.clone();
            replicas.sort_unstable();
            assert_eq!(replicas, vec![1, 2, 3], "every member was on the route");
        }
        other => panic!("not a blob: {other:?}"),
    }

    // The inline route names the blob route, both ways.
    let (status, text) = http("GET", &url(leader, "/big"), "").await;
    assert_eq!(status, 409);
    assert!(text.contains("/blob/big"), "{text}");
    // (The server answers before reading the body, so only the headers are sent.)
    let text = raw_http(
        c.node(leader).http_addr().unwrap(),
        &format!(
            "PUT /k HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            (1 << 20) + 1
        ),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("/blob/"), "{text}");
    // An inline value reads back through the blob route too.
    assert_eq!(http("PUT", &url(leader, "/small"), "v").await.0, 204);
    assert_eq!(
        http("GET", &url(follower, "/blob/small"), "").await,
        (200, "v".into())
    );
    assert_eq!(http("GET", &url(follower, "/blob/none"), "").await.0, 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_a_blob_fetches_it_and_released_blobs_go() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(None).await;
    let down = (1..=3).find(|id| *id != leader).unwrap();
    c.stop(down).await;
    let url = |c: &Cluster, id: u64, path: &str| {
        format!("http://{}{path}", c.node(id).http_addr().unwrap())
    };
    let data = random_bytes((4 << 20) + 17, 4);
    let want = sha256_hex(&data);
    let (status, _, body) = http_bytes("PUT", &url(&c, leader, "/blob/b"), data.clone()).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    match c.node(leader).handle().get("b", false).await.unwrap() {
        Value::Blob(b) => assert!(!b.replicas.contains(&down), "{:?}", b.replicas),
        other => panic!("not a blob: {other:?}"),
    }

    // The node that was down applies the entry after restarting and fetches the blob.
    c.restart(down).await;
    let (status, _, body) = http_bytes("GET", &url(&c, down, "/blob/b"), "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(sha256_hex(&body), want);
    let file = c.dirs[&down].path().join("blobs").join(&want);
    assert_eq!(std::fs::read(&file).unwrap(), data);

    // Overwritten by an inline value, the blob is released and its files go: on the leader
    // at once, on a node that restarts meanwhile by its sweep after replaying the log.
    c.stop(down).await;
    assert_eq!(http("PUT", &url(&c, leader, "/b"), "small").await.0, 204);
    let h = c.node(leader).handle().clone();
    bounded("the leader's blob work", h.blobs_settled()).await;
    let leader_file = c.dirs[&leader].path().join("blobs").join(&want);
    assert!(
        !leader_file.exists(),
        "the released blob's file is still on the leader"
    );
    let commit = h.view().commit;
    c.restart(down).await;
    let h = c.node(down).handle().clone();
    bounded("the restarted node to apply", h.wait_applied(commit)).await;
    bounded("the restarted node's blob work", h.blobs_settled()).await;
    assert!(
        !file.exists(),
        "the released blob's file is still on the restarted node"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_client_stores_and_reads_files() {
    let c = Cluster::start(3).await;
    c.leader(None).await;
    let client = KvClient::new(
        c.peers.iter().map(|(_, a)| *a).collect(),
        DEFAULT_CLUSTER_TOKEN,
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.bin");
    let data = random_bytes((3 << 20) + 123, 3);
    std::fs::write(&src, &data).unwrap();

    let mut seen = Vec::new();
    let blob = bounded(
        "put_file",
        client.put_file("file", &src, |sent| seen.push(sent)),
    )
    .await
    .unwrap();
    assert_eq!(blob.sha256, sha256_hex(&data));
    assert_eq!(blob.size, data.len() as u64);
    assert_eq!(seen.last(), Some(&(data.len() as u64)));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    let dst = dir.path().join("out.bin");
    let mut last = (0, 0);
    let n = bounded(
        "get_file",
        client.get_file("file", &dst, |d, t| last = (d, t)),
    )
    .await
    .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(last, (n, n));
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    for id in 1..=3 {
        let got = bounded("a read", c.node(id).handle().get_blob("file", false))
            .await
            .unwrap();
        match got {
            peerwire_kv::node::BlobValue::File { path, .. } => {
                assert_eq!(std::fs::read(path).unwrap(), data, "node {id}")
            }
            other => panic!("not a file: {other:?}"),
        }
    }
    c.shutdown().await;
}

/// Blob bytes travel on the pull lane: after the node a file was uploaded through is stopped,
/// the native client reads the blob from a follower that holds it, and a node that missed the
/// upload fetches it from the remaining replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_is_read_from_a_follower_after_its_uploader_is_stopped() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(None).await;
    let addr = |c: &Cluster, id: u64| c.peers.iter().find(|(i, _)| *i == id).unwrap().1;
    let (missed, uploader) = {
        let mut others = (1..=3).filter(|id| *id != leader);
        (others.next().unwrap(), others.next().unwrap())
    };
    // One node misses the upload; the file goes through another (its primary).
    c.stop(missed).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.bin");
    let data = random_bytes((5 << 20) + 321, 5);
    std::fs::write(&src, &data).unwrap();
    let through = KvClient::new(vec![addr(&c, uploader)], DEFAULT_CLUSTER_TOKEN);
    let blob = bounded("put_file", through.put_file("f", &src, |_| {}))
        .await
        .unwrap();
    assert!(blob.replicas.contains(&leader), "{:?}", blob.replicas);

    // The uploader goes; the client, trying it first, reads from the leader instead.
    c.stop(uploader).await;
    c.restart(missed).await;
    let client = KvClient::new(
        vec![addr(&c, uploader), addr(&c, missed), addr(&c, leader)],
        DEFAULT_CLUSTER_TOKEN,
    );
    let dst = dir.path().join("out.bin");
    let n = bounded("get_file", client.get_file("f", &dst, |_, _| {}))
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    // The node that missed the upload fetched it from the one replica left.
    let h = c.node(missed).handle().clone();
    match bounded("the missed node's read", h.get_blob("f", false))
        .await
        .unwrap()
    {
        peerwire_kv::node::BlobValue::File { path, .. } => {
            assert_eq!(sha256_hex(&std::fs::read(path).unwrap()), blob.sha256)
        }
        other => panic!("not a file: {other:?}"),
    }
    c.shutdown().await;
}
