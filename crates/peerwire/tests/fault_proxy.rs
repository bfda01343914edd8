//! Real sockets through the testkit's fault proxy: delay, blackhole, reset and slow bytes each
//! give calls their documented outcome, and calls and raft lanes recover once the network
//! heals.

use std::time::Duration;

use bytes::Bytes;
use peerwire::{
    CallOptions, Client, ClientConfig, ConnectionConfig, Error, Identity, Peer, ServerConfig,
    Unknown,
};
use peerwire_raft::{LanesUp, MessageKind};
use peerwire_testkit::fault_proxy::{Fault, FaultProxy};
use peerwire_testkit::raft::{FakeMsg, FakeNode, test_config};
use peerwire_testkit::{Gate, bounded, test_server, wait_until};

fn identity(node_id: u64) -> Identity {
    Identity {
        cluster_id: 7,
        node_id,
        epoch: 1,
    }
}

/// Fast link timeouts, so a blackholed connection is declared dead quickly.
fn fast() -> ConnectionConfig {
    ConnectionConfig {
        heartbeat_interval: Duration::from_millis(100),
        read_timeout: Duration::from_millis(300),
        ..ConnectionConfig::default()
    }
}

async fn setup() -> (peerwire::Server, FaultProxy, Client, Peer) {
    let server = test_server(
        ServerConfig {
            identity: identity(1),
            connection: fast(),
            ..ServerConfig::default()
        },
        Gate::new(),
    )
    .await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = Client::new(ClientConfig {
        identity: identity(2),
        connection: fast(),
        ..ClientConfig::default()
    });
    let peer = Peer::new(proxy.addr(), 1);
    // Connected through the proxy before any fault.
    assert_eq!(echo(&client, peer, 5).await.unwrap(), "hello");
    (server, proxy, client, peer)
}

fn connection_lost(err: &Error) -> bool {
    matches!(
        err,
        Error::Unknown {
            reason: Unknown::ConnectionLost(_),
            ..
        }
    )
}

async fn echo(client: &Client, peer: Peer, deadline_secs: u64) -> Result<Bytes, Error> {
    bounded(
        "a call",
        client.call_with(
            peer,
            "echo",
            Bytes::from_static(b"hello"),
            CallOptions::deadline(Duration::from_secs(deadline_secs)),
        ),
    )
    .await
}

#[tokio::test]
async fn a_delay_longer_than_the_deadline_gives_an_unknown_outcome_then_heals() {
    let (server, proxy, client, peer) = setup().await;
    proxy.set(Fault::Delay(Duration::from_millis(400)));
    let err = bounded(
        "a delayed call",
        client.call_with(
            peer,
            "echo",
            Bytes::from_static(b"late"),
            CallOptions::deadline(Duration::from_millis(100)),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unknown {
                reason: Unknown::DeadlineExceeded { .. },
                ..
            }
        ),
        "{err:?}"
    );
    proxy.set(Fault::Pass);
    assert_eq!(echo(&client, peer, 5).await.unwrap(), "hello");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_blackhole_ends_the_connection_at_the_read_timeout_and_calls_recover() {
    let (server, proxy, client, peer) = setup().await;
    proxy.set(Fault::Blackhole);
    // The call is sent into the partition; the link's heartbeats go unanswered and the read
    // timeout ends the connection long before the call's own deadline.
    let err = echo(&client, peer, 8).await.unwrap_err();
    assert!(connection_lost(&err), "{err:?}");
    proxy.set(Fault::Pass);
    assert_eq!(echo(&client, peer, 5).await.unwrap(), "hello");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reset_fails_calls_in_flight_and_new_connections_until_it_heals() {
    let gate = Gate::new();
    let server = test_server(
        ServerConfig {
            identity: identity(1),
            ..ServerConfig::default()
        },
        gate.clone(),
    )
    .await;
    let proxy = FaultProxy::start(server.local_addr()).await;
    let client = Client::new(ClientConfig {
        identity: identity(2),
        ..ClientConfig::default()
    });
    let peer = Peer::new(proxy.addr(), 1);
    // A call held in its handler when the connection is reset.
    let held = {
        let client = client.clone();
        tokio::spawn(async move { client.call(peer, "gate", Bytes::new()).await })
    };
    gate.wait_entered(1).await;
    proxy.set(Fault::Reset);
    let err = bounded("the held call", held).await.unwrap().unwrap_err();
    assert!(connection_lost(&err), "{err:?}");
    // While resetting, a new call cannot connect: certainly not executed.
    let err = echo(&client, peer, 2).await.unwrap_err();
    assert!(err.is_not_executed(), "{err:?}");
    gate.open();
    proxy.set(Fault::Pass);
    // The client waits out its reconnect backoff, then connects again.
    bounded("a call after the reset", async {
        loop {
            if echo(&client, peer, 5).await.is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn slow_bytes_arrive_intact() {
    let (server, proxy, client, peer) = setup().await;
    proxy.set(Fault::Slow(64 * 1024));
    let payload = Bytes::from((0..20_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let reply = bounded("a slow call", client.call(peer, "echo", payload.clone()))
        .await
        .unwrap();
    assert_eq!(reply, payload);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_lanes_recover_after_a_reset_and_a_partition() {
    let a = FakeNode::start(test_config(7, 1), "127.0.0.1:0".parse().unwrap()).await;
    let mut b = FakeNode::start(test_config(7, 2), "127.0.0.1:0".parse().unwrap()).await;
    let proxy = FaultProxy::start(b.addr()).await;
    a.transport.add_peer(2, vec![proxy.addr()]).unwrap();
    let both = Some(LanesUp {
        append: true,
        message: true,
    });
    wait_until("lanes up", || a.transport.lanes_up(2) == both).await;

    for (seq, fault) in [(1, Fault::Reset), (2, Fault::Blackhole)] {
        proxy.set(fault);
        // The lanes break (a reset at once; a partition at the read timeout)...
        wait_until("lanes down", || a.transport.lanes_up(2) != both).await;
        proxy.set(Fault::Pass);
        // ...and come back once the network heals, and deliver again.
        wait_until("lanes up again", || a.transport.lanes_up(2) == both).await;
        a.transport
            .send([FakeMsg::new(MessageKind::Heartbeat, 1, 2, seq)]);
        assert_eq!(b.next_message().await.seq, seq);
    }
    a.stop().await;
    b.stop().await;
}
