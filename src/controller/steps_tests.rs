//! Each step of the build pipeline on its own.

use chrono::TimeDelta;
use serde_json::json;

use super::*;
use crate::controller::fixtures::*;
use crate::plan::Interval;

fn spec(c: &CarbonAwareJob) -> ValidSpec {
    validate(c, now()).unwrap()
}

fn obs<'a>(
    c: &'a CarbonAwareJob,
    child: Option<&'a Job>,
    i: Result<&'a Intensities, &'a str>,
) -> Observed<'a> {
    Observed {
        caj: c,
        child,
        region: Ok("DE"),
        intensities: i,
        now: now(),
        persist_every: TimeDelta::minutes(5),
        deadline_margin: TimeDelta::minutes(2),
        kueue: false,
    }
}

fn decision(
    action: Action,
    reason: Reason,
    next: Option<DateTime<Utc>>,
    was_running: bool,
) -> Decision {
    Decision {
        plan: Plan {
            action,
            reason,
            next_transition: next,
            intervals: vec![Interval {
                start: at(30),
                end: at(150),
            }],
            expected_grams_per_kw: 0.0,
        },
        planned: true,
        remaining: 7200,
        plan_deadline: at(600),
        was_running,
        series: None,
    }
}

#[test]
fn admit_refuses_a_foreign_child_a_kueue_job_and_an_unknown_region() {
    let c = caj("PauseAndResume", "2h", json!({}));
    let mut st = CarbonAwareJobStatus::default();
    let (v, region) = admit(&obs(&c, None, Err("x")), &mut st, now()).unwrap();
    assert_eq!((region, v.expected_secs), ("DE", 7200));
    assert_eq!(
        st.deadline,
        Some(time::to_time(at(-10) + TimeDelta::hours(24)))
    );
    let mut foreign = child(&c, true, None);
    foreign.metadata.owner_references = None;
    let r = admit(&obs(&c, Some(&foreign), Err("x")), &mut st, now()).unwrap_err();
    assert_eq!(r.status.phase, Some(Phase::Pending));
    assert!(r
        .status
        .conditions
        .iter()
        .any(|c| c.reason == "JobConflict"));
    let mut o = obs(&c, None, Err("x"));
    o.region = Err("no such zone");
    let r = admit(&o, &mut st, now()).unwrap_err();
    assert!(r
        .status
        .conditions
        .iter()
        .any(|c| c.reason == "RegionUnknown"));
}

#[test]
fn transition_starts_resumes_and_pauses_with_one_event_each() {
    let c = caj("PauseAndResume", "2h", json!({}));
    let v = spec(&c);
    let mut st = CarbonAwareJobStatus::default();
    let mut events = Vec::new();
    let d = decision(Action::Run, Reason::CleanWindow, Some(at(60)), false);
    assert_eq!(
        transition(&mut st, &d, &v, now(), &mut events),
        Some(Transition::Start)
    );
    assert_eq!(
        (st.start_time.clone(), st.ready_pods),
        (Some(time::to_time(now())), Some(0))
    );
    // Already running: nothing.
    let d = decision(Action::Run, Reason::CleanWindow, None, true);
    assert_eq!(transition(&mut st, &d, &v, now(), &mut events), None);
    let d = decision(
        Action::Pause,
        Reason::WaitingForCleanerWindow,
        Some(at(90)),
        true,
    );
    assert_eq!(
        transition(&mut st, &d, &v, at(60), &mut events),
        Some(Transition::Pause)
    );
    assert_eq!((st.pauses, st.running_since.clone()), (1, None));
    let d = decision(Action::Run, Reason::DeadlineGuard, None, false);
    assert_eq!(
        transition(&mut st, &d, &v, at(90), &mut events),
        Some(Transition::Resume)
    );
    let reasons: Vec<_> = events.iter().map(|n| (n.reason, n.warning)).collect();
    assert_eq!(
        reasons,
        [
            ("Started", false),
            ("Paused", false),
            ("DeadlineGuard", true)
        ]
    );
    assert!(
        events[1].message.contains("resuming at"),
        "{}",
        events[1].message
    );
}

#[test]
fn deadline_events_fire_once() {
    let c = caj("PauseAndResume", "2h", json!({}));
    let v = spec(&c);
    let mut st = CarbonAwareJobStatus::default();
    let mut events = Vec::new();
    let d = decision(Action::Run, Reason::DeadlineInfeasible, None, false);
    assert!(deadline_events(&mut st, &d, &v, now(), &mut events));
    assert!(!deadline_events(&mut st, &d, &v, now(), &mut events));
    assert_eq!(events.len(), 1);
    assert!(events[0].message.contains("running it now"));
    let mut fresh = CarbonAwareJobStatus::default();
    let d = decision(Action::Run, Reason::CleanWindow, None, true);
    assert!(!deadline_events(&mut fresh, &d, &v, now(), &mut events));
    assert!(deadline_events(
        &mut fresh,
        &d,
        &v,
        v.deadline + TimeDelta::seconds(1),
        &mut events
    ));
}

#[test]
fn schedule_sets_the_phase_and_what_comes_next() {
    let mut st = CarbonAwareJobStatus::default();
    schedule(
        &mut st,
        &decision(
            Action::Pause,
            Reason::WaitingForCleanerWindow,
            Some(at(30)),
            false,
        ),
    );
    assert_eq!(st.phase, Some(Phase::Waiting));
    assert_eq!(st.next_action.as_deref(), Some("Run"));
    assert_eq!(st.planned_start, Some(time::to_time(at(30))));
    assert_eq!(st.planned_end, Some(time::to_time(at(150))));
    st.start_time = Some(time::to_time(at(-5)));
    schedule(
        &mut st,
        &decision(Action::Pause, Reason::WaitingForCleanerWindow, None, true),
    );
    assert_eq!(
        (st.phase, st.next_action.clone()),
        (Some(Phase::Paused), None)
    );
    assert_eq!(st.planned_start, Some(time::to_time(at(-5))));
    schedule(
        &mut st,
        &decision(Action::Run, Reason::CleanWindow, Some(at(40)), false),
    );
    assert_eq!(
        (st.phase, st.next_action.as_deref()),
        (Some(Phase::Running), Some("Pause"))
    );
}

#[test]
fn child_diff_creates_once_and_patches_only_a_differing_suspend() {
    let c = caj("PauseAndResume", "2h", json!({}));
    let v = spec(&c);
    let (job, suspend) = child_diff(&obs(&c, None, Err("x")), &v, false);
    assert_eq!(job.and_then(|j| j.spec?.suspend), Some(true));
    assert_eq!(suspend, None);
    let suspended = child(&c, true, None);
    assert_eq!(
        child_diff(&obs(&c, Some(&suspended), Err("x")), &v, true),
        (None, Some(false))
    );
    assert_eq!(
        child_diff(&obs(&c, Some(&suspended), Err("x")), &v, false),
        (None, None)
    );
    let mut going = child(&c, true, None);
    going.metadata.deletion_timestamp = Some(time::to_time(now()));
    assert_eq!(
        child_diff(&obs(&c, Some(&going), Err("x")), &v, true),
        (None, None)
    );
}

#[test]
fn persist_and_requeue_bound_the_next_look() {
    let c = caj("PauseAndResume", "2h", json!({}));
    let running = CarbonAwareJobStatus {
        last_accounted_time: Some(time::to_time(now() - TimeDelta::minutes(1))),
        running_since: Some(time::to_time(now() - TimeDelta::minutes(30))),
        ..CarbonAwareJobStatus::default()
    };
    let feed = Intensities::live(series(100.0, &[100.0]), "static".into());
    let o = obs(&c, None, Ok(&feed));
    // Running, nothing changed, persisted a minute ago: no write, back at the next persist
    // (4 min) or the planned transition, whichever is first.
    let d = decision(Action::Run, Reason::CleanWindow, Some(at(3)), false);
    assert_eq!(
        persist_and_requeue(&o, &running, &running, None, &d, now()),
        (false, TimeDelta::minutes(3))
    );
    let d = decision(Action::Run, Reason::CleanWindow, None, false);
    assert_eq!(
        persist_and_requeue(&o, &running, &running, None, &d, now()),
        (false, TimeDelta::minutes(4))
    );
    // Running with its pods not yet Ready: the end it projects moves with the clock, and
    // that alone is not worth a write (it goes with the accrual).
    let sliding = CarbonAwareJobStatus {
        planned_end: Some(time::to_time(at(121))),
        ..running.clone()
    };
    let slid = CarbonAwareJobStatus {
        planned_end: Some(time::to_time(at(120))),
        ..running.clone()
    };
    assert_eq!(
        persist_and_requeue(&o, &slid, &sliding, None, &d, now()),
        (false, TimeDelta::minutes(4))
    );
    // A waiting job's planned times are its plan: a change is written.
    let planned = |m: i64| CarbonAwareJobStatus {
        planned_start: Some(time::to_time(at(m))),
        planned_end: Some(time::to_time(at(m + 120))),
        ..CarbonAwareJobStatus::default()
    };
    assert!(persist_and_requeue(&o, &planned(60), &planned(90), None, &d, now()).0);
    // Running and persisted 5 minutes ago: the accrual is due.
    let due = CarbonAwareJobStatus {
        last_accounted_time: Some(time::to_time(now() - TimeDelta::minutes(5))),
        ..running.clone()
    };
    assert_eq!(
        persist_and_requeue(&o, &due, &due, None, &d, now()),
        (true, TimeDelta::minutes(5))
    );
    // Waiting, last written 3 hours ago: nothing accrued, no write; a full interval on.
    let waiting = CarbonAwareJobStatus {
        last_accounted_time: Some(time::to_time(now() - TimeDelta::hours(3))),
        ..CarbonAwareJobStatus::default()
    };
    let d = decision(Action::Pause, Reason::WaitingForCleanerWindow, None, false);
    assert_eq!(
        persist_and_requeue(&o, &waiting, &waiting, None, &d, now()),
        (false, TimeDelta::minutes(5))
    );
    // ... unless grams it owed were settled.
    let owed = CarbonAwareJobStatus {
        unaccounted: vec![crate::accounting::Owed {
            to: crate::accounting::OwedTo::Baseline,
            start: at(-200),
            end: at(-190),
            share: 1.0,
        }],
        ..waiting.clone()
    };
    assert!(persist_and_requeue(&o, &owed, &waiting, None, &d, now()).0);
    // A transition writes, and the next persist is a full interval away.
    let t = Some(Transition::Start);
    assert_eq!(
        persist_and_requeue(&o, &waiting, &waiting, t, &d, now()),
        (true, TimeDelta::minutes(5))
    );
    // Without intensities: within a minute.
    let blind = obs(&c, None, Err("down"));
    assert_eq!(
        persist_and_requeue(&blind, &waiting, &waiting, None, &d, now()).1,
        TimeDelta::minutes(1)
    );
}
