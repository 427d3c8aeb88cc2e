//! PURE: a Kueue workload's schedule, from its AdmissionCheck's [`CarbonWindowParameters`](crate::api::params::CarbonWindowParameters)
//! and the `carbonshift.io/*` annotations on its job object, validated by the same code
//! as a CarbonAwareJob's `spec.schedule` ([`validate_schedule`]).
//!
//! An annotation overrides the parameter of the same meaning; `carbonshift.io/deadline`
//! overrides a default `maxDelay` (and the two annotations together are refused). Every
//! message names the place the value came from (`annotation carbonshift.io/max-delay`, or
//! `CarbonWindowParameters gpu-defaults spec.maxDelay`), and a value that is missing or
//! malformed is an error, never a silent default.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::params::CarbonWindowParametersSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{time, Power, Schedule, StrategyName};
use crate::controller::validate::{
    validate_schedule, Field, FieldNames, InvalidSpec, ValidSchedule,
};
use crate::timefmt;

/// The annotations a workload's job object may carry, with the schedule field each sets.
pub const STRATEGY: &str = "carbonshift.io/strategy";
pub const MAX_DELAY: &str = "carbonshift.io/max-delay";
pub const DEADLINE: &str = "carbonshift.io/deadline";
pub const EXPECTED_DURATION: &str = "carbonshift.io/expected-duration";
pub const MIN_RUN_DURATION: &str = "carbonshift.io/min-run-duration";
pub const MIN_PAUSE_DURATION: &str = "carbonshift.io/min-pause-duration";
pub const MAX_PAUSES: &str = "carbonshift.io/max-pauses";
pub const CHECKPOINT_OVERHEAD: &str = "carbonshift.io/checkpoint-overhead";
pub const THRESHOLD: &str = "carbonshift.io/threshold-grams-per-kwh";
pub const REGION: &str = "carbonshift.io/region";

/// Every annotation read, in the order messages list them.
pub const ALL: [&str; 10] = [
    STRATEGY,
    MAX_DELAY,
    DEADLINE,
    EXPECTED_DURATION,
    MIN_RUN_DURATION,
    MIN_PAUSE_DURATION,
    MAX_PAUSES,
    CHECKPOINT_OVERHEAD,
    THRESHOLD,
    REGION,
];

/// Annotations under `carbonshift.io/` that are not settings of the schedule (the
/// operator's own, on objects it made): never reported as unknown.
/// A Workload's own annotations are read when it has no job object (a MultiKueue worker's
/// copy of the manager's Workload carries the manager's).
const NOT_SETTINGS: [&str; 7] = [
    "carbonshift.io/job",
    super::check::HELD_UNTIL,
    super::check::HELD_BECAUSE,
    super::dispatch::NOMINATED,
    super::dispatch::PASSED_OVER,
    super::dispatch::REGIONS,
    super::dispatch::EXPECTED_START,
];

/// The parameters object an AdmissionCheck references, by name.
#[derive(Debug, Clone, Copy)]
pub struct Defaults<'a> {
    pub name: &'a str,
    pub spec: &'a CarbonWindowParametersSpec,
}

/// A workload's schedule as given, with where each field came from.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSchedule {
    pub schedule: Schedule,
    pub names: FieldNames,
    /// Grid zone or cloud region, when the annotations or the parameters give one.
    pub region: Option<String>,
    /// The parameters' power model, when they give one.
    pub power: Option<Power>,
}

impl WorkloadSchedule {
    /// Validates the schedule of a workload created at `created`.
    pub fn validate(&self, created: DateTime<Utc>) -> Result<ValidSchedule, InvalidSpec> {
        validate_schedule(&self.schedule, created, &self.names)
    }
}

fn invalid(message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        message: message.into(),
    }
}

fn annotation_name(key: &str) -> String {
    format!("annotation {key}")
}

fn parameter_name(defaults: &Defaults<'_>, field: Field) -> String {
    format!(
        "CarbonWindowParameters {} spec.{}",
        defaults.name,
        field.camel()
    )
}

/// One field: the annotation's value if set, else the parameter's; `names` learns which
/// (the annotation's name for a field given nowhere: where a user would give it).
struct Merge<'a, 'b> {
    annotations: &'a BTreeMap<String, String>,
    defaults: Option<Defaults<'b>>,
    names: FieldNames,
}

impl Merge<'_, '_> {
    fn pick<T: Clone>(
        &mut self,
        field: Field,
        key: &str,
        parameter: impl Fn(&CarbonWindowParametersSpec) -> Option<T>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, InvalidSpec> {
        if let Some(v) = self.annotations.get(key) {
            self.names.given_as(field, annotation_name(key));
            return parse(v.trim())
                .map(Some)
                .map_err(|why| invalid(format!("{}: {why}", annotation_name(key))));
        }
        let value = self
            .defaults
            .and_then(|d| parameter(d.spec).map(|v| (d, v)));
        // A field given nowhere is named by the annotation that would give it.
        let name = match &value {
            Some((d, _)) => parameter_name(d, field),
            None => annotation_name(key),
        };
        self.names.given_as(field, name);
        Ok(value.map(|(_, v)| v))
    }

    /// Where a required field may be given, for the message that says it is missing.
    fn places(&self, field: Field, key: &str) -> String {
        match self.defaults {
            Some(d) => format!(
                "set {} on the job, or {}",
                annotation_name(key),
                parameter_name(&d, field)
            ),
            None => format!(
                "set {} on the job (the AdmissionCheck references no CarbonWindowParameters)",
                annotation_name(key)
            ),
        }
    }
}

fn text(v: &str) -> Result<String, String> {
    Ok(v.to_string())
}

fn strategy(v: &str) -> Result<StrategyName, String> {
    let folded: String = v
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    Ok(match folded.as_str() {
        "runnow" => StrategyName::RunNow,
        "flexiblestart" => StrategyName::FlexibleStart,
        "pauseandresume" => StrategyName::PauseAndResume,
        "threshold" => StrategyName::Threshold,
        _ => {
            return Err(format!(
                "{v:?} is not a strategy: write RunNow, FlexibleStart, PauseAndResume or Threshold"
            ))
        }
    })
}

fn whole_number(v: &str) -> Result<i32, String> {
    v.parse::<i32>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("{v:?} is not a whole number of pauses (0 or more), e.g. 3"))
}

fn grams(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|g| g.is_finite() && *g > 0.0)
        .ok_or_else(|| format!("{v:?} is not a positive number of gCO2eq/kWh, e.g. 200"))
}

fn deadline(v: &str) -> Result<Time, String> {
    let t = timefmt::parse(v)?;
    let latest = timefmt::parse(crate::api::LATEST_DEADLINE)?;
    if t > latest {
        return Err(format!(
            "{v:?} is later than any deadline carbonshift accepts: give one at most 366 days \
             after the workload's creation"
        ));
    }
    Ok(time::to_time(t))
}

/// An annotation under `carbonshift.io/` that sets nothing: most likely a misspelt one.
fn unknown(annotations: &BTreeMap<String, String>) -> Result<(), InvalidSpec> {
    let Some(key) = annotations.keys().find(|k| {
        k.starts_with("carbonshift.io/")
            && !ALL.contains(&k.as_str())
            && !NOT_SETTINGS.contains(&k.as_str())
    }) else {
        return Ok(());
    };
    let nearest = ALL
        .iter()
        .min_by_key(|known| strsim::levenshtein(key, known))
        .copied()
        .unwrap_or(STRATEGY);
    Err(invalid(format!(
        "annotation {key} is not one carbonshift reads: did you mean {nearest}? (it reads {})",
        ALL.join(", ")
    )))
}

/// The schedule of a workload whose job object carries `annotations`, over the defaults
/// of its AdmissionCheck's parameters, if it references any.
pub fn workload_schedule(
    defaults: Option<Defaults<'_>>,
    annotations: &BTreeMap<String, String>,
) -> Result<WorkloadSchedule, InvalidSpec> {
    unknown(annotations)?;
    let mut m = Merge {
        annotations,
        defaults,
        names: FieldNames::default(),
    };
    let strategy = m.pick(Field::Strategy, STRATEGY, |p| p.strategy, strategy)?;
    let expected = m.pick(
        Field::ExpectedDuration,
        EXPECTED_DURATION,
        |p| p.expected_duration.clone(),
        text,
    )?;
    let Some(expected_duration) = expected else {
        return Err(invalid(format!(
            "the workload has no expected duration: {}, e.g. 6h",
            m.places(Field::ExpectedDuration, EXPECTED_DURATION)
        )));
    };
    let (deadline, max_delay) = deadline_or_delay(&mut m)?;
    let schedule = Schedule {
        strategy: strategy.unwrap_or_default(),
        deadline,
        max_delay,
        expected_duration,
        min_run_duration: m.pick(
            Field::MinRunDuration,
            MIN_RUN_DURATION,
            |p| p.min_run_duration.clone(),
            text,
        )?,
        min_pause_duration: m.pick(
            Field::MinPauseDuration,
            MIN_PAUSE_DURATION,
            |p| p.min_pause_duration.clone(),
            text,
        )?,
        max_pauses: m.pick(Field::MaxPauses, MAX_PAUSES, |p| p.max_pauses, whole_number)?,
        checkpoint_overhead: m.pick(
            Field::CheckpointOverhead,
            CHECKPOINT_OVERHEAD,
            |p| p.checkpoint_overhead.clone(),
            text,
        )?,
        threshold_grams_per_kwh: m.pick(
            Field::Threshold,
            THRESHOLD,
            |p| p.threshold_grams_per_kwh,
            grams,
        )?,
    };
    let region = match annotations.get(REGION) {
        Some(r) if r.trim().is_empty() => {
            return Err(invalid(format!(
                "{} is empty: give a grid zone or cloud region, e.g. DE or eu-central-1",
                annotation_name(REGION)
            )))
        }
        Some(r) => Some(r.trim().to_string()),
        None => defaults.and_then(|d| d.spec.region.clone()),
    };
    Ok(WorkloadSchedule {
        schedule,
        names: m.names,
        region,
        power: defaults.and_then(|d| d.spec.power.clone()),
    })
}

/// The deadline, or the delay it is made of: an annotation of either wins over the
/// parameters' `maxDelay`; both annotations at once are refused; neither anywhere is
/// missing.
fn deadline_or_delay(m: &mut Merge<'_, '_>) -> Result<(Option<Time>, Option<String>), InvalidSpec> {
    m.names.given_as(Field::Deadline, annotation_name(DEADLINE));
    let (has_deadline, has_delay) = (
        m.annotations.contains_key(DEADLINE),
        m.annotations.contains_key(MAX_DELAY),
    );
    if has_deadline && has_delay {
        return Err(invalid(format!(
            "set only one of {} and {}",
            annotation_name(MAX_DELAY),
            annotation_name(DEADLINE)
        )));
    }
    if has_deadline {
        let d = m.pick(Field::Deadline, DEADLINE, |_| None, deadline)?;
        return Ok((d, None));
    }
    let delay = m.pick(Field::MaxDelay, MAX_DELAY, |p| p.max_delay.clone(), text)?;
    if delay.is_none() {
        return Err(invalid(format!(
            "the workload has no deadline: {}, e.g. 24h, or set {} (RFC 3339)",
            m.places(Field::MaxDelay, MAX_DELAY),
            annotation_name(DEADLINE)
        )));
    }
    Ok((None, delay))
}

#[cfg(test)]
#[path = "annotations_tests.rs"]
mod tests;
