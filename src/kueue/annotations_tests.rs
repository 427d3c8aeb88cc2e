use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::*;
use crate::controller::validate::DeadlineFrom;
use crate::plan::{Constraints, Strategy};

fn created() -> DateTime<Utc> {
    timefmt::parse("2024-03-01T00:00:00Z").unwrap()
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn params() -> CarbonWindowParametersSpec {
    CarbonWindowParametersSpec {
        strategy: Some(StrategyName::PauseAndResume),
        max_delay: Some("24h".into()),
        expected_duration: Some("6h".into()),
        min_run_duration: Some("30m".into()),
        max_pauses: Some(4),
        region: Some("DE".into()),
        ..Default::default()
    }
}

fn defaults(spec: &CarbonWindowParametersSpec) -> Option<Defaults<'_>> {
    Some(Defaults {
        name: "gpu-defaults",
        spec,
    })
}

fn error(d: Option<Defaults<'_>>, a: &[(&str, &str)]) -> String {
    let ws = workload_schedule(d, &annotations(a));
    match ws.and_then(|ws| ws.validate(created())) {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.message,
    }
}

#[test]
fn the_parameters_alone_make_the_schedule() {
    let p = params();
    let ws = workload_schedule(defaults(&p), &BTreeMap::new()).unwrap();
    let v = ws.validate(created()).unwrap();
    assert_eq!(v.strategy, Strategy::PauseAndResume);
    assert_eq!(v.expected_secs, 6 * 3600);
    assert_eq!(v.deadline, created() + TimeDelta::hours(30));
    assert_eq!(v.deadline_from, DeadlineFrom::MaxDelay { secs: 24 * 3600 });
    assert_eq!(
        v.constraints,
        Constraints {
            min_run_secs: 1800,
            min_pause_secs: 0,
            max_pauses: Some(4),
            checkpoint_overhead_secs: 0,
        }
    );
    assert_eq!(ws.region.as_deref(), Some("DE"));
}

#[test]
fn annotations_override_each_parameter() {
    let p = params();
    let a = annotations(&[
        (STRATEGY, "flexible-start"),
        (MAX_DELAY, "2h"),
        (EXPECTED_DURATION, "1h30m"),
        (MIN_RUN_DURATION, "10m"),
        (MIN_PAUSE_DURATION, "20m"),
        (MAX_PAUSES, "0"),
        (CHECKPOINT_OVERHEAD, "90s"),
        (REGION, " eu-central-1 "),
    ]);
    let ws = workload_schedule(defaults(&p), &a).unwrap();
    let v = ws.validate(created()).unwrap();
    assert_eq!(v.strategy, Strategy::FlexibleStart);
    assert_eq!(v.expected_secs, 5400);
    assert_eq!(v.deadline, created() + TimeDelta::seconds(5400 + 7200));
    assert_eq!(
        v.constraints,
        Constraints {
            min_run_secs: 600,
            min_pause_secs: 1200,
            max_pauses: Some(0),
            checkpoint_overhead_secs: 90,
        }
    );
    assert_eq!(ws.region.as_deref(), Some("eu-central-1"));
}

#[test]
fn a_deadline_annotation_replaces_the_default_delay() {
    let p = params();
    let ws = workload_schedule(
        defaults(&p),
        &annotations(&[(DEADLINE, "2024-03-01T12:00:00Z")]),
    )
    .unwrap();
    let v = ws.validate(created()).unwrap();
    assert_eq!(v.deadline, created() + TimeDelta::hours(12));
    assert_eq!(v.deadline_from, DeadlineFrom::Deadline);
}

#[test]
fn threshold_comes_from_its_annotation() {
    let a = annotations(&[
        (STRATEGY, "Threshold"),
        (THRESHOLD, "150"),
        (EXPECTED_DURATION, "1h"),
        (MAX_DELAY, "3h"),
    ]);
    let v = workload_schedule(None, &a)
        .unwrap()
        .validate(created())
        .unwrap();
    assert_eq!(
        v.strategy,
        Strategy::Threshold {
            max_gco2_per_kwh: 150.0
        }
    );
}

#[test]
fn each_bad_value_names_the_annotation_and_the_fix() {
    let p = params();
    let cases: [(&[(&str, &str)], &str); 9] = [
        (
            &[(MAX_DELAY, "1d")],
            "annotation carbonshift.io/max-delay: \"1d\" is not a duration: days are not accepted in a manifest; write hours, minutes and seconds, largest first, e.g. 6h, 1h30m or 90s",
        ),
        (
            &[(EXPECTED_DURATION, "0s")],
            "annotation carbonshift.io/expected-duration must be positive, e.g. 6h",
        ),
        (
            &[(MAX_DELAY, "8784h")],
            "annotation carbonshift.io/max-delay 8784h plus CarbonWindowParameters gpu-defaults spec.expectedDuration 6h is 8790h, more than 8784h (366 days): the job must finish within 366 days of its creation; shorten annotation carbonshift.io/max-delay to 8778h or less",
        ),
        (
            &[(MAX_PAUSES, "-1")],
            "annotation carbonshift.io/max-pauses: \"-1\" is not a whole number of pauses (0 or more), e.g. 3",
        ),
        (
            &[(STRATEGY, "greedy")],
            "annotation carbonshift.io/strategy: \"greedy\" is not a strategy: write RunNow, FlexibleStart, PauseAndResume or Threshold",
        ),
        (
            &[(DEADLINE, "tomorrow")],
            "annotation carbonshift.io/deadline: timestamp \"tomorrow\" is not RFC 3339 (e.g. 2024-03-01T10:00:00Z)",
        ),
        (
            &[(DEADLINE, "2024-03-01T12:00:00Z"), (MAX_DELAY, "2h")],
            "set only one of annotation carbonshift.io/max-delay and annotation carbonshift.io/deadline",
        ),
        (
            &[(STRATEGY, "Threshold")],
            "strategy Threshold needs a positive annotation carbonshift.io/threshold-grams-per-kwh, e.g. 200",
        ),
        (
            &[(REGION, "  ")],
            "annotation carbonshift.io/region is empty: give a grid zone or cloud region, e.g. DE or eu-central-1",
        ),
    ];
    for (a, want) in cases {
        assert_eq!(error(defaults(&p), a), want, "{a:?}");
    }
}

#[test]
fn a_bad_parameter_names_the_parameters_object() {
    let p = CarbonWindowParametersSpec {
        min_pause_duration: Some("soon".into()),
        ..params()
    };
    assert_eq!(
        error(defaults(&p), &[]),
        "CarbonWindowParameters gpu-defaults spec.minPauseDuration: \"soon\" is not a duration: a unit without a number; write hours, minutes and seconds, largest first, e.g. 6h, 1h30m or 90s"
    );
}

#[test]
fn what_is_missing_says_where_to_give_it() {
    assert_eq!(
        error(None, &[(MAX_DELAY, "2h")]),
        "the workload has no expected duration: set annotation carbonshift.io/expected-duration on the job (the AdmissionCheck references no CarbonWindowParameters), e.g. 6h"
    );
    let p = CarbonWindowParametersSpec {
        max_delay: None,
        ..params()
    };
    assert_eq!(
        error(defaults(&p), &[]),
        "the workload has no deadline: set annotation carbonshift.io/max-delay on the job, or CarbonWindowParameters gpu-defaults spec.maxDelay, e.g. 24h, or set annotation carbonshift.io/deadline (RFC 3339)"
    );
}

#[test]
fn a_misspelt_annotation_is_refused_with_the_nearest_name() {
    let p = params();
    let e = error(defaults(&p), &[("carbonshift.io/max-delays", "2h")]);
    assert!(
        e.starts_with(
            "annotation carbonshift.io/max-delays is not one carbonshift reads: did you mean carbonshift.io/max-delay?"
        ),
        "{e}"
    );
    // Other prefixes and the operator's own annotations are not settings.
    let ws = workload_schedule(
        defaults(&p),
        &annotations(&[("example.com/max-delay", "x"), ("carbonshift.io/job", "j")]),
    );
    assert!(ws.is_ok());
}

#[test]
fn the_deadline_hint_names_the_annotation() {
    let a = annotations(&[(EXPECTED_DURATION, "2h"), (MAX_DELAY, "1h")]);
    let ws = workload_schedule(None, &a).unwrap();
    let v = ws.validate(created()).unwrap();
    let spec = crate::controller::validate::ValidSpec {
        strategy: v.strategy,
        constraints: v.constraints,
        expected_secs: v.expected_secs,
        created: created(),
        deadline: v.deadline,
        deadline_from: v.deadline_from,
        power: crate::accounting::PowerModel::total(1000.0, 1.0).unwrap(),
        power_source: String::new(),
        job_spec: Default::default(),
        names: ws.names.clone(),
    };
    assert_eq!(
        spec.extend_deadline_hint(created() + TimeDelta::hours(4)),
        "Raise annotation carbonshift.io/max-delay to 2h or more"
    );
    assert_eq!(
        spec.deadline_text(),
        "deadline 2024-03-01T03:00:00Z (creation + annotation carbonshift.io/expected-duration 2h + annotation carbonshift.io/max-delay 1h)"
    );
}

proptest! {
    /// Whatever the annotations say, the result is a schedule or a message naming an
    /// annotation or the parameters: never a panic, never a silent default.
    #[test]
    fn any_annotation_value_is_accepted_or_named(
        key in prop::sample::select(ALL.to_vec()),
        value in prop_oneof![
            "[0-9]{1,12}[hms]",
            "-?[0-9]{0,20}",
            "[ -~]{0,24}",
            Just("9999-12-31T23:59:59Z".to_string()),
        ],
    ) {
        let p = params();
        let a = annotations(&[(key, value.as_str())]);
        match workload_schedule(defaults(&p), &a).and_then(|ws| ws.validate(created())) {
            Ok(v) => prop_assert!(v.expected_secs > 0),
            Err(e) => prop_assert!(
                e.message.contains(key) || e.message.contains("CarbonWindowParameters"),
                "{}", e.message
            ),
        }
    }
}
