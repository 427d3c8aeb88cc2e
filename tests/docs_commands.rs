//! Every command the docs show a reader runs and exits 0: the `carbonshift ...` and
//! `cargo run --release -- ...` lines of README.md's ```sh blocks and the examples in each
//! subcommand's `--help`, run with the built binary.
//!
//! How a documented line is run:
//! - in a scratch directory holding `examples/` (a link to the repository's) and the files
//!   the docs use as placeholders for the reader's own ([`PLACEHOLDERS`]); a `> FILE`
//!   redirect writes there, never into the repository;
//! - `cargo run --release -- ARGS` and `target/release/carbonshift ARGS` run the test's
//!   binary with ARGS; `VAR=value` prefixes become its environment;
//! - in a pipe, the carbonshift part runs and a later carbonshift part reads its output;
//!   the programs it feeds (`jq`, `kubectl apply`) are not run;
//! - live providers are answered by a local stand-in of their API (Electricity Maps and UK
//!   Carbon Intensity formats), through `CARBONSHIFT_FORECAST_ENDPOINT`, with placeholder
//!   credentials: the machine running the tests has neither the internet nor tokens;
//! - in a debug build, a `simulate` over a whole embedded trace (three years: 90 s for one
//!   command unoptimised) runs on [`DEBUG_WINDOW`] instead; `cargo test --release --test
//!   docs_commands` runs it as written.
//!
//! Lines not run are the ones that need a Kubernetes cluster or set up the shell, each
//! matched by an entry of [`NOT_RUN`] with the reason; a line that matches none and is not
//! a carbonshift command fails the test, so a new kind of command gets a decision.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use chrono::{DurationRound, TimeDelta, Utc};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Documented commands this test does not run, by how they start, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "carbonshift run",
        "the operator: needs a Kubernetes cluster",
    ),
    ("kubectl", "needs a Kubernetes cluster"),
    ("helm", "installs into a Kubernetes cluster"),
    (
        "curl",
        "reads the metrics of an operator running in a cluster",
    ),
    (
        "hack/",
        "the cluster scripts: build and start a local Kubernetes cluster",
    ),
    ("cargo build", "builds the binary this test already runs"),
    ("alias", "shell set-up for the lines that follow"),
];

/// Programs a documented carbonshift command pipes into; the command runs, they do not.
const PIPE_CONSUMERS: &[&str] = &["jq", "kubectl"];

/// Files the docs name as the reader's own, and what this test puts there.
const PLACEHOLDERS: &[(&str, &str)] = &[
    (
        "my-grid.csv",
        "a trace: 30 days of synthetic hourly intensities",
    ),
    (
        "grid.csv",
        "a trace: 30 days of synthetic hourly intensities",
    ),
    (
        "home.csv",
        "a trace of region HOME: 30 days of synthetic hourly intensities",
    ),
    (
        "other.csv",
        "a trace of region OTHER: the same days at 60 % of HOME's intensities",
    ),
    ("caj.yaml", "a CarbonAwareJob: examples/gpu-training.yaml"),
    (
        "de.csv",
        "a forecast file: `carbonshift forecast --region DE --format csv`",
    ),
];

/// The span a whole-trace `simulate` is cut to in a debug build: the shortest that holds
/// the paper table's longest case (8 days + 100 % slack + 1 day of history).
const DEBUG_WINDOW: [&str; 4] = ["--from", "2022-01-01", "--to", "2022-01-19"];

/// One documented command line and where it is written.
#[derive(Debug, Clone)]
struct Line {
    origin: String,
    text: String,
}

fn bin() -> Command {
    let mut c = Command::cargo_bin("carbonshift").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("CARBONSHIFT_")
            || k.starts_with("ELECTRICITYMAPS_")
            || k.starts_with("WATTTIME_")
        {
            c.env_remove(k);
        }
    }
    c
}

fn stdout_of(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The lines of README.md's ```sh blocks, `\` continuations joined, comments dropped.
fn readme_lines() -> Vec<Line> {
    let readme = std::fs::read_to_string(format!("{REPO}/README.md")).unwrap();
    let mut out = Vec::new();
    let (mut in_sh, mut pending, mut start) = (false, String::new(), 0);
    for (i, line) in readme.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh || (pending.is_empty() && (t.is_empty() || t.starts_with('#'))) {
            continue;
        }
        if pending.is_empty() {
            start = i + 1;
        }
        match t.strip_suffix('\\') {
            Some(head) => pending.push_str(&format!("{} ", head.trim_end())),
            None => {
                pending.push_str(t);
                out.push(Line {
                    origin: format!("README.md:{start}"),
                    text: std::mem::take(&mut pending),
                });
            }
        }
    }
    out
}

/// The subcommands `carbonshift --help` lists.
fn subcommands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The example commands in each subcommand's `--help`.
fn help_lines() -> Vec<Line> {
    let mut out = Vec::new();
    for sub in subcommands() {
        let help = stdout_of(&[&sub, "--help"]);
        for l in help.lines().map(str::trim) {
            let words: Vec<&str> = l.split_whitespace().collect();
            let first_program = words.iter().find(|w| !is_assignment(w));
            if first_program == Some(&"carbonshift") {
                out.push(Line {
                    origin: format!("carbonshift {sub} --help"),
                    text: l.to_string(),
                });
            }
        }
    }
    out
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
    })
}

/// A carbonshift invocation: environment, arguments, and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Invocation {
    env: Vec<(String, String)>,
    args: Vec<String>,
    redirect: Option<String>,
}

/// What a documented line amounts to.
#[derive(Debug)]
enum Plan {
    /// Carbonshift invocations in order (`&&`, `;`); `true` marks one that reads the
    /// previous one's output (a pipe).
    Run(Vec<(Invocation, bool)>),
    NotRun(&'static str),
}

fn not_run_reason(words: &[String]) -> Option<&'static str> {
    let program: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| is_assignment(w))
        .collect();
    let line = program.join(" ");
    NOT_RUN
        .iter()
        .find(|(start, _)| line.starts_with(start))
        .map(|(_, why)| *why)
}

/// The carbonshift arguments of `words` (a command without pipes), or `None` when it is
/// not a carbonshift command.
fn invocation(words: &[String]) -> Option<Invocation> {
    let mut env = Vec::new();
    let mut rest = words;
    while let Some((w, tail)) = rest.split_first() {
        if !is_assignment(w) {
            break;
        }
        let (k, v) = w.split_once('=').unwrap();
        env.push((k.to_string(), v.to_string()));
        rest = tail;
    }
    let args: &[String] = match rest {
        [p, tail @ ..] if p == "carbonshift" || p == "target/release/carbonshift" => tail,
        [c, r, rel, dd, tail @ ..]
            if c == "cargo" && r == "run" && rel == "--release" && dd == "--" =>
        {
            tail
        }
        _ => return None,
    };
    let mut inv = Invocation {
        env,
        args: Vec::new(),
        redirect: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == ">" {
            inv.redirect = it.next().cloned();
        } else {
            inv.args.push(a.clone());
        }
    }
    Some(inv)
}

fn plan(line: &Line) -> Result<Plan, String> {
    let words = shlex::split(&line.text).ok_or_else(|| format!("cannot split {:?}", line.text))?;
    let mut steps = Vec::new();
    for command in words.split(|w| w == "&&" || w == ";") {
        for (i, part) in command.split(|w| w == "|").enumerate() {
            let program = part.first().map(String::as_str).unwrap_or_default();
            if i > 0 && PIPE_CONSUMERS.contains(&program) {
                continue;
            }
            if let Some(why) = not_run_reason(part) {
                if i == 0 || steps.is_empty() {
                    return Ok(Plan::NotRun(why));
                }
                continue;
            }
            if let Some(inv) = invocation(part) {
                steps.push((inv, i > 0));
                continue;
            }
            return Err(format!(
                "{}: `{}`: neither a carbonshift command nor listed in NOT_RUN",
                line.origin, line.text
            ));
        }
    }
    Ok(Plan::Run(steps))
}

/// A whole-trace `simulate` (embedded zone, no --from/--to, not the March 2023 vintages).
fn whole_trace(args: &[String]) -> bool {
    let has = |f: &str| args.iter().any(|a| a == f);
    args.first().is_some_and(|a| a == "simulate")
        && has("--region")
        && !has("--trace")
        && !has("--from")
        && !has("--to")
        && !args
            .windows(2)
            .any(|w| w[0] == "--forecast" && w[1] == "vintages")
}

/// A trace `simulate --trace` reads: 30 days of hourly values with a daily cycle, in
/// region `region`, times `scale`.
fn synthetic_trace(region: &str, scale: f64) -> String {
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut s = String::from("timestamp,region,gco2_per_kwh\n");
    for h in 0..30 * 24 {
        let t = start + TimeDelta::hours(h);
        let v = scale * (300.0 + 120.0 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin());
        s.push_str(&format!(
            "{},{region},{v:.1}\n",
            t.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    s
}

fn scratch_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(format!("{REPO}/examples"), dir.path().join("examples")).unwrap();
    for (name, _) in PLACEHOLDERS {
        let content = match *name {
            "caj.yaml" => {
                std::fs::read_to_string(format!("{REPO}/examples/gpu-training.yaml")).unwrap()
            }
            "de.csv" => stdout_of(&["forecast", "--region", "DE", "--format", "csv"]),
            "home.csv" => synthetic_trace("HOME", 1.0),
            "other.csv" => synthetic_trace("OTHER", 0.6),
            _ => synthetic_trace("MY-GRID", 1.0),
        };
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// A stand-in for the live providers' APIs: an Electricity Maps forecast for any zone and
/// a UK Carbon Intensity regional forecast for any region, hourly/half-hourly from two
/// hours before now.
async fn live_apis() -> MockServer {
    let server = MockServer::start().await;
    let start = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(2);
    let em: Vec<Value> = (0..50)
        .map(|i| json!({"carbonIntensity": 250 + i, "datetime": (start + TimeDelta::hours(i)).to_rfc3339()}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "zone": "DE", "forecast": em, "updatedAt": Utc::now().to_rfc3339()
        })))
        .mount(&server)
        .await;
    let uk: Vec<Value> = (0..100)
        .map(|i| {
            let from = start + TimeDelta::minutes(30 * i);
            json!({
                "from": from.format("%Y-%m-%dT%H:%MZ").to_string(),
                "to": (from + TimeDelta::minutes(30)).format("%Y-%m-%dT%H:%MZ").to_string(),
                "intensity": {"forecast": 150 + i, "actual": null, "index": "moderate"}
            })
        })
        .collect();
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/regional/intensity/[^/]+/fw48h/regionid/[0-9]+$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"regionid": 13, "shortname": "London", "data": uk}
        })))
        .mount(&server)
        .await;
    server
}

fn run_one(inv: &Invocation, stdin: Option<Vec<u8>>, dir: &Path, api: &str) -> Output {
    let mut args = inv.args.clone();
    if cfg!(debug_assertions) && whole_trace(&args) {
        args.extend(DEBUG_WINDOW.iter().map(|s| s.to_string()));
    }
    let mut c = bin();
    c.current_dir(dir)
        .env("CARBONSHIFT_FORECAST_ENDPOINT", api)
        .env("ELECTRICITYMAPS_TOKEN", "placeholder-token")
        .env("WATTTIME_USERNAME", "placeholder")
        .env("WATTTIME_PASSWORD", "placeholder")
        .args(&args)
        .timeout(std::time::Duration::from_secs(300));
    for (k, v) in &inv.env {
        c.env(k, v);
    }
    if let Some(input) = stdin {
        c.write_stdin(input);
    }
    let out = c.output().unwrap();
    if let (Some(file), true) = (&inv.redirect, out.status.success()) {
        let p = dir.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &out.stdout).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_command_runs() {
    let server = live_apis().await;
    let api = server.uri();
    let report = tokio::task::spawn_blocking(move || run_all(&api))
        .await
        .unwrap();
    let Report {
        readme,
        help,
        not_run,
        failures,
    } = report;
    eprintln!("not run:\n  {}", not_run.join("\n  "));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Extraction works: the README's quick start and every subcommand's examples.
    assert!(readme >= 6, "{readme} README commands run");
    assert!(help >= 10, "{help} --help examples run");
}

struct Report {
    readme: usize,
    help: usize,
    not_run: Vec<String>,
    failures: Vec<String>,
}

fn run_all(api: &str) -> Report {
    let dir = scratch_dir();
    let mut seen = BTreeSet::new();
    let mut r = Report {
        readme: 0,
        help: 0,
        not_run: Vec::new(),
        failures: Vec::new(),
    };
    for line in readme_lines().into_iter().chain(help_lines()) {
        let steps = match plan(&line) {
            Ok(Plan::Run(steps)) => steps,
            Ok(Plan::NotRun(why)) => {
                r.not_run
                    .push(format!("{}: `{}`: {why}", line.origin, line.text));
                continue;
            }
            Err(e) => {
                r.failures.push(e);
                continue;
            }
        };
        if line.origin.starts_with("README") {
            r.readme += 1;
        } else {
            r.help += 1;
        }
        // The same command in the README and a --help runs once.
        if !seen.insert(format!("{steps:?}")) {
            continue;
        }
        let mut previous: Option<Vec<u8>> = None;
        for (inv, piped) in steps {
            let stdin = if piped { previous.take() } else { None };
            let out = run_one(&inv, stdin, dir.path(), api);
            if !out.status.success() {
                r.failures.push(format!(
                    "{}: `{}` exited {:?}:\n{}",
                    line.origin,
                    line.text,
                    out.status.code(),
                    text(&out.stderr).trim_end()
                ));
                break;
            }
            previous = Some(out.stdout);
        }
    }
    r
}

#[test]
fn lines_are_read_as_the_docs_mean_them() {
    let l = |t: &str| Line {
        origin: "t".into(),
        text: t.into(),
    };
    let Plan::Run(steps) = plan(&l("cargo run --release -- simulate --region DE")).unwrap() else {
        panic!()
    };
    assert_eq!(steps[0].0.args, ["simulate", "--region", "DE"]);
    let Plan::Run(steps) = plan(&l(
        "carbonshift crd --format json | jq .spec.versions[0].schema",
    ))
    .unwrap() else {
        panic!()
    };
    assert_eq!((steps.len(), steps[0].0.args.len()), (1, 3));
    let Plan::Run(steps) = plan(&l("carbonshift crd > crds/x.yaml")).unwrap() else {
        panic!()
    };
    assert_eq!(steps[0].0.redirect.as_deref(), Some("crds/x.yaml"));
    assert!(matches!(
        plan(&l("kubectl get caj my-job -o yaml | carbonshift plan -f -")).unwrap(),
        Plan::NotRun("needs a Kubernetes cluster")
    ));
    assert!(matches!(
        plan(&l("CARBONSHIFT_FORECAST_PROVIDER=electricitymaps ELECTRICITYMAPS_TOKEN=... carbonshift run")).unwrap(),
        Plan::NotRun("the operator: needs a Kubernetes cluster")
    ));
    assert!(plan(&l("rm -rf /")).is_err());
    let Plan::Run(steps) = plan(&l("carbonshift crd   # the CRD")).unwrap() else {
        panic!()
    };
    assert_eq!(steps[0].0.args, ["crd"]);
    assert!(whole_trace(&[
        "simulate".into(),
        "--region".into(),
        "DE".into()
    ]));
    // The README's quick start is found, comments and continuations handled.
    let readme = readme_lines();
    assert!(readme
        .iter()
        .any(|l| l.text == "carbonshift plan -f examples/gpu-training.yaml --region DE"));
    assert!(readme.iter().any(|l| l
        .text
        .starts_with("helm install carbonshift charts/carbonshift --namespace")));
    assert!(readme.iter().all(|l| !l.text.starts_with('#')));
}

#[test]
fn crd_help_lists_only_the_formats_it_prints() {
    let help = stdout_of(&["crd", "-h"]);
    let listed: Vec<String> = help
        .split("--format <FORMAT>")
        .nth(1)
        .unwrap()
        .split("[possible values: ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap()
        .split(',')
        .map(|v| v.split_whitespace().collect::<String>())
        .collect();
    assert_eq!(listed, ["yaml", "json"], "{help}");
    // The long help describes the same values, and no other.
    let long = stdout_of(&["crd", "--help"]);
    let described: Vec<&str> = long
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_once(':').map(|(v, _)| v))
        .collect();
    assert_eq!(described, listed, "{long}");
    for format in &listed {
        let out = stdout_of(&["crd", "--format", format]);
        let first = out.lines().next().unwrap_or_default().to_string();
        match format.as_str() {
            "yaml" => assert_eq!(first, "apiVersion: apiextensions.k8s.io/v1"),
            _ => {
                let v: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["kind"], "CustomResourceDefinition");
            }
        }
    }
    // The YAML is the committed CRD; `table` still means it.
    let committed =
        std::fs::read_to_string(format!("{REPO}/crds/carbonshift.io_carbonawarejobs.yaml"))
            .unwrap();
    assert_eq!(stdout_of(&["crd"]), committed);
    assert_eq!(stdout_of(&["crd", "--format", "table"]), committed);
    for unlisted in ["csv", "xml"] {
        bin()
            .args(["crd", "--format", unlisted])
            .assert()
            .code(2)
            .stderr(predicates::str::contains(format!(
                "invalid value '{unlisted}' for '--format <FORMAT>'"
            )))
            .stderr(predicates::str::contains("[possible values: yaml, json]"));
    }
}
