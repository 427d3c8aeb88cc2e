//! `carbonshift simulate`: replay a real intensity trace (embedded zone or `--trace FILE`)
//! through the operator's planner and compare strategies against run-now and the oracles.
//!
//! Everything the user can get wrong (zone, file, durations, forecast/region mismatch, a
//! trace too short) is checked before the simulation and reported as one line, exit 2.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use plotters::prelude::*;
use serde_json::json;

use super::{CliResult, Failure, Format};
use crate::data::{self, Vintage};
use crate::duration::{self, format_secs, MAX_FLAG_SECS};
use crate::plan::Constraints;
use crate::series::Series;
use crate::sim::{self, ForecastModel, SimConfig, SimError, SimReport, StrategyKind, Truth};
use crate::timefmt;

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

Embedded data: Electricity Maps (electricitymaps.com), data licensed under ODbL 1.0;
Carbon Intensity API, National Energy System Operator (NESO), CC BY 4.0.";

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
    /// CSV trace instead of an embedded zone: header with timestamp,region,gco2_per_kwh.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Only use the trace from this instant (RFC 3339 or YYYY-MM-DD, UTC).
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
    /// How far ahead the forecast reaches; beyond it a trailing 14-day daily profile.
    #[arg(long, value_name = "DUR", default_value = "48h", value_parser = duration::flag(1, MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub horizon: i64,
    /// Forecast model for the receding-horizon strategies.
    #[arg(long, value_enum, default_value_t = ForecastArg::Perfect)]
    pub forecast: ForecastArg,
    /// Seed of the noisy forecast model.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
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
    /// Write an SVG of one job: the intensity curve with each strategy's run intervals.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Which job to plot (0-based submission index).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub plot_job: usize,
    /// Print the paper table: jobs of 1h, 6h, 24h and 8d with slack +24h and +100 %,
    /// flexible-start vs pause-and-resume savings, for each --region (or `all`).
    #[arg(long)]
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
    if args.paper {
        return paper(&args, cfg);
    }
    if args.region.len() > 1 {
        return Err(Failure::input(
            "several --region values are only supported with --paper",
        ));
    }
    let src = source(&args, args.region.first().map(String::as_str), cfg.forecast)?;
    let truth = Truth {
        actuals: &src.actuals,
        vintages: &src.vintages,
    };
    let report = sim::simulate(&truth, &cfg).map_err(sim_failure)?;
    if let Some(path) = &args.plot {
        plot(path, args.plot_job, &src, &report)?;
    }
    print!("{}", render(&args, &cfg, &src, &report));
    Ok(())
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
        ForecastArg::Noisy => ForecastModel::Noisy { seed: args.seed },
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
    let (region, mut actuals, vintages) = match (&args.trace, region) {
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
                "--from/--to select nothing: the trace covers {} .. {}",
                timefmt::format(actuals.start()),
                timefmt::format(actuals.end())
            ))
        })?;
    }
    let attribution = args.trace.is_none().then_some(data::ATTRIBUTION);
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
                "results": results,
            });
            let _ = writeln!(out, "{v}");
        }
        Format::Csv => {
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
                "{region}: {} jobs of {} that must finish within {} (slack {}), one every {}; forecast {} (horizon {}), {} kW",
                report.jobs,
                format_secs(cfg.duration_secs),
                format_secs(cfg.duration_secs + cfg.slack_secs),
                format_secs(cfg.slack_secs),
                format_secs(cfg.submit_every_secs),
                cfg.forecast.name(),
                format_secs(cfg.horizon_secs),
                cfg.power_kw
            );
            let _ = writeln!(
                out,
                "{:<23} {:>14} {:>9} {:>12} {:>8} {:>11}",
                "strategy", "emissions_kg", "savings", "of_oracle", "misses", "pauses/job"
            );
            for r in &report.results {
                let _ = writeln!(
                    out,
                    "{:<23} {:>14.1} {:>8.2}% {:>12} {:>8} {:>11.2}",
                    r.strategy.name(),
                    r.emissions_g / 1000.0,
                    r.savings_pct,
                    r.oracle_fraction
                        .map_or("-".to_string(), |f| format!("{:.1}%", 100.0 * f)),
                    r.deadline_misses,
                    r.pauses_per_job
                );
            }
            if let Some(a) = src.attribution {
                let _ = writeln!(out, "data: {a}");
            }
        }
    }
    out
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
    if args.trace.is_some() && !args.region.is_empty() {
        return Err(Failure::input("give either --region or --trace, not both"));
    }
    let regions: Vec<Option<String>> = if args.trace.is_some() {
        vec![None]
    } else if args.region.is_empty() || args.region.iter().any(|r| r.eq_ignore_ascii_case("all")) {
        data::zones().iter().map(|z| Some(z.to_string())).collect()
    } else {
        args.region.iter().map(|r| Some(r.clone())).collect()
    };
    let strategies = vec![
        StrategyKind::RunNow,
        StrategyKind::FlexibleStart,
        StrategyKind::PauseAndResume,
        StrategyKind::OracleFlexibleStart,
        StrategyKind::OraclePauseAndResume,
    ];
    let mut rows = Vec::new();
    for region in &regions {
        let src = source(args, region.as_deref(), base.forecast)?;
        let truth = Truth {
            actuals: &src.actuals,
            vintages: &src.vintages,
        };
        for (slack_label, d, s) in paper_cases() {
            let cfg = SimConfig {
                duration_secs: d,
                slack_secs: s,
                strategies: strategies.clone(),
                ..base.clone()
            };
            let report = sim::simulate(&truth, &cfg).map_err(sim_failure)?;
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
            }));
        }
    }
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
            ];
            let _ = writeln!(out, "{}", keys.join(","));
            for r in &rows {
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
            for r in &rows {
                let s = |k: &str| match field(r, k) {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) if n.is_f64() => {
                        n.as_f64().map_or(n.to_string(), |f| format!("{f:.1}"))
                    }
                    v => v.to_string(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s("region"),
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
            if args.trace.is_none() {
                let _ = writeln!(out, "data: {}", data::ATTRIBUTION);
            }
        }
    }
    print!("{out}");
    Ok(())
}

/// SVG of job `n`: actual intensity over its window and one bar row per strategy showing
/// when it ran.
fn plot(path: &PathBuf, n: usize, src: &Source, report: &SimReport) -> CliResult {
    let Some(first) = report.results.first() else {
        return Err(Failure::input("--plot needs at least one strategy"));
    };
    let Some(job) = first.jobs.get(n) else {
        return Err(Failure::input(format!(
            "--plot-job {n}: there are only {} jobs",
            first.jobs.len()
        )));
    };
    let (start, deadline) = (job.submitted, job.deadline);
    let margin =
        TimeDelta::seconds(((deadline - start).num_seconds() / 20).max(src.actuals.step_secs()));
    let (from, to) = (start - margin, deadline + margin);
    let window = src
        .actuals
        .slice(from, to)
        .ok_or_else(|| Failure::runtime("no data to plot for this job"))?;
    let h = |t: DateTime<Utc>| (t - start).num_seconds() as f64 / 3600.0;
    // Headroom for the legend above the curve.
    let ymax = window.values().iter().cloned().fold(1.0, f64::max) * 1.4;
    let rows = report.results.len() as f64;
    let band = ymax * 0.06;
    let ymin = -band * (rows + 0.5);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1000, 420 + 24 * report.results.len() as u32))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: job {n} submitted {} ({} of work, deadline {})",
                    src.region,
                    start.format("%Y-%m-%d %H:%M UTC"),
                    format_secs(job_work(job)),
                    deadline.format("%Y-%m-%d %H:%M")
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(h(from)..h(to), ymin..ymax)?;
        chart
            .configure_mesh()
            .x_desc("hours since submission")
            .y_desc("gCO2eq/kWh (actual)")
            // The strategy bars live below zero; those axis values mean nothing.
            .y_label_formatter(&|y| {
                if *y < 0.0 {
                    String::new()
                } else {
                    format!("{y:.0}")
                }
            })
            .draw()?;
        let pts: Vec<(f64, f64)> = window
            .values()
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let a = h(window.slot_start(i));
                let b = a + window.step_secs() as f64 / 3600.0;
                [(a, *v), (b, *v)]
            })
            .collect();
        let line = |c: RGBColor| {
            move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2))
        };
        chart
            .draw_series(LineSeries::new(pts, BLACK.stroke_width(2)))?
            .label("actual intensity")
            .legend(line(BLACK));
        let d = h(deadline);
        chart
            .draw_series(LineSeries::new(
                vec![(d, ymin), (d, ymax)],
                RED.stroke_width(1),
            ))?
            .label("deadline")
            .legend(line(RED));
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, ymin), (0.0, ymax)],
                BLUE.stroke_width(1),
            ))?
            .label("submitted")
            .legend(line(BLUE));
        let palette = [
            RGBColor(120, 120, 120),
            RGBColor(230, 140, 20),
            RGBColor(30, 150, 60),
            RGBColor(150, 60, 180),
            RGBColor(240, 190, 60),
            RGBColor(20, 110, 200),
        ];
        for (i, r) in report.results.iter().enumerate() {
            let Some(j) = r.jobs.get(n) else { continue };
            let color = palette[i % palette.len()];
            let y1 = -band * (i as f64 + 0.15);
            let y0 = -band * (i as f64 + 0.85);
            chart
                .draw_series(j.runs.iter().map(|iv| {
                    Rectangle::new([(h(iv.start), y0), (h(iv.end), y1)], color.filled())
                }))?
                .label(format!("{} ({:.0} g)", r.strategy.name(), j.emissions_g))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| Failure::runtime(format!("cannot write plot {}: {e}", path.display())))
}

fn job_work(job: &sim::JobRun) -> i64 {
    job.runs
        .iter()
        .map(|r| (r.end - r.start).num_seconds())
        .sum()
}
