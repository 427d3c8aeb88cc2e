//! The `embedded` source: real hourly traces shipped in the binary (see [`crate::data`]),
//! replayed onto the current calendar.
//!
//! It is not a forecast of today's grid. It exists so the operator works out of the box
//! (no API key, air-gapped clusters, demos) and as the fallback when a live provider is
//! down: real data has the right daily and weekly shape, which is what the planner exploits.
//! Every forecast it returns has `historical_replay: true`, which status and logs surface.
//!
//! Mapping `now` into a trace: shift by a whole number of weeks (so weekday and UTC
//! hour-of-day are kept) close to a whole number of years (so the season is kept), choosing
//! the most recent year for which the trace covers `history` before and `horizon` after the
//! mapped instant. Local hour-of-day may differ by one hour across DST changes; that is
//! accepted.
//!
//! History is the same replay: the trace over `[from, to)` under the shift a fetch at `now`
//! uses, so the past it reports is the past its forecasts showed. No network, no repair
//! (the traces are clean).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::provider::{Live, Past, Provider};
use super::redact::Redactor;
use super::{Forecast, ForecastError, Signal};
use crate::series::Series;
use crate::timefmt;

pub const NAME: &str = "embedded";

/// Loads the trace of a zone; the shipped one reads [`crate::data`], tests pass their own.
pub type TraceLoader = Arc<dyn Fn(&str) -> Result<Series, ForecastError> + Send + Sync>;

/// Replays embedded traces. Cheap to clone the `Arc` it is built into; decompressed traces
/// are kept in memory after first use.
pub struct EmbeddedSource {
    loader: TraceLoader,
    history: TimeDelta,
    horizon: TimeDelta,
    traces: Mutex<HashMap<String, Arc<Series>>>,
}

impl EmbeddedSource {
    /// The traces shipped in the binary, with `horizon` of future and 7 days of history.
    pub fn shipped(horizon: TimeDelta) -> Self {
        let loader: TraceLoader = Arc::new(|zone: &str| {
            let canonical =
                crate::data::canonical_zone(zone).ok_or_else(|| ForecastError::UnknownRegion {
                    provider: NAME.into(),
                    region: zone.into(),
                    hint: format!(
                        "the embedded traces cover {}",
                        crate::data::zones().join(", ")
                    ),
                })?;
            crate::data::load_zone(canonical).map_err(|e| ForecastError::Unavailable {
                provider: NAME.into(),
                detail: format!("cannot load the embedded trace for {canonical}: {e}"),
            })
        });
        Self::with_loader(loader, TimeDelta::days(7), horizon)
    }

    /// A replay of arbitrary traces (tests, or data loaded from elsewhere).
    pub fn with_loader(loader: TraceLoader, history: TimeDelta, horizon: TimeDelta) -> Self {
        Self {
            loader,
            history,
            horizon,
            traces: Mutex::new(HashMap::new()),
        }
    }

    fn trace(&self, zone: &str) -> Result<Arc<Series>, ForecastError> {
        let key = zone.to_ascii_uppercase();
        if let Ok(map) = self.traces.lock() {
            if let Some(t) = map.get(&key) {
                return Ok(t.clone());
            }
        }
        let loaded = Arc::new((self.loader)(zone)?);
        if let Ok(mut map) = self.traces.lock() {
            map.insert(key, loaded.clone());
        }
        Ok(loaded)
    }
}

/// The whole-week shift that maps `now` into `[trace_start + history, trace_end - horizon]`,
/// as close to a whole number of years back as possible. `None` if the trace is too short.
pub fn week_shift(
    now: DateTime<Utc>,
    trace_start: DateTime<Utc>,
    trace_end: DateTime<Utc>,
    history: TimeDelta,
    horizon: TimeDelta,
) -> Option<i64> {
    let week = TimeDelta::weeks(1);
    let year_secs = 365.2425 * 86_400.0;
    let fits = |k: i64| {
        let mapped = now - week * k as i32;
        mapped - history >= trace_start && mapped + horizon <= trace_end
    };
    // Years back from now; also allow "years forward" for a clock set before the trace.
    let span_years = ((now - trace_start).num_seconds().abs() as f64 / year_secs).ceil() as i64 + 2;
    for n in (0..=span_years).flat_map(|n| [n, -n]) {
        let k = ((n as f64 * year_secs) / (7.0 * 86_400.0)).round() as i64;
        if fits(k) {
            return Some(k);
        }
    }
    None
}

impl EmbeddedSource {
    /// The trace of `region` and the shift that maps `now` into it.
    fn replay(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Series>, TimeDelta), ForecastError> {
        let trace = self.trace(region)?;
        let k = week_shift(now, trace.start(), trace.end(), self.history, self.horizon)
            .ok_or_else(|| ForecastError::Unavailable {
                provider: NAME.into(),
                detail: format!(
                    "the {region} trace ({} .. {}) is too short to replay {} h of history and {} h of horizon",
                    timefmt::format(trace.start()),
                    timefmt::format(trace.end()),
                    self.history.num_hours(),
                    self.horizon.num_hours()
                ),
            })?;
        Ok((trace, TimeDelta::weeks(k)))
    }

    /// The trace's slots over `[from, to)` in real time (`from - shift` in the trace), moved
    /// onto the current calendar; `None` if the trace has none there.
    fn shifted(
        trace: &Series,
        shift: TimeDelta,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<Series>, ForecastError> {
        trace
            .slice(from - shift, to - shift)
            .map(|s| Series::new(s.start() + shift, s.step_secs(), s.values().to_vec()))
            .transpose()
            .map_err(|e| ForecastError::Invalid {
                provider: NAME.into(),
                detail: e.to_string(),
            })
    }
}

#[async_trait]
impl Provider for EmbeddedSource {
    const NAME: &'static str = NAME;
    const SIGNAL: Signal = Signal::Average;

    async fn forecast(&self, q: Live<'_>, _: &mut Redactor) -> Result<Forecast, ForecastError> {
        let Live { region, now } = q;
        let (trace, shift) = self.replay(region, now)?;
        let series = Self::shifted(&trace, shift, now - self.history, now + self.horizon)?
            .ok_or_else(|| ForecastError::Unavailable {
                provider: NAME.into(),
                detail: format!("the {region} trace does not cover {}", now - shift),
            })?;
        Ok(Forecast {
            region: region.to_string(),
            source: NAME.to_string(),
            signal: Signal::Average,
            generated_at: now,
            historical_replay: true,
            series,
        })
    }

    async fn past(&self, q: Past<'_>, _: &mut Redactor) -> Result<Series, ForecastError> {
        let (trace, shift) = self.replay(q.region, q.now)?;
        Self::shifted(&trace, shift, q.from, q.to)?.ok_or_else(|| ForecastError::Unavailable {
            provider: NAME.into(),
            detail: format!(
                "the {} trace has no data for {} .. {}",
                q.region,
                timefmt::format(q.from),
                timefmt::format(q.to)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::ForecastSource;
    use chrono::{Datelike, TimeZone, Timelike};

    fn synthetic() -> EmbeddedSource {
        // Two years of hourly data whose value encodes hour-of-week, so the replay's
        // alignment is visible in the output.
        let start = Utc.with_ymd_and_hms(2021, 1, 4, 0, 0, 0).unwrap(); // a Monday
        let values: Vec<f64> = (0..2 * 365 * 24).map(|h| (h % 168) as f64 + 1.0).collect();
        let trace = Series::new(start, 3600, values).unwrap();
        let loader: TraceLoader = Arc::new(move |z: &str| {
            if z.eq_ignore_ascii_case("DE") {
                Ok(trace.clone())
            } else {
                Err(ForecastError::UnknownRegion {
                    provider: NAME.into(),
                    region: z.into(),
                    hint: "known: DE".into(),
                })
            }
        });
        EmbeddedSource::with_loader(loader, TimeDelta::days(7), TimeDelta::hours(72))
    }

    #[tokio::test]
    async fn replays_keeping_weekday_and_hour() {
        let src = synthetic();
        let now = Utc.with_ymd_and_hms(2026, 5, 13, 14, 20, 0).unwrap(); // a Wednesday
        let f = src.fetch("DE", now).await.unwrap();
        assert!(f.historical_replay);
        assert_eq!(f.source, "embedded");
        assert!(f.series.start() <= now - TimeDelta::days(7));
        assert!(f.series.end() >= now + TimeDelta::hours(72));
        // Hour-of-week 0 is Monday 00:00 UTC; Wednesday 14:00 is 2*24+14.
        let v = f.series.value_at(now).unwrap();
        assert_eq!(v, (2 * 24 + 14) as f64 + 1.0);
        let s = f.series.start();
        assert_eq!((s.minute(), s.second()), (0, 0));
        let _ = s.weekday();
    }

    #[test]
    fn shift_keeps_season() {
        let ts = Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap();
        let te = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap();
        let k = week_shift(now, ts, te, TimeDelta::days(7), TimeDelta::hours(72)).unwrap();
        let mapped = now - TimeDelta::weeks(k);
        assert_eq!(mapped.year(), 2023);
        assert!((mapped.ordinal() as i32 - now.ordinal() as i32).abs() <= 4);
        // Inside the trace: no shift.
        let inside = Utc.with_ymd_and_hms(2022, 6, 1, 0, 0, 0).unwrap();
        assert_eq!(
            week_shift(inside, ts, te, TimeDelta::days(7), TimeDelta::hours(72)),
            Some(0)
        );
        // Too short a trace.
        assert_eq!(
            week_shift(
                now,
                ts,
                ts + TimeDelta::days(2),
                TimeDelta::days(7),
                TimeDelta::hours(72)
            ),
            None
        );
    }

    #[tokio::test]
    async fn history_is_the_replayed_trace_over_the_span() {
        let src = synthetic();
        let now = Utc.with_ymd_and_hms(2026, 5, 13, 14, 20, 0).unwrap(); // a Wednesday
        let from = Utc.with_ymd_and_hms(2026, 5, 12, 0, 0, 0).unwrap(); // Tuesday 00:00
        let h = src
            .history("DE", from, from + TimeDelta::hours(24), now)
            .await
            .unwrap();
        assert_eq!((h.start(), h.step_secs(), h.len()), (from, 3600, 24));
        // Hour-of-week 24 (Tuesday 00:00) onwards, as the trace encodes it.
        let want: Vec<f64> = (0..24).map(|i| 24.0 + i as f64 + 1.0).collect();
        assert_eq!(h.values(), &want[..]);
        // The same values the forecast at now shows for those hours.
        let f = src.fetch("DE", now).await.unwrap();
        let shown = f.series.slice(from, from + TimeDelta::hours(24)).unwrap();
        assert_eq!(shown.values(), h.values());
        // Partial slots at both ends are the slots overlapping the span.
        let h = src
            .history(
                "DE",
                from + TimeDelta::minutes(30),
                from + TimeDelta::minutes(90),
                now,
            )
            .await
            .unwrap();
        assert_eq!((h.start(), h.values()), (from, &[25.0, 26.0][..]));
        // Before the trace: nothing to give.
        let long_ago = from - TimeDelta::days(20 * 365);
        let e = src
            .history("DE", long_ago, long_ago + TimeDelta::hours(1), now)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "unavailable");
    }

    #[tokio::test]
    async fn unknown_zone_names_it() {
        let e = synthetic().fetch("XX", Utc::now()).await.unwrap_err();
        assert_eq!(e.kind(), "unknown_region");
        assert!(e.to_string().contains("XX"));
    }
}
