//! `carbonshift simulate --regions HOME,ZONE,...` or `--trace A.csv --trace B.csv`: the
//! multi-region replay ([`crate::sim::regions`]), its flags checked and its traces loaded
//! and aligned here, its results rendered as a table or JSON.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{
    first_submitted_of, hours, near_zero_caveat, paper_cases, paper_config, progress_bar, round,
    sim_failure, source_of, Args, Source, NEAR_ZERO_G_PER_KWH,
};
use crate::cli::{CliResult, Failure, Format};
use crate::data;
use crate::duration::format_secs;
use crate::sim::regions::{
    align, simulate_regions, Comparison, Reference, Region, RegionsReport, VINTAGES_REFUSED,
};
use crate::sim::{savings_pct, ForecastModel, SimConfig, StrategyKind, SIGNAL};

/// Whether the flags ask for several regions: `--regions`, or more than one `--trace`.
pub(super) fn is_multi(args: &Args) -> bool {
    !args.regions.is_empty() || args.trace.len() > 1
}

/// The multi-region `simulate` (and `--paper` with several regions).
pub(super) fn run(args: &Args, cfg: &SimConfig) -> CliResult {
    let sources = sources(args, cfg.forecast)?;
    let regions: Vec<Region<'_>> = sources
        .iter()
        .map(|s| Region {
            name: &s.region,
            actuals: &s.actuals,
        })
        .collect();
    if args.paper {
        return paper(args, cfg, &regions);
    }
    let jobs = crate::sim::submissions(
        &crate::sim::Truth {
            actuals: regions[0].actuals,
            vintages: &[],
        },
        cfg,
    )
    .map_or(0, |s| s.len());
    let bar = progress_bar(jobs as u64, &names(&regions));
    let report = simulate_regions(&regions, cfg, &|| bar.inc(1));
    bar.finish_and_clear();
    let report = report.map_err(sim_failure)?;
    let out = match args.format {
        Format::Json => format!("{}\n", to_json(cfg, &sources, &report)),
        _ => table(args, cfg, &sources, &report),
    };
    print!("{out}");
    Ok(())
}

fn names(regions: &[Region<'_>]) -> String {
    regions.iter().map(|r| r.name).collect::<Vec<_>>().join(",")
}

/// Refuses the flag combinations a multi-region run cannot honour, then loads every
/// region's trace (--from/--to applied) and cuts them to their common span.
fn sources(args: &Args, model: ForecastModel) -> Result<Vec<Source>, Failure> {
    check_flags(args, model)?;
    let mut out = Vec::new();
    if args.regions.is_empty() {
        for path in &args.trace {
            out.push(source_of(args, Some(path), None, model)?);
        }
    } else {
        for zone in &args.regions {
            out.push(source_of(args, None, Some(zone.trim()), model)?);
        }
    }
    let named: Vec<(&str, &crate::series::Series)> = out
        .iter()
        .map(|s| (s.region.as_str(), &s.actuals))
        .collect();
    let aligned = align(&named).map_err(sim_failure)?;
    for (s, a) in out.iter_mut().zip(aligned) {
        s.actuals = a;
    }
    Ok(out)
}

fn check_flags(args: &Args, model: ForecastModel) -> CliResult {
    let refuse = |m: &str| Err(Failure::input(m));
    if !args.regions.is_empty() && !args.region.is_empty() {
        return refuse(
            "give --region ZONE (one region) or --regions HOME,ZONE,... (several), not both",
        );
    }
    if !args.regions.is_empty() && !args.trace.is_empty() {
        return refuse(
            "give --regions HOME,ZONE,... (embedded zones) or --trace FILE once per region (files), not both",
        );
    }
    if !args.region.is_empty() {
        return refuse("give either --region or --trace, not both");
    }
    if args.regions.iter().any(|r| r.eq_ignore_ascii_case("all")) {
        return refuse(
            "--regions takes zone names, the first being home (e.g. --regions FR,DE,GB); `all` is only for --paper --region",
        );
    }
    if args.regions.len() == 1 {
        return refuse("--regions needs at least two zones, the first being home (e.g. --regions FR,DE); for one zone use --region");
    }
    if model == ForecastModel::Vintages {
        return Err(Failure::input(VINTAGES_REFUSED));
    }
    if args.plot.is_some() {
        return refuse("--plot draws one region's job: it is not supported with several regions; drop --plot or use --region");
    }
    if args.format == Format::Csv {
        return refuse(
            "--format csv is not supported with several regions; use --format table or json",
        );
    }
    Ok(())
}

/// A reference's name as the table and the JSON show it.
fn reference_label(r: &RegionsReport, against: Reference) -> String {
    let name = |i: usize| r.regions.get(i).map_or("?", String::as_str);
    match against {
        Reference::RunNowIn(0) => format!("run-now {} (home)", name(0)),
        Reference::RunNowIn(i) => format!("run-now {}", name(i)),
        Reference::BestFixed(i) => format!("best fixed region ({})", name(i)),
        Reference::WorstFixed(i) => format!("worst fixed region ({})", name(i)),
        Reference::TemporalAtHome(k) => format!("{} at home", k.name()),
    }
}

/// Run-now at home's mean intensity, g/kWh.
fn home_g_per_kwh(cfg: &SimConfig, r: &RegionsReport) -> Option<f64> {
    let kwh = r.jobs as f64 * hours(cfg.duration_secs) * cfg.power_kw;
    (kwh > 0.0).then(|| r.baseline_g / kwh)
}

fn region_jobs_json(r: &RegionsReport, counts: &[usize]) -> Value {
    Value::Object(
        r.regions
            .iter()
            .zip(counts)
            .map(|(n, c)| (n.clone(), json!(c)))
            .collect(),
    )
}

fn comparison_json(r: &RegionsReport, c: &Comparison) -> Value {
    let name = |i: usize| r.regions.get(i).cloned();
    let (kind, region, strategy) = match c.against {
        Reference::RunNowIn(i) => ("fixed-region", name(i), None),
        Reference::BestFixed(i) => ("best-fixed-region", name(i), None),
        Reference::WorstFixed(i) => ("worst-fixed-region", name(i), None),
        Reference::TemporalAtHome(k) => ("temporal-at-home", name(0), Some(k.name())),
    };
    json!({
        "against": reference_label(r, c.against),
        "reference": kind,
        "region": region,
        "strategy": strategy,
        "emissions_g": round(c.emissions_g, 1),
        "vs_home_pct": round(c.vs_home_pct, 3),
        "spatial_run_now_pct": round(c.spatial_pct, 3),
        "spatial_flexible_start_pct": round(c.spatial_flexible_start_pct, 3),
        "spatial_pause_and_resume_pct": round(c.spatial_pause_and_resume_pct, 3),
        "oracle_pause_and_resume_pct": round(c.oracle_pct, 3),
    })
}

/// The single-region JSON's fields (region = home), plus `regions`, `home`, per strategy
/// `region_jobs`, the fixed regions and the `comparison` rows.
fn to_json(cfg: &SimConfig, sources: &[Source], r: &RegionsReport) -> Value {
    let baseline = home_g_per_kwh(cfg, r);
    let results: Vec<Value> = r
        .results
        .iter()
        .map(|x| {
            let s = &x.report;
            json!({
                "strategy": s.strategy.name(),
                "emissions_g": round(s.emissions_g, 1),
                "savings_pct": round(s.savings_pct, 3),
                "oracle_fraction": s.oracle_fraction.map(|f| round(f, 4)),
                "deadline_misses": s.deadline_misses,
                "pauses_per_job": round(s.pauses_per_job, 3),
                "region_jobs": region_jobs_json(r, &x.region_jobs),
            })
        })
        .collect();
    let fixed: Vec<Value> = r
        .regions
        .iter()
        .zip(&r.fixed)
        .map(|(n, f)| json!({"region": n, "emissions_g": round(f.emissions_g, 1), "savings_pct": round(f.savings_pct, 3)}))
        .collect();
    json!({
        "region": r.regions[0],
        "regions": r.regions,
        "home": r.regions[0],
        "jobs": r.jobs,
        "duration_hours": hours(cfg.duration_secs),
        "slack_hours": hours(cfg.slack_secs),
        "forecast": cfg.forecast.name(),
        "signal": SIGNAL.label(),
        "first_submitted": first_submitted_of(r.fixed.first()).map(crate::timefmt::format),
        "span": [crate::timefmt::format(sources[0].actuals.start()), crate::timefmt::format(sources[0].actuals.end())],
        "baseline_gco2_per_kwh": baseline.map(|b| round(b, 3)),
        "caveat": near_zero_caveat(baseline),
        "results": results,
        "fixed_regions": fixed,
        "best_fixed_region": r.regions[r.fixed_extreme(true)],
        "worst_fixed_region": r.regions[r.fixed_extreme(false)],
        "comparison": r.comparison().iter().map(|c| comparison_json(r, c)).collect::<Vec<_>>(),
    })
}

fn header(cfg: &SimConfig, sources: &[Source], r: &RegionsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (home {}): {} jobs of {} that must finish within {} (slack {}), one every {}; forecast {} (horizon {}), {} signal, {} kW",
        r.regions.join(","),
        r.regions[0],
        r.jobs,
        format_secs(cfg.duration_secs),
        format_secs(cfg.duration_secs + cfg.slack_secs),
        format_secs(cfg.slack_secs),
        format_secs(cfg.submit_every_secs),
        cfg.forecast.name(),
        format_secs(cfg.horizon_secs),
        SIGNAL.label(),
        cfg.power_kw
    );
    let span = &sources[0].actuals;
    if let Some(t) = first_submitted_of(r.fixed.first()) {
        let _ = writeln!(
            out,
            "common span {} .. {} UTC; first job submitted {} UTC, after {} of history for the forecasts",
            span.start().format("%Y-%m-%d %H:%M"),
            span.end().format("%Y-%m-%d %H:%M"),
            t.format("%Y-%m-%d %H:%M"),
            format_secs((t - span.start()).num_seconds())
        );
    }
    out
}

fn table(args: &Args, cfg: &SimConfig, sources: &[Source], r: &RegionsReport) -> String {
    let mut out = header(cfg, sources, r);
    let caveat = near_zero_caveat(home_g_per_kwh(cfg, r));
    let mark = if caveat.is_some() { "*" } else { " " };
    let _ = writeln!(
        out,
        "each strategy chooses its region at submission; savings vs run-now at home ({})",
        r.regions[0]
    );
    let _ = writeln!(
        out,
        "{:<23} {:>14} {:>10} {:>12} {:>8} {:>11}  jobs {}",
        "strategy",
        "emissions_kg",
        "savings",
        "of_oracle",
        "misses",
        "pauses/job",
        r.regions.join("/")
    );
    for x in &r.results {
        let s = &x.report;
        let counts: Vec<String> = x.region_jobs.iter().map(usize::to_string).collect();
        let _ = writeln!(
            out,
            "{:<23} {:>14.1} {:>8.2}%{mark} {:>12} {:>8} {:>11.2}  {}",
            s.strategy.name(),
            s.emissions_g / 1000.0,
            s.savings_pct,
            s.oracle_fraction
                .map_or("-".to_string(), |f| format!("{:.1}%", 100.0 * f)),
            s.deadline_misses,
            s.pauses_per_job,
            counts.join("/")
        );
    }
    out.push_str(&comparison_table(r));
    if let Some(c) = &caveat {
        let _ = writeln!(out, "* {c}");
    }
    if args.trace.is_empty() {
        let _ = writeln!(out, "data: {}", data::ATTRIBUTION);
    }
    out
}

/// Savings of the spatial results against each reference.
fn comparison_table(r: &RegionsReport) -> String {
    let mut out = String::from(
        "\nsavings against each reference, %: spatial = run-now choosing the region; +FS / +PR = flexible-start / pause-and-resume choosing it; oracle = oracle-pause-and-resume choosing it\n",
    );
    let _ = writeln!(
        out,
        "{:<36} {:>12} {:>8} {:>8} {:>11} {:>11} {:>8}",
        "against", "emissions_kg", "vs_home", "spatial", "spatial+FS", "spatial+PR", "oracle"
    );
    for c in r.comparison() {
        let _ = writeln!(
            out,
            "{:<36} {:>12.1} {:>7.2}% {:>7.2}% {:>10.2}% {:>10.2}% {:>7.2}%",
            reference_label(r, c.against),
            c.emissions_g / 1000.0,
            c.vs_home_pct,
            c.spatial_pct,
            c.spatial_flexible_start_pct,
            c.spatial_pause_and_resume_pct,
            c.oracle_pct
        );
    }
    out
}

/// `--paper` with several regions: per job length of the paper, run-now in each region
/// and the spatial results, against the worst fixed region and against home, for both
/// slacks.
fn paper(args: &Args, base: &SimConfig, regions: &[Region<'_>]) -> CliResult {
    let home = crate::sim::Truth {
        actuals: regions[0].actuals,
        vintages: &[],
    };
    let total: usize = paper_cases()
        .into_iter()
        .map(|(_, d, s)| {
            crate::sim::submissions(&home, &paper_config(base, d, s)).map_or(0, |v| v.len())
        })
        .sum();
    let bar = progress_bar(total as u64, "paper");
    let mut cases = Vec::new();
    for (label, d, s) in paper_cases() {
        let cfg = paper_config(base, d, s);
        bar.set_message(format!("{} +{label}", format_secs(d)));
        let r = simulate_regions(regions, &cfg, &|| bar.inc(1)).map_err(|e| {
            bar.finish_and_clear();
            sim_failure(e)
        })?;
        cases.push((label, cfg, r));
    }
    bar.finish_and_clear();
    let rows: Vec<Value> = cases.iter().map(|(l, c, r)| paper_row(l, c, r)).collect();
    let out = match args.format {
        Format::Json => {
            let v = json!({
                "forecast": base.forecast.name(),
                "horizon_hours": hours(base.horizon_secs),
                "submit_every_hours": hours(base.submit_every_secs),
                "regions": regions.iter().map(|r| r.name).collect::<Vec<_>>(),
                "home": regions[0].name,
                "rows": rows,
            });
            format!("{v}\n")
        }
        _ => paper_table(args, base, regions, &rows),
    };
    print!("{out}");
    Ok(())
}

/// One paper case: each line's emissions and savings against the worst fixed region and
/// against run-now at home.
fn paper_row(slack: &str, cfg: &SimConfig, r: &RegionsReport) -> Value {
    let worst = r.fixed_extreme(false);
    let worst_g = r.fixed[worst].emissions_g;
    let line = |label: String, e: f64, jobs: Option<&[usize]>| {
        json!({
            "label": label,
            "emissions_g": round(e, 1),
            "vs_worst_pct": round(savings_pct(e, worst_g), 2),
            "vs_home_pct": round(savings_pct(e, r.baseline_g), 2),
            "region_jobs": jobs.map(|j| region_jobs_json(r, j)),
        })
    };
    let mut lines: Vec<Value> = r
        .fixed
        .iter()
        .enumerate()
        .map(|(i, f)| {
            line(
                reference_label(r, Reference::RunNowIn(i)),
                f.emissions_g,
                None,
            )
        })
        .collect();
    for x in &r.spatial {
        let label = match x.report.strategy {
            StrategyKind::RunNow => "spatial run-now".to_string(),
            k => format!("spatial {}", k.name()),
        };
        lines.push(line(label, x.report.emissions_g, Some(&x.region_jobs)));
    }
    for t in &r.temporal {
        lines.push(line(
            format!("{} at home", t.strategy.name()),
            t.emissions_g,
            None,
        ));
    }
    let misses: usize = r.spatial.iter().map(|x| x.report.deadline_misses).sum();
    json!({
        "duration": format_secs(cfg.duration_secs),
        "slack": slack,
        "window": format_secs(cfg.duration_secs + cfg.slack_secs),
        "jobs": r.jobs,
        "worst_fixed_region": r.regions[worst],
        "best_fixed_region": r.regions[r.fixed_extreme(true)],
        "baseline_gco2_per_kwh": home_g_per_kwh(cfg, r).map(|b| round(b, 3)),
        "deadline_misses": misses,
        "lines": lines,
    })
}

/// One markdown table per job length, the two slacks side by side.
fn paper_table(args: &Args, base: &SimConfig, regions: &[Region<'_>], rows: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Regions {} (home {}): savings %, against the worst fixed region (all jobs run-now there) and against run-now at home. spatial = choosing the region at submission; forecast {} (horizon {}); one job every {}.",
        names(regions),
        regions[0].name,
        base.forecast.name(),
        format_secs(base.horizon_secs),
        format_secs(base.submit_every_secs)
    );
    for pair in rows.chunks(2) {
        let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("?").to_string();
        let _ = writeln!(out, "\n{} jobs", s(&pair[0], "duration"));
        let mut head = String::from("| |");
        let mut rule = String::from("|---|");
        for r in pair {
            let _ = write!(
                head,
                " {}: vs worst ({}) | {0}: vs home |",
                s(r, "slack"),
                s(r, "worst_fixed_region")
            );
            rule.push_str("---|---|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        let empty = Vec::new();
        let lines0 = pair[0]["lines"].as_array().unwrap_or(&empty);
        for (i, l) in lines0.iter().enumerate() {
            let mut row = format!("| {} |", l["label"].as_str().unwrap_or("?"));
            for r in pair {
                let li = &r["lines"][i];
                let f = |k: &str| li[k].as_f64().map_or("-".into(), |x| format!("{x:.1}"));
                let _ = write!(row, " {} | {} |", f("vs_worst_pct"), f("vs_home_pct"));
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out, "{}", paper_notes(pair));
    }
    let near_zero = rows.iter().any(|r| {
        r["baseline_gco2_per_kwh"]
            .as_f64()
            .is_some_and(|b| b < NEAR_ZERO_G_PER_KWH)
    });
    if near_zero {
        let _ = writeln!(out, "* run-now at home averaged under {NEAR_ZERO_G_PER_KWH} gCO2eq/kWh: percentages of a near-zero total (see data/README.md)");
    }
    if args.trace.is_empty() {
        let _ = writeln!(out, "data: {}", data::ATTRIBUTION);
    }
    out
}

/// Jobs, misses and where spatial pause-and-resume ran, per slack.
fn paper_notes(pair: &[Value]) -> String {
    let notes: Vec<String> = pair
        .iter()
        .map(|r| {
            let pr = r["lines"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["label"] == "spatial pause-and-resume"));
            let jobs = pr
                .and_then(|l| l["region_jobs"].as_object())
                .map_or(String::new(), |o| {
                    o.iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                });
            format!(
                "{}: {} jobs, {} misses, spatial pause-and-resume ran {jobs}",
                r["slack"].as_str().unwrap_or("?"),
                r["jobs"],
                r["deadline_misses"]
            )
        })
        .collect();
    notes.join("; ")
}
