//! The one way the crate reads and writes an instant as text: [`parse()`] for every timestamp
//! it is given as text (flags, forecast files, traces, the UK Carbon Intensity API's slots)
//! and [`format()`] for every timestamp it shows or sends (tables, CSV, Events, messages,
//! query parameters). JSON fields typed as instants (provider responses, the Kubernetes
//! `Time`s) are read by their serde implementations, RFC 3339 as well.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// `t` as RFC 3339 in UTC with whole seconds, e.g. `2024-03-01T10:00:00Z`.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 (any offset), or a naive `YYYY-MM-DD[T ]HH:MM[:SS[.f]]` (a trailing `Z`
/// allowed) read as UTC.
pub fn parse(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = s.trim_end_matches('Z');
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "timestamp {s:?} is not RFC 3339 (e.g. 2024-03-01T10:00:00Z)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_naive_utc() {
        let a = parse("2024-03-01T10:00:00Z").unwrap();
        assert_eq!(parse("2024-03-01T10:00Z").unwrap(), a);
        assert_eq!(parse("2024-03-01 10:00:00").unwrap(), a);
        assert_eq!(parse(" 2024-03-01T11:00:00+01:00 ").unwrap(), a);
        assert_eq!(
            parse("2024-03-01T10:00:00.5Z").unwrap(),
            a + chrono::TimeDelta::milliseconds(500)
        );
        assert_eq!(
            parse("yesterday").unwrap_err(),
            "timestamp \"yesterday\" is not RFC 3339 (e.g. 2024-03-01T10:00:00Z)"
        );
    }

    #[test]
    fn formats_utc_whole_seconds_and_round_trips() {
        let t = parse("2024-03-01T11:00:00.75+01:00").unwrap();
        assert_eq!(format(t), "2024-03-01T10:00:00Z");
        assert_eq!(parse(&format(t)).unwrap(), crate::api::time::trunc(t));
    }
}
