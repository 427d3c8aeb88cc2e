//! The shared forecast cache: one per operator, one entry per region, so that 10,000 jobs
//! in one region cause one upstream request per refresh interval, never one per job.
//!
//! What [`Cache::get`] does, in order:
//! 1. If the region's entry is fresh (younger than the refresh interval, with jitter so
//!    regions and replicas do not refresh in lock-step) and still covers `now`, return it.
//! 2. Otherwise take the region's refresh lock (single flight: concurrent callers wait for
//!    the one refresh instead of each starting one), re-check, and fetch from the primary
//!    source with a per-attempt timeout and retries (exponential backoff with jitter;
//!    `429` waits for `Retry-After` when it is short, else gives up this round and does not
//!    retry before it has passed).
//! 3. On success, merge the new series with the observed history of previous fetches (a
//!    rolling window, [`CacheSettings::history`]), so the controller can integrate emissions
//!    over the recent past even when a provider returns only the future, then notify
//!    subscribers (receding horizon: the controller replans the region's jobs).
//! 4. On failure, serve the last good forecast while it is younger than
//!    [`CacheSettings::max_age`] (reason [`FallbackReason::Stale`]), else the fallback source
//!    (reason [`FallbackReason::PrimaryFailed`]; `Forecast::source` names the fallback), else
//!    return the error. Either way the primary is not asked again before
//!    [`CacheSettings::retry_interval`] (or `Retry-After`), so a dead upstream is not
//!    hammered by every reconcile.
//!
//! `now` is an argument (the controller passes the wall clock, tests a fixed instant); only
//! the waits between retries use the runtime's timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use tokio::sync::broadcast;

use super::{Forecast, ForecastError, ForecastSource};
use crate::metrics::Metrics;
use crate::series::Series;

/// Tunables; [`Default`] matches the CLI defaults.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// How long a fetched forecast is used before asking again (`--forecast-refresh`).
    pub refresh: Duration,
    /// Fraction of `refresh` by which each entry's next refresh is randomly moved (0..1).
    pub jitter: f64,
    /// How long the last good forecast is served while the primary fails
    /// (`--forecast-max-age`), counted from when it was fetched.
    pub max_age: Duration,
    /// Bound on one fetch attempt (which for WattTime may be a login plus a request).
    pub timeout: Duration,
    /// Retries after the first attempt, for retryable errors (timeouts, 5xx, 429).
    pub retries: u32,
    /// First backoff; doubles per retry up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// While the primary fails, how long before asking it again.
    pub retry_interval: Duration,
    /// How much observed past to keep in each region's series.
    pub history: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(300),
            jitter: 0.1,
            max_age: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            retry_interval: Duration::from_secs(60),
            history: Duration::from_secs(3 * 86_400),
        }
    }
}

/// Why the served forecast is not a fresh one from the primary source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The primary failed with this error kind; its last good forecast, younger than
    /// `max_age`, is served.
    Stale { error: &'static str },
    /// The primary failed with this error kind and had nothing young enough; the fallback
    /// source's forecast is served.
    PrimaryFailed { error: &'static str },
}

impl FallbackReason {
    /// Bounded label for `carbonshift_forecast_fallback_total{reason}`.
    pub fn label(&self) -> String {
        match self {
            FallbackReason::Stale { error } => format!("stale_{error}"),
            FallbackReason::PrimaryFailed { error } => format!("fallback_{error}"),
        }
    }
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FallbackReason::Stale { error } => {
                write!(f, "serving the last good forecast: the provider failed ({error})")
            }
            FallbackReason::PrimaryFailed { error } => write!(
                f,
                "serving the fallback source: the provider failed ({error}) and its last forecast is too old"
            ),
        }
    }
}

/// What the cache serves: the forecast plus where it came from.
#[derive(Debug, Clone)]
pub struct CachedForecast {
    /// `forecast.source` names the provider that produced it (the fallback's name when
    /// `fallback` is `PrimaryFailed`); `forecast.series` includes observed history.
    pub forecast: Forecast,
    /// `None` when this is a fresh forecast from the primary source.
    pub fallback: Option<FallbackReason>,
    /// When the cache obtained the forecast (the `now` of that refresh).
    pub fetched_at: DateTime<Utc>,
    /// The primary's latest error message, when it failed (for status conditions).
    pub last_error: Option<String>,
}

impl CachedForecast {
    pub fn series(&self) -> &Series {
        &self.forecast.series
    }

    /// Intensity (gCO2eq/kWh) in force at `t`, past or future, if covered.
    pub fn intensity_at(&self, t: DateTime<Utc>) -> Option<f64> {
        self.forecast.series.value_at(t)
    }

    /// The known intensities over `[from, to)` (observed past or forecast), if any overlap.
    pub fn window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Series> {
        self.forecast.series.slice(from, to)
    }

    /// Whether this is another source standing in for the failed primary (fallback
    /// `PrimaryFailed`): it plans, but its past is no record of the region's intensities.
    pub fn is_stand_in(&self) -> bool {
        matches!(self.fallback, Some(FallbackReason::PrimaryFailed { .. }))
    }

    /// A one-line provenance for logs and status (`electricitymaps`, `embedded (historical
    /// replay)`, `embedded (fallback: ...)`).
    pub fn provenance(&self) -> String {
        let mut s = self.forecast.source.clone();
        if self.forecast.historical_replay {
            s.push_str(" (historical replay)");
        }
        if let Some(r) = &self.fallback {
            s.push_str(&format!("; {r}"));
        }
        s
    }
}

/// Maps a primary region name to the fallback source's (e.g. `CAISO_NORTH` to
/// `US-CAL-CISO` for the embedded traces).
pub type RegionMapper = Arc<dyn Fn(&str) -> String + Send + Sync>;

#[derive(Default)]
struct Snapshot {
    current: Option<Arc<CachedForecast>>,
    error: Option<ForecastError>,
    next_refresh: Option<DateTime<Utc>>,
    /// When a caller last asked for the region: the refresher polls only regions asked
    /// for within [`Cache::idle_after`].
    last_asked: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct RefreshState {
    /// Last successful primary forecast, history merged in.
    last_good: Option<Arc<CachedForecast>>,
    /// The primary must not be asked before this (Retry-After).
    not_before: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct HistoryState {
    /// What the provider's history endpoint returned, merged over successive requests.
    series: Option<Series>,
    /// The last request: its span and when it was made (not repeated before
    /// `retry_interval` has passed).
    asked: Option<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)>,
}

#[derive(Default)]
struct Entry {
    snapshot: Mutex<Snapshot>,
    refresh: tokio::sync::Mutex<RefreshState>,
    /// A background refresh ([`Cache::serve`]) is in flight.
    refreshing: std::sync::atomic::AtomicBool,
    /// Woken whenever a refresh stores its result.
    stored: tokio::sync::Notify,
    history: Mutex<HistoryState>,
    /// A history request ([`Cache::history`]) is in flight.
    fetching_history: std::sync::atomic::AtomicBool,
    /// Woken whenever a history request ends.
    history_stored: tokio::sync::Notify,
}

impl Entry {
    /// The cached answer if it may be served without asking upstream.
    fn fresh(&self, now: DateTime<Utc>) -> Option<Result<Arc<CachedForecast>, ForecastError>> {
        let snap = self.snapshot.lock().ok()?;
        let due = snap.next_refresh.is_none_or(|t| now >= t);
        if due {
            return None;
        }
        if let Some(c) = &snap.current {
            if c.forecast.series.end() > now && c.forecast.series.start() <= now {
                return Some(Ok(c.clone()));
            }
            // Served data no longer covers now: refresh regardless of the interval.
            return None;
        }
        snap.error.clone().map(Err)
    }

    fn store(
        &self,
        current: Option<Arc<CachedForecast>>,
        error: Option<ForecastError>,
        next: DateTime<Utc>,
    ) {
        if let Ok(mut snap) = self.snapshot.lock() {
            snap.current = current;
            snap.error = error;
            snap.next_refresh = Some(next);
        }
        self.stored.notify_waiters();
    }

    fn touch(&self, now: DateTime<Utc>) {
        if let Ok(mut snap) = self.snapshot.lock() {
            snap.last_asked = Some(snap.last_asked.map_or(now, |t| t.max(now)));
        }
    }

    fn asked_since(&self, t: DateTime<Utc>) -> bool {
        self.snapshot
            .lock()
            .ok()
            .and_then(|s| s.last_asked)
            .is_some_and(|a| a >= t)
    }

    /// What may be served without waiting for upstream: fresh data, else data that still
    /// covers `now` (due for a refresh, or the last good forecast), else a stored error
    /// that is not yet due for a retry.
    fn servable(&self, now: DateTime<Utc>) -> Option<Result<Arc<CachedForecast>, ForecastError>> {
        if let Some(r) = self.fresh(now) {
            return Some(r);
        }
        let snap = self.snapshot.lock().ok()?;
        snap.current
            .as_ref()
            .filter(|c| c.forecast.series.start() <= now && c.forecast.series.end() > now)
            .map(|c| Ok(c.clone()))
    }
}

/// The per-region forecast cache. Share it as `Arc<Cache>`.
pub struct Cache {
    source: Arc<dyn ForecastSource>,
    fallback: Option<Arc<dyn ForecastSource>>,
    fallback_region: RegionMapper,
    settings: CacheSettings,
    metrics: Metrics,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    refreshed: broadcast::Sender<String>,
}

impl Cache {
    /// A cache over `source`, falling back to `fallback` (e.g. the embedded replay) when the
    /// primary fails and its last forecast is older than `settings.max_age`.
    pub fn new(
        source: Arc<dyn ForecastSource>,
        fallback: Option<Arc<dyn ForecastSource>>,
        settings: CacheSettings,
        metrics: Metrics,
    ) -> Self {
        let (refreshed, _) = broadcast::channel(1024);
        Self {
            source,
            fallback,
            fallback_region: Arc::new(|r: &str| r.to_string()),
            settings,
            metrics,
            entries: Mutex::new(HashMap::new()),
            refreshed,
        }
    }

    /// Sets how primary region names translate to the fallback's (identity by default).
    pub fn with_fallback_region(mut self, mapper: RegionMapper) -> Self {
        self.fallback_region = mapper;
        self
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Region names whose forecast changed (fresh fetch, or a switch to stale/fallback data).
    /// A receiver that falls more than 1,024 messages behind gets `Lagged` and should then
    /// replan every region.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.refreshed.subscribe()
    }

    /// Regions asked for so far.
    pub fn regions(&self) -> Vec<String> {
        self.entries
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The last served value, without refreshing.
    pub fn peek(&self, region: &str) -> Option<Arc<CachedForecast>> {
        let entry = self.entries.lock().ok()?.get(region)?.clone();
        let snap = entry.snapshot.lock().ok()?;
        snap.current.clone()
    }

    fn entry(&self, region: &str) -> Arc<Entry> {
        match self.entries.lock() {
            Ok(mut m) => m.entry(region.to_string()).or_default().clone(),
            // A poisoned map means a panic elsewhere; a private entry still works, it just
            // is not shared.
            Err(_) => Arc::new(Entry::default()),
        }
    }

    /// The forecast for `region` at `now`; see the module doc for the policy.
    pub async fn get(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<CachedForecast>, ForecastError> {
        let entry = self.entry(region);
        if let Some(r) = entry.fresh(now) {
            return r.inspect(|c| self.observe(region, c, now));
        }
        let mut st = entry.refresh.lock().await;
        if let Some(r) = entry.fresh(now) {
            return r.inspect(|c| self.observe(region, c, now));
        }
        let result = self.refresh(region, &entry, &mut st, now).await;
        result.inspect(|c| self.observe(region, c, now))
    }

    /// The forecast for `region` at `now` without waiting on upstream for longer than
    /// `wait`: what the reconciler uses, so that a provider that hangs or fails for one
    /// region never holds reconciles (of any region) for its timeouts and retries.
    ///
    /// Data that still covers `now` is served at once; when it is due, a refresh starts in
    /// the background (one per region at a time) and its result is served from then on.
    /// A region with nothing to serve yet (its first request, or only an error) starts that
    /// refresh and waits up to `wait` for it; if it has not finished then, the answer is
    /// [`ForecastError::Unavailable`] and the caller looks again later (the refresh
    /// announces itself on [`Cache::subscribe`] when done).
    pub async fn serve(
        self: &Arc<Self>,
        region: &str,
        now: DateTime<Utc>,
        wait: Duration,
    ) -> Result<Arc<CachedForecast>, ForecastError> {
        let entry = self.entry(region);
        entry.touch(now);
        if let Some(r) = entry.fresh(now) {
            return r.inspect(|c| self.observe(region, c, now));
        }
        // Registered before the refresh starts, so its notification cannot be missed.
        let stored = entry.stored.notified();
        self.refresh_in_background(region, &entry, now);
        if let Some(Ok(c)) = entry.servable(now) {
            self.observe(region, &c, now);
            return Ok(c);
        }
        let _ = tokio::time::timeout(wait, stored).await;
        match entry.fresh(now).or_else(|| entry.servable(now)) {
            Some(r) => r.inspect(|c| self.observe(region, c, now)),
            None => Err(ForecastError::Unavailable {
                provider: self.source.name().to_string(),
                detail: format!(
                    "the forecast for {region} is being fetched (not ready after {} ms); \
                     planning again when it arrives",
                    wait.as_millis()
                ),
            }),
        }
    }

    /// Starts [`Cache::get`] for `region` in a task unless one is already in flight.
    fn refresh_in_background(
        self: &Arc<Self>,
        region: &str,
        entry: &Arc<Entry>,
        now: DateTime<Utc>,
    ) {
        use std::sync::atomic::Ordering;
        if entry
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let cache = Arc::clone(self);
        let entry = Arc::clone(entry);
        let region = region.to_string();
        tokio::spawn(async move {
            if let Err(e) = cache.get(&region, now.max(Utc::now())).await {
                tracing::debug!(region, error = %e, "background forecast refresh failed");
            }
            entry.refreshing.store(false, Ordering::Release);
            entry.stored.notify_waiters();
        });
    }

    /// Regions not asked for this long are no longer polled: three refresh intervals, so
    /// a region whose jobs are replanned at every refresh stays polled, and one whose jobs
    /// are all gone (finished, deleted) stops being polled.
    pub fn idle_after(&self) -> Duration {
        self.settings.refresh.saturating_mul(3)
    }

    /// Regions asked for within [`Cache::idle_after`] of `now`.
    pub fn active_regions(&self, now: DateTime<Utc>) -> Vec<String> {
        let since = now - to_delta(self.idle_after());
        self.entries
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, e)| e.asked_since(since))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Spawns a task that refreshes every active region (see [`Cache::active_regions`]) when
    /// its refresh is due, so subscribers hear of new forecasts even when no reconcile asks.
    /// Checks every `tick`; each region refreshes in its own task, so one that hangs delays
    /// no other.
    pub fn spawn_refresher(self: &Arc<Self>, tick: Duration) -> tokio::task::JoinHandle<()> {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let now = Utc::now();
                for region in cache.active_regions(now) {
                    let entry = cache.entry(&region);
                    if entry.fresh(now).is_none() {
                        cache.refresh_in_background(&region, &entry, now);
                    }
                }
            }
        })
    }

    async fn refresh(
        &self,
        region: &str,
        entry: &Entry,
        st: &mut RefreshState,
        now: DateTime<Utc>,
    ) -> Result<Arc<CachedForecast>, ForecastError> {
        let primary = match st.not_before {
            Some(t) if now < t => Err(ForecastError::RateLimited {
                provider: self.source.name().to_string(),
                retry_after_secs: Some((t - now).num_seconds().max(0) as u64),
            }),
            _ => self.fetch_with_retries(region, now).await,
        };
        match primary {
            Ok(mut f) => {
                st.not_before = None;
                // History is kept only across a continuous view: after an outage longer
                // than `max_age` the old forecast's values for the gap were never live,
                // so they are dropped (the gap's past comes from `Cache::history`).
                let continuous = |old: &&Arc<CachedForecast>| {
                    now - old.fetched_at <= to_delta(self.settings.max_age)
                };
                if let Some(old) = st.last_good.as_ref().filter(continuous) {
                    let keep_from = now - to_delta(self.settings.history);
                    f.series = merge_history(&old.forecast.series, &f.series, keep_from);
                }
                let cf = Arc::new(CachedForecast {
                    forecast: f,
                    fallback: None,
                    fetched_at: now,
                    last_error: None,
                });
                st.last_good = Some(cf.clone());
                entry.store(Some(cf.clone()), None, now + self.jittered_refresh());
                tracing::info!(
                    region,
                    provider = self.source.name(),
                    replay = cf.forecast.historical_replay,
                    points = cf.forecast.series.len(),
                    until = %cf.forecast.series.end(),
                    "forecast refreshed"
                );
                let _ = self.refreshed.send(region.to_string());
                Ok(cf)
            }
            Err(e) => {
                let retry_at = now + self.retry_delay(&e);
                if let ForecastError::RateLimited {
                    retry_after_secs: Some(s),
                    ..
                } = &e
                {
                    st.not_before = Some(now + TimeDelta::seconds(*s as i64));
                }
                let was_fallback = entry
                    .snapshot
                    .lock()
                    .ok()
                    .and_then(|s| s.current.as_ref().map(|c| c.fallback.is_some()))
                    .unwrap_or(false);
                if let Some(good) = st.last_good.as_ref().filter(|g| {
                    now - g.fetched_at <= to_delta(self.settings.max_age)
                        && g.forecast.series.end() > now
                }) {
                    let reason = FallbackReason::Stale { error: e.kind() };
                    let cf = Arc::new(CachedForecast {
                        forecast: good.forecast.clone(),
                        fallback: Some(reason),
                        fetched_at: good.fetched_at,
                        last_error: Some(e.to_string()),
                    });
                    self.count_fallback(&reason);
                    tracing::warn!(region, error = %e, "forecast refresh failed; serving the last good forecast");
                    entry.store(Some(cf.clone()), None, retry_at);
                    if !was_fallback {
                        let _ = self.refreshed.send(region.to_string());
                    }
                    return Ok(cf);
                }
                if let Some(fb) = &self.fallback {
                    let fb_region = (self.fallback_region)(region);
                    match self.fetch_fallback(fb.as_ref(), &fb_region, now).await {
                        Ok(mut f) => {
                            let reason = FallbackReason::PrimaryFailed { error: e.kind() };
                            // The cache is keyed by the primary's region name.
                            f.region = region.to_string();
                            let cf = Arc::new(CachedForecast {
                                forecast: f,
                                fallback: Some(reason),
                                fetched_at: now,
                                last_error: Some(e.to_string()),
                            });
                            self.count_fallback(&reason);
                            tracing::warn!(
                                region,
                                error = %e,
                                fallback = fb.name(),
                                replay = cf.forecast.historical_replay,
                                "forecast provider failed; serving the fallback source"
                            );
                            entry.store(Some(cf.clone()), None, retry_at);
                            let _ = self.refreshed.send(region.to_string());
                            return Ok(cf);
                        }
                        Err(fe) => {
                            tracing::error!(region, error = %e, fallback_error = %fe, "forecast provider and fallback both failed");
                        }
                    }
                } else {
                    tracing::error!(region, error = %e, "forecast provider failed and no fallback is configured");
                }
                entry.store(None, Some(e.clone()), retry_at);
                Err(e)
            }
        }
    }

    /// Recorded intensities of `region` over `[from, to)` from the primary's history
    /// endpoint, as far as it has them (see [`ForecastSource::history`]), waiting at most
    /// `wait` for an answer. One request per region at a time, the same span not asked
    /// again before `retry_interval`, at most [`MAX_HISTORY_DAYS`] back from `now`. A
    /// request that ends after `wait` is kept and served to the next caller; subscribers
    /// hear of it like of a refresh, so jobs waiting for it settle their accounts.
    pub async fn history(
        self: &Arc<Self>,
        region: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        wait: Duration,
    ) -> Option<Series> {
        let from = from.max(now - TimeDelta::days(MAX_HISTORY_DAYS));
        let to = to.min(now);
        if from >= to {
            return None;
        }
        let entry = self.entry(region);
        let covers = |s: &Series| s.start() <= from && s.end() >= to;
        let (have, due) = {
            let h = entry.history.lock().ok()?;
            let have = h.series.clone();
            let asked_lately = h.asked.is_some_and(|(a, b, at)| {
                a <= from && b >= to && now - at < to_delta(self.settings.retry_interval)
            });
            let due = !have.as_ref().is_some_and(covers) && !asked_lately;
            (have, due)
        };
        if !due {
            return have;
        }
        let done = entry.history_stored.notified();
        self.history_in_background(region, &entry, from, to, now);
        let _ = tokio::time::timeout(wait, done).await;
        let served = entry.history.lock().ok().and_then(|h| h.series.clone());
        served
    }

    /// Starts one history request for `region` unless one is in flight.
    fn history_in_background(
        self: &Arc<Self>,
        region: &str,
        entry: &Arc<Entry>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        use std::sync::atomic::Ordering;
        if entry
            .fetching_history
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let (cache, entry, region) = (Arc::clone(self), Arc::clone(entry), region.to_string());
        tokio::spawn(async move {
            // Ask for the whole span the record should hold, so it grows into one series.
            let known = entry.history.lock().ok().and_then(|h| h.series.clone());
            let (a, b) = match &known {
                Some(k) if k.end() >= from && k.start() <= to => {
                    (from.min(k.start()), to.max(k.end()))
                }
                _ => (from, to),
            };
            let started = Instant::now();
            let src = cache.source.as_ref();
            let result =
                match tokio::time::timeout(cache.settings.timeout, src.history(&region, a, b, now))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(ForecastError::Timeout {
                        provider: src.name().to_string(),
                    }),
                };
            cache.count_request(src.name(), &result, started);
            let merged = match result {
                Ok(s) => {
                    tracing::info!(region, from = %s.start(), to = %s.end(), points = s.len(), "history fetched");
                    Some(match &known {
                        Some(k) => merge_history(k, &s, now - TimeDelta::days(MAX_HISTORY_DAYS)),
                        None => s,
                    })
                }
                Err(e) => {
                    tracing::warn!(region, error = %e, %from, %to, "cannot fetch the region's history");
                    None
                }
            };
            if let Ok(mut h) = entry.history.lock() {
                h.asked = Some((from, to, now));
                if merged.is_some() {
                    h.series = merged;
                }
            }
            entry.fetching_history.store(false, Ordering::Release);
            entry.history_stored.notify_waiters();
            let _ = cache.refreshed.send(region);
        });
    }

    async fn fetch_with_retries(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Forecast, ForecastError> {
        let mut attempt: u32 = 0;
        loop {
            let result = self.attempt(self.source.as_ref(), region, now).await;
            let e = match result {
                Ok(f) => return Ok(f),
                Err(e) => e,
            };
            if attempt >= self.settings.retries || !retryable(&e) {
                return Err(e);
            }
            let wait = match &e {
                ForecastError::RateLimited {
                    retry_after_secs: Some(s),
                    ..
                } => {
                    let wait = Duration::from_secs(*s);
                    if wait > self.settings.backoff_max {
                        // Waiting that long would stall every caller of this region; give
                        // up this round (the caller serves stale/fallback data).
                        return Err(e);
                    }
                    wait
                }
                _ => self.backoff(attempt),
            };
            tracing::debug!(region, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying forecast fetch");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn fetch_fallback(
        &self,
        fb: &dyn ForecastSource,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Forecast, ForecastError> {
        self.attempt(fb, region, now).await
    }

    /// One bounded attempt, with metrics.
    async fn attempt(
        &self,
        src: &dyn ForecastSource,
        region: &str,
        now: DateTime<Utc>,
    ) -> Result<Forecast, ForecastError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.settings.timeout, src.fetch(region, now)).await
        {
            Ok(r) => r,
            Err(_) => Err(ForecastError::Timeout {
                provider: src.name().to_string(),
            }),
        };
        self.count_request(src.name(), &result, started);
        result
    }

    /// Counts one upstream request in `forecast_requests_total` and its duration.
    fn count_request<T>(&self, name: &str, result: &Result<T, ForecastError>, started: Instant) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.metrics
            .forecast_requests
            .with_label_values(&[name, outcome])
            .inc();
        self.metrics
            .forecast_request_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
    }

    fn observe(&self, region: &str, c: &CachedForecast, now: DateTime<Utc>) {
        let age = (now - c.forecast.generated_at).num_seconds().max(0) as f64;
        self.metrics
            .forecast_age
            .with_label_values(&[region])
            .set(age);
        if let Some(v) = c.intensity_at(now) {
            self.metrics
                .grid_intensity
                .with_label_values(&[
                    region,
                    c.forecast.source.as_str(),
                    c.forecast.signal.label(),
                ])
                .set(v);
        }
    }

    fn count_fallback(&self, reason: &FallbackReason) {
        self.metrics
            .forecast_fallback
            .with_label_values(&[self.source.name(), reason.label().as_str()])
            .inc();
    }

    fn jittered_refresh(&self) -> TimeDelta {
        let base = self.settings.refresh.as_secs_f64();
        let j = self.settings.jitter.clamp(0.0, 0.9);
        let factor = if j > 0.0 {
            1.0 + rand::rng().random_range(-j..=j)
        } else {
            1.0
        };
        TimeDelta::milliseconds((base * factor * 1000.0) as i64)
    }

    fn retry_delay(&self, e: &ForecastError) -> TimeDelta {
        let base = self.settings.retry_interval.min(self.settings.refresh);
        let base = to_delta(base);
        match e {
            ForecastError::RateLimited {
                retry_after_secs: Some(s),
                ..
            } => base.max(TimeDelta::seconds(*s as i64)),
            // The provider says the region does not exist: asking again will not change
            // that soon.
            ForecastError::UnknownRegion { .. } => TimeDelta::hours(1),
            _ => base,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .settings
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.settings.backoff_max);
        // "Equal jitter": half fixed, half random, so retries spread out but never vanish.
        let half = exp / 2;
        let extra = rand::rng().random_range(0.0..=1.0);
        half + half.mul_f64(extra)
    }
}

/// How far back [`Cache::history`] asks: the spans a job still owes older than this are
/// left unaccounted (most providers keep no more at hourly resolution on common plans).
pub const MAX_HISTORY_DAYS: i64 = 31;

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Whether trying again soon may help.
pub fn retryable(e: &ForecastError) -> bool {
    matches!(
        e,
        ForecastError::Timeout { .. }
            | ForecastError::Upstream { .. }
            | ForecastError::RateLimited { .. }
    )
}

/// `new` preceded by the part of `old` before `new` starts and after `keep_from`, when the
/// two lie on one grid and touch or overlap (newer values win where both exist). Otherwise
/// `new` alone: history with a hole would misstate the past.
pub fn merge_history(old: &Series, new: &Series, keep_from: DateTime<Utc>) -> Series {
    let step = new.step_secs();
    let old = if old.step_secs() == step {
        old.clone()
    } else {
        match old.resample(step) {
            Ok(o) => o,
            Err(_) => return new.clone(),
        }
    };
    if old.start() >= new.start()
        || old.end() < new.start()
        || (new.start() - old.start()).num_seconds() % step != 0
    {
        return new.clone();
    }
    let mut from = old.start();
    if keep_from > from {
        // First slot of the shared grid at or after keep_from.
        let k = ((keep_from - from).num_seconds() + step - 1) / step;
        from += TimeDelta::seconds(k * step);
    }
    if from >= new.start() {
        return new.clone();
    }
    let Some(prefix) = old.slice(from, new.start()) else {
        return new.clone();
    };
    let mut values = prefix.values().to_vec();
    values.extend_from_slice(new.values());
    Series::new(prefix.start(), step, values).unwrap_or_else(|_| new.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
    }

    #[test]
    fn history_merges_on_one_grid() {
        let old = Series::new(t(0), 3600, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let new = Series::new(t(2), 3600, vec![30.0, 40.0, 50.0]).unwrap();
        let m = merge_history(&old, &new, t(1));
        assert_eq!(m.start(), t(1));
        assert_eq!(m.values(), &[2.0, 30.0, 40.0, 50.0]);
        // A hole between them: history dropped.
        let far = Series::new(t(10), 3600, vec![5.0]).unwrap();
        assert_eq!(merge_history(&old, &far, t(0)), far);
        // Finer new series: old is resampled.
        let fine = Series::new(t(3), 1800, vec![7.0, 8.0]).unwrap();
        let m = merge_history(&old, &fine, t(2));
        assert_eq!(m.values(), &[3.0, 3.0, 7.0, 8.0]);
    }

    #[test]
    fn fallback_labels_are_bounded() {
        assert_eq!(
            FallbackReason::Stale { error: "timeout" }.label(),
            "stale_timeout"
        );
        assert_eq!(
            FallbackReason::PrimaryFailed { error: "auth" }.label(),
            "fallback_auth"
        );
    }
}
