//! Planning past the end of a forecast: real forecasts reach 24-72 h, deadlines may lie
//! further out. Beyond the horizon the planner uses the region's historical profile.
//!
//! The profile is the mean intensity per slot of the UTC day: grids' diurnal cycle (solar
//! at noon, evening peaks) is their most predictable feature, so it is the best cheap
//! prior for days no forecast reaches. It only has to rank far-future hours roughly: the
//! operator re-plans whenever a fresher forecast arrives, and only the near part of a plan
//! is ever executed.

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;

use crate::series::Series;

const DAY_SECS: i64 = 86_400;

/// Extensions stop this far past the forecast's end, whatever `until` says: a plan never
/// needs more, and a deadline years away must not allocate millions of slots.
pub const MAX_EXTENSION_SECS: i64 = 400 * DAY_SECS;

/// Why a profile could not be built.
#[derive(Debug, Error, PartialEq)]
pub enum HorizonError {
    #[error("profile step must be a positive divisor of 86400 s, got {0}s")]
    BadStep(i64),
    #[error("history needs at least one whole day, got {0}s")]
    TooShort(i64),
}

/// Mean intensity per slot of the day (UTC), learnt from history.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyProfile {
    /// Slot length in seconds; `means.len() * step_secs == 86_400`.
    pub step_secs: i64,
    pub means: Vec<f64>,
}

impl DailyProfile {
    /// The mean of `history` per `step_secs` slot of the UTC day, over all of `history`
    /// (slice it first for "the trailing N days", or use [`DailyProfile::from_trailing_days`]).
    /// Any history step works: each value is spread over the profile slots it overlaps,
    /// weighted by the overlap. Needs at least a day so every slot has data.
    pub fn from_history(history: &Series, step_secs: i64) -> Result<Self, HorizonError> {
        if step_secs <= 0 || DAY_SECS % step_secs != 0 {
            return Err(HorizonError::BadStep(step_secs));
        }
        let span = (history.end() - history.start()).num_seconds();
        if span < DAY_SECS {
            return Err(HorizonError::TooShort(span));
        }
        let slots = (DAY_SECS / step_secs) as usize;
        let mut sums = vec![0.0; slots];
        let mut weights = vec![0.0; slots];
        let hs = history.step_secs();
        for (i, &v) in history.values().iter().enumerate() {
            let mut pos = history.slot_start(i).timestamp().rem_euclid(DAY_SECS);
            let mut left = hs;
            while left > 0 {
                let slot = (pos / step_secs) as usize;
                let take = (step_secs - pos % step_secs).min(left);
                sums[slot] += v * take as f64;
                weights[slot] += take as f64;
                pos = (pos + take) % DAY_SECS;
                left -= take;
            }
        }
        let means = sums.iter().zip(&weights).map(|(s, w)| s / w).collect();
        Ok(DailyProfile { step_secs, means })
    }

    /// The profile of the last `days` whole days of `history` (recent weeks track the
    /// season better than a year-long mean).
    pub fn from_trailing_days(
        history: &Series,
        step_secs: i64,
        days: u32,
    ) -> Result<Self, HorizonError> {
        let from = history.end() - TimeDelta::days(i64::from(days.max(1)));
        match history.slice(from, history.end()) {
            Some(s) => Self::from_history(&s, step_secs),
            None => Self::from_history(history, step_secs),
        }
    }

    fn valid(&self) -> bool {
        self.step_secs > 0
            && !self.means.is_empty()
            && self.means.len() as i64 * self.step_secs == DAY_SECS
            && self.means.iter().all(|m| m.is_finite() && *m >= 0.0)
    }

    /// Mean of the profile over `[t, t + secs)`.
    pub fn mean_over(&self, t: DateTime<Utc>, secs: i64) -> f64 {
        if !self.valid() || secs <= 0 {
            return 0.0;
        }
        let mut pos = t.timestamp().rem_euclid(DAY_SECS);
        // More than a day just repeats the cycle.
        let mut left = secs.min(DAY_SECS);
        let total = left as f64;
        let mut acc = 0.0;
        while left > 0 {
            let slot = (pos / self.step_secs) as usize;
            let take = (self.step_secs - pos % self.step_secs).min(left);
            acc += self.means[slot] * take as f64;
            pos = (pos + take) % DAY_SECS;
            left -= take;
        }
        acc / total
    }
}

/// Returns `forecast` extended to `until` with values from `profile`, on the forecast's
/// own step (each new slot gets the profile's mean over it). A forecast that already
/// reaches `until`, or an invalid profile, leaves the forecast unchanged; the extension
/// is capped at [`MAX_EXTENSION_SECS`].
pub fn extend_with_profile(
    forecast: &Series,
    profile: &DailyProfile,
    until: DateTime<Utc>,
) -> Series {
    let end = forecast.end();
    if until <= end || !profile.valid() {
        return forecast.clone();
    }
    let step = forecast.step_secs();
    let want = (until - end).num_seconds().min(MAX_EXTENSION_SECS);
    let extra = (want + step - 1) / step;
    let mut values = Vec::with_capacity(forecast.len() + extra as usize);
    values.extend_from_slice(forecast.values());
    for i in 0..extra {
        values.push(profile.mean_over(end + TimeDelta::seconds(i * step), step));
    }
    Series::new(forecast.start(), step, values).unwrap_or_else(|_| forecast.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2023, 6, 1, 0, 0, 0).unwrap()
    }

    fn pattern(h: usize) -> f64 {
        // Solar dip at noon.
        300.0 - 200.0 * (-(((h as f64) - 12.0) / 4.0).powi(2)).exp()
    }

    #[test]
    fn learns_hour_of_day_means_from_any_step() {
        // Three days, hourly, the same cycle plus a day-dependent offset that averages out.
        let vals: Vec<f64> = (0..72)
            .map(|i| pattern(i % 24) + [10.0, -10.0, 0.0][i / 24])
            .collect();
        let hist = Series::new(day0(), 3600, vals).unwrap();
        let p = DailyProfile::from_history(&hist, 3600).unwrap();
        assert_eq!(p.means.len(), 24);
        for h in 0..24 {
            assert!((p.means[h] - pattern(h)).abs() < 1e-9);
        }
        // A finer profile repeats the hourly value; a coarser one averages it.
        let fine = DailyProfile::from_history(&hist, 900).unwrap();
        assert_eq!(fine.means.len(), 96);
        assert!((fine.means[49] - pattern(12)).abs() < 1e-9);
        let coarse = DailyProfile::from_history(&hist, 7200).unwrap();
        assert!((coarse.means[6] - (pattern(12) + pattern(13)) / 2.0).abs() < 1e-9);
        assert_eq!(
            DailyProfile::from_history(&hist, 7000),
            Err(HorizonError::BadStep(7000))
        );
        let short = Series::new(day0(), 3600, vec![1.0; 5]).unwrap();
        assert!(matches!(
            DailyProfile::from_history(&short, 3600),
            Err(HorizonError::TooShort(_))
        ));
        // Trailing days: only the last day (offset 0) counts.
        let last = DailyProfile::from_trailing_days(&hist, 3600, 1).unwrap();
        assert!((last.means[3] - pattern(3)).abs() < 1e-9);
    }

    #[test]
    fn extends_on_the_forecast_step_with_profile_values() {
        let hist = Series::new(day0(), 3600, (0..48).map(|i| pattern(i % 24)).collect()).unwrap();
        let p = DailyProfile::from_history(&hist, 3600).unwrap();
        // A 5-minute forecast for 6 h from 02:00, extended to 2 days later.
        let start = day0() + TimeDelta::days(10) + TimeDelta::hours(2);
        let f = Series::new(start, 300, vec![42.0; 72]).unwrap();
        let until = start + TimeDelta::hours(48) + TimeDelta::seconds(1);
        let x = extend_with_profile(&f, &p, until);
        assert_eq!(x.start(), f.start());
        assert_eq!(x.step_secs(), 300);
        assert!(x.end() >= until && x.end() - until < TimeDelta::seconds(300));
        assert_eq!(&x.values()[..72], f.values());
        // 08:00 is where the forecast ends; 12:30 comes from the profile.
        assert!(
            (x.value_at(start + TimeDelta::hours(10) + TimeDelta::minutes(30))
                .unwrap()
                - pattern(12))
            .abs()
                < 1e-9
        );
        // Already long enough, or no usable profile: unchanged.
        assert_eq!(extend_with_profile(&f, &p, start), f);
        let bad = DailyProfile {
            step_secs: 3600,
            means: vec![],
        };
        assert_eq!(extend_with_profile(&f, &bad, until), f);
        // Absurd deadlines are capped.
        let far = extend_with_profile(&f, &p, DateTime::<Utc>::MAX_UTC);
        assert!(far.end() - f.end() <= TimeDelta::seconds(MAX_EXTENSION_SECS + 300));
    }

    #[test]
    fn mean_over_wraps_midnight() {
        let p = DailyProfile {
            step_secs: 43_200,
            means: vec![100.0, 300.0],
        };
        let t = day0() + TimeDelta::hours(18);
        assert!((p.mean_over(t, 12 * 3600) - 200.0).abs() < 1e-9);
        assert!((p.mean_over(t, 3 * DAY_SECS) - 200.0).abs() < 1e-9);
    }
}
