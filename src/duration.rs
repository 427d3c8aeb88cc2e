//! Kubernetes-style durations (`90s`, `4m`, `6h`, `1h30m`, `8d`), used by the CRD, the CLI
//! and the simulator so every surface accepts the same spelling.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
#[error("invalid duration {input:?}: {reason} (use forms like 90s, 4m, 6h, 1h30m or 8d)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a duration into whole seconds. Units: `d`, `h`, `m`, `s`; components may be
/// combined in descending order (`1d6h`, `1h30m`). Zero is allowed (`0s`); callers that
/// need a positive duration check that themselves.
pub fn parse_secs(input: &str) -> Result<i64, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut last_rank = usize::MAX;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let (mult, rank) = match c {
            'd' => (86_400, 3),
            'h' => (3_600, 2),
            'm' => (60, 1),
            's' => (1, 0),
            _ => return Err(err("unknown unit; units are d, h, m, s")),
        };
        if num.is_empty() {
            return Err(err("a unit without a number"));
        }
        if rank >= last_rank {
            return Err(err("units must appear once each, largest first"));
        }
        last_rank = rank;
        let n: i64 = num.parse().map_err(|_| err("number too large"))?;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("number too large"))?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(err("a number without a unit"));
    }
    Ok(total)
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
        ] {
            let e = parse_secs(bad).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in [0, 1, 59, 60, 3_600, 5_400, 86_400, 691_200, 90_061] {
            assert_eq!(parse_secs(&format_secs(s)), Ok(s));
        }
    }
}
