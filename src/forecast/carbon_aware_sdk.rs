//! Green Software Foundation Carbon Aware SDK WebAPI:
//! `GET {endpoint}/emissions/forecasts/current?location=LOC` returns an array of
//! `{generatedAt, location, forecastData: [{location, timestamp, duration, value}],
//! optimalDataPoints}`; `duration` is in minutes, values in gCO2eq/kWh (the SDK converts
//! from its data source). HTTP 501 means the SDK's configured source has no forecasts.
//! No public endpoint exists: the user runs the SDK, so the endpoint is required.
//!
//! The signal is reported as marginal: the SDK's forecast sources (WattTime and the
//! Electricity Maps marginal endpoints) are marginal signals in most deployments.
//!
//! History: `GET {endpoint}/emissions/bylocation?location=LOC&time=ISO&toTime=ISO` returns
//! the SDK's `EmissionsData` array `[{location, time, rating, duration}]`: `rating` in
//! g/kWh, `duration` a .NET `TimeSpan` (`"01:00:00"`, `"1.02:00:00"` with days). HTTP 204
//! means no data for the span. The SDK states no span limit (its data source may have one),
//! so one request is made.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::provider::{self, Api, Live, Past, Provider};
use super::redact::Redactor;
use super::validate::RawPoint;
use super::{http, Forecast, ForecastError, Signal};
use crate::series::Series;
use crate::timefmt;

pub const NAME: &str = "carbon-aware-sdk";

pub struct CarbonAwareSdk {
    api: Api,
}

impl CarbonAwareSdk {
    pub fn new(endpoint: String, timeout: Duration) -> Result<Self, ForecastError> {
        Ok(Self {
            api: Api::new(NAME, endpoint, timeout)?,
        })
    }
}

#[derive(Deserialize)]
struct EmissionsForecast {
    #[serde(rename = "generatedAt")]
    generated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    location: Option<String>,
    #[serde(rename = "forecastData", default)]
    forecast_data: Vec<DataPoint>,
}

#[derive(Deserialize)]
struct DataPoint {
    timestamp: DateTime<Utc>,
    /// Minutes.
    #[serde(default)]
    duration: Option<i64>,
    value: Option<f64>,
}

/// One element of `/emissions/bylocation`.
#[derive(Deserialize)]
struct EmissionsData {
    #[serde(default)]
    location: Option<String>,
    time: DateTime<Utc>,
    rating: Option<f64>,
    /// A .NET `TimeSpan`.
    #[serde(default)]
    duration: Option<String>,
}

/// Whether an answer's `location` is `region` (an answer without one is).
fn same_location(location: Option<&str>, region: &str) -> bool {
    location.is_none_or(|l| l.eq_ignore_ascii_case(region))
}

/// The step the data states: the duration all points share, if they share a positive one.
fn declared_step(durations: &[i64]) -> Option<i64> {
    match durations.first() {
        Some(d) if *d > 0 && durations.iter().all(|x| x == d) => Some(*d),
        _ => None,
    }
}

/// The durations the points state, in seconds.
fn durations(data: &[&EmissionsData]) -> Result<Vec<i64>, ForecastError> {
    data.iter()
        .filter_map(|d| d.duration.as_deref())
        .map(|d| {
            timespan_secs(d).ok_or_else(|| ForecastError::Invalid {
                provider: NAME.into(),
                detail: format!("duration {d:?} is not a TimeSpan (hh:mm:ss)"),
            })
        })
        .collect()
}

/// Seconds of a .NET `TimeSpan` in its invariant form `[-][d.]hh:mm:ss[.fffffff]`.
fn timespan_secs(s: &str) -> Option<i64> {
    let s = s.trim();
    let (days, rest) = match s.split_once('.') {
        Some((d, r)) if r.contains(':') && !d.contains(':') => (d.parse::<i64>().ok()?, r),
        _ => (0, s),
    };
    let rest = rest.split('.').next()?;
    let hms: Vec<i64> = rest
        .split(':')
        .map(|x| x.parse::<i64>().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else { return None };
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[async_trait]
impl Provider for CarbonAwareSdk {
    const NAME: &'static str = NAME;
    const SIGNAL: Signal = Signal::Marginal;

    async fn forecast(&self, q: Live<'_>, _: &mut Redactor) -> Result<Forecast, ForecastError> {
        let Live { region, now } = q;
        let query = [("location", region.to_string())];
        let body: Vec<EmissionsForecast> =
            match self.get("/emissions/forecasts/current", &query).await? {
                Some(resp) => http::json(NAME, resp).await?,
                None => Vec::new(),
            };
        let f = body
            .into_iter()
            .find(|f| same_location(f.location.as_deref(), region))
            .ok_or_else(|| ForecastError::Unavailable {
                provider: NAME.into(),
                detail: format!("no forecast for location {region} in the response"),
            })?;
        // The SDK states each point's duration (minutes); a consistent one is the step.
        let durations: Vec<i64> = f.forecast_data.iter().filter_map(|p| p.duration).collect();
        let declared = declared_step(&durations).map(|d| d * 60);
        let points = f
            .forecast_data
            .iter()
            .map(|p| RawPoint::new(p.timestamp, p.value))
            .collect();
        provider::live::<Self>(q, f.generated_at.unwrap_or(now), points, declared)
    }

    async fn past(&self, q: Past<'_>, _: &mut Redactor) -> Result<Series, ForecastError> {
        let query = [
            ("location", q.region.to_string()),
            ("time", timefmt::format(q.from)),
            ("toTime", timefmt::format(q.to)),
        ];
        let body: Vec<EmissionsData> = match self.get("/emissions/bylocation", &query).await? {
            Some(resp) => http::json(NAME, resp).await?,
            None => Vec::new(),
        };
        let mine: Vec<&EmissionsData> = body
            .iter()
            .filter(|d| same_location(d.location.as_deref(), q.region))
            .collect();
        let step = declared_step(&durations(&mine)?);
        let points = mine
            .iter()
            .map(|d| RawPoint::new(d.time, d.rating))
            .collect();
        provider::recorded::<Self>(q, points, step)
    }

    fn redactor(&self) -> Redactor {
        self.api.redact.clone()
    }
}

impl CarbonAwareSdk {
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<reqwest::Response>, ForecastError> {
        let resp = self
            .api
            .get(path)
            .query(query)
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))?;
        let resp = http::check(NAME, resp, &self.api.redact).await?;
        Ok((resp.status() != reqwest::StatusCode::NO_CONTENT).then_some(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(timespan_secs("01:00:00"), Some(3600));
        assert_eq!(timespan_secs("00:05:00"), Some(300));
        assert_eq!(
            timespan_secs("1.12:24:02"),
            Some(86_400 + 12 * 3600 + 24 * 60 + 2)
        );
        assert_eq!(timespan_secs("00:30:00.0000000"), Some(1800));
        assert_eq!(timespan_secs("PT1H"), None);
        assert_eq!(timespan_secs("60"), None);
    }
}
