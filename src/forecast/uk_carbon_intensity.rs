//! The UK Carbon Intensity API (NESO, formerly National Grid ESO), no key needed.
//!
//! Region names this source accepts:
//! - `national` or `GB`: `GET {endpoint}/intensity/{from}/fw48h`, slots
//!   `{"from", "to", "intensity": {"forecast", "actual", "index"}}` under `{"data": [...]}`;
//! - `regionid:N` or just `N` (1-17, e.g. 13 = London):
//!   `GET {endpoint}/regional/intensity/{from}/fw48h/regionid/N`, slots under
//!   `{"data": {"regionid", ..., "data": [...]}}` (an array of one such object is accepted
//!   too: the postcode form answers that way);
//! - `postcode:RG10`: `.../fw48h/postcode/RG10` (outward code only).
//!
//! `{from}` is the start of the current half hour as `YYYY-MM-DDThh:mmZ`. A slot's value is
//! its `actual` when published (past slots, national only), else its `forecast`. Past its
//! horizon the API answers 200 with `{}` or fewer slots: `{}` is
//! [`ForecastError::Unavailable`], fewer slots a shorter series.
//!
//! History: the same routes with `{from}/{to}` in place of `{from}/fw48h`
//! (`/intensity/{from}/{to}`, `/regional/intensity/{from}/{to}/regionid/N`,
//! `.../postcode/X`), the same slots. The API limits `/intensity/{from}/{to}` to 14 days;
//! every route is asked [`MAX_SPAN`] at a time.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::provider::{self, Api, Live, Past, Provider};
use super::redact::Redactor;
use super::validate::RawPoint;
use super::{http, Forecast, ForecastError, Signal};
use crate::series::Series;
use crate::timefmt;

pub const NAME: &str = "uk-carbon-intensity";
pub const DEFAULT_ENDPOINT: &str = "https://api.carbonintensity.org.uk";
/// The span one `{from}/{to}` request covers at most.
pub const MAX_SPAN: TimeDelta = TimeDelta::days(14);
/// The API's slot length.
const HALF_HOUR: TimeDelta = TimeDelta::minutes(30);

pub struct UkCarbonIntensity {
    api: Api,
}

impl UkCarbonIntensity {
    pub fn new(endpoint: String, timeout: Duration) -> Result<Self, ForecastError> {
        Ok(Self {
            api: Api::new(NAME, endpoint, timeout)?,
        })
    }
}

/// The API path (after the endpoint) of the forecast for `region` from `from`.
pub fn path(region: &str, from: DateTime<Utc>) -> Result<String, ForecastError> {
    let (base, which) = route(region)?;
    Ok(format!("{base}/{}/fw48h{which}", minutes(from)))
}

/// The API path of the recorded slots of `region` over `[from, to)`.
pub fn history_path(
    region: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<String, ForecastError> {
    let (base, which) = route(region)?;
    Ok(format!("{base}/{}/{}{which}", minutes(from), minutes(to)))
}

/// `t` in the form the API's paths take (`YYYY-MM-DDThh:mmZ`, whole minutes): a wire
/// format of this API, not a timestamp shown to anyone (that is [`timefmt::format`]).
fn minutes(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

/// The route of `region`: the path before the time window and the part after it.
fn route(region: &str) -> Result<(&'static str, String), ForecastError> {
    let r = region.trim();
    let unknown = || ForecastError::UnknownRegion {
        provider: NAME.into(),
        region: region.into(),
        hint:
            "use national (or GB), regionid:N with N in 1..=17 (13 = London), or postcode:OUTCODE"
                .into(),
    };
    if r.eq_ignore_ascii_case("national") || r.eq_ignore_ascii_case("gb") {
        return Ok(("/intensity", String::new()));
    }
    let id = r
        .strip_prefix("regionid:")
        .or_else(|| r.strip_prefix("regionid/"))
        .unwrap_or(r);
    if let Ok(n) = id.parse::<u32>() {
        if !(1..=17).contains(&n) {
            return Err(unknown());
        }
        return Ok(("/regional/intensity", format!("/regionid/{n}")));
    }
    if let Some(pc) = r.strip_prefix("postcode:") {
        let pc = pc.trim();
        if pc.is_empty() || pc.len() > 4 || !pc.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(unknown());
        }
        return Ok((
            "/regional/intensity",
            format!("/postcode/{}", pc.to_ascii_uppercase()),
        ));
    }
    Err(unknown())
}

#[derive(Deserialize)]
struct Slot {
    from: String,
    to: String,
    intensity: Intensity,
}

#[derive(Deserialize)]
struct Intensity {
    forecast: Option<f64>,
    #[serde(default)]
    actual: Option<f64>,
}

/// Finds the slot array in any of the response shapes.
fn slots(body: &Value) -> Option<&Vec<Value>> {
    let data = body.get("data")?;
    match data {
        Value::Array(items) => match items.first() {
            // Postcode / array-wrapped regional form: [{regionid, data: [...]}]
            Some(first) if first.get("data").is_some() => first.get("data")?.as_array(),
            _ => Some(items),
        },
        Value::Object(_) => data.get("data")?.as_array(),
        _ => None,
    }
}

/// The slots of an answer as points, with the shortest slot length; `{}` (nothing
/// published for the span) is no points.
fn parse(body: &Value) -> Result<(Vec<RawPoint>, Option<i64>), ForecastError> {
    let invalid = |detail: String| ForecastError::Invalid {
        provider: NAME.into(),
        detail,
    };
    let Some(raw) = slots(body) else {
        if body.as_object().is_some_and(|o| o.is_empty()) {
            return Ok((Vec::new(), None));
        }
        return Err(invalid("unexpected response shape: no data array".into()));
    };
    let mut points = Vec::with_capacity(raw.len());
    let mut step: Option<i64> = None;
    for v in raw {
        let s: Slot = serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("malformed slot: {e}")))?;
        let a = timefmt::parse(&s.from).map_err(invalid)?;
        let b = timefmt::parse(&s.to).map_err(invalid)?;
        let len = (b - a).num_seconds();
        step = Some(step.map_or(len, |x| x.min(len)));
        points.push(RawPoint::new(
            a,
            s.intensity.actual.or(s.intensity.forecast),
        ));
    }
    Ok((points, step.filter(|s| *s > 0)))
}

#[async_trait]
impl Provider for UkCarbonIntensity {
    const NAME: &'static str = NAME;
    const SIGNAL: Signal = Signal::Average;

    async fn forecast(&self, q: Live<'_>, _: &mut Redactor) -> Result<Forecast, ForecastError> {
        let Live { region, now } = q;
        let from = now.duration_trunc(HALF_HOUR).unwrap_or(now);
        let (points, step) = self.get(&path(region, from)?).await?;
        if points.is_empty() {
            return Err(ForecastError::Unavailable {
                provider: NAME.into(),
                detail: format!(
                    "no data from {} (past the API's horizon?)",
                    timefmt::format(from)
                ),
            });
        }
        // The API does not say when it was issued; its forecasts update every half hour.
        provider::live::<Self>(q, from, points, step)
    }

    /// Asked on whole half hours: `from` rounded down, `to` up.
    async fn past(&self, q: Past<'_>, _: &mut Redactor) -> Result<Series, ForecastError> {
        let start = q.from.duration_trunc(HALF_HOUR).unwrap_or(q.from);
        let end =
            q.to.duration_trunc(HALF_HOUR)
                .map_or(q.to, |t| if t < q.to { t + HALF_HOUR } else { t });
        let (mut all, mut step) = (Vec::new(), None);
        for (a, b) in http::windows(start, end, q.now, MAX_SPAN) {
            let (points, s) = self.get(&history_path(q.region, a, b)?).await?;
            all.extend(points);
            step = step.or(s);
        }
        provider::recorded::<Self>(q, all, step)
    }

    fn redactor(&self) -> Redactor {
        self.api.redact.clone()
    }
}

impl UkCarbonIntensity {
    async fn get(&self, path: &str) -> Result<(Vec<RawPoint>, Option<i64>), ForecastError> {
        let resp = self
            .api
            .get(path)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| http::transport_error(NAME, e))?;
        let resp = http::check(NAME, resp, &self.api.redact).await?;
        parse(&http::json(NAME, resp).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn paths() {
        let t = Utc.with_ymd_and_hms(2024, 3, 1, 10, 30, 0).unwrap();
        assert_eq!(
            path("national", t).unwrap(),
            "/intensity/2024-03-01T10:30Z/fw48h"
        );
        assert_eq!(
            path("regionid:13", t).unwrap(),
            "/regional/intensity/2024-03-01T10:30Z/fw48h/regionid/13"
        );
        assert_eq!(
            path("postcode:rg10", t).unwrap(),
            "/regional/intensity/2024-03-01T10:30Z/fw48h/postcode/RG10"
        );
        let to = t + TimeDelta::days(1);
        assert_eq!(
            history_path("GB", t, to).unwrap(),
            "/intensity/2024-03-01T10:30Z/2024-03-02T10:30Z"
        );
        assert_eq!(
            history_path("regionid:13", t, to).unwrap(),
            "/regional/intensity/2024-03-01T10:30Z/2024-03-02T10:30Z/regionid/13"
        );
        assert_eq!(
            history_path("postcode:rg10", t, to).unwrap(),
            "/regional/intensity/2024-03-01T10:30Z/2024-03-02T10:30Z/postcode/RG10"
        );
        assert_eq!(path("99", t).unwrap_err().kind(), "unknown_region");
        assert_eq!(path("DE", t).unwrap_err().kind(), "unknown_region");
    }
}
