//! Electricity Maps API v3: `GET {endpoint}/v3/carbon-intensity/forecast?zone=ZONE`
//! (optional `horizonHours`), header `auth-token`. Values are lifecycle gCO2eq/kWh of the
//! consumption mix (an average signal); `updatedAt` is the issue time.
//!
//! History: `GET {endpoint}/v3/carbon-intensity/past-range?zone=ZONE&start=ISO&end=ISO`,
//! answering `{"zone", "data": [...]}` with the forecast's point shape. The API caps one
//! request at 10 days of hourly data ([`MAX_SPAN`]), so longer spans are asked in
//! consecutive windows. `/history` (the last 24 h only) is not used: past-range covers it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::config::Secret;
use super::redact::Redactor;
use super::validate::{self, RawPoint};
use super::{http, Forecast, ForecastError, ForecastSource, Signal};
use crate::series::Series;
use crate::timefmt;

pub const NAME: &str = "electricitymaps";
pub const DEFAULT_ENDPOINT: &str = "https://api.electricitymap.org";
/// The longest span one past-range request may cover at the default (hourly) granularity.
pub const MAX_SPAN: TimeDelta = TimeDelta::days(10);

/// Client for one Electricity Maps account.
pub struct ElectricityMaps {
    endpoint: String,
    /// The `auth-token` header, marked sensitive (never printed by `Debug`, never indexed
    /// by HTTP/2 header compression).
    auth: HeaderValue,
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
        let mut auth =
            HeaderValue::from_str(token.expose()).map_err(|_| ForecastError::Config {
                provider: NAME.into(),
                detail: "ELECTRICITYMAPS_TOKEN contains characters an HTTP header cannot carry"
                    .into(),
            })?;
        auth.set_sensitive(true);
        let mut redact = Redactor::new();
        redact.secret(&token).url(&endpoint);
        Ok(Self {
            endpoint,
            auth,
            horizon_hours,
            client: http::client(NAME, timeout, http::Redirects::SameOrigin)?,
            redact,
        })
    }
}

/// A forecast (`forecast`) or past-range (`data`) answer.
#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    zone: Option<String>,
    #[serde(rename = "forecast", alias = "data")]
    points: Vec<Point>,
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

    async fn history(
        &self,
        region: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Series, ForecastError> {
        self.history_unredacted(region, from, to, now)
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
        let body = self
            .get("/v3/carbon-intensity/forecast", &query, region)
            .await?;
        let n = validate::normalise(NAME, points(&body), None, now)?;
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

    async fn history_unredacted(
        &self,
        region: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Series, ForecastError> {
        let mut all = Vec::new();
        for (a, b) in http::windows(from, to, now, MAX_SPAN) {
            let query = [
                ("zone", region.to_string()),
                ("start", timefmt::format(a)),
                ("end", timefmt::format(b)),
            ];
            let body = self
                .get("/v3/carbon-intensity/past-range", &query, region)
                .await?;
            all.extend(points(&body));
        }
        let n = validate::normalise_history(NAME, all, None, from, to)?;
        if !n.repairs.is_empty() {
            tracing::info!(region, repairs = ?n.repairs, "electricitymaps history repaired");
        }
        Ok(n.series)
    }

    /// One authenticated GET of `path`, its answer checked to be about `region`.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        region: &str,
    ) -> Result<Response, ForecastError> {
        let resp = self
            .client
            .get(http::join(&self.endpoint, path))
            .query(query)
            .header("auth-token", self.auth.clone())
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))?;
        let resp = http::check(NAME, resp, &self.redact)
            .await
            .map_err(|e| unknown_zone(e, region))?;
        let body: Response = http::json(NAME, resp).await?;
        match &body.zone {
            Some(z) if !z.eq_ignore_ascii_case(region) => Err(ForecastError::Invalid {
                provider: NAME.into(),
                detail: format!("asked for zone {region}, got {z}"),
            }),
            _ => Ok(body),
        }
    }
}

fn points(body: &Response) -> Vec<RawPoint> {
    body.points
        .iter()
        .map(|p| RawPoint::new(p.datetime, p.carbon_intensity))
        .collect()
}

/// A 404 whose body speaks of the zone is the API saying the zone does not exist (a 404
/// without it, e.g. a wrong `--forecast-endpoint` path, stays an upstream error).
fn unknown_zone(e: ForecastError, region: &str) -> ForecastError {
    match e {
        ForecastError::Upstream { ref detail, .. }
            if detail.starts_with("HTTP 404") && detail.to_ascii_lowercase().contains("zone") =>
        {
            ForecastError::UnknownRegion {
                provider: NAME.into(),
                region: region.to_string(),
                hint: format!(
                    "Electricity Maps has no zone of that name ({}): use a zone key such as DE, FR or US-CAL-CISO",
                    detail
                ),
            }
        }
        e => e,
    }
}
