//! Reconnect backoff: exponential growth, a cap, and jitter. Pure: the random draw is an
//! input, so the policy is tested with fixed values.

use std::time::Duration;

use crate::config::BackoffConfig;

/// The delay before the next attempt after `failures` consecutive failures (≥ 1), given a
/// uniform random draw `unit` in `[0, 1)`.
pub fn delay(cfg: &BackoffConfig, failures: u32, unit: f64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX).min(64);
    let base = cfg.initial.as_secs_f64() * cfg.multiplier.max(1.0).powi(exponent);
    let capped = base.min(cfg.max.as_secs_f64());
    let jitter = cfg.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
    Duration::from_secs_f64(capped * (1.0 - jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }

    #[test]
    fn delay_table() {
        let ms = Duration::from_millis;
        let table = [
            (0, 0.0, ms(0)),
            (1, 0.0, ms(100)),
            (2, 0.0, ms(200)),
            (3, 0.0, ms(400)),
            (4, 0.0, ms(800)),
            (5, 0.0, ms(1000)),
            (50, 0.0, ms(1000)),
            (1, 1.0, ms(50)),
            (3, 0.5, ms(300)),
            (u32::MAX, 0.999_999, ms(500)),
        ];
        for (failures, unit, want) in table {
            let got = delay(&cfg(), failures, unit);
            let diff = got.abs_diff(want);
            assert!(
                diff < Duration::from_micros(10),
                "{failures} {unit}: {got:?} != {want:?}"
            );
        }
    }
}
