//! Prometheus metrics: one registry, every family the operator exports.
//!
//! Label values are bounded by construction: regions, providers, namespaces, phases,
//! actions and error kinds: never object names or `Debug` output. The HTTP server that
//! serves `/metrics`, `/healthz` and `/readyz` lives in the controller's runtime.

use prometheus::{CounterVec, GaugeVec};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metric families, registered in `registry`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Current grid intensity the operator plans with.
    pub grid_intensity: GaugeVec,
    /// Seconds since the forecast in use was issued.
    pub forecast_age: GaugeVec,
    pub avoided_emissions: CounterVec,
    pub emissions: CounterVec,
    pub baseline_emissions: CounterVec,
    pub energy: CounterVec,
    pub jobs: IntGaugeVec,
    pub transitions: IntCounterVec,
    pub deadline_misses: IntCounter,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: IntCounterVec,
    pub forecast_requests: IntCounterVec,
    pub forecast_request_duration: HistogramVec,
    pub forecast_fallback: IntCounterVec,
    pub dispatches: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every family. Fails only on a programming error (duplicate
    /// or malformed names), which the unit test below catches.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let grid_intensity = GaugeVec::new(
            Opts::new(
                "carbonshift_grid_intensity_gco2_per_kwh",
                "Grid carbon intensity now, in gCO2eq/kWh, as planned with; signal is average (consumption mix) or marginal (MOER).",
            ),
            &["region", "source", "signal"],
        )?;
        let forecast_age = GaugeVec::new(
            Opts::new(
                "carbonshift_forecast_age_seconds",
                "Seconds since the forecast in use for the region was issued.",
            ),
            &["region"],
        )?;
        let avoided_emissions = CounterVec::new(
            Opts::new(
                "carbonshift_avoided_emissions_grams_total",
                "Emissions avoided versus running at once (run-now baseline minus actual), in gCO2eq, of finished jobs.",
            ),
            &["namespace", "region"],
        )?;
        let emissions = CounterVec::new(
            Opts::new(
                "carbonshift_emissions_grams_total",
                "Emissions of the jobs' runtime, in gCO2eq.",
            ),
            &["namespace", "region"],
        )?;
        let baseline_emissions = CounterVec::new(
            Opts::new(
                "carbonshift_baseline_emissions_grams_total",
                "Emissions the jobs would have caused had they run at once without pauses, in gCO2eq.",
            ),
            &["namespace", "region"],
        )?;
        let energy = CounterVec::new(
            Opts::new(
                "carbonshift_energy_kwh_total",
                "Energy the jobs used, in kWh, PUE included.",
            ),
            &["namespace", "region"],
        )?;
        let jobs = IntGaugeVec::new(
            Opts::new("carbonshift_jobs", "CarbonAwareJobs by phase."),
            &["phase"],
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "carbonshift_transitions_total",
                "Start, pause and resume actions taken on jobs.",
            ),
            &["action"],
        )?;
        let deadline_misses = IntCounter::new(
            "carbonshift_deadline_misses_total",
            "Jobs that finished after their deadline or could no longer meet it.",
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "carbonshift_reconcile_duration_seconds",
                "Time spent in one reconcile of a CarbonAwareJob.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "carbonshift_reconcile_errors_total",
                "Reconcile failures by error kind.",
            ),
            &["kind"],
        )?;
        let forecast_requests = IntCounterVec::new(
            Opts::new(
                "carbonshift_forecast_requests_total",
                "Upstream forecast requests by provider and outcome.",
            ),
            &["provider", "outcome"],
        )?;
        let forecast_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "carbonshift_forecast_request_duration_seconds",
                "Duration of upstream forecast requests.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["provider"],
        )?;
        let dispatches = IntCounterVec::new(
            Opts::new(
                "carbonshift_dispatches_total",
                "MultiKueue nominations by worker cluster, its region and why (best, timeout, cleaner).",
            ),
            &["cluster", "region", "reason"],
        )?;
        let forecast_fallback = IntCounterVec::new(
            Opts::new(
                "carbonshift_forecast_fallback_total",
                "Times a stale or fallback forecast was served instead of a fresh one.",
            ),
            &["provider", "reason"],
        )?;
        registry.register(Box::new(grid_intensity.clone()))?;
        registry.register(Box::new(forecast_age.clone()))?;
        registry.register(Box::new(avoided_emissions.clone()))?;
        registry.register(Box::new(emissions.clone()))?;
        registry.register(Box::new(baseline_emissions.clone()))?;
        registry.register(Box::new(energy.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(transitions.clone()))?;
        registry.register(Box::new(deadline_misses.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(forecast_requests.clone()))?;
        registry.register(Box::new(forecast_request_duration.clone()))?;
        registry.register(Box::new(forecast_fallback.clone()))?;
        registry.register(Box::new(dispatches.clone()))?;
        Ok(Self {
            registry,
            grid_intensity,
            forecast_age,
            avoided_emissions,
            emissions,
            baseline_emissions,
            energy,
            jobs,
            transitions,
            deadline_misses,
            reconcile_duration,
            reconcile_errors,
            forecast_requests,
            forecast_request_duration,
            forecast_fallback,
            dispatches,
        })
    }

    /// The registry in Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format except on invalid UTF-8,
        // which our label values never contain; an empty scrape is the safe fallback.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_registers_and_encodes() {
        let m = Metrics::new().unwrap();
        m.grid_intensity
            .with_label_values(&["DE", "embedded", "average"])
            .set(321.0);
        m.avoided_emissions
            .with_label_values(&["ml", "DE"])
            .inc_by(12.5);
        m.deadline_misses.inc();
        let text = m.encode();
        assert!(text.contains(
            "carbonshift_grid_intensity_gco2_per_kwh{region=\"DE\",signal=\"average\",source=\"embedded\"} 321"
        ));
        assert!(text.contains(
            "carbonshift_avoided_emissions_grams_total{namespace=\"ml\",region=\"DE\"} 12.5"
        ));
        assert!(text.contains("carbonshift_deadline_misses_total 1"));
    }
}
