//! A local server speaking Electricity Maps' API v3 for end-to-end tests, serving the
//! test's [`Forecast`] as the real API would:
//! - `GET /v3/carbon-intensity/forecast?zone=Z`: with `live` set, only the slots from the
//!   one `now` falls in onward (the real API serves the present and the future); otherwise
//!   every slot;
//! - `GET /v3/carbon-intensity/past-range?zone=Z&start=T&end=T`: the completed slots in
//!   `[start, end)` (`{"zone", "data": [...]}`), the only way to the past when `live`;
//! - `auth-token` required, a 404 naming the zone for any zone not served.
//!
//! Faults: while `hang` is set the first zone answers after 60 s; while `down` is set
//! every request gets a 503.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::cluster::must;
use super::forecast::{Forecast, SLOT_SECS};

struct Shared {
    zones: Vec<String>,
    points: Vec<(DateTime<Utc>, f64)>,
    live: bool,
    hang: AtomicBool,
    down: AtomicBool,
    /// Requests per `path zone`, e.g. `forecast DE`, `past-range DE`.
    counts: Mutex<BTreeMap<String, usize>>,
}

pub struct EmServer {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn json_response(code: StatusCode, v: serde_json::Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

/// The checks every endpoint makes, in the real API's order; `Err` is the answer.
async fn admit(
    s: &Shared,
    what: &str,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<String, Response> {
    let zone = q.get("zone").cloned().unwrap_or_default();
    if let Ok(mut c) = s.counts.lock() {
        *c.entry(format!("{what} {zone}")).or_default() += 1;
    }
    if s.down.load(Ordering::SeqCst) {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response());
    }
    if headers.get("auth-token").is_none() {
        return Err((StatusCode::UNAUTHORIZED, "missing auth-token").into_response());
    }
    if s.zones.first() == Some(&zone) && s.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    if !s.zones.contains(&zone) {
        let body = json!({"status": "error", "message": format!("Zone '{zone}' does not exist.")});
        return Err(json_response(StatusCode::NOT_FOUND, body));
    }
    Ok(zone)
}

fn point(t: DateTime<Utc>, v: f64, zone: &str) -> serde_json::Value {
    json!({"zone": zone, "carbonIntensity": v, "datetime": rfc3339(t),
           "updatedAt": rfc3339(Utc::now()), "emissionFactorType": "lifecycle",
           "isEstimated": false})
}

async fn forecast(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let zone = match admit(&s, "forecast", &headers, &q).await {
        Ok(z) => z,
        Err(r) => return r,
    };
    let now = Utc::now();
    let slot = TimeDelta::seconds(SLOT_SECS);
    let forecast: Vec<_> = s
        .points
        .iter()
        .filter(|(t, _)| !s.live || *t + slot > now)
        .map(|(t, v)| json!({"carbonIntensity": v, "datetime": rfc3339(*t)}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"zone": zone, "forecast": forecast, "updatedAt": rfc3339(now)}),
    )
}

async fn past_range(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let zone = match admit(&s, "past-range", &headers, &q).await {
        Ok(z) => z,
        Err(r) => return r,
    };
    let parse = |k: &str| {
        q.get(k)
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let (Some(start), Some(end)) = (parse("start"), parse("end")) else {
        let body =
            json!({"status": "error", "message": "start and end must be ISO 8601 datetimes"});
        return json_response(StatusCode::BAD_REQUEST, body);
    };
    let now = Utc::now();
    let slot = TimeDelta::seconds(SLOT_SECS);
    let data: Vec<_> = s
        .points
        .iter()
        .filter(|(t, _)| *t >= start && *t < end && *t + slot <= now)
        .map(|(t, v)| point(*t, *v, &zone))
        .collect();
    json_response(StatusCode::OK, json!({"zone": zone, "data": data}))
}

impl EmServer {
    /// Serves `f` for `zones` (the first one is the one `hang` holds).
    pub async fn start(f: &Forecast, zones: &[&str], live: bool) -> Self {
        let points = f
            .values
            .iter()
            .enumerate()
            .map(|(k, v)| (f.start + TimeDelta::seconds(k as i64 * SLOT_SECS), *v))
            .collect();
        let shared = Arc::new(Shared {
            zones: zones.iter().map(|z| z.to_string()).collect(),
            points,
            live,
            hang: AtomicBool::new(false),
            down: AtomicBool::new(false),
            counts: Mutex::new(BTreeMap::new()),
        });
        let app = axum::Router::new()
            .route(
                "/v3/carbon-intensity/forecast",
                axum::routing::get(forecast),
            )
            .route(
                "/v3/carbon-intensity/past-range",
                axum::routing::get(past_range),
            )
            .with_state(shared.clone());
        let listener = must(
            "bind the forecast server",
            tokio::net::TcpListener::bind("127.0.0.1:0").await,
        );
        let port = must("address", listener.local_addr()).port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, shared, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_hang(&self, on: bool) {
        self.shared.hang.store(on, Ordering::SeqCst);
    }

    pub fn set_down(&self, on: bool) {
        self.shared.down.store(on, Ordering::SeqCst);
    }

    /// Requests per endpoint and zone (`forecast DE`, `past-range DE`).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.shared
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Requests to `endpoint` (`forecast` or `past-range`) for `zone`.
    pub fn requests(&self, endpoint: &str, zone: &str) -> usize {
        self.counts()
            .get(&format!("{endpoint} {zone}"))
            .copied()
            .unwrap_or(0)
    }

    /// Requests of every kind.
    pub fn total(&self) -> usize {
        self.counts().values().sum()
    }

    /// The operator flags that use this server, without a fallback.
    pub fn provider_args(&self) -> Vec<std::ffi::OsString> {
        [
            "--forecast-provider",
            "electricitymaps",
            "--forecast-endpoint",
            &self.endpoint(),
            "--forecast-fallback",
            "none",
        ]
        .iter()
        .map(std::ffi::OsString::from)
        .collect()
    }
}

impl Drop for EmServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
