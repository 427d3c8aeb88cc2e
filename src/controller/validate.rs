//! PURE validation: a `CarbonAwareJob` spec -> the typed inputs planning and accounting
//! need, or an [`InvalidSpec`] with a message a user can act on.
//!
//! The API server already enforces what the CRD schema and CEL rules express; this repeats
//! those checks (so `carbonshift plan -f`, which has no API server, reports the same
//! errors) and adds what CEL cannot see: a deadline relative to `creationTimestamp` (at
//! most [`MAX_SCHEDULE_SPAN_SECS`] after it: the cap that bounds the planning cost of every
//! reconcile), the pod template's shape, and a power model derivable from the template.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::PodSpec;
use kube::Resource;
use thiserror::Error;

use crate::accounting::PowerModel;
use crate::api::{
    max_span_message, time, CarbonAwareJob, Power, Schedule, StrategyName, DEFAULT_PUE,
    DEFAULT_WATTS_PER_GPU, MAX_SCHEDULE_SPAN_HOURS, MAX_SCHEDULE_SPAN_SECS,
};
use crate::duration::{parse_secs, HINT};
use crate::plan::{Constraints, Strategy};
use crate::timefmt;

/// Most IT power a job may draw, watts (1 GW: more than any data centre), so that energy
/// and emissions stay finite.
const MAX_WATTS: f64 = 1e9;

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
    /// Which field the deadline came from, so messages name the one the user wrote.
    pub deadline_from: DeadlineFrom,
    /// Power while running, for the ledger (`power.kw()`: facility power, IT power x PUE).
    pub power: PowerModel,
    /// How `power_kw` was derived, for `plan -f` and docs (`2 GPU x 400 W x PUE 1.2`).
    pub power_source: String,
    /// The child Job's spec as given (suspend is overridden when built).
    pub job_spec: JobSpec,
    /// How messages name the schedule's fields.
    pub names: FieldNames,
}

/// The schedule of a job, validated: what planning needs of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSchedule {
    pub strategy: Strategy,
    pub constraints: Constraints,
    /// Runtime the job needs (`expectedDuration`), seconds.
    pub expected_secs: i64,
    /// Absolute deadline.
    pub deadline: DateTime<Utc>,
    /// Which field the deadline came from.
    pub deadline_from: DeadlineFrom,
}

/// A field of the schedule, to name it in messages as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Strategy,
    Deadline,
    MaxDelay,
    ExpectedDuration,
    MinRunDuration,
    MinPauseDuration,
    MaxPauses,
    CheckpointOverhead,
    Threshold,
}

impl Field {
    /// The field's name in the CRD's `spec.schedule` (`maxDelay`).
    pub fn camel(self) -> &'static str {
        match self {
            Field::Strategy => "strategy",
            Field::Deadline => "deadline",
            Field::MaxDelay => "maxDelay",
            Field::ExpectedDuration => "expectedDuration",
            Field::MinRunDuration => "minRunDuration",
            Field::MinPauseDuration => "minPauseDuration",
            Field::MaxPauses => "maxPauses",
            Field::CheckpointOverhead => "checkpointOverhead",
            Field::Threshold => "thresholdGramsPerKWh",
        }
    }
}

/// How messages name each schedule field: `spec.schedule.maxDelay` in a CarbonAwareJob,
/// or, for a value given elsewhere (an annotation, a parameters object), where it was
/// given (see [`FieldNames::given_as`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldNames {
    given_as: BTreeMap<Field, String>,
}

impl FieldNames {
    /// Names `field` as `name` (`annotation carbonshift.io/max-delay`) in messages.
    pub fn given_as(&mut self, field: Field, name: impl Into<String>) {
        self.given_as.insert(field, name.into());
    }

    /// The field's full name: where it was given, else `spec.schedule.<field>`.
    pub fn of(&self, field: Field) -> String {
        self.given_as
            .get(&field)
            .cloned()
            .unwrap_or_else(|| format!("spec.schedule.{}", field.camel()))
    }

    /// The field's name inside a sentence that already speaks of the schedule: where it
    /// was given, else its bare CRD name (`expectedDuration`).
    pub fn short(&self, field: Field) -> String {
        self.given_as
            .get(&field)
            .cloned()
            .unwrap_or_else(|| field.camel().to_string())
    }
}

/// The field the deadline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineFrom {
    /// `spec.schedule.deadline`, an absolute time.
    Deadline,
    /// `spec.schedule.maxDelay` (seconds): the deadline is creation + expectedDuration +
    /// maxDelay.
    MaxDelay { secs: i64 },
}

impl ValidSpec {
    /// What to change so the job can finish by `needed` (the earliest deadline it could
    /// meet now), in the field the user wrote: "Move the deadline to ... or later, or
    /// shorten expectedDuration", or "Raise maxDelay to ... or more" (a shorter
    /// expectedDuration moves a maxDelay deadline earlier too, so it would not help).
    pub fn extend_deadline_hint(&self, needed: DateTime<Utc>) -> String {
        match self.deadline_from {
            DeadlineFrom::Deadline => format!(
                "Move the deadline to {} or later, or shorten {}",
                timefmt::format(needed),
                self.names.short(Field::ExpectedDuration)
            ),
            DeadlineFrom::MaxDelay { .. } => {
                let secs = (needed - self.created).num_seconds() - self.expected_secs;
                // Whole minutes, rounded up: a maxDelay a user would write.
                let secs = (secs.max(1) + 59) / 60 * 60;
                format!(
                    "Raise {} to {} or more",
                    self.names.of(Field::MaxDelay),
                    crd_duration(secs)
                )
            }
        }
    }

    /// How the deadline was made, for messages: `deadline 2024-03-02T12:00:00Z` or
    /// `deadline 2024-03-02T12:00:00Z (creation + expectedDuration 6h + maxDelay 24h)`.
    pub fn deadline_text(&self) -> String {
        match self.deadline_from {
            DeadlineFrom::Deadline => format!("deadline {}", timefmt::format(self.deadline)),
            DeadlineFrom::MaxDelay { secs } => format!(
                "deadline {} (creation + {} {} + {} {})",
                timefmt::format(self.deadline),
                self.names.short(Field::ExpectedDuration),
                crd_duration(self.expected_secs),
                self.names.short(Field::MaxDelay),
                crd_duration(secs)
            ),
        }
    }
}

/// `secs` in the CRD's duration grammar (hours, minutes, seconds: `30h`, `1h30m`, `0s`),
/// which has no days.
pub fn crd_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let rest = secs.unsigned_abs();
    let mut out = String::from(sign);
    for (unit, value) in [
        ("h", rest / 3_600),
        ("m", rest % 3_600 / 60),
        ("s", rest % 60),
    ] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// A duration field of the schedule in seconds (0 when unset), in the CRD's grammar
/// (hours, minutes, seconds) and at most [`MAX_SCHEDULE_SPAN_HOURS`]; `name` is the
/// field's full name ([`FieldNames::of`]).
fn duration_field(name: &str, value: Option<&str>) -> Result<i64, InvalidSpec> {
    let Some(v) = value else { return Ok(0) };
    let bad = |why: &str| {
        invalid(format!(
            "{name}: {v:?} is not a duration: {why}; write hours, minutes and \
             seconds, largest first, e.g. 6h, 1h30m or 90s"
        ))
    };
    if v.contains('d') {
        return Err(bad("days are not accepted in a manifest"));
    }
    let secs = match parse_secs(v) {
        Ok(secs) => secs,
        // Too large for any clock: the cap is the useful bound.
        Err(e) if e.reason == "number too large" => {
            return Err(invalid(format!("{}, got {v}", max_span_message(name))))
        }
        // The CLI's units include days; a manifest's do not.
        Err(e) if e.reason.starts_with("unknown unit") => return Err(bad("unknown unit")),
        // The CLI's hint names days too: this message gives the manifest's own.
        Err(e) => {
            let why = e.reason.replace(&format!(" ({HINT})"), "");
            return Err(bad(&why));
        }
    };
    within_span(name, v, secs)?;
    Ok(secs)
}

/// The cap of every schedule duration, with the CEL rule's message.
fn within_span(name: &str, value: &str, secs: i64) -> Result<(), InvalidSpec> {
    if secs > MAX_SCHEDULE_SPAN_SECS {
        return Err(invalid(format!("{}, got {value}", max_span_message(name))));
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
    let created = created_at(caj, now);
    let names = FieldNames::default();
    let s = validate_schedule(&caj.spec.schedule, created, &names)?;
    let job_spec = job_spec(caj)?;
    let (power, power_source) = power(caj, &job_spec)?;
    Ok(ValidSpec {
        strategy: s.strategy,
        constraints: s.constraints,
        expected_secs: s.expected_secs,
        created,
        deadline: s.deadline,
        deadline_from: s.deadline_from,
        power,
        power_source,
        job_spec,
        names,
    })
}

/// Validates a schedule of a job created at `created`, naming its fields as `names` says
/// (a CarbonAwareJob's `spec.schedule`, or the annotations and parameters a Kueue workload
/// took it from).
pub fn validate_schedule(
    s: &Schedule,
    created: DateTime<Utc>,
    names: &FieldNames,
) -> Result<ValidSchedule, InvalidSpec> {
    let expected_secs = expected(s, names)?;
    let constraints = constraints(s, names)?;
    let (deadline, deadline_from) = deadline(s, created, expected_secs, names)?;
    let strategy = strategy(s, names)?;
    Ok(ValidSchedule {
        strategy,
        constraints,
        expected_secs,
        deadline,
        deadline_from,
    })
}

/// `expectedDuration`, seconds: positive and at most the cap.
fn expected(s: &Schedule, names: &FieldNames) -> Result<i64, InvalidSpec> {
    let name = names.of(Field::ExpectedDuration);
    let secs = duration_field(&name, Some(&s.expected_duration))?;
    if secs <= 0 {
        return Err(invalid(format!("{name} must be positive, e.g. 6h")));
    }
    Ok(secs)
}

/// The pause constraints: minimum run and pause, pause count, checkpoint overhead.
fn constraints(s: &Schedule, names: &FieldNames) -> Result<Constraints, InvalidSpec> {
    let field = |f: Field, v: &Option<String>| duration_field(&names.of(f), v.as_deref());
    Ok(Constraints {
        min_run_secs: field(Field::MinRunDuration, &s.min_run_duration)?,
        min_pause_secs: field(Field::MinPauseDuration, &s.min_pause_duration)?,
        max_pauses: match s.max_pauses {
            None => None,
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                invalid(format!(
                    "{} must not be negative, got {n}",
                    names.of(Field::MaxPauses)
                ))
            })?),
        },
        checkpoint_overhead_secs: field(Field::CheckpointOverhead, &s.checkpoint_overhead)?,
    })
}

/// The absolute deadline and the field it came from: `deadline` (at most the cap after
/// creation), or creation + `expectedDuration` + `maxDelay` (their sum at most the cap).
///
/// A deadline the job cannot meet (set so at creation, or edited later) is not refused:
/// the planner runs the job at once and reports the miss (`DeadlineMissed`), so no edit
/// can leave a job frozen.
fn deadline(
    s: &Schedule,
    created: DateTime<Utc>,
    expected_secs: i64,
    names: &FieldNames,
) -> Result<(DateTime<Utc>, DeadlineFrom), InvalidSpec> {
    let latest = created
        .checked_add_signed(TimeDelta::seconds(MAX_SCHEDULE_SPAN_SECS))
        .ok_or_else(|| {
            invalid(format!(
                "the job's creation time {} is out of range",
                timefmt::format(created)
            ))
        })?;
    match (&s.deadline, &s.max_delay) {
        (Some(d), None) => {
            let d = time::from_time(d);
            if d > latest {
                return Err(invalid(format!(
                    "{} {} is more than {} days ({MAX_SCHEDULE_SPAN_HOURS}h) after \
                     the job's creation at {}: move the deadline to {} or earlier",
                    names.of(Field::Deadline),
                    timefmt::format(d),
                    MAX_SCHEDULE_SPAN_HOURS / 24,
                    timefmt::format(created),
                    timefmt::format(latest),
                )));
            }
            Ok((d, DeadlineFrom::Deadline))
        }
        (None, Some(m)) => {
            let name = names.of(Field::MaxDelay);
            let secs = duration_field(&name, Some(m))?;
            if secs <= 0 {
                return Err(invalid(format!(
                    "{name} must be positive, e.g. 24h (for no delay use strategy RunNow)"
                )));
            }
            let total = expected_secs + secs;
            if total > MAX_SCHEDULE_SPAN_SECS {
                return Err(invalid(format!(
                    "{name} {m} plus {} {} is {}, more than \
                     {MAX_SCHEDULE_SPAN_HOURS}h ({} days): the job must finish within {} days of its \
                     creation; shorten {} to {} or less",
                    names.short(Field::ExpectedDuration),
                    s.expected_duration,
                    crd_duration(total),
                    MAX_SCHEDULE_SPAN_HOURS / 24,
                    MAX_SCHEDULE_SPAN_HOURS / 24,
                    names.short(Field::MaxDelay),
                    crd_duration(MAX_SCHEDULE_SPAN_SECS - expected_secs),
                )));
            }
            Ok((
                created + TimeDelta::seconds(total),
                DeadlineFrom::MaxDelay { secs },
            ))
        }
        _ => Err(invalid(format!(
            "set exactly one of {} (RFC 3339) and {} (e.g. 24h)",
            names.of(Field::Deadline),
            names.of(Field::MaxDelay)
        ))),
    }
}

/// The planner's strategy; Threshold needs its threshold.
fn strategy(s: &Schedule, names: &FieldNames) -> Result<Strategy, InvalidSpec> {
    Ok(match s.strategy {
        StrategyName::RunNow => Strategy::RunNow,
        StrategyName::FlexibleStart => Strategy::FlexibleStart,
        StrategyName::PauseAndResume => Strategy::PauseAndResume,
        StrategyName::Threshold => match s.threshold_grams_per_kwh {
            Some(t) if t > 0.0 && t.is_finite() => Strategy::Threshold {
                max_gco2_per_kwh: t,
            },
            _ => {
                return Err(invalid(format!(
                    "strategy Threshold needs a positive {}, e.g. 200",
                    names.of(Field::Threshold)
                )))
            }
        },
    })
}

/// `spec.template.spec` as a batch/v1 JobSpec with at least one container.
fn job_spec(caj: &CarbonAwareJob) -> Result<JobSpec, InvalidSpec> {
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
    Ok(job_spec)
}

/// GPUs one pod of `job_spec` asks for (see [`gpus_of_pod`]).
fn gpus_per_pod(job_spec: &JobSpec) -> Result<i64, InvalidSpec> {
    job_spec.template.spec.as_ref().map_or(Ok(0), gpus_of_pod)
}

/// GPUs a pod asks for: limits, else requests, summed over containers.
pub fn gpus_of_pod(pod: &PodSpec) -> Result<i64, InvalidSpec> {
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
            total = n.max(0).saturating_add(total);
        }
    }
    Ok(total)
}

fn power(caj: &CarbonAwareJob, job_spec: &JobSpec) -> Result<(PowerModel, String), InvalidSpec> {
    power_model("spec.power", caj.spec.power.as_ref(), || {
        let parallelism = job_spec.parallelism.unwrap_or(1).max(1) as i64;
        Ok(gpus_per_pod(job_spec)?.saturating_mul(parallelism))
    })
}

/// The power model of `power` (named `name` in messages: `spec.power`), with
/// `default_gpus` (the GPUs the job's pods request) when it gives neither watts nor GPUs;
/// with the description `plan -f` shows (`2 GPU x 400 W x PUE 1.2`).
pub fn power_model(
    name: &str,
    power: Option<&Power>,
    default_gpus: impl FnOnce() -> Result<i64, InvalidSpec>,
) -> Result<(PowerModel, String), InvalidSpec> {
    let model = |watts: f64, pue: f64| {
        if watts > MAX_WATTS {
            return Err(invalid(format!(
                "{name}: the job draws {watts:e} W, more than 1 GW: check {name} and \
                 the pod template's {GPU_RESOURCE} requests"
            )));
        }
        PowerModel::total(watts, pue).map_err(|e| invalid(format!("{name}: {e}")))
    };
    let p = power.cloned().unwrap_or_default();
    let pue = p.pue.unwrap_or(DEFAULT_PUE);
    if !(1.0..=5.0).contains(&pue) {
        return Err(invalid(format!(
            "{name}.pue must be between 1 and 5, e.g. 1.2"
        )));
    }
    if let Some(w) = p.watts {
        if p.watts_per_gpu.is_some() || p.gpus.is_some() {
            return Err(invalid(format!(
                "set either {name}.watts or {name}.wattsPerGpu/gpus, not both"
            )));
        }
        if !(w > 0.0 && w.is_finite()) {
            return Err(invalid(format!("{name}.watts must be positive")));
        }
        return Ok((model(w, pue)?, format!("{w} W x PUE {pue}")));
    }
    let per_gpu = p.watts_per_gpu.unwrap_or(DEFAULT_WATTS_PER_GPU);
    if !(per_gpu > 0.0 && per_gpu.is_finite()) {
        return Err(invalid(format!("{name}.wattsPerGpu must be positive")));
    }
    let gpus = match p.gpus {
        Some(g) if g > 0 => g as i64,
        Some(_) => return Err(invalid(format!("{name}.gpus must be at least 1"))),
        None => default_gpus()?,
    };
    if gpus == 0 {
        return Err(invalid(format!(
            "cannot tell the job's power: the pod template requests no {GPU_RESOURCE}; \
             set {name}.watts (total watts of all pods) or {name}.gpus"
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

    /// A schedule with exactly these fields (strategy FlexibleStart).
    fn schedule(fields: serde_json::Value) -> CarbonAwareJob {
        let mut c = caj("FlexibleStart", "1h", json!({}));
        c.spec.schedule = serde_json::from_value(fields).unwrap();
        c
    }

    #[test]
    fn max_delay_is_a_delay_on_top_of_the_expected_duration() {
        // The README's example: 6 h of work that may start up to 24 h late.
        let v = validate(
            &schedule(json!({"maxDelay": "24h", "expectedDuration": "6h"})),
            now(),
        )
        .unwrap();
        assert_eq!(v.deadline - v.created, TimeDelta::hours(30));
        assert_eq!(v.deadline_from, DeadlineFrom::MaxDelay { secs: 24 * 3600 });
        assert_eq!(
            v.deadline_text(),
            "deadline 2024-03-02T05:50:00Z (creation + expectedDuration 6h + maxDelay 24h)"
        );
        // The fix names the field the user wrote: finishing 32 h 1 s after creation takes
        // a maxDelay of 26h0m1s on top of the 6 h of work, rounded up to the minute.
        let needed = v.created + TimeDelta::hours(32) + TimeDelta::seconds(1);
        assert_eq!(
            v.extend_deadline_hint(needed),
            "Raise spec.schedule.maxDelay to 26h1m or more"
        );
        let d = validate(&with_deadline(at(600)), now()).unwrap();
        assert_eq!(d.deadline_from, DeadlineFrom::Deadline);
        assert_eq!(
            d.extend_deadline_hint(at(700)),
            "Move the deadline to 2024-03-01T11:40:00Z or later, or shorten expectedDuration"
        );
    }

    #[test]
    fn max_delay_and_expected_duration_at_most_8784h() {
        let v = validate(
            &caj("PauseAndResume", "1h", json!({"maxDelay": "8783h"})),
            now(),
        )
        .unwrap();
        assert_eq!(v.deadline - v.created, YEAR);
        for over in ["8785h", "8784h0m1s", "8783h61m", "9999999h", "99999999999h"] {
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
        // Each within the cap, together over it: the message names maxDelay and its bound.
        let e = validate(
            &caj("PauseAndResume", "6h", json!({"maxDelay": "8784h"})),
            now(),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "spec.schedule.maxDelay 8784h plus expectedDuration 6h is 8790h, more than 8784h \
             (366 days): the job must finish within 366 days of its creation; shorten maxDelay \
             to 8778h or less"
        );

        let year_on = json!({"maxDelay": null, "deadline": time::to_time(at(-10) + YEAR)});
        let v = validate(&caj("RunNow", "8784h", year_on.clone()), now()).unwrap();
        assert_eq!(v.expected_secs, MAX_SCHEDULE_SPAN_SECS);
        let e = validate(&caj("RunNow", "8785h", year_on), now()).unwrap_err();
        assert_eq!(
            e.message,
            "spec.schedule.expectedDuration must be at most 8784h (366 days), got 8785h"
        );
    }

    #[test]
    fn every_duration_is_range_checked_and_named() {
        for field in ["minRunDuration", "minPauseDuration", "checkpointOverhead"] {
            let ok = validate(&caj("PauseAndResume", "1h", json!({field: "8784h"})), now());
            assert!(ok.is_ok(), "{field}: {ok:?}");
            for (bad, why) in [
                ("8785h", format!("spec.schedule.{field} must be at most 8784h (366 days), got 8785h")),
                (
                    "99999999999999999999h",
                    format!("spec.schedule.{field} must be at most 8784h (366 days), got 99999999999999999999h"),
                ),
                (
                    "1d",
                    format!("spec.schedule.{field}: \"1d\" is not a duration: days are not accepted in a manifest; write hours, minutes and seconds, largest first, e.g. 6h, 1h30m or 90s"),
                ),
                (
                    "soon",
                    format!("spec.schedule.{field}: \"soon\" is not a duration: a unit without a number; write hours, minutes and seconds, largest first, e.g. 6h, 1h30m or 90s"),
                ),
                (
                    "6x",
                    format!("spec.schedule.{field}: \"6x\" is not a duration: unknown unit; write hours, minutes and seconds, largest first, e.g. 6h, 1h30m or 90s"),
                ),
            ] {
                let e = validate(&caj("PauseAndResume", "1h", json!({field: bad})), now())
                    .unwrap_err();
                assert_eq!(e.message, why);
            }
        }
        let e = validate(
            &caj("PauseAndResume", "1h", json!({"maxPauses": -1})),
            now(),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "spec.schedule.maxPauses must not be negative, got -1"
        );
        let e = validate(
            &caj("PauseAndResume", "1h", json!({"maxDelay": "0s"})),
            now(),
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("spec.schedule.maxDelay must be positive"),
            "{e}"
        );
    }

    /// The fields of a schedule, each with its name in messages.
    const FIELDS: [&str; 7] = [
        "maxDelay",
        "expectedDuration",
        "minRunDuration",
        "minPauseDuration",
        "checkpointOverhead",
        "maxPauses",
        "deadline",
    ];

    /// Any string, a huge number with any unit, or a duration near the cap.
    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            "[0-9]{0,25}[dhms]?[0-9]{0,25}[hms]?",
            (0u64..20_000, 0u64..100_000).prop_map(|(h, s)| format!("{h}h{s}s")),
            any::<i64>().prop_map(|n| n.to_string()),
            // RFC 3339 times from year -10000 to 14000, for deadline.
            (-377_000_000_000i64..380_000_000_000).prop_map(|s| {
                DateTime::from_timestamp(s, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            }),
        ]
    }

    proptest::proptest! {
        /// Whatever one field holds (a string or a number, any size), validate returns,
        /// and an error names that field.
        #[test]
        fn validate_never_panics_and_names_the_field(
            field in 0..FIELDS.len(),
            text in value(),
            number in proptest::prelude::any::<i64>(),
            as_number in proptest::prelude::any::<bool>(),
            now_secs in -50_000_000_000i64..50_000_000_000,
        ) {
            let name = FIELDS[field];
            let mut fields = json!({"expectedDuration": "6h", "maxDelay": "24h"});
            let value = if as_number || name == "maxPauses" {
                json!(number)
            } else {
                json!(text)
            };
            if name == "deadline" {
                fields["maxDelay"] = serde_json::Value::Null;
            }
            fields[name] = value;
            // What deserialises is what reaches validate (the API server and serde refuse
            // the rest: a number for a duration, a deadline that is no RFC 3339 time).
            let Ok(sched) = serde_json::from_value::<Schedule>(fields.clone()) else {
                return Ok(());
            };
            let mut c = caj("PauseAndResume", "6h", json!({}));
            c.spec.schedule = sched;
            let now = DateTime::from_timestamp(now_secs, 0).unwrap();
            c.metadata.creation_timestamp = None;
            match validate(&c, now) {
                Ok(v) => {
                    proptest::prop_assert!(v.deadline >= v.created || name == "deadline");
                    proptest::prop_assert!(v.deadline - v.created <= YEAR);
                }
                Err(e) => proptest::prop_assert!(
                    e.message.contains(name),
                    "{fields}: {:?} does not name {name}", e.message
                ),
            }
        }
    }
}
