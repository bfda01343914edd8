//! Several connections per peer, chosen by hash key.

use bytes::Bytes;
use peerwire::{CallOptions, Client, ClientConfig, ServerConfig};
use peerwire_testkit::{Gate, test_server};

#[tokio::test]
async fn hash_keys_pick_connections_and_keep_using_them() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig {
        connections_per_peer: 3,
        ..ClientConfig::default()
    });
    let with_key = |key| CallOptions {
        hash_key: Some(key),
        ..CallOptions::default()
    };
    client
        .call_with(addr, "echo", Bytes::new(), with_key(0))
        .await
        .unwrap();
    assert_eq!(server.connections(), 1);
    // Same key: same connection.
    client
        .call_with(addr, "echo", Bytes::new(), with_key(3))
        .await
        .unwrap();
    assert_eq!(server.connections(), 1);
    client
        .call_with(addr, "echo", Bytes::new(), with_key(1))
        .await
        .unwrap();
    client
        .call_with(addr, "echo", Bytes::new(), with_key(2))
        .await
        .unwrap();
    assert_eq!(server.connections(), 3);
    // Keys 4, 5, 6 map onto the same three slots: no new connections.
    for key in 4..7 {
        client
            .call_with(addr, "echo", Bytes::new(), with_key(key))
            .await
            .unwrap();
    }
    assert_eq!(server.connections(), 3);
    client.shutdown().await;
    server.shutdown().await;
}
