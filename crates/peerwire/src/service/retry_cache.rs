//! The retry cache (Hadoop's `RetryCache`): a non-idempotent call retried with the same
//! (client id, call id) is answered with the first attempt's outcome instead of running again;
//! a retry that arrives while the first attempt runs waits for it.
//!
//! Bounded in entries, bytes and time: entries expire after `ttl` (Hadoop keeps them 10
//! minutes), and the oldest finished entries are evicted when the cache holds too many entries
//! or too many bytes of outcomes.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::server::HandlerError;

/// (client id, call id).
pub(crate) type Key = (u64, u64);

/// What a finished call produced: only executed outcomes are cached.
pub(crate) type Outcome = Result<Bytes, HandlerError>;

enum Slot {
    /// The first attempt runs; the wake-up is created when a retry first waits for it.
    Running(Option<Arc<Notify>>),
    Done(Outcome),
}

struct Inner {
    slots: HashMap<Key, Slot>,
    /// Finished entries in completion order (with their size), for expiry and eviction.
    done: VecDeque<(Key, Instant, usize)>,
    /// Bytes of the finished outcomes held.
    bytes: usize,
}

impl Inner {
    /// Forgets the oldest finished entry, if any.
    fn evict_oldest(&mut self) {
        let Some((old, _, size)) = self.done.pop_front() else {
            return;
        };
        if let Entry::Occupied(slot) = self.slots.entry(old)
            && matches!(slot.get(), Slot::Done(_))
        {
            slot.remove();
            self.bytes -= size;
        }
    }
}

/// What an outcome costs to keep: its bytes plus a fixed overhead for the entry.
fn outcome_size(outcome: &Outcome) -> usize {
    const ENTRY: usize = 64;
    ENTRY
        + match outcome {
            Ok(bytes) => bytes.len(),
            Err(e) => e.message.len(),
        }
}

pub(crate) struct RetryCache {
    inner: Mutex<Inner>,
    capacity: usize,
    max_bytes: usize,
    ttl: Duration,
}

/// The verdict for an arriving call.
pub(crate) enum Lookup {
    /// First attempt: run it, then [`RetryCache::complete`] (or drop the guard).
    Run(RunGuard),
    /// A retry of a finished call: answer with this.
    Cached(Outcome),
    /// A retry of a call still running: wait, then look again.
    Wait(Arc<Notify>),
}

/// Clears a running entry whose call did not complete (cancelled or panicked), so a retry can
/// run it.
pub(crate) struct RunGuard {
    cache: Arc<RetryCache>,
    key: Key,
    armed: bool,
}

impl RunGuard {
    pub(crate) fn complete(mut self, outcome: &Outcome) {
        self.armed = false;
        self.cache.finish(self.key, Some(outcome.clone()));
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.armed {
            self.cache.finish(self.key, None);
        }
    }
}

impl RetryCache {
    /// A cache of at most `capacity` entries and `max_bytes` of outcomes, each kept `ttl`.
    pub(crate) fn new(capacity: usize, max_bytes: usize, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                done: VecDeque::new(),
                bytes: 0,
            }),
            capacity: capacity.max(1),
            max_bytes,
            ttl,
        })
    }

    pub(crate) fn begin(self: &Arc<Self>, key: Key, now: Instant) -> Lookup {
        let mut inner = self.inner.lock().expect("retry cache lock poisoned");
        // Expire old outcomes.
        while let Some((_, at, _)) = inner.done.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            inner.evict_oldest();
        }
        // Make room first (one hash lookup per call instead of two), but never evict the
        // entry this call may be a retry of.
        while (inner.slots.len() >= self.capacity || inner.bytes > self.max_bytes)
            && inner
                .done
                .front()
                .is_some_and(|(oldest, _, _)| *oldest != key)
        {
            inner.evict_oldest();
        }
        match inner.slots.entry(key) {
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Slot::Done(outcome) => return Lookup::Cached(outcome.clone()),
                Slot::Running(notify) => {
                    return Lookup::Wait(notify.get_or_insert_with(Default::default).clone());
                }
            },
            Entry::Vacant(slot) => {
                slot.insert(Slot::Running(None));
            }
        }
        Lookup::Run(RunGuard {
            cache: self.clone(),
            key,
            armed: true,
        })
    }

    /// The state of `key` without starting anything: `None` if it is gone (its run was
    /// abandoned), `Some(None)` while it runs, `Some(Some(outcome))` once finished.
    pub(crate) fn peek(&self, key: Key) -> Option<Option<Outcome>> {
        match self
            .inner
            .lock()
            .expect("retry cache lock poisoned")
            .slots
            .get(&key)
        {
            Some(Slot::Done(outcome)) => Some(Some(outcome.clone())),
            Some(Slot::Running(_)) => Some(None),
            None => None,
        }
    }

    fn finish(&self, key: Key, outcome: Option<Outcome>) {
        let mut inner = self.inner.lock().expect("retry cache lock poisoned");
        let previous = match outcome {
            Some(outcome) => {
                let size = outcome_size(&outcome);
                inner.done.push_back((key, Instant::now(), size));
                inner.bytes += size;
                inner.slots.insert(key, Slot::Done(outcome))
            }
            None => inner.slots.remove(&key),
        };
        if let Some(Slot::Running(Some(notify))) = previous {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_retries_are_answered_and_entries_expire() {
        let cache = RetryCache::new(10, usize::MAX, Duration::from_secs(60));
        let t0 = Instant::now();
        let Lookup::Run(guard) = cache.begin((1, 1), t0) else {
            panic!("first attempt must run")
        };
        assert!(matches!(cache.begin((1, 1), t0), Lookup::Wait(_)));
        guard.complete(&Ok(Bytes::from_static(b"done")));
        match cache.begin((1, 1), t0) {
            Lookup::Cached(Ok(b)) => assert_eq!(b, "done"),
            _ => panic!("retry must be answered from the cache"),
        }
        // Another client with the same call id is another call.
        assert!(matches!(cache.begin((2, 1), t0), Lookup::Run(_)));
        // After the ttl the outcome is forgotten.
        assert!(matches!(
            cache.begin((1, 1), t0 + Duration::from_secs(61)),
            Lookup::Run(_)
        ));
    }

    #[test]
    fn an_abandoned_run_lets_the_retry_run() {
        let cache = RetryCache::new(10, usize::MAX, Duration::from_secs(60));
        let t0 = Instant::now();
        let Lookup::Run(guard) = cache.begin((1, 7), t0) else {
            panic!()
        };
        drop(guard);
        assert!(matches!(cache.begin((1, 7), t0), Lookup::Run(_)));
    }

    #[test]
    fn full_cache_evicts_the_oldest_finished_entry() {
        let cache = RetryCache::new(2, usize::MAX, Duration::from_secs(60));
        let t0 = Instant::now();
        for call in 0..3 {
            let Lookup::Run(g) = cache.begin((1, call), t0) else {
                panic!()
            };
            g.complete(&Ok(Bytes::new()));
        }
        assert!(
            matches!(cache.begin((1, 0), t0), Lookup::Run(_)),
            "oldest evicted"
        );
        assert!(matches!(cache.begin((1, 2), t0), Lookup::Cached(_)));
    }

    #[test]
    fn a_retry_of_the_oldest_entry_in_a_full_cache_is_still_answered() {
        let cache = RetryCache::new(2, usize::MAX, Duration::from_secs(60));
        let t0 = Instant::now();
        for call in 0..2 {
            let Lookup::Run(g) = cache.begin((1, call), t0) else {
                panic!()
            };
            g.complete(&Ok(Bytes::new()));
        }
        assert!(matches!(cache.begin((1, 0), t0), Lookup::Cached(_)));
        assert!(matches!(cache.begin((1, 1), t0), Lookup::Cached(_)));
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_outcomes() {
        // Room for two outcomes of 1000 bytes (plus entry overhead), not three.
        let cache = RetryCache::new(100, 2200, Duration::from_secs(60));
        let t0 = Instant::now();
        for call in 0..4 {
            let Lookup::Run(g) = cache.begin((1, call), t0) else {
                panic!("call {call} must run")
            };
            g.complete(&Ok(Bytes::from(vec![0u8; 1000])));
        }
        assert!(matches!(cache.begin((1, 0), t0), Lookup::Run(_)), "evicted");
        assert!(matches!(cache.begin((1, 3), t0), Lookup::Cached(_)));
        let inner = cache.inner.lock().unwrap();
        assert!(inner.bytes <= 2200 + 1064, "{}", inner.bytes);
    }
}
