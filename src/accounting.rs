//! PURE emissions accounting: energy, actual emissions, the run-now baseline and the
//! emissions avoided.
//!
//! Everything the operator needs to survive a restart lives in a [`Ledger`] of plain
//! numbers stored in the job's status, plus the job's creation time: each accrual is a
//! function of the ledger and a closed past interval, so a restarted operator continues
//! exactly where the last status write left off.
//!
//! The baseline is the counterfactual "run now": the same job started at submission and
//! never paused. After `runtime` seconds of actual running, the baseline has consumed the
//! window `[created, created + runtime)`; both that window and the actual run intervals
//! are in the past, so they are integrated over measured intensities, not forecasts.
//! Restore overhead after a pause (reloading a checkpoint: the `[from, mid)` of
//! [`Ledger::accrue_time`]) costs energy and emissions but is not work: the run-now
//! counterfactual never pauses, so its runtime, and the baseline window, exclude it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::series::{Series, SeriesError};
use crate::timefmt;

/// Why an accrual could not be made.
#[derive(Debug, Error, PartialEq)]
pub enum AccountingError {
    #[error("power must be finite and non-negative (watts {watts}, pue {pue})")]
    BadPower { watts: f64, pue: f64 },
    #[error(
        "run interval {} .. {} ends before it starts",
        timefmt::format(*.from),
        timefmt::format(*.to)
    )]
    BackwardsInterval {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error(
        "run interval {} starts before the job was created ({})",
        timefmt::format(*.from),
        timefmt::format(*.created)
    )]
    BeforeCreation {
        from: DateTime<Utc>,
        created: DateTime<Utc>,
    },
    #[error("runtime {0} s is out of the representable time range")]
    OutOfRange(f64),
    #[error(transparent)]
    Series(#[from] SeriesError),
}

/// Electrical power drawn while the job runs, including the facility's overhead (PUE).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerModel {
    /// IT power in watts.
    pub watts: f64,
    /// Power usage effectiveness, >= 1 for a real data centre.
    pub pue: f64,
}

impl PowerModel {
    /// A total IT power draw in watts.
    pub fn total(watts: f64, pue: f64) -> Result<Self, AccountingError> {
        let p = PowerModel { watts, pue };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), AccountingError> {
        if self.watts.is_finite() && self.watts >= 0.0 && self.pue.is_finite() && self.pue >= 0.0 {
            Ok(())
        } else {
            Err(AccountingError::BadPower {
                watts: self.watts,
                pue: self.pue,
            })
        }
    }

    /// Power at the meter in kW.
    pub fn kw(&self) -> f64 {
        self.watts * self.pue / 1000.0
    }
}

/// Energy in kWh of running for `secs` seconds.
pub fn energy_kwh(power: &PowerModel, secs: f64) -> f64 {
    power.kw() * secs / 3600.0
}

/// Emissions in grams of running over `[from, to)` with intensities from `series`.
pub fn emissions_grams(
    power: &PowerModel,
    series: &Series,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<f64, SeriesError> {
    Ok(power.kw() * series.integrate(from, to)?)
}

/// A job's running totals, as kept in its status.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ledger {
    /// Seconds actually run (including restore overhead after pauses).
    pub runtime_secs: f64,
    /// Pauses taken.
    pub pauses: u32,
    pub energy_kwh: f64,
    /// Actual emissions of the run intervals, grams CO2eq.
    pub emissions_grams: f64,
    /// Emissions the run-now counterfactual had caused for the same runtime, grams.
    pub baseline_grams: f64,
    /// Seconds of `runtime_secs` spent restoring after pauses (not work: excluded from the
    /// baseline window).
    pub restore_secs: f64,
}

impl Ledger {
    /// Emissions avoided so far (negative if the schedule did worse than running at once).
    pub fn avoided_grams(&self) -> f64 {
        self.baseline_grams - self.emissions_grams
    }
}

/// Accrual with the intensities at hand at once: the references the tests check
/// [`Ledger::accrue_time`] and [`Ledger::settle`] against (the controller uses those).
#[cfg(test)]
impl Ledger {
    /// Accrues a run interval `[from, to)`: energy and actual emissions over it, and the
    /// baseline over `[created + work, created + work + (to - from))`, where `work` is
    /// `runtime_secs - restore_secs`. All or nothing: on error the ledger is unchanged
    /// (retry when the series covers both).
    ///
    /// Intervals must be accrued in order and without overlap; the ledger cannot check
    /// that, so the caller accrues `[last_accrued, now)` (for instance at each status
    /// write) and stores the new end with the ledger.
    pub fn accrue_run(
        &mut self,
        power: &PowerModel,
        series: &Series,
        created: DateTime<Utc>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(), AccountingError> {
        self.accrue_run_share(power, series, created, from, to, 1.0)
    }

    /// [`Ledger::accrue_run`] for a job running at `share` (in `[0, 1]`, clamped; NaN is
    /// 0) of its full size over `[from, to)`: a parallel Job with half its pods running
    /// does half the work, draws half the power (`power` is the whole job's) and emits
    /// half. The baseline is the run-now job doing the same work at full size, i.e. over
    /// the next `share * (to - from)` of its window. `accrue_run` is `share = 1`.
    pub fn accrue_run_share(
        &mut self,
        power: &PowerModel,
        series: &Series,
        created: DateTime<Utc>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        share: f64,
    ) -> Result<(), AccountingError> {
        power.check()?;
        if to < from {
            return Err(AccountingError::BackwardsInterval { from, to });
        }
        if from < created {
            return Err(AccountingError::BeforeCreation { from, created });
        }
        let share = clamp_share(share);
        let secs = share * (to - from).num_milliseconds() as f64 / 1000.0;
        let actual = share * emissions_grams(power, series, from, to)?;
        let shift = |r: f64| {
            created
                .checked_add_signed(ms(r))
                .ok_or(AccountingError::OutOfRange(r))
        };
        let work = (self.runtime_secs - self.restore_secs).max(0.0);
        let b0 = shift(work)?;
        let b1 = shift(work + secs)?;
        let baseline = emissions_grams(power, series, b0, b1)?;
        self.runtime_secs += secs;
        self.energy_kwh += energy_kwh(power, secs);
        self.emissions_grams += actual;
        self.baseline_grams += baseline;
        Ok(())
    }

    /// Accrues `[from, to)` spent restoring from a checkpoint after a pause: runtime,
    /// energy and actual emissions like [`Ledger::accrue_run`], but no baseline (the run-now
    /// counterfactual never pauses, so never restores). All or nothing, like `accrue_run`.
    pub fn accrue_restore(
        &mut self,
        power: &PowerModel,
        series: &Series,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(), AccountingError> {
        self.accrue_restore_share(power, series, from, to, 1.0)
    }

    /// [`Ledger::accrue_restore`] at `share` of the job's full size (see
    /// [`Ledger::accrue_run_share`]).
    pub fn accrue_restore_share(
        &mut self,
        power: &PowerModel,
        series: &Series,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        share: f64,
    ) -> Result<(), AccountingError> {
        power.check()?;
        if to < from {
            return Err(AccountingError::BackwardsInterval { from, to });
        }
        let share = clamp_share(share);
        let secs = share * (to - from).num_milliseconds() as f64 / 1000.0;
        let actual = share * emissions_grams(power, series, from, to)?;
        self.runtime_secs += secs;
        self.restore_secs += secs;
        self.energy_kwh += energy_kwh(power, secs);
        self.emissions_grams += actual;
        Ok(())
    }
}

/// Which total an [`Owed`] span adds to once its intensities are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum OwedTo {
    /// The job's actual emissions (`emissionsGrams`).
    Emissions,
    /// The run-now counterfactual (`baselineGrams`).
    Baseline,
}

/// A past span whose grams are not in the ledger yet, because no recorded intensities
/// covered it when it was accounted (a provider outage, an operator restart that the
/// provider's live endpoint no longer covers): `share` of the job's power over
/// `[start, end)` is owed to `to`. Its time and energy are already in the ledger; only
/// the grams wait for intensities. Never integrated at a guessed value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owed {
    pub to: OwedTo,
    #[schemars(with = "String")]
    pub start: DateTime<Utc>,
    #[schemars(with = "String")]
    pub end: DateTime<Utc>,
    /// Fraction of the job's power, in `[0, 1]`.
    pub share: f64,
}

impl Owed {
    fn secs(&self) -> f64 {
        (self.end - self.start).num_milliseconds().max(0) as f64 / 1000.0
    }

    /// Seconds of full-size running the span stands for (its runtime, for emissions).
    pub fn weighted_secs(&self) -> f64 {
        self.share * self.secs()
    }

    /// The part of the span within `[from, to)`, if any.
    fn within(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Owed> {
        let (start, end) = (self.start.max(from), self.end.min(to));
        (start < end).then_some(Owed {
            start,
            end,
            ..*self
        })
    }
}

/// Most spans a status keeps; beyond it the two oldest spans owed to the same total are
/// joined (see [`push_owed`]).
pub const MAX_OWED: usize = 64;

/// Appends `span` to `owed`, joining it to the last span when they touch and are owed to
/// the same total at the same share, so an outage of any length is one span per total
/// and share. Beyond [`MAX_OWED`] spans, the two oldest spans owed to the same total are
/// joined into one over their hull at the share that keeps their weighted seconds: the
/// runtime still owed stays exact, the split of power within the hull is approximated.
pub fn push_owed(owed: &mut Vec<Owed>, span: Owed) {
    if span.start >= span.end || span.share <= 0.0 {
        return;
    }
    if let Some(last) = owed
        .iter_mut()
        .rev()
        .find(|o| o.to == span.to)
        .filter(|o| o.end == span.start && o.share == span.share)
    {
        last.end = span.end;
        return;
    }
    owed.push(span);
    if owed.len() > MAX_OWED {
        let to = owed[0].to;
        if let Some(j) = (1..owed.len()).find(|&j| owed[j].to == to) {
            let (a, b) = (owed[0], owed.remove(j));
            let hull = Owed {
                to,
                start: a.start.min(b.start),
                end: a.end.max(b.end),
                share: 1.0,
            };
            let share = (a.weighted_secs() + b.weighted_secs()) / hull.secs().max(1e-9);
            owed[0] = Owed {
                share: share.clamp(0.0, 1.0),
                ..hull
            };
        }
    }
}

/// Seconds of runtime whose emissions are still owed.
pub fn owed_runtime_secs(owed: &[Owed]) -> f64 {
    owed.iter()
        .filter(|o| o.to == OwedTo::Emissions)
        .map(Owed::weighted_secs)
        .sum()
}

impl Ledger {
    /// Accrues the time of `[from, to)` at `share`, the first `[from, mid)` of it restoring
    /// after a pause: runtime, restore time and energy at once (they need no intensities),
    /// and returns the grams the interval owes: its emissions over `[from, to)` and the
    /// run-now baseline for the work it did, `[created + work, created + work + share·(to -
    /// mid))`. Settle them with [`Ledger::settle`].
    pub fn accrue_time(
        &mut self,
        power: &PowerModel,
        created: DateTime<Utc>,
        from: DateTime<Utc>,
        mid: DateTime<Utc>,
        to: DateTime<Utc>,
        share: f64,
    ) -> Result<[Owed; 2], AccountingError> {
        power.check()?;
        if to < from || mid < from || to < mid {
            return Err(AccountingError::BackwardsInterval { from, to });
        }
        if from < created {
            return Err(AccountingError::BeforeCreation { from, created });
        }
        let share = clamp_share(share);
        let secs =
            |a: DateTime<Utc>, b: DateTime<Utc>| share * (b - a).num_milliseconds() as f64 / 1000.0;
        let (restore, work_secs) = (secs(from, mid), secs(mid, to));
        let shift = |r: f64| {
            created
                .checked_add_signed(ms(r))
                .ok_or(AccountingError::OutOfRange(r))
        };
        let work = (self.runtime_secs - self.restore_secs).max(0.0);
        let (b0, b1) = (shift(work)?, shift(work + work_secs)?);
        self.runtime_secs += restore + work_secs;
        self.restore_secs += restore;
        self.energy_kwh += energy_kwh(power, restore + work_secs);
        Ok([
            Owed {
                to: OwedTo::Emissions,
                start: from,
                end: to,
                share,
            },
            Owed {
                to: OwedTo::Baseline,
                start: b0,
                end: b1,
                share: 1.0,
            },
        ])
    }

    /// Adds the grams of the parts of `span` that `sources` cover (the first source that
    /// covers a part is used), and returns the parts none covers, still owed.
    pub fn settle(&mut self, power: &PowerModel, sources: &[&Series], span: Owed) -> Vec<Owed> {
        let mut left = vec![span];
        for s in sources {
            let mut rest = Vec::new();
            for o in left {
                let Some(part) = o.within(s.start(), s.end()) else {
                    rest.push(o);
                    continue;
                };
                match emissions_grams(power, s, part.start, part.end) {
                    Ok(g) => {
                        let g = part.share * g;
                        match o.to {
                            OwedTo::Emissions => self.emissions_grams += g,
                            OwedTo::Baseline => self.baseline_grams += g,
                        }
                        rest.extend(o.within(o.start, part.start));
                        rest.extend(o.within(part.end, o.end));
                    }
                    Err(_) => rest.push(o),
                }
            }
            left = rest;
        }
        left
    }

    /// [`Ledger::settle`] for every span of `owed`, keeping what stays owed.
    pub fn settle_all(&mut self, power: &PowerModel, sources: &[&Series], owed: &mut Vec<Owed>) {
        let mut rest = Vec::new();
        for span in owed.drain(..) {
            for o in self.settle(power, sources, span) {
                push_owed(&mut rest, o);
            }
        }
        *owed = rest;
    }
}

/// `share` in `[0, 1]`; NaN (never produced by the controller) counts as nothing running.
fn clamp_share(share: f64) -> f64 {
    if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, 1.0)
    }
}

/// Whole milliseconds of `secs`, saturating (a ledger's runtime is far from the limits).
fn ms(secs: f64) -> TimeDelta {
    let m = (secs * 1000.0).round();
    TimeDelta::try_milliseconds(m.clamp(0.0, 1e15) as i64).unwrap_or(TimeDelta::zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
    }

    #[test]
    fn power_and_energy() {
        let p = PowerModel::total(8.0 * 400.0, 1.25).unwrap();
        assert!((p.kw() - 4.0).abs() < 1e-12);
        assert!((energy_kwh(&p, 5400.0) - 6.0).abs() < 1e-12);
        assert!(PowerModel::total(f64::NAN, 1.0).is_err());
        assert!(PowerModel::total(100.0, -1.0).is_err());
    }

    #[test]
    fn ledger_accrues_actual_and_baseline() {
        let s = Series::new(t(0), 3600, vec![400.0, 300.0, 100.0, 50.0]).unwrap();
        let p = PowerModel::total(2000.0, 1.0).unwrap();
        let mut l = Ledger::default();
        // Created at 0, ran 2-3 and 3-4: baseline covers 0-1 then 1-2.
        l.accrue_run(&p, &s, t(0), t(2), t(3)).unwrap();
        l.pauses += 1;
        l.accrue_run(&p, &s, t(0), t(3), t(4)).unwrap();
        assert_eq!(l.runtime_secs, 7200.0);
        assert_eq!(l.pauses, 1);
        assert!((l.energy_kwh - 4.0).abs() < 1e-12);
        assert!((l.emissions_grams - 2.0 * 150.0).abs() < 1e-9);
        assert!((l.baseline_grams - 2.0 * 700.0).abs() < 1e-9);
        assert!((l.avoided_grams() - 1100.0).abs() < 1e-9);
        // Not covered: error, ledger untouched.
        let before = l;
        assert!(l.accrue_run(&p, &s, t(0), t(3), t(5)).is_err());
        assert!(l.accrue_run(&p, &s, t(0), t(3), t(2)).is_err());
        assert!(l.accrue_run(&p, &s, t(1), t(0), t(1)).is_err());
        assert_eq!(l, before);
    }

    #[test]
    fn restore_overhead_costs_emissions_but_not_baseline() {
        let s = Series::new(t(0), 3600, vec![400.0, 300.0, 100.0, 50.0, 200.0]).unwrap();
        let p = PowerModel::total(1000.0, 1.0).unwrap();
        let mut l = Ledger::default();
        // Ran 0-1, paused, restored 2-3, worked 3-4: the work is 2 h, so the baseline is
        // the run-now job over 0-2; the restore hour is emitted but never in the baseline.
        l.accrue_run(&p, &s, t(0), t(0), t(1)).unwrap();
        l.pauses += 1;
        l.accrue_restore(&p, &s, t(2), t(3)).unwrap();
        l.accrue_run(&p, &s, t(0), t(3), t(4)).unwrap();
        assert_eq!(l.runtime_secs, 3.0 * 3600.0);
        assert_eq!(l.restore_secs, 3600.0);
        assert!((l.energy_kwh - 3.0).abs() < 1e-12);
        assert!((l.emissions_grams - (400.0 + 100.0 + 50.0)).abs() < 1e-9);
        assert!((l.baseline_grams - (400.0 + 300.0)).abs() < 1e-9);
        let before = l;
        assert!(l.accrue_restore(&p, &s, t(4), t(9)).is_err());
        assert!(l.accrue_restore(&p, &s, t(4), t(3)).is_err());
        assert_eq!(l, before);
    }

    #[test]
    fn a_partial_share_scales_work_energy_emissions_and_baseline() {
        let s = Series::new(t(0), 3600, vec![400.0, 300.0, 100.0, 50.0]).unwrap();
        let p = PowerModel::total(2000.0, 1.0).unwrap();
        let mut l = Ledger::default();
        // Half the pods over 2-4: one hour of work, half the power (1 kW) over 2-4, and
        // the baseline is the full-size job over its first hour (0-1).
        l.accrue_run_share(&p, &s, t(0), t(2), t(4), 0.5).unwrap();
        assert_eq!(l.runtime_secs, 3600.0);
        assert!((l.energy_kwh - 2.0).abs() < 1e-12);
        assert!((l.emissions_grams - (100.0 + 50.0)).abs() < 1e-9);
        assert!((l.baseline_grams - 2.0 * 400.0).abs() < 1e-9);
        // No pods: nothing; out-of-range shares clamp.
        let before = l;
        l.accrue_run_share(&p, &s, t(0), t(3), t(4), 0.0).unwrap();
        l.accrue_restore_share(&p, &s, t(3), t(4), f64::NAN)
            .unwrap();
        assert_eq!(l, before);
        let mut full = Ledger::default();
        full.accrue_run_share(&p, &s, t(0), t(0), t(1), 7.0)
            .unwrap();
        let mut one = Ledger::default();
        one.accrue_run(&p, &s, t(0), t(0), t(1)).unwrap();
        assert_eq!(full, one);
        // Restore at a quarter share: a quarter of the time, no baseline.
        let mut r = Ledger::default();
        r.accrue_restore_share(&p, &s, t(1), t(2), 0.25).unwrap();
        assert_eq!((r.runtime_secs, r.restore_secs), (900.0, 900.0));
        assert!((r.emissions_grams - 0.25 * 2.0 * 300.0).abs() < 1e-9);
        assert_eq!(r.baseline_grams, 0.0);
    }

    #[test]
    fn time_accrues_at_once_and_grams_when_intensities_arrive() {
        let s = Series::new(t(0), 3600, vec![400.0, 300.0, 100.0, 50.0]).unwrap();
        let p = PowerModel::total(2000.0, 1.0).unwrap();
        let mut whole = Ledger::default();
        whole.accrue_run(&p, &s, t(0), t(2), t(4)).unwrap();
        // The live series covers only 3-4 (a restart: the provider serves now onward).
        let live = s.slice(t(3), t(4)).unwrap();
        let mut l = Ledger::default();
        let spans = l.accrue_time(&p, t(0), t(2), t(2), t(4), 1.0).unwrap();
        assert_eq!((l.runtime_secs, l.energy_kwh), (7200.0, 4.0));
        let mut owed = Vec::new();
        for span in spans {
            for o in l.settle(&p, &[&live], span) {
                push_owed(&mut owed, o);
            }
        }
        // Owed: emissions over 2-3, the baseline over 0-2; 3-4 settled at 50 g/kWh x 2 kW.
        assert_eq!(l.emissions_grams, 100.0);
        assert_eq!(l.baseline_grams, 0.0);
        assert_eq!(owed.len(), 2);
        assert_eq!(
            (owed[0].to, owed[0].start, owed[0].end),
            (OwedTo::Emissions, t(2), t(3))
        );
        assert_eq!(
            (owed[1].to, owed[1].start, owed[1].end),
            (OwedTo::Baseline, t(0), t(2))
        );
        assert_eq!(owed_runtime_secs(&owed), 3600.0);
        // History arrives for 0-3: everything settles, equal to accruing with it at once.
        let history = s.slice(t(0), t(3)).unwrap();
        l.settle_all(&p, &[&live, &history], &mut owed);
        assert!(owed.is_empty());
        assert_eq!(l, whole);
    }

    #[test]
    fn owed_spans_join_and_stay_bounded() {
        let mut owed = Vec::new();
        let span = |to, a: i64, b: i64, share| Owed {
            to,
            start: t(a),
            end: t(b),
            share,
        };
        // An outage accounted at every reconcile is one span per total.
        for h in 0..10 {
            push_owed(&mut owed, span(OwedTo::Emissions, h, h + 1, 0.5));
            push_owed(&mut owed, span(OwedTo::Baseline, h, h + 1, 1.0));
        }
        assert_eq!(owed.len(), 2);
        assert_eq!(owed_runtime_secs(&owed), 5.0 * 3600.0);
        // Empty or idle spans are nothing owed.
        push_owed(&mut owed, span(OwedTo::Emissions, 20, 20, 1.0));
        push_owed(&mut owed, span(OwedTo::Emissions, 20, 21, 0.0));
        assert_eq!(owed.len(), 2);
        // Shares that alternate never join; the list stays bounded, the seconds exact.
        for h in 0..200 {
            let share = if h % 2 == 0 { 1.0 } else { 0.25 };
            push_owed(&mut owed, span(OwedTo::Emissions, 100 + h, 101 + h, share));
        }
        assert_eq!(owed.len(), MAX_OWED);
        let want = 5.0 * 3600.0 + 100.0 * 3600.0 + 100.0 * 900.0;
        assert!((owed_runtime_secs(&owed) - want).abs() < 1e-6);
        assert!(owed.iter().all(|o| (0.0..=1.0).contains(&o.share)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Accruing a run in arbitrary pieces, as the controller does (time, then the grams
        /// each piece owes), gives the same totals as accruing it at once, and the baseline
        /// equals the integral over `[created, created + runtime)`.
        #[test]
        fn piecewise_accrual_matches_whole(
            vals in prop::collection::vec(0.0f64..800.0, 12),
            start in 0i64..6 * 3600,
            cuts in prop::collection::vec(1i64..3600, 1..6),
        ) {
            let s = Series::new(t(0), 3600, vals).unwrap();
            let p = PowerModel::total(1500.0, 1.1).unwrap();
            let created = t(0);
            let from = created + TimeDelta::seconds(start);
            let mut l = Ledger::default();
            let mut a = from;
            for c in &cuts {
                let b = a + TimeDelta::seconds(*c);
                for span in l.accrue_time(&p, created, a, a, b, 1.0).unwrap() {
                    prop_assert!(l.settle(&p, &[&s], span).is_empty());
                }
                a = b;
            }
            let total: i64 = cuts.iter().sum();
            let whole = emissions_grams(&p, &s, from, a).unwrap();
            let base = emissions_grams(&p, &s, created, created + TimeDelta::seconds(total)).unwrap();
            prop_assert!((l.emissions_grams - whole).abs() < 1e-6 * whole.max(1.0));
            prop_assert!((l.baseline_grams - base).abs() < 1e-6 * base.max(1.0));
            prop_assert!((l.runtime_secs - total as f64).abs() < 1e-9);
        }
    }
}
