//! Values written for people: durations rounded to what a reader can use, errors on one line.

use std::time::Duration;

/// `d` rounded for a message: `250ms`, `3.6s`, `2m 5s`, `1h 30m`.
pub fn duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    if millis < 60_000 {
        let tenths = (millis + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let seconds = (millis + 500) / 1000;
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes, seconds) {
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// An error and its causes on one line, `outer: inner: root`, for messages stored in Redis.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A duration as people type it on a command line: `30s`, `500ms`, `15m`, `8h`, or a bare
/// number of seconds; zero, and more than 30 days, are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|err| format!("{err} (write e.g. 30s, 500ms, 15m or 2h)"))?,
    };
    if parsed.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    if parsed > Duration::from_secs(30 * 24 * 3600) {
        return Err("must be at most 30 days".to_owned());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(
            parse_duration("18446744073709551615")
                .unwrap_err()
                .contains("at most 30 days")
        );
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("write e.g. 30s")
        );
    }

    #[test]
    fn durations_are_rounded_for_people() {
        let ms = Duration::from_millis;
        assert_eq!(duration(Duration::from_nanos(3_559_064_884)), "3.6s");
        assert_eq!(duration(ms(250)), "250ms");
        assert_eq!(duration(ms(2000)), "2s");
        assert_eq!(duration(ms(59_960)), "60s");
        assert_eq!(duration(ms(125_400)), "2m 5s");
        assert_eq!(duration(ms(900_000)), "15m");
        assert_eq!(duration(ms(5_400_000)), "1h 30m");
        assert_eq!(duration(ms(7_200_000)), "2h");
    }
}
