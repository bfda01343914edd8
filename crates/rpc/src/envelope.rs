//! The RpcEnv envelope: what travels in the payload of an RPC frame on the `rpcenv` route.
//!
//! | offset | bytes | field         | description                                              |
//! |-------:|------:|---------------|----------------------------------------------------------|
//! | 0      | 1     | version       | `1`                                                      |
//! | 1      | 1     | receiver_len R| 1..=255                                                  |
//! | 2      | R     | receiver      | endpoint name (UTF-8); `$verifier` is the built-in check |
//! | 2+R    | 1     | type_len T    | 0..=255                                                  |
//! | 3+R    | T     | type          | Rust type name of the message (UTF-8)                    |
//! | 3+R+T  | 1     | sender_len S  | 0 = the sender has no address (client mode)              |
//! | 4+R+T  | S     | sender        | the sender env's advertised address, as text             |
//! | 4+R+T+S| …     | body          | the message, encoded by the env's codec                  |

use std::net::SocketAddr;

use bytes::Bytes;
use peerwire::envelope::{ENVELOPE_VERSION, check_version, put_name, read_name};
pub(crate) use peerwire::envelope::{EnvelopeError, text};

/// The receiver name of the built-in endpoint that answers "does endpoint X exist here?".
pub(crate) const VERIFIER: &str = "$verifier";

/// A decoded envelope. Names are slices of the received frame (validated UTF-8): no copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) receiver: Bytes,
    pub(crate) type_name: Bytes,
    pub(crate) sender: Option<SocketAddr>,
    pub(crate) body: Bytes,
}

/// Writes everything before the body; the caller appends the encoded message.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    receiver: &str,
    type_name: &str,
    sender: &str,
) -> Result<(), EnvelopeError> {
    out.reserve(4 + receiver.len() + type_name.len() + sender.len());
    out.push(ENVELOPE_VERSION);
    put_name(out, receiver, "receiver name", 0)?;
    put_name(out, type_name, "message type name", 0)?;
    put_name(out, sender, "sender address", 0)?;
    Ok(())
}

impl Envelope {
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Result<Bytes, EnvelopeError> {
        let sender = self.sender.map(|a| a.to_string()).unwrap_or_default();
        let mut out = Vec::new();
        write_head(
            &mut out,
            text(&self.receiver),
            text(&self.type_name),
            &sender,
        )?;
        out.extend_from_slice(&self.body);
        Ok(Bytes::from(out))
    }

    /// Reads an envelope. Offsets are computed on the slice; the name fields and the body
    /// are then cut from `bytes` without copying.
    pub(crate) fn decode(bytes: Bytes) -> Result<Self, EnvelopeError> {
        let data = &bytes[..];
        check_version(data)?;
        let receiver = read_name(data, 1, "receiver", 0)?;
        let type_name = read_name(data, receiver.end, "type", 0)?;
        let sender = read_name(data, type_name.end, "sender", 0)?;
        let body_start = sender.end;
        let sender = if sender.is_empty() {
            None
        } else {
            let text = std::str::from_utf8(&data[sender]).unwrap_or_default();
            Some(text.parse().map_err(|_| EnvelopeError::Invalid {
                what: "sender",
                text: text.to_owned(),
            })?)
        };
        Ok(Self {
            receiver: bytes.slice(receiver),
            type_name: bytes.slice(type_name),
            sender,
            body: bytes.slice(body_start..),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_with_and_without_sender() {
        for sender in [
            None,
            Some("127.0.0.1:9000".parse().unwrap()),
            Some("[::1]:1".parse().unwrap()),
        ] {
            let e = Envelope {
                receiver: Bytes::from_static(b"hello-service"),
                type_name: Bytes::from_static(b"hello::Msg"),
                sender,
                body: Bytes::from_static(b"\x01\x02"),
            };
            assert_eq!(Envelope::decode(e.encode().unwrap()).unwrap(), e);
        }
    }

    #[test]
    fn bad_envelopes_are_errors() {
        assert_eq!(
            Envelope::decode(Bytes::new()),
            Err(EnvelopeError::Truncated("version"))
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[2])),
            Err(EnvelopeError::Version(2))
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[1, 5, b'a'])),
            Err(EnvelopeError::Truncated("receiver"))
        );
        assert!(matches!(
            Envelope::decode(Bytes::from_static(&[1, 1, b'a', 0, 3, b'x', b'y', b'z'])),
            Err(EnvelopeError::Invalid { what: "sender", .. })
        ));
        let long = Envelope {
            receiver: Bytes::from("x".repeat(300)),
            type_name: Bytes::new(),
            sender: None,
            body: Bytes::new(),
        };
        assert!(long.encode().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Envelope::decode(Bytes::from(data));
        }
    }
}
