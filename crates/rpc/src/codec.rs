//! Message codecs: how typed messages become bytes. Pluggable per environment; the default is
//! bincode (compact, schema-less binary, the serde format of Rust-to-Rust RPC).

use bytes::Bytes;
use peerwire::envelope::CodecError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns serde values into bytes and back. Object safe (through `erased-serde`), so an
/// environment can hold any codec.
pub trait Codec: Send + Sync + 'static {
    /// A short name for messages and logs.
    fn name(&self) -> &'static str;

    /// Serializes a value.
    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError>;

    /// Serializes a value, appending to `out` (lets the caller put a header first without a
    /// second buffer). The default calls [`Codec::encode`] and copies.
    fn encode_into(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        out.extend_from_slice(&self.encode(value)?);
        Ok(())
    }

    /// Deserializes `bytes`: builds a deserializer over them and hands it to `visit`.
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError>;
}

/// bincode 1.x with variable-length integers, rejecting trailing bytes, and never reading more
/// than the input holds (so a hostile length prefix cannot make it allocate).
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

impl Codec for BincodeCodec {
    fn name(&self) -> &'static str {
        "bincode"
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .serialize(value)
            .map_err(|e| CodecError::new("bincode", e))
    }

    fn encode_into(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .serialize_into(out, value)
            .map_err(|e| CodecError::new("bincode", e))
    }

    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError> {
        use bincode::Options;
        // The slice reader hands byte strings over without an intermediate buffer; the default
        // options reject trailing bytes, and the limit keeps a hostile length prefix from
        // allocating more than the input holds.
        bincode::DefaultOptions::new()
            .with_limit(bytes.len() as u64)
            .deserialize_seed(VisitSeed(visit), bytes)
            .map_err(|e| CodecError::new("bincode", e))
    }
}

/// Runs an erased visit inside serde's seeded deserialization, so codecs can use their
/// own entry points (and checks) while the caller stays type-erased.
struct VisitSeed<'f>(
    &'f mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
);

impl<'de> serde::de::DeserializeSeed<'de> for VisitSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let mut erased = <dyn erased_serde::Deserializer>::erase(deserializer);
        (self.0)(&mut erased).map_err(serde::de::Error::custom)
    }
}

/// Encodes `value` with `codec`.
pub(crate) fn encode<T: Serialize>(codec: &dyn Codec, value: &T) -> Result<Bytes, CodecError> {
    codec.encode(&value).map(Bytes::from)
}

/// Decodes a `T` from `bytes` with `codec`.
pub(crate) fn decode<T: DeserializeOwned>(
    codec: &dyn Codec,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let mut out = None;
    codec.decode(bytes, &mut |de| {
        out = Some(erased_serde::deserialize::<T>(de)?);
        Ok(())
    })?;
    out.ok_or_else(|| CodecError::new(codec.name(), "the codec produced no value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Msg {
        Hi(String),
        Add { a: u64, b: i32 },
    }

    #[test]
    fn bincode_round_trip_and_garbage() {
        let c = BincodeCodec;
        for m in [Msg::Hi("x".into()), Msg::Add { a: 1 << 40, b: -3 }] {
            let bytes = encode(&c, &m).unwrap();
            assert_eq!(decode::<Msg>(&c, &bytes).unwrap(), m);
        }
        assert!(decode::<Msg>(&c, &[9, 9, 9]).is_err());
        // A length prefix claiming 2^60 bytes must fail, not allocate.
        assert!(decode::<Vec<u8>>(&c, &[0xff, 0, 0, 0, 0, 0, 0, 0, 0x10]).is_err());
        let mut bytes = encode(&c, &Msg::Hi("x".into())).unwrap().to_vec();
        bytes.push(0);
        assert!(
            decode::<Msg>(&c, &bytes).is_err(),
            "trailing bytes must be refused"
        );
    }
}
