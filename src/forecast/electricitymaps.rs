//! Electricity Maps API v3: `GET {endpoint}/v3/carbon-intensity/forecast?zone=ZONE`
//! (optional `horizonHours`), header `auth-token`. Values are lifecycle gCO2eq/kWh of the
//! consumption mix (an average signal); `updatedAt` is the issue time.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::config::Secret;
use super::redact::Redactor;
use super::validate::{self, RawPoint};
use super::{http, Forecast, ForecastError, ForecastSource, Signal};

pub const NAME: &str = "electricitymaps";
pub const DEFAULT_ENDPOINT: &str = "https://api.electricitymap.org";

/// Client for one Electricity Maps account.
pub struct ElectricityMaps {
    endpoint: String,
    token: Secret,
    horizon_hours: Option<i64>,
    client: reqwest::Client,
    redact: Redactor,
}

impl ElectricityMaps {
    pub fn new(
        endpoint: String,
        token: Secret,
        timeout: Duration,
        horizon_hours: Option<i64>,
    ) -> Result<Self, ForecastError> {
        let mut redact = Redactor::new();
        redact.secret(&token).url(&endpoint);
        Ok(Self {
            endpoint,
            token,
            horizon_hours,
            client: http::client(NAME, timeout)?,
            redact,
        })
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    zone: Option<String>,
    forecast: Vec<Point>,
    #[serde(rename = "updatedAt", default)]
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Point {
    #[serde(rename = "carbonIntensity")]
    carbon_intensity: Option<f64>,
    datetime: DateTime<Utc>,
}

#[async_trait]
impl ForecastSource for ElectricityMaps {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fetch(&self, region: &str, now: DateTime<Utc>) -> Result<Forecast, ForecastError> {
        self.fetch_unredacted(region, now)
            .await
            .map_err(|e| self.redact.error(e))
    }
}

impl ElectricityMaps {
    async fn fetch_unredacted(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Forecast, ForecastError> {
        let mut query = vec![("zone", region.to_string())];
        if let Some(h) = self.horizon_hours {
            query.push(("horizonHours", h.to_string()));
        }
        let resp = self
            .client
            .get(http::join(&self.endpoint, "/v3/carbon-intensity/forecast"))
            .query(&query)
            .header("auth-token", self.token.expose())
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))?;
        let resp = http::check(NAME, resp, &self.redact).await?;
        let body: Response = http::json(NAME, resp).await?;
        if let Some(z) = &body.zone {
            if !z.eq_ignore_ascii_case(region) {
                return Err(ForecastError::Invalid {
                    provider: NAME.into(),
                    detail: format!("asked for zone {region}, got {z}"),
                });
            }
        }
        let points = body
            .forecast
            .iter()
            .map(|p| RawPoint::new(p.datetime, p.carbon_intensity))
            .collect();
        let n = validate::normalise(NAME, points, None, now)?;
        if !n.repairs.is_empty() {
            tracing::info!(region, repairs = ?n.repairs, "electricitymaps forecast repaired");
        }
        Ok(Forecast {
            region: region.to_string(),
            source: NAME.to_string(),
            signal: Signal::Average,
            generated_at: body.updated_at.unwrap_or(now),
            historical_replay: false,
            series: n.series,
        })
    }
}
