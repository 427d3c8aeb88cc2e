//! Synthetic forecast error calibrated on real NESO forecasts, scaled to the zone (the
//! calibration is in [`crate::plan::error`]; `--noise absolute` keeps GB's grams).
//!
//! The real GB vintages (data/README) show an error (forecast − actual) whose size grows
//! with the lead time and whose sign drifts negative at long leads:
//!
//! | lead | MAE (g) | bias (g) |
//! |---|---|---|
//! | 0–2 h | 18.0 | +2.8 |
//! | 2–6 h | 24.5 | +2.2 |
//! | 6–12 h | 22.7 | −1.4 |
//! | 12–24 h | 24.5 | −9.1 |
//! | 24–48 h | 28.3 | −16.8 |
//!
//! The error at lead `h` for target slot `j` issued at `t` is modelled as
//! `bias(h) + sigma(h) * (sqrt(W) * A[j] + sqrt(1 - W) * B_t[h])`, where `sigma(h)` is
//! solved so that `E|bias + sigma * Z| = MAE` exactly, and `A`, `B_t` are unit-variance
//! Gaussian AR(1) processes:
//! * `A` is indexed by *target* time and shared by every issue: weather that the forecasters
//!   get wrong stays wrong in the next issue too, so consecutive forecasts are correlated
//!   (independent draws every hour would let a scheduler average the error away);
//! * `B_t` is indexed by lead and drawn afresh per issue from its own ChaCha stream (seed,
//!   issue slot), so the forecast seen at `t` is the same whichever job or strategy asks and
//!   in whatever order.
//!
//! Real errors are smooth over hours, not white noise, and change little from one issue to
//! the next: `W_SHARED` and `TAU_SHARED_H` are fitted on the 36 NESO vintages (consecutive
//! vintages' errors for one target correlate 0.94; one vintage's errors 3 h apart 0.52).
//! `hack/neso-error-correlation.py` recomputes both.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

pub use crate::plan::error::NESO_ERROR_BY_LEAD;

/// Share of error variance that is shared between issues (target-time component): the
/// correlation of the errors two consecutive NESO vintages (3 h apart) make for the same
/// target, 0.88-0.98 by lead, 0.94 over leads 0-48 h.
const W_SHARED: f64 = 0.94;
/// Correlation time of the target-time component, hours: NESO's error for targets 3 h
/// apart in one vintage correlates 0.52, exp(-3/4.6).
const TAU_SHARED_H: f64 = 4.6;
/// Correlation time of the per-issue component along the lead, hours (an assumption: it
/// carries 6 % of the variance).
const TAU_ISSUE_H: f64 = 6.0;

/// The calibrated error model for one trace and seed.
#[derive(Debug, Clone)]
pub struct NoiseModel {
    seed: u64,
    step_secs: i64,
    /// (upper lead bound h, sigma, bias) per bucket.
    buckets: [(f64, f64, f64); 5],
    /// Target-time component, one value per trace slot.
    shared: Vec<f64>,
}

impl NoiseModel {
    /// Builds the model for a trace of `slots` slots of `step_secs`, with the NESO error
    /// times `scale` (see [`crate::plan::error`]: 1 is GB's grams, the per-zone model
    /// scales them by the zone's persistence error over GB's).
    pub fn new(seed: u64, step_secs: i64, slots: usize, scale: f64) -> Self {
        let scale = if scale.is_finite() {
            scale.max(0.0)
        } else {
            1.0
        };
        let buckets = NESO_ERROR_BY_LEAD
            .map(|(h, mae, bias)| (h, scale * sigma_for(mae, bias), scale * bias));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Stream 0 is the shared component; per-issue streams start at 1.
        rng.set_stream(0);
        let shared = ar1(&mut rng, slots, step_secs as f64 / 3600.0 / TAU_SHARED_H);
        Self {
            seed,
            step_secs,
            buckets,
            shared,
        }
    }

    /// Error (g) to add to the truth of target slots `first_slot ..` as issued at lead
    /// `first_lead_secs` for the first one. Deterministic in (seed, `issue_key`).
    pub fn errors(
        &self,
        issue_key: u64,
        first_slot: usize,
        first_lead_secs: i64,
        n: usize,
    ) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(issue_key.wrapping_add(1));
        let own = ar1(&mut rng, n, self.step_secs as f64 / 3600.0 / TAU_ISSUE_H);
        (0..n)
            .map(|k| {
                let lead_h = (first_lead_secs + k as i64 * self.step_secs).max(0) as f64 / 3600.0;
                let (sigma, bias) = self.bucket(lead_h);
                let a = self.shared.get(first_slot + k).copied().unwrap_or(0.0);
                bias + sigma * (W_SHARED.sqrt() * a + (1.0 - W_SHARED).sqrt() * own[k])
            })
            .collect()
    }

    fn bucket(&self, lead_h: f64) -> (f64, f64) {
        let b = self
            .buckets
            .iter()
            .find(|(upper, _, _)| lead_h < *upper)
            .unwrap_or(&self.buckets[4]);
        (b.1, b.2)
    }
}

/// Unit-variance Gaussian AR(1) with coefficient exp(-dt_over_tau).
fn ar1(rng: &mut ChaCha8Rng, n: usize, dt_over_tau: f64) -> Vec<f64> {
    let rho = (-dt_over_tau).exp();
    let innov = (1.0 - rho * rho).sqrt();
    let mut out = Vec::with_capacity(n);
    let mut z: f64 = rng.sample(StandardNormal);
    for _ in 0..n {
        out.push(z);
        let e: f64 = rng.sample(StandardNormal);
        z = rho * z + innov * e;
    }
    out
}

/// sigma such that E|bias + sigma Z| = mae (requires mae > |bias|), by bisection: the
/// left side grows monotonically from |bias| at sigma = 0.
fn sigma_for(mae: f64, bias: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 4.0 * mae);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if folded_normal_mean(bias, mid) < mae {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// E|X| for X ~ N(mu, sigma^2).
fn folded_normal_mean(mu: f64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return mu.abs();
    }
    let r = mu / sigma;
    sigma * (2.0 / std::f64::consts::PI).sqrt() * (-r * r / 2.0).exp()
        + mu * erf(r / std::f64::consts::SQRT_2)
}

/// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): plenty for calibrating grams.
fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_reproduces_the_mae() {
        for (_, mae, bias) in NESO_ERROR_BY_LEAD {
            let s = sigma_for(mae, bias);
            assert!((folded_normal_mean(bias, s) - mae).abs() < 1e-6);
        }
        assert!((erf(0.5) - 0.520_499_877_8).abs() < 1e-6);
    }

    /// Over many issues the empirical MAE and bias per lead bucket match NESO's.
    #[test]
    fn empirical_error_matches_neso_by_lead() {
        let step = 3600;
        let m = NoiseModel::new(7, step, 24 * 400, 1.0);
        let mut acc = [(0.0f64, 0.0f64, 0usize); 5];
        for issue in 0..(24 * 350) {
            let e = m.errors(issue as u64, issue, 0, 48);
            for (k, v) in e.iter().enumerate() {
                let lead = k as f64;
                let b = NESO_ERROR_BY_LEAD
                    .iter()
                    .position(|(u, _, _)| lead < *u)
                    .unwrap_or(4);
                acc[b].0 += v.abs();
                acc[b].1 += v;
                acc[b].2 += 1;
            }
        }
        for (b, (_, mae, bias)) in NESO_ERROR_BY_LEAD.iter().enumerate() {
            let n = acc[b].2 as f64;
            let (m_mae, m_bias) = (acc[b].0 / n, acc[b].1 / n);
            assert!(
                (m_mae - mae).abs() < 0.06 * mae,
                "bucket {b}: MAE {m_mae} vs {mae}"
            );
            assert!(
                (m_bias - bias).abs() < 3.0,
                "bucket {b}: bias {m_bias} vs {bias}"
            );
        }
    }

    /// The per-zone model is the same draws scaled: a quarter of the grams at scale 0.25.
    #[test]
    fn scale_multiplies_every_error() {
        let full = NoiseModel::new(3, 3600, 500, 1.0);
        let quarter = NoiseModel::new(3, 3600, 500, 0.25);
        let (a, b) = (full.errors(9, 9, 0, 48), quarter.errors(9, 9, 0, 48));
        for (x, y) in a.iter().zip(&b) {
            assert!((x * 0.25 - y).abs() < 1e-9, "{x} {y}");
        }
        assert!(NoiseModel::new(3, 3600, 500, 0.0)
            .errors(9, 9, 0, 48)
            .iter()
            .all(|e| *e == 0.0));
    }

    #[test]
    fn deterministic_per_issue_and_autocorrelated() {
        let m = NoiseModel::new(1, 3600, 1000, 1.0);
        assert_eq!(m.errors(5, 5, 0, 48), m.errors(5, 5, 0, 48));
        assert_ne!(m.errors(5, 5, 0, 48), m.errors(6, 5, 0, 48));
        // Neighbouring hours are strongly correlated (lag-1 correlation well above 0.5).
        let e: Vec<f64> = (0..400usize)
            .flat_map(|i| m.errors(i as u64, i, 0, 2))
            .collect();
        let (mut num, mut den) = (0.0, 0.0);
        for pair in e.chunks(2) {
            num += (pair[0] - 2.8) * (pair[1] - 2.8);
            den += (pair[0] - 2.8).powi(2);
        }
        assert!(num / den > 0.5, "lag-1 correlation {}", num / den);
    }
}
