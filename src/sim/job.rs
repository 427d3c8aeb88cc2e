//! One simulated CarbonAwareJob, driven by the controller's own pure build step
//! ([`crate::controller::build`]) with a simulated clock and a simulated child Job: what
//! `simulate` reports is what the operator would do.
//!
//! At each step the simulator hands `build` the CarbonAwareJob (spec and the status the
//! previous step wrote), the child Job as the API server would show it, the intensities the
//! operator's cache would hold at that moment (see [`super::Forecaster::view`]) with the
//! actuals as the recorded history (so the ledger integrates the truth), and the time. It
//! applies the outcome like the reconciler does (create the child suspended or running,
//! flip `spec.suspend`, keep the status) and moves the clock to the next thing the
//! operator would react to: the requeue it asked for, a change of the child Job (its pod
//! Ready after the start-up latency, its completion) or a forecast refresh.

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use serde_json::json;

use super::{ForecastCache, Forecaster, JobRun, SimConfig, SimError};
use crate::api::{time, CarbonAwareJob, Phase};
use crate::controller::{build, Intensities, Observed};
use crate::plan::{Interval, Strategy};
use crate::series::Series;

/// The zone name the simulated jobs are planned for (the trace is the only region).
const ZONE: &str = "sim";

/// The child Job of a simulated CarbonAwareJob: one pod, Ready `startup_secs` after the
/// Job is unsuspended; it completes once it has been Ready for the job's duration plus the
/// checkpoint overhead of every resume. Suspending deletes the pod (its checkpoint keeps
/// the work done).
struct SimChild {
    job: Job,
    suspended: bool,
    startup: TimeDelta,
    overhead_secs: i64,
    /// When the current pod was created (unsuspended), while there is one.
    pod_since: Option<DateTime<Utc>>,
    /// When the current pod became Ready, while it is.
    ready_since: Option<DateTime<Utc>>,
    /// Seconds Ready in earlier pods, and the seconds it needs in all.
    worked: i64,
    need: i64,
    runs: Vec<Interval>,
    done: Option<DateTime<Utc>>,
}

impl SimChild {
    fn new(job: Job, cfg: &SimConfig, t: DateTime<Utc>) -> Self {
        let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        let mut c = Self {
            job,
            suspended: true,
            startup: TimeDelta::seconds(cfg.startup_secs.max(0)),
            overhead_secs: cfg.constraints.checkpoint_overhead_secs.max(0),
            pod_since: None,
            ready_since: None,
            worked: 0,
            need: cfg.duration_secs,
            runs: Vec::new(),
            done: None,
        };
        c.set_suspend(suspended, t);
        c
    }

    fn set_suspend(&mut self, suspend: bool, t: DateTime<Utc>) {
        if suspend == self.suspended || self.done.is_some() {
            return;
        }
        self.suspended = suspend;
        if let Some(spec) = self.job.spec.as_mut() {
            spec.suspend = Some(suspend);
        }
        if suspend {
            if let Some(r) = self.ready_since.take() {
                self.worked += (t - r).num_seconds();
                self.close_run(t);
            }
            self.pod_since = None;
        } else {
            // A resume restores the checkpoint before it makes progress.
            if self.worked > 0 {
                self.need += self.overhead_secs;
            }
            self.pod_since = Some(t);
        }
        self.sync();
    }

    fn close_run(&mut self, end: DateTime<Utc>) {
        if let Some(r) = self.runs.last_mut() {
            r.end = end;
        }
    }

    /// Moves the pod along to `t`: Ready once its start-up latency has passed, finished
    /// once it has worked all it needs.
    fn advance(&mut self, t: DateTime<Utc>) {
        if self.done.is_some() {
            return;
        }
        if let (Some(p), None) = (self.pod_since, self.ready_since) {
            if t >= p + self.startup {
                let r = p + self.startup;
                self.ready_since = Some(r);
                self.runs.push(Interval { start: r, end: r });
            }
        }
        if let Some(r) = self.ready_since {
            let finish = r + TimeDelta::seconds(self.need - self.worked);
            if t >= finish {
                self.done = Some(finish);
                self.close_run(finish);
            } else {
                self.close_run(t);
            }
        }
        self.sync();
    }

    /// The next instant the child Job's status changes by itself.
    fn next_event(&self) -> Option<DateTime<Utc>> {
        if self.done.is_some() {
            return None;
        }
        match (self.pod_since, self.ready_since) {
            (Some(p), None) => Some(p + self.startup),
            (_, Some(r)) => Some(r + TimeDelta::seconds(self.need - self.worked)),
            (None, None) => None,
        }
    }

    /// The Job's status as the Job controller would write it.
    fn sync(&mut self) {
        let alive = self.pod_since.is_some() && self.done.is_none();
        let ready = self.ready_since.is_some() && self.done.is_none();
        let mut status = JobStatus {
            active: Some(i32::from(alive)),
            ready: Some(i32::from(ready)),
            ..JobStatus::default()
        };
        if let Some(d) = self.done {
            status.succeeded = Some(1);
            status.completion_time = Some(time::to_time(d));
            status.conditions = Some(vec![JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                last_transition_time: Some(time::to_time(d)),
                ..JobCondition::default()
            }]);
        }
        self.job.status = Some(status);
    }
}

/// The CarbonAwareJob `simulate` submits at `submit`: `strategy`, the configured duration
/// and constraints, a deadline `duration + slack` later, and the configured power.
fn manifest(
    cfg: &SimConfig,
    strategy: Strategy,
    submit: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> Result<CarbonAwareJob, SimError> {
    let secs = |s: i64| format!("{s}s");
    let c = &cfg.constraints;
    let mut schedule = json!({
        "expectedDuration": secs(cfg.duration_secs),
        "deadline": time::to_time(deadline),
    });
    let (name, threshold) = match strategy {
        Strategy::RunNow => ("RunNow", None),
        Strategy::FlexibleStart => ("FlexibleStart", None),
        Strategy::PauseAndResume => ("PauseAndResume", None),
        Strategy::Threshold { max_gco2_per_kwh } => ("Threshold", Some(max_gco2_per_kwh)),
    };
    schedule["strategy"] = json!(name);
    if let Some(g) = threshold {
        schedule["thresholdGramsPerKWh"] = json!(g);
    }
    for (field, v) in [
        ("minRunDuration", c.min_run_secs),
        ("minPauseDuration", c.min_pause_secs),
        ("checkpointOverhead", c.checkpoint_overhead_secs),
    ] {
        if v > 0 {
            schedule[field] = json!(secs(v));
        }
    }
    if let Some(m) = c.max_pauses {
        schedule["maxPauses"] = json!(m);
    }
    serde_json::from_value(json!({
        "apiVersion": "carbonshift.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {
            "name": "sim", "namespace": "sim", "uid": "sim", "generation": 1,
            "creationTimestamp": time::to_time(submit),
        },
        "spec": {
            "region": ZONE,
            "schedule": schedule,
            "power": {"watts": cfg.power_kw * 1000.0, "pue": 1.0},
            "template": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "job", "image": "sim"}]
            }}}}
        }
    }))
    .map_err(|e| SimError::Internal(format!("simulated manifest: {e}")))
}

/// What the simulator hands the build step at `t`. Statuses are never written, so
/// nothing needs persisting: the job is looked at when the plan, the child Job or the
/// forecast changes, as the operator looks at it.
pub(crate) fn observed<'a>(
    caj: &'a CarbonAwareJob,
    child: Option<&'a Job>,
    intensities: &'a Intensities,
    t: DateTime<Utc>,
    cfg: &SimConfig,
) -> Observed<'a> {
    Observed {
        caj,
        child,
        region: Ok(ZONE),
        intensities: Ok(intensities),
        now: t,
        persist_every: TimeDelta::days(366),
        deadline_margin: TimeDelta::seconds(cfg.deadline_margin_secs.max(0)),
        kueue: false,
    }
}

/// Runs one job under `strategy` through the controller's build step, from submission to
/// completion (or the end of the trace, a miss).
pub fn run(
    actuals: &Series,
    fc: &Forecaster<'_>,
    cache: &mut ForecastCache,
    cfg: &SimConfig,
    strategy: Strategy,
    submit: DateTime<Utc>,
) -> Result<JobRun, SimError> {
    let deadline = submit + TimeDelta::seconds(cfg.duration_secs + cfg.slack_secs);
    let mut caj = manifest(cfg, strategy, submit, deadline)?;
    // The recorded past the ledger integrates: the truth over the job's whole window.
    let step = TimeDelta::seconds(actuals.step_secs());
    let recorded = actuals
        .slice(submit, deadline + step)
        .map(std::sync::Arc::new);
    let mut child: Option<SimChild> = None;
    let mut t = submit;
    let mut job = JobRun::new(submit, deadline);
    while t < actuals.end() {
        let issued = fc.issue_at(t);
        let intensities = Intensities {
            series: fc.view_cached(cache, issued.issued_at)?,
            provenance: fc.name().into(),
            live_is_record: false,
            history: recorded.clone(),
            exact: fc.is_exact(),
            signal: crate::forecast::Signal::Average,
        };
        let out = build(observed(
            &caj,
            child.as_ref().map(|c| &c.job),
            &intensities,
            t,
            cfg,
        ));
        if let Some(why) = out.status.phase.filter(|p| *p == Phase::Pending).and(
            out.status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "False"),
        ) {
            return Err(SimError::Input(format!(
                "the simulated job was refused: {}",
                why.message
            )));
        }
        let finished = out.finished.is_some();
        caj.status = Some(out.status);
        if finished {
            break;
        }
        match (child.as_mut(), out.job, out.suspend) {
            (None, Some(j), _) => child = Some(SimChild::new(j, cfg, t)),
            (Some(c), _, Some(s)) => c.set_suspend(s, t),
            _ => {}
        }
        let mut next = t + out.requeue.unwrap_or(TimeDelta::days(1));
        if let Some(r) = issued.next_refresh {
            next = next.min(r);
        }
        if let Some(e) = child.as_ref().and_then(SimChild::next_event) {
            next = next.min(e);
        }
        let next = next.max(t + TimeDelta::seconds(1)).min(actuals.end());
        if let Some(c) = child.as_mut() {
            c.advance(next);
        }
        t = next;
    }
    let st = caj.status.unwrap_or_default();
    job.emissions_g = st.emissions_grams;
    job.pauses = st.pauses.max(0) as u32;
    job.finished = st.completion_time.as_ref().map(time::from_time);
    job.runs = child.map(|c| c.runs).unwrap_or_default();
    Ok(job)
}
