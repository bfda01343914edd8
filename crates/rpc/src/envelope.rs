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

/// The receiver name of the built-in endpoint that answers "does endpoint X exist here?".
pub(crate) const VERIFIER: &str = "$verifier";

const VERSION: u8 = 1;

/// A decoded envelope. Names are slices of the received frame (validated UTF-8): no copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) receiver: Bytes,
    pub(crate) type_name: Bytes,
    pub(crate) sender: Option<SocketAddr>,
    pub(crate) body: Bytes,
}

/// Why an envelope could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("unsupported envelope version {0}")]
    Version(u8),
    #[error("envelope truncated in {0}")]
    Truncated(&'static str),
    #[error("envelope {0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("envelope sender `{0}` is not a socket address")]
    Sender(String),
    #[error("{0} longer than 255 bytes")]
    TooLong(&'static str),
}

fn short(text: &str, what: &'static str) -> Result<u8, EnvelopeError> {
    u8::try_from(text.len()).map_err(|_| EnvelopeError::TooLong(what))
}

/// Writes everything before the body; the caller appends the encoded message.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    receiver: &str,
    type_name: &str,
    sender: &str,
) -> Result<(), EnvelopeError> {
    out.reserve(4 + receiver.len() + type_name.len() + sender.len());
    out.push(VERSION);
    out.push(short(receiver, "receiver name")?);
    out.extend_from_slice(receiver.as_bytes());
    out.push(short(type_name, "message type name")?);
    out.extend_from_slice(type_name.as_bytes());
    out.push(short(sender, "sender address")?);
    out.extend_from_slice(sender.as_bytes());
    Ok(())
}

/// A validated UTF-8 view of a name field.
pub(crate) fn text(field: &Bytes) -> &str {
    // Validated when the envelope was decoded; never fails for decoded envelopes.
    std::str::from_utf8(field).unwrap_or_default()
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
        /// The range of the length-prefixed field at `at`, validated as UTF-8.
        fn field(
            data: &[u8],
            at: usize,
            what: &'static str,
        ) -> Result<std::ops::Range<usize>, EnvelopeError> {
            let len = *data.get(at).ok_or(EnvelopeError::Truncated(what))? as usize;
            let range = at + 1..at + 1 + len;
            let text = data
                .get(range.clone())
                .ok_or(EnvelopeError::Truncated(what))?;
            std::str::from_utf8(text).map_err(|_| EnvelopeError::Utf8(what))?;
            Ok(range)
        }
        let data = &bytes[..];
        let version = *data.first().ok_or(EnvelopeError::Truncated("version"))?;
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let receiver = field(data, 1, "receiver")?;
        let type_name = field(data, receiver.end, "type")?;
        let sender = field(data, type_name.end, "sender")?;
        let body_start = sender.end;
        let sender = if sender.is_empty() {
            None
        } else {
            let text = std::str::from_utf8(&data[sender]).unwrap_or_default();
            Some(
                text.parse()
                    .map_err(|_| EnvelopeError::Sender(text.to_owned()))?,
            )
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
            Err(EnvelopeError::Sender(_))
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
