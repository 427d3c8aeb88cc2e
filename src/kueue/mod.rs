//! Kueue integration: carbonshift as the controller of a Kueue AdmissionCheck
//! (`controllerName: carbonshift.io/carbon-window`), so that any workload Kueue manages
//! (Jobs, JobSets, training jobs) waits for, and pauses around, the grid's clean windows
//! through Kueue's own admission states instead of a `spec.suspend` carbonshift would
//! fight Kueue for.
//!
//! What is here so far is the pure part: [`annotations`] turns an AdmissionCheck's
//! [`crate::api::params::CarbonWindowParameters`] and the annotations of a workload's job
//! object into the schedule the planner takes, validated as a CarbonAwareJob's is, and
//! [`check`] turns what the planner wants into the check's state on the Workload.

pub mod adapt;
pub mod annotations;
pub mod check;
pub mod controller;
pub mod workload;

/// The `spec.controllerName` of the AdmissionChecks carbonshift serves.
pub const CONTROLLER_NAME: &str = "carbonshift.io/carbon-window";
