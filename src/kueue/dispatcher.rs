//! `carbonshift run --multikueue-dispatcher`: the external MultiKueue dispatcher on a
//! manager cluster (see [`super::dispatch`] for what it decides, docs/multicluster.md for
//! the set-up).
//!
//! Each Workload whose `status.admissionChecks` has a MultiKueue AdmissionCheck is
//! reconciled: its worker clusters (the check's MultiKueueConfig, each MultiKueueCluster's
//! region label and `Active` condition), its job object's schedule (the same
//! `carbonshift.io/*` annotations the carbon-window check reads), each region's
//! intensities from the operator's forecast cache, the regions ranked by
//! [`crate::plan::spatial::rank`], and then [`super::dispatch::step`]: nominate a cluster
//! (`status.nominatedClusterNames`, server-side applied), or wait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::annotations::workload_schedule;
use super::controller::{job_object, JobMeta, Kinds};
use super::dispatch::{
    nominated_value, order, parse_list, parse_nominated, step, Step, View, Why, Worker,
    EXPECTED_START, MULTIKUEUE_CONTROLLER, NOMINATED, PASSED_OVER, REGIONS, REGION_LABEL,
};
use super::workload::{
    has_condition, AdmissionCheck, MultiKueueCluster, MultiKueueConfig, Workload,
};
use crate::controller::build::{planning_deadline, EventNote};
use crate::controller::{self, error_policy, Context, Error, FIELD_MANAGER};
use crate::plan::horizon::{planning_series, DailyProfile};
use crate::plan::spatial::{is_allowed, rank, Candidate};
use crate::plan::{Constraints, JobState, PlanRequest, Strategy};
use crate::series::Series;

/// Work a job without a (valid) schedule is ranked for: run at once for an hour.
pub const UNSCHEDULED_WORK_SECS: i64 = 3_600;
/// Forecast past looked up for a job not yet started (the daily profile's learning span).
const HISTORY_SECS: i64 = 3 * 86_400;

struct Dctx {
    ctx: Arc<Context>,
    checks: Store<AdmissionCheck>,
    configs: Store<MultiKueueConfig>,
    clusters: Store<MultiKueueCluster>,
    kinds: Kinds,
    timeout: TimeDelta,
}

/// Runs the dispatcher until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    timeout: TimeDelta,
    refreshed: Option<tokio::sync::broadcast::Receiver<String>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let client = ctx.client.clone();
    let workloads: Api<Workload> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = Api::<MultiKueueCluster>::all(client.clone())
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        tracing::error!(error = %e,
            "--multikueue-dispatcher: cannot list MultiKueueClusters (kueue.x-k8s.io/v1beta2): is Kueue v0.15 or newer with MultiKueue installed, and may this service account list them?");
        return Err(e.into());
    }
    let (checks, checks_w) = reflector::store();
    let (configs, configs_w) = reflector::store();
    let (clusters, clusters_w) = reflector::store();
    let drain = |s: futures::stream::BoxStream<'static, ()>| tokio::spawn(s.for_each(|_| async {}));
    let reflectors = [
        drain(
            watcher(
                Api::<AdmissionCheck>::all(client.clone()),
                Default::default(),
            )
            .default_backoff()
            .reflect(checks_w)
            .applied_objects()
            .map(|_| ())
            .boxed(),
        ),
        drain(
            watcher(
                Api::<MultiKueueConfig>::all(client.clone()),
                Default::default(),
            )
            .default_backoff()
            .reflect(configs_w)
            .applied_objects()
            .map(|_| ())
            .boxed(),
        ),
        drain(
            watcher(
                Api::<MultiKueueCluster>::all(client.clone()),
                Default::default(),
            )
            .default_backoff()
            .reflect(clusters_w)
            .applied_objects()
            .map(|_| ())
            .boxed(),
        ),
    ];
    let _ = futures::join!(
        checks.wait_until_ready(),
        configs.wait_until_ready(),
        clusters.wait_until_ready()
    );
    let d = Arc::new(Dctx {
        ctx: ctx.clone(),
        checks,
        configs,
        clusters,
        kinds: Kinds::default(),
        timeout,
    });
    let mut c = Controller::new(workloads, watcher::Config::default().any_semantic());
    if let Some(rx) = refreshed {
        // A new forecast can make another cluster the cleaner one before dispatch.
        c = c.reconcile_all_on(controller::refreshes(rx));
    }
    tracing::info!(
        dispatcher = super::dispatch::DISPATCHER_NAME,
        timeout_secs = timeout.num_seconds(),
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "MultiKueue dispatcher started"
    );
    c.with_config(
        kube::runtime::controller::Config::default().concurrency(ctx.max_concurrent_reconciles),
    )
    .graceful_shutdown_on(shutdown)
    .run(
        reconcile,
        |wl, e, d: Arc<Dctx>| error_policy(wl, e, d.ctx.clone()),
        d,
    )
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "dispatch reconcile request failed");
        }
    })
    .await;
    reflectors.iter().for_each(|r| r.abort());
    tracing::info!("MultiKueue dispatcher stopped");
    Ok(())
}

/// The worker clusters of the Workload's MultiKueue AdmissionCheck, None when it has none.
fn workers_of(d: &Dctx, wl: &Workload) -> Option<Vec<Worker>> {
    let entries = &wl.status.as_ref()?.admission_checks;
    let config = entries.iter().find_map(|e| {
        let ac = d.checks.get(&ObjectRef::new(&e.name))?;
        (ac.spec.controller_name == MULTIKUEUE_CONTROLLER)
            .then(|| ac.spec.parameters.as_ref().map(|p| p.name.clone()))
    })?;
    let names = config
        .and_then(|c| d.configs.get(&ObjectRef::new(&c)))
        .map(|c| c.spec.clusters.clone())
        .unwrap_or_default();
    Some(
        names
            .into_iter()
            .map(|name| {
                let mkc = d.clusters.get(&ObjectRef::new(&name));
                Worker {
                    region: mkc
                        .as_ref()
                        .and_then(|c| c.labels().get(REGION_LABEL).cloned()),
                    active: mkc.as_ref().is_some_and(|c| {
                        c.status
                            .as_ref()
                            .is_some_and(|s| has_condition(&s.conditions, "Active"))
                    }),
                    name,
                }
            })
            .collect(),
    )
}

fn view_of(wl: &Workload) -> View {
    let status = wl.status.clone().unwrap_or_default();
    let a = wl.annotations();
    View {
        quota_reserved: has_condition(&status.conditions, "QuotaReserved"),
        finished: has_condition(&status.conditions, "Finished"),
        dispatched: status.cluster_name.filter(|c| !c.is_empty()),
        nominated: status.nominated_cluster_names,
        ours: a.get(NOMINATED).and_then(|s| parse_nominated(s)),
        passed_over: a
            .get(PASSED_OVER)
            .map(|s| parse_list(s))
            .unwrap_or_default(),
        expected_start: a
            .get(EXPECTED_START)
            .and_then(|s| crate::timefmt::parse(s).ok()),
    }
}

/// What a region plan needs of the job: work, deadline, strategy and constraints, or why
/// the annotations give none (then the job is ranked as an hour's run from now).
struct Job {
    work_secs: i64,
    deadline: DateTime<Utc>,
    strategy: Strategy,
    constraints: Constraints,
    problem: Option<String>,
}

fn job_of(meta: &JobMeta, now: DateTime<Utc>) -> Job {
    let fallback = |problem: Option<String>| Job {
        work_secs: UNSCHEDULED_WORK_SECS,
        deadline: now + TimeDelta::seconds(UNSCHEDULED_WORK_SECS),
        strategy: Strategy::RunNow,
        constraints: Constraints::default(),
        problem,
    };
    let schedule_given = meta
        .annotations
        .keys()
        .any(|k| super::annotations::ALL.contains(&k.as_str()));
    if !schedule_given {
        return fallback(None);
    }
    match workload_schedule(None, &meta.annotations).and_then(|ws| ws.validate(meta.created)) {
        Ok(v) => Job {
            work_secs: v.expected_secs,
            deadline: v.deadline,
            strategy: v.strategy,
            constraints: v.constraints,
            problem: None,
        },
        Err(e) => fallback(Some(format!("{}: {}", meta.reference, e.message))),
    }
}

/// Each allowed region's planning series from `now`, and the labels with no forecast.
async fn forecasts(
    ctx: &Context,
    labels: &[String],
    allowed: Option<&[String]>,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> (Vec<(String, Series)>, Vec<String>, Vec<String>) {
    let (mut ok, mut missing, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    for label in labels {
        let zone = match (ctx.resolve_region)(Some(label)) {
            Ok(z) => z,
            Err(e) => {
                problems.push(format!("region label {label:?}: {e}"));
                missing.push(label.clone());
                continue;
            }
        };
        if !is_allowed(label, allowed) && !is_allowed(&zone, allowed) {
            continue;
        }
        let since = now - TimeDelta::seconds(HISTORY_SECS);
        let series = match ctx.feed.get(&zone, now, since).await {
            Ok(i) => planning_series(&i.series, &DailyProfile::of(&i.series), now, until),
            Err(e) => {
                problems.push(format!("region {label} ({zone}): {e}"));
                None
            }
        };
        match series {
            Some(s) => ok.push((label.clone(), s)),
            None => missing.push(label.clone()),
        }
    }
    (ok, missing, problems)
}

async fn reconcile(wl: Arc<Workload>, d: Arc<Dctx>) -> Result<Action, Error> {
    let Some(workers) = workers_of(&d, &wl) else {
        return Ok(Action::await_change());
    };
    let ctx = &d.ctx;
    let now = (ctx.clock)();
    let v = view_of(&wl);
    if v.finished || v.dispatched.is_some() || !v.quota_reserved {
        return Ok(Action::await_change());
    }
    if owns_nomination(&wl) {
        // A hand-over that failed (the Workload changed under it) is done again.
        ctx.may_write()?;
        let api: Api<Workload> =
            Api::namespaced(ctx.client.clone(), &wl.namespace().unwrap_or_default());
        hand_over(&api, &wl).await?;
    }
    let meta = job_object(ctx, &d.kinds, &wl).await?;
    let job = job_of(&meta, now);
    let allowed = meta.annotations.get(REGIONS).map(|s| parse_list(s));
    let r = rank_workers(ctx, &workers, &job, allowed.as_deref(), now).await;
    match step(&v, &r.best_first, now, d.timeout) {
        Step::Nominate {
            cluster,
            passed_over,
            why,
        } => {
            let region = workers
                .iter()
                .find(|w| w.name == cluster)
                .and_then(|w| w.region.clone());
            let note = nomination_note(&cluster, &why, &workers, &r, &job);
            let n = Nomination {
                cluster: &cluster,
                passed_over: &passed_over,
                expected_start: region.as_deref().and_then(|g| r.starts.get(g).copied()),
                schedule: meta
                    .annotations
                    .iter()
                    .filter(|(k, _)| super::annotations::ALL.contains(&k.as_str()) || *k == REGIONS)
                    .collect(),
            };
            nominate(ctx, &wl, &n, now).await?;
            ctx.metrics
                .dispatches
                .with_label_values(&[&cluster, region.as_deref().unwrap_or(""), why_label(&why)])
                .inc();
            controller::announce(ctx, wl.as_ref(), &[note]).await;
            Ok(Action::requeue(to_std(d.timeout)))
        }
        Step::Wait { until } => Ok(Action::requeue(to_std(until - now))),
        Step::Nothing if r.best_first.is_empty() => {
            tracing::warn!(namespace = wl.namespace(), workload = %wl.name_any(),
                "no active worker cluster to nominate; looked at again in 30 s");
            Ok(Action::requeue(Duration::from_secs(30)))
        }
        Step::Nothing => Ok(Action::await_change()),
    }
}

/// The workers ranked for a job, with what each region's plan expects.
struct Ranking {
    /// Cluster names, best first ([`order`]).
    best_first: Vec<String>,
    /// Expected (g/kWh)·h per region with a forecast.
    expected: BTreeMap<String, f64>,
    /// When each region's plan starts the job (now if it runs at once).
    starts: BTreeMap<String, DateTime<Utc>>,
    /// Regions without a forecast, and why.
    problems: Vec<String>,
}

/// Plans `job` in the region of every worker it may run in and orders the workers. With
/// `allowed` regions, a worker without a region label is left out.
async fn rank_workers(
    ctx: &Context,
    workers: &[Worker],
    job: &Job,
    allowed: Option<&[String]>,
    now: DateTime<Utc>,
) -> Ranking {
    let mut labels: Vec<String> = workers.iter().filter_map(|w| w.region.clone()).collect();
    labels.sort();
    labels.dedup();
    let until = job.deadline.max(now + TimeDelta::seconds(job.work_secs));
    let (series, missing, problems) = forecasts(ctx, &labels, allowed, now, until).await;
    let ranked = match series.first() {
        None => Vec::new(),
        Some((_, first)) => {
            let req = PlanRequest {
                now,
                remaining_secs: job.work_secs,
                deadline: planning_deadline(job.deadline, now, job.work_secs, ctx.deadline_margin),
                strategy: job.strategy,
                constraints: job.constraints,
                state: JobState::NotStarted,
                pauses_so_far: 0,
                forecast: first,
                error: crate::plan::ForecastError::NONE,
            };
            let candidates: Vec<Candidate<'_>> = series
                .iter()
                .map(|(region, forecast)| Candidate { region, forecast })
                .collect();
            rank(&req, &candidates, None)
        }
    };
    let regions: Vec<&str> = ranked.iter().map(|r| r.region).collect();
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    let eligible: Vec<Worker> = workers
        .iter()
        .filter(|w| allowed.is_none() || w.region.is_some())
        .cloned()
        .collect();
    Ranking {
        best_first: order(&eligible, &regions, &missing),
        expected: ranked
            .iter()
            .map(|r| (r.region.to_string(), r.plan.expected_grams_per_kw))
            .collect(),
        starts: ranked
            .iter()
            .map(|r| {
                let start = r.plan.intervals.first().map_or(now, |i| i.start);
                (r.region.to_string(), start)
            })
            .collect(),
        problems,
    }
}

fn to_std(d: TimeDelta) -> Duration {
    d.max(TimeDelta::seconds(1))
        .to_std()
        .unwrap_or(Duration::from_secs(1))
}

fn why_label(why: &Why) -> &'static str {
    match why {
        Why::Best => "best",
        Why::TimedOut { .. } => "timeout",
        Why::Cleaner { .. } => "cleaner",
    }
}

fn nomination_note(
    cluster: &str,
    why: &Why,
    workers: &[Worker],
    r: &Ranking,
    job: &Job,
) -> EventNote {
    let (best_first, expected, problems) = (&r.best_first, &r.expected, &r.problems);
    let describe = |name: &str| {
        let r = workers
            .iter()
            .find(|w| w.name == name)
            .and_then(|w| w.region.as_deref());
        match r.and_then(|r| expected.get(r).map(|g| (r, g))) {
            Some((r, g)) => format!("{name} (region {r}, {g:.1} g/kW expected)"),
            None => format!("{name} (region {}, no forecast)", r.unwrap_or("unlabelled")),
        }
    };
    let mut message = format!(
        "nominated {}; ranking: {}",
        describe(cluster),
        best_first
            .iter()
            .map(|c| describe(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match why {
        Why::Best => {}
        Why::TimedOut { previous } => {
            message.push_str(&format!("; {previous} did not admit it in time"))
        }
        Why::Cleaner { previous } => message.push_str(&format!(
            "; the new forecast makes it cleaner than {previous}"
        )),
    }
    if let Some(p) = &job.problem {
        message.push_str(&format!(
            "; ranked as a {} s run from now because {p}",
            job.work_secs
        ));
    }
    for p in problems {
        message.push_str(&format!("; {p}"));
    }
    EventNote {
        warning: job.problem.is_some() || !problems.is_empty(),
        reason: "Nominated",
        message,
    }
}

/// What a nomination writes.
struct Nomination<'a> {
    cluster: &'a str,
    passed_over: &'a [String],
    /// When the cluster's region plan starts the job ([`EXPECTED_START`]).
    expected_start: Option<DateTime<Utc>>,
    /// The job object's `carbonshift.io/*` schedule annotations, copied onto the Workload
    /// so that the worker's copy (a clone of the Workload) carries them to its check.
    schedule: BTreeMap<&'a String, &'a String>,
}

/// Records the nomination and the job's schedule on the Workload (annotations), then
/// nominates: a server-side apply of `status.nominatedClusterNames` alone, whose ownership
/// is then handed to Kueue ([`hand_over`]).
async fn nominate(
    ctx: &Context,
    wl: &Workload,
    n: &Nomination<'_>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let (cluster, passed_over) = (n.cluster, n.passed_over);
    ctx.may_write()?;
    let api: Api<Workload> =
        Api::namespaced(ctx.client.clone(), &wl.namespace().unwrap_or_default());
    let name = wl.name_any();
    let passed = if passed_over.is_empty() {
        serde_json::Value::Null
    } else {
        json!(passed_over.join(","))
    };
    let mut annotations = json!({
        NOMINATED: nominated_value(cluster, now),
        PASSED_OVER: passed,
        EXPECTED_START: n.expected_start.map(crate::timefmt::format),
    });
    for (k, v) in &n.schedule {
        annotations[k.as_str()] = json!(v);
    }
    let body = json!({"metadata": {"annotations": annotations}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    let status = json!({
        "apiVersion": Workload::api_version(&()),
        "kind": Workload::kind(&()),
        "status": {"nominatedClusterNames": [cluster]},
    });
    let applied = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    hand_over(&api, &applied).await?;
    tracing::info!(namespace = wl.namespace(), workload = %name, cluster, "nominated");
    Ok(())
}

/// Kueue's field manager for a Workload's admission status.
pub const KUEUE_ADMISSION_MANAGER: &str = "kueue-admission";
const NOMINATED_FIELD: &str = "f:nominatedClusterNames";

/// Hands the ownership of `status.nominatedClusterNames` to Kueue's admission manager.
///
/// When a worker admits the Workload, Kueue sets `status.clusterName` and drops the
/// nomination in one server-side apply; the API server refuses a Workload with both, and
/// an apply only removes fields its manager owns alone. Kueue's own dispatchers write the
/// field as that manager. carbonshift writes it as itself (an apply of that one field) and
/// then moves the field's entry in `metadata.managedFields` from its own entry to Kueue's,
/// changing nothing else (conditional on the `resourceVersion` it just wrote).
async fn hand_over(api: &Api<Workload>, wl: &Workload) -> Result<(), Error> {
    let Some(fields) = moved_ownership(wl) else {
        tracing::warn!(workload = %wl.name_any(),
            "no {KUEUE_ADMISSION_MANAGER} status entry in managedFields: Kueue may fail to record the admitting cluster");
        return Ok(());
    };
    let body = json!({"metadata": {
        "resourceVersion": wl.resource_version(),
        "managedFields": fields,
    }});
    api.patch(
        &wl.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&body),
    )
    .await?;
    Ok(())
}

/// Whether carbonshift's own status entry still owns `status.nominatedClusterNames` (its
/// hand-over to Kueue is still to be done). Pure.
pub fn owns_nomination(wl: &Workload) -> bool {
    wl.metadata.managed_fields.iter().flatten().any(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER)
            && e.subresource.as_deref() == Some("status")
            && e.fields_v1.as_ref().is_some_and(|f| {
                f.0.get("f:status")
                    .and_then(|s| s.get(NOMINATED_FIELD))
                    .is_some()
            })
    })
}

/// `wl`'s managedFields with `status.nominatedClusterNames` moved from carbonshift's status entry to
/// Kueue's admission entry (None if Kueue has no status entry). Pure.
pub fn moved_ownership(wl: &Workload) -> Option<Vec<serde_json::Value>> {
    let entries = wl.metadata.managed_fields.as_ref()?;
    let mut out: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    let is = |e: &serde_json::Value, manager: &str, op: &str| {
        e["manager"] == manager && e["operation"] == op && e["subresource"] == "status"
    };
    let kueue = out
        .iter()
        .position(|e| is(e, KUEUE_ADMISSION_MANAGER, "Apply"))?;
    let mut owned = None;
    for e in out.iter_mut().filter(|e| is(e, FIELD_MANAGER, "Apply")) {
        if let Some(status) = e["fieldsV1"]["f:status"].as_object_mut() {
            owned = status.remove(NOMINATED_FIELD).or(owned);
        }
    }
    let status = &mut out[kueue]["fieldsV1"]["f:status"];
    if !status.is_object() {
        *status = json!({});
    }
    status[NOMINATED_FIELD] = owned.unwrap_or_else(|| json!({}));
    // An entry left owning nothing is dropped (the API server refuses empty fieldsV1).
    out.retain(|e| {
        let f = &e["fieldsV1"];
        !(f.as_object()
            .is_some_and(|m| m.keys().all(|k| k == "f:status"))
            && f["f:status"].as_object().is_some_and(|s| s.is_empty()))
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(fields: serde_json::Value) -> Workload {
        serde_json::from_value(json!({
            "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
            "metadata": {"name": "w", "namespace": "ml", "managedFields": fields},
            "spec": {"podSets": []},
        }))
        .unwrap()
    }

    #[test]
    fn the_nomination_moves_to_kueues_admission_entry_and_nothing_else_does() {
        let wl = workload(json!([
            {"manager": "kueue-admission", "operation": "Apply", "subresource": "status",
             "apiVersion": "kueue.x-k8s.io/v1beta2", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:admission": {}, "f:conditions": {"k:{\"type\":\"QuotaReserved\"}": {}}}}},
            {"manager": "carbonshift", "operation": "Apply", "subresource": "status",
             "apiVersion": "kueue.x-k8s.io/v1beta2", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:nominatedClusterNames": {}}}},
            {"manager": "carbonshift", "operation": "Apply", "subresource": "status",
             "apiVersion": "kueue.x-k8s.io/v1beta2", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:admissionChecks": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update",
             "apiVersion": "kueue.x-k8s.io/v1beta2", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {}}}},
        ]));
        assert!(owns_nomination(&wl));
        let out = moved_ownership(&wl).unwrap();
        assert_eq!(out.len(), 3, "{out:#?}");
        assert_eq!(
            out[0]["fieldsV1"]["f:status"],
            json!({"f:admission": {}, "f:conditions": {"k:{\"type\":\"QuotaReserved\"}": {}}, "f:nominatedClusterNames": {}})
        );
        assert_eq!(
            out[1]["fieldsV1"],
            json!({"f:status": {"f:admissionChecks": {}}})
        );
        assert_eq!(out[2]["manager"], "kube-controller-manager");
        let handed = workload(serde_json::Value::Array(out));
        assert!(!owns_nomination(&handed));
        // Without Kueue's status entry there is no one to hand it to.
        let alone = workload(json!([
            {"manager": "carbonshift", "operation": "Apply", "subresource": "status",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:nominatedClusterNames": {}}}},
        ]));
        assert_eq!(moved_ownership(&alone), None);
    }
}
