//! `carbonshift forecast`: fetch one provider's forecast for one region, validate and
//! normalise it exactly as the operator does, and print it. For checking credentials,
//! endpoints and region mappings before deploying, and for producing a CSV the `file`
//! provider reads back.
//!
//! The forecast comes through the operator's own [`Cache`] (retries, `Retry-After`, the
//! `--forecast-fallback` source), built by `one_shot_cache`, which `plan -f` uses too; bad input fails
//! whatever the fallback, which stands in for a provider failing at run time.
//! A one-shot command has no earlier forecast to serve while the provider fails, so
//! `--forecast-max-age` applies to the forecast the provider answers with: a live
//! provider's forecast issued longer ago than that is refused like a failure (the fallback
//! is shown, or the command fails).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{CliResult, Failure, Format};
use crate::controller::intensity::{self, Intensities};
use crate::forecast::cache::RegionMapper;
use crate::forecast::{
    self, Cache, CachedForecast, FallbackReason, Forecast, ForecastArgs, ForecastError,
    ForecastSource, ProviderConfig, ProviderKind, Signal,
};
use crate::region::{self, RegionTable};
use crate::series::Series;
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  carbonshift forecast --provider embedded --region DE
  carbonshift forecast --provider embedded --region DE --past 7d
  carbonshift forecast --provider electricitymaps --region eu-central-1 --format json
      (token from ELECTRICITYMAPS_TOKEN or ELECTRICITYMAPS_TOKEN_FILE)
  carbonshift forecast --provider uk-carbon-intensity --region regionid:13
  carbonshift forecast --provider file --file ./de.csv --region DE --format csv

A failing provider is retried, then --forecast-fallback (default embedded) is shown with
the reason; --forecast-fallback none fails instead (exit 1). A live provider's forecast
issued longer ago than --forecast-max-age counts as a failure.")]
pub struct Args {
    #[command(flatten)]
    pub forecast: ForecastArgs,

    /// Grid zone, provider region or cloud region (mapped through the region table).
    #[arg(long)]
    pub region: String,

    /// How much of the past before now to print (the row of now is always printed); the
    /// embedded replay holds 7d.
    #[arg(long, value_name = "DURATION", default_value = "3h", value_parser = crate::duration::flag(0, crate::duration::MAX_FLAG_SECS), allow_hyphen_values = true)]
    pub past: i64,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Serialize)]
struct Output<'a> {
    provider: &'a str,
    region: &'a str,
    signal: Signal,
    generated_at: DateTime<Utc>,
    /// When the command ran; the point whose slot holds it has `now: true`.
    now: DateTime<Utc>,
    historical_replay: bool,
    /// For the embedded source: which real data is replayed, and its licence.
    replay: Option<Replay>,
    /// Set when the provider failed and `--forecast-fallback` is shown instead.
    fallback: Option<FallbackOut>,
    step_seconds: i64,
    points: Vec<Point>,
}

#[derive(Serialize)]
struct FallbackOut {
    /// Bounded label, as in `carbonshift_forecast_fallback_total{reason}`.
    reason: String,
    message: String,
    /// The provider's error.
    error: Option<String>,
}

#[derive(Serialize)]
struct Point {
    timestamp: DateTime<Utc>,
    gco2_per_kwh: f64,
    /// True for the slot that holds now.
    now: bool,
}

/// Which real data the embedded source replays onto the printed rows.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct Replay {
    /// The embedded zone.
    pub zone: String,
    /// The real instants of the first printed row and of the end of the last.
    pub data_from: DateTime<Utc>,
    pub data_to: DateTime<Utc>,
    /// Whole weeks the data is moved forward by (weekday and hour of day kept).
    pub shift_weeks: i64,
    pub licence: &'static str,
}

/// Licence of the embedded hourly traces (see `data/README.md` and `NOTICE`).
pub(crate) const EMBEDDED_LICENCE: &str =
    "Electricity Maps (electricitymaps.com), data licensed under ODbL 1.0";

/// The primary source of a one-shot command. A live provider's forecast issued longer ago
/// than `max_age` is refused as [`ForecastError::Unavailable`], so the cache treats it as
/// the provider failing. The last error is kept, so that bad input (a `--forecast-file`
/// that does not exist, an unknown region) fails the command rather than being covered by
/// the fallback, which stands in for outages.
struct OneShotPrimary {
    inner: Arc<dyn ForecastSource>,
    max_age: Option<Duration>,
    error: std::sync::Mutex<Option<ForecastError>>,
}

impl OneShotPrimary {
    fn check_age(&self, f: Forecast, now: DateTime<Utc>) -> Result<Forecast, ForecastError> {
        let Some(max_age) = self.max_age else {
            return Ok(f);
        };
        let max = TimeDelta::from_std(max_age).unwrap_or(TimeDelta::MAX);
        let age = now - f.generated_at;
        if age <= max {
            return Ok(f);
        }
        Err(ForecastError::Unavailable {
            provider: self.name().into(),
            detail: format!(
                "its forecast was issued at {}, {} ago, longer than --forecast-max-age {}",
                timefmt::format(f.generated_at),
                crate::duration::format_secs(age.num_seconds()),
                crate::duration::format_secs(max.num_seconds()),
            ),
        })
    }
}

#[async_trait]
impl ForecastSource for OneShotPrimary {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn fetch(&self, region: &str, now: DateTime<Utc>) -> Result<Forecast, ForecastError> {
        let result = match self.inner.fetch(region, now).await {
            Ok(f) => self.check_age(f, now),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        }
        result
    }

    async fn history(
        &self,
        region: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Series, ForecastError> {
        self.inner.history(region, from, to, now).await
    }
}

/// The operator's cache for a one-shot command: the primary from the flags (see
/// [`OneShotPrimary`]; `--forecast-max-age` applies to live providers only: the embedded
/// replay is issued now and a file's age is its copy's), `--forecast-fallback`, the cache
/// settings of the flags, and the region table's zone mapping for the fallback (as
/// [`forecast::build_cache`]).
fn one_shot_cache(
    args: &ForecastArgs,
    table: &RegionTable,
) -> Result<(Arc<Cache>, Arc<OneShotPrimary>), Failure> {
    let failure = |e| super::forecast_failure(e, args);
    let config = ProviderConfig::from_args(args).map_err(failure)?;
    let live = !matches!(args.provider, ProviderKind::Embedded | ProviderKind::File);
    let primary = Arc::new(OneShotPrimary {
        inner: forecast::build_source(&config).map_err(failure)?,
        max_age: live.then_some(args.max_age),
        error: std::sync::Mutex::new(None),
    });
    let fallback = forecast::build_fallback(args).map_err(failure)?;
    let metrics = crate::metrics::Metrics::new()
        .map_err(|e| Failure::runtime(format!("cannot set up metrics: {e}")))?;
    let (table, provider) = (table.clone(), args.provider);
    let mapper: RegionMapper = Arc::new(move |r: &str| table.zone_for(provider, r));
    let cache = Cache::new(primary.clone(), fallback, args.cache_settings(), metrics)
        .with_fallback_region(mapper);
    Ok((Arc::new(cache), primary))
}

/// The forecast of `region` at `now` as the operator's cache serves it to a one-shot
/// command: the provider's, or the fallback's for a provider that failed at run time (a
/// warning on standard error says why). Bad input fails whatever the fallback.
async fn one_shot_get(
    args: &ForecastArgs,
    table: &RegionTable,
    region: &str,
    now: DateTime<Utc>,
) -> Result<(Arc<Cache>, Arc<CachedForecast>), Failure> {
    let (cache, primary) = one_shot_cache(args, table)?;
    let c = cache
        .get(region, now)
        .await
        .map_err(|e| super::forecast_failure(e, args))?;
    if c.fallback.is_some() {
        let error = primary
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = error.map(|e| super::forecast_failure(e, args)) {
            if f.code == 2 {
                return Err(f);
            }
        }
    }
    if let Some(w) = fallback_warning(&c) {
        eprintln!("{w}");
    }
    Ok((cache, c))
}

/// Why the fallback source is shown instead of the provider's forecast, in words that fit
/// a one-shot command (it has no earlier forecast that could have been served).
pub(crate) fn fallback_message(c: &CachedForecast) -> Option<String> {
    let error = c.last_error.as_deref().unwrap_or("unknown error");
    Some(match c.fallback? {
        FallbackReason::PrimaryFailed { .. } => format!(
            "the provider failed, so the fallback source {} stands in for it: {error}",
            c.forecast.source
        ),
        r @ FallbackReason::Stale { .. } => format!("{r}: {error}"),
    })
}

/// The one line a one-shot command prints on standard error when the provider failed and
/// the fallback source stands in for it.
pub(crate) fn fallback_warning(c: &CachedForecast) -> Option<String> {
    fallback_message(c).map(|m| format!("warning: {m} (--forecast-fallback none fails instead)"))
}

/// Which real data `printed` (a slice of the embedded replay of `zone`, horizon as the
/// flags say) comes from: the shift the embedded source picks, checked against the values.
pub(crate) fn embedded_replay(
    zone: &str,
    printed: &Series,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Option<Replay> {
    let zone = crate::data::canonical_zone(zone)?;
    let trace = crate::data::load_zone(zone).ok()?;
    let horizon = TimeDelta::from_std(horizon).ok()?;
    // Candidates: the shift for the history the shipped source keeps (7 days), then its
    // neighbours, in case the printed slice came from another choice.
    let k0 = forecast::embedded::week_shift(
        now,
        trace.start(),
        trace.end(),
        TimeDelta::days(7),
        horizon,
    )?;
    let matches = |k: i64| {
        let shift = TimeDelta::weeks(k);
        printed.values().iter().enumerate().all(|(i, v)| {
            trace
                .value_at(printed.slot_start(i) - shift)
                .is_some_and(|t| (t - v).abs() < 1e-9)
        })
    };
    let k = [k0, k0 - 1, k0 + 1, k0 - 52, k0 + 52]
        .into_iter()
        .find(|k| matches(*k))?;
    let shift = TimeDelta::weeks(k);
    Some(Replay {
        zone: zone.to_string(),
        data_from: printed.start() - shift,
        data_to: printed.end() - shift,
        shift_weeks: k,
        licence: EMBEDDED_LICENCE,
    })
}

/// The region's intensities for `plan -f`, as the operator's cache serves them: the
/// provider's forecast, or `--forecast-fallback` standing in for a failed provider (a
/// warning on standard error says why), with the provider's recorded history back to
/// `since` when the forecast does not reach it.
pub(crate) async fn plan_intensities(
    args: &ForecastArgs,
    region: &str,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Result<Arc<Intensities>, Failure> {
    let table = args.region_table().map_err(Failure::input)?;
    let (cache, c) = one_shot_get(args, &table, region, now).await?;
    let wait = cache.settings().timeout;
    Ok(Arc::new(
        intensity::served(&cache, &c, region, now, since, wait).await,
    ))
}

pub async fn run(args: Args) -> CliResult {
    let table = args.forecast.region_table().map_err(Failure::input)?;
    let resolved = region::resolve(
        None,
        Some(&args.region),
        &[],
        &table,
        args.forecast.provider,
    )
    .map_err(Failure::input)?;
    let now = Utc::now();
    let region = &resolved.provider_region;
    let (_, c) = one_shot_get(&args.forecast, &table, region, now).await?;
    let f = &c.forecast;
    let printed = printed_rows(&f.series, now, TimeDelta::seconds(args.past))?;
    let replay = if f.historical_replay && f.source == forecast::embedded::NAME {
        let zone = if c.fallback.is_some() {
            table.zone_for(args.forecast.provider, region)
        } else {
            f.region.clone()
        };
        embedded_replay(&zone, &printed, now, args.forecast.horizon)
    } else {
        None
    };
    if f.historical_replay {
        eprintln!("note: {}", replay_note(&f.source, replay.as_ref()));
    }
    let doc = Output {
        provider: &f.source,
        region: &f.region,
        signal: f.signal,
        generated_at: f.generated_at,
        now,
        historical_replay: f.historical_replay,
        replay,
        fallback: c.fallback.map(|r| FallbackOut {
            reason: r.label(),
            message: fallback_message(&c).unwrap_or_default(),
            error: c.last_error.clone(),
        }),
        step_seconds: printed.step_secs(),
        points: points(&printed, now),
    };
    let out = match args.format {
        Format::Json => serde_json::to_string_pretty(&doc).map_err(Failure::runtime)? + "\n",
        Format::Csv => csv_text(&doc),
        Format::Table => table_text(&doc),
    };
    write_stdout(&out)
}

/// The rows to print: from the slot holding `now - past` to the end.
fn printed_rows(series: &Series, now: DateTime<Utc>, past: TimeDelta) -> Result<Series, Failure> {
    let from = (now - past).max(series.start());
    series.slice(from, series.end()).ok_or_else(|| {
        Failure::runtime(format!(
            "the forecast ({} .. {}) has nothing after {}",
            timefmt::format(series.start()),
            timefmt::format(series.end()),
            timefmt::format(from)
        ))
    })
}

fn points(s: &Series, now: DateTime<Utc>) -> Vec<Point> {
    let step = TimeDelta::seconds(s.step_secs());
    s.values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = s.slot_start(i);
            Point {
                timestamp: t,
                gco2_per_kwh: *v,
                now: t <= now && now < t + step,
            }
        })
        .collect()
}

/// What the embedded replay is, for standard error and the table's header.
fn replay_note(source: &str, r: Option<&Replay>) -> String {
    match r {
        Some(r) => format!(
            "{source} is not a forecast: it replays real {} data of {} .. {}, moved {} weeks \
             forward (weekday and hour kept); {}",
            r.zone,
            timefmt::format(r.data_from),
            timefmt::format(r.data_to),
            r.shift_weeks,
            r.licence
        ),
        None => format!(
            "{source} is historical data replayed onto the current calendar, not a forecast"
        ),
    }
}

fn csv_text(doc: &Output) -> String {
    let mut out = String::from("timestamp,region,gco2_per_kwh,now\n");
    for p in &doc.points {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            timefmt::format(p.timestamp),
            doc.region,
            p.gco2_per_kwh,
            p.now
        );
    }
    out
}

fn table_text(doc: &Output) -> String {
    let mut out = String::new();
    let replay = if doc.historical_replay {
        " (historical replay)"
    } else {
        ""
    };
    let _ = writeln!(out, "provider: {}{replay}", doc.provider);
    if let Some(r) = &doc.replay {
        let _ = writeln!(out, "replays: {}", replay_note(doc.provider, Some(r)));
    }
    if let Some(fb) = &doc.fallback {
        let _ = writeln!(out, "fallback: {}", fb.message);
    }
    let age = (doc.now - doc.generated_at).num_seconds();
    let _ = writeln!(
        out,
        "region: {}\nsignal: {:?}\ngenerated at: {}{}\nnow: {}\nstep: {}\n",
        doc.region,
        doc.signal,
        timefmt::format(doc.generated_at),
        if age >= 60 {
            format!(" ({} ago)", crate::duration::format_secs(age))
        } else {
            String::new()
        },
        timefmt::format(doc.now),
        crate::duration::format_secs(doc.step_seconds),
    );
    let _ = writeln!(out, "{:<22} {:>12}  NOW", "TIMESTAMP", "GCO2/KWH");
    for p in &doc.points {
        let marker = if p.now { "  <- now" } else { "" };
        let _ = writeln!(
            out,
            "{:<22} {:>12.1}{marker}",
            timefmt::format(p.timestamp),
            p.gco2_per_kwh
        );
    }
    out
}

/// Writes once, so a closed pipe (`| head`) is not a panic.
fn write_stdout(out: &str) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::runtime(format!("cannot write output: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn printed_rows_start_at_the_slot_of_now_minus_past() {
        let t0 = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        let s = Series::new(t0, 3600, (0..48).map(f64::from).collect()).unwrap();
        let now = t0 + TimeDelta::minutes(10 * 60 + 30);
        let p = printed_rows(&s, now, TimeDelta::hours(3)).unwrap();
        assert_eq!(p.start(), t0 + TimeDelta::hours(7));
        assert_eq!(p.values()[0], 7.0);
        let pts = points(&p, now);
        assert_eq!(pts.iter().filter(|p| p.now).count(), 1);
        assert_eq!(pts.iter().position(|p| p.now), Some(3));
        // More past than the series has: all of it.
        assert_eq!(printed_rows(&s, now, TimeDelta::days(9)).unwrap().len(), 48);
    }
}
