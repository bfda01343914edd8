//! Fault injection for tests (etcd's `Pause`/`Resume` and its functional tester's network
//! faults): cut, mend or pause a peer, drop or delay messages by kind. The table is always
//! compiled (one atomic load when unused); the handle to change it, [`Faults`], only with
//! feature `testing`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::message::MessageKind;

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Drop,
    Delay(Duration),
}

#[derive(Debug, Default)]
struct Table {
    cut: HashSet<u64>,
    streams_broken: HashSet<u64>,
    paused: HashSet<u64>,
    drop: HashSet<MessageKind>,
    delay: HashMap<MessageKind, Duration>,
}

#[cfg_attr(not(feature = "testing"), allow(dead_code))]
impl Table {
    fn is_empty(&self) -> bool {
        self.cut.is_empty()
            && self.streams_broken.is_empty()
            && self.paused.is_empty()
            && self.drop.is_empty()
            && self.delay.is_empty()
    }
}

/// The fault table of one transport.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    any: AtomicBool,
    table: Mutex<Table>,
    changed: tokio::sync::Notify,
}

#[cfg_attr(not(feature = "testing"), allow(dead_code))]
impl FaultTable {
    fn change(&self, f: impl FnOnce(&mut Table)) {
        let mut t = self.table.lock().expect("fault table poisoned");
        f(&mut t);
        self.any.store(!t.is_empty(), Ordering::Release);
        drop(t);
        self.changed.notify_waiters();
    }

    /// Completes at the next change of the table.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The verdict on a message this node sends to `to`.
    pub(crate) fn outgoing(&self, to: u64, kind: MessageKind) -> Verdict {
        if !self.any.load(Ordering::Acquire) {
            return Verdict::Pass;
        }
        let t = self.table.lock().expect("fault table poisoned");
        if t.cut.contains(&to) || t.paused.contains(&to) || t.drop.contains(&kind) {
            Verdict::Drop
        } else if let Some(d) = t.delay.get(&kind) {
            Verdict::Delay(*d)
        } else {
            Verdict::Pass
        }
    }

    /// Whether a message from `from` may be delivered to raft.
    pub(crate) fn incoming(&self, from: u64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return true;
        }
        let t = self.table.lock().expect("fault table poisoned");
        !t.cut.contains(&from) && !t.paused.contains(&from)
    }

    /// Whether the link to `peer` is cut (no dialing, no lanes).
    pub(crate) fn is_cut(&self, peer: u64) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .table
                .lock()
                .expect("fault table poisoned")
                .cut
                .contains(&peer)
    }

    /// Whether the long-lived lanes to `peer` must stay down (cut, or broken by a hook).
    pub(crate) fn streams_down(&self, peer: u64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let t = self.table.lock().expect("fault table poisoned");
        t.cut.contains(&peer) || t.streams_broken.contains(&peer)
    }

    pub(crate) fn break_streams(&self, peer: u64, on: bool) {
        self.change(|t| {
            if on {
                t.streams_broken.insert(peer);
            } else {
                t.streams_broken.remove(&peer);
            }
        });
    }

    pub(crate) fn cut(&self, peer: u64) {
        self.change(|t| {
            t.cut.insert(peer);
        });
    }

    pub(crate) fn mend(&self, peer: u64) {
        self.change(|t| {
            t.cut.remove(&peer);
            t.paused.remove(&peer);
        });
    }

    pub(crate) fn pause(&self, peer: u64) {
        self.change(|t| {
            t.paused.insert(peer);
        });
    }

    pub(crate) fn drop_kind(&self, kind: MessageKind, on: bool) {
        self.change(|t| {
            if on {
                t.drop.insert(kind);
            } else {
                t.drop.remove(&kind);
            }
        });
    }

    pub(crate) fn delay_kind(&self, kind: MessageKind, delay: Option<Duration>) {
        self.change(|t| match delay {
            Some(d) => {
                t.delay.insert(kind, d);
            }
            None => {
                t.delay.remove(&kind);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageKind::*;

    #[test]
    fn verdicts() {
        let f = FaultTable::default();
        assert_eq!(f.outgoing(2, Append), Verdict::Pass);
        f.cut(2);
        assert_eq!(f.outgoing(2, Heartbeat), Verdict::Drop);
        assert_eq!(f.outgoing(3, Heartbeat), Verdict::Pass);
        assert!(!f.incoming(2) && f.incoming(3) && f.is_cut(2));
        assert!(f.streams_down(2));
        f.mend(2);
        assert!(f.incoming(2) && !f.is_cut(2) && !f.streams_down(2));
        f.break_streams(4, true);
        assert!(f.streams_down(4) && !f.is_cut(4) && f.incoming(4));
        assert_eq!(f.outgoing(4, Append), Verdict::Pass);
        f.break_streams(4, false);
        f.pause(3);
        assert_eq!(f.outgoing(3, Vote), Verdict::Drop);
        assert!(!f.is_cut(3), "a paused peer keeps its lanes");
        f.mend(3);
        f.drop_kind(Append, true);
        f.delay_kind(Vote, Some(Duration::from_millis(5)));
        assert_eq!(f.outgoing(2, Append), Verdict::Drop);
        assert_eq!(
            f.outgoing(2, Vote),
            Verdict::Delay(Duration::from_millis(5))
        );
        f.drop_kind(Append, false);
        f.delay_kind(Vote, None);
        assert_eq!(f.outgoing(2, Append), Verdict::Pass);
        assert!(
            !f.any.load(Ordering::Acquire),
            "an emptied table costs one load again"
        );
    }
}
