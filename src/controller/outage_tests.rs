//! Pure tests of accounting through outages: no intensities (provider down), live data
//! that starts at `now` (a restarted operator against a live API), and the provider's
//! history settling what was owed.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::build::{Outcome, ACCOUNTED};
use super::fixtures::*;
use super::intensity::Intensities;
use crate::accounting::OwedTo;
use crate::api::{time, CarbonAwareJob, CarbonAwareJobStatus, Phase};
use crate::series::Series;

fn step(
    c: &CarbonAwareJob,
    ch: Option<&k8s_openapi::api::batch::v1::Job>,
    intens: Result<&Intensities, &str>,
    now: DateTime<Utc>,
) -> Outcome {
    build_at(c, ch, intens, now, TimeDelta::zero())
}

/// Minute slots from `at(-10)` (the creation) to `at(120)`: 100 + the minute index.
fn truth() -> Series {
    Series::new(at(-10), 60, (0..130).map(|k| 100.0 + k as f64).collect()).unwrap()
}

/// What a live API serves at `t`: the truth from the minute `t` falls in onward.
fn live_from(t: DateTime<Utc>) -> Intensities {
    let s = truth();
    Intensities::live(
        s.slice(t - TimeDelta::seconds(t.timestamp() % 60), s.end())
            .unwrap(),
        "live".into(),
    )
}

/// `live_from(t)` plus the provider's history over `[at(-10), t)`.
fn with_history(t: DateTime<Utc>) -> Intensities {
    let mut i = live_from(t);
    i.history = truth()
        .slice(at(-10), i.series.start())
        .map(std::sync::Arc::new);
    i
}

/// The 1 kW job's grams over `[a, b)` of the truth.
fn grams(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    truth().integrate(a, b).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

/// `actual` equals `want` to 1e-6 (relative).
#[track_caller]
fn assert_close(actual: f64, want: f64) {
    assert!(close(actual, want), "{actual} vs {want}");
}

fn next(c: &CarbonAwareJob, o: &Outcome) -> CarbonAwareJob {
    with_status(c.clone(), o.status.clone())
}

fn condition<'a>(st: &'a CarbonAwareJobStatus, type_: &str) -> (&'a str, &'a str) {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
        .unwrap_or(("", ""))
}

/// Running from `at(0)`, all pods Ready, accounted to `at(0)`.
fn running() -> (CarbonAwareJob, k8s_openapi::api::batch::v1::Job) {
    let base = caj("RunNow", "2h", json!({}));
    let mut st = CarbonAwareJobStatus {
        phase: Some(Phase::Running),
        job_name: Some("train".into()),
        running_since: Some(time::to_time(at(0))),
        start_time: Some(time::to_time(at(0))),
        last_accounted_time: Some(time::to_time(at(0))),
        ready_pods: Some(1),
        ready_since: Some(time::to_time(at(0))),
        ..CarbonAwareJobStatus::default()
    };
    st.restore_seconds = Some(0);
    let c = with_status(base, st);
    let ch = with_pods(child(&c, false, None), 1, 1);
    (c, ch)
}

#[test]
fn an_outage_counts_time_now_and_grams_once_history_returns() {
    let (c, ch) = running();
    // Ten minutes with the provider down: runtime and energy accrue, no grams.
    let o = step(&c, Some(&ch), Err("provider down"), at(10));
    let st = &o.status;
    assert_eq!(st.runtime_seconds, 600);
    assert_close(st.energy_kwh, 600.0 / 3600.0);
    assert_eq!((st.emissions_grams, st.baseline_grams), (0.0, 0.0));
    assert_eq!(st.unaccounted_seconds, Some(600));
    assert_eq!(st.unaccounted.len(), 2);
    assert_eq!(
        (
            st.unaccounted[0].to,
            st.unaccounted[0].start,
            st.unaccounted[0].end
        ),
        (OwedTo::Emissions, at(0), at(10))
    );
    assert_eq!(
        (
            st.unaccounted[1].to,
            st.unaccounted[1].start,
            st.unaccounted[1].end
        ),
        (OwedTo::Baseline, at(-10), at(0))
    );
    assert_eq!(condition(st, ACCOUNTED), ("False", "IntensitiesMissing"));
    assert!(o.write_status);
    // Five more minutes down: the spans grow, they do not multiply.
    let c = next(&c, &o);
    let o = step(&c, Some(&ch), Err("provider down"), at(15));
    assert_eq!(o.status.unaccounted.len(), 2);
    assert_eq!(o.status.unaccounted_seconds, Some(900));
    // Back, but the live endpoint serves only from now on: the past stays owed, the
    // minute since is accounted.
    let c = next(&c, &o);
    let o = step(
        &c,
        Some(&ch),
        Ok(&live_from(at(16))),
        at(16) + TimeDelta::seconds(30),
    );
    assert_eq!(o.status.unaccounted_seconds, Some(960));
    assert_close(
        o.status.emissions_grams,
        grams(at(16), at(16) + TimeDelta::seconds(30)) / 1.0,
    );
    // History for the past: everything settles to the truth.
    let c = next(&c, &o);
    let t = at(17);
    let o = step(&c, Some(&ch), Ok(&with_history(t)), t);
    let st = &o.status;
    assert!(st.unaccounted.is_empty(), "{:?}", st.unaccounted);
    assert_eq!(st.unaccounted_seconds, None);
    assert_eq!(st.runtime_seconds, 17 * 60);
    assert_close(st.emissions_grams, grams(at(0), t));
    assert_close(st.baseline_grams, grams(at(-10), at(7)));
    assert_eq!(condition(st, ACCOUNTED), ("True", "Recorded"));
}

#[test]
fn the_guard_starts_a_job_in_an_outage_and_charges_nothing_before_the_start() {
    // 2 h of work, deadline in 2 h 1 min (created 10 min ago, 2h + maxDelay 11m): no
    // forecast, so the guard must start it now.
    let base = caj("PauseAndResume", "2h", json!({"maxDelay": "11m"}));
    let st = CarbonAwareJobStatus {
        phase: Some(Phase::Waiting),
        job_name: Some("train".into()),
        last_accounted_time: Some(time::to_time(at(-10))),
        ..CarbonAwareJobStatus::default()
    };
    let c = with_status(base, st);
    let ch = child(&c, true, None);
    let o = step(&c, Some(&ch), Err("provider down"), at(0));
    assert_eq!(o.suspend, Some(false), "{:?}", o.status.conditions);
    assert!(o.deadline_guard);
    assert_eq!(o.status.runtime_seconds, 0);
    assert_eq!(o.status.last_accounted_time, Some(time::to_time(at(0))));
    // A status whose last accounting predates the start (an older operator, a hand
    // edit) still charges only from the start: 90 s Pending, then Ready.
    let mut c = next(&c, &o);
    c.status.as_mut().unwrap().last_accounted_time = Some(time::to_time(at(-10)));
    let ch = with_pods(child(&c, false, None), 1, 0);
    let o = step(
        &c,
        Some(&ch),
        Err("provider down"),
        at(0) + TimeDelta::seconds(90),
    );
    assert_eq!(o.status.runtime_seconds, 0);
    assert_eq!(o.status.waiting_for_pods_seconds, 90);
    assert_eq!(o.status.restore_seconds, Some(0));
    assert_eq!(o.status.unaccounted_seconds, None);
}

#[test]
fn a_job_that_completes_in_an_outage_says_so_and_settles_later() {
    let (c, _) = running();
    let done = with_pods(child(&c, false, Some("Complete")), 0, 0);
    // The child completed at at(-1), after 8 minutes of running.
    let mut c = c;
    let st = c.status.as_mut().unwrap();
    st.running_since = Some(time::to_time(at(-9)));
    st.start_time = st.running_since.clone();
    st.ready_since = st.running_since.clone();
    st.last_accounted_time = st.running_since.clone();
    let o = step(&c, Some(&done), Err("provider down"), at(0));
    let st = &o.status;
    assert_eq!(st.phase, Some(Phase::Succeeded));
    assert_eq!(st.runtime_seconds, 8 * 60);
    assert_eq!(st.unaccounted_seconds, Some(8 * 60));
    assert_eq!(condition(st, ACCOUNTED), ("False", "IntensitiesMissing"));
    let msg = &o
        .events
        .iter()
        .find(|n| n.reason == "Succeeded")
        .unwrap()
        .message;
    assert!(
        msg.contains("8m of runtime not yet in the emissions"),
        "{msg}"
    );
    // Still no data an hour later: retried every minute, nothing added.
    let c = next(&c, &o);
    let o = step(&c, Some(&done), Err("provider down"), at(60));
    assert_eq!(o.settled_late, (0.0, 0.0));
    assert_eq!(o.requeue, Some(TimeDelta::seconds(60)));
    assert!(!o.write_status);
    // History arrives: settled, the totals get the late grams once.
    let o = step(&c, Some(&done), Ok(&with_history(at(61))), at(61));
    let st = &o.status;
    assert!(st.unaccounted.is_empty(), "{:?}", st.unaccounted);
    assert_close(st.emissions_grams, grams(at(-9), at(-1)));
    assert_close(st.baseline_grams, grams(at(-10), at(-2)));
    assert_close(o.settled_late.0, st.emissions_grams);
    assert_close(o.settled_late.1, st.baseline_grams);
    assert_eq!(condition(st, ACCOUNTED), ("True", "Recorded"));
    assert!(o.write_status);
    assert_eq!(o.requeue, None);
    // Nothing owed any more: the next step adds nothing.
    let c = next(&c, &o);
    let o = step(&c, Some(&done), Ok(&with_history(at(62))), at(62));
    assert_eq!(o.settled_late, (0.0, 0.0));
    assert!(!o.write_status);
}

#[test]
fn a_fallback_source_plans_but_never_accounts() {
    let (c, ch) = running();
    let mut stand_in = live_from(at(0));
    stand_in.live_is_record = false;
    let o = step(&c, Some(&ch), Ok(&stand_in), at(5));
    assert_eq!(o.status.runtime_seconds, 300);
    assert_eq!(o.status.emissions_grams, 0.0);
    assert_eq!(o.status.unaccounted_seconds, Some(300));
}
