//! `carbonshift forecast` end to end: the real binary against the embedded traces, a file
//! and a mock Electricity Maps server; exit codes 2 for bad input, 1 for runtime failures.

use assert_cmd::Command;
use chrono::{DurationRound, TimeDelta, Utc};
use predicates::str::contains;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn cmd() -> Command {
    let mut c = Command::cargo_bin("carbonshift").unwrap();
    for v in [
        "ELECTRICITYMAPS_TOKEN",
        "ELECTRICITYMAPS_TOKEN_FILE",
        "WATTTIME_USERNAME",
        "WATTTIME_PASSWORD",
        "CARBONSHIFT_FORECAST_PROVIDER",
        "CARBONSHIFT_FORECAST_ENDPOINT",
        "CARBONSHIFT_FORECAST_FILE",
        "CARBONSHIFT_REGION_MAP",
    ] {
        c.env_remove(v);
    }
    c
}

#[test]
fn embedded_json_has_the_documented_shape() {
    let out = cmd()
        .args([
            "forecast",
            "--provider",
            "embedded",
            "--region",
            "eu-central-1",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("it replays real DE data of 20"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provider"], "embedded");
    assert_eq!(v["region"], "DE");
    assert_eq!(v["signal"], "average");
    assert_eq!(v["historical_replay"], true);
    let points = v["points"].as_array().unwrap();
    // The default --past 3h: three past hours, the hour of now, then 72 h of horizon (one
    // slot fewer when now falls exactly on the hour).
    assert!((75..=76).contains(&points.len()), "{}", points.len());
    assert_eq!(points[3]["now"], true);
    assert_eq!(points.iter().filter(|p| p["now"] == true).count(), 1);
    assert!(points[0]["gco2_per_kwh"].as_f64().unwrap() > 0.0);
    assert!(points[0]["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn file_provider_reads_a_one_minute_csv() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.csv");
    let start = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::minutes(5);
    let mut csv = String::from("timestamp,region,gco2_per_kwh\n");
    for m in 0..60 {
        let t = start + TimeDelta::minutes(m);
        csv.push_str(&format!("{},FR,{}\n", t.to_rfc3339(), 40 + m));
    }
    std::fs::write(&p, csv).unwrap();
    cmd()
        .args([
            "forecast",
            "--provider",
            "file",
            "--region",
            "FR",
            "--format",
            "csv",
            "--file",
        ])
        .arg(&p)
        .assert()
        .success()
        .stdout(contains("timestamp,region,gco2_per_kwh,now\n"))
        .stdout(contains(",FR,40,false\n"));
}

#[test]
fn missing_credential_and_unknown_region_are_input_errors() {
    cmd()
        .args([
            "forecast",
            "--provider",
            "electricitymaps",
            "--region",
            "DE",
        ])
        .assert()
        .code(2)
        .stderr(contains("ELECTRICITYMAPS_TOKEN"));
    cmd()
        .args([
            "forecast",
            "--provider",
            "watttime",
            "--region",
            "eu-central-1",
        ])
        .env("WATTTIME_USERNAME", "u")
        .env("WATTTIME_PASSWORD", "p")
        .assert()
        .code(2)
        .stderr(contains("--region-map eu-central-1=DE,watttime="));
    cmd()
        .args(["forecast", "--provider", "embedded", "--region", "XX"])
        .assert()
        .code(2)
        .stderr(contains("XX"));
}

#[tokio::test]
async fn electricitymaps_through_the_binary_and_upstream_failure_exit_code() {
    let server = MockServer::start().await;
    let start = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let forecast: Vec<Value> = (0..24)
        .map(|i| json!({"carbonIntensity": 200 + i, "datetime": (start + TimeDelta::hours(i)).to_rfc3339()}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .and(query_param("zone", "NL"))
        .and(header("auth-token", "secret-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "zone": "NL", "forecast": forecast, "updatedAt": start.to_rfc3339()
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .and(query_param("zone", "FR"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let uri = server.uri();
    let out = tokio::task::spawn_blocking(move || {
        let ok = cmd()
            .args([
                "forecast",
                "--provider",
                "electricitymaps",
                "--region",
                "westeurope",
                "--format",
                "json",
                "--endpoint",
                &uri,
            ])
            .env("ELECTRICITYMAPS_TOKEN", "secret-token")
            .output()
            .unwrap();
        let failed = cmd()
            .args([
                "forecast",
                "--provider",
                "electricitymaps",
                "--region",
                "FR",
                "--endpoint",
                &uri,
                "--forecast-fallback",
                "none",
            ])
            .env("ELECTRICITYMAPS_TOKEN", "secret-token")
            .output()
            .unwrap();
        (ok, failed)
    })
    .await
    .unwrap();
    let (ok, failed) = out;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["region"], "NL");
    assert_eq!(v["points"][0]["gco2_per_kwh"], 200.0);
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(!err.contains("secret-token"), "{err}");
}

#[test]
fn help_has_an_example() {
    cmd()
        .args(["forecast", "--help"])
        .assert()
        .success()
        .stdout(contains("Examples:"))
        .stdout(contains("--forecast-provider"));
}

// ---- --forecast-fallback and --forecast-max-age, through the operator's cache ----

/// An Electricity Maps forecast body: 24 hourly values from the hour of now, issued at
/// `updated`.
fn em_forecast(updated: chrono::DateTime<Utc>) -> Value {
    let start = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let forecast: Vec<Value> = (0..24)
        .map(|i| json!({"carbonIntensity": 300 + i, "datetime": (start + TimeDelta::hours(i)).to_rfc3339()}))
        .collect();
    json!({"zone": "DE", "forecast": forecast, "updatedAt": updated.to_rfc3339()})
}

async fn em_server(resp: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/carbon-intensity/forecast"))
        .respond_with(resp)
        .mount(&server)
        .await;
    server
}

/// `carbonshift forecast --provider electricitymaps --region DE --endpoint URI` plus
/// `extra`, run off the async runtime (the mock server lives on it).
async fn em_forecast_cli(uri: String, extra: &[&str]) -> std::process::Output {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        cmd()
            .args([
                "forecast",
                "--provider",
                "electricitymaps",
                "--region",
                "DE",
            ])
            .args(["--endpoint", &uri])
            .args(&extra)
            .env("ELECTRICITYMAPS_TOKEN", "tok-0123456789-secret")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn a_503_is_retried_then_the_fallback_is_shown_with_the_reason() {
    let server =
        em_server(ResponseTemplate::new(503).set_body_string("upstream maintenance until 12:00"))
            .await;
    let out = em_forecast_cli(
        server.uri(),
        &["--forecast-fallback", "embedded", "--format", "json"],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The cache's retries: the first attempt and two more.
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["provider"], "embedded");
    assert_eq!(v["historical_replay"], true);
    assert_eq!(v["fallback"]["reason"], "fallback_upstream");
    let error = v["fallback"]["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 503: upstream maintenance until 12:00"),
        "{error}"
    );
    assert!(
        stderr.contains("warning: the provider failed, so the fallback source embedded stands in for it: electricitymaps: upstream error: HTTP 503: upstream maintenance"),
        "{stderr}"
    );

    // Without a fallback: exit 1 with the same reason.
    let out = em_forecast_cli(server.uri(), &["--forecast-fallback", "none"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(
            "error: electricitymaps: upstream error: HTTP 503: upstream maintenance until 12:00"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_refused_connection_says_so_with_and_without_a_fallback() {
    // Port 1 on loopback: nothing listens there.
    let uri = "http://127.0.0.1:1".to_string();
    let out = em_forecast_cli(uri.clone(), &["--forecast-fallback", "embedded"]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("provider: embedded (historical replay)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fallback: the provider failed, so the fallback source embedded stands in for it: electricitymaps: upstream error: request failed"),
        "{stdout}"
    );
    assert!(stdout.contains("Connection refused"), "{stdout}");
    assert!(stderr.contains("warning: the provider failed"), "{stderr}");

    let out = em_forecast_cli(uri, &["--forecast-fallback", "none"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: electricitymaps: upstream error: request failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(http://127.0.0.1:1/v3/carbon-intensity/forecast)"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[tokio::test]
async fn a_401_quoting_the_token_says_why_and_never_prints_the_token() {
    let server = em_server(ResponseTemplate::new(401).set_body_json(json!({
        "error": "auth-token tok-0123456789-secret is not valid for zone DE"
    })))
    .await;
    let out = em_forecast_cli(server.uri(), &["--forecast-fallback", "none"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: electricitymaps: authentication failed: HTTP 401:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("auth-token <redacted> is not valid for zone DE"),
        "{stderr}"
    );
    assert!(!stderr.contains("tok-0123456789-secret"), "{stderr}");
    // An authentication failure is not retried.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    // With the fallback, in every format: the reason, never the token.
    for format in ["table", "json", "csv"] {
        let out = em_forecast_cli(server.uri(), &["--format", format]).await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("is not valid for zone DE"), "{stderr}");
        assert!(!stdout.contains("tok-0123456789"), "{format}: {stdout}");
        assert!(!stderr.contains("tok-0123456789"), "{format}: {stderr}");
    }
}

#[tokio::test]
async fn a_forecast_older_than_max_age_is_refused() {
    let issued = Utc::now() - TimeDelta::hours(10);
    let server = em_server(ResponseTemplate::new(200).set_body_json(em_forecast(issued))).await;

    // Older than --forecast-max-age, no fallback: exit 1, naming the age and the flag.
    let out = em_forecast_cli(
        server.uri(),
        &["--forecast-max-age", "6h", "--forecast-fallback", "none"],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("error: electricitymaps: no forecast available: its forecast was issued at "),
        "{stderr}"
    );
    assert!(
        stderr.contains(", 10h ago, longer than --forecast-max-age 6h"),
        "{stderr}"
    );

    // With the fallback: the embedded replay, marked and saying why.
    let out = em_forecast_cli(
        server.uri(),
        &["--forecast-max-age", "6h", "--format", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provider"], "embedded");
    assert_eq!(v["fallback"]["reason"], "fallback_unavailable");
    assert!(v["fallback"]["error"]
        .as_str()
        .unwrap()
        .contains("longer than --forecast-max-age 6h"));

    // Younger than the max age: the provider's forecast, its age shown.
    let out = em_forecast_cli(server.uri(), &["--forecast-max-age", "12h"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.starts_with("provider: electricitymaps\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("fallback:"), "{stdout}");
    assert!(stdout.contains("(10h ago)"), "{stdout}");
    assert!(stdout.contains("300.0  <- now"), "{stdout}");
}

#[tokio::test]
async fn plan_uses_the_fallback_or_fails_like_forecast() {
    let server =
        em_server(ResponseTemplate::new(503).set_body_string("down for maintenance")).await;
    let uri = server.uri();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gpu-training.yaml");
    let run = move |fallback: &'static str| {
        let uri = uri.clone();
        move || {
            cmd()
                .args(["plan", "-f", manifest, "--region", "DE", "--format", "json"])
                .args([
                    "--forecast-provider",
                    "electricitymaps",
                    "--forecast-endpoint",
                    &uri,
                ])
                .args(["--forecast-fallback", fallback])
                .env("ELECTRICITYMAPS_TOKEN", "tok-0123456789-secret")
                .output()
                .unwrap()
        }
    };
    let ok = tokio::task::spawn_blocking(run("embedded")).await.unwrap();
    let stderr = text(&ok.stderr);
    assert_eq!(ok.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("HTTP 503: down for maintenance"),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(
        v["forecastSource"]
            .as_str()
            .unwrap()
            .starts_with("embedded (historical replay); serving the fallback source"),
        "{v}"
    );
    let failed = tokio::task::spawn_blocking(run("none")).await.unwrap();
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: electricitymaps: upstream error: HTTP 503: down for maintenance"),
        "{stderr}"
    );
}

// ---- what `forecast` prints ----

#[test]
fn the_table_marks_now_and_prints_a_short_past() {
    let out = cmd()
        .args(["forecast", "--provider", "embedded", "--region", "DE"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("TIMESTAMP"))
        .unwrap();
    assert_eq!(
        lines[header].split_whitespace().collect::<Vec<_>>(),
        ["TIMESTAMP", "GCO2/KWH", "NOW"]
    );
    let rows = &lines[header + 1..];
    let marked: Vec<usize> = (0..rows.len())
        .filter(|i| rows[*i].ends_with("  <- now"))
        .collect();
    // Three past hours, then the hour of now.
    assert_eq!(marked, [3], "{stdout}");
    let first =
        chrono::DateTime::parse_from_rfc3339(rows[0].split_whitespace().next().unwrap()).unwrap();
    let now_row =
        chrono::DateTime::parse_from_rfc3339(rows[3].split_whitespace().next().unwrap()).unwrap();
    assert_eq!(now_row - first, TimeDelta::hours(3));
    assert!(lines.iter().any(|l| l.starts_with("now: ")), "{stdout}");

    // --past 7d: the whole replayed week before now.
    let out = cmd()
        .args([
            "forecast",
            "--provider",
            "embedded",
            "--region",
            "DE",
            "--past",
            "7d",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(
        csv.lines().next(),
        Some("timestamp,region,gco2_per_kwh,now")
    );
    let now_rows: Vec<usize> = (0..rows.len())
        .filter(|i| rows[*i].ends_with(",true"))
        .collect();
    assert_eq!(now_rows, [7 * 24], "{csv}");
    assert_eq!(
        rows.iter().filter(|r| r.ends_with(",false")).count(),
        rows.len() - 1
    );

    // A bad --past is an input error naming the flag's value.
    cmd()
        .args(["forecast", "--region", "DE", "--past", "3 hours"])
        .assert()
        .code(2)
        .stderr(contains("invalid value '3 hours' for '--past <DURATION>'"));
}

#[test]
fn the_embedded_replay_says_which_real_data_and_its_licence() {
    let out = cmd()
        .args([
            "forecast",
            "--provider",
            "embedded",
            "--region",
            "FR",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["replay"];
    assert_eq!(r["zone"], "FR");
    assert_eq!(
        r["licence"],
        "Electricity Maps (electricitymaps.com), data licensed under ODbL 1.0"
    );
    let at = |x: &Value| chrono::DateTime::parse_from_rfc3339(x.as_str().unwrap()).unwrap();
    let (from, to) = (at(&r["data_from"]), at(&r["data_to"]));
    // The shipped traces are 2021-23.
    assert!(from.format("%Y").to_string().as_str() >= "2021", "{from}");
    assert!(to.format("%Y").to_string().as_str() <= "2024", "{to}");
    // The first printed row is that real instant moved by whole weeks.
    let first = at(&v["points"][0]["timestamp"]);
    let weeks = r["shift_weeks"].as_i64().unwrap();
    assert_eq!(first - from, TimeDelta::weeks(weeks));
    assert!(weeks > 0);
    // The table's header and standard error say the same in words.
    let out = cmd()
        .args(["forecast", "--provider", "embedded", "--region", "FR"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let line = format!(
        "replays: embedded is not a forecast: it replays real FR data of {} .. {}, moved {weeks} weeks forward (weekday and hour kept); Electricity Maps (electricitymaps.com), data licensed under ODbL 1.0",
        r["data_from"].as_str().unwrap(),
        r["data_to"].as_str().unwrap()
    );
    assert!(stdout.contains(&line), "{stdout}\n{line}");
    assert!(
        text(&out.stderr).contains("note: embedded is not a forecast: it replays real FR data of")
    );
}
