//! What a forecast's error is expected to be, by lead time, for a zone: the calibrated
//! default the planner plans with when the provider does not say, and the size of the
//! error `simulate --forecast noisy` adds.
//!
//! **Calibration.** The 36 real NESO GB vintages of March 2023 (`data/README.md`), scored
//! on the NESO actuals, give the error (forecast − actual) per lead bucket in
//! [`NESO_ERROR_BY_LEAD`]. Other zones have no published vintages, so the GB error is scaled
//! by how hard the zone is to forecast relative to GB, measured the same way for every zone:
//! the **day-ahead persistence error**, the mean absolute difference between an hour and
//! the same hour a day earlier. It grows with both the intensity level and its day-to-day
//! variability, and it is what a forecast has to beat. GB's is [`GB_PERSISTENCE_MAE`]
//! (the embedded Electricity Maps GB trace, 2021-23, pinned by a test), so a zone's scale
//! is its own persistence error over GB's: FR 0.24, DE 1.86 on the embedded traces.
//!
//! With scale 1 the model is the absolute GB model (`simulate --noise absolute`).

use crate::series::Series;

/// (upper lead bound in hours, MAE g, bias g) per lead bucket, of the real NESO GB
/// forecasts; beyond 48 h the last row holds.
pub const NESO_ERROR_BY_LEAD: [(f64, f64, f64); 5] = [
    (2.0, 18.0, 2.8),
    (6.0, 24.5, 2.2),
    (12.0, 22.7, -1.4),
    (24.0, 24.5, -9.1),
    (f64::INFINITY, 28.3, -16.8),
];

/// Mean |x(t) − x(t − 24 h)| of the embedded GB trace (Electricity Maps, 2021-23), g.
pub const GB_PERSISTENCE_MAE: f64 = 37.7;

/// The expected forecast error of one zone: the NESO table times `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastError {
    /// 0 for a forecast known to be exact (the planner then takes it at face value).
    pub scale: f64,
}

impl ForecastError {
    /// A forecast with no error.
    pub const NONE: ForecastError = ForecastError { scale: 0.0 };

    /// The GB error as measured, unscaled.
    pub const ABSOLUTE: ForecastError = ForecastError { scale: 1.0 };

    /// The calibrated default for the zone `series` describes: its day-ahead persistence
    /// error over GB's. A series shorter than a day and a slot says nothing about that,
    /// and gets the GB scale.
    pub fn calibrated(series: &Series) -> Self {
        match persistence_mae(series) {
            Some(m) => ForecastError {
                scale: m / GB_PERSISTENCE_MAE,
            },
            None => Self::ABSOLUTE,
        }
    }

    /// (MAE, bias) in g at a lead of `lead_h` hours (a negative lead is the slot in
    /// progress, lead 0).
    pub fn at(&self, lead_h: f64) -> (f64, f64) {
        let (_, mae, bias) = NESO_ERROR_BY_LEAD
            .iter()
            .copied()
            .find(|(upper, _, _)| lead_h.max(0.0) < *upper)
            .unwrap_or(NESO_ERROR_BY_LEAD[4]);
        (mae * self.scale, bias * self.scale)
    }

    /// Whether the planner has anything to correct for.
    pub fn is_none(&self) -> bool {
        !(self.scale.is_finite() && self.scale > 0.0)
    }
}

/// Mean |x(t) − x(t − 1 day)| over a series, in its units; None when it spans at most a
/// day (or its step does not divide one).
pub fn persistence_mae(series: &Series) -> Option<f64> {
    let step = series.step_secs();
    if step <= 0 || 86_400 % step != 0 {
        return None;
    }
    let lag = (86_400 / step) as usize;
    let v = series.values();
    if v.len() <= lag {
        return None;
    }
    let sum: f64 = v[lag..].iter().zip(v).map(|(a, b)| (a - b).abs()).sum();
    let m = sum / (v.len() - lag) as f64;
    m.is_finite().then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_gb_reference_is_the_embedded_gb_trace() {
        let gb = crate::data::load_zone("GB").unwrap();
        let m = persistence_mae(&gb).unwrap();
        assert!(
            (m - GB_PERSISTENCE_MAE).abs() < 0.05,
            "GB persistence MAE {m}"
        );
        let fr = ForecastError::calibrated(&crate::data::load_zone("FR").unwrap());
        let de = ForecastError::calibrated(&crate::data::load_zone("DE").unwrap());
        assert!((fr.scale - 0.24).abs() < 0.01, "FR {}", fr.scale);
        assert!((de.scale - 1.86).abs() < 0.01, "DE {}", de.scale);
        // FR's 24-48 h error is about a quarter of GB's grams.
        let (mae, bias) = fr.at(30.0);
        assert!((mae - 28.3 * fr.scale).abs() < 1e-9 && (bias + 16.8 * fr.scale).abs() < 1e-9);
    }

    #[test]
    fn persistence_needs_more_than_a_day() {
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let day = Series::new(t0, 3600, vec![10.0; 24]).unwrap();
        assert_eq!(persistence_mae(&day), None);
        assert_eq!(ForecastError::calibrated(&day), ForecastError::ABSOLUTE);
        // Hour h of day 2 differs from day 1 by 2 g: MAE 2.
        let vals: Vec<f64> = (0..48).map(|i| if i < 24 { 10.0 } else { 12.0 }).collect();
        let two = Series::new(t0, 3600, vals).unwrap();
        assert_eq!(persistence_mae(&two), Some(2.0));
        assert_eq!(ForecastError::NONE.at(5.0), (0.0, 0.0));
        assert!(ForecastError::NONE.is_none() && !ForecastError::ABSOLUTE.is_none());
        assert_eq!(ForecastError::ABSOLUTE.at(-1.0), (18.0, 2.8));
        assert_eq!(ForecastError::ABSOLUTE.at(100.0), (28.3, -16.8));
    }
}
