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
///
/// With bit 7 of `data[0]` set, the exchange is secret mode's (before any hello), the node
/// holding [`FUZZ_SECRET`]: bit 0 even, it accepts (the bytes are the peer's opening); odd, it
/// initiates (the bytes are the peer's answer). A handshake that succeeds must have been given
/// bytes that start as secret mode does.
pub fn handshake(data: &[u8]) {
    let [side, peer @ ..] = data else {
        return;
    };
    if side & 0x80 != 0 {
        secret_handshake(side & 1 == 0, peer);
        return;
    }
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

/// The secret the node holds in the fuzzed secret-mode handshakes (name `fuzz`).
pub const FUZZ_SECRET: [u8; 32] = [0x5e; 32];

fn secret_handshake(accepting: bool, peer: &[u8]) {
    let secrets =
        crate::secret::SecretConfig::new("fuzz", FUZZ_SECRET).expect("a valid secret name");
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let input = peer.to_vec();
    let outcome = block_on(async move {
        // The peer: its bytes, then end of stream; what we send is read and dropped.
        let peer = async move {
            let (mut read, mut write) = tokio::io::split(theirs);
            let _ = tokio::io::AsyncWriteExt::write_all(&mut write, &input).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut write).await;
            let _ = tokio::io::copy(&mut read, &mut tokio::io::sink()).await;
        };
        let node = async move {
            if accepting {
                crate::secret::accept(ours, &secrets, Duration::from_secs(5))
                    .await
                    .map(|(_, name)| name)
            } else {
                crate::secret::connect(ours, &secrets)
                    .await
                    .map(|(_, name)| name)
            }
        };
        let (outcome, ()) = tokio::join!(node, peer);
        outcome
    });
    match outcome {
        Ok(name) => {
            assert_eq!(name, "fuzz", "only the held secret's name is accepted");
            if accepting {
                assert!(
                    peer.starts_with(b"PWS1"),
                    "an opening without the magic accepted"
                );
            } else {
                assert_eq!(peer.first(), Some(&b'S'), "an answer other than S accepted");
            }
        }
        Err(HandshakeError::Timeout(_)) => panic!("a closed peer must not time out"),
        Err(_) => {}
    }
}

/// A valid secret-mode opening for [`FUZZ_SECRET`] (a seed: the fuzzer starts past the
/// magic and the name, with a message 1 that authenticates).
pub fn secret_opening() -> Vec<u8> {
    let secrets =
        crate::secret::SecretConfig::new("fuzz", FUZZ_SECRET).expect("a valid secret name");
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    block_on(async move {
        let (mut read, mut write) = tokio::io::split(theirs);
        let node = crate::secret::connect(ours, &secrets);
        let capture = async move {
            let mut opening = vec![0u8; 4 + 1 + 4 + 2];
            let _ = tokio::io::AsyncReadExt::read_exact(&mut read, &mut opening).await;
            let len = u16::from_be_bytes([opening[9], opening[10]]);
            let mut message = vec![0u8; usize::from(len)];
            let _ = tokio::io::AsyncReadExt::read_exact(&mut read, &mut message).await;
            opening.extend_from_slice(&message);
            // End the exchange: the initiator fails on end of stream.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut write).await;
            opening
        };
        let (_, opening) = tokio::join!(node, capture);
        opening
    })
}
