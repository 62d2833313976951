//! What running a test produced: [`Outcome`] for the verdict, [`TestResult`] for one run.
//!
//! The queue stores outcomes by their lowercase names and failure details as JSON, so both
//! backends and the report read the same words.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::test_id::TestId;

/// A test's time as a framework or a report gave it, in seconds: negative, not a number or
/// past any real run (`1e30`) counts as unknown, `None`, never a panic.
pub fn reported_duration(seconds: f64) -> Option<Duration> {
    if seconds.is_finite() && seconds >= 0.0 {
        Duration::try_from_secs_f64(seconds).ok()
    } else {
        None
    }
}

/// A test's final outcome, or the outcome of one run of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The test ran and passed.
    Passed,
    /// The test ran and failed.
    Failed,
    /// The framework skipped the test.
    Skipped,
    /// The test failed, then passed on a requeue: not broken, but not to be trusted.
    Flaky,
    /// The runner broke: crash, timeout, missing result.
    Errored,
}

impl Outcome {
    /// Every outcome, in the order summaries list them.
    pub const ALL: [Outcome; 5] = [
        Outcome::Passed,
        Outcome::Flaky,
        Outcome::Skipped,
        Outcome::Failed,
        Outcome::Errored,
    ];

    /// The name stored in Redis and printed in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Flaky => "flaky",
            Outcome::Errored => "errored",
        }
    }

    /// Whether this outcome lets the build go green.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Passed | Outcome::Skipped | Outcome::Flaky)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored outcome name that this version does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown outcome `{0}`")]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

/// One run of one test, as a runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test that ran.
    pub id: TestId,
    /// How the run ended. Never [`Outcome::Flaky`]: flakiness is decided by the queue.
    pub outcome: Outcome,
    /// Wall time of the run: the test's own, or its share of a batch's (see `shared`).
    pub duration: Duration,
    /// Whether `duration` is a share of a batch's time, not the test's own: a batch command
    /// without a report's times. Shares size batches; only a test's own time is remembered for
    /// later builds (a long test batched with short ones would look short).
    pub shared: bool,
    /// Captured output, kept for failures and errors (already bounded by the runner).
    pub output: String,
}

impl TestResult {
    /// A result; the output is kept only when the run did not succeed, since only failures
    /// show it and it travels to Redis.
    pub fn new(id: TestId, outcome: Outcome, duration: Duration, output: String) -> Self {
        let output = if outcome.is_success() {
            String::new()
        } else {
            output
        };
        Self {
            id,
            outcome,
            duration,
            shared: false,
            output,
        }
    }

    /// Whether `duration` tells how long this test usually takes, to remember for later
    /// builds: its own time (not a share of its batch's), of a run that ended by itself (not
    /// errored: a timeout, a crash, a test the runner could not find) and ran (not skipped).
    pub fn is_own_run(&self) -> bool {
        !self.shared && !matches!(self.outcome, Outcome::Errored | Outcome::Skipped)
    }

    /// This result with `duration` a share of its batch's time.
    pub fn shared(self) -> Self {
        Self {
            shared: true,
            ..self
        }
    }
}

/// The details stored with a failed or errored run, shown by the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureDetail {
    /// Outcome of the run that produced this detail.
    pub outcome: Outcome,
    /// Worker that ran it.
    pub worker: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Captured output, bounded.
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a later build's limits and order are made of: a test's own time of a run that
    /// ended by itself.
    #[test]
    fn only_own_runs_that_ended_by_themselves_are_remembered() {
        let run = |outcome| {
            TestResult::new(
                TestId::new("t").unwrap(),
                outcome,
                Duration::from_secs(1),
                String::new(),
            )
        };
        assert!(run(Outcome::Passed).is_own_run());
        assert!(run(Outcome::Failed).is_own_run());
        assert!(
            !run(Outcome::Errored).is_own_run(),
            "a timeout is not a usual time"
        );
        assert!(!run(Outcome::Skipped).is_own_run());
        assert!(!run(Outcome::Passed).shared().is_own_run());
    }
}
