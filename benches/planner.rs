//! Planner benchmarks: (a) one 8-day job with a 16-day deadline on 5-minute slots, per
//! strategy; (b) a replan of 10,000 jobs with varied deadlines and remaining work against
//! one forecast, as after a forecast refresh; (c) constrained against unconstrained
//! pause-and-resume on `simulate`'s hourly case (a 1-day job, 2 days of slack, with and
//! without `--max-pauses 3`), whose ratio is printed in one run. Figures are recorded in
//! docs/benchmarks.md.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Instant;

use carbonshift::plan::{decide, Constraints, JobState, PlanRequest, Strategy};
use carbonshift::series::Series;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// A realistic-looking 5-minute series: daily solar dip, weekly wind swings, and noise
/// from a fixed-seed generator (deterministic across runs).
fn forecast(days: i64) -> Series {
    let n = (days * 288) as usize;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let vals = (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let h = i as f64 / 12.0;
            let solar = -120.0 * (-((h % 24.0 - 13.0) / 3.0).powi(2)).exp();
            let wind = 80.0 * (h / 24.0 * 0.9).sin();
            let noise = (seed % 4000) as f64 / 100.0 - 20.0;
            (320.0 + solar + wind + noise).max(5.0)
        })
        .collect();
    Series::new(t0(), 300, vals).unwrap()
}

fn request(f: &Series, strategy: Strategy, constraints: Constraints) -> PlanRequest<'_> {
    PlanRequest {
        now: t0() + TimeDelta::seconds(137),
        remaining_secs: 8 * 86_400,
        deadline: t0() + TimeDelta::days(16),
        strategy,
        constraints,
        state: JobState::NotStarted,
        pauses_so_far: 0,
        forecast: f,
        error: carbonshift::plan::ForecastError::NONE,
    }
}

fn single_job(c: &mut Criterion) {
    let f = forecast(16);
    let constrained = Constraints {
        min_run_secs: 3600,
        min_pause_secs: 3600,
        max_pauses: None,
        checkpoint_overhead_secs: 300,
    };
    let capped = Constraints {
        max_pauses: Some(20),
        ..constrained
    };
    let mut g = c.benchmark_group("8d job, 16d deadline, 5 min slots");
    for (name, s, cons) in [
        (
            "pause-and-resume unconstrained",
            Strategy::PauseAndResume,
            Constraints::default(),
        ),
        (
            "pause-and-resume min run/pause 1h, overhead 5m",
            Strategy::PauseAndResume,
            constrained,
        ),
        (
            "pause-and-resume + max 20 pauses",
            Strategy::PauseAndResume,
            capped,
        ),
        (
            "flexible-start",
            Strategy::FlexibleStart,
            Constraints::default(),
        ),
        (
            "threshold",
            Strategy::Threshold {
                max_gco2_per_kwh: 250.0,
            },
            constrained,
        ),
    ] {
        let r = request(&f, s, cons);
        g.bench_function(name, |b| b.iter(|| decide(black_box(&r))));
    }
    g.finish();
}

fn replan_10k(c: &mut Criterion) {
    // A 72 h forecast extended to a week is what the operator plans on; jobs of 1-24 h
    // with 0-96 h of slack, a third of them running, mixed strategies.
    let f = forecast(7);
    let now = t0() + TimeDelta::seconds(4242);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let jobs: Vec<PlanRequest<'_>> = (0..10_000)
        .map(|i| {
            let rem = 3600 + (next() % (23 * 3600)) as i64;
            let slack = (next() % (96 * 3600)) as i64;
            let strategy = match i % 4 {
                0 | 1 => Strategy::PauseAndResume,
                2 => Strategy::FlexibleStart,
                _ => Strategy::Threshold {
                    max_gco2_per_kwh: 280.0,
                },
            };
            let constraints = if i % 8 == 1 {
                Constraints {
                    min_run_secs: 1800,
                    min_pause_secs: 1800,
                    max_pauses: Some(10),
                    checkpoint_overhead_secs: 120,
                }
            } else {
                Constraints::default()
            };
            PlanRequest {
                now,
                remaining_secs: rem,
                deadline: now + TimeDelta::seconds(rem + slack),
                strategy,
                constraints,
                state: if i % 3 == 0 {
                    JobState::Running {
                        since: now - TimeDelta::minutes(45),
                    }
                } else {
                    JobState::NotStarted
                },
                pauses_so_far: 0,
                forecast: &f,
                error: carbonshift::plan::ForecastError::NONE,
            }
        })
        .collect();
    let mut g = c.benchmark_group("replan");
    g.sample_size(10);
    g.bench_function("10k jobs, one 7-day 5 min forecast", |b| {
        b.iter(|| {
            jobs.iter()
                .map(|r| decide(black_box(r)).intervals.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

/// An hourly 3-day forecast like `simulate --region FR`'s: a daily cycle plus noise.
fn hourly(hours: usize, phase: usize) -> Series {
    let mut seed = 0xA076_1D64_78BD_642Fu64 ^ phase as u64;
    let vals = (0..hours)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let h = (i + phase) as f64;
            let daily = 25.0 * (h * std::f64::consts::TAU / 24.0).cos();
            let noise = (seed % 2000) as f64 / 100.0 - 10.0;
            (45.0 + daily + noise).max(3.0)
        })
        .collect();
    Series::new(t0(), 3600, vals).unwrap()
}

/// Receding-horizon decisions of a 1-day job with 2 days of slack: the job at each hour
/// of its window (waiting, then running or paused), on 24 different forecasts.
fn simulate_like_requests(forecasts: &[Series], cons: Constraints) -> Vec<PlanRequest<'_>> {
    let mut out = Vec::new();
    for (k, f) in forecasts.iter().enumerate() {
        for h in 0..48i64 {
            let now = t0() + TimeDelta::hours(h) + TimeDelta::seconds(60);
            let state = match (h + k as i64) % 3 {
                0 => JobState::NotStarted,
                1 => JobState::Running {
                    since: now - TimeDelta::hours(2),
                },
                _ => JobState::Paused {
                    since: now - TimeDelta::hours(1),
                },
            };
            out.push(PlanRequest {
                now,
                remaining_secs: 86_400 - h * 600,
                deadline: t0() + TimeDelta::hours(72),
                strategy: Strategy::PauseAndResume,
                constraints: cons,
                state,
                pauses_so_far: u32::from(matches!(state, JobState::Paused { .. })),
                forecast: f,
                error: carbonshift::plan::ForecastError::NONE,
            });
        }
    }
    out
}

fn constrained_vs_unconstrained(c: &mut Criterion) {
    let forecasts: Vec<Series> = (0..24).map(|k| hourly(72, 7 * k)).collect();
    let free = simulate_like_requests(&forecasts, Constraints::default());
    let capped = simulate_like_requests(
        &forecasts,
        Constraints {
            max_pauses: Some(3),
            ..Constraints::default()
        },
    );
    let all = |rs: &[PlanRequest<'_>]| {
        rs.iter()
            .map(|r| decide(black_box(r)).intervals.len())
            .sum::<usize>()
    };
    // The ratio in one run, interleaved so that the machine's load hits both alike.
    let (mut t_free, mut t_capped) = (0.0, 0.0);
    for _ in 0..20 {
        let t = Instant::now();
        black_box(all(&free));
        t_free += t.elapsed().as_secs_f64();
        let t = Instant::now();
        black_box(all(&capped));
        t_capped += t.elapsed().as_secs_f64();
    }
    let per = |t: f64| 1e6 * t / (20.0 * free.len() as f64);
    println!(
        "constrained/unconstrained (1d job, 2d slack, hourly; max 3 pauses vs none): {:.2}x ({:.1} us vs {:.1} us per decide)",
        t_capped / t_free,
        per(t_capped),
        per(t_free)
    );
    let mut g = c.benchmark_group("1d job, 2d slack, hourly, 1152 decisions");
    g.bench_function("pause-and-resume unconstrained", |b| b.iter(|| all(&free)));
    g.bench_function("pause-and-resume max 3 pauses", |b| b.iter(|| all(&capped)));
    g.finish();
}

criterion_group!(
    benches,
    single_job,
    replan_10k,
    constrained_vs_unconstrained
);
criterion_main!(benches);
