//! `carbonshift simulate` end to end: every bad input is a one-line error with exit code 2,
//! the JSON has its documented shape, and on a few months of real data the strategies hit
//! the project's carbon targets. Windows are kept short (`--from/--to`) so this runs in
//! seconds on a debug build.

use std::io::Write;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn cmd() -> Command {
    let mut c = Command::cargo_bin("carbonshift").unwrap();
    c.arg("simulate");
    c
}

/// Runs with `args`, expects exit 2 and a single stderr line containing every `needles`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = cmd().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: want {n:?} in {err:?}");
    }
}

/// A CSV with `rows` hourly rows from 2023-01-01, values following a daily cycle.
fn trace_text(rows: usize) -> String {
    let mut s = String::from("timestamp,region,gco2_per_kwh\n");
    for i in 0..rows {
        let t = chrono::DateTime::from_timestamp(1_672_531_200 + 3600 * i as i64, 0).unwrap();
        let v = 200.0 + 100.0 * ((i % 24) as f64 * std::f64::consts::TAU / 24.0).cos();
        s.push_str(&format!("{},XX,{v:.2}\n", t.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    s
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn run_json(args: &[&str]) -> Value {
    let out = cmd()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "exactly one JSON object: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

fn result<'a>(v: &'a Value, strategy: &str) -> &'a Value {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["strategy"] == strategy)
        .unwrap_or_else(|| panic!("no {strategy} in {v}"))
}

#[test]
fn unknown_zone_lists_the_valid_ones() {
    fails_with(
        &["--region", "Atlantis"],
        &["unknown zone \"Atlantis\"", "DE", "US-CAL-CISO"],
    );
}

#[test]
fn malformed_trace_files_name_the_line() {
    let h = "timestamp,region,gco2_per_kwh\n";
    let r0 = "2023-01-01T00:00:00Z,XX,100\n";
    let r1 = "2023-01-01T01:00:00Z,XX,100\n";
    let cases = [
        (
            format!("{h}{r0}{r1}2023-01-01T02:00:00Z,XX\n"),
            "line 4: malformed CSV",
        ),
        (
            format!("{h}{r0}not-a-time,XX,1\n"),
            "line 3: timestamp \"not-a-time\"",
        ),
        (
            format!("{h}{r0}{r1}2023-01-01T00:30:00Z,XX,1\n"),
            "line 4: rows out of order",
        ),
        (format!("{h}{r0}{r1}{r1}"), "line 4: duplicate timestamp"),
        (
            format!("{h}{r0}{r1}2023-01-01T05:00:00Z,XX,1\n"),
            "line 4: gap",
        ),
        (
            format!("{h}{r0}2023-01-01T01:00:00Z,XX,NaN\n"),
            "line 3: gco2_per_kwh \"NaN\"",
        ),
        (
            format!("{h}{r0}2023-01-01T01:00:00Z,XX,-5\n"),
            "line 3: gco2_per_kwh -5 is negative",
        ),
        (
            format!("{h}{r0}2023-01-01T01:00:00Z,XX,\n"),
            "line 3: empty gco2_per_kwh",
        ),
        (
            format!("{h}{r0}2023-01-01T01:00:00Z,YY,1\n"),
            "line 3: region \"YY\"",
        ),
        (
            "time,value\n1,2\n".to_string(),
            "line 1: header has no `timestamp`",
        ),
    ];
    for (text, want) in cases {
        let f = file(&text);
        fails_with(&["--trace", f.path().to_str().unwrap()], &[want]);
    }
    fails_with(
        &["--trace", "/nonexistent/trace.csv"],
        &["cannot read /nonexistent/trace.csv"],
    );
}

#[test]
fn bad_durations_and_slack_are_input_errors() {
    fails_with(
        &["--region", "DE", "--slack", "0s"],
        &["--slack must be positive"],
    );
    fails_with(
        &["--region", "DE", "--slack", "30m"],
        &["shorter than the trace step"],
    );
    // --duration 0h and 6x are refused by clap: tests/cli_errors.rs.
    fails_with(
        &["--region", "DE", "--strategy", "yolo"],
        &["unknown strategy \"yolo\""],
    );
    fails_with(&[], &["--region ZONE or --trace FILE"]);
}

#[test]
fn vintages_need_gb() {
    fails_with(
        &["--region", "DE", "--forecast", "vintages"],
        &["only for GB"],
    );
    let f = file(&trace_text(100));
    fails_with(
        &[
            "--trace",
            f.path().to_str().unwrap(),
            "--forecast",
            "vintages",
        ],
        &["--region GB"],
    );
}

#[test]
fn trace_too_short_for_one_job() {
    let f = file(&trace_text(40));
    fails_with(
        &["--trace", f.path().to_str().unwrap()],
        &["too short for one job"],
    );
    fails_with(
        &[
            "--region",
            "DE",
            "--from",
            "2022-01-01",
            "--to",
            "2022-01-02",
        ],
        &["too short for one job"],
    );
}

#[test]
fn help_has_an_example() {
    cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "carbonshift simulate --region DE --duration 6h --slack 24h",
        ));
}

#[test]
fn json_shape_on_a_trace_file() {
    let f = file(&trace_text(24 * 20));
    let v = run_json(&["--trace", f.path().to_str().unwrap()]);
    let obj = v.as_object().unwrap();
    let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "baseline_gco2_per_kwh",
            "caveat",
            "duration_hours",
            "first_submitted",
            "forecast",
            "jobs",
            "region",
            "results",
            "signal",
            "slack_hours"
        ]
    );
    assert_eq!(v["region"], "XX");
    // A trace file is taken to be average intensities, as the embedded zones are.
    assert_eq!(v["signal"], "average");
    assert_eq!(v["duration_hours"], 6.0);
    assert_eq!(v["slack_hours"], 24.0);
    assert_eq!(v["forecast"], "perfect");
    assert_eq!(v["first_submitted"], "2023-01-02T00:00:00Z");
    assert_eq!(v["caveat"], Value::Null);
    // The trace's daily cycle averages 200 g/kWh; run-now's jobs sit near that mean.
    let b = v["baseline_gco2_per_kwh"].as_f64().unwrap();
    assert!((150.0..250.0).contains(&b), "{b}");
    let results = v["results"].as_array().unwrap();
    let names: Vec<_> = results
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "run-now",
            "flexible-start",
            "pause-and-resume",
            "threshold",
            "oracle-flexible-start",
            "oracle-pause-and-resume"
        ]
    );
    for r in results {
        let mut k: Vec<_> = r.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        assert_eq!(
            k,
            [
                "deadline_misses",
                "emissions_g",
                "oracle_fraction",
                "pauses_per_job",
                "savings_pct",
                "strategy"
            ]
        );
    }
    assert_eq!(result(&v, "run-now")["savings_pct"], 0.0);
    assert_eq!(
        result(&v, "oracle-pause-and-resume")["oracle_fraction"],
        1.0
    );
}

/// The design targets on three months of real German data.
#[test]
fn targets_on_real_data_perfect_and_noisy() {
    let window = [
        "--region",
        "DE",
        "--from",
        "2022-01-01",
        "--to",
        "2022-04-01",
    ];
    let v = run_json(&window);
    assert!(v["jobs"].as_u64().unwrap() > 250);
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["deadline_misses"], 0, "{r}");
    }
    let pr = result(&v, "pause-and-resume");
    assert!(pr["oracle_fraction"].as_f64().unwrap() >= 0.99, "{pr}");
    let fs = result(&v, "flexible-start")["savings_pct"]
        .as_f64()
        .unwrap();
    let ofs = result(&v, "oracle-flexible-start")["savings_pct"]
        .as_f64()
        .unwrap();
    assert!((fs - ofs).abs() <= 0.1, "{fs} vs {ofs}");

    // GB's error in grams (the old model): pause-and-resume kept 89.7 % of the oracle when
    // measured. Scaled to DE (1.86 times GB's error), a winter quarter keeps 75.1 %; both
    // are checked a point below what was measured, and with no deadline missed.
    for (noise, at_least) in [("absolute", 0.88), ("per-zone", 0.74)] {
        let noisy = ["--forecast", "noisy", "--seed", "1", "--noise", noise];
        let v = run_json(&[&window[..], &noisy[..]].concat());
        assert_eq!(v["forecast"], "noisy");
        for r in v["results"].as_array().unwrap() {
            assert_eq!(r["deadline_misses"], 0, "{r}");
        }
        let pr = result(&v, "pause-and-resume");
        assert!(
            pr["oracle_fraction"].as_f64().unwrap() >= at_least,
            "{noise}: {pr}"
        );
    }
}

#[test]
fn vintages_run_on_the_neso_data() {
    let v = run_json(&[
        "--region",
        "gb",
        "--forecast",
        "vintages",
        "--duration",
        "4h",
        "--slack",
        "12h",
        "--submit-every",
        "3h",
    ]);
    assert_eq!(v["region"], "GB");
    assert_eq!(v["forecast"], "vintages");
    assert!(v["jobs"].as_u64().unwrap() >= 10, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["deadline_misses"], 0, "{r}");
    }
    // Results from embedded data carry the licences' attribution.
    cmd()
        .args([
            "--region",
            "GB",
            "--forecast",
            "vintages",
            "--duration",
            "4h",
            "--slack",
            "12h",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("ODbL 1.0").and(predicate::str::contains("NESO")));
}

#[test]
fn plot_and_csv_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("job.svg");
    let f = file(&trace_text(24 * 10));
    cmd()
        .args([
            "--trace",
            f.path().to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
            "--plot-job",
            "2",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("pause-and-resume")
                .and(predicate::str::contains("ODbL").not()),
        );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("pause-and-resume"));
    cmd()
        .args([
            "--trace",
            f.path().to_str().unwrap(),
            "--format",
            "csv",
            "--strategy",
            "pause-and-resume",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("region,jobs,")
                .and(predicate::str::contains("XX,").count(1)),
        );
    fails_with(
        &[
            "--trace",
            f.path().to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
            "--plot-job",
            "999",
        ],
        &["--plot-job 999"],
    );
}

/// The strategies' old names still select them, with a warning naming the new ones.
#[test]
fn deprecated_strategy_names_still_work() {
    let f = file(&trace_text(24 * 10));
    let out = cmd()
        .args([
            "--trace",
            f.path().to_str().unwrap(),
            "--strategy",
            "pause-resume,oracle-pause-resume",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for (old, new) in [
        ("pause-resume", "pause-and-resume"),
        ("oracle-pause-resume", "oracle-pause-and-resume"),
    ] {
        let want = format!("warning: --strategy {old} is deprecated, use --strategy {new}");
        assert!(err.contains(&want), "want {want:?} in {err:?}");
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<_> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pause-and-resume", "oracle-pause-and-resume"]);
}

#[test]
fn paper_table_on_a_short_trace() {
    let f = file(&trace_text(24 * 40));
    let out = cmd()
        .args([
            "--paper",
            "--trace",
            f.path().to_str().unwrap(),
            "--submit-every",
            "2d",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[7]["duration"], "8d");
    assert_eq!(rows[7]["window"], "16d");
    for r in rows {
        assert_eq!(r["deadline_misses"], 0, "{r}");
        assert!(
            r["pause_and_resume_pct"].as_f64().unwrap()
                >= r["flexible_start_pct"].as_f64().unwrap() - 0.01,
            "{r}"
        );
    }
}

/// With stderr piped (tests, CI), no progress bar: stderr stays empty and stdout is only
/// the JSON, for a plain run and for the paper table.
#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let f = file(&trace_text(24 * 40));
    for extra in [
        &["--duration", "2h", "--slack", "10h"][..],
        &["--paper", "--submit-every", "2d"][..],
    ] {
        let out = cmd()
            .args(["--trace", f.path().to_str().unwrap(), "--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "{extra:?}: stderr must be empty"
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v.is_object(), "{v}");
    }
}

/// `--paper` fixes its own job lengths, slacks and strategies and draws no plot: those
/// flags are refused by name (exit 2) instead of being dropped; `--trace` is supported.
#[test]
fn paper_refuses_the_flags_it_would_ignore() {
    for (flag, value, shown) in [
        ("--duration", "3h", "'--duration <DUR>'"),
        ("--slack", "2d", "'--slack <DUR>'"),
        ("--strategy", "run-now", "'--strategy <NAME>'"),
        ("--plot", "x.svg", "'--plot <FILE.svg>'"),
    ] {
        let out = cmd()
            .args(["--paper", "--region", "DE", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        let want = format!("the argument '--paper' cannot be used with {shown}");
        assert!(err.contains(&want), "{flag}: want {want:?} in {err}");
    }
    let f = file(&trace_text(24 * 40));
    fails_with(
        &[
            "--paper",
            "--region",
            "DE",
            "--trace",
            f.path().to_str().unwrap(),
        ],
        &["give either --region or --trace, not both"],
    );
    let v = run_json(&[
        "--paper",
        "--trace",
        f.path().to_str().unwrap(),
        "--submit-every",
        "2d",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r["region"] == "XX"), "{v}");
}

/// The plot: the title names the forecast model and says UTC; the strategies are labelled
/// rows in their own panel (no negative ticks on the g/kWh axis).
#[test]
fn plot_names_forecast_utc_and_labels_the_strategy_rows() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("job.svg");
    let f = file(&trace_text(24 * 10));
    cmd()
        .args([
            "--trace",
            f.path().to_str().unwrap(),
            "--forecast",
            "noisy",
            "--strategy",
            "run-now,pause-and-resume",
            "--plot",
            svg.to_str().unwrap(),
        ])
        .assert()
        .success();
    let text = std::fs::read_to_string(&svg).unwrap();
    for want in [
        "XX: job 0 submitted 2023-01-02 00:00 UTC (6h of work, deadline 2023-01-03 06:00 UTC), forecast noisy",
        "actual intensity, gCO2eq/kWh",
        "hours since submission",
        "when each ran, emissions at 1 kW",
        "run-now (",
        "pause-and-resume (",
    ] {
        assert!(text.contains(want), "want {want:?} in the SVG");
    }
    // Tick labels are plain numbers; none is negative on the intensity axis.
    let negative_tick = regex_free_negative_tick(&text);
    assert!(!negative_tick, "a negative tick label in the SVG");
}

/// Whether any `<text>` element holds a negative number (a tick below zero).
fn regex_free_negative_tick(svg: &str) -> bool {
    svg.split("<text")
        .filter_map(|t| t.split('>').nth(1))
        .filter_map(|t| t.split('<').next())
        .any(|t| t.trim().starts_with('-') && t.trim()[1..].parse::<f64>().is_ok())
}

/// A --plot path that cannot be written is named, with the reason, exit 2, before the
/// simulation runs.
#[test]
fn bad_plot_path_is_named_with_the_reason() {
    let f = file(&trace_text(24 * 10));
    fails_with(
        &[
            "--trace",
            f.path().to_str().unwrap(),
            "--plot",
            "/nonexistent/dir/x.svg",
        ],
        &[
            "--plot /nonexistent/dir/x.svg",
            "directory /nonexistent/dir does not exist",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    fails_with(
        &["--trace", f.path().to_str().unwrap(), "--plot", d],
        &[&format!("--plot {d}: is a directory")],
    );
}

/// The table says when the first job was submitted (one day of history after --from),
/// as the README caption does.
#[test]
fn first_submission_is_one_day_after_from() {
    let args = [
        "--region",
        "DE",
        "--duration",
        "6h",
        "--slack",
        "24h",
        "--from",
        "2023-03-14",
        "--to",
        "2023-03-20",
        "--strategy",
        "run-now",
    ];
    cmd()
        .args(args)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "first job submitted 2023-03-15 00:00 UTC, after 1d of history for the forecasts",
        ));
    let v = run_json(&args);
    assert_eq!(v["first_submitted"], "2023-03-15T00:00:00Z");
    assert_eq!(v["jobs"], 13);
    assert_eq!(v["caveat"], Value::Null);
}

/// CA-QC's direct intensity is almost zero: its percentages carry a caveat in the table
/// and the JSON, with the baseline it is relative to.
#[test]
fn near_zero_baseline_gets_a_caveat() {
    let args = [
        "--region",
        "CA-QC",
        "--from",
        "2022-06-01",
        "--to",
        "2022-06-15",
        "--strategy",
        "run-now,pause-and-resume",
    ];
    let v = run_json(&args);
    let b = v["baseline_gco2_per_kwh"].as_f64().unwrap();
    assert!((0.0..5.0).contains(&b), "{v}");
    let caveat = v["caveat"].as_str().unwrap();
    assert!(
        caveat.contains("percentages of a near-zero total"),
        "{caveat}"
    );
    let out = cmd().args(args).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("%*"), "{text}");
    assert!(
        text.contains(&format!("* run-now averaged only {b:.2} gCO2eq/kWh")),
        "{text}"
    );
}

fn zones_cmd() -> Command {
    let mut c = Command::cargo_bin("carbonshift").unwrap();
    c.arg("zones");
    c
}

/// `carbonshift zones`: every embedded zone with its coverage, mean and licence.
#[test]
fn zones_lists_coverage_mean_and_licence() {
    let out = zones_cmd().args(["--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 12, "11 Electricity Maps zones and NESO GB");
    let row = |zone: &str, dataset: &str| {
        rows.iter()
            .find(|r| r["zone"] == zone && r["dataset"] == dataset)
            .unwrap_or_else(|| panic!("no {zone} {dataset}"))
    };
    let qc = row("CA-QC", "electricitymaps-hourly");
    assert_eq!(qc["first_hour"], "2021-01-01T00:00:00Z");
    assert_eq!(qc["last_hour"], "2022-12-31T23:00:00Z");
    assert_eq!(qc["hours"], 17_520);
    assert_eq!(qc["mean_gco2_per_kwh"], 0.4);
    assert_eq!(qc["licence"], "ODbL-1.0");
    let de = row("DE", "electricitymaps-hourly");
    assert_eq!(de["last_hour"], "2023-12-31T23:00:00Z");
    assert_eq!(de["mean_gco2_per_kwh"], 369.6);
    let neso = row("GB", "neso-national-actuals");
    assert_eq!(neso["licence"], "CC-BY-4.0");
    assert_eq!(neso["step_minutes"], 30);
    assert_eq!(neso["first_hour"], "2023-03-14T01:00:00Z");
    zones_cmd()
        .args(["--format", "csv"])
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with(
                "zone,dataset,first_hour,last_hour,step_minutes,hours,mean_gco2_per_kwh,source,licence\n",
            )
            .and(predicate::str::contains(
                "CA-QC,electricitymaps-hourly,2021-01-01T00:00:00Z,2022-12-31T23:00:00Z,60,17520,0.4,Electricity Maps,ODbL-1.0",
            )),
        );
    zones_cmd().assert().success().stdout(
        predicate::str::contains("US-CAL-CISO")
            .and(predicate::str::contains(
                "CC-BY-4.0 (NESO Carbon Intensity API)",
            ))
            .and(predicate::str::contains("ODbL 1.0")),
    );
    zones_cmd()
        .args(["--format", "yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value 'yaml' for '--format",
        ));
}

/// [`trace_text`]'s days in region `region`, every value times `scale` (printed exactly).
fn trace_in(rows: usize, region: &str, scale: f64) -> String {
    let mut s = String::from("timestamp,region,gco2_per_kwh\n");
    for line in trace_text(rows).lines().skip(1) {
        let mut cols = line.split(',');
        let (t, _, v) = (cols.next().unwrap(), cols.next(), cols.next().unwrap());
        let v: f64 = v.parse().unwrap();
        s.push_str(&format!("{t},{region},{:.4}\n", v * scale));
    }
    s
}

fn line<'a>(row: &'a Value, label: &str) -> &'a Value {
    row["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == label)
        .unwrap_or_else(|| panic!("no {label} in {row}"))
}

fn against<'a>(v: &'a Value, label: &str) -> &'a Value {
    v["comparison"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["against"] == label)
        .unwrap_or_else(|| panic!("no {label} in {v}"))
}

/// Two trace files, the second at half the intensity of the first (home): every strategy
/// sends every job there, run-now saves exactly 50 % against run-now at home and nothing
/// against the best fixed region; the table counts the jobs per region.
#[test]
fn two_trace_files_the_cleaner_takes_every_job() {
    let (a, b) = (
        file(&trace_in(24 * 10, "XX", 1.0)),
        file(&trace_in(24 * 10, "YY", 0.5)),
    );
    let (a, b) = (a.path().to_str().unwrap(), b.path().to_str().unwrap());
    let flags = [
        "--trace",
        a,
        "--trace",
        b,
        "--duration",
        "2h",
        "--slack",
        "10h",
    ];
    let v = run_json(&flags);
    let jobs = v["jobs"].as_u64().unwrap();
    assert!(jobs > 20, "{v}");
    assert_eq!(
        (v["region"].clone(), v["home"].clone()),
        ("XX".into(), "XX".into())
    );
    assert_eq!(v["regions"], serde_json::json!(["XX", "YY"]));
    for r in v["results"].as_array().unwrap() {
        assert_eq!(
            r["region_jobs"],
            serde_json::json!({"XX": 0, "YY": jobs}),
            "{r}"
        );
        assert_eq!(r["deadline_misses"], 0, "{r}");
    }
    assert_eq!(result(&v, "run-now")["savings_pct"], 50.0);
    assert_eq!(
        (
            v["best_fixed_region"].clone(),
            v["worst_fixed_region"].clone()
        ),
        ("YY".into(), "XX".into())
    );
    let best = against(&v, "best fixed region (YY)");
    assert_eq!(best["spatial_run_now_pct"], 0.0);
    assert_eq!(best["vs_home_pct"], 50.0);
    let worst = against(&v, "worst fixed region (XX)");
    assert_eq!(worst["spatial_run_now_pct"], 50.0);
    let pr_home = against(&v, "pause-and-resume at home");
    assert_eq!(pr_home["spatial_pause_and_resume_pct"], 50.0);
    // Spatial + temporal against the best fixed region = temporal alone at home.
    let pr = pr_home["vs_home_pct"].as_f64().unwrap();
    assert!(pr > 10.0, "{pr_home}");
    assert!((best["spatial_pause_and_resume_pct"].as_f64().unwrap() - pr).abs() < 0.002);
    let out = cmd().args(flags).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("XX,YY (home XX): "), "{text}");
    assert!(text.contains("jobs XX/YY"), "{text}");
    assert!(text.contains(&format!("  0/{jobs}\n")), "{text}");
    assert!(text.contains("best fixed region (YY)"), "{text}");
    assert!(
        !text.contains("data: Electricity Maps"),
        "a trace file is the user's data"
    );
}

/// Embedded zones: France (home), Germany, Great Britain over two weeks of 2022. Nearly
/// every job stays in France, and against run-now in Germany region choice saves over
/// 70 %, as in the seed paper.
#[test]
fn regions_on_embedded_zones() {
    let v = run_json(&[
        "--regions",
        "FR,DE,GB",
        "--from",
        "2022-01-01",
        "--to",
        "2022-01-15",
    ]);
    let jobs = v["jobs"].as_u64().unwrap();
    assert_eq!(v["regions"], serde_json::json!(["FR", "DE", "GB"]));
    for r in v["results"].as_array().unwrap() {
        let counts = r["region_jobs"].as_object().unwrap();
        assert_eq!(
            counts.values().map(|c| c.as_u64().unwrap()).sum::<u64>(),
            jobs
        );
        assert_eq!(r["deadline_misses"], 0, "{r}");
    }
    assert_eq!(v["worst_fixed_region"], "DE");
    let de = against(&v, "run-now DE");
    assert!(de["spatial_run_now_pct"].as_f64().unwrap() > 70.0, "{de}");
    assert!(de["vs_home_pct"].as_f64().unwrap() < -100.0, "{de}");
    let home = against(&v, "run-now FR (home)");
    assert_eq!(home["vs_home_pct"], 0.0);
    assert_eq!(
        home["spatial_pause_and_resume_pct"],
        result(&v, "pause-and-resume")["savings_pct"]
    );
}

#[test]
fn bad_region_combinations_say_what_to_fix() {
    let a = file(&trace_in(24 * 10, "XX", 1.0));
    let a = a.path().to_str().unwrap();
    let same = file(&trace_in(24 * 10, "XX", 0.5));
    let same = same.path().to_str().unwrap();
    // The same ten days, moved to March.
    let late = file(&trace_in(24 * 10, "ZZ", 1.0).replace("2023-01-", "2023-03-"));
    let late = late.path().to_str().unwrap();
    for (args, needles) in [
        (
            &["--regions", "FR,Atlantis"][..],
            &["unknown zone \"Atlantis\"", "US-CAL-CISO"][..],
        ),
        (
            &["--regions", "FR"],
            &["--regions needs at least two zones", "--region"],
        ),
        (
            &["--regions", "FR,DE", "--region", "GB"],
            &["--regions", "not both"],
        ),
        (
            &["--regions", "FR,DE", "--trace", a],
            &["--trace FILE once per region", "not both"],
        ),
        (
            &["--regions", "all"],
            &["`all` is only for --paper --region"],
        ),
        (&["--regions", "FR,fr"], &["region FR is given twice"]),
        (
            &["--regions", "FR,GB", "--forecast", "vintages"],
            &[
                "vintages exists only for GB",
                "--forecast perfect, persistence or noisy",
            ],
        ),
        (
            &["--regions", "FR,DE", "--plot", "x.svg"],
            &["--plot", "several regions"],
        ),
        (
            &["--regions", "FR,DE", "--format", "csv"],
            &["--format table or json"],
        ),
        (
            &["--regions", "FR,US-CAL-CISO", "--to", "2021-06-01"],
            &["select nothing of US-CAL-CISO", "2022-01-01"],
        ),
        (
            &["--trace", a, "--trace", same],
            &["region XX is given twice"],
        ),
        (
            &["--trace", a, "--trace", late],
            &["do not overlap in time", "ZZ", "2023-03-01"],
        ),
        (
            &["--trace", a, "--trace", a, "--region", "DE"],
            &["give either --region or --trace"],
        ),
    ] {
        fails_with(args, needles);
    }
}

/// `--paper` with two trace files: per job length and slack, run-now in each region
/// against the worst region and home, and the spatial results.
#[test]
fn paper_with_two_regions() {
    let (a, b) = (
        file(&trace_in(24 * 40, "XX", 1.0)),
        file(&trace_in(24 * 40, "YY", 0.5)),
    );
    let v = run_json(&[
        "--paper",
        "--trace",
        a.path().to_str().unwrap(),
        "--trace",
        b.path().to_str().unwrap(),
        "--submit-every",
        "2d",
    ]);
    assert_eq!(v["home"], "XX");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(
        (rows[7]["duration"].clone(), rows[7]["slack"].clone()),
        ("8d".into(), "+100%".into())
    );
    for r in rows {
        assert_eq!(r["worst_fixed_region"], "XX", "{r}");
        assert_eq!(r["deadline_misses"], 0, "{r}");
        let yy = line(r, "run-now YY");
        assert_eq!(
            (yy["vs_worst_pct"].clone(), yy["vs_home_pct"].clone()),
            (50.0.into(), 50.0.into()),
            "{r}"
        );
        assert_eq!(line(r, "run-now XX (home)")["vs_home_pct"], 0.0);
        assert_eq!(line(r, "spatial run-now")["vs_home_pct"], 50.0);
        let pr = line(r, "spatial pause-and-resume")["vs_home_pct"]
            .as_f64()
            .unwrap();
        assert!(pr >= 50.0, "{r}");
    }
    let out = cmd()
        .args([
            "--paper",
            "--trace",
            a.path().to_str().unwrap(),
            "--trace",
            b.path().to_str().unwrap(),
            "--submit-every",
            "2d",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\n8d jobs\n| | +24h: vs worst (XX) | +24h: vs home | +100%: vs worst (XX) | +100%: vs home |"), "{text}");
    assert!(
        text.contains("| run-now YY | 50.0 | 50.0 | 50.0 | 50.0 |"),
        "{text}"
    );
}
