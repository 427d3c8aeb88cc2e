//! Where the controller gets intensities, and the pure series helpers it plans and accounts
//! with.
//!
//! [`Feed`] is the narrow interface the reconciler needs: the region's series (observed past
//! plus forecast) and a provenance label. The operator implements it with the shared
//! per-region forecast cache (one upstream fetch per region per refresh), [`CacheFeed`];
//! `plan -f` reads the same cache through [`served`], and the reconcile tests use a static
//! feed.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::forecast::{ForecastError, Signal};
use crate::series::Series;

/// A region's intensities as the controller uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct Intensities {
    /// Observed past and forecast future, gCO2eq/kWh (shared: many jobs plan with one).
    pub series: Arc<Series>,
    /// For status and logs, e.g. `embedded (historical replay)`.
    pub provenance: String,
    /// Whether the past of `series` is a record of the region's intensities: false for a
    /// fallback source standing in for a failed primary (it plans, it never accounts).
    pub live_is_record: bool,
    /// The provider's recorded history (its history or actuals endpoint) over a past the
    /// live data does not reach, when it was needed and could be had.
    pub history: Option<Arc<Series>>,
    /// The forecast part is the record itself (an exact replay, `simulate --forecast
    /// perfect`): the planner takes it at face value instead of allowing for the
    /// calibrated error ([`crate::plan::error`]).
    pub exact: bool,
    /// What the values measure: the average (consumption mix) or the marginal (MOER)
    /// intensity. Planned on as given; the status says which.
    pub signal: Signal,
}

impl Intensities {
    /// Intensities from a provider's live answer alone.
    pub fn live(series: Series, provenance: String) -> Self {
        Self {
            series: Arc::new(series),
            provenance,
            live_is_record: true,
            history: None,
            exact: false,
            signal: Signal::Average,
        }
    }

    /// The error the planner allows for: none for an exact series, else the calibrated
    /// default for the zone the series describes.
    pub fn forecast_error(&self) -> crate::plan::ForecastError {
        if self.exact {
            crate::plan::ForecastError::NONE
        } else {
            crate::plan::ForecastError::calibrated(&self.series)
        }
    }

    /// The series the ledger may integrate the past with, best first: the live past (when
    /// it is a record), then the provider's history.
    pub fn recorded(&self) -> Vec<&Series> {
        let live = self.live_is_record.then_some(&*self.series);
        live.into_iter().chain(self.history.as_deref()).collect()
    }
}

/// Source of intensities for the reconciler.
#[async_trait]
pub trait Feed: Send + Sync {
    /// The region's intensities at `now`, with recorded history back to `since` when the
    /// live data does not reach it (best effort: `history` is what could be had).
    async fn get(
        &self,
        region: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError>;
}

/// The operator's feed: the shared per-region cache (one upstream fetch per region per
/// refresh, history merged in, stale/fallback data labelled in the provenance). A
/// reconcile never waits on upstream longer than [`CacheFeed::WAIT`]: due refreshes run in
/// the background and the last good forecast is planned with meanwhile.
pub struct CacheFeed(pub Arc<crate::forecast::Cache>);

impl CacheFeed {
    /// How long a reconcile waits for a region's first forecast.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(2);
}

#[async_trait]
impl Feed for CacheFeed {
    async fn get(
        &self,
        region: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError> {
        let c = self.0.serve(region, now, Self::WAIT).await?;
        Ok(Arc::new(
            served(&self.0, &c, region, now, since, Self::WAIT).await,
        ))
    }
}

/// What `cache` served as `c` for `region`, as [`Intensities`]: with the provider's recorded
/// history back to `since` when the forecast does not reach it (waiting at most `wait` for
/// it). The operator's feed and `plan -f` both read a forecast so.
pub async fn served(
    cache: &Arc<crate::forecast::Cache>,
    c: &crate::forecast::CachedForecast,
    region: &str,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    wait: std::time::Duration,
) -> Intensities {
    let history = match history_from(since, c.series()) {
        Some(from) => cache
            .history(region, from, c.series().start(), now, wait)
            .await
            .map(Arc::new),
        None => None,
    };
    Intensities {
        series: Arc::new(c.series().clone()),
        provenance: c.provenance(),
        live_is_record: !c.is_stand_in(),
        history,
        exact: false,
        signal: c.forecast.signal,
    }
}

/// Where to ask a provider's history from so that it covers `since`: the start of the
/// slot of `live`'s grid that `since` falls in (providers answer whole slots), or `None`
/// when `live` already reaches back to `since`.
pub fn history_from(since: DateTime<Utc>, live: &Series) -> Option<DateTime<Utc>> {
    let start = live.start();
    if since >= start {
        return None;
    }
    let step = live.step_secs().max(1);
    let slots = ((start - since).num_seconds() + step - 1) / step;
    Some(start - TimeDelta::seconds(slots * step))
}

/// Provenance label of a forecast.
pub fn provenance(source: &str, historical_replay: bool) -> String {
    if historical_replay {
        format!("{source} (historical replay)")
    } else {
        source.to_string()
    }
}

/// Intensity in force at `t`, clamped to the series' ends (for display).
pub fn value_clamped(series: &Series, t: DateTime<Utc>) -> f64 {
    if let Some(v) = series.value_at(t) {
        return v;
    }
    let vals = series.values();
    if t < series.start() {
        vals.first().copied().unwrap_or(0.0)
    } else {
        vals.last().copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
    }

    #[test]
    fn history_is_asked_from_the_slot_since_falls_in() {
        let live = Series::new(t(5), 3600, vec![1.0; 3]).unwrap();
        assert_eq!(history_from(t(5), &live), None);
        assert_eq!(history_from(t(6), &live), None);
        assert_eq!(history_from(t(2), &live), Some(t(2)));
        let mid = t(2) + TimeDelta::minutes(37);
        assert_eq!(history_from(mid, &live), Some(t(2)));
    }

    #[test]
    fn the_value_in_force_is_clamped_to_the_ends() {
        let s = Series::new(t(1), 3600, vec![100.0, 200.0]).unwrap();
        assert_eq!(value_clamped(&s, t(0)), 100.0);
        assert_eq!(value_clamped(&s, t(1)), 100.0);
        assert_eq!(value_clamped(&s, t(9)), 200.0);
    }
}
