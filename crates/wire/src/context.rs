//! Request context (version 4): a bounded set of key/value metadata carried by a request, such
//! as W3C trace context (`traceparent`, `tracestate`) and the caller context Hadoop logs in its
//! audit log (`caller`).
//!
//! A Request frame with flag [`CONTEXT`] carries, after its route, a u16 length C and a block of
//! C bytes of entries, each:
//!
//! | offset | bytes | field       | description                                          |
//! |-------:|------:|-------------|------------------------------------------------------|
//! | 0      | 1     | key_len K   | 1 to [`MAX_KEY`]                                     |
//! | 1      | K     | key         | lowercase ASCII letters, digits, `-`, `_`, `.`       |
//! | 1 + K  | 2     | value_len V |                                                      |
//! | 3 + K  | V     | value       | bytes (UTF-8 by convention)                          |
//!
//! At most [`MAX_ENTRIES`] entries, each key once, and the block at most the receiver's limit
//! (4 KiB by default). [`Context::parse`] checks all of that on the block as received, without
//! copying or allocating anything, so an oversize or malformed block costs its reader nothing
//! before it is refused.

use bytes::{BufMut, Bytes, BytesMut};

/// Request flag: a context block follows the route (version 4).
pub const CONTEXT: u8 = 0x40;

/// The longest key.
pub const MAX_KEY: usize = 64;

/// The most entries in one context.
pub const MAX_ENTRIES: usize = 32;

/// The default limit of a context block, in bytes: room for W3C trace context (a 55-byte
/// `traceparent` and a `tracestate` of up to 512 bytes, its specification's limit) and a caller
/// context with room to spare, while a peer can make a call carry little beside its payload.
pub const DEFAULT_MAX_CONTEXT: u16 = 4096;

/// Why a context block or entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The block is longer than the limit.
    #[error("request context of {len} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The block's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("request context has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// A key that is empty, longer than [`MAX_KEY`], or has a character outside `[a-z0-9._-]`.
    #[error("request context key {key:?} is not 1 to {MAX_KEY} characters of [a-z0-9._-]")]
    BadKey {
        /// The key, lossily decoded.
        key: String,
    },
    /// A key given twice.
    #[error("request context key {0:?} appears twice")]
    DuplicateKey(String),
    /// An entry runs past the end of the block.
    #[error("request context entry runs past the end of its block")]
    Truncated,
}

fn valid_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
}

/// A request's context: a checked block of entries, shared with the frame it came in (no copy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Context {
    block: Bytes,
}

impl Context {
    /// No context.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// Checks a block as received against `limit` bytes and the entry rules, without copying.
    pub fn parse(block: Bytes, limit: usize) -> Result<Self, ContextError> {
        if block.len() > limit {
            return Err(ContextError::TooLarge {
                len: block.len(),
                limit,
            });
        }
        let mut entries = 0usize;
        let mut at = 0usize;
        while at < block.len() {
            let (key, value_end) = entry_at(&block, at)?;
            entries += 1;
            if entries > MAX_ENTRIES {
                return Err(ContextError::TooManyEntries);
            }
            if !valid_key(key) {
                return Err(ContextError::BadKey {
                    key: String::from_utf8_lossy(key).into_owned(),
                });
            }
            // Keys are few (at most 32): a scan of the earlier ones allocates nothing.
            if Self::scan(&block[..at]).any(|(k, _)| k == key) {
                return Err(ContextError::DuplicateKey(
                    String::from_utf8_lossy(key).into_owned(),
                ));
            }
            at = value_end;
        }
        Ok(Self { block })
    }

    /// The encoded block (what follows the length on the wire).
    pub fn as_bytes(&self) -> &Bytes {
        &self.block
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of `key`, if it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every entry, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Keys were checked ASCII when the context was made.
        Self::scan(&self.block).map(|(k, v)| (std::str::from_utf8(k).unwrap_or(""), v))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        Self::scan(&self.block).count()
    }

    fn scan(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at >= block.len() {
                return None;
            }
            let (key, end) = entry_at(block, at).ok()?;
            let value = &block[at + 1 + key.len() + 2..end];
            at = end;
            Some((key, value))
        })
    }

    /// A context of `entries`, checked as [`Context::parse`] checks a received one.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        limit: usize,
    ) -> Result<Self, ContextError> {
        let mut block = BytesMut::new();
        for (key, value) in entries {
            if !valid_key(key.as_bytes()) {
                return Err(ContextError::BadKey { key: key.into() });
            }
            let value_len = u16::try_from(value.len()).map_err(|_| ContextError::TooLarge {
                len: value.len(),
                limit,
            })?;
            block.put_u8(key.len() as u8);
            block.put_slice(key.as_bytes());
            block.put_u16(value_len);
            block.put_slice(value);
            if block.len() > limit {
                return Err(ContextError::TooLarge {
                    len: block.len(),
                    limit,
                });
            }
        }
        Self::parse(block.freeze(), limit)
    }

    /// This context with `key` set to `value` (replacing an earlier value).
    pub fn with(&self, key: &str, value: &[u8], limit: usize) -> Result<Self, ContextError> {
        let kept = self.iter().filter(|(k, _)| *k != key);
        Self::from_entries(kept.chain(std::iter::once((key, value))), limit)
    }
}

/// The key of the entry at `at` and where its value ends.
fn entry_at(block: &[u8], at: usize) -> Result<(&[u8], usize), ContextError> {
    let key_len = usize::from(*block.get(at).ok_or(ContextError::Truncated)?);
    let key_end = at + 1 + key_len;
    let key = block.get(at + 1..key_end).ok_or(ContextError::Truncated)?;
    let len = block
        .get(key_end..key_end + 2)
        .ok_or(ContextError::Truncated)?;
    let value_end = key_end + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if value_end > block.len() {
        return Err(ContextError::Truncated);
    }
    Ok((key, value_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = DEFAULT_MAX_CONTEXT as usize;

    #[test]
    fn entries_round_trip_in_order() {
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c =
            Context::from_entries([("traceparent", &tp[..]), ("caller", b"job-7")], LIMIT).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("traceparent"), Some(&tp[..]));
        assert_eq!(c.get_str("caller"), Some("job-7"));
        assert_eq!(c.get("tracestate"), None);
        let again = Context::parse(c.as_bytes().clone(), LIMIT).unwrap();
        assert_eq!(again, c);
        assert_eq!(
            again.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["traceparent", "caller"]
        );
        let replaced = c.with("caller", b"job-8", LIMIT).unwrap();
        assert_eq!(replaced.get_str("caller"), Some("job-8"));
        assert_eq!(replaced.len(), 2);
    }

    #[test]
    fn an_oversize_block_is_refused_by_its_length_alone() {
        let block = Bytes::from(vec![0xFFu8; LIMIT + 1]);
        assert_eq!(
            Context::parse(block, LIMIT),
            Err(ContextError::TooLarge {
                len: LIMIT + 1,
                limit: LIMIT
            })
        );
        let big = vec![b'x'; LIMIT];
        assert!(matches!(
            Context::from_entries([("k", &big[..])], LIMIT),
            Err(ContextError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_blocks_are_refused() {
        // A value length past the end.
        let mut b = BytesMut::new();
        b.put_u8(1);
        b.put_slice(b"k");
        b.put_u16(10);
        b.put_slice(b"abc");
        assert_eq!(
            Context::parse(b.freeze(), LIMIT),
            Err(ContextError::Truncated)
        );
        // A key length past the end.
        assert_eq!(
            Context::parse(Bytes::from_static(&[5, b'a']), LIMIT),
            Err(ContextError::Truncated)
        );
        // Bad keys.
        for key in [&b""[..], b"Upper", b"sp ace", &[b'a'; MAX_KEY + 1]] {
            let mut b = BytesMut::new();
            b.put_u8(key.len() as u8);
            b.put_slice(key);
            b.put_u16(0);
            assert!(
                matches!(
                    Context::parse(b.freeze(), LIMIT),
                    Err(ContextError::BadKey { .. })
                ),
                "{key:?}"
            );
        }
        // A key twice.
        let mut b = BytesMut::new();
        for _ in 0..2 {
            b.put_u8(1);
            b.put_slice(b"k");
            b.put_u16(0);
        }
        assert_eq!(
            Context::parse(b.freeze(), LIMIT),
            Err(ContextError::DuplicateKey("k".into()))
        );
        // Too many entries.
        let mut b = BytesMut::new();
        for i in 0..=MAX_ENTRIES {
            let key = format!("k{i}");
            b.put_u8(key.len() as u8);
            b.put_slice(key.as_bytes());
            b.put_u16(0);
        }
        assert_eq!(
            Context::parse(b.freeze(), LIMIT),
            Err(ContextError::TooManyEntries)
        );
    }
}
