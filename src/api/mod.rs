//! The `CarbonAwareJob` API (`carbonshift.io/v1alpha1`): serde + schemars types, the CEL
//! rules the API server enforces, and small helpers to read them.
//!
//! The CRD YAML in `crds/` is generated from these types (`carbonshift crd`); a unit test
//! fails when it is stale. Field names are a public contract.
//!
//! ## Why the pod template is schemaless
//! `spec.template.spec` is a batch/v1 `JobSpec`: its own fields (parallelism, completions,
//! backoffLimit, podFailurePolicy, ...) keep their full OpenAPI schema, but the pod template
//! inside it (`spec.template.spec.template`) is `x-kubernetes-preserve-unknown-fields`. The
//! full PodTemplateSpec schema is several hundred kilobytes, which pushes the CRD past the
//! 256 KiB limit of the `last-applied-configuration` annotation (so plain `kubectl apply`
//! fails) and slows every API server that loads it. Nothing is lost in validation: the
//! controller creates the child Job (suspended) within seconds of the CarbonAwareJob being
//! applied, and the API server validates the pod template then; a rejection becomes a
//! `Ready=False, reason=InvalidSpec` condition and a Warning Event with the server's message.
//! Keeping the Rust type as JSON (not a typed `JobSpec`) also means a malformed template can
//! never break deserialisation of the watch stream for every other object.
//!
//! ## Durations
//! Durations in the CRD use hours, minutes and seconds only (`90s`, `4m`, `6h`, `1h30m`):
//! the same grammar CEL's `duration()` accepts, so the schema's regex and the CEL rules agree.
//! ([`crate::duration::parse_secs`] also reads days, for the CLI.)
//!
//! The API server evaluates CEL rules even on a field whose `pattern` already failed, and
//! `duration()` of a string it cannot parse is a runtime error reported as "type conversion
//! error from 'string' to 'google.protobuf.Duration' evaluating rule: <that rule's
//! message>", which tells the user about a rule they did not break. So every rule that calls
//! `duration()` first checks the pattern (`!x.matches(PATTERN) || ...`), and the pattern
//! bounds the digits so that whatever it accepts lies within the API server's duration
//! range (Go's `time.Duration`, about 292 years; 999999h999...: at most 165 years): a bad
//! duration gets exactly one error, the pattern's. (`9999999h`, 1,141 years, failed every
//! `duration()` rule with a type conversion error before the pattern allowed only six
//! digits of hours.)
//!
//! ## What `maxDelay` means
//! `maxDelay` is a delay: how much later than "at once" the Job may run. The deadline it
//! makes is `creationTimestamp + expectedDuration + maxDelay`, so a `6h` job with
//! `maxDelay: 24h` has 24 hours of slack and must finish within 30 hours of creation (the
//! `--slack` of `carbonshift simulate`). Until the Unreleased entry of CHANGELOG.md it was
//! the deadline relative to creation.
//!
//! ## How far ahead a job may reach
//! Every duration of the schedule is at most [`MAX_SCHEDULE_SPAN_HOURS`] (8784h, 366
//! days), `expectedDuration + maxDelay` too, and `deadline` at most that long after
//! creation (checked by the operator, since CEL cannot see `creationTimestamp`): whichever
//! way it is given, the deadline lies at most 366 days after creation. Every reconcile
//! plans the whole window up to the deadline, so the cap is what bounds the cost of one
//! reconcile: without it a single `maxDelay: 9999999h` made each reconcile plan over a
//! million years of hourly slots (seconds of CPU and a gigabyte of memory). A year covers
//! every batch and training job the strategies are meant for; a leap year's 366 days keep
//! "one year from now" valid.
//!
//! ## Descriptions
//! Doc comments become the schema's descriptions (`kubectl explain`). schemars keeps their
//! line breaks, which `kubectl explain` prints mid-sentence, so [`reflow_descriptions`]
//! joins the lines of each paragraph (a blank line still separates paragraphs).

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::{json_schema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod params;
pub mod time;
pub mod window;

/// Label put on every child Job: the owning CarbonAwareJob's name.
pub const JOB_LABEL: &str = "carbonshift.io/job";
/// `app.kubernetes.io/managed-by` value on child Jobs.
pub const MANAGED_BY: &str = "carbonshift";
/// Regex of a CRD duration: hours, minutes, seconds, largest first, at least one.
/// The digit bounds keep every match within CEL's duration range (see the module doc); the
/// CEL rules that call `duration()` repeat this pattern literally (a unit test checks).
pub const DURATION_PATTERN: &str = "^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$";
/// Longest duration of the schedule (and `expectedDuration + maxDelay`), and latest
/// `deadline` after creation, in hours: 366 days (see the module doc). The CEL rules and
/// [`crate::controller::validate`] both use it.
pub const MAX_SCHEDULE_SPAN_HOURS: i64 = 8784;
/// [`MAX_SCHEDULE_SPAN_HOURS`] in seconds.
pub const MAX_SCHEDULE_SPAN_SECS: i64 = MAX_SCHEDULE_SPAN_HOURS * 3600;
/// Latest `deadline` the API types can hold (`metav1.Time` is a jiff `Timestamp`, which
/// ends here); a CEL rule refuses later ones so that no object in the watch stream fails
/// to deserialise.
pub const LATEST_DEADLINE: &str = "9999-12-30T22:00:00Z";
/// Default power usage effectiveness when `spec.power.pue` is unset: a typical modern
/// hyperscale/colocation data centre (Uptime Institute surveys report 1.1-1.6).
pub const DEFAULT_PUE: f64 = 1.2;
/// Default board power of one GPU when `spec.power.wattsPerGpu` is unset: the TDP of an
/// NVIDIA A100 SXM (400 W). Training jobs typically draw close to TDP.
pub const DEFAULT_WATTS_PER_GPU: f64 = 400.0;

/// A batch/v1 Job that carbonshift starts, pauses and resumes when the grid is cleanest,
/// finishing before its deadline.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "carbonshift.io",
    version = "v1alpha1",
    kind = "CarbonAwareJob",
    plural = "carbonawarejobs",
    shortname = "caj",
    category = "carbonshift",
    namespaced,
    status = "CarbonAwareJobStatus",
    derive = "PartialEq",
    doc = "A batch/v1 Job that carbonshift runs when the electricity grid is cleanest, finishing before its deadline.",
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it names the child Job"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(name = "Region", type_ = "string", json_path = ".status.region", description = "Grid zone planned with"),
    printcolumn(name = "Intensity", type_ = "number", json_path = ".status.currentIntensity", description = "Grid intensity now (gCO2eq/kWh)"),
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextTransitionTime", description = "Next planned start/pause"),
    printcolumn(name = "Avoided(g)", type_ = "number", json_path = ".status.avoidedGrams", description = "Emissions avoided so far versus running at once (gCO2eq)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct CarbonAwareJobSpec {
    /// The Job to run. carbonshift creates it as a child Job of the same name (suspended
    /// until the plan says run) and flips `spec.suspend` at planned transitions; indexed and
    /// parallel Jobs run as Kubernetes runs them. The template cannot be changed once the
    /// child Job exists (Job pod templates are immutable): an edit is not applied, the Job
    /// keeps running the original template, and the `TemplateCurrent` condition turns False
    /// with a Warning Event. Delete and re-create the CarbonAwareJob to run a new template.
    pub template: JobTemplate,
    /// When the Job may run and how it may be split.
    pub schedule: Schedule,
    /// Grid zone to plan with (e.g. `DE`, `GB`, `FR`, `US-CAL-CISO`, or a cloud region such
    /// as `europe-west3` that carbonshift maps to its zone). Default: the operator's
    /// `--region`, else the nodes' `topology.kubernetes.io/region` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// Power model for energy and emissions accounting. Default: `wattsPerGpu` 400 W times
    /// the GPUs the pod template requests (`nvidia.com/gpu`) times parallelism, PUE 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<Power>,
}

/// Metadata and spec of the child Job (the shape of a batch/v1 JobTemplateSpec).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobTemplate {
    /// Labels and annotations copied onto the child Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// A batch/v1 JobSpec. `suspend` is managed by carbonshift and ignored here. The pod
    /// template (`template`) is not schema-validated in this CRD; the API server validates
    /// it when carbonshift creates the child Job.
    #[schemars(schema_with = "job_spec_schema")]
    pub spec: serde_json::Value,
}

/// Labels and annotations for the child Job.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels added to the child Job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the child Job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Scheduling policy.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum StrategyName {
    /// Start at once and run to completion (the baseline; no shifting).
    RunNow,
    /// Delay the start into the cleanest window that still finishes by the deadline; never
    /// pause once started. Safe for jobs that cannot checkpoint.
    #[default]
    FlexibleStart,
    /// Run only in the cleanest slots before the deadline, pausing in between. The job must
    /// checkpoint on SIGTERM and resume from its checkpoint.
    PauseAndResume,
    /// Run while the grid is below `thresholdGramsPerKWh`, deadline permitting.
    Threshold,
}

/// When the Job may run. Exactly one of `deadline` and `maxDelay` is required.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.deadline) != has(self.maxDelay)").message("set exactly one of schedule.deadline and schedule.maxDelay"),
    validation = Rule::new("!has(self.maxDelay) || !self.expectedDuration.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$') || !self.maxDelay.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$') || duration(self.expectedDuration) + duration(self.maxDelay) <= duration('8784h')").message(MAX_DELAY_SUM_MESSAGE),
    validation = Rule::new("self.strategy != 'Threshold' || has(self.thresholdGramsPerKWh)").message("strategy Threshold needs schedule.thresholdGramsPerKWh"),
)]
pub struct Schedule {
    /// Scheduling policy: RunNow, FlexibleStart (default), PauseAndResume or Threshold.
    #[serde(default)]
    pub strategy: StrategyName,
    /// Absolute time (RFC 3339) by which the Job must have finished; at most 366 days
    /// after the CarbonAwareJob's creation (the operator reports a later one as
    /// `InvalidSpec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self <= timestamp('9999-12-30T22:00:00Z')").message("deadline must be at most 366 days after the job's creation (and no later than 9999-12-30T22:00:00Z)"))]
    pub deadline: Option<Time>,
    /// How long the Job may wait beyond running at once, e.g. `24h`. The deadline is the
    /// CarbonAwareJob's creation time plus `expectedDuration` plus `maxDelay`: a `6h` Job
    /// with `maxDelay: 24h` may start up to 24 hours late and must finish within 30 hours
    /// of creation. `expectedDuration` + `maxDelay` is at most `8784h` (366 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(
        validation = Rule::new("!self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$') || duration(self) > duration('0s')").message("maxDelay must be positive (for no delay use strategy RunNow)"),
        validation = max_span_rule("maxDelay"),
    )]
    pub max_delay: Option<String>,
    /// Runtime the Job needs to finish, e.g. `6h`. Planning reserves this much running
    /// time (plus checkpoint overhead per pause); if the Job runs longer it is never paused
    /// again and runs to completion. At most `8784h` (366 days).
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(
        validation = Rule::new("!self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$') || duration(self) > duration('0s')").message("expectedDuration must be positive"),
        validation = max_span_rule("expectedDuration"),
    )]
    pub expected_duration: String,
    /// Once started or resumed, run at least this long before pausing (e.g. `30m`). At
    /// most `8784h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = max_span_rule("minRunDuration"))]
    pub min_run_duration: Option<String>,
    /// Once paused, stay paused at least this long (e.g. `1h`). At most `8784h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = max_span_rule("minPauseDuration"))]
    pub min_pause_duration: Option<String>,
    /// At most this many pauses over the Job's life (unset: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pauses: Option<i32>,
    /// Extra runtime each pause costs (writing and restoring a checkpoint, warm-up), e.g.
    /// `5m`. At most `8784h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = max_span_rule("checkpointOverhead"))]
    pub checkpoint_overhead: Option<String>,
    /// For strategy Threshold: run while intensity is below this, in gCO2eq/kWh.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "thresholdGramsPerKWh"
    )]
    #[x_kube(validation = Rule::new("self > 0.0").message("thresholdGramsPerKWh must be positive"))]
    pub threshold_grams_per_kwh: Option<f64>,
}

/// Power drawn while the Job runs, for energy and emissions accounting. Either `watts`
/// (total) or `wattsPerGpu`/`gpus`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.watts) || (!has(self.wattsPerGpu) && !has(self.gpus))").message("set either power.watts or power.wattsPerGpu/gpus, not both"),
)]
pub struct Power {
    /// Board power of one GPU in watts (default 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("wattsPerGpu must be positive"))]
    pub watts_per_gpu: Option<f64>,
    /// Number of GPUs (default: `nvidia.com/gpu` limits, else requests, of the pod template
    /// times the Job's parallelism).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub gpus: Option<i32>,
    /// Total IT power of the Job in watts (all pods), instead of wattsPerGpu x gpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("watts must be positive"))]
    pub watts: Option<f64>,
    /// Power usage effectiveness of the data centre (>= 1; default 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 5.0))]
    pub pue: Option<f64>,
}

/// Lifecycle phase of a CarbonAwareJob.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Accepted; child Job not created yet (or the spec is invalid: see conditions).
    Pending,
    /// Child Job exists, suspended, never started: waiting for a cleaner window.
    Waiting,
    /// Child Job unsuspended.
    Running,
    /// Started before, suspended now.
    Paused,
    /// Child Job completed.
    Succeeded,
    /// Child Job failed.
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Waiting,
        Phase::Running,
        Phase::Paused,
        Phase::Succeeded,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Waiting => "Waiting",
            Phase::Running => "Running",
            Phase::Paused => "Paused",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Observed state, written only by carbonshift. Accounting fields are integrals over time
/// up to `lastAccountedTime`, so a restarted operator continues exactly where it stopped.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct CarbonAwareJobStatus {
    /// Pending, Waiting, Running, Paused, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready` (spec valid, forecast and child Job in place) and `Running` (the current
    /// decision and its reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Name of the child batch/v1 Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Grid zone planned with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Where the forecast came from, e.g. `embedded (historical replay)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_source: Option<String>,
    /// What the intensities, the plan's expected emissions and the ledger's grams measure:
    /// `average` (consumption mix) or `marginal` (MOER, e.g. WattTime), as the forecast
    /// source publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Grid intensity at the last reconcile, gCO2eq/kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_intensity: Option<f64>,
    /// The action the plan takes at `nextTransitionTime`: `Run` or `Pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    /// When the plan next starts, pauses or resumes the Job (if the forecast holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition_time: Option<Time>,
    /// Start of the first planned (or actual) run interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<Time>,
    /// End of the last planned run interval: when the Job should finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_end: Option<Time>,
    /// Absolute deadline: `deadline`, or creation time + `expectedDuration` + `maxDelay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// Seconds of work done: time the child Job was unsuspended with its pods Ready,
    /// weighted by `min(ready, parallelism) / parallelism` (a parallel Job with half its pods
    /// Ready does half a second of work per second). Pending time (scheduling, image pull,
    /// container start) is not work. Includes restore overhead after pauses.
    #[serde(default)]
    pub runtime_seconds: i64,
    /// Seconds the child Job was unsuspended waiting for its pods: each second weighted by
    /// `1 - min(ready, parallelism) / parallelism`, so `runtimeSeconds +
    /// waitingForPodsSeconds` is the time spent unsuspended (to rounding).
    #[serde(default)]
    pub waiting_for_pods_seconds: i64,
    /// Seconds of `runtimeSeconds` spent restoring after a resume: the runtime accrued in
    /// the first `checkpointOverhead` after the resumed pods were first Ready. Not work,
    /// so not in the run-now baseline. Unset in statuses written before it was recorded
    /// (then derived from `pauses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<i64>,
    /// Pauses taken.
    #[serde(default)]
    pub pauses: i32,
    /// Energy used, kWh (PUE included).
    #[serde(default, rename = "energyKWh")]
    pub energy_kwh: f64,
    /// Emissions of the runtime so far, gCO2eq.
    #[serde(default)]
    pub emissions_grams: f64,
    /// Run-now counterfactual for the same work done so far, gCO2eq: what the Job would
    /// have emitted had it started at creation and never paused, over its net runtime
    /// (restore overhead excluded: the counterfactual never pauses).
    #[serde(default)]
    pub baseline_grams: f64,
    /// `baselineGrams - emissionsGrams` (final once Succeeded and `unaccounted` is empty).
    #[serde(default)]
    pub avoided_grams: f64,
    /// Past spans whose grams are not in `emissionsGrams` (`to: Emissions`) or
    /// `baselineGrams` (`to: Baseline`) yet: no recorded intensities covered them when they
    /// were accounted (a provider outage; an operator restart the provider's live data no
    /// longer reaches). Their runtime and energy are counted. They are settled from the
    /// provider's history once it answers, and never integrated at a guessed value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unaccounted: Vec<crate::accounting::Owed>,
    /// Seconds of `runtimeSeconds` whose emissions are not in `emissionsGrams` (the
    /// `Emissions` spans of `unaccounted`); unset when every second is accounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unaccounted_seconds: Option<i64>,
    /// `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accounting fields above are integrated up to this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accounted_time: Option<Time>,
    /// Start (or last resume) of the current run; unset while not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Time>,
    /// Start of the current pause (or of waiting); unset while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<Time>,
    /// Pods of the child Job Ready (its `status.ready`) at `lastAccountedTime`, while
    /// running: the count the accounting integrates from then on (0 while suspended).
    /// Unset in statuses written before accounting followed Ready pods; such a run is
    /// accounted as fully running until the next observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_pods: Option<i32>,
    /// When the current run (start or resume) first had a Ready pod; unset while
    /// suspended or until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<Time>,
    /// Largest start-up latency observed over the Job's runs, seconds: from unsuspending
    /// the child Job to its first Ready pod. The deadline guard plans with at least this
    /// much margin (see the operator's `--deadline-margin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_seconds: Option<i64>,
    /// Start-up latency of the latest run, seconds (unsuspend to first Ready pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_startup_seconds: Option<i64>,
    /// Fingerprint of the `spec.template` the child Job was created from. A later edit of
    /// the template is not applied (a Job's pod template is immutable): the child keeps
    /// running the original, and the `TemplateCurrent` condition says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// When the Job first started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Job finished (Succeeded or Failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// True once the deadline was missed (counted once in `carbonshift_deadline_misses_total`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deadline_missed: bool,
}

/// The CEL rule's message when `expectedDuration + maxDelay` exceeds the cap.
pub const MAX_DELAY_SUM_MESSAGE: &str = "schedule.expectedDuration + schedule.maxDelay must be at most 8784h (366 days): the job must finish within 366 days of its creation";

/// Joins the wrapped lines of every description in `schema` and its subschemas into whole
/// sentences: schemars keeps a doc comment's line breaks, and `kubectl explain` would
/// print them mid-sentence. Paragraphs (blank lines) and list items (`- `, `* `) stay.
pub fn reflow_descriptions(schema: &mut Schema) {
    if let Some(serde_json::Value::String(d)) = schema.get_mut("description") {
        *d = reflow(d);
    }
    schemars::transform::transform_subschemas(&mut reflow_descriptions, schema);
}

/// The text of [`reflow_descriptions`].
pub fn reflow(text: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|para| {
            let mut out = String::new();
            for line in para.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if !out.is_empty() {
                    let item = line.starts_with("- ") || line.starts_with("* ");
                    out.push(if item { '\n' } else { ' ' });
                }
                out.push_str(line);
            }
            out
        })
        .filter(|p| !p.is_empty())
        .collect();
    paragraphs.join("\n\n")
}

/// The message of the cap on a schedule duration, shared by the CEL rule and
/// [`crate::controller::validate`] (which prefixes the field's path).
pub fn max_span_message(field: &str) -> String {
    format!(
        "{field} must be at most {MAX_SCHEDULE_SPAN_HOURS}h ({} days)",
        MAX_SCHEDULE_SPAN_HOURS / 24
    )
}

/// CEL rule capping the duration field `field` at [`MAX_SCHEDULE_SPAN_HOURS`]; like every
/// rule that calls `duration()`, it skips a string the pattern already refuses.
fn max_span_rule(field: &str) -> Rule {
    Rule::new(format!(
        "!self.matches('{DURATION_PATTERN}') || duration(self) <= duration('{MAX_SCHEDULE_SPAN_HOURS}h')"
    ))
    .message(max_span_message(field).as_str())
}

/// Schema of `spec.template.spec`: the real batch/v1 JobSpec schema with its pod template
/// replaced by a schemaless object (see the module docs for why).
fn job_spec_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<JobSpec>();
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert(
            "template".into(),
            json_schema!({
                "description": "The pod template (core/v1 PodTemplateSpec). Validated by the API server when carbonshift creates the child Job.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true
            })
            .into(),
        );
        // carbonshift owns suspension; document that instead of rejecting the field so
        // manifests copied from plain Jobs still apply.
        props.insert(
            "suspend".into(),
            json_schema!({
                "description": "Ignored: carbonshift manages spec.suspend of the child Job.",
                "type": "boolean"
            })
            .into(),
        );
    }
    schema
}

/// The CRD as YAML, exactly what `carbonshift crd` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&Crd::CarbonAwareJob.definition())
}

/// The CRD as pretty JSON.
pub fn crd_json() -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&Crd::CarbonAwareJob.definition())
}

/// The CustomResourceDefinitions carbonshift installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crd {
    CarbonAwareJob,
    /// The ledger of a Kueue Workload (`carbonshift run --kueue`).
    CarbonWindow,
    /// The defaults of a Kueue AdmissionCheck.
    CarbonWindowParameters,
}

impl Crd {
    pub const ALL: [Crd; 3] = [
        Crd::CarbonAwareJob,
        Crd::CarbonWindow,
        Crd::CarbonWindowParameters,
    ];

    pub fn definition(
        self,
    ) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition
    {
        use kube::CustomResourceExt;
        match self {
            Crd::CarbonAwareJob => CarbonAwareJob::crd(),
            Crd::CarbonWindow => window::CarbonWindow::crd(),
            Crd::CarbonWindowParameters => params::CarbonWindowParameters::crd(),
        }
    }

    /// Its file under `crds/` (and the chart's `files/crds/`).
    pub fn file_name(self) -> String {
        format!("{}.yaml", {
            let d = self.definition();
            format!("{}_{}", d.spec.group, d.spec.names.plural)
        })
    }
}

impl CarbonAwareJob {
    /// The status, or an empty one.
    pub fn status_or_default(&self) -> CarbonAwareJobStatus {
        self.status.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
