//! Engines (Hadoop's `RpcKind` → `RpcInvoker`): how a method's request and response are
//! encoded. Chosen per method; the envelope names the engine so a mismatch is refused.

use serde::Serialize;

use crate::envelope::CodecError;
use serde::de::DeserializeOwned;

/// An engine's identity on the wire.
pub trait EngineId: Copy + Send + Sync + 'static {
    /// Engine code in the service envelope.
    const ID: u8;
    /// Name for errors.
    const NAME: &'static str;
}

/// Encodes and decodes values of `T`.
pub trait Engine<T>: EngineId {
    /// Serializes a value, appending it to `out`.
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Deserializes a value.
    fn decode(bytes: &[u8]) -> Result<T, CodecError>;
    /// Deserializes a value from a shared buffer: an engine whose values can hold slices of it
    /// (protobuf `bytes` fields as `Bytes`) takes them without a copy.
    fn decode_bytes(bytes: bytes::Bytes) -> Result<T, CodecError> {
        Self::decode(&bytes)
    }
}

/// serde values in bincode (compact binary, Rust to Rust).
#[derive(Debug, Clone, Copy, Default)]
pub struct Serde;

impl EngineId for Serde {
    const ID: u8 = 1;
    const NAME: &'static str = "serde";
}

impl<T: Serialize + DeserializeOwned> Engine<T> for Serde {
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .serialize_into(out, value)
            .map_err(|e| CodecError::new("bincode", e))
    }

    fn decode(bytes: &[u8]) -> Result<T, CodecError> {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .with_limit(bytes.len() as u64)
            .deserialize(bytes)
            .map_err(|e| CodecError::new("bincode", e))
    }
}

/// Protocol Buffers messages (prost): for peers in other languages, as Hadoop's
/// `ProtobufRpcEngine`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prost;

impl EngineId for Prost {
    const ID: u8 = 2;
    const NAME: &'static str = "protobuf";
}

impl<T: prost::Message + Default> Engine<T> for Prost {
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        value
            .encode(out)
            .map_err(|e| CodecError::new("protobuf", e))
    }

    fn decode(bytes: &[u8]) -> Result<T, CodecError> {
        T::decode(bytes).map_err(|e| CodecError::new("protobuf", e))
    }

    fn decode_bytes(bytes: bytes::Bytes) -> Result<T, CodecError> {
        T::decode(bytes).map_err(|e| CodecError::new("protobuf", e))
    }
}

/// The name of engine `id`, for messages.
pub(crate) fn name_of(id: u8) -> String {
    match id {
        Serde::ID => Serde::NAME.to_owned(),
        Prost::ID => Prost::NAME.to_owned(),
        other => format!("engine {other}"),
    }
}
