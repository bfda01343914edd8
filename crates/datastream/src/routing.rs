//! The routing table of a stream (Ratis's `RoutingTable`): which server receives the client's
//! packets (the primary) and, for each server, the servers it forwards them to.
//!
//! Pure: building, checking and encoding a table does no IO. A table must form a tree rooted
//! at the primary — every server reached exactly once — so that each replica stores every
//! byte exactly once; anything else is refused with a [`RoutingError`] when the stream opens.
//!
//! ## Encoding (inside the open request; big-endian)
//!
//! | offset | bytes | field        | description                                  |
//! |-------:|------:|--------------|----------------------------------------------|
//! | 0      | 8     | primary      | node id of the primary                       |
//! | 8      | 2     | edges E      | number of forwarding entries                 |
//! | 10     | …     | entries      | E × (node u64, count u16, count × node u64)  |

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, BytesMut};

/// Largest number of servers a table may name.
pub const MAX_ROUTE_NODES: usize = 64;

/// Why a routing table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The primary (node id 0 is reserved for anonymous clients) is not a valid node.
    #[error("node id 0 is reserved for clients and cannot be on a route")]
    ZeroNode,
    /// Forwarding entries exist, but none starts at the primary.
    #[error("primary {primary} is not in the routing table (entries start at {sources:?})")]
    PrimaryNotInTable {
        /// The primary.
        primary: u64,
        /// The nodes that do have entries.
        sources: Vec<u64>,
    },
    /// Following the table from the primary comes back to a node already on the path.
    #[error("the routing table has a cycle: {}", path_text(.path))]
    Cycle {
        /// The path that closes the cycle, first node repeated at the end.
        path: Vec<u64>,
    },
    /// A node is the successor of two nodes (or twice of one), so it would store the stream
    /// twice.
    #[error("node {node} is reached twice in the routing table (from {first} and {second})")]
    ReachedTwice {
        /// The node.
        node: u64,
        /// One predecessor.
        first: u64,
        /// The other.
        second: u64,
    },
    /// An entry starts at a node the primary never reaches.
    #[error("node {node} has forwarding entries but is not reachable from primary {primary}")]
    Unreachable {
        /// The node.
        node: u64,
        /// The primary.
        primary: u64,
    },
    /// The table names a server this one has no address for.
    #[error(
        "node {node} is not a known peer of node {at} (add it with `DataStreamServer::add_peer`)"
    )]
    UnknownPeer {
        /// The unknown node.
        node: u64,
        /// The server that looked it up.
        at: u64,
    },
    /// The stream was sent to a server that is not its primary.
    #[error("the stream's primary is node {primary} but it was opened at node {at}")]
    WrongPrimary {
        /// The table's primary.
        primary: u64,
        /// The server that received the open.
        at: u64,
    },
    /// The table names more servers than [`MAX_ROUTE_NODES`].
    #[error("the routing table names {count} nodes; at most {MAX_ROUTE_NODES} are allowed")]
    TooLarge {
        /// Nodes named.
        count: usize,
    },
    /// The encoded table is malformed.
    #[error("malformed routing table: {0}")]
    Malformed(&'static str),
}

fn path_text(path: &[u64]) -> String {
    path.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Which servers a stream's packets go to, and in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    primary: u64,
    successors: BTreeMap<u64, Vec<u64>>,
}

impl RoutingTable {
    /// A table from a primary and forwarding entries `(node, its successors)`, checked.
    pub fn new(
        primary: u64,
        entries: impl IntoIterator<Item = (u64, Vec<u64>)>,
    ) -> Result<Self, RoutingError> {
        let mut successors: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (node, next) in entries {
            if !next.is_empty() {
                successors.entry(node).or_default().extend(next);
            }
        }
        let table = Self {
            primary,
            successors,
        };
        table.check()?;
        Ok(table)
    }

    /// The primary alone: a single-hop stream.
    pub fn single(primary: u64) -> Self {
        Self {
            primary,
            successors: BTreeMap::new(),
        }
    }

    /// The primary forwards to every replica itself.
    pub fn star(primary: u64, replicas: &[u64]) -> Result<Self, RoutingError> {
        Self::new(primary, [(primary, replicas.to_vec())])
    }

    /// Each node forwards to the next: `nodes[0]` is the primary.
    ///
    /// # Panics
    ///
    /// If `nodes` is empty.
    pub fn chain(nodes: &[u64]) -> Result<Self, RoutingError> {
        let primary = *nodes.first().expect("a chain needs at least one node");
        Self::new(primary, nodes.windows(2).map(|w| (w[0], vec![w[1]])))
    }

    /// The server that receives the client's packets.
    pub fn primary(&self) -> u64 {
        self.primary
    }

    /// The servers `node` forwards to.
    pub fn successors(&self, node: u64) -> &[u64] {
        self.successors.get(&node).map_or(&[], Vec::as_slice)
    }

    /// Every server on the route, primary first, then in forwarding order (breadth first).
    pub fn nodes(&self) -> Vec<u64> {
        let mut out = vec![self.primary];
        let mut i = 0;
        while i < out.len() {
            out.extend_from_slice(self.successors(out[i]));
            i += 1;
        }
        out
    }

    /// Checks the table forms a tree rooted at the primary.
    pub fn check(&self) -> Result<(), RoutingError> {
        if self.primary == 0 || self.successors.values().flatten().any(|n| *n == 0) {
            return Err(RoutingError::ZeroNode);
        }
        let named: BTreeSet<u64> = std::iter::once(self.primary)
            .chain(self.successors.keys().copied())
            .chain(self.successors.values().flatten().copied())
            .collect();
        if named.len() > MAX_ROUTE_NODES {
            return Err(RoutingError::TooLarge { count: named.len() });
        }
        if !self.successors.is_empty() && !self.successors.contains_key(&self.primary) {
            return Err(RoutingError::PrimaryNotInTable {
                primary: self.primary,
                sources: self.successors.keys().copied().collect(),
            });
        }
        // Depth-first from the primary, keeping the path to report cycles and the parent of
        // every node reached to report double reaches.
        let mut parent: BTreeMap<u64, u64> = BTreeMap::new();
        let mut path = vec![self.primary];
        self.walk(self.primary, &mut path, &mut parent)?;
        if let Some(node) = self
            .successors
            .keys()
            .find(|n| **n != self.primary && !parent.contains_key(n))
        {
            return Err(RoutingError::Unreachable {
                node: *node,
                primary: self.primary,
            });
        }
        Ok(())
    }

    fn walk(
        &self,
        node: u64,
        path: &mut Vec<u64>,
        parent: &mut BTreeMap<u64, u64>,
    ) -> Result<(), RoutingError> {
        for &next in self.successors(node) {
            if let Some(at) = path.iter().position(|n| *n == next) {
                let mut cycle = path[at..].to_vec();
                cycle.push(next);
                return Err(RoutingError::Cycle { path: cycle });
            }
            if let Some(first) = parent.insert(next, node) {
                return Err(RoutingError::ReachedTwice {
                    node: next,
                    first,
                    second: node,
                });
            }
            path.push(next);
            self.walk(next, path, parent)?;
            path.pop();
        }
        Ok(())
    }

    /// Appends the encoding (module docs) to `dst`.
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.primary);
        dst.put_u16(self.successors.len() as u16);
        for (node, next) in &self.successors {
            dst.put_u64(*node);
            dst.put_u16(next.len() as u16);
            for n in next {
                dst.put_u64(*n);
            }
        }
    }

    /// Decodes and checks a table from the front of `src`.
    pub(crate) fn decode(src: &mut impl Buf) -> Result<Self, RoutingError> {
        const SHORT: RoutingError = RoutingError::Malformed("truncated");
        if src.remaining() < 10 {
            return Err(SHORT);
        }
        let primary = src.get_u64();
        let entries = usize::from(src.get_u16());
        if entries > MAX_ROUTE_NODES {
            return Err(RoutingError::TooLarge { count: entries });
        }
        let mut list = Vec::with_capacity(entries);
        for _ in 0..entries {
            if src.remaining() < 10 {
                return Err(SHORT);
            }
            let node = src.get_u64();
            let count = usize::from(src.get_u16());
            if count > MAX_ROUTE_NODES {
                return Err(RoutingError::TooLarge { count });
            }
            if src.remaining() < 8 * count {
                return Err(SHORT);
            }
            let next: Vec<u64> = (0..count).map(|_| src.get_u64()).collect();
            if next.is_empty() {
                return Err(RoutingError::Malformed("empty forwarding entry"));
            }
            list.push((node, next));
        }
        Self::new(primary, list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn star_and_chain_are_trees() {
        let star = RoutingTable::star(1, &[2, 3]).unwrap();
        assert_eq!(star.nodes(), vec![1, 2, 3]);
        assert_eq!(star.successors(1), &[2, 3]);
        assert!(star.successors(2).is_empty());
        let chain = RoutingTable::chain(&[1, 2, 3]).unwrap();
        assert_eq!(chain.nodes(), vec![1, 2, 3]);
        assert_eq!(chain.successors(2), &[3]);
        assert_eq!(RoutingTable::single(4).nodes(), vec![4]);
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        assert_eq!(
            RoutingTable::new(1, [(1, vec![2]), (2, vec![3]), (3, vec![1])]),
            Err(RoutingError::Cycle {
                path: vec![1, 2, 3, 1]
            })
        );
        assert_eq!(
            RoutingTable::new(1, [(1, vec![2]), (2, vec![2])]),
            Err(RoutingError::Cycle { path: vec![2, 2] })
        );
        assert_eq!(
            RoutingTable::new(1, [(1, vec![2, 3]), (2, vec![3])]),
            Err(RoutingError::ReachedTwice {
                node: 3,
                first: 2,
                second: 1
            })
        );
        assert_eq!(
            RoutingTable::new(1, [(2, vec![3])]),
            Err(RoutingError::PrimaryNotInTable {
                primary: 1,
                sources: vec![2]
            })
        );
        assert_eq!(
            RoutingTable::new(1, [(1, vec![2]), (4, vec![5])]),
            Err(RoutingError::Unreachable {
                node: 4,
                primary: 1
            })
        );
        assert_eq!(RoutingTable::star(0, &[1]), Err(RoutingError::ZeroNode));
        assert_eq!(
            RoutingTable::star(1, &[1]).unwrap_err().to_string(),
            "the routing table has a cycle: 1 → 1"
        );
        let many: Vec<u64> = (2..=70).collect();
        assert!(matches!(
            RoutingTable::star(1, &many),
            Err(RoutingError::TooLarge { count: 70 })
        ));
    }

    #[test]
    fn truncated_or_garbage_encodings_are_refused() {
        let mut buf = BytesMut::new();
        RoutingTable::chain(&[1, 2, 3]).unwrap().encode(&mut buf);
        for cut in 0..buf.len() {
            assert!(RoutingTable::decode(&mut &buf[..cut]).is_err(), "cut {cut}");
        }
    }

    proptest! {
        #[test]
        fn encoding_round_trips(primary in 1u64..100, chain in proptest::collection::btree_set(100u64..200, 0..8)) {
            let nodes: Vec<u64> = std::iter::once(primary).chain(chain).collect();
            let table = RoutingTable::chain(&nodes).unwrap();
            let mut buf = BytesMut::new();
            table.encode(&mut buf);
            let decoded = RoutingTable::decode(&mut buf.freeze()).unwrap();
            prop_assert_eq!(decoded, table);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RoutingTable::decode(&mut &bytes[..]);
        }
    }
}
