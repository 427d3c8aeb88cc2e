//! The slot model every strategy plans on: `[now, end)` cut at the forecast's grid
//! boundaries (so the first slot may be partial, and the last one ends at the deadline),
//! in integer milliseconds relative to `now`.
//!
//! Milliseconds rather than seconds because `now` need not sit on a whole second, and a
//! transition the planner returns must land exactly on the grid boundary it was aimed at:
//! otherwise the next call would see a sliver of the previous slot and could plan a
//! pointless millisecond-long run.
//!
//! Where the forecast does not cover part of `[now, end)` (it starts late, or ends before
//! the deadline and the caller did not extend it) that part is one slot valued at the
//! forecast's mean: a neutral guess that neither attracts nor repels work, and keeps the
//! slot count bounded by the forecast's length whatever the deadline.

use chrono::{DateTime, TimeDelta, Utc};

use crate::series::Series;

/// Milliseconds per hour: integrals here are in (g/kWh)·ms; plans report (g/kWh)·h.
pub(crate) const MS_PER_HOUR: f64 = 3_600_000.0;

/// Slots over `[0, end)` in ms relative to `now`, with the cumulative integral.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    /// `n + 1` strictly increasing boundaries, `bounds[0] == 0`, `bounds[n] == end`.
    pub bounds: Vec<i64>,
    /// Intensity of each of the `n` slots.
    pub vals: Vec<f64>,
    /// `prefix[k]` = integral over `[0, bounds[k])` in (g/kWh)·ms.
    prefix: Vec<f64>,
}

/// `to - from` in whole milliseconds, saturating (deadlines may be absurd).
pub(crate) fn offset_ms(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_milliseconds()
}

/// `now + ms`, saturating at chrono's range instead of panicking.
pub(crate) fn at(now: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    TimeDelta::try_milliseconds(ms)
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(if ms >= 0 {
            DateTime::<Utc>::MAX_UTC
        } else {
            DateTime::<Utc>::MIN_UTC
        })
}

impl Grid {
    /// Builds the slots of `[0, end)`; `splits` are extra cut points (lock ends) so that a
    /// constraint boundary is always a slot boundary.
    pub fn new(forecast: &Series, now: DateTime<Utc>, end: i64, splits: &[i64]) -> Grid {
        let end = end.max(0);
        let step = forecast.step_secs().saturating_mul(1000).max(1);
        let fs = offset_ms(now, forecast.start());
        let len = forecast.len() as i64;
        let fe = fs.saturating_add(step.saturating_mul(len));
        // The mean is only needed where the forecast does not reach (an O(len) sum).
        let mut fallback = None;
        let mut fallback = || {
            *fallback.get_or_insert_with(|| {
                if forecast.is_empty() {
                    0.0
                } else {
                    forecast.mean()
                }
            })
        };

        let mut bounds = Vec::with_capacity(
            (((end.min(fe) - fs.max(0)).max(0) / step) as usize).saturating_add(4 + splits.len()),
        );
        bounds.push(0);
        if fs < end && fe > 0 {
            // First grid boundary strictly after 0, then every step up to `end` or `fe`.
            let mut k = if fs > 0 { 0 } else { (-fs) / step + 1 };
            let mut b = fs.saturating_add(k.saturating_mul(step));
            while b < end && k <= len {
                if b > 0 {
                    bounds.push(b);
                }
                k += 1;
                b = b.saturating_add(step);
            }
        }
        let mut sorted = true;
        for &s in splits {
            if s > 0 && s < end {
                bounds.push(s);
                sorted = false;
            }
        }
        if !sorted {
            bounds.sort_unstable();
            bounds.dedup();
        }
        if end > 0 {
            bounds.push(end);
        }

        let values = forecast.values();
        // The forecast slot `idx` covers `[lo_b, hi_b)`; boundaries increase, so it usually
        // just moves to the next one (no division per slot).
        let (mut idx, mut lo_b, mut hi_b) = (0usize, i64::MAX, i64::MIN);
        let n = bounds.len() - 1;
        let mut vals = vec![0.0; n];
        for (v, w) in vals.iter_mut().zip(bounds.windows(2)) {
            let b = w[0];
            *v = if b < fs || b >= fe {
                fallback()
            } else {
                if b < lo_b || b >= hi_b {
                    if b >= hi_b && b < hi_b.saturating_add(step) {
                        idx += 1;
                        lo_b = hi_b;
                    } else {
                        let k = (b - fs) / step;
                        idx = usize::try_from(k).unwrap_or(usize::MAX);
                        lo_b = fs + k * step;
                    }
                    hi_b = lo_b.saturating_add(step);
                }
                values.get(idx).copied().unwrap_or_else(&mut fallback)
            };
        }
        Grid::from_slots(bounds, vals)
    }

    /// The grid of `vals` on `bounds` (one more boundary than values), with its integral.
    fn from_slots(bounds: Vec<i64>, vals: Vec<f64>) -> Grid {
        let mut prefix = Vec::with_capacity(vals.len() + 1);
        let mut acc = 0.0;
        prefix.push(acc);
        for (v, w) in vals.iter().zip(bounds.windows(2)) {
            acc += v * (w[1] - w[0]) as f64;
            prefix.push(acc);
        }
        Grid {
            bounds,
            vals,
            prefix,
        }
    }

    /// The same slots with the first ones valued 0 (to pin a run there): the first slot,
    /// and each next one while the pinned time ends before `at_least` ms.
    pub fn with_free_start(&self, at_least: i64) -> Grid {
        let mut vals = self.vals.clone();
        for (k, v) in vals.iter_mut().enumerate() {
            *v = 0.0;
            if self.bounds[k + 1] >= at_least {
                break;
            }
        }
        Grid::from_slots(self.bounds.clone(), vals)
    }

    pub fn len(&self) -> usize {
        self.vals.len()
    }

    pub fn end(&self) -> i64 {
        self.bounds.last().copied().unwrap_or(0)
    }

    pub fn dur(&self, k: usize) -> i64 {
        self.bounds[k + 1] - self.bounds[k]
    }

    /// Index of the slot containing `x` (the last slot for `x >= end`, 0 for `x <= 0`).
    pub fn locate(&self, x: i64) -> usize {
        let n = self.len();
        if n == 0 {
            return 0;
        }
        self.bounds
            .partition_point(|&b| b <= x)
            .saturating_sub(1)
            .min(n - 1)
    }

    /// Integral over `[0, bounds[i])` in (g/kWh)·ms.
    pub fn prefix(&self, i: usize) -> f64 {
        self.prefix[i]
    }

    /// Integral over `[0, x)` in (g/kWh)·ms, given the slot `k` containing `x`.
    #[inline]
    fn prefix_at(&self, k: usize, x: i64) -> f64 {
        if self.len() == 0 {
            return 0.0;
        }
        let x = x.clamp(0, self.end());
        self.prefix[k] + (x - self.bounds[k]) as f64 * self.vals[k]
    }

    /// Integral over `[a, b)` in (g/kWh)·ms (clamped to the grid).
    pub fn cost(&self, a: i64, b: i64) -> f64 {
        if b <= a {
            return 0.0;
        }
        self.prefix_at(self.locate(b), b) - self.prefix_at(self.locate(a), a)
    }

    /// Sum of [`Grid::cost`] over intervals.
    pub fn cost_of(&self, blocks: &[(i64, i64)]) -> f64 {
        blocks.iter().map(|&(a, b)| self.cost(a, b)).sum()
    }
}

/// Evaluates the cumulative integral at increasing positions in amortised O(1).
pub(crate) struct Cursor<'g> {
    grid: &'g Grid,
    k: usize,
}

impl<'g> Cursor<'g> {
    pub fn new(grid: &'g Grid) -> Self {
        Cursor { grid, k: 0 }
    }

    /// Integral over `[0, x)`; `x` must not decrease between calls.
    #[inline]
    pub fn prefix(&mut self, x: i64) -> f64 {
        let g = self.grid;
        let n = g.len();
        if n == 0 {
            return 0.0;
        }
        while self.k + 1 < n && g.bounds[self.k + 1] <= x {
            self.k += 1;
        }
        g.prefix_at(self.k, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn partial_first_and_last_slots_and_uncovered_parts() {
        let s = Series::new(t0(), 3600, vec![10.0, 20.0, 30.0]).unwrap();
        // now 30 min into slot 0; end 30 min after the forecast ends.
        let now = t0() + TimeDelta::minutes(30);
        let g = Grid::new(&s, now, 3 * 3_600_000, &[]);
        assert_eq!(
            g.bounds,
            vec![0, 1_800_000, 5_400_000, 9_000_000, 10_800_000]
        );
        assert_eq!(g.vals, vec![10.0, 20.0, 30.0, 20.0]);
        let want = s.integrate(now, s.end()).unwrap() * MS_PER_HOUR;
        assert!((g.cost(0, 9_000_000) - want).abs() < 1e-6);
        // Before the forecast starts: the mean.
        let early = t0() - TimeDelta::hours(1);
        let g = Grid::new(&s, early, 2 * 3_600_000, &[1000]);
        assert_eq!(g.bounds, vec![0, 1000, 3_600_000, 7_200_000]);
        assert_eq!(g.vals, vec![20.0, 20.0, 10.0]);
    }

    #[test]
    fn cursor_matches_cost() {
        let s = Series::new(t0(), 300, (0..50).map(|i| (i * 7 % 13) as f64).collect()).unwrap();
        let g = Grid::new(&s, t0() + TimeDelta::seconds(17), 10_000_000, &[]);
        let mut c = Cursor::new(&g);
        for x in (0..10_000_000).step_by(123_457) {
            assert!((c.prefix(x) - g.cost(0, x)).abs() < 1e-6);
        }
    }

    #[test]
    fn empty_and_degenerate() {
        let s = Series::new(t0(), 60, vec![5.0]).unwrap();
        let g = Grid::new(&s, t0(), 0, &[]);
        assert_eq!(g.len(), 0);
        assert_eq!(g.cost(0, 100), 0.0);
        assert_eq!(at(t0(), i64::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
