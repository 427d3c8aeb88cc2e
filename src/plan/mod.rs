//! PURE scheduling core: given what is known of the grid, the work left and the deadline,
//! decide whether a job should run now and when its next transition is.
//!
//! No kube, no I/O, no clock: `now` is an argument. The controller, `carbonshift simulate`
//! and `carbonshift plan -f` all call [`decide`], so the simulator measures what the
//! operator does. The operator calls it again at every planned transition and whenever a
//! fresh forecast arrives (receding horizon); only the first action of a plan is ever
//! executed before the next call.

use chrono::{DateTime, Utc};

use crate::series::Series;

/// Which scheduling policy to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Start at once, run to completion.
    RunNow,
    /// Delay the start into the cleanest contiguous window that still ends by the deadline;
    /// once started, never pause.
    FlexibleStart,
    /// Run only in the cleanest slots before the deadline, pausing in between.
    PauseAndResume,
    /// Run while intensity is below the limit (gCO2eq/kWh), deadline permitting.
    Threshold { max_gco2_per_kwh: f64 },
}

/// What a real training job needs from a schedule: checkpointing is not free.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Constraints {
    /// Once started (or resumed), run at least this long before pausing.
    pub min_run_secs: i64,
    /// Once paused, stay paused at least this long.
    pub min_pause_secs: i64,
    /// At most this many pauses over the job's life (None: unlimited).
    pub max_pauses: Option<u32>,
    /// Extra runtime each pause costs (restore from checkpoint, warm-up).
    pub checkpoint_overhead_secs: i64,
}

/// Whether the job is currently running, and since when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JobState {
    /// Never started yet.
    NotStarted,
    /// Running since the given instant (start or last resume).
    Running { since: DateTime<Utc> },
    /// Paused since the given instant.
    Paused { since: DateTime<Utc> },
}

/// Everything a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    pub now: DateTime<Utc>,
    /// Runtime the job still needs, in seconds (excluding future checkpoint overhead).
    pub remaining_secs: i64,
    pub deadline: DateTime<Utc>,
    pub strategy: Strategy,
    pub constraints: Constraints,
    pub state: JobState,
    /// Pauses already taken (counts against `constraints.max_pauses`).
    pub pauses_so_far: u32,
    /// What is known of the grid. It should cover `now`; where it ends before the deadline
    /// the caller extends it first (see [`horizon::planning_series`]).
    pub forecast: &'a Series,
    /// What the forecast's error is expected to be by lead time ([`ForecastError::NONE`]
    /// for one known to be exact): the plan corrects its bias and does not pause or delay
    /// for a gain within it (see [`uncertain`]).
    pub error: ForecastError,
}

/// The action to take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Run,
    Pause,
}

/// A planned run interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Why the decision came out as it did (for status conditions and Events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The plan puts this slot among the cleanest.
    CleanWindow,
    /// A cleaner window comes later.
    WaitingForCleanerWindow,
    /// Slack ran out: the deadline guard forces the job to run.
    DeadlineGuard,
    /// The deadline cannot be met even running continuously from now.
    DeadlineInfeasible,
    /// Intensity is below the configured threshold.
    BelowThreshold,
    /// Intensity is above the configured threshold.
    AboveThreshold,
    /// Run-now strategy.
    RunNow,
    /// A constraint (min run/pause, max pauses) holds the current state.
    Constraint,
    /// No work left by the runtime estimate (`expectedDuration`): a job still running
    /// past it is never paused again and runs to completion.
    EstimateExceeded,
    /// Waiting would gain less than the forecast's expected error (see [`uncertain`]).
    WithinForecastError,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub action: Action,
    pub reason: Reason,
    /// When the action should next change if the forecast holds (None: run to completion).
    pub next_transition: Option<DateTime<Utc>>,
    /// The planned run intervals from `now` on, in order, covering the remaining work
    /// (plus checkpoint overhead of planned pauses) and ending by the deadline when feasible.
    pub intervals: Vec<Interval>,
    /// Expected emissions of the planned intervals per kW of power, (g/kWh)·h, from the
    /// forecast.
    pub expected_grams_per_kw: f64,
}

pub mod error;
pub mod horizon;
pub mod oracle;
pub mod spatial;

mod grid;
mod lagrange;
#[cfg(test)]
mod spatial_tests;
mod strategies;
#[cfg(test)]
mod tests;
pub mod uncertain;

pub use error::ForecastError;

use grid::{at, offset_ms, Grid, MS_PER_HOUR};
use strategies::{Outcome, Problem};

/// The `remaining_secs` to pass to [`decide`]: the expected runtime, plus the restore
/// overhead of every pause taken so far, minus the runtime accrued.
///
/// This is the contract with callers: `remaining_secs` excludes the overhead of FUTURE
/// pauses (the planner adds those for the pauses it plans) but includes that of pauses
/// already taken, which the job has to pay back when it resumes. Never negative.
pub fn remaining_work_secs(
    expected_runtime_secs: i64,
    runtime_so_far_secs: i64,
    pauses_so_far: u32,
    constraints: &Constraints,
) -> i64 {
    let overhead = constraints
        .checkpoint_overhead_secs
        .max(0)
        .saturating_mul(i64::from(pauses_so_far));
    expected_runtime_secs
        .saturating_add(overhead)
        .saturating_sub(runtime_so_far_secs.max(0))
        .max(0)
}

/// The decision when no forecast is available at all: the current state is held (a
/// running job keeps running, a waiting or paused one waits, reason `Constraint`) until
/// the slack, the time to `deadline` less the remaining work, is down to `guard_secs`;
/// then the job runs (`DeadlineGuard`). Looked at again at least every `guard_secs`, a
/// waiting job therefore starts with slack to spare. No work left is
/// `Run`/`EstimateExceeded`, as in [`decide`]. Plans no intervals (there is nothing to plan
/// them with).
pub fn decide_without_forecast(
    now: DateTime<Utc>,
    remaining_secs: i64,
    deadline: DateTime<Utc>,
    state: JobState,
    guard_secs: i64,
) -> Plan {
    let running = matches!(state, JobState::Running { .. });
    let slack = (deadline - now)
        .num_seconds()
        .saturating_sub(remaining_secs);
    let (action, reason) = if remaining_secs <= 0 {
        (Action::Run, Reason::EstimateExceeded)
    } else if slack <= guard_secs {
        (Action::Run, Reason::DeadlineGuard)
    } else if running {
        (Action::Run, Reason::Constraint)
    } else {
        (Action::Pause, Reason::Constraint)
    };
    Plan {
        action,
        reason,
        next_transition: None,
        intervals: Vec::new(),
        expected_grams_per_kw: 0.0,
    }
}

/// Decide what to do now. Pure and deterministic; never panics.
///
/// Degenerate inputs get a usable answer: no work left is `Run`/`EstimateExceeded` with no
/// intervals; a deadline that cannot be met (including one in the past) is
/// `Run`/`DeadlineInfeasible` (finish as early as possible); a forecast that does not cover
/// `[now, deadline)` is taken at its mean where it is missing.
pub fn decide(req: &PlanRequest<'_>) -> Plan {
    let now = req.now;
    if req.remaining_secs <= 0 {
        return Plan {
            action: Action::Run,
            reason: Reason::EstimateExceeded,
            next_transition: None,
            intervals: Vec::new(),
            expected_grams_per_kw: 0.0,
        };
    }
    let work = req.remaining_secs.saturating_mul(1000);
    let deadline = offset_ms(now, req.deadline);
    // Run straight through from now: the deadline is already out of reach, or the
    // strategy never waits.
    let run_through = |reason| {
        let grid = Grid::new(req.forecast, now, work, &[]);
        finish(
            now,
            &grid,
            Outcome {
                blocks: vec![(0, work)],
                reason,
            },
        )
    };
    if work > deadline {
        return run_through(Reason::DeadlineInfeasible);
    }
    if req.strategy == Strategy::RunNow {
        return run_through(Reason::RunNow);
    }
    let problem = problem_of(req, work, deadline);
    // Planned on the forecast less its expected bias; the plan's expected grams are the
    // forecast's own (what `plan -f` rows add up to).
    let debiased = uncertain::debiased(req.forecast, now, &req.error);
    let forecast = debiased.as_ref().unwrap_or(req.forecast);
    let grid = Grid::new(
        forecast,
        now,
        deadline,
        &[problem.run_lock, problem.pause_lock],
    );
    let err = &req.error;
    let out = match req.strategy {
        Strategy::RunNow => Outcome {
            blocks: vec![(0, work)],
            reason: Reason::RunNow,
        },
        Strategy::FlexibleStart => {
            let out = strategies::flexible_start(&grid, &problem);
            uncertain::hold_back(&grid, &problem, out, err, strategies::flexible_start)
        }
        Strategy::PauseAndResume => {
            let out = strategies::pause_and_resume(&grid, &problem);
            uncertain::hold_back(&grid, &problem, out, err, strategies::pause_and_resume)
        }
        Strategy::Threshold { max_gco2_per_kwh } => {
            strategies::threshold(&grid, &problem, max_gco2_per_kwh)
        }
    };
    match debiased {
        Some(_) => finish(now, &Grid::new(req.forecast, now, deadline, &[]), out),
        None => finish(now, &grid, out),
    }
}

/// Normalises a feasible request (`0 < work <= deadline`, in ms from now) to milliseconds
/// and resolves the locks the job state implies.
fn problem_of(req: &PlanRequest<'_>, work: i64, deadline: i64) -> Problem {
    let c = &req.constraints;
    let ms = |s: i64| s.max(0).saturating_mul(1000);
    let (min_run, min_pause, pause_overhead) = (
        ms(c.min_run_secs),
        ms(c.min_pause_secs),
        ms(c.checkpoint_overhead_secs),
    );
    let allowed = c.max_pauses.map(|m| m.saturating_sub(req.pauses_so_far));
    let (running, ran, run_lock, pause_lock) = match req.state {
        JobState::NotStarted => (false, 0, 0, 0),
        JobState::Running { since } => {
            let ran = offset_ms(since, req.now).max(0);
            (true, ran, (min_run - ran).clamp(0, work), 0)
        }
        JobState::Paused { since } => {
            let paused = offset_ms(since, req.now).max(0);
            // The guard overrides min_pause: never wait past the latest start.
            (false, 0, 0, (min_pause - paused).clamp(0, deadline - work))
        }
    };
    Problem {
        deadline,
        work,
        pause_overhead,
        min_run,
        min_pause,
        allowed,
        running,
        ran,
        run_lock,
        pause_lock,
    }
}

/// The plan of `out`, its expected grams integrated on `grid`.
fn finish(now: DateTime<Utc>, grid: &Grid, out: Outcome) -> Plan {
    let blocks = out.blocks;
    let (action, next) = match blocks.first() {
        Some(&(0, end)) if blocks.len() > 1 => (Action::Run, Some(at(now, end))),
        Some(&(0, _)) | None => (Action::Run, None),
        Some(&(start, _)) => (Action::Pause, Some(at(now, start))),
    };
    let grams = grid.cost_of(&blocks) / MS_PER_HOUR;
    Plan {
        action,
        reason: out.reason,
        next_transition: next,
        intervals: blocks
            .iter()
            .map(|&(a, b)| Interval {
                start: at(now, a),
                end: at(now, b),
            })
            .collect(),
        expected_grams_per_kw: grams,
    }
}
