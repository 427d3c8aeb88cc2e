//! PURE: the state carbonshift gives its AdmissionCheck on one Workload, from what the
//! planner wants and what Kueue shows of the Workload.
//!
//! Kueue's states (kueue.x-k8s.io/v1beta2 `AdmissionCheckState`):
//! - `Pending`: Kueue adds the check so when it reserves quota; the controller decides.
//! - `Ready`: the check passed; with quota reserved, Kueue admits the Workload and
//!   unsuspends its job.
//! - `Retry`: not now. Kueue releases the quota (evicting the Workload, and suspending its
//!   job, if it was admitted) and requeues it once `lastTransitionTime +
//!   requeueAfterSeconds` has passed; the check is `Pending` again at the next reservation.
//! - `Rejected`: never; Kueue deactivates the Workload. carbonshift does not use it: a bad
//!   annotation is retried (see [`INVALID_RETRY_SECS`]), so fixing it is enough.
//!
//! So a workload waiting for a clean window holds no quota: `Retry` until the planned
//! start; `Ready` admits it. A planned pause is `Retry` on the admitted Workload until the
//! planned resume. carbonshift changes nothing while the Workload holds no quota: Kueue
//! brings it back at the requeue time, and the check is decided again then. (A replan that
//! moves a start earlier than the requeue time waits for the requeue.)

use chrono::{DateTime, Utc};

/// How soon Kueue retries a Workload whose annotations or parameters are invalid, so a fix
/// takes effect without any other action.
pub const INVALID_RETRY_SECS: i32 = 300;

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

/// What Kueue shows of a Workload, as far as the check needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    /// Condition `QuotaReserved` is True.
    pub quota_reserved: bool,
    /// Condition `Finished` is True.
    pub finished: bool,
    /// Our check's entry in `status.admissionChecks`, if Kueue has added it.
    pub check: Option<CheckState>,
    /// Its message.
    pub message: String,
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
    /// The schedule cannot be read: say what to fix, and look again later.
    Invalid { message: String },
}

/// The check's new entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckUpdate {
    pub state: CheckState,
    pub message: String,
    /// With `Retry`: how long Kueue waits before it requeues the Workload.
    pub requeue_after_secs: Option<i32>,
}

/// Seconds from `now` to `until`, at least 1 (Kueue retries at once on 0) and at most
/// what the field holds. Kueue requeues at `lastTransitionTime + requeueAfterSeconds`, and
/// `lastTransitionTime` is written in whole seconds (`now` truncated), so the seconds are
/// counted from there and rounded up: never a requeue before `until`.
fn requeue_after(now: DateTime<Utc>, until: DateTime<Utc>) -> i32 {
    let millis = until
        .timestamp_millis()
        .saturating_sub(now.timestamp().saturating_mul(1000));
    let secs = millis.saturating_add(999).div_euclid(1000).max(1);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// The update to write, or `None` when the check already says it (or there is nothing to
/// decide: a finished Workload, one whose check Kueue has not added, or one holding no
/// quota, which Kueue brings back at its requeue time).
pub fn update(view: &WorkloadView, wanted: &Wanted, now: DateTime<Utc>) -> Option<CheckUpdate> {
    if view.finished || !view.quota_reserved {
        return None;
    }
    let current = view.check?;
    let next = match wanted {
        Wanted::Run { message } => CheckUpdate {
            state: CheckState::Ready,
            message: message.clone(),
            requeue_after_secs: None,
        },
        Wanted::Wait { until, message } => CheckUpdate {
            state: CheckState::Retry,
            message: message.clone(),
            requeue_after_secs: Some(requeue_after(now, *until)),
        },
        Wanted::Invalid { message } => CheckUpdate {
            state: CheckState::Retry,
            message: message.clone(),
            requeue_after_secs: Some(INVALID_RETRY_SECS),
        },
    };
    // A Ready check stays Ready while the job runs; a message alone is not worth a write.
    if current == next.state && (current == CheckState::Ready || view.message == next.message) {
        return None;
    }
    Some(next)
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
            check,
            message: String::new(),
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
    fn a_reserved_workload_in_a_clean_window_is_admitted() {
        let u = update(&view(true, Some(CheckState::Pending)), &run(), now()).unwrap();
        assert_eq!(u.state, CheckState::Ready);
        assert_eq!(u.requeue_after_secs, None);
        // Already Ready: nothing to write, whatever the message.
        assert_eq!(
            update(&view(true, Some(CheckState::Ready)), &run(), now()),
            None
        );
    }

    #[test]
    fn a_wait_releases_the_quota_until_the_planned_start() {
        let u = update(&view(true, Some(CheckState::Pending)), &wait(5400), now()).unwrap();
        assert_eq!(u.state, CheckState::Retry);
        assert_eq!(u.requeue_after_secs, Some(5400));
        // A planned pause of an admitted (Ready) workload evicts it the same way.
        let u = update(&view(true, Some(CheckState::Ready)), &wait(600), now()).unwrap();
        assert_eq!(
            (u.state, u.requeue_after_secs),
            (CheckState::Retry, Some(600))
        );
    }

    #[test]
    fn requeue_is_never_before_until_from_the_whole_second_written() {
        let at = |s: &str| crate::timefmt::parse(s).unwrap();
        let pending = view(true, Some(CheckState::Pending));
        let wait_until = |until: &str| Wanted::Wait {
            until: at(until),
            message: "waiting".into(),
        };
        // lastTransitionTime is written as 00:00:00 for a now of 00:00:00.700.
        let now = at("2024-03-01T00:00:00.700Z");
        let secs = |until: &str| {
            update(&pending, &wait_until(until), now)
                .unwrap()
                .requeue_after_secs
        };
        assert_eq!(secs("2024-03-01T00:04:00Z"), Some(240));
        assert_eq!(secs("2024-03-01T00:04:00.300Z"), Some(241));
        assert_eq!(secs("2024-03-01T00:00:00.900Z"), Some(1));
    }

    #[test]
    fn requeue_is_at_least_a_second_and_fits_the_field() {
        let past = update(&view(true, Some(CheckState::Pending)), &wait(-30), now()).unwrap();
        assert_eq!(past.requeue_after_secs, Some(1));
        let far = update(
            &view(true, Some(CheckState::Pending)),
            &wait(i64::from(i32::MAX) + 10),
            now(),
        )
        .unwrap();
        assert_eq!(far.requeue_after_secs, Some(i32::MAX));
    }

    #[test]
    fn nothing_is_decided_without_quota_a_check_or_once_finished() {
        assert_eq!(
            update(&view(false, Some(CheckState::Retry)), &run(), now()),
            None
        );
        assert_eq!(update(&view(true, None), &run(), now()), None);
        let mut done = view(true, Some(CheckState::Ready));
        done.finished = true;
        assert_eq!(update(&done, &wait(60), now()), None);
    }

    #[test]
    fn an_invalid_schedule_is_retried_with_the_fix_in_the_message() {
        let bad = Wanted::Invalid {
            message: "annotation carbonshift.io/max-delay: ...".into(),
        };
        let u = update(&view(true, Some(CheckState::Pending)), &bad, now()).unwrap();
        assert_eq!(u.state, CheckState::Retry);
        assert_eq!(u.requeue_after_secs, Some(INVALID_RETRY_SECS));
        assert_eq!(u.message, "annotation carbonshift.io/max-delay: ...");
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
