//! Cancellations of inbound calls: which request ids the peer cancelled, and who waits to hear
//! it.
//!
//! Nothing is recorded for calls that are never cancelled: checking a call costs one atomic
//! load while the table is empty. The table is bounded (oldest entries are evicted first); ids
//! are never reused on a connection, so an evicted entry for a finished call is harmless.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Entry {
    cancelled: bool,
    waiter: Option<Arc<Notify>>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    /// Insertion order, for eviction.
    order: VecDeque<u64>,
}

/// The cancellation table of one connection.
#[derive(Debug)]
pub(crate) struct Cancels {
    /// Entries in the table (a lock-free "nothing to see" check).
    count: AtomicUsize,
    table: Mutex<Table>,
    capacity: usize,
}

impl Cancels {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            table: Mutex::new(Table::default()),
            capacity: capacity.max(1),
        }
    }

    fn with_entry<R>(&self, id: u64, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut table = self.table.lock().expect("cancels lock poisoned");
        if !table.entries.contains_key(&id) {
            while table.entries.len() >= self.capacity {
                match table.order.pop_front() {
                    Some(old) => {
                        table.entries.remove(&old);
                    }
                    None => break,
                }
            }
            table.order.push_back(id);
        }
        let result = f(table.entries.entry(id).or_default());
        self.count.store(table.entries.len(), Ordering::Release);
        result
    }

    /// The peer cancelled `id`: wake whoever waits for it.
    pub(crate) fn cancel(&self, id: u64) {
        self.with_entry(id, |entry| {
            entry.cancelled = true;
            if let Some(waiter) = &entry.waiter {
                waiter.notify_waiters();
            }
        });
    }

    /// Whether the peer cancelled `id`.
    pub(crate) fn is_cancelled(&self, id: u64) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.table
            .lock()
            .expect("cancels lock poisoned")
            .entries
            .get(&id)
            .is_some_and(|e| e.cancelled)
    }

    /// Completes when the peer cancels `id`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn cancelled(&self, id: u64) {
        loop {
            let waiter = self.with_entry(id, |entry| {
                if entry.cancelled {
                    None
                } else {
                    Some(entry.waiter.get_or_insert_with(Default::default).clone())
                }
            });
            let Some(waiter) = waiter else { return };
            let notified = waiter.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled(id) {
                return;
            }
            notified.await;
        }
    }

    /// The call `id` is done: forget it.
    pub(crate) fn finish(&self, id: u64) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut table = self.table.lock().expect("cancels lock poisoned");
        if table.entries.remove(&id).is_some() {
            table.order.retain(|x| *x != id);
        }
        self.count.store(table.entries.len(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_check_finish_and_eviction() {
        let c = Cancels::new(2);
        assert!(!c.is_cancelled(1));
        c.cancel(1);
        assert!(c.is_cancelled(1));
        c.cancel(2);
        c.cancel(3); // evicts 1, the oldest
        assert!(!c.is_cancelled(1));
        assert!(c.is_cancelled(2) && c.is_cancelled(3));
        c.finish(2);
        c.finish(3);
        assert_eq!(c.count.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_cancel() {
        let c = Arc::new(Cancels::new(8));
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.cancelled(7).await }
        });
        tokio::task::yield_now().await;
        c.cancel(7);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
        // Already cancelled: returns at once.
        c.cancelled(7).await;
    }
}
