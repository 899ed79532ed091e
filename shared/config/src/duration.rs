//! The one duration syntax of every variable: a whole number and a unit, `250ms`, `30s`, `15m`, `24h`
//! or `7d`.

use std::time::Duration;

const EXPECTED: &str = "must be a duration such as 30s, 15m or 24h";

/// Parses `250ms`, `30s`, `15m`, `24h` or `7d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{EXPECTED}, got {raw:?}"))?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{EXPECTED}, got {raw:?}")),
    };
    n.checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("is too long, got {raw:?}"))
}

/// A duration longer than zero.
pub fn positive_duration(raw: &str) -> Result<Duration, String> {
    let duration = parse_duration(raw)?;
    if duration.is_zero() {
        Err(format!("must be longer than zero, got {raw:?}"))
    } else {
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "15",
            "m",
            "1.5h",
            "-1s",
            "30 s",
            "",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            positive_duration("0ms"),
            Err("must be longer than zero, got \"0ms\"".to_owned())
        );
    }
}
