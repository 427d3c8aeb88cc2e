//! Unit and property tests of the planner: exactness against brute force, the deadline
//! guard under adversarial receding-horizon replanning, and the savings ordering.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::Config as PtConfig;

use super::oracle::{brute_force, brute_force_window, SmallInstance};
use super::Strategy;
use super::*;
use crate::series::Series;

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

pub(super) fn hours(h: i64) -> DateTime<Utc> {
    t0() + TimeDelta::hours(h)
}

pub(super) fn req<'a>(
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
        error: crate::plan::ForecastError::NONE,
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
        ..req(&f, t0(), 1, hours(3), Strategy::PauseAndResume)
    });
    assert_eq!(
        (done.action, done.reason, done.intervals.len()),
        (Action::Run, Reason::EstimateExceeded, 0)
    );
    let neg = decide(&PlanRequest {
        remaining_secs: -5,
        ..req(&f, t0(), 1, hours(3), Strategy::FlexibleStart)
    });
    assert_eq!(neg.reason, Reason::EstimateExceeded);
    let late = decide(&req(&f, hours(5), 1, hours(2), Strategy::PauseAndResume));
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
            Strategy::PauseAndResume,
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
        ..req(&f, t0(), 1, hours(3), Strategy::PauseAndResume)
    });
    assert_eq!(huge.reason, Reason::DeadlineInfeasible);
    let far = decide(&req(
        &f,
        t0(),
        2,
        DateTime::<Utc>::MAX_UTC,
        Strategy::PauseAndResume,
    ));
    assert_eq!(total_secs(&far), 7200);
    let weird = Constraints {
        min_run_secs: -5,
        min_pause_secs: i64::MAX,
        max_pauses: Some(0),
        checkpoint_overhead_secs: i64::MIN,
    };
    for s in [
        Strategy::PauseAndResume,
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

    let pr = decide(&req(&f, t0(), 2, hours(8), Strategy::PauseAndResume));
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

    // Running at hour 2 under pause-and-resume: run, then pause at 3.
    let running = decide(&PlanRequest {
        state: JobState::Running { since: hours(2) },
        ..req(&f, hours(2), 2, hours(8), Strategy::PauseAndResume)
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
        Strategy::PauseAndResume,
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
            Strategy::PauseAndResume,
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
        ..req(&f, t0(), 6, hours(24), Strategy::PauseAndResume)
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
        ..req(&f, hours(2), 2, hours(24), Strategy::PauseAndResume)
    });
    assert_eq!(p.action, Action::Pause);
    assert!(p.next_transition.unwrap() >= hours(3) + TimeDelta::minutes(30));
    // ... unless the deadline guard needs it earlier.
    let p = decide(&PlanRequest {
        constraints: c,
        state: JobState::Paused {
            since: hours(2) - TimeDelta::minutes(30),
        },
        ..req(&f, hours(2), 2, hours(5), Strategy::PauseAndResume)
    });
    assert!(p.next_transition.is_none_or(|t| t <= hours(3)));
    // Running for 10 min with a 2 h minimum run: keeps running through a dirty hour.
    let p = decide(&PlanRequest {
        constraints: c,
        state: JobState::Running {
            since: hours(1) - TimeDelta::minutes(10),
        },
        ..req(&f, hours(1), 4, hours(24), Strategy::PauseAndResume)
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
        ..req(&f, hours(1), 4, hours(24), Strategy::PauseAndResume)
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

// ---------------------------------------------------------------------------------------
// Property tests

/// Rules a plan must satisfy, checked independently of the planner's own validity check,
/// on whole seconds: sorted disjoint intervals in `[now, deadline]`, gaps of at least
/// `min_pause`, non-final runs of at least `min_run` (the current run counts from `since`),
/// at most the allowed pauses, and enough runtime for the work plus each pause's overhead.
pub(super) fn check_rules(p: &Plan, r: &PlanRequest<'_>) -> Result<(), String> {
    let c = &r.constraints;
    let iv = &p.intervals;
    let first = iv.first().ok_or("no intervals")?;
    if first.start < r.now || iv.last().unwrap().end > r.deadline {
        return Err(format!("outside [now, deadline]: {iv:?}"));
    }
    let running = matches!(r.state, JobState::Running { .. });
    let mut pauses = iv.len() as i64 - 1;
    if running && first.start > r.now {
        pauses += 1;
        if (first.start - r.now).num_seconds() < c.min_pause_secs {
            return Err("short lead pause".into());
        }
    }
    for (i, w) in iv.iter().enumerate() {
        if w.end <= w.start {
            return Err("empty interval".into());
        }
        let mut len = (w.end - w.start).num_seconds();
        if let (0, JobState::Running { since }) = (i, r.state) {
            if w.start == r.now {
                len += (r.now - since).num_seconds();
            }
        }
        if i + 1 < iv.len() {
            if len < c.min_run_secs {
                return Err(format!("short run {i}: {iv:?}"));
            }
            if (iv[i + 1].start - w.end).num_seconds() < c.min_pause_secs.max(1) {
                return Err(format!("short pause after {i}: {iv:?}"));
            }
        }
    }
    if let Some(m) = c.max_pauses {
        if pauses > i64::from(m) - i64::from(r.pauses_so_far) {
            return Err(format!("{pauses} pauses: {iv:?}"));
        }
    }
    let total: i64 = iv.iter().map(|w| (w.end - w.start).num_seconds()).sum();
    if total < r.remaining_secs + pauses * c.checkpoint_overhead_secs {
        return Err(format!("too little runtime {total}: {iv:?}"));
    }
    Ok(())
}

/// Intensities with structure (a cycle plus noise) or without (uniform noise, spikes):
/// the planner must be right on both.
// 6.28 is a phase range, not an approximation of tau: keep the generated inputs as they are.
#[allow(clippy::approx_constant)]
pub(super) fn values(n: usize) -> impl proptest::strategy::Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec(10.0f64..500.0, n),
        prop::collection::vec(
            prop_oneof![Just(20.0), Just(100.0), Just(100.0), Just(900.0)],
            n
        ),
        (0.0f64..6.28, prop::collection::vec(0.0f64..80.0, n)).prop_map(|(ph, noise)| {
            noise
                .iter()
                .enumerate()
                .map(|(i, e)| 250.0 + 150.0 * (i as f64 * 0.8 + ph).sin() + e)
                .collect()
        }),
    ]
}

pub(super) fn small_instance() -> impl proptest::strategy::Strategy<Value = SmallInstance> {
    (4usize..=12).prop_flat_map(|n| {
        (
            values(n),
            1u32..=n as u32,
            0u32..4,
            0u32..4,
            prop_oneof![Just(None), (0u32..4).prop_map(Some)],
            prop_oneof![Just(0u32), Just(0), Just(1)],
            prop_oneof![Just(None), Just(None), (0u32..4).prop_map(Some)],
        )
            .prop_map(
                |(values, work, min_run, min_pause, max_pauses, overhead, running_for)| {
                    SmallInstance {
                        values,
                        work,
                        min_run,
                        min_pause,
                        max_pauses,
                        overhead,
                        running_for,
                    }
                },
            )
    })
}

/// The request a [`SmallInstance`] stands for, on hourly slots from `t0()`.
pub(super) fn small_request<'a>(inst: &SmallInstance, f: &'a Series) -> PlanRequest<'a> {
    let h = 3600i64;
    PlanRequest {
        now: t0(),
        remaining_secs: i64::from(inst.work) * h,
        deadline: hours(inst.values.len() as i64),
        strategy: Strategy::PauseAndResume,
        constraints: Constraints {
            min_run_secs: i64::from(inst.min_run) * h,
            min_pause_secs: i64::from(inst.min_pause) * h,
            max_pauses: inst.max_pauses,
            checkpoint_overhead_secs: i64::from(inst.overhead) * h,
        },
        state: match inst.running_for {
            Some(k) => JobState::Running {
                since: hours(-i64::from(k)),
            },
            None => JobState::NotStarted,
        },
        pauses_so_far: 0,
        forecast: f,
        error: crate::plan::ForecastError::NONE,
    }
}

/// Worst-case tolerance for constrained pause-and-resume against the exact slot-aligned
/// optimum (relative, plus an absolute allowance for float noise). The worst measured over
/// 20,000 adversarial instances (`measure_constrained_gap`) is +64.5 %, on spiky 20/900
/// gCO2/kWh grids where one slot of duality gap is most of the cost; typical quality is
/// far better and is asserted separately by `constrained_quality_distribution`.
const CONSTRAINED_TOLERANCE: f64 = 0.70;

proptest! {
    #![proptest_config(PtConfig::with_cases(256))]

    /// Unconstrained pause-and-resume is exactly optimal: equal to the exhaustive optimum over
    /// every set of 5-minute cells, with the first and last slots partial (slots are
    /// 10 minutes, now and the deadline fall on any 5-minute cell).
    #[test]
    fn unconstrained_pause_and_resume_equals_brute_force(
        vals in values(7),
        now_cell in 0i64..2,
        extra in 0i64..2,
        work in 1u32..10,
    ) {
        let f = Series::new(t0(), 600, vals.clone()).unwrap();
        let cells: Vec<f64> = vals.iter().flat_map(|v| [*v, *v]).skip(now_cell as usize).collect();
        let n = cells.len() - extra as usize;
        prop_assume!(work as usize <= n);
        let now = t0() + TimeDelta::seconds(300 * now_cell);
        let r = PlanRequest {
            remaining_secs: i64::from(work) * 300,
            ..req(&f, now, 0, now + TimeDelta::seconds(300 * n as i64), Strategy::PauseAndResume)
        };
        let p = decide(&r);
        let inst = SmallInstance { values: cells[..n].to_vec(), work, min_run: 0, min_pause: 0, max_pauses: None, overhead: 0, running_for: None };
        let (best, _) = brute_force(&inst).unwrap();
        let best = best * 300.0 / 3600.0;
        prop_assert!((p.expected_grams_per_kw - best).abs() < 1e-9 * best.max(1.0), "{} vs {}", p.expected_grams_per_kw, best);
        prop_assert!(check_rules(&p, &r).is_ok());
        // The reported figure is the forecast's integral over the intervals.
        let integral: f64 = p.intervals.iter().map(|i| f.integrate(i.start, i.end).unwrap()).sum();
        prop_assert!((integral - p.expected_grams_per_kw).abs() < 1e-9 * best.max(1.0));
    }

    /// Flexible start is exactly optimal over every start time (checked on every whole
    /// second), with arbitrary offsets of now, length and deadline.
    #[test]
    fn flexible_start_equals_brute_force(
        vals in values(8),
        now_off in 0i64..60,
        len in 1i64..300,
        dl in 0i64..240,
    ) {
        let f = Series::new(t0(), 60, vals).unwrap();
        let now = t0() + TimeDelta::seconds(now_off);
        let deadline = now + TimeDelta::seconds(len + dl);
        prop_assume!(deadline <= f.end());
        let r = PlanRequest { remaining_secs: len, ..req(&f, now, 0, deadline, Strategy::FlexibleStart) };
        let p = decide(&r);
        let (_, best) = brute_force_window(&f, now, deadline, len).unwrap();
        prop_assert!(p.expected_grams_per_kw <= best + 1e-9 * best.max(1.0), "{} vs {}", p.expected_grams_per_kw, best);
        prop_assert_eq!(p.intervals.len(), 1);
        prop_assert!(check_rules(&p, &r).is_ok());
    }

    /// Constrained pause-and-resume: always valid, and within CONSTRAINED_TOLERANCE of the
    /// exact optimum over slot-aligned schedules.
    #[test]
    fn constrained_pause_and_resume_near_brute_force(inst in small_instance()) {
        let f = Series::new(t0(), 3600, inst.values.clone()).unwrap();
        let r = small_request(&inst, &f);
        let p = decide(&r);
        if let Some((best, _)) = brute_force(&inst) {
            prop_assert!(check_rules(&p, &r).is_ok(), "{:?} {:?}", check_rules(&p, &r), p);
            prop_assert!(
                p.expected_grams_per_kw <= best * (1.0 + CONSTRAINED_TOLERANCE) + 1e-6,
                "{} vs optimum {} ({:?})", p.expected_grams_per_kw, best, p.intervals
            );
        }
    }

    /// With perfect forecasts: pause-and-resume <= flexible start <= run now, constrained
    /// pause-and-resume <= flexible start, and threshold never worse than run-now when it can
    /// afford to wait... (threshold has no such guarantee, so it is not compared).
    #[test]
    fn savings_ordering_on_perfect_forecasts(
        vals in values(48),
        rem in 1i64..24,
        slack in 0i64..24,
        c in (0i64..4, 0i64..4, prop_oneof![Just(None), (0u32..4).prop_map(Some)], 0i64..2),
    ) {
        let f = hourly(&vals);
        let dl = hours(rem + slack);
        let plan = |s, cons: Constraints| oracle::schedule(s, &f, t0(), rem * 3600, dl, cons).expected_grams_per_kw;
        let none = Constraints::default();
        let cons = Constraints { min_run_secs: c.0 * 3600, min_pause_secs: c.1 * 3600, max_pauses: c.2, checkpoint_overhead_secs: c.3 * 1800 };
        let (pr, fs, rn) = (plan(Strategy::PauseAndResume, none), plan(Strategy::FlexibleStart, none), plan(Strategy::RunNow, none));
        let eps = 1e-9 * rn.max(1.0);
        prop_assert!(pr <= fs + eps && fs <= rn + eps, "{pr} {fs} {rn}");
        let prc = plan(Strategy::PauseAndResume, cons);
        prop_assert!(pr <= prc + eps && prc <= fs + eps, "{pr} {prc} {fs}");
    }
}

/// One receding-horizon run of a job, as the operator executes it: decide, act until the
/// next transition or the next replan tick, repeat with a fresh (arbitrary) forecast.
/// Returns the completion time, or an error describing a broken promise.
#[allow(clippy::too_many_arguments)]
fn execute(
    strategy: Strategy,
    c: Constraints,
    runtime: i64,
    deadline_secs: i64,
    forecasts: &[(i64, i64, Vec<f64>)],
    ticks: &[i64],
) -> Result<DateTime<Utc>, String> {
    let deadline = t0() + TimeDelta::seconds(deadline_secs);
    let mut now = t0();
    let mut rem = runtime;
    let mut state = JobState::NotStarted;
    let mut pauses = 0u32;
    for step in 0..10_000usize {
        if rem <= 0 {
            return Ok(now);
        }
        let (off, step_secs, vals) = &forecasts[step % forecasts.len()];
        // Forecasts start anywhere around now, at various steps, possibly ending early.
        // They sit on a fixed grid (as real ones do): one that moved with `now` could
        // promise "clean for one more second" forever and make the test itself endless.
        let since_t0 = (now - t0()).num_seconds();
        let start = t0()
            + TimeDelta::seconds(since_t0 - since_t0 % step_secs + off / step_secs * step_secs);
        let f = Series::new(start, *step_secs, vals.clone()).unwrap();
        let r = PlanRequest {
            now,
            remaining_secs: rem,
            deadline,
            strategy,
            constraints: c,
            state,
            pauses_so_far: pauses,
            forecast: &f,
            error: crate::plan::ForecastError::NONE,
        };
        let p = decide(&r);
        if let Some(nt) = p.next_transition {
            if nt <= now {
                return Err(format!("transition {nt} not after now {now}: {p:?}"));
            }
        }
        let tick = now + TimeDelta::seconds(ticks[step % ticks.len()]);
        let until = p.next_transition.map_or(tick, |nt| nt.min(tick));
        match p.action {
            Action::Run => {
                if !matches!(state, JobState::Running { .. }) {
                    state = JobState::Running { since: now };
                }
                let ran = (until - now).num_seconds().min(rem);
                rem -= ran;
                now += TimeDelta::seconds(ran);
            }
            Action::Pause => {
                if let JobState::Running { .. } = state {
                    pauses += 1;
                    rem += c.checkpoint_overhead_secs.max(0);
                    state = JobState::Paused { since: now };
                } else if state == JobState::NotStarted {
                    // Waiting to start is not a pause.
                }
                let latest = deadline - TimeDelta::seconds(rem);
                let nt = p.next_transition.ok_or("pause without a transition")?;
                if nt > latest {
                    return Err(format!("resume at {nt} after latest start {latest}: {p:?}"));
                }
                now = until;
            }
        }
    }
    Err("no completion after 10000 decisions".into())
}

fn guard_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::PauseAndResume),
        Just(Strategy::FlexibleStart),
        Just(Strategy::RunNow),
        (0.0f64..600.0).prop_map(|m| Strategy::Threshold {
            max_gco2_per_kwh: m
        }),
    ]
}

proptest! {
    #![proptest_config(PtConfig::with_cases(256))]

    /// The deadline guard: a job feasible at submission always finishes by its deadline,
    /// whatever the forecasts say and however they change between decisions (they are
    /// arbitrary, unrelated to each other, may start late or end early), under any
    /// strategy and constraints, with replan ticks at arbitrary times.
    #[test]
    fn feasible_deadlines_are_never_missed(
        strategy in guard_strategy(),
        c in (0i64..7200, 0i64..7200, prop_oneof![Just(None), (0u32..5).prop_map(Some)], 0i64..1800),
        runtime in 1i64..30_000,
        slack in 0i64..40_000,
        forecasts in prop::collection::vec(
            (-7200i64..3600, prop_oneof![Just(300i64), Just(900), Just(3600)], prop::collection::vec(0.0f64..800.0, 1..40)),
            1..6,
        ),
        ticks in prop::collection::vec(60i64..20_000, 1..5),
    ) {
        let c = Constraints { min_run_secs: c.0, min_pause_secs: c.1, max_pauses: c.2, checkpoint_overhead_secs: c.3 };
        let deadline = runtime + slack;
        let done = execute(strategy, c, runtime, deadline, &forecasts, &ticks);
        match done {
            Ok(t) => prop_assert!(t <= t0() + TimeDelta::seconds(deadline), "finished {t}"),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}

/// The distribution of the constrained planner's cost relative to the exact optimum over
/// 2,000 deterministic random instances (the mix of `measure_constrained_gap`): mean
/// excess at most 0.5 %, at most 1 % of instances more than 10 % above, none above the
/// worst-case tolerance.
#[test]
fn constrained_quality_distribution() {
    let (mean, worst, above) = constrained_gap(2_000);
    assert!(mean <= 1.005, "mean ratio {mean}");
    assert!(above[3] * 100 <= 2_000, "{above:?}");
    assert!(worst <= 1.0 + CONSTRAINED_TOLERANCE, "worst {worst}");
}

/// One slot short across a duality gap on a spiky grid: the schedule short of the work
/// (three clean hours, a three-hour pause, three clean hours) grows by one 900 g hour,
/// not by swallowing the pause (three dearer hours for one hour of work). The optimum
/// is 1,020 g; running straight through costs 1,900 g.
#[test]
fn extension_prices_the_deficit_it_covers() {
    let inst = SmallInstance {
        values: vec![
            20.0, 20.0, 20.0, 900.0, 900.0, 20.0, 20.0, 20.0, 20.0, 900.0, 900.0, 20.0,
        ],
        work: 7,
        min_run: 0,
        min_pause: 3,
        max_pauses: None,
        overhead: 0,
        running_for: None,
    };
    let f = Series::new(t0(), 3600, inst.values.clone()).unwrap();
    let r = small_request(&inst, &f);
    let p = decide(&r);
    let (best, _) = brute_force(&inst).unwrap();
    assert!(check_rules(&p, &r).is_ok(), "{:?}", check_rules(&p, &r));
    assert!((best - 1020.0).abs() < 1e-9, "optimum {best}");
    assert!(
        (p.expected_grams_per_kw - 1020.0).abs() < 1e-6,
        "{} {:?}",
        p.expected_grams_per_kw,
        p.intervals
    );
}

/// Measures the constrained planner's worst and mean ratio to the optimum over many
/// deterministic random instances (`cargo test --lib measure_constrained -- --ignored
/// --nocapture`); the figures back CONSTRAINED_TOLERANCE.
#[test]
#[ignore]
fn measure_constrained_gap() {
    constrained_gap(20_000);
}

/// (mean ratio, worst ratio, count above +0.1/1/5/10/25 %) over `cases` instances.
fn constrained_gap(cases: usize) -> (f64, f64, [usize; 5]) {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut worst, mut sum, mut count) = (1.0f64, 0.0, 0);
    let mut worst_inst = None;
    let mut worst_by = [1.0f64; 2];
    let mut above = [0usize; 5];
    for _ in 0..cases {
        let n = 4 + (next() % 9) as usize;
        let kind = next() % 3;
        let ph = (next() % 628) as f64 / 100.0;
        let values: Vec<f64> = (0..n)
            .map(|i| match kind {
                0 => 10.0 + (next() % 490) as f64,
                1 => [20.0, 100.0, 100.0, 900.0][(next() % 4) as usize],
                _ => 250.0 + 150.0 * (i as f64 * 0.8 + ph).sin() + (next() % 80) as f64,
            })
            .collect();
        let inst = SmallInstance {
            work: 1 + (next() % n as u64) as u32,
            min_run: (next() % 4) as u32,
            min_pause: (next() % 4) as u32,
            max_pauses: if next() % 2 == 0 {
                None
            } else {
                Some((next() % 4) as u32)
            },
            overhead: if next() % 3 == 0 { 1 } else { 0 },
            running_for: if next() % 3 == 0 {
                Some((next() % 4) as u32)
            } else {
                None
            },
            values,
        };
        let f = Series::new(t0(), 3600, inst.values.clone()).unwrap();
        let r = small_request(&inst, &f);
        let p = decide(&r);
        if let Some((best, _)) = brute_force(&inst) {
            assert!(check_rules(&p, &r).is_ok(), "{inst:?} {p:?}");
            let ratio = (p.expected_grams_per_kw + 1e-9) / (best + 1e-9);
            sum += ratio;
            count += 1;
            let class = usize::from(inst.max_pauses.is_some());
            worst_by[class] = worst_by[class].max(ratio);
            for (i, th) in [1.001, 1.01, 1.05, 1.1, 1.25].iter().enumerate() {
                if ratio > *th {
                    above[i] += 1;
                }
            }
            if ratio > worst {
                worst = ratio;
                worst_inst = Some((inst.clone(), p.intervals.clone(), best));
            }
        }
    }
    println!(
        "instances {count}, mean ratio {:.5}, worst {:.5}",
        sum / count as f64,
        worst
    );
    println!("worst instance {worst_inst:?}");
    println!("worst without / with max_pauses {worst_by:?}; above 0.1/1/5/10/25 %: {above:?}");
    (sum / count as f64, worst, above)
}

proptest! {
    /// Without a forecast: no work left runs; slack within the guard runs (the deadline
    /// guard); otherwise the state is held. A waiting job looked at every `guard` seconds
    /// therefore starts with at least 0 s of slack left, whatever the deadline.
    #[test]
    fn without_a_forecast_the_state_holds_until_the_guard(
        remaining in -100i64..20_000,
        to_deadline in -1_000i64..40_000,
        guard in 1i64..600,
        running in any::<bool>(),
        first_look in 0i64..600,
    ) {
        let now = t0();
        let deadline = now + TimeDelta::seconds(to_deadline);
        let state = if running {
            JobState::Running { since: now - TimeDelta::minutes(5) }
        } else {
            JobState::Paused { since: now - TimeDelta::minutes(5) }
        };
        let p = decide_without_forecast(now, remaining, deadline, state, guard);
        prop_assert!(p.intervals.is_empty() && p.next_transition.is_none());
        let slack = to_deadline - remaining;
        let want = if remaining <= 0 {
            (Action::Run, Reason::EstimateExceeded)
        } else if slack <= guard {
            (Action::Run, Reason::DeadlineGuard)
        } else if running {
            (Action::Run, Reason::Constraint)
        } else {
            (Action::Pause, Reason::Constraint)
        };
        prop_assert_eq!((p.action, p.reason), want);
        // Looked at every `guard` seconds from `first_look` on, a waiting job with
        // positive slack starts before the slack is gone.
        if !running && remaining > 0 && slack > 0 {
            let mut t = first_look.min(slack);
            let started = loop {
                let s = now + TimeDelta::seconds(t);
                let q = decide_without_forecast(s, remaining, deadline, state, guard);
                if q.action == Action::Run {
                    break t;
                }
                t += guard;
            };
            prop_assert!(started <= slack, "started {started} s in, slack {slack}");
        }
    }
}

/// A running job with a pause cap is never planned a sliver of its current run before a
/// pause: "pause in a second", re-planned at every transition, had the operator look at
/// the job every second without it ever pausing (pausing now costs the same pauses), which
/// made `simulate --max-pauses 3` 86 times slower. The forecast is the one `simulate
/// --region FR --forecast noisy` planned with at the first such decision: noisy values
/// clamped at zero, so that the current slot ties with the cheapest.
#[test]
fn a_running_job_is_never_planned_a_sliver_before_a_pause() {
    let vals = [
        0.0, 0.446, 0.0, 27.44, 24.68, 25.4, 11.86, 28.05, 34.54, 29.46, 5.427, 4.349, 0.0, 12.69,
        2.59, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.309, 17.98, 7.639, 2.526, 0.0, 0.0, 0.0, 0.0, 17.15,
        12.16, 0.0, 0.0, 5.924, 0.0, 13.04, 22.98, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 18.78, 18.78, 19.22, 25.97, 26.51, 31.64, 27.55, 27.54, 28.13, 28.38, 21.34,
        23.75, 25.43, 23.45, 21.35, 19.72,
    ];
    let f = hourly(&vals);
    let now = t0() + TimeDelta::minutes(1);
    for (max_pauses, pauses_so_far) in [(3, 0), (3, 1), (2, 0)] {
        let r = PlanRequest {
            now,
            remaining_secs: 61_200,
            deadline: hours(63) + TimeDelta::minutes(58),
            strategy: Strategy::PauseAndResume,
            constraints: Constraints {
                max_pauses: Some(max_pauses),
                ..Constraints::default()
            },
            state: JobState::Running {
                since: now - TimeDelta::hours(7),
            },
            pauses_so_far,
            forecast: &f,
            error: crate::plan::ForecastError::NONE,
        };
        let p = decide(&r);
        assert!(check_rules(&p, &r).is_ok(), "{:?}", check_rules(&p, &r));
        let first = p.intervals[0];
        let sliver = p.action == Action::Run
            && p.intervals.len() > 1
            && first.end - first.start < TimeDelta::minutes(1);
        assert!(!sliver, "max {max_pauses}, {pauses_so_far} taken: {p:?}");
    }
}
