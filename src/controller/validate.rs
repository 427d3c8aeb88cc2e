//! PURE validation: a `CarbonAwareJob` spec -> the typed inputs planning and accounting
//! need, or an [`InvalidSpec`] with a message a user can act on.
//!
//! The API server already enforces what the CRD schema and CEL rules express; this repeats
//! those checks (so `carbonshift plan -f`, which has no API server, reports the same
//! errors) and adds what CEL cannot see: a deadline relative to `creationTimestamp`, the
//! pod template's shape, and a power model derivable from the template.

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::JobSpec;
use kube::Resource;
use thiserror::Error;

use crate::accounting::PowerModel;
use crate::api::{time, CarbonAwareJob, StrategyName, DEFAULT_PUE, DEFAULT_WATTS_PER_GPU};
use crate::duration::parse_secs;
use crate::plan::{Constraints, Strategy};

/// The GPU extended resource whose count defaults `spec.power.gpus`.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// A spec the controller cannot act on. `message` names the field and the fix.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{message}")]
pub struct InvalidSpec {
    pub message: String,
}

fn invalid(message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        message: message.into(),
    }
}

/// Everything the pure build step needs from a valid spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    pub strategy: Strategy,
    pub constraints: Constraints,
    /// Runtime the job needs (`expectedDuration`), seconds.
    pub expected_secs: i64,
    /// When the CarbonAwareJob was created (or `now` for a manifest never applied).
    pub created: DateTime<Utc>,
    /// Absolute deadline.
    pub deadline: DateTime<Utc>,
    /// Power while running, for the ledger.
    pub power: PowerModel,
    /// Facility power while running, kW (`power.kw()`: IT power x PUE).
    pub power_kw: f64,
    /// How `power_kw` was derived, for `plan -f` and docs (`2 GPU x 400 W x PUE 1.2`).
    pub power_source: String,
    /// The child Job's spec as given (suspend is overridden when built).
    pub job_spec: JobSpec,
    /// `spec.region`, when set.
    pub region: Option<String>,
}

fn duration_field(name: &str, value: Option<&str>) -> Result<i64, InvalidSpec> {
    match value {
        None => Ok(0),
        Some(v) => parse_secs(v).map_err(|e| invalid(format!("spec.schedule.{name}: {e}"))),
    }
}

/// Validates `caj` as of `now` (used only as the creation time of a manifest that has
/// none, as in `carbonshift plan -f`).
pub fn validate(caj: &CarbonAwareJob, now: DateTime<Utc>) -> Result<ValidSpec, InvalidSpec> {
    let s = &caj.spec.schedule;
    let created = caj
        .meta()
        .creation_timestamp
        .as_ref()
        .map(time::from_time)
        .unwrap_or(now);

    let expected_secs = duration_field("expectedDuration", Some(&s.expected_duration))?;
    if expected_secs <= 0 {
        return Err(invalid(
            "spec.schedule.expectedDuration must be positive, e.g. 6h",
        ));
    }
    let constraints = Constraints {
        min_run_secs: duration_field("minRunDuration", s.min_run_duration.as_deref())?,
        min_pause_secs: duration_field("minPauseDuration", s.min_pause_duration.as_deref())?,
        max_pauses: match s.max_pauses {
            None => None,
            Some(n) if n < 0 => {
                return Err(invalid("spec.schedule.maxPauses must not be negative"))
            }
            Some(n) => Some(n as u32),
        },
        checkpoint_overhead_secs: duration_field(
            "checkpointOverhead",
            s.checkpoint_overhead.as_deref(),
        )?,
    };

    let deadline = match (&s.deadline, &s.max_delay) {
        (Some(d), None) => time::from_time(d),
        (None, Some(m)) => {
            let secs = duration_field("maxDelay", Some(m))?;
            if secs <= 0 {
                return Err(invalid("spec.schedule.maxDelay must be positive, e.g. 24h"));
            }
            created + TimeDelta::seconds(secs)
        }
        _ => {
            return Err(invalid(
                "set exactly one of spec.schedule.deadline (RFC 3339) and spec.schedule.maxDelay (e.g. 24h)",
            ))
        }
    };
    // A deadline the job cannot meet (set so at creation, or edited later) is not refused:
    // the planner runs the job at once and reports the miss (`DeadlineMissed`), so no
    // edit can leave a job frozen.

    let strategy = match s.strategy {
        StrategyName::RunNow => Strategy::RunNow,
        StrategyName::FlexibleStart => Strategy::FlexibleStart,
        StrategyName::PauseAndResume => Strategy::PauseResume,
        StrategyName::Threshold => match s.threshold_grams_per_kwh {
            Some(t) if t > 0.0 && t.is_finite() => Strategy::Threshold {
                max_gco2_per_kwh: t,
            },
            _ => return Err(invalid(
                "strategy Threshold needs a positive spec.schedule.thresholdGramsPerKWh, e.g. 200",
            )),
        },
    };

    let job_spec: JobSpec =
        serde_json::from_value(caj.spec.template.spec.clone()).map_err(|e| {
            invalid(format!(
                "spec.template.spec is not a valid batch/v1 JobSpec: {e}"
            ))
        })?;
    let containers = job_spec
        .template
        .spec
        .as_ref()
        .map(|p| p.containers.len())
        .unwrap_or(0);
    if containers == 0 {
        return Err(invalid(
            "spec.template.spec.template.spec.containers is empty: the pod template needs at least one container",
        ));
    }

    let (power, power_source) = power(caj, &job_spec)?;
    Ok(ValidSpec {
        strategy,
        constraints,
        expected_secs,
        created,
        deadline,
        power,
        power_kw: power.kw(),
        power_source,
        job_spec,
        region: caj.spec.region.clone().filter(|r| !r.trim().is_empty()),
    })
}

/// GPUs one pod asks for: limits, else requests, summed over containers.
fn gpus_per_pod(job_spec: &JobSpec) -> Result<i64, InvalidSpec> {
    let Some(pod) = job_spec.template.spec.as_ref() else {
        return Ok(0);
    };
    let mut total = 0;
    for c in &pod.containers {
        let Some(res) = c.resources.as_ref() else {
            continue;
        };
        let q = res
            .limits
            .as_ref()
            .and_then(|l| l.get(GPU_RESOURCE))
            .or_else(|| res.requests.as_ref().and_then(|r| r.get(GPU_RESOURCE)));
        if let Some(q) = q {
            let n: i64 = q.0.trim().parse().map_err(|_| {
                invalid(format!(
                    "container {:?}: {GPU_RESOURCE} quantity {:?} is not a whole number",
                    c.name, q.0
                ))
            })?;
            total += n.max(0);
        }
    }
    Ok(total)
}

fn power(caj: &CarbonAwareJob, job_spec: &JobSpec) -> Result<(PowerModel, String), InvalidSpec> {
    let model = |watts: f64, pue: f64| {
        PowerModel::total(watts, pue).map_err(|e| invalid(format!("spec.power: {e}")))
    };
    let p = caj.spec.power.clone().unwrap_or_default();
    let pue = p.pue.unwrap_or(DEFAULT_PUE);
    if !(1.0..=5.0).contains(&pue) {
        return Err(invalid("spec.power.pue must be between 1 and 5, e.g. 1.2"));
    }
    if let Some(w) = p.watts {
        if p.watts_per_gpu.is_some() || p.gpus.is_some() {
            return Err(invalid(
                "set either spec.power.watts or spec.power.wattsPerGpu/gpus, not both",
            ));
        }
        if !(w > 0.0 && w.is_finite()) {
            return Err(invalid("spec.power.watts must be positive"));
        }
        return Ok((model(w, pue)?, format!("{w} W x PUE {pue}")));
    }
    let per_gpu = p.watts_per_gpu.unwrap_or(DEFAULT_WATTS_PER_GPU);
    if !(per_gpu > 0.0 && per_gpu.is_finite()) {
        return Err(invalid("spec.power.wattsPerGpu must be positive"));
    }
    let gpus = match p.gpus {
        Some(g) if g > 0 => g as i64,
        Some(_) => return Err(invalid("spec.power.gpus must be at least 1")),
        None => {
            let parallelism = job_spec.parallelism.unwrap_or(1).max(1) as i64;
            gpus_per_pod(job_spec)? * parallelism
        }
    };
    if gpus == 0 {
        return Err(invalid(format!(
            "cannot tell the job's power: the pod template requests no {GPU_RESOURCE}; \
             set spec.power.watts (total watts of all pods) or spec.power.gpus"
        )));
    }
    Ok((
        model(gpus as f64 * per_gpu, pue)?,
        format!("{gpus} GPU x {per_gpu} W x PUE {pue}"),
    ))
}
