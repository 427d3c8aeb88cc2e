//! Keeping credentials out of every string the operator emits: logs, error messages (which
//! become status conditions and Events), `Debug` output, provenance and metric labels.
//!
//! Two tools, each the one way to do its job:
//! - [`url`] renders a URL as `scheme://host[:port]/path`: userinfo, query string and
//!   fragment removed. Every URL that goes into a message or a `Debug` goes through it.
//! - [`Redactor`] knows a source's credentials (tokens, passwords, the userinfo and query
//!   values of its URLs) and removes them from free text, for what we do not write
//!   ourselves: an upstream's error body, a JSON parser's complaint quoting the payload.
//!   Every provider passes its errors through [`Redactor::error`] before they leave
//!   [`super::ForecastSource::fetch`].

use super::config::Secret;
use super::ForecastError;

/// What replaces a credential in text.
pub const REDACTED: &str = "<redacted>";

/// Values shorter than this are not searched for in free text: they are too likely to be
/// ordinary words or numbers of the message (`v=2`, `format=csv`), and too short to be
/// credentials. URLs are rendered without userinfo and query whatever their length.
pub const MIN_SECRET_LEN: usize = 4;

/// `s` as `scheme://host[:port]/path`, without userinfo, query string or fragment. A string
/// without `://` (a file path) keeps everything but a `?query` or `#fragment`. A URL that
/// does not parse keeps only the part its authority cannot be mistaken in: its scheme and
/// what follows the last `@`.
pub fn url(s: &str) -> String {
    if let Ok(u) = reqwest::Url::parse(s) {
        if let Some(host) = u.host_str() {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            return format!("{}://{host}{port}{}", u.scheme(), u.path());
        }
    }
    let cut = s.find(['?', '#']).unwrap_or(s.len());
    let s = &s[..cut];
    match s.split_once("://") {
        // Unparseable: userinfo may contain a `/`, so everything up to the last `@` goes.
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
            format!("{scheme}://{rest}")
        }
        None => s.to_string(),
    }
}

/// The credentials of one source, to be removed from any text it produces.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is removed whole.
    needles: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.needles.len())
    }
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a credential.
    pub fn secret(&mut self, s: &Secret) -> &mut Self {
        self.add(s.expose());
        self
    }

    /// Adds the credentials a URL may carry: its user name and password, and its query
    /// values (gateways take API keys as query parameters; signed URLs carry signatures),
    /// each as written and percent-decoded.
    pub fn url(&mut self, s: &str) -> &mut Self {
        let Ok(u) = reqwest::Url::parse(s) else {
            // Unparseable: reqwest will not send it either; still, the raw parts go.
            if let Some((_, rest)) = s.split_once("://") {
                if let Some((userinfo, _)) = rest.rsplit_once('@') {
                    userinfo.split(':').for_each(|p| self.add(p));
                }
            }
            if let Some((_, query)) = s.split_once('?') {
                for pair in query.split('&') {
                    self.add(pair.split_once('=').map_or(pair, |(_, v)| v));
                }
            }
            return self;
        };
        let decode = |v: &str| {
            percent_decode(v)
                .filter(|d| d != v)
                .into_iter()
                .chain(std::iter::once(v.to_string()))
                .collect::<Vec<_>>()
        };
        for v in decode(u.username()) {
            self.add(&v);
        }
        for v in u.password().map(decode).unwrap_or_default() {
            self.add(&v);
        }
        if let Some(q) = u.query() {
            for pair in q.split('&') {
                for v in decode(pair.split_once('=').map_or(pair, |(_, v)| v)) {
                    self.add(&v);
                }
            }
            // Form-decoded too (`+` as space), as servers echo them.
            for (_, v) in u.query_pairs() {
                self.add(&v);
            }
        }
        if let Some(f) = u.fragment() {
            self.add(f);
        }
        self
    }

    fn add(&mut self, s: &str) {
        if s.chars().count() < MIN_SECRET_LEN || self.needles.iter().any(|n| n == s) {
            return;
        }
        self.needles.push(s.to_string());
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `text` with every known credential replaced by [`REDACTED`].
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }

    /// `e` with every known credential removed from its text.
    pub fn error(&self, e: ForecastError) -> ForecastError {
        let t = |s: String| self.text(&s);
        match e {
            ForecastError::UnknownRegion {
                provider,
                region,
                hint,
            } => ForecastError::UnknownRegion {
                provider,
                region: t(region),
                hint: t(hint),
            },
            ForecastError::Auth { provider, detail } => ForecastError::Auth {
                provider,
                detail: t(detail),
            },
            ForecastError::RateLimited {
                provider,
                retry_after_secs,
            } => ForecastError::RateLimited {
                provider,
                retry_after_secs,
            },
            ForecastError::Upstream { provider, detail } => ForecastError::Upstream {
                provider,
                detail: t(detail),
            },
            ForecastError::Timeout { provider } => ForecastError::Timeout { provider },
            ForecastError::Invalid { provider, detail } => ForecastError::Invalid {
                provider,
                detail: t(detail),
            },
            ForecastError::Config { provider, detail } => ForecastError::Config {
                provider,
                detail: t(detail),
            },
            ForecastError::Unavailable { provider, detail } => ForecastError::Unavailable {
                provider,
                detail: t(detail),
            },
        }
    }
}

/// `%XX`-decoded `s`, if it decodes to UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        let u = |s: &str| url(s);
        assert_eq!(
            u("https://user:pw@example.org:8443/a/b.csv?token=t&x=1#frag"),
            "https://example.org:8443/a/b.csv"
        );
        assert_eq!(u("http://example.org"), "http://example.org/");
        assert_eq!(u("http://[::1]:80/x?k=v"), "http://[::1]/x");
        assert_eq!(u("http://user@127.0.0.1:9/x"), "http://127.0.0.1:9/x");
        // Unparseable (a `/` in the password, a bad port): only after the last `@`.
        assert_eq!(u("http://user:p/w@host/x?k=v"), "http://host/x");
        assert_eq!(u("http://u:p@host:port/x?k=v"), "http://host:port/x");
        // Paths keep everything but a query.
        assert_eq!(u("/data/forecast.csv"), "/data/forecast.csv");
        assert_eq!(u("forecast.csv?x"), "forecast.csv");
    }

    #[test]
    fn redactor_removes_credentials_and_url_parts() {
        let mut r = Redactor::new();
        r.secret(&Secret::new("tok-123456"))
            .url("https://alice:p%40ss-word@h/x?key=k%2Fey-value&v=2&sig=a+b+c+d");
        let text = "tok-123456 alice p@ss-word p%40ss-word k/ey-value k%2Fey-value a b c d v=2";
        assert_eq!(
            r.text(text),
            "<redacted> <redacted> <redacted> <redacted> <redacted> <redacted> <redacted> v=2"
        );
        // Short values are left alone: they would mangle messages.
        assert_eq!(r.text("HTTP 2"), "HTTP 2");
        let e = r.error(ForecastError::Auth {
            provider: "p".into(),
            detail: "HTTP 401: bad token tok-123456".into(),
        });
        assert_eq!(
            e.to_string(),
            "p: authentication failed: HTTP 401: bad token <redacted>"
        );
        assert_eq!(format!("{r:?}"), "Redactor(8 values)");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%zz"), None);
    }
}
