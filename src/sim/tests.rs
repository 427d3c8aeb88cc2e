use chrono::TimeZone;

use super::*;

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap()
}

/// A clean night and a dirty afternoon, with a slow weekly drift so days differ.
fn diurnal(days: usize) -> Series {
    diurnal_times(days, 1.0)
}

/// [`diurnal`] times `k` (a region `k` times as dirty).
pub(super) fn diurnal_times(days: usize, k: f64) -> Series {
    let values = (0..days * 24)
        .map(|i| {
            let hour = (i % 24) as f64;
            let day = (i / 24) as f64;
            k * (200.0
                + 100.0 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos()
                + 20.0 * (day * 0.9).sin())
        })
        .collect();
    Series::new(t0(), 3600, values).unwrap()
}

pub(super) fn cfg(model: ForecastModel) -> SimConfig {
    SimConfig {
        duration_secs: 6 * 3600,
        slack_secs: 24 * 3600,
        submit_every_secs: 7 * 3600,
        horizon_secs: 48 * 3600,
        forecast: model,
        strategies: StrategyKind::ALL.to_vec(),
        constraints: Constraints::default(),
        threshold: None,
        power_kw: 1.0,
        deadline_margin_secs: 120,
        startup_secs: 60,
    }
}

fn get(r: &SimReport, k: StrategyKind) -> &StrategyReport {
    r.results.iter().find(|x| x.strategy == k).unwrap()
}

#[test]
fn submissions_start_after_warmup_and_fit_the_trace() {
    let s = diurnal(10);
    let truth = Truth {
        actuals: &s,
        vintages: &[],
    };
    let subs = submissions(&truth, &cfg(ForecastModel::Perfect)).unwrap();
    assert_eq!(subs[0], t0() + TimeDelta::days(1));
    let last = *subs.last().unwrap();
    assert!(last + TimeDelta::hours(30) <= s.end());
    assert!(last + TimeDelta::hours(37) > s.end());
}

#[test]
fn rejects_bad_configurations() {
    let s = diurnal(3);
    let truth = Truth {
        actuals: &s,
        vintages: &[],
    };
    let mut c = cfg(ForecastModel::Perfect);
    c.duration_secs = 0;
    assert!(matches!(submissions(&truth, &c), Err(SimError::Input(m)) if m.contains("--duration")));
    let mut c = cfg(ForecastModel::Perfect);
    c.slack_secs = 0;
    assert!(matches!(submissions(&truth, &c), Err(SimError::Input(m)) if m.contains("--slack")));
    let mut c = cfg(ForecastModel::Perfect);
    c.slack_secs = 600;
    assert!(
        matches!(submissions(&truth, &c), Err(SimError::Input(m)) if m.contains("shorter than the trace step"))
    );
    let mut c = cfg(ForecastModel::Perfect);
    c.slack_secs = 3 * 86_400;
    assert!(
        matches!(submissions(&truth, &c), Err(SimError::Input(m)) if m.contains("too short for one job"))
    );
    let c = cfg(ForecastModel::Vintages);
    assert!(matches!(submissions(&truth, &c), Err(SimError::Input(m)) if m.contains("vintages")));
}

#[test]
fn threshold_default_is_a_trailing_percentile() {
    let s = Series::new(t0(), 3600, (0..100).map(f64::from).collect()).unwrap();
    // 20 % of the 48 complete hours before hour 48 are below 10.
    let th = trailing_percentile(&s, t0() + TimeDelta::hours(48), 0.2);
    assert_eq!(th, 9.0);
    // Only the past counts: hour 48 onwards is never read.
    assert!(trailing_percentile(&s, t0() + TimeDelta::hours(48), 1.0) <= 47.0);
}

/// With perfect forecasts covering the window, the receding horizon loses nothing against
/// the oracle, and no job misses its deadline. Exercises the real planner.
#[test]
fn perfect_forecast_reaches_the_oracle() {
    let s = diurnal(30);
    let truth = Truth {
        actuals: &s,
        vintages: &[],
    };
    let r = simulate(&truth, &cfg(ForecastModel::Perfect)).unwrap();
    assert!(r.jobs > 80);
    for x in &r.results {
        assert_eq!(x.deadline_misses, 0, "{:?}", x.strategy);
        for j in &x.jobs {
            let worked: i64 = j
                .runs
                .iter()
                .map(|iv| (iv.end - iv.start).num_seconds())
                .sum();
            assert_eq!(worked, 6 * 3600, "{:?}", x.strategy);
        }
    }
    let pr = get(&r, StrategyKind::PauseAndResume);
    assert!(pr.oracle_fraction.unwrap() >= 0.99, "{pr:?}");
    let fs = get(&r, StrategyKind::FlexibleStart).savings_pct;
    let ofs = get(&r, StrategyKind::OracleFlexibleStart).savings_pct;
    assert!((fs - ofs).abs() < 0.1, "{fs} vs {ofs}");
    assert!(get(&r, StrategyKind::RunNow).savings_pct.abs() < 1e-9);
    assert!(pr.savings_pct > 10.0);
}

#[test]
fn noisy_forecasts_are_reproducible_and_meet_deadlines() {
    let s = diurnal(20);
    let truth = Truth {
        actuals: &s,
        vintages: &[],
    };
    let c = cfg(ForecastModel::Noisy {
        seed: 3,
        absolute: false,
    });
    let a = simulate(&truth, &c).unwrap();
    let b = simulate(&truth, &c).unwrap();
    for (x, y) in a.results.iter().zip(&b.results) {
        assert_eq!(x.emissions_g, y.emissions_g);
        assert_eq!(x.deadline_misses, 0, "{:?}", x.strategy);
    }
}

/// Averaged over submissions, planning on a forecast with error never does worse than
/// running at once, in any embedded zone: 90 days of 6 h jobs (+24 h) per zone, noisy
/// per-zone model, seed 1, each zone over its first quarter of 2022.
#[test]
fn under_forecast_error_never_worse_than_run_now_in_any_zone() {
    for zone in crate::data::zones() {
        let all = crate::data::load_zone(zone).unwrap();
        let from = Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
        let s = all.slice(from, from + TimeDelta::days(90)).unwrap();
        let truth = Truth {
            actuals: &s,
            vintages: &[],
        };
        let c = SimConfig {
            strategies: vec![StrategyKind::FlexibleStart, StrategyKind::PauseAndResume],
            ..cfg(ForecastModel::Noisy {
                seed: 1,
                absolute: false,
            })
        };
        let r = simulate(&truth, &c).unwrap();
        for k in [StrategyKind::FlexibleStart, StrategyKind::PauseAndResume] {
            let x = get(&r, k);
            assert!(x.savings_pct >= 0.0, "{zone} {k:?}: {:.2} %", x.savings_pct);
            assert_eq!(x.deadline_misses, 0, "{zone} {k:?}");
        }
    }
}
