//! The one way the crate reads and writes an instant as text: [`parse()`] for every timestamp
//! it is given as text (flags, forecast files, traces, the UK Carbon Intensity API's slots)
//! and [`format()`] for every timestamp it shows or sends (tables, CSV, Events, messages,
//! query parameters). JSON fields typed as instants (provider responses, the Kubernetes
//! `Time`s) are read by their serde implementations, RFC 3339 as well.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Earliest instant a time flag accepts (`--now`, `--from`, `--to`): 1970-01-01T00:00:00Z.
pub const FLAG_MIN: DateTime<Utc> = DateTime::UNIX_EPOCH;
/// Latest instant a time flag accepts, 9000-01-01T00:00:00Z: a plan from it (at most 366 days
/// of schedule plus the forecast's reach) still has four-digit years, as RFC 3339 requires.
pub const FLAG_MAX_SECS: i64 = 221_845_392_000;

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

/// A time flag's value: [`parse()`], or a date `YYYY-MM-DD` meaning its midnight UTC, from
/// [`FLAG_MIN`] to 9000-01-01T00:00:00Z ([`FLAG_MAX_SECS`]). The error is clap's reason.
pub fn parse_flag(s: &str) -> Result<DateTime<Utc>, String> {
    let t = parse(s)
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| {
            format!("{s:?} is not RFC 3339 (e.g. 2024-03-01T10:00:00Z) or a date (2024-03-01)")
        })?;
    let max = DateTime::from_timestamp(FLAG_MAX_SECS, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    if t < FLAG_MIN || t > max {
        return Err(format!(
            "{} is out of range (accepted: {} to {})",
            format(t),
            format(FLAG_MIN),
            format(max)
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_flags_read_dates_and_check_their_range() {
        let a = parse("2024-03-01T00:00:00Z").unwrap();
        assert_eq!(parse_flag("2024-03-01"), Ok(a));
        assert_eq!(parse_flag("2024-03-01T01:00:00+01:00"), Ok(a));
        assert_eq!(
            parse_flag("9000-01-01T00:00:00Z").map(format),
            Ok("9000-01-01T00:00:00Z".to_string())
        );
        let range = "(accepted: 1970-01-01T00:00:00Z to 9000-01-01T00:00:00Z)";
        assert_eq!(
            parse_flag("9999-12-31T23:59:59Z").unwrap_err(),
            format!("9999-12-31T23:59:59Z is out of range {range}")
        );
        assert_eq!(
            parse_flag("1969-12-31").unwrap_err(),
            format!("1969-12-31T00:00:00Z is out of range {range}")
        );
        assert_eq!(
            parse_flag("tomorrow").unwrap_err(),
            "\"tomorrow\" is not RFC 3339 (e.g. 2024-03-01T10:00:00Z) or a date (2024-03-01)"
        );
    }

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
