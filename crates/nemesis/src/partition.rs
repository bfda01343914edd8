//! Network partitions as sets of cut directions, and the nftables rules that make them. Pure:
//! no namespace is touched here (see `netns` for that).
//!
//! A cut `(from, to)` drops every packet from node `from` when it arrives at node `to` (an
//! input rule in `to`'s namespace), so a symmetric partition cuts both directions and a one-way
//! partition only one. Traffic from the harness's own address (the clients) is never cut.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Node ids, from 1.
pub type NodeId = u8;

/// The directions that are cut: `(from, to)` means `to` drops what `from` sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cuts {
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Cuts {
    /// No cut at all (healed).
    pub fn none() -> Self {
        Self::default()
    }

    /// Every node of `a` cut from every node of `b`, both ways.
    pub fn split(a: &[NodeId], b: &[NodeId]) -> Self {
        let mut cuts = Self::none();
        for &x in a {
            for &y in b {
                cuts.cut.insert((x, y));
                cuts.cut.insert((y, x));
            }
        }
        cuts
    }

    /// What `from` sends is lost at every node of `to`; the other way still works.
    pub fn one_way(from: &[NodeId], to: &[NodeId]) -> Self {
        let mut cuts = Self::none();
        for &x in from {
            for &y in to {
                cuts.cut.insert((x, y));
            }
        }
        cuts
    }

    /// `left` and `right` cut from each other both ways; `bridge` nodes (in neither) see both.
    pub fn bridge(left: &[NodeId], right: &[NodeId]) -> Self {
        Self::split(left, right)
    }

    /// Adds the cuts of `other`.
    pub fn union(mut self, other: &Self) -> Self {
        self.cut.extend(other.cut.iter().copied());
        self
    }

    /// Whether nothing is cut.
    pub fn is_empty(&self) -> bool {
        self.cut.is_empty()
    }

    /// Whether `to` drops what `from` sends.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// The nodes whose packets `node` drops.
    pub fn dropped_at(&self, node: NodeId) -> Vec<NodeId> {
        self.cut
            .iter()
            .filter(|(_, to)| *to == node)
            .map(|(from, _)| *from)
            .collect()
    }

    /// The nodes `node` can exchange packets with both ways (itself included), among `1..=n`.
    pub fn reachable_from(&self, node: NodeId, n: NodeId) -> Vec<NodeId> {
        (1..=n)
            .filter(|&o| o == node || (!self.is_cut(node, o) && !self.is_cut(o, node)))
            .collect()
    }

    /// A short description: `1,2 x 3` style lists of who drops whom.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "healed".into();
        }
        self.cut
            .iter()
            .map(|(f, t)| format!("{f}->{t}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The name of the nftables table the harness owns in each node's namespace.
pub const TABLE: &str = "peerwire_nemesis";

/// The nftables script that makes `node`'s namespace drop what `cuts` says, replacing whatever
/// the harness put there before (the table is declared, deleted and made again in one
/// transaction, so the script works whether or not the table exists). `ip_of` gives each
/// node's address.
pub fn nft_script(cuts: &Cuts, node: NodeId, ip_of: impl Fn(NodeId) -> Ipv4Addr) -> String {
    let mut script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    let dropped = cuts.dropped_at(node);
    script.push_str(&format!(
        "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n"
    ));
    if !dropped.is_empty() {
        let set = dropped
            .iter()
            .map(|&n| ip_of(n).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        script.push_str(&format!("    ip saddr {{ {set} }} drop\n"));
    }
    script.push_str("  }\n}\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: NodeId) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 10 + n)
    }

    #[test]
    fn a_split_cuts_both_ways_and_only_across() {
        let cuts = Cuts::split(&[1, 2], &[3]);
        assert!(cuts.is_cut(1, 3) && cuts.is_cut(3, 1) && cuts.is_cut(2, 3) && cuts.is_cut(3, 2));
        assert!(!cuts.is_cut(1, 2) && !cuts.is_cut(2, 1));
        assert_eq!(cuts.dropped_at(3), vec![1, 2]);
        assert_eq!(cuts.reachable_from(1, 3), vec![1, 2]);
        assert_eq!(cuts.reachable_from(3, 3), vec![3]);
    }

    #[test]
    fn a_one_way_cut_leaves_the_other_direction() {
        let cuts = Cuts::one_way(&[1], &[2, 3]);
        assert!(cuts.is_cut(1, 2) && !cuts.is_cut(2, 1));
        assert_eq!(cuts.dropped_at(1), Vec::<NodeId>::new());
        assert_eq!(cuts.dropped_at(2), vec![1]);
        // Neither side reaches the other both ways.
        assert_eq!(cuts.reachable_from(1, 3), vec![1]);
    }

    #[test]
    fn a_bridge_node_sees_both_sides() {
        let cuts = Cuts::bridge(&[1, 2], &[4, 5]);
        assert_eq!(cuts.reachable_from(3, 5), vec![1, 2, 3, 4, 5]);
        assert_eq!(cuts.reachable_from(1, 5), vec![1, 2, 3]);
        assert_eq!(cuts.reachable_from(5, 5), vec![3, 4, 5]);
    }

    #[test]
    fn the_script_drops_exactly_the_cut_sources() {
        let cuts = Cuts::split(&[1], &[2, 3]);
        let s = nft_script(&cuts, 1, ip);
        assert!(s.starts_with("table inet peerwire_nemesis\ndelete table inet peerwire_nemesis\n"));
        assert!(
            s.contains("ip saddr { 10.77.0.12, 10.77.0.13 } drop"),
            "{s}"
        );
        let s2 = nft_script(&cuts, 2, ip);
        assert!(s2.contains("ip saddr { 10.77.0.11 } drop"), "{s2}");
        let healed = nft_script(&Cuts::none(), 2, ip);
        assert!(!healed.contains("drop"), "{healed}");
        assert!(healed.contains("policy accept"));
    }

    #[test]
    fn describe_names_each_direction() {
        assert_eq!(Cuts::none().describe(), "healed");
        assert_eq!(Cuts::one_way(&[2], &[1]).describe(), "2->1");
        assert_eq!(
            Cuts::one_way(&[2], &[1])
                .union(&Cuts::one_way(&[3], &[1]))
                .describe(),
            "2->1 3->1"
        );
    }
}
