//! How long a test may run before it is killed: `--test-timeout` as a fixed duration, or
//! [`TestTimeout::Auto`], a limit per test from its history.
//!
//! A fixed limit must cover the slowest test of the suite, so a hung one-second test holds its
//! worker for the whole limit. An auto limit is [`AUTO_FACTOR`] times the slowest of the test's
//! recent runs, never under [`AUTO_FLOOR`] (a hiccup of a fast test is not a hang), and a test
//! without history gets [`AUTO_UNKNOWN`], the fixed default: a slow but normal test is never
//! killed for want of a record.

use std::str::FromStr;
use std::time::Duration;

/// An auto limit is this many times the slowest recent run...
pub const AUTO_FACTOR: u32 = 5;
/// ...but at least this long.
pub const AUTO_FLOOR: Duration = Duration::from_secs(5);
/// The limit of a test with no history.
pub const AUTO_UNKNOWN: Duration = Duration::from_secs(30 * 60);
/// No auto limit is longer (as no `--test-timeout` may be): absurd history stays bounded.
const AUTO_CEILING: Duration = Duration::from_secs(30 * 24 * 3600);

/// `--test-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestTimeout {
    /// The same limit for every test.
    Fixed(Duration),
    /// A limit per test, from its recent runs.
    Auto,
}

impl FromStr for TestTimeout {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "auto" {
            return Ok(TestTimeout::Auto);
        }
        crate::human::parse_duration(text)
            .map(TestTimeout::Fixed)
            .map_err(|err| format!("{err}, or `auto`"))
    }
}

impl TestTimeout {
    /// The limit of a test whose slowest recent run took `slowest` (`None`: no history).
    pub fn limit(self, slowest: Option<Duration>) -> Duration {
        match (self, slowest) {
            (TestTimeout::Fixed(limit), _) => limit,
            (TestTimeout::Auto, None) => AUTO_UNKNOWN,
            (TestTimeout::Auto, Some(slowest)) => slowest
                .saturating_mul(AUTO_FACTOR)
                .clamp(AUTO_FLOOR, AUTO_CEILING),
        }
    }

    /// The limit for whatever is not one test (a framework's start, a preflight check): the
    /// fixed limit, or what a test without history gets.
    pub fn overall(self) -> Duration {
        self.limit(None)
    }
}

/// What a batch run in one process may take: its tests' limits added up.
pub fn total(limits: &[Duration]) -> Duration {
    limits
        .iter()
        .fold(Duration::ZERO, |sum, limit| sum.saturating_add(*limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_limits_follow_history_with_a_floor() {
        let auto: TestTimeout = "auto".parse().unwrap();
        assert_eq!(
            auto.limit(Some(Duration::from_secs(2))),
            Duration::from_secs(10)
        );
        assert_eq!(auto.limit(Some(Duration::from_millis(10))), AUTO_FLOOR);
        assert_eq!(auto.limit(None), AUTO_UNKNOWN);
        assert_eq!(auto.limit(Some(Duration::MAX)), AUTO_CEILING);
        let fixed: TestTimeout = "90s".parse().unwrap();
        assert_eq!(
            fixed.limit(Some(Duration::from_secs(1))),
            Duration::from_secs(90)
        );
        assert!(
            "soon"
                .parse::<TestTimeout>()
                .unwrap_err()
                .ends_with(", or `auto`")
        );
    }
}
