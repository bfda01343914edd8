//! Who is waiting for what in the raft loop: proposals waiting for their entry to be applied,
//! and linearizable reads waiting for their read index to be confirmed and applied. Pure
//! bookkeeping, no IO; the loop feeds it applied indexes and read states.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::oneshot;

use crate::command::ProposalId;
use crate::error::KvError;

/// The answer to a proposal.
pub(crate) type ProposalReply = oneshot::Sender<Result<(), KvError>>;
/// The answer to a read: the index the read may be served at.
pub(crate) type ReadReply = oneshot::Sender<Result<u64, KvError>>;

/// Proposals this node made as leader, by the index their entry got.
///
/// An entry applied at a waiting index settles its proposal: the same proposal id means it
/// committed; anything else means a new leader replaced the entry, so it was not applied
/// ([`KvError::Dropped`]).
#[derive(Debug, Default)]
pub(crate) struct Proposals {
    waiting: BTreeMap<u64, (ProposalId, ProposalReply)>,
}

impl Proposals {
    /// Waits for the entry at `index`, proposed as `id`.
    pub(crate) fn insert(&mut self, index: u64, id: ProposalId, reply: ProposalReply) {
        if let Some((_, old)) = self.waiting.insert(index, (id, reply)) {
            // The index was reused after a leader change on this node: the old entry is gone.
            let _ = old.send(Err(KvError::Dropped));
        }
    }

    /// The entry at `index` was applied; `id` is the proposal it carried (`None`: an entry
    /// without one, such as a new leader's empty entry).
    pub(crate) fn applied(&mut self, index: u64, id: Option<ProposalId>) {
        // Waiters below `index` can no longer be settled by their own entry: they were
        // replaced by entries without a waiter (and skipped), so their writes are gone.
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (at, (want, reply)) = entry.remove_entry();
            let outcome = if at == index && Some(want) == id {
                Ok(())
            } else {
                Err(KvError::Dropped)
            };
            let _ = reply.send(outcome);
        }
    }

    /// A snapshot moved this node's state to `index` without applying the entries one by one:
    /// the waiters up to it cannot tell whether their entry is in it.
    pub(crate) fn snapshot_applied(&mut self, index: u64) {
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (_, (_, reply)) = entry.remove_entry();
            let _ = reply.send(Err(KvError::Indeterminate(
                "this node installed a snapshot from a new leader".into(),
            )));
        }
    }

    /// Forgets waiters whose caller gave up.
    pub(crate) fn prune(&mut self) {
        self.waiting.retain(|_, (_, r)| !r.is_closed());
    }

    /// Fails every waiter (the node is stopping).
    pub(crate) fn fail_all(&mut self, err: &KvError) {
        for (_, (_, reply)) in std::mem::take(&mut self.waiting) {
            let _ = reply.send(Err(err.clone()));
        }
    }

    /// How many proposals wait.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// Linearizable reads: first waiting for raft to confirm a read index (keyed by the request
/// context), then for this node to apply up to it.
///
/// raft drops a read silently when the leader has not yet committed an entry in its term (or
/// when no leader is known), so reads that stay unconfirmed are handed to raft again
/// ([`Reads::due_again`]); a second confirmation of the same context is ignored.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Context → (reply, the tick it was last handed to raft).
    unconfirmed: HashMap<u64, (ReadReply, u64)>,
    confirmed: BTreeMap<u64, Vec<ReadReply>>,
}

impl Reads {
    /// A read was handed to raft with context `ctx` at tick `now`.
    pub(crate) fn insert(&mut self, ctx: u64, reply: ReadReply, now: u64) {
        self.unconfirmed.insert(ctx, (reply, now));
    }

    /// The reads handed to raft `after` ticks ago or earlier and still unconfirmed, marked as
    /// handed again at `now`.
    pub(crate) fn due_again(&mut self, now: u64, after: u64) -> Vec<u64> {
        let mut due = Vec::new();
        for (ctx, (_, at)) in self.unconfirmed.iter_mut() {
            if now.saturating_sub(*at) >= after {
                *at = now;
                due.push(*ctx);
            }
        }
        due
    }

    /// raft confirmed read `ctx` at `index`; `applied` is this node's applied index.
    pub(crate) fn confirmed(&mut self, ctx: u64, index: u64, applied: u64) {
        let Some((reply, _)) = self.unconfirmed.remove(&ctx) else {
            return;
        };
        if index <= applied {
            let _ = reply.send(Ok(index));
        } else {
            self.confirmed.entry(index).or_default().push(reply);
        }
    }

    /// This node applied up to `applied`: answers the reads that waited for it.
    pub(crate) fn applied(&mut self, applied: u64) {
        while let Some(entry) = self.confirmed.first_entry() {
            if *entry.key() > applied {
                break;
            }
            let (index, replies) = entry.remove_entry();
            for r in replies {
                let _ = r.send(Ok(index));
            }
        }
    }

    /// The leader changed: reads raft has not confirmed will not be (raft drops them), so
    /// their callers retry.
    pub(crate) fn leader_changed(&mut self) {
        for (_, (r, _)) in self.unconfirmed.drain() {
            let _ = r.send(Err(KvError::NoLeader(
                "the leader changed during the read; retry".into(),
            )));
        }
    }

    /// Forgets reads whose caller gave up.
    pub(crate) fn prune(&mut self) {
        self.unconfirmed.retain(|_, (r, _)| !r.is_closed());
        self.confirmed.retain(|_, rs| {
            rs.retain(|r| !r.is_closed());
            !rs.is_empty()
        });
    }

    /// Fails every read (the node is stopping).
    pub(crate) fn fail_all(&mut self, err: &KvError) {
        for (_, (r, _)) in self.unconfirmed.drain() {
            let _ = r.send(Err(err.clone()));
        }
        for (_, rs) in std::mem::take(&mut self.confirmed) {
            for r in rs {
                let _ = r.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> ProposalId {
        ProposalId { node: 1, seq }
    }

    #[test]
    fn a_proposal_settles_when_its_own_entry_applies() {
        let mut p = Proposals::default();
        let (tx, mut rx) = oneshot::channel();
        p.insert(5, id(1), tx);
        p.applied(4, None);
        assert!(rx.try_recv().is_err(), "still waiting");
        p.applied(5, Some(id(1)));
        assert_eq!(rx.try_recv().unwrap(), Ok(()));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_replaced_entry_drops_the_proposal() {
        let mut p = Proposals::default();
        let (tx5, mut rx5) = oneshot::channel();
        let (tx6, mut rx6) = oneshot::channel();
        p.insert(5, id(1), tx5);
        p.insert(6, id(2), tx6);
        // Another leader's entry (or its empty entry) landed at 5, and the log moved past 6.
        p.applied(5, Some(ProposalId { node: 2, seq: 1 }));
        assert_eq!(rx5.try_recv().unwrap(), Err(KvError::Dropped));
        p.applied(7, None);
        assert_eq!(rx6.try_recv().unwrap(), Err(KvError::Dropped));
    }

    #[test]
    fn a_snapshot_leaves_the_outcome_open() {
        let mut p = Proposals::default();
        let (tx, mut rx) = oneshot::channel();
        p.insert(5, id(1), tx);
        p.snapshot_applied(9);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(KvError::Indeterminate(_))
        ));
    }

    #[test]
    fn a_reused_index_drops_the_older_waiter() {
        let mut p = Proposals::default();
        let (tx_a, mut rx_a) = oneshot::channel();
        let (tx_b, mut rx_b) = oneshot::channel();
        p.insert(5, id(1), tx_a);
        p.insert(5, id(2), tx_b);
        assert_eq!(rx_a.try_recv().unwrap(), Err(KvError::Dropped));
        p.applied(5, Some(id(2)));
        assert_eq!(rx_b.try_recv().unwrap(), Ok(()));
    }

    #[test]
    fn reads_wait_for_confirmation_then_for_apply() {
        let mut r = Reads::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        r.insert(1, tx1, 0);
        r.insert(2, tx2, 0);
        r.confirmed(1, 10, 10);
        assert_eq!(rx1.try_recv().unwrap(), Ok(10));
        r.confirmed(2, 12, 10);
        assert!(rx2.try_recv().is_err());
        r.applied(11);
        assert!(rx2.try_recv().is_err());
        r.applied(12);
        assert_eq!(rx2.try_recv().unwrap(), Ok(12));
    }

    #[test]
    fn a_leader_change_fails_unconfirmed_reads_only() {
        let mut r = Reads::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        r.insert(1, tx1, 0);
        r.insert(2, tx2, 0);
        r.confirmed(2, 9, 3);
        r.leader_changed();
        assert!(matches!(rx1.try_recv().unwrap(), Err(KvError::NoLeader(_))));
        r.applied(9);
        assert_eq!(rx2.try_recv().unwrap(), Ok(9));
    }

    #[test]
    fn unconfirmed_reads_are_handed_to_raft_again() {
        let mut r = Reads::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        r.insert(1, tx1, 0);
        r.insert(2, tx2, 4);
        assert!(r.due_again(4, 5).is_empty());
        assert_eq!(r.due_again(5, 5), vec![1]);
        assert!(r.due_again(6, 5).is_empty(), "1 was handed again at 5");
        r.confirmed(1, 3, 3);
        assert_eq!(rx1.try_recv().unwrap(), Ok(3));
        r.confirmed(1, 4, 4);
        assert_eq!(r.due_again(9, 5), vec![2]);
    }

    #[test]
    fn abandoned_waiters_are_pruned() {
        let mut p = Proposals::default();
        let (tx, rx) = oneshot::channel();
        p.insert(1, id(1), tx);
        drop(rx);
        p.prune();
        assert_eq!(p.len(), 0);
        let mut r = Reads::default();
        let (tx, rx) = oneshot::channel();
        r.insert(1, tx, 0);
        drop(rx);
        r.prune();
        assert!(r.unconfirmed.is_empty());
    }
}
