//! The CarbonAwareJob controller: reconcile each CarbonAwareJob into a suspended-or-running
//! batch/v1 Job, with status, Events and metrics.
//!
//! Reconcile is a pipeline: **read** (the object, its child Job from the watch cache, the
//! region's intensities from the forecast cache, never waiting on upstream) -> **validate**
//! (pure, [`validate`]) -> **build** (pure, [`build`](mod@build): accounting, the decision from
//! [`crate::plan::decide`], the child Job to create or the `suspend` to set, the status)
//! -> **write** (create the child Job by server-side apply, field manager `carbonshift`;
//! flip `spec.suspend` by a patch of that field alone; the status by server-side apply on
//! the status subresource, on condition of the `resourceVersion` read, only when it
//! changed materially or accrued accounting is due to be persisted; then release the
//! child's finalizer once its outcome is recorded; every write checks the leader fence)
//! -> metrics and Events, only once the status that records them is written.
//! `carbonshift plan -f` runs the same validate and build functions without a cluster.
//!
//! ## What triggers a reconcile
//! A change of the CarbonAwareJob or of its child Job (watched with `.owns()`), the
//! requeue at `status.nextTransitionTime` (or the persist interval, whichever is first),
//! and a refreshed forecast (receding horizon: every job is replanned when any region's
//! forecast changes; the forecast cache makes that one fetch per region).
//!
//! ## Deadline margin
//! The planner's deadline guard starts a job at the latest start that still meets the
//! deadline; acting on that takes time (requeue, API calls, scheduling, pod start-up).
//! The build step therefore plans against the deadline less `--deadline-margin`
//! (default 2 min), clamped to the slack left so that a feasible job never becomes
//! infeasible: a job with less slack than the margin simply runs now. Status and Events
//! keep the real deadline.
//!
//! ## Restart semantics
//! No decision depends on in-memory state. The ledger (runtime, energy, emissions,
//! baseline) is integrated from `status.lastAccountedTime` to now with the intensities of
//! that past interval, and whether the Job was running over it is read from
//! `status.runningSince`, which every transition persists. A restarted operator therefore
//! continues exactly where the previous one stopped. Accrual alone is persisted at most
//! every `--status-interval` (default 5 min), so status writes stay at one per transition
//! plus one per interval; nothing is lost in between because nothing is kept in memory.
//!
//! ## A child Job deleted by hand
//! It is recreated, in the state the plan wants (suspended or running), and the ledger is
//! kept; a `ChildJobRecreated` Warning Event says so. This is how Kubernetes' own
//! controllers treat their children; a Job whose pods checkpoint resumes from its last
//! checkpoint. To stop the work, delete the CarbonAwareJob (the child Job is
//! garbage-collected through its ownerReference). The child Job carries the finalizer
//! [`build::FINALIZER`] until its outcome is in the status, so whatever deletes a finished
//! child (its `ttlSecondsAfterFinished`, a user) and however long the operator was down,
//! the outcome is recorded and no second Job is created; before creating any child the
//! operator confirms with quorum reads that there is none and that the job has not
//! finished.
//!
//! ## Bad input
//! What the CRD's schema and CEL rules cannot reject (a deadline too close to creation,
//! a pod template the API server refuses, no derivable power model, a name clash with an
//! unrelated Job) becomes `Ready=False` with a reason (`InvalidSpec`, `JobConflict`,
//! `RegionUnknown`) and a Warning Event whose message says what to change. The ledger is
//! never overwritten.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use thiserror::Error;

use crate::api::{CarbonAwareJob, CarbonAwareJobStatus, Phase, JOB_LABEL};
use crate::forecast::ForecastError;
use crate::metrics::Metrics;

pub mod build;
pub mod intensity;
pub mod leader;
pub mod server;
pub mod store;
pub mod validate;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod outage_tests;
#[cfg(test)]
mod tests;

pub use build::{build, Observed, Outcome};
pub use intensity::{Feed, Intensities};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "carbonshift";
/// Default interval at which accrued accounting is persisted.
pub const DEFAULT_PERSIST_SECS: i64 = 300;
/// Default start-up margin taken out of the slack before the deadline
/// (see [`build::planning_deadline`]): the requeue, API round trips, scheduling and pod
/// start-up of a typical cluster, with room for an image pull.
pub const DEFAULT_DEADLINE_MARGIN_SECS: i64 = 120;

/// Default bound on concurrent reconciles (`--max-concurrent-reconciles`).
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Reconcile failures. `kind()` labels `carbonshift_reconcile_errors_total`.
#[derive(Debug, Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serialising: {0}")]
    Serde(#[from] serde_json::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("not the leader any more (the Lease was not renewed in time): not writing")]
    NotLeader,
}

impl Error {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Serde(_) => "serde",
            Error::MissingField(_) => "invalid_object",
            Error::NotLeader => "not_leader",
        }
    }
}

/// The feed's region name for a job from its `spec.region` (falling back to the
/// operator's `--region`, then the nodes' label), or why there is none.
pub type RegionResolver = Arc<dyn Fn(Option<&str>) -> Result<String, String> + Send + Sync>;

/// Everything a reconcile needs besides the object.
pub struct Context {
    pub client: Client,
    pub feed: Arc<dyn Feed>,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub resolve_region: RegionResolver,
    /// The wall clock; tests pin it.
    pub clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    pub persist_every: TimeDelta,
    /// Plan to finish this long before each deadline, as far as the slack allows.
    pub deadline_margin: TimeDelta,
    /// At most this many reconciles run at once. Unbounded, a replan of thousands of jobs
    /// (start-up, forecast refresh) holds thousands of requests and buffers in flight.
    pub max_concurrent_reconciles: u16,
    /// The watch cache of the child Jobs, set by [`run`]; without it (reconcile tests) the
    /// child is read with a GET.
    pub jobs: std::sync::OnceLock<Store<store::CachedChild>>,
    /// Checked before every write: a leader whose Lease may have passed to another replica
    /// writes nothing (see [`leader::Fence`]).
    pub fence: Arc<leader::Fence>,
    /// The cached versions older than this process's own last status writes: a reconcile
    /// on one writes nothing (see [`store::OwnWrites`]).
    pub own_writes: Arc<store::OwnWrites>,
    /// The operator serves Kueue (`run --kueue`): a CarbonAwareJob whose template is for a
    /// Kueue queue runs through Kueue (held and released by its Workload, `kueue::steer`).
    pub kueue: bool,
}

impl Context {
    /// A context with the wall clock, identity region mapping, default persist interval and
    /// default deadline margin.
    pub fn new(
        client: Client,
        feed: Arc<dyn Feed>,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            feed,
            metrics,
            recorder,
            resolve_region: Arc::new(|r: Option<&str>| {
                r.map(str::to_string).ok_or_else(|| {
                    "no region: spec.region is unset and the operator has no default".to_string()
                })
            }),
            clock: Arc::new(Utc::now),
            persist_every: TimeDelta::seconds(DEFAULT_PERSIST_SECS),
            deadline_margin: TimeDelta::seconds(DEFAULT_DEADLINE_MARGIN_SECS),
            max_concurrent_reconciles: DEFAULT_MAX_CONCURRENT_RECONCILES,
            jobs: std::sync::OnceLock::new(),
            fence: Arc::new(leader::Fence::unfenced()),
            own_writes: Arc::default(),
            kueue: false,
        }
    }

    /// `Err(NotLeader)` once this process may no longer write.
    pub(crate) fn may_write(&self) -> Result<(), Error> {
        if self.fence.holds() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }
}

/// The region a job plans with, or why there is none.
fn region_of(caj: &CarbonAwareJob, ctx: &Context) -> Result<String, String> {
    let spec = caj
        .spec
        .region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    (ctx.resolve_region)(spec)
}

fn to_std(d: TimeDelta) -> Duration {
    d.to_std().unwrap_or(Duration::from_secs(1))
}

/// Reconciles one CarbonAwareJob: read, build (pure), write, then count and announce.
/// See the module doc.
pub async fn reconcile(caj: Arc<CarbonAwareJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_duration.start_timer();
    let ns = caj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    if caj.meta().deletion_timestamp.is_some() {
        // The child Job goes with it through garbage collection; nothing to do.
        return Ok(Action::await_change());
    }
    if ctx.own_writes.behind(caj.as_ref()) {
        // The cache has not yet seen this process's last status write: the watch event
        // that delivers it triggers the next reconcile (the requeue is only a fallback).
        tracing::debug!(namespace = %ns, name = %caj.name_any(), resource_version = caj.resource_version(),
            "cached copy older than the last status write: waiting for the watch");
        return Ok(Action::requeue(OWN_WRITE_RECHECK));
    }
    let cached_rv = caj.resource_version();
    let api = Apis {
        jobs: Api::namespaced(ctx.client.clone(), &ns),
        cajs: Api::namespaced(ctx.client.clone(), &ns),
    };
    let now = (ctx.clock)();
    let Some((caj, child)) = read(caj, &ctx, &api).await? else {
        return Ok(Action::await_change());
    };
    let (region, intensities) = region_and_intensities(&caj, &ctx, now).await;
    // carbonshift_grid_intensity_gco2_per_kwh is set by the forecast cache, per region.
    let out = build(Observed {
        caj: &caj,
        child: child.as_ref(),
        region: region.as_deref().map_err(String::as_str),
        intensities: intensities.as_deref().map_err(String::as_str),
        now,
        persist_every: ctx.persist_every,
        deadline_margin: ctx.deadline_margin,
        kueue: ctx.kueue,
    });
    let Some((out, written_rv)) = write(&ctx, &api, &caj, child.as_ref(), out, now).await? else {
        // The status changed since it was read: decide again on the newer object.
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    if let Some(uid) = caj.uid() {
        ctx.own_writes.record(
            &uid,
            cached_rv.as_deref(),
            caj.resource_version().as_deref(),
            written_rv.as_deref(),
        );
    }
    // Metrics and Events only after the status that records them is persisted, so a
    // transition or completion is never counted twice; and before anything else can fail,
    // so none is missed (the next reconcile sees the persisted status and counts nothing).
    count(&ctx.metrics, &ns, &out);
    announce(&ctx, caj.as_ref(), &out.events).await;
    // A Job for a Kueue queue: the plan reaches it through its Workload.
    let soon = match &child {
        Some(job) => crate::kueue::steer::steer(&ctx, &caj, job, &out, now).await?,
        None => None,
    };
    if let Some(job) = child.filter(|_| out.release_finalizer) {
        // Only now: the finished status that replaces the finalizer is recorded.
        ctx.may_write()?;
        release_finalizer(&api.jobs, &job).await?;
    }
    Ok(match (out.requeue.map(to_std), soon) {
        (Some(d), Some(s)) => Action::requeue(d.min(s)),
        (Some(d), None) | (None, Some(d)) => Action::requeue(d),
        (None, None) => Action::await_change(),
    })
}

/// When a reconcile on a cached copy older than its own last write looks again, should the
/// watch event that delivers the write not come.
const OWN_WRITE_RECHECK: Duration = Duration::from_secs(5);

/// [`reconcile`] of a CarbonAwareJob from the controller's cache (its spec parsed back).
pub async fn reconcile_cached(caj: Arc<store::Cached>, ctx: Arc<Context>) -> Result<Action, Error> {
    let full = caj.full()?;
    reconcile(Arc::new(full), ctx).await
}

/// The namespaced APIs of one reconcile.
struct Apis {
    jobs: Api<Job>,
    cajs: Api<CarbonAwareJob>,
}

fn is_terminal(c: &CarbonAwareJob) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_terminal)
}

/// The CarbonAwareJob and its child Job. The child comes from the watch cache (a finished
/// job only needs to know whether the finalizer is still to be released, so without a
/// cache it reads nothing). When there is none, before anything creates one, the API
/// server confirms that there is none and that the CarbonAwareJob has not finished
/// meanwhile: a watch cache that has not caught up never reruns a finished job. `None`:
/// the CarbonAwareJob is gone.
async fn read(
    caj: Arc<CarbonAwareJob>,
    ctx: &Context,
    api: &Apis,
) -> Result<Option<(Arc<CarbonAwareJob>, Option<Job>)>, Error> {
    let name = caj.name_any();
    let ns = caj.namespace().unwrap_or_default();
    let mut child = match ctx.jobs.get() {
        Some(store) => store
            .get(&ObjectRef::new(&name).within(&ns))
            .map(|j| j.job()),
        None if is_terminal(&caj) => None,
        None => api.jobs.get_opt(&name).await?,
    };
    if child.is_some() || is_terminal(&caj) {
        return Ok(Some((caj, child)));
    }
    if ctx.jobs.get().is_some() {
        child = api.jobs.get_opt(&name).await?;
    }
    Ok(api
        .cajs
        .get_opt(&name)
        .await?
        .map(|fresh| (Arc::new(fresh), child)))
}

/// The job's region and its intensities, or why there are none. A region the provider
/// says does not exist is a region error: the job cannot be planned until it is fixed
/// (and the cache does not ask again for an hour).
pub(crate) async fn region_and_intensities(
    caj: &CarbonAwareJob,
    ctx: &Context,
    now: DateTime<Utc>,
) -> (Result<String, String>, Result<Arc<Intensities>, String>) {
    let region = region_of(caj, ctx);
    let r = match &region {
        Err(e) => return (region.clone(), Err(e.clone())),
        // A finished job needs intensities only to settle what it still owes.
        Ok(_) if is_terminal(caj) && caj.status_or_default().unaccounted.is_empty() => {
            return (region, Err("finished".into()))
        }
        Ok(r) => r.clone(),
    };
    match ctx.feed.get(&r, now, build::needed_since(caj, now)).await {
        Ok(i) => (region, Ok(i)),
        Err(e @ ForecastError::UnknownRegion { .. }) => (
            Err(format!(
                "{e}: set spec.region to a grid zone of the forecast provider, or map the cloud region with --region-map"
            )),
            Err(e.to_string()),
        ),
        Err(e) => (region, Err(e.to_string())),
    }
}

/// Makes the writes `out` asks for, in order: create the child Job, flip its `suspend`,
/// write the status (on condition of the `resourceVersion` read). Each first checks the
/// leader fence; the caller releases the finalizer, after counting the outcome. Returns
/// the outcome as written (a child Job the API server refuses turns it into `InvalidSpec`) with the
/// `resourceVersion` the status write produced (none without a status write), or `None`
/// when the status changed since it was read: then nothing is counted or announced.
async fn write(
    ctx: &Context,
    api: &Apis,
    caj: &CarbonAwareJob,
    child: Option<&Job>,
    mut out: Outcome,
    now: DateTime<Utc>,
) -> Result<Option<(Outcome, Option<String>)>, Error> {
    let name = caj.name_any();
    if let Some(job) = &out.job {
        ctx.may_write()?;
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match api.jobs.patch(&name, &pp, &Patch::Apply(job)).await {
            Ok(_) => {}
            // The API server refused the Job (its pod template is only validated here):
            // the user must fix the spec, retrying cannot help.
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
                out = build::reject(
                    caj,
                    "InvalidSpec",
                    format!("the API server rejected the child Job: {}", s.message),
                    now,
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(suspend) = out.suspend {
        ctx.may_write()?;
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let patch = serde_json::json!({ "spec": { "suspend": suspend } });
        api.jobs.patch(&name, &pp, &Patch::Merge(&patch)).await?;
    }
    tracing::debug!(
        namespace = caj.namespace(), name = %name, resource_version = caj.resource_version(),
        phase = ?out.status.phase, write = out.write_status, release = out.release_finalizer,
        child = child.is_some(), "reconciled"
    );
    let mut written_rv = None;
    if out.write_status {
        ctx.may_write()?;
        match write_status(&api.cajs, caj, &out.status).await {
            Ok(rv) => written_rv = rv,
            // Most often: the cache did not yet show this operator's own last write.
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
                tracing::debug!(namespace = caj.namespace(), name = %name, "status changed since read: retrying");
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some((out, written_rv)))
}

/// Counts what the written outcome records.
pub(crate) fn count(m: &Metrics, ns: &str, out: &Outcome) {
    if let Some(t) = out.transition {
        m.transitions.with_label_values(&[t.label()]).inc();
    }
    if out.deadline_guard {
        m.transitions.with_label_values(&["deadline-guard"]).inc();
    }
    if out.deadline_missed {
        m.deadline_misses.inc();
    }
    if out.finished.is_some() {
        add_to_totals(m, ns, &out.status);
    }
    let (emitted, baseline) = out.settled_late;
    if emitted != 0.0 || baseline != 0.0 {
        // Grams a finished job owed, settled since the totals counted it.
        let labels = [ns, region_label(&out.status)];
        m.emissions
            .with_label_values(&labels)
            .inc_by(emitted.max(0.0));
        m.baseline_emissions
            .with_label_values(&labels)
            .inc_by(baseline.max(0.0));
        m.avoided_emissions
            .with_label_values(&labels)
            .inc_by((baseline - emitted).max(0.0));
    }
}

/// Logs each [`build::EventNote`] and publishes it as an Event (best effort: a failure must not undo a
/// transition already applied; a process that is no longer the leader stops).
pub(crate) async fn announce(
    ctx: &Context,
    obj: &impl Resource<DynamicType = ()>,
    events: &[build::EventNote],
) {
    let reference = obj.object_ref(&());
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    for note in events {
        tracing::info!(
            namespace = %ns, name = %name, reason = note.reason, warning = note.warning,
            "{}", note.message
        );
        if !ctx.fence.holds() {
            break;
        }
        let ev = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.message.chars().take(1000).collect()),
            action: "Schedule".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(namespace = %ns, name = %name, error = %e, "cannot publish event");
        }
    }
}

/// Adds a finished job's ledger to the totals users graph.
pub(crate) fn add_to_totals(m: &Metrics, ns: &str, s: &CarbonAwareJobStatus) {
    let labels = [ns, region_label(s)];
    m.avoided_emissions
        .with_label_values(&labels)
        .inc_by(s.avoided_grams.max(0.0));
    m.emissions
        .with_label_values(&labels)
        .inc_by(s.emissions_grams.max(0.0));
    m.baseline_emissions
        .with_label_values(&labels)
        .inc_by(s.baseline_grams.max(0.0));
    m.energy
        .with_label_values(&labels)
        .inc_by(s.energy_kwh.max(0.0));
}

/// The totals' `region` label: the grid zone the job was planned and accounted in
/// (empty if it never had one).
fn region_label(s: &CarbonAwareJobStatus) -> &str {
    s.region.as_deref().unwrap_or("")
}

/// Starts the totals from the CarbonAwareJobs already finished, read before any reconcile
/// runs (so none is counted twice): a restarted operator, a rollout or a new leader
/// exports the same totals as the process before it. A finished CarbonAwareJob that is
/// deleted leaves the totals at the next restart. Returns how many jobs were counted.
async fn restore_totals(api: &Api<CarbonAwareJob>, m: &Metrics) -> Result<usize, Error> {
    let mut lp = kube::api::ListParams::default().limit(500);
    let mut counted = 0;
    loop {
        let page = api.list(&lp).await?;
        for caj in &page.items {
            let Some(st) = caj.status.as_ref() else {
                continue;
            };
            if st.phase.is_some_and(Phase::is_terminal) {
                add_to_totals(m, &caj.namespace().unwrap_or_default(), st);
                counted += 1;
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(counted),
        }
    }
}

/// Server-side applies the status, on condition that the object is still the one read
/// (its `resourceVersion`): a decision taken on a stale copy is refused with 409, so a
/// transition, completion or Event is never recorded twice. Returns the object's new
/// `resourceVersion`.
pub(crate) async fn write_status<K>(
    api: &Api<K>,
    caj: &K,
    status: &CarbonAwareJobStatus,
) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(rv) = caj.resource_version() {
        body["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let written = api
        .patch_status(&caj.name_any(), &pp, &Patch::Apply(&body))
        .await?;
    Ok(written.resource_version())
}

/// Removes [`build::FINALIZER`] from the child Job (a JSON patch that first tests the entry
/// is still there, so no other finalizer is ever removed). Already gone is success.
async fn release_finalizer(api: &Api<Job>, job: &impl Resource) -> Result<(), Error> {
    let Some(i) = job.finalizers().iter().position(|f| f == build::FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{i}");
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": path, "value": build::FINALIZER},
        {"op": "remove", "path": path},
    ]))?;
    let name = job.name_any();
    match api
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => {
            tracing::debug!(namespace = job.namespace(), %name, "released the child Job");
            Ok(())
        }
        // Gone, or the list changed under us: the next event of the Job decides again.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => {
            tracing::info!(namespace = job.namespace(), %name, code = s.code, message = %s.message,
                "child Job not released: it changed since read");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// On error: count it by kind and retry soon (the API server or network is the usual
/// cause; bad specs do not come here, they become conditions).
pub fn error_policy<K: Resource>(caj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[err.kind()])
        .inc();
    tracing::warn!(
        namespace = caj.namespace().unwrap_or_default(), name = %caj.name_any(),
        kind = err.kind(), error = %err, "reconcile failed"
    );
    Action::requeue(Duration::from_secs(15))
}

/// Runs the controller until `shutdown` resolves (then finishes in-flight reconciles).
/// `refreshed` fires when a region's forecast changes: every job is replanned.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    refreshed: Option<tokio::sync::broadcast::Receiver<String>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let (cajs, jobs): (Api<CarbonAwareJob>, Api<store::CachedChild>) = match &namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    // Fail fast with a useful message when the CRD is missing or RBAC forbids listing.
    if let Err(e) = cajs.list(&kube::api::ListParams::default().limit(1)).await {
        tracing::error!(
            error = %e,
            "cannot list CarbonAwareJobs: is the CRD installed (carbonshift crd | kubectl apply --server-side -f -) and may this service account list them?"
        );
        return Err(e.into());
    }
    // The child Jobs' watch cache: reconciles read the child from it (no GET per
    // reconcile), and every change of a child triggers its owner. Only Jobs carbonshift
    // created (the label), kept as [`store::CachedChild`]: no pod template, no
    // managedFields.
    let (job_store, job_writer) = reflector::store();
    let job_events = watcher(
        jobs,
        watcher::Config::default().labels(JOB_LABEL).any_semantic(),
    )
    .modify(store::trim_job)
    .default_backoff()
    .reflect(job_writer)
    .touched_objects();
    let _ = ctx.jobs.set(job_store);
    let finished = restore_totals(&cajs, &ctx.metrics).await?;
    tracing::info!(
        finished,
        "totals restored from the finished CarbonAwareJobs"
    );
    // The CarbonAwareJobs' cache: spec as text, no managedFields, no kubectl's
    // last-applied copy (see [`store::Cached`]).
    let cached: Api<store::Cached> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let (caj_store, caj_writer) = reflector::store();
    let caj_events = watcher(cached, watcher::Config::default().any_semantic())
        .modify(store::trim_caj)
        .default_backoff()
        .reflect(caj_writer)
        .applied_objects();
    let mut controller = Controller::for_stream(caj_events, caj_store)
        .owns_stream(job_events)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.max_concurrent_reconciles),
        )
        .graceful_shutdown_on(shutdown);
    if let Some(rx) = refreshed {
        controller = controller.reconcile_all_on(refreshes(rx));
    }
    let gauges = tokio::spawn(keep_gauges(ctx.clone(), controller.store()));
    let sweeper = tokio::spawn(release_orphans(
        ctx.fence.clone(),
        ctx.client.clone(),
        controller.store(),
        ctx.jobs.get().cloned(),
    ));
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "controller started"
    );
    controller
        .run(reconcile_cached, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile request failed");
            }
        })
        .await;
    gauges.abort();
    sweeper.abort();
    tracing::info!("controller stopped");
    Ok(())
}

/// Every 10 s: the jobs-by-phase gauge from the cache, and the expired records of
/// [`store::OwnWrites`] forgotten.
async fn keep_gauges(ctx: Arc<Context>, store: Store<store::Cached>) {
    let metrics = &ctx.metrics;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        ctx.own_writes.purge();
        let mut counts = std::collections::HashMap::new();
        for caj in store.state() {
            let phase = caj
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(Phase::Pending);
            *counts.entry(phase).or_insert(0i64) += 1;
        }
        for p in Phase::ALL {
            metrics
                .jobs
                .with_label_values(&[p.as_str()])
                .set(counts.get(&p).copied().unwrap_or(0));
        }
    }
}

/// How often [`release_orphans`] looks: well inside the leader's renew deadline (10 s),
/// so that an operator whose Lease is in a namespace being deleted (it can no longer renew
/// there) still releases the children the deletion left before it steps down; a look at a
/// cache of 10,000 Jobs with nothing to release costs a few microseconds.
const ORPHAN_SWEEP: Duration = Duration::from_secs(2);

/// Releases the finalizer of child Jobs being deleted whose CarbonAwareJob is gone (deleted
/// with its Jobs garbage-collected: no reconcile runs for an owner that no longer exists;
/// the owner's absence from the cache is confirmed with a GET of the same name and uid
/// first) or has finished (its outcome is in the status, so the reconcile's own release
/// is only repeated).
async fn release_orphans(
    fence: Arc<leader::Fence>,
    client: Client,
    cajs: Store<store::Cached>,
    jobs: Option<Store<store::CachedChild>>,
) {
    let Some(jobs) = jobs else { return };
    loop {
        tokio::time::sleep(ORPHAN_SWEEP).await;
        for job in jobs.state() {
            if !fence.holds() {
                break;
            }
            if job.meta().deletion_timestamp.is_none() || !build::holds_finalizer(job.as_ref()) {
                continue;
            }
            let (Some(ns), Some(owner)) = (
                job.namespace(),
                job.owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.kind == CarbonAwareJob::kind(&()))
                    .cloned(),
            ) else {
                continue;
            };
            let cached = cajs
                .get(&ObjectRef::new(&owner.name).within(&ns))
                .filter(|c| c.meta().uid.as_deref() == Some(owner.uid.as_str()));
            match cached {
                // The owner's outcome is recorded (a release the reconcile could not make,
                // e.g. it stopped in between): let the Job go.
                Some(c)
                    if c.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(Phase::is_terminal) =>
                {
                    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
                    if let Err(e) = release_finalizer(&api, job.as_ref()).await {
                        tracing::warn!(namespace = %ns, name = %job.name_any(), error = %e,
                            "cannot release the finalizer of a finished child Job");
                    }
                    continue;
                }
                Some(_) => continue,
                None => {}
            }
            let api: Api<CarbonAwareJob> = Api::namespaced(client.clone(), &ns);
            let exists = match api.get_opt(&owner.name).await {
                Ok(c) => c.is_some_and(|c| c.meta().uid.as_deref() == Some(owner.uid.as_str())),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check a child Job's owner");
                    continue;
                }
            };
            if exists {
                continue;
            }
            let api: Api<Job> = Api::namespaced(client.clone(), &ns);
            match release_finalizer(&api, job.as_ref()).await {
                Ok(()) => tracing::info!(
                    namespace = %ns, name = %job.name_any(),
                    "released the finalizer of a child Job whose CarbonAwareJob is gone"
                ),
                Err(e) => tracing::warn!(
                    namespace = %ns, name = %job.name_any(), error = %e,
                    "cannot release the finalizer of an orphaned child Job"
                ),
            }
        }
    }
}

/// The forecast refreshes as a trigger of `reconcile_all_on`: each is one replan of
/// every object the controller holds.
pub(crate) fn refreshes(
    rx: tokio::sync::broadcast::Receiver<String>,
) -> impl futures::Stream<Item = ()> + Send {
    tokio_stream_from(rx).map(|region| {
        tracing::debug!(%region, "forecast refreshed: replanning");
    })
}

/// A broadcast receiver as a stream; lagging (more refreshes than buffered) still
/// triggers one replan.
fn tokio_stream_from(
    rx: tokio::sync::broadcast::Receiver<String>,
) -> impl futures::Stream<Item = String> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(region) => Some((region, rx)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(("*".to_string(), rx)),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    })
}
