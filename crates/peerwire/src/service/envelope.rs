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

pub(crate) use crate::envelope::text;
use crate::envelope::{ENVELOPE_VERSION, EnvelopeError, check_version, put_name, read_name};

/// Bytes before the protocol name: version, engine, protocol version, client id, call id.
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
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::with_capacity(FIXED + 2 + protocol.len() + method.len() + body_hint);
        out.put_u8(ENVELOPE_VERSION);
        out.put_u8(engine);
        out.put_u32(protocol_version);
        out.put_u64(client_id);
        out.put_u64(call_id);
        put_name(&mut out, protocol, "protocol name", 1)?;
        put_name(&mut out, method, "method name", 1)?;
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
    ) -> Result<Bytes, EnvelopeError> {
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

    pub(crate) fn decode(bytes: Bytes) -> Result<Self, EnvelopeError> {
        let data = &bytes[..];
        check_version(data)?;
        if data.len() < FIXED {
            return Err(EnvelopeError::Truncated("header"));
        }
        let u32_at =
            |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap_or_default());
        let u64_at =
            |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().unwrap_or_default());
        let protocol = read_name(data, FIXED, "protocol name", 1)?;
        let method = read_name(data, protocol.end, "method name", 1)?;
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
            Err(EnvelopeError::Truncated("header"))
        );
        let mut v = vec![9u8; FIXED];
        v[0] = 2;
        assert_eq!(
            ServiceEnvelope::decode(Bytes::from(v)),
            Err(EnvelopeError::Version(2))
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
