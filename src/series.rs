//! Time-indexed carbon-intensity series (gCO2eq/kWh) at a fixed step.
//!
//! A [`Series`] is the one representation every forecast provider normalises to and every
//! strategy plans on. Value `i` is the mean intensity over the half-open interval
//! `[start + i*step, start + (i+1)*step)`. The type is pure: no clock, no I/O.

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;

use crate::timefmt;

/// Why a series could not be built or queried.
#[derive(Debug, Error, PartialEq)]
pub enum SeriesError {
    #[error("step must be a positive whole number of seconds, got {0}s")]
    BadStep(i64),
    #[error("value {index} ({value}) is not a finite, non-negative intensity")]
    BadValue { index: usize, value: f64 },
    #[error("series is empty")]
    Empty,
    #[error("cannot resample a {from}s series to {to}s: one step must divide the other")]
    IncompatibleStep { from: i64, to: i64 },
    #[error(
        "interval {} .. {} is not covered by the series ({} .. {})",
        timefmt::format(*.from),
        timefmt::format(*.to),
        timefmt::format(*.start),
        timefmt::format(*.end)
    )]
    NotCovered {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// Intensity values (gCO2eq/kWh) at a fixed step starting at `start`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    start: DateTime<Utc>,
    step_secs: i64,
    values: Vec<f64>,
}

impl Series {
    /// Builds a series; rejects a non-positive step, an empty vector and any value that is
    /// NaN, infinite or negative (an intensity can be zero, never below).
    pub fn new(
        start: DateTime<Utc>,
        step_secs: i64,
        values: Vec<f64>,
    ) -> Result<Self, SeriesError> {
        if step_secs <= 0 {
            return Err(SeriesError::BadStep(step_secs));
        }
        if values.is_empty() {
            return Err(SeriesError::Empty);
        }
        if let Some((index, &value)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || **v < 0.0)
        {
            return Err(SeriesError::BadValue { index, value });
        }
        Ok(Self {
            start,
            step_secs,
            values,
        })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// First instant after the last slot.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + TimeDelta::seconds(self.step_secs * self.values.len() as i64)
    }

    pub fn step_secs(&self) -> i64 {
        self.step_secs
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Start time of slot `i`.
    pub fn slot_start(&self, i: usize) -> DateTime<Utc> {
        self.start + TimeDelta::seconds(self.step_secs * i as i64)
    }

    /// Index of the slot containing `t`, if any.
    pub fn index_of(&self, t: DateTime<Utc>) -> Option<usize> {
        if t < self.start || t >= self.end() {
            return None;
        }
        Some(((t - self.start).num_seconds() / self.step_secs) as usize)
    }

    /// Intensity in force at `t`, if the series covers it.
    pub fn value_at(&self, t: DateTime<Utc>) -> Option<f64> {
        self.index_of(t).map(|i| self.values[i])
    }

    /// The slots that overlap `[from, to)`, as a new series aligned to this one's grid.
    pub fn slice(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Series> {
        let from = from.max(self.start);
        let to = to.min(self.end());
        if from >= to {
            return None;
        }
        let a = self.index_of(from)?;
        let b = self
            .index_of(to - TimeDelta::seconds(1))
            .unwrap_or(self.len() - 1);
        Some(Series {
            start: self.slot_start(a),
            step_secs: self.step_secs,
            values: self.values[a..=b].to_vec(),
        })
    }

    /// Resamples to `step_secs`: a finer step repeats values (step function), a coarser one
    /// averages whole groups (a trailing partial group is averaged over what it has).
    pub fn resample(&self, step_secs: i64) -> Result<Series, SeriesError> {
        if step_secs <= 0 {
            return Err(SeriesError::BadStep(step_secs));
        }
        if step_secs == self.step_secs {
            return Ok(self.clone());
        }
        let values = if step_secs < self.step_secs {
            if self.step_secs % step_secs != 0 {
                return Err(SeriesError::IncompatibleStep {
                    from: self.step_secs,
                    to: step_secs,
                });
            }
            let k = (self.step_secs / step_secs) as usize;
            self.values
                .iter()
                .flat_map(|v| std::iter::repeat_n(*v, k))
                .collect()
        } else {
            if step_secs % self.step_secs != 0 {
                return Err(SeriesError::IncompatibleStep {
                    from: self.step_secs,
                    to: step_secs,
                });
            }
            let k = (step_secs / self.step_secs) as usize;
            self.values
                .chunks(k)
                .map(|c| c.iter().sum::<f64>() / c.len() as f64)
                .collect()
        };
        Series::new(self.start, step_secs, values)
    }

    /// Integral of intensity over `[from, to)` in (g/kWh)·h, i.e. grams per kW of constant
    /// power. Partial slots count pro rata. Multiply by kW to get grams.
    pub fn integrate(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<f64, SeriesError> {
        if to <= from {
            return Ok(0.0);
        }
        if from < self.start || to > self.end() {
            return Err(SeriesError::NotCovered {
                from,
                to,
                start: self.start,
                end: self.end(),
            });
        }
        let a = (from - self.start).num_milliseconds() as f64 / 1000.0;
        let b = (to - self.start).num_milliseconds() as f64 / 1000.0;
        let step = self.step_secs as f64;
        let first = (a / step).floor() as usize;
        let last = ((b / step).ceil() as usize).min(self.len());
        let mut secs_weighted = 0.0;
        for i in first..last {
            let s = i as f64 * step;
            let e = s + step;
            let overlap = e.min(b) - s.max(a);
            if overlap > 0.0 {
                secs_weighted += overlap * self.values[i];
            }
        }
        Ok(secs_weighted / 3600.0)
    }

    /// Mean intensity over the whole series.
    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
    }

    #[test]
    fn rejects_bad_values_and_steps() {
        assert_eq!(
            Series::new(t(0), 0, vec![1.0]),
            Err(SeriesError::BadStep(0))
        );
        assert_eq!(Series::new(t(0), 3600, vec![]), Err(SeriesError::Empty));
        assert!(matches!(
            Series::new(t(0), 3600, vec![1.0, f64::NAN]),
            Err(SeriesError::BadValue { index: 1, .. })
        ));
        assert!(matches!(
            Series::new(t(0), 3600, vec![-1.0]),
            Err(SeriesError::BadValue { index: 0, .. })
        ));
    }

    #[test]
    fn integrates_partial_slots_pro_rata() {
        let s = Series::new(t(0), 3600, vec![100.0, 200.0, 300.0]).unwrap();
        assert_eq!(s.integrate(t(0), t(3)).unwrap(), 600.0);
        let half = t(0) + TimeDelta::minutes(30);
        assert_eq!(
            s.integrate(half, t(1) + TimeDelta::minutes(30)).unwrap(),
            150.0
        );
        assert!(s.integrate(t(0), t(4)).is_err());
        assert_eq!(s.integrate(t(2), t(1)).unwrap(), 0.0);
    }

    #[test]
    fn resample_both_ways_keeps_the_integral() {
        let s = Series::new(t(0), 3600, vec![100.0, 200.0, 300.0, 400.0]).unwrap();
        let fine = s.resample(300).unwrap();
        assert_eq!(fine.len(), 48);
        assert_eq!(fine.end(), s.end());
        let coarse = s.resample(7200).unwrap();
        assert_eq!(coarse.values(), &[150.0, 350.0]);
        for r in [&fine, &coarse] {
            assert!((r.integrate(t(0), t(4)).unwrap() - 1000.0).abs() < 1e-9);
        }
        assert!(s.resample(7000).is_err());
    }

    #[test]
    fn slice_and_lookup() {
        let s = Series::new(t(0), 3600, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let sl = s.slice(t(1) + TimeDelta::minutes(10), t(3)).unwrap();
        assert_eq!(sl.start(), t(1));
        assert_eq!(sl.values(), &[2.0, 3.0]);
        assert_eq!(s.value_at(t(3)), Some(4.0));
        assert_eq!(s.value_at(t(4)), None);
        assert!(s.slice(t(5), t(6)).is_none());
    }
}
