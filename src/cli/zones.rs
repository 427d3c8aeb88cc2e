//! `carbonshift zones`: the grid data embedded in the binary, one row per dataset: its
//! zone, coverage (first and last hour, UTC), step, mean intensity and licence.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{CliResult, Failure, Format};
use crate::data;
use crate::series::Series;
use crate::timefmt;

const EXAMPLES: &str = "\
Examples:
  carbonshift zones
  carbonshift zones --format json | jq '.[] | select(.mean_gco2_per_kwh < 50) | .zone'

Direct (operational) average intensity, gCO2eq/kWh. Details and full attribution:
data/README.md.";

/// List the embedded grid zones (the --region values of simulate and the embedded
/// forecast provider).
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Electricity Maps zones: ODbL 1.0; NESO (GB national): CC BY 4.0.
const EM: (&str, &str) = ("Electricity Maps", "ODbL-1.0");
const NESO: (&str, &str) = ("NESO Carbon Intensity API", "CC-BY-4.0");

/// One row of the listing.
fn row(zone: &str, dataset: &str, (source, licence): (&str, &str), s: &Series) -> Value {
    let last = s.slot_start(s.len().saturating_sub(1));
    json!({
        "zone": zone,
        "dataset": dataset,
        "first_hour": timefmt::format(s.start()),
        "last_hour": timefmt::format(last),
        "step_minutes": s.step_secs() / 60,
        "hours": s.len() as i64 * s.step_secs() / 3600,
        "mean_gco2_per_kwh": (s.mean() * 10.0).round() / 10.0,
        "source": source,
        "licence": licence,
    })
}

fn rows() -> Result<Vec<Value>, Failure> {
    let broken = |e: data::DataError| Failure::runtime(format!("embedded data: {e}"));
    let mut out = Vec::new();
    for zone in data::zones() {
        let s = data::load_zone(zone).map_err(broken)?;
        out.push(row(zone, "electricitymaps-hourly", EM, &s));
    }
    let s = data::neso_actuals().map_err(broken)?;
    out.push(row("GB", "neso-national-actuals", NESO, &s));
    Ok(out)
}

const KEYS: [&str; 9] = [
    "zone",
    "dataset",
    "first_hour",
    "last_hour",
    "step_minutes",
    "hours",
    "mean_gco2_per_kwh",
    "source",
    "licence",
];

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

pub async fn run(args: Args) -> CliResult {
    let rows = rows()?;
    let mut out = String::new();
    match args.format {
        Format::Json => {
            let _ = writeln!(out, "{}", Value::Array(rows));
        }
        Format::Csv => {
            let _ = writeln!(out, "{}", KEYS.join(","));
            for r in &rows {
                let cells: Vec<String> = KEYS.iter().map(|k| cell(&r[*k])).collect();
                let _ = writeln!(out, "{}", cells.join(","));
            }
        }
        Format::Table => {
            let _ = writeln!(
                out,
                "{:<12} {:<23} {:<21} {:<21} {:>5} {:>10}  licence",
                "zone", "dataset", "first hour (UTC)", "last hour (UTC)", "step", "mean g/kWh"
            );
            for r in &rows {
                let _ = writeln!(
                    out,
                    "{:<12} {:<23} {:<21} {:<21} {:>4}m {:>10.1}  {} ({})",
                    cell(&r["zone"]),
                    cell(&r["dataset"]),
                    cell(&r["first_hour"]),
                    cell(&r["last_hour"]),
                    cell(&r["step_minutes"]),
                    r["mean_gco2_per_kwh"].as_f64().unwrap_or(f64::NAN),
                    cell(&r["licence"]),
                    cell(&r["source"]),
                );
            }
            let _ = writeln!(out, "data: {}", data::ATTRIBUTION);
        }
    }
    print!("{out}");
    Ok(())
}
