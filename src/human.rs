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

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::property_testing::{config, noisy_text};

    /// The longest duration a flag takes.
    const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

    proptest! {
        #![proptest_config(config())]

        /// Any text (a flag's or a `CIQ_*` variable's value) is a duration from above zero to
        /// 30 days, or one line saying why not.
        #[test]
        fn any_text_is_a_duration_in_range_or_an_error(
            text in prop_oneof![
                noisy_text(),
                "[ +-]?[0-9]{1,25}(\\.[0-9]{1,3})? ?(ns|us|ms|s|m|min|h|d|w|M|y)?( [0-9]{1,3}(s|m))?",
            ],
        ) {
            match parse_duration(&text) {
                Ok(parsed) => prop_assert!(!parsed.is_zero() && parsed <= MONTH, "{parsed:?}"),
                Err(err) => prop_assert!(!err.contains(['\n', '\r']), "{err}"),
            }
        }

        /// Whole seconds and milliseconds read back, with or without their unit.
        #[test]
        fn durations_read_back(seconds in 1..=MONTH.as_secs(), millis in 1..1000u64) {
            let expected = Duration::from_secs(seconds);
            prop_assert_eq!(parse_duration(&seconds.to_string()), Ok(expected));
            prop_assert_eq!(parse_duration(&format!("{seconds}s")), Ok(expected));
            prop_assert_eq!(parse_duration(&format!("{millis}ms")), Ok(Duration::from_millis(millis)));
        }
    }
}
