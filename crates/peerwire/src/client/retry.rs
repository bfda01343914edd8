//! Client retries: which outcomes may be retried, and a budget that keeps retries from
//! multiplying load on an overloaded server.
//!
//! Only calls that certainly did not run are retried, unless the caller marks the call
//! idempotent, in which case unknown outcomes (timeout, lost connection) are retried too. A
//! call's deadline bounds all its attempts. The budget is a token bucket: every first attempt
//! deposits `ratio` tokens, every retry takes one, and `min_per_sec` retries per second are
//! always allowed — so retries add at most `ratio` of the traffic (10% by default) when
//! everything fails, instead of tripling it.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::RetryPolicy;
use crate::error::{ConnectError, Error, NotExecuted};
use peerwire_wire::Status;

/// Whether an outcome may be retried.
pub(crate) fn retryable(error: &Error, idempotent: bool) -> bool {
    match error {
        Error::NotExecuted { reason, .. } => match reason {
            NotExecuted::Busy { .. }
            | NotExecuted::ConnectionClosing { .. }
            | NotExecuted::LocalQueueFull { .. } => true,
            NotExecuted::Connect(e) => !matches!(e, ConnectError::Handshake(_)),
            NotExecuted::Rejected { status, .. } => *status == Status::ShuttingDown,
            _ => false,
        },
        Error::Unknown { .. } => idempotent,
        _ => false,
    }
}

/// The server's retry hint, if the outcome carries one.
pub(crate) fn retry_after(error: &Error) -> Option<Duration> {
    match error {
        Error::NotExecuted {
            reason: NotExecuted::Busy { retry_after, .. },
            ..
        } => *retry_after,
        _ => None,
    }
}

/// One retry costs this many milli-tokens (integers keep 100 × 10% exactly 10).
const TOKEN: u64 = 1000;

/// Tokens earned by requests are capped at this many retries' worth.
const MAX_SAVED: u64 = 100 * TOKEN;

/// A token bucket for retries. Pure: the time is passed in.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Milli-tokens earned per first attempt.
    per_request: u64,
    /// Milli-tokens of per-second allowance, and its cap.
    reserve_cap: u64,
    /// Milli-tokens earned by requests.
    earned: u64,
    /// Milli-tokens of the per-second allowance left.
    reserve: u64,
    last: Option<Instant>,
}

impl RetryBudget {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        let reserve_cap = u64::from(policy.budget_min_per_sec) * TOKEN;
        Self {
            per_request: (policy.budget_ratio.max(0.0) * TOKEN as f64).round() as u64,
            reserve_cap,
            earned: 0,
            reserve: reserve_cap,
            last: None,
        }
    }

    /// A first attempt was made.
    pub(crate) fn deposit(&mut self) {
        self.earned = (self.earned + self.per_request).min(MAX_SAVED);
    }

    /// Takes a token for a retry at `now`, if any is left.
    pub(crate) fn try_withdraw(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed_ms = now.saturating_duration_since(last).as_millis() as u64;
            // reserve_cap milli-tokens per second = reserve_cap / 1000 per millisecond.
            let refill = elapsed_ms.saturating_mul(self.reserve_cap) / 1000;
            self.reserve = (self.reserve + refill).min(self.reserve_cap);
        }
        self.last = Some(now);
        if self.earned >= TOKEN {
            self.earned -= TOKEN;
            return true;
        }
        if self.reserve >= TOKEN {
            self.reserve -= TOKEN;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    fn not_executed(reason: NotExecuted) -> Error {
        Error::NotExecuted {
            peer: peer(),
            reason,
        }
    }

    #[test]
    fn retryable_table() {
        let busy = not_executed(NotExecuted::Busy {
            retry_after: None,
            message: String::new(),
        });
        let unknown_route = not_executed(NotExecuted::Rejected {
            status: Status::UnknownRoute,
            message: String::new(),
        });
        let shutting_down = not_executed(NotExecuted::Rejected {
            status: Status::ShuttingDown,
            message: String::new(),
        });
        let refused = not_executed(NotExecuted::Connect(ConnectError::Timeout(Duration::ZERO)));
        let handshake = not_executed(NotExecuted::Connect(ConnectError::Handshake(
            crate::HandshakeError::Closed,
        )));
        let lost = Error::Unknown {
            peer: peer(),
            reason: crate::Unknown::ConnectionLost(String::new()),
        };
        let remote = Error::Remote {
            peer: peer(),
            status: Status::HandlerFailed,
            message: String::new(),
        };
        let too_large = not_executed(NotExecuted::PayloadTooLarge {
            len: 1,
            limit: 0,
            setting: "max_message_bytes",
        });
        // (error, idempotent) -> retry?
        let table = [
            (&busy, false, true),
            (&unknown_route, false, false),
            (&shutting_down, false, true),
            (&refused, false, true),
            (&handshake, false, false),
            (&lost, false, false),
            (&lost, true, true),
            (&remote, true, false),
            (&too_large, true, false),
        ];
        for (error, idempotent, want) in table {
            assert_eq!(
                retryable(error, idempotent),
                want,
                "{error} idempotent={idempotent}"
            );
        }
    }

    #[test]
    fn budget_allows_ratio_plus_a_per_second_minimum() {
        let policy = RetryPolicy {
            budget_ratio: 0.1,
            budget_min_per_sec: 2,
            ..RetryPolicy::default()
        };
        let mut b = RetryBudget::new(&policy);
        let t0 = Instant::now();
        // The per-second reserve: 2 retries, then none.
        assert!(b.try_withdraw(t0));
        assert!(b.try_withdraw(t0));
        assert!(!b.try_withdraw(t0));
        // 100 requests earn 10 retries.
        for _ in 0..100 {
            b.deposit();
        }
        let allowed = (0..20).filter(|_| b.try_withdraw(t0)).count();
        assert_eq!(allowed, 10);
        // Half a second later the reserve has one retry again.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_withdraw(t1));
        assert!(!b.try_withdraw(t1));
    }
}
