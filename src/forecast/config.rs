//! Configuration of forecast sources, shared by `carbonshift run` and `carbonshift forecast`:
//! the clap flags ([`ForecastArgs`], flattened by both so each flag is defined once), the
//! resolved [`ProviderConfig`] (credentials read from the environment) and the constructors
//! [`build_source`], [`build_fallback`] and [`build_cache`].
//!
//! Typical use in the operator:
//! ```no_run
//! # async fn demo(args: carbonshift::forecast::ForecastArgs) -> Result<(), Box<dyn std::error::Error>> {
//! use carbonshift::forecast;
//! let metrics = carbonshift::metrics::Metrics::new()?;
//! let cache = forecast::build_cache(&args, metrics)?; // Arc<Cache>
//! let _refresher = cache.spawn_refresher(std::time::Duration::from_secs(30));
//! let f = cache.get("DE", chrono::Utc::now()).await?;
//! println!("{} g/kWh from {}", f.intensity_at(chrono::Utc::now()).unwrap_or(0.0), f.provenance());
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use super::cache::{Cache, CacheSettings, RegionMapper};
use super::embedded::EmbeddedSource;
use super::file::{FileSource, Location};
use super::redact;
use super::{
    carbon_aware_sdk, electricitymaps, uk_carbon_intensity, watttime, ForecastError, ForecastSource,
};
use crate::duration;
use crate::metrics::Metrics;

/// The providers `--forecast-provider` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum ProviderKind {
    Embedded,
    File,
    Electricitymaps,
    Watttime,
    CarbonAwareSdk,
    UkCarbonIntensity,
}

impl ProviderKind {
    /// The name used on the command line, in metrics and in `Forecast::source`.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Embedded => "embedded",
            ProviderKind::File => "file",
            ProviderKind::Electricitymaps => "electricitymaps",
            ProviderKind::Watttime => "watttime",
            ProviderKind::CarbonAwareSdk => "carbon-aware-sdk",
            ProviderKind::UkCarbonIntensity => "uk-carbon-intensity",
        }
    }

    /// Endpoint used when `--forecast-endpoint` is not given.
    pub fn default_endpoint(&self) -> Option<&'static str> {
        match self {
            ProviderKind::Electricitymaps => Some(electricitymaps::DEFAULT_ENDPOINT),
            ProviderKind::Watttime => Some(watttime::DEFAULT_ENDPOINT),
            ProviderKind::UkCarbonIntensity => Some(uk_carbon_intensity::DEFAULT_ENDPOINT),
            _ => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `--forecast-fallback` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FallbackKind {
    /// The embedded real traces, replayed onto the current calendar.
    Embedded,
    /// `--forecast-file` (when the primary is a live provider).
    File,
    /// No fallback: fail once the last good forecast is older than the max age.
    None,
}

/// A secret string: never printed, by `Debug` or `Display`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that puts it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Credentials of the live providers.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `ELECTRICITYMAPS_TOKEN`.
    pub electricitymaps_token: Option<Secret>,
    /// `WATTTIME_USERNAME`, `WATTTIME_PASSWORD`.
    pub watttime_username: Option<Secret>,
    pub watttime_password: Option<Secret>,
}

impl Credentials {
    /// Reads what `kind` needs from the environment (`VAR`, or `VAR_FILE` naming a file whose
    /// content, trailing newline trimmed, is the value). A missing one is a
    /// [`ForecastError::Config`] naming the variable.
    pub fn from_env(kind: ProviderKind) -> Result<Self, ForecastError> {
        Self::from_lookup(kind, &|k| std::env::var(k).ok())
    }

    /// As [`Credentials::from_env`], with an injectable environment (tests).
    pub fn from_lookup(
        kind: ProviderKind,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ForecastError> {
        let mut c = Credentials::default();
        match kind {
            ProviderKind::Electricitymaps => {
                c.electricitymaps_token = Some(required(kind, "ELECTRICITYMAPS_TOKEN", env)?);
            }
            ProviderKind::Watttime => {
                c.watttime_username = Some(required(kind, "WATTTIME_USERNAME", env)?);
                c.watttime_password = Some(required(kind, "WATTTIME_PASSWORD", env)?);
            }
            _ => {}
        }
        Ok(c)
    }
}

fn required(
    kind: ProviderKind,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ForecastError> {
    let config = |detail: String| ForecastError::Config {
        provider: kind.name().into(),
        detail,
    };
    if let Some(v) = env(var).filter(|v| !v.is_empty()) {
        return Ok(Secret(v));
    }
    let file_var = format!("{var}_FILE");
    if let Some(path) = env(&file_var).filter(|v| !v.is_empty()) {
        let content = std::fs::read_to_string(&path)
            .map_err(|e| config(format!("cannot read {file_var}={path}: {e}")))?;
        let v = content.trim_end_matches(['\n', '\r']).to_string();
        if v.is_empty() {
            return Err(config(format!("{file_var}={path} is empty")));
        }
        return Ok(Secret(v));
    }
    Err(config(format!(
        "missing credential: set {var} or {file_var} (Helm: forecast.existingSecret)"
    )))
}

/// Forecast flags, flattened into `carbonshift run` and `carbonshift forecast`. `Debug`
/// shows the endpoint and file URLs as [`redact::url`] renders them.
#[derive(Clone, clap::Args)]
pub struct ForecastArgs {
    /// Where forecasts come from.
    #[arg(
        long = "forecast-provider",
        visible_alias = "provider",
        env = "CARBONSHIFT_FORECAST_PROVIDER",
        value_enum,
        default_value = "embedded"
    )]
    pub provider: ProviderKind,

    /// Provider API base URL (default: the provider's public API; required for
    /// carbon-aware-sdk).
    #[arg(
        long = "forecast-endpoint",
        visible_alias = "endpoint",
        env = "CARBONSHIFT_FORECAST_ENDPOINT"
    )]
    pub endpoint: Option<String>,

    /// CSV/JSON forecast file, path or http(s) URL (provider `file`, or fallback `file`).
    #[arg(
        long = "forecast-file",
        visible_alias = "file",
        env = "CARBONSHIFT_FORECAST_FILE"
    )]
    pub file: Option<String>,

    /// How often each region's forecast is fetched again.
    #[arg(long = "forecast-refresh", env = "CARBONSHIFT_FORECAST_REFRESH", default_value = "5m", value_parser = duration::flag(1, duration::DAY_SECS).std(), allow_hyphen_values = true)]
    pub refresh: Duration,

    /// How long the last good forecast is served while the provider fails.
    #[arg(long = "forecast-max-age", env = "CARBONSHIFT_FORECAST_MAX_AGE", default_value = "6h", value_parser = duration::flag(0, duration::MAX_FLAG_SECS).std(), allow_hyphen_values = true)]
    pub max_age: Duration,

    /// What to serve when the provider fails past the max age.
    #[arg(
        long = "forecast-fallback",
        env = "CARBONSHIFT_FORECAST_FALLBACK",
        value_enum,
        default_value = "embedded"
    )]
    pub fallback: FallbackKind,

    /// Timeout of one upstream HTTP request.
    #[arg(long = "forecast-timeout", env = "CARBONSHIFT_FORECAST_TIMEOUT", default_value = "10s", value_parser = duration::flag(1, 3600).std(), allow_hyphen_values = true)]
    pub timeout: Duration,

    /// How far ahead to ask for (and, for embedded, to replay).
    #[arg(long = "forecast-horizon", env = "CARBONSHIFT_FORECAST_HORIZON", default_value = "72h", value_parser = duration::flag(1, duration::MAX_FLAG_SECS).std(), allow_hyphen_values = true)]
    pub horizon: Duration,

    /// Extra cloud-region mappings, `CLOUD_REGION=ZONE[,watttime=REGION][,uk=ID][,carbon-aware-sdk=LOCATION]`;
    /// repeatable (env: `;`-separated).
    #[arg(
        long = "region-map",
        env = "CARBONSHIFT_REGION_MAP",
        value_delimiter = ';'
    )]
    pub region_map: Vec<String>,

    /// YAML/JSON file of extra cloud-region mappings (same schema as the shipped table).
    #[arg(long = "region-map-file", env = "CARBONSHIFT_REGION_MAP_FILE")]
    pub region_map_file: Option<PathBuf>,
}

impl Default for ForecastArgs {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Embedded,
            endpoint: None,
            file: None,
            refresh: Duration::from_secs(300),
            max_age: Duration::from_secs(6 * 3600),
            fallback: FallbackKind::Embedded,
            timeout: Duration::from_secs(10),
            horizon: Duration::from_secs(72 * 3600),
            region_map: Vec::new(),
            region_map_file: None,
        }
    }
}

impl fmt::Debug for ForecastArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForecastArgs")
            .field("provider", &self.provider)
            .field("endpoint", &self.endpoint.as_deref().map(redact::url))
            .field("file", &self.file.as_deref().map(redact::url))
            .field("refresh", &self.refresh)
            .field("max_age", &self.max_age)
            .field("fallback", &self.fallback)
            .field("timeout", &self.timeout)
            .field("horizon", &self.horizon)
            .field("region_map", &self.region_map)
            .field("region_map_file", &self.region_map_file)
            .finish()
    }
}

impl ForecastArgs {
    /// The shipped region table extended by `--region-map-file` and `--region-map`.
    pub fn region_table(&self) -> Result<crate::region::RegionTable, crate::region::RegionError> {
        let mut t = crate::region::RegionTable::shipped()?;
        if let Some(p) = &self.region_map_file {
            t.merge_file(p)?;
        }
        for e in &self.region_map {
            t.add_entry(e)?;
        }
        Ok(t)
    }

    /// Cache tunables from the flags (the rest at their defaults).
    pub fn cache_settings(&self) -> CacheSettings {
        CacheSettings {
            refresh: self.refresh,
            max_age: self.max_age,
            // One attempt may be a login plus a request, each bounded by `timeout`.
            timeout: self.timeout.saturating_mul(3),
            retry_interval: self.refresh.min(Duration::from_secs(60)),
            ..CacheSettings::default()
        }
    }
}

/// Everything needed to build one source. `Debug` shows URLs as [`redact::url`] renders
/// them and credentials as `<redacted>`.
#[derive(Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// API base URL; `None` uses the provider's default. May carry userinfo (sent as basic
    /// auth) and a query string (kept on every request: a gateway's API key).
    pub endpoint: Option<String>,
    /// For `file`: path or URL (which may carry userinfo and a query string too).
    pub file: Option<String>,
    pub credentials: Credentials,
    /// Per-HTTP-request timeout.
    pub timeout: Duration,
    /// How far ahead to ask for / replay.
    pub horizon: Duration,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint.as_deref().map(redact::url))
            .field("file", &self.file.as_deref().map(redact::url))
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("horizon", &self.horizon)
            .finish()
    }
}

impl ProviderConfig {
    /// A config with defaults and no credentials (tests set fields directly).
    pub fn new(kind: ProviderKind) -> Self {
        Self {
            kind,
            endpoint: None,
            file: None,
            credentials: Credentials::default(),
            timeout: Duration::from_secs(10),
            horizon: Duration::from_secs(72 * 3600),
        }
    }

    /// The primary source's config from the flags, credentials from the environment.
    pub fn from_args(args: &ForecastArgs) -> Result<Self, ForecastError> {
        Ok(Self {
            kind: args.provider,
            endpoint: args.endpoint.clone(),
            file: args.file.clone(),
            credentials: Credentials::from_env(args.provider)?,
            timeout: args.timeout,
            horizon: args.horizon,
        })
    }

    fn endpoint(&self) -> Result<String, ForecastError> {
        self.endpoint
            .clone()
            .or_else(|| self.kind.default_endpoint().map(str::to_string))
            .ok_or_else(|| ForecastError::Config {
                provider: self.kind.name().into(),
                detail: "an endpoint is required: set --forecast-endpoint / CARBONSHIFT_FORECAST_ENDPOINT (Helm: forecast.endpoint)".into(),
            })
    }

    fn horizon_delta(&self) -> TimeDelta {
        TimeDelta::from_std(self.horizon).unwrap_or(TimeDelta::hours(72))
    }
}

/// Builds the source `config` describes. Fails with [`ForecastError::Config`] on a missing
/// endpoint, file or credential.
pub fn build_source(config: &ProviderConfig) -> Result<Arc<dyn ForecastSource>, ForecastError> {
    let missing = |what: &str| ForecastError::Config {
        provider: config.kind.name().into(),
        detail: format!("missing credential for {what}; use Credentials::from_env"),
    };
    Ok(match config.kind {
        ProviderKind::Embedded => Arc::new(EmbeddedSource::shipped(config.horizon_delta())),
        ProviderKind::File => {
            let file = config
                .file
                .as_deref()
                .ok_or_else(|| ForecastError::Config {
                    provider: "file".into(),
                    detail: "a file is required: set --forecast-file / CARBONSHIFT_FORECAST_FILE"
                        .into(),
                })?;
            Arc::new(FileSource::new(Location::parse(file), config.timeout)?)
        }
        ProviderKind::Electricitymaps => {
            let token = config
                .credentials
                .electricitymaps_token
                .clone()
                .ok_or_else(|| missing("ELECTRICITYMAPS_TOKEN"))?;
            Arc::new(electricitymaps::ElectricityMaps::new(
                config.endpoint()?,
                token,
                config.timeout,
                Some(config.horizon_delta().num_hours()),
            )?)
        }
        ProviderKind::Watttime => {
            let user = config
                .credentials
                .watttime_username
                .clone()
                .ok_or_else(|| missing("WATTTIME_USERNAME"))?;
            let pass = config
                .credentials
                .watttime_password
                .clone()
                .ok_or_else(|| missing("WATTTIME_PASSWORD"))?;
            Arc::new(watttime::WattTime::new(
                config.endpoint()?,
                user,
                pass,
                config.timeout,
                Some(config.horizon_delta().num_hours()),
            )?)
        }
        ProviderKind::CarbonAwareSdk => Arc::new(carbon_aware_sdk::CarbonAwareSdk::new(
            config.endpoint()?,
            config.timeout,
        )?),
        ProviderKind::UkCarbonIntensity => Arc::new(uk_carbon_intensity::UkCarbonIntensity::new(
            config.endpoint()?,
            config.timeout,
        )?),
    })
}

/// The fallback source the flags ask for (`None` for `--forecast-fallback none`, or when
/// the fallback would be the primary itself).
pub fn build_fallback(
    args: &ForecastArgs,
) -> Result<Option<Arc<dyn ForecastSource>>, ForecastError> {
    let kind = match args.fallback {
        FallbackKind::None => return Ok(None),
        FallbackKind::Embedded => ProviderKind::Embedded,
        FallbackKind::File => ProviderKind::File,
    };
    if kind == args.provider {
        return Ok(None);
    }
    let mut config = ProviderConfig::new(kind);
    config.file = args.file.clone();
    config.timeout = args.timeout;
    config.horizon = args.horizon;
    build_source(&config).map(Some)
}

/// Primary + fallback + cache from the flags, with the region table's provider-region to
/// zone mapping for the fallback (so `CAISO_NORTH` falls back to the `US-CAL-CISO` trace).
pub fn build_cache(args: &ForecastArgs, metrics: Metrics) -> Result<Arc<Cache>, ForecastError> {
    let source = build_source(&ProviderConfig::from_args(args)?)?;
    let fallback = build_fallback(args)?;
    let table = args.region_table().map_err(|e| ForecastError::Config {
        provider: args.provider.name().into(),
        detail: e.to_string(),
    })?;
    let provider = args.provider;
    let mapper: RegionMapper = Arc::new(move |r: &str| table.zone_for(provider, r));
    Ok(Arc::new(
        Cache::new(source, fallback, args.cache_settings(), metrics).with_fallback_region(mapper),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        f: ForecastArgs,
    }

    #[test]
    fn flags_and_defaults() {
        let c = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(c.f.provider, ProviderKind::Embedded);
        assert_eq!(c.f.refresh, Duration::from_secs(300));
        assert_eq!(c.f.max_age, Duration::from_secs(21_600));
        assert_eq!(c.f.fallback, FallbackKind::Embedded);
        let c = Cli::try_parse_from([
            "x",
            "--forecast-provider",
            "carbon-aware-sdk",
            "--forecast-refresh",
            "90s",
            "--region-map",
            "my-dc=DE",
        ])
        .unwrap();
        assert_eq!(c.f.provider, ProviderKind::CarbonAwareSdk);
        assert_eq!(c.f.refresh, Duration::from_secs(90));
        assert!(Cli::try_parse_from(["x", "--forecast-refresh", "0s"]).is_err());
        assert!(Cli::try_parse_from(["x", "--forecast-provider", "nope"]).is_err());
    }

    #[test]
    fn credentials_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "s3cret\n").unwrap();
        let path = p.to_string_lossy().to_string();
        let env = move |k: &str| (k == "ELECTRICITYMAPS_TOKEN_FILE").then(|| path.clone());
        let c = Credentials::from_lookup(ProviderKind::Electricitymaps, &env).unwrap();
        let tok = c.electricitymaps_token.unwrap();
        assert_eq!(tok.expose(), "s3cret");
        assert!(!format!("{tok:?}").contains("s3cret"));

        let e = Credentials::from_lookup(ProviderKind::Watttime, &|k: &str| {
            (k == "WATTTIME_USERNAME").then(|| "u".to_string())
        })
        .unwrap_err();
        assert!(e.to_string().contains("WATTTIME_PASSWORD"), "{e}");
        assert_eq!(e.kind(), "config");
        assert!(Credentials::from_lookup(ProviderKind::Embedded, &|_: &str| None).is_ok());
    }

    #[test]
    fn carbon_aware_sdk_needs_an_endpoint() {
        let e = build_source(&ProviderConfig::new(ProviderKind::CarbonAwareSdk))
            .err()
            .unwrap();
        assert!(e.to_string().contains("--forecast-endpoint"), "{e}");
    }
}
