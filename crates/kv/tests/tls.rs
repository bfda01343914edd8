//! A 3-node peerwire-kv cluster with mutual TLS on every lane: raft, forwarding, blobs over
//! the data stream and the native client all work, a leader change works, and clients
//! without the cluster's certificates are refused.

mod common;

use common::Cluster;
use peerwire::tls::TlsFailure;
use peerwire::tls::certs::CertAuthority;
use peerwire::{ClientConfig, ConnectError, Error, HandshakeError, NotExecuted};
use peerwire_kv::KvClient;
use peerwire_kv::client::ClientError;
use peerwire_kv::cluster::DEFAULT_CLUSTER_TOKEN;
use peerwire_kv::state::Value;
use peerwire_testkit::bounded;
use sha2::{Digest, Sha256};

fn client(c: &Cluster, tls: Option<peerwire::tls::TlsConfig>) -> KvClient {
    let mut cfg = ClientConfig::default();
    cfg.connection.tls = tls;
    KvClient::with_config(
        c.peers.iter().map(|(_, a)| *a).collect(),
        DEFAULT_CLUSTER_TOKEN,
        cfg,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_replicates_and_refuses_outsiders() {
    let mut c = Cluster::start_tls(3).await;
    let leader = c.leader(None).await;
    let member = client(&c, c.tls(0));

    // Writes through every node (followers forward to the leader over TLS).
    for id in 1..=3u64 {
        let h = c.node(id).handle();
        bounded("a put", h.put(format!("k{id}"), b"v".to_vec()))
            .await
            .unwrap();
    }
    bounded("a native put", member.put("native", b"hello"))
        .await
        .unwrap();
    assert_eq!(
        bounded("a native get", member.get("native", false))
            .await
            .unwrap(),
        Value::Inline(b"hello".to_vec())
    );

    // A blob travels the data stream to every replica, over TLS.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("blob.bin");
    let data: Vec<u8> = (0..(2 << 20) + 17).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let blob = bounded("put_file", member.put_file("blob", &src, |_| {}))
        .await
        .unwrap();
    assert_eq!(blob.sha256, format!("{:x}", Sha256::digest(&data)));
    // And reads back on the pull lane, over TLS (no sendfile there: the chunks are copied).
    let back = dir.path().join("back.bin");
    bounded("get_file", member.get_file("blob", &back, |_, _| {}))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // A plaintext client and a client with another CA's certificate are refused.
    let plaintext = client(&c, None);
    let err = bounded("a refused put", plaintext.put("x", b"y"))
        .await
        .unwrap_err();
    assert_eq!(tls_failure(&err), Some(TlsFailure::NotTls), "{err}");
    let other_ca = CertAuthority::generate("another cluster").unwrap();
    let outsider = client(
        &c,
        Some(
            other_ca
                .tls_config(&other_ca.issue_client().unwrap())
                .unwrap(),
        ),
    );
    let err = bounded("a refused put", outsider.put("x", b"y"))
        .await
        .unwrap_err();
    assert_eq!(tls_failure(&err), Some(TlsFailure::UnknownIssuer), "{err}");

    // The leader stops: the others elect a new one over TLS and keep every write.
    c.stop(leader).await;
    let new_leader = c.leader(Some(leader)).await;
    assert_ne!(new_leader, leader);
    let h = c.node(new_leader).handle();
    bounded(
        "a put after the change",
        h.put("after".into(), b"1".to_vec()),
    )
    .await
    .unwrap();
    for k in ["k1", "k2", "k3", "native"] {
        assert!(
            bounded("a read", h.get(k, false)).await.is_ok(),
            "{k} survived"
        );
    }
    // And the stopped node restarts, rejoins over TLS and catches up.
    c.restart(leader).await;
    let back = c.node(leader).handle();
    bounded("the restarted node to catch up", async {
        loop {
            if back.get("after", true).await.is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    c.shutdown().await;
}

/// The TLS failure that ended a client call, if that is what ended it.
fn tls_failure(e: &ClientError) -> Option<TlsFailure> {
    let ClientError::Unreachable(Error::NotExecuted {
        reason: NotExecuted::Connect(connect),
        ..
    }) = e
    else {
        return None;
    };
    let mut connect = connect;
    loop {
        match connect {
            ConnectError::Backoff { last, .. } => connect = last,
            ConnectError::Handshake(HandshakeError::Tls { failure, .. }) => return Some(*failure),
            _ => return None,
        }
    }
}

/// The cluster's CA rotated under the running nodes (what SIGHUP does in `peerwire-kv node`):
/// writes go on, a client of the new CA gets in and one of the old is refused, and a node that
/// restarts with the new CA rejoins and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_rotates_under_a_running_cluster() {
    let mut c = Cluster::start_tls(3).await;
    let leader = c.leader(None).await;
    let old_tls = c.tls(0);
    let old_client = client(&c, old_tls.clone());
    bounded("a put", old_client.put("before", b"1"))
        .await
        .unwrap();

    let new_ca = std::sync::Arc::new(CertAuthority::generate("rotated").unwrap());
    c.rotate_ca(new_ca);
    let new_client = client(&c, c.tls(0));
    bounded("a put with the new CA", new_client.put("after", b"2"))
        .await
        .unwrap();
    // A new connection with the old CA's certificate (the established one above goes on).
    let stale = client(&c, old_tls);
    let err = bounded("a refused put", stale.put("x", b"y"))
        .await
        .unwrap_err();
    assert_eq!(tls_failure(&err), Some(TlsFailure::UnknownIssuer), "{err}");

    // A follower restarts on the new CA: its lanes to the others are new connections.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.stop(follower).await;
    bounded("a put while it is down", new_client.put("during", b"3"))
        .await
        .unwrap();
    c.restart(follower).await;
    let back = c.node(follower).handle();
    bounded("the restarted node to catch up", async {
        loop {
            if back.get("during", true).await.is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    c.shutdown().await;
}
