//! Perfect-foresight references for the simulator and the tests.
//!
//! The oracle of a strategy is that same strategy planned once, at submission, with the
//! actual intensities as its forecast: the best the strategy could do with perfect
//! knowledge. The simulator compares what the operator achieves with imperfect, refreshed
//! forecasts against it. The brute-force references (compiled for the tests only)
//! enumerate every schedule of a small slot-aligned instance; they are exponential and
//! only meant for proofs on tiny inputs.

use chrono::{DateTime, Utc};

use super::{decide, Constraints, JobState, Plan, PlanRequest, Strategy};
use crate::series::Series;

/// The oracle schedule: `strategy` planned at `submitted` with `actuals` as the forecast.
/// `actuals` should cover `[submitted, deadline)`.
pub fn schedule(
    strategy: Strategy,
    actuals: &Series,
    submitted: DateTime<Utc>,
    runtime_secs: i64,
    deadline: DateTime<Utc>,
    constraints: Constraints,
) -> Plan {
    decide(&PlanRequest {
        now: submitted,
        remaining_secs: runtime_secs,
        deadline,
        strategy,
        constraints,
        state: JobState::NotStarted,
        pauses_so_far: 0,
        forecast: actuals,
        error: crate::plan::ForecastError::NONE,
    })
}

/// A tiny pause-and-resume instance in whole slots: slot `i` has intensity `values[i]`, the
/// horizon (deadline) is the end of the last slot, the job needs `work` slots of runtime.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct SmallInstance {
    pub values: Vec<f64>,
    pub work: u32,
    pub min_run: u32,
    pub min_pause: u32,
    pub max_pauses: Option<u32>,
    pub overhead: u32,
    /// `Some(k)`: the job has been running for `k` slots at slot 0 (so a gap before the
    /// first run is a pause); `None`: not started.
    pub running_for: Option<u32>,
}

/// Largest instance [`brute_force`] accepts (2^n schedules).
#[cfg(test)]
pub const BRUTE_FORCE_MAX_SLOTS: usize = 16;

/// The exact optimum of a [`SmallInstance`] over all slot-aligned schedules, by
/// enumeration: `(cost in intensity·slots, run mask)`, or None if no schedule is valid or
/// the instance is too large. The last run ends the job, so it is exempt from `min_run`;
/// every other rule is checked as stated in [`Constraints`].
#[cfg(test)]
pub fn brute_force(inst: &SmallInstance) -> Option<(f64, u32)> {
    let n = inst.values.len();
    if n == 0 || n > BRUTE_FORCE_MAX_SLOTS {
        return None;
    }
    let mut best: Option<(f64, u32)> = None;
    for mask in 1u32..(1u32 << n) {
        // Runs as (start, end) slot indices.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut i = 0u32;
        while (i as usize) < n {
            if mask >> i & 1 == 1 {
                let s = i;
                while (i as usize) < n && mask >> i & 1 == 1 {
                    i += 1;
                }
                runs.push((s, i));
            } else {
                i += 1;
            }
        }
        let running = inst.running_for.is_some();
        let ran = inst.running_for.unwrap_or(0);
        let lead = running && runs[0].0 > 0;
        let pauses = runs.len() as u32 - 1 + u32::from(lead);
        if mask.count_ones() != inst.work + inst.overhead * pauses {
            continue;
        }
        if inst.max_pauses.is_some_and(|m| pauses > m) {
            continue;
        }
        if lead && (runs[0].0 < inst.min_pause || ran < inst.min_run) {
            continue;
        }
        let gaps_ok = runs.windows(2).all(|w| w[1].0 - w[0].1 >= inst.min_pause);
        let runs_ok = runs[..runs.len() - 1]
            .iter()
            .enumerate()
            .all(|(j, &(s, e))| {
                let carried = if j == 0 && running && s == 0 { ran } else { 0 };
                e - s + carried >= inst.min_run
            });
        if !gaps_ok || !runs_ok {
            continue;
        }
        let cost: f64 = (0..n)
            .filter(|&k| mask >> k & 1 == 1)
            .map(|k| inst.values[k])
            .sum();
        if best.is_none_or(|(c, _)| cost < c) {
            best = Some((cost, mask));
        }
    }
    best
}

/// The cheapest contiguous window of `len` seconds in `[from, to)` over every whole-second
/// start, by direct integration: the exhaustive reference for flexible start.
#[cfg(test)]
pub fn brute_force_window(
    series: &Series,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    len_secs: i64,
) -> Option<(DateTime<Utc>, f64)> {
    let span = (to - from).num_seconds() - len_secs;
    let mut best: Option<(DateTime<Utc>, f64)> = None;
    for s in 0..=span {
        let a = from + chrono::TimeDelta::seconds(s);
        let c = series
            .integrate(a, a + chrono::TimeDelta::seconds(len_secs))
            .ok()?;
        if best.is_none_or(|(_, bc)| c < bc) {
            best = Some((a, c));
        }
    }
    best
}
