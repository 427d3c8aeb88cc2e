//! `carbonshift plan -f caj.yaml`: what the operator would do with a CarbonAwareJob
//! manifest now, without a cluster. It runs the controller's own validate and build
//! functions (hence [`crate::plan::decide`] and the accounting) on the manifest, so the
//! answer is the operator's. A manifest with a `status` (e.g. `kubectl get caj x -o yaml`)
//! is planned from that state: running, paused, runtime already done.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{CliResult, Failure, Format};
use crate::api::CarbonAwareJob;
use crate::controller::build::{self, Observed};
use crate::controller::intensity::Intensities;
use crate::forecast::{ForecastArgs, ProviderKind};
use crate::plan::Action;
use crate::timefmt;

/// Show what the operator would do with a CarbonAwareJob manifest now.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    carbonshift plan -f examples/gpu-training.yaml\n  \
    carbonshift plan -f examples/gpu-training.yaml --region GB\n  \
    carbonshift plan -f caj.yaml --region FR --now 2024-03-01T18:00:00Z --format json\n  \
    kubectl get caj my-job -o yaml | carbonshift plan -f -")]
pub struct Args {
    /// CarbonAwareJob manifest (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", id = "manifest", value_name = "FILE")]
    pub manifest: String,

    /// Plan as of this instant (RFC 3339, or YYYY-MM-DD for midnight UTC) instead of the
    /// current time.
    #[arg(long, value_parser = timefmt::parse_flag)]
    pub now: Option<DateTime<Utc>>,

    /// Grid zone or cloud region for a manifest without spec.region. Without either, the
    /// embedded source plans with DE (and says so); other sources need one.
    #[arg(long, env = "CARBONSHIFT_REGION")]
    pub region: Option<String>,

    /// Start-up margin the operator plans with (its `--deadline-margin`): finish this long
    /// before the deadline, as far as the slack allows.
    #[arg(long, env = "CARBONSHIFT_DEADLINE_MARGIN", default_value = "2m", value_parser = super::run::parse_margin, allow_hyphen_values = true)]
    pub deadline_margin: TimeDelta,

    #[command(flatten)]
    pub forecast: ForecastArgs,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    seconds: i64,
    mean_grams_per_kwh: f64,
    /// Where the run's intensities come from: `forecast`, `modelled` (past the forecast's
    /// horizon: the daily profile of plan::horizon) or `forecast+modelled`.
    intensities: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// Where the forecast ends (later rows are modelled).
    forecast_end: DateTime<Utc>,
    namespace: String,
    name: String,
    now: DateTime<Utc>,
    region: String,
    /// Set when the region is plan's default, not the manifest's or `--region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    region_note: Option<String>,
    forecast_source: String,
    /// `average` or `marginal`: what the intensities and grams measure.
    signal: &'static str,
    current_intensity: Option<f64>,
    strategy: String,
    deadline: DateTime<Utc>,
    /// The deadline less the start-up margin clamped to the slack: what the plan ends by.
    planning_deadline: DateTime<Utc>,
    remaining_seconds: i64,
    power_kw: f64,
    power: String,
    action: String,
    reason: String,
    phase: String,
    next_transition_time: Option<DateTime<Utc>>,
    next_action: Option<String>,
    planned_runs: Vec<Run>,
    expected_grams: Option<f64>,
    run_now_grams: Option<f64>,
    events: Vec<String>,
}

fn read(file: &str) -> Result<String, Failure> {
    if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Failure::input(format!("stdin: {e}")))
    } else {
        std::fs::read_to_string(file).map_err(|e| Failure::input(format!("{file}: {e}")))
    }
}

/// The zone `plan` uses with the embedded source when neither the manifest nor `--region`
/// names one (the README's example zone).
pub const DEFAULT_ZONE: &str = "DE";

pub async fn run(args: Args) -> CliResult {
    let text = read(&args.manifest)?;
    let caj = parse_manifest(&args.manifest, &text)?;
    let now = args.now.unwrap_or_else(Utc::now);
    let (region, region_note) = region(&caj, &args)?;
    let since = build::needed_since(&caj, now);
    let intens = super::forecast::plan_intensities(&args.forecast, &region, now, since).await?;

    let out = build::build(observed(&caj, &region, &intens, now, args.deadline_margin));
    let Some(spec) = out.spec.as_ref() else {
        let why = out
            .events
            .first()
            .map(|n| n.message.clone())
            .unwrap_or_else(|| "the manifest cannot be planned".into());
        return Err(Failure::input(why));
    };
    let st = &out.status;
    let kw = spec.power.kw();
    // Rows and totals on the one series the plan was made with.
    let series = out.planning_series.as_ref();
    let forecast_end = intens.series.end();
    let grams = |a: DateTime<Utc>, b: DateTime<Utc>| {
        series.and_then(|s| s.integrate(a, b).ok()).unwrap_or(0.0)
    };
    // The build step's own figures: the same remaining work and deadline the planner saw.
    let remaining = out.remaining_secs.unwrap_or(0);
    let planning_deadline = out.planning_deadline.unwrap_or(spec.deadline);
    let planned_runs = planned_runs(out.plan.as_ref(), forecast_end, grams);
    let running = st.running_since.is_some();
    let now_s = crate::api::time::trunc(now);
    let report = Report {
        namespace: caj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: caj.metadata.name.clone().unwrap_or_default(),
        now: now_s,
        region: region.clone(),
        region_note,
        forecast_source: intens.provenance.clone(),
        signal: intens.signal.label(),
        forecast_end,
        current_intensity: st.current_intensity,
        strategy: format!("{:?}", caj.spec.schedule.strategy),
        deadline: spec.deadline,
        planning_deadline,
        remaining_seconds: remaining,
        power_kw: kw,
        power: spec.power_source.clone(),
        action: if running { Action::Run } else { Action::Pause }.pipe(|a| match a {
            Action::Run => "Run".to_string(),
            Action::Pause => "Pause".to_string(),
        }),
        reason: st
            .conditions
            .iter()
            .find(|c| c.type_ == build::RUNNING)
            .map(|c| c.reason.clone())
            .unwrap_or_default(),
        phase: st.phase.map(|p| p.as_str().to_string()).unwrap_or_default(),
        next_transition_time: st
            .next_transition_time
            .as_ref()
            .map(crate::api::time::from_time),
        next_action: st.next_action.clone(),
        expected_grams: out.plan.as_ref().map(|p| p.expected_grams_per_kw * kw),
        run_now_grams: (remaining > 0)
            .then(|| kw * grams(now_s, now_s + TimeDelta::seconds(remaining))),
        planned_runs,
        events: out
            .events
            .iter()
            .filter(|n| n.reason != "ChildJobRecreated")
            .map(|n| format!("{}: {}", n.reason, n.message))
            .collect(),
    };
    print_report(&report, args.format)
}

/// The plan's run intervals as report rows, each with its mean intensity and whether it
/// lies within the forecast or past it (modelled).
fn planned_runs(
    plan: Option<&crate::plan::Plan>,
    forecast_end: DateTime<Utc>,
    grams: impl Fn(DateTime<Utc>, DateTime<Utc>) -> f64,
) -> Vec<Run> {
    let Some(p) = plan else {
        return Vec::new();
    };
    p.intervals
        .iter()
        .map(|i| {
            let secs = (i.end - i.start).num_seconds();
            let g = grams(i.start, i.end);
            Run {
                intensities: if i.end <= forecast_end {
                    "forecast"
                } else if i.start >= forecast_end {
                    "modelled"
                } else {
                    "forecast+modelled"
                },
                start: i.start,
                end: i.end,
                seconds: secs,
                mean_grams_per_kwh: if secs > 0 {
                    g * 3600.0 / secs as f64
                } else {
                    0.0
                },
            }
        })
        .collect()
}

/// Prints `report` in `format`.
fn print_report(report: &Report, format: Format) -> CliResult {
    match format {
        Format::Json => {
            let s = serde_json::to_string_pretty(report)
                .map_err(|e| Failure::runtime(e.to_string()))?;
            println!("{s}");
        }
        Format::Table => print!("{}", table_text(report)),
        Format::Csv => {
            println!("start,end,seconds,mean_grams_per_kwh");
            for r in &report.planned_runs {
                println!(
                    "{},{},{},{:.1}",
                    timefmt::format(r.start),
                    timefmt::format(r.end),
                    r.seconds,
                    r.mean_grams_per_kwh
                );
            }
        }
    }
    Ok(())
}

/// The provider's region for `caj`: `spec.region`, else `--region`, else (embedded source
/// only) [`DEFAULT_ZONE`] with a note saying so. `plan` has no cluster, so it never looks
/// at nodes: the error says what to pass instead.
fn region(caj: &CarbonAwareJob, args: &Args) -> Result<(String, Option<String>), Failure> {
    let table = args.forecast.region_table().map_err(Failure::input)?;
    let spec_region = caj
        .spec
        .region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let flag = args
        .region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let provider = args.forecast.provider;
    let (flag, note) = match (spec_region, flag) {
        (None, None) if provider == ProviderKind::Embedded => (
            Some(DEFAULT_ZONE),
            Some(format!(
                "(the manifest has no spec.region and no --region was given: planned with \
                 {DEFAULT_ZONE}; pass --region ZONE for your grid)"
            )),
        ),
        (None, None) => {
            return Err(Failure::input(format!(
                "no region: the manifest has no spec.region; pass --region ZONE (e.g. \
                 --region DE) or set spec.region in the manifest (the {} source has no default \
                 zone)",
                provider.name()
            )))
        }
        (_, flag) => (flag, None),
    };
    let resolved = crate::region::resolve(spec_region, flag, &[], &table, provider)
        .map_err(|e| Failure::input(format!("{e} (pass --region ZONE or set spec.region)")))?;
    Ok((resolved.provider_region, note))
}

/// `text` as a CarbonAwareJob, or an input error a user can act on: YAML syntax with its
/// line, a structure problem (a field at the wrong indentation) with the lines involved,
/// or a deadline out of range with the accepted range.
pub fn parse_manifest(file: &str, text: &str) -> Result<CarbonAwareJob, Failure> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let m = e.to_string();
        // The parser's and scanner's errors are about the text's structure; the rest (a
        // number too large for any integer type) about a value.
        let structure = [
            "while parsing",
            "while scanning",
            "did not find expected",
            "not allowed",
        ]
        .iter()
        .any(|w| m.contains(w));
        if !structure {
            return Failure::input(format!("{file}: not a CarbonAwareJob: {m}"));
        }
        let (at, lines) = match e.location() {
            Some(l) => (
                format!(" at line {}", l.line()),
                format!("line {} and the lines just before it", l.line()),
            ),
            None => (String::new(), "the lines".to_string()),
        };
        Failure::input(format!(
            "{file}: YAML structure problem{at}: {e}; check the indentation of {lines} \
             (YAML nests by indentation, spaces only; the fields of one level line up)"
        ))
    })?;
    if value.is_null() {
        return Err(Failure::input(format!(
            "{file}: no CarbonAwareJob in it (the manifest is empty)"
        )));
    }
    if let Some(problem) = misplaced_field(text, &value) {
        return Err(Failure::input(format!("{file}: {problem}")));
    }
    serde_yaml::from_str(text)
        .map_err(|e| Failure::input(format!("{file}: {}", explain(&e, text, &value))))
}

/// The fields of each fixed level of a CarbonAwareJob (the levels whose unknown keys are
/// a structure problem; the pod template and metadata take any).
const LEVELS: [(&str, &[&str]); 4] = [
    ("", &["apiVersion", "kind", "metadata", "spec", "status"]),
    ("spec", &["template", "schedule", "region", "power"]),
    (
        "spec.schedule",
        &[
            "strategy",
            "deadline",
            "maxDelay",
            "expectedDuration",
            "minRunDuration",
            "minPauseDuration",
            "maxPauses",
            "checkpointOverhead",
            "thresholdGramsPerKWh",
        ],
    ),
    ("spec.power", &["wattsPerGpu", "gpus", "watts", "pue"]),
];

/// A key at a fixed level that is not a field there: where it belongs (if it is a field of
/// another level, the usual indentation slip) and its line.
fn misplaced_field(text: &str, value: &serde_yaml::Value) -> Option<String> {
    for (path, fields) in LEVELS {
        let mut node = value;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            node = node.get(part)?;
        }
        let Some(map) = node.as_mapping() else {
            continue;
        };
        for key in map.keys().filter_map(|k| k.as_str()) {
            if fields.contains(&key) {
                continue;
            }
            let here = if path.is_empty() {
                "the top level".to_string()
            } else {
                path.to_string()
            };
            let line = key_line(text, key)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            let home = LEVELS.iter().find(|(_, f)| f.contains(&key)).map(|(p, _)| {
                if p.is_empty() {
                    "the top level"
                } else {
                    p
                }
            });
            return Some(match home {
                Some(home) => format!(
                    "YAML structure problem: `{key}`{line} is under {here}, but it is a field of \
                     {home}: check its indentation (the fields of one level line up)"
                ),
                None => format!(
                    "`{key}`{line} is not a field of {here} (its fields: {}); check the spelling \
                     and the indentation",
                    fields.join(", ")
                ),
            });
        }
    }
    None
}

/// The first line (1-based) where `key:` starts a mapping entry.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// A serde error of a CarbonAwareJob as a message naming the field and the fix.
fn explain(e: &serde_yaml::Error, text: &str, value: &serde_yaml::Value) -> String {
    let msg = e.to_string();
    let at = e
        .location()
        .map(|l| format!(" (line {})", l.line()))
        .unwrap_or_default();
    if let Some(field) = msg
        .split("missing field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    {
        let path = msg.split(": missing field").next().unwrap_or("");
        let path = if path.starts_with("missing field") {
            ""
        } else {
            path
        };
        let whole = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return match key_line(text, field) {
            Some(l) => {
                format!(
                "YAML structure problem: {whole} is missing{at}, but line {l} has `{field}:` at \
                 another level: check its indentation (it belongs beside the other fields of {})",
                if path.is_empty() { "the top level" } else { path }
            )
            }
            None => format!("{whole} is missing{at}: add it"),
        };
    }
    if msg.starts_with("spec.schedule.deadline") {
        let given = value
            .get("spec")
            .and_then(|v| v.get("schedule"))
            .and_then(|v| v.get("deadline"))
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        return format!(
            "spec.schedule.deadline {given:?}{at} is not a time carbonshift accepts: write an \
             RFC 3339 time (e.g. 2024-03-02T12:00:00Z) at most 366 days after the job's \
             creation (for a manifest never applied, after --now or the current time), and no \
             later than {}",
            crate::api::LATEST_DEADLINE
        );
    }
    format!("not a CarbonAwareJob: {msg}")
}

/// What `plan -f` hands the build step: the manifest with no child Job yet, as the
/// operator's first reconcile of it would see it.
pub(crate) fn observed<'a>(
    caj: &'a CarbonAwareJob,
    region: &'a str,
    intens: &'a Intensities,
    now: DateTime<Utc>,
    deadline_margin: TimeDelta,
) -> Observed<'a> {
    Observed {
        caj,
        child: None,
        region: Ok(region),
        intensities: Ok(intens),
        now,
        persist_every: TimeDelta::seconds(crate::controller::DEFAULT_PERSIST_SECS),
        deadline_margin,
        // As an operator that serves Kueue would: a template for a Kueue queue is planned.
        kueue: true,
    }
}

/// `x.pipe(f)`: keeps the report literal readable.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

fn table_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let dur = crate::duration::format_secs;
    let mut s = String::new();
    let _ = writeln!(s, "CarbonAwareJob   {}/{}", r.namespace, r.name);
    let _ = writeln!(
        s,
        "Region           {} ({}, {} signal)",
        r.region, r.forecast_source, r.signal
    );
    if let Some(note) = &r.region_note {
        let _ = writeln!(s, "                 {note}");
    }
    let _ = writeln!(
        s,
        "Now              {}  {}",
        timefmt::format(r.now),
        r.current_intensity
            .map(|g| format!("{g} gCO2eq/kWh"))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "Strategy         {}", r.strategy);
    if r.planning_deadline < r.deadline {
        let _ = writeln!(
            s,
            "Deadline         {} (plans to finish by {}: {} start-up margin)",
            timefmt::format(r.deadline),
            timefmt::format(r.planning_deadline),
            dur((r.deadline - r.planning_deadline).num_seconds())
        );
    } else {
        let _ = writeln!(s, "Deadline         {}", timefmt::format(r.deadline));
    }
    let _ = writeln!(s, "Remaining        {}", dur(r.remaining_seconds));
    let _ = writeln!(s, "Power            {} = {:.3} kW", r.power, r.power_kw);
    let _ = writeln!(
        s,
        "Decision         {} ({}), phase {}",
        r.action, r.reason, r.phase
    );
    match (&r.next_transition_time, &r.next_action) {
        (Some(t), Some(a)) => {
            let _ = writeln!(s, "Next transition  {a} at {}", timefmt::format(*t));
        }
        _ => {
            let _ = writeln!(s, "Next transition  none (runs to completion)");
        }
    }
    if !r.planned_runs.is_empty() {
        let _ = writeln!(s, "Planned runs");
        let _ = writeln!(
            s,
            "  {:<22} {:<22} {:>9} {:>12}  INTENSITIES",
            "START", "END", "DURATION", "MEAN g/kWh"
        );
        for run in &r.planned_runs {
            let _ = writeln!(
                s,
                "  {:<22} {:<22} {:>9} {:>12.1}  {}",
                timefmt::format(run.start),
                timefmt::format(run.end),
                dur(run.seconds),
                run.mean_grams_per_kwh,
                run.intensities
            );
        }
        let _ = writeln!(
            s,
            "  (forecast until {}; modelled: the daily profile past it)",
            timefmt::format(r.forecast_end)
        );
    }
    if let (Some(e), Some(b)) = (r.expected_grams, r.run_now_grams) {
        let pct = if b > 0.0 { (1.0 - e / b) * 100.0 } else { 0.0 };
        let _ = writeln!(
            s,
            "Expected         {e:.0} gCO2eq (running now: {b:.0} g; {pct:.1} % less)"
        );
    }
    for ev in &r.events {
        let _ = writeln!(s, "Event            {ev}");
    }
    s
}
