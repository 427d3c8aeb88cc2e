//! `carbonshift forecast`: fetch one provider's forecast for one region, validate and
//! normalise it exactly as the operator does, and print it. For checking credentials,
//! endpoints and region mappings before deploying, and for producing a CSV the `file`
//! provider reads back.

use std::fmt::Write as _;
use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{CliResult, Failure, Format};
use crate::forecast::{self, ForecastArgs, ProviderConfig, Signal};
use crate::region;
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  carbonshift forecast --provider embedded --region DE
  carbonshift forecast --provider electricitymaps --region eu-central-1 --format json
      (token from ELECTRICITYMAPS_TOKEN or ELECTRICITYMAPS_TOKEN_FILE)
  carbonshift forecast --provider uk-carbon-intensity --region regionid:13
  carbonshift forecast --provider file --file ./de.csv --region DE --format csv")]
pub struct Args {
    #[command(flatten)]
    pub forecast: ForecastArgs,

    /// Grid zone, provider region or cloud region (mapped through the region table).
    #[arg(long)]
    pub region: String,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Serialize)]
struct Output<'a> {
    provider: &'a str,
    region: &'a str,
    signal: Signal,
    generated_at: DateTime<Utc>,
    historical_replay: bool,
    step_seconds: i64,
    points: Vec<Point>,
}

#[derive(Serialize)]
struct Point {
    timestamp: DateTime<Utc>,
    gco2_per_kwh: f64,
}

pub async fn run(args: Args) -> CliResult {
    let failure = |e| super::forecast_failure(e, &args.forecast);
    let table = args.forecast.region_table().map_err(Failure::input)?;
    let resolved = region::resolve(
        None,
        Some(&args.region),
        &[],
        &table,
        args.forecast.provider,
    )
    .map_err(Failure::input)?;
    let config = ProviderConfig::from_args(&args.forecast).map_err(failure)?;
    let source = forecast::build_source(&config).map_err(failure)?;
    let now = Utc::now();
    let f = source
        .fetch(&resolved.provider_region, now)
        .await
        .map_err(failure)?;
    if f.historical_replay {
        eprintln!(
            "note: {} is historical data replayed onto the current calendar, not a forecast",
            f.source
        );
    }
    let points: Vec<Point> = f
        .series
        .values()
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            timestamp: f.series.slot_start(i),
            gco2_per_kwh: *v,
        })
        .collect();
    // Built in memory and written once, so a closed pipe (`| head`) is not a panic.
    let mut out = String::new();
    match args.format {
        Format::Json => {
            let doc = Output {
                provider: &f.source,
                region: &f.region,
                signal: f.signal,
                generated_at: f.generated_at,
                historical_replay: f.historical_replay,
                step_seconds: f.series.step_secs(),
                points,
            };
            let text = serde_json::to_string_pretty(&doc).map_err(Failure::runtime)?;
            let _ = writeln!(out, "{text}");
        }
        Format::Csv => {
            let _ = writeln!(out, "timestamp,region,gco2_per_kwh");
            for p in &points {
                let _ = writeln!(
                    out,
                    "{},{},{}",
                    timefmt::format(p.timestamp),
                    f.region,
                    p.gco2_per_kwh
                );
            }
        }
        Format::Table => {
            let _ = writeln!(
                out,
                "provider: {}{}\nregion: {}\nsignal: {:?}\ngenerated at: {}\nstep: {}\n",
                f.source,
                if f.historical_replay {
                    " (historical replay)"
                } else {
                    ""
                },
                f.region,
                f.signal,
                timefmt::format(f.generated_at),
                crate::duration::format_secs(f.series.step_secs()),
            );
            let _ = writeln!(out, "{:<22} {:>12}", "TIMESTAMP", "GCO2/KWH");
            for p in &points {
                let marker = if p.timestamp <= now
                    && now < p.timestamp + chrono::TimeDelta::seconds(f.series.step_secs())
                {
                    "  <- now"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "{:<22} {:>12.1}{marker}",
                    timefmt::format(p.timestamp),
                    p.gco2_per_kwh
                );
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Failure::runtime(format!("cannot write output: {e}")))
        }
        _ => {}
    }
    Ok(())
}
