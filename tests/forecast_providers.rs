//! Every forecast provider over real HTTP against a local mock server, with payloads in the
//! real APIs' shapes and their failure modes: happy path, auth failure, token expiry,
//! 429 + Retry-After, 5xx then recovery, timeout, malformed JSON, nulls/zeros/gaps and a
//! short horizon. Each test asserts the normalised series or the exact error kind.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use carbonshift::forecast::carbon_aware_sdk::CarbonAwareSdk;
use carbonshift::forecast::electricitymaps::ElectricityMaps;
use carbonshift::forecast::file::{FileSource, Location};
use carbonshift::forecast::uk_carbon_intensity::UkCarbonIntensity;
use carbonshift::forecast::watttime::WattTime;
use carbonshift::forecast::{
    build_source, Cache, CacheSettings, ForecastError, ForecastSource, ProviderConfig,
    ProviderKind, Secret, Signal,
};
use carbonshift::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(5);

/// 10:20 UTC: inside the 10:00 hourly slot and the 10:00 half-hour slot.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 10, 20, 0).unwrap()
}

fn at(minutes_after_10: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0).unwrap() + TimeDelta::minutes(minutes_after_10)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A day in the past of `now()`: history spans start here.
fn past(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 2, 28, 0, 0, 0).unwrap() + TimeDelta::hours(hours)
}

/// The API's form of a query timestamp.
fn q(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The requests `server` received, as `(path, query)`.
async fn requests(server: &MockServer) -> Vec<(String, String)> {
    let reqs = server.received_requests().await.unwrap();
    reqs.iter()
        .map(|r| {
            (
                r.url.path().to_string(),
                r.url.query().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn quick_cache(source: Arc<dyn ForecastSource>) -> Cache {
    Cache::new(
        source,
        None,
        CacheSettings {
            jitter: 0.0,
            retries: 3,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(2),
            timeout: TIMEOUT,
            ..CacheSettings::default()
        },
        Metrics::new().unwrap(),
    )
}

// ---------------------------------------------------------------- Electricity Maps

fn em_body(values: &[Value]) -> Value {
    let forecast: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"carbonIntensity": v, "datetime": iso(at(60 * i as i64))}))
        .collect();
    json!({"zone": "DE", "forecast": forecast, "updatedAt": "2024-03-01T09:55:00.000Z"})
}

fn em(server: &MockServer) -> ElectricityMaps {
    ElectricityMaps::new(server.uri(), Secret::new("em-token"), TIMEOUT, Some(72)).unwrap()
}

fn em_mock(body: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .and(query_param("zone", "DE"))
        .and(query_param("horizonHours", "72"))
        .and(header("auth-token", "em-token"))
        .respond_with(body)
}

#[tokio::test]
async fn electricitymaps_happy_path() {
    let server = MockServer::start().await;
    let vals: Vec<Value> = (0..24).map(|i| json!(300 + i)).collect();
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(&vals)))
        .expect(1)
        .mount(&server)
        .await;
    let f = em(&server).fetch("DE", now()).await.unwrap();
    assert_eq!(f.source, "electricitymaps");
    assert_eq!(f.signal, Signal::Average);
    assert!(!f.historical_replay);
    assert_eq!(
        f.generated_at,
        Utc.with_ymd_and_hms(2024, 3, 1, 9, 55, 0).unwrap()
    );
    assert_eq!(f.series.start(), at(0));
    assert_eq!(f.series.step_secs(), 3600);
    assert_eq!(f.series.len(), 24);
    assert_eq!(f.series.value_at(now()), Some(300.0));
    assert_eq!(f.series.values()[23], 323.0);
}

#[tokio::test]
async fn electricitymaps_auth_failure() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(401).set_body_string("{\"message\":\"invalid token\"}"))
        .mount(&server)
        .await;
    let e = em(&server).fetch("DE", now()).await.unwrap_err();
    assert_eq!(e.kind(), "auth");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("em-token"), "{e}");
}

#[tokio::test]
async fn electricitymaps_rate_limited_reports_retry_after() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .mount(&server)
        .await;
    let e = em(&server).fetch("DE", now()).await.unwrap_err();
    assert!(
        matches!(
            e,
            ForecastError::RateLimited {
                retry_after_secs: Some(7),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn electricitymaps_5xx_then_recovery_through_the_cache() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(503).set_body_string("upstream down"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    let vals: Vec<Value> = (0..6).map(|_| json!(250)).collect();
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(&vals)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = quick_cache(Arc::new(em(&server)));
    let f = cache.get("DE", now()).await.unwrap();
    assert_eq!(f.fallback, None);
    assert_eq!(f.series().values(), &[250.0; 6]);
}

#[tokio::test]
async fn electricitymaps_follows_redirects_only_within_its_origin() {
    let server = MockServer::start().await;
    let other = MockServer::start().await;
    let forecast = "/v3/carbon-intensity/forecast?zone=DE&horizonHours=72";
    Mock::given(method("GET"))
        .and(path("/old/v3/carbon-intensity/forecast"))
        .respond_with(ResponseTemplate::new(307).insert_header("Location", forecast))
        .mount(&server)
        .await;
    let vals: Vec<Value> = (0..6).map(|_| json!(250)).collect();
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(&vals)))
        .expect(1)
        .mount(&server)
        .await;
    let moved = format!("{}{forecast}&sig=abcdef", other.uri());
    Mock::given(method("GET"))
        .and(path("/moved/v3/carbon-intensity/forecast"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", moved.as_str()))
        .mount(&server)
        .await;
    let at_path = |p: &str| {
        ElectricityMaps::new(
            format!("{}{p}", server.uri()),
            Secret::new("em-token"),
            TIMEOUT,
            Some(72),
        )
        .unwrap()
    };
    let f = at_path("/old").fetch("DE", now()).await.unwrap();
    assert_eq!(f.series.len(), 6);
    // Another origin would get the auth-token header: not followed.
    let e = at_path("/moved").fetch("DE", now()).await.unwrap_err();
    assert_eq!(e.kind(), "upstream");
    let want = format!(
        "HTTP 302: redirect to {}/v3/carbon-intensity/forecast not",
        other.uri()
    );
    assert!(e.to_string().contains(&want), "{e}");
    assert!(!e.to_string().contains("abcdef"), "{e}");
    assert!(other.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn electricitymaps_timeout() {
    let server = MockServer::start().await;
    let vals: Vec<Value> = (0..6).map(|_| json!(250)).collect();
    em_mock(
        ResponseTemplate::new(200)
            .set_body_json(em_body(&vals))
            .set_delay(Duration::from_secs(3)),
    )
    .mount(&server)
    .await;
    let src = ElectricityMaps::new(
        server.uri(),
        Secret::new("em-token"),
        Duration::from_millis(200),
        Some(72),
    )
    .unwrap();
    let e = src.fetch("DE", now()).await.unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
}

#[tokio::test]
async fn electricitymaps_malformed_json() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(200).set_body_string("{\"zone\": \"DE\", \"forecast\": ["))
        .mount(&server)
        .await;
    let e = em(&server).fetch("DE", now()).await.unwrap_err();
    assert_eq!(e.kind(), "invalid");
    assert!(e.to_string().contains("malformed JSON"), "{e}");
}

#[tokio::test]
async fn electricitymaps_nulls_zeros_and_gaps_are_repaired() {
    let server = MockServer::start().await;
    // 10:00 300, 11:00 null, 12:00 320, 13:00 0 (outage), 14:00 340, 15:00 missing, 16:00 360
    let mut forecast: Vec<Value> = vec![
        json!({"carbonIntensity": 300, "datetime": iso(at(0))}),
        json!({"carbonIntensity": null, "datetime": iso(at(60))}),
        json!({"carbonIntensity": 320, "datetime": iso(at(120))}),
        json!({"carbonIntensity": 0, "datetime": iso(at(180))}),
        json!({"carbonIntensity": 340, "datetime": iso(at(240))}),
        json!({"carbonIntensity": 360, "datetime": iso(at(360))}),
        json!({"carbonIntensity": 370, "datetime": iso(at(420))}),
    ];
    // Out of order and duplicated, as seen during provider incidents.
    forecast.swap(0, 2);
    forecast.push(json!({"carbonIntensity": 380, "datetime": iso(at(420))}));
    let body = json!({"zone": "DE", "forecast": forecast, "updatedAt": "2024-03-01T09:55:00Z"});
    em_mock(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let f = em(&server).fetch("DE", now()).await.unwrap();
    assert_eq!(f.series.start(), at(0));
    assert_eq!(
        f.series.values(),
        &[300.0, 310.0, 320.0, 330.0, 340.0, 350.0, 360.0, 380.0]
    );
}

#[tokio::test]
async fn electricitymaps_all_zero_is_rejected_not_read_as_clean() {
    let server = MockServer::start().await;
    let vals: Vec<Value> = (0..24).map(|_| json!(0)).collect();
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(&vals)))
        .mount(&server)
        .await;
    let e = em(&server).fetch("DE", now()).await.unwrap_err();
    assert_eq!(e.kind(), "invalid");
    assert!(e.to_string().contains("zero"), "{e}");
}

#[tokio::test]
async fn electricitymaps_short_horizon_and_stale_payload() {
    let server = MockServer::start().await;
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(&[json!(200), json!(210)])))
        .mount(&server)
        .await;
    let src = em(&server);
    let f = src.fetch("DE", now()).await.unwrap();
    assert_eq!(f.series.values(), &[200.0, 210.0]);
    assert_eq!(f.series.end(), at(120));
    // The same payload three hours later no longer reaches now.
    let e = src
        .fetch("DE", now() + TimeDelta::hours(3))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("before now"), "{e}");
}

// Electricity Maps history: /v3/carbon-intensity/past-range.

/// Past-range points, hourly from `start`, in the API's full shape.
fn em_range(start: DateTime<Utc>, values: &[f64]) -> Value {
    let data: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "zone": "DE",
                "carbonIntensity": v,
                "datetime": iso(start + TimeDelta::hours(i as i64)),
                "updatedAt": "2024-02-29T03:14:00.000Z",
                "createdAt": "2024-02-27T22:05:00.000Z",
                "emissionFactorType": "lifecycle",
                "isEstimated": false,
                "estimationMethod": null
            })
        })
        .collect();
    json!({"zone": "DE", "data": data})
}

fn em_range_mock(from: DateTime<Utc>, to: DateTime<Utc>, resp: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/past-range"))
        .and(query_param("zone", "DE"))
        .and(query_param("start", q(from).as_str()))
        .and(query_param("end", q(to).as_str()))
        .and(header("auth-token", "em-token"))
        .respond_with(resp)
}

#[tokio::test]
async fn electricitymaps_history_happy_path() {
    let server = MockServer::start().await;
    let vals: Vec<f64> = (0..6).map(|i| 200.0 + i as f64).collect();
    em_range_mock(
        past(0),
        past(6),
        ResponseTemplate::new(200).set_body_json(em_range(past(0), &vals)),
    )
    .expect(1)
    .mount(&server)
    .await;
    let s = em(&server)
        .history("DE", past(0), past(6), now())
        .await
        .unwrap();
    assert_eq!(s.start(), past(0));
    assert_eq!(s.step_secs(), 3600);
    assert_eq!(s.len(), 6);
    assert_eq!(s.values(), &[200.0, 201.0, 202.0, 203.0, 204.0, 205.0]);
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "/v3/carbon-intensity/past-range");
    assert_eq!(
        sent[0].1,
        "zone=DE&start=2024-02-28T00%3A00%3A00Z&end=2024-02-28T06%3A00%3A00Z"
    );
}

#[tokio::test]
async fn electricitymaps_history_unknown_zone_empty_and_5xx() {
    let server = MockServer::start().await;
    let zone = |z: &str| query_param("zone", z);
    Mock::given(path("/v3/carbon-intensity/past-range"))
        .and(zone("XX"))
        .respond_with(
            ResponseTemplate::new(404).set_body_string(
                "{\"status\":\"error\",\"message\":\"Zone 'XX' does not exist.\"}",
            ),
        )
        .mount(&server)
        .await;
    em_range_mock(
        past(0),
        past(6),
        ResponseTemplate::new(200).set_body_json(json!({"zone": "DE", "data": []})),
    )
    .up_to_n_times(1)
    .mount(&server)
    .await;
    em_range_mock(
        past(0),
        past(6),
        ResponseTemplate::new(503).set_body_string("em-token down"),
    )
    .mount(&server)
    .await;
    let src = em(&server);
    let e = src
        .history("XX", past(0), past(6), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unknown_region", "{e}");
    let e = src
        .history("DE", past(0), past(6), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.to_string().contains("no data for"), "{e}");
    let e = src
        .history("DE", past(0), past(6), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "upstream", "{e}");
    assert!(e.to_string().contains("503"), "{e}");
    assert!(!e.to_string().contains("em-token"), "{e}");
}

#[tokio::test]
async fn electricitymaps_history_splits_spans_beyond_ten_days() {
    let server = MockServer::start().await;
    // 25 days: 10 + 10 + 5, each answered with its hours and, like an inclusive `end`, the
    // first hour of the next window too. The value is 100 + hours since the start.
    let jan = |h: i64| Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h);
    let (from, to) = (jan(0), jan(25 * 24));
    for (a, b) in [(0, 240), (240, 480), (480, 600)] {
        let vals: Vec<f64> = (a..=b).map(|h| 100.0 + h as f64).collect();
        em_range_mock(
            jan(a),
            jan(b),
            ResponseTemplate::new(200).set_body_json(em_range(jan(a), &vals)),
        )
        .expect(1)
        .mount(&server)
        .await;
    }
    let s = em(&server).history("DE", from, to, now()).await.unwrap();
    assert_eq!(requests(&server).await.len(), 3);
    assert_eq!((s.start(), s.end(), s.step_secs()), (from, to, 3600));
    assert_eq!(s.len(), 600);
    let want: Vec<f64> = (0..600).map(|h| 100.0 + h as f64).collect();
    assert_eq!(s.values(), &want[..]);
}

// ---------------------------------------------------------------- WattTime

fn wt_body(lbs: &[Value], units: &str) -> Value {
    let data: Vec<Value> = lbs
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"point_time": iso(at(5 * i as i64)), "value": v, "version": "3.2"}))
        .collect();
    json!({
        "data": data,
        "meta": {
            "data_point_period_seconds": 300,
            "region": "CAISO_NORTH",
            "warnings": [],
            "signal_type": "co2_moer",
            "model": {"date": "2023-03-01"},
            "units": units,
            "generated_at_period_seconds": 300,
            "generated_at": "2024-03-01T10:15:00+00:00"
        }
    })
}

fn wt(server: &MockServer) -> WattTime {
    WattTime::new(
        server.uri(),
        Secret::new("alice"),
        Secret::new("pw"),
        TIMEOUT,
        Some(24),
    )
    .unwrap()
}

/// `Basic base64("alice:pw")`.
const ALICE_BASIC: &str = "Basic YWxpY2U6cHc=";

fn wt_login(token: &str) -> Mock {
    Mock::given(method("GET"))
        .and(path("/login"))
        .and(header("authorization", ALICE_BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": token})))
}

fn wt_forecast(token: &str, resp: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/v3/forecast"))
        .and(query_param("region", "CAISO_NORTH"))
        .and(query_param("signal_type", "co2_moer"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(resp)
}

#[tokio::test]
async fn watttime_happy_path_converts_units_and_caches_the_token() {
    let server = MockServer::start().await;
    wt_login("tok1").expect(1).mount(&server).await;
    let lbs: Vec<Value> = (0..288).map(|i| json!(1000.0 + i as f64)).collect();
    wt_forecast(
        "tok1",
        ResponseTemplate::new(200).set_body_json(wt_body(&lbs, "lbs_co2_per_mwh")),
    )
    .expect(2)
    .mount(&server)
    .await;
    let src = wt(&server);
    let f = src.fetch("CAISO_NORTH", now()).await.unwrap();
    assert_eq!(f.signal, Signal::Marginal);
    assert_eq!(f.series.step_secs(), 300);
    assert_eq!(f.series.len(), 288);
    assert!((f.series.values()[0] - 453.59237).abs() < 1e-9);
    assert_eq!(f.generated_at, at(15));
    // Second fetch reuses the token: exactly one login.
    src.fetch("CAISO_NORTH", now()).await.unwrap();
}

#[tokio::test]
async fn watttime_login_rejected_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/login"))
        .respond_with(ResponseTemplate::new(403).set_body_string("bad credentials"))
        .mount(&server)
        .await;
    let e = wt(&server).fetch("CAISO_NORTH", now()).await.unwrap_err();
    assert_eq!(e.kind(), "auth");
    assert!(e.to_string().contains("WATTTIME_USERNAME"), "{e}");
    assert!(!e.to_string().contains("pw"), "{e}");
}

#[tokio::test]
async fn watttime_token_expiry_logs_in_again() {
    let server = MockServer::start().await;
    wt_login("old")
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    wt_login("new").expect(1).mount(&server).await;
    wt_forecast(
        "old",
        ResponseTemplate::new(401).set_body_string("token expired"),
    )
    .expect(1)
    .mount(&server)
    .await;
    let lbs: Vec<Value> = (0..12).map(|_| json!(800)).collect();
    wt_forecast(
        "new",
        ResponseTemplate::new(200).set_body_json(wt_body(&lbs, "lbs_co2_per_mwh")),
    )
    .expect(1)
    .mount(&server)
    .await;
    let f = wt(&server).fetch("CAISO_NORTH", now()).await.unwrap();
    assert_eq!(f.series.len(), 12);
    assert!((f.series.values()[0] - 800.0 * 0.45359237).abs() < 1e-9);
}

#[tokio::test]
async fn watttime_rate_limit_then_recovery_through_the_cache() {
    let server = MockServer::start().await;
    wt_login("tok").mount(&server).await;
    wt_forecast(
        "tok",
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
    )
    .up_to_n_times(1)
    .expect(1)
    .mount(&server)
    .await;
    let lbs: Vec<Value> = (0..12).map(|_| json!(900)).collect();
    wt_forecast(
        "tok",
        ResponseTemplate::new(200).set_body_json(wt_body(&lbs, "lbs_co2_per_mwh")),
    )
    .expect(1)
    .mount(&server)
    .await;
    let cache = quick_cache(Arc::new(wt(&server)));
    let started = std::time::Instant::now();
    let f = cache.get("CAISO_NORTH", now()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(f.fallback, None);
}

#[tokio::test]
async fn watttime_wrong_units_and_malformed_json() {
    let server = MockServer::start().await;
    wt_login("tok").mount(&server).await;
    let vals: Vec<Value> = (0..12).map(|_| json!(50)).collect();
    wt_forecast(
        "tok",
        ResponseTemplate::new(200).set_body_json(wt_body(&vals, "percentile")),
    )
    .up_to_n_times(1)
    .mount(&server)
    .await;
    wt_forecast(
        "tok",
        ResponseTemplate::new(200).set_body_string("<html>gateway</html>"),
    )
    .mount(&server)
    .await;
    let src = wt(&server);
    let e = src.fetch("CAISO_NORTH", now()).await.unwrap_err();
    assert_eq!(e.kind(), "invalid");
    assert!(e.to_string().contains("units"), "{e}");
    let e = src.fetch("CAISO_NORTH", now()).await.unwrap_err();
    assert!(e.to_string().contains("malformed JSON"), "{e}");
}

#[tokio::test]
async fn watttime_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/login"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"token": "t"}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let src = WattTime::new(
        server.uri(),
        Secret::new("alice"),
        Secret::new("pw"),
        Duration::from_millis(200),
        None,
    )
    .unwrap();
    assert_eq!(
        src.fetch("CAISO_NORTH", now()).await.unwrap_err().kind(),
        "timeout"
    );
}

// WattTime history: /v3/historical.

/// A historical answer: `lbs` every `period` seconds from `start`.
fn wt_hist_body(start: DateTime<Utc>, period: i64, lbs: &[f64]) -> Value {
    let data: Vec<Value> = lbs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = start + TimeDelta::seconds(period * i as i64);
            json!({"point_time": iso(t), "value": v})
        })
        .collect();
    json!({
        "data": data,
        "meta": {
            "data_point_period_seconds": period,
            "region": "CAISO_NORTH",
            "warnings": [],
            "signal_type": "co2_moer",
            "model": {"date": "2023-03-01"},
            "units": "lbs_co2_per_mwh"
        }
    })
}

fn wt_hist(token: &str, from: DateTime<Utc>, to: DateTime<Utc>, resp: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/v3/historical"))
        .and(query_param("region", "CAISO_NORTH"))
        .and(query_param("start", q(from).as_str()))
        .and(query_param("end", q(to).as_str()))
        .and(query_param("signal_type", "co2_moer"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(resp)
}

#[tokio::test]
async fn watttime_history_happy_path_converts_units() {
    let server = MockServer::start().await;
    wt_login("tok1").expect(1).mount(&server).await;
    // One hour of 5-minute points and, `end` being inclusive, the point at the end.
    let lbs: Vec<f64> = (0..13).map(|i| 1000.0 + i as f64).collect();
    wt_hist(
        "tok1",
        past(0),
        past(1),
        ResponseTemplate::new(200).set_body_json(wt_hist_body(past(0), 300, &lbs)),
    )
    .expect(1)
    .mount(&server)
    .await;
    let s = wt(&server)
        .history("CAISO_NORTH", past(0), past(1), now())
        .await
        .unwrap();
    assert_eq!((s.start(), s.step_secs(), s.len()), (past(0), 300, 12));
    for (i, v) in s.values().iter().enumerate() {
        assert!(
            (v - (1000.0 + i as f64) * 0.45359237).abs() < 1e-9,
            "{i}: {v}"
        );
    }
    assert!((s.values()[0] - 453.59237).abs() < 1e-9);
    let sent = requests(&server).await;
    assert_eq!(sent[1].0, "/v3/historical");
    assert_eq!(
        sent[1].1,
        "region=CAISO_NORTH&start=2024-02-28T00%3A00%3A00Z&end=2024-02-28T01%3A00%3A00Z&signal_type=co2_moer"
    );
}

#[tokio::test]
async fn watttime_history_empty_and_5xx() {
    let server = MockServer::start().await;
    wt_login("hist-token").mount(&server).await;
    wt_hist(
        "hist-token",
        past(0),
        past(1),
        ResponseTemplate::new(200).set_body_json(wt_hist_body(past(0), 300, &[])),
    )
    .up_to_n_times(1)
    .mount(&server)
    .await;
    wt_hist(
        "hist-token",
        past(0),
        past(1),
        ResponseTemplate::new(500).set_body_string("tok broke"),
    )
    .mount(&server)
    .await;
    let src = wt(&server);
    let e = src
        .history("CAISO_NORTH", past(0), past(1), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.to_string().contains("no data for"), "{e}");
    let e = src
        .history("CAISO_NORTH", past(0), past(1), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "upstream", "{e}");
    assert!(e.to_string().contains("500"), "{e}");
    assert!(!e.to_string().contains("hist-token"), "{e}");
    assert!(!e.to_string().contains("alice"), "{e}");
}

#[tokio::test]
async fn watttime_history_splits_spans_beyond_the_cap() {
    let server = MockServer::start().await;
    wt_login("tok").expect(1).mount(&server).await;
    // 70 days of hourly points: 30 + 30 + 10 days, one login.
    let dec = |h: i64| Utc.with_ymd_and_hms(2023, 12, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h);
    let (from, to) = (dec(0), dec(70 * 24));
    let lbs_at = |h: i64| 1000.0 + (h % 100) as f64;
    for (a, b) in [(0, 720), (720, 1440), (1440, 1680)] {
        let lbs: Vec<f64> = (a..=b).map(lbs_at).collect();
        wt_hist(
            "tok",
            dec(a),
            dec(b),
            ResponseTemplate::new(200).set_body_json(wt_hist_body(dec(a), 3600, &lbs)),
        )
        .expect(1)
        .mount(&server)
        .await;
    }
    let s = wt(&server)
        .history("CAISO_NORTH", from, to, now())
        .await
        .unwrap();
    assert_eq!(requests(&server).await.len(), 4);
    assert_eq!((s.start(), s.end(), s.step_secs()), (from, to, 3600));
    assert_eq!(s.len(), 1680);
    for (h, v) in s.values().iter().enumerate() {
        assert!((v - lbs_at(h as i64) * 0.45359237).abs() < 1e-9, "{h}: {v}");
    }
}

// ---------------------------------------------------------------- Carbon Aware SDK

fn cas_body(values: &[Value]) -> Value {
    let data: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"location": "westeurope", "timestamp": iso(at(5 * i as i64)), "duration": 5, "value": v})
        })
        .collect();
    json!([{
        "generatedAt": "2024-03-01T10:05:00+00:00",
        "requestedAt": "2024-03-01T10:20:00+00:00",
        "location": "westeurope",
        "dataStartAt": iso(at(0)),
        "dataEndAt": iso(at(5 * values.len() as i64)),
        "windowSize": 0,
        "optimalDataPoints": [data.first().cloned().unwrap_or(Value::Null)],
        "forecastData": data
    }])
}

fn cas(server: &MockServer) -> CarbonAwareSdk {
    CarbonAwareSdk::new(server.uri(), TIMEOUT).unwrap()
}

fn cas_mock(resp: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/emissions/forecasts/current"))
        .and(query_param("location", "westeurope"))
        .respond_with(resp)
}

#[tokio::test]
async fn carbon_aware_sdk_happy_path() {
    let server = MockServer::start().await;
    let vals: Vec<Value> = (0..24).map(|i| json!(100.5 + i as f64)).collect();
    cas_mock(ResponseTemplate::new(200).set_body_json(cas_body(&vals)))
        .expect(1)
        .mount(&server)
        .await;
    let f = cas(&server).fetch("westeurope", now()).await.unwrap();
    assert_eq!(f.source, "carbon-aware-sdk");
    assert_eq!(f.series.step_secs(), 300);
    assert_eq!(f.series.len(), 24);
    assert_eq!(f.series.value_at(now()), Some(104.5));
    assert_eq!(f.generated_at, at(5));
}

#[tokio::test]
async fn carbon_aware_sdk_endpoint_keeps_its_path_query_and_userinfo() {
    // An SDK behind a gateway that wants a key in the query and basic auth.
    let server = MockServer::start().await;
    let vals: Vec<Value> = (0..24).map(|_| json!(100.0)).collect();
    Mock::given(method("GET"))
        .and(path("/api/emissions/forecasts/current"))
        .and(query_param("code", "fn-key"))
        .and(query_param("location", "westeurope"))
        .and(header("authorization", "Basic dTpw"))
        .respond_with(ResponseTemplate::new(200).set_body_json(cas_body(&vals)))
        .expect(1)
        .mount(&server)
        .await;
    let endpoint = format!("http://u:p@{}/api/?code=fn-key", server.address());
    let f = CarbonAwareSdk::new(endpoint, TIMEOUT)
        .unwrap()
        .fetch("westeurope", now())
        .await
        .unwrap();
    assert_eq!(f.series.len(), 24);
}

#[tokio::test]
async fn carbon_aware_sdk_501_means_no_forecasts() {
    let server = MockServer::start().await;
    cas_mock(ResponseTemplate::new(501).set_body_json(json!({"title": "NotImplemented"})))
        .mount(&server)
        .await;
    let e = cas(&server).fetch("westeurope", now()).await.unwrap_err();
    assert_eq!(e.kind(), "unavailable");
}

#[tokio::test]
async fn carbon_aware_sdk_5xx_then_recovery_and_empty_answer() {
    let server = MockServer::start().await;
    cas_mock(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    let vals: Vec<Value> = (0..12).map(|_| json!(90)).collect();
    cas_mock(ResponseTemplate::new(200).set_body_json(cas_body(&vals)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    cas_mock(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let cache = quick_cache(Arc::new(cas(&server)));
    assert_eq!(
        cache.get("westeurope", now()).await.unwrap().series().len(),
        12
    );
    let e = cas(&server).fetch("westeurope", now()).await.unwrap_err();
    assert_eq!(e.kind(), "unavailable");
}

#[tokio::test]
async fn carbon_aware_sdk_malformed_and_null_values() {
    let server = MockServer::start().await;
    let mut vals: Vec<Value> = (0..12).map(|_| json!(200)).collect();
    vals[6] = Value::Null;
    vals[7] = json!(-5);
    cas_mock(ResponseTemplate::new(200).set_body_json(cas_body(&vals)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    cas_mock(ResponseTemplate::new(200).set_body_string("[{\"forecastData\": 3}]"))
        .mount(&server)
        .await;
    let f = cas(&server).fetch("westeurope", now()).await.unwrap();
    // Two missing 5-minute slots (within the 1 h fill limit) are interpolated.
    assert_eq!(f.series.values(), &[200.0; 12]);
    let e = cas(&server).fetch("westeurope", now()).await.unwrap_err();
    assert!(e.to_string().contains("malformed JSON"), "{e}");
}

// Carbon Aware SDK history: /emissions/bylocation.

fn cas_history_mock(resp: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path("/emissions/bylocation"))
        .and(query_param("location", "westeurope"))
        .and(query_param("time", q(past(0)).as_str()))
        .and(query_param("toTime", q(past(6)).as_str()))
        .respond_with(resp)
}

#[tokio::test]
async fn carbon_aware_sdk_history_happy_path() {
    let server = MockServer::start().await;
    let data: Vec<Value> = (0..6)
        .map(|i| {
            json!({
                "location": "westeurope",
                "time": past(i).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "rating": 250.5 + i as f64,
                "duration": "01:00:00"
            })
        })
        .collect();
    cas_history_mock(ResponseTemplate::new(200).set_body_json(json!(data)))
        .expect(1)
        .mount(&server)
        .await;
    let s = cas(&server)
        .history("westeurope", past(0), past(6), now())
        .await
        .unwrap();
    assert_eq!((s.start(), s.step_secs(), s.len()), (past(0), 3600, 6));
    assert_eq!(s.values(), &[250.5, 251.5, 252.5, 253.5, 254.5, 255.5]);
    let sent = requests(&server).await;
    assert_eq!(
        sent[0],
        (
            "/emissions/bylocation".to_string(),
            "location=westeurope&time=2024-02-28T00%3A00%3A00Z&toTime=2024-02-28T06%3A00%3A00Z"
                .to_string()
        )
    );
}

#[tokio::test]
async fn carbon_aware_sdk_history_no_content_and_5xx() {
    let server = MockServer::start().await;
    cas_history_mock(ResponseTemplate::new(204))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    cas_history_mock(ResponseTemplate::new(500).set_body_json(json!({"title": "boom"})))
        .mount(&server)
        .await;
    let src = cas(&server);
    let e = src
        .history("westeurope", past(0), past(6), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.to_string().contains("no data for"), "{e}");
    let e = src
        .history("westeurope", past(0), past(6), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "upstream", "{e}");
}

// ---------------------------------------------------------------- UK Carbon Intensity

fn uk_slots(values: &[(Option<f64>, Option<f64>)]) -> Vec<Value> {
    uk_slots_from(at(0), values)
}

/// Half-hour slots `(forecast, actual)` from `start`.
fn uk_slots_from(start: DateTime<Utc>, values: &[(Option<f64>, Option<f64>)]) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(i, (forecast, actual))| {
            let from = start + TimeDelta::minutes(30 * i as i64);
            let to = from + TimeDelta::minutes(30);
            json!({
                "from": from.format("%Y-%m-%dT%H:%MZ").to_string(),
                "to": to.format("%Y-%m-%dT%H:%MZ").to_string(),
                "intensity": {"forecast": forecast, "actual": actual, "index": "moderate"}
            })
        })
        .collect()
}

fn uk(server: &MockServer) -> UkCarbonIntensity {
    UkCarbonIntensity::new(server.uri(), TIMEOUT).unwrap()
}

#[tokio::test]
async fn uk_national_prefers_actuals_then_forecasts() {
    let server = MockServer::start().await;
    let mut slots = vec![(Some(180.0), Some(175.0))];
    slots.extend((1..96).map(|i| (Some(150.0 + i as f64), None)));
    Mock::given(method("GET"))
        .and(path("/intensity/2024-03-01T10:00Z/fw48h"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": uk_slots(&slots)})))
        .expect(1)
        .mount(&server)
        .await;
    let f = uk(&server).fetch("national", now()).await.unwrap();
    assert_eq!(f.source, "uk-carbon-intensity");
    assert_eq!(f.series.step_secs(), 1800);
    assert_eq!(f.series.len(), 96);
    assert_eq!(f.series.values()[0], 175.0);
    assert_eq!(f.series.values()[1], 151.0);
    assert_eq!(f.series.end(), at(48 * 60));
}

#[tokio::test]
async fn uk_regional_and_postcode_shapes() {
    let server = MockServer::start().await;
    let slots: Vec<(Option<f64>, Option<f64>)> = (0..96).map(|_| (Some(120.0), None)).collect();
    Mock::given(method("GET"))
        .and(path(
            "/regional/intensity/2024-03-01T10:00Z/fw48h/regionid/13",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London",
                     "data": uk_slots(&slots)}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/regional/intensity/2024-03-01T10:00Z/fw48h/postcode/RG10",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"regionid": 12, "dnoregion": "SSE South", "shortname": "South England",
                      "postcode": "RG10", "data": uk_slots(&slots)}]
        })))
        .mount(&server)
        .await;
    let src = uk(&server);
    assert_eq!(
        src.fetch("regionid:13", now()).await.unwrap().series.len(),
        96
    );
    assert_eq!(src.fetch("13", now()).await.unwrap().series.len(), 96);
    assert_eq!(
        src.fetch("postcode:RG10", now())
            .await
            .unwrap()
            .series
            .len(),
        96
    );
    assert_eq!(
        src.fetch("DE", now()).await.unwrap_err().kind(),
        "unknown_region"
    );
}

#[tokio::test]
async fn uk_past_the_horizon_and_short_answers() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/intensity/2024-03-01T10:00Z/fw48h"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let slots = [(Some(100.0), None), (None, None), (Some(140.0), None)];
    Mock::given(method("GET"))
        .and(path(
            "/regional/intensity/2024-03-01T10:00Z/fw48h/regionid/1",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"regionid": 1, "data": uk_slots(&slots)}})),
        )
        .mount(&server)
        .await;
    let src = uk(&server);
    let e = src.fetch("national", now()).await.unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    let f = src.fetch("regionid:1", now()).await.unwrap();
    assert_eq!(f.series.values(), &[100.0, 120.0, 140.0]);
}

#[tokio::test]
async fn uk_5xx_is_upstream_and_timeout_is_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/intensity/2024-03-01T10:00Z/fw48h"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/regional/intensity/2024-03-01T10:00Z/fw48h/regionid/2",
        ))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    assert_eq!(
        uk(&server).fetch("GB", now()).await.unwrap_err().kind(),
        "upstream"
    );
    let slow = UkCarbonIntensity::new(server.uri(), Duration::from_millis(200)).unwrap();
    assert_eq!(
        slow.fetch("regionid:2", now()).await.unwrap_err().kind(),
        "timeout"
    );
}

// UK history: {from}/{to} routes.

#[tokio::test]
async fn uk_history_national_regional_and_postcode() {
    let server = MockServer::start().await;
    // National: actuals, a slot without one falls back to its forecast.
    let national = [
        (Some(190.0), Some(185.0)),
        (Some(180.0), Some(176.0)),
        (Some(170.0), None),
        (Some(160.0), Some(158.0)),
        (Some(150.0), Some(149.0)),
        (Some(140.0), Some(141.0)),
    ];
    Mock::given(method("GET"))
        .and(path("/intensity/2024-02-28T00:00Z/2024-02-28T03:00Z"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": uk_slots_from(past(0), &national)})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let regional: Vec<(Option<f64>, Option<f64>)> = (0..6)
        .map(|i| (Some(100.0 + 10.0 * i as f64), None))
        .collect();
    let slots = uk_slots_from(past(0), &regional);
    Mock::given(method("GET"))
        .and(path(
            "/regional/intensity/2024-02-28T00:30Z/2024-02-28T03:00Z/regionid/13",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"regionid": 13, "dnoregion": "UKPN London", "shortname": "London",
                      "data": slots}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/regional/intensity/2024-02-28T00:00Z/2024-02-28T03:00Z/postcode/RG10",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"regionid": 12, "shortname": "South England", "postcode": "RG10",
                      "data": slots}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let src = uk(&server);
    let s = src
        .history("national", past(0), past(3), now())
        .await
        .unwrap();
    assert_eq!((s.start(), s.step_secs(), s.len()), (past(0), 1800, 6));
    assert_eq!(s.values(), &[185.0, 176.0, 170.0, 158.0, 149.0, 141.0]);
    // Off the half hour: asked from 00:30 to 03:00, the slots overlapping the span kept.
    let from = past(0) + TimeDelta::minutes(40);
    let to = past(2) + TimeDelta::minutes(50);
    let s = src.history("regionid:13", from, to, now()).await.unwrap();
    assert_eq!(s.start(), past(0) + TimeDelta::minutes(30));
    assert_eq!(s.values(), &[110.0, 120.0, 130.0, 140.0, 150.0]);
    let s = src
        .history("postcode:rg10", past(0), past(3), now())
        .await
        .unwrap();
    assert_eq!(s.values(), &[100.0, 110.0, 120.0, 130.0, 140.0, 150.0]);
}

#[tokio::test]
async fn uk_history_empty_unknown_and_5xx() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/intensity/2024-02-28T00:00Z/2024-02-28T03:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/regional/intensity/2024-02-28T00:00Z/2024-02-28T03:00Z/regionid/2",
        ))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let src = uk(&server);
    let e = src
        .history("GB", past(0), past(3), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.to_string().contains("no data for"), "{e}");
    let e = src
        .history("regionid:2", past(0), past(3), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "upstream", "{e}");
    let e = src
        .history("DE", past(0), past(3), now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unknown_region", "{e}");
    assert_eq!(requests(&server).await.len(), 2);
}

// ---------------------------------------------------------------- File / URL

fn minute_csv(region_rows: &[(&str, f64)], minutes: i64) -> String {
    let mut s = String::from("timestamp,region,gco2_per_kwh\n");
    for m in 0..minutes {
        for (region, base) in region_rows {
            s.push_str(&format!("{},{region},{}\n", iso(at(m)), base + m as f64));
        }
    }
    s
}

#[tokio::test]
async fn file_csv_one_minute_multi_region_and_reread_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("grid.csv");
    std::fs::write(&p, minute_csv(&[("DE", 300.0), ("FR", 40.0)], 60)).unwrap();
    let src = FileSource::new(Location::Path(p.clone()), TIMEOUT).unwrap();
    let f = src.fetch("FR", now()).await.unwrap();
    assert_eq!(f.series.step_secs(), 60);
    assert_eq!(f.series.len(), 60);
    assert_eq!(f.series.value_at(now()), Some(60.0));
    assert_eq!(
        src.fetch("DE", now()).await.unwrap().series.values()[0],
        300.0
    );
    let e = src.fetch("PL", now()).await.unwrap_err();
    assert_eq!(e.kind(), "unknown_region");
    assert!(e.to_string().contains("DE, FR"), "{e}");
    // Rewritten (different size): read again.
    std::fs::write(&p, minute_csv(&[("FR", 1000.0)], 90)).unwrap();
    let f = src.fetch("FR", now()).await.unwrap();
    assert_eq!(f.series.len(), 90);
    assert_eq!(f.series.values()[0], 1000.0);
}

#[tokio::test]
async fn file_json_series() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("grid.json");
    let points: Vec<Value> = (0..4)
        .map(|i| json!({"timestamp": iso(at(60 * i)), "gco2_per_kwh": 100 + i}))
        .collect();
    std::fs::write(
        &p,
        json!({"points": points, "generated_at": iso(at(-30))}).to_string(),
    )
    .unwrap();
    let mut config = ProviderConfig::new(ProviderKind::File);
    config.file = Some(p.to_string_lossy().into_owned());
    let src = build_source(&config).unwrap();
    let f = src.fetch("anything", now()).await.unwrap();
    assert_eq!(f.series.values(), &[100.0, 101.0, 102.0, 103.0]);
    assert_eq!(f.generated_at, at(-30));
}

#[tokio::test]
async fn file_url_uses_etag() {
    let server = MockServer::start().await;
    let body = minute_csv(&[("DE", 200.0)], 120);
    Mock::given(method("GET"))
        .and(path("/grid.csv"))
        .and(header("if-none-match", "\"v1\""))
        .respond_with(ResponseTemplate::new(304))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/grid.csv"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("ETag", "\"v1\"")
                .set_body_string(body),
        )
        .expect(1)
        .mount(&server)
        .await;
    let src = FileSource::new(
        Location::parse(&format!("{}/grid.csv", server.uri())),
        TIMEOUT,
    )
    .unwrap();
    let a = src.fetch("DE", now()).await.unwrap();
    let b = src.fetch("DE", now()).await.unwrap();
    assert_eq!(a.series, b.series);
    assert_eq!(a.series.len(), 120);
}

#[tokio::test]
async fn file_missing_and_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = FileSource::new(Location::Path(dir.path().join("nope.csv")), TIMEOUT).unwrap();
    assert_eq!(
        missing.fetch("DE", now()).await.unwrap_err().kind(),
        "unavailable"
    );
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, "timestamp,region,gco2_per_kwh\nyesterday,DE,1\n").unwrap();
    let bad = FileSource::new(Location::Path(p), TIMEOUT).unwrap();
    let e = bad.fetch("DE", now()).await.unwrap_err();
    assert_eq!(e.kind(), "invalid");
    assert!(e.to_string().contains("row 2"), "{e}");
}
