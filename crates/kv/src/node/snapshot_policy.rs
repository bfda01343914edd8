//! When a node snapshots its state and how much log it keeps: every `every` applied entries,
//! at points staggered by node id so that the members of a cluster do not all encode and write
//! a snapshot at the same moment (on shared cores or a shared disk, three snapshots at once
//! slowed every member's log writes together, so the quorum stalled; one at a time, the other
//! two members keep committing). Pure.

/// When to snapshot and how much log to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotPolicy {
    /// Snapshot about every this many applied entries.
    pub(crate) every: u64,
    /// Keep this many entries before the snapshot for followers that lag a little.
    pub(crate) keep: u64,
    /// This node's snapshot points are the indexes `phase` modulo `every`.
    pub(crate) phase: u64,
}

impl SnapshotPolicy {
    /// The policy of node `id`: snapshots every `every` entries, at a third of the interval
    /// after node `id - 1`'s (ids three apart share points).
    pub(crate) fn for_node(id: u64, every: u64, keep: u64) -> Self {
        let every = every.clamp(1, u64::MAX / 4);
        Self {
            every,
            keep,
            phase: every / 3 * (id.saturating_sub(1) % 3),
        }
    }

    /// The index at which to snapshot next when the last snapshot is at `last`: the first of
    /// this node's points at least half an interval after `last` (so snapshots are between
    /// half and one and a half intervals apart).
    pub(crate) fn next_point(&self, last: u64) -> u64 {
        let earliest = last.saturating_add(self.every.div_ceil(2));
        let offset = (earliest % self.every + self.every - self.phase % self.every) % self.every;
        if offset == 0 {
            earliest
        } else {
            earliest.saturating_add(self.every - offset)
        }
    }

    /// Whether a node that applied up to `applied`, its last snapshot at `last`, snapshots now.
    pub(crate) fn due(&self, last: u64, applied: u64) -> bool {
        applied >= self.next_point(last)
    }

    /// Where the log is compacted to after a snapshot at `applied`.
    pub(crate) fn compact_to(&self, applied: u64) -> u64 {
        applied.saturating_sub(self.keep).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_members_snapshot_a_third_of_an_interval_apart() {
        let points: Vec<u64> = (1..=3)
            .map(|id| SnapshotPolicy::for_node(id, 90, 0).next_point(0))
            .collect();
        // Points of node 1: 0, 90, 180 …; node 2: 30, 120 …; node 3: 60, 150 …; the first at
        // least 45 after 0.
        assert_eq!(points, [90, 120, 60]);
        let p = SnapshotPolicy::for_node(2, 90, 0);
        assert_eq!(p.next_point(120), 210);
        assert!(!p.due(120, 209));
        assert!(p.due(120, 210));
        assert_eq!(
            SnapshotPolicy::for_node(4, 90, 0),
            SnapshotPolicy::for_node(1, 90, 0)
        );
    }

    #[test]
    fn a_snapshot_off_the_points_is_followed_after_half_an_interval_at_least() {
        let p = SnapshotPolicy::for_node(1, 100, 0);
        // A snapshot from the leader at 95: the point 100 is too close; 200 is next.
        assert_eq!(p.next_point(95), 200);
        assert_eq!(p.next_point(49), 100);
        assert_eq!(p.next_point(50), 100);
        assert_eq!(p.next_point(51), 200);
    }

    #[test]
    fn tiny_intervals_and_huge_indexes_do_not_misbehave() {
        let p = SnapshotPolicy::for_node(3, 1, 0);
        assert_eq!(p.next_point(7), 8);
        let p = SnapshotPolicy::for_node(2, 2, 0);
        assert_eq!(p.phase, 0);
        assert_eq!(p.next_point(u64::MAX - 1), u64::MAX);
        assert_eq!(SnapshotPolicy::for_node(1, 10, 4).compact_to(3), 1);
        assert_eq!(SnapshotPolicy::for_node(1, 10, 4).compact_to(30), 26);
    }
}
