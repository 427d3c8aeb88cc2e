//! PURE build step: from what was read (the CarbonAwareJob with its status, the child Job,
//! the region's intensities, the time) to what should be: the child Job to apply (if any
//! write is needed), the new status, the Events to publish and when to look again.
//!
//! No kube client, no clock, no in-memory state: the same inputs always give the same
//! outcome, so a restarted operator (or `carbonshift plan -f`) decides exactly as the one
//! before it.
//!
//! ## Accounting
//! One path, [`crate::accounting::Ledger`] (`plan -f` runs this same step). Every reconcile
//! accrues the ledger from `status.lastAccountedTime` (or `runningSince`, if later: time
//! before a start is never runtime) to now, if the Job was unsuspended over it (read from
//! `status.runningSince`, which every transition persists): runtime, energy, emissions,
//! and the run-now baseline, i.e. the same job started at creation and never paused, over
//! `[created, created + work)`. Time and energy need no intensities and always accrue; the
//! grams are integrated over recorded intensities only ([`Intensities::recorded`]: the live
//! past, then the provider's history), and a span neither covers is owed in
//! `status.unaccounted` until one does, never integrated at a guessed value. The operator
//! asks for history back to [`needed_since`].
//!
//! Work is what the pods do, not the time the Job is unsuspended: with `P` the Job's
//! `parallelism` (default 1) and `R` its pods Ready (`status.ready` of the child Job, the
//! watch cache's copy), a second counts `min(R, P) / P` seconds of runtime, and energy and
//! emissions scale the same way (the power model is the whole job's); the rest of the
//! second is `waitingForPodsSeconds` (Pending: scheduling, image pull, container start).
//! The step sees the child only at reconciles, and every change of its status triggers
//! one, so `R` is piecewise constant between them: the interval `[lastAccountedTime, now)`
//! is integrated at the count persisted in `readyPods`, then the count seen now is
//! persisted (a change of it is a material change, hence a status write). A suspended or
//! missing child has no working pods; a status from before `readyPods` existed is
//! integrated at a full share until its first observation, as the operator that wrote it
//! accounted. The first Ready pod of a run sets `readySince`; `readySince - runningSince`
//! is the run's start-up latency (`lastStartupSeconds`, the largest in `startupSeconds`),
//! and the deadline guard plans against the deadline less `max(--deadline-margin,
//! startupSeconds)`, clamped to the slack (see [`planning_deadline`]).
//!
//! `work` is the runtime net of restore overhead: a resumed run restores its checkpoint
//! during the first `checkpointOverhead` of wall-clock time after its first Ready pod
//! (`[readySince, readySince + checkpointOverhead)`: the checkpoint is loaded by the running
//! pods, not while they are Pending); what accrues in that window, at the same Ready share,
//! is restore (emitted, never in the baseline, since the counterfactual never pauses) and
//! is kept in `restoreSeconds`. A status written before that field derives it as the
//! operator that wrote it did, from `pauses` and `runningSince`. So a restarted operator
//! rebuilds the same ledger from the status alone.
//!
//! The accrued status is *written* only when something else changed, or, while the job
//! runs, when `lastAccountedTime` is older than the persist interval: a crash then loses
//! nothing (the next operator integrates from the persisted instant), and the status shown
//! to users is at most one interval behind. A job that waits or is paused accrues nothing
//! (see `persist_and_requeue`), so it writes nothing until it transitions: its
//! `lastAccountedTime` and `currentIntensity` stay those of its last write.

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::{Resource, ResourceExt};

use super::intensity::{value_clamped, Intensities};
use super::validate::{validate, InvalidSpec, ValidSpec};
use crate::accounting::{owed_runtime_secs, Ledger, Owed};
use crate::api::{time, CarbonAwareJob, CarbonAwareJobStatus, Phase, JOB_LABEL, MANAGED_BY};
use crate::plan::horizon::{self, DailyProfile};
use crate::plan::{self, Action, JobState, Plan, PlanRequest, Reason};
use crate::series::Series;
use crate::timefmt;

/// Condition types.
pub const READY: &str = "Ready";
pub const RUNNING: &str = "Running";
pub const TEMPLATE_CURRENT: &str = "TemplateCurrent";
pub const ACCOUNTED: &str = "Accounted";

/// The child Job's finalizer: the Job (and with it the record that the work is done) stays
/// until its outcome is in the CarbonAwareJob's status, whatever deletes it.
pub const FINALIZER: &str = "carbonshift.io/cleanup";

/// When the forecast is unavailable, how soon to look again.
pub const FORECAST_RETRY_SECS: i64 = 60;

/// What was read for one reconcile.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub caj: &'a CarbonAwareJob,
    pub child: Option<&'a Job>,
    /// The grid zone, or why none could be resolved.
    pub region: Result<&'a str, &'a str>,
    /// The region's intensities, or why they are unavailable.
    pub intensities: Result<&'a Intensities, &'a str>,
    pub now: DateTime<Utc>,
    /// Persist accrued accounting at least this often.
    pub persist_every: TimeDelta,
    /// Start-up allowance: plan to finish this long before the deadline, as far as the
    /// slack allows (see [`planning_deadline`]).
    pub deadline_margin: TimeDelta,
    /// The operator serves Kueue (`run --kueue`): a template for a Kueue queue is run
    /// through Kueue (see [`kueue_queue`]) instead of being refused.
    pub kueue: bool,
}

/// A start, pause or resume, for `carbonshift_transitions_total{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Start,
    Pause,
    Resume,
}

impl Transition {
    pub fn label(self) -> &'static str {
        match self {
            Transition::Start => "start",
            Transition::Pause => "pause",
            Transition::Resume => "resume",
        }
    }
}

/// An Event to publish on the CarbonAwareJob.
#[derive(Debug, Clone, PartialEq)]
pub struct EventNote {
    pub warning: bool,
    /// PascalCase: Started, Paused, Resumed, DeadlineGuard, Succeeded, Failed, InvalidSpec, ...
    pub reason: &'static str,
    pub message: String,
}

/// The result of [`build`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: CarbonAwareJobStatus,
    /// Whether `status` must be written (see the module doc).
    pub write_status: bool,
    /// The child Job to create (server-side apply): only when there is none.
    pub job: Option<Job>,
    /// The `spec.suspend` to set on the existing child Job (a patch of that field alone:
    /// nothing else of a live Job is ever rewritten); `None` when it already matches.
    pub suspend: Option<bool>,
    pub events: Vec<EventNote>,
    /// When to reconcile again; `None` for "only on change".
    pub requeue: Option<TimeDelta>,
    pub transition: Option<Transition>,
    /// The transition was forced by the deadline guard (`transitions_total{action="deadline-guard"}`).
    pub deadline_guard: bool,
    /// Set when the job became Succeeded/Failed in this step (count it once).
    pub finished: Option<Phase>,
    /// Set when the deadline was found missed (or infeasible) in this step.
    pub deadline_missed: bool,
    /// Remove [`FINALIZER`] from the child once `status` is written: its outcome is
    /// recorded, or it is being deleted unfinished (it is recreated once gone).
    pub release_finalizer: bool,
    /// The plan, when one was made (for `plan -f`).
    pub plan: Option<Plan>,
    /// The validated spec, when valid (for `plan -f`).
    pub spec: Option<ValidSpec>,
    /// The runtime still needed, as passed to the planner, when one was computed.
    pub remaining_secs: Option<i64>,
    /// The deadline planned against (the real one less the clamped margin), when computed.
    pub planning_deadline: Option<DateTime<Utc>>,
    /// The series the plan was made with (for `plan -f`, whose rows and totals must add
    /// up on it).
    pub planning_series: Option<Series>,
    /// Grams a finished job's owed spans added in this step, to emissions and to the
    /// baseline: the totals counted the job when it finished, so they add these.
    pub settled_late: (f64, f64),
}

impl Outcome {
    fn unchanged(status: CarbonAwareJobStatus) -> Self {
        Self {
            status,
            write_status: false,
            job: None,
            suspend: None,
            events: Vec::new(),
            requeue: None,
            transition: None,
            deadline_guard: false,
            finished: None,
            deadline_missed: false,
            release_finalizer: false,
            plan: None,
            spec: None,
            remaining_secs: None,
            planning_deadline: None,
            planning_series: None,
            settled_late: (0.0, 0.0),
        }
    }
}

/// CamelCase condition/event reason of a plan reason.
pub fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::CleanWindow => "CleanWindow",
        Reason::WaitingForCleanerWindow => "WaitingForCleanerWindow",
        Reason::DeadlineGuard => "DeadlineGuard",
        Reason::DeadlineInfeasible => "DeadlineInfeasible",
        Reason::BelowThreshold => "BelowThreshold",
        Reason::AboveThreshold => "AboveThreshold",
        Reason::RunNow => "RunNow",
        Reason::Constraint => "Constraint",
        Reason::EstimateExceeded => "EstimateExceeded",
        Reason::WithinForecastError => "WithinForecastError",
    }
}

/// Sets condition `type_` in `conds`, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status_s = if status { "True" } else { "False" }.to_string();
    let last = conds
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status_s)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time::to_time(now));
    conds.retain(|c| c.type_ != type_);
    conds.push(Condition {
        type_: type_.to_string(),
        status: status_s,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: last,
    });
    conds.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// The status without what changes continuously (ledger, intensity), to decide whether a
/// write is needed. For a running job that includes `plannedEnd`: while its pods are not
/// Ready its remaining work stays put, so the end it projects moves on with the clock, one
/// second a second; it is written with the periodic accrual. (Compared on every reconcile,
/// each write triggered the next: thousands of running jobs with Pending pods rewrote
/// their status in a loop.)
fn material(s: &CarbonAwareJobStatus) -> CarbonAwareJobStatus {
    let running = s.running_since.is_some();
    CarbonAwareJobStatus {
        planned_end: if running { None } else { s.planned_end.clone() },
        current_intensity: None,
        runtime_seconds: 0,
        energy_kwh: 0.0,
        emissions_grams: 0.0,
        baseline_grams: 0.0,
        avoided_grams: 0.0,
        last_accounted_time: None,
        waiting_for_pods_seconds: 0,
        restore_seconds: None,
        unaccounted: Vec::new(),
        unaccounted_seconds: None,
        ..s.clone()
    }
}

fn child_finished(job: &Job) -> Option<(Phase, Option<DateTime<Utc>>, String)> {
    let status = job.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        let at = c.last_transition_time.as_ref().map(time::from_time);
        match c.type_.as_str() {
            "Complete" => {
                let at = status.completion_time.as_ref().map(time::from_time).or(at);
                return Some((Phase::Succeeded, at, c.message.clone().unwrap_or_default()));
            }
            "Failed" => {
                let msg = [c.reason.clone(), c.message.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                return Some((Phase::Failed, at, msg));
            }
            _ => {}
        }
    }
    None
}

/// The ledger kept in `st`, accounted up to `accounted_to`. Restore seconds are stored in
/// `restoreSeconds`; a status written before that field existed derives them as the
/// operator that wrote it accounted: every resume restored for `checkpointOverhead` from
/// `runningSince` (see the module doc).
fn ledger_of(st: &CarbonAwareJobStatus, v: &ValidSpec, accounted_to: DateTime<Utc>) -> Ledger {
    let o = v.constraints.checkpoint_overhead_secs.max(0);
    let pauses = i64::from(st.pauses.max(0));
    let runtime = st.runtime_seconds.max(0);
    let restored = st
        .restore_seconds
        .unwrap_or_else(|| match st.running_since.as_ref().map(time::from_time) {
            // Running after `pauses` resumes, the last of them possibly still restoring.
            Some(since) if pauses > 0 => {
                (pauses - 1) * o + (accounted_to - since).num_seconds().clamp(0, o)
            }
            // Paused after `pauses` pauses: `pauses - 1` resumes so far.
            _ => (pauses - 1).max(0) * o,
        })
        .max(0);
    Ledger {
        runtime_secs: runtime as f64,
        pauses: pauses as u32,
        energy_kwh: st.energy_kwh,
        emissions_grams: st.emissions_grams,
        baseline_grams: st.baseline_grams,
        restore_secs: restored.min(runtime) as f64,
    }
}

/// The Job's size: `spec.parallelism`, default 1 (0, a Job that runs nothing, counts as 1).
fn parallelism(v: &ValidSpec) -> i32 {
    v.job_spec.parallelism.unwrap_or(1).max(1)
}

/// The share of the job running with `ready` pods Ready: `min(ready, P) / P`. An unknown
/// count (a status written before `readyPods` existed) is a full share, as the operator
/// that wrote it accounted.
fn share(ready: Option<i32>, p: i32) -> f64 {
    match ready {
        None => 1.0,
        Some(r) => f64::from(r.clamp(0, p)) / f64::from(p),
    }
}

/// Pods of the live child Job that are doing work: its `status.ready` (`status.active` on
/// an API server too old to report it), none while it is suspended (its pods are being
/// terminated, writing their checkpoint) or missing.
pub fn observed_ready(child: Option<&Job>) -> i32 {
    let Some(job) = child else { return 0 };
    if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return 0;
    }
    job.status
        .as_ref()
        .and_then(|s| s.ready.or(s.active))
        .unwrap_or(0)
        .max(0)
}

/// Accrues the ledger from `lastAccountedTime` to `to` at the Ready share persisted in
/// `readyPods` (see the module doc), then settles what the job owes with the recorded
/// intensities in `intens` (none during an outage): time and energy always accrue; grams
/// over spans no recorded intensities cover stay in `unaccounted` until they do. An
/// interval the ledger refuses (only times beyond any representable range) is skipped
/// rather than retried forever.
fn accrue(
    st: &mut CarbonAwareJobStatus,
    v: &ValidSpec,
    intens: Option<&Intensities>,
    to: DateTime<Utc>,
) {
    let accounted = st
        .last_accounted_time
        .as_ref()
        .map(time::from_time)
        .unwrap_or(v.created);
    let to = to.max(accounted);
    let mut l = ledger_of(st, v, accounted);
    let mut owed = std::mem::take(&mut st.unaccounted);
    if let Some(since) = st.running_since.as_ref().map(time::from_time) {
        // Time before the run started is never runtime, whatever was accounted last.
        let from = accounted.max(since).min(to);
        if to > from {
            let share = share(st.ready_pods, parallelism(v));
            // A resumed run restores for `checkpointOverhead` from its first Ready pod.
            let ready_since = st
                .ready_since
                .as_ref()
                .map(time::from_time)
                .unwrap_or(since);
            let restore_end = if l.pauses > 0 {
                ready_since + TimeDelta::seconds(v.constraints.checkpoint_overhead_secs.max(0))
            } else {
                ready_since
            };
            let mid = restore_end.clamp(from, to);
            // `min`: a status that claims a run before creation (clock skew, a hand edit)
            // must still accrue, never stall the ledger.
            let created = v.created.min(from);
            if let Ok(spans) = l.accrue_time(&v.power, created, from, mid, to, share) {
                owed.extend(spans);
            }
            let waited = (to - from).num_seconds() as f64 * (1.0 - share);
            st.waiting_for_pods_seconds =
                st.waiting_for_pods_seconds.max(0) + waited.round() as i64;
        }
    }
    let sources = intens.map(Intensities::recorded).unwrap_or_default();
    l.settle_all(&v.power, &sources, &mut owed);
    store_ledger(st, &l, owed);
    st.last_accounted_time = Some(time::to_time(to));
}

/// Writes the ledger and what it still owes into the status.
fn store_ledger(st: &mut CarbonAwareJobStatus, l: &Ledger, owed: Vec<Owed>) {
    st.runtime_seconds = l.runtime_secs.round() as i64;
    st.restore_seconds = Some(l.restore_secs.round() as i64);
    st.energy_kwh = l.energy_kwh;
    st.emissions_grams = l.emissions_grams;
    st.baseline_grams = l.baseline_grams;
    st.avoided_grams = l.avoided_grams();
    let unaccounted = owed_runtime_secs(&owed).round() as i64;
    st.unaccounted_seconds = (!owed.is_empty()).then_some(unaccounted);
    st.unaccounted = owed;
}

/// Settles a finished job's spans still owed with the intensities now recorded. Returns
/// the grams it added to emissions and to the baseline (for the totals, which counted the
/// job when it finished).
fn settle_finished(
    st: &mut CarbonAwareJobStatus,
    v: &ValidSpec,
    intens: Option<&Intensities>,
) -> (f64, f64) {
    let Some(i) = intens.filter(|_| !st.unaccounted.is_empty()) else {
        return (0.0, 0.0);
    };
    let accounted = st
        .last_accounted_time
        .as_ref()
        .map(time::from_time)
        .unwrap_or(v.created);
    let mut l = ledger_of(st, v, accounted);
    let before = (l.emissions_grams, l.baseline_grams);
    let mut owed = std::mem::take(&mut st.unaccounted);
    l.settle_all(&v.power, &i.recorded(), &mut owed);
    store_ledger(st, &l, owed);
    (l.emissions_grams - before.0, l.baseline_grams - before.1)
}

/// The earliest instant whose intensities the next accrual of `st` may need: the start
/// of its oldest span still owed and, while the job runs, where its accrual continues (the
/// last accounted instant, or the run's start if later) and where the run-now baseline
/// continues (`created + work`). A job that is not running accrues nothing (see
/// `persist_and_requeue`): its `lastAccountedTime` may be days old and needs nothing.
/// The operator asks its provider's history back to it when the live data does not reach
/// that far.
pub fn needed_since(caj: &CarbonAwareJob, now: DateTime<Utc>) -> DateTime<Utc> {
    let created = super::validate::created_at(caj, now);
    let st = caj.status_or_default();
    let running = st.running_since.as_ref().map(|since| {
        let accounted = st
            .last_accounted_time
            .as_ref()
            .map(time::from_time)
            .unwrap_or(created)
            .max(time::from_time(since));
        let work = (st.runtime_seconds - st.restore_seconds.unwrap_or(0)).max(0);
        let baseline = created + TimeDelta::seconds(work.min(crate::api::MAX_SCHEDULE_SPAN_SECS));
        accounted.min(baseline)
    });
    st.unaccounted
        .iter()
        .map(|o| o.start)
        .chain(running)
        .min()
        .unwrap_or(now)
}

/// Records what the child Job shows now while the CarbonAwareJob runs: `readyPods` (the
/// count accounted from now on) and, at the run's first Ready pod, `readySince` and the
/// start-up latency since `runningSince`.
fn observe_ready(st: &mut CarbonAwareJobStatus, ready: i32, now: DateTime<Utc>) {
    let Some(since) = st.running_since.as_ref().map(time::from_time) else {
        st.ready_pods = Some(0);
        st.ready_since = None;
        return;
    };
    st.ready_pods = Some(ready);
    if ready > 0 && st.ready_since.is_none() {
        st.ready_since = Some(time::to_time(now));
        let latency = (now - since).num_seconds().max(0);
        st.last_startup_seconds = Some(latency);
        st.startup_seconds = Some(st.startup_seconds.unwrap_or(0).max(latency));
    }
}

/// A stable fingerprint of `spec.template` (FNV-1a over its JSON): the same template
/// always gives the same value, whichever operator version or process computes it.
pub fn template_hash(caj: &CarbonAwareJob) -> String {
    let json = serde_json::to_string(&caj.spec.template).unwrap_or_default();
    let h = json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Records the template a new child Job is created from, and reports (condition
/// `TemplateCurrent`, and a Warning Event when that turns False) a template edited after
/// the child exists: it is not applied, the child keeps the original.
fn template_current(
    st: &mut CarbonAwareJobStatus,
    caj: &CarbonAwareJob,
    events: &mut Vec<EventNote>,
    creating: bool,
    spec_unchanged: bool,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let known = st.conditions.iter().any(|c| c.type_ == TEMPLATE_CURRENT);
    if spec_unchanged && known && !creating && st.template_hash.is_some() {
        // The spec (and so the template) is the one the last step judged.
        return;
    }
    let hash = template_hash(caj);
    if creating || st.template_hash.is_none() {
        st.template_hash = Some(hash.clone());
    }
    let current = st.template_hash.as_deref() == Some(hash.as_str());
    let was = st
        .conditions
        .iter()
        .find(|c| c.type_ == TEMPLATE_CURRENT)
        .map(|c| c.status == "True");
    let (reason, message) = if current {
        (
            "ChildJobMatches",
            "the child Job runs this spec.template".to_string(),
        )
    } else {
        (
            "TemplateChangeIgnored",
            format!(
                "spec.template was edited after the child Job {} was created: a Job's pod \
                 template is immutable, so the Job keeps running the original. Delete and \
                 re-create the CarbonAwareJob to run the new template",
                caj.name_any()
            ),
        )
    };
    if !current && was != Some(false) {
        events.push(EventNote {
            warning: true,
            reason: "TemplateChangeIgnored",
            message: message.clone(),
        });
    }
    set_condition(
        &mut st.conditions,
        TEMPLATE_CURRENT,
        current,
        reason,
        message,
        generation,
        now,
    );
}

/// Kueue's queue label: a Job carrying it is Kueue's to suspend and resume.
pub const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";

/// The Kueue queue the child Job would be (or is) submitted to: the label (or, as older
/// Kueue releases read it, the annotation) on the template's metadata or on the live child.
///
/// Such a Job is Kueue's: created suspended, and carbonshift never writes its
/// `spec.suspend`. With `run --kueue` the plan reaches it through its Workload instead
/// (`kueue::steer`): held (deactivated) while the plan waits or pauses, released when it
/// runs, and Kueue admits it when its ClusterQueue has the quota.
pub fn kueue_queue(caj: &CarbonAwareJob, child: Option<&Job>) -> Option<String> {
    let template = caj.spec.template.metadata.as_ref();
    let from = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels.and_then(|l| l.get(KUEUE_QUEUE_LABEL)).cloned()
    };
    from(template.map(|m| &m.labels))
        .or_else(|| from(template.map(|m| &m.annotations)))
        .or_else(|| from(child.and_then(|j| j.metadata.labels.as_ref())))
}

/// Whether the Job still carries [`FINALIZER`].
pub fn holds_finalizer(job: &impl Resource) -> bool {
    job.finalizers().iter().any(|f| f == FINALIZER)
}

/// The child Job as carbonshift wants it.
pub fn child_job(caj: &CarbonAwareJob, v: &ValidSpec, suspend: bool) -> Job {
    let name = caj.name_any();
    let mut labels = caj
        .spec
        .template
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(JOB_LABEL.into(), name.clone());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    let annotations = caj
        .spec
        .template
        .metadata
        .as_ref()
        .map(|m| m.annotations.clone())
        .filter(|a| !a.is_empty());
    let mut spec = v.job_spec.clone();
    spec.suspend = Some(suspend);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: caj.namespace(),
            labels: Some(labels),
            annotations,
            owner_references: caj.controller_owner_ref(&()).map(|o| vec![o]),
            finalizers: Some(vec![FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The outcome for a CarbonAwareJob carbonshift cannot act on: `Ready=False` with
/// `reason`, a Warning Event when that is news, the ledger and the child Job untouched
/// (never overwritten with zeros), and no requeue (a spec change triggers the next look).
pub fn reject(
    caj: &CarbonAwareJob,
    reason: &'static str,
    message: String,
    now: DateTime<Utc>,
) -> Outcome {
    let now = time::trunc(now);
    let old = caj.status_or_default();
    let mut st = old.clone();
    st.observed_generation = caj.meta().generation;
    st.phase = Some(st.phase.unwrap_or(Phase::Pending));
    let was = old
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    set_condition(
        &mut st.conditions,
        READY,
        false,
        reason,
        message.clone(),
        st.observed_generation,
        now,
    );
    let news = was != Some(("False".into(), reason.to_string(), message.clone()));
    let write = st != old;
    let mut o = Outcome::unchanged(st);
    o.write_status = write;
    if news {
        o.events.push(EventNote {
            warning: true,
            reason,
            message,
        });
    }
    o
}

/// The deadline to plan against: `deadline - margin`, the margin taken out of the slack
/// known now (`deadline - now - remaining`), never more.
///
/// `plan::decide`'s deadline guard starts a job at the latest feasible start, but the
/// operator acts on that decision with some latency (the requeue timer, API round trips,
/// pod scheduling and start-up), so a job started exactly then ends after its deadline by
/// that latency; planning against an earlier deadline makes the guard fire `margin` early.
/// The clamp keeps every feasible job feasible (`now + remaining <= deadline` still holds
/// against the returned instant): a job with less slack than the margin gets what is left
/// of it, i.e. it starts (or keeps running) now. An infeasible job, a negative margin or
/// out-of-range arithmetic plans against the real deadline, so infeasibility is reported as
/// before.
pub fn planning_deadline(
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
    remaining_secs: i64,
    margin: TimeDelta,
) -> DateTime<Utc> {
    let slack = TimeDelta::try_seconds(remaining_secs.max(0))
        .and_then(|r| deadline.signed_duration_since(now).checked_sub(&r));
    let Some(slack) = slack else {
        return deadline;
    };
    let m = margin
        .max(TimeDelta::zero())
        .min(slack.max(TimeDelta::zero()));
    deadline.checked_sub_signed(m).unwrap_or(deadline)
}

/// Builds the outcome of one reconcile. Pure.
/// The build step: a pipeline of the named pure steps below, in order. Each returns what
/// the next needs; the first four may end the pipeline with their own outcome.
pub fn build(obs: Observed<'_>) -> Outcome {
    let now = time::trunc(obs.now);
    let old = obs.caj.status_or_default();
    let mut st = old.clone();
    st.observed_generation = obs.caj.meta().generation;
    if old.phase.is_some_and(Phase::is_terminal) {
        return finished_history(obs, st, &old, now);
    }
    let (v, region) = match admit(&obs, &mut st, now) {
        Ok(admitted) => admitted,
        Err(rejected) => return *rejected,
    };
    let intens = obs.intensities.ok();
    record_intensity(&mut st, intens, now);
    if let Some(finished) = obs.child.and_then(child_finished) {
        return close_finished(&obs, st, v, intens, finished, now);
    }
    let generation = obs.caj.meta().generation;
    accrue(&mut st, &v, intens, now);
    accounted_condition(&mut st, generation, now);
    observe_ready(&mut st, observed_ready(obs.child), now);
    let d = decide(&obs, &st, &v, intens, now);
    let mut events = Vec::new();
    let transition = transition(&mut st, &d, &v, now, &mut events);
    let deadline_missed = deadline_events(&mut st, &d, &v, now, &mut events);
    schedule(&mut st, &d);
    conditions(&mut st, &obs, &d, region, now);
    let (job, suspend) = child_diff(&obs, &v, d.run());
    let spec_unchanged = old.observed_generation.is_some() && old.observed_generation == generation;
    template_current(
        &mut st,
        obs.caj,
        &mut events,
        job.is_some(),
        spec_unchanged,
        generation,
        now,
    );
    recreated_event(&obs, &old, d.run(), &mut events);
    let (write_status, requeue) = persist_and_requeue(&obs, &old, &st, transition, &d, now);
    let deleting = obs
        .child
        .is_some_and(|j| j.meta().deletion_timestamp.is_some());
    Outcome {
        status: st,
        write_status,
        job,
        suspend,
        events,
        requeue: Some(requeue),
        transition,
        deadline_guard: transition.is_some() && d.run() && d.plan.reason == Reason::DeadlineGuard,
        finished: None,
        deadline_missed,
        release_finalizer: deleting && obs.child.is_some_and(holds_finalizer),
        spec: Some(v),
        remaining_secs: Some(d.remaining),
        planning_deadline: Some(d.plan_deadline),
        plan: d.planned.then_some(d.plan),
        planning_series: d.series,
        settled_late: (0.0, 0.0),
    }
}

/// Step "admit": the spec is valid, the child Job (if any) is ours, Kueue does not own it,
/// and the region is known; records what follows from the spec. Otherwise the rejection.
fn admit<'a>(
    obs: &Observed<'a>,
    st: &mut CarbonAwareJobStatus,
    now: DateTime<Utc>,
) -> Result<(ValidSpec, &'a str), Box<Outcome>> {
    let caj = obs.caj;
    let refuse = |reason, message| Box::new(reject(caj, reason, message, now));
    // A run recorded before `readyPods` existed was accounted from `runningSince` on (see
    // the module doc): keep its restore window there, and never take the time since then
    // for a start-up latency.
    if st.ready_pods.is_none() && st.ready_since.is_none() {
        st.ready_since = st.running_since.clone();
    }
    let v = validate(caj, now).map_err(|InvalidSpec { message }| refuse("InvalidSpec", message))?;
    if let Some(child) = obs.child {
        let ours = child
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == caj.meta().uid.as_ref());
        if !ours {
            return Err(refuse(
                "JobConflict",
                format!(
                    "a Job named {:?} already exists and is not controlled by this CarbonAwareJob: \
                     delete or rename it, or rename the CarbonAwareJob",
                    child.name_any()
                ),
            ));
        }
    }
    match kueue_queue(caj, obs.child) {
        Some(queue) if !obs.kueue => {
            return Err(refuse(
                "KueueManaged",
                format!(
                    "the Job template carries Kueue's queue label {KUEUE_QUEUE_LABEL}={queue:?}: \
                     Kueue owns such a Job's spec.suspend, and this operator does not serve \
                     Kueue. Run it with --kueue (chart value kueue.enabled=true) to run the \
                     Job through Kueue, or remove the label to let carbonshift suspend and \
                     resume the Job itself"
                ),
            ));
        }
        _ => {}
    }
    let region = obs
        .region
        .map_err(|why| refuse("RegionUnknown", why.to_string()))?;
    st.region = Some(region.to_string());
    st.deadline = Some(time::to_time(v.deadline));
    st.job_name = Some(caj.name_any());
    Ok((v, region))
}

/// Step "record intensity": where the intensities come from and the one in force now.
fn record_intensity(
    st: &mut CarbonAwareJobStatus,
    intens: Option<&Intensities>,
    now: DateTime<Utc>,
) {
    if let Some(i) = intens {
        st.forecast_source = Some(i.provenance.clone());
        st.signal = Some(i.signal.label().to_string());
        st.current_intensity = Some((value_clamped(&i.series, now) * 10.0).round() / 10.0);
    }
}

/// The intensity in force, for Event text.
fn intensity_text(st: &CarbonAwareJobStatus) -> String {
    st.current_intensity
        .map(|g| format!("{g} gCO2eq/kWh"))
        .unwrap_or_else(|| "unknown intensity".into())
}

/// Step "close finished": the child Job completed or failed. The ledger is closed at its
/// completion time, the outcome recorded, one Event summarises it.
fn close_finished(
    obs: &Observed<'_>,
    mut st: CarbonAwareJobStatus,
    v: ValidSpec,
    intens: Option<&Intensities>,
    (phase, at, msg): (Phase, Option<DateTime<Utc>>, String),
    now: DateTime<Utc>,
) -> Outcome {
    let generation = obs.caj.meta().generation;
    let at = time::trunc(at.unwrap_or(now).min(now));
    accrue(&mut st, &v, intens, at);
    accounted_condition(&mut st, generation, now);
    st.phase = Some(phase);
    st.running_since = None;
    st.paused_since = None;
    st.ready_pods = Some(0);
    st.ready_since = None;
    st.completion_time = Some(time::to_time(at));
    st.next_action = None;
    st.next_transition_time = None;
    st.planned_end = Some(time::to_time(at));
    let deadline_missed = at > v.deadline && !st.deadline_missed;
    st.deadline_missed |= deadline_missed;
    let ledger = format!(
        "{:.0} g avoided (baseline {:.0} g, actual {:.0} g, {:.2} kWh, runtime {}, {} pauses){}",
        st.avoided_grams,
        st.baseline_grams,
        st.emissions_grams,
        st.energy_kwh,
        crate::duration::format_secs(st.runtime_seconds),
        st.pauses,
        unaccounted_suffix(&st)
    );
    let (ok, reason) = match phase {
        Phase::Succeeded => (true, "Succeeded"),
        _ => (false, "Failed"),
    };
    let message = if ok {
        format!("child Job completed: {ledger}")
    } else {
        format!("child Job failed ({msg}): {ledger}")
    };
    set_condition(
        &mut st.conditions,
        RUNNING,
        false,
        reason,
        message.clone(),
        generation,
        now,
    );
    set_condition(
        &mut st.conditions,
        READY,
        true,
        reason,
        "finished".into(),
        generation,
        now,
    );
    let mut o = Outcome::unchanged(st);
    o.write_status = true;
    o.events = vec![EventNote {
        warning: !ok,
        reason,
        message,
    }];
    o.release_finalizer = obs.child.is_some_and(holds_finalizer);
    o.finished = Some(phase);
    o.deadline_missed = deadline_missed;
    o.spec = Some(v);
    o
}

/// What step "decide" settled: the plan (from `plan::decide` with a forecast, or the
/// no-forecast rule without), the remaining work and the deadline planned against.
struct Decision {
    plan: Plan,
    /// Whether `plan` came from a forecast (`plan -f` shows it).
    planned: bool,
    remaining: i64,
    plan_deadline: DateTime<Utc>,
    /// The job was running before this step.
    was_running: bool,
    /// The series planned with (the forecast, past its horizon the daily profile).
    series: Option<Series>,
}

impl Decision {
    fn run(&self) -> bool {
        self.plan.action == Action::Run
    }

    fn next(&self) -> Option<DateTime<Utc>> {
        self.plan.next_transition
    }
}

/// Step "decide": the remaining work, the deadline less the start-up margin (at least the
/// latency this job has shown), and the planner's decision for now.
fn decide(
    obs: &Observed<'_>,
    st: &CarbonAwareJobStatus,
    v: &ValidSpec,
    intens: Option<&Intensities>,
    now: DateTime<Utc>,
) -> Decision {
    let pauses_so_far = st.pauses.max(0) as u32;
    let remaining = plan::remaining_work_secs(
        v.expected_secs,
        st.runtime_seconds,
        pauses_so_far,
        &v.constraints,
    );
    let state = match (&st.running_since, &st.start_time) {
        (Some(since), _) => JobState::Running {
            since: time::from_time(since),
        },
        (None, Some(_)) => JobState::Paused {
            since: st.paused_since.as_ref().map(time::from_time).unwrap_or(now),
        },
        (None, None) => JobState::NotStarted,
    };
    let margin = obs
        .deadline_margin
        .max(TimeDelta::seconds(st.startup_seconds.unwrap_or(0).max(0)));
    let plan_deadline = planning_deadline(v.deadline, now, remaining, margin);
    // Far enough for the plan, and for running the remaining work at once (the run-now
    // comparison, or a deadline out of reach).
    let until = v.deadline.max(now + TimeDelta::seconds(remaining));
    let series = intens.and_then(|i| {
        horizon::planning_series(&i.series, &DailyProfile::of(&i.series), now, until)
    });
    let (plan, planned) = match &series {
        Some(forecast) => {
            let req = PlanRequest {
                now,
                remaining_secs: remaining,
                deadline: plan_deadline,
                strategy: v.strategy,
                constraints: v.constraints,
                state,
                pauses_so_far,
                forecast,
                error: intens.map_or(plan::ForecastError::NONE, Intensities::forecast_error),
            };
            (plan::decide(&req), true)
        }
        None => {
            let p = plan::decide_without_forecast(
                now,
                remaining,
                plan_deadline,
                state,
                FORECAST_RETRY_SECS,
            );
            (p, false)
        }
    };
    Decision {
        plan,
        planned,
        remaining,
        plan_deadline,
        was_running: st.running_since.is_some(),
        series,
    }
}

/// Step "transition": starts, resumes or pauses the job in the status when the decision
/// differs from its state, with the Event that says why.
fn transition(
    st: &mut CarbonAwareJobStatus,
    d: &Decision,
    v: &ValidSpec,
    now: DateTime<Utc>,
    events: &mut Vec<EventNote>,
) -> Option<Transition> {
    let reason = d.plan.reason;
    if d.run() && !d.was_running {
        let margin_txt = if d.plan_deadline < v.deadline {
            format!(
                ", planned to finish by {} ({} start-up margin)",
                timefmt::format(d.plan_deadline),
                crate::duration::format_secs((v.deadline - d.plan_deadline).num_seconds())
            )
        } else {
            String::new()
        };
        st.running_since = Some(time::to_time(now));
        st.paused_since = None;
        // The new run's pods are not Ready yet (the live Job is still suspended).
        st.ready_pods = Some(0);
        st.ready_since = None;
        let first = st.start_time.is_none();
        if first {
            st.start_time = Some(time::to_time(now));
        }
        let (ev, verb) = match (reason, first) {
            (Reason::DeadlineGuard, _) => {
                ("DeadlineGuard", if first { "started" } else { "resumed" })
            }
            (_, true) => ("Started", "started"),
            (_, false) => ("Resumed", "resumed"),
        };
        events.push(EventNote {
            warning: reason == Reason::DeadlineGuard,
            reason: ev,
            message: format!(
                "{verb} at {} ({}): {} of {} runtime left, deadline {}{}",
                intensity_text(st),
                reason_name(reason),
                crate::duration::format_secs(d.remaining.max(0)),
                crate::duration::format_secs(v.expected_secs),
                timefmt::format(v.deadline),
                margin_txt
            ),
        });
        return Some(if first {
            Transition::Start
        } else {
            Transition::Resume
        });
    }
    if !d.run() && d.was_running {
        st.running_since = None;
        st.paused_since = Some(time::to_time(now));
        st.ready_pods = Some(0);
        st.ready_since = None;
        st.pauses += 1;
        events.push(EventNote {
            warning: false,
            reason: "Paused",
            message: format!(
                "paused at {} ({}): {} runtime left{}",
                intensity_text(st),
                reason_name(reason),
                crate::duration::format_secs(d.remaining.max(0)),
                d.next()
                    .map(|t| format!(", resuming at {}", timefmt::format(t)))
                    .unwrap_or_default()
            ),
        });
        return Some(Transition::Pause);
    }
    None
}

/// Step "deadline": records a deadline missed (passed, or infeasible even running from
/// now: then the job runs at once) once, with its Warning. Returns whether it did now.
fn deadline_events(
    st: &mut CarbonAwareJobStatus,
    d: &Decision,
    v: &ValidSpec,
    now: DateTime<Utc>,
    events: &mut Vec<EventNote>,
) -> bool {
    if st.deadline_missed {
        return false;
    }
    let message = if d.plan.reason == Reason::DeadlineInfeasible {
        format!(
            "{} runtime left cannot finish by the {} even running continuously: \
             running it now. {}",
            crate::duration::format_secs(d.remaining.max(0)),
            v.deadline_text(),
            v.extend_deadline_hint(now + TimeDelta::seconds(d.remaining.max(0))),
        )
    } else if now > v.deadline {
        format!("{} passed before the job finished", v.deadline_text())
    } else {
        return false;
    };
    st.deadline_missed = true;
    events.push(EventNote {
        warning: true,
        reason: "DeadlineMissed",
        message,
    });
    true
}

/// Step "schedule": the phase and what the plan says comes next.
fn schedule(st: &mut CarbonAwareJobStatus, d: &Decision) {
    let run = d.run();
    st.phase = Some(if run {
        Phase::Running
    } else if st.start_time.is_some() {
        Phase::Paused
    } else {
        Phase::Waiting
    });
    st.next_transition_time = d.next().map(time::to_time);
    st.next_action = d
        .next()
        .map(|_| if run { "Pause" } else { "Run" }.to_string());
    let first_interval = d.plan.intervals.first().map(|i| i.start);
    st.planned_start = st
        .start_time
        .clone()
        .or_else(|| first_interval.map(time::to_time));
    st.planned_end = d.plan.intervals.last().map(|i| time::to_time(i.end));
}

/// Step "conditions": `Ready` (planning with which intensities, or none) and `Running`.
fn conditions(
    st: &mut CarbonAwareJobStatus,
    obs: &Observed<'_>,
    d: &Decision,
    region: &str,
    now: DateTime<Utc>,
) {
    let generation = obs.caj.meta().generation;
    let (ready, reason, message) = match obs.intensities {
        Ok(i) => (
            true,
            "Scheduled",
            format!("planning with {} intensities for {region}", i.provenance),
        ),
        Err(why) => (
            false,
            "ForecastUnavailable",
            format!("no intensities for {region} ({why}); holding the current state, deadline guard active"),
        ),
    };
    set_condition(
        &mut st.conditions,
        READY,
        ready,
        reason,
        message,
        generation,
        now,
    );
    let running_msg = match (d.run(), d.next()) {
        (true, Some(t)) => format!("running; planned pause at {}", timefmt::format(t)),
        (true, None) => "running to completion".to_string(),
        (false, Some(t)) => format!("suspended; planned start at {}", timefmt::format(t)),
        (false, None) => "suspended".to_string(),
    };
    set_condition(
        &mut st.conditions,
        RUNNING,
        d.run(),
        reason_name(d.plan.reason),
        running_msg,
        generation,
        now,
    );
}

/// Step "child Job": the Job to create when there is none, else the `suspend` to set when
/// it differs. One being deleted unfinished is let go (it cannot be changed any more) and
/// recreated once gone. A Job for a Kueue queue is created suspended and its `suspend`
/// left to Kueue.
fn child_diff(obs: &Observed<'_>, v: &ValidSpec, run: bool) -> (Option<Job>, Option<bool>) {
    let kueue = kueue_queue(obs.caj, obs.child).is_some();
    let Some(child) = obs.child else {
        return (Some(child_job(obs.caj, v, kueue || !run)), None);
    };
    if kueue || child.meta().deletion_timestamp.is_some() {
        return (None, None);
    }
    let suspended = child.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    (None, (suspended == run).then_some(!run))
}

/// A Warning when the child Job this CarbonAwareJob had is gone and is recreated.
fn recreated_event(
    obs: &Observed<'_>,
    old: &CarbonAwareJobStatus,
    run: bool,
    events: &mut Vec<EventNote>,
) {
    if obs.child.is_some() || old.job_name.is_none() {
        return;
    }
    events.push(EventNote {
        warning: true,
        reason: "ChildJobRecreated",
        message: format!(
            "child Job {} was deleted; recreated it {} (the ledger is kept). Delete the CarbonAwareJob to stop the work.",
            obs.caj.name_any(),
            if run { "running" } else { "suspended" }
        ),
    });
}

/// Step "persist and requeue": write the status on a material change or a transition; a
/// running job also when its ledger was last persisted `persist_every` ago, a job not
/// running (waiting or paused) also when grams it owed were settled. Look again at the
/// next planned transition, the next persist, or within a minute without intensities.
///
/// A job that is not running accrues nothing but `lastAccountedTime`: no runtime, so no
/// energy, no emissions and no baseline (the run-now baseline covers `[created, created +
/// work)`, and the work does not grow). Its ledger at any later instant is the persisted
/// one, so rewriting it at every interval would say nothing (at 10,000 waiting jobs and
/// the default 5 minutes, 33 writes a second); a restarted operator accrues the same
/// nothing from the older `lastAccountedTime`.
fn persist_and_requeue(
    obs: &Observed<'_>,
    old: &CarbonAwareJobStatus,
    st: &CarbonAwareJobStatus,
    transition: Option<Transition>,
    d: &Decision,
    now: DateTime<Utc>,
) -> (bool, TimeDelta) {
    let running = st.running_since.is_some();
    let last_written = old.last_accounted_time.as_ref().map(time::from_time);
    let due = running && last_written.is_none_or(|t| now - t >= obs.persist_every);
    let settled = !running && st.unaccounted != old.unaccounted;
    let write = transition.is_some() || due || settled || material(st) != material(old);
    let persisted_at = match last_written {
        Some(t) if running && !write => t,
        _ => now,
    };
    let mut requeue = obs.persist_every - (now - persisted_at);
    if let Some(t) = d.next() {
        requeue = requeue.min(t - now);
    }
    if obs.intensities.is_err() {
        requeue = requeue.min(TimeDelta::seconds(FORECAST_RETRY_SECS));
    }
    (write, requeue.max(TimeDelta::seconds(1)))
}
/// A finished job: keep its ledger, never touch the child again except to let it go, and
/// settle the grams it still owes once intensities for them are recorded (retried for
/// [`SETTLE_FOR_SECS`] after completion).
fn finished_history(
    obs: Observed<'_>,
    mut st: CarbonAwareJobStatus,
    old: &CarbonAwareJobStatus,
    now: DateTime<Utc>,
) -> Outcome {
    let mut settled = (0.0, 0.0);
    let owed = !old.unaccounted.is_empty();
    if let Some(v) = validate(obs.caj, now).ok().filter(|_| owed) {
        settled = settle_finished(&mut st, &v, obs.intensities.ok());
        accounted_condition(&mut st, obs.caj.meta().generation, now);
    }
    let write = st != *old;
    let done = st
        .completion_time
        .as_ref()
        .map(time::from_time)
        .unwrap_or(now);
    let retry = !st.unaccounted.is_empty() && now - done < TimeDelta::seconds(SETTLE_FOR_SECS);
    let mut o = Outcome::unchanged(st);
    o.write_status = write;
    o.release_finalizer = obs.child.is_some_and(holds_finalizer);
    o.settled_late = settled;
    o.requeue = retry.then(|| TimeDelta::seconds(FORECAST_RETRY_SECS));
    o
}

/// How long after completion a finished job's unaccounted spans are still retried.
pub const SETTLE_FOR_SECS: i64 = 86_400;

/// ` (N s of runtime unaccounted: ...)` for a completion message, empty when nothing is owed.
fn unaccounted_suffix(st: &CarbonAwareJobStatus) -> String {
    match st.unaccounted_seconds {
        Some(n) if !st.unaccounted.is_empty() => format!(
            "; {} of runtime not yet in the emissions: no recorded intensities (see status.unaccounted)",
            crate::duration::format_secs(n)
        ),
        _ if !st.unaccounted.is_empty() => {
            "; part of the baseline not yet accounted: no recorded intensities (see status.unaccounted)".into()
        }
        _ => String::new(),
    }
}

/// Sets `Accounted`: True when every past second is in the ledger's grams, False (reason
/// `IntensitiesMissing`) naming what is still owed.
fn accounted_condition(st: &mut CarbonAwareJobStatus, generation: Option<i64>, now: DateTime<Utc>) {
    if st.unaccounted.is_empty() {
        set_condition(
            &mut st.conditions,
            ACCOUNTED,
            true,
            "Recorded",
            "every second so far is accounted with recorded intensities".into(),
            generation,
            now,
        );
        return;
    }
    // Stable while the outage lasts (the seconds are in `unaccountedSeconds`), so it
    // causes no status write of its own.
    let from = st.unaccounted.iter().map(|o| o.start).min().unwrap_or(now);
    let message = format!(
        "no recorded intensities for part of the runtime or of the run-now baseline since {}: \
         emissionsGrams and baselineGrams exclude it (unaccountedSeconds, status.unaccounted) \
         until the provider's history covers it",
        timefmt::format(from),
    );
    set_condition(
        &mut st.conditions,
        ACCOUNTED,
        false,
        "IntensitiesMissing",
        message,
        generation,
        now,
    );
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod steps_tests;
