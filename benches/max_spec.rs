//! One reconcile's build step (`controller::build`: validate, planning series, `decide`,
//! accounting) for CarbonAwareJobs at the CRD's limits: `expectedDuration + maxDelay`
//! 8784h (a deadline 366 days after creation, given either way), every strategy,
//! `maxPauses` large or binding.
//! The target is under 50 ms per reconcile (and under 5 MiB of extra memory, measured by
//! `hack/bench-max-spec.sh`); figures are recorded in docs/benchmarks.md.
//!
//! The specs are parsed from YAML, as the operator receives them. Intensities: the embedded
//! DE trace as the operator serves it (hourly, 7 days of history and 72 h of replayed
//! forecast, extended to the deadline with its daily profile), and a synthetic 5-minute
//! series of the same span (which the planner lays on hourly slots over a year).

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use carbonshift::api::CarbonAwareJob;
use carbonshift::controller::{build, Intensities, Observed};
use carbonshift::forecast::embedded::EmbeddedSource;
use carbonshift::forecast::ForecastSource;
use carbonshift::series::Series;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// A manifest created at [`now`] with the given `spec.schedule` (YAML, indented 4).
fn caj(schedule: &str) -> CarbonAwareJob {
    let yaml = format!(
        r#"apiVersion: carbonshift.io/v1alpha1
kind: CarbonAwareJob
metadata:
  name: max
  namespace: default
  creationTimestamp: "2026-01-01T00:00:00Z"
spec:
  region: DE
  power: {{watts: 1000}}
  schedule:
{schedule}
  template:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{{name: c, image: busybox}}]
"#
    );
    serde_yaml::from_str(&yaml).unwrap()
}

/// 5-minute intensities over `[now - 7d, now + 72h)`: daily solar dip, multi-day wind
/// swing, noise from a fixed-seed generator.
fn five_minute() -> Intensities {
    let start = now() - TimeDelta::days(7);
    let n = 10 * 288;
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
    Intensities::live(
        Series::new(start, 300, vals).unwrap(),
        "synthetic 5 min".into(),
    )
}

fn embedded() -> Intensities {
    let source = EmbeddedSource::shipped(TimeDelta::hours(72));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let f = rt.block_on(source.fetch("DE", now())).unwrap();
    Intensities::live(f.series, "embedded (historical replay)".into())
}

const CONSTRAINTS: &str =
    "    minRunDuration: 1h\n    minPauseDuration: 1h\n    checkpointOverhead: 5m";

fn cases() -> Vec<(String, String)> {
    let year = "2027-01-02T00:00:00Z"; // 366 days after creation
    let mut v = Vec::new();
    for strategy in ["RunNow", "FlexibleStart", "PauseAndResume", "Threshold"] {
        v.push((
            format!("{strategy} 1h"),
            format!(
                "    strategy: {strategy}\n    thresholdGramsPerKWh: 250\n    maxDelay: 8783h\n    expectedDuration: 1h\n{CONSTRAINTS}\n    maxPauses: 2147483647"
            ),
        ));
    }
    v.push((
        "PauseAndResume 4392h, maxPauses 2^31-1".to_string(),
        format!("    strategy: PauseAndResume\n    maxDelay: 4392h\n    expectedDuration: 4392h\n{CONSTRAINTS}\n    maxPauses: 2147483647"),
    ));
    v.push((
        "PauseAndResume 8000h, maxPauses 10".to_string(),
        "    strategy: PauseAndResume\n    maxDelay: 784h\n    expectedDuration: 8000h\n    minPauseDuration: 1h\n    maxPauses: 10"
            .to_string(),
    ));
    v.push((
        "PauseAndResume 8784h (no slack)".to_string(),
        format!("    strategy: PauseAndResume\n    deadline: \"{year}\"\n    expectedDuration: 8784h\n{CONSTRAINTS}"),
    ));
    v.push((
        "PauseAndResume 1h, deadline +366d".to_string(),
        format!("    strategy: PauseAndResume\n    deadline: \"{year}\"\n    expectedDuration: 1h\n{CONSTRAINTS}\n    maxPauses: 2147483647"),
    ));
    v.push((
        "FlexibleStart 4392h, deadline +366d".to_string(),
        format!(
            "    strategy: FlexibleStart\n    deadline: \"{year}\"\n    expectedDuration: 4392h"
        ),
    ));
    v
}

fn bench_feed(c: &mut Criterion, feed: &str, intens: &Intensities) {
    let mut g = c.benchmark_group(format!("max spec, {feed}"));
    g.sample_size(20);
    for (name, schedule) in cases() {
        let job = caj(&schedule);
        let obs = Observed {
            caj: &job,
            child: None,
            region: Ok("DE"),
            intensities: Ok(intens),
            now: now(),
            persist_every: TimeDelta::minutes(5),
            deadline_margin: TimeDelta::minutes(2),
            kueue: false,
        };
        // A spec the build step refused would measure nothing.
        let out = build(obs);
        assert!(out.plan.is_some(), "{name}: {:?}", out.events);
        g.bench_function(&name, |b| b.iter(|| build(black_box(obs))));
    }
    g.finish();
}

fn max_spec(c: &mut Criterion) {
    bench_feed(c, "embedded DE (hourly)", &embedded());
    bench_feed(c, "5-minute forecast", &five_minute());
}

criterion_group!(benches, max_spec);
criterion_main!(benches);
