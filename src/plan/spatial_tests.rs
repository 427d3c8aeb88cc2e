//! Tests of the spatial choice: the cleaner region wins, allowed regions restrict it, and
//! against brute force over every region and every slot-aligned schedule.

use chrono::TimeDelta;
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::Config as PtConfig;

use super::oracle::{brute_force, brute_force_window, SmallInstance};
use super::spatial::{choose, is_allowed, rank, Candidate};
use super::tests::{check_rules, hours, req, small_instance, small_request, t0, values};
use super::{decide, Action, PlanRequest, Reason, Strategy};
use crate::series::Series;

fn hourly(vals: &[f64]) -> Series {
    Series::new(t0(), 3600, vals.to_vec()).unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("R{i}")).collect()
}

fn candidates<'a>(names: &'a [String], series: &'a [Series]) -> Vec<Candidate<'a>> {
    names
        .iter()
        .zip(series)
        .map(|(region, forecast)| Candidate { region, forecast })
        .collect()
}

#[test]
fn the_cleaner_region_wins_and_the_ranking_orders_every_allowed_region() {
    let series = [
        hourly(&[400.0, 400.0, 400.0, 400.0]),
        hourly(&[60.0, 60.0, 60.0, 60.0]),
        hourly(&[200.0, 200.0, 200.0, 200.0]),
    ];
    let n = names(3);
    let c = candidates(&n, &series);
    let r = req(&series[0], t0(), 2, hours(4), Strategy::RunNow);
    let ranked = rank(&r, &c, None);
    let order: Vec<(&str, f64)> = ranked
        .iter()
        .map(|x| (x.region, x.plan.expected_grams_per_kw))
        .collect();
    assert_eq!(order, vec![("R1", 120.0), ("R2", 400.0), ("R0", 800.0)]);
    // Restricted to R0 and R2 (any case), R2 wins; nothing allowed, nothing chosen.
    let allowed = vec!["r2".to_string(), "R0".to_string()];
    let best = choose(&r, &c, Some(&allowed)).unwrap();
    assert_eq!((best.region, best.index), ("R2", 2));
    assert!(choose(&r, &c, Some(&["DE".to_string()])).is_none());
    assert!(is_allowed("fr", Some(&["FR".to_string()])) && is_allowed("x", None));
}

#[test]
fn a_draw_goes_home_and_time_and_place_are_chosen_together() {
    let flat = hourly(&[100.0; 6]);
    let n = names(2);
    let same = [flat.clone(), flat.clone()];
    let r = req(&flat, t0(), 2, hours(6), Strategy::PauseAndResume);
    assert_eq!(choose(&r, &candidates(&n, &same), None).unwrap().index, 0);
    // R0 is cleaner now, R1 much cleaner later: with room to wait, R1 and its late window
    // win; run now, R0 does.
    let later = [
        hourly(&[80.0, 80.0, 300.0, 300.0, 300.0, 300.0]),
        hourly(&[300.0, 300.0, 300.0, 300.0, 20.0, 20.0]),
    ];
    let c = candidates(&n, &later);
    let wait = choose(&r, &c, None).unwrap();
    assert_eq!(
        (
            wait.region,
            wait.plan.action,
            wait.plan.expected_grams_per_kw
        ),
        ("R1", Action::Pause, 40.0)
    );
    assert_eq!(wait.plan.intervals[0].start, hours(4));
    let now = choose(&req(&flat, t0(), 2, hours(6), Strategy::RunNow), &c, None).unwrap();
    assert_eq!((now.region, now.plan.expected_grams_per_kw), ("R0", 160.0));
}

#[test]
fn an_infeasible_deadline_still_picks_the_cleanest_run_through() {
    let series = [hourly(&[500.0; 4]), hourly(&[50.0; 4])];
    let n = names(2);
    let r = req(&series[0], t0(), 3, hours(2), Strategy::PauseAndResume);
    let best = choose(&r, &candidates(&n, &series), None).unwrap();
    assert_eq!(
        (
            best.region,
            best.plan.reason,
            best.plan.expected_grams_per_kw
        ),
        ("R1", Reason::DeadlineInfeasible, 150.0)
    );
}

/// 2 to 4 regions of `n` hourly slots each.
fn regions(n: usize) -> impl proptest::strategy::Strategy<Value = Vec<Vec<f64>>> {
    prop::collection::vec(values(n), 2..=4)
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::RunNow),
        Just(Strategy::FlexibleStart),
        Just(Strategy::PauseAndResume),
        (50.0f64..400.0).prop_map(|t| Strategy::Threshold {
            max_gco2_per_kwh: t
        }),
    ]
}

proptest! {
    #![proptest_config(PtConfig::with_cases(256))]

    /// The chosen plan is never worse than the best single-region plan, is one of the
    /// allowed regions, and keeps every rule there (the deadline guard included): for any
    /// strategy, constraints, job state and subset of allowed regions.
    #[test]
    fn never_worse_than_the_best_single_region_plan(
        vals in regions(10),
        inst in small_instance(),
        strategy in strategy(),
        mask in 1u32..16,
    ) {
        let series: Vec<Series> = vals.iter().map(|v| hourly(v)).collect();
        let n = names(series.len());
        let allowed: Vec<String> = n.iter().enumerate()
            .filter(|(i, _)| mask >> i & 1 == 1).map(|(_, r)| r.clone()).collect();
        prop_assume!(!allowed.is_empty());
        let inst = SmallInstance { values: vals[0].clone(), work: inst.work.min(10), ..inst };
        let r = PlanRequest { strategy, ..small_request(&inst, &series[0]) };
        let best = choose(&r, &candidates(&n, &series), Some(&allowed)).unwrap();
        let single = series.iter().zip(&n)
            .filter(|(_, name)| allowed.contains(name))
            .map(|(f, _)| decide(&PlanRequest { forecast: f, ..r }).expected_grams_per_kw)
            .fold(f64::INFINITY, f64::min);
        prop_assert!(best.plan.expected_grams_per_kw <= single + 1e-9 * single.abs().max(1.0),
            "{} vs {}", best.plan.expected_grams_per_kw, single);
        prop_assert!(allowed.iter().any(|a| a == best.region));
        let there = PlanRequest { forecast: &series[best.index], ..r };
        prop_assert_eq!(&best.plan, &decide(&there));
        if best.plan.reason != Reason::DeadlineInfeasible && best.plan.reason != Reason::EstimateExceeded {
            prop_assert!(check_rules(&best.plan, &there).is_ok(), "{:?}", check_rules(&best.plan, &there));
        }
    }

    /// Pause and resume over several regions equals the exhaustive optimum over every
    /// region and every set of slots; flexible start equals the best window of every
    /// region over every whole-second start.
    #[test]
    fn equals_brute_force_on_small_instances(
        vals in regions(8),
        work in 1u32..=8,
        len in 1i64..7200,
        extra in 0i64..7200,
    ) {
        let series: Vec<Series> = vals.iter().map(|v| hourly(v)).collect();
        let n = names(series.len());
        let c = candidates(&n, &series);
        let r = PlanRequest {
            remaining_secs: i64::from(work) * 3600,
            ..req(&series[0], t0(), 0, hours(8), Strategy::PauseAndResume)
        };
        let exact = vals.iter().map(|v| {
            let inst = SmallInstance { values: v.clone(), work, min_run: 0, min_pause: 0, max_pauses: None, overhead: 0, running_for: None };
            brute_force(&inst).unwrap().0
        }).fold(f64::INFINITY, f64::min);
        let best = choose(&r, &c, None).unwrap();
        prop_assert!((best.plan.expected_grams_per_kw - exact).abs() < 1e-9 * exact.max(1.0),
            "{} vs {}", best.plan.expected_grams_per_kw, exact);

        let deadline = t0() + TimeDelta::seconds(len + extra);
        prop_assume!(deadline <= hours(8));
        let fs = PlanRequest { remaining_secs: len, ..req(&series[0], t0(), 0, deadline, Strategy::FlexibleStart) };
        let window = series.iter()
            .map(|f| brute_force_window(f, t0(), deadline, len).unwrap().1)
            .fold(f64::INFINITY, f64::min);
        let best = choose(&fs, &c, None).unwrap();
        prop_assert!((best.plan.expected_grams_per_kw - window).abs() < 1e-9 * window.max(1.0),
            "{} vs {}", best.plan.expected_grams_per_kw, window);
    }
}
