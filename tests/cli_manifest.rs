//! `carbonshift plan -f` on manifests as a newcomer writes them: the commands the help and
//! the example show, run as written; every bad field an input error (exit 2) naming it,
//! never a panic; YAML indentation slips reported as such, with the line.

use assert_cmd::Command;
use predicates::prelude::*;
use std::io::Write;
use std::path::Path;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gpu-training.yaml");
const NOW: &str = "2024-03-01T06:00:00Z";

/// Environment that would change what `plan` does, cleared so tests see the defaults.
const ENV: [&str; 12] = [
    "CARBONSHIFT_REGION",
    "CARBONSHIFT_DEADLINE_MARGIN",
    "CARBONSHIFT_FORECAST_PROVIDER",
    "CARBONSHIFT_FORECAST_ENDPOINT",
    "CARBONSHIFT_FORECAST_FILE",
    "CARBONSHIFT_FORECAST_REFRESH",
    "CARBONSHIFT_FORECAST_MAX_AGE",
    "CARBONSHIFT_FORECAST_FALLBACK",
    "CARBONSHIFT_FORECAST_TIMEOUT",
    "CARBONSHIFT_FORECAST_HORIZON",
    "CARBONSHIFT_REGION_MAP",
    "CARBONSHIFT_REGION_MAP_FILE",
];

fn carbonshift() -> Command {
    let mut cmd = Command::cargo_bin("carbonshift").unwrap();
    for v in ENV {
        cmd.env_remove(v);
    }
    cmd
}

fn example() -> String {
    std::fs::read_to_string(EXAMPLE).unwrap()
}

fn manifest(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn plan(file: &Path) -> Command {
    let mut cmd = carbonshift();
    cmd.args(["plan", "-f"]).arg(file).args(["--now", NOW]);
    cmd
}

/// The `carbonshift plan ...` lines of `text` (help or YAML comments), as written.
fn commands(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            let at = l.find("carbonshift plan")?;
            // Keep what pipes into it (`kubectl get ... | carbonshift plan -f -`).
            let cmd = if l[..at].contains('|') { l } else { &l[at..] };
            Some(cmd.split("  #").next().unwrap().trim().to_string())
        })
        .collect()
}

/// Runs `line` (a `carbonshift plan` command, maybe after `... |`) in `dir`, which holds
/// `examples/gpu-training.yaml` and a copy named `caj.yaml`; what a pipe would feed is the
/// example. Checks exit 0 and the figures that do not depend on the day: the deadline 30 h
/// after "now" (6 h of work, maxDelay 24h), 6 h remaining, 0.48 kW, a decision.
fn run_as_written(line: &str, dir: &Path) {
    let (piped, cmd) = match line.split_once('|') {
        Some((_, c)) => (true, c.trim()),
        None => (false, line),
    };
    let args: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(args[..2], ["carbonshift", "plan"], "{line}");
    let mut c = carbonshift();
    c.current_dir(dir).args(&args[1..]);
    if piped {
        c.write_stdin(example());
    }
    let out = c.assert().success().get_output().stdout.clone();
    let out = String::from_utf8(out).unwrap();
    let figures = if args.contains(&"json") {
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339(v["now"].as_str().unwrap()).unwrap();
        let deadline =
            chrono::DateTime::parse_from_rfc3339(v["deadline"].as_str().unwrap()).unwrap();
        assert_eq!(v["remainingSeconds"], 6 * 3600, "{line}: {v}");
        assert!(
            (v["powerKw"].as_f64().unwrap() - 0.48).abs() < 1e-9,
            "{line}"
        );
        (deadline - now).num_hours()
    } else {
        let field = |name: &str| -> String {
            let l = out
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{line}: no {name} in {out}"));
            l[17..].split_whitespace().next().unwrap().to_string()
        };
        let t = |s: String| chrono::DateTime::parse_from_rfc3339(&s).unwrap();
        assert_eq!(field("Remaining"), "6h", "{line}");
        assert!(out.contains("= 0.480 kW"), "{line}: {out}");
        assert!(out.contains("Decision "), "{line}: {out}");
        (t(field("Deadline")) - t(field("Now"))).num_hours()
    };
    assert_eq!(figures, 30, "{line}: deadline 30 h after now\n{out}");
}

fn example_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    std::fs::copy(EXAMPLE, dir.path().join("examples/gpu-training.yaml")).unwrap();
    std::fs::copy(EXAMPLE, dir.path().join("caj.yaml")).unwrap();
    dir
}

#[test]
fn the_commands_in_plan_help_work_as_written() {
    let help = carbonshift()
        .args(["plan", "--help"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(help).unwrap();
    let examples = help.split("Examples:").nth(1).expect("an Examples section");
    let cmds = commands(examples);
    assert_eq!(cmds.len(), 4, "{help}");
    assert_eq!(cmds[0], "carbonshift plan -f examples/gpu-training.yaml");
    assert_eq!(
        cmds[3],
        "kubectl get caj my-job -o yaml | carbonshift plan -f -"
    );
    let dir = example_dir();
    for c in &cmds {
        run_as_written(c, dir.path());
    }
}

#[test]
fn an_empty_manifest_says_so() {
    carbonshift()
        .args(["plan", "-f", "-"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "-: no CarbonAwareJob in it (the manifest is empty)",
        ));
}

#[test]
fn the_command_in_the_example_header_works_as_written() {
    let cmds = commands(&example());
    assert_eq!(cmds, ["carbonshift plan -f examples/gpu-training.yaml"]);
    let dir = example_dir();
    run_as_written(&cmds[0], dir.path());
    // Without a region anywhere, the embedded source plans with DE and says so.
    carbonshift()
        .current_dir(dir.path())
        .args(["plan", "-f", "examples/gpu-training.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Region           DE (embedded"))
        .stdout(predicate::str::contains(
            "the manifest has no spec.region and no --region was given: planned with DE; pass --region ZONE for your grid",
        ));
}

/// Without a cluster there are no nodes and no operator: the message says what to pass.
#[test]
fn no_region_names_what_to_pass_not_nodes() {
    carbonshift()
        .args(["plan", "-f", EXAMPLE, "--forecast-provider", "electricitymaps"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no region: the manifest has no spec.region; pass --region ZONE (e.g. --region DE) or set spec.region in the manifest",
        ))
        .stderr(predicate::str::contains("node").not())
        .stderr(predicate::str::contains("operator").not());
}

/// Every duration field, huge or malformed: exit 2, the field's name, the bound.
#[test]
fn bad_durations_are_input_errors_naming_the_field() {
    let fields = [
        ("maxDelay: 24h ", "maxDelay"),
        ("expectedDuration: 6h ", "expectedDuration"),
        ("minRunDuration: 30m ", "minRunDuration"),
        ("minPauseDuration: 1h", "minPauseDuration"),
        ("checkpointOverhead: 5m ", "checkpointOverhead"),
    ];
    for (line, field) in fields {
        for bad in ["99999999999h", "99999999999999999999999s", "8785h"] {
            let f = manifest(&example().replace(line, &format!("{field}: {bad} ")));
            plan(f.path())
                .assert()
                .code(2)
                .stderr(predicate::str::contains(format!(
                    "spec.schedule.{field} must be at most 8784h (366 days), got {bad}"
                )));
        }
        let f = manifest(&example().replace(line, &format!("{field}: 2d ")));
        plan(f.path())
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
            "spec.schedule.{field}: \"2d\" is not a duration: days are not accepted in a manifest"
        )));
    }
    // Each within the cap, the deadline they make past it: named as maxDelay.
    let f = manifest(&example().replace("maxDelay: 24h ", "maxDelay: 8784h "));
    plan(f.path()).assert().code(2).stderr(predicate::str::contains(
        "spec.schedule.maxDelay 8784h plus expectedDuration 6h is 8790h, more than 8784h (366 days): \
         the job must finish within 366 days of its creation; shorten maxDelay to 8778h or less",
    ));
    let f = manifest(&example().replace("maxPauses: 6", "maxPauses: -3"));
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "spec.schedule.maxPauses must not be negative, got -3",
        ));
}

#[test]
fn a_deadline_out_of_range_names_the_field_and_the_range() {
    for bad in ["9999-12-31T23:59:59Z", "tomorrow"] {
        let f = manifest(&example().replace("maxDelay: 24h ", &format!("deadline: {bad} ")));
        plan(f.path())
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "spec.schedule.deadline \"{bad}\" (line 18) is not a time carbonshift accepts: \
                 write an RFC 3339 time (e.g. 2024-03-02T12:00:00Z) at most 366 days after the \
                 job's creation"
            )))
            .stderr(predicate::str::contains(
                "no later than 9999-12-30T22:00:00Z",
            ))
            .stderr(predicate::str::contains("Unix timestamp").not());
    }
    let f = manifest(&example().replace("maxDelay: 24h ", "deadline: 2025-03-04T06:00:00Z "));
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "spec.schedule.deadline 2025-03-04T06:00:00Z is more than 366 days (8784h) after the \
             job's creation at 2024-03-01T06:00:00Z: move the deadline to 2025-03-02T06:00:00Z or \
             earlier",
        ));
}

/// A field at the wrong indentation is a YAML structure problem with its line, not a
/// missing field.
#[test]
fn bad_indentation_is_a_structure_problem_with_the_line() {
    // maxDelay dedented into spec, the lines after it too: valid YAML, wrong level.
    let text: String = example()
        .lines()
        .filter(|l| !l.starts_with("    maxDelay:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.replacen("  power:\n", "  maxDelay: 24h\n  power:\n", 1);
    assert!(
        !text.contains("    maxDelay"),
        "the example's maxDelay line moved"
    );
    let f = manifest(&text);
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "YAML structure problem: `maxDelay` (line 23) is under spec, but it is a field of \
         spec.schedule: check its indentation",
        ));
    // expectedDuration moved into the template's metadata (which serde reads loosely):
    // missing from the schedule, and the line where it went.
    let text = example()
        .replace(
            "    expectedDuration: 6h       # GPU time the training needs\n",
            "",
        )
        .replacen(
            "        team: vision\n",
            "        team: vision\n      expectedDuration: 6h\n",
            1,
        );
    let f = manifest(&text);
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
        "YAML structure problem: spec.schedule.expectedDuration is missing (line 17), but line 30 \
         has `expectedDuration:` at another level: check its indentation (it belongs beside the \
         other fields of spec.schedule)",
    ));
    // One line dedented inside the schedule: not even valid YAML.
    let text = example().replacen("    expectedDuration: 6h", "  expectedDuration: 6h", 1);
    let f = manifest(&text);
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "YAML structure problem at line 20",
        ))
        .stderr(predicate::str::contains("check the indentation of line 20"))
        .stderr(predicate::str::contains("missing field").not());
}

/// Absurd power inputs are input errors, not overflows: a GPU count near i64::MAX times a
/// parallelism, a wattage past 1 GW, an integer too large for any type.
#[test]
fn absurd_power_is_an_input_error() {
    let huge_gpus = example()
        .replace("nvidia.com/gpu: 1", "nvidia.com/gpu: 9223372036854775807")
        .replace(
            "      backoffLimit: 3\n",
            "      backoffLimit: 3\n      parallelism: 2\n",
        );
    assert!(huge_gpus.contains("parallelism: 2"));
    let f = manifest(&huge_gpus);
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("spec.power: the job draws"))
        .stderr(predicate::str::contains("more than 1 GW"));
    let f = manifest(&example().replace("wattsPerGpu: 400 ", "wattsPerGpu: 1e308 "));
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("more than 1 GW"));
    let f =
        manifest(&example().replace("nvidia.com/gpu: 1", "nvidia.com/gpu: 99999999999999999999"));
    plan(f.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a CarbonAwareJob: spec.template.spec.template.spec.containers[0].resources.limits.nvidia.com/gpu: invalid type: integer `99999999999999999999`"))
        .stderr(predicate::str::contains("structure").not());
}
