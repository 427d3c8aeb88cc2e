//! HTTP plumbing shared by the live providers: one client per provider with a request
//! timeout, and one mapping from HTTP outcomes to [`ForecastError`] kinds, so that every
//! provider fails the same way for the same reason (which the cache's retry policy and the
//! metrics' `outcome` label rely on).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

use super::redact::{self, Redactor};
use super::ForecastError;

/// How much of an error body goes into an error message: enough to read the upstream's
/// reason, not enough to flood logs.
const BODY_EXCERPT: usize = 200;

/// Which redirects a client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Only to the origin (scheme, host, port) of the first request: the API clients, which
    /// send credentials in headers (Electricity Maps' `auth-token`) that reqwest would
    /// otherwise forward to any host a redirect names. Another origin ends the request with
    /// the redirect as its answer (an upstream error).
    SameOrigin,
    /// Anywhere (the `file` source: files are served from CDNs and signed URLs). reqwest
    /// drops `Authorization` when a redirect leaves the host.
    Any,
}

/// At most this many redirects are followed.
const MAX_REDIRECTS: usize = 10;

/// Builds a client with `timeout` for the whole request (connect + body).
pub fn client(
    provider: &str,
    timeout: Duration,
    redirects: Redirects,
) -> Result<reqwest::Client, ForecastError> {
    let policy = match redirects {
        Redirects::Any => reqwest::redirect::Policy::limited(MAX_REDIRECTS),
        Redirects::SameOrigin => reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if !same {
                attempt.stop()
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }),
    };
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(policy)
        .user_agent(concat!("carbonshift/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ForecastError::Config {
            provider: provider.to_string(),
            detail: format!("cannot build HTTP client: {e}"),
        })
}

/// Maps a transport error (no HTTP status) to an error kind. The message names the URL as
/// [`redact::url`] renders it (reqwest's own Display would include the query string) and
/// the chain of causes (`Connection refused`, a DNS failure).
pub fn transport_error(provider: &str, e: reqwest::Error) -> ForecastError {
    if e.is_timeout() {
        return ForecastError::Timeout {
            provider: provider.to_string(),
        };
    }
    let url = e
        .url()
        .map(|u| format!(" ({})", redact::url(u.as_str())))
        .unwrap_or_default();
    let mut causes = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push_str(&format!(": {s}"));
        source = s.source();
    }
    ForecastError::Upstream {
        provider: provider.to_string(),
        detail: format!("request failed: {}{url}{causes}", e.without_url()),
    }
}

/// Turns a non-success response into an error; `Ok(response)` for 2xx. The body excerpt is
/// passed through `redact` before it is cut, so that no part of a credential the upstream
/// quotes survives at the cut.
pub async fn check(
    provider: &str,
    resp: Response,
    redact: &Redactor,
) -> Result<Response, ForecastError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = retry_after_secs(&resp);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(redact::url);
    if let Some(to) = location.filter(|_| status.is_redirection()) {
        return Err(ForecastError::Upstream {
            provider: provider.to_string(),
            detail: format!(
                "HTTP {}: redirect to {to} not followed: credentials go to the configured origin only",
                status.as_u16()
            ),
        });
    }
    let body = resp.text().await.unwrap_or_default();
    Err(status_error(
        provider,
        status,
        retry_after,
        &redact.text(&body),
    ))
}

/// The error for an HTTP status, with a short body excerpt for humans.
pub fn status_error(
    provider: &str,
    status: StatusCode,
    retry_after_secs: Option<u64>,
    body: &str,
) -> ForecastError {
    let provider = provider.to_string();
    let detail = format!("HTTP {}: {}", status.as_u16(), excerpt(body));
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            ForecastError::Auth { provider, detail }
        }
        StatusCode::TOO_MANY_REQUESTS => ForecastError::RateLimited {
            provider,
            retry_after_secs,
        },
        StatusCode::NOT_IMPLEMENTED => ForecastError::Unavailable { provider, detail },
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ForecastError::Timeout { provider }
        }
        _ => ForecastError::Upstream { provider, detail },
    }
}

/// Reads a JSON body; a body that does not parse is an invalid forecast, not an upstream
/// failure: retrying the same malformed answer would not help.
pub async fn json<T: DeserializeOwned>(provider: &str, resp: Response) -> Result<T, ForecastError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| transport_error(provider, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ForecastError::Invalid {
        provider: provider.to_string(),
        detail: format!("malformed JSON: {e}"),
    })
}

/// `Retry-After` as seconds: either delta-seconds or an HTTP date.
pub fn retry_after_secs(resp: &Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(v)
}

pub fn parse_retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&Utc) - Utc::now();
    Some(delta.num_seconds().max(0) as u64)
}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.chars().count() <= BODY_EXCERPT {
        return trimmed.to_string();
    }
    let cut: String = trimmed.chars().take(BODY_EXCERPT).collect();
    format!("{cut}...")
}

/// `endpoint` with `path` appended to its path, keeping its query string and userinfo (a
/// gateway's API key, basic-auth credentials), which reqwest sends and [`redact`] hides.
pub fn join(endpoint: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    match reqwest::Url::parse(endpoint) {
        Ok(mut u) if !u.cannot_be_a_base() => {
            let joined = format!("{}/{path}", u.path().trim_end_matches('/'));
            u.set_path(&joined);
            u.into()
        }
        // reqwest rejects it when sending, with an error that does not quote it.
        _ => format!("{}/{path}", endpoint.trim_end_matches('/')),
    }
}

/// At most this many requests answer one history call; the rest of the span is left to a
/// later call (the caller accounts what is covered and asks again from its end).
pub const MAX_HISTORY_REQUESTS: usize = 8;

/// The request windows covering `[from, to)`, the part before `now` only: consecutive, each
/// at most `cap` long (a provider's per-request limit), from `from` on, at most
/// [`MAX_HISTORY_REQUESTS`] of them.
pub fn windows(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    cap: TimeDelta,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let to = to.min(now);
    let mut out = Vec::new();
    let mut a = from;
    while a < to && out.len() < MAX_HISTORY_REQUESTS {
        let b = (a + cap).min(to);
        out.push((a, b));
        a = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_windows_are_contiguous_capped_and_bounded() {
        let t0 = DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let d = TimeDelta::days;
        let now = t0 + d(400);
        assert_eq!(
            windows(t0, t0 + d(25), now, d(10)),
            vec![
                (t0, t0 + d(10)),
                (t0 + d(10), t0 + d(20)),
                (t0 + d(20), t0 + d(25))
            ]
        );
        // Never past now, nothing for an empty span.
        assert_eq!(
            windows(t0, t0 + d(5), t0 + d(2), d(10)),
            vec![(t0, t0 + d(2))]
        );
        assert!(windows(t0, t0, now, d(10)).is_empty());
        // 100 days at 10 a request: the first 80 days, in 8 requests.
        let w = windows(t0, t0 + d(100), now, d(10));
        assert_eq!(w.len(), MAX_HISTORY_REQUESTS);
        assert_eq!(w.last().unwrap().1, t0 + d(80));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(7));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn excerpts_are_redacted_before_they_are_cut() {
        let secret = "0123456789-secret-token";
        let mut r = Redactor::new();
        r.secret(&crate::forecast::Secret::new(secret));
        // The secret straddles the excerpt's end.
        let body = format!("{}{secret}", "x".repeat(BODY_EXCERPT - 5));
        let e = status_error("p", StatusCode::UNAUTHORIZED, None, &r.text(&body));
        assert!(!e.to_string().contains("01234"), "{e}");
        assert!(e.to_string().ends_with("xxx<reda..."), "{e}");
    }

    #[test]
    fn status_kinds() {
        let k = |s: u16| status_error("p", StatusCode::from_u16(s).unwrap(), None, "").kind();
        assert_eq!(k(401), "auth");
        assert_eq!(k(403), "auth");
        assert_eq!(k(429), "rate_limited");
        assert_eq!(k(501), "unavailable");
        assert_eq!(k(503), "upstream");
        assert_eq!(k(504), "timeout");
        assert_eq!(join("http://x/", "/v3/a"), "http://x/v3/a");
        assert_eq!(join("http://x", "v3/a"), "http://x/v3/a");
        assert_eq!(
            join("https://u:p@gw:8443/carbon/?key=k", "/v3/a"),
            "https://u:p@gw:8443/carbon/v3/a?key=k"
        );
    }
}
