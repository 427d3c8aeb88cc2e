//! Grid carbon-intensity forecasts: the [`ForecastSource`] trait, its providers and the
//! shared per-region cache (one upstream fetch per region per refresh, never one per job).
//!
//! Map of the module:
//! - [`config`]: the `--forecast-*` flags ([`ForecastArgs`]), [`ProviderConfig`] and the
//!   constructors [`build_source`], [`build_fallback`], [`build_cache`];
//! - [`cache`]: the shared per-region [`Cache`] (single flight, retries, stale serving,
//!   fallback, observed history, refresh notifications, metrics);
//! - [`validate`]: the rules every provider's data passes before use;
//! - [`provider`]: the [`provider::Provider`] trait every provider implements (redaction,
//!   normalisation and the repair log are done there once);
//! - providers: [`embedded`], [`file`](mod@file), [`electricitymaps`], [`watttime`],
//!   [`carbon_aware_sdk`], [`uk_carbon_intensity`];
//! - [`redact`]: how URLs and credentials are kept out of messages, logs and `Debug`.
//!
//! See `docs/forecast-sources.md` for the operator-facing documentation.

pub mod cache;
pub mod carbon_aware_sdk;
pub mod config;
pub mod electricitymaps;
pub mod embedded;
pub mod file;
mod http;
pub mod provider;
pub mod redact;
pub mod uk_carbon_intensity;
pub mod validate;
pub mod watttime;

pub use cache::{Cache, CacheSettings, CachedForecast, FallbackReason};
pub use config::{
    build_cache, build_fallback, build_source, Credentials, FallbackKind, ForecastArgs,
    ProviderConfig, ProviderKind, Secret,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::series::Series;

/// Average (consumption mix) or marginal (MOER) emissions signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    Average,
    Marginal,
}

impl Signal {
    /// `average` or `marginal`: the status field, the metrics label and `simulate`'s
    /// output.
    pub fn label(self) -> &'static str {
        match self {
            Signal::Average => "average",
            Signal::Marginal => "marginal",
        }
    }
}

/// A normalised forecast: intensities in gCO2eq/kWh with their provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Grid zone / provider region the series is for.
    pub region: String,
    /// Provider name as given to `--forecast-provider` (`embedded`, `file`, ...), or the
    /// fallback's name when the primary failed.
    pub source: String,
    pub signal: Signal,
    /// When the provider issued it.
    pub generated_at: DateTime<Utc>,
    /// True when the values are historical data replayed onto the current calendar
    /// (the embedded source), not a forecast of the real grid.
    pub historical_replay: bool,
    /// The values; may start before `generated_at` (observed history) and ends at the
    /// provider's horizon.
    pub series: Series,
}

/// Why a forecast could not be had. Kinds are bounded so they can label metrics.
/// `Clone` so the cache can hand the same failure to every caller waiting on one refresh.
#[derive(Debug, Clone, Error)]
pub enum ForecastError {
    #[error("unknown region {region:?} for provider {provider}: {hint}")]
    UnknownRegion {
        provider: String,
        region: String,
        hint: String,
    },
    #[error("{provider}: authentication failed: {detail}")]
    Auth { provider: String, detail: String },
    #[error("{provider}: rate limited")]
    RateLimited {
        provider: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{provider}: upstream error: {detail}")]
    Upstream { provider: String, detail: String },
    #[error("{provider}: request timed out")]
    Timeout { provider: String },
    #[error("{provider}: invalid forecast: {detail}")]
    Invalid { provider: String, detail: String },
    #[error("{provider}: configuration: {detail}")]
    Config { provider: String, detail: String },
    #[error("{provider}: no forecast available: {detail}")]
    Unavailable { provider: String, detail: String },
}

impl ForecastError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ForecastError::UnknownRegion { .. } => "unknown_region",
            ForecastError::Auth { .. } => "auth",
            ForecastError::RateLimited { .. } => "rate_limited",
            ForecastError::Upstream { .. } => "upstream",
            ForecastError::Timeout { .. } => "timeout",
            ForecastError::Invalid { .. } => "invalid",
            ForecastError::Config { .. } => "config",
            ForecastError::Unavailable { .. } => "unavailable",
        }
    }
}

/// A source of forecasts for grid regions.
#[async_trait]
pub trait ForecastSource: Send + Sync {
    /// Provider name as given to `--forecast-provider`.
    fn name(&self) -> &'static str;
    /// Fetches the current forecast for `region`, which must cover `now`.
    async fn fetch(&self, region: &str, now: DateTime<Utc>) -> Result<Forecast, ForecastError>;

    /// Recorded intensities of `region` over `[from, to)`, both in the past of `now`: the
    /// provider's history or actuals endpoint, for accounting time the operator did not see
    /// live (a restart, an outage). Live APIs serve the present and the future on their
    /// forecast endpoints, so the past must come from here. The series may cover less than
    /// asked (a provider keeps a limited history); the caller accounts what is covered and
    /// marks the rest. Sources without history answer [`ForecastError::Unavailable`].
    async fn history(
        &self,
        region: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Series, ForecastError>;
}
