//! The nemesis's seeded schedule: which fault comes when and for how long. Pure: the same seed,
//! kinds and length give the same steps. Which nodes a step hits is chosen when it runs (it may
//! depend on who leads), from the step's own `choice` number, so that too follows the seed.

use std::time::Duration;

/// A kind of fault.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The leader cut from every other node, both ways.
    IsolateLeader,
    /// A random minority cut from the majority, both ways.
    Majority,
    /// The leader's packets lost at every other node; what they send still reaches it.
    OneWay,
    /// Two halves cut from each other, with one node that sees both.
    Bridge,
    /// Random partitions made and healed every 0.5–1.5 s.
    Flap,
    /// `kill -9` of a node (the leader half of the time), restarted when the step ends.
    Kill,
    /// `SIGSTOP` of a node (the leader half of the time), `SIGCONT` when the step ends.
    Pause,
    /// A node's link taken down (clients lose it too), brought up when the step ends.
    LinkDown,
    /// A majority/minority partition and, at the same time, a kill or pause on the majority
    /// side.
    Mixed,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 9] = [
        Self::IsolateLeader,
        Self::Majority,
        Self::OneWay,
        Self::Bridge,
        Self::Flap,
        Self::Kill,
        Self::Pause,
        Self::LinkDown,
        Self::Mixed,
    ];

    /// The kind's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::IsolateLeader => "isolate-leader",
            Self::Majority => "majority",
            Self::OneWay => "one-way",
            Self::Bridge => "bridge",
            Self::Flap => "flap",
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::LinkDown => "link-down",
            Self::Mixed => "mixed",
        }
    }
}

/// One step: wait `quiet` with everything healed, then hold a fault of `kind` for `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Healthy time before the fault.
    pub quiet: Duration,
    /// The fault.
    pub kind: Kind,
    /// How long the fault is held.
    pub hold: Duration,
    /// A random number the step uses to pick its nodes.
    pub choice: u64,
}

/// Bounds of the steps' durations.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Shortest and longest quiet time.
    pub quiet: (Duration, Duration),
    /// Shortest and longest hold.
    pub hold: (Duration, Duration),
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            quiet: (Duration::from_secs(2), Duration::from_secs(5)),
            hold: (Duration::from_secs(5), Duration::from_secs(12)),
        }
    }
}

/// The steps of a run of `length` (quiet plus hold, not counting recovery) with faults drawn
/// from `kinds` (each kind once in a shuffled round before any repeats, so a short run still
/// sees each kind).
pub fn plan(seed: u64, kinds: &[Kind], length: Duration, timing: Timing) -> Vec<Step> {
    assert!(
        !kinds.is_empty(),
        "a schedule needs at least one kind of fault"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut steps = Vec::new();
    let mut total = Duration::ZERO;
    let mut round: Vec<Kind> = Vec::new();
    loop {
        if round.is_empty() {
            round = kinds.to_vec();
            rng.shuffle(&mut round);
        }
        let quiet = between(&mut rng, timing.quiet);
        let hold = between(&mut rng, timing.hold);
        if total + quiet + hold > length && !steps.is_empty() {
            break;
        }
        let kind = round.pop().expect("refilled above");
        steps.push(Step {
            quiet,
            kind,
            hold,
            choice: rng.u64(..),
        });
        total += quiet + hold;
        if total >= length {
            break;
        }
    }
    steps
}

fn between(rng: &mut fastrand::Rng, (lo, hi): (Duration, Duration)) -> Duration {
    let lo_ms = lo.as_millis() as u64;
    let hi_ms = hi.as_millis().max(lo.as_millis()) as u64;
    Duration::from_millis(rng.u64(lo_ms..=hi_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = plan(7, &Kind::ALL, Duration::from_secs(300), Timing::default());
        let b = plan(7, &Kind::ALL, Duration::from_secs(300), Timing::default());
        let c = plan(8, &Kind::ALL, Duration::from_secs(300), Timing::default());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_schedule_fits_its_length_and_sees_every_kind_once_per_round() {
        let steps = plan(3, &Kind::ALL, Duration::from_secs(300), Timing::default());
        let total: Duration = steps.iter().map(|s| s.quiet + s.hold).sum();
        assert!(total <= Duration::from_secs(300), "{total:?}");
        assert!(steps.len() >= Kind::ALL.len(), "{}", steps.len());
        let mut first_round: Vec<Kind> = steps[..Kind::ALL.len()].iter().map(|s| s.kind).collect();
        first_round.sort();
        assert_eq!(first_round, Kind::ALL.to_vec());
        for s in &steps {
            assert!(s.quiet >= Duration::from_secs(2) && s.quiet <= Duration::from_secs(5));
            assert!(s.hold >= Duration::from_secs(5) && s.hold <= Duration::from_secs(12));
        }
    }

    #[test]
    fn a_short_run_still_gets_one_step() {
        let steps = plan(1, &[Kind::Kill], Duration::from_secs(1), Timing::default());
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].kind, Kind::Kill);
    }
}
