//! The parts of Kueue's objects (`kueue.x-k8s.io/v1beta2`) carbonshift reads, as typed
//! clients: only the fields it uses, so a newer Kueue's additions never break a watch.
//! Kueue installs and owns these CRDs; carbonshift never installs them from these types.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::{CheckState, WorkloadView, HELD_UNTIL};
use crate::accounting::PowerModel;
use crate::api::Power;
use crate::controller::validate::{gpus_of_pod, power_model, InvalidSpec};

/// A Workload's spec: its pod sets, and whether it is active.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kueue.x-k8s.io",
    version = "v1beta2",
    kind = "Workload",
    namespaced,
    status = "WorkloadStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    #[serde(default)]
    pub pod_sets: Vec<PodSet>,
    /// False while deactivated (unset is active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// One pod set: `count` pods of `template`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSet {
    pub name: String,
    #[serde(default)]
    pub count: i32,
    #[serde(default)]
    pub template: PodTemplateSpec,
}

/// A Workload's status, as far as the check needs it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub admission_checks: Vec<AdmissionCheckState>,
    /// MultiKueue: the worker cluster that admitted the Workload (set once dispatched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// MultiKueue: the worker clusters the dispatcher nominated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nominated_cluster_names: Vec<String>,
}

/// One entry of `status.admissionChecks`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionCheckState {
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// An AdmissionCheck's spec: which controller serves it, and its parameters.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kueue.x-k8s.io",
    version = "v1beta2",
    kind = "AdmissionCheck",
    status = "AdmissionCheckStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionCheckSpec {
    #[serde(default)]
    pub controller_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ParametersReference>,
}

/// `spec.parameters` of an AdmissionCheck.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParametersReference {
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// An AdmissionCheck's status: its conditions (carbonshift sets `Active`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionCheckStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A MultiKueueConfig: the worker clusters of the ClusterQueues whose MultiKueue
/// AdmissionCheck names it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kueue.x-k8s.io",
    version = "v1beta2",
    kind = "MultiKueueConfig"
)]
#[serde(rename_all = "camelCase")]
pub struct MultiKueueConfigSpec {
    #[serde(default)]
    pub clusters: Vec<String>,
}

/// A MultiKueueCluster: one worker cluster. carbonshift reads only its labels (the region)
/// and whether Kueue reaches it (`Active`); how Kueue connects is not read.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kueue.x-k8s.io",
    version = "v1beta2",
    kind = "MultiKueueCluster",
    status = "AdmissionCheckStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct MultiKueueClusterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_source: Option<serde_json::Value>,
}

/// Whether `conditions` has `type_` True.
pub fn has_condition(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn condition_true(status: &WorkloadStatus, type_: &str) -> bool {
    has_condition(&status.conditions, type_)
}

/// What the check needs to know of `wl`, for the AdmissionCheck named `check`.
pub fn view(wl: &Workload, check: &str) -> WorkloadView {
    let status = wl.status.clone().unwrap_or_default();
    let entry = status.admission_checks.iter().find(|c| c.name == check);
    let held = wl
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HELD_UNTIL))
        .map(|t| crate::timefmt::parse(t).ok());
    WorkloadView {
        quota_reserved: condition_true(&status, "QuotaReserved"),
        finished: condition_true(&status, "Finished"),
        active: wl.spec.active != Some(false),
        check: entry.and_then(|c| CheckState::parse(&c.state)),
        message: entry.map(|c| c.message.clone()).unwrap_or_default(),
        held,
    }
}

/// GPUs the Workload's pod sets request: each pod set's count times the GPUs of its pod.
pub fn gpus(wl: &Workload) -> Result<i64, InvalidSpec> {
    let mut total: i64 = 0;
    for ps in &wl.spec.pod_sets {
        let per_pod = ps.template.spec.as_ref().map_or(Ok(0), gpus_of_pod)?;
        total = total.saturating_add(per_pod.saturating_mul(i64::from(ps.count.max(0))));
    }
    Ok(total)
}

/// The Workload's power model: the parameters' `power` (named `name` in messages), else
/// the GPUs its pod sets request at the default wattage.
pub fn power(
    wl: &Workload,
    name: &str,
    power: Option<&Power>,
) -> Result<(PowerModel, String), InvalidSpec> {
    power_model(name, power, || gpus(wl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Workload as Kueue v0.17 writes it for a batch/v1 Job of 4 pods with 2 GPUs each
    /// and a 1-pod launcher without GPUs, quota reserved, the check Pending.
    fn workload() -> Workload {
        serde_json::from_value(json!({
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "Workload",
            "metadata": {"name": "job-train-1a2b3", "namespace": "ml"},
            "spec": {
                "active": true,
                "queueName": "gpu",
                "podSets": [
                    {"name": "main", "count": 4, "template": {"spec": {"containers": [
                        {"name": "t", "image": "x", "resources": {"requests": {"nvidia.com/gpu": "2", "cpu": "1"}}}
                    ]}}},
                    {"name": "launcher", "count": 1, "template": {"spec": {"containers": [
                        {"name": "l", "image": "x"}
                    ]}}}
                ]
            },
            "status": {
                "conditions": [
                    {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": "Quota reserved in ClusterQueue gpu", "lastTransitionTime": "2024-03-01T00:00:00Z"},
                    {"type": "Admitted", "status": "False", "reason": "NoReservation", "message": "", "lastTransitionTime": "2024-03-01T00:00:00Z"}
                ],
                "admissionChecks": [
                    {"name": "other-check", "state": "Ready", "message": "", "lastTransitionTime": "2024-03-01T00:00:00Z"},
                    {"name": "carbon-window", "state": "Pending", "message": "", "lastTransitionTime": "2024-03-01T00:00:00Z"}
                ],
                "admission": {"clusterQueue": "gpu"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_view_reads_quota_and_our_check_only() {
        let v = view(&workload(), "carbon-window");
        assert!(v.quota_reserved);
        assert!(!v.finished);
        assert_eq!(v.check, Some(CheckState::Pending));
        assert_eq!(view(&workload(), "absent").check, None);
        let mut wl = workload();
        wl.status = None;
        let v = view(&wl, "carbon-window");
        assert!(!v.quota_reserved);
        assert_eq!(v.check, None);
    }

    #[test]
    fn power_comes_from_the_gpus_of_the_pod_sets() {
        assert_eq!(gpus(&workload()).unwrap(), 8);
        let (model, text) = power(&workload(), "spec.power", None).unwrap();
        assert_eq!(text, "8 GPU x 400 W x PUE 1.2");
        assert!((model.kw() - 8.0 * 0.4 * 1.2).abs() < 1e-12);
        // The parameters' power model wins.
        let p = Power {
            watts: Some(1500.0),
            pue: Some(1.1),
            ..Power::default()
        };
        let (_, text) = power(&workload(), "spec.power", Some(&p)).unwrap();
        assert_eq!(text, "1500 W x PUE 1.1");
    }

    #[test]
    fn a_workload_without_gpus_says_where_to_give_its_power() {
        let mut wl = workload();
        wl.spec.pod_sets.remove(0);
        let e = power(&wl, "CarbonWindowParameters gpu-defaults spec.power", None).unwrap_err();
        assert_eq!(
            e.message,
            "cannot tell the job's power: the pod template requests no nvidia.com/gpu; set \
             CarbonWindowParameters gpu-defaults spec.power.watts (total watts of all pods) or \
             CarbonWindowParameters gpu-defaults spec.power.gpus"
        );
    }
}
