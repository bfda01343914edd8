//! The call queue between the readers and the handler pool, with a pluggable scheduler.
//!
//! Readers [`push`](CallQueue::push) without waiting: a scheduler that has no room rejects
//! the call, and the reader answers it `Busy` at once (Hadoop's backoff). Handlers
//! [`pop`](CallQueue::pop) in the order the scheduler chooses. The scheduler is pure: a
//! fair scheduler (Hadoop's `FairCallQueue`) plugs in by implementing [`Scheduler`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
#[cfg(test)]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// What a scheduler may know about a queued item.
pub trait Schedulable {
    /// Who made the call: the authenticated node id, or a hash of the address of anonymous
    /// clients.
    fn caller(&self) -> u64;
    /// The route called.
    fn route(&self) -> &[u8];
}

/// A call a scheduler refused, handed back with a hint for the caller.
#[derive(Debug)]
pub struct Rejected<T> {
    /// The refused item.
    pub item: T,
    /// When the caller should retry.
    pub retry_after: Option<Duration>,
    /// Why, naming the limit.
    pub reason: String,
}

/// Orders calls between the readers and the handlers. Implementations are plain data
/// structures: no IO, no clocks, no locks (the queue holds the lock).
pub trait Scheduler<T>: Send + 'static {
    /// Adds an item, or refuses it when there is no room for it.
    fn push(&mut self, item: T) -> Result<(), Rejected<T>>;
    /// Takes the next item to run.
    fn pop(&mut self) -> Option<T>;
    /// Items queued.
    fn len(&self) -> usize;
    /// Whether nothing is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Periodic maintenance (for example decaying per-caller costs), called every
    /// [`Scheduler::tick_interval`].
    fn tick(&mut self) {}

    /// How often [`Scheduler::tick`] should run; `None` (the default) for never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
}

/// First in, first out, with a fixed capacity.
#[derive(Debug)]
pub struct FifoScheduler<T> {
    queue: VecDeque<T>,
    capacity: usize,
}

impl<T> FifoScheduler<T> {
    /// A FIFO holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
        }
    }
}

/// Hint given to callers refused by a full FIFO: 10 ms, about the time a handler pool needs
/// to work off a burst on a small machine.
const FIFO_RETRY_AFTER: Duration = Duration::from_millis(10);

impl<T: Send + 'static> Scheduler<T> for FifoScheduler<T> {
    fn push(&mut self, item: T) -> Result<(), Rejected<T>> {
        if self.queue.len() >= self.capacity {
            return Err(Rejected {
                item,
                retry_after: Some(FIFO_RETRY_AFTER),
                reason: format!(
                    "call queue full at {} calls (setting `call_queue_capacity`)",
                    self.capacity
                ),
            });
        }
        self.queue.push_back(item);
        Ok(())
    }

    fn pop(&mut self) -> Option<T> {
        self.queue.pop_front()
    }

    fn len(&self) -> usize {
        self.queue.len()
    }
}

/// The shared queue: a scheduler behind a lock, and a wake-up for idle handlers. The server
/// core's call queue is one; a service with consumers of its own (the RpcEnv's message loops)
/// may use another with any [`Scheduler`].
pub struct CallQueue<T> {
    scheduler: Mutex<Box<dyn Scheduler<T>>>,
    ready: Notify,
    /// Whether a wake-up is on its way to a worker (given with `notify_one`, not yet taken).
    /// While one is, a push wakes no other worker: the woken one takes what is queued and
    /// passes a wake-up on when more is left, so a burst of calls that each complete at once
    /// is run by the worker already running instead of waking one worker per call. At most
    /// one wake-up is on its way, as `Notify` keeps at most one.
    wake_pending: AtomicBool,
    closed: AtomicBool,
    /// Gauge reporting the queue's depth, if this queue has one.
    depth_gauge: Option<&'static str>,
}

impl<T> fmt::Debug for CallQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallQueue")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> CallQueue<T> {
    /// A queue ordered by `scheduler`, reporting its depth to the gauge `depth_gauge` if named.
    pub fn new(scheduler: Box<dyn Scheduler<T>>, depth_gauge: Option<&'static str>) -> Self {
        Self {
            scheduler: Mutex::new(scheduler),
            ready: Notify::new(),
            wake_pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            depth_gauge,
        }
    }

    /// Wakes a worker unless a wake-up is already on its way.
    fn wake_one(&self) {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            self.ready.notify_one();
        }
    }

    /// A worker took the wake-up on its way (a close's wake-up to every worker clears it too:
    /// at worst one wake-up more).
    fn took_wake(&self) {
        self.wake_pending.store(false, Ordering::SeqCst);
    }

    /// Queues an item without waiting; a refusal is returned to answer `Busy`.
    pub fn push(&self, item: T) -> Result<(), Rejected<T>> {
        let depth = {
            let mut scheduler = self.scheduler.lock().expect("call queue lock poisoned");
            scheduler.push(item)?;
            scheduler.len()
        };
        self.wake_one();
        if let Some(gauge) = self.depth_gauge {
            metrics::gauge!(gauge).set(depth as f64);
        }
        Ok(())
    }

    /// Takes the next item, waiting while the queue is empty. `None` once the queue is closed
    /// and empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an item is only removed when the future completes.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // A wake-up kept for no waiter is taken here.
            let took = notified.as_mut().enable();
            if took {
                self.took_wake();
            }
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
            if !took {
                self.took_wake();
            }
        }
    }

    fn try_pop(&self) -> Option<T> {
        let (item, more) = {
            let mut scheduler = self.scheduler.lock().expect("call queue lock poisoned");
            let item = scheduler.pop();
            (item, !scheduler.is_empty())
        };
        if item.is_some() && more {
            // Pass the wake-up on, but only when another idle worker has something to take.
            self.wake_one();
        }
        item
    }

    /// Calls queued now.
    pub fn len(&self) -> usize {
        self.scheduler
            .lock()
            .expect("call queue lock poisoned")
            .len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How often the scheduler wants [`CallQueue::tick`].
    pub fn tick_interval(&self) -> Option<Duration> {
        self.scheduler
            .lock()
            .expect("call queue lock poisoned")
            .tick_interval()
    }

    /// Runs the scheduler's periodic maintenance.
    pub fn tick(&self) {
        self.scheduler
            .lock()
            .expect("call queue lock poisoned")
            .tick();
    }

    /// Lets handlers finish once the queue is empty.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_table() {
        let mut s = FifoScheduler::new(2);
        assert!(s.push(1).is_ok());
        assert!(s.push(2).is_ok());
        let rejected = s.push(3).unwrap_err();
        assert_eq!(rejected.item, 3);
        assert!(rejected.reason.contains("call_queue_capacity"));
        assert_eq!(s.pop(), Some(1));
        assert!(s.push(4).is_ok());
        assert_eq!(s.pop(), Some(2));
        assert_eq!(s.pop(), Some(4));
        assert_eq!(s.pop(), None);
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn handlers_wake_for_pushes_and_finish_on_close() {
        let q = Arc::new(CallQueue::new(Box::new(FifoScheduler::new(8)), None));
        let mut workers = Vec::new();
        for _ in 0..3 {
            let q = q.clone();
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(x) = q.pop().await {
                    got.push(x);
                }
                got
            }));
        }
        for i in 0..8 {
            q.push(i).unwrap();
            tokio::task::yield_now().await;
        }
        q.close();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }

    /// A worker that takes a call and then waits leaves the calls behind it to another worker:
    /// the wake-up is passed on although pushes woke only one worker. (Without it, call 0's
    /// worker would wait forever for call 1.)
    #[tokio::test]
    async fn a_worker_that_waits_passes_the_rest_of_a_burst_on() {
        let q = Arc::new(CallQueue::new(Box::new(FifoScheduler::new(8)), None));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (q, tx, rx) = (q.clone(), tx.clone(), rx.clone());
            workers.push(tokio::spawn(async move {
                while let Some(x) = q.pop().await {
                    if x == 0 {
                        let rx = rx.lock().await.take().unwrap();
                        rx.await.unwrap();
                    } else if let Some(tx) = tx.lock().unwrap().take() {
                        tx.send(()).unwrap();
                    }
                }
            }));
        }
        // Both workers wait before the burst comes.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        q.push(0).unwrap();
        q.push(1).unwrap();
        q.push(2).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !q.is_empty() || tx.lock().unwrap().is_some() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("call 1 was run while call 0's worker waited");
        q.close();
        for w in workers {
            w.await.unwrap();
        }
    }

    /// Many producers and workers on several threads: every item is taken, none waits
    /// forever (a lost wake-up would leave items queued with workers idle).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_item_is_left_behind_under_contention() {
        const PER_PRODUCER: u64 = 20_000;
        let q = Arc::new(CallQueue::new(Box::new(FifoScheduler::new(1 << 20)), None));
        let taken = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (q, taken) = (q.clone(), taken.clone());
            workers.push(tokio::spawn(async move {
                while q.pop().await.is_some() {
                    taken.fetch_add(1, Ordering::SeqCst);
                    if taken.load(Ordering::Relaxed) % 97 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let q = q.clone();
                tokio::spawn(async move {
                    for i in 0..PER_PRODUCER {
                        q.push(p * PER_PRODUCER + i).unwrap();
                        if i % 13 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while taken.load(Ordering::SeqCst) < 4 * PER_PRODUCER as usize {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every item taken");
        q.close();
        for w in workers {
            w.await.unwrap();
        }
    }
}
