//! `carbonshift plan -f`: the operator's decision for a manifest, without a cluster.

use assert_cmd::Command;
use predicates::prelude::*;
use std::io::Write;

const NOW: &str = "2024-03-01T06:00:00Z";

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gpu-training.yaml"
    ))
    .unwrap()
}

fn manifest(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn plan(file: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("carbonshift").unwrap();
    cmd.env_remove("CARBONSHIFT_REGION")
        .args(["plan", "-f"])
        .arg(file)
        .args(["--now", NOW, "--region", "DE"])
        .args(extra);
    cmd
}

#[test]
fn plans_the_example_as_json() {
    let f = manifest(&example());
    let out = plan(f.path(), &["--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["region"], "DE");
    assert_eq!(v["forecastSource"], "embedded (historical replay)");
    // maxDelay 24h from a manifest never applied counts from --now: 6 h of work may
    // start up to 24 h late, so the deadline is 30 h after creation.
    assert_eq!(v["deadline"], "2024-03-02T12:00:00Z");
    assert_eq!(v["remainingSeconds"], 6 * 3600);
    assert!((v["powerKw"].as_f64().unwrap() - 0.48).abs() < 1e-9);
    assert!(["Run", "Pause"].contains(&v["action"].as_str().unwrap()));
    let runs = v["plannedRuns"].as_array().unwrap();
    let planned: i64 = runs.iter().map(|r| r["seconds"].as_i64().unwrap()).sum();
    assert!(planned >= 6 * 3600, "plans the whole runtime: {v}");
    let last_end = runs.last().unwrap()["end"].as_str().unwrap();
    assert!(
        last_end <= "2024-03-02T12:00:00Z",
        "ends by the deadline: {last_end}"
    );
    // Shifting never plans dirtier than running at once.
    assert!(v["expectedGrams"].as_f64().unwrap() <= v["runNowGrams"].as_f64().unwrap() + 1e-6);
}

#[test]
fn table_output_names_the_decision() {
    let f = manifest(&example());
    plan(f.path(), &[])
        .assert()
        .success()
        .stdout(predicate::str::contains("Decision"))
        .stdout(predicate::str::contains("embedded (historical replay)"))
        .stdout(predicate::str::contains("Planned runs"));
}

#[test]
fn run_now_runs_now() {
    let f = manifest(&example().replace("strategy: PauseAndResume", "strategy: RunNow"));
    let out = plan(f.path(), &["--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["action"], "Run");
    assert_eq!(v["phase"], "Running");
}

/// A deadline the job cannot meet is not refused (an edit could then freeze a job): the
/// decision is to run now, and the Event names the earliest deadline that would be met.
#[test]
fn a_deadline_too_close_runs_now_and_says_so() {
    let text = example().replace("maxDelay: 24h ", "deadline: \"2024-03-01T08:00:00Z\" ");
    let f = manifest(&text);
    plan(f.path(), &[])
        .assert()
        .success()
        .stdout(predicate::str::contains("Run (DeadlineInfeasible)"))
        .stdout(predicate::str::contains(
            "DeadlineMissed: 6h runtime left cannot finish by the deadline 2024-03-01T08:00:00Z",
        ))
        .stdout(predicate::str::contains(
            "Move the deadline to 2024-03-01T12:00:00Z or later",
        ));
}

#[test]
fn no_power_model_is_an_input_error_with_the_fix() {
    let text = example()
        .replace(
            "  power:\n    wattsPerGpu: 400           # A100 SXM board power\n    pue: 1.2\n",
            "",
        )
        .replace(
            "                  nvidia.com/gpu: 1",
            "                  cpu: \"4\"",
        );
    let f = manifest(&text);
    plan(f.path(), &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("spec.power.watts"));
}

#[test]
fn not_a_manifest_is_an_input_error() {
    let f = manifest("kind: [");
    plan(f.path(), &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("YAML structure problem at line 2"));
    let f = manifest("kind: CarbonAwareJob\n");
    plan(f.path(), &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "metadata is missing (line 1): add it",
        ));
}

/// The README's example (6 h of work, maxDelay 24h, DE): the deadline is 30 h after
/// creation, i.e. 24 h of slack, as `simulate --duration 6h --slack 24h` measures.
#[test]
fn readme_example_has_its_deadline_30h_after_creation() {
    let f = manifest(&example());
    plan(f.path(), &[])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Now              2024-03-01T06:00:00Z",
        ))
        .stdout(predicate::str::contains(
            "Deadline         2024-03-02T12:00:00Z (plans to finish by 2024-03-02T11:58:00Z",
        ))
        .stdout(predicate::str::contains("Remaining        6h"));
}

/// A maxDelay too short for a job the operator reached late (created 10 h before now, 6 h
/// of work, 1 h of delay allowed): it runs at once, and the Event names maxDelay, the field
/// the manifest has, with the value that would have been enough.
#[test]
fn a_too_short_max_delay_names_max_delay() {
    let text = example()
        .replace("maxDelay: 24h ", "maxDelay: 1h ")
        .replace(
            "  namespace: default\n",
            "  namespace: default\n  creationTimestamp: \"2024-02-29T20:00:00Z\"\n",
        );
    assert!(text.contains("creationTimestamp"));
    let f = manifest(&text);
    let out = plan(f.path(), &[])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("Run (DeadlineInfeasible)"), "{out}");
    assert!(
        out.contains(
            "DeadlineMissed: 6h runtime left cannot finish by the deadline 2024-03-01T03:00:00Z \
             (creation + expectedDuration 6h + maxDelay 1h) even running continuously: running \
             it now. Raise spec.schedule.maxDelay to 10h or more"
        ),
        "{out}"
    );
    assert!(!out.contains("Move the deadline"), "{out}");
}

#[test]
fn plans_against_the_deadline_less_the_margin() {
    let f = manifest(&example());
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        let out = plan(f.path(), &args)
            .env_remove("CARBONSHIFT_DEADLINE_MARGIN")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    // The operator's default margin, 2m, comes out of 24 h of slack whole.
    let v = json(&[]);
    assert_eq!(v["deadline"], "2024-03-02T12:00:00Z");
    assert_eq!(v["planningDeadline"], "2024-03-02T11:58:00Z");
    let last_end = v["plannedRuns"].as_array().unwrap().last().unwrap()["end"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last_end.as_str() <= "2024-03-02T11:58:00Z", "{last_end}");
    let v = json(&["--deadline-margin", "1h"]);
    assert_eq!(v["planningDeadline"], "2024-03-02T11:00:00Z");
    let v = json(&["--deadline-margin", "0s"]);
    assert_eq!(v["planningDeadline"], "2024-03-02T12:00:00Z");
    // Never more than the slack: 24 h of slack, a 2-day margin plans to finish by
    // now + 6 h, i.e. runs now.
    let v = json(&["--deadline-margin", "2d"]);
    assert_eq!(v["planningDeadline"], "2024-03-01T12:00:00Z");
    assert_eq!(v["action"], "Run");
    assert_eq!(v["reason"], "DeadlineGuard");
    plan(f.path(), &["--deadline-margin", "soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--deadline-margin"));
}

#[test]
fn remaining_work_is_the_operators() {
    // Paused after 1 h of work and 2 pauses of 5 min checkpoint overhead each: the
    // operator's remaining work is 6 h + 2 x 5 min - 1 h.
    let text = format!(
        "{}status:\n  phase: Paused\n  startTime: \"2024-03-01T04:00:00Z\"\n  pausedSince: \"2024-03-01T05:30:00Z\"\n  lastAccountedTime: \"{NOW}\"\n  runtimeSeconds: 3600\n  pauses: 2\n",
        example()
    );
    let f = manifest(&text);
    let out = plan(f.path(), &["--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["remainingSeconds"], 5 * 3600 + 10 * 60, "{v}");
}

/// Rows and totals add up on the one series the plan was made with, for a deadline inside
/// the forecast and one a month away: rows past the forecast's horizon are marked
/// `modelled`, and their grams add up to "Expected" like the rest.
#[test]
fn rows_and_totals_agree_for_any_deadline() {
    // 100 h of work cannot fit in the 72 h the embedded forecast reaches.
    for (max_delay, work, modelled) in [("24h", "6h", false), ("720h", "100h", true)] {
        let text = example()
            .replace("maxDelay: 24h", &format!("maxDelay: {max_delay}"))
            .replace("expectedDuration: 6h", &format!("expectedDuration: {work}"));
        assert!(text.contains(&format!("expectedDuration: {work} ")));
        let f = manifest(&text);
        let out = plan(f.path(), &["--format", "json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let kw = v["powerKw"].as_f64().unwrap();
        let runs = v["plannedRuns"].as_array().unwrap();
        let rows: f64 = runs
            .iter()
            .map(|r| {
                r["meanGramsPerKwh"].as_f64().unwrap() * r["seconds"].as_f64().unwrap() / 3600.0
                    * kw
            })
            .sum();
        let expected = v["expectedGrams"].as_f64().unwrap();
        assert!(
            (rows - expected).abs() <= 1e-6 * expected.max(1.0),
            "maxDelay {max_delay}: rows add up to {rows} g, Expected {expected} g: {v}"
        );
        let kinds: Vec<&str> = runs
            .iter()
            .map(|r| r["intensities"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.iter().any(|k| k.contains("modelled")),
            modelled,
            "maxDelay {max_delay}: {kinds:?}"
        );
        let end = v["forecastEnd"].as_str().unwrap();
        for r in runs {
            let (start, k) = (
                r["start"].as_str().unwrap(),
                r["intensities"].as_str().unwrap(),
            );
            assert_eq!(k == "modelled", start >= end, "{r} vs forecast end {end}");
        }
    }
}
