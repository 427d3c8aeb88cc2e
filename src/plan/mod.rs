//! PURE scheduling core: given what is known of the grid, the work left and the deadline,
//! decide whether a job should run now and when its next transition is.
//!
//! No kube, no I/O, no clock: `now` is an argument. The controller, `carbonshift simulate`
//! and `carbonshift plan -f` all call [`decide`], so the simulator measures what the
//! operator does. The operator calls it again at every planned transition and whenever a
//! fresh forecast arrives (receding horizon); only the first action of a plan is ever
//! executed before the next call.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::series::Series;

/// Which scheduling policy to apply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Start at once, run to completion.
    RunNow,
    /// Delay the start into the cleanest contiguous window that still ends by the deadline;
    /// once started, never pause.
    FlexibleStart,
    /// Run only in the cleanest slots before the deadline, pausing in between.
    PauseResume,
    /// Run while intensity is below the limit (gCO2eq/kWh), deadline permitting.
    Threshold { max_gco2_per_kwh: f64 },
}

/// What a real training job needs from a schedule: checkpointing is not free.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
    /// the caller extends it first (see [`horizon::extend_with_profile`]).
    pub forecast: &'a Series,
}

/// The action to take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Run,
    Pause,
}

/// A planned run interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Why the decision came out as it did (for status conditions and Events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// No work left.
    Done,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

pub mod horizon;

/// Decide what to do now. Pure and deterministic.
pub fn decide(_req: &PlanRequest<'_>) -> Plan {
    todo!("implemented in plan::strategies")
}
