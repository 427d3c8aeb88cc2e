//! Kubernetes-style durations (`90s`, `4m`, `6h`, `1h30m`, `8d`), used by the CRD, the CLI
//! and the simulator so every surface accepts the same spelling.
//!
//! Two entry points: [`parse_secs`] for manifests (whole numbers only, like the CRD's
//! pattern) and [`flag`], the clap value parser of every duration flag, which also reads
//! decimals (`1.5h` = 90 minutes) and checks the flag's accepted range, so that no flag can
//! hand the planner or the simulator a duration that overflows a timestamp.

use thiserror::Error;

/// How a valid duration looks, appended to syntax errors (the command line's spellings: a
/// manifest takes no days, and its validation removes this hint for its own).
pub const HINT: &str = "use forms like 90s, 4m, 6h, 1h30m or 8d";

/// The longest duration any flag accepts: 366 days, the longest schedule span of a
/// CarbonAwareJob ([`crate::api::MAX_SCHEDULE_SPAN_SECS`]).
pub const MAX_FLAG_SECS: i64 = crate::api::MAX_SCHEDULE_SPAN_SECS;
/// One day in seconds, the longest of the operator's polling intervals.
pub const DAY_SECS: i64 = 86_400;

/// Nanoseconds per second: decimals are exact down to 1 ns.
const NANOS: i128 = 1_000_000_000;
/// At most this many digits after a decimal point (nanoseconds of a second).
const MAX_DECIMALS: u32 = 9;

#[derive(Debug, Error, PartialEq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses a duration into whole seconds. Units: `d`, `h`, `m`, `s`; components may be
/// combined in descending order (`1d6h`, `1h30m`). Zero is allowed (`0s`); callers that
/// need a positive duration check that themselves. No decimals: manifests follow the CRD's
/// pattern (write `1h30m`, not `1.5h`).
pub fn parse_secs(input: &str) -> Result<i64, DurationError> {
    let err = |reason: String| DurationError {
        input: input.to_string(),
        reason,
    };
    if input.contains('.') {
        let hint = match scan(input) {
            Ok(n) => format!(
                "; write {}",
                format_secs(i64::try_from(n).unwrap_or(i64::MAX))
            ),
            Err(_) => format!(" ({HINT})"),
        };
        return Err(err(format!("fractions are not accepted here{hint}")));
    }
    let n = scan(input).map_err(err)?;
    i64::try_from(n).map_err(|_| err("number too large".into()))
}

/// Parses a command-line duration into whole seconds within `[min, max]`: the grammar of
/// [`parse_secs`] plus decimals (`1.5h`, `0.5d`, `2.5m`) that come to whole seconds.
pub fn parse_flag(input: &str, min: i64, max: i64) -> Result<i64, DurationError> {
    let err = |reason: String| DurationError {
        input: input.to_string(),
        reason,
    };
    let n = scan(input).map_err(err)?;
    let range = || format!("accepted: {} to {}", format_secs(min), format_secs(max));
    if n > i128::from(max) {
        return Err(err(format!(
            "more than the maximum {} ({})",
            format_secs(max),
            range()
        )));
    }
    if n < i128::from(min) {
        return Err(err(format!(
            "less than the minimum {} ({})",
            format_secs(min),
            range()
        )));
    }
    // In range, so within i64.
    Ok(n as i64)
}

/// The clap value parser of a duration flag accepting `[min, max]` seconds (see
/// [`parse_flag`]); its value is the number of seconds. Declare the argument with
/// `allow_hyphen_values = true` so `-1h` reaches it (and is refused as negative) instead of
/// being taken for a flag.
pub const fn flag(min: i64, max: i64) -> FlagParser {
    FlagParser { min, max }
}

/// See [`flag`].
#[derive(Debug, Clone, Copy)]
pub struct FlagParser {
    min: i64,
    max: i64,
}

impl FlagParser {
    /// The same parser, its value a [`chrono::TimeDelta`].
    pub fn time_delta(self) -> impl clap::builder::TypedValueParser<Value = chrono::TimeDelta> {
        clap::builder::TypedValueParser::map(self, chrono::TimeDelta::seconds)
    }

    /// The same parser, its value a [`std::time::Duration`] (a negative minimum reads as 0).
    pub fn std(self) -> impl clap::builder::TypedValueParser<Value = std::time::Duration> {
        clap::builder::TypedValueParser::map(self, |s| {
            std::time::Duration::from_secs(u64::try_from(s).unwrap_or(0))
        })
    }
}

impl clap::builder::TypedValueParser for FlagParser {
    type Value = i64;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<i64, clap::Error> {
        let (min, max) = (self.min, self.max);
        // clap's own closure parser words the error: "invalid value 'X' for '--flag <DUR>'".
        let inner = move |s: &str| parse_flag(s, min, max).map_err(|e| e.reason);
        inner.parse_ref(cmd, arg, value)
    }
}

/// Whole seconds of `input` (saturating far beyond any range), decimals allowed.
fn scan(input: &str) -> Result<i128, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err(format!("empty ({HINT})"));
    }
    if let Some(rest) = s.strip_prefix('-') {
        return Err(
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                "must not be negative".to_string()
            } else {
                "this looks like a flag, not a duration: the flag before it needs a value"
                    .to_string()
            },
        );
    }
    let mut nanos: i128 = 0;
    let mut num = String::new();
    let mut last_rank = usize::MAX;
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let (mult, rank): (i128, usize) = match c {
            'd' => (86_400, 3),
            'h' => (3_600, 2),
            'm' => (60, 1),
            's' => (1, 0),
            _ => return Err(format!("unknown unit {c:?}; units are d, h, m, s ({HINT})")),
        };
        if num.is_empty() {
            return Err(format!("a unit without a number ({HINT})"));
        }
        if rank >= last_rank {
            return Err(format!(
                "units must appear once each, largest first ({HINT})"
            ));
        }
        last_rank = rank;
        nanos = nanos.saturating_add(number_nanos(&num)?.saturating_mul(mult));
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!(
            "{num} has no unit: write e.g. {num}s, {num}m or {num}h"
        ));
    }
    if nanos % NANOS != 0 {
        return Err(format!("{s} is not a whole number of seconds"));
    }
    Ok(nanos / NANOS)
}

/// `digits[.digits]` in nanoseconds (saturating).
fn number_nanos(num: &str) -> Result<i128, String> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.contains('.') {
        return Err(format!("{num:?} has more than one decimal point"));
    }
    if int.is_empty() && frac.is_empty() {
        return Err(format!("a unit without a number ({HINT})"));
    }
    if frac.len() > MAX_DECIMALS as usize {
        return Err(format!("{num}: at most {MAX_DECIMALS} decimal places"));
    }
    let digits = |d: &str| {
        d.bytes().fold(0i128, |acc, b| {
            acc.saturating_mul(10).saturating_add(i128::from(b - b'0'))
        })
    };
    let scale = 10i128.pow(MAX_DECIMALS - frac.len() as u32);
    Ok(digits(int)
        .saturating_mul(NANOS)
        .saturating_add(digits(frac) * scale))
}

/// Formats seconds in the same spelling `parse_secs` reads (`1h30m`, `8d`, `0s`).
pub fn format_secs(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let mut rest = secs.unsigned_abs();
    let mut out = String::from(sign);
    for (unit, size) in [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{}", rest / size, unit));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_kubernetes_style() {
        assert_eq!(parse_secs("90s"), Ok(90));
        assert_eq!(parse_secs("4m"), Ok(240));
        assert_eq!(parse_secs("6h"), Ok(21_600));
        assert_eq!(parse_secs("1h30m"), Ok(5_400));
        assert_eq!(parse_secs("8d"), Ok(691_200));
        assert_eq!(parse_secs("0s"), Ok(0));
    }

    #[test]
    fn rejects_with_reason() {
        for bad in [
            "",
            "6",
            "h",
            "6x",
            "30m1h",
            "1h1h",
            "-5m",
            "99999999999999999999s",
            "1.5h",
        ] {
            let e = parse_secs(bad).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
        let reason = |s: &str| parse_secs(s).unwrap_err().reason;
        assert_eq!(reason("-5m"), "must not be negative");
        assert_eq!(
            reason("1.5h"),
            "fractions are not accepted here; write 1h30m"
        );
        assert_eq!(reason("6"), "6 has no unit: write e.g. 6s, 6m or 6h");
        assert_eq!(reason("99999999999999999999s"), "number too large");
    }

    #[test]
    fn flags_read_decimals_that_come_to_whole_seconds() {
        let f = |s: &str| parse_flag(s, 0, MAX_FLAG_SECS);
        assert_eq!(f("1.5h"), Ok(5_400));
        assert_eq!(f("0.5d"), Ok(43_200));
        assert_eq!(f("2.5m"), Ok(150));
        assert_eq!(f("1.25h30m"), Ok(6_300));
        assert_eq!(f(".5m"), Ok(30));
        assert_eq!(f("1.h"), Ok(3_600));
        assert_eq!(f("366d"), Ok(31_622_400));
        let reason = |s: &str| f(s).unwrap_err().reason;
        assert_eq!(reason("1.5s"), "1.5s is not a whole number of seconds");
        assert_eq!(
            reason("0.0000000001h"),
            "0.0000000001: at most 9 decimal places"
        );
        assert_eq!(
            reason("1.2.3h"),
            "\"1.2.3\" has more than one decimal point"
        );
        assert_eq!(
            reason(".h"),
            "a unit without a number (use forms like 90s, 4m, 6h, 1h30m or 8d)"
        );
    }

    #[test]
    fn flags_name_their_range() {
        let e = parse_flag("99999999999h", 1, MAX_FLAG_SECS).unwrap_err();
        assert_eq!(
            e.reason,
            "more than the maximum 366d (accepted: 1s to 366d)"
        );
        assert_eq!(
            parse_flag("9223372036854775807s", 0, 60)
                .unwrap_err()
                .reason,
            "more than the maximum 1m (accepted: 0s to 1m)"
        );
        assert_eq!(
            parse_flag("0s", 1, 60).unwrap_err().reason,
            "less than the minimum 1s (accepted: 1s to 1m)"
        );
        assert_eq!(
            parse_flag("-1h", 0, 60).unwrap_err().reason,
            "must not be negative"
        );
        assert_eq!(
            parse_flag("--slack", 0, 60).unwrap_err().reason,
            "this looks like a flag, not a duration: the flag before it needs a value"
        );
    }

    #[test]
    fn format_round_trips() {
        for s in [0, 1, 59, 60, 3_600, 5_400, 86_400, 691_200, 90_061] {
            assert_eq!(parse_secs(&format_secs(s)), Ok(s));
        }
    }

    /// Strings a user might type: numbers of any size, signs, decimal points, units.
    fn duration_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[-+ .0-9dhmsxyµ]{0,30}",
            (any::<i64>(), "[dhmsx]?").prop_map(|(n, u)| format!("{n}{u}")),
            (any::<u128>(), any::<u64>(), "[dhms]").prop_map(|(a, b, u)| format!("{a}.{b}{u}")),
        ]
    }

    proptest! {
        /// Never a panic; an accepted value is within range, and the error names the input.
        #[test]
        fn duration_parsers_never_panic(s in duration_like(), min in 0i64..1000, extra in 0i64..=MAX_FLAG_SECS) {
            let max = min + extra;
            match parse_flag(&s, min, max) {
                Ok(n) => prop_assert!((min..=max).contains(&n)),
                Err(e) => prop_assert!(e.to_string().starts_with("invalid duration")),
            }
            if let Ok(n) = parse_secs(&s) {
                prop_assert!(n >= 0);
                prop_assert_eq!(parse_flag(&s, 0, i64::MAX), Ok(n));
            }
        }

        /// Decimal hours are exact: `H.F h` is `H*3600 + F*3600/10` seconds.
        #[test]
        fn decimal_hours_are_exact(h in 0i64..8000, tenth in 0i64..10) {
            prop_assert_eq!(parse_flag(&format!("{h}.{tenth}h"), 0, MAX_FLAG_SECS), Ok(h * 3600 + tenth * 360));
        }
    }
}
