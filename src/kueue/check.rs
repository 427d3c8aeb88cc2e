//! PURE: what carbonshift does to one Workload, from what the planner wants and what
//! Kueue shows of the Workload.
//!
//! Kueue's check states (kueue.x-k8s.io/v1beta2 `AdmissionCheckState`):
//! - `Pending`: Kueue adds the check so when it reserves quota; the controller decides.
//! - `Ready`: the check passed; with quota reserved, Kueue admits the Workload and
//!   unsuspends its job.
//! - `Retry` and `Rejected`: not used (below).
//!
//! A workload that must not run now (waiting for its clean window, a planned pause, a
//! schedule that cannot be read) is **held**: carbonshift sets the Workload's
//! `spec.active` to false and records why and until when in the annotations
//! [`HELD_UNTIL`] and [`HELD_BECAUSE`]. Kueue evicts a deactivated Workload at once: it
//! releases the quota and suspends the job (deleting its pods). At the planned start or
//! resume (or once the planner wants it to run) carbonshift reactivates it, Kueue queues it
//! again, reserves quota, and the check decides again: `Ready` admits it.
//!
//! Why not `Retry` with `requeueAfterSeconds`, the state meant for "not now": Kueue
//! v0.17.0's workload reconciler waits for a future `requeueState.requeueAt` before it
//! looks at the checks, so a `Retry` with a delay keeps the quota, and keeps an admitted
//! workload running, until the delay is over (seen in `tests/e2e_kueue.rs`, read in
//! `pkg/controller/core/workload_controller.go`). A `Retry` without a delay evicts at once
//! but is requeued at once, so the quota would be reserved and released again every few
//! seconds. `Rejected` deactivates the Workload for good. Deactivation evicts at once and
//! keeps the Workload out of the queue for exactly as long as carbonshift says.
//!
//! carbonshift reactivates only Workloads it deactivated (those carrying [`HELD_UNTIL`]):
//! a Workload a user or Kueue deactivated stays so.

use chrono::{DateTime, Utc};

/// Annotation on a Workload carbonshift holds: until when (RFC 3339).
pub const HELD_UNTIL: &str = "carbonshift.io/held-until";
/// Annotation on a Workload carbonshift holds: why, in words.
pub const HELD_BECAUSE: &str = "carbonshift.io/held-because";

/// How long a Workload whose annotations or parameters are invalid is held before it is
/// looked at again, so a fix takes effect without any other action.
pub const INVALID_RETRY_SECS: i64 = 300;

/// The states of an AdmissionCheck on a Workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Pending,
    Ready,
    Retry,
    Rejected,
}

impl CheckState {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "Pending",
            CheckState::Ready => "Ready",
            CheckState::Retry => "Retry",
            CheckState::Rejected => "Rejected",
        }
    }

    /// The API's spelling read back; `None` for a state this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Pending" => CheckState::Pending,
            "Ready" => CheckState::Ready,
            "Retry" => CheckState::Retry,
            "Rejected" => CheckState::Rejected,
            _ => return None,
        })
    }
}

/// What Kueue shows of a Workload, as far as the decision needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    /// Condition `QuotaReserved` is True.
    pub quota_reserved: bool,
    /// Condition `Finished` is True.
    pub finished: bool,
    /// `spec.active` (unset is active).
    pub active: bool,
    /// Our check's entry in `status.admissionChecks`, if Kueue has added it.
    pub check: Option<CheckState>,
    /// Its message.
    pub message: String,
    /// [`HELD_UNTIL`], when carbonshift holds the Workload: the instant it wrote, or
    /// `None` inside when the annotation is there but unreadable (released at once).
    pub held: Option<Option<DateTime<Utc>>>,
}

/// What the planner wants for the workload now.
#[derive(Debug, Clone, PartialEq)]
pub enum Wanted {
    /// Run now (a clean window, the deadline guard, no work left by the estimate).
    Run { message: String },
    /// Do not run before `until` (the planned start or resume).
    Wait {
        until: DateTime<Utc>,
        message: String,
    },
    /// The schedule cannot be read: `message` says what to fix.
    Invalid { message: String },
}

/// What to do to the Workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the check `Ready` with `message`: Kueue admits the Workload.
    Admit { message: String },
    /// Deactivate the Workload until `until`, saying `message` ([`HELD_UNTIL`],
    /// [`HELD_BECAUSE`]): Kueue evicts it and releases its quota.
    Hold {
        until: DateTime<Utc>,
        message: String,
    },
    /// Reactivate the Workload carbonshift held: Kueue queues it again.
    Release,
    /// Keep the check `Pending`, saying `message`: the Workload keeps its quota and waits
    /// (a MultiKueue worker's copy, which carbonshift never deactivates).
    Wait { message: String },
}

/// The label Kueue's MultiKueue puts on the copy of a manager's Workload on a worker.
pub const MULTIKUEUE_ORIGIN_LABEL: &str = "kueue.x-k8s.io/multikueue-origin";

/// [`decide`] for a MultiKueue worker's copy of a Workload: never held by deactivation,
/// because the manager's MultiKueue would see the copy evicted and take the Workload back;
/// a copy that must wait keeps the check `Pending` (and the worker's quota) until its
/// start, and once admitted runs through (pauses are not carried out on copies).
pub fn decide_for_copy(view: &WorkloadView, wanted: &Wanted, now: DateTime<Utc>) -> Option<Action> {
    match decide(view, wanted, now)? {
        Action::Hold { message, .. } => (view.check != Some(CheckState::Ready)
            && view.message != message)
            .then_some(Action::Wait { message }),
        Action::Release => None,
        other => Some(other),
    }
}

/// The action `wanted` calls for on a Workload Kueue shows as `view`, at `now`; `None`
/// when nothing is to change.
pub fn decide(view: &WorkloadView, wanted: &Wanted, now: DateTime<Utc>) -> Option<Action> {
    if view.finished {
        return None;
    }
    if !view.active {
        // Held by carbonshift: released once it may run, or its hold is over.
        let until = view.held?;
        let over = until.is_none_or(|t| now >= t);
        return match wanted {
            Wanted::Run { .. } => Some(Action::Release),
            Wanted::Wait { until, .. } if now >= *until => Some(Action::Release),
            Wanted::Wait { .. } => None,
            Wanted::Invalid { .. } => over.then_some(Action::Release),
        };
    }
    match wanted {
        // Kueue adds the check when it reserves quota; only then can it pass.
        Wanted::Run { message } => (view.quota_reserved
            && view.check.is_some_and(|c| c != CheckState::Ready))
        .then(|| Action::Admit {
            message: message.clone(),
        }),
        // Held whether or not Kueue has reserved quota yet, so a waiting Workload takes
        // none from the queue.
        Wanted::Wait { until, message } if *until > now => Some(Action::Hold {
            until: *until,
            message: message.clone(),
        }),
        // The planned instant has come: the next reconcile sees the plan run.
        Wanted::Wait { .. } => None,
        Wanted::Invalid { message } => Some(Action::Hold {
            until: now + chrono::TimeDelta::seconds(INVALID_RETRY_SECS),
            message: message.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn now() -> DateTime<Utc> {
        crate::timefmt::parse("2024-03-01T00:00:00Z").unwrap()
    }

    fn view(quota_reserved: bool, check: Option<CheckState>) -> WorkloadView {
        WorkloadView {
            quota_reserved,
            finished: false,
            active: true,
            check,
            message: String::new(),
            held: None,
        }
    }

    fn held(until: Option<DateTime<Utc>>) -> WorkloadView {
        WorkloadView {
            quota_reserved: false,
            active: false,
            held: Some(until),
            ..view(false, Some(CheckState::Pending))
        }
    }

    fn run() -> Wanted {
        Wanted::Run {
            message: "clean window".into(),
        }
    }

    fn wait(secs: i64) -> Wanted {
        Wanted::Wait {
            until: now() + TimeDelta::seconds(secs),
            message: "waiting".into(),
        }
    }

    #[test]
    fn a_reserved_workload_in_a_clean_window_is_admitted_once() {
        let a = decide(&view(true, Some(CheckState::Pending)), &run(), now());
        assert_eq!(
            a,
            Some(Action::Admit {
                message: "clean window".into()
            })
        );
        assert_eq!(
            decide(&view(true, Some(CheckState::Ready)), &run(), now()),
            None
        );
    }

    #[test]
    fn a_wait_holds_the_workload_until_the_planned_start() {
        let hold = Action::Hold {
            until: now() + TimeDelta::seconds(5400),
            message: "waiting".into(),
        };
        // Reserved at creation, or admitted and running (a planned pause): held alike.
        for check in [CheckState::Pending, CheckState::Ready] {
            let a = decide(&view(true, Some(check)), &wait(5400), now());
            assert_eq!(a.as_ref(), Some(&hold));
        }
        // The instant itself: nothing (the plan runs at the next reconcile).
        assert_eq!(
            decide(&view(true, Some(CheckState::Pending)), &wait(0), now()),
            None
        );
    }

    #[test]
    fn a_held_workload_is_released_at_its_start_or_when_the_plan_runs() {
        let until = Some(now() + TimeDelta::seconds(600));
        assert_eq!(decide(&held(until), &wait(600), now()), None);
        assert_eq!(
            decide(&held(until), &wait(600), now() + TimeDelta::seconds(600)),
            Some(Action::Release)
        );
        // A replan that starts now: released at once.
        assert_eq!(decide(&held(until), &run(), now()), Some(Action::Release));
    }

    #[test]
    fn an_invalid_schedule_is_held_five_minutes_then_looked_at_again() {
        let bad = Wanted::Invalid {
            message: "carbonshift: annotation carbonshift.io/max-delay: ...".into(),
        };
        let a = decide(&view(true, Some(CheckState::Pending)), &bad, now()).unwrap();
        assert_eq!(
            a,
            Action::Hold {
                until: now() + TimeDelta::seconds(300),
                message: "carbonshift: annotation carbonshift.io/max-delay: ...".into(),
            }
        );
        let until = Some(now() + TimeDelta::seconds(300));
        assert_eq!(
            decide(&held(until), &bad, now() + TimeDelta::seconds(299)),
            None
        );
        assert_eq!(
            decide(&held(until), &bad, now() + TimeDelta::seconds(300)),
            Some(Action::Release)
        );
        // An unreadable hold annotation is over.
        assert_eq!(decide(&held(None), &bad, now()), Some(Action::Release));
    }

    #[test]
    fn admitted_only_with_quota_and_the_check_never_once_finished_or_deactivated_by_others() {
        // Not yet reserved: a wait is held all the same (it takes no quota from the
        // queue), a run waits for Kueue to reserve quota and add the check.
        assert_eq!(
            decide(&view(false, None), &wait(60), now()),
            Some(Action::Hold {
                until: now() + TimeDelta::seconds(60),
                message: "waiting".into()
            })
        );
        assert_eq!(
            decide(&view(false, Some(CheckState::Pending)), &run(), now()),
            None
        );
        assert_eq!(decide(&view(true, None), &run(), now()), None);
        let mut done = view(true, Some(CheckState::Ready));
        done.finished = true;
        assert_eq!(decide(&done, &wait(60), now()), None);
        // Deactivated by a user or by Kueue (no hold annotation): left alone.
        let mut theirs = held(None);
        theirs.held = None;
        assert_eq!(decide(&theirs, &run(), now()), None);
    }

    #[test]
    fn a_multikueue_copy_waits_pending_and_is_never_deactivated_or_paused() {
        let pending = view(true, Some(CheckState::Pending));
        // Wait: Pending with the reason, once (not again while it says so).
        let w = wait(120);
        let Some(Action::Wait { message }) = decide_for_copy(&pending, &w, now()) else {
            panic!("a waiting copy is kept Pending");
        };
        let noted = WorkloadView {
            message: message.clone(),
            ..pending.clone()
        };
        assert_eq!(decide_for_copy(&noted, &w, now()), None);
        // Run: admitted as any Workload.
        assert!(matches!(
            decide_for_copy(&pending, &run(), now()),
            Some(Action::Admit { .. })
        ));
        // Admitted, the plan pauses: it runs through.
        let admitted = view(true, Some(CheckState::Ready));
        assert_eq!(decide_for_copy(&admitted, &w, now()), None);
    }

    #[test]
    fn states_round_trip() {
        for s in [
            CheckState::Pending,
            CheckState::Ready,
            CheckState::Retry,
            CheckState::Rejected,
        ] {
            assert_eq!(CheckState::parse(s.as_str()), Some(s));
        }
        assert_eq!(CheckState::parse("Unknown"), None);
    }
}
