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
    type Scenario = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
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
    ];
    let only = std::env::var("CARBONSHIFT_E2E_ONLY").unwrap_or_default();
    let picked: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let mut tasks = Vec::new();
    for (name, fut) in all {
        if !picked.is_empty() && !picked.iter().any(|p| name.contains(p)) {
            continue;
        }
        tasks.push((
            name,
            tokio::spawn(async move {
                let _guard = ScenarioGuard(name);
                let t0 = std::time::Instant::now();
                fut.await;
                t0.elapsed()
            }),
        ));
    }
    let mut failed = Vec::new();
    for (name, task) in tasks {
        match task.await {
            Ok(d) => println!("PASS {name} in {} s", d.as_secs()),
            Err(e) => {
                println!("FAIL {name}: {e}");
                failed.push(name);
            }
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
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
        json!({"strategy": "RunNow", "expectedDuration": "2m", "maxDelay": "30m"}),
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
    env.ns.delete().await;
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
            json!({"strategy": "PauseAndResume", "expectedDuration": "2m", "maxDelay": "7m"}),
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
    let log = op.log_text();
    let refused = log.matches("status changed since read").count();
    assert!(
        refused >= 1,
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
    env.ns.delete().await;
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
            json!({"strategy": "FlexibleStart", "expectedDuration": "1m", "maxDelay": "8m"}),
        ),
        (
            "deadline",
            json!({"strategy": "FlexibleStart", "expectedDuration": "5m", "maxDelay": "30m"}),
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

    // The image job still starts in its clean window, with the original image.
    let image_started = image
        .wait_for("image job Running", Duration::from_secs(200), |st| {
            st.start_time.is_some()
        })
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
    env.ns.delete().await;
    drop(op);
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

fn assert_totals(what: &str, got: [f64; 4], want: [f64; 4]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
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
            json!({"strategy": "RunNow", "expectedDuration": "1m", "maxDelay": "20m"}),
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
    assert_totals("before the restart", totals(&op, &env.ns.name).await, sums);

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
    assert_totals(
        "after a fourth job",
        totals(&op2, &env.ns.name).await,
        sums4,
    );
    env.ns.delete().await;
    drop(op2);
}
