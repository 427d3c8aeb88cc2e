//! `CarbonWindowParameters` (`carbonshift.io/v1alpha1`, cluster-scoped): the defaults of a
//! Kueue AdmissionCheck whose `controllerName` is `carbonshift.io/carbon-window`, for every
//! workload of the ClusterQueues that use that check.
//!
//! An AdmissionCheck names one of these in `spec.parameters` (`apiGroup: carbonshift.io`,
//! `kind: CarbonWindowParameters`). A workload overrides each field with an annotation on
//! its job object (see `crate::kueue::annotations`); what neither gives takes the
//! CarbonAwareJob's default (strategy FlexibleStart, no constraints). The fields mean what
//! the same fields of a CarbonAwareJob's `spec.schedule` mean, with the same grammar and
//! caps, so a queue's defaults and a CarbonAwareJob plan alike.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{max_span_rule, reflow_descriptions, Power, StrategyName, DURATION_PATTERN};

/// Defaults for the workloads admitted through a carbonshift AdmissionCheck.
// clippy reads the repeated `type_ = "string"` of the print columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "carbonshift.io",
    version = "v1alpha1",
    kind = "CarbonWindowParameters",
    plural = "carbonwindowparameters",
    category = "carbonshift",
    derive = "PartialEq",
    derive = "Default",
    validation = Rule::new("!has(self.spec.strategy) || self.spec.strategy != 'Threshold' || has(self.spec.thresholdGramsPerKWh)").message("strategy Threshold needs spec.thresholdGramsPerKWh"),
    doc = "Defaults of a carbonshift.io/carbon-window Kueue AdmissionCheck: how the workloads of its queues are scheduled around the grid's carbon intensity.",
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".spec.strategy",
        description = "Default strategy"
    ),
    printcolumn(
        name = "MaxDelay",
        type_ = "string",
        json_path = ".spec.maxDelay",
        description = "Default delay allowed beyond running at once"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".spec.region",
        description = "Grid zone, when set"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct CarbonWindowParametersSpec {
    /// Default scheduling policy: RunNow, FlexibleStart (when unset), PauseAndResume or
    /// Threshold. Annotation `carbonshift.io/strategy` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyName>,
    /// Default delay a workload may take beyond running at once, e.g. `24h`: its deadline
    /// is its job object's creation plus its expected duration plus this. Annotation
    /// `carbonshift.io/max-delay` (or `carbonshift.io/deadline`) overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = max_span_rule("maxDelay"))]
    pub max_delay: Option<String>,
    /// Default runtime a workload needs, e.g. `6h`. Annotation
    /// `carbonshift.io/expected-duration` overrides it; a workload with neither is refused
    /// with a message naming both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = max_span_rule("expectedDuration"))]
    pub expected_duration: Option<String>,
    /// Once admitted or readmitted, run at least this long before a planned pause.
    /// Annotation `carbonshift.io/min-run-duration` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = max_span_rule("minRunDuration"))]
    pub min_run_duration: Option<String>,
    /// Once evicted for a pause, stay out at least this long. Annotation
    /// `carbonshift.io/min-pause-duration` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(min = 2, max = 32))]
    #[x_kube(validation = max_span_rule("minPauseDuration"))]
    pub min_pause_duration: Option<String>,
    /// At most this many planned pauses over a workload's life (unset: unlimited).
    /// Annotation `carbonshift.io/max-pauses` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pauses: Option<i32>,
    /// Extra runtime each pause costs (checkpoint, restore, warm-up), e.g. `5m`.
    /// Annotation `carbonshift.io/checkpoint-overhead` overrides it.
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
    /// Grid zone or cloud region of the queue's nodes (default: the operator's region).
    /// Annotation `carbonshift.io/region` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Power model (default: the GPUs the Workload's pod sets request, at 400 W each and
    /// PUE 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<Power>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_is_cluster_scoped_and_checks_every_duration() {
        let crd = CarbonWindowParameters::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("carbonwindowparameters.carbonshift.io")
        );
        assert_eq!(crd.spec.scope, "Cluster");
        let json = serde_json::to_value(&crd).unwrap();
        let props = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        for field in [
            "maxDelay",
            "expectedDuration",
            "minRunDuration",
            "minPauseDuration",
            "checkpointOverhead",
        ] {
            assert_eq!(props[field]["pattern"], DURATION_PATTERN, "{field}");
            let rules = props[field]["x-kubernetes-validations"].as_array().unwrap();
            assert_eq!(rules.len(), 1, "{field}");
            assert!(
                rules[0]["rule"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("!self.matches('{DURATION_PATTERN}')")),
                "{field}"
            );
        }
        assert_eq!(props["maxPauses"]["minimum"].as_f64(), Some(0.0));
        let root = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            root["x-kubernetes-validations"][0]["message"],
            "strategy Threshold needs spec.thresholdGramsPerKWh"
        );
        // A spec with nothing set is valid: every field has a default or is optional.
        let empty: CarbonWindowParametersSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, CarbonWindowParametersSpec::default());
    }
}
