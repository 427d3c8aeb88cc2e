//! Kueue integration: carbonshift as the controller of a Kueue AdmissionCheck
//! (`controllerName: carbonshift.io/carbon-window`), so that any workload Kueue manages
//! (Jobs, JobSets, training jobs) waits for, and pauses around, the grid's clean windows
//! through Kueue's own admission states instead of a `spec.suspend` carbonshift would
//! fight Kueue for.
//!
//! The parts: [`annotations`] (pure) turns an AdmissionCheck's
//! [`crate::api::params::CarbonWindowParameters`] and the annotations of a workload's job
//! object into the schedule the planner takes, validated as a CarbonAwareJob's is;
//! [`adapt`] (pure) runs a Workload through the CarbonAwareJob's own reconcile step;
//! [`check`] (pure) turns what the planner wants into an action on the Workload (the check
//! `Ready`, or a hold by deactivation); [`workload`] types the Kueue fields read;
//! [`controller`] (I/O) is the AdmissionCheck and Workload controller of `run --kueue`;
//! [`steer`] (I/O) carries a CarbonAwareJob's own plan onto the Workload of its Job when
//! the template is for a Kueue queue. docs/kueue.md is the user's guide.
//!
//! Across clusters: [`dispatch`] (pure) picks the MultiKueue worker cluster whose region
//! gives a Workload the least emissions, and [`dispatcher`] (I/O) is the external
//! MultiKueue dispatcher of `run --multikueue-dispatcher` (docs/multicluster.md).

pub mod adapt;
pub mod annotations;
pub mod check;
pub mod controller;
pub mod dispatch;
pub mod dispatcher;
pub mod steer;
pub mod workload;

/// The `spec.controllerName` of the AdmissionChecks carbonshift serves.
pub const CONTROLLER_NAME: &str = "carbonshift.io/carbon-window";
