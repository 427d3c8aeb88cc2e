//! Fault-injection tests of the operator (issue 10): the real `carbonshift` binary against
//! the real kube-apiserver, Job controller, TTL controller and scheduler of the local
//! control plane, kwok playing the GPU nodes' kubelets. Each scenario injects one fault and
//! asserts numbers: Jobs created (by uid), counters against transitions, seconds of runtime.
//!
//! Runs only with `CARBONSHIFT_E2E=1` and `KUBECONFIG` set:
//! ```text
//! hack/cluster.sh up && eval "$(hack/cluster.sh env)"
//! CARBONSHIFT_E2E=1 cargo test --test e2e_faults -- --nocapture
//! ```
//! The scenarios run concurrently in one test (as in `e2e_operator`, they mostly wait for
//! forecast minutes to pass); `CARBONSHIFT_E2E_ONLY=rerun,stale` picks some.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carbonshift::api::{time, Phase};
use chrono::{DateTime, TimeDelta, Utc};
use common::cluster::{self, must, wait_until, RUN_FOR};
use common::em::EmServer;
use common::forecast::{first_boundary, Forecast};
use common::operator::*;
use common::watch_delay::WatchDelay;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

// ------------------------------------------------------------------------------------------
// Helpers

/// Every Job uid ever seen in the namespace, from a watch started before the first one.
struct JobUids {
    seen: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobUids {
    fn watch(env: &Env) -> Self {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let jobs = env.jobs.clone();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(jobs, watcher::Config::default()).boxed();
            while let Some(ev) = events.next().await {
                if let Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) = ev {
                    if let (Some(uid), Ok(mut seen)) = (j.uid(), s.lock()) {
                        seen.insert(uid);
                    }
                }
            }
        });
        Self { seen, task }
    }

    fn uids(&self) -> BTreeSet<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for JobUids {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn count(reasons: &[String], reason: &str) -> usize {
    reasons.iter().filter(|r| r.as_str() == reason).count()
}

/// An operator planning with the Electricity Maps stub `server`, without a fallback.
fn em_operator(env: &Env, server: &EmServer, label: &str, extra: &[&str]) -> Operator {
    let args = server.provider_args();
    let provider: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    env.operator_with_provider(
        label,
        &provider,
        extra,
        &[("ELECTRICITYMAPS_TOKEN", "test-token")],
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

// ------------------------------------------------------------------------------------------
// The driver

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_survives_faults() {
    if !cluster::enabled() {
        return;
    }
    let _logs = cluster::LogsOnFailure;
    cluster::install_crd();
    let all: Vec<(&str, Scenario)> = vec![
        (
            "rerun_after_ttl",
            Box::pin(a_finished_job_never_runs_again()),
        ),
        (
            "stale_watch",
            Box::pin(a_stale_watch_counts_every_transition_once()),
        ),
        ("frozen_edits", Box::pin(no_edit_freezes_a_job())),
        ("totals_restart", Box::pin(totals_survive_a_restart())),
        ("slow_region", Box::pin(a_slow_region_delays_no_other())),
        ("contended_gpus", Box::pin(pending_pods_are_not_work())),
        (
            "fencing",
            Box::pin(a_stopped_leader_writes_nothing_after_losing_the_lease()),
        ),
        (
            "provider_outage",
            Box::pin(an_outage_is_accounted_when_the_provider_returns()),
        ),
        (
            "operator_outage",
            Box::pin(an_operator_outage_is_accounted_from_history()),
        ),
    ];
    run_scenarios("fault scenarios", all).await;
}

// ------------------------------------------------------------------------------------------
// Point 2: a finished job never runs again

/// `ttlSecondsAfterFinished: 0`, the operator SIGKILLed while the job runs, the pod then
/// completes, and the operator comes back 60 s later. The TTL controller deletes the
/// finished Job at once, but the finalizer holds it until the restarted operator has
/// recorded the outcome: Succeeded, exactly one Job ever created (by uid), and a ledger
/// that ends at the Job's completion time.
async fn a_finished_job_never_runs_again() {
    let env = Env::new("e2e-rerun").await;
    let p = first_boundary(Utc::now());
    let f = Forecast::around(p, |k| 200.0 + 10.0 * k as f64);
    f.write_csv(&env.forecast, REGION);
    let uids = JobUids::watch(&env);
    let mut op = env.operator("operator-1", &[]);
    op.ready().await;

    let mut m = manifest(
        "train",
        json!({"strategy": "RunNow", "expectedDuration": "2m", "maxDelay": "28m"}),
        json!({RUN_FOR: "1h"}),
    );
    m["spec"]["template"]["spec"]["ttlSecondsAfterFinished"] = json!(0);
    let caj = create(&env, m).await;
    let created = created_at(&caj);
    let mut tr = Tracker::new(&env, "train");
    let ready_since = tr
        .wait_for("Running with a Ready pod", Duration::from_secs(60), |st| {
            st.ready_since.is_some()
        })
        .await
        .ready_since
        .as_ref()
        .map(time::from_time)
        .expect("readySince");
    tokio::time::sleep(Duration::from_secs(20)).await;

    // The operator dies; the work finishes while it is away.
    op.kill();
    let killed = Utc::now();
    println!("[{}] killed operator-1 at {killed}", env.ns.name);
    let pod = must(
        "list pods",
        env.pods
            .list(&kube::api::ListParams::default().labels(&cluster::job_pods_selector("train")))
            .await,
    )
    .items
    .into_iter()
    .find(cluster::pod_running_ready)
    .expect("a running pod");
    mark_pod_complete(&env.pods, &pod.name_any()).await;
    // The TTL controller deletes the finished Job; the finalizer keeps it.
    let held = wait_until(
        "the finished Job marked for deletion",
        Duration::from_secs(45),
        || async {
            let j = env.jobs.get_opt("train").await?;
            Ok::<_, kube::Error>(j.filter(|j| j.metadata.deletion_timestamp.is_some()))
        },
    )
    .await;
    assert!(
        cluster::job_has_condition(&held, "Complete"),
        "the Job being deleted is the finished one: {:?}",
        held.status
    );
    // The TTL controller deletes in the foreground, so the garbage collector's
    // `foregroundDeletion` may be there too; carbonshift's outlasts it.
    assert!(
        held.finalizers()
            .iter()
            .any(|f| f == "carbonshift.io/cleanup"),
        "carbonshift's finalizer holds the finished Job: {:?}",
        held.finalizers()
    );
    let completion = held
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(time::from_time)
        .expect("completionTime");
    let back = killed + TimeDelta::seconds(60);
    tokio::time::sleep((back - Utc::now()).to_std().unwrap_or_default()).await;
    let still = must("get Job", env.jobs.get_opt("train").await);
    assert!(
        still.is_some(),
        "the finished Job was deleted while the operator was away"
    );
    assert_eq!(
        tr.status().phase,
        Some(Phase::Running),
        "nothing recorded the outcome while the operator was away"
    );

    let op2 = env.operator("operator-2", &[]);
    op2.ready().await;
    let st = tr
        .wait_for("Succeeded", Duration::from_secs(60), |st| {
            st.phase == Some(Phase::Succeeded)
        })
        .await;
    wait_until("the Job is gone", Duration::from_secs(60), || async {
        Ok::<_, kube::Error>(env.jobs.get_opt("train").await?.is_none().then_some(()))
    })
    .await;
    // Long enough for any rerun to show: the operator replans on every change.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        must("get Job", env.jobs.get_opt("train").await).is_none(),
        "a second Job was created"
    );
    let seen = uids.uids();
    assert_eq!(seen.len(), 1, "Jobs created (uids): {seen:?}");
    assert_eq!(
        st.completion_time.as_ref().map(time::from_time),
        Some(completion)
    );
    // The ledger is complete: the run from the first Ready pod to the Job's completion,
    // integrated by the restarted operator over the time it was away.
    assert_ledger(&st, &[(ready_since, completion)], created, &f);
    let reasons = event_reasons(&env.events("train").await);
    assert_eq!(count(&reasons, "Succeeded"), 1, "{reasons:?}");
    assert_eq!(count(&reasons, "ChildJobRecreated"), 0, "{reasons:?}");
    let text = op2.scrape().await;
    let avoided = metric_value(
        &text,
        "carbonshift_avoided_emissions_grams_total",
        &env.ns.name,
    )
    .unwrap_or(0.0);
    assert!(
        (avoided - st.avoided_grams.max(0.0)).abs() < 1e-6,
        "avoided total {avoided} vs status {}",
        st.avoided_grams
    );
    env.ns.delete_and_wait().await;
    drop(op2);
}

// ------------------------------------------------------------------------------------------
// Point 6: no double counting from a stale cache

/// The operator reaches the API server through a proxy that holds back every
/// CarbonAwareJob watch event for 5 s (the child Jobs' events pass at once), so the
/// reconciles a child's change triggers read a CarbonAwareJob without the operator's own
/// last status write. A PauseAndResume job then starts, pauses, resumes and completes;
/// the transition counters, Events and completion totals must equal the transitions.
async fn a_stale_watch_counts_every_transition_once() {
    let env = Env::new("e2e-stale").await;
    let delay =
        WatchDelay::start(env.dir.path(), Duration::from_secs(5), &["carbonawarejobs"]).await;
    let p = first_boundary(Utc::now());
    let at = |k: i64| p + TimeDelta::minutes(k);
    let f = Forecast::around(p, |k| match k {
        0 | 2 => 50.0,
        ..=1 => 400.0,
        _ => 450.0 + 10.0 * (k - 3) as f64,
    });
    f.write_csv(&env.forecast, REGION);
    let kubeconfig = delay.kubeconfig.display().to_string();
    let op = env.operator_with_env("operator", &[], &[("KUBECONFIG", kubeconfig.as_str())]);
    op.ready().await;

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
    let mut tr = Tracker::new(&env, "train");
    let completed = run_until_finished(&env, &mut tr, 120, at(7)).await;
    assert!(completed.is_some(), "history:\n{}", tr.dump());
    let st = tr.status();
    assert_eq!(st.phase, Some(Phase::Succeeded), "history:\n{}", tr.dump());
    assert_eq!(st.pauses, 1, "history:\n{}", tr.dump());

    // Let the last events through before counting.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let text = op.scrape().await;
    let transitions = |action: &str| {
        metric_value(
            &text,
            "carbonshift_transitions_total",
            &format!("action=\"{action}\""),
        )
        .unwrap_or(0.0)
    };
    let reasons = event_reasons(&env.events("train").await);
    println!(
        "[{}] transitions start {} pause {} resume {}; events {reasons:?}; {} watches and {} chunks held back",
        env.ns.name,
        transitions("start"),
        transitions("pause"),
        transitions("resume"),
        delay.delayed_watches(),
        delay.delayed_chunks()
    );
    // The fault was real: the CarbonAwareJob watch was held back and the operator's own
    // writes were refused on a stale read.
    assert!(delay.delayed_watches() >= 1);
    assert!(
        delay.delayed_chunks() >= 5,
        "{} chunks",
        delay.delayed_chunks()
    );
    // A reconcile on a copy without the operator's own last write either sees it refused
    // (409) or, when the copy is one the operator knows it has replaced, waits for the watch.
    let log = op.log_text();
    let refused = log.matches("status changed since read").count();
    let waited = log
        .matches("cached copy older than the last status write")
        .count();
    println!(
        "[{}] on a stale copy: {refused} writes refused, {waited} reconciles waited for the watch",
        env.ns.name
    );
    assert!(
        refused + waited >= 1,
        "no reconcile ran on a stale CarbonAwareJob: the fault was not injected"
    );
    // One of each per real transition.
    assert_eq!(transitions("start"), 1.0);
    assert_eq!(transitions("pause"), f64::from(st.pauses));
    assert_eq!(transitions("resume"), f64::from(st.pauses));
    assert_eq!(count(&reasons, "Started"), 1, "{reasons:?}");
    assert_eq!(count(&reasons, "Paused"), 1, "{reasons:?}");
    assert_eq!(count(&reasons, "Resumed"), 1, "{reasons:?}");
    assert_eq!(count(&reasons, "Succeeded"), 1, "{reasons:?}");
    let total = |name: &str| metric_value(&text, name, &env.ns.name).unwrap_or(0.0);
    for (name, value) in [
        (
            "carbonshift_avoided_emissions_grams_total",
            st.avoided_grams,
        ),
        ("carbonshift_emissions_grams_total", st.emissions_grams),
        (
            "carbonshift_baseline_emissions_grams_total",
            st.baseline_grams,
        ),
        ("carbonshift_energy_kwh_total", st.energy_kwh),
    ] {
        assert!(
            (total(name) - value.max(0.0)).abs() < 1e-6,
            "{name} {} but the status says {value}",
            total(name)
        );
    }
    // And the ledger is the forecast's integral over the runs the pods made.
    let (runs, pauses) = tr.transitions();
    assert_eq!(
        (runs.len(), pauses.len()),
        (2, 1),
        "history:\n{}",
        tr.dump()
    );
    let ready = tr.ready_starts();
    let end = st
        .completion_time
        .as_ref()
        .map(time::from_time)
        .expect("completionTime");
    assert_eq!(ready.len(), 2, "history:\n{}", tr.dump());
    assert_ledger(&st, &[(ready[0], pauses[0]), (ready[1], end)], created, &f);
    env.ns.delete_and_wait().await;
    drop(op);
    drop(delay);
}

// ------------------------------------------------------------------------------------------
// Point 3: no job is frozen

/// Two jobs waiting for a clean window, each edited while it waits:
/// - `image`: the container image is changed. The child Job keeps the original template
///   (a Job's pod template is immutable), `TemplateCurrent` turns False with one
///   `TemplateChangeIgnored` Warning, and the job still starts in its window and succeeds.
/// - `deadline`: the deadline is moved earlier than the job can meet. It starts within
///   seconds with one `DeadlineMissed` Warning and one `carbonshift_deadline_misses_total`,
///   and succeeds.
async fn no_edit_freezes_a_job() {
    let env = Env::new("e2e-frozen").await;
    let p = first_boundary(Utc::now());
    let at = |k: i64| p + TimeDelta::minutes(k);
    // Dirty until p+2, then clean.
    let f = Forecast::around(p, |k| if k < 2 { 500.0 } else { 50.0 });
    f.write_csv(&env.forecast, REGION);
    let op = env.operator("operator", &[]);
    op.ready().await;
    for (name, schedule) in [
        (
            "image",
            json!({"strategy": "FlexibleStart", "expectedDuration": "1m", "maxDelay": "7m"}),
        ),
        (
            "deadline",
            json!({"strategy": "FlexibleStart", "expectedDuration": "5m", "maxDelay": "25m"}),
        ),
    ] {
        create(&env, manifest(name, schedule, json!({RUN_FOR: "1h"}))).await;
    }
    let mut image = Tracker::new(&env, "image");
    let mut deadline = Tracker::new(&env, "deadline");
    for tr in [&mut image, &mut deadline] {
        tr.wait_for("Waiting", Duration::from_secs(30), |st| {
            st.phase == Some(Phase::Waiting)
        })
        .await;
    }
    let original = "registry.example/train:1";

    // The image edit.
    let patch = json!({"spec": {"template": {"spec": {"template": {"spec": {"containers": [{
        "name": "train", "image": "registry.example/train:2",
        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
    }]}}}}}});
    must(
        "edit the image",
        env.cajs
            .patch("image", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    let cond = wait_until("TemplateCurrent=False", Duration::from_secs(30), || async {
        let st = env.cajs.get("image").await?.status_or_default();
        Ok::<_, kube::Error>(
            condition(&st, "TemplateCurrent")
                .filter(|c| c.status == "False")
                .cloned(),
        )
    })
    .await;
    assert_eq!(cond.reason, "TemplateChangeIgnored");

    // The deadline edit: 5 min of work, deadline 2 min from now.
    let edited_at = Utc::now();
    let patch = json!({"spec": {"schedule": {"maxDelay": null,
        "deadline": rfc3339(edited_at + TimeDelta::minutes(2))}}});
    must(
        "move the deadline",
        env.cajs
            .patch("deadline", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    let started = deadline
        .wait_for("deadline job Running", Duration::from_secs(20), |st| {
            st.start_time.is_some()
        })
        .await
        .start_time
        .as_ref()
        .map(time::from_time)
        .expect("startTime");
    let latency = (started - edited_at).num_seconds();
    assert!(
        latency <= 5,
        "started {latency} s after the infeasible edit"
    );
    assert!(deadline.status().deadline_missed);

    // The image job still starts in its clean window, with the original image. The window
    // opens at p + 2 min, and p is up to 90 s away at the start: wait until a minute after
    // it opens, wherever in the minute the test began.
    let window = (at(2) - Utc::now()).to_std().unwrap_or_default();
    let image_started = image
        .wait_for(
            "image job Running",
            window + Duration::from_secs(60),
            |st| st.start_time.is_some(),
        )
        .await
        .start_time
        .as_ref()
        .map(time::from_time)
        .expect("startTime");
    assert!(
        (image_started - at(2)).num_seconds().abs() <= 5,
        "image job started at {image_started}, its window opens at {}",
        at(2)
    );
    let job: Job = must("get image Job", env.jobs.get("image").await);
    let pod_image = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone());
    assert_eq!(pod_image.as_deref(), Some(original));

    // Both finish.
    let until = at(12);
    run_until_finished(&env, &mut image, 60, until).await;
    run_until_finished(&env, &mut deadline, 0, until).await;
    for tr in [&image, &deadline] {
        assert_eq!(tr.status().phase, Some(Phase::Succeeded), "{}", tr.dump());
    }
    let image_reasons = event_reasons(&env.events("image").await);
    assert_eq!(
        count(&image_reasons, "TemplateChangeIgnored"),
        1,
        "{image_reasons:?}"
    );
    let deadline_evs = env.events("deadline").await;
    let deadline_reasons = event_reasons(&deadline_evs);
    assert_eq!(
        count(&deadline_reasons, "DeadlineMissed"),
        1,
        "{deadline_reasons:?}"
    );
    let missed = deadline_evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("DeadlineMissed"))
        .and_then(|e| e.message.clone())
        .unwrap_or_default();
    assert!(missed.contains("running it now"), "{missed}");
    let text = op.scrape().await;
    let misses = text
        .lines()
        .find(|l| l.starts_with("carbonshift_deadline_misses_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(misses, Some(1.0), "deadline misses in:\n{text}");
    env.ns.delete_and_wait().await;
    drop(op);
}

// ------------------------------------------------------------------------------------------
// Points 4 and 5: outages never corrupt the ledger; accounting survives restarts

fn accounted(st: &carbonshift::api::CarbonAwareJobStatus) -> Option<(String, String)> {
    condition(st, "Accounted").map(|c| (c.status.clone(), c.reason.clone()))
}

/// The provider answers 503 to everything (no fallback, 20 s max age) from before a job is
/// created until after it completes. The deadline guard starts the job; nothing before
/// its pod was Ready is runtime; the finished job says what it lacks: its whole runtime
/// in `unaccountedSeconds`, 0 g, `Accounted` False, and a completion Event saying so.
/// Once the provider answers again, its history (the stub serves the past only there)
/// settles the grams: emissions and baseline within 1 % of the integrals over the true
/// intensities, nothing left owed, and the exported totals take in the late grams.
async fn an_outage_is_accounted_when_the_provider_returns() {
    let env = Env::new("e2e-outage").await;
    let p = first_boundary(Utc::now());
    let f = Forecast::around(p, |k| 800.0 - 10.0 * k as f64);
    let server = EmServer::start(&f, &[REGION], true).await;
    server.set_down(true);
    let extra = ["--forecast-refresh", "10s", "--forecast-max-age", "20s"];
    let op = em_operator(&env, &server, "operator", &extra);
    op.ready().await;
    // 1 minute of work due 3 minutes after creation: with no forecast, the guard starts
    // it once the slack (less the 20 s margin) is down to a minute, about 40 s in.
    let caj = create(
        &env,
        manifest(
            "outage",
            json!({"strategy": "PauseAndResume", "expectedDuration": "1m", "maxDelay": "2m"}),
            json!({RUN_FOR: "60s"}),
        ),
    )
    .await;
    let created = created_at(&caj);
    let mut tr = Tracker::new(&env, "outage");
    tr.until_finished(Utc::now() + TimeDelta::minutes(5)).await;
    let st = tr.status();
    let start = t_opt(&st.start_time).expect("startTime");
    let done = t_opt(&st.completion_time).expect("completionTime");
    let ready = tr.first_ready();
    let reasons = event_reasons(&env.events("outage").await);
    println!(
        "[{}] created {created}, guard start {start}, Ready {ready}, done {done}; status {st:?}",
        env.ns.name
    );
    assert_eq!(count(&reasons, "DeadlineGuard"), 1, "{reasons:?}");
    assert!(
        (start - created).num_seconds() >= 30,
        "started {} s after creation: nothing should run before the guard",
        (start - created).num_seconds()
    );
    let ready_secs = (done - ready).num_seconds();
    assert!(
        (st.runtime_seconds - ready_secs).abs() <= 2,
        "runtime {} s, but the pod was Ready {ready_secs} s",
        st.runtime_seconds
    );
    assert!(st.runtime_seconds >= 55, "runtime {} s", st.runtime_seconds);
    assert_eq!((st.emissions_grams, st.baseline_grams), (0.0, 0.0));
    let owed = st.unaccounted_seconds.unwrap_or(0);
    assert!(
        (owed - st.runtime_seconds).abs() <= 1,
        "unaccountedSeconds {owed}, runtime {}",
        st.runtime_seconds
    );
    assert_eq!(
        accounted(&st),
        Some(("False".into(), "IntensitiesMissing".into()))
    );
    let evs = env.events("outage").await;
    let done_msg = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("Succeeded"))
        .and_then(|e| e.message.clone())
        .unwrap_or_default();
    assert!(
        done_msg.contains("not yet in the emissions"),
        "completion Event: {done_msg}"
    );
    assert_eq!(totals(&op, &env.ns.name).await[1], 0.0);

    server.set_down(false);
    let back = Utc::now();
    let st = tr
        .wait_for("the outage settled", Duration::from_secs(150), |st| {
            st.unaccounted.is_empty()
        })
        .await;
    println!(
        "[{}] settled {} s after the provider returned: {} g, baseline {} g; requests {:?}",
        env.ns.name,
        (Utc::now() - back).num_seconds(),
        st.emissions_grams,
        st.baseline_grams,
        server.counts()
    );
    assert_ledger(&st, &[(ready, done)], created, &f);
    assert_eq!(st.unaccounted_seconds, None);
    assert_eq!(accounted(&st), Some(("True".into(), "Recorded".into())));
    assert!(server.requests("past-range", REGION) >= 1);
    tr.assert_monotonic();
    let (sums, n) = status_sums(&env).await;
    assert_eq!(n, 1);
    wait_until(
        "the totals take in the late grams",
        Duration::from_secs(30),
        || async {
            let got = totals(&op, &env.ns.name).await;
            Ok::<_, String>(rel_close(got[1], sums[1], 1e-6).then_some(()))
        },
    )
    .await;
    assert_totals("after settling", totals(&op, &env.ns.name).await, sums);
    env.ns.delete_and_wait().await;
    drop(op);
}

/// Against a live provider (the stub serves the slot `now` falls in onward on its
/// forecast endpoint, and the past only on `past-range`), the operator is SIGKILLed a
/// minute into a 12-minute job and started again 10 minutes later. The intensities rise
/// every minute, so neither a flat value nor the first sample after the restart could
/// stand in for the downtime: the ledger must equal the integrals over the true
/// intensities within 1 %, from the provider's history.
async fn an_operator_outage_is_accounted_from_history() {
    let env = Env::new("e2e-history").await;
    let p = first_boundary(Utc::now());
    let f = Forecast::around(p, |k| 400.0 + 15.0 * k as f64);
    let server = EmServer::start(&f, &[REGION], true).await;
    let extra = ["--forecast-refresh", "10s"];
    let mut op = em_operator(&env, &server, "operator-1", &extra);
    op.ready().await;
    let caj = create(
        &env,
        manifest(
            "history",
            json!({"strategy": "RunNow", "expectedDuration": "12m", "maxDelay": "18m"}),
            json!({RUN_FOR: "12m"}),
        ),
    )
    .await;
    let created = created_at(&caj);
    let mut tr = Tracker::new(&env, "history");
    tr.wait_for("a Ready pod", Duration::from_secs(90), |st| {
        st.ready_since.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    tr.poll().await;
    op.kill();
    let killed = Utc::now();
    let before = server.requests("past-range", REGION);
    while Utc::now() < killed + TimeDelta::minutes(10) {
        tr.poll().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let op2 = em_operator(&env, &server, "operator-2", &extra);
    op2.ready().await;
    tr.until_finished(Utc::now() + TimeDelta::minutes(5)).await;
    let st = tr.status();
    let done = t_opt(&st.completion_time).expect("completionTime");
    let ready = tr.first_ready();
    println!(
        "[{}] Ready {ready}, killed {killed}, restarted {}, done {done}: runtime {} s, {} g, baseline {} g; requests {:?}",
        env.ns.name,
        killed + TimeDelta::minutes(10),
        st.runtime_seconds,
        st.emissions_grams,
        st.baseline_grams,
        server.counts()
    );
    assert!(st.unaccounted.is_empty(), "{:?}", st.unaccounted);
    assert_ledger(&st, &[(ready, done)], created, &f);
    assert!(
        server.requests("past-range", REGION) > before,
        "the restarted operator never asked the history endpoint"
    );
    tr.assert_monotonic();
    env.ns.delete_and_wait().await;
    drop(op2);
}

// ------------------------------------------------------------------------------------------
// Point 11: totals survive restarts

/// The four totals users graph, as one operator exports them for `ns`.
async fn totals(op: &Operator, ns: &str) -> [f64; 4] {
    let text = op.scrape().await;
    [
        "carbonshift_avoided_emissions_grams_total",
        "carbonshift_emissions_grams_total",
        "carbonshift_baseline_emissions_grams_total",
        "carbonshift_energy_kwh_total",
    ]
    .map(|name| metric_value(&text, name, ns).unwrap_or(0.0))
}

/// The same four sums over the finished CarbonAwareJobs' statuses.
async fn status_sums(env: &Env) -> ([f64; 4], usize) {
    let list = must(
        "list CarbonAwareJobs",
        env.cajs.list(&kube::api::ListParams::default()).await,
    );
    let mut sums = [0.0; 4];
    let mut n = 0;
    for caj in list.items {
        let st = caj.status_or_default();
        if st.phase.is_some_and(Phase::is_terminal) {
            n += 1;
            for (sum, v) in sums.iter_mut().zip([
                st.avoided_grams,
                st.emissions_grams,
                st.baseline_grams,
                st.energy_kwh,
            ]) {
                *sum += v.max(0.0);
            }
        }
    }
    (sums, n)
}

/// Waits up to 10 s for `op`'s totals to equal `want`, then asserts they do.
async fn settled_totals(what: &str, op: &Operator, ns: &str, want: [f64; 4]) {
    let close = |got: [f64; 4]| got.iter().zip(want).all(|(g, w)| total_close(*g, w));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut got = totals(op, ns).await;
    while !close(got) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = totals(op, ns).await;
    }
    assert_totals(what, got, want);
}

/// A total equals a sum of statuses, but for float rounding.
fn total_close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-6 * want.abs().max(1.0)
}

fn assert_totals(what: &str, got: [f64; 4], want: [f64; 4]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            total_close(*g, w),
            "{what}: total #{i} (avoided, emitted, baseline, energy) is {g}, the statuses sum to {w}"
        );
    }
}

/// Three jobs finish under one operator; it is SIGKILLed and another starts: its totals
/// equal the sums over the statuses (not reset, not doubled), and a fourth job finishing
/// under it adds exactly its own ledger.
async fn totals_survive_a_restart() {
    let env = Env::new("e2e-totals").await;
    let p = first_boundary(Utc::now());
    let f = Forecast::around(p, |k| 300.0 + 20.0 * k as f64);
    f.write_csv(&env.forecast, REGION);
    let mut op = env.operator("operator-1", &[]);
    op.ready().await;
    let job = |name: &str| {
        manifest(
            name,
            json!({"strategy": "RunNow", "expectedDuration": "1m", "maxDelay": "19m"}),
            json!({RUN_FOR: "20s"}),
        )
    };
    for name in ["a", "b", "c"] {
        create(&env, job(name)).await;
    }
    wait_until("three jobs Succeeded", Duration::from_secs(120), || async {
        let (_, n) = status_sums(&env).await;
        Ok::<_, String>((n == 3).then_some(()))
    })
    .await;
    let (sums, _) = status_sums(&env).await;
    assert!(sums[1] > 0.0, "the jobs emitted nothing: {sums:?}");
    // The operator counts a completion right after the API server confirms its status
    // write, so a list can show it a moment earlier than the metric.
    settled_totals("before the restart", &op, &env.ns.name, sums).await;

    op.kill();
    let op2 = env.operator("operator-2", &[]);
    op2.ready().await;
    // A standby exports no totals; the new process takes the Lease once the killed one's
    // expires (15 s) and then exports them, restored from the statuses.
    wait_until(
        "operator-2 exports totals",
        Duration::from_secs(60),
        || async { Ok::<_, String>((totals(&op2, &env.ns.name).await[1] > 0.0).then_some(())) },
    )
    .await;
    assert_totals("after the restart", totals(&op2, &env.ns.name).await, sums);

    create(&env, job("d")).await;
    wait_until(
        "the fourth job Succeeded",
        Duration::from_secs(120),
        || async {
            let (_, n) = status_sums(&env).await;
            Ok::<_, String>((n == 4).then_some(()))
        },
    )
    .await;
    let (sums4, _) = status_sums(&env).await;
    assert!(sums4[1] > sums[1]);
    settled_totals("after a fourth job", &op2, &env.ns.name, sums4).await;
    env.ns.delete_and_wait().await;
    drop(op2);
}

// ------------------------------------------------------------------------------------------
// Points 8 and 9: one slow provider slows nothing else; unknown and abandoned regions

/// Four jobs in region AA and one in BB, with at most two reconciles at once. Region AA's
/// endpoint starts hanging (60 s per request, beyond the operator's 10 s timeout and its
/// retries) 30 s before every job is due to start: BB's, and AA's planned with AA's last
/// forecast, must start within 5 s of their planned time. Then 200 jobs with random unknown regions are refused `RegionUnknown` with at most
/// one request per region, and once every job is deleted the upstream request count stays
/// flat.
async fn a_slow_region_delays_no_other() {
    let env = Env::new("e2e-slow").await;
    let p = first_boundary(Utc::now()) + TimeDelta::minutes(1);
    let at = |k: i64| p + TimeDelta::minutes(k);
    // Dirty until p, clean from p on: every job is planned to start at p.
    let f = Forecast::around(p, |k| if k < 0 { 500.0 } else { 50.0 });
    let server = EmServer::start(&f, &["AA", "BB"], false).await;
    let op = em_operator(
        &env,
        &server,
        "operator",
        &[
            "--forecast-refresh",
            "10s",
            "--max-concurrent-reconciles",
            "2",
        ],
    );
    op.ready().await;
    let job = |name: &str, region: &str, schedule: serde_json::Value| {
        let mut m = manifest(name, schedule, json!({RUN_FOR: "1h"}));
        m["spec"]["region"] = json!(region);
        m
    };
    for i in 0..4 {
        let mut m = job(
            &format!("aa-{i}"),
            "AA",
            json!({"strategy": "FlexibleStart", "expectedDuration": "5m", "maxDelay": "35m"}),
        );
        m["spec"]["schedule"]["deadline"] = json!(rfc3339(at(40)));
        m["spec"]["schedule"]
            .as_object_mut()
            .map(|o| o.remove("maxDelay"));
        create(&env, m).await;
    }
    create(
        &env,
        job(
            "bb",
            "BB",
            json!({"strategy": "FlexibleStart", "expectedDuration": "1m", "maxDelay": "19m"}),
        ),
    )
    .await;
    let mut bb = Tracker::new(&env, "bb");
    bb.wait_for("bb Waiting", Duration::from_secs(30), |st| {
        st.phase == Some(Phase::Waiting)
    })
    .await;
    let planned = bb
        .status()
        .planned_start
        .as_ref()
        .map(time::from_time)
        .expect("plannedStart");
    assert_eq!(planned, p, "bb is planned for the first clean minute");
    // AA hangs from 30 s before bb's start on.
    let hang_at = p - TimeDelta::seconds(30);
    tokio::time::sleep((hang_at - Utc::now()).to_std().unwrap_or_default()).await;
    server.set_hang(true);
    let aa_before = server.requests("forecast", "AA");
    let started = bb
        .wait_for("bb started", Duration::from_secs(90), |st| {
            st.start_time.is_some()
        })
        .await
        .start_time
        .as_ref()
        .map(time::from_time)
        .expect("startTime");
    let late = (started - planned).num_seconds();
    let aa_during = server.requests("forecast", "AA") - aa_before;
    println!(
        "[{}] bb planned {planned}, started {started} ({late} s late); AA asked {aa_during} times while hanging",
        env.ns.name
    );
    assert!(aa_during >= 1, "AA was never asked while it hung: no fault");
    assert!(late <= 5, "bb started {late} s after its planned time");
    // Even the hanging region's jobs started on time, planned with its last forecast.
    for i in 0..4 {
        let name = format!("aa-{i}");
        let st = wait_until(
            format!("{name} started"),
            Duration::from_secs(15),
            || async {
                let st = env.cajs.get(&name).await?.status_or_default();
                Ok::<_, kube::Error>(st.start_time.is_some().then_some(st))
            },
        )
        .await;
        let t = st.start_time.as_ref().map(time::from_time);
        assert!(
            t.is_some_and(|t| (t - p).num_seconds().abs() <= 5),
            "aa-{i} started at {t:?}, planned {p}: {st:?}"
        );
    }
    server.set_hang(false);

    // Unknown regions: refused, and asked about at most once each.
    let mut unknown = BTreeSet::new();
    for i in 0..200u32 {
        let region = format!("Q{:03X}", (i * 7919 + 17) % 4096);
        unknown.insert(region.clone());
        create(
            &env,
            job(
                &format!("u-{i}"),
                &region,
                json!({"strategy": "RunNow", "expectedDuration": "1m", "maxDelay": "19m"}),
            ),
        )
        .await;
    }
    wait_until(
        "200 jobs RegionUnknown",
        Duration::from_secs(120),
        || async {
            let list = env.cajs.list(&kube::api::ListParams::default()).await?;
            let n = list
                .items
                .iter()
                .filter(|c| {
                    condition(&c.status_or_default(), "Ready")
                        .is_some_and(|r| r.status == "False" && r.reason == "RegionUnknown")
                })
                .count();
            Ok::<_, kube::Error>((n == 200).then_some(()))
        },
    )
    .await;
    let counts = server.counts();
    let most = unknown
        .iter()
        .map(|r| server.requests("forecast", r))
        .max()
        .unwrap_or(0);
    assert!(
        most <= 1,
        "an unknown region was asked {most} times: {counts:?}"
    );
    let created_jobs = must("list Jobs", env.jobs.list(&Default::default()).await).items;
    assert!(
        created_jobs.iter().all(|j| !j.name_any().starts_with("u-")),
        "a Job was created for an unknown region"
    );

    // Abandoned regions: delete everything; after three refresh intervals nothing is polled.
    must(
        "delete all CarbonAwareJobs",
        env.cajs
            .delete_collection(&Default::default(), &Default::default())
            .await,
    );
    tokio::time::sleep(Duration::from_secs(45)).await;
    let before = server.total();
    tokio::time::sleep(Duration::from_secs(40)).await;
    let after = server.total();
    println!(
        "[{}] upstream requests {before} then {after} 40 s later, all jobs deleted",
        env.ns.name
    );
    assert_eq!(after, before, "regions without jobs are still polled");
    env.ns.delete_and_wait().await;
    drop(op);
}

// ------------------------------------------------------------------------------------------
// Point 1: work is what ran

/// A taint on a node for the life of the value (removed on drop, also when the test fails).
struct Taint {
    node: String,
    key: String,
}

impl Taint {
    fn add(node: &str, taint: &str) -> Self {
        cluster::kubectl(&["taint", "nodes", node, taint, "--overwrite"]);
        let key = taint.split(['=', ':']).next().unwrap_or(taint).to_string();
        Self {
            node: node.to_string(),
            key,
        }
    }
}

impl Drop for Taint {
    fn drop(&mut self) {
        let _ = std::process::Command::new(cluster::tool("kubectl"))
            .args(["taint", "nodes", &self.node, &format!("{}-", self.key)])
            .output();
    }
}

/// Every GPU of node kwok-gpu-3 is held by another Job until 5 minutes after a
/// CarbonAwareJob pinned to that node is due to start. While its pod is Pending the
/// runtime does not grow (the wait is `waitingForPodsSeconds`); the start-up latency is
/// measured (`startupSeconds` about 300); the job then runs its 2 minutes and meets its
/// deadline, which was feasible at that latency.
async fn pending_pods_are_not_work() {
    let node = "kwok-gpu-3";
    // The node is this scenario's alone (the other scenarios run at the same time).
    let _taint = Taint::add(node, "carbonshift.io/contended=true:NoSchedule");
    let env = Env::new("e2e-contended").await;
    let p = first_boundary(Utc::now());
    let at = |k: i64| p + TimeDelta::minutes(k);
    let f = Forecast::around(p, |k| if k < 0 { 500.0 } else { 100.0 + k as f64 });
    f.write_csv(&env.forecast, REGION);
    let pin = json!({"kubernetes.io/hostname": node});
    let tolerate =
        json!([{"key": "carbonshift.io/contended", "operator": "Exists", "effect": "NoSchedule"}]);
    let all_pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(env.client.clone());
    wait_until(
        "no other pod on the node",
        Duration::from_secs(300),
        || async {
            let lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={node}"));
            let others = all_pods
                .list(&lp)
                .await?
                .items
                .iter()
                .filter(|p| {
                    !matches!(cluster::pod_phase(p), "Succeeded" | "Failed")
                        && p.metadata.deletion_timestamp.is_none()
                })
                .count();
            Ok::<_, kube::Error>((others == 0).then_some(()))
        },
    )
    .await;
    // The holder: 8 pods of 1 GPU each on the node, finishing at p+5m.
    let holder: Job = must(
        "holder Job",
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "holder"},
            "spec": {"parallelism": 8, "completions": 8, "backoffLimit": 0, "template": {
                "metadata": {"annotations": {RUN_FOR: rfc3339(at(5))}},
                "spec": {"restartPolicy": "Never", "nodeSelector": pin, "tolerations": tolerate,
                    "containers": [{
                    "name": "hold", "image": "registry.example/hold:1",
                    "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
                }]}
            }}
        })),
    );
    must(
        "create holder",
        env.jobs.create(&Default::default(), &holder).await,
    );
    wait_until("8 holder pods running", Duration::from_secs(60), || async {
        let pods = env
            .pods
            .list(&kube::api::ListParams::default().labels("job-name=holder"))
            .await?;
        let n = pods
            .items
            .iter()
            .filter(|p| cluster::pod_running_ready(p))
            .count();
        Ok::<_, kube::Error>((n == 8).then_some(()))
    })
    .await;

    let op = env.operator("operator", &[]);
    op.ready().await;
    let mut m = manifest(
        "train",
        json!({"strategy": "FlexibleStart", "expectedDuration": "2m",
               "deadline": rfc3339(at(9))}),
        json!({RUN_FOR: "1h"}),
    );
    m["spec"]["template"]["spec"]["template"]["spec"]["nodeSelector"] = pin;
    m["spec"]["template"]["spec"]["template"]["spec"]["tolerations"] = tolerate;
    let caj = create(&env, m).await;
    let created = created_at(&caj);
    let mut tr = Tracker::new(&env, "train");
    let st = tr
        .wait_for("started", Duration::from_secs(150), |st| {
            st.start_time.is_some()
        })
        .await;
    let started = st
        .start_time
        .as_ref()
        .map(time::from_time)
        .expect("startTime");
    assert!(
        (started - p).num_seconds().abs() <= 5,
        "due at {p}, started at {started}"
    );
    // Pending until the holder finishes: runtime stays at zero all that time.
    let st = tr
        .wait_for("a Ready pod", Duration::from_secs(400), |st| {
            st.ready_since.is_some()
        })
        .await;
    let ready_since = st
        .ready_since
        .as_ref()
        .map(time::from_time)
        .expect("readySince");
    let pending_max = tr
        .samples
        .iter()
        .filter(|s| s.status.ready_since.is_none() && s.status.start_time.is_some())
        .map(|s| s.status.runtime_seconds)
        .max()
        .unwrap_or(0);
    let waited = tr
        .samples
        .iter()
        .filter(|s| s.status.ready_since.is_none())
        .map(|s| s.status.waiting_for_pods_seconds)
        .max()
        .unwrap_or(0);
    let latency = st.startup_seconds.unwrap_or(0);
    println!(
        "[{}] started {started}, first Ready pod {ready_since}: startupSeconds {latency}, \
         runtime while Pending at most {pending_max} s, waitingForPodsSeconds {waited} s",
        env.ns.name
    );
    assert!(
        ready_since >= at(5),
        "the pod ran before the GPUs were free"
    );
    assert!(
        pending_max <= 1,
        "runtime grew to {pending_max} s while the pod was Pending"
    );
    assert!(
        (latency - (ready_since - started).num_seconds()).abs() <= 1,
        "startupSeconds {latency} vs {} s from start to the first Ready pod",
        (ready_since - started).num_seconds()
    );
    assert!((290..=330).contains(&latency), "startupSeconds {latency}");
    run_until_finished(&env, &mut tr, 120, at(10)).await;
    let st = tr.status();
    assert_eq!(st.phase, Some(Phase::Succeeded), "{}", tr.dump());
    let end = st
        .completion_time
        .as_ref()
        .map(time::from_time)
        .expect("completionTime");
    assert!(
        end <= at(9),
        "finished at {end}, after the deadline {}",
        at(9)
    );
    assert!(!st.deadline_missed);
    assert!(
        st.waiting_for_pods_seconds >= 290,
        "waitingForPodsSeconds {}",
        st.waiting_for_pods_seconds
    );
    assert_ledger(&st, &[(ready_since, end)], created, &f);
    env.ns.delete_and_wait().await;
    drop(op);
}

// ------------------------------------------------------------------------------------------
// Point 7: leader fencing

/// One write request from the API server's audit log.
#[derive(Debug)]
struct AuditWrite {
    at: DateTime<Utc>,
    agent: String,
    verb: String,
    resource: String,
    name: String,
    code: i64,
}

/// The audit log's write requests in namespace `ns` (the local cluster logs writes to
/// CarbonAwareJobs, Jobs and Leases: hack/cluster.sh).
fn audit_writes(ns: &str) -> Vec<AuditWrite> {
    let path = std::env::var("CARBONSHIFT_AUDIT_LOG")
        .expect("CARBONSHIFT_AUDIT_LOG (hack/cluster.sh env)");
    let text = must("read the audit log", std::fs::read_to_string(&path));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete" && e["objectRef"]["namespace"] == ns)
        .filter_map(|e| {
            let at = e["requestReceivedTimestamp"].as_str()?.parse().ok()?;
            let sub = e["objectRef"]["subresource"].as_str().unwrap_or("");
            Some(AuditWrite {
                at,
                agent: e["userAgent"].as_str().unwrap_or("").to_string(),
                verb: e["verb"].as_str().unwrap_or("").to_string(),
                resource: format!(
                    "{}{}{sub}",
                    e["objectRef"]["resource"].as_str().unwrap_or(""),
                    if sub.is_empty() { "" } else { "/" }
                ),
                name: e["objectRef"]["name"].as_str().unwrap_or("").to_string(),
                code: e["responseStatus"]["code"].as_i64().unwrap_or(0),
            })
        })
        .collect()
}

/// Two replicas share the Lease. The leader is SIGSTOPped 45 s before a job is due to
/// start, for at least 30 s and until the standby has taken the Lease and started the job
/// on time. After SIGCONT the
/// old leader steps down (it exits, to rejoin as a standby) without a single write: the
/// API server's audit log shows no request from it once the standby holds the Lease.
async fn a_stopped_leader_writes_nothing_after_losing_the_lease() {
    let env = Env::new("e2e-fencing").await;
    let p = first_boundary(Utc::now()) + TimeDelta::minutes(1);
    let at = |k: i64| p + TimeDelta::minutes(k);
    let f = Forecast::around(p, |k| if k < 1 { 500.0 } else { 50.0 });
    f.write_csv(&env.forecast, REGION);
    let mut a = env.operator("operator-a", &[]);
    a.ready().await;
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(env.client.clone(), &env.ns.name);
    let holder = || async {
        leases
            .get_opt("carbonshift-leader")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .unwrap_or_default()
    };
    let a_id = format!("_{})", a.pid().expect("pid"));
    wait_until("operator-a leads", Duration::from_secs(30), || async {
        Ok::<_, String>(
            format!("{})", holder().await)
                .ends_with(&a_id)
                .then_some(()),
        )
    })
    .await;
    let b = env.operator("operator-b", &[]);
    b.ready().await;
    let b_id = format!("_{})", b.pid().expect("pid"));
    create(
        &env,
        manifest(
            "train",
            json!({"strategy": "FlexibleStart", "expectedDuration": "1m", "maxDelay": "14m"}),
            json!({RUN_FOR: "1h"}),
        ),
    )
    .await;
    let mut tr = Tracker::new(&env, "train");
    tr.wait_for("Waiting", Duration::from_secs(30), |st| {
        st.phase == Some(Phase::Waiting)
    })
    .await;

    let stop_at = at(1) - TimeDelta::seconds(45);
    tokio::time::sleep((stop_at - Utc::now()).to_std().unwrap_or_default()).await;
    a.signal("STOP");
    let stopped = Utc::now();
    println!("[{}] SIGSTOP operator-a at {stopped}", env.ns.name);
    wait_until("operator-b leads", Duration::from_secs(40), || async {
        Ok::<_, String>(
            format!("{})", holder().await)
                .ends_with(&b_id)
                .then_some(()),
        )
    })
    .await;
    let st = tr
        .wait_for("started", Duration::from_secs(60), |st| {
            st.start_time.is_some()
        })
        .await;
    let started = st
        .start_time
        .as_ref()
        .map(time::from_time)
        .expect("startTime");
    tokio::time::sleep(
        ((stopped + TimeDelta::seconds(30)) - Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
    .await;
    a.signal("CONT");
    let resumed = Utc::now();
    let exited = wait_until("operator-a steps down", Duration::from_secs(30), || {
        let e = a.exited();
        async move { Ok::<_, String>(e) }
    })
    .await;
    // Let any late write of the old leader reach the audit log.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = audit_writes(&env.ns.name);
    let b_took = writes
        .iter()
        .filter(|w| w.agent.ends_with(&b_id) && w.resource == "leases" && w.code < 300)
        .map(|w| w.at)
        .min()
        .expect("operator-b's first Lease write");
    let late: Vec<&AuditWrite> = writes
        .iter()
        .filter(|w| w.agent.ends_with(&a_id) && w.at >= b_took)
        .collect();
    let a_writes = writes.iter().filter(|w| w.agent.ends_with(&a_id)).count();
    let b_writes = writes.iter().filter(|w| w.agent.ends_with(&b_id)).count();
    println!(
        "[{}] stopped {stopped}, b took the Lease {b_took}, job started {started}, resumed {resumed}, \
         a exited {exited:?}; audit: {a_writes} writes by a, {b_writes} by b, {} by a after b took over",
        env.ns.name,
        late.len()
    );
    assert!(
        a_writes >= 2,
        "the audit log does not name operator-a's writes: no evidence"
    );
    assert!(
        b_writes >= 2,
        "operator-b wrote {b_writes} times: it never acted"
    );
    let late_txt: Vec<String> = late
        .iter()
        .map(|w| {
            format!(
                "{} {} {}/{} -> {}",
                w.at, w.verb, w.resource, w.name, w.code
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "the old leader wrote after losing the Lease: {late_txt:?}"
    );
    assert!(!exited.success(), "operator-a exited {exited:?}");
    assert!(
        (started - at(1)).num_seconds().abs() <= 5,
        "started at {started}, planned {}",
        at(1)
    );
    let log = a.log_text();
    assert!(
        log.contains("stepping down") || log.contains("lost the Lease"),
        "operator-a's log says nothing of stepping down"
    );
    // It rejoins as a standby.
    let a2 = env.operator("operator-a2", &[]);
    a2.ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a2.log_text().contains("standing by"), "{}", a2.log_text());
    assert!(format!("{})", holder().await).ends_with(&b_id));
    drop(a2);
    // The Lease lives in this namespace: once the namespace terminates, b can no longer
    // renew it and steps down. So the CarbonAwareJob goes first, while b leads, and b
    // releases its child Job's finalizer (the orphan sweep) before the namespace goes.
    must(
        "delete the CarbonAwareJob",
        env.cajs.delete("train", &Default::default()).await,
    );
    wait_until("the child Job gone", Duration::from_secs(60), || async {
        Ok::<_, kube::Error>(env.jobs.get_opt("train").await?.is_none().then_some(()))
    })
    .await;
    env.ns.delete_and_wait().await;
    drop(b);
    drop(a);
}
