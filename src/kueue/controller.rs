//! `carbonshift run --kueue`: the controller of the AdmissionChecks whose `controllerName`
//! is [`super::CONTROLLER_NAME`].
//!
//! - Each such AdmissionCheck gets the `Active` condition (False, with the fix, when its
//!   `spec.parameters` is not a CarbonWindowParameters that exists).
//! - Each Workload that carries one of them in `status.admissionChecks` is reconciled:
//!   read (the job object's annotations and creation, the parameters, its
//!   [`CarbonWindow`], its Ready pods, the region's intensities), the operator's own
//!   reconcile step through [`super::adapt`], then write: the CarbonWindow's status, the
//!   totals and Events, and what [`super::check::decide`] says: the check `Ready`, or the
//!   Workload held (deactivated) or released.
//!
//! Pods are watched (only those Kueue started: the `kueue.x-k8s.io/podset` label, trimmed
//! to labels, owners and conditions), so a pod turning Ready starts the runtime at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::adapt::{as_carbon_aware_job, as_child, wanted, window_spec, JobObject};
use super::annotations::Defaults;
use super::check::{
    decide, decide_for_copy, Action as Decision, Wanted, HELD_BECAUSE, HELD_UNTIL,
    MULTIKUEUE_ORIGIN_LABEL,
};
use super::workload::{view, AdmissionCheck, Workload};
use super::CONTROLLER_NAME;
use crate::api::params::CarbonWindowParameters;
use crate::api::window::{CarbonWindow, CarbonWindowSpec};
use crate::api::{time, CarbonAwareJob, Phase, StrategyName};
use crate::controller::build::{self, EventNote, Observed};
use crate::controller::{self, error_policy, Context, Error, FIELD_MANAGER};
use crate::timefmt;

/// The label Kueue puts on the pods of a job it started.
pub const PODSET_LABEL: &str = "kueue.x-k8s.io/podset";
/// JobSet's label on its pods naming the JobSet.
const JOBSET_NAME_LABEL: &str = "jobset.sigs.k8s.io/jobset-name";

/// What the Workload reconcile needs besides the operator's [`Context`].
struct Kctx {
    ctx: Arc<Context>,
    checks: Store<AdmissionCheck>,
    pods: Store<Pod>,
    kinds: Kinds,
}

/// Runs the AdmissionCheck and Workload controllers until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    refreshed: Option<tokio::sync::broadcast::Receiver<String>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let client = ctx.client.clone();
    let workloads: Api<Workload> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = workloads
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        tracing::error!(error = %e,
            "--kueue: cannot list Kueue Workloads (kueue.x-k8s.io/v1beta2): is Kueue v0.15 or newer installed, and may this service account list them?");
        return Err(e.into());
    }
    restore_totals(&ctx, namespace.as_deref()).await?;
    let (checks, check_writer) = reflector::store();
    let check_events = watcher(
        Api::<AdmissionCheck>::all(client.clone()),
        Default::default(),
    )
    .default_backoff()
    .reflect(check_writer)
    .applied_objects();
    let pods_api: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(pods_api, watcher::Config::default().labels(PODSET_LABEL))
        .modify(trim_pod)
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let k = Arc::new(Kctx {
        ctx: ctx.clone(),
        checks: checks.clone(),
        pods,
        kinds: Mutex::default(),
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let check_controller = Controller::for_stream(check_events, checks)
        .graceful_shutdown_on(stop(shutdown_rx.clone()))
        .run(reconcile_check, error_policy, ctx.clone())
        .for_each(|_| async {});
    let mut wl_controller = Controller::new(workloads, watcher::Config::default().any_semantic());
    if let Some(rx) = refreshed {
        // A new forecast replans every Workload, as it does every CarbonAwareJob (and a
        // Workload reconciled before the first forecast arrived is not left to its
        // one-minute retry).
        wl_controller = wl_controller.reconcile_all_on(controller::refreshes(rx));
    }
    let wl_store = wl_controller.store();
    let wl_controller = wl_controller
        .watches_stream(pod_events, move |pod| workload_of_pod(&wl_store, &pod))
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.max_concurrent_reconciles),
        )
        .graceful_shutdown_on(stop(shutdown_rx))
        .run(
            reconcile_workload,
            |wl, e, k: Arc<Kctx>| error_policy(wl, e, k.ctx.clone()),
            k,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "workload reconcile request failed");
            }
        });
    tracing::info!(
        controller = CONTROLLER_NAME,
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "Kueue admission check controller started"
    );
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    futures::join!(check_controller, wl_controller);
    tracing::info!("Kueue admission check controller stopped");
    Ok(())
}

/// Keeps of a Kueue-started pod only what counting its Ready pods needs.
fn trim_pod(p: &mut Pod) {
    p.metadata.managed_fields = None;
    p.metadata.annotations = None;
    p.spec = None;
    if let Some(st) = p.status.as_mut() {
        *st = k8s_openapi::api::core::v1::PodStatus {
            conditions: st.conditions.take(),
            ..Default::default()
        };
    }
}

/// The job object a pod belongs to: a JobSet by its label, else its controller (a Job,
/// for a batch/v1 Job).
fn pod_owner(p: &Pod) -> Option<(&str, &str)> {
    if let Some(js) = p.labels().get(JOBSET_NAME_LABEL) {
        return Some(("JobSet", js.as_str()));
    }
    p.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.as_str(), o.name.as_str()))
}

/// The Workload's job object: its controller owner's kind and name.
pub(crate) fn job_owner(
    wl: &Workload,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    wl.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
}

/// The Workloads a pod's change concerns: those whose job object owns it.
fn workload_of_pod(store: &Store<Workload>, pod: &Pod) -> Vec<ObjectRef<Workload>> {
    let Some((kind, name)) = pod_owner(pod) else {
        return Vec::new();
    };
    let ns = pod.namespace();
    store
        .state()
        .iter()
        .filter(|wl| wl.namespace() == ns)
        .filter(|wl| job_owner(wl).is_some_and(|o| o.kind == kind && o.name == name))
        .map(|wl| ObjectRef::from_obj(wl.as_ref()))
        .collect()
}

/// Ready pods of the Workload's job object, among those Kueue started.
fn ready_pods(pods: &Store<Pod>, wl: &Workload) -> i32 {
    let Some(owner) = job_owner(wl) else { return 0 };
    let ns = wl.namespace();
    let n = pods
        .state()
        .iter()
        .filter(|p| p.namespace() == ns && p.meta().deletion_timestamp.is_none())
        .filter(|p| pod_owner(p).is_some_and(|(k, n)| k == owner.kind && n == owner.name))
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Why an AdmissionCheck's parameters cannot be used, or the CarbonWindowParameters.
async fn parameters(
    ctx: &Context,
    check: &AdmissionCheck,
) -> Result<Option<CarbonWindowParameters>, String> {
    let Some(p) = check.spec.parameters.as_ref() else {
        return Ok(None);
    };
    if p.api_group != "carbonshift.io" || p.kind != "CarbonWindowParameters" {
        return Err(format!(
            "AdmissionCheck {} spec.parameters names {}/{} {:?}: carbonshift reads only \
             apiGroup carbonshift.io, kind CarbonWindowParameters",
            check.name_any(),
            p.api_group,
            p.kind,
            p.name
        ));
    }
    let api: Api<CarbonWindowParameters> = Api::all(ctx.client.clone());
    match api.get_opt(&p.name).await {
        Ok(Some(params)) => Ok(Some(params)),
        Ok(None) => Err(format!(
            "CarbonWindowParameters {:?}, named by AdmissionCheck {}, does not exist: create it \
             or fix spec.parameters.name",
            p.name,
            check.name_any()
        )),
        Err(e) => Err(format!(
            "cannot read CarbonWindowParameters {:?}: {e}",
            p.name
        )),
    }
}

/// Sets the AdmissionCheck's `Active` condition when it does not already say the same.
async fn reconcile_check(check: Arc<AdmissionCheck>, ctx: Arc<Context>) -> Result<Action, Error> {
    if check.spec.controller_name != CONTROLLER_NAME {
        return Ok(Action::await_change());
    }
    let (active, reason, message) = match parameters(&ctx, &check).await {
        Ok(_) => (
            true,
            "Active",
            format!("{CONTROLLER_NAME} is served by carbonshift"),
        ),
        Err(why) => (false, "BadParameters", why),
    };
    let status = if active { "True" } else { "False" };
    let current = check
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Active"));
    if current.is_some_and(|c| c.status == status && c.reason == reason && c.message == message) {
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    ctx.may_write()?;
    let body = json!({
        "apiVersion": AdmissionCheck::api_version(&()),
        "kind": AdmissionCheck::kind(&()),
        "status": {"conditions": [{
            "type": "Active", "status": status, "reason": reason, "message": message,
            "observedGeneration": check.meta().generation,
            "lastTransitionTime": timefmt::format((ctx.clock)()),
        }]},
    });
    let api: Api<AdmissionCheck> = Api::all(ctx.client.clone());
    api.patch_status(
        &check.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    tracing::info!(check = %check.name_any(), active, %message, "admission check condition set");
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The name of the first AdmissionCheck of ours the Workload carries, with the check.
fn our_check(k: &Kctx, wl: &Workload) -> Option<(String, Arc<AdmissionCheck>)> {
    let entries = &wl.status.as_ref()?.admission_checks;
    entries.iter().find_map(|e| {
        let ac = k.checks.get(&ObjectRef::new(&e.name))?;
        (ac.spec.controller_name == CONTROLLER_NAME).then(|| (e.name.clone(), ac))
    })
}

/// Job object kinds resolved through discovery, by `apiVersion/kind`.
pub(crate) type Kinds = Mutex<HashMap<String, ApiResource>>;

/// What the Workload controller reads of a Workload's job object.
pub(crate) struct JobMeta {
    /// `Kind/name`.
    pub reference: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    /// The CarbonAwareJob that controls it (a CarbonAwareJob's child Job), if any: that
    /// CarbonAwareJob plans it ([`super::steer`]).
    pub planned_by: Option<String>,
}

/// The job object of the Workload (the Workload's own metadata when it has no owner, or
/// the owner is gone).
pub(crate) async fn job_object(
    ctx: &Context,
    kinds: &Kinds,
    wl: &Workload,
) -> Result<JobMeta, Error> {
    let created = |m: &kube::core::ObjectMeta| {
        m.creation_timestamp
            .as_ref()
            .map(time::from_time)
            .unwrap_or_else(|| (ctx.clock)())
    };
    let own = || JobMeta {
        reference: format!("Workload/{}", wl.name_any()),
        annotations: wl.annotations().clone(),
        created: created(wl.meta()),
        planned_by: None,
    };
    let Some(owner) = job_owner(wl) else {
        return Ok(own());
    };
    let key = format!("{}/{}", owner.api_version, owner.kind);
    let cached = kinds.lock().ok().and_then(|m| m.get(&key).cloned());
    let ar = match cached {
        Some(ar) => ar,
        None => {
            let (group, version) = match owner.api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", owner.api_version.as_str()),
            };
            let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
            let (ar, _) = kube::discovery::pinned_kind(&ctx.client, &gvk).await?;
            if let Ok(mut m) = kinds.lock() {
                m.insert(key, ar.clone());
            }
            ar
        }
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &wl.namespace().unwrap_or_default(), &ar);
    Ok(match api.get_metadata_opt(&owner.name).await? {
        Some(m) => JobMeta {
            reference: format!("{}/{}", owner.kind, owner.name),
            annotations: m.annotations().clone(),
            created: created(m.meta()),
            planned_by: m
                .owner_references()
                .iter()
                .find(|o| {
                    o.controller == Some(true)
                        && o.kind == CarbonAwareJob::kind(&())
                        && o.api_version == CarbonAwareJob::api_version(&())
                })
                .map(|o| o.name.clone()),
        },
        None => own(),
    })
}

/// The Workload's schedule, or what to fix.
async fn spec_of(
    k: &Kctx,
    wl: &Workload,
    check: &str,
    ac: &AdmissionCheck,
    meta: &JobMeta,
) -> Result<Result<CarbonWindowSpec, String>, Error> {
    let params = match parameters(&k.ctx, ac).await {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    let JobMeta {
        reference,
        annotations,
        created,
        ..
    } = meta;
    let created = *created;
    let defaults = params.as_ref().map(|p| Defaults {
        name: p.meta().name.as_deref().unwrap_or_default(),
        spec: &p.spec,
    });
    let job = JobObject {
        reference,
        annotations,
        created,
    };
    Ok(window_spec(wl, check, defaults, job).map_err(|e| format!("{reference}: {}", e.message)))
}

/// Reconciles one Workload (see the module doc).
async fn reconcile_workload(wl: Arc<Workload>, k: Arc<Kctx>) -> Result<Action, Error> {
    let Some((check, ac)) = our_check(&k, &wl) else {
        return Ok(Action::await_change());
    };
    let ns = wl
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let ctx = &k.ctx;
    let now = (ctx.clock)();
    let windows: Api<CarbonWindow> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = windows.get_opt(&wl.name_any()).await?;
    if existing
        .as_ref()
        .and_then(|w| w.status.as_ref())
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_terminal)
    {
        return Ok(Action::await_change());
    }
    let v = view(&wl, &check);
    let meta = match job_object(ctx, &k.kinds, &wl).await {
        Ok(meta) => meta,
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 403 => {
            let kind = job_owner(&wl).map(|o| o.kind.clone()).unwrap_or_default();
            let message = format!(
                "carbonshift: carbonshift may not read the {kind} this Workload stands for \
                 ({}): grant its ServiceAccount get on that kind to read the job's \
                 carbonshift.io/* annotations",
                s.message
            );
            return refuse(&k, &wl, &check, message, now).await;
        }
        Err(e) => return Err(e),
    };
    if let Some(caj) = &meta.planned_by {
        return defer(ctx, &wl, &check, &v, caj, now).await;
    }
    let spec = match spec_of(&k, &wl, &check, &ac, &meta).await? {
        Ok(spec) => spec,
        Err(why) => {
            let message = format!("carbonshift: {why}");
            return refuse(&k, &wl, &check, message, now).await;
        }
    };
    let is_copy = wl.labels().contains_key(MULTIKUEUE_ORIGIN_LABEL);
    let mut spec = spec;
    if is_copy && spec.schedule.strategy != StrategyName::RunNow {
        // A copy is started at its clean window and runs through (see decide_for_copy).
        spec.schedule.strategy = StrategyName::FlexibleStart;
    }
    let window = ensure_window(&windows, &wl, existing, spec).await?;
    let caj = as_carbon_aware_job(&window);
    let child = as_child(&wl, &window, ready_pods(&k.pods, &wl));
    let (region, intensities) = controller::region_and_intensities(&caj, ctx, now).await;
    let out = build::build(Observed {
        caj: &caj,
        child: Some(&child),
        region: region.as_deref().map_err(String::as_str),
        intensities: intensities.as_deref().map_err(String::as_str),
        now,
        persist_every: ctx.persist_every,
        deadline_margin: ctx.deadline_margin,
        kueue: false,
    });
    if out.write_status {
        ctx.may_write()?;
        match controller::write_status(&windows, &window, &out.status).await {
            Ok(_) => {}
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(e) => return Err(e),
        }
    }
    controller::count(&ctx.metrics, &ns, &out);
    controller::announce(ctx, wl.as_ref(), &out.events).await;
    let mut next = out.requeue;
    if let Some(w) = wanted(&out, now) {
        let decision = if is_copy {
            decide_for_copy(&v, &w, now)
        } else {
            decide(&v, &w, now)
        };
        match decision {
            Some(d) => act(ctx, &wl, &check, &d, now).await?,
            None => keep_noted(ctx, &wl, &check, &v).await?,
        }
        if let Wanted::Wait { until, .. } = w {
            // A held Workload is released at the planned instant.
            let d = (until - now).max(chrono::TimeDelta::seconds(1));
            next = Some(next.map_or(d, |n| n.min(d)));
        }
    }
    Ok(match next {
        Some(d) => Action::requeue(d.to_std().unwrap_or(Duration::from_secs(1))),
        None => Action::await_change(),
    })
}

/// The Workload of a CarbonAwareJob's child Job: that CarbonAwareJob plans it and holds
/// the Workload while it must not run ([`super::steer`]), so the check is `Ready` as soon
/// as Kueue reserves quota (while held, it says why, as for any held Workload), and no
/// CarbonWindow is kept (the ledger is the
/// CarbonAwareJob's status).
async fn defer(
    ctx: &Context,
    wl: &Workload,
    check: &str,
    v: &super::check::WorkloadView,
    caj: &str,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let w = Wanted::Run {
        message: format!("carbonshift: planned by CarbonAwareJob {caj}"),
    };
    if v.active {
        if let Some(d) = decide(v, &w, now) {
            act(ctx, wl, check, &d, now).await?;
        }
    } else {
        // Held by the CarbonAwareJob: its reason on the check as well.
        keep_noted(ctx, wl, check, v).await?;
    }
    Ok(Action::await_change())
}

/// A schedule that cannot be read: the Workload held for 5 minutes with the fix in
/// [`HELD_BECAUSE`], and a Warning Event on it when the message is new.
async fn refuse(
    k: &Kctx,
    wl: &Workload,
    check: &str,
    message: String,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let v = view(wl, check);
    let news = wl.annotations().get(HELD_BECAUSE) != Some(&held_because(&message));
    let w = Wanted::Invalid {
        message: message.clone(),
    };
    match decide(&v, &w, now) {
        Some(d) => act(&k.ctx, wl, check, &d, now).await?,
        None => keep_noted(&k.ctx, wl, check, &v).await?,
    }
    if news {
        let note = EventNote {
            warning: true,
            reason: "InvalidSpec",
            message,
        };
        controller::announce(&k.ctx, wl, &[note]).await;
    }
    Ok(Action::requeue(Duration::from_secs(
        super::check::INVALID_RETRY_SECS as u64,
    )))
}

/// The Workload's CarbonWindow with `spec`: created owned by the Workload when missing,
/// its spec applied when it changed (the status, the ledger, is never touched here).
async fn ensure_window(
    api: &Api<CarbonWindow>,
    wl: &Workload,
    existing: Option<CarbonWindow>,
    spec: CarbonWindowSpec,
) -> Result<CarbonWindow, Error> {
    if let Some(w) = existing.as_ref().filter(|w| w.spec == spec) {
        return Ok(w.clone());
    }
    let mut w = CarbonWindow::new(&wl.name_any(), spec);
    w.metadata.namespace = wl.namespace();
    w.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: Workload::api_version(&()).into_owned(),
            kind: Workload::kind(&()).into_owned(),
            name: wl.name_any(),
            uid: wl.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    match existing {
        None => match api.create(&PostParams::default(), &w).await {
            Ok(created) => Ok(created),
            // Another reconcile created it meanwhile: use that one.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(api.get(&wl.name_any()).await?),
            Err(e) => Err(e.into()),
        },
        Some(_) => {
            let patch = json!({"apiVersion": CarbonWindow::api_version(&()), "kind": CarbonWindow::kind(&()), "spec": w.spec});
            Ok(api
                .patch(
                    &wl.name_any(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?)
        }
    }
}

/// Carries out `d` on the Workload: the check `Ready` (server-side apply of that one entry
/// of `status.admissionChecks`, a list Kueue keys by name), or `spec.active` and the hold
/// annotations (a merge patch of just those fields).
pub(crate) async fn act(
    ctx: &Context,
    wl: &Workload,
    check: &str,
    d: &Decision,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    ctx.may_write()?;
    let api: Api<Workload> =
        Api::namespaced(ctx.client.clone(), &wl.namespace().unwrap_or_default());
    let name = wl.name_any();
    match d {
        Decision::Admit { message } => {
            apply_check(&api, &name, check, "Ready", message, now).await?;
            tracing::info!(namespace = wl.namespace(), workload = %name, check, %message, "admission check Ready");
        }
        Decision::Hold { until, message } => {
            let body = json!({
                "metadata": {"annotations": {
                    HELD_UNTIL: timefmt::format(*until),
                    HELD_BECAUSE: held_because(message),
                }},
                "spec": {"active": false},
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await?;
            tracing::info!(namespace = wl.namespace(), workload = %name, until = %timefmt::format(*until), %message, "workload held (deactivated)");
            note_on_check(&api, wl, check, &held_because(message), now).await?;
        }
        Decision::Wait { message } => {
            note_on_check(&api, wl, check, message, now).await?;
            tracing::info!(namespace = wl.namespace(), workload = %name, %message, "MultiKueue copy waits (check Pending)");
        }
        Decision::Release => {
            let body = json!({
                "metadata": {"annotations": {HELD_UNTIL: null, HELD_BECAUSE: null}},
                "spec": {"active": true},
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await?;
            tracing::info!(namespace = wl.namespace(), workload = %name, "workload released (reactivated)");
        }
    }
    Ok(())
}

/// A Workload carbonshift holds: its check's entry says why again after Kueue's eviction
/// reset the message ("Reset to Pending after eviction").
async fn keep_noted(
    ctx: &Context,
    wl: &Workload,
    check: &str,
    v: &super::check::WorkloadView,
) -> Result<(), Error> {
    let Some(because) = wl.annotations().get(HELD_BECAUSE) else {
        return Ok(());
    };
    if v.active || v.held.is_none() || v.message == *because {
        return Ok(());
    }
    ctx.may_write()?;
    let api: Api<Workload> =
        Api::namespaced(ctx.client.clone(), &wl.namespace().unwrap_or_default());
    note_on_check(&api, wl, check, because, (ctx.clock)()).await
}

/// Why a Workload is held, on its check's entry too, where `kubectl describe workload`
/// shows it: the entry `Pending` (as Kueue resets it on the eviction anyway) with
/// `message`, unless it says so already. Nothing when Kueue has not added the check.
async fn note_on_check(
    api: &Api<Workload>,
    wl: &Workload,
    check: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let entry = wl
        .status
        .as_ref()
        .and_then(|s| s.admission_checks.iter().find(|c| c.name == check));
    let Some(e) = entry.filter(|e| e.state != "Pending" || e.message != message) else {
        return Ok(());
    };
    let since = e
        .last_transition_time
        .as_deref()
        .and_then(|t| timefmt::parse(t).ok())
        .filter(|_| e.state == "Pending")
        .unwrap_or(now);
    apply_check(api, &wl.name_any(), check, "Pending", message, since).await
}

/// The [`HELD_BECAUSE`] annotation's value for `message`: at most 1,024 characters.
fn held_because(message: &str) -> String {
    message.chars().take(1024).collect()
}

/// Server-side apply of our check's entry of `status.admissionChecks` (a list Kueue keys
/// by name), so Kueue's own fields are never overwritten.
async fn apply_check(
    api: &Api<Workload>,
    name: &str,
    check: &str,
    state: &str,
    message: &str,
    since: DateTime<Utc>,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": Workload::api_version(&()),
        "kind": Workload::kind(&()),
        "status": {"admissionChecks": [{
            "name": check,
            "state": state,
            "message": message.chars().take(32768).collect::<String>(),
            "lastTransitionTime": timefmt::format(since),
        }]},
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Adds the finished CarbonWindows to the totals, as the CarbonAwareJob controller does
/// with finished CarbonAwareJobs at start-up.
async fn restore_totals(ctx: &Context, namespace: Option<&str>) -> Result<(), Error> {
    let api: Api<CarbonWindow> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut counted = 0;
    for w in api.list(&Default::default()).await? {
        if let Some(st) = w
            .status
            .as_ref()
            .filter(|s| s.phase.is_some_and(Phase::is_terminal))
        {
            controller::add_to_totals(&ctx.metrics, &w.namespace().unwrap_or_default(), st);
            counted += 1;
        }
    }
    tracing::info!(counted, "totals restored from the finished CarbonWindows");
    Ok(())
}
