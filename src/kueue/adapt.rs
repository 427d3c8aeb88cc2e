//! A Kueue Workload through the operator's own reconcile step.
//!
//! The CarbonAwareJob reconcile ([`crate::controller::build::build`]) already holds every
//! decision: accrual from Ready pods, the plan, the deadline guard, pauses, the no-forecast
//! fallback, conditions and Events. A Workload under a carbonshift AdmissionCheck goes
//! through that same step, seen as a CarbonAwareJob whose ledger is the Workload's
//! [`CarbonWindow`] and whose child Job is the Workload:
//!
//! - [`window_spec`]: the schedule and power model, from the check's parameters and the
//!   job object's annotations, validated with messages that name them;
//! - [`as_carbon_aware_job`]: the CarbonWindow as the step's CarbonAwareJob;
//! - [`as_child`]: the Workload as the step's child Job: suspended unless Kueue admitted
//!   it, its Ready pods, and finished when Kueue says so;
//! - [`wanted`]: the step's decision, as what the check must say ([`Wanted`]).
//!
//! All of it is pure; `kueue::controller` reads and writes.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::annotations::{workload_schedule, Defaults};
use super::check::Wanted;
use super::workload::{gpus, power, Workload};
use crate::api::window::{CarbonWindow, CarbonWindowSpec};
use crate::api::{time, CarbonAwareJob, CarbonAwareJobSpec, JobTemplate, Phase};
use crate::controller::build::{Outcome, RUNNING};
use crate::controller::validate::InvalidSpec;

/// The job object a Workload stands for: what its annotations and creation say.
#[derive(Debug, Clone, Copy)]
pub struct JobObject<'a> {
    /// `Kind/name`, e.g. `Job/train`.
    pub reference: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
    pub created: DateTime<Utc>,
}

/// Pods of all of the Workload's pod sets.
pub fn pods(wl: &Workload) -> i32 {
    wl.spec
        .pod_sets
        .iter()
        .fold(0i32, |n, ps| n.saturating_add(ps.count.max(0)))
}

/// What carbonshift makes of a Workload under the AdmissionCheck `check`: its schedule
/// (the parameters' defaults, the annotations over them), validated against the job
/// object's creation, and its power model, with the GPUs its pod sets request. The error
/// names the annotation or parameter to fix.
pub fn window_spec(
    wl: &Workload,
    check: &str,
    params: Option<Defaults<'_>>,
    job: JobObject<'_>,
) -> Result<CarbonWindowSpec, InvalidSpec> {
    let ws = workload_schedule(params, job.annotations)?;
    ws.validate(job.created)?;
    let power_name = match params {
        Some(d) => format!("CarbonWindowParameters {} spec.power", d.name),
        None => "spec.power of the AdmissionCheck's CarbonWindowParameters".to_string(),
    };
    power(wl, &power_name, ws.power.as_ref())?;
    let mut p = ws.power.clone().unwrap_or_default();
    if p.watts.is_none() && p.gpus.is_none() {
        // `power` succeeded, so the pod sets request at least one GPU.
        p.gpus = Some(i32::try_from(gpus(wl)?).unwrap_or(i32::MAX));
    }
    Ok(CarbonWindowSpec {
        workload: wl.name_any(),
        admission_check: check.to_string(),
        job: job.reference.to_string(),
        created: time::to_time(job.created),
        pods: pods(wl).max(1),
        schedule: ws.schedule,
        region: ws.region,
        power: p,
    })
}

/// The CarbonWindow as the reconcile step's CarbonAwareJob: its name, uid, generation and
/// resourceVersion, created when the job object was, of `pods` pods, with its schedule,
/// region, power model and status.
pub fn as_carbon_aware_job(w: &CarbonWindow) -> CarbonAwareJob {
    let meta = w.meta();
    let template = serde_json::json!({
        "parallelism": w.spec.pods.max(1),
        "template": {"spec": {"containers": [{"name": "workload"}]}},
    });
    CarbonAwareJob {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            generation: meta.generation,
            resource_version: meta.resource_version.clone(),
            creation_timestamp: Some(w.spec.created.clone()),
            ..ObjectMeta::default()
        },
        spec: CarbonAwareJobSpec {
            template: JobTemplate {
                metadata: None,
                spec: template,
            },
            schedule: w.spec.schedule.clone(),
            region: w.spec.region.clone(),
            power: Some(w.spec.power.clone()),
        },
        status: w.status.clone(),
    }
}

/// Whether the Workload has the condition `type_` True, and since when.
fn condition(wl: &Workload, type_: &str) -> Option<(DateTime<Utc>, String, String)> {
    wl.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                time::from_time(&c.last_transition_time),
                c.reason.clone(),
                c.message.clone(),
            )
        })
}

/// The Workload as the step's child Job of the CarbonWindow `w`: unsuspended only while
/// Kueue admits it, with `ready` pods Ready (none counted unless admitted), and Complete or
/// Failed once Kueue marks it Finished.
pub fn as_child(wl: &Workload, w: &CarbonWindow, ready: i32) -> Job {
    let admitted = condition(wl, "Admitted").is_some();
    let mut status = JobStatus {
        ready: Some(if admitted { ready.max(0) } else { 0 }),
        ..JobStatus::default()
    };
    if let Some((at, reason, message)) = condition(wl, "Finished") {
        let failed = reason == "Failed";
        status.conditions = Some(vec![JobCondition {
            type_: if failed { "Failed" } else { "Complete" }.to_string(),
            status: "True".into(),
            reason: failed.then(|| reason.clone()),
            message: Some(message),
            last_transition_time: Some(time::to_time(at)),
            ..JobCondition::default()
        }]);
        if !failed {
            status.completion_time = Some(time::to_time(at));
        }
    }
    Job {
        metadata: ObjectMeta {
            name: Some(w.name_any()),
            namespace: w.namespace(),
            owner_references: Some(vec![OwnerReference {
                api_version: CarbonAwareJob::api_version(&()).into_owned(),
                kind: CarbonAwareJob::kind(&()).into_owned(),
                name: w.name_any(),
                uid: w.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            suspend: Some(!admitted),
            parallelism: Some(w.spec.pods.max(1)),
            ..JobSpec::default()
        }),
        status: Some(status),
    }
}

/// How soon a waiting workload is looked at again when the plan names no next transition.
pub const WAIT_UNPLANNED_SECS: i64 = 300;

/// What the check must say after the step decided `out`: `None` once the job finished.
pub fn wanted(out: &Outcome, now: DateTime<Utc>) -> Option<Wanted> {
    let st = &out.status;
    if st.phase.is_some_and(Phase::is_terminal) {
        return None;
    }
    let running = st.conditions.iter().find(|c| c.type_ == RUNNING);
    if out.spec.is_none() {
        // Refused (the region, most often): the Ready condition says what to fix.
        let why = st
            .conditions
            .iter()
            .find(|c| c.type_ == crate::controller::build::READY && c.status == "False")
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "the workload cannot be planned".into());
        return Some(Wanted::Invalid {
            message: format!("carbonshift: {why}"),
        });
    }
    let message = running
        .map(|c| format!("carbonshift: {} ({})", c.message, c.reason))
        .unwrap_or_else(|| "carbonshift".to_string());
    Some(if st.phase == Some(Phase::Running) {
        Wanted::Run { message }
    } else {
        let until = st
            .next_transition_time
            .as_ref()
            .map(time::from_time)
            .unwrap_or(now + TimeDelta::seconds(WAIT_UNPLANNED_SECS));
        Wanted::Wait { until, message }
    })
}

#[cfg(test)]
#[path = "adapt_tests.rs"]
mod tests;
