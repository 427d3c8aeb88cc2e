//! Unit and property tests of the planner: exactness against brute force, the deadline
//! guard under adversarial receding-horizon replanning, and the savings ordering.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::oracle::{brute_force, brute_force_window, SmallInstance};
use super::Strategy;
use super::*;
use crate::series::Series;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn hours(h: i64) -> DateTime<Utc> {
    t0() + TimeDelta::hours(h)
}

fn req<'a>(
    f: &'a Series,
    now: DateTime<Utc>,
    rem_h: i64,
    deadline: DateTime<Utc>,
    s: Strategy,
) -> PlanRequest<'a> {
    PlanRequest {
        now,
        remaining_secs: rem_h * 3600,
        deadline,
        strategy: s,
        constraints: Constraints::default(),
        state: JobState::NotStarted,
        pauses_so_far: 0,
        forecast: f,
    }
}

fn hourly(vals: &[f64]) -> Series {
    Series::new(t0(), 3600, vals.to_vec()).unwrap()
}

fn total_secs(p: &Plan) -> i64 {
    p.intervals
        .iter()
        .map(|i| (i.end - i.start).num_seconds())
        .sum()
}

#[test]
fn degenerate_inputs_never_panic() {
    let f = hourly(&[100.0, 50.0, 10.0]);
    let done = decide(&PlanRequest {
        remaining_secs: 0,
        ..req(&f, t0(), 1, hours(3), Strategy::PauseResume)
    });
    assert_eq!(
        (done.action, done.reason, done.intervals.len()),
        (Action::Run, Reason::Done, 0)
    );
    let neg = decide(&PlanRequest {
        remaining_secs: -5,
        ..req(&f, t0(), 1, hours(3), Strategy::FlexibleStart)
    });
    assert_eq!(neg.reason, Reason::Done);
    let late = decide(&req(&f, hours(5), 1, hours(2), Strategy::PauseResume));
    assert_eq!(
        (late.action, late.reason, late.next_transition),
        (Action::Run, Reason::DeadlineInfeasible, None)
    );
    let tight = decide(&req(
        &f,
        t0(),
        4,
        hours(3),
        Strategy::Threshold {
            max_gco2_per_kwh: 1.0,
        },
    ));
    assert_eq!(tight.reason, Reason::DeadlineInfeasible);
    // Forecast entirely in the past or future: planned at its mean, still a valid plan.
    for now in [hours(-30), hours(30)] {
        for s in [
            Strategy::PauseResume,
            Strategy::FlexibleStart,
            Strategy::Threshold {
                max_gco2_per_kwh: 40.0,
            },
        ] {
            let p = decide(&req(&f, now, 2, now + TimeDelta::hours(5), s));
            assert_eq!(total_secs(&p), 7200, "{s:?}");
            assert!(p.intervals.last().unwrap().end <= now + TimeDelta::hours(5));
        }
    }
    // Absurd magnitudes.
    let huge = decide(&PlanRequest {
        remaining_secs: i64::MAX,
        ..req(&f, t0(), 1, hours(3), Strategy::PauseResume)
    });
    assert_eq!(huge.reason, Reason::DeadlineInfeasible);
    let far = decide(&req(
        &f,
        t0(),
        2,
        DateTime::<Utc>::MAX_UTC,
        Strategy::PauseResume,
    ));
    assert_eq!(total_secs(&far), 7200);
    let weird = Constraints {
        min_run_secs: -5,
        min_pause_secs: i64::MAX,
        max_pauses: Some(0),
        checkpoint_overhead_secs: i64::MIN,
    };
    for s in [
        Strategy::PauseResume,
        Strategy::Threshold {
            max_gco2_per_kwh: f64::NAN,
        },
    ] {
        let p = decide(&PlanRequest {
            constraints: weird,
            state: JobState::Running { since: hours(100) },
            ..req(&f, t0(), 1, hours(3), s)
        });
        assert_eq!(p.action, Action::Run);
    }
}

#[test]
fn strategies_on_a_simple_day() {
    // Cleanest at hours 2 and 5.
    let f = hourly(&[300.0, 200.0, 50.0, 250.0, 400.0, 60.0, 500.0, 500.0]);
    let run_now = decide(&req(&f, t0(), 2, hours(8), Strategy::RunNow));
    assert_eq!(
        (run_now.action, run_now.reason, run_now.next_transition),
        (Action::Run, Reason::RunNow, None)
    );
    assert!((run_now.expected_grams_per_kw - 500.0).abs() < 1e-9);

    let flex = decide(&req(&f, t0(), 2, hours(8), Strategy::FlexibleStart));
    assert_eq!(flex.action, Action::Pause);
    assert_eq!(flex.reason, Reason::WaitingForCleanerWindow);
    assert_eq!(
        flex.intervals,
        vec![Interval {
            start: hours(1),
            end: hours(3)
        }]
    );
    assert_eq!(flex.next_transition, Some(hours(1)));

    let pr = decide(&req(&f, t0(), 2, hours(8), Strategy::PauseResume));
    assert_eq!(
        pr.intervals,
        vec![
            Interval {
                start: hours(2),
                end: hours(3)
            },
            Interval {
                start: hours(5),
                end: hours(6)
            }
        ]
    );
    assert!((pr.expected_grams_per_kw - 110.0).abs() < 1e-9);
    assert_eq!(pr.next_transition, Some(hours(2)));

    // Running at hour 2 under pause-resume: run, then pause at 3.
    let running = decide(&PlanRequest {
        state: JobState::Running { since: hours(2) },
        ..req(&f, hours(2), 2, hours(8), Strategy::PauseResume)
    });
    assert_eq!(
        (running.action, running.next_transition),
        (Action::Run, Some(hours(3)))
    );

    let th = decide(&req(
        &f,
        t0(),
        2,
        hours(8),
        Strategy::Threshold {
            max_gco2_per_kwh: 100.0,
        },
    ));
    assert_eq!(
        (th.action, th.reason),
        (Action::Pause, Reason::AboveThreshold)
    );
    assert_eq!(th.intervals, pr.intervals);
    let th_now = decide(&req(
        &f,
        hours(2),
        2,
        hours(8),
        Strategy::Threshold {
            max_gco2_per_kwh: 100.0,
        },
    ));
    assert_eq!(
        (th_now.action, th_now.reason, th_now.next_transition),
        (Action::Run, Reason::BelowThreshold, Some(hours(3)))
    );
}

#[test]
fn zero_slack_is_the_deadline_guard() {
    let f = hourly(&[500.0, 10.0, 10.0, 10.0]);
    for s in [
        Strategy::PauseResume,
        Strategy::FlexibleStart,
        Strategy::Threshold {
            max_gco2_per_kwh: 100.0,
        },
    ] {
        let p = decide(&req(&f, t0(), 3, hours(3), s));
        assert_eq!(
            (p.action, p.reason, p.next_transition),
            (Action::Run, Reason::DeadlineGuard, None),
            "{s:?}"
        );
    }
    // Threshold waits above the limit only until the latest start.
    let p = decide(&req(
        &f,
        t0(),
        1,
        hours(4),
        Strategy::Threshold {
            max_gco2_per_kwh: 1.0,
        },
    ));
    assert_eq!(
        (p.action, p.next_transition),
        (Action::Pause, Some(hours(3)))
    );
}

#[test]
fn partial_slots_and_sub_second_now() {
    let f = Series::new(t0(), 300, vec![100.0, 10.0, 100.0, 100.0, 20.0, 100.0]).unwrap();
    let now = t0() + TimeDelta::milliseconds(150_500);
    let p = decide(&PlanRequest {
        remaining_secs: 400,
        ..req(
            &f,
            now,
            0,
            t0() + TimeDelta::seconds(1700),
            Strategy::PauseResume,
        )
    });
    // 300 s of the 10 slot and 100 s of the 20 slot.
    assert_eq!(p.intervals[0].start, t0() + TimeDelta::seconds(300));
    assert_eq!(p.intervals[1].start, t0() + TimeDelta::seconds(1200));
    assert_eq!(total_secs(&p), 400);
    let want = f
        .integrate(p.intervals[0].start, p.intervals[0].end)
        .unwrap()
        + f.integrate(p.intervals[1].start, p.intervals[1].end)
            .unwrap();
    assert!((p.expected_grams_per_kw - want).abs() < 1e-9);
}

#[test]
fn constrained_plans_respect_every_rule() {
    // Alternating clean/dirty hours would make a plan full of 1 h pauses.
    let vals: Vec<f64> = (0..24)
        .map(|i| if i % 2 == 0 { 50.0 } else { 400.0 })
        .collect();
    let f = hourly(&vals);
    let c = Constraints {
        min_run_secs: 2 * 3600,
        min_pause_secs: 2 * 3600,
        max_pauses: Some(3),
        checkpoint_overhead_secs: 600,
    };
    let p = decide(&PlanRequest {
        constraints: c,
        ..req(&f, t0(), 6, hours(24), Strategy::PauseResume)
    });
    let iv = &p.intervals;
    assert!(iv.len() <= 4);
    for w in iv.windows(2) {
        assert!(w[1].start - w[0].end >= TimeDelta::hours(2));
        assert!(w[0].end - w[0].start >= TimeDelta::hours(2));
    }
    assert_eq!(total_secs(&p), 6 * 3600 + 600 * (iv.len() as i64 - 1));
    // Paused 30 min ago with a 2 h minimum pause: waits until then even if clean now.
    let p = decide(&PlanRequest {
        constraints: c,
        state: JobState::Paused {
            since: hours(2) - TimeDelta::minutes(30),
        },
        ..req(&f, hours(2), 2, hours(24), Strategy::PauseResume)
    });
    assert_eq!(p.action, Action::Pause);
    assert!(p.next_transition.unwrap() >= hours(3) + TimeDelta::minutes(30));
    // ... unless the deadline guard needs it earlier.
    let p = decide(&PlanRequest {
        constraints: c,
        state: JobState::Paused {
            since: hours(2) - TimeDelta::minutes(30),
        },
        ..req(&f, hours(2), 2, hours(5), Strategy::PauseResume)
    });
    assert!(p.next_transition.is_none_or(|t| t <= hours(3)));
    // Running for 10 min with a 2 h minimum run: keeps running through a dirty hour.
    let p = decide(&PlanRequest {
        constraints: c,
        state: JobState::Running {
            since: hours(1) - TimeDelta::minutes(10),
        },
        ..req(&f, hours(1), 4, hours(24), Strategy::PauseResume)
    });
    assert_eq!(p.action, Action::Run);
    assert!(p
        .next_transition
        .is_none_or(|t| t >= hours(1) + TimeDelta::minutes(110)));
    // No pauses left while running: run to completion.
    let p = decide(&PlanRequest {
        constraints: c,
        pauses_so_far: 3,
        state: JobState::Running { since: hours(1) },
        ..req(&f, hours(1), 4, hours(24), Strategy::PauseResume)
    });
    assert_eq!(
        (p.action, p.reason, p.next_transition),
        (Action::Run, Reason::Constraint, None)
    );
}

#[test]
fn remaining_work_includes_past_overhead() {
    let c = Constraints {
        checkpoint_overhead_secs: 60,
        ..Constraints::default()
    };
    assert_eq!(remaining_work_secs(3600, 1000, 2, &c), 2720);
    assert_eq!(remaining_work_secs(3600, 9000, 2, &c), 0);
}
