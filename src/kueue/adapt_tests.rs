//! A Workload through the operator's reconcile step: the ledger, the plan and the check's
//! state, step by step on a pinned clock.

use chrono::TimeDelta;
use serde_json::json;

use super::*;
use crate::api::params::CarbonWindowParametersSpec;
use crate::api::StrategyName;
use crate::controller::fixtures::{at, build_at, default_margin, now, series};
use crate::controller::intensity::Intensities;
use crate::kueue::check::{decide, Action, HELD_UNTIL};
use crate::kueue::workload;

/// A Kueue v0.17 Workload of a Job of 4 pods with 2 GPUs each: quota reserved, our
/// check Pending, admitted or not, finished with `finished` as reason.
fn wl(admitted: bool, finished: Option<&str>) -> Workload {
    let mut conditions = vec![
        json!({"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved",
        "message": "", "lastTransitionTime": "2024-03-01T00:00:00Z"}),
    ];
    if admitted {
        conditions.push(
            json!({"type": "Admitted", "status": "True", "reason": "Admitted",
            "message": "", "lastTransitionTime": "2024-03-01T03:00:00Z"}),
        );
    }
    if let Some(reason) = finished {
        conditions.push(
            json!({"type": "Finished", "status": "True", "reason": reason,
            "message": "Job finished", "lastTransitionTime": "2024-03-01T05:00:00Z"}),
        );
    }
    serde_json::from_value(json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {"name": "job-train-1a2b3", "namespace": "ml", "uid": "wl-uid"},
        "spec": {"podSets": [{"name": "main", "count": 4, "template": {"spec": {"containers": [
            {"name": "t", "image": "x", "resources": {"requests": {"nvidia.com/gpu": "2"}}}]}}}]},
        "status": {
            "conditions": conditions,
            "admissionChecks": [{"name": "carbon-window", "state": "Pending", "message": "",
                "lastTransitionTime": "2024-03-01T00:00:00Z"}]
        }
    }))
    .unwrap()
}

fn params() -> CarbonWindowParametersSpec {
    CarbonWindowParametersSpec {
        strategy: Some(StrategyName::FlexibleStart),
        max_delay: Some("12h".into()),
        region: Some("DE".into()),
        ..Default::default()
    }
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn spec_of(a: &[(&str, &str)]) -> Result<CarbonWindowSpec, InvalidSpec> {
    let p = params();
    let a = annotations(a);
    window_spec(
        &wl(false, None),
        "carbon-window",
        Some(Defaults {
            name: "gpu-defaults",
            spec: &p,
        }),
        JobObject {
            reference: "Job/train",
            annotations: &a,
            created: now(),
        },
    )
}

fn window(spec: CarbonWindowSpec) -> CarbonWindow {
    let mut w = CarbonWindow::new("job-train-1a2b3", spec);
    w.metadata.namespace = Some("ml".into());
    w.metadata.uid = Some("cw-uid".into());
    w.metadata.generation = Some(1);
    w
}

#[test]
fn the_window_takes_the_parameters_the_annotations_and_the_pod_sets() {
    let s = spec_of(&[
        ("carbonshift.io/expected-duration", "2h"),
        ("carbonshift.io/strategy", "PauseAndResume"),
    ])
    .unwrap();
    assert_eq!(s.workload, "job-train-1a2b3");
    assert_eq!(s.admission_check, "carbon-window");
    assert_eq!(s.job, "Job/train");
    assert_eq!(time::from_time(&s.created), now());
    assert_eq!(s.pods, 4);
    assert_eq!(s.schedule.strategy, StrategyName::PauseAndResume);
    assert_eq!(s.schedule.expected_duration, "2h");
    assert_eq!(s.schedule.max_delay.as_deref(), Some("12h"));
    assert_eq!(s.region.as_deref(), Some("DE"));
    // 4 pods x 2 GPUs, the default wattage.
    assert_eq!(s.power.gpus, Some(8));
    assert_eq!(s.power.watts, None);
    let caj = as_carbon_aware_job(&window(s));
    let v = crate::controller::validate::validate(&caj, at(10)).unwrap();
    assert_eq!(v.expected_secs, 7200);
    assert_eq!(v.deadline, now() + TimeDelta::hours(14));
    assert!((v.power.kw() - 8.0 * 0.4 * 1.2).abs() < 1e-12);
    assert_eq!(v.created, now());
}

#[test]
fn a_bad_annotation_is_refused_by_its_name() {
    let e = spec_of(&[("carbonshift.io/expected-duration", "soon")]).unwrap_err();
    assert!(
        e.message.contains("carbonshift.io/expected-duration"),
        "{}",
        e.message
    );
    let e = spec_of(&[
        ("carbonshift.io/expected-duration", "2h"),
        ("carbonshift.io/max-dalay", "1h"),
    ])
    .unwrap_err();
    assert!(
        e.message.contains("did you mean carbonshift.io/max-delay"),
        "{}",
        e.message
    );
}

#[test]
fn the_workload_is_suspended_until_admitted_and_finishes_with_kueue() {
    let w = window(spec_of(&[("carbonshift.io/expected-duration", "2h")]).unwrap());
    let waiting = as_child(&wl(false, None), &w, 4);
    assert_eq!(waiting.spec.as_ref().unwrap().suspend, Some(true));
    // Pods of a workload not admitted (an eviction under way) do no work.
    assert_eq!(waiting.status.as_ref().unwrap().ready, Some(0));
    let running = as_child(&wl(true, None), &w, 3);
    assert_eq!(running.spec.as_ref().unwrap().suspend, Some(false));
    assert_eq!(running.status.as_ref().unwrap().ready, Some(3));
    let done = as_child(&wl(true, Some("Succeeded")), &w, 0);
    let c = &done.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert_eq!((c.type_.as_str(), c.status.as_str()), ("Complete", "True"));
    let failed = as_child(&wl(true, Some("Failed")), &w, 0);
    let c = &failed.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert_eq!(c.type_, "Failed");
    assert_eq!(pods(&wl(false, None)), 4);
}

/// Dirty (500 g) for the next 3 h, then clean (100 g).
fn dirty_then_clean() -> Intensities {
    let mut future = vec![500.0; 3];
    future.extend([100.0; 20]);
    Intensities::live(series(300.0, &future), "static".into())
}

/// One step at `t` of `w` with the Workload `wl` and `ready` pods: the outcome, and `w`
/// with the status written.
fn step(w: &mut CarbonWindow, wl: &Workload, ready: i32, t: DateTime<Utc>) -> Outcome {
    step_with(w, wl, ready, t, &dirty_then_clean())
}

fn step_with(
    w: &mut CarbonWindow,
    wl: &Workload,
    ready: i32,
    t: DateTime<Utc>,
    i: &Intensities,
) -> Outcome {
    let caj = as_carbon_aware_job(w);
    let child = as_child(wl, w, ready);
    let out = build_at(&caj, Some(&child), Ok(i), t, default_margin());
    w.status = Some(out.status.clone());
    out
}

#[test]
fn flexible_start_holds_no_quota_until_the_clean_window_then_accounts_ready_pods() {
    let mut w = window(spec_of(&[("carbonshift.io/expected-duration", "2h")]).unwrap());
    // Quota reserved at once: the plan waits 3 h, so the Workload is held (deactivated,
    // which makes Kueue release the quota) until 03:00.
    let out = step(&mut w, &wl(false, None), 0, now());
    assert_eq!(out.status.phase, Some(Phase::Waiting));
    let want = wanted(&out, now()).unwrap();
    let view = workload::view(&wl(false, None), "carbon-window");
    let Some(Action::Hold { until, message }) = decide(&view, &want, now()) else {
        panic!("{:?}", decide(&view, &want, now()));
    };
    assert_eq!(until, at(180));
    assert!(
        message.contains("planned start at 2024-03-01T03:00:00Z"),
        "{message}"
    );
    // Held: nothing to do a minute before 03:00, released at 03:00.
    let mut inactive = wl(false, None);
    inactive.spec.active = Some(false);
    inactive
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(HELD_UNTIL.into(), "2024-03-01T03:00:00Z".into());
    let held = workload::view(&inactive, "carbon-window");
    let out = step(&mut w, &inactive, 0, at(179));
    assert_eq!(
        decide(&held, &wanted(&out, at(179)).unwrap(), at(179)),
        None
    );
    let out = step(&mut w, &inactive, 0, at(180));
    assert_eq!(out.status.phase, Some(Phase::Running));
    let run = wanted(&out, at(180)).unwrap();
    assert_eq!(decide(&held, &run, at(180)), Some(Action::Release));
    // Queued again with quota reserved: admitted.
    assert!(matches!(
        decide(&view, &run, at(180)),
        Some(Action::Admit { .. })
    ));
    // Admitted: 4 pods Ready 10 min later, for an hour.
    step(&mut w, &wl(true, None), 0, at(181));
    step(&mut w, &wl(true, None), 4, at(190));
    let out = step(&mut w, &wl(true, None), 4, at(250));
    assert_eq!(out.status.runtime_seconds, 3600);
    assert_eq!(out.status.waiting_for_pods_seconds, 600);
    // 3.84 kW for an hour at 100 g/kWh; running at once would have been 500 g.
    assert!((out.status.energy_kwh - 3.84).abs() < 1e-9);
    assert!((out.status.emissions_grams - 384.0).abs() < 1e-6);
    assert!((out.status.baseline_grams - 1920.0).abs() < 1e-6);
    // Kueue marks it Finished at 05:00 (1 h 50 min of Ready pods in all).
    let out = step(&mut w, &wl(true, Some("Succeeded")), 0, at(301));
    assert_eq!(out.status.phase, Some(Phase::Succeeded));
    assert_eq!(out.status.runtime_seconds, 6600);
    assert_eq!(out.finished, Some(Phase::Succeeded));
    assert_eq!(wanted(&out, at(301)), None);
}

#[test]
fn pause_and_resume_evicts_at_the_planned_pause_and_admits_again() {
    let mut w = window(
        spec_of(&[
            ("carbonshift.io/expected-duration", "2h"),
            ("carbonshift.io/strategy", "PauseAndResume"),
            ("carbonshift.io/max-delay", "3h"),
        ])
        .unwrap(),
    );
    // 50 g now, 500 g for two hours, 100 g at 03:00, 300 g after: run an hour, pause for
    // two, run the second hour at 03:00.
    let i = Intensities::live(series(300.0, &[50.0, 500.0, 500.0, 100.0]), "static".into());
    let out = step_with(&mut w, &wl(false, None), 0, now(), &i);
    assert_eq!(out.status.phase, Some(Phase::Running));
    let reserved = workload::view(&wl(false, None), "carbon-window");
    let a = decide(&reserved, &wanted(&out, now()).unwrap(), now());
    assert!(matches!(a, Some(Action::Admit { .. })), "{a:?}");
    step_with(&mut w, &wl(true, None), 4, at(1), &i);
    // The planned pause at 01:00: held until 03:00, which evicts the admitted workload.
    let mut admitted = wl(true, None);
    admitted.status.as_mut().unwrap().admission_checks[0].state = "Ready".into();
    let out = step_with(&mut w, &admitted, 4, at(60), &i);
    assert_eq!(out.status.phase, Some(Phase::Paused));
    assert_eq!(out.status.pauses, 1);
    assert_eq!(out.status.runtime_seconds, 59 * 60);
    let view = workload::view(&admitted, "carbon-window");
    let a = decide(&view, &wanted(&out, at(60)).unwrap(), at(60));
    assert!(
        matches!(a, Some(Action::Hold { until, .. }) if until == at(180)),
        "{a:?}"
    );
    // Evicted, released and requeued at 03:00 with its quota back: admitted again.
    step_with(&mut w, &wl(false, None), 0, at(61), &i);
    let out = step_with(&mut w, &wl(false, None), 0, at(180), &i);
    assert_eq!(out.status.phase, Some(Phase::Running));
    let a = decide(&reserved, &wanted(&out, at(180)).unwrap(), at(180));
    assert!(matches!(a, Some(Action::Admit { .. })), "{a:?}");
    // No runtime accrued while evicted.
    assert_eq!(out.status.runtime_seconds, 59 * 60);
}

#[test]
fn a_region_the_provider_refuses_is_held_with_the_fix() {
    let mut w = window(spec_of(&[("carbonshift.io/expected-duration", "2h")]).unwrap());
    let caj = as_carbon_aware_job(&w);
    let child = as_child(&wl(false, None), &w, 0);
    let out = crate::controller::build::build(crate::controller::build::Observed {
        caj: &caj,
        child: Some(&child),
        region: Err("no region: set carbonshift.io/region"),
        intensities: Err("no region"),
        now: now(),
        persist_every: TimeDelta::minutes(5),
        deadline_margin: default_margin(),
        kueue: false,
    });
    w.status = Some(out.status.clone());
    match wanted(&out, now()).unwrap() {
        Wanted::Invalid { message } => {
            assert_eq!(message, "carbonshift: no region: set carbonshift.io/region")
        }
        other => panic!("{other:?}"),
    }
}
