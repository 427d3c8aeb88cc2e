//! Real grid carbon-intensity traces embedded in the binary, and the CSV reader shared by
//! `--trace FILE`, the `file` forecast provider and the embedded data itself.
//!
//! Embedded: eleven Electricity Maps hourly zones (2021-23, ODbL 1.0) and the NESO GB
//! national actuals + 36 real 48 h forecast vintages of March 2023 (CC BY 4.0); see
//! `data/README.md` and `NOTICE`. They are gzip-compressed CSVs in the same
//! `timestamp,region,gco2_per_kwh` shape a user's trace file has, so one parser (and one set
//! of checks) serves both, and `zcat data/electricitymaps_hourly_DE.csv.gz` is a valid
//! `--trace` file.
//!
//! Which value: every series is the **direct** (operational) average intensity,
//! `gco2_per_kwh`, the same scope as NESO's figures. We do not switch to life-cycle for
//! CA-QC although its direct intensity is 0 in ~46 % of hours (mean 0.4 g): mixing scopes
//! would make zones incomparable, and near-zero is the honest operational answer there.
//! Percent savings in CA-QC are therefore savings of almost nothing.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, TimeDelta, Utc};
use flate2::read::GzDecoder;
use thiserror::Error;

use crate::duration::format_secs;
use crate::series::Series;
use crate::timefmt;

/// Why a trace could not be loaded. File errors carry the 1-based line (the header is
/// line 1) so a user can fix the file.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DataError {
    #[error("unknown zone {zone:?}; embedded zones: {valid}")]
    UnknownZone { zone: String, valid: String },
    #[error("cannot read {path}: {detail}")]
    Io { path: String, detail: String },
    #[error("{source_name}: line {line}: {detail}")]
    Line {
        source_name: String,
        line: u64,
        detail: String,
    },
    #[error("{source_name}: {detail}")]
    File { source_name: String, detail: String },
}

/// A loaded trace: the series and the region named in its `region` column.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub region: String,
    pub series: Series,
}

/// One real NESO forecast as a scheduler would have seen it at `issued_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vintage {
    pub issued_at: DateTime<Utc>,
    /// 96 half-hours starting with the window in progress at `issued_at`.
    pub forecast: Series,
}

/// Smallest step a trace may have: finer data buys nothing for jobs that run for hours,
/// and it bounds the planner's slot count.
pub const MIN_STEP_SECS: i64 = 60;

const ZONES: [&str; 11] = [
    "BE",
    "CA-QC",
    "CH",
    "DE",
    "ES",
    "FI",
    "FR",
    "GB",
    "IT-NO",
    "NL",
    "US-CAL-CISO",
];

// Same order as ZONES.
const ZONE_DATA: [&[u8]; 11] = [
    include_bytes!("../data/electricitymaps_hourly_BE.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_CA-QC.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_CH.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_DE.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_ES.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_FI.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_FR.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_GB.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_IT-NO.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_NL.csv.gz"),
    include_bytes!("../data/electricitymaps_hourly_US-CAL-CISO.csv.gz"),
];

const NESO_ACTUALS: &[u8] = include_bytes!("../data/neso_gb_national_actual_2023-03.csv.gz");
const NESO_VINTAGES: &[u8] =
    include_bytes!("../data/neso_gb_national_forecast_vintages_2023-03.csv.gz");

/// Attribution to show wherever embedded data is used or redistributed.
pub const ATTRIBUTION: &str =
    "Electricity Maps (electricitymaps.com), data licensed under ODbL 1.0; \
Carbon Intensity API, National Energy System Operator (NESO), CC BY 4.0";

/// The embedded Electricity Maps zone ids.
pub fn zones() -> &'static [&'static str] {
    &ZONES
}

/// Canonical spelling of an embedded zone (case-insensitive match), if it exists.
pub fn canonical_zone(zone: &str) -> Option<&'static str> {
    ZONES
        .iter()
        .copied()
        .find(|z| z.eq_ignore_ascii_case(zone.trim()))
}

fn unknown_zone(zone: &str) -> DataError {
    DataError::UnknownZone {
        zone: zone.to_string(),
        valid: ZONES.join(", "),
    }
}

/// The embedded hourly trace of `zone` (case-insensitive), `gco2_per_kwh` (direct).
/// Decompressed and parsed once per process, then cloned (a few hundred kB).
pub fn load_zone(zone: &str) -> Result<Series, DataError> {
    static CACHE: [OnceLock<Result<Series, DataError>>; 11] = [const { OnceLock::new() }; 11];
    let idx = ZONES
        .iter()
        .position(|z| z.eq_ignore_ascii_case(zone.trim()))
        .ok_or_else(|| unknown_zone(zone))?;
    CACHE[idx]
        .get_or_init(|| {
            let name = format!("embedded zone {}", ZONES[idx]);
            load_csv_reader(GzDecoder::new(ZONE_DATA[idx]), &name).map(|t| t.series)
        })
        .clone()
}

/// Reads a `timestamp,region,gco2_per_kwh` trace file (see [`load_csv_reader`]); a `.gz`
/// name is decompressed.
pub fn load_csv_path(path: &Path) -> Result<Trace, DataError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| DataError::Io {
        path: name.clone(),
        detail: e.to_string(),
    })?;
    let reader = std::io::BufReader::new(file);
    if path.extension().is_some_and(|e| e == "gz") {
        load_csv_reader(GzDecoder::new(reader), &name)
    } else {
        load_csv_reader(reader, &name)
    }
}

/// Parses a trace: a header naming at least `timestamp`, `region` and `gco2_per_kwh` (any
/// order; other columns ignored), then one row per interval start. Timestamps are as
/// [`crate::timefmt::parse`] reads them (RFC 3339 with any offset, or naive UTC). The step
/// is inferred from the first two rows and must be a whole number of seconds, at least one
/// minute, and constant: rows out of order, a duplicate or a gap is an error rather than
/// something silently sorted or interpolated, because the simulator's savings would be
/// computed on data that does not exist. `source_name` prefixes messages.
pub fn load_csv_reader<R: Read>(reader: R, source_name: &str) -> Result<Trace, DataError> {
    let (region, rows) = read_rows(reader, source_name)?;
    let file_err = |detail: String| DataError::File {
        source_name: source_name.to_string(),
        detail,
    };
    let (Some(first), Some(region)) = (rows.first(), region) else {
        return Err(file_err("no data rows after the header".into()));
    };
    if rows.len() < 2 {
        return Err(file_err(
            "only one data row: at least two are needed to infer the step".into(),
        ));
    }
    let step = check_order_and_step(&rows, source_name)?;
    let values = rows.iter().map(|r| r.value).collect();
    let series = Series::new(first.time, step, values)
        .map_err(|e| file_err(format!("invalid series: {e}")))?;
    Ok(Trace { region, series })
}

/// One data row of a trace file and its 1-based line.
struct Row {
    line: u64,
    time: DateTime<Utc>,
    value: f64,
}

/// The header's columns and every row, each checked on its own (timestamp, region, value);
/// the region of the first row.
fn read_rows<R: Read>(
    reader: R,
    source_name: &str,
) -> Result<(Option<String>, Vec<Row>), DataError> {
    let line_err = |line: u64, detail: String| DataError::Line {
        source_name: source_name.to_string(),
        line,
        detail,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let headers = rdr
        .headers()
        .map_err(|e| csv_err(e, source_name, 1))?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(DataError::File {
            source_name: source_name.to_string(),
            detail: "empty file: a header `timestamp,region,gco2_per_kwh` is required".into(),
        });
    }
    let col = |name: &str| {
        headers.iter().position(|h| h.eq_ignore_ascii_case(name)).ok_or_else(|| {
            line_err(
                1,
                format!(
                    "header has no `{name}` column (found: {}); required: timestamp,region,gco2_per_kwh",
                    headers.iter().collect::<Vec<_>>().join(",")
                ),
            )
        })
    };
    let (ti, ri, vi) = (col("timestamp")?, col("region")?, col("gco2_per_kwh")?);

    let mut region: Option<String> = None;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line_hint = rdr.position().line();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_err(e, source_name, line_hint)),
        }
        let line = record.position().map_or(line_hint, |p| p.line());
        let time = timefmt::parse(&record[ti]).map_err(|d| line_err(line, d))?;
        let reg = &record[ri];
        if reg.is_empty() {
            return Err(line_err(line, "empty region".into()));
        }
        match &region {
            None => region = Some(reg.to_string()),
            Some(r) if r != reg => {
                return Err(line_err(
                    line,
                    format!("region {reg:?} differs from {r:?} above; one file holds one region"),
                ))
            }
            Some(_) => {}
        }
        let value = parse_value(&record[vi]).map_err(|d| line_err(line, d))?;
        rows.push(Row { line, time, value });
    }
    Ok((region, rows))
}

fn parse_value(text: &str) -> Result<f64, String> {
    if text.is_empty() {
        return Err("empty gco2_per_kwh".into());
    }
    let v: f64 = text
        .parse()
        .map_err(|_| format!("gco2_per_kwh {text:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("gco2_per_kwh {text:?} is not a finite number"));
    }
    if v < 0.0 {
        return Err(format!("gco2_per_kwh {text} is negative"));
    }
    Ok(v)
}

/// The step of `rows` (at least two), in seconds. Rows out of order anywhere are reported
/// first, by the two rows' lines and timestamps, since they also look like a gap and a
/// backwards step; then duplicates, then a step that is not the first one.
fn check_order_and_step(rows: &[Row], source_name: &str) -> Result<i64, DataError> {
    let line_err = |line: u64, detail: String| DataError::Line {
        source_name: source_name.to_string(),
        line,
        detail,
    };
    let ts = |r: &Row| timefmt::format(r.time);
    if let Some(w) = rows.windows(2).find(|w| w[1].time < w[0].time) {
        let (a, b) = (&w[0], &w[1]);
        return Err(line_err(
            b.line,
            format!(
                "rows out of order: line {} ({}) comes after line {} ({}), which is later; \
                 sort the rows by timestamp",
                b.line,
                ts(b),
                a.line,
                ts(a)
            ),
        ));
    }
    if let Some(w) = rows.windows(2).find(|w| w[1].time == w[0].time) {
        return Err(line_err(
            w[1].line,
            format!(
                "duplicate timestamp {}: line {} has it too",
                ts(&w[1]),
                w[0].line
            ),
        ));
    }
    let first_ms = (rows[1].time - rows[0].time).num_milliseconds();
    if first_ms % 1000 != 0 || first_ms / 1000 < MIN_STEP_SECS {
        return Err(line_err(
            rows[1].line,
            format!(
                "step {first_ms} ms: the step must be a whole number of seconds, at least {}",
                format_secs(MIN_STEP_SECS)
            ),
        ));
    }
    let step = first_ms / 1000;
    let bad = rows
        .windows(2)
        .find(|w| (w[1].time - w[0].time) != TimeDelta::seconds(step));
    if let Some(w) = bad {
        let (a, b) = (&w[0], &w[1]);
        let dt = b.time - a.time;
        let (what, missing) = if dt.subsec_nanos() == 0 && dt.num_seconds() % step == 0 {
            let n = dt.num_seconds() / step - 1;
            (
                "gap",
                format!(" ({n} row{} missing)", if n == 1 { "" } else { "s" }),
            )
        } else {
            ("step change", String::new())
        };
        return Err(line_err(
            b.line,
            format!(
                "{what}: line {} ({}) follows line {} ({}) by {}, but the step is {}{missing}",
                b.line,
                ts(b),
                a.line,
                ts(a),
                span(dt),
                format_secs(step)
            ),
        ));
    }
    Ok(step)
}

/// A positive time difference as `format_secs` spells it, or in ms when not whole seconds.
fn span(dt: TimeDelta) -> String {
    if dt.subsec_nanos() == 0 {
        format_secs(dt.num_seconds())
    } else {
        format!("{} ms", dt.num_milliseconds())
    }
}

fn csv_err(e: csv::Error, source_name: &str, fallback_line: u64) -> DataError {
    let line = e.position().map_or(fallback_line.max(1), |p| p.line());
    let detail = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("malformed CSV: {len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "malformed CSV: not valid UTF-8".to_string(),
        csv::ErrorKind::Io(io) => {
            return DataError::Io {
                path: source_name.to_string(),
                detail: io.to_string(),
            }
        }
        _ => format!("malformed CSV: {e}"),
    };
    DataError::Line {
        source_name: source_name.to_string(),
        line,
        detail,
    }
}

/// NESO GB national actual intensity, 2023-03-14 01:00 .. 2023-03-18 01:00 UTC, 30 min.
/// The truth against which [`neso_vintages`] are scored.
pub fn neso_actuals() -> Result<Series, DataError> {
    static CACHE: OnceLock<Result<Series, DataError>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            load_csv_reader(GzDecoder::new(NESO_ACTUALS), "embedded NESO actuals").map(|t| t.series)
        })
        .clone()
}

/// The 36 real NESO 48 h forecast vintages (GB national, March 2023), oldest first. Each is
/// exactly what a scheduler polling the Carbon Intensity API saw at `issued_at`.
pub fn neso_vintages() -> Result<Vec<Vintage>, DataError> {
    static CACHE: OnceLock<Result<Vec<Vintage>, DataError>> = OnceLock::new();
    CACHE.get_or_init(parse_vintages).clone()
}

fn parse_vintages() -> Result<Vec<Vintage>, DataError> {
    const NAME: &str = "embedded NESO vintages";
    let bad = |line: u64, detail: String| DataError::Line {
        source_name: NAME.into(),
        line,
        detail,
    };
    let mut rdr = csv::ReaderBuilder::new().from_reader(GzDecoder::new(NESO_VINTAGES));
    // Rows are grouped by issued_at; each group is one contiguous half-hourly trajectory.
    let mut groups: Vec<(DateTime<Utc>, DateTime<Utc>, Vec<f64>)> = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| csv_err(e, NAME, line))?;
        let field = |k: usize| {
            rec.get(k)
                .ok_or_else(|| bad(line, format!("missing field {k}")))
        };
        let issued = timefmt::parse(field(0)?).map_err(|d| bad(line, d))?;
        let ts = timefmt::parse(field(1)?).map_err(|d| bad(line, d))?;
        let v: f64 = field(3)?
            .parse()
            .map_err(|_| bad(line, "bad forecast value".into()))?;
        match groups.last_mut() {
            Some((iss, first, vals)) if *iss == issued => {
                let expected = *first + TimeDelta::minutes(30 * vals.len() as i64);
                if ts != expected {
                    return Err(bad(
                        line,
                        format!("expected target {}", timefmt::format(expected)),
                    ));
                }
                vals.push(v);
            }
            _ => groups.push((issued, ts, vec![v])),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (issued_at, first, vals) in groups {
        let forecast = Series::new(first, 1800, vals).map_err(|e| DataError::File {
            source_name: NAME.into(),
            detail: e.to_string(),
        })?;
        out.push(Vintage {
            issued_at,
            forecast,
        });
    }
    out.sort_by_key(|v| v.issued_at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// Row counts, first/last timestamps and means against the sanity table published
    /// with the source data (means there are rounded to whole grams; CA-QC to 0.1 g).
    #[test]
    fn embedded_zones_match_the_published_summary() {
        let expect: [(&str, usize, i32, i32, f64); 11] = [
            ("BE", 17_520, 2021, 2022, 120.0),
            ("CA-QC", 17_520, 2021, 2022, 0.4),
            ("CH", 17_520, 2021, 2022, 109.0),
            ("DE", 26_280, 2021, 2023, 370.0),
            ("ES", 17_520, 2021, 2022, 138.0),
            ("FI", 17_520, 2021, 2022, 115.0),
            ("FR", 26_280, 2021, 2023, 42.0),
            ("GB", 26_280, 2021, 2023, 157.0),
            ("IT-NO", 17_520, 2021, 2022, 272.0),
            ("NL", 17_520, 2021, 2022, 294.0),
            ("US-CAL-CISO", 17_520, 2022, 2023, 194.0),
        ];
        assert_eq!(zones().len(), expect.len());
        for (zone, rows, y0, y1, mean) in expect {
            let s = load_zone(zone).unwrap();
            assert_eq!(s.len(), rows, "{zone}");
            assert_eq!(s.step_secs(), 3600, "{zone}");
            assert_eq!(s.start(), ts(y0, 1, 1, 0, 0), "{zone}");
            assert_eq!(s.slot_start(s.len() - 1), ts(y1, 12, 31, 23, 0), "{zone}");
            let tol = if zone == "CA-QC" { 0.05 } else { 0.5 };
            assert!(
                (s.mean() - mean).abs() <= tol,
                "{zone}: mean {} vs {mean}",
                s.mean()
            );
        }
    }

    #[test]
    fn zone_lookup_is_case_insensitive_and_lists_valid_zones() {
        assert_eq!(load_zone("de").unwrap().len(), 26_280);
        let e = load_zone("XX").unwrap_err().to_string();
        assert!(
            e.contains("unknown zone \"XX\"") && e.contains("US-CAL-CISO"),
            "{e}"
        );
    }

    #[test]
    fn neso_data_matches_the_published_summary() {
        let a = neso_actuals().unwrap();
        assert_eq!((a.len(), a.step_secs()), (192, 1800));
        assert_eq!(a.start(), ts(2023, 3, 14, 1, 0));
        assert_eq!(a.slot_start(191), ts(2023, 3, 18, 0, 30));
        assert!((a.mean() - 148.0).abs() < 0.5, "{}", a.mean());
        let v = neso_vintages().unwrap();
        assert_eq!(v.len(), 36);
        assert!(v
            .iter()
            .all(|x| x.forecast.len() == 96 && x.forecast.step_secs() == 1800));
        assert_eq!(v[0].issued_at, ts(2023, 3, 14, 3, 31));
        assert_eq!(v[35].issued_at, ts(2023, 3, 18, 13, 1));
        assert!(v.windows(2).all(|w| w[0].issued_at < w[1].issued_at));
        // Each vintage starts with the half-hour in progress when it was issued.
        for x in &v {
            assert!(x.forecast.start() <= x.issued_at);
            assert!(x.issued_at < x.forecast.start() + TimeDelta::minutes(30));
        }
    }

    /// Regenerated files must equal their source: run `data/build.sh` then this test with
    /// `cargo test -- --ignored`, `CARBONSHIFT_SHARED_DATA` naming the source CSVs' folder.
    #[test]
    #[ignore = "needs the shared source CSVs (CARBONSHIFT_SHARED_DATA)"]
    fn embedded_equals_shared_source() {
        let dir = std::env::var("CARBONSHIFT_SHARED_DATA")
            .expect("set CARBONSHIFT_SHARED_DATA to the folder of the source CSVs");
        for zone in zones() {
            let p = Path::new(&dir).join(format!("electricitymaps_hourly_{zone}.csv"));
            let shared = load_csv_path(&p).unwrap();
            assert_eq!(shared.region, *zone);
            assert_eq!(shared.series, load_zone(zone).unwrap(), "{zone}");
        }
        let p = Path::new(&dir).join("neso_gb_national_actual_2023-03.csv");
        assert_eq!(load_csv_path(&p).unwrap().series, neso_actuals().unwrap());
    }

    /// Swapped rows are "out of order" with both lines and timestamps, not the gap they
    /// leave first; a gap counts the missing rows; every time in RFC 3339 with `Z`.
    #[test]
    fn order_duplicates_and_gaps_name_both_rows() {
        let h = "timestamp,region,gco2_per_kwh\n";
        let row = |hour: u32| format!("2023-01-01T{hour:02}:00:00+00:00,DE,1\n");
        let rows = |hours: &[u32]| hours.iter().map(|&x| row(x)).collect::<String>();
        let err = |text: String| parse(&text).unwrap_err().to_string();
        assert_eq!(
            err(format!("{h}{}", rows(&[0, 1, 2, 4, 3, 5]))),
            "t.csv: line 6: rows out of order: line 6 (2023-01-01T03:00:00Z) comes after \
             line 5 (2023-01-01T04:00:00Z), which is later; sort the rows by timestamp"
        );
        assert_eq!(
            err(format!("{h}{}", rows(&[0, 1, 1, 2]))),
            "t.csv: line 4: duplicate timestamp 2023-01-01T01:00:00Z: line 3 has it too"
        );
        assert_eq!(
            err(format!("{h}{}", rows(&[0, 1, 2, 5, 6]))),
            "t.csv: line 5: gap: line 5 (2023-01-01T05:00:00Z) follows line 4 \
             (2023-01-01T02:00:00Z) by 3h, but the step is 1h (2 rows missing)"
        );
        assert_eq!(
            err(format!("{h}{}2023-01-01T02:30:00Z,DE,1\n", rows(&[0, 1]))),
            "t.csv: line 4: step change: line 4 (2023-01-01T02:30:00Z) follows line 3 \
             (2023-01-01T01:00:00Z) by 1h30m, but the step is 1h"
        );
    }

    fn parse(text: &str) -> Result<Trace, DataError> {
        load_csv_reader(text.as_bytes(), "t.csv")
    }

    #[test]
    fn reads_columns_by_name_and_infers_minute_steps() {
        let t = parse(
            "gco2_per_kwh,extra,region,timestamp\n\
             10,x,DE,2023-01-01T00:00:00Z\n\
             20,y,DE,2023-01-01T00:05:00Z\n\
             30,z,DE,2023-01-01T01:10:00+01:00\n",
        )
        .unwrap();
        assert_eq!(t.region, "DE");
        assert_eq!(t.series.step_secs(), 300);
        assert_eq!(t.series.values(), &[10.0, 20.0, 30.0]);
    }

    #[test]
    fn file_errors_name_the_line() {
        let h = "timestamp,region,gco2_per_kwh\n";
        let r0 = "2023-01-01T00:00:00Z,DE,1\n";
        let r1 = "2023-01-01T01:00:00Z,DE,1\n";
        let cases: &[(String, &str)] = &[
            (
                format!("{h}{r0}2023-01-01T01:00:00Z,DE\n"),
                "line 3: malformed CSV",
            ),
            (
                format!("{h}{r0}yesterday,DE,1\n"),
                "line 3: timestamp \"yesterday\"",
            ),
            (
                format!("{h}{r0}{r1}2023-01-01T00:30:00Z,DE,1\n"),
                "line 4: rows out of order",
            ),
            (format!("{h}{r0}{r0}"), "line 3: duplicate timestamp"),
            (
                format!("{h}{r0}{r1}2023-01-01T03:00:00Z,DE,1\n"),
                "line 4: gap",
            ),
            (
                format!("{h}{r0}{r1}2023-01-01T01:30:00Z,DE,1\n"),
                "line 4: step change",
            ),
            (
                format!("{h}{r0}2023-01-01T01:00:00Z,DE,NaN\n"),
                "line 3: gco2_per_kwh \"NaN\"",
            ),
            (
                format!("{h}{r0}2023-01-01T01:00:00Z,DE,\n"),
                "line 3: empty gco2_per_kwh",
            ),
            (
                format!("{h}{r0}2023-01-01T01:00:00Z,DE,-3\n"),
                "line 3: gco2_per_kwh -3 is negative",
            ),
            (
                format!("{h}{r0}2023-01-01T01:00:00Z,FR,1\n"),
                "line 3: region \"FR\"",
            ),
            (
                format!("{h}{r0}2023-01-01T00:00:30Z,DE,1\n"),
                "line 3: step 30000 ms",
            ),
            (
                "timestamp,gco2_per_kwh\n".to_string(),
                "line 1: header has no `region`",
            ),
            (String::new(), "empty file"),
            (h.to_string(), "no data rows"),
            (format!("{h}{r0}"), "only one data row"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?}, got {e:?}");
            assert!(e.starts_with("t.csv"), "{e}");
        }
    }
}
