//! The fair call queue (Hadoop's `FairCallQueue` with `DecayRpcScheduler`): a pure
//! [`Scheduler`] that keeps heavy callers from crowding out light ones.
//!
//! - Every call charges its caller a cost of 1. Costs decay: every `decay_period` the server
//!   calls [`Scheduler::tick`], which multiplies them by `decay_factor`.
//! - A caller's **priority level** comes from its share of the total decayed cost: a share of
//!   at least `thresholds[i]` puts it at level `i + 1` (level 0 is the best). With the defaults
//!   (4 levels, thresholds 12.5%, 25%, 50%), a caller making half the recent calls is at level 3.
//! - Each level has its own queue (`capacity / levels` calls). A call whose level is full
//!   **overflows** to lower-priority levels; when none has room it is refused, with a retry hint
//!   that grows with the level. A heavy caller is at the lowest level and has nowhere to
//!   overflow, so it is shed first while light callers still get in.
//! - Handlers take calls by **weighted round robin** between the levels (8/4/2/1 by default),
//!   skipping empty levels, so lower levels are slowed, never starved.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::call_queue::{Rejected, Schedulable, Scheduler};

/// Settings of a [`FairScheduler`].
#[derive(Debug, Clone)]
pub struct FairSchedulerConfig {
    /// Total calls queued across all levels.
    pub capacity: usize,
    /// Share of recent cost at which a caller drops to the next level; one entry per level
    /// below the first, ascending.
    pub thresholds: Vec<f64>,
    /// Weighted round-robin weights, one per level.
    pub weights: Vec<u32>,
    /// Factor applied to every caller's cost at each decay.
    pub decay_factor: f64,
    /// Time between decays.
    pub decay_period: Duration,
    /// Retry hint for a refused call at level 0; doubles per level.
    pub backoff_base: Duration,
}

impl FairSchedulerConfig {
    /// Hadoop's defaults: 4 levels, thresholds 12.5%, 25%, 50%, weights 8/4/2/1, costs halved
    /// every 5 s; refused calls are told to retry after 10 ms × 2^level.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            thresholds: vec![0.125, 0.25, 0.5],
            weights: vec![8, 4, 2, 1],
            decay_factor: 0.5,
            decay_period: Duration::from_secs(5),
            backoff_base: Duration::from_millis(10),
        }
    }

    fn levels(&self) -> usize {
        self.weights.len()
    }
}

/// Costs below this are forgotten at a decay (keeps the table bounded by active callers).
const FORGET_BELOW: f64 = 0.01;

/// The fair call queue; see the module documentation.
#[derive(Debug)]
pub struct FairScheduler<T> {
    cfg: FairSchedulerConfig,
    queues: Vec<VecDeque<T>>,
    level_capacity: usize,
    costs: HashMap<u64, f64>,
    total_cost: f64,
    /// Round robin position: the level being served and what is left of its weight.
    current: usize,
    remaining: u32,
    len: usize,
}

impl<T> FairScheduler<T> {
    /// A fair queue with `cfg`.
    ///
    /// # Panics
    ///
    /// If `weights` is empty, `thresholds` does not have one entry fewer than `weights`, or a
    /// weight is zero.
    pub fn new(cfg: FairSchedulerConfig) -> Self {
        let levels = cfg.levels();
        assert!(levels > 0, "a fair call queue needs at least one level");
        assert_eq!(
            cfg.thresholds.len() + 1,
            levels,
            "one threshold per level below the first"
        );
        assert!(
            cfg.weights.iter().all(|w| *w > 0),
            "weights must be positive"
        );
        let level_capacity = (cfg.capacity / levels).max(1);
        Self {
            queues: (0..levels).map(|_| VecDeque::new()).collect(),
            level_capacity,
            costs: HashMap::new(),
            total_cost: 0.0,
            current: 0,
            remaining: cfg.weights[0],
            len: 0,
            cfg,
        }
    }

    /// The priority level of `caller` now (0 is the best).
    pub fn level_of(&self, caller: u64) -> usize {
        if self.total_cost <= 0.0 {
            return 0;
        }
        let share = self.costs.get(&caller).copied().unwrap_or(0.0) / self.total_cost;
        self.cfg.thresholds.iter().filter(|t| share >= **t).count()
    }

    /// Calls queued at each level.
    pub fn depths(&self) -> Vec<usize> {
        self.queues.iter().map(VecDeque::len).collect()
    }

    fn charge(&mut self, caller: u64) {
        *self.costs.entry(caller).or_insert(0.0) += 1.0;
        self.total_cost += 1.0;
    }

    fn retry_after(&self, level: usize) -> Duration {
        self.cfg.backoff_base * 2u32.saturating_pow(level as u32)
    }

    fn advance(&mut self) {
        self.current = (self.current + 1) % self.queues.len();
        self.remaining = self.cfg.weights[self.current];
    }
}

impl<T: Schedulable + Send + 'static> Scheduler<T> for FairScheduler<T> {
    fn push(&mut self, item: T) -> Result<(), Rejected<T>> {
        let caller = item.caller();
        let level = self.level_of(caller);
        self.charge(caller);
        for l in level..self.queues.len() {
            if self.queues[l].len() < self.level_capacity {
                self.queues[l].push_back(item);
                self.len += 1;
                return Ok(());
            }
        }
        let share = self.costs[&caller] / self.total_cost;
        Err(Rejected {
            item,
            retry_after: Some(self.retry_after(level)),
            reason: format!(
                "fair call queue full at priority level {level} and below (caller {caller} made {:.0}% of recent calls; {} calls per level, setting `call_queue_capacity`)",
                share * 100.0,
                self.level_capacity
            ),
        })
    }

    fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        // At most one full turn: some level is non-empty.
        for _ in 0..=self.queues.len() {
            if self.remaining > 0
                && let Some(item) = self.queues[self.current].pop_front()
            {
                self.remaining -= 1;
                self.len -= 1;
                return Some(item);
            }
            self.advance();
        }
        None
    }

    fn len(&self) -> usize {
        self.len
    }

    fn tick(&mut self) {
        let factor = self.cfg.decay_factor.clamp(0.0, 1.0);
        self.costs.retain(|_, cost| {
            *cost *= factor;
            *cost >= FORGET_BELOW
        });
        self.total_cost = self.costs.values().sum();
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.cfg.decay_period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call from `caller`, numbered for order checks.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct C(u64, u32);

    impl Schedulable for C {
        fn caller(&self) -> u64 {
            self.0
        }
        fn route(&self) -> &[u8] {
            b"r"
        }
    }

    fn fair(capacity: usize) -> FairScheduler<C> {
        FairScheduler::new(FairSchedulerConfig::with_capacity(capacity))
    }

    #[test]
    fn priority_by_share_of_decayed_cost() {
        let mut s = fair(1000);
        // (calls by caller 1, calls by caller 2) -> level of caller 1
        let table = [
            (1, 99, 0),
            (13, 87, 1),
            (25, 75, 2),
            (50, 50, 3),
            (100, 0, 3),
            (12, 88, 0),
        ];
        for (a, b, want) in table {
            let mut s2 = fair(1000);
            for i in 0..a {
                s2.push(C(1, i)).unwrap();
            }
            for i in 0..b {
                s2.push(C(2, i)).unwrap();
            }
            assert_eq!(s2.level_of(1), want, "{a} of {}", a + b);
        }
        // Decay: old costs fade, the mix of new calls decides.
        for i in 0..100 {
            s.push(C(1, i)).unwrap();
        }
        assert_eq!(s.level_of(1), 3);
        for _ in 0..10 {
            s.tick();
        }
        for i in 0..100 {
            let _ = s.pop();
            s.push(C(2, i)).unwrap();
        }
        assert_eq!(s.level_of(1), 0, "after decay caller 1 is light");
        assert_eq!(s.level_of(2), 3);
        assert_eq!(s.level_of(99), 0, "unknown callers start at the top");
    }

    #[test]
    fn weighted_round_robin_serves_levels_8_4_2_1() {
        let mut s = fair(400);
        // Put 20 calls at each level by construction.
        for level in 0..4 {
            for i in 0..20 {
                s.queues[level].push_back(C(level as u64, i));
                s.len += 1;
            }
        }
        let order: Vec<u64> = (0..30).map(|_| s.pop().unwrap().0).collect();
        let mut expected = vec![0; 8];
        expected.extend([1; 4]);
        expected.extend([2; 2]);
        expected.extend([3; 1]);
        expected.extend(expected.clone());
        assert_eq!(order, expected);
        // Empty levels are skipped, and every call comes out exactly once.
        let rest: Vec<C> = std::iter::from_fn(|| s.pop()).collect();
        assert_eq!(rest.len(), 80 - 30);
        assert_eq!(s.len(), 0);
        assert_eq!(s.pop(), None);
    }

    #[test]
    fn full_levels_overflow_downwards_and_the_heavy_caller_is_shed_first() {
        // 2 calls per level.
        let mut s = fair(8);
        // The hog's first call finds no history (level 0); from then on it makes all the calls
        // (level 3): two fit, the other seven are refused with level 3's backoff.
        let mut refused = Vec::new();
        for i in 0..10 {
            if let Err(r) = s.push(C(1, i)) {
                assert_eq!(r.retry_after, Some(Duration::from_millis(80)));
                assert!(r.reason.contains("call_queue_capacity"), "{}", r.reason);
                refused.push(r.item.1);
            }
        }
        assert_eq!(refused, [3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(s.depths(), [1, 0, 0, 2]);
        // A light caller gets in: its first call at level 0, the second overflows to level 1
        // when level 0 is full.
        s.push(C(2, 0)).unwrap();
        s.push(C(2, 1)).unwrap();
        assert_eq!(s.depths(), [2, 1, 0, 2]);
        // Draining frees room again.
        while s.pop().is_some() {}
        assert!(s.push(C(2, 9)).is_ok());
    }

    #[test]
    fn light_callers_are_admitted_while_the_hog_is_refused() {
        let mut s = fair(40); // 10 per level
        for i in 0..1000 {
            let _ = s.push(C(1, i));
        }
        assert_eq!(s.level_of(1), 3);
        for caller in 2..10 {
            assert!(
                s.push(C(caller, 0)).is_ok(),
                "light caller {caller} refused"
            );
        }
        assert!(s.push(C(1, 5000)).is_err(), "the hog is still refused");
    }

    #[test]
    fn decay_forgets_idle_callers() {
        let mut s = fair(100);
        s.push(C(7, 0)).unwrap();
        for _ in 0..10 {
            s.tick();
        }
        assert!(s.costs.is_empty());
        assert_eq!(s.total_cost, 0.0);
    }
}
