//! Offline replay of real intensity traces through the SAME planning and accounting code the
//! operator runs. Pure: the clock is the simulated `t`, the data are arguments.
//!
//! A job is submitted every `submit_every` and must finish within `duration + slack`. For
//! each receding-horizon strategy the job is a CarbonAwareJob driven by the controller's
//! own build step (`job`): at each step it sees the forecast the operator's cache would
//! hold (issued at the last refresh, limited to the horizon, after the observed past),
//! a simulated child Job whose pod is Ready `startup` after each start or resume, and the
//! operator's deadline margin; the ledger it keeps (integrated over the actuals) is the
//! job's emissions. The oracles plan once on the actuals over the whole window
//! ([`plan::oracle::schedule`]): they bound what any forecast could achieve.
//!
//! Jobs start after one day of the trace (`WARMUP`) so persistence and the history profile
//! have a day to learn from; every strategy and forecast model sees the same job set.

pub mod forecast;
pub(crate) mod job;
pub mod noise;
pub mod regions;

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;

use crate::accounting::{self, PowerModel};
use crate::data::Vintage;
use crate::duration::format_secs;
use crate::plan::{self, Constraints, Interval, Strategy};
use crate::series::Series;
use crate::timefmt;
pub use forecast::{ForecastCache, ForecastModel, Forecaster};

/// History the first job may learn from (persistence needs a full day).
pub const WARMUP_SECS: i64 = 86_400;
/// Trailing history for the beyond-horizon daily profile and the threshold percentile.
pub const HISTORY_SECS: i64 = 14 * 86_400;
/// Observed past the operator's forecast cache keeps ([`crate::forecast::CacheSettings`]),
/// which its beyond-horizon profile is learnt from.
pub const OPERATOR_HISTORY_SECS: i64 = 3 * 86_400;
/// What the traces `simulate` replays measure: the embedded Electricity Maps zones are
/// direct *average* intensities, and a `--trace` file is taken to be one too.
pub const SIGNAL: crate::forecast::Signal = crate::forecast::Signal::Average;
/// Forecast refresh cadence for the hourly-issued models (real APIs update about hourly).
pub const REFRESH_SECS: i64 = 3_600;

/// Bad simulation input (a user error) or a broken invariant (a bug, reported, not panicked).
#[derive(Debug, Error, PartialEq)]
pub enum SimError {
    #[error("{0}")]
    Input(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The strategies `simulate` compares: the CRD's strategies (`RunNow`, `FlexibleStart`,
/// `PauseAndResume`, `Threshold`) in kebab-case, and the perfect-foresight oracles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    RunNow,
    FlexibleStart,
    PauseAndResume,
    Threshold,
    OracleFlexibleStart,
    OraclePauseAndResume,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::RunNow,
        StrategyKind::FlexibleStart,
        StrategyKind::PauseAndResume,
        StrategyKind::Threshold,
        StrategyKind::OracleFlexibleStart,
        StrategyKind::OraclePauseAndResume,
    ];

    /// Names that `--strategy` still accepts for a while, with the one that replaced each.
    pub const DEPRECATED_NAMES: [(&'static str, StrategyKind); 2] = [
        ("pause-resume", StrategyKind::PauseAndResume),
        ("oracle-pause-resume", StrategyKind::OraclePauseAndResume),
    ];

    pub fn name(&self) -> &'static str {
        match self {
            StrategyKind::RunNow => "run-now",
            StrategyKind::FlexibleStart => "flexible-start",
            StrategyKind::PauseAndResume => "pause-and-resume",
            StrategyKind::Threshold => "threshold",
            StrategyKind::OracleFlexibleStart => "oracle-flexible-start",
            StrategyKind::OraclePauseAndResume => "oracle-pause-and-resume",
        }
    }

    /// The strategy named `s`, by its name or a deprecated one.
    pub fn parse(s: &str) -> Option<StrategyKind> {
        Self::ALL.into_iter().find(|k| k.name() == s).or_else(|| {
            Self::DEPRECATED_NAMES
                .into_iter()
                .find(|(old, _)| *old == s)
                .map(|(_, k)| k)
        })
    }

    fn is_oracle(&self) -> bool {
        matches!(
            self,
            StrategyKind::OracleFlexibleStart | StrategyKind::OraclePauseAndResume
        )
    }
}

/// The ground truth and, for the `vintages` model, the real forecasts.
#[derive(Debug, Clone, Copy)]
pub struct Truth<'a> {
    pub actuals: &'a Series,
    pub vintages: &'a [Vintage],
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub duration_secs: i64,
    pub slack_secs: i64,
    pub submit_every_secs: i64,
    pub horizon_secs: i64,
    pub forecast: ForecastModel,
    /// Strategies to report; run-now and oracle-pause-and-resume are always computed because
    /// savings and oracle fractions are relative to them.
    pub strategies: Vec<StrategyKind>,
    pub constraints: Constraints,
    /// Fixed threshold (g/kWh); None: per job, the percentile `100 * duration / (duration +
    /// slack)` of the trailing 14 days, i.e. the level below which the grid historically
    /// spent just enough of such a window to fit the job.
    pub threshold: Option<f64>,
    /// Constant power draw of the job, kW.
    pub power_kw: f64,
    /// The operator's `--deadline-margin`: plans aim to finish this long before the
    /// deadline, as far as the slack allows.
    pub deadline_margin_secs: i64,
    /// Seconds from unsuspending the child Job to its pod being Ready (scheduling, image
    /// pull, container start): not work, and the deadline guard plans for it.
    pub startup_secs: i64,
}

/// One job's outcome under one strategy.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub submitted: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// None: the trace ended before the job did (counted as a deadline miss).
    pub finished: Option<DateTime<Utc>>,
    pub emissions_g: f64,
    pub pauses: u32,
    /// Intervals during which the job ran.
    pub runs: Vec<Interval>,
}

impl JobRun {
    /// A job submitted at `submitted` that has not run yet.
    pub fn new(submitted: DateTime<Utc>, deadline: DateTime<Utc>) -> Self {
        Self {
            submitted,
            deadline,
            finished: None,
            emissions_g: 0.0,
            pauses: 0,
            runs: Vec::new(),
        }
    }

    pub fn missed_deadline(&self) -> bool {
        self.finished.is_none_or(|f| f > self.deadline)
    }
}

/// Totals for one strategy.
#[derive(Debug, Clone)]
pub struct StrategyReport {
    pub strategy: StrategyKind,
    pub emissions_g: f64,
    pub savings_pct: f64,
    /// savings / oracle-pause-and-resume savings; None when the oracle saves nothing.
    pub oracle_fraction: Option<f64>,
    pub deadline_misses: usize,
    pub pauses_per_job: f64,
    pub jobs: Vec<JobRun>,
}

#[derive(Debug, Clone)]
pub struct SimReport {
    pub jobs: usize,
    /// Emissions of run-now, g: the baseline every saving is relative to (computed even
    /// when run-now is not among the reported strategies).
    pub baseline_g: f64,
    /// In the order of `SimConfig::strategies`.
    pub results: Vec<StrategyReport>,
}

/// Validates the configuration against the truth and returns the submission times.
pub fn submissions(truth: &Truth<'_>, cfg: &SimConfig) -> Result<Vec<DateTime<Utc>>, SimError> {
    let input = |m: String| Err(SimError::Input(m));
    let actuals = truth.actuals;
    let step = actuals.step_secs();
    if cfg.duration_secs <= 0 {
        return input("--duration must be positive".into());
    }
    if cfg.slack_secs <= 0 {
        return input("--slack must be positive: with no slack every strategy is run-now".into());
    }
    if cfg.slack_secs < step {
        return input(format!(
            "--slack {} is shorter than the trace step {}: there is nothing to shift into",
            format_secs(cfg.slack_secs),
            format_secs(step)
        ));
    }
    if cfg.submit_every_secs <= 0 {
        return input("--submit-every must be positive".into());
    }
    if cfg.horizon_secs <= 0 {
        return input("--horizon must be positive".into());
    }
    if !(cfg.power_kw.is_finite() && cfg.power_kw > 0.0) {
        return input("power must be a positive number of kW".into());
    }
    if let Some(th) = cfg.threshold {
        if !(th.is_finite() && th >= 0.0) {
            return input(format!(
                "--threshold {th} must be a non-negative number of g/kWh"
            ));
        }
    }
    let first = if cfg.forecast == ForecastModel::Vintages {
        match truth.vintages.first() {
            Some(v) => v.issued_at.max(actuals.start()),
            None => {
                return input("the vintages forecast needs the NESO vintages (region GB)".into())
            }
        }
    } else {
        actuals.start() + TimeDelta::seconds(WARMUP_SECS)
    };
    let window = TimeDelta::seconds(cfg.duration_secs + cfg.slack_secs);
    let every = TimeDelta::seconds(cfg.submit_every_secs);
    let mut out = Vec::new();
    let mut t = first;
    while t + window <= actuals.end() {
        out.push(t);
        t += every;
    }
    if out.is_empty() {
        return input(too_short(actuals, first, cfg));
    }
    Ok(out)
}

/// Why no job fits between `first` (the first submission) and the trace's end, with
/// numbers that add up: the trace's span, and what one job needs from the trace's start.
fn too_short(actuals: &Series, first: DateTime<Utc>, cfg: &SimConfig) -> String {
    let lead = (first - actuals.start()).num_seconds();
    let need = lead + cfg.duration_secs + cfg.slack_secs;
    let lead_text = if lead == 0 {
        String::new()
    } else if cfg.forecast == ForecastModel::Vintages {
        format!("{} until the first NESO vintage + ", format_secs(lead))
    } else {
        format!("{} of history + ", format_secs(lead))
    };
    format!(
        "the trace is too short for one job: it covers {} to {} ({}), but one job needs {}: \
         {lead_text}{} duration + {} slack, until {}",
        timefmt::format(actuals.start()),
        timefmt::format(actuals.end()),
        format_secs((actuals.end() - actuals.start()).num_seconds()),
        format_secs(need),
        format_secs(cfg.duration_secs),
        format_secs(cfg.slack_secs),
        timefmt::format(actuals.start() + TimeDelta::seconds(need)),
    )
}

/// Runs every job under every strategy.
pub fn simulate(truth: &Truth<'_>, cfg: &SimConfig) -> Result<SimReport, SimError> {
    simulate_with_progress(truth, cfg, &|| {})
}

/// [`simulate`], calling `job_done` (from any of the worker threads) each time a job has
/// been run under every strategy: `submissions(truth, cfg)?.len()` calls in all.
pub fn simulate_with_progress(
    truth: &Truth<'_>,
    cfg: &SimConfig,
    job_done: &(dyn Fn() + Sync),
) -> Result<SimReport, SimError> {
    let submits = submissions(truth, cfg)?;
    let forecaster = Forecaster::new(
        truth.actuals,
        truth.vintages,
        cfg.forecast,
        cfg.horizon_secs,
        REFRESH_SECS.max(truth.actuals.step_secs()),
        OPERATOR_HISTORY_SECS,
    );
    let mut kinds = vec![StrategyKind::RunNow, StrategyKind::OraclePauseAndResume];
    for k in &cfg.strategies {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    let mut runs: Vec<(StrategyKind, Vec<JobRun>)> = kinds
        .iter()
        .map(|k| (*k, Vec::with_capacity(submits.len())))
        .collect();
    for chunk in run_chunks(truth, &forecaster, cfg, &kinds, &submits, job_done)? {
        for per_job in chunk {
            for ((_, jobs), run) in runs.iter_mut().zip(per_job) {
                jobs.push(run);
            }
        }
    }
    let total = |k: StrategyKind| -> f64 {
        runs.iter()
            .find(|(kind, _)| *kind == k)
            .map_or(0.0, |(_, j)| j.iter().map(|r| r.emissions_g).sum())
    };
    let base = total(StrategyKind::RunNow);
    let oracle_savings = savings_pct(total(StrategyKind::OraclePauseAndResume), base);
    let n = submits.len();
    let mut results = Vec::new();
    for k in &cfg.strategies {
        let Some((_, jobs)) = runs.iter().find(|(kind, _)| kind == k) else {
            continue;
        };
        results.push(strategy_report(*k, jobs.clone(), base, oracle_savings));
    }
    Ok(SimReport {
        jobs: n,
        baseline_g: base,
        results,
    })
}

/// `100 * (1 - emissions / base)`; 0 when the base is not positive.
pub fn savings_pct(emissions_g: f64, base_g: f64) -> f64 {
    if base_g > 0.0 {
        100.0 * (1.0 - emissions_g / base_g)
    } else {
        0.0
    }
}

/// The totals of `kind` over `jobs`: savings against `base_g`, oracle fraction against
/// `oracle_savings` (the oracle-pause-and-resume savings against the same base).
fn strategy_report(
    kind: StrategyKind,
    jobs: Vec<JobRun>,
    base_g: f64,
    oracle_savings: f64,
) -> StrategyReport {
    let emissions_g: f64 = jobs.iter().map(|r| r.emissions_g).sum();
    let savings_pct = savings_pct(emissions_g, base_g);
    let n = jobs.len().max(1) as f64;
    StrategyReport {
        strategy: kind,
        emissions_g,
        savings_pct,
        // Below a hundredth of a percent the oracle's savings are rounding noise (CA-QC).
        oracle_fraction: (oracle_savings.abs() > 0.01).then(|| savings_pct / oracle_savings),
        deadline_misses: jobs.iter().filter(|r| r.missed_deadline()).count(),
        pauses_per_job: jobs.iter().map(|r| r.pauses as f64).sum::<f64>() / n,
        jobs,
    }
}

/// Every job under every strategy, the submissions split into one consecutive chunk per
/// available core (see [`in_chunks`]). Within a chunk, job by job, every strategy in turn,
/// so the cache only holds the issues of the jobs in flight. Returns, per chunk in order,
/// per job, the runs in `kinds` order.
fn run_chunks(
    truth: &Truth<'_>,
    forecaster: &Forecaster<'_>,
    cfg: &SimConfig,
    kinds: &[StrategyKind],
    submits: &[DateTime<Utc>],
    job_done: &(dyn Fn() + Sync),
) -> Result<Vec<Vec<Vec<JobRun>>>, SimError> {
    let chunk = |part: &[DateTime<Utc>]| -> Result<Vec<Vec<JobRun>>, SimError> {
        let mut cache = ForecastCache::new();
        let mut out = Vec::with_capacity(part.len());
        for &s in part {
            // The issue in force at submission may predate it by up to one refresh.
            cache.evict_before(forecaster.issue_at(s).issued_at);
            let runs = kinds
                .iter()
                .map(|k| run_job(truth, forecaster, &mut cache, cfg, *k, s))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(runs);
            job_done();
        }
        Ok(out)
    };
    in_chunks(submits, &chunk)
}

/// `chunk` over the submissions split into one consecutive chunk per available core (jobs
/// are independent; each chunk keeps its own forecast caches), the chunks' results in
/// order. A panicking thread is an internal error, not a panic.
fn in_chunks<T: Send, F>(submits: &[DateTime<Utc>], chunk: &F) -> Result<Vec<T>, SimError>
where
    F: Fn(&[DateTime<Utc>]) -> Result<T, SimError> + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16);
    let per = submits.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = submits
            .chunks(per)
            .map(|part| scope.spawn(move || chunk(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(SimError::Internal("a simulation thread panicked".into()))
                })
            })
            .collect()
    })
}

/// Grams emitted running at `power_kw` over `[from, to)` on the actuals, through the same
/// accounting function the controller's ledger uses.
fn emitted(
    actuals: &Series,
    power_kw: f64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<f64, SimError> {
    let power = PowerModel {
        watts: power_kw * 1000.0,
        pue: 1.0,
    };
    accounting::emissions_grams(&power, actuals, from, to)
        .map_err(|e| SimError::Internal(e.to_string()))
}

fn strategy_for(
    kind: StrategyKind,
    truth: &Truth<'_>,
    cfg: &SimConfig,
    submit: DateTime<Utc>,
) -> Strategy {
    match kind {
        StrategyKind::RunNow => Strategy::RunNow,
        StrategyKind::FlexibleStart | StrategyKind::OracleFlexibleStart => Strategy::FlexibleStart,
        StrategyKind::PauseAndResume | StrategyKind::OraclePauseAndResume => {
            Strategy::PauseAndResume
        }
        StrategyKind::Threshold => Strategy::Threshold {
            max_gco2_per_kwh: cfg.threshold.unwrap_or_else(|| {
                let p = cfg.duration_secs as f64 / (cfg.duration_secs + cfg.slack_secs) as f64;
                trailing_percentile(truth.actuals, submit, p)
            }),
        },
    }
}

/// The `p`-quantile (0..1) of the complete slots in the `HISTORY_SECS` before `t`.
fn trailing_percentile(actuals: &Series, t: DateTime<Utc>, p: f64) -> f64 {
    let from = t - TimeDelta::seconds(HISTORY_SECS);
    let mut v: Vec<f64> = match actuals.slice(from, t) {
        Some(h) => h
            .values()
            .iter()
            .enumerate()
            .filter(|(i, _)| h.slot_start(*i) + TimeDelta::seconds(h.step_secs()) <= t)
            .map(|(_, x)| *x)
            .collect(),
        None => Vec::new(),
    };
    if v.is_empty() {
        return actuals.mean();
    }
    v.sort_by(f64::total_cmp);
    let idx = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

fn run_job(
    truth: &Truth<'_>,
    fc: &Forecaster<'_>,
    cache: &mut ForecastCache,
    cfg: &SimConfig,
    kind: StrategyKind,
    submit: DateTime<Utc>,
) -> Result<JobRun, SimError> {
    let strategy = strategy_for(kind, truth, cfg, submit);
    if kind.is_oracle() {
        let deadline = submit + TimeDelta::seconds(cfg.duration_secs + cfg.slack_secs);
        return run_oracle(truth, cfg, strategy, submit, deadline);
    }
    job::run(truth.actuals, fc, cache, cfg, strategy, submit)
}

/// Perfect foresight over the whole window, planned once and executed as planned.
fn run_oracle(
    truth: &Truth<'_>,
    cfg: &SimConfig,
    strategy: Strategy,
    submit: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> Result<JobRun, SimError> {
    let actuals = truth.actuals;
    let window = actuals.slice(submit, deadline).ok_or_else(|| {
        SimError::Internal(format!(
            "no actuals for {} .. {}",
            timefmt::format(submit),
            timefmt::format(deadline)
        ))
    })?;
    let plan = plan::oracle::schedule(
        strategy,
        &window,
        submit,
        cfg.duration_secs,
        deadline,
        cfg.constraints,
    );
    let mut job = JobRun::new(submit, deadline);
    let mut worked = 0;
    for iv in &plan.intervals {
        if iv.end <= iv.start {
            continue;
        }
        job.emissions_g += emitted(actuals, cfg.power_kw, iv.start, iv.end)?;
        worked += (iv.end - iv.start).num_seconds();
        match job.runs.last_mut() {
            Some(last) if last.end == iv.start => last.end = iv.end,
            _ => job.runs.push(*iv),
        }
    }
    job.pauses = job.runs.len().saturating_sub(1) as u32;
    // The planner's intervals should also hold each pause's checkpoint overhead; only the
    // work itself is checked, so a planner that omits overhead shows as optimistic oracles
    // rather than a failed run.
    let needed = cfg.duration_secs;
    if worked < needed {
        return Err(SimError::Internal(format!(
            "oracle plan for the job submitted at {submit} covers {} of the {} needed",
            format_secs(worked),
            format_secs(needed)
        )));
    }
    job.finished = job.runs.last().map(|r| r.end);
    Ok(job)
}

#[cfg(test)]
mod tests;
