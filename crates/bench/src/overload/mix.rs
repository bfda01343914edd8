//! The offered-load mix of the overload scenario: how many calls per second each client sends
//! for a total load expressed as a multiple of the server's measured capacity. Pure.
//!
//! Each client's **fair share** is `capacity / clients`. Every light client offers
//! `light_share × fair share × load / peak_load`; the hog (client 0) offers the rest of
//! `load × capacity`. At the peak load (4× by default) the light clients together stay below
//! capacity — a server that is fair to them can admit all of their calls — while the hog alone
//! offers several times what the server can do.

/// Offered calls per second, by client; index 0 is the hog.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mix {
    /// Rates in calls per second.
    pub(crate) rates: Vec<f64>,
}

/// Why a mix cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum MixError {
    /// Fewer than two clients: there is no hog and light clients to compare.
    #[error("the overload mix needs at least two clients, got {0}")]
    TooFewClients(usize),
    /// A non-positive or non-finite parameter.
    #[error("{0} must be a positive number, got {1}")]
    NotPositive(&'static str, f64),
    /// The light clients alone would offer more than the whole load.
    #[error(
        "light clients would offer {light:.0} calls/s, more than the total {total:.0}: lower \
         --light-share"
    )]
    LightExceedsTotal {
        /// The light clients' total.
        light: f64,
        /// The total at this load.
        total: f64,
    },
}

impl Mix {
    /// The mix for `load` (a multiple of `capacity`, e.g. 0.5 or 4.0), where the light clients'
    /// rates are set at `peak_load` and scaled with the load.
    pub(crate) fn new(
        capacity: f64,
        clients: usize,
        load: f64,
        peak_load: f64,
        light_share: f64,
    ) -> Result<Self, MixError> {
        if clients < 2 {
            return Err(MixError::TooFewClients(clients));
        }
        for (name, v) in [
            ("capacity", capacity),
            ("load", load),
            ("peak load", peak_load),
            ("--light-share", light_share),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(MixError::NotPositive(name, v));
            }
        }
        let fair_share = capacity / clients as f64;
        let light = light_share * fair_share * load / peak_load;
        let total = load * capacity;
        let lights_total = light * (clients - 1) as f64;
        if lights_total >= total {
            return Err(MixError::LightExceedsTotal {
                light: lights_total,
                total,
            });
        }
        let mut rates = vec![light; clients];
        rates[0] = total - lights_total;
        Ok(Self { rates })
    }

    /// The hog's rate as a multiple of its fair share of capacity.
    pub(crate) fn hog_multiple(&self, capacity: f64) -> f64 {
        self.rates[0] / (capacity / self.rates.len() as f64)
    }

    /// Total offered calls per second.
    pub(crate) fn total(&self) -> f64 {
        self.rates.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn the_documented_mix() {
        // Capacity 1000/s, ten clients, light clients at half their fair share at 4x.
        let peak = Mix::new(1000.0, 10, 4.0, 4.0, 0.5).unwrap();
        assert!(close(peak.total(), 4000.0));
        assert!(peak.rates[1..].iter().all(|r| close(*r, 50.0)));
        assert!(close(peak.rates[0], 4000.0 - 450.0));
        assert!(close(peak.hog_multiple(1000.0), 35.5));
        // The light clients together fit in the capacity.
        assert!(peak.rates[1..].iter().sum::<f64>() < 1000.0);

        // At half load everything scales down by the same factor.
        let half = Mix::new(1000.0, 10, 0.5, 4.0, 0.5).unwrap();
        assert!(close(half.total(), 500.0));
        assert!(close(half.rates[1], 50.0 / 8.0));
        assert!(close(half.rates[0], 3550.0 / 8.0));
    }

    #[test]
    fn bad_parameters() {
        assert_eq!(
            Mix::new(1000.0, 1, 4.0, 4.0, 0.5),
            Err(MixError::TooFewClients(1))
        );
        assert!(matches!(
            Mix::new(0.0, 10, 4.0, 4.0, 0.5),
            Err(MixError::NotPositive("capacity", _))
        ));
        assert!(matches!(
            Mix::new(1000.0, 10, f64::NAN, 4.0, 0.5),
            Err(MixError::NotPositive("load", _))
        ));
        assert!(matches!(
            Mix::new(1000.0, 10, 1.0, 1.0, 2.0),
            Err(MixError::LightExceedsTotal { .. })
        ));
    }
}
