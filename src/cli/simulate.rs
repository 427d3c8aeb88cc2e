//! `carbonshift simulate`: replay a real intensity trace (embedded zone or `--trace FILE`)
//! through the operator's planner and compare strategies against run-now and the oracles.
//!
//! Everything the user can get wrong (zone, file, durations, forecast/region mismatch, a
//! trace too short) is checked before the simulation and reported as one line, exit 2.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde_json::json;

use super::{CliResult, Failure, Format};
use crate::data::{self, Vintage};
use crate::duration::{self, format_secs, MAX_FLAG_SECS};
use crate::plan::Constraints;
use crate::series::Series;
use crate::sim::{
    self, ForecastModel, SimConfig, SimError, SimReport, StrategyKind, Truth, SIGNAL,
};
use crate::timefmt;

#[path = "simulate_regions.rs"]
mod regions;

const EXAMPLES: &str = "\
Examples:
  # 6 h jobs that may finish within 30 h, every 7 h over 2021-23 in Germany
  carbonshift simulate --region DE --duration 6h --slack 24h
  # with realistic forecast error and a plot of the first job's schedule
  carbonshift simulate --region GB --forecast noisy --seed 1 --plot job.svg
  # the real NESO forecast vintages (GB, March 2023)
  carbonshift simulate --region GB --forecast vintages --duration 4h --slack 12h --submit-every 3h
  # your own trace (header timestamp,region,gco2_per_kwh), JSON out
  carbonshift simulate --trace grid.csv --duration 2h --slack 10h --format json
  # the Dodge et al. style table for every embedded zone
  carbonshift simulate --paper --region all
  # where as well as when: each job may run in FR (home), DE or GB
  carbonshift simulate --regions FR,DE,GB --from 2022-01-01 --to 2022-04-01
  # two trace files, the first one home
  carbonshift simulate --trace home.csv --trace other.csv --duration 2h --slack 10h
  # the seed paper's region comparison per job length (Germany home)
  carbonshift simulate --paper --regions DE,FR,GB --from 2022-01-01 --to 2022-01-19

Embedded data: Electricity Maps (electricitymaps.com), data licensed under ODbL 1.0;
Carbon Intensity API, National Energy System Operator (NESO), CC BY 4.0.";

/// How large the noisy model's error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NoiseArg {
    /// The NESO GB error scaled to the zone (its persistence error over GB's).
    PerZone,
    /// The NESO GB error in grams, for every zone.
    Absolute,
}

/// Which forecast the receding-horizon strategies see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForecastArg {
    /// The actuals (perfect foresight up to --horizon).
    Perfect,
    /// Same hour yesterday.
    Persistence,
    /// Actuals + error calibrated on real NESO forecasts (seeded).
    Noisy,
    /// Real NESO GB forecast vintages, March 2023 (region GB only).
    Vintages,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Embedded zone (see the list in any error); repeatable or comma-separated with
    /// --paper, where `all` means every zone.
    #[arg(long, value_name = "ZONE", value_delimiter = ',')]
    pub region: Vec<String>,
    /// Several embedded zones a job may run in, comma-separated, the first one "home"
    /// (spatial shifting): each strategy chooses the region at submission, savings are
    /// against run-now at home. Not with --region or --trace.
    #[arg(long, value_name = "HOME,ZONE,...", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// CSV trace instead of an embedded zone: header with timestamp,region,gco2_per_kwh.
    /// Repeat it for several regions, as --regions does (the first file is home).
    #[arg(long, value_name = "FILE")]
    pub trace: Vec<PathBuf>,
    /// Only use the trace from this instant (RFC 3339 or YYYY-MM-DD, UTC). Its first day
    /// is history for the forecasts: the first job is submitted one day after --from.
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_flag)]
    pub from: Option<DateTime<Utc>>,
    /// Only use the trace before this instant (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_flag)]
    pub to: Option<DateTime<Utc>>,
    /// Runtime each job needs.
    #[arg(long, value_name = "DUR", default_value = "6h", value_parser = duration::flag(1, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub duration: i64,
    /// Extra time each job may take: it must finish within duration + slack.
    #[arg(long, value_name = "DUR", default_value = "24h", value_parser = duration::flag(0, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub slack: i64,
    /// Interval between job submissions.
    #[arg(long, value_name = "DUR", default_value = "7h", value_parser = duration::flag(1, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub submit_every: i64,
    /// How far ahead the forecast reaches; beyond it the operator's beyond-horizon model.
    #[arg(long, value_name = "DUR", default_value = "48h", value_parser = duration::flag(1, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub horizon: i64,
    /// Forecast model for the receding-horizon strategies.
    #[arg(long, value_enum, default_value_t = ForecastArg::Perfect)]
    pub forecast: ForecastArg,
    /// Seed of the noisy forecast model.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Size of the noisy model's error: `per-zone` scales the real NESO GB error to the
    /// zone by its day-ahead persistence error over GB's; `absolute` adds GB's grams to
    /// every zone.
    #[arg(long, value_enum, default_value_t = NoiseArg::PerZone)]
    pub noise: NoiseArg,
    /// Strategy to report (repeatable; default all): run-now, flexible-start,
    /// pause-and-resume, threshold, oracle-flexible-start, oracle-pause-and-resume (the old
    /// names pause-resume and oracle-pause-resume still work, with a warning).
    #[arg(long = "strategy", value_name = "NAME")]
    pub strategies: Vec<String>,
    /// Once started or resumed, run at least this long.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = duration::flag(0, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub min_run: i64,
    /// Once paused, stay paused at least this long.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = duration::flag(0, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub min_pause: i64,
    /// At most this many pauses per job.
    #[arg(long, value_name = "N")]
    pub max_pauses: Option<u32>,
    /// Extra runtime each resume costs (restore from checkpoint).
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = duration::flag(0, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub checkpoint_overhead: i64,
    /// Threshold strategy limit in gCO2eq/kWh (default: per job, the trailing 14-day
    /// percentile duration/(duration+slack)).
    #[arg(long, value_name = "G")]
    pub threshold: Option<f64>,
    /// Constant power draw of a job, kW.
    #[arg(long, value_name = "KW", default_value_t = 1.0)]
    pub power_kw: f64,
    /// The operator's `--deadline-margin`: plans aim to finish this long before the
    /// deadline, as far as the slack allows.
    #[arg(long, value_name = "DUR", default_value = "2m", value_parser = duration::flag(0, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub deadline_margin: i64,
    /// Start-up latency of the simulated pods: from unsuspending the child Job to its pod
    /// being Ready (not work; the deadline guard plans for it).
    #[arg(long, value_name = "DUR", default_value = "1m", value_parser = duration::flag(0, duration::DAY_SECS), allow_hyphen_values = true)]
    pub startup: i64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write an SVG of one job: the intensity curve with each strategy's run intervals. A
    /// path that cannot be written (no such directory, no permission) is bad input, exit 2,
    /// checked before the simulation runs; any other I/O failure while writing exits 1.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Which job to plot (0-based submission index).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub plot_job: usize,
    /// Print the paper table: jobs of 1h, 6h, 24h and 8d with slack +24h and +100 %,
    /// flexible-start vs pause-and-resume savings, for each --region (or `all`) or the
    /// --trace file. The table fixes its own job lengths, slacks and strategies, and draws
    /// no plot: --duration, --slack, --strategy and --plot are refused with it.
    #[arg(long, conflicts_with_all = ["duration", "slack", "strategies", "plot"])]
    pub paper: bool,
}

/// The truth to replay and where it came from.
struct Source {
    region: String,
    /// Licence attribution to print with results from embedded data.
    attribution: Option<&'static str>,
    actuals: Series,
    vintages: Vec<Vintage>,
}

pub async fn run(args: Args) -> CliResult {
    let cfg = config(&args)?;
    if regions::is_multi(&args) {
        return regions::run(&args, &cfg);
    }
    if args.paper {
        return paper(&args, cfg);
    }
    if args.region.len() > 1 {
        return Err(Failure::input(
            "several --region values are only supported with --paper",
        ));
    }
    if let Some(path) = &args.plot {
        check_plot_path(path)?;
    }
    let src = source(&args, args.region.first().map(String::as_str), cfg.forecast)?;
    let truth = Truth {
        actuals: &src.actuals,
        vintages: &src.vintages,
    };
    let jobs = sim::submissions(&truth, &cfg).map_or(0, |s| s.len());
    let bar = progress_bar(jobs as u64, &src.region);
    let report = sim::simulate_with_progress(&truth, &cfg, &|| bar.inc(1));
    bar.finish_and_clear();
    let report = report.map_err(sim_failure)?;
    if let Some(path) = &args.plot {
        plot(path, args.plot_job, &src, &cfg, &report)?;
    }
    print!("{}", render(&args, &cfg, &src, &report));
    Ok(())
}

/// A progress bar of `jobs` simulated jobs on stderr, drawn only when stderr is a
/// terminal (never into pipes, files or CI logs; stdout is left to the results).
fn progress_bar(jobs: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(jobs), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} jobs, {elapsed} (eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Run-now's mean intensity (g/kWh) below which savings are percentages of almost nothing
/// (CA-QC: 0.4 g/kWh direct).
const NEAR_ZERO_G_PER_KWH: f64 = 5.0;

/// Mean intensity run-now paid, g/kWh: its emissions over the energy of every job.
fn baseline_g_per_kwh(report: &SimReport, cfg: &SimConfig) -> Option<f64> {
    let kwh = report.jobs as f64 * hours(cfg.duration_secs) * cfg.power_kw;
    (kwh > 0.0).then(|| report.baseline_g / kwh)
}

/// The caveat to print next to percentages of a near-zero baseline, if any.
fn near_zero_caveat(baseline: Option<f64>) -> Option<String> {
    let b = baseline.filter(|b| *b < NEAR_ZERO_G_PER_KWH)?;
    Some(format!(
        "run-now averaged only {b:.2} gCO2eq/kWh, so the savings are percentages of a near-zero total (see data/README.md)"
    ))
}

fn sim_failure(e: SimError) -> Failure {
    match e {
        SimError::Input(m) => Failure::input(m),
        SimError::Internal(m) => Failure::runtime(format!("simulation failed: {m}")),
    }
}

fn config(args: &Args) -> Result<SimConfig, Failure> {
    let strategies = if args.strategies.is_empty() {
        StrategyKind::ALL.to_vec()
    } else {
        let mut out = Vec::new();
        for s in &args.strategies {
            for name in s.split(',') {
                let name = name.trim();
                let k = StrategyKind::parse(name).ok_or_else(|| {
                    let valid: Vec<_> = StrategyKind::ALL.iter().map(|k| k.name()).collect();
                    Failure::input(format!(
                        "unknown strategy {name:?}; valid: {}",
                        valid.join(", ")
                    ))
                })?;
                if k.name() != name {
                    eprintln!(
                        "warning: --strategy {name} is deprecated, use --strategy {}",
                        k.name()
                    );
                }
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    };
    let forecast = match args.forecast {
        ForecastArg::Perfect => ForecastModel::Perfect,
        ForecastArg::Persistence => ForecastModel::Persistence,
        ForecastArg::Noisy => ForecastModel::Noisy {
            seed: args.seed,
            absolute: args.noise == NoiseArg::Absolute,
        },
        ForecastArg::Vintages => ForecastModel::Vintages,
    };
    Ok(SimConfig {
        duration_secs: args.duration,
        slack_secs: args.slack,
        submit_every_secs: args.submit_every,
        horizon_secs: args.horizon,
        forecast,
        strategies,
        constraints: Constraints {
            min_run_secs: args.min_run,
            min_pause_secs: args.min_pause,
            max_pauses: args.max_pauses,
            checkpoint_overhead_secs: args.checkpoint_overhead,
        },
        threshold: args.threshold,
        power_kw: args.power_kw,
        deadline_margin_secs: args.deadline_margin,
        startup_secs: args.startup,
    })
}

/// Loads the truth for one region (or the --trace file), applying --from/--to.
fn source(args: &Args, region: Option<&str>, model: ForecastModel) -> Result<Source, Failure> {
    source_of(
        args,
        args.trace.first().map(PathBuf::as_path),
        region,
        model,
    )
}

/// [`source`] of the trace file `trace` or the embedded `region`.
fn source_of(
    args: &Args,
    trace: Option<&Path>,
    region: Option<&str>,
    model: ForecastModel,
) -> Result<Source, Failure> {
    let (region, mut actuals, vintages) = match (trace, region) {
        (Some(_), Some(_)) => {
            return Err(Failure::input("give either --region or --trace, not both"));
        }
        (None, None) => return Err(Failure::input("give --region ZONE or --trace FILE")),
        (Some(path), None) => {
            if model == ForecastModel::Vintages {
                return Err(Failure::input(
                    "--forecast vintages replays the embedded NESO GB data; use --region GB, not --trace",
                ));
            }
            let t = data::load_csv_path(path).map_err(Failure::input)?;
            (t.region, t.series, Vec::new())
        }
        (None, Some(zone)) => {
            let zone = data::canonical_zone(zone).ok_or_else(|| {
                Failure::input(data::DataError::UnknownZone {
                    zone: zone.to_string(),
                    valid: data::zones().join(", "),
                })
            })?;
            if model == ForecastModel::Vintages {
                if zone != "GB" {
                    return Err(Failure::input(format!(
                        "--forecast vintages exists only for GB (NESO); got --region {zone}"
                    )));
                }
                // Truth is NESO's own actuals: the vintages forecast that, not EM's series.
                let a = data::neso_actuals().map_err(Failure::runtime)?;
                let v = data::neso_vintages().map_err(Failure::runtime)?;
                ("GB".to_string(), a, v)
            } else {
                (
                    zone.to_string(),
                    data::load_zone(zone).map_err(Failure::input)?,
                    Vec::new(),
                )
            }
        }
    };
    if args.from.is_some() || args.to.is_some() {
        let (f, t) = (
            args.from.unwrap_or(actuals.start()),
            args.to.unwrap_or(actuals.end()),
        );
        actuals = actuals.slice(f, t).ok_or_else(|| {
            Failure::input(format!(
                "--from/--to select nothing{}: the trace covers {} .. {}",
                if regions::is_multi(args) {
                    format!(" of {region}")
                } else {
                    String::new()
                },
                timefmt::format(actuals.start()),
                timefmt::format(actuals.end())
            ))
        })?;
    }
    let attribution = trace.is_none().then_some(data::ATTRIBUTION);
    Ok(Source {
        region,
        attribution,
        actuals,
        vintages,
    })
}

fn hours(secs: i64) -> f64 {
    secs as f64 / 3600.0
}

fn render(args: &Args, cfg: &SimConfig, src: &Source, report: &SimReport) -> String {
    let region = src.region.as_str();
    let baseline = baseline_g_per_kwh(report, cfg);
    let caveat = near_zero_caveat(baseline);
    let mut out = String::new();
    match args.format {
        Format::Json => {
            let results: Vec<_> = report
                .results
                .iter()
                .map(|r| {
                    json!({
                        "strategy": r.strategy.name(),
                        "emissions_g": round(r.emissions_g, 1),
                        "savings_pct": round(r.savings_pct, 3),
                        "oracle_fraction": r.oracle_fraction.map(|f| round(f, 4)),
                        "deadline_misses": r.deadline_misses,
                        "pauses_per_job": round(r.pauses_per_job, 3),
                    })
                })
                .collect();
            let v = json!({
                "region": region,
                "jobs": report.jobs,
                "duration_hours": hours(cfg.duration_secs),
                "slack_hours": hours(cfg.slack_secs),
                "forecast": cfg.forecast.name(),
                "signal": SIGNAL.label(),
                "first_submitted": first_submitted(report).map(timefmt::format),
                "baseline_gco2_per_kwh": baseline.map(|b| round(b, 3)),
                "caveat": caveat,
                "results": results,
            });
            let _ = writeln!(out, "{v}");
        }
        Format::Csv => {
            if let Some(c) = &caveat {
                eprintln!("note: {c}");
            }
            let _ = writeln!(
                out,
                "region,jobs,duration_hours,slack_hours,forecast,strategy,emissions_g,savings_pct,oracle_fraction,deadline_misses,pauses_per_job"
            );
            for r in &report.results {
                let _ = writeln!(
                    out,
                    "{region},{},{},{},{},{},{:.1},{:.3},{},{},{:.3}",
                    report.jobs,
                    hours(cfg.duration_secs),
                    hours(cfg.slack_secs),
                    cfg.forecast.name(),
                    r.strategy.name(),
                    r.emissions_g,
                    r.savings_pct,
                    r.oracle_fraction
                        .map_or(String::new(), |f| format!("{f:.4}")),
                    r.deadline_misses,
                    r.pauses_per_job
                );
            }
        }
        Format::Table => {
            let _ = writeln!(
                out,
                "{region}: {} jobs of {} that must finish within {} (slack {}), one every {}; forecast {} (horizon {}), {} signal, {} kW",
                report.jobs,
                format_secs(cfg.duration_secs),
                format_secs(cfg.duration_secs + cfg.slack_secs),
                format_secs(cfg.slack_secs),
                format_secs(cfg.submit_every_secs),
                cfg.forecast.name(),
                format_secs(cfg.horizon_secs),
                SIGNAL.label(),
                cfg.power_kw
            );
            if let Some(t) = first_submitted(report) {
                let _ = writeln!(
                    out,
                    "first job submitted {} UTC, after {} of history for the forecasts",
                    t.format("%Y-%m-%d %H:%M"),
                    format_secs((t - src.actuals.start()).num_seconds())
                );
            }
            let _ = writeln!(
                out,
                "{:<23} {:>14} {:>10} {:>12} {:>8} {:>11}",
                "strategy", "emissions_kg", "savings", "of_oracle", "misses", "pauses/job"
            );
            // Marks every percentage of a near-zero baseline, explained below the table.
            let mark = if caveat.is_some() { "*" } else { " " };
            for r in &report.results {
                let _ = writeln!(
                    out,
                    "{:<23} {:>14.1} {:>8.2}%{mark} {:>12} {:>8} {:>11.2}",
                    r.strategy.name(),
                    r.emissions_g / 1000.0,
                    r.savings_pct,
                    r.oracle_fraction
                        .map_or("-".to_string(), |f| format!("{:.1}%", 100.0 * f)),
                    r.deadline_misses,
                    r.pauses_per_job
                );
            }
            if let Some(c) = &caveat {
                let _ = writeln!(out, "* {c}");
            }
            if let Some(a) = src.attribution {
                let _ = writeln!(out, "data: {a}");
            }
        }
    }
    out
}

fn first_submitted(report: &SimReport) -> Option<DateTime<Utc>> {
    first_submitted_of(report.results.first())
}

fn first_submitted_of(r: Option<&sim::StrategyReport>) -> Option<DateTime<Utc>> {
    r?.jobs.first().map(|j| j.submitted)
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Job lengths and slacks of the paper table: (label, duration, slack).
fn paper_cases() -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for d in [3_600, 6 * 3_600, 24 * 3_600, 8 * 86_400] {
        out.push(("+24h".to_string(), d, 86_400));
        out.push(("+100%".to_string(), d, d));
    }
    out
}

fn paper(args: &Args, base: SimConfig) -> CliResult {
    if !args.trace.is_empty() && !args.region.is_empty() {
        return Err(Failure::input("give either --region or --trace, not both"));
    }
    let regions: Vec<Option<String>> = if !args.trace.is_empty() {
        vec![None]
    } else if args.region.is_empty() || args.region.iter().any(|r| r.eq_ignore_ascii_case("all")) {
        data::zones().iter().map(|z| Some(z.to_string())).collect()
    } else {
        args.region.iter().map(|r| Some(r.clone())).collect()
    };
    let sources = regions
        .iter()
        .map(|r| source(args, r.as_deref(), base.forecast))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = paper_rows(&sources, &base)?;
    print!("{}", paper_render(args, &base, &rows));
    Ok(())
}

/// The configuration of one paper case.
fn paper_config(base: &SimConfig, duration_secs: i64, slack_secs: i64) -> SimConfig {
    SimConfig {
        duration_secs,
        slack_secs,
        strategies: vec![
            StrategyKind::RunNow,
            StrategyKind::FlexibleStart,
            StrategyKind::PauseAndResume,
            StrategyKind::OracleFlexibleStart,
            StrategyKind::OraclePauseAndResume,
        ],
        ..base.clone()
    }
}

/// One row per source and case, with a progress bar over all their jobs.
fn paper_rows(sources: &[Source], base: &SimConfig) -> Result<Vec<serde_json::Value>, Failure> {
    let total: usize = sources
        .iter()
        .flat_map(|src| {
            let truth = Truth {
                actuals: &src.actuals,
                vintages: &src.vintages,
            };
            paper_cases().into_iter().map(move |(_, d, s)| {
                sim::submissions(&truth, &paper_config(base, d, s)).map_or(0, |v| v.len())
            })
        })
        .sum();
    let bar = progress_bar(total as u64, "paper");
    let mut rows = Vec::new();
    for src in sources {
        bar.set_message(src.region.clone());
        let truth = Truth {
            actuals: &src.actuals,
            vintages: &src.vintages,
        };
        for (slack_label, d, s) in paper_cases() {
            let cfg = paper_config(base, d, s);
            let report = sim::simulate_with_progress(&truth, &cfg, &|| bar.inc(1));
            let report = report.map_err(|e| {
                bar.finish_and_clear();
                sim_failure(e)
            })?;
            let get = |k: StrategyKind| report.results.iter().find(|r| r.strategy == k);
            let pct = |k| get(k).map_or(f64::NAN, |r| r.savings_pct);
            let misses: usize = report.results.iter().map(|r| r.deadline_misses).sum();
            rows.push(json!({
                "region": src.region,
                "duration": format_secs(d),
                "slack": slack_label,
                "window": format_secs(d + s),
                "jobs": report.jobs,
                "flexible_start_pct": round(pct(StrategyKind::FlexibleStart), 2),
                "pause_and_resume_pct": round(pct(StrategyKind::PauseAndResume), 2),
                "oracle_flexible_start_pct": round(pct(StrategyKind::OracleFlexibleStart), 2),
                "oracle_pause_and_resume_pct": round(pct(StrategyKind::OraclePauseAndResume), 2),
                "pauses_per_job": get(StrategyKind::PauseAndResume).map_or(0.0, |r| round(r.pauses_per_job, 2)),
                "deadline_misses": misses,
                "baseline_gco2_per_kwh": baseline_g_per_kwh(&report, &cfg).map(|b| round(b, 3)),
            }));
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Whether a paper row's percentages are of a near-zero baseline.
fn near_zero_row(r: &serde_json::Value) -> bool {
    r["baseline_gco2_per_kwh"]
        .as_f64()
        .is_some_and(|b| b < NEAR_ZERO_G_PER_KWH)
}

fn paper_render(args: &Args, base: &SimConfig, rows: &[serde_json::Value]) -> String {
    let mut out = String::new();
    let field =
        |r: &serde_json::Value, k: &str| r.get(k).cloned().unwrap_or(serde_json::Value::Null);
    match args.format {
        Format::Json => {
            let v = json!({
                "forecast": base.forecast.name(),
                "horizon_hours": hours(base.horizon_secs),
                "submit_every_hours": hours(base.submit_every_secs),
                "rows": rows,
            });
            let _ = writeln!(out, "{v}");
        }
        Format::Csv => {
            let keys = [
                "region",
                "duration",
                "slack",
                "window",
                "jobs",
                "flexible_start_pct",
                "pause_and_resume_pct",
                "oracle_flexible_start_pct",
                "oracle_pause_and_resume_pct",
                "pauses_per_job",
                "deadline_misses",
                "baseline_gco2_per_kwh",
            ];
            let _ = writeln!(out, "{}", keys.join(","));
            for r in rows {
                let cells: Vec<String> = keys
                    .iter()
                    .map(|k| match field(r, k) {
                        serde_json::Value::String(s) => s,
                        v => v.to_string(),
                    })
                    .collect();
                let _ = writeln!(out, "{}", cells.join(","));
            }
        }
        Format::Table => {
            let _ = writeln!(
                out,
                "Savings vs run-now, %. flexible-start / pause-and-resume: receding horizon, forecast {} (horizon {}); oracle: perfect foresight over the whole window. One job every {}.",
                base.forecast.name(),
                format_secs(base.horizon_secs),
                format_secs(base.submit_every_secs)
            );
            let _ = writeln!(
                out,
                "| zone | job | slack | jobs | flexible-start | pause-and-resume | oracle FS | oracle PR | PR pauses/job | misses |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
            for r in rows {
                let s = |k: &str| match field(r, k) {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) if n.is_f64() => {
                        n.as_f64().map_or(n.to_string(), |f| format!("{f:.1}"))
                    }
                    v => v.to_string(),
                };
                let _ = writeln!(
                    out,
                    "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s("region"),
                    if near_zero_row(r) { "*" } else { "" },
                    s("duration"),
                    s("slack"),
                    s("jobs"),
                    s("flexible_start_pct"),
                    s("pause_and_resume_pct"),
                    s("oracle_flexible_start_pct"),
                    s("oracle_pause_and_resume_pct"),
                    s("pauses_per_job"),
                    s("deadline_misses")
                );
            }
            if rows.iter().any(near_zero_row) {
                let _ = writeln!(
                    out,
                    "* run-now averaged under {NEAR_ZERO_G_PER_KWH} gCO2eq/kWh there: its savings are percentages of a near-zero total (see data/README.md)"
                );
            }
            if args.trace.is_empty() {
                let _ = writeln!(out, "data: {}", data::ATTRIBUTION);
            }
        }
    }
    out
}

/// Refuses a `--plot` path that cannot be written, before the simulation runs.
fn check_plot_path(path: &Path) -> CliResult {
    let shown = path.display();
    if path.is_dir() {
        return Err(Failure::input(format!(
            "--plot {shown}: is a directory; give a file name such as {}",
            path.join("job.svg").display()
        )));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Failure::input(format!(
            "--plot {shown}: cannot write the plot there: directory {} does not exist",
            dir.display()
        )));
    }
    Ok(())
}

/// A failed write of the plot: the path is bad input (exit 2) when the system refuses it
/// as such (missing directory, permissions, read-only), any other I/O failure exits 1.
fn plot_write_failure(path: &Path, e: std::io::Error) -> Failure {
    use std::io::ErrorKind as K;
    let msg = format!("--plot {}: cannot write the plot: {e}", path.display());
    match e.kind() {
        K::NotFound
        | K::PermissionDenied
        | K::IsADirectory
        | K::NotADirectory
        | K::ReadOnlyFilesystem => Failure::input(msg),
        _ => Failure::runtime(msg),
    }
}

/// SVG of job `n`: the actual intensity over its window in the upper panel, and below it
/// one labelled row per strategy with bars where it ran; written to `path`.
fn plot(path: &Path, n: usize, src: &Source, cfg: &SimConfig, report: &SimReport) -> CliResult {
    let Some(first) = report.results.first() else {
        return Err(Failure::input("--plot needs at least one strategy"));
    };
    let Some(job) = first.jobs.get(n) else {
        return Err(Failure::input(format!(
            "--plot-job {n}: there are only {} jobs",
            first.jobs.len()
        )));
    };
    let margin = TimeDelta::seconds(
        ((job.deadline - job.submitted).num_seconds() / 20).max(src.actuals.step_secs()),
    );
    let window = src
        .actuals
        .slice(job.submitted - margin, job.deadline + margin)
        .ok_or_else(|| Failure::runtime("no data to plot for this job"))?;
    let title = format!(
        "{}: job {n} submitted {} UTC ({} of work, deadline {} UTC), forecast {}",
        src.region,
        job.submitted.format("%Y-%m-%d %H:%M"),
        format_secs(job_work(job)),
        job.deadline.format("%Y-%m-%d %H:%M"),
        cfg.forecast.name()
    );
    let mut svg = String::new();
    draw_plot(&mut svg, &title, n, job, &window, cfg, report)
        .map_err(|e| Failure::runtime(format!("cannot draw the plot: {e}")))?;
    std::fs::write(path, svg).map_err(|e| plot_write_failure(path, e))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

const PALETTE: [RGBColor; 6] = [
    RGBColor(120, 120, 120),
    RGBColor(230, 140, 20),
    RGBColor(30, 150, 60),
    RGBColor(150, 60, 180),
    RGBColor(240, 190, 60),
    RGBColor(20, 110, 200),
];

fn draw_plot(
    svg: &mut String,
    title: &str,
    n: usize,
    job: &sim::JobRun,
    window: &Series,
    cfg: &SimConfig,
    report: &SimReport,
) -> DrawResult {
    let rows = report.results.len();
    let lower = 60 + 30 * rows as u32;
    let root = SVGBackend::with_string(svg, (1000, 380 + lower)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 16))?;
    let (upper, below) = root.split_vertically(root.dim_in_pixel().1 - lower);
    let start = job.submitted;
    let h = |t: DateTime<Utc>| (t - start).num_seconds() as f64 / 3600.0;
    let x = h(window.start())..h(window.end());
    let (sub, dl) = (0.0, h(job.deadline));
    // Headroom for the legend above the curve.
    let ymax = window.values().iter().cloned().fold(1.0, f64::max) * 1.4;
    let mut chart = ChartBuilder::on(&upper)
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(200)
        .build_cartesian_2d(x.clone(), 0.0..ymax)?;
    chart
        .configure_mesh()
        .y_desc("actual intensity, gCO2eq/kWh")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let pts: Vec<(f64, f64)> = (0..window.len())
        .flat_map(|i| {
            let a = h(window.slot_start(i));
            let v = window.values()[i];
            [(a, v), (a + window.step_secs() as f64 / 3600.0, v)]
        })
        .collect();
    let line = |c: RGBColor| {
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2))
    };
    chart
        .draw_series(LineSeries::new(pts, BLACK.stroke_width(2)))?
        .label("actual intensity")
        .legend(line(BLACK));
    for (at, colour, label) in [(dl, RED, "deadline"), (sub, BLUE, "submitted")] {
        chart
            .draw_series(LineSeries::new(
                vec![(at, 0.0), (at, ymax)],
                colour.stroke_width(1),
            ))?
            .label(label)
            .legend(line(colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    draw_strategy_rows(&below, x, (sub, dl), n, cfg, report, &h)?;
    root.present()?;
    Ok(())
}

/// The lower panel: one row per strategy (named, with the job's emissions), a bar where it
/// ran, on the same hour axis as the intensity above.
fn draw_strategy_rows<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x: std::ops::Range<f64>,
    (sub, dl): (f64, f64),
    n: usize,
    cfg: &SimConfig,
    report: &SimReport,
    h: &dyn Fn(DateTime<Utc>) -> f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let rows = report.results.len() as i32;
    let labels: Vec<String> = report
        .results
        .iter()
        .map(|r| {
            let g = r.jobs.get(n).map_or(f64::NAN, |j| j.emissions_g);
            format!("{} ({g:.0} g)", r.strategy.name())
        })
        .collect();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_top(0)
        .x_label_area_size(36)
        .y_label_area_size(200)
        .build_cartesian_2d(x, (0..rows).into_segmented())?;
    // Row 0 at the top: the first strategy reported.
    let row_of = |i: usize| rows - 1 - i as i32;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("hours since submission (UTC times in the title)")
        .y_desc(format!("when each ran, emissions at {} kW", cfg.power_kw))
        .y_labels(rows as usize)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(k) => usize::try_from(rows - 1 - *k)
                .ok()
                .and_then(|i| labels.get(i).cloned())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    for (i, r) in report.results.iter().enumerate() {
        let Some(j) = r.jobs.get(n) else { continue };
        let colour = PALETTE[i % PALETTE.len()];
        let y = row_of(i);
        chart.draw_series(j.runs.iter().map(|iv| {
            let mut bar = Rectangle::new(
                [
                    (h(iv.start), SegmentValue::Exact(y)),
                    (h(iv.end), SegmentValue::Exact(y + 1)),
                ],
                colour.filled(),
            );
            bar.set_margin(5, 5, 0, 0);
            bar
        }))?;
    }
    for (at, colour) in [(dl, RED), (sub, BLUE)] {
        chart.draw_series(LineSeries::new(
            vec![
                (at, SegmentValue::Exact(0)),
                (at, SegmentValue::Exact(rows)),
            ],
            colour.stroke_width(1),
        ))?;
    }
    Ok(())
}

fn job_work(job: &sim::JobRun) -> i64 {
    job.runs
        .iter()
        .map(|r| (r.end - r.start).num_seconds())
        .sum()
}
