//! Bad command-line input, end to end through the binary: never a panic, exit code 2 for
//! bad input and 1 for a runtime failure (both documented in every `--help`), and messages
//! that name the flag, the accepted range, the rows or the numbers involved.
//!
//! Nothing here needs a cluster or the network: every `run` invocation fails while its
//! flags are parsed (and `KUBECONFIG` points nowhere, should one ever get past that).

use std::io::Write;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use proptest::prelude::*;

/// Every subcommand that takes duration flags.
const SUBCOMMANDS: [&str; 4] = ["simulate", "plan", "forecast", "run"];

/// The duration flags of each subcommand: the table the tests below iterate over. A test
/// checks it against `--help`, so a new duration flag cannot be left out.
fn duration_flags(sub: &str) -> Vec<&'static str> {
    const FORECAST: [&str; 4] = [
        "forecast-refresh",
        "forecast-max-age",
        "forecast-timeout",
        "forecast-horizon",
    ];
    let own: &[&str] = match sub {
        "simulate" => &[
            "duration",
            "slack",
            "submit-every",
            "horizon",
            "min-run",
            "min-pause",
            "checkpoint-overhead",
            "deadline-margin",
            "startup",
        ],
        "plan" => &["deadline-margin"],
        "forecast" => &["past"],
        "run" => &["status-interval", "deadline-margin", "dispatch-timeout"],
        _ => unreachable!("{sub}"),
    };
    let mut v = own.to_vec();
    if sub != "simulate" {
        v.extend(FORECAST);
    }
    v
}

fn example_manifest() -> String {
    format!("{}/examples/gpu-training.yaml", env!("CARGO_MANIFEST_DIR"))
}

/// Arguments that make `sub` valid apart from the flag under test.
fn base_args(sub: &str) -> Vec<String> {
    let v: Vec<String> = match sub {
        "simulate" => vec!["--region".into(), "DE".into()],
        "plan" => vec![
            "-f".into(),
            example_manifest(),
            "--region".into(),
            "DE".into(),
        ],
        "forecast" => vec!["--region".into(), "DE".into()],
        _ => vec![],
    };
    v
}

fn run(args: &[&str]) -> Output {
    Command::cargo_bin("carbonshift")
        .unwrap()
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .timeout(Duration::from_secs(120))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `args`, asserts exit `code`, no panic and every needle in stderr; returns stderr.
fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: want {n:?} in {err:?}");
    }
    err
}

fn with(sub: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec![sub.to_string()];
    v.extend(base_args(sub));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The flags whose `--help` default is a duration (`[default: 5m]`).
fn flags_with_duration_defaults(sub: &str) -> Vec<String> {
    let out = run(&[sub, "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    let mut current = None;
    let mut found = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            current = rest.split([' ', ',']).next().map(str::to_string);
        } else if let Some(d) = t
            .strip_prefix("[default: ")
            .and_then(|d| d.strip_suffix(']'))
        {
            let is_duration = d.len() > 1
                && d[..d.len() - 1].bytes().all(|b| b.is_ascii_digit())
                && d.ends_with(['s', 'm', 'h', 'd']);
            if is_duration {
                found.extend(current.clone());
            }
        }
    }
    found
}

#[test]
fn the_flag_table_lists_every_duration_flag() {
    for sub in SUBCOMMANDS {
        let mut from_help = flags_with_duration_defaults(sub);
        let mut table: Vec<String> = duration_flags(sub).iter().map(|s| s.to_string()).collect();
        from_help.sort();
        table.sort();
        assert_eq!(from_help, table, "{sub}");
    }
}

/// Huge, overflowing and negative values of every duration flag of every subcommand:
/// exit 2 and clap's message naming the flag and the accepted range.
#[test]
fn huge_and_negative_durations_are_refused_by_flag() {
    for sub in SUBCOMMANDS {
        for flag in duration_flags(sub) {
            let named = format!("for '--{flag} <");
            for huge in [
                "99999999999h",
                "9223372036854775807s",
                "99999999999999999999999d",
            ] {
                let arg = format!("--{flag}={huge}");
                let err = fails(
                    &strs(&with(sub, &[&arg])),
                    2,
                    &[&named, "more than the maximum", "(accepted: "],
                );
                assert!(err.starts_with("error: invalid value"), "{err}");
            }
            let args = with(sub, &[&format!("--{flag}"), "-1h"]);
            fails(&strs(&args), 2, &[&named, "must not be negative"]);
        }
    }
}

/// The three panics of the issue, with their exact messages.
#[test]
fn the_reported_panics_are_range_errors() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "simulate",
                "--region",
                "DE",
                "--submit-every",
                "99999999999h",
            ],
            "error: invalid value '99999999999h' for '--submit-every <DUR>': \
             more than the maximum 366d (accepted: 1s to 366d)",
        ),
        (
            &[
                "simulate",
                "--region",
                "DE",
                "--duration",
                "9223372036854775807s",
            ],
            "error: invalid value '9223372036854775807s' for '--duration <DUR>': \
             more than the maximum 366d (accepted: 1s to 366d)",
        ),
        (
            &[
                "forecast",
                "--region",
                "DE",
                "--forecast-horizon",
                "99999999999h",
            ],
            "error: invalid value '99999999999h' for '--forecast-horizon <HORIZON>': \
             more than the maximum 366d (accepted: 1s to 366d)",
        ),
        (
            &["run", "--status-interval", "2d"],
            "error: invalid value '2d' for '--status-interval <STATUS_INTERVAL>': \
             more than the maximum 1d (accepted: 1s to 1d)",
        ),
    ];
    for (args, want) in cases {
        let err = fails(args, 2, &[]);
        assert_eq!(err.lines().next(), Some(want), "{args:?}");
    }
    let m = example_manifest();
    fails(
        &["plan", "-f", &m, "--forecast-horizon", "99999999999h"],
        2,
        &["'--forecast-horizon <HORIZON>': more than the maximum 366d"],
    );
    // From the environment too.
    let out = Command::cargo_bin("carbonshift")
        .unwrap()
        .env("CARBONSHIFT_FORECAST_HORIZON", "99999999999h")
        .args(["forecast", "--region", "DE"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'--forecast-horizon <HORIZON>'"), "{err}");
}

#[test]
fn the_largest_accepted_durations_run_without_a_panic() {
    let out = run(&[
        "simulate",
        "--region",
        "DE",
        "--from",
        "2022-01-01",
        "--to",
        "2022-01-15",
        "--horizon",
        "366d",
        "--min-run",
        "366d",
        "--deadline-margin",
        "366d",
        "--submit-every",
        "366d",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("DE: 1 jobs of 6h"), "{text}");
    let out = run(&[
        "plan",
        "-f",
        &example_manifest(),
        "--region",
        "DE",
        "--now",
        "2024-03-01T10:00:00Z",
        "--forecast-horizon",
        "366d",
        "--forecast-max-age",
        "366d",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn time_flags_name_their_range() {
    let range = "(accepted: 1970-01-01T00:00:00Z to 9000-01-01T00:00:00Z)";
    let m = example_manifest();
    let err = fails(&["plan", "-f", &m, "--now", "9999-12-31T23:59:59Z"], 2, &[]);
    assert_eq!(
        err.lines().next().unwrap(),
        format!(
            "error: invalid value '9999-12-31T23:59:59Z' for '--now <NOW>': \
             9999-12-31T23:59:59Z is out of range {range}"
        )
    );
    for flag in ["--from", "--to"] {
        fails(
            &["simulate", "--region", "DE", flag, "1900-01-01"],
            2,
            &[&format!("for '{flag} <TIME>'"), range],
        );
        fails(
            &["simulate", "--region", "DE", flag, "2022-13-01"],
            2,
            &["is not RFC 3339 (e.g. 2024-03-01T10:00:00Z) or a date (2024-03-01)"],
        );
    }
}

/// `1.5h` is 90 minutes; a fraction of a second, an unknown unit, a missing unit and a
/// flag where the value should be each get their own reason.
#[test]
fn decimal_durations_are_read_and_bad_ones_explained() {
    let out = run(&[
        "simulate",
        "--region",
        "DE",
        "--from",
        "2022-01-01",
        "--to",
        "2022-01-15",
        "--duration",
        "1.5h",
        "--slack",
        "0.5d",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Submissions from 2022-01-02 (after 1d of history), every 7h, each needing 13h30m
    // before 2022-01-15: 1 + floor((13d - 13h30m) / 7h) = 1 + floor(298.5 / 7) = 43 jobs.
    assert!(
        text.starts_with("DE: 43 jobs of 1h30m that must finish within 13h30m (slack 12h)"),
        "{text}"
    );
    let cases = [
        ("1.5s", "'--duration <DUR>': 1.5s is not a whole number of seconds"),
        ("6x", "'--duration <DUR>': unknown unit 'x'; units are d, h, m, s"),
        ("6", "'--duration <DUR>': 6 has no unit: write e.g. 6s, 6m or 6h"),
        ("0h", "'--duration <DUR>': less than the minimum 1s (accepted: 1s to 366d)"),
        ("-1.5h", "'--duration <DUR>': must not be negative"),
        (
            "--slack",
            "'--duration <DUR>': this looks like a flag, not a duration: the flag before it needs a value",
        ),
    ];
    for (value, want) in cases {
        fails(
            &["simulate", "--region", "DE", "--duration", value],
            2,
            &[want],
        );
    }
}

#[test]
fn exit_status_is_in_every_help() {
    let want = "Exit status: 0 success, 1 runtime failure (network, cluster, I/O), 2 bad input";
    for sub in [
        None,
        Some("simulate"),
        Some("plan"),
        Some("forecast"),
        Some("run"),
        Some("crd"),
    ] {
        let args: Vec<&str> = sub.into_iter().chain(["--help"]).collect();
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        // --help wraps lines; compare with the line breaks taken out.
        let text = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
        assert!(text.contains(want), "{args:?}: {text}");
    }
}

#[test]
fn clap_errors_exit_2() {
    fails(
        &["simulate", "--no-such-flag"],
        2,
        &["unexpected argument '--no-such-flag'"],
    );
    fails(
        &["plan"],
        2,
        &["the following required arguments were not provided"],
    );
    fails(&["no-such-command"], 2, &["unrecognized subcommand"]);
    fails(
        &["simulate", "--format", "xml"],
        2,
        &["invalid value 'xml' for '--format"],
    );
    fails(
        &["simulate", "--duration"],
        2,
        &["a value is required for '--duration <DUR>'"],
    );
}

/// A missing or unreadable file named by a flag is bad input, like a missing `--trace`; a
/// provider that cannot be reached is a runtime failure.
#[test]
fn missing_input_files_exit_2_unreachable_providers_exit_1() {
    let file_args = [
        "--provider",
        "file",
        "--forecast-file",
        "/nonexistent/f.csv",
    ];
    let want =
        "error: --forecast-file: file: no forecast available: cannot read /nonexistent/f.csv";
    let err = fails(&strs(&with("forecast", &file_args)), 2, &[want]);
    assert_eq!(err.lines().count(), 1, "{err}");
    fails(&strs(&with("plan", &file_args)), 2, &[want]);
    fails(
        &["simulate", "--trace", "/nonexistent/t.csv"],
        2,
        &["error: cannot read /nonexistent/t.csv"],
    );
    fails(
        &["plan", "-f", "/nonexistent/caj.yaml"],
        2,
        &["/nonexistent/caj.yaml"],
    );

    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("old.csv");
    std::fs::write(
        &stale,
        "timestamp,region,gco2_per_kwh\n2023-01-01T00:00:00Z,DE,100\n2023-01-01T01:00:00Z,DE,90\n",
    )
    .unwrap();
    let stale_args = [
        "--provider",
        "file",
        "--forecast-file",
        stale.to_str().unwrap(),
    ];
    fails(
        &strs(&with("forecast", &stale_args)),
        2,
        &["error: --forecast-file: file: invalid forecast: forecast ends at 2023-01-01T02:00:00Z"],
    );

    // Port 1 on the loopback interface: refused at once, no network involved.
    let url = [
        "--provider",
        "file",
        "--forecast-file",
        "http://127.0.0.1:1/f.csv",
    ];
    let mut none = url.to_vec();
    none.extend(["--forecast-fallback", "none"]);
    fails(&strs(&with("forecast", &none)), 1, &["Connection refused"]);
    // A provider that fails at run time is what the fallback is for: exit 0, with a warning
    // that says why. A missing file (above) is bad input, which no fallback covers.
    let out = run(&strs(&with("forecast", &url)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.starts_with(
            "warning: the provider failed, so the fallback source embedded stands in for it:"
        ) && err.contains("Connection refused"),
        "{err}"
    );
}

fn trace(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Swapped rows are reported as out of order with both lines and timestamps, not as the
/// "gap ... 7200000 ms later" they leave first; all times in RFC 3339 with `Z`.
#[test]
fn out_of_order_rows_are_named_with_both_lines() {
    let mut text = String::from("timestamp,region,gco2_per_kwh\n");
    for h in [0, 1, 2, 4, 3, 5] {
        text.push_str(&format!("2023-01-01T{h:02}:00:00+00:00,XX,{}\n", 100 + h));
    }
    let f = trace(&text);
    let p = f.path().to_str().unwrap();
    let err = fails(&["simulate", "--trace", p], 2, &[]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {p}: line 6: rows out of order: line 6 (2023-01-01T03:00:00Z) comes after \
             line 5 (2023-01-01T04:00:00Z), which is later; sort the rows by timestamp"
        )
    );
    let gap = trace(
        "timestamp,region,gco2_per_kwh\n2023-01-01T00:00:00Z,XX,1\n\
         2023-01-01T01:00:00Z,XX,1\n2023-01-01T03:00:00Z,XX,1\n",
    );
    let g = gap.path().to_str().unwrap();
    let err = fails(&["simulate", "--trace", g], 2, &[]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {g}: line 4: gap: line 4 (2023-01-01T03:00:00Z) follows line 3 \
             (2023-01-01T01:00:00Z) by 2h, but the step is 1h (1 row missing)"
        )
    );
}

/// The numbers add up: 1d of history + 6h + 1d = 2d6h from the trace's start; one format.
#[test]
fn a_trace_too_short_says_what_one_job_needs() {
    let mut text = String::from("timestamp,region,gco2_per_kwh\n");
    for h in 0..40 {
        let t = chrono::DateTime::from_timestamp(1_672_531_200 + 3600 * h, 0).unwrap();
        text.push_str(&format!("{},XX,100\n", t.to_rfc3339()));
    }
    assert!(text.contains("+00:00"), "the file itself uses +00:00");
    let f = trace(&text);
    let err = fails(&["simulate", "--trace", f.path().to_str().unwrap()], 2, &[]);
    assert_eq!(
        err.trim_end(),
        "error: the trace is too short for one job: it covers 2023-01-01T00:00:00Z to \
         2023-01-02T16:00:00Z (1d16h), but one job needs 2d6h: 1d of history + 6h duration + \
         1d slack, until 2023-01-03T06:00:00Z"
    );
    let err = fails(
        &[
            "simulate",
            "--region",
            "DE",
            "--from",
            "2022-01-01",
            "--to",
            "2022-01-02",
        ],
        2,
        &[],
    );
    assert_eq!(
        err.trim_end(),
        "error: the trace is too short for one job: it covers 2022-01-01T00:00:00Z to \
         2022-01-02T00:00:00Z (1d), but one job needs 2d6h: 1d of history + 6h duration + \
         1d slack, until 2022-01-03T06:00:00Z"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever string a duration flag is given, clap's parse returns a value in range or
    /// a value-validation error that names the flag; it never panics.
    #[test]
    fn duration_flags_never_panic(s in prop_oneof![
        any::<String>(),
        "-?[0-9]{0,25}(\\.[0-9]{0,12})?[dhmsxµ ]{0,3}",
        (any::<i64>(), "[dhmsq]?").prop_map(|(n, u)| format!("{n}{u}")),
    ]) {
        let cmd = clap::Command::new("t").arg(
            clap::Arg::new("d")
                .long("dur")
                .allow_hyphen_values(true)
                .value_parser(carbonshift::duration::flag(1, 86_400)),
        );
        match cmd.try_get_matches_from(["t", "--dur", s.as_str()]) {
            Ok(m) => {
                let v = *m.get_one::<i64>("d").unwrap();
                prop_assert!((1..=86_400).contains(&v), "{s:?} -> {v}");
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
                prop_assert!(e.to_string().contains("'--dur <d>'"), "{}", e);
            }
        }
    }
}
