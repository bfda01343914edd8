//! The service envelope: the payload of requests on the service route.
//!
//! | offset | bytes | field | description |
//! |-------:|------:|---|---|
//! | 0 | 1 | version | `1` |
//! | 1 | 1 | engine | payload encoding: 1 = serde (bincode), 2 = protobuf (prost) |
//! | 2 | 4 | protocol version | u32 |
//! | 6 | 8 | client id | the calling client's id (random per client) |
//! | 14 | 8 | call id | unique per logical call of that client; a retry resends the same id |
//! | 22 | 1 | protocol_len P | 1..=255 |
//! | 23 | P | protocol | protocol name (UTF-8) |
//! | 23+P | 1 | method_len M | 1..=255 |
//! | 24+P | M | method | method name (UTF-8) |
//! | 24+P+M | … | body | the request, encoded by the engine |

use bytes::{BufMut, Bytes};

const VERSION: u8 = 1;
const FIXED: usize = 22;

/// A decoded service envelope; names are slices of the request (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceEnvelope {
    pub(crate) engine: u8,
    pub(crate) protocol_version: u32,
    pub(crate) client_id: u64,
    pub(crate) call_id: u64,
    pub(crate) protocol: Bytes,
    pub(crate) method: Bytes,
    pub(crate) body: Bytes,
}

/// Why a service envelope could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ServiceEnvelopeError {
    #[error("unsupported service envelope version {0}")]
    Version(u8),
    #[error("service envelope truncated in {0}")]
    Truncated(&'static str),
    #[error("service envelope {0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("{0} must be 1 to 255 bytes")]
    Length(&'static str),
}

pub(crate) fn text(field: &Bytes) -> &str {
    // Validated at decode time.
    std::str::from_utf8(field).unwrap_or_default()
}

impl ServiceEnvelope {
    /// Writes an envelope's header; the body is appended to the returned buffer (by the
    /// engine, so the request is serialized once, in place).
    pub(crate) fn encode_header(
        engine: u8,
        protocol: &str,
        protocol_version: u32,
        method: &str,
        client_id: u64,
        call_id: u64,
        body_hint: usize,
    ) -> Result<Vec<u8>, ServiceEnvelopeError> {
        let short = |s: &str, what| {
            u8::try_from(s.len())
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ServiceEnvelopeError::Length(what))
        };
        let mut out = Vec::with_capacity(FIXED + 2 + protocol.len() + method.len() + body_hint);
        out.put_u8(VERSION);
        out.put_u8(engine);
        out.put_u32(protocol_version);
        out.put_u64(client_id);
        out.put_u64(call_id);
        out.put_u8(short(protocol, "protocol name")?);
        out.put_slice(protocol.as_bytes());
        out.put_u8(short(method, "method name")?);
        out.put_slice(method.as_bytes());
        Ok(out)
    }

    /// Encodes an envelope around `body`.
    #[cfg(test)]
    pub(crate) fn encode(
        engine: u8,
        protocol: &str,
        protocol_version: u32,
        method: &str,
        client_id: u64,
        call_id: u64,
        body: &[u8],
    ) -> Result<Bytes, ServiceEnvelopeError> {
        let mut out = Self::encode_header(
            engine,
            protocol,
            protocol_version,
            method,
            client_id,
            call_id,
            body.len(),
        )?;
        out.extend_from_slice(body);
        Ok(Bytes::from(out))
    }

    pub(crate) fn decode(bytes: Bytes) -> Result<Self, ServiceEnvelopeError> {
        fn field(
            data: &[u8],
            at: usize,
            what: &'static str,
        ) -> Result<std::ops::Range<usize>, ServiceEnvelopeError> {
            let len = *data.get(at).ok_or(ServiceEnvelopeError::Truncated(what))? as usize;
            if len == 0 {
                return Err(ServiceEnvelopeError::Length(what));
            }
            let range = at + 1..at + 1 + len;
            let text = data
                .get(range.clone())
                .ok_or(ServiceEnvelopeError::Truncated(what))?;
            std::str::from_utf8(text).map_err(|_| ServiceEnvelopeError::Utf8(what))?;
            Ok(range)
        }
        let data = &bytes[..];
        if data.len() < FIXED {
            return Err(ServiceEnvelopeError::Truncated("header"));
        }
        if data[0] != VERSION {
            return Err(ServiceEnvelopeError::Version(data[0]));
        }
        let u32_at =
            |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap_or_default());
        let u64_at =
            |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().unwrap_or_default());
        let protocol = field(data, FIXED, "protocol name")?;
        let method = field(data, protocol.end, "method name")?;
        Ok(Self {
            engine: data[1],
            protocol_version: u32_at(2),
            client_id: u64_at(6),
            call_id: u64_at(14),
            protocol: bytes.slice(protocol),
            method: bytes.slice(method.clone()),
            body: bytes.slice(method.end..),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let bytes =
            ServiceEnvelope::encode(2, "ClientProtocol", 3, "mkdirs", 7, 9, b"body").unwrap();
        let e = ServiceEnvelope::decode(bytes).unwrap();
        assert_eq!(
            (e.engine, e.protocol_version, e.client_id, e.call_id),
            (2, 3, 7, 9)
        );
        assert_eq!(text(&e.protocol), "ClientProtocol");
        assert_eq!(text(&e.method), "mkdirs");
        assert_eq!(e.body, "body");
    }

    #[test]
    fn bad_envelopes() {
        assert_eq!(
            ServiceEnvelope::decode(Bytes::from_static(&[1, 1])),
            Err(ServiceEnvelopeError::Truncated("header"))
        );
        let mut v = vec![9u8; FIXED];
        v[0] = 2;
        assert_eq!(
            ServiceEnvelope::decode(Bytes::from(v)),
            Err(ServiceEnvelopeError::Version(2))
        );
        assert!(ServiceEnvelope::encode(1, "", 1, "m", 0, 0, b"").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ServiceEnvelope::decode(Bytes::from(data));
        }
    }
}
