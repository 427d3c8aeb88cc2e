//! Tests of the multi-region replay on synthetic traces whose answers are known.

use chrono::TimeDelta;

use super::*;
use crate::sim::tests::{cfg, diurnal_times as diurnal, t0};

fn run(a: &Series, b: &Series, model: ForecastModel) -> RegionsReport {
    let regions = [
        Region {
            name: "A",
            actuals: a,
        },
        Region {
            name: "B",
            actuals: b,
        },
    ];
    simulate_regions(&regions, &cfg(model), &|| {}).unwrap()
}

fn result(r: &RegionsReport, k: StrategyKind) -> &RegionalStrategy {
    r.results.iter().find(|x| x.report.strategy == k).unwrap()
}

fn row(r: &RegionsReport, against: Reference) -> Comparison {
    r.comparison()
        .into_iter()
        .find(|c| c.against == against)
        .unwrap()
}

/// B is A at half the intensity: every job goes to B, run-now there saves exactly 50 %
/// against run-now at home, and shifting in time on top saves what it saves at home.
#[test]
fn a_region_at_half_the_intensity_takes_every_job_and_halves_run_now() {
    let (a, b) = (diurnal(8, 1.0), diurnal(8, 0.5));
    let r = run(&a, &b, ForecastModel::Perfect);
    assert!(r.jobs >= 15, "{}", r.jobs);
    assert_eq!(r.regions, ["A", "B"]);
    for k in StrategyKind::ALL {
        let x = result(&r, k);
        assert_eq!(x.region_jobs, [0, r.jobs], "{k:?}");
        assert!(x.job_regions.iter().all(|&i| i == 1), "{k:?}");
        assert_eq!(x.report.deadline_misses, 0, "{k:?}");
    }
    let now = result(&r, StrategyKind::RunNow).report.savings_pct;
    assert!((now - 50.0).abs() < 1e-9, "{now}");
    assert!((r.fixed[1].savings_pct - 50.0).abs() < 1e-9);
    assert_eq!(r.fixed[0].savings_pct, 0.0);
    assert_eq!((r.fixed_extreme(true), r.fixed_extreme(false)), (1, 0));
    // Against the best fixed region (B) spatial run-now saves nothing; spatial+temporal
    // saves there exactly what temporal alone saves at home (the same plan, halved).
    let best = row(&r, Reference::BestFixed(1));
    assert!(best.spatial_pct.abs() < 1e-9, "{best:?}");
    let pr_home = &r.temporal[1];
    assert_eq!(pr_home.strategy, StrategyKind::PauseAndResume);
    assert!(pr_home.savings_pct > 10.0, "{pr_home:?}");
    assert!(
        (best.spatial_pause_and_resume_pct - pr_home.savings_pct).abs() < 1e-6,
        "{best:?} vs {}",
        pr_home.savings_pct
    );
    let worst = row(&r, Reference::WorstFixed(0));
    assert_eq!(
        worst,
        row(&r, Reference::RunNowIn(0)).clone_as(worst.against)
    );
    assert!((worst.spatial_pct - 50.0).abs() < 1e-9);
    // Against pause-and-resume at home, spatial pause-and-resume halves the emissions.
    let t = row(&r, Reference::TemporalAtHome(StrategyKind::PauseAndResume));
    assert!(
        (t.spatial_pause_and_resume_pct - 50.0).abs() < 1e-6,
        "{t:?}"
    );
    assert!((t.vs_home_pct - pr_home.savings_pct).abs() < 1e-12);
}

impl Comparison {
    fn clone_as(&self, against: Reference) -> Comparison {
        Comparison {
            against,
            ..self.clone()
        }
    }
}

/// Identical regions: every draw goes home, so every spatial result is the home-only one.
#[test]
fn draws_go_home() {
    let a = diurnal(6, 1.0);
    let r = run(&a, &a.clone(), ForecastModel::Perfect);
    for k in StrategyKind::ALL {
        assert_eq!(result(&r, k).region_jobs, [r.jobs, 0], "{k:?}");
    }
    let pr = &result(&r, StrategyKind::PauseAndResume).report;
    assert_eq!(pr.emissions_g, r.temporal[1].emissions_g);
    assert_eq!(result(&r, StrategyKind::RunNow).report.savings_pct, 0.0);
    assert_eq!(r.fixed[0].emissions_g, r.fixed[1].emissions_g);
    // A draw between fixed regions also goes to the first.
    assert_eq!((r.fixed_extreme(true), r.fixed_extreme(false)), (0, 0));
}

/// B is cleaner in the day, A at night: run-now follows the hour of submission, while
/// the oracle pause-and-resume, with a day of slack, finds the cleanest hours of either.
#[test]
fn each_job_goes_where_its_plan_is_cleanest() {
    let a = diurnal(8, 1.0);
    let b = Series::new(
        t0(),
        3600,
        (0..8 * 24)
            .map(|i| 60.0 + 280.0 * f64::from(u8::from((i % 24) < 12)))
            .collect(),
    )
    .unwrap();
    let r = run(&a, &b, ForecastModel::Perfect);
    let now = result(&r, StrategyKind::RunNow);
    assert!(
        now.region_jobs.iter().all(|&n| n > 0),
        "{:?}",
        now.region_jobs
    );
    for x in &r.results {
        assert_eq!(x.region_jobs.iter().sum::<usize>(), r.jobs);
    }
    // Choosing per job never does worse than either fixed region for run-now (perfect
    // forecasts: the ranking is on the truth).
    let best = row(&r, Reference::BestFixed(r.fixed_extreme(true)));
    assert!(best.spatial_pct >= -1e-9, "{best:?}");
    let oracle = result(&r, StrategyKind::OraclePauseAndResume)
        .report
        .savings_pct;
    let pr = result(&r, StrategyKind::PauseAndResume).report.savings_pct;
    assert!(oracle >= pr - 0.5, "{oracle} {pr}");
}

#[test]
fn noisy_regions_are_seeded_apart_and_reproducibly() {
    let m = ForecastModel::Noisy {
        seed: 7,
        absolute: false,
    };
    assert_eq!(region_model(m, 0, "FR"), m);
    let (fr, de) = (region_model(m, 1, "FR"), region_model(m, 2, "DE"));
    assert!(fr != m && de != m && fr != de);
    assert_eq!(region_model(m, 1, "FR"), fr);
    assert_eq!(
        region_model(ForecastModel::Perfect, 3, "x"),
        ForecastModel::Perfect
    );
    let (a, b) = (diurnal(6, 1.0), diurnal(6, 0.9));
    let x = run(&a, &b, m);
    let y = run(&a, &b, m);
    for (p, q) in x.results.iter().zip(&y.results) {
        assert_eq!(p.report.emissions_g, q.report.emissions_g);
        assert_eq!(p.job_regions, q.job_regions);
        assert_eq!(p.report.deadline_misses, 0);
    }
    // Home alone is the single-region replay with the same seed.
    let single = crate::sim::simulate(
        &Truth {
            actuals: &a,
            vintages: &[],
        },
        &cfg(m),
    )
    .unwrap();
    let pr = single
        .results
        .iter()
        .find(|r| r.strategy == StrategyKind::PauseAndResume)
        .unwrap();
    assert_eq!(pr.emissions_g, x.temporal[1].emissions_g);
}

fn input_error(regions: &[(&str, &Series)]) -> String {
    match align(regions) {
        Err(SimError::Input(m)) => m,
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn align_cuts_to_the_common_span_and_refuses_what_cannot_be_compared() {
    let a = diurnal(6, 1.0);
    let later = a.slice(t0() + TimeDelta::days(2), a.end()).unwrap();
    let out = align(&[("A", &a), ("B", &later)]).unwrap();
    assert!(out
        .iter()
        .all(|s| s.start() == later.start() && s.end() == a.end()));
    assert!(input_error(&[("A", &a)]).contains("at least two regions"));
    assert!(input_error(&[("A", &a), ("a", &a)]).contains("region a is given twice"));
    let early = a.slice(t0(), t0() + TimeDelta::days(1)).unwrap();
    let late = a.slice(t0() + TimeDelta::days(3), a.end()).unwrap();
    let m = input_error(&[("A", &early), ("B", &late)]);
    assert!(
        m.contains("do not overlap in time") && m.contains("carbonshift zones"),
        "{m}"
    );
    let half = a.resample(1800).unwrap();
    assert!(input_error(&[("A", &a), ("B", &half)]).contains("different steps"));
    let shifted = Series::new(t0() + TimeDelta::minutes(30), 3600, a.values().to_vec()).unwrap();
    assert!(input_error(&[("A", &a), ("B", &shifted)]).contains("do not line up"));
}

#[test]
fn vintages_and_unaligned_regions_are_refused() {
    let a = diurnal(6, 1.0);
    let regions = [
        Region {
            name: "GB",
            actuals: &a,
        },
        Region {
            name: "FR",
            actuals: &a,
        },
    ];
    let e = simulate_regions(&regions, &cfg(ForecastModel::Vintages), &|| {}).unwrap_err();
    assert!(
        matches!(&e, SimError::Input(m) if m.contains("vintages exists only for GB")),
        "{e:?}"
    );
    let short = a.slice(t0(), t0() + TimeDelta::days(4)).unwrap();
    let regions = [
        regions[0],
        Region {
            name: "FR",
            actuals: &short,
        },
    ];
    let e = simulate_regions(&regions, &cfg(ForecastModel::Perfect), &|| {}).unwrap_err();
    assert!(
        matches!(&e, SimError::Input(m) if m.contains("same span")),
        "{e:?}"
    );
}
