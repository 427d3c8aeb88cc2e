//! Where the controller gets intensities, and the pure series helpers it plans and accounts
//! with.
//!
//! [`Feed`] is the narrow interface the reconciler needs: the region's series (observed past
//! plus forecast) and a provenance label. The operator implements it with the shared
//! per-region forecast cache (one upstream fetch per region per refresh); `plan -f` and the
//! reconcile tests with a plain [`ForecastSource`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{MAX_SCHEDULE_SPAN_HOURS, MAX_SCHEDULE_SPAN_SECS};
use crate::forecast::{ForecastError, ForecastSource};
use crate::series::Series;

const DAY_SECS: i64 = 86_400;

/// A region's intensities as the controller uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct Intensities {
    /// Observed past and forecast future, gCO2eq/kWh.
    pub series: Series,
    /// For status and logs, e.g. `embedded (historical replay)`.
    pub provenance: String,
    /// Whether the past of `series` is a record of the region's intensities: false for a
    /// fallback source standing in for a failed primary (it plans, it never accounts).
    pub live_is_record: bool,
    /// The provider's recorded history (its history or actuals endpoint) over a past the
    /// live data does not reach, when it was needed and could be had.
    pub history: Option<Series>,
}

impl Intensities {
    /// Intensities from a provider's live answer alone.
    pub fn live(series: Series, provenance: String) -> Self {
        Self {
            series,
            provenance,
            live_is_record: true,
            history: None,
        }
    }

    /// The series the ledger may integrate the past with, best first: the live past (when
    /// it is a record), then the provider's history.
    pub fn recorded(&self) -> Vec<&Series> {
        let live = self.live_is_record.then_some(&self.series);
        live.into_iter().chain(self.history.as_ref()).collect()
    }
}

/// Source of intensities for the reconciler.
#[async_trait]
pub trait Feed: Send + Sync {
    /// The region's intensities at `now`, with recorded history back to `since` when the
    /// live data does not reach it (best effort: `history` is what could be had).
    async fn get(
        &self,
        region: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
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
        since: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError> {
        let c = self.0.serve(region, now, Self::WAIT).await?;
        let live_is_record = !c.is_stand_in();
        let history = match history_from(since, c.series()) {
            Some(from) => {
                let to = c.series().start();
                self.0.history(region, from, to, now, Self::WAIT).await
            }
            None => None,
        };
        Ok(Arc::new(Intensities {
            series: c.series().clone(),
            provenance: c.provenance(),
            live_is_record,
            history,
        }))
    }
}

/// Where to ask a provider's history from so that it covers `since`: the start of the
/// slot of `live`'s grid that `since` falls in (providers answer whole slots), or `None`
/// when `live` already reaches back to `since`.
pub fn history_from(since: DateTime<Utc>, live: &Series) -> Option<DateTime<Utc>> {
    let start = live.start();
    if since >= start {
        return None;
    }
    let step = live.step_secs().max(1);
    let slots = ((start - since).num_seconds() + step - 1) / step;
    Some(start - TimeDelta::seconds(slots * step))
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
        since: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError> {
        let f = self.0.fetch(region, now).await?;
        let mut i = Intensities::live(f.series, provenance(&f.source, f.historical_replay));
        if let Some(from) = history_from(since, &i.series) {
            i.history = self
                .0
                .history(region, from, i.series.start(), now)
                .await
                .ok();
        }
        Ok(Arc::new(i))
    }
}

/// Most slots of a planning series: one year of hourly slots ([`MAX_SCHEDULE_SPAN_HOURS`],
/// the CRD's cap on how far a deadline may lie) plus the partial slot `now` falls in. A
/// finer forecast over a long span (5-minute data and a deadline months away) is planned
/// on a coarser step instead (see [`planning_series`]); with the planner's own budgets
/// (`src/plan/lagrange.rs`) this bounds the time and memory of one reconcile whatever the
/// spec (docs/benchmarks.md has the figures).
pub const MAX_PLANNING_SLOTS: usize = MAX_SCHEDULE_SPAN_HOURS as usize + 1;

/// The forecast cut to `[now, until)`, extended past its horizon with the mean of the same
/// slot of the day over the whole series (its daily profile): real forecasts reach 24-72 h,
/// deadlines may lie further out. Returns `None` when the series does not cover `now`.
///
/// Bounded whatever `until` says: the span ends at most [`MAX_SCHEDULE_SPAN_SECS`] after
/// `now` (the planner treats a deadline beyond its forecast as one slot at the mean), and
/// when it would take more than [`MAX_PLANNING_SLOTS`] slots of the series' step, it is
/// laid on the smallest multiple of that step that divides a day and fits: each coarse
/// slot is the mean of the slots it covers. Coarse slots are aligned to the series' grid
/// counted from the Unix epoch (UTC midnight for a step that divides a day), not to `now`,
/// so successive reconciles see the same slots and plan the same transitions.
pub fn planning_series(
    series: &Series,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<Series> {
    series.index_of(now)?;
    let step = series.step_secs();
    let until = until
        .min(now + TimeDelta::seconds(MAX_SCHEDULE_SPAN_SECS))
        .max(now + TimeDelta::seconds(step));
    let coarse = planning_step(series, now, until);
    if coarse != step {
        return coarsened(series, now, until, coarse);
    }
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

/// Start of the slot of width `width` (a multiple of the series' step) containing `t`, on
/// the series' grid counted from the epoch.
fn slot_floor(series: &Series, width: i64, t: DateTime<Utc>) -> DateTime<Utc> {
    let phase = series.start().timestamp().rem_euclid(series.step_secs());
    let off = (t.timestamp() - phase).rem_euclid(width);
    // Sub-second parts: `now` need not sit on a whole second.
    let t = t - TimeDelta::nanoseconds(i64::from(t.timestamp_subsec_nanos()));
    t - TimeDelta::seconds(off)
}

/// The step to plan `[now, until)` on: the series' own when it gives at most
/// [`MAX_PLANNING_SLOTS`] slots, else the smallest multiple of it that does (and that
/// divides a day, when the series' step does, so slots keep their hour of the day).
fn planning_step(series: &Series, now: DateTime<Utc>, until: DateTime<Utc>) -> i64 {
    let step = series.step_secs();
    let slots = |width: i64| {
        let span = (until - slot_floor(series, width, now)).num_seconds();
        (span + width - 1) / width
    };
    if slots(step) <= MAX_PLANNING_SLOTS as i64 {
        return step;
    }
    let day_aligned = DAY_SECS % step == 0;
    // Terminates: the span is at most a year, so a day (or the span) fits.
    let most = (until - now).num_seconds() / step + 1;
    (2..=most.max(2))
        .map(|k| step * k)
        .find(|&w| (!day_aligned || DAY_SECS % w == 0) && slots(w) <= MAX_PLANNING_SLOTS as i64)
        .unwrap_or(step * most.max(2))
}

/// `[now, until)` on slots of `width` seconds, each the mean of the series' slots it
/// covers (the daily profile past the series' end). O(coarse slots + series length) when
/// `width` divides a day (the profile part repeats one mean per slot of the day), else
/// O(slots of the series' step in the span).
fn coarsened(
    series: &Series,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    width: i64,
) -> Option<Series> {
    let step = series.step_secs();
    let k = width / step;
    let start = slot_floor(series, width, now);
    let n = ((until - start).num_seconds() + width - 1) / width;
    let profile = daily_profile(series);
    let vals = series.values();
    let len = vals.len() as i64;
    let s0 = series.start().timestamp();
    // Index (in the series' steps) of the first coarse slot's first part; negative when it
    // starts before the series.
    let i0 = (start.timestamp() - s0).div_euclid(step);
    let fine = |i: i64| -> Option<f64> {
        if i < 0 {
            None
        } else if i < len {
            Some(vals[i as usize])
        } else {
            let k = slot_of_day(
                DateTime::from_timestamp(s0 + i * step, 0)?,
                step,
                profile.len(),
            );
            Some(profile[k].unwrap_or(0.0))
        }
    };
    let per_day = (DAY_SECS % width == 0).then(|| (DAY_SECS / width) as usize);
    let mut profile_means: Vec<Option<f64>> = vec![None; per_day.unwrap_or(0)];
    let mut values = Vec::with_capacity(usize::try_from(n).ok()?);
    for j in 0..n {
        let first = i0 + j * k;
        let of_day = per_day
            .map(|d| ((start.timestamp() + j * width).rem_euclid(DAY_SECS) / width) as usize % d);
        let cached = of_day.filter(|_| first >= len);
        if let Some(m) = cached.and_then(|i| profile_means[i]) {
            values.push(m);
            continue;
        }
        let (mut sum, mut count) = (0.0, 0u32);
        for v in (first..first + k).filter_map(fine) {
            sum += v;
            count += 1;
        }
        // The first slot may start before the series, but it holds `now`'s slot.
        let mean = if count > 0 {
            sum / f64::from(count)
        } else {
            series.mean()
        };
        if let Some(i) = cached {
            profile_means[i] = Some(mean);
        }
        values.push(mean);
    }
    Series::new(start, width, values).ok()
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
    // Slots the series never covers take its mean, computed once (it is O(length), and a
    // day of one-minute slots has 1,440 of them).
    let mean = n.contains(&0).then(|| series.mean());
    sum.iter()
        .zip(&n)
        .map(|(s, &c)| if c > 0 { Some(s / f64::from(c)) } else { mean })
        .collect()
}

fn slot_of_day(t: DateTime<Utc>, step: i64, slots: usize) -> usize {
    ((t.timestamp().rem_euclid(86_400) / step) as usize).min(slots - 1)
}

fn profile_value(profile: &[Option<f64>], step: i64, t: DateTime<Utc>) -> f64 {
    let k = slot_of_day(t, step, profile.len());
    profile[k].unwrap_or(0.0)
}

/// Integral of intensity over `[from, to)` in (g/kWh)·h, like [`Series::integrate`], but
/// total: parts outside the series take its first or last value. For plans (`plan -f`),
/// never for the ledger, which integrates recorded intensities only.
/// Allocation-free (it is called once per planned run, and a plan may have thousands).
pub fn integrate_clamped(series: &Series, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    if to <= from {
        return 0.0;
    }
    let (start, end) = (series.start(), series.end());
    let vals = series.values();
    let first = vals.first().copied().unwrap_or(0.0);
    let last = vals.last().copied().unwrap_or(0.0);
    let hours =
        |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_milliseconds().max(0) as f64 / 3_600_000.0;
    let before = first * hours(from, to.min(start));
    let after = last * hours(from.max(end), to);
    let (a, b) = (from.max(start), to.min(end));
    let inside = if a < b {
        series.integrate(a, b).unwrap_or(0.0)
    } else {
        0.0
    };
    before + inside + after
}

/// Intensity in force at `t`, clamped to the series' ends (for display).
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
    fn hourly_planning_over_a_year_keeps_its_step() {
        let s = Series::new(t(0), 3600, vec![100.0; 24 * 10]).unwrap();
        let now = t(24 * 7) + TimeDelta::minutes(30);
        let p = planning_series(&s, now, now + TimeDelta::hours(8784)).unwrap();
        assert_eq!(p.step_secs(), 3600);
        assert_eq!(p.len(), MAX_PLANNING_SLOTS);
        assert_eq!(p.start(), t(24 * 7));
        // A deadline further out (never from a valid spec) is cut at the cap.
        let p = planning_series(&s, now, now + TimeDelta::days(20_000)).unwrap();
        assert_eq!(p.len(), MAX_PLANNING_SLOTS);
        assert!(p.end() >= now + TimeDelta::hours(8784));
    }

    #[test]
    fn fine_steps_over_long_spans_are_planned_on_coarser_slots() {
        // Ten days of one-minute data (seven of history), minute m of the day valued m.
        let start = t(0);
        let vals: Vec<f64> = (0..10 * 1440).map(|i| (i % 1440) as f64).collect();
        let s = Series::new(start, 60, vals).unwrap();
        let now = t(24 * 7) + TimeDelta::seconds(17 * 60 + 29);

        // Within MAX_PLANNING_SLOTS minutes: unchanged.
        let p = planning_series(&s, now, now + TimeDelta::days(5)).unwrap();
        assert_eq!(p.step_secs(), 60);

        let p = planning_series(&s, now, now + TimeDelta::hours(8784)).unwrap();
        assert!(p.len() <= MAX_PLANNING_SLOTS, "{} slots", p.len());
        // The smallest multiple of a minute that divides a day and fits a year in 8785
        // slots: 3600 s (the next smaller divisor of a day, 2880 s, takes 10,980).
        assert_eq!(p.step_secs(), 3600);
        assert_eq!(p.start(), t(24 * 7));
        assert!(p.end() >= now + TimeDelta::hours(8784));
        // Each coarse slot is the mean of its minutes: hour h holds minutes 60h..60h+59.
        assert_eq!(p.value_at(now), Some(29.5));
        assert_eq!(p.value_at(t(24 * 7 + 5)), Some(329.5));
        // Past the series' end, the daily profile (the same minute values), hour by hour.
        assert_eq!(p.value_at(t(24 * 300 + 13)), Some(809.5));

        // Slots are fixed in time, not to `now`: a later `now` in the same hour, or the
        // next hour, sees the same boundaries and values.
        let later = planning_series(
            &s,
            now + TimeDelta::minutes(20),
            now + TimeDelta::hours(8784),
        )
        .unwrap();
        assert_eq!(later.start(), p.start());
        assert_eq!(later.values()[..100], p.values()[..100]);
        let next =
            planning_series(&s, now + TimeDelta::hours(1), now + TimeDelta::hours(8785)).unwrap();
        assert_eq!(next.start(), t(24 * 7 + 1));
        assert_eq!(next.values()[..100], p.values()[1..101]);
    }

    #[test]
    fn a_step_that_does_not_divide_a_day_still_fits() {
        let s = Series::new(t(0), 420, vec![50.0; 2000]).unwrap();
        let now = t(24);
        let p = planning_series(&s, now, now + TimeDelta::hours(8784)).unwrap();
        assert!(p.len() <= MAX_PLANNING_SLOTS, "{} slots", p.len());
        assert_eq!(p.step_secs() % 420, 0);
        assert!(p.end() >= now + TimeDelta::hours(8784));
        assert!(p.values().iter().all(|&v| v == 50.0));
    }

    #[test]
    fn history_is_asked_from_the_slot_since_falls_in() {
        let live = Series::new(t(5), 3600, vec![1.0; 3]).unwrap();
        assert_eq!(history_from(t(5), &live), None);
        assert_eq!(history_from(t(6), &live), None);
        assert_eq!(history_from(t(2), &live), Some(t(2)));
        let mid = t(2) + TimeDelta::minutes(37);
        assert_eq!(history_from(mid, &live), Some(t(2)));
    }

    #[test]
    fn clamped_integrals_take_the_nearest_values_outside() {
        let s = Series::new(t(1), 3600, vec![100.0, 200.0]).unwrap();
        assert_eq!(
            integrate_clamped(&s, t(0), t(4)),
            100.0 + 100.0 + 200.0 + 200.0
        );
        assert_eq!(integrate_clamped(&s, t(2), t(1)), 0.0);
        // Partly or wholly outside, and far outside (no padding is allocated).
        assert_eq!(
            integrate_clamped(&s, t(0) + TimeDelta::minutes(30), t(2)),
            50.0 + 100.0
        );
        assert_eq!(integrate_clamped(&s, t(5), t(7)), 400.0);
        assert_eq!(integrate_clamped(&s, t(-3), t(0)), 300.0);
        assert_eq!(
            integrate_clamped(&s, t(0), t(24 * 365 * 200)),
            100.0 + 100.0 + 200.0 * (24.0 * 365.0 * 200.0 - 2.0)
        );
        assert_eq!(value_clamped(&s, t(9)), 200.0);
    }
}
