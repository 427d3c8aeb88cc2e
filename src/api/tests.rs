//! CRD generation tests: the checked-in YAML is current, the schema is structural enough
//! for the API server, and the CEL rules are where users need them.

use super::*;
use kube::CustomResourceExt;

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/carbonshift.io_carbonawarejobs.yaml"
);

#[test]
fn every_checked_in_crd_is_current() {
    for crd in Crd::ALL {
        let file = crd.file_name();
        let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let generated = serde_yaml::to_string(&crd.definition()).unwrap();
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        let kind = &crd.definition().spec.names.kind;
        assert!(
            on_disk == generated,
            "crds/{file} is stale; regenerate it with:\n  cargo run -- crd --kind {kind} > crds/{file}"
        );
    }
    assert_eq!(
        Crd::ALL.map(Crd::file_name),
        [
            "carbonshift.io_carbonawarejobs.yaml",
            "carbonshift.io_carbonwindows.yaml",
            "carbonshift.io_carbonwindowparameters.yaml"
        ]
    );
}

#[test]
fn the_kueue_crds_are_named_and_scoped_as_documented() {
    let w = Crd::CarbonWindow.definition();
    assert_eq!(w.spec.scope, "Namespaced");
    assert_eq!(
        w.spec.names.short_names.as_deref(),
        Some(&["cw".to_string()][..])
    );
    let v = &w.spec.versions[0];
    assert!(v
        .subresources
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .is_some());
    let p = Crd::CarbonWindowParameters.definition();
    assert_eq!(p.spec.scope, "Cluster");
    assert_eq!(p.spec.names.plural, "carbonwindowparameters");
}

#[test]
fn checked_in_crd_is_current() {
    let generated = crd_yaml().unwrap();
    let on_disk = std::fs::read_to_string(CRD_PATH).unwrap_or_default();
    assert!(
        on_disk == generated,
        "crds/carbonshift.io_carbonawarejobs.yaml is stale; regenerate it with:\n  \
         cargo run -- crd > crds/carbonshift.io_carbonawarejobs.yaml"
    );
}

#[test]
fn names_match_the_public_contract() {
    let crd = CarbonAwareJob::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("carbonawarejobs.carbonshift.io")
    );
    assert_eq!(crd.spec.group, "carbonshift.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    let names = &crd.spec.names;
    assert_eq!(names.kind, "CarbonAwareJob");
    assert_eq!(names.plural, "carbonawarejobs");
    assert_eq!(names.short_names.as_deref(), Some(&["caj".to_string()][..]));
    assert_eq!(
        names.categories.as_deref(),
        Some(&["carbonshift".to_string()][..])
    );
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        cols,
        ["Phase", "Region", "Intensity", "Next", "Avoided(g)", "Age"]
    );
}

#[test]
fn schema_has_cel_rules_descriptions_and_stays_small() {
    let yaml = crd_yaml().unwrap();
    // The rules as the API server reads them (the YAML quotes and escapes some).
    let mut rules = Vec::new();
    collect_rules(
        &serde_json::to_value(CarbonAwareJob::crd()).unwrap(),
        &mut rules,
    );
    for rule in [
        "has(self.deadline) != has(self.maxDelay)",
        "duration(self.expectedDuration) + duration(self.maxDelay) <= duration('8784h')",
        "self <= timestamp('9999-12-30T22:00:00Z')",
        "self.strategy != 'Threshold' || has(self.thresholdGramsPerKWh)",
        "duration(self) > duration('0s')",
        "self.metadata.name.size() <= 63",
    ] {
        assert!(
            rules.iter().any(|r| r.contains(rule)),
            "missing CEL rule {rule}"
        );
    }
    assert!(yaml.contains("x-kubernetes-preserve-unknown-fields: true"));
    // Client-side apply stores the whole object in a 256 KiB annotation.
    assert!(yaml.len() < 128 * 1024, "CRD is {} bytes", yaml.len());
    // Every property documented, so `kubectl explain` helps. Walk the schema.
    let crd = CarbonAwareJob::crd();
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let mut undocumented = Vec::new();
    walk(
        &schema["openAPIV3Schema"]["properties"]["spec"],
        "spec",
        &mut undocumented,
    );
    walk(
        &schema["openAPIV3Schema"]["properties"]["status"],
        "status",
        &mut undocumented,
    );
    assert!(
        undocumented.is_empty(),
        "fields without description: {undocumented:?}"
    );
}

/// Every CEL rule calling `duration()` first checks DURATION_PATTERN on each string it
/// converts, so a malformed duration is reported once, by the pattern, and not also as a
/// "type conversion error" naming rules the manifest does not break (seen on a real API
/// server, tests/e2e_operator.rs "invalid manifests").
#[test]
fn duration_rules_check_the_pattern_first() {
    let crd = CarbonAwareJob::crd();
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let mut rules = Vec::new();
    collect_rules(&schema, &mut rules);
    let with_duration: Vec<&String> = rules.iter().filter(|r| r.contains("duration(")).collect();
    // maxDelay and expectedDuration: positive and capped; minRun/minPause/checkpoint
    // overhead: capped; the schedule: expectedDuration + maxDelay capped.
    assert_eq!(with_duration.len(), 8, "{rules:?}");
    for rule in with_duration {
        let converted: Vec<&str> = rule
            .match_indices("duration(")
            .map(|(i, _)| {
                let arg = &rule[i + "duration(".len()..];
                &arg[..arg.find(')').unwrap()]
            })
            .filter(|arg| !arg.starts_with('\''))
            .collect();
        assert!(!converted.is_empty(), "{rule}");
        for arg in converted {
            let guard = format!("!{arg}.matches('{DURATION_PATTERN}') || ");
            assert!(
                rule.contains(&guard),
                "rule {rule:?} converts {arg} without `{guard}` first"
            );
        }
    }
}

/// Every schedule duration is capped at MAX_SCHEDULE_SPAN_HOURS by a CEL rule that names
/// the limit, and so is `expectedDuration + maxDelay` (the deadline they make); `deadline`
/// cannot be (CEL cannot see creationTimestamp), its description says so.
#[test]
fn schedule_spans_are_capped_at_366_days() {
    let crd = CarbonAwareJob::crd();
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let schedule = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["schedule"];
    let cap = format!("duration(self) <= duration('{MAX_SCHEDULE_SPAN_HOURS}h')");
    assert!(cap.contains("8784h"), "{cap}");
    let fields = [
        "maxDelay",
        "expectedDuration",
        "minRunDuration",
        "minPauseDuration",
        "checkpointOverhead",
    ];
    for field in fields {
        let prop = &schedule["properties"][field];
        let rules = prop["x-kubernetes-validations"].as_array().unwrap();
        let rule = rules
            .iter()
            .find(|r| r["rule"].as_str().unwrap().contains(&cap))
            .unwrap_or_else(|| panic!("{field}: no rule {cap:?} in {rules:?}"));
        assert_eq!(
            rule["rule"],
            format!("!self.matches('{DURATION_PATTERN}') || {cap}")
        );
        assert_eq!(
            rule["message"],
            format!("{field} must be at most 8784h (366 days)")
        );
        assert!(
            prop["description"].as_str().unwrap().contains("8784h"),
            "{field}: the description names the cap"
        );
    }
    // The sum rule uses the same cap and the same message as the operator's check.
    let sum = format!(
        "duration(self.expectedDuration) + duration(self.maxDelay) <= duration('{MAX_SCHEDULE_SPAN_HOURS}h')"
    );
    let rules = schedule["x-kubernetes-validations"].as_array().unwrap();
    let rule = rules
        .iter()
        .find(|r| r["rule"].as_str().unwrap().contains(&sum))
        .unwrap_or_else(|| panic!("no rule {sum:?} in {rules:?}"));
    assert_eq!(rule["message"], MAX_DELAY_SUM_MESSAGE);
    let deadline = &schedule["properties"]["deadline"];
    assert!(deadline["description"]
        .as_str()
        .unwrap()
        .contains("366 days"));
    assert_eq!(
        deadline["x-kubernetes-validations"][0]["rule"],
        format!("self <= timestamp('{LATEST_DEADLINE}')")
    );
    // LATEST_DEADLINE is the last instant metav1.Time holds.
    let latest: Time = serde_json::from_value(serde_json::json!(LATEST_DEADLINE)).unwrap();
    assert!(serde_json::from_value::<Time>(serde_json::json!("9999-12-30T22:00:01Z")).is_err());
    assert_eq!(
        time::from_time(&latest).to_rfc3339(),
        "9999-12-30T22:00:00+00:00"
    );
    // The checked-in YAML (what users install) carries the rules too.
    let on_disk: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(CRD_PATH).unwrap()).unwrap();
    let mut rules = Vec::new();
    collect_rules(&on_disk, &mut rules);
    assert_eq!(
        rules.iter().filter(|r| r.contains(&cap)).count(),
        fields.len(),
        "regenerate crds/ (see checked_in_crd_is_current)"
    );
}

/// `kubectl explain` prints a description as it is: no line break may fall inside a
/// sentence (doc comments wrap; [`reflow_descriptions`] joins them), and the maxDelay one
/// states that it is a delay on top of expectedDuration.
#[test]
fn descriptions_read_as_whole_sentences() {
    let on_disk: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(CRD_PATH).unwrap()).unwrap();
    let mut broken = Vec::new();
    let mut count = 0;
    descriptions(&on_disk, "", &mut |path, d| {
        count += 1;
        let b = d.as_bytes();
        if b.windows(2)
            .any(|w| w[0] == b'\n' && w[1].is_ascii_lowercase())
        {
            broken.push(format!("{path}: {d:?}"));
        }
    });
    assert!(count > 50, "{count} descriptions");
    assert!(
        broken.is_empty(),
        "line breaks inside sentences: {broken:#?}"
    );
    let schedule = &on_disk["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["spec"]["properties"]["schedule"]["properties"];
    let max_delay = schedule["maxDelay"]["description"].as_str().unwrap();
    for want in [
        "How long the Job may wait beyond running at once",
        "creation time plus `expectedDuration` plus `maxDelay`",
        "within 30 hours of creation",
    ] {
        assert!(max_delay.contains(want), "{want:?} not in {max_delay:?}");
    }
    assert_eq!(
        reflow("Planning reserves this much\nrunning time.\n\nNew paragraph:\n- one\n- two"),
        "Planning reserves this much running time.\n\nNew paragraph:\n- one\n- two"
    );
}

fn descriptions(node: &serde_json::Value, path: &str, f: &mut dyn FnMut(&str, &str)) {
    match node {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("description", serde_json::Value::String(d)) => f(path, d),
                    _ => descriptions(v, &format!("{path}.{k}"), f),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| descriptions(v, path, f)),
        _ => {}
    }
}

/// Whatever DURATION_PATTERN accepts is within the API server's duration range (its CEL
/// converts to Go's `time.Duration`: +-292 years; a real API server refused `9999999h` with
/// a type conversion error), so `duration()` never fails on a matching string.
#[test]
fn duration_pattern_stays_within_cels_range() {
    const GO_DURATION_MAX_SECS: i64 = i64::MAX / 1_000_000_000;
    const CEL_MAX_SECS: i64 = GO_DURATION_MAX_SECS;
    let largest = "999999h9999999m999999999s";
    assert!(
        regex_matches(largest),
        "{largest} matches {DURATION_PATTERN}"
    );
    let secs = crate::duration::parse_secs(largest).unwrap();
    assert!(secs < CEL_MAX_SECS, "{largest} = {secs} s");
    assert!(largest.len() <= 32, "within the fields' maxLength");
    for unit in ['h', 'm', 's'] {
        assert!(
            DURATION_PATTERN.contains(&format!("}}{unit})?")),
            "digits before {unit} are bounded"
        );
    }
    assert!(
        !DURATION_PATTERN.contains("]+"),
        "no unbounded repetition: {DURATION_PATTERN}"
    );
}

fn collect_rules(node: &serde_json::Value, out: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(vs)) = map.get("x-kubernetes-validations") {
                out.extend(
                    vs.iter()
                        .filter_map(|v| v["rule"].as_str().map(str::to_string)),
                );
            }
            map.values().for_each(|v| collect_rules(v, out));
        }
        serde_json::Value::Array(vs) => vs.iter().for_each(|v| collect_rules(v, out)),
        _ => {}
    }
}

fn walk(node: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if node.get("description").is_none() {
        out.push(path.to_string());
    }
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            // Inside k8s-openapi's JobSpec, descriptions come from upstream; check ours.
            if path.starts_with("spec.template.spec") {
                continue;
            }
            walk(v, &format!("{path}.{k}"), out);
        }
    }
}

#[test]
fn example_manifest_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gpu-training.yaml"
    ))
    .unwrap();
    let caj: CarbonAwareJob = serde_yaml::from_str(&text).unwrap();
    assert_eq!(caj.spec.schedule.strategy, StrategyName::PauseAndResume);
    assert_eq!(caj.spec.schedule.max_delay.as_deref(), Some("24h"));
}

/// `DURATION_PATTERN`'s three groups, checked by hand (no regex engine in the crate).
fn regex_matches(v: &str) -> bool {
    let mut rest = v;
    for (unit, max) in [('h', 6), ('m', 7), ('s', 9)] {
        if let Some(i) = rest.find(unit) {
            let digits = &rest[..i];
            if digits.is_empty()
                || digits.len() > max
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return false;
            }
            rest = &rest[i + 1..];
        }
    }
    rest.is_empty()
        && DURATION_PATTERN.contains("{1,6}h")
        && DURATION_PATTERN.contains("{1,7}m")
        && DURATION_PATTERN.contains("{1,9}s")
}
