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
use super::provider::{self, Api, Live, Past, Provider};
use super::redact::Redactor;
use super::validate::RawPoint;
use super::{http, Forecast, ForecastError, Signal};
use crate::series::Series;
use crate::timefmt;

pub const NAME: &str = "electricitymaps";
pub const DEFAULT_ENDPOINT: &str = "https://api.electricitymap.org";
/// The longest span one past-range request may cover at the default (hourly) granularity.
pub const MAX_SPAN: TimeDelta = TimeDelta::days(10);

/// Client for one Electricity Maps account.
pub struct ElectricityMaps {
    /// Its redactor knows the token too.
    api: Api,
    /// The `auth-token` header, marked sensitive (never printed by `Debug`, never indexed
    /// by HTTP/2 header compression).
    auth: HeaderValue,
    horizon_hours: Option<i64>,
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
        let mut api = Api::new(NAME, endpoint, timeout)?;
        api.redact.secret(&token);
        Ok(Self {
            api,
            auth,
            horizon_hours,
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
impl Provider for ElectricityMaps {
    const NAME: &'static str = NAME;
    const SIGNAL: Signal = Signal::Average;

    async fn forecast(&self, q: Live<'_>, _: &mut Redactor) -> Result<Forecast, ForecastError> {
        let Live { region, now } = q;
        let mut query = vec![("zone", region.to_string())];
        if let Some(h) = self.horizon_hours {
            query.push(("horizonHours", h.to_string()));
        }
        let body = self
            .get("/v3/carbon-intensity/forecast", &query, region)
            .await?;
        provider::live::<Self>(q, body.updated_at.unwrap_or(now), points(&body), None)
    }

    async fn past(&self, q: Past<'_>, _: &mut Redactor) -> Result<Series, ForecastError> {
        let mut all = Vec::new();
        for (a, b) in http::windows(q.from, q.to, q.now, MAX_SPAN) {
            let query = [
                ("zone", q.region.to_string()),
                ("start", timefmt::format(a)),
                ("end", timefmt::format(b)),
            ];
            let body = self
                .get("/v3/carbon-intensity/past-range", &query, q.region)
                .await?;
            all.extend(points(&body));
        }
        provider::recorded::<Self>(q, all, None)
    }

    fn redactor(&self) -> Redactor {
        self.api.redact.clone()
    }
}

impl ElectricityMaps {
    /// One authenticated GET of `path`, its answer checked to be about `region`.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        region: &str,
    ) -> Result<Response, ForecastError> {
        let resp = self
            .api
            .get(path)
            .query(query)
            .header("auth-token", self.auth.clone())
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))?;
        let resp = http::check(NAME, resp, &self.api.redact)
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
