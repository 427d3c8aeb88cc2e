//! Conversions between the crate's `chrono` instants and Kubernetes' `metav1.Time`
//! (`jiff` in k8s-openapi 0.29). Kubernetes serialises `Time` with whole seconds, so
//! instants written to status are truncated to the second first; everything compared or
//! accrued against status therefore works on whole seconds too.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// `t` truncated to the whole second (what a round trip through status preserves).
pub fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// chrono -> metav1.Time, truncated to the second.
pub fn to_time(t: DateTime<Utc>) -> Time {
    // Out of jiff's range (years beyond +-9999) cannot come from a real clock or a parsed
    // RFC 3339 string; clamping keeps this total.
    Time(Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::MAX))
}

/// metav1.Time -> chrono.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds() {
        let t = DateTime::parse_from_rfc3339("2024-03-01T12:34:56.789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(from_time(&to_time(t)), trunc(t));
        assert_eq!(trunc(t).timestamp_subsec_nanos(), 0);
    }
}
