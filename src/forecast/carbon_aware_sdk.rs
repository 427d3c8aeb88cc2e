//! Green Software Foundation Carbon Aware SDK WebAPI:
//! `GET {endpoint}/emissions/forecasts/current?location=LOC` returns an array of
//! `{generatedAt, location, forecastData: [{location, timestamp, duration, value}],
//! optimalDataPoints}`; `duration` is in minutes, values in gCO2eq/kWh (the SDK converts
//! from its data source). HTTP 501 means the SDK's configured source has no forecasts.
//! No public endpoint exists: the user runs the SDK, so the endpoint is required.
//!
//! The signal is reported as marginal: the SDK's forecast sources (WattTime and the
//! Electricity Maps marginal endpoints) are marginal signals in most deployments.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::redact::Redactor;
use super::validate::{self, RawPoint};
use super::{http, Forecast, ForecastError, ForecastSource, Signal};

pub const NAME: &str = "carbon-aware-sdk";

pub struct CarbonAwareSdk {
    endpoint: String,
    client: reqwest::Client,
    redact: Redactor,
}

impl CarbonAwareSdk {
    pub fn new(endpoint: String, timeout: Duration) -> Result<Self, ForecastError> {
        let mut redact = Redactor::new();
        redact.url(&endpoint);
        Ok(Self {
            endpoint,
            client: http::client(NAME, timeout, http::Redirects::SameOrigin)?,
            redact,
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

#[async_trait]
impl ForecastSource for CarbonAwareSdk {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fetch(&self, region: &str, now: DateTime<Utc>) -> Result<Forecast, ForecastError> {
        self.fetch_unredacted(region, now)
            .await
            .map_err(|e| self.redact.error(e))
    }
}

impl CarbonAwareSdk {
    async fn fetch_unredacted(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Forecast, ForecastError> {
        let resp = self
            .client
            .get(http::join(&self.endpoint, "/emissions/forecasts/current"))
            .query(&[("location", region)])
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))?;
        let resp = http::check(NAME, resp, &self.redact).await?;
        let body: Vec<EmissionsForecast> = http::json(NAME, resp).await?;
        let f = body
            .into_iter()
            .find(|f| {
                f.location
                    .as_deref()
                    .is_none_or(|l| l.eq_ignore_ascii_case(region))
            })
            .ok_or_else(|| ForecastError::Unavailable {
                provider: NAME.into(),
                detail: format!("no forecast for location {region} in the response"),
            })?;
        // The SDK states each point's duration; a consistent one is the declared step.
        let durations: Vec<i64> = f.forecast_data.iter().filter_map(|p| p.duration).collect();
        let declared = match durations.first() {
            Some(d) if *d > 0 && durations.iter().all(|x| x == d) => Some(d * 60),
            _ => None,
        };
        let points = f
            .forecast_data
            .iter()
            .map(|p| RawPoint::new(p.timestamp, p.value))
            .collect();
        let n = validate::normalise(NAME, points, declared, now)?;
        if !n.repairs.is_empty() {
            tracing::info!(region, repairs = ?n.repairs, "carbon-aware-sdk forecast repaired");
        }
        Ok(Forecast {
            region: region.to_string(),
            source: NAME.to_string(),
            signal: Signal::Marginal,
            generated_at: f.generated_at.unwrap_or(now),
            historical_replay: false,
            series: n.series,
        })
    }
}
