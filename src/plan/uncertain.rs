//! Planning on a forecast known to be wrong by some grams ([`ForecastError`]).
//!
//! Two corrections, both from the calibrated error by lead time:
//! * **Bias.** Real forecasts drift: NESO's under-forecast by 9-17 g at 12-48 h (scaled to
//!   the zone). Taken at face value, the far future looks cleaner than it turns out and the
//!   planner waits for it; [`debiased`] takes the expected bias out first.
//! * **Gains within the error.** Choosing the cleanest of many noisy slots picks the ones
//!   the forecast got too low. A plan that pauses or delays now is compared with the best
//!   plan that runs through the current slot instead; when it gains less than the
//!   expected error of that comparison ([`spread`] times [`GAIN_MARGIN`]), the job runs.
//!   Both plans include the overhead of the pauses they take, so the gain is net of the
//!   checkpoint cost.

use chrono::{DateTime, Utc};

use super::error::{ForecastError, NESO_ERROR_BY_LEAD};
use super::grid::{offset_ms, Grid, MS_PER_HOUR};
use super::strategies::{Outcome, Problem};
use super::Reason;
use crate::series::Series;

/// A pause or delay must gain more than this many expected errors of the comparison.
/// Chosen on the embedded zones (docs/results.md, "Planning under forecast error"): 1.0
/// costs 1.5-16.5 pp of the oracle's savings for 23-30 % fewer pauses; 0.25 cuts pauses
/// by 6-11 % for at most 0.8 pp (3.3 pp in CA-QC, whose grid is near zero).
pub const GAIN_MARGIN: f64 = 0.25;

/// How much of the near future the alternative to a pause runs, at least: slots are
/// pinned until one ends this far from now.
const PINNED_MS: i64 = 15 * 60 * 1000;

/// Leads the calibration covers; beyond them the series is the beyond-horizon model, not a
/// forecast with NESO's bias.
const CALIBRATED_LEAD_H: f64 = 48.0;

/// The series with the expected bias at each slot's lead (from `now`) taken out, over the
/// calibrated leads; None when there is no error to correct.
pub fn debiased(forecast: &Series, now: DateTime<Utc>, err: &ForecastError) -> Option<Series> {
    if err.is_none() {
        return None;
    }
    let step = forecast.step_secs();
    let values = forecast
        .values()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let lead_h = offset_ms(now, forecast.slot_start(i)) as f64 / MS_PER_HOUR;
            if lead_h + step as f64 / 3600.0 <= 0.0 || lead_h >= CALIBRATED_LEAD_H {
                v
            } else {
                (v - err.at(lead_h).1).max(0.0)
            }
        })
        .collect();
    Series::new(forecast.start(), step, values).ok()
}

/// Half the integral, over the time where exactly one of two plans runs, of the expected
/// absolute error at that lead, in (g/kWh)·h: the error to expect in the difference of the
/// two plans' costs (each hour moved is counted once, at the mean of its two ends).
pub fn spread(a: &[(i64, i64)], b: &[(i64, i64)], err: &ForecastError) -> f64 {
    let mut cuts: Vec<i64> = a.iter().chain(b).flat_map(|&(s, e)| [s, e]).collect();
    // Lead-bucket boundaries, so the error is constant on each piece.
    cuts.extend(
        NESO_ERROR_BY_LEAD
            .iter()
            .filter(|(upper_h, _, _)| upper_h.is_finite())
            .map(|(upper_h, _, _)| (upper_h * MS_PER_HOUR) as i64),
    );
    cuts.sort_unstable();
    cuts.dedup();
    // Blocks are sorted and disjoint: one pointer into each, moving forward only.
    let (mut ia, mut ib) = (0, 0);
    let inside = |blocks: &[(i64, i64)], i: &mut usize, x: i64| {
        while *i < blocks.len() && blocks[*i].1 <= x {
            *i += 1;
        }
        *i < blocks.len() && blocks[*i].0 <= x
    };
    let mut total = 0.0;
    for w in cuts.windows(2) {
        let (s, e) = (w[0], w[1]);
        if inside(a, &mut ia, s) != inside(b, &mut ib, s) {
            let (mae, _) = err.at(s.max(0) as f64 / MS_PER_HOUR);
            total += mae * (e - s) as f64;
        }
    }
    0.5 * total / MS_PER_HOUR
}

/// `out` as planned, unless it pauses or delays a job that could run now for a gain within
/// the forecast's error: then the best plan that runs through the grid's first slot (or
/// the first slots, up to one ending at least 15 minutes from now), with reason
/// `WithinForecastError`.
pub(crate) fn hold_back(
    grid: &Grid,
    problem: &Problem,
    out: Outcome,
    err: &ForecastError,
    plan: impl Fn(&Grid, &Problem) -> Outcome,
) -> Outcome {
    let pauses_now = out.blocks.first().is_some_and(|&(s, _)| s > 0);
    if err.is_none() || !pauses_now || problem.pause_lock > 0 {
        return out;
    }
    // The best plan that runs now: the same planner on a grid where the slots up to
    // `PINNED_MS` (whole slots, at least the first) are free, as a running job, so that
    // a later gap counts as a pause. Not a sliver: a start for the minute before a slot
    // boundary would be a start and a pause for nothing.
    let forced = Problem {
        running: true,
        ..*problem
    };
    let alt = plan(&grid.with_free_start(PINNED_MS), &forced);
    if alt.blocks.first().map(|b| b.0) != Some(0) {
        return out;
    }
    let gain = (grid.cost_of(&alt.blocks) - grid.cost_of(&out.blocks)) / MS_PER_HOUR;
    if gain < GAIN_MARGIN * spread(&alt.blocks, &out.blocks, err) {
        Outcome {
            blocks: alt.blocks,
            reason: Reason::WithinForecastError,
        }
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{decide, Action, Constraints, JobState, PlanRequest, Strategy};
    use chrono::{TimeDelta, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn debiasing_adds_back_the_expected_under_forecast() {
        let s = Series::new(t0(), 3600, vec![100.0; 60]).unwrap();
        let d = debiased(&s, t0(), &ForecastError::ABSOLUTE).unwrap();
        // bias +2.8 at 0-2 h (taken off), -16.8 at 24-48 h (added), none past 48 h.
        assert!((d.values()[0] - 97.2).abs() < 1e-9);
        assert!((d.values()[30] - 116.8).abs() < 1e-9);
        assert_eq!(d.values()[50], 100.0);
        assert!(debiased(&s, t0(), &ForecastError::NONE).is_none());
        // Half the error in a zone half as hard to forecast.
        let half = debiased(&s, t0(), &ForecastError { scale: 0.5 }).unwrap();
        assert!((half.values()[30] - 108.4).abs() < 1e-9);
        // Slots before now are observed: left alone.
        let later = debiased(&s, t0() + TimeDelta::hours(5), &ForecastError::ABSOLUTE).unwrap();
        assert_eq!(later.values()[2], 100.0);
    }

    #[test]
    fn spread_counts_each_moved_hour_at_its_lead() {
        let h = 3_600_000;
        let e = ForecastError::ABSOLUTE;
        // One hour moved from lead 0 to lead 30 h: (18.0 + 28.3) / 2.
        let s = spread(&[(0, h)], &[(30 * h, 31 * h)], &e);
        assert!((s - 23.15).abs() < 1e-9, "{s}");
        assert_eq!(spread(&[(0, h)], &[(0, h)], &e), 0.0);
        assert_eq!(
            spread(&[(0, h)], &[(30 * h, 31 * h)], &ForecastError::NONE),
            0.0
        );
    }

    fn request(forecast: &Series, now: DateTime<Utc>, error: ForecastError) -> PlanRequest<'_> {
        PlanRequest {
            now,
            remaining_secs: 3600,
            deadline: t0() + TimeDelta::hours(4),
            strategy: Strategy::PauseAndResume,
            constraints: Constraints::default(),
            state: JobState::NotStarted,
            pauses_so_far: 0,
            forecast,
            error,
        }
    }

    /// A delay for 2 g/kWh over an hour waits on an exact forecast, runs on one with GB's
    /// error (0.25 x 18-24.5 g is more); a delay for 200 g waits either way.
    #[test]
    fn small_gains_within_the_error_run_now() {
        let small = Series::new(t0(), 3600, vec![100.0, 100.0, 98.0, 100.0]).unwrap();
        let exact = decide(&request(&small, t0(), ForecastError::NONE));
        assert_eq!(
            (exact.action, exact.reason),
            (Action::Pause, Reason::WaitingForCleanerWindow)
        );
        let noisy = decide(&request(&small, t0(), ForecastError::ABSOLUTE));
        assert_eq!(
            (noisy.action, noisy.reason),
            (Action::Run, Reason::WithinForecastError)
        );
        assert_eq!(noisy.intervals[0].start, t0());
        assert_eq!(noisy.intervals[0].end, t0() + TimeDelta::hours(1));
        // Its expected grams are the forecast's own: 100 g for the hour run now.
        assert!((noisy.expected_grams_per_kw - 100.0).abs() < 1e-9);

        let large = Series::new(t0(), 3600, vec![300.0, 300.0, 100.0, 300.0]).unwrap();
        for e in [ForecastError::NONE, ForecastError::ABSOLUTE] {
            let p = decide(&request(&large, t0(), e));
            assert_eq!(
                (p.action, p.next_transition),
                (Action::Pause, Some(t0() + TimeDelta::hours(2)))
            );
        }
    }

    /// A minute before a slot boundary the run held back for is not that minute alone: the
    /// alternative runs into the next slot too.
    #[test]
    fn the_run_held_back_for_is_not_a_sliver() {
        let small = Series::new(t0(), 3600, vec![100.0, 100.0, 98.0, 100.0]).unwrap();
        let now = t0() + TimeDelta::minutes(59);
        let p = decide(&request(&small, now, ForecastError::ABSOLUTE));
        assert_eq!(
            (p.action, p.reason),
            (Action::Run, Reason::WithinForecastError)
        );
        let first = p.intervals[0];
        assert_eq!(first.start, now);
        assert!(
            first.end - first.start >= TimeDelta::minutes(15),
            "{first:?}"
        );
    }
}
