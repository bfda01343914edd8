//! The hello exchange that opens every connection.
//!
//! The initiator sends `Hello` with the range of protocol versions it speaks; the acceptor
//! checks it ([`check_hello`]), picks the highest version both speak ([`negotiate`]) and
//! answers `HelloAck` naming that version, or `GoAway` with the reason and closes. Until the
//! exchange completes, the decoder accepts only hello-sized frames. The whole exchange is
//! bounded by the handshake timeout.

use std::ops::RangeInclusive;

use peerwire_wire::{Frame, GoAway, GoAwayReason, Hello, Limits};
use tokio::io::AsyncWriteExt;

use super::frame_reader::{FrameReader, ReadError};
use super::service::MountPoint;
use crate::config::{ConnectionConfig, Identity};
use crate::error::HandshakeError;
use crate::tls::{PeerCert, TlsFailure};
use crate::transport::BoxWrite;

/// The version a connection runs at: the highest one both ranges hold, if any. Pure.
pub(crate) fn negotiate(ours: &RangeInclusive<u16>, theirs: &RangeInclusive<u16>) -> Option<u16> {
    let highest = (*ours.end()).min(*theirs.end());
    (highest >= *ours.start() && highest >= *theirs.start()).then_some(highest)
}

/// Checks a received hello against this node and picks the connection's version. Pure:
/// returns the version, or the go-away reason and message to refuse with. Which lanes and
/// groups are served is the caller's check (the server's mounts).
pub(crate) fn check_hello(
    local: &Identity,
    versions: &RangeInclusive<u16>,
    hello: &Hello,
) -> Result<u16, (GoAwayReason, String)> {
    let Some(version) = negotiate(versions, &hello.versions()) else {
        return Err((
            GoAwayReason::VersionMismatch,
            format!(
                "node {} speaks protocol versions {}..={}, hello from node {} offered versions {}..={}: no common version",
                local.node_id,
                versions.start(),
                versions.end(),
                hello.node_id,
                hello.min_version,
                hello.max_version
            ),
        ));
    };
    if hello.cluster_id != local.cluster_id {
        return Err((
            GoAwayReason::ClusterMismatch,
            format!(
                "node {} is in cluster {:#x}, hello from node {} named cluster {:#x}",
                local.node_id, local.cluster_id, hello.node_id, hello.cluster_id
            ),
        ));
    }
    if hello.target_node_id != 0 && hello.target_node_id != local.node_id {
        return Err((
            GoAwayReason::WrongNode,
            format!(
                "this is node {}, hello from node {} was addressed to node {}",
                local.node_id, hello.node_id, hello.target_node_id
            ),
        ));
    }
    Ok(version)
}

/// Maps a go-away received during the handshake to its error.
pub(crate) fn refusal_error(goaway: GoAway) -> HandshakeError {
    let GoAway {
        reason, message, ..
    } = goaway;
    match reason {
        GoAwayReason::ClusterMismatch => HandshakeError::ClusterMismatch(message),
        GoAwayReason::VersionMismatch => HandshakeError::VersionMismatch(message),
        GoAwayReason::WrongNode => HandshakeError::WrongNode(message),
        GoAwayReason::UnsupportedLane => HandshakeError::UnsupportedLane(message),
        GoAwayReason::UnknownGroup => HandshakeError::UnknownGroup(message),
        GoAwayReason::TooManyConnections => HandshakeError::TooManyConnections(message),
        GoAwayReason::MemberRemoved => HandshakeError::MemberRemoved(message),
        GoAwayReason::TlsRequired => HandshakeError::Tls {
            failure: TlsFailure::NotTls,
            message,
        },
        GoAwayReason::IdentityMismatch => HandshakeError::Tls {
            failure: TlsFailure::WrongIdentity,
            message,
        },
        GoAwayReason::SecretRequired => HandshakeError::Secret {
            failure: crate::secret::SecretFailure::NotSecret,
            message,
        },
        reason => HandshakeError::Refused { reason, message },
    }
}

fn read_error(e: ReadError) -> HandshakeError {
    match e {
        ReadError::Eof => HandshakeError::Closed,
        ReadError::Io(e) => {
            crate::tls::classify_io(&e).unwrap_or_else(|| HandshakeError::Io(e.to_string()))
        }
        ReadError::Wire(e) => HandshakeError::Protocol(e.to_string()),
        // Before the handshake nothing but a hello is expected.
        e @ ReadError::Refused(_) => HandshakeError::Protocol(e.to_string()),
    }
}

async fn write_frame(writer: &mut BoxWrite, frame: &Frame) -> Result<(), HandshakeError> {
    let mut buf = bytes::BytesMut::with_capacity(frame.encoded_len());
    frame.encode(&mut buf);
    writer
        .write_all(&buf)
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))?;
    writer
        .flush()
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))
}

/// Sends a go-away during the handshake, best effort, and closes the write side.
pub(crate) async fn refuse(writer: &mut BoxWrite, reason: GoAwayReason, message: String) {
    let frame = Frame::GoAway(GoAway {
        last_request_id: 0,
        reason,
        message,
    });
    let _ = write_frame(writer, &frame).await;
    let _ = writer.shutdown().await;
}

fn hello(local: &Identity, to: MountPoint, target: u64, cfg: &ConnectionConfig) -> Hello {
    Hello {
        min_version: *cfg.protocol_versions.start(),
        max_version: *cfg.protocol_versions.end(),
        lane: to.lane,
        group: to.group,
        cluster_id: local.cluster_id,
        node_id: local.node_id,
        target_node_id: target,
        epoch: local.epoch,
        max_frame_body: cfg.max_frame_body,
        max_message: cfg.max_message_bytes,
    }
}

/// Acceptor side: reads the peer's hello, checks it, lets `admit` check the lane and group it
/// asks for, answers. On success the reader's limits are raised to the connection limits and
/// the peer's hello is returned with both version fields set to the version the connection
/// runs at. Over TLS, `peer_cert` is the certificate the peer proved it holds: it must name
/// the node the hello claims to be.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream in an unknown state; drop it.
pub(crate) async fn accept(
    reader: &mut FrameReader,
    writer: &mut BoxWrite,
    local: &Identity,
    cfg: &ConnectionConfig,
    peer_cert: Option<&PeerCert>,
    admit: impl Fn(&Hello) -> Result<(), (GoAwayReason, String)>,
) -> Result<Hello, HandshakeError> {
    reader.set_limits(Limits::handshake());
    let first = tokio::time::timeout(cfg.handshake_timeout, reader.next(None)).await;
    let peer_hello = match first {
        Err(_) => {
            refuse(
                writer,
                GoAwayReason::HandshakeTimeout,
                format!(
                    "no hello within {:?} (setting `handshake_timeout`)",
                    cfg.handshake_timeout
                ),
            )
            .await;
            return Err(HandshakeError::Timeout(cfg.handshake_timeout));
        }
        Ok(Err(e)) => {
            if let Some(reason) = e.goaway_reason() {
                refuse(writer, reason, format!("bad hello: {e}")).await;
            }
            return Err(read_error(e));
        }
        Ok(Ok(Frame::Hello(h))) => h,
        Ok(Ok(other)) => {
            let message = format!("expected a hello, got a {:?} frame", other.kind());
            refuse(writer, GoAwayReason::ProtocolError, message.clone()).await;
            return Err(HandshakeError::Protocol(message));
        }
    };
    let checked = check_claim(peer_cert, peer_hello.node_id)
        .map_err(|m| (GoAwayReason::IdentityMismatch, m))
        .and_then(|()| check_hello(local, &cfg.protocol_versions, &peer_hello))
        .and_then(|version| admit(&peer_hello).map(|()| version));
    let version = match checked {
        Ok(version) => version,
        Err((reason, message)) => {
            refuse(writer, reason, message.clone()).await;
            return Err(refusal_error(GoAway {
                last_request_id: 0,
                reason,
                message,
            }));
        }
    };
    let to = MountPoint {
        lane: peer_hello.lane,
        group: peer_hello.group,
    };
    let ack = Hello {
        min_version: version,
        max_version: version,
        ..hello(local, to, peer_hello.node_id, cfg)
    };
    write_frame(writer, &Frame::HelloAck(ack)).await?;
    reader.set_limits(cfg.limits());
    Ok(Hello {
        min_version: version,
        max_version: version,
        ..peer_hello
    })
}

/// Initiator side: sends our hello and waits for the ack. `target` is the node id we expect
/// (0 = any). Over TLS, `peer_cert` (the acceptor's certificate) must name the node that
/// acks. On success the reader's limits are raised and the peer's ack is returned.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream in an unknown state; drop it.
pub(crate) async fn initiate(
    reader: &mut FrameReader,
    writer: &mut BoxWrite,
    local: &Identity,
    cfg: &ConnectionConfig,
    to: MountPoint,
    target: u64,
    peer_cert: Option<&PeerCert>,
) -> Result<Hello, HandshakeError> {
    reader.set_limits(Limits::handshake());
    let exchange = async {
        write_frame(writer, &Frame::Hello(hello(local, to, target, cfg))).await?;
        reader.next(None).await.map_err(read_error)
    };
    let reply = tokio::time::timeout(cfg.handshake_timeout, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout(cfg.handshake_timeout))??;
    let ack = match reply {
        Frame::HelloAck(ack) => ack,
        Frame::GoAway(goaway) => return Err(refusal_error(goaway)),
        other => {
            return Err(HandshakeError::Protocol(format!(
                "expected a hello-ack, got a {:?} frame",
                other.kind()
            )));
        }
    };
    // The acceptor names the version it chose (a version-1 acceptor: 1). It must be one we
    // offered.
    if !cfg.protocol_versions.contains(&ack.min_version) {
        return Err(HandshakeError::VersionMismatch(format!(
            "we speak protocol versions {}..={}, node {} acked version {}",
            cfg.protocol_versions.start(),
            cfg.protocol_versions.end(),
            ack.node_id,
            ack.min_version
        )));
    }
    if ack.cluster_id != local.cluster_id {
        return Err(HandshakeError::ClusterMismatch(format!(
            "we are in cluster {:#x}, node {} acked from cluster {:#x}",
            local.cluster_id, ack.node_id, ack.cluster_id
        )));
    }
    if target != 0 && ack.node_id != target {
        return Err(HandshakeError::WrongNode(format!(
            "expected node {target}, reached node {}",
            ack.node_id
        )));
    }
    check_claim(peer_cert, ack.node_id).map_err(|message| HandshakeError::Tls {
        failure: TlsFailure::WrongIdentity,
        message,
    })?;
    reader.set_limits(cfg.limits());
    Ok(Hello {
        max_version: ack.min_version,
        ..ack
    })
}

/// Over TLS, whether the peer's certificate names the node its hello (or ack) claims.
fn check_claim(peer_cert: Option<&PeerCert>, node_id: u64) -> Result<(), String> {
    match peer_cert {
        None => Ok(()),
        Some(cert) => cert
            .check_claim(node_id)
            .map_err(|why| format!("the peer claims to be node {node_id}, but {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Identity {
        Identity {
            cluster_id: 7,
            node_id: 2,
            epoch: 1,
        }
    }

    const OURS: RangeInclusive<u16> = 1..=2;

    fn good() -> Hello {
        Hello {
            min_version: 1,
            max_version: 2,
            lane: peerwire_wire::Lane::Rpc,
            group: 0,
            cluster_id: 7,
            node_id: 1,
            target_node_id: 2,
            epoch: 3,
            max_frame_body: 1 << 20,
            max_message: 1 << 20,
        }
    }

    #[test]
    fn negotiation_table() {
        // (ours, theirs, the version the connection runs at)
        let cases = [
            (1..=2, 1..=2, Some(2)),
            (1..=2, 1..=1, Some(1)),
            (1..=1, 1..=2, Some(1)),
            (2..=2, 1..=3, Some(2)),
            (1..=3, 2..=5, Some(3)),
            (2..=4, 1..=1, None),
            (1..=1, 2..=4, None),
            (3..=4, 5..=9, None),
            (1..=9, 4..=4, Some(4)),
        ];
        for (ours, theirs, want) in cases {
            assert_eq!(negotiate(&ours, &theirs), want, "{ours:?} with {theirs:?}");
            // The choice does not depend on which side asks.
            assert_eq!(negotiate(&theirs, &ours), want, "{theirs:?} with {ours:?}");
        }
    }

    #[test]
    fn hello_checks_table() {
        let cases = [
            (good(), Ok(2)),
            (
                Hello {
                    target_node_id: 0,
                    ..good()
                },
                Ok(2),
            ),
            (
                Hello {
                    max_version: 1,
                    ..good()
                },
                Ok(1),
            ),
            (
                Hello {
                    min_version: 9,
                    max_version: 12,
                    ..good()
                },
                Err(GoAwayReason::VersionMismatch),
            ),
            (
                Hello {
                    cluster_id: 8,
                    ..good()
                },
                Err(GoAwayReason::ClusterMismatch),
            ),
            (
                Hello {
                    target_node_id: 3,
                    ..good()
                },
                Err(GoAwayReason::WrongNode),
            ),
        ];
        for (hello, want) in cases {
            let got = check_hello(&local(), &OURS, &hello).map_err(|(r, _)| r);
            assert_eq!(got, want, "{hello:?}");
        }
    }

    #[test]
    fn a_version_refusal_names_both_ranges() {
        let (_, msg) = check_hello(
            &local(),
            &OURS,
            &Hello {
                min_version: 3,
                max_version: 4,
                ..good()
            },
        )
        .unwrap_err();
        assert!(msg.contains("1..=2") && msg.contains("3..=4"), "{msg}");
    }

    #[test]
    fn refusal_messages_name_both_sides() {
        let (_, msg) = check_hello(
            &local(),
            &OURS,
            &Hello {
                cluster_id: 0xbad,
                ..good()
            },
        )
        .unwrap_err();
        assert!(msg.contains("0x7") && msg.contains("0xbad"), "{msg}");
    }
}
