//! The hello exchange that opens every connection.
//!
//! The initiator sends `Hello`; the acceptor checks it ([`check_hello`]) and answers
//! `HelloAck`, or `GoAway` with the reason and closes. Until the exchange completes, the
//! decoder accepts only hello-sized frames. The whole exchange is bounded by the handshake
//! timeout.

use peerwire_wire::{Frame, GoAway, GoAwayReason, Hello, Lane, Limits, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;

use super::frame_reader::{FrameReader, ReadError};
use crate::config::{ConnectionConfig, Identity};
use crate::error::HandshakeError;
use crate::tls::{PeerCert, TlsFailure};
use crate::transport::BoxWrite;

/// Checks a received hello against this node. Pure: returns the go-away reason and message
/// to refuse with.
pub(crate) fn check_hello(
    local: &Identity,
    hello: &Hello,
    lane_served: bool,
) -> Result<(), (GoAwayReason, String)> {
    if hello.version != PROTOCOL_VERSION {
        return Err((
            GoAwayReason::VersionMismatch,
            format!(
                "node {} speaks protocol version {PROTOCOL_VERSION}, hello from node {} offered version {}",
                local.node_id, hello.node_id, hello.version
            ),
        ));
    }
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
    if !lane_served {
        return Err((
            GoAwayReason::UnsupportedLane,
            format!(
                "node {} does not serve the {} lane",
                local.node_id, hello.lane
            ),
        ));
    }
    Ok(())
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

fn hello(local: &Identity, lane: Lane, target: u64, cfg: &ConnectionConfig) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        lane,
        cluster_id: local.cluster_id,
        node_id: local.node_id,
        target_node_id: target,
        epoch: local.epoch,
        max_frame_body: cfg.max_frame_body,
    }
}

/// Acceptor side: reads the peer's hello, checks it, answers. On success the reader's limits
/// are raised to the connection limits and the peer's hello is returned. Over TLS,
/// `peer_cert` is the certificate the peer proved it holds: it must name the node the hello
/// claims to be.
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
    serves_lane: impl Fn(Lane) -> bool,
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
        .and_then(|()| check_hello(local, &peer_hello, serves_lane(peer_hello.lane)))
        .and_then(|()| admit(&peer_hello));
    if let Err((reason, message)) = checked {
        refuse(writer, reason, message.clone()).await;
        return Err(refusal_error(GoAway {
            last_request_id: 0,
            reason,
            message,
        }));
    }
    let ack = hello(local, peer_hello.lane, peer_hello.node_id, cfg);
    write_frame(writer, &Frame::HelloAck(ack)).await?;
    reader.set_limits(cfg.limits());
    Ok(peer_hello)
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
    lane: Lane,
    target: u64,
    peer_cert: Option<&PeerCert>,
) -> Result<Hello, HandshakeError> {
    reader.set_limits(Limits::handshake());
    let exchange = async {
        write_frame(writer, &Frame::Hello(hello(local, lane, target, cfg))).await?;
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
    if ack.version != PROTOCOL_VERSION {
        return Err(HandshakeError::VersionMismatch(format!(
            "we speak version {PROTOCOL_VERSION}, node {} acked version {}",
            ack.node_id, ack.version
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
    Ok(ack)
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

    fn good() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            lane: Lane::Rpc,
            cluster_id: 7,
            node_id: 1,
            target_node_id: 2,
            epoch: 3,
            max_frame_body: 1 << 20,
        }
    }

    #[test]
    fn hello_checks_table() {
        let cases = [
            (good(), true, None),
            (
                Hello {
                    target_node_id: 0,
                    ..good()
                },
                true,
                None,
            ),
            (
                Hello {
                    version: 9,
                    ..good()
                },
                true,
                Some(GoAwayReason::VersionMismatch),
            ),
            (
                Hello {
                    cluster_id: 8,
                    ..good()
                },
                true,
                Some(GoAwayReason::ClusterMismatch),
            ),
            (
                Hello {
                    target_node_id: 3,
                    ..good()
                },
                true,
                Some(GoAwayReason::WrongNode),
            ),
            (good(), false, Some(GoAwayReason::UnsupportedLane)),
        ];
        for (hello, lane_ok, want) in cases {
            let got = check_hello(&local(), &hello, lane_ok).err().map(|(r, _)| r);
            assert_eq!(got, want, "{hello:?}");
        }
    }

    #[test]
    fn refusal_messages_name_both_sides() {
        let (_, msg) = check_hello(
            &local(),
            &Hello {
                cluster_id: 0xbad,
                ..good()
            },
            true,
        )
        .unwrap_err();
        assert!(msg.contains("0x7") && msg.contains("0xbad"), "{msg}");
    }
}
