//! WattTime API v3: `GET {endpoint}/login` with HTTP Basic auth returns `{"token"}`, valid
//! for about 30 minutes; `GET {endpoint}/v3/forecast?region=R&signal_type=co2_moer` with
//! `Authorization: Bearer` returns `{"data": [{"point_time", "value"}], "meta": {...}}`.
//!
//! The token is cached and renewed before it expires ([`TOKEN_TTL`]) or when the API
//! answers 401 (a token revoked early), once per request. Values are marginal emissions
//! (MOER) in lbs CO2/MWh, converted to g/kWh (1 lb = 453.59237 g, 1 MWh = 1000 kWh).
//!
//! History: `GET {endpoint}/v3/historical?region=R&start=ISO&end=ISO&signal_type=co2_moer`,
//! same token, same answer shape and units. The API caps a request at 32 days; spans are
//! asked [`MAX_SPAN`] at a time, as WattTime's own client does. Its `end` is inclusive: the
//! point at a window's end is the next window's first and is kept once.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::config::Secret;
use super::provider::{self, Api, Live, Past, Provider};
use super::redact::Redactor;
use super::validate::RawPoint;
use super::{http, Forecast, ForecastError, Signal};
use crate::series::Series;
use crate::timefmt;

pub const NAME: &str = "watttime";
pub const DEFAULT_ENDPOINT: &str = "https://api.watttime.org";
/// Tokens live 30 minutes; renew a little early so a request never races the expiry.
pub const TOKEN_TTL: Duration = Duration::from_secs(25 * 60);
/// lbs/MWh to g/kWh.
pub const LBS_PER_MWH_TO_G_PER_KWH: f64 = 0.453_592_37;
/// The span one `/v3/historical` request is asked for (the API accepts up to 32 days).
pub const MAX_SPAN: TimeDelta = TimeDelta::days(30);

pub struct WattTime {
    /// Its redactor knows the user name and password; each fetch adds the tokens it used.
    api: Api,
    username: Secret,
    password: Secret,
    horizon_hours: Option<i64>,
    token: Mutex<Option<(Secret, Instant)>>,
}

impl WattTime {
    pub fn new(
        endpoint: String,
        username: Secret,
        password: Secret,
        timeout: Duration,
        horizon_hours: Option<i64>,
    ) -> Result<Self, ForecastError> {
        let mut api = Api::new(NAME, endpoint, timeout)?;
        api.redact.secret(&username).secret(&password);
        Ok(Self {
            api,
            username,
            password,
            // The API accepts 0..=72.
            horizon_hours: horizon_hours.map(|h| h.clamp(1, 72)),
            token: Mutex::new(None),
        })
    }

    /// A valid token, logging in when there is none or it is old. Holding the lock across
    /// the login makes concurrent fetches share one login.
    async fn token(&self, force: bool) -> Result<Secret, ForecastError> {
        let mut guard = self.token.lock().await;
        if !force {
            if let Some((tok, at)) = guard.as_ref() {
                if at.elapsed() < TOKEN_TTL {
                    return Ok(tok.clone());
                }
            }
        }
        let resp = self
            .api
            .get("/login")
            .basic_auth(self.username.expose(), Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))?;
        let resp = http::check(NAME, resp, &self.api.redact)
            .await
            .map_err(|e| match e {
                ForecastError::Auth { provider, detail } => ForecastError::Auth {
                    provider,
                    detail: format!(
                        "login rejected (check WATTTIME_USERNAME/WATTTIME_PASSWORD): {detail}"
                    ),
                },
                other => other,
            })?;
        #[derive(Deserialize)]
        struct Login {
            token: String,
        }
        let login: Login = http::json(NAME, resp).await?;
        let tok = Secret::new(login.token);
        *guard = Some((tok.clone(), Instant::now()));
        Ok(tok)
    }

    async fn request(
        &self,
        path: &str,
        query: &[(&str, String)],
        token: &Secret,
    ) -> Result<reqwest::Response, ForecastError> {
        self.api
            .get(path)
            .query(query)
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))
    }

    /// One authenticated GET of `path` for `region` (logging in again once on a 401),
    /// adding each token it uses to `redact`: an answer may quote it. Returns the points in
    /// g/kWh and the answer's metadata.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        region: &str,
        redact: &mut Redactor,
    ) -> Result<(Vec<RawPoint>, Meta), ForecastError> {
        let token = self.token(false).await?;
        redact.secret(&token);
        let mut resp = self.request(path, query, &token).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // Expired or revoked early: log in again once.
            tracing::debug!("watttime token rejected; logging in again");
            let token = self.token(true).await?;
            redact.secret(&token);
            resp = self.request(path, query, &token).await?;
        }
        let resp = http::check(NAME, resp, redact).await?;
        let body: Response = http::json(NAME, resp).await?;
        if let Some(r) = &body.meta.region {
            if !r.eq_ignore_ascii_case(region) {
                return Err(ForecastError::Invalid {
                    provider: NAME.into(),
                    detail: format!("asked for region {region}, got {r}"),
                });
            }
        }
        let factor = unit_factor(body.meta.units.as_deref())?;
        let points = body
            .data
            .iter()
            .map(|p| RawPoint::new(p.point_time, p.value.map(|v| v * factor)))
            .collect();
        Ok((points, body.meta))
    }
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Point>,
    meta: Meta,
}

#[derive(Deserialize)]
struct Point {
    point_time: DateTime<Utc>,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    data_point_period_seconds: Option<i64>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    units: Option<String>,
    #[serde(default)]
    generated_at: Option<DateTime<Utc>>,
}

/// The factor from `units` to g/kWh; other units are rejected rather than guessed.
pub fn unit_factor(units: Option<&str>) -> Result<f64, ForecastError> {
    match units {
        Some("lbs_co2_per_mwh") => Ok(LBS_PER_MWH_TO_G_PER_KWH),
        // kg/MWh and g/kWh are the same quantity.
        Some("kg_co2_per_mwh") | Some("g_co2_per_kwh") => Ok(1.0),
        other => Err(ForecastError::Invalid {
            provider: NAME.into(),
            detail: format!(
                "unsupported units {:?}: expected lbs_co2_per_mwh (signal_type co2_moer)",
                other.unwrap_or("<missing>")
            ),
        }),
    }
}

#[async_trait]
impl Provider for WattTime {
    const NAME: &'static str = NAME;
    const SIGNAL: Signal = Signal::Marginal;

    async fn forecast(
        &self,
        q: Live<'_>,
        redact: &mut Redactor,
    ) -> Result<Forecast, ForecastError> {
        let Live { region, now } = q;
        let mut query = vec![
            ("region", region.to_string()),
            ("signal_type", "co2_moer".to_string()),
        ];
        if let Some(h) = self.horizon_hours {
            query.push(("horizon_hours", h.to_string()));
        }
        let (points, meta) = self.get("/v3/forecast", &query, region, redact).await?;
        let generated_at = meta.generated_at.unwrap_or(now);
        provider::live::<Self>(q, generated_at, points, meta.data_point_period_seconds)
    }

    async fn past(&self, q: Past<'_>, redact: &mut Redactor) -> Result<Series, ForecastError> {
        let (mut all, mut step) = (Vec::new(), None);
        for (a, b) in http::windows(q.from, q.to, q.now, MAX_SPAN) {
            let query = [
                ("region", q.region.to_string()),
                ("start", timefmt::format(a)),
                ("end", timefmt::format(b)),
                ("signal_type", "co2_moer".to_string()),
            ];
            let (points, meta) = self.get("/v3/historical", &query, q.region, redact).await?;
            all.extend(points);
            step = step.or(meta.data_point_period_seconds);
        }
        provider::recorded::<Self>(q, all, step)
    }

    fn redactor(&self) -> Redactor {
        self.api.redact.clone()
    }
}
