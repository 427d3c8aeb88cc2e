//! What the operator is allowed to know at simulated time `t`: the forecast issued at the
//! last refresh before `t`, limited to the horizon, after the observed past its cache keeps
//! ([`Forecaster::view`]); past the horizon the controller's build step plans with its own
//! model (`plan::horizon`), as in the operator. Nothing here may read the truth after the
//! issue time except the `perfect` and `noisy` models, whose point is exactly that.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::noise::NoiseModel;
use super::SimError;
use crate::data::Vintage;
use crate::forecast::cache::merge_history;
use crate::plan::error::ForecastError;
use crate::series::Series;
use crate::timefmt;

/// Which forecast the receding-horizon strategies see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastModel {
    /// The actuals themselves (an upper bound on what forecasting can give).
    Perfect,
    /// Same slot yesterday: the last 24 h of observed history, repeated.
    Persistence,
    /// Actuals plus an error calibrated on real NESO forecasts (see [`super::noise`]),
    /// in GB's grams (`absolute`) or scaled to the zone.
    Noisy { seed: u64, absolute: bool },
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

/// Issued views ([`Forecaster::view`]) kept while jobs that may ask for them are still
/// being simulated.
#[derive(Default)]
pub struct ForecastCache {
    entries: BTreeMap<DateTime<Utc>, Arc<Series>>,
}

impl ForecastCache {
    pub fn new() -> Self {
        Self::default()
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
            ForecastModel::Noisy { seed, absolute } => {
                let scale = if absolute {
                    1.0
                } else {
                    ForecastError::calibrated(truth).scale
                };
                Some(NoiseModel::new(seed, truth.step_secs(), truth.len(), scale))
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

    /// What the operator's forecast cache would hold at a time the forecast issued at
    /// `issued_at` is in force: the observed past (the actuals' complete slots over the
    /// cache's history window before the issue) followed by the model's forecast from the
    /// slot in progress to the horizon. Planning past the horizon is the controller's own
    /// business (`plan::horizon`), exactly as in the operator.
    pub fn view(&self, issued_at: DateTime<Utc>) -> Result<Series, SimError> {
        let base = self.base(issued_at)?;
        let from = issued_at - TimeDelta::seconds(self.history_secs);
        Ok(match self.truth.slice(from, base.start()) {
            Some(past) if past.end() == base.start() && past.step_secs() == base.step_secs() => {
                merge_history(&past, &base, from)
            }
            _ => base,
        })
    }

    /// [`Forecaster::view`], built once per issue and reused by every job and strategy
    /// that asks while it is in force.
    pub fn view_cached(
        &self,
        cache: &mut ForecastCache,
        issued_at: DateTime<Utc>,
    ) -> Result<Arc<Series>, SimError> {
        if let Some(s) = cache.entries.get(&issued_at) {
            return Ok(Arc::clone(s));
        }
        let v = Arc::new(self.view(issued_at)?);
        cache.entries.insert(issued_at, Arc::clone(&v));
        Ok(v)
    }

    /// Whether the forecast is the truth itself (the planner then allows for no error).
    pub fn is_exact(&self) -> bool {
        self.model == ForecastModel::Perfect
    }

    /// The forecast model's name, for the provenance the controller records.
    pub fn name(&self) -> &'static str {
        self.model.name()
    }

    /// The model's own values from the slot in progress at `issued_at` to the horizon.
    fn base(&self, issued_at: DateTime<Utc>) -> Result<Series, SimError> {
        if self.model == ForecastModel::Vintages {
            let k = self.vintages.partition_point(|v| v.issued_at <= issued_at);
            let v = k
                .checked_sub(1)
                .and_then(|i| self.vintages.get(i))
                .ok_or_else(|| {
                    SimError::Internal(format!(
                        "no vintage issued by {}",
                        timefmt::format(issued_at)
                    ))
                })?;
            let to = issued_at + TimeDelta::seconds(self.horizon_secs);
            return v.forecast.slice(v.forecast.start(), to).ok_or_else(|| {
                SimError::Internal(format!("vintage {} is empty", timefmt::format(v.issued_at)))
            });
        }
        let truth = self.truth;
        let step = truth.step_secs();
        let i0 = truth.index_of(issued_at).ok_or_else(|| {
            SimError::Internal(format!(
                "issue time {} outside the trace",
                timefmt::format(issued_at)
            ))
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
    fn the_view_is_the_observed_past_then_the_forecast() {
        let s = truth();
        for model in [
            ForecastModel::Perfect,
            ForecastModel::Noisy {
                seed: 9,
                absolute: false,
            },
            ForecastModel::Persistence,
        ] {
            let f = Forecaster::new(&s, &[], model, 6 * 3600, 3600, 2 * 86_400);
            let mut cache = ForecastCache::new();
            for h in [50, 51, 60, 70] {
                let issued = t0() + TimeDelta::hours(h);
                let v = f.view(issued).unwrap();
                // Two days of actuals before the issue, then the model's six hours.
                assert_eq!(v.start(), issued - TimeDelta::days(2), "{model:?} {h}");
                assert_eq!(v.end(), issued + TimeDelta::hours(6));
                assert_eq!(v.values()[..48], s.values()[h as usize - 48..h as usize]);
                assert_eq!(v.values()[48..], f.base(issued).unwrap().values()[..]);
                assert_eq!(*f.view_cached(&mut cache, issued).unwrap(), v);
                assert_eq!(*f.view_cached(&mut cache, issued).unwrap(), v);
            }
        }
        // Nothing observed before the trace: the forecast alone.
        let f = Forecaster::new(&s, &[], ForecastModel::Perfect, 6 * 3600, 3600, 2 * 86_400);
        assert_eq!(f.view(t0()).unwrap().start(), t0());
    }
}
