//! Durations as `sessionctl` takes and shows them.

use std::time::Duration;

/// Elapsed time in the progress display: `4.2s`, `2m05s`, `1h02m`.
pub fn fmt_elapsed(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match secs {
        0..=59 => format!("{:.1}s", elapsed.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// A duration the way `--timeout` and friends take it: `500ms`, `30s`, `15m`, `1m30s`.
pub fn fmt_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut text = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

/// Parses `--timeout`, `--wait-timeout` and `--poll-interval`: a number of seconds, or
/// numbers with units `ms`, `s`, `m`, `h` (`1m30s`). Zero is refused.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let invalid = || format!("{raw:?} is not a duration: use e.g. 30s, 500ms, 15m or 1m30s");
    let raw_trimmed = raw.trim();
    if raw_trimmed.is_empty() {
        return Err(invalid());
    }
    let total = if let Ok(secs) = raw_trimmed.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(invalid());
        }
        Duration::try_from_secs_f64(secs).map_err(|_| invalid())?
    } else {
        let mut total = Duration::ZERO;
        let mut rest = raw_trimmed;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(invalid)?;
            if digits == 0 {
                return Err(invalid());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let part = match &rest[..unit_len] {
                "ms" => Duration::from_millis(value),
                "s" => Duration::from_secs(value),
                "m" => Duration::from_secs(value.saturating_mul(60)),
                "h" => Duration::from_secs(value.saturating_mul(3600)),
                _ => return Err(invalid()),
            };
            total = total.saturating_add(part);
            rest = &rest[unit_len..];
        }
        total
    };
    if total.is_zero() {
        return Err(format!("{raw:?} is zero; give a duration above zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_documented() {
        let cases = [
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse_duration(raw), Ok(expected), "{raw}");
            assert_eq!(parse_duration(&fmt_duration(expected)), Ok(expected));
        }
        for bad in [
            "", "0", "0s", "-1", "ten", "5 s", "5d", "m5", "s", "NaN", "inf",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn elapsed_time_reads_at_a_glance() {
        assert_eq!(fmt_elapsed(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(fmt_elapsed(Duration::from_secs(125)), "2m05s");
        assert_eq!(fmt_elapsed(Duration::from_secs(3720)), "1h02m");
        assert_eq!(fmt_duration(Duration::from_secs(900)), "15m");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
    }
}
