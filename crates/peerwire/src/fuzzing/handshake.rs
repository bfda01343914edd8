//! The hello exchange, with the fuzzer as the peer.

use std::io::Cursor;
use std::time::Duration;

use peerwire_wire::{GoAwayReason, Lane, Limits};

use crate::mount::MountPoint;

use super::runtime::block_on;
use crate::config::{ConnectionConfig, Identity};
use crate::connection::frame_reader::FrameReader;
use crate::connection::handshake::{accept, initiate};
use crate::error::HandshakeError;
use crate::transport::BoxWrite;

const LOCAL: Identity = Identity {
    cluster_id: 0xC1,
    node_id: 1,
    epoch: 1,
};

/// Runs the handshake with `data[1..]` as everything the peer sends before closing. If
/// `data[0]` is even this node accepts (the bytes are the peer's hello); if odd it initiates
/// (the bytes are the peer's answer to our hello). An accepted handshake must have checked
/// what it accepted: the peer named our cluster, spoke our version, and addressed us.
pub fn handshake(data: &[u8]) {
    let [side, peer @ ..] = data else {
        return;
    };
    let cfg = ConnectionConfig {
        handshake_timeout: Duration::from_secs(5),
        ..ConnectionConfig::default()
    };
    let mut reader = FrameReader::new(
        Box::new(Cursor::new(peer.to_vec())),
        Limits::handshake(),
        cfg.read_buffer,
    );
    // What we send goes nowhere: a sink, as the write half of a stream.
    let (_, sink) = tokio::io::split(tokio::io::join(tokio::io::empty(), tokio::io::sink()));
    let mut writer: BoxWrite = Box::new(sink);
    let outcome = block_on(async {
        if side % 2 == 0 {
            accept(&mut reader, &mut writer, &LOCAL, &cfg, None, |hello| {
                if hello.lane == Lane::DataStream {
                    Err((GoAwayReason::UnsupportedLane, "not served".into()))
                } else {
                    Ok(())
                }
            })
            .await
        } else {
            initiate(
                &mut reader,
                &mut writer,
                &LOCAL,
                &cfg,
                MountPoint::lane(Lane::Rpc),
                2,
                None,
            )
            .await
        }
    });
    match outcome {
        Ok(hello) => {
            assert_eq!(hello.cluster_id, LOCAL.cluster_id, "cluster id checked");
            // The connection runs at one version both sides speak.
            assert_eq!(hello.min_version, hello.max_version);
            assert!(cfg.protocol_versions.contains(&hello.min_version));
            if side % 2 == 0 {
                assert!(hello.target_node_id == 0 || hello.target_node_id == LOCAL.node_id);
                assert_ne!(hello.lane, Lane::DataStream, "unserved lane refused");
            } else {
                assert_eq!(hello.node_id, 2, "the ack came from the node we dialled");
            }
        }
        // Every failure is typed; which one depends on the bytes.
        Err(HandshakeError::Timeout(_)) => panic!("a closed peer must not time out"),
        Err(_) => {}
    }
}
