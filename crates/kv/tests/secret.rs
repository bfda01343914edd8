//! A 3-node peerwire-kv cluster in secret mode: raft, forwarded writes, blob streams and pulls
//! and the native client all authenticate with the cluster's secret; a client without it, with
//! another one, or under another name is refused with its own error.

mod common;

use common::Cluster;
use peerwire::secret::{SecretConfig, SecretFailure};
use peerwire::{ClientConfig, ConnectError, Error, HandshakeError, NotExecuted};
use peerwire_kv::KvClient;
use peerwire_kv::client::ClientError;
use peerwire_kv::cluster::DEFAULT_CLUSTER_TOKEN;
use peerwire_kv::state::Value;
use peerwire_testkit::bounded;

fn client(c: &Cluster, secret: Option<SecretConfig>) -> KvClient {
    let mut cfg = ClientConfig::default();
    cfg.connection.secret = secret;
    KvClient::with_config(
        c.peers.iter().map(|(_, a)| *a).collect(),
        DEFAULT_CLUSTER_TOKEN,
        cfg,
    )
}

fn secret_failure(err: &ClientError) -> Option<SecretFailure> {
    match err {
        ClientError::Unreachable(Error::NotExecuted {
            reason:
                NotExecuted::Connect(ConnectError::Handshake(HandshakeError::Secret {
                    failure, ..
                })),
            ..
        }) => Some(*failure),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_cluster_replicates_and_refuses_strangers() {
    let key = SecretConfig::generate_key().unwrap();
    let secret = SecretConfig::new("cluster", key).unwrap();
    let c = Cluster::start_secret(3, secret.clone()).await;
    let leader = c.leader(None).await;
    let member = client(&c, Some(secret.clone()));
    // Writes through every node (followers forward to the leader in secret mode).
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
    // A blob streams to every replica and reads back on the pull lane, all in secret mode.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("blob.bin");
    let data: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    bounded("put_file", member.put_file("blob", &src, |_| {}))
        .await
        .unwrap();
    let back = dir.path().join("back.bin");
    bounded("get_file", member.get_file("blob", &back, |_, _| {}))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert!(c.node(leader).handle().view().commit > 0);

    // Strangers: no secret, another secret under the same name, another name.
    let other = SecretConfig::generate_key().unwrap();
    for (who, secret, failure) in [
        ("plaintext", None, SecretFailure::NotSecret),
        (
            "another secret",
            Some(SecretConfig::new("cluster", other).unwrap()),
            SecretFailure::WrongSecret,
        ),
        (
            "another name",
            Some(SecretConfig::new("elsewhere", key).unwrap()),
            SecretFailure::UnknownSecret,
        ),
    ] {
        let err = bounded("a refused put", client(&c, secret).put("x", b"y"))
            .await
            .unwrap_err();
        assert_eq!(secret_failure(&err), Some(failure), "{who}: {err}");
    }
    c.shutdown().await;
}

/// Access rules on a node in secret mode: holders of the `reader` secret may read but not
/// write through it, each refusal naming the principal and the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_secret_may_get_but_not_put() {
    let (writer_key, reader_key) = (
        SecretConfig::generate_key().unwrap(),
        SecretConfig::generate_key().unwrap(),
    );
    let secrets = SecretConfig::new("cluster", writer_key)
        .unwrap()
        .accepting("reader", reader_key)
        .unwrap();
    let mut c = Cluster::start_secret(3, secrets).await;
    c.leader(None).await;
    let policy = peerwire::access::AccessPolicy::parse(&format!(
        "deny secret:reader method:{}.put\n",
        peerwire_kv::service::PROTOCOL
    ))
    .unwrap();
    // Node 1 takes the rules; the clients below talk to node 1 only.
    c.restart_with_access(1, policy).await;
    let node1 = vec![c.peers[0].1];
    let as_holder = |name, key| {
        let mut cfg = ClientConfig::default();
        cfg.connection.secret = Some(SecretConfig::new(name, key).unwrap());
        KvClient::with_config(node1.clone(), DEFAULT_CLUSTER_TOKEN, cfg)
    };
    let (writer, reader) = (
        as_holder("cluster", writer_key),
        as_holder("reader", reader_key),
    );
    bounded("a put", writer.put("k", b"v")).await.unwrap();
    assert_eq!(
        bounded("a get", reader.get("k", false)).await.unwrap(),
        Value::Inline(b"v".to_vec())
    );
    let err = bounded("a refused put", reader.put("k", b"w"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("access denied") || text.contains("may not use"),
        "{text}"
    );
    assert!(text.contains("holder of secret reader"), "{text}");
    c.shutdown().await;
}
