//! The body of a one-way frame on a long-lived raft lane: a batch of messages, each prefixed
//! by its length (u32, little-endian). Pure.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | length `n` of the first message |
//! | 4 | `n` | the message ([`RaftMessage::encode`]) |
//! | 4 + `n` | 4 | length of the second message, and so on to the end of the body |

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::message::RaftMessage;

/// A batch body that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad raft batch at byte {offset}: {what}")]
pub struct BatchError {
    /// Where in the body.
    pub offset: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// Appends `msg` to a batch body.
pub fn push<M: RaftMessage>(out: &mut BytesMut, msg: &M) {
    let start = out.len();
    out.put_u32_le(0);
    msg.encode(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Splits a batch body into its messages (zero-copy slices of `body`).
pub fn split(mut body: Bytes) -> impl Iterator<Item = Result<Bytes, BatchError>> {
    let total = body.len();
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || body.is_empty() {
            return None;
        }
        let offset = total - body.len();
        if body.len() < 4 {
            failed = true;
            return Some(Err(BatchError {
                offset,
                what: "truncated length prefix",
            }));
        }
        let len = body.get_u32_le() as usize;
        if len > body.len() {
            failed = true;
            return Some(Err(BatchError {
                offset,
                what: "length prefix runs past the end of the body",
            }));
        }
        Some(Ok(body.split_to(len)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageKind;

    /// A message that is its own bytes.
    #[derive(Debug, PartialEq)]
    struct Raw(Vec<u8>);

    impl RaftMessage for Raw {
        type Error = std::convert::Infallible;
        fn kind(&self) -> MessageKind {
            MessageKind::Other
        }
        fn from(&self) -> u64 {
            0
        }
        fn to(&self) -> u64 {
            0
        }
        fn encode(&self, out: &mut BytesMut) {
            out.extend_from_slice(&self.0);
        }
        fn decode(bytes: Bytes) -> Result<Self, Self::Error> {
            Ok(Self(bytes.to_vec()))
        }
    }

    proptest::proptest! {
        #[test]
        fn batches_round_trip(msgs in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..20)) {
            let mut body = BytesMut::new();
            for m in &msgs {
                push(&mut body, &Raw(m.clone()));
            }
            let back: Vec<Vec<u8>> = split(body.freeze()).map(|m| m.unwrap().to_vec()).collect();
            proptest::prop_assert_eq!(back, msgs);
        }

        #[test]
        fn any_body_splits_or_fails_without_panicking(body in proptest::collection::vec(0u8.., 0..64)) {
            let results: Vec<_> = split(Bytes::from(body)).collect();
            // At most one error, and only as the last item.
            let errors = results.iter().filter(|r| r.is_err()).count();
            proptest::prop_assert!(errors <= 1);
            if errors == 1 {
                proptest::prop_assert!(results.last().unwrap().is_err());
            }
        }
    }

    #[test]
    fn truncated_bodies_name_the_offset() {
        let mut body = BytesMut::new();
        push(&mut body, &Raw(b"abc".to_vec()));
        body.extend_from_slice(&[9, 0, 0, 0, 1]);
        let results: Vec<_> = split(body.freeze()).collect();
        assert_eq!(results[0], Ok(Bytes::from_static(b"abc")));
        assert_eq!(
            results[1],
            Err(BatchError {
                offset: 7,
                what: "length prefix runs past the end of the body"
            })
        );
        assert_eq!(results.len(), 2);
    }
}
