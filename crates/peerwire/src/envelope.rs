//! What both typed-RPC stacks' envelopes are made of — the version byte that opens them, the
//! length-prefixed UTF-8 name fields (endpoint, type and sender names for the RpcEnv; protocol
//! and method names for typed protocols) — and the one error type for an envelope that cannot
//! be read or written, or a message its codec or engine cannot encode or decode. Pure.
//!
//! A name field on the wire:
//!
//! | offset | bytes | field |
//! |-------:|------:|---|
//! | 0 | 1 | length L (0–255; a field may require at least 1) |
//! | 1 | L | the name, UTF-8 |

use std::ops::Range;

use bytes::Bytes;

/// The envelope version both stacks write and accept.
pub const ENVELOPE_VERSION: u8 = 1;

/// Why an envelope, or the message in it, could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The envelope's version is not one this build reads.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// The envelope ended inside a field.
    #[error("envelope truncated in {0}")]
    Truncated(&'static str),
    /// A name field is not UTF-8.
    #[error("envelope {0} is not valid UTF-8")]
    Utf8(&'static str),
    /// A name field is empty where a name is required, or longer than 255 bytes.
    #[error("{what} must be {min} to 255 bytes, not {len}")]
    Length {
        /// The field.
        what: &'static str,
        /// Its shortest allowed length.
        min: usize,
        /// Its length.
        len: usize,
    },
    /// A field's text does not mean what the field needs (a sender that is not an address).
    #[error("envelope {what} `{text}` is invalid")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Its text.
        text: String,
    },
    /// The message could not be encoded or decoded by the codec (RpcEnv) or engine (typed
    /// protocols).
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A message that a codec or an engine could not encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec}: {message}")]
pub struct CodecError {
    /// The codec or engine (`bincode`, `protobuf`, ...).
    pub codec: &'static str,
    /// What went wrong, in its words.
    pub message: String,
}

impl CodecError {
    /// An error of `codec`.
    pub fn new(codec: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            codec,
            message: message.to_string(),
        }
    }
}

/// Checks the version byte at the start of `data`; the next field starts at offset 1.
pub fn check_version(data: &[u8]) -> Result<(), EnvelopeError> {
    match data.first() {
        None => Err(EnvelopeError::Truncated("version")),
        Some(&ENVELOPE_VERSION) => Ok(()),
        Some(&other) => Err(EnvelopeError::Version(other)),
    }
}

/// Appends `name` as a length-prefixed field; `what` names it in errors, `min` is its shortest
/// allowed length (0 or 1).
pub fn put_name(
    out: &mut Vec<u8>,
    name: &str,
    what: &'static str,
    min: usize,
) -> Result<(), EnvelopeError> {
    let len = name.len();
    let byte = u8::try_from(len)
        .ok()
        .filter(|_| len >= min)
        .ok_or(EnvelopeError::Length { what, min, len })?;
    out.push(byte);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// The range of the length-prefixed field at `at` in `data`, validated as UTF-8 and at least
/// `min` bytes long. The next field starts at the range's end.
pub fn read_name(
    data: &[u8],
    at: usize,
    what: &'static str,
    min: usize,
) -> Result<Range<usize>, EnvelopeError> {
    let len = *data.get(at).ok_or(EnvelopeError::Truncated(what))? as usize;
    if len < min {
        return Err(EnvelopeError::Length { what, min, len });
    }
    let range = at + 1..at + 1 + len;
    let text = data
        .get(range.clone())
        .ok_or(EnvelopeError::Truncated(what))?;
    std::str::from_utf8(text).map_err(|_| EnvelopeError::Utf8(what))?;
    Ok(range)
}

/// A name field cut from a decoded envelope, as text (validated by [`read_name`]; empty for
/// bytes that were not).
pub fn text(field: &Bytes) -> &str {
    std::str::from_utf8(field).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_their_limits_hold() {
        let mut out = vec![ENVELOPE_VERSION];
        put_name(&mut out, "hello", "a", 1).unwrap();
        put_name(&mut out, "", "b", 0).unwrap();
        put_name(&mut out, "ü", "c", 1).unwrap();
        check_version(&out).unwrap();
        let a = read_name(&out, 1, "a", 1).unwrap();
        let b = read_name(&out, a.end, "b", 0).unwrap();
        let c = read_name(&out, b.end, "c", 1).unwrap();
        let bytes = Bytes::from(out.clone());
        assert_eq!(text(&bytes.slice(a)), "hello");
        assert!(b.is_empty());
        assert_eq!(text(&bytes.slice(c.clone())), "ü");
        assert_eq!(c.end, out.len());
    }

    #[test]
    fn errors_table() {
        let long = "x".repeat(256);
        let mut out = Vec::new();
        assert_eq!(
            put_name(&mut out, &long, "name", 0),
            Err(EnvelopeError::Length {
                what: "name",
                min: 0,
                len: 256
            })
        );
        assert_eq!(
            put_name(&mut out, "", "name", 1),
            Err(EnvelopeError::Length {
                what: "name",
                min: 1,
                len: 0
            })
        );
        assert!(out.is_empty(), "nothing written on an error");
        let cases: [(&[u8], Result<(), EnvelopeError>); 3] = [
            (&[], Err(EnvelopeError::Truncated("version"))),
            (&[2], Err(EnvelopeError::Version(2))),
            (&[1], Ok(())),
        ];
        for (data, want) in cases {
            assert_eq!(check_version(data), want, "{data:?}");
        }
        assert_eq!(
            read_name(&[1, 5, b'a'], 1, "f", 0),
            Err(EnvelopeError::Truncated("f"))
        );
        assert_eq!(
            read_name(&[1], 1, "f", 0),
            Err(EnvelopeError::Truncated("f"))
        );
        assert_eq!(
            read_name(&[1, 1, 0xff], 1, "f", 0),
            Err(EnvelopeError::Utf8("f"))
        );
        assert_eq!(
            read_name(&[1, 0], 1, "f", 1),
            Err(EnvelopeError::Length {
                what: "f",
                min: 1,
                len: 0
            })
        );
    }
}
