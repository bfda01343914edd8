//! Who is waiting for what in the raft loop: proposals waiting for their entry to be applied,
//! and linearizable reads waiting for their read index to be confirmed and applied. Pure
//! bookkeeping, no IO; the loop feeds it applied indexes and read states.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::oneshot;

use super::put_trace::Stamps;
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
///
/// Each waiter carries its [`Stamps`], filled as its entry is handed on, made durable here and
/// committed (see `put_trace`).
#[derive(Debug, Default)]
pub(crate) struct Proposals {
    waiting: BTreeMap<u64, Waiter>,
    /// Every waiter up to here has its `durable` stamp.
    durable_mark: u64,
    /// Every waiter up to here has its `committed` stamp.
    committed_mark: u64,
}

#[derive(Debug)]
struct Waiter {
    id: ProposalId,
    reply: ProposalReply,
    stamps: Stamps,
}

impl Proposals {
    /// Waits for the entry at `index`, proposed as `id`.
    pub(crate) fn insert(
        &mut self,
        index: u64,
        id: ProposalId,
        reply: ProposalReply,
        stamps: Stamps,
    ) {
        let waiter = Waiter { id, reply, stamps };
        if let Some(old) = self.waiting.insert(index, waiter) {
            // The index was reused after a leader change on this node: the old entry is gone.
            let _ = old.reply.send(Err(KvError::Dropped));
        }
        // A reused index may lie below the marks.
        self.durable_mark = self.durable_mark.min(index.saturating_sub(1));
        self.committed_mark = self.committed_mark.min(index.saturating_sub(1));
    }

    /// The entries `first..=last` went to the log writer and the followers at `at`.
    pub(crate) fn handed(&mut self, first: u64, last: u64, at: std::time::Instant) {
        for w in self.waiting.range_mut(first..=last).map(|(_, w)| w) {
            w.stamps.handed.get_or_insert(at);
        }
    }

    /// This node's log holds every entry up to `index` durably since `at`.
    pub(crate) fn durable(&mut self, index: u64, at: std::time::Instant) {
        if index > self.durable_mark {
            for (_, w) in self.waiting.range_mut(self.durable_mark + 1..=index) {
                w.stamps.durable.get_or_insert(at);
            }
            self.durable_mark = index;
        }
    }

    /// raft's commit index reached `index` at `at`.
    pub(crate) fn committed(&mut self, index: u64, at: std::time::Instant) {
        if index > self.committed_mark {
            for (_, w) in self.waiting.range_mut(self.committed_mark + 1..=index) {
                w.stamps.committed.get_or_insert(at);
            }
            self.committed_mark = index;
        }
    }

    /// The entry at `index` was applied; `id` is the proposal it carried (`None`: an entry
    /// without one, such as a new leader's empty entry). Returns the stamps of the proposal it
    /// settled successfully, if any, and how many waiters it settled as dropped.
    pub(crate) fn applied(&mut self, index: u64, id: Option<ProposalId>) -> (Option<Stamps>, u64) {
        // Waiters below `index` can no longer be settled by their own entry: they were
        // replaced by entries without a waiter (and skipped), so their writes are gone.
        let mut settled = None;
        let mut dropped = 0;
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (at, w) = entry.remove_entry();
            let outcome = if at == index && Some(w.id) == id {
                settled = Some(w.stamps);
                Ok(())
            } else {
                dropped += 1;
                Err(KvError::Dropped)
            };
            let _ = w.reply.send(outcome);
        }
        (settled, dropped)
    }

    /// A snapshot moved this node's state to `index` without applying the entries one by one:
    /// the waiters up to it cannot tell whether their entry is in it.
    pub(crate) fn snapshot_applied(&mut self, index: u64) -> u64 {
        let mut settled = 0;
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (_, w) = entry.remove_entry();
            settled += 1;
            let _ = w.reply.send(Err(KvError::Indeterminate(
                "this node installed a snapshot from a new leader".into(),
            )));
        }
        settled
    }

    /// Forgets waiters whose caller gave up.
    pub(crate) fn prune(&mut self) {
        self.waiting.retain(|_, w| !w.reply.is_closed());
    }

    /// Fails every waiter (the node is stopping); returns how many.
    pub(crate) fn fail_all(&mut self, err: &KvError) -> u64 {
        let waiting = std::mem::take(&mut self.waiting);
        let failed = waiting.len() as u64;
        for (_, w) in waiting {
            let _ = w.reply.send(Err(err.clone()));
        }
        failed
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

    fn stamps() -> Stamps {
        Stamps::proposed(std::time::Instant::now())
    }

    #[test]
    fn a_settled_proposal_carries_its_stamps() {
        let mut p = Proposals::default();
        let (tx5, _rx5) = oneshot::channel();
        let (tx6, _rx6) = oneshot::channel();
        p.insert(5, id(1), tx5, stamps());
        p.insert(6, id(2), tx6, stamps());
        let t = std::time::Instant::now();
        p.handed(5, 6, t);
        p.committed(5, t);
        p.durable(6, t);
        let s5 = p.applied(5, Some(id(1))).0.expect("settled");
        assert_eq!(
            (s5.handed, s5.durable, s5.committed),
            (Some(t), Some(t), Some(t))
        );
        let s6 = p.applied(6, Some(id(2))).0.expect("settled");
        assert_eq!((s6.durable, s6.committed), (Some(t), None));
        // A replaced entry settles nothing.
        let (tx7, _rx7) = oneshot::channel();
        p.insert(7, id(3), tx7, stamps());
        assert_eq!(p.applied(7, Some(id(9))), (None, 1));
    }

    #[test]
    fn a_proposal_settles_when_its_own_entry_applies() {
        let mut p = Proposals::default();
        let (tx, mut rx) = oneshot::channel();
        p.insert(5, id(1), tx, stamps());
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
        p.insert(5, id(1), tx5, stamps());
        p.insert(6, id(2), tx6, stamps());
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
        p.insert(5, id(1), tx, stamps());
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
        p.insert(5, id(1), tx_a, stamps());
        p.insert(5, id(2), tx_b, stamps());
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
        p.insert(1, id(1), tx, stamps());
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
