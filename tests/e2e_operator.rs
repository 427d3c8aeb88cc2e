//! End-to-end tests of the operator on the real local control plane (`hack/cluster.sh`):
//! the `carbonshift` binary, fed a 1-minute forecast from a CSV file, drives CarbonAwareJobs
//! through the real kube-apiserver, Job controller and scheduler, with kwok playing the
//! GPU nodes' kubelets. Issue 4, "what it must show".
//!
//! Runs only with `CARBONSHIFT_E2E=1` and `KUBECONFIG` set:
//! ```text
//! hack/cluster.sh up && eval "$(hack/cluster.sh env)"
//! CARBONSHIFT_E2E=1 cargo test --test e2e_operator -- --nocapture
//! ```
//!
//! One test, [`operator_end_to_end`], runs six scenarios concurrently (see there why), about
//! 5 minutes in all; `CARBONSHIFT_E2E_ONLY=pause,flex` picks some.
//!
//! Isolation: every scenario has its own namespace, its own operator process (`--namespace`
//! of that namespace, leader Lease in it, its own `/metrics` port, SIGKILLed on drop, log
//! printed when the scenario fails) and its own forecast CSV in a temporary directory, built
//! around "now" in 1-minute slots.
//!
//! Time: each forecast is laid out from a slot boundary `p` at least 30 s ahead (see
//! [`first_boundary`]), so a phase the test must observe lasts at least 30 s. Every timestamp
//! the operator writes is whole seconds; tolerances below say how much latency they allow.
//!
//! Power: every pod asks for one `nvidia.com/gpu` and no `spec.power` is given, so the
//! operator's documented default applies: 1 GPU x 400 W x PUE 1.2 = 0.48 kW.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use carbonshift::api::{CarbonAwareJob, Phase};
use chrono::{DurationRound, TimeDelta, Utc};
use common::cluster::{self, must, wait_until, RUN_FOR};
use common::forecast::{first_boundary, Forecast};
use common::operator::*;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::Api;
use serde_json::json;

// ------------------------------------------------------------------------------------------
// The driver

/// All scenarios, run concurrently in one test: they spend their time waiting for forecast
/// minutes to pass, and the test harness runs only as many tests at once as there are CPUs
/// (two here), which would serialise them into three rounds. Each scenario reports PASS or
/// FAIL with its duration; a failing scenario prints its panic, its job history and its
/// operator's log, and leaves its namespace behind for inspection.
///
/// `CARBONSHIFT_E2E_ONLY=pause,flex` runs only the scenarios whose names contain one of the
/// given words.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_end_to_end() {
    if !cluster::enabled() {
        return;
    }
    let _logs = cluster::LogsOnFailure;
    cluster::install_crd();
    let all: Vec<(&str, Scenario)> = vec![
        (
            "pause_and_resume",
            Box::pin(pause_and_resume_pauses_and_resumes_pods()),
        ),
        (
            "flexible_start",
            Box::pin(flexible_start_starts_in_cleanest_window()),
        ),
        (
            "deadline_guard",
            Box::pin(deadline_guard_forces_run_on_dirty_grid()),
        ),
        (
            "operator_restart",
            Box::pin(operator_restart_loses_no_accounting()),
        ),
        (
            "invalid_manifests",
            Box::pin(invalid_manifests_are_refused_with_readable_messages()),
        ),
        (
            "metrics_and_run_now",
            Box::pin(metrics_report_avoided_emissions_and_run_now_sanity()),
        ),
    ];
    run_scenarios("operator e2e scenarios", all).await;
}

// ------------------------------------------------------------------------------------------
// 1. Pause and resume

/// A PauseAndResume job needing 2 min, with two clean minutes split by a dirty one:
/// Waiting (dirty) -> Running (clean slot p) -> Paused (dirty p+1) -> Running (clean p+2)
/// -> Succeeded.
///
/// The workload: the pods carry `run-for: 1h`, i.e. they never finish on their own, and the
/// test plays a training job that checkpoints on SIGTERM and resumes from its checkpoint. It
/// adds up how long its pods really ran (pod start to deletion, API server times) and, once
/// that reaches expectedDuration, marks the running pod complete. This mirrors reality
/// better than a per-pod `run-for` (kwok restarts that clock with every new pod, which is a
/// job that restarts from scratch after each pause) and better than completing the pod when
/// the operator's runtimeSeconds reaches expectedDuration (that would let the operator's
/// own accounting decide when the work is done, so a wrong ledger could not be caught): the
/// work done is measured independently of the operator and compared with its ledger.
async fn pause_and_resume_pauses_and_resumes_pods() {
    let env = Env::new("e2e-pause").await;
    let p = first_boundary(Utc::now());
    let at = |k: i64| p + TimeDelta::minutes(k);
    let f = Forecast::around(p, |k| match k {
        0 | 2 => 50.0,
        ..=1 => 400.0,
        // Dirtier and dirtier afterwards: once resumed, finishing at once is strictly best.
        _ => 450.0 + 10.0 * (k - 3) as f64,
    });
    f.write_csv(&env.forecast, REGION);
    let op = env.operator("operator", &[]);
    op.ready().await;

    let expected = 120;
    let caj = create(
        &env,
        manifest(
            "train",
            json!({"strategy": "PauseAndResume", "expectedDuration": "2m", "maxDelay": "5m"}),
            json!({RUN_FOR: "1h"}),
        ),
    )
    .await;
    let created = created_at(&caj);
    println!("[{}] p = {p}, created {created}", env.ns.name);

    let mut tr = Tracker::new(&env, "train");
    let completed_pod = run_until_finished(&env, &mut tr, expected, at(6)).await;
    let st = tr.status();
    let history = tr.dump();
    println!("[{}] history:\n{history}", env.ns.name);

    assert_eq!(
        tr.phases(),
        vec![
            Phase::Waiting,
            Phase::Running,
            Phase::Paused,
            Phase::Running,
            Phase::Succeeded
        ],
        "phases; history:\n{history}"
    );
    tr.assert_monotonic();
    assert_eq!(
        st.pauses, 1,
        "one dirty minute between two clean ones: exactly one pause; {st:?}"
    );
    assert!(
        completed_pod.is_some(),
        "the test never completed a pod; history:\n{history}"
    );

    // Transitions at the forecast's slot boundaries: start in the first clean minute (not
    // before it), pause when it ends, resume in the second clean minute.
    let (runs, pauses) = tr.transitions();
    assert_eq!(
        runs.len(),
        2,
        "one start and one resume, got runningSince values {runs:?}"
    );
    assert_eq!(
        pauses.len(),
        1,
        "one pause, got pausedSince values {pauses:?}"
    );
    let tol = TimeDelta::seconds(10);
    for (what, got, want) in [
        ("start", runs[0], at(0)),
        ("pause", pauses[0], at(1)),
        ("resume", runs[1], at(2)),
    ] {
        assert!(
            got >= want && got <= want + tol,
            "{what} at {got}, expected at the slot boundary {want} (at most {tol} late)"
        );
    }
    assert_eq!(
        t_opt(&st.start_time),
        Some(runs[0]),
        "startTime is the first start"
    );
    let completion = t_opt(&st.completion_time).expect("completionTime set when Succeeded");

    // Pods: those of the first run deleted on pause (none left while paused), new ones
    // (other UIDs) created on resume.
    let first_run: BTreeSet<String> = tr
        .samples
        .iter()
        .filter(|s| s.at < pauses[0] && t_opt(&s.status.running_since) == Some(runs[0]))
        .flat_map(|s| s.live.iter().cloned())
        .collect();
    assert!(
        !first_run.is_empty(),
        "no pod seen running in the first run; history:\n{history}"
    );
    assert!(
        tr.samples.iter().any(|s| s.status.phase == Some(Phase::Paused) && s.listed == 0),
        "while Paused the child Job still had pods (suspension must delete them); history:\n{history}"
    );
    assert!(
        tr.samples
            .iter()
            .filter(|s| s.status.phase == Some(Phase::Paused))
            .all(|s| s.live.is_empty()),
        "a pod not being deleted while Paused; history:\n{history}"
    );
    let second_run: BTreeSet<String> = tr
        .samples
        .iter()
        .filter(|s| t_opt(&s.status.running_since) == Some(runs[1]))
        .flat_map(|s| s.live.iter().cloned())
        .collect();
    assert!(
        !second_run.is_empty(),
        "no pod seen running after the resume; history:\n{history}"
    );
    assert!(
        first_run.is_disjoint(&second_run),
        "resume reused pods {first_run:?} / {second_run:?}"
    );
    for uid in &first_run {
        let ended = tr.pods_seen[uid].ended;
        assert!(
            ended.is_some_and(|e| e <= pauses[0] + TimeDelta::seconds(5)),
            "pod {uid} of the first run ended {ended:?}, not at the pause {}",
            pauses[0]
        );
    }
    for uid in &second_run {
        let created = tr.pods_seen[uid].created;
        assert!(
            created >= runs[1],
            "pod {uid} of the second run created {created}, before the resume {}",
            runs[1]
        );
    }

    // The ledger: consistent with the transitions and the forecast, and with the work the
    // pods really did. Work counts from each run's first Ready pod (`readySince`) to the
    // pause or the completion; the pods start a moment before the operator sees them
    // Ready, and stop a moment after the pause.
    let ready = tr.ready_starts();
    assert_eq!(
        ready.len(),
        2,
        "one readySince per run: {ready:?}; history:\n{history}"
    );
    for (r, run) in ready.iter().zip(&runs) {
        assert!(
            *r >= *run && *r <= *run + TimeDelta::seconds(10),
            "pods Ready at {r}, run started at {run}"
        );
    }
    let intervals = [(ready[0], pauses[0]), (ready[1], completion)];
    assert_ledger(&st, &intervals, created, &f);
    let work = tr.pod_work_secs(completion);
    assert!(
        st.runtime_seconds <= work + 1 && st.runtime_seconds >= work - 10,
        "runtimeSeconds {} but the pods ran {work} s; history:\n{history}",
        st.runtime_seconds
    );
    let unsuspended: i64 = [(runs[0], pauses[0]), (runs[1], completion)]
        .iter()
        .map(|(a, b)| (*b - *a).num_seconds())
        .sum();
    assert!(
        (st.runtime_seconds + st.waiting_for_pods_seconds - unsuspended).abs() <= 2,
        "runtimeSeconds {} + waitingForPodsSeconds {} should add up to the {unsuspended} s unsuspended",
        st.runtime_seconds,
        st.waiting_for_pods_seconds
    );
    assert!(
        st.emissions_grams > 0.0 && st.baseline_grams > 0.0,
        "{st:?}"
    );
    assert!(
        st.avoided_grams > 0.0 && st.avoided_grams > 0.5 * st.baseline_grams,
        "running in the two 50 g minutes instead of at once (mostly 400 g) must avoid most of the baseline: {st:?}"
    );
    assert!(!st.deadline_missed, "{st:?}");

    let evs = env.events("train").await;
    let reasons = event_reasons(&evs);
    for want in ["Started", "Paused", "Resumed", "Succeeded"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} Event; events:\n{}",
            describe_events(&evs)
        );
    }
    env.ns.delete_and_wait().await;
    drop(op);
}

// ------------------------------------------------------------------------------------------
// 2. Flexible start

/// A FlexibleStart job needing 1 min waits for the cleanest minute (p+2, 50 g; p+1 is a
/// decoy at 200 g) and starts there, not before; it runs without pausing (its pods' own
/// `run-for` equals expectedDuration: a job that cannot checkpoint runs in one go).
async fn flexible_start_starts_in_cleanest_window() {
    let env = Env::new("e2e-flex").await;
    let p = first_boundary(Utc::now());
    let at = |k: i64| p + TimeDelta::minutes(k);
    let f = Forecast::around(p, |k| match k {
        ..=0 => 400.0,
        1 => 200.0,
        2 => 50.0,
        _ => 400.0,
    });
    f.write_csv(&env.forecast, REGION);
    let op = env.operator("operator", &[]);
    op.ready().await;

    let caj = create(
        &env,
        manifest(
            "flex",
            json!({"strategy": "FlexibleStart", "expectedDuration": "1m", "maxDelay": "5m"}),
            json!({RUN_FOR: "60s"}),
        ),
    )
    .await;
    let created = created_at(&caj);
    let mut tr = Tracker::new(&env, "flex");

    // While waiting the status announces the planned start.
    let waiting = tr
        .wait_for(
            "flex Waiting with plannedStart",
            Duration::from_secs(30),
            |st| st.phase == Some(Phase::Waiting) && st.planned_start.is_some(),
        )
        .await;
    assert_eq!(
        t_opt(&waiting.planned_start),
        Some(at(2)),
        "plannedStart while waiting: {waiting:?}"
    );
    assert_eq!(
        t_opt(&waiting.next_transition_time),
        Some(at(2)),
        "nextTransitionTime: {waiting:?}"
    );
    assert_eq!(waiting.next_action.as_deref(), Some("Run"), "{waiting:?}");
    let running = condition(&waiting, "Running").map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(
        running,
        Some(("False".into(), "WaitingForCleanerWindow".into())),
        "{waiting:?}"
    );

    tr.until_finished(at(5)).await;
    let st = tr.status();
    let history = tr.dump();
    println!("[{}] history:\n{history}", env.ns.name);
    assert_eq!(
        tr.phases(),
        vec![Phase::Waiting, Phase::Running, Phase::Succeeded],
        "history:\n{history}"
    );
    tr.assert_monotonic();

    let start = t_opt(&st.start_time).expect("startTime");
    let tol = TimeDelta::seconds(10);
    assert!(
        start >= at(2) && start <= at(2) + tol,
        "started at {start}; the cleanest minute starts at {} (tolerance {tol})",
        at(2)
    );
    // The pods, too, appear only in the window.
    let first_pod = tr
        .pods_seen
        .values()
        .map(|p| p.created)
        .min()
        .expect("a pod");
    assert!(
        first_pod >= at(2),
        "a pod was created at {first_pod}, before the window {}",
        at(2)
    );
    assert_eq!(st.pauses, 0, "FlexibleStart never pauses: {st:?}");
    let completion = t_opt(&st.completion_time).expect("completionTime");
    assert_ledger(&st, &[(tr.first_ready(), completion)], created, &f);
    // The pods run 60 s; the operator counts from when it sees the first one Ready.
    assert!(
        st.runtime_seconds >= 55 && st.runtime_seconds <= 62,
        "runtimeSeconds {}",
        st.runtime_seconds
    );
    assert!(
        st.avoided_grams > 0.0,
        "waiting for 50 g instead of 400 g avoids emissions: {st:?}"
    );

    let evs = env.events("flex").await;
    let reasons = event_reasons(&evs);
    for want in ["Started", "Succeeded"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} Event; events:\n{}",
            describe_events(&evs)
        );
    }
    env.ns.delete_and_wait().await;
    drop(op);
}

// ------------------------------------------------------------------------------------------
// 3. Deadline guard

/// A Threshold job (run below 100 g) on a grid at 400 g until well after its deadline:
/// waiting is what the policy wants, but the deadline guard starts it when the slack less
/// the operator's `--deadline-margin` runs out (expectedDuration 1m, maxDelay 1m, margin
/// 20 s: at creation + 40 s), dirty grid or not, and it finishes in time. Status and Events
/// say DeadlineGuard. The pods run 45 s (a job that finishes within its estimate), so only
/// the operator's own timing decides the deadline.
async fn deadline_guard_forces_run_on_dirty_grid() {
    let env = Env::new("e2e-guard").await;
    let now = Utc::now();
    let base = must("round", now.duration_trunc(TimeDelta::minutes(1)));
    // Clean only from base+3m, which is after the deadline (created + 2m < base + 3m).
    let f = Forecast::around(base, |k| if k >= 3 { 50.0 } else { 400.0 });
    f.write_csv(&env.forecast, REGION);
    let op = env.operator("operator", &[]);
    op.ready().await;

    let caj = create(
        &env,
        manifest(
            "guard",
            json!({"strategy": "Threshold", "thresholdGramsPerKWh": 100, "expectedDuration": "1m", "maxDelay": "1m"}),
            json!({RUN_FOR: "45s"}),
        ),
    )
    .await;
    let created = created_at(&caj);
    let deadline = created + TimeDelta::minutes(2);
    let latest_start = deadline - TimeDelta::minutes(1);
    let margin = TimeDelta::seconds(DEADLINE_MARGIN_SECS);
    // When the guard must fire: the latest start less the start-up margin (the slack at
    // creation, 1m, exceeds the margin, so all of it is taken).
    let guard_start = latest_start - margin;
    let mut tr = Tracker::new(&env, "guard");

    let waiting = tr
        .wait_for("guard Waiting", Duration::from_secs(30), |st| {
            st.phase == Some(Phase::Waiting)
        })
        .await;
    assert_eq!(
        t_opt(&waiting.deadline),
        Some(deadline),
        "status.deadline: {waiting:?}"
    );
    let reason = condition(&waiting, "Running").map(|c| c.reason.clone());
    assert_eq!(
        reason.as_deref(),
        Some("AboveThreshold"),
        "waiting above the threshold: {waiting:?}"
    );
    assert_eq!(
        (t_opt(&waiting.next_transition_time), waiting.next_action.as_deref()),
        (Some(guard_start), Some("Run")),
        "the planned start is the latest start {latest_start} less the {margin} margin: {waiting:?}"
    );

    // Until it runs: then the Running condition must name the guard.
    while tr.phase() == Some(Phase::Waiting) {
        assert!(
            Utc::now() < deadline,
            "still Waiting at the deadline; history:\n{}",
            tr.dump()
        );
        tr.poll().await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let started = tr.status();
    let cond = condition(&started, "Running").cloned();
    assert_eq!(
        cond.as_ref()
            .map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", "DeadlineGuard")),
        "the run must be the deadline guard's: {started:?}; history:\n{}",
        tr.dump()
    );
    tr.until_finished(deadline + TimeDelta::minutes(2)).await;
    let st = tr.status();
    let history = tr.dump();
    println!("[{}] history:\n{history}", env.ns.name);
    assert_eq!(
        tr.phases(),
        vec![Phase::Waiting, Phase::Running, Phase::Succeeded],
        "history:\n{history}"
    );
    tr.assert_monotonic();

    let start = t_opt(&st.start_time).expect("startTime");
    assert!(
        start >= guard_start - TimeDelta::seconds(5),
        "started at {start}: the grid was above the threshold, so it should have waited until the slack less the {margin} margin ran out at {guard_start}"
    );
    assert!(
        start <= latest_start,
        "started at {start}, after the latest start {latest_start} (deadline {deadline} - expectedDuration 1m): \
         a job using its whole expectedDuration would miss the deadline"
    );
    // The margin is the operator's reaction time: the guard fires at `guard_start`, so
    // it may be a little late (requeue, API calls) and still leave most of the margin.
    let tol = TimeDelta::seconds(5);
    assert!(
        start <= guard_start + tol,
        "started at {start}, more than {tol} after {guard_start} (latest start {latest_start} - {margin} margin): \
         the deadline guard must fire before the last possible instant"
    );
    let intensity = started.current_intensity.unwrap_or_default();
    assert!(
        intensity >= 400.0,
        "it ran on a dirty grid: currentIntensity {intensity}"
    );
    let completion = t_opt(&st.completion_time).expect("completionTime");
    assert!(
        completion <= deadline,
        "completed at {completion}, after the deadline {deadline}"
    );
    assert!(
        !st.deadline_missed,
        "deadline met, but status.deadlineMissed: {st:?}"
    );
    assert_ledger(&st, &[(tr.first_ready(), completion)], created, &f);

    let evs = env.events("guard").await;
    let guard = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("DeadlineGuard"));
    assert!(
        guard.is_some(),
        "no DeadlineGuard Event; events:\n{}",
        describe_events(&evs)
    );
    let guard = guard.map(|e| (e.type_.clone(), e.message.clone().unwrap_or_default()));
    if let Some((type_, message)) = guard {
        assert_eq!(
            type_.as_deref(),
            Some("Warning"),
            "DeadlineGuard Event type"
        );
        assert!(
            message.contains("deadline"),
            "DeadlineGuard Event message should say why: {message}"
        );
    }
    for bad in ["DeadlineAtRisk", "DeadlineMissed"] {
        assert!(
            !event_reasons(&evs).iter().any(|r| r == bad),
            "{bad} Event although the deadline was met; events:\n{}",
            describe_events(&evs)
        );
    }
    env.ns.delete_and_wait().await;
    drop(op);
}

// ------------------------------------------------------------------------------------------
// 4. Operator restart

/// SIGKILL the operator while a job runs, start another one (it waits for the dead one's
/// Lease to expire): no runtime or emissions are lost. Status numbers never go backwards,
/// and the final runtime matches the wall-clock running time of the child Job.
async fn operator_restart_loses_no_accounting() {
    let env = Env::new("e2e-restart").await;
    let now = Utc::now();
    let base = must("round", now.duration_trunc(TimeDelta::minutes(1)));
    // Varying every minute, so the emissions integral checks the right interval.
    let f = Forecast::around(base, |k| 200.0 + 50.0 * (k * 3).rem_euclid(5) as f64);
    f.write_csv(&env.forecast, REGION);
    // Accrual persisted every 10 s so the test sees the numbers move.
    let mut op1 = env.operator("operator-1", &["--status-interval", "10s"]);
    op1.ready().await;

    let caj = create(
        &env,
        manifest(
            "steady",
            json!({"strategy": "RunNow", "expectedDuration": "2m", "maxDelay": "8m"}),
            json!({RUN_FOR: "100s"}),
        ),
    )
    .await;
    let created = created_at(&caj);
    let mut tr = Tracker::new(&env, "steady");

    // Running for a while, with accrual persisted.
    let before_kill = tr
        .wait_for(
            "steady Running with runtime persisted",
            Duration::from_secs(90),
            |st| st.phase == Some(Phase::Running) && st.runtime_seconds >= 25,
        )
        .await;
    op1.kill();
    println!(
        "[{}] killed operator-1 at runtime {}",
        env.ns.name, before_kill.runtime_seconds
    );

    // Down for 20 s: the job keeps running in the cluster, nobody accounts for it.
    let down_until = Utc::now() + TimeDelta::seconds(20);
    while Utc::now() < down_until {
        tr.poll().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        tr.phase(),
        Some(Phase::Running),
        "job still running while the operator is down"
    );
    let op2 = env.operator("operator-2", &["--status-interval", "10s"]);
    op2.ready().await;

    tr.until_finished(Utc::now() + TimeDelta::minutes(3)).await;
    let st = tr.status();
    let history = tr.dump();
    println!("[{}] history:\n{history}", env.ns.name);
    assert_eq!(
        tr.phases(),
        vec![Phase::Running, Phase::Succeeded],
        "history:\n{history}"
    );
    tr.assert_monotonic();
    assert!(
        st.runtime_seconds > before_kill.runtime_seconds
            && st.emissions_grams > before_kill.emissions_grams,
        "the restarted operator continued the ledger: before kill {before_kill:?}, final {st:?}"
    );

    // Wall clock: the child Job ran from its startTime to its completionTime.
    let job = must("get child Job", env.jobs.get("steady").await);
    let js = job.status.clone().unwrap_or_default();
    let (j_start, j_end) = (
        t_opt(&js.start_time).expect("child Job startTime"),
        t_opt(&js.completion_time).expect("child Job completionTime"),
    );
    let wall = (j_end - j_start).num_seconds();
    // Work counts from the first Ready pod, which the operator sees a moment after the
    // Job starts: a few seconds less than the Job's wall time, never more.
    assert!(
        st.runtime_seconds <= wall + 1 && st.runtime_seconds >= wall - 5,
        "runtimeSeconds {} but the child Job ran {wall} s ({j_start} .. {j_end}): runtime lost or invented across the restart",
        st.runtime_seconds
    );
    // The pods run 100 s; work counts from when the operator sees the first one Ready.
    assert!(
        st.runtime_seconds >= 95,
        "the pods ran 100 s, runtimeSeconds {}",
        st.runtime_seconds
    );
    let start = t_opt(&st.start_time).expect("startTime");
    assert!(
        tr.first_ready() >= start,
        "readySince {} before startTime {start}",
        tr.first_ready()
    );
    let completion = t_opt(&st.completion_time).expect("completionTime");
    assert_eq!(st.pauses, 0, "{st:?}");
    assert_ledger(&st, &[(tr.first_ready(), completion)], created, &f);

    let log2 = op2.log_text();
    assert!(!log2.contains("panicked"), "operator-2 panicked:\n{log2}");
    env.ns.delete_and_wait().await;
    drop(op1);
    drop(op2);
}

// ------------------------------------------------------------------------------------------
// 5. Invalid manifests

/// What the schema and CEL rules can express is refused by the API server, with a message
/// that names the field and the fix. What they cannot see: an absolute deadline too close to
/// creation runs at once and reports `DeadlineMissed`; one more than 366 days after creation
/// becomes `Ready=False, reason=InvalidSpec`.
async fn invalid_manifests_are_refused_with_readable_messages() {
    let env = Env::new("e2e-invalid").await;
    let pod = json!({RUN_FOR: "30s"});
    let soon =
        (Utc::now() + TimeDelta::hours(6)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    // The valid base manifest is accepted (dry run), so refusals below are about the field.
    let ok = typed(manifest(
        "ok",
        json!({"expectedDuration": "1h", "maxDelay": "6h"}),
        pod.clone(),
    ));
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    must(
        "dry-run create of a valid manifest",
        env.cajs.create(&dry_run, &ok).await,
    );
    // The CRD's maximum (expectedDuration + maxDelay 8784h, 366 days) is accepted.
    for (i, schedule) in [
        json!({"expectedDuration": "1h", "maxDelay": "8783h"}),
        json!({"expectedDuration": "8783h", "maxDelay": "1h"}),
    ]
    .into_iter()
    .enumerate()
    {
        let max = typed(manifest(&format!("max-{i}"), schedule, pod.clone()));
        must(
            "dry-run create of a manifest at the 8784h cap",
            env.cajs.create(&dry_run, &max).await,
        );
    }
    // (what, schedule, the message must contain, the message must not contain). A garbled
    // duration must be reported as such, without the CEL rules that cannot parse it adding
    // internal noise ("type conversion error ... google.protobuf.Duration") that also names
    // rules the manifest does not break.
    let noise = vec!["type conversion error", "google.protobuf"];
    let cases: Vec<(&str, serde_json::Value, Vec<&str>, Vec<&str>)> = vec![
        (
            "both deadline and maxDelay",
            json!({"expectedDuration": "1h", "maxDelay": "6h", "deadline": soon}),
            vec!["set exactly one of schedule.deadline and schedule.maxDelay"],
            vec![],
        ),
        (
            "neither deadline nor maxDelay",
            json!({"expectedDuration": "1h"}),
            vec!["set exactly one of schedule.deadline and schedule.maxDelay"],
            vec![],
        ),
        (
            "negative maxDelay",
            json!({"expectedDuration": "1h", "maxDelay": "-5m"}),
            vec!["spec.schedule.maxDelay", "-5m"],
            noise.clone(),
        ),
        (
            "garbled expectedDuration",
            json!({"expectedDuration": "2 hours", "maxDelay": "6h"}),
            vec!["spec.schedule.expectedDuration", "2 hours"],
            noise.clone(),
        ),
        (
            "days are not a CRD duration",
            json!({"expectedDuration": "1h", "maxDelay": "1d"}),
            vec!["spec.schedule.maxDelay", "1d"],
            noise.clone(),
        ),
        (
            "absurdly long maxDelay (beyond CEL's duration range)",
            json!({"expectedDuration": "1h", "maxDelay": "99999999999999999999h"}),
            vec!["spec.schedule.maxDelay"],
            noise.clone(),
        ),
        (
            "maxDelay over 366 days",
            json!({"expectedDuration": "1h", "maxDelay": "8785h"}),
            vec![
                "spec.schedule.maxDelay",
                "maxDelay must be at most 8784h (366 days)",
            ],
            noise.clone(),
        ),
        (
            "maxDelay far over 366 days (within the pattern)",
            json!({"expectedDuration": "1h", "maxDelay": "999999h"}),
            vec!["maxDelay must be at most 8784h (366 days)"],
            noise.clone(),
        ),
        (
            "expectedDuration over 366 days",
            json!({"expectedDuration": "8785h", "deadline": soon}),
            vec![
                "spec.schedule.expectedDuration",
                "expectedDuration must be at most 8784h (366 days)",
            ],
            noise.clone(),
        ),
        (
            "zero expectedDuration",
            json!({"expectedDuration": "0s", "maxDelay": "6h"}),
            vec!["expectedDuration must be positive"],
            vec![],
        ),
        (
            "zero maxDelay",
            json!({"expectedDuration": "1m", "maxDelay": "0m"}),
            vec!["maxDelay must be positive"],
            vec![],
        ),
        (
            "threshold zero",
            json!({"strategy": "Threshold", "thresholdGramsPerKWh": 0, "expectedDuration": "1h", "maxDelay": "6h"}),
            vec!["thresholdGramsPerKWh must be positive"],
            vec![],
        ),
        (
            "threshold negative",
            json!({"strategy": "Threshold", "thresholdGramsPerKWh": -50.5, "expectedDuration": "1h", "maxDelay": "6h"}),
            vec!["thresholdGramsPerKWh must be positive"],
            vec![],
        ),
        (
            "Threshold without a threshold",
            json!({"strategy": "Threshold", "expectedDuration": "1h", "maxDelay": "6h"}),
            vec!["strategy Threshold needs schedule.thresholdGramsPerKWh"],
            vec![],
        ),
        (
            "expectedDuration + maxDelay over 366 days",
            json!({"expectedDuration": "6h", "maxDelay": "8784h"}),
            vec!["schedule.expectedDuration + schedule.maxDelay must be at most 8784h (366 days)"],
            vec![],
        ),
        (
            "unknown strategy",
            json!({"strategy": "Sometimes", "expectedDuration": "1h", "maxDelay": "6h"}),
            vec!["spec.schedule.strategy", "Sometimes", "FlexibleStart"],
            vec![],
        ),
    ];
    // Raw JSON (not the typed CarbonAwareJob, which cannot even hold an unknown strategy).
    let ar = ApiResource::erase::<CarbonAwareJob>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns.name, &ar);
    let mut failures = Vec::new();
    for (i, (what, schedule, wants, unwanted)) in cases.iter().enumerate() {
        let obj: DynamicObject = must(
            "manifest as JSON object",
            serde_json::from_value(manifest(&format!("bad-{i}"), schedule.clone(), pod.clone())),
        );
        match raw.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("{what}: accepted {schedule}")),
            Err(kube::Error::Api(s)) => {
                println!("[{}] {what}: {} {}", env.ns.name, s.code, s.message);
                if s.code != 422 {
                    failures.push(format!(
                        "{what}: HTTP {} (want 422 Invalid): {}",
                        s.code, s.message
                    ));
                }
                for want in wants {
                    if !s.message.contains(want) {
                        failures.push(format!(
                            "{what}: message does not contain {want:?}: {}",
                            s.message
                        ));
                    }
                }
                for bad in unwanted {
                    if s.message.contains(bad) {
                        failures.push(format!("{what}: message contains {bad:?}: {}", s.message));
                    }
                }
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    // Asserted at the end, so the controller-side check below runs as well.

    // What CEL cannot check: an absolute deadline closer than expectedDuration.
    let base = must("round", Utc::now().duration_trunc(TimeDelta::minutes(1)));
    Forecast::around(base, |_| 300.0).write_csv(&env.forecast, REGION);
    let op = env.operator("operator", &[]);
    op.ready().await;
    let close =
        (Utc::now() + TimeDelta::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    create(
        &env,
        manifest(
            "too-close",
            json!({"expectedDuration": "1h", "deadline": close}),
            pod.clone(),
        ),
    )
    .await;
    // Not refused: it runs at once, and says it will miss the deadline (issue 10, point 3).
    let st = wait_until("too-close Running", Duration::from_secs(60), || async {
        let caj = env.cajs.get("too-close").await?;
        let st = caj.status_or_default();
        Ok::<_, kube::Error>((st.phase == Some(Phase::Running)).then_some(st))
    })
    .await;
    assert!(st.deadline_missed, "{st:?}");
    let running = condition(&st, "Running")
        .cloned()
        .expect("Running condition");
    assert_eq!(running.reason, "DeadlineInfeasible", "{st:?}");
    let job = must("get too-close Job", env.jobs.get("too-close").await);
    assert_eq!(job.spec.and_then(|s| s.suspend), Some(false));
    let evs = wait_until("DeadlineMissed Event", Duration::from_secs(30), || async {
        let evs = env.events("too-close").await;
        Ok::<_, String>(
            evs.iter()
                .any(|e| e.reason.as_deref() == Some("DeadlineMissed"))
                .then_some(evs),
        )
    })
    .await;
    let ev = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("DeadlineMissed"))
        .cloned()
        .expect("event");
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    for want in [
        "even running continuously",
        "running it now",
        "Move the deadline to",
    ] {
        assert!(
            ev.message.as_deref().unwrap_or("").contains(want),
            "DeadlineMissed message should contain {want:?}: {ev:?}"
        );
    }

    // What CEL cannot check either: an absolute deadline more than 366 days after creation.
    let far =
        (Utc::now() + TimeDelta::days(367)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    create(
        &env,
        manifest(
            "too-far",
            json!({"expectedDuration": "1h", "deadline": far}),
            pod.clone(),
        ),
    )
    .await;
    let st = wait_until("too-far Ready=False", Duration::from_secs(60), || async {
        let caj = env.cajs.get("too-far").await?;
        let st = caj.status_or_default();
        Ok::<_, kube::Error>(
            condition(&st, "Ready")
                .is_some_and(|c| c.status == "False")
                .then_some(st),
        )
    })
    .await;
    let ready = condition(&st, "Ready").cloned().expect("Ready condition");
    assert_eq!(ready.reason, "InvalidSpec", "{st:?}");
    for want in ["more than 366 days (8784h) after", "or earlier"] {
        assert!(
            ready.message.contains(want),
            "Ready message should contain {want:?}: {}",
            ready.message
        );
    }
    assert!(
        env.jobs.get_opt("too-far").await.ok().flatten().is_none(),
        "a child Job was created for a deadline beyond the cap"
    );
    assert!(
        failures.is_empty(),
        "invalid manifests:\n{}",
        failures.join("\n")
    );
    env.ns.delete_and_wait().await;
    drop(op);
}

// ------------------------------------------------------------------------------------------
// 6. Metrics, and a plain run-now job

/// A plain RunNow job (and what `kubectl get caj` shows for it) and a FlexibleStart job that
/// waits for a clean minute; once both finished, `/metrics` reports their avoided emissions
/// under the namespace, and `promtool check metrics` accepts the scrape.
async fn metrics_report_avoided_emissions_and_run_now_sanity() {
    let env = Env::new("e2e-metrics").await;
    let ns = env.ns.name.clone();
    let p = first_boundary(Utc::now());
    let f = Forecast::around(p, |k| if k == 0 { 50.0 } else { 400.0 });
    f.write_csv(&env.forecast, REGION);
    let op = env.operator("operator", &[]);
    op.ready().await;

    create(
        &env,
        manifest(
            "now",
            json!({"strategy": "RunNow", "expectedDuration": "30s", "maxDelay": "9m30s"}),
            json!({RUN_FOR: "20s"}),
        ),
    )
    .await;
    create(
        &env,
        manifest(
            "later",
            json!({"strategy": "FlexibleStart", "expectedDuration": "30s", "maxDelay": "4m30s"}),
            json!({RUN_FOR: "30s"}),
        ),
    )
    .await;

    // kubectl's printer columns while `now` runs and `later` waits.
    let table = wait_until(
        "kubectl get caj: now Running, later Waiting",
        Duration::from_secs(30),
        || async {
            let out = cluster::kubectl(&["get", "caj", "-n", &ns]);
            let row = |name: &str, phase: &str| {
                out.lines()
                    .any(|l| l.split_whitespace().take(2).eq([name, phase]))
            };
            Ok::<_, String>((row("now", "Running") && row("later", "Waiting")).then_some(out))
        },
    )
    .await;
    println!("[{ns}] kubectl get caj:\n{table}");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PHASE",
            "REGION",
            "INTENSITY",
            "NEXT",
            "AVOIDED(G)",
            "AGE"
        ],
        "printer columns:\n{table}"
    );
    let now_row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("now "))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(now_row.get(2), Some(&REGION), "REGION column: {now_row:?}");
    assert_eq!(
        now_row.get(3),
        Some(&"400"),
        "INTENSITY column: {now_row:?}"
    );
    // The same through the API: a run-now job starts at once.
    let now_status = must("get now", env.cajs.get("now").await).status_or_default();
    let reason = condition(&now_status, "Running").map(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("RunNow"), "{now_status:?}");

    let mut now_tr = Tracker::new(&env, "now");
    let mut later_tr = Tracker::new(&env, "later");
    now_tr.until_finished(p + TimeDelta::minutes(3)).await;
    later_tr.until_finished(p + TimeDelta::minutes(3)).await;
    let table = cluster::kubectl(&["get", "caj", "-n", &ns]);
    println!("[{ns}] kubectl get caj:\n{table}");
    for name in ["now", "later"] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([name, "Succeeded"])),
            "{name} not Succeeded in kubectl get caj:\n{table}"
        );
    }
    let now_st = now_tr.status();
    let later_st = later_tr.status();
    assert_eq!(now_st.phase, Some(Phase::Succeeded));
    assert_eq!(later_st.phase, Some(Phase::Succeeded));
    assert!(
        now_st.runtime_seconds >= 20 && now_st.emissions_grams > 0.0,
        "{now_st:?}"
    );
    assert!(
        later_st.avoided_grams > 0.0,
        "later ran at 50 g instead of 400 g: {later_st:?}"
    );
    assert!(
        t_opt(&later_st.start_time).is_some_and(|t| t >= p),
        "later started before the clean minute {p}: {later_st:?}"
    );

    // Counted once per finished job, as max(avoided, 0).
    let expected = now_st.avoided_grams.max(0.0) + later_st.avoided_grams.max(0.0);
    let label = format!("namespace=\"{ns}\"");
    let text = op.scrape().await;
    let avoided = metric_value(&text, "carbonshift_avoided_emissions_grams_total", &label);
    assert!(
        avoided.is_some_and(|v| v > 0.0 && rel_close(v, expected, 1e-6)),
        "carbonshift_avoided_emissions_grams_total{{{label}}} = {avoided:?}, expected {expected} (> 0); scrape:\n{text}"
    );
    let emitted = metric_value(&text, "carbonshift_emissions_grams_total", &label);
    let expected_emitted = now_st.emissions_grams + later_st.emissions_grams;
    assert!(
        emitted.is_some_and(|v| rel_close(v, expected_emitted, 1e-6)),
        "carbonshift_emissions_grams_total{{{label}}} = {emitted:?}, expected {expected_emitted}"
    );

    let tool = cluster::tool("promtool");
    let mut child = must(
        &format!("run {} check metrics", tool.display()),
        Command::new(&tool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
    );
    if let Some(mut stdin) = child.stdin.take() {
        must("write scrape to promtool", stdin.write_all(text.as_bytes()));
    }
    let out = must("wait for promtool", child.wait_with_output());
    assert!(
        out.status.success(),
        "promtool check metrics rejected the scrape ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    env.ns.delete_and_wait().await;
    drop(op);
}
