//! The table of calls this side has sent and awaits replies for.
//!
//! Pure bookkeeping (no IO): registration is refused once the connection drains, a peer's
//! go-away fails every call above its mark as not executed, and the final close fails the
//! rest as lost. Every registered call is completed exactly once.
//!
//! Calls registered with a deadline are expired here too ([`Calls::expire`], run by the
//! connection's deadline task at [`Calls::next_deadline`]), so a call needs no timer of its
//! own: the table keeps a lower bound of the pending deadlines, which only a new earlier
//! deadline or a sweep moves.

use std::collections::HashMap;

use bytes::Bytes;
use peerwire_wire::{Failure, GoAwayReason};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

/// How a call ended, as seen by the connection.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The peer's successful reply.
    Ok(Bytes),
    /// The peer's failure reply.
    Failed(Failure),
    /// The peer announced it would not execute this call (its id is above the go-away mark),
    /// or the connection closed before the call was written.
    NotAccepted(GoAwayReason, String),
    /// The connection was lost after the call was sent.
    Lost(String),
    /// The call's deadline passed before its reply came (the peer was told to cancel it).
    Expired,
}

#[derive(Debug)]
struct Pending {
    tx: oneshot::Sender<Reply>,
    /// When the table expires the call (`None`: its caller keeps its own timer).
    until: Option<Instant>,
    /// The call's in-flight slot, released when the call completes.
    _slot: OwnedSemaphorePermit,
    /// A slot of the caller's own limit (a data stream's outstanding packets), released
    /// with the call's.
    _extra: Option<OwnedSemaphorePermit>,
}

/// Whether new calls may be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallsState {
    Open,
    Draining(GoAwayReason, String),
    Closed(String),
}

#[derive(Debug)]
pub(crate) struct Calls {
    state: CallsState,
    pending: HashMap<u64, Pending>,
    /// The peer's go-away mark: calls above it were not executed.
    peer_mark: Option<u64>,
    /// At or before the earliest deadline of the pending calls (`None`: no call has one).
    earliest: Option<Instant>,
}

impl Calls {
    pub(crate) fn new() -> Self {
        Self {
            state: CallsState::Open,
            pending: HashMap::new(),
            peer_mark: None,
            earliest: None,
        }
    }

    pub(crate) fn state(&self) -> &CallsState {
        &self.state
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Registers call `id`, holding `slot` and `extra` until it completes, to be expired at
    /// `until` if given; fails with the reason new calls are refused. `Ok(true)` means the
    /// call's deadline is now the earliest: the deadline task must wake sooner.
    pub(crate) fn register(
        &mut self,
        id: u64,
        tx: oneshot::Sender<Reply>,
        slot: OwnedSemaphorePermit,
        extra: Option<OwnedSemaphorePermit>,
        until: Option<Instant>,
    ) -> Result<bool, (GoAwayReason, String)> {
        match &self.state {
            CallsState::Open => {
                self.pending.insert(
                    id,
                    Pending {
                        tx,
                        until,
                        _slot: slot,
                        _extra: extra,
                    },
                );
                let sooner = match (until, self.earliest) {
                    (Some(u), Some(e)) => u < e,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if sooner {
                    self.earliest = until;
                }
                Ok(sooner)
            }
            CallsState::Draining(reason, message) => Err((*reason, message.clone())),
            CallsState::Closed(message) => Err((GoAwayReason::Normal, message.clone())),
        }
    }

    /// Delivers `reply` to call `id`. Returns `false` if no such call is pending (a late
    /// reply to a call that timed out or was cancelled).
    pub(crate) fn complete(&mut self, id: u64, reply: Reply) -> bool {
        match self.pending.remove(&id) {
            Some(p) => {
                let _ = p.tx.send(reply);
                true
            }
            None => false,
        }
    }

    /// When the deadline task should next look ([`Calls::expire`]): at or before the earliest
    /// pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.earliest
    }

    /// Completes every call whose deadline is at or before `now` with [`Reply::Expired`] and
    /// returns their ids (the peer is to be told to cancel them); the next deadline becomes
    /// the earliest of the calls left.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<u64> {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.until.is_some_and(|u| u <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.complete(*id, Reply::Expired);
        }
        self.earliest = self.pending.values().filter_map(|p| p.until).min();
        expired
    }

    /// Forgets call `id` (its caller gave up). Returns whether it was pending.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        self.pending.remove(&id).is_some()
    }

    /// Stops registration of new calls.
    pub(crate) fn drain(&mut self, reason: GoAwayReason, message: String) {
        if self.state == CallsState::Open {
            self.state = CallsState::Draining(reason, message);
        }
    }

    /// The peer sent a go-away with `mark`: calls above it were not executed. Returns how
    /// many calls were failed.
    pub(crate) fn peer_goaway(&mut self, mark: u64, reason: GoAwayReason, message: &str) -> usize {
        self.peer_mark = Some(mark);
        self.drain(reason, message.to_owned());
        let above: Vec<u64> = self
            .pending
            .keys()
            .copied()
            .filter(|id| *id > mark)
            .collect();
        for id in &above {
            self.complete(*id, Reply::NotAccepted(reason, message.to_owned()));
        }
        above.len()
    }

    /// Closes the table: every pending call fails, as not accepted if it is above the peer's
    /// mark, as lost otherwise.
    pub(crate) fn close(&mut self, why: &str) {
        self.state = CallsState::Closed(why.to_owned());
        let mark = self.peer_mark;
        for (id, p) in self.pending.drain() {
            let reply = match mark {
                Some(mark) if id > mark => Reply::NotAccepted(GoAwayReason::Normal, why.to_owned()),
                _ => Reply::Lost(why.to_owned()),
            };
            let _ = p.tx.send(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn slot() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    fn register(calls: &mut Calls, id: u64) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        calls.register(id, tx, slot(), None, None).unwrap();
        rx
    }

    #[test]
    fn replies_reach_their_callers_and_late_replies_are_reported() {
        let mut calls = Calls::new();
        let mut r1 = register(&mut calls, 1);
        let mut r2 = register(&mut calls, 2);
        assert!(calls.complete(2, Reply::Ok(Bytes::from_static(b"two"))));
        assert!(calls.complete(1, Reply::Ok(Bytes::from_static(b"one"))));
        assert!(matches!(r1.try_recv().unwrap(), Reply::Ok(b) if b == "one"));
        assert!(matches!(r2.try_recv().unwrap(), Reply::Ok(b) if b == "two"));
        assert!(!calls.complete(1, Reply::Ok(Bytes::new())));
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn goaway_fails_calls_above_the_mark_and_close_loses_the_rest() {
        let mut calls = Calls::new();
        let mut below = register(&mut calls, 5);
        let mut above = register(&mut calls, 6);
        assert_eq!(calls.peer_goaway(5, GoAwayReason::Normal, "bye"), 1);
        assert!(matches!(above.try_recv().unwrap(), Reply::NotAccepted(..)));
        let (tx, _rx) = oneshot::channel();
        assert!(calls.register(7, tx, slot(), None, None).is_err());
        calls.close("eof");
        assert!(matches!(below.try_recv().unwrap(), Reply::Lost(m) if m == "eof"));
    }

    #[test]
    fn deadlines_expire_in_the_table_and_the_next_one_follows() {
        let mut calls = Calls::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        let with = |calls: &mut Calls, id: u64, until: Option<Instant>| {
            let (tx, rx) = oneshot::channel();
            let sooner = calls.register(id, tx, slot(), None, until).unwrap();
            (rx, sooner)
        };
        let (mut r1, sooner1) = with(&mut calls, 1, Some(at(100)));
        let (mut r2, sooner2) = with(&mut calls, 2, Some(at(300)));
        let (mut r3, sooner3) = with(&mut calls, 3, Some(at(50)));
        let (mut r4, sooner4) = with(&mut calls, 4, None);
        // Only a deadline earlier than every other one needs the task to wake sooner.
        assert_eq!(
            (sooner1, sooner2, sooner3, sooner4),
            (true, false, true, false)
        );
        assert_eq!(calls.next_deadline(), Some(at(50)));
        // A call answered before its deadline leaves the bound where it was (a bound, not
        // the minimum): the sweep at 50 ms finds nothing and moves it to the next one.
        assert!(calls.complete(3, Reply::Ok(Bytes::new())));
        assert!(calls.expire(at(50)).is_empty());
        assert_eq!(calls.next_deadline(), Some(at(100)));
        // At 100 ms call 1 expires; call 2 and the call without a deadline stay.
        assert_eq!(calls.expire(at(100)), vec![1]);
        assert!(matches!(r1.try_recv().unwrap(), Reply::Expired));
        assert!(r2.try_recv().is_err() && r4.try_recv().is_err());
        assert_eq!(calls.next_deadline(), Some(at(300)));
        assert!(!calls.remove(1), "an expired call is no longer pending");
        assert_eq!(calls.expire(at(1000)), vec![2]);
        assert!(matches!(r2.try_recv().unwrap(), Reply::Expired));
        assert!(matches!(r3.try_recv().unwrap(), Reply::Ok(_)));
        // The call without a deadline is never expired here.
        assert_eq!(calls.next_deadline(), None);
        assert_eq!(calls.len(), 1);
    }
}
