//! The RpcEnv file server (Spark's `RpcEnvFileServer` and `openChannel`): files, jars and
//! directories added on one environment are read through their URIs from another, and from
//! itself; unknown and escaping names get their own errors.

use bytes::Bytes;
use futures::TryStreamExt;
use peerwire_pull::PullError;
use peerwire_rpc::{FileServerError, FileUri, OpenChannelError, RpcEnv, RpcEnvConfig};

async fn server_env(name: &str) -> RpcEnv {
    RpcEnv::start(RpcEnvConfig::server(name, "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_jars_and_directories_are_read_by_uri_across_envs() {
    let driver = server_env("driver").await;
    let executor = server_env("executor").await;
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("app.jar");
    let big = content(3 << 20, 1);
    std::fs::write(&jar, &big).unwrap();
    let conf = dir.path().join("app.conf");
    std::fs::write(&conf, b"spark.executor.cores=2").unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(shared.join("sub")).unwrap();
    std::fs::write(shared.join("sub/part-0"), content(70_000, 2)).unwrap();
    std::fs::write(dir.path().join("secret"), b"not served").unwrap();

    let files = driver.file_server();
    let jar_uri = files.add_jar(&jar).await.unwrap();
    let conf_uri = files.add_file(&conf).await.unwrap();
    let dir_uri = files.add_directory("shared", &shared).await.unwrap();
    let address = driver.address().unwrap();
    assert_eq!(jar_uri, format!("peerwire://{address}/jars/app.jar"));
    assert_eq!(FileUri::parse(&conf_uri).unwrap().name, "files/app.conf");
    assert_eq!(dir_uri, format!("peerwire://{address}/shared"));

    // The executor reads the driver's URIs; the driver reads its own.
    assert_eq!(executor.fetch_file(&jar_uri).await.unwrap(), big);
    assert_eq!(
        driver.fetch_file(&conf_uri).await.unwrap(),
        Bytes::from_static(b"spark.executor.cores=2")
    );
    let chunks: Vec<Bytes> = executor
        .open_channel(&format!("{dir_uri}/sub/part-0"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(chunks.concat(), content(70_000, 2));

    // Unknown names, and names that lead out of the served directory, are refused apart.
    let unknown = executor
        .fetch_file(&format!("peerwire://{address}/files/missing.jar"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            unknown,
            OpenChannelError::Pull(PullError::NoSuchName { .. })
        ),
        "{unknown}"
    );
    let missing = executor
        .fetch_file(&format!("{dir_uri}/sub/part-9"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing,
            OpenChannelError::Pull(PullError::NoSuchName { .. })
        ),
        "{missing}"
    );
    for escape in ["../secret", "sub/../../secret"] {
        let denied = executor
            .fetch_file(&format!("{dir_uri}/{escape}"))
            .await
            .unwrap_err();
        assert!(
            matches!(denied, OpenChannelError::Pull(PullError::NotAllowed { .. })),
            "{escape}: {denied}"
        );
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("secret"), shared.join("link")).unwrap();
        let denied = executor
            .fetch_file(&format!("{dir_uri}/link"))
            .await
            .unwrap_err();
        assert!(
            matches!(denied, OpenChannelError::Pull(PullError::NotAllowed { .. })),
            "a symlink out of the directory: {denied}"
        );
    }
    let bad = executor
        .fetch_file("http://example/files/x")
        .await
        .unwrap_err();
    assert!(matches!(bad, OpenChannelError::BadUri(_)), "{bad}");

    // A name serves one file; a base is one segment and not a reserved one.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("app.jar"), b"another").unwrap();
    let taken = files.add_jar(&other.join("app.jar")).await.unwrap_err();
    assert!(matches!(taken, FileServerError::NameTaken(_)), "{taken}");
    assert_eq!(
        files.add_jar(&jar).await.unwrap(),
        jar_uri,
        "adding again is fine"
    );
    let reserved = files.add_directory("files", &shared).await.unwrap_err();
    assert!(
        matches!(reserved, FileServerError::NameTaken(_)),
        "{reserved}"
    );
    let bad_base = files.add_directory("a/b", &shared).await.unwrap_err();
    assert!(
        matches!(bad_base, FileServerError::BadName(_)),
        "{bad_base}"
    );

    executor.shutdown().await;
    driver.shutdown().await;
}

#[tokio::test]
async fn a_client_mode_env_reads_but_cannot_serve() {
    let driver = server_env("driver").await;
    let client = RpcEnv::start(RpcEnvConfig::client("client")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.txt");
    std::fs::write(&path, b"hello").unwrap();
    let err = client.file_server().add_file(&path).await.unwrap_err();
    assert!(matches!(err, FileServerError::NoAddress(_)), "{err}");
    let uri = driver.file_server().add_file(&path).await.unwrap();
    assert_eq!(client.fetch_file(&uri).await.unwrap(), "hello");
    client.shutdown().await;
    driver.shutdown().await;
}
