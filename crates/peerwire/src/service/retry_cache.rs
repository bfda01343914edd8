//! The retry cache (Hadoop's `RetryCache`): a non-idempotent call retried with the same
//! (client id, call id) is answered with the first attempt's outcome instead of running again;
//! a retry that arrives while the first attempt runs waits for it.
//!
//! Bounded in size and time: entries expire after `ttl` (Hadoop keeps them 10 minutes), and the
//! oldest finished entry is evicted when the cache is full.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::server::HandlerError;

/// (client id, call id).
pub(crate) type Key = (u64, u64);

/// What a finished call produced: only executed outcomes are cached.
pub(crate) type Outcome = Result<Bytes, HandlerError>;

enum Slot {
    Running(Arc<Notify>),
    Done(Outcome),
}

struct Inner {
    slots: HashMap<Key, Slot>,
    /// Finished entries in completion order, for expiry and eviction.
    done: VecDeque<(Key, Instant)>,
}

pub(crate) struct RetryCache {
    inner: Mutex<Inner>,
    capacity: usize,
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
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                done: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            ttl,
        })
    }

    pub(crate) fn begin(self: &Arc<Self>, key: Key, now: Instant) -> Lookup {
        let mut inner = self.inner.lock().expect("retry cache lock poisoned");
        // Expire old outcomes.
        while let Some((old, at)) = inner.done.front().copied() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            inner.done.pop_front();
            if matches!(inner.slots.get(&old), Some(Slot::Done(_))) {
                inner.slots.remove(&old);
            }
        }
        match inner.slots.get(&key) {
            Some(Slot::Done(outcome)) => return Lookup::Cached(outcome.clone()),
            Some(Slot::Running(notify)) => return Lookup::Wait(notify.clone()),
            None => {}
        }
        while inner.slots.len() >= self.capacity {
            let Some((old, _)) = inner.done.pop_front() else {
                break;
            };
            inner.slots.remove(&old);
        }
        inner
            .slots
            .insert(key, Slot::Running(Arc::new(Notify::new())));
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
                inner.done.push_back((key, Instant::now()));
                inner.slots.insert(key, Slot::Done(outcome))
            }
            None => inner.slots.remove(&key),
        };
        if let Some(Slot::Running(notify)) = previous {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_retries_are_answered_and_entries_expire() {
        let cache = RetryCache::new(10, Duration::from_secs(60));
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
        let cache = RetryCache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        let Lookup::Run(guard) = cache.begin((1, 7), t0) else {
            panic!()
        };
        drop(guard);
        assert!(matches!(cache.begin((1, 7), t0), Lookup::Run(_)));
    }

    #[test]
    fn full_cache_evicts_the_oldest_finished_entry() {
        let cache = RetryCache::new(2, Duration::from_secs(60));
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
}
