//! PURE validation: a `CarbonAwareJob` spec -> the typed inputs planning and accounting
//! need, or an [`InvalidSpec`] with a message a user can act on.
//!
//! The API server already enforces what the CRD schema and CEL rules express; this repeats
//! those checks (so `carbonshift plan -f`, which has no API server, reports the same
//! errors) and adds what CEL cannot see: a deadline relative to `creationTimestamp` (at
//! most [`MAX_SCHEDULE_SPAN_SECS`] after it: the cap that bounds the planning cost of every
//! reconcile), the pod template's shape, and a power model derivable from the template.

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::JobSpec;
use kube::Resource;
use thiserror::Error;

use crate::accounting::PowerModel;
use crate::api::{
    max_span_message, time, CarbonAwareJob, StrategyName, DEFAULT_PUE, DEFAULT_WATTS_PER_GPU,
    MAX_SCHEDULE_SPAN_HOURS, MAX_SCHEDULE_SPAN_SECS,
};
use crate::duration::parse_secs;
use crate::plan::{Constraints, Strategy};
use crate::timefmt;

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
    /// Power while running, for the ledger (`power.kw()`: facility power, IT power x PUE).
    pub power: PowerModel,
    /// How `power_kw` was derived, for `plan -f` and docs (`2 GPU x 400 W x PUE 1.2`).
    pub power_source: String,
    /// The child Job's spec as given (suspend is overridden when built).
    pub job_spec: JobSpec,
}

fn duration_field(name: &str, value: Option<&str>) -> Result<i64, InvalidSpec> {
    match value {
        None => Ok(0),
        Some(v) => parse_secs(v).map_err(|e| invalid(format!("spec.schedule.{name}: {e}"))),
    }
}

/// The cap of `maxDelay` and `expectedDuration`, with the CEL rule's message.
fn within_span(name: &str, value: &str, secs: i64) -> Result<(), InvalidSpec> {
    if secs > MAX_SCHEDULE_SPAN_SECS {
        return Err(invalid(format!(
            "spec.schedule.{}, got {value}",
            max_span_message(name)
        )));
    }
    Ok(())
}

/// When `caj` was created, or `now` for a manifest never applied.
pub fn created_at(caj: &CarbonAwareJob, now: DateTime<Utc>) -> DateTime<Utc> {
    caj.meta()
        .creation_timestamp
        .as_ref()
        .map(time::from_time)
        .unwrap_or(now)
}

/// Validates `caj` as of `now` (used only as the creation time of a manifest that has
/// none, as in `carbonshift plan -f`).
pub fn validate(caj: &CarbonAwareJob, now: DateTime<Utc>) -> Result<ValidSpec, InvalidSpec> {
    let s = &caj.spec.schedule;
    let created = created_at(caj, now);

    let expected_secs = duration_field("expectedDuration", Some(&s.expected_duration))?;
    if expected_secs <= 0 {
        return Err(invalid(
            "spec.schedule.expectedDuration must be positive, e.g. 6h",
        ));
    }
    within_span("expectedDuration", &s.expected_duration, expected_secs)?;
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
        (Some(d), None) => {
            let d = time::from_time(d);
            let latest = created + TimeDelta::seconds(MAX_SCHEDULE_SPAN_SECS);
            if d > latest {
                return Err(invalid(format!(
                    "spec.schedule.deadline {} is more than {} days ({MAX_SCHEDULE_SPAN_HOURS}h) after \
                     the job's creation at {}: move the deadline to {} or earlier",
                    timefmt::format(d),
                    MAX_SCHEDULE_SPAN_HOURS / 24,
                    timefmt::format(created),
                    timefmt::format(latest),
                )));
            }
            d
        }
        (None, Some(m)) => {
            let secs = duration_field("maxDelay", Some(m))?;
            if secs <= 0 {
                return Err(invalid("spec.schedule.maxDelay must be positive, e.g. 24h"));
            }
            within_span("maxDelay", m, secs)?;
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
        StrategyName::PauseAndResume => Strategy::PauseAndResume,
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
        power_source,
        job_spec,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{at, caj, now};
    use serde_json::json;

    const YEAR: TimeDelta = TimeDelta::days(366);

    /// A job created at `at(-10)` with an absolute deadline.
    fn with_deadline(deadline: DateTime<Utc>) -> CarbonAwareJob {
        caj(
            "FlexibleStart",
            "1h",
            json!({"maxDelay": null, "deadline": time::to_time(deadline)}),
        )
    }

    #[test]
    fn the_cap_is_366_days() {
        assert_eq!(MAX_SCHEDULE_SPAN_HOURS, 366 * 24);
        assert_eq!(TimeDelta::seconds(MAX_SCHEDULE_SPAN_SECS), YEAR);
    }

    #[test]
    fn deadline_at_most_366_days_after_creation() {
        let created = at(-10);
        let v = validate(&with_deadline(created + YEAR), now()).unwrap();
        assert_eq!(v.created, created);
        assert_eq!(v.deadline, created + YEAR);

        let late = created + YEAR + TimeDelta::seconds(1);
        let e = validate(&with_deadline(late), now()).unwrap_err();
        assert_eq!(
            e.message,
            "spec.schedule.deadline 2025-03-01T23:50:01Z is more than 366 days (8784h) after \
             the job's creation at 2024-02-29T23:50:00Z: move the deadline to \
             2025-03-01T23:50:00Z or earlier"
        );
        // Relative to creation, not to the time of the reconcile.
        let a_month_on = now() + TimeDelta::days(30);
        assert!(validate(&with_deadline(late), a_month_on).is_err());
        assert!(validate(&with_deadline(created + YEAR), a_month_on).is_ok());
    }

    #[test]
    fn max_delay_and_expected_duration_at_most_8784h() {
        let v = validate(
            &caj("PauseAndResume", "1h", json!({"maxDelay": "8784h"})),
            now(),
        )
        .unwrap();
        assert_eq!(v.deadline - v.created, YEAR);
        for over in ["8785h", "8784h0m1s", "8783h61m", "9999999h"] {
            let e = validate(
                &caj("PauseAndResume", "1h", json!({"maxDelay": over})),
                now(),
            )
            .unwrap_err();
            assert_eq!(
                e.message,
                format!("spec.schedule.maxDelay must be at most 8784h (366 days), got {over}")
            );
        }

        let v = validate(&caj("RunNow", "8784h", json!({"maxDelay": "8784h"})), now()).unwrap();
        assert_eq!(v.expected_secs, MAX_SCHEDULE_SPAN_SECS);
        let e = validate(&caj("RunNow", "8785h", json!({"maxDelay": "8784h"})), now()).unwrap_err();
        assert_eq!(
            e.message,
            "spec.schedule.expectedDuration must be at most 8784h (366 days), got 8785h"
        );
        // With a deadline too: the cap does not depend on maxDelay.
        let c = caj(
            "RunNow",
            "8785h",
            json!({"maxDelay": null, "deadline": time::to_time(at(-10) + YEAR)}),
        );
        assert!(validate(&c, now())
            .unwrap_err()
            .message
            .contains("expectedDuration must be at most 8784h"));
    }
}
