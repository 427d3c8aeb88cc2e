//! Planning past the end of a forecast: real forecasts reach 24-72 h, deadlines may lie
//! further out. Beyond the horizon the planner uses the region's historical profile.
//!
//! The profile is the mean intensity per slot of the UTC day: grids' diurnal cycle (solar
//! at noon, evening peaks) is their most predictable feature, so it is the best cheap
//! prior for days no forecast reaches. It only has to rank far-future hours roughly: the
//! operator re-plans whenever a fresher forecast arrives, and only the near part of a plan
//! is ever executed.

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{MAX_SCHEDULE_SPAN_HOURS, MAX_SCHEDULE_SPAN_SECS};
use crate::series::Series;

const DAY_SECS: i64 = 86_400;

/// Mean intensity per slot of the day (UTC), learnt from a series.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyProfile {
    /// Slot length in seconds; `means.len() * step_secs == 86_400`.
    pub step_secs: i64,
    pub means: Vec<f64>,
}

impl DailyProfile {
    /// The mean of `series` per slot of the UTC day, on the largest step that divides a
    /// day and is at most the series' own (so a 7-minute series gets 400 s slots). Each
    /// value is spread over the slots it overlaps, weighted by the overlap; slots the
    /// series never covers (less than a day of data) take its overall mean.
    pub fn of(series: &Series) -> Self {
        let step_secs = profile_step(series.step_secs());
        let slots = (DAY_SECS / step_secs) as usize;
        let mut sums = vec![0.0; slots];
        let mut weights = vec![0.0; slots];
        let hs = series.step_secs();
        let first = series.start().timestamp().rem_euclid(DAY_SECS);
        let step_of_day = hs.rem_euclid(DAY_SECS);
        let mut start = first;
        for &v in series.values() {
            let mut pos = start;
            start = (start + step_of_day) % DAY_SECS;
            let mut left = hs.min(DAY_SECS);
            while left > 0 {
                let slot = (pos / step_secs) as usize;
                let take = (step_secs - pos % step_secs).min(left);
                sums[slot] += v * take as f64;
                weights[slot] += take as f64;
                pos = (pos + take) % DAY_SECS;
                left -= take;
            }
        }
        let fill = if weights.contains(&0.0) {
            series.mean()
        } else {
            0.0
        };
        let means = sums
            .iter()
            .zip(&weights)
            .map(|(s, &w)| if w > 0.0 { s / w } else { fill })
            .collect();
        DailyProfile { step_secs, means }
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

/// The largest step that divides a day and is at most `step` (1 s at least).
fn profile_step(step: i64) -> i64 {
    let step = step.clamp(1, DAY_SECS);
    (1..=step).rev().find(|d| DAY_SECS % d == 0).unwrap_or(1)
}

/// Most slots of a planning series: one year of hourly slots ([`MAX_SCHEDULE_SPAN_HOURS`],
/// the CRD's cap on how far a deadline may lie) plus the partial slot `now` falls in. A
/// finer forecast over a long span (5-minute data and a deadline months away) is planned
/// on a coarser step instead (see [`planning_series`]); with the planner's own budgets
/// (`src/plan/lagrange.rs`) this bounds the time and memory of one reconcile whatever the
/// spec (docs/benchmarks.md has the figures).
pub const MAX_PLANNING_SLOTS: usize = MAX_SCHEDULE_SPAN_HOURS as usize + 1;

/// The forecast cut to `[now, until)`, extended past its horizon with `profile` (see
/// [`DailyProfile::of`]): real forecasts reach 24-72 h, deadlines may lie further out.
/// The one beyond-horizon model: the operator, `plan -f` and `simulate` all plan with it
/// (through the controller's build step). Returns `None` when the series does not cover `now`.
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
    profile: &DailyProfile,
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
        return coarsened(series, profile, now, until, coarse);
    }
    let cut = series.slice(now, until)?;
    if cut.end() >= until {
        return Some(cut);
    }
    let mut values = cut.values().to_vec();
    let mut t = cut.end();
    while t < until {
        values.push(profile.mean_over(t, step));
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
    profile: &DailyProfile,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    width: i64,
) -> Option<Series> {
    let step = series.step_secs();
    let k = width / step;
    let start = slot_floor(series, width, now);
    let n = ((until - start).num_seconds() + width - 1) / width;
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
            Some(profile.mean_over(DateTime::from_timestamp(s0 + i * step, 0)?, step))
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
    }

    /// Planned as the controller plans: the profile of the series itself.
    fn plan(s: &Series, now: DateTime<Utc>, until: DateTime<Utc>) -> Option<Series> {
        planning_series(s, &DailyProfile::of(s), now, until)
    }

    #[test]
    fn the_profile_is_the_mean_per_slot_of_the_day() {
        // Three days, hourly: hour h is 20 + h plus a day offset that averages out.
        let vals: Vec<f64> = (0..72)
            .map(|i| 20.0 + (i % 24) as f64 + [10.0, -10.0, 0.0][i / 24])
            .collect();
        let p = DailyProfile::of(&Series::new(t(0), 3600, vals).unwrap());
        assert_eq!((p.step_secs, p.means.len()), (3600, 24));
        for h in 0..24 {
            assert!((p.means[h] - 20.0 - h as f64).abs() < 1e-9);
        }
        // Less than a day: the slots never seen take the mean.
        let short = DailyProfile::of(&Series::new(t(0), 3600, vec![10.0, 20.0]).unwrap());
        assert_eq!(
            (short.means[0], short.means[1], short.means[5]),
            (10.0, 20.0, 15.0)
        );
        // A step that does not divide a day: the largest one that does below it.
        let odd = DailyProfile::of(&Series::new(t(0), 420, vec![7.0; 300]).unwrap());
        assert_eq!(odd.step_secs, 400);
        assert!(odd.means.iter().all(|&m| (m - 7.0).abs() < 1e-9));
    }

    #[test]
    fn mean_over_wraps_midnight() {
        let p = DailyProfile {
            step_secs: 43_200,
            means: vec![100.0, 300.0],
        };
        let at = t(18);
        assert!((p.mean_over(at, 12 * 3600) - 200.0).abs() < 1e-9);
        assert!((p.mean_over(at, 3 * DAY_SECS) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn extends_past_the_horizon_with_the_daily_profile() {
        // Two days: hour h has value h (day 1) and h + 10 (day 2): profile mean h + 5.
        let vals: Vec<f64> = (0..48)
            .map(|i| (i % 24) as f64 + if i >= 24 { 10.0 } else { 0.0 })
            .collect();
        let s = Series::new(t(0), 3600, vals).unwrap();
        let p = plan(&s, t(40), t(52)).unwrap();
        assert_eq!(p.start(), t(40));
        assert_eq!(p.end(), t(52));
        assert_eq!(p.value_at(t(47)), Some(33.0));
        assert_eq!(p.value_at(t(48)), Some(5.0));
        assert_eq!(p.value_at(t(51)), Some(8.0));
        assert!(plan(&s, t(49), t(52)).is_none());
    }

    #[test]
    fn hourly_planning_over_a_year_keeps_its_step() {
        let s = Series::new(t(0), 3600, vec![100.0; 24 * 10]).unwrap();
        let now = t(24 * 7) + TimeDelta::minutes(30);
        let p = plan(&s, now, now + TimeDelta::hours(8784)).unwrap();
        assert_eq!(p.step_secs(), 3600);
        assert_eq!(p.len(), MAX_PLANNING_SLOTS);
        assert_eq!(p.start(), t(24 * 7));
        // A deadline further out (never from a valid spec) is cut at the cap.
        let p = plan(&s, now, now + TimeDelta::days(20_000)).unwrap();
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
        let p = plan(&s, now, now + TimeDelta::days(5)).unwrap();
        assert_eq!(p.step_secs(), 60);

        let p = plan(&s, now, now + TimeDelta::hours(8784)).unwrap();
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
        let later = plan(
            &s,
            now + TimeDelta::minutes(20),
            now + TimeDelta::hours(8784),
        )
        .unwrap();
        assert_eq!(later.start(), p.start());
        assert_eq!(later.values()[..100], p.values()[..100]);
        let next = plan(&s, now + TimeDelta::hours(1), now + TimeDelta::hours(8785)).unwrap();
        assert_eq!(next.start(), t(24 * 7 + 1));
        assert_eq!(next.values()[..100], p.values()[1..101]);
    }

    #[test]
    fn a_step_that_does_not_divide_a_day_still_fits() {
        let s = Series::new(t(0), 420, vec![50.0; 2000]).unwrap();
        let now = t(24);
        let p = plan(&s, now, now + TimeDelta::hours(8784)).unwrap();
        assert!(p.len() <= MAX_PLANNING_SLOTS, "{} slots", p.len());
        assert_eq!(p.step_secs() % 420, 0);
        assert!(p.end() >= now + TimeDelta::hours(8784));
        assert!(p.values().iter().all(|&v| v == 50.0));
    }
}
