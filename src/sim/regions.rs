//! Multi-region replay (spatial shifting): the same jobs, each of which may run in any of
//! several regions. Pure, like the rest of [`super`].
//!
//! The first region is "home". Each receding-horizon strategy picks the region once, at
//! submission, with [`crate::plan::spatial::choose`]: the job planned with [`crate::plan::decide`] in every
//! region's forecast as the operator's cache would hold it at that instant (each region its
//! own [`Forecaster`], the noisy model seeded per region by [`region_model`]), ranked by
//! expected emissions, a draw going home. The job then runs in that region through the
//! single-region replay (`sim::job`) and never migrates. `run-now` picks the region
//! whose forecast is cleanest for running at once; `threshold` picks its region as
//! pause-and-resume does (its limit is each region's own percentile, so one request does not
//! compare regions) and runs with that region's limit; the oracles choose region and
//! schedule on every region's actuals.
//!
//! Alongside, every job also runs run-now in each region ("fixed" regions) and
//! flexible-start and pause-and-resume at home only ("temporal" shifting alone); savings are
//! relative to run-now at home, and [`RegionsReport::comparison`] sets the spatial results
//! against each of those references.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    in_chunks, job, run_oracle, savings_pct, strategy_for, strategy_report, submissions,
    ForecastCache, ForecastModel, Forecaster, JobRun, SimConfig, SimError, StrategyKind,
    StrategyReport, Truth, OPERATOR_HISTORY_SECS, REFRESH_SECS,
};
use crate::controller::build::planning_deadline;
use crate::duration::format_secs;
use crate::plan::horizon::{planning_series, DailyProfile};
use crate::plan::spatial::{choose, Candidate};
use crate::plan::{JobState, PlanRequest, Strategy};
use crate::series::Series;
use crate::timefmt;

/// Why `--forecast vintages` cannot drive a multi-region replay.
pub const VINTAGES_REFUSED: &str = "--forecast vintages exists only for GB (NESO), so it cannot \
forecast every region; use --forecast perfect, persistence or noisy with several regions";

/// One region of a multi-region replay, its actuals aligned with the others' ([`align`]).
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    pub name: &'a str,
    pub actuals: &'a Series,
}

/// One strategy with the region chosen per job.
#[derive(Debug, Clone)]
pub struct RegionalStrategy {
    /// Totals; `savings_pct` against run-now at home, `oracle_fraction` against the
    /// region-choosing oracle-pause-and-resume.
    pub report: StrategyReport,
    /// Per job, the index of the region it ran in.
    pub job_regions: Vec<usize>,
    /// Jobs per region, in the regions' order.
    pub region_jobs: Vec<usize>,
}

/// The outcome of [`simulate_regions`].
#[derive(Debug, Clone)]
pub struct RegionsReport {
    /// Region names, home first.
    pub regions: Vec<String>,
    pub jobs: usize,
    /// Emissions of run-now at home, g: the base of every `savings_pct` here.
    pub baseline_g: f64,
    /// The reported strategies (`SimConfig::strategies` order), region chosen per job.
    pub results: Vec<RegionalStrategy>,
    /// run-now in each region for every job, in the regions' order.
    pub fixed: Vec<StrategyReport>,
    /// flexible-start and pause-and-resume at home only (temporal shifting alone).
    pub temporal: Vec<StrategyReport>,
    /// run-now, flexible-start, pause-and-resume and oracle-pause-and-resume with region
    /// choice, whatever was reported: the columns of [`RegionsReport::comparison`].
    pub spatial: Vec<RegionalStrategy>,
}

/// What a row of [`RegionsReport::comparison`] is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Every job run-now in this region (index into `regions`; 0 is home).
    RunNowIn(usize),
    /// The fixed region with the least run-now emissions.
    BestFixed(usize),
    /// The fixed region with the most run-now emissions.
    WorstFixed(usize),
    /// flexible-start or pause-and-resume at home only.
    TemporalAtHome(StrategyKind),
}

/// One reference and the savings of each spatial result against it, %.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub against: Reference,
    pub emissions_g: f64,
    /// The reference's own savings against run-now at home.
    pub vs_home_pct: f64,
    /// run-now with region choice (spatial shifting alone).
    pub spatial_pct: f64,
    /// flexible-start with region choice.
    pub spatial_flexible_start_pct: f64,
    /// pause-and-resume with region choice.
    pub spatial_pause_and_resume_pct: f64,
    /// oracle-pause-and-resume with region choice: the most time and place could give.
    pub oracle_pct: f64,
}

impl RegionsReport {
    /// Index of the fixed region with the least (`best`) or most run-now emissions; a draw
    /// goes to the earlier region.
    pub fn fixed_extreme(&self, best: bool) -> usize {
        let mut pick = 0;
        for (i, r) in self.fixed.iter().enumerate() {
            let e = r.emissions_g;
            let p = self.fixed[pick].emissions_g;
            if (best && e < p) || (!best && e > p) {
                pick = i;
            }
        }
        pick
    }

    fn spatial_g(&self, k: StrategyKind) -> f64 {
        self.spatial
            .iter()
            .find(|r| r.report.strategy == k)
            .map_or(f64::NAN, |r| r.report.emissions_g)
    }

    /// The spatial results (run-now, flexible-start, pause-and-resume and the oracle, each
    /// choosing the region) against run-now in each region, the best and worst fixed region
    /// and temporal shifting alone at home.
    pub fn comparison(&self) -> Vec<Comparison> {
        let mut refs: Vec<(Reference, f64)> = self
            .fixed
            .iter()
            .enumerate()
            .map(|(i, r)| (Reference::RunNowIn(i), r.emissions_g))
            .collect();
        let (best, worst) = (self.fixed_extreme(true), self.fixed_extreme(false));
        refs.push((Reference::BestFixed(best), self.fixed[best].emissions_g));
        refs.push((Reference::WorstFixed(worst), self.fixed[worst].emissions_g));
        for t in &self.temporal {
            refs.push((Reference::TemporalAtHome(t.strategy), t.emissions_g));
        }
        let g = |k| self.spatial_g(k);
        refs.into_iter()
            .map(|(against, base)| Comparison {
                against,
                emissions_g: base,
                vs_home_pct: savings_pct(base, self.baseline_g),
                spatial_pct: savings_pct(g(StrategyKind::RunNow), base),
                spatial_flexible_start_pct: savings_pct(g(StrategyKind::FlexibleStart), base),
                spatial_pause_and_resume_pct: savings_pct(g(StrategyKind::PauseAndResume), base),
                oracle_pct: savings_pct(g(StrategyKind::OraclePauseAndResume), base),
            })
            .collect()
    }
}

/// The regions' actuals cut to the span they all cover. Refuses (as bad input) fewer than
/// two regions, a region named twice, different steps, traces that do not overlap and
/// slots that do not line up.
pub fn align(regions: &[(&str, &Series)]) -> Result<Vec<Series>, SimError> {
    let input = |m: String| Err(SimError::Input(m));
    if regions.len() < 2 {
        return input(
            "a multi-region simulation needs at least two regions (the first is home); \
             for one region use --region ZONE or a single --trace FILE"
                .into(),
        );
    }
    for (i, (a, _)) in regions.iter().enumerate() {
        if regions[..i].iter().any(|(b, _)| b.eq_ignore_ascii_case(a)) {
            return input(format!(
                "region {a} is given twice; list each region once (two trace files whose \
                 region column names the same region count as one region)"
            ));
        }
    }
    let (home, h) = regions[0];
    if let Some((name, s)) = regions.iter().find(|(_, s)| s.step_secs() != h.step_secs()) {
        return input(format!(
            "the traces have different steps: {home} {} and {name} {}; give traces on one step",
            format_secs(h.step_secs()),
            format_secs(s.step_secs())
        ));
    }
    let latest = regions
        .iter()
        .max_by_key(|(_, s)| s.start())
        .unwrap_or(&regions[0]);
    let earliest_end = regions
        .iter()
        .min_by_key(|(_, s)| s.end())
        .unwrap_or(&regions[0]);
    let (from, to) = (latest.1.start(), earliest_end.1.end());
    let span = |s: &Series| {
        format!(
            "{} .. {}",
            timefmt::format(s.start()),
            timefmt::format(s.end())
        )
    };
    if from >= to {
        return input(format!(
            "the traces of {} ({}) and {} ({}) do not overlap in time; choose regions that \
             cover a common period (`carbonshift zones` lists each zone's coverage) or a \
             --from/--to that every one covers",
            earliest_end.0,
            span(earliest_end.1),
            latest.0,
            span(latest.1)
        ));
    }
    let mut out = Vec::with_capacity(regions.len());
    for (name, s) in regions {
        match s.slice(from, to) {
            Some(c) if c.start() == from && c.end() == to => out.push(c),
            _ => {
                return input(format!(
                    "the slots of {name} and {} do not line up (they start at different \
                     offsets within a step); give traces on a common grid",
                    latest.0
                ))
            }
        }
    }
    Ok(out)
}

/// The forecast model of region `index` (0 is home) named `name`: the noisy model keeps
/// `--seed` at home (so home alone repeats a single-region run) and mixes the region's name
/// into it elsewhere, so every region's error is its own and repeats run to run.
pub fn region_model(model: ForecastModel, index: usize, name: &str) -> ForecastModel {
    match model {
        ForecastModel::Noisy { seed, absolute } if index > 0 => ForecastModel::Noisy {
            seed: seed ^ fnv1a(name),
            absolute,
        },
        m => m,
    }
}

/// FNV-1a, 64 bit: a hash that is the same on every platform and release.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Everything one chunk of jobs needs, shared by the worker threads.
struct Ctx<'a> {
    regions: &'a [Region<'a>],
    truths: Vec<Truth<'a>>,
    fcs: Vec<Forecaster<'a>>,
    cfg: &'a SimConfig,
    /// Strategies run with region choice.
    kinds: Vec<StrategyKind>,
}

/// One job's runs: run-now in each region, flexible-start and pause-and-resume at home,
/// and each of `Ctx::kinds` in the region it chose.
struct JobOutcome {
    fixed: Vec<JobRun>,
    temporal: Vec<JobRun>,
    chosen: Vec<(usize, JobRun)>,
}

/// The strategies at home alone, for the temporal-only references.
const TEMPORAL: [StrategyKind; 2] = [StrategyKind::FlexibleStart, StrategyKind::PauseAndResume];

/// Runs every job in every region and with region choice; see the module documentation.
pub fn simulate_regions(
    regions: &[Region<'_>],
    cfg: &SimConfig,
    job_done: &(dyn Fn() + Sync),
) -> Result<RegionsReport, SimError> {
    let ctx = context(regions, cfg)?;
    let submits = submissions(&ctx.truths[0], cfg)?;
    let chunk = |part: &[DateTime<Utc>]| -> Result<Vec<JobOutcome>, SimError> {
        let mut caches: Vec<ForecastCache> = regions.iter().map(|_| ForecastCache::new()).collect();
        let mut out = Vec::with_capacity(part.len());
        for &s in part {
            for (cache, fc) in caches.iter_mut().zip(&ctx.fcs) {
                cache.evict_before(fc.issue_at(s).issued_at);
            }
            out.push(run_one(&ctx, &mut caches, s)?);
            job_done();
        }
        Ok(out)
    };
    let outcomes: Vec<JobOutcome> = in_chunks(&submits, &chunk)?.into_iter().flatten().collect();
    Ok(report(&ctx, outcomes))
}

/// The per-region truths and forecasters, after refusing what a multi-region run cannot do.
fn context<'a>(regions: &'a [Region<'a>], cfg: &'a SimConfig) -> Result<Ctx<'a>, SimError> {
    let names: Vec<(&str, &Series)> = regions.iter().map(|r| (r.name, r.actuals)).collect();
    let aligned = align(&names)?;
    if aligned.iter().zip(regions).any(|(a, r)| a != r.actuals) {
        return Err(SimError::Input(
            "the regions' traces must cover the same span on the same grid (see sim::regions::align)"
                .into(),
        ));
    }
    if cfg.forecast == ForecastModel::Vintages {
        return Err(SimError::Input(VINTAGES_REFUSED.into()));
    }
    let truths: Vec<Truth<'a>> = regions
        .iter()
        .map(|r| Truth {
            actuals: r.actuals,
            vintages: &[],
        })
        .collect();
    let fcs = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Forecaster::new(
                r.actuals,
                &[],
                region_model(cfg.forecast, i, r.name),
                cfg.horizon_secs,
                REFRESH_SECS.max(r.actuals.step_secs()),
                OPERATOR_HISTORY_SECS,
            )
        })
        .collect();
    let mut kinds = vec![
        StrategyKind::RunNow,
        StrategyKind::FlexibleStart,
        StrategyKind::PauseAndResume,
        StrategyKind::OraclePauseAndResume,
    ];
    for k in &cfg.strategies {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    Ok(Ctx {
        regions,
        truths,
        fcs,
        cfg,
        kinds,
    })
}

/// One job: every reference run and every strategy in the region it chooses. A strategy
/// that chooses a region some other run already covered reuses that run (the replay is
/// deterministic), so spatial results that all go home equal the home-only ones exactly.
fn run_one(
    ctx: &Ctx<'_>,
    caches: &mut [ForecastCache],
    submit: DateTime<Utc>,
) -> Result<JobOutcome, SimError> {
    let mut memo: Vec<((StrategyKind, usize), JobRun)> = Vec::new();
    let mut get = |kind: StrategyKind, r: usize, caches: &mut [ForecastCache]| {
        if let Some((_, run)) = memo.iter().find(|(key, _)| *key == (kind, r)) {
            return Ok(run.clone());
        }
        let run = run_in(ctx, caches, kind, r, submit)?;
        memo.push(((kind, r), run.clone()));
        Ok::<_, SimError>(run)
    };
    let mut fixed = Vec::with_capacity(ctx.regions.len());
    for r in 0..ctx.regions.len() {
        fixed.push(get(StrategyKind::RunNow, r, caches)?);
    }
    let mut temporal = Vec::with_capacity(TEMPORAL.len());
    for k in TEMPORAL {
        temporal.push(get(k, 0, caches)?);
    }
    let mut chosen = Vec::with_capacity(ctx.kinds.len());
    for &k in &ctx.kinds {
        let r = if k.is_oracle() {
            choose_on_actuals(ctx, k, submit)?
        } else {
            choose_on_forecasts(ctx, caches, k, submit)?
        };
        chosen.push((r, get(k, r, caches)?));
    }
    Ok(JobOutcome {
        fixed,
        temporal,
        chosen,
    })
}

/// `kind` run in region `r` alone: the single-region replay, or the oracle.
fn run_in(
    ctx: &Ctx<'_>,
    caches: &mut [ForecastCache],
    kind: StrategyKind,
    r: usize,
    submit: DateTime<Utc>,
) -> Result<JobRun, SimError> {
    let (cfg, truth) = (ctx.cfg, &ctx.truths[r]);
    let strategy = strategy_for(kind, truth, cfg, submit);
    if kind.is_oracle() {
        let deadline = submit + TimeDelta::seconds(cfg.duration_secs + cfg.slack_secs);
        return run_oracle(truth, cfg, strategy, submit, deadline);
    }
    job::run(
        truth.actuals,
        &ctx.fcs[r],
        &mut caches[r],
        cfg,
        strategy,
        submit,
    )
}

/// The strategy the regions are ranked with: the job's own, except threshold, whose limit
/// is per region, ranked as pause-and-resume.
fn ranking_strategy(kind: StrategyKind) -> Strategy {
    match kind {
        StrategyKind::RunNow => Strategy::RunNow,
        StrategyKind::FlexibleStart | StrategyKind::OracleFlexibleStart => Strategy::FlexibleStart,
        _ => Strategy::PauseAndResume,
    }
}

/// The region a receding-horizon job picks at submission: each region's forecast as the
/// operator's cache holds it then, extended past the horizon as the controller does, and
/// the request the controller's first reconcile would plan.
fn choose_on_forecasts(
    ctx: &Ctx<'_>,
    caches: &mut [ForecastCache],
    kind: StrategyKind,
    submit: DateTime<Utc>,
) -> Result<usize, SimError> {
    let cfg = ctx.cfg;
    let deadline = submit + TimeDelta::seconds(cfg.duration_secs + cfg.slack_secs);
    let until = deadline.max(submit + TimeDelta::seconds(cfg.duration_secs));
    let mut views = Vec::with_capacity(ctx.regions.len());
    for (fc, cache) in ctx.fcs.iter().zip(caches.iter_mut()) {
        let view = fc.view_cached(cache, fc.issue_at(submit).issued_at)?;
        let s =
            planning_series(&view, &DailyProfile::of(&view), submit, until).ok_or_else(|| {
                SimError::Internal("a region's forecast does not cover the submission".into())
            })?;
        views.push(s);
    }
    let margin = TimeDelta::seconds(cfg.deadline_margin_secs.max(0));
    let plan_deadline = planning_deadline(deadline, submit, cfg.duration_secs, margin);
    pick(ctx, &views, ranking_strategy(kind), submit, plan_deadline)
}

/// The region an oracle picks: the job planned on every region's actuals of its window.
fn choose_on_actuals(
    ctx: &Ctx<'_>,
    kind: StrategyKind,
    submit: DateTime<Utc>,
) -> Result<usize, SimError> {
    let cfg = ctx.cfg;
    let deadline = submit + TimeDelta::seconds(cfg.duration_secs + cfg.slack_secs);
    let views = ctx
        .regions
        .iter()
        .map(|r| {
            r.actuals.slice(submit, deadline).ok_or_else(|| {
                SimError::Internal(format!("no actuals of {} for the job's window", r.name))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    pick(ctx, &views, ranking_strategy(kind), submit, deadline)
}

/// [`choose`] among every region with `views[i]` as region `i`'s forecast.
fn pick(
    ctx: &Ctx<'_>,
    views: &[Series],
    strategy: Strategy,
    submit: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> Result<usize, SimError> {
    let candidates: Vec<Candidate<'_>> = ctx
        .regions
        .iter()
        .zip(views)
        .map(|(r, forecast)| Candidate {
            region: r.name,
            forecast,
        })
        .collect();
    let req = PlanRequest {
        now: submit,
        remaining_secs: ctx.cfg.duration_secs,
        deadline,
        strategy,
        constraints: ctx.cfg.constraints,
        state: JobState::NotStarted,
        pauses_so_far: 0,
        forecast: &views[0],
        error: crate::plan::ForecastError::NONE,
    };
    choose(&req, &candidates, None)
        .map(|c| c.index)
        .ok_or_else(|| SimError::Internal("no region to choose from".into()))
}

/// The totals of every job's outcome.
fn report(ctx: &Ctx<'_>, outcomes: Vec<JobOutcome>) -> RegionsReport {
    let n_regions = ctx.regions.len();
    let column = |f: &dyn Fn(&JobOutcome) -> JobRun| outcomes.iter().map(f).collect::<Vec<_>>();
    let fixed_runs: Vec<Vec<JobRun>> = (0..n_regions)
        .map(|r| column(&|o: &JobOutcome| o.fixed[r].clone()))
        .collect();
    let base: f64 = fixed_runs[0].iter().map(|j| j.emissions_g).sum();
    let oracle_at = ctx
        .kinds
        .iter()
        .position(|k| *k == StrategyKind::OraclePauseAndResume)
        .unwrap_or(0);
    let oracle_g: f64 = outcomes
        .iter()
        .map(|o| o.chosen[oracle_at].1.emissions_g)
        .sum();
    let oracle = savings_pct(oracle_g, base);
    let regional = |i: usize| {
        let job_regions: Vec<usize> = outcomes.iter().map(|o| o.chosen[i].0).collect();
        let mut region_jobs = vec![0; n_regions];
        for &r in &job_regions {
            region_jobs[r] += 1;
        }
        let jobs = column(&|o: &JobOutcome| o.chosen[i].1.clone());
        RegionalStrategy {
            report: strategy_report(ctx.kinds[i], jobs, base, oracle),
            job_regions,
            region_jobs,
        }
    };
    let all: Vec<RegionalStrategy> = (0..ctx.kinds.len()).map(regional).collect();
    let find = |k: StrategyKind| all.iter().find(|r| r.report.strategy == k).cloned();
    RegionsReport {
        regions: ctx.regions.iter().map(|r| r.name.to_string()).collect(),
        jobs: outcomes.len(),
        baseline_g: base,
        results: ctx.cfg.strategies.iter().filter_map(|k| find(*k)).collect(),
        fixed: fixed_runs
            .into_iter()
            .map(|jobs| strategy_report(StrategyKind::RunNow, jobs, base, oracle))
            .collect(),
        temporal: TEMPORAL
            .iter()
            .enumerate()
            .map(|(i, k)| {
                strategy_report(
                    *k,
                    column(&|o: &JobOutcome| o.temporal[i].clone()),
                    base,
                    oracle,
                )
            })
            .collect(),
        spatial: SPATIAL_COLUMNS.iter().filter_map(|k| find(*k)).collect(),
    }
}

/// The spatial columns of the comparison.
const SPATIAL_COLUMNS: [StrategyKind; 4] = [
    StrategyKind::RunNow,
    StrategyKind::FlexibleStart,
    StrategyKind::PauseAndResume,
    StrategyKind::OraclePauseAndResume,
];

#[cfg(test)]
#[path = "regions_tests.rs"]
mod tests;
