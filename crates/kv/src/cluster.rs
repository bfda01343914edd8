//! The cluster's members as raftexample names them: a comma-separated list of peer URLs,
//! member `i` (from 1) at the `i`-th URL. Pure parsing, no IO beyond name resolution.

use std::net::{SocketAddr, ToSocketAddrs};

/// A peer URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing was given.
    #[error("empty peer URL")]
    Empty,
    /// A scheme other than `http://` (peerwire speaks its own protocol on the port; the scheme
    /// is accepted only for raftexample compatibility).
    #[error("peer URL `{0}`: only http:// or no scheme is accepted")]
    Scheme(String),
    /// Not `host:port`.
    #[error("peer URL `{url}`: {reason}")]
    Address {
        /// The URL.
        url: String,
        /// Why it does not resolve.
        reason: String,
    },
}

/// Parses one peer URL: `http://127.0.0.1:12379`, `127.0.0.1:12379`, or `localhost:12379`
/// (with an optional trailing `/`).
pub fn parse_peer_url(url: &str) -> Result<SocketAddr, UrlError> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(UrlError::Empty);
    }
    let rest = match trimmed.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => return Err(UrlError::Scheme(trimmed.to_owned())),
        None => trimmed,
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err(UrlError::Address {
            url: trimmed.to_owned(),
            reason: "a path is not allowed".into(),
        });
    }
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = rest.to_socket_addrs().map_err(|e| UrlError::Address {
        url: trimmed.to_owned(),
        reason: e.to_string(),
    })?;
    addrs.next().ok_or_else(|| UrlError::Address {
        url: trimmed.to_owned(),
        reason: "resolves to no address".into(),
    })
}

/// Parses raftexample's `--cluster` list: member ids are positions from 1.
pub fn parse_cluster(list: &str) -> Result<Vec<(u64, SocketAddr)>, UrlError> {
    list.split(',')
        .enumerate()
        .map(|(i, url)| Ok((i as u64 + 1, parse_peer_url(url)?)))
        .collect()
}

/// The cluster id every member and client checks in the handshake, derived from a cluster
/// token (etcd's `--initial-cluster-token`) with FNV-1a, never 0.
pub fn cluster_id(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// The default cluster token.
pub const DEFAULT_CLUSTER_TOKEN: &str = "peerwire-kv";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_scheme() {
        let a: SocketAddr = "127.0.0.1:12379".parse().unwrap();
        assert_eq!(parse_peer_url("http://127.0.0.1:12379"), Ok(a));
        assert_eq!(parse_peer_url("http://127.0.0.1:12379/"), Ok(a));
        assert_eq!(parse_peer_url(" 127.0.0.1:12379 "), Ok(a));
        assert_eq!(parse_peer_url("localhost:12379").unwrap().port(), 12379);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert_eq!(parse_peer_url(""), Err(UrlError::Empty));
        assert!(matches!(
            parse_peer_url("https://127.0.0.1:1"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            parse_peer_url("http://127.0.0.1:1/x"),
            Err(UrlError::Address { .. })
        ));
        assert!(matches!(
            parse_peer_url("127.0.0.1"),
            Err(UrlError::Address { .. })
        ));
        assert!(matches!(
            parse_peer_url("127.0.0.1:99999"),
            Err(UrlError::Address { .. })
        ));
    }

    #[test]
    fn cluster_lists_number_members_from_one() {
        let c =
            parse_cluster("http://127.0.0.1:12379,http://127.0.0.1:22379,127.0.0.1:32379").unwrap();
        let ids: Vec<u64> = c.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(c[2].1.port(), 32379);
        assert!(parse_cluster("127.0.0.1:1,,127.0.0.1:2").is_err());
    }

    #[test]
    fn cluster_ids_differ_by_token_and_are_never_zero() {
        assert_ne!(cluster_id("a"), cluster_id("b"));
        assert_eq!(cluster_id("peerwire-kv"), cluster_id("peerwire-kv"));
        assert_ne!(cluster_id(""), 0);
    }
}
