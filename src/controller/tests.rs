//! Reconcile tests against a mocked API server: the exact API calls of each transition
//! (create, start/resume, pause, complete, fail, deadline guard, invalid spec, deleted
//! child, nothing-to-do), plus pure tests of the build step's accounting.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::build::build;
use super::fixtures::*;
use super::intensity::Intensities;
use super::reconcile;
use crate::api::{time, CarbonAwareJob, CarbonAwareJobStatus, Phase};
use crate::series::Series;

/// Runs one reconcile while `script` plays the API server; returns the requeue action.
async fn run<F, Fut>(
    c: &CarbonAwareJob,
    ctx: Arc<super::Context>,
    api: ApiServer,
    script: F,
) -> kube::runtime::controller::Action
where
    F: FnOnce(ApiServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_result(c, ctx, api, script)
        .await
        .expect("reconcile failed")
}

/// [`run`], returning what the reconcile returned.
async fn run_result<F, Fut>(
    c: &CarbonAwareJob,
    ctx: Arc<super::Context>,
    api: ApiServer,
    script: F,
) -> Result<kube::runtime::controller::Action, super::Error>
where
    F: FnOnce(ApiServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let task = tokio::spawn(reconcile(Arc::new(c.clone()), ctx));
    script(api).await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("reconcile did not finish: an unexpected API request?")
        .expect("reconcile panicked")
}

fn running_status(c: &CarbonAwareJob, since_mins: i64, runtime: i64) -> CarbonAwareJobStatus {
    CarbonAwareJobStatus {
        phase: Some(Phase::Running),
        job_name: Some("train".into()),
        region: Some("DE".into()),
        running_since: Some(time::to_time(at(since_mins))),
        start_time: Some(time::to_time(at(since_mins))),
        last_accounted_time: Some(time::to_time(at(-1))),
        runtime_seconds: runtime,
        deadline: c
            .spec
            .schedule
            .max_delay
            .as_ref()
            .map(|_| time::to_time(at(-10) + TimeDelta::hours(24))),
        ..CarbonAwareJobStatus::default()
    }
}

#[tokio::test]
async fn create_applies_a_suspended_child_and_waits_for_the_clean_window() {
    // Dirty for 6 h, then clean.
    let s = series(
        500.0,
        &[500.0, 500.0, 500.0, 500.0, 500.0, 500.0, 50.0, 50.0, 50.0],
    );
    let (ctx, api) = context(s, 0);
    let c = caj("PauseAndResume", "2h", json!({}));
    let action = run(&c, ctx.clone(), api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(None).await;
            api.get_caj(&c).await;
            let job = api.apply_child().await;
            assert_eq!(job["apiVersion"], "batch/v1");
            assert_eq!(
                job["metadata"]["finalizers"],
                json!(["carbonshift.io/cleanup"])
            );
            assert_eq!(job["kind"], "Job");
            assert_eq!(job["spec"]["suspend"], true);
            assert_eq!(
                job["spec"]["template"]["spec"]["containers"][0]["image"],
                "trainer:1"
            );
            assert_owned(&job, &c);
            let st = api.apply_status(&c).await;
            assert_eq!(st.phase, Some(Phase::Waiting));
            assert_eq!(st.job_name.as_deref(), Some("train"));
            assert_eq!(st.region.as_deref(), Some("DE"));
            assert_eq!(st.forecast_source.as_deref(), Some("static"));
            assert_eq!(st.next_action.as_deref(), Some("Run"));
            assert_eq!(st.next_transition_time, Some(time::to_time(at(6 * 60))));
            assert_eq!(st.current_intensity, Some(500.0));
            assert_eq!(st.observed_generation, Some(1));
            // The run-now baseline covers the same runtime as the job: none yet.
            assert_eq!(st.baseline_grams, 0.0);
            assert_eq!(st.emissions_grams, 0.0);
            assert_eq!(st.avoided_grams, 0.0);
            assert_eq!(st.last_accounted_time, Some(time::to_time(now())));
            assert_condition(&st, "Ready", ("True", "Scheduled"), &[]);
            assert_condition(&st, "Running", ("False", "WaitingForCleanerWindow"), &[]);
        }
    })
    .await;
    // Next look: the persist interval (5 min) comes before the planned start (6 h).
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(300))
    );
}

#[tokio::test]
async fn start_unsuspends_the_child_and_records_the_transition() {
    let s = series(500.0, &[50.0, 50.0, 50.0, 500.0]);
    let (ctx, api) = context(s, 0);
    let base = caj("PauseAndResume", "2h", json!({}));
    let c = with_status(base.clone(), waiting_status(-1));
    let metrics = ctx.metrics.clone();
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            let st = api.flip(&c, false).await;
            assert_eq!(st.phase, Some(Phase::Running));
            assert_eq!(st.running_since, Some(time::to_time(now())));
            assert_eq!(st.start_time, Some(time::to_time(now())));
            // 2 h of work fit in the 3 clean hours: run to completion, no planned pause.
            assert_eq!(st.next_action, None);
            assert_eq!(st.planned_end, Some(time::to_time(at(120))));
            let note = api.expect_event("Normal", "Started").await;
            assert!(note.contains("50 gCO2eq/kWh"), "{note}");
        }
    })
    .await;
    assert_eq!(metrics.transitions.with_label_values(&["start"]).get(), 1);
}

#[tokio::test]
async fn pause_suspends_the_child_and_accrues_the_run() {
    // Clean hour is over: dirty for 4 h, clean after; 1 h of 2 h done.
    let s = series(50.0, &[500.0, 500.0, 500.0, 500.0, 50.0, 50.0]);
    let (ctx, api) = context(s, 0);
    let base = caj("PauseAndResume", "2h", json!({}));
    let c = with_status(base.clone(), running_status(&base, -60, 3540));
    let metrics = ctx.metrics.clone();
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            let st = api.flip(&c, true).await;
            assert_eq!(st.phase, Some(Phase::Paused));
            assert_eq!(st.pauses, 1);
            assert_eq!(st.running_since, None);
            assert_eq!(st.paused_since, Some(time::to_time(now())));
            // The last minute of running (at 50 g/kWh, 1 kW) is accounted.
            assert_eq!(st.runtime_seconds, 3600);
            assert!(
                (st.emissions_grams - 50.0 / 60.0).abs() < 1e-6,
                "{}",
                st.emissions_grams
            );
            assert_eq!(st.next_action.as_deref(), Some("Run"));
            api.expect_event("Normal", "Paused").await;
        }
    })
    .await;
    assert_eq!(metrics.transitions.with_label_values(&["pause"]).get(), 1);
}

#[tokio::test]
async fn completion_marks_succeeded_and_counts_once() {
    let s = series(100.0, &[100.0; 4]);
    let (ctx, api) = context(s, 0);
    let base = caj("RunNow", "1h", json!({}));
    let mut st = running_status(&base, -61, 1860);
    st.last_accounted_time = Some(time::to_time(at(-30)));
    let c = with_status(base.clone(), st);
    let metrics = ctx.metrics.clone();
    run(&c, ctx.clone(), api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(Some(&child(&c, false, Some("Complete"))))
                .await;
            let st = api.apply_status(&c).await;
            assert_eq!(st.phase, Some(Phase::Succeeded));
            assert_eq!(st.completion_time, Some(time::to_time(at(-1))));
            assert_eq!(st.running_since, None);
            // Accrued up to the completion time, not to now: 29 min at 100 g/kWh, 1 kW.
            assert_eq!(st.runtime_seconds, 1860 + 29 * 60);
            assert!(
                (st.emissions_grams - 2900.0 / 60.0).abs() < 1e-6,
                "{}",
                st.emissions_grams
            );
            let note = api.expect_event("Normal", "Succeeded").await;
            assert!(note.contains("avoided"), "{note}");
            // Only once the outcome is recorded (and counted) may the child Job go.
            api.release_finalizer().await;
        }
    })
    .await;
    assert!(metrics.emissions.with_label_values(&["ml", "DE"]).get() > 0.0);
    let counted = metrics.emissions.with_label_values(&["ml", "DE"]).get();

    // Reconciling the finished object again writes nothing and counts nothing.
    let (ctx2, api2) = context(series(100.0, &[100.0]), 5);
    let ctx2 = Arc::new(super::Context {
        metrics: metrics.clone(),
        ..Arc::try_unwrap(ctx2).ok().unwrap()
    });
    let mut done = c.clone();
    if let Some(st) = done.status.as_mut() {
        st.phase = Some(Phase::Succeeded);
        st.running_since = None;
        st.observed_generation = Some(1);
    }
    let action = run(&done, ctx2, api2, |_| async {}).await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert_eq!(
        metrics.emissions.with_label_values(&["ml", "DE"]).get(),
        counted
    );
}

/// A completion is counted once its status is written, even when releasing the child's
/// finalizer then fails: the retry sees a finished job and counts nothing, so counting
/// after the release would lose the job from the totals.
#[tokio::test]
async fn a_completion_counts_even_if_the_finalizer_release_fails() {
    let (ctx, api) = context(series(100.0, &[100.0; 4]), 0);
    let base = caj("RunNow", "1h", json!({}));
    let mut st = running_status(&base, -61, 1860);
    st.last_accounted_time = Some(time::to_time(at(-30)));
    let c = with_status(base, st);
    let metrics = ctx.metrics.clone();
    let mut written = None;
    let result = run_result(&c, ctx, api, |mut api| {
        let c = c.clone();
        let written = &mut written;
        async move {
            api.get_child(Some(&child(&c, false, Some("Complete"))))
                .await;
            *written = Some(api.apply_status(&c).await);
            api.expect_event("Normal", "Succeeded").await;
            api.refuse_finalizer_release(500).await;
        }
    })
    .await;
    assert!(result.is_err(), "{result:?}");
    let st = written.expect("a status write");
    assert_eq!(st.phase, Some(Phase::Succeeded));
    // 29 min at 100 g/kWh and 1 kW, counted once.
    let counted = metrics.emissions.with_label_values(&["ml", "DE"]).get();
    assert!((counted - st.emissions_grams).abs() < 1e-9, "{counted}");
    assert!((counted - 2900.0 / 60.0).abs() < 1e-6, "{counted}");
}

/// A reconcile on a cached copy from before this process's own status write (the Job
/// watch triggered it before the CarbonAwareJob watch delivered the write) sends nothing:
/// no read, no write, and looks again in 5 s; the copy with the write decides as usual.
#[tokio::test]
async fn a_cached_copy_older_than_the_own_write_writes_nothing() {
    let s = series(
        500.0,
        &[500.0, 500.0, 500.0, 500.0, 500.0, 500.0, 50.0, 50.0],
    );
    let (ctx, api) = context(s, 0);
    let c = caj("PauseAndResume", "2h", json!({}));
    let mut written = None;
    let action = run(&c, ctx.clone(), api, |mut api| {
        let c = c.clone();
        let written = &mut written;
        async move {
            api.get_child(None).await;
            api.get_caj(&c).await;
            api.apply_child().await;
            *written = Some(api.apply_status_to(&c, "8").await);
        }
    })
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(300))
    );
    let st = written.unwrap();
    assert_eq!(st.phase, Some(Phase::Waiting));

    // The same cached copy (resourceVersion 7) again: no API call at all.
    let sharing = |writes: &Arc<super::store::OwnWrites>| {
        let (ctx, api) = context(
            series(
                500.0,
                &[500.0, 500.0, 500.0, 500.0, 500.0, 500.0, 50.0, 50.0],
            ),
            0,
        );
        let ctx = Arc::new(super::Context {
            own_writes: writes.clone(),
            ..Arc::try_unwrap(ctx).ok().unwrap()
        });
        (ctx, api)
    };
    let (ctx2, api2) = sharing(&ctx.own_writes);
    let action = run(&c, ctx2, api2, |_| async {}).await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );

    // The copy with the write (8): decided on, and nothing to write.
    let mut fresh = with_status(c.clone(), st);
    fresh.metadata.resource_version = Some("8".into());
    let ch = child(&fresh, true, None);
    let (ctx3, api3) = sharing(&ctx.own_writes);
    let action = run(&fresh, ctx3, api3, |mut api| {
        let ch = ch.clone();
        async move {
            api.get_child(Some(&ch)).await;
        }
    })
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(300))
    );
}

#[tokio::test]
async fn failure_marks_failed_with_a_warning() {
    let (ctx, api) = context(series(100.0, &[100.0; 4]), 0);
    let base = caj("RunNow", "1h", json!({}));
    let c = with_status(base.clone(), running_status(&base, -30, 1740));
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(Some(&child(&c, false, Some("Failed")))).await;
            let st = api.apply_status(&c).await;
            assert_eq!(st.phase, Some(Phase::Failed));
            let running = st.conditions.iter().find(|c| c.type_ == "Running").unwrap();
            assert_eq!(running.reason, "Failed");
            assert!(
                running.message.contains("BackoffLimitExceeded"),
                "{}",
                running.message
            );
            api.expect_event("Warning", "Failed").await;
            api.release_finalizer().await;
        }
    })
    .await;
}

#[tokio::test]
async fn deadline_guard_starts_a_job_whatever_the_grid() {
    // 24 h window from creation 10 min ago; it is now 22 h later and 2 h of work remain:
    // the slack is gone, and the grid is dirty.
    let offset = 22 * 60 - 10;
    let s = series(500.0, &vec![900.0; 30]);
    let (ctx, api) = context(s, offset);
    let metrics = ctx.metrics.clone();
    let c = with_status(
        caj("PauseAndResume", "2h", json!({})),
        waiting_status(offset - 1),
    );
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            let st = api.flip(&c, false).await;
            assert_eq!(st.phase, Some(Phase::Running));
            let running = st.conditions.iter().find(|c| c.type_ == "Running").unwrap();
            assert_eq!(running.reason, "DeadlineGuard");
            api.expect_event("Warning", "DeadlineGuard").await;
        }
    })
    .await;
    assert_eq!(metrics.transitions.with_label_values(&["start"]).get(), 1);
    assert_eq!(
        metrics
            .transitions
            .with_label_values(&["deadline-guard"])
            .get(),
        1
    );
}

/// The margin comes out of the slack known at planning time, never more: a feasible job
/// stays feasible, an infeasible one is planned against the real deadline.
#[test]
fn planning_deadline_takes_the_margin_out_of_the_slack() {
    use super::build::planning_deadline;
    let deadline = at(600);
    let m = TimeDelta::minutes(2);
    // Slack 5 h: the whole margin.
    assert_eq!(planning_deadline(deadline, at(0), 3600, m), at(598));
    // Slack exactly the margin, less than it, none: what is left of it.
    assert_eq!(planning_deadline(deadline, at(538), 3600, m), at(598));
    assert_eq!(planning_deadline(deadline, at(539), 3600, m), at(599));
    assert_eq!(
        planning_deadline(deadline, at(539) + TimeDelta::seconds(30), 3600, m),
        at(599) + TimeDelta::seconds(30)
    );
    assert_eq!(planning_deadline(deadline, at(540), 3600, m), deadline);
    // Infeasible (negative slack), zero or negative margin: the real deadline.
    assert_eq!(planning_deadline(deadline, at(541), 3600, m), deadline);
    assert_eq!(
        planning_deadline(deadline, at(0), 3600, TimeDelta::zero()),
        deadline
    );
    assert_eq!(planning_deadline(deadline, at(0), 3600, -m), deadline);
    // Absurd inputs do not panic.
    assert_eq!(planning_deadline(deadline, at(0), i64::MAX, m), deadline);
    assert_eq!(planning_deadline(deadline, at(0), 0, TimeDelta::MAX), at(0));
    // Whatever the margin, a feasible job stays feasible: now + remaining <= result.
    for now in [0, 100, 479, 480, 500, 539, 540] {
        for margin in [0, 1, 60, 120, 7200, 100_000] {
            let d = planning_deadline(deadline, at(now), 3600, TimeDelta::seconds(margin));
            assert!(
                at(now) + TimeDelta::hours(1) <= d,
                "now {now} margin {margin}: {d}"
            );
            assert!(d <= deadline && d >= deadline - TimeDelta::seconds(margin));
        }
    }
}

/// A Threshold job on a grid above its threshold until after the deadline (24 h after
/// creation at -10 min, so at 1430 min) with 2 h of work: the guard's latest start is
/// 1310 min, with the margin it is 2 min earlier. `status.deadline` stays the real one.
#[test]
fn the_guard_fires_a_margin_before_the_latest_start() {
    let s = series(500.0, &vec![900.0; 30]);
    let feed = Intensities::live(s, "static".into());
    let c = caj("Threshold", "2h", json!({"thresholdGramsPerKWh": 100}));
    let ch = child(&c, true, None);
    let step = |mins: i64, margin: i64| {
        build_at(
            &c,
            Some(&ch),
            Ok(&feed),
            at(mins),
            TimeDelta::minutes(margin),
        )
    };
    let guard = |o: &super::Outcome| {
        o.status
            .conditions
            .iter()
            .find(|c| c.type_ == "Running")
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    // Without a margin: waits until 1310.
    let o = step(1307, 0);
    assert_eq!(o.status.phase, Some(Phase::Waiting));
    assert_eq!(o.status.next_transition_time, Some(time::to_time(at(1310))));
    // With 2 min: waits until 1308, then starts (the slack equals the margin).
    let o = step(1307, 2);
    assert_eq!(o.status.phase, Some(Phase::Waiting));
    assert_eq!(o.status.next_transition_time, Some(time::to_time(at(1308))));
    assert_eq!(o.status.deadline, Some(time::to_time(at(1430))));
    assert_eq!(o.planning_deadline, Some(at(1428)));
    let o = step(1308, 2);
    assert_eq!(o.status.phase, Some(Phase::Running));
    assert_eq!(guard(&o), Some(("True".into(), "DeadlineGuard".into())));
    assert!(o.deadline_guard);
    assert!(!o.status.deadline_missed);
    assert_eq!(o.status.deadline, Some(time::to_time(at(1430))));
    assert_eq!(o.status.planned_end, Some(time::to_time(at(1428))));
    // A reconcile a minute late (less slack than the margin): still starts, never
    // DeadlineInfeasible.
    let o = step(1309, 2);
    assert_eq!(guard(&o), Some(("True".into(), "DeadlineGuard".into())));
    assert!(!o.deadline_missed && !o.status.deadline_missed);
    // Without the margin, a minute after the latest start is infeasible.
    let o = step(1311, 0);
    assert_eq!(
        guard(&o),
        Some(("True".into(), "DeadlineInfeasible".into()))
    );
}

#[tokio::test]
async fn a_job_whose_slack_equals_the_margin_is_started_now() {
    // A Threshold job waiting above its threshold, 2 min (the context's default margin)
    // before the latest start: the guard starts it now.
    let offset = 22 * 60 - 10 - 2;
    let s = series(500.0, &vec![900.0; 30]);
    let (ctx, api) = context(s, offset);
    assert_eq!(
        ctx.deadline_margin,
        TimeDelta::seconds(super::DEFAULT_DEADLINE_MARGIN_SECS)
    );
    assert_eq!(ctx.deadline_margin, TimeDelta::minutes(2));
    let metrics = ctx.metrics.clone();
    let c = with_status(
        caj("Threshold", "2h", json!({"thresholdGramsPerKWh": 100})),
        waiting_status(offset - 1),
    );
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            let st = api.flip(&c, false).await;
            assert_eq!(st.phase, Some(Phase::Running));
            assert_eq!(st.start_time, Some(time::to_time(at(offset))));
            assert_eq!(st.deadline, Some(time::to_time(at(1430))));
            assert!(!st.deadline_missed);
            let running = st.conditions.iter().find(|c| c.type_ == "Running").unwrap();
            assert_eq!(running.reason, "DeadlineGuard");
            let note = api.expect_event("Warning", "DeadlineGuard").await;
            assert!(note.contains("2m start-up margin"), "{note}");
        }
    })
    .await;
    assert_eq!(
        metrics
            .transitions
            .with_label_values(&["deadline-guard"])
            .get(),
        1
    );
    assert_eq!(metrics.deadline_misses.get(), 0);
}

#[tokio::test]
async fn nothing_changed_means_no_writes() {
    let s = series(
        500.0,
        &[500.0, 500.0, 500.0, 500.0, 500.0, 500.0, 50.0, 50.0],
    );
    let base = caj("PauseAndResume", "2h", json!({}));
    // First pass (pure) gives the status the operator would have written a minute ago.
    let feed = Intensities::live(s.clone(), "static".into());
    let ch = child(&base, true, None);
    let first = build_at(&base, Some(&ch), Ok(&feed), at(-1), default_margin());
    let c = with_status(base.clone(), first.status);
    let (ctx, api) = context(s, 0);
    let action = run(&c, ctx, api, |mut api| {
        let ch = ch.clone();
        async move {
            api.get_child(Some(&ch)).await;
        }
    })
    .await;
    // A waiting job accrues nothing, so nothing is due: looked at again a full interval
    // from now (or at the forecast's next refresh).
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(300))
    );
    // Last written a day ago, still waiting: still no write (a waiting job writes nothing
    // until it transitions, whatever --status-interval says).
    let feed = Intensities::live(
        series(
            500.0,
            &[500.0, 500.0, 500.0, 500.0, 500.0, 500.0, 50.0, 50.0],
        ),
        "static".into(),
    );
    let mut old = c.clone();
    if let Some(st) = old.status.as_mut() {
        st.last_accounted_time = Some(time::to_time(at(-24 * 60)));
    }
    let out = build_at(&old, Some(&ch), Ok(&feed), now(), default_margin());
    assert!(!out.write_status);
    assert_eq!(out.status.runtime_seconds, 0);
    assert_eq!(out.status.baseline_grams, 0.0);
}

#[tokio::test]
async fn invalid_spec_becomes_a_condition_and_a_warning() {
    let (ctx, api) = context(series(100.0, &[100.0]), 0);
    let c = caj("Threshold", "2h", json!({}));
    let action = run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(None).await;
            api.get_caj(&c).await;
            let st = api.apply_status(&c).await;
            assert_eq!(st.phase, Some(Phase::Pending));
            assert_condition(
                &st,
                "Ready",
                ("False", "InvalidSpec"),
                &["thresholdGramsPerKWh"],
            );
            api.expect_event("Warning", "InvalidSpec").await;
        }
    })
    .await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn an_infeasible_deadline_runs_the_job_at_once_and_says_so() {
    // Created 10 min ago with a deadline 1 h after creation for 2 h of work (set so, or
    // edited so): never refused, never left waiting.
    let (ctx, api) = context(series(500.0, &[500.0, 500.0, 50.0]), 0);
    let c = caj(
        "FlexibleStart",
        "2h",
        json!({"maxDelay": null, "deadline": time::to_time(at(50))}),
    );
    let metrics = ctx.metrics.clone();
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            let st = api.create_child(&c, false).await;
            assert_eq!(st.phase, Some(Phase::Running));
            assert!(st.deadline_missed);
            let running = st.conditions.iter().find(|c| c.type_ == "Running").unwrap();
            assert_eq!(running.reason, "DeadlineInfeasible");
            let mut reasons = Vec::new();
            for _ in 0..2 {
                let (ty, reason, note) = api.event().await;
                if reason == "DeadlineMissed" {
                    assert_eq!(ty, "Warning");
                    // 2 h from now: the earliest the job can finish.
                    let earliest = (now() + TimeDelta::hours(2))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    assert!(note.contains(&earliest), "{note}");
                    assert!(note.contains("running it now"), "{note}");
                }
                reasons.push(reason);
            }
            reasons.sort();
            assert_eq!(reasons, ["DeadlineMissed", "Started"]);
        }
    })
    .await;
    assert_eq!(metrics.deadline_misses.get(), 1);
}

#[tokio::test]
async fn a_template_edited_after_the_child_exists_is_not_applied() {
    // The child was created from image trainer:1; the user edits the image while the
    // job waits. The start then flips spec.suspend alone: the Job runs the original.
    let s = series(500.0, &[50.0, 50.0, 50.0, 500.0]);
    let (ctx, api) = context(s, 0);
    let original = caj("PauseAndResume", "2h", json!({}));
    let mut edited = with_status(
        original.clone(),
        CarbonAwareJobStatus {
            phase: Some(Phase::Waiting),
            job_name: Some("train".into()),
            last_accounted_time: Some(time::to_time(at(-1))),
            template_hash: Some(super::build::template_hash(&original)),
            ..CarbonAwareJobStatus::default()
        },
    );
    edited.spec.template.spec["template"]["spec"]["containers"][0]["image"] = json!("trainer:2");
    edited.metadata.generation = Some(2);
    let live = child(&original, true, None);
    run(&edited, ctx, api, |mut api| {
        let c = edited.clone();
        async move {
            api.get_child(Some(&live)).await;
            let patch = api.patch_suspend().await;
            assert_eq!(patch, json!({"spec": {"suspend": false}}));
            let st = api.apply_status(&c).await;
            assert_eq!(st.phase, Some(Phase::Running));
            assert_eq!(
                st.template_hash,
                Some(super::build::template_hash(&original))
            );
            let cond = st
                .conditions
                .iter()
                .find(|c| c.type_ == "TemplateCurrent")
                .unwrap();
            assert_eq!(
                (cond.status.as_str(), cond.reason.as_str()),
                ("False", "TemplateChangeIgnored")
            );
            let mut reasons = Vec::new();
            for _ in 0..2 {
                let (ty, reason, note) = api.event().await;
                if reason == "TemplateChangeIgnored" {
                    assert_eq!(ty, "Warning");
                    assert!(note.contains("Delete and re-create"), "{note}");
                }
                reasons.push(reason);
            }
            reasons.sort();
            assert_eq!(reasons, ["Started", "TemplateChangeIgnored"]);
        }
    })
    .await;
}

#[tokio::test]
async fn a_deleted_child_is_recreated_keeping_the_ledger() {
    let s = series(500.0, &[500.0, 500.0, 500.0, 50.0, 50.0, 50.0]);
    let (ctx, api) = context(s, 0);
    let base = caj("PauseAndResume", "2h", json!({}));
    let c = with_status(
        base.clone(),
        CarbonAwareJobStatus {
            phase: Some(Phase::Paused),
            job_name: Some("train".into()),
            start_time: Some(time::to_time(at(-120))),
            paused_since: Some(time::to_time(at(-60))),
            last_accounted_time: Some(time::to_time(at(-1))),
            runtime_seconds: 3600,
            pauses: 1,
            emissions_grams: 42.0,
            ..CarbonAwareJobStatus::default()
        },
    );
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            let st = api.create_child(&c, true).await;
            assert_eq!(st.runtime_seconds, 3600);
            assert_eq!(st.emissions_grams, 42.0);
            assert_eq!(st.pauses, 1);
            let (ty, reason, _) = api.event().await;
            assert_eq!(
                (ty.as_str(), reason.as_str()),
                ("Warning", "ChildJobRecreated")
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_job_that_is_not_ours_is_a_conflict() {
    let (ctx, api) = context(series(100.0, &[100.0]), 0);
    let c = caj("RunNow", "1h", json!({}));
    let mut foreign = child(&c, false, None);
    foreign.metadata.owner_references = None;
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(Some(&foreign)).await;
            let st = api.apply_status(&c).await;
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
            assert_eq!(ready.reason, "JobConflict");
            let (_, reason, _) = api.event().await;
            assert_eq!(reason, "JobConflict");
        }
    })
    .await;
}

/// A watch cache holding `job`, as `run` sets it up.
fn cache_with(ctx: &super::Context, job: Option<Job>) {
    let (store, mut writer) = kube::runtime::reflector::store::<super::store::CachedChild>();
    if let Some(j) = job {
        // As the watch delivers it: the Job's JSON, read into the cache's type.
        let cached = serde_json::from_value(serde_json::to_value(&j).unwrap()).unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cached));
    }
    assert!(ctx.jobs.set(store).is_ok());
}

#[tokio::test]
async fn a_stale_read_counts_and_announces_nothing() {
    // The cached object does not show this operator's last write: the status apply, made
    // on condition of the resourceVersion read, is refused and nothing is counted.
    let (ctx, api) = context(series(100.0, &[100.0; 4]), 0);
    let base = caj("RunNow", "1h", json!({}));
    let c = with_status(base.clone(), running_status(&base, -61, 1860));
    let metrics = ctx.metrics.clone();
    let action = run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(Some(&child(&c, false, Some("Complete"))))
                .await;
            api.conflict_status().await;
        }
    })
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        metrics.emissions.with_label_values(&["ml", "DE"]).get(),
        0.0
    );
    assert_eq!(
        metrics
            .avoided_emissions
            .with_label_values(&["ml", "DE"])
            .get(),
        0.0
    );
    assert_eq!(metrics.transitions.with_label_values(&["start"]).get(), 0);
}

#[tokio::test]
async fn a_finished_job_whose_cached_copy_is_stale_is_never_recreated() {
    // The cache shows the job running with no child (the child was deleted after its
    // outcome was recorded); the quorum read shows it Succeeded: nothing is created.
    let (ctx, api) = context(series(100.0, &[100.0; 4]), 0);
    cache_with(&ctx, None);
    let base = caj("RunNow", "1h", json!({}));
    let stale = with_status(base.clone(), running_status(&base, -61, 1860));
    let mut fresh = stale.clone();
    if let Some(st) = fresh.status.as_mut() {
        st.phase = Some(Phase::Succeeded);
        st.running_since = None;
        st.observed_generation = Some(1);
    }
    fresh.metadata.resource_version = Some("8".into());
    let action = run(&stale, ctx, api, |mut api| async move {
        api.get_child(None).await;
        api.get_caj(&fresh).await;
        // No apply of a Job, no status write, no Event: the next call would hang here.
    })
    .await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn a_finished_job_releases_a_finalizer_left_behind() {
    // The outcome was written but the operator stopped before releasing the child.
    let (ctx, api) = context(series(100.0, &[100.0]), 0);
    let base = caj("RunNow", "1h", json!({}));
    let mut done = with_status(base.clone(), running_status(&base, -61, 3600));
    if let Some(st) = done.status.as_mut() {
        st.phase = Some(Phase::Succeeded);
        st.running_since = None;
        st.observed_generation = Some(1);
    }
    let mut finished = child(&done, false, Some("Complete"));
    finished.metadata.deletion_timestamp = Some(time::to_time(at(-1)));
    cache_with(&ctx, Some(finished));
    let metrics = ctx.metrics.clone();
    run(&done, ctx, api, |mut api| async move {
        api.release_finalizer().await;
    })
    .await;
    assert_eq!(
        metrics.emissions.with_label_values(&["ml", "DE"]).get(),
        0.0
    );
}

#[tokio::test]
async fn a_child_deleted_unfinished_is_let_go_not_patched() {
    // Someone deletes the running child: carbonshift cannot change a Job being deleted,
    // so it accrues, releases it, and recreates it once it is gone.
    let (ctx, api) = context(series(100.0, &[100.0; 4]), 0);
    let base = caj("RunNow", "2h", json!({}));
    let c = with_status(base.clone(), running_status(&base, -30, 1740));
    let mut deleting = with_pods(child(&c, false, None), 1, 1);
    deleting.metadata.deletion_timestamp = Some(time::to_time(at(-1)));
    cache_with(&ctx, Some(deleting));
    run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            let st = api.apply_status(&c).await;
            assert_eq!(st.phase, Some(Phase::Running));
            assert_eq!(st.runtime_seconds, 1740 + 60);
            api.release_finalizer().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_template_for_kueue_is_refused_when_the_operator_does_not_serve_kueue() {
    let (ctx, api) = context(series(100.0, &[100.0]), 0);
    let mut c = caj("RunNow", "1h", json!({}));
    c.spec.template.metadata = Some(crate::api::TemplateMetadata {
        labels: [("kueue.x-k8s.io/queue-name".to_string(), "gpu".to_string())].into(),
        ..Default::default()
    });
    let action = run(&c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(None).await;
            api.get_caj(&c).await;
            // No Job is created: Kueue would own its spec.suspend.
            let st = api.apply_status(&c).await;
            assert_condition(
                &st,
                "Ready",
                ("False", "KueueManaged"),
                &["queue-name=\"gpu\"", "--kueue", "remove the label"],
            );
            api.expect_event("Warning", "KueueManaged").await;
        }
    })
    .await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

/// With `run --kueue`, a template for a Kueue queue is planned as any other, but its Job
/// is created suspended whatever the plan, and its `spec.suspend` is never written:
/// Kueue owns it (the plan reaches the Job through its Workload, `kueue::steer`).
#[test]
fn a_template_for_kueue_is_created_suspended_and_its_suspend_left_to_kueue() {
    let feed = Intensities::live(series(100.0, &[100.0, 500.0]), "static".into());
    let mut c = caj("RunNow", "2h", json!({}));
    c.spec.template.metadata = Some(crate::api::TemplateMetadata {
        labels: [("kueue.x-k8s.io/queue-name".to_string(), "gpu".to_string())].into(),
        ..Default::default()
    });
    let step = |c: &CarbonAwareJob, child: Option<&Job>| {
        super::build::build(super::build::Observed {
            caj: c,
            child,
            region: Ok("DE"),
            intensities: Ok(&feed),
            now: now(),
            persist_every: TimeDelta::minutes(5),
            deadline_margin: default_margin(),
            kueue: true,
        })
    };
    let out = step(&c, None);
    assert_eq!(out.status.phase, Some(Phase::Running));
    let job = out.job.expect("the child Job is created");
    assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(true));
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()["kueue.x-k8s.io/queue-name"],
        "gpu"
    );
    // Running by the plan: Kueue has not admitted it yet (suspended), and nothing is
    // written to the Job; nor once Kueue has unsuspended it.
    let c = with_status(c.clone(), out.status);
    for suspended in [true, false] {
        let ch = child(&c, suspended, None);
        let out = step(&c, Some(&ch));
        assert_eq!((out.job.is_none(), out.suspend), (true, None));
        assert_eq!(out.status.phase, Some(Phase::Running));
    }
}

/// Accounting in several steps (as a restarted operator does) equals one step.
#[test]
fn accrual_is_additive_across_restarts() {
    let s = series(100.0, &[200.0, 400.0, 100.0, 300.0, 300.0]);
    let feed = Intensities::live(s, "static".into());
    let base = caj("RunNow", "6h", json!({}));
    let start = with_status(base.clone(), running_status(&base, -1, 0));
    let step = |c: &CarbonAwareJob, mins: i64| {
        let ch = with_pods(child(c, false, None), 1, 1);
        let o = build_at(c, Some(&ch), Ok(&feed), at(mins), default_margin());
        with_status(c.clone(), o.status)
    };
    let one = step(&start, 200);
    let mut many = start.clone();
    for m in [7, 61, 119, 150, 200] {
        many = step(&many, m);
    }
    let (a, b) = (one.status.unwrap(), many.status.unwrap());
    assert_eq!(a.runtime_seconds, b.runtime_seconds);
    assert!((a.emissions_grams - b.emissions_grams).abs() < 1e-9);
    assert!((a.baseline_grams - b.baseline_grams).abs() < 1e-9);
    assert!((a.energy_kwh - b.energy_kwh).abs() < 1e-12);
    // 201 min at 1 kW: 1 min at 100, 60 at 200, 60 at 400, 60 at 100, 20 at 300.
    let expected = (100.0 + 60.0 * 200.0 + 60.0 * 400.0 + 60.0 * 100.0 + 20.0 * 300.0) / 60.0;
    assert!(
        (a.emissions_grams - expected).abs() < 1e-6,
        "{} vs {expected}",
        a.emissions_grams
    );
}

/// After a pause, the first `checkpointOverhead` of the resumed run is restore: emitted,
/// counted as runtime, but never in the run-now baseline (which never pauses), also when
/// the operator restarts in the middle of the restore. The status is one written before
/// `readyPods` existed, so the restore window starts at `runningSince`, as it did then.
#[test]
fn restore_overhead_is_emitted_but_not_in_the_baseline() {
    // 100 g/kWh in the past day, then 200, 400, 100, 300 per hour.
    let s = series(100.0, &[200.0, 400.0, 100.0, 300.0, 300.0]);
    let feed = Intensities::live(s, "static".into());
    let base = caj("PauseAndResume", "2h", json!({"checkpointOverhead": "30m"}));
    // Created at -10 min, 20 min of work before a pause (baseline over -10 .. +10 min:
    // 10 min at 100, 10 at 200), resumed at 0.
    let st = resumed_after_pause();
    let start = with_status(base, st);
    let step = |c: &CarbonAwareJob, mins: i64| {
        let ch = with_pods(child(c, false, None), 1, 1);
        let o = build_at(c, Some(&ch), Ok(&feed), at(mins), default_margin());
        with_status(c.clone(), o.status)
    };
    let one = step(&start, 60).status.unwrap();
    // Restarts in the restore (at 10 min) and after it.
    let many = step(&step(&step(&start, 10), 45), 60).status.unwrap();
    for st in [&one, &many] {
        assert_eq!(st.runtime_seconds, 80 * 60);
        // Ran 0-60 min at 200 g/kWh, 1 kW.
        assert!((st.emissions_grams - (100.0 / 3.0 + 200.0)).abs() < 1e-6);
        // Work 20 + 30 min: the baseline covers creation (-10 min) to +40 min, i.e. 10 min
        // at 100 and 40 min at 200; the 30 min restore are not in it.
        let baseline: f64 = (10.0 * 100.0 + 40.0 * 200.0) / 60.0;
        assert!((baseline - 150.0).abs() < 1e-9);
        assert!(
            (st.baseline_grams - baseline).abs() < 1e-6,
            "{} vs {baseline}",
            st.baseline_grams
        );
    }
}

/// Created at -10 min, 20 min of work done before a pause (1 kW at 100 g/kWh: 33.3 g; the
/// baseline over -10 .. +10 min, 10 min at 100 and 10 at 200: 50 g), resumed at 0.
fn resumed_after_pause() -> CarbonAwareJobStatus {
    CarbonAwareJobStatus {
        phase: Some(Phase::Running),
        job_name: Some("train".into()),
        region: Some("DE".into()),
        start_time: Some(time::to_time(at(-10))),
        running_since: Some(time::to_time(at(0))),
        last_accounted_time: Some(time::to_time(at(0))),
        runtime_seconds: 20 * 60,
        pauses: 1,
        emissions_grams: 100.0 / 3.0,
        baseline_grams: 50.0,
        ..CarbonAwareJobStatus::default()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

/// `actual` equals `want` to 1e-9 (relative).
#[track_caller]
fn assert_close(actual: f64, want: f64) {
    assert!(close(actual, want), "{actual} vs {want}");
}

/// Unsuspended for 300 s, the pod Pending for the first 120 s: 180 s of work, energy and
/// emissions over the Ready 180 s only, 120 s waiting for pods, and the 120 s start-up
/// latency recorded and planned with.
#[test]
fn pending_pods_are_waiting_not_work() {
    // 200 g/kWh in the first hour from now, 400 in the second: the run crosses the hour.
    let feed = Intensities::live(
        series(100.0, &[200.0, 400.0, 100.0, 100.0, 100.0]),
        "static".into(),
    );
    let secs = TimeDelta::seconds;
    let t = at(57);
    let margin = secs(60);
    let c = with_status(
        caj("RunNow", "2h", json!({})),
        CarbonAwareJobStatus {
            phase: Some(Phase::Waiting),
            job_name: Some("train".into()),
            last_accounted_time: Some(time::to_time(t)),
            ..CarbonAwareJobStatus::default()
        },
    );
    // t: started; the live Job is still suspended.
    let o = build_at(&c, Some(&child(&c, true, None)), Ok(&feed), t, margin);
    assert_eq!(o.transition, Some(super::build::Transition::Start));
    assert_eq!(o.status.ready_pods, Some(0));
    let c = with_status(c, o.status);
    // t + 60 s: the pod exists, Pending.
    let o = build_at(
        &c,
        Some(&with_pods(child(&c, false, None), 1, 0)),
        Ok(&feed),
        t + secs(60),
        margin,
    );
    assert_eq!(o.status.ready_pods, Some(0));
    assert_eq!(o.status.runtime_seconds, 0);
    assert_eq!(o.status.waiting_for_pods_seconds, 60);
    let c = with_status(c, o.status);
    // t + 120 s: Ready. Still no work before now; the count changed, so the status is written.
    let o = build_at(
        &c,
        Some(&with_pods(child(&c, false, None), 1, 1)),
        Ok(&feed),
        t + secs(120),
        margin,
    );
    assert!(o.write_status);
    assert_eq!(o.status.ready_pods, Some(1));
    assert_eq!(o.status.ready_since, Some(time::to_time(t + secs(120))));
    assert_eq!(o.status.startup_seconds, Some(120));
    assert_eq!(o.status.last_startup_seconds, Some(120));
    assert_eq!(o.status.runtime_seconds, 0);
    assert_eq!(o.status.energy_kwh, 0.0);
    assert_eq!(o.status.waiting_for_pods_seconds, 120);
    // Planned with the observed 120 s start-up, not the 60 s flag.
    assert_eq!(o.planning_deadline, Some(at(1430) - secs(120)));
    let c = with_status(c, o.status);
    // t + 300 s.
    let o = build_at(
        &c,
        Some(&with_pods(child(&c, false, None), 1, 1)),
        Ok(&feed),
        t + secs(300),
        margin,
    );
    let st = &o.status;
    assert_eq!(st.runtime_seconds, 180);
    assert_eq!(st.waiting_for_pods_seconds, 120);
    assert_close(st.energy_kwh, 1.0 * 180.0 / 3600.0);
    // [t + 120 s, t + 300 s) = [59 min, 62 min): 60 s at 200, 120 s at 400, 1 kW.
    let grams = (60.0 * 200.0 + 120.0 * 400.0) / 3600.0;
    assert_close(st.emissions_grams, grams);
    // The run-now job does the same 180 s from creation (-10 min): at the past 100 g/kWh.
    assert_close(st.baseline_grams, 180.0 * 100.0 / 3600.0);
    // The planner sees the true remaining work.
    assert_eq!(o.remaining_secs, Some(7200 - 180));
    assert_eq!(st.startup_seconds, Some(120));
}

/// `parallelism: 4` with 2 pods Ready for 100 s: 50 s of work and half the energy and
/// emissions of the whole job's power model; the other 50 s are waiting.
#[test]
fn a_parallel_job_accrues_in_proportion_to_its_ready_pods() {
    let feed = Intensities::live(series(100.0, &[200.0, 200.0, 200.0]), "static".into());
    let mut base = caj("RunNow", "2h", json!({}));
    base.spec.template.spec["parallelism"] = json!(4);
    let mut st = running_status(&base, -5, 0);
    st.last_accounted_time = Some(time::to_time(at(0)));
    st.ready_pods = Some(2);
    st.ready_since = Some(time::to_time(at(-2)));
    let c = with_status(base, st);
    let ch = with_pods(child(&c, false, None), 4, 2);
    let o = build_at(
        &c,
        Some(&ch),
        Ok(&feed),
        at(0) + TimeDelta::seconds(100),
        TimeDelta::zero(),
    );
    let st = &o.status;
    assert_eq!(st.runtime_seconds, 50);
    assert_eq!(st.waiting_for_pods_seconds, 50);
    assert_close(st.energy_kwh, 0.5 * 1.0 * 100.0 / 3600.0);
    assert_close(st.emissions_grams, 0.5 * 100.0 * 200.0 / 3600.0);
    // The full-size run-now job does those 50 s over [created, created + 50 s) at 100.
    assert_close(st.baseline_grams, 50.0 * 100.0 / 3600.0);
    assert_eq!(o.remaining_secs, Some(7200 - 50));
    // Ready beyond parallelism (a surge during a rollover) is capped at a full share.
    let mut c2 = c.clone();
    c2.status.as_mut().unwrap().ready_pods = Some(6);
    let o = build_at(
        &c2,
        Some(&ch),
        Ok(&feed),
        at(0) + TimeDelta::seconds(100),
        TimeDelta::zero(),
    );
    assert_eq!(o.status.runtime_seconds, 100);
    assert_eq!(o.status.waiting_for_pods_seconds, 0);
}

/// A running job whose Ready count did not change writes nothing between persists; a
/// change of the count is written at once.
#[test]
fn only_a_change_of_ready_pods_is_material() {
    let feed = Intensities::live(series(100.0, &[200.0, 200.0, 200.0]), "static".into());
    let mut base = caj("RunNow", "2h", json!({}));
    base.spec.template.spec["parallelism"] = json!(2);
    let mut st = running_status(&base, -5, 0);
    st.ready_pods = Some(2);
    st.ready_since = Some(time::to_time(at(-4)));
    let c = with_status(base, st);
    let m = TimeDelta::zero();
    let first = build_at(
        &c,
        Some(&with_pods(child(&c, false, None), 2, 2)),
        Ok(&feed),
        at(0),
        m,
    );
    let c = with_status(c, first.status);
    let same = build_at(
        &c,
        Some(&with_pods(child(&c, false, None), 2, 2)),
        Ok(&feed),
        at(1),
        m,
    );
    assert!(!same.write_status);
    let fewer = build_at(
        &c,
        Some(&with_pods(child(&c, false, None), 2, 1)),
        Ok(&feed),
        at(1),
        m,
    );
    assert!(fewer.write_status);
    assert_eq!(fewer.status.ready_pods, Some(1));
    // The minute before the change still ran at full size.
    assert_eq!(
        fewer.status.runtime_seconds,
        c.status.as_ref().unwrap().runtime_seconds + 60
    );
}

/// The recorded start-up latency raises the planning margin above `--deadline-margin`,
/// and, clamped to the slack like the flag, never makes a feasible job infeasible.
#[test]
fn the_observed_startup_latency_widens_the_margin_within_the_slack() {
    let feed = Intensities::live(series(500.0, &vec![900.0; 30]), "static".into());
    // Deadline at 1430 min, 2 h of work above the threshold: latest start 1310.
    let base = caj("Threshold", "2h", json!({"thresholdGramsPerKWh": 100}));
    let c = with_status(
        base,
        CarbonAwareJobStatus {
            phase: Some(Phase::Paused),
            job_name: Some("train".into()),
            start_time: Some(time::to_time(at(-5))),
            paused_since: Some(time::to_time(at(-1))),
            last_accounted_time: Some(time::to_time(at(0))),
            startup_seconds: Some(600),
            last_startup_seconds: Some(300),
            ..CarbonAwareJobStatus::default()
        },
    );
    let ch = child(&c, true, None);
    let m = TimeDelta::minutes(2);
    // The largest latency (10 min), not the flag's 2 min nor the last run's 5 min.
    let o = build_at(&c, Some(&ch), Ok(&feed), at(1200), m);
    assert_eq!(o.planning_deadline, Some(at(1420)));
    assert_eq!(o.status.next_transition_time, Some(time::to_time(at(1300))));
    assert_eq!(o.status.phase, Some(Phase::Paused));
    // A smaller latency than the flag: the flag.
    let mut small = c.clone();
    small.status.as_mut().unwrap().startup_seconds = Some(30);
    let o = build_at(&small, Some(&ch), Ok(&feed), at(1200), m);
    assert_eq!(o.planning_deadline, Some(at(1428)));
    // 4 min of slack left (less than the latency): the guard resumes now, feasibly.
    let o = build_at(&c, Some(&ch), Ok(&feed), at(1306), m);
    assert_eq!(o.planning_deadline, Some(at(1426)));
    assert_eq!(o.status.phase, Some(Phase::Running));
    assert!(o.deadline_guard);
    assert!(!o.deadline_missed && !o.status.deadline_missed);
    // At the latest start itself: no slack, the real deadline, still not infeasible.
    let o = build_at(&c, Some(&ch), Ok(&feed), at(1310), m);
    assert_eq!(o.planning_deadline, Some(at(1430)));
    assert!(o.deadline_guard && !o.deadline_missed);
}

/// A status written before `readyPods`, `readySince`, `restoreSeconds` and
/// `waitingForPodsSeconds` existed reads and reconciles without loss: its totals are kept,
/// the interval since its last accounting is accrued as that operator accrued it (fully
/// running), and the run's start-up latency is not guessed.
#[test]
fn an_old_status_reconciles_without_loss() {
    let feed = Intensities::live(series(100.0, &[200.0, 200.0, 200.0]), "static".into());
    let base = caj("PauseAndResume", "4h", json!({"checkpointOverhead": "10m"}));
    let old_json = json!({
        "phase": "Running", "jobName": "train", "region": "DE",
        "startTime": time::to_time(at(-9)), "runningSince": time::to_time(at(-5)),
        "lastAccountedTime": time::to_time(at(-1)),
        "runtimeSeconds": 400, "pauses": 1, "energyKWh": 0.11,
        "emissionsGrams": 12.5, "baselineGrams": 20.0, "avoidedGrams": 7.5,
    });
    let old: CarbonAwareJobStatus = serde_json::from_value(old_json).unwrap();
    assert_eq!((old.ready_pods, old.restore_seconds), (None, None));
    assert_eq!(old.waiting_for_pods_seconds, 0);
    let c = with_status(base.clone(), old.clone());
    let ch = with_pods(child(&c, false, None), 1, 1);
    let o = build_at(&c, Some(&ch), Ok(&feed), at(0), TimeDelta::zero());
    let st = &o.status;
    // The minute since the last accounting, at the past 100 g/kWh and 1 kW, on top of the
    // old totals; restoring (the legacy window: 10 min from runningSince at -5).
    assert_eq!(st.runtime_seconds, 460);
    assert_eq!(st.restore_seconds, Some(60 + 4 * 60));
    assert_close(st.energy_kwh, 0.11 + 60.0 / 3600.0);
    assert_close(st.emissions_grams, 12.5 + 100.0 / 60.0);
    assert_close(st.baseline_grams, 20.0);
    assert_eq!(st.waiting_for_pods_seconds, 0);
    assert_eq!(st.ready_pods, Some(1));
    assert_eq!(st.ready_since, old.running_since);
    assert_eq!(st.startup_seconds, None);
    assert_eq!(st.pauses, 1);
    // Same totals as the operator that wrote it would reach, continuing: the restore ends
    // at +5 min, then 5 min of work (baseline from creation + 400 - 240 s = 160 s of
    // work, at 100 g/kWh until 0 min, i.e. all in the past).
    let c = with_status(base, o.status);
    let o = build_at(&c, Some(&ch), Ok(&feed), at(10), TimeDelta::zero());
    let st = &o.status;
    assert_eq!(st.runtime_seconds, 400 + 11 * 60);
    assert_eq!(st.restore_seconds, Some(10 * 60));
    assert_close(st.emissions_grams, 12.5 + (100.0 + 10.0 * 200.0) / 60.0);
    assert_close(st.baseline_grams, 20.0 + 5.0 * 100.0 / 60.0);
}

/// With Ready-based accrual a resumed run restores from its first Ready pod: the Pending
/// minutes after the resume are waiting, then `checkpointOverhead` is restore (emitted,
/// no baseline), then work.
#[test]
fn restore_starts_when_the_resumed_pods_are_ready() {
    // 100 g/kWh in the past day, then 200 for the first hour, 400 for the second.
    let feed = Intensities::live(
        series(100.0, &[200.0, 400.0, 100.0, 300.0, 300.0]),
        "static".into(),
    );
    // (minRunDuration: the plan must not pause it in the dirtier second hour.)
    let base = caj(
        "PauseAndResume",
        "2h",
        json!({"checkpointOverhead": "30m", "minRunDuration": "2h"}),
    );
    // As in the test above: 20 min of work before a pause, resumed at 0.
    let st = CarbonAwareJobStatus {
        ready_pods: Some(0),
        restore_seconds: Some(0),
        ..resumed_after_pause()
    };
    let m = TimeDelta::zero();
    let c = with_status(base.clone(), st);
    let pending = with_pods(child(&c, false, None), 1, 0);
    let ready = with_pods(child(&c, false, None), 1, 1);
    // Pending until +10 min, Ready from then; reconciles (restarts) at 5, 10, 25, 45, 70.
    let mut c = c;
    let steps = [
        (5, &pending),
        (10, &ready),
        (25, &ready),
        (45, &ready),
        (70, &ready),
    ];
    for (mins, ch) in steps {
        let o = build_at(&c, Some(ch), Ok(&feed), at(mins), m);
        c = with_status(base.clone(), o.status);
    }
    let st = c.status.unwrap();
    assert_eq!(st.ready_since, Some(time::to_time(at(10))));
    assert_eq!(st.startup_seconds, Some(600));
    assert_eq!(st.waiting_for_pods_seconds, 600);
    // Ready 10-70 min: restore 10-40, work 40-70.
    assert_eq!(st.runtime_seconds, 20 * 60 + 60 * 60);
    assert_eq!(st.restore_seconds, Some(30 * 60));
    let emitted = 100.0 / 3.0 + (50.0 * 200.0 + 10.0 * 400.0) / 60.0;
    assert_close(st.emissions_grams, emitted);
    // 30 min of work after the 20 before: the baseline adds [+10, +40) min at 200.
    let baseline = 50.0 + 30.0 * 200.0 / 60.0;
    assert_close(st.baseline_grams, baseline);
}

/// One field of a status, rendered for comparison.
type Render = dyn Fn(&CarbonAwareJobStatus) -> String;

/// One decision path: for the same CarbonAwareJob, child Job, intensities and time, a
/// controller reconcile (against the mocked API server), `plan -f` and a `simulate` step
/// make the same decision and keep the same ledger, first for a new job, then for one
/// that has been running for 50 minutes (accrual, the baseline, running to completion).
#[tokio::test]
async fn reconcile_plan_and_simulate_take_one_decision_path() {
    let s = series(400.0, &[50.0, 50.0, 500.0, 500.0, 50.0, 50.0]);
    let feed = Intensities::live(s.clone(), "static".into());
    let sim_cfg = crate::sim::SimConfig {
        duration_secs: 7200,
        slack_secs: 0,
        submit_every_secs: 3600,
        horizon_secs: 48 * 3600,
        forecast: crate::sim::ForecastModel::Perfect,
        strategies: vec![],
        constraints: crate::plan::Constraints::default(),
        threshold: None,
        power_kw: 1.0,
        deadline_margin_secs: 120,
        startup_secs: 0,
    };
    let new = caj("PauseAndResume", "2h", json!({}));
    let mut running = running_status(&new, -50, 40 * 60);
    running.last_accounted_time = Some(time::to_time(at(-5)));
    running.ready_pods = Some(1);
    running.ready_since = Some(time::to_time(at(-50)));
    running.restore_seconds = Some(0);
    let running = with_status(new.clone(), running);
    for (c, ch) in [
        (new.clone(), None),
        (
            running.clone(),
            Some(with_pods(child(&running, false, None), 1, 1)),
        ),
    ] {
        let reconciled = reconcile_once(&c, ch.as_ref(), &s).await;
        let margin = TimeDelta::minutes(2);
        let planned = build(crate::cli::plan::observed(&c, "DE", &feed, now(), margin));
        let simulated = build(crate::sim::job::observed(
            &c,
            ch.as_ref(),
            &feed,
            now(),
            &sim_cfg,
        ));
        for (name, st) in [
            ("plan -f", &planned.status),
            ("simulate", &simulated.status),
        ] {
            if ch.is_none() || name == "simulate" {
                assert_same_decision(name, st, &reconciled);
            }
        }
        // The clean hours start now: the new job starts; the running one accrued 5 minutes
        // at 400 g/kWh and runs its last 75 minutes to completion.
        if ch.is_some() {
            assert_eq!(reconciled.runtime_seconds, 45 * 60);
            assert!((reconciled.emissions_grams - 400.0 * 5.0 / 60.0).abs() < 1e-6);
            assert_eq!(reconciled.phase, Some(Phase::Running));
            assert_eq!(reconciled.next_action, None);
        } else {
            assert_eq!(reconciled.phase, Some(Phase::Running));
            assert_eq!(reconciled.start_time, Some(time::to_time(now())));
        }
    }
}

/// One reconcile of `c` through the mocked API server, with `ch` as the live child Job (or
/// none, which the reconcile creates); the status it writes.
async fn reconcile_once(c: &CarbonAwareJob, ch: Option<&Job>, s: &Series) -> CarbonAwareJobStatus {
    let (mut ctx, api) = context(s.clone(), 0);
    Arc::get_mut(&mut ctx).unwrap().deadline_margin = TimeDelta::minutes(2);
    let cached = ch.cloned();
    let written = std::sync::Arc::new(std::sync::Mutex::new(None));
    let w = written.clone();
    run(c, ctx, api, |mut api| {
        let c = c.clone();
        async move {
            api.get_child(cached.as_ref()).await;
            if cached.is_none() {
                api.get_caj(&c).await;
                api.apply_child().await;
            }
            *w.lock().unwrap() = Some(api.apply_status(&c).await);
        }
    })
    .await;
    let st = written.lock().unwrap().clone();
    st.expect("a status write")
}

/// Asserts that `st` (from `name`) has the decision and ledger of the `reconciled` status.
fn assert_same_decision(name: &str, st: &CarbonAwareJobStatus, reconciled: &CarbonAwareJobStatus) {
    let same = |f: &Render| f(st) == f(reconciled);
    let fields: [(&str, &Render); 6] = [
        ("phase", &|s| format!("{:?}", s.phase)),
        ("next", &|s| {
            format!("{:?} {:?}", s.next_action, s.next_transition_time)
        }),
        ("planned", &|s| {
            format!("{:?} {:?}", s.planned_start, s.planned_end)
        }),
        ("ledger", &|s| {
            format!(
                "{} {:.9} {:.9} {:.9} {:?}",
                s.runtime_seconds, s.energy_kwh, s.emissions_grams, s.baseline_grams, s.unaccounted
            )
        }),
        ("running", &|s| {
            let r = s.conditions.iter().find(|c| c.type_ == "Running");
            format!("{:?}", r.map(|c| (&c.status, &c.reason)))
        }),
        ("deadline", &|s| {
            format!("{:?} {}", s.deadline, s.deadline_missed)
        }),
    ];
    for (field, f) in fields {
        assert!(
            same(f),
            "{name} differs from the reconcile in {field}: {} vs {}",
            f(st),
            f(reconciled)
        );
    }
}
