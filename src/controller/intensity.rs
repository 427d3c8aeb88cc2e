//! Where the controller gets intensities, and the pure series helpers it plans and accounts
//! with.
//!
//! [`Feed`] is the narrow interface the reconciler needs: the region's series (observed past
//! plus forecast) and a provenance label. The operator implements it with the shared
//! per-region forecast cache (one upstream fetch per region per refresh); `plan -f` and the
//! reconcile tests with a plain [`ForecastSource`].

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::forecast::{ForecastError, ForecastSource};
use crate::series::Series;

/// A region's intensities as the controller uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct Intensities {
    /// Observed past and forecast future, gCO2eq/kWh.
    pub series: Series,
    /// For status and logs, e.g. `embedded (historical replay)`.
    pub provenance: String,
}

/// Source of intensities for the reconciler.
#[async_trait]
pub trait Feed: Send + Sync {
    async fn get(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError>;
}

/// A [`Feed`] straight from a provider, without caching: for `plan -f` and tests.
pub struct SourceFeed(pub Arc<dyn ForecastSource>);

/// The operator's feed: the shared per-region cache (one upstream fetch per region per
/// refresh, history merged in, stale/fallback data labelled in the provenance). A
/// reconcile never waits on upstream longer than [`CacheFeed::WAIT`]: due refreshes run in
/// the background and the last good forecast is planned with meanwhile.
pub struct CacheFeed(pub Arc<crate::forecast::Cache>);

impl CacheFeed {
    /// How long a reconcile waits for a region's first forecast.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(2);
}

#[async_trait]
impl Feed for CacheFeed {
    async fn get(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError> {
        let c = self.0.serve(region, now, Self::WAIT).await?;
        Ok(Arc::new(Intensities {
            series: c.series().clone(),
            provenance: c.provenance(),
        }))
    }
}

/// Provenance label of a forecast.
pub fn provenance(source: &str, historical_replay: bool) -> String {
    if historical_replay {
        format!("{source} (historical replay)")
    } else {
        source.to_string()
    }
}

#[async_trait]
impl Feed for SourceFeed {
    async fn get(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError> {
        let f = self.0.fetch(region, now).await?;
        Ok(Arc::new(Intensities {
            provenance: provenance(&f.source, f.historical_replay),
            series: f.series,
        }))
    }
}

/// The forecast cut to `[now, until)`, extended past its horizon with the mean of the same
/// slot of the day over the whole series (its daily profile): real forecasts reach 24-72 h,
/// deadlines may lie further out. Returns `None` when the series does not cover `now`.
pub fn planning_series(
    series: &Series,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<Series> {
    series.index_of(now)?;
    let step = series.step_secs();
    let until = until.max(now + TimeDelta::seconds(step));
    let cut = series.slice(now, until)?;
    if cut.end() >= until {
        return Some(cut);
    }
    let profile = daily_profile(series);
    let mut values = cut.values().to_vec();
    let mut t = cut.end();
    while t < until {
        values.push(profile_value(&profile, step, t));
        t += TimeDelta::seconds(step);
    }
    Series::new(cut.start(), step, values).ok()
}

/// Mean per slot of the UTC day (`None` for slots the series never covers).
fn daily_profile(series: &Series) -> Vec<Option<f64>> {
    let step = series.step_secs();
    let slots = (86_400 / step).max(1) as usize;
    let mut sum = vec![0.0; slots];
    let mut n = vec![0u32; slots];
    for (i, v) in series.values().iter().enumerate() {
        let k = slot_of_day(series.slot_start(i), step, slots);
        sum[k] += v;
        n[k] += 1;
    }
    sum.iter()
        .zip(&n)
        .map(|(s, &c)| (c > 0).then(|| s / f64::from(c)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|v| v.or(Some(series.mean())))
        .collect()
}

fn slot_of_day(t: DateTime<Utc>, step: i64, slots: usize) -> usize {
    ((t.timestamp().rem_euclid(86_400) / step) as usize).min(slots - 1)
}

fn profile_value(profile: &[Option<f64>], step: i64, t: DateTime<Utc>) -> f64 {
    let k = slot_of_day(t, step, profile.len());
    profile[k].unwrap_or(0.0)
}

/// Most slots [`covering`] adds; beyond that the gap is nonsense, not history to bridge.
const MAX_PAD_SLOTS: i64 = 1_000_000;

/// The series extended to cover `[from, to)`, missing slots at its first or last value.
/// The past a restarted operator must account for (and the run-now baseline window, which
/// starts at creation) may reach before the history a provider still returns; the nearest
/// known value is the best estimate and keeps the ledger moving. Borrowed when the series
/// already covers the interval.
pub fn covering(series: &Series, from: DateTime<Utc>, to: DateTime<Utc>) -> Cow<'_, Series> {
    let (start, end) = (series.start(), series.end());
    if from >= start && to <= end {
        return Cow::Borrowed(series);
    }
    let step = series.step_secs();
    let slots = |a: DateTime<Utc>, b: DateTime<Utc>| {
        let secs = (b - a).num_seconds().max(0);
        (secs + step - 1) / step
    };
    let before = slots(from, start);
    let after = slots(end, to);
    if before + after > MAX_PAD_SLOTS {
        return Cow::Borrowed(series);
    }
    let vals = series.values();
    let first = vals.first().copied().unwrap_or(0.0);
    let last = vals.last().copied().unwrap_or(0.0);
    let mut v = Vec::with_capacity(vals.len() + (before + after) as usize);
    v.resize(before as usize, first);
    v.extend_from_slice(vals);
    v.resize(v.len() + after as usize, last);
    match Series::new(start - TimeDelta::seconds(before * step), step, v) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(series),
    }
}

/// Integral of intensity over `[from, to)` in (g/kWh)·h, like [`Series::integrate`], but
/// total: parts outside the series take its first or last value, as in [`covering`].
pub fn integrate_clamped(series: &Series, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    if to <= from {
        return 0.0;
    }
    covering(series, from, to)
        .integrate(from, to)
        .unwrap_or(0.0)
}

/// Intensity in force at `t`, clamped to the series' ends like [`covering`].
pub fn value_clamped(series: &Series, t: DateTime<Utc>) -> f64 {
    if let Some(v) = series.value_at(t) {
        return v;
    }
    let vals = series.values();
    if t < series.start() {
        vals.first().copied().unwrap_or(0.0)
    } else {
        vals.last().copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
    }

    #[test]
    fn extends_past_the_horizon_with_the_daily_profile() {
        // Two days: hour h has value h (day 1) and h + 10 (day 2): profile mean h + 5.
        let vals: Vec<f64> = (0..48)
            .map(|i| (i % 24) as f64 + if i >= 24 { 10.0 } else { 0.0 })
            .collect();
        let s = Series::new(t(0), 3600, vals).unwrap();
        let p = planning_series(&s, t(40), t(52)).unwrap();
        assert_eq!(p.start(), t(40));
        assert_eq!(p.end(), t(52));
        assert_eq!(p.value_at(t(47)), Some(33.0));
        assert_eq!(p.value_at(t(48)), Some(5.0));
        assert_eq!(p.value_at(t(51)), Some(8.0));
        assert!(planning_series(&s, t(49), t(52)).is_none());
    }

    #[test]
    fn covering_pads_with_the_nearest_values_outside() {
        let s = Series::new(t(1), 3600, vec![100.0, 200.0]).unwrap();
        let c = covering(&s, t(0) + TimeDelta::minutes(30), t(4));
        assert_eq!(c.start(), t(0));
        assert_eq!(c.values(), &[100.0, 100.0, 200.0, 200.0]);
        assert_eq!(
            c.integrate(t(0), t(4)).unwrap(),
            100.0 + 100.0 + 200.0 + 200.0
        );
        assert!(matches!(covering(&s, t(1), t(2)), Cow::Borrowed(_)));
        assert_eq!(
            integrate_clamped(&s, t(0), t(4)),
            100.0 + 100.0 + 200.0 + 200.0
        );
        assert_eq!(integrate_clamped(&s, t(2), t(1)), 0.0);
        assert_eq!(value_clamped(&s, t(9)), 200.0);
    }
}
