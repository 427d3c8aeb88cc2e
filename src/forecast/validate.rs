//! Validation and repair of raw provider data before anything plans on it.
//!
//! Every provider parses its payload into [`RawPoint`]s (timestamp + possibly-missing value,
//! already converted to gCO2eq/kWh) and hands them to [`normalise`], so the same rules apply
//! whichever API the numbers came from. The guiding principle: a bad number must never be
//! read as a clean grid. A zero from an outage would make the planner run everything "now";
//! so missing, negative and outage-shaped values become *gaps*, and gaps are either repaired
//! by a small, documented rule or cut off / rejected.
//!
//! Rules, in the order they are applied (also in `docs/forecast-sources.md`):
//!
//! 1. **Missing values**: `null`, NaN, infinities and negative numbers are treated as gaps.
//! 2. **Wrong units**: any value above [`MAX_PLAUSIBLE`] gCO2eq/kWh (no real grid exceeds
//!    ~1,100; coal plants alone reach ~1,000) rejects the whole forecast: such values mean
//!    a unit mix-up (e.g. lbs/MWh read as g/kWh), which taints every point, not one.
//! 3. **All zero**: a series whose present values are all exactly zero is rejected: no grid
//!    is exactly carbon-free every hour; that is a provider outage.
//! 4. **Outage drops**: when the median is at least [`DROP_MEDIAN_MIN`] g/kWh, values below
//!    `max(1, 5 % of the median)` are outage artefacts and become gaps. Zones that are
//!    legitimately near zero (hydro CA-QC, nuclear/hydro FR at night) have a low median, so
//!    their small values are kept; the rule only fires when a value is implausibly far below
//!    what the same series says is normal.
//! 5. **Order and duplicates**: points are sorted by time; for a duplicated timestamp the
//!    *last* point in the payload wins (providers append revisions).
//! 6. **Step**: the declared step (when the API states one) or else the smallest spacing
//!    between consecutive points. It must be at least 60 s and every spacing must be a whole
//!    multiple of it, else the forecast is rejected (misaligned timestamps). A spacing that
//!    occurs repeatedly in the payload is a *native* step of that part of the series (mixed
//!    steps, e.g. hourly then 15-minute): its value holds for the whole spacing, i.e. the
//!    series is resampled to the smallest step. A spacing seen only once, larger than the
//!    step, is a gap.
//! 7. **Gaps**: a gap of at most [`MAX_FILLED_GAP_SECS`] (or a single slot, if the step is
//!    longer) is filled by linear interpolation between its neighbours. A longer gap cuts
//!    the series: only the contiguous run containing `now` is kept (or, if `now` lies in the
//!    gap, the forecast is rejected). Leading and trailing gaps are trimmed.
//! 8. **Too many gaps**: if more than half the slots were missing, the forecast is rejected.
//! 9. **Coverage**: the result must cover `now`. A forecast that starts at most one step
//!    after `now` (APIs that start at the next whole hour) has its first value extended back
//!    to the slot containing `now`; otherwise it is rejected. A forecast that ends before
//!    `now` is rejected ("does not reach now").
//!
//! Recorded data (a provider's history endpoint, [`normalise_history`]) passes rules 1 to 8
//! alike; in place of rule 9 it keeps the slots overlapping the span asked for and, where a
//! long gap cuts them, the longest run. It is never extended: past data covers what the
//! provider recorded, no more.

use chrono::{DateTime, TimeDelta, Utc};

use super::ForecastError;
use crate::series::Series;
use crate::timefmt;

/// Above this many gCO2eq/kWh a value can only be a unit error.
pub const MAX_PLAUSIBLE: f64 = 2500.0;
/// The outage-drop rule only applies to series whose median is at least this.
pub const DROP_MEDIAN_MIN: f64 = 20.0;
/// Longest gap filled by interpolation.
pub const MAX_FILLED_GAP_SECS: i64 = 3600;
/// Smallest step accepted (the e2e tests use 1-minute data).
pub const MIN_STEP_SECS: i64 = 60;

/// One data point as the provider gave it, already in gCO2eq/kWh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawPoint {
    /// Start of the interval the value applies to.
    pub timestamp: DateTime<Utc>,
    pub value: Option<f64>,
}

impl RawPoint {
    pub fn new(timestamp: DateTime<Utc>, value: Option<f64>) -> Self {
        Self { timestamp, value }
    }
}

/// A repair applied to the data; logged so operators can see what was fixed.
#[derive(Debug, Clone, PartialEq)]
pub enum Repair {
    Sorted,
    DuplicatesDropped(usize),
    MissingValues(usize),
    OutageDrops(usize),
    GapsInterpolated(usize),
    /// The series was cut at a long gap; the kept run is given.
    Truncated {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    ExtendedBackToNow,
}

/// The validated series and the repairs made to get it.
#[derive(Debug, Clone)]
pub struct Normalised {
    pub series: Series,
    pub repairs: Vec<Repair>,
}

/// Applies the module's rules to `points` (see the module doc). `declared_step_secs` is the
/// provider's own statement of the step, if it has one.
pub fn normalise(
    provider: &str,
    points: Vec<RawPoint>,
    declared_step_secs: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Normalised, ForecastError> {
    if points.is_empty() {
        return Err(invalid(provider, "no data points".into()));
    }
    let grid = grid(provider, points, declared_step_secs)?;
    // Rule 9: the run containing now, or the one starting within a step after now.
    let step = TimeDelta::seconds(grid.step);
    let chosen = grid.runs.iter().copied().find(|(a, b)| {
        let (s, e) = (grid.time(*a), grid.time(*b));
        (s <= now && now < e) || (s > now && s - now <= step)
    });
    let Some((a, b)) = chosen else {
        let end = grid.runs.last().map(|(_, b)| grid.time(*b));
        let first = grid.runs.first().map(|(a, _)| grid.time(*a));
        let detail = match (first, end) {
            (_, Some(e)) if e <= now => {
                format!("forecast ends at {}, before now", timefmt::format(e))
            }
            (Some(s), _) if s > now => {
                format!("forecast starts at {}, after now", timefmt::format(s))
            }
            _ => format!(
                "no usable data around now ({}): a long gap",
                timefmt::format(now)
            ),
        };
        return Err(invalid(provider, detail));
    };
    // Extend the first value back over whole steps until now is covered.
    let behind = (grid.time(a) - now).num_seconds().max(0);
    let front = ((behind + grid.step - 1) / grid.step) as usize;
    let truncated = grid.runs.len() > 1;
    grid.take(provider, (a, b), truncated, front)
}

/// The same rules for recorded data of `[from, to)`, which lies in the past: instead of
/// rule 9, the slots overlapping `[from, to)` are kept and, if long gaps cut them, the
/// longest run (the earliest of equally long ones). Nothing is extended or invented, so the
/// series may cover less than asked. No points, or none overlapping the span, is
/// [`ForecastError::Unavailable`]: the provider has no data there.
pub fn normalise_history(
    provider: &str,
    points: Vec<RawPoint>,
    declared_step_secs: Option<i64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Normalised, ForecastError> {
    let none = || ForecastError::Unavailable {
        provider: provider.to_string(),
        detail: format!(
            "the provider has no data for {} .. {}",
            timefmt::format(from),
            timefmt::format(to)
        ),
    };
    if points.is_empty() {
        return Err(none());
    }
    let grid = grid(provider, points, declared_step_secs)?;
    let (lo, hi) = (grid.index(from, false), grid.index(to, true));
    let clipped: Vec<(usize, usize)> = grid
        .runs
        .iter()
        .map(|(a, b)| ((*a).max(lo), (*b).min(hi)))
        .filter(|(a, b)| a < b)
        .collect();
    let longest = clipped
        .iter()
        .copied()
        .max_by(|x, y| (x.1 - x.0).cmp(&(y.1 - y.0)).then(y.0.cmp(&x.0)))
        .ok_or_else(none)?;
    grid.take(provider, longest, clipped.len() > 1, 0)
}

fn invalid(provider: &str, detail: String) -> ForecastError {
    ForecastError::Invalid {
        provider: provider.to_string(),
        detail,
    }
}

/// The points laid on a grid of `step` from `start` after rules 1 to 8: every slot present
/// or filled, or missing; `runs` are the `[a, b)` ranges of present-or-filled slots.
struct Grid {
    start: DateTime<Utc>,
    step: i64,
    slots: Vec<Option<f64>>,
    runs: Vec<(usize, usize)>,
    repairs: Vec<Repair>,
}

impl Grid {
    fn time(&self, k: usize) -> DateTime<Utc> {
        self.start + TimeDelta::seconds(self.step * k as i64)
    }

    /// The slot containing `t` (`up`: the first slot starting at or after `t`), clamped to
    /// the grid.
    fn index(&self, t: DateTime<Utc>, up: bool) -> usize {
        let d = (t - self.start).num_seconds();
        let k = d.div_euclid(self.step) + i64::from(up && d.rem_euclid(self.step) > 0);
        k.clamp(0, self.slots.len() as i64) as usize
    }

    /// The series of the run `[a, b)`, its first value repeated `front` slots earlier.
    fn take(
        mut self,
        provider: &str,
        (a, b): (usize, usize),
        truncated: bool,
        front: usize,
    ) -> Result<Normalised, ForecastError> {
        if truncated {
            self.repairs.push(Repair::Truncated {
                start: self.time(a),
                end: self.time(b),
            });
        }
        let mut values: Vec<f64> = vec![self.slots[a].unwrap_or(0.0); front];
        values.extend(self.slots[a..b].iter().map(|v| v.unwrap_or(0.0)));
        if front > 0 {
            self.repairs.push(Repair::ExtendedBackToNow);
        }
        let start = self.time(a) - TimeDelta::seconds(self.step * front as i64);
        let series =
            Series::new(start, self.step, values).map_err(|e| invalid(provider, e.to_string()))?;
        Ok(Normalised {
            series,
            repairs: self.repairs,
        })
    }
}

/// Rules 1 to 8 (see the module doc); `points` is not empty.
fn grid(
    provider: &str,
    points: Vec<RawPoint>,
    declared_step_secs: Option<i64>,
) -> Result<Grid, ForecastError> {
    let invalid = |detail: String| invalid(provider, detail);
    let mut repairs = Vec::new();

    // Rule 1 + 2: missing and implausible values.
    let mut missing = 0usize;
    let mut pts: Vec<RawPoint> = Vec::with_capacity(points.len());
    for p in points {
        let value = match p.value {
            Some(v) if v.is_finite() && v >= 0.0 => {
                if v > MAX_PLAUSIBLE {
                    return Err(invalid(format!(
                        "value {v} at {} exceeds {MAX_PLAUSIBLE} gCO2eq/kWh: wrong units?",
                        p.timestamp
                    )));
                }
                Some(v)
            }
            _ => {
                missing += 1;
                None
            }
        };
        pts.push(RawPoint::new(p.timestamp, value));
    }
    if missing > 0 {
        repairs.push(Repair::MissingValues(missing));
    }

    // Rule 3: all zero.
    let present: Vec<f64> = pts.iter().filter_map(|p| p.value).collect();
    if present.is_empty() {
        return Err(invalid("every value is null or invalid".into()));
    }
    if present.iter().all(|v| *v == 0.0) {
        return Err(invalid(
            "every value is zero: a provider outage, not a carbon-free grid".into(),
        ));
    }

    // Rule 4: outage drops relative to the series' own median.
    let med = median(&present);
    if med >= DROP_MEDIAN_MIN {
        let floor = (0.05 * med).max(1.0);
        let mut drops = 0;
        for p in pts.iter_mut() {
            if matches!(p.value, Some(v) if v < floor) {
                p.value = None;
                drops += 1;
            }
        }
        if drops > 0 {
            repairs.push(Repair::OutageDrops(drops));
        }
    }

    // Rule 5: sort, last duplicate wins. A stable sort keeps payload order among equal
    // timestamps, so keeping the last of each run keeps the last one sent.
    if pts.windows(2).any(|w| w[0].timestamp > w[1].timestamp) {
        repairs.push(Repair::Sorted);
    }
    pts.sort_by_key(|p| p.timestamp);
    let before = pts.len();
    let mut dedup: Vec<RawPoint> = Vec::with_capacity(pts.len());
    for p in pts {
        match dedup.last_mut() {
            Some(last) if last.timestamp == p.timestamp => *last = p,
            _ => dedup.push(p),
        }
    }
    if dedup.len() < before {
        repairs.push(Repair::DuplicatesDropped(before - dedup.len()));
    }
    let pts = dedup;

    // Rule 6: the step.
    let diffs: Vec<i64> = pts
        .windows(2)
        .map(|w| (w[1].timestamp - w[0].timestamp).num_seconds())
        .collect();
    let step = match declared_step_secs {
        Some(s) => s,
        None => diffs.iter().copied().min().unwrap_or(3600),
    };
    if step < MIN_STEP_SECS {
        return Err(invalid(format!(
            "step of {step}s is below the {MIN_STEP_SECS}s minimum"
        )));
    }
    if let Some(d) = diffs.iter().find(|d| **d % step != 0) {
        return Err(invalid(format!(
            "timestamps are not aligned to a {step}s step (a spacing of {d}s)"
        )));
    }
    let mut counts: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for d in &diffs {
        *counts.entry(*d).or_default() += 1;
    }
    let native = |d: i64| d == step || counts.get(&d).copied().unwrap_or(0) >= 2;

    // Lay the points on a grid of `step`; a native spacing repeats the value (step
    // function), anything else leaves missing slots.
    let start = pts[0].timestamp;
    let mut slots: Vec<Option<f64>> = Vec::new();
    for (i, p) in pts.iter().enumerate() {
        let span = diffs.get(i).copied().unwrap_or_else(|| {
            // The last point holds for the step it was sampled at.
            diffs.last().copied().filter(|d| native(*d)).unwrap_or(step)
        });
        let covered = if native(span) {
            span
        } else {
            // A one-off larger spacing: the point covers the step of the run it ends.
            diffs
                .get(i.wrapping_sub(1))
                .copied()
                .filter(|d| native(*d) && *d <= span)
                .unwrap_or(step)
        };
        let k_covered = (covered / step) as usize;
        let k_span = (span / step) as usize;
        slots.extend(std::iter::repeat_n(p.value, k_covered));
        slots.extend(std::iter::repeat_n(None, k_span.saturating_sub(k_covered)));
    }

    // Rule 8 is measured over the whole payload, before trimming hides missing slots.
    let total_missing = slots.iter().filter(|v| v.is_none()).count();
    if total_missing * 2 > slots.len() {
        return Err(invalid(format!(
            "{total_missing} of {} slots are missing or invalid",
            slots.len()
        )));
    }

    // Rule 7: fill short gaps, cut at long ones.
    let max_fill = ((MAX_FILLED_GAP_SECS / step) as usize).max(1);
    let mut runs: Vec<(usize, usize)> = Vec::new(); // [a, b) of present-or-filled slots
    let mut filled = 0usize;
    let mut i = 0;
    let mut run_start: Option<usize> = None;
    while i < slots.len() {
        if slots[i].is_some() {
            if run_start.is_none() {
                run_start = Some(i);
            }
            i += 1;
            continue;
        }
        let gap_start = i;
        while i < slots.len() && slots[i].is_none() {
            i += 1;
        }
        let gap_len = i - gap_start;
        let interior = gap_start > 0 && i < slots.len();
        if interior && gap_len <= max_fill {
            // Both neighbours exist and are present (gaps are maximal runs of None).
            let a = slots[gap_start - 1].unwrap_or(0.0);
            let b = slots[i].unwrap_or(0.0);
            for j in 0..gap_len {
                let f = (j + 1) as f64 / (gap_len + 1) as f64;
                slots[gap_start + j] = Some(a + (b - a) * f);
            }
            filled += 1;
        } else if let Some(rs) = run_start.take() {
            runs.push((rs, gap_start));
        }
    }
    if let Some(rs) = run_start {
        runs.push((rs, slots.len()));
    }
    if filled > 0 {
        repairs.push(Repair::GapsInterpolated(filled));
    }
    Ok(Grid {
        start,
        step,
        slots,
        runs,
        repairs,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(m: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + TimeDelta::minutes(m)
    }

    fn hourly(values: &[Option<f64>]) -> Vec<RawPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| RawPoint::new(t(60 * i as i64), *v))
            .collect()
    }

    fn run(points: Vec<RawPoint>, now: DateTime<Utc>) -> Result<Normalised, ForecastError> {
        normalise("test", points, None, now)
    }

    #[test]
    fn clean_series_passes_untouched() {
        let n = run(hourly(&[Some(100.0), Some(200.0), Some(300.0)]), t(30)).unwrap();
        assert_eq!(n.series.values(), &[100.0, 200.0, 300.0]);
        assert_eq!(n.series.step_secs(), 3600);
        assert!(n.repairs.is_empty());
    }

    #[test]
    fn single_null_is_interpolated() {
        let n = run(hourly(&[Some(100.0), None, Some(300.0)]), t(0)).unwrap();
        assert_eq!(n.series.values(), &[100.0, 200.0, 300.0]);
        assert!(n.repairs.contains(&Repair::GapsInterpolated(1)));
    }

    #[test]
    fn isolated_zero_amid_large_values_is_an_outage() {
        let n = run(
            hourly(&[Some(300.0), Some(0.0), Some(320.0), Some(310.0)]),
            t(0),
        )
        .unwrap();
        assert_eq!(n.series.values(), &[300.0, 310.0, 320.0, 310.0]);
        assert!(n.repairs.contains(&Repair::OutageDrops(1)));
    }

    #[test]
    fn near_zero_hydro_zone_is_kept() {
        let vals = [Some(1.2), Some(0.0), Some(2.0), Some(1.5)];
        let n = run(hourly(&vals), t(0)).unwrap();
        assert_eq!(n.series.values(), &[1.2, 0.0, 2.0, 1.5]);
    }

    #[test]
    fn all_zero_and_unit_errors_are_rejected() {
        let e = run(hourly(&[Some(0.0), Some(0.0)]), t(0)).unwrap_err();
        assert!(e.to_string().contains("every value is zero"), "{e}");
        let e = run(hourly(&[Some(900.0), Some(4000.0)]), t(0)).unwrap_err();
        assert!(e.to_string().contains("wrong units"), "{e}");
        let e = run(hourly(&[None, None]), t(0)).unwrap_err();
        assert_eq!(e.kind(), "invalid");
    }

    #[test]
    fn unsorted_and_duplicated_timestamps_are_repaired() {
        let pts = vec![
            RawPoint::new(t(120), Some(3.0 * 100.0)),
            RawPoint::new(t(0), Some(100.0)),
            RawPoint::new(t(60), Some(150.0)),
            RawPoint::new(t(60), Some(200.0)),
        ];
        let n = run(pts, t(0)).unwrap();
        assert_eq!(n.series.values(), &[100.0, 200.0, 300.0]);
        assert!(n.repairs.contains(&Repair::Sorted));
        assert!(n.repairs.contains(&Repair::DuplicatesDropped(1)));
    }

    #[test]
    fn mixed_steps_resample_to_the_smallest() {
        // Two hourly points, then 30-minute points.
        let mut pts = vec![
            RawPoint::new(t(0), Some(100.0)),
            RawPoint::new(t(60), Some(200.0)),
        ];
        for k in 0..4 {
            pts.push(RawPoint::new(t(120 + 30 * k), Some(300.0 + k as f64)));
        }
        let n = run(pts, t(0)).unwrap();
        assert_eq!(n.series.step_secs(), 1800);
        assert_eq!(
            n.series.values(),
            &[100.0, 100.0, 200.0, 200.0, 300.0, 301.0, 302.0, 303.0]
        );
    }

    #[test]
    fn long_gap_truncates_to_the_run_containing_now() {
        let mut vals: Vec<Option<f64>> = vec![Some(100.0); 4];
        vals.extend([None, None, None]);
        vals.extend([Some(200.0); 3]);
        let n = run(hourly(&vals), t(90)).unwrap();
        assert_eq!(n.series.values(), &[100.0; 4]);
        assert!(matches!(n.repairs.last(), Some(Repair::Truncated { .. })));
        // now inside the gap: rejected.
        assert!(run(hourly(&vals), t(5 * 60)).is_err());
    }

    #[test]
    fn coverage_of_now() {
        let e = run(hourly(&[Some(100.0), Some(100.0)]), t(180)).unwrap_err();
        assert!(e.to_string().contains("before now"), "{e}");
        let n = run(hourly(&[Some(100.0), Some(120.0)]), t(-20)).unwrap();
        assert_eq!(n.series.start(), t(-60));
        assert_eq!(n.series.values(), &[100.0, 100.0, 120.0]);
        let e = run(hourly(&[Some(100.0)]), t(-200)).unwrap_err();
        assert!(e.to_string().contains("after now"), "{e}");
    }

    #[test]
    fn misaligned_and_tiny_steps_are_rejected() {
        let pts = vec![
            RawPoint::new(t(0), Some(1.0)),
            RawPoint::new(t(60), Some(1.0)),
            RawPoint::new(t(150), Some(1.0)),
        ];
        assert!(run(pts, t(0)).is_err());
        let pts = vec![
            RawPoint::new(t(0), Some(1.0)),
            RawPoint::new(t(0) + TimeDelta::seconds(10), Some(1.0)),
        ];
        assert!(run(pts, t(0)).is_err());
    }

    #[test]
    fn history_is_the_recorded_slots_of_the_span() {
        let vals: Vec<Option<f64>> = (0..6).map(|i| Some(100.0 + i as f64)).collect();
        // Entirely in the past of any now; slots overlapping [01:30, 04:00).
        let n = normalise_history("test", hourly(&vals), None, t(90), t(240)).unwrap();
        assert_eq!(n.series.start(), t(60));
        assert_eq!(n.series.step_secs(), 3600);
        assert_eq!(n.series.values(), &[101.0, 102.0, 103.0]);
        assert!(n.repairs.is_empty());
        // Less than asked when the data is shorter: never extended.
        let n = normalise_history("test", hourly(&vals), None, t(-600), t(6000)).unwrap();
        assert_eq!((n.series.start(), n.series.len()), (t(0), 6));
    }

    #[test]
    fn history_keeps_the_longest_run_and_rejects_like_forecasts() {
        let mut vals: Vec<Option<f64>> = vec![Some(100.0); 2];
        vals.extend([None, None, None]);
        vals.extend([Some(200.0); 3]);
        let n = normalise_history("test", hourly(&vals), None, t(0), t(8 * 60)).unwrap();
        assert_eq!(n.series.start(), t(5 * 60));
        assert_eq!(n.series.values(), &[200.0; 3]);
        assert!(matches!(n.repairs.last(), Some(Repair::Truncated { .. })));
        let e = normalise_history("test", hourly(&[Some(0.0); 3]), None, t(0), t(180));
        assert!(e.unwrap_err().to_string().contains("every value is zero"));
    }

    #[test]
    fn history_without_data_for_the_span_is_unavailable() {
        let e = normalise_history("test", Vec::new(), None, t(0), t(60)).unwrap_err();
        assert_eq!(e.kind(), "unavailable");
        assert!(e.to_string().contains("no data for"), "{e}");
        let later = hourly(&[Some(100.0), Some(100.0)]);
        let e = normalise_history("test", later, None, t(-180), t(-60)).unwrap_err();
        assert_eq!(e.kind(), "unavailable");
    }

    #[test]
    fn mostly_missing_is_rejected() {
        let e = run(
            hourly(&[Some(100.0), None, Some(100.0), None, None, None]),
            t(0),
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
