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
    assert!(String::from_utf8_lossy(&out.stderr).contains("historical data replayed"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provider"], "embedded");
    assert_eq!(v["region"], "DE");
    assert_eq!(v["signal"], "average");
    assert_eq!(v["historical_replay"], true);
    let points = v["points"].as_array().unwrap();
    assert!(points.len() >= 7 * 24 + 72, "{}", points.len());
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
        .stdout(contains("timestamp,region,gco2_per_kwh"))
        .stdout(contains(",FR,40\n"));
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
