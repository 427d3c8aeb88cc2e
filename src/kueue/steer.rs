//! I/O: a CarbonAwareJob whose Job is for a Kueue queue, steered through that Job's
//! Workload (`run --kueue` only).
//!
//! Kueue owns such a Job's `spec.suspend`, so carbonshift never writes it
//! ([`crate::controller::build::kueue_queue`]). The CarbonAwareJob's own plan reaches the
//! Job the way a carbon-window AdmissionCheck's does ([`super::check`]): while the plan
//! waits or pauses, the Workload is held (deactivated until the planned instant, which
//! makes Kueue evict it and release its quota); when the plan runs it is released, and
//! Kueue admits it once its ClusterQueue has the quota. The ledger stays the
//! CarbonAwareJob's status, accrued from the Job's Ready pods as for any CarbonAwareJob.
//!
//! If the ClusterQueue also uses a carbon-window AdmissionCheck, that check defers to this
//! plan: the Workload controller sets it `Ready` as soon as Kueue reserves quota (it is
//! only reserved once this released the Workload), and keeps no CarbonWindow for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::adapt::wanted;
use super::check::{decide, Action};
use super::workload::{view, Workload};
use crate::api::CarbonAwareJob;
use crate::controller::build::{kueue_queue, Outcome};
use crate::controller::{Context, Error};

/// The label Kueue puts on a job object's Workload: the job object's uid.
pub const JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";

/// How soon to look again for a Workload Kueue has not created yet (its creation does not
/// touch the Job, so no watch event of ours would say so).
pub const NO_WORKLOAD_YET: Duration = Duration::from_secs(2);

/// Holds or releases the Workload of `child` as `out` (the reconcile step's outcome)
/// wants. Returns when to look again, if sooner than the step's own requeue is needed.
pub async fn steer(
    ctx: &Context,
    caj: &CarbonAwareJob,
    child: &Job,
    out: &Outcome,
    now: DateTime<Utc>,
) -> Result<Option<Duration>, Error> {
    if !ctx.kueue || kueue_queue(caj, Some(child)).is_none() {
        return Ok(None);
    }
    let Some(want) = wanted(out, now) else {
        return Ok(None);
    };
    let (Some(ns), Some(uid)) = (child.namespace(), child.uid()) else {
        return Ok(None);
    };
    let api: Api<Workload> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("{JOB_UID_LABEL}={uid}"));
    let found = api.list(&lp).await?;
    let Some(wl) = found.items.first() else {
        tracing::debug!(namespace = %ns, job = %child.name_any(), "no Workload yet");
        return Ok(Some(NO_WORKLOAD_YET));
    };
    // No check name: carbonshift's own check, if the ClusterQueue has one, is set by the
    // Workload controller; here only the hold.
    match decide(&view(wl, ""), &want, now) {
        Some(d @ (Action::Hold { .. } | Action::Release)) => {
            super::controller::act(ctx, wl, "", &d, now).await?;
        }
        Some(Action::Admit { .. } | Action::Wait { .. }) | None => {}
    }
    Ok(None)
}
