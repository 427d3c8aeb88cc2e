//! What a strategy is allowed to know at simulated time `t`: the forecast issued at the last
//! refresh before `t`, limited to the horizon, extended to the deadline with a daily profile
//! learnt from the trailing history only. Nothing here may read the truth after the issue
//! time except the `perfect` and `noisy` models, whose point is exactly that.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use super::noise::NoiseModel;
use super::SimError;
use crate::data::Vintage;
use crate::plan::horizon::{planning_series, DailyProfile};
use crate::series::Series;

/// Which forecast the receding-horizon strategies see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastModel {
    /// The actuals themselves (an upper bound on what forecasting can give).
    Perfect,
    /// Same slot yesterday: the last 24 h of observed history, repeated.
    Persistence,
    /// Actuals plus an error calibrated on real NESO forecasts (see [`super::noise`]).
    Noisy { seed: u64 },
    /// The real NESO GB vintages of March 2023, scored against the NESO actuals.
    Vintages,
}

impl ForecastModel {
    pub fn name(&self) -> &'static str {
        match self {
            ForecastModel::Perfect => "perfect",
            ForecastModel::Persistence => "persistence",
            ForecastModel::Noisy { .. } => "noisy",
            ForecastModel::Vintages => "vintages",
        }
    }
}

/// Issues forecasts over one truth series.
pub struct Forecaster<'a> {
    truth: &'a Series,
    vintages: &'a [Vintage],
    model: ForecastModel,
    horizon_secs: i64,
    refresh_secs: i64,
    history_secs: i64,
    noise: Option<NoiseModel>,
}

/// Issued forecasts kept while jobs that may ask for them are still being simulated.
pub struct ForecastCache {
    /// How far past its issue time each cached forecast reaches (a job's whole window).
    reach_secs: i64,
    entries: BTreeMap<DateTime<Utc>, Series>,
}

impl ForecastCache {
    pub fn new(reach_secs: i64) -> Self {
        Self {
            reach_secs,
            entries: BTreeMap::new(),
        }
    }

    /// Drops forecasts issued before `t`: jobs are simulated in submission order, and a job
    /// submitted at `t` never asks for an earlier issue.
    pub fn evict_before(&mut self, t: DateTime<Utc>) {
        self.entries = self.entries.split_off(&t);
    }
}

/// A forecast as issued: valid from `issued_at` until the next refresh.
pub struct Issued {
    pub issued_at: DateTime<Utc>,
    pub next_refresh: Option<DateTime<Utc>>,
}

impl<'a> Forecaster<'a> {
    pub fn new(
        truth: &'a Series,
        vintages: &'a [Vintage],
        model: ForecastModel,
        horizon_secs: i64,
        refresh_secs: i64,
        history_secs: i64,
    ) -> Self {
        let noise = match model {
            ForecastModel::Noisy { seed } => {
                Some(NoiseModel::new(seed, truth.step_secs(), truth.len()))
            }
            _ => None,
        };
        Self {
            truth,
            vintages,
            model,
            horizon_secs,
            refresh_secs,
            history_secs,
            noise,
        }
    }

    /// The refresh in force at `t` and the next one.
    pub fn issue_at(&self, t: DateTime<Utc>) -> Issued {
        if self.model == ForecastModel::Vintages {
            let k = self.vintages.partition_point(|v| v.issued_at <= t);
            let issued_at = if k == 0 {
                t
            } else {
                self.vintages[k - 1].issued_at
            };
            return Issued {
                issued_at,
                next_refresh: self.vintages.get(k).map(|v| v.issued_at),
            };
        }
        let since = (t - self.truth.start()).num_seconds().max(0);
        let k = since / self.refresh_secs;
        let issued_at = self.truth.start() + TimeDelta::seconds(k * self.refresh_secs);
        Issued {
            issued_at,
            next_refresh: Some(issued_at + TimeDelta::seconds(self.refresh_secs)),
        }
    }

    /// The forecast issued at `issued_at`, covering `[slot of now, until)`: the model's values
    /// up to the horizon, then the trailing-history daily profile.
    pub fn forecast(
        &self,
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Series, SimError> {
        let full = self.extended(issued_at, until)?;
        Self::from_now(&full, issued_at, now)
    }

    /// Like [`Forecaster::forecast`], but each issue is built once, to `issued_at + reach`,
    /// and reused by every job and strategy that asks within it: the dozens of overlapping
    /// long jobs would otherwise rebuild the same profile-extended series every hour.
    pub fn forecast_cached(
        &self,
        cache: &mut ForecastCache,
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Series, SimError> {
        let reach_end = issued_at + TimeDelta::seconds(cache.reach_secs);
        if until > reach_end {
            return self.forecast(issued_at, now, until);
        }
        let full = match cache.entries.entry(issued_at) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(self.extended(issued_at, reach_end)?)
            }
        };
        Self::from_now(full, issued_at, now)
    }

    fn extended(&self, issued_at: DateTime<Utc>, until: DateTime<Utc>) -> Result<Series, SimError> {
        let base = self.base(issued_at)?;
        Ok(if base.end() < until {
            let profile = self.profile(issued_at, &base);
            planning_series(&base, &profile, base.start(), until).unwrap_or(base)
        } else {
            base
        })
    }

    fn from_now(
        full: &Series,
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Series, SimError> {
        full.slice(now, full.end()).ok_or_else(|| {
            SimError::Internal(format!("forecast issued {issued_at} does not cover {now}"))
        })
    }

    /// The model's own values from the slot in progress at `issued_at` to the horizon.
    fn base(&self, issued_at: DateTime<Utc>) -> Result<Series, SimError> {
        if self.model == ForecastModel::Vintages {
            let k = self.vintages.partition_point(|v| v.issued_at <= issued_at);
            let v = k
                .checked_sub(1)
                .and_then(|i| self.vintages.get(i))
                .ok_or_else(|| SimError::Internal(format!("no vintage issued by {issued_at}")))?;
            let to = issued_at + TimeDelta::seconds(self.horizon_secs);
            return v
                .forecast
                .slice(v.forecast.start(), to)
                .ok_or_else(|| SimError::Internal(format!("vintage {} is empty", v.issued_at)));
        }
        let truth = self.truth;
        let step = truth.step_secs();
        let i0 = truth.index_of(issued_at).ok_or_else(|| {
            SimError::Internal(format!("issue time {issued_at} outside the trace"))
        })?;
        // At least the slot in progress, however short the horizon.
        let n = ((self.horizon_secs + step - 1) / step).max(1) as usize;
        let i1 = (i0 + n).min(truth.len());
        let actual = &truth.values()[i0..i1];
        let values: Vec<f64> = match self.model {
            ForecastModel::Perfect => actual.to_vec(),
            ForecastModel::Persistence => {
                // The slot in progress is not observed yet: repeat the last complete day.
                let day = (86_400 / step).max(1) as usize;
                (i0..i1)
                    .map(|j| {
                        let back = day * ((j - i0) / day + 1);
                        truth.values()[j.saturating_sub(back)]
                    })
                    .collect()
            }
            ForecastModel::Noisy { .. } => {
                let lead0 = (truth.slot_start(i0) - issued_at).num_seconds();
                let errs = match &self.noise {
                    Some(m) => m.errors(i0 as u64, i0, lead0, actual.len()),
                    None => vec![0.0; actual.len()],
                };
                actual
                    .iter()
                    .zip(errs)
                    .map(|(a, e)| (a + e).max(0.0))
                    .collect()
            }
            ForecastModel::Vintages => actual.to_vec(),
        };
        Series::new(truth.slot_start(i0), step, values)
            .map_err(|e| SimError::Internal(e.to_string()))
    }

    /// Mean per slot of the UTC day over the trailing history before `issued_at` (complete
    /// slots only). Slots never observed take the history mean; with no history at all the
    /// forecast's own mean stands in. A step that does not divide a day gets one daily mean.
    fn profile(&self, issued_at: DateTime<Utc>, base: &Series) -> DailyProfile {
        let truth = self.truth;
        let step = base.step_secs();
        let (pstep, slots) = if 86_400 % step == 0 {
            (step, (86_400 / step) as usize)
        } else {
            (86_400, 1)
        };
        let from = issued_at - TimeDelta::seconds(self.history_secs);
        let mut sum = vec![0.0; slots];
        let mut cnt = vec![0usize; slots];
        let (mut all, mut n_all) = (0.0, 0usize);
        if let Some(hist) = truth.slice(from, issued_at) {
            for (i, v) in hist.values().iter().enumerate() {
                let s = hist.slot_start(i);
                if s + TimeDelta::seconds(truth.step_secs()) > issued_at {
                    break;
                }
                let sec_of_day = s.num_seconds_from_midnight() as i64;
                let k = ((sec_of_day / pstep) as usize).min(slots - 1);
                sum[k] += v;
                cnt[k] += 1;
                all += v;
                n_all += 1;
            }
        }
        let fallback = if n_all > 0 {
            all / n_all as f64
        } else {
            base.mean()
        };
        let means = sum
            .iter()
            .zip(&cnt)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { fallback })
            .collect();
        DailyProfile {
            step_secs: pstep,
            means,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap()
    }

    fn truth() -> Series {
        Series::new(t0(), 3600, (0..24 * 5).map(|i| i as f64).collect()).unwrap()
    }

    #[test]
    fn persistence_repeats_the_last_observed_day() {
        let s = truth();
        let f = Forecaster::new(
            &s,
            &[],
            ForecastModel::Persistence,
            48 * 3600,
            3600,
            7 * 86_400,
        );
        let at = t0() + TimeDelta::hours(30);
        let b = f.base(at).unwrap();
        assert_eq!(b.start(), at);
        assert_eq!(b.values()[0], 6.0); // slot 30 <- slot 6
        assert_eq!(b.values()[23], 29.0); // slot 53 <- slot 29, the last complete one
        assert_eq!(b.values()[24], 6.0); // slot 54 <- slot 6 again (2 days back)
        assert_eq!(b.len(), 48);
    }

    #[test]
    fn perfect_is_limited_to_the_horizon_and_refreshes_hourly() {
        let s = truth();
        let f = Forecaster::new(&s, &[], ForecastModel::Perfect, 6 * 3600, 3600, 86_400);
        let now = t0() + TimeDelta::minutes(90);
        let issued = f.issue_at(now);
        assert_eq!(issued.issued_at, t0() + TimeDelta::hours(1));
        assert_eq!(issued.next_refresh, Some(t0() + TimeDelta::hours(2)));
        let b = f.base(issued.issued_at).unwrap();
        assert_eq!(b.values(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn cached_forecasts_equal_fresh_ones_up_to_the_deadline() {
        let s = truth();
        for model in [
            ForecastModel::Perfect,
            ForecastModel::Noisy { seed: 9 },
            ForecastModel::Persistence,
        ] {
            let f = Forecaster::new(&s, &[], model, 6 * 3600, 3600, 2 * 86_400);
            let mut cache = ForecastCache::new(30 * 3600);
            for h in [26, 27, 30, 40] {
                let issued = t0() + TimeDelta::hours(h);
                let now = issued + TimeDelta::minutes(20);
                let until = issued + TimeDelta::hours(20);
                let fresh = f.forecast(issued, now, until).unwrap();
                let cached = f.forecast_cached(&mut cache, issued, now, until).unwrap();
                assert_eq!(fresh.start(), cached.start());
                assert_eq!(
                    fresh.values(),
                    &cached.values()[..fresh.len()],
                    "{model:?} {h}"
                );
            }
        }
    }

    #[test]
    fn profile_uses_only_history_before_the_issue() {
        let s = truth();
        let f = Forecaster::new(&s, &[], ForecastModel::Perfect, 6 * 3600, 3600, 2 * 86_400);
        let at = t0() + TimeDelta::hours(72);
        let b = f.base(at).unwrap();
        let p = f.profile(at, &b);
        assert_eq!(p.means.len(), 24);
        // Hour 0 seen on days 1 and 2 (slots 24 and 48) only: history is 2 days.
        assert_eq!(p.means[0], 36.0);
        assert!(p.means.iter().all(|m| *m < 72.0));
    }
}
