//! `CarbonWindow` (`carbonshift.io/v1alpha1`, namespaced): the ledger of one Kueue
//! Workload that waits for the grid's clean windows through a carbonshift AdmissionCheck.
//!
//! carbonshift creates one for each such Workload, with the Workload's name in its
//! namespace and the Workload as its owner (it goes when the Workload goes). Its spec is
//! what carbonshift made of the AdmissionCheck's parameters and the job object's
//! annotations; its status is a CarbonAwareJob's status, kept by the same reconcile step,
//! so `kubectl get carbonwindows` shows the same phase, plan and ledger, restart-safe in
//! the API server. Users never write it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{reflow_descriptions, CarbonAwareJobStatus, Power, Schedule};

/// The schedule and ledger of one Kueue Workload under a carbonshift AdmissionCheck.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "carbonshift.io",
    version = "v1alpha1",
    kind = "CarbonWindow",
    plural = "carbonwindows",
    shortname = "cw",
    category = "carbonshift",
    namespaced,
    status = "CarbonAwareJobStatus",
    derive = "PartialEq",
    doc = "The schedule and ledger carbonshift keeps for one Kueue Workload admitted through a carbonshift.io/carbon-window AdmissionCheck. Written by carbonshift only.",
    printcolumn(
        name = "Workload",
        type_ = "string",
        json_path = ".spec.workload",
        description = "The Kueue Workload"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".status.region",
        description = "Grid zone planned with"
    ),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextTransitionTime",
        description = "Next planned start/pause"
    ),
    printcolumn(
        name = "Runtime(s)",
        type_ = "integer",
        json_path = ".status.runtimeSeconds",
        description = "Seconds run with the pods Ready"
    ),
    printcolumn(
        name = "Avoided(g)",
        type_ = "number",
        json_path = ".status.avoidedGrams",
        description = "Emissions avoided so far versus running at once (gCO2eq)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct CarbonWindowSpec {
    /// The Workload's name (the object's name too).
    pub workload: String,
    /// The AdmissionCheck whose state carbonshift sets on the Workload.
    pub admission_check: String,
    /// The job object the Workload stands for, as `Kind/name` (e.g. `Job/train`): its
    /// annotations override the parameters.
    pub job: String,
    /// When the job object was created: the deadline counts from it.
    pub created: Time,
    /// Pods of all the Workload's pod sets, the size whose Ready share accrues runtime.
    pub pods: i32,
    /// The schedule: the parameters' defaults with the annotations over them.
    pub schedule: Schedule,
    /// Grid zone, from `carbonshift.io/region` or the parameters; unset: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Power model: the parameters' `power`, with the GPUs the pod sets request.
    pub power: Power,
}
