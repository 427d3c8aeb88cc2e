//! The shared forecast cache over real HTTP: single flight (200 concurrent jobs, one
//! upstream request), refresh interval, retries, stale serving, fallback with its reason,
//! refresh notifications, observed history and metrics.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use carbonshift::forecast::electricitymaps::ElectricityMaps;
use carbonshift::forecast::embedded::{EmbeddedSource, TraceLoader};
use carbonshift::forecast::{
    Cache, CacheSettings, FallbackReason, ForecastError, ForecastSource, Secret,
};
use carbonshift::metrics::Metrics;
use carbonshift::series::Series;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0).unwrap()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An Electricity Maps answer: `hours` hourly values `base, base+1, ...` from `start`.
fn em_body(start: DateTime<Utc>, hours: i64, base: f64) -> Value {
    let forecast: Vec<Value> = (0..hours)
        .map(|i| {
            json!({"carbonIntensity": base + i as f64, "datetime": iso(start + TimeDelta::hours(i))})
        })
        .collect();
    json!({"zone": "DE", "forecast": forecast, "updatedAt": iso(start)})
}

fn em_mock(resp: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .and(query_param("zone", "DE"))
        .respond_with(resp)
}

fn settings() -> CacheSettings {
    CacheSettings {
        refresh: Duration::from_secs(300),
        jitter: 0.0,
        max_age: Duration::from_secs(6 * 3600),
        timeout: Duration::from_secs(5),
        retries: 1,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_secs(2),
        retry_interval: Duration::from_secs(60),
        history: Duration::from_secs(3 * 86_400),
    }
}

fn primary(server: &MockServer) -> Arc<dyn ForecastSource> {
    Arc::new(
        ElectricityMaps::new(server.uri(), Secret::new("t"), Duration::from_secs(5), None).unwrap(),
    )
}

/// An embedded replay over a synthetic, constant 42 g/kWh year.
fn fallback() -> Arc<dyn ForecastSource> {
    let start = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap();
    let trace = Series::new(start, 3600, vec![42.0; 2 * 365 * 24]).unwrap();
    let loader: TraceLoader = Arc::new(move |_: &str| Ok(trace.clone()));
    Arc::new(EmbeddedSource::with_loader(
        loader,
        TimeDelta::days(7),
        TimeDelta::hours(72),
    ))
}

#[tokio::test]
async fn two_hundred_concurrent_jobs_cause_one_upstream_request() {
    let server = MockServer::start().await;
    em_mock(
        ResponseTemplate::new(200)
            .set_body_json(em_body(t0(), 24, 300.0))
            // Slow enough that all callers pile up behind the one refresh.
            .set_delay(Duration::from_millis(300)),
    )
    .expect(1)
    .mount(&server)
    .await;
    let cache = Arc::new(Cache::new(
        primary(&server),
        None,
        settings(),
        Metrics::new().unwrap(),
    ));
    let now = t0() + TimeDelta::minutes(20);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let c = cache.clone();
        tasks.push(tokio::spawn(async move { c.get("DE", now).await }));
    }
    for t in tasks {
        let f = t.await.unwrap().unwrap();
        assert_eq!(f.intensity_at(now), Some(300.0));
    }
    server.verify().await;
}

#[tokio::test]
async fn refreshes_after_the_interval_and_notifies() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(t0(), 24, 300.0)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    // The second fetch an hour later starts later: the cache keeps the observed past.
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(
        t0() + TimeDelta::hours(1),
        24,
        500.0,
    )))
    .expect(1)
    .mount(&server)
    .await;
    let cache = Cache::new(primary(&server), None, settings(), Metrics::new().unwrap());
    let mut rx = cache.subscribe();
    let now = t0() + TimeDelta::minutes(20);
    cache.get("DE", now).await.unwrap();
    assert_eq!(rx.try_recv().unwrap(), "DE");
    // Within the interval: served from memory.
    cache.get("DE", now + TimeDelta::minutes(4)).await.unwrap();
    assert!(rx.try_recv().is_err());
    // After it: fetched again, merged with history.
    let later = t0() + TimeDelta::minutes(70);
    let f = cache.get("DE", later).await.unwrap();
    assert_eq!(rx.try_recv().unwrap(), "DE");
    assert_eq!(f.series().start(), t0());
    assert_eq!(f.intensity_at(t0()), Some(300.0), "observed history kept");
    assert_eq!(f.intensity_at(later), Some(500.0), "new values win");
    assert_eq!(f.window(t0(), later).unwrap().values(), &[300.0, 500.0]);
}

#[tokio::test]
async fn failed_refresh_serves_the_last_good_forecast_then_the_fallback() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(t0(), 72, 300.0)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    em_mock(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount(&server)
        .await;
    let metrics = Metrics::new().unwrap();
    let cache = Cache::new(
        primary(&server),
        Some(fallback()),
        settings(),
        metrics.clone(),
    );
    let now = t0() + TimeDelta::minutes(5);
    let fresh = cache.get("DE", now).await.unwrap();
    assert_eq!(fresh.fallback, None);

    // 10 minutes later the provider is down: the last good forecast, labelled stale.
    let stale = cache.get("DE", now + TimeDelta::minutes(10)).await.unwrap();
    assert_eq!(stale.forecast.source, "electricitymaps");
    assert_eq!(
        stale.fallback,
        Some(FallbackReason::Stale { error: "upstream" })
    );
    assert!(stale.last_error.as_deref().unwrap().contains("503"));
    assert!(stale.provenance().contains("last good forecast"));

    // Seven hours later (max age 6 h): the embedded fallback, labelled as such.
    let fb = cache.get("DE", now + TimeDelta::hours(7)).await.unwrap();
    assert_eq!(fb.forecast.source, "embedded");
    assert!(fb.forecast.historical_replay);
    assert_eq!(
        fb.fallback,
        Some(FallbackReason::PrimaryFailed { error: "upstream" })
    );
    assert_eq!(fb.intensity_at(now + TimeDelta::hours(7)), Some(42.0));
    assert_eq!(fb.forecast.region, "DE");

    let text = metrics.encode();
    assert!(text.contains(
        "carbonshift_forecast_fallback_total{provider=\"electricitymaps\",reason=\"stale_upstream\"} 1"
    ), "{text}");
    assert!(text.contains(
        "carbonshift_forecast_fallback_total{provider=\"electricitymaps\",reason=\"fallback_upstream\"} 1"
    ));
    assert!(
        text.contains(
            "carbonshift_forecast_requests_total{outcome=\"ok\",provider=\"electricitymaps\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "carbonshift_forecast_requests_total{outcome=\"upstream\",provider=\"electricitymaps\"} 4"
    ), "two refreshes x (1 try + 1 retry): {text}");
    assert!(text
        .contains("carbonshift_grid_intensity_gco2_per_kwh{region=\"DE\",signal=\"average\",source=\"embedded\"} 42"));
    assert!(text.contains("carbonshift_forecast_age_seconds{region=\"DE\"}"));
}

#[tokio::test]
async fn a_failing_provider_is_not_hammered() {
    let server = MockServer::start().await;
    // retries = 1: one refresh is two requests; later callers within the retry interval
    // get the cached error without asking upstream.
    em_mock(ResponseTemplate::new(500))
        .expect(2)
        .mount(&server)
        .await;
    let cache = Cache::new(primary(&server), None, settings(), Metrics::new().unwrap());
    let now = t0();
    for s in 0..50 {
        let e = cache
            .get("DE", now + TimeDelta::seconds(s))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "upstream");
    }
    server.verify().await;
}

#[tokio::test]
async fn long_retry_after_gives_up_the_round_and_is_respected() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(429).insert_header("Retry-After", "600"))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Cache::new(
        primary(&server),
        Some(fallback()),
        settings(),
        Metrics::new().unwrap(),
    );
    let started = std::time::Instant::now();
    let f = cache.get("DE", t0()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not sleep 600 s"
    );
    assert_eq!(
        f.fallback,
        Some(FallbackReason::PrimaryFailed {
            error: "rate_limited"
        })
    );
    // Past the retry interval but before Retry-After: upstream still not asked.
    let f = cache.get("DE", t0() + TimeDelta::minutes(2)).await.unwrap();
    assert_eq!(f.forecast.source, "embedded");
    server.verify().await;
}

#[tokio::test]
async fn timeout_falls_back_and_no_fallback_is_an_error() {
    let server = MockServer::start().await;
    em_mock(
        ResponseTemplate::new(200)
            .set_body_json(em_body(t0(), 24, 300.0))
            .set_delay(Duration::from_secs(3)),
    )
    .mount(&server)
    .await;
    let quick = CacheSettings {
        timeout: Duration::from_millis(200),
        retries: 0,
        ..settings()
    };
    let with_fb = Cache::new(
        primary(&server),
        Some(fallback()),
        quick.clone(),
        Metrics::new().unwrap(),
    );
    let f = with_fb.get("DE", t0()).await.unwrap();
    assert_eq!(
        f.fallback,
        Some(FallbackReason::PrimaryFailed { error: "timeout" })
    );
    let without = Cache::new(primary(&server), None, quick, Metrics::new().unwrap());
    let e = without.get("DE", t0()).await.unwrap_err();
    assert!(matches!(e, ForecastError::Timeout { .. }), "{e:?}");
}

#[tokio::test]
async fn regions_are_cached_independently() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(t0(), 24, 300.0)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .and(query_param("zone", "FR"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "zone": "FR",
            "forecast": [{"carbonIntensity": 30, "datetime": iso(t0())},
                         {"carbonIntensity": 31, "datetime": iso(t0() + TimeDelta::hours(1))}],
            "updatedAt": iso(t0())
        })))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Cache::new(primary(&server), None, settings(), Metrics::new().unwrap());
    for _ in 0..5 {
        assert_eq!(
            cache.get("DE", t0()).await.unwrap().intensity_at(t0()),
            Some(300.0)
        );
        assert_eq!(
            cache.get("FR", t0()).await.unwrap().intensity_at(t0()),
            Some(30.0)
        );
    }
    let mut regions = cache.regions();
    regions.sort();
    assert_eq!(regions, vec!["DE".to_string(), "FR".to_string()]);
    assert!(cache.peek("DE").is_some());
}

// ------------------------------------------------------------------------------------------
// The reconciler's path: `Cache::serve` never waits on a slow upstream (issue 10, point 8)

/// [`em_body`] for `zone`.
fn em_body_for(zone: &str, start: DateTime<Utc>, hours: i64, base: f64) -> Value {
    let mut b = em_body(start, hours, base);
    b["zone"] = json!(zone);
    b
}

fn em_zone(zone: &str, resp: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .and(query_param("zone", zone))
        .respond_with(resp)
}

async fn requests_for(server: &MockServer, zone: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.url
                .query()
                .unwrap_or("")
                .contains(&format!("zone={zone}"))
        })
        .count()
}

/// Region A's endpoint hangs 20 s; region B's answers. B is served in well under a second
/// while A's fetch is still in flight, and A's first request gives up after the wait
/// instead of holding the caller for the upstream timeout.
#[tokio::test]
async fn a_hanging_region_delays_no_other() {
    let server = MockServer::start().await;
    let now = Utc::now();
    em_zone(
        "AA",
        ResponseTemplate::new(200)
            .set_body_json(em_body_for("AA", now, 24, 100.0))
            .set_delay(Duration::from_secs(20)),
    )
    .mount(&server)
    .await;
    em_zone(
        "BB",
        ResponseTemplate::new(200).set_body_json(em_body_for("BB", now, 24, 200.0)),
    )
    .mount(&server)
    .await;
    let mut s = settings();
    s.timeout = Duration::from_secs(30);
    let cache = Arc::new(Cache::new(
        primary(&server),
        None,
        s,
        Metrics::new().unwrap(),
    ));

    let t = std::time::Instant::now();
    let a = cache.serve("AA", now, Duration::from_millis(500)).await;
    let a_wait = t.elapsed();
    assert!(matches!(a, Err(ForecastError::Unavailable { .. })), "{a:?}");
    let t = std::time::Instant::now();
    let b = cache.serve("BB", now, Duration::from_secs(2)).await;
    let b_wait = t.elapsed();
    assert!(b.is_ok(), "{b:?}");
    println!("A gave up after {a_wait:?}; B served in {b_wait:?} while A hangs");
    assert!(a_wait < Duration::from_secs(2), "{a_wait:?}");
    assert!(b_wait < Duration::from_secs(1), "{b_wait:?}");
    // A second ask for A while its fetch is in flight starts no second request.
    let _ = cache.serve("AA", now, Duration::from_millis(100)).await;
    assert_eq!(requests_for(&server, "AA").await, 1);
}

/// Once a region has data, a due refresh runs in the background: the caller gets the last
/// forecast at once, even while the upstream hangs.
#[tokio::test]
async fn a_due_refresh_never_holds_the_caller() {
    let server = MockServer::start().await;
    let now = Utc::now();
    em_zone(
        "DE",
        ResponseTemplate::new(200).set_body_json(em_body(now, 24, 100.0)),
    )
    .up_to_n_times(1)
    .mount(&server)
    .await;
    em_zone(
        "DE",
        ResponseTemplate::new(200)
            .set_body_json(em_body(now, 24, 300.0))
            .set_delay(Duration::from_secs(20)),
    )
    .mount(&server)
    .await;
    let mut s = settings();
    s.timeout = Duration::from_secs(30);
    let cache = Arc::new(Cache::new(
        primary(&server),
        None,
        s,
        Metrics::new().unwrap(),
    ));
    let first = cache
        .serve("DE", now, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.intensity_at(now), Some(100.0));
    // Ten minutes later the refresh (5 min) is due and the upstream hangs.
    let later = now + TimeDelta::minutes(10);
    let t = std::time::Instant::now();
    let served = cache
        .serve("DE", later, Duration::from_secs(5))
        .await
        .unwrap();
    let waited = t.elapsed();
    println!("served the last forecast in {waited:?} while the refresh hangs");
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    // The first forecast (100 g/kWh in this hour), not the hanging refresh's 300.
    assert_eq!(served.intensity_at(later), Some(100.0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        requests_for(&server, "DE").await,
        2,
        "one refresh in the background"
    );
}

/// Regions nobody asks for any more are not polled (issue 10, point 9): the refresher
/// polls only regions asked for within three refresh intervals.
#[tokio::test]
async fn only_regions_asked_for_recently_are_active() {
    let server = MockServer::start().await;
    let now = Utc::now();
    for zone in ["DE", "FR"] {
        em_zone(
            zone,
            ResponseTemplate::new(200).set_body_json(em_body_for(zone, now, 24, 100.0)),
        )
        .mount(&server)
        .await;
    }
    let cache = Arc::new(Cache::new(
        primary(&server),
        None,
        settings(),
        Metrics::new().unwrap(),
    ));
    assert_eq!(cache.idle_after(), Duration::from_secs(900));
    cache
        .serve("DE", now, Duration::from_secs(5))
        .await
        .unwrap();
    cache
        .serve("FR", now + TimeDelta::minutes(10), Duration::from_secs(5))
        .await
        .unwrap();
    let mut active = cache.active_regions(now + TimeDelta::minutes(14));
    active.sort();
    assert_eq!(active, ["DE", "FR"]);
    assert_eq!(
        cache.active_regions(now + TimeDelta::minutes(16)),
        ["FR"],
        "DE was last asked for 16 min ago"
    );
    assert!(cache
        .active_regions(now + TimeDelta::minutes(26))
        .is_empty());
}

/// Requests to `path`.
async fn requests_to(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

fn past_range(start: DateTime<Utc>, hours: i64, base: f64) -> Value {
    let data: Vec<Value> = (0..hours)
        .map(|i| json!({"zone": "DE", "carbonIntensity": base + i as f64, "datetime": iso(start + TimeDelta::hours(i))}))
        .collect();
    json!({"zone": "DE", "data": data})
}

/// The past a job needs and the live data do not reach comes from the provider's history
/// endpoint: once per span (a narrower span is served from the record), a failed request
/// not repeated before the retry interval, and subscribers told when it arrives.
#[tokio::test]
async fn history_is_asked_once_per_span_and_kept() {
    let server = MockServer::start().await;
    let hist = "/v3/carbon-intensity/past-range";
    Mock::given(method("GET"))
        .and(path(hist))
        .and(query_param("zone", "DE"))
        .respond_with(ResponseTemplate::new(200).set_body_json(past_range(
            t0() - TimeDelta::hours(6),
            6,
            100.0,
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(hist))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let cache = Arc::new(Cache::new(
        primary(&server),
        None,
        settings(),
        Metrics::new().unwrap(),
    ));
    let mut rx = cache.subscribe();
    let now = t0() + TimeDelta::minutes(30);
    let wait = Duration::from_secs(5);
    let h = cache
        .history("DE", t0() - TimeDelta::hours(6), t0(), now, wait)
        .await
        .expect("history");
    assert_eq!(
        (h.start(), h.step_secs(), h.len()),
        (t0() - TimeDelta::hours(6), 3600, 6)
    );
    assert_eq!(h.values(), &[100.0, 101.0, 102.0, 103.0, 104.0, 105.0]);
    assert_eq!(rx.recv().await.unwrap(), "DE");
    // A narrower span: from the record, no request.
    let again = cache
        .history("DE", t0() - TimeDelta::hours(3), t0(), now, wait)
        .await;
    assert_eq!(again.as_ref(), Some(&h));
    assert_eq!(requests_to(&server, hist).await, 1);
    // A wider span: asked (and refused, 503); the record is kept and served.
    let wider = cache
        .history("DE", t0() - TimeDelta::hours(9), t0(), now, wait)
        .await;
    assert_eq!(wider.as_ref(), Some(&h));
    let after_wider = requests_to(&server, hist).await;
    assert!(after_wider >= 2, "{after_wider}");
    // Not asked again within the retry interval (60 s), asked again after it.
    let soon = cache
        .history(
            "DE",
            t0() - TimeDelta::hours(9),
            t0(),
            now + TimeDelta::seconds(30),
            wait,
        )
        .await;
    assert_eq!(soon.as_ref(), Some(&h));
    assert_eq!(requests_to(&server, hist).await, after_wider);
    cache
        .history(
            "DE",
            t0() - TimeDelta::hours(9),
            t0(),
            now + TimeDelta::seconds(61),
            wait,
        )
        .await;
    assert!(requests_to(&server, hist).await > after_wider);
    // Nothing to ask for an empty span or one wholly in the future.
    assert_eq!(cache.history("DE", t0(), t0(), now, wait).await, None);
}

/// History is merged across refreshes only while the view is continuous: after an outage
/// longer than the max age, the old forecast's values for the gap were never live and are
/// dropped.
#[tokio::test]
async fn history_is_not_kept_across_an_outage_longer_than_the_max_age() {
    let server = MockServer::start().await;
    for (k, start) in [t0(), t0() + TimeDelta::hours(1), t0() + TimeDelta::hours(9)]
        .into_iter()
        .enumerate()
    {
        em_mock(ResponseTemplate::new(200).set_body_json(em_body(
            start,
            24,
            100.0 * (k + 1) as f64,
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    }
    let cache = Cache::new(primary(&server), None, settings(), Metrics::new().unwrap());
    cache.get("DE", t0()).await.unwrap();
    // An hour later (within the 6 h max age): the past is kept.
    let f = cache.get("DE", t0() + TimeDelta::hours(1)).await.unwrap();
    assert_eq!(f.series().start(), t0());
    assert_eq!(f.intensity_at(t0()), Some(100.0));
    // Eight hours after that, with no fetch between: the live view starts afresh.
    let f = cache.get("DE", t0() + TimeDelta::hours(9)).await.unwrap();
    assert_eq!(f.series().start(), t0() + TimeDelta::hours(9));
    assert_eq!(f.intensity_at(t0() + TimeDelta::hours(9)), Some(300.0));
}
