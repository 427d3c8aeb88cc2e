//! What every provider shares, so that a provider's module holds only its API's requests
//! and formats: a provider implements [`Provider`], and the blanket [`ForecastSource`]
//! implementation below redacts its errors; [`live`] and [`recorded`] normalise its answers
//! by the rules of [`validate`] and log what was repaired.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::http;
use super::redact::Redactor;
use super::validate::{self, RawPoint};
use super::{Forecast, ForecastError, ForecastSource, Signal};
use crate::series::Series;

/// A web API's base URL, the client that asks it (credentials go to its origin only, see
/// `http::Redirects::SameOrigin`) and the redactor that knows the URL and any credential
/// the provider adds.
pub struct Api {
    base: String,
    client: reqwest::Client,
    pub redact: Redactor,
}

impl Api {
    pub fn new(provider: &str, base: String, timeout: Duration) -> Result<Self, ForecastError> {
        let mut redact = Redactor::new();
        redact.url(&base);
        Ok(Self {
            client: http::client(provider, timeout, http::Redirects::SameOrigin)?,
            base,
            redact,
        })
    }

    /// A GET of `path` below the base URL.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(http::join(&self.base, path))
    }
}

/// A request for the forecast of `region` that covers `now`.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    pub region: &'a str,
    pub now: DateTime<Utc>,
}

/// A request for recorded intensities of `region` over `[from, to)`, with `to` no later
/// than `now`.
#[derive(Debug, Clone, Copy)]
pub struct Past<'a> {
    pub region: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// One forecast provider. Its methods may put credentials into their errors (an upstream
/// body quoting a token); the [`ForecastSource`] implementation removes whatever
/// [`Provider::redactor`] and the request added to it knows of.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The name given to `--forecast-provider`.
    const NAME: &'static str;
    /// The emissions signal its values are.
    const SIGNAL: Signal;

    /// What must not appear in messages: the configured secrets and URLs. A copy per
    /// request, to which a request adds any secret it learns (WattTime's login token).
    fn redactor(&self) -> Redactor {
        Redactor::new()
    }

    /// The current forecast.
    async fn forecast(&self, q: Live<'_>, redact: &mut Redactor)
        -> Result<Forecast, ForecastError>;

    /// Recorded intensities (see [`ForecastSource::history`]); providers without a history
    /// endpoint keep this default.
    async fn past(&self, q: Past<'_>, redact: &mut Redactor) -> Result<Series, ForecastError> {
        let _ = (q, redact);
        Err(ForecastError::Unavailable {
            provider: Self::NAME.into(),
            detail: "this provider has no history endpoint".into(),
        })
    }
}

#[async_trait]
impl<P: Provider> ForecastSource for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    async fn fetch(&self, region: &str, now: DateTime<Utc>) -> Result<Forecast, ForecastError> {
        let mut redact = self.redactor();
        let result = self.forecast(Live { region, now }, &mut redact).await;
        result.map_err(|e| redact.error(e))
    }

    async fn history(
        &self,
        region: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Series, ForecastError> {
        let q = Past {
            region,
            from,
            to: to.min(now),
            now,
        };
        let mut redact = self.redactor();
        let result = self.past(q, &mut redact).await;
        result.map_err(|e| redact.error(e))
    }
}

/// A provider's live answer as a [`Forecast`], normalised by [`validate::normalise`];
/// `step` is the step the provider declares, if it does.
pub fn live<P: Provider>(
    q: Live<'_>,
    generated_at: DateTime<Utc>,
    points: Vec<RawPoint>,
    step: Option<i64>,
) -> Result<Forecast, ForecastError> {
    let n = validate::normalise(P::NAME, points, step, q.now)?;
    if !n.repairs.is_empty() {
        tracing::info!(provider = P::NAME, region = q.region, repairs = ?n.repairs, "forecast repaired");
    }
    Ok(Forecast {
        region: q.region.to_string(),
        source: P::NAME.to_string(),
        signal: P::SIGNAL,
        generated_at,
        historical_replay: false,
        series: n.series,
    })
}

/// A provider's recorded data for `q`, normalised by [`validate::normalise_history`].
pub fn recorded<P: Provider>(
    q: Past<'_>,
    points: Vec<RawPoint>,
    step: Option<i64>,
) -> Result<Series, ForecastError> {
    let n = validate::normalise_history(P::NAME, points, step, q.from, q.to)?;
    if !n.repairs.is_empty() {
        tracing::info!(provider = P::NAME, region = q.region, repairs = ?n.repairs, "history repaired");
    }
    Ok(n.series)
}
