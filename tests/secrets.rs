//! Secrets stay secret. Every credential input carries a planted secret (a string containing
//! [`PLANTED`]): the Electricity Maps token, the WattTime user name and password and the
//! token its login returns, the userinfo and query string of endpoints and of a `file` URL,
//! a redirect's signed query, a kubeconfig token. Each provider is driven over real HTTP on
//! 127.0.0.1 through its failure paths (401 and 5xx whose bodies echo the credentials,
//! malformed JSON/CSV, a redirect, timeout, connection refused) and its success path, alone
//! and through the cache with a fallback and metrics.
//!
//! Every `tracing` event and span of every target is captured at TRACE, in text and JSON,
//! with `log` records (reqwest's) bridged in as the operator's subscriber does. The marker
//! must occur 0 times in those logs, in the Display and Debug of every error and config
//! value, in provenance strings and `last_error`, and in the Prometheus text exposition.
//!
//! So that this cannot pass vacuously, each test also asserts that the mock servers received
//! the credentials (they were really in use), how many requests each server saw, that each
//! failing path failed with the expected error kind, and that the captured logs contain
//! lines about this test's servers.

use std::fmt::{Debug, Display};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};
use wiremock::matchers::{basic_auth, bearer_token, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use carbonshift::forecast::{
    build_cache, build_source, Cache, CacheSettings, CachedForecast, Credentials, Forecast,
    ForecastArgs, ForecastError, ForecastSource, ProviderConfig, ProviderKind,
};
use carbonshift::metrics::Metrics;

mod common;

/// What every planted secret contains; it must appear nowhere we can observe.
const PLANTED: &str = "s3cr3t-PLANTED";

fn planted(what: &str) -> String {
    format!("{PLANTED}-{what}")
}

/// Captures every event and span of every target, at TRACE, into one buffer.
mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex, OnceLock};

    use tracing_subscriber::filter::{filter_fn, LevelFilter};
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    static LOGS: OnceLock<Buf> = OnceLock::new();

    /// Installs the global subscriber once per test binary: a text layer and a JSON layer
    /// (the operator's two `--log-format`s), span open/close events included, everything at
    /// TRACE. `try_init` also installs the `log` bridge, as `telemetry::init` does, so
    /// reqwest's `log` records are captured too.
    pub fn init() {
        LOGS.get_or_init(|| {
            let buf = Buf::default();
            tracing_subscriber::registry()
                .with(LevelFilter::TRACE)
                // The mock servers' own log (requests no mock matched, verbatim) is the
                // other end of the wire, not the operator's.
                .with(filter_fn(|m| !m.target().starts_with("wiremock")))
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(buf.clone())
                        .with_ansi(false)
                        .with_span_events(FmtSpan::FULL),
                )
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(buf.clone())
                        .with_span_events(FmtSpan::FULL),
                )
                .try_init()
                .expect("the only subscriber of this test binary");
            buf
        });
    }

    /// Everything logged so far, by every test of this binary.
    pub fn text() -> String {
        let buf = LOGS.get().expect("capture::init was called");
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The strings a test observed, checked together with the captured logs.
struct Check {
    name: &'static str,
    texts: Vec<(String, String)>,
    ports: Vec<u16>,
    /// Expectations that did not hold (wrong error kind, request counts), reported with the
    /// leaks so that one run shows everything.
    problems: Vec<String>,
}

impl Check {
    fn new(name: &'static str) -> Self {
        capture::init();
        Self {
            name,
            texts: Vec::new(),
            ports: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn text(&mut self, what: &str, text: impl Display) {
        self.texts.push((what.to_string(), text.to_string()));
    }

    fn debug(&mut self, what: &str, v: &impl Debug) {
        self.texts
            .push((format!("{what} (Debug)"), format!("{v:?}")));
        self.texts
            .push((format!("{what} (Debug, pretty)"), format!("{v:#?}")));
    }

    /// Records a failure's Display and Debug and checks its kind.
    fn error<T: Debug>(&mut self, what: &str, r: Result<T, ForecastError>, kind: &str) {
        let e = match r {
            Ok(v) => {
                self.debug(what, &v);
                self.problems
                    .push(format!("{what}: expected a {kind} error, got {v:?}"));
                return;
            }
            Err(e) => e,
        };
        if e.kind() != kind {
            self.problems
                .push(format!("{what}: expected a {kind} error, got {e}"));
        }
        self.text(what, &e);
        self.debug(what, &e);
    }

    /// Records a success (its Debug) and checks it has `points` values.
    fn ok(&mut self, what: &str, r: Result<Forecast, ForecastError>, points: usize) {
        match r {
            Ok(f) => {
                if f.series.len() != points {
                    self.problems.push(format!(
                        "{what}: {} points, expected {points}",
                        f.series.len()
                    ));
                }
                self.debug(what, &f);
            }
            Err(e) => {
                self.problems
                    .push(format!("{what}: expected success, got {e}"));
                self.text(what, &e);
                self.debug(what, &e);
            }
        }
    }

    fn cached(&mut self, what: &str, c: &CachedForecast) {
        self.text(&format!("{what} provenance"), c.provenance());
        self.text(
            &format!("{what} last_error"),
            c.last_error.clone().unwrap_or_default(),
        );
        self.debug(what, c);
    }

    /// Logs must mention this server (its port), so they are known to cover its traffic.
    fn server(&mut self, port: u16) {
        self.ports.push(port);
    }

    /// The marker occurs 0 times in every observed string and in the captured logs, and
    /// every expectation held.
    fn assert_clean(&self) {
        let logs = capture::text();
        let lines = logs.lines().count();
        let mut problems = self.problems.clone();
        if !self.ports.is_empty() && lines == 0 {
            problems.push("nothing was logged".into());
        }
        for port in &self.ports {
            let needle = format!("127.0.0.1:{port}");
            if !logs.lines().any(|l| l.contains(&needle)) {
                problems.push(format!("no log line mentions {needle}"));
            }
        }
        let mut leaks = Vec::new();
        for (what, text) in &self.texts {
            let n = text.matches(PLANTED).count();
            if n > 0 {
                leaks.push(format!("{what}: {n} times in {text}"));
            }
        }
        for line in logs.lines().filter(|l| l.contains(PLANTED)) {
            leaks.push(format!("log: {line}"));
        }
        assert!(
            leaks.is_empty() && problems.is_empty(),
            "{}: {} leaks of planted secrets:\n{}\n\n{} failed expectations:\n{}",
            self.name,
            leaks.len(),
            leaks.join("\n"),
            problems.len(),
            problems.join("\n")
        );
        eprintln!(
            "{}: 0 occurrences in {} strings ({} bytes) and {} log lines ({} bytes); servers {:?}",
            self.name,
            self.texts.len(),
            self.texts.iter().map(|(_, t)| t.len()).sum::<usize>(),
            lines,
            logs.len(),
            self.ports
        );
    }
}

/// 10:20 UTC: inside the 10:00 hourly slot.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 10, 20, 0).unwrap()
}

fn at(minutes_after_10: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0).unwrap() + TimeDelta::minutes(minutes_after_10)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A port nothing listens on: connections to it are refused.
fn refused_port() -> u16 {
    common::cluster::free_port()
}

fn addr(server: &MockServer) -> String {
    server.address().to_string()
}

/// A cache over `src` with the embedded fallback, fast retries, and `metrics`.
fn cache(src: Arc<dyn ForecastSource>, metrics: &Metrics) -> Cache {
    let fallback = build_source(&ProviderConfig::new(ProviderKind::Embedded)).unwrap();
    Cache::new(
        src,
        Some(fallback),
        CacheSettings {
            jitter: 0.0,
            retries: 1,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
            ..CacheSettings::default()
        },
        metrics.clone(),
    )
    // Every test region falls back to the German trace.
    .with_fallback_region(Arc::new(|_: &str| "DE".to_string()))
}

/// Fails first (served by the fallback), then succeeds once the retry interval has passed.
async fn fallback_then_fresh(check: &mut Check, cache: &Cache, region: &str, source: &str) {
    for (what, t, fallback) in [
        ("cache fallback", now(), true),
        ("cache fresh", now() + TimeDelta::minutes(2), false),
    ] {
        match cache.get(region, t).await {
            Ok(c) => {
                if c.fallback.is_some() != fallback || c.last_error.is_some() != fallback {
                    check.problems.push(format!("{what}: {c:?}"));
                }
                if !fallback && c.forecast.source != source {
                    check
                        .problems
                        .push(format!("{what}: source {}", c.forecast.source));
                }
                check.cached(what, &c);
            }
            Err(e) => {
                check.problems.push(format!("{what}: {e}"));
                check.text(what, &e);
                check.debug(what, &e);
            }
        }
    }
}

/// Records the metrics exposition and checks it has what the run must have produced.
fn metrics(check: &mut Check, m: &Metrics, provider: &str, region: &str, failure: &str) {
    let text = m.encode();
    for want in [
        format!("provider=\"{provider}\""),
        format!("outcome=\"{failure}\""),
        "outcome=\"ok\"".to_string(),
        format!("reason=\"fallback_{failure}\""),
        // WattTime and the Carbon Aware SDK serve marginal (MOER) intensities.
        format!(
            "carbonshift_grid_intensity_gco2_per_kwh{{region=\"{region}\",signal=\"{}\",source=\"{provider}\"}}",
            if matches!(provider, "watttime" | "carbon-aware-sdk") { "marginal" } else { "average" }
        ),
    ] {
        if !text.contains(&want) {
            check.problems.push(format!("metrics lack {want}"));
        }
    }
    check.text("metrics", text);
}

/// `Basic base64(user:password)`, as a request carries URL userinfo or WattTime's login.
fn basic(user: &str, password: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Checks `server` received `n` requests, each carrying every one of `sent` in its URL or
/// headers: the secrets were really in use.
async fn received(check: &mut Check, server: &MockServer, n: usize, sent: &[&str]) {
    let reqs = server.received_requests().await.unwrap_or_default();
    if reqs.len() != n {
        check.problems.push(format!(
            "{} requests to {}, expected {n}",
            reqs.len(),
            server.uri()
        ));
    }
    for r in &reqs {
        let mut seen = r.url.to_string();
        for (k, v) in &r.headers {
            seen.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or_default()));
        }
        for s in sent {
            if !seen.contains(s) {
                check
                    .problems
                    .push(format!("a request to {} lacks {s}: {seen}", r.url.path()));
            }
        }
    }
}

// ---------------------------------------------------------------- Electricity Maps

fn em_body(n: usize) -> Value {
    em_body_from(at(0), n)
}

fn em_body_from(start: DateTime<Utc>, n: usize) -> Value {
    let forecast: Vec<Value> = (0..n)
        .map(|i| {
            json!({"carbonIntensity": 300 + i, "datetime": iso(start + TimeDelta::hours(i as i64))})
        })
        .collect();
    json!({"zone": "DE", "forecast": forecast, "updatedAt": iso(start)})
}

#[tokio::test]
async fn electricitymaps_token_and_endpoint_credentials_stay_secret() {
    let mut check = Check::new("electricitymaps");
    let token = planted("em-token");
    let key = planted("em-endpoint-query");
    let pass = planted("em-endpoint-password");
    let gw_basic = basic("gw", &pass);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_file = token_file.to_string_lossy().into_owned();
    let credentials = Credentials::from_lookup(ProviderKind::Electricitymaps, &|k: &str| {
        (k == "ELECTRICITYMAPS_TOKEN_FILE").then(|| token_file.clone())
    })
    .unwrap();
    check.debug("credentials", &credentials);
    let config_for = |hostport: &str, timeout: Duration| {
        let mut c = ProviderConfig::new(ProviderKind::Electricitymaps);
        c.endpoint = Some(format!("http://gw:{pass}@{hostport}/gw?key={key}"));
        c.credentials = credentials.clone();
        c.timeout = timeout;
        c
    };
    let em_mock = |resp: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path("/gw/v3/carbon-intensity/forecast"))
            .and(query_param("key", key.as_str()))
            .and(query_param("zone", "DE"))
            .and(header("auth-token", token.as_str()))
            .and(basic_auth("gw", pass.as_str()))
            .respond_with(resp)
    };

    // Failures one after the other, then success, from one server.
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    check.server(server.address().port());
    let echo = format!("{{\"message\": \"invalid token {token} (key {key}, password {pass})\"}}");
    for resp in [
        ResponseTemplate::new(401).set_body_string(echo.clone()),
        ResponseTemplate::new(500).set_body_string(echo.clone()),
        // The token straddles the end of the excerpt an error message keeps.
        ResponseTemplate::new(503).set_body_string(format!("{}{token}", "x".repeat(190))),
        ResponseTemplate::new(200).set_body_string(format!("{{\"zone\": \"DE\", \"x\": \"{token}")),
        ResponseTemplate::new(302).insert_header(
            "Location",
            format!("{}/moved?sig={}", elsewhere.uri(), planted("em-redirect")).as_str(),
        ),
    ] {
        em_mock(resp).up_to_n_times(1).mount(&server).await;
    }
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(24)))
        .mount(&server)
        .await;
    let config = config_for(&addr(&server), Duration::from_secs(5));
    check.debug("config", &config);
    let src = build_source(&config).unwrap();
    check.error("401", src.fetch("DE", now()).await, "auth");
    check.error("500", src.fetch("DE", now()).await, "upstream");
    check.error("503, long body", src.fetch("DE", now()).await, "upstream");
    check.error("malformed JSON", src.fetch("DE", now()).await, "invalid");
    check.error(
        "redirect elsewhere",
        src.fetch("DE", now()).await,
        "upstream",
    );
    check.ok("success", src.fetch("DE", now()).await, 24);
    received(&mut check, &server, 6, &[&token, &key, &gw_basic]).await;
    // The token is never sent to another origin.
    received(&mut check, &elsewhere, 0, &[]).await;

    // Timeout.
    let slow = MockServer::start().await;
    check.server(slow.address().port());
    em_mock(
        ResponseTemplate::new(200)
            .set_body_json(em_body(24))
            .set_delay(Duration::from_secs(2)),
    )
    .mount(&slow)
    .await;
    let src = build_source(&config_for(&addr(&slow), Duration::from_millis(300))).unwrap();
    check.error("timeout", src.fetch("DE", now()).await, "timeout");
    received(&mut check, &slow, 1, &[&token, &key, &gw_basic]).await;

    // Connection refused.
    let port = refused_port();
    check.server(port);
    let src = build_source(&config_for(
        &format!("127.0.0.1:{port}"),
        Duration::from_secs(2),
    ))
    .unwrap();
    check.error(
        "connection refused",
        src.fetch("DE", now()).await,
        "upstream",
    );

    // Through the cache: auth failure served by the fallback, then fresh data.
    let cached = MockServer::start().await;
    check.server(cached.address().port());
    em_mock(ResponseTemplate::new(401).set_body_string(echo.clone()))
        .up_to_n_times(1)
        .mount(&cached)
        .await;
    em_mock(ResponseTemplate::new(200).set_body_json(em_body(24)))
        .mount(&cached)
        .await;
    let m = Metrics::new().unwrap();
    let c = cache(
        build_source(&config_for(&addr(&cached), Duration::from_secs(5))).unwrap(),
        &m,
    );
    fallback_then_fresh(&mut check, &c, "DE", "electricitymaps").await;
    received(&mut check, &cached, 2, &[&token, &key, &gw_basic]).await;
    metrics(&mut check, &m, "electricitymaps", "DE", "auth");
    check.assert_clean();
}

// ---------------------------------------------------------------- WattTime

fn wt_body(n: usize) -> Value {
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"point_time": iso(at(5 * i as i64)), "value": 900.0}))
        .collect();
    json!({
        "data": data,
        "meta": {
            "data_point_period_seconds": 300,
            "region": "CAISO_NORTH",
            "units": "lbs_co2_per_mwh",
            "generated_at": "2024-03-01T10:15:00+00:00"
        }
    })
}

struct WattTimeSecrets {
    user: String,
    password: String,
    token: String,
}

impl WattTimeSecrets {
    fn login(&self, resp: ResponseTemplate) -> Mock {
        Mock::given(method("GET"))
            .and(path("/login"))
            .and(basic_auth(self.user.as_str(), self.password.as_str()))
            .respond_with(resp)
    }

    fn login_ok(&self) -> Mock {
        self.login(ResponseTemplate::new(200).set_body_json(json!({"token": self.token})))
    }

    fn forecast(&self, resp: ResponseTemplate) -> Mock {
        Mock::given(method("GET"))
            .and(path("/v3/forecast"))
            .and(query_param("region", "CAISO_NORTH"))
            .and(bearer_token(self.token.as_str()))
            .respond_with(resp)
    }

    /// A login failure quoting the credentials it was given.
    fn echo_login(&self) -> String {
        format!(
            "{{\"error\": \"user {} password {} rejected\"}}",
            self.user, self.password
        )
    }

    /// A forecast failure quoting the token (and user) of the request.
    fn echo_token(&self) -> String {
        format!(
            "{{\"error\": \"token {} of user {} rejected\"}}",
            self.token, self.user
        )
    }
}

#[tokio::test]
async fn watttime_login_and_token_stay_secret() {
    let mut check = Check::new("watttime");
    let s = WattTimeSecrets {
        user: planted("wt-user"),
        password: planted("wt-password"),
        token: planted("wt-token"),
    };
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, &s.password).unwrap();
    let pw_file = pw_file.to_string_lossy().into_owned();
    let credentials = Credentials::from_lookup(ProviderKind::Watttime, &|k: &str| match k {
        "WATTTIME_USERNAME" => Some(s.user.clone()),
        "WATTTIME_PASSWORD_FILE" => Some(pw_file.clone()),
        _ => None,
    })
    .unwrap();
    check.debug("credentials", &credentials);
    let source = |server_uri: String, timeout: Duration| {
        let mut c = ProviderConfig::new(ProviderKind::Watttime);
        c.endpoint = Some(server_uri);
        c.credentials = credentials.clone();
        c.timeout = timeout;
        build_source(&c).unwrap()
    };

    // Login rejected, the body echoing the credentials.
    let server = MockServer::start().await;
    check.server(server.address().port());
    s.login(ResponseTemplate::new(401).set_body_string(s.echo_login()))
        .mount(&server)
        .await;
    let src = source(server.uri(), Duration::from_secs(5));
    check.error("login 401", src.fetch("CAISO_NORTH", now()).await, "auth");
    received(&mut check, &server, 1, &[&basic(&s.user, &s.password)]).await;

    // Token rejected: logs in again once, then gives up.
    let server = MockServer::start().await;
    check.server(server.address().port());
    s.login_ok().mount(&server).await;
    s.forecast(ResponseTemplate::new(401).set_body_string(s.echo_token()))
        .mount(&server)
        .await;
    let src = source(server.uri(), Duration::from_secs(5));
    check.error(
        "forecast 401",
        src.fetch("CAISO_NORTH", now()).await,
        "auth",
    );
    received(&mut check, &server, 4, &[]).await;

    // 500 echoing the token; malformed login answer containing the token.
    let server = MockServer::start().await;
    check.server(server.address().port());
    s.login_ok().up_to_n_times(1).mount(&server).await;
    s.login(ResponseTemplate::new(200).set_body_string(format!("{{\"token\": \"{}", s.token)))
        .mount(&server)
        .await;
    s.forecast(ResponseTemplate::new(500).set_body_string(s.echo_token()))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    s.forecast(ResponseTemplate::new(401)).mount(&server).await;
    let src = source(server.uri(), Duration::from_secs(5));
    check.error(
        "forecast 500",
        src.fetch("CAISO_NORTH", now()).await,
        "upstream",
    );
    // The next fetch's token is rejected and the new login answer is malformed.
    check.error(
        "malformed login",
        src.fetch("CAISO_NORTH", now()).await,
        "invalid",
    );
    received(&mut check, &server, 4, &[]).await;

    // Success.
    let server = MockServer::start().await;
    check.server(server.address().port());
    s.login_ok().expect(1).mount(&server).await;
    s.forecast(ResponseTemplate::new(200).set_body_json(wt_body(24)))
        .mount(&server)
        .await;
    let src = source(server.uri(), Duration::from_secs(5));
    check.ok("success", src.fetch("CAISO_NORTH", now()).await, 24);
    received(&mut check, &server, 2, &[]).await;

    // Login times out; connection refused.
    let server = MockServer::start().await;
    check.server(server.address().port());
    s.login(
        ResponseTemplate::new(200)
            .set_body_json(json!({"token": s.token}))
            .set_delay(Duration::from_secs(2)),
    )
    .mount(&server)
    .await;
    let src = source(server.uri(), Duration::from_millis(300));
    check.error(
        "login timeout",
        src.fetch("CAISO_NORTH", now()).await,
        "timeout",
    );
    let port = refused_port();
    check.server(port);
    let src = source(format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    check.error(
        "connection refused",
        src.fetch("CAISO_NORTH", now()).await,
        "upstream",
    );

    // Through the cache: 503 (retried) served by the fallback, then fresh data.
    let server = MockServer::start().await;
    check.server(server.address().port());
    s.login_ok().mount(&server).await;
    s.forecast(ResponseTemplate::new(503).set_body_string(s.echo_token()))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    s.forecast(ResponseTemplate::new(200).set_body_json(wt_body(24)))
        .mount(&server)
        .await;
    let m = Metrics::new().unwrap();
    let c = cache(source(server.uri(), Duration::from_secs(5)), &m);
    fallback_then_fresh(&mut check, &c, "CAISO_NORTH", "watttime").await;
    // One login (token cached), two failed forecasts, one good one.
    received(&mut check, &server, 4, &[]).await;
    metrics(&mut check, &m, "watttime", "CAISO_NORTH", "upstream");
    check.assert_clean();
}

// ---------------------------------------------------------------- Carbon Aware SDK

fn cas_body(n: usize) -> Value {
    let data: Vec<Value> = (0..n)
        .map(|i| {
            json!({"location": "westeurope", "timestamp": iso(at(5 * i as i64)), "duration": 5, "value": 200.0})
        })
        .collect();
    json!([{"generatedAt": "2024-03-01T10:05:00+00:00", "location": "westeurope", "forecastData": data}])
}

#[tokio::test]
async fn carbon_aware_sdk_endpoint_credentials_stay_secret() {
    let mut check = Check::new("carbon-aware-sdk");
    let pass = planted("cas-password");
    let code = planted("cas-query");
    let sdk_basic = basic("sdk", &pass);
    let config_for = |hostport: &str| {
        let mut c = ProviderConfig::new(ProviderKind::CarbonAwareSdk);
        c.endpoint = Some(format!("http://sdk:{pass}@{hostport}/api?code={code}"));
        c.timeout = Duration::from_secs(2);
        c
    };
    let mock = |resp: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path("/api/emissions/forecasts/current"))
            .and(query_param("code", code.as_str()))
            .and(query_param("location", "westeurope"))
            .and(basic_auth("sdk", pass.as_str()))
            .respond_with(resp)
    };
    let echo = format!("rejected code={code} password={pass}");

    let server = MockServer::start().await;
    check.server(server.address().port());
    for resp in [
        ResponseTemplate::new(401).set_body_string(echo.clone()),
        ResponseTemplate::new(500).set_body_string(echo.clone()),
        ResponseTemplate::new(501).set_body_string(echo.clone()),
        ResponseTemplate::new(200).set_body_string(format!("[{{\"location\": \"{code}")),
    ] {
        mock(resp).up_to_n_times(1).mount(&server).await;
    }
    mock(ResponseTemplate::new(200).set_body_json(cas_body(24)))
        .mount(&server)
        .await;
    let config = config_for(&addr(&server));
    check.debug("config", &config);
    let src = build_source(&config).unwrap();
    check.error("401", src.fetch("westeurope", now()).await, "auth");
    check.error("500", src.fetch("westeurope", now()).await, "upstream");
    check.error("501", src.fetch("westeurope", now()).await, "unavailable");
    check.error(
        "malformed JSON",
        src.fetch("westeurope", now()).await,
        "invalid",
    );
    check.ok("success", src.fetch("westeurope", now()).await, 24);
    received(&mut check, &server, 5, &[&code, &sdk_basic]).await;

    let port = refused_port();
    check.server(port);
    let src = build_source(&config_for(&format!("127.0.0.1:{port}"))).unwrap();
    check.error(
        "connection refused",
        src.fetch("westeurope", now()).await,
        "upstream",
    );

    let cached = MockServer::start().await;
    check.server(cached.address().port());
    mock(ResponseTemplate::new(401).set_body_string(echo.clone()))
        .up_to_n_times(1)
        .mount(&cached)
        .await;
    mock(ResponseTemplate::new(200).set_body_json(cas_body(24)))
        .mount(&cached)
        .await;
    let m = Metrics::new().unwrap();
    let c = cache(build_source(&config_for(&addr(&cached))).unwrap(), &m);
    fallback_then_fresh(&mut check, &c, "westeurope", "carbon-aware-sdk").await;
    received(&mut check, &cached, 2, &[&code, &sdk_basic]).await;
    metrics(&mut check, &m, "carbon-aware-sdk", "westeurope", "auth");
    check.assert_clean();
}

// ---------------------------------------------------------------- UK Carbon Intensity

#[tokio::test]
async fn uk_carbon_intensity_endpoint_query_stays_secret() {
    let mut check = Check::new("uk-carbon-intensity");
    let key = planted("uk-query");
    let config_for = |hostport: &str| {
        let mut c = ProviderConfig::new(ProviderKind::UkCarbonIntensity);
        c.endpoint = Some(format!("http://{hostport}/uk?subscription-key={key}"));
        c.timeout = Duration::from_secs(2);
        c
    };
    let slots: Vec<Value> = (0..96)
        .map(|i| {
            let from = at(30 * i);
            json!({
                "from": from.format("%Y-%m-%dT%H:%MZ").to_string(),
                "to": (from + TimeDelta::minutes(30)).format("%Y-%m-%dT%H:%MZ").to_string(),
                "intensity": {"forecast": 150.0, "actual": null, "index": "moderate"}
            })
        })
        .collect();
    let server = MockServer::start().await;
    check.server(server.address().port());
    let mock = |resp: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path("/uk/intensity/2024-03-01T10:00Z/fw48h"))
            .and(query_param("subscription-key", key.as_str()))
            .respond_with(resp)
    };
    mock(ResponseTemplate::new(500).set_body_string(format!("bad key {key}")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mock(ResponseTemplate::new(200).set_body_string(format!("{{\"data\": \"{key}\"}}")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mock(ResponseTemplate::new(200).set_body_json(json!({ "data": slots })))
        .mount(&server)
        .await;
    let config = config_for(&addr(&server));
    check.debug("config", &config);
    let src = build_source(&config).unwrap();
    check.error("500", src.fetch("national", now()).await, "upstream");
    check.error("wrong shape", src.fetch("national", now()).await, "invalid");
    check.ok("success", src.fetch("national", now()).await, 96);
    received(&mut check, &server, 3, &[&key]).await;
    let port = refused_port();
    check.server(port);
    let src = build_source(&config_for(&format!("127.0.0.1:{port}"))).unwrap();
    check.error(
        "connection refused",
        src.fetch("national", now()).await,
        "upstream",
    );
    check.assert_clean();
}

// ---------------------------------------------------------------- file URL

fn csv(n: i64) -> String {
    let mut s = String::from("timestamp,region,gco2_per_kwh\n");
    for m in 0..n {
        s.push_str(&format!("{},DE,{}\n", iso(at(m)), 200 + m));
    }
    s
}

#[tokio::test]
async fn file_url_userinfo_query_and_redirects_stay_secret() {
    let mut check = Check::new("file");
    let pass = planted("file-password");
    let token = planted("file-query");
    let file_basic = basic("fileuser", &pass);
    let url_for =
        |hostport: &str| format!("http://fileuser:{pass}@{hostport}/forecast.csv?token={token}");
    let config_for = |url: String, timeout: Duration| {
        let mut c = ProviderConfig::new(ProviderKind::File);
        c.file = Some(url);
        c.timeout = timeout;
        c
    };
    let mock = |resp: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path("/forecast.csv"))
            .and(query_param("token", token.as_str()))
            .and(basic_auth("fileuser", pass.as_str()))
            .respond_with(resp)
    };
    let echo = format!("no access for token {token} / {pass}");
    let signed = planted("file-signature");
    let gone = refused_port();
    check.server(gone);

    let server = MockServer::start().await;
    check.server(server.address().port());
    for resp in [
        ResponseTemplate::new(404),
        ResponseTemplate::new(500).set_body_string(echo.clone()),
        ResponseTemplate::new(403).set_body_string(echo.clone()),
        ResponseTemplate::new(200).set_body_string(format!("not,a,forecast\n{token},x,y\n")),
        ResponseTemplate::new(200).set_body_string(format!("{{\"points\": \"{token}\"")),
        ResponseTemplate::new(200)
            .insert_header("ETag", "\"v1\"")
            .set_body_string(csv(120)),
        ResponseTemplate::new(304),
        // A CDN redirect to a signed URL on a host that is down.
        ResponseTemplate::new(302).insert_header(
            "Location",
            format!("http://127.0.0.1:{gone}/signed.csv?X-Amz-Signature={signed}").as_str(),
        ),
    ] {
        mock(resp).up_to_n_times(1).mount(&server).await;
    }
    let url = url_for(&addr(&server));
    let config = config_for(url.clone(), Duration::from_secs(2));
    check.debug("config", &config);
    check.debug(
        "location",
        &carbonshift::forecast::file::Location::parse(&url),
    );
    let src = build_source(&config).unwrap();
    check.error("404", src.fetch("DE", now()).await, "upstream");
    check.error("500", src.fetch("DE", now()).await, "upstream");
    check.error("403", src.fetch("DE", now()).await, "auth");
    check.error("malformed CSV", src.fetch("DE", now()).await, "invalid");
    check.error("malformed JSON", src.fetch("DE", now()).await, "invalid");
    check.ok("success", src.fetch("DE", now()).await, 120);
    check.ok("304: the last parse", src.fetch("DE", now()).await, 120);
    check.error(
        "redirect to a dead host",
        src.fetch("DE", now()).await,
        "upstream",
    );
    received(&mut check, &server, 8, &[&token, &file_basic]).await;

    let slow = MockServer::start().await;
    check.server(slow.address().port());
    mock(
        ResponseTemplate::new(200)
            .set_body_string(csv(120))
            .set_delay(Duration::from_secs(2)),
    )
    .mount(&slow)
    .await;
    let src = build_source(&config_for(
        url_for(&addr(&slow)),
        Duration::from_millis(300),
    ))
    .unwrap();
    check.error("timeout", src.fetch("DE", now()).await, "timeout");
    received(&mut check, &slow, 1, &[&token, &file_basic]).await;

    let port = refused_port();
    check.server(port);
    let src = build_source(&config_for(
        url_for(&format!("127.0.0.1:{port}")),
        Duration::from_secs(2),
    ))
    .unwrap();
    check.error(
        "connection refused",
        src.fetch("DE", now()).await,
        "upstream",
    );

    let cached = MockServer::start().await;
    check.server(cached.address().port());
    mock(ResponseTemplate::new(401).set_body_string(echo.clone()))
        .up_to_n_times(1)
        .mount(&cached)
        .await;
    mock(ResponseTemplate::new(200).set_body_string(csv(120)))
        .mount(&cached)
        .await;
    let m = Metrics::new().unwrap();
    let c = cache(
        build_source(&config_for(url_for(&addr(&cached)), Duration::from_secs(2))).unwrap(),
        &m,
    );
    fallback_then_fresh(&mut check, &c, "DE", "file").await;
    received(&mut check, &cached, 2, &[&token, &file_basic]).await;
    metrics(&mut check, &m, "file", "DE", "auth");
    check.assert_clean();
}

// ---------------------------------------------------------------- flags and config values

#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    forecast: ForecastArgs,
}

#[tokio::test]
async fn flags_and_config_values_stay_secret() {
    use clap::Parser;
    let mut check = Check::new("flags");
    let pass = planted("flag-password");
    let token = planted("flag-query");
    let server = MockServer::start().await;
    check.server(server.address().port());
    Mock::given(method("GET"))
        .and(path("/f.csv"))
        .and(query_param("token", token.as_str()))
        .and(basic_auth("u", pass.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string(csv(120)))
        .expect(1)
        .mount(&server)
        .await;
    let url = format!("http://u:{pass}@{}/f.csv?token={token}", addr(&server));
    let cli = Cli::try_parse_from([
        "x",
        "--forecast-provider",
        "file",
        "--forecast-file",
        &url,
        "--forecast-endpoint",
        &url,
        "--forecast-fallback",
        "none",
    ])
    .unwrap();
    check.debug("flags", &cli);
    check.debug("forecast args", &cli.forecast);
    let config = ProviderConfig::from_args(&cli.forecast).unwrap();
    check.debug("config from flags", &config);

    let mut em = ProviderConfig::new(ProviderKind::Electricitymaps);
    em.endpoint = Some(url.clone());
    em.credentials = Credentials::from_lookup(ProviderKind::Electricitymaps, &|k: &str| {
        (k == "ELECTRICITYMAPS_TOKEN").then(|| planted("flag-token"))
    })
    .unwrap();
    check.debug("electricitymaps config", &em);
    // A credential file that cannot be read, and one that is empty.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for file in [dir.path().join("missing"), empty] {
        let f = file.to_string_lossy().into_owned();
        let e = Credentials::from_lookup(ProviderKind::Watttime, &|k: &str| match k {
            "WATTTIME_USERNAME" => Some(planted("flag-user")),
            "WATTTIME_PASSWORD_FILE" => Some(f.clone()),
            _ => None,
        });
        check.error("unreadable credential file", e, "config");
    }

    // The operator's constructor, then one fetch through it.
    let cache = build_cache(&cli.forecast, Metrics::new().unwrap()).unwrap();
    let c = cache.get("DE", now()).await.unwrap();
    check.cached("build_cache", &c);
    check.assert_clean();
}

// ---------------------------------------------------------------- Kubernetes client

#[tokio::test]
async fn kube_client_token_stays_secret() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut check = Check::new("kube");
    let token = planted("kube-token");
    let server = MockServer::start().await;
    check.server(server.address().port());
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    Mock::given(method("GET"))
        .and(path("/api/v1/namespaces/default/configmaps"))
        .and(bearer_token(token.as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_json(status))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/namespaces/default/configmaps"))
        .and(bearer_token(token.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []
        })))
        .mount(&server)
        .await;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    namespace: default\nusers:\n- name: u\n  user:\n    token: {token}\n",
        server.uri()
    );
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    check.debug("kube config", &config);
    let client = kube::Client::try_from(config).unwrap();
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
    let e = api.list(&Default::default()).await.unwrap_err();
    check.text("kube 401", &e);
    check.debug("kube 401", &e);
    let list = api.list(&Default::default()).await.unwrap();
    assert!(list.items.is_empty());
    received(&mut check, &server, 2, &[&token]).await;
    check.assert_clean();
}

// ---------------------------------------------------------------- the binary

#[tokio::test]
async fn forecast_command_output_stays_secret() {
    // The binary logs nothing for `forecast` (no subscriber); what it prints is checked.
    let mut check = Check::new("carbonshift forecast");
    let token = planted("cli-token");
    let key = planted("cli-query");
    let server = MockServer::start().await;
    let mock = |resp: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path("/v3/carbon-intensity/forecast"))
            .and(query_param("key", key.as_str()))
            .and(header("auth-token", token.as_str()))
            .respond_with(resp)
    };
    mock(ResponseTemplate::new(401).set_body_string(format!("bad token {token} key {key}")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // The binary plans at the wall clock.
    let hour = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    mock(ResponseTemplate::new(200).set_body_json(em_body_from(hour, 24)))
        .mount(&server)
        .await;
    let endpoint = format!("{}/?key={key}", server.uri());
    let run = |endpoint: String| {
        let token = token.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                assert_cmd::Command::cargo_bin("carbonshift")
                    .unwrap()
                    .env_remove("ELECTRICITYMAPS_TOKEN_FILE")
                    .env_remove("CARBONSHIFT_FORECAST_FILE")
                    .env("ELECTRICITYMAPS_TOKEN", token)
                    .args([
                        "forecast",
                        "--provider",
                        "electricitymaps",
                        "--region",
                        "DE",
                        "--endpoint",
                        &endpoint,
                        "--format",
                        "json",
                        // Fail rather than show the embedded fallback, so each failure's
                        // message is what is checked.
                        "--forecast-fallback",
                        "none",
                    ])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let port = refused_port();
    for (what, endpoint, code, expect) in [
        ("401", endpoint.clone(), 1, "authentication failed"),
        ("success", endpoint, 0, "\"provider\": \"electricitymaps\""),
        (
            "connection refused",
            format!("http://127.0.0.1:{port}/?key={key}"),
            1,
            "request failed",
        ),
    ] {
        let out = run(endpoint).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() != Some(code) || !(stdout.contains(expect) || stderr.contains(expect))
        {
            check.problems.push(format!(
                "{what}: exit {:?}, expected {code} and {expect:?}: {stderr}",
                out.status.code()
            ));
        }
        check.text(&format!("{what} stdout"), stdout);
        check.text(&format!("{what} stderr"), stderr);
    }
    received(&mut check, &server, 2, &[&token, &key]).await;
    check.assert_clean();
}
