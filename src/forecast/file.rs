//! The `file` source: a series from a local file or an http(s) URL, for air-gapped clusters
//! (a CronJob drops a CSV on a volume) and for tests (the e2e tests feed 1-minute data).
//!
//! Formats:
//! - CSV with a header `timestamp,region,gco2_per_kwh` (column order free; the `region`
//!   column optional). Rows of other regions are ignored; a row whose region is empty or
//!   `*` applies to every region. An empty value is a null (a gap, see
//!   [`super::validate`]).
//! - JSON `{"points": [{"timestamp": ..., "gco2_per_kwh": ...}]}`, optionally with
//!   `"region"` at the top level (then it must match) and `"generated_at"`.
//!
//! Timestamps: as [`crate::timefmt::parse`] reads them (RFC 3339, or a naive
//! `YYYY-MM-DD[T ]HH:MM[:SS]` read as UTC).
//! The file is re-read only when it changed: modification time and size for a path, the
//! `ETag` (`If-None-Match`) or `Last-Modified` for a URL. `generated_at` is the JSON's own
//! field when present, else the file's modification time (or `Last-Modified`), else now.
//!
//! History is the file's own rows over `[from, to)`, through the same validation; a URL
//! already read is not fetched again for it (the past in it does not change).
//!
//! Rows are parsed here rather than with [`crate::data::load_csv_reader`] because the
//! validation rules need the raw rows (nulls, duplicates, unsorted) that a clean-series
//! loader rejects or hides.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::provider::{self, Live, Past, Provider};
use super::redact::{self, Redactor};
use super::validate::RawPoint;
use super::{http, Forecast, ForecastError, Signal};
use crate::series::Series;
use crate::timefmt;

pub const NAME: &str = "file";

/// Where the file lives. `Debug` shows a URL as [`redact::url`] renders it.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Path(PathBuf),
    /// May carry credentials: userinfo (sent as basic auth) and a query string (a token,
    /// a signature).
    Url(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Location::Url(u) => f.debug_tuple("Url").field(&redact::url(u)).finish(),
        }
    }
}

impl Location {
    /// `http://` and `https://` are URLs, anything else a path.
    pub fn parse(s: &str) -> Self {
        if s.starts_with("http://") || s.starts_with("https://") {
            Location::Url(s.to_string())
        } else {
            Location::Path(PathBuf::from(s))
        }
    }
}

/// One parsed row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    region: Option<String>,
    point: RawPoint,
}

#[derive(Debug, Clone)]
struct Parsed {
    rows: Vec<Row>,
    generated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Fingerprint {
    File {
        modified: Option<SystemTime>,
        len: u64,
    },
    Http {
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Reads a CSV/JSON series from a path or URL; see the module doc.
pub struct FileSource {
    location: Location,
    client: Option<reqwest::Client>,
    state: Mutex<Option<(Fingerprint, Arc<Parsed>)>>,
    redact: Redactor,
}

impl FileSource {
    pub fn new(location: Location, timeout: Duration) -> Result<Self, ForecastError> {
        let mut redact = Redactor::new();
        let client = match &location {
            Location::Url(u) => {
                redact.url(u);
                Some(http::client(NAME, timeout, http::Redirects::Any)?)
            }
            Location::Path(_) => None,
        };
        Ok(Self {
            location,
            client,
            state: Mutex::new(None),
            redact,
        })
    }

    async fn load(&self) -> Result<Arc<Parsed>, ForecastError> {
        let mut state = self.state.lock().await;
        match &self.location {
            Location::Path(path) => {
                let meta =
                    tokio::fs::metadata(path)
                        .await
                        .map_err(|e| ForecastError::Unavailable {
                            provider: NAME.into(),
                            detail: format!("cannot read {}: {e}", path.display()),
                        })?;
                let fp = Fingerprint::File {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                };
                if let Some((old, parsed)) = state.as_ref() {
                    if *old == fp {
                        return Ok(parsed.clone());
                    }
                }
                let bytes =
                    tokio::fs::read(path)
                        .await
                        .map_err(|e| ForecastError::Unavailable {
                            provider: NAME.into(),
                            detail: format!("cannot read {}: {e}", path.display()),
                        })?;
                let mut parsed = parse(&bytes, &path.to_string_lossy())?;
                if parsed.generated_at.is_none() {
                    parsed.generated_at = meta.modified().ok().map(DateTime::<Utc>::from);
                }
                let parsed = Arc::new(parsed);
                *state = Some((fp, parsed.clone()));
                Ok(parsed)
            }
            Location::Url(url) => {
                let client = self.client.as_ref().ok_or_else(|| ForecastError::Config {
                    provider: NAME.into(),
                    detail: "no HTTP client".into(),
                })?;
                let mut req = client.get(url);
                if let Some((
                    Fingerprint::Http {
                        etag,
                        last_modified,
                    },
                    _,
                )) = state.as_ref()
                {
                    if let Some(e) = etag {
                        req = req.header(reqwest::header::IF_NONE_MATCH, e);
                    }
                    if let Some(l) = last_modified {
                        req = req.header(reqwest::header::IF_MODIFIED_SINCE, l);
                    }
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| http::transport_error(NAME, e))?;
                if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
                    if let Some((_, parsed)) = state.as_ref() {
                        return Ok(parsed.clone());
                    }
                }
                let resp = http::check(NAME, resp, &self.redact).await?;
                let header = |name| {
                    resp.headers()
                        .get(name)
                        .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                        .map(str::to_string)
                };
                let fp = Fingerprint::Http {
                    etag: header(reqwest::header::ETAG),
                    last_modified: header(reqwest::header::LAST_MODIFIED),
                };
                let lm = header(reqwest::header::LAST_MODIFIED)
                    .and_then(|v| DateTime::parse_from_rfc2822(&v).ok())
                    .map(|d| d.with_timezone(&Utc));
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| http::transport_error(NAME, e))?;
                let mut parsed = parse(&bytes, &redact::url(url))?;
                if parsed.generated_at.is_none() {
                    parsed.generated_at = lm;
                }
                let parsed = Arc::new(parsed);
                *state = Some((fp, parsed.clone()));
                Ok(parsed)
            }
        }
    }
}

#[async_trait]
impl Provider for FileSource {
    const NAME: &'static str = NAME;
    const SIGNAL: Signal = Signal::Average;

    async fn forecast(&self, q: Live<'_>, _: &mut Redactor) -> Result<Forecast, ForecastError> {
        let Live { region, now } = q;
        let parsed = self.load().await?;
        let generated_at = parsed.generated_at.unwrap_or(now);
        provider::live::<Self>(q, generated_at, points(&parsed, region)?, None)
    }

    async fn past(&self, q: Past<'_>, _: &mut Redactor) -> Result<Series, ForecastError> {
        let cached = match &self.location {
            Location::Url(_) => self.state.lock().await.as_ref().map(|(_, p)| p.clone()),
            Location::Path(_) => None,
        };
        let parsed = match cached {
            Some(p) => p,
            None => self.load().await?,
        };
        provider::recorded::<Self>(q, points(&parsed, q.region)?, None)
    }

    fn redactor(&self) -> Redactor {
        self.redact.clone()
    }
}

/// The rows that apply to `region`; none is an unknown region, named with those the file has.
fn points(parsed: &Parsed, region: &str) -> Result<Vec<RawPoint>, ForecastError> {
    let matches = |r: &Option<String>| match r {
        None => true,
        Some(r) => r.is_empty() || r == "*" || r.eq_ignore_ascii_case(region),
    };
    let points: Vec<RawPoint> = parsed
        .rows
        .iter()
        .filter(|r| matches(&r.region))
        .map(|r| r.point)
        .collect();
    if !points.is_empty() {
        return Ok(points);
    }
    let mut regions: Vec<&str> = parsed
        .rows
        .iter()
        .filter_map(|r| r.region.as_deref())
        .collect();
    regions.sort_unstable();
    regions.dedup();
    Err(ForecastError::UnknownRegion {
        provider: NAME.into(),
        region: region.into(),
        hint: if regions.is_empty() {
            "the file has no rows".into()
        } else {
            format!("the file has rows for {}", regions.join(", "))
        },
    })
}

/// Parses either format; JSON when the first non-blank byte is `{`.
fn parse(bytes: &[u8], name: &str) -> Result<Parsed, ForecastError> {
    let invalid = |detail: String| ForecastError::Invalid {
        provider: NAME.into(),
        detail: format!("{name}: {detail}"),
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        parse_json(bytes).map_err(invalid)
    } else {
        parse_csv(bytes).map_err(invalid)
    }
}

#[derive(Deserialize)]
struct JsonFile {
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    generated_at: Option<String>,
    points: Vec<JsonPoint>,
}

#[derive(Deserialize)]
struct JsonPoint {
    timestamp: String,
    gco2_per_kwh: Option<f64>,
}

fn parse_json(bytes: &[u8]) -> Result<Parsed, String> {
    let f: JsonFile = serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
    let generated_at = match f.generated_at.as_deref() {
        Some(g) => Some(timefmt::parse(g)?),
        None => None,
    };
    let rows = f
        .points
        .into_iter()
        .map(|p| {
            Ok(Row {
                region: f.region.clone(),
                point: RawPoint::new(timefmt::parse(&p.timestamp)?, p.gco2_per_kwh),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Parsed { rows, generated_at })
}

fn parse_csv(bytes: &[u8]) -> Result<Parsed, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let headers = rdr
        .headers()
        .map_err(|e| format!("bad CSV header: {e}"))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let ts = col("timestamp").ok_or("CSV header lacks a `timestamp` column")?;
    let val = col("gco2_per_kwh").ok_or("CSV header lacks a `gco2_per_kwh` column")?;
    let reg = col("region");
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("CSV row {}: {e}", i + 2))?;
        let timestamp = timefmt::parse(rec.get(ts).unwrap_or_default())
            .map_err(|e| format!("CSV row {}: {e}", i + 2))?;
        let raw = rec.get(val).unwrap_or_default();
        let value = if raw.is_empty() || raw.eq_ignore_ascii_case("null") || raw == "NA" {
            None
        } else {
            Some(
                raw.parse::<f64>()
                    .map_err(|_| format!("CSV row {}: {raw:?} is not a number", i + 2))?,
            )
        };
        rows.push(Row {
            region: reg.and_then(|c| rec.get(c)).map(str::to_string),
            point: RawPoint::new(timestamp, value),
        });
    }
    Ok(Parsed {
        rows,
        generated_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::ForecastSource;

    #[tokio::test]
    async fn history_is_the_file_over_the_span() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grid.csv");
        let mut csv = String::from("timestamp,region,gco2_per_kwh\n");
        for h in 0..10 {
            csv.push_str(&format!("2024-03-01T{h:02}:00:00Z,DE,{}\n", 300 + h));
            csv.push_str(&format!("2024-03-01T{h:02}:00:00Z,FR,{}\n", 40 + h));
        }
        std::fs::write(&p, csv).unwrap();
        let src = FileSource::new(Location::Path(p), Duration::from_secs(5)).unwrap();
        let t =
            |h: i64| timefmt::parse("2024-03-01T00:00:00Z").unwrap() + chrono::TimeDelta::hours(h);
        let now = t(24 * 30);
        let s = src.history("DE", t(2), t(5), now).await.unwrap();
        assert_eq!((s.start(), s.step_secs()), (t(2), 3600));
        assert_eq!(s.values(), &[302.0, 303.0, 304.0]);
        let s = src.history("FR", t(8), t(12), now).await.unwrap();
        assert_eq!((s.start(), s.values()), (t(8), &[48.0, 49.0][..]));
        let e = src.history("DE", t(20), t(22), now).await.unwrap_err();
        assert_eq!(e.kind(), "unavailable");
        let e = src.history("PL", t(2), t(5), now).await.unwrap_err();
        assert_eq!(e.kind(), "unknown_region");
    }

    #[test]
    fn csv_with_regions_and_nulls() {
        let p = parse_csv(
            b"timestamp,region,gco2_per_kwh\n2024-03-01T00:00:00Z,DE,300\n2024-03-01T00:00:00Z,FR,50\n2024-03-01T01:00:00Z,DE,\n",
        )
        .unwrap();
        assert_eq!(p.rows.len(), 3);
        assert_eq!(p.rows[2].point.value, None);
        assert_eq!(p.rows[1].region.as_deref(), Some("FR"));
        assert!(parse_csv(b"time,value\n").is_err());
    }
}
