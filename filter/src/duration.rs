//! Durations as the configuration and canaryctl's command line write them: one syntax for both.

use std::time::Duration;

/// `30s`, `2m`, `1h`, `500ms`, `1.5s`, or a bare number of seconds; more than zero and less
/// than 10^9 seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 2m or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    if !(seconds > 0.0 && seconds < 1e9) {
        return Err(format!("{text:?} must be more than zero"));
    }
    // In range by the check above, so the conversion cannot fail.
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("30s", Some(30_000)),
            ("2m", Some(120_000)),
            ("500ms", Some(500)),
            ("1.5s", Some(1_500)),
            ("1h", Some(3_600_000)),
            ("2h", Some(7_200_000)),
            ("7", Some(7_000)),
            ("0s", None),
            ("s", None),
            ("3d", None),
            ("-1s", None),
            ("1e3s", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_millis() as u64),
                want,
                "{text}"
            );
        }
    }
}
