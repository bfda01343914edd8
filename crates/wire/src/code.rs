//! Numeric codes carried on the wire: failure status, go-away reason and lane kind.
//!
//! Codes this version does not know decode to an `Other` variant rather than an error, so a
//! newer peer can add codes without breaking older ones.

use std::fmt;

macro_rules! wire_code {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A code this version of the protocol does not know.
            Other($repr),
        }

        impl $name {
            /// The code's value on the wire.
            pub fn to_wire(self) -> $repr {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Other(code) => code,
                }
            }

            /// Maps a wire value to a code; unknown values become `Other`.
            pub fn from_wire(code: $repr) -> Self {
                match code {
                    $( $value => Self::$variant, )*
                    other => Self::Other(other),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( Self::$variant => f.write_str($text), )*
                    Self::Other(code) => write!(f, "code {code}"),
                }
            }
        }
    };
}

wire_code! {
    /// Why a request failed, carried in a [`Failure`](crate::Failure) frame.
    ///
    /// [`Status::executed`] tells whether the handler may have run: callers may retry a call
    /// that failed with a status that was not executed.
    Status(u16) {
        /// The server's call queue (or the callee's inbox) is full; retry after the hint.
        Busy = 1 => "busy",
        /// No handler is registered for the route.
        UnknownRoute = 2 => "unknown route",
        /// The handler ran and returned an error.
        HandlerFailed = 3 => "handler failed",
        /// The call's deadline passed before a handler took it; it was not executed.
        DeadlineExceeded = 4 => "deadline exceeded",
        /// The call was cancelled by the caller.
        Cancelled = 5 => "cancelled",
        /// The request payload exceeds a server limit.
        PayloadTooLarge = 6 => "payload too large",
        /// The server is shutting down and did not start the call.
        ShuttingDown = 7 => "shutting down",
        /// The server failed while executing the call (for example the handler panicked).
        Internal = 8 => "internal error",
        /// The request was malformed for its route (for example it did not decode).
        BadRequest = 9 => "bad request",
        /// The server serves no protocol of that name.
        UnknownProtocol = 10 => "unknown protocol",
        /// The protocol has no method of that name.
        UnknownMethod = 11 => "unknown method",
        /// The server serves another version of the protocol.
        ProtocolVersionMismatch = 12 => "protocol version mismatch",
        /// The handler ran, but its reply exceeds the caller's limit for one message, so the
        /// caller receives this instead.
        ReplyTooLarge = 13 => "reply too large",
        /// The node's access policy does not let the caller's principal use the route,
        /// method or endpoint; the call did not run.
        AccessDenied = 14 => "access denied",
    }
}

impl Status {
    /// Whether a call that failed with this status may have been executed. `false` means the
    /// server guarantees it did not run the handler, so the call is safe to retry.
    pub fn executed(self) -> bool {
        match self {
            Self::Busy
            | Self::UnknownRoute
            | Self::DeadlineExceeded
            | Self::PayloadTooLarge
            | Self::ShuttingDown
            | Self::BadRequest
            | Self::AccessDenied
            | Self::UnknownProtocol
            | Self::UnknownMethod
            | Self::ProtocolVersionMismatch => false,
            Self::HandlerFailed
            | Self::Cancelled
            | Self::Internal
            | Self::ReplyTooLarge
            | Self::Other(_) => true,
        }
    }
}

wire_code! {
    /// Why the sender of a [`GoAway`](crate::GoAway) frame is closing the connection.
    GoAwayReason(u16) {
        /// Orderly close: shutdown or the owner closed the connection.
        Normal = 0 => "normal close",
        /// The connection carried no calls for longer than the idle timeout.
        Idle = 1 => "idle timeout",
        /// The peer sent bytes that are not a valid frame.
        ProtocolError = 2 => "protocol error",
        /// The peer sent a frame longer than the receiver's limit.
        FrameTooLarge = 3 => "frame too large",
        /// Nothing arrived from the peer (not even a heartbeat) within the read timeout.
        ReadTimeout = 4 => "read timeout",
        /// The hello named another cluster id.
        ClusterMismatch = 5 => "cluster id mismatch",
        /// The hello named a protocol version this side does not speak.
        VersionMismatch = 6 => "protocol version mismatch",
        /// The hello was addressed to another node id.
        WrongNode = 7 => "wrong target node",
        /// The hello asked for a lane kind this server does not serve.
        UnsupportedLane = 8 => "unsupported lane",
        /// The server is at its connection limit.
        TooManyConnections = 9 => "too many connections",
        /// The handshake did not complete within the handshake timeout.
        HandshakeTimeout = 10 => "handshake timeout",
        /// The peer was removed from the cluster and may not connect.
        MemberRemoved = 11 => "member removed",
        /// The peer exceeded a per-connection resource limit.
        LimitExceeded = 12 => "limit exceeded",
        /// This side requires TLS and the peer spoke plaintext.
        TlsRequired = 13 => "tls required",
        /// The peer's certificate does not name the node id its hello claims.
        IdentityMismatch = 14 => "identity mismatch",
        /// The hello named a group the lane's service does not host on this node.
        UnknownGroup = 15 => "unknown group",
        /// This node requires the shared secret (secret mode) and the peer did not offer it.
        SecretRequired = 16 => "shared secret required",
        /// The node's access policy does not let the peer's principal use this lane.
        AccessDenied = 17 => "access denied",
    }
}

wire_code! {
    /// The kind of traffic a connection carries, named in the hello. One port serves all lanes.
    Lane(u8) {
        /// Request/response and one-way calls (RpcEnv, typed services).
        Rpc = 0 => "rpc",
        /// Long-lived raft stream carrying append messages.
        RaftAppend = 1 => "raft-append",
        /// Long-lived raft stream carrying all other raft messages.
        RaftMessage = 2 => "raft-message",
        /// Short raft pipeline connection used while streams are down.
        RaftPipeline = 3 => "raft-pipeline",
        /// Raft snapshot transfer.
        RaftSnapshot = 4 => "raft-snapshot",
        /// Bulk data stream.
        DataStream = 5 => "data-stream",
        /// An RpcEnv's named endpoints (Spark).
        RpcEnv = 6 => "rpc-env",
        /// Pull streams (Spark's chunk fetch and stream requests): a reader fetches chunks of
        /// a stream the server registered.
        Pull = 7 => "pull",
    }
}

impl Lane {
    /// The first lane code left to services users define: codes below it are peerwire's own.
    pub const FIRST_USER_CODE: u8 = 128;

    /// The lane of a service a user defines: code `128 + n`.
    ///
    /// # Panics
    ///
    /// If `n` is 128 or more (there are 128 user lane codes).
    pub const fn user(n: u8) -> Self {
        assert!(n < 128, "user lane numbers run from 0 to 127");
        Self::Other(Self::FIRST_USER_CODE + n)
    }

    /// Whether this is a lane code left to services users define (128–255).
    pub const fn is_user(self) -> bool {
        matches!(self, Self::Other(code) if code >= Self::FIRST_USER_CODE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_survive() {
        for code in 0u16..20 {
            assert_eq!(Status::from_wire(code).to_wire(), code);
            assert_eq!(GoAwayReason::from_wire(code).to_wire(), code);
        }
        for code in 0u8..20 {
            assert_eq!(Lane::from_wire(code).to_wire(), code);
        }
        assert_eq!(Status::from_wire(999), Status::Other(999));
        assert_eq!(Status::Busy.to_string(), "busy");
        assert_eq!(Lane::user(0), Lane::Other(128));
        assert_eq!(Lane::user(127).to_wire(), 255);
        assert!(Lane::user(5).is_user());
        assert!(!Lane::Other(100).is_user() && !Lane::Rpc.is_user());
        assert_eq!(Status::Other(999).to_string(), "code 999");
    }

    #[test]
    fn executed_classification() {
        let table = [
            (Status::Busy, false),
            (Status::UnknownRoute, false),
            (Status::HandlerFailed, true),
            (Status::DeadlineExceeded, false),
            (Status::Cancelled, true),
            (Status::PayloadTooLarge, false),
            (Status::ShuttingDown, false),
            (Status::Internal, true),
            (Status::BadRequest, false),
            (Status::UnknownProtocol, false),
            (Status::UnknownMethod, false),
            (Status::ProtocolVersionMismatch, false),
            (Status::ReplyTooLarge, true),
            (Status::Other(77), true),
        ];
        for (status, executed) in table {
            assert_eq!(status.executed(), executed, "{status}");
        }
    }
}
