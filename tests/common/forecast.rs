//! Forecasts for end-to-end tests: 1-minute slots laid out around a slot boundary near
//! "now", written in the `file` provider's CSV format, with the integral the ledger must
//! match.

use std::path::Path;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::cluster::must;

/// Forecast resolution.
pub const SLOT_SECS: i64 = 60;

/// A forecast in 1-minute slots, written as the `file` provider's CSV.
pub struct Forecast {
    pub start: DateTime<Utc>,
    pub values: Vec<f64>,
}

impl Forecast {
    /// Slots from 15 min before `p` to 45 min after it; `value(k)` is the intensity of the
    /// slot starting at `p + k min` (so `k < 0` is before `p`). History before now is
    /// included because the operator integrates the past with it.
    pub fn around(p: DateTime<Utc>, value: impl Fn(i64) -> f64) -> Self {
        Self {
            start: p - TimeDelta::minutes(15),
            values: (-15..45).map(value).collect(),
        }
    }

    /// Intensity in force at `t` (the first/last value outside the series).
    pub fn at(&self, t: DateTime<Utc>) -> f64 {
        let k = (t - self.start).num_seconds().div_euclid(SLOT_SECS);
        let k = k.clamp(0, self.values.len() as i64 - 1) as usize;
        self.values[k]
    }

    /// Integral of intensity over `[from, to)`, (g/kWh)·h: multiply by kW to get grams.
    pub fn integral(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        let mut total = 0.0;
        let mut t = from;
        while t < to {
            let slot_end = self.start
                + TimeDelta::seconds(
                    ((t - self.start).num_seconds().div_euclid(SLOT_SECS) + 1) * SLOT_SECS,
                );
            let end = slot_end.min(to);
            total += self.at(t) * (end - t).num_milliseconds() as f64 / 3.6e6;
            t = end;
        }
        total
    }

    /// The `file` provider's CSV, every row for `region`.
    pub fn csv(&self, region: &str) -> String {
        let mut text = String::from("timestamp,region,gco2_per_kwh\n");
        for (i, v) in self.values.iter().enumerate() {
            let t = self.start + TimeDelta::seconds(i as i64 * SLOT_SECS);
            text.push_str(&format!(
                "{},{region},{v}\n",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        text
    }

    pub fn write_csv(&self, path: &Path, region: &str) {
        must("write forecast CSV", std::fs::write(path, self.csv(region)));
    }
}

/// The first minute boundary at least 30 s after `now`.
pub fn first_boundary(now: DateTime<Utc>) -> DateTime<Utc> {
    let next =
        must("round to minute", now.duration_trunc(TimeDelta::minutes(1))) + TimeDelta::minutes(1);
    if next - now < TimeDelta::seconds(30) {
        next + TimeDelta::minutes(1)
    } else {
        next
    }
}
